/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-control --scale: does the cost of create, close and import grow with what the
 * server holds? Issue: "create+close p50 with 10,000 live IOBs within 1.2x of the same with
 * 10, measured in one run".
 *
 * Four private iobds, identical but for what a background process (the holder, role
 * scale-hold, its own session) keeps in them:
 *   base      10 live one-page IOBs (the reference)
 *   iobs      10,000 live one-page IOBs (20,000 handles)
 *   tokens    10,000 live IOBs whose ep1 waits in an outstanding transfer token
 *   sessions  10 live IOBs and 256 open sessions
 *   own       10,000 live IOBs held by the measuring client's own session (a client that
 *             keeps many objects pays no more per call than one that keeps few)
 * One measuring client per server (role mgmt, request "scale") times create+close
 * (CreateIob + CloseHandles) and import (ImportHandle of a fresh IOB's ep1). The servers
 * are measured in blocks, round by round, in an order that rotates every round, so slow
 * stretches of this noisy VM land on all of them alike; each figure is reported as the
 * median of the per-round ratios of block medians (the criterion: pairing cancels the
 * machine's slow stretches, which pooled medians do not) and as the ratio of pooled medians.
 *
 * Separate servers, rather than one server grown and shrunk between rounds, keep each
 * condition constant for the whole run and cost one fill each. The orchestrator raises
 * its RLIMIT_NOFILE soft limit to the hard one before starting them (inherited): 10,000
 * one-region IOBs are 10,000 memfds in iobd.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zircon/status.h>

#include "bench/bench_control.h"
#include "client/rpc/iob_conn.h"

/* ---- the holder (a child process) ---- */

static int holder_fail(const char* what, zx_status_t st, uint64_t done) {
    bctl_write_line(BCTL_FD_RES, "err %s after %" PRIu64 ": %s", what, done,
                    zx_status_get_string(st));
    return 1;
}

int bctl_scale_hold_main(int argc, char** argv) {
    iob_conn_options_t o;
    memset(&o, 0, sizeof o);
    uint64_t iobs = 0;
    bool tokens = false;
    uint64_t sessions = 1;
    for (int i = 3; i + 1 < argc; i += 2) { /* argv: self --role NAME then pairs */
        if (strcmp(argv[i], "--target") == 0) {
            o.target = argv[i + 1];
        } else if (strcmp(argv[i], "--iobs") == 0) {
            iobs = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--tokens") == 0) {
            tokens = strcmp(argv[i + 1], "1") == 0;
        } else if (strcmp(argv[i], "--sessions") == 0) {
            sessions = strtoull(argv[i + 1], NULL, 10);
        }
    }
    o.timeout_ms = 30000;
    iob_conn_t* conn = NULL;
    zx_status_t st = iob_conn_open(&o, &conn);
    if (st != ZX_OK) {
        return holder_fail("connect", st, 0);
    }
    const iob_conn_session_info_t* info = iob_conn_session(conn);
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_PRIVATE;
    r.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
               ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    r.size = info->page_size != 0 ? info->page_size : 4096;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
    for (uint64_t i = 0; i < iobs; i++) {
        zx_handle_t ep0;
        zx_handle_t ep1;
        st = iob_conn_iob_create(conn, 0, &r, 1, &ep0, &ep1);
        if (st != ZX_OK) {
            return holder_fail("CreateIob", st, i);
        }
        if (tokens) {
            /* The token holds ep1 until its time-to-live (set long by the orchestrator). */
            char token[IOB_CONN_TOKEN_SIZE];
            st = iob_conn_handle_export(conn, ep1, token);
            if (st != ZX_OK) {
                return holder_fail("ExportHandle", st, i);
            }
        }
    }
    /* Extra sessions: each its own connection, as separate clients would hold them. */
    iob_conn_t** extra = calloc(sessions > 1 ? sessions - 1 : 1, sizeof *extra);
    if (extra == NULL) {
        return holder_fail("calloc", ZX_ERR_NO_MEMORY, 0);
    }
    for (uint64_t i = 0; i + 1 < sessions; i++) {
        st = iob_conn_open(&o, &extra[i]);
        if (st != ZX_OK) {
            return holder_fail("extra session", st, i);
        }
    }
    bctl_write_line(BCTL_FD_RES, "ok ready iobs=%" PRIu64 " tokens=%d sessions=%" PRIu64, iobs,
                    tokens ? 1 : 0, sessions);
    char line[BCTL_LINE_MAX];
    while (bctl_read_line(BCTL_FD_CMD, line, sizeof line, INT64_C(1) << 40) == 0 &&
           strcmp(line, "quit") != 0) {
    }
    /* Ending the sessions closes every handle they hold; iobd itself stops next. */
    for (uint64_t i = 0; i + 1 < sessions; i++) {
        iob_conn_close(extra[i]);
    }
    free(extra);
    iob_conn_close(conn);
    return 0;
}

/* ---- the orchestrator ---- */

typedef struct scale_server {
    const char* name; /* row label */
    uint64_t iobs;
    bool tokens;
    uint64_t sessions;
    uint64_t own_iobs; /* held by the measuring client's session */
    bctl_iobd_t d;
    bctl_child_t holder;
    bctl_child_t client;
    char info[BCTL_LINE_MAX]; /* the client's "info" reply after the fill */
    uint64_t rss_kib, fds;
    double* round_cc; /* per-round block p50s */
    double* round_imp;
    char last[BCTL_LINE_MAX]; /* the last block's reply: pooled statistics */
} scale_server_t;

static bool spawn_with(const char* self, char* const argv[], bctl_child_t* c, int64_t timeout_ms,
                       char* err, size_t err_len) {
    if (!bctl_spawn_role(self, argv, -1, c)) {
        snprintf(err, err_len, "spawn: %s", strerror(errno));
        return false;
    }
    char line[BCTL_LINE_MAX] = "";
    if (bctl_read_line(c->res_fd, line, sizeof line, timeout_ms) != 0 ||
        strncmp(line, "ok", 2) != 0) {
        snprintf(err, err_len, "%.300s", line[0] ? line : "(no reply)");
        bctl_child_end(c, 2000);
        return false;
    }
    return true;
}

/* One run of section C: the five servers and the run's parameters. */
typedef struct scale_run {
    const char* self;
    scale_server_t sv[5];
    size_t ns;
    int rounds;
    int iters;
    char n_big[32];  /* the big count, for row labels */
    char n_sess[32]; /* the many-sessions count, likewise */
    char err[400];
} scale_run_t;

/*
 * Starts every server and its holder, which fills it; the holders fill at once, because the
 * fills are most of this section's time. False with run->err filled.
 */
static bool scale_fill(scale_run_t* run, const char* iobd) {
    /*
     * The holder's IOBs and tokens must outlive the run: one session holds them all (far
     * past the default per-session token budget), and tokens do not expire mid-run.
     */
    const char* extra[] = {"--max-iobs-per-session",
                           "unlimited",
                           "--max-handles-per-session",
                           "unlimited",
                           "--max-tokens-per-session",
                           "unlimited",
                           "--max-tokens-per-uid",
                           "unlimited",
                           "--token-ttl",
                           "1h",
                           "--exit-with-parent",
                           NULL};
    for (size_t i = 0; i < run->ns; i++) {
        scale_server_t* sv = &run->sv[i];
        sv->round_cc = calloc((size_t)run->rounds, sizeof(double));
        sv->round_imp = calloc((size_t)run->rounds, sizeof(double));
        if (sv->round_cc == NULL || sv->round_imp == NULL ||
            !bctl_iobd_start(iobd, "off", false, extra, &sv->d, run->err, sizeof run->err)) {
            return false;
        }
    }
    for (size_t i = 0; i < run->ns; i++) {
        scale_server_t* sv = &run->sv[i];
        char a0[1024], a1[16] = "--role", a2[16] = "scale-hold", a3[16] = "--target", a4[200],
                       a5[16] = "--iobs", a6[24], a7[16] = "--tokens", a8[4], a9[16] = "--sessions",
                       a10[24];
        snprintf(a0, sizeof a0, "%s", run->self);
        snprintf(a4, sizeof a4, "%s", sv->d.target);
        snprintf(a6, sizeof a6, "%" PRIu64, sv->iobs);
        snprintf(a8, sizeof a8, "%d", sv->tokens ? 1 : 0);
        snprintf(a10, sizeof a10, "%" PRIu64, sv->sessions);
        char* hold_argv[] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, NULL};
        if (!bctl_spawn_role(run->self, hold_argv, -1, &sv->holder)) {
            snprintf(run->err, sizeof run->err, "spawn holder: %s", strerror(errno));
            return false;
        }
    }
    for (size_t i = 0; i < run->ns; i++) {
        char line[BCTL_LINE_MAX] = "";
        if (bctl_read_line(run->sv[i].holder.res_fd, line, sizeof line, 600000) != 0 ||
            strncmp(line, "ok", 2) != 0) {
            snprintf(run->err, sizeof run->err, "holder (%s): %.300s", run->sv[i].name,
                     line[0] ? line : "(no reply)");
            return false;
        }
    }
    return true;
}

/* A request to the measuring client of sv and its "ok" reply into reply. */
static bool scale_ask(scale_run_t* run, scale_server_t* sv, const char* request, char* reply,
                      size_t len, int64_t timeout_ms) {
    reply[0] = '\0';
    if (!bctl_write_line(sv->client.cmd_fd, "%s", request) ||
        bctl_read_line(sv->client.res_fd, reply, len, timeout_ms) != 0 ||
        strncmp(reply, "ok", 2) != 0) {
        snprintf(run->err, sizeof run->err, "client (%s): %.300s", sv->name,
                 reply[0] ? reply : "(no reply)");
        return false;
    }
    return true;
}

/*
 * Starts each server's measuring client, lets it take its own IOBs, records what the server
 * holds (in its own words, and its RSS and descriptors) and runs one warm-up block.
 */
static bool scale_connect(scale_run_t* run) {
    for (size_t i = 0; i < run->ns; i++) {
        scale_server_t* sv = &run->sv[i];
        char a0[1024], a1[16] = "--role", a2[16] = "mgmt", a3[16] = "--target", a4[200];
        snprintf(a0, sizeof a0, "%s", run->self);
        snprintf(a4, sizeof a4, "%s", sv->d.target);
        char* argv[] = {a0, a1, a2, a3, a4, NULL};
        char e2[320];
        if (!spawn_with(run->self, argv, &sv->client, 30000, e2, sizeof e2)) {
            snprintf(run->err, sizeof run->err, "client (%s): %s", sv->name, e2);
            return false;
        }
        char request[64];
        char line[BCTL_LINE_MAX];
        snprintf(request, sizeof request, "hold %" PRIu64, sv->own_iobs);
        if (sv->own_iobs > 0 && !scale_ask(run, sv, request, line, sizeof line, 600000)) {
            return false;
        }
        snprintf(request, sizeof request, "scale-warm %d", run->iters);
        if (!scale_ask(run, sv, "info", sv->info, sizeof sv->info, 60000) ||
            !scale_ask(run, sv, request, line, sizeof line, 120000)) {
            return false;
        }
        bctl_proc_usage(sv->d.pid, &sv->rss_kib, &sv->fds);
    }
    return true;
}

/* The measured rounds: one block per server per round, the servers' order rotating. */
static bool scale_rounds(scale_run_t* run) {
    char request[32];
    snprintf(request, sizeof request, "scale %d", run->iters);
    for (int r = 0; r < run->rounds; r++) {
        for (size_t k = 0; k < run->ns; k++) {
            scale_server_t* s = &run->sv[(k + (size_t)r) % run->ns];
            if (!scale_ask(run, s, request, s->last, sizeof s->last, 120000)) {
                return false;
            }
            bctl_stats_t b;
            bctl_stats_parse(s->last, "bcc", &b);
            s->round_cc[r] = b.p50;
            bctl_stats_parse(s->last, "bimp", &b);
            s->round_imp[r] = b.p50;
        }
    }
    return true;
}

static void scale_label(const scale_run_t* run, size_t i, const char* op, char* label, size_t len) {
    const scale_server_t* s = &run->sv[i];
    if (i == 0) {
        snprintf(label, len, "%s, 10 live IOBs", op);
    } else if (s->tokens) {
        snprintf(label, len, "%s, %s tokens", op, run->n_big);
    } else if (s->own_iobs > 0) {
        snprintf(label, len, "%s, %s own IOBs", op, run->n_big);
    } else if (s->sessions > 1) {
        snprintf(label, len, "%s, %s sessions", op, run->n_sess);
    } else {
        snprintf(label, len, "%s, %s live IOBs", op, run->n_big);
    }
}

/*
 * One row of server i for an operation (what: 0 create+close, 1 import), judged by the
 * median of its per-round ratios to the 10-IOB server's (ref: that server's pooled p50).
 */
static void scale_row(const scale_run_t* run, size_t i, int what, double ref) {
    const scale_server_t* s = &run->sv[i];
    const char* op = what == 0 ? "create+close" : "import";
    char label[96];
    scale_label(run, i, op, label, sizeof label);
    bctl_row_t* row = bctl_row_add("C", label, "unix", "4K", 1);
    bctl_stats_parse(s->last, what == 0 ? "cc" : "imp", &row->lat_us);
    double server_iobs = 0;
    double server_tokens = 0;
    double server_sessions = 0;
    bctl_kv(s->info, "iobs", &server_iobs);
    bctl_kv(s->info, "tokens", &server_tokens);
    bctl_kv(s->info, "sessions", &server_sessions);
    char held[120];
    snprintf(held, sizeof held,
             "iobd held %.0f IOBs, %.0f tokens, %.0f sessions; "
             "%" PRIu64 " fds, %.0f MiB RSS",
             server_iobs, server_tokens, server_sessions, s->fds, (double)s->rss_kib / 1024.0);
    if (i == 0) {
        snprintf(row->note, sizeof row->note, "%s", held);
        return;
    }
    const double* mine = what == 0 ? s->round_cc : s->round_imp;
    const double* base = what == 0 ? run->sv[0].round_cc : run->sv[0].round_imp;
    double* ratios = calloc((size_t)run->rounds, sizeof(double));
    double paired = NAN;
    if (ratios != NULL) {
        for (int r = 0; r < run->rounds; r++) {
            ratios[r] = base[r] > 0 ? mine[r] / base[r] : NAN;
        }
        paired = iob_tk_median(ratios, (size_t)run->rounds);
        free(ratios);
    }
    snprintf(row->reference, sizeof row->reference, "%s, 10 IOBs, paired", op);
    bctl_row_judge(row, paired, 1.2, true, true);
    snprintf(row->note, sizeof row->note, "ratio of pooled p50s %.3f; %s", row->lat_us.p50 / ref,
             held);
}

bool bctl_scale_run(const char* self, const char* iobd, bool quick, int rounds, int iters) {
    static scale_run_t run; /* the servers' reply buffers are large */
    memset(&run, 0, sizeof run);
    run.self = self;
    run.rounds = rounds;
    run.iters = iters;
    uint64_t big = quick ? 1000 : 10000;
    uint64_t many_sessions = quick ? 32 : 256;
    snprintf(run.n_big, sizeof run.n_big, "%" PRIu64, big);
    snprintf(run.n_sess, sizeof run.n_sess, "%" PRIu64, many_sessions);
    run.sv[0] = (scale_server_t){.name = "10 IOBs", .iobs = 10, .sessions = 1};
    run.sv[1] = (scale_server_t){.name = "IOBs", .iobs = big, .sessions = 1};
    run.sv[2] = (scale_server_t){.name = "tokens", .iobs = big, .tokens = true, .sessions = 1};
    run.sv[3] = (scale_server_t){.name = "sessions", .iobs = 10, .sessions = many_sessions};
    run.sv[4] = (scale_server_t){.name = "own", .iobs = 10, .sessions = 1, .own_iobs = big};
    run.ns = sizeof run.sv / sizeof run.sv[0];
    for (size_t i = 0; i < run.ns; i++) {
        run.sv[i].holder = (bctl_child_t){0, -1, -1};
        run.sv[i].client = (bctl_child_t){0, -1, -1};
    }
    uint64_t nofile = bctl_raise_nofile();
    int64_t t0 = bctl_now_ns();
    bool ok = scale_fill(&run, iobd);
    double fill_s = (double)(bctl_now_ns() - t0) / 1e9;
    ok = ok && scale_connect(&run) && scale_rounds(&run);
    double total_s = (double)(bctl_now_ns() - t0) / 1e9;
    if (!ok) {
        bctl_row_t* row = bctl_row_add("C", "scale", "unix", "4K", 1);
        snprintf(row->verdict, sizeof row->verdict, "error");
        snprintf(row->note, sizeof row->note, "%.190s", run.err);
        fprintf(stderr, "iob-bench-control: scale: %s\n", run.err);
    } else {
        bctl_stats_t cc0;
        bctl_stats_t imp0;
        bctl_stats_parse(run.sv[0].last, "cc", &cc0);
        bctl_stats_parse(run.sv[0].last, "imp", &imp0);
        for (int what = 0; what < 2; what++) {
            for (size_t i = 0; i < run.ns; i++) {
                scale_row(&run, i, what, what == 0 ? cc0.p50 : imp0.p50);
            }
        }
        fprintf(stderr,
                "iob-bench-control: scale: fill %.1f s, total %.1f s, %d rounds x %d, "
                "RLIMIT_NOFILE %" PRIu64 "\n",
                fill_s, total_s, rounds, iters, nofile);
    }
    for (size_t i = 0; i < run.ns; i++) {
        bctl_child_end(&run.sv[i].client, 5000);
        bctl_child_end(&run.sv[i].holder, 30000);
        bctl_iobd_stop(&run.sv[i].d);
        free(run.sv[i].round_cc);
        free(run.sv[i].round_imp);
    }
    return ok;
}
