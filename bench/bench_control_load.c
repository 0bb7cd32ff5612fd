/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-control --load: a bounded load test. N client processes (256 by default), in
 * partner pairs joined by a SOCK_SEQPACKET pair, each with its own libiob session, run the
 * same lockstep iteration until a shared deadline or an iteration cap:
 *
 *   create an IOB (one region of LOAD_PAGES pages; ep0 may map read-write, ep1 read-only),
 *   map ep0 read-write, write a pattern seeded by (process, iteration), export ep1, send
 *   the token and seed to the partner; receive the partner's, import it, map it read-only,
 *   verify every word, (every LOAD_REIMPORT_EVERY-th iteration) import the same token again,
 *   which must be refused, unmap, close, acknowledge; on the partner's acknowledgement
 *   unmap and close its own IOB.
 *
 * Every effect is accounted for. Each process reports its counts and every non-OK status
 * by operation and name; the orchestrator checks that no effect was lost or doubled:
 *   - per process: creates = exports = acknowledged-as-verified; maps = unmaps;
 *     closes = creates + imports; no error, no pattern mismatch, no second import accepted;
 *   - per pair: one side's exports = the other side's imports = its verified reads;
 *   - in iobd: the koid counter advanced by exactly 3 per IOB created (ep0, ep1, region:
 *     iobd made as many IOBs as the clients counted); once every process has reported,
 *     with their sessions still open, iobd holds its start IOBs, handles, mappings, tokens
 *     and bytes (a close iobd never saw shows here, before session teardown hides it), and
 *     after the processes exit, its start sessions too;
 *   - iobd's fd count returns to its start value exactly, and its RSS to within
 *     LOAD_RSS_SLACK_KIB of its value after a warm-up run (allocator pools and gRPC's
 *     per-connection buffers stay allocated once grown; growth between two runs is a leak).
 * Rates are operations per second over the whole run (from the common start to the last
 * process's end). The orchestrator never touches gRPC; a probe process (role mgmt,
 * request "info") reads iobd's counters. The client processes: bench_control_load_client.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_control.h"
#include "bench/bench_control_load.h"

#define LOAD_RSS_SLACK_KIB (8 * 1024)

typedef struct server_state {
    double iobs, sessions, handles, mappings, tokens, bytes, koid;
} server_state_t;

static bool probe_info(bctl_child_t* probe, server_state_t* out, char* err, size_t err_len) {
    char line[BCTL_LINE_MAX] = "";
    if (!bctl_write_line(probe->cmd_fd, "info") ||
        bctl_read_line(probe->res_fd, line, sizeof line, 30000) != 0 ||
        strncmp(line, "ok", 2) != 0) {
        snprintf(err, err_len, "probe: %.300s", line[0] ? line : "(no reply)");
        return false;
    }
    memset(out, 0, sizeof *out);
    bool ok = bctl_kv(line, "iobs", &out->iobs) && bctl_kv(line, "sessions", &out->sessions) &&
              bctl_kv(line, "handles", &out->handles) &&
              bctl_kv(line, "mappings", &out->mappings) && bctl_kv(line, "tokens", &out->tokens) &&
              bctl_kv(line, "bytes", &out->bytes) && bctl_kv(line, "koid", &out->koid);
    if (!ok) {
        snprintf(err, err_len, "probe: malformed reply %.300s", line);
    }
    return ok;
}

static bool same_state(const server_state_t* a, const server_state_t* b) {
    return a->iobs == b->iobs && a->sessions == b->sessions && a->handles == b->handles &&
           a->mappings == b->mappings && a->tokens == b->tokens && a->bytes == b->bytes;
}

static void state_text(const server_state_t* s, char* out, size_t len) {
    snprintf(out, len,
             "%.0f IOBs, %.0f sessions, %.0f handles, %.0f mappings, %.0f tokens, "
             "%.0f bytes",
             s->iobs, s->sessions, s->handles, s->mappings, s->tokens, s->bytes);
}

typedef struct usage {
    uint64_t rss_kib, fds;
} usage_t;

typedef struct run_result {
    double c[BCTL_LOAD_COUNT]; /* sums over all processes */
    double elapsed_s;  /* common start to the last process's end */
    usage_t peak;
    server_state_t peak_state;
    uint64_t info_calls; /* probes (each creates one IOB) after the start probe */
    char problems[1024]; /* accounting violations, "" when none */
} run_result_t;

static void problem(run_result_t* r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(run_result_t* r, const char* fmt, ...) {
    size_t used = strlen(r->problems);
    if (used + 2 >= sizeof r->problems) {
        return;
    }
    if (used > 0) {
        r->problems[used++] = ';';
        r->problems[used++] = ' ';
        r->problems[used] = '\0';
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->problems + used, sizeof r->problems - used, fmt, ap);
    va_end(ap);
}

static void track_peak(const bctl_iobd_t* d, run_result_t* r) {
    usage_t u = {0, 0};
    if (bctl_proc_usage(d->pid, &u.rss_kib, &u.fds)) {
        r->peak.rss_kib = u.rss_kib > r->peak.rss_kib ? u.rss_kib : r->peak.rss_kib;
        r->peak.fds = u.fds > r->peak.fds ? u.fds : r->peak.fds;
    }
}

static void max_state(server_state_t* peak, const server_state_t* s) {
    peak->iobs = fmax(peak->iobs, s->iobs);
    peak->sessions = fmax(peak->sessions, s->sessions);
    peak->handles = fmax(peak->handles, s->handles);
    peak->mappings = fmax(peak->mappings, s->mappings);
    peak->tokens = fmax(peak->tokens, s->tokens);
    peak->bytes = fmax(peak->bytes, s->bytes);
}

/*
 * One run: spawns the processes, runs them, collects and checks their counts. The caller
 * checks iobd's end state. false only when the run could not be carried out (err says why);
 * accounting violations land in r->problems.
 */
static bool load_once(const char* self, const bctl_iobd_t* d, bctl_child_t* probe,
                      const server_state_t* s0, const bctl_load_options_t* o, run_result_t* r,
                      char* err, size_t err_len) {
    memset(r, 0, sizeof *r);
    int n = o->processes;
    bctl_child_t* ch = calloc((size_t)n, sizeof *ch);
    char(*replies)[BCTL_LINE_MAX] = calloc((size_t)n, BCTL_LINE_MAX);
    bool* done = calloc((size_t)n, sizeof *done);
    struct pollfd* pf = calloc((size_t)n, sizeof *pf);
    bool ok = ch != NULL && replies != NULL && done != NULL && pf != NULL;
    if (!ok) {
        snprintf(err, err_len, "out of memory");
    }
    int spawned = 0;
    for (int i = 0; ok && i < n; i += 2) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
            snprintf(err, err_len, "socketpair: %s", strerror(errno));
            ok = false;
            break;
        }
        for (int k = 0; k < 2 && ok; k++) {
            char a0[1024], a1[16] = "--role", a2[16] = "load", a3[16] = "--target", a4[200],
                           a5[8] = "--id", a6[16];
            snprintf(a0, sizeof a0, "%s", self);
            snprintf(a4, sizeof a4, "%s", d->target);
            snprintf(a6, sizeof a6, "%d", i + k);
            char* argv[] = {a0, a1, a2, a3, a4, a5, a6, NULL};
            ch[i + k] = (bctl_child_t){0, -1, -1};
            if (!bctl_spawn_role(self, argv, sp[k], &ch[i + k])) {
                snprintf(err, err_len, "spawn %d: %s", i + k, strerror(errno));
                ok = false;
            } else {
                spawned = i + k + 1;
            }
        }
        close(sp[0]);
        close(sp[1]);
    }
    /* Everyone connected before anyone starts: the start is common. */
    int64_t t_spawn = bctl_now_ns();
    for (int i = 0; ok && i < n; i++) {
        char line[BCTL_LINE_MAX] = "";
        if (bctl_read_line(ch[i].res_fd, line, sizeof line, 120000) != 0 ||
            strncmp(line, "ok", 2) != 0) {
            snprintf(err, err_len, "client %d did not start: %.200s", i,
                     line[0] ? line : "(no reply)");
            ok = false;
        }
        track_peak(d, r);
    }
    if (ok) {
        fprintf(stderr, "iob-bench-control: load: %d processes connected in %.1f s\n", n,
                (double)(bctl_now_ns() - t_spawn) / 1e9);
    }
    int64_t start = bctl_now_ns() + 300 * 1000000;
    for (int i = 0; ok && i < n; i++) {
        if (!bctl_write_line(ch[i].cmd_fd, "run %" PRId64 " %" PRId64 " %" PRIu64, start,
                             o->duration_ns, o->max_iters)) {
            snprintf(err, err_len, "client %d went away", i);
            ok = false;
        }
    }
    /* Replies arrive as processes finish; iobd's usage and counters are sampled meanwhile. */
    int left = ok ? n : 0;
    int64_t deadline = start + o->duration_ns + INT64_C(120) * 1000000000;
    int64_t next_info = start;
    while (ok && left > 0) {
        int64_t now = bctl_now_ns();
        if (now > deadline) {
            snprintf(err, err_len, "%d clients did not report within 120 s of the end", left);
            ok = false;
            break;
        }
        track_peak(d, r);
        if (now >= next_info) {
            server_state_t st;
            if (probe_info(probe, &st, err, err_len)) {
                max_state(&r->peak_state, &st);
                r->info_calls++;
            } else {
                ok = false;
                break;
            }
            next_info = bctl_now_ns() + 500 * 1000000;
        }
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (!done[i]) {
                pf[m++] = (struct pollfd){.fd = ch[i].res_fd, .events = POLLIN};
            }
        }
        int rc = poll(pf, (nfds_t)m, 100);
        if (rc < 0 && errno != EINTR) {
            snprintf(err, err_len, "poll: %s", strerror(errno));
            ok = false;
            break;
        }
        for (int i = 0, j = 0; rc > 0 && i < n; i++) {
            if (done[i]) {
                continue;
            }
            if (pf[j++].revents != 0) {
                /* Each reply is one write of less than PIPE_BUF: it is all there. */
                if (bctl_read_line(ch[i].res_fd, replies[i], BCTL_LINE_MAX, 5000) != 0 ||
                    strncmp(replies[i], "ok", 2) != 0) {
                    snprintf(err, err_len, "client %d: %.200s", i,
                             replies[i][0] ? replies[i] : "(no reply)");
                    ok = false;
                    break;
                }
                done[i] = true;
                left--;
            }
        }
    }
    /*
     * Every process has closed and unmapped all it made, and its session is still open: iobd
     * must hold exactly what it held at the start, plus the sessions. (After the sessions
     * end, their teardown would hide a close that iobd never saw.)
     */
    server_state_t before_end;
    if (ok && probe_info(probe, &before_end, err, err_len)) {
        r->info_calls++;
        server_state_t want = *s0;
        want.sessions += n;
        if (!same_state(&before_end, &want)) {
            char got_text[200];
            char want_text[200];
            state_text(&before_end, got_text, sizeof got_text);
            state_text(&want, want_text, sizeof want_text);
            problem(r, "with the sessions still open iobd held %s, not %s", got_text, want_text);
        }
    } else {
        ok = false;
    }
    /* Tell everyone to quit first, then reap: the processes end in parallel. */
    for (int i = 0; i < spawned; i++) {
        if (ch[i].cmd_fd >= 0) {
            (void)bctl_write_line(ch[i].cmd_fd, "quit");
            close(ch[i].cmd_fd);
            ch[i].cmd_fd = -1;
        }
    }
    for (int i = 0; i < spawned; i++) {
        bctl_child_end(&ch[i], 30000);
    }
    if (ok) {
        double last_end = (double)start;
        for (int i = 0; i < n; i++) {
            double c[BCTL_LOAD_COUNT];
            for (int k = 0; k < BCTL_LOAD_COUNT; k++) {
                c[k] = 0;
                bctl_kv(replies[i], bctl_load_counter_names[k], &c[k]);
                r->c[k] += c[k];
            }
            double end_ns = 0;
            bctl_kv(replies[i], "end_ns", &end_ns);
            last_end = fmax(last_end, end_ns);
            const char* fatal = strstr(replies[i], " fatal=");
            if (fatal != NULL) {
                problem(r, "client %d: %.100s", i, fatal + 7);
            }
            const char* e = strstr(replies[i], " err_");
            if (e != NULL) {
                problem(r, "client %d:%.150s", i, e);
            }
            if (c[BCTL_LOAD_CREATES] != c[BCTL_LOAD_EXPORTS] ||
                c[BCTL_LOAD_EXPORTS] != c[BCTL_LOAD_ACKED]) {
                problem(r, "client %d: %.0f created, %.0f exported, %.0f verified by the partner",
                        i, c[BCTL_LOAD_CREATES], c[BCTL_LOAD_EXPORTS], c[BCTL_LOAD_ACKED]);
            }
            if (c[BCTL_LOAD_MAPS] != c[BCTL_LOAD_UNMAPS] ||
                c[BCTL_LOAD_CLOSES] != c[BCTL_LOAD_CREATES] + c[BCTL_LOAD_IMPORTS]) {
                problem(r,
                        "client %d: %.0f maps, %.0f unmaps, %.0f closes for %.0f creates + "
                        "%.0f imports",
                        i, c[BCTL_LOAD_MAPS], c[BCTL_LOAD_UNMAPS], c[BCTL_LOAD_CLOSES],
                        c[BCTL_LOAD_CREATES], c[BCTL_LOAD_IMPORTS]);
            }
            if (c[BCTL_LOAD_MISMATCHES] != 0 || c[BCTL_LOAD_DOUBLED] != 0) {
                problem(r, "client %d: %.0f pattern mismatches, %.0f second imports accepted", i,
                        c[BCTL_LOAD_MISMATCHES], c[BCTL_LOAD_DOUBLED]);
            }
            if (i % 2 == 1) {
                double pe = 0;
                double pi = 0;
                bctl_kv(replies[i - 1], "exports", &pe);
                bctl_kv(replies[i - 1], "imports", &pi);
                if (pe != c[BCTL_LOAD_IMPORTS] || c[BCTL_LOAD_EXPORTS] != pi ||
                    c[BCTL_LOAD_IMPORTS] != c[BCTL_LOAD_VERIFIED]) {
                    problem(r, "pair %d/%d: exports %.0f/%.0f, imports %.0f/%.0f", i - 1, i, pe,
                            c[BCTL_LOAD_EXPORTS], pi, c[BCTL_LOAD_IMPORTS]);
                }
            }
        }
        r->elapsed_s = (last_end - (double)start) / 1e9;
        if (r->c[BCTL_LOAD_ERRORS] != 0) {
            problem(r, "%.0f non-OK statuses", r->c[BCTL_LOAD_ERRORS]);
        }
        if (r->c[BCTL_LOAD_ITERS] == 0) {
            problem(r, "no iteration completed");
        }
    }
    free(ch);
    free(replies);
    free(done);
    free(pf);
    return ok;
}

/* Waits (a bounded time) for iobd to release what the ended sessions held. */
static bool settle(bctl_child_t* probe, const server_state_t* want, server_state_t* got,
                   uint64_t* info_calls, char* err, size_t err_len) {
    int64_t deadline = bctl_now_ns() + INT64_C(20) * 1000000000;
    for (;;) {
        if (!probe_info(probe, got, err, err_len)) {
            return false;
        }
        (*info_calls)++;
        if (same_state(got, want) || bctl_now_ns() > deadline) {
            return true;
        }
        usleep(100 * 1000);
    }
}

/*
 * iobd's usage once its fd count holds still for 100 ms (at most 3 s): a connection being
 * accepted or torn down at the instant of one reading is not a leak or a saving.
 */
static bool settled_usage(pid_t pid, usage_t* u) {
    usage_t prev = {0, 0};
    bool have = false;
    for (int i = 0; i < 30; i++) {
        if (!bctl_proc_usage(pid, &u->rss_kib, &u->fds)) {
            return false;
        }
        if (have && u->fds == prev.fds) {
            return true;
        }
        prev = *u;
        have = true;
        usleep(100 * 1000);
    }
    return true;
}

static double rate(double count, double s) {
    return s > 0 ? count / s : 0;
}

/* Everything one --load section measures: iobd's state and usage, and both runs' results. */
typedef struct load_figures {
    server_state_t s0, s_warm, s_end;
    usage_t u0, u_warm, u_end;
    run_result_t warm, run;
    uint64_t calls_after_start; /* probe calls after the start probe (each makes an IOB) */
    uint64_t nofile;
} load_figures_t;

/* iobd (its default limits: the load must fit them) and the probe that reads its counters. */
static bool load_start(const char* self, const char* iobd, bctl_iobd_t* d, bctl_child_t* probe,
                       char* err, size_t err_len) {
    /*
     * The load (every client under this one uid, each session with at most two IOBs, two
     * mappings and one token at a time) must fit iobd's default limits.
     */
    const char* extra[] = {"--exit-with-parent", NULL};
    if (!bctl_iobd_start(iobd, "off", false, extra, d, err, err_len)) {
        return false;
    }
    char a0[1024], a1[16] = "--role", a2[16] = "mgmt", a3[16] = "--target", a4[200];
    snprintf(a0, sizeof a0, "%s", self);
    snprintf(a4, sizeof a4, "%s", d->target);
    char* argv[] = {a0, a1, a2, a3, a4, NULL};
    char line[BCTL_LINE_MAX] = "";
    if (!bctl_spawn_role(self, argv, -1, probe) ||
        bctl_read_line(probe->res_fd, line, sizeof line, 30000) != 0 ||
        strncmp(line, "ok", 2) != 0) {
        snprintf(err, err_len, "probe did not start: %.200s", line);
        return false;
    }
    return true;
}

/*
 * A warm-up (the same processes for a short time, so the allocator's pools and gRPC's
 * buffers have grown once; the measured run must leave iobd where the warm-up did), then
 * the measured run, each followed by iobd's settled state and usage.
 */
static bool load_runs(const char* self, const bctl_iobd_t* d, bctl_child_t* probe,
                      const bctl_load_options_t* o, load_figures_t* f, char* err, size_t err_len) {
    if (!probe_info(probe, &f->s0, err, err_len) || !settled_usage(d->pid, &f->u0)) {
        return false;
    }
    bctl_load_options_t wo = *o;
    wo.duration_ns =
        o->duration_ns / 10 > INT64_C(1000000000) ? o->duration_ns / 10 : INT64_C(1000000000);
    fprintf(stderr, "iob-bench-control: load: %d processes, warm-up %.1f s, run %.1f s\n",
            o->processes, (double)wo.duration_ns / 1e9, (double)o->duration_ns / 1e9);
    if (!load_once(self, d, probe, &f->s0, &wo, &f->warm, err, err_len)) {
        return false;
    }
    f->calls_after_start += f->warm.info_calls;
    if (!settle(probe, &f->s0, &f->s_warm, &f->calls_after_start, err, err_len) ||
        !settled_usage(d->pid, &f->u_warm) ||
        !load_once(self, d, probe, &f->s0, o, &f->run, err, err_len)) {
        return false;
    }
    f->calls_after_start += f->run.info_calls;
    return settle(probe, &f->s0, &f->s_end, &f->calls_after_start, err, err_len) &&
           settled_usage(d->pid, &f->u_end);
}

/* The rate rows: operations per second over the whole measured run. */
static void load_rate_rows(const bctl_load_options_t* o, const run_result_t* run) {
    const double t = run->elapsed_s;
    struct {
        const char* figure;
        double count;
    } rates[] = {
        {"iterations (all steps, 1 IOB each)", run->c[BCTL_LOAD_ITERS]},
        {"create (zx_iob_create)", run->c[BCTL_LOAD_CREATES]},
        {"map (zx_vmar_map_iob, rw + ro)", run->c[BCTL_LOAD_MAPS]},
        {"write pattern (16 KiB)", run->c[BCTL_LOAD_WRITES]},
        {"export (iob_handle_export)", run->c[BCTL_LOAD_EXPORTS]},
        {"import (iob_handle_import)", run->c[BCTL_LOAD_IMPORTS] + run->c[BCTL_LOAD_REFUSED]},
        {"read + verify (partner's map)", run->c[BCTL_LOAD_VERIFIED]},
        {"unmap (zx_vmar_unmap)", run->c[BCTL_LOAD_UNMAPS]},
        {"close (zx_handle_close)", run->c[BCTL_LOAD_CLOSES]},
    };
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        bctl_row_t* row = bctl_row_add("D", rates[i].figure, "unix", "4K", o->processes);
        row->ops_per_s = rate(rates[i].count, t);
        snprintf(row->note, sizeof row->note, "%.0f in %.2f s", rates[i].count, t);
        if (i == 5) {
            snprintf(row->note, sizeof row->note,
                     "%.0f in %.2f s, of which %.0f second imports "
                     "refused (ZX_ERR_NOT_FOUND)",
                     rates[i].count, t, run->c[BCTL_LOAD_REFUSED]);
        }
    }
}

/*
 * The verdict rows: accounting, iobd's state, fds and RSS back where they started. True
 * when all pass.
 */
static bool load_verdict_rows(const bctl_load_options_t* o, load_figures_t* f) {
    run_result_t* run = &f->run;
    /* iobd's own count of IOBs made: both runs' creates and every probe after the first. */
    double creates = f->warm.c[BCTL_LOAD_CREATES] + run->c[BCTL_LOAD_CREATES];
    double koid_delta = f->s_end.koid - f->s0.koid;
    double koid_want = 3 * (creates + (double)f->calls_after_start);
    if (koid_delta != koid_want) {
        problem(run, "iobd made %.0f IOBs (koids), the clients counted %.0f", koid_delta / 3,
                koid_want / 3);
    }
    if (f->warm.problems[0] != '\0') {
        problem(run, "warm-up: %.400s", f->warm.problems);
    }
    char want_text[200];
    char got_text[200];
    state_text(&f->s0, want_text, sizeof want_text);
    state_text(&f->s_end, got_text, sizeof got_text);
    bool state_back = same_state(&f->s0, &f->s_end) && same_state(&f->s0, &f->s_warm);
    bool fds_flat = f->u_end.fds == f->u0.fds && f->u_warm.fds == f->u0.fds;
    bool rss_flat = f->u_end.rss_kib <= f->u_warm.rss_kib + LOAD_RSS_SLACK_KIB;
#if defined(__SANITIZE_ADDRESS__)
    /*
     * This build's iobd is the sanitized one too: AddressSanitizer keeps freed memory in
     * quarantine (up to 256 MiB), so RSS says nothing about leaks there (LeakSanitizer does).
     */
    const bool rss_judged = false;
#else
    const bool rss_judged = true;
#endif
    bctl_row_t* row =
        bctl_row_add("D", "accounting (lost/doubled effects)", "unix", "4K", o->processes);
    snprintf(row->verdict, sizeof row->verdict, "%s", run->problems[0] == '\0' ? "pass" : "FAIL");
    snprintf(row->limit, sizeof row->limit, "none");
    snprintf(row->note, sizeof row->note, "%.199s",
             run->problems[0] == '\0'
                 ? "every token imported once, every IOB closed once, every pattern verified"
                 : run->problems);
    row = bctl_row_add("D", "iobd state back to start", "unix", "4K", o->processes);
    snprintf(row->verdict, sizeof row->verdict, "%s", state_back ? "pass" : "FAIL");
    snprintf(row->note, sizeof row->note, "%.95s%s%.95s", got_text,
             state_back ? "; peak " : "; start ", state_back ? "" : want_text);
    if (state_back) {
        size_t used = strlen(row->note);
        snprintf(row->note + used, sizeof row->note - used,
                 "%.0f IOBs %.0f sessions %.0f mappings %.0f tokens", run->peak_state.iobs,
                 run->peak_state.sessions, run->peak_state.mappings, run->peak_state.tokens);
    }
    row = bctl_row_add("D", "iobd fds start/warm/peak/end", "unix", "4K", o->processes);
    snprintf(row->verdict, sizeof row->verdict, "%s", fds_flat ? "pass" : "FAIL");
    snprintf(row->limit, sizeof row->limit, "end=start");
    snprintf(row->note, sizeof row->note,
             "%" PRIu64 " / %" PRIu64 " / %" PRIu64 " / %" PRIu64 " (RLIMIT_NOFILE %" PRIu64 ")",
             f->u0.fds, f->u_warm.fds, run->peak.fds, f->u_end.fds, f->nofile);
    row = bctl_row_add("D", "iobd RSS start/warm/peak/end", "unix", "4K", o->processes);
    snprintf(row->verdict, sizeof row->verdict, "%s",
             !rss_judged ? "info" : rss_flat ? "pass" : "FAIL");
    snprintf(row->limit, sizeof row->limit, "warm+%dM", LOAD_RSS_SLACK_KIB / 1024);
    snprintf(row->note, sizeof row->note, "%.1f / %.1f / %.1f / %.1f MiB%s",
             (double)f->u0.rss_kib / 1024, (double)f->u_warm.rss_kib / 1024,
             (double)run->peak.rss_kib / 1024, (double)f->u_end.rss_kib / 1024,
             rss_judged ? "" : " (not judged: AddressSanitizer's quarantine)");
    return run->problems[0] == '\0' && state_back && fds_flat && (rss_flat || !rss_judged);
}

bool bctl_load_run(const char* self, const char* iobd, const bctl_load_options_t* o) {
    static load_figures_t f; /* the runs' problem texts are large */
    memset(&f, 0, sizeof f);
    f.nofile = bctl_raise_nofile();
    char err[400] = "";
    bctl_iobd_t d;
    bctl_child_t probe = {0, -1, -1};
    bool ok = load_start(self, iobd, &d, &probe, err, sizeof err) &&
              load_runs(self, &d, &probe, o, &f, err, sizeof err);
    bctl_child_end(&probe, 10000);
    bctl_iobd_stop(&d);
    if (!ok) {
        bctl_row_t* row = bctl_row_add("D", "load", "unix", "4K", o->processes);
        snprintf(row->verdict, sizeof row->verdict, "error");
        snprintf(row->note, sizeof row->note, "%.190s", err);
        fprintf(stderr, "iob-bench-control: load: %s\n", err);
        return false;
    }
    load_rate_rows(o, &f.run);
    bool pass = load_verdict_rows(o, &f);
    fprintf(stderr, "iob-bench-control: load: %.0f iterations in %.2f s; %s\n",
            f.run.c[BCTL_LOAD_ITERS], f.run.elapsed_s,
            f.run.problems[0] ? f.run.problems : "accounting ok");
    return pass;
}
