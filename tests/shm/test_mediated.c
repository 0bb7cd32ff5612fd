/* SPDX-License-Identifier: MIT */
/* Tests of shm/mediated.c: the A.7 ring's writer and validated reader, and the A.8 ID
 * allocator, on heap blocks of exactly the region size (so AddressSanitizer flags any access
 * past the end) with small injected page sizes, plus hostile and random region contents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm/mediated.h"

/* A small page makes wrap-around cheap to reach; 64 keeps B a multiple of 8. */
#define PG UINT64_C(64)

typedef struct ring {
    uint8_t* base;
    uint64_t size;
    iob_mwrb_reader_t reader;
} ring_t;

static ring_t ring_new(uint64_t size, uint64_t page) {
    ring_t r;
    r.size = size;
    r.base = aligned_alloc(8, size); /* exactly size bytes: ASan sees any overrun */
    assert_non_null(r.base);
    memset(r.base, 0, size);
    assert_int_equal(iob_mwrb_reader_init(&r.reader, r.base, size, page), ZX_OK);
    return r;
}

static iob_mwrb_header_t* hdr(const ring_t* r) {
    return (iob_mwrb_header_t*)(void*)r->base;
}

static zx_status_t put(ring_t* r, uint64_t tag, const void* data, size_t len) {
    zx_iovec_t v = {.buffer = (void*)(uintptr_t)data, .capacity = len};
    return iob_mwrb_write(r->base, r->size, PG, tag, &v, 1);
}

/* ---- ring: geometry ---- */

static void test_ring_geometry(void** state) {
    (void)state;
    uint8_t* base = aligned_alloc(64, 4 * PG);
    assert_non_null(base);
    memset(base, 0, 4 * PG);
    iob_mwrb_reader_t rd;
    assert_int_equal(iob_mwrb_reader_init(NULL, base, 4 * PG, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_reader_init(&rd, NULL, 4 * PG, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_reader_init(&rd, base + 4, 2 * PG, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_reader_init(&rd, base, PG, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_reader_init(&rd, base, 4 * PG - 8, PG), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_reader_init(&rd, base, 4 * PG, 48), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_reader_init(&rd, base, 4 * PG, 8), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_reader_init(&rd, base, 4 * PG, 0), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_reader_init(&rd, base, 2 * PG, PG), ZX_OK);
    assert_int_equal(rd.data_size, PG);
    assert_int_equal(iob_mwrb_write(base, PG, PG, 0, NULL, 0), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_write(NULL, 2 * PG, PG, 0, NULL, 0), ZX_ERR_INVALID_ARGS);
    free(base);
}

/* ---- ring: the writer's checks, in order ---- */

static void test_ring_write_errors_in_order(void** state) {
    (void)state;
    ring_t r = ring_new(3 * PG, PG); /* B = 128 */
    char text[] = "payload";
    zx_iovec_t v = {text, sizeof text};
    zx_iovec_t nine[9];
    for (int i = 0; i < 9; i++) {
        nine[i] = v;
    }
    zx_iovec_t bad = {NULL, 3};
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, nine, 9), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, NULL, 9), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, NULL, 1), ZX_ERR_INVALID_ARGS);
    zx_iovec_t wrap_sum[2] = {{text, SIZE_MAX}, {text, 2}};
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, wrap_sum, 2), ZX_ERR_INVALID_ARGS);
    /* Larger than B (120 + 16 > 128), before the corrupt ring below is looked at. */
    hdr(&r)->tail = 8;
    zx_iovec_t big = {NULL, 120};
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, &big, 1), ZX_ERR_NO_SPACE);
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, &bad, 1), ZX_ERR_IO_DATA_INTEGRITY);
    hdr(&r)->tail = 0;
    hdr(&r)->head = 4;
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, &bad, 1), ZX_ERR_IO_DATA_INTEGRITY);
    hdr(&r)->head = UINT64_MAX - 15; /* + 24 passes UINT64_MAX */
    hdr(&r)->tail = UINT64_MAX - 15;
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, &bad, 1), ZX_ERR_IO_DATA_INTEGRITY);
    hdr(&r)->head = 120;
    hdr(&r)->tail = 0;
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, &bad, 1), ZX_ERR_NO_SPACE);
    hdr(&r)->head = 0;
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, &bad, 1), ZX_ERR_NOT_FOUND);
    assert_int_equal(hdr(&r)->head, 0);
    for (uint64_t i = PG; i < r.size; i++) {
        assert_int_equal(r.base[i], 0);
    }
    /* A record of exactly B bytes fits an empty ring. */
    static uint8_t filler[112];
    zx_iovec_t exact = {filler, sizeof filler};
    assert_int_equal(iob_mwrb_write(r.base, r.size, PG, 1, &exact, 1), ZX_OK);
    assert_int_equal(hdr(&r)->head, 128);
    free(r.base);
}

/* ---- ring: byte-wise wrap, both sides ---- */

static void test_ring_wrap_bytewise(void** state) {
    (void)state;
    ring_t r = ring_new(2 * PG, PG); /* B = 64: wraps often */
    uint8_t got[64];
    uint8_t msg[40];
    uint64_t tag = 0;
    iob_mwrb_cursor_t cursor = {0};
    /* Lengths that put record boundaries and payload splits everywhere around B. */
    for (unsigned round = 0; round < 500; round++) {
        size_t len = (round * 7) % 41;
        for (size_t i = 0; i < len; i++) {
            msg[i] = (uint8_t)(round + i);
        }
        tag = UINT64_C(0x1000) + round;
        /* Two vectors, split anywhere, make the same record. */
        size_t split = len / 3;
        zx_iovec_t v[2] = {{msg, split}, {msg + split, len - split}};
        if (round % 50 == 49) {
            /* A mapper moves both counters (the ring stays empty): the cursor is stale. */
            uint64_t moved = atomic_load(&hdr(&r)->head) + 8 * (round % 7 + 1);
            atomic_store(&hdr(&r)->head, moved);
            atomic_store(&hdr(&r)->tail, moved);
        }
        /*
         * With the appender's cursor (iobd's way: no division while head is the one it
         * stored), then alternating with appends that leave it behind.
         */
        bool with_cursor = round < 250 || round % 2 == 1;
        assert_int_equal(with_cursor ? iob_mwrb_write_at(r.base, r.size, PG, tag, v, 2, &cursor)
                                     : iob_mwrb_write(r.base, r.size, PG, tag, v, 2),
                         ZX_OK);
        iob_mwrb_record_t rec;
        assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_OK);
        assert_int_equal(rec.tag, tag);
        assert_int_equal(rec.length, len);
        assert_int_equal(rec.size, (16 + len + 7) & ~(size_t)7);
        assert_memory_equal(got, msg, len);
        /* Not consumed until advanced. */
        assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_OK);
        assert_int_equal(rec.tag, tag);
        assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
        iob_mwrb_record_t none;
        assert_int_equal(iob_mwrb_peek(&r.reader, &none, got, sizeof got), ZX_ERR_SHOULD_WAIT);
    }
    /* Free-running counters: far past B by now. */
    assert_true(hdr(&r)->head > 100 * (2 * PG - PG));
    free(r.base);
}

static void test_ring_full_then_drain(void** state) {
    (void)state;
    ring_t r = ring_new(3 * PG, PG); /* B = 128 */
    uint8_t payload[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    unsigned written = 0;
    while (put(&r, 9, payload, sizeof payload) == ZX_OK) {
        written++;
    }
    assert_int_equal(written, 128 / 24); /* 5 records of 24 bytes, 8 bytes left */
    assert_int_equal(put(&r, 9, payload, sizeof payload), ZX_ERR_NO_SPACE);
    /* An 8-byte-short record still fits? No: the smallest record is 16 bytes. */
    assert_int_equal(put(&r, 9, NULL, 0), ZX_ERR_NO_SPACE);
    iob_mwrb_record_t rec;
    uint8_t got[8];
    /* Too small a buffer: described, not copied, and skippable. */
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, 4), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(rec.length, 8);
    assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
    assert_int_equal(put(&r, 9, payload, sizeof payload), ZX_OK);
    unsigned read = 0;
    while (iob_mwrb_peek(&r.reader, &rec, got, sizeof got) == ZX_OK) {
        assert_memory_equal(got, payload, sizeof payload);
        assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
        read++;
    }
    assert_int_equal(read, written);
    free(r.base);
}

/* What a drain handed over, and the header's tail as each record was handed over. */
typedef struct drained {
    const ring_t* r;
    unsigned n;
    unsigned stop_after; /* 0: never stop */
    uint64_t tail_seen[8];
    uint64_t tag[8];
    uint8_t first[8];
} drained_t;

static bool drained_visit(void* ctx, const iob_mwrb_record_t* rec, const void* payload) {
    drained_t* d = ctx;
    assert_true(d->n < 8);
    d->tail_seen[d->n] = atomic_load(&hdr(d->r)->tail);
    d->tag[d->n] = rec->tag;
    d->first[d->n] = rec->length > 0 ? *(const uint8_t*)payload : 0;
    d->n++;
    return d->stop_after == 0 || d->n < d->stop_after;
}

/*
 * A drain reads every record present, stores tail once after the last, and stops where a
 * record does not fit the buffer (leaving it for a peek with more room), where visit
 * says stop, and at corruption, consuming exactly the records handed over.
 */
static void test_ring_drain(void** state) {
    (void)state;
    ring_t r = ring_new(3 * PG, PG); /* B = 128 */
    uint8_t buf[16];
    drained_t d = {.r = &r};
    size_t count = 99;
    assert_int_equal(iob_mwrb_drain(&r.reader, buf, sizeof buf, drained_visit, &d, &count),
                     ZX_ERR_SHOULD_WAIT);
    assert_int_equal(count, 0);
    uint8_t p1[8] = {1}, p2[8] = {2}, p3[12] = {3};
    assert_int_equal(put(&r, 11, p1, sizeof p1), ZX_OK);
    assert_int_equal(put(&r, 12, p2, sizeof p2), ZX_OK);
    assert_int_equal(put(&r, 13, p3, sizeof p3), ZX_OK);
    uint64_t start = atomic_load(&hdr(&r)->tail);
    /* A buffer of 8 bytes takes the first two; the third (12 bytes) stays, unconsumed. */
    assert_int_equal(iob_mwrb_drain(&r.reader, buf, 8, drained_visit, &d, &count),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(count, 2);
    assert_int_equal(d.n, 2);
    assert_true(d.tag[0] == 11 && d.tag[1] == 12 && d.first[0] == 1 && d.first[1] == 2);
    assert_true(d.tail_seen[0] == start && d.tail_seen[1] == start); /* one store, at the end */
    assert_int_equal(atomic_load(&hdr(&r)->tail), start + 48);
    iob_mwrb_record_t rec;
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, buf, sizeof buf), ZX_OK);
    assert_true(rec.tag == 13 && rec.length == 12);
    /* visit says stop after the first: the rest stays. */
    assert_int_equal(put(&r, 14, p1, sizeof p1), ZX_OK);
    d = (drained_t){.r = &r, .stop_after = 1};
    assert_int_equal(iob_mwrb_drain(&r.reader, buf, sizeof buf, drained_visit, &d, &count),
                     ZX_OK);
    assert_int_equal(count, 1);
    assert_true(d.tag[0] == 13 && d.first[0] == 3);
    d = (drained_t){.r = &r};
    assert_int_equal(iob_mwrb_drain(&r.reader, buf, sizeof buf, drained_visit, &d, &count),
                     ZX_OK);
    assert_true(count == 1 && d.tag[0] == 14);
    assert_int_equal(atomic_load(&hdr(&r)->tail), atomic_load(&hdr(&r)->head));
    /* A record whose length runs past head: the good one before it is consumed, then stop. */
    assert_int_equal(put(&r, 15, p2, sizeof p2), ZX_OK);
    assert_int_equal(put(&r, 16, p2, sizeof p2), ZX_OK);
    uint64_t second = atomic_load(&hdr(&r)->head) - 24;
    uint64_t huge = 4000;
    memcpy(r.base + PG + (second + 8) % (3 * PG - PG), &huge, sizeof huge);
    d = (drained_t){.r = &r};
    assert_int_equal(iob_mwrb_drain(&r.reader, buf, sizeof buf, drained_visit, &d, &count),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_true(count == 1 && d.tag[0] == 15);
    assert_int_equal(atomic_load(&hdr(&r)->tail), second);
    /* Counters that make no sense: nothing is handed over or stored. */
    atomic_store(&hdr(&r)->tail, atomic_load(&hdr(&r)->head) + 8);
    d = (drained_t){.r = &r};
    assert_int_equal(iob_mwrb_drain(&r.reader, buf, sizeof buf, drained_visit, &d, &count),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(count, 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(iob_mwrb_drain(NULL, buf, sizeof buf, drained_visit, &d, NULL),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_drain(&r.reader, buf, sizeof buf, NULL, &d, NULL),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_drain(&r.reader, NULL, 4, drained_visit, &d, NULL),
                     ZX_ERR_INVALID_ARGS);
    free(r.base);
}

/* ---- ring: the reader against a hostile header ---- */

static void test_ring_reader_rejects_nonsense(void** state) {
    (void)state;
    ring_t r = ring_new(3 * PG, PG); /* B = 128 */
    iob_mwrb_record_t rec;
    uint8_t got[64];
    struct {
        uint64_t head, tail;
    } bad[] = {
        {8, 16},                      /* tail > head */
        {136, 0},                     /* more than B outstanding */
        {12, 0},                      /* head not a multiple of 8 */
        {20, 4},                      /* tail not a multiple of 8 */
        {8, 0},                       /* less than a record header */
        {UINT64_MAX - 7, UINT64_MAX}, /* tail > head near the top */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hdr(&r)->head = bad[i].head;
        hdr(&r)->tail = bad[i].tail;
        assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_ERR_IO_DATA_INTEGRITY);
    }
    /* A record header claiming more than was published, or more than the maximum. */
    iob_mwrb_record_header_t rh = {.tag = 1, .length = 17};
    memcpy(r.base + PG, &rh, sizeof rh);
    hdr(&r)->head = 32;
    hdr(&r)->tail = 0;
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_ERR_IO_DATA_INTEGRITY);
    rh.length = 16;
    memcpy(r.base + PG, &rh, sizeof rh);
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_OK);
    rh.length = UINT64_MAX - 8; /* would wrap the size computation */
    memcpy(r.base + PG, &rh, sizeof rh);
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_ERR_IO_DATA_INTEGRITY);
    rh.length = IOB_MWRB_MAX_PAYLOAD + 1;
    memcpy(r.base + PG, &rh, sizeof rh);
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_ERR_IO_DATA_INTEGRITY);
    /* advance accepts only what peek could have produced. */
    iob_mwrb_record_t fake = {.position = 0, .size = 12};
    assert_int_equal(iob_mwrb_advance(&r.reader, &fake), ZX_ERR_INVALID_ARGS);
    fake.size = 136;
    assert_int_equal(iob_mwrb_advance(&r.reader, &fake), ZX_ERR_INVALID_ARGS);
    fake = (iob_mwrb_record_t){.position = UINT64_MAX - 7, .size = 16};
    assert_int_equal(iob_mwrb_advance(&r.reader, &fake), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_peek(NULL, &rec, got, 1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_peek(&r.reader, NULL, got, 1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, NULL, 1), ZX_ERR_INVALID_ARGS);
    free(r.base);
}

/* xorshift64*: reproducible randomness for the fuzz cases. */
static uint64_t rnd(uint64_t* s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* Values near the edges that the checks compare against, mixed with noise. */
static uint64_t edgy(uint64_t* s, uint64_t data_size) {
    uint64_t pick[] = {0,
                       8,
                       16,
                       24,
                       data_size - 8,
                       data_size,
                       data_size + 8,
                       UINT64_MAX,
                       UINT64_MAX - 7,
                       IOB_MWRB_MAX_PAYLOAD,
                       IOB_MWRB_MAX_PAYLOAD + 1};
    uint64_t x = rnd(s);
    switch (x % 4) {
        case 0:
            return pick[(x >> 8) % (sizeof pick / sizeof pick[0])];
        case 1:
            return (x >> 8) % (2 * data_size);
        case 2:
            return ((x >> 8) % (2 * data_size)) & ~UINT64_C(7);
        default:
            return rnd(s);
    }
}

/*
 * Random headers and record bytes: the reader must answer with a status and never read
 * outside the block (AddressSanitizer), never loop forever (each round takes at most a
 * bounded number of peeks, as advance always moves tail forward by at least 16).
 */
static void test_ring_reader_fuzz(void** state) {
    (void)state;
    uint64_t seed = UINT64_C(0x9E3779B97F4A7C15);
    uint64_t pages[] = {16, 64, 4096};
    uint8_t got[IOB_MWRB_MAX_PAYLOAD];
    unsigned ok = 0, integrity = 0, wait = 0, small = 0;
    for (unsigned round = 0; round < 3000; round++) {
        uint64_t page = pages[round % 3];
        uint64_t size = page * (2 + rnd(&seed) % 3);
        ring_t r = ring_new(size, page);
        uint64_t data_size = size - page;
        for (uint64_t i = page; i < size; i++) {
            r.base[i] = (uint8_t)rnd(&seed);
        }
        /* Sprinkle plausible record headers among the noise. */
        for (int k = 0; k < 4; k++) {
            uint64_t at = page + ((rnd(&seed) % data_size) & ~UINT64_C(7));
            uint64_t len = edgy(&seed, data_size) % (data_size + 24);
            if (at + 16 <= size) {
                memcpy(r.base + at + 8, &len, 8);
            }
        }
        hdr(&r)->tail = edgy(&seed, data_size);
        hdr(&r)->head =
            rnd(&seed) % 2 ? hdr(&r)->tail + edgy(&seed, data_size) : edgy(&seed, data_size);
        for (int steps = 0; steps < 64; steps++) {
            iob_mwrb_record_t rec;
            size_t room = rnd(&seed) % 2 ? sizeof got : (size_t)(rnd(&seed) % 64);
            zx_status_t st = iob_mwrb_peek(&r.reader, &rec, got, room);
            if (st == ZX_OK || st == ZX_ERR_BUFFER_TOO_SMALL) {
                st == ZX_OK ? ok++ : small++;
                assert_true(rec.size >= 16 && rec.size <= data_size);
                assert_true(rec.length <= IOB_MWRB_MAX_PAYLOAD);
                assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
                continue;
            }
            st == ZX_ERR_SHOULD_WAIT ? wait++ : integrity++;
            assert_true(st == ZX_ERR_SHOULD_WAIT || st == ZX_ERR_IO_DATA_INTEGRITY);
            break;
        }
        /* The writer on the same garbage: a status, no stray write. */
        uint8_t small_msg[5] = {1, 2, 3, 4, 5};
        zx_status_t st = put(&r, 3, small_msg, sizeof small_msg);
        assert_true(st == ZX_OK || st == ZX_ERR_NO_SPACE || st == ZX_ERR_IO_DATA_INTEGRITY ||
                    st == ZX_ERR_INVALID_ARGS);
        free(r.base);
    }
    /* The generator reached every outcome. */
    assert_true(ok > 0);
    assert_true(integrity > 0);
    assert_true(wait > 0);
    assert_true(small > 0);
}

/* ---- ID allocator ---- */

static uint8_t* ida_new(uint64_t size) {
    uint8_t* base = aligned_alloc(8, (size + 7) & ~(uint64_t)7);
    assert_non_null(base);
    memset(base, 0, size);
    assert_int_equal(iob_idalloc_init(base, size), ZX_OK);
    return base;
}

static void test_idalloc_layout_and_sequence(void** state) {
    (void)state;
    const uint64_t size = 256;
    uint8_t* base = ida_new(size);
    iob_idalloc_header_t h;
    memcpy(&h, base, sizeof h);
    assert_int_equal(h.next_id, 0);
    assert_int_equal(h.blob_head, size);
    uint32_t id = 99;
    assert_int_equal(iob_idalloc_allocate(base, size, "abc", 3, &id), ZX_OK);
    assert_int_equal(id, 0);
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, 0, &id), ZX_OK);
    assert_int_equal(id, 1);
    assert_int_equal(iob_idalloc_allocate(base, size, "hello", 5, &id), ZX_OK);
    assert_int_equal(id, 2);
    /* Byte layout: header, index words {size, offset}, blobs packed down from the end. */
    memcpy(&h, base, sizeof h);
    assert_int_equal(h.next_id, 3);
    assert_int_equal(h.blob_head, size - 8);
    iob_idalloc_index_t ix[3];
    memcpy(ix, base + 8, sizeof ix);
    assert_int_equal(ix[0].size, 3);
    assert_int_equal(ix[0].offset, size - 3);
    assert_int_equal(ix[1].size, 0);
    assert_int_equal(ix[1].offset, size - 3);
    assert_int_equal(ix[2].size, 5);
    assert_int_equal(ix[2].offset, size - 8);
    assert_memory_equal(base + size - 8, "helloabc", 8);
    const void* p = NULL;
    uint32_t n = 0;
    assert_int_equal(iob_idalloc_lookup(base, size, 2, &p, &n), ZX_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(p, "hello", 5);
    assert_int_equal(iob_idalloc_lookup(base, size, 3, &p, &n), ZX_ERR_NOT_FOUND);
    uint32_t next = 0;
    assert_int_equal(iob_idalloc_next_id(base, size, &next), ZX_OK);
    assert_int_equal(next, 3);
    free(base);
}

static void test_idalloc_errors(void** state) {
    (void)state;
    const uint64_t size = 64;
    uint8_t* base = ida_new(size);
    uint32_t id = 0;
    iob_idalloc_header_t* h = (iob_idalloc_header_t*)(void*)base;
    assert_int_equal(iob_idalloc_init(base, 4), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_idalloc_init(base + 4, 32), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_idalloc_allocate(NULL, size, NULL, 0, &id), ZX_ERR_INVALID_ARGS);
    /* Corrupt headers: next_id whose index passes blob_head (also by overflow), blob_head
     * past the end. */
    h->next_id = UINT32_MAX;
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, 0, &id), ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_idalloc_next_id(base, size, &id), ZX_ERR_IO_DATA_INTEGRITY);
    h->next_id = 7; /* index end 64 > blob_head 56 */
    h->blob_head = 56;
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, 0, &id), ZX_ERR_IO_DATA_INTEGRITY);
    h->next_id = 0;
    h->blob_head = 65;
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, 0, &id), ZX_ERR_IO_DATA_INTEGRITY);
    const void* p;
    uint32_t n;
    assert_int_equal(iob_idalloc_lookup(base, size, 0, &p, &n), ZX_ERR_IO_DATA_INTEGRITY);
    h->blob_head = 64;
    /* Full: 64 - 8 = 56 bytes, an ID needs 8 plus its blob. */
    static uint8_t blob[48];
    assert_int_equal(iob_idalloc_allocate(base, size, blob, 49, &id), ZX_ERR_NO_MEMORY);
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, UINT64_MAX, &id), ZX_ERR_NO_MEMORY);
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, 1, &id), ZX_ERR_INVALID_ARGS);
    uint64_t* slot0 = (uint64_t*)(void*)(base + 8);
    *slot0 = 5;
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, 0, NULL), ZX_ERR_IO_DATA_INTEGRITY);
    *slot0 = 0;
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, 0, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(h->next_id, 0); /* nothing consumed */
    assert_int_equal(iob_idalloc_allocate(base, size, blob, 48, &id), ZX_OK);
    assert_int_equal(iob_idalloc_allocate(base, size, NULL, 0, &id), ZX_ERR_NO_MEMORY);
    free(base);
}

static void test_idalloc_reader_states(void** state) {
    (void)state;
    const uint64_t size = 128;
    uint8_t* base = ida_new(size);
    iob_idalloc_header_t* h = (iob_idalloc_header_t*)(void*)base;
    uint32_t id = 0;
    assert_int_equal(iob_idalloc_allocate(base, size, "xyz", 3, &id), ZX_OK);
    /* Claimed but not committed yet (another allocator mid-way): wait. */
    h->next_id = 2;
    h->blob_head -= 4;
    const void* p;
    uint32_t n;
    assert_int_equal(iob_idalloc_lookup(base, size, 1, &p, &n), ZX_ERR_SHOULD_WAIT);
    /* Index words pointing outside [blob_head, end): corruption. */
    iob_idalloc_index_t bad[] = {
        {4, 8}, {4, (uint32_t)size - 3}, {0, (uint32_t)size + 1}, {UINT32_MAX, (uint32_t)size - 4}};
    for (size_t i = 0; i < 4; i++) {
        memcpy(base + 16, &bad[i], sizeof bad[i]);
        assert_int_equal(iob_idalloc_lookup(base, size, 1, &p, &n), ZX_ERR_IO_DATA_INTEGRITY);
    }
    iob_idalloc_index_t good = {0, (uint32_t)size};
    memcpy(base + 16, &good, sizeof good);
    assert_int_equal(iob_idalloc_lookup(base, size, 1, &p, &n), ZX_OK);
    assert_int_equal(n, 0);
    /* The next allocation finds its own slot and goes on from the header. */
    assert_int_equal(iob_idalloc_allocate(base, size, "q", 1, &id), ZX_OK);
    assert_int_equal(id, 2);
    free(base);
}

static void test_idalloc_length_cap(void** state) {
    (void)state;
    assert_int_equal(iob_idalloc_length(4096), 4096);
    assert_int_equal(iob_idalloc_length(UINT32_MAX), UINT32_MAX);
    assert_int_equal(iob_idalloc_length(UINT64_C(1) << 32), UINT32_MAX);
    assert_int_equal(iob_idalloc_length(UINT64_C(1) << 40), UINT32_MAX);
}

/* Random header and index words: lookups and allocations answer, never stray. */
static void test_idalloc_fuzz(void** state) {
    (void)state;
    uint64_t seed = 12345;
    const uint64_t size = 256;
    for (unsigned round = 0; round < 5000; round++) {
        uint8_t* base = ida_new(size);
        for (int k = 0; k < 6; k++) {
            uint64_t word = rnd(&seed);
            if (rnd(&seed) % 2) {
                word = (word & UINT64_C(0x1FF000000FF)) % (UINT64_C(300) << 32);
            }
            memcpy(base + 8 * (rnd(&seed) % (size / 8)), &word, 8);
        }
        for (uint32_t id = 0; id < 40; id++) {
            const void* p;
            uint32_t n;
            zx_status_t st = iob_idalloc_lookup(base, size, id, &p, &n);
            if (st == ZX_OK) {
                const uint8_t* b = p;
                assert_true(b >= base && b + n <= base + size);
            }
        }
        uint32_t id;
        uint8_t blob[40] = {0};
        uint64_t blob_size = rnd(&seed) % 41;
        /* The check answers what the allocation then does, and writes nothing. */
        uint8_t before[256];
        memcpy(before, base, size);
        zx_status_t checked = iob_idalloc_check(base, size, blob_size, false);
        assert_memory_equal(before, base, size);
        zx_status_t st = iob_idalloc_allocate(base, size, blob, blob_size, &id);
        assert_true(st == ZX_OK || st == ZX_ERR_NO_MEMORY || st == ZX_ERR_IO_DATA_INTEGRITY);
        assert_int_equal(st, checked);
        assert_int_equal(iob_idalloc_check(base, size, 0, true),
                         iob_idalloc_allocate(base, size, NULL, 0, NULL));
        free(base);
    }
}

/* Allocators racing through the atomics get distinct, dense IDs and intact blobs. */
typedef struct race {
    uint8_t* base;
    uint64_t size;
    uint8_t fill;
} race_t;

static void* racer(void* arg) {
    race_t* r = arg;
    uint8_t blob[7];
    memset(blob, r->fill, sizeof blob);
    uint32_t id;
    while (iob_idalloc_allocate(r->base, r->size, blob, sizeof blob, &id) == ZX_OK) {
    }
    return NULL;
}

static void test_idalloc_concurrent(void** state) {
    (void)state;
    const uint64_t size = 64 * 1024;
    uint8_t* base = ida_new(size);
    race_t a = {base, size, 0xA1}, b = {base, size, 0xB2};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, racer, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, racer, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    uint32_t next = 0;
    assert_int_equal(iob_idalloc_next_id(base, size, &next), ZX_OK);
    assert_int_equal(next, (size - 8) / 15);
    for (uint32_t id = 0; id < next; id++) {
        const void* p;
        uint32_t n;
        assert_int_equal(iob_idalloc_lookup(base, size, id, &p, &n), ZX_OK);
        assert_int_equal(n, 7);
        const uint8_t* bytes = p;
        for (int i = 1; i < 7; i++) {
            assert_int_equal(bytes[i], bytes[0]);
        }
        assert_true(bytes[0] == 0xA1 || bytes[0] == 0xB2);
    }
    free(base);
}

/* ---- ID allocator: a writer of the mapping that keeps rewriting the header ---- */

/* A hang is the failure these tests look for: the watchdog turns it into one, quickly. */
static void watchdog_fired(int sig) {
    (void)sig;
    static const char msg[] = "watchdog: iob_idalloc_allocate did not return\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

static void watchdog_arm(unsigned seconds) {
    assert_true(signal(SIGALRM, watchdog_fired) != SIG_ERR);
    alarm(seconds);
}

static void watchdog_disarm(void) {
    alarm(0);
    signal(SIGALRM, SIG_DFL);
}

typedef struct rewriter {
    _Atomic uint64_t* header;
    uint64_t values[2];
    atomic_bool stop;
} rewriter_t;

static void* rewrite_header(void* arg) {
    rewriter_t* w = arg;
    for (uint64_t i = 0; !atomic_load_explicit(&w->stop, memory_order_relaxed); i++) {
        atomic_store_explicit(w->header, w->values[i & 1], memory_order_relaxed);
    }
    return NULL;
}

/*
 * Another thread stores two valid headers in turn as fast as it can while allocations run:
 * every call returns (the watchdog fails a hang) with OK or IO_DATA_INTEGRITY.
 */
static void test_idalloc_header_rewriter_thread(void** state) {
    (void)state;
    const uint64_t size = 64 * 1024;
    uint8_t* base = ida_new(size);
    _Atomic uint64_t* slot0 = (_Atomic uint64_t*)(void*)(base + IOB_IDALLOC_HEADER_SIZE);
    rewriter_t w = {.header = (_Atomic uint64_t*)(void*)base,
                    .values = {size << 32, (size - 64) << 32}}; /* next_id 0, two blob heads */
    atomic_init(&w.stop, false);
    watchdog_arm(20);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, rewrite_header, &w), 0);
    unsigned ok = 0, integrity = 0;
    for (int i = 0; i < 20000; i++) {
        /* ID 0's slot free again, so each call gets as far as the exchange. */
        atomic_store_explicit(slot0, 0, memory_order_relaxed);
        uint32_t id = UINT32_MAX;
        zx_status_t st = iob_idalloc_allocate(base, size, NULL, 0, &id);
        if (st == ZX_OK) {
            /* The writer's headers all say next_id 0. Undo the claim, in case the writer
             * does not run for a while: the region must not fill up (NO_MEMORY). */
            assert_int_equal(id, 0);
            atomic_store_explicit(w.header, w.values[0], memory_order_relaxed);
            ok++;
        } else {
            assert_int_equal(st, ZX_ERR_IO_DATA_INTEGRITY);
            assert_int_equal(id, UINT32_MAX);
            integrity++;
        }
    }
    atomic_store(&w.stop, true);
    pthread_join(t, NULL);
    watchdog_disarm();
    printf("# %u OK, %u IO_DATA_INTEGRITY\n", ok, integrity);
    free(base);
}

/*
 * The worst such writer, made deterministic: the header changes between every load and
 * every exchange. The slot an allocation checks lies on a PROT_NONE page, so the check
 * faults, and the handler stores the other valid header (whose slot is on the other page,
 * which it closes) before letting the load go on. Every exchange then fails; the allocator
 * must give up with IO_DATA_INTEGRITY after its documented 4096 attempts, consuming no ID,
 * instead of looping for as long as the writer keeps at it.
 */
typedef struct flipper {
    uint8_t* base;
    uint64_t page;
    uint64_t values[2]; /* values[i]'s free slot lies on page 1 + i */
    uint64_t faults;
} flipper_t;

static flipper_t g_flip;

static void flip_on_fault(int sig, siginfo_t* info, void* uctx) {
    (void)uctx;
    uintptr_t addr = (uintptr_t)info->si_addr;
    uintptr_t first = (uintptr_t)g_flip.base + g_flip.page;
    if (addr < first || addr >= first + 2 * g_flip.page) {
        signal(sig, SIG_DFL); /* not ours: fault again and crash */
        return;
    }
    uint64_t hit = (addr - first) / g_flip.page; /* 0: page 1, 1: page 2 */
    mprotect(g_flip.base + (1 + hit) * g_flip.page, g_flip.page, PROT_READ | PROT_WRITE);
    mprotect(g_flip.base + (2 - hit) * g_flip.page, g_flip.page, PROT_NONE);
    atomic_store_explicit((_Atomic uint64_t*)(void*)g_flip.base, g_flip.values[1 - hit],
                          memory_order_relaxed);
    g_flip.faults++;
}

static void test_idalloc_header_changes_every_exchange(void** state) {
    (void)state;
    long pg = sysconf(_SC_PAGESIZE);
    assert_true(pg >= 64);
    uint64_t page = (uint64_t)pg, size = 3 * page;
    void* m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    g_flip.base = m;
    g_flip.page = page;
    g_flip.faults = 0;
    /* next_id page/8 puts its slot (8 + 8 * next_id) at the start of page 1, 2*page/8 on
     * page 2; both below blob_head = the region's end, so both headers are valid. */
    g_flip.values[0] = (page / 8) | (size << 32);
    g_flip.values[1] = (2 * page / 8) | (size << 32);
    atomic_store((_Atomic uint64_t*)m, g_flip.values[0]);
    assert_int_equal(mprotect(g_flip.base + page, page, PROT_NONE), 0);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = flip_on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGSEGV, &sa, &old), 0);
    watchdog_arm(10);
    uint32_t id = UINT32_MAX;
    zx_status_t st = iob_idalloc_allocate(m, size, "x", 1, &id);
    watchdog_disarm();
    assert_int_equal(sigaction(SIGSEGV, &old, NULL), 0);
    assert_int_equal(mprotect(m, size, PROT_READ | PROT_WRITE), 0);
    assert_int_equal(st, ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(id, UINT32_MAX);
    /* Each attempt loaded a header, checked its slot (one fault) and lost the exchange. */
    assert_int_equal(g_flip.faults, 4096);
    /* Nothing was claimed: the header is the writer's, both slots and the blob untouched. */
    uint64_t header = atomic_load((_Atomic uint64_t*)m);
    assert_true(header == g_flip.values[0] || header == g_flip.values[1]);
    for (uint64_t off = IOB_IDALLOC_HEADER_SIZE; off < size; off++) {
        assert_int_equal(((const uint8_t*)m)[off], 0);
    }
    /* With the writer gone, the same region allocates. */
    assert_int_equal(iob_idalloc_allocate(m, size, "x", 1, &id), ZX_OK);
    assert_int_equal(id, (uint32_t)((header & UINT32_MAX)));
    munmap(m, size);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_geometry),
        cmocka_unit_test(test_ring_write_errors_in_order),
        cmocka_unit_test(test_ring_wrap_bytewise),
        cmocka_unit_test(test_ring_full_then_drain),
        cmocka_unit_test(test_ring_drain),
        cmocka_unit_test(test_ring_reader_rejects_nonsense),
        cmocka_unit_test(test_ring_reader_fuzz),
        cmocka_unit_test(test_idalloc_layout_and_sequence),
        cmocka_unit_test(test_idalloc_errors),
        cmocka_unit_test(test_idalloc_reader_states),
        cmocka_unit_test(test_idalloc_length_cap),
        cmocka_unit_test(test_idalloc_fuzz),
        cmocka_unit_test(test_idalloc_concurrent),
        cmocka_unit_test(test_idalloc_header_rewriter_thread),
        cmocka_unit_test(test_idalloc_header_changes_every_exchange),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
