/* SPDX-License-Identifier: MIT */
/* Tests client/lib/maptable.c: adding, overlap, partial unmaps splitting ranges, gaps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "client/lib/maptable.h"

#define PG 4096u

typedef struct {
    uint64_t ids[16];
    size_t n;
} ended_t;

static void on_ended(void* ctx, iob__mapping_t* m) {
    ended_t* e = ctx;
    assert_true(e->n < 16);
    e->ids[e->n++] = m->mapping_id;
    free(m);
}

static void test_add_and_overlap(void** state) {
    (void)state;
    iob__maptable_t t;
    iob__maptable_init(&t);
    assert_int_equal(iob__maptable_add(&t, 10 * PG, 4 * PG, 1, 7), ZX_OK);
    assert_int_equal(iob__maptable_add(&t, 2 * PG, 2 * PG, 2, 7), ZX_OK);
    assert_int_equal(iob__maptable_add(&t, 13 * PG, PG, 3, 7), ZX_ERR_ALREADY_EXISTS);
    assert_int_equal(iob__maptable_add(&t, 9 * PG, 2 * PG, 3, 7), ZX_ERR_ALREADY_EXISTS);
    assert_int_equal(iob__maptable_add(&t, 14 * PG, PG, 3, 7), ZX_OK);
    assert_int_equal(iob__maptable_add(&t, 0, 0, 4, 7), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob__maptable_add(&t, UINTPTR_MAX - PG + 2, PG, 4, 7), ZX_ERR_INVALID_ARGS);
    assert_true(iob__maptable_overlaps(&t, 3 * PG, 10 * PG));
    assert_false(iob__maptable_overlaps(&t, 4 * PG, 6 * PG));
    assert_false(iob__maptable_overlaps(&t, 15 * PG, PG));
    assert_int_equal(t.count, 3);
    assert_true(t.pieces[0].start < t.pieces[1].start && t.pieces[1].start < t.pieces[2].start);
    iob__maptable_fini(&t);
}

static void test_partial_unmap_splits(void** state) {
    (void)state;
    iob__maptable_t t;
    iob__maptable_init(&t);
    assert_int_equal(iob__maptable_add(&t, 0x100000, 8 * PG, 42, 1), ZX_OK);
    ended_t e = {0};
    uint64_t removed;
    /* A hole in the middle: two pieces, one record, nothing ended. */
    assert_int_equal(iob__maptable_reserve(&t, 1), ZX_OK);
    assert_int_equal(iob__maptable_remove(&t, 0x100000 + 2 * PG, 2 * PG, on_ended, &e, &removed),
                     ZX_OK);
    assert_int_equal(removed, 2 * PG);
    assert_int_equal(e.n, 0);
    assert_int_equal(t.count, 2);
    assert_ptr_equal(t.pieces[0].mapping, t.pieces[1].mapping);
    assert_int_equal(t.pieces[0].mapping->live_bytes, 6 * PG);
    /* Trim the head, then the tail piece, then what is left: ends once. */
    assert_int_equal(iob__maptable_remove(&t, 0x100000, PG, on_ended, &e, &removed), ZX_OK);
    assert_int_equal(iob__maptable_remove(&t, 0x100000 + 4 * PG, 4 * PG, on_ended, &e, &removed),
                     ZX_OK);
    assert_int_equal(e.n, 0);
    assert_int_equal(t.count, 1);
    assert_int_equal(iob__maptable_remove(&t, 0, 0x200000, on_ended, &e, &removed), ZX_OK);
    assert_int_equal(removed, PG);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.ids[0], 42);
    assert_int_equal(t.count, 0);
    iob__maptable_fini(&t);
}

static void test_remove_spanning_several(void** state) {
    (void)state;
    iob__maptable_t t;
    iob__maptable_init(&t);
    for (uint64_t i = 0; i < 5; i++) {
        assert_int_equal(iob__maptable_add(&t, (uintptr_t)(i * 4 * PG), 2 * PG, i + 1, 1), ZX_OK);
    }
    ended_t e = {0};
    uint64_t removed;
    /* From the middle of #1 to the middle of #3: #2 ends, #1 and #3 are trimmed. */
    assert_int_equal(iob__maptable_remove(&t, 5 * PG, 8 * PG, on_ended, &e, &removed), ZX_OK);
    assert_int_equal(removed, PG + 2 * PG + PG);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.ids[0], 3);
    assert_int_equal(t.count, 4);
    assert_int_equal(t.pieces[1].end, 5 * PG);
    assert_int_equal(t.pieces[2].start, 13 * PG);
    iob__maptable_fini(&t); /* frees the remaining records exactly once (ASan checks) */
}

static zx_status_t count_gap(void* ctx, uintptr_t gap, size_t len) {
    uint64_t* sums = ctx;
    sums[0]++;
    sums[1] += len;
    (void)gap;
    return ZX_OK;
}

static zx_status_t count_piece(void* ctx, uintptr_t at, size_t len) {
    return count_gap(ctx, at, len);
}

static void test_gaps_and_pieces(void** state) {
    (void)state;
    iob__maptable_t t;
    iob__maptable_init(&t);
    assert_int_equal(iob__maptable_add(&t, 2 * PG, 2 * PG, 1, 1), ZX_OK);
    assert_int_equal(iob__maptable_add(&t, 6 * PG, PG, 2, 1), ZX_OK);
    uint64_t sums[2] = {0, 0};
    assert_int_equal(iob__maptable_for_each_gap(&t, PG, 8 * PG, count_gap, sums), ZX_OK);
    assert_int_equal(sums[0], 3); /* [1,2) [4,6) [7,9) */
    assert_int_equal(sums[1], 5 * PG);
    sums[0] = sums[1] = 0;
    assert_int_equal(iob__maptable_for_each_piece(&t, 3 * PG, 8 * PG, count_piece, sums), ZX_OK);
    assert_int_equal(sums[0], 2);
    assert_int_equal(sums[1], 2 * PG);
    sums[0] = sums[1] = 0;
    assert_int_equal(iob__maptable_for_each_gap(&t, 2 * PG, 2 * PG, count_gap, sums), ZX_OK);
    assert_int_equal(sums[0], 0);
    iob__maptable_fini(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_overlap),
        cmocka_unit_test(test_partial_unmap_splits),
        cmocka_unit_test(test_remove_spanning_several),
        cmocka_unit_test(test_gaps_and_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
