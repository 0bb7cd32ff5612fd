/* SPDX-License-Identifier: MIT */
/*
 * Tests for shm/region.c on hugetlbfs: pages leave the pool at create, an exhausted pool is
 * ZX_ERR_NO_MEMORY at create with nothing left behind, and "auto" follows the free count.
 *
 * Needs root (to size /sys/kernel/mm/hugepages/.../nr_hugepages) and holds the ctest lock
 * "hugepage_pool"; the pool's previous size is restored at exit. Without root or hugetlb
 * support the whole executable exits 77 (skipped). The 1G case is skipped on its own when
 * the kernel cannot find a free gigabyte of contiguous memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h> /* MFD_HUGE_2MB; before sys/mman.h */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/testkit/hugepage_pool.h"
#include "shm/region.h"
#include "test_util.h"

#define P2M (UINT64_C(2) << 20)
#define P1G (UINT64_C(1) << 30)

/* Enough for every case below; 16 MiB of memory while the test runs. */
#define POOL_PAGES 8

static uint64_t free_pages(iob_backing_t backing) {
    iob_hugepage_pool_t pool;
    assert_int_equal(iob_hugepage_pool_read(backing, &pool), ZX_OK);
    return pool.free;
}

static void check_region_invariants(const iob_region_t* region, uint64_t size) {
    const char* problem = iob_test_region_problem(region, size);
    if (problem != NULL) {
        fail_msg("region of %llu bytes: %s", (unsigned long long)size, problem);
    }
}

static void test_2m_takes_pages_at_create(void** state) {
    (void)state;
    uint64_t before = free_pages(IOB_BACKING_2M);
    assert_true(before >= 3);
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_2M, 3 * P2M, "iob-test-2m", &region), ZX_OK);
    /* Taken now, by fallocate: not at first touch. */
    assert_int_equal(free_pages(IOB_BACKING_2M), before - 3);
    assert_int_equal(region.backing, IOB_BACKING_2M);
    check_region_invariants(&region, 3 * P2M);

    unsigned char* p = mmap(NULL, 3 * P2M, PROT_READ | PROT_WRITE, MAP_SHARED, region.fd, 0);
    assert_true(p != MAP_FAILED);
    for (uint64_t i = 0; i < 3 * P2M; i += 512) {
        if (p[i] != 0) {
            fail_msg("byte %llu is not zero", (unsigned long long)i);
        }
    }
    p[3 * P2M - 1] = 1;
    /* Touching the pages takes nothing more from the pool. */
    assert_int_equal(free_pages(IOB_BACKING_2M), before - 3);
    munmap(p, 3 * P2M);

    iob_region_destroy(&region);
    assert_int_equal(free_pages(IOB_BACKING_2M), before);
}

static void test_2m_size_zero(void** state) {
    (void)state;
    uint64_t before = free_pages(IOB_BACKING_2M);
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_2M, 0, "iob-test-2m-empty", &region), ZX_OK);
    check_region_invariants(&region, 0);
    assert_int_equal(free_pages(IOB_BACKING_2M), before);
    iob_region_destroy(&region);
}

static void test_2m_not_page_multiple(void** state) {
    (void)state;
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_2M, 4096, "x", &region), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_region_create(IOB_BACKING_2M, P2M + 4096, "x", &region),
                     ZX_ERR_INVALID_ARGS);
}

static void test_2m_pool_exhausted(void** state) {
    (void)state;
    int fds = iob_test_count_open_fds();
    uint64_t all = free_pages(IOB_BACKING_2M);
    assert_true(all >= 2);

    /* Empty pool: not a single page. */
    iob_region_t everything;
    assert_int_equal(iob_region_create(IOB_BACKING_2M, all * P2M, "iob-test-all", &everything),
                     ZX_OK);
    assert_int_equal(free_pages(IOB_BACKING_2M), 0);
    iob_region_t region = {.fd = -7};
    assert_int_equal(iob_region_create(IOB_BACKING_2M, P2M, "iob-test-none", &region),
                     ZX_ERR_NO_MEMORY);
    assert_int_equal(region.fd, -7);
    assert_int_equal(free_pages(IOB_BACKING_2M), 0);
    iob_region_destroy(&everything);
    assert_int_equal(iob_test_count_open_fds(), fds);

    /*
     * One page short: fallocate takes the free page, then fails with ENOSPC, and the kernel
     * keeps that page in the file. Create must close the file so the page goes back.
     */
    iob_region_t most;
    assert_int_equal(iob_region_create(IOB_BACKING_2M, (all - 1) * P2M, "iob-test-most", &most),
                     ZX_OK);
    assert_int_equal(free_pages(IOB_BACKING_2M), 1);
    assert_int_equal(iob_region_create(IOB_BACKING_2M, 2 * P2M, "iob-test-short", &region),
                     ZX_ERR_NO_MEMORY);
    assert_int_equal(region.fd, -7);
    assert_int_equal(free_pages(IOB_BACKING_2M), 1);
    assert_int_equal(iob_test_count_open_fds(), fds + 1);
    iob_region_destroy(&most);
    assert_int_equal(free_pages(IOB_BACKING_2M), all);
    assert_int_equal(iob_test_count_open_fds(), fds);
}

static void test_2m_readonly(void** state) {
    (void)state;
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_2M, P2M, "iob-test-2m-ro", &region), ZX_OK);
    /* hugetlbfs has no write(2) (EINVAL), though pread works... */
    errno = 0;
    assert_int_equal(pwrite(region.fd, "iob", 4, 0), -1);
    assert_int_equal(errno, EINVAL);
    unsigned char* w = mmap(NULL, P2M, PROT_READ | PROT_WRITE, MAP_SHARED, region.fd, 0);
    assert_true(w != MAP_FAILED);
    memcpy(w, "iob", 4); /* ...so data goes in through a mapping */
    int ro = -1;
    assert_int_equal(iob_region_open_readonly(&region, &ro), ZX_OK);
    errno = 0;
    assert_true(mmap(NULL, P2M, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED);
    assert_int_equal(errno, EACCES);
    unsigned char* r = mmap(NULL, P2M, PROT_READ, MAP_SHARED, ro, 0);
    assert_true(r != MAP_FAILED);
    assert_string_equal((const char*)r, "iob");
    errno = 0;
    assert_int_equal(mprotect(r, P2M, PROT_READ | PROT_WRITE), -1);
    assert_int_equal(errno, EACCES);
    munmap(r, P2M);
    munmap(w, P2M);
    close(ro);
    iob_region_destroy(&region);
}

static void test_choose_follows_pool(void** state) {
    (void)state;
    iob_backing_t out = IOB_BACKING_1G;
    uint64_t avail = free_pages(IOB_BACKING_2M);
    assert_true(avail >= 2);

    assert_int_equal(iob_backing_choose("auto", avail, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_2M);
    assert_int_equal(iob_backing_choose("auto", 0, &out), ZX_OK); /* 0 counts as 1 */
    assert_int_equal(out, IOB_BACKING_2M);
    assert_int_equal(iob_backing_choose("auto", avail + 1, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_4K);
    /* Insisting ignores the auto threshold while the pool has a page. */
    out = IOB_BACKING_4K;
    assert_int_equal(iob_backing_choose("2M", avail + 1, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_2M);
    assert_int_equal(iob_backing_choose("off", 0, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_4K);

    /* With the pool drained, auto falls back and insisting is NO_MEMORY. */
    iob_region_t all;
    assert_int_equal(iob_region_create(IOB_BACKING_2M, avail * P2M, "iob-test-drain", &all), ZX_OK);
    out = IOB_BACKING_1G;
    assert_int_equal(iob_backing_choose("auto", 0, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_4K);
    out = IOB_BACKING_1G;
    assert_int_equal(iob_backing_choose("2M", 0, &out), ZX_ERR_NO_MEMORY);
    assert_int_equal(out, IOB_BACKING_1G);
    iob_region_destroy(&all);
}

static void test_pool_resize_reports_reached(void** state) {
    (void)state;
    iob_hugepage_pool_t pool;
    assert_int_equal(iob_hugepage_pool_read(IOB_BACKING_2M, &pool), ZX_OK);
    uint64_t reached = 0;
    assert_int_equal(iob_hugepage_pool_resize(IOB_BACKING_2M, pool.total + 1, &reached), ZX_OK);
    assert_int_equal(reached, pool.total + 1);
    assert_int_equal(free_pages(IOB_BACKING_2M), pool.free + 1);
    assert_int_equal(iob_hugepage_pool_resize(IOB_BACKING_2M, pool.total, &reached), ZX_OK);
    assert_int_equal(reached, pool.total);
}

static int child_resize(void* arg) {
    (void)arg;
    uint64_t reached = 0;
    return iob_hugepage_pool_resize(IOB_BACKING_2M, 1, &reached) == ZX_ERR_ACCESS_DENIED ? 0 : 1;
}

static void test_pool_resize_unprivileged(void** state) {
    (void)state;
    int result = iob_test_run_as(IOB_TEST_NOBODY_UID, IOB_TEST_NOGROUP_GID, child_resize, NULL);
    if (result == IOB_TEST_SKIP) {
        skip();
    }
    assert_int_equal(result, 0);
}

static void test_1g_region(void** state) {
    (void)state;
    iob_hugepage_pool_t pool;
    if (iob_hugepage_pool_read(IOB_BACKING_1G, &pool) != ZX_OK) {
        print_message("no 1G hugepage size on this machine\n");
        skip();
    }
    if (!iob_tk_pool_reserve(IOB_BACKING_1G, 1, NULL, 0)) {
        print_message("the kernel could not set aside a 1G page\n");
        skip();
    }
    uint64_t before = free_pages(IOB_BACKING_1G);
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_1G, P1G, "iob-test-1g", &region), ZX_OK);
    assert_int_equal(free_pages(IOB_BACKING_1G), before - 1);
    check_region_invariants(&region, P1G);
    assert_int_equal(iob_region_create(IOB_BACKING_1G, P2M, "x", &region), ZX_ERR_INVALID_ARGS);
    iob_backing_t out = IOB_BACKING_4K;
    if (before == 1) {
        assert_int_equal(iob_backing_choose("1G", 0, &out), ZX_ERR_NO_MEMORY);
    }
    iob_region_destroy(&region);
    assert_int_equal(free_pages(IOB_BACKING_1G), before);
    assert_int_equal(iob_backing_choose("1G", 0, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_1G);
    /* Give the gigabyte back now rather than at exit. */
    iob_tk_pool_restore();
    assert_true(iob_tk_pool_reserve(IOB_BACKING_2M, POOL_PAGES, NULL, 0));
}

int main(void) {
    if (geteuid() != 0) {
        iob_test_skip("needs root to size the hugepage pool");
    }
    int probe = memfd_create("iob-probe", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
    if (probe < 0) {
        iob_test_skip("memfd_create(MFD_HUGETLB | MFD_HUGE_2MB) is not supported here");
    }
    close(probe);
    if (!iob_tk_pool_reserve(IOB_BACKING_2M, POOL_PAGES, NULL, 0)) {
        iob_test_skip("could not reserve 2M hugepages");
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_2m_takes_pages_at_create),
        cmocka_unit_test(test_2m_size_zero),
        cmocka_unit_test(test_2m_not_page_multiple),
        cmocka_unit_test(test_2m_pool_exhausted),
        cmocka_unit_test(test_2m_readonly),
        cmocka_unit_test(test_choose_follows_pool),
        cmocka_unit_test(test_pool_resize_reports_reached),
        cmocka_unit_test(test_pool_resize_unprivileged),
        cmocka_unit_test(test_1g_region),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    iob_tk_pool_restore();
    return failed;
}
