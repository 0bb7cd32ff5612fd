/* SPDX-License-Identifier: MIT */
/*
 * iobd's gRPC service: the completion-queue (CQ) thread that receives every call and
 * completion, the slow threads for creates and closes, and the service's start and
 * shutdown. Call contexts are in rpc_call.c, sessions in rpc_session.c, session events and
 * Wait in rpc_events.c, one translation per method in rpc_handlers.c.
 *
 * Why handlers run on the CQ thread: the core is thread-safe, and hopping every event to
 * the libuv loop roughly halves unary throughput (measured with gRPC 1.51 over a Unix
 * socket). The exceptions are the calls whose cost a client chooses (creates and closes,
 * "slow threads" below).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <zircon/status.h>
#include <zircon/syscalls/object.h>

#include "client/status_text.h"
#include "server/core/iob_metrics.h"
#include "server/rpc/log.h"
#include "server/rpc/rpc_internal.h"
static _Thread_local bool iobd__on_cq_thread;

/* The methods' short names ("CreateIob"), for the metrics' method label. */
#define IOBD__METHOD_NAME(e, name, request, reply) name,
static const char* const iobd__method_names[] = {IOB_WIRE_METHODS(IOBD__METHOD_NAME)};
#undef IOBD__METHOD_NAME

/* Wakes the loop so it flushes events raised outside the CQ thread (broker, timers). */
void iobd__kick(iobd_rpc_t* srv) {
    if (iobd__on_cq_thread) {
        return; /* the CQ thread flushes after every event it handles */
    }
    if (srv->wake_alive) {
        uv_async_send(&srv->wake);
    }
}

/* The CQ thread's next deadline: the earliest waiter's, so timeouts fire on time. */
static gpr_timespec iobd__next_deadline(iobd_rpc_t* srv) {
    if (atomic_load(&srv->shutting_down)) {
        return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN));
    }
    int64_t earliest = INT64_MAX;
    pthread_mutex_lock(&srv->lock);
    for (iobd_call_t* w = srv->waiters; w != NULL; w = w->u.wait.next_waiter) {
        if (w->u.wait.deadline_ns < earliest) {
            earliest = w->u.wait.deadline_ns;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    if (earliest == INT64_MAX) {
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    }
    int64_t delta = earliest - iobd__now_ns();
    if (delta < 0) {
        delta = 0;
    }
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(delta, GPR_TIMESPAN));
}

/* ---- The CQ thread ---- */

static void iobd__request(iobd_rpc_t* srv, unsigned method) {
    if (atomic_load(&srv->shutting_down)) {
        return;
    }
    iobd_call_t* c = iobd__call_new(srv, method);
    if (c == NULL) {
        IOBD_ERROR("out of memory arming %u", method);
        return;
    }
    grpc_call_error err;
    if (method == IOBD_METHOD_UNKNOWN) {
        err = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, srv->cq, srv->cq,
                                       &c->t_new);
    } else {
        err = grpc_server_request_registered_call(
            srv->server, srv->methods[method], &c->call, &c->deadline, &c->md,
            method == IOB_WIRE_M_WRITE_REGION ? NULL : &c->payload, srv->cq, srv->cq, &c->t_new);
    }
    if (err != GRPC_CALL_OK) {
        IOBD_ERROR("request_call: %s", grpc_call_error_to_string(err));
        iobd__call_free(c);
    }
}

static bool iobd__token_ok(iobd_rpc_t* srv, iobd_call_t* c) {
    for (size_t i = 0; i < c->md.count; i++) {
        if (grpc_slice_str_cmp(c->md.metadata[i].key, IOB_WIRE_MD_AUTHORIZATION) != 0) {
            continue;
        }
        const char* v = (const char*)GRPC_SLICE_START_PTR(c->md.metadata[i].value);
        size_t len = GRPC_SLICE_LENGTH(c->md.metadata[i].value);
        size_t tlen = strlen(srv->token);
        if (len != 7 + tlen || strncmp(v, "Bearer ", 7) != 0) {
            return false;
        }
        return iob_core_ct_equal(v + 7, srv->token, tlen);
    }
    return false;
}

static void iobd__slow_enqueue(iobd_call_t* c);

/* False when the call went to a slow thread: the caller must not touch it again. */
static bool iobd__on_new(iobd_call_t* c) {
    iobd_rpc_t* srv = c->srv;
    c->start_ns = iobd__now_ns();
    iobd__request(srv, c->method); /* keep one request armed per method */
    char* p = grpc_call_get_peer(c->call);
    c->peer = strdup(p != NULL ? p : "");
    gpr_free(p);
    if (c->method == IOBD_METHOD_UNKNOWN) {
        /* The path is the client's: escaped before it reaches the log or the reply. */
        char m[200];
        iobd_log_escape(GRPC_SLICE_START_PTR(c->details.method),
                        GRPC_SLICE_LENGTH(c->details.method), m, sizeof m);
        IOBD_DEBUG("unknown method %s from %s", m, c->peer);
        char detail[300];
        snprintf(detail, sizeof detail, "unknown method %s", m);
        iobd__call_finish_code(c, ZX_ERR_NOT_SUPPORTED, GRPC_STATUS_UNIMPLEMENTED, NULL, detail);
        return true;
    }
    if (!iobd__peer_is_local(c->peer) && srv->token != NULL && !iobd__token_ok(srv, c)) {
        IOBD_WARN("%s: refused call without a valid bearer token", c->peer != NULL ? c->peer : "?");
        iob_metrics_refused(IOB_METRICS_REFUSED_AUTH);
        iobd__call_finish_code(c, ZX_ERR_ACCESS_DENIED, GRPC_STATUS_UNAUTHENTICATED, NULL,
                               "missing or invalid bearer token");
        return true;
    }
    if (c->method == IOB_WIRE_M_OPEN_SESSION) {
        iobd__open_session(c);
    } else if (c->method == IOB_WIRE_M_WAIT) {
        iobd__wait_start(c);
    } else if (iobd__method_is_slow(c->method)) {
        iobd__slow_enqueue(c);
        return false;
    } else {
        iobd__dispatch_new(c);
    }
    return true;
}

/* ---- Calls whose cost a client chooses ---- */

/*
 * A create allocates what the client sized (fallocate: 75-100 ms per GiB), and a close may
 * free as much (the kernel's teardown runs when the thread flushes its deferred releases).
 * Run on the CQ thread, either would stall every other client's calls for that long; the
 * core's lock is not held meanwhile, so a slow thread can do it while the CQ thread serves
 * on. The method table (rpc_handlers.c) marks these methods IOBD_M_SLOW.
 */

/*
 * Whose turn a call takes. An ordinary local user is one client however many connections
 * and sessions it opens (its budgets are per uid too). Root, iobd's own uid and TCP callers
 * (operators, trusted like the daemon's own user) are told apart by connection, so one of
 * their programs does not wait behind another. Keys of connections are negative.
 */
static int64_t iobd__slow_client_of(iobd_rpc_t* srv, const iobd_call_t* c) {
    iobd_cred_t cred;
    if (iobd__peer_cred(srv, c->peer, &cred) && cred.uid != 0 && cred.uid != geteuid()) {
        return (int64_t)cred.uid;
    }
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the peer's name ("fd:12", "ipv4:...") */
    for (const char* p = c->peer != NULL ? c->peer : ""; *p != '\0'; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    return -4 - (int64_t)(h >> 2);
}

/* The queue holds a reference (refs), so the context outlives its completions meanwhile. */
static void iobd__slow_enqueue(iobd_call_t* c) {
    iobd_rpc_t* srv = c->srv;
    c->slow_client = iobd__slow_client_of(srv, c);
    pthread_mutex_lock(&srv->lock);
    c->refs++;
    c->next_slow = NULL;
    if (srv->slow_tail != NULL) {
        srv->slow_tail->next_slow = c;
    } else {
        srv->slow_head = c;
    }
    srv->slow_tail = c;
    pthread_cond_signal(&srv->slow_cond);
    pthread_mutex_unlock(&srv->lock);
}

static bool iobd__slow_client_busy_locked(const iobd_rpc_t* srv, int64_t client) {
    for (size_t i = 0; i < IOBD_SLOW_THREADS; i++) {
        if (srv->slow_busy[i] == client) {
            return true;
        }
    }
    return false;
}

/* The oldest queued call of a client no thread serves now, taken off the queue; or NULL. */
static iobd_call_t* iobd__slow_take_locked(iobd_rpc_t* srv) {
    iobd_call_t* prev = NULL;
    for (iobd_call_t* c = srv->slow_head; c != NULL; prev = c, c = c->next_slow) {
        if (iobd__slow_client_busy_locked(srv, c->slow_client)) {
            continue;
        }
        if (prev != NULL) {
            prev->next_slow = c->next_slow;
        } else {
            srv->slow_head = c->next_slow;
        }
        if (srv->slow_tail == c) {
            srv->slow_tail = prev;
        }
        return c;
    }
    return NULL;
}

static void* iobd__slow_main(void* arg) {
    iobd_rpc_t* srv = arg;
    iob_core_release_defer(true);
    pthread_mutex_lock(&srv->lock);
    size_t self = 0;
    while (srv->slow_busy[self] != IOBD_SLOW_UNCLAIMED) {
        self++; /* slow_start made one slot per thread */
    }
    srv->slow_busy[self] = IOBD_SLOW_IDLE;
    for (;;) {
        iobd_call_t* c = iobd__slow_take_locked(srv);
        if (c == NULL) {
            if (srv->slow_stop && srv->slow_head == NULL) {
                break;
            }
            pthread_cond_wait(&srv->slow_cond, &srv->lock);
            continue;
        }
        srv->slow_busy[self] = c->slow_client;
        pthread_mutex_unlock(&srv->lock);
        iobd__dispatch_new(c);
        /* The client's turn lasts until its freed memory is back with the kernel. */
        iob_core_release_flush();
        pthread_mutex_lock(&srv->lock);
        srv->slow_busy[self] = IOBD_SLOW_IDLE;
        pthread_cond_broadcast(&srv->slow_cond); /* its next call may now run */
        /* Its final batch holds a reference of its own unless none could be started. */
        if (--c->refs == 0) {
            pthread_mutex_unlock(&srv->lock);
            iobd__call_free(c);
            pthread_mutex_lock(&srv->lock);
        }
    }
    srv->slow_busy[self] = IOBD_SLOW_ENDED;
    pthread_mutex_unlock(&srv->lock);
    iob_core_release_defer(false);
    return NULL;
}

static void iobd__slow_start(iobd_rpc_t* srv) {
    for (size_t i = 0; i < IOBD_SLOW_THREADS; i++) {
        srv->slow_busy[i] = IOBD_SLOW_UNCLAIMED;
    }
    for (size_t i = 0; i < IOBD_SLOW_THREADS; i++) {
        if (pthread_create(&srv->slow_threads[i], NULL, iobd__slow_main, srv) != 0) {
            IOBD_ERROR("cannot start a thread for creates and closes");
            abort();
        }
        srv->slow_thread_count++;
    }
}

/* Every queued call is a live one, so by the time the CQ thread has ended none is left. */
static void iobd__slow_stop(iobd_rpc_t* srv) {
    pthread_mutex_lock(&srv->lock);
    srv->slow_stop = true;
    pthread_cond_broadcast(&srv->slow_cond);
    pthread_mutex_unlock(&srv->lock);
    for (size_t i = 0; i < srv->slow_thread_count; i++) {
        pthread_join(srv->slow_threads[i], NULL);
    }
    srv->slow_thread_count = 0;
}

static void iobd__on_event(iobd_tag_t* t, bool ok) {
    iobd_call_t* c = t->call;
    iobd_rpc_t* srv = c->srv;
    if (t->kind == IOBD_TAG_NEW) {
        if (!ok) {
            iobd__call_free(c); /* shutting down: the armed request was cancelled */
            return;
        }
        if (!iobd__on_new(c)) {
            return; /* a slow thread has it now, and may free it at any moment */
        }
    } else {
        bool run_read = false, run_write = false, end_session = false;
        grpc_byte_buffer* msg = NULL;
        /* The batch's reference is dropped after its continuation ran (below). */
        pthread_mutex_lock(&srv->lock);
        switch (t->kind) {
            case IOBD_TAG_CLOSE:
                c->dead = c->dead || c->cancelled;
                if (c->method == IOB_WIRE_M_OPEN_SESSION && c->session != NULL &&
                    !c->session->closed) {
                    end_session = true;
                }
                if (c->method == IOB_WIRE_M_WAIT) {
                    iobd__waiter_unlink_locked(srv, c);
                    c->dead = true;
                }
                break;
            case IOBD_TAG_FINAL:
                c->dead = true;
                break;
            case IOBD_TAG_MAIN:
                if (c->out != NULL) {
                    grpc_byte_buffer_destroy(c->out);
                    c->out = NULL;
                }
                c->sending = false;
                if (!ok) {
                    c->dead = true;
                } else if (c->method == IOB_WIRE_M_OPEN_SESSION && c->session != NULL) {
                    iobd__session_send_next_locked(c->session);
                } else if (c->method == IOB_WIRE_M_WAIT) {
                    iobd__wait_eval_locked(srv, c, iobd__now_ns());
                } else if (c->method == IOB_WIRE_M_READ_REGION) {
                    run_read = !c->dead && !c->finishing;
                } else if (c->method == IOB_WIRE_M_WRITE_REGION) {
                    msg = c->recv;
                    c->recv = NULL;
                    run_write = !c->dead && !c->finishing;
                }
                break;
            case IOBD_TAG_NEW:
                break;
        }
        pthread_mutex_unlock(&srv->lock);
        if (end_session) {
            iobd__session_end(srv, c->session);
        }
        if (run_read) {
            iobd__read_continue(c);
        }
        if (run_write) {
            iobd__write_continue(c, msg);
        } else if (msg != NULL) {
            grpc_byte_buffer_destroy(msg);
        }
    }
    /*
     * Until here the completed batch still counts in refs: a slow thread that drops its
     * own reference meanwhile cannot take refs to 0 and free the context under us.
     */
    pthread_mutex_lock(&srv->lock);
    if (t->kind != IOBD_TAG_NEW) {
        c->refs--;
    }
    bool free_it = c->refs == 0;
    if (free_it && c->method == IOB_WIRE_M_WAIT) {
        iobd__waiter_unlink_locked(srv, c);
    }
    if (free_it && c->session != NULL && !c->session->closed) {
        /* Its close chain never started: end the session now. */
        free_it = false;
    }
    pthread_mutex_unlock(&srv->lock);
    if (free_it) {
        iobd__call_free(c);
    }
}

static void* iobd__cq_main(void* arg) {
    iobd_rpc_t* srv = arg;
    iobd__on_cq_thread = true;
    /*
     * Region memory freed by a request (CloseHandles, a session ending) is given back to
     * the kernel after the reply has been started, not before: see iob_core_release_defer.
     * The flush below runs before this thread waits for, or serves, anything else.
     */
    iob_core_release_defer(true);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(srv->cq, iobd__next_deadline(srv), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type == GRPC_OP_COMPLETE) {
            iobd_tag_t* t = ev.tag;
            if (t == &srv->shutdown_tag) {
                srv->shutdown_tag_seen = true;
            } else {
                iobd__on_event(t, ev.success != 0);
            }
        }
        iobd__flush(srv);
        iob_core_release_flush();
        if (srv->shutdown_tag_seen && !srv->cq_shutdown_called &&
            atomic_load(&srv->live_calls) == 0) {
            srv->cq_shutdown_called = true;
            grpc_completion_queue_shutdown(srv->cq);
        }
    }
    iob_core_release_defer(false);
    atomic_store(&srv->cq_done, true);
    uv_async_send(&srv->wake);
    return NULL;
}

/* ---- Lifecycle ---- */

static void iobd__wake_closed(uv_handle_t* h) {
    (void)h;
}

static void iobd__on_wake(uv_async_t* a) {
    iobd_rpc_t* srv = a->data;
    iobd__flush(srv);
    iobd__start_watches(srv);
    if (!atomic_load(&srv->cq_done)) {
        return;
    }
    if (srv->cq_thread_started) {
        pthread_join(srv->cq_thread, NULL);
        srv->cq_thread_started = false;
    }
    iobd__slow_stop(srv);
    if (srv->server != NULL) {
        grpc_server_destroy(srv->server);
        srv->server = NULL;
    }
    if (srv->cq != NULL) {
        grpc_completion_queue_destroy(srv->cq);
        srv->cq = NULL;
    }
    srv->wake_alive = false;
    uv_close((uv_handle_t*)&srv->wake, iobd__wake_closed);
    iobd__watches_close(srv);
    if (srv->done_cb != NULL) {
        void (*cb)(void*) = srv->done_cb;
        srv->done_cb = NULL;
        cb(srv->done_ctx);
    }
}

static char* iobd__strdup_or_null(const char* s) {
    return s != NULL ? strdup(s) : NULL;
}

/* A copy of n ids (uid_t and gid_t are both 32 bits); NULL for none. */
static void* iobd__ids_dup(const void* ids, size_t n) {
    void* copy = n > 0 ? malloc(n * sizeof(uint32_t)) : NULL;
    if (copy != NULL) {
        memcpy(copy, ids, n * sizeof(uint32_t));
    }
    return copy;
}

/* The service keeps its own copies of the config's strings and arrays. */
static void iobd__config_copy(iobd_rpc_t* srv, const iobd_rpc_config_t* config) {
    _Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
                   "id lists are arrays of 32-bit ids");
    srv->config = *config;
    srv->listen = calloc(config->listen_count, sizeof(char*));
    for (size_t i = 0; srv->listen != NULL && i < config->listen_count; i++) {
        srv->listen[i] = strdup(config->listen[i]);
    }
    srv->config.listen = (const char* const*)srv->listen;
    srv->config.allow_uids = srv->allow_uids =
        iobd__ids_dup(config->allow_uids, config->allow_uid_count);
    srv->config.allow_gids = srv->allow_gids =
        iobd__ids_dup(config->allow_gids, config->allow_gid_count);
    srv->config.operator_uids = srv->operator_uids =
        iobd__ids_dup(config->operator_uids, config->operator_uid_count);
    srv->config.operator_gids = srv->operator_gids =
        iobd__ids_dup(config->operator_gids, config->operator_gid_count);
    srv->config.token = srv->token = iobd__strdup_or_null(config->token);
    srv->config.broker_path = srv->broker_path = iobd__strdup_or_null(config->broker_path);
    srv->config.version = srv->version = iobd__strdup_or_null(config->version);
    /* TLS file names are only used during start. */
    srv->config.tls_cert_file = srv->config.tls_key_file = srv->config.tls_client_ca_file = NULL;
}

/* The gRPC server and its completion queue, every method registered; not started. */
static void iobd__grpc_server_create(iobd_rpc_t* srv) {
    /*
     * The receive limit; server pings (every 60 s, 20 s to answer) that find TCP clients
     * that vanished, so their sessions end; and room for the clients' own pings every 30 s
     * (the default minimum interval, 5 min, would answer them with GOAWAY).
     */
    static const struct {
        const char* key;
        int value;
    } settings[] = {
        {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)IOB_WIRE_MAX_MESSAGE},
        {GRPC_ARG_KEEPALIVE_TIME_MS, 60000},
        {GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000},
        {GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000},
        {GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1},
        {GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0},
    };
    enum { n_settings = sizeof settings / sizeof settings[0] };
    grpc_arg args[n_settings];
    memset(args, 0, sizeof args);
    for (size_t i = 0; i < n_settings; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char*)(uintptr_t)settings[i].key;
        args[i].value.integer = settings[i].value;
    }
    grpc_channel_args ca = {n_settings, args};
    srv->server = grpc_server_create(&ca, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    for (unsigned m = 0; m < IOB_WIRE_M_COUNT; m++) {
        srv->methods[m] = grpc_server_register_method(
            srv->server, iob_wire_method_path((iob_wire_method_t)m), NULL,
            m == IOB_WIRE_M_WRITE_REGION ? GRPC_SRM_PAYLOAD_NONE
                                         : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
    }
}

/* A start that failed after iobd__grpc_server_create: undoes it and frees the service. */
static void iobd__grpc_server_abandon(iobd_rpc_t* srv) {
    atomic_store(&srv->shutting_down, true);
    grpc_server_destroy(srv->server);
    srv->server = NULL;
    grpc_completion_queue_shutdown(srv->cq);
    while (grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(srv->cq);
    srv->cq = NULL;
    iobd__listen_close(srv);
    iobd_rpc_destroy(srv);
}

zx_status_t iobd_rpc_start(uv_loop_t* loop, iob_core_t* core, const iobd_rpc_config_t* config,
                           iobd_rpc_t** out) {
    if (loop == NULL || core == NULL || config == NULL || out == NULL ||
        config->listen_count == 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    iobd_rpc_t* srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    iobd__config_copy(srv, config);
    srv->loop = loop;
    srv->core = core;
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->slow_cond, NULL);
    atomic_init(&srv->shutting_down, false);
    atomic_init(&srv->live_calls, 0);
    atomic_init(&srv->cq_done, false);
    srv->shutdown_tag = (iobd_tag_t){NULL, IOBD_TAG_NEW};

    grpc_init();
    iobd__observer_install(srv);
    iob_metrics_set_methods(IOB_METRICS_RPC, iobd__method_names, IOB_WIRE_M_COUNT);

    iobd__grpc_server_create(srv);
    srv->config.tls_cert_file = config->tls_cert_file;
    srv->config.tls_key_file = config->tls_key_file;
    srv->config.tls_client_ca_file = config->tls_client_ca_file;
    zx_status_t st = iobd__listen_all(srv);
    srv->config.tls_cert_file = srv->config.tls_key_file = srv->config.tls_client_ca_file = NULL;
    if (st != ZX_OK) {
        iobd__grpc_server_abandon(srv);
        return st;
    }
    uv_async_init(loop, &srv->wake, iobd__on_wake);
    srv->wake.data = srv;
    srv->wake_alive = true;
    grpc_server_start(srv->server);
    for (unsigned m = 0; m <= IOBD_METHOD_UNKNOWN; m++) {
        iobd__request(srv, m);
    }
    iobd__slow_start(srv);
    if (pthread_create(&srv->cq_thread, NULL, iobd__cq_main, srv) != 0) {
        IOBD_ERROR("cannot start the completion-queue thread");
        abort();
    }
    srv->cq_thread_started = true;
    *out = srv;
    return ZX_OK;
}

void iobd_rpc_shutdown(iobd_rpc_t* srv, void (*done)(void* ctx), void* ctx) {
    if (atomic_exchange(&srv->shutting_down, true)) {
        return;
    }
    srv->done_cb = done;
    srv->done_ctx = ctx;
    iobd__listen_close(srv);
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);
    grpc_server_cancel_all_calls(srv->server);
}

void iobd_rpc_destroy(iobd_rpc_t* srv) {
    if (srv == NULL) {
        return;
    }
    iobd__slow_stop(srv); /* normally stopped already, once the CQ thread ended */
    /* The core outlives the service: from here on it has nobody to tell about events. */
    iob_core_set_observer(srv->core, NULL);
    srv->wake_alive = false;
    iobd__sessions_free_all(srv);
    free(srv->operator_uids);
    free(srv->operator_gids);
    free(srv->uid_sessions);
    for (size_t i = 0; srv->listen != NULL && i < srv->config.listen_count; i++) {
        free(srv->listen[i]);
    }
    free(srv->listen);
    free(srv->allow_uids);
    free(srv->allow_gids);
    free(srv->token);
    free(srv->broker_path);
    free(srv->version);
    free(srv->creds);
    free(srv->unix_listeners);
    pthread_cond_destroy(&srv->slow_cond);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    grpc_shutdown();
}
