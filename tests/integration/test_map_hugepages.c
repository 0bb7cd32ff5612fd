/* SPDX-License-Identifier: MIT */
/*
 * Mapping with a hugepage-backed iobd (--hugepages 2M): the page size is 2 MiB for every
 * rule (alignment, rounding, partial unmaps), and the time to import an endpoint and map
 * a 64 MiB region ready to read (ZX_VM_MAP_RANGE) is printed for the record (the target
 * is under 0.5 ms in a second process; bench/ owns the real measurement). Skipped when
 * the 2 MiB pool cannot hold the test's pages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "client/testkit/hugepage_pool.h"
#include "map_harness.h"
#include "test_regions.h"
#include "test_util.h"

#define MIB (UINT64_C(1) << 20)

static void test_hugepage_mapping(void** state) {
    (void)state;
    uint64_t pg = zx_system_get_page_size();
    assert_int_equal(pg, 2 * MIB);
    zx_iob_region_t r = test_private_region(64 * MIB, ZX_IOB_ACCESS_EP0_CAN_MAP_READ |
                                                          ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                                                          ZX_IOB_ACCESS_EP1_CAN_MAP_READ);
    zx_handle_t ep0;
    zx_handle_t ep1;
    assert_int_equal(zx_iob_create(0, &r, 1, &ep0, &ep1), ZX_OK);
    zx_handle_t root = zx_vmar_root_self();
    zx_vaddr_t w = 0;
    assert_int_equal(zx_vmar_map_iob(root, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, ep0, 0, 0,
                                     64 * MIB, &w),
                     ZX_OK);
    assert_int_equal(w & (pg - 1), 0);
    strcpy((char*)w + 63 * MIB, "end of a huge region");

    /* 4 KiB offsets are not page-aligned here. */
    zx_vaddr_t a = 0;
    assert_int_equal(zx_vmar_map_iob(root, ZX_VM_PERM_READ, 0, ep0, 0, 4096, pg, &a),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_unmap(root, w + 4096, pg), ZX_ERR_INVALID_ARGS);
    /* Partial unmap at 2 MiB granularity keeps the rest. */
    assert_int_equal(zx_vmar_unmap(root, w, 2 * pg), ZX_OK);
    assert_string_equal((const char*)w + 63 * MIB, "end of a huge region");

    char token[IOB_TOKEN_SIZE];
    assert_int_equal(iob_handle_export(ep1, token), ZX_OK);
    zx_time_t t0 = zx_clock_get_monotonic();
    zx_handle_t imported;
    assert_int_equal(iob_handle_import(token, &imported), ZX_OK);
    zx_vaddr_t rd = 0;
    assert_int_equal(zx_vmar_map_iob(root, ZX_VM_PERM_READ | ZX_VM_MAP_RANGE, 0, imported, 0, 0,
                                     64 * MIB, &rd),
                     ZX_OK);
    zx_duration_t took = zx_clock_get_monotonic() - t0;
    printf("# import + map 64 MiB (2 MiB pages, populated): %.3f ms\n", (double)took / 1e6);
    assert_string_equal((const char*)rd + 63 * MIB, "end of a huge region");
    assert_int_equal(zx_vmar_unmap(root, rd, 64 * MIB), ZX_OK);
    assert_int_equal(zx_vmar_unmap(root, w, 64 * MIB), ZX_OK);
    zx_handle_close(imported);
    zx_handle_close(ep0);
}

int main(void) {
    if (!iob_tk_pool_reserve(IOB_BACKING_2M, 40, NULL, 0)) {
        printf("SKIPPED: no room for 40 free 2 MiB hugepages\n");
        return 77;
    }
    map_daemon_t daemon;
    const char* extra[] = {"--hugepages", "2M", NULL};
    map_daemon_start(&daemon, extra);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hugepage_mapping),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    map_daemon_stop(&daemon);
    iob_tk_pool_restore();
    return rc;
}
