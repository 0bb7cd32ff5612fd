/* SPDX-License-Identifier: MIT */
/*
 * iobd's gRPC service (iob.v1.Iob, proto/iob/v1/iob.proto) over gRPC's C core.
 *
 * Ownership: the daemon's main creates the core and lends it to this service and to the map
 * broker; the service installs itself as the core's observer (which feeds session event
 * streams and waits) and owns the gRPC server. The daemon's main also owns the libuv loop,
 * which the service uses for Unix-socket accepts (SO_PEERCRED policy), pidfd watches of
 * ended sessions and wake-ups.
 *
 * Threading: one completion-queue thread runs the handlers; it calls the core directly
 * (the core is thread-safe). Creates and closes, whose cost a client chooses, run on slow
 * threads instead (rpc_server.c), one call at a time per client. The loop thread accepts Unix
 * connections, watches pidfds and flushes events raised by core calls made elsewhere (the map
 * broker, token expiry). The observer callbacks only queue; sends happen outside the core's mutex.
 */
#ifndef IOB_SERVER_RPC_RPC_H_
#define IOB_SERVER_RPC_RPC_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include <zircon/types.h>

#include "server/core/iob_core.h"
#include "shm/region.h"

typedef struct iobd_rpc iobd_rpc_t;

typedef struct iobd_rpc_config {
    /* gRPC listen addresses: "unix:PATH" (accepted by the service, SO_PEERCRED policy)
     * or "HOST:PORT" (TCP: TLS + token unless insecure). At least one. */
    const char* const* listen;
    size_t listen_count;
    uint32_t socket_mode; /* of Unix sockets; 0 = 0660 */

    /*
     * Unix-socket policy, checked at accept: when both lists are empty every peer that can
     * open the socket is accepted. Otherwise a peer is accepted when its uid is listed, or
     * its gid is listed, or it is root or iobd's own uid.
     */
    const uid_t* allow_uids;
    size_t allow_uid_count;
    const gid_t* allow_gids;
    size_t allow_gid_count;

    /* TCP security. Required for TCP listeners unless insecure. */
    const char* tls_cert_file;
    const char* tls_key_file;
    const char* tls_client_ca_file; /* optional: require client certificates (mutual TLS) */
    const char* token;              /* "authorization: Bearer <token>" on every TCP call */
    bool insecure;                  /* plaintext TCP; the token is still checked if set */

    /*
     * Operators see every IOB (ListIobs) and the server-wide figures (ServerInfo); other
     * local callers see only the IOBs their uid's sessions hold handles to, and figures of
     * their own. Root, iobd's own uid and remote (TCP: TLS + token) callers are operators.
     */
    const uid_t* operator_uids;
    size_t operator_uid_count;
    const gid_t* operator_gids;
    size_t operator_gid_count;

    /*
     * Budgets of one client (0 = unlimited): open sessions per local uid (root and iobd's
     * own uid are exempt; remote sessions are the authenticated management plane, also
     * exempt), and Wait calls in progress per session. Refusal: ZX_ERR_NO_RESOURCES.
     */
    uint32_t max_sessions_per_uid;
    uint32_t max_waits_per_session;

    /* Reported in SessionOpened for Unix-socket sessions. */
    const char* broker_path;
    const char* version;
} iobd_rpc_config_t;

/*
 * Binds every listener and starts serving sessions of `core`, which must outlive the
 * service (iobd_rpc_destroy). The config is copied.
 * Errors: ZX_ERR_INVALID_ARGS (bad address, TCP without a token, TCP without TLS and not
 * insecure),
 * ZX_ERR_ADDRESS_IN_USE (another iobd serves a socket path), ZX_ERR_IO (bind/TLS files).
 */
zx_status_t iobd_rpc_start(uv_loop_t* loop, iob_core_t* core, const iobd_rpc_config_t* config,
                           iobd_rpc_t** out);

/* The policy of config->allow_*, for the broker's peer_allowed. ctx is the iobd_rpc_t. */
bool iobd_rpc_peer_allowed(void* ctx, pid_t pid, uid_t uid, gid_t gid);

/*
 * Begins a clean shutdown: stop accepting, cancel every call (clients see UNAVAILABLE),
 * end every session. `done` runs on the loop thread once the completion queue has
 * drained; then call iobd_rpc_destroy. Idempotent.
 */
void iobd_rpc_shutdown(iobd_rpc_t* rpc, void (*done)(void* ctx), void* ctx);

/*
 * Frees everything but the core, whose observer it removes first. Only after `done`;
 * unlinks the Unix sockets.
 */
void iobd_rpc_destroy(iobd_rpc_t* rpc);

#endif /* IOB_SERVER_RPC_RPC_H_ */
