/* SPDX-License-Identifier: MIT */
/* Tests of shm/ring: the header, the API in one process, wraparound, batching, claims and spans. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ring_fixture.h"
#include "shm/ring.h"
#include "test_util.h"

/* ---- header and attach ------------------------------------------------------------- */

static void test_capacity(void** state) {
    (void)state;
    assert_int_equal(iob_ring_capacity_for(4095), 0);
    assert_int_equal(iob_ring_capacity_for(4096), 4096);
    assert_int_equal(iob_ring_capacity_for(3 * 4096), 8192);
    assert_int_equal(iob_ring_capacity_for(UINT64_MAX), IOB_RING_MAX_CAPACITY);
    assert_int_equal(iob_ring_max_payload(4096), 2040);
}

static void test_format_errors(void** state) {
    (void)state;
    void* ctrl = aligned_alloc(IOB_RING_LINE, IOB_RING_CTRL_SIZE);
    assert_non_null(ctrl);
    assert_int_equal(iob_ring_format(NULL, IOB_RING_CTRL_SIZE, SMALL_DATA), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_ring_format((char*)ctrl + 8, IOB_RING_CTRL_SIZE, SMALL_DATA),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE - 1, SMALL_DATA),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE, 100), ZX_ERR_BUFFER_TOO_SMALL);
    free(ctrl);
}

static void test_attach_validates_header(void** state) {
    (void)state;
    void* ctrl = aligned_alloc(IOB_RING_LINE, IOB_RING_CTRL_SIZE);
    unsigned char* data = aligned_alloc(4096, 2 * SMALL_DATA);
    assert_non_null(ctrl);
    assert_non_null(data);
    iob_ring_ctrl_t* h = ctrl;
    iob_ring_consumer_t c;
    iob_ring_producer_t p;

    /* Not formatted yet: the version is 0, attach later. */
    memset(ctrl, 0, IOB_RING_CTRL_SIZE);
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_SHOULD_WAIT);

    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE, SMALL_DATA), ZX_OK);
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_OK);

    /* The consumer's own region sizes rule: a header claiming more capacity is a lie. */
    assert_int_equal(
        iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, 2 * SMALL_DATA, NULL),
        ZX_ERR_IO_DATA_INTEGRITY);
    h->data_capacity = 1u << 20;
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_ring_producer_init(&p, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_IO_DATA_INTEGRITY);

    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE, SMALL_DATA), ZX_OK);
    h->magic ^= 1;
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_IO_DATA_INTEGRITY);

    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE, SMALL_DATA), ZX_OK);
    atomic_store(&h->version, IOB_RING_VERSION + 1);
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_IO_DATA_INTEGRITY);

    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE, SMALL_DATA), ZX_OK);
    h->max_payload = SMALL_DATA;
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_IO_DATA_INTEGRITY);

    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE, SMALL_DATA), ZX_OK);
    h->record_align = 4;
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_IO_DATA_INTEGRITY);

    /* A misaligned read index left in the header. */
    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE, SMALL_DATA), ZX_OK);
    atomic_store(&h->read_index, 3);
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_ring_producer_init(&p, ctrl, IOB_RING_CTRL_SIZE, data, SMALL_DATA, NULL),
                     ZX_ERR_IO_DATA_INTEGRITY);

    /* Too small for a ring at all. */
    assert_int_equal(iob_ring_format(ctrl, IOB_RING_CTRL_SIZE, SMALL_DATA), ZX_OK);
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, IOB_RING_CTRL_SIZE, data, 1024, NULL),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(iob_ring_consumer_init(&c, ctrl, 64, data, SMALL_DATA, NULL),
                     ZX_ERR_BUFFER_TOO_SMALL);
    free(ctrl);
    free(data);
}

/* ---- the API in one process -------------------------------------------------------- */

static void test_empty_and_closed(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    const void* msg;
    size_t len;
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_SHOULD_WAIT);
    assert_int_equal(iob_ring_consumer_wait(&f->c, iob_ring_now() + 1000000), ZX_ERR_TIMED_OUT);
    assert_int_equal(iob_ring_write(&f->p, "hello", 5), ZX_OK);
    iob_ring_producer_close(&f->p);
    /* What was published before the close is still delivered. */
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(msg, "hello", 5);
    iob_ring_release(&f->c);
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_PEER_CLOSED);
    assert_int_equal(iob_ring_consumer_wait(&f->c, ZX_TIME_INFINITE), ZX_OK);
    fixture_free(f);
}

static void test_full_then_consumer_closed(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    unsigned char buf[256];
    int sent = 0;
    while (iob_ring_write(&f->p, buf, sizeof(buf)) == ZX_OK) {
        sent++;
    }
    /* 4096 / (256 + 8) */
    assert_int_equal(sent, 15);
    assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_ERR_SHOULD_WAIT);
    assert_int_equal(iob_ring_producer_wait(&f->p, sizeof(buf), iob_ring_now() + 1000000),
                     ZX_ERR_TIMED_OUT);
    size_t len;
    assert_int_equal(iob_ring_read(&f->c, buf, sizeof(buf), &len), ZX_OK);
    assert_int_equal(iob_ring_producer_wait(&f->p, sizeof(buf), ZX_TIME_INFINITE), ZX_OK);
    assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_OK);
    assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_ERR_SHOULD_WAIT);
    iob_ring_consumer_close(&f->c);
    assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_ERR_PEER_CLOSED);
    fixture_free(f);
}

static void test_reserve_commit_errors(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    void* dst;
    assert_int_equal(iob_ring_commit(&f->p, 0), ZX_ERR_BAD_STATE);
    assert_int_equal(iob_ring_reserve(&f->p, 2041, &dst), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_ring_reserve(&f->p, 2040, &dst), ZX_OK);
    assert_int_equal(((uintptr_t)dst) % IOB_RING_ALIGN, 0);
    assert_int_equal(iob_ring_commit(&f->p, 2041), ZX_ERR_OUT_OF_RANGE);
    /* A shorter commit than the reservation is allowed. */
    memset(dst, 0xab, 10);
    assert_int_equal(iob_ring_commit(&f->p, 10), ZX_OK);
    assert_int_equal(iob_ring_commit(&f->p, 10), ZX_ERR_BAD_STATE);
    unsigned char small[4];
    size_t len = 0;
    assert_int_equal(iob_ring_read(&f->c, small, sizeof(small), &len), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, 10);
    unsigned char big[16];
    assert_int_equal(iob_ring_read(&f->c, big, sizeof(big), &len), ZX_OK);
    assert_int_equal(len, 10);
    assert_int_equal(big[9], 0xab);
    fixture_free(f);
}

/* Every payload length from 0 to the maximum, in place and by copy, through a small ring. */
static void test_every_size_class(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    unsigned char in[2048];
    unsigned char out[2048];
    uint64_t maxp = iob_ring_max_payload(SMALL_DATA);
    for (uint64_t n = 0; n <= maxp; n++) {
        fill(in, (size_t)n, n);
        if (n % 2 == 0) {
            assert_int_equal(iob_ring_write(&f->p, in, (size_t)n), ZX_OK);
        } else {
            void* dst;
            assert_int_equal(iob_ring_reserve(&f->p, (size_t)n, &dst), ZX_OK);
            memcpy(dst, in, (size_t)n);
            assert_int_equal(iob_ring_commit(&f->p, (size_t)n), ZX_OK);
        }
        size_t len;
        if (n % 3 == 0) {
            assert_int_equal(iob_ring_read(&f->c, out, sizeof(out), &len), ZX_OK);
            assert_int_equal(len, n);
            check(out, len, n);
        } else {
            const void* msg;
            assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_OK);
            assert_int_equal(len, n);
            check(msg, len, n);
            iob_ring_release(&f->c);
        }
    }
    const void* msg;
    size_t len;
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_SHOULD_WAIT);
    fixture_free(f);
}

/* Many laps of a small ring with odd sizes, several messages in flight, so padding shows. */
static void test_wraparound(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    unsigned char buf[1024];
    uint64_t sent = 0;
    uint64_t got = 0;
    uint64_t wraps_before = 0;
    while (got < 20000) {
        size_t n = (size_t)((sent * 37u) % 1000u);
        fill(buf, n, sent);
        zx_status_t s = iob_ring_write(&f->p, buf, n);
        if (s == ZX_OK) {
            sent++;
            continue;
        }
        assert_int_equal(s, ZX_ERR_SHOULD_WAIT);
        /* Drain a few. */
        for (int k = 0; k < 3 && got < sent; k++) {
            const void* msg;
            size_t len;
            assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_OK);
            assert_int_equal(len, (got * 37u) % 1000u);
            check(msg, len, got);
            iob_ring_release(&f->c);
            got++;
        }
    }
    wraps_before = atomic_load(&ctrl_of(f)->write_index) / SMALL_DATA;
    assert_true(wraps_before > 1000);
    fixture_free(f);
}

static void test_batching(void** state) {
    (void)state;
    fixture_t* f = fixture_new(1u << 16, 4);
    iob_ring_ctrl_t* h = ctrl_of(f);
    const void* msg;
    size_t len;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(iob_ring_write(&f->p, &i, sizeof(i)), ZX_OK);
    }
    /* Not yet published: the consumer sees nothing. */
    assert_int_equal(atomic_load(&h->write_index), 0);
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_SHOULD_WAIT);
    int i = 3;
    assert_int_equal(iob_ring_write(&f->p, &i, sizeof(i)), ZX_OK);
    assert_int_equal(atomic_load(&h->write_index), 4 * 16);
    assert_int_equal(f->p.stats.publishes, 1);
    /* Flush publishes a partial batch. */
    i = 4;
    assert_int_equal(iob_ring_write(&f->p, &i, sizeof(i)), ZX_OK);
    iob_ring_producer_flush(&f->p);
    assert_int_equal(atomic_load(&h->write_index), 5 * 16);
    /* The consumer publishes its index in batches too, and when it runs dry. */
    for (int k = 0; k < 3; k++) {
        int v;
        assert_int_equal(iob_ring_read(&f->c, &v, sizeof(v), &len), ZX_OK);
        assert_int_equal(v, k);
    }
    assert_int_equal(atomic_load(&h->read_index), 0);
    int v;
    assert_int_equal(iob_ring_read(&f->c, &v, sizeof(v), &len), ZX_OK);
    assert_int_equal(atomic_load(&h->read_index), 4 * 16);
    assert_int_equal(iob_ring_read(&f->c, &v, sizeof(v), &len), ZX_OK);
    assert_int_equal(v, 4);
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_SHOULD_WAIT);
    assert_int_equal(atomic_load(&h->read_index), 5 * 16);
    /* Large messages publish early, whatever the batch: a quarter of the capacity. */
    static unsigned char big[8192];
    assert_int_equal(iob_ring_write(&f->p, big, sizeof(big)), ZX_OK);
    assert_int_equal(iob_ring_write(&f->p, big, sizeof(big)), ZX_OK);
    assert_int_equal(atomic_load(&h->write_index), 5 * 16 + 2 * (8192 + 8));
    fixture_free(f);
}

/* ---- claims and spans (the batched zero-copy calls) ------------------------------------- */

/*
 * Claims on one side, spans on the other, through many laps with varied sizes: every
 * message arrives once, in order, intact, including across the padding at the lap end
 * (which claims leave to reserve, and spans to their slow begin).
 */
static void test_claims_and_spans_wrap(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 8);
    uint64_t sent = 0;
    uint64_t got = 0;
    uint64_t by_claim = 0;
    uint64_t by_reserve = 0;
    while (got < 30000) {
        iob_ring_claim_t claim;
        iob_ring_claim_begin(&f->p, &claim);
        void* at = NULL;
        for (int k = 0; k < 7; k++) {
            size_t n = (size_t)((sent * 53u) % 300u);
            at = iob_ring_claim_next(&f->p, &claim, n);
            if (at == NULL) {
                break;
            }
            assert_int_equal((uintptr_t)at % IOB_RING_ALIGN, 0);
            fill(at, n, sent);
            sent++;
            by_claim++;
        }
        iob_ring_claim_end(&f->p, &claim);
        if (at == NULL) {
            size_t n = (size_t)((sent * 53u) % 300u);
            void* dst;
            zx_status_t s = iob_ring_reserve(&f->p, n, &dst);
            if (s == ZX_OK) {
                fill(dst, n, sent);
                assert_int_equal(iob_ring_commit(&f->p, n), ZX_OK);
                sent++;
                by_reserve++;
            } else {
                assert_int_equal(s, ZX_ERR_SHOULD_WAIT);
            }
        }
        iob_ring_producer_flush(&f->p);
        /* Drain part of what is there, in spans of at most 5. */
        const void* msg;
        size_t len;
        iob_ring_span_t span;
        zx_status_t s = iob_ring_span_begin(&f->c, &span, &msg, &len);
        if (s == ZX_ERR_SHOULD_WAIT) {
            continue;
        }
        assert_int_equal(s, ZX_OK);
        int taken = 0;
        do {
            assert_int_equal(len, (got * 53u) % 300u);
            check(msg, len, got);
            got++;
            taken++;
        } while (taken < 5 && iob_ring_span_next(&f->c, &span, &msg, &len) == ZX_OK);
        assert_int_equal(span.count, (uint32_t)taken);
        iob_ring_span_end(&f->c, &span);
    }
    /* Both paths ran: claims for most messages, reserve at lap ends and when full. */
    assert_true(by_claim > by_reserve);
    assert_true(by_reserve > 0);
    assert_true(atomic_load(&ctrl_of(f)->write_index) / SMALL_DATA > 1000);
    fixture_free(f);
}

/* A span begun twice without ending starts at the same message, as peek does. */
static void test_span_begin_is_idempotent(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(iob_ring_write(&f->p, &i, sizeof(i)), ZX_OK);
    }
    const void* msg;
    size_t len;
    iob_ring_span_t span;
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(*(const uint32_t*)msg, 0);
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(*(const uint32_t*)msg, 0);
    assert_int_equal(iob_ring_span_next(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(*(const uint32_t*)msg, 1);
    iob_ring_span_end(&f->c, &span);
    /* Ended after two: the third is next, and nothing after it. */
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(*(const uint32_t*)msg, 2);
    assert_int_equal(iob_ring_span_next(&f->c, &span, &msg, &len), ZX_ERR_SHOULD_WAIT);
    iob_ring_span_end(&f->c, &span);
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_ERR_SHOULD_WAIT);
    fixture_free(f);
}

/*
 * Publication: a claim's messages are invisible until it ends and a batch (or a quarter)
 * is due; a span hands the space back when it ends with a batch's worth released.
 */
static void test_claim_and_span_publication(void** state) {
    (void)state;
    fixture_t* f = fixture_new(1u << 16, 4);
    iob_ring_ctrl_t* h = ctrl_of(f);
    iob_ring_claim_t claim;
    iob_ring_claim_begin(&f->p, &claim);
    for (uint32_t i = 0; i < 3; i++) {
        uint64_t* at = iob_ring_claim_next(&f->p, &claim, 8);
        if (at == NULL) {
            fail_msg("claim %u refused", i);
            return;
        }
        *at = i;
    }
    assert_int_equal(atomic_load(&h->write_index), 0);
    iob_ring_claim_end(&f->p, &claim);
    /* Three of a batch of four: still not published. */
    assert_int_equal(atomic_load(&h->write_index), 0);
    iob_ring_claim_begin(&f->p, &claim);
    uint64_t* fourth = iob_ring_claim_next(&f->p, &claim, 8);
    if (fourth == NULL) {
        fail_msg("fourth claim refused");
        return;
    }
    *fourth = 3;
    /* Larger than the maximum payload: the claim refuses, reserve says why. */
    assert_null(iob_ring_claim_next(&f->p, &claim, (size_t)f->p.max_payload + 1));
    iob_ring_claim_end(&f->p, &claim);
    assert_int_equal(atomic_load(&h->write_index), 4 * 16);
    void* dst;
    assert_int_equal(iob_ring_reserve(&f->p, (size_t)f->p.max_payload + 1, &dst),
                     ZX_ERR_OUT_OF_RANGE);

    const void* msg;
    size_t len;
    iob_ring_span_t span;
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(iob_ring_span_next(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(iob_ring_span_next(&f->c, &span, &msg, &len), ZX_OK);
    iob_ring_span_end(&f->c, &span);
    assert_int_equal(atomic_load(&h->read_index), 0);
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(*(const uint64_t*)msg, 3);
    iob_ring_span_end(&f->c, &span);
    assert_int_equal(atomic_load(&h->read_index), 4 * 16);
    fixture_free(f);
}

/*
 * A corrupt record inside a span: span_next stops before it, the messages before it are
 * delivered and released, and the next begin reports the corruption (sticky).
 */
static void test_span_stops_at_corrupt_record(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    for (uint64_t i = 0; i < 4; i++) {
        assert_int_equal(iob_ring_write(&f->p, &i, sizeof(i)), ZX_OK);
    }
    /* The third record claims a length running past the published data. */
    uint64_t bad = ((uint64_t)IOB_RING_REC_MSG << 32) | 1000u;
    memcpy(f->data + 2 * 16, &bad, sizeof(bad));
    const void* msg;
    size_t len;
    iob_ring_span_t span;
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(*(const uint64_t*)msg, 0);
    assert_int_equal(iob_ring_span_next(&f->c, &span, &msg, &len), ZX_OK);
    assert_int_equal(*(const uint64_t*)msg, 1);
    assert_int_equal(iob_ring_span_next(&f->c, &span, &msg, &len), ZX_ERR_SHOULD_WAIT);
    iob_ring_span_end(&f->c, &span);
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_ERR_IO_DATA_INTEGRITY);
    expect_integrity(f);
    assert_int_equal(iob_ring_span_begin(&f->c, &span, &msg, &len), ZX_ERR_IO_DATA_INTEGRITY);
    fixture_free(f);
}

/* Random garbage read through spans: every message handed out lies inside the data region. */
static void test_span_random_garbage(void** state) {
    (void)state;
    srand(777);
    for (int round = 0; round < 2000; round++) {
        fixture_t* f = fixture_new(SMALL_DATA, 1);
        for (size_t i = 0; i < SMALL_DATA; i += 8) {
            int pick = rand() % 4;
            uint32_t len = (uint32_t)rand() % (pick == 0 ? UINT32_MAX : 600u);
            uint32_t type = pick == 3 ? (uint32_t)rand()
                                      : (pick == 2 ? IOB_RING_REC_PAD : IOB_RING_REC_MSG);
            uint64_t v = ((uint64_t)type << 32) | len;
            memcpy(f->data + i, &v, 8);
        }
        uint64_t w = ((uint64_t)rand() % (2 * SMALL_DATA)) & ~(uint64_t)(round % 3 == 0 ? 0 : 7);
        atomic_store(&ctrl_of(f)->write_index, w);
        for (int k = 0; k < 16; k++) {
            const void* msg;
            size_t len;
            iob_ring_span_t span;
            zx_status_t s = iob_ring_span_begin(&f->c, &span, &msg, &len);
            if (s != ZX_OK) {
                assert_true(s == ZX_ERR_IO_DATA_INTEGRITY || s == ZX_ERR_SHOULD_WAIT);
                break;
            }
            do {
                const unsigned char* b = msg;
                assert_true(b >= f->data && b + len <= f->data + SMALL_DATA);
                unsigned sum = 0;
                for (size_t j = 0; j < len; j++) {
                    sum += b[j];
                }
                (void)sum;
            } while (iob_ring_span_next(&f->c, &span, &msg, &len) == ZX_OK);
            iob_ring_span_end(&f->c, &span);
        }
        fixture_free(f);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_format_errors),
        cmocka_unit_test(test_attach_validates_header),
        cmocka_unit_test(test_empty_and_closed),
        cmocka_unit_test(test_full_then_consumer_closed),
        cmocka_unit_test(test_reserve_commit_errors),
        cmocka_unit_test(test_every_size_class),
        cmocka_unit_test(test_wraparound),
        cmocka_unit_test(test_batching),
        cmocka_unit_test(test_claims_and_spans_wrap),
        cmocka_unit_test(test_span_begin_is_idempotent),
        cmocka_unit_test(test_claim_and_span_publication),
        cmocka_unit_test(test_span_stops_at_corrupt_record),
        cmocka_unit_test(test_span_random_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
