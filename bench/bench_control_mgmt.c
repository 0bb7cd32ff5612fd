/* SPDX-License-Identifier: MIT */
/*
 * The management-plane client (issue 3): one process, one iob_conn connection (its own
 * session), driven by the orchestrator's requests:
 *
 *   lat BLOCKS ITERS   single-client latencies. The operations are interleaved in blocks of
 *                      ITERS each (unary GetSignals, GetInfo, ServerInfo, create+close), so
 *                      that noise from the rest of the machine lands on all of them alike.
 *   tput OP START DUR  throughput: from CLOCK_MONOTONIC START (ns) for DUR ns, back to back.
 *                      OP is "unary" (GetSignals) or "cc" (one create+close).
 *   scale ITERS        one block of the scale figures (--scale): ITERS create+close pairs,
 *                      then ITERS export+import of a fresh IOB's ep1. Replies with the
 *                      block's statistics ("bcc", "bimp", "bexp") and those of every block
 *                      so far ("cc", "imp", "exp"): the orchestrator pairs blocks of different
 *                      servers round by round and also compares the pooled medians.
 *   scale-warm ITERS   the same, then every series is emptied (a warm-up block).
 *   hold N             creates N one-page IOBs in this session and keeps them (until quit).
 *   info               iobd's ServerInfo counters (the load test's start and end states),
 *                      and "koid": the koid of a fresh IOB's ep0, which iobd takes from one
 *                      counter (3 per one-region IOB), so the difference of two probes
 *                      counts every IOB created between them.
 *   quit
 *
 * "create+close" of issue 3 is literal: IOB create, then both endpoints closed. Both are
 * closed with one CloseHandles call (iob_conn_handle_close_many, what zx_handle_close_many
 * uses), so a pair is two calls: CreateIob + CloseHandles([ep0, ep1]). The series keep
 * their names: "close0" and "close1" both report that one CloseHandles call (it closes
 * ep0 and ep1), and "cc" is create + CloseHandles.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zircon/status.h>

#include "bench/bench_control.h"
#include "client/rpc/iob_conn.h"

typedef struct mgmt {
    iob_conn_t* conn;
    uint64_t page_size;
    zx_handle_t probe;      /* ep0 of an IOB kept for the whole run: the unary calls' target */
    zx_handle_t probe_peer;
    char error[200];
} mgmt_t;

static void mgmt_region(const mgmt_t* m, zx_iob_region_t* r) {
    memset(r, 0, sizeof *r);
    r->type = ZX_IOB_REGION_TYPE_PRIVATE;
    r->access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                ZX_IOB_ACCESS_EP1_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE;
    r->size = m->page_size; /* one page: 4 KiB, or one 2 MiB page on a hugepage iobd */
    r->discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
}

static bool fail(mgmt_t* m, const char* what, zx_status_t st) {
    snprintf(m->error, sizeof m->error, "%s: %s", what, zx_status_get_string(st));
    return false;
}

static bool op_unary(mgmt_t* m) {
    zx_signals_t sig;
    zx_status_t st = iob_conn_signals(m->conn, m->probe, &sig);
    return st == ZX_OK || fail(m, "GetSignals", st);
}

static bool op_getinfo(mgmt_t* m) {
    zx_info_handle_basic_t info;
    zx_status_t st = iob_conn_get_info(m->conn, m->probe, ZX_INFO_HANDLE_BASIC, &info,
                                       sizeof info, NULL, NULL);
    return st == ZX_OK || fail(m, "GetInfo", st);
}

static bool op_serverinfo(mgmt_t* m) {
    iob_conn_server_info_t info;
    zx_status_t st = iob_conn_server_info(m->conn, &info);
    return st == ZX_OK || fail(m, "ServerInfo", st);
}

/* One create+close; t[0..2] get the three calls' durations (ns) when t is not NULL. */
static bool op_create_close(mgmt_t* m, double* t) {
    zx_iob_region_t r;
    mgmt_region(m, &r);
    zx_handle_t ep0 = ZX_HANDLE_INVALID;
    zx_handle_t ep1 = ZX_HANDLE_INVALID;
    int64_t t0 = bctl_now_ns();
    zx_status_t st = iob_conn_iob_create(m->conn, 0, &r, 1, &ep0, &ep1);
    int64_t t1 = bctl_now_ns();
    if (st != ZX_OK) {
        return fail(m, "CreateIob", st);
    }
    const zx_handle_t both[2] = {ep0, ep1};
    st = iob_conn_handle_close_many(m->conn, both, 2);
    int64_t t2 = bctl_now_ns();
    if (st != ZX_OK) {
        return fail(m, "CloseHandles", st);
    }
    int64_t t3 = t2 + (t2 - t1); /* close1: the same call, reported once more */
    if (t != NULL) {
        t[0] = (double)(t1 - t0);
        t[1] = (double)(t2 - t1);
        t[2] = (double)(t3 - t2);
    }
    return true;
}

enum { S_UNARY, S_GETINFO, S_SERVERINFO, S_CREATE, S_CLOSE0, S_CLOSE1, S_CC, S_CC2, S_COUNT };
static const char* const k_series[S_COUNT] = {"unary", "getinfo", "serverinfo", "create",
                                               "close0", "close1", "cc", "cc2"};

static bool run_latency(mgmt_t* m, int blocks, int iters, char* reply, size_t len) {
    size_t cap = (size_t)blocks * (size_t)iters;
    double* s[S_COUNT];
    bool ok = true;
    for (int i = 0; i < S_COUNT; i++) {
        s[i] = calloc(cap, sizeof(double));
        ok = ok && s[i] != NULL;
    }
    size_t k = 0;
    /* Warm-up: connection, server allocations and caches, outside the samples. */
    for (int i = 0; ok && i < 20; i++) {
        ok = op_unary(m) && op_getinfo(m) && op_serverinfo(m) && op_create_close(m, NULL);
    }
    for (int b = 0; ok && b < blocks; b++) {
        size_t base = k;
        for (int i = 0; ok && i < iters; i++) {
            int64_t t0 = bctl_now_ns();
            ok = op_unary(m);
            s[S_UNARY][base + (size_t)i] = (double)(bctl_now_ns() - t0);
        }
        for (int i = 0; ok && i < iters; i++) {
            int64_t t0 = bctl_now_ns();
            ok = op_getinfo(m);
            s[S_GETINFO][base + (size_t)i] = (double)(bctl_now_ns() - t0);
        }
        for (int i = 0; ok && i < iters; i++) {
            int64_t t0 = bctl_now_ns();
            ok = op_serverinfo(m);
            s[S_SERVERINFO][base + (size_t)i] = (double)(bctl_now_ns() - t0);
        }
        for (int i = 0; ok && i < iters; i++) {
            double t[3];
            ok = op_create_close(m, t);
            size_t j = base + (size_t)i;
            s[S_CREATE][j] = t[0];
            s[S_CLOSE0][j] = t[1];
            s[S_CLOSE1][j] = t[2];
            s[S_CC][j] = t[0] + t[1]; /* t[2] repeats t[1]: the same CloseHandles call */
            s[S_CC2][j] = t[0] + t[1];
        }
        k = base + (size_t)iters;
    }
    if (ok) {
        snprintf(reply, len, "ok");
        for (int i = 0; i < S_COUNT; i++) {
            bctl_stats_t st;
            for (size_t j = 0; j < k; j++) {
                s[i][j] /= 1000.0; /* reported in microseconds */
            }
            iob_tk_stats(s[i], k, &st);
            bctl_stats_format(reply, len, k_series[i], &st);
        }
    }
    for (int i = 0; i < S_COUNT; i++) {
        free(s[i]);
    }
    return ok;
}

typedef struct samples {
    double* v;
    size_t n, cap;
} samples_t;

static bool samples_add(samples_t* s, double v) {
    if (s->n == s->cap) {
        size_t cap = s->cap != 0 ? s->cap * 2 : 1024;
        double* nv = realloc(s->v, cap * sizeof *nv);
        if (nv == NULL) {
            return false;
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = v;
    return true;
}

/* Stats of s without reordering it (the pooled series keep growing). */
static bool samples_stats(const samples_t* s, size_t from, bctl_stats_t* out) {
    size_t n = s->n - from;
    double* copy = malloc((n != 0 ? n : 1) * sizeof *copy);
    if (copy == NULL) {
        return false;
    }
    memcpy(copy, s->v + from, n * sizeof *copy);
    iob_tk_stats(copy, n, out);
    free(copy);
    return true;
}

enum { SC_CC, SC_IMP, SC_EXP, SC_COUNT };
static samples_t g_scale[SC_COUNT];

/* One export+import of a fresh IOB's ep1; the IOB is closed before the next. */
static bool op_export_import(mgmt_t* m, double* exp_us, double* imp_us) {
    zx_iob_region_t r;
    mgmt_region(m, &r);
    zx_handle_t ep0 = ZX_HANDLE_INVALID;
    zx_handle_t ep1 = ZX_HANDLE_INVALID;
    zx_status_t st = iob_conn_iob_create(m->conn, 0, &r, 1, &ep0, &ep1);
    if (st != ZX_OK) {
        return fail(m, "CreateIob", st);
    }
    char token[IOB_CONN_TOKEN_SIZE];
    int64_t t0 = bctl_now_ns();
    st = iob_conn_handle_export(m->conn, ep1, token);
    int64_t t1 = bctl_now_ns();
    if (st != ZX_OK) {
        iob_conn_handle_close_many(m->conn, (zx_handle_t[]){ep0, ep1}, 2);
        return fail(m, "ExportHandle", st);
    }
    zx_handle_t h = ZX_HANDLE_INVALID;
    st = iob_conn_handle_import(m->conn, token, &h);
    int64_t t2 = bctl_now_ns();
    if (st != ZX_OK) {
        iob_conn_handle_close(m->conn, ep0);
        return fail(m, "ImportHandle", st);
    }
    st = iob_conn_handle_close_many(m->conn, (zx_handle_t[]){ep0, h}, 2);
    if (st != ZX_OK) {
        return fail(m, "CloseHandles", st);
    }
    *exp_us = (double)(t1 - t0) / 1000.0;
    *imp_us = (double)(t2 - t1) / 1000.0;
    return true;
}

static bool run_scale(mgmt_t* m, int iters, char* reply, size_t len) {
    size_t from[SC_COUNT];
    for (int i = 0; i < SC_COUNT; i++) {
        from[i] = g_scale[i].n;
    }
    bool ok = true;
    for (int i = 0; ok && i < iters; i++) {
        double t[3];
        ok = op_create_close(m, t) && samples_add(&g_scale[SC_CC], (t[0] + t[1]) / 1000.0);
    }
    for (int i = 0; ok && i < iters; i++) {
        double e = 0;
        double im = 0;
        ok = op_export_import(m, &e, &im) && samples_add(&g_scale[SC_EXP], e) &&
             samples_add(&g_scale[SC_IMP], im);
    }
    if (!ok) {
        if (m->error[0] == '\0') {
            fail(m, "samples", ZX_ERR_NO_MEMORY);
        }
        return false;
    }
    static const char* const block[SC_COUNT] = {"bcc", "bimp", "bexp"};
    static const char* const pooled[SC_COUNT] = {"cc", "imp", "exp"};
    snprintf(reply, len, "ok");
    for (int i = 0; i < SC_COUNT; i++) {
        bctl_stats_t b;
        bctl_stats_t p;
        if (!samples_stats(&g_scale[i], from[i], &b) || !samples_stats(&g_scale[i], 0, &p)) {
            return fail(m, "samples", ZX_ERR_NO_MEMORY);
        }
        bctl_stats_format(reply, len, block[i], &b);
        bctl_stats_format(reply, len, pooled[i], &p);
    }
    return true;
}

static bool run_hold(mgmt_t* m, int n, char* reply, size_t len) {
    zx_iob_region_t r;
    mgmt_region(m, &r);
    for (int i = 0; i < n; i++) {
        zx_handle_t ep0;
        zx_handle_t ep1;
        zx_status_t st = iob_conn_iob_create(m->conn, 0, &r, 1, &ep0, &ep1);
        if (st != ZX_OK) {
            return fail(m, "CreateIob (hold)", st);
        }
    }
    snprintf(reply, len, "ok held=%d", n);
    return true;
}

static bool run_info(mgmt_t* m, char* reply, size_t len) {
    iob_conn_server_info_t si;
    zx_status_t st = iob_conn_server_info(m->conn, &si);
    if (st != ZX_OK) {
        return fail(m, "ServerInfo", st);
    }
    zx_iob_region_t r;
    mgmt_region(m, &r);
    zx_handle_t ep0 = ZX_HANDLE_INVALID;
    zx_handle_t ep1 = ZX_HANDLE_INVALID;
    st = iob_conn_iob_create(m->conn, 0, &r, 1, &ep0, &ep1);
    if (st != ZX_OK) {
        return fail(m, "CreateIob", st);
    }
    zx_info_handle_basic_t hb;
    st = iob_conn_get_info(m->conn, ep0, ZX_INFO_HANDLE_BASIC, &hb, sizeof hb, NULL, NULL);
    zx_status_t cst = iob_conn_handle_close_many(m->conn, (zx_handle_t[]){ep0, ep1}, 2);
    if (st != ZX_OK || cst != ZX_OK) {
        return fail(m, st != ZX_OK ? "GetInfo" : "CloseHandles", st != ZX_OK ? st : cst);
    }
    /* The counters are read before the koid probe's IOB exists, so it is not among them. */
    snprintf(reply, len,
             "ok iobs=%" PRIu64 " sessions=%" PRIu64 " handles=%" PRIu64 " mappings=%" PRIu64
             " tokens=%" PRIu64 " bytes=%" PRIu64 " koid=%" PRIu64,
             si.iobs, si.sessions, si.handles, si.mappings, si.tokens, si.bytes_in_use, hb.koid);
    return true;
}

static void sleep_until(int64_t t) {
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000), .tv_nsec = (long)(t % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static bool run_throughput(mgmt_t* m, const char* op, int64_t start, int64_t dur, char* reply,
                           size_t len) {
    bool cc = strcmp(op, "cc") == 0;
    /* Latencies under load too; bounded so a fast loop cannot run out of memory. */
    size_t cap = 1u << 20;
    double* lat = malloc(cap * sizeof(double));
    if (lat == NULL) {
        return fail(m, "malloc", ZX_ERR_NO_MEMORY);
    }
    sleep_until(start);
    int64_t end = start + dur;
    uint64_t count = 0;
    int64_t now = bctl_now_ns();
    bool ok = true;
    while (ok && now < end) {
        int64_t t0 = now;
        ok = cc ? op_create_close(m, NULL) : op_unary(m);
        now = bctl_now_ns();
        if (count < cap) {
            lat[count] = (double)(now - t0) / 1000.0;
        }
        count++;
    }
    if (ok) {
        bctl_stats_t st;
        iob_tk_stats(lat, count < cap ? count : cap, &st);
        snprintf(reply, len, "ok count=%" PRIu64 " elapsed_ns=%" PRId64, count, now - start);
        bctl_stats_format(reply, len, "lat", &st);
    }
    free(lat);
    return ok;
}

int bctl_mgmt_main(int argc, char** argv) {
    iob_conn_options_t o;
    memset(&o, 0, sizeof o);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            o.target = argv[++i];
        } else if (strcmp(argv[i], "--insecure") == 0) {
            o.insecure = true;
        }
    }
    o.timeout_ms = 30000;
    mgmt_t m;
    memset(&m, 0, sizeof m);
    zx_status_t st = iob_conn_open(&o, &m.conn);
    if (st != ZX_OK) {
        bctl_write_line(BCTL_FD_RES, "err connect %s: %s", o.target ? o.target : "(default)",
                        zx_status_get_string(st));
        return 1;
    }
    const iob_conn_session_info_t* info = iob_conn_session(m.conn);
    m.page_size = info->page_size != 0 ? info->page_size : 4096;
    zx_iob_region_t r;
    mgmt_region(&m, &r);
    st = iob_conn_iob_create(m.conn, 0, &r, 1, &m.probe, &m.probe_peer);
    if (st != ZX_OK) {
        bctl_write_line(BCTL_FD_RES, "err probe IOB: %s", zx_status_get_string(st));
        iob_conn_close(m.conn);
        return 1;
    }
    bctl_write_line(BCTL_FD_RES, "ok ready page_size=%" PRIu64 " backing=%s", m.page_size,
                    info->backing[0] != '\0' ? info->backing : "?");

    char line[BCTL_LINE_MAX];
    char reply[BCTL_LINE_MAX];
    int rc = 0;
    /* No deadline on requests: the orchestrator may take its time between phases. */
    while (bctl_read_line(BCTL_FD_CMD, line, sizeof line, INT64_C(1) << 40) == 0) {
        reply[0] = '\0';
        bool ok;
        int blocks;
        int iters;
        char op[16];
        long long start;
        long long dur;
        if (sscanf(line, "lat %d %d", &blocks, &iters) == 2 && blocks > 0 && iters > 0) {
            ok = run_latency(&m, blocks, iters, reply, sizeof reply);
        } else if (sscanf(line, "tput %15s %lld %lld", op, &start, &dur) == 3) {
            ok = run_throughput(&m, op, start, dur, reply, sizeof reply);
        } else if (sscanf(line, "scale %d", &iters) == 1 && iters > 0) {
            ok = run_scale(&m, iters, reply, sizeof reply);
        } else if (sscanf(line, "scale-warm %d", &iters) == 1 && iters > 0) {
            /* Warm-up: the same work, then forgotten. */
            ok = run_scale(&m, iters, reply, sizeof reply);
            for (int i = 0; i < SC_COUNT; i++) {
                g_scale[i].n = 0;
            }
        } else if (sscanf(line, "hold %d", &iters) == 1 && iters > 0) {
            ok = run_hold(&m, iters, reply, sizeof reply);
        } else if (strcmp(line, "info") == 0) {
            ok = run_info(&m, reply, sizeof reply);
        } else if (strcmp(line, "quit") == 0) {
            break;
        } else {
            ok = false;
            snprintf(m.error, sizeof m.error, "unknown request \"%.100s\"", line);
        }
        if (!ok) {
            bctl_write_line(BCTL_FD_RES, "err %s", m.error);
            rc = 1;
            break;
        }
        bctl_write_line(BCTL_FD_RES, "%s", reply);
    }
    iob_conn_handle_close(m.conn, m.probe);
    iob_conn_handle_close(m.conn, m.probe_peer);
    iob_conn_close(m.conn);
    for (int i = 0; i < SC_COUNT; i++) {
        free(g_scale[i].v);
    }
    return rc;
}
