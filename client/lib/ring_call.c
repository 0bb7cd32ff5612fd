/* SPDX-License-Identifier: MIT */
/*
 * The SPSC ring of shm/ring.h as out-of-line calls on opaque endpoints, for callers that
 * can neither inline the ring's fast paths nor know its endpoint structs' layout (Python's
 * cffi in ABI mode, other foreign-function interfaces). Each call here is the ring's own
 * code: the records, indices and futex words are the same, so an endpoint opened here
 * shares a ring with a C program that uses shm/ring.h directly. Every message publishes
 * (batch 1): a foreign caller's per-call cost dwarfs the ring's, and a producer that goes
 * idle never leaves a batch invisible.
 */
#include <stdlib.h>

#include <iob/iob.h>

#include "shm/ring.h"

static iob_ring_options_t iob__ring_call_options(uint32_t flags) {
    iob_ring_options_t o = {
        .batch = 1,
        .wait = (flags & IOB_RING_OPEN_BLOCK) != 0 ? IOB_RING_WAIT_BLOCK : IOB_RING_WAIT_SPIN,
    };
    return o;
}

zx_status_t iob_ring_producer_open(void* ctrl, uint64_t ctrl_size, void* data, uint64_t data_size,
                                   uint32_t flags, iob_ring_producer_t** out) {
    if (out == NULL || (flags & ~(IOB_RING_OPEN_FORMAT | IOB_RING_OPEN_BLOCK)) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    if ((flags & IOB_RING_OPEN_FORMAT) != 0) {
        zx_status_t st = iob_ring_format(ctrl, ctrl_size, data_size);
        if (st != ZX_OK) {
            return st;
        }
    }
    iob_ring_producer_t* p = malloc(sizeof(*p));
    if (p == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    iob_ring_options_t o = iob__ring_call_options(flags);
    zx_status_t st = iob_ring_producer_init(p, ctrl, ctrl_size, data, data_size, &o);
    if (st != ZX_OK) {
        free(p);
        return st;
    }
    *out = p;
    return ZX_OK;
}

zx_status_t iob_ring_consumer_open(void* ctrl, uint64_t ctrl_size, const void* data,
                                   uint64_t data_size, uint32_t flags, iob_ring_consumer_t** out) {
    if (out == NULL || (flags & ~IOB_RING_OPEN_BLOCK) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_ring_consumer_t* c = malloc(sizeof(*c));
    if (c == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    iob_ring_options_t o = iob__ring_call_options(flags);
    zx_status_t st = iob_ring_consumer_init(c, ctrl, ctrl_size, data, data_size, &o);
    if (st != ZX_OK) {
        free(c);
        return st;
    }
    *out = c;
    return ZX_OK;
}

zx_status_t iob_ring_send(iob_ring_producer_t* p, const void* buf, size_t len,
                          zx_time_t deadline) {
    if (p == NULL || (buf == NULL && len > 0)) {
        return ZX_ERR_INVALID_ARGS;
    }
    for (;;) {
        zx_status_t st = iob_ring_write(p, buf, len);
        if (st != ZX_ERR_SHOULD_WAIT) {
            return st;
        }
        st = iob_ring_producer_wait(p, len, deadline);
        if (st != ZX_OK) {
            return st;
        }
    }
}

zx_status_t iob_ring_receive(iob_ring_consumer_t* c, void* buf, size_t cap, size_t* len,
                             zx_time_t deadline) {
    if (c == NULL || len == NULL || (buf == NULL && cap > 0)) {
        return ZX_ERR_INVALID_ARGS;
    }
    for (;;) {
        zx_status_t st = iob_ring_read(c, buf, cap, len);
        if (st != ZX_ERR_SHOULD_WAIT) {
            return st;
        }
        st = iob_ring_consumer_wait(c, deadline);
        if (st != ZX_OK) {
            return st;
        }
    }
}

void iob_ring_producer_destroy(iob_ring_producer_t* p) {
    if (p != NULL) {
        iob_ring_producer_close(p);
        iob_ring_producer_fini(p);
        free(p);
    }
}

void iob_ring_consumer_destroy(iob_ring_consumer_t* c) {
    if (c != NULL) {
        iob_ring_consumer_close(c);
        iob_ring_consumer_fini(c);
        free(c);
    }
}
