/* SPDX-License-Identifier: MIT */
/* iob_wire: the C side of iob.v1 shared by iobd and its clients (see wire.h). */
#include "proto/wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

typedef struct iob__wire_method {
    const char* path;
    const ProtobufCMessageDescriptor* request;
    const ProtobufCMessageDescriptor* reply;
} iob__wire_method_t;

static const iob__wire_method_t iob__wire_methods[IOB_WIRE_M_COUNT] = {
#define IOB__WIRE_ROW(e, name, request, reply) \
    {IOB_WIRE_SERVICE name, &iob__v1__##request##__descriptor, &iob__v1__##reply##__descriptor},
    IOB_WIRE_METHODS(IOB__WIRE_ROW)
#undef IOB__WIRE_ROW
};

const char* iob_wire_method_path(iob_wire_method_t method) {
    return (unsigned)method < IOB_WIRE_M_COUNT ? iob__wire_methods[method].path : NULL;
}

const ProtobufCMessageDescriptor* iob_wire_method_request(iob_wire_method_t method) {
    return (unsigned)method < IOB_WIRE_M_COUNT ? iob__wire_methods[method].request : NULL;
}

const ProtobufCMessageDescriptor* iob_wire_method_reply(iob_wire_method_t method) {
    return (unsigned)method < IOB_WIRE_M_COUNT ? iob__wire_methods[method].reply : NULL;
}

/*
 * One row per entry of ZX_STATUS_LIST. The gRPC code is only a hint for generic clients
 * (the exact status travels in "iob-status"), so the choice is "what would a gRPC user
 * expect to retry or report": BAD_HANDLE is a bad argument (handles are arguments, as in
 * Zircon), PEER_CLOSED and BAD_STATE are preconditions, the IO family is UNKNOWN except
 * where data was lost.
 */
#define IOB_WIRE_STATUS_MAP(X)                                  \
    X(ZX_OK, GRPC_STATUS_OK)                                    \
    X(ZX_ERR_INTERNAL, GRPC_STATUS_INTERNAL)                    \
    X(ZX_ERR_NOT_SUPPORTED, GRPC_STATUS_UNIMPLEMENTED)          \
    X(ZX_ERR_NO_RESOURCES, GRPC_STATUS_RESOURCE_EXHAUSTED)      \
    X(ZX_ERR_NO_MEMORY, GRPC_STATUS_RESOURCE_EXHAUSTED)         \
    X(ZX_ERR_INTERNAL_INTR_RETRY, GRPC_STATUS_UNAVAILABLE)      \
    X(ZX_ERR_INVALID_ARGS, GRPC_STATUS_INVALID_ARGUMENT)        \
    X(ZX_ERR_BAD_HANDLE, GRPC_STATUS_INVALID_ARGUMENT)          \
    X(ZX_ERR_WRONG_TYPE, GRPC_STATUS_INVALID_ARGUMENT)          \
    X(ZX_ERR_BAD_SYSCALL, GRPC_STATUS_UNIMPLEMENTED)            \
    X(ZX_ERR_OUT_OF_RANGE, GRPC_STATUS_OUT_OF_RANGE)            \
    X(ZX_ERR_BUFFER_TOO_SMALL, GRPC_STATUS_INVALID_ARGUMENT)    \
    X(ZX_ERR_BAD_STATE, GRPC_STATUS_FAILED_PRECONDITION)        \
    X(ZX_ERR_TIMED_OUT, GRPC_STATUS_DEADLINE_EXCEEDED)          \
    X(ZX_ERR_SHOULD_WAIT, GRPC_STATUS_UNAVAILABLE)              \
    X(ZX_ERR_CANCELED, GRPC_STATUS_CANCELLED)                   \
    X(ZX_ERR_PEER_CLOSED, GRPC_STATUS_FAILED_PRECONDITION)      \
    X(ZX_ERR_NOT_FOUND, GRPC_STATUS_NOT_FOUND)                  \
    X(ZX_ERR_ALREADY_EXISTS, GRPC_STATUS_ALREADY_EXISTS)        \
    X(ZX_ERR_ALREADY_BOUND, GRPC_STATUS_ALREADY_EXISTS)         \
    X(ZX_ERR_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE)              \
    X(ZX_ERR_ACCESS_DENIED, GRPC_STATUS_PERMISSION_DENIED)      \
    X(ZX_ERR_IO, GRPC_STATUS_UNKNOWN)                           \
    X(ZX_ERR_IO_REFUSED, GRPC_STATUS_UNKNOWN)                   \
    X(ZX_ERR_IO_DATA_INTEGRITY, GRPC_STATUS_DATA_LOSS)          \
    X(ZX_ERR_IO_DATA_LOSS, GRPC_STATUS_DATA_LOSS)               \
    X(ZX_ERR_IO_NOT_PRESENT, GRPC_STATUS_UNKNOWN)               \
    X(ZX_ERR_IO_OVERRUN, GRPC_STATUS_UNKNOWN)                   \
    X(ZX_ERR_IO_MISSED_DEADLINE, GRPC_STATUS_DEADLINE_EXCEEDED) \
    X(ZX_ERR_IO_INVALID, GRPC_STATUS_UNKNOWN)                   \
    X(ZX_ERR_BAD_PATH, GRPC_STATUS_INVALID_ARGUMENT)            \
    X(ZX_ERR_NOT_DIR, GRPC_STATUS_INVALID_ARGUMENT)             \
    X(ZX_ERR_NOT_FILE, GRPC_STATUS_INVALID_ARGUMENT)            \
    X(ZX_ERR_FILE_BIG, GRPC_STATUS_OUT_OF_RANGE)                \
    X(ZX_ERR_NO_SPACE, GRPC_STATUS_RESOURCE_EXHAUSTED)          \
    X(ZX_ERR_NOT_EMPTY, GRPC_STATUS_FAILED_PRECONDITION)        \
    X(ZX_ERR_STOP, GRPC_STATUS_UNKNOWN)                         \
    X(ZX_ERR_NEXT, GRPC_STATUS_UNKNOWN)                         \
    X(ZX_ERR_ASYNC, GRPC_STATUS_UNKNOWN)                        \
    X(ZX_ERR_PROTOCOL_NOT_SUPPORTED, GRPC_STATUS_UNIMPLEMENTED) \
    X(ZX_ERR_ADDRESS_UNREACHABLE, GRPC_STATUS_UNAVAILABLE)      \
    X(ZX_ERR_ADDRESS_IN_USE, GRPC_STATUS_ALREADY_EXISTS)        \
    X(ZX_ERR_NOT_CONNECTED, GRPC_STATUS_UNAVAILABLE)            \
    X(ZX_ERR_CONNECTION_REFUSED, GRPC_STATUS_UNAVAILABLE)       \
    X(ZX_ERR_CONNECTION_RESET, GRPC_STATUS_UNAVAILABLE)         \
    X(ZX_ERR_CONNECTION_ABORTED, GRPC_STATUS_UNAVAILABLE)

grpc_status_code iob_wire_grpc_code(zx_status_t status) {
    switch (status) {
#define IOB__WIRE_CODE(zx, g) \
    case zx:                  \
        return g;
        IOB_WIRE_STATUS_MAP(IOB__WIRE_CODE)
#undef IOB__WIRE_CODE
    default:
        return GRPC_STATUS_UNKNOWN;
    }
}

bool iob_wire_status_is_mapped(zx_status_t status) {
    switch (status) {
#define IOB__WIRE_MAPPED(zx, g) case zx:
        IOB_WIRE_STATUS_MAP(IOB__WIRE_MAPPED)
#undef IOB__WIRE_MAPPED
        return true;
    default:
        return false;
    }
}

zx_status_t iob_wire_status_from_grpc(grpc_status_code code) {
    switch (code) {
    case GRPC_STATUS_OK:
        return ZX_OK;
    case GRPC_STATUS_UNAVAILABLE:
        return ZX_ERR_UNAVAILABLE;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return ZX_ERR_TIMED_OUT;
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_PERMISSION_DENIED:
        return ZX_ERR_ACCESS_DENIED;
    case GRPC_STATUS_CANCELLED:
        return ZX_ERR_CANCELED;
    case GRPC_STATUS_UNIMPLEMENTED:
        return ZX_ERR_NOT_SUPPORTED;
    default:
        return ZX_ERR_IO;
    }
}

bool iob_wire_parse_status(const char* text, size_t len, zx_status_t* out) {
    char buf[16];
    if (len == 0 || len >= sizeof buf) {
        return false;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    char* end = NULL;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno != 0 || end != buf + len || v > 0 || v < INT32_MIN) {
        return false;
    }
    *out = (zx_status_t)v;
    return true;
}

void iob_wire_format_session(char out[IOB_WIRE_SESSION_MD_SIZE], uint64_t session_id,
                             const uint8_t secret[IOB_WIRE_SECRET_SIZE]) {
    static const char hex[] = "0123456789abcdef";
    int n = snprintf(out, IOB_WIRE_SESSION_MD_SIZE, "%" PRIu64 ":", session_id);
    for (size_t i = 0; i < IOB_WIRE_SECRET_SIZE; i++) {
        out[n++] = hex[secret[i] >> 4];
        out[n++] = hex[secret[i] & 0xf];
    }
    out[n] = '\0';
}

static int iob__wire_hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool iob_wire_parse_session(const char* text, size_t len, uint64_t* session_id,
                            uint8_t secret[IOB_WIRE_SECRET_SIZE]) {
    size_t i = 0;
    uint64_t id = 0;
    while (i < len && text[i] >= '0' && text[i] <= '9') {
        uint64_t d = (uint64_t)(text[i] - '0');
        if (id > (UINT64_MAX - d) / 10) {
            return false;
        }
        id = id * 10 + d;
        i++;
    }
    if (i == 0 || i > 20 || i >= len || text[i] != ':') {
        return false;
    }
    i++;
    if (len - i != 2 * IOB_WIRE_SECRET_SIZE) {
        return false;
    }
    uint8_t s[IOB_WIRE_SECRET_SIZE];
    for (size_t k = 0; k < IOB_WIRE_SECRET_SIZE; k++) {
        int hi = iob__wire_hexval(text[i + 2 * k]);
        int lo = iob__wire_hexval(text[i + 2 * k + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        s[k] = (uint8_t)((hi << 4) | lo);
    }
    *session_id = id;
    memcpy(secret, s, sizeof s);
    return true;
}

grpc_byte_buffer* iob_wire_pack(const ProtobufCMessage* msg) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer* bb = grpc_raw_byte_buffer_create(&s, 1);
    /* The buffer took its own reference. */
    grpc_slice_unref(s);
    return bb;
}

size_t iob_wire_unpack_budget(size_t len) {
    size_t budget = IOB_WIRE_UNPACK_FIXED;
    budget += len > (IOB_WIRE_UNPACK_CEILING - budget) / IOB_WIRE_UNPACK_FACTOR
                  ? IOB_WIRE_UNPACK_CEILING
                  : len * IOB_WIRE_UNPACK_FACTOR;
    return budget < IOB_WIRE_UNPACK_CEILING ? budget : IOB_WIRE_UNPACK_CEILING;
}

typedef struct iob__wire_alloc {
    ProtobufCAllocator base;
    size_t used;
    size_t budget;
    bool over;
} iob__wire_alloc_t;

/*
 * Counts every byte protobuf-c asks for while unpacking (frees are not subtracted: the
 * budget bounds the peak from above) and fails the request that would pass the budget.
 * Blocks come from malloc, so the message is freed with the default allocator.
 */
static void* iob__wire_alloc(void* ctx, size_t size) {
    iob__wire_alloc_t* a = ctx;
    if (size > a->budget - a->used) {
        a->over = true;
        return NULL;
    }
    a->used += size;
    return malloc(size);
}

static void iob__wire_free(void* ctx, void* p) {
    (void)ctx;
    free(p);
}

ProtobufCMessage* iob_wire_unpack_bytes(const ProtobufCMessageDescriptor* desc,
                                        const uint8_t* data, size_t len, bool* over_budget) {
    iob__wire_alloc_t a = {
        .base = {.alloc = iob__wire_alloc, .free = iob__wire_free, .allocator_data = NULL},
        .used = 0,
        .budget = iob_wire_unpack_budget(len),
        .over = false,
    };
    a.base.allocator_data = &a;
    ProtobufCMessage* m = protobuf_c_message_unpack(desc, &a.base, len, data);
    if (over_budget != NULL) {
        *over_budget = m == NULL && a.over;
    }
    return m;
}

/*
 * Calls fn on the bytes of bb: in place when the buffer is one slice, else on a copy.
 * An empty message (all fields default) is zero bytes: no slice at all.
 */
static bool iob__wire_with_bytes(grpc_byte_buffer* bb,
                                 void (*fn)(void* ctx, const uint8_t* data, size_t len),
                                 void* ctx) {
    grpc_byte_buffer_reader r;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&r, bb)) {
        return false;
    }
    grpc_slice first;
    if (!grpc_byte_buffer_reader_next(&r, &first)) {
        fn(ctx, (const uint8_t*)"", 0);
    } else {
        grpc_slice second;
        if (!grpc_byte_buffer_reader_next(&r, &second)) {
            fn(ctx, GRPC_SLICE_START_PTR(first), GRPC_SLICE_LENGTH(first));
            grpc_slice_unref(first);
        } else {
            grpc_slice_unref(first);
            grpc_slice_unref(second);
            grpc_byte_buffer_reader_destroy(&r);
            if (!grpc_byte_buffer_reader_init(&r, bb)) {
                return false;
            }
            grpc_slice all = grpc_byte_buffer_reader_readall(&r);
            fn(ctx, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
            grpc_slice_unref(all);
        }
    }
    grpc_byte_buffer_reader_destroy(&r);
    return true;
}

typedef struct iob__wire_unpack_ctx {
    const ProtobufCMessageDescriptor* desc;
    ProtobufCMessage* msg;
    bool over;
} iob__wire_unpack_ctx_t;

static void iob__wire_unpack_fn(void* ctx, const uint8_t* data, size_t len) {
    iob__wire_unpack_ctx_t* u = ctx;
    u->msg = iob_wire_unpack_bytes(u->desc, data, len, &u->over);
}

ProtobufCMessage* iob_wire_unpack_ex(const ProtobufCMessageDescriptor* desc, grpc_byte_buffer* bb,
                                     bool* over_budget) {
    iob__wire_unpack_ctx_t u = {desc, NULL, false};
    iob__wire_with_bytes(bb, iob__wire_unpack_fn, &u);
    if (over_budget != NULL) {
        *over_budget = u.over;
    }
    return u.msg;
}

ProtobufCMessage* iob_wire_unpack(const ProtobufCMessageDescriptor* desc, grpc_byte_buffer* bb) {
    return iob_wire_unpack_ex(desc, bb, NULL);
}

/* A base-128 varint at *pos (at most 10 bytes); false when it runs past the end. */
static bool iob__wire_varint(const uint8_t* data, size_t len, size_t* pos, uint64_t* out) {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70 && *pos < len; shift += 7) {
        uint8_t b = data[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << (shift < 64 ? shift : 63);
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

bool iob_wire_scan_field(const uint8_t* data, size_t len, uint32_t field, size_t* count,
                         uint64_t* last_varint) {
    size_t pos = 0, n = 0;
    uint64_t last = 0;
    while (pos < len) {
        uint64_t key, v;
        if (!iob__wire_varint(data, len, &pos, &key) || (key >> 3) == 0 ||
            (key >> 3) > 0x1fffffff) {
            return false;
        }
        switch (key & 7) {
        case 0: /* varint */
            if (!iob__wire_varint(data, len, &pos, &v)) {
                return false;
            }
            break;
        case 1: /* 64-bit */
            if (len - pos < 8) {
                return false;
            }
            pos += 8;
            v = 0;
            break;
        case 2: /* length-delimited */
            if (!iob__wire_varint(data, len, &pos, &v) || v > len - pos) {
                return false;
            }
            pos += (size_t)v;
            break;
        case 5: /* 32-bit */
            if (len - pos < 4) {
                return false;
            }
            pos += 4;
            v = 0;
            break;
        default: /* groups (3, 4) are not proto3; 6 and 7 do not exist */
            return false;
        }
        if ((key >> 3) == field) {
            n++;
            last = v;
        }
    }
    *count = n;
    if (last_varint != NULL) {
        *last_varint = last;
    }
    return true;
}

typedef struct iob__wire_scan_ctx {
    uint32_t field;
    size_t count;
    uint64_t last;
    bool ok;
} iob__wire_scan_ctx_t;

static void iob__wire_scan_fn(void* ctx, const uint8_t* data, size_t len) {
    iob__wire_scan_ctx_t* sc = ctx;
    sc->ok = iob_wire_scan_field(data, len, sc->field, &sc->count, &sc->last);
}

bool iob_wire_scan_field_bb(grpc_byte_buffer* bb, uint32_t field, size_t* count,
                            uint64_t* last_varint) {
    iob__wire_scan_ctx_t sc = {field, 0, 0, false};
    if (!iob__wire_with_bytes(bb, iob__wire_scan_fn, &sc) || !sc.ok) {
        return false;
    }
    *count = sc.count;
    if (last_varint != NULL) {
        *last_varint = sc.last;
    }
    return true;
}

zx_status_t iob_wire_region_from_pb(const Iob__V1__Region* pb, zx_iob_region_t* out) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    if (pb->raw.len != 0) {
        if (pb->raw.len != sizeof r) {
            return ZX_ERR_INVALID_ARGS;
        }
        memcpy(&r, pb->raw.data, sizeof r);
    } else {
        r.type = pb->type;
        r.access = pb->access;
        r.size = pb->size;
        r.discipline.type = pb->discipline_type;
        r.discipline.ring_buffer.tag = pb->ring_buffer_tag;
        r.private_region.options = pb->private_options;
    }
    *out = r;
    return ZX_OK;
}

void iob_wire_region_to_pb(const zx_iob_region_t* r, Iob__V1__Region* pb) {
    pb->raw.data = (uint8_t*)(uintptr_t)r;
    pb->raw.len = sizeof *r;
    pb->type = r->type;
    pb->access = r->access;
    pb->size = r->size;
    pb->discipline_type = r->discipline.type;
    pb->ring_buffer_tag = r->discipline.ring_buffer.tag;
    pb->private_options = r->private_region.options;
}

char* iob_wire_read_pem(const char* path) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char* buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            break;
        }
        if (len + 1 == cap) {
            char* nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf != NULL) {
        buf[len] = '\0';
    }
    return buf;
}

bool iob_wire_split_host_port(const char* addr, char* host, size_t host_size, char* port,
                        size_t port_size) {
    const char* colon;
    const char* h = addr;
    size_t hlen;
    if (addr[0] == '[') {
        const char* close = strchr(addr, ']');
        if (close == NULL || close[1] != ':') {
            return false;
        }
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            return false;
        }
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= host_size || strlen(colon + 1) == 0 ||
        strlen(colon + 1) >= port_size) {
        return false;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, port_size, "%s", colon + 1);
    return strspn(port, "0123456789") == strlen(port);
}

const char* iob_wire_limit_text(uint64_t v, char* buf, size_t size) {
    if (v == UINT64_MAX) {
        return "unlimited";
    }
    snprintf(buf, size, "%" PRIu64, v);
    return buf;
}
