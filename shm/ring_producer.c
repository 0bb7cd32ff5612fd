/* SPDX-License-Identifier: MIT */
/* The ring's producer: reservations, commits and publication of write_index, waits for space. */
#include <string.h>

#include "shm/ring_internal.h"

#define RING_NO_RESERVATION IOB__RING_NO_RESERVATION

/* The producer's fast-path bound (ring.h): 0 once broken. */
static void ring_producer_bound(iob_ring_producer_t* p) {
    p->fast_end = p->broken != ZX_OK
                      ? 0
                      : iob__ring_min(p->limit, iob__ring_lap_end(p->write_pos, p->mask));
}

zx_status_t iob_ring_producer_init(iob_ring_producer_t* p, void* ctrl_mem, uint64_t ctrl_size,
                                   void* data, uint64_t data_size,
                                   const iob_ring_options_t* options) {
    if (p == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_ring_ctrl_t* ctrl = ctrl_mem;
    uint64_t cap = 0;
    zx_status_t status = iob__ring_check_header(ctrl, ctrl_size, data, data_size, &cap);
    if (status != ZX_OK) {
        return status;
    }
    uint64_t w = atomic_load_explicit(&ctrl->write_index, memory_order_acquire);
    uint64_t r = atomic_load_explicit(&ctrl->read_index, memory_order_acquire);
    if ((w % IOB_RING_ALIGN) != 0 || r > w || w - r > cap) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    memset(p, 0, sizeof(*p));
    p->ctrl = ctrl;
    p->data = data;
    p->capacity = cap;
    p->mask = cap - 1;
    p->max_payload = iob_ring_max_payload(cap);
    p->write_pos = w;
    p->published = w;
    p->cached_read = r;
    p->limit = r + cap;
    p->publish_bytes = iob__ring_publish_bytes(cap);
    p->publish_at = w + p->publish_bytes;
    p->reserved = RING_NO_RESERVATION;
    p->batch = iob__ring_batch(options);
    p->batch_left = p->batch;
    iob__ring_waiter_init(&p->waiter);
    p->wait = iob__ring_wait_mode(options);
    p->broken = ZX_OK;
    ring_producer_bound(p);
    return ZX_OK;
}

/* Publishes write_index (see iob__ring_publish_index for the ordering). */
void iob__ring_producer_publish(iob_ring_producer_t* p) {
    p->batch_left = p->batch;
    if (p->write_pos == p->published) {
        return;
    }
    p->published = p->write_pos;
    p->publish_at = p->published + p->publish_bytes;
    iob__ring_publish_index(&p->ctrl->write_index, p->write_pos, &p->ctrl->consumer_sleeping,
                            &p->ctrl->data_futex, &p->stats);
}

void iob_ring_producer_flush(iob_ring_producer_t* p) {
    iob__ring_producer_publish(p);
}

/*
 * Takes a read index the consumer published. It can only move forward and never past what
 * this producer published; anything else is a consumer that lies, and the ring is broken
 * for good.
 */
static zx_status_t ring_producer_accept(iob_ring_producer_t* p, uint64_t r) {
    if (p->broken != ZX_OK) {
        return p->broken;
    }
    if (r < p->cached_read || r > p->published || (r % IOB_RING_ALIGN) != 0) {
        p->broken = ZX_ERR_IO_DATA_INTEGRITY;
        p->limit = 0;
        p->fast_end = 0; /* keeps every later call off the fast path */
        return p->broken;
    }
    p->cached_read = r;
    p->limit = r + p->capacity;
    ring_producer_bound(p);
    return ZX_OK;
}

/* Re-reads the consumer's index (see ring_producer_accept). */
static zx_status_t ring_producer_refresh(iob_ring_producer_t* p) {
    return ring_producer_accept(
        p, atomic_load_explicit(&p->ctrl->read_index, memory_order_acquire));
}

/* Bytes needed for a payload of len at the current position, padding included. */
static inline uint64_t ring_producer_need(const iob_ring_producer_t* p, uint64_t len,
                                          uint64_t* pad) {
    uint64_t rec = IOB_RING_RECORD_HEADER + iob__ring_round(len);
    uint64_t tail = p->capacity - (p->write_pos & p->mask);
    *pad = (rec > tail) ? tail : 0;
    return *pad + rec;
}

zx_status_t iob__ring_reserve_slow(iob_ring_producer_t* p, size_t len, void** out) {
    if (p->broken != ZX_OK) {
        return p->broken;
    }
    if (len > p->max_payload) {
        return ZX_ERR_OUT_OF_RANGE;
    }
    uint64_t pad;
    uint64_t need = ring_producer_need(p, len, &pad);
    if (p->write_pos + need - p->cached_read > p->capacity) {
        /* Let the consumer see everything before concluding the ring is full. */
        iob__ring_producer_publish(p);
        zx_status_t status = ring_producer_refresh(p);
        if (status != ZX_OK) {
            return status;
        }
        if (p->write_pos + need - p->cached_read > p->capacity) {
            if (atomic_load_explicit(&p->ctrl->consumer_closed, memory_order_acquire) != 0) {
                return ZX_ERR_PEER_CLOSED;
            }
            return ZX_ERR_SHOULD_WAIT;
        }
    }
    uint64_t off = p->write_pos & p->mask;
    if (pad != 0) {
        uint64_t header = ((uint64_t)IOB_RING_REC_PAD << 32) | (pad - IOB_RING_RECORD_HEADER);
        memcpy(p->data + off, &header, sizeof(header));
        p->write_pos += pad;
        off = 0;
    }
    p->reserved = (uint64_t)len + 1;
    p->reserved_at = p->data + off;
    *out = p->data + off + IOB_RING_RECORD_HEADER;
    ring_producer_bound(p);
    return ZX_OK;
}

/* The inline commit found no open reservation, or a length beyond it. */
zx_status_t iob__ring_commit_slow(iob_ring_producer_t* p, size_t len) {
    if (p->reserved == RING_NO_RESERVATION) {
        return ZX_ERR_BAD_STATE;
    }
    if (len >= p->reserved) { /* reserved is the reserved length + 1 */
        return ZX_ERR_OUT_OF_RANGE;
    }
    return iob_ring_commit(p, len);
}

zx_status_t iob__ring_write_slow(iob_ring_producer_t* p, const void* buf, size_t len) {
    void* dst;
    zx_status_t status = iob__ring_reserve_slow(p, len, &dst);
    if (status != ZX_OK) {
        return status;
    }
    memcpy(dst, buf, len);
    return iob_ring_commit(p, len);
}

/*
 * Whether reserve has something new to say. A moved read index is validated and taken
 * right here (a lie breaks the ring, which reserve then reports), so that the reserve
 * after the wait runs on the fast path.
 */
static bool ring_producer_ready(iob_ring_producer_t* p, uint64_t need) {
    uint64_t r = atomic_load_explicit(&p->ctrl->read_index, memory_order_acquire);
    if (r != p->cached_read) {
        (void)ring_producer_accept(p, r);
        return true;
    }
    return p->write_pos + need - p->cached_read <= p->capacity ||
           atomic_load_explicit(&p->ctrl->consumer_closed, memory_order_acquire) != 0;
}

/* What the producer waits for: room for `need` bytes. */
typedef struct ring_space {
    iob_ring_producer_t* p;
    uint64_t need;
} ring_space_t;

static bool ring_space_ready(void* ctx) {
    ring_space_t* s = ctx;
    return ring_producer_ready(s->p, s->need);
}

zx_status_t iob_ring_producer_wait(iob_ring_producer_t* p, size_t len, zx_time_t deadline) {
    if (p->broken != ZX_OK) {
        return p->broken;
    }
    if (len > p->max_payload) {
        return ZX_ERR_OUT_OF_RANGE;
    }
    iob__ring_producer_publish(p);
    uint64_t pad;
    uint64_t need = ring_producer_need(p, len, &pad);
    ring_space_t space = {p, need};
    iob__ring_wait_t w = {ring_space_ready, ring_space_ready, &space, &p->ctrl->space_futex,
                          &p->ctrl->producer_sleeping, &p->stats};
    return iob__ring_wait(&w, p->wait, &p->waiter, deadline);
}

void iob_ring_producer_close(iob_ring_producer_t* p) {
    if (p->ctrl == NULL) {
        return;
    }
    iob__ring_producer_publish(p);
    atomic_store_explicit(&p->ctrl->producer_closed, 1, memory_order_release);
    iob__ring_wake(&p->ctrl->data_futex, &p->stats);
}

void iob_ring_producer_fini(iob_ring_producer_t* p) {
    if (p->ctrl != NULL && p->broken == ZX_OK) {
        iob__ring_producer_publish(p);
    }
    p->ctrl = NULL;
    p->data = NULL;
}
