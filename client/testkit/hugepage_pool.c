/* SPDX-License-Identifier: MIT */
/* Borrowed hugepages, given back at exit (hugepage_pool.h). */
#include "client/testkit/hugepage_pool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zircon/status.h>

/* Pages added by this process, indexed by iob_backing_t (the 4K slot stays 0). */
static volatile uint64_t g_added[3];
static bool g_atexit_registered;

static const char* pool_name(iob_backing_t backing) {
    return backing == IOB_BACKING_1G ? "1 GiB" : "2 MiB";
}

void iob_tk_pool_restore(void) {
    for (int b = IOB_BACKING_2M; b <= IOB_BACKING_1G; b++) {
        uint64_t added = g_added[b];
        iob_hugepage_pool_t pool;
        if (added == 0 || iob_hugepage_pool_read((iob_backing_t)b, &pool) != ZX_OK) {
            continue;
        }
        uint64_t reached = 0;
        uint64_t target = pool.total > added ? pool.total - added : 0;
        if (iob_hugepage_pool_resize((iob_backing_t)b, target, &reached) == ZX_OK) {
            g_added[b] = reached > target ? reached - target : 0;
        }
    }
}

__attribute__((format(printf, 3, 4))) static void note_set(char* note, size_t len, const char* fmt,
                                                           ...) {
    if (note != NULL && len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(note, len, fmt, ap);
        va_end(ap);
    }
}

bool iob_tk_pool_reserve(iob_backing_t backing, uint64_t free_pages, char* note, size_t note_len) {
    iob_hugepage_pool_t pool;
    if ((backing != IOB_BACKING_2M && backing != IOB_BACKING_1G) ||
        iob_hugepage_pool_read(backing, &pool) != ZX_OK) {
        note_set(note, note_len, "no %s hugepage pool on this kernel", pool_name(backing));
        return false;
    }
    if (pool.free >= free_pages) {
        note_set(note, note_len, "%s pool: %llu pages, %llu free (enough)", pool_name(backing),
                 (unsigned long long)pool.total, (unsigned long long)pool.free);
        return true;
    }
    if (!g_atexit_registered) {
        g_atexit_registered = true;
        atexit(iob_tk_pool_restore);
    }
    uint64_t reached = pool.total;
    zx_status_t st =
        iob_hugepage_pool_resize(backing, pool.total + (free_pages - pool.free), &reached);
    /* Count only what the kernel really added: it stops short when memory is low. */
    g_added[backing] += reached > pool.total ? reached - pool.total : 0;
    iob_hugepage_pool_t now = pool;
    if (st != ZX_OK || iob_hugepage_pool_read(backing, &now) != ZX_OK) {
        note_set(note, note_len, "cannot grow the %s pool: %s", pool_name(backing),
                 zx_status_get_string(st));
        return false;
    }
    note_set(note, note_len,
             "%s pool grown %llu -> %llu pages (%llu free) for this run, given "
             "back at exit",
             pool_name(backing), (unsigned long long)pool.total, (unsigned long long)now.total,
             (unsigned long long)now.free);
    return now.free >= free_pages;
}
