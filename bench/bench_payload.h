/* SPDX-License-Identifier: MIT */
/*
 * Message contents and their verification, identical for every transport.
 *
 * A message of n bytes (n a multiple of 8) is n/8 little-endian words: word 0 is the
 * sequence number (BENCH_SEQ_LAST set on the final message), the last word (when n >= 16)
 * is a checksum of all the words before it, and the words between are the body, the same
 * for every message of a size (word i is i * BENCH_BODY_STEP), so the checksum of message
 * k follows from k and the body's sum and xor.
 *
 * The consumer checks according to the run's verification policy (iob-bench --verify):
 *  full     the sequence of every message, and the checksum recomputed over every byte, so
 *           a lost, duplicated, reordered or torn message fails the run;
 *  sampled  the sequence and the first and last 8 bytes of every message (word 0, and the
 *           checksum word against the one that sequence must carry), and every
 *           BENCH_VERIFY_FULL_EVERY-th message in full. A consumer at memory speed then
 *           does what a real one does, copy the message out, instead of summing every byte.
 *
 * The checksum is a sum and a rotated xor of the words: cheap enough to run at memory
 * bandwidth (it vectorizes), which matters because it is on the measured path.
 */
#ifndef IOB_BENCH_BENCH_PAYLOAD_H_
#define IOB_BENCH_BENCH_PAYLOAD_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * The payload routines are forced inline: the ring loops instantiate them with a constant
 * message size, and only inlined does that constant fold their size dispatch away.
 */
#if defined(__GNUC__) || defined(__clang__)
#define BENCH_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define BENCH_ALWAYS_INLINE inline
#endif

#define BENCH_SEQ_LAST (UINT64_C(1) << 63)
#define BENCH_BODY_STEP UINT64_C(0x9e3779b97f4a7c15)

static BENCH_ALWAYS_INLINE uint64_t bench_rotl(uint64_t v, unsigned r) {
    return (v << r) | (v >> (64 - r));
}

static BENCH_ALWAYS_INLINE uint64_t bench_mix(uint64_t sum, uint64_t x) {
    return sum + bench_rotl(x, 17);
}

/*
 * Messages above this many words go to the out-of-line versions in bench_payload.c, which
 * are compiled for the widest vector unit the CPU has (AVX2 where present, chosen once at
 * load time); below it the inline loops cost less than the call.
 */
#define BENCH_WIDE_WORDS 32u

void bench_words_sum_wide(const void* p, size_t words, uint64_t* sum, uint64_t* x);
void bench_payload_generate_wide(void* dst, size_t words, uint64_t seq_word);
void bench_words_copy_sum_wide(void* restrict dst, const void* restrict src, size_t words,
                               uint64_t* sum, uint64_t* x);

/* Up to this many words the inline versions below are straight-line code, no loop. */
#define BENCH_SMALL_WORDS 8u

static BENCH_ALWAYS_INLINE uint64_t bench_load_word(const unsigned char* b, size_t i) {
    uint64_t w;
    memcpy(&w, b + i * 8, 8);
    return w;
}

/*
 * Sum and xor over words [0, n). Small messages are the per-message floor of every
 * transport, so up to BENCH_SMALL_WORDS words the loop is unrolled by a switch (one
 * well-predicted indirect jump: the size is fixed for a run) instead of paying a loop's
 * compare and branch per word; the result is the same sum and xor as the loop's.
 */
static BENCH_ALWAYS_INLINE void bench_words_sum(const void* p, size_t words, uint64_t* sum, uint64_t* x) {
    if (words > BENCH_WIDE_WORDS) {
        bench_words_sum_wide(p, words, sum, x);
        return;
    }
    const unsigned char* b = p;
    uint64_t s = 0;
    uint64_t y = 0;
    uint64_t w;
#define BENCH_SUM_WORD(i) \
    w = bench_load_word(b, (i)); \
    s += w; \
    y ^= w
    switch (words) {
    case 8:
        BENCH_SUM_WORD(7);
        /* fall through */
    case 7:
        BENCH_SUM_WORD(6);
        /* fall through */
    case 6:
        BENCH_SUM_WORD(5);
        /* fall through */
    case 5:
        BENCH_SUM_WORD(4);
        /* fall through */
    case 4:
        BENCH_SUM_WORD(3);
        /* fall through */
    case 3:
        BENCH_SUM_WORD(2);
        /* fall through */
    case 2:
        BENCH_SUM_WORD(1);
        /* fall through */
    case 1:
        BENCH_SUM_WORD(0);
        /* fall through */
    case 0:
        break;
    default:
        for (size_t i = 0; i < words; i++) {
            BENCH_SUM_WORD(i);
        }
        break;
    }
#undef BENCH_SUM_WORD
    *sum = s;
    *x = y;
}

/*
 * Zero-copy producer: writes every byte of the message in place (the body word by word, not
 * a prepared copy) and the checksum computed on the way.
 */
static BENCH_ALWAYS_INLINE void bench_payload_generate(void* dst, size_t n, uint64_t seq_word) {
    unsigned char* b = dst;
    memcpy(b, &seq_word, 8);
    size_t words = n / 8;
    if (words < 2) {
        return;
    }
    if (words > BENCH_WIDE_WORDS) {
        bench_payload_generate_wide(dst, words, seq_word);
        return;
    }
    uint64_t s = seq_word;
    uint64_t y = seq_word;
    if (words <= BENCH_SMALL_WORDS) {
        /* Body word i is i * BENCH_BODY_STEP: the loop's values, unrolled. */
        uint64_t v;
#define BENCH_GEN_WORD(i) \
    v = (uint64_t)(i) * BENCH_BODY_STEP; \
    memcpy(b + (i) * 8, &v, 8); \
    s += v; \
    y ^= v
        switch (words) {
        case 8:
            BENCH_GEN_WORD(6);
            /* fall through */
        case 7:
            BENCH_GEN_WORD(5);
            /* fall through */
        case 6:
            BENCH_GEN_WORD(4);
            /* fall through */
        case 5:
            BENCH_GEN_WORD(3);
            /* fall through */
        case 4:
            BENCH_GEN_WORD(2);
            /* fall through */
        case 3:
            BENCH_GEN_WORD(1);
            /* fall through */
        default:
            break;
        }
#undef BENCH_GEN_WORD
    } else {
        uint64_t v = 0;
        for (size_t i = 1; i + 1 < words; i++) {
            v += BENCH_BODY_STEP;
            memcpy(b + i * 8, &v, 8);
            s += v;
            y ^= v;
        }
    }
    uint64_t c = bench_mix(s, y);
    memcpy(b + (words - 1) * 8, &c, 8);
}

/*
 * Copy-mode producer: the body of its private buffer is fixed (prepared once by
 * bench_payload_prepare, which returns the body's sum and xor); per message only the
 * sequence and the checksum change, then the whole buffer is copied in.
 */
static BENCH_ALWAYS_INLINE void bench_payload_prepare(void* buf, size_t n, uint64_t* body_sum,
                                         uint64_t* body_xor) {
    bench_payload_generate(buf, n, 0);
    size_t words = n / 8;
    *body_sum = 0;
    *body_xor = 0;
    if (words > 2) {
        bench_words_sum((unsigned char*)buf + 8, words - 2, body_sum, body_xor);
    }
}

static BENCH_ALWAYS_INLINE void bench_payload_stamp(void* buf, size_t n, uint64_t seq_word, uint64_t body_sum,
                                       uint64_t body_xor) {
    unsigned char* b = buf;
    memcpy(b, &seq_word, 8);
    size_t words = n / 8;
    if (words >= 2) {
        uint64_t c = bench_mix(body_sum + seq_word, body_xor ^ seq_word);
        memcpy(b + (words - 1) * 8, &c, 8);
    }
}

/*
 * Consumer: reads every byte. Returns false on a checksum mismatch; *seq_word gets word 0.
 */
static BENCH_ALWAYS_INLINE bool bench_payload_verify(const void* src, size_t n, uint64_t* seq_word) {
    const unsigned char* b = src;
    memcpy(seq_word, b, 8);
    size_t words = n / 8;
    if (words < 2) {
        return true;
    }
    uint64_t s;
    uint64_t y;
    bench_words_sum(b, words - 1, &s, &y);
    uint64_t c;
    memcpy(&c, b + (words - 1) * 8, 8);
    return c == bench_mix(s, y);
}

/*
 * Sampled verification's per-message check: word 0 into *seq_word, and the last word against
 * the checksum a message with that sequence carries (the body's sum and xor come from
 * bench_payload_prepare). Reads 16 bytes whatever n is.
 */
static BENCH_ALWAYS_INLINE bool bench_payload_check_ends(const void* src, size_t n,
                                                         uint64_t body_sum, uint64_t body_xor,
                                                         uint64_t* seq_word) {
    const unsigned char* b = src;
    uint64_t w;
    memcpy(&w, b, 8);
    *seq_word = w;
    if (n < 16) {
        return true;
    }
    uint64_t c;
    memcpy(&c, b + n - 8, 8);
    return c == bench_mix(body_sum + w, body_xor ^ w);
}

/* Sampled verification checks every this many messages (sequence 0, 256, ...) in full. */
#define BENCH_VERIFY_FULL_EVERY 256u

/* What a consumer checks: the run's policy and what sampled checks compare with. */
typedef struct bench_verifier {
    bool sampled;
    uint64_t body_sum;
    uint64_t body_xor;
} bench_verifier_t;

/* For messages of n bytes; false when there is no memory for the scratch message. */
bool bench_verifier_init(bench_verifier_t* v, size_t n, bool sampled);

/*
 * Checks message number `expect` (n bytes at msg) by the policy: false when its content is
 * wrong. *seq_word gets word 0; the caller compares it with expect.
 */
static BENCH_ALWAYS_INLINE bool bench_payload_check(const bench_verifier_t* v, const void* msg,
                                                    size_t n, uint64_t expect,
                                                    uint64_t* seq_word) {
    if (v->sampled && (expect % BENCH_VERIFY_FULL_EVERY) != 0) {
        return bench_payload_check_ends(msg, n, v->body_sum, v->body_xor, seq_word);
    }
    return bench_payload_verify(msg, n, seq_word);
}

/*
 * Copy out and verify in one pass, for messages above BENCH_WIDE_WORDS words: copies the n
 * bytes at src to dst and checks the checksum over the very words it stored, so every byte
 * of the copy is verified while the source lines are read only once and the copy is never
 * read back (at 1 MiB the copy does not even fit in L2). Same result as copying and then
 * calling bench_payload_verify on dst. Smaller messages need no fusing: copy them, then
 * verify the copy (it is in L1).
 */
static BENCH_ALWAYS_INLINE bool bench_payload_copy_verify_wide(void* restrict dst, const void* restrict src,
                                                  size_t n, uint64_t* seq_word) {
    size_t words = n / 8;
    uint64_t s;
    uint64_t y;
    bench_words_copy_sum_wide(dst, src, words - 1, &s, &y);
    unsigned char* d = dst;
    uint64_t c;
    memcpy(&c, (const unsigned char*)src + (words - 1) * 8, 8);
    memcpy(d + (words - 1) * 8, &c, 8);
    memcpy(seq_word, d, 8);
    return c == bench_mix(s, y);
}

#endif /* IOB_BENCH_BENCH_PAYLOAD_H_ */
