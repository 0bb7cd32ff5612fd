/* SPDX-License-Identifier: MIT */
/* iob_core_iob_create against docs/zircon-iob.md A.3 and L: every error in its order, rounding,
 * descriptors, koids, limits, and nothing half-created. */
#include <string.h>

#include "core_fixture.h"
#include "test_util.h"

#define P FX_PAGE
#define TWO63 (UINT64_C(1) << 63)

static zx_status_t create(fx_t* f, const zx_iob_region_t* r, size_t n, zx_handle_t* e0,
                          zx_handle_t* e1) {
    return iob_core_iob_create(f->core, f->a, 0, r, n, e0, e1);
}

/* Creation failed: no IOB, no handle, no bytes, no handle_closed. */
static void assert_nothing_created(fx_t* f) {
    assert_int_equal(fx_stats(f).iobs, 0);
    assert_int_equal(fx_stats(f).handles, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 0);
    assert_int_equal(f->n_closed, 0);
}

static void test_null_out_pointers_first(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    zx_handle_t e0 = 0, e1 = 0;
    assert_int_equal(create(f, &r, 1, NULL, &e1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(create(f, &r, 1, &e0, NULL), ZX_ERR_INVALID_ARGS);
    /* Before the region count, which would be OUT_OF_RANGE. */
    assert_int_equal(create(f, &r, 65, NULL, &e1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(create(f, NULL, 65, &e0, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(e0, 0);
    assert_int_equal(e1, 0);
    assert_nothing_created(f);
}

static void test_options_nonzero(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    zx_handle_t e0 = 0, e1 = 0;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 1, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_create(f->core, f->a, UINT64_MAX, &r, 1, &e0, &e1),
                     ZX_ERR_INVALID_ARGS);
    /* Options before the count. */
    assert_int_equal(iob_core_iob_create(f->core, f->a, 1, &r, 65, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_nothing_created(f);
}

static void test_region_count_limits(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r[65];
    for (int i = 0; i < 65; i++) {
        r[i] = fx_region(P, FX_RW_BOTH);
    }
    zx_handle_t e0 = 0, e1 = 0;
    assert_int_equal(create(f, r, 65, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(create(f, r, SIZE_MAX, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    /* The count is checked before the pointer. */
    assert_int_equal(create(f, NULL, 65, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    assert_nothing_created(f);

    assert_int_equal(create(f, r, 64, &e0, &e1), ZX_OK);
    zx_info_iob_t info;
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB, &info, sizeof info,
                                       &actual, &avail),
                     ZX_OK);
    assert_int_equal(info.region_count, 64);
    assert_int_equal(info.options, 0);
}

static void test_null_regions_and_zero_count(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    zx_handle_t e0 = 0, e1 = 0;
    assert_int_equal(create(f, NULL, 4, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(create(f, NULL, 0, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(create(f, &r, 0, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_nothing_created(f);
}

static void test_private_options(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    r.private_region.options = 0xFFF;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    /* L: even a valid VMO-create flag (ZX_VMO_RESIZABLE = 2) is refused. */
    r.private_region.options = 2;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    /* Options before the size. */
    r.size = UINT64_MAX;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_nothing_created(f);
}

static void test_size_out_of_range(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r = fx_region(UINT64_MAX, FX_RW_BOTH);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    r.size = UINT64_MAX - P + 2; /* the rounding itself overflows */
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    r.size = TWO63 + 1;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    /* The size is checked before access sanity. */
    r.access = 0;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    assert_nothing_created(f);
}

static uint64_t actual_size(fx_t* f, zx_handle_t h, uint32_t index) {
    zx_iob_region_info_t info[4];
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_core_get_info(f->core, f->a, h, ZX_INFO_IOB_REGIONS, info, sizeof info,
                                       &actual, &avail),
                     ZX_OK);
    assert_true(index < actual);
    return info[index].region.size;
}

static void test_size_rounding(void** state) {
    fx_t* f = *state;
    static const struct {
        uint64_t in, out;
    } cases[] = {{0, 0}, {1, P}, {P - 1, P}, {P, P}, {P + 1, 2 * P}, {3 * P, 3 * P}};
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zx_handle_t e0 = 0, e1 = 0;
        fx_create(f, cases[i].in, FX_RW_BOTH, &e0, &e1);
        assert_int_equal(actual_size(f, e0, 0), cases[i].out);
        assert_int_equal(actual_size(f, e1, 0), cases[i].out);
        total += cases[i].out;
    }
    assert_int_equal(fx_stats(f).bytes_in_use, total);
    assert_int_equal(iob_core_page_size(f->core), P);
}

static void test_two63_is_valid_then_budget(void** state) {
    fx_t* f = *state;
    f->config.max_total_bytes = 16 * P;
    fx_reconfigure(f);
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r = fx_region(TWO63, FX_RW_BOTH);
    /* 2^63 passes validation, so the budget decides; 2^63 + 1 never gets that far. */
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_NO_MEMORY);
    r.size = TWO63 + 1;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    assert_nothing_created(f);
}

static void test_regions_checked_in_index_order(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r[3] = {fx_region(P, FX_RW_BOTH), fx_region(P, FX_RW_BOTH),
                            fx_region(P, FX_RW_BOTH)};
    r[1].type = 7;
    r[2].size = UINT64_MAX;
    assert_int_equal(create(f, r, 3, &e0, &e1), ZX_ERR_INVALID_ARGS);
    r[1] = fx_region(UINT64_MAX, FX_RW_BOTH);
    r[2].type = 7;
    assert_int_equal(create(f, r, 3, &e0, &e1), ZX_ERR_OUT_OF_RANGE);
    assert_nothing_created(f);
}

static zx_iob_region_t shared_region(uint32_t options, zx_handle_t handle, uint64_t size) {
    zx_iob_region_t r = fx_region(size, FX_RW_BOTH);
    r.type = ZX_IOB_REGION_TYPE_SHARED;
    zx_iob_region_shared_t s;
    memset(&s, 0, sizeof s);
    s.options = options;
    s.shared_region = handle;
    memcpy(r.max_extension, &s, sizeof s);
    return r;
}

static void test_shared_regions(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r = shared_region(1, 0x1234567, 0);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    r = shared_region(0, 0x1234567, P);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    r = shared_region(0, 0x1234567, 0);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_BAD_HANDLE);
    r = shared_region(0, ZX_HANDLE_INVALID, 0);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_BAD_HANDLE);

    zx_handle_t iob0 = 0, iob1 = 0;
    fx_create(f, P, FX_RW_BOTH, &iob0, &iob1);
    r = shared_region(0, iob1, 0);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_WRONG_TYPE);
    /* Another session's IOB handle is no handle at all for session A... */
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &r, 1, &e0, &e1), ZX_ERR_BAD_HANDLE);
    /* ...and the ring buffer discipline does not make a bad handle valid. */
    r = shared_region(0, 0x1234567, 0);
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_BAD_HANDLE);
}

static void test_unknown_region_type(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    r.type = 2;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    r.type = UINT32_MAX;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_nothing_created(f);
}

static void test_access_sanity(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    static const zx_iob_access_t refused[] = {
        0,
        ZX_IOB_ACCESS_EP0_CAN_MAP_READ,
        ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_READ,
        0x100,      /* reserved bits alone */
        0xFFFFFF11, /* reserved bits and reads */
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        zx_iob_region_t r = fx_region(P, refused[i]);
        assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    }
    assert_nothing_created(f);
    static const zx_iob_access_t accepted[] = {
        ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE,
        ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE,
        ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE,
        FX_RW_BOTH | 0xFFFFFF00u,
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        zx_iob_region_t r = fx_region(P, accepted[i]);
        assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_OK);
    }
}

static void test_discipline_none_refuses_mediated(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    static const zx_iob_access_t mediated[] = {
        ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ,  ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE,
        ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ,  ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE,
    };
    for (size_t i = 0; i < sizeof mediated / sizeof mediated[0]; i++) {
        /* Alone (passes access sanity because mediated bits count) and with map writes. */
        zx_iob_region_t r = fx_region(P, mediated[i]);
        assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
        r.access |= FX_RW_BOTH;
        assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    }
    assert_nothing_created(f);
}

static void test_id_allocator_discipline_rules(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r = fx_region(P, ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ |
                                         ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE);
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    /* An endpoint with exactly MEDIATED_READ. */
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    r.access = ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ | ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    /* A 0-byte ID allocator has no room for its header (our rule; see iob_create.c). */
    zx_iob_region_t empty = fx_region(0, ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE);
    empty.discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    assert_int_equal(create(f, &empty, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    /* A later bad region makes the whole create fail, leaving nothing behind. */
    zx_iob_region_t two[2];
    two[0] = fx_region(P, FX_RW_BOTH);
    two[0].discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    two[1] = fx_region(P, 0);
    assert_int_equal(create(f, two, 2, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_nothing_created(f);
    /* Accepted: mediated writers, both kinds, and no mediated bits at all (A.3 7.5). */
    zx_iob_access_t ok[] = {
        ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE,
        ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ | ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE,
        FX_RW_BOTH,
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        r.access = ok[i];
        assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_OK);
        assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
        assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    }
    assert_int_equal(fx_stats(f).iobs, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 0);
}

static void test_ring_buffer_and_unknown_discipline(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS); /* needs SHARED */
    r.discipline.type = 3;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    r.discipline.type = UINT64_MAX;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    /* Access sanity comes before the discipline; both refuse, the order shows in detail. */
    r.access = 0;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_non_null(strstr(iob_core_error_detail(), "nobody"));
    assert_nothing_created(f);
}

static void test_handles_rights_koids(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_not_equal(e0, ZX_HANDLE_INVALID);
    assert_int_not_equal(e1, ZX_HANDLE_INVALID);
    assert_int_not_equal(e0, e1);
    assert_int_equal(e0 & 3u, 3u);
    assert_int_equal(e1 & 3u, 3u);
    assert_true(e0 < IOB_CORE_HANDLE_VALUE_LIMIT);
    zx_info_handle_basic_t b0 = fx_basic(f, f->a, e0);
    zx_info_handle_basic_t b1 = fx_basic(f, f->a, e1);
    assert_int_equal(b0.rights, 0xF0EF);
    assert_int_equal(b1.rights, 0xF0EF);
    assert_int_equal(b0.type, 33);
    assert_int_equal(b1.type, 33);
    assert_true(b0.koid >= ZX_KOID_FIRST);
    assert_int_not_equal(b0.koid, b1.koid);
    assert_int_equal(b0.related_koid, b1.koid);
    assert_int_equal(b1.related_koid, b0.koid);
    assert_int_equal(b0.reserved, 0);

    zx_handle_t f0 = 0, f1 = 0;
    fx_create(f, P, FX_RW_BOTH, &f0, &f1);
    zx_info_handle_basic_t c0 = fx_basic(f, f->a, f0);
    zx_info_handle_basic_t c1 = fx_basic(f, f->a, f1);
    /* Koids only grow, and region koids are distinct from endpoint koids. */
    assert_true(c0.koid > b1.koid);
    assert_true(c1.koid > c0.koid);
    zx_iob_region_info_t ri;
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, &ri, sizeof ri,
                                       &actual, &avail),
                     ZX_OK);
    assert_true(ri.koid >= ZX_KOID_FIRST);
    assert_int_not_equal(ri.koid, b0.koid);
    assert_int_not_equal(ri.koid, b1.koid);
    assert_true(ri.koid < c0.koid);
}

static void test_descriptor_stored_byte_for_byte(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r[2];
    for (int i = 0; i < 2; i++) {
        r[i] = fx_region(P + 1 + (uint64_t)i, FX_RW_BOTH | 0xAB00u);
        for (int k = 0; k < 8; k++) {
            r[i].discipline.reserved[k] = UINT64_C(0x0101010101010101) * (uint64_t)(k + 1 + i);
        }
        r[i].private_region.padding1 = 0xCAFEF00D;
        r[i].private_region.padding2[0] = 1;
        r[i].private_region.padding2[2] = UINT64_MAX;
    }
    zx_handle_t e0 = 0, e1 = 0;
    assert_int_equal(create(f, r, 2, &e0, &e1), ZX_OK);
    zx_iob_region_info_t info[2];
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_core_get_info(f->core, f->a, e0, ZX_INFO_IOB_REGIONS, info, sizeof info,
                                       &actual, &avail),
                     ZX_OK);
    assert_int_equal(actual, 2);
    assert_int_equal(avail, 2);
    for (int i = 0; i < 2; i++) {
        zx_iob_region_t want = r[i];
        want.size = 2 * P; /* only the size changes for ep0 */
        assert_memory_equal(&info[i].region, &want, sizeof want);
    }
}

static void test_limits_after_validation(void** state) {
    fx_t* f = *state;
    f->config.max_total_bytes = 3 * P;
    f->config.max_iobs_per_session = 2;
    f->config.max_handles_per_session = 5;
    fx_reconfigure(f);
    zx_handle_t e0 = 0, e1 = 0, g0 = 0, g1 = 0;
    zx_iob_region_t big = fx_region(4 * P, FX_RW_BOTH);
    assert_int_equal(create(f, &big, 1, &e0, &e1), ZX_ERR_NO_MEMORY);
    big.access = 0; /* invalid and over budget: validation wins */
    assert_int_equal(create(f, &big, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    fx_create(f, 2 * P, FX_RW_BOTH, &e0, &e1);
    zx_iob_region_t two = fx_region(2 * P, FX_RW_BOTH);
    assert_int_equal(create(f, &two, 1, &g0, &g1), ZX_ERR_NO_MEMORY);
    fx_create(f, P, FX_RW_BOTH, &g0, &g1); /* exactly the budget */
    zx_iob_region_t zero = fx_region(0, FX_RW_BOTH);
    /* Budget full but 0 bytes fit; the IOB limit (2) is what stops it. */
    zx_handle_t h0 = 0, h1 = 0;
    assert_int_equal(create(f, &zero, 1, &h0, &h1), ZX_ERR_NO_RESOURCES);
    zero.access = 0;
    assert_int_equal(create(f, &zero, 1, &h0, &h1), ZX_ERR_INVALID_ARGS);
    /* Session B has its own IOB count, but the byte budget is global. */
    zero.access = FX_RW_BOTH;
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &zero, 1, &h0, &h1), ZX_OK);
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &two, 1, &h0, &h1), ZX_ERR_NO_MEMORY);
    /* Closing an IOB returns its bytes and its slot. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    /* A now has one IOB, two handles and P bytes of the budget. */
    assert_int_equal(create(f, &two, 1, &e0, &e1), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, g0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, g1), ZX_OK);
    zx_handle_t d1 = 0, d2 = 0;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d1), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d2), ZX_OK);
    /* One IOB and four handles: the IOB limit allows another, the handle limit (5) not. */
    assert_int_equal(create(f, &zero, 1, &h0, &h1), ZX_ERR_NO_RESOURCES);
    assert_int_equal(iob_core_handle_close(f->core, f->a, d2), ZX_OK);
    assert_int_equal(create(f, &zero, 1, &h0, &h1), ZX_OK);
    assert_int_equal(fx_stats(f).bytes_in_use, 2 * P); /* the 2-page IOB and two empty ones */
    assert_int_equal(fx_stats(f).max_total_bytes, 3 * P);
    assert_int_equal(fx_stats(f).max_iobs_per_session, 2);
    assert_int_equal(fx_stats(f).max_handles_per_session, 5);
}

static void test_memory_failure_leaves_nothing(void** state) {
    fx_t* f = *state;
    f->config.max_total_bytes = UINT64_MAX; /* no byte budget: the allocation must fail */
    fx_reconfigure(f);
    zx_handle_t e0 = 0, e1 = 0;
    zx_handle_t k0 = 0, k1 = 0;
    fx_create(f, P, FX_RW_BOTH, &k0, &k1);
    zx_koid_t before = fx_basic(f, f->a, k1).koid;
    assert_int_equal(iob_core_handle_close(f->core, f->a, k0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, k1), ZX_OK);
    f->n_closed = 0;
    int fds = iob_test_count_open_fds();
    /*
     * 2^63 bytes pass validation (L) and the budget is off; the memfd cannot be that large,
     * which is an allocation failure: NO_MEMORY (A.3 step 4), not a validation status.
     */
    zx_iob_region_t r[3] = {fx_region(P, FX_RW_BOTH), fx_region(P, FX_RW_BOTH),
                            fx_region(TWO63, FX_RW_BOTH)};
    assert_int_equal(create(f, r, 3, &e0, &e1), ZX_ERR_NO_MEMORY);
    assert_non_null(strstr(iob_core_error_detail(), "region 2"));
    assert_int_equal(iob_test_count_open_fds(), fds);
    assert_nothing_created(f);
    assert_int_equal(e0, 0);
    /* Koids are burnt, never reused. */
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_true(fx_basic(f, f->a, e0).koid > before + 2);
}

/*
 * iob_core_release_defer: the last close frees the IOB in the core at once (accounting),
 * but its memfd stays open until this thread flushes; turning it off flushes too.
 */
static void test_release_deferred_until_flush(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    int fds = iob_test_count_open_fds();
    iob_core_release_defer(true);
    for (int round = 0; round < 2; round++) {
        fx_create(f, P, FX_RW_BOTH, &e0, &e1);
        assert_int_equal(iob_test_count_open_fds(), fds + 1);
        zx_handle_t both[2] = {e0, e1};
        for (int i = 0; i < 2; i++) {
            assert_int_equal(iob_core_handle_close(f->core, f->a, both[i]), ZX_OK);
        }
        iob_core_stats_t st;
        iob_core_get_stats(f->core, &st);
        assert_int_equal(st.bytes_in_use, 0);
        assert_int_equal(iob_test_count_open_fds(), fds + 1); /* not closed yet */
        if (round == 0) {
            iob_core_release_flush();
        } else {
            iob_core_release_defer(false);
        }
        assert_int_equal(iob_test_count_open_fds(), fds);
    }
    /* Off again: closes are synchronous. */
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(iob_test_count_open_fds(), fds);
}

/* Session state and NOT_SUPPORTED against the limits and each other. */
static void test_session_state_order(void** state) {
    fx_t* f = *state;
    f->config.max_total_bytes = P;
    f->config.max_iobs_per_session = 1;
    fx_reconfigure(f);
    zx_handle_t e0 = 0, e1 = 0;
    assert_int_equal(iob_core_session_close(f->core, f->b), ZX_OK);
    /* A closed session over the byte budget: BAD_STATE comes before the limits. */
    zx_iob_region_t big = fx_region(2 * P, FX_RW_BOTH);
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &big, 1, &e0, &e1), ZX_ERR_BAD_STATE);
    assert_int_equal(create(f, &big, 1, &e0, &e1), ZX_ERR_NO_MEMORY);
    /* A discipline rule is checked before the session is looked at. */
    zx_iob_region_t ida = fx_region(P, ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ |
                                           ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE);
    ida.discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &ida, 1, &e0, &e1),
                     ZX_ERR_INVALID_ARGS);
    /* ...and before the limits. */
    zx_handle_t k0 = 0, k1 = 0;
    fx_create(f, P, FX_RW_BOTH, &k0, &k1); /* A is at its IOB limit and the budget is full */
    assert_int_equal(create(f, &ida, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    zx_iob_region_t zero = fx_region(0, FX_RW_BOTH);
    assert_int_equal(create(f, &zero, 1, &e0, &e1), ZX_ERR_NO_RESOURCES);
    assert_int_equal(e0, 0);
    assert_int_equal(e1, 0);
}

/* SHARED regions: the handle is looked up before access sanity and the discipline. */
static void test_shared_handle_before_access(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0, i0 = 0, i1 = 0;
    zx_iob_region_t r = fx_region(0, 0);
    r.type = ZX_IOB_REGION_TYPE_SHARED;
    zx_iob_region_shared_t sh;
    memset(&sh, 0, sizeof sh);
    sh.shared_region = 0x1234567;
    memcpy(r.max_extension, &sh, sizeof sh);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_BAD_HANDLE);
    r.discipline.type = 99;
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_BAD_HANDLE);
    fx_create(f, P, FX_RW_BOTH, &i0, &i1);
    sh.shared_region = i0;
    memcpy(r.max_extension, &sh, sizeof sh);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_WRONG_TYPE);
    /* A bad region 0 is reported before a worse-looking region 1. */
    zx_iob_region_t two[2] = {r, fx_region(UINT64_MAX, 0)};
    assert_int_equal(create(f, two, 2, &e0, &e1), ZX_ERR_WRONG_TYPE);
    two[0] = fx_region(P, FX_RW_BOTH);
    two[1] = r;
    assert_int_equal(create(f, two, 2, &e0, &e1), ZX_ERR_WRONG_TYPE);
    /* The shared options come before the handle, even a handle of the wrong type. */
    sh.options = 1;
    memcpy(r.max_extension, &sh, sizeof sh);
    assert_int_equal(create(f, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(e0, 0);
    assert_int_equal(fx_stats(f).iobs, 1);
}

static void test_session_not_open(void** state) {
    fx_t* f = *state;
    zx_handle_t e0 = 0, e1 = 0;
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    assert_int_equal(iob_core_iob_create(f->core, (iob_session_id_t){999}, 0, &r, 1, &e0, &e1),
                     ZX_ERR_BAD_STATE);
    assert_int_equal(iob_core_session_close(f->core, f->b), ZX_OK);
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &r, 1, &e0, &e1), ZX_ERR_BAD_STATE);
    /* Validation still comes first. */
    r.access = 0;
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &r, 1, &e0, &e1), ZX_ERR_INVALID_ARGS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
        T(test_null_out_pointers_first),
        T(test_options_nonzero),
        T(test_region_count_limits),
        T(test_null_regions_and_zero_count),
        T(test_private_options),
        T(test_size_out_of_range),
        T(test_size_rounding),
        T(test_two63_is_valid_then_budget),
        T(test_regions_checked_in_index_order),
        T(test_shared_regions),
        T(test_unknown_region_type),
        T(test_access_sanity),
        T(test_discipline_none_refuses_mediated),
        T(test_id_allocator_discipline_rules),
        T(test_ring_buffer_and_unknown_discipline),
        T(test_handles_rights_koids),
        T(test_descriptor_stored_byte_for_byte),
        T(test_limits_after_validation),
        T(test_memory_failure_leaves_nothing),
        T(test_release_deferred_until_flush),
        T(test_session_not_open),
        T(test_session_state_order),
        T(test_shared_handle_before_access),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
