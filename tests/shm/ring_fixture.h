/* SPDX-License-Identifier: MIT */
/*
 * The in-process ring of the shm ring tests: heap blocks of exactly the region sizes, so
 * AddressSanitizer flags any read past the end of the data region in the hostile cases;
 * message contents that tell their sequence number; and what a hostile producer writes.
 */
#ifndef IOB_TESTS_SHM_RING_FIXTURE_H_
#define IOB_TESTS_SHM_RING_FIXTURE_H_

#include <stddef.h>
#include <stdint.h>

#include "shm/ring.h"

#define SMALL_DATA 4096u

typedef struct fixture {
    void* ctrl;
    unsigned char* data;
    uint64_t data_size;
    iob_ring_producer_t p;
    iob_ring_consumer_t c;
} fixture_t;

/* A formatted ring of data_size bytes with both sides attached (spin mode, this batch). */
fixture_t* fixture_new(uint64_t data_size, uint32_t batch);
void fixture_free(fixture_t* f);
/*
 * Moves the consumer's local state to `start` as if it had consumed up to there (and seen
 * the write index there), keeping the fields derived from those consistent.
 */
void consumer_seek(fixture_t* f, uint64_t start);
iob_ring_ctrl_t* ctrl_of(fixture_t* f);
/* Message bytes that depend on the message's seed (sequence number), and their check. */
void fill(unsigned char* buf, size_t len, uint64_t seed);
void check(const unsigned char* buf, size_t len, uint64_t seed);
/* Writes a record header at pos of a SMALL_DATA ring, as a hostile producer may. */
void put_header(fixture_t* f, uint64_t pos, uint32_t type, uint32_t length);
/* The consumer finds the ring corrupt, and it stays so (peek, read, wait do not hang). */
void expect_integrity(fixture_t* f);

#endif /* IOB_TESTS_SHM_RING_FIXTURE_H_ */
