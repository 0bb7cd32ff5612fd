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

static char g_self[4096];

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

/* The machine's description for the report, and iobd (when a transport needs it). */
static bool set_up(bench_options_t* o, bench_machine_t* machine) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (o->cpu[0] >= ncpu || o->cpu[1] >= ncpu) {
        o->cpu[0] = o->cpu[1] = -1;
        fprintf(stderr, "iob-bench: fewer than 2 CPUs online; not pinning\n");
    }
    if (o->reserve_hugepages && o->two_meg) {
        hugepages_reserve(48);
    }
    bench_machine_describe(machine);
    snprintf(machine->backing_note, sizeof(machine->backing_note),
             "4K: shmem memfd; 2M: hugetlb memfd, pool %ld pages, %ld free at start",
             bench_pool_2m(false), bench_pool_2m(true));
    /* iob-ring and grpc need iobd: started (or found via IOB_SERVER) before the plan,
     * which labels the grpc rows with the backing of the server they use. */
    bool use_iobd = false;
    for (size_t t = 0; t < bench_transport_count; t++) {
        use_iobd |= o->transport_on[t] && (bench_transports[t].caps & BENCH_CAP_IOBD) != 0;
    }
    if (use_iobd) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        char iobd_note[140];
        bench_iobd_start(o->two_meg, iobd_note, sizeof(iobd_note));
        size_t used = strlen(machine->backing_note);
        snprintf(machine->backing_note + used, sizeof(machine->backing_note) - used, "; %s",
                 iobd_note);
    }
    return use_iobd;
}

/* One trial of a round-trip kind into lat's next result; false (and lat skipped) on failure. */
static bool latency_trial(const bench_options_t* o, bench_latency_row_t* lat) {
    bool block = strcmp(lat->kind, "ring-block") == 0;
    const char* kind = block ? "ring" : lat->kind;
    bench_latency_result_t* res = &lat->result[lat->trials];
    char note[160] = "";
    /* Slow kernel paths get fewer iterations so the quick run stays quick. */
    uint64_t iters = o->latency_iters;
    if (strcmp(kind, "pipe") == 0 || strcmp(kind, "uds") == 0 || block) {
        iters /= 4;
    }
    if (bench_latency_run(g_self, kind, iters, o->cpu, block, res, note, sizeof(note)) != ZX_OK) {
        lat->skipped = true;
        snprintf(lat->note, sizeof(lat->note), "%s", note);
        return false;
    }
    lat->trials++;
    return true;
}

/* A kind's figures: the median over its trials of each trial's percentiles. */
static void latency_summarize(bench_latency_row_t* lat) {
    double v50[16];
    double v99[16];
    double v999[16];
    for (int t = 0; t < lat->trials; t++) {
        v50[t] = lat->result[t].p50_ns;
        v99[t] = lat->result[t].p99_ns;
        v999[t] = lat->result[t].p999_ns;
    }
    bench_summary_t s;
    bench_summarize(v50, lat->trials, &s);
    lat->p50_ns = s.median;
    lat->p50_min = s.min;
    lat->p50_max = s.max;
    bench_summarize(v99, lat->trials, &s);
    lat->p99_ns = s.median;
    bench_summarize(v999, lat->trials, &s);
    lat->p999_ns = s.median;
}

/* Round trips: the kinds interleaved trial by trial as well. Returns how many rows lat has. */
static size_t run_latency(const bench_options_t* o, bench_latency_row_t lat[5]) {
    static const char* const kinds[] = {"cacheline", "ring", "ring-block", "pipe", "uds"};
    memset(lat, 0, 5 * sizeof(*lat));
    if (!o->latency) {
        return 0;
    }
    for (size_t k = 0; k < 5; k++) {
        lat[k].kind = kinds[k];
    }
    for (int trial = 0; trial < o->trials && trial < 16; trial++) {
        for (size_t k = 0; k < 5; k++) {
            if (!lat[k].skipped && latency_trial(o, &lat[k]) && isatty(STDERR_FILENO)) {
                fprintf(stderr, "\r\033[Kround trip %s trial %d", kinds[k], trial + 1);
            }
        }
    }
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[K");
    }
    for (size_t k = 0; k < 5; k++) {
        if (!lat[k].skipped && lat[k].trials > 0) {
            latency_summarize(&lat[k]);
        }
    }
    return 5;
}

/* The table on stdout and the files; 1 when a file could not be written or a row failed. */
static int report(const bench_options_t* o, const bench_machine_t* machine, const bench_row_t* rows,
                  size_t nrows, const bench_latency_row_t* lat, size_t nlat, int64_t t_begin) {
    printf("iob-bench: %s, %d CPUs, %s; %s; load %.2f; %d trials of %" PRId64
           " ms each (longer in proportion above 1 MiB), median (min..max); producer on CPU %d, "
           "consumer on CPU %d; batch %u; verification %s\n",
           machine->cpu_model, machine->cpus, machine->kernel, machine->backing_note,
           machine->load_before[0], o->trials, o->duration_ns / 1000000, o->cpu[0], o->cpu[1],
           o->batch, bench_verify_name(o->verify));
    bench_report_table(stdout, rows, nrows);
    if (nlat > 0) {
        bench_report_latency_table(stdout, lat, nlat);
    }
    printf("\ntotal time %.1f s\n", (double)(bench_now_ns() - t_begin) / 1e9);
    int rc = 0;
    if (o->csv != NULL && bench_report_csv(o->csv, rows, nrows) != 0) {
        fprintf(stderr, "iob-bench: cannot write %s\n", o->csv);
        rc = 1;
    }
    if (o->latency_csv != NULL && bench_report_latency_csv(o->latency_csv, lat, nlat) != 0) {
        fprintf(stderr, "iob-bench: cannot write %s\n", o->latency_csv);
        rc = 1;
    }
    if (o->json != NULL &&
        bench_report_json(o->json, machine, rows, nrows, lat, nlat, o->trials, o->quick) != 0) {
        fprintf(stderr, "iob-bench: cannot write %s\n", o->json);
        rc = 1;
    }
    if (o->plot != NULL && bench_report_plot(o->plot, rows, nrows) != 0) {
        fprintf(stderr, "iob-bench: gnuplot failed for %s (is gnuplot installed?)\n", o->plot);
    }
    for (size_t i = 0; i < nrows; i++) {
        if (!rows[i].skipped && !rows[i].verified) {
            fprintf(stderr, "iob-bench: verification FAILED for %s %s %s %s %" PRIu64 " B: %s\n",
                    rows[i].transport, bench_mode_name(rows[i].mode), rows[i].backing,
                    bench_wait_name(rows[i].wait), rows[i].msg_bytes, rows[i].note);
            rc = 1;
        }
    }
    return rc;
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
    bench_options_t o;
    if (bench_options_parse(argc, argv, &o) != 0) {
        return 2;
    }
    bench_machine_t machine;
    bool use_iobd = set_up(&o, &machine);
    int64_t t_begin = bench_now_ns();
    size_t nrows = 0;
    bench_row_t* rows = bench_throughput_run(&o, g_self, &nrows);
    /* The servers are done once the throughput trials are; a dirty exit fails the run. */
    int rc = use_iobd ? bench_iobd_stop() : 0;
    if (rows == NULL) {
        fprintf(stderr, "iob-bench: ZX_ERR_NO_MEMORY: rows\n");
        return 1;
    }
    bench_latency_row_t lat[5];
    size_t nlat = run_latency(&o, lat);
    rc |= report(&o, &machine, rows, nrows, lat, nlat, t_begin);
    free(rows);
    iob_tk_pool_restore();
    return rc;
}
