/* SPDX-License-Identifier: MIT */
/*
 * The payload loops for large messages, multiversioned: the loader picks the AVX2 clone on
 * CPUs that have it, the baseline x86-64 (SSE2) one elsewhere. Every transport and the
 * memcpy baseline use these same functions, so the choice never favours one of them.
 */
#include "bench/bench_payload.h"

#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define BENCH_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define BENCH_MULTIVERSION
#endif

BENCH_MULTIVERSION
void bench_words_sum_wide(const void* p, size_t words, uint64_t* sum, uint64_t* x) {
    const unsigned char* b = p;
    uint64_t s = 0;
    uint64_t y = 0;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, b + i * 8, 8);
        s += w;
        y ^= w;
    }
    *sum = s;
    *x = y;
}

/* Words 1 .. words-2 of the body, then the checksum word; word 0 is already written. */
BENCH_MULTIVERSION
void bench_payload_generate_wide(void* dst, size_t words, uint64_t seq_word) {
    unsigned char* b = dst;
    uint64_t s = seq_word;
    uint64_t y = seq_word;
    uint64_t v = 0;
    for (size_t i = 1; i + 1 < words; i++) {
        v += BENCH_BODY_STEP;
        memcpy(b + i * 8, &v, 8);
        s += v;
        y ^= v;
    }
    uint64_t c = bench_mix(s, y);
    memcpy(b + (words - 1) * 8, &c, 8);
}

/* Words [0, words) copied from src to dst, with the sum and xor of the words copied. */
BENCH_MULTIVERSION
void bench_words_copy_sum_wide(void* restrict dst, const void* restrict src, size_t words,
                               uint64_t* sum, uint64_t* x) {
    unsigned char* d = dst;
    const unsigned char* b = src;
    uint64_t s = 0;
    uint64_t y = 0;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, b + i * 8, 8);
        memcpy(d + i * 8, &w, 8);
        s += w;
        y ^= w;
    }
    *sum = s;
    *x = y;
}

bool bench_verifier_init(bench_verifier_t* v, size_t n, bool sampled) {
    v->sampled = sampled;
    v->body_sum = 0;
    v->body_xor = 0;
    unsigned char* scratch = malloc(n);
    if (scratch == NULL) {
        return false;
    }
    bench_payload_prepare(scratch, n, &v->body_sum, &v->body_xor);
    free(scratch);
    return true;
}
