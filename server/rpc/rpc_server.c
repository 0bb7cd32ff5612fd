/* SPDX-License-Identifier: MIT */
/*
 * iobd's gRPC service: the completion-queue thread, call contexts, sessions, the event
 * index that feeds session streams and waits, and shutdown.
 *
 * Call contexts: every call has one context with tags for its independent chains of
 * batches (new call, main chain of sends or receives, the close chain of streams, the final
 * status batch). `refs` counts batches in flight; a context is freed on the CQ thread when a
 * completion leaves refs at 0 after its continuation ran. Every field of a context that
 * another thread may touch (streams fed by events) is guarded by srv->lock.
 *
 * Why handlers run on the CQ thread: the core is thread-safe, and hopping every event to
 * the libuv loop roughly halves unary throughput (notes/grpc-c-core.md section 10).
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

static int64_t iobd__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* buckets: a power of two. */
static size_t iobd__hash(uint64_t v, size_t buckets) {
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    return (size_t)(v & (buckets - 1));
}

/* Wakes the loop so it flushes events raised outside the CQ thread (broker, timers). */
static void iobd__kick(iobd_rpc_t* srv) {
    if (iobd__on_cq_thread) {
        return; /* the CQ thread flushes after every event it handles */
    }
    if (srv->wake_alive) {
        uv_async_send(&srv->wake);
    }
}

/* ---- Call contexts ---- */

/* The methods' short names ("CreateIob"), for the metrics' method label. */
#define IOBD__METHOD_NAME(e, name) name,
static const char* const iobd__method_names[] = {IOB_WIRE_METHODS(IOBD__METHOD_NAME)};
#undef IOBD__METHOD_NAME

static const char* iobd__mname(const iobd_call_t* c) {
    const char* p = iob_wire_method_path((iob_wire_method_t)c->method);
    return p != NULL ? p : "(unknown method)";
}

static iobd_call_t* iobd__call_new(iobd_rpc_t* srv, unsigned method) {
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

static void iobd__session_free(iobd_session_t* s) {
    if (s->pidfd >= 0) {
        close(s->pidfd);
    }
    free(s->events);
    free(s->peer);
    free(s);
}

static void iobd__call_free(iobd_call_t* c) {
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
        IOBD_WARN("start_batch on %s: %s", iobd__mname(c),
                  grpc_call_error_to_string(err));
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

static void iobd__finish_locked(iobd_call_t* c, zx_status_t status, grpc_status_code code,
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
        IOBD_DEBUG("%s -> %s (%s)", iobd__mname(c),
                   zx_status_get_string(status), msg);
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

static bool iobd__send_locked(iobd_call_t* c, const ProtobufCMessage* msg) {
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

static bool iobd__close_chain_locked(iobd_call_t* c) {
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

/* ---- Sessions ---- */

static iobd_session_t* iobd__session_find_locked(iobd_rpc_t* srv, uint64_t id) {
    for (iobd_session_t* s = srv->sessions[id % IOBD_SESSION_BUCKETS]; s != NULL;
         s = s->next_in_bucket) {
        if (s->id == id) {
            return s;
        }
    }
    return NULL;
}

static void iobd__session_unlink_locked(iobd_rpc_t* srv, iobd_session_t* s) {
    iobd_session_t** pp = &srv->sessions[s->id % IOBD_SESSION_BUCKETS];
    while (*pp != NULL) {
        if (*pp == s) {
            *pp = s->next_in_bucket;
            srv->session_count--;
            break;
        }
        pp = &(*pp)->next_in_bucket;
    }
    iobd_session_t** dp = &srv->dirty_sessions;
    while (*dp != NULL) {
        if (*dp == s) {
            *dp = s->next_dirty;
            break;
        }
        dp = &(*dp)->next_dirty;
    }
    s->dirty = false;
}

static bool iobd__ct_equal(const uint8_t* a, const uint8_t* b, size_t n) {
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (uint8_t)(a[i] ^ b[i]);
    }
    return diff == 0;
}

/*
 * Counts one more open session against a local uid; false when the uid is at
 * max_sessions_per_uid. Root and iobd's own uid are not counted (the caller checks).
 */
static bool iobd__uid_session_take_locked(iobd_rpc_t* srv, uid_t uid) {
    iobd_uid_count_t* e = NULL;
    for (size_t i = 0; i < srv->uid_session_len; i++) {
        if (srv->uid_sessions[i].uid == uid) {
            e = &srv->uid_sessions[i];
            break;
        }
    }
    if (e == NULL) {
        if (srv->uid_session_len == srv->uid_session_cap) {
            size_t cap = srv->uid_session_cap == 0 ? 16 : 2 * srv->uid_session_cap;
            iobd_uid_count_t* n = realloc(srv->uid_sessions, cap * sizeof *n);
            if (n == NULL) {
                return false;
            }
            srv->uid_sessions = n;
            srv->uid_session_cap = cap;
        }
        e = &srv->uid_sessions[srv->uid_session_len++];
        *e = (iobd_uid_count_t){uid, 0};
    }
    uint32_t max = srv->config.max_sessions_per_uid;
    if (max != 0 && e->sessions >= max) {
        return false;
    }
    e->sessions++;
    return true;
}

static void iobd__uid_session_give_locked(iobd_rpc_t* srv, uid_t uid) {
    for (size_t i = 0; i < srv->uid_session_len; i++) {
        if (srv->uid_sessions[i].uid == uid) {
            if (--srv->uid_sessions[i].sessions == 0) {
                srv->uid_sessions[i] = srv->uid_sessions[--srv->uid_session_len];
            }
            return;
        }
    }
}

/* Open sessions of a uid (0 when it has none or is not counted). */
static uint32_t iobd__uid_sessions_locked(iobd_rpc_t* srv, uid_t uid) {
    for (size_t i = 0; i < srv->uid_session_len; i++) {
        if (srv->uid_sessions[i].uid == uid) {
            return srv->uid_sessions[i].sessions;
        }
    }
    return 0;
}

zx_status_t iobd__call_session(iobd_call_t* c, uint64_t* session_out) {
    const grpc_slice* value = NULL;
    for (size_t i = 0; i < c->md.count; i++) {
        if (grpc_slice_str_cmp(c->md.metadata[i].key, IOB_WIRE_MD_SESSION) == 0) {
            value = &c->md.metadata[i].value;
            break;
        }
    }
    if (value == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t id;
    uint8_t secret[IOB_WIRE_SECRET_SIZE];
    if (!iob_wire_parse_session((const char*)GRPC_SLICE_START_PTR(*value),
                                GRPC_SLICE_LENGTH(*value), &id, secret)) {
        return ZX_ERR_INVALID_ARGS;
    }
    iobd_rpc_t* srv = c->srv;
    zx_status_t st = ZX_ERR_BAD_HANDLE;
    pthread_mutex_lock(&srv->lock);
    iobd_session_t* s = iobd__session_find_locked(srv, id);
    /* The secret check runs even for a closed session so timing tells nothing. */
    if (s != NULL && iobd__ct_equal(s->secret, secret, sizeof secret) && !s->closed &&
        c->peer != NULL && strcmp(s->peer, c->peer) == 0) {
        st = ZX_OK;
    }
    pthread_mutex_unlock(&srv->lock);
    if (st == ZX_OK) {
        *session_out = id;
        c->session_id = id;
    }
    return st;
}

zx_status_t iobd__session_set_events(iobd_rpc_t* srv, uint64_t session_id, bool enabled) {
    zx_status_t st = ZX_ERR_BAD_HANDLE;
    pthread_mutex_lock(&srv->lock);
    iobd_session_t* s = iobd__session_find_locked(srv, session_id);
    if (s != NULL && !s->closed) {
        s->events_off = !enabled;
        if (!enabled) {
            s->event_count = 0; /* nobody will read what is queued */
        }
        st = ZX_OK;
    }
    pthread_mutex_unlock(&srv->lock);
    return st;
}

bool iobd_rpc_authenticate(void* ctx, uint64_t session_id, const uint8_t secret[16], pid_t pid,
                           uid_t uid, gid_t gid, iob_session_id_t* session_out) {
    iobd_rpc_t* srv = ctx;
    bool ok = false;
    const char* why = NULL; /* set when the secret matched but the peer is someone else */
    pid_t owner_pid = 0;
    uid_t owner_uid = (uid_t)-1;
    pthread_mutex_lock(&srv->lock);
    iobd_session_t* s = iobd__session_find_locked(srv, session_id);
    if (s != NULL && iobd__ct_equal(s->secret, secret, IOB_WIRE_SECRET_SIZE) && !s->closed &&
        s->local) {
        owner_pid = s->cred_pid;
        owner_uid = s->cred_uid;
        /*
         * The secret alone is not enough: it may have leaked (a log, a core dump, a child
         * it was handed to). Mapping records belong to the session's process: its pidfd
         * decides when they are released, so a mapping made by any other process could
         * outlive its record. Hence the same uid and the same pid (SO_PEERCRED reports the
         * thread group id, so every thread of the session's process qualifies).
         */
        if (!s->cred_valid) {
            why = "the session's process is unknown";
        } else if (uid != owner_uid) {
            why = "another uid";
        } else if (pid != owner_pid) {
            why = "another process";
        } else {
            ok = true;
            s->attached = true;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    if (why != NULL) {
        IOBD_WARN("map broker: session %" PRIu64 " (pid %d uid %d) refused to pid %d uid %d "
                  "gid %d: %s (ZX_ERR_ACCESS_DENIED)",
                  session_id, (int)owner_pid, (int)owner_uid, (int)pid, (int)uid, (int)gid, why);
    }
    if (ok) {
        session_out->value = session_id;
    }
    return ok;
}

/* ---- Event index ---- */

static iobd_hent_t* iobd__hent_find_locked(iobd_rpc_t* srv, zx_handle_t handle) {
    if (srv->hent_buckets == 0) {
        return NULL;
    }
    for (iobd_hent_t* h = srv->by_handle[iobd__hash(handle, srv->hent_buckets)]; h != NULL;
         h = h->next_by_handle) {
        if (h->handle == handle) {
            return h;
        }
    }
    return NULL;
}

static void iobd__hent_remove_locked(iobd_rpc_t* srv, iobd_hent_t* h) {
    iobd_hent_t** pp = &srv->by_handle[iobd__hash(h->handle, srv->hent_buckets)];
    while (*pp != NULL && *pp != h) {
        pp = &(*pp)->next_by_handle;
    }
    if (*pp == h) {
        *pp = h->next_by_handle;
    }
    pp = &srv->by_koid[iobd__hash(h->koid, srv->hent_buckets)];
    while (*pp != NULL && *pp != h) {
        pp = &(*pp)->next_by_koid;
    }
    if (*pp == h) {
        *pp = h->next_by_koid;
    }
    if (h->prev_in_session != NULL) {
        h->prev_in_session->next_in_session = h->next_in_session;
    } else {
        h->session->hents = h->next_in_session;
    }
    if (h->next_in_session != NULL) {
        h->next_in_session->prev_in_session = h->prev_in_session;
    }
    srv->hent_count--;
    for (iobd_call_t* w = srv->waiters; w != NULL; w = w->u.wait.next_waiter) {
        if (w->u.wait.hent == h) {
            w->u.wait.hent = NULL;
            w->u.wait.handle_closed = true;
            w->u.wait.dirty = true;
        }
    }
    free(h);
}

/* Rehashes into twice the buckets; on allocation failure the index stays as it is. */
static void iobd__hent_grow_locked(iobd_rpc_t* srv) {
    size_t n = srv->hent_buckets != 0 ? srv->hent_buckets * 2 : IOBD_HASH_BUCKETS;
    iobd_hent_t** bh = calloc(n, sizeof *bh);
    iobd_hent_t** bk = calloc(n, sizeof *bk);
    if (bh == NULL || bk == NULL) {
        free(bh);
        free(bk);
        return;
    }
    for (size_t b = 0; b < srv->hent_buckets; b++) {
        for (iobd_hent_t *h = srv->by_handle[b], *next; h != NULL; h = next) {
            next = h->next_by_handle;
            size_t i = iobd__hash(h->handle, n);
            h->next_by_handle = bh[i];
            bh[i] = h;
        }
        for (iobd_hent_t *h = srv->by_koid[b], *next; h != NULL; h = next) {
            next = h->next_by_koid;
            size_t i = iobd__hash(h->koid, n);
            h->next_by_koid = bk[i];
            bk[i] = h;
        }
    }
    free(srv->by_handle);
    free(srv->by_koid);
    srv->by_handle = bh;
    srv->by_koid = bk;
    srv->hent_buckets = n;
}

static iobd_hent_t* iobd__hent_add_locked(iobd_rpc_t* srv, iobd_session_t* s, zx_handle_t handle,
                                          zx_koid_t koid) {
    iobd_hent_t* h = iobd__hent_find_locked(srv, handle);
    if (h != NULL) {
        return h;
    }
    if (srv->hent_count >= srv->hent_buckets) {
        iobd__hent_grow_locked(srv);
        if (srv->hent_buckets == 0) {
            return NULL;
        }
    }
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        return NULL;
    }
    h->handle = handle;
    h->koid = koid;
    h->session = s;
    size_t bh = iobd__hash(handle, srv->hent_buckets), bk = iobd__hash(koid, srv->hent_buckets);
    h->next_by_handle = srv->by_handle[bh];
    srv->by_handle[bh] = h;
    h->next_by_koid = srv->by_koid[bk];
    srv->by_koid[bk] = h;
    h->next_in_session = s->hents;
    if (s->hents != NULL) {
        s->hents->prev_in_session = h;
    }
    s->hents = h;
    srv->hent_count++;
    return h;
}

void iobd__track_handle(iobd_rpc_t* srv, uint64_t session_id, zx_handle_t handle, zx_koid_t koid) {
    if (koid == ZX_KOID_INVALID) {
        zx_info_handle_basic_t info;
        size_t actual = 0, avail = 0;
        if (iob_core_get_info(srv->core, (iob_session_id_t){session_id}, handle,
                              ZX_INFO_HANDLE_BASIC, &info, sizeof info, &actual,
                              &avail) != ZX_OK) {
            return;
        }
        koid = info.koid;
    }
    pthread_mutex_lock(&srv->lock);
    iobd_session_t* s = iobd__session_find_locked(srv, session_id);
    if (s != NULL && !s->closed) {
        iobd__hent_add_locked(srv, s, handle, koid);
    }
    pthread_mutex_unlock(&srv->lock);
}

void iobd_rpc_handle_imported(void* ctx, iob_session_id_t session, zx_handle_t handle) {
    iobd__track_handle(ctx, session.value, handle, ZX_KOID_INVALID);
}

/* False when the session takes no events (nothing was queued). */
static bool iobd__queue_event_locked(iobd_rpc_t* srv, iobd_session_t* s, zx_handle_t handle,
                                     zx_signals_t signals) {
    if (s->closed || s->stream == NULL || s->events_off) {
        return false;
    }
    if (s->event_count > 0 && signals != ZX_SIGNAL_HANDLE_CLOSED) {
        /* Coalesce with the newest queued event of the same handle: only state matters. */
        iobd_event_t* last = &s->events[(s->event_head + s->event_count - 1) % s->event_cap];
        /*
         * A strobe is an event, not a state: never merged into a state change (nor one into
         * it); strobes in a row are one, so a busy ring costs one queued event, not one per
         * record.
         */
        if (last->handle == handle && last->signals != ZX_SIGNAL_HANDLE_CLOSED &&
            (((last->signals | signals) & ZX_IOB_SHARED_REGION_UPDATED) == 0 ||
             last->signals == signals)) {
            last->signals = signals;
            goto mark;
        }
    }
    if ((signals & ZX_IOB_SHARED_REGION_UPDATED) != 0) {
        /*
         * One strobe per handle waits in the queue at most: a later one is folded into it
         * (with the newer state), so busy rings cannot crowd state changes out of a queue
         * that a slow reader lets grow.
         */
        for (size_t i = 0; i < s->event_count; i++) {
            iobd_event_t* e = &s->events[(s->event_head + i) % s->event_cap];
            if (e->handle == handle && e->signals != ZX_SIGNAL_HANDLE_CLOSED &&
                (e->signals & ZX_IOB_SHARED_REGION_UPDATED) != 0) {
                e->signals = signals;
                goto mark;
            }
        }
    }
    if (s->event_count == s->event_cap) {
        if (s->event_cap >= IOBD_MAX_QUEUED_EVENTS) {
            /* The client does not read its stream; keep the server's memory bounded. */
            if (s->events_dropped++ == 0) {
                IOBD_WARN("session %" PRIu64 ": event queue full, dropping events", s->id);
            }
            return false;
        }
        size_t cap = s->event_cap == 0 ? 16 : s->event_cap * 2;
        iobd_event_t* ev = malloc(cap * sizeof *ev);
        if (ev == NULL) {
            s->events_dropped++;
            return false;
        }
        for (size_t i = 0; i < s->event_count; i++) {
            ev[i] = s->events[(s->event_head + i) % s->event_cap];
        }
        free(s->events);
        s->events = ev;
        s->event_cap = cap;
        s->event_head = 0;
    }
    s->events[(s->event_head + s->event_count) % s->event_cap] =
        (iobd_event_t){handle, signals};
    s->event_count++;
mark:
    if (!s->dirty) {
        s->dirty = true;
        s->next_dirty = srv->dirty_sessions;
        srv->dirty_sessions = s;
    }
    return true;
}

static void iobd__obs_signals_changed(void* ctx, zx_koid_t koid, zx_signals_t signals) {
    iobd_rpc_t* srv = ctx;
    pthread_mutex_lock(&srv->lock);
    for (iobd_hent_t* h = srv->hent_buckets != 0 ? srv->by_koid[iobd__hash(koid, srv->hent_buckets)]
                                                 : NULL;
         h != NULL; h = h->next_by_koid) {
        if (h->koid == koid) {
            iobd__queue_event_locked(srv, h->session, h->handle, signals);
        }
    }
    for (iobd_call_t* w = srv->waiters; w != NULL; w = w->u.wait.next_waiter) {
        if (w->u.wait.hent != NULL && w->u.wait.hent->koid == koid) {
            w->u.wait.observed = signals;
            w->u.wait.events_seen++;
            w->u.wait.dirty = true;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    iobd__kick(srv);
}

/*
 * A record was written into a shared region: ZX_IOB_SHARED_REGION_UPDATED is strobed
 * (docs/zircon-iob.md A.7 step 6). Only what is armed right now sees it: waits whose mask holds the
 * bit, and the holders' session streams (as an event with the bit set; shared regions have
 * no other signal than user signals, which the event does not repeat). Nothing is latched.
 */
static void iobd__obs_shared_region_updated(void* ctx, zx_koid_t koid, zx_signals_t signals) {
    iobd_rpc_t* srv = ctx;
    bool any = false;
    pthread_mutex_lock(&srv->lock);
    for (iobd_hent_t* h = srv->hent_buckets != 0 ? srv->by_koid[iobd__hash(koid, srv->hent_buckets)]
                                                 : NULL;
         h != NULL; h = h->next_by_koid) {
        /* Most writes have no one listening: wake nobody for them (the broker's writes
         * run on the loop thread, where a wake-up is one more loop iteration). */
        if (h->koid == koid && iobd__queue_event_locked(srv, h->session, h->handle,
                                                        signals | ZX_IOB_SHARED_REGION_UPDATED)) {
            any = true;
        }
    }
    for (iobd_call_t* w = srv->waiters; w != NULL; w = w->u.wait.next_waiter) {
        if (w->u.wait.hent != NULL && w->u.wait.hent->koid == koid &&
            (w->u.wait.want & ZX_IOB_SHARED_REGION_UPDATED) != 0) {
            w->u.wait.strobed = true;
            w->u.wait.dirty = true;
            any = true;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    if (any) {
        iobd__kick(srv);
    }
}

static void iobd__obs_handle_closed(void* ctx, iob_session_id_t session, zx_handle_t handle) {
    iobd_rpc_t* srv = ctx;
    pthread_mutex_lock(&srv->lock);
    iobd_hent_t* h = iobd__hent_find_locked(srv, handle);
    if (h != NULL && h->session->id == session.value) {
        iobd__queue_event_locked(srv, h->session, handle, ZX_SIGNAL_HANDLE_CLOSED);
        iobd__hent_remove_locked(srv, h);
    }
    pthread_mutex_unlock(&srv->lock);
    iobd__kick(srv);
}

static void iobd__session_send_next_locked(iobd_session_t* s) {
    iobd_call_t* c = s->stream;
    if (c == NULL || s->closed || c->dead || c->finishing || c->sending || s->event_count == 0) {
        return;
    }
    iobd_event_t ev = s->events[s->event_head];
    s->event_head = (s->event_head + 1) % s->event_cap;
    s->event_count--;
    Iob__V1__SessionEvent pe = IOB__V1__SESSION_EVENT__INIT;
    pe.handle = ev.handle;
    pe.signals = ev.signals;
    Iob__V1__SessionMessage m = IOB__V1__SESSION_MESSAGE__INIT;
    m.kind_case = IOB__V1__SESSION_MESSAGE__KIND_EVENT;
    m.event = &pe;
    iobd__send_locked(c, &m.base);
}

/* ---- What a non-operator may see (ListIobs, ServerInfo) ---- */

static bool iobd__uid_holds_koid_locked(iobd_rpc_t* srv, zx_koid_t koid, uid_t uid) {
    if (srv->hent_buckets == 0) {
        return false;
    }
    for (iobd_hent_t* h = srv->by_koid[iobd__hash(koid, srv->hent_buckets)]; h != NULL;
         h = h->next_by_koid) {
        if (h->koid == koid && h->session->local && h->session->cred_valid &&
            h->session->cred_uid == uid) {
            return true;
        }
    }
    return false;
}

size_t iobd__filter_iobs_for_uid(iobd_rpc_t* srv, iob_core_iob_summary_t* sums, size_t n,
                                 uid_t uid) {
    size_t kept = 0;
    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < n; i++) {
        if (iobd__uid_holds_koid_locked(srv, sums[i].endpoints[0].koid, uid) ||
            iobd__uid_holds_koid_locked(srv, sums[i].endpoints[1].koid, uid)) {
            if (kept != i) {
                sums[kept] = sums[i];
            }
            kept++;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    return kept;
}

void iobd__uid_figures(iobd_rpc_t* srv, uid_t uid, uint64_t* sessions, uint64_t* handles) {
    uint64_t n = 0;
    pthread_mutex_lock(&srv->lock);
    for (size_t b = 0; b < srv->hent_buckets; b++) {
        for (iobd_hent_t* h = srv->by_handle[b]; h != NULL; h = h->next_by_handle) {
            if (h->session->local && h->session->cred_valid && h->session->cred_uid == uid) {
                n++;
            }
        }
    }
    *handles = n;
    *sessions = iobd__uid_sessions_locked(srv, uid);
    pthread_mutex_unlock(&srv->lock);
}

/* ---- Waits ---- */

static void iobd__waiter_unlink_locked(iobd_rpc_t* srv, iobd_call_t* c) {
    iobd_wait_state_t* w = &c->u.wait;
    if (!w->registered) {
        return;
    }
    if (w->prev_waiter != NULL) {
        w->prev_waiter->u.wait.next_waiter = w->next_waiter;
    } else {
        srv->waiters = w->next_waiter;
    }
    if (w->next_waiter != NULL) {
        w->next_waiter->u.wait.prev_waiter = w->prev_waiter;
    }
    w->next_waiter = w->prev_waiter = NULL;
    w->registered = false;
    /* An ended session is no longer in the table: nothing to give back to it. */
    iobd_session_t* s = iobd__session_find_locked(srv, c->session_id);
    if (s != NULL && s->waits > 0) {
        s->waits--;
    }
}

static void iobd__wait_eval_locked(iobd_rpc_t* srv, iobd_call_t* c, int64_t now) {
    iobd_wait_state_t* w = &c->u.wait;
    if (c->dead || c->finishing) {
        iobd__waiter_unlink_locked(srv, c);
        return;
    }
    zx_status_t final = 1; /* none yet */
    /* A strobe counts once: in the reply that reports it, never in a later one. */
    zx_signals_t seen = w->observed | (w->strobed ? ZX_IOB_SHARED_REGION_UPDATED : 0u);
    if (!w->watch && (seen & w->want) != 0) {
        final = ZX_OK;
    } else if (w->handle_closed) {
        final = ZX_ERR_CANCELED;
    } else if (now >= w->deadline_ns) {
        final = ZX_ERR_TIMED_OUT;
    } else if (w->watch && (!w->sent_any || seen != w->last_sent) && !c->sending) {
        Iob__V1__WaitReply r = IOB__V1__WAIT_REPLY__INIT;
        r.observed = seen;
        w->last_sent = seen; /* the state without the strobe then differs: it is sent next */
        w->sent_any = true;
        w->strobed = false;
        iobd__send_locked(c, &r.base);
    }
    if (final == 1 || c->sending) {
        return; /* a send in flight: re-evaluated when it completes */
    }
    iobd__waiter_unlink_locked(srv, c);
    zx_signals_t observed = final == ZX_OK ? seen : w->observed;
    if (final == ZX_ERR_CANCELED) {
        observed |= ZX_SIGNAL_HANDLE_CLOSED;
    }
    Iob__V1__WaitReply r = IOB__V1__WAIT_REPLY__INIT;
    r.status = final;
    r.observed = observed;
    iobd__call_add_trailer(c, IOB_WIRE_MD_OBSERVED, observed);
    iobd__finish_locked(c, final, iob_wire_grpc_code(final), &r.base, NULL);
}

void iobd__wait_start(iobd_call_t* c) {
    iobd_rpc_t* srv = c->srv;
    Iob__V1__WaitRequest* req =
        (Iob__V1__WaitRequest*)iob_wire_unpack(&iob__v1__wait_request__descriptor, c->payload);
    if (req == NULL) {
        iobd__call_finish(c, ZX_ERR_INVALID_ARGS, NULL, "malformed WaitRequest");
        return;
    }
    iobd_wait_state_t* w = &c->u.wait;
    w->handle = req->handle;
    w->want = req->signals;
    w->watch = req->watch;
    int64_t timeout = req->timeout_ns;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    uint64_t sid;
    zx_status_t st = iobd__call_session(c, &sid);
    if (st != ZX_OK) {
        iobd__call_finish(c, st, NULL, "no valid iob-session");
        return;
    }
    zx_signals_t s1;
    zx_koid_t koid;
    st = iob_core_signals(srv->core, (iob_session_id_t){sid}, w->handle, &s1, &koid);
    if (st != ZX_OK) {
        iobd__call_finish(c, st, NULL, iob_core_error_detail());
        return;
    }
    int64_t now = iobd__now_ns();
    w->deadline_ns = timeout < 0 ? INT64_MAX : (timeout > INT64_MAX - now ? INT64_MAX : now + timeout);
    w->observed = s1;

    pthread_mutex_lock(&srv->lock);
    iobd_session_t* s = iobd__session_find_locked(srv, sid);
    if (s == NULL || s->closed) {
        pthread_mutex_unlock(&srv->lock);
        iobd__call_finish(c, ZX_ERR_BAD_HANDLE, NULL, "session ended");
        return;
    }
    uint32_t max_waits = srv->config.max_waits_per_session;
    if (max_waits != 0 && s->waits >= max_waits) {
        pthread_mutex_unlock(&srv->lock);
        IOBD_DEBUG("session %" PRIu64 ": Wait refused, %u in progress", sid, (unsigned)max_waits);
        iobd__call_finish(c, ZX_ERR_NO_RESOURCES, NULL,
                          "too many Wait calls in progress for this session");
        return;
    }
    w->hent = iobd__hent_add_locked(srv, s, w->handle, koid);
    if (w->hent == NULL) {
        pthread_mutex_unlock(&srv->lock);
        iobd__call_finish(c, ZX_ERR_NO_MEMORY, NULL, NULL);
        return;
    }
    w->next_waiter = srv->waiters;
    w->prev_waiter = NULL;
    if (srv->waiters != NULL) {
        srv->waiters->u.wait.prev_waiter = c;
    }
    srv->waiters = c;
    w->registered = true;
    s->waits++;
    iobd__close_chain_locked(c);
    pthread_mutex_unlock(&srv->lock);

    /*
     * Read the state again now that events reach the waiter: a change between the first
     * read and the registration would otherwise be lost. An event seen meanwhile is newer.
     */
    zx_signals_t s2;
    zx_status_t st2 = iob_core_signals(srv->core, (iob_session_id_t){sid}, w->handle, &s2, &koid);
    pthread_mutex_lock(&srv->lock);
    if (st2 == ZX_OK && w->events_seen == 0) {
        w->observed = s2;
    } else if (st2 != ZX_OK) {
        w->handle_closed = true;
    }
    iobd__wait_eval_locked(srv, c, iobd__now_ns());
    pthread_mutex_unlock(&srv->lock);
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

void iobd__flush(iobd_rpc_t* srv) {
    pthread_mutex_lock(&srv->lock);
    while (srv->dirty_sessions != NULL) {
        iobd_session_t* s = srv->dirty_sessions;
        srv->dirty_sessions = s->next_dirty;
        s->dirty = false;
        iobd__session_send_next_locked(s);
    }
    int64_t now = iobd__now_ns();
    iobd_call_t* next;
    for (iobd_call_t* w = srv->waiters; w != NULL; w = next) {
        next = w->u.wait.next_waiter;
        if (w->u.wait.dirty || now >= w->u.wait.deadline_ns) {
            w->u.wait.dirty = false;
            iobd__wait_eval_locked(srv, w, now);
        }
    }
    pthread_mutex_unlock(&srv->lock);
}

/* ---- OpenSession ---- */

void iobd__open_session(iobd_call_t* c) {
    iobd_rpc_t* srv = c->srv;
    Iob__V1__OpenSessionRequest* req = (Iob__V1__OpenSessionRequest*)iob_wire_unpack(
        &iob__v1__open_session_request__descriptor, c->payload);
    if (req == NULL) {
        iobd__call_finish(c, ZX_ERR_INVALID_ARGS, NULL, "malformed OpenSessionRequest");
        return;
    }
    /* Logged below: escaped, since a newline in it would forge a log line. */
    char client_name[160];
    iobd_log_escape(req->client_name, SIZE_MAX, client_name, sizeof client_name);
    bool no_events = req->no_events;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    bool local = iobd__peer_is_local(c->peer);
    iobd_cred_t cred = {.valid = false, .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    if (local) {
        iobd__peer_cred(srv, c->peer, &cred);
    }
    /*
     * The per-uid budget is taken before anything is allocated for the session, so a
     * client at its budget costs iobd nothing but the refusal.
     */
    bool uid_counted = false;
    if (local && cred.uid != 0 && cred.uid != geteuid()) {
        pthread_mutex_lock(&srv->lock);
        uid_counted = iobd__uid_session_take_locked(srv, cred.uid);
        pthread_mutex_unlock(&srv->lock);
        if (!uid_counted) {
            IOBD_DEBUG("OpenSession from uid %d refused: %u sessions open (max-sessions-per-uid)",
                       (int)cred.uid, (unsigned)srv->config.max_sessions_per_uid);
            iob_metrics_refused(IOB_METRICS_REFUSED_SESSION_CAP);
            iobd__call_finish(c, ZX_ERR_NO_RESOURCES, NULL,
                              "too many open sessions for this uid (max-sessions-per-uid)");
            return;
        }
    }
    iob_session_cred_t sc = {.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
    iob_session_id_t sid;
    zx_status_t st = iob_core_session_open(srv->core, &sc, &sid);
    if (st != ZX_OK) {
        if (uid_counted) {
            pthread_mutex_lock(&srv->lock);
            iobd__uid_session_give_locked(srv, cred.uid);
            pthread_mutex_unlock(&srv->lock);
        }
        iobd__call_finish(c, st, NULL, iob_core_error_detail());
        return;
    }
    iobd_session_t* s = calloc(1, sizeof *s);
    char* peer = strdup(c->peer);
    if (s == NULL || peer == NULL ||
        getrandom(s->secret, sizeof s->secret, 0) != (ssize_t)sizeof s->secret) {
        free(s);
        free(peer);
        if (uid_counted) {
            pthread_mutex_lock(&srv->lock);
            iobd__uid_session_give_locked(srv, cred.uid);
            pthread_mutex_unlock(&srv->lock);
        }
        iob_core_session_close(srv->core, sid);
        iob_core_session_release_mappings(srv->core, sid);
        iobd__call_finish(c, ZX_ERR_NO_RESOURCES, NULL, "cannot set up the session");
        return;
    }
    s->id = sid.value;
    s->peer = peer;
    s->local = local;
    s->events_off = no_events;
    s->cred_valid = local && cred.valid;
    s->cred_pid = cred.pid;
    s->cred_uid = cred.uid;
    s->uid_counted = uid_counted;
    s->pidfd = -1;
    if (local && cred.valid && cred.pid > 0) {
        /* Opened now, while the connection proves the process is alive: no pid reuse. */
        s->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
    }
    s->stream = c;
    c->session = s;
    c->session_id = s->id;

    Iob__V1__SessionOpened o = IOB__V1__SESSION_OPENED__INIT;
    o.session_id = s->id;
    o.secret.data = s->secret;
    o.secret.len = sizeof s->secret;
    o.page_size = (uint32_t)iob_core_page_size(srv->core);
    o.backing = (char*)(uintptr_t)iob_backing_name(srv->backing);
    o.broker_path = (char*)(uintptr_t)(local && srv->broker_path ? srv->broker_path : "");
    o.server_version = (char*)(uintptr_t)(srv->version ? srv->version : "");
    Iob__V1__SessionMessage m = IOB__V1__SESSION_MESSAGE__INIT;
    m.kind_case = IOB__V1__SESSION_MESSAGE__KIND_OPENED;
    m.opened = &o;

    pthread_mutex_lock(&srv->lock);
    s->next_in_bucket = srv->sessions[s->id % IOBD_SESSION_BUCKETS];
    srv->sessions[s->id % IOBD_SESSION_BUCKETS] = s;
    srv->session_count++;
    bool ok = iobd__close_chain_locked(c);
    if (ok) {
        iobd__send_locked(c, &m.base);
    }
    pthread_mutex_unlock(&srv->lock);
    IOBD_INFO("session %" PRIu64 " opened (%s, pid %d uid %d, \"%s\")", s->id, c->peer,
              (int)cred.pid, (int)cred.uid, client_name);
    if (!ok) {
        /* The call is already gone: no close completion will end the session. */
        pthread_mutex_lock(&srv->lock);
        s->closed = true;
        iobd__session_unlink_locked(srv, s);
        if (s->uid_counted) {
            s->uid_counted = false;
            iobd__uid_session_give_locked(srv, s->cred_uid);
        }
        if (s->pidfd >= 0) {
            close(s->pidfd);
            s->pidfd = -1;
        }
        pthread_mutex_unlock(&srv->lock);
        iob_core_session_close(srv->core, sid);
        iob_core_session_release_mappings(srv->core, sid);
    }
}

/*
 * Adds an ended session to the watch of its process. One pidfd per process however many of
 * its sessions end: *pidfd (the session's own, opened while the process was alive) becomes
 * the watch's, or is closed when a watch of that process exists. A watch whose process has
 * already exited (pidfd readable) is not joined: the pid may name a new process now.
 * False on no memory (the caller releases the mappings at once).
 */
static bool iobd__watch_add_locked(iobd_rpc_t* srv, pid_t pid, int* pidfd, uint64_t session_id) {
    iobd_pidwatch_t* pw = srv->watches;
    for (; pw != NULL; pw = pw->next) {
        struct pollfd pfd = {.fd = pw->pidfd, .events = POLLIN};
        if (pw->pid == pid && poll(&pfd, 1, 0) == 0) {
            break;
        }
    }
    bool fresh = pw == NULL;
    if (fresh) {
        pw = calloc(1, sizeof *pw);
        if (pw == NULL) {
            return false;
        }
        pw->srv = srv;
        pw->pid = pid;
        pw->pidfd = -1;
    }
    if (pw->session_count == pw->session_cap) {
        size_t cap = pw->session_cap == 0 ? 4 : 2 * pw->session_cap;
        uint64_t* ids = realloc(pw->session_ids, cap * sizeof *ids);
        if (ids == NULL) {
            if (fresh) {
                free(pw);
            }
            return false;
        }
        pw->session_ids = ids;
        pw->session_cap = cap;
    }
    pw->session_ids[pw->session_count++] = session_id;
    if (fresh) {
        pw->pidfd = *pidfd;
        *pidfd = -1;
        pw->next = srv->watches;
        srv->watches = pw;
    }
    return true;
}

/*
 * The session's call ended: its handles close now. Its mapping records stay until its
 * process exits only if the map broker ever attached it (no other way makes them);
 * otherwise the session is forgotten at once, so a client opening and cancelling
 * sessions leaves nothing behind.
 */
static void iobd__session_end(iobd_rpc_t* srv, iobd_session_t* s) {
    pthread_mutex_lock(&srv->lock);
    s->closed = true;
    iobd__session_unlink_locked(srv, s);
    if (s->uid_counted) {
        s->uid_counted = false;
        iobd__uid_session_give_locked(srv, s->cred_uid);
    }
    pthread_mutex_unlock(&srv->lock);
    iob_session_id_t sid = {s->id};
    zx_status_t st = iob_core_session_close(srv->core, sid);
    if (st != ZX_OK) {
        IOBD_WARN("session %" PRIu64 ": close: %s", s->id, zx_status_get_string(st));
    }
    /* Handles the observer did not report (none expected) must not outlive the session. */
    pthread_mutex_lock(&srv->lock);
    while (s->hents != NULL) {
        iobd__hent_remove_locked(srv, s->hents);
    }
    bool watch = false;
    if (s->local && s->attached && s->pidfd >= 0 && !atomic_load(&srv->shutting_down)) {
        watch = iobd__watch_add_locked(srv, s->cred_pid, &s->pidfd, s->id);
    }
    if (s->pidfd >= 0) {
        close(s->pidfd);
        s->pidfd = -1;
    }
    pthread_mutex_unlock(&srv->lock);
    IOBD_INFO("session %" PRIu64 " ended%s", s->id,
              watch ? "; mappings released when the process exits" : "");
    if (watch) {
        if (srv->wake_alive) {
            uv_async_send(&srv->wake);
        }
    } else {
        /* Never attached (no mapping records), remote, or a process that cannot be watched. */
        iob_core_session_release_mappings(srv->core, sid);
    }
}

static void iobd__pidwatch_free(iobd_pidwatch_t* pw) {
    if (pw->pidfd >= 0) {
        close(pw->pidfd);
    }
    free(pw->session_ids);
    free(pw);
}

static void iobd__pidwatch_closed(uv_handle_t* h) {
    iobd__pidwatch_free(h->data);
}

static void iobd__pidwatch_unlink_locked(iobd_rpc_t* srv, iobd_pidwatch_t* pw) {
    iobd_pidwatch_t** pp = &srv->watches;
    while (*pp != NULL && *pp != pw) {
        pp = &(*pp)->next;
    }
    if (*pp == pw) {
        *pp = pw->next;
    }
}

static void iobd__pidwatch_release(iobd_rpc_t* srv, const uint64_t* ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        iob_core_session_release_mappings(srv->core, (iob_session_id_t){ids[i]});
        IOBD_DEBUG("session %" PRIu64 ": process exited, mappings released", ids[i]);
    }
}

static void iobd__pidwatch_fired(uv_poll_t* p, int status, int events) {
    (void)status;
    (void)events;
    iobd_pidwatch_t* pw = p->data;
    iobd_rpc_t* srv = pw->srv;
    /* Unlinked first: no session joins a watch whose process is gone. */
    pthread_mutex_lock(&srv->lock);
    iobd__pidwatch_unlink_locked(srv, pw);
    pthread_mutex_unlock(&srv->lock);
    iobd__pidwatch_release(srv, pw->session_ids, pw->session_count);
    uv_close((uv_handle_t*)&pw->poll, iobd__pidwatch_closed);
    iobd__flush(srv);
}

/* Loop thread: starts the watches the CQ thread added. */
static void iobd__start_watches(iobd_rpc_t* srv) {
    iobd_pidwatch_t* failed = NULL;
    pthread_mutex_lock(&srv->lock);
    iobd_pidwatch_t** pp = &srv->watches;
    while (*pp != NULL) {
        iobd_pidwatch_t* pw = *pp;
        if (pw->started) {
            pp = &pw->next;
            continue;
        }
        pw->poll.data = pw;
        if (uv_poll_init(srv->loop, &pw->poll, pw->pidfd) != 0) {
            *pp = pw->next;
            pw->next = failed;
            failed = pw;
            continue;
        }
        pw->started = true;
        if (uv_poll_start(&pw->poll, UV_READABLE, iobd__pidwatch_fired) != 0) {
            /* Released below, then closed (a started watch is a libuv handle). */
            *pp = pw->next;
            pw->next = failed;
            failed = pw;
            continue;
        }
        pp = &pw->next;
    }
    pthread_mutex_unlock(&srv->lock);
    while (failed != NULL) {
        iobd_pidwatch_t* pw = failed;
        failed = pw->next;
        iobd__pidwatch_release(srv, pw->session_ids, pw->session_count);
        if (pw->started) {
            uv_close((uv_handle_t*)&pw->poll, iobd__pidwatch_closed);
        } else {
            iobd__pidwatch_free(pw);
        }
    }
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
        err = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, srv->cq,
                                       srv->cq, &c->t_new);
    } else {
        err = grpc_server_request_registered_call(srv->server, srv->methods[method], &c->call,
                                                  &c->deadline, &c->md,
                                                  method == IOB_WIRE_M_WRITE_REGION ? NULL
                                                                                    : &c->payload,
                                                  srv->cq, srv->cq, &c->t_new);
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
        return iobd__ct_equal((const uint8_t*)v + 7, (const uint8_t*)srv->token, tlen);
    }
    return false;
}

static void iobd__on_new(iobd_call_t* c) {
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
        return;
    }
    if (!iobd__peer_is_local(c->peer) && srv->token != NULL && !iobd__token_ok(srv, c)) {
        IOBD_WARN("%s: refused call without a valid bearer token",
                  c->peer != NULL ? c->peer : "?");
        iob_metrics_refused(IOB_METRICS_REFUSED_AUTH);
        iobd__call_finish_code(c, ZX_ERR_ACCESS_DENIED, GRPC_STATUS_UNAUTHENTICATED, NULL,
                               "missing or invalid bearer token");
        return;
    }
    if (c->method == IOB_WIRE_M_OPEN_SESSION) {
        iobd__open_session(c);
    } else if (c->method == IOB_WIRE_M_WAIT) {
        iobd__wait_start(c);
    } else {
        iobd__dispatch_new(c);
    }
}

static void iobd__on_event(iobd_tag_t* t, bool ok) {
    iobd_call_t* c = t->call;
    iobd_rpc_t* srv = c->srv;
    if (t->kind == IOBD_TAG_NEW) {
        if (!ok) {
            iobd__call_free(c); /* shutting down: the armed request was cancelled */
            return;
        }
        iobd__on_new(c);
    } else {
        bool run_read = false, run_write = false, end_session = false;
        grpc_byte_buffer* msg = NULL;
        pthread_mutex_lock(&srv->lock);
        c->refs--;
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
    pthread_mutex_lock(&srv->lock);
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
    pthread_mutex_lock(&srv->lock);
    iobd_pidwatch_t* list = srv->watches;
    srv->watches = NULL;
    pthread_mutex_unlock(&srv->lock);
    while (list != NULL) {
        iobd_pidwatch_t* pw = list;
        list = pw->next;
        if (pw->started) {
            uv_close((uv_handle_t*)&pw->poll, iobd__pidwatch_closed);
        } else {
            iobd__pidwatch_free(pw);
        }
    }
    if (srv->done_cb != NULL) {
        void (*cb)(void*) = srv->done_cb;
        srv->done_cb = NULL;
        cb(srv->done_ctx);
    }
}

static char* iobd__strdup_or_null(const char* s) {
    return s != NULL ? strdup(s) : NULL;
}

zx_status_t iobd_rpc_start(uv_loop_t* loop, const iobd_rpc_config_t* config, iobd_rpc_t** out) {
    if (loop == NULL || config == NULL || out == NULL || config->listen_count == 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    iobd_rpc_t* srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    srv->config = *config;
    srv->loop = loop;
    srv->backing = config->core.backing;
    pthread_mutex_init(&srv->lock, NULL);
    atomic_init(&srv->shutting_down, false);
    atomic_init(&srv->live_calls, 0);
    atomic_init(&srv->cq_done, false);
    srv->listen = calloc(config->listen_count, sizeof(char*));
    for (size_t i = 0; srv->listen != NULL && i < config->listen_count; i++) {
        srv->listen[i] = strdup(config->listen[i]);
    }
    srv->config.listen = (const char* const*)srv->listen;
    if (config->allow_uid_count > 0) {
        srv->allow_uids = malloc(config->allow_uid_count * sizeof(uid_t));
        memcpy(srv->allow_uids, config->allow_uids, config->allow_uid_count * sizeof(uid_t));
    }
    if (config->allow_gid_count > 0) {
        srv->allow_gids = malloc(config->allow_gid_count * sizeof(gid_t));
        memcpy(srv->allow_gids, config->allow_gids, config->allow_gid_count * sizeof(gid_t));
    }
    srv->config.allow_uids = srv->allow_uids;
    srv->config.allow_gids = srv->allow_gids;
    if (config->operator_uid_count > 0) {
        srv->operator_uids = malloc(config->operator_uid_count * sizeof(uid_t));
        memcpy(srv->operator_uids, config->operator_uids,
               config->operator_uid_count * sizeof(uid_t));
    }
    if (config->operator_gid_count > 0) {
        srv->operator_gids = malloc(config->operator_gid_count * sizeof(gid_t));
        memcpy(srv->operator_gids, config->operator_gids,
               config->operator_gid_count * sizeof(gid_t));
    }
    srv->config.operator_uids = srv->operator_uids;
    srv->config.operator_gids = srv->operator_gids;
    srv->token = iobd__strdup_or_null(config->token);
    srv->broker_path = iobd__strdup_or_null(config->broker_path);
    srv->version = iobd__strdup_or_null(config->version);
    srv->config.token = srv->token;
    srv->config.broker_path = srv->broker_path;
    srv->config.version = srv->version;
    /* TLS file names are only used during start. */
    srv->config.tls_cert_file = srv->config.tls_key_file = srv->config.tls_client_ca_file = NULL;
    srv->shutdown_tag = (iobd_tag_t){NULL, IOBD_TAG_NEW};

    grpc_init();
    iob_core_config_t cc = config->core;
    cc.observer.ctx = srv;
    cc.observer.signals_changed = iobd__obs_signals_changed;
    cc.observer.handle_closed = iobd__obs_handle_closed;
    cc.observer.shared_region_updated = iobd__obs_shared_region_updated;
    iob_metrics_set_methods(IOB_METRICS_RPC, iobd__method_names, IOB_WIRE_M_COUNT);
    zx_status_t st = iob_core_create(&cc, &srv->core);
    if (st != ZX_OK) {
        IOBD_ERROR("core: %s %s", zx_status_get_string(st), iob_core_error_detail());
        srv->core = NULL;
        iobd_rpc_destroy(srv);
        return st;
    }

    grpc_arg args[6];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char*)(uintptr_t)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)IOB_WIRE_MAX_MESSAGE;
    /* Server pings find TCP clients that vanished, so their sessions end. */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char*)(uintptr_t)GRPC_ARG_KEEPALIVE_TIME_MS;
    args[1].value.integer = 60000;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char*)(uintptr_t)GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
    args[2].value.integer = 20000;
    /* Clients ping every 30 s; the default (5 min) would answer them with GOAWAY. */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = (char*)(uintptr_t)GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS;
    args[3].value.integer = 10000;
    args[4].type = GRPC_ARG_INTEGER;
    args[4].key = (char*)(uintptr_t)GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
    args[4].value.integer = 1;
    args[5].type = GRPC_ARG_INTEGER;
    args[5].key = (char*)(uintptr_t)GRPC_ARG_HTTP2_MAX_PING_STRIKES;
    args[5].value.integer = 0;
    grpc_channel_args ca = {6, args};
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
    srv->config.tls_cert_file = config->tls_cert_file;
    srv->config.tls_key_file = config->tls_key_file;
    srv->config.tls_client_ca_file = config->tls_client_ca_file;
    st = iobd__listen_all(srv);
    srv->config.tls_cert_file = srv->config.tls_key_file = srv->config.tls_client_ca_file = NULL;
    if (st != ZX_OK) {
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
        return st;
    }
    uv_async_init(loop, &srv->wake, iobd__on_wake);
    srv->wake.data = srv;
    srv->wake_alive = true;
    grpc_server_start(srv->server);
    for (unsigned m = 0; m <= IOBD_METHOD_UNKNOWN; m++) {
        iobd__request(srv, m);
    }
    if (pthread_create(&srv->cq_thread, NULL, iobd__cq_main, srv) != 0) {
        IOBD_ERROR("cannot start the completion-queue thread");
        abort();
    }
    srv->cq_thread_started = true;
    *out = srv;
    return ZX_OK;
}

iob_core_t* iobd_rpc_core(iobd_rpc_t* rpc) {
    return rpc->core;
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
    if (srv->core != NULL) {
        /* Observer callbacks from here find no sessions and no loop to wake. */
        srv->wake_alive = false;
        iob_core_destroy(srv->core);
        srv->core = NULL;
    }
    for (size_t b = 0; b < srv->hent_buckets; b++) {
        while (srv->by_handle[b] != NULL) {
            iobd__hent_remove_locked(srv, srv->by_handle[b]);
        }
    }
    free(srv->by_handle);
    free(srv->by_koid);
    for (size_t b = 0; b < IOBD_SESSION_BUCKETS; b++) {
        while (srv->sessions[b] != NULL) {
            iobd_session_t* s = srv->sessions[b];
            srv->sessions[b] = s->next_in_bucket;
            if (s->stream == NULL) {
                iobd__session_free(s);
            }
        }
    }
    while (srv->watches != NULL) {
        /* Only watches the loop never started can be left: the loop closed the others. */
        iobd_pidwatch_t* pw = srv->watches;
        srv->watches = pw->next;
        iobd__pidwatch_free(pw);
    }
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
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    grpc_shutdown();
}
