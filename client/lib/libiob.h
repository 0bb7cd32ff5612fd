/* SPDX-License-Identifier: MIT */
/*
 * libiob internals: the process's session (its iob_conn and its map-broker socket), the
 * mapping table, the signal fd. Nothing here is installed or exported.
 *
 * Ownership: the process holds at most one current session (iob__session_t). Every call
 * takes a reference for its duration (iob__session_get / iob__session_put), so
 * iob_client_close on one thread cannot free a session another thread is using; the
 * connection itself is closed when the last reference goes.
 */
#ifndef IOB_CLIENT_LIB_LIBIOB_H_
#define IOB_CLIENT_LIB_LIBIOB_H_

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <zircon/syscalls.h>

#include "client/rpc/iob_conn.h"
#include "shm/broker_wire.h"
#include "shm/handles.h"

typedef struct iob__session {
    atomic_uint refs;
    iob_conn_t* conn;
    iob_conn_session_info_t info;

    /* The map-broker connection, opened on the first map or import; guarded by broker_lock. */
    pthread_mutex_t broker_lock;
    int broker_fd;
    uint64_t next_request_id;
    /* Mediated operations go over gRPC: the socket cannot send a full-sized request. */
    bool broker_no_mediated;
    /* Bumped whenever broker_fd is closed: what iobd tied to the connection is gone. */
    atomic_uint_fast64_t broker_gen;

    /* The mediated request channel (channel.c), made on first use; guarded by chan_lock. */
    pthread_mutex_t chan_lock;
    struct iob__mchan* chan;
    bool chan_off; /* refused, or failed once: datagrams from now on */
} iob__session_t;

/*
 * The current session, opened on first use ($IOB_SERVER or the default socket). On
 * failure returns the transport's status (ZX_ERR_UNAVAILABLE when iobd is unreachable).
 */
zx_status_t iob__session_get(iob__session_t** out);
/* The current session with a reference, or NULL; never opens one. */
iob__session_t* iob__session_peek(void);
void iob__session_put(iob__session_t* session);

/* Page size for rounding: the server's, or the OS's when no server can be reached. */
uint64_t iob__page_size(void);

/* ---- Map broker client (session.c) ---- */

typedef struct iob__grant {
    int fd; /* owned by the caller; -1 for check-only requests */
    bool writable;
    uint64_t mapping_id;
    uint64_t region_size;
    uint64_t iob_koid;
} iob__grant_t;

/*
 * Asks the broker for a mapping. On ZX_OK (not check-only) the caller owns grant->fd.
 * ZX_ERR_NOT_SUPPORTED when the session has no broker (a remote iobd).
 */
zx_status_t iob__broker_map(iob__session_t* session, zx_handle_t handle, zx_vm_option_t options,
                            uint32_t region_index, uint64_t region_offset, uint64_t len,
                            bool check_only, iob__grant_t* grant);
zx_status_t iob__broker_unmap(iob__session_t* session, uint64_t mapping_id);
/*
 * Imports a transfer token through the broker (one socket round trip instead of a gRPC
 * call). Returns the import's own status (ZX_OK with *out, or the core's refusal such as
 * ZX_ERR_NOT_FOUND), or ZX_ERR_NEXT when the broker could not answer it at all (no broker,
 * a broker too old for IMPORT, a failed connection): the caller then imports over gRPC.
 */
zx_status_t iob__broker_import(iob__session_t* session, const char* token, zx_handle_t* out);

/*
 * Sends one mediated request (WRITEV, ALLOCATE_ID) whose fixed part iov[0] starts with
 * *hdr (the request id is filled in here) and whose other iovecs may point straight into
 * the caller's memory: one sendmsg, no copy. Returns ZX_OK with the typed reply in *reply,
 * or:
 * - ZX_ERR_NEXT: nothing reached iobd's core (no broker, a broker too old for the type,
 *   a failed connect or send); the caller uses gRPC;
 * - ZX_ERR_IO_INVALID: the kernel could not read one of the caller's buffers (EFAULT);
 *   nothing was sent; the caller finds out which and sends again;
 * - a transport status (ZX_ERR_TIMED_OUT, ZX_ERR_PEER_CLOSED, ZX_ERR_IO) when the request
 *   was sent but no answer came: it may have been carried out, so it is not repeated.
 * fd, unless -1, travels with the request (SCM_RIGHTS) and stays the caller's to close.
 */
struct iovec;
zx_status_t iob__broker_mediated(iob__session_t* session, iob_broker_hdr_t* hdr,
                                 const struct iovec* iov, size_t iovcnt, int fd,
                                 uint16_t reply_type, void* reply, size_t reply_len);

/*
 * Asks the broker for this connection's mediated request channel: ZX_OK with the
 * submission, completion and doorbell memfds in fds (the caller's) and the connection's
 * generation (broker_gen) in *gen; otherwise a status and nothing to close.
 */
zx_status_t iob__broker_channel(iob__session_t* session, int fds[3], uint64_t* gen);

/* ---- The mediated request channel (channel.c) ---- */

typedef struct iob__mchan iob__mchan_t;
/*
 * Takes the session's channel (making it on first use) for one call: ZX_OK with *msg the
 * request area (IOB_BROKER_MAX_MEDIATED_MSG bytes, where the caller lays out the request
 * exactly as the broker datagram) and the channel held until iob__mchan_end; ZX_ERR_NEXT
 * when there is no channel (use the broker's datagrams).
 */
zx_status_t iob__mchan_begin(iob__session_t* session, iob__mchan_t** out, unsigned char** msg);
/*
 * Hands the request in *msg to iobd and waits for it: ZX_OK with the call's status in
 * *status (and ALLOCATE_ID's id in *id), or ZX_ERR_PEER_CLOSED / ZX_ERR_TIMED_OUT when no
 * answer came (the request may have run; the channel is dropped).
 */
zx_status_t iob__mchan_call(iob__session_t* session, iob__mchan_t* chan, zx_status_t* status,
                            uint32_t* id);
void iob__mchan_end(iob__session_t* session);
/* Unmaps the channel (the session is being freed). */
void iob__mchan_free(iob__mchan_t* chan);

/*
 * Copies n bytes from src into dst, or returns false when any of them cannot be read (as
 * iob__copy_from_user): through the kernel the first time, then, for pages proven readable
 * in the last milliseconds, with a guarded memcpy and no system call (channel.c's rule).
 */
bool iob__guarded_copy(void* dst, const void* src, size_t n);

/*
 * One fault guard (one sigsetjmp, one clock read) for all the copies fn makes with
 * iob__hot_copy: a memcpy from pages proved readable in the last milliseconds only, the
 * guard following each copy's source. ZX_OK: fn returned ZX_OK and every copy was made.
 * ZX_ERR_NEXT: a source was not in remembered pages, or faulted, or the guard is not
 * installed; nothing fn produced may be used, and the caller does the work again with
 * iob__guarded_copy, which settles each buffer through the kernel.
 */
zx_status_t iob__hot_copies(zx_status_t (*fn)(void* ctx), void* ctx);
bool iob__hot_copy(void* dst, const void* src, size_t n);

/* ---- Reading the caller's memory without faulting (channel.c) ---- */

/*
 * Copies n bytes from src (any address the caller passed) into dst, or returns false when
 * any of them cannot be read by this process (unmapped, PROT_NONE, NULL): the kernel reads
 * them (process_vm_readv on our own pid, or a pipe where that is forbidden), so a bad
 * address is an answer, never a SIGSEGV.
 */
bool iob__copy_from_user(void* dst, const void* src, size_t n);

/* ---- zx_vmar_map_iob's own checks (vmar.c), exposed for unit tests ---- */

/*
 * The checks of A.4 step 7 that only the client can make (it alone knows vmar_offset and
 * the placement options), in Zircon's order. ZX_OK, ZX_ERR_INVALID_ARGS or
 * ZX_ERR_OUT_OF_RANGE.
 */
zx_status_t iob__map_local_checks(zx_vm_option_t options, uint64_t vmar_offset,
                                  uint64_t region_offset, uint64_t region_len, uint64_t page_size);

/*
 * Combines the local verdict with the server's (obtained with a check-only request) into
 * the status Zircon returns: the server's checks of steps 1-6 win over local ones, local
 * ones win over the server's later ones (see vmar.c).
 */
zx_status_t iob__map_merge_status(zx_status_t local, zx_status_t server, zx_vm_option_t options,
                                  uint64_t region_offset, uint64_t region_len, uint64_t page_size);

/* Would a + b overflow? */
bool iob__add_overflows(uint64_t a, uint64_t b);

/* ---- Signals (signals.c) ---- */

/* The iob_conn event callback: records the change and wakes iob_signal_fd. */
void iob__signal_event(void* ctx, zx_handle_t handle, zx_signals_t signals);
bool iob__signal_fd_wanted(void); /* iob_signal_fd has been called: sessions want events */

#endif /* IOB_CLIENT_LIB_LIBIOB_H_ */
