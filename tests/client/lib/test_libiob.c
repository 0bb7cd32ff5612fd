/* SPDX-License-Identifier: MIT */
/*
 * libiob's Zircon calls in one process, over fake_conn.c (a real iob_core and map broker
 * in-process instead of gRPC), or against a real iobd when built as an integration test: mapping, placement, unmap splitting, A.4's error order,
 * transfer tokens, PEER_CLOSED after the last unmap.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#ifdef IOB_TEST_REAL_DAEMON
/* Against a real iobd (tests/integration): the core's counters are not reachable. */
#include "map_harness.h"
#define CHECK_MAPPINGS(expr) ((void)(expr))
static uint64_t core_mappings(void) {
    return 0;
}
#else
#include "server/core/iob_core.h"

iob_core_t* fake_conn_core(void);
#define CHECK_MAPPINGS(expr) assert_true(expr)

static uint64_t core_mappings(void) {
    iob_core_stats_t st;
    iob_core_get_stats(fake_conn_core(), &st);
    return st.mappings;
}
#endif

#define PG UINT64_C(4096)
#define R ZX_VM_PERM_READ
#define RW (ZX_VM_PERM_READ | ZX_VM_PERM_WRITE)

typedef struct {
    zx_handle_t ep0;
    zx_handle_t ep1;
} pair_t;

/* Region 0: 4 pages, ep0 RW, ep1 R. Region 1: 2 pages, ep0 only. */
static pair_t make_iob(void) {
    zx_iob_region_t regions[2];
    memset(regions, 0, sizeof regions);
    regions[0].type = ZX_IOB_REGION_TYPE_PRIVATE;
    regions[0].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                        ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    regions[0].size = 4 * PG;
    regions[1].type = ZX_IOB_REGION_TYPE_PRIVATE;
    regions[1].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE;
    regions[1].size = 2 * PG;
    pair_t p;
    assert_int_equal(zx_iob_create(0, regions, 2, &p.ep0, &p.ep1), ZX_OK);
    return p;
}

static void test_map_share_and_partial(void** state) {
    (void)state;
    assert_int_equal(zx_system_get_page_size(), PG);
    pair_t p = make_iob();
    uint64_t base = core_mappings();
    zx_vaddr_t w = 0;
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), RW, 0, p.ep0, 0, 0, 4 * PG, &w), ZX_OK);
    zx_vaddr_t r = 0;
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), R, 0, p.ep1, 0, PG, 2 * PG, &r), ZX_OK);
    zx_vaddr_t r2 = 0;
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), R, 0, p.ep1, 0, 3 * PG, 1, &r2), ZX_OK);
    CHECK_MAPPINGS(core_mappings() == base + 3);
    strcpy((char*)w + PG + 10, "hello");
    strcpy((char*)w + 3 * PG, "last page");
    assert_string_equal((char*)r + 10, "hello");
    assert_string_equal((char*)r2, "last page");

    /* The mapping shows as the region's memfd. */
    zx_info_handle_basic_t info;
    assert_int_equal(zx_object_get_info(p.ep0, ZX_INFO_HANDLE_BASIC, &info, sizeof info, NULL, NULL),
                     ZX_OK);
    char want[64];
    snprintf(want, sizeof want, "memfd:iob-%" PRIu64 "-r0", info.koid);
    FILE* maps = fopen("/proc/self/maps", "r");
    char line[512];
    bool seen = false;
    while (fgets(line, sizeof line, maps) != NULL) {
        seen = seen || strstr(line, want) != NULL;
    }
    fclose(maps);
    assert_true(seen);

    /* Punch a hole in the middle of w: two pieces, still one mapping. */
    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), w + PG, 2 * PG), ZX_OK);
    CHECK_MAPPINGS(core_mappings() == base + 3);
    assert_string_equal((char*)w + 3 * PG, "last page");
    /* Unmapping the hole again finds nothing of ours. */
    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), w + PG, 2 * PG), ZX_ERR_NOT_FOUND);
    /* One range covering both pieces (and the hole) ends the mapping. */
    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), w, 4 * PG), ZX_OK);
    CHECK_MAPPINGS(core_mappings() == base + 2);
    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), r, 2 * PG), ZX_OK);
    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), r2, 1), ZX_OK); /* length rounds up */
    CHECK_MAPPINGS(core_mappings() == base);

    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), w + 1, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), w, 0), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_unmap(p.ep0, w, PG), ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_handle_close(p.ep0), ZX_OK);
    assert_int_equal(zx_handle_close(p.ep1), ZX_OK);
}

/* zx_handle_close_many: invalid entries and the root VMAR skipped, bad ones reported. */
static void test_close_many(void** state) {
    (void)state;
    pair_t p = make_iob();
    pair_t q = make_iob();
    assert_int_equal(zx_handle_close_many(NULL, 0), ZX_OK);
    const zx_handle_t none[3] = {ZX_HANDLE_INVALID, zx_vmar_root_self(), ZX_HANDLE_INVALID};
    assert_int_equal(zx_handle_close_many(none, 3), ZX_OK);
    const zx_handle_t some[4] = {ZX_HANDLE_INVALID, p.ep0, zx_vmar_root_self(), p.ep1};
    assert_int_equal(zx_handle_close_many(some, 4), ZX_OK);
    zx_signals_t sig = 0;
    assert_int_equal(zx_object_wait_one(q.ep1, ZX_IOB_PEER_CLOSED, 0, &sig), ZX_ERR_TIMED_OUT);
    const zx_handle_t mixed[3] = {q.ep0, p.ep0 /* closed above */, ZX_HANDLE_INVALID};
    assert_int_equal(zx_handle_close_many(mixed, 3), ZX_ERR_BAD_HANDLE);
    /* q.ep0 was closed all the same: its peer sees PEER_CLOSED. */
    assert_int_equal(zx_object_wait_one(q.ep1, ZX_IOB_PEER_CLOSED, 0, &sig), ZX_OK);
    assert_true(sig & ZX_IOB_PEER_CLOSED);
    assert_int_equal(zx_handle_close(q.ep0), ZX_ERR_BAD_HANDLE);
    assert_int_equal(zx_handle_close(q.ep1), ZX_OK);
}

static void test_map_error_order(void** state) {
    (void)state;
    pair_t p = make_iob();
    zx_handle_t root = zx_vmar_root_self();
    zx_vaddr_t a = 0;
    uint64_t base = core_mappings();
    /* 1. vmar, 2. ep */
    assert_int_equal(zx_vmar_map_iob(ZX_HANDLE_INVALID, R, 0, p.ep0, 0, 0, PG, &a),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(zx_vmar_map_iob(0x7777777bu, R, 0, p.ep0, 0, 0, PG, &a), ZX_ERR_BAD_HANDLE);
    assert_int_equal(zx_vmar_map_iob(p.ep1, R, 0, p.ep0, 0, 0, PG, &a), ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, 0x7777777bu, 0, 0, PG, &a), ZX_ERR_BAD_HANDLE);
    /* The root VMAR is a handle, of the wrong type for an IOB. */
    assert_int_equal(zx_vmar_map_iob(root, R, 0, root, 0, 0, PG, &a), ZX_ERR_WRONG_TYPE);
    /* 3. region index (wins over our own INVALID_ARGS checks) */
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 2, 0, PG, &a), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 2, 0, 0, &a), ZX_ERR_OUT_OF_RANGE);
    /* 5-6: rights before everything of step 7 */
    zx_handle_t no_map;
    assert_int_equal(zx_handle_duplicate(p.ep0, ZX_DEFAULT_IOB_RIGHTS & ~ZX_RIGHT_MAP, &no_map),
                     ZX_OK);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, no_map, 0, 0, PG, &a), ZX_ERR_ACCESS_DENIED);
    zx_handle_t no_write;
    assert_int_equal(zx_handle_duplicate(p.ep0, ZX_DEFAULT_IOB_RIGHTS & ~ZX_RIGHT_WRITE, &no_write),
                     ZX_OK);
    assert_int_equal(zx_vmar_map_iob(root, RW, 0, no_write, 0, 0, PG, &a), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, no_write, 0, 0, PG, &a), ZX_OK);
    assert_int_equal(zx_vmar_unmap(root, a, PG), ZX_OK);
    assert_int_equal(zx_vmar_map_iob(root, ZX_VM_PERM_WRITE, 0, p.ep0, 0, 0, PG, &a),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_map_iob(root, R | ZX_VM_CAN_MAP_READ, 0, p.ep0, 0, 0, PG, &a),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_map_iob(root, RW, 0, p.ep1, 0, 0, PG, &a), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep1, 1, 0, PG, &a), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep1, 1, 0, 0, &a), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_vmar_map_iob(root, R | ZX_VM_PERM_EXECUTE, 0, p.ep0, 0, 0, PG, &a),
                     ZX_ERR_ACCESS_DENIED);
    /* 7. length, offsets, option bits, overflow */
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 0, 0, 0, &a), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 0, 100, PG, &a), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_map_iob(root, R | (5u << ZX_VM_ALIGN_BASE), 0, p.ep0, 0, 0, PG, &a),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_map_iob(root, R | ZX_VM_SPECIFIC, 0x10000100, p.ep0, 0, 0, PG, &a),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_map_iob(root, R, 0x10000000, p.ep0, 0, 0, PG, &a),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 0, UINT64_MAX - PG + 1, 2 * PG, &a),
                     ZX_ERR_OUT_OF_RANGE);
    /* 8. past the end */
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 0, 0, 5 * PG, &a),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 0, 3 * PG, 2 * PG, &a),
                     ZX_ERR_BUFFER_TOO_SMALL);
    /* Linux limits, after every Zircon check */
    assert_int_equal(
        zx_vmar_map_iob(root, R | ZX_VM_OFFSET_IS_UPPER_LIMIT, 0x10000000, p.ep0, 0, 0, PG, &a),
        ZX_ERR_NOT_SUPPORTED);
    /* A NULL out-pointer is INVALID_ARGS and leaves nothing mapped or counted. */
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 0, 0, PG, NULL), ZX_ERR_INVALID_ARGS);
    CHECK_MAPPINGS(core_mappings() == base);
    zx_handle_close(no_map);
    zx_handle_close(no_write);
    zx_handle_close(p.ep0);
    zx_handle_close(p.ep1);
}

static uintptr_t free_area(size_t len) {
    void* p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    munmap(p, len);
    return (uintptr_t)p;
}

static void test_placement(void** state) {
    (void)state;
    pair_t p = make_iob();
    zx_handle_t root = zx_vmar_root_self();
    uint64_t base = core_mappings();
    uintptr_t at = free_area(16 * PG);
    zx_vaddr_t a = 0;
    assert_int_equal(zx_vmar_map_iob(root, RW | ZX_VM_SPECIFIC, at + PG, p.ep0, 0, 0, 2 * PG, &a),
                     ZX_OK);
    assert_int_equal(a, at + PG);
    ((char*)a)[0] = 'x';
    /* Overlap under SPECIFIC */
    zx_vaddr_t b = 0;
    assert_int_equal(zx_vmar_map_iob(root, R | ZX_VM_SPECIFIC, at, p.ep0, 0, 0, 2 * PG, &b),
                     ZX_ERR_ALREADY_EXISTS);
    /* SPECIFIC_OVERWRITE over our mapping and free space: replaces it, ends the old record. */
    assert_int_equal(
        zx_vmar_map_iob(root, R | ZX_VM_SPECIFIC_OVERWRITE, at, p.ep0, 0, 2 * PG, 2 * PG, &b),
        ZX_OK);
    assert_int_equal(b, at);
    CHECK_MAPPINGS(core_mappings() == base + 2); /* the old one still has its second page */
    assert_int_equal(zx_vmar_unmap(root, at, 3 * PG), ZX_OK);
    CHECK_MAPPINGS(core_mappings() == base);
    /* ... but never over memory that is not an IOB mapping. */
    void* anon = mmap((void*)(at + 8 * PG), PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                      -1, 0);
    assert_true(anon != MAP_FAILED);
    assert_int_equal(
        zx_vmar_map_iob(root, R | ZX_VM_SPECIFIC_OVERWRITE, at + 6 * PG, p.ep0, 0, 0, 4 * PG, &b),
        ZX_ERR_ALREADY_EXISTS);
    CHECK_MAPPINGS(core_mappings() == base);
    assert_int_equal(zx_vmar_unmap(root, at + 8 * PG, PG), ZX_ERR_NOT_FOUND);
    munmap(anon, PG);
    /* The gaps claimed for the failed overwrite were given back. */
    assert_int_equal(zx_vmar_map_iob(root, R | ZX_VM_SPECIFIC, at + 6 * PG, p.ep0, 0, 0, 2 * PG, &b),
                     ZX_OK);
    assert_int_equal(zx_vmar_unmap(root, b, 2 * PG), ZX_OK);
    /* Alignment: over-map and trim. */
    assert_int_equal(zx_vmar_map_iob(root, R | ZX_VM_ALIGN_2MB, 0, p.ep0, 0, 0, PG, &b), ZX_OK);
    assert_int_equal(b & (2 * 1024 * 1024 - 1), 0);
    assert_int_equal(zx_vmar_unmap(root, b, PG), ZX_OK);
    CHECK_MAPPINGS(core_mappings() == base);
    zx_handle_close(p.ep0);
    zx_handle_close(p.ep1);
}

static void test_tokens_and_peer_closed(void** state) {
    (void)state;
    pair_t p = make_iob();
    zx_handle_t root = zx_vmar_root_self();
    char token[IOB_TOKEN_SIZE];
    zx_handle_t no_transfer;
    assert_int_equal(
        zx_handle_duplicate(p.ep1, ZX_DEFAULT_IOB_RIGHTS & ~ZX_RIGHT_TRANSFER, &no_transfer), ZX_OK);
    assert_int_equal(iob_handle_export(no_transfer, token), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_handle_close(no_transfer), ZX_OK); /* still valid after the refusal */

    zx_handle_t reduced;
    zx_rights_t rights = ZX_RIGHT_TRANSFER | ZX_RIGHT_MAP | ZX_RIGHT_READ | ZX_RIGHT_WAIT;
    assert_int_equal(zx_handle_replace(p.ep1, rights, &reduced), ZX_OK);
    assert_int_equal(iob_handle_export(reduced, token), ZX_OK);
    assert_true(strlen(token) > 0 && strlen(token) < IOB_TOKEN_SIZE);
    assert_int_equal(zx_handle_close(reduced), ZX_ERR_BAD_HANDLE); /* consumed */
    zx_handle_t imported;
    assert_int_equal(iob_handle_import(token, &imported), ZX_OK);
    assert_int_equal(iob_handle_import(token, &imported), ZX_ERR_NOT_FOUND);
    zx_handle_t x;
    assert_int_equal(iob_handle_import("no-such-token", &x), ZX_ERR_NOT_FOUND);
    zx_info_handle_basic_t info;
    assert_int_equal(
        zx_object_get_info(imported, ZX_INFO_HANDLE_BASIC, &info, sizeof info, NULL, NULL), ZX_OK);
    assert_int_equal(info.rights, rights);

    /* ep1 maps; ep0 closes: PEER_CLOSED for... ep1 only once ep0 has no mappings left. */
    zx_vaddr_t m0 = 0;
    assert_int_equal(zx_vmar_map_iob(root, RW, 0, p.ep0, 0, 0, PG, &m0), ZX_OK);
    assert_int_equal(zx_handle_close(p.ep0), ZX_OK);
    zx_signals_t seen = 0;
    assert_int_equal(zx_object_wait_one(imported, ZX_IOB_PEER_CLOSED, 0, &seen),
                     ZX_ERR_TIMED_OUT);
    assert_int_equal(seen & ZX_IOB_PEER_CLOSED, 0);
    /* Mapping after the peer has closed still works. */
    zx_vaddr_t m1 = 0;
    assert_int_equal(zx_vmar_map_iob(root, R, 0, imported, 0, 0, PG, &m1), ZX_OK);
    assert_int_equal(zx_vmar_unmap(root, m0, PG), ZX_OK);
    assert_int_equal(zx_object_wait_one(imported, ZX_IOB_PEER_CLOSED, zx_deadline_after(ZX_SEC(5)),
                                        &seen),
                     ZX_OK);
    assert_true(seen & ZX_IOB_PEER_CLOSED);
    assert_int_equal(zx_vmar_unmap(root, m1, PG), ZX_OK);
    assert_int_equal(zx_handle_close(imported), ZX_OK);
}

static void test_small_calls(void** state) {
    (void)state;
    assert_int_equal(zx_handle_close(ZX_HANDLE_INVALID), ZX_OK);
    assert_int_equal(zx_object_get_property(1, ZX_PROP_NAME, NULL, 32), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_object_set_property(1, ZX_PROP_NAME, NULL, 32), ZX_ERR_INVALID_ARGS);
    zx_handle_t a;
    zx_handle_t b;
    assert_int_equal(zx_iob_create(0, NULL, 1, NULL, &b), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_iob_create(0, NULL, 65, &a, &b), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(zx_iob_create(0, NULL, 0, &a, &b), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_handle_export(1, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_handle_import(NULL, &a), ZX_ERR_INVALID_ARGS);
    zx_time_t t0 = zx_clock_get_monotonic();
    assert_true(zx_deadline_after(ZX_SEC(1)) > t0);
    assert_int_equal(zx_deadline_after(ZX_TIME_INFINITE), ZX_TIME_INFINITE);
    assert_string_equal(zx_status_get_string(ZX_ERR_NOT_FOUND), "ZX_ERR_NOT_FOUND");
    pair_t p = make_iob();
    zx_handle_t d;
    assert_int_equal(zx_handle_duplicate(p.ep0, ZX_RIGHT_SAME_RIGHTS, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_handle_duplicate(p.ep0, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    assert_int_equal(zx_handle_close(d), ZX_OK);
    assert_int_equal(zx_handle_close(p.ep0), ZX_OK);
    assert_int_equal(zx_handle_close(p.ep1), ZX_OK);
}

/*
 * zx_vmar_root_self() where an IOB or a shared region is expected: a valid handle of
 * another type, so WRONG_TYPE at each call's handle step (docs/zircon-iob.md A.3 7.2, A.4
 * step 2, A.5 and A.6 step 2, A.10), and the calls any object takes answer as Zircon does
 * for a VMAR (no SIGNAL, SIGNAL_PEER, WAIT or property rights: ACCESS_DENIED).
 */
static void test_root_vmar_wrong_type(void** state) {
    (void)state;
    zx_handle_t root = zx_vmar_root_self();
    pair_t p = make_iob();
    zx_vaddr_t a = 0;
    assert_int_equal(zx_vmar_map_iob(root, R, 0, root, 0, 0, PG, &a), ZX_ERR_WRONG_TYPE);
    /* Step 2 comes before step 3: a bad region index does not hide the type. */
    assert_int_equal(zx_vmar_map_iob(root, R, 0, root, 9, 0, PG, &a), ZX_ERR_WRONG_TYPE);

    zx_info_iob_t iob_info;
    zx_iob_region_info_t regions[2];
    size_t actual = 7, avail = 7;
    assert_int_equal(zx_object_get_info(root, ZX_INFO_IOB, &iob_info, sizeof iob_info, &actual,
                                        &avail),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_object_get_info(root, ZX_INFO_IOB_REGIONS, regions, sizeof regions,
                                        &actual, &avail),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(actual, 7);
    assert_int_equal(avail, 7);
    assert_int_equal(zx_object_get_info(root, ZX_INFO_HANDLE_VALID, NULL, 0, NULL, NULL), ZX_OK);
    zx_info_handle_basic_t basic;
    memset(&basic, 0xFF, sizeof basic);
    assert_int_equal(zx_object_get_info(root, ZX_INFO_HANDLE_BASIC, &basic, sizeof basic, NULL,
                                        NULL),
                     ZX_OK);
    assert_int_equal(basic.type, ZX_OBJ_TYPE_VMAR);
    assert_int_equal(basic.rights & (ZX_RIGHT_SIGNAL | ZX_RIGHT_WAIT), 0);

    assert_int_equal(zx_object_signal(root, 0, ZX_USER_SIGNAL_0), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_object_signal_peer(root, 0, ZX_USER_SIGNAL_0), ZX_ERR_ACCESS_DENIED);
    char name[ZX_MAX_NAME_LEN] = "x";
    assert_int_equal(zx_object_get_property(root, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_object_set_property(root, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_ACCESS_DENIED);
    zx_signals_t seen = 0;
    assert_int_equal(zx_object_wait_one(root, ZX_USER_SIGNAL_0, 0, &seen), ZX_ERR_ACCESS_DENIED);
    /* Closing it does nothing, alone or among others: it still works afterwards. */
    assert_int_equal(zx_handle_close(root), ZX_OK);
    const zx_handle_t some[2] = {root, ZX_HANDLE_INVALID};
    assert_int_equal(zx_handle_close_many(some, 2), ZX_OK);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, p.ep0, 0, 0, PG, &a), ZX_OK);
    assert_int_equal(zx_vmar_unmap(root, a, PG), ZX_OK);

#ifdef IOB_TEST_REAL_DAEMON
    /* The mediated calls and shared regions (not in the in-process fake connection). */
    zx_iob_region_t shared_region;
    memset(&shared_region, 0, sizeof shared_region);
    shared_region.type = ZX_IOB_REGION_TYPE_SHARED;
    shared_region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE;
    shared_region.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    shared_region.shared_region.shared_region = root;
    zx_handle_t e0 = ZX_HANDLE_INVALID, e1 = ZX_HANDLE_INVALID;
    assert_int_equal(zx_iob_create(0, &shared_region, 1, &e0, &e1), ZX_ERR_WRONG_TYPE);
    /* And a real shared region where an IOB is expected, the other way round. */
    zx_handle_t sr = ZX_HANDLE_INVALID;
    assert_int_equal(zx_iob_create_shared_region(0, 2 * PG, &sr), ZX_OK);
    shared_region.shared_region.shared_region = p.ep0;
    assert_int_equal(zx_iob_create(0, &shared_region, 1, &e0, &e1), ZX_ERR_WRONG_TYPE);

    char byte = 'x';
    zx_iovec_t vec = {&byte, 1};
    uint32_t id = 0;
    assert_int_equal(zx_iob_writev(root, 0, 0, &vec, 1), ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_iob_allocate_id(root, 0, 0, NULL, 0, &id), ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_iob_writev(sr, 0, 0, &vec, 1), ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_iob_allocate_id(sr, 0, 0, NULL, 0, &id), ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_vmar_map_iob(root, R, 0, sr, 0, 0, PG, &a), ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_object_get_info(sr, ZX_INFO_IOB, &iob_info, sizeof iob_info, NULL, NULL),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(zx_handle_close(sr), ZX_OK);
#endif
    assert_int_equal(zx_handle_close(p.ep0), ZX_OK);
    assert_int_equal(zx_handle_close(p.ep1), ZX_OK);
}

/* Several threads map, write, check and unmap at once: the table and the broker agree. */
static void* map_worker(void* arg) {
    zx_handle_t ep = *(zx_handle_t*)arg;
    for (int i = 0; i < 50; i++) {
        zx_vaddr_t a = 0;
        if (zx_vmar_map_iob(zx_vmar_root_self(), RW, 0, ep, 0, 0, 2 * PG, &a) != ZX_OK) {
            return (void*)1;
        }
        ((volatile char*)a)[PG] = (char)i;
        if (zx_vmar_unmap(zx_vmar_root_self(), a + PG, PG) != ZX_OK ||
            zx_vmar_unmap(zx_vmar_root_self(), a, PG) != ZX_OK) {
            return (void*)2;
        }
    }
    return NULL;
}

static void test_threads(void** state) {
    (void)state;
    pair_t p = make_iob();
    uint64_t base = core_mappings();
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, map_worker, &p.ep0), 0);
    }
    for (int i = 0; i < 4; i++) {
        void* rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    CHECK_MAPPINGS(core_mappings() == base);
    zx_handle_close(p.ep0);
    zx_handle_close(p.ep1);
}

/* Explicit connections: one per process (see tests/integration for connect and close). */
static void test_explicit_connection_exclusive(void** state) {
    (void)state;
    pair_t p = make_iob(); /* the implicit connection is open now */
    iob_client_t* c = NULL;
    assert_int_equal(iob_client_connect(NULL, &c), ZX_ERR_ALREADY_BOUND);
    assert_null(c);
    assert_int_equal(iob_client_connect(NULL, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_client_session_id(NULL), 0);
    iob_client_close(NULL);
    zx_handle_close(p.ep0);
    zx_handle_close(p.ep1);
}

int main(void) {
#ifdef IOB_TEST_REAL_DAEMON
    map_daemon_t daemon;
    map_daemon_start(&daemon, NULL);
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_share_and_partial),
        cmocka_unit_test(test_map_error_order),
        cmocka_unit_test(test_close_many),
        cmocka_unit_test(test_placement),
        cmocka_unit_test(test_tokens_and_peer_closed),
        cmocka_unit_test(test_small_calls),
        cmocka_unit_test(test_root_vmar_wrong_type),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_explicit_connection_exclusive),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
#ifdef IOB_TEST_REAL_DAEMON
    map_daemon_stop(&daemon);
#endif
    return rc;
}
