/* SPDX-License-Identifier: MIT */
/* The shm ring tests' in-process ring (ring_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ring_fixture.h"

fixture_t* fixture_new(uint64_t data_size, uint32_t batch) {
    fixture_t* f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->ctrl = aligned_alloc(IOB_RING_LINE, IOB_RING_CTRL_SIZE);
    f->data = aligned_alloc(4096, data_size);
    assert_non_null(f->ctrl);
    assert_non_null(f->data);
    memset(f->ctrl, 0, IOB_RING_CTRL_SIZE);
    memset(f->data, 0, data_size);
    f->data_size = data_size;
    assert_int_equal(iob_ring_format(f->ctrl, IOB_RING_CTRL_SIZE, data_size), ZX_OK);
    iob_ring_options_t o = {.batch = batch, .wait = IOB_RING_WAIT_SPIN};
    assert_int_equal(
        iob_ring_producer_init(&f->p, f->ctrl, IOB_RING_CTRL_SIZE, f->data, data_size, &o),
        ZX_OK);
    assert_int_equal(
        iob_ring_consumer_init(&f->c, f->ctrl, IOB_RING_CTRL_SIZE, f->data, data_size, &o),
        ZX_OK);
    return f;
}

void fixture_free(fixture_t* f) {
    iob_ring_producer_fini(&f->p);
    iob_ring_consumer_fini(&f->c);
    free(f->ctrl);
    free(f->data);
    free(f);
}

void consumer_seek(fixture_t* f, uint64_t start) {
    f->c.read_pos = f->c.published = f->c.cached_write = start;
    f->c.fast_end = start;
    f->c.publish_at = start + f->c.publish_bytes;
}

iob_ring_ctrl_t* ctrl_of(fixture_t* f) {
    return (iob_ring_ctrl_t*)f->ctrl;
}

void fill(unsigned char* buf, size_t len, uint64_t seed) {
    for (size_t i = 0; i < len; i++) {
        buf[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
    }
}

void check(const unsigned char* buf, size_t len, uint64_t seed) {
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != (unsigned char)(seed * 131u + i * 7u + (i >> 8))) {
            fail_msg("byte %zu of message %llu differs", i, (unsigned long long)seed);
        }
    }
}

void put_header(fixture_t* f, uint64_t pos, uint32_t type, uint32_t length) {
    uint64_t header = ((uint64_t)type << 32) | length;
    memcpy(f->data + (pos & (SMALL_DATA - 1)), &header, sizeof(header));
}

void expect_integrity(fixture_t* f) {
    const void* msg;
    size_t len;
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_IO_DATA_INTEGRITY);
    /* Sticky: it stays broken and waiting does not hang. */
    assert_int_equal(iob_ring_peek(&f->c, &msg, &len), ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_ring_consumer_wait(&f->c, ZX_TIME_INFINITE), ZX_OK);
    unsigned char buf[16];
    assert_int_equal(iob_ring_read(&f->c, buf, sizeof(buf), &len), ZX_ERR_IO_DATA_INTEGRITY);
}
