/* SPDX-License-Identifier: MIT */
/*
 * The records the mediated-ring tests write and check: record `seq` has a length and
 * bytes derived from seq alone, so the reader can verify every byte without being told.
 */
#ifndef IOB_TESTS_INTEGRATION_MEDIATED_RECORDS_H_
#define IOB_TESTS_INTEGRATION_MEDIATED_RECORDS_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MEDIATED_RECORD_MAX 1031u

/* Lengths 8 .. 1031, not multiples of 8 most of the time (padding gets exercised). */
static inline size_t mediated_record_len(uint64_t seq) {
    return 8u + (size_t)((seq * 2654435761u) % (MEDIATED_RECORD_MAX - 7u));
}

/* The first 8 bytes are seq itself; the rest a pattern of seq and the offset. */
static inline size_t mediated_record_fill(uint64_t seq, uint8_t* out) {
    size_t len = mediated_record_len(seq);
    memcpy(out, &seq, sizeof seq);
    for (size_t i = sizeof seq; i < len; i++) {
        out[i] = (uint8_t)(seq * 31u + i * 7u);
    }
    return len;
}

#endif /* IOB_TESTS_INTEGRATION_MEDIATED_RECORDS_H_ */
