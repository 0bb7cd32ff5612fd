/* SPDX-License-Identifier: MIT */
/*
 * Events of iobd's gRPC service: the index of handles held by sessions (by value and by
 * koid), the core's observer callbacks that turn per-object changes into per-handle
 * events, the session event streams, and Wait calls.
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
#include "server/rpc/log.h"
#include "server/rpc/rpc_internal.h"

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

void iobd__hent_remove_locked(iobd_rpc_t* srv, iobd_hent_t* h) {
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
                              ZX_INFO_HANDLE_BASIC, &info, sizeof info, &actual, &avail) != ZX_OK) {
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
    s->events[(s->event_head + s->event_count) % s->event_cap] = (iobd_event_t){handle, signals};
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

void iobd__session_send_next_locked(iobd_session_t* s) {
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

/* ---- Waits ---- */

void iobd__waiter_unlink_locked(iobd_rpc_t* srv, iobd_call_t* c) {
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

void iobd__wait_eval_locked(iobd_rpc_t* srv, iobd_call_t* c, int64_t now) {
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
    w->deadline_ns =
        timeout < 0 ? INT64_MAX : (timeout > INT64_MAX - now ? INT64_MAX : now + timeout);
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

/* iobd_rpc_destroy: the index's entries and tables. */
void iobd__hents_free_all(iobd_rpc_t* srv) {
    for (size_t b = 0; b < srv->hent_buckets; b++) {
        while (srv->by_handle[b] != NULL) {
            iobd__hent_remove_locked(srv, srv->by_handle[b]);
        }
    }
    free(srv->by_handle);
    free(srv->by_koid);
    srv->by_handle = srv->by_koid = NULL;
    srv->hent_buckets = 0;
}

void iobd__observer_install(iobd_rpc_t* srv, iob_core_config_t* config) {
    config->observer.ctx = srv;
    config->observer.signals_changed = iobd__obs_signals_changed;
    config->observer.handle_closed = iobd__obs_handle_closed;
    config->observer.shared_region_updated = iobd__obs_shared_region_updated;
}
