/* SPDX-License-Identifier: MIT */
/*
 * Tests client/lib/mapchecks.c: the client's own step-7 checks of zx_vmar_map_iob and how
 * they combine with iobd's answer into the status Zircon's order gives (docs/zircon-iob.md A.4).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client/lib/libiob.h"

#define PG UINT64_C(4096)
#define RW (ZX_VM_PERM_READ | ZX_VM_PERM_WRITE)

static void test_local_checks(void** state) {
    (void)state;
    assert_int_equal(iob__map_local_checks(RW, 0, 0, PG, PG), ZX_OK);
    assert_int_equal(iob__map_local_checks(RW, 0, 0, 1, PG), ZX_OK); /* length rounds up */
    assert_int_equal(iob__map_local_checks(RW | (1u << 16), 0, 0, PG, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob__map_local_checks(RW | (9u << ZX_VM_ALIGN_BASE), 0, 0, PG, PG),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob__map_local_checks(RW | (33u << ZX_VM_ALIGN_BASE), 0, 0, PG, PG),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob__map_local_checks(RW | ZX_VM_ALIGN_2MB, 0, 0, PG, PG), ZX_OK);
    assert_int_equal(iob__map_local_checks(RW, 0, 0, 0, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob__map_local_checks(RW, 0, 100, PG, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob__map_local_checks(RW | ZX_VM_SPECIFIC, 0x10001000, 0, PG, PG), ZX_OK);
    assert_int_equal(iob__map_local_checks(RW | ZX_VM_SPECIFIC, 0x10000100, 0, PG, PG),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(
        iob__map_local_checks(RW | ZX_VM_SPECIFIC | ZX_VM_ALIGN_2MB, 0x10001000, 0, PG, PG),
        ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob__map_local_checks(RW, 0x10000000, 0, PG, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob__map_local_checks(RW | ZX_VM_OFFSET_IS_UPPER_LIMIT, 0x10000000, 0, PG, PG),
                     ZX_OK);
    assert_int_equal(iob__map_local_checks(RW, 0, UINT64_MAX - PG + 1, PG, PG),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob__map_local_checks(RW, 0, 0, UINT64_MAX, PG), ZX_ERR_OUT_OF_RANGE);
    /* Hugepage servers: the page size is 2 MiB, so 4 KiB offsets are unaligned. */
    assert_int_equal(iob__map_local_checks(RW, 0, PG, PG, 2 * 1024 * 1024), ZX_ERR_INVALID_ARGS);
}

static void test_merge(void** state) {
    (void)state;
    /* No local failure: the server's status stands. */
    assert_int_equal(iob__map_merge_status(ZX_OK, ZX_ERR_ACCESS_DENIED, RW, 0, PG, PG),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob__map_merge_status(ZX_OK, ZX_OK, RW, 0, PG, PG), ZX_OK);
    /* Earlier server checks win over ours. */
    assert_int_equal(iob__map_merge_status(ZX_ERR_INVALID_ARGS, ZX_ERR_BAD_HANDLE, RW, 0, PG, PG),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob__map_merge_status(ZX_ERR_INVALID_ARGS, ZX_ERR_WRONG_TYPE, RW, 0, PG, PG),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(
        iob__map_merge_status(ZX_ERR_OUT_OF_RANGE, ZX_ERR_ACCESS_DENIED, RW, UINT64_MAX, PG, PG),
        ZX_ERR_ACCESS_DENIED);
    /* A region index past the end (no overflow to blame) beats our INVALID_ARGS. */
    assert_int_equal(iob__map_merge_status(ZX_ERR_INVALID_ARGS, ZX_ERR_OUT_OF_RANGE, RW, 0, PG, PG),
                     ZX_ERR_OUT_OF_RANGE);
    /* Ours beat the server's later ones. */
    assert_int_equal(iob__map_merge_status(ZX_ERR_INVALID_ARGS, ZX_OK, RW, 0, PG, PG),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(
        iob__map_merge_status(ZX_ERR_INVALID_ARGS, ZX_ERR_BUFFER_TOO_SMALL, RW, 0, PG, PG),
        ZX_ERR_INVALID_ARGS);
    assert_int_equal(
        iob__map_merge_status(ZX_ERR_OUT_OF_RANGE, ZX_ERR_BUFFER_TOO_SMALL, RW, UINT64_MAX, PG, PG),
        ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(
        iob__map_merge_status(ZX_ERR_OUT_OF_RANGE, ZX_ERR_INVALID_ARGS, RW, UINT64_MAX, PG, PG),
        ZX_ERR_INVALID_ARGS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_checks),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
