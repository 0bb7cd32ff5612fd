/* SPDX-License-Identifier: MIT */
/*
 * The process's session with iobd (iob_conn) and its map-broker socket; the explicit
 * connection API of <iob/iob.h>.
 *
 * One current session per process, guarded by g_lock: opened lazily by the first call that
 * needs it, or explicitly by iob_client_connect; ended by iob_client_close. Each caller
 * holds a reference while it works, so a session is freed (and its connection closed) only
 * after the last in-flight call on it has returned.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <iob/iob.h>

#include "client/lib/libiob.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"
#include "shm/mediated_channel.h"
#include "shm/region.h"

/* How long the library waits for one broker reply before it gives up on iobd. */
#define IOB__BROKER_TIMEOUT_S 10

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static iob__session_t* g_session; /* current session; holds one reference */
static atomic_uint_fast64_t g_page_size; /* cached once a server answered */

struct iob_client {
    iob__session_t* session; /* the explicit connection's reference */
};

static zx_status_t iob__session_open(const char* target, iob__session_t** out) {
    iob__session_t* s = calloc(1, sizeof *s);
    if (s == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    iob_conn_options_t options;
    memset(&options, 0, sizeof options);
    options.target = target;
    zx_status_t st = iob_conn_open(&options, &s->conn);
    if (st != ZX_OK) {
        free(s);
        return st;
    }
    s->info = *iob_conn_session(s->conn);
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->broker_lock, NULL);
    pthread_mutex_init(&s->chan_lock, NULL);
    s->broker_fd = -1;
    s->next_request_id = 1;
    if (s->info.page_size != 0) {
        atomic_store(&g_page_size, s->info.page_size);
    }
    if (iob__signal_fd_wanted()) {
        /* Otherwise events stay off: see iob_conn_set_event_callback. */
        iob_conn_set_event_callback(s->conn, iob__signal_event, NULL);
    }
    *out = s;
    return ZX_OK;
}

static void iob__session_free(iob__session_t* s) {
    iob_conn_close(s->conn);
    if (s->broker_fd >= 0) {
        close(s->broker_fd);
    }
    pthread_mutex_destroy(&s->broker_lock);
    iob__mchan_free(s->chan);
    pthread_mutex_destroy(&s->chan_lock);
    free(s);
}

/*
 * A reference to the current session, opened (to target) when there is none. An explicit
 * connection must be the one that opens it: ZX_ERR_ALREADY_BOUND otherwise.
 */
static zx_status_t iob__session_ref(const char* target, bool explicit, iob__session_t** out) {
    pthread_mutex_lock(&g_lock);
    zx_status_t st = ZX_OK;
    if (g_session == NULL) {
        st = iob__session_open(target, &g_session);
    } else if (explicit) {
        st = ZX_ERR_ALREADY_BOUND;
    }
    if (st == ZX_OK) {
        atomic_fetch_add(&g_session->refs, 1);
        *out = g_session;
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}

zx_status_t iob__session_get(iob__session_t** out) {
    return iob__session_ref(NULL, false, out);
}

iob__session_t* iob__session_peek(void) {
    pthread_mutex_lock(&g_lock);
    iob__session_t* s = g_session;
    if (s != NULL) {
        atomic_fetch_add(&s->refs, 1);
    }
    pthread_mutex_unlock(&g_lock);
    return s;
}

void iob__session_put(iob__session_t* session) {
    if (session != NULL && atomic_fetch_sub(&session->refs, 1) == 1) {
        iob__session_free(session);
    }
}

uint64_t iob__page_size(void) {
    uint64_t cached = atomic_load(&g_page_size);
    if (cached != 0) {
        return cached;
    }
    iob__session_t* s;
    if (iob__session_get(&s) == ZX_OK) {
        iob__session_put(s);
        cached = atomic_load(&g_page_size);
        if (cached != 0) {
            return cached;
        }
    }
    long os = sysconf(_SC_PAGESIZE);
    return os > 0 ? (uint64_t)os : 4096u;
}

/* ---- Explicit connections ---- */

zx_status_t iob_client_connect(const char* target, iob_client_t** out) {
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_client_t* client = calloc(1, sizeof *client);
    if (client == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    zx_status_t st = iob__session_ref(target, true, &client->session);
    if (st != ZX_OK) {
        free(client);
        return st;
    }
    *out = client;
    return ZX_OK;
}

void iob_client_close(iob_client_t* client) {
    if (client == NULL) {
        return;
    }
    pthread_mutex_lock(&g_lock);
    iob__session_t* current = NULL;
    if (g_session == client->session) {
        current = g_session;
        g_session = NULL;
    }
    pthread_mutex_unlock(&g_lock);
    iob__session_put(current);
    iob__session_put(client->session);
    free(client);
}

uint64_t iob_client_session_id(const iob_client_t* client) {
    return client != NULL && client->session != NULL ? client->session->info.session_id : 0;
}

/* ---- Map broker client ---- */

/* The most descriptors a reply carries (CHANNEL's three). */
#define IOB__BROKER_REPLY_MAX_FDS 3u

static void iob__close_fds(const int* fds, size_t n) {
    for (size_t i = 0; i < n; i++) {
        close(fds[i]);
    }
}

/*
 * Closes the broker connection (broker_lock held). iobd reclaims what belonged to it,
 * the mediated channel included, so the generation tells the channel it is gone.
 */
static void iob__broker_drop(iob__session_t* s) {
    close(s->broker_fd);
    s->broker_fd = -1;
    atomic_fetch_add(&s->broker_gen, 1);
}

/*
 * Sends one request (unless req is NULL) and waits for its reply; broker_lock held.
 * *error_reply (optional) is set when the server answered with an ERROR message rather than
 * the typed reply: it did not take the request, so nothing was done.
 */
static zx_status_t iob__broker_exchange(iob__session_t* s, const void* req, size_t req_len,
                                        uint64_t request_id, uint16_t reply_type, void* reply,
                                        size_t reply_len, int* fds_out, size_t want_fds,
                                        bool* error_reply) {
    if (error_reply != NULL) {
        *error_reply = false;
    }
    /* req NULL: the request has been sent already (iob__broker_mediated); only wait. */
    zx_status_t st = req != NULL ? iob_fd_send(s->broker_fd, req, req_len, NULL, 0) : ZX_OK;
    if (st != ZX_OK) {
        return st;
    }
    for (;;) {
        union {
            iob_broker_hdr_t hdr;
            iob_broker_status_reply_t status;
            iob_broker_map_reply_t map;
            unsigned char bytes[IOB_BROKER_MAX_MSG + 1];
        } msg;
        memset(&msg, 0, sizeof msg);
        int fds[IOB__BROKER_REPLY_MAX_FDS];
        size_t len = 0;
        size_t nfds = 0;
        st = iob_fd_recv(s->broker_fd, msg.bytes, sizeof msg.bytes, &len, fds,
                         IOB__BROKER_REPLY_MAX_FDS, &nfds);
        if (st == ZX_ERR_SHOULD_WAIT) {
            return ZX_ERR_TIMED_OUT; /* SO_RCVTIMEO ran out */
        }
        if (st != ZX_OK) {
            return st;
        }
        /* The server is trusted more than clients, but its replies are still checked. */
        bool ok = len >= sizeof(iob_broker_hdr_t) && msg.hdr.version == IOB_BROKER_WIRE_VERSION &&
                  msg.hdr.size == len;
        /*
         * An ERROR with request_id 0 answers a request whose header the server could not
         * read. Only one request is in flight on this connection (broker_lock; a timed-out
         * one closes it), so it is ours.
         */
        bool ours = msg.hdr.request_id == request_id ||
                    (msg.hdr.type == IOB_BROKER_ERROR && msg.hdr.request_id == 0);
        if (ok && !ours) {
            /* A late reply to a request that timed out earlier: drop it. */
            iob__close_fds(fds, nfds);
            continue;
        }
        if (ok && msg.hdr.type == IOB_BROKER_ERROR && len == sizeof(iob_broker_status_reply_t)) {
            iob__close_fds(fds, nfds);
            if (error_reply != NULL) {
                *error_reply = true;
            }
            return msg.status.status < 0 ? msg.status.status : ZX_ERR_IO;
        }
        if (!ok || msg.hdr.type != reply_type || len != reply_len) {
            iob__close_fds(fds, nfds);
            return ZX_ERR_IO;
        }
        if (nfds != 0 && nfds != want_fds) {
            iob__close_fds(fds, nfds); /* all or nothing: the caller checks for none */
            nfds = 0;
        }
        memcpy(reply, msg.bytes, reply_len);
        for (size_t i = 0; i < want_fds; i++) {
            fds_out[i] = i < nfds ? fds[i] : -1;
        }
        return ZX_OK;
    }
}

/*
 * Sends the request of `type` whose header req heads (len bytes in all), under a fresh
 * request_id, and waits for its typed reply with want_fds descriptors; broker_lock held.
 */
static zx_status_t iob__broker_call_fds(iob__session_t* s, iob_broker_hdr_t* req, uint16_t type,
                                        size_t len, void* reply, size_t reply_len, int* fds_out,
                                        size_t want_fds, bool* error_reply) {
    uint64_t id = s->next_request_id++;
    iob_broker_hdr_init(req, type, (uint32_t)len, id);
    return iob__broker_exchange(s, req, len, id, type | IOB_BROKER_REPLY, reply, reply_len,
                                fds_out, want_fds, error_reply);
}

/* iob__broker_call_fds with one descriptor (fd_out: -1 when none came) or none (NULL). */
static zx_status_t iob__broker_call(iob__session_t* s, iob_broker_hdr_t* req, uint16_t type,
                                   size_t len, void* reply, size_t reply_len, int* fd_out,
                                   bool* error_reply) {
    int fd = -1;
    zx_status_t st = iob__broker_call_fds(s, req, type, len, reply, reply_len, &fd,
                                          fd_out != NULL ? 1u : 0u, error_reply);
    if (fd_out != NULL) {
        *fd_out = fd;
    }
    return st;
}

/*
 * A mediated request is one datagram of up to IOB_BROKER_MAX_MEDIATED_MSG bytes. On
 * AF_UNIX a datagram is charged to the sender's SO_SNDBUF (a send larger than it, minus a
 * little overhead, is EMSGSIZE; the receiver's SO_RCVBUF plays no part, its queue is
 * limited in datagrams), so ours must hold two of them: one in flight and room for the
 * next. The default (wmem_default, 208 KiB) does; a host configured lower gets raised up to
 * wmem_max, and if even that is too small, mediated calls use gRPC.
 */
static void iob__broker_size_buffers(iob__session_t* s) {
    int want = (int)(2 * IOB_BROKER_MAX_MEDIATED_MSG + 4096);
    int have = 0;
    socklen_t len = sizeof have;
    if (getsockopt(s->broker_fd, SOL_SOCKET, SO_SNDBUF, &have, &len) == 0 && have >= want) {
        return;
    }
    setsockopt(s->broker_fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
    len = sizeof have;
    if (getsockopt(s->broker_fd, SOL_SOCKET, SO_SNDBUF, &have, &len) != 0 ||
        have < (int)(IOB_BROKER_MAX_MEDIATED_MSG + 1024)) {
        s->broker_no_mediated = true;
    }
}

/* Connects and attaches the broker socket if that has not happened yet; broker_lock held. */
static zx_status_t iob__broker_ensure(iob__session_t* s) {
    if (s->broker_fd >= 0) {
        return ZX_OK;
    }
    if (s->info.broker_path[0] == '\0') {
        return ZX_ERR_NOT_SUPPORTED; /* a remote iobd: no shared memory to map */
    }
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    size_t n = strnlen(s->info.broker_path, sizeof s->info.broker_path);
    if (n >= sizeof addr.sun_path) {
        return ZX_ERR_BAD_PATH;
    }
    memcpy(addr.sun_path, s->info.broker_path, n);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return iob_status_from_errno(errno);
    }
    struct timeval tv = {.tv_sec = IOB__BROKER_TIMEOUT_S, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) {
        int err = errno;
        close(fd);
        return err == EACCES || err == EPERM ? ZX_ERR_ACCESS_DENIED : ZX_ERR_UNAVAILABLE;
    }
    s->broker_fd = fd;
    iob__broker_size_buffers(s);
    iob_broker_attach_req_t req;
    memset(&req, 0, sizeof req);
    req.session_id = s->info.session_id;
    _Static_assert(sizeof req.secret == sizeof s->info.secret, "secret sizes agree");
    memcpy(req.secret, s->info.secret, sizeof req.secret);
    iob_broker_status_reply_t reply;
    zx_status_t st = iob__broker_call(s, &req.hdr, IOB_BROKER_ATTACH, sizeof req, &reply,
                                      sizeof reply, NULL, NULL);
    memset(&req, 0, sizeof req); /* the secret does not linger on the stack */
    if (st == ZX_OK) {
        st = reply.status;
    }
    if (st != ZX_OK) {
        iob__broker_drop(s);
    }
    return st;
}

zx_status_t iob__broker_map(iob__session_t* s, zx_handle_t handle, zx_vm_option_t options,
                            uint32_t region_index, uint64_t region_offset, uint64_t len,
                            bool check_only, iob__grant_t* grant) {
    pthread_mutex_lock(&s->broker_lock);
    zx_status_t st = iob__broker_ensure(s);
    if (st == ZX_OK) {
        iob_broker_map_req_t req;
        memset(&req, 0, sizeof req);
        req.handle = handle;
        req.options = options;
        req.region_index = region_index;
        req.flags = check_only ? IOB_BROKER_MAP_CHECK_ONLY : 0u;
        req.region_offset = region_offset;
        req.len = len;
        iob_broker_map_reply_t reply;
        int fd = -1;
        st = iob__broker_call(s, &req.hdr, IOB_BROKER_MAP, sizeof req, &reply, sizeof reply, &fd,
                              NULL);
        if (st == ZX_OK) {
            st = reply.status;
            bool want_fd = st == ZX_OK && !check_only;
            if (want_fd != (fd >= 0)) {
                st = ZX_ERR_IO; /* a grant without its fd, or an fd without a grant */
            }
            if (st == ZX_OK) {
                grant->fd = fd;
                grant->writable = (reply.flags & IOB_BROKER_GRANT_WRITABLE) != 0;
                grant->mapping_id = reply.mapping_id;
                grant->region_size = reply.region_size;
                grant->iob_koid = reply.iob_koid;
                fd = -1;
            }
            if (fd >= 0) {
                close(fd);
            }
        }
        if (st == ZX_ERR_TIMED_OUT || st == ZX_ERR_IO || st == ZX_ERR_PEER_CLOSED) {
            /* The stream is out of step or gone: start over with a fresh connection. */
            iob__broker_drop(s);
        }
    }
    pthread_mutex_unlock(&s->broker_lock);
    return st;
}

zx_status_t iob__broker_unmap(iob__session_t* s, uint64_t mapping_id) {
    pthread_mutex_lock(&s->broker_lock);
    zx_status_t st = iob__broker_ensure(s);
    if (st == ZX_OK) {
        iob_broker_unmap_req_t req;
        memset(&req, 0, sizeof req);
        req.mapping_id = mapping_id;
        iob_broker_status_reply_t reply;
        st = iob__broker_call(s, &req.hdr, IOB_BROKER_UNMAP, sizeof req, &reply, sizeof reply,
                              NULL, NULL);
        if (st == ZX_OK) {
            st = reply.status;
        } else {
            iob__broker_drop(s);
        }
    }
    pthread_mutex_unlock(&s->broker_lock);
    return st;
}

zx_status_t iob__broker_import(iob__session_t* s, const char* token, zx_handle_t* out) {
    size_t n = strnlen(token, IOB_BROKER_TOKEN_SIZE);
    if (n >= IOB_BROKER_TOKEN_SIZE) {
        return ZX_ERR_NOT_FOUND; /* cannot be a token (the caller checks this already) */
    }
    pthread_mutex_lock(&s->broker_lock);
    /*
     * Import does not need the broker, but a process that imports is about to map, which
     * needs it anyway: attaching here is not extra work. Any failure to get an answer
     * (remote iobd, refused attach) leaves the import to gRPC.
     */
    zx_status_t st = iob__broker_ensure(s);
    if (st != ZX_OK) {
        pthread_mutex_unlock(&s->broker_lock);
        return ZX_ERR_NEXT;
    }
    iob_broker_import_req_t req;
    memset(&req, 0, sizeof req);
    memcpy(req.token, token, n);
    iob_broker_import_reply_t reply;
    bool error_reply = false;
    st = iob__broker_call(s, &req.hdr, IOB_BROKER_IMPORT, sizeof req, &reply, sizeof reply, NULL,
                          &error_reply);
    explicit_bzero(&req, sizeof req); /* the token is a credential */
    if (st == ZX_OK) {
        st = reply.status;
        if (st == ZX_OK && reply.handle == ZX_HANDLE_INVALID) {
            st = ZX_ERR_IO; /* a success without a handle: not a server we understand */
        }
        if (st == ZX_OK) {
            *out = reply.handle;
        }
    } else if (error_reply) {
        /* The server did not take the request: the token is untouched. */
        st = ZX_ERR_NEXT;
    } else {
        /*
         * The stream is out of step or gone: start over with a fresh connection next time.
         * If the request reached iobd the token is spent (its handle was closed when the
         * reply could not be sent, or stays in this session), and gRPC will say NOT_FOUND;
         * if it did not, gRPC imports it. Either answer is true.
         */
        iob__broker_drop(s);
        st = ZX_ERR_NEXT;
    }
    pthread_mutex_unlock(&s->broker_lock);
    return st;
}

zx_status_t iob__broker_mediated(iob__session_t* s, iob_broker_hdr_t* hdr,
                                 const struct iovec* iov, size_t iovcnt, int fd,
                                 uint16_t reply_type, void* reply, size_t reply_len) {
    pthread_mutex_lock(&s->broker_lock);
    zx_status_t st = s->broker_no_mediated ? ZX_ERR_NOT_SUPPORTED : iob__broker_ensure(s);
    if (st != ZX_OK || s->broker_no_mediated) {
        pthread_mutex_unlock(&s->broker_lock);
        return ZX_ERR_NEXT;
    }
    uint64_t id = s->next_request_id++;
    hdr->request_id = id;
    struct msghdr msg = {.msg_iov = (struct iovec*)(uintptr_t)iov, .msg_iovlen = iovcnt};
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int))];
    } control;
    if (fd >= 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        struct cmsghdr* cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    ssize_t n;
    do {
        /* MSG_NOSIGNAL: a vanished iobd is a status, not a SIGPIPE in the caller's process. */
        n = sendmsg(s->broker_fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int err = errno;
        if (err == EFAULT) {
            /* Nothing was queued: a datagram is copied in whole or not at all. */
            pthread_mutex_unlock(&s->broker_lock);
            return ZX_ERR_IO_INVALID;
        }
        if (err == EMSGSIZE) {
            s->broker_no_mediated = true;
        } else {
            iob__broker_drop(s);
        }
        pthread_mutex_unlock(&s->broker_lock);
        return ZX_ERR_NEXT;
    }
    /* One request of the same size goes out; its reply is read with the ordinary loop. */
    bool error_reply = false;
    st = iob__broker_exchange(s, NULL, 0, id, reply_type, reply, reply_len, NULL, 0, &error_reply);
    if (st != ZX_OK && error_reply) {
        /* Not taken (an ERROR reply): iobd did nothing, so gRPC may do it. */
        st = ZX_ERR_NEXT;
    } else if (st != ZX_OK) {
        iob__broker_drop(s);
    }
    pthread_mutex_unlock(&s->broker_lock);
    return st;
}

zx_status_t iob__broker_channel(iob__session_t* s, int fds[3], uint64_t* gen) {
    pthread_mutex_lock(&s->broker_lock);
    zx_status_t st = s->broker_no_mediated ? ZX_ERR_NOT_SUPPORTED : iob__broker_ensure(s);
    if (st == ZX_OK) {
        iob_broker_channel_req_t req;
        memset(&req, 0, sizeof req);
        req.layout = IOB_BROKER_MEDIATED_LAYOUT;
        iob_broker_channel_reply_t reply;
        bool error_reply = false;
        st = iob__broker_call_fds(s, &req.hdr, IOB_BROKER_CHANNEL, sizeof req, &reply,
                                  sizeof reply, fds, 3, &error_reply);
        if (st == ZX_OK) {
            st = reply.status;
            if (st == ZX_OK && (fds[0] < 0 || reply.sub_size != IOB_MCHAN_SUB_SIZE)) {
                st = ZX_ERR_IO;
            }
            if (st != ZX_OK) {
                iob__close_fds(fds, fds[0] >= 0 ? 3u : 0u);
            }
        } else if (!error_reply) {
            iob__broker_drop(s);
        }
        /* An ERROR reply leaves the connection as it was: datagrams still work. */
        *gen = atomic_load(&s->broker_gen);
    }
    pthread_mutex_unlock(&s->broker_lock);
    return st;
}
