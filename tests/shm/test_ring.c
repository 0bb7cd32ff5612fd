/* SPDX-License-Identifier: MIT */
/* Tests of shm/ring.c: the API, wraparound, batching, two processes, wake-ups, hostile peers. */
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

#include "shm/ring.h"
#include "test_util.h"

#define SMALL_DATA 4096u

/*
 * In-process fixture: heap blocks of exactly the region sizes, so AddressSanitizer flags
 * any read past the end of the data region in the hostile cases.
 */
typedef struct fixture {
    void* ctrl;
    unsigned char* data;
    uint64_t data_size;
    iob_ring_producer_t p;
    iob_ring_consumer_t c;
} fixture_t;

static fixture_t* fixture_new(uint64_t data_size, uint32_t batch) {
    fixture_t* f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->ctrl = aligned_alloc(IOB_RING_LINE, IOB_RING_CTRL_SIZE);
    f->data = aligned_alloc(4096, data_size);
    assert_non_null(f->ctrl);
    assert_non_null(f->data);
    memset(f->ctrl, 0, IOB_RING_CTRL_SIZE);
    memset(f->data, 0, data_size);
    f->data_size = data_size;
    assert_int_equal(iob_ring_format(f->ctrl, IOB_RING_CTRL_SIZE, data_size), ZX_OK);
    iob_ring_options_t o = {.batch = batch, .wait = IOB_RING_WAIT_SPIN};
    assert_int_equal(
        iob_ring_producer_init(&f->p, f->ctrl, IOB_RING_CTRL_SIZE, f->data, data_size, &o),
        ZX_OK);
    assert_int_equal(
        iob_ring_consumer_init(&f->c, f->ctrl, IOB_RING_CTRL_SIZE, f->data, data_size, &o),
        ZX_OK);
    return f;
}

static void fixture_free(fixture_t* f) {
    iob_ring_producer_fini(&f->p);
    iob_ring_consumer_fini(&f->c);
    free(f->ctrl);
    free(f->data);
    free(f);
}

/*
 * Moves the consumer's local state to `start` as if it had consumed up to there (and seen
 * the write index there), keeping the fields derived from those consistent.
 */
static void consumer_seek(fixture_t* f, uint64_t start) {
    f->c.read_pos = f->c.published = f->c.cached_write = start;
    f->c.fast_end = start;
    f->c.publish_at = start + f->c.publish_bytes;
}

static iob_ring_ctrl_t* ctrl_of(fixture_t* f) {
    return (iob_ring_ctrl_t*)f->ctrl;
}

static void fill(unsigned char* buf, size_t len, uint64_t seed) {
    for (size_t i = 0; i < len; i++) {
        buf[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
    }
}

static void check(const unsigned char* buf, size_t len, uint64_t seed) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != (unsigned char)(seed * 131u + i * 7u + (i >> 8))) {
            fail_msg("byte %zu of message %llu differs", i, (unsigned long long)seed);
        }
    }
}

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

/* ---- hostile producer --------------------------------------------------------------- */

static void put_header(fixture_t* f, uint64_t pos, uint32_t type, uint32_t length) {
    uint64_t header = ((uint64_t)type << 32) | length;
    memcpy(f->data + (pos & (SMALL_DATA - 1)), &header, sizeof(header));
}

static void expect_integrity(fixture_t* f) {
    const void* msg;
    size_t len;
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_IO_DATA_INTEGRITY);
    /* Sticky: it stays broken and waiting does not hang. */
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_ring_consumer_wait(&f->c, ZX_TIME_INFINITE), ZX_OK);
    unsigned char buf[16];
    assert_int_equal(iob_ring_read(&f->c, buf, sizeof(buf), &len), ZX_ERR_IO_DATA_INTEGRITY);
}

static void test_hostile_write_index_beyond_capacity(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    atomic_store(&ctrl_of(f)->write_index, SMALL_DATA + 8);
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_write_index_huge(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    atomic_store(&ctrl_of(f)->write_index, UINT64_MAX - 7);
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_write_index_backwards(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(iob_ring_write(&f->p, &i, sizeof(i)), ZX_OK);
    }
    const void* msg;
    size_t len;
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_OK);
    iob_ring_release(&f->c);
    atomic_store(&ctrl_of(f)->write_index, 16);
    /* Still-published records remain readable... */
    for (int i = 1; i < 4; i++) {
        assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_OK);
        iob_ring_release(&f->c);
    }
    /* ...but the moment the consumer re-reads the index, going back is caught. */
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_write_index_misaligned(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    put_header(f, 0, IOB_RING_REC_MSG, 4);
    atomic_store(&ctrl_of(f)->write_index, 12);
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_length_beyond_published(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    put_header(f, 0, IOB_RING_REC_MSG, 64); /* needs 72 bytes, only 16 published */
    atomic_store(&ctrl_of(f)->write_index, 16);
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_length_huge(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    put_header(f, 0, IOB_RING_REC_MSG, UINT32_MAX);
    atomic_store(&ctrl_of(f)->write_index, SMALL_DATA);
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_length_straddles_end(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    iob_ring_ctrl_t* h = ctrl_of(f);
    /* Move both sides near the end of the ring legitimately. */
    uint64_t start = SMALL_DATA - 64;
    atomic_store(&h->write_index, start);
    atomic_store(&h->read_index, start);
    consumer_seek(f, start);
    /* A record at 4032 claiming 200 bytes would run 144 bytes past the end. */
    put_header(f, start, IOB_RING_REC_MSG, 200);
    atomic_store(&h->write_index, start + 512);
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_bad_padding(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    iob_ring_ctrl_t* h = ctrl_of(f);
    uint64_t start = SMALL_DATA - 64;
    atomic_store(&h->read_index, start);
    consumer_seek(f, start);
    /* A pad whose length does not reach exactly to the end misaligns what follows. */
    put_header(f, start, IOB_RING_REC_PAD, 20);
    atomic_store(&h->write_index, start + 128);
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_padding_beyond_published(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    iob_ring_ctrl_t* h = ctrl_of(f);
    uint64_t start = SMALL_DATA - 64;
    atomic_store(&h->read_index, start);
    consumer_seek(f, start);
    put_header(f, start, IOB_RING_REC_PAD, 56);
    atomic_store(&h->write_index, start + 16);
    expect_integrity(f);
    fixture_free(f);
}

static void test_hostile_unknown_record_type(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    put_header(f, 0, 0xdeadbeefu, 8);
    atomic_store(&ctrl_of(f)->write_index, 16);
    expect_integrity(f);
    fixture_free(f);
}

/*
 * The inline fast path: the consumer already holds a validated write index that covers
 * several records, so the next peek or read decides from the cached index alone. A
 * producer that rewrites a later header in the meantime must still be caught there, by
 * each of the checks, and the ring must stay broken for the fast path too.
 */
static void test_hostile_header_rewritten_under_cached_index(void** state) {
    (void)state;
    /* What the second record's header turns into; the first record was 16 bytes. */
    const struct {
        uint32_t type;
        uint32_t length;
    } bad[] = {
        {IOB_RING_REC_MSG, UINT32_MAX},      /* beyond max_payload */
        {IOB_RING_REC_MSG, 2040},            /* within max_payload, beyond what is published */
        {IOB_RING_REC_MSG, 48},              /* 8 bytes beyond what is published */
        {0xdeadbeefu, 8},                    /* unknown type */
        {IOB_RING_REC_PAD, 8},               /* padding in the middle of the data */
        {0, 0},                              /* zeroed */
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        fixture_t* f = fixture_new(SMALL_DATA, 64);
        uint64_t v = 7;
        for (int i = 0; i < 4; i++) {
            assert_int_equal(iob_ring_write(&f->p, &v, sizeof(v)), ZX_OK);
        }
        /* Published: 4 records of 16 bytes. */
        iob_ring_producer_flush(&f->p);
        const void* msg;
        size_t len;
        assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_OK);
        assert_int_equal(len, 8);
        assert_int_equal(f->c.cached_write, 64);
        put_header(f, 16, bad[k].type, bad[k].length);
        iob_ring_release(&f->c);
        expect_integrity(f);
        /* Broken for good: even a now-valid header under the cached index is refused. */
        put_header(f, 16, IOB_RING_REC_MSG, 8);
        assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_IO_DATA_INTEGRITY);
        fixture_free(f);
    }
    /* The same through read (copy out), and a record straddling the end of the data. */
    fixture_t* f = fixture_new(SMALL_DATA, 64);
    iob_ring_ctrl_t* h = ctrl_of(f);
    uint64_t start = SMALL_DATA - 64;
    atomic_store(&h->read_index, start);
    consumer_seek(f, start);
    put_header(f, start, IOB_RING_REC_MSG, 8);
    put_header(f, start + 16, IOB_RING_REC_MSG, 48); /* 8 bytes past the end */
    atomic_store(&h->write_index, start + 512);
    unsigned char buf[64];
    size_t len;
    assert_int_equal(iob_ring_read(&f->c, buf, sizeof(buf), &len), ZX_OK);
    assert_int_equal(len, 8);
    assert_int_equal(f->c.cached_write, start + 512);
    expect_integrity(f);
    fixture_free(f);
}

/* The producer does not trust the consumer either. */
static void test_hostile_consumer(void** state) {
    (void)state;
    fixture_t* f = fixture_new(SMALL_DATA, 1);
    unsigned char buf[1000];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_OK);
    }
    /* A read index past anything published. */
    atomic_store(&ctrl_of(f)->read_index, 1u << 20);
    assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_ring_write(&f->p, buf, 8), ZX_ERR_IO_DATA_INTEGRITY);
    fixture_free(f);

    f = fixture_new(SMALL_DATA, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_OK);
    }
    size_t len;
    assert_int_equal(iob_ring_read(&f->c, buf, sizeof(buf), &len), ZX_OK);
    assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_OK);
    /* Backwards. */
    atomic_store(&ctrl_of(f)->read_index, 0);
    assert_int_equal(iob_ring_write(&f->p, buf, sizeof(buf)), ZX_ERR_IO_DATA_INTEGRITY);
    fixture_free(f);
}

/*
 * A producer that keeps rewriting record headers while the consumer reads: whatever the
 * interleaving, the consumer gets valid messages or ZX_ERR_IO_DATA_INTEGRITY, and never reads
 * out of bounds (AddressSanitizer would abort). Random garbage in a single process covers
 * the space of headers the consumer can observe.
 */
static void test_hostile_random_garbage(void** state) {
    (void)state;
    srand(12345);
    for (int round = 0; round < 2000; round++) {
        fixture_t* f = fixture_new(SMALL_DATA, 1);
        for (size_t i = 0; i < SMALL_DATA; i += 8) {
            uint64_t v;
            int pick = rand() % 4;
            uint32_t len = (uint32_t)rand() % (pick == 0 ? UINT32_MAX : 4200u);
            uint32_t type = pick == 3 ? (uint32_t)rand()
                                      : (pick == 2 ? IOB_RING_REC_PAD : IOB_RING_REC_MSG);
            v = ((uint64_t)type << 32) | len;
            memcpy(f->data + i, &v, 8);
        }
        uint64_t w = ((uint64_t)rand() % (2 * SMALL_DATA)) & ~(uint64_t)(round % 3 == 0 ? 0 : 7);
        atomic_store(&ctrl_of(f)->write_index, w);
        for (int k = 0; k < 64; k++) {
            const void* msg;
            size_t len;
            zx_status_t s = iob_ring_peek(&f->c, &msg, &len);
            if (s != ZX_OK) {
                assert_true(s == ZX_ERR_IO_DATA_INTEGRITY || s == ZX_ERR_SHOULD_WAIT);
                break;
            }
            const unsigned char* b = msg;
            unsigned sum = 0;
            for (size_t j = 0; j < len; j++) {
                sum += b[j];
            }
            (void)sum;
            assert_true(b >= f->data && b + len <= f->data + SMALL_DATA);
            iob_ring_release(&f->c);
        }
        fixture_free(f);
    }
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

/* ---- two processes ------------------------------------------------------------------ */

typedef struct shared_pair {
    void* ctrl;
    void* data;
    uint64_t data_size;
} shared_pair_t;

static shared_pair_t shared_new(uint64_t data_size) {
    shared_pair_t s;
    s.ctrl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    s.data = mmap(NULL, data_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(s.ctrl != MAP_FAILED && s.data != MAP_FAILED);
    s.data_size = data_size;
    assert_int_equal(iob_ring_format(s.ctrl, 4096, data_size), ZX_OK);
    return s;
}

static void shared_free(shared_pair_t* s) {
    munmap(s->ctrl, 4096);
    munmap(s->data, s->data_size);
}

static uint64_t checksum(const unsigned char* b, size_t n) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211u;
    }
    return h;
}

/*
 * Child producer: message i carries i, a payload of varying length and a checksum of
 * that payload. Exit status 0 on success.
 */
static _Noreturn void run_producer(shared_pair_t* s, uint64_t count, iob_ring_wait_mode_t wait,
                                   uint32_t batch, int pause_every) {
    iob_ring_producer_t p;
    iob_ring_options_t o = {.batch = batch, .wait = wait};
    if (iob_ring_producer_init(&p, s->ctrl, 4096, s->data, s->data_size, &o) != ZX_OK) {
        _exit(10);
    }
    unsigned char payload[3000];
    for (uint64_t i = 0; i < count; i++) {
        size_t n = 16 + (size_t)((i * 2654435761u) % 2900u);
        void* dst;
        zx_status_t st;
        while ((st = iob_ring_reserve(&p, n, &dst)) == ZX_ERR_SHOULD_WAIT) {
            if (iob_ring_producer_wait(&p, n, iob_ring_now() + 10000000000) != ZX_OK) {
                _exit(11);
            }
        }
        if (st != ZX_OK) {
            _exit(12);
        }
        fill(payload + 16, n - 16, i);
        uint64_t sum = checksum(payload + 16, n - 16);
        memcpy(payload, &i, 8);
        memcpy(payload + 8, &sum, 8);
        memcpy(dst, payload, n);
        if (iob_ring_commit(&p, n) != ZX_OK) {
            _exit(13);
        }
        if (pause_every != 0 && (i % (uint64_t)pause_every) == 0) {
            /* Go idle now and then, so the consumer really falls asleep. */
            iob_ring_producer_flush(&p);
            usleep(50);
        }
    }
    iob_ring_producer_close(&p);
    _exit(0);
}

static void run_consumer(shared_pair_t* s, uint64_t count, iob_ring_wait_mode_t wait,
                         uint32_t batch, iob_ring_stats_t* stats) {
    iob_ring_consumer_t c;
    iob_ring_options_t o = {.batch = batch, .wait = wait};
    /* The consumer does not map the data region writable in real use; here it is shared
     * memory from mmap, and read-only access is all the code does. */
    zx_status_t st;
    while ((st = iob_ring_consumer_init(&c, s->ctrl, 4096, s->data, s->data_size, &o)) ==
           ZX_ERR_SHOULD_WAIT) {
    }
    assert_int_equal(st, ZX_OK);
    uint64_t got = 0;
    for (;;) {
        const void* msg;
        size_t len;
        st = iob_ring_peek(&c, &msg, &len);
        if (st == ZX_ERR_SHOULD_WAIT) {
            assert_int_equal(iob_ring_consumer_wait(&c, iob_ring_now() + 10000000000), ZX_OK);
            continue;
        }
        if (st == ZX_ERR_PEER_CLOSED) {
            break;
        }
        assert_int_equal(st, ZX_OK);
        const unsigned char* b = msg;
        uint64_t seq;
        uint64_t sum;
        memcpy(&seq, b, 8);
        memcpy(&sum, b + 8, 8);
        assert_int_equal(seq, got);
        assert_int_equal(len, 16 + (size_t)((got * 2654435761u) % 2900u));
        assert_int_equal(sum, checksum(b + 16, len - 16));
        iob_ring_release(&c);
        got++;
    }
    assert_int_equal(got, count);
    *stats = c.stats;
    iob_ring_consumer_fini(&c);
}

static void two_process(uint64_t data_size, uint64_t count, iob_ring_wait_mode_t wait,
                        uint32_t batch, int pause_every, iob_ring_stats_t* stats) {
    shared_pair_t s = shared_new(data_size);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        run_producer(&s, count, wait, batch, pause_every);
    }
    run_consumer(&s, count, wait, batch, stats);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    shared_free(&s);
}

static void test_two_process_spin(void** state) {
    (void)state;
    iob_ring_stats_t st;
    two_process(1u << 16, 200000, IOB_RING_WAIT_SPIN, 8, 0, &st);
}

static void test_two_process_block(void** state) {
    (void)state;
    iob_ring_stats_t st;
    two_process(1u << 14, 200000, IOB_RING_WAIT_BLOCK, 4, 0, &st);
}

/*
 * Lost wake-up stress: the producer goes idle every few messages, so the consumer keeps
 * falling asleep on the futex right as data arrives. A lost wake-up shows as a 10 s wait
 * timing out (the test fails, it does not hang); ctest's TIMEOUT bounds the rest.
 */
static void test_blocking_no_lost_wakeup(void** state) {
    (void)state;
    iob_ring_stats_t st;
    zx_time_t t0 = iob_ring_now();
    two_process(1u << 13, 20000, IOB_RING_WAIT_BLOCK, 1, 3, &st);
    zx_time_t t1 = iob_ring_now();
    assert_true(st.futex_waits > 0);
    assert_true(t1 - t0 < 60 * (zx_time_t)1000000000);
}

/* A producer blocked on a full ring is woken by the consumer draining it. */
static void test_blocking_producer_wakeup(void** state) {
    (void)state;
    iob_ring_stats_t st;
    /* Small ring, large messages: the producer sleeps for space all the time. */
    two_process(8192, 20000, IOB_RING_WAIT_BLOCK, 1, 0, &st);
}

/* Spins (no sleep: the point is to look busy) until `until`. */
static void busy_until(zx_time_t until) {
    while (iob_ring_now() < until) {
    }
}

/*
 * A producer sends a message every `period_ns` and a blocking consumer works `work_ns` on
 * each one; returns the consumer's stats.
 */
static iob_ring_stats_t paced_pair(int64_t period_ns, int64_t work_ns, uint64_t count) {
    shared_pair_t s = shared_new(1u << 16);
    iob_ring_options_t o = {.batch = 1, .wait = IOB_RING_WAIT_BLOCK};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        iob_ring_producer_t p;
        if (iob_ring_producer_init(&p, s.ctrl, 4096, s.data, s.data_size, &o) != ZX_OK) {
            _exit(10);
        }
        zx_time_t due = iob_ring_now();
        for (uint64_t i = 0; i < count; i++) {
            due += period_ns;
            busy_until(due);
            if (iob_ring_write(&p, &i, sizeof(i)) != ZX_OK) {
                _exit(11);
            }
            iob_ring_producer_flush(&p);
        }
        iob_ring_producer_close(&p);
        _exit(0);
    }
    iob_ring_consumer_t c;
    zx_status_t st;
    while ((st = iob_ring_consumer_init(&c, s.ctrl, 4096, s.data, s.data_size, &o)) ==
           ZX_ERR_SHOULD_WAIT) {
    }
    assert_int_equal(st, ZX_OK);
    uint64_t got = 0;
    for (;;) {
        uint64_t seq;
        size_t len;
        st = iob_ring_read(&c, &seq, sizeof(seq), &len);
        if (st == ZX_ERR_SHOULD_WAIT) {
            assert_int_equal(iob_ring_consumer_wait(&c, iob_ring_now() + 10000000000), ZX_OK);
            continue;
        }
        if (st == ZX_ERR_PEER_CLOSED) {
            break;
        }
        assert_int_equal(st, ZX_OK);
        assert_int_equal(seq, got);
        got++;
        busy_until(iob_ring_now() + work_ns);
    }
    assert_int_equal(got, count);
    iob_ring_stats_t stats = c.stats;
    iob_ring_consumer_fini(&c);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    shared_free(&s);
    return stats;
}

/*
 * Full load where the consumer is a little faster than the producer: every wait is about
 * 100 us, longer than any fixed spin budget a sparse stream could afford, but short beside
 * the 300 us of work before it. Blocking mode must spin through such waits rather than
 * sleep at each one (a sleeping side costs the other a wake-up syscall per message and
 * wakes late on a VM). A preempted producer may cost a sleep or two.
 */
static void test_blocking_dense_stream_spins(void** state) {
    (void)state;
    iob_ring_stats_t st = paced_pair(400000, 300000, 200);
    assert_true(st.futex_waits < 200 / 4);
}

/* A sparse stream (1 ms gaps, no work): blocking mode sleeps through nearly every gap. */
static void test_blocking_sparse_stream_sleeps(void** state) {
    (void)state;
    iob_ring_stats_t st = paced_pair(1000000, 0, 100);
    assert_true(st.futex_waits > 100 / 2);
}

/*
 * `test_ring waits` runs only the tests that judge blocking mode by time (how a waiter
 * spends its waits); ctest runs them alone (RUN_SERIAL), since another test's processes on
 * the same two CPUs change every wait they time.
 */
int main(int argc, char** argv) {
    const struct CMUnitTest timed[] = {
        cmocka_unit_test(test_blocking_dense_stream_spins),
        cmocka_unit_test(test_blocking_sparse_stream_sleeps),
    };
    if (argc > 1 && strcmp(argv[1], "waits") == 0) {
        return cmocka_run_group_tests_name("ring waits", timed, NULL, NULL);
    }
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
        cmocka_unit_test(test_hostile_write_index_beyond_capacity),
        cmocka_unit_test(test_hostile_write_index_huge),
        cmocka_unit_test(test_hostile_write_index_backwards),
        cmocka_unit_test(test_hostile_write_index_misaligned),
        cmocka_unit_test(test_hostile_length_beyond_published),
        cmocka_unit_test(test_hostile_length_huge),
        cmocka_unit_test(test_hostile_length_straddles_end),
        cmocka_unit_test(test_hostile_bad_padding),
        cmocka_unit_test(test_hostile_padding_beyond_published),
        cmocka_unit_test(test_hostile_unknown_record_type),
        cmocka_unit_test(test_hostile_header_rewritten_under_cached_index),
        cmocka_unit_test(test_hostile_consumer),
        cmocka_unit_test(test_hostile_random_garbage),
        cmocka_unit_test(test_two_process_spin),
        cmocka_unit_test(test_two_process_block),
        cmocka_unit_test(test_blocking_no_lost_wakeup),
        cmocka_unit_test(test_blocking_producer_wakeup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
