/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-control internals: the control-plane benchmarks of issues 3 (management plane:
 * create + close against a bare unary call) and 4 (mapping: import + map of a 64 MiB region,
 * and creating it, each against a bare-memfd floor), the scale figures (cost against what
 * iobd holds) and the bounded load test. Not installed.
 *
 * Process model (the same rule as iob-bench): the orchestrator never touches gRPC. It starts
 * its own iobd processes and re-executes this binary (posix_spawn of /proc/self/exe) for every
 * process that talks to iobd, because gRPC's C core is not fork-safe. Children are driven
 * over two pipes with one text line per request and per reply:
 *   fd BCTL_FD_CMD  orchestrator -> child requests ("lat ...", "tput ...", "quit")
 *   fd BCTL_FD_RES  child -> orchestrator replies ("ok key=value ..." or "err text")
 * and, for the two mapping roles, a Unix SOCK_SEQPACKET pair between them at BCTL_FD_PEER
 * (the token and the floor's memfd travel over it, as they would between real processes).
 */
#ifndef IOB_BENCH_BENCH_CONTROL_H_
#define IOB_BENCH_BENCH_CONTROL_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "client/testkit/iobd_launch.h"
#include "client/testkit/percentile.h"

#define BCTL_FD_CMD 3
#define BCTL_FD_RES 4
#define BCTL_FD_PEER 5

#define BCTL_LINE_MAX 4096
#define BCTL_MAX_CLIENTS 4

/* ---- statistics (iob_tk_stats computes them) and line protocol (bench_control_util.c) ---- */

/* p50, p99, min, max, mean in the unit of the samples; n. */
typedef iob_tk_stats_t bctl_stats_t;

int64_t bctl_now_ns(void);
/* Appends " <prefix>_p50=.. <prefix>_p99=.. ..." to a reply line. */
void bctl_stats_format(char* line, size_t len, const char* prefix, const bctl_stats_t* s);
/* Reads "<prefix>_p50=" etc. back; false when p50 is missing. */
bool bctl_stats_parse(const char* line, const char* prefix, bctl_stats_t* out);
/* The value of " key=" in line; false when absent. */
bool bctl_kv(const char* line, const char* key, double* out);
bool bctl_kv_str(const char* line, const char* key, char* out, size_t len);
/* Writes one whole line (adds the newline). false on error. */
bool bctl_write_line(int fd, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads one line without the newline. 0: ok, -1: EOF or error, -2: timed out. */
int bctl_read_line(int fd, char* buf, size_t len, int64_t timeout_ms);

/* ---- processes, iobd, hugepages (bench_control_proc.c) ---- */

typedef struct bctl_child {
    pid_t pid;
    int cmd_fd; /* our write end of its BCTL_FD_CMD; -1 when closed */
    int res_fd; /* our read end of its BCTL_FD_RES */
} bctl_child_t;

/*
 * Spawns this binary (self) with argv (argv[0] included), wiring the command and reply pipes
 * and, when peer_fd >= 0, peer_fd as BCTL_FD_PEER. false (with errno) on failure.
 */
bool bctl_spawn_role(const char* self, char* const argv[], int peer_fd, bctl_child_t* out);
/* Asks the child to quit (closes its command pipe), reaps it; SIGKILL after timeout_ms. */
void bctl_child_end(bctl_child_t* c, int timeout_ms);

/* pid, dir, target ("unix:<dir>/iobd.sock"), tcp_target ("" without TCP), log_path. */
typedef iob_tk_iobd_t bctl_iobd_t;

/*
 * Starts iobd (client/testkit/iobd_launch.h) on a fresh temporary directory (Unix socket,
 * map broker) and, when tcp, on a free loopback port. hugepages: "off" or "2M"; extra: more
 * arguments, NULL-terminated (NULL: none). Returns once its sockets accept connections; false
 * with err filled (the daemon's log tail included) otherwise.
 */
bool bctl_iobd_start(const char* iobd_path, const char* hugepages, bool tcp,
                     const char* const* extra, bctl_iobd_t* d, char* err, size_t err_len);
/* SIGTERM, reap (SIGKILL after 5 s), remove the directory. Safe on a stopped one. */
void bctl_iobd_stop(bctl_iobd_t* d);
/* Installs SIGINT/SIGTERM/atexit cleanup: running iobds stop, the hugepage pool is restored. */
void bctl_cleanup_install(void);

/* A process's resident set (VmRSS) and open descriptors (entries of /proc/PID/fd). */
bool bctl_proc_usage(pid_t pid, uint64_t* rss_kib, uint64_t* fds);
/*
 * Raises this process's soft RLIMIT_NOFILE to its hard limit and returns the soft limit now.
 * Children (iobd among them) inherit it: 10,000 live one-region IOBs are 10,000 memfds in
 * iobd, and 256 load clients are 512 pipe ends here.
 */
uint64_t bctl_raise_nofile(void);

/*
 * Makes sure `want` 2 MiB pages are free, growing the pool (root) by what is missing when
 * allowed (client/testkit/hugepage_pool.h: given back by iob_tk_pool_restore, also at exit).
 */
bool bctl_hp_ensure_free(uint64_t want, bool may_grow, char* note, size_t note_len);

/* ---- the command line and the machine (bench_control_options.c) ---- */

typedef struct bctl_options {
    bool quick;
    const char* csv;
    const char* json;
    bool reserve_hugepages;
    int runs;
    int64_t duration_ns;
    int rounds;
    bool tcp;
    bool two_meg;
    bool scale;
    bool load;
    int processes;
    int64_t load_ns;
} bctl_options_t;

/* Parses the orchestrator's arguments and fills in the defaults; non-zero on a bad one. */
int bctl_options_parse(int argc, char** argv, bctl_options_t* o);

/* ---- child roles ---- */

/* bench_control_mgmt.c: one iob_conn client of the management-plane figures. */
int bctl_mgmt_main(int argc, char** argv);
/* bench_control_map.c: process A (creates, exports) and B (imports, maps) of issue 4. */
int bctl_map_creator_main(int argc, char** argv);
int bctl_map_importer_main(int argc, char** argv);

/* bench_control_scale.c: the holder of live IOBs, tokens and sessions of --scale. */
int bctl_scale_hold_main(int argc, char** argv);
/* bench_control_load.c: one of the load test's client processes. */
int bctl_load_main(int argc, char** argv);

/* ---- rows and reports (bench_control_report.c) ---- */

typedef struct bctl_row {
    char section[4];    /* "A" management plane, "B" mapping */
    char figure[48];
    char transport[8];  /* "unix", "tcp", "local" */
    char backing[4];    /* "4K", "2M" */
    int clients;
    bctl_stats_t lat_us; /* per operation; n == 0 when not a latency row */
    double ops_per_s;    /* 0 when not a throughput row */
    char reference[48];  /* the floor this row is compared with; "" none */
    double ratio;        /* against the reference; NAN none */
    char limit[16];      /* the criterion: "<=2.5x", ">=0.4x", "<500us"; "" none */
    char verdict[8];     /* "pass", "FAIL", "info", "skip" */
    char note[200];
} bctl_row_t;

typedef struct bctl_run_info {
    char started[40];
    char kernel[160];
    char cpu_model[128];
    int cpus;
    bool quick;
    char hugepages_note[200];
    double load_before, load_after;
} bctl_run_info_t;

/* The machine and the start time, for the report (bench_control_options.c). */
void bctl_describe(bctl_run_info_t* info, bool quick);

/* bench_control.c: a new row of the report, and a verdict on a "ratio le/ge limit" row. */
bctl_row_t* bctl_row_add(const char* section, const char* figure, const char* transport,
                         const char* backing, int clients);
void bctl_row_judge(bctl_row_t* r, double ratio, double limit, bool le, bool applies);

/*
 * Sections C and D (bench_control_scale.c, bench_control_load.c): each starts its own iobd
 * (iobd: its binary), adds its rows, and returns false when a figure could not be measured.
 * rounds x iters: measured blocks per server; quick: smaller servers.
 */
bool bctl_scale_run(const char* self, const char* iobd, bool quick, int rounds, int iters);

typedef struct bctl_load_options {
    int processes;       /* client processes, in partner pairs (even) */
    int64_t duration_ns; /* each process stops starting iterations after this */
    uint64_t max_iters;  /* and after this many iterations, whichever comes first */
} bctl_load_options_t;
bool bctl_load_run(const char* self, const char* iobd, const bctl_load_options_t* o);

void bctl_report_table(FILE* out, const bctl_row_t* rows, size_t n);
bool bctl_report_csv(const char* path, const bctl_row_t* rows, size_t n);
bool bctl_report_json(const char* path, const bctl_run_info_t* info, const bctl_row_t* rows,
                      size_t n);

#endif /* IOB_BENCH_BENCH_CONTROL_H_ */
