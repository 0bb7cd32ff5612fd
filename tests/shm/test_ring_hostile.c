/* SPDX-License-Identifier: MIT */
/* Tests of shm/ring against a hostile peer: every lie in the indices and record headers. */
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

/* ---- hostile producer --------------------------------------------------------------- */

/*
 * One lie of a hostile producer: the consumer stands at `start` (a legitimate position),
 * finds this record header there (unless type and length are 0) and this write index.
 */
typedef struct header_lie {
    const char* what;
    uint64_t start;
    uint32_t type;
    uint32_t length;
    uint64_t write_index;
} header_lie_t;

#define NEAR_END (SMALL_DATA - 64)

static const header_lie_t k_lies[] = {
    {"write index beyond the capacity", 0, 0, 0, SMALL_DATA + 8},
    {"write index huge", 0, 0, 0, UINT64_MAX - 7},
    {"write index misaligned", 0, IOB_RING_REC_MSG, 4, 12},
    {"length beyond what is published (72 bytes, 16 published)", 0, IOB_RING_REC_MSG, 64, 16},
    {"length huge", 0, IOB_RING_REC_MSG, UINT32_MAX, SMALL_DATA},
    /* At 4032, 200 bytes would run 144 bytes past the end. */
    {"record straddles the end", NEAR_END, IOB_RING_REC_MSG, 200, NEAR_END + 512},
    /* A pad that does not reach exactly to the end misaligns what follows. */
    {"pad short of the end", NEAR_END, IOB_RING_REC_PAD, 20, NEAR_END + 128},
    {"pad beyond what is published", NEAR_END, IOB_RING_REC_PAD, 56, NEAR_END + 16},
    {"unknown record type", 0, 0xdeadbeefu, 8, 16},
};

static void test_hostile_headers(void** state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_lies / sizeof k_lies[0]; i++) {
        const header_lie_t* lie = &k_lies[i];
        print_message("%s\n", lie->what);
        fixture_t* f = fixture_new(SMALL_DATA, 1);
        iob_ring_ctrl_t* h = ctrl_of(f);
        if (lie->start != 0) {
            atomic_store(&h->write_index, lie->start);
            atomic_store(&h->read_index, lie->start);
            consumer_seek(f, lie->start);
        }
        if (lie->type != 0 || lie->length != 0) {
            put_header(f, lie->start, lie->type, lie->length);
        }
        atomic_store(&h->write_index, lie->write_index);
        expect_integrity(f);
        fixture_free(f);
    }
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_write_index_backwards),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_hostile_header_rewritten_under_cached_index),
        cmocka_unit_test(test_hostile_consumer),
        cmocka_unit_test(test_hostile_random_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
