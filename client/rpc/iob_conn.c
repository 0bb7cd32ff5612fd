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
 *
 * This file: the connection, its calls and the session stream; one function per operation
 * is in iob_conn_ops.c.
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

#include "client/rpc/iob_conn_internal.h"
#include "proto/wire.h"

/* Tags of the session stream's batches. */
enum { IOB__CONN_TAG_START = 1, IOB__CONN_TAG_STATUS, IOB__CONN_TAG_RECV };
static char iob__conn_tags[4];
#define IOB__CONN_TAG(n) ((void*)&iob__conn_tags[n])

gpr_timespec iob__conn_deadline_ms(int ms) {
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

void iob__conn_result(iob_conn_t* conn, grpc_status_code code, grpc_slice details,
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

grpc_call* iob__conn_call(iob_conn_t* conn, iob_wire_method_t m, grpc_completion_queue* cq,
                                 gpr_timespec deadline) {
    return grpc_channel_create_registered_call(conn->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               conn->methods[m], deadline, NULL);
}

void iob__conn_cq_destroy(grpc_completion_queue* cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

/* A pluck CQ with nothing pending, for one call. */
grpc_completion_queue* iob__conn_cq_get(iob_conn_t* conn) {
    grpc_completion_queue* cq = NULL;
    pthread_mutex_lock(&conn->cq_lock);
    if (conn->cq_free_count > 0) {
        cq = conn->cq_free[--conn->cq_free_count];
    }
    pthread_mutex_unlock(&conn->cq_lock);
    return cq != NULL ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

/* Back to the pool: only when every batch started on it has been plucked. */
void iob__conn_cq_put(iob_conn_t* conn, grpc_completion_queue* cq) {
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

grpc_event iob__conn_pluck(grpc_completion_queue* cq, void* tag) {
    return grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

void iob__conn_call_begin(iob_conn_t* conn, iob_wire_method_t m, int64_t timeout_ms,
                          iob__conn_call_state_t* c) {
    memset(c, 0, sizeof *c);
    gpr_timespec deadline =
        timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                       : iob__conn_deadline_ms(timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms);
    c->cq = iob__conn_cq_get(conn);
    c->call = iob__conn_call(conn, m, c->cq, deadline);
    grpc_metadata_array_init(&c->initial);
    grpc_metadata_array_init(&c->trailing);
    c->code = GRPC_STATUS_UNKNOWN;
    c->details = grpc_empty_slice();
}

void iob__conn_metadata_op(iob_conn_t* conn, grpc_op* op) {
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = conn->md_count;
    op->data.send_initial_metadata.metadata = conn->md;
}

void iob__conn_status_op(iob__conn_call_state_t* c, grpc_op* op) {
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &c->trailing;
    op->data.recv_status_on_client.status = &c->code;
    op->data.recv_status_on_client.status_details = &c->details;
}

zx_status_t iob__conn_call_end(iob_conn_t* conn, iob__conn_call_state_t* c,
                               iob__conn_result_t* res_out) {
    grpc_slice_unref(c->details);
    grpc_metadata_array_destroy(&c->initial);
    grpc_metadata_array_destroy(&c->trailing);
    grpc_call_unref(c->call);
    iob__conn_cq_put(conn, c->cq);
    if (res_out != NULL) {
        *res_out = c->res;
    }
    return c->res.status;
}

/*
 * The first four ops of every call this side makes: the session's metadata and the one
 * request out, then the server's initial metadata in. ops: zeroed by the caller.
 */
static void iob__conn_request_ops(iob_conn_t* conn, grpc_op ops[4], grpc_byte_buffer* send,
                                  grpc_metadata_array* initial) {
    iob__conn_metadata_op(conn, &ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = initial;
}

zx_status_t iob__conn_unary(iob_conn_t* conn, iob_wire_method_t m,
                                   const ProtobufCMessage* req, ProtobufCMessage** reply_out,
                                   iob__conn_result_t* res_out) {
    iob__conn_call_state_t c;
    iob__conn_call_begin(conn, m, conn->timeout_ms, &c);
    grpc_byte_buffer* send = iob_wire_pack(req);
    grpc_byte_buffer* recv = NULL;
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    iob__conn_request_ops(conn, ops, send, &c.initial);
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    iob__conn_status_op(&c, &ops[5]);
    ProtobufCMessage* reply = NULL;
    if (grpc_call_start_batch(c.call, ops, 6, c.call, NULL) != GRPC_CALL_OK) {
        c.res.status = ZX_ERR_IO;
    } else {
        iob__conn_pluck(c.cq, c.call);
        iob__conn_result(conn, c.code, c.details, &c.trailing, &c.res);
        if (c.res.status == ZX_OK && reply_out != NULL) {
            reply = iob_wire_unpack(iob_wire_method_reply(m), recv);
            if (reply == NULL) {
                c.res.status = ZX_ERR_IO; /* the server answered with something else */
            }
        }
    }
    if (recv != NULL) {
        grpc_byte_buffer_destroy(recv);
    }
    grpc_byte_buffer_destroy(send);
    if (reply_out != NULL) {
        *reply_out = reply;
    } else if (reply != NULL) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return iob__conn_call_end(conn, &c, res_out);
}

zx_status_t iob__conn_server_stream(iob_conn_t* conn, iob_wire_method_t m,
                                           const ProtobufCMessage* req, int64_t call_timeout_ms,
                                           iob__conn_msg_fn on_msg, void* ctx,
                                           iob__conn_result_t* res_out) {
    iob__conn_call_state_t c;
    iob__conn_call_begin(conn, m, call_timeout_ms, &c);
    grpc_byte_buffer* send = iob_wire_pack(req);
    int t_start, t_status, t_recv;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    iob__conn_request_ops(conn, ops, send, &c.initial);
    grpc_op sop;
    memset(&sop, 0, sizeof sop);
    iob__conn_status_op(&c, &sop);
    if (grpc_call_start_batch(c.call, ops, 4, &t_start, NULL) != GRPC_CALL_OK) {
        c.res.status = ZX_ERR_IO;
        goto out;
    }
    if (grpc_call_start_batch(c.call, &sop, 1, &t_status, NULL) != GRPC_CALL_OK) {
        iob__conn_pluck(c.cq, &t_start);
        c.res.status = ZX_ERR_IO;
        goto out;
    }
    iob__conn_pluck(c.cq, &t_start);
    for (;;) {
        grpc_byte_buffer* msg = NULL;
        grpc_op rop;
        memset(&rop, 0, sizeof rop);
        rop.op = GRPC_OP_RECV_MESSAGE;
        rop.data.recv_message.recv_message = &msg;
        if (grpc_call_start_batch(c.call, &rop, 1, &t_recv, NULL) != GRPC_CALL_OK) {
            break;
        }
        grpc_event ev = iob__conn_pluck(c.cq, &t_recv);
        if (!ev.success || msg == NULL) {
            break;
        }
        bool more = on_msg(ctx, msg);
        grpc_byte_buffer_destroy(msg);
        if (!more) {
            grpc_call_cancel(c.call, NULL);
            break;
        }
    }
    iob__conn_pluck(c.cq, &t_status);
    iob__conn_result(conn, c.code, c.details, &c.trailing, &c.res);
out:
    grpc_byte_buffer_destroy(send);
    return iob__conn_call_end(conn, &c, res_out);
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
    return iob__conn_unary(conn, IOB_WIRE_M_SET_SESSION_EVENTS, &req.base, NULL, NULL);
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
