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

void bench_spec_format(const bench_spec_t* s, char* out, size_t len) {
    snprintf(out, len, "%d,%d,%d,%d,%d,%" PRIu64 ",%" PRIu64 ",%u,%.3f,%" PRId64 ",%d,%d",
             s->transport, (int)s->mode, (int)s->backing, (int)s->wait, (int)s->load,
             s->msg_bytes, s->ring_bytes, s->batch, s->pace_rate, s->duration_ns, s->cpu[0],
             s->cpu[1]);
}

zx_status_t bench_spec_parse(const char* text, bench_spec_t* s) {
    int mode;
    int backing;
    int wait;
    int load;
    memset(s, 0, sizeof(*s));
    int n = sscanf(text, "%d,%d,%d,%d,%d,%" SCNu64 ",%" SCNu64 ",%u,%lf,%" SCNd64 ",%d,%d",
                   &s->transport, &mode, &backing, &wait, &load, &s->msg_bytes, &s->ring_bytes,
                   &s->batch, &s->pace_rate, &s->duration_ns, &s->cpu[0], &s->cpu[1]);
    if (n != 12 || s->transport < 0 || (size_t)s->transport >= bench_transport_count ||
        s->msg_bytes < 8 || (s->msg_bytes % 8) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    s->mode = (bench_mode_t)mode;
    s->backing = (iob_backing_t)backing;
    s->wait = (bench_wait_t)wait;
    s->load = (bench_load_t)load;
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

/* ---- rings -------------------------------------------------------------------------------- */

static void ring_producer(const bench_spec_t* s, bench_endpoint_t* ep, bench_side_result_t* r) {
    iob_ring_producer_t p;
    iob_ring_options_t o = {.batch = s->batch,
                            .wait = s->wait == BENCH_BLOCK ? IOB_RING_WAIT_BLOCK
                                                           : IOB_RING_WAIT_SPIN};
    zx_status_t st = iob_ring_producer_init(&p, ep->ctrl, ep->ctrl_size, ep->data, ep->data_size,
                                            &o);
    if (st != ZX_OK) {
        side_fail(r, "producer init", st);
        wait_ready();
        return;
    }
    size_t n = (size_t)s->msg_bytes;
    unsigned char* buf = aligned_alloc(64, (n + 63) & ~(size_t)63);
    uint64_t bsum = 0;
    uint64_t bxor = 0;
    bench_payload_prepare(buf, n, &bsum, &bxor);
    uint64_t mask = clock_mask(n);
    wait_ready();
    r->t_start = bench_now_ns();
    pacer_t pace = {s->load == BENCH_PACED && s->pace_rate > 0, r->t_start,
                    s->load == BENCH_PACED && s->pace_rate > 0 ? 1e9 / s->pace_rate : 0};
    int64_t stop = r->t_start + s->duration_ns;
    uint64_t seq = 0;
    bool last = false;
    r->ok = true;
    while (!last) {
        if ((seq & mask) == 0 && bench_now_ns() >= stop) {
            last = true;
        }
        int64_t due;
        if (pacer_ahead(&pace, seq, &due)) {
            iob_ring_producer_flush(&p);
            pacer_sleep(due);
        }
        uint64_t word = seq | (last ? BENCH_SEQ_LAST : 0);
        if (s->mode == BENCH_ZEROCOPY) {
            /* Reserve, write every byte in place, commit. */
            void* dst;
            while ((st = iob_ring_reserve(&p, n, &dst)) == ZX_ERR_SHOULD_WAIT) {
                st = iob_ring_producer_wait(&p, n, bench_now_ns() + BENCH_STALL_NS);
                if (st != ZX_OK) {
                    break;
                }
            }
            if (st == ZX_OK) {
                bench_payload_generate(dst, n, word);
                st = iob_ring_commit(&p, n);
            }
        } else {
            /* The copy-in convenience, from the producer's private buffer. */
            bench_payload_stamp(buf, n, word, bsum, bxor);
            while ((st = iob_ring_write(&p, buf, n)) == ZX_ERR_SHOULD_WAIT) {
                st = iob_ring_producer_wait(&p, n, bench_now_ns() + BENCH_STALL_NS);
                if (st != ZX_OK) {
                    break;
                }
            }
        }
        if (st != ZX_OK) {
            side_fail(r, "send", st);
            break;
        }
        seq++;
    }
    iob_ring_producer_flush(&p);
    r->msgs = seq;
    r->futex_waits = p.stats.futex_waits;
    r->futex_wakes = p.stats.futex_wakes;
    /* The close wakes the consumer unconditionally; that wake is not per-message traffic. */
    iob_ring_producer_close(&p);
    iob_ring_producer_fini(&p);
    free(buf);
}

static void ring_consumer(const bench_spec_t* s, bench_endpoint_t* ep, bench_side_result_t* r) {
    iob_ring_consumer_t c;
    iob_ring_options_t o = {.batch = s->batch,
                            .wait = s->wait == BENCH_BLOCK ? IOB_RING_WAIT_BLOCK
                                                           : IOB_RING_WAIT_SPIN};
    zx_status_t st = iob_ring_consumer_init(&c, ep->ctrl, ep->ctrl_size, ep->data, ep->data_size,
                                            &o);
    if (st != ZX_OK) {
        side_fail(r, "consumer init", st);
        signal_ready();
        return;
    }
    size_t n = (size_t)s->msg_bytes;
    unsigned char* buf = aligned_alloc(64, (n + 63) & ~(size_t)63);
    signal_ready();
    uint64_t expect = 0;
    /*
     * Copy mode copies every message into the consumer's private buffer and verifies the
     * copy. Large messages are copied and checksummed in one pass (peek, fused copy-out,
     * release: the same routine the memcpy baseline uses); small ones through the copy-out
     * convenience, then verified in L1.
     */
    bool fused = s->mode != BENCH_ZEROCOPY && n / 8 > BENCH_WIDE_WORDS;
    r->ok = true;
    for (;;) {
        const void* msg = NULL;
        size_t len = 0;
        if (s->mode == BENCH_ZEROCOPY || fused) {
            st = iob_ring_peek(&c, &msg, &len);
        } else {
            /* The copy-out convenience, into the consumer's private buffer. */
            st = iob_ring_read(&c, buf, n, &len);
            msg = buf;
        }
        if (st == ZX_ERR_SHOULD_WAIT) {
            st = iob_ring_consumer_wait(&c, bench_now_ns() + BENCH_STALL_NS);
            if (st != ZX_OK) {
                side_fail(r, "consumer wait", st);
                break;
            }
            continue;
        }
        if (st != ZX_OK) {
            side_fail(r, "peek", st);
            break;
        }
        if (len != n) {
            side_fail(r, "message length", ZX_ERR_IO_DATA_INTEGRITY);
            break;
        }
        uint64_t word;
        bool good;
        if (fused) {
            good = bench_payload_copy_verify_wide(buf, msg, n, &word);
            iob_ring_release(&c);
        } else {
            good = bench_payload_verify(msg, n, &word);
            if (s->mode == BENCH_ZEROCOPY) {
                iob_ring_release(&c);
            }
        }
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
    r->futex_waits = c.stats.futex_waits;
    r->futex_wakes = c.stats.futex_wakes;
    iob_ring_consumer_close(&c);
    iob_ring_consumer_fini(&c);
    free(buf);
}

/* ---- streams ------------------------------------------------------------------------------ */

static void stream_producer(const bench_transport_t* t, const bench_spec_t* s,
                            bench_endpoint_t* ep, bench_side_result_t* r) {
    size_t n = (size_t)s->msg_bytes;
    unsigned char* buf = aligned_alloc(64, (n + 63) & ~(size_t)63);
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
    free(buf);
}

static void stream_consumer(const bench_transport_t* t, const bench_spec_t* s,
                            bench_endpoint_t* ep, bench_side_result_t* r) {
    size_t n = (size_t)s->msg_bytes;
    unsigned char* buf = aligned_alloc(64, (n + 63) & ~(size_t)63);
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
        bool good = bench_payload_verify(buf, n, &word);
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
    free(buf);
}

/*
 * memcpy, the copy limit: one process copies each message into a ring-sized buffer (the
 * same cache footprint as the ring) and verifies it there, with the same payload code
 * (for large messages the same fused copy-and-verify as the ring consumer's copy mode).
 */
static void memcpy_single(const bench_spec_t* s, bench_side_result_t* r) {
    size_t n = (size_t)s->msg_bytes;
    size_t ring = (size_t)s->ring_bytes;
    unsigned char* src = aligned_alloc(64, (n + 63) & ~(size_t)63);
    unsigned char* dst = aligned_alloc(4096, ring);
    memset(dst, 0, ring);
    uint64_t bsum = 0;
    uint64_t bxor = 0;
    bench_payload_prepare(src, n, &bsum, &bxor);
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
        if (n / 8 > BENCH_WIDE_WORDS) {
            /* The same fused copy-and-verify as the ring consumer's copy mode. */
            good = bench_payload_copy_verify_wide(dst + off, src, n, &got);
        } else {
            memcpy(dst + off, src, n);
            good = bench_payload_verify(dst + off, n, &got);
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
    free(src);
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
            if ((t->caps & BENCH_CAP_RING) != 0) {
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
