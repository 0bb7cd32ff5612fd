/* SPDX-License-Identifier: MIT */
/*
 * The map broker: hands region fds to co-located clients over a SOCK_SEQPACKET socket
 * (see broker.h for the contract and shm/broker_wire.h for the messages).
 *
 * Every byte a client sends is hostile input: each datagram must have exactly the size of
 * its type, an fd a client sends is refused (and its connection ended) unless it is an
 * ALLOCATE_ID's blob memfd, and a reply that cannot be sent ends the connection (a client
 * that does not read its replies is not one we wait for). A grant whose reply could not
 * be delivered is taken back (iob_core_unmap), so the core never counts a mapping the
 * client cannot have made.
 *
 * Nothing on the loop waits on a client. Closing a descriptor can: a TCP socket with
 * SO_LINGER and unsent data blocks its last close for the linger time, a FUSE file's
 * flush waits on the FUSE server, and closing a Unix socket releases the fds still queued
 * in it (the kernel does that in the closing thread). So every descriptor a client
 * controls goes to one closer thread through a bounded queue (iobd__closer_t). Every open
 * connection holds a reserved slot in it for its own socket, and a connection is read
 * only when the queue has room for everything one message can install, within its uid's
 * share of the queue; when it does not (that uid's closes are slow), the connection is
 * not read until the closer has caught up. Only that client work waits, never the loop.
 * The blob memfd is checked with fcntl(F_GET_SEALS) before anything else touches it: only
 * shmem files answer, and neither that nor the fstat and pread that follow can wait on a
 * client.
 *
 * Ownership: the broker owns its listening socket, its connections and their uv_poll_t
 * handles. A connection is freed from its uv_close callback; the broker itself once the
 * last of its handles has closed (iobd_broker_stop sets that in motion).
 */
#include "server/broker/broker_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <zircon/status.h>

#include "server/broker/closer.h"
#include "server/broker/mediator.h"
#include "server/core/iob_metrics.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"
#include "shm/mediated_channel.h"
#include "shm/region.h"

#define IOBD__BROKER_DEFAULT_MODE 0660u
/*
 * Closer queue slots beyond the connections' reserved ones: several messages' worth of
 * descriptors (IOB_FDPASS_RECV_MAX_FDS each), so a stuck close pauses reading only after
 * a flood of them.
 */
#define IOBD__CLOSER_HEADROOM (8u * IOB_FDPASS_RECV_MAX_FDS)
/* Messages handled per readable event, so one busy client cannot starve the loop. */
#define IOBD__BROKER_BATCH 64
static int64_t iobd__broker_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Request types as the metrics' method label; 0 is a message that could not be parsed. */
static const char* const iobd__request_names[] = {"Invalid", "Attach",     "Map",    "Unmap",
                                                  "Import",  "Writev",     "AllocateId",
                                                  "Channel", "WritevPacked"};
#define IOBD__REQUEST_NAMES (sizeof iobd__request_names / sizeof iobd__request_names[0])

#define IOBD__BROKER_RX_SIZE (IOB_BROKER_MAX_MEDIATED_MSG + 1)

void iobd__log(iobd_broker_t* broker, int level, const char* fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (broker->config.log != NULL) {
        broker->config.log(broker->config.log_ctx, level, msg);
    } else if (level <= IOBD_BROKER_LOG_INFO) {
        fprintf(stderr, "iobd broker: %s\n", msg);
    }
}

static void iobd__maybe_free(iobd_broker_t* broker) {
    if (broker->stopping && broker->open_handles == 0) {
        iobd__closer_exit(broker->closer);
        free(broker->rx);
        free(broker->socket_path);
        free(broker);
    }
}

/* ---- Connections ---- */

static void iobd__conn_on_close(uv_handle_t* handle) {
    iobd__conn_t* conn = handle->data;
    iobd_broker_t* broker = conn->broker;
    if (--conn->open_handles > 0) {
        return;
    }
    iobd__closer_push(broker->closer, conn->fd, true);
    free(conn);
    broker->open_handles--;
    iobd__maybe_free(broker);
}

/*
 * Ends a connection. Mapping records granted through it are deliberately kept: the
 * process may still have the memory mapped (broker.h, "Lifetimes").
 */
void iobd__conn_close(iobd__conn_t* conn, const char* why) {
    if (conn->closing) {
        return;
    }
    conn->closing = true;
    iobd_broker_t* broker = conn->broker;
    iobd__log(broker, IOBD_BROKER_LOG_DEBUG, "connection of pid %ld closed: %s", (long)conn->pid,
              why);
    if (conn->prev != NULL) {
        conn->prev->next = conn->next;
    } else {
        broker->conns = conn->next;
    }
    if (conn->next != NULL) {
        conn->next->prev = conn->prev;
    }
    broker->stats.connections--;
    iobd_mediator_close(broker->mediator, conn->chan);
    conn->chan = NULL;
    uv_poll_stop(&conn->poll);
    uv_timer_stop(&conn->attach_timer);
    uv_close((uv_handle_t*)&conn->poll, iobd__conn_on_close);
    uv_close((uv_handle_t*)&conn->attach_timer, iobd__conn_on_close);
}

static void iobd__conn_on_attach_deadline(uv_timer_t* timer) {
    iobd__conn_t* conn = timer->data;
    if (!conn->attached && !conn->closing) {
        conn->broker->stats.attach_timeouts++;
        iobd__log(conn->broker, IOBD_BROKER_LOG_WARNING,
                  "pid %ld uid %ld did not attach in time", (long)conn->pid, (long)conn->uid);
        iobd__conn_close(conn, "attach deadline");
    }
}

/* Every reply leads with a status reply's fields, so its status is counted here. */
zx_status_t iobd__send_fds(iobd__conn_t* conn, const void* msg, size_t len, const int* fds,
                           unsigned nfds) {
    if (len >= sizeof(iob_broker_status_reply_t)) {
        const iob_broker_status_reply_t* r = msg;
        unsigned type = r->hdr.type & ~(unsigned)IOB_BROKER_REPLY;
        int64_t ns = iobd__broker_now_ns() - conn->broker->rx_start_ns;
        iob_metrics_call(IOB_METRICS_BROKER, type < IOBD__REQUEST_NAMES ? type : 0, r->status,
                         ns > 0 ? (uint64_t)ns : 0);
    }
    return iob_fd_send(conn->fd, msg, len, fds, nfds);
}

zx_status_t iobd__send(iobd__conn_t* conn, const void* msg, size_t len, int fd) {
    return iobd__send_fds(conn, msg, len, fd >= 0 ? &fd : NULL, fd >= 0 ? 1u : 0u);
}

/* Replies with a status-only message; a failed send ends the connection. */
void iobd__reply_status(iobd__conn_t* conn, uint16_t type, uint64_t request_id,
                        zx_status_t status) {
    iob_broker_status_reply_t reply;
    memset(&reply, 0, sizeof reply);
    iob_broker_hdr_init(&reply.hdr, type, sizeof reply, request_id);
    reply.status = status;
    zx_status_t st = iobd__send(conn, &reply, sizeof reply, -1);
    if (st != ZX_OK) {
        iobd__conn_close(conn, zx_status_get_string(st));
    }
}

void iobd__bad_message(iobd__conn_t* conn, uint64_t request_id, zx_status_t status,
                       const char* what) {
    conn->broker->stats.bad_messages++;
    iobd__log(conn->broker, IOBD_BROKER_LOG_DEBUG, "pid %ld: bad message (%s)", (long)conn->pid,
              what);
    iobd__reply_status(conn, IOB_BROKER_ERROR, request_id, status);
}

static void iobd__conn_on_readable(uv_poll_t* poll, int status, int events) {
    iobd__conn_t* conn = poll->data;
    if (status < 0) {
        iobd__conn_close(conn, uv_strerror(status));
        return;
    }
    if ((events & (UV_READABLE | UV_DISCONNECT)) == 0) {
        return;
    }
    for (int i = 0; i < IOBD__BROKER_BATCH && !conn->closing; i++) {
        iobd_broker_t* broker = conn->broker;
        /* Whatever this message installs must fit the closer's queue (see the top). */
        if (!iobd__closer_room_for(broker->closer, conn->uid)) {
            uv_poll_stop(&conn->poll);
            conn->paused = true;
            return;
        }
        /* Only the fixed-size part is cleared: a mediated request is read for its length. */
        memset(broker->rx, 0, sizeof *broker->rx);
        int fds[IOB_FDPASS_RECV_MAX_FDS];
        size_t len = 0;
        size_t nfds = 0;
        zx_status_t st = iob_fd_recv_all(conn->fd, broker->rx, IOBD__BROKER_RX_SIZE, &len, fds,
                                         &nfds);
        if (st == ZX_ERR_SHOULD_WAIT) {
            return;
        }
        if (st != ZX_OK && st != ZX_ERR_IO_DATA_INTEGRITY) {
            iobd__conn_close(conn, zx_status_get_string(st));
            return;
        }
        broker->rx_start_ns = iobd__broker_now_ns();
        uint64_t request_id = len >= sizeof(iob_broker_hdr_t) ? broker->rx->hdr.request_id : 0;
        /* An IMPORT carries a credential: it does not linger in memory, whatever the path. */
        bool import = len >= sizeof(iob_broker_hdr_t) && broker->rx->hdr.type == IOB_BROKER_IMPORT;
        /*
         * Only an ALLOCATE_ID that says its blob is in an fd may carry one, just one, and a
         * memfd (F_GET_SEALS answers only for shmem files, and without I/O).
         */
        bool blob_fd = st == ZX_OK && nfds == 1 &&
                       len >= sizeof(iob_broker_allocate_id_req_t) &&
                       broker->rx->hdr.type == IOB_BROKER_ALLOCATE_ID &&
                       (broker->rx->allocate_id.flags & IOB_BROKER_ALLOC_BLOB_IN_FD) != 0 &&
                       fcntl(fds[0], F_GET_SEALS) >= 0;
        if (import && (nfds > 0 || st != ZX_OK)) {
            explicit_bzero(broker->rx, len); /* refused or truncated: never dispatched */
        }
        if (nfds > 0 && !blob_fd) {
            iobd__closer_push_from(broker->closer, fds, nfds, conn->uid);
            broker->stats.fds_refused++;
            iobd__bad_message(conn, request_id, ZX_ERR_INVALID_ARGS, "client sent fds");
            iobd__conn_close(conn, "client sent fds");
            return;
        }
        if (st == ZX_ERR_IO_DATA_INTEGRITY) {
            iobd__bad_message(conn, 0, ZX_ERR_INVALID_ARGS, "truncated or bad control data");
            continue;
        }
        broker->rx_fd = blob_fd ? fds[0] : -1;
        iobd__dispatch(conn, len);
        if (broker->rx_fd >= 0) {
            iobd__closer_push_from(broker->closer, &broker->rx_fd, 1, conn->uid);
            broker->rx_fd = -1;
        }
        if (import) {
            explicit_bzero(broker->rx, len);
        }
    }
}

static void iobd__on_listen_readable(uv_poll_t* poll, int status, int events);

static void iobd__wake_on_close(uv_handle_t* handle) {
    iobd_broker_t* broker = handle->data;
    broker->open_handles--;
    iobd__maybe_free(broker);
}

/* The closer made room: read and accept again where that had paused. */
static void iobd__on_wake(uv_async_t* async) {
    iobd_broker_t* broker = async->data;
    if (broker->stopping) {
        return;
    }
    for (iobd__conn_t* conn = broker->conns; conn != NULL; conn = conn->next) {
        if (conn->paused) {
            conn->paused = false;
            uv_poll_start(&conn->poll, UV_READABLE | UV_DISCONNECT, iobd__conn_on_readable);
        }
    }
    if (broker->listen_paused) {
        broker->listen_paused = false;
        uv_poll_start(&broker->listen_poll, UV_READABLE, iobd__on_listen_readable);
    }
}

/* ---- Listening ---- */

/* Connections of `uid` open now (at most max_connections to walk, only at accept). */
static uint32_t iobd__conns_of_uid(const iobd_broker_t* broker, uid_t uid) {
    uint32_t n = 0;
    for (const iobd__conn_t* c = broker->conns; c != NULL; c = c->next) {
        n += c->uid == uid;
    }
    return n;
}

/* Why a peer may not connect now, or NULL. */
static const char* iobd__refusal(const iobd_broker_t* broker, const struct ucred* cred) {
    const iobd_broker_config_t* cfg = &broker->config;
    if (cfg->peer_allowed != NULL &&
        !cfg->peer_allowed(cfg->policy_ctx, cred->pid, cred->uid, cred->gid)) {
        return "policy";
    }
    uint32_t max = cfg->max_connections != 0 ? cfg->max_connections : IOBD_BROKER_DEFAULT_MAX_CONNS;
    if (broker->stats.connections >= max) {
        return "too many connections";
    }
    uint32_t per_uid = cfg->max_connections_per_uid != 0 ? cfg->max_connections_per_uid
                                                          : IOBD_BROKER_DEFAULT_MAX_CONNS_PER_UID;
    /* Root and iobd's own uid run the system's own clients: no share to hold them to. */
    bool exempt = cred->uid == 0 || cred->uid == geteuid();
    if (!exempt && iobd__conns_of_uid(broker, cred->uid) >= per_uid) {
        return "too many connections of this uid";
    }
    return NULL;
}

/* fd took a closer slot reservation (iobd__closer_room); it keeps it only as a connection. */
static void iobd__accept_one(iobd_broker_t* broker, int fd) {
    struct ucred cred;
    socklen_t cred_len = sizeof cred;
    const char* why = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0 || cred_len != sizeof cred) {
        iobd__log(broker, IOBD_BROKER_LOG_WARNING, "SO_PEERCRED failed: %s", strerror(errno));
        broker->stats.refused++;
        iobd__closer_push(broker->closer, fd, true);
        return;
    }
    if ((why = iobd__refusal(broker, &cred)) != NULL) {
        iobd__log(broker, IOBD_BROKER_LOG_WARNING, "refused pid %ld uid %ld gid %ld: %s",
                  (long)cred.pid, (long)cred.uid, (long)cred.gid, why);
        broker->stats.refused++;
        iob_metrics_refused(strcmp(why, "policy") == 0 ? IOB_METRICS_REFUSED_BROKER_POLICY
                                                       : IOB_METRICS_REFUSED_BROKER_CONNS);
        iobd__closer_push(broker->closer, fd, true);
        return;
    }
    iobd__conn_t* conn = calloc(1, sizeof *conn);
    if (conn == NULL || uv_poll_init(broker->loop, &conn->poll, fd) != 0) {
        iobd__log(broker, IOBD_BROKER_LOG_ERR, "cannot serve pid %ld: out of memory",
                  (long)cred.pid);
        free(conn);
        iobd__closer_push(broker->closer, fd, true);
        return;
    }
    uv_timer_init(broker->loop, &conn->attach_timer);
    conn->poll.data = conn;
    conn->attach_timer.data = conn;
    conn->open_handles = 2;
    conn->broker = broker;
    conn->fd = fd;
    conn->pid = cred.pid;
    conn->uid = cred.uid;
    conn->gid = cred.gid;
    conn->next = broker->conns;
    if (broker->conns != NULL) {
        broker->conns->prev = conn;
    }
    broker->conns = conn;
    broker->open_handles++;
    broker->stats.connections++;
    broker->stats.accepted++;
    iobd__log(broker, IOBD_BROKER_LOG_INFO, "accepted pid %ld uid %ld gid %ld", (long)cred.pid,
              (long)cred.uid, (long)cred.gid);
    uint32_t timeout_ms = broker->config.attach_timeout_ms != 0
                              ? broker->config.attach_timeout_ms
                              : IOBD_BROKER_DEFAULT_ATTACH_TIMEOUT_MS;
    uv_timer_start(&conn->attach_timer, iobd__conn_on_attach_deadline, timeout_ms, 0);
    uv_poll_start(&conn->poll, UV_READABLE | UV_DISCONNECT, iobd__conn_on_readable);
}

static void iobd__on_listen_readable(uv_poll_t* poll, int status, int events) {
    iobd_broker_t* broker = poll->data;
    (void)events;
    if (status < 0) {
        iobd__log(broker, IOBD_BROKER_LOG_ERR, "listening socket: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < IOBD__BROKER_BATCH; i++) {
        /* The accepted socket, kept or refused, is the closer's to close: reserve its slot. */
        if (!iobd__closer_room(broker->closer, 1, true)) {
            uv_poll_stop(&broker->listen_poll);
            broker->listen_paused = true;
            return;
        }
        int fd = accept4(broker->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            iobd__closer_unreserve(broker->closer);
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and friends: try again on the next event rather than spin. */
                iobd__log(broker, IOBD_BROKER_LOG_WARNING, "accept: %s", strerror(errno));
            }
            return;
        }
        iobd__accept_one(broker, fd);
    }
}

static void iobd__listen_on_close(uv_handle_t* handle) {
    iobd_broker_t* broker = handle->data;
    /* Connections still in its backlog may hold clients' fds: the closer's job too. */
    iobd__closer_push(broker->closer, broker->listen_fd, true);
    broker->listen_fd = -1;
    broker->open_handles--;
    iobd__maybe_free(broker);
}

static zx_status_t iobd__status_from_bind_errno(int err) {
    switch (err) {
    case EADDRINUSE:
        return ZX_ERR_ADDRESS_IN_USE;
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
    case ELOOP:
        return ZX_ERR_BAD_PATH;
    case EACCES:
    case EPERM:
    case EROFS:
        return ZX_ERR_ACCESS_DENIED;
    default:
        return ZX_ERR_IO;
    }
}

static zx_status_t iobd__listen(iobd_broker_t* broker) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    size_t path_len = strlen(broker->socket_path);
    if (path_len == 0 || path_len >= sizeof addr.sun_path) {
        return ZX_ERR_INVALID_ARGS;
    }
    memcpy(addr.sun_path, broker->socket_path, path_len);

    /* Replace a stale socket from an earlier iobd, but never delete anything else. */
    struct stat st;
    if (lstat(broker->socket_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(broker->socket_path);
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return iob_status_from_errno(errno);
    }
    if (bind(fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
        zx_status_t status = iobd__status_from_bind_errno(errno);
        iobd__log(broker, IOBD_BROKER_LOG_ERR, "bind %s: %s", broker->socket_path,
                  strerror(errno));
        close(fd);
        return status;
    }
    mode_t mode = broker->config.socket_mode != 0 ? (mode_t)broker->config.socket_mode
                                                  : (mode_t)IOBD__BROKER_DEFAULT_MODE;
    if (chmod(broker->socket_path, mode) != 0 || listen(fd, 128) != 0) {
        zx_status_t status = iobd__status_from_bind_errno(errno);
        iobd__log(broker, IOBD_BROKER_LOG_ERR, "chmod/listen %s: %s", broker->socket_path,
                  strerror(errno));
        close(fd);
        unlink(broker->socket_path);
        return status;
    }
    broker->listen_fd = fd;
    return ZX_OK;
}

zx_status_t iobd_broker_start(uv_loop_t* loop, iob_core_t* core, const iobd_broker_config_t* config,
                              iobd_broker_t** out) {
    if (loop == NULL || core == NULL || config == NULL || out == NULL ||
        config->socket_path == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iobd_broker_t* broker = calloc(1, sizeof *broker);
    if (broker == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    iob_metrics_set_methods(IOB_METRICS_BROKER, iobd__request_names,
                            sizeof iobd__request_names / sizeof iobd__request_names[0]);
    broker->socket_path = strdup(config->socket_path);
    if (broker->socket_path == NULL) {
        free(broker);
        return ZX_ERR_NO_MEMORY;
    }
    broker->loop = loop;
    broker->core = core;
    broker->config = *config;
    broker->config.socket_path = broker->socket_path;
    broker->listen_fd = -1;
    broker->rx_fd = -1;
    broker->rx = malloc(IOBD__BROKER_RX_SIZE);
    zx_status_t st = broker->rx != NULL ? iobd__listen(broker) : ZX_ERR_NO_MEMORY;
    if (st != ZX_OK) {
        free(broker->rx);
        free(broker->socket_path);
        free(broker);
        return st;
    }
    uint32_t max_conns = config->max_connections != 0 ? config->max_connections
                                                      : IOBD_BROKER_DEFAULT_MAX_CONNS;
    /* A slot for each connection, one for the listening socket, and the headroom. */
    size_t closer_cap = (size_t)max_conns + 1u + IOBD__CLOSER_HEADROOM;
    st = iobd_mediator_start(core, 0, &broker->mediator);
    if (st == ZX_OK) {
        st = iobd__closer_start(closer_cap, &broker->wake, &broker->closer);
    }
    if (st == ZX_OK && uv_async_init(loop, &broker->wake, iobd__on_wake) != 0) {
        iobd__closer_exit(broker->closer);
        st = ZX_ERR_NO_RESOURCES;
    }
    broker->wake.data = broker;
    if (st == ZX_OK && uv_poll_init(loop, &broker->listen_poll, broker->listen_fd) != 0) {
        /* The async handle exists now: it goes the way iobd_broker_stop sends it. */
        broker->stopping = true;
        broker->open_handles = 1;
        iobd_mediator_stop(broker->mediator);
        broker->mediator = NULL;
        iobd__closer_reserve(broker->closer);
        iobd__closer_push(broker->closer, broker->listen_fd, true);
        unlink(broker->socket_path);
        iobd__closer_forget_wake(broker->closer);
        uv_close((uv_handle_t*)&broker->wake, iobd__wake_on_close);
        return ZX_ERR_NO_RESOURCES;
    }
    if (st != ZX_OK) {
        iobd_mediator_stop(broker->mediator); /* NULL when it did not start */
        close(broker->listen_fd);
        unlink(broker->socket_path);
        free(broker->rx);
        free(broker->socket_path);
        free(broker);
        return st;
    }
    iobd__closer_reserve(broker->closer); /* the listening socket, queued when the broker stops */
    broker->listen_poll.data = broker;
    broker->open_handles = 2;
    uv_poll_start(&broker->listen_poll, UV_READABLE, iobd__on_listen_readable);
    iobd__log(broker, IOBD_BROKER_LOG_INFO, "map broker listening on %s (mode %04o)",
              broker->socket_path,
              config->socket_mode != 0 ? config->socket_mode : IOBD__BROKER_DEFAULT_MODE);
    *out = broker;
    return ZX_OK;
}

void iobd_broker_stop(iobd_broker_t* broker) {
    if (broker == NULL || broker->stopping) {
        return;
    }
    broker->stopping = true;
    while (broker->conns != NULL) {
        iobd__conn_close(broker->conns, "broker stopping");
    }
    iobd_mediator_stop(broker->mediator);
    broker->mediator = NULL;
    unlink(broker->socket_path);
    uv_poll_stop(&broker->listen_poll);
    uv_close((uv_handle_t*)&broker->listen_poll, iobd__listen_on_close);
    iobd__closer_forget_wake(broker->closer);
    uv_close((uv_handle_t*)&broker->wake, iobd__wake_on_close);
}

void iobd_broker_get_stats(const iobd_broker_t* broker, iobd_broker_stats_t* out) {
    if (broker == NULL || out == NULL) {
        return;
    }
    *out = broker->stats;
    out->closes_pending = iobd__closer_pending(broker->closer);
}
