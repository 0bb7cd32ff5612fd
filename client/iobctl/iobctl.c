/* SPDX-License-Identifier: MIT */
/*
 * iobctl: the operator's CLI for iobd, over iob_conn: its command line and main. The
 * commands are in iobctl_show.c (server-info, list, info) and iobctl_io.c (the rest), the
 * live view in top.c.
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

#include "client/iobctl/iobctl.h"
#include "client/iobctl/top.h"
#include "client/rpc/iob_conn.h"
#include "client/status_text.h"
#include "proto/wire.h"

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

bool iobctl__json;

int iobctl__exit_code(zx_status_t st) {
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

int iobctl__fail(const char* cmd, zx_status_t st, const char* what) {
    fprintf(stderr, "iobctl: %s: %s: %s%s%s\n", cmd, zx_status_get_string(st),
            iob_status_message(st), what ? ": " : "", what ? what : "");
    return iobctl__exit_code(st);
}

int iobctl__usage_error(const char* msg) {
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


/* "size=1M,access=ep0:rw,ep1:r[,type=shared,shared=TOKEN,discipline=ring|id,tag=T]". */
static bool iobctl__parse_region(const char* spec, zx_iob_region_t* r, char** shared_token) {
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
            free(*shared_token);
            *shared_token = strdup(tok + 7);
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


zx_status_t iobctl__target(iob_conn_t* c, const iobctl_args_t* a, zx_handle_t* h) {
    if (a->token != NULL) {
        return iob_conn_handle_import(c, a->token, h);
    }
    if (a->handle > 0) {
        *h = (zx_handle_t)a->handle;
        return ZX_OK;
    }
    return ZX_ERR_INVALID_ARGS;
}


void iobctl__print_json(json_t* j) {
    char* s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s != NULL) {
        puts(s);
        free(s);
    }
    json_decref(j);
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
            iobctl__json = true;
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
                     iobctl__parse_region(optarg, &a->regions[a->region_count],
                                          &a->shared_tokens[a->region_count]);
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

/* The commands that talk to iobd's gRPC service (top reads the metrics endpoint). */
static const struct {
    const char* name;
    iobctl_cmd_fn run;
} iobctl__commands[] = {
    {"server-info", cmd_server_info},
    {"list", cmd_list},
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
        free(a.shared_tokens[i]);
    }
    return rc;
}
