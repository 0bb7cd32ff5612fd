/* SPDX-License-Identifier: MIT */
/*
 * The operations of iob_conn: each builds its request, makes one call through iob_conn.c
 * and copies the reply out. Zircon's checks are the server core's; only what this side must
 * read or write (the caller's pointers) is checked here.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "client/rpc/iob_conn_internal.h"

/* ---- Operations ---- */

zx_status_t iob_conn_iob_create(iob_conn_t* conn, uint64_t options, const zx_iob_region_t* regions,
                                size_t region_count, zx_handle_t* ep0_out, zx_handle_t* ep1_out) {
    /* Out-pointers first (docs/zircon-iob.md L); every other check is the core's. */
    if (ep0_out == NULL || ep1_out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    /* The array is read only when the core could accept it; the count travels as it is. */
    size_t n = regions != NULL && region_count <= ZX_IOB_MAX_REGIONS ? region_count : 0;
    Iob__V1__Region pr[ZX_IOB_MAX_REGIONS];
    Iob__V1__Region* pp[ZX_IOB_MAX_REGIONS];
    for (size_t i = 0; i < n; i++) {
        iob__v1__region__init(&pr[i]);
        iob_wire_region_to_pb(&regions[i], &pr[i]);
        pp[i] = &pr[i];
    }
    Iob__V1__CreateIobRequest req = IOB__V1__CREATE_IOB_REQUEST__INIT;
    req.options = options;
    req.n_regions = n;
    req.regions = pp;
    req.region_count = region_count;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_CREATE_IOB, &req.base, &rep, NULL);
    if (st == ZX_OK) {
        Iob__V1__CreateIobReply* r = (Iob__V1__CreateIobReply*)rep;
        *ep0_out = r->ep0;
        *ep1_out = r->ep1;
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
}

zx_status_t iob_conn_get_info(iob_conn_t* conn, zx_handle_t handle, uint32_t topic, void* buffer,
                              size_t buffer_size, size_t* actual, size_t* avail) {
    if (buffer == NULL && buffer_size > 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__GetInfoRequest req = IOB__V1__GET_INFO_REQUEST__INIT;
    req.handle = handle;
    req.topic = topic;
    req.buffer_size = buffer_size;
    ProtobufCMessage* rep = NULL;
    iob__conn_result_t res;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_GET_INFO, &req.base, &rep, &res);
    if (st == ZX_OK) {
        Iob__V1__GetInfoReply* r = (Iob__V1__GetInfoReply*)rep;
        size_t n = r->raw.len < buffer_size ? r->raw.len : buffer_size;
        if (n > 0) {
            memcpy(buffer, r->raw.data, n);
        }
        if (actual != NULL) {
            *actual = (size_t)r->actual;
        }
        if (avail != NULL) {
            *avail = (size_t)r->avail;
        }
        protobuf_c_message_free_unpacked(rep, NULL);
    } else {
        /* Zircon writes actual/avail on BUFFER_TOO_SMALL too; they travel as trailers. */
        if (actual != NULL && res.has_actual) {
            *actual = (size_t)res.actual;
        }
        if (avail != NULL && res.has_avail) {
            *avail = (size_t)res.avail;
        }
    }
    return st;
}

zx_status_t iob_conn_get_property(iob_conn_t* conn, zx_handle_t handle, uint32_t property,
                                  void* value, size_t value_size) {
    if (value == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__GetNameRequest req = IOB__V1__GET_NAME_REQUEST__INIT;
    req.handle = handle;
    req.property = property;
    /* 0 would mean "32" on the wire; a zero-sized buffer is simply too small. */
    req.buffer_size = value_size == 0 ? 1 : value_size;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_GET_NAME, &req.base, &rep, NULL);
    if (st == ZX_OK) {
        Iob__V1__NameReply* r = (Iob__V1__NameReply*)rep;
        char name[ZX_MAX_NAME_LEN];
        memset(name, 0, sizeof name);
        snprintf(name, sizeof name, "%s", r->name ? r->name : "");
        memcpy(value, name, value_size < ZX_MAX_NAME_LEN ? value_size : ZX_MAX_NAME_LEN);
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
}

zx_status_t iob_conn_set_property(iob_conn_t* conn, zx_handle_t handle, uint32_t property,
                                  const void* value, size_t value_size) {
    if (value == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__SetNameRequest req = IOB__V1__SET_NAME_REQUEST__INIT;
    req.handle = handle;
    req.property = property;
    /* Only the first 32 bytes can matter: longer names are cut to 31. */
    req.name.data = (uint8_t*)(uintptr_t)value;
    req.name.len = value_size < ZX_MAX_NAME_LEN ? value_size : ZX_MAX_NAME_LEN;
    return iob__conn_unary(conn, IOB_WIRE_M_SET_NAME, &req.base, NULL, NULL);
}

zx_status_t iob_conn_handle_close_many(iob_conn_t* conn, const zx_handle_t* handles,
                                       size_t num_handles) {
    if (handles == NULL && num_handles > 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    /* The reply must fit a message; far more than any caller closes at once. */
    if (num_handles > IOB_CONN_MAX_CLOSE_MANY) {
        return ZX_ERR_OUT_OF_RANGE;
    }
    if (num_handles == 0) {
        return ZX_OK;
    }
    Iob__V1__HandleListRequest req = IOB__V1__HANDLE_LIST_REQUEST__INIT;
    req.handles = (uint32_t*)(uintptr_t)handles;
    req.n_handles = num_handles;
    return iob__conn_unary(conn, IOB_WIRE_M_CLOSE_HANDLES, &req.base, NULL, NULL);
}

zx_status_t iob_conn_handle_close(iob_conn_t* conn, zx_handle_t handle) {
    Iob__V1__HandleRequest req = IOB__V1__HANDLE_REQUEST__INIT;
    req.handle = handle;
    return iob__conn_unary(conn, IOB_WIRE_M_CLOSE_HANDLE, &req.base, NULL, NULL);
}

/* A call whose reply is a HandleReply (a new handle in the caller's session). */
static zx_status_t iob__conn_handle_call(iob_conn_t* conn, iob_wire_method_t m,
                                         const ProtobufCMessage* req, zx_handle_t* out) {
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, m, req, &rep, NULL);
    if (st == ZX_OK) {
        *out = ((Iob__V1__HandleReply*)rep)->handle;
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
}

static zx_status_t iob__conn_rights(iob_conn_t* conn, iob_wire_method_t m, zx_handle_t handle,
                                    zx_rights_t rights, zx_handle_t* out) {
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__HandleRightsRequest req = IOB__V1__HANDLE_RIGHTS_REQUEST__INIT;
    req.handle = handle;
    req.rights = rights;
    return iob__conn_handle_call(conn, m, &req.base, out);
}

zx_status_t iob_conn_handle_duplicate(iob_conn_t* conn, zx_handle_t handle, zx_rights_t rights,
                                      zx_handle_t* out) {
    return iob__conn_rights(conn, IOB_WIRE_M_DUPLICATE_HANDLE, handle, rights, out);
}

zx_status_t iob_conn_handle_replace(iob_conn_t* conn, zx_handle_t handle, zx_rights_t rights,
                                    zx_handle_t* out) {
    return iob__conn_rights(conn, IOB_WIRE_M_REPLACE_HANDLE, handle, rights, out);
}

static zx_status_t iob__conn_signal(iob_conn_t* conn, iob_wire_method_t m, zx_handle_t handle,
                                    uint32_t clear_mask, uint32_t set_mask) {
    Iob__V1__SignalRequest req = IOB__V1__SIGNAL_REQUEST__INIT;
    req.handle = handle;
    req.clear_mask = clear_mask;
    req.set_mask = set_mask;
    return iob__conn_unary(conn, m, &req.base, NULL, NULL);
}

zx_status_t iob_conn_object_signal(iob_conn_t* conn, zx_handle_t handle, uint32_t clear_mask,
                                   uint32_t set_mask) {
    return iob__conn_signal(conn, IOB_WIRE_M_SIGNAL, handle, clear_mask, set_mask);
}

zx_status_t iob_conn_object_signal_peer(iob_conn_t* conn, zx_handle_t handle, uint32_t clear_mask,
                                        uint32_t set_mask) {
    return iob__conn_signal(conn, IOB_WIRE_M_SIGNAL_PEER, handle, clear_mask, set_mask);
}

zx_status_t iob_conn_signals(iob_conn_t* conn, zx_handle_t handle, zx_signals_t* signals_out) {
    Iob__V1__HandleRequest req = IOB__V1__HANDLE_REQUEST__INIT;
    req.handle = handle;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_GET_SIGNALS, &req.base, &rep, NULL);
    if (st == ZX_OK) {
        if (signals_out != NULL) {
            *signals_out = ((Iob__V1__SignalsReply*)rep)->signals;
        }
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
}

typedef struct iob__conn_wait_ctx {
    bool have;
    zx_signals_t observed;
} iob__conn_wait_ctx_t;

static bool iob__conn_wait_msg(void* ctx, grpc_byte_buffer* msg) {
    iob__conn_wait_ctx_t* w = ctx;
    Iob__V1__WaitReply* r =
        (Iob__V1__WaitReply*)iob_wire_unpack(&iob__v1__wait_reply__descriptor, msg);
    if (r != NULL) {
        w->have = true;
        w->observed = r->observed;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    return true;
}

static int64_t iob__conn_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

zx_status_t iob_conn_wait_one(iob_conn_t* conn, zx_handle_t handle, zx_signals_t signals,
                              zx_time_t deadline, zx_signals_t* observed) {
    Iob__V1__WaitRequest req = IOB__V1__WAIT_REQUEST__INIT;
    req.handle = handle;
    req.signals = signals;
    int64_t call_ms = -1;
    if (deadline == ZX_TIME_INFINITE) {
        req.timeout_ns = -1;
    } else {
        /* Relative on the wire: the server's clock need not be ours. */
        int64_t now = iob__conn_now_ns();
        req.timeout_ns = deadline > now ? deadline - now : 0;
        call_ms = req.timeout_ns / 1000000 + conn->timeout_ms;
    }
    iob__conn_wait_ctx_t w = {false, 0};
    iob__conn_result_t res;
    zx_status_t st = iob__conn_server_stream(conn, IOB_WIRE_M_WAIT, &req.base, call_ms,
                                             iob__conn_wait_msg, &w, &res);
    if (observed != NULL) {
        if (res.has_observed) {
            *observed = (zx_signals_t)res.observed;
        } else if (w.have) {
            *observed = w.observed;
        }
    }
    return st;
}

zx_status_t iob_conn_handle_export(iob_conn_t* conn, zx_handle_t handle,
                                   char token_out[IOB_CONN_TOKEN_SIZE]) {
    if (token_out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__HandleRequest req = IOB__V1__HANDLE_REQUEST__INIT;
    req.handle = handle;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_EXPORT_HANDLE, &req.base, &rep, NULL);
    if (st == ZX_OK) {
        Iob__V1__ExportReply* r = (Iob__V1__ExportReply*)rep;
        if (r->token == NULL || strlen(r->token) >= IOB_CONN_TOKEN_SIZE) {
            st = ZX_ERR_IO;
        } else {
            snprintf(token_out, IOB_CONN_TOKEN_SIZE, "%s", r->token);
        }
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
}

zx_status_t iob_conn_handle_import(iob_conn_t* conn, const char* token, zx_handle_t* out) {
    if (token == NULL || out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__ImportRequest req = IOB__V1__IMPORT_REQUEST__INIT;
    req.token = (char*)(uintptr_t)token;
    return iob__conn_handle_call(conn, IOB_WIRE_M_IMPORT_HANDLE, &req.base, out);
}

/* ---- Shared regions and mediated disciplines ---- */

zx_status_t iob_conn_shared_region_create(iob_conn_t* conn, uint64_t options, uint64_t size,
                                          zx_handle_t* out) {
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__CreateSharedRegionRequest req = IOB__V1__CREATE_SHARED_REGION_REQUEST__INIT;
    req.options = options;
    req.size = size;
    return iob__conn_handle_call(conn, IOB_WIRE_M_CREATE_SHARED_REGION, &req.base, out);
}

zx_status_t iob_conn_iob_writev(iob_conn_t* conn, zx_handle_t handle, uint64_t options,
                                uint32_t region_index, uint64_t num_vectors,
                                bool vectors_unreadable, const iob_conn_writev_vec_t* vecs,
                                const void* data, size_t data_len) {
    Iob__V1__IobWritevRequest req = IOB__V1__IOB_WRITEV_REQUEST__INIT;
    req.handle = handle;
    req.options = options;
    req.region_index = region_index;
    req.num_vectors = num_vectors;
    req.vectors_unreadable = vectors_unreadable || (vecs == NULL && num_vectors > 0);
    uint64_t caps[IOB_WIRE_MAX_WRITEV_VECTORS];
    protobuf_c_boolean readable[IOB_WIRE_MAX_WRITEV_VECTORS];
    if (!req.vectors_unreadable && num_vectors <= IOB_WIRE_MAX_WRITEV_VECTORS) {
        for (size_t i = 0; i < num_vectors; i++) {
            caps[i] = vecs[i].capacity;
            readable[i] = vecs[i].readable;
        }
        req.n_capacities = req.n_readable = (size_t)num_vectors;
        req.capacities = caps;
        req.readable = readable;
        req.data.data = (uint8_t*)(uintptr_t)data;
        req.data.len = data != NULL ? data_len : 0;
    }
    return iob__conn_unary(conn, IOB_WIRE_M_IOB_WRITEV, &req.base, NULL, NULL);
}

zx_status_t iob_conn_allocate_id(iob_conn_t* conn, zx_handle_t handle, uint32_t options,
                                 uint32_t region_index, const void* blob, uint64_t blob_size,
                                 uint32_t* id) {
    bool unreadable = blob == NULL && blob_size > 0;
    _Static_assert(IOB_CONN_MAX_BLOB == IOB_WIRE_MAX_BLOB, "blob limits agree");
    /* Beyond one message the blob stays here: iobd checks everything before it. */
    bool check_only = !unreadable && blob_size > IOB_CONN_MAX_BLOB;
    Iob__V1__AllocateIdRequest req = IOB__V1__ALLOCATE_ID_REQUEST__INIT;
    req.handle = handle;
    req.options = options;
    req.region_index = region_index;
    req.blob_size = blob_size;
    req.blob_unreadable = unreadable;
    req.check_only = check_only;
    if (!unreadable && !check_only) {
        req.blob.data = (uint8_t*)(uintptr_t)blob;
        req.blob.len = (size_t)blob_size;
    }
    req.id_null = id == NULL;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_ALLOCATE_ID, &req.base, &rep, NULL);
    if (st == ZX_OK && check_only) {
        protobuf_c_message_free_unpacked(rep, NULL);
        return ZX_ERR_NOT_SUPPORTED; /* the call would go on, but its blob cannot travel */
    }
    if (st == ZX_OK) {
        if (id != NULL) {
            *id = ((Iob__V1__AllocateIdReply*)rep)->id;
        }
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
}

typedef struct iob__conn_read_ctx {
    uint8_t* buffer;
    uint64_t offset; /* region offset of buffer[0] */
    size_t len;
    size_t got;
    bool bad;
} iob__conn_read_ctx_t;

static bool iob__conn_read_msg(void* ctx, grpc_byte_buffer* msg) {
    iob__conn_read_ctx_t* r = ctx;
    Iob__V1__ReadRegionReply* m =
        (Iob__V1__ReadRegionReply*)iob_wire_unpack(&iob__v1__read_region_reply__descriptor, msg);
    if (m == NULL) {
        r->bad = true;
        return false;
    }
    bool ok = m->offset >= r->offset && m->offset - r->offset <= r->len &&
              m->data.len <= r->len - (size_t)(m->offset - r->offset);
    if (ok) {
        memcpy(r->buffer + (m->offset - r->offset), m->data.data, m->data.len);
        r->got += m->data.len;
    } else {
        r->bad = true;
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
    return ok;
}

zx_status_t iob_conn_region_read(iob_conn_t* conn, zx_handle_t handle, uint32_t region_index,
                                 uint64_t offset, void* buffer, size_t len) {
    if (buffer == NULL && len > 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__ReadRegionRequest req = IOB__V1__READ_REGION_REQUEST__INIT;
    req.handle = handle;
    req.region_index = region_index;
    req.offset = offset;
    req.length = len;
    iob__conn_read_ctx_t r = {buffer, offset, len, 0, false};
    /* A transfer may be long: the per-call deadline grows with its size (>= 1 ms per MiB). */
    int64_t call_ms = (int64_t)conn->timeout_ms + (int64_t)(len >> 20) * 100;
    zx_status_t st = iob__conn_server_stream(conn, IOB_WIRE_M_READ_REGION, &req.base, call_ms,
                                             iob__conn_read_msg, &r, NULL);
    if (st == ZX_OK && (r.bad || r.got != len)) {
        st = ZX_ERR_IO;
    }
    return st;
}

zx_status_t iob_conn_region_write(iob_conn_t* conn, zx_handle_t handle, uint32_t region_index,
                                  uint64_t offset, const void* buffer, size_t len) {
    if (buffer == NULL && len > 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    int64_t call_ms = (int64_t)conn->timeout_ms + (int64_t)(len >> 20) * 100;
    iob__conn_call_state_t c;
    iob__conn_call_begin(conn, IOB_WIRE_M_WRITE_REGION, call_ms, &c);
    grpc_byte_buffer* recv = NULL;
    int t_start, t_status, t_send, t_end;
    grpc_op op[3];
    memset(op, 0, sizeof op);
    iob__conn_metadata_op(conn, &op[0]);
    grpc_op sop;
    memset(&sop, 0, sizeof sop);
    iob__conn_status_op(&c, &sop);
    if (grpc_call_start_batch(c.call, op, 1, &t_start, NULL) != GRPC_CALL_OK) {
        c.res.status = ZX_ERR_IO; /* cannot happen with a fresh call */
        return iob__conn_call_end(conn, &c, NULL);
    }
    if (grpc_call_start_batch(c.call, &sop, 1, &t_status, NULL) != GRPC_CALL_OK) {
        iob__conn_pluck(c.cq, &t_start);
        c.res.status = ZX_ERR_IO;
        return iob__conn_call_end(conn, &c, NULL);
    }
    iob__conn_pluck(c.cq, &t_start);
    /* Always at least one message: it names the handle, region and offset. */
    size_t sent = 0;
    bool first = true;
    while (first || sent < len) {
        size_t n = len - sent < IOB_WIRE_MAX_CHUNK ? len - sent : IOB_WIRE_MAX_CHUNK;
        Iob__V1__WriteRegionRequest req = IOB__V1__WRITE_REGION_REQUEST__INIT;
        if (first) {
            req.handle = handle;
            req.region_index = region_index;
            req.offset = offset;
        }
        req.data.data = (uint8_t*)(uintptr_t)buffer + sent;
        req.data.len = n;
        grpc_byte_buffer* bb = iob_wire_pack(&req.base);
        memset(op, 0, sizeof op);
        op[0].op = GRPC_OP_SEND_MESSAGE;
        op[0].data.send_message.send_message = bb;
        bool ok = grpc_call_start_batch(c.call, op, 1, &t_send, NULL) == GRPC_CALL_OK &&
                  iob__conn_pluck(c.cq, &t_send).success;
        grpc_byte_buffer_destroy(bb);
        if (!ok) {
            break; /* the server ended the call; its status says why */
        }
        sent += n;
        first = false;
    }
    memset(op, 0, sizeof op);
    op[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    op[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    op[1].data.recv_initial_metadata.recv_initial_metadata = &c.initial;
    op[2].op = GRPC_OP_RECV_MESSAGE;
    op[2].data.recv_message.recv_message = &recv;
    if (grpc_call_start_batch(c.call, op, 3, &t_end, NULL) == GRPC_CALL_OK) {
        iob__conn_pluck(c.cq, &t_end);
    }
    iob__conn_pluck(c.cq, &t_status);
    iob__conn_result(conn, c.code, c.details, &c.trailing, &c.res);
    if (c.res.status == ZX_OK && sent != len) {
        c.res.status = ZX_ERR_IO;
    }
    if (recv != NULL) {
        grpc_byte_buffer_destroy(recv);
    }
    return iob__conn_call_end(conn, &c, NULL);
}

zx_status_t iob_conn_server_info(iob_conn_t* conn, iob_conn_server_info_t* out) {
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__ServerInfoRequest req = IOB__V1__SERVER_INFO_REQUEST__INIT;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_SERVER_INFO, &req.base, &rep, NULL);
    if (st != ZX_OK) {
        return st;
    }
    Iob__V1__ServerInfoReply* r = (Iob__V1__ServerInfoReply*)rep;
    memset(out, 0, sizeof *out);
    snprintf(out->version, sizeof out->version, "%s", r->version ? r->version : "");
    out->page_size = r->page_size;
    snprintf(out->backing, sizeof out->backing, "%s", r->backing ? r->backing : "");
    out->hugepages_total = r->hugepages_total;
    out->hugepages_free = r->hugepages_free;
    out->max_total_bytes = r->max_total_bytes;
    out->max_iobs_per_session = r->max_iobs_per_session;
    out->max_handles_per_session = r->max_handles_per_session;
    out->token_ttl_ns = r->token_ttl_ns;
    out->iobs = r->iobs;
    out->sessions = r->sessions;
    out->handles = r->handles;
    out->mappings = r->mappings;
    out->tokens = r->tokens;
    out->bytes_in_use = r->bytes_in_use;
    out->max_message_bytes = r->max_message_bytes;
    out->max_chunk_bytes = r->max_chunk_bytes;
    out->server_wide = r->server_wide;
    out->max_sessions_per_uid = r->max_sessions_per_uid;
    out->max_waits_per_session = r->max_waits_per_session;
    out->session_max_bytes = r->session_max_bytes;
    out->session_max_iobs = r->session_max_iobs;
    out->session_max_handles = r->session_max_handles;
    out->session_max_tokens = r->session_max_tokens;
    out->session_max_mappings = r->session_max_mappings;
    out->uid_max_bytes = r->uid_max_bytes;
    out->uid_max_iobs = r->uid_max_iobs;
    out->uid_max_handles = r->uid_max_handles;
    out->uid_max_tokens = r->uid_max_tokens;
    out->uid_max_mappings = r->uid_max_mappings;
    out->shared_regions = r->shared_regions;
    out->uids = r->uids;
    out->top_uid_bytes = r->top_uid_bytes;
    out->top_uid = r->top_uid;
    out->handle_value_bits = r->handle_value_bits;
    protobuf_c_message_free_unpacked(rep, NULL);
    return ZX_OK;
}

zx_status_t iob_conn_list(iob_conn_t* conn, iob_conn_iob_summary_t* out, size_t capacity,
                          size_t* count_out) {
    if ((out == NULL && capacity > 0) || count_out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__ListIobsRequest req = IOB__V1__LIST_IOBS_REQUEST__INIT;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_LIST_IOBS, &req.base, &rep, NULL);
    if (st != ZX_OK) {
        return st;
    }
    Iob__V1__ListIobsReply* r = (Iob__V1__ListIobsReply*)rep;
    for (size_t i = 0; i < r->n_iobs && i < capacity; i++) {
        const Iob__V1__IobSummary* s = r->iobs[i];
        iob_conn_iob_summary_t* o = &out[i];
        memset(o, 0, sizeof *o);
        o->koid = s->koid;
        o->region_count = s->region_count;
        o->total_bytes = s->total_bytes;
        snprintf(o->name, sizeof o->name, "%s", s->name ? s->name : "");
        o->shared_koid = s->shared_region_koid;
        o->shared_discipline = s->shared_discipline_type;
        o->shared_tag = s->shared_ring_buffer_tag;
        for (size_t e = 0; e < 2 && e < s->n_endpoints; e++) {
            o->endpoints[e].koid = s->endpoints[e]->koid;
            o->endpoints[e].handles = s->endpoints[e]->handles;
            o->endpoints[e].mappings = s->endpoints[e]->mappings;
            o->endpoints[e].signals = s->endpoints[e]->signals;
        }
    }
    *count_out = r->n_iobs;
    protobuf_c_message_free_unpacked(rep, NULL);
    return ZX_OK;
}
