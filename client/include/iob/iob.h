/* SPDX-License-Identifier: MIT */
/*
 * libiob's own additions to the Zircon API (<zircon/syscalls.h>): connections, handing an
 * endpoint to another process, and a pollable fd for signal changes.
 *
 * The connection model. A process has at most one connection to iobd at a time, and with
 * it one session that owns every handle the process holds (docs/zircon-iob.md L). The zx_* calls
 * open it lazily on first use (thread-safe), to $IOB_SERVER or else the default socket
 * (/run/iob/iobd.sock). iob_client_connect opens it explicitly, to a chosen target, before
 * that; iob_client_close ends it: every handle of the session closes (peers see
 * ZX_IOB_PEER_CLOSED once this process's mappings are gone too), and the next zx_* call
 * opens a fresh session.
 *
 * Mapping on Linux (zx_vmar_map_iob, zx_vmar_unmap; docs/zircon-iob.md L "Mapping"):
 * - zx_vmar_root_self() is the only VMAR: it stands for the whole address space. Any other
 *   handle is ZX_ERR_WRONG_TYPE (a valid handle of this process) or ZX_ERR_BAD_HANDLE.
 * - ZX_VM_SPECIFIC maps at the absolute address vmar_offset, never over anything
 *   (ZX_ERR_ALREADY_EXISTS). ZX_VM_SPECIFIC_OVERWRITE replaces IOB mappings of this library
 *   and free space only; other memory in the range is ZX_ERR_ALREADY_EXISTS.
 * - ZX_VM_ALIGN_* is honoured; ZX_VM_MAP_RANGE pre-faults (MAP_POPULATE);
 *   ZX_VM_OFFSET_IS_UPPER_LIMIT is ZX_ERR_NOT_SUPPORTED (after every check Zircon makes).
 * - zx_vmar_unmap unmaps the IOB mappings of this library inside the range (splitting them
 *   where the range cuts them) and leaves any other memory alone; a range that holds no IOB
 *   mapping is ZX_ERR_NOT_FOUND. A mapping ends, and iobd hears of it, when its last page
 *   is unmapped. addr must be page-aligned and len is rounded up to the page size
 *   (zx_system_get_page_size(): the server's, 2 MiB with hugepages).
 * - Each mapping shows in /proc/self/maps as "memfd:iob-<ep0 koid>-r<region index>".
 *
 * Not supported (documented limits): munmap of library mappings behind zx_vmar_unmap's
 * back, fork() of a process that uses libiob (gRPC is not fork-safe; exec or posix_spawn
 * instead), passing region fds to other processes, and punching holes into a region.
 */
#ifndef IOB_IOB_H_
#define IOB_IOB_H_

#include <stddef.h>
#include <stdint.h>

#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(IOB_BUILDING_LIBRARY) && defined(__GNUC__)
#define IOB_API __attribute__((visibility("default")))
#else
#define IOB_API
#endif

/* ---- Connections ---- */

typedef struct iob_client iob_client_t;

/*
 * Opens this process's connection to iobd at `target` ("unix:/path", or "host:port" for a
 * remote iobd, which allows everything but mapping); NULL means $IOB_SERVER, else the
 * default socket. *out stays valid until iob_client_close.
 * Errors: ZX_ERR_INVALID_ARGS (out is NULL), ZX_ERR_ALREADY_BOUND (the process is already
 * connected, explicitly or implicitly), ZX_ERR_UNAVAILABLE (iobd not reachable),
 * ZX_ERR_ACCESS_DENIED (refused by iobd's policy).
 */
IOB_API zx_status_t iob_client_connect(const char* target, iob_client_t** out);

/*
 * Ends the connection: the session's handles close now; mappings stay valid in this
 * process (and counted by iobd until the process exits). NULL is a no-op.
 */
IOB_API void iob_client_close(iob_client_t* client);

/* The session's id as iobd knows it (for logs and iobctl); 0 when not connected. */
IOB_API uint64_t iob_client_session_id(const iob_client_t* client);

/* ---- Handing an endpoint to another process (a Zircon channel's job) ---- */

#define IOB_TOKEN_SIZE 64 /* bytes, including the terminating NUL */

/*
 * Turns `handle` into a printable, single-use token (at most 63 characters) that another
 * process passes to iob_handle_import. Consumes the handle on success. The token keeps the
 * endpoint alive, like a handle in flight in a channel, until it is imported or its
 * time-to-live (iobd's configuration; 60 s by default) runs out.
 * Errors: ZX_ERR_INVALID_ARGS (token is NULL), ZX_ERR_BAD_HANDLE,
 * ZX_ERR_ACCESS_DENIED (no ZX_RIGHT_TRANSFER; the handle stays valid).
 */
IOB_API zx_status_t iob_handle_export(zx_handle_t handle, char token[IOB_TOKEN_SIZE]);

/*
 * Redeems a token: *out is a new handle of this process with exactly the exported rights.
 * Errors: ZX_ERR_INVALID_ARGS (NULL token or out), ZX_ERR_NOT_FOUND (unknown, already used
 * or expired token).
 */
IOB_API zx_status_t iob_handle_import(const char* token, zx_handle_t* out);

/* ---- Waiting from an event loop ---- */

/*
 * A file descriptor that becomes readable when the signals of any handle of this process
 * change (one fd per process, not per handle), for epoll, poll or libuv. Owned by the
 * library: do not close it. -1 with errno set when it cannot be created or the process is
 * not connected and cannot connect.
 */
IOB_API int iob_signal_fd(void);

typedef struct iob_signal_event {
    zx_handle_t handle;
    /*
     * The endpoint's signals now; ZX_SIGNAL_HANDLE_CLOSED: gone. For a shared-region
     * handle, ZX_IOB_SHARED_REGION_UPDATED says a record was written into the region since
     * the last read (a strobe: it is never part of the state zx_object_wait_one observes).
     */
    zx_signals_t signals;
} iob_signal_event_t;

/*
 * Drains pending changes into events (at most capacity, latest state per handle first
 * come first served) and makes iob_signal_fd unreadable once none are left. Returns the
 * number written; 0 when nothing changed.
 */
IOB_API size_t iob_signal_read(iob_signal_event_t* events, size_t capacity);

/* ---- The SPSC ring for callers that cannot use shm/ring.h ---- */

/*
 * shm/ring.h's ring as out-of-line calls on endpoints the library allocates, for
 * foreign-function callers (Python's cffi) that can neither inline the ring's fast paths
 * nor know its structs. The ring in memory is the same: either side may be a C program
 * using shm/ring.h. ctrl and data are the two mapped regions (shm/ring.h: the control
 * region writable by both, the data region writable by the producer only); every message
 * is published at once. The consumer validates everything the producer writes
 * (ZX_ERR_IO_DATA_INTEGRITY, sticky).
 */
typedef struct iob_ring_producer iob_ring_producer_t;
typedef struct iob_ring_consumer iob_ring_consumer_t;

#define IOB_RING_OPEN_FORMAT 1u /* producer: write a fresh header first (the ring's creator) */
#define IOB_RING_OPEN_BLOCK 2u  /* waits spin briefly, then sleep (else they busy-poll) */

/*
 * Errors: ZX_ERR_INVALID_ARGS (out NULL, unknown flags, NULL or misaligned regions),
 * ZX_ERR_SHOULD_WAIT (the header is not written yet), ZX_ERR_BUFFER_TOO_SMALL (regions too
 * small for a ring), ZX_ERR_IO_DATA_INTEGRITY (a header or indices that make no sense),
 * ZX_ERR_NO_MEMORY.
 */
IOB_API zx_status_t iob_ring_producer_open(void* ctrl, uint64_t ctrl_size, void* data,
                                           uint64_t data_size, uint32_t flags,
                                           iob_ring_producer_t** out);
IOB_API zx_status_t iob_ring_consumer_open(void* ctrl, uint64_t ctrl_size, const void* data,
                                           uint64_t data_size, uint32_t flags,
                                           iob_ring_consumer_t** out);

/*
 * Copies len bytes in as one message, waiting for space until deadline (CLOCK_MONOTONIC
 * ns, ZX_TIME_INFINITE for none). Errors: ZX_ERR_TIMED_OUT, ZX_ERR_OUT_OF_RANGE (len above
 * the ring's largest message: half its capacity less 8 bytes), ZX_ERR_PEER_CLOSED,
 * ZX_ERR_IO_DATA_INTEGRITY.
 */
IOB_API zx_status_t iob_ring_send(iob_ring_producer_t* p, const void* buf, size_t len,
                                  zx_time_t deadline);

/*
 * Copies the next message out, waiting for one until deadline; *len is its length.
 * Errors: ZX_ERR_TIMED_OUT, ZX_ERR_BUFFER_TOO_SMALL (cap < length: nothing is consumed and
 * *len says how much is needed), ZX_ERR_PEER_CLOSED (the producer closed and everything is
 * read), ZX_ERR_IO_DATA_INTEGRITY.
 */
IOB_API zx_status_t iob_ring_receive(iob_ring_consumer_t* c, void* buf, size_t cap, size_t* len,
                                     zx_time_t deadline);

/* Closes the side (the peer sees ZX_ERR_PEER_CLOSED once it has drained) and frees it. */
IOB_API void iob_ring_producer_destroy(iob_ring_producer_t* p);
IOB_API void iob_ring_consumer_destroy(iob_ring_consumer_t* c);

/* ---- Status text ---- */

/* A human-readable message for a status ("invalid arguments"); never NULL. */
IOB_API const char* iob_status_message(zx_status_t status);

#ifdef __cplusplus
}
#endif

#endif /* IOB_IOB_H_ */
