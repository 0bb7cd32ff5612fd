/* SPDX-License-Identifier: MIT */
/*
 * File-descriptor passing over AF_UNIX SOCK_SEQPACKET sockets (SCM_RIGHTS).
 *
 * The receive side follows libuv's uv__stream_recv_cmsg: every descriptor the kernel
 * installed in this process is either handed to the caller (success) or closed (any error),
 * so a malformed or hostile peer cannot make us leak fds.
 */
#include "shm/fdpass.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shm/region.h"
#include "shm/sys.h"

/*
 * Linux 6.5+ can attach a pidfd (SCM_PIDFD) when the socket has SO_PASSPIDFD; it is
 * installed like an SCM_RIGHTS fd, so it has to be closed too. Older headers lack the name.
 */
#ifdef SCM_PIDFD
#define IOB__SCM_PIDFD SCM_PIDFD
#else
#define IOB__SCM_PIDFD 0x04
#endif

/*
 * Room for every descriptor one message can carry (SCM_MAX_FD) plus a spare control message
 * (credentials, a pidfd), whatever max_fds the caller asks for: all of them are installed and
 * can then be counted and handed over or closed. What does not fit the buffer the kernel
 * would release in this thread (MSG_CTRUNC); see IOB_FDPASS_RECV_MAX_FDS.
 */
#define IOB__SCM_MAX_FD 253
#define IOB__CMSG_CAP (CMSG_SPACE(sizeof(int) * IOB__SCM_MAX_FD) + CMSG_SPACE(sizeof(int) * 4))
_Static_assert(IOB__CMSG_CAP / sizeof(int) <= IOB_FDPASS_RECV_MAX_FDS,
               "every installed descriptor can be returned");

typedef union {
    char buf[IOB__CMSG_CAP];
    struct cmsghdr align; /* CMSG_* walk the buffer as cmsghdrs */
} iob__cmsg_buf_t;

zx_status_t iob_fd_send(int sock, const void* buf, size_t len, const int* fds, size_t nfds) {
    if (nfds > IOB_FDPASS_MAX_FDS || (nfds > 0 && fds == NULL) || (len > 0 && buf == NULL)) {
        return ZX_ERR_INVALID_ARGS;
    }
    /* The receiver reads "0 bytes, no fds" as an orderly shutdown, so it cannot be a message. */
    if (len == 0 && nfds == 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    struct iovec iov = {.iov_base = (void*)(uintptr_t)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    iob__cmsg_buf_t control;
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do {
        /* MSG_NOSIGNAL: a vanished peer is a status, not a SIGPIPE that kills the server. */
        n = iob__sys_sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return iob_status_from_errno(errno);
    }
    /*
     * SOCK_SEQPACKET sends whole messages, so this cannot happen on the sockets we use; if a
     * stream socket were passed by mistake, the fds went with the first byte and resending
     * the rest would duplicate nothing useful. Report it.
     */
    if ((size_t)n != len) {
        return ZX_ERR_IO;
    }
    return ZX_OK;
}

static void close_all(const int* fds, size_t n) {
    for (size_t i = 0; i < n; i++) {
        close(fds[i]);
    }
}

zx_status_t iob_fd_recv_all(int sock, void* buf, size_t cap, size_t* len_out, int* fds,
                            size_t* nfds_out) {
    return iob_fd_recv_all_flags(sock, buf, cap, 0, len_out, fds, nfds_out);
}

zx_status_t iob_fd_recv_all_flags(int sock, void* buf, size_t cap, int flags, size_t* len_out,
                                  int* fds, size_t* nfds_out) {
    if (len_out == NULL || nfds_out == NULL || (cap > 0 && buf == NULL) || fds == NULL ||
        (flags & MSG_PEEK) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    *nfds_out = 0;
    iob__cmsg_buf_t control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = control.buf,
        .msg_controllen = sizeof control.buf,
    };
    ssize_t n;
    do {
        /* CLOEXEC from the start: another thread may fork+exec before we could set it. */
        n = iob__sys_recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return iob_status_from_errno(errno);
    }

    /*
     * Collect every installed descriptor first, whatever else is wrong with the message:
     * each one must reach the caller, so none may be skipped.
     */
    size_t ngot = 0;
    bool bad_cmsg = false;
    if (msg.msg_controllen > 0) {
        for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL;
             cmsg = CMSG_NXTHDR(&msg, cmsg)) {
            if (cmsg->cmsg_len < CMSG_LEN(0)) {
                bad_cmsg = true;
                continue;
            }
            size_t payload = cmsg->cmsg_len - CMSG_LEN(0);
            bool carries_fds = cmsg->cmsg_level == SOL_SOCKET &&
                               (cmsg->cmsg_type == SCM_RIGHTS || cmsg->cmsg_type == IOB__SCM_PIDFD);
            if (!carries_fds) {
                bad_cmsg = true; /* e.g. SCM_CREDENTIALS: nothing to close, still unexpected */
                continue;
            }
            if (cmsg->cmsg_type != SCM_RIGHTS) {
                bad_cmsg = true;
            }
            const unsigned char* data = CMSG_DATA(cmsg);
            for (size_t off = 0; off + sizeof(int) <= payload; off += sizeof(int)) {
                int fd;
                memcpy(&fd, data + off, sizeof fd); /* CMSG_DATA need not be int-aligned */
                if (ngot < IOB_FDPASS_RECV_MAX_FDS) {
                    fds[ngot++] = fd;
                } else {
                    close(fd); /* cannot happen with IOB__CMSG_CAP, but never leak */
                }
            }
        }
    }
    *nfds_out = ngot;
    *len_out = (size_t)n;
    if ((msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0 || bad_cmsg) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    /* On SOCK_SEQPACKET only an orderly shutdown reads as 0 bytes with no descriptors. */
    if (n == 0 && ngot == 0) {
        return ZX_ERR_PEER_CLOSED;
    }
    return ZX_OK;
}

zx_status_t iob_fd_recv(int sock, void* buf, size_t cap, size_t* len_out, int* fds, size_t max_fds,
                        size_t* nfds_out) {
    if (len_out == NULL || nfds_out == NULL || (cap > 0 && buf == NULL) ||
        (max_fds > 0 && fds == NULL) || max_fds > IOB_FDPASS_MAX_FDS) {
        return ZX_ERR_INVALID_ARGS;
    }
    int got[IOB_FDPASS_RECV_MAX_FDS];
    size_t ngot = 0;
    size_t len = 0;
    zx_status_t st = iob_fd_recv_all(sock, buf, cap, &len, got, &ngot);
    if (st == ZX_OK && ngot > max_fds) {
        st = ZX_ERR_IO_DATA_INTEGRITY;
    }
    if (st != ZX_OK) {
        close_all(got, ngot);
        return st;
    }
    if (ngot > 0) {
        memcpy(fds, got, sizeof(int) * ngot);
    }
    *len_out = len;
    *nfds_out = ngot;
    return ZX_OK;
}
