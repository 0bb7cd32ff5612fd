/* SPDX-License-Identifier: MIT */
/*
 * iob_core: the transport-free heart of iobd. It owns every IOB, endpoint, handle,
 * mapping record and transfer token, and implements Zircon's IOB semantics
 * (docs/zircon-iob.md A.3, A.4, A.9, A.10, A.12 and L) on plain C structs.
 *
 * It includes no gRPC, libuv or protobuf-c header: the gRPC service and the map broker
 * are thin adapters that translate wire messages into these calls.
 *
 * Threading: every public function takes the core's one internal mutex, so adapters
 * running on different threads (the gRPC completion-queue thread, the libuv loop) may
 * call in directly. Observer callbacks run with that mutex held: they must not call
 * back into the core; they should only record or post the event.
 *
 * Handles: a zx_handle_t value names one handle held by one session. A value is given out
 * again only after its handle is gone and every other value of the space has been given out
 * since (the space is 2^29 values unless iob_core_config_t.handle_value_bits makes it
 * smaller), so a stale value is refused for a long time and the space never runs out while
 * the budgets bound the handles alive. Values are non-zero and have the low two bits set as
 * Zircon's do. A handle used by a session other than its owner is ZX_ERR_BAD_HANDLE,
 * exactly like a handle value that never existed.
 *
 * Budgets: every resource a client can make the server hold (region bytes, IOBs and shared
 * regions, handles, outstanding transfer tokens, mapping records) is charged to the session
 * that asked and to its uid, and bytes also to the server, before anything is allocated;
 * a limit of 0 in the configuration means its bounded default (see iob_core_config_t), never
 * "unlimited". Bytes over budget are ZX_ERR_NO_MEMORY, any other resource
 * ZX_ERR_NO_RESOURCES. Region memory is allocated and freed outside the core's mutex, so a
 * large create or close never stalls other clients' calls.
 *
 * Out-parameters are written only on success, unless a function says otherwise.
 *
 * Region memory is hostile input: a client that may write a region can rewrite it, or
 * destroy it (punch a hole in a hugepage region and take the page back from the pool, so
 * that the next access faults), at any moment. One rule for every operation that touches
 * region memory (region read/write, writev, allocate_id): contents that make no sense, and
 * memory that is gone, are ZX_ERR_IO_DATA_INTEGRITY. Nothing of the core's own state has
 * changed then; bytes of the region written before the fault stay written, as a racing
 * writer's would (shm/fault_guard.h).
 */
#ifndef IOB_SERVER_CORE_IOB_CORE_H_
#define IOB_SERVER_CORE_IOB_CORE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <zircon/syscalls/iob.h>
#include <zircon/syscalls/object.h>
#include <zircon/types.h>

#include "shm/region.h"

#define IOB_CORE_TOKEN_SIZE 64 /* bytes, including the terminating NUL (IOB_TOKEN_SIZE) */

/*
 * Every handle value the core issues is below this (bit 31 is never set), so pseudo-handles
 * (IOB_VMAR_ROOT_HANDLE, shm/handles.h) use values at or above it and can never collide with
 * a real handle. Only when every value of the space is held by a live
 * handle do handle-creating calls fail with ZX_ERR_NO_RESOURCES.
 */
#define IOB_CORE_HANDLE_VALUE_LIMIT ((zx_handle_t)1u << 31)

typedef struct iob_core iob_core_t;

/* A client session: one per client process connection. */
typedef struct {
    uint64_t value;
} iob_session_id_t;

/* A mapping record, returned by iob_core_map and given back to iob_core_unmap. */
typedef struct {
    uint64_t value;
} iob_mapping_id_t;

/*
 * What the core tells the adapter that serves sessions, each under the core's mutex (so a
 * callback may only record and must not call the core). Changes of an object are told once
 * per handle that names it, with the session that holds the handle, so the adapter needs no
 * index of its own from objects to handles.
 */
typedef struct iob_core_observer {
    void* ctx;
    /*
     * The signal state of the object `handle` names changed: an endpoint's user signals or
     * ZX_IOB_PEER_CLOSED, a shared region's user signals. `koid` is the object's.
     */
    void (*handle_signals)(void* ctx, iob_session_id_t session, zx_handle_t handle, zx_koid_t koid,
                           zx_signals_t signals);
    /*
     * A record was written into the shared region `handle` names (zx_iob_writev): strobe
     * ZX_IOB_SHARED_REGION_UPDATED for what is armed on it right now. The signal is never
     * latched, so it does not appear in handle_signals or in iob_core_signals; `signals` is
     * the region's current state (its user signals), so an event built from the strobe can
     * carry it too.
     */
    void (*handle_strobed)(void* ctx, iob_session_id_t session, zx_handle_t handle, zx_koid_t koid,
                           zx_signals_t signals);
    /* A handle was closed or consumed (close, replace, export, session end). */
    void (*handle_closed)(void* ctx, iob_session_id_t session, zx_handle_t handle);
} iob_core_observer_t;

/*
 * What the machine offers, for the default byte budget. iob_core_machine_read fills it in
 * from /proc/meminfo (or meminfo_path, for tests) and the backing's hugepage pool.
 */
typedef struct iob_core_machine {
    uint64_t mem_available;  /* bytes: MemAvailable */
    uint64_t hugepages_free; /* free pages of the backing's pool (0 for 4K) */
} iob_core_machine_t;

/* meminfo_path NULL: /proc/meminfo. ZX_ERR_NOT_FOUND when it has no MemAvailable line. */
zx_status_t iob_core_machine_read(iob_backing_t backing, const char* meminfo_path,
                                  iob_core_machine_t* out);

/*
 * The default server-wide byte budget: half of MemAvailable for 4K backing; for hugepages
 * the pool's free pages less min_free_pages, times the page size. Never 0 (at least one
 * page), so a server started on a busy machine still serves small IOBs.
 */
uint64_t iob_core_default_total_bytes(iob_backing_t backing, const iob_core_machine_t* machine,
                                      uint64_t min_free_pages);

/* Defaults of the per-session and per-uid limits (a config value of 0 picks them). */
#define IOB_CORE_DEFAULT_IOBS_PER_SESSION 65536u
#define IOB_CORE_DEFAULT_HANDLES_PER_SESSION 262144u
#define IOB_CORE_DEFAULT_TOKENS_PER_SESSION 4096u
#define IOB_CORE_DEFAULT_MAPPINGS_PER_SESSION 65536u
#define IOB_CORE_DEFAULT_IOBS_PER_UID 131072u
#define IOB_CORE_DEFAULT_HANDLES_PER_UID 524288u
#define IOB_CORE_DEFAULT_TOKENS_PER_UID 16384u
#define IOB_CORE_DEFAULT_MAPPINGS_PER_UID 262144u
/* Bytes: per uid the server's whole budget unless set, per session the uid's. */

/*
 * Limits: 0 picks the default; UINT64_MAX / UINT32_MAX is "no limit" (an operator's
 * explicit choice). Per-uid limits do not apply to uid 0 and to server_uid (iobd's own),
 * whose use is still counted; the server-wide byte budget applies to everyone.
 */
typedef struct iob_core_config {
    iob_backing_t backing;         /* page size of every region comes from this */
    uint64_t max_total_bytes;      /* byte budget over all regions; 0 = derived */
    uint32_t max_iobs_per_session; /* IOBs plus shared regions */
    uint32_t max_handles_per_session;
    uint64_t max_bytes_per_session;
    uint32_t max_tokens_per_session; /* exported tokens not yet imported or expired */
    uint32_t max_mappings_per_session;
    uint64_t max_bytes_per_uid;
    uint32_t max_iobs_per_uid;
    uint32_t max_handles_per_uid;
    uint32_t max_tokens_per_uid;
    uint32_t max_mappings_per_uid;
    uid_t server_uid; /* exempt from per-uid limits, like root */
    /* For the derived byte budget: free hugepages kept back, and the machine (NULL: read). */
    uint64_t hugepages_min_free;
    const iob_core_machine_t* machine;
    /* Bits of the handle value space, 1..29; 0 = 29. Tests make it small. */
    uint32_t handle_value_bits;
    uint64_t token_ttl_ns; /* 0 = the default, 60 s */
    /* Monotonic clock for token expiry; NULL = CLOCK_MONOTONIC. Tests inject their own. */
    int64_t (*now_ns)(void* clock_ctx);
    void* clock_ctx;
    iob_core_observer_t observer; /* optional; NULL members are skipped */
} iob_core_config_t;

/*
 * Who opened a session, as its transport knows it. A remote client (TCP) has neither
 * `local` nor `known`; its uid is (uid_t)-1, which budgets count like any other uid.
 */
typedef struct iob_session_cred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
    /* Over a Unix socket: the client runs on this machine and may map (iob_core_session_attach). */
    bool local;
    /* pid, uid and gid are the connection's SO_PEERCRED, read when it was accepted. */
    bool known;
} iob_session_cred_t;

/* The secret that proves a session's ownership (OpenSession's reply; the broker's ATTACH). */
#define IOB_CORE_SECRET_SIZE 16

/* Constant-time comparison of secrets and tokens: its time depends on n only. */
bool iob_core_ct_equal(const void* a, const void* b, size_t n);

/* ---- Lifecycle ---- */

zx_status_t iob_core_create(const iob_core_config_t* config, iob_core_t** out);
/* Releases everything, including sessions that are still open. No observer calls. */
void iob_core_destroy(iob_core_t* core);

/*
 * The daemon creates the core and lends it to its adapters; the one that serves sessions
 * (gRPC) then installs itself as the observer, before any session opens, and removes
 * itself (NULL) before it goes away. Replaces config.observer.
 */
void iob_core_set_observer(iob_core_t* core, const iob_core_observer_t* observer);

uint64_t iob_core_page_size(const iob_core_t* core);
iob_backing_t iob_core_backing(const iob_core_t* core);

/*
 * Postponed closing of region memory, for the calling thread only. While on, the memfds of
 * the IOBs this thread frees (last handle and mapping gone) stay open until
 * iob_core_release_flush closes them, so an RPC adapter can start its reply first and pay
 * for the kernel's teardown of the pages (shmem eviction: most of a CloseHandles' own cost)
 * while the reply is on its way. Only that kernel work waits: the core's accounting (bytes
 * in use, IOB counts, limits) is updated at once, and the thread is expected to flush before
 * it serves anything else, so a following create still finds the pages back in the pool.
 * At most a bounded number of freed objects wait; past that they are closed as soon as the
 * core call releases its mutex. Turning it off flushes. Per thread, so a thread that never
 * turns it on has its memory closed as each core call returns (never under the mutex).
 */
void iob_core_release_defer(bool on);
void iob_core_release_flush(void);

/*
 * Region memory freed under the core's mutex is closed after the mutex is released, by the
 * thread that freed it (when its core call returns), so closing a large region never stalls
 * other threads' calls either.
 */

/*
 * Why the last failing core call on this thread failed ("iob_core_map:123: ..."), for logs
 * and RPC status messages; "" when it gave no detail. Every core call resets it.
 */
const char* iob_core_error_detail(void);

/* ---- Sessions ---- */

/*
 * A new session of `cred` (NULL: an unknown remote client). secret_out (may be NULL)
 * receives its secret, fresh from getrandom: whoever shows it with the id may act for the
 * session (iob_core_session_verify, iob_core_session_attach). ZX_ERR_NO_MEMORY;
 * ZX_ERR_NO_RESOURCES when no randomness could be had.
 */
zx_status_t iob_core_session_open(iob_core_t* core, const iob_session_cred_t* cred,
                                  iob_session_id_t* out, uint8_t secret_out[IOB_CORE_SECRET_SIZE]);
/*
 * Does `secret` prove the open session `id`? Compared in constant time, and compared even
 * for an unknown or closed session, so timing tells nothing. False for those.
 */
bool iob_core_session_verify(iob_core_t* core, uint64_t id,
                             const uint8_t secret[IOB_CORE_SECRET_SIZE]);
/*
 * The map broker's ATTACH: the process `peer` (its connection's SO_PEERCRED) proves it owns
 * session `id`. It must show the secret of an open local session, and be the session's own
 * process: the same uid and the same pid (SO_PEERCRED gives the thread group id, so every
 * thread of it qualifies). The secret alone is not enough: it may have leaked (a log, a core
 * dump, a child it was handed to), and the session's mapping records are released when *its*
 * process exits, so a mapping made by any other process could outlive its record.
 * ZX_OK marks the session attached (iob_core_session_attached) and gives its id in *out;
 * otherwise ZX_ERR_ACCESS_DENIED, and when the secret matched but the peer is someone else,
 * iob_core_error_detail says who was refused to whom and why, for a warning.
 */
zx_status_t iob_core_session_attach(iob_core_t* core, uint64_t id,
                                    const uint8_t secret[IOB_CORE_SECRET_SIZE],
                                    const iob_session_cred_t* peer, iob_session_id_t* out);
/*
 * Did the map broker ever attach the session? Only then can it hold mapping records, so
 * only then must its release wait for its process to exit. Final once the session is closed
 * (a closed session cannot be attached). False for an unknown session.
 */
bool iob_core_session_attached(iob_core_t* core, iob_session_id_t session);
/*
 * The session's connection is gone: its handles close now (peers may see PEER_CLOSED);
 * its mapping records stay counted until iob_core_session_release_mappings, because the
 * process may still have the memory mapped. Unknown session: ZX_ERR_NOT_FOUND.
 */
zx_status_t iob_core_session_close(iob_core_t* core, iob_session_id_t session);
/* The session's process has exited: drop its mapping records and forget the session. */
zx_status_t iob_core_session_release_mappings(iob_core_t* core, iob_session_id_t session);

/* ---- IOB operations (Zircon semantics; session-scoped handles) ---- */

/*
 * docs/zircon-iob.md A.3 with L's choices; resource limits after validation. A session that is
 * unknown or closed: ZX_ERR_BAD_STATE (after validation, before the limits).
 * ID_ALLOCATOR regions get their container header (A.8) at create;
 * MEDIATED_WRITE_RING_BUFFER regions use a shared region (iob_core_shared_region_create).
 */
zx_status_t iob_core_iob_create(iob_core_t* core, iob_session_id_t session, uint64_t options,
                                const zx_iob_region_t* regions, size_t region_count,
                                zx_handle_t* ep0_out, zx_handle_t* ep1_out);

/*
 * zx_object_get_info: ZX_INFO_IOB, ZX_INFO_IOB_REGIONS, ZX_INFO_HANDLE_BASIC, and
 * ZX_INFO_HANDLE_VALID (ZX_OK, no record). As in Zircon, a topic of another object type
 * (ZX_INFO_VMO, ...) is ZX_ERR_WRONG_TYPE after the handle lookup, and a topic Zircon does
 * not know at all is ZX_ERR_NOT_SUPPORTED before it.
 * actual and avail may be NULL.
 */
zx_status_t iob_core_get_info(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                              uint32_t topic, void* buffer, size_t buffer_size, size_t* actual,
                              size_t* avail);

/* ZX_PROP_NAME only (others: ZX_ERR_NOT_SUPPORTED, as Zircon's IOB does). */
zx_status_t iob_core_get_property(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                  uint32_t property, void* value, size_t value_size);
zx_status_t iob_core_set_property(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                  uint32_t property, const void* value, size_t value_size);

zx_status_t iob_core_handle_close(iob_core_t* core, iob_session_id_t session, zx_handle_t handle);
zx_status_t iob_core_handle_duplicate(iob_core_t* core, iob_session_id_t session,
                                      zx_handle_t handle, zx_rights_t rights, zx_handle_t* out);
zx_status_t iob_core_handle_replace(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                    zx_rights_t rights, zx_handle_t* out);

zx_status_t iob_core_object_signal(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                   uint32_t clear_mask, uint32_t set_mask);
/* ZX_ERR_PEER_CLOSED once the peer has no handle left (tokens count); mappings don't count. */
zx_status_t iob_core_object_signal_peer(iob_core_t* core, iob_session_id_t session,
                                        zx_handle_t handle, uint32_t clear_mask, uint32_t set_mask);

/*
 * The current signals of the handle's endpoint, for waits. Needs ZX_RIGHT_WAIT
 * (ZX_ERR_ACCESS_DENIED); the endpoint koid lets the caller match handle_signals events.
 */
zx_status_t iob_core_signals(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                             zx_signals_t* signals_out, zx_koid_t* endpoint_koid_out);

/* ---- Shared regions and mediated disciplines (docs/zircon-iob.md A.3, A.5-A.8) ---- */

/*
 * zx_iob_create_shared_region: a shared-region object (ZX_OBJ_TYPE_IOB_SHARED_REGION, rights
 * ZX_DEFAULT_IOB_SHARED_REGION_RIGHTS) of size bytes, zero-filled. As in Zircon the size is
 * not rounded: it must be a non-zero multiple of the page size (iob_core_page_size).
 * Errors, in order: ZX_ERR_INVALID_ARGS (out NULL; options != 0, size 0 or not a multiple
 * of the page size), ZX_ERR_OUT_OF_RANGE (size above 2^63, Zircon's "larger than the
 * largest VMO"), ZX_ERR_BAD_STATE (session unknown or closed), ZX_ERR_NO_MEMORY (byte
 * budget, or no memory for the memfd), ZX_ERR_NO_RESOURCES (max_iobs_per_session, then
 * the session handle limit; fds).
 * Its handle works with close, duplicate, replace, export/import, get_info
 * (ZX_INFO_HANDLE_BASIC: type 35, related koid 0; ZX_INFO_HANDLE_VALID), ZX_PROP_NAME
 * (get: always empty; set: ZX_ERR_NOT_SUPPORTED after the rights check, as Zircon's shared
 * region keeps Dispatcher's defaults), object_signal (user signals; handle_signals reports
 * them under the shared region's koid) and iob_core_signals (the koid out-parameter is the
 * shared region's). IOB operations on it (map, region read/write, writev, allocate_id,
 * ZX_INFO_IOB, ZX_INFO_IOB_REGIONS) are ZX_ERR_WRONG_TYPE; signal_peer is
 * ZX_ERR_ACCESS_DENIED (its handles never hold ZX_RIGHT_SIGNAL_PEER). Its memory lives
 * while a handle, a token or an IOB built on it exists (A.9: closing the handle does not
 * affect those IOBs). IOBs name it in a ZX_IOB_REGION_TYPE_SHARED region (A.3 7.2); their
 * ZX_INFO_IOB_REGIONS entry keeps size 0 (as given, as in Zircon), and maps of it cover the
 * shared region's bytes. Shared regions count against the byte budgets, the handle
 * budgets and, like IOBs, the creating session's and uid's IOB budgets (until the shared
 * region is freed; the session's part also ends when that session is released).
 */
zx_status_t iob_core_shared_region_create(iob_core_t* core, iob_session_id_t session,
                                          uint64_t options, uint64_t size, zx_handle_t* out);

/*
 * zx_iob_writev in A.6 order, then A.7 under the shared region's lock (the core's mutex).
 * The adapter has already copied the caller's bytes: vectors and their buffers are the
 * server's memory. What the caller's process could not read is passed as NULL so that the error
 * comes in A.6's order: vectors == NULL with num_vectors > 0 is an unreadable iovec array (step 7,
 * INVALID_ARGS); a vector whose buffer is NULL with capacity > 0 is an unreadable payload
 * (step 11, NOT_FOUND, after the ring checks). On success the shared region is strobed
 * (observer handle_strobed).
 */
zx_status_t iob_core_iob_writev(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                uint64_t options, uint32_t region_index, const zx_iovec_t* vectors,
                                size_t num_vectors);

/*
 * zx_iob_allocate_id in A.5 order on the A.8 layout. blob == NULL with blob_size > 0 is an
 * unreadable blob (INVALID_ARGS at step 6), id == NULL the caller's NULL out-pointer
 * (INVALID_ARGS at step 7), both in the documented order. Neither consumes an ID (Zircon's
 * does; the caller cannot tell). The container's header is written at IOB create, so an ID
 * allocator region of size 0 is refused there (INVALID_ARGS).
 */
zx_status_t iob_core_iob_allocate_id(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                     uint32_t options, uint32_t region_index, const void* blob,
                                     uint64_t blob_size, uint32_t* id);

/*
 * What iob_core_iob_allocate_id would answer for a readable blob of blob_size bytes (and a
 * NULL id when id_null), in the same order, without the blob's bytes and without taking an
 * ID: ZX_OK means the call would go on to copy the blob. For a transport that cannot carry
 * the blob (AllocateId over gRPC above 1 MiB) but owes every earlier status.
 */
zx_status_t iob_core_iob_allocate_id_check(iob_core_t* core, iob_session_id_t session,
                                           zx_handle_t handle, uint32_t options,
                                           uint32_t region_index, uint64_t blob_size, bool id_null);

/* ---- Mapping (zx_vmar_map_iob's server half) ---- */

typedef struct iob_map_grant {
    iob_mapping_id_t mapping;
    int fd;               /* borrowed: valid until the next core call; dup before use */
    bool writable;        /* the fd is writable: whenever the rights allow writing, even for a
                             read-only mapping, so zx_vmar_protect may upgrade it later */
    uint64_t region_size; /* actual (rounded) size */
    zx_koid_t iob_koid;   /* koid of endpoint 0, names the memfd */
} iob_map_grant_t;

/*
 * Authorises a mapping of [region_offset, region_offset + len) with the given ZX_VM_*
 * options, in docs/zircon-iob.md A.4 / A.12 order, and counts it as a mapping made through the
 * handle's endpoint (A.9) until iob_core_unmap or the session's mappings are released; the
 * record is charged to the session's and uid's mapping budgets (ZX_ERR_NO_RESOURCES).
 * Options that only the client can check (alignment bits, SPECIFIC placement) are left to it.
 */
zx_status_t iob_core_map(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                         zx_vm_option_t options, uint32_t region_index, uint64_t region_offset,
                         uint64_t len, iob_map_grant_t* grant_out);
zx_status_t iob_core_unmap(iob_core_t* core, iob_session_id_t session, iob_mapping_id_t mapping);

/*
 * iob_core_map, except that grant_out->fd is a new descriptor (F_DUPFD_CLOEXEC) made
 * while the core's lock is held, and owned by the caller, who must close it. With
 * iob_core_map the caller copies a borrowed fd after the lock is dropped, and another thread
 * (the gRPC completion-queue thread) could close that fd in between; adapters that keep or
 * send the fd use this one. A failed dup: its errno's status, and no mapping is recorded.
 */
zx_status_t iob_core_map_dup(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                             zx_vm_option_t options, uint32_t region_index, uint64_t region_offset,
                             uint64_t len, iob_map_grant_t* grant_out);

/* ---- Transfer between processes (docs/zircon-iob.md L, "Transfer") ---- */

/*
 * Needs ZX_RIGHT_TRANSFER; consumes the handle on success. token_out is NUL-terminated.
 * The token is charged to the session's and uid's token budgets until it is imported or
 * expires (over either: ZX_ERR_NO_RESOURCES, and the handle stays).
 */
zx_status_t iob_core_handle_export(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                   char token_out[IOB_CORE_TOKEN_SIZE]);
/*
 * Unknown, used or expired: ZX_ERR_NOT_FOUND. Session unknown or closed: ZX_ERR_BAD_STATE;
 * over its handle limit: ZX_ERR_NO_RESOURCES (the token then stays valid).
 */
zx_status_t iob_core_handle_import(iob_core_t* core, iob_session_id_t session, const char* token,
                                   zx_handle_t* out);
/* Drops tokens whose time-to-live has passed; the server calls it from a timer. */
void iob_core_expire_tokens(iob_core_t* core);

/* ---- Mediated access for clients that cannot map (remote reads and writes) ---- */

/*
 * Reading needs ZX_RIGHT_READ and the endpoint's MAP_READ bit; writing needs
 * ZX_RIGHT_WRITE and MAP_WRITE (ZX_ERR_ACCESS_DENIED). A range past the region's size:
 * ZX_ERR_OUT_OF_RANGE. Memory of the range destroyed by a writer: ZX_ERR_IO_DATA_INTEGRITY
 * (the buffer of a read is then partly written).
 */
zx_status_t iob_core_region_read(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                 uint32_t region_index, uint64_t offset, void* buffer, size_t len);
zx_status_t iob_core_region_write(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                  uint32_t region_index, uint64_t offset, const void* buffer,
                                  size_t len);

/* ---- Operators ---- */

typedef struct iob_core_endpoint_summary {
    zx_koid_t koid;
    uint32_t handles;  /* open handles, tokens in flight included */
    uint32_t mappings; /* live mapping records */
    zx_signals_t signals;
} iob_core_endpoint_summary_t;

typedef struct iob_core_iob_summary {
    zx_koid_t koid; /* endpoint 0's koid names the IOB */
    uint32_t region_count;
    uint64_t total_bytes;
    char name[ZX_MAX_NAME_LEN];
    iob_core_endpoint_summary_t endpoints[2];
    /* The first shared region among its regions (koid 0: none), with that region's
     * discipline and ring-buffer tag: which IOBs write into one shared region, and as whom. */
    zx_koid_t shared_koid;
    uint64_t shared_discipline;
    uint64_t shared_tag;
} iob_core_iob_summary_t;

/*
 * Copies up to capacity summaries in creation order; *count_out is the total number.
 * Only IOBs are listed. total_bytes counts an IOB's private regions; a shared region's bytes
 * belong to no IOB (they count once in iob_core_stats_t.bytes_in_use).
 */
zx_status_t iob_core_list(iob_core_t* core, iob_core_iob_summary_t* out, size_t capacity,
                          size_t* count_out);
/*
 * The same for the IOBs that a session of `uid` holds a handle to: what a local user who
 * is not an operator may see of the server.
 */
zx_status_t iob_core_list_held(iob_core_t* core, uid_t uid, iob_core_iob_summary_t* out,
                               size_t capacity, size_t* count_out);
/* The handles that sessions of `uid` hold now. */
uint64_t iob_core_uid_handles(iob_core_t* core, uid_t uid);

/* One set of budgeted resources: a limit, or what is in use. */
typedef struct iob_core_amounts {
    uint64_t bytes;
    uint64_t iobs; /* IOBs plus shared regions */
    uint64_t handles;
    uint64_t tokens;
    uint64_t mappings;
} iob_core_amounts_t;

typedef struct iob_core_stats {
    uint64_t iobs;
    uint64_t sessions;
    uint64_t handles;
    uint64_t mappings;
    uint64_t tokens;
    uint64_t bytes_in_use;
    uint64_t max_total_bytes;
    uint32_t max_iobs_per_session;
    uint32_t max_handles_per_session;
    uint64_t shared_regions; /* live shared-region objects (added with shared regions) */
    /* The effective limits (defaults filled in; UINT64_MAX: none). */
    iob_core_amounts_t per_session;
    iob_core_amounts_t per_uid;
    uint64_t uids;          /* uids with a session or something charged */
    uint64_t uid_max_bytes; /* the most any one uid has charged now, and its uid */
    uint32_t uid_max_bytes_uid;
    uint32_t handle_value_bits;
    uint64_t regions;      /* regions of live IOBs */
    uint64_t token_ttl_ns; /* the effective lifetime of an exported token */
} iob_core_stats_t;

void iob_core_get_stats(iob_core_t* core, iob_core_stats_t* out);

#endif /* IOB_SERVER_CORE_IOB_CORE_H_ */
