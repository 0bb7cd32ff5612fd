/* SPDX-License-Identifier: MIT */
/* iobd's flags and INI configuration (see config.h). */
#include "server/daemon/config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <stddef.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#ifndef IOB_VERSION
#define IOB_VERSION "0.0.0"
#endif

enum {
    OPT_LISTEN = 1000,
    OPT_BROKER,
    OPT_NO_BROKER,
    OPT_SOCKET_MODE,
    OPT_ALLOW_UID,
    OPT_ALLOW_GID,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CLIENT_CA,
    OPT_TOKEN,
    OPT_TOKEN_FILE,
    OPT_INSECURE,
    OPT_HUGEPAGES,
    OPT_HUGEPAGES_MIN_FREE,
    OPT_RESERVE_HUGEPAGES,
    OPT_MAX_BYTES,
    OPT_MAX_IOBS,
    OPT_MAX_HANDLES,
    OPT_MAX_BYTES_PER_SESSION,
    OPT_MAX_TOKENS,
    OPT_MAX_MAPPINGS,
    OPT_MAX_BYTES_PER_UID,
    OPT_MAX_IOBS_PER_UID,
    OPT_MAX_HANDLES_PER_UID,
    OPT_MAX_TOKENS_PER_UID,
    OPT_MAX_MAPPINGS_PER_UID,
    OPT_HANDLE_VALUE_BITS,
    OPT_TOKEN_TTL,
    OPT_LOG_LEVEL,
    OPT_CONFIG,
    OPT_EXIT_WITH_PARENT,
    /* gRPC side: who sees everything, per-client budgets (keep together). */
    OPT_OPERATOR_UID,
    OPT_OPERATOR_GID,
    OPT_MAX_SESSIONS_PER_UID,
    OPT_MAX_WAITS_PER_SESSION,
    /* Map broker budgets. */
    OPT_BROKER_MAX_CONNS_PER_UID,
    OPT_BROKER_ATTACH_TIMEOUT,
    /* Prometheus endpoint. */
    OPT_METRICS,
    OPT_METRICS_ALLOW_REMOTE,
    OPT_METRICS_MAX_NAMED,
    OPT_HELP,
    OPT_VERSION,
};

static const struct option iobd__long_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"broker", required_argument, NULL, OPT_BROKER},
    {"no-broker", no_argument, NULL, OPT_NO_BROKER},
    {"socket-mode", required_argument, NULL, OPT_SOCKET_MODE},
    {"allow-uid", required_argument, NULL, OPT_ALLOW_UID},
    {"allow-gid", required_argument, NULL, OPT_ALLOW_GID},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"hugepages", required_argument, NULL, OPT_HUGEPAGES},
    {"hugepages-min-free", required_argument, NULL, OPT_HUGEPAGES_MIN_FREE},
    {"reserve-hugepages", required_argument, NULL, OPT_RESERVE_HUGEPAGES},
    {"max-bytes", required_argument, NULL, OPT_MAX_BYTES},
    {"max-iobs-per-session", required_argument, NULL, OPT_MAX_IOBS},
    {"max-handles-per-session", required_argument, NULL, OPT_MAX_HANDLES},
    {"max-bytes-per-session", required_argument, NULL, OPT_MAX_BYTES_PER_SESSION},
    {"max-tokens-per-session", required_argument, NULL, OPT_MAX_TOKENS},
    {"max-mappings-per-session", required_argument, NULL, OPT_MAX_MAPPINGS},
    {"max-bytes-per-uid", required_argument, NULL, OPT_MAX_BYTES_PER_UID},
    {"max-iobs-per-uid", required_argument, NULL, OPT_MAX_IOBS_PER_UID},
    {"max-handles-per-uid", required_argument, NULL, OPT_MAX_HANDLES_PER_UID},
    {"max-tokens-per-uid", required_argument, NULL, OPT_MAX_TOKENS_PER_UID},
    {"max-mappings-per-uid", required_argument, NULL, OPT_MAX_MAPPINGS_PER_UID},
    {"handle-value-bits", required_argument, NULL, OPT_HANDLE_VALUE_BITS},
    {"token-ttl", required_argument, NULL, OPT_TOKEN_TTL},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"exit-with-parent", no_argument, NULL, OPT_EXIT_WITH_PARENT},
    {"operator-uid", required_argument, NULL, OPT_OPERATOR_UID},
    {"operator-gid", required_argument, NULL, OPT_OPERATOR_GID},
    {"max-sessions-per-uid", required_argument, NULL, OPT_MAX_SESSIONS_PER_UID},
    {"max-waits-per-session", required_argument, NULL, OPT_MAX_WAITS_PER_SESSION},
    {"broker-max-conns-per-uid", required_argument, NULL, OPT_BROKER_MAX_CONNS_PER_UID},
    {"broker-attach-timeout", required_argument, NULL, OPT_BROKER_ATTACH_TIMEOUT},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"metrics-allow-remote", no_argument, NULL, OPT_METRICS_ALLOW_REMOTE},
    {"metrics-max-named", required_argument, NULL, OPT_METRICS_MAX_NAMED},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static const char iobd__usage[] =
    "usage: iobd [options]\n"
    "  --listen ADDR              unix:PATH or HOST:PORT; repeatable (default unix:/run/iob/iobd.sock)\n"
    "  --broker PATH              map broker socket (default: iobd-broker.sock next to the first\n"
    "                             Unix socket); --no-broker disables it\n"
    "  --socket-mode MODE         octal mode of the Unix sockets (default 0660)\n"
    "  --allow-uid UID|NAME       accept Unix peers with this uid; repeatable\n"
    "  --allow-gid GID|NAME       accept Unix peers with this gid; repeatable. With neither,\n"
    "                             everyone who can open the socket is accepted; with either,\n"
    "                             root and iobd's own uid are always accepted\n"
    "  --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]   TLS for TCP (CA: mutual TLS)\n"
    "  --token TOKEN | --token-file FILE   bearer token required on TCP calls\n"
    "  --insecure                 allow plaintext TCP (a token is still required)\n"
    "  --hugepages auto|2M|1G|off backing of regions (default auto)\n"
    "  --hugepages-min-free N     auto picks 2M when at least N pages are free (default 1)\n"
    "  --reserve-hugepages N      as root, grow the pool to N pages at start; the pages\n"
    "                             are given back at exit\n"
    "Budgets (0 or absent: the default; \"unlimited\": none). Over a byte budget a create is\n"
    "ZX_ERR_NO_MEMORY, over any other ZX_ERR_NO_RESOURCES. Per-uid limits do not apply to\n"
    "root and iobd's own uid; the server-wide byte budget applies to everyone.\n"
    "  --max-bytes SIZE           all regions together (default: half of MemAvailable for 4K\n"
    "                             pages; the pool's free hugepages less --hugepages-min-free)\n"
    "  --max-bytes-per-session SIZE   --max-bytes-per-uid SIZE   (default: --max-bytes)\n"
    "  --max-iobs-per-session N   IOBs plus shared regions (default 65536; per uid 131072)\n"
    "  --max-iobs-per-uid N\n"
    "  --max-handles-per-session N   (default 262144; per uid 524288)\n"
    "  --max-handles-per-uid N\n"
    "  --max-tokens-per-session N    exported tokens not yet imported or expired\n"
    "  --max-tokens-per-uid N        (default 4096; per uid 16384)\n"
    "  --max-mappings-per-session N  broker mapping records (default 65536; per uid 262144)\n"
    "  --max-mappings-per-uid N\n"
    "  --handle-value-bits N      size of the handle value space, 2^N values (1..29, default\n"
    "                             29); values are reused after a full round. For tests\n"
    "  --token-ttl DURATION       lifetime of transfer tokens (default 60s)\n"
    "  --log-level error|warn|info|debug\n"
    "  --config FILE              INI file; section [iobd], keys are the long flag names\n"
    "  --exit-with-parent         exit (cleanly) when the process that started iobd exits:\n"
    "                             for harnesses and tests that start a private server\n"
    "  --operator-uid UID|NAME    --operator-gid GID|NAME   repeatable: local callers that see\n"
    "                             every IOB and the server-wide figures (ListIobs, ServerInfo);\n"
    "                             root, iobd's own uid and TCP callers always do, others see\n"
    "                             only the IOBs their uid holds handles to\n"
    "  --max-sessions-per-uid N   open sessions per local uid, root and iobd's own exempt\n"
    "                             (default 64, 0 = unlimited)\n"
    "  --max-waits-per-session N  Wait calls in progress per session (default 64, 0 = unlimited)\n"
    "  --broker-max-conns-per-uid N  map broker connections one uid may hold (default 64;\n"
    "                             root and iobd's own uid are not limited)\n"
    "  --broker-attach-timeout DURATION  a map broker connection that has not attached\n"
    "                             to its session by then is closed (default 5s)\n"
    "  --metrics HOST:PORT        serve Prometheus metrics on http://HOST:PORT/metrics (off by\n"
    "                             default); a loopback address unless --metrics-allow-remote\n"
    "  --metrics-allow-remote     allow a non-loopback --metrics address: anyone who reaches\n"
    "                             the port reads the metrics (it sees no uid and no token)\n"
    "  --metrics-max-named N      shared regions with a label of their own in the mediated\n"
    "                             metrics (default 32, at most 1024); the rest are \"other\"\n";

static bool iobd__parse_u64(const char* text, uint64_t* out) {
    if (text == NULL || *text == '\0' || *text == '-') {
        return false;
    }
    char* end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

/* The decimal number that starts text (no sign); *end: what follows it. */
static bool iobd__parse_leading(const char* text, unsigned long long* v, char** end) {
    if (text == NULL || *text == '\0' || *text == '-') {
        return false;
    }
    errno = 0;
    *v = strtoull(text, end, 10);
    return errno == 0 && *end != text;
}

bool iobd_parse_size(const char* text, uint64_t* out) {
    char* end = NULL;
    unsigned long long v;
    if (!iobd__parse_leading(text, &v, &end)) {
        return false;
    }
    unsigned shift = 0;
    if (*end != '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            return false;
        }
        end++;
        if (*end == 'i') {
            end++;
        }
        if (*end == 'B' || *end == 'b') {
            end++;
        }
        if (*end != '\0') {
            return false;
        }
    }
    if (shift > 0 && v > (UINT64_MAX >> shift)) {
        return false;
    }
    *out = (uint64_t)v << shift;
    return true;
}

bool iobd_parse_duration_ns(const char* text, uint64_t* out) {
    char* end = NULL;
    unsigned long long v;
    if (!iobd__parse_leading(text, &v, &end)) {
        return false;
    }
    uint64_t mult;
    if (*end == '\0' || strcmp(end, "s") == 0) {
        mult = 1000000000ull;
    } else if (strcmp(end, "ms") == 0) {
        mult = 1000000ull;
    } else if (strcmp(end, "us") == 0) {
        mult = 1000ull;
    } else if (strcmp(end, "ns") == 0) {
        mult = 1;
    } else if (strcmp(end, "m") == 0) {
        mult = 60000000000ull;
    } else if (strcmp(end, "h") == 0) {
        mult = 3600000000000ull;
    } else {
        return false;
    }
    if (v > UINT64_MAX / mult) {
        return false;
    }
    *out = v * mult;
    return true;
}

/* A budget: a size, 0 for the default, or "unlimited" (UINT64_MAX, the core's "none"). */
static bool iobd__parse_limit_size(const char* text, uint64_t* out) {
    if (text != NULL && strcasecmp(text, "unlimited") == 0) {
        *out = UINT64_MAX;
        return true;
    }
    return iobd_parse_size(text, out);
}

/* A count budget: a number below 2^32 - 1, 0 for the default, or "unlimited" (UINT32_MAX). */
static bool iobd__parse_limit_count(const char* text, uint32_t* out) {
    uint64_t n = 0;
    if (text != NULL && strcasecmp(text, "unlimited") == 0) {
        *out = UINT32_MAX;
        return true;
    }
    if (!iobd__parse_u64(text, &n) || n >= UINT32_MAX) {
        return false;
    }
    *out = (uint32_t)n;
    return true;
}

static void iobd__set_str(char** slot, const char* v) {
    free(*slot);
    *slot = strdup(v);
}

static char* iobd__read_token_file(const char* path) {
    FILE* f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "iobd: cannot read token file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[512];
    char* line = fgets(buf, sizeof buf, f);
    fclose(f);
    if (line == NULL) {
        fprintf(stderr, "iobd: token file %s is empty\n", path);
        return NULL;
    }
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0') {
        fprintf(stderr, "iobd: token file %s is empty\n", path);
        return NULL;
    }
    return strdup(buf);
}

/*
 * --allow-uid, --allow-gid, --operator-uid, --operator-gid: a number or a user/group name,
 * appended to its list. The first on the command line replaces what the config file gave.
 */
static bool iobd__id_list_add(const char* v, bool is_uid, bool from_cli, uint32_t* ids,
                              size_t* count, bool* from_cli_seen) {
    _Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
                   "uid and gid lists are stored as uint32_t");
    if (from_cli && !*from_cli_seen) {
        *count = 0;
        *from_cli_seen = true;
    }
    uint64_t n;
    uint32_t id;
    if (iobd__parse_u64(v, &n) && n <= UINT32_MAX) {
        id = (uint32_t)n;
    } else if (is_uid) {
        struct passwd* pw = getpwnam(v);
        if (pw == NULL) {
            fprintf(stderr, "iobd: unknown user %s\n", v);
            return false;
        }
        id = pw->pw_uid;
    } else {
        struct group* gr = getgrnam(v);
        if (gr == NULL) {
            fprintf(stderr, "iobd: unknown group %s\n", v);
            return false;
        }
        id = gr->gr_gid;
    }
    if (*count == IOBD_MAX_ALLOW) {
        return false;
    }
    ids[(*count)++] = id;
    return true;
}

/* The budget options: each sets one limit of the core's configuration. */
static const struct {
    int opt;
    bool bytes; /* a size in a uint64_t field; otherwise a count in a uint32_t one */
    size_t offset;
} iobd__limit_options[] = {
    {OPT_MAX_BYTES, true, offsetof(iob_core_config_t, max_total_bytes)},
    {OPT_MAX_BYTES_PER_SESSION, true, offsetof(iob_core_config_t, max_bytes_per_session)},
    {OPT_MAX_BYTES_PER_UID, true, offsetof(iob_core_config_t, max_bytes_per_uid)},
    {OPT_MAX_IOBS, false, offsetof(iob_core_config_t, max_iobs_per_session)},
    {OPT_MAX_HANDLES, false, offsetof(iob_core_config_t, max_handles_per_session)},
    {OPT_MAX_TOKENS, false, offsetof(iob_core_config_t, max_tokens_per_session)},
    {OPT_MAX_MAPPINGS, false, offsetof(iob_core_config_t, max_mappings_per_session)},
    {OPT_MAX_IOBS_PER_UID, false, offsetof(iob_core_config_t, max_iobs_per_uid)},
    {OPT_MAX_HANDLES_PER_UID, false, offsetof(iob_core_config_t, max_handles_per_uid)},
    {OPT_MAX_TOKENS_PER_UID, false, offsetof(iob_core_config_t, max_tokens_per_uid)},
    {OPT_MAX_MAPPINGS_PER_UID, false, offsetof(iob_core_config_t, max_mappings_per_uid)},
};

static bool iobd__parse_bool(const char* v) {
    return v == NULL || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
           strcasecmp(v, "yes") == 0;
}

/* --listen: the first on the command line replaces the config file's list. */
static bool iobd__listen_add(iobd_options_t* o, const char* v, bool from_cli) {
    if (from_cli && !o->listen_from_cli) {
        for (size_t i = 0; i < o->listen_count; i++) {
            free(o->listen[i]);
        }
        o->listen_count = 0;
        o->listen_from_cli = true;
    }
    if (o->listen_count == IOBD_MAX_LISTEN) {
        fprintf(stderr, "iobd: at most %d --listen\n", IOBD_MAX_LISTEN);
        return false;
    }
    o->listen[o->listen_count++] = strdup(v);
    return true;
}

/* The options of what iobd may hold and for how long: the core's, the broker's, rpc's. */
static bool iobd__apply_budget(iobd_options_t* o, int opt, const char* v) {
    char* core = (char*)&o->core;
    for (size_t i = 0; i < sizeof iobd__limit_options / sizeof iobd__limit_options[0]; i++) {
        if (iobd__limit_options[i].opt == opt) {
            void* field = core + iobd__limit_options[i].offset;
            return iobd__limit_options[i].bytes ? iobd__parse_limit_size(v, field)
                                                : iobd__parse_limit_count(v, field);
        }
    }
    uint64_t n;
    switch (opt) {
    case OPT_HUGEPAGES_MIN_FREE:
        return iobd__parse_u64(v, &o->core.hugepages_min_free);
    case OPT_RESERVE_HUGEPAGES:
        return iobd__parse_u64(v, &o->reserve_hugepages);
    case OPT_HANDLE_VALUE_BITS:
        if (!iobd__parse_u64(v, &n) || n < 1 || n > 29) {
            return false;
        }
        o->core.handle_value_bits = (uint32_t)n;
        return true;
    case OPT_TOKEN_TTL:
        return iobd_parse_duration_ns(v, &o->core.token_ttl_ns) && o->core.token_ttl_ns > 0;
    case OPT_MAX_SESSIONS_PER_UID:
    case OPT_MAX_WAITS_PER_SESSION:
        if (!iobd__parse_u64(v, &n) || n > UINT32_MAX) {
            return false;
        }
        *(opt == OPT_MAX_SESSIONS_PER_UID ? &o->max_sessions_per_uid
                                          : &o->max_waits_per_session) = (uint32_t)n;
        return true;
    case OPT_BROKER_MAX_CONNS_PER_UID:
        if (!iobd__parse_u64(v, &n) || n == 0 || n > UINT32_MAX) {
            return false;
        }
        o->broker_max_conns_per_uid = (uint32_t)n;
        return true;
    case OPT_BROKER_ATTACH_TIMEOUT:
        /* Whole milliseconds, at least one (the broker's timer resolution). */
        if (!iobd_parse_duration_ns(v, &n) || n < 1000000u || n / 1000000u > UINT32_MAX) {
            return false;
        }
        o->broker_attach_timeout_ms = (uint32_t)(n / 1000000u);
        return true;
    case OPT_METRICS_MAX_NAMED:
        if (!iobd__parse_u64(v, &n) || n > 1024) {
            return false;
        }
        o->metrics_max_named = (uint32_t)n;
        return true;
    default:
        return false;
    }
}

/* Applies one option (from a flag or a config key). from_cli: lists replace the file's. */
static bool iobd__apply(iobd_options_t* o, int opt, const char* v, bool from_cli) {
    switch (opt) {
    case OPT_LISTEN:
        return iobd__listen_add(o, v, from_cli);
    case OPT_BROKER:
        iobd__set_str(&o->broker_path, v);
        return true;
    case OPT_NO_BROKER:
        o->no_broker = true;
        return true;
    case OPT_EXIT_WITH_PARENT:
        o->exit_with_parent = true;
        return true;
    case OPT_SOCKET_MODE: {
        char* end = NULL;
        unsigned long m = strtoul(v, &end, 8);
        if (*v == '\0' || *end != '\0' || m > 0777) {
            return false;
        }
        o->socket_mode = (uint32_t)m;
        return true;
    }
    case OPT_ALLOW_UID:
        return iobd__id_list_add(v, true, from_cli, o->allow_uids, &o->allow_uid_count,
                                 &o->allow_uid_from_cli);
    case OPT_ALLOW_GID:
        return iobd__id_list_add(v, false, from_cli, o->allow_gids, &o->allow_gid_count,
                                 &o->allow_gid_from_cli);
    case OPT_OPERATOR_UID:
        return iobd__id_list_add(v, true, from_cli, o->operator_uids, &o->operator_uid_count,
                                 &o->operator_uid_from_cli);
    case OPT_OPERATOR_GID:
        return iobd__id_list_add(v, false, from_cli, o->operator_gids, &o->operator_gid_count,
                                 &o->operator_gid_from_cli);
    case OPT_TLS_CERT:
        iobd__set_str(&o->tls_cert, v);
        return true;
    case OPT_TLS_KEY:
        iobd__set_str(&o->tls_key, v);
        return true;
    case OPT_TLS_CLIENT_CA:
        iobd__set_str(&o->tls_client_ca, v);
        return true;
    case OPT_TOKEN:
        iobd__set_str(&o->token, v);
        return true;
    case OPT_TOKEN_FILE: {
        char* t = iobd__read_token_file(v);
        if (t == NULL) {
            return false;
        }
        free(o->token);
        o->token = t;
        return true;
    }
    case OPT_INSECURE:
        o->insecure = iobd__parse_bool(v);
        return true;
    case OPT_HUGEPAGES:
        /* Checked here, so a typo in the file names its line instead of failing later. */
        if (strcasecmp(v, "auto") != 0 && strcasecmp(v, "2M") != 0 &&
            strcasecmp(v, "1G") != 0 && strcasecmp(v, "off") != 0 && strcasecmp(v, "4K") != 0) {
            return false;
        }
        iobd__set_str(&o->hugepages, v);
        return true;
    case OPT_LOG_LEVEL:
        return iobd_log_parse_level(v, &o->log_level);
    case OPT_METRICS:
        iobd__set_str(&o->metrics, v);
        return true;
    case OPT_METRICS_ALLOW_REMOTE:
        o->metrics_allow_remote = iobd__parse_bool(v);
        return true;
    default:
        return iobd__apply_budget(o, opt, v);
    }
}

/*
 * Why the INI handler stopped: ini_parse only reports the line, so the handler leaves the
 * reason here and iobd_options_parse prints both as one message ("FILE:LINE: reason").
 */
static char iobd__ini_error[320];

static int iobd__ini_handler(void* user, const char* section, const char* name,
                             const char* value) {
    iobd_options_t* o = user;
    if (iobd__ini_error[0] != '\0') {
        return 0; /* inih goes on after an error; the first one is the one to report */
    }
    if (strcmp(section, "iobd") != 0 && section[0] != '\0') {
        snprintf(iobd__ini_error, sizeof iobd__ini_error, "unknown section [%s] (only [iobd])",
                 section);
        return 0;
    }
    for (const struct option* lo = iobd__long_options; lo->name != NULL; lo++) {
        if (strcmp(lo->name, name) == 0 && lo->val != OPT_CONFIG && lo->val != OPT_HELP &&
            lo->val != OPT_VERSION) {
            if (!iobd__apply(o, lo->val, value, false)) {
                snprintf(iobd__ini_error, sizeof iobd__ini_error, "bad value for %s: \"%s\"",
                         name, value);
                return 0;
            }
            return 1;
        }
    }
    snprintf(iobd__ini_error, sizeof iobd__ini_error,
             "unknown key \"%s\" (keys are iobd's long flag names, see --help)", name);
    return 0;
}

int iobd_options_parse(iobd_options_t* o, int argc, char** argv) {
    memset(o, 0, sizeof *o);
    o->log_level = IOBD_LOG_INFO;
    o->hugepages = strdup("auto");
    o->core.hugepages_min_free = 1;
    o->max_sessions_per_uid = 64;
    o->max_waits_per_session = 64;
    o->metrics_max_named = 32;

    /* First pass: only --config, so the flags can override the file. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            o->config_file = strdup(argv[i + 1]);
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            o->config_file = strdup(argv[i] + 9);
        }
    }
    if (o->config_file != NULL) {
        iobd__ini_error[0] = '\0';
        int r = ini_parse(o->config_file, iobd__ini_handler, o);
        if (r != 0) {
            if (r < 0) {
                fprintf(stderr, "iobd: cannot read config %s: %s\n", o->config_file,
                        r == -1 ? strerror(errno) : "out of memory");
            } else {
                fprintf(stderr, "iobd: %s:%d: %s\n", o->config_file, r,
                        iobd__ini_error[0] != '\0' ? iobd__ini_error : "syntax error");
            }
            return -1;
        }
    }
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "", iobd__long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_HELP:
            fputs(iobd__usage, stdout);
            return 1;
        case OPT_VERSION:
            printf("iobd %s\n", IOB_VERSION);
            return 1;
        case OPT_CONFIG:
            break;
        case '?':
            fputs(iobd__usage, stderr);
            return -1;
        default:
            if (!iobd__apply(o, opt, optarg, true)) {
                fprintf(stderr, "iobd: bad value for --%s: \"%s\"\n",
                        iobd__long_options[opt - OPT_LISTEN].name, optarg ? optarg : "");
                return -1;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "iobd: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (o->listen_count == 0) {
        o->listen[o->listen_count++] = strdup("unix:/run/iob/iobd.sock");
    }
    return 0;
}

void iobd_options_fini(iobd_options_t* o) {
    for (size_t i = 0; i < o->listen_count; i++) {
        free(o->listen[i]);
    }
    free(o->broker_path);
    free(o->tls_cert);
    free(o->tls_key);
    free(o->tls_client_ca);
    free(o->token);
    free(o->hugepages);
    free(o->config_file);
    free(o->metrics);
    memset(o, 0, sizeof *o);
}
