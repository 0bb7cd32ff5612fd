/* SPDX-License-Identifier: MIT */
/* The shared-memory SPSC ring: validation, batching of index publication, futex wake-ups. */
#include "shm/ring.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * Adaptive spinning in block mode, by time: a waiter spins for its budget, then sleeps on
 * the futex.
 *
 * A side whose last wait was short beside the work it did before that wait is in a dense
 * stream (full load: the other side is a little slower, or publishes in large units). It
 * spins for up to twice the work it did since its last wait (at most RING_SPIN_WORK_MAX_NS):
 * a 2 MiB quarter of an 8 MiB ring is a 60 us wait at 1 MiB messages, and a waiter that
 * slept there had the other side pay a futex wake on its own critical path at every
 * publication and woke up late on this VM (runs at 0.6x of busy-poll). Spinning no longer
 * than twice the work bounds the waste at 2/3 of the side's CPU even when the guess is
 * wrong.
 *
 * Otherwise (a paced or idle stream) the budget follows the lengths of earlier waits:
 * twice the last wait when that was short (up to RING_SPIN_MAX_NS, about what a futex
 * sleep plus the other side's wake-up and the scheduler's reaction cost on a VM), halved
 * when it was long, so a sparse stream goes to sleep almost at once and costs no CPU.
 *
 * Busy-poll mode spins without a budget.
 */
#define RING_SPIN_MIN_NS INT64_C(1000)
#define RING_SPIN_MAX_NS INT64_C(50000)
#define RING_SPIN_INITIAL_NS (RING_SPIN_MAX_NS / 4)
#define RING_SPIN_WORK_FACTOR 2
#define RING_SPIN_WORK_MAX_NS INT64_C(1000000)
/* Pauses between clock reads while spinning (a read costs tens of ns, a pause about as much). */
#define RING_SPIN_CLOCK_EVERY 16u
/* How far a batching consumer that ran dry lets the producer get ahead, and for how long at
 * most it waits for that (ring_consumer_lag). */
#define RING_LAG_BYTES UINT64_C(4096)
#define RING_LAG_NS INT64_C(2000)
/* Busy-poll mode looks at the deadline this often. */
#define RING_POLL_CLOCK_EVERY 1024u
#define RING_NO_RESERVATION IOB__RING_NO_RESERVATION

static inline void ring_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline void ring_prefetch(const void* at) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(at, 0, 3);
#else
    (void)at;
#endif
}

/*
 * Unpublished bytes that force a publication whatever the batch: a quarter of the ring.
 * (Publishing large messages one by one instead let the consumer catch up with the
 * producer's writes, and runs fell into a state five times slower at 256 KiB.)
 */
static uint64_t ring_publish_bytes(uint64_t capacity) {
    return capacity / 4;
}

static inline uint64_t ring_round(uint64_t len) {
    return iob__ring_round(len);
}

/* The position where the lap that pos is in ends (the end of the data, as a position). */
static inline uint64_t ring_lap_end(uint64_t pos, uint64_t mask) {
    return (pos | mask) + 1;
}

static inline uint64_t ring_min(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}

/* The producer's fast-path bound (ring.h): 0 once broken. */
static void ring_producer_bound(iob_ring_producer_t* p) {
    p->fast_end = p->broken != ZX_OK ? 0 : ring_min(p->limit, ring_lap_end(p->write_pos, p->mask));
}

zx_time_t iob_ring_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (zx_time_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t iob_ring_capacity_for(uint64_t data_size) {
    if (data_size < IOB_RING_MIN_CAPACITY) {
        return 0;
    }
    if (data_size >= IOB_RING_MAX_CAPACITY) {
        return IOB_RING_MAX_CAPACITY;
    }
    uint64_t cap = UINT64_C(1) << (63 - __builtin_clzll(data_size));
    return cap;
}

uint64_t iob_ring_max_payload(uint64_t capacity) {
    /* A record header carries the length in 32 bits: rings of 8 GiB and more stop there. */
    uint64_t half = capacity / 2 - IOB_RING_RECORD_HEADER;
    return half < UINT32_MAX ? half : UINT32_MAX;
}

/*
 * The futex words are shared between processes that map the region at different addresses,
 * so the operations must not be FUTEX_PRIVATE: the kernel then keys the wait on the
 * underlying page, not on this process's address.
 */
/*
 * The kernel sees a plain 4-byte word; _Atomic uint32_t has that size and alignment
 * (asserted in ring.h), so handing it over without the qualifier is sound.
 */
static void* ring_futex_addr(_Atomic uint32_t* word) {
    return (void*)(uintptr_t)word;
}

static int ring_futex_wait(_Atomic uint32_t* word, uint32_t expected, zx_time_t deadline) {
    struct timespec ts;
    struct timespec* tsp = NULL;
    if (deadline != ZX_TIME_INFINITE) {
        if (deadline < 0) {
            deadline = 0;
        }
        ts.tv_sec = (time_t)(deadline / 1000000000);
        ts.tv_nsec = (long)(deadline % 1000000000);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, unlike FUTEX_WAIT. */
    return (int)syscall(SYS_futex, ring_futex_addr(word), FUTEX_WAIT_BITSET, expected, tsp, NULL,
                        FUTEX_BITSET_MATCH_ANY);
}

static void ring_futex_wake(_Atomic uint32_t* word) {
    (void)syscall(SYS_futex, ring_futex_addr(word), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * Both sides check the header against what they know from their own mappings; the header
 * is data the other side could have written. The control region is mapped writable by
 * both, so nothing in it is trusted beyond this check.
 */
static zx_status_t ring_check_header(iob_ring_ctrl_t* ctrl, uint64_t ctrl_size, const void* data,
                                     uint64_t data_size, uint64_t* capacity) {
    if (ctrl == NULL || data == NULL || ((uintptr_t)ctrl % IOB_RING_LINE) != 0 ||
        ((uintptr_t)data % IOB_RING_ALIGN) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (ctrl_size < IOB_RING_CTRL_SIZE) {
        return ZX_ERR_BUFFER_TOO_SMALL;
    }
    uint64_t cap = iob_ring_capacity_for(data_size);
    if (cap == 0) {
        return ZX_ERR_BUFFER_TOO_SMALL;
    }
    /* The version is the publication point of the header (written last, release). */
    uint32_t version = atomic_load_explicit(&ctrl->version, memory_order_acquire);
    if (version == 0) {
        return ZX_ERR_SHOULD_WAIT;
    }
    if (version != IOB_RING_VERSION || ctrl->magic != IOB_RING_MAGIC ||
        ctrl->record_align != IOB_RING_ALIGN || ctrl->data_capacity != cap ||
        ctrl->max_payload != iob_ring_max_payload(cap)) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    *capacity = cap;
    return ZX_OK;
}

zx_status_t iob_ring_format(void* ctrl_mem, uint64_t ctrl_size, uint64_t data_size) {
    if (ctrl_mem == NULL || ((uintptr_t)ctrl_mem % IOB_RING_LINE) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t cap = iob_ring_capacity_for(data_size);
    if (ctrl_size < IOB_RING_CTRL_SIZE || cap == 0) {
        return ZX_ERR_BUFFER_TOO_SMALL;
    }
    iob_ring_ctrl_t* ctrl = ctrl_mem;
    atomic_store_explicit(&ctrl->version, 0, memory_order_relaxed);
    ctrl->magic = IOB_RING_MAGIC;
    ctrl->record_align = IOB_RING_ALIGN;
    ctrl->data_capacity = cap;
    ctrl->max_payload = iob_ring_max_payload(cap);
    atomic_store_explicit(&ctrl->write_index, 0, memory_order_relaxed);
    atomic_store_explicit(&ctrl->producer_closed, 0, memory_order_relaxed);
    atomic_store_explicit(&ctrl->read_index, 0, memory_order_relaxed);
    atomic_store_explicit(&ctrl->consumer_closed, 0, memory_order_relaxed);
    atomic_store_explicit(&ctrl->data_futex, 0, memory_order_relaxed);
    atomic_store_explicit(&ctrl->consumer_sleeping, 0, memory_order_relaxed);
    atomic_store_explicit(&ctrl->space_futex, 0, memory_order_relaxed);
    atomic_store_explicit(&ctrl->producer_sleeping, 0, memory_order_relaxed);
    atomic_store_explicit(&ctrl->version, IOB_RING_VERSION, memory_order_release);
    return ZX_OK;
}

static uint32_t ring_batch(const iob_ring_options_t* options) {
    return (options == NULL || options->batch == 0) ? 1u : options->batch;
}

static iob_ring_wait_mode_t ring_wait(const iob_ring_options_t* options) {
    return (options == NULL) ? IOB_RING_WAIT_SPIN : options->wait;
}

static void ring_waiter_init(iob__ring_waiter_t* w) {
    w->spin_ns = RING_SPIN_INITIAL_NS;
    w->wait_ended = 0;
    w->dense = false;
}

/* The time a side worked between its last wait and one starting at `start` (-1: unknown). */
static int64_t ring_waiter_work(const iob__ring_waiter_t* w, zx_time_t start) {
    return w->wait_ended == 0 ? -1 : start - w->wait_ended;
}

/* How long a wait starts by spinning (see RING_SPIN_WORK_FACTOR). */
static int64_t ring_spin_budget(const iob__ring_waiter_t* w, int64_t work) {
    if (!w->dense || work < 0) {
        return w->spin_ns;
    }
    if (work >= RING_SPIN_WORK_MAX_NS / RING_SPIN_WORK_FACTOR) {
        return RING_SPIN_WORK_MAX_NS;
    }
    int64_t budget = work * RING_SPIN_WORK_FACTOR;
    return budget > w->spin_ns ? budget : w->spin_ns;
}

/* A wait that began at `start`, after `work`, returns: what the next one learns from it. */
static void ring_waiter_done(iob__ring_waiter_t* w, zx_time_t start, int64_t work) {
    zx_time_t now = iob_ring_now();
    int64_t waited = now - start;
    if (waited <= RING_SPIN_MAX_NS) {
        int64_t want = 2 * waited;
        w->spin_ns = want > w->spin_ns ? want : w->spin_ns;
        w->spin_ns = w->spin_ns < RING_SPIN_MAX_NS ? w->spin_ns : RING_SPIN_MAX_NS;
    } else {
        w->spin_ns /= 2;
        w->spin_ns = w->spin_ns > RING_SPIN_MIN_NS ? w->spin_ns : RING_SPIN_MIN_NS;
    }
    w->dense = work >= 0 && waited <= RING_SPIN_WORK_FACTOR * work;
    w->wait_ended = now;
}

/* ---- producer ------------------------------------------------------------------------ */

zx_status_t iob_ring_producer_init(iob_ring_producer_t* p, void* ctrl_mem, uint64_t ctrl_size,
                                   void* data, uint64_t data_size,
                                   const iob_ring_options_t* options) {
    if (p == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_ring_ctrl_t* ctrl = ctrl_mem;
    uint64_t cap = 0;
    zx_status_t status = ring_check_header(ctrl, ctrl_size, data, data_size, &cap);
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
    p->publish_bytes = ring_publish_bytes(cap);
    p->publish_at = w + p->publish_bytes;
    p->reserved = RING_NO_RESERVATION;
    p->batch = ring_batch(options);
    p->batch_left = p->batch;
    ring_waiter_init(&p->waiter);
    p->wait = ring_wait(options);
    p->broken = ZX_OK;
    ring_producer_bound(p);
    return ZX_OK;
}

/*
 * Publication: the release store makes every record header and payload written before it
 * visible to a consumer that loads the index with acquire. The seq_cst fence then orders
 * that store before the load of consumer_sleeping; the consumer does the mirror image
 * (store sleeping, fence, load write_index), so at least one of the two sees the other and
 * a wake-up is never lost. This runs once per batch, which is what keeps the fence cheap.
 */
void iob__ring_producer_publish(iob_ring_producer_t* p) {
    p->batch_left = p->batch;
    if (p->write_pos == p->published) {
        return;
    }
    atomic_store_explicit(&p->ctrl->write_index, p->write_pos, memory_order_release);
    p->published = p->write_pos;
    p->publish_at = p->published + p->publish_bytes;
    p->stats.publishes++;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&p->ctrl->consumer_sleeping, memory_order_relaxed) != 0) {
        atomic_fetch_add_explicit(&p->ctrl->data_futex, 1, memory_order_release);
        ring_futex_wake(&p->ctrl->data_futex);
        p->stats.futex_wakes++;
    }
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
    uint64_t rec = IOB_RING_RECORD_HEADER + ring_round(len);
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

/* The producer's wait; `spin_until` matters in block mode only. */
static zx_status_t ring_producer_wait_for(iob_ring_producer_t* p, uint64_t need, bool block,
                                          zx_time_t spin_until, zx_time_t deadline) {
    for (;;) {
        /* Spin first: on a loaded ring the consumer frees space within microseconds. */
        uint32_t every = block ? RING_SPIN_CLOCK_EVERY : RING_POLL_CLOCK_EVERY;
        for (uint32_t i = 0; i < every; i++) {
            if (ring_producer_ready(p, need)) {
                return ZX_OK;
            }
            ring_cpu_relax();
        }
        zx_time_t now = iob_ring_now();
        if (deadline != ZX_TIME_INFINITE && now >= deadline) {
            return ZX_ERR_TIMED_OUT;
        }
        if (!block || now < spin_until) {
            continue;
        }
        uint32_t seq = atomic_load_explicit(&p->ctrl->space_futex, memory_order_acquire);
        atomic_store_explicit(&p->ctrl->producer_sleeping, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        if (ring_producer_ready(p, need)) {
            atomic_store_explicit(&p->ctrl->producer_sleeping, 0, memory_order_relaxed);
            return ZX_OK;
        }
        p->stats.futex_waits++;
        int rc = ring_futex_wait(&p->ctrl->space_futex, seq, deadline);
        int err = errno;
        atomic_store_explicit(&p->ctrl->producer_sleeping, 0, memory_order_relaxed);
        if (rc != 0 && err == ETIMEDOUT) {
            return ring_producer_ready(p, need) ? ZX_OK : ZX_ERR_TIMED_OUT;
        }
        /* Woken (or a spurious return): look again, spinning briefly before sleeping again. */
        spin_until = iob_ring_now() + RING_SPIN_MIN_NS;
    }
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
    if (p->wait != IOB_RING_WAIT_BLOCK) {
        /* Busy-poll reads no clock before its first look: that would only delay it. */
        return ring_producer_wait_for(p, need, false, 0, deadline);
    }
    zx_time_t start = iob_ring_now();
    int64_t work = ring_waiter_work(&p->waiter, start);
    zx_time_t spin_until = start + ring_spin_budget(&p->waiter, work);
    zx_status_t status = ring_producer_wait_for(p, need, true, spin_until, deadline);
    ring_waiter_done(&p->waiter, start, work);
    return status;
}

void iob_ring_producer_close(iob_ring_producer_t* p) {
    if (p->ctrl == NULL) {
        return;
    }
    iob__ring_producer_publish(p);
    atomic_store_explicit(&p->ctrl->producer_closed, 1, memory_order_release);
    atomic_fetch_add_explicit(&p->ctrl->data_futex, 1, memory_order_release);
    ring_futex_wake(&p->ctrl->data_futex);
    p->stats.futex_wakes++;
}

void iob_ring_producer_fini(iob_ring_producer_t* p) {
    if (p->ctrl != NULL && p->broken == ZX_OK) {
        iob__ring_producer_publish(p);
    }
    p->ctrl = NULL;
    p->data = NULL;
}

/* ---- consumer ------------------------------------------------------------------------ */

zx_status_t iob_ring_consumer_init(iob_ring_consumer_t* c, void* ctrl_mem, uint64_t ctrl_size,
                                   const void* data, uint64_t data_size,
                                   const iob_ring_options_t* options) {
    if (c == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_ring_ctrl_t* ctrl = ctrl_mem;
    uint64_t cap = 0;
    zx_status_t status = ring_check_header(ctrl, ctrl_size, data, data_size, &cap);
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
    c->publish_bytes = ring_publish_bytes(cap);
    c->publish_at = r + c->publish_bytes;
    c->batch = ring_batch(options);
    c->batch_left = c->batch;
    ring_waiter_init(&c->waiter);
    c->wait = ring_wait(options);
    c->broken = ZX_OK;
    return ZX_OK;
}

/* Mirror of iob__ring_producer_publish (see there for the ordering argument). */
void iob__ring_consumer_publish(iob_ring_consumer_t* c) {
    c->batch_left = c->batch;
    if (c->read_pos == c->published) {
        return;
    }
    atomic_store_explicit(&c->ctrl->read_index, c->read_pos, memory_order_release);
    c->published = c->read_pos;
    c->publish_at = c->published + c->publish_bytes;
    c->stats.publishes++;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&c->ctrl->producer_sleeping, memory_order_relaxed) != 0) {
        atomic_fetch_add_explicit(&c->ctrl->space_futex, 1, memory_order_release);
        ring_futex_wake(&c->ctrl->space_futex);
        c->stats.futex_wakes++;
    }
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
    c->fast_end = ring_min(w, ring_lap_end(c->read_pos, c->mask));
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
        uint64_t rec = IOB_RING_RECORD_HEADER + ring_round(length);
        if (rec > avail) {
            return ring_consumer_fail(c);
        }
        c->pending = rec;
        /* read_pos may have entered a new lap (padding) or the index moved: re-bound. */
        c->fast_end = ring_min(c->cached_write, ring_lap_end(c->read_pos, c->mask));
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
        ring_cpu_relax();
        if (i % RING_SPIN_CLOCK_EVERY == 0) {
            zx_time_t now = iob_ring_now();
            if (until == 0) {
                until = now + RING_LAG_NS;
            } else if (now >= until) {
                return;
            }
        }
    }
}

/* The consumer's wait; `spin_until` matters in block mode only. */
static zx_status_t ring_consumer_wait_for(iob_ring_consumer_t* c, bool block,
                                          zx_time_t spin_until, zx_time_t deadline) {
    /*
     * A consumer that publishes every message (batch 1: it wants latency) keeps asking,
     * while it spins on the index, for the lines the next record will occupy (its header
     * and the first payload bytes). The producer writes them before it publishes, so by the
     * time the new index is seen they are usually already here, and the round trip pays
     * one cache-line transfer instead of two in a row. A prefetch never faults and carries
     * no ordering: the record is still read, once, after the index (acquire) and validated
     * as always. A batching consumer does not: there the producer is still filling those
     * lines with the rest of its batch, and every prefetch would take a line away from it
     * in the middle of its writes (a ping-pong that halved small-message throughput in
     * some runs).
     */
    bool prefetch = c->batch == 1;
    const unsigned char* next0 = c->data + (c->read_pos & c->mask);
    const unsigned char* next1 = c->data + ((c->read_pos + 64) & c->mask);
    for (;;) {
        uint32_t every = block ? RING_SPIN_CLOCK_EVERY : RING_POLL_CLOCK_EVERY;
        for (uint32_t i = 0; i < every; i++) {
            if (prefetch) {
                ring_prefetch(next0);
                ring_prefetch(next1);
            }
            if (ring_consumer_ready(c)) {
                ring_consumer_lag(c);
                return ZX_OK;
            }
            ring_cpu_relax();
        }
        zx_time_t now = iob_ring_now();
        if (deadline != ZX_TIME_INFINITE && now >= deadline) {
            return ZX_ERR_TIMED_OUT;
        }
        if (!block || now < spin_until) {
            continue;
        }
        uint32_t seq = atomic_load_explicit(&c->ctrl->data_futex, memory_order_acquire);
        atomic_store_explicit(&c->ctrl->consumer_sleeping, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        if (ring_consumer_ready(c)) {
            atomic_store_explicit(&c->ctrl->consumer_sleeping, 0, memory_order_relaxed);
            return ZX_OK;
        }
        c->stats.futex_waits++;
        int rc = ring_futex_wait(&c->ctrl->data_futex, seq, deadline);
        int err = errno;
        atomic_store_explicit(&c->ctrl->consumer_sleeping, 0, memory_order_relaxed);
        if (rc != 0 && err == ETIMEDOUT) {
            return ring_consumer_ready(c) ? ZX_OK : ZX_ERR_TIMED_OUT;
        }
        spin_until = iob_ring_now() + RING_SPIN_MIN_NS;
    }
}

zx_status_t iob_ring_consumer_wait(iob_ring_consumer_t* c, zx_time_t deadline) {
    if (c->broken != ZX_OK) {
        return ZX_OK;
    }
    iob__ring_consumer_publish(c);
    if (c->wait != IOB_RING_WAIT_BLOCK) {
        /* Busy-poll reads no clock before its first look: that would only delay it. */
        return ring_consumer_wait_for(c, false, 0, deadline);
    }
    zx_time_t start = iob_ring_now();
    int64_t work = ring_waiter_work(&c->waiter, start);
    zx_time_t spin_until = start + ring_spin_budget(&c->waiter, work);
    zx_status_t status = ring_consumer_wait_for(c, true, spin_until, deadline);
    ring_waiter_done(&c->waiter, start, work);
    return status;
}

void iob_ring_consumer_close(iob_ring_consumer_t* c) {
    if (c->ctrl == NULL) {
        return;
    }
    iob__ring_consumer_publish(c);
    atomic_store_explicit(&c->ctrl->consumer_closed, 1, memory_order_release);
    atomic_fetch_add_explicit(&c->ctrl->space_futex, 1, memory_order_release);
    ring_futex_wake(&c->ctrl->space_futex);
    c->stats.futex_wakes++;
}

void iob_ring_consumer_fini(iob_ring_consumer_t* c) {
    if (c->ctrl != NULL && c->broken == ZX_OK) {
        iob__ring_consumer_publish(c);
    }
    c->ctrl = NULL;
    c->data = NULL;
}
