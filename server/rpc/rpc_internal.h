/* SPDX-License-Identifier: MIT */
/*
 * Internals of iobd's gRPC service, shared by rpc_server.c (calls, sessions, events),
 * rpc_handlers.c (one function per method) and rpc_listen.c (Unix accept, TCP ports).
 *
 * Locking: `srv->lock` guards the sessions' transport state, event queues, waiters
 * and the state of streaming calls. Lock order is core -> srv->lock (the core's observer
 * runs under the core's mutex and takes srv->lock), so no code calls the core while
 * holding srv->lock. grpc_call_start_batch may be called with srv->lock held: gRPC never
 * calls back into us synchronously (completions arrive on the CQ thread).
 */
#ifndef IOB_SERVER_RPC_RPC_INTERNAL_H_
#define IOB_SERVER_RPC_RPC_INTERNAL_H_

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <grpc/grpc.h>
#include <uv.h>

#include "proto/wire.h"
#include "server/rpc/rpc.h"

#define IOBD_METHOD_UNKNOWN IOB_WIRE_M_COUNT

typedef struct iobd_call iobd_call_t;
typedef struct iobd_session iobd_session_t;

typedef enum { IOBD_TAG_NEW, IOBD_TAG_MAIN, IOBD_TAG_CLOSE, IOBD_TAG_FINAL } iobd_tag_kind_t;

typedef struct iobd_tag {
    iobd_call_t* call; /* NULL for the server's shutdown tag */
    iobd_tag_kind_t kind;
} iobd_tag_t;

typedef struct iobd_event {
    zx_handle_t handle;
    zx_signals_t signals;
} iobd_event_t;

/*
 * The transport side of a session: the core owns the session itself (its secret, its
 * owner's credentials, whether the map broker attached it); this is the connection that
 * opened it, its event stream and the watch of its process.
 */
struct iobd_session {
    uint64_t id; /* the core's session id, also the wire id */
    char* peer;  /* gRPC peer of the connection that opened it */
    /* Local sessions: the peer process (SO_PEERCRED) and its pidfd, watched once the
     * session ends if the broker attached it; else 0 and -1. */
    pid_t pid;
    int pidfd;
    bool closed;
    bool uid_counted; /* counted in srv->uid_sessions (max_sessions_per_uid) as uid */
    uid_t uid;
    uint32_t waits;   /* Wait calls registered for it (max_waits_per_session) */
    /* OpenSessionRequest.no_events / SetSessionEvents: queue no events for the stream. */
    bool events_off;
    iobd_call_t* stream; /* the OpenSession call */
    iobd_session_t* next_in_bucket;
    /* Event queue (events not yet sent on the stream). */
    iobd_event_t* events;
    size_t event_head, event_count, event_cap;
    bool dirty; /* on srv->dirty_sessions */
    iobd_session_t* next_dirty;
    uint64_t events_dropped;
};

/*
 * One exited-or-not client process whose ended sessions may still have mapping records:
 * one pidfd per process, however many of its sessions ended, so session churn costs no fd.
 */
typedef struct iobd_pidwatch {
    uv_poll_t poll;
    iobd_rpc_t* srv;
    pid_t pid;
    int pidfd;
    bool started; /* uv_poll running (loop thread) */
    uint64_t* session_ids;
    size_t session_count, session_cap;
    struct iobd_pidwatch* next;
} iobd_pidwatch_t;

/* Open sessions of one local uid (max_sessions_per_uid). */
typedef struct iobd_uid_count {
    uid_t uid;
    uint32_t sessions;
} iobd_uid_count_t;

typedef struct iobd_unix_listener {
    uv_pipe_t pipe;
    iobd_rpc_t* srv;
    char* path;
    bool bound;
} iobd_unix_listener_t;

typedef struct iobd_cred {
    bool valid;
    pid_t pid;
    uid_t uid;
    gid_t gid;
} iobd_cred_t;

#define IOBD_SESSION_BUCKETS 256u
#define IOBD_MAX_QUEUED_EVENTS 65536u

/* Threads for the calls whose cost a client chooses (see iobd_rpc_t.slow_threads). */
#define IOBD_SLOW_THREADS 4
/* slow_busy values that name no client (clients' keys are uids >= 0 or keys <= -4). */
#define IOBD_SLOW_UNCLAIMED (-1)
#define IOBD_SLOW_IDLE (-2)
#define IOBD_SLOW_ENDED (-3)

struct iobd_rpc {
    iobd_rpc_config_t config; /* strings and arrays below are our own copies */
    char** listen;
    uid_t* allow_uids;
    gid_t* allow_gids;
    char* token;
    char* broker_path;
    char* version;
    uv_loop_t* loop;
    iob_core_t* core;

    grpc_server* server;
    grpc_completion_queue* cq;
    void* methods[IOB_WIRE_M_COUNT];
    pthread_t cq_thread;
    bool cq_thread_started;
    /*
     * Calls whose cost a client chooses (creating or freeing region memory: fallocate of a
     * region it sized, the teardown of one it closes) run on these threads, so that they
     * never hold up the CQ thread and with it every other client's calls. Calls of one
     * client (an ordinary uid; a connection of a trusted one) run one at a time, in order, so no
     * client holds more than one of these threads however many calls it sends at once.
     */
    pthread_t slow_threads[IOBD_SLOW_THREADS];
    int64_t slow_busy[IOBD_SLOW_THREADS]; /* the client each thread serves, or IOBD_SLOW_* */
    size_t slow_thread_count;
    pthread_cond_t slow_cond;
    iobd_call_t* slow_head;
    iobd_call_t* slow_tail;
    bool slow_stop;
    iobd_tag_t shutdown_tag;
    bool shutdown_tag_seen;  /* CQ thread only */
    bool cq_shutdown_called; /* CQ thread only */
    atomic_bool shutting_down;
    atomic_long live_calls; /* call contexts allocated, armed requests included */
    atomic_bool cq_done;
    void (*done_cb)(void*);
    void* done_ctx;

    uv_async_t wake;
    bool wake_alive;
    iobd_unix_listener_t* unix_listeners;
    size_t unix_listener_count;

    pthread_mutex_t lock;
    iobd_session_t* sessions[IOBD_SESSION_BUCKETS];
    uint64_t session_count;
    iobd_session_t* dirty_sessions;
    iobd_call_t* waiters; /* Wait calls in progress */
    iobd_cred_t* creds;   /* indexed by the fd handed to gRPC ("fd:N" peers) */
    size_t creds_cap;
    iobd_pidwatch_t* watches; /* started by the loop thread; list guarded by srv->lock */
    uid_t* operator_uids;
    gid_t* operator_gids;
    iobd_uid_count_t* uid_sessions; /* unordered; an entry leaves when its count is 0 */
    size_t uid_session_len, uid_session_cap;
};

/* Per-method state of a call. */
typedef struct iobd_wait_state {
    zx_handle_t handle;
    zx_signals_t want;
    bool watch;
    int64_t deadline_ns; /* CLOCK_MONOTONIC; INT64_MAX: none */
    zx_signals_t observed;
    zx_signals_t last_sent;
    bool sent_any;
    bool handle_closed;
    iobd_call_t* next_waiter;
    iobd_call_t* prev_waiter;
    bool registered;
    bool dirty;
    uint64_t events_seen;
    /*
     * ZX_IOB_SHARED_REGION_UPDATED was strobed on the waited object while this wait was
     * armed (only set when `want` holds it): reported once, on top of `observed`.
     */
    bool strobed;
} iobd_wait_state_t;

typedef struct iobd_read_state {
    zx_handle_t handle;
    uint32_t region_index;
    uint64_t offset;    /* next chunk's region offset */
    uint64_t remaining; /* bytes still to send */
} iobd_read_state_t;

typedef struct iobd_write_state {
    bool started;
    zx_handle_t handle;
    uint32_t region_index;
    uint64_t offset;
    uint64_t written;
} iobd_write_state_t;

struct iobd_call {
    iobd_rpc_t* srv;
    unsigned method;
    int64_t start_ns; /* arrival, for the latency metrics */
    grpc_call* call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer* payload;
    grpc_call_details details;
    iobd_tag_t t_new, t_main, t_close, t_final;
    int refs; /* outstanding batches */
    int cancelled;
    bool initial_md_sent;
    bool close_started;
    bool sending; /* a SEND_MESSAGE batch is in flight */
    bool finishing;
    bool dead;                   /* the call ended or failed: start nothing more */
    grpc_byte_buffer* out;       /* the SEND_MESSAGE in flight */
    grpc_byte_buffer* final_out; /* the final batch's message */
    grpc_byte_buffer* recv;
    char* peer;
    iobd_call_t* next_slow;  /* srv->slow_head's queue */
    int64_t slow_client;     /* whose turn it takes there (iobd__slow_client_of) */
    uint64_t session_id;     /* the session the call acts for; 0: none */
    iobd_session_t* session; /* OpenSession only */
    /* Trailing metadata of the final batch (values point into md_val). */
    grpc_metadata trailing[4];
    size_t trailing_count;
    char md_val[4][24];
    union {
        iobd_wait_state_t wait;
        iobd_read_state_t read;
        iobd_write_state_t write;
    } u;
};

/* ---- Shared helpers ---- */

static inline int64_t iobd__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* buckets: a power of two. */
static inline size_t iobd__hash(uint64_t v, size_t buckets) {
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    return (size_t)(v & (buckets - 1));
}

/* ---- rpc_server.c ---- */

/* Wakes the loop so it flushes events raised outside the CQ thread (broker, timers). */
void iobd__kick(iobd_rpc_t* srv);

/* ---- rpc_call.c ---- */

/* "/iob.v1.Iob/CreateIob", for logs. */
const char* iobd__mname(const iobd_call_t* c);
/* A context for the next call of `method` (IOBD_METHOD_UNKNOWN: any other path). */
iobd_call_t* iobd__call_new(iobd_rpc_t* srv, unsigned method);
void iobd__call_free(iobd_call_t* c);
/* The *_locked forms of the functions below, for callers holding srv->lock. */
void iobd__finish_locked(iobd_call_t* c, zx_status_t status, grpc_status_code code,
                         const ProtobufCMessage* reply, const char* detail);
bool iobd__send_locked(iobd_call_t* c, const ProtobufCMessage* msg);
bool iobd__close_chain_locked(iobd_call_t* c);

/* Ends the call: final batch with the status (and reply, when given). */
void iobd__call_finish(iobd_call_t* c, zx_status_t status, const ProtobufCMessage* reply,
                       const char* detail);
/* Same, with an explicit gRPC code (authentication, unknown methods, limits). */
void iobd__call_finish_code(iobd_call_t* c, zx_status_t status, grpc_status_code code,
                            const ProtobufCMessage* reply, const char* detail);
/* Adds "key: value" to the final batch's trailing metadata (up to 3). */
void iobd__call_add_trailer(iobd_call_t* c, const char* key, uint64_t value);
/* Starts {SEND_INITIAL_METADATA?, SEND_MESSAGE} (streams); false if the call is dead. */
bool iobd__call_send(iobd_call_t* c, const ProtobufCMessage* msg);
/* Starts the {RECV_CLOSE_ON_SERVER} chain of a server-streaming call. */
bool iobd__call_start_close_chain(iobd_call_t* c);

/* ---- rpc_session.c ---- */

/*
 * Resolves the call's "iob-session" metadata to the session id, checking the secret and
 * that the session was opened over this call's connection. ZX_ERR_INVALID_ARGS (missing or
 * malformed) or ZX_ERR_BAD_HANDLE (unknown, ended, wrong secret, other connection).
 */
zx_status_t iobd__call_session(iobd_call_t* c, uint64_t* session_out);
/* SetSessionEvents: ZX_ERR_BAD_HANDLE when the session has ended. */
zx_status_t iobd__session_set_events(iobd_rpc_t* srv, uint64_t session_id, bool enabled);
/* OpenSession: the session's stream of events. */
void iobd__open_session(iobd_call_t* c);
/* The session's stream ended: its handles close; its mappings go now or at process exit. */
void iobd__session_end(iobd_rpc_t* srv, iobd_session_t* s);
void iobd__session_free(iobd_session_t* s);
iobd_session_t* iobd__session_find_locked(iobd_rpc_t* srv, uint64_t id);
/* Loop thread: starts the pidfd watches added since, and closes them all at shutdown. */
void iobd__start_watches(iobd_rpc_t* srv);
void iobd__watches_close(iobd_rpc_t* srv);
void iobd__sessions_free_all(iobd_rpc_t* srv);
/* A uid's open sessions (0 for uids the budget does not count) and handles. */
void iobd__uid_figures(iobd_rpc_t* srv, uid_t uid, uint64_t* sessions, uint64_t* handles);

/* ---- rpc_events.c ---- */

/* Points the core's observer at the session streams and waiters. */
void iobd__observer_install(iobd_rpc_t* srv);
/* Starts the next send of a session's queued events, if none is in flight. */
void iobd__session_send_next_locked(iobd_session_t* s);
/* Queues sends for sessions and waiters touched by events; any thread, srv->lock not held. */
void iobd__flush(iobd_rpc_t* srv);
/* Wait: registers the waiter, or answers at once. */
void iobd__wait_start(iobd_call_t* c);
/* Sends the waiter's next reply or its final status, as its state asks. */
void iobd__wait_eval_locked(iobd_rpc_t* srv, iobd_call_t* c, int64_t now);
void iobd__waiter_unlink_locked(iobd_rpc_t* srv, iobd_call_t* c);

/* ---- rpc_handlers.c ---- */

/* Runs a new call's handler (unary, read, write). */
void iobd__dispatch_new(iobd_call_t* c);
/* Does the method run on a slow thread (its cost is the client's choice)? */
bool iobd__method_is_slow(unsigned method);
/* Continuation of ReadRegion/WriteRegion after a main-chain completion. */
void iobd__read_continue(iobd_call_t* c);
void iobd__write_continue(iobd_call_t* c, grpc_byte_buffer* msg);
/* WriteRegion: arms the next RECV_MESSAGE. */
bool iobd__call_recv(iobd_call_t* c);

/* ---- rpc_listen.c ---- */

zx_status_t iobd__listen_all(iobd_rpc_t* srv);
void iobd__listen_close(iobd_rpc_t* srv);
/* Credentials of a "fd:N" peer, as read at accept. */
bool iobd__peer_cred(iobd_rpc_t* srv, const char* peer, iobd_cred_t* out);
bool iobd__peer_is_local(const char* peer);
/*
 * May the call's caller see every IOB and the server-wide figures? Remote (TCP) callers
 * passed TLS and the bearer token: the management plane. Local ones: root, iobd's own uid,
 * or a configured operator uid/gid.
 */
bool iobd__call_is_operator(iobd_rpc_t* srv, const iobd_call_t* c);

#endif /* IOB_SERVER_RPC_RPC_INTERNAL_H_ */
