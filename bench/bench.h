/* SPDX-License-Identifier: MIT */
/*
 * iob-bench internals: one measurement's description, the transport table, the child
 * roles and the reports. Not installed.
 *
 * Process model: the orchestrator (the process the user started) never carries data. For
 * each trial it asks the transport to prepare a channel (memfds, a pipe, a socket pair, a
 * listening TCP socket...), then starts the producer and the consumer as fresh processes by
 * posix_spawn of this same binary with a role argument (gRPC is not fork-safe, so never a
 * bare fork), hands each one its descriptors at fixed numbers, and collects one result line
 * from each over a pipe.
 */
#ifndef IOB_BENCH_BENCH_H_
#define IOB_BENCH_BENCH_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <zircon/status.h>
#include <zircon/types.h>

#include "shm/region.h"

typedef enum bench_mode { BENCH_COPY = 0, BENCH_ZEROCOPY = 1 } bench_mode_t;
typedef enum bench_wait { BENCH_SPIN = 0, BENCH_BLOCK = 1 } bench_wait_t;
typedef enum bench_load { BENCH_FULL = 0, BENCH_PACED = 1 } bench_load_t;
typedef enum bench_role { BENCH_PRODUCER = 0, BENCH_CONSUMER = 1 } bench_role_t;
/* What consumers check per message (bench_payload.h); one policy for every row of a run. */
typedef enum bench_verify { BENCH_VERIFY_SAMPLED = 0, BENCH_VERIFY_FULL = 1 } bench_verify_t;

const char* bench_mode_name(bench_mode_t mode);
const char* bench_wait_name(bench_wait_t wait);
const char* bench_load_name(bench_load_t load);
const char* bench_verify_name(bench_verify_t verify);

/* One measurement: what both children need to know, sent to them as argv text. */
typedef struct bench_spec {
    int transport;         /* index into bench_transports */
    bench_mode_t mode;
    iob_backing_t backing; /* rings only; others report 4K */
    bench_wait_t wait;
    bench_load_t load;
    uint64_t msg_bytes;    /* a multiple of 8, at least 8 */
    uint64_t ring_bytes;   /* data region size (rings, memcpy) */
    uint32_t batch;        /* ring index publication batch */
    double pace_rate;      /* messages per second when paced */
    int64_t duration_ns;   /* how long the producer keeps sending */
    int cpu[2];            /* producer, consumer; -1: not pinned */
    bench_verify_t verify;
} bench_spec_t;

void bench_spec_format(const bench_spec_t* spec, char* out, size_t len);
zx_status_t bench_spec_parse(const char* text, bench_spec_t* out);

/* What a child reports. */
typedef struct bench_side_result {
    int64_t t_start;  /* CLOCK_MONOTONIC ns: producer before its first message */
    int64_t t_end;    /* consumer after verifying the last message */
    uint64_t msgs;
    uint64_t cpu_ns;  /* user + system time of the whole child */
    uint64_t futex_waits;
    uint64_t futex_wakes;
    bool ok;
    char error[160];
} bench_side_result_t;

/* ---- transports ------------------------------------------------------------------------- */

#define BENCH_MAX_FDS 4
/* In a child, inherited descriptor i sits at BENCH_FD_BASE + i. */
#define BENCH_FD_BASE 100
#define BENCH_FD_READY 98  /* consumer writes one byte when ready; producer reads it */
#define BENCH_FD_RESULT 99 /* the child's result line */

/* Built by the orchestrator for one trial; the children inherit the listed descriptors. */
typedef struct bench_channel {
    int fds[2][BENCH_MAX_FDS]; /* per role; -1 unused */
    int nfds[2];
    char arg[2][128];          /* per role, free text (a TCP port, an IOB token...) */
    void* priv;                /* the transport's own orchestrator-side state */
} bench_channel_t;

/* A child's view of its end: a descriptor, or two mapped ring regions. */
typedef struct bench_endpoint {
    int fd;
    void* ctrl;
    uint64_t ctrl_size;
    void* data;
    uint64_t data_size;
    void* priv;
} bench_endpoint_t;

#define BENCH_CAP_RING 1u   /* shared-memory ring: copy and zero-copy, spin and block, backings */
#define BENCH_CAP_STREAM 2u /* byte stream: send/recv, one system call per message per side */
#define BENCH_CAP_SINGLE 4u /* one process, no channel (memcpy) */
#define BENCH_CAP_POLLED 8u /* with STREAM: the consumer polls memory instead of blocking */
/* Goes through iobd. With STREAM: its region lives in whichever iobd serves it, whose
 * backing labels the rows. */
#define BENCH_CAP_IOBD 16u
/* The floor ring: its own minimal loops (bench_floor_ring.c), copy mode, busy-poll. */
#define BENCH_CAP_FLOOR 32u

/*
 * A transport: the contract of each member.
 *  prepare  orchestrator, once per trial: creates the channel both roles will use. Returns
 *           ZX_ERR_NOT_SUPPORTED or ZX_ERR_NO_MEMORY with `note` filled to have the row
 *           reported as skipped; on success the orchestrator closes ch's fds after spawning.
 *  discard  orchestrator, after both children ended: frees priv (fds are already closed).
 *  open     child: turns the inherited descriptors (fds[i] is BENCH_FD_BASE + i) into an
 *           endpoint. Ring transports map ctrl read-write and data read-write for the
 *           producer, read-only for the consumer, and the creator has already formatted ctrl.
 *  close    child: unmaps and closes.
 *  send     stream producers: writes the whole message (one system call when the kernel
 *           takes it all).
 *  recv     stream consumers: reads exactly len bytes.
 */
typedef struct bench_transport {
    const char* name;
    unsigned caps;
    zx_status_t (*prepare)(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                           size_t note_len);
    void (*discard)(bench_channel_t* ch);
    zx_status_t (*open)(const bench_spec_t* spec, bench_role_t role, int nfds, const char* arg,
                        bench_endpoint_t* ep);
    void (*close)(bench_endpoint_t* ep);
    zx_status_t (*send)(bench_endpoint_t* ep, const void* buf, size_t len);
    zx_status_t (*recv)(bench_endpoint_t* ep, void* buf, size_t len);
} bench_transport_t;

extern const bench_transport_t bench_transports[];
extern const size_t bench_transport_count;
int bench_transport_find(const char* name); /* -1 when unknown */

/* Ring-region helpers shared by bare-ring and iob-ring. */
uint64_t bench_ring_bytes_for(uint64_t msg_bytes, iob_backing_t backing, uint64_t override);
zx_status_t bench_ring_map(bench_role_t role, int ctrl_fd, int data_fd, bench_endpoint_t* ep);
void bench_ring_unmap(bench_endpoint_t* ep);
/* The bare-ring creator: memfds (hugetlb for 2M/1G), sized, allocated, ctrl formatted. */
zx_status_t bench_memfd_region(iob_backing_t backing, uint64_t size, const char* name, int* fd,
                               char* note, size_t note_len);

/* The iob-ring seam (bench_iob_ring.c). */
zx_status_t bench_iob_ring_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                   size_t note_len);
void bench_iob_ring_discard(bench_channel_t* ch);
zx_status_t bench_iob_ring_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                const char* arg, bench_endpoint_t* ep);
void bench_iob_ring_close(bench_endpoint_t* ep);

/* The grpc baseline: payloads through iobd's WriteRegion/ReadRegion RPCs (bench_grpc.c). */
zx_status_t bench_grpc_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                               size_t note_len);
void bench_grpc_discard(bench_channel_t* ch);
zx_status_t bench_grpc_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                            const char* arg, bench_endpoint_t* ep);
void bench_grpc_close(bench_endpoint_t* ep);
zx_status_t bench_grpc_send(bench_endpoint_t* ep, const void* buf, size_t len);
zx_status_t bench_grpc_recv(bench_endpoint_t* ep, void* buf, size_t len);
/* The mediated path: zx_iob_writev into a mediated-write ring buffer (bench_mediated.c). */
zx_status_t bench_mediated_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                   size_t note_len);
void bench_mediated_discard(bench_channel_t* ch);
zx_status_t bench_mediated_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                const char* arg, bench_endpoint_t* ep);
void bench_mediated_close(bench_endpoint_t* ep);
zx_status_t bench_mediated_send(bench_endpoint_t* ep, const void* buf, size_t len);
zx_status_t bench_mediated_recv(bench_endpoint_t* ep, void* buf, size_t len);

/*
 * The iobd servers of the iob-ring and grpc rows (bench_iobd.c; orchestrator only).
 *  start   private servers per backing (4K; 2M when two_meg and the pool has free pages),
 *          or, with $IOB_SERVER, that server's backing; summary says which.
 *  target  the gRPC target serving `backing` (need_mapping: a local server with a map
 *          broker), or NULL with *st and note saying why (ZX_ERR_NO_MEMORY: no hugepages).
 *  stream_backing  the backing the grpc rows run on (and are labelled with).
 *  kill    SIGTERM to the private servers, from a signal handler.
 *  stop    SIGTERM, wait, clean up; nonzero unless every private server exited 0.
 */
void bench_iobd_start(bool two_meg, char* summary, size_t len);
const char* bench_iobd_target(iob_backing_t backing, bool need_mapping, zx_status_t* st,
                              char* note, size_t note_len);
iob_backing_t bench_iobd_stream_backing(void);
void bench_iobd_kill(void);
int bench_iobd_stop(void);

/*
 * Everything that links libiob or gRPC lives in a module (iob-bench-iob.so) that only the
 * processes that need it load: linked into iob-bench, gRPC's libraries would add ~15 ms
 * of page faults and static initialisation to every child of every transport, tripling
 * the quick run. The module exports one table; bench_iobd.c loads it and forwards the
 * transport table's iob-ring and grpc entries to it.
 */
typedef struct bench_iob_module {
    zx_status_t (*ring_open)(const bench_spec_t* spec, bench_role_t role, int nfds,
                             const char* arg, bench_endpoint_t* ep);
    void (*ring_close)(bench_endpoint_t* ep);
    zx_status_t (*grpc_open)(const bench_spec_t* spec, bench_role_t role, int nfds,
                             const char* arg, bench_endpoint_t* ep);
    void (*grpc_close)(bench_endpoint_t* ep);
    zx_status_t (*grpc_send)(bench_endpoint_t* ep, const void* buf, size_t len);
    zx_status_t (*grpc_recv)(bench_endpoint_t* ep, void* buf, size_t len);
    zx_status_t (*mediated_open)(const bench_spec_t* spec, bench_role_t role, int nfds,
                                 const char* arg, bench_endpoint_t* ep);
    void (*mediated_close)(bench_endpoint_t* ep);
    zx_status_t (*mediated_send)(bench_endpoint_t* ep, const void* buf, size_t len);
    zx_status_t (*mediated_recv)(bench_endpoint_t* ep, void* buf, size_t len);
    /* ServerInfo: backing[8] gets "4K"/"2M"/"1G"; *mappable: a local server with a broker. */
    zx_status_t (*server_info)(const char* target, char* backing, bool* mappable);
} bench_iob_module_t;
#define BENCH_IOB_MODULE_SYMBOL "bench_iob_module_table"

/* In the module (bench_iob_ring.c, bench_grpc.c, bench_iob_module.c). */
zx_status_t bench_iob_ring_module_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                       const char* arg, bench_endpoint_t* ep);
void bench_iob_ring_module_close(bench_endpoint_t* ep);
zx_status_t bench_grpc_module_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                   const char* arg, bench_endpoint_t* ep);
void bench_grpc_module_close(bench_endpoint_t* ep);
zx_status_t bench_grpc_module_send(bench_endpoint_t* ep, const void* buf, size_t len);
zx_status_t bench_grpc_module_recv(bench_endpoint_t* ep, void* buf, size_t len);
/*
 * Hands an IOB token from one role to the other over the trial's socketpair: exactly
 * IOB_TOKEN_SIZE bytes each way, so neither side needs framing (bench_iob_ring.c).
 */
zx_status_t bench_token_io(int fd, char* token, bool out);
zx_status_t bench_mediated_module_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                       const char* arg, bench_endpoint_t* ep);
void bench_mediated_module_close(bench_endpoint_t* ep);
zx_status_t bench_mediated_module_send(bench_endpoint_t* ep, const void* buf, size_t len);
zx_status_t bench_mediated_module_recv(bench_endpoint_t* ep, void* buf, size_t len);

/*
 * Whole-buffer I/O on a pipe or stream socket (bench_transports.c), retrying after EINTR and
 * short transfers. Reading with sock uses recv(MSG_WAITALL); EOF is ZX_ERR_PEER_CLOSED.
 */
zx_status_t bench_write_full(int fd, const void* buf, size_t len);
zx_status_t bench_read_full(int fd, void* buf, size_t len, bool sock);

/* The floor-ring transport (bench_floor_ring.c): prepare, and its two child roles. */
zx_status_t bench_floor_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                size_t note_len);
void bench_floor_producer(const bench_spec_t* spec, bench_endpoint_t* ep, bench_side_result_t* r);
void bench_floor_consumer(const bench_spec_t* spec, bench_endpoint_t* ep, bench_side_result_t* r);

/* ---- child roles (bench_run.c) ----------------------------------------------------------- */

/* What every child role shares: its message buffer (the same page offset for all), the
 * ready handshake (the producer's clock starts once the consumer is ready) and how often a
 * producer reads the clock. */
unsigned char* bench_buffer_alloc(size_t n);
void bench_buffer_free(unsigned char* buf);
void bench_wait_ready(void);
void bench_signal_ready(void);
uint64_t bench_clock_mask(uint64_t msg_bytes);

/* Runs one role of one throughput trial; the result goes to the result fd. Returns exit code. */
int bench_child_main(bench_role_t role, const bench_spec_t* spec, int nfds, const char* arg);

/* Round-trip latency (bench_latency.c). kind: "ring", "cacheline", "pipe", "uds". */
typedef struct bench_latency_result {
    double p50_ns, p99_ns, p999_ns, min_ns, mean_ns;
    uint64_t iterations;
    bool ok;
    char error[160];
} bench_latency_result_t;
int bench_pingpong_child_main(bench_role_t role, const char* kind, uint64_t iterations, int cpu,
                              bool block);
zx_status_t bench_latency_run(const char* self, const char* kind, uint64_t iterations,
                              const int cpu[2], bool block, bench_latency_result_t* out,
                              char* note, size_t note_len);

/* ---- orchestration helpers (bench_main.c) ------------------------------------------------ */

/* Spawns this binary with argv, dup2-ing child_fds[i] to BENCH_FD_BASE+i, ready_fd and
 * result_fd to their fixed numbers. Returns the pid or -1. */
int bench_spawn(const char* self, char* const argv[], const int* child_fds, int nfds,
                int ready_fd, int result_fd);
/* Reads a child's result line (with a timeout) and reaps it. */
zx_status_t bench_collect(int pid, int result_read_fd, int64_t timeout_ns, char* line,
                          size_t len);
void bench_pin_cpu(int cpu);
uint64_t bench_cpu_time_ns(void);
int64_t bench_now_ns(void);

/* ---- the command line (bench_options.c) ------------------------------------------------- */

typedef struct bench_options {
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
} bench_options_t;

/*
 * Parses the orchestrator's arguments and fills in the defaults (--quick's among them) and,
 * with --out, the output files under it. Non-zero (usage printed) on a bad argument.
 */
int bench_options_parse(int argc, char** argv, bench_options_t* o);

/* ---- the throughput phase (bench_throughput.c) ------------------------------------------ */

typedef struct bench_row bench_row_t;

/*
 * Plans the throughput rows of o, runs o->trials interleaved trials of each (self: this
 * binary, which each role re-executes) and summarizes them. Returns the rows (*nrows of
 * them; the caller frees the array), NULL when out of memory.
 */
bench_row_t* bench_throughput_run(const bench_options_t* o, const char* self, size_t* nrows);
/* The 2 MiB pool's pages (free_pages: its free pages); -1 when the kernel has none. */
long bench_pool_2m(bool free_pages);

/* ---- statistics (bench_stats.c) ---------------------------------------------------------- */

typedef struct bench_summary {
    double median, min, max;
    int n;
} bench_summary_t;

void bench_summarize(const double* values, int n, bench_summary_t* out);

/* ---- reports (bench_report.c) ------------------------------------------------------------ */

struct bench_row {
    const char* transport;
    bench_mode_t mode;
    const char* backing;
    bench_wait_t wait;
    bench_load_t load;
    uint64_t msg_bytes;
    bench_summary_t msgs_per_s;
    double payload_bytes_per_s;  /* median msgs/s times msg_bytes */
    double cpu_ns_per_msg;       /* producer + consumer, median over trials */
    double futex_waits_per_msg;
    double futex_wakes_per_msg;
    bool verified;
    bench_verify_t verify;
    bool skipped;
    char note[160];
    /*
     * Each trial's msgs/s in run order. Trials of one size run round by round (every row's
     * trial k, then every row's trial k+1), so rows compare trial by trial too: a ratio of
     * two rows per round is immune to the machine slowing down for a while.
     */
    double trial_rates[16];
    int trial_count;
    /*
     * For the row a target compares with another size (zero-copy at 32 B against the bare
     * ring's copy rate at 8 B): that reference measured again right before each of this
     * row's trials, so the two pair round by round like rows of one size. 0: none.
     */
    const char* reference;       /* what was measured, for the JSON */
    double reference_rates[16];
    int reference_count;
};

typedef struct bench_latency_row {
    const char* kind;
    bench_latency_result_t result[16];
    int trials;
    double p50_ns, p99_ns, p999_ns; /* medians over trials */
    double p50_min, p50_max;
    bool skipped;
    char note[160];
} bench_latency_row_t;

typedef struct bench_machine {
    char cpu_model[128];
    int cpus;
    char kernel[160];
    char backing_note[160];
    double load_before[3];
    double load_after[3];
    char started[40];
} bench_machine_t;

void bench_machine_describe(bench_machine_t* m);
void bench_report_table(FILE* out, const bench_row_t* rows, size_t n);
void bench_report_latency_table(FILE* out, const bench_latency_row_t* rows, size_t n);
int bench_report_csv(const char* path, const bench_row_t* rows, size_t n);
int bench_report_latency_csv(const char* path, const bench_latency_row_t* rows, size_t n);
int bench_report_json(const char* path, const bench_machine_t* m, const bench_row_t* rows,
                      size_t n, const bench_latency_row_t* lat, size_t nlat, int trials,
                      bool quick);
int bench_report_plot(const char* png_path, const bench_row_t* rows, size_t n);

#endif /* IOB_BENCH_BENCH_H_ */
