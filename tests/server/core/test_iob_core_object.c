/* SPDX-License-Identifier: MIT */
/* iob_core's objects (server/core/iob_object.c): info (A.10), properties (A.12), signals,
 * listing and statistics. */
#include <string.h>

#include "core_fixture.h"
#include "test_util.h"

#define P FX_PAGE
/* Never issued: at or above IOB_CORE_HANDLE_VALUE_LIMIT. */
#define BOGUS_HANDLE ((zx_handle_t)0x80000003)

/* ---- get_info ---- */

static void test_info_iob(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_info_iob_t info;
    memset(&info, 0xFF, sizeof info);
    size_t actual = 99, avail = 99;
    assert_int_equal(iob_core_get_info(f->core, f->a, e1, ZX_INFO_IOB, &info, sizeof info,
                                       &actual, &avail),
                     ZX_OK);
    assert_int_equal(info.options, 0);
    assert_int_equal(info.region_count, 1);
    assert_int_equal(actual, 1);
    assert_int_equal(avail, 1);
    /* Too small: actual 0, avail 1. */
    actual = avail = 99;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB, &info, sizeof info - 1,
                                       &actual, &avail),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(actual, 0);
    assert_int_equal(avail, 1);
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB, NULL, 0, &actual, &avail),
                     ZX_ERR_BUFFER_TOO_SMALL);
    /* NULL actual/avail are allowed. */
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB, &info, sizeof info, NULL,
                                       NULL),
                     ZX_OK);
}

static void test_info_needs_inspect(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, r;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0xF0EF & ~ZX_RIGHT_INSPECT, &r),
                     ZX_OK);
    zx_info_iob_t info;
    zx_iob_region_info_t ri;
    size_t actual = 99, avail = 99;
    assert_int_equal(iob_core_get_info(f->core, f->a, r, ZX_INFO_IOB, &info, sizeof info, &actual,
                                       &avail),
                     ZX_ERR_ACCESS_DENIED);
    /* Rights are checked before the buffer size. */
    assert_int_equal(iob_core_get_info(f->core, f->a, r, ZX_INFO_IOB, NULL, 0, &actual, &avail),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_get_info(f->core, f->a, r, ZX_INFO_IOB_REGIONS, &ri, sizeof ri,
                                       &actual, &avail),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(actual, 99);
    /* HANDLE_BASIC needs no right at all. */
    zx_handle_t none;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0, &none), ZX_OK);
    zx_info_handle_basic_t b = fx_basic(f, f->a, none);
    assert_int_equal(b.rights, 0);
    assert_int_equal(b.koid, fx_basic(f, f->a, e0).koid);
}

static void test_info_regions_buffer_sizes(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r[3] = {fx_region(P, FX_RW_BOTH), fx_region(2 * P, FX_RW_BOTH),
                            fx_region(3 * P, FX_RW_BOTH)};
    zx_handle_t e0, e1;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, r, 3, &e0, &e1), ZX_OK);
    zx_iob_region_info_t info[4];
    size_t actual = 99, avail = 99;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, NULL, 0, &actual,
                                       &avail),
                     ZX_OK);
    assert_int_equal(actual, 0);
    assert_int_equal(avail, 3);
    static const size_t sizes[] = {0, 127, 128, 255, 256, 383, 384, 512};
    static const size_t want[] = {0, 0, 1, 1, 2, 2, 3, 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(info, 0xEE, sizeof info);
        assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, info, sizes[i],
                                           &actual, &avail),
                         ZX_OK);
        assert_int_equal(actual, want[i]);
        assert_int_equal(avail, 3);
        for (size_t k = 0; k < actual; k++) {
            assert_int_equal(info[k].region.size, (k + 1) * P);
        }
        /* Nothing past the copied records is touched. */
        const unsigned char* rest = (const unsigned char*)&info[actual];
        assert_int_equal(rest[0], 0xEE);
    }
    /* Region koids are distinct. */
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, info, sizeof info,
                                       &actual, &avail),
                     ZX_OK);
    assert_int_not_equal(info[0].koid, info[1].koid);
    assert_int_not_equal(info[1].koid, info[2].koid);
    assert_int_not_equal(info[0].koid, info[2].koid);
}

static void test_info_regions_swapped_for_ep1(void** state) {
    fx_t* f = *state;
    zx_iob_access_t access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                             ZX_IOB_ACCESS_EP1_CAN_MAP_READ | 0x12340000u;
    zx_handle_t e0, e1;
    fx_create(f, P, access, &e0, &e1);
    zx_iob_region_info_t i0, i1;
    size_t actual, avail;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, &i0, sizeof i0,
                                       &actual, &avail),
                     ZX_OK);
    assert_int_equal(iob_core_get_info(f->core, f->a, e1, ZX_INFO_IOB_REGIONS, &i1, sizeof i1,
                                       &actual, &avail),
                     ZX_OK);
    /* ep0 sees the bits as given, reserved ones included. */
    assert_int_equal(i0.region.access, access);
    /* ep1: "EP0" means the caller; reserved bits are dropped. */
    assert_int_equal(i1.region.access, ZX_IOB_ACCESS_EP0_CAN_MAP_READ |
                                           ZX_IOB_ACCESS_EP1_CAN_MAP_READ |
                                           ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE);
    assert_int_equal(i0.koid, i1.koid);
    /* Everything else identical. */
    i1.region.access = i0.region.access;
    assert_memory_equal(&i0, &i1, sizeof i0);
}

static void test_info_handle_basic(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_info_handle_basic_t b;
    size_t actual = 99, avail = 99;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_HANDLE_BASIC, &b, sizeof b - 1,
                                       &actual, &avail),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(actual, 0);
    assert_int_equal(avail, 1);
    /* HANDLE_VALID: success and no record. */
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_HANDLE_VALID, NULL, 0, NULL,
                                       NULL),
                     ZX_OK);
}

static void test_info_bad_handle_and_topic(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_info_iob_t info;
    size_t actual = 99, avail = 99;
    assert_int_equal(iob_core_get_info(f->core, f->a, BOGUS_HANDLE, ZX_INFO_IOB, &info,
                                       sizeof info, &actual, &avail),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_get_info(f->core, f->a, ZX_HANDLE_INVALID, ZX_INFO_HANDLE_VALID,
                                       NULL, 0, NULL, NULL),
                     ZX_ERR_BAD_HANDLE);
    /* Another session's handle is as bad as one that never existed. */
    assert_int_equal(iob_core_get_info(f->core, f->b, e0, ZX_INFO_IOB, &info, sizeof info,
                                       &actual, &avail),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(actual, 99);
    /* Another object type's topic: the handle is looked up, then it is the wrong type. */
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, 23 /* ZX_INFO_VMO */, &info,
                                       sizeof info, &actual, &avail),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_get_info(f->core, f->a, BOGUS_HANDLE, 23 /* ZX_INFO_VMO */, &info,
                                       sizeof info, &actual, &avail),
                     ZX_ERR_BAD_HANDLE);
    /* A topic Zircon does not know: NOT_SUPPORTED before the handle (its default case). */
    assert_int_equal(iob_core_get_info(f->core, f->a, BOGUS_HANDLE, 0xFFFF, &info, sizeof info,
                                       &actual, &avail),
                     ZX_ERR_NOT_SUPPORTED);
    /* A closed handle is bad. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB, &info, sizeof info,
                                       &actual, &avail),
                     ZX_ERR_BAD_HANDLE);
}

/* A NULL buffer that claims room: INVALID_ARGS (the copy-out fails), counts untouched. */
static void test_info_null_buffer_with_room(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r[2] = {fx_region(P, FX_RW_BOTH), fx_region(P, FX_RW_BOTH)};
    zx_handle_t e0, e1;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, r, 2, &e0, &e1), ZX_OK);
    size_t actual = 99, avail = 99;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB, NULL,
                                       sizeof(zx_info_iob_t), &actual, &avail),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(actual, 99);
    assert_int_equal(avail, 99);
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_HANDLE_BASIC, NULL,
                                       sizeof(zx_info_handle_basic_t), &actual, &avail),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(actual, 99);
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, NULL,
                                       sizeof(zx_iob_region_info_t), &actual, &avail),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(actual, 99);
    assert_int_equal(avail, 99);
    /* Less than one record of room: nothing to copy, so a NULL buffer is fine. */
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, NULL,
                                       sizeof(zx_iob_region_info_t) - 1, &actual, &avail),
                     ZX_OK);
    assert_int_equal(actual, 0);
    assert_int_equal(avail, 2);
    /* The right is checked before the buffer. */
    zx_handle_t noinspect;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0xF0EF & ~ZX_RIGHT_INSPECT,
                                               &noinspect),
                     ZX_OK);
    assert_int_equal(iob_core_get_info(f->core, f->a, noinspect, ZX_INFO_IOB_REGIONS, NULL,
                                       sizeof(zx_iob_region_info_t), &actual, &avail),
                     ZX_ERR_ACCESS_DENIED);
}

/* ---- properties ---- */

static void test_name_shared_and_padded(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char name[40];
    memset(name, 'x', sizeof name);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, ZX_PROP_NAME, name, sizeof name),
                     ZX_OK);
    char zeros[32] = {0};
    assert_memory_equal(name, zeros, 32);
    assert_int_equal(name[32], 'x'); /* exactly 32 bytes copied */

    assert_int_equal(iob_core_set_property(f->core, f->a, e0, ZX_PROP_NAME, "hello", 5), ZX_OK);
    memset(name, 'x', sizeof name);
    assert_int_equal(iob_core_get_property(f->core, f->a, e1, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_string_equal(name, "hello");
    for (int i = 5; i < 32; i++) {
        assert_int_equal(name[i], 0);
    }
    /* Set through ep1, seen through ep0; the empty name is fine. */
    assert_int_equal(iob_core_set_property(f->core, f->a, e1, ZX_PROP_NAME, "", 0), ZX_OK);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_memory_equal(name, zeros, 32);
    /* Bytes after a NUL are not part of the name. */
    assert_int_equal(iob_core_set_property(f->core, f->a, e1, ZX_PROP_NAME, "ab\0cd", 5), ZX_OK);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_string_equal(name, "ab");
    assert_int_equal(name[3], 0);
}

static void test_name_truncation(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    const char* n31 = "0123456789012345678901234567890";
    const char* n40 = "0123456789012345678901234567890123456789";
    char name[32];
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, ZX_PROP_NAME, n31, 31), ZX_OK);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_string_equal(name, n31);
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, ZX_PROP_NAME, "short", 5), ZX_OK);
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, ZX_PROP_NAME, n40, 32), ZX_OK);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_string_equal(name, n31);
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, ZX_PROP_NAME, n40, 40), ZX_OK);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_string_equal(name, n31);
    /* A short, unterminated value is taken as is. */
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, ZX_PROP_NAME, n40, 3), ZX_OK);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_string_equal(name, "012");
}

static void test_property_errors_in_order(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, ro;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char name[32];
    /* NULL value comes before the handle. */
    assert_int_equal(iob_core_get_property(f->core, f->a, BOGUS_HANDLE, ZX_PROP_NAME, NULL, 32),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_set_property(f->core, f->a, BOGUS_HANDLE, ZX_PROP_NAME, NULL, 3),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_get_property(f->core, f->a, BOGUS_HANDLE, ZX_PROP_NAME, name, 32),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_set_property(f->core, f->b, e0, ZX_PROP_NAME, "x", 1),
                     ZX_ERR_BAD_HANDLE);
    /* The right before the buffer size and before the property. */
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0,
                                               0xF0EF & ~(ZX_RIGHT_GET_PROPERTY |
                                                          ZX_RIGHT_SET_PROPERTY),
                                               &ro),
                     ZX_OK);
    assert_int_equal(iob_core_get_property(f->core, f->a, ro, ZX_PROP_NAME, name, 1),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_get_property(f->core, f->a, ro, 99, name, 32), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_set_property(f->core, f->a, ro, ZX_PROP_NAME, "x", 1),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, ZX_PROP_NAME, name, 31),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, 99, name, 32), ZX_ERR_NOT_SUPPORTED);
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, 99, name, 32), ZX_ERR_NOT_SUPPORTED);
    /* The property comes before the buffer size (Zircon switches on it first). */
    assert_int_equal(iob_core_get_property(f->core, f->a, e0, 99, name, 1), ZX_ERR_NOT_SUPPORTED);
    /* A refused set leaves the name alone. */
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, ZX_PROP_NAME, "kept", 4), ZX_OK);
    assert_int_equal(iob_core_set_property(f->core, f->a, ro, ZX_PROP_NAME, "lost", 4),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_set_property(f->core, f->a, e0, 99, "lost", 4),
                     ZX_ERR_NOT_SUPPORTED);
    assert_int_equal(iob_core_get_property(f->core, f->a, e1, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_string_equal(name, "kept");
}

static void test_duplicate_null_out(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    /* The rights are checked before the out pointer; nothing is created or consumed. */
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, NULL),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(fx_stats(f).handles, 2);
    /* Replace with a NULL out consumes the original (A.12: consumed even on INVALID_ARGS). */
    assert_int_equal(iob_core_handle_replace(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, NULL),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(fx_stats(f).handles, 1);
    assert_int_equal(fx_signals(f, f->a, e1), ZX_IOB_PEER_CLOSED);
}

/* ---- signals ---- */

static void test_signal_user_bits(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_koid_t k0 = 0, k1 = fx_basic(f, f->a, e1).koid;
    zx_signals_t s = 1;
    assert_int_equal(iob_core_signals(f->core, f->a, e0, &s, &k0), ZX_OK);
    assert_int_equal(s, 0);
    assert_int_equal(k0, fx_basic(f, f->a, e0).koid);
    assert_int_equal(fx_signals(f, f->a, e1), 0);

    assert_int_equal(iob_core_object_signal(f->core, f->a, e0, 0, ZX_USER_SIGNAL_0), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e0), ZX_USER_SIGNAL_0);
    assert_int_equal(fx_signals(f, f->a, e1), 0);
    assert_int_equal(fx_last_signals(f, k0), ZX_USER_SIGNAL_0);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->a, e0, 0,
                                                 ZX_USER_SIGNAL_3 | ZX_USER_SIGNAL_7),
                     ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e1), ZX_USER_SIGNAL_3 | ZX_USER_SIGNAL_7);
    assert_int_equal(fx_last_signals(f, k1), ZX_USER_SIGNAL_3 | ZX_USER_SIGNAL_7);
    /* Clear and set together: clear first, then set. */
    assert_int_equal(iob_core_object_signal(f->core, f->a, e1, ZX_USER_SIGNAL_ALL,
                                            ZX_USER_SIGNAL_1),
                     ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e1), ZX_USER_SIGNAL_1);
    /* No change, no event. */
    size_t events = f->n_signals;
    assert_int_equal(iob_core_object_signal(f->core, f->a, e1, 0, ZX_USER_SIGNAL_1), ZX_OK);
    assert_int_equal(f->n_signals, events);
}

static void test_signal_errors_in_order(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, nosig;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_object_signal(f->core, f->a, BOGUS_HANDLE, 0, ZX_USER_SIGNAL_0),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->b, e0, 0, ZX_USER_SIGNAL_0),
                     ZX_ERR_BAD_HANDLE);
    /* Non-user bits, PEER_CLOSED included, in either mask. */
    assert_int_equal(iob_core_object_signal(f->core, f->a, e0, 0, ZX_IOB_PEER_CLOSED),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_object_signal(f->core, f->a, e0, ZX_IOB_PEER_CLOSED, 0),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->a, e0, 0, 1u << 23),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->a, e0, 1u, 0), ZX_ERR_INVALID_ARGS);
    /* Rights first: no SIGNAL / SIGNAL_PEER is ACCESS_DENIED even with bad bits. */
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0,
                                               0xF0EF & ~(ZX_RIGHT_SIGNAL | ZX_RIGHT_SIGNAL_PEER |
                                                          ZX_RIGHT_WAIT),
                                               &nosig),
                     ZX_OK);
    assert_int_equal(iob_core_object_signal(f->core, f->a, nosig, 0, ZX_USER_SIGNAL_0),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_object_signal(f->core, f->a, nosig, 0, ZX_IOB_PEER_CLOSED),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->a, nosig, 0, ZX_USER_SIGNAL_0),
                     ZX_ERR_ACCESS_DENIED);
    zx_signals_t s = 0;
    assert_int_equal(iob_core_signals(f->core, f->a, nosig, &s, NULL), ZX_ERR_ACCESS_DENIED);
    /* Peer gone: PEER_CLOSED, but invalid bits are reported first. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->a, e0, 0, ZX_IOB_PEER_CLOSED),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->a, e0, 0, ZX_USER_SIGNAL_0),
                     ZX_ERR_PEER_CLOSED);
    /* Signalling oneself still works, PEER_CLOSED stays. */
    assert_int_equal(iob_core_object_signal(f->core, f->a, e0, 0, ZX_USER_SIGNAL_2), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e0), ZX_IOB_PEER_CLOSED | ZX_USER_SIGNAL_2);
    assert_int_equal(iob_core_object_signal(f->core, f->a, e0, ZX_USER_SIGNAL_ALL, 0), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e0), ZX_IOB_PEER_CLOSED);
}

/* ---- listing ---- */

static void test_list_and_stats(void** state) {
    fx_t* f = *state;
    zx_handle_t a0, a1, b0, b1;
    fx_create(f, P, FX_RW_BOTH, &a0, &a1);
    zx_iob_region_t r[2] = {fx_region(P, FX_RW_BOTH), fx_region(P + 1, FX_RW_BOTH)};
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, r, 2, &b0, &b1), ZX_OK);
    assert_int_equal(iob_core_set_property(f->core, f->b, b0, ZX_PROP_NAME, "second", 6), ZX_OK);
    size_t n = 99;
    assert_int_equal(iob_core_list(f->core, NULL, 0, &n), ZX_OK);
    assert_int_equal(n, 2);
    iob_core_iob_summary_t s[3];
    memset(s, 0xAA, sizeof s);
    assert_int_equal(iob_core_list(f->core, s, 1, &n), ZX_OK);
    assert_int_equal(n, 2);
    assert_int_equal(s[0].koid, fx_basic(f, f->a, a0).koid);
    assert_int_equal(((unsigned char*)&s[1])[0], 0xAA);
    assert_int_equal(iob_core_list(f->core, s, 3, &n), ZX_OK);
    assert_int_equal(n, 2);
    assert_int_equal(s[1].koid, fx_basic(f, f->b, b0).koid);
    assert_int_equal(s[1].region_count, 2);
    assert_int_equal(s[1].total_bytes, 3 * P);
    assert_string_equal(s[1].name, "second");
    assert_int_equal(s[1].endpoints[1].koid, fx_basic(f, f->b, b1).koid);
    assert_int_equal(s[1].endpoints[0].handles, 1);
    assert_int_equal(iob_core_list(f->core, NULL, 1, &n), ZX_ERR_INVALID_ARGS);

    assert_int_equal(fx_stats(f).iobs, 2);
    assert_int_equal(fx_stats(f).sessions, 2);
    assert_int_equal(fx_stats(f).handles, 4);
    assert_int_equal(fx_stats(f).mappings, 0);
    assert_int_equal(fx_stats(f).tokens, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 4 * P);
}

static void test_error_detail(void** state) {
    fx_t* f = *state;
    assert_int_equal(iob_core_handle_close(f->core, f->a, BOGUS_HANDLE), ZX_ERR_BAD_HANDLE);
    assert_non_null(strstr(iob_core_error_detail(), "0x80000003"));
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_string_equal(iob_core_error_detail(), "");
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
        T(test_info_iob),
        T(test_info_needs_inspect),
        T(test_info_regions_buffer_sizes),
        T(test_info_regions_swapped_for_ep1),
        T(test_info_handle_basic),
        T(test_info_bad_handle_and_topic),
        T(test_info_null_buffer_with_room),
        T(test_name_shared_and_padded),
        T(test_name_truncation),
        T(test_property_errors_in_order),
        T(test_duplicate_null_out),
        T(test_signal_user_bits),
        T(test_signal_errors_in_order),
        T(test_list_and_stats),
        T(test_error_detail),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
