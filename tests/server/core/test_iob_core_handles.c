/* SPDX-License-Identifier: MIT */
/*
 * iob_core: every call that takes a handle looks it up as Zircon's handle table does
 * (GetDispatcherWithRights): not a handle of this session is BAD_HANDLE, a handle of another
 * object type is WRONG_TYPE, a missing right is ACCESS_DENIED, in that order and at the
 * place of each call's documented order (docs/zircon-iob.md A.3 7.2, A.4, A.5, A.6, A.10,
 * A.12). The other types: an IOB endpoint where a shared region is expected and the other
 * way round, and the root VMAR pseudo-handle, which every session holds as a VMAR.
 */
#include <string.h>

#include "core_fixture.h"
#include "shm/handles.h"
#include "test_util.h"

#define P FX_PAGE
#define ROOT IOB_VMAR_ROOT_HANDLE
/* Never issued: real handle values stay below IOB_CORE_HANDLE_VALUE_LIMIT. */
#define BOGUS ((zx_handle_t)0x80000003)

/* One of each kind, all in session A. */
typedef struct objs {
    zx_handle_t e0, e1;  /* an IOB: one private region, read-write for both */
    zx_handle_t none;    /* e0 with no rights at all */
    zx_handle_t sr;      /* a shared region of two pages */
    zx_handle_t sr_none; /* sr with no rights at all */
} objs_t;

static objs_t objs_make(fx_t* f) {
    objs_t o;
    fx_create(f, P, FX_RW_BOTH, &o.e0, &o.e1);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, o.e0, ZX_RIGHT_NONE, &o.none),
                     ZX_OK);
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 2 * P, &o.sr), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, o.sr, ZX_RIGHT_NONE, &o.sr_none),
                     ZX_OK);
    return o;
}

static zx_iob_region_t ring_on(zx_handle_t shared) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_SHARED;
    r.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    r.shared_region.shared_region = shared;
    return r;
}

/* A.3 7.2: the shared region is looked up with no right required. */
static void test_create_shared_region_handle(void** state) {
    fx_t* f = *state;
    objs_t o = objs_make(f);
    zx_handle_t a = 0, b = 0;
    zx_iob_region_t r = ring_on(BOGUS);
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &a, &b), ZX_ERR_BAD_HANDLE);
    /* Another session's shared region is no handle of this one. */
    r = ring_on(o.sr);
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &r, 1, &a, &b), ZX_ERR_BAD_HANDLE);
    r = ring_on(ROOT);
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &a, &b), ZX_ERR_WRONG_TYPE);
    r = ring_on(o.e0);
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &a, &b), ZX_ERR_WRONG_TYPE);
    /* Order: the region's options come before the handle. */
    r = ring_on(ROOT);
    r.size = P;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &a, &b), ZX_ERR_INVALID_ARGS);
    /* No right is needed: a handle with none works. */
    r = ring_on(o.sr_none);
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &a, &b), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, a), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, b), ZX_OK);
}

/* A.4 step 2 (the IOB), before the region index (3) and the rights (6). */
static void test_map_handle(void** state) {
    fx_t* f = *state;
    objs_t o = objs_make(f);
    iob_map_grant_t g;
    const zx_vm_option_t R = ZX_VM_PERM_READ;
    assert_int_equal(iob_core_map(f->core, f->a, BOGUS, R, 0, 0, P, &g), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_map(f->core, f->b, o.e0, R, 0, 0, P, &g), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_map(f->core, f->a, ROOT, R, 0, 0, P, &g), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_map(f->core, f->a, o.sr, R, 0, 0, P, &g), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_map_dup(f->core, f->a, ROOT, R, 0, 0, P, &g), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_map(f->core, f->a, ROOT, R, 9, 0, P, &g), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_map(f->core, f->a, o.sr, R, 9, 0, P, &g), ZX_ERR_WRONG_TYPE);
    /* The rights count only at step 6: a bad index wins over a handle with none. */
    assert_int_equal(iob_core_map(f->core, f->a, o.none, R, 9, 0, P, &g), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_map(f->core, f->a, o.none, R, 0, 0, P, &g), ZX_ERR_ACCESS_DENIED);
}

/* A.10: the IOB topics need an IOB with INSPECT; HANDLE_BASIC and HANDLE_VALID any object. */
static void test_get_info_handle(void** state) {
    fx_t* f = *state;
    objs_t o = objs_make(f);
    iob_core_t* c = f->core;
    const uint32_t topics[2] = {ZX_INFO_IOB, ZX_INFO_IOB_REGIONS};
    for (int i = 0; i < 2; i++) {
        zx_iob_region_info_t buf[2];
        size_t actual = 7, avail = 7;
        uint32_t t = topics[i];
        assert_int_equal(iob_core_get_info(c, f->a, BOGUS, t, buf, sizeof buf, &actual, &avail),
                         ZX_ERR_BAD_HANDLE);
        assert_int_equal(iob_core_get_info(c, f->a, ROOT, t, buf, sizeof buf, &actual, &avail),
                         ZX_ERR_WRONG_TYPE);
        assert_int_equal(iob_core_get_info(c, f->a, o.sr, t, buf, sizeof buf, &actual, &avail),
                         ZX_ERR_WRONG_TYPE);
        /* The type before the right: a shared region without INSPECT is still the wrong type. */
        assert_int_equal(
            iob_core_get_info(c, f->a, o.sr_none, t, buf, sizeof buf, &actual, &avail),
            ZX_ERR_WRONG_TYPE);
        assert_int_equal(iob_core_get_info(c, f->a, o.none, t, buf, sizeof buf, &actual, &avail),
                         ZX_ERR_ACCESS_DENIED);
        /* Only BUFFER_TOO_SMALL fills in the counts. */
        assert_int_equal(actual, 7);
        assert_int_equal(avail, 7);
        assert_int_equal(iob_core_get_info(c, f->a, o.e1, t, buf, sizeof buf, &actual, &avail),
                         ZX_OK);
    }
    /* The root VMAR answers the topics of any object, as a VMAR. */
    assert_int_equal(iob_core_get_info(c, f->a, ROOT, ZX_INFO_HANDLE_VALID, NULL, 0, NULL, NULL),
                     ZX_OK);
    assert_int_equal(iob_core_get_info(c, f->a, BOGUS, ZX_INFO_HANDLE_VALID, NULL, 0, NULL, NULL),
                     ZX_ERR_BAD_HANDLE);
    zx_info_handle_basic_t basic = fx_basic(f, f->a, ROOT);
    assert_int_equal(basic.type, ZX_OBJ_TYPE_VMAR);
    assert_int_equal(basic.rights, IOB_VMAR_ROOT_RIGHTS);
    assert_int_equal(basic.related_koid, ZX_KOID_INVALID);
    /* A topic of another object type: looked up (BAD_HANDLE first), then the wrong type. */
    uint8_t vmo[64];
    assert_int_equal(iob_core_get_info(c, f->a, BOGUS, 6 /* ZX_INFO_VMO */, vmo, sizeof vmo,
                                       NULL, NULL),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(
        iob_core_get_info(c, f->a, ROOT, 6 /* ZX_INFO_VMO */, vmo, sizeof vmo, NULL, NULL),
        ZX_ERR_WRONG_TYPE);
    /* A session that has ended holds no root VMAR either. */
    assert_int_equal(iob_core_session_close(c, f->b), ZX_OK);
    assert_int_equal(iob_core_get_info(c, f->b, ROOT, ZX_INFO_HANDLE_VALID, NULL, 0, NULL, NULL),
                     ZX_ERR_BAD_HANDLE);
}

/* A.12: the handle, then GET_PROPERTY / SET_PROPERTY, then the property. */
static void test_property_handle(void** state) {
    fx_t* f = *state;
    objs_t o = objs_make(f);
    iob_core_t* c = f->core;
    char name[ZX_MAX_NAME_LEN] = "n";
    assert_int_equal(iob_core_get_property(c, f->a, BOGUS, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_set_property(c, f->a, BOGUS, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_BAD_HANDLE);
    /* A VMAR holds neither property right; the right is judged before the property. */
    assert_int_equal(iob_core_get_property(c, f->a, ROOT, 99, name, sizeof name),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_set_property(c, f->a, ROOT, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_get_property(c, f->a, o.none, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_set_property(c, f->a, o.sr_none, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_ACCESS_DENIED);
    /* Any object type is fine here: a shared region answers (A.10). */
    assert_int_equal(iob_core_get_property(c, f->a, o.sr, ZX_PROP_NAME, name, sizeof name), ZX_OK);
    assert_int_equal(iob_core_set_property(c, f->a, o.sr, ZX_PROP_NAME, name, sizeof name),
                     ZX_ERR_NOT_SUPPORTED);
}

/* A.10 signals and A.12 waits: the handle, then SIGNAL / SIGNAL_PEER / WAIT. */
static void test_signal_and_wait_handle(void** state) {
    fx_t* f = *state;
    objs_t o = objs_make(f);
    iob_core_t* c = f->core;
    const uint32_t S = ZX_USER_SIGNAL_0;
    zx_signals_t sig = 0;
    assert_int_equal(iob_core_object_signal(c, f->a, BOGUS, 0, S), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_object_signal_peer(c, f->a, BOGUS, 0, S), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_signals(c, f->a, BOGUS, &sig, NULL), ZX_ERR_BAD_HANDLE);
    /* The rights before the mask: a VMAR has none of the three. */
    assert_int_equal(iob_core_object_signal(c, f->a, ROOT, 0, ZX_IOB_PEER_CLOSED),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_object_signal_peer(c, f->a, ROOT, 0, S), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_signals(c, f->a, ROOT, &sig, NULL), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_object_signal(c, f->a, o.none, 0, S), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_object_signal_peer(c, f->a, o.none, 0, S), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_signals(c, f->a, o.none, &sig, NULL), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_object_signal(c, f->a, o.sr, 0, S), ZX_OK);
    assert_int_equal(iob_core_object_signal_peer(c, f->a, o.sr, 0, S), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_signals(c, f->a, o.sr, &sig, NULL), ZX_OK);
    assert_true(sig & S);
}

/* A.12: close, duplicate (DUPLICATE), replace (no right), export (TRANSFER). */
static void test_handle_calls(void** state) {
    fx_t* f = *state;
    objs_t o = objs_make(f);
    iob_core_t* c = f->core;
    zx_handle_t out = 0;
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_close(c, f->a, BOGUS), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, BOGUS, ZX_RIGHT_SAME_RIGHTS, &out),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_replace(c, f->a, BOGUS, ZX_RIGHT_SAME_RIGHTS, &out),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_export(c, f->a, BOGUS, token), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, o.none, ZX_RIGHT_SAME_RIGHTS, &out),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_handle_export(c, f->a, o.sr_none, token), ZX_ERR_ACCESS_DENIED);

    /* The root VMAR: closing does nothing; it cannot be copied, replaced or moved on iob. */
    assert_int_equal(iob_core_handle_close(c, f->a, ROOT), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, ROOT, ZX_RIGHT_SIGNAL, &out),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, ROOT, ZX_RIGHT_SAME_RIGHTS, &out),
                     ZX_ERR_NOT_SUPPORTED);
    assert_int_equal(iob_core_handle_replace(c, f->a, ROOT, ZX_RIGHT_SAME_RIGHTS, &out),
                     ZX_ERR_NOT_SUPPORTED);
    assert_int_equal(iob_core_handle_export(c, f->a, ROOT, token), ZX_ERR_NOT_SUPPORTED);
    assert_int_equal(iob_core_get_info(c, f->a, ROOT, ZX_INFO_HANDLE_VALID, NULL, 0, NULL, NULL),
                     ZX_OK);

    /* Any object type is fine for these: the shared region works. */
    assert_int_equal(iob_core_handle_duplicate(c, f->a, o.sr, ZX_RIGHT_SAME_RIGHTS, &out), ZX_OK);
    assert_int_equal(iob_core_handle_replace(c, f->a, out, ZX_RIGHT_SAME_RIGHTS, &out), ZX_OK);
    assert_int_equal(iob_core_handle_export(c, f->a, out, token), ZX_OK);
    assert_int_equal(iob_core_handle_close(c, f->a, o.sr), ZX_OK);
}

/* A.5 and A.6 step 2 (WRITE; the type before the right), after the options (step 1) and
 * before the region index (step 3). */
static void test_mediated_handle(void** state) {
    fx_t* f = *state;
    objs_t o = objs_make(f);
    iob_core_t* c = f->core;
    char byte = 'x';
    zx_iovec_t vec = {&byte, 1};
    uint32_t id = 0;
    assert_int_equal(iob_core_iob_writev(c, f->a, BOGUS, 1, 0, &vec, 1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, BOGUS, 1, 0, NULL, 0, &id),
                     ZX_ERR_INVALID_ARGS);
    const zx_handle_t bad[3] = {BOGUS, ROOT, o.sr_none};
    const zx_status_t want[3] = {ZX_ERR_BAD_HANDLE, ZX_ERR_WRONG_TYPE, ZX_ERR_WRONG_TYPE};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(iob_core_iob_writev(c, f->a, bad[i], 0, 9, &vec, 1), want[i]);
        assert_int_equal(iob_core_iob_allocate_id(c, f->a, bad[i], 0, 9, NULL, 0, &id), want[i]);
        assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, bad[i], 0, 9, 0, false),
                         want[i]);
    }
    assert_int_equal(iob_core_iob_writev(c, f->a, o.sr, 0, 0, &vec, 1), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_writev(c, f->a, o.none, 0, 9, &vec, 1), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, o.none, 0, 9, NULL, 0, &id),
                     ZX_ERR_ACCESS_DENIED);
    /* A handle that passes step 2 reaches step 3. */
    assert_int_equal(iob_core_iob_writev(c, f->a, o.e0, 0, 9, &vec, 1), ZX_ERR_OUT_OF_RANGE);
}

/* Mediated reads and writes of region memory: an IOB with READ / WRITE. */
static void test_region_access_handle(void** state) {
    fx_t* f = *state;
    objs_t o = objs_make(f);
    iob_core_t* c = f->core;
    char buf[8] = {0};
    const zx_handle_t bad[4] = {BOGUS, ROOT, o.sr, o.none};
    const zx_status_t want[4] = {ZX_ERR_BAD_HANDLE, ZX_ERR_WRONG_TYPE, ZX_ERR_WRONG_TYPE,
                                 ZX_ERR_ACCESS_DENIED};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(iob_core_region_read(c, f->a, bad[i], 0, 0, buf, sizeof buf), want[i]);
        assert_int_equal(iob_core_region_write(c, f->a, bad[i], 0, 0, buf, sizeof buf), want[i]);
    }
    assert_int_equal(iob_core_region_write(c, f->a, o.e0, 0, 0, buf, sizeof buf), ZX_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_shared_region_handle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_map_handle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_get_info_handle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_property_handle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_signal_and_wait_handle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_handle_calls, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mediated_handle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_region_access_handle, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
