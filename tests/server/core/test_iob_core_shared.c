/* SPDX-License-Identifier: MIT */
/* Shared regions in iob_core (zx_iob_create_shared_region and the shared-region paths of
 * create, map, info, handles and lifetimes): docs/zircon-iob.md A.3 7.2, A.9, A.10, every
 * documented error in its order. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core_fixture.h"
#include "mediated_fixture.h"
#include "shm/mediated.h"
#include "test_util.h"

/* ==== zx_iob_create_shared_region ==== */

static void test_shared_create_errors_in_order(void** state) {
    fx_t* f = *state;
    zx_handle_t h = 0;
    iob_core_t* c = f->core;
    /* out NULL first, whatever else is wrong. */
    assert_int_equal(iob_core_shared_region_create(c, f->a, 1, 0, NULL), ZX_ERR_INVALID_ARGS);
    /* Options, size 0, a size that is not whole pages: INVALID_ARGS, nothing rounded. */
    assert_int_equal(iob_core_shared_region_create(c, f->a, 1, P, &h), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, 0, &h), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, P + 3, &h), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, P - 1, &h), ZX_ERR_INVALID_ARGS);
    /* Whole pages near the integer limit: larger than any memory object can be. */
    uint64_t huge = UINT64_MAX - P + 1;
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, huge, &h), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, (UINT64_C(1) << 63) + P, &h),
                     ZX_ERR_OUT_OF_RANGE);
    /* Argument errors come before the size limit, which comes before the session. */
    assert_int_equal(iob_core_shared_region_create(c, f->a, 1, huge, &h), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_session_close(c, f->b), ZX_OK);
    assert_int_equal(iob_core_shared_region_create(c, f->b, 0, huge, &h), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_shared_region_create(c, f->b, 0, 2 * P, &h), ZX_ERR_BAD_STATE);
    assert_int_equal(h, 0);
    iob_core_stats_t st = fx_stats(f);
    assert_int_equal(st.shared_regions, 0);
    assert_int_equal(st.handles, 0);
    assert_int_equal(st.bytes_in_use, 0);
}

static void test_shared_create_limits(void** state) {
    fx_t* f = *state;
    f->config.max_total_bytes = 4 * P;
    f->config.max_handles_per_session = 2;
    fx_reconfigure(f);
    zx_handle_t h = 0, h2 = 0, h3 = 0;
    /* A closed session is reported before the budget it would also exceed. */
    assert_int_equal(iob_core_session_close(f->core, f->b), ZX_OK);
    assert_int_equal(iob_core_shared_region_create(f->core, f->b, 0, 5 * P, &h), ZX_ERR_BAD_STATE);
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 5 * P, &h), ZX_ERR_NO_MEMORY);
    h = shared_create(f, 2 * P);
    assert_int_equal(fx_stats(f).bytes_in_use, 2 * P);
    /* The budget comes before the handle limit. */
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 3 * P, &h2), ZX_ERR_NO_MEMORY);
    h2 = shared_create(f, P);
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, P, &h3), ZX_ERR_NO_RESOURCES);
    assert_int_equal(h3, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 3 * P);
    assert_int_equal(iob_core_handle_close(f->core, f->a, h), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, h2), ZX_OK);
    assert_int_equal(fx_stats(f).bytes_in_use, 0);
}

/*
 * Shared regions take a slot of the creating session's max_iobs_per_session, as IOBs do
 * (after validation; given back when the shared region is freed): without that, a session
 * could hold and export any number of them past its IOB limit.
 */
static void test_shared_regions_count_against_iob_limit(void** state) {
    fx_t* f = *state;
    f->config.max_iobs_per_session = 2;
    fx_reconfigure(f);
    iob_core_t* c = f->core;
    zx_handle_t e0 = 0, e1 = 0, x0 = 0, x1 = 0, s = 0, s2 = 0, sb = 0;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    s = shared_create(f, 2 * P);
    /* An IOB and a shared region: the third of either kind is refused. */
    zx_iob_region_t priv = fx_region(P, FX_RW_BOTH);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &priv, 1, &x0, &x1), ZX_ERR_NO_RESOURCES);
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, 2 * P, &s2), ZX_ERR_NO_RESOURCES);
    assert_non_null(strstr(iob_core_error_detail(), "limit 2"));
    assert_int_equal(s2, 0);
    assert_int_equal(x0, 0);
    /* Validation still comes first (L). */
    assert_int_equal(iob_core_shared_region_create(c, f->a, 1, 2 * P, &s2), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, P + 1, &s2), ZX_ERR_INVALID_ARGS);
    /* Session B has its own count. */
    assert_int_equal(iob_core_shared_region_create(c, f->b, 0, 2 * P, &sb), ZX_OK);
    iob_core_stats_t st = fx_stats(f);
    assert_int_equal(st.iobs, 1);
    assert_int_equal(st.shared_regions, 2);

    /* Freeing the shared region makes room. */
    assert_int_equal(iob_core_handle_close(c, f->a, s), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 1);
    s2 = shared_create(f, 2 * P);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &priv, 1, &x0, &x1), ZX_ERR_NO_RESOURCES);
    /* ... and freeing the IOB too. */
    assert_int_equal(iob_core_handle_close(c, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(c, f->a, e1), ZX_OK);
    assert_int_equal(fx_stats(f).iobs, 0);
    ring_iob(f, s2, MED_W0, TAG, &e0, &e1); /* an IOB on it: two slots again */
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, 2 * P, &s), ZX_ERR_NO_RESOURCES);

    /* Closing its handle does not free a shared region an IOB still uses: it still counts. */
    assert_int_equal(iob_core_handle_close(c, f->a, s2), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 2);
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, 2 * P, &s), ZX_ERR_NO_RESOURCES);
    /* The IOB's last handle frees the IOB and, with it, the shared region: both slots. */
    assert_int_equal(iob_core_handle_close(c, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(c, f->a, e1), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 1);
    s = shared_create(f, 2 * P);
    s2 = shared_create(f, 2 * P);

    /* Exported, it still counts against its creator, in flight and in another session. */
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(c, f->a, s2, token), ZX_OK);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &priv, 1, &x0, &x1), ZX_ERR_NO_RESOURCES);
    zx_handle_t in_b = 0;
    assert_int_equal(iob_core_handle_import(c, f->b, token, &in_b), ZX_OK);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &priv, 1, &x0, &x1), ZX_ERR_NO_RESOURCES);
    /* ... until B frees it; B's own count never held it. */
    assert_int_equal(iob_core_handle_close(c, f->b, in_b), ZX_OK);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &priv, 1, &x0, &x1), ZX_OK);

    /* A creator released before its shared region: freeing it later touches nothing of A's. */
    assert_int_equal(iob_core_handle_export(c, f->a, s, token), ZX_OK);
    assert_int_equal(iob_core_handle_import(c, f->b, token, &in_b), ZX_OK);
    assert_int_equal(iob_core_session_close(c, f->a), ZX_OK);
    assert_int_equal(iob_core_session_release_mappings(c, f->a), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 2); /* B's own and the imported one */
    assert_int_equal(iob_core_handle_close(c, f->b, in_b), ZX_OK);
    assert_int_equal(iob_core_handle_close(c, f->b, sb), ZX_OK);
    st = fx_stats(f);
    assert_int_equal(st.shared_regions, 0);
    assert_int_equal(st.iobs, 0);
    assert_int_equal(st.bytes_in_use, 0);
}

static void test_shared_create_memory_failure(void** state) {
    fx_t* f = *state;
    zx_handle_t h = 0;
    iob_test_fault_arm(IOB__SYS_FALLOCATE, ENOSPC, 1, 1);
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 2 * P, &h), ZX_ERR_NO_MEMORY);
    iob_test_fault_arm(IOB__SYS_MEMFD_CREATE, EMFILE, 1, 1);
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 2 * P, &h),
                     ZX_ERR_NO_RESOURCES);
    iob_test_fault_clear();
    assert_int_equal(h, 0);
    iob_core_stats_t st = fx_stats(f);
    assert_int_equal(st.shared_regions, 0);
    assert_int_equal(st.handles, 0);
    assert_int_equal(st.bytes_in_use, 0);
}

static void test_shared_info_and_stats(void** state) {
    fx_t* f = *state;
    zx_handle_t h = shared_create(f, 3 * P);
    zx_info_handle_basic_t info = fx_basic(f, f->a, h);
    assert_int_equal(info.type, ZX_OBJ_TYPE_IOB_SHARED_REGION);
    assert_int_equal(info.rights, ZX_DEFAULT_IOB_SHARED_REGION_RIGHTS);
    assert_int_equal(info.rights, 0xD0C3);
    assert_true(info.koid >= ZX_KOID_FIRST);
    assert_int_equal(info.related_koid, ZX_KOID_INVALID);
    assert_int_equal(iob_core_get_info(f->core, f->a, h, ZX_INFO_HANDLE_VALID, NULL, 0, NULL, NULL),
                     ZX_OK);
    zx_info_iob_t iob_info;
    zx_iob_region_info_t regions[1];
    assert_int_equal(
        iob_core_get_info(f->core, f->a, h, ZX_INFO_IOB, &iob_info, sizeof iob_info, NULL, NULL),
        ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_get_info(f->core, f->a, h, ZX_INFO_IOB_REGIONS, regions,
                                       sizeof regions, NULL, NULL),
                     ZX_ERR_WRONG_TYPE);
    iob_core_stats_t st = fx_stats(f);
    assert_int_equal(st.shared_regions, 1);
    assert_int_equal(st.iobs, 0);
    assert_int_equal(st.handles, 1);
    assert_int_equal(st.bytes_in_use, 3 * P);
    /* Listing shows IOBs only. */
    size_t count = 99;
    assert_int_equal(iob_core_list(f->core, NULL, 0, &count), ZX_OK);
    assert_int_equal(count, 0);
    assert_int_equal(iob_core_handle_close(f->core, f->a, h), ZX_OK);
    st = fx_stats(f);
    assert_int_equal(st.shared_regions, 0);
    assert_int_equal(st.bytes_in_use, 0);
}

static void test_shared_handle_operations(void** state) {
    fx_t* f = *state;
    zx_handle_t h = shared_create(f, 2 * P);
    zx_koid_t koid = fx_basic(f, f->a, h).koid;
    iob_core_t* c = f->core;

    /* Duplicate and replace reduce rights as for any object. */
    zx_handle_t dup = 0, repl = 0;
    assert_int_equal(iob_core_handle_duplicate(c, f->a, h, ZX_RIGHT_SAME_RIGHTS, &dup), ZX_OK);
    assert_int_equal(fx_basic(f, f->a, dup).koid, koid);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, h, ZX_RIGHT_WRITE, &repl),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(
        iob_core_handle_replace(c, f->a, dup, ZX_RIGHT_INSPECT | ZX_RIGHT_TRANSFER, &repl), ZX_OK);
    assert_int_equal(fx_basic(f, f->a, repl).rights, ZX_RIGHT_INSPECT | ZX_RIGHT_TRANSFER);

    /* ZX_PROP_NAME: Zircon's shared region keeps Dispatcher's defaults. */
    char name[ZX_MAX_NAME_LEN];
    memset(name, 'x', sizeof name);
    assert_int_equal(iob_core_get_property(c, f->a, h, ZX_PROP_NAME, name, sizeof name), ZX_OK);
    for (size_t i = 0; i < sizeof name; i++) {
        assert_int_equal(name[i], 0);
    }
    assert_int_equal(iob_core_set_property(c, f->a, h, ZX_PROP_NAME, "ring", 4),
                     ZX_ERR_NOT_SUPPORTED);
    assert_int_equal(iob_core_set_property(c, f->a, repl, ZX_PROP_NAME, "ring", 4),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_get_property(c, f->a, repl, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_ACCESS_DENIED);

    /* User signals, reported under the shared region's koid; no others; no peer. */
    assert_int_equal(iob_core_object_signal(c, f->a, h, 0, ZX_USER_SIGNAL_0), ZX_OK);
    zx_signals_t sig = 0;
    zx_koid_t which = 0;
    assert_int_equal(iob_core_signals(c, f->a, h, &sig, &which), ZX_OK);
    assert_int_equal(sig, ZX_USER_SIGNAL_0);
    assert_int_equal(which, koid);
    assert_int_equal(fx_last_signals(f, koid), ZX_USER_SIGNAL_0);
    assert_int_equal(iob_core_object_signal(c, f->a, h, ZX_USER_SIGNAL_0, 0), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, h), 0);
    assert_int_equal(fx_last_signals(f, koid), 0);
    assert_int_equal(iob_core_object_signal(c, f->a, h, 0, ZX_IOB_SHARED_REGION_UPDATED),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_object_signal(c, f->a, h, 0, ZX_IOB_PEER_CLOSED),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_object_signal_peer(c, f->a, h, 0, ZX_USER_SIGNAL_1),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_object_signal(c, f->a, repl, 0, ZX_USER_SIGNAL_1),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_signals(c, f->a, repl, &sig, NULL), ZX_ERR_ACCESS_DENIED);

    /* Everything that needs an IOB: the wrong type (before rights: repl has none). */
    iob_map_grant_t g;
    uint8_t byte = 0;
    uint32_t id = 0;
    zx_handle_t both[] = {h, repl};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(iob_core_map(c, f->a, both[i], ZX_VM_PERM_READ, 0, 0, P, &g),
                         ZX_ERR_WRONG_TYPE);
        assert_int_equal(iob_core_map_dup(c, f->a, both[i], ZX_VM_PERM_READ, 0, 0, P, &g),
                         ZX_ERR_WRONG_TYPE);
        assert_int_equal(iob_core_region_read(c, f->a, both[i], 0, 0, &byte, 1), ZX_ERR_WRONG_TYPE);
        assert_int_equal(iob_core_region_write(c, f->a, both[i], 0, 0, &byte, 1),
                         ZX_ERR_WRONG_TYPE);
        assert_int_equal(iob_core_iob_writev(c, f->a, both[i], 0, 0, NULL, 0), ZX_ERR_WRONG_TYPE);
        assert_int_equal(iob_core_iob_allocate_id(c, f->a, both[i], 0, 0, NULL, 0, &id),
                         ZX_ERR_WRONG_TYPE);
    }
    /* Closing every handle frees it; a second close is a bad handle. */
    assert_int_equal(iob_core_handle_close(c, f->a, h), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 1);
    assert_int_equal(iob_core_handle_close(c, f->a, repl), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 0);
    assert_int_equal(iob_core_handle_close(c, f->a, h), ZX_ERR_BAD_HANDLE);
}

static void test_shared_transfer_keeps_it_alive(void** state) {
    fx_t* f = *state;
    zx_handle_t h = shared_create(f, 2 * P);
    zx_koid_t koid = fx_basic(f, f->a, h).koid;
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, h, token), ZX_OK);
    /* The token holds it, as a handle in flight would. */
    assert_int_equal(fx_stats(f).shared_regions, 1);
    assert_int_equal(fx_stats(f).bytes_in_use, 2 * P);
    zx_handle_t in_b = 0;
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &in_b), ZX_OK);
    zx_info_handle_basic_t info = fx_basic(f, f->b, in_b);
    assert_int_equal(info.koid, koid);
    assert_int_equal(info.type, ZX_OBJ_TYPE_IOB_SHARED_REGION);
    /* Session B may build an IOB on it now; session A can no longer name it. */
    zx_iob_region_t r = ring_region(in_b, MED_W0, TAG);
    zx_handle_t e0 = 0, e1 = 0;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &r, 1, &e0, &e1), ZX_OK);
    /* An expired token releases it too. */
    zx_handle_t h2 = shared_create(f, 2 * P);
    assert_int_equal(iob_core_handle_export(f->core, f->a, h2, token), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 2);
    f->now += INT64_C(61) * 1000000000;
    iob_core_expire_tokens(f->core);
    assert_int_equal(fx_stats(f).shared_regions, 1);
    /* Session B's end releases its handles, its IOB and so the shared region. */
    assert_int_equal(iob_core_session_close(f->core, f->b), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 0);
}

/* ==== zx_iob_create with SHARED regions (A.3 7.2) ==== */

static void test_iob_create_shared_errors_in_order(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0, i0 = 0, i1 = 0;
    zx_handle_t one_page = shared_create(f, P);
    zx_handle_t two_pages = shared_create(f, 2 * P);
    fx_create(f, P, FX_RW_BOTH, &i0, &i1);
    iob_core_t* c = f->core;
    zx_iob_region_t r;

    /* options, then size, before the handle. */
    r = ring_region(0x1234567, FX_RW_BOTH, 0);
    r.shared_region.options = 1;
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    r = ring_region(0x1234567, FX_RW_BOTH, 0);
    r.size = 2 * P;
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    r = ring_region(two_pages, FX_RW_BOTH, 0);
    r.size = 2 * P; /* even with a good handle */
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    /* The handle: bad, then of the wrong type. */
    r = ring_region(ZX_HANDLE_INVALID, FX_RW_BOTH, 0);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_BAD_HANDLE);
    r = ring_region(i0, FX_RW_BOTH, 0);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_WRONG_TYPE);
    /* Below two pages, even before access sanity (access 0 would also be refused). */
    r = ring_region(one_page, 0, 0);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_non_null(strstr(iob_core_error_detail(), "below 2 pages"));
    /* Access sanity, then the discipline rules. */
    r = ring_region(two_pages, 0, 0);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_non_null(strstr(iob_core_error_detail(), "nobody"));
    r = ring_region(two_pages, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_READ, 0);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    zx_iob_discipline_type_t not_for_shared[] = {ZX_IOB_DISCIPLINE_TYPE_NONE,
                                                 ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR, 3};
    for (size_t i = 0; i < 3; i++) {
        r = ring_region(two_pages, FX_RW_BOTH, 0);
        r.discipline.type = not_for_shared[i];
        assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    }
    /* The ring buffer needs a shared region. */
    zx_iob_region_t priv = fx_region(2 * P, FX_RW_BOTH);
    priv.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &priv, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(e0, 0);
    assert_int_equal(e1, 0);
    assert_int_equal(fx_stats(f).iobs, 1);
    /* No rights are needed on the shared-region handle, and it is not consumed. */
    zx_handle_t bare = 0;
    assert_int_equal(iob_core_handle_duplicate(c, f->a, two_pages, 0, &bare), ZX_OK);
    r = ring_region(bare, MED_W0, 0);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_OK);
    assert_int_equal(fx_basic(f, f->a, bare).rights, 0);
    /* Mediated bits are not required: a map-writable ring is accepted (A.3 7.5). */
    r = ring_region(two_pages, FX_RW_BOTH, 0);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &r, 1, &e0, &e1), ZX_OK);
}

static void test_iob_create_shared_info_and_accounting(void** state) {
    fx_t* f = *state;
    zx_handle_t s = shared_create(f, 4 * P);
    zx_koid_t skoid = fx_basic(f, f->a, s).koid;
    zx_iob_region_t config[2] = {ring_region(s, MED_W0 | ZX_IOB_ACCESS_EP1_CAN_MAP_READ, TAG),
                                 fx_region(P + 1, FX_RW_BOTH)};
    /* Padding and extension bytes are kept byte for byte. */
    config[0].discipline.ring_buffer.reserved[6] = 0x55;
    zx_iob_region_shared_t* ext = &config[0].shared_region;
    ext->padding[2] = 0xAA;
    zx_handle_t e0 = 0, e1 = 0;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, config, 2, &e0, &e1), ZX_OK);
    zx_iob_region_info_t info[2];
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, info, sizeof info,
                                       &actual, &avail),
                     ZX_OK);
    assert_int_equal(actual, 2);
    /* Zircon stores the shared description as given: size stays 0. */
    assert_memory_equal(&info[0].region, &config[0], sizeof config[0]);
    assert_int_equal(info[0].region.size, 0);
    assert_int_equal(info[0].koid, skoid);
    assert_int_equal(info[1].region.size, 2 * P);
    assert_int_not_equal(info[1].koid, skoid);
    /* ep1 sees the same koid and swapped access. */
    assert_int_equal(iob_core_get_info(f->core, f->a, e1, ZX_INFO_IOB_REGIONS, info, sizeof info,
                                       &actual, &avail),
                     ZX_OK);
    assert_int_equal(info[0].koid, skoid);
    assert_int_equal(info[0].region.access,
                     ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE | ZX_IOB_ACCESS_EP0_CAN_MAP_READ);
    /* A second IOB on the same shared region reports the same koid. */
    zx_handle_t k0 = 0, k1 = 0;
    ring_iob(f, s, MED_W0, 7, &k0, &k1);
    assert_int_equal(iob_core_get_info(f->core, f->a, k1, ZX_INFO_IOB_REGIONS, info, sizeof info[0],
                                       &actual, &avail),
                     ZX_OK);
    assert_int_equal(info[0].koid, skoid);
    /* The shared bytes count once, in no IOB. */
    iob_core_stats_t st = fx_stats(f);
    assert_int_equal(st.bytes_in_use, 4 * P + 2 * P);
    iob_core_iob_summary_t sum[3];
    size_t count = 0;
    assert_int_equal(iob_core_list(f->core, sum, 3, &count), ZX_OK);
    assert_int_equal(count, 2);
    assert_int_equal(sum[0].total_bytes, 2 * P);
    assert_int_equal(sum[1].total_bytes, 0);
    /* ZX_PROP_NAME: set skips shared regions; region 0 being shared, get stays empty. */
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, ZX_PROP_NAME, "log", 3), ZX_OK);
    char name[ZX_MAX_NAME_LEN];
    assert_int_equal(iob_core_get_property(f->core, f->a, e1, ZX_PROP_NAME, name, sizeof name),
                     ZX_OK);
    assert_string_equal(name, "");
    zx_iob_region_t swapped[2] = {config[1], config[0]};
    zx_handle_t p0 = 0, p1 = 0;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, swapped, 2, &p0, &p1), ZX_OK);
    assert_int_equal(iob_core_set_property(f->core, f->a, p0, ZX_PROP_NAME, "log", 3), ZX_OK);
    assert_int_equal(iob_core_get_property(f->core, f->a, p1, ZX_PROP_NAME, name, sizeof name),
                     ZX_OK);
    assert_string_equal(name, "log");
}

/* ==== Mapping a shared region through an IOB (A.4 on the shared memfd) ==== */

static void test_map_shared_region(void** state) {
    fx_t* f = *state;
    zx_handle_t s = shared_create(f, 2 * P);
    zx_koid_t skoid = fx_basic(f, f->a, s).koid;
    zx_handle_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    ring_iob(f, s,
             MED_W0 | ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                 ZX_IOB_ACCESS_EP1_CAN_MAP_READ,
             1, &a0, &a1);
    ring_iob(f, s, MED_W0 | ZX_IOB_ACCESS_EP1_CAN_MAP_READ, 2, &b0, &b1);
    iob_map_grant_t g;
    /* The shared region's bytes, its memfd, and A.4's rules with this IOB's access bits. */
    assert_int_equal(
        iob_core_map_dup(f->core, f->a, a0, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, 2 * P, &g),
        ZX_OK);
    assert_true(g.writable);
    assert_int_equal(g.region_size, 2 * P);
    char path[64], link[256], want[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g.fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    assert_true(n > 0);
    link[n] = '\0';
    snprintf(want, sizeof want, "/memfd:iob-shared-%" PRIu64, skoid);
    assert_true(strncmp(link, want, strlen(want)) == 0);
    assert_int_equal(fcntl(g.fd, F_GETFL) & O_ACCMODE, O_RDWR);
    assert_int_equal(close(g.fd), 0);
    assert_int_equal(iob_core_unmap(f->core, f->a, g.mapping), ZX_OK);
    assert_int_equal(iob_core_map(f->core, f->a, a0, ZX_VM_PERM_READ, 0, 0, 3 * P, &g),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(iob_core_map(f->core, f->a, a0, ZX_VM_PERM_READ, 0, 2 * P, P, &g),
                     ZX_ERR_BUFFER_TOO_SMALL);
    /* b0 may not map at all; b1 only reads, through a read-only description. */
    assert_int_equal(iob_core_map(f->core, f->a, b0, ZX_VM_PERM_READ, 0, 0, P, &g),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(
        iob_core_map(f->core, f->a, b1, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, P, &g),
        ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_map(f->core, f->a, b1, ZX_VM_PERM_READ, 0, 0, 2 * P, &g), ZX_OK);
    assert_false(g.writable);
    assert_int_equal(fcntl(g.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    assert_int_equal(iob_core_unmap(f->core, f->a, g.mapping), ZX_OK);
    /* Both IOBs see one memory: a write through one is read through the other. */
    mapping_t wa = map_region(f, a0, 0, true);
    mapping_t rb = map_region(f, b1, 0, false);
    wa.base[P + 5] = 0x42;
    assert_int_equal(rb.base[P + 5], 0x42);
    uint8_t byte = 0;
    assert_int_equal(iob_core_region_read(f->core, f->a, a1, 0, P + 5, &byte, 1), ZX_OK);
    assert_int_equal(byte, 0x42);
    unmap_region(f, &wa);
    unmap_region(f, &rb);
}


static void test_shared_region_lifetime(void** state) {
    fx_t* f = *state;
    zx_handle_t s = shared_create(f, 2 * P);
    zx_handle_t e0, e1;
    ring_iob(f, s, MED_W0 | ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE, TAG,
             &e0, &e1);
    /* Closing the shared region's handle does not affect the IOB (A.9). */
    assert_int_equal(iob_core_handle_close(f->core, f->a, s), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 1);
    assert_int_equal(mx_write_str(f, e0, "AliveAfterClose", 16), ZX_OK);
    mapping_t m = map_region(f, e0, 0, false);
    assert_true(atomic_load(head_of(&m)) > 0);
    /* The IOB's handles go; the mapping keeps endpoint, IOB and shared region alive. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    iob_core_stats_t st = fx_stats(f);
    assert_int_equal(st.iobs, 1);
    assert_int_equal(st.shared_regions, 1);
    assert_int_equal(st.bytes_in_use, 2 * P);
    assert_int_equal(m.base[P + 16], 'A');
    /* The last unmap frees all of it and gives the budget back. */
    unmap_region(f, &m);
    st = fx_stats(f);
    assert_int_equal(st.iobs, 0);
    assert_int_equal(st.shared_regions, 0);
    assert_int_equal(st.bytes_in_use, 0);
    assert_int_equal(st.handles, 0);
    /* The other order: the IOB goes first, the shared region lives on its handle. */
    s = shared_create(f, 2 * P);
    ring_iob(f, s, MED_W0, TAG, &e0, &e1);
    zx_handle_t e2, e3;
    ring_iob(f, s, MED_W0, TAG, &e2, &e3);
    assert_int_equal(mx_write_str(f, e0, "x", 1), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 1);
    assert_int_equal(iob_core_handle_close(f->core, f->a, s), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 1); /* the second IOB still uses it */
    assert_int_equal(mx_write_str(f, e2, "y", 1), ZX_OK);
    assert_int_equal(iob_core_session_close(f->core, f->a), ZX_OK);
    assert_int_equal(fx_stats(f).shared_regions, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 0);
    /* The teardown checks that every memfd, description and server view was closed. */
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
        T(test_shared_create_errors_in_order),
        T(test_shared_create_limits),
        T(test_shared_regions_count_against_iob_limit),
        T(test_shared_create_memory_failure),
        T(test_shared_info_and_stats),
        T(test_shared_handle_operations),
        T(test_shared_transfer_keeps_it_alive),
        T(test_iob_create_shared_errors_in_order),
        T(test_iob_create_shared_info_and_accounting),
        T(test_map_shared_region),
        T(test_shared_region_lifetime),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
