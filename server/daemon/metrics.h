/* SPDX-License-Identifier: MIT */
/*
 * iobd --metrics HOST:PORT: the Prometheus endpoint (GET /metrics, text format 0.0.4),
 * served by libmicrohttpd on its own thread. A scrape holds the core's lock only for the
 * copy of its figures (iob_metrics_render); connections are few and short-lived
 * (IOBD_METRICS_MAX_CONNS, IOBD_METRICS_TIMEOUT_S), so a slow or stuck scraper cannot pile
 * connections up or hold anything of iobd's.
 *
 * A TCP port cannot tell who connects (no uid, no bearer token), so the endpoint listens on
 * loopback only unless the operator opts in with --metrics-allow-remote.
 */
#ifndef IOB_SERVER_DAEMON_METRICS_H_
#define IOB_SERVER_DAEMON_METRICS_H_

#include <stdbool.h>

#include <zircon/types.h>

#include "server/core/iob_core.h"

#define IOBD_METRICS_MAX_CONNS 8
#define IOBD_METRICS_TIMEOUT_S 5

typedef struct iobd_metrics iobd_metrics_t;

/*
 * Resolves addr ("HOST:PORT", "[V6]:PORT"; port 0 picks one) and starts serving. With a
 * token (iobd's --token), every scrape must carry "Authorization: Bearer TOKEN" (401
 * otherwise), as TCP callers of the management plane must. A non-loopback address without
 * allow_remote, or with it but without a token: ZX_ERR_ACCESS_DENIED; an address that does
 * not parse or resolve: ZX_ERR_INVALID_ARGS; a port that cannot be bound: ZX_ERR_BAD_STATE.
 * Every failure is logged.
 */
zx_status_t iobd_metrics_start(const char* addr, bool allow_remote, const char* token,
                               iob_core_t* core, iobd_metrics_t** out);
/* Stops the thread and closes the socket; NULL is a no-op. */
void iobd_metrics_stop(iobd_metrics_t* m);

#endif /* IOB_SERVER_DAEMON_METRICS_H_ */
