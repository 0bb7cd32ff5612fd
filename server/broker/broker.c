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
#include "server/broker/broker.h"

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
/* A connection that fails authentication this often is dropped. */
#define IOBD__BROKER_MAX_AUTH_FAILURES 3

_Static_assert(IOB_BROKER_SECRET_SIZE == IOB_CORE_SECRET_SIZE, "ATTACH carries the core's secret");

typedef struct iobd__conn iobd__conn_t;

/* The fixed parts of every request; the union keeps each body aligned. */
typedef union {
    iob_broker_hdr_t hdr;
    iob_broker_attach_req_t attach;
    iob_broker_map_req_t map;
    iob_broker_unmap_req_t unmap;
    iob_broker_import_req_t import;
    iob_broker_writev_req_t writev;
    iob_broker_allocate_id_req_t allocate_id;
    iob_broker_channel_req_t channel;
} iobd__rx_t;


struct iobd__conn {
    uv_poll_t poll; /* first member: the poll's data points back here anyway */
    uv_timer_t attach_timer;
    iobd_broker_t* broker;
    int fd;
    unsigned open_handles; /* poll + timer not yet closed */
    bool closing;
    bool paused; /* poll stopped until the closer has room */
    bool attached;
    iob_session_id_t session;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    unsigned auth_failures;
    iobd_mchan_t* chan; /* its mediated request channel, once asked for */
    iobd__conn_t* prev;
    iobd__conn_t* next;
};

struct iobd_broker {
    uv_loop_t* loop;
    iob_core_t* core;
    iobd_broker_config_t config;
    char* socket_path; /* our copy; config.socket_path points here */
    int listen_fd;
    uv_poll_t listen_poll;
    bool stopping;
    unsigned open_handles; /* listen poll, wake, connection handles not yet closed */
    bool listen_paused;
    iobd__conn_t* conns;
    iobd__closer_t* closer;
    uv_async_t wake; /* the closer made room: resume paused reading and accepting */
    iobd_broker_stats_t stats;
    iobd_mediator_t* mediator; /* serves the connections' request channels */
    /*
     * One receive buffer for every connection (all of them are served on the loop thread,
     * one datagram at a time): room for the largest mediated request plus one byte, so a
     * longer datagram shows as truncated. Its bytes go to the core as they are: the core
     * copies them into the shared region, the only copy on iobd's side.
     */
    iobd__rx_t* rx;
    /*
     * The fd the datagram in rx carried (an ALLOCATE_ID blob memfd), or -1. Its handler
     * only borrows it; the closer thread gets it after the dispatch.
     */
    int rx_fd;
    int64_t rx_start_ns; /* when the datagram in rx was read, for the latency metrics */
};

static int64_t iobd__broker_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Request types as the metrics' method label; 0 is a message that could not be parsed. */
static const char* const iobd__request_names[] = {"Invalid", "Attach",     "Map",    "Unmap",
                                                  "Import",  "Writev",     "AllocateId",
                                                  "Channel"};

#define IOBD__BROKER_RX_SIZE (IOB_BROKER_MAX_MEDIATED_MSG + 1)

static void iobd__log(iobd_broker_t* broker, int level, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void iobd__log(iobd_broker_t* broker, int level, const char* fmt, ...) {
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
static void iobd__conn_close(iobd__conn_t* conn, const char* why) {
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
static zx_status_t iobd__send_fds(iobd__conn_t* conn, const void* msg, size_t len,
                                  const int* fds, unsigned nfds) {
    if (len >= sizeof(iob_broker_status_reply_t)) {
        const iob_broker_status_reply_t* r = msg;
        unsigned type = r->hdr.type & ~(unsigned)IOB_BROKER_REPLY;
        int64_t ns = iobd__broker_now_ns() - conn->broker->rx_start_ns;
        iob_metrics_call(IOB_METRICS_BROKER, type <= IOB_BROKER_CHANNEL ? type : 0, r->status,
                         ns > 0 ? (uint64_t)ns : 0);
    }
    return iob_fd_send(conn->fd, msg, len, fds, nfds);
}

static zx_status_t iobd__send(iobd__conn_t* conn, const void* msg, size_t len, int fd) {
    return iobd__send_fds(conn, msg, len, fd >= 0 ? &fd : NULL, fd >= 0 ? 1u : 0u);
}

/* Replies with a status-only message; a failed send ends the connection. */
static void iobd__reply_status(iobd__conn_t* conn, uint16_t type, uint64_t request_id,
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

static void iobd__bad_message(iobd__conn_t* conn, uint64_t request_id, zx_status_t status,
                              const char* what) {
    conn->broker->stats.bad_messages++;
    iobd__log(conn->broker, IOBD_BROKER_LOG_DEBUG, "pid %ld: bad message (%s)", (long)conn->pid,
              what);
    iobd__reply_status(conn, IOB_BROKER_ERROR, request_id, status);
}

static void iobd__handle_attach(iobd__conn_t* conn, const iob_broker_attach_req_t* req) {
    iobd_broker_t* broker = conn->broker;
    uint16_t type = IOB_BROKER_ATTACH | IOB_BROKER_REPLY;
    if (conn->attached) {
        iobd__reply_status(conn, type, req->hdr.request_id, ZX_ERR_BAD_STATE);
        return;
    }
    iob_session_id_t session = {0};
    iob_session_cred_t peer = {.pid = conn->pid, .uid = conn->uid, .gid = conn->gid};
    if (iob_core_session_attach(broker->core, req->session_id, req->secret, &peer, &session) !=
        ZX_OK) {
        broker->stats.auth_failures++;
        conn->auth_failures++;
        /* The core says why when the secret was right but the peer is someone else. */
        const char* why = iob_core_error_detail();
        iobd__log(broker, IOBD_BROKER_LOG_WARNING,
                  "pid %ld uid %ld: authentication for session %llu failed%s%s", (long)conn->pid,
                  (long)conn->uid, (unsigned long long)req->session_id, why[0] != '\0' ? ": " : "",
                  why);
        iobd__reply_status(conn, type, req->hdr.request_id, ZX_ERR_ACCESS_DENIED);
        if (conn->auth_failures >= IOBD__BROKER_MAX_AUTH_FAILURES) {
            iobd__conn_close(conn, "too many authentication failures");
        }
        return;
    }
    conn->attached = true;
    conn->session = session;
    uv_timer_stop(&conn->attach_timer);
    iobd__log(broker, IOBD_BROKER_LOG_DEBUG, "pid %ld attached to session %llu", (long)conn->pid,
              (unsigned long long)session.value);
    iobd__reply_status(conn, type, req->hdr.request_id, ZX_OK);
}

static void iobd__handle_map(iobd__conn_t* conn, const iob_broker_map_req_t* req) {
    iobd_broker_t* broker = conn->broker;
    iob_broker_map_reply_t reply;
    memset(&reply, 0, sizeof reply);
    iob_broker_hdr_init(&reply.hdr, IOB_BROKER_MAP | IOB_BROKER_REPLY, sizeof reply,
                        req->hdr.request_id);

    zx_status_t st;
    iob_map_grant_t grant;
    memset(&grant, 0, sizeof grant);
    if (!conn->attached) {
        st = ZX_ERR_BAD_STATE;
    } else if ((req->flags & ~(uint32_t)IOB_BROKER_MAP_CHECK_ONLY) != 0) {
        st = ZX_ERR_INVALID_ARGS;
    } else {
        /*
         * The _dup variant: the fd is ours, duplicated under the core's lock. iob_core_map's
         * fd is only borrowed until the next core call, and the gRPC thread makes core calls
         * concurrently, so a copy taken after the lock is dropped could be of a closed
         * descriptor, or of one already reused for an unrelated file.
         */
        st = iob_core_map_dup(broker->core, conn->session, req->handle, req->options,
                              req->region_index, req->region_offset, req->len, &grant);
    }
    int fd = -1;
    if (st == ZX_OK) {
        fd = grant.fd;
        if ((req->flags & IOB_BROKER_MAP_CHECK_ONLY) != 0) {
            close(fd);
            fd = -1;
            iob_core_unmap(broker->core, conn->session, grant.mapping);
        }
    }
    reply.status = st;
    if (fd >= 0) {
        reply.flags = grant.writable ? IOB_BROKER_GRANT_WRITABLE : 0u;
        reply.mapping_id = grant.mapping.value;
        reply.region_size = grant.region_size;
        reply.iob_koid = grant.iob_koid;
        broker->stats.maps_granted++;
    } else if (st != ZX_OK) {
        broker->stats.maps_refused++;
    }
    zx_status_t sent = iobd__send(conn, &reply, sizeof reply, fd);
    if (fd >= 0) {
        close(fd);
        if (sent != ZX_OK) {
            /* The client never got the fd, so it cannot have mapped it: take the grant back. */
            iob_core_unmap(broker->core, conn->session, grant.mapping);
            broker->stats.maps_granted--;
        }
    }
    if (sent != ZX_OK) {
        iobd__conn_close(conn, zx_status_get_string(sent));
    }
}

static void iobd__handle_unmap(iobd__conn_t* conn, const iob_broker_unmap_req_t* req) {
    zx_status_t st = ZX_ERR_BAD_STATE;
    if (conn->attached) {
        iob_mapping_id_t mapping = {req->mapping_id};
        st = iob_core_unmap(conn->broker->core, conn->session, mapping);
        if (st == ZX_OK) {
            conn->broker->stats.unmaps++;
        }
    }
    iobd__reply_status(conn, IOB_BROKER_UNMAP | IOB_BROKER_REPLY, req->hdr.request_id, st);
}

static void iobd__handle_import(iobd__conn_t* conn, const iob_broker_import_req_t* req) {
    iobd_broker_t* broker = conn->broker;
    iob_broker_import_reply_t reply;
    memset(&reply, 0, sizeof reply);
    iob_broker_hdr_init(&reply.hdr, IOB_BROKER_IMPORT | IOB_BROKER_REPLY, sizeof reply,
                        req->hdr.request_id);
    zx_status_t st = ZX_ERR_BAD_STATE;
    zx_handle_t handle = ZX_HANDLE_INVALID;
    if (conn->attached) {
        /* The field need not hold a NUL: then it is an over-long token, as over gRPC. */
        st = iob_request_import(broker->core, conn->session, req->token, sizeof req->token,
                                &handle);
    }
    reply.status = st;
    reply.handle = st == ZX_OK ? handle : ZX_HANDLE_INVALID;
    zx_status_t sent = iobd__send(conn, &reply, sizeof reply, -1);
    if (st == ZX_OK) {
        if (sent == ZX_OK) {
            broker->stats.imports++;
        } else {
            /*
             * The client never learned the handle value, so nothing can use or close it:
             * close it here, as a message lost in flight. Its session-event record goes
             * with it (the core's observer reports the close).
             */
            iob_core_handle_close(broker->core, conn->session, handle);
        }
    } else {
        broker->stats.imports_refused++;
    }
    if (sent != ZX_OK) {
        iobd__conn_close(conn, zx_status_get_string(sent));
    }
}

/* WRITEV: the checks are the channel's too (iobd_mediated_writev). */
static void iobd__handle_writev(iobd__conn_t* conn, const iob_broker_writev_req_t* req,
                                size_t len) {
    zx_status_t st = ZX_ERR_BAD_STATE;
    /* Unattached: the layout is checked all the same (a NULL core runs nothing). */
    if (!iobd_mediated_writev(conn->attached ? conn->broker->core : NULL, conn->session, req, len,
                              &st)) {
        iobd__bad_message(conn, req->hdr.request_id, ZX_ERR_INVALID_ARGS, "writev layout");
        return;
    }
    if (conn->attached) {
        conn->broker->stats.writevs++;
    }
    iobd__reply_status(conn, IOB_BROKER_WRITEV | IOB_BROKER_REPLY, req->hdr.request_id, st);
}

/*
 * Reads an IOB_BROKER_ALLOC_BLOB_IN_FD blob: a memfd (only shmem files take seals) holding
 * at least blob_size bytes, read with pread. F_GET_SEALS comes first: it answers without
 * I/O for any file, while fstat could ask a FUSE server; a shmem file's fstat and pread
 * wait on nothing a client controls. NULL with *bad set when the fd is not that, or
 * shrank while being read; NULL with *bad clear when memory ran out.
 */
static void* iobd__read_blob_fd(int fd, uint64_t blob_size, bool* bad) {
    struct stat st;
    *bad = true;
    if (fcntl(fd, F_GET_SEALS) < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size < blob_size || blob_size > SIZE_MAX) {
        return NULL;
    }
    *bad = false;
    unsigned char* buf = malloc(blob_size > 0 ? (size_t)blob_size : 1u);
    if (buf == NULL) {
        return NULL;
    }
    size_t done = 0;
    while (done < blob_size) {
        ssize_t n = pread(fd, buf + done, (size_t)blob_size - done, (off_t)done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            *bad = true;
            free(buf);
            return NULL;
        }
        done += (size_t)n;
    }
    return buf;
}

static void iobd__handle_allocate_id(iobd__conn_t* conn, const iob_broker_allocate_id_req_t* req,
                                     size_t len) {
    bool in_fd = (req->flags & IOB_BROKER_ALLOC_BLOB_IN_FD) != 0;
    int fd = conn->broker->rx_fd; /* borrowed: the closer gets it after dispatch */
    zx_status_t st = ZX_ERR_BAD_STATE;
    uint32_t id = 0;
    /* Checked in full whether attached or not (a NULL core runs nothing). */
    if (!iobd_mediated_allocate_id_layout_ok(req, len, fd >= 0) ||
        iobd_mediated_allocate_id(NULL, conn->session, req, len, NULL, &id, &st) != NULL) {
        iobd__bad_message(conn, req->hdr.request_id, ZX_ERR_INVALID_ARGS, "allocate_id layout");
        return;
    }
    iob_broker_allocate_id_reply_t reply;
    memset(&reply, 0, sizeof reply);
    iob_broker_hdr_init(&reply.hdr, IOB_BROKER_ALLOCATE_ID | IOB_BROKER_REPLY, sizeof reply,
                        req->hdr.request_id);
    bool id_null = (req->flags & IOB_BROKER_ALLOC_ID_NULL) != 0;
    void* fd_blob = NULL;
    if (conn->attached && in_fd) {
        /* Every check first: the blob is read only for a call that will use it. */
        st = iob_core_iob_allocate_id_check(conn->broker->core, conn->session, req->handle,
                                            req->options, req->region_index, req->blob_size,
                                            id_null);
        bool bad = false;
        if (st == ZX_OK && (fd_blob = iobd__read_blob_fd(fd, req->blob_size, &bad)) == NULL) {
            if (bad) {
                iobd__bad_message(conn, req->hdr.request_id, ZX_ERR_INVALID_ARGS,
                                  "allocate_id blob fd");
                return;
            }
            st = ZX_ERR_NO_MEMORY;
        }
    }
    if (conn->attached && (!in_fd || fd_blob != NULL)) {
        iobd_mediated_allocate_id(conn->broker->core, conn->session, req, len, fd_blob, &id, &st);
        reply.id = st == ZX_OK ? id : 0u;
        conn->broker->stats.allocate_ids++;
    }
    free(fd_blob);
    reply.status = st;
    zx_status_t sent = iobd__send(conn, &reply, sizeof reply, -1);
    if (sent != ZX_OK) {
        iobd__conn_close(conn, zx_status_get_string(sent));
    }
}

/*
 * CHANNEL: the connection's mediated request channel (mediator.h). One per connection;
 * a second request, an unattached connection or the mediator's cap is a refusal, and the
 * client keeps using datagrams.
 */
static void iobd__handle_channel(iobd__conn_t* conn, const iob_broker_channel_req_t* req) {
    iobd_broker_t* broker = conn->broker;
    iob_broker_channel_reply_t reply;
    memset(&reply, 0, sizeof reply);
    iob_broker_hdr_init(&reply.hdr, IOB_BROKER_CHANNEL | IOB_BROKER_REPLY, sizeof reply,
                        req->hdr.request_id);
    int fds[3] = {-1, -1, -1};
    zx_status_t st = ZX_ERR_BAD_STATE;
    if (req->layout != IOB_BROKER_MEDIATED_LAYOUT || req->reserved != 0) {
        st = ZX_ERR_NOT_SUPPORTED;
    } else if (conn->attached && conn->chan == NULL) {
        st = iobd_mediator_open(broker->mediator, conn->session, &conn->chan, fds);
    }
    reply.status = st;
    reply.sub_size = st == ZX_OK ? IOB_MCHAN_SUB_SIZE : 0u;
    zx_status_t sent = iobd__send_fds(conn, &reply, sizeof reply, st == ZX_OK ? fds : NULL,
                                      st == ZX_OK ? 3u : 0u);
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0) {
            close(fds[i]); /* our own memfds: their close waits on nothing */
        }
    }
    if (sent != ZX_OK) {
        iobd__conn_close(conn, zx_status_get_string(sent));
    }
}

/* Validates one datagram (in broker->rx) and dispatches it. */
static void iobd__dispatch(iobd__conn_t* conn, size_t len) {
    const iobd__rx_t* msg = conn->broker->rx;
    if (len < sizeof(iob_broker_hdr_t)) {
        iobd__bad_message(conn, 0, ZX_ERR_INVALID_ARGS, "short");
        return;
    }
    const iob_broker_hdr_t* hdr = &msg->hdr;
    if (hdr->version != IOB_BROKER_WIRE_VERSION) {
        iobd__bad_message(conn, hdr->request_id, ZX_ERR_NOT_SUPPORTED, "version");
        return;
    }
    size_t want;
    switch (hdr->type) {
    case IOB_BROKER_ATTACH:
        want = sizeof(iob_broker_attach_req_t);
        break;
    case IOB_BROKER_MAP:
        want = sizeof(iob_broker_map_req_t);
        break;
    case IOB_BROKER_UNMAP:
        want = sizeof(iob_broker_unmap_req_t);
        break;
    case IOB_BROKER_IMPORT:
        want = sizeof(iob_broker_import_req_t);
        break;
    case IOB_BROKER_CHANNEL:
        want = sizeof(iob_broker_channel_req_t);
        break;
    case IOB_BROKER_WRITEV:
    case IOB_BROKER_ALLOCATE_ID:
        want = hdr->type == IOB_BROKER_WRITEV ? sizeof(iob_broker_writev_req_t)
                                              : sizeof(iob_broker_allocate_id_req_t);
        /* Variable length: at least the fixed part, and the header says how long it is. */
        if (len < want || hdr->size != len || len > IOB_BROKER_MAX_MEDIATED_MSG) {
            iobd__bad_message(conn, hdr->request_id, ZX_ERR_INVALID_ARGS, "size");
            return;
        }
        /* Both fixed parts start with `layout` right after the header. */
        if (msg->writev.layout != IOB_BROKER_MEDIATED_LAYOUT) {
            iobd__bad_message(conn, hdr->request_id, ZX_ERR_NOT_SUPPORTED, "layout");
            return;
        }
        if (hdr->type == IOB_BROKER_WRITEV) {
            iobd__handle_writev(conn, &msg->writev, len);
        } else {
            iobd__handle_allocate_id(conn, &msg->allocate_id, len);
        }
        return;
    default:
        iobd__bad_message(conn, hdr->request_id, ZX_ERR_NOT_SUPPORTED, "unknown type");
        return;
    }
    if (len != want || hdr->size != want) {
        iobd__bad_message(conn, hdr->request_id, ZX_ERR_INVALID_ARGS, "size");
        return;
    }
    switch (hdr->type) {
    case IOB_BROKER_ATTACH:
        iobd__handle_attach(conn, &msg->attach);
        break;
    case IOB_BROKER_MAP:
        iobd__handle_map(conn, &msg->map);
        break;
    case IOB_BROKER_IMPORT:
        iobd__handle_import(conn, &msg->import);
        break;
    case IOB_BROKER_CHANNEL:
        iobd__handle_channel(conn, &msg->channel);
        break;
    default:
        iobd__handle_unmap(conn, &msg->unmap);
        break;
    }
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
        /*
         * Only an ALLOCATE_ID that says its blob is in an fd may carry one, just one, and a
         * memfd (F_GET_SEALS answers only for shmem files, and without I/O).
         */
        bool blob_fd = st == ZX_OK && nfds == 1 &&
                       len >= sizeof(iob_broker_allocate_id_req_t) &&
                       broker->rx->hdr.type == IOB_BROKER_ALLOCATE_ID &&
                       (broker->rx->allocate_id.flags & IOB_BROKER_ALLOC_BLOB_IN_FD) != 0 &&
                       fcntl(fds[0], F_GET_SEALS) >= 0;
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
        bool import = len >= sizeof(iob_broker_hdr_t) && broker->rx->hdr.type == IOB_BROKER_IMPORT;
        broker->rx_fd = blob_fd ? fds[0] : -1;
        iobd__dispatch(conn, len);
        if (broker->rx_fd >= 0) {
            iobd__closer_push_from(broker->closer, &broker->rx_fd, 1, conn->uid);
            broker->rx_fd = -1;
        }
        /* An IMPORT carried a credential: it does not linger in memory. */
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
    if (st != ZX_OK) {
        close(broker->listen_fd);
        unlink(broker->socket_path);
        free(broker->rx);
        free(broker->socket_path);
        free(broker);
        return st;
    }
    st = iobd__closer_start(closer_cap, &broker->wake, &broker->closer);
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
        iobd_mediator_stop(broker->mediator);
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
