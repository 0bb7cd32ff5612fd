/* SPDX-License-Identifier: MIT */
/*
 * iob_conn: one client connection to iobd over gRPC's C core, carrying one session.
 * Internal to the project (libiob, iobctl, iob-bench use it); not installed.
 *
 * Opening a connection opens the session: one long-lived call that owns every handle the
 * process holds. When the connection ends (iob_conn_close, or the process dies), the
 * server closes those handles and peers observe ZX_IOB_PEER_CLOSED.
 *
 * The operations mirror server/core/iob_core.h one for one, minus the session argument,
 * and return exactly the zx_status_t the server's core returned (carried in trailing
 * metadata). Transport failures map to ZX_ERR_UNAVAILABLE (server unreachable),
 * ZX_ERR_PEER_CLOSED (connection lost mid-call), ZX_ERR_TIMED_OUT (deadline),
 * ZX_ERR_ACCESS_DENIED (TLS or token refused), ZX_ERR_IO (anything else).
 *
 * Thread-safe: any thread may call any function concurrently (each call has its own
 * completion queue), except iob_conn_close, which must be the last call.
 */
#ifndef IOB_CLIENT_RPC_IOB_CONN_H_
#define IOB_CLIENT_RPC_IOB_CONN_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zircon/syscalls/iob.h>
#include <zircon/syscalls/object.h>
#include <zircon/types.h>

#define IOB_CONN_TOKEN_SIZE 64 /* bytes, including the terminating NUL */
#define IOB_CONN_SECRET_SIZE 16
#define IOB_DEFAULT_SOCKET_PATH "/run/iob/iobd.sock"

typedef struct iob_conn iob_conn_t;

typedef struct iob_conn_options {
    /* gRPC target: "unix:/path" or "host:port". NULL: $IOB_SERVER, else the default socket. */
    const char* target;
    const char* tls_ca_file;   /* PEM; TLS is used for TCP targets unless insecure */
    const char* tls_cert_file; /* client certificate for mutual TLS (optional) */
    const char* tls_key_file;
    const char* token;         /* bearer token for TCP; NULL: $IOB_TOKEN */
    bool insecure;             /* plaintext TCP (iobd --insecure) */
    int timeout_ms;            /* per-call deadline; 0 = 10 s */
} iob_conn_options_t;

/* What the server told this session when it opened. */
typedef struct iob_conn_session_info {
    uint64_t session_id;
    uint8_t secret[IOB_CONN_SECRET_SIZE]; /* proves ownership of the session to the map broker */
    uint32_t page_size;                   /* the server's backing page size */
    char backing[8];                      /* "4K", "2M" or "1G" */
    char broker_path[108];                /* the map broker's Unix socket; "" when remote */
    char server_version[32];
} iob_conn_session_info_t;

zx_status_t iob_conn_open(const iob_conn_options_t* options, iob_conn_t** out);
void iob_conn_close(iob_conn_t* conn);
const iob_conn_session_info_t* iob_conn_session(const iob_conn_t* conn);

/*
 * Called from the connection's reader thread whenever the signals of an endpoint that
 * this session holds a handle to change (one event per handle), and with
 * ZX_SIGNAL_HANDLE_CLOSED when a handle of this session stops existing. Set it before
 * the events matter; it must not block.
 *
 * A session starts with events off and no reader thread (a thread parked in gRPC's poller
 * makes every other call of the process slower). The first non-NULL callback turns the
 * session's events on (one call to iobd; every event raised after this returns is
 * delivered) and starts the reader. Statuses: ZX_OK, ZX_ERR_PEER_CLOSED (the session has
 * ended), ZX_ERR_NO_RESOURCES (no thread), or the call's transport status.
 */
typedef void (*iob_conn_event_fn)(void* ctx, zx_handle_t handle, zx_signals_t signals);
zx_status_t iob_conn_set_event_callback(iob_conn_t* conn, iob_conn_event_fn fn, void* ctx);
/* SetSessionEvents: the server queues events for the stream only while enabled. */
zx_status_t iob_conn_set_session_events(iob_conn_t* conn, bool enabled);

zx_status_t iob_conn_iob_create(iob_conn_t* conn, uint64_t options, const zx_iob_region_t* regions,
                                size_t region_count, zx_handle_t* ep0_out, zx_handle_t* ep1_out);
zx_status_t iob_conn_get_info(iob_conn_t* conn, zx_handle_t handle, uint32_t topic, void* buffer,
                              size_t buffer_size, size_t* actual, size_t* avail);
zx_status_t iob_conn_get_property(iob_conn_t* conn, zx_handle_t handle, uint32_t property,
                                  void* value, size_t value_size);
zx_status_t iob_conn_set_property(iob_conn_t* conn, zx_handle_t handle, uint32_t property,
                                  const void* value, size_t value_size);
zx_status_t iob_conn_handle_close(iob_conn_t* conn, zx_handle_t handle);
/*
 * zx_handle_close_many in one call: ZX_HANDLE_INVALID entries are skipped; every other
 * entry is closed if it can be; ZX_ERR_BAD_HANDLE if any could not, the others closed all
 * the same. More than IOB_CONN_MAX_CLOSE_MANY entries: ZX_ERR_OUT_OF_RANGE, nothing closed.
 */
#define IOB_CONN_MAX_CLOSE_MANY 65536u
zx_status_t iob_conn_handle_close_many(iob_conn_t* conn, const zx_handle_t* handles,
                                       size_t num_handles);
zx_status_t iob_conn_handle_duplicate(iob_conn_t* conn, zx_handle_t handle, zx_rights_t rights,
                                      zx_handle_t* out);
zx_status_t iob_conn_handle_replace(iob_conn_t* conn, zx_handle_t handle, zx_rights_t rights,
                                    zx_handle_t* out);
zx_status_t iob_conn_object_signal(iob_conn_t* conn, zx_handle_t handle, uint32_t clear_mask,
                                   uint32_t set_mask);
zx_status_t iob_conn_object_signal_peer(iob_conn_t* conn, zx_handle_t handle, uint32_t clear_mask,
                                        uint32_t set_mask);
/* Current signals of the handle's endpoint (needs ZX_RIGHT_WAIT). */
zx_status_t iob_conn_signals(iob_conn_t* conn, zx_handle_t handle, zx_signals_t* signals_out);
/*
 * zx_object_wait_one over the wire (server streaming): returns ZX_OK when any of
 * `signals` is asserted, ZX_ERR_TIMED_OUT at the deadline (CLOCK_MONOTONIC ns), with
 * *observed always written; ZX_ERR_CANCELED if the handle is closed meanwhile.
 */
zx_status_t iob_conn_wait_one(iob_conn_t* conn, zx_handle_t handle, zx_signals_t signals,
                              zx_time_t deadline, zx_signals_t* observed);
zx_status_t iob_conn_handle_export(iob_conn_t* conn, zx_handle_t handle,
                                   char token_out[IOB_CONN_TOKEN_SIZE]);
zx_status_t iob_conn_handle_import(iob_conn_t* conn, const char* token, zx_handle_t* out);
/* Large transfers are streamed in chunks under the hood. */
zx_status_t iob_conn_region_read(iob_conn_t* conn, zx_handle_t handle, uint32_t region_index,
                                 uint64_t offset, void* buffer, size_t len);
zx_status_t iob_conn_region_write(iob_conn_t* conn, zx_handle_t handle, uint32_t region_index,
                                  uint64_t offset, const void* buffer, size_t len);

/* ---- Shared regions and mediated disciplines ---- */

zx_status_t iob_conn_shared_region_create(iob_conn_t* conn, uint64_t options, uint64_t size,
                                          zx_handle_t* out);

/* One vector of zx_iob_writev as far as the caller's process could read it. */
typedef struct iob_conn_writev_vec {
    uint64_t capacity;
    bool readable; /* its capacity bytes are in the data buffer */
} iob_conn_writev_vec_t;

/*
 * zx_iob_writev (IobWritev): num_vectors is the caller's count; vecs has num_vectors
 * entries when it is at most 8 and vectors_unreadable is false (else vecs is ignored and
 * nothing but the count is sent). data holds the readable vectors' bytes back to back
 * (data_len: their capacities' sum). The library has already read the caller's memory, so
 * nothing here can fault. The server's status, in docs/zircon-iob.md A.6's order.
 */
zx_status_t iob_conn_iob_writev(iob_conn_t* conn, zx_handle_t handle, uint64_t options,
                                uint32_t region_index, uint64_t num_vectors,
                                bool vectors_unreadable, const iob_conn_writev_vec_t* vecs,
                                const void* data, size_t data_len);

/*
 * zx_iob_allocate_id (AllocateId): blob is blob_size readable bytes, or NULL when the
 * caller's blob could not be read (blob_size still travels); id NULL means the caller's
 * pointer was NULL, which the server reports in A.5's order. A readable blob above
 * IOB_CONN_MAX_BLOB (1 MiB, one message's worth) is not sent: iobd checks the call without
 * it, every error comes back in A.5's order, and a call that would have gone on returns
 * ZX_ERR_NOT_SUPPORTED without taking an ID (blob may then be any non-NULL pointer).
 */
#define IOB_CONN_MAX_BLOB ((uint64_t)1 << 20)
zx_status_t iob_conn_allocate_id(iob_conn_t* conn, zx_handle_t handle, uint32_t options,
                                 uint32_t region_index, const void* blob, uint64_t blob_size,
                                 uint32_t* id);

/* ---- Additions for operators (iobctl) ---- */

/* ServerInfo: what the server runs with, and what it holds now. */
typedef struct iob_conn_server_info {
    char version[32];
    uint32_t page_size;
    char backing[8];
    uint64_t hugepages_total, hugepages_free; /* of the backing's pool; 0 for 4K */
    uint64_t max_total_bytes;
    uint32_t max_iobs_per_session, max_handles_per_session;
    uint64_t token_ttl_ns;
    uint64_t iobs, sessions, handles, mappings, tokens, bytes_in_use;
    uint32_t max_message_bytes, max_chunk_bytes;
    /* false: the counts above are the caller's own (not an operator; see iob.proto). */
    bool server_wide;
    uint32_t max_sessions_per_uid, max_waits_per_session; /* 0 = unlimited */
    /* Budgets per session and per uid (UINT64_MAX: none), and who holds what. */
    uint64_t session_max_bytes, session_max_iobs, session_max_handles, session_max_tokens,
        session_max_mappings;
    uint64_t uid_max_bytes, uid_max_iobs, uid_max_handles, uid_max_tokens, uid_max_mappings;
    uint64_t shared_regions, uids, top_uid_bytes;
    uint32_t top_uid, handle_value_bits;
} iob_conn_server_info_t;

zx_status_t iob_conn_server_info(iob_conn_t* conn, iob_conn_server_info_t* out);

typedef struct iob_conn_endpoint_summary {
    zx_koid_t koid;
    uint32_t handles;
    uint32_t mappings;
    zx_signals_t signals;
} iob_conn_endpoint_summary_t;

typedef struct iob_conn_iob_summary {
    zx_koid_t koid; /* endpoint 0's koid names the IOB */
    uint32_t region_count;
    uint64_t total_bytes;
    char name[ZX_MAX_NAME_LEN];
    iob_conn_endpoint_summary_t endpoints[2];
    zx_koid_t shared_koid; /* its first shared region; 0: none */
    uint64_t shared_discipline;
    uint64_t shared_tag;
} iob_conn_iob_summary_t;

/*
 * ListIobs: copies up to capacity summaries (in creation order); *count_out is the number
 * the server reported (at most IOB_WIRE_MAX_LIST, 4096, per call).
 */
zx_status_t iob_conn_list(iob_conn_t* conn, iob_conn_iob_summary_t* out, size_t capacity,
                          size_t* count_out);

/* "unix:/run/iob/iobd.sock" or "host:port": the target this connection uses. */
const char* iob_conn_target(const iob_conn_t* conn);

#endif /* IOB_CLIENT_RPC_IOB_CONN_H_ */
