/* SPDX-License-Identifier: MIT */
/* Tests proto/wire.c: the status table, the protobuf-c <-> byte buffer codec, session
 * metadata and region descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "proto/wire.h"

static void test_every_status_is_mapped(void** state) {
    (void)state;
#define CHECK_MAPPED(name, value, msg)                               \
    assert_true(iob_wire_status_is_mapped(value));                   \
    if ((value) != 0) {                                              \
        assert_int_not_equal(iob_wire_grpc_code(value), GRPC_STATUS_OK); \
    }
    ZX_STATUS_LIST(CHECK_MAPPED)
#undef CHECK_MAPPED
    assert_false(iob_wire_status_is_mapped(-9999));
    assert_int_equal(iob_wire_grpc_code(-9999), GRPC_STATUS_UNKNOWN);
}

static void test_status_nearest_codes(void** state) {
    (void)state;
    assert_int_equal(iob_wire_grpc_code(ZX_OK), GRPC_STATUS_OK);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_INVALID_ARGS), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_ACCESS_DENIED), GRPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_NO_MEMORY), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_NO_RESOURCES), GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_NOT_FOUND), GRPC_STATUS_NOT_FOUND);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_BAD_HANDLE), GRPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_OUT_OF_RANGE), GRPC_STATUS_OUT_OF_RANGE);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_BAD_STATE), GRPC_STATUS_FAILED_PRECONDITION);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_TIMED_OUT), GRPC_STATUS_DEADLINE_EXCEEDED);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_NOT_SUPPORTED), GRPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(iob_wire_grpc_code(ZX_ERR_CANCELED), GRPC_STATUS_CANCELLED);
}

static void test_status_from_grpc(void** state) {
    (void)state;
    assert_int_equal(iob_wire_status_from_grpc(GRPC_STATUS_OK), ZX_OK);
    assert_int_equal(iob_wire_status_from_grpc(GRPC_STATUS_UNAVAILABLE), ZX_ERR_UNAVAILABLE);
    assert_int_equal(iob_wire_status_from_grpc(GRPC_STATUS_DEADLINE_EXCEEDED), ZX_ERR_TIMED_OUT);
    assert_int_equal(iob_wire_status_from_grpc(GRPC_STATUS_UNAUTHENTICATED), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_wire_status_from_grpc(GRPC_STATUS_RESOURCE_EXHAUSTED), ZX_ERR_IO);
}

static void test_parse_status(void** state) {
    (void)state;
    zx_status_t st = 1;
    assert_true(iob_wire_parse_status("-10", 3, &st));
    assert_int_equal(st, ZX_ERR_INVALID_ARGS);
    assert_true(iob_wire_parse_status("0", 1, &st));
    assert_int_equal(st, ZX_OK);
    assert_false(iob_wire_parse_status("5", 1, &st)); /* never a status */
    assert_false(iob_wire_parse_status("-1x", 3, &st));
    assert_false(iob_wire_parse_status("", 0, &st));
    assert_false(iob_wire_parse_status("-99999999999", 12, &st));
}

static void test_session_md_round_trip(void** state) {
    (void)state;
    uint8_t secret[16], back[16];
    for (int i = 0; i < 16; i++) {
        secret[i] = (uint8_t)(i * 17 + 3);
    }
    char md[IOB_WIRE_SESSION_MD_SIZE];
    iob_wire_format_session(md, UINT64_MAX, secret);
    uint64_t id = 0;
    assert_true(iob_wire_parse_session(md, strlen(md), &id, back));
    assert_true(id == UINT64_MAX);
    assert_memory_equal(secret, back, 16);
    /* Strictness: wrong length, missing colon, bad hex, id overflow. */
    assert_false(iob_wire_parse_session("1:00", 4, &id, back));
    assert_false(iob_wire_parse_session("100112233445566778899aabbccddeeff", 33, &id, back));
    assert_false(iob_wire_parse_session("1:0g112233445566778899aabbccddeeff", 34, &id, back));
    assert_false(iob_wire_parse_session("99999999999999999999:00112233445566778899aabbccddeeff",
                                        53, &id, back));
    assert_false(iob_wire_parse_session(":00112233445566778899aabbccddeeff", 33, &id, back));
}

static void test_codec_round_trip(void** state) {
    (void)state;
    Iob__V1__ReadRegionReply m = IOB__V1__READ_REGION_REPLY__INIT;
    uint8_t data[3000];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)i;
    }
    m.status = -14;
    m.offset = 1ull << 40;
    m.data.data = data;
    m.data.len = sizeof data;
    grpc_byte_buffer* bb = iob_wire_pack(&m.base);
    assert_non_null(bb);
    Iob__V1__ReadRegionReply* back = (Iob__V1__ReadRegionReply*)iob_wire_unpack(
        &iob__v1__read_region_reply__descriptor, bb);
    assert_non_null(back);
    assert_int_equal(back->status, -14);
    assert_true(back->offset == (1ull << 40));
    assert_int_equal(back->data.len, sizeof data);
    assert_memory_equal(back->data.data, data, sizeof data);
    protobuf_c_message_free_unpacked(&back->base, NULL);
    grpc_byte_buffer_destroy(bb);
}

static void test_codec_multi_slice(void** state) {
    (void)state;
    Iob__V1__SetNameRequest m = IOB__V1__SET_NAME_REQUEST__INIT;
    m.handle = 0x12345;
    m.name.data = (uint8_t*)(uintptr_t) "a-name";
    m.name.len = 6;
    size_t n = protobuf_c_message_get_packed_size(&m.base);
    uint8_t buf[64];
    protobuf_c_message_pack(&m.base, buf);
    /* Split the encoding over three slices, as a network read might. */
    grpc_slice s[3] = {grpc_slice_from_copied_buffer((const char*)buf, 1),
                       grpc_slice_from_copied_buffer((const char*)buf + 1, 3),
                       grpc_slice_from_copied_buffer((const char*)buf + 4, n - 4)};
    grpc_byte_buffer* bb = grpc_raw_byte_buffer_create(s, 3);
    for (int i = 0; i < 3; i++) {
        grpc_slice_unref(s[i]);
    }
    Iob__V1__SetNameRequest* back =
        (Iob__V1__SetNameRequest*)iob_wire_unpack(&iob__v1__set_name_request__descriptor, bb);
    assert_non_null(back);
    assert_int_equal(back->handle, 0x12345);
    assert_int_equal(back->name.len, 6);
    assert_memory_equal(back->name.data, "a-name", 6);
    protobuf_c_message_free_unpacked(&back->base, NULL);
    grpc_byte_buffer_destroy(bb);
}

static void test_codec_empty_and_garbage(void** state) {
    (void)state;
    /* All defaults: zero bytes on the wire, still a valid message. */
    Iob__V1__ServerInfoRequest e = IOB__V1__SERVER_INFO_REQUEST__INIT;
    grpc_byte_buffer* bb = iob_wire_pack(&e.base);
    ProtobufCMessage* m = iob_wire_unpack(&iob__v1__server_info_request__descriptor, bb);
    assert_non_null(m);
    protobuf_c_message_free_unpacked(m, NULL);
    grpc_byte_buffer_destroy(bb);
    grpc_byte_buffer* none = grpc_raw_byte_buffer_create(NULL, 0);
    m = iob_wire_unpack(&iob__v1__handle_request__descriptor, none);
    assert_non_null(m);
    protobuf_c_message_free_unpacked(m, NULL);
    grpc_byte_buffer_destroy(none);

    assert_null(iob_wire_unpack(&iob__v1__handle_request__descriptor, NULL));
    /* A truncated varint and a wire type that does not exist. */
    static const char bad1[] = {0x08, (char)0xff};
    static const char bad2[] = {0x0f, 0x01};
    const char* bads[] = {bad1, bad2};
    for (int i = 0; i < 2; i++) {
        grpc_slice s = grpc_slice_from_copied_buffer(bads[i], 2);
        grpc_byte_buffer* g = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        assert_null(iob_wire_unpack(&iob__v1__handle_request__descriptor, g));
        grpc_byte_buffer_destroy(g);
    }
    /* Unknown fields are ignored (proto3): field 99, varint 7. */
    static const char unknown[] = {0x08, 0x05, (char)0x98, 0x06, 0x07};
    grpc_slice s = grpc_slice_from_copied_buffer(unknown, sizeof unknown);
    grpc_byte_buffer* u = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    Iob__V1__HandleRequest* hr =
        (Iob__V1__HandleRequest*)iob_wire_unpack(&iob__v1__handle_request__descriptor, u);
    assert_non_null(hr);
    assert_int_equal(hr->handle, 5);
    protobuf_c_message_free_unpacked(&hr->base, NULL);
    grpc_byte_buffer_destroy(u);
}

static void test_region_round_trip(void** state) {
    (void)state;
    zx_iob_region_t r;
    uint8_t* p = (uint8_t*)&r;
    for (size_t i = 0; i < sizeof r; i++) {
        p[i] = (uint8_t)(i * 7 + 1); /* padding and extension bytes included */
    }
    Iob__V1__Region pb = IOB__V1__REGION__INIT;
    iob_wire_region_to_pb(&r, &pb);
    assert_int_equal(pb.raw.len, 120);
    assert_int_equal(pb.type, r.type);
    assert_true(pb.size == r.size);
    zx_iob_region_t back;
    assert_int_equal(iob_wire_region_from_pb(&pb, &back), ZX_OK);
    assert_memory_equal(&r, &back, sizeof r);

    /* Readable fields only: the rest is zero. */
    Iob__V1__Region f = IOB__V1__REGION__INIT;
    f.type = ZX_IOB_REGION_TYPE_PRIVATE;
    f.access = 0x13;
    f.size = 4096;
    f.discipline_type = 2;
    f.ring_buffer_tag = 77;
    assert_int_equal(iob_wire_region_from_pb(&f, &back), ZX_OK);
    assert_int_equal(back.access, 0x13);
    assert_true(back.size == 4096);
    assert_true(back.discipline.type == 2);
    assert_true(back.discipline.ring_buffer.tag == 77);
    assert_int_equal(back.private_region.options, 0);

    /* A raw descriptor of any other length is refused. */
    uint8_t short_raw[119] = {0};
    f.raw.data = short_raw;
    f.raw.len = sizeof short_raw;
    assert_int_equal(iob_wire_region_from_pb(&f, &back), ZX_ERR_INVALID_ARGS);
}

static void test_method_paths(void** state) {
    (void)state;
    assert_string_equal(iob_wire_method_path(IOB_WIRE_M_OPEN_SESSION), "/iob.v1.Iob/OpenSession");
    assert_string_equal(iob_wire_method_path(IOB_WIRE_M_SERVER_INFO), "/iob.v1.Iob/ServerInfo");
    assert_null(iob_wire_method_path(IOB_WIRE_M_COUNT));
    /* Every method the service descriptor names has a path, in the same order. */
    assert_int_equal(iob__v1__iob__descriptor.n_methods, IOB_WIRE_M_COUNT);
    for (unsigned i = 0; i < IOB_WIRE_M_COUNT; i++) {
        const char* p = iob_wire_method_path((iob_wire_method_t)i);
        assert_string_equal(p + strlen(IOB_WIRE_SERVICE), iob__v1__iob__descriptor.methods[i].name);
    }
}

/* Packs msg into a fresh heap buffer (caller frees). */
static uint8_t* pack(const ProtobufCMessage* msg, size_t* len) {
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t* buf = malloc(*len > 0 ? *len : 1);
    assert_non_null(buf);
    protobuf_c_message_pack(msg, buf);
    return buf;
}

/* Decoding is bounded by the budget: 2M empty regions (4 MB) fail, not hundreds of MB. */
static void test_unpack_budget_refuses_bloat(void** state) {
    (void)state;
    size_t n = 2000000, len = 2 * n;
    uint8_t* buf = malloc(len);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = 0x12; /* field 2 (regions), length-delimited */
        buf[2 * i + 1] = 0x00;
    }
    bool over = false;
    assert_null(iob_wire_unpack_bytes(&iob__v1__create_iob_request__descriptor, buf, len, &over));
    assert_true(over);
    /* The top level is still readable without decoding: Zircon's status can be chosen. */
    size_t count = 0;
    uint64_t options = 1;
    assert_true(iob_wire_scan_field(buf, len, 2, &count, NULL));
    assert_int_equal(count, n);
    assert_true(iob_wire_scan_field(buf, len, 1, &count, &options));
    assert_int_equal(count, 0);
    /* A truncated field is malformed, not a count. */
    assert_false(iob_wire_scan_field(buf, len - 1, 2, &count, NULL));
    free(buf);
    assert_true(iob_wire_unpack_budget(0) == IOB_WIRE_UNPACK_FIXED);
    assert_true(iob_wire_unpack_budget(SIZE_MAX) == IOB_WIRE_UNPACK_CEILING);
}

/* What legitimate peers send still decodes: 64 regions, and a full 4096-entry listing. */
static void test_unpack_budget_fits_real_messages(void** state) {
    (void)state;
    Iob__V1__Region rg[ZX_IOB_MAX_REGIONS];
    Iob__V1__Region* prg[ZX_IOB_MAX_REGIONS];
    for (size_t i = 0; i < ZX_IOB_MAX_REGIONS; i++) {
        iob__v1__region__init(&rg[i]);
        rg[i].access = 0x33;
        rg[i].size = 4096;
        prg[i] = &rg[i];
    }
    Iob__V1__CreateIobRequest req = IOB__V1__CREATE_IOB_REQUEST__INIT;
    req.n_regions = ZX_IOB_MAX_REGIONS;
    req.regions = prg;
    size_t len;
    uint8_t* buf = pack(&req.base, &len);
    bool over = true;
    ProtobufCMessage* m =
        iob_wire_unpack_bytes(&iob__v1__create_iob_request__descriptor, buf, len, &over);
    assert_non_null(m);
    assert_false(over);
    assert_int_equal(((Iob__V1__CreateIobRequest*)m)->n_regions, ZX_IOB_MAX_REGIONS);
    protobuf_c_message_free_unpacked(m, NULL);
    free(buf);

    size_t n = IOB_WIRE_MAX_LIST;
    Iob__V1__IobSummary* ps = calloc(n, sizeof *ps);
    Iob__V1__IobSummary** pps = calloc(n, sizeof *pps);
    Iob__V1__EndpointSummary* eps = calloc(2 * n, sizeof *eps);
    Iob__V1__EndpointSummary** peps = calloc(2 * n, sizeof *peps);
    assert_true(ps != NULL && pps != NULL && eps != NULL && peps != NULL);
    char name[] = "a-name-of-thirty-one-characters";
    for (size_t i = 0; i < n; i++) {
        iob__v1__iob_summary__init(&ps[i]);
        ps[i].koid = 1000000 + i;
        ps[i].region_count = 64;
        ps[i].total_bytes = (uint64_t)1 << 30;
        ps[i].name = name;
        for (size_t e = 0; e < 2; e++) {
            iob__v1__endpoint_summary__init(&eps[2 * i + e]);
            eps[2 * i + e].koid = 2000000 + 2 * i + e;
            eps[2 * i + e].handles = 3;
            eps[2 * i + e].signals = 0x1000000;
            peps[2 * i + e] = &eps[2 * i + e];
        }
        ps[i].n_endpoints = 2;
        ps[i].endpoints = &peps[2 * i];
        pps[i] = &ps[i];
    }
    Iob__V1__ListIobsReply r = IOB__V1__LIST_IOBS_REPLY__INIT;
    r.n_iobs = n;
    r.iobs = pps;
    r.total = n;
    buf = pack(&r.base, &len);
    m = iob_wire_unpack_bytes(&iob__v1__list_iobs_reply__descriptor, buf, len, &over);
    assert_non_null(m);
    assert_int_equal(((Iob__V1__ListIobsReply*)m)->n_iobs, n);
    protobuf_c_message_free_unpacked(m, NULL);
    free(buf);
    free(ps);
    free(pps);
    free(eps);
    free(peps);
}

int main(void) {
    grpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_status_is_mapped),
        cmocka_unit_test(test_status_nearest_codes),
        cmocka_unit_test(test_status_from_grpc),
        cmocka_unit_test(test_parse_status),
        cmocka_unit_test(test_session_md_round_trip),
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_multi_slice),
        cmocka_unit_test(test_codec_empty_and_garbage),
        cmocka_unit_test(test_region_round_trip),
        cmocka_unit_test(test_method_paths),
        cmocka_unit_test(test_unpack_budget_refuses_bloat),
        cmocka_unit_test(test_unpack_budget_fits_real_messages),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown();
    return r;
}
