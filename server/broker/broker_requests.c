/* SPDX-License-Identifier: MIT */
/*
 * The map broker's requests, one handler each: ATTACH (the core authenticates), MAP and
 * UNMAP, IMPORT, WRITEV and ALLOCATE_ID (through the shared request translation,
 * iob_request.h), CHANNEL (the mediator). Each datagram's size and version are checked in
 * iobd__dispatch before any handler reads it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zircon/status.h>

#include "server/broker/broker_internal.h"
#include "server/core/iob_request.h"
#include "shm/mediated_channel.h"

/* A connection that fails authentication this often is dropped. */
#define IOBD__BROKER_MAX_AUTH_FAILURES 3

_Static_assert(IOB_BROKER_SECRET_SIZE == IOB_CORE_SECRET_SIZE, "ATTACH carries the core's secret");

/* A zeroed reply of `size` bytes to the request whose header is `req`'s first member. */
static void iobd__reply_init(void* reply, size_t size, uint16_t type, const void* req) {
    memset(reply, 0, size);
    iob_broker_hdr_init(reply, type | IOB_BROKER_REPLY, (uint32_t)size,
                        ((const iob_broker_hdr_t*)req)->request_id);
}

static void iobd__handle_attach(iobd__conn_t* conn, const iobd__rx_t* msg, size_t len) {
    (void)len;
    const iob_broker_attach_req_t* req = &msg->attach;
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

static void iobd__handle_map(iobd__conn_t* conn, const iobd__rx_t* msg, size_t len) {
    (void)len;
    const iob_broker_map_req_t* req = &msg->map;
    iobd_broker_t* broker = conn->broker;
    iob_broker_map_reply_t reply;
    iobd__reply_init(&reply, sizeof reply, IOB_BROKER_MAP, req);

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

static void iobd__handle_unmap(iobd__conn_t* conn, const iobd__rx_t* msg, size_t len) {
    (void)len;
    const iob_broker_unmap_req_t* req = &msg->unmap;
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

static void iobd__handle_import(iobd__conn_t* conn, const iobd__rx_t* msg, size_t len) {
    (void)len;
    const iob_broker_import_req_t* req = &msg->import;
    iobd_broker_t* broker = conn->broker;
    iob_broker_import_reply_t reply;
    iobd__reply_init(&reply, sizeof reply, IOB_BROKER_IMPORT, req);
    zx_status_t st = ZX_ERR_BAD_STATE;
    zx_handle_t handle = ZX_HANDLE_INVALID;
    if (conn->attached) {
        /* The field need not hold a NUL: then it is an over-long token, as over gRPC. */
        st =
            iob_request_import(broker->core, conn->session, req->token, sizeof req->token, &handle);
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

/* WRITEV and WRITEV_PACKED: the checks are the channel's too (iobd_mediated_writev*). */
static void iobd__handle_writev(iobd__conn_t* conn, const iobd__rx_t* msg, size_t len) {
    iob_core_t* core = conn->attached ? conn->broker->core : NULL;
    zx_status_t st = ZX_ERR_BAD_STATE;
    /* Unattached: the layout is checked all the same (a NULL core runs nothing). */
    bool ok = msg->hdr.type == IOB_BROKER_WRITEV_PACKED
                  ? iobd_mediated_writev_packed(core, conn->session, &msg->writev_packed, len, &st)
                  : iobd_mediated_writev(core, conn->session, &msg->writev, len, &st);
    if (!ok) {
        iobd__bad_message(conn, msg->hdr.request_id, ZX_ERR_INVALID_ARGS, "writev layout");
        return;
    }
    if (conn->attached) {
        conn->broker->stats.writevs++;
    }
    iobd__reply_status(conn, msg->hdr.type | IOB_BROKER_REPLY, msg->hdr.request_id, st);
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

static void iobd__handle_allocate_id(iobd__conn_t* conn, const iobd__rx_t* msg, size_t len) {
    const iob_broker_allocate_id_req_t* req = &msg->allocate_id;
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
    iobd__reply_init(&reply, sizeof reply, IOB_BROKER_ALLOCATE_ID, req);
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
static void iobd__handle_channel(iobd__conn_t* conn, const iobd__rx_t* msg, size_t len) {
    (void)len;
    const iob_broker_channel_req_t* req = &msg->channel;
    iobd_broker_t* broker = conn->broker;
    iob_broker_channel_reply_t reply;
    iobd__reply_init(&reply, sizeof reply, IOB_BROKER_CHANNEL, req);
    int fds[3] = {-1, -1, -1};
    zx_status_t st = ZX_ERR_BAD_STATE;
    if (req->layout != IOB_BROKER_MEDIATED_LAYOUT || req->reserved != 0) {
        st = ZX_ERR_NOT_SUPPORTED;
    } else if (conn->attached && conn->chan == NULL) {
        st = iobd_mediator_open(broker->mediator, conn->session, &conn->chan, fds);
    }
    reply.status = st;
    reply.sub_size = st == ZX_OK ? IOB_MCHAN_SUB_SIZE : 0u;
    zx_status_t sent =
        iobd__send_fds(conn, &reply, sizeof reply, st == ZX_OK ? fds : NULL, st == ZX_OK ? 3u : 0u);
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0) {
            close(fds[i]); /* our own memfds: their close waits on nothing */
        }
    }
    if (sent != ZX_OK) {
        iobd__conn_close(conn, zx_status_get_string(sent));
    }
}

/*
 * Every request type: its size (mediated requests: of the fixed part, which a body
 * follows) and its handler.
 */
static const struct {
    size_t size;
    bool mediated;
    void (*run)(iobd__conn_t* conn, const iobd__rx_t* msg, size_t len);
} iobd__requests[] = {
    [IOB_BROKER_ATTACH] = {sizeof(iob_broker_attach_req_t), false, iobd__handle_attach},
    [IOB_BROKER_MAP] = {sizeof(iob_broker_map_req_t), false, iobd__handle_map},
    [IOB_BROKER_UNMAP] = {sizeof(iob_broker_unmap_req_t), false, iobd__handle_unmap},
    [IOB_BROKER_IMPORT] = {sizeof(iob_broker_import_req_t), false, iobd__handle_import},
    [IOB_BROKER_WRITEV] = {sizeof(iob_broker_writev_req_t), true, iobd__handle_writev},
    [IOB_BROKER_ALLOCATE_ID] = {sizeof(iob_broker_allocate_id_req_t), true,
                                iobd__handle_allocate_id},
    [IOB_BROKER_CHANNEL] = {sizeof(iob_broker_channel_req_t), false, iobd__handle_channel},
    [IOB_BROKER_WRITEV_PACKED] = {sizeof(iob_broker_writev_packed_req_t), true,
                                  iobd__handle_writev},
};

void iobd__dispatch(iobd__conn_t* conn, size_t len) {
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
    size_t n = sizeof iobd__requests / sizeof iobd__requests[0];
    if (hdr->type >= n || iobd__requests[hdr->type].run == NULL) {
        iobd__bad_message(conn, hdr->request_id, ZX_ERR_NOT_SUPPORTED, "unknown type");
        return;
    }
    size_t want = iobd__requests[hdr->type].size;
    bool mediated = iobd__requests[hdr->type].mediated;
    /* A mediated request has a body: at least the fixed part, and the header says how long. */
    if (mediated ? len < want || hdr->size != len || len > IOB_BROKER_MAX_MEDIATED_MSG
                 : len != want || hdr->size != want) {
        iobd__bad_message(conn, hdr->request_id, ZX_ERR_INVALID_ARGS, "size");
        return;
    }
    /* Every mediated fixed part starts with `layout` right after the header. */
    if (mediated && msg->writev.layout != IOB_BROKER_MEDIATED_LAYOUT) {
        iobd__bad_message(conn, hdr->request_id, ZX_ERR_NOT_SUPPORTED, "layout");
        return;
    }
    iobd__requests[hdr->type].run(conn, msg, len);
}
