/* SPDX-License-Identifier: MIT */
/* The map broker's closer thread (closer.h). */
#include "server/broker/closer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


/* Descriptors found inside one client descriptor that the closer takes apart itself. */
#define IOBD__CLOSER_NESTED_BUDGET 4096
#define IOBD__CLOSER_NESTED_DEPTH 4

static void iobd__close_nested(int fd, int depth, int* budget);

/*
 * A Unix socket holds the descriptors of the messages queued in it (and a listening one,
 * those of the connections in its backlog); its close would release them in this thread,
 * where one that lingers would stall the closer. So what is queued is received, and each
 * descriptor closed the same way, before the socket is closed. Best effort and bounded:
 * it stops at an empty read (a zero-length message reads as one), past the budget, or
 * nested deeper; what remains is released by the close as before.
 */
static void iobd__drain_unix(int fd, int depth, int* budget) {
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0 || v != AF_UNIX) {
        return;
    }
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v != 0) {
        /* accept has no MSG_DONTWAIT: the (client's) file description goes non-blocking. */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
            return;
        }
        int c;
        while (*budget > 0 && (c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            (*budget)--;
            iobd__close_nested(c, depth + 1, budget);
        }
        return;
    }
    while (*budget > 0) {
        char data[256];
        int fds[IOB_FDPASS_RECV_MAX_FDS];
        size_t n = 0;
        size_t nfds = 0;
        zx_status_t st = iob_fd_recv_all_flags(fd, data, sizeof data, MSG_DONTWAIT, &n, fds,
                                               &nfds);
        for (size_t i = 0; i < nfds; i++) {
            (*budget)--;
            iobd__close_nested(fds[i], depth + 1, budget);
        }
        if ((st != ZX_OK && st != ZX_ERR_IO_DATA_INTEGRITY) || (n == 0 && nfds == 0)) {
            return;
        }
        (*budget)--;
    }
}

/*
 * Closes a descriptor a client controlled. A socket may linger in close for as long as its
 * SO_LINGER says: it is reset instead (harmless on Unix sockets, ENOTSOCK on files).
 */
static void iobd__close_nested(int fd, int depth, int* budget) {
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    if (depth < IOBD__CLOSER_NESTED_DEPTH) {
        iobd__drain_unix(fd, depth, budget);
    }
    close(fd);
}

static void iobd__close_now(int fd) {
    int budget = IOBD__CLOSER_NESTED_BUDGET;
    iobd__close_nested(fd, 0, &budget);
}

/* uid's pending count (mu held); created when `create` (NULL if memory ran out). */
static iobd__uid_pending_t* iobd__closer_uid(iobd__closer_t* c, uid_t uid, bool create) {
    for (size_t i = 0; i < c->nuids; i++) {
        if (c->uids[i].uid == uid) {
            return &c->uids[i];
        }
    }
    if (!create) {
        return NULL;
    }
    if (c->nuids == c->uids_cap) {
        size_t cap = c->uids_cap != 0 ? 2 * c->uids_cap : 8;
        iobd__uid_pending_t* grown = realloc(c->uids, cap * sizeof *grown);
        if (grown == NULL) {
            return NULL;
        }
        c->uids = grown;
        c->uids_cap = cap;
    }
    c->uids[c->nuids] = (iobd__uid_pending_t){.uid = uid, .pending = 0};
    return &c->uids[c->nuids++];
}

static void* iobd__closer_main(void* arg) {
    iobd__closer_t* c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->count == 0 && !c->exiting) {
            pthread_cond_wait(&c->cv, &c->mu);
        }
        if (c->count == 0) {
            break;
        }
        iobd__closing_t e = c->ring[c->head];
        c->head = (c->head + 1) % c->cap;
        c->count--;
        pthread_mutex_unlock(&c->mu);
        iobd__close_now(e.fd);
        pthread_mutex_lock(&c->mu);
        if (e.charged) {
            iobd__uid_pending_t* u = iobd__closer_uid(c, e.uid, false);
            if (u != NULL && --u->pending == 0) {
                *u = c->uids[--c->nuids];
            }
        }
        /* The loop re-checks what it paused for; a miss just pauses it again. */
        if (c->want_wake && c->wake != NULL) {
            c->want_wake = false;
            uv_async_send(c->wake);
        }
    }
    pthread_mutex_unlock(&c->mu);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->uids);
    free(c->ring);
    free(c);
    return NULL;
}

zx_status_t iobd__closer_start(size_t cap, uv_async_t* wake, iobd__closer_t** out) {
    iobd__closer_t* c = calloc(1, sizeof *c);
    if (c == NULL || (c->ring = calloc(cap, sizeof *c->ring)) == NULL) {
        free(c);
        return ZX_ERR_NO_MEMORY;
    }
    c->cap = cap;
    c->wake = wake;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    /* Signals are the loop's business (uv_signal): the closer takes none. */
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, iobd__closer_main, c);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        free(c->ring);
        free(c);
        return ZX_ERR_NO_RESOURCES;
    }
    *out = c;
    return ZX_OK;
}

/*
 * Hands fd to the closer thread. `reserved`: it fills the slot its connection (or the
 * listening socket) reserved. The queue cannot be full here (every caller checked for
 * room or holds a reservation); were it full anyway, the descriptor is reset and closed
 * on the spot rather than leaked.
 */
static void iobd__closer_push_entry(iobd__closer_t* c, int fd, bool reserved, const uid_t* uid) {
    pthread_mutex_lock(&c->mu);
    if (reserved && c->reserved > 0) {
        c->reserved--;
    }
    bool queued = c->count < c->cap;
    if (queued) {
        iobd__closing_t e = {.fd = fd, .charged = false, .uid = 0};
        iobd__uid_pending_t* u = uid != NULL ? iobd__closer_uid(c, *uid, true) : NULL;
        if (u != NULL) {
            u->pending++;
            e.charged = true;
            e.uid = *uid;
        }
        c->ring[(c->head + c->count) % c->cap] = e;
        c->count++;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    if (!queued) {
        iobd__close_now(fd);
    }
}

void iobd__closer_push(iobd__closer_t* c, int fd, bool reserved) {
    iobd__closer_push_entry(c, fd, reserved, NULL);
}

/* Descriptors a client of `uid` sent: charged to it until closed. */
void iobd__closer_push_from(iobd__closer_t* c, const int* fds, size_t n, uid_t uid) {
    for (size_t i = 0; i < n; i++) {
        iobd__closer_push_entry(c, fds[i], false, &uid);
    }
}

/*
 * True when a message from `uid` may be read: whatever it installs fits the queue and the
 * uid's share. When not, the closer wakes the loop after its next close.
 */
bool iobd__closer_room_for(iobd__closer_t* c, uid_t uid) {
    pthread_mutex_lock(&c->mu);
    const iobd__uid_pending_t* u = iobd__closer_uid(c, uid, false);
    size_t pending = u != NULL ? u->pending : 0;
    bool ok = c->cap - c->count - c->reserved >= IOB_FDPASS_RECV_MAX_FDS &&
              pending + IOB_FDPASS_RECV_MAX_FDS <= IOBD__CLOSER_PER_UID;
    if (!ok) {
        c->want_wake = true;
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/*
 * True when `need` unreserved slots are free (and, with reserve, takes one of them as a
 * reservation). When they are not, the closer wakes the loop after its next close.
 */
bool iobd__closer_room(iobd__closer_t* c, size_t need, bool reserve) {
    pthread_mutex_lock(&c->mu);
    bool ok = c->cap - c->count - c->reserved >= need;
    if (!ok) {
        c->want_wake = true;
    } else if (reserve) {
        c->reserved++;
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

void iobd__closer_unreserve(iobd__closer_t* c) {
    pthread_mutex_lock(&c->mu);
    c->reserved--;
    pthread_mutex_unlock(&c->mu);
}

size_t iobd__closer_pending(iobd__closer_t* c) {
    pthread_mutex_lock(&c->mu);
    size_t n = c->count;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* The broker is gone: the thread closes what is queued, frees the queue and ends. */
void iobd__closer_exit(iobd__closer_t* c) {
    pthread_mutex_lock(&c->mu);
    c->exiting = true;
    c->wake = NULL;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void iobd__closer_forget_wake(iobd__closer_t* c) {
    pthread_mutex_lock(&c->mu);
    c->wake = NULL;
    pthread_mutex_unlock(&c->mu);
}

void iobd__closer_reserve(iobd__closer_t* c) {
    pthread_mutex_lock(&c->mu);
    c->reserved++;
    pthread_mutex_unlock(&c->mu);
}
