/* SPDX-License-Identifier: MIT */
/*
 * The map broker: the part of iobd that hands region file descriptors to co-located
 * clients (gRPC cannot carry fds). A SOCK_SEQPACKET Unix socket served from iobd's libuv
 * loop; the wire format is shm/broker_wire.h.
 *
 * A client connects, attaches the connection to its session (session id + the 16-byte
 * secret it received when the gRPC session opened; the core checks both and the peer's
 * SO_PEERCRED, iob_core_session_attach), then asks for mappings through handles of that session,
 * and may import transfer tokens into it (iob_core_handle_import: one socket round trip where gRPC
 * would cost a unary call; the token rules are the core's), and may carry out the mediated
 * operations zx_iob_writev and zx_iob_allocate_id (iob_core_iob_writev /
 * iob_core_iob_allocate_id: one socket round trip with the caller's bytes in the datagram).
 * MAP and UNMAP are answered by iob_core_map_dup / iob_core_unmap, so the rights and access checks
 * of docs/zircon-iob.md A.4 are the core's; a read-only grant carries a read-only file description.
 *
 * Lifetimes: a mapping granted here is a core mapping record of the attached session. The
 * broker never releases mapping records itself, not even when the connection drops: the
 * process may still have the memory mapped. The daemon's pidfd watch releases them with
 * iob_core_session_release_mappings once the process has exited. A dropped broker
 * connection releases only the connection.
 *
 * Threading: every function here, and every callback in the config, runs on the loop's
 * thread. The broker calls into the core directly (the core has its own mutex). One
 * helper thread of the broker's own closes every descriptor a client controls (its
 * connection socket, any fd it sent): a close can wait on the client (a TCP socket with
 * SO_LINGER and unsent data, a FUSE file's flush), and the loop never waits on a client.
 *
 * Budgets: connections server-wide (max_connections), per uid (max_connections_per_uid;
 * root and iobd's own uid are exempt), and time to attach (attach_timeout_ms). A client
 * may send a descriptor only as the blob memfd of an ALLOCATE_ID; any other descriptor
 * ends its connection.
 */
#ifndef IOB_SERVER_BROKER_BROKER_H_
#define IOB_SERVER_BROKER_BROKER_H_

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include <zircon/types.h>

#include "server/core/iob_core.h"

typedef struct iobd_broker iobd_broker_t;

/* Defaults of iobd_broker_config_t's budgets. */
#define IOBD_BROKER_DEFAULT_MAX_CONNS 1024u
#define IOBD_BROKER_DEFAULT_MAX_CONNS_PER_UID 64u
#define IOBD_BROKER_DEFAULT_ATTACH_TIMEOUT_MS 5000u

/* Log levels for iobd_broker_config_t.log (syslog's numbering: 3 error ... 7 debug). */
#define IOBD_BROKER_LOG_ERR 3
#define IOBD_BROKER_LOG_WARNING 4
#define IOBD_BROKER_LOG_INFO 6
#define IOBD_BROKER_LOG_DEBUG 7

typedef struct iobd_broker_config {
    /*
     * Where to listen. An existing socket file at this path is replaced (a stale one from
     * a crashed iobd); the directory must exist. Required.
     */
    const char* socket_path;
    /* chmod of the socket file; 0 means 0660. Tests with clients under other uids: 0666. */
    uint32_t socket_mode;

    /* ---- Policy ---- */
    /*
     * Called at accept with the peer's SO_PEERCRED. Return false to refuse the connection
     * (it is closed at once and the refusal logged). NULL: every peer that can reach the
     * socket file is accepted (file permissions are then the policy).
     */
    bool (*peer_allowed)(void* ctx, pid_t pid, uid_t uid, gid_t gid);
    void* policy_ctx;
    /* Connections open at once; more are refused. 0 means IOBD_BROKER_DEFAULT_MAX_CONNS. */
    uint32_t max_connections;
    /*
     * Connections one uid may hold at once, so that one user cannot take every slot;
     * root's and iobd's own uid are not limited. 0 means
     * IOBD_BROKER_DEFAULT_MAX_CONNS_PER_UID.
     */
    uint32_t max_connections_per_uid;
    /*
     * A connection that has not attached to a session this long after it was accepted is
     * closed (libiob attaches at once). 0 means IOBD_BROKER_DEFAULT_ATTACH_TIMEOUT_MS.
     */
    uint32_t attach_timeout_ms;

    /* Optional log sink; NULL logs to stderr. msg has no trailing newline. */
    void (*log)(void* ctx, int level, const char* msg);
    void* log_ctx;
} iobd_broker_config_t;

/*
 * Creates the socket, starts serving it on `loop`. The config is copied (socket_path
 * included); `core` must outlive the broker.
 * Errors: ZX_ERR_INVALID_ARGS (NULL loop/core/config, missing socket_path, a path longer than
 * sun_path), ZX_ERR_ACCESS_DENIED / ZX_ERR_BAD_PATH / ZX_ERR_ADDRESS_IN_USE / ZX_ERR_IO (bind or
 * listen failed), ZX_ERR_NO_MEMORY, ZX_ERR_NO_RESOURCES (no closer thread, no libuv handle; let the
 * loop run before uv_loop_close, as after iobd_broker_stop).
 */
zx_status_t iobd_broker_start(uv_loop_t* loop, iob_core_t* core, const iobd_broker_config_t* config,
                              iobd_broker_t** out);

/*
 * Stops listening, closes every client connection and unlinks the socket file. The
 * broker's memory is freed once libuv has finished closing its handles, so the caller
 * lets the loop run (uv_run) after this before uv_loop_close. Mapping records are not
 * touched. NULL is a no-op.
 */
void iobd_broker_stop(iobd_broker_t* broker);

typedef struct iobd_broker_stats {
    uint64_t connections;     /* open now */
    uint64_t accepted;        /* since start */
    uint64_t refused;         /* by peer_allowed, max_connections or the per-uid share */
    uint64_t auth_failures;
    uint64_t maps_granted;
    uint64_t maps_refused;
    uint64_t unmaps;
    uint64_t imports;         /* tokens imported (replies delivered) */
    uint64_t imports_refused; /* IMPORT answered with an error status */
    uint64_t bad_messages;    /* malformed, unknown type, wrong version */
    uint64_t writevs;         /* WRITEV requests answered by the core (any status) */
    uint64_t allocate_ids;    /* ALLOCATE_ID requests answered by the core (any status) */
    uint64_t attach_timeouts; /* connections closed for not attaching in time */
    uint64_t fds_refused;     /* connections closed for sending a descriptor */
    uint64_t closes_pending;  /* client descriptors waiting for the closer thread now */
} iobd_broker_stats_t;

void iobd_broker_get_stats(const iobd_broker_t* broker, iobd_broker_stats_t* out);

#endif /* IOB_SERVER_BROKER_BROKER_H_ */
