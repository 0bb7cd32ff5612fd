/* SPDX-License-Identifier: MIT */
/*
 * iob-bench: endpoint-to-endpoint throughput and round-trip latency of the shared-memory
 * ring against memcpy, pipes, Unix sockets and TCP, in one run.
 *
 *   iob-bench [--quick] [--csv F] [--json F] [--plot F.png] [--latency-csv F] [--out DIR]
 *             [--trials N] [--duration-ms N] [--sizes 64,4K,...] [--transports a,b,...]
 *             [--cpus P,C] [--batch N] [--ring-bytes N] [--reserve-hugepages]
 *             [--no-block] [--no-paced] [--no-latency] [--no-2m] [--verify full|sampled]
 *
 * The process the user starts only orchestrates; see bench.h for the process model.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/testkit/hugepage_pool.h"

extern char** environ;

/* ---- process plumbing ------------------------------------------------------------------ */

void bench_pin_cpu(int cpu) {
    if (cpu < 0) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof(set), &set);
}

/*
 * Every descriptor the orchestrator creates is close-on-exec; the spawn's dup2 actions are
 * the only way one reaches a child, at the fixed numbers the child expects.
 */
int bench_spawn(const char* self, char* const argv[], const int* child_fds, int nfds,
                int ready_fd, int result_fd) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    for (int i = 0; i < nfds; i++) {
        if (child_fds[i] >= 0) {
            posix_spawn_file_actions_adddup2(&fa, child_fds[i], BENCH_FD_BASE + i);
        }
    }
    if (ready_fd >= 0) {
        posix_spawn_file_actions_adddup2(&fa, ready_fd, BENCH_FD_READY);
    }
    posix_spawn_file_actions_adddup2(&fa, result_fd, BENCH_FD_RESULT);
    pid_t pid;
    int rc = posix_spawn(&pid, self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? (int)pid : -1;
}

zx_status_t bench_collect(int pid, int fd, int64_t timeout_ns, char* line, size_t len) {
    size_t used = 0;
    line[0] = '\0';
    int64_t deadline = bench_now_ns() + timeout_ns;
    bool timed_out = false;
    if (pid < 0) {
        close(fd);
        snprintf(line, len, "spawn failed");
        return ZX_ERR_IO;
    }
    for (;;) {
        int64_t left = (deadline - bench_now_ns()) / 1000000;
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (rc < 0 && errno == EINTR) {
            continue;
        }
        if (rc <= 0) {
            continue;
        }
        ssize_t n = read(fd, line + used, len - 1 - used);
        if (n <= 0) {
            break;
        }
        used += (size_t)n;
        line[used] = '\0';
        if (used + 1 >= len) {
            break;
        }
    }
    close(fd);
    if (timed_out) {
        kill(pid, SIGKILL);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    line[strcspn(line, "\n")] = '\0';
    if (timed_out) {
        snprintf(line, len, "timed out");
        return ZX_ERR_TIMED_OUT;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return ZX_ERR_IO;
    }
    return ZX_OK;
}

/* ---- hugepages --------------------------------------------------------------------------- */

/* The 2 MiB pool's page count (or free pages); -1 when the kernel has no such pool. */
static long pool_2m(bool free_pages) {
    iob_hugepage_pool_t pool;
    if (iob_hugepage_pool_read(IOB_BACKING_2M, &pool) != ZX_OK) {
        return -1;
    }
    return (long)(free_pages ? pool.free : pool.total);
}

static void on_signal(int sig) {
    iob_tk_pool_restore();
    bench_iobd_kill(); /* never leave a private iobd behind */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Grows the 2 MiB pool to `pages` free pages for the run; what it adds goes back at exit. */
static void hugepages_reserve(long pages) {
    char note[160];
    bool ok = iob_tk_pool_reserve(IOB_BACKING_2M, (uint64_t)pages, note, sizeof(note));
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "iob-bench: %s%s\n", note, ok ? "" : "; 2M rows may be skipped");
}

/* ---- options ------------------------------------------------------------------------------ */

typedef struct options {
    bool quick;
    const char* csv;
    const char* json;
    const char* plot;
    const char* latency_csv;
    const char* out_dir;
    int trials;
    int64_t duration_ns;
    uint64_t sizes[32];
    int nsizes;
    bool transport_on[16];
    int cpu[2];
    uint32_t batch;
    uint64_t ring_bytes;
    bool reserve_hugepages;
    bool block;
    bool paced;
    bool latency;
    bool two_meg;
    bench_verify_t verify;
    uint64_t latency_iters;
} options_t;

static uint64_t parse_size(const char* s) {
    char* end;
    uint64_t v = strtoull(s, &end, 10);
    if (*end == 'K' || *end == 'k') {
        v <<= 10;
    } else if (*end == 'M' || *end == 'm') {
        v <<= 20;
    } else if (*end == 'G' || *end == 'g') {
        v <<= 30;
    }
    return v;
}

static void usage(void) {
    fprintf(stderr,
            "usage: iob-bench [--quick] [--csv FILE] [--json FILE] [--plot FILE.png]\n"
            "                 [--latency-csv FILE] [--out DIR] [--trials N] [--duration-ms N]\n"
            "                 [--sizes 8,64,4K,...] [--transports bare-ring,memcpy,...]\n"
            "                 [--cpus P,C] [--batch N] [--ring-bytes N] [--reserve-hugepages]\n"
            "                 [--no-block] [--no-paced] [--no-latency] [--no-2m]\n"
            "                 [--verify full|sampled]   (what consumers check; sampled: each\n"
            "                 message's sequence and first and last 8 bytes, every 256th in full)\n"
            "environment: IOB_SERVER measures that iobd's backing only (otherwise iob-bench\n"
            "starts a private iobd per backing); IOBD names the iobd binary to start\n");
}

static int parse_options(int argc, char** argv, options_t* o) {
    memset(o, 0, sizeof(*o));
    o->trials = 0;
    o->cpu[0] = 0;
    o->cpu[1] = 1;
    o->batch = 32;
    o->block = o->paced = o->latency = o->two_meg = true;
    for (size_t t = 0; t < bench_transport_count; t++) {
        o->transport_on[t] = true;
    }
    int64_t duration_ms = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (v == NULL) {                                                                           \
            usage();                                                                               \
            return -1;                                                                             \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
        if (strcmp(a, "--quick") == 0) {
            o->quick = true;
        } else if (strcmp(a, "--csv") == 0) {
            NEED_VALUE();
            o->csv = v;
        } else if (strcmp(a, "--json") == 0) {
            NEED_VALUE();
            o->json = v;
        } else if (strcmp(a, "--plot") == 0) {
            NEED_VALUE();
            o->plot = v;
        } else if (strcmp(a, "--latency-csv") == 0) {
            NEED_VALUE();
            o->latency_csv = v;
        } else if (strcmp(a, "--out") == 0) {
            NEED_VALUE();
            o->out_dir = v;
        } else if (strcmp(a, "--trials") == 0) {
            NEED_VALUE();
            o->trials = atoi(v);
        } else if (strcmp(a, "--duration-ms") == 0) {
            NEED_VALUE();
            duration_ms = atoll(v);
        } else if (strcmp(a, "--sizes") == 0) {
            NEED_VALUE();
            char* copy = strdup(v);
            for (char* tok = strtok(copy, ","); tok != NULL && o->nsizes < 32;
                 tok = strtok(NULL, ",")) {
                uint64_t sz = parse_size(tok);
                if (sz < 8 || sz % 8 != 0) {
                    fprintf(stderr, "iob-bench: sizes must be multiples of 8 (got %s)\n", tok);
                    free(copy);
                    return -1;
                }
                o->sizes[o->nsizes++] = sz;
            }
            free(copy);
        } else if (strcmp(a, "--transports") == 0) {
            NEED_VALUE();
            for (size_t t = 0; t < bench_transport_count; t++) {
                o->transport_on[t] = false;
            }
            char* copy = strdup(v);
            for (char* tok = strtok(copy, ","); tok != NULL; tok = strtok(NULL, ",")) {
                int t = bench_transport_find(tok);
                if (t < 0) {
                    fprintf(stderr, "iob-bench: unknown transport %s\n", tok);
                    free(copy);
                    return -1;
                }
                o->transport_on[t] = true;
            }
            free(copy);
        } else if (strcmp(a, "--cpus") == 0) {
            NEED_VALUE();
            if (sscanf(v, "%d,%d", &o->cpu[0], &o->cpu[1]) != 2) {
                usage();
                return -1;
            }
        } else if (strcmp(a, "--batch") == 0) {
            NEED_VALUE();
            o->batch = (uint32_t)atoi(v);
        } else if (strcmp(a, "--ring-bytes") == 0) {
            NEED_VALUE();
            o->ring_bytes = parse_size(v);
        } else if (strcmp(a, "--reserve-hugepages") == 0) {
            o->reserve_hugepages = true;
        } else if (strcmp(a, "--no-block") == 0) {
            o->block = false;
        } else if (strcmp(a, "--no-paced") == 0) {
            o->paced = false;
        } else if (strcmp(a, "--no-latency") == 0) {
            o->latency = false;
        } else if (strcmp(a, "--no-2m") == 0) {
            o->two_meg = false;
        } else if (strcmp(a, "--verify") == 0) {
            NEED_VALUE();
            if (strcmp(v, "full") == 0) {
                o->verify = BENCH_VERIFY_FULL;
            } else if (strcmp(v, "sampled") == 0) {
                o->verify = BENCH_VERIFY_SAMPLED;
            } else {
                usage();
                return -1;
            }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            exit(0);
        } else {
            usage();
            return -1;
        }
#undef NEED_VALUE
    }
    if (o->trials <= 0) {
        o->trials = 5;
    }
    if (o->trials > 16) {
        o->trials = 16;
    }
    if (duration_ms <= 0) {
        duration_ms = o->quick ? 10 : 150;
    }
    o->duration_ns = duration_ms * 1000000;
    o->latency_iters = o->quick ? 20000 : 200000;
    if (o->nsizes == 0) {
        if (o->quick) {
            uint64_t q[] = {64, 4096, 65536, 1u << 20};
            for (int i = 0; i < 4; i++) {
                o->sizes[o->nsizes++] = q[i];
            }
        } else {
            for (uint64_t s = 8; s <= (UINT64_C(4) << 20); s <<= 1) {
                o->sizes[o->nsizes++] = s;
            }
        }
    }
    return 0;
}

/* ---- one measurement ------------------------------------------------------------------ */

typedef struct config {
    bench_spec_t spec;
    bench_row_t* row;
    struct config* reference; /* run right before each trial of this one (bench_row_t) */
    double rate[16];
    double cpu[16];
    double waits[16];
    double wakes[16];
    int done;
} config_t;

static char g_self[4096];

/*
 * How long one trial of a size runs. Above 1 MiB trials last longer in proportion, so that
 * each carries about as many messages as a 1 MiB trial: at 4 MiB a 150 ms trial carried
 * some 200 messages, and two trials run back to back then differed by up to 25 %.
 */
static int64_t trial_ns(int64_t duration_ns, uint64_t msg_bytes) {
    uint64_t mib = UINT64_C(1) << 20;
    return msg_bytes <= mib ? duration_ns : duration_ns * (int64_t)(msg_bytes / mib);
}

/*
 * The order rows run in within a round. This host's speed changes from one second to the
 * next (a run's trials of one row can differ by 5x), so the rows a target compares run next
 * to each other: per backing and mode, bare-ring busy-poll, floor-ring, iob-ring busy-poll,
 * iob-ring blocking, bare-ring blocking. Every other row keeps its place after them.
 */
static uint64_t run_order_key(const config_t* c, size_t index) {
    const bench_transport_t* t = &bench_transports[c->spec.transport];
    if ((t->caps & BENCH_CAP_FLOOR) != 0) {
        return ((uint64_t)c->spec.backing << 16) | ((uint64_t)c->spec.mode << 8) | 1;
    }
    if ((t->caps & BENCH_CAP_RING) == 0) {
        return (UINT64_C(1) << 40) | index;
    }
    bool iob = (t->caps & BENCH_CAP_IOBD) != 0;
    bool block = c->spec.wait == BENCH_BLOCK;
    uint64_t slot = block ? (iob ? 3 : 4) : (iob ? 2 : 0);
    return ((uint64_t)c->spec.backing << 16) | ((uint64_t)c->spec.mode << 8) | slot;
}

static const config_t* g_order_cfgs;

static int run_order_cmp(const void* a, const void* b) {
    size_t i = *(const size_t*)a;
    size_t j = *(const size_t*)b;
    uint64_t ki = run_order_key(&g_order_cfgs[i], i);
    uint64_t kj = run_order_key(&g_order_cfgs[j], j);
    if (ki != kj) {
        return ki < kj ? -1 : 1;
    }
    return i < j ? -1 : (i > j);
}

static size_t* run_order(const config_t* cfgs, size_t n) {
    size_t* order = calloc(n == 0 ? 1 : n, sizeof(size_t));
    if (order == NULL) {
        fprintf(stderr, "iob-bench: ZX_ERR_NO_MEMORY: run order\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
    }
    g_order_cfgs = cfgs;
    qsort(order, n, sizeof(size_t), run_order_cmp);
    return order;
}

static void note_no_hugepages(bench_row_t* row) {
    snprintf(row->note, sizeof(row->note),
             "no free 2M hugepages (%ld free); as root, --reserve-hugepages", pool_2m(true));
}

/* Runs one trial; returns false when the measurement must be reported as skipped. */
static bool run_trial(config_t* c) {
    const bench_transport_t* t = &bench_transports[c->spec.transport];
    bench_channel_t ch;
    char note[160] = "";
    zx_status_t st = t->prepare(&c->spec, &ch, note, sizeof(note));
    if (st != ZX_OK) {
        if (c->spec.backing == IOB_BACKING_2M && st == ZX_ERR_NO_MEMORY) {
            note_no_hugepages(c->row);
        } else {
            snprintf(c->row->note, sizeof(c->row->note), "%s", note);
        }
        c->row->skipped = true;
        return false;
    }
    bool single = (t->caps & BENCH_CAP_SINGLE) != 0;
    char spec_text[256];
    bench_spec_format(&c->spec, spec_text, sizeof(spec_text));
    int ready[2] = {-1, -1};
    if (!single && pipe2(ready, O_CLOEXEC) != 0) {
        c->row->skipped = true;
        snprintf(c->row->note, sizeof(c->row->note), "pipe: %s", strerror(errno));
        return false;
    }
    int pids[2] = {-1, -1};
    int res[2] = {-1, -1};
    int nroles = single ? 1 : 2;
    /* The consumer first: it must be mapped and waiting before the producer's clock starts. */
    for (int k = nroles - 1; k >= 0; k--) {
        bench_role_t role = single ? BENCH_PRODUCER : (bench_role_t)k;
        int rp[2];
        if (pipe2(rp, O_CLOEXEC) != 0) {
            break;
        }
        char nfds[8];
        snprintf(nfds, sizeof(nfds), "%d", ch.nfds[role]);
        char* argv[] = {g_self,  "--role", role == BENCH_PRODUCER ? "producer" : "consumer",
                        "--spec", spec_text, "--nfds", nfds, "--arg",
                        ch.arg[role][0] ? ch.arg[role] : "-", NULL};
        int ready_end = single ? -1 : (role == BENCH_PRODUCER ? ready[0] : ready[1]);
        pids[role] = bench_spawn(g_self, argv, ch.fds[role], ch.nfds[role], ready_end, rp[1]);
        close(rp[1]);
        res[role] = rp[0];
    }
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < BENCH_MAX_FDS; i++) {
            if (ch.fds[r][i] >= 0) {
                close(ch.fds[r][i]);
            }
        }
        if (ready[r] >= 0) {
            close(ready[r]);
        }
    }
    int64_t timeout = c->spec.duration_ns + INT64_C(60000000000);
    char line[2][512];
    bench_side_result_t side[2];
    memset(side, 0, sizeof(side));
    bool ok = true;
    for (int k = 0; k < nroles; k++) {
        st = bench_collect(pids[k], res[k], timeout, line[k], sizeof(line[k]));
        char role_name[16];
        int okflag = 0;
        char err[160] = "";
        if (sscanf(line[k], "%15s %" SCNd64 " %" SCNd64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                            " %" SCNu64 " %d %159[^\n]",
                   role_name, &side[k].t_start, &side[k].t_end, &side[k].msgs, &side[k].cpu_ns,
                   &side[k].futex_waits, &side[k].futex_wakes, &okflag, err) < 8) {
            okflag = 0;
            snprintf(err, sizeof(err), "%.150s", line[k][0] ? line[k] : "no result");
        }
        if (st != ZX_OK || okflag != 1) {
            ok = false;
            if (c->row->note[0] == '\0') {
                snprintf(c->row->note, sizeof(c->row->note), "%s: %.140s",
                         k == 0 ? "producer" : "consumer", err);
            }
        }
    }
    t->discard(&ch);
    /*
     * A 2M ring whose creator is a child (iob-ring: iobd allocates at zx_iob_create) learns
     * that the hugepage pool ran dry only there; that is the same "no hugepages" as a
     * bare-ring prepare failing, so the row is skipped the same way, not failed.
     */
    if (!ok && c->spec.backing == IOB_BACKING_2M &&
        strstr(c->row->note, "open: ZX_ERR_NO_MEMORY") != NULL) {
        note_no_hugepages(c->row);
        c->row->skipped = true;
        return false;
    }
    double rate;
    uint64_t msgs;
    if (single) {
        msgs = side[0].msgs;
        rate = (double)msgs * 1e9 / (double)(side[0].t_end - side[0].t_start);
    } else {
        msgs = side[1].msgs;
        if (side[0].msgs != side[1].msgs) {
            ok = false;
        }
        rate = (double)msgs * 1e9 / (double)(side[1].t_end - side[0].t_start);
    }
    if (!ok || msgs == 0) {
        c->row->verified = false;
        rate = 0;
    }
    int d = c->done++;
    c->rate[d] = rate;
    double m = msgs > 0 ? (double)msgs : 1;
    c->cpu[d] = (double)(side[0].cpu_ns + side[1].cpu_ns) / m;
    c->waits[d] = (double)(side[0].futex_waits + side[1].futex_waits) / m;
    c->wakes[d] = (double)(side[0].futex_wakes + side[1].futex_wakes) / m;
    return true;
}

static void finish_row(config_t* c) {
    bench_row_t* r = c->row;
    if (r->skipped || c->done == 0) {
        return;
    }
    bench_summarize(c->rate, c->done, &r->msgs_per_s);
    for (int i = 0; i < c->done && i < 16; i++) {
        r->trial_rates[i] = c->rate[i];
    }
    r->trial_count = c->done < 16 ? c->done : 16;
    /* A reference that missed a round would pair the wrong trials: then none is kept. */
    const config_t* ref = c->reference;
    if (ref != NULL && !ref->row->skipped && ref->done == c->done && ref->row->verified) {
        for (int i = 0; i < r->trial_count; i++) {
            r->reference_rates[i] = ref->rate[i];
        }
        r->reference_count = r->trial_count;
    }
    bench_summary_t s;
    bench_summarize(c->cpu, c->done, &s);
    r->cpu_ns_per_msg = s.median;
    bench_summarize(c->waits, c->done, &s);
    r->futex_waits_per_msg = s.median;
    bench_summarize(c->wakes, c->done, &s);
    r->futex_wakes_per_msg = s.median;
    r->payload_bytes_per_s = r->msgs_per_s.median * (double)r->msg_bytes;
}

static void progress(const options_t* o, size_t done, size_t total, const config_t* c) {
    (void)o;
    char size[32];
    snprintf(size, sizeof(size), "%" PRIu64, c->spec.msg_bytes);
    bool tty = isatty(STDERR_FILENO);
    if (tty) {
        fprintf(stderr, "\r\033[K[%zu/%zu] %s %s %s %s %s %s B", done, total, c->row->transport,
                bench_mode_name(c->spec.mode), c->row->backing, bench_wait_name(c->spec.wait),
                bench_load_name(c->spec.load), size);
    } else if (done == total || done % 50 == 0) {
        fprintf(stderr, "iob-bench: %zu/%zu trials\n", done, total);
    }
}

/* ---- main ----------------------------------------------------------------------------------- */

static int child_main(int argc, char** argv) {
    const char* role = NULL;
    const char* spec = NULL;
    const char* arg = "";
    const char* pp_kind = NULL;
    int nfds = 0;
    int cpu = -1;
    uint64_t iters = 0;
    bool block = false;
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--block") == 0) {
            block = true;
        } else if (strcmp(argv[i], "--spin") == 0) {
            block = false;
        } else if (!has_value) {
            break;
        } else if (strcmp(argv[i], "--role") == 0) {
            role = argv[++i];
        } else if (strcmp(argv[i], "--spec") == 0) {
            spec = argv[++i];
        } else if (strcmp(argv[i], "--nfds") == 0) {
            nfds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--arg") == 0) {
            arg = argv[++i];
        } else if (strcmp(argv[i], "--pingpong") == 0) {
            pp_kind = argv[++i];
        } else if (strcmp(argv[i], "--iters") == 0) {
            iters = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--cpu") == 0) {
            cpu = atoi(argv[++i]);
        }
    }
    if (role == NULL) {
        return 2;
    }
    bench_role_t r = strcmp(role, "producer") == 0 ? BENCH_PRODUCER : BENCH_CONSUMER;
    if (pp_kind != NULL) {
        return bench_pingpong_child_main(r, pp_kind, iters, cpu, block);
    }
    bench_spec_t s;
    if (spec == NULL || bench_spec_parse(spec, &s) != ZX_OK) {
        return 2;
    }
    return bench_child_main(r, &s, nfds, arg);
}

static bool is_child(int argc, char** argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--role") == 0) {
            return true;
        }
    }
    return false;
}

static char* join_path(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int main(int argc, char** argv) {
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof(g_self) - 1);
    if (n <= 0) {
        snprintf(g_self, sizeof(g_self), "%s", argv[0]);
    } else {
        g_self[n] = '\0';
    }
    if (is_child(argc, argv)) {
        return child_main(argc, argv);
    }
    options_t o;
    if (parse_options(argc, argv, &o) != 0) {
        return 2;
    }
    if (o.out_dir != NULL) {
        mkdir(o.out_dir, 0755);
        if (o.csv == NULL) {
            o.csv = join_path(o.out_dir, "throughput.csv");
        }
        if (o.json == NULL) {
            o.json = join_path(o.out_dir, "results.json");
        }
        if (o.plot == NULL) {
            o.plot = join_path(o.out_dir, "throughput.png");
        }
        if (o.latency_csv == NULL) {
            o.latency_csv = join_path(o.out_dir, "latency.csv");
        }
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (o.cpu[0] >= ncpu || o.cpu[1] >= ncpu) {
        o.cpu[0] = o.cpu[1] = -1;
        fprintf(stderr, "iob-bench: fewer than 2 CPUs online; not pinning\n");
    }
    if (o.reserve_hugepages && o.two_meg) {
        hugepages_reserve(48);
    }
    bench_machine_t machine;
    bench_machine_describe(&machine);
    long hp_total = pool_2m(false);
    long hp_free = pool_2m(true);
    snprintf(machine.backing_note, sizeof(machine.backing_note),
             "4K: shmem memfd; 2M: hugetlb memfd, pool %ld pages, %ld free at start", hp_total,
             hp_free);
    /* iob-ring and grpc need iobd: started (or found via IOB_SERVER) before the plan,
     * which labels the grpc rows with the backing of the server they use. */
    bool use_iobd = false;
    for (size_t t = 0; t < bench_transport_count; t++) {
        use_iobd |= o.transport_on[t] && (bench_transports[t].caps & BENCH_CAP_IOBD) != 0;
    }
    if (use_iobd) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        char iobd_note[140];
        bench_iobd_start(o.two_meg, iobd_note, sizeof(iobd_note));
        size_t used = strlen(machine.backing_note);
        snprintf(machine.backing_note + used, sizeof(machine.backing_note) - used, "; %s",
                 iobd_note);
    }

    /* The measurement plan: full load first (trials interleaved per size), then paced. */
    size_t max_rows = (size_t)o.nsizes * 64;
    bench_row_t* rows = calloc(max_rows, sizeof(bench_row_t));
    config_t* cfgs = calloc(max_rows, sizeof(config_t));
    size_t nrows = 0;
    iob_backing_t backings[2] = {IOB_BACKING_2M, IOB_BACKING_4K};
    for (int si = 0; si < o.nsizes; si++) {
        for (size_t t = 0; t < bench_transport_count; t++) {
            if (!o.transport_on[t]) {
                continue;
            }
            const bench_transport_t* tr = &bench_transports[t];
            for (int load = 0; load < 2; load++) {
                if (load == BENCH_PACED && (!o.paced ||
                                            (tr->caps & (BENCH_CAP_SINGLE | BENCH_CAP_FLOOR)) != 0 ||
                                            strcmp(tr->name, "tcp") == 0 ||
                                            strcmp(tr->name, "pipe") == 0 ||
                                            (tr->caps & (BENCH_CAP_IOBD | BENCH_CAP_STREAM)) ==
                                                (BENCH_CAP_IOBD | BENCH_CAP_STREAM))) {
                    continue;
                }
                /* iob-ring paces with bare-ring's very code; the quick run (a smoke test
                 * under 30 s) skips the duplicate rows and their per-trial iobd setup. */
                if (load == BENCH_PACED && o.quick && strcmp(tr->name, "iob-ring") == 0) {
                    continue;
                }
                for (int b = 0; b < 2; b++) {
                    if ((tr->caps & (BENCH_CAP_RING | BENCH_CAP_FLOOR)) == 0 &&
                        backings[b] != IOB_BACKING_4K) {
                        continue;
                    }
                    if (backings[b] == IOB_BACKING_2M && !o.two_meg) {
                        continue;
                    }
                    for (int mode = 0; mode < 2; mode++) {
                        if ((tr->caps & BENCH_CAP_RING) == 0 && mode == BENCH_ZEROCOPY) {
                            continue;
                        }
                        if (load == BENCH_PACED && mode == BENCH_ZEROCOPY) {
                            continue;
                        }
                        for (int w = 0; w < 2; w++) {
                            bench_wait_t wait = (bench_wait_t)w;
                            if ((tr->caps & BENCH_CAP_RING) == 0) {
                                /* Kernel paths block; memcpy does not wait at all, the
                                 * mediated reader polls its mapping, the floor busy-polls. */
                                wait = (tr->caps &
                                        (BENCH_CAP_SINGLE | BENCH_CAP_POLLED | BENCH_CAP_FLOOR))
                                           ? BENCH_SPIN
                                           : BENCH_BLOCK;
                                if (w == 1) {
                                    continue;
                                }
                            } else if (wait == BENCH_BLOCK && !o.block) {
                                continue;
                            }
                            config_t* c = &cfgs[nrows];
                            bench_row_t* r = &rows[nrows++];
                            c->row = r;
                            c->spec.transport = (int)t;
                            c->spec.mode = (bench_mode_t)mode;
                            c->spec.backing = backings[b];
                            c->spec.wait = wait;
                            c->spec.load = (bench_load_t)load;
                            c->spec.msg_bytes = o.sizes[si];
                            c->spec.ring_bytes =
                                bench_ring_bytes_for(o.sizes[si], backings[b], o.ring_bytes);
                            c->spec.batch = o.batch;
                            c->spec.duration_ns = trial_ns(o.duration_ns, o.sizes[si]);
                            c->spec.cpu[0] = o.cpu[0];
                            c->spec.cpu[1] = o.cpu[1];
                            c->spec.verify = o.verify;
                            r->transport = tr->name;
                            r->mode = c->spec.mode;
                            r->backing = iob_backing_name(backings[b]);
                            r->wait = wait;
                            r->load = c->spec.load;
                            r->msg_bytes = o.sizes[si];
                            r->verified = true;
                            r->verify = o.verify;
                            if ((tr->caps & BENCH_CAP_IOBD) != 0 &&
                                (tr->caps & BENCH_CAP_STREAM) != 0) {
                                /* Its region lives in whichever iobd serves it. */
                                c->spec.backing = bench_iobd_stream_backing();
                                r->backing = iob_backing_name(c->spec.backing);
                            }
                        }
                    }
                }
            }
        }
    }
    /*
     * The zero-copy target compares iob-ring zero-copy at 32 B with bare-ring copy at 8 B,
     * two sizes that never share a round: bare-ring copy at 8 B is measured again right
     * before each trial of the 32 B zero-copy row, in its own hidden row.
     */
    bench_row_t ref_rows[2];
    config_t ref_cfgs[2];
    memset(ref_rows, 0, sizeof ref_rows);
    memset(ref_cfgs, 0, sizeof ref_cfgs);
    size_t nrefs = 0;
    size_t bare = bench_transport_count;
    for (size_t t = 0; t < bench_transport_count; t++) {
        if (strcmp(bench_transports[t].name, "bare-ring") == 0) {
            bare = t;
        }
    }
    for (size_t i = 0; i < nrows && bare < bench_transport_count; i++) {
        config_t* c = &cfgs[i];
        if (strcmp(c->row->transport, "iob-ring") != 0 || c->spec.mode != BENCH_ZEROCOPY ||
            c->spec.wait != BENCH_SPIN || c->spec.load != BENCH_FULL ||
            c->spec.msg_bytes != 32 || nrefs == 2) {
            continue;
        }
        config_t* ref = &ref_cfgs[nrefs];
        ref->row = &ref_rows[nrefs++];
        ref->spec = c->spec;
        ref->spec.transport = (int)bare;
        ref->spec.mode = BENCH_COPY;
        ref->spec.msg_bytes = 8;
        ref->spec.ring_bytes = bench_ring_bytes_for(8, c->spec.backing, o.ring_bytes);
        ref->row->transport = "bare-ring";
        ref->row->verified = true;
        ref->row->verify = o.verify;
        c->reference = ref;
        c->row->reference = "bare-ring copy spin 8 B, run right before each trial";
    }
    size_t* order = run_order(cfgs, nrows);
    size_t total = nrows * (size_t)o.trials;
    size_t done = 0;
    int64_t t_begin = bench_now_ns();
    for (int si = 0; si < o.nsizes; si++) {
        for (int load = 0; load < 2; load++) {
            if (load == BENCH_PACED) {
                /* 10 % of the same path's busy-poll rate at full load, measured just now. */
                for (size_t i = 0; i < nrows; i++) {
                    config_t* c = &cfgs[i];
                    if (c->spec.msg_bytes != o.sizes[si] || c->spec.load != BENCH_PACED) {
                        continue;
                    }
                    double ref = 0;
                    for (size_t j = 0; j < nrows; j++) {
                        config_t* f = &cfgs[j];
                        if (f->spec.msg_bytes == c->spec.msg_bytes &&
                            f->spec.load == BENCH_FULL && f->spec.transport == c->spec.transport &&
                            f->spec.backing == c->spec.backing && f->spec.mode == c->spec.mode &&
                            (f->spec.wait == BENCH_SPIN ||
                             (bench_transports[f->spec.transport].caps & BENCH_CAP_RING) == 0) &&
                            !f->row->skipped) {
                            ref = f->row->msgs_per_s.median;
                        }
                    }
                    c->spec.pace_rate = ref * 0.10;
                    if (ref <= 0) {
                        c->row->skipped = true;
                        snprintf(c->row->note, sizeof(c->row->note), "no busy-poll reference");
                    } else {
                        snprintf(c->row->note, sizeof(c->row->note), "offered %.0f msg/s",
                                 c->spec.pace_rate);
                    }
                }
            }
            for (int trial = 0; trial < o.trials; trial++) {
                for (size_t k = 0; k < nrows; k++) {
                    config_t* c = &cfgs[order[k]];
                    if (c->spec.msg_bytes != o.sizes[si] || (int)c->spec.load != load) {
                        continue;
                    }
                    if (!c->row->skipped) {
                        if (c->reference != NULL && !c->reference->row->skipped) {
                            run_trial(c->reference);
                        }
                        run_trial(c);
                    }
                    done++;
                    progress(&o, done, total, c);
                }
            }
            for (size_t i = 0; i < nrows; i++) {
                if (cfgs[i].spec.msg_bytes == o.sizes[si] && (int)cfgs[i].spec.load == load) {
                    finish_row(&cfgs[i]);
                }
            }
        }
    }
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[K");
    }
    /* The servers are done once the throughput trials are; a dirty exit fails the run. */
    int iobd_rc = use_iobd ? bench_iobd_stop() : 0;

    /* Round trips: the transports interleaved trial by trial as well. */
    const char* kinds[] = {"cacheline", "ring", "ring-block", "pipe", "uds"};
    bench_latency_row_t lat[5];
    memset(lat, 0, sizeof(lat));
    size_t nlat = 0;
    if (o.latency) {
        nlat = 5;
        for (size_t k = 0; k < nlat; k++) {
            lat[k].kind = kinds[k];
        }
        for (int trial = 0; trial < o.trials && trial < 16; trial++) {
            for (size_t k = 0; k < nlat; k++) {
                if (lat[k].skipped) {
                    continue;
                }
                bool block = strcmp(kinds[k], "ring-block") == 0;
                const char* kind = block ? "ring" : kinds[k];
                bench_latency_result_t* res = &lat[k].result[lat[k].trials];
                char note[160] = "";
                /* Slow kernel paths get fewer iterations so the quick run stays quick. */
                uint64_t iters = o.latency_iters;
                if (strcmp(kind, "pipe") == 0 || strcmp(kind, "uds") == 0 || block) {
                    iters /= 4;
                }
                if (bench_latency_run(g_self, kind, iters, o.cpu, block, res, note,
                                      sizeof(note)) != ZX_OK) {
                    lat[k].skipped = true;
                    snprintf(lat[k].note, sizeof(lat[k].note), "%s", note);
                    continue;
                }
                lat[k].trials++;
                if (isatty(STDERR_FILENO)) {
                    fprintf(stderr, "\r\033[Kround trip %s trial %d", kinds[k], trial + 1);
                }
            }
        }
        if (isatty(STDERR_FILENO)) {
            fprintf(stderr, "\r\033[K");
        }
        for (size_t k = 0; k < nlat; k++) {
            if (lat[k].skipped || lat[k].trials == 0) {
                continue;
            }
            double v50[16];
            double v99[16];
            double v999[16];
            for (int t = 0; t < lat[k].trials; t++) {
                v50[t] = lat[k].result[t].p50_ns;
                v99[t] = lat[k].result[t].p99_ns;
                v999[t] = lat[k].result[t].p999_ns;
            }
            bench_summary_t s;
            bench_summarize(v50, lat[k].trials, &s);
            lat[k].p50_ns = s.median;
            lat[k].p50_min = s.min;
            lat[k].p50_max = s.max;
            bench_summarize(v99, lat[k].trials, &s);
            lat[k].p99_ns = s.median;
            bench_summarize(v999, lat[k].trials, &s);
            lat[k].p999_ns = s.median;
        }
    }

    printf("iob-bench: %s, %d CPUs, %s; %s; load %.2f; %d trials of %" PRId64
           " ms each (longer in proportion above 1 MiB), median (min..max); producer on CPU %d, "
           "consumer on CPU %d; batch %u; verification %s\n",
           machine.cpu_model, machine.cpus, machine.kernel, machine.backing_note,
           machine.load_before[0], o.trials, o.duration_ns / 1000000, o.cpu[0], o.cpu[1],
           o.batch, bench_verify_name(o.verify));
    bench_report_table(stdout, rows, nrows);
    if (nlat > 0) {
        bench_report_latency_table(stdout, lat, nlat);
    }
    printf("\ntotal time %.1f s\n", (double)(bench_now_ns() - t_begin) / 1e9);
    int rc = iobd_rc;
    if (o.csv != NULL && bench_report_csv(o.csv, rows, nrows) != 0) {
        fprintf(stderr, "iob-bench: cannot write %s\n", o.csv);
        rc = 1;
    }
    if (o.latency_csv != NULL && bench_report_latency_csv(o.latency_csv, lat, nlat) != 0) {
        fprintf(stderr, "iob-bench: cannot write %s\n", o.latency_csv);
        rc = 1;
    }
    if (o.json != NULL &&
        bench_report_json(o.json, &machine, rows, nrows, lat, nlat, o.trials, o.quick) != 0) {
        fprintf(stderr, "iob-bench: cannot write %s\n", o.json);
        rc = 1;
    }
    if (o.plot != NULL && bench_report_plot(o.plot, rows, nrows) != 0) {
        fprintf(stderr, "iob-bench: gnuplot failed for %s (is gnuplot installed?)\n", o.plot);
    }
    for (size_t i = 0; i < nrows; i++) {
        if (!rows[i].skipped && !rows[i].verified) {
            fprintf(stderr, "iob-bench: verification FAILED for %s %s %s %s %" PRIu64 " B: %s\n",
                    rows[i].transport, bench_mode_name(rows[i].mode), rows[i].backing,
                    bench_wait_name(rows[i].wait), rows[i].msg_bytes, rows[i].note);
            rc = 1;
        }
    }
    free(order);
    free(rows);
    free(cfgs);
    iob_tk_pool_restore();
    return rc;
}
