/* SPDX-License-Identifier: MIT */
/*
 * Sessions of iobd's gRPC service: OpenSession (the peer's credentials go to the core, which
 * owns the session and its secret; the per-uid cap), how a call proves its session
 * (iobd__call_session: the core checks the secret, this file the connection), the end of a
 * session, the pidfd watches that keep an ended session's mapping records until its
 * process exits, and what a non-operator may see.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

_Static_assert(IOB_CORE_SECRET_SIZE == IOB_WIRE_SECRET_SIZE,
               "one secret on the wire and in the core");

/* ---- Sessions ---- */

iobd_session_t* iobd__session_find_locked(iobd_rpc_t* srv, uint64_t id) {
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
    /* The core first: no core call under srv->lock (lock order). */
    if (!iob_core_session_verify(srv->core, id, secret)) {
        return ZX_ERR_BAD_HANDLE;
    }
    zx_status_t st = ZX_ERR_BAD_HANDLE;
    pthread_mutex_lock(&srv->lock);
    iobd_session_t* s = iobd__session_find_locked(srv, id);
    if (s != NULL && !s->closed && c->peer != NULL && strcmp(s->peer, c->peer) == 0) {
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

/* ---- What a non-operator may see (ListIobs, ServerInfo) ---- */

void iobd__uid_figures(iobd_rpc_t* srv, uid_t uid, uint64_t* sessions, uint64_t* handles) {
    *handles = iob_core_uid_handles(srv->core, uid); /* before srv->lock: lock order */
    pthread_mutex_lock(&srv->lock);
    *sessions = iobd__uid_sessions_locked(srv, uid);
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
    iob_session_cred_t sc = {.pid = cred.pid,
                             .uid = cred.uid,
                             .gid = cred.gid,
                             .local = local,
                             .known = local && cred.valid};
    iob_session_id_t sid;
    uint8_t secret[IOB_CORE_SECRET_SIZE];
    iobd_session_t* s = calloc(1, sizeof *s);
    char* peer = strdup(c->peer);
    bool made = s != NULL && peer != NULL;
    zx_status_t st = made ? iob_core_session_open(srv->core, &sc, &sid, secret) : ZX_ERR_NO_MEMORY;
    if (st != ZX_OK) {
        free(s);
        free(peer);
        if (uid_counted) {
            pthread_mutex_lock(&srv->lock);
            iobd__uid_session_give_locked(srv, cred.uid);
            pthread_mutex_unlock(&srv->lock);
        }
        iobd__call_finish(c, st, NULL,
                          made ? iob_core_error_detail() : "cannot set up the session");
        return;
    }
    s->id = sid.value;
    s->peer = peer;
    s->events_off = no_events;
    s->uid_counted = uid_counted;
    s->uid = cred.uid;
    s->pidfd = -1;
    if (sc.known && cred.pid > 0) {
        s->pid = cred.pid;
        /* Opened now, while the connection proves the process is alive: no pid reuse. */
        s->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
    }
    s->stream = c;
    c->session = s;
    c->session_id = s->id;

    Iob__V1__SessionOpened o = IOB__V1__SESSION_OPENED__INIT;
    o.session_id = s->id;
    o.secret.data = secret;
    o.secret.len = sizeof secret;
    o.page_size = (uint32_t)iob_core_page_size(srv->core);
    o.backing = (char*)(uintptr_t)iob_backing_name(iob_core_backing(srv->core));
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
    explicit_bzero(secret, sizeof secret); /* the message holds its own copy now */
    IOBD_INFO("session %" PRIu64 " opened (%s, pid %d uid %d, \"%s\")", s->id, c->peer,
              (int)cred.pid, (int)cred.uid, client_name);
    if (!ok) {
        /* The call is already gone: no close completion will end the session. */
        iobd__session_end(srv, s);
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
void iobd__session_end(iobd_rpc_t* srv, iobd_session_t* s) {
    pthread_mutex_lock(&srv->lock);
    s->closed = true;
    iobd__session_unlink_locked(srv, s);
    if (s->uid_counted) {
        s->uid_counted = false;
        iobd__uid_session_give_locked(srv, s->uid);
    }
    pthread_mutex_unlock(&srv->lock);
    iob_session_id_t sid = {s->id};
    zx_status_t st = iob_core_session_close(srv->core, sid);
    if (st != ZX_OK) {
        IOBD_WARN("session %" PRIu64 ": close: %s", s->id, zx_status_get_string(st));
    }
    /* Read after the close: a closed session cannot be attached any more. */
    bool attached = iob_core_session_attached(srv->core, sid);
    pthread_mutex_lock(&srv->lock);
    bool watch = false;
    if (attached && s->pidfd >= 0 && !atomic_load(&srv->shutting_down)) {
        watch = iobd__watch_add_locked(srv, s->pid, &s->pidfd, s->id);
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
void iobd__start_watches(iobd_rpc_t* srv) {
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

/* Loop thread, at shutdown: every watch goes (the loop closes the started ones). */
void iobd__watches_close(iobd_rpc_t* srv) {
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
}

/* iobd_rpc_destroy: the sessions left (those without a live stream) and unstarted watches. */
void iobd__sessions_free_all(iobd_rpc_t* srv) {
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
}
