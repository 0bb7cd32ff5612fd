/* SPDX-License-Identifier: MIT */
/* The ring's consumer: validated reads of what the producer published, releases, waits for data. */
#include <string.h>

#include "shm/ring_internal.h"

/* How far a batching consumer that ran dry lets the producer get ahead, and for how long at
 * most it waits for that (ring_consumer_lag). */
#define RING_LAG_BYTES UINT64_C(4096)
#define RING_LAG_NS INT64_C(2000)

static inline void ring_prefetch(const void* at) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(at, 0, 3);
#else
    (void)at;
#endif
}

zx_status_t iob_ring_consumer_init(iob_ring_consumer_t* c, void* ctrl_mem, uint64_t ctrl_size,
                                   const void* data, uint64_t data_size,
                                   const iob_ring_options_t* options) {
    if (c == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_ring_ctrl_t* ctrl = ctrl_mem;
    uint64_t cap = 0;
    zx_status_t status = iob__ring_check_header(ctrl, ctrl_size, data, data_size, &cap);
    if (status != ZX_OK) {
        return status;
    }
    uint64_t r = atomic_load_explicit(&ctrl->read_index, memory_order_acquire);
    if ((r % IOB_RING_ALIGN) != 0) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    memset(c, 0, sizeof(*c));
    c->ctrl = ctrl;
    c->data = data;
    c->capacity = cap;
    c->mask = cap - 1;
    c->max_payload = iob_ring_max_payload(cap);
    c->read_pos = r;
    c->published = r;
    c->cached_write = r;
    c->fast_end = r; /* nothing to read yet: the first peek refreshes */
    c->publish_bytes = iob__ring_publish_bytes(cap);
    c->publish_at = r + c->publish_bytes;
    c->batch = iob__ring_batch(options);
    c->batch_left = c->batch;
    iob__ring_waiter_init(&c->waiter);
    c->wait = iob__ring_wait_mode(options);
    c->broken = ZX_OK;
    return ZX_OK;
}

/* Publishes read_index (see iob__ring_publish_index for the ordering). */
void iob__ring_consumer_publish(iob_ring_consumer_t* c) {
    c->batch_left = c->batch;
    if (c->read_pos == c->published) {
        return;
    }
    c->published = c->read_pos;
    c->publish_at = c->published + c->publish_bytes;
    iob__ring_publish_index(&c->ctrl->read_index, c->read_pos, &c->ctrl->producer_sleeping,
                            &c->ctrl->space_futex, &c->stats);
}

void iob_ring_consumer_flush(iob_ring_consumer_t* c) {
    iob__ring_consumer_publish(c);
}

static zx_status_t ring_consumer_fail(iob_ring_consumer_t* c) {
    c->broken = ZX_ERR_IO_DATA_INTEGRITY;
    c->pending = 0;
    c->cached_write = c->read_pos;
    c->fast_end = 0; /* keeps every later call off the fast path */
    return c->broken;
}

/*
 * Takes a write index the producer published, after checking it: never backwards,
 * 8-aligned, never more than the capacity ahead of what this consumer has released. After
 * this, every byte in [read_pos, cached_write) is inside the data region once masked.
 */
static zx_status_t ring_consumer_accept(iob_ring_consumer_t* c, uint64_t w) {
    if (c->broken != ZX_OK) {
        return c->broken;
    }
    if (w < c->cached_write || (w % IOB_RING_ALIGN) != 0 || w - c->read_pos > c->capacity) {
        return ring_consumer_fail(c);
    }
    c->cached_write = w;
    c->fast_end = iob__ring_min(w, iob__ring_lap_end(c->read_pos, c->mask));
    return ZX_OK;
}

/* Re-reads the producer's index (see ring_consumer_accept). */
static zx_status_t ring_consumer_refresh(iob_ring_consumer_t* c) {
    return ring_consumer_accept(
        c, atomic_load_explicit(&c->ctrl->write_index, memory_order_acquire));
}

/*
 * Reads a record header exactly once. The volatile access keeps the compiler from
 * re-loading the field after it has been validated: the producer may rewrite it at any
 * moment, and only the local copy is checked and used.
 */
static inline uint64_t ring_read_header_once(const unsigned char* at) {
    return *(const volatile uint64_t*)(const void*)at;
}

zx_status_t iob__ring_peek_slow(iob_ring_consumer_t* c, const void** out, size_t* len) {
    if (c->broken != ZX_OK) {
        return c->broken;
    }
    for (;;) {
        if (c->read_pos == c->cached_write) {
            zx_status_t status = ring_consumer_refresh(c);
            if (status != ZX_OK) {
                return status;
            }
            if (c->read_pos == c->cached_write) {
                /* Out of data: hand back the space before anyone waits. */
                iob__ring_consumer_publish(c);
                if (atomic_load_explicit(&c->ctrl->producer_closed, memory_order_acquire) == 0) {
                    return ZX_ERR_SHOULD_WAIT;
                }
                /* Closed: whatever was published before the flag counts. */
                status = ring_consumer_refresh(c);
                if (status != ZX_OK) {
                    return status;
                }
                if (c->read_pos == c->cached_write) {
                    return ZX_ERR_PEER_CLOSED;
                }
            }
        }
        uint64_t off = c->read_pos & c->mask;
        uint64_t avail = c->cached_write - c->read_pos; /* >= 8: both are 8-aligned */
        uint64_t header = ring_read_header_once(c->data + off);
        uint64_t length = header & UINT32_MAX;
        uint32_t type = (uint32_t)(header >> 32);
        uint64_t tail = c->capacity - off; /* >= 8: off is 8-aligned, capacity too */
        if (type == IOB_RING_REC_PAD) {
            if (length != tail - IOB_RING_RECORD_HEADER || tail > avail) {
                return ring_consumer_fail(c);
            }
            c->read_pos += tail;
            continue;
        }
        if (type != IOB_RING_REC_MSG || length > c->max_payload ||
            length > tail - IOB_RING_RECORD_HEADER) {
            return ring_consumer_fail(c);
        }
        uint64_t rec = IOB_RING_RECORD_HEADER + iob__ring_round(length);
        if (rec > avail) {
            return ring_consumer_fail(c);
        }
        c->pending = rec;
        /* read_pos may have entered a new lap (padding) or the index moved: re-bound. */
        c->fast_end = iob__ring_min(c->cached_write, iob__ring_lap_end(c->read_pos, c->mask));
        *out = c->data + off + IOB_RING_RECORD_HEADER;
        *len = (size_t)length;
        return ZX_OK;
    }
}

zx_status_t iob__ring_span_begin_slow(iob_ring_consumer_t* c, iob_ring_span_t* span,
                                      const void** out, size_t* len) {
    zx_status_t status = iob__ring_peek_slow(c, out, len);
    if (status != ZX_OK) {
        return status;
    }
    /* The peeked message becomes the span's first; the span owns it from here. */
    span->pos = c->read_pos + c->pending;
    c->pending = 0;
    span->end = iob__ring_span_bound(c);
    span->count = 1;
    return ZX_OK;
}

zx_status_t iob__ring_read_slow(iob_ring_consumer_t* c, void* buf, size_t cap, size_t* len) {
    const void* src;
    size_t n;
    zx_status_t status = iob__ring_peek_slow(c, &src, &n);
    if (status != ZX_OK) {
        return status;
    }
    *len = n;
    if (n > cap) {
        return ZX_ERR_BUFFER_TOO_SMALL;
    }
    memcpy(buf, src, n);
    iob_ring_release(c);
    return ZX_OK;
}

/*
 * Whether peek has something new to say. A moved write index is validated and taken right
 * here (a bad one breaks the ring, which peek then reports), so that the peek or read after
 * the wait runs on the fast path.
 */
static bool ring_consumer_ready(iob_ring_consumer_t* c) {
    if (c->read_pos != c->cached_write) {
        return true;
    }
    uint64_t w = atomic_load_explicit(&c->ctrl->write_index, memory_order_acquire);
    if (w != c->cached_write) {
        (void)ring_consumer_accept(c, w);
        return true;
    }
    return atomic_load_explicit(&c->ctrl->producer_closed, memory_order_acquire) != 0;
}

/*
 * A batching consumer that ran dry lets the producer get a little ahead before it goes on.
 * Right behind the producer, the consumer's sequential reads make its cache's prefetcher
 * fetch the lines the producer is writing at that moment, and each such line is then
 * handed back and forth between the cores several times (small messages ran at a third of
 * their rate in that state, which a run falls into at random). A few KiB of distance puts
 * the producer out of the prefetcher's reach. It waits only briefly and never when the
 * producer has closed, so a producer that has stopped does not hold the data back.
 */
static void ring_consumer_lag(iob_ring_consumer_t* c) {
    if (c->batch == 1 || c->broken != ZX_OK) {
        return;
    }
    uint64_t want = c->capacity / 8 < RING_LAG_BYTES ? c->capacity / 8 : RING_LAG_BYTES;
    zx_time_t until = 0;
    for (uint32_t i = 1;; i++) {
        if (c->cached_write - c->read_pos >= want) {
            return;
        }
        uint64_t w = atomic_load_explicit(&c->ctrl->write_index, memory_order_acquire);
        if (w != c->cached_write) {
            if (ring_consumer_accept(c, w) != ZX_OK) {
                return;
            }
            continue;
        }
        if (atomic_load_explicit(&c->ctrl->producer_closed, memory_order_relaxed) != 0) {
            return;
        }
        iob__ring_cpu_relax();
        if (i % IOB__RING_SPIN_CLOCK_EVERY == 0) {
            zx_time_t now = iob_ring_now();
            if (until == 0) {
                until = now + RING_LAG_NS;
            } else if (now >= until) {
                return;
            }
        }
    }
}

/* What the consumer waits for: data, or the producer's close. */
typedef struct ring_data {
    iob_ring_consumer_t* c;
    bool prefetch;
    const unsigned char* next0;
    const unsigned char* next1;
} ring_data_t;

static bool ring_data_ready(void* ctx) {
    return ring_consumer_ready(((ring_data_t*)ctx)->c);
}

/*
 * A consumer that publishes every message (batch 1: it wants latency) keeps asking, while it
 * spins on the index, for the lines the next record will occupy (its header and the first
 * payload bytes). The producer writes them before it publishes, so by the time the new index
 * is seen they are usually already here, and the round trip pays one cache-line transfer
 * instead of two in a row. A prefetch never faults and carries no ordering: the record is
 * still read, once, after the index (acquire) and validated as always. A batching consumer
 * does not: there the producer is still filling those lines with the rest of its batch, and
 * every prefetch would take a line away from it in the middle of its writes (a ping-pong
 * that halved small-message throughput in some runs). Found while spinning, data is then
 * let to run a little ahead (ring_consumer_lag).
 */
static bool ring_data_spin_ready(void* ctx) {
    ring_data_t* d = ctx;
    if (d->prefetch) {
        ring_prefetch(d->next0);
        ring_prefetch(d->next1);
    }
    if (ring_consumer_ready(d->c)) {
        ring_consumer_lag(d->c);
        return true;
    }
    return false;
}

zx_status_t iob_ring_consumer_wait(iob_ring_consumer_t* c, zx_time_t deadline) {
    if (c->broken != ZX_OK) {
        return ZX_OK;
    }
    iob__ring_consumer_publish(c);
    ring_data_t data = {c, c->batch == 1, c->data + (c->read_pos & c->mask),
                        c->data + ((c->read_pos + 64) & c->mask)};
    iob__ring_wait_t w = {ring_data_spin_ready, ring_data_ready, &data, &c->ctrl->data_futex,
                          &c->ctrl->consumer_sleeping, &c->stats};
    return iob__ring_wait(&w, c->wait, &c->waiter, deadline);
}

void iob_ring_consumer_close(iob_ring_consumer_t* c) {
    if (c->ctrl == NULL) {
        return;
    }
    iob__ring_consumer_publish(c);
    atomic_store_explicit(&c->ctrl->consumer_closed, 1, memory_order_release);
    iob__ring_wake(&c->ctrl->space_futex, &c->stats);
}

void iob_ring_consumer_fini(iob_ring_consumer_t* c) {
    if (c->ctrl != NULL && c->broken == ZX_OK) {
        iob__ring_consumer_publish(c);
    }
    c->ctrl = NULL;
    c->data = NULL;
}
