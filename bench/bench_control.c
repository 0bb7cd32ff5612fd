/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-control: the control-plane figures of issues 3 and 4, each against a floor
 * measured in the same run.
 *
 *   iob-bench-control [--quick] [--csv F] [--json F] [--reserve-hugepages]
 *                     [--runs N] [--duration-ms N] [--rounds N] [--no-tcp] [--no-2m]
 *   iob-bench-control [--quick] [--csv F] [--json F] [--scale] [--load]
 *                     [--processes N] [--seconds S]
 *
 * A. Management plane (issue 3). One client (its own iob_conn connection): p50/p99 of the
 *    bare unary calls (GetSignals on a live handle: the cheapest; GetInfo and ServerInfo
 *    beside it) and of create + close of a one-page IOB (CreateIob, CloseHandle ep0,
 *    CloseHandle ep1), interleaved. Four clients (four processes): aggregate unary calls/s
 *    and create+close pairs/s over the same fixed time windows, alternating. Over the Unix
 *    socket and loopback TCP, on 4 KiB backing and, beside it, 2 MiB hugepages.
 * B. Mapping (issue 4). zx_iob_create of one 64 MiB region against memfd_create + fallocate +
 *    seal in the same process, and, in a second warm process, iob_handle_import +
 *    zx_vmar_map_iob(PERM_READ | MAP_RANGE) + one read per page against mmap(MAP_POPULATE)
 *    + the same reads of an equivalent memfd. 2 MiB hugepages; 4 KiB (labelled) otherwise.
 * C. Scale (--scale, bench_control_scale.c). create+close and import against iobds holding
 *    10,000 live IOBs, 10,000 outstanding tokens, 256 sessions, or 10,000 IOBs in the
 *    measuring session itself, paired round by round with one holding 10 IOBs; criterion
 *    1.2x.
 * D. Load (--load, bench_control_load.c). 256 client processes (--processes) for 15 s
 *    (--seconds) creating, mapping, writing, exporting, importing, verifying and closing,
 *    with every effect accounted for; operations per second, and iobd's state, fds and RSS
 *    back where they started. A failed check is an error here (exit 1): it is a bug, not a
 *    figure.
 * C and D run instead of A and B, each on private 4 KiB iobds of its own (IOB_SERVER is
 * not used).
 *
 * The benchmark starts its own iobd (path: $IOBD, else the build's) on a private Unix socket
 * and a free loopback TCP port (--insecure), one with --hugepages off and one with 2M when
 * the pool allows, unless IOB_SERVER names a server to use instead (IOB_INSECURE=1 for a
 * plaintext TCP one). Exit status: 0 when every figure was measured (criteria failing is a
 * result, reported as FAIL, not an error), 1 on errors, 77 when iobd is not available.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench_control.h"
#include "client/testkit/hugepage_pool.h"

#ifndef IOB_BENCH_IOBD
#define IOB_BENCH_IOBD ""
#endif

#define MAP_SIZE (UINT64_C(64) << 20)
/* 2 MiB pages section B holds at once: the IOB (32) and the floor (32), plus slack for a
 * round whose pages the server has not given back yet. */
#define HP_PAGES_MAP 100
/* Section A on 2M: four clients, each with its probe IOB and one IOB in flight. */
#define HP_PAGES_MGMT 12

typedef struct target {
    const char* transport; /* "unix" / "tcp" */
    const char* address;
    const char* backing;   /* "4K" / "2M" as configured; external servers say theirs */
    bool insecure;
} target_t;

static bctl_row_t g_rows[128];
static size_t g_nrows;
static bool g_errors;
static char g_self[1024];

static bctl_row_t* add_row(const char* section, const char* figure, const char* transport,
                           const char* backing, int clients) {
    if (g_nrows == sizeof g_rows / sizeof g_rows[0]) {
        static bctl_row_t overflow;
        return &overflow;
    }
    bctl_row_t* r = &g_rows[g_nrows++];
    memset(r, 0, sizeof *r);
    snprintf(r->section, sizeof r->section, "%s", section);
    snprintf(r->figure, sizeof r->figure, "%s", figure);
    snprintf(r->transport, sizeof r->transport, "%s", transport);
    snprintf(r->backing, sizeof r->backing, "%s", backing);
    r->clients = clients;
    r->ratio = NAN;
    snprintf(r->verdict, sizeof r->verdict, "info");
    return r;
}

bctl_row_t* bctl_row_add(const char* section, const char* figure, const char* transport,
                         const char* backing, int clients) {
    return add_row(section, figure, transport, backing, clients);
}

static void error_row(const char* section, const char* figure, const target_t* t, int clients,
                      const char* what) {
    bctl_row_t* r = add_row(section, figure, t->transport, t->backing, clients);
    snprintf(r->verdict, sizeof r->verdict, "error");
    /* Notes are cut to fit the column: say so in the precision, not by accident. */
    snprintf(r->note, sizeof r->note, "%.*s", (int)sizeof r->note - 1, what);
    fprintf(stderr, "iob-bench-control: %s (%s %s): %s\n", figure, t->transport, t->backing, what);
    g_errors = true;
}

/* Verdict of a "ratio at most limit" (le) or "at least limit" criterion. */
static void judge(bctl_row_t* r, double ratio, double limit, bool le, bool applies) {
    r->ratio = ratio;
    snprintf(r->limit, sizeof r->limit, "%s%.1fx", le ? "<=" : ">=", limit);
    if (!applies) {
        snprintf(r->verdict, sizeof r->verdict, "info");
    } else if (le ? ratio <= limit : ratio >= limit) {
        snprintf(r->verdict, sizeof r->verdict, "pass");
    } else {
        snprintf(r->verdict, sizeof r->verdict, "FAIL");
    }
}

void bctl_row_judge(bctl_row_t* r, double ratio, double limit, bool le, bool applies) {
    judge(r, ratio, limit, le, applies);
}

/* ---- spawning roles ---- */

static bool spawn_mgmt(const target_t* t, bctl_child_t* c, char* err, size_t err_len) {
    char a0[1024], a1[16] = "--role", a2[16] = "mgmt", a3[16] = "--target", a4[256],
        a5[16] = "--insecure";
    snprintf(a0, sizeof a0, "%s", g_self);
    snprintf(a4, sizeof a4, "%s", t->address);
    char* argv[] = {a0, a1, a2, a3, a4, t->insecure ? a5 : NULL, NULL};
    if (!bctl_spawn_role(g_self, argv, -1, c)) {
        snprintf(err, err_len, "spawn: %s", strerror(errno));
        return false;
    }
    char line[BCTL_LINE_MAX];
    if (bctl_read_line(c->res_fd, line, sizeof line, 30000) != 0 || strncmp(line, "ok", 2) != 0) {
        snprintf(err, err_len, "client did not start: %.200s", line[0] ? line : "(no reply)");
        bctl_child_end(c, 2000);
        return false;
    }
    return true;
}

/* ---- A. management plane ---- */

static void mgmt_latency(const bctl_options_t* o, const target_t* t) {
    bctl_child_t c = {0, -1, -1};
    char err[300];
    if (!spawn_mgmt(t, &c, err, sizeof err)) {
        error_row("A", "1 client latencies", t, 1, err);
        return;
    }
    int blocks = o->quick ? 5 : 20;
    int iters = o->quick ? 20 : 50;
    char line[BCTL_LINE_MAX] = "";
    bool ok = bctl_write_line(c.cmd_fd, "lat %d %d", blocks, iters) &&
              bctl_read_line(c.res_fd, line, sizeof line, 300000) == 0 &&
              strncmp(line, "ok", 2) == 0;
    bctl_child_end(&c, 5000);
    if (!ok) {
        error_row("A", "1 client latencies", t, 1, line[0] ? line : "client failed");
        return;
    }
    /* The child also reports "close1" and "cc2" (the same CloseHandles call seen twice). */
    bctl_stats_t unary, getinfo, serverinfo, create, close_both, cc;
    bctl_stats_parse(line, "unary", &unary);
    bctl_stats_parse(line, "getinfo", &getinfo);
    bctl_stats_parse(line, "serverinfo", &serverinfo);
    bctl_stats_parse(line, "create", &create);
    bctl_stats_parse(line, "close0", &close_both);
    bctl_stats_parse(line, "cc", &cc);
    /* The criteria are stated for 4 KiB backing; hugepages are reported beside. */
    bool applies = strcmp(t->backing, "4K") == 0;
    const char* ref = "unary GetSignals p50";

    bctl_row_t* r = add_row("A", "unary GetSignals (the floor)", t->transport, t->backing, 1);
    r->lat_us = unary;
    snprintf(r->note, sizeof r->note, "cheapest call of iob.v1: one handle in, signals out");
    const struct {
        const char* figure;
        const bctl_stats_t* lat;
    } calls[] = {
        {"unary GetInfo", &getinfo},
        {"unary ServerInfo", &serverinfo},
        {"create (CreateIob, 1 page)", &create},
        {"close both (CloseHandles)", &close_both},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        r = add_row("A", calls[i].figure, t->transport, t->backing, 1);
        r->lat_us = *calls[i].lat;
        r->ratio = calls[i].lat->p50 / unary.p50;
        snprintf(r->reference, sizeof r->reference, "%s", ref);
    }
    r = add_row("A", "create+close (2 calls)", t->transport, t->backing, 1);
    r->lat_us = cc;
    snprintf(r->reference, sizeof r->reference, "%s", ref);
    judge(r, cc.p50 / unary.p50, 2.5, true, applies);
    snprintf(r->note, sizeof r->note, "CreateIob + CloseHandles(ep0, ep1), as zx_handle_close_many%s",
             applies ? "" : "; criterion stated for 4K");
}

typedef struct tput_result {
    double ops_per_s; /* aggregate */
    double lat_p50;   /* mean of the clients' p50, us */
    double lat_p99;   /* worst client's p99, us */
} tput_result_t;

static bool tput_phase(bctl_child_t* c, int n, const char* op, int64_t dur, tput_result_t* out,
                       char* err, size_t err_len) {
    /* Everyone starts at the same instant, after all requests are out. */
    int64_t start = bctl_now_ns() + 100 * 1000000;
    for (int i = 0; i < n; i++) {
        if (!bctl_write_line(c[i].cmd_fd, "tput %s %" PRId64 " %" PRId64, op, start, dur)) {
            snprintf(err, err_len, "client %d went away", i);
            return false;
        }
    }
    memset(out, 0, sizeof *out);
    bool ok = true;
    for (int i = 0; i < n; i++) {
        char line[BCTL_LINE_MAX] = "";
        double count = 0;
        double elapsed = 0;
        bctl_stats_t lat;
        if (bctl_read_line(c[i].res_fd, line, sizeof line, dur / 1000000 + 60000) != 0 ||
            strncmp(line, "ok", 2) != 0 || !bctl_kv(line, "count", &count) ||
            !bctl_kv(line, "elapsed_ns", &elapsed) || elapsed <= 0) {
            snprintf(err, err_len, "client %d: %s", i, line[0] ? line : "no reply");
            ok = false;
            continue;
        }
        bctl_stats_parse(line, "lat", &lat);
        out->ops_per_s += count / (elapsed / 1e9);
        out->lat_p50 += lat.p50 / n;
        if (lat.p99 > out->lat_p99) {
            out->lat_p99 = lat.p99;
        }
    }
    return ok;
}

static int cmp_tput(const void* a, const void* b) {
    double x = ((const tput_result_t*)a)->ops_per_s;
    double y = ((const tput_result_t*)b)->ops_per_s;
    return x < y ? -1 : x > y;
}

static void mgmt_concurrent(const bctl_options_t* o, const target_t* t) {
    enum { N = BCTL_MAX_CLIENTS };
    bctl_child_t c[N];
    char err[300] = "";
    int started = 0;
    for (; started < N; started++) {
        c[started] = (bctl_child_t){0, -1, -1};
        if (!spawn_mgmt(t, &c[started], err, sizeof err)) {
            break;
        }
    }
    tput_result_t unary[16];
    tput_result_t cc[16];
    int rounds = o->rounds < 16 ? o->rounds : 16;
    bool ok = started == N;
    /* Alternating windows, so drift in the machine's load hits both series alike. */
    for (int i = 0; ok && i < rounds; i++) {
        ok = tput_phase(c, N, "unary", o->duration_ns, &unary[i], err, sizeof err) &&
             tput_phase(c, N, "cc", o->duration_ns, &cc[i], err, sizeof err);
    }
    for (int i = 0; i < started; i++) {
        bctl_child_end(&c[i], 5000);
    }
    if (!ok) {
        error_row("A", "4 clients throughput", t, N, err);
        return;
    }
    qsort(unary, (size_t)rounds, sizeof unary[0], cmp_tput);
    qsort(cc, (size_t)rounds, sizeof cc[0], cmp_tput);
    tput_result_t mu = unary[rounds / 2];
    tput_result_t mc = cc[rounds / 2];
    bool applies = strcmp(t->backing, "4K") == 0;

    bctl_row_t* r = add_row("A", "4 clients: unary GetSignals", t->transport, t->backing, N);
    r->ops_per_s = mu.ops_per_s;
    r->lat_us.p50 = mu.lat_p50;
    r->lat_us.p99 = mu.lat_p99;
    r->lat_us.n = (size_t)rounds;
    snprintf(r->note, sizeof r->note,
             "calls/s, median of %d windows of %.1f s (range %.0f-%.0f); p50/p99 under load",
             rounds, (double)o->duration_ns / 1e9, unary[0].ops_per_s,
             unary[rounds - 1].ops_per_s);
    r = add_row("A", "4 clients: create+close pairs", t->transport, t->backing, N);
    r->ops_per_s = mc.ops_per_s;
    r->lat_us.p50 = mc.lat_p50;
    r->lat_us.p99 = mc.lat_p99;
    r->lat_us.n = (size_t)rounds;
    snprintf(r->reference, sizeof r->reference, "4-client unary calls/s");
    judge(r, mc.ops_per_s / mu.ops_per_s, 0.4, false, applies);
    snprintf(r->note, sizeof r->note,
             "pairs/s (2 calls each: ceiling 0.5x), range %.0f-%.0f%s", cc[0].ops_per_s,
             cc[rounds - 1].ops_per_s, applies ? "" : "; criterion stated for 4K");
}

/* ---- B. mapping ---- */

static void map_skip_rows(const char* backing, const char* why) {
    bctl_row_t* r = add_row("B", "create 64 MiB IOB", "unix", backing, 1);
    snprintf(r->verdict, sizeof r->verdict, "skip");
    snprintf(r->limit, sizeof r->limit, "<=1.3x");
    snprintf(r->note, sizeof r->note, "%s", why);
    r = add_row("B", "import+map+read (2nd process)", "unix", backing, 1);
    snprintf(r->verdict, sizeof r->verdict, "skip");
    snprintf(r->limit, sizeof r->limit, "<500us");
    snprintf(r->note, sizeof r->note, "%s", why);
}

static void map_figures(const bctl_options_t* o, const target_t* t) {
    bool huge = strcmp(t->backing, "2M") == 0;
    uint64_t page = huge ? (UINT64_C(2) << 20) : 4096;
    int warm = o->quick ? 2 : 3;
    int runs = o->runs;
    char s_runs[16], s_warm[16], s_size[32], s_page[32], s_huge[4];
    snprintf(s_runs, sizeof s_runs, "%d", runs);
    snprintf(s_warm, sizeof s_warm, "%d", warm);
    snprintf(s_size, sizeof s_size, "%" PRIu64, MAP_SIZE);
    snprintf(s_page, sizeof s_page, "%" PRIu64, page);
    snprintf(s_huge, sizeof s_huge, "%d", huge ? 1 : 0);
    char a0[1024], a1[16] = "--role", a2b[16] = "map-import", a2a[16] = "map-create",
        k_target[16] = "--target", v_target[256], k_runs[16] = "--runs", k_warm[16] = "--warm",
        k_size[16] = "--size", k_page[16] = "--page", k_huge[16] = "--hugetlb";
    snprintf(a0, sizeof a0, "%s", g_self);
    snprintf(v_target, sizeof v_target, "%s", t->address);
    char* argv_b[] = {a0, a1, a2b, k_target, v_target, k_runs, s_runs, k_warm, s_warm,
                      k_size, s_size, k_page, s_page, k_huge, s_huge, NULL};
    char* argv_a[] = {a0, a1, a2a, k_target, v_target, k_runs, s_runs, k_warm, s_warm,
                      k_size, s_size, k_page, s_page, k_huge, s_huge, NULL};

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
        error_row("B", "mapping", t, 1, strerror(errno));
        return;
    }
    bctl_child_t b = {0, -1, -1};
    bctl_child_t a = {0, -1, -1};
    char line_a[BCTL_LINE_MAX] = "";
    char line_b[BCTL_LINE_MAX] = "";
    char err[300] = "";
    /* B first, and connected, so that the measured rounds find it warm. */
    if (!bctl_spawn_role(g_self, argv_b, sp[1], &b)) {
        snprintf(err, sizeof err, "spawn B: %s", strerror(errno));
    } else if (bctl_read_line(b.res_fd, line_b, sizeof line_b, 30000) != 0 ||
               strncmp(line_b, "ok", 2) != 0) {
        snprintf(err, sizeof err, "B did not start: %.250s", line_b);
    } else if (!bctl_spawn_role(g_self, argv_a, sp[0], &a)) {
        snprintf(err, sizeof err, "spawn A: %s", strerror(errno));
    }
    close(sp[0]);
    close(sp[1]);
    if (err[0] == '\0' && (bctl_read_line(a.res_fd, line_a, sizeof line_a, 600000) != 0 ||
                           strncmp(line_a, "ok", 2) != 0)) {
        snprintf(err, sizeof err, "A: %.250s", line_a[0] ? line_a : "no reply");
    }
    if (err[0] == '\0' && (bctl_read_line(b.res_fd, line_b, sizeof line_b, 60000) != 0 ||
                           strncmp(line_b, "ok", 2) != 0)) {
        snprintf(err, sizeof err, "B: %.250s", line_b[0] ? line_b : "no reply");
    }
    if (err[0] != '\0' && a.pid > 0) {
        /* A may hold the reason when B only saw A stop. */
        char extra[BCTL_LINE_MAX] = "";
        if (bctl_read_line(a.res_fd, extra, sizeof extra, 2000) == 0 && extra[0] != '\0') {
            size_t used = strlen(err);
            snprintf(err + used, sizeof err - used, " / A: %s", extra);
        }
    }
    bctl_child_end(&a, 10000);
    bctl_child_end(&b, 10000);
    if (err[0] != '\0') {
        error_row("B", "mapping", t, 1, err);
        return;
    }
    bctl_stats_t create, floor_create, export_, import, map, touch, total, fmap, ftouch, ftotal;
    bctl_stats_parse(line_a, "create", &create);
    bctl_stats_parse(line_a, "floor", &floor_create);
    bctl_stats_parse(line_a, "export", &export_);
    bctl_stats_parse(line_b, "import", &import);
    bctl_stats_parse(line_b, "map", &map);
    bctl_stats_parse(line_b, "touch", &touch);
    bctl_stats_parse(line_b, "total", &total);
    bctl_stats_parse(line_b, "fmap", &fmap);
    bctl_stats_parse(line_b, "ftouch", &ftouch);
    bctl_stats_parse(line_b, "ftotal", &ftotal);
    double faults_iob = 0;
    double faults_floor = 0;
    bctl_kv(line_b, "faults_iob", &faults_iob);
    bctl_kv(line_b, "faults_floor", &faults_floor);

    const char* fl_create = huge ? "memfd(HUGETLB)+fallocate+seal" : "memfd+fallocate+seal";
    bctl_row_t* r = add_row("B", "create 64 MiB IOB (zx_iob_create)", "unix", t->backing, 1);
    r->lat_us = create;
    snprintf(r->reference, sizeof r->reference, "%s p50", fl_create);
    judge(r, create.p50 / floor_create.p50, 1.3, true, huge);
    snprintf(r->note, sizeof r->note, "median of %d warm runs; includes the RPC (iobd makes the "
             "memfd)%s", runs, huge ? "" : "; 4K backing: criterion stated for hugepages");
    r = add_row("B", "floor: memfd+fallocate+seal", "local", t->backing, 1);
    r->lat_us = floor_create;
    snprintf(r->note, sizeof r->note, "same process, alternating order with the IOB create");
    r = add_row("B", "import+map+read (2nd process)", "unix", t->backing, 1);
    r->lat_us = total;
    snprintf(r->reference, sizeof r->reference, "mmap POPULATE+read p50");
    r->ratio = total.p50 / ftotal.p50;
    snprintf(r->limit, sizeof r->limit, "<500us");
    snprintf(r->verdict, sizeof r->verdict, "%s",
             !huge ? "info" : total.p50 < 500.0 ? "pass" : "FAIL");
    snprintf(r->note, sizeof r->note,
             "iob_handle_import + zx_vmar_map_iob(READ|MAP_RANGE) + 1 read/page; faults on reads: "
             "%.0f%s",
             faults_iob, huge ? "" : "; 4K backing: criterion stated for hugepages");
    r = add_row("B", "  import (iob_handle_import)", "unix", t->backing, 1);
    r->lat_us = import;
    r = add_row("B", "  map (zx_vmar_map_iob MAP_RANGE)", "unix", t->backing, 1);
    r->lat_us = map;
    r = add_row("B", "  read 1 byte/page", "local", t->backing, 1);
    r->lat_us = touch;
    r = add_row("B", "floor: mmap POPULATE+read", "local", t->backing, 1);
    r->lat_us = ftotal;
    snprintf(r->note, sizeof r->note,
             "same memfd kind, created by A, fd passed; mmap %.1f us + reads %.1f us; faults: %.0f",
             fmap.p50, ftouch.p50, faults_floor);
    r = add_row("B", "export (iob_handle_export)", "unix", t->backing, 1);
    r->lat_us = export_;
    if (faults_iob > 0 || faults_floor > 0) {
        fprintf(stderr, "iob-bench-control: reads after mapping faulted (iob %.0f, floor %.0f): "
                        "not ready to read\n", faults_iob, faults_floor);
    }
}

/* ---- main ---- */

/*
 * The pool is machine-wide: another process (a hugepage test of a parallel ctest run) may
 * take the pages this run reserved. Checked before each 2M phase so that shows as a skip
 * with its reason rather than as an error halfway through.
 */
static bool hp_still_free(const target_t* t, bool external, uint64_t want, char* note,
                          size_t len) {
    if (external || strcmp(t->backing, "2M") != 0) {
        return true;
    }
    iob_hugepage_pool_t pool = {0, 0};
    if (iob_hugepage_pool_read(IOB_BACKING_2M, &pool) == ZX_OK && pool.free >= want) {
        return true;
    }
    snprintf(
        note, len, "2 MiB pool taken meanwhile by another user: %llu free of %llu, %llu needed",
        (unsigned long long)pool.free, (unsigned long long)pool.total, (unsigned long long)want);
    return false;
}

/* A child role (--role NAME): this binary re-executed by the orchestrator. */
static int role_main(int argc, char** argv) {
    static const struct {
        const char* name;
        int (*main)(int, char**);
    } roles[] = {
        {"mgmt", bctl_mgmt_main},
        {"map-create", bctl_map_creator_main},
        {"map-import", bctl_map_importer_main},
        {"scale-hold", bctl_scale_hold_main},
        {"load", bctl_load_main},
    };
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        if (strcmp(argv[2], roles[i].name) == 0) {
            return roles[i].main(argc, argv);
        }
    }
    fprintf(stderr, "iob-bench-control: unknown role %s\n", argv[2]);
    return 2;
}

/* What sections A and B run against: the servers, and a note on the hugepages they got. */
typedef struct plan {
    bctl_iobd_t d4;
    bctl_iobd_t d2;
    bool have_2m;
    char hp_note_a[200]; /* why section A has no 2M server, when that is the reason */
    char hp_note_b[200]; /* the pool as section B found it */
    target_t targets[4]; /* section A */
    int ntargets;
    target_t map_targets[4]; /* section B */
    int nmap;
} plan_t;

/* IOB_SERVER instead of servers of our own: its backing is learnt from ServerInfo. */
static void plan_external(const char* external, plan_t* p, bctl_run_info_t* info) {
    const char* ins = getenv("IOB_INSECURE");
    bool tcp = strncmp(external, "unix:", 5) != 0;
    p->targets[p->ntargets++] =
        (target_t){tcp ? "tcp" : "unix", external, "?", ins != NULL && strcmp(ins, "1") == 0};
    snprintf(info->hugepages_note, sizeof info->hugepages_note, "external server %s", external);
}

/*
 * A 2M server when the pool allows. Section B needs HP_PAGES_MAP free pages; section A only a
 * few. The pool grows only when asked (it is a machine-wide setting other work may depend on).
 */
static void plan_2m(const bctl_options_t* o, const char* iobd, plan_t* p, bctl_run_info_t* info) {
    char err[400];
    bool map_ok =
        bctl_hp_ensure_free(HP_PAGES_MAP, o->reserve_hugepages, p->hp_note_b, sizeof p->hp_note_b);
    bool mgmt_ok =
        map_ok || bctl_hp_ensure_free(HP_PAGES_MGMT, false, p->hp_note_a, sizeof p->hp_note_a);
    if (mgmt_ok) {
        if (bctl_iobd_start(iobd, "2M", o->tcp, NULL, &p->d2, err, sizeof err)) {
            p->have_2m = true;
            /* --quick keeps to the Unix socket to stay short. */
            p->targets[p->ntargets++] = (target_t){"unix", p->d2.target, "2M", false};
            if (o->tcp && !o->quick) {
                p->targets[p->ntargets++] = (target_t){"tcp", p->d2.tcp_target, "2M", true};
            }
        } else {
            snprintf(p->hp_note_b, sizeof p->hp_note_b, "%.190s", err);
            map_ok = false;
        }
    }
    if (map_ok) {
        p->map_targets[p->nmap++] = (target_t){"unix", p->d2.target, "2M", false};
    }
    snprintf(info->hugepages_note, sizeof info->hugepages_note, "%.120s%s%.70s", p->hp_note_b,
             p->hp_note_a[0] ? "; " : "", p->hp_note_a);
}

/* Servers of our own: 4K always, 2M when the pool allows. False when 4K cannot start. */
static bool plan_private(const bctl_options_t* o, const char* iobd, plan_t* p,
                         bctl_run_info_t* info) {
    char err[400];
    if (!bctl_iobd_start(iobd, "off", o->tcp, NULL, &p->d4, err, sizeof err)) {
        fprintf(stderr, "iob-bench-control: %s\n", err);
        return false;
    }
    p->targets[p->ntargets++] = (target_t){"unix", p->d4.target, "4K", false};
    if (o->tcp) {
        p->targets[p->ntargets++] = (target_t){"tcp", p->d4.tcp_target, "4K", true};
    }
    if (o->two_meg) {
        plan_2m(o, iobd, p, info);
    } else {
        snprintf(info->hugepages_note, sizeof info->hugepages_note, "--no-2m");
    }
    /* 4K mapping rows: always in a full run; in --quick only when 2M could not be had. */
    if (p->nmap == 0 || !o->quick) {
        p->map_targets[p->nmap++] = (target_t){"unix", p->d4.target, "4K", false};
    }
    return true;
}

/* An external server's backing, asked through a client (the orchestrator speaks no gRPC). */
static const char* external_backing(const target_t* t) {
    bctl_child_t c = {0, -1, -1};
    char a0[1024], a1[16] = "--role", a2[16] = "mgmt", a3[16] = "--target", a4[256],
                   a5[16] = "--insecure";
    snprintf(a0, sizeof a0, "%s", g_self);
    snprintf(a4, sizeof a4, "%s", t->address);
    char* argv_c[] = {a0, a1, a2, a3, a4, t->insecure ? a5 : NULL, NULL};
    char line[BCTL_LINE_MAX] = "";
    static char backing[8] = "?";
    if (bctl_spawn_role(g_self, argv_c, -1, &c) &&
        bctl_read_line(c.res_fd, line, sizeof line, 30000) == 0) {
        bctl_kv_str(line, "backing", backing, sizeof backing);
    }
    bctl_child_end(&c, 5000);
    return backing;
}

/* Section A: the management plane on every target. */
static void run_section_a(const bctl_options_t* o, plan_t* p, bool external) {
    for (int i = 0; i < p->ntargets; i++) {
        target_t* t = &p->targets[i];
        if (strcmp(t->backing, "?") == 0) {
            t->backing = external_backing(t);
            if (strcmp(t->transport, "unix") == 0) {
                p->map_targets[p->nmap++] = *t;
            }
        }
        fprintf(stderr, "iob-bench-control: A over %s, %s backing\n", t->transport, t->backing);
        char why[200];
        if (!hp_still_free(t, external, HP_PAGES_MGMT, why, sizeof why)) {
            bctl_row_t* r = add_row("A", "create+close (2 calls)", t->transport, t->backing, 1);
            snprintf(r->verdict, sizeof r->verdict, "skip");
            snprintf(r->note, sizeof r->note, "%s", why);
            continue;
        }
        mgmt_latency(o, t);
        mgmt_concurrent(o, t);
    }
    if (!p->have_2m && !external) {
        bctl_row_t* r = add_row("A", "create+close (2 calls)", "unix", "2M", 1);
        snprintf(r->verdict, sizeof r->verdict, "skip");
        snprintf(r->note, sizeof r->note, "no hugepage iobd: %.150s",
                 o->two_meg ? p->hp_note_a[0] ? p->hp_note_a : p->hp_note_b : "--no-2m");
    }
}

/* Section B: import + map (and creating) on every mapping target. */
static void run_section_b(const bctl_options_t* o, const plan_t* p, bool external) {
    bool map_2m = false;
    for (int i = 0; i < p->nmap; i++) {
        fprintf(stderr, "iob-bench-control: B on %s backing\n", p->map_targets[i].backing);
        char why[200];
        /* The IOB and the floor are both resident during a round: 2 x 32 pages. */
        if (!hp_still_free(&p->map_targets[i], external, 2 * (MAP_SIZE >> 21) + 2, why,
                           sizeof why)) {
            map_skip_rows("2M", why);
            map_2m = true;
            continue;
        }
        map_figures(o, &p->map_targets[i]);
        map_2m = map_2m || strcmp(p->map_targets[i].backing, "2M") == 0;
    }
    if (!map_2m) {
        map_skip_rows("2M", external ? "the server is not on 2 MiB hugepages"
                                     : (o->two_meg ? p->hp_note_b : "--no-2m"));
    }
}

/* Sections C and D start their own servers, configured for what they measure. */
static void run_sections_cd(const bctl_options_t* o, const char* iobd) {
    if (o->scale) {
        fprintf(stderr, "iob-bench-control: C. scale\n");
        g_errors |= !bctl_scale_run(g_self, iobd, o->quick, o->quick ? 6 : 60, o->quick ? 10 : 20);
    }
    if (o->load) {
        fprintf(stderr, "iob-bench-control: D. load\n");
        bctl_load_options_t lo = {o->processes, o->load_ns, UINT64_C(1) << 40};
        g_errors |= !bctl_load_run(g_self, iobd, &lo);
    }
}

static int report(const bctl_options_t* o, bctl_run_info_t* info, int64_t t_begin) {
    double l[3];
    if (getloadavg(l, 3) > 0) {
        info->load_after = l[0];
    }
    printf("iob-bench-control: %s, %d CPUs, %s; load %.2f -> %.2f; %.1f s%s\n", info->cpu_model,
           info->cpus, info->kernel, info->load_before, info->load_after,
           (double)(bctl_now_ns() - t_begin) / 1e9, o->quick ? " (--quick: smoke figures)" : "");
    printf("hugepages: %s\n\n", info->hugepages_note);
    bctl_report_table(stdout, g_rows, g_nrows);
    int rc = g_errors ? 1 : 0;
    if (o->csv != NULL && !bctl_report_csv(o->csv, g_rows, g_nrows)) {
        fprintf(stderr, "iob-bench-control: cannot write %s: %s\n", o->csv, strerror(errno));
        rc = 1;
    }
    if (o->json != NULL && !bctl_report_json(o->json, info, g_rows, g_nrows)) {
        fprintf(stderr, "iob-bench-control: cannot write %s: %s\n", o->json, strerror(errno));
        rc = 1;
    }
    return rc;
}

int main(int argc, char** argv) {
    if (argc >= 3 && strcmp(argv[1], "--role") == 0) {
        return role_main(argc, argv);
    }
    bctl_options_t o;
    if (bctl_options_parse(argc, argv, &o) != 0) {
        return 2;
    }
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n <= 0) {
        fprintf(stderr, "iob-bench-control: cannot find my own binary: %s\n", strerror(errno));
        return 1;
    }
    g_self[n] = '\0';
    bctl_cleanup_install();
    bctl_run_info_t info;
    bctl_describe(&info, o.quick);
    int64_t t_begin = bctl_now_ns();

    const char* external = getenv("IOB_SERVER");
    bool use_external = external != NULL && external[0] != '\0' && !o.scale && !o.load;
    const char* iobd = getenv("IOBD") != NULL ? getenv("IOBD") : IOB_BENCH_IOBD;
    if (!use_external && (iobd[0] == '\0' || access(iobd, X_OK) != 0)) {
        printf("SKIPPED: iobd not available (set IOBD or build the iobd target)\n");
        return 77;
    }
    plan_t p;
    memset(&p, 0, sizeof p);
    if (o.scale || o.load) {
        snprintf(info.hugepages_note, sizeof info.hugepages_note, "4K backing (sections C, D)");
        run_sections_cd(&o, iobd);
    } else if (use_external) {
        plan_external(external, &p, &info);
    } else if (!plan_private(&o, iobd, &p, &info)) {
        return 1;
    }
    fprintf(stderr, "iob-bench-control: %s\n", info.hugepages_note);
    if (!o.scale && !o.load) {
        run_section_a(&o, &p, use_external);
        run_section_b(&o, &p, use_external);
    }
    bctl_iobd_stop(&p.d2);
    bctl_iobd_stop(&p.d4);
    iob_tk_pool_restore();
    return report(&o, &info, t_begin);
}
