/* SPDX-License-Identifier: MIT */
/*
 * iobctl: the operator's CLI for iobd, over iob_conn.
 *
 * Handles belong to the session of this one process, so they close when iobctl exits;
 * `create --export` prints the endpoints as transfer tokens (kept alive by iobd for the
 * token TTL) and the other commands take `--token T` (imported) or a handle of their own.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <zircon/status.h>
#include <zircon/syscalls/iob.h>
#include <zircon/syscalls/object.h>

#include "client/iobctl/top.h"
#include "client/rpc/iob_conn.h"
#include "client/status_text.h"
#include "proto/wire.h"

/* Exit codes (documented in --help). */
enum {
    EXIT_USAGE = 1,
    EXIT_UNREACHABLE = 2, /* ZX_ERR_UNAVAILABLE, ZX_ERR_PEER_CLOSED */
    EXIT_DENIED = 3,      /* ZX_ERR_ACCESS_DENIED */
    EXIT_NOT_FOUND = 4,   /* ZX_ERR_NOT_FOUND, ZX_ERR_BAD_HANDLE (unknown token or handle) */
    EXIT_INVALID = 5,     /* ZX_ERR_INVALID_ARGS, ZX_ERR_OUT_OF_RANGE, ZX_ERR_WRONG_TYPE, ... */
    EXIT_TIMED_OUT = 6,   /* ZX_ERR_TIMED_OUT */
    EXIT_NO_MEMORY = 7,   /* ZX_ERR_NO_MEMORY, ZX_ERR_NO_RESOURCES */
    EXIT_LOCAL_IO = 8,    /* reading or writing a local file */
    EXIT_OTHER = 9,       /* any other status */
};

static const char iobctl__usage[] =
    "usage: iobctl [--server ADDR] [--tls-ca F] [--tls-cert F --tls-key F] [--token-file F]\n"
    "              [--insecure] [--json] [--timeout MS] COMMAND [args]\n"
    "commands:\n"
    "  server-info                      version, page size, backing, limits, counts\n"
    "  list                             the IOBs the server holds\n"
    "  top [--metrics HOST:PORT] [--interval S] [--once | --json]\n"
    "                                   live view from iobd's metrics endpoint (iobd --metrics)\n"
    "  create --region SPEC [--region SPEC ...] [--name N] [--export]\n"
    "                                   SPEC: size=1M,access=ep0:rw,ep1:r (access letters:\n"
    "                                   r=map read, w=map write, R/W=mediated read/write)\n"
    "                                   --export prints both endpoints as transfer tokens\n"
    "                                   a shared ring: type=shared,shared=TOKEN,discipline=ring,\n"
    "                                   tag=T,access=ep0:rw,ep1:W (TOKEN from create-shared-region)\n"
    "                                   an ID allocator: size=1M,discipline=id,access=ep0:r,ep1:W\n"
    "  create-shared-region --size N [--export]\n"
    "                                   a shared region for type=shared regions; --export prints\n"
    "                                   it as a token (the IOBs built on it keep it alive)\n"
    "  writev  (--token T | --handle H) [--region I] [--in FILE|-]\n"
    "                                   one record (at most 65519 bytes) into a ring region\n"
    "  info    (--token T | --handle H)  an endpoint you hold: rights, regions, signals\n"
    "  info    --koid K                 the listing's summary of one IOB (K: the IOB's koid or\n"
    "                                   either endpoint's); needs no handle. Operators hold no\n"
    "                                   handle to IOBs they did not create: to read, write or\n"
    "                                   signal one, its holder exports a token for them\n"
    "  read    (--token T | --handle H) [--region I] [--offset O] --length L [--out FILE]\n"
    "  write   (--token T | --handle H) [--region I] [--offset O] [--in FILE]\n"
    "  signal  (--token T | --handle H) [--set MASK] [--clear MASK] [--peer]\n"
    "  watch   (--token T | --handle H) [--signals MASK] [--timeout-ms N]\n"
    "  close   (--token T | --handle H)\n"
    "The server: --server, else $IOB_SERVER, else unix:" IOB_DEFAULT_SOCKET_PATH ".\n"
    "Exit codes: 0 ok, 1 usage, 2 server unreachable, 3 access denied, 4 not found / bad\n"
    "handle or token, 5 invalid arguments or out of range, 6 timed out, 7 out of memory or\n"
    "resources, 8 local file error, 9 other. Messages name the Zircon status.\n";

static bool g_json;

static int iobctl__exit_code(zx_status_t st) {
    switch (st) {
    case ZX_OK:
        return 0;
    case ZX_ERR_UNAVAILABLE:
    case ZX_ERR_PEER_CLOSED:
        return EXIT_UNREACHABLE;
    case ZX_ERR_ACCESS_DENIED:
        return EXIT_DENIED;
    case ZX_ERR_NOT_FOUND:
    case ZX_ERR_BAD_HANDLE:
        return EXIT_NOT_FOUND;
    case ZX_ERR_INVALID_ARGS:
    case ZX_ERR_OUT_OF_RANGE:
    case ZX_ERR_WRONG_TYPE:
    case ZX_ERR_BUFFER_TOO_SMALL:
    case ZX_ERR_NOT_SUPPORTED:
        return EXIT_INVALID;
    case ZX_ERR_TIMED_OUT:
        return EXIT_TIMED_OUT;
    case ZX_ERR_NO_MEMORY:
    case ZX_ERR_NO_RESOURCES:
        return EXIT_NO_MEMORY;
    default:
        return EXIT_OTHER;
    }
}

static int iobctl__fail(const char* cmd, zx_status_t st, const char* what) {
    fprintf(stderr, "iobctl: %s: %s: %s%s%s\n", cmd, zx_status_get_string(st),
            iob_status_message(st), what ? ": " : "", what ? what : "");
    return iobctl__exit_code(st);
}

static int iobctl__usage_error(const char* msg) {
    fprintf(stderr, "iobctl: %s\n%s", msg, iobctl__usage);
    return EXIT_USAGE;
}

static bool iobctl__parse_size(const char* t, uint64_t* out) {
    char* end = NULL;
    errno = 0;
    unsigned long long v = strtoull(t, &end, 0);
    if (errno != 0 || end == t) {
        return false;
    }
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') {
        shift = 10;
    } else if (*end == 'M' || *end == 'm') {
        shift = 20;
    } else if (*end == 'G' || *end == 'g') {
        shift = 30;
    } else if (*end != '\0') {
        return false;
    }
    if (shift != 0 && end[1] != '\0') {
        return false;
    }
    if (shift != 0 && v > (UINT64_MAX >> shift)) {
        return false;
    }
    *out = (uint64_t)v << shift;
    return true;
}

/*
 * Tokens named by shared=TOKEN, per region: imported by cmd_create (a handle of this
 * process's session is what the region description must name).
 */
static char* g_shared_tokens[ZX_IOB_MAX_REGIONS];

/* "size=1M,access=ep0:rw,ep1:r[,type=shared,shared=TOKEN,discipline=ring|id,tag=T]". */
static bool iobctl__parse_region(const char* spec, zx_iob_region_t* r, size_t index) {
    memset(r, 0, sizeof *r);
    r->type = ZX_IOB_REGION_TYPE_PRIVATE;
    char* copy = strdup(spec);
    bool ok = copy != NULL;
    int ep = -1;
    for (char* tok = strtok(copy, ","); ok && tok != NULL; tok = strtok(NULL, ",")) {
        const char* perms = NULL;
        if (strncmp(tok, "size=", 5) == 0) {
            ok = iobctl__parse_size(tok + 5, &r->size);
            continue;
        }
        if (strcmp(tok, "type=shared") == 0 || strcmp(tok, "type=private") == 0) {
            r->type = tok[5] == 's' ? ZX_IOB_REGION_TYPE_SHARED : ZX_IOB_REGION_TYPE_PRIVATE;
            continue;
        }
        if (strncmp(tok, "shared=", 7) == 0) {
            free(g_shared_tokens[index]);
            g_shared_tokens[index] = strdup(tok + 7);
            r->type = ZX_IOB_REGION_TYPE_SHARED;
            continue;
        }
        if (strncmp(tok, "discipline=", 11) == 0) {
            const char* d = tok + 11;
            r->discipline.type = strcmp(d, "ring") == 0 ? ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER
                                 : strcmp(d, "id") == 0 ? ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR
                                                        : ZX_IOB_DISCIPLINE_TYPE_NONE;
            ok = strcmp(d, "ring") == 0 || strcmp(d, "id") == 0 || strcmp(d, "none") == 0;
            continue;
        }
        if (strncmp(tok, "tag=", 4) == 0) {
            ok = iobctl__parse_size(tok + 4, &r->discipline.ring_buffer.tag);
            continue;
        }
        if (strncmp(tok, "access=", 7) == 0) {
            tok += 7;
        }
        if (strncmp(tok, "ep0:", 4) == 0) {
            ep = 0;
            perms = tok + 4;
        } else if (strncmp(tok, "ep1:", 4) == 0) {
            ep = 1;
            perms = tok + 4;
        } else {
            ok = false;
            break;
        }
        for (const char* p = perms; *p != '\0' && ok; p++) {
            uint32_t bit = 0;
            switch (*p) {
            case 'r':
                bit = ZX_IOB_ACCESS_EP0_CAN_MAP_READ;
                break;
            case 'w':
                bit = ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE;
                break;
            case 'R':
                bit = ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ;
                break;
            case 'W':
                bit = ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE;
                break;
            case '-':
                break;
            default:
                ok = false;
            }
            r->access |= ep == 1 ? bit << 4 : bit;
        }
    }
    free(copy);
    return ok;
}

typedef struct iobctl_args {
    const char* token;
    long long handle;
    uint32_t region;
    uint64_t offset;
    uint64_t length;
    bool have_length;
    const char* in;
    const char* out;
    uint32_t set, clear;
    bool peer;
    uint32_t signals;
    long long timeout_ms;
    zx_iob_region_t regions[ZX_IOB_MAX_REGIONS];
    size_t region_count;
    const char* name;
    bool export_tokens;
    uint64_t koid; /* info --koid; 0: not given */
    uint64_t size; /* create-shared-region --size */
    bool have_size;
} iobctl_args_t;

/* The handle a command acts on: imported from --token, or --handle (this session's). */
static zx_status_t iobctl__target(iob_conn_t* c, const iobctl_args_t* a, zx_handle_t* h) {
    if (a->token != NULL) {
        return iob_conn_handle_import(c, a->token, h);
    }
    if (a->handle > 0) {
        *h = (zx_handle_t)a->handle;
        return ZX_OK;
    }
    return ZX_ERR_INVALID_ARGS;
}

static void iobctl__print_json(json_t* j) {
    char* s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s != NULL) {
        puts(s);
        free(s);
    }
    json_decref(j);
}

/* A budget for JSON: null when there is none. */
static json_t* iobctl__limit_json(uint64_t v) {
    return v == UINT64_MAX ? json_null() : json_integer((json_int_t)v);
}

static int cmd_server_info(iob_conn_t* c) {
    iob_conn_server_info_t si;
    zx_status_t st = iob_conn_server_info(c, &si);
    if (st != ZX_OK) {
        return iobctl__fail("server-info", st, NULL);
    }
    if (g_json) {
        json_t* j = json_pack(
            "{s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
            "version", si.version, "page_size", (json_int_t)si.page_size, "backing", si.backing,
            "hugepages_total", (json_int_t)si.hugepages_total, "hugepages_free",
            (json_int_t)si.hugepages_free, "max_total_bytes", (json_int_t)si.max_total_bytes,
            "max_iobs_per_session", (json_int_t)si.max_iobs_per_session, "max_handles_per_session",
            (json_int_t)si.max_handles_per_session, "token_ttl_ns", (json_int_t)si.token_ttl_ns,
            "iobs", (json_int_t)si.iobs, "sessions", (json_int_t)si.sessions, "handles",
            (json_int_t)si.handles, "mappings", (json_int_t)si.mappings, "tokens",
            (json_int_t)si.tokens, "bytes_in_use", (json_int_t)si.bytes_in_use, "shared_regions",
            (json_int_t)si.shared_regions, "uids", (json_int_t)si.uids, "top_uid",
            (json_int_t)si.top_uid, "top_uid_bytes", (json_int_t)si.top_uid_bytes);
        if (j != NULL) {
            json_object_set_new(j, "max_total_bytes", iobctl__limit_json(si.max_total_bytes));
            json_object_set_new(j, "handle_value_bits",
                                json_integer((json_int_t)si.handle_value_bits));
            const char* names[5] = {"bytes", "iobs", "handles", "tokens", "mappings"};
            uint64_t per_session[5] = {si.session_max_bytes, si.session_max_iobs,
                                       si.session_max_handles, si.session_max_tokens,
                                       si.session_max_mappings};
            uint64_t per_uid[5] = {si.uid_max_bytes, si.uid_max_iobs, si.uid_max_handles,
                                   si.uid_max_tokens, si.uid_max_mappings};
            json_t* js = json_object();
            json_t* ju = json_object();
            for (int i = 0; i < 5; i++) {
                json_object_set_new(js, names[i], iobctl__limit_json(per_session[i]));
                json_object_set_new(ju, names[i], iobctl__limit_json(per_uid[i]));
            }
            json_object_set_new(j, "per_session", js);
            json_object_set_new(j, "per_uid", ju);
        }
        iobctl__print_json(j);
        return 0;
    }
    char a[24], b[24], d[24], e[24], f[24];
    printf("server       %s (iobd %s)\n", iob_conn_target(c), si.version);
    printf("page size    %" PRIu32 " (%s)\n", si.page_size, si.backing);
    if (si.hugepages_total > 0) {
        printf("hugepages    %" PRIu64 " total, %" PRIu64 " free\n", si.hugepages_total,
               si.hugepages_free);
    }
    printf("budget       %s bytes server-wide, token ttl %" PRIu64 " s, handle values 2^%" PRIu32
           "\n",
           iob_wire_limit_text(si.max_total_bytes, a, sizeof a),
           (uint64_t)(si.token_ttl_ns / 1000000000u), si.handle_value_bits);
    printf("per session  %s bytes, %s iobs, %s handles, %s tokens, %s mappings\n",
           iob_wire_limit_text(si.session_max_bytes, a, sizeof a),
           iob_wire_limit_text(si.session_max_iobs, b, sizeof b),
           iob_wire_limit_text(si.session_max_handles, d, sizeof d),
           iob_wire_limit_text(si.session_max_tokens, e, sizeof e),
           iob_wire_limit_text(si.session_max_mappings, f, sizeof f));
    printf(
        "per uid      %s bytes, %s iobs, %s handles, %s tokens, %s mappings"
        " (not for root and iobd's uid)\n",
        iob_wire_limit_text(si.uid_max_bytes, a, sizeof a),
        iob_wire_limit_text(si.uid_max_iobs, b, sizeof b),
        iob_wire_limit_text(si.uid_max_handles, d, sizeof d),
        iob_wire_limit_text(si.uid_max_tokens, e, sizeof e),
        iob_wire_limit_text(si.uid_max_mappings, f, sizeof f));
    printf("per client   sessions/uid %" PRIu32 ", waits/session %" PRIu32 " (0 = unlimited)\n",
           si.max_sessions_per_uid, si.max_waits_per_session);
    if (!si.server_wide) {
        /* Not an operator: iobd tells only what is the caller's own. */
        printf("yours        %" PRIu64 " iobs, %" PRIu64 " sessions, %" PRIu64 " handles, %" PRIu64
               " bytes (server-wide figures: operators only)\n",
               si.iobs, si.sessions, si.handles, si.bytes_in_use);
        return 0;
    }
    printf("in use       %" PRIu64 " bytes, %" PRIu64 " iobs, %" PRIu64 " shared regions, %" PRIu64
           " handles, %" PRIu64 " tokens, %" PRIu64 " mappings\n",
           si.bytes_in_use, si.iobs, si.shared_regions, si.handles, si.tokens, si.mappings);
    printf("clients      %" PRIu64 " sessions, %" PRIu64 " uids; most bytes: uid %" PRIu32
           " with %" PRIu64 "\n",
           si.sessions, si.uids, si.top_uid, si.top_uid_bytes);
    return 0;
}

/* The discipline a shared region is used with, as `create --region discipline=` names it. */
static const char* iobctl__discipline_name(uint64_t type) {
    switch (type) {
    case ZX_IOB_DISCIPLINE_TYPE_NONE:
        return "none";
    case ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER:
        return "ring";
    case ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR:
        return "id";
    default:
        return "?";
    }
}

/*
 * After the table: each shared region with the IOBs built on it and their tags (for a
 * mediated log, its writers; a writer whose process went shows its ep0 peer-closed).
 */
static void iobctl__print_shared(const iob_conn_iob_summary_t* s, size_t n) {
    bool header = false;
    for (size_t i = 0; i < n; i++) {
        zx_koid_t k = s[i].shared_koid;
        bool first = k != 0;
        for (size_t j = 0; j < i && first; j++) {
            first = s[j].shared_koid != k;
        }
        if (!first) {
            continue;
        }
        if (!header) {
            printf("\nshared regions (IOBs on each, with their discipline and tag):\n");
            header = true;
        }
        printf("shared region koid %" PRIu64 "\n", k);
        for (size_t j = i; j < n; j++) {
            if (s[j].shared_koid == k) {
                printf("  iob %-8" PRIu64 " %-20s %-5s tag %-10" PRIu64 "%s\n", s[j].koid,
                       s[j].name[0] ? s[j].name : "-",
                       iobctl__discipline_name(s[j].shared_discipline), s[j].shared_tag,
                       (s[j].endpoints[0].signals & ZX_IOB_PEER_CLOSED) != 0 ? " (ep1 closed)"
                                                                              : "");
            }
        }
    }
}

static int cmd_list(iob_conn_t* c) {
    static iob_conn_iob_summary_t s[4096];
    size_t n = 0;
    zx_status_t st = iob_conn_list(c, s, 4096, &n);
    if (st != ZX_OK) {
        return iobctl__fail("list", st, NULL);
    }
    if (n > 4096) {
        n = 4096;
    }
    iob_conn_server_info_t si;
    if (!g_json && iob_conn_server_info(c, &si) == ZX_OK && !si.server_wide) {
        fprintf(stderr, "iobctl: not an operator: only the IOBs your uid holds handles to\n");
    }
    if (g_json) {
        json_t* arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t* eps = json_array();
            for (int e = 0; e < 2; e++) {
                json_array_append_new(
                    eps, json_pack("{s:I,s:I,s:I,s:I}", "koid", (json_int_t)s[i].endpoints[e].koid,
                                   "handles", (json_int_t)s[i].endpoints[e].handles, "mappings",
                                   (json_int_t)s[i].endpoints[e].mappings, "signals",
                                   (json_int_t)s[i].endpoints[e].signals));
            }
            json_t* o = json_pack("{s:I,s:s,s:I,s:I,s:o}", "koid", (json_int_t)s[i].koid, "name",
                                  s[i].name, "regions", (json_int_t)s[i].region_count, "bytes",
                                  (json_int_t)s[i].total_bytes, "endpoints", eps);
            if (s[i].shared_koid != 0) {
                json_object_set_new(
                    o, "shared_region",
                    json_pack("{s:I,s:s,s:I}", "koid", (json_int_t)s[i].shared_koid,
                              "discipline", iobctl__discipline_name(s[i].shared_discipline),
                              "tag", (json_int_t)s[i].shared_tag));
            }
            json_array_append_new(arr, o);
        }
        iobctl__print_json(arr);
        return 0;
    }
    printf("%-8s %-20s %7s %12s  %-26s %-26s\n", "KOID", "NAME", "REGIONS", "BYTES",
           "EP0 (handles/maps/signals)", "EP1 (handles/maps/signals)");
    for (size_t i = 0; i < n; i++) {
        printf("%-8" PRIu64 " %-20s %7" PRIu32 " %12" PRIu64 "  %3" PRIu32 "/%-3" PRIu32
               "/0x%08" PRIx32 "         %3" PRIu32 "/%-3" PRIu32 "/0x%08" PRIx32 "\n",
               s[i].koid, s[i].name[0] ? s[i].name : "-", s[i].region_count, s[i].total_bytes,
               s[i].endpoints[0].handles, s[i].endpoints[0].mappings, s[i].endpoints[0].signals,
               s[i].endpoints[1].handles, s[i].endpoints[1].mappings, s[i].endpoints[1].signals);
    }
    iobctl__print_shared(s, n);
    return 0;
}

static int cmd_create(iob_conn_t* c, const iobctl_args_t* a) {
    if (a->region_count == 0) {
        return iobctl__usage_error("create: at least one --region");
    }
    zx_iob_region_t regions[ZX_IOB_MAX_REGIONS];
    memcpy(regions, a->regions, a->region_count * sizeof regions[0]);
    for (size_t i = 0; i < a->region_count; i++) {
        if (g_shared_tokens[i] != NULL) {
            zx_status_t ist = iob_conn_handle_import(c, g_shared_tokens[i],
                                                     &regions[i].shared_region.shared_region);
            if (ist != ZX_OK) {
                return iobctl__fail("create: shared region token", ist, NULL);
            }
        }
    }
    zx_handle_t ep0, ep1;
    zx_status_t st = iob_conn_iob_create(c, 0, regions, a->region_count, &ep0, &ep1);
    if (st != ZX_OK) {
        return iobctl__fail("create", st, NULL);
    }
    if (a->name != NULL) {
        st = iob_conn_set_property(c, ep0, ZX_PROP_NAME, a->name, strlen(a->name));
        if (st != ZX_OK) {
            return iobctl__fail("create: name", st, NULL);
        }
    }
    zx_info_handle_basic_t hb;
    iob_conn_get_info(c, ep0, ZX_INFO_HANDLE_BASIC, &hb, sizeof hb, NULL, NULL);
    char t0[IOB_CONN_TOKEN_SIZE] = "", t1[IOB_CONN_TOKEN_SIZE] = "";
    if (a->export_tokens) {
        if ((st = iob_conn_handle_export(c, ep0, t0)) != ZX_OK ||
            (st = iob_conn_handle_export(c, ep1, t1)) != ZX_OK) {
            return iobctl__fail("create: export", st, NULL);
        }
    }
    if (g_json) {
        json_t* j = json_pack("{s:I,s:I}", "koid", (json_int_t)hb.koid, "regions",
                              (json_int_t)a->region_count);
        if (a->export_tokens) {
            json_object_set_new(j, "ep0_token", json_string(t0));
            json_object_set_new(j, "ep1_token", json_string(t1));
        }
        iobctl__print_json(j);
    } else if (a->export_tokens) {
        printf("koid %" PRIu64 "\nep0 %s\nep1 %s\n", hb.koid, t0, t1);
    } else {
        printf("koid %" PRIu64 " (handles close when iobctl exits; use --export to keep it)\n",
               hb.koid);
    }
    return 0;
}

/* One IOB's summary, as in `list`. */
static void iobctl__print_summary(const iob_conn_iob_summary_t* s) {
    if (g_json) {
        json_t* eps = json_array();
        for (int e = 0; e < 2; e++) {
            json_array_append_new(
                eps, json_pack("{s:I,s:I,s:I,s:I,s:b}", "koid", (json_int_t)s->endpoints[e].koid,
                               "handles", (json_int_t)s->endpoints[e].handles, "mappings",
                               (json_int_t)s->endpoints[e].mappings, "signals",
                               (json_int_t)s->endpoints[e].signals, "peer_closed",
                               (s->endpoints[e].signals & ZX_IOB_PEER_CLOSED) != 0));
        }
        json_t* o = json_pack("{s:I,s:s,s:I,s:I,s:o}", "koid", (json_int_t)s->koid, "name",
                              s->name, "regions", (json_int_t)s->region_count, "bytes",
                              (json_int_t)s->total_bytes, "endpoints", eps);
        if (s->shared_koid != 0) {
            json_object_set_new(o, "shared_region",
                                json_pack("{s:I,s:s,s:I}", "koid", (json_int_t)s->shared_koid,
                                          "discipline",
                                          iobctl__discipline_name(s->shared_discipline), "tag",
                                          (json_int_t)s->shared_tag));
        }
        iobctl__print_json(o);
        return;
    }
    printf("iob koid %" PRIu64 ", name \"%s\", %" PRIu32 " region(s), %" PRIu64 " bytes\n", s->koid,
           s->name, s->region_count, s->total_bytes);
    if (s->shared_koid != 0) {
        printf("on shared region koid %" PRIu64 ", discipline %s, tag %" PRIu64 "\n",
               s->shared_koid, iobctl__discipline_name(s->shared_discipline), s->shared_tag);
    }
    for (int e = 0; e < 2; e++) {
        const iob_conn_endpoint_summary_t* ep = &s->endpoints[e];
        printf("ep%d koid %" PRIu64 ": %" PRIu32 " handle(s), %" PRIu32 " mapping(s), signals 0x%08" PRIx32
               "%s\n",
               e, ep->koid, ep->handles, ep->mappings, ep->signals,
               (ep->signals & ZX_IOB_PEER_CLOSED) != 0 ? " (peer closed)" : "");
    }
}

/*
 * info --koid: the server's listing (ListIobs) filtered to one IOB. It needs no handle,
 * because ListIobs needs none: an operator sees what the server holds, but acting on an
 * IOB still takes a handle that its holder gives out (a token).
 */
static int cmd_info_koid(iob_conn_t* c, uint64_t koid) {
    static iob_conn_iob_summary_t s[4096];
    size_t n = 0;
    zx_status_t st = iob_conn_list(c, s, 4096, &n);
    if (st != ZX_OK) {
        return iobctl__fail("info", st, "listing the IOBs");
    }
    size_t have = n < 4096 ? n : 4096;
    for (size_t i = 0; i < have; i++) {
        if (s[i].koid == koid || s[i].endpoints[0].koid == koid || s[i].endpoints[1].koid == koid) {
            iobctl__print_summary(&s[i]);
            return 0;
        }
    }
    char what[96];
    snprintf(what, sizeof what, "no IOB with koid %" PRIu64 "%s", koid,
             have < n ? " in the first 4096 listed" : "");
    return iobctl__fail("info", ZX_ERR_NOT_FOUND, what);
}

static int cmd_info(iob_conn_t* c, const iobctl_args_t* a) {
    if (a->koid != 0) {
        return cmd_info_koid(c, a->koid);
    }
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st != ZX_OK) {
        return iobctl__fail("info", st, a->token ? "importing the token" : "--token or --handle");
    }
    zx_info_handle_basic_t hb;
    zx_iob_region_info_t ri[ZX_IOB_MAX_REGIONS];
    size_t n = 0, avail = 0;
    char name[ZX_MAX_NAME_LEN] = "";
    if ((st = iob_conn_get_info(c, h, ZX_INFO_HANDLE_BASIC, &hb, sizeof hb, NULL, NULL)) != ZX_OK ||
        (st = iob_conn_get_info(c, h, ZX_INFO_IOB_REGIONS, ri, sizeof ri, &n, &avail)) != ZX_OK) {
        return iobctl__fail("info", st, NULL);
    }
    iob_conn_get_property(c, h, ZX_PROP_NAME, name, sizeof name);
    zx_signals_t sig = 0;
    iob_conn_signals(c, h, &sig);
    if (g_json) {
        json_t* regs = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(regs, json_pack("{s:I,s:I,s:I,s:I}", "size",
                                                  (json_int_t)ri[i].region.size, "access",
                                                  (json_int_t)ri[i].region.access, "type",
                                                  (json_int_t)ri[i].region.type, "koid",
                                                  (json_int_t)ri[i].koid));
        }
        iobctl__print_json(json_pack("{s:I,s:I,s:I,s:s,s:I,s:o}", "koid", (json_int_t)hb.koid,
                                     "peer_koid", (json_int_t)hb.related_koid, "rights",
                                     (json_int_t)hb.rights, "name", name, "signals",
                                     (json_int_t)sig, "regions", regs));
        return 0;
    }
    printf("endpoint koid %" PRIu64 " (peer %" PRIu64 "), rights 0x%x, name \"%s\", signals 0x%08x\n",
           hb.koid, hb.related_koid, hb.rights, name, sig);
    printf("%-6s %-14s %-8s %s\n", "REGION", "SIZE", "ACCESS", "KOID");
    for (size_t i = 0; i < n; i++) {
        printf("%-6zu %-14" PRIu64 " 0x%02x     %" PRIu64 "\n", i, ri[i].region.size,
               ri[i].region.access, ri[i].koid);
    }
    return 0;
}

static int cmd_read(iob_conn_t* c, const iobctl_args_t* a) {
    if (!a->have_length) {
        return iobctl__usage_error("read: --length");
    }
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st != ZX_OK) {
        return iobctl__fail("read", st, NULL);
    }
    uint8_t* buf = malloc(a->length ? a->length : 1);
    if (buf == NULL) {
        return iobctl__fail("read", ZX_ERR_NO_MEMORY, NULL);
    }
    st = iob_conn_region_read(c, h, a->region, a->offset, buf, a->length);
    if (st != ZX_OK) {
        free(buf);
        return iobctl__fail("read", st, NULL);
    }
    FILE* f = a->out != NULL && strcmp(a->out, "-") != 0 ? fopen(a->out, "wb") : stdout;
    if (f == NULL || fwrite(buf, 1, a->length, f) != a->length) {
        fprintf(stderr, "iobctl: read: %s: %s\n", a->out ? a->out : "stdout", strerror(errno));
        free(buf);
        return EXIT_LOCAL_IO;
    }
    if (f != stdout) {
        fclose(f);
    }
    free(buf);
    return 0;
}

static int cmd_write(iob_conn_t* c, const iobctl_args_t* a) {
    FILE* f = a->in != NULL && strcmp(a->in, "-") != 0 ? fopen(a->in, "rb") : stdin;
    if (f == NULL) {
        fprintf(stderr, "iobctl: write: %s: %s\n", a->in, strerror(errno));
        return EXIT_LOCAL_IO;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t* buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            return iobctl__fail("write", ZX_ERR_NO_MEMORY, NULL);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    if (f != stdin) {
        fclose(f);
    }
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st == ZX_OK) {
        st = iob_conn_region_write(c, h, a->region, a->offset, buf, len);
    }
    free(buf);
    return st == ZX_OK ? 0 : iobctl__fail("write", st, NULL);
}

static int cmd_create_shared_region(iob_conn_t* c, const iobctl_args_t* a) {
    if (!a->have_size) {
        return iobctl__usage_error("create-shared-region: --size N");
    }
    zx_handle_t h;
    zx_status_t st = iob_conn_shared_region_create(c, 0, a->size, &h);
    if (st != ZX_OK) {
        return iobctl__fail("create-shared-region", st, NULL);
    }
    char token[IOB_CONN_TOKEN_SIZE] = "";
    if (a->export_tokens && (st = iob_conn_handle_export(c, h, token)) != ZX_OK) {
        return iobctl__fail("create-shared-region: export", st, NULL);
    }
    if (g_json) {
        iobctl__print_json(a->export_tokens ? json_pack("{s:s}", "token", token)
                                            : json_pack("{s:I}", "handle", (json_int_t)h));
    } else if (a->export_tokens) {
        printf("shared %s\n", token);
    } else {
        printf("handle %u (closes when iobctl exits; use --export to keep it)\n", (unsigned)h);
    }
    return 0;
}

/* One record into a MEDIATED_WRITE_RING_BUFFER region (over gRPC: iobctl does not map). */
static int cmd_writev(iob_conn_t* c, const iobctl_args_t* a) {
    FILE* f = a->in != NULL && strcmp(a->in, "-") != 0 ? fopen(a->in, "rb") : stdin;
    if (f == NULL) {
        fprintf(stderr, "iobctl: writev: %s: %s\n", a->in, strerror(errno));
        return EXIT_LOCAL_IO;
    }
    /* One byte more than a record holds: a longer input is refused by iobd (A.6 step 8). */
    static uint8_t buf[65520];
    size_t len = fread(buf, 1, sizeof buf, f);
    if (f != stdin) {
        fclose(f);
    }
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st == ZX_OK) {
        iob_conn_writev_vec_t v = {.capacity = len, .readable = len < sizeof buf};
        st = iob_conn_iob_writev(c, h, 0, a->region, 1, false, &v, v.readable ? buf : NULL,
                                 v.readable ? len : 0);
    }
    return st == ZX_OK ? 0 : iobctl__fail("writev", st, NULL);
}

static int cmd_signal(iob_conn_t* c, const iobctl_args_t* a) {
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st == ZX_OK) {
        st = a->peer ? iob_conn_object_signal_peer(c, h, a->clear, a->set)
                     : iob_conn_object_signal(c, h, a->clear, a->set);
    }
    return st == ZX_OK ? 0 : iobctl__fail("signal", st, NULL);
}

static int cmd_watch(iob_conn_t* c, const iobctl_args_t* a) {
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st != ZX_OK) {
        return iobctl__fail("watch", st, NULL);
    }
    zx_signals_t want = a->signals ? a->signals : 0xffffffffu;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    zx_time_t deadline = a->timeout_ms < 0 ? ZX_TIME_INFINITE
                                           : (zx_time_t)ts.tv_sec * 1000000000 + ts.tv_nsec +
                                                 (zx_time_t)a->timeout_ms * 1000000;
    zx_signals_t obs = 0;
    st = iob_conn_wait_one(c, h, want, deadline, &obs);
    if (g_json) {
        iobctl__print_json(json_pack("{s:s,s:I}", "status", zx_status_get_string(st), "observed",
                                     (json_int_t)obs));
    } else {
        printf("%s observed 0x%08x\n", zx_status_get_string(st), obs);
    }
    return st == ZX_OK ? 0 : iobctl__exit_code(st);
}

static int cmd_close(iob_conn_t* c, const iobctl_args_t* a) {
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st == ZX_OK) {
        st = iob_conn_handle_close(c, h);
    }
    return st == ZX_OK ? 0 : iobctl__fail("close", st, NULL);
}

static bool iobctl__u32(const char* t, uint32_t* out) {
    char* end = NULL;
    errno = 0;
    unsigned long v = strtoul(t, &end, 0);
    if (errno != 0 || *end != '\0' || v > UINT32_MAX) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/*
 * Options may come before or after the command word (getopt permutes). -1 when the command
 * is to run, else the exit code (help printed, or a usage error reported). Long because it
 * is one case per option: a flat switch says what each option does where it is parsed.
 */
static int iobctl__parse(int argc, char** argv, iob_conn_options_t* o, iobctl_args_t* a,
                         const char** cmd, char* bearer, size_t bearer_size) {
    enum { O_SERVER = 256, O_CA, O_CERT, O_KEY, O_TOKFILE, O_INSECURE, O_JSON, O_TIMEOUT,
           O_TOKEN, O_HANDLE, O_REGION, O_OFFSET, O_LENGTH, O_IN, O_OUT, O_SET, O_CLEAR,
           O_PEER, O_SIGNALS, O_WTIMEOUT, O_NAME, O_EXPORT, O_KOID, O_SIZE, O_HELP };
    static const struct option opts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"tls-ca", required_argument, NULL, O_CA},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"token-file", required_argument, NULL, O_TOKFILE},
        {"insecure", no_argument, NULL, O_INSECURE},
        {"json", no_argument, NULL, O_JSON},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"token", required_argument, NULL, O_TOKEN},
        {"handle", required_argument, NULL, O_HANDLE},
        {"region", required_argument, NULL, O_REGION},
        {"offset", required_argument, NULL, O_OFFSET},
        {"length", required_argument, NULL, O_LENGTH},
        {"in", required_argument, NULL, O_IN},
        {"out", required_argument, NULL, O_OUT},
        {"set", required_argument, NULL, O_SET},
        {"clear", required_argument, NULL, O_CLEAR},
        {"peer", no_argument, NULL, O_PEER},
        {"signals", required_argument, NULL, O_SIGNALS},
        {"timeout-ms", required_argument, NULL, O_WTIMEOUT},
        {"name", required_argument, NULL, O_NAME},
        {"export", no_argument, NULL, O_EXPORT},
        {"koid", required_argument, NULL, O_KOID},
        {"size", required_argument, NULL, O_SIZE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "-", opts, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case 1:
            if (*cmd != NULL) {
                return iobctl__usage_error("one command at a time");
            }
            *cmd = optarg;
            break;
        case O_SERVER:
            o->target = optarg;
            break;
        case O_CA:
            o->tls_ca_file = optarg;
            break;
        case O_CERT:
            o->tls_cert_file = optarg;
            break;
        case O_KEY:
            o->tls_key_file = optarg;
            break;
        case O_TOKFILE: {
            FILE* f = fopen(optarg, "r");
            if (f == NULL || fgets(bearer, (int)bearer_size, f) == NULL) {
                fprintf(stderr, "iobctl: cannot read %s\n", optarg);
                return EXIT_LOCAL_IO;
            }
            fclose(f);
            bearer[strcspn(bearer, "\r\n")] = '\0';
            o->token = bearer;
            break;
        }
        case O_INSECURE:
            o->insecure = true;
            break;
        case O_JSON:
            g_json = true;
            break;
        case O_TIMEOUT:
            o->timeout_ms = atoi(optarg);
            break;
        case O_TOKEN:
            a->token = optarg;
            break;
        case O_HANDLE:
            a->handle = strtoll(optarg, NULL, 0);
            break;
        case O_REGION:
            if (*cmd != NULL && strcmp(*cmd, "create") == 0) {
                ok = a->region_count < ZX_IOB_MAX_REGIONS &&
                     iobctl__parse_region(optarg, &a->regions[a->region_count], a->region_count);
                a->region_count++;
            } else {
                ok = iobctl__u32(optarg, &a->region);
            }
            break;
        case O_OFFSET:
            ok = iobctl__parse_size(optarg, &a->offset);
            break;
        case O_LENGTH:
            ok = iobctl__parse_size(optarg, &a->length);
            a->have_length = ok;
            break;
        case O_IN:
            a->in = optarg;
            break;
        case O_OUT:
            a->out = optarg;
            break;
        case O_SET:
            ok = iobctl__u32(optarg, &a->set);
            break;
        case O_CLEAR:
            ok = iobctl__u32(optarg, &a->clear);
            break;
        case O_PEER:
            a->peer = true;
            break;
        case O_SIGNALS:
            ok = iobctl__u32(optarg, &a->signals);
            break;
        case O_WTIMEOUT:
            a->timeout_ms = strtoll(optarg, NULL, 0);
            break;
        case O_NAME:
            a->name = optarg;
            break;
        case O_EXPORT:
            a->export_tokens = true;
            break;
        case O_KOID: {
            char* end = NULL;
            errno = 0;
            unsigned long long k = strtoull(optarg, &end, 0);
            ok = errno == 0 && end != optarg && *end == '\0' && k != 0;
            a->koid = k;
            break;
        }
        case O_SIZE:
            ok = iobctl__parse_size(optarg, &a->size);
            a->have_size = ok;
            break;
        case O_HELP:
            fputs(iobctl__usage, stdout);
            return 0; /* done: help asked for */
        default:
            return iobctl__usage_error("unknown option");
        }
        if (!ok) {
            char m[300];
            snprintf(m, sizeof m, "bad value \"%s\"", optarg ? optarg : "");
            return iobctl__usage_error(m);
        }
    }
    return -1;
}

typedef int (*iobctl_cmd_fn)(iob_conn_t* c, const iobctl_args_t* a);

static int cmd_server_info_a(iob_conn_t* c, const iobctl_args_t* a) {
    (void)a;
    return cmd_server_info(c);
}

static int cmd_list_a(iob_conn_t* c, const iobctl_args_t* a) {
    (void)a;
    return cmd_list(c);
}

/* The commands that talk to iobd's gRPC service (top reads the metrics endpoint). */
static const struct {
    const char* name;
    iobctl_cmd_fn run;
} iobctl__commands[] = {
    {"server-info", cmd_server_info_a},
    {"list", cmd_list_a},
    {"create", cmd_create},
    {"info", cmd_info},
    {"read", cmd_read},
    {"write", cmd_write},
    {"signal", cmd_signal},
    {"watch", cmd_watch},
    {"close", cmd_close},
    {"create-shared-region", cmd_create_shared_region},
    {"writev", cmd_writev},
};

int main(int argc, char** argv) {
    /* top reads the metrics endpoint, not the gRPC service: its own options. */
    if (argc >= 2 && strcmp(argv[1], "top") == 0) {
        return iobctl_top(argc - 1, argv + 1);
    }
    iob_conn_options_t o;
    memset(&o, 0, sizeof o);
    iobctl_args_t a;
    memset(&a, 0, sizeof a);
    a.timeout_ms = -1;
    const char* cmd = NULL;
    char bearer[512];
    int done = iobctl__parse(argc, argv, &o, &a, &cmd, bearer, sizeof bearer);
    if (done >= 0) {
        return done;
    }
    if (cmd == NULL) {
        return iobctl__usage_error("no command");
    }
    iobctl_cmd_fn run = NULL;
    for (size_t i = 0; i < sizeof iobctl__commands / sizeof iobctl__commands[0]; i++) {
        if (strcmp(cmd, iobctl__commands[i].name) == 0) {
            run = iobctl__commands[i].run;
        }
    }
    if (run == NULL) {
        return iobctl__usage_error("unknown command");
    }
    if (a.koid != 0 && strcmp(cmd, "info") != 0) {
        /* A koid names an IOB, not a handle: nothing but the listing can act on it. */
        return iobctl__usage_error("--koid works with info only (other commands need a handle: "
                                   "a token from the IOB's holder)");
    }
    if (a.koid != 0 && (a.token != NULL || a.handle > 0)) {
        return iobctl__usage_error("info: --koid or --token/--handle, not both");
    }
    signal(SIGPIPE, SIG_IGN);
    iob_conn_t* c = NULL;
    zx_status_t st = iob_conn_open(&o, &c);
    if (st != ZX_OK) {
        char what[300];
        snprintf(what, sizeof what, "connecting to %s",
                 o.target ? o.target
                          : (getenv("IOB_SERVER") ? getenv("IOB_SERVER")
                                                  : "unix:" IOB_DEFAULT_SOCKET_PATH));
        return iobctl__fail(cmd, st, what);
    }
    int rc = run(c, &a);
    iob_conn_close(c);
    for (size_t i = 0; i < ZX_IOB_MAX_REGIONS; i++) {
        free(g_shared_tokens[i]);
    }
    return rc;
}
