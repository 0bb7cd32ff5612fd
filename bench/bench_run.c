/* SPDX-License-Identifier: MIT */
/* The child roles of a throughput trial: the ring loops, the stream loops, memcpy. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_payload.h"
#include "shm/ring.h"

/* A child that sees no progress for this long gives up instead of hanging the run. */
#define BENCH_STALL_NS (INT64_C(20) * 1000000000)

const char* bench_mode_name(bench_mode_t mode) {
    return mode == BENCH_ZEROCOPY ? "zerocopy" : "copy";
}
const char* bench_wait_name(bench_wait_t wait) {
    return wait == BENCH_BLOCK ? "block" : "spin";
}
const char* bench_load_name(bench_load_t load) {
    return load == BENCH_PACED ? "paced" : "full";
}
const char* bench_verify_name(bench_verify_t verify) {
    return verify == BENCH_VERIFY_FULL ? "full" : "sampled";
}

void bench_spec_format(const bench_spec_t* s, char* out, size_t len) {
    snprintf(out, len, "%d,%d,%d,%d,%d,%" PRIu64 ",%" PRIu64 ",%u,%.3f,%" PRId64 ",%d,%d,%d",
             s->transport, (int)s->mode, (int)s->backing, (int)s->wait, (int)s->load,
             s->msg_bytes, s->ring_bytes, s->batch, s->pace_rate, s->duration_ns, s->cpu[0],
             s->cpu[1], (int)s->verify);
}

zx_status_t bench_spec_parse(const char* text, bench_spec_t* s) {
    int mode;
    int backing;
    int wait;
    int load;
    int verify;
    memset(s, 0, sizeof(*s));
    int n = sscanf(text, "%d,%d,%d,%d,%d,%" SCNu64 ",%" SCNu64 ",%u,%lf,%" SCNd64 ",%d,%d,%d",
                   &s->transport, &mode, &backing, &wait, &load, &s->msg_bytes, &s->ring_bytes,
                   &s->batch, &s->pace_rate, &s->duration_ns, &s->cpu[0], &s->cpu[1], &verify);
    if (n != 13 || s->transport < 0 || (size_t)s->transport >= bench_transport_count ||
        s->msg_bytes < 8 || (s->msg_bytes % 8) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    s->mode = (bench_mode_t)mode;
    s->backing = (iob_backing_t)backing;
    s->wait = (bench_wait_t)wait;
    s->load = (bench_load_t)load;
    s->verify = verify == BENCH_VERIFY_FULL ? BENCH_VERIFY_FULL : BENCH_VERIFY_SAMPLED;
    return ZX_OK;
}

uint64_t bench_cpu_time_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000000u + (uint64_t)ru.ru_utime.tv_usec * 1000u +
           (uint64_t)ru.ru_stime.tv_sec * 1000000000u + (uint64_t)ru.ru_stime.tv_usec * 1000u;
}

int64_t bench_now_ns(void) {
    return iob_ring_now();
}

static void side_fail(bench_side_result_t* r, const char* what, zx_status_t st) {
    r->ok = false;
    snprintf(r->error, sizeof(r->error), "%s: %s", what, zx_status_get_string(st));
}

/* How often the producer looks at the clock: about every 64 KiB, at least every 1024 messages. */
static uint64_t clock_mask(uint64_t msg_bytes) {
    uint64_t every = (UINT64_C(64) << 10) / msg_bytes;
    uint64_t m = 1;
    while (m < every && m < 1024) {
        m <<= 1;
    }
    return m - 1;
}

/*
 * Paced load: message i is due at t0 + i / rate. Ahead of schedule, the producer publishes
 * what it has and sleeps until the due time (the timer's slack turns that into short
 * bursts); behind, it sends at once.
 */
typedef struct pacer {
    bool on;
    int64_t t0;
    double ns_per_msg;
} pacer_t;

static bool pacer_ahead(const pacer_t* p, uint64_t seq, int64_t* due) {
    if (!p->on) {
        return false;
    }
    *due = p->t0 + (int64_t)((double)seq * p->ns_per_msg);
    return bench_now_ns() + 2000 < *due;
}

static void pacer_sleep(int64_t due) {
    struct timespec ts = {.tv_sec = (time_t)(due / 1000000000), .tv_nsec = (long)(due % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void wait_ready(void) {
    char c;
    while (read(BENCH_FD_READY, &c, 1) < 0 && errno == EINTR) {
    }
    close(BENCH_FD_READY);
}

static void signal_ready(void) {
    char c = 'R';
    while (write(BENCH_FD_READY, &c, 1) < 0 && errno == EINTR) {
    }
    close(BENCH_FD_READY);
}

/*
 * A child's private message buffer. Every transport gets the same placement: 64 bytes into
 * a page, which is where malloc puts a large block. The placement is fixed because it
 * matters: from 16 KiB up, copying from a page-aligned source ran at up to 0.6x of copying
 * from other page offsets on this project's AMD machines (the copy's loads and stores alias
 * within 4 KiB), and the heap otherwise hands children of different transports different
 * offsets (the iob transports' children load libiob and gRPC first).
 */
#define BENCH_BUFFER_OFFSET 64u

/* A child without memory for its buffer cannot measure anything: it exits, and the
 * orchestrator reports the trial as failed. */
__attribute__((returns_nonnull)) static unsigned char* buffer_alloc(size_t n) {
    unsigned char* page = aligned_alloc(4096, (n + BENCH_BUFFER_OFFSET + 4095) & ~(size_t)4095);
    if (page == NULL) {
        fprintf(stderr, "iob-bench: no memory for a %zu-byte buffer\n", n);
        exit(1);
    }
    return page + BENCH_BUFFER_OFFSET;
}

static void buffer_free(unsigned char* buf) {
    free(buf - BENCH_BUFFER_OFFSET);
}

/* The consumer's checks for the trial's policy; a child without memory for them exits. */
static bench_verifier_t verifier_for(const bench_spec_t* s) {
    bench_verifier_t v;
    if (!bench_verifier_init(&v, (size_t)s->msg_bytes, s->verify == BENCH_VERIFY_SAMPLED)) {
        fprintf(stderr, "iob-bench: no memory for a %" PRIu64 "-byte message\n", s->msg_bytes);
        exit(1);
    }
    return v;
}

/* ---- rings -------------------------------------------------------------------------------- */

/*
 * The per-message loops are instantiated for each small message size and for each mode, so
 * that the size and the mode are constants inside them: the payload code then has no size
 * dispatch and the loop no mode test, and what a small message costs is the ring's work and
 * the payload's bytes, not the harness's branches. Larger sizes share one instance, where
 * per-message overhead is noise against the bytes.
 */
#define BENCH_SMALL_SIZES(X) X(8) X(16) X(24) X(32) X(40) X(48) X(56) X(64)

/* Both sides of a trial's ring use the trial's batch and wait mode. */
static iob_ring_options_t ring_options(const bench_spec_t* s) {
    iob_ring_options_t o = {.batch = s->batch,
                            .wait = s->wait == BENCH_BLOCK ? IOB_RING_WAIT_BLOCK
                                                           : IOB_RING_WAIT_SPIN};
    return o;
}

typedef struct ring_send_state {
    uint64_t seq;       /* messages sent */
    zx_status_t status; /* first error; ZX_OK */
} ring_send_state_t;

/* The sequence word of the next message; the first one sent after the deadline is the last. */
static BENCH_ALWAYS_INLINE uint64_t next_word(uint64_t seq, uint64_t mask, int64_t stop,
                                              bool* last) {
    if ((seq & mask) == 0 && bench_now_ns() >= stop) {
        *last = true;
    }
    return seq | (*last ? BENCH_SEQ_LAST : 0);
}

/*
 * Sends until the deadline passes (the last message carries BENCH_SEQ_LAST). Zero-copy at
 * full load writes claims of up to `batch` messages in place (the publication batch);
 * anything a claim cannot take (no room by its bound, padding at the end of the data) and
 * paced sending go message by message through reserve/commit or the copy-in convenience.
 */
static BENCH_ALWAYS_INLINE ring_send_state_t ring_send_loop(iob_ring_producer_t* p,
                                                            const bench_spec_t* s,
                                                            unsigned char* buf,
                                                            uint64_t bsum, uint64_t bxor,
                                                            int64_t t_start, size_t n,
                                                            bool zerocopy) {
    pacer_t pace = {s->load == BENCH_PACED && s->pace_rate > 0, t_start,
                    s->load == BENCH_PACED && s->pace_rate > 0 ? 1e9 / s->pace_rate : 0};
    uint64_t mask = clock_mask(n);
    int64_t stop = t_start + s->duration_ns;
    uint32_t burst = s->batch > 0 ? s->batch : 1;
    ring_send_state_t out = {0, ZX_OK};
    bool last = false;
    while (!last) {
        uint64_t seq = out.seq;
        if (zerocopy && !pace.on) {
            iob_ring_claim_t claim;
            iob_ring_claim_begin(p, &claim);
            void* at = NULL;
            for (uint32_t k = 0; k < burst && !last; k++) {
                at = iob_ring_claim_next(p, &claim, n);
                if (at == NULL) {
                    break;
                }
                bench_payload_generate(at, n, next_word(seq, mask, stop, &last));
                seq++;
            }
            iob_ring_claim_end(p, &claim);
            out.seq = seq;
            if (at != NULL || last) {
                continue;
            }
        }
        int64_t due;
        if (pacer_ahead(&pace, seq, &due)) {
            iob_ring_producer_flush(p);
            pacer_sleep(due);
        }
        uint64_t word = next_word(seq, mask, stop, &last);
        zx_status_t st;
        if (zerocopy) {
            /* Reserve, write every byte in place, commit. */
            void* dst;
            while ((st = iob_ring_reserve(p, n, &dst)) == ZX_ERR_SHOULD_WAIT) {
                st = iob_ring_producer_wait(p, n, bench_now_ns() + BENCH_STALL_NS);
                if (st != ZX_OK) {
                    break;
                }
            }
            if (st == ZX_OK) {
                bench_payload_generate(dst, n, word);
                st = iob_ring_commit(p, n);
            }
        } else {
            /* The copy-in convenience, from the producer's private buffer. */
            bench_payload_stamp(buf, n, word, bsum, bxor);
            while ((st = iob_ring_write(p, buf, n)) == ZX_ERR_SHOULD_WAIT) {
                st = iob_ring_producer_wait(p, n, bench_now_ns() + BENCH_STALL_NS);
                if (st != ZX_OK) {
                    break;
                }
            }
        }
        if (st != ZX_OK) {
            out.status = st;
            break;
        }
        out.seq = seq + 1;
    }
    return out;
}

#define BENCH_SEND_INSTANCE(size)                                                             \
    static ring_send_state_t ring_send_##size(iob_ring_producer_t* p, const bench_spec_t* s,  \
                                              unsigned char* buf, uint64_t bsum,              \
                                              uint64_t bxor, int64_t t0, bool zerocopy) {     \
        return zerocopy ? ring_send_loop(p, s, buf, bsum, bxor, t0, size, true)               \
                        : ring_send_loop(p, s, buf, bsum, bxor, t0, size, false);             \
    }
BENCH_SMALL_SIZES(BENCH_SEND_INSTANCE)
#undef BENCH_SEND_INSTANCE

static ring_send_state_t ring_send_any(iob_ring_producer_t* p, const bench_spec_t* s,
                                       unsigned char* buf, uint64_t bsum, uint64_t bxor,
                                       int64_t t0, size_t n, bool zerocopy) {
    switch (n) {
#define BENCH_SEND_CASE(size) \
    case size:                \
        return ring_send_##size(p, s, buf, bsum, bxor, t0, zerocopy);
        BENCH_SMALL_SIZES(BENCH_SEND_CASE)
#undef BENCH_SEND_CASE
    default:
        return zerocopy ? ring_send_loop(p, s, buf, bsum, bxor, t0, n, true)
                        : ring_send_loop(p, s, buf, bsum, bxor, t0, n, false);
    }
}

static void ring_producer(const bench_spec_t* s, bench_endpoint_t* ep, bench_side_result_t* r) {
    iob_ring_producer_t p;
    iob_ring_options_t o = ring_options(s);
    zx_status_t st = iob_ring_producer_init(&p, ep->ctrl, ep->ctrl_size, ep->data, ep->data_size,
                                            &o);
    if (st != ZX_OK) {
        side_fail(r, "producer init", st);
        wait_ready();
        return;
    }
    size_t n = (size_t)s->msg_bytes;
    unsigned char* buf = buffer_alloc(n);
    uint64_t bsum = 0;
    uint64_t bxor = 0;
    bench_payload_prepare(buf, n, &bsum, &bxor);
    wait_ready();
    r->t_start = bench_now_ns();
    r->ok = true;
    ring_send_state_t sent =
        ring_send_any(&p, s, buf, bsum, bxor, r->t_start, n, s->mode == BENCH_ZEROCOPY);
    if (sent.status != ZX_OK) {
        side_fail(r, "send", sent.status);
    }
    iob_ring_producer_flush(&p);
    r->msgs = sent.seq;
    r->futex_waits = p.stats.futex_waits;
    r->futex_wakes = p.stats.futex_wakes;
    /* The close wakes the consumer unconditionally; that wake is not per-message traffic. */
    iob_ring_producer_close(&p);
    iob_ring_producer_fini(&p);
    buffer_free(buf);
}

typedef enum ring_recv_kind {
    RING_RECV_ZEROCOPY, /* peek, verify in place, release */
    RING_RECV_COPY,     /* the copy-out convenience, then verify the copy (in L1) */
    RING_RECV_FUSED,    /* peek, copy out and verify in one pass, release (large messages) */
} ring_recv_kind_t;

typedef struct ring_recv_state {
    uint64_t expect;    /* messages received and verified */
    zx_status_t status; /* ZX_OK, or why it stopped early */
    const char* what;   /* the step that failed */
    bool bad_payload;   /* a message failed verification (what says how) */
} ring_recv_state_t;

typedef enum ring_verdict {
    RING_MSG_GOOD, /* verified; more to come */
    RING_MSG_LAST, /* verified, and the producer's last */
    RING_MSG_BAD,  /* out.status and out.what say why */
} ring_verdict_t;

/* Checks one message's length, checksum and sequence; counts it when good. */
static BENCH_ALWAYS_INLINE ring_verdict_t ring_check(ring_recv_state_t* out, const void* msg,
                                                     size_t len, unsigned char* buf, size_t n,
                                                     ring_recv_kind_t kind,
                                                     const bench_verifier_t* v) {
    if (len != n) {
        out->status = ZX_ERR_IO_DATA_INTEGRITY;
        out->what = "message length";
        return RING_MSG_BAD;
    }
    uint64_t word;
    bool good = kind == RING_RECV_FUSED ? bench_payload_copy_verify_wide(buf, msg, n, &word)
                                        : bench_payload_check(v, msg, n, out->expect, &word);
    if (!good || (word & ~BENCH_SEQ_LAST) != out->expect) {
        out->status = ZX_ERR_IO_DATA_INTEGRITY;
        out->what = good ? "wrong sequence" : "bad checksum";
        out->bad_payload = true;
        return RING_MSG_BAD;
    }
    out->expect++;
    return (word & BENCH_SEQ_LAST) != 0 ? RING_MSG_LAST : RING_MSG_GOOD;
}

/*
 * Receives and verifies until the message marked BENCH_SEQ_LAST. Zero-copy reads spans
 * (many messages in place, released together); copy mode uses the copy-out convenience;
 * large copies peek, copy out while verifying, and release.
 */
static BENCH_ALWAYS_INLINE ring_recv_state_t ring_recv_loop(iob_ring_consumer_t* c,
                                                            unsigned char* buf, size_t n,
                                                            ring_recv_kind_t kind,
                                                            const bench_verifier_t* v) {
    ring_recv_state_t out = {0, ZX_OK, NULL, false};
    ring_verdict_t verdict = RING_MSG_GOOD;
    while (verdict == RING_MSG_GOOD) {
        const void* msg = NULL;
        size_t len = 0;
        iob_ring_span_t span;
        zx_status_t st;
        if (kind == RING_RECV_ZEROCOPY) {
            st = iob_ring_span_begin(c, &span, &msg, &len);
        } else if (kind == RING_RECV_COPY) {
            st = iob_ring_read(c, buf, n, &len);
            msg = buf;
        } else {
            st = iob_ring_peek(c, &msg, &len);
        }
        if (st == ZX_ERR_SHOULD_WAIT) {
            st = iob_ring_consumer_wait(c, bench_now_ns() + BENCH_STALL_NS);
            if (st != ZX_OK) {
                out.status = st;
                out.what = "consumer wait";
                break;
            }
            continue;
        }
        if (st != ZX_OK) {
            out.status = st;
            out.what = "peek";
            break;
        }
        if (kind == RING_RECV_ZEROCOPY) {
            /*
             * Fresh locals for the span's loop: the ones above had their addresses passed
             * to an out-of-line call, which would keep them (and everything the compiler
             * then cannot prove unaliased) in memory for every message.
             */
            iob_ring_span_t run = span;
            const void* at = msg;
            size_t at_len = len;
            do {
                verdict = ring_check(&out, at, at_len, buf, n, kind, v);
            } while (verdict == RING_MSG_GOOD &&
                     iob_ring_span_next(c, &run, &at, &at_len) == ZX_OK);
            iob_ring_span_end(c, &run);
        } else {
            verdict = ring_check(&out, msg, len, buf, n, kind, v);
            if (kind == RING_RECV_FUSED) {
                iob_ring_release(c);
            }
        }
    }
    return out;
}

#define BENCH_RECV_INSTANCE(size)                                                             \
    static ring_recv_state_t ring_recv_##size(iob_ring_consumer_t* c, unsigned char* buf,     \
                                              bool zerocopy, const bench_verifier_t* v) {     \
        return zerocopy ? ring_recv_loop(c, buf, size, RING_RECV_ZEROCOPY, v)                 \
                        : ring_recv_loop(c, buf, size, RING_RECV_COPY, v);                    \
    }
BENCH_SMALL_SIZES(BENCH_RECV_INSTANCE)
#undef BENCH_RECV_INSTANCE

static ring_recv_state_t ring_recv_any(iob_ring_consumer_t* c, unsigned char* buf, size_t n,
                                       bool zerocopy, const bench_verifier_t* v) {
    switch (n) {
#define BENCH_RECV_CASE(size) \
    case size:                \
        return ring_recv_##size(c, buf, zerocopy, v);
        BENCH_SMALL_SIZES(BENCH_RECV_CASE)
#undef BENCH_RECV_CASE
    default:
        break;
    }
    /*
     * Copy mode copies every message into the consumer's private buffer and verifies the
     * copy. Under full verification large messages are copied and checksummed in one pass
     * (the same routine the memcpy baseline uses); otherwise every size goes through the
     * copy-out convenience, then the copy is checked.
     */
    if (zerocopy) {
        return ring_recv_loop(c, buf, n, RING_RECV_ZEROCOPY, v);
    }
    if (!v->sampled && n / 8 > BENCH_WIDE_WORDS) {
        return ring_recv_loop(c, buf, n, RING_RECV_FUSED, v);
    }
    return ring_recv_loop(c, buf, n, RING_RECV_COPY, v);
}

static void ring_consumer(const bench_spec_t* s, bench_endpoint_t* ep, bench_side_result_t* r) {
    iob_ring_consumer_t c;
    iob_ring_options_t o = ring_options(s);
    zx_status_t st = iob_ring_consumer_init(&c, ep->ctrl, ep->ctrl_size, ep->data, ep->data_size,
                                            &o);
    if (st != ZX_OK) {
        side_fail(r, "consumer init", st);
        signal_ready();
        return;
    }
    size_t n = (size_t)s->msg_bytes;
    unsigned char* buf = buffer_alloc(n);
    bench_verifier_t v = verifier_for(s);
    signal_ready();
    r->ok = true;
    ring_recv_state_t got = ring_recv_any(&c, buf, n, s->mode == BENCH_ZEROCOPY, &v);
    if (got.bad_payload) {
        r->ok = false;
        snprintf(r->error, sizeof(r->error), "message %" PRIu64 ": %s", got.expect, got.what);
    } else if (got.status != ZX_OK) {
        side_fail(r, got.what, got.status);
    }
    r->t_end = bench_now_ns();
    r->msgs = got.expect;
    r->futex_waits = c.stats.futex_waits;
    r->futex_wakes = c.stats.futex_wakes;
    iob_ring_consumer_close(&c);
    iob_ring_consumer_fini(&c);
    buffer_free(buf);
}

/* The children's shared helpers, for the transports with loops of their own (bench.h). */
unsigned char* bench_buffer_alloc(size_t n) {
    return buffer_alloc(n);
}
void bench_buffer_free(unsigned char* buf) {
    buffer_free(buf);
}
void bench_wait_ready(void) {
    wait_ready();
}
void bench_signal_ready(void) {
    signal_ready();
}
uint64_t bench_clock_mask(uint64_t msg_bytes) {
    return clock_mask(msg_bytes);
}

/* ---- streams ------------------------------------------------------------------------------ */

static void stream_producer(const bench_transport_t* t, const bench_spec_t* s,
                            bench_endpoint_t* ep, bench_side_result_t* r) {
    size_t n = (size_t)s->msg_bytes;
    unsigned char* buf = buffer_alloc(n);
    uint64_t bsum = 0;
    uint64_t bxor = 0;
    bench_payload_prepare(buf, n, &bsum, &bxor);
    wait_ready();
    r->t_start = bench_now_ns();
    pacer_t pace = {s->load == BENCH_PACED && s->pace_rate > 0, r->t_start,
                    s->load == BENCH_PACED && s->pace_rate > 0 ? 1e9 / s->pace_rate : 0};
    int64_t stop = r->t_start + s->duration_ns;
    uint64_t seq = 0;
    bool last = false;
    r->ok = true;
    while (!last) {
        if (bench_now_ns() >= stop) {
            last = true;
        }
        int64_t due;
        if (pacer_ahead(&pace, seq, &due)) {
            pacer_sleep(due);
        }
        bench_payload_stamp(buf, n, seq | (last ? BENCH_SEQ_LAST : 0), bsum, bxor);
        zx_status_t st = t->send(ep, buf, n);
        if (st != ZX_OK) {
            side_fail(r, "send", st);
            break;
        }
        seq++;
    }
    r->msgs = seq;
    buffer_free(buf);
}

static void stream_consumer(const bench_transport_t* t, const bench_spec_t* s,
                            bench_endpoint_t* ep, bench_side_result_t* r) {
    size_t n = (size_t)s->msg_bytes;
    unsigned char* buf = buffer_alloc(n);
    bench_verifier_t v = verifier_for(s);
    signal_ready();
    uint64_t expect = 0;
    r->ok = true;
    for (;;) {
        zx_status_t st = t->recv(ep, buf, n);
        if (st != ZX_OK) {
            side_fail(r, "recv", st);
            break;
        }
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
    r->t_end = bench_now_ns();
    r->msgs = expect;
    buffer_free(buf);
}

/*
 * memcpy, the copy limit: one process copies each message into a ring-sized buffer (the
 * same cache footprint as the ring) and verifies it there, with the same payload code
 * (for large messages the same fused copy-and-verify as the ring consumer's copy mode).
 */
static void memcpy_single(const bench_spec_t* s, bench_side_result_t* r) {
    size_t n = (size_t)s->msg_bytes;
    size_t ring = (size_t)s->ring_bytes;
    unsigned char* src = buffer_alloc(n);
    unsigned char* dst = aligned_alloc(4096, ring);
    memset(dst, 0, ring);
    uint64_t bsum = 0;
    uint64_t bxor = 0;
    bench_payload_prepare(src, n, &bsum, &bxor);
    bench_verifier_t v = verifier_for(s);
    uint64_t mask = clock_mask(n);
    r->t_start = bench_now_ns();
    int64_t stop = r->t_start + s->duration_ns;
    size_t off = 0;
    uint64_t seq = 0;
    r->ok = true;
    for (;;) {
        bool last = (seq & mask) == 0 && bench_now_ns() >= stop;
        uint64_t word = seq | (last ? BENCH_SEQ_LAST : 0);
        bench_payload_stamp(src, n, word, bsum, bxor);
        if (off + n > ring) {
            off = 0;
        }
        uint64_t got;
        bool good;
        if (!v.sampled && n / 8 > BENCH_WIDE_WORDS) {
            /* The same fused copy-and-verify as the ring consumer's copy mode. */
            good = bench_payload_copy_verify_wide(dst + off, src, n, &got);
        } else {
            memcpy(dst + off, src, n);
            good = bench_payload_check(&v, dst + off, n, seq, &got);
        }
        if (!good || got != word) {
            side_fail(r, "memcpy verify", ZX_ERR_IO_DATA_INTEGRITY);
            break;
        }
        off += (n + 63) & ~(size_t)63;
        seq++;
        if (last) {
            break;
        }
    }
    r->t_end = bench_now_ns();
    r->msgs = seq;
    buffer_free(src);
    free(dst);
}

static void write_result(bench_role_t role, const bench_side_result_t* r) {
    char line[512];
    int len = snprintf(line, sizeof(line),
                       "%s %" PRId64 " %" PRId64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                       " %d %s\n",
                       role == BENCH_PRODUCER ? "producer" : "consumer", r->t_start, r->t_end,
                       r->msgs, r->cpu_ns, r->futex_waits, r->futex_wakes, r->ok ? 1 : 0,
                       r->error[0] != '\0' ? r->error : "-");
    if (len > 0) {
        ssize_t w = write(BENCH_FD_RESULT, line, (size_t)len);
        (void)w;
    }
    close(BENCH_FD_RESULT);
}

int bench_child_main(bench_role_t role, const bench_spec_t* s, int nfds, const char* arg) {
    const bench_transport_t* t = &bench_transports[s->transport];
    bench_side_result_t r;
    memset(&r, 0, sizeof(r));
    bench_pin_cpu(s->cpu[role]);
    bench_endpoint_t ep;
    memset(&ep, 0, sizeof(ep));
    ep.fd = -1;
    uint64_t cpu0 = bench_cpu_time_ns();
    if ((t->caps & BENCH_CAP_SINGLE) != 0) {
        memcpy_single(s, &r);
    } else {
        zx_status_t st = t->open(s, role, nfds, arg, &ep);
        if (st != ZX_OK) {
            side_fail(&r, "open", st);
            /* Let the peer go on to fail on its own rather than wait for us forever. */
            if (role == BENCH_CONSUMER) {
                signal_ready();
            } else {
                wait_ready();
            }
        } else {
            cpu0 = bench_cpu_time_ns();
            if ((t->caps & BENCH_CAP_FLOOR) != 0) {
                if (role == BENCH_PRODUCER) {
                    bench_floor_producer(s, &ep, &r);
                } else {
                    bench_floor_consumer(s, &ep, &r);
                }
            } else if ((t->caps & BENCH_CAP_RING) != 0) {
                if (role == BENCH_PRODUCER) {
                    ring_producer(s, &ep, &r);
                } else {
                    ring_consumer(s, &ep, &r);
                }
            } else if (role == BENCH_PRODUCER) {
                stream_producer(t, s, &ep, &r);
            } else {
                stream_consumer(t, s, &ep, &r);
            }
        }
    }
    r.cpu_ns = bench_cpu_time_ns() - cpu0;
    write_result(role, &r);
    if (t->close != NULL) {
        t->close(&ep);
    }
    return r.ok ? 0 : 1;
}
