/* SPDX-License-Identifier: MIT */
/*
 * Events of iobd's gRPC service: the core's observer callbacks (the core tells each change
 * once per handle, with its session), the session event streams they feed, and Wait calls.
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

/* A Wait names one handle of its own session; `what` changes each matching waiter. */
static bool iobd__waiters_of_locked(iobd_rpc_t* srv, iob_session_id_t session, zx_handle_t handle,
                                    void (*what)(iobd_wait_state_t* w, zx_signals_t signals),
                                    zx_signals_t signals) {
    bool any = false;
    for (iobd_call_t* w = srv->waiters; w != NULL; w = w->u.wait.next_waiter) {
        if (w->session_id == session.value && w->u.wait.handle == handle) {
            what(&w->u.wait, signals);
            w->u.wait.dirty = true;
            any = true;
        }
    }
    return any;
}

static void iobd__wait_saw_state(iobd_wait_state_t* w, zx_signals_t signals) {
    w->observed = signals;
    w->events_seen++;
}

static void iobd__wait_saw_strobe(iobd_wait_state_t* w, zx_signals_t signals) {
    (void)signals;
    if ((w->want & ZX_IOB_SHARED_REGION_UPDATED) != 0) {
        w->strobed = true;
    }
}

static void iobd__wait_saw_close(iobd_wait_state_t* w, zx_signals_t signals) {
    (void)signals;
    w->handle_closed = true;
}

static bool iobd__queue_for_locked(iobd_rpc_t* srv, iob_session_id_t session, zx_handle_t handle,
                                   zx_signals_t signals) {
    iobd_session_t* s = iobd__session_find_locked(srv, session.value);
    return s != NULL && iobd__queue_event_locked(srv, s, handle, signals);
}

static void iobd__obs_handle_signals(void* ctx, iob_session_id_t session, zx_handle_t handle,
                                     zx_koid_t koid, zx_signals_t signals) {
    (void)koid;
    iobd_rpc_t* srv = ctx;
    pthread_mutex_lock(&srv->lock);
    iobd__queue_for_locked(srv, session, handle, signals);
    iobd__waiters_of_locked(srv, session, handle, iobd__wait_saw_state, signals);
    pthread_mutex_unlock(&srv->lock);
    iobd__kick(srv);
}

/*
 * A record was written into a shared region: ZX_IOB_SHARED_REGION_UPDATED is strobed
 * (docs/zircon-iob.md A.7 step 6). Only what is armed right now sees it: waits whose mask
 * holds the bit, and the holder's session stream (as an event with the bit set; shared
 * regions have no other signal than user signals, which the event does not repeat).
 * Nothing is latched.
 */
static void iobd__obs_handle_strobed(void* ctx, iob_session_id_t session, zx_handle_t handle,
                                     zx_koid_t koid, zx_signals_t signals) {
    (void)koid;
    iobd_rpc_t* srv = ctx;
    pthread_mutex_lock(&srv->lock);
    bool any = iobd__queue_for_locked(srv, session, handle, signals | ZX_IOB_SHARED_REGION_UPDATED);
    any |= iobd__waiters_of_locked(srv, session, handle, iobd__wait_saw_strobe, signals);
    pthread_mutex_unlock(&srv->lock);
    /* Most writes have no one listening: wake nobody for them (the broker's writes run on
     * the loop thread, where a wake-up is one more loop iteration). */
    if (any) {
        iobd__kick(srv);
    }
}

static void iobd__obs_handle_closed(void* ctx, iob_session_id_t session, zx_handle_t handle) {
    iobd_rpc_t* srv = ctx;
    pthread_mutex_lock(&srv->lock);
    iobd__queue_for_locked(srv, session, handle, ZX_SIGNAL_HANDLE_CLOSED);
    iobd__waiters_of_locked(srv, session, handle, iobd__wait_saw_close, 0);
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

void iobd__observer_install(iobd_rpc_t* srv) {
    const iob_core_observer_t observer = {
        .ctx = srv,
        .handle_signals = iobd__obs_handle_signals,
        .handle_strobed = iobd__obs_handle_strobed,
        .handle_closed = iobd__obs_handle_closed,
    };
    iob_core_set_observer(srv->core, &observer);
}
