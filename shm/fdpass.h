/* SPDX-License-Identifier: MIT */
/*
 * File-descriptor passing over AF_UNIX SOCK_SEQPACKET sockets (SCM_RIGHTS).
 * Ownership (nng's rule): on success the receiver owns every received fd; on any error
 * the helper has already closed every fd it received, so nothing leaks.
 */
#ifndef IOB_SHM_FDPASS_H_
#define IOB_SHM_FDPASS_H_

#include <stddef.h>

#include <zircon/types.h>

#define IOB_FDPASS_MAX_FDS 16
/*
 * The most descriptors one received message can install in this process: Linux's
 * SCM_MAX_FD (253) plus room for a spare control message. The receive buffer holds that
 * many, so the kernel never drops a sender's descriptor on our behalf: a descriptor it
 * drops is released in the receiving thread, and its release (a socket that lingers, a
 * FUSE file's flush) can block that thread for as long as the sender likes.
 */
#define IOB_FDPASS_RECV_MAX_FDS 272

/*
 * Sends one message of len bytes with nfds descriptors (the sender keeps its own copies).
 * A short send is ZX_ERR_IO; a closed peer ZX_ERR_PEER_CLOSED.
 * Errors: ZX_ERR_INVALID_ARGS (nfds > IOB_FDPASS_MAX_FDS, or len == 0 with nfds == 0: the
 * receiver would read that as the peer's shutdown), ZX_ERR_SHOULD_WAIT (a non-blocking
 * socket is full), ZX_ERR_PEER_CLOSED, ZX_ERR_IO; others as iob_status_from_errno.
 */
zx_status_t iob_fd_send(int sock, const void* buf, size_t len, const int* fds, size_t nfds);

/*
 * Receives one message into buf (capacity cap) and up to max_fds descriptors, with
 * MSG_CMSG_CLOEXEC. Truncated data or control data (MSG_TRUNC, MSG_CTRUNC), more fds than
 * max_fds, or a non-SCM_RIGHTS control message: every received fd is closed and the result
 * is ZX_ERR_IO_DATA_INTEGRITY. An orderly shutdown by the peer: ZX_ERR_PEER_CLOSED.
 * max_fds above IOB_FDPASS_MAX_FDS: ZX_ERR_INVALID_ARGS (nothing is received). A non-blocking
 * socket with nothing queued: ZX_ERR_SHOULD_WAIT. The out-parameters and fds[] are written
 * only on success; received descriptors have FD_CLOEXEC set.
 */
zx_status_t iob_fd_recv(int sock, void* buf, size_t cap, size_t* len_out, int* fds,
                        size_t max_fds, size_t* nfds_out);

/*
 * As iob_fd_recv, for a receiver that must decide where descriptors are closed (a server
 * whose thread may not wait on a close): every descriptor the message installed is
 * returned in fds (room for IOB_FDPASS_RECV_MAX_FDS) and *nfds_out, with ZX_OK and also
 * with ZX_ERR_IO_DATA_INTEGRITY (truncated data or control data, a non-SCM_RIGHTS
 * control message; *len_out is then set too). On any other status *nfds_out is 0. The
 * caller owns and closes them all.
 */
zx_status_t iob_fd_recv_all(int sock, void* buf, size_t cap, size_t* len_out, int* fds,
                            size_t* nfds_out);
/* The same with extra recvmsg flags (MSG_DONTWAIT, MSG_PEEK is not allowed). */
zx_status_t iob_fd_recv_all_flags(int sock, void* buf, size_t cap, int flags, size_t* len_out,
                                  int* fds, size_t* nfds_out);

#endif /* IOB_SHM_FDPASS_H_ */
