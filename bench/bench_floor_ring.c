/* SPDX-License-Identifier: MIT */
/*
 * floor-ring: the independent floor that iob-ring is judged against. A minimal two-process
 * single-producer single-consumer ring written only for the benchmark: glibc memcpy in and
 * out, a head and a tail index with acquire/release, each side caching the other's index
 * and re-reading it only when it seems to have run out. Nothing else: no batching of the
 * index stores, no validation of what the peer wrote beyond the record length, no futex
 * (busy-poll only), no zero-copy API.
 *
 * Placement is iob-ring's copy rows': a control region of one page of the row's backing
 * (head and tail 128 bytes apart, for the adjacent-line prefetcher), a data region of the
 * same size and backing (a hugetlb memfd for 2M), records of an 8-byte length and the
 * payload rounded up to 8 bytes, so payloads sit at the same offsets in the same pages as
 * iob-ring's; the private buffers come from the same allocator (bench_buffer_alloc). The
 * consumer checks each copy with the same policy as every other row.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_payload.h"

/* A side that sees no progress for this long gives up instead of hanging the run. */
#define FLOOR_STALL_NS (INT64_C(20) * 1000000000)
#define FLOOR_PAD UINT64_MAX /* record length: the rest of the lap is skipped */

typedef struct floor_ctrl {
    _Atomic uint64_t head; /* producer: bytes written */
    unsigned char head_pad[120];
    _Atomic uint64_t tail; /* consumer: bytes consumed */
} floor_ctrl_t;

typedef struct floor_ring {
    floor_ctrl_t* ctrl;
    unsigned char* data;
    uint64_t capacity; /* a power of two */
} floor_ring_t;

static inline void floor_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static bool floor_ring_init(bench_endpoint_t* ep, floor_ring_t* f) {
    if (ep->ctrl_size < sizeof(floor_ctrl_t) || ep->data_size < 4096) {
        return false;
    }
    f->ctrl = ep->ctrl;
    f->data = ep->data;
    f->capacity = UINT64_C(1) << (63 - __builtin_clzll(ep->data_size));
    return true;
}

/* One pause of a wait; true once the wait has lasted FLOOR_STALL_NS (checked now and then). */
static inline bool floor_stalled(uint32_t* spins, int64_t* deadline) {
    floor_relax();
    if ((++*spins & 4095u) == 0) {
        int64_t now = bench_now_ns();
        if (*deadline == 0) {
            *deadline = now + FLOOR_STALL_NS;
        } else if (now > *deadline) {
            return true;
        }
    }
    return false;
}

void bench_floor_producer(const bench_spec_t* s, bench_endpoint_t* ep, bench_side_result_t* r) {
    floor_ring_t f;
    size_t n = (size_t)s->msg_bytes;
    uint64_t rec = 8 + ((n + 7) & ~(uint64_t)7);
    if (!floor_ring_init(ep, &f) || rec > f.capacity / 2) {
        snprintf(r->error, sizeof(r->error), "floor ring: region too small");
        bench_wait_ready();
        return;
    }
    unsigned char* buf = bench_buffer_alloc(n);
    uint64_t bsum = 0;
    uint64_t bxor = 0;
    bench_payload_prepare(buf, n, &bsum, &bxor);
    uint64_t mask = bench_clock_mask(n);
    uint64_t cap = f.capacity;
    uint64_t head = 0;
    uint64_t tail = 0; /* cached */
    bench_wait_ready();
    r->t_start = bench_now_ns();
    int64_t stop = r->t_start + s->duration_ns;
    r->ok = true;
    uint64_t seq = 0;
    for (bool last = false; !last; seq++) {
        if ((seq & mask) == 0 && bench_now_ns() >= stop) {
            last = true;
        }
        uint64_t word = seq | (last ? BENCH_SEQ_LAST : 0);
        bench_payload_stamp(buf, n, word, bsum, bxor);
        uint64_t off = head & (cap - 1);
        uint64_t skip = off + rec > cap ? cap - off : 0;
        uint32_t spins = 0;
        int64_t deadline = 0;
        while (head + skip + rec - tail > cap) {
            tail = atomic_load_explicit(&f.ctrl->tail, memory_order_acquire);
            if (head + skip + rec - tail > cap && floor_stalled(&spins, &deadline)) {
                r->ok = false;
                snprintf(r->error, sizeof(r->error), "send: consumer stalled");
                goto out;
            }
        }
        if (skip != 0) {
            uint64_t pad = FLOOR_PAD;
            memcpy(f.data + off, &pad, 8);
            head += skip;
            off = 0;
        }
        uint64_t len = n;
        memcpy(f.data + off, &len, 8);
        memcpy(f.data + off + 8, buf, n);
        head += rec;
        atomic_store_explicit(&f.ctrl->head, head, memory_order_release);
    }
out:
    r->msgs = seq;
    bench_buffer_free(buf);
}

void bench_floor_consumer(const bench_spec_t* s, bench_endpoint_t* ep, bench_side_result_t* r) {
    floor_ring_t f;
    size_t n = (size_t)s->msg_bytes;
    uint64_t rec = 8 + ((n + 7) & ~(uint64_t)7);
    bench_verifier_t v;
    if (!floor_ring_init(ep, &f) ||
        !bench_verifier_init(&v, n, s->verify == BENCH_VERIFY_SAMPLED)) {
        snprintf(r->error, sizeof(r->error), "floor ring: region too small or no memory");
        bench_signal_ready();
        return;
    }
    unsigned char* buf = bench_buffer_alloc(n);
    uint64_t cap = f.capacity;
    uint64_t tail = 0;
    uint64_t head = 0; /* cached */
    uint64_t expect = 0;
    bench_signal_ready();
    r->ok = true;
    for (;;) {
        uint32_t spins = 0;
        int64_t deadline = 0;
        while (tail == head) {
            head = atomic_load_explicit(&f.ctrl->head, memory_order_acquire);
            if (tail == head && floor_stalled(&spins, &deadline)) {
                r->ok = false;
                snprintf(r->error, sizeof(r->error), "recv: producer stalled");
                goto out;
            }
        }
        uint64_t off = tail & (cap - 1);
        uint64_t len;
        memcpy(&len, f.data + off, 8);
        if (len == FLOOR_PAD) {
            tail += cap - off;
            continue;
        }
        if (len != n) {
            r->ok = false;
            snprintf(r->error, sizeof(r->error), "message %" PRIu64 ": length", expect);
            break;
        }
        memcpy(buf, f.data + off + 8, n);
        tail += rec;
        atomic_store_explicit(&f.ctrl->tail, tail, memory_order_release);
        uint64_t word;
        bool good = bench_payload_check(&v, buf, n, expect, &word);
        if (!good || (word & ~BENCH_SEQ_LAST) != expect) {
            r->ok = false;
            snprintf(r->error, sizeof(r->error), "message %" PRIu64 ": %s", expect,
                     good ? "wrong sequence" : "bad checksum");
            break;
        }
        expect++;
        if ((word & BENCH_SEQ_LAST) != 0) {
            break;
        }
    }
out:
    r->t_end = bench_now_ns();
    r->msgs = expect;
    bench_buffer_free(buf);
}

/* The orchestrator's part: two zero-filled memfds of the row's backing (head = tail = 0). */
zx_status_t bench_floor_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                size_t note_len) {
    memset(ch, 0, sizeof(*ch));
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < BENCH_MAX_FDS; i++) {
            ch->fds[r][i] = -1;
        }
    }
    int ctrl_fd = -1;
    int data_fd = -1;
    uint64_t page = iob_backing_page_size(spec->backing);
    zx_status_t st = bench_memfd_region(spec->backing, page, "iob-bench-floor-ctrl", &ctrl_fd,
                                        note, note_len);
    if (st != ZX_OK) {
        return st;
    }
    st = bench_memfd_region(spec->backing, spec->ring_bytes, "iob-bench-floor-data", &data_fd,
                            note, note_len);
    if (st != ZX_OK) {
        close(ctrl_fd);
        return st;
    }
    /* The consumer gets a read-only file description of the data, as iob-ring's does. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", data_fd);
    int data_ro = open(path, O_RDONLY | O_CLOEXEC);
    int ctrl2 = fcntl(ctrl_fd, F_DUPFD_CLOEXEC, 0);
    if (data_ro < 0 || ctrl2 < 0) {
        snprintf(note, note_len, "floor ring: reopen failed");
        close(ctrl_fd);
        close(data_fd);
        if (data_ro >= 0) {
            close(data_ro);
        }
        if (ctrl2 >= 0) {
            close(ctrl2);
        }
        return ZX_ERR_NO_RESOURCES;
    }
    ch->fds[BENCH_PRODUCER][0] = ctrl_fd;
    ch->fds[BENCH_PRODUCER][1] = data_fd;
    ch->fds[BENCH_CONSUMER][0] = ctrl2;
    ch->fds[BENCH_CONSUMER][1] = data_ro;
    ch->nfds[BENCH_PRODUCER] = 2;
    ch->nfds[BENCH_CONSUMER] = 2;
    return ZX_OK;
}
