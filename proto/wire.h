/* SPDX-License-Identifier: MIT */
/*
 * iob_wire: what iobd and its C clients share on top of the generated protobuf-c code.
 * The contract itself is proto/iob/v1/iob.proto; this is its C side: method paths,
 * metadata keys, limits, the zx_status_t <-> gRPC code table, the protobuf-c <->
 * grpc_byte_buffer codec and the region descriptor conversion.
 */
#ifndef IOB_PROTO_WIRE_H_
#define IOB_PROTO_WIRE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include <zircon/syscalls/iob.h>
#include <zircon/types.h>

#include "iob/v1/iob.pb-c.h"

#define IOB_WIRE_SERVICE "/iob.v1.Iob/"

/*
 * The methods of iob.v1.Iob, in the .proto's order: X(ENUM, "Method", request, reply), the
 * last two naming the protobuf-c types (iob__v1__<request>__descriptor). The one table that
 * iobd's dispatcher and the client's calls are both driven by.
 */
#define IOB_WIRE_METHODS(X)                                                                   \
    X(OPEN_SESSION, "OpenSession", open_session_request, session_message)                     \
    X(CREATE_IOB, "CreateIob", create_iob_request, create_iob_reply)                          \
    X(GET_INFO, "GetInfo", get_info_request, get_info_reply)                                  \
    X(DUPLICATE_HANDLE, "DuplicateHandle", handle_rights_request, handle_reply)               \
    X(REPLACE_HANDLE, "ReplaceHandle", handle_rights_request, handle_reply)                   \
    X(CLOSE_HANDLE, "CloseHandle", handle_request, status_reply)                              \
    X(GET_NAME, "GetName", get_name_request, name_reply)                                      \
    X(SET_NAME, "SetName", set_name_request, status_reply)                                    \
    X(SIGNAL, "Signal", signal_request, status_reply)                                         \
    X(SIGNAL_PEER, "SignalPeer", signal_request, status_reply)                                \
    X(GET_SIGNALS, "GetSignals", handle_request, signals_reply)                               \
    X(WAIT, "Wait", wait_request, wait_reply)                                                 \
    X(EXPORT_HANDLE, "ExportHandle", handle_request, export_reply)                            \
    X(IMPORT_HANDLE, "ImportHandle", import_request, handle_reply)                            \
    X(READ_REGION, "ReadRegion", read_region_request, read_region_reply)                      \
    X(WRITE_REGION, "WriteRegion", write_region_request, write_region_reply)                  \
    X(LIST_IOBS, "ListIobs", list_iobs_request, list_iobs_reply)                              \
    X(SERVER_INFO, "ServerInfo", server_info_request, server_info_reply)                      \
    X(CLOSE_HANDLES, "CloseHandles", handle_list_request, status_reply)                       \
    X(SET_SESSION_EVENTS, "SetSessionEvents", session_events_request, status_reply)           \
    X(CREATE_SHARED_REGION, "CreateSharedRegion", create_shared_region_request, handle_reply) \
    X(IOB_WRITEV, "IobWritev", iob_writev_request, status_reply)                              \
    X(ALLOCATE_ID, "AllocateId", allocate_id_request, allocate_id_reply)

typedef enum iob_wire_method {
#define IOB__WIRE_METHOD_ENUM(e, name, request, reply) IOB_WIRE_M_##e,
    IOB_WIRE_METHODS(IOB__WIRE_METHOD_ENUM)
#undef IOB__WIRE_METHOD_ENUM
    IOB_WIRE_M_COUNT
} iob_wire_method_t;

/* "/iob.v1.Iob/CreateIob"; static storage (gRPC keeps the pointer for the channel's life). */
const char* iob_wire_method_path(iob_wire_method_t method);
/* The method's request and reply (for streams: each message) types; NULL past the end. */
const ProtobufCMessageDescriptor* iob_wire_method_request(iob_wire_method_t method);
const ProtobufCMessageDescriptor* iob_wire_method_reply(iob_wire_method_t method);

/* Metadata keys (lowercase, as HTTP/2 requires). */
#define IOB_WIRE_MD_STATUS "iob-status"     /* trailing: the exact zx_status_t, decimal */
#define IOB_WIRE_MD_SESSION "iob-session"   /* request: "<id>:<32 hex digits>" */
#define IOB_WIRE_MD_OBSERVED "iob-observed" /* trailing, Wait: the signals at the end */
#define IOB_WIRE_MD_ACTUAL "iob-actual"     /* trailing, GetInfo: written even on failure */
#define IOB_WIRE_MD_AVAIL "iob-avail"
#define IOB_WIRE_MD_AUTHORIZATION "authorization" /* "Bearer <token>" (TCP) */

/* Largest data chunk of ReadRegion/WriteRegion messages. */
#define IOB_WIRE_MAX_CHUNK ((size_t)1 << 20)
/*
 * Receive limit of both ends (GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH): gRPC's default, room
 * for a 1 MiB chunk plus framing; larger messages are RESOURCE_EXHAUSTED before any handler
 * runs. Kept at 4 MiB because what a message costs iobd once decoded is bounded by the
 * unpack budget below, not by its wire size.
 */
#define IOB_WIRE_MAX_MESSAGE ((size_t)4 << 20)

/*
 * What decoding one message may allocate: FACTOR times its wire size plus FIXED, never
 * more than CEILING. Submessages are what decode to far more than their wire size (an
 * empty one is 2 bytes on the wire and over 100 decoded), and every legitimate message
 * has few of them (64 regions; 4096 summaries in a ListIobs reply, about 1 MiB decoded):
 * FIXED covers those, FACTOR the scalars, bytes and packed arrays (at most 4x). A 4 MiB
 * message of 2M empty submessages (hundreds of MB decoded) fails at about 17 MiB instead.
 */
#define IOB_WIRE_UNPACK_FACTOR ((size_t)4)
#define IOB_WIRE_UNPACK_FIXED ((size_t)2 << 20)
#define IOB_WIRE_UNPACK_CEILING ((size_t)24 << 20)
/* ListIobs returns at most this many summaries (the total is reported). */
#define IOB_WIRE_MAX_LIST 4096

/*
 * zx_iob_writev: at most this many vectors, and this many payload bytes (65535 minus the
 * 16-byte record header), docs/zircon-iob.md A.6.
 */
#define IOB_WIRE_MAX_WRITEV_VECTORS 8u
#define IOB_WIRE_MAX_WRITEV_BYTES 65519u
/* zx_iob_allocate_id over gRPC: blobs up to this size (larger ones: ZX_ERR_NOT_SUPPORTED). */
#define IOB_WIRE_MAX_BLOB IOB_WIRE_MAX_CHUNK

#define IOB_WIRE_SECRET_SIZE 16
/* "<u64>:<32 hex>" plus NUL. */
#define IOB_WIRE_SESSION_MD_SIZE (20 + 1 + 2 * IOB_WIRE_SECRET_SIZE + 1)

/* ---- Status ---- */

/*
 * The nearest gRPC code for a Zircon status: the table IOB_WIRE_STATUS_MAP covers every
 * entry of ZX_STATUS_LIST; a value outside it is GRPC_STATUS_UNKNOWN.
 */
grpc_status_code iob_wire_grpc_code(zx_status_t status);
/* True when status has an entry of its own in the table (tests check every code has). */
bool iob_wire_status_is_mapped(zx_status_t status);
/*
 * For a call that ended without "iob-status" (the transport failed before iobd's handler
 * ran): UNAVAILABLE -> ZX_ERR_UNAVAILABLE, DEADLINE_EXCEEDED -> ZX_ERR_TIMED_OUT,
 * UNAUTHENTICATED/PERMISSION_DENIED -> ZX_ERR_ACCESS_DENIED, CANCELLED -> ZX_ERR_CANCELED,
 * UNIMPLEMENTED -> ZX_ERR_NOT_SUPPORTED, OK -> ZX_OK, anything else -> ZX_ERR_IO.
 */
zx_status_t iob_wire_status_from_grpc(grpc_status_code code);
/* Parses a decimal zx_status_t from metadata bytes. False when it is not one. */
bool iob_wire_parse_status(const char* text, size_t len, zx_status_t* out);

/* ---- Session metadata ---- */

void iob_wire_format_session(char out[IOB_WIRE_SESSION_MD_SIZE], uint64_t session_id,
                             const uint8_t secret[IOB_WIRE_SECRET_SIZE]);
/* Strict: decimal id, ':', exactly 32 hex digits. */
bool iob_wire_parse_session(const char* text, size_t len, uint64_t* session_id,
                            uint8_t secret[IOB_WIRE_SECRET_SIZE]);

/* ---- Codec ---- */

/* Packs msg into a new byte buffer (caller: grpc_byte_buffer_destroy). NULL on no memory. */
grpc_byte_buffer* iob_wire_pack(const ProtobufCMessage* msg);
/*
 * Unpacks a byte buffer (possibly several slices, possibly compressed) into a new message
 * (caller: protobuf_c_message_free_unpacked). NULL buffer (no message), or bytes that are
 * not a valid message of that type: NULL. Unknown fields are kept aside, as proto3 says.
 */
ProtobufCMessage* iob_wire_unpack(const ProtobufCMessageDescriptor* desc, grpc_byte_buffer* bb);
/* The same; *over_budget tells a message that failed only for the unpack budget. */
ProtobufCMessage* iob_wire_unpack_ex(const ProtobufCMessageDescriptor* desc, grpc_byte_buffer* bb,
                                     bool* over_budget);
/*
 * protobuf_c_message_unpack of len bytes through an allocator that refuses to go past
 * iob_wire_unpack_budget(len) in total: NULL for invalid bytes and for a message whose
 * decoded form is too large (*over_budget true, when given). Free the message with
 * protobuf_c_message_free_unpacked(msg, NULL). What iobd decodes requests with; fuzzers
 * call it directly.
 */
ProtobufCMessage* iob_wire_unpack_bytes(const ProtobufCMessageDescriptor* desc,
                                        const uint8_t* data, size_t len, bool* over_budget);
/* IOB_WIRE_UNPACK_FACTOR * len + IOB_WIRE_UNPACK_FIXED, at most IOB_WIRE_UNPACK_CEILING. */
size_t iob_wire_unpack_budget(size_t len);
/*
 * Walks the top level of an encoded message without decoding it (no allocation): *count
 * is how many times field number `field` occurs and *last_varint (optional) the value of
 * its last occurrence when that is a varint (a length for a length-delimited one). False
 * when the bytes are not a well-formed message at the top level. The _bb form reads a
 * byte buffer (a NULL buffer is false).
 */
bool iob_wire_scan_field(const uint8_t* data, size_t len, uint32_t field, size_t* count,
                         uint64_t* last_varint);
bool iob_wire_scan_field_bb(grpc_byte_buffer* bb, uint32_t field, size_t* count,
                            uint64_t* last_varint);

/* ---- Region descriptors ---- */

/*
 * A wire region into a zx_iob_region_t: the 120 raw bytes when present (any other
 * length is ZX_ERR_INVALID_ARGS), else the readable fields (the rest zero).
 */
zx_status_t iob_wire_region_from_pb(const Iob__V1__Region* pb, zx_iob_region_t* out);
/* Fills pb (already initialised) from r; pb->raw points into r, which must outlive pb. */
void iob_wire_region_to_pb(const zx_iob_region_t* r, Iob__V1__Region* pb);

/*
 * Reads a whole PEM file (TLS certificates and keys for both ends) into a NUL-terminated
 * heap string the caller frees; NULL with errno set when it cannot be read.
 */
char* iob_wire_read_pem(const char* path);

/* A budget for people: "unlimited" for UINT64_MAX (ServerInfo's "no limit"), else the number
 * in buf. */
const char* iob_wire_limit_text(uint64_t v, char* buf, size_t size);

/* "HOST:PORT" or "[V6]:PORT" into host and port strings (the metrics endpoint's address). */
bool iob_wire_split_host_port(const char* addr, char* host, size_t host_size, char* port,
                              size_t port_size);

#endif /* IOB_PROTO_WIRE_H_ */
