/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-mediated: the logging path's figures (issue 12). Mediated writes
 * (zx_iob_writev through iobd's mediator) with one writer process and with N writer
 * processes into one shared region, against the syslog-style baseline: a Unix datagram
 * socket, one send per record by one writer process and one recv per record by the reader.
 * Also iobd's CPU while idle with writers' channels open.
 *
 *   iob-bench-mediated [--quick] [--size B] [--writers N] [--duration-ms N] [--idle-s N]
 *                      [--csv FILE]
 *
 * Then what counting costs: one writer against its iobd and against a second one serving
 * --metrics (the only iobd that counts), alternating, as the median of paired rounds. Last,
 * a busy host: the datagram socket and one writer again, with a CPU-bound process on every
 * CPU (bench_busy).
 *
 * Like Fuchsia's logging: the reader creates one shared region with the
 * MEDIATED_WRITE_RING_BUFFER discipline and one IOB per writer over it, each with its own
 * tag; every writer process imports its endpoint and writes records with zx_iob_writev
 * (retrying a full ring after yielding). The reader maps the region, drains it with
 * shm/mediated.h's validated reader and checks every record's tag and length; when the ring
 * is empty it sleeps 1 ms, as a log reader that drains periodically does, so that on a small
 * host the CPUs go to the writers and the mediator (the 4 MiB ring holds about 50 ms of
 * records at 1 M/s, so it never fills meanwhile). Waking every 50 us instead, 20,000 times
 * a second, cost one writer about a third of its rate on this 2-CPU VM. Records/s are counted by
 * the reader over the writers' common window. Children are started with posix_spawn (this binary,
 * re-executed), never forked after libiob has gRPC state. Without IOB_SERVER it starts a private
 * iobd (the build's, or $IOBD).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "bench/bench_mediated_scale.h"
#include "client/testkit/iobd_launch.h"
#include "client/testkit/percentile.h"
#include "shm/mediated.h"

extern char** environ;

#define MAX_WRITERS 16
#define TAG_BASE UINT64_C(0x6c6f6700) /* "\0gol" + the writer's index */

int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void nap_us(long us) {
    struct timespec t = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

pid_t spawn_self(const char* self, char* const argv[]) {
    pid_t pid;
    return posix_spawn(&pid, self, NULL, NULL, argv, environ) == 0 ? pid : -1;
}

/* ---- Children ---- */

/* writer TOKEN SIZE DURATION_MS RESULT_FD: writes records until the time is up. */
static int writer_main(char** argv) {
    const char* token = argv[0];
    size_t size = strtoul(argv[1], NULL, 10);
    int64_t duration = strtoll(argv[2], NULL, 10) * 1000000;
    int out = atoi(argv[3]);
    zx_handle_t ep;
    zx_status_t st = iob_handle_import(token, &ep);
    if (st != ZX_OK) {
        dprintf(out, "error import %d\n", st);
        return 1;
    }
    unsigned char rec[65536];
    memset(rec, 0x5a, sizeof rec);
    zx_iovec_t v = {rec, size};
    /* The first call opens the channel: not measured. */
    while ((st = zx_iob_writev(ep, 0, 0, &v, 1)) == ZX_ERR_NO_SPACE) {
        sched_yield();
    }
    uint64_t n = 1;
    uint64_t full = 0;
    int64_t end = duration > 0 ? now_ns() + duration : 0;
    while (st == ZX_OK && duration > 0) {
        st = zx_iob_writev(ep, 0, 0, &v, 1);
        if (st == ZX_ERR_NO_SPACE) {
            full++;
            sched_yield();
            st = ZX_OK;
            continue;
        }
        if ((++n & 63u) == 0 && now_ns() >= end) {
            break;
        }
    }
    if (duration == 0 && st == ZX_OK) {
        /* idle: keep the channel open until told to go. */
        dprintf(out, "ready\n");
        pause();
    }
    dprintf(out, "%s %" PRIu64 " %" PRIu64 "\n", st == ZX_OK ? "ok" : "error", n, full);
    zx_handle_close(ep);
    return st == ZX_OK ? 0 : 1;
}

/* ---- The reader ---- */

typedef struct run {
    zx_handle_t shared;
    void* base;
    uint64_t size;
    iob_mwrb_reader_t reader;
    zx_handle_t reader_ep[MAX_WRITERS];
    char tokens[MAX_WRITERS][IOB_TOKEN_SIZE];
} run_t;

static zx_status_t run_setup(run_t* r, int writers, uint64_t ring_bytes) {
    uint64_t page = zx_system_get_page_size();
    r->size = ring_bytes + page;
    zx_status_t st = zx_iob_create_shared_region(0, r->size, &r->shared);
    for (int i = 0; st == ZX_OK && i < writers; i++) {
        zx_iob_region_t region;
        memset(&region, 0, sizeof region);
        region.type = ZX_IOB_REGION_TYPE_SHARED;
        region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                        ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE;
        region.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
        region.discipline.ring_buffer.tag = TAG_BASE + (uint64_t)i;
        region.shared_region.shared_region = r->shared;
        zx_handle_t w;
        st = zx_iob_create(0, &region, 1, &r->reader_ep[i], &w);
        if (st == ZX_OK) {
            st = iob_handle_export(w, r->tokens[i]);
        }
    }
    zx_vaddr_t addr = 0;
    if (st == ZX_OK) {
        st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                             r->reader_ep[0], 0, 0, (size_t)r->size, &addr);
    }
    if (st == ZX_OK) {
        r->base = (void*)addr;
        st = iob_mwrb_reader_init(&r->reader, r->base, r->size, page);
    }
    return st;
}

static void run_teardown(run_t* r, int writers) {
    if (r->base != NULL) {
        zx_vmar_unmap(zx_vmar_root_self(), (zx_vaddr_t)r->base, r->size);
    }
    for (int i = 0; i < writers; i++) {
        zx_handle_close(r->reader_ep[i]);
    }
    zx_handle_close(r->shared);
}

/* Counts each record of a drain for its writer (the tag says which), checking its length. */
typedef struct drain_count {
    int writers;
    size_t size;
    uint64_t* per;
    int64_t got;
    bool bad;
} drain_count_t;

static bool drain_count(void* ctx, const iob_mwrb_record_t* rec, const void* payload) {
    (void)payload;
    drain_count_t* d = ctx;
    uint64_t w = rec->tag - TAG_BASE;
    if (w >= (uint64_t)d->writers || rec->length != d->size) {
        fprintf(stderr, "bad record: tag %" PRIx64 " length %" PRIu64 "\n", rec->tag,
                (uint64_t)rec->length);
        d->bad = true;
        return false;
    }
    d->per[w]++;
    d->got++;
    return true;
}

/*
 * Drains the ring until every writer has reported; returns records read, or -1. Each drain
 * reads every record present with one load of head and one store of tail (iob_mwrb_drain),
 * as a periodic log reader does.
 */
static int64_t run_drain(run_t* r, int writers, size_t size, const int* outs, uint64_t* per) {
    static unsigned char buf[65536];
    int done = 0;
    drain_count_t count = {.writers = writers, .size = size, .per = per};
    int64_t stall = now_ns() + INT64_C(60) * 1000000000;
    for (;;) {
        zx_status_t st = iob_mwrb_drain(&r->reader, buf, sizeof buf, drain_count, &count, NULL);
        if (count.bad) {
            return -1;
        }
        if (st == ZX_OK) {
            continue;
        }
        if (st != ZX_ERR_SHOULD_WAIT) {
            fprintf(stderr, "reader: %s\n", zx_status_get_string(st));
            return -1;
        }
        if (done == writers) {
            return count.got;
        }
        nap_us(1000);
        /* A writer reports when it stops; all stopped and the ring empty: done. */
        done = 0;
        for (int i = 0; i < writers; i++) {
            struct stat sb;
            done += fstat(outs[i], &sb) == 0 && sb.st_size > 0;
        }
        if (now_ns() > stall) {
            fprintf(stderr, "reader: stalled\n");
            return -1;
        }
    }
}

/*
 * Starts one writer process per endpoint of r, writing `size`-byte records for `ms` (0: one
 * record, then it waits to be killed), each with a result file in outs[i] whose size says
 * when the writer is done.
 */
static void spawn_writers(const char* self, run_t* r, int writers, size_t size, long ms,
                          pid_t* pids, int* outs) {
    char size_s[32];
    char ms_s[32];
    snprintf(size_s, sizeof size_s, "%zu", size);
    snprintf(ms_s, sizeof ms_s, "%ld", ms);
    for (int i = 0; i < writers; i++) {
        FILE* f = tmpfile();
        outs[i] = dup(fileno(f));
        fclose(f);
        char fd_s[16];
        snprintf(fd_s, sizeof fd_s, "%d", outs[i]);
        char* argv[] = {(char*)(uintptr_t)self,
                        (char*)(uintptr_t) "writer",
                        r->tokens[i],
                        size_s,
                        ms_s,
                        fd_s,
                        NULL};
        pids[i] = spawn_self(self, argv);
    }
}

/* Mediated records/s with `writers` processes, or a negative number on failure. */
static double bench_mediated(const char* self, int writers, size_t size, long ms) {
    run_t r;
    memset(&r, 0, sizeof r);
    zx_status_t st = run_setup(&r, writers, UINT64_C(4) << 20);
    if (st != ZX_OK) {
        fprintf(stderr, "setup: %s\n", zx_status_get_string(st));
        return -1;
    }
    pid_t pids[MAX_WRITERS];
    int outs[MAX_WRITERS];
    spawn_writers(self, &r, writers, size, ms, pids, outs);
    uint64_t per[MAX_WRITERS] = {0};
    int64_t got = run_drain(&r, writers, size, outs, per);
    bool ok = got > 0;
    for (int i = 0; i < writers; i++) {
        int status = 0;
        waitpid(pids[i], &status, 0);
        ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        char line[128] = "";
        ssize_t n = pread(outs[i], line, sizeof line - 1, 0);
        line[n > 0 ? n : 0] = '\0';
        uint64_t sent = 0;
        uint64_t full = 0;
        ok = ok && sscanf(line, "ok %" SCNu64 " %" SCNu64, &sent, &full) == 2 && sent == per[i];
        close(outs[i]);
    }
    run_teardown(&r, writers);
    /* Each writer writes for ms after its setup; the windows overlap but for the spawns. */
    return ok ? (double)got / ((double)ms / 1000.0) : -1;
}

/* iobd's pid from its Unix socket's peer credentials (the local iobd we talk to). */
static pid_t iobd_pid(const char* target) {
    const char* path = strncmp(target, "unix:", 5) == 0 ? target + 5 : NULL;
    if (path == NULL) {
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    struct ucred cred;
    socklen_t len = sizeof cred;
    pid_t pid = -1;
    if (fd >= 0 && connect(fd, (struct sockaddr*)&addr, sizeof addr) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        pid = cred.pid;
    }
    if (fd >= 0) {
        close(fd);
    }
    return pid;
}

static double cpu_seconds(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE* f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char* p = strrchr(buf, ')');
    unsigned long ut = 0;
    unsigned long stime = 0;
    /* After "pid (comm)": state is field 3, utime 14, stime 15. */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stime) != 2) {
        return -1;
    }
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* iobd's CPU share while `writers` idle writers hold channels open (percent of one CPU). */
static double bench_idle(const char* self, const char* target, int writers, long secs) {
    pid_t server = iobd_pid(target);
    if (server <= 0) {
        return -1;
    }
    run_t r;
    memset(&r, 0, sizeof r);
    if (run_setup(&r, writers, UINT64_C(1) << 20) != ZX_OK) {
        return -1;
    }
    pid_t pids[MAX_WRITERS];
    int outs[MAX_WRITERS];
    spawn_writers(self, &r, writers, 64, 0, pids, outs);
    /* Wait for every writer to have its channel open (its one record sent). */
    for (int i = 0; i < writers; i++) {
        struct stat sb;
        for (int k = 0; k < 1000 && (fstat(outs[i], &sb) != 0 || sb.st_size == 0); k++) {
            nap_us(10000);
        }
    }
    nap_us(200000); /* the mediator's spin after the last record, and the reader's setup */
    double c0 = cpu_seconds(server);
    int64_t t0 = now_ns();
    nap_us(secs * 1000000);
    double c1 = cpu_seconds(server);
    int64_t t1 = now_ns();
    for (int i = 0; i < writers; i++) {
        kill(pids[i], SIGTERM);
        waitpid(pids[i], NULL, 0);
        close(outs[i]);
    }
    run_teardown(&r, writers);
    return c0 < 0 || c1 < 0 ? -1 : 100.0 * (c1 - c0) / ((double)(t1 - t0) / 1e9);
}

/* ---- A private iobd ---- */

/* [0]: the iobd every row uses; [1]: the same with --metrics, for the cost of counting. */
static iob_tk_iobd_t g_iobd[2];

static const char* start_iobd(int idx, bool metrics, char* target, size_t len) {
    const char* bin = getenv("IOBD") != NULL ? getenv("IOBD") : IOB_BENCH_IOBD;
    char metrics_addr[64];
    snprintf(metrics_addr, sizeof metrics_addr, "127.0.0.1:%d", iob_tk_free_tcp_port());
    const char* extra[] = {"--metrics", metrics_addr, NULL};
    iob_tk_iobd_config_t config = {.binary = bin, .extra = metrics ? extra : NULL};
    char err[400];
    if (!iob_tk_iobd_start(&g_iobd[idx], &config, err, sizeof err)) {
        fprintf(stderr, "iob-bench-mediated: %s\n", err);
        return NULL;
    }
    snprintf(target, len, "%s", g_iobd[idx].target);
    return target;
}

static void stop_iobd(int idx) {
    char why[160];
    if (!iob_tk_iobd_stop(&g_iobd[idx], 20000, why, sizeof why)) {
        fprintf(stderr, "iob-bench-mediated: %s\n", why);
    }
}

/* "rate SIZE MS": one writer's records/s against $IOB_SERVER, printed (a fresh process, so
 * that its libiob session is with that iobd). */
static int rate_main(const char* self, char** argv) {
    double r = bench_mediated(self, 1, strtoul(argv[0], NULL, 10), atol(argv[1]));
    printf("%.0f\n", r);
    return r > 0 ? 0 : 1;
}

/* One writer's rate against the iobd `server`, measured by a child (rate_main). */
static double child_rate(const char* self, const char* server, size_t size, long ms) {
    char a_size[32], a_ms[32];
    snprintf(a_size, sizeof a_size, "%zu", size);
    snprintf(a_ms, sizeof a_ms, "%ld", ms);
    char* argv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t) "rate", a_size, a_ms, NULL};
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    char env_server[300];
    snprintf(env_server, sizeof env_server, "IOB_SERVER=%s", server);
    char* envp[64];
    size_t n = 0;
    envp[n++] = env_server;
    for (char** e = environ; *e != NULL && n < 63; e++) {
        if (strncmp(*e, "IOB_SERVER=", 11) != 0) {
            envp[n++] = *e;
        }
    }
    envp[n] = NULL;
    pid_t pid;
    int rc = posix_spawn(&pid, self, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    double r = -1;
    if (rc == 0) {
        char buf[64] = "";
        ssize_t got = read(p[0], buf, sizeof buf - 1);
        if (got > 0) {
            buf[got] = '\0';
            r = atof(buf);
        }
        waitpid(pid, NULL, 0);
    }
    close(p[0]);
    return r;
}

typedef struct options {
    size_t size;
    int writers;
    long ms;
    long idle_s;
    int trials;
    const char* csv;
} options_t;

typedef struct figures {
    double dgram, floor, one, many; /* records/s, the best of the trials */
    double one_of_floor;            /* one writer / sync-floor, the median of paired trials */
    double one_of_dgram;            /* one writer / unix-dgram, the median of paired trials */
    double floor_of_dgram;          /* sync-floor / unix-dgram, the median of paired trials */
    double idle;                    /* % of a CPU */
    double metrics_ratio;           /* with --metrics / without; < 0: not measured */
    double busy_dgram, busy_one;    /* records/s with a CPU-bound process on every CPU */
    long busy_hogs;
} figures_t;

/* 0: run; 1: done (usage printed, exit 2). */
static int parse_options(int argc, char** argv, options_t* o) {
    *o = (options_t){64, 4, 2000, 10, 3, NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            o->ms = 500;
            o->idle_s = 2;
            o->trials = 1;
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            o->size = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--writers") == 0 && i + 1 < argc) {
            o->writers = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--duration-ms") == 0 && i + 1 < argc) {
            o->ms = atol(argv[++i]);
        } else if (strcmp(argv[i], "--idle-s") == 0 && i + 1 < argc) {
            o->idle_s = atol(argv[++i]);
        } else if (strcmp(argv[i], "--trials") == 0 && i + 1 < argc) {
            o->trials = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            o->csv = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: iob-bench-mediated [--quick] [--size B] [--writers N] "
                    "[--duration-ms N] [--idle-s N] [--trials N] [--csv FILE]\n");
            return 1;
        }
    }
    if (o->writers < 1 || o->writers > MAX_WRITERS || o->size < 1 || o->size > 65519 ||
        o->trials < 1) {
        fprintf(stderr, "iob-bench-mediated: bad arguments\n");
        return 1;
    }
    return 0;
}

/*
 * What counting costs the mediated path: one writer against this iobd and against a second
 * one serving --metrics (so counting), in alternating order, paired per round. Only with
 * iobds of our own (IOB_SERVER unset). < 0: not measured.
 */
static double bench_metrics_cost(const char* self, const char* server, const options_t* o) {
    char target_m[256];
    if (g_iobd[0].pid <= 0 || start_iobd(1, true, target_m, sizeof target_m) == NULL) {
        return -1;
    }
    enum { ROUNDS_MAX = 15 };
    int rounds = o->trials * 2 + 1 < ROUNDS_MAX ? o->trials * 2 + 1 : ROUNDS_MAX;
    double ratios[ROUNDS_MAX];
    int got = 0;
    for (int i = 0; i < rounds; i++) {
        double off, on;
        if (i % 2 == 0) {
            off = child_rate(self, server, o->size, o->ms);
            on = child_rate(self, target_m, o->size, o->ms);
        } else {
            on = child_rate(self, target_m, o->size, o->ms);
            off = child_rate(self, server, o->size, o->ms);
        }
        if (off > 0 && on > 0) {
            ratios[got++] = on / off;
            fprintf(stderr, "iob-bench-mediated: metrics round %d: off %.0f on %.0f (%.2fx)\n", i,
                    off, on, on / off);
        }
    }
    stop_iobd(1);
    return got > 0 ? iob_tk_median(ratios, (size_t)got) : -1;
}

/*
 * The rates: the best of the trials for each row (the machine is shared: interference only
 * ever slows a run), and one writer against the floor and against the datagram socket, and
 * the floor against the socket, paired per trial (the rows of one trial run back to back),
 * because this VM's core-to-core speed changes between minutes and a ratio of two bests
 * could mix spells.
 */
static void bench_rates(const char* self, const options_t* o, figures_t* g) {
    enum { TRIALS_MAX = 64 };
    double of_floor[TRIALS_MAX];
    double of_dgram[TRIALS_MAX];
    double floor_of_dgram[TRIALS_MAX];
    size_t paired = 0;
    g->dgram = g->floor = g->one = g->many = -1;
    g->one_of_floor = g->one_of_dgram = g->floor_of_dgram = -1;
    for (int t = 0; t < o->trials; t++) {
        double d = bench_dgram(self, o->size, o->ms);
        double f = bench_floor(self, o->size, o->ms);
        double w1 = bench_mediated(self, 1, o->size, o->ms);
        double wn = bench_mediated(self, o->writers, o->size, o->ms);
        g->dgram = d > g->dgram ? d : g->dgram;
        g->floor = f > g->floor ? f : g->floor;
        g->one = w1 > g->one ? w1 : g->one;
        g->many = wn > g->many ? wn : g->many;
        if (d > 0 && f > 0 && w1 > 0 && paired < TRIALS_MAX) {
            of_floor[paired] = w1 / f;
            of_dgram[paired] = w1 / d;
            floor_of_dgram[paired] = f / d;
            paired++;
        }
    }
    if (paired > 0) {
        g->one_of_floor = iob_tk_median(of_floor, paired);
        g->one_of_dgram = iob_tk_median(of_dgram, paired);
        g->floor_of_dgram = iob_tk_median(floor_of_dgram, paired);
    }
}

/* hog: a CPU-bound process (another tenant of a busy host) until it is killed. */
static int hog_main(void) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    volatile uint64_t spins = 0;
    while (spins != UINT64_MAX) {
        spins = spins + 1;
    }
    return 0;
}

/*
 * A busy host: one CPU-bound process per CPU (default priority, as a build or a batch job
 * would be) while the datagram socket and one mediated writer run, one after the other.
 * The synchronous call needs the writer and the mediator to take turns on CPUs that are
 * never idle, so this is where waiting policy shows: a waiter that yields is put behind the
 * CPU-bound process for a whole slice, a sleeper that is woken runs ahead of it.
 */
static void bench_busy(const char* self, const options_t* o, figures_t* g) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    pid_t hogs[64];
    long n = 0;
    for (; n < cpus && n < 64; n++) {
        char* argv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t) "hog", NULL};
        if ((hogs[n] = spawn_self(self, argv)) <= 0) {
            break;
        }
    }
    g->busy_hogs = n;
    g->busy_dgram = bench_dgram(self, o->size, o->ms);
    g->busy_one = bench_mediated(self, 1, o->size, o->ms);
    for (long i = 0; i < n; i++) {
        kill(hogs[i], SIGKILL);
        waitpid(hogs[i], NULL, 0);
    }
}

static void report_text(const options_t* o, const figures_t* g) {
    double per_dgram = g->dgram > 0 ? 1 / g->dgram : 0;
    printf("iob-bench-mediated: %zu B records, %ld ms per run, best of %d; %ld CPUs\n", o->size,
           o->ms, o->trials, sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-22s %14s %10s\n", "row", "records/s", "ratio");
    printf("%-22s %14.0f %10s\n", "unix-dgram", g->dgram, "1.00x");
    if (g->floor > 0) {
        printf(
            "%-22s %14.0f %9.2fx  (two processes, one synchronous %zu B request/reply in "
            "shared memory)\n",
            "sync-floor", g->floor, g->floor * per_dgram, o->size);
    }
    printf("%-22s %14.0f %9.2fx  (target >= 1,000,000 and >= 5x unix-dgram)\n", "mediated-1-writer",
           g->one, g->one * per_dgram);
    if (g->one_of_floor > 0) {
        printf("%-22s %14s %9.2fx  (mediated-1-writer / sync-floor, median of paired trials)\n",
               "mediated-of-floor", "", g->one_of_floor);
        printf("%-22s %14s %9.2fx  (mediated-1-writer / unix-dgram, median of paired trials)\n",
               "mediated-of-dgram", "", g->one_of_dgram);
        printf("%-22s %14s %9.2fx  (sync-floor / unix-dgram, median of paired trials: the most a "
               "synchronous call reaches)\n",
               "floor-of-dgram", "", g->floor_of_dgram);
    }
    char row[32];
    snprintf(row, sizeof row, "mediated-%d-writers", o->writers);
    printf("%-22s %14.0f %9.2fx  (of one writer; target >= 0.8x)\n", row, g->many,
           g->one > 0 ? g->many / g->one : 0);
    printf("%-22s %13.2f%%             (target < 1%%, %d channels open, %ld s)\n",
           "idle-mediator-cpu", g->idle, o->writers, o->idle_s);
    if (g->metrics_ratio > 0) {
        printf(
            "%-22s %14s %9.2fx  (one writer, iobd --metrics / without; median of paired "
            "rounds)\n",
            "metrics-cost", "", g->metrics_ratio);
    }
    printf("%-22s %14.0f %10s  (busy host: %ld CPU-bound processes, one per CPU)\n",
           "busy-unix-dgram", g->busy_dgram, "1.00x", g->busy_hogs);
    printf("%-22s %14.0f %9.2fx  (one writer on the busy host, of busy-unix-dgram)\n",
           "busy-mediated-1-writer", g->busy_one,
           g->busy_dgram > 0 ? g->busy_one / g->busy_dgram : 0);
}

static void report_csv(const options_t* o, const figures_t* g) {
    FILE* f = fopen(o->csv, "w");
    if (f == NULL) {
        return;
    }
    double per_dgram = g->dgram > 0 ? 1 / g->dgram : 0;
    fprintf(f, "row,msg_bytes,writers,records_per_s,ratio,idle_cpu_percent\n");
    fprintf(f, "unix-dgram,%zu,1,%.0f,1.00,\n", o->size, g->dgram);
    if (g->floor > 0) {
        fprintf(f, "sync-floor,%zu,1,%.0f,%.2f,\n", o->size, g->floor, g->floor * per_dgram);
    }
    fprintf(f, "mediated,%zu,1,%.0f,%.2f,\n", o->size, g->one, g->one * per_dgram);
    if (g->one_of_floor > 0) {
        fprintf(f, "mediated-of-floor,%zu,1,,%.2f,\n", o->size, g->one_of_floor);
        fprintf(f, "mediated-of-dgram,%zu,1,,%.2f,\n", o->size, g->one_of_dgram);
        fprintf(f, "floor-of-dgram,%zu,1,,%.2f,\n", o->size, g->floor_of_dgram);
    }
    fprintf(f, "mediated,%zu,%d,%.0f,%.2f,\n", o->size, o->writers, g->many,
            g->one > 0 ? g->many / g->one : 0);
    fprintf(f, "idle,%zu,%d,,,%.2f\n", o->size, o->writers, g->idle);
    if (g->metrics_ratio > 0) {
        fprintf(f, "metrics-on-vs-off,%zu,1,,%.2f,\n", o->size, g->metrics_ratio);
    }
    fprintf(f, "busy-unix-dgram,%zu,1,%.0f,1.00,\n", o->size, g->busy_dgram);
    fprintf(f, "busy-mediated,%zu,1,%.0f,%.2f,\n", o->size, g->busy_one,
            g->busy_dgram > 0 ? g->busy_one / g->busy_dgram : 0);
    fclose(f);
}

/* The child roles this program runs as (exec'd by the rows above); -1: none of them. */
static int child_role_main(int argc, char** argv) {
    if (argc >= 6 && strcmp(argv[1], "writer") == 0) {
        return writer_main(argv + 2);
    }
    if (argc >= 5 && strcmp(argv[1], "dgram") == 0) {
        return dgram_main(argv + 2);
    }
    if (argc >= 4 && strcmp(argv[1], "floor-server") == 0) {
        return floor_server_main(argv + 2);
    }
    if (argc >= 6 && strcmp(argv[1], "floor-writer") == 0) {
        return floor_writer_main(argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "hog") == 0) {
        return hog_main();
    }
    if (argc >= 4 && strcmp(argv[1], "rate") == 0) {
        char me[4096];
        ssize_t ml = readlink("/proc/self/exe", me, sizeof me - 1);
        if (ml <= 0) {
            return 1;
        }
        me[ml] = '\0';
        return rate_main(me, argv + 2);
    }
    return -1;
}

int main(int argc, char** argv) {
    int role = child_role_main(argc, argv);
    if (role >= 0) {
        return role;
    }
    options_t o;
    if (parse_options(argc, argv, &o) != 0) {
        return 2;
    }
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        return 1;
    }
    self[sl] = '\0';
    char target[256];
    const char* server = getenv("IOB_SERVER");
    if (server == NULL) {
        server = start_iobd(0, false, target, sizeof target);
        if (server == NULL) {
            fprintf(stderr, "iob-bench-mediated: could not start iobd\n");
            stop_iobd(0);
            return 1;
        }
        setenv("IOB_SERVER", server, 1);
    }
    figures_t g;
    bench_rates(self, &o, &g);
    g.idle = bench_idle(self, server, o.writers, o.idle_s);
    g.metrics_ratio = bench_metrics_cost(self, server, &o);
    bench_busy(self, &o, &g);
    report_text(&o, &g);
    if (o.csv != NULL) {
        report_csv(&o, &g);
    }
    stop_iobd(0);
    bool ok = g.dgram > 0 && g.one > 0 && g.many > 0 && g.idle >= 0;
    return ok ? 0 : 1;
}
