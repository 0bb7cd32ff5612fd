/* SPDX-License-Identifier: MIT */
/* The core's id -> pointer map (server/core/idmap.c): inserts, lookups and deletions
 * against a plain array model, with enough churn to exercise backward-shift deletion. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "server/core/iob_core_internal.h"

enum { N = 5000 };

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_basic(void** state) {
    (void)state;
    iob__idmap_t map;
    iob__idmap_init(&map);
    int a = 1, b = 2;
    assert_null(iob__idmap_get(&map, 5));
    assert_null(iob__idmap_remove(&map, 5));
    assert_int_equal(iob__idmap_put(&map, 5, &a), ZX_OK);
    assert_int_equal(iob__idmap_put(&map, 7, &b), ZX_OK);
    assert_ptr_equal(iob__idmap_get(&map, 5), &a);
    assert_ptr_equal(iob__idmap_get(&map, 7), &b);
    assert_null(iob__idmap_get(&map, 0));
    assert_ptr_equal(iob__idmap_remove(&map, 5), &a);
    assert_null(iob__idmap_get(&map, 5));
    assert_ptr_equal(iob__idmap_get(&map, 7), &b);
    assert_int_equal(map.count, 1);
    iob__idmap_fini(&map);
}

static void test_churn_against_model(void** state) {
    (void)state;
    static uint64_t keys[N];
    static int present[N];
    iob__idmap_t map;
    iob__idmap_init(&map);
    for (int i = 0; i < N; i++) {
        /* Small keys collide in the low bits; a few large ones too. */
        keys[i] = (i % 3 == 0) ? (rnd() | 1) : (uint64_t)(i + 1) * 4096;
    }
    size_t count = 0;
    for (int round = 0; round < 200000; round++) {
        int i = (int)(rnd() % N);
        if (present[i]) {
            assert_ptr_equal(iob__idmap_remove(&map, keys[i]), &keys[i]);
            present[i] = 0;
            count--;
        } else {
            assert_int_equal(iob__idmap_put(&map, keys[i], &keys[i]), ZX_OK);
            present[i] = 1;
            count++;
        }
        if (round % 5000 == 0) {
            for (int k = 0; k < N; k++) {
                assert_ptr_equal(iob__idmap_get(&map, keys[k]), present[k] ? &keys[k] : NULL);
            }
        }
    }
    assert_int_equal(map.count, count);
    for (int k = 0; k < N; k++) {
        assert_ptr_equal(iob__idmap_get(&map, keys[k]), present[k] ? &keys[k] : NULL);
    }
    iob__idmap_fini(&map);
}

static void test_reserve_makes_puts_infallible(void** state) {
    (void)state;
    iob__idmap_t map;
    iob__idmap_init(&map);
    assert_int_equal(iob__idmap_reserve(&map, 100), ZX_OK);
    size_t capacity = map.capacity;
    assert_true(capacity >= 200);
    static int v[100];
    for (uint64_t i = 1; i <= 100; i++) {
        assert_int_equal(iob__idmap_put(&map, i, &v[i - 1]), ZX_OK);
    }
    assert_int_equal(map.capacity, capacity);
    iob__idmap_fini(&map);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_churn_against_model),
        cmocka_unit_test(test_reserve_makes_puts_infallible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
