/* SPDX-License-Identifier: MIT */
/*
 * iobctl top: a live view of one iobd, read from its Prometheus endpoint (iobd --metrics).
 *
 * The endpoint, not ServerInfo, is the source: it already has every figure the view shows
 * (call counters by method, per-shared-region record counters) and they are the same
 * numbers a monitoring stack scrapes, so the two never disagree; iobctl needs no gRPC
 * session, and iobd no second copy of the counters in its protocol. Rates are differences
 * of two scrapes over the time between them, so even --once and --json sample twice,
 * --interval apart.
 *
 * The reply is parsed as untrusted text: bounded size, lines that do not parse are skipped.
 */
#include "client/iobctl/top.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "proto/wire.h"

#define TOP_MAX_REPLY (16u << 20)
#define TOP_IO_TIMEOUT_MS 5000
#define TOP_MAX_ROWS 64
#define TOP_SHOW_REGIONS 10

/* One labelled counter row: a method or a shared region. */
typedef struct top_row {
    char key[64];
    double total, errors, bytes, no_space;
} top_row_t;

typedef struct top_sample {
    double t; /* CLOCK_MONOTONIC seconds */
    double iobs, regions, shared_regions, bytes, sessions, handles, tokens, mappings, budget;
    char backing[64];
    top_row_t rpc[TOP_MAX_ROWS], broker[TOP_MAX_ROWS], shared[TOP_MAX_ROWS];
    size_t rpc_n, broker_n, shared_n;
} top_sample_t;

static volatile sig_atomic_t top__stop;

static void top__on_signal(int sig) {
    (void)sig;
    top__stop = 1;
}

static double top__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* GET /metrics; the body, NUL-terminated, or NULL with *why set. */
static char* top__fetch(const char* addr, const char** why) {
    char host[256], port[16];
    if (!iob_wire_split_host_port(addr, host, sizeof host, port, sizeof port)) {
        *why = "expected HOST:PORT";
        return NULL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo* ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
        *why = "cannot resolve the address";
        return NULL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        *why = "cannot connect (is iobd running with --metrics?)";
        freeaddrinfo(ai);
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    freeaddrinfo(ai);
    struct timeval tv = {.tv_sec = TOP_IO_TIMEOUT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* iobd's bearer token, where it asks for one: $IOB_TOKEN, as for the gRPC calls. */
    const char* token = getenv("IOB_TOKEN");
    char auth[300] = "";
    if (token != NULL && token[0] != '\0' && strlen(token) < 256) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    }
    char req[800];
    int n = snprintf(req, sizeof req,
                     "GET /metrics HTTP/1.0\r\nHost: %s\r\nAccept: text/plain\r\n%s\r\n", host,
                     auth);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        *why = "cannot send the request";
        close(fd);
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char* buf = malloc(cap);
    while (buf != NULL) {
        if (len + 1 == cap) {
            char* bigger = cap >= TOP_MAX_REPLY ? NULL : realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r == 0) {
            break;
        }
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            free(buf);
            buf = NULL;
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    if (buf == NULL) {
        *why = "no complete reply";
        return NULL;
    }
    buf[len] = '\0';
    char* body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || strlen(buf) < 12 || strncmp(buf + 9, "200", 3) != 0 ||
        body == NULL) {
        *why = "the server did not answer 200 OK";
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

/* The value of label `key` in `labels` ("a=\"x\",b=\"y\""), or "" when absent. */
static void top__label(const char* labels, const char* key, char* out, size_t size) {
    out[0] = '\0';
    size_t klen = strlen(key);
    for (const char* p = labels; p != NULL && *p != '\0';) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=' && p[klen + 1] == '"') {
            const char* v = p + klen + 2;
            const char* end = strchr(v, '"');
            size_t n = end != NULL ? (size_t)(end - v) : strlen(v);
            if (n >= size) {
                n = size - 1;
            }
            memcpy(out, v, n);
            out[n] = '\0';
            return;
        }
        p = strchr(p, ',');
        p = p != NULL ? p + 1 : NULL;
    }
}

static top_row_t* top__row(top_row_t* rows, size_t* n, const char* key) {
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(rows[i].key, key) == 0) {
            return &rows[i];
        }
    }
    if (*n == TOP_MAX_ROWS) {
        return NULL;
    }
    top_row_t* r = &rows[(*n)++];
    memset(r, 0, sizeof *r);
    snprintf(r->key, sizeof r->key, "%s", key);
    return r;
}

/* Parses one exposition into s; lines that do not parse are skipped. */
static void top__parse(char* text, top_sample_t* s) {
    for (char* line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        char name[128];
        size_t nlen = strcspn(line, "{ ");
        if (nlen == 0 || nlen >= sizeof name) {
            continue;
        }
        memcpy(name, line, nlen);
        name[nlen] = '\0';
        char labels[512] = "";
        const char* rest = line + nlen;
        if (*rest == '{') {
            const char* close = strchr(rest, '}');
            if (close == NULL || (size_t)(close - rest - 1) >= sizeof labels) {
                continue;
            }
            memcpy(labels, rest + 1, (size_t)(close - rest - 1));
            labels[close - rest - 1] = '\0';
            rest = close + 1;
        }
        char* end = NULL;
        double v = strtod(rest, &end);
        if (end == rest) {
            continue;
        }
        char a[64], b[64];
        if (strcmp(name, "iob_iobs") == 0) {
            s->iobs = v;
        } else if (strcmp(name, "iob_regions") == 0) {
            s->regions = v;
        } else if (strcmp(name, "iob_shared_regions") == 0) {
            s->shared_regions = v;
        } else if (strcmp(name, "iob_bytes_in_use") == 0) {
            s->bytes += v;
            top__label(labels, "backing", a, sizeof a);
            if (v > 0 || s->backing[0] == '\0') {
                snprintf(s->backing, sizeof s->backing, "%s", a);
            }
        } else if (strcmp(name, "iob_sessions") == 0) {
            s->sessions = v;
        } else if (strcmp(name, "iob_handles") == 0) {
            s->handles = v;
        } else if (strcmp(name, "iob_tokens") == 0) {
            s->tokens = v;
        } else if (strcmp(name, "iob_mappings") == 0) {
            s->mappings = v;
        } else if (strcmp(name, "iob_budget_limit") == 0) {
            top__label(labels, "scope", a, sizeof a);
            top__label(labels, "resource", b, sizeof b);
            if (strcmp(a, "server") == 0 && strcmp(b, "bytes") == 0) {
                s->budget = v;
            }
        } else if (strcmp(name, "iob_rpc_calls_total") == 0 ||
                   strcmp(name, "iob_broker_requests_total") == 0) {
            bool rpc = name[4] == 'r';
            top__label(labels, "method", a, sizeof a);
            top__label(labels, "status", b, sizeof b);
            top_row_t* r =
                rpc ? top__row(s->rpc, &s->rpc_n, a) : top__row(s->broker, &s->broker_n, a);
            if (r != NULL) {
                r->total += v;
                r->errors += strcmp(b, "ZX_OK") != 0 ? v : 0;
            }
        } else if (strncmp(name, "iob_mediated_", 13) == 0) {
            top__label(labels, "shared_region", a, sizeof a);
            top_row_t* r = top__row(s->shared, &s->shared_n, a);
            if (r == NULL) {
                continue;
            }
            if (strcmp(name, "iob_mediated_records_total") == 0) {
                r->total = v;
            } else if (strcmp(name, "iob_mediated_bytes_total") == 0) {
                r->bytes = v;
            } else if (strcmp(name, "iob_mediated_no_space_total") == 0) {
                r->no_space = v;
            }
        }
    }
}

static bool top__sample(const char* addr, top_sample_t* s, const char** why) {
    char* body = top__fetch(addr, why);
    if (body == NULL) {
        return false;
    }
    memset(s, 0, sizeof *s);
    s->t = top__now();
    top__parse(body, s);
    free(body);
    return true;
}

/* A row of `now` with its rate since `before` (a row new since then counts from 0). */
typedef struct top_rate {
    const top_row_t* row;
    double rate, bytes_rate;
} top_rate_t;

static int top__by_rate(const void* a, const void* b) {
    const top_rate_t* x = a;
    const top_rate_t* y = b;
    if (x->rate != y->rate) {
        return x->rate < y->rate ? 1 : -1;
    }
    if (x->row->total != y->row->total) {
        return x->row->total < y->row->total ? 1 : -1;
    }
    return strcmp(x->row->key, y->row->key);
}

static size_t top__rates(const top_row_t* now, size_t n, const top_row_t* before, size_t bn,
                         double dt, top_rate_t* out) {
    for (size_t i = 0; i < n; i++) {
        double prev = 0, prev_bytes = 0;
        for (size_t j = 0; j < bn; j++) {
            if (strcmp(before[j].key, now[i].key) == 0) {
                prev = before[j].total;
                prev_bytes = before[j].bytes;
            }
        }
        out[i].row = &now[i];
        /* A counter that went down was reset (a freed region's slot reused): count anew. */
        double d = now[i].total >= prev ? now[i].total - prev : now[i].total;
        double db = now[i].bytes >= prev_bytes ? now[i].bytes - prev_bytes : now[i].bytes;
        out[i].rate = dt > 0 ? d / dt : 0;
        out[i].bytes_rate = dt > 0 ? db / dt : 0;
    }
    qsort(out, n, sizeof *out, top__by_rate);
    return n;
}

static void top__human(double v, char* buf, size_t size) {
    static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, size, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static void top__print_screen(FILE* f, const char* addr, const top_sample_t* a,
                              const top_sample_t* b, double interval) {
    double dt = b->t - a->t;
    char bytes[32], budget[32];
    top__human(b->bytes, bytes, sizeof bytes);
    if (isinf(b->budget)) {
        snprintf(budget, sizeof budget, "unlimited");
    } else {
        top__human(b->budget, budget, sizeof budget);
    }
    fprintf(f, "iobctl top - http://%s/metrics - every %.1f s - q quits\n", addr, interval);
    fprintf(f, "IOBs %.0f   regions %.0f   shared regions %.0f   bytes %s (%s pages) of %s\n",
            b->iobs, b->regions, b->shared_regions, bytes, b->backing, budget);
    fprintf(f, "sessions %.0f   handles %.0f   tokens %.0f   mappings %.0f\n\n", b->sessions,
            b->handles, b->tokens, b->mappings);
    top_rate_t rates[TOP_MAX_ROWS];
    const char* titles[2] = {"RPC METHOD", "BROKER REQUEST"};
    const top_row_t* rows[2][2] = {{b->rpc, a->rpc}, {b->broker, a->broker}};
    size_t counts[2][2] = {{b->rpc_n, a->rpc_n}, {b->broker_n, a->broker_n}};
    for (int k = 0; k < 2; k++) {
        size_t n = top__rates(rows[k][0], counts[k][0], rows[k][1], counts[k][1], dt, rates);
        fprintf(f, "%-22s %10s %12s %10s\n", titles[k], "CALLS/S", "TOTAL", "ERRORS");
        for (size_t i = 0; i < n; i++) {
            fprintf(f, "%-22s %10.1f %12.0f %10.0f\n", rates[i].row->key, rates[i].rate,
                    rates[i].row->total, rates[i].row->errors);
        }
        fputc('\n', f);
    }
    size_t n = top__rates(b->shared, b->shared_n, a->shared, a->shared_n, dt, rates);
    fprintf(f, "%-22s %10s %12s %12s %10s\n", "SHARED REGION", "RECORDS/S", "BYTES/S", "RECORDS",
            "NO_SPACE");
    for (size_t i = 0; i < n && i < TOP_SHOW_REGIONS; i++) {
        char br[32];
        top__human(rates[i].bytes_rate, br, sizeof br);
        fprintf(f, "%-22s %10.1f %12s %12.0f %10.0f\n", rates[i].row->key, rates[i].rate, br,
                rates[i].row->total, rates[i].row->no_space);
    }
}

static json_t* top__json_rows(const top_row_t* now, size_t n, const top_row_t* before, size_t bn,
                              double dt, bool regions) {
    top_rate_t rates[TOP_MAX_ROWS];
    top__rates(now, n, before, bn, dt, rates);
    json_t* arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const top_row_t* r = rates[i].row;
        json_t* o =
            regions ? json_pack("{s:s, s:f, s:f, s:f, s:f, s:f}", "shared_region", r->key,
                                "records_per_s", rates[i].rate, "bytes_per_s", rates[i].bytes_rate,
                                "records", r->total, "bytes", r->bytes, "no_space", r->no_space)
                    : json_pack("{s:s, s:f, s:f, s:f}", "method", r->key, "calls_per_s",
                                rates[i].rate, "total", r->total, "errors", r->errors);
        json_array_append_new(arr, o);
    }
    return arr;
}

static void top__print_json(const char* addr, const top_sample_t* a, const top_sample_t* b) {
    double dt = b->t - a->t;
    json_t* o =
        json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:s, s:f, s:f, s:f, s:f}", "endpoint", addr,
                  "interval_s", dt, "iobs", b->iobs, "regions", b->regions, "shared_regions",
                  b->shared_regions, "bytes_in_use", b->bytes, "backing", b->backing, "sessions",
                  b->sessions, "handles", b->handles, "tokens", b->tokens, "mappings", b->mappings);
    json_object_set_new(o, "rpc", top__json_rows(b->rpc, b->rpc_n, a->rpc, a->rpc_n, dt, false));
    json_object_set_new(o, "broker",
                        top__json_rows(b->broker, b->broker_n, a->broker, a->broker_n, dt, false));
    json_object_set_new(o, "mediated",
                        top__json_rows(b->shared, b->shared_n, a->shared, a->shared_n, dt, true));
    char* text = json_dumps(o, JSON_INDENT(2));
    if (text != NULL) {
        puts(text);
        free(text);
    }
    json_decref(o);
}

static const char top__usage[] =
    "usage: iobctl top [--metrics HOST:PORT] [--interval SECONDS] [--once | --json]\n"
    "  a live view of iobd from its Prometheus endpoint (iobd --metrics HOST:PORT);\n"
    "  --metrics defaults to $IOB_METRICS, else 127.0.0.1:9464. q quits.\n"
    "  --once   one screen (two samples --interval apart, for the rates), then exit\n"
    "  --json   the same as one JSON object\n";

int iobctl_top(int argc, char** argv) {
    const char* addr = getenv("IOB_METRICS") != NULL ? getenv("IOB_METRICS") : "127.0.0.1:9464";
    double interval = 1.0;
    bool once = false, json = false;
    static const struct option opts[] = {
        {"metrics", required_argument, NULL, 'm'}, {"interval", required_argument, NULL, 'i'},
        {"once", no_argument, NULL, 'o'},          {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char* end = NULL;
        switch (opt) {
            case 'm':
                addr = optarg;
                break;
            case 'i':
                interval = strtod(optarg, &end);
                if (end == optarg || *end != '\0' || !(interval >= 0.1 && interval <= 3600)) {
                    fprintf(stderr, "iobctl: top: --interval: 0.1 to 3600 seconds\n");
                    return 1;
                }
                break;
            case 'o':
                once = true;
                break;
            case 'j':
                json = true;
                break;
            case 'h':
                fputs(top__usage, stdout);
                return 0;
            default:
                fputs(top__usage, stderr);
                return 1;
        }
    }
    if (optind < argc) {
        fputs(top__usage, stderr);
        return 1;
    }
    static top_sample_t samples[2];
    const char* why = NULL;
    if (!top__sample(addr, &samples[0], &why)) {
        fprintf(stderr, "iobctl: top: %s: %s\n", addr, why);
        return 2;
    }
    if (once || json) {
        struct timespec d = {.tv_sec = (time_t)interval,
                             .tv_nsec = (long)((interval - (double)(time_t)interval) * 1e9)};
        nanosleep(&d, NULL);
        if (!top__sample(addr, &samples[1], &why)) {
            fprintf(stderr, "iobctl: top: %s: %s\n", addr, why);
            return 2;
        }
        if (json) {
            top__print_json(addr, &samples[0], &samples[1]);
        } else {
            top__print_screen(stdout, addr, &samples[0], &samples[1], interval);
        }
        return 0;
    }
    /* Interactive: keys without Enter, restored on every way out. */
    struct termios saved;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        struct termios raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = top__on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = 0;
    int cur = 0;
    double next = samples[0].t + interval;
    while (!top__stop) {
        double wait = next - top__now();
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&p, 1, wait > 0 ? (int)(wait * 1000) : 0);
        if (r > 0) {
            char c = 0;
            ssize_t got = read(STDIN_FILENO, &c, 1);
            if (got == 0 || c == 'q' || c == 'Q') {
                break; /* q, or stdin closed */
            }
            continue;
        }
        if (top__now() < next) {
            continue;
        }
        next += interval;
        int other = 1 - cur;
        if (!top__sample(addr, &samples[other], &why)) {
            fprintf(stderr, "iobctl: top: %s: %s\n", addr, why);
            rc = 2;
            break;
        }
        fputs("\033[H\033[2J", stdout);
        top__print_screen(stdout, addr, &samples[cur], &samples[other], interval);
        fflush(stdout);
        cur = other;
    }
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    }
    return rc;
}
