/* SPDX-License-Identifier: MIT */
/* Shared regions and the mediated disciplines of iob_core (server/core/iob_mediated.c and the
 * shared-region paths of create, map, info, handles): docs/zircon-iob.md A.3 7.2, A.5-A.10, every
 * documented error in its order, with the ring and the ID allocator read back through a
 * client's mapping and shm/mediated.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core_fixture.h"
#include "shm/mediated.h"
#include "test_util.h"

#define P FX_PAGE
#define MED_W0 ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE
#define MED_W1 ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE
#define TAG UINT64_C(0x0123456789abcdef)

/* ---- helpers ---- */

static zx_handle_t shared_create(fx_t* f, uint64_t size) {
    zx_handle_t h = 0;
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, size, &h), ZX_OK);
    assert_int_not_equal(h, 0);
    return h;
}

static zx_iob_region_t ring_region(zx_handle_t shared, zx_iob_access_t access, uint64_t tag) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_SHARED;
    r.access = access;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    r.discipline.ring_buffer.tag = tag;
    r.shared_region.shared_region = shared;
    return r;
}

static zx_iob_region_t idalloc_region(uint64_t size, zx_iob_access_t access) {
    zx_iob_region_t r = fx_region(size, access);
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    return r;
}

static void ring_iob(fx_t* f, zx_handle_t shared, zx_iob_access_t access, uint64_t tag,
                     zx_handle_t* e0, zx_handle_t* e1) {
    zx_iob_region_t r = ring_region(shared, access, tag);
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, e0, e1), ZX_OK);
}

/* A client's mapping of a region, made from the fd the core grants (as libiob does). */
typedef struct mapping {
    uint8_t* base;
    uint64_t size;
    iob_mapping_id_t id;
} mapping_t;

static mapping_t map_region(fx_t* f, zx_handle_t h, uint32_t index, bool write) {
    iob_map_grant_t g;
    zx_vm_option_t perm = ZX_VM_PERM_READ | (write ? ZX_VM_PERM_WRITE : 0);
    assert_int_equal(iob_core_map(f->core, f->a, h, perm, index, 0, P, &g), ZX_OK);
    int prot = PROT_READ | (write ? PROT_WRITE : 0);
    void* p = mmap(NULL, (size_t)g.region_size, prot, MAP_SHARED, g.fd, 0);
    assert_true(p != MAP_FAILED);
    return (mapping_t){p, g.region_size, g.mapping};
}

static void unmap_region(fx_t* f, mapping_t* m) {
    assert_int_equal(munmap(m->base, (size_t)m->size), 0);
    assert_int_equal(iob_core_unmap(f->core, f->a, m->id), ZX_OK);
}

static _Atomic uint64_t* head_of(const mapping_t* m) {
    return &((iob_mwrb_header_t*)(void*)m->base)->head;
}

static _Atomic uint64_t* tail_of(const mapping_t* m) {
    return &((iob_mwrb_header_t*)(void*)m->base)->tail;
}

static zx_status_t writev(fx_t* f, zx_handle_t h, const zx_iovec_t* v, size_t n) {
    return iob_core_iob_writev(f->core, f->a, h, 0, 0, v, n);
}

static zx_status_t write_str(fx_t* f, zx_handle_t h, const char* text, size_t len) {
    zx_iovec_t v = {.buffer = (void*)(uintptr_t)text, .capacity = len};
    return writev(f, h, &v, 1);
}

static iob_core_stats_t stats(fx_t* f) {
    iob_core_stats_t st;
    iob_core_get_stats(f->core, &st);
    return st;
}

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
    iob_core_stats_t st = stats(f);
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
    assert_int_equal(stats(f).bytes_in_use, 2 * P);
    /* The budget comes before the handle limit. */
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 3 * P, &h2), ZX_ERR_NO_MEMORY);
    h2 = shared_create(f, P);
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, P, &h3), ZX_ERR_NO_RESOURCES);
    assert_int_equal(h3, 0);
    assert_int_equal(stats(f).bytes_in_use, 3 * P);
    assert_int_equal(iob_core_handle_close(f->core, f->a, h), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, h2), ZX_OK);
    assert_int_equal(stats(f).bytes_in_use, 0);
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
    iob_core_stats_t st = stats(f);
    assert_int_equal(st.iobs, 1);
    assert_int_equal(st.shared_regions, 2);

    /* Freeing the shared region makes room. */
    assert_int_equal(iob_core_handle_close(c, f->a, s), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 1);
    s2 = shared_create(f, 2 * P);
    assert_int_equal(iob_core_iob_create(c, f->a, 0, &priv, 1, &x0, &x1), ZX_ERR_NO_RESOURCES);
    /* ... and freeing the IOB too. */
    assert_int_equal(iob_core_handle_close(c, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(c, f->a, e1), ZX_OK);
    assert_int_equal(stats(f).iobs, 0);
    ring_iob(f, s2, MED_W0, TAG, &e0, &e1); /* an IOB on it: two slots again */
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, 2 * P, &s), ZX_ERR_NO_RESOURCES);

    /* Closing its handle does not free a shared region an IOB still uses: it still counts. */
    assert_int_equal(iob_core_handle_close(c, f->a, s2), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 2);
    assert_int_equal(iob_core_shared_region_create(c, f->a, 0, 2 * P, &s), ZX_ERR_NO_RESOURCES);
    /* The IOB's last handle frees the IOB and, with it, the shared region: both slots. */
    assert_int_equal(iob_core_handle_close(c, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(c, f->a, e1), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 1);
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
    assert_int_equal(stats(f).shared_regions, 2); /* B's own and the imported one */
    assert_int_equal(iob_core_handle_close(c, f->b, in_b), ZX_OK);
    assert_int_equal(iob_core_handle_close(c, f->b, sb), ZX_OK);
    st = stats(f);
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
    iob_core_stats_t st = stats(f);
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
    iob_core_stats_t st = stats(f);
    assert_int_equal(st.shared_regions, 1);
    assert_int_equal(st.iobs, 0);
    assert_int_equal(st.handles, 1);
    assert_int_equal(st.bytes_in_use, 3 * P);
    /* Listing shows IOBs only. */
    size_t count = 99;
    assert_int_equal(iob_core_list(f->core, NULL, 0, &count), ZX_OK);
    assert_int_equal(count, 0);
    assert_int_equal(iob_core_handle_close(f->core, f->a, h), ZX_OK);
    st = stats(f);
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
    assert_int_equal(stats(f).shared_regions, 1);
    assert_int_equal(iob_core_handle_close(c, f->a, repl), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 0);
    assert_int_equal(iob_core_handle_close(c, f->a, h), ZX_ERR_BAD_HANDLE);
}

static void test_shared_transfer_keeps_it_alive(void** state) {
    fx_t* f = *state;
    zx_handle_t h = shared_create(f, 2 * P);
    zx_koid_t koid = fx_basic(f, f->a, h).koid;
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, h, token), ZX_OK);
    /* The token holds it, as a handle in flight would. */
    assert_int_equal(stats(f).shared_regions, 1);
    assert_int_equal(stats(f).bytes_in_use, 2 * P);
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
    assert_int_equal(stats(f).shared_regions, 2);
    f->now += INT64_C(61) * 1000000000;
    iob_core_expire_tokens(f->core);
    assert_int_equal(stats(f).shared_regions, 1);
    /* Session B's end releases its handles, its IOB and so the shared region. */
    assert_int_equal(iob_core_session_close(f->core, f->b), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 0);
    assert_int_equal(stats(f).bytes_in_use, 0);
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
    assert_int_equal(stats(f).iobs, 1);
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
    iob_core_stats_t st = stats(f);
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

/* ==== zx_iob_writev (A.6, A.7) ==== */

typedef struct ring_fx {
    zx_handle_t shared, e0, e1;
    mapping_t map; /* ep0's read-write mapping of the whole shared region */
} ring_fx_t;

/* A ring of `size` bytes; ep0 mediated-writes and maps it read-write, ep1 does neither. */
static ring_fx_t ring_setup(fx_t* f, uint64_t size) {
    ring_fx_t r;
    r.shared = shared_create(f, size);
    zx_iob_region_t config[2] = {
        ring_region(r.shared,
                    MED_W0 | ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE, TAG),
        fx_region(P, FX_RW_BOTH)};
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, config, 2, &r.e0, &r.e1), ZX_OK);
    r.map = map_region(f, r.e0, 0, true);
    assert_int_equal(r.map.size, size);
    return r;
}

static void test_writev_errors_in_order(void** state) {
    fx_t* f = *state;
    ring_fx_t r = ring_setup(f, 2 * P);
    iob_core_t* c = f->core;
    char buf[] = "hello";
    zx_iovec_t v = {.buffer = buf, .capacity = sizeof buf};
    zx_handle_t no_rights = 0, no_write = 0;
    assert_int_equal(iob_core_handle_duplicate(c, f->a, r.e0, 0, &no_rights), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, r.e0,
                                               ZX_DEFAULT_IOB_RIGHTS & ~ZX_RIGHT_WRITE, &no_write),
                     ZX_OK);
    zx_iovec_t nine[9];
    for (int i = 0; i < 9; i++) {
        nine[i] = v;
    }
    zx_iovec_t overflow[2] = {{buf, SIZE_MAX}, {buf, SIZE_MAX}};
    size_t strobes = f->n_strobes;

    /* 1. options */
    assert_int_equal(iob_core_iob_writev(c, f->a, r.e0, 1, 0, &v, 1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_writev(c, f->a, 0x1234567, 1, 9, nine, 9), ZX_ERR_INVALID_ARGS);
    /* 2. handle: bad, wrong type, no WRITE (a duplicate with rights 0 too) */
    assert_int_equal(iob_core_iob_writev(c, f->a, 0x1234567, 0, 9, nine, 9), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_writev(c, f->b, r.e0, 0, 0, &v, 1), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_writev(c, f->a, r.shared, 0, 9, nine, 9), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_writev(c, f->a, no_rights, 0, 0, &v, 1), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_iob_writev(c, f->a, no_write, 0, 9, nine, 9), ZX_ERR_ACCESS_DENIED);
    /* 3. index */
    assert_int_equal(iob_core_iob_writev(c, f->a, r.e0, 0, 2, nine, 9), ZX_ERR_OUT_OF_RANGE);
    /* 4. discipline */
    assert_int_equal(iob_core_iob_writev(c, f->a, r.e0, 0, 1, nine, 9), ZX_ERR_WRONG_TYPE);
    /* 5. MEDIATED_WRITE of this endpoint */
    assert_int_equal(iob_core_iob_writev(c, f->a, r.e1, 0, 0, nine, 9), ZX_ERR_ACCESS_DENIED);
    /* 6. more than 8 vectors, 7. an unreadable vector array */
    assert_int_equal(writev(f, r.e0, nine, 9), ZX_ERR_INVALID_ARGS);
    assert_int_equal(writev(f, r.e0, NULL, 9), ZX_ERR_INVALID_ARGS);
    assert_int_equal(writev(f, r.e0, NULL, 1), ZX_ERR_INVALID_ARGS);
    /* 8. the sum of capacities, overflow-safe */
    assert_int_equal(writev(f, r.e0, overflow, 2), ZX_ERR_INVALID_ARGS);
    zx_iovec_t big = {.buffer = NULL, .capacity = IOB_MWRB_MAX_PAYLOAD + 1};
    assert_int_equal(writev(f, r.e0, &big, 1), ZX_ERR_INVALID_ARGS);
    /* 9. larger than B: before the ring is looked at, even a corrupt one */
    zx_iovec_t page_plus = {.buffer = NULL, .capacity = P + 1};
    atomic_store(tail_of(&r.map), 8); /* tail > head */
    assert_int_equal(writev(f, r.e0, &page_plus, 1), ZX_ERR_NO_SPACE);
    /* 10. the ring: integrity, then space; an unreadable payload comes after both */
    zx_iovec_t unreadable = {.buffer = NULL, .capacity = 5};
    assert_int_equal(writev(f, r.e0, &unreadable, 1), ZX_ERR_IO_DATA_INTEGRITY);
    atomic_store(tail_of(&r.map), 0);
    atomic_store(head_of(&r.map), P - 8); /* 8 bytes free */
    assert_int_equal(writev(f, r.e0, &unreadable, 1), ZX_ERR_NO_SPACE);
    atomic_store(head_of(&r.map), 0);
    /* 11. the payload: NOT_FOUND, and nothing written */
    assert_int_equal(writev(f, r.e0, &unreadable, 1), ZX_ERR_NOT_FOUND);
    zx_iovec_t mixed[2] = {v, unreadable};
    assert_int_equal(writev(f, r.e0, mixed, 2), ZX_ERR_NOT_FOUND);
    assert_int_equal(atomic_load(head_of(&r.map)), 0);
    for (size_t i = 0; i < 64; i++) {
        assert_int_equal(r.map.base[P + i], 0);
    }
    /* Failures never strobe. */
    assert_int_equal(f->n_strobes, strobes);
    /* And the same endpoint can write. */
    assert_int_equal(writev(f, r.e0, &v, 1), ZX_OK);
    assert_int_equal(f->n_strobes, strobes + 1);
    unmap_region(f, &r.map);
}

static void test_writev_records_and_wrap(void** state) {
    fx_t* f = *state;
    ring_fx_t r = ring_setup(f, 2 * P);
    char buf[] = "12345";
    /* One vector or two, the record is the same. */
    zx_iovec_t one[1] = {{buf, 6}};
    zx_iovec_t two[2] = {{buf, 3}, {buf + 3, 3}};
    const uint8_t expected[22] = {0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, 6,   0,   0,
                                  0,    0,    0,    0,    0,    '1',  '2',  '3',  '4', '5', 0};
    const uint64_t record = 24;
    uint64_t last = 0;
    size_t strobes = f->n_strobes;
    for (unsigned i = 0; i < P / record; i++) {
        assert_int_equal(i % 2 ? writev(f, r.e0, two, 2) : writev(f, r.e0, one, 1), ZX_OK);
        assert_int_equal(atomic_load(head_of(&r.map)), last + record);
        assert_int_equal(atomic_load(tail_of(&r.map)), 0);
        assert_memory_equal(r.map.base + P + last, expected, sizeof expected);
        last += record;
    }
    assert_int_equal(f->n_strobes, strobes + P / record);
    assert_int_equal(f->last_strobe, fx_basic(f, f->a, r.shared).koid);
    /* Full: 16 bytes left for a 24-byte record; records never overwrite. */
    assert_int_equal(writev(f, r.e0, one, 1), ZX_ERR_NO_SPACE);
    assert_int_equal(f->n_strobes, strobes + P / record);
    /* Free one record: the next crosses the end of B, byte-wise. */
    atomic_store(tail_of(&r.map), record);
    assert_int_equal(writev(f, r.e0, two, 2), ZX_OK);
    assert_int_equal(atomic_load(head_of(&r.map)), last + record);
    uint64_t before_end = P - last;
    assert_int_equal(before_end, 16);
    assert_memory_equal(r.map.base + P + last, expected, before_end);
    assert_memory_equal(r.map.base + P, expected + before_end, sizeof expected - before_end);
    /* Padding is never written: record 0's bytes 6 and 7 survive behind the new record. */
    assert_int_equal(r.map.base[P + 6], expected[6]);
    assert_int_equal(r.map.base[P + 7], expected[7]);
    assert_int_equal(r.map.base[P + 24 + 22], 0);
    assert_int_equal(r.map.base[P + 24 + 23], 0);

    /* A client's validated reader sees every record, the wrapped one included. */
    iob_mwrb_reader_t reader;
    assert_int_equal(iob_mwrb_reader_init(&reader, r.map.base, r.map.size, P), ZX_OK);
    iob_mwrb_record_t rec;
    char got[16];
    unsigned records = 0;
    zx_status_t st;
    while ((st = iob_mwrb_peek(&reader, &rec, got, sizeof got)) == ZX_OK) {
        assert_int_equal(rec.tag, TAG);
        assert_int_equal(rec.length, 6);
        assert_int_equal(rec.size, record);
        assert_string_equal(got, "12345");
        assert_int_equal(iob_mwrb_advance(&reader, &rec), ZX_OK);
        records++;
    }
    assert_int_equal(st, ZX_ERR_SHOULD_WAIT);
    assert_int_equal(records, P / record);
    assert_int_equal(atomic_load(tail_of(&r.map)), atomic_load(head_of(&r.map)));
    unmap_region(f, &r.map);
}

static void test_writev_header_only_records(void** state) {
    fx_t* f = *state;
    zx_handle_t s = shared_create(f, 2 * P);
    zx_handle_t a0, a1, b0, b1;
    ring_iob(f, s, MED_W0 | ZX_IOB_ACCESS_EP1_CAN_MAP_READ, UINT64_C(0xAAAAAAAAAAAAAAAA), &a0, &a1);
    ring_iob(f, s, MED_W0, UINT64_C(0xBBBBBBBBBBBBBBBB), &b0, &b1);
    zx_iovec_t empty = {.buffer = NULL, .capacity = 0};
    assert_int_equal(writev(f, a0, NULL, 0), ZX_OK);
    assert_int_equal(writev(f, b0, &empty, 1), ZX_OK);
    char ma[] = "MsgFromA", mb[] = "MsgFromB!";
    assert_int_equal(write_str(f, a0, ma, sizeof ma), ZX_OK);
    assert_int_equal(write_str(f, b0, mb, sizeof mb), ZX_OK);
    mapping_t m = map_region(f, a1, 0, false);
    assert_int_equal(atomic_load(head_of(&m)), 16 + 16 + 32 + 32);
    iob_mwrb_reader_t reader;
    assert_int_equal(iob_mwrb_reader_init(&reader, m.base, m.size, P), ZX_OK);
    struct {
        uint64_t tag;
        const char* text;
        uint64_t length;
    } want[] = {{UINT64_C(0xAAAAAAAAAAAAAAAA), "", 0},
                {UINT64_C(0xBBBBBBBBBBBBBBBB), "", 0},
                {UINT64_C(0xAAAAAAAAAAAAAAAA), ma, sizeof ma},
                {UINT64_C(0xBBBBBBBBBBBBBBBB), mb, sizeof mb}};
    /* The reader cannot write this read-only mapping, so it walks by peeking at copies. */
    uint64_t tail = 0;
    for (size_t i = 0; i < 4; i++) {
        iob_mwrb_record_header_t rh;
        memcpy(&rh, m.base + P + tail, sizeof rh);
        assert_int_equal(rh.tag, want[i].tag);
        assert_int_equal(rh.length, want[i].length);
        assert_memory_equal(m.base + P + tail + 16, want[i].text, want[i].length);
        tail += (16 + want[i].length + 7) & ~UINT64_C(7);
    }
    assert_int_equal(tail, 96);
    iob_mwrb_record_t rec;
    assert_int_equal(iob_mwrb_peek(&reader, &rec, NULL, 0), ZX_OK);
    assert_int_equal(rec.length, 0);
    assert_int_equal(rec.size, 16);
    unmap_region(f, &m);
}

static void test_writev_max_payload_and_vectors(void** state) {
    fx_t* f = *state;
    const uint64_t max = IOB_MWRB_MAX_PAYLOAD;
    assert_int_equal(max, 65519);
    /* Room for two maximum records. */
    const uint64_t size = 2 * (max / P + 2) * P;
    ring_fx_t r = ring_setup(f, size);
    uint8_t* payload = malloc(max + 1);
    assert_non_null(payload);
    for (uint64_t i = 0; i <= max; i++) {
        payload[i] = (uint8_t)i;
    }
    zx_iovec_t v = {.buffer = payload, .capacity = max + 1};
    assert_int_equal(writev(f, r.e0, &v, 1), ZX_ERR_INVALID_ARGS);
    v.capacity = max;
    assert_int_equal(writev(f, r.e0, &v, 1), ZX_OK);
    const uint64_t head = atomic_load(head_of(&r.map));
    assert_int_equal(head, (max + 16 + 7) & ~UINT64_C(7));
    iob_mwrb_record_header_t rh;
    memcpy(&rh, r.map.base + P, sizeof rh);
    assert_int_equal(rh.tag, TAG);
    assert_int_equal(rh.length, max);
    assert_memory_equal(r.map.base + P + 16, payload, max);
    /* Eight vectors carrying the maximum; nine are refused whatever their size. */
    zx_iovec_t vecs[9];
    uint64_t gap = max / 8, off = 0;
    for (int i = 0; i < 8; i++) {
        vecs[i].buffer = payload + off;
        vecs[i].capacity = i < 7 ? gap : max - off;
        off += vecs[i].capacity;
    }
    vecs[8] = (zx_iovec_t){NULL, 0};
    assert_int_equal(writev(f, r.e0, vecs, 9), ZX_ERR_INVALID_ARGS);
    assert_int_equal(writev(f, r.e0, vecs, 8), ZX_OK);
    assert_memory_equal(r.map.base + P + head + 16, payload, max);
    /* One more byte over eight vectors is refused as well. */
    vecs[7].capacity++;
    assert_int_equal(writev(f, r.e0, vecs, 8), ZX_ERR_INVALID_ARGS);
    free(payload);
    unmap_region(f, &r.map);
}

static void test_writev_corrupt_ring(void** state) {
    fx_t* f = *state;
    ring_fx_t r = ring_setup(f, 2 * P);
    char text[] = "12345678abc"; /* 12 bytes: a 32-byte record */
    size_t strobes = f->n_strobes;
    atomic_store(tail_of(&r.map), 8);
    assert_int_equal(write_str(f, r.e0, text, sizeof text), ZX_ERR_IO_DATA_INTEGRITY);
    atomic_store(head_of(&r.map), 9);
    assert_int_equal(write_str(f, r.e0, text, sizeof text), ZX_ERR_IO_DATA_INTEGRITY);
    /* head + record would pass UINT64_MAX. */
    atomic_store(head_of(&r.map), UINT64_MAX - 32 + 1);
    atomic_store(tail_of(&r.map), UINT64_MAX - 32 + 1);
    assert_int_equal(write_str(f, r.e0, text, sizeof text), ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(f->n_strobes, strobes);
    /* A smaller record still fits below the limit. */
    assert_int_equal(write_str(f, r.e0, text, 5), ZX_OK);
    assert_int_equal(atomic_load(head_of(&r.map)), UINT64_MAX - 32 + 1 + 24);
    assert_int_equal(f->n_strobes, strobes + 1);
    /* Head more than B past tail: NO_SPACE, the writer never overwrites. */
    atomic_store(head_of(&r.map), 2 * P);
    atomic_store(tail_of(&r.map), 0);
    assert_int_equal(write_str(f, r.e0, text, 5), ZX_ERR_NO_SPACE);
    unmap_region(f, &r.map);
}

/* ==== Lifetimes (A.9) ==== */

static void test_shared_region_lifetime(void** state) {
    fx_t* f = *state;
    zx_handle_t s = shared_create(f, 2 * P);
    zx_handle_t e0, e1;
    ring_iob(f, s, MED_W0 | ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE, TAG,
             &e0, &e1);
    /* Closing the shared region's handle does not affect the IOB (A.9). */
    assert_int_equal(iob_core_handle_close(f->core, f->a, s), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 1);
    assert_int_equal(write_str(f, e0, "AliveAfterClose", 16), ZX_OK);
    mapping_t m = map_region(f, e0, 0, false);
    assert_true(atomic_load(head_of(&m)) > 0);
    /* The IOB's handles go; the mapping keeps endpoint, IOB and shared region alive. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    iob_core_stats_t st = stats(f);
    assert_int_equal(st.iobs, 1);
    assert_int_equal(st.shared_regions, 1);
    assert_int_equal(st.bytes_in_use, 2 * P);
    assert_int_equal(m.base[P + 16], 'A');
    /* The last unmap frees all of it and gives the budget back. */
    unmap_region(f, &m);
    st = stats(f);
    assert_int_equal(st.iobs, 0);
    assert_int_equal(st.shared_regions, 0);
    assert_int_equal(st.bytes_in_use, 0);
    assert_int_equal(st.handles, 0);
    /* The other order: the IOB goes first, the shared region lives on its handle. */
    s = shared_create(f, 2 * P);
    ring_iob(f, s, MED_W0, TAG, &e0, &e1);
    zx_handle_t e2, e3;
    ring_iob(f, s, MED_W0, TAG, &e2, &e3);
    assert_int_equal(write_str(f, e0, "x", 1), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 1);
    assert_int_equal(iob_core_handle_close(f->core, f->a, s), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 1); /* the second IOB still uses it */
    assert_int_equal(write_str(f, e2, "y", 1), ZX_OK);
    assert_int_equal(iob_core_session_close(f->core, f->a), ZX_OK);
    assert_int_equal(stats(f).shared_regions, 0);
    assert_int_equal(stats(f).bytes_in_use, 0);
    /* The teardown checks that every memfd, description and server view was closed. */
}

/* ==== zx_iob_allocate_id (A.5, A.8) ==== */

typedef struct ida_fx {
    zx_handle_t e0, e1;
    mapping_t map; /* ep0's read-write mapping: a userspace allocator's view */
} ida_fx_t;

/* Region 0: ep0 maps it read-write, ep1 allocates through the server. Region 1: NONE. */
static ida_fx_t ida_setup(fx_t* f, uint64_t size) {
    ida_fx_t x;
    zx_iob_region_t config[2] = {idalloc_region(size, ZX_IOB_ACCESS_EP0_CAN_MAP_READ |
                                                          ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE | MED_W1),
                                 fx_region(P, FX_RW_BOTH)};
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, config, 2, &x.e0, &x.e1), ZX_OK);
    x.map = map_region(f, x.e0, 0, true);
    return x;
}

static zx_status_t alloc_id(fx_t* f, zx_handle_t h, const void* blob, uint64_t size, uint32_t* id) {
    return iob_core_iob_allocate_id(f->core, f->a, h, 0, 0, blob, size, id);
}

static void test_allocate_id_header_at_create(void** state) {
    fx_t* f = *state;
    /* Written at create even with no mediated bits at all (A.3 7.5). */
    zx_iob_region_t r = idalloc_region(3 * P - 5, FX_RW_BOTH);
    zx_handle_t e0, e1;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &e0, &e1), ZX_OK);
    mapping_t m = map_region(f, e0, 0, false);
    iob_idalloc_header_t h;
    memcpy(&h, m.base, sizeof h);
    assert_int_equal(h.next_id, 0);
    assert_int_equal(h.blob_head, 3 * P);
    for (uint64_t i = 8; i < m.size; i++) {
        assert_int_equal(m.base[i], 0);
    }
    unmap_region(f, &m);
}

static void test_allocate_id_errors_in_order(void** state) {
    fx_t* f = *state;
    ida_fx_t x = ida_setup(f, P);
    iob_core_t* c = f->core;
    uint32_t id = 0xDEAD;
    char blob[10] = "abcdefghi";
    zx_handle_t no_write = 0, s = shared_create(f, 2 * P);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, x.e1, ZX_RIGHT_READ, &no_write), ZX_OK);
    iob_idalloc_header_t* hdr = (iob_idalloc_header_t*)(void*)x.map.base;

    /* 1. options */
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, x.e1, UINT32_MAX, 0, blob, 10, &id),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, 0x1234567, 1, 5, NULL, 10, NULL),
                     ZX_ERR_INVALID_ARGS);
    /* 2. handle: bad, wrong type, no WRITE */
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, 0x1234567, 0, 5, NULL, 10, NULL),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, s, 0, 5, NULL, 10, NULL), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, no_write, 0, 5, NULL, 10, NULL),
                     ZX_ERR_ACCESS_DENIED);
    /* 3. index, 4. discipline, 5. this endpoint's MEDIATED_WRITE */
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, x.e1, 0, 2, NULL, 10, NULL),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, x.e1, 0, 1, NULL, 10, NULL),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, x.e0, 0, 0, NULL, 10, NULL),
                     ZX_ERR_ACCESS_DENIED);
    /* 6. the container: a corrupt header first ... */
    iob_idalloc_header_t saved = *hdr;
    hdr->next_id = UINT32_MAX;
    assert_int_equal(alloc_id(f, x.e1, NULL, UINT32_MAX, NULL), ZX_ERR_IO_DATA_INTEGRITY);
    hdr->next_id = 0;
    hdr->blob_head = (uint32_t)P + 1; /* past the end */
    assert_int_equal(alloc_id(f, x.e1, NULL, 10, NULL), ZX_ERR_IO_DATA_INTEGRITY);
    *hdr = saved;
    /* ... then room (NO_MEMORY means the region is full) ... */
    assert_int_equal(alloc_id(f, x.e1, NULL, P, NULL), ZX_ERR_NO_MEMORY);
    assert_int_equal(alloc_id(f, x.e1, blob, P - 8 - 8 + 1, &id), ZX_ERR_NO_MEMORY);
    /* ... then the blob ... */
    assert_int_equal(alloc_id(f, x.e1, NULL, 10, NULL), ZX_ERR_INVALID_ARGS);
    /* ... then the new ID's slot ... */
    uint64_t* slot0 = (uint64_t*)(void*)(x.map.base + 8);
    *slot0 = 1;
    assert_int_equal(alloc_id(f, x.e1, blob, 10, NULL), ZX_ERR_IO_DATA_INTEGRITY);
    *slot0 = 0;
    /* 7. ... and last the out-pointer; none of these consumed an ID. */
    assert_int_equal(alloc_id(f, x.e1, blob, 10, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(hdr->next_id, 0);
    assert_int_equal(hdr->blob_head, P);
    assert_int_equal(alloc_id(f, x.e1, blob, 10, &id), ZX_OK);
    assert_int_equal(id, 0);
    /* A blob of exactly what is left fits. */
    assert_int_equal(alloc_id(f, x.e1, NULL, 0, &id), ZX_OK);
    uint64_t left = hdr->blob_head - (8 + 8 * (uint64_t)hdr->next_id) - 8;
    uint8_t* rest = calloc(1, left);
    assert_non_null(rest);
    assert_int_equal(alloc_id(f, x.e1, rest, left + 1, &id), ZX_ERR_NO_MEMORY);
    assert_int_equal(alloc_id(f, x.e1, rest, left, &id), ZX_OK);
    assert_int_equal(id, 2);
    assert_int_equal(alloc_id(f, x.e1, NULL, 0, &id), ZX_ERR_NO_MEMORY);
    free(rest);
    unmap_region(f, &x.map);
}

/* The check answers as the call would, step by step, and takes no ID. */
static void test_allocate_id_check(void** state) {
    fx_t* f = *state;
    ida_fx_t x = ida_setup(f, P);
    iob_core_t* c = f->core;
    zx_handle_t no_write = 0, s = shared_create(f, 2 * P);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, x.e1, ZX_RIGHT_READ, &no_write), ZX_OK);
    iob_idalloc_header_t* hdr = (iob_idalloc_header_t*)(void*)x.map.base;
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 1, 0, 10, false),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, 0x1234567, 0, 0, 10, false),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, s, 0, 0, 10, false),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, no_write, 0, 0, 10, false),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 2, 10, false),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 1, 10, false),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e0, 0, 0, 10, false),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 0, P, false),
                     ZX_ERR_NO_MEMORY);
    hdr->next_id = UINT32_MAX;
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 0, 10, false),
                     ZX_ERR_IO_DATA_INTEGRITY);
    hdr->next_id = 0;
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 0, 10, true),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 0, P - 16, false), ZX_OK);
    assert_int_equal(hdr->next_id, 0);
    assert_int_equal(hdr->blob_head, P);
    uint32_t id = 99;
    assert_int_equal(alloc_id(f, x.e1, "abc", 3, &id), ZX_OK);
    assert_int_equal(id, 0);
    unmap_region(f, &x.map);
}

static void test_allocate_id_sequential_and_readable(void** state) {
    fx_t* f = *state;
    ida_fx_t x = ida_setup(f, 2 * P);
    /* ep1 through the server and ep0's own userspace allocator share one sequence. */
    char blob[16];
    for (uint32_t want = 0; want < 100; want++) {
        snprintf(blob, sizeof blob, "blob-%u", want);
        uint32_t id = 0xDEAD;
        if (want % 2 == 0) {
            assert_int_equal(alloc_id(f, x.e1, blob, strlen(blob), &id), ZX_OK);
        } else {
            assert_int_equal(iob_idalloc_allocate(x.map.base, x.map.size, blob, strlen(blob), &id),
                             ZX_OK);
        }
        assert_int_equal(id, want);
    }
    /* Zero-length blobs are IDs too. */
    uint32_t id = 0;
    assert_int_equal(alloc_id(f, x.e1, NULL, 0, &id), ZX_OK);
    assert_int_equal(id, 100);
    uint32_t next = 0;
    assert_int_equal(iob_idalloc_next_id(x.map.base, x.map.size, &next), ZX_OK);
    assert_int_equal(next, 101);
    for (uint32_t i = 0; i < 100; i++) {
        const void* p = NULL;
        uint32_t size = 0;
        assert_int_equal(iob_idalloc_lookup(x.map.base, x.map.size, i, &p, &size), ZX_OK);
        snprintf(blob, sizeof blob, "blob-%u", i);
        assert_int_equal(size, strlen(blob));
        assert_memory_equal(p, blob, size);
    }
    const void* p = NULL;
    uint32_t size = 1;
    assert_int_equal(iob_idalloc_lookup(x.map.base, x.map.size, 100, &p, &size), ZX_OK);
    assert_int_equal(size, 0);
    assert_int_equal(iob_idalloc_lookup(x.map.base, x.map.size, 101, &p, &size), ZX_ERR_NOT_FOUND);
    unmap_region(f, &x.map);
}

static void test_allocate_id_until_full(void** state) {
    fx_t* f = *state;
    ida_fx_t x = ida_setup(f, P);
    char blob[10] = {'a'};
    uint32_t id = 0, count = 0;
    zx_status_t st;
    while ((st = alloc_id(f, x.e1, blob, sizeof blob, &id)) == ZX_OK) {
        assert_int_equal(id, count);
        count++;
    }
    assert_int_equal(st, ZX_ERR_NO_MEMORY);
    /* Each ID takes an 8-byte slot and 10 blob bytes out of P - 8. */
    assert_int_equal(count, (P - 8) / 18);
    iob_idalloc_header_t h;
    memcpy(&h, x.map.base, sizeof h);
    assert_int_equal(h.next_id, count);
    assert_int_equal(h.blob_head, P - 10 * count);
    unmap_region(f, &x.map);
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
        T(test_writev_errors_in_order),
        T(test_writev_records_and_wrap),
        T(test_writev_header_only_records),
        T(test_writev_max_payload_and_vectors),
        T(test_writev_corrupt_ring),
        T(test_shared_region_lifetime),
        T(test_allocate_id_header_at_create),
        T(test_allocate_id_errors_in_order),
        T(test_allocate_id_check),
        T(test_allocate_id_sequential_and_readable),
        T(test_allocate_id_until_full),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
