/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests: skipping, fd-leak checks, the hugepage pool. */
#include "test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn void iob_test_skip(const char* reason) {
    printf("SKIPPED: %s\n", reason);
    fflush(stdout);
    exit(IOB_TEST_SKIP);
}

int iob_test_count_open_fds(void) {
    DIR* dir = opendir("/proc/self/fd");
    if (dir == NULL) {
        return -1;
    }
    int count = 0;
    struct dirent* entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] != '.') {
            count++;
        }
    }
    closedir(dir);
    return count - 1; /* the directory stream's own descriptor */
}

static struct {
    bool saved;
    iob_backing_t backing;
    uint64_t previous_total;
} pool_guard;

void iob_test_hugepages_restore(void) {
    if (!pool_guard.saved) {
        return;
    }
    uint64_t reached = 0;
    (void)iob_hugepage_pool_resize(pool_guard.backing, pool_guard.previous_total, &reached);
    pool_guard.saved = false;
}

bool iob_test_hugepages_reserve(iob_backing_t backing, uint64_t free_pages) {
    iob_hugepage_pool_t pool;
    if (iob_hugepage_pool_read(backing, &pool) != ZX_OK) {
        return false;
    }
    if (pool.free >= free_pages) {
        return true;
    }
    if (!pool_guard.saved) {
        pool_guard.saved = true;
        pool_guard.backing = backing;
        pool_guard.previous_total = pool.total;
        atexit(iob_test_hugepages_restore);
    }
    uint64_t reached = 0;
    if (iob_hugepage_pool_resize(backing, pool.total + (free_pages - pool.free), &reached) != ZX_OK) {
        return false;
    }
    return iob_hugepage_pool_read(backing, &pool) == ZX_OK && pool.free >= free_pages;
}

char* iob_test_tempdir(void) {
    const char* base = getenv("TMPDIR");
    char templ[4096];
    snprintf(templ, sizeof templ, "%s/iob-test-XXXXXX", base != NULL ? base : "/tmp");
    char* dir = mkdtemp(templ);
    return dir != NULL ? strdup(dir) : NULL;
}
