/* SPDX-License-Identifier: MIT */
/*
 * What iob_conn.c (the connection, its calls, the session stream) shares with
 * iob_conn_ops.c (one function per operation).
 */
#ifndef IOB_CLIENT_RPC_IOB_CONN_INTERNAL_H_
#define IOB_CLIENT_RPC_IOB_CONN_INTERNAL_H_

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "client/rpc/iob_conn.h"
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


/* Trailers a call may carry besides its status. */
typedef struct iob__conn_result {
    zx_status_t status;
    bool has_actual, has_avail, has_observed;
    uint64_t actual, avail, observed;
} iob__conn_result_t;

gpr_timespec iob__conn_deadline_ms(int ms);
/* A pluck CQ for one call, from the pool (or new), and its return. */
grpc_completion_queue* iob__conn_cq_get(iob_conn_t* conn);
void iob__conn_cq_put(iob_conn_t* conn, grpc_completion_queue* cq);
void iob__conn_cq_destroy(grpc_completion_queue* cq);
grpc_event iob__conn_pluck(grpc_completion_queue* cq, void* tag);
grpc_call* iob__conn_call(iob_conn_t* conn, iob_wire_method_t m, grpc_completion_queue* cq,
                          gpr_timespec deadline);
/* The call's status (the exact one from "iob-status", else the transport's) and trailers. */
void iob__conn_result(iob_conn_t* conn, grpc_status_code code, grpc_slice details,
                      const grpc_metadata_array* trailing, iob__conn_result_t* r);
/*
 * One call this side makes, from its start to its status: the pluck CQ it runs on, the
 * server's initial and trailing metadata, and its status once the status op completed.
 */
typedef struct iob__conn_call_state {
    grpc_completion_queue* cq;
    grpc_call* call;
    grpc_metadata_array initial, trailing;
    grpc_status_code code;
    grpc_slice details;
    iob__conn_result_t res;
} iob__conn_call_state_t;

/* Starts nothing yet: a call of method m whose deadline is timeout_ms away (< 0: none). */
void iob__conn_call_begin(iob_conn_t* conn, iob_wire_method_t m, int64_t timeout_ms,
                          iob__conn_call_state_t* c);
/* The RECV_STATUS_ON_CLIENT op, into c (op: zeroed by the caller). */
void iob__conn_status_op(iob__conn_call_state_t* c, grpc_op* op);
/* The SEND_INITIAL_METADATA op with the session's metadata (op: zeroed by the caller). */
void iob__conn_metadata_op(iob_conn_t* conn, grpc_op* op);
/*
 * Frees the call and gives back its CQ (every batch started on it has been plucked); *res_out
 * (optional) gets c->res. c->res.status.
 */
zx_status_t iob__conn_call_end(iob_conn_t* conn, iob__conn_call_state_t* c,
                               iob__conn_result_t* res_out);
/*
 * One unary call of method m; *reply_out (when asked for; the caller frees it with
 * protobuf_c_message_free_unpacked) is the reply decoded as the method table types it.
 */
zx_status_t iob__conn_unary(iob_conn_t* conn, iob_wire_method_t m, const ProtobufCMessage* req,
                            ProtobufCMessage** reply_out, iob__conn_result_t* res_out);
/*
 * A server-streaming call: on_msg runs for every message (return false to cancel).
 * call_timeout_ms < 0: no deadline.
 */
typedef bool (*iob__conn_msg_fn)(void* ctx, grpc_byte_buffer* msg);
zx_status_t iob__conn_server_stream(iob_conn_t* conn, iob_wire_method_t m,
                                    const ProtobufCMessage* req, int64_t call_timeout_ms,
                                    iob__conn_msg_fn on_msg, void* ctx,
                                    iob__conn_result_t* res_out);

#endif /* IOB_CLIENT_RPC_IOB_CONN_INTERNAL_H_ */
