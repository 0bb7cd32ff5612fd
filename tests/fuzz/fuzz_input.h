/* SPDX-License-Identifier: MIT */
/*
 * The fuzz targets' input reader: a fuzzer's bytes taken as a stream of little-endian
 * integers and byte strings. Reading past the end yields zeros, so every input, however
 * short, is a complete (if dull) program for the target, and the fuzzer never has to learn
 * a length field before it reaches the interesting code.
 */
#ifndef IOB_TESTS_FUZZ_FUZZ_INPUT_H_
#define IOB_TESTS_FUZZ_FUZZ_INPUT_H_

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz_in {
    const uint8_t* data;
    size_t size;
    size_t pos;
} fz_in_t;

static inline bool fz_more(const fz_in_t* in) {
    return in->pos < in->size;
}

static inline uint64_t fz_uint(fz_in_t* in, unsigned bytes) {
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        uint64_t b = in->pos < in->size ? in->data[in->pos++] : 0;
        v |= b << (8 * i);
    }
    return v;
}

static inline uint8_t fz_u8(fz_in_t* in) {
    return (uint8_t)fz_uint(in, 1);
}
static inline uint16_t fz_u16(fz_in_t* in) {
    return (uint16_t)fz_uint(in, 2);
}
static inline uint32_t fz_u32(fz_in_t* in) {
    return (uint32_t)fz_uint(in, 4);
}
static inline uint64_t fz_u64(fz_in_t* in) {
    return fz_uint(in, 8);
}

/*
 * Overwrites the (up to) 8 bytes at `off` of a region of `size` bytes with a word from the
 * input, clipped at the region's end: a hostile peer's store anywhere in memory it may write.
 */
static inline void fz_poke(fz_in_t* in, uint8_t* base, uint64_t size, uint64_t off) {
    uint64_t v = fz_u64(in);
    size_t n = size - off < sizeof v ? (size_t)(size - off) : sizeof v;
    memcpy(base + off, &v, n);
}

/*
 * A hostile writer's change to a shared 64-bit word: one half nudged by a small amount
 * (the plausible lies: an index a little off) or the whole word replaced.
 */
static inline void fz_tamper_word(fz_in_t* in, _Atomic uint64_t* word) {
    uint8_t mode = fz_u8(in);
    uint64_t v = fz_u64(in);
    uint64_t cur = atomic_load(word);
    if (mode % 3u == 0) {
        v = cur + (uint64_t)(int64_t)(int16_t)v;
    } else if (mode % 3u == 1) {
        v = cur + ((uint64_t)(int64_t)(int16_t)v << 32);
    }
    atomic_store(word, v);
}

/* Up to len bytes of the input, in place (fewer at the end): *got says how many. */
static inline const uint8_t* fz_bytes(fz_in_t* in, size_t len, size_t* got) {
    size_t left = in->size - in->pos;
    size_t n = len < left ? len : left;
    const uint8_t* at = in->data + in->pos;
    in->pos += n;
    *got = n;
    return at;
}

/* A property the target checks failed: libFuzzer records the input as a crash. */
#define FZ_CHECK(cond)                                                                   \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif /* IOB_TESTS_FUZZ_FUZZ_INPUT_H_ */
