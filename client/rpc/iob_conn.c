/* SPDX-License-Identifier: MIT */
/*
 * iob_conn over gRPC's C core: one channel, registered methods, a pluck completion queue
 * per call taken from a small pool (any number of threads may call at once; a pluck CQ
 * allows only 6 pluckers, and each pooled CQ serves one call at a time), and the session's
 * stream, read by a background thread on its own CQ once an event callback is set.
 *
 * Why the reader starts only on demand: a thread blocked in grpc_completion_queue_next is
 * gRPC's designated poller (epoll1 has one poller per process), so while it exists every
 * unary call's reply is read by that thread and handed over to the caller, which costs
 * two or more thread wakeups per call (measured: about 50 us of a 190 us call on a loaded
 * 2-core box). Without the reader the caller polls for its own reply. So the session opens
 * with events off (OpenSessionRequest.no_events) and iob_conn_set_event_callback turns them
 * on and starts the reader.
 *
 * Statuses: the server's exact zx_status_t comes from the "iob-status" trailer. Without
 * it the call failed in transport: see iob_wire_status_from_grpc, refined here (a lost
 * connection after the session opened is ZX_ERR_PEER_CLOSED; a TLS failure is
 * ZX_ERR_ACCESS_DENIED).
 */
#include "client/rpc/iob_conn.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "proto/wire.h"

#define IOB_CONN_DEFAULT_TIMEOUT_MS 10000
/* Replies carry at most a 1 MiB chunk; leave room for framing and future growth. */
#define IOB_CONN_MAX_RECEIVE ((int)(2 * IOB_WIRE_MAX_MESSAGE))

#define IOB__CONN_CQ_POOL 8 /* idle CQs kept; more concurrent callers create their own */

struct iob_conn {
    grpc_channel* channel;
    void* methods[IOB_WIRE_M_COUNT];
    char* target;
    bool remote;
    int timeout_ms;
    char session_md[IOB_WIRE_SESSION_MD_SIZE];
    char* auth_md; /* "Bearer <token>" or NULL */
    grpc_metadata md[2];
    size_t md_count;
    iob_conn_session_info_t info;

    /* The session stream, read by `reader`. */
    grpc_completion_queue* scq;
    grpc_call* scall;
    pthread_t reader;
    bool reader_started;
    grpc_metadata_array s_initial, s_trailing;
    grpc_status_code s_status;
    grpc_slice s_details;
    grpc_byte_buffer* s_recv;
    atomic_bool session_live;
    /* start_lock guards reader_started and status_seen (who may pump scq). */
    pthread_mutex_t start_lock;
    bool status_seen; /* the stream's status batch completed */

    pthread_mutex_t ev_lock;
    iob_conn_event_fn event_fn;
    void* event_ctx;

    /*
     * Idle pluck CQs for calls. Creating and shutting down a CQ per call costs a pollset
     * set-up and teardown (and the wakeups that go with them) on every call; a CQ whose
     * batches have all been plucked is empty and can serve the next call. Each CQ serves
     * one call at a time, so the 6-plucker limit never applies.
     */
    pthread_mutex_t cq_lock;
    grpc_completion_queue* cq_free[IOB__CONN_CQ_POOL];
    size_t cq_free_count;
};

/* Tags of the session stream's batches. */
enum { IOB__CONN_TAG_START = 1, IOB__CONN_TAG_STATUS, IOB__CONN_TAG_RECV };
static char iob__conn_tags[4];
#define IOB__CONN_TAG(n) ((void*)&iob__conn_tags[n])

/* Trailers a call may carry besides its status. */
typedef struct iob__conn_result {
    zx_status_t status;
    bool has_actual, has_avail, has_observed;
    uint64_t actual, avail, observed;
} iob__conn_result_t;

static gpr_timespec iob__conn_deadline_ms(int ms) {
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static bool iob__md_u64(const grpc_metadata* m, const char* key, uint64_t* out) {
    if (grpc_slice_str_cmp(m->key, key) != 0) {
        return false;
    }
    char buf[32];
    size_t len = GRPC_SLICE_LENGTH(m->value);
    if (len == 0 || len >= sizeof buf) {
        return false;
    }
    memcpy(buf, GRPC_SLICE_START_PTR(m->value), len);
    buf[len] = '\0';
    char* end = NULL;
    unsigned long long v = strtoull(buf, &end, 10);
    if (*end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

static void iob__conn_poll_session(iob_conn_t* conn);

static zx_status_t iob__conn_transport_status(iob_conn_t* conn, grpc_status_code code,
                                              grpc_slice details) {
    zx_status_t st = iob_wire_status_from_grpc(code);
    if (st == ZX_ERR_UNAVAILABLE) {
        char* d = grpc_slice_to_c_string(details);
        bool tls = d != NULL && (strstr(d, "SSL") != NULL || strstr(d, "ssl") != NULL ||
                                 strstr(d, "andshake") != NULL || strstr(d, "ertificate") != NULL);
        gpr_free(d);
        if (tls) {
            st = ZX_ERR_ACCESS_DENIED;
        } else if (conn != NULL && conn->info.session_id != 0 &&
                   (iob__conn_poll_session(conn), atomic_load(&conn->session_live) == false)) {
            st = ZX_ERR_PEER_CLOSED;
        }
    }
    return st;
}

static void iob__conn_result(iob_conn_t* conn, grpc_status_code code, grpc_slice details,
                             const grpc_metadata_array* trailing, iob__conn_result_t* r) {
    memset(r, 0, sizeof *r);
    bool have_status = false;
    for (size_t i = 0; i < trailing->count; i++) {
        const grpc_metadata* m = &trailing->metadata[i];
        if (grpc_slice_str_cmp(m->key, IOB_WIRE_MD_STATUS) == 0) {
            have_status = iob_wire_parse_status((const char*)GRPC_SLICE_START_PTR(m->value),
                                                GRPC_SLICE_LENGTH(m->value), &r->status);
        } else if (iob__md_u64(m, IOB_WIRE_MD_ACTUAL, &r->actual)) {
            r->has_actual = true;
        } else if (iob__md_u64(m, IOB_WIRE_MD_AVAIL, &r->avail)) {
            r->has_avail = true;
        } else if (iob__md_u64(m, IOB_WIRE_MD_OBSERVED, &r->observed)) {
            r->has_observed = true;
        }
    }
    if (!have_status) {
        r->status = iob__conn_transport_status(conn, code, details);
    } else if (r->status == ZX_OK && code != GRPC_STATUS_OK) {
        r->status = iob__conn_transport_status(conn, code, details); /* cannot happen */
    }
}

static grpc_call* iob__conn_call(iob_conn_t* conn, iob_wire_method_t m, grpc_completion_queue* cq,
                                 gpr_timespec deadline) {
    return grpc_channel_create_registered_call(conn->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               conn->methods[m], deadline, NULL);
}

static void iob__conn_cq_destroy(grpc_completion_queue* cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

/* A pluck CQ with nothing pending, for one call. */
static grpc_completion_queue* iob__conn_cq_get(iob_conn_t* conn) {
    grpc_completion_queue* cq = NULL;
    pthread_mutex_lock(&conn->cq_lock);
    if (conn->cq_free_count > 0) {
        cq = conn->cq_free[--conn->cq_free_count];
    }
    pthread_mutex_unlock(&conn->cq_lock);
    return cq != NULL ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

/* Back to the pool: only when every batch started on it has been plucked. */
static void iob__conn_cq_put(iob_conn_t* conn, grpc_completion_queue* cq) {
    pthread_mutex_lock(&conn->cq_lock);
    if (conn->cq_free_count < IOB__CONN_CQ_POOL) {
        conn->cq_free[conn->cq_free_count++] = cq;
        cq = NULL;
    }
    pthread_mutex_unlock(&conn->cq_lock);
    if (cq != NULL) {
        iob__conn_cq_destroy(cq);
    }
}

static grpc_event iob__conn_pluck(grpc_completion_queue* cq, void* tag) {
    return grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

/*
 * One unary call: the request out, the reply (when the status is ZX_OK) into *reply_out
 * (caller frees with protobuf_c_message_free_unpacked).
 */
static zx_status_t iob__conn_unary(iob_conn_t* conn, iob_wire_method_t m,
                                   const ProtobufCMessage* req,
                                   const ProtobufCMessageDescriptor* reply_desc,
                                   ProtobufCMessage** reply_out, iob__conn_result_t* res_out) {
    grpc_completion_queue* cq = iob__conn_cq_get(conn);
    grpc_call* call = iob__conn_call(conn, m, cq, iob__conn_deadline_ms(conn->timeout_ms));
    grpc_byte_buffer* send = iob_wire_pack(req);
    grpc_byte_buffer* recv = NULL;
    grpc_metadata_array im, tm;
    grpc_metadata_array_init(&im);
    grpc_metadata_array_init(&tm);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = conn->md_count;
    ops[0].data.send_initial_metadata.metadata = conn->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &im;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &tm;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;
    iob__conn_result_t res;
    memset(&res, 0, sizeof res);
    ProtobufCMessage* reply = NULL;
    if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
        res.status = ZX_ERR_IO;
    } else {
        iob__conn_pluck(cq, call);
        iob__conn_result(conn, code, details, &tm, &res);
        if (res.status == ZX_OK && reply_desc != NULL) {
            reply = iob_wire_unpack(reply_desc, recv);
            if (reply == NULL) {
                res.status = ZX_ERR_IO; /* the server answered with something else */
            }
        }
    }
    grpc_slice_unref(details);
    if (recv != NULL) {
        grpc_byte_buffer_destroy(recv);
    }
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&im);
    grpc_metadata_array_destroy(&tm);
    grpc_call_unref(call);
    iob__conn_cq_put(conn, cq);
    if (res_out != NULL) {
        *res_out = res;
    }
    if (reply_out != NULL) {
        *reply_out = reply;
    } else if (reply != NULL) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return res.status;
}

/*
 * A server-streaming call: on_msg runs for every message (return false to cancel).
 * call_timeout_ms < 0: no deadline.
 */
typedef bool (*iob__conn_msg_fn)(void* ctx, grpc_byte_buffer* msg);

static zx_status_t iob__conn_server_stream(iob_conn_t* conn, iob_wire_method_t m,
                                           const ProtobufCMessage* req, int64_t call_timeout_ms,
                                           iob__conn_msg_fn on_msg, void* ctx,
                                           iob__conn_result_t* res_out) {
    grpc_completion_queue* cq = iob__conn_cq_get(conn);
    gpr_timespec deadline = call_timeout_ms < 0
                                ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                : iob__conn_deadline_ms(call_timeout_ms > INT32_MAX
                                                            ? INT32_MAX
                                                            : (int)call_timeout_ms);
    grpc_call* call = iob__conn_call(conn, m, cq, deadline);
    grpc_byte_buffer* send = iob_wire_pack(req);
    grpc_metadata_array im, tm;
    grpc_metadata_array_init(&im);
    grpc_metadata_array_init(&tm);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    int t_start, t_status, t_recv;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = conn->md_count;
    ops[0].data.send_initial_metadata.metadata = conn->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &im;
    iob__conn_result_t res;
    memset(&res, 0, sizeof res);
    grpc_op sop;
    memset(&sop, 0, sizeof sop);
    sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    sop.data.recv_status_on_client.trailing_metadata = &tm;
    sop.data.recv_status_on_client.status = &code;
    sop.data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 4, &t_start, NULL) != GRPC_CALL_OK) {
        res.status = ZX_ERR_IO;
        goto out;
    }
    if (grpc_call_start_batch(call, &sop, 1, &t_status, NULL) != GRPC_CALL_OK) {
        iob__conn_pluck(cq, &t_start);
        res.status = ZX_ERR_IO;
        goto out;
    }
    iob__conn_pluck(cq, &t_start);
    for (;;) {
        grpc_byte_buffer* msg = NULL;
        grpc_op rop;
        memset(&rop, 0, sizeof rop);
        rop.op = GRPC_OP_RECV_MESSAGE;
        rop.data.recv_message.recv_message = &msg;
        if (grpc_call_start_batch(call, &rop, 1, &t_recv, NULL) != GRPC_CALL_OK) {
            break;
        }
        grpc_event ev = iob__conn_pluck(cq, &t_recv);
        if (!ev.success || msg == NULL) {
            break;
        }
        bool more = on_msg(ctx, msg);
        grpc_byte_buffer_destroy(msg);
        if (!more) {
            grpc_call_cancel(call, NULL);
            break;
        }
    }
    iob__conn_pluck(cq, &t_status);
    iob__conn_result(conn, code, details, &tm, &res);
out:
    grpc_slice_unref(details);
    grpc_byte_buffer_destroy(send);
    grpc_metadata_array_destroy(&im);
    grpc_metadata_array_destroy(&tm);
    grpc_call_unref(call);
    iob__conn_cq_put(conn, cq);
    if (res_out != NULL) {
        *res_out = res;
    }
    return res.status;
}

/* ---- The session stream ---- */

static void iob__conn_dispatch(iob_conn_t* conn, grpc_byte_buffer* msg) {
    Iob__V1__SessionMessage* m = (Iob__V1__SessionMessage*)iob_wire_unpack(
        &iob__v1__session_message__descriptor, msg);
    if (m == NULL) {
        return;
    }
    if (m->kind_case == IOB__V1__SESSION_MESSAGE__KIND_EVENT && m->event != NULL) {
        pthread_mutex_lock(&conn->ev_lock);
        iob_conn_event_fn fn = conn->event_fn;
        void* ctx = conn->event_ctx;
        pthread_mutex_unlock(&conn->ev_lock);
        if (fn != NULL) {
            fn(ctx, m->event->handle, m->event->signals);
        }
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static bool iob__conn_start_recv(iob_conn_t* conn) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &conn->s_recv;
    return grpc_call_start_batch(conn->scall, &op, 1, IOB__CONN_TAG(IOB__CONN_TAG_RECV), NULL) ==
           GRPC_CALL_OK;
}

/* Pumps the session CQ until every batch of the stream has completed. */
static void* iob__conn_reader(void* arg) {
    iob_conn_t* conn = arg;
    bool recv_pending = iob__conn_start_recv(conn);
    bool status_pending = true;
    while (recv_pending || status_pending) {
        grpc_event ev =
            grpc_completion_queue_next(conn->scq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            break;
        }
        if (ev.tag == IOB__CONN_TAG(IOB__CONN_TAG_STATUS)) {
            status_pending = false;
            atomic_store(&conn->session_live, false);
        } else if (ev.tag == IOB__CONN_TAG(IOB__CONN_TAG_RECV)) {
            recv_pending = false;
            grpc_byte_buffer* msg = conn->s_recv;
            conn->s_recv = NULL;
            if (ev.success && msg != NULL) {
                iob__conn_dispatch(conn, msg);
                grpc_byte_buffer_destroy(msg);
                recv_pending = iob__conn_start_recv(conn);
            } else {
                atomic_store(&conn->session_live, false);
            }
        }
    }
    return NULL;
}

static void iob__conn_free(iob_conn_t* conn) {
    if (conn->scall != NULL) {
        grpc_call_unref(conn->scall);
    }
    if (conn->scq != NULL) {
        grpc_completion_queue_shutdown(conn->scq);
        while (grpc_completion_queue_next(conn->scq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(conn->scq);
    }
    grpc_metadata_array_destroy(&conn->s_initial);
    grpc_metadata_array_destroy(&conn->s_trailing);
    grpc_slice_unref(conn->s_details);
    if (conn->s_recv != NULL) {
        grpc_byte_buffer_destroy(conn->s_recv);
    }
    if (conn->channel != NULL) {
        grpc_channel_destroy(conn->channel);
    }
    pthread_mutex_destroy(&conn->ev_lock);
    for (size_t i = 0; i < conn->cq_free_count; i++) {
        iob__conn_cq_destroy(conn->cq_free[i]);
    }
    pthread_mutex_destroy(&conn->cq_lock);
    pthread_mutex_destroy(&conn->start_lock);
    free(conn->auth_md);
    free(conn->target);
    free(conn);
    grpc_shutdown();
}

static zx_status_t iob__conn_channel(iob_conn_t* conn, const iob_conn_options_t* o) {
    grpc_channel_credentials* creds = NULL;
    if (conn->remote && !o->insecure) {
        const char* ca_file = o->tls_ca_file != NULL ? o->tls_ca_file : getenv("IOB_TLS_CA");
        char* ca = ca_file != NULL ? iob_wire_read_pem(ca_file) : NULL;
        if (ca_file != NULL && ca == NULL) {
            return ZX_ERR_NOT_FOUND;
        }
        grpc_ssl_pem_key_cert_pair kp;
        char *cert = NULL, *key = NULL;
        if (o->tls_cert_file != NULL && o->tls_key_file != NULL) {
            cert = iob_wire_read_pem(o->tls_cert_file);
            key = iob_wire_read_pem(o->tls_key_file);
            if (cert == NULL || key == NULL) {
                free(ca);
                free(cert);
                free(key);
                return ZX_ERR_NOT_FOUND;
            }
            kp.private_key = key;
            kp.cert_chain = cert;
        }
        creds = grpc_ssl_credentials_create(ca, cert != NULL ? &kp : NULL, NULL, NULL);
        free(ca);
        free(cert);
        free(key);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    if (creds == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    grpc_arg args[4];
    memset(args, 0, sizeof args);
    size_t n = 0;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char*)(uintptr_t)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n++].value.integer = IOB_CONN_MAX_RECEIVE;
    if (conn->remote) {
        /* The session call lives as long as the process: keep idle TCP paths open and
         * notice dead ones. */
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char*)(uintptr_t)GRPC_ARG_KEEPALIVE_TIME_MS;
        args[n++].value.integer = 30000;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char*)(uintptr_t)GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
        args[n++].value.integer = 10000;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = (char*)(uintptr_t)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
        args[n++].value.integer = 1;
    }
    grpc_channel_args ca = {n, args};
    conn->channel = grpc_channel_create(conn->target, creds, &ca);
    grpc_channel_credentials_release(creds);
    if (conn->channel == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    for (unsigned m = 0; m < IOB_WIRE_M_COUNT; m++) {
        conn->methods[m] =
            grpc_channel_register_call(conn->channel, iob_wire_method_path((iob_wire_method_t)m),
                                       NULL, NULL);
    }
    return ZX_OK;
}

/* Opens the session call and waits for its first message. */
static zx_status_t iob__conn_open_session(iob_conn_t* conn) {
    conn->scq = grpc_completion_queue_create_for_next(NULL);
    conn->scall = grpc_channel_create_registered_call(
        conn->channel, NULL, GRPC_PROPAGATE_DEFAULTS, conn->scq,
        conn->methods[IOB_WIRE_M_OPEN_SESSION], gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    Iob__V1__OpenSessionRequest req = IOB__V1__OPEN_SESSION_REQUEST__INIT;
    char name[64];
    snprintf(name, sizeof name, "iob_conn pid %d", (int)getpid());
    req.client_name = name;
    req.no_events = true; /* until iob_conn_set_event_callback: see the top of this file */
    grpc_byte_buffer* send = iob_wire_pack(&req.base);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    /* The session call carries only the token: the session does not exist yet. */
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = conn->auth_md != NULL ? 1 : 0;
    ops[0].data.send_initial_metadata.metadata = &conn->md[1];
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &conn->s_initial;
    grpc_op sop;
    memset(&sop, 0, sizeof sop);
    sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    sop.data.recv_status_on_client.trailing_metadata = &conn->s_trailing;
    sop.data.recv_status_on_client.status = &conn->s_status;
    sop.data.recv_status_on_client.status_details = &conn->s_details;
    grpc_op rop;
    memset(&rop, 0, sizeof rop);
    rop.op = GRPC_OP_RECV_MESSAGE;
    rop.data.recv_message.recv_message = &conn->s_recv;
    if (grpc_call_start_batch(conn->scall, ops, 4, IOB__CONN_TAG(IOB__CONN_TAG_START), NULL) !=
            GRPC_CALL_OK ||
        grpc_call_start_batch(conn->scall, &sop, 1, IOB__CONN_TAG(IOB__CONN_TAG_STATUS), NULL) !=
            GRPC_CALL_OK ||
        grpc_call_start_batch(conn->scall, &rop, 1, IOB__CONN_TAG(IOB__CONN_TAG_RECV), NULL) !=
            GRPC_CALL_OK) {
        /* Cannot happen with a fresh call; leave the CQ for iob__conn_free to drain. */
        grpc_byte_buffer_destroy(send);
        return ZX_ERR_IO;
    }
    bool started = false, got_first = false, status_done = false;
    gpr_timespec deadline = iob__conn_deadline_ms(conn->timeout_ms);
    while (!got_first || !started) {
        grpc_event ev = grpc_completion_queue_next(conn->scq, deadline, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            grpc_call_cancel(conn->scall, NULL);
            deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
            continue;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            break;
        }
        if (ev.tag == IOB__CONN_TAG(IOB__CONN_TAG_START)) {
            started = true;
        } else if (ev.tag == IOB__CONN_TAG(IOB__CONN_TAG_STATUS)) {
            status_done = true;
        } else if (ev.tag == IOB__CONN_TAG(IOB__CONN_TAG_RECV)) {
            got_first = true;
        }
    }
    grpc_byte_buffer_destroy(send);
    zx_status_t st = ZX_OK;
    Iob__V1__SessionMessage* m = NULL;
    if (conn->s_recv != NULL) {
        m = (Iob__V1__SessionMessage*)iob_wire_unpack(&iob__v1__session_message__descriptor,
                                                      conn->s_recv);
        grpc_byte_buffer_destroy(conn->s_recv);
        conn->s_recv = NULL;
    }
    if (m == NULL || m->kind_case != IOB__V1__SESSION_MESSAGE__KIND_OPENED ||
        m->opened->secret.len != IOB_CONN_SECRET_SIZE) {
        if (m != NULL) {
            protobuf_c_message_free_unpacked(&m->base, NULL);
            st = ZX_ERR_IO;
            grpc_call_cancel(conn->scall, NULL);
        }
        /* The call failed: its status says why. */
        while (!status_done) {
            grpc_event ev =
                grpc_completion_queue_next(conn->scq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            if (ev.type != GRPC_OP_COMPLETE) {
                break;
            }
            status_done = ev.tag == IOB__CONN_TAG(IOB__CONN_TAG_STATUS);
        }
        if (st == ZX_OK) {
            iob__conn_result_t res;
            iob__conn_result(NULL, conn->s_status, conn->s_details, &conn->s_trailing, &res);
            st = res.status != ZX_OK ? res.status : ZX_ERR_IO;
        }
        return st;
    }
    Iob__V1__SessionOpened* o = m->opened;
    iob_conn_session_info_t* info = &conn->info;
    info->session_id = o->session_id;
    memcpy(info->secret, o->secret.data, IOB_CONN_SECRET_SIZE);
    info->page_size = o->page_size;
    snprintf(info->backing, sizeof info->backing, "%s", o->backing ? o->backing : "");
    snprintf(info->broker_path, sizeof info->broker_path, "%s",
             o->broker_path ? o->broker_path : "");
    snprintf(info->server_version, sizeof info->server_version, "%s",
             o->server_version ? o->server_version : "");
    protobuf_c_message_free_unpacked(&m->base, NULL);
    iob_wire_format_session(conn->session_md, info->session_id, info->secret);
    conn->md[0].key = grpc_slice_from_static_string(IOB_WIRE_MD_SESSION);
    conn->md[0].value =
        grpc_slice_from_static_buffer(conn->session_md, strlen(conn->session_md));
    conn->md_count = conn->auth_md != NULL ? 2 : 1;
    atomic_store(&conn->session_live, !status_done);
    conn->status_seen = status_done;
    if (status_done) {
        return ZX_ERR_PEER_CLOSED;
    }
    return ZX_OK;
}

zx_status_t iob_conn_open(const iob_conn_options_t* options, iob_conn_t** out) {
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_conn_options_t defaults;
    memset(&defaults, 0, sizeof defaults);
    const iob_conn_options_t* o = options != NULL ? options : &defaults;
    iob_conn_t* conn = calloc(1, sizeof *conn);
    if (conn == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    grpc_init();
    pthread_mutex_init(&conn->ev_lock, NULL);
    pthread_mutex_init(&conn->cq_lock, NULL);
    pthread_mutex_init(&conn->start_lock, NULL);
    grpc_metadata_array_init(&conn->s_initial);
    grpc_metadata_array_init(&conn->s_trailing);
    conn->s_details = grpc_empty_slice();
    atomic_init(&conn->session_live, false);
    conn->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : IOB_CONN_DEFAULT_TIMEOUT_MS;
    const char* target = o->target != NULL ? o->target : getenv("IOB_SERVER");
    if (target == NULL || target[0] == '\0') {
        target = "unix:" IOB_DEFAULT_SOCKET_PATH;
    }
    conn->target = strdup(target);
    conn->remote = strncmp(target, "unix:", 5) != 0;
    const char* token = o->token != NULL ? o->token : getenv("IOB_TOKEN");
    if (conn->remote && token != NULL && token[0] != '\0') {
        size_t len = strlen(token) + 8;
        conn->auth_md = malloc(len);
        if (conn->auth_md != NULL) {
            snprintf(conn->auth_md, len, "Bearer %s", token);
            conn->md[1].key = grpc_slice_from_static_string(IOB_WIRE_MD_AUTHORIZATION);
            conn->md[1].value =
                grpc_slice_from_static_buffer(conn->auth_md, strlen(conn->auth_md));
        }
    }
    zx_status_t st = conn->target == NULL ? ZX_ERR_NO_MEMORY : iob__conn_channel(conn, o);
    if (st == ZX_OK) {
        st = iob__conn_open_session(conn);
    }
    if (st != ZX_OK) {
        if (conn->scall != NULL) {
            grpc_call_cancel(conn->scall, NULL);
        }
        iob__conn_free(conn);
        return st;
    }
    *out = conn;
    return ZX_OK;
}

void iob_conn_close(iob_conn_t* conn) {
    if (conn == NULL) {
        return;
    }
    /* Ending the session call is what tells the server to close the session's handles. */
    grpc_call_cancel(conn->scall, NULL);
    if (conn->reader_started) {
        pthread_join(conn->reader, NULL);
    }
    iob__conn_free(conn);
}

const iob_conn_session_info_t* iob_conn_session(const iob_conn_t* conn) {
    return &conn->info;
}

const char* iob_conn_target(const iob_conn_t* conn) {
    return conn->target;
}

/*
 * Without a reader, nobody consumes the stream's status: look for it here (only on a
 * transport failure, where it decides UNAVAILABLE against PEER_CLOSED). The failed call
 * has already seen the connection go; the stream's status follows within moments.
 */
static void iob__conn_poll_session(iob_conn_t* conn) {
    pthread_mutex_lock(&conn->start_lock);
    if (!conn->reader_started && !conn->status_seen && conn->scq != NULL) {
        gpr_timespec deadline = iob__conn_deadline_ms(100);
        for (;;) {
            grpc_event ev = grpc_completion_queue_next(conn->scq, deadline, NULL);
            if (ev.type != GRPC_OP_COMPLETE) {
                break;
            }
            if (ev.tag == IOB__CONN_TAG(IOB__CONN_TAG_STATUS)) {
                conn->status_seen = true;
                atomic_store(&conn->session_live, false);
                break;
            }
        }
    }
    pthread_mutex_unlock(&conn->start_lock);
}

zx_status_t iob_conn_set_session_events(iob_conn_t* conn, bool enabled) {
    Iob__V1__SessionEventsRequest req = IOB__V1__SESSION_EVENTS_REQUEST__INIT;
    req.enabled = enabled;
    return iob__conn_unary(conn, IOB_WIRE_M_SET_SESSION_EVENTS, &req.base, NULL, NULL, NULL);
}

zx_status_t iob_conn_set_event_callback(iob_conn_t* conn, iob_conn_event_fn fn, void* ctx) {
    pthread_mutex_lock(&conn->ev_lock);
    conn->event_fn = fn;
    conn->event_ctx = ctx;
    pthread_mutex_unlock(&conn->ev_lock);
    if (fn == NULL) {
        return ZX_OK;
    }
    pthread_mutex_lock(&conn->start_lock);
    bool started = conn->reader_started, ended = conn->status_seen;
    pthread_mutex_unlock(&conn->start_lock);
    if (started) {
        return ZX_OK;
    }
    if (ended) {
        return ZX_ERR_PEER_CLOSED; /* the session has ended: no events will come */
    }
    /*
     * Events on first, so none raised after this returns is missed. Not under start_lock:
     * a failing call looks at the stream's status, which takes it.
     */
    zx_status_t st = iob_conn_set_session_events(conn, true);
    if (st != ZX_OK) {
        return st;
    }
    pthread_mutex_lock(&conn->start_lock);
    if (conn->status_seen) {
        st = ZX_ERR_PEER_CLOSED;
    } else if (!conn->reader_started) {
        if (pthread_create(&conn->reader, NULL, iob__conn_reader, conn) != 0) {
            st = ZX_ERR_NO_RESOURCES;
        } else {
            conn->reader_started = true;
        }
    }
    pthread_mutex_unlock(&conn->start_lock);
    return st;
}

/* ---- Operations ---- */

zx_status_t iob_conn_iob_create(iob_conn_t* conn, uint64_t options, const zx_iob_region_t* regions,
                                size_t region_count, zx_handle_t* ep0_out, zx_handle_t* ep1_out) {
    /* Zircon's order (A.3, L): NULL outs first, then what the server checks. */
    if (ep0_out == NULL || ep1_out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (regions == NULL && region_count > 0 && region_count <= ZX_IOB_MAX_REGIONS) {
        return ZX_ERR_INVALID_ARGS;
    }
    size_t n = region_count;
    Iob__V1__Region pr[ZX_IOB_MAX_REGIONS];
    Iob__V1__Region* pp[ZX_IOB_MAX_REGIONS + 1];
    Iob__V1__CreateIobRequest req = IOB__V1__CREATE_IOB_REQUEST__INIT;
    req.options = options;
    if (n > ZX_IOB_MAX_REGIONS) {
        /* Send 65 empty descriptors: the server answers OUT_OF_RANGE (or INVALID_ARGS for
         * options) exactly as the core orders its checks, without the caller's array. */
        static Iob__V1__Region empty = IOB__V1__REGION__INIT;
        for (size_t i = 0; i <= ZX_IOB_MAX_REGIONS; i++) {
            pp[i] = &empty;
        }
        req.n_regions = ZX_IOB_MAX_REGIONS + 1;
    } else {
        for (size_t i = 0; i < n; i++) {
            iob__v1__region__init(&pr[i]);
            iob_wire_region_to_pb(&regions[i], &pr[i]);
            pp[i] = &pr[i];
        }
        req.n_regions = n;
    }
    req.regions = pp;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_CREATE_IOB, &req.base,
                                     &iob__v1__create_iob_reply__descriptor, &rep, NULL);
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
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_GET_INFO, &req.base,
                                     &iob__v1__get_info_reply__descriptor, &rep, &res);
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
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_GET_NAME, &req.base,
                                     &iob__v1__name_reply__descriptor, &rep, NULL);
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
    return iob__conn_unary(conn, IOB_WIRE_M_SET_NAME, &req.base, NULL, NULL, NULL);
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
    return iob__conn_unary(conn, IOB_WIRE_M_CLOSE_HANDLES, &req.base, NULL, NULL, NULL);
}

zx_status_t iob_conn_handle_close(iob_conn_t* conn, zx_handle_t handle) {
    Iob__V1__HandleRequest req = IOB__V1__HANDLE_REQUEST__INIT;
    req.handle = handle;
    return iob__conn_unary(conn, IOB_WIRE_M_CLOSE_HANDLE, &req.base, NULL, NULL, NULL);
}

static zx_status_t iob__conn_rights(iob_conn_t* conn, iob_wire_method_t m, zx_handle_t handle,
                                    zx_rights_t rights, zx_handle_t* out) {
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__HandleRightsRequest req = IOB__V1__HANDLE_RIGHTS_REQUEST__INIT;
    req.handle = handle;
    req.rights = rights;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, m, &req.base, &iob__v1__handle_reply__descriptor, &rep,
                                     NULL);
    if (st == ZX_OK) {
        *out = ((Iob__V1__HandleReply*)rep)->handle;
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
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
    return iob__conn_unary(conn, m, &req.base, NULL, NULL, NULL);
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
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_GET_SIGNALS, &req.base,
                                     &iob__v1__signals_reply__descriptor, &rep, NULL);
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
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_EXPORT_HANDLE, &req.base,
                                     &iob__v1__export_reply__descriptor, &rep, NULL);
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
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_IMPORT_HANDLE, &req.base,
                                     &iob__v1__handle_reply__descriptor, &rep, NULL);
    if (st == ZX_OK) {
        *out = ((Iob__V1__HandleReply*)rep)->handle;
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
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
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_CREATE_SHARED_REGION, &req.base,
                                     &iob__v1__handle_reply__descriptor, &rep, NULL);
    if (st == ZX_OK) {
        *out = ((Iob__V1__HandleReply*)rep)->handle;
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return st;
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
    return iob__conn_unary(conn, IOB_WIRE_M_IOB_WRITEV, &req.base, NULL, NULL, NULL);
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
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_ALLOCATE_ID, &req.base,
                                     &iob__v1__allocate_id_reply__descriptor, &rep, NULL);
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
    grpc_completion_queue* cq = iob__conn_cq_get(conn);
    grpc_call* call = iob__conn_call(conn, IOB_WIRE_M_WRITE_REGION, cq,
                                     iob__conn_deadline_ms(call_ms > INT32_MAX ? INT32_MAX
                                                                               : (int)call_ms));
    grpc_metadata_array im, tm;
    grpc_metadata_array_init(&im);
    grpc_metadata_array_init(&tm);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_byte_buffer* recv = NULL;
    int t_start, t_status, t_send, t_end;
    iob__conn_result_t res;
    memset(&res, 0, sizeof res);
    grpc_op op[3];
    memset(op, 0, sizeof op);
    op[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    op[0].data.send_initial_metadata.count = conn->md_count;
    op[0].data.send_initial_metadata.metadata = conn->md;
    grpc_op sop;
    memset(&sop, 0, sizeof sop);
    sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    sop.data.recv_status_on_client.trailing_metadata = &tm;
    sop.data.recv_status_on_client.status = &code;
    sop.data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, op, 1, &t_start, NULL) != GRPC_CALL_OK ||
        grpc_call_start_batch(call, &sop, 1, &t_status, NULL) != GRPC_CALL_OK) {
        res.status = ZX_ERR_IO; /* cannot happen with a fresh call */
        grpc_call_cancel(call, NULL);
        grpc_call_unref(call);
        iob__conn_cq_destroy(cq); /* t_start may still be pending: not reusable */
        grpc_metadata_array_destroy(&im);
        grpc_metadata_array_destroy(&tm);
        return res.status;
    }
    iob__conn_pluck(cq, &t_start);
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
        bool ok = grpc_call_start_batch(call, op, 1, &t_send, NULL) == GRPC_CALL_OK &&
                  iob__conn_pluck(cq, &t_send).success;
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
    op[1].data.recv_initial_metadata.recv_initial_metadata = &im;
    op[2].op = GRPC_OP_RECV_MESSAGE;
    op[2].data.recv_message.recv_message = &recv;
    if (grpc_call_start_batch(call, op, 3, &t_end, NULL) == GRPC_CALL_OK) {
        iob__conn_pluck(cq, &t_end);
    }
    iob__conn_pluck(cq, &t_status);
    iob__conn_result(conn, code, details, &tm, &res);
    if (res.status == ZX_OK && sent != len) {
        res.status = ZX_ERR_IO;
    }
    if (recv != NULL) {
        grpc_byte_buffer_destroy(recv);
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&im);
    grpc_metadata_array_destroy(&tm);
    grpc_call_unref(call);
    iob__conn_cq_put(conn, cq);
    return res.status;
}

zx_status_t iob_conn_server_info(iob_conn_t* conn, iob_conn_server_info_t* out) {
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    Iob__V1__ServerInfoRequest req = IOB__V1__SERVER_INFO_REQUEST__INIT;
    ProtobufCMessage* rep = NULL;
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_SERVER_INFO, &req.base,
                                     &iob__v1__server_info_reply__descriptor, &rep, NULL);
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
    zx_status_t st = iob__conn_unary(conn, IOB_WIRE_M_LIST_IOBS, &req.base,
                                     &iob__v1__list_iobs_reply__descriptor, &rep, NULL);
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
