/* SPDX-License-Identifier: MIT */
/* Tests proto/wire.c: the status table, the protobuf-c <-> byte buffer codec, session
 * metadata and region descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown();
    return r;
}
