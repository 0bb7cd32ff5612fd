/* SPDX-License-Identifier: MIT */
/*
 * Round-trip latency of 64-byte messages: ping-pong over two rings, beside the floor (one
 * cache line each way, nothing else), a pipe pair and a Unix stream socket. The pinger
 * (producer role) times every round trip; the ponger echoes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_payload.h"
#include "client/testkit/percentile.h"
#include "shm/ring.h"

#define PP_BYTES 64u
#define PP_WARMUP 2000u
#define PP_RING_BYTES (UINT64_C(64) << 10)

typedef struct pp_ctx {
    const char* kind;
    bench_role_t role;
    bool block;
    /* ring */
    bench_endpoint_t out_ep, in_ep;
    iob_ring_producer_t out;
    iob_ring_consumer_t in;
    /* cacheline */
    _Atomic uint64_t* ping;
    _Atomic uint64_t* pong;
    void* line_map;
    /* pipe / uds */
    int wfd, rfd;
} pp_ctx_t;

static bool pp_send(pp_ctx_t* c, const unsigned char* msg) {
    if (strcmp(c->kind, "ring") == 0) {
        zx_status_t st;
        while ((st = iob_ring_write(&c->out, msg, PP_BYTES)) == ZX_ERR_SHOULD_WAIT) {
            if (iob_ring_producer_wait(&c->out, PP_BYTES, bench_now_ns() + INT64_C(10000000000)) !=
                ZX_OK) {
                return false;
            }
        }
        return st == ZX_OK;
    }
    if (strcmp(c->kind, "cacheline") == 0) {
        uint64_t seq;
        memcpy(&seq, msg, 8);
        _Atomic uint64_t* w = c->role == BENCH_PRODUCER ? c->ping : c->pong;
        atomic_store_explicit(w, seq + 1, memory_order_release);
        return true;
    }
    return bench_write_full(c->wfd, msg, PP_BYTES) == ZX_OK;
}

static bool pp_recv(pp_ctx_t* c, unsigned char* msg, uint64_t expect) {
    if (strcmp(c->kind, "ring") == 0) {
        size_t len;
        for (;;) {
            zx_status_t st = iob_ring_read(&c->in, msg, PP_BYTES, &len);
            if (st == ZX_OK) {
                return len == PP_BYTES;
            }
            if (st != ZX_ERR_SHOULD_WAIT ||
                iob_ring_consumer_wait(&c->in, bench_now_ns() + INT64_C(10000000000)) != ZX_OK) {
                return false;
            }
        }
    }
    if (strcmp(c->kind, "cacheline") == 0) {
        _Atomic uint64_t* r = c->role == BENCH_PRODUCER ? c->pong : c->ping;
        int64_t give_up = 0;
        uint32_t spins = 0;
        while (atomic_load_explicit(r, memory_order_acquire) != expect + 1) {
            if (++spins == 0x100000u) {
                spins = 0;
                int64_t now = bench_now_ns();
                if (give_up == 0) {
                    give_up = now + INT64_C(10000000000);
                } else if (now > give_up) {
                    return false;
                }
            }
        }
        /* The floor carries no payload: fabricate the echo so the shared check passes. */
        bench_payload_generate(msg, PP_BYTES, expect);
        return true;
    }
    return bench_read_full(c->rfd, msg, PP_BYTES, false) == ZX_OK;
}

static zx_status_t pp_open(pp_ctx_t* c) {
    if (strcmp(c->kind, "ring") == 0) {
        /* fds: ctrl A->B, data A->B, ctrl B->A, data B->A (read-only where we consume). */
        bool a = c->role == BENCH_PRODUCER;
        zx_status_t st = bench_ring_map(a ? BENCH_PRODUCER : BENCH_CONSUMER, BENCH_FD_BASE,
                                        BENCH_FD_BASE + 1, a ? &c->out_ep : &c->in_ep);
        if (st == ZX_OK) {
            st = bench_ring_map(a ? BENCH_CONSUMER : BENCH_PRODUCER, BENCH_FD_BASE + 2,
                                BENCH_FD_BASE + 3, a ? &c->in_ep : &c->out_ep);
        }
        for (int i = 0; i < 4; i++) {
            close(BENCH_FD_BASE + i);
        }
        if (st != ZX_OK) {
            return st;
        }
        /* batch 1: a ping-pong has one message in flight; publishing late is pure latency. */
        iob_ring_options_t o = {.batch = 1,
                                .wait = c->block ? IOB_RING_WAIT_BLOCK : IOB_RING_WAIT_SPIN};
        st = iob_ring_producer_init(&c->out, c->out_ep.ctrl, c->out_ep.ctrl_size, c->out_ep.data,
                                    c->out_ep.data_size, &o);
        if (st == ZX_OK) {
            st = iob_ring_consumer_init(&c->in, c->in_ep.ctrl, c->in_ep.ctrl_size, c->in_ep.data,
                                        c->in_ep.data_size, &o);
        }
        return st;
    }
    if (strcmp(c->kind, "cacheline") == 0) {
        c->line_map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                           BENCH_FD_BASE, 0);
        close(BENCH_FD_BASE);
        if (c->line_map == MAP_FAILED) {
            return ZX_ERR_NO_MEMORY;
        }
        c->ping = (_Atomic uint64_t*)c->line_map;
        c->pong = (_Atomic uint64_t*)((unsigned char*)c->line_map + IOB_RING_LINE);
        return ZX_OK;
    }
    if (strcmp(c->kind, "pipe") == 0) {
        c->wfd = BENCH_FD_BASE;
        c->rfd = BENCH_FD_BASE + 1;
        return ZX_OK;
    }
    c->wfd = c->rfd = BENCH_FD_BASE;
    return ZX_OK;
}

int bench_pingpong_child_main(bench_role_t role, const char* kind, uint64_t iterations, int cpu,
                              bool block) {
    bench_pin_cpu(cpu);
    pp_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    c.role = role;
    c.block = block;
    char line[256];
    zx_status_t st = pp_open(&c);
    if (st != ZX_OK) {
        snprintf(line, sizeof(line), "fail open: %s\n", zx_status_get_string(st));
        ssize_t w = write(BENCH_FD_RESULT, line, strlen(line));
        (void)w;
        return 1;
    }
    unsigned char msg[PP_BYTES];
    unsigned char in[PP_BYTES];
    uint64_t total = iterations + PP_WARMUP;
    double* rtt = role == BENCH_PRODUCER ? calloc(iterations, sizeof(double)) : NULL;
    bool ok = true;
    const char* why = "-";
    for (uint64_t i = 0; i < total && ok; i++) {
        if (role == BENCH_PRODUCER) {
            bench_payload_generate(msg, PP_BYTES, i);
            int64_t t0 = bench_now_ns();
            if (!pp_send(&c, msg) || !pp_recv(&c, in, i)) {
                ok = false;
                why = "transport";
                break;
            }
            int64_t t1 = bench_now_ns();
            uint64_t seq;
            if (!bench_payload_verify(in, PP_BYTES, &seq) || seq != i) {
                ok = false;
                why = "verify";
                break;
            }
            if (i >= PP_WARMUP) {
                rtt[i - PP_WARMUP] = (double)(t1 - t0);
            }
        } else {
            uint64_t seq;
            if (!pp_recv(&c, in, i) || !bench_payload_verify(in, PP_BYTES, &seq) || seq != i ||
                !pp_send(&c, in)) {
                ok = false;
                why = "echo";
                break;
            }
        }
    }
    if (role == BENCH_PRODUCER && ok) {
        iob_tk_stats_t s;
        iob_tk_stats(rtt, iterations, &s);
        snprintf(line, sizeof(line), "ok %.1f %.1f %.1f %.1f %.1f %" PRIu64 "\n", s.p50, s.p99,
                 s.p999, s.min, s.mean, iterations);
    } else {
        snprintf(line, sizeof(line), "%s %s\n", ok ? "ok" : "fail", why);
    }
    ssize_t w = write(BENCH_FD_RESULT, line, strlen(line));
    (void)w;
    free(rtt);
    if (strcmp(kind, "ring") == 0) {
        iob_ring_producer_fini(&c.out);
        iob_ring_consumer_fini(&c.in);
        bench_ring_unmap(&c.out_ep);
        bench_ring_unmap(&c.in_ep);
    }
    return ok ? 0 : 1;
}

/* Orchestrator side: builds the channel, spawns pinger and ponger, reads the figures. */
static zx_status_t ring_pair(int fds_a[4], int fds_b[4], char* note, size_t note_len) {
    for (int dir = 0; dir < 2; dir++) {
        int ctrl = -1;
        int data = -1;
        zx_status_t st = bench_memfd_region(IOB_BACKING_4K, 4096, "pp-ctrl", &ctrl, note, note_len);
        if (st == ZX_OK) {
            st = bench_memfd_region(IOB_BACKING_4K, PP_RING_BYTES, "pp-data", &data, note,
                                    note_len);
        }
        if (st != ZX_OK) {
            if (ctrl >= 0) {
                close(ctrl);
            }
            return st;
        }
        void* m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ctrl, 0);
        if (m == MAP_FAILED) {
            close(ctrl);
            close(data);
            return ZX_ERR_NO_MEMORY;
        }
        (void)iob_ring_format(m, 4096, PP_RING_BYTES);
        munmap(m, 4096);
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", data);
        int ro = open(path, O_RDONLY | O_CLOEXEC);
        int ctrl2 = dup(ctrl);
        /* dir 0: A produces, B consumes; dir 1 the reverse. */
        int* prod = dir == 0 ? fds_a : fds_b;
        int* cons = dir == 0 ? fds_b : fds_a;
        prod[2 * dir] = ctrl;
        prod[2 * dir + 1] = data;
        cons[2 * dir] = ctrl2;
        cons[2 * dir + 1] = ro;
    }
    return ZX_OK;
}

zx_status_t bench_latency_run(const char* self, const char* kind, uint64_t iterations,
                              const int cpu[2], bool block, bench_latency_result_t* out,
                              char* note, size_t note_len) {
    memset(out, 0, sizeof(*out));
    int fds[2][4];
    int nfds = 0;
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < 4; i++) {
            fds[r][i] = -1;
        }
    }
    zx_status_t st = ZX_OK;
    if (strcmp(kind, "ring") == 0) {
        st = ring_pair(fds[0], fds[1], note, note_len);
        nfds = 4;
    } else if (strcmp(kind, "cacheline") == 0) {
        int fd = -1;
        st = bench_memfd_region(IOB_BACKING_4K, 4096, "pp-line", &fd, note, note_len);
        fds[0][0] = fd;
        fds[1][0] = fd >= 0 ? dup(fd) : -1;
        nfds = 1;
    } else if (strcmp(kind, "pipe") == 0) {
        int a[2];
        int b[2];
        if (pipe2(a, O_CLOEXEC) != 0 || pipe2(b, O_CLOEXEC) != 0) {
            return ZX_ERR_NO_RESOURCES;
        }
        fds[0][0] = a[1];
        fds[0][1] = b[0];
        fds[1][0] = b[1];
        fds[1][1] = a[0];
        nfds = 2;
    } else {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
            return ZX_ERR_NO_RESOURCES;
        }
        fds[0][0] = sv[0];
        fds[1][0] = sv[1];
        nfds = 1;
    }
    if (st != ZX_OK) {
        for (int r = 0; r < 2; r++) {
            for (int i = 0; i < 4; i++) {
                if (fds[r][i] >= 0) {
                    close(fds[r][i]);
                }
            }
        }
        return st;
    }
    char iters[32];
    snprintf(iters, sizeof(iters), "%" PRIu64, iterations);
    int pids[2];
    int res[2];
    for (int r = 0; r < 2; r++) {
        int rp[2];
        if (pipe2(rp, O_CLOEXEC) != 0) {
            return ZX_ERR_NO_RESOURCES;
        }
        char cpus[16];
        snprintf(cpus, sizeof(cpus), "%d", cpu[r]);
        char self_buf[4096];
        char kind_buf[32];
        snprintf(self_buf, sizeof(self_buf), "%s", self);
        snprintf(kind_buf, sizeof(kind_buf), "%s", kind);
        char* argv[] = {self_buf, "--pingpong", kind_buf, "--role",
                        r == 0 ? "producer" : "consumer", "--iters", iters, "--cpu", cpus,
                        block ? "--block" : "--spin", NULL};
        pids[r] = bench_spawn(self, argv, fds[r], nfds, -1, rp[1]);
        close(rp[1]);
        res[r] = rp[0];
    }
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < 4; i++) {
            if (fds[r][i] >= 0) {
                close(fds[r][i]);
            }
        }
    }
    char line[2][256];
    zx_status_t s0 = bench_collect(pids[0], res[0], INT64_C(120000000000), line[0], sizeof(line[0]));
    zx_status_t s1 = bench_collect(pids[1], res[1], INT64_C(10000000000), line[1], sizeof(line[1]));
    if (s0 != ZX_OK || s1 != ZX_OK) {
        snprintf(note, note_len, "ping-pong child failed: %s / %s", line[0], line[1]);
        out->ok = false;
        return ZX_ERR_IO;
    }
    if (sscanf(line[0], "ok %lf %lf %lf %lf %lf %" SCNu64, &out->p50_ns, &out->p99_ns,
               &out->p999_ns, &out->min_ns, &out->mean_ns, &out->iterations) != 6) {
        snprintf(note, note_len, "ping-pong: %s", line[0]);
        out->ok = false;
        return ZX_ERR_IO;
    }
    out->ok = true;
    return ZX_OK;
}
