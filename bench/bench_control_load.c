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
 * request "info") reads iobd's counters.
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

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "bench/bench_control.h"

#define LOAD_PAGES 4
#define LOAD_REIMPORT_EVERY 8
/* A partner that has not answered in this long is gone (the whole run is under a minute). */
#define LOAD_PEER_TIMEOUT_MS 60000
#define LOAD_RSS_SLACK_KIB (8 * 1024)

/* ---- the client process ---- */

enum { OP_CREATE, OP_MAP, OP_EXPORT, OP_IMPORT, OP_REIMPORT, OP_UNMAP, OP_CLOSE, OP_COUNT };
static const char* const k_op_names[OP_COUNT] = {"create",   "map",   "export", "import",
                                                 "reimport", "unmap", "close"};

/* The counters every process reports, in this order, under these names. */
enum {
    C_ITERS,
    C_CREATES,
    C_MAPS,
    C_WRITES,
    C_EXPORTS,
    C_IMPORTS,
    C_VERIFIED,
    C_MISMATCHES,
    C_ACKED,
    C_REFUSED,
    C_DOUBLED,
    C_UNMAPS,
    C_CLOSES,
    C_ERRORS,
    C_COUNT
};
static const char* const k_counter_names[C_COUNT] = {
    "iters",    "creates",    "maps",  "writes",           "exports",           "imports",
    "verified", "mismatches", "acked", "reimport_refused", "reimport_accepted", "unmaps",
    "closes",   "errors"};

typedef struct load_msg {
    uint32_t seq;
    uint32_t more;      /* the sender wants another iteration */
    uint32_t has_token; /* token messages: the sender's IOB made it to an export */
    uint32_t verified;  /* acknowledgements: the receiver read the pattern back intact */
    uint64_t seed;
    char token[IOB_TOKEN_SIZE];
} load_msg_t;

typedef struct load_state {
    uint64_t c[C_COUNT];
    /* Non-OK statuses by operation: a few distinct ones at most, kept as a small table. */
    struct {
        int op;
        zx_status_t st;
        uint64_t n;
    } err[16];
    size_t nerr;
    uint64_t size;
    char fatal[200];
} load_state_t;

static void note_error(load_state_t* s, int op, zx_status_t st) {
    s->c[C_ERRORS]++;
    for (size_t i = 0; i < s->nerr; i++) {
        if (s->err[i].op == op && s->err[i].st == st) {
            s->err[i].n++;
            return;
        }
    }
    if (s->nerr < sizeof s->err / sizeof s->err[0]) {
        s->err[s->nerr].op = op;
        s->err[s->nerr].st = st;
        s->err[s->nerr].n = 1;
        s->nerr++;
    }
}

static uint64_t pattern_word(uint64_t seed, size_t i) {
    uint64_t x = seed + (uint64_t)i * UINT64_C(0x9e3779b97f4a7c15);
    x ^= x >> 31;
    return x * UINT64_C(0xbf58476d1ce4e5b9);
}

static bool peer_send(load_state_t* s, const load_msg_t* m) {
    for (;;) {
        ssize_t n = send(BCTL_FD_PEER, m, sizeof *m, MSG_NOSIGNAL);
        if (n == (ssize_t)sizeof *m) {
            return true;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        snprintf(s->fatal, sizeof s->fatal, "send to partner: %s",
                 n < 0 ? strerror(errno) : "short");
        return false;
    }
}

static bool peer_recv(load_state_t* s, load_msg_t* m) {
    struct pollfd p = {.fd = BCTL_FD_PEER, .events = POLLIN};
    int rc;
    do {
        rc = poll(&p, 1, LOAD_PEER_TIMEOUT_MS);
    } while (rc < 0 && errno == EINTR);
    if (rc <= 0) {
        snprintf(s->fatal, sizeof s->fatal, "partner silent for %d ms", LOAD_PEER_TIMEOUT_MS);
        return false;
    }
    ssize_t n;
    do {
        n = recv(BCTL_FD_PEER, m, sizeof *m, 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof *m) {
        snprintf(s->fatal, sizeof s->fatal, "partner gone (%s)",
                 n < 0    ? strerror(errno)
                 : n == 0 ? "closed"
                          : "short message");
        return false;
    }
    m->token[sizeof m->token - 1] = '\0';
    return true;
}

static bool unmap(load_state_t* s, zx_vaddr_t addr) {
    zx_status_t st = zx_vmar_unmap(zx_vmar_root_self(), addr, s->size);
    if (st != ZX_OK) {
        note_error(s, OP_UNMAP, st);
        return false;
    }
    s->c[C_UNMAPS]++;
    return true;
}

static void close_handle(load_state_t* s, zx_handle_t h) {
    zx_status_t st = zx_handle_close(h);
    if (st != ZX_OK) {
        note_error(s, OP_CLOSE, st);
    } else {
        s->c[C_CLOSES]++;
    }
}

/* The creator's half up to the export. On failure everything made so far is undone. */
static bool make_and_export(load_state_t* s, uint64_t seed, zx_handle_t* ep0_out,
                            zx_vaddr_t* addr_out, char token[IOB_TOKEN_SIZE]) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_PRIVATE;
    r.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
               ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    r.size = s->size;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
    zx_handle_t ep0;
    zx_handle_t ep1;
    zx_status_t st = zx_iob_create(0, &r, 1, &ep0, &ep1);
    if (st != ZX_OK) {
        note_error(s, OP_CREATE, st);
        return false;
    }
    s->c[C_CREATES]++;
    zx_vaddr_t addr = 0;
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, ep0, 0, 0,
                         s->size, &addr);
    if (st != ZX_OK) {
        note_error(s, OP_MAP, st);
        close_handle(s, ep0);
        close_handle(s, ep1);
        return false;
    }
    s->c[C_MAPS]++;
    uint64_t* w = (uint64_t*)addr;
    for (size_t i = 0; i < s->size / sizeof *w; i++) {
        w[i] = pattern_word(seed, i);
    }
    s->c[C_WRITES]++;
    st = iob_handle_export(ep1, token);
    if (st != ZX_OK) {
        note_error(s, OP_EXPORT, st);
        unmap(s, addr);
        close_handle(s, ep0);
        close_handle(s, ep1);
        return false;
    }
    s->c[C_EXPORTS]++;
    *ep0_out = ep0;
    *addr_out = addr;
    return true;
}

/* The importer's half: true when the partner's pattern was read back intact. */
static bool import_and_verify(load_state_t* s, const load_msg_t* m) {
    zx_handle_t h;
    zx_status_t st = iob_handle_import(m->token, &h);
    if (st != ZX_OK) {
        note_error(s, OP_IMPORT, st);
        return false;
    }
    s->c[C_IMPORTS]++;
    if (m->seq % LOAD_REIMPORT_EVERY == 0) {
        /* A token is single-use: a second import would be a doubled effect. */
        zx_handle_t again;
        st = iob_handle_import(m->token, &again);
        if (st == ZX_ERR_NOT_FOUND) {
            s->c[C_REFUSED]++;
        } else if (st == ZX_OK) {
            s->c[C_DOUBLED]++;
            zx_handle_close(again);
        } else {
            note_error(s, OP_REIMPORT, st);
        }
    }
    bool good = false;
    zx_vaddr_t addr = 0;
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, h, 0, 0, s->size, &addr);
    if (st != ZX_OK) {
        note_error(s, OP_MAP, st);
    } else {
        s->c[C_MAPS]++;
        const volatile uint64_t* w = (const volatile uint64_t*)addr;
        good = true;
        for (size_t i = 0; i < s->size / sizeof *w; i++) {
            good = good && w[i] == pattern_word(m->seed, i);
        }
        s->c[good ? C_VERIFIED : C_MISMATCHES]++;
        unmap(s, addr);
    }
    close_handle(s, h);
    return good;
}

static void run_loop(load_state_t* s, uint32_t id, int64_t end, uint64_t max_iters) {
    for (uint32_t seq = 1;; seq++) {
        uint64_t seed = ((uint64_t)id << 32) | seq;
        zx_handle_t ep0 = ZX_HANDLE_INVALID;
        zx_vaddr_t addr = 0;
        load_msg_t out;
        memset(&out, 0, sizeof out);
        out.seq = seq;
        out.seed = seed;
        out.has_token = make_and_export(s, seed, &ep0, &addr, out.token);
        out.more = bctl_now_ns() < end && seq < max_iters;
        load_msg_t in;
        if (!peer_send(s, &out) || !peer_recv(s, &in)) {
            return; /* the token, if any, expires in iobd: the orchestrator sees the gap */
        }
        load_msg_t ack;
        memset(&ack, 0, sizeof ack);
        ack.seq = in.seq;
        ack.verified = in.has_token && import_and_verify(s, &in);
        load_msg_t their_ack;
        if (!peer_send(s, &ack) || !peer_recv(s, &their_ack)) {
            return;
        }
        if (out.has_token) {
            s->c[C_ACKED] += their_ack.verified && their_ack.seq == seq;
            unmap(s, addr);
            close_handle(s, ep0);
        }
        s->c[C_ITERS]++;
        /* Both sides saw both flags: they stop after the same iteration. */
        if (!out.more || !in.more) {
            return;
        }
    }
}

int bctl_load_main(int argc, char** argv) {
    const char* target = NULL;
    uint32_t id = 0;
    for (int i = 3; i + 1 < argc; i += 2) { /* argv: self --role NAME then pairs */
        if (strcmp(argv[i], "--target") == 0) {
            target = argv[i + 1];
        } else if (strcmp(argv[i], "--id") == 0) {
            id = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        }
    }
    iob_client_t* client = NULL;
    zx_status_t st = iob_client_connect(target, &client);
    if (st != ZX_OK) {
        bctl_write_line(BCTL_FD_RES, "err connect %s: %s", target ? target : "(default)",
                        zx_status_get_string(st));
        return 1;
    }
    load_state_t s;
    memset(&s, 0, sizeof s);
    s.size = (uint64_t)zx_system_get_page_size() * LOAD_PAGES;
    bctl_write_line(BCTL_FD_RES, "ok ready");
    char line[BCTL_LINE_MAX];
    long long start = 0;
    long long dur = 0;
    unsigned long long max_iters = 0;
    int rc = 0;
    if (bctl_read_line(BCTL_FD_CMD, line, sizeof line, INT64_C(1) << 40) != 0 ||
        sscanf(line, "run %lld %lld %llu", &start, &dur, &max_iters) != 3) {
        rc = 1; /* the orchestrator gave up before the run: nothing to report */
    } else {
        struct timespec ts = {.tv_sec = (time_t)(start / 1000000000),
                              .tv_nsec = (long)(start % 1000000000)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        run_loop(&s, id, start + dur, max_iters);
        char reply[BCTL_LINE_MAX];
        int n = snprintf(reply, sizeof reply, "ok end_ns=%" PRId64, bctl_now_ns());
        for (int i = 0; i < C_COUNT && n > 0 && (size_t)n < sizeof reply; i++) {
            n += snprintf(reply + n, sizeof reply - (size_t)n, " %s=%" PRIu64, k_counter_names[i],
                          s.c[i]);
        }
        for (size_t i = 0; i < s.nerr && n > 0 && (size_t)n < sizeof reply; i++) {
            n += snprintf(reply + n, sizeof reply - (size_t)n, " err_%s_%s=%" PRIu64,
                          k_op_names[s.err[i].op], zx_status_get_string(s.err[i].st), s.err[i].n);
        }
        if (s.fatal[0] != '\0' && n > 0 && (size_t)n < sizeof reply) {
            /* Spaces would split the value: the reason goes last, after "fatal=". */
            snprintf(reply + n, sizeof reply - (size_t)n, " fatal=%s", s.fatal);
        }
        bctl_write_line(BCTL_FD_RES, "%s", reply);
        (void)bctl_read_line(BCTL_FD_CMD, line, sizeof line, INT64_C(1) << 40); /* "quit" */
    }
    /* Closing the session closes anything left; the mappings go when the process exits. */
    iob_client_close(client);
    return rc;
}

/* ---- the orchestrator ---- */

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
    double c[C_COUNT]; /* sums over all processes */
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
            double c[C_COUNT];
            for (int k = 0; k < C_COUNT; k++) {
                c[k] = 0;
                bctl_kv(replies[i], k_counter_names[k], &c[k]);
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
            if (c[C_CREATES] != c[C_EXPORTS] || c[C_EXPORTS] != c[C_ACKED]) {
                problem(r, "client %d: %.0f created, %.0f exported, %.0f verified by the partner",
                        i, c[C_CREATES], c[C_EXPORTS], c[C_ACKED]);
            }
            if (c[C_MAPS] != c[C_UNMAPS] || c[C_CLOSES] != c[C_CREATES] + c[C_IMPORTS]) {
                problem(r,
                        "client %d: %.0f maps, %.0f unmaps, %.0f closes for %.0f creates + "
                        "%.0f imports",
                        i, c[C_MAPS], c[C_UNMAPS], c[C_CLOSES], c[C_CREATES], c[C_IMPORTS]);
            }
            if (c[C_MISMATCHES] != 0 || c[C_DOUBLED] != 0) {
                problem(r, "client %d: %.0f pattern mismatches, %.0f second imports accepted", i,
                        c[C_MISMATCHES], c[C_DOUBLED]);
            }
            if (i % 2 == 1) {
                double pe = 0;
                double pi = 0;
                bctl_kv(replies[i - 1], "exports", &pe);
                bctl_kv(replies[i - 1], "imports", &pi);
                if (pe != c[C_IMPORTS] || c[C_EXPORTS] != pi || c[C_IMPORTS] != c[C_VERIFIED]) {
                    problem(r, "pair %d/%d: exports %.0f/%.0f, imports %.0f/%.0f", i - 1, i, pe,
                            c[C_EXPORTS], pi, c[C_IMPORTS]);
                }
            }
        }
        r->elapsed_s = (last_end - (double)start) / 1e9;
        if (r->c[C_ERRORS] != 0) {
            problem(r, "%.0f non-OK statuses", r->c[C_ERRORS]);
        }
        if (r->c[C_ITERS] == 0) {
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

bool bctl_load_run(const char* self, const char* iobd, const bctl_load_options_t* o) {
    uint64_t nofile = bctl_raise_nofile();
    char err[400] = "";
    bctl_iobd_t d;
    bctl_child_t probe = {0, -1, -1};
    bool ok = true;
    /*
     * iobd's default limits: the load (every client under this one uid, each session with
     * at most two IOBs, two mappings and one token at a time) must fit them.
     */
    const char* extra[] = {"--exit-with-parent", NULL};
    if (!bctl_iobd_start(iobd, "off", false, extra, &d, err, sizeof err)) {
        ok = false;
    }
    if (ok) {
        char a0[1024], a1[16] = "--role", a2[16] = "mgmt", a3[16] = "--target", a4[200];
        snprintf(a0, sizeof a0, "%s", self);
        snprintf(a4, sizeof a4, "%s", d.target);
        char* argv[] = {a0, a1, a2, a3, a4, NULL};
        char line[BCTL_LINE_MAX] = "";
        if (!bctl_spawn_role(self, argv, -1, &probe) ||
            bctl_read_line(probe.res_fd, line, sizeof line, 30000) != 0 ||
            strncmp(line, "ok", 2) != 0) {
            snprintf(err, sizeof err, "probe did not start: %.200s", line);
            ok = false;
        }
    }
    server_state_t s0;
    server_state_t s_warm;
    server_state_t s_end;
    usage_t u0 = {0, 0};
    usage_t u_warm = {0, 0};
    usage_t u_end = {0, 0};
    run_result_t warm;
    run_result_t run;
    memset(&warm, 0, sizeof warm);
    memset(&run, 0, sizeof run);
    uint64_t calls_after_start = 0;
    ok = ok && probe_info(&probe, &s0, err, sizeof err) && settled_usage(d.pid, &u0);
    /*
     * Warm-up: the same processes for a short time, so the allocator's pools and gRPC's
     * buffers have grown once; the measured run must leave iobd where the warm-up did.
     */
    bctl_load_options_t wo = *o;
    wo.duration_ns =
        o->duration_ns / 10 > INT64_C(1000000000) ? o->duration_ns / 10 : INT64_C(1000000000);
    fprintf(stderr, "iob-bench-control: load: %d processes, warm-up %.1f s, run %.1f s\n",
            o->processes, (double)wo.duration_ns / 1e9, (double)o->duration_ns / 1e9);
    ok = ok && load_once(self, &d, &probe, &s0, &wo, &warm, err, sizeof err);
    calls_after_start += warm.info_calls;
    ok = ok && settle(&probe, &s0, &s_warm, &calls_after_start, err, sizeof err) &&
         settled_usage(d.pid, &u_warm);
    ok = ok && load_once(self, &d, &probe, &s0, o, &run, err, sizeof err);
    calls_after_start += run.info_calls;
    ok = ok && settle(&probe, &s0, &s_end, &calls_after_start, err, sizeof err) &&
         settled_usage(d.pid, &u_end);
    bctl_child_end(&probe, 10000);
    bctl_iobd_stop(&d);

    if (!ok) {
        bctl_row_t* row = bctl_row_add("D", "load", "unix", "4K", o->processes);
        snprintf(row->verdict, sizeof row->verdict, "error");
        snprintf(row->note, sizeof row->note, "%.190s", err);
        fprintf(stderr, "iob-bench-control: load: %s\n", err);
        return false;
    }
    /* iobd's own count of IOBs made: both runs' creates and every probe after the first. */
    double creates = warm.c[C_CREATES] + run.c[C_CREATES];
    double koid_delta = s_end.koid - s0.koid;
    double koid_want = 3 * (creates + (double)calls_after_start);
    if (koid_delta != koid_want) {
        problem(&run, "iobd made %.0f IOBs (koids), the clients counted %.0f", koid_delta / 3,
                koid_want / 3);
    }
    if (warm.problems[0] != '\0') {
        problem(&run, "warm-up: %.400s", warm.problems);
    }
    char want_text[200];
    char got_text[200];
    state_text(&s0, want_text, sizeof want_text);
    state_text(&s_end, got_text, sizeof got_text);
    bool state_back = same_state(&s0, &s_end) && same_state(&s0, &s_warm);
    bool fds_flat = u_end.fds == u0.fds && u_warm.fds == u0.fds;
    bool rss_flat = u_end.rss_kib <= u_warm.rss_kib + LOAD_RSS_SLACK_KIB;
#if defined(__SANITIZE_ADDRESS__)
    /*
     * This build's iobd is the sanitized one too: AddressSanitizer keeps freed memory in
     * quarantine (up to 256 MiB), so RSS says nothing about leaks there (LeakSanitizer does).
     */
    const bool rss_judged = false;
#else
    const bool rss_judged = true;
#endif

    const double t = run.elapsed_s;
    struct {
        const char* figure;
        double count;
    } rates[] = {
        {"iterations (all steps, 1 IOB each)", run.c[C_ITERS]},
        {"create (zx_iob_create)", run.c[C_CREATES]},
        {"map (zx_vmar_map_iob, rw + ro)", run.c[C_MAPS]},
        {"write pattern (16 KiB)", run.c[C_WRITES]},
        {"export (iob_handle_export)", run.c[C_EXPORTS]},
        {"import (iob_handle_import)", run.c[C_IMPORTS] + run.c[C_REFUSED]},
        {"read + verify (partner's map)", run.c[C_VERIFIED]},
        {"unmap (zx_vmar_unmap)", run.c[C_UNMAPS]},
        {"close (zx_handle_close)", run.c[C_CLOSES]},
    };
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        bctl_row_t* row = bctl_row_add("D", rates[i].figure, "unix", "4K", o->processes);
        row->ops_per_s = rate(rates[i].count, t);
        snprintf(row->note, sizeof row->note, "%.0f in %.2f s", rates[i].count, t);
        if (i == 5) {
            snprintf(row->note, sizeof row->note,
                     "%.0f in %.2f s, of which %.0f second imports "
                     "refused (ZX_ERR_NOT_FOUND)",
                     rates[i].count, t, run.c[C_REFUSED]);
        }
    }
    bctl_row_t* row =
        bctl_row_add("D", "accounting (lost/doubled effects)", "unix", "4K", o->processes);
    snprintf(row->verdict, sizeof row->verdict, "%s", run.problems[0] == '\0' ? "pass" : "FAIL");
    snprintf(row->limit, sizeof row->limit, "none");
    snprintf(row->note, sizeof row->note, "%.199s",
             run.problems[0] == '\0'
                 ? "every token imported once, every IOB closed once, every pattern verified"
                 : run.problems);
    row = bctl_row_add("D", "iobd state back to start", "unix", "4K", o->processes);
    snprintf(row->verdict, sizeof row->verdict, "%s", state_back ? "pass" : "FAIL");
    snprintf(row->note, sizeof row->note, "%.95s%s%.95s", got_text,
             state_back ? "; peak " : "; start ", state_back ? "" : want_text);
    if (state_back) {
        size_t used = strlen(row->note);
        snprintf(row->note + used, sizeof row->note - used,
                 "%.0f IOBs %.0f sessions %.0f mappings %.0f tokens", run.peak_state.iobs,
                 run.peak_state.sessions, run.peak_state.mappings, run.peak_state.tokens);
    }
    row = bctl_row_add("D", "iobd fds start/warm/peak/end", "unix", "4K", o->processes);
    snprintf(row->verdict, sizeof row->verdict, "%s", fds_flat ? "pass" : "FAIL");
    snprintf(row->limit, sizeof row->limit, "end=start");
    snprintf(row->note, sizeof row->note,
             "%" PRIu64 " / %" PRIu64 " / %" PRIu64 " / %" PRIu64 " (RLIMIT_NOFILE %" PRIu64 ")",
             u0.fds, u_warm.fds, run.peak.fds, u_end.fds, nofile);
    row = bctl_row_add("D", "iobd RSS start/warm/peak/end", "unix", "4K", o->processes);
    snprintf(row->verdict, sizeof row->verdict, "%s",
             !rss_judged ? "info" : rss_flat ? "pass" : "FAIL");
    snprintf(row->limit, sizeof row->limit, "warm+%dM", LOAD_RSS_SLACK_KIB / 1024);
    snprintf(row->note, sizeof row->note, "%.1f / %.1f / %.1f / %.1f MiB%s",
             (double)u0.rss_kib / 1024, (double)u_warm.rss_kib / 1024,
             (double)run.peak.rss_kib / 1024, (double)u_end.rss_kib / 1024,
             rss_judged ? "" : " (not judged: AddressSanitizer's quarantine)");
    fprintf(stderr, "iob-bench-control: load: %.0f iterations in %.2f s; %s\n", run.c[C_ITERS], t,
            run.problems[0] ? run.problems : "accounting ok");
    return run.problems[0] == '\0' && state_back && fds_flat && (rss_flat || !rss_judged);
}
