/* SPDX-License-Identifier: MIT */
/*
 * Call contexts of iobd's gRPC service: one per call, with a tag for each independent chain
 * of batches (the new call, the main chain of sends or receives, the close chain of
 * streams, the final status batch), and the batches that send, receive and finish.
 * `refs` counts batches in flight, plus one while the call waits for or runs on a slow
 * thread (rpc_server.c); whoever drops the last reference frees the context. Every field
 * that another thread may touch is guarded by srv->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <zircon/status.h>
#include <zircon/syscalls/object.h>

#include "client/status_text.h"
#include "server/core/iob_metrics.h"
#include "server/rpc/log.h"
#include "server/rpc/rpc_internal.h"

/* ---- Call contexts ---- */

const char* iobd__mname(const iobd_call_t* c) {
    const char* p = iob_wire_method_path((iob_wire_method_t)c->method);
    return p != NULL ? p : "(unknown method)";
}

iobd_call_t* iobd__call_new(iobd_rpc_t* srv, unsigned method) {
    iobd_call_t* c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->srv = srv;
    c->method = method;
    c->t_new = (iobd_tag_t){c, IOBD_TAG_NEW};
    c->t_main = (iobd_tag_t){c, IOBD_TAG_MAIN};
    c->t_close = (iobd_tag_t){c, IOBD_TAG_CLOSE};
    c->t_final = (iobd_tag_t){c, IOBD_TAG_FINAL};
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    atomic_fetch_add(&srv->live_calls, 1);
    return c;
}

void iobd__session_free(iobd_session_t* s) {
    if (s->pidfd >= 0) {
        close(s->pidfd);
    }
    free(s->events);
    free(s->peer);
    free(s);
}

void iobd__call_free(iobd_call_t* c) {
    iobd_rpc_t* srv = c->srv;
    if (c->out != NULL) {
        grpc_byte_buffer_destroy(c->out);
    }
    if (c->final_out != NULL) {
        grpc_byte_buffer_destroy(c->final_out);
    }
    if (c->recv != NULL) {
        grpc_byte_buffer_destroy(c->recv);
    }
    if (c->payload != NULL) {
        grpc_byte_buffer_destroy(c->payload);
    }
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    if (c->session != NULL) {
        /* The session ended (close chain done) before its stream's last batch. */
        iobd__session_free(c->session);
    }
    if (c->call != NULL) {
        grpc_call_unref(c->call);
    }
    free(c->peer);
    free(c);
    atomic_fetch_sub(&srv->live_calls, 1);
}

static bool iobd__start_batch_locked(iobd_call_t* c, const grpc_op* ops, size_t n,
                                     iobd_tag_t* tag) {
    c->refs++;
    grpc_call_error err = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (err != GRPC_CALL_OK) {
        /* No completion will ever come for this tag. */
        c->refs--;
        c->dead = true;
        IOBD_WARN("start_batch on %s: %s", iobd__mname(c), grpc_call_error_to_string(err));
        return false;
    }
    return true;
}

void iobd__call_add_trailer(iobd_call_t* c, const char* key, uint64_t value) {
    /* Slot 0 is iob-status, added by the final batch. */
    size_t i = c->trailing_count == 0 ? 1 : c->trailing_count;
    if (i >= sizeof c->trailing / sizeof c->trailing[0]) {
        return;
    }
    snprintf(c->md_val[i], sizeof c->md_val[i], "%" PRIu64, value);
    c->trailing[i].key = grpc_slice_from_static_string(key);
    c->trailing[i].value = grpc_slice_from_static_buffer(c->md_val[i], strlen(c->md_val[i]));
    c->trailing_count = i + 1;
}

void iobd__finish_locked(iobd_call_t* c, zx_status_t status, grpc_status_code code,
                         const ProtobufCMessage* reply, const char* detail) {
    if (c->dead || c->finishing) {
        return;
    }
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = true;
    }
    if (reply != NULL && !c->sending) {
        c->final_out = iob_wire_pack(reply);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->final_out;
    }
    if (!c->close_started) {
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
        c->close_started = true;
    }
    snprintf(c->md_val[0], sizeof c->md_val[0], "%d", (int)status);
    c->trailing[0].key = grpc_slice_from_static_string(IOB_WIRE_MD_STATUS);
    c->trailing[0].value = grpc_slice_from_static_buffer(c->md_val[0], strlen(c->md_val[0]));
    if (c->trailing_count == 0) {
        c->trailing_count = 1;
    }
    char msg[512];
    if (status == ZX_OK) {
        msg[0] = '\0';
    } else {
        snprintf(msg, sizeof msg, "%s: %s", zx_status_get_string(status),
                 detail != NULL && detail[0] != '\0' ? detail : iob_status_message(status));
    }
    grpc_slice details = grpc_slice_from_copied_string(msg);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n].data.send_status_from_server.status_details = status == ZX_OK ? NULL : &details;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->trailing_count;
    ops[n++].data.send_status_from_server.trailing_metadata = c->trailing;
    c->finishing = true;
    iob_metrics_call(IOB_METRICS_RPC, c->method, status, (uint64_t)(iobd__now_ns() - c->start_ns));
    iobd__start_batch_locked(c, ops, n, &c->t_final);
    /* Not retained past start_batch. */
    grpc_slice_unref(details);
    if (status != ZX_OK) {
        IOBD_DEBUG("%s -> %s (%s)", iobd__mname(c), zx_status_get_string(status), msg);
    }
}

void iobd__call_finish_code(iobd_call_t* c, zx_status_t status, grpc_status_code code,
                            const ProtobufCMessage* reply, const char* detail) {
    pthread_mutex_lock(&c->srv->lock);
    iobd__finish_locked(c, status, code, reply, detail);
    pthread_mutex_unlock(&c->srv->lock);
}

void iobd__call_finish(iobd_call_t* c, zx_status_t status, const ProtobufCMessage* reply,
                       const char* detail) {
    iobd__call_finish_code(c, status, iob_wire_grpc_code(status), reply, detail);
}

bool iobd__send_locked(iobd_call_t* c, const ProtobufCMessage* msg) {
    if (c->dead || c->finishing || c->sending) {
        return false;
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = true;
    }
    c->out = iob_wire_pack(msg);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->out;
    c->sending = true;
    if (!iobd__start_batch_locked(c, ops, n, &c->t_main)) {
        grpc_byte_buffer_destroy(c->out);
        c->out = NULL;
        c->sending = false;
        return false;
    }
    return true;
}

bool iobd__call_send(iobd_call_t* c, const ProtobufCMessage* msg) {
    pthread_mutex_lock(&c->srv->lock);
    bool ok = iobd__send_locked(c, msg);
    pthread_mutex_unlock(&c->srv->lock);
    return ok;
}

bool iobd__close_chain_locked(iobd_call_t* c) {
    if (c->close_started) {
        return true;
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    c->close_started = true;
    return iobd__start_batch_locked(c, &op, 1, &c->t_close);
}

bool iobd__call_start_close_chain(iobd_call_t* c) {
    pthread_mutex_lock(&c->srv->lock);
    bool ok = iobd__close_chain_locked(c);
    pthread_mutex_unlock(&c->srv->lock);
    return ok;
}

bool iobd__call_recv(iobd_call_t* c) {
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    pthread_mutex_lock(&c->srv->lock);
    if (!c->initial_md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->initial_md_sent = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->recv;
    bool ok = iobd__start_batch_locked(c, ops, n, &c->t_main);
    pthread_mutex_unlock(&c->srv->lock);
    return ok;
}
