/* SPDX-License-Identifier: MIT */
/*
 * iobd's configuration: an INI file (--config, parsed with libinih) overridden by flags.
 * Every key of the file's [iobd] section is a long flag's name without the dashes
 * ("listen = unix:/run/iob/iobd.sock", "max-bytes = 1G"); repeatable flags (listen,
 * allow-uid, allow-gid, operator-uid, operator-gid) may repeat in the file too, and given
 * on the command line they replace the file's list.
 */
#ifndef IOB_SERVER_DAEMON_CONFIG_H_
#define IOB_SERVER_DAEMON_CONFIG_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/core/iob_core.h"
#include "server/rpc/log.h"

#define IOBD_MAX_LISTEN 16
#define IOBD_MAX_ALLOW 64

typedef struct iobd_options {
    char* listen[IOBD_MAX_LISTEN];
    size_t listen_count;
    bool listen_from_cli;
    char* broker_path; /* NULL: next to the first Unix socket */
    bool no_broker;
    bool exit_with_parent; /* SIGTERM to itself when the process that started it exits */
    uint32_t socket_mode;
    uid_t allow_uids[IOBD_MAX_ALLOW];
    size_t allow_uid_count;
    bool allow_uid_from_cli;
    gid_t allow_gids[IOBD_MAX_ALLOW];
    size_t allow_gid_count;
    bool allow_gid_from_cli;
    char* tls_cert;
    char* tls_key;
    char* tls_client_ca;
    char* token;
    bool insecure;
    char* hugepages; /* auto, 2M, 1G, off */
    uint64_t reserve_hugepages;
    /*
     * What the flags say of the core: its budgets (0 = the core's default, UINT64_MAX /
     * UINT32_MAX = unlimited), hugepages_min_free, handle_value_bits and token_ttl_ns.
     * main fills in the rest (backing, server_uid) and hands it to the core as it is.
     */
    iob_core_config_t core;
    iobd_log_level_t log_level;
    char* config_file;
    /* gRPC side: operators and per-client budgets (iobd_rpc_config_t). */
    uid_t operator_uids[IOBD_MAX_ALLOW];
    size_t operator_uid_count;
    bool operator_uid_from_cli;
    gid_t operator_gids[IOBD_MAX_ALLOW];
    size_t operator_gid_count;
    bool operator_gid_from_cli;
    uint32_t max_sessions_per_uid;
    uint32_t max_waits_per_session;
    /* Map broker budgets; 0: the broker's defaults (server/broker/broker.h). */
    uint32_t broker_max_conns_per_uid;
    uint32_t broker_attach_timeout_ms;
    /* Prometheus endpoint (server/daemon/metrics.h); NULL: off. */
    char* metrics;
    bool metrics_allow_remote;
    uint32_t metrics_max_named; /* shared regions labelled individually */
} iobd_options_t;

/* 0: run; 1: exit 0 (help/version printed); -1: bad usage (message printed). */
int iobd_options_parse(iobd_options_t* o, int argc, char** argv);
void iobd_options_fini(iobd_options_t* o);

/* "4096", "64K", "2M", "1G" (binary units). */
bool iobd_parse_size(const char* text, uint64_t* out);
/* "30" (seconds), "500ms", "2s", "5m", "1h". */
bool iobd_parse_duration_ns(const char* text, uint64_t* out);

#endif /* IOB_SERVER_DAEMON_CONFIG_H_ */
