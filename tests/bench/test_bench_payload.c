/* SPDX-License-Identifier: MIT */
/* iob-bench's message checks (bench/bench_payload.h) under both verification policies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "bench/bench_payload.h"

static const size_t k_sizes[] = {8, 16, 24, 64, 72, 256, 264, 4096};

/* A copy-mode message: the prepared body, stamped with seq. */
static unsigned char* stamped(size_t n, uint64_t seq) {
    unsigned char* m = malloc(n);
    assert_non_null(m);
    uint64_t s, x;
    bench_payload_prepare(m, n, &s, &x);
    bench_payload_stamp(m, n, seq, s, x);
    return m;
}

static bool check(size_t n, bool sampled, const void* m, uint64_t expect, uint64_t* word) {
    bench_verifier_t v;
    assert_true(bench_verifier_init(&v, n, sampled));
    return bench_payload_check(&v, m, n, expect, word);
}

/* Both modes' producers make messages that both policies accept, with the right sequence. */
static void test_good_messages_pass(void** state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_sizes / sizeof k_sizes[0]; i++) {
        size_t n = k_sizes[i];
        for (uint64_t seq = 255; seq <= 257; seq++) {
            unsigned char* m = stamped(n, seq);
            unsigned char* z = malloc(n);
            assert_non_null(z);
            bench_payload_generate(z, n, seq);
            assert_memory_equal(m, z, n); /* one message format for copy and zero-copy */
            for (int sampled = 0; sampled < 2; sampled++) {
                uint64_t w = 0;
                assert_true(check(n, sampled, m, seq, &w));
                assert_int_equal(w, seq);
            }
            free(z);
            free(m);
        }
    }
}

/* The last 8 bytes are checked on every message, under both policies. */
static void test_last_word_checked_always(void** state) {
    (void)state;
    for (size_t i = 1; i < sizeof k_sizes / sizeof k_sizes[0]; i++) {
        size_t n = k_sizes[i];
        unsigned char* m = stamped(n, 1000);
        m[n - 3] ^= 0x10;
        uint64_t w;
        assert_false(check(n, true, m, 1000, &w));
        assert_false(check(n, false, m, 1000, &w));
        free(m);
    }
}

/* A message of another sequence (stale, reordered) carries a checksum that does not fit. */
static void test_stale_message_caught(void** state) {
    (void)state;
    for (size_t i = 1; i < sizeof k_sizes / sizeof k_sizes[0]; i++) {
        size_t n = k_sizes[i];
        unsigned char* m = stamped(n, 7);
        unsigned char* old = stamped(n, 6);
        memcpy(m, old, 8); /* torn: word 0 of message 6, the rest of message 7 */
        uint64_t w;
        assert_false(check(n, true, m, 7, &w));
        free(old);
        free(m);
    }
}

/* The body is checked on every message in full, on every 256th in sampled. */
static void test_body_checked_by_policy(void** state) {
    (void)state;
    size_t n = 4096;
    for (uint64_t seq = 255; seq <= 257; seq++) {
        unsigned char* m = stamped(n, seq);
        m[n / 2] ^= 1;
        uint64_t w;
        assert_false(check(n, false, m, seq, &w));
        assert_int_equal(check(n, true, m, seq, &w), seq % BENCH_VERIFY_FULL_EVERY != 0);
        free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_messages_pass),
        cmocka_unit_test(test_last_word_checked_always),
        cmocka_unit_test(test_stale_message_caught),
        cmocka_unit_test(test_body_checked_by_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
