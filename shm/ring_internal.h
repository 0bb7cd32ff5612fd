/* SPDX-License-Identifier: MIT */
/*
 * What the ring's three files share: ring.c (the header, futexes, the spin budget),
 * ring_producer.c and ring_consumer.c. The two sides are mirror images: each publishes its
 * own index and wakes the other side, and each waits, spinning then sleeping, for the
 * other side's index; that logic is written once here, inlined into each side so that the
 * spin loop calls its side's check directly.
 */
#ifndef IOB_SHM_RING_INTERNAL_H_
#define IOB_SHM_RING_INTERNAL_H_

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shm/ring.h"

/* A wait that was woken (or returned spuriously) spins this long before it sleeps again. */
#define IOB__RING_SPIN_MIN_NS INT64_C(1000)
/* Pauses between clock reads while spinning (a read costs tens of ns, a pause about as much). */
#define IOB__RING_SPIN_CLOCK_EVERY 16u
/* Busy-poll mode looks at the deadline this often. */
#define IOB__RING_POLL_CLOCK_EVERY 1024u

static inline void iob__ring_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* The position where the lap that pos is in ends (the end of the data, as a position). */
static inline uint64_t iob__ring_lap_end(uint64_t pos, uint64_t mask) {
    return (pos | mask) + 1;
}

static inline uint64_t iob__ring_min(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}

/*
 * Both sides check the header against what they know from their own mappings: *capacity on
 * ZX_OK, else ZX_ERR_INVALID_ARGS, ZX_ERR_BUFFER_TOO_SMALL, ZX_ERR_SHOULD_WAIT (not
 * formatted yet) or ZX_ERR_IO_DATA_INTEGRITY.
 */
zx_status_t iob__ring_check_header(iob_ring_ctrl_t* ctrl, uint64_t ctrl_size, const void* data,
                                   uint64_t data_size, uint64_t* capacity);
/* Unpublished bytes that force a publication whatever the batch (ring.c says why). */
uint64_t iob__ring_publish_bytes(uint64_t capacity);
uint32_t iob__ring_batch(const iob_ring_options_t* options);
iob_ring_wait_mode_t iob__ring_wait_mode(const iob_ring_options_t* options);

int iob__ring_futex_wait(_Atomic uint32_t* word, uint32_t expected, zx_time_t deadline);
void iob__ring_futex_wake(_Atomic uint32_t* word);

/* Block mode's spin budget (ring.c): the waiter's state, and a wait's start and end. */
void iob__ring_waiter_init(iob__ring_waiter_t* w);
int64_t iob__ring_waiter_work(const iob__ring_waiter_t* w, zx_time_t start);
int64_t iob__ring_spin_budget(const iob__ring_waiter_t* w, int64_t work);
void iob__ring_waiter_done(iob__ring_waiter_t* w, zx_time_t start, int64_t work);

/* Bumps the other side's futex word and wakes it. */
static inline void iob__ring_wake(_Atomic uint32_t* futex, iob_ring_stats_t* stats) {
    atomic_fetch_add_explicit(futex, 1, memory_order_release);
    iob__ring_futex_wake(futex);
    stats->futex_wakes++;
}

/*
 * Publication of a side's index: the release store makes every record header and payload
 * written (or every byte released) before it visible to the other side, which loads the
 * index with acquire. The seq_cst fence then orders that store before the load of the other
 * side's sleeping flag; a side going to sleep does the mirror image (store sleeping, fence,
 * load the index, iob__ring_wait_for), so at least one of the two sees the other and a
 * wake-up is never lost. This runs once per batch, which is what keeps the fence cheap.
 */
static inline void iob__ring_publish_index(_Atomic uint64_t* index, uint64_t pos,
                                           _Atomic uint32_t* peer_sleeping,
                                           _Atomic uint32_t* peer_futex, iob_ring_stats_t* stats) {
    atomic_store_explicit(index, pos, memory_order_release);
    stats->publishes++;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(peer_sleeping, memory_order_relaxed) != 0) {
        iob__ring_wake(peer_futex, stats);
    }
}

/*
 * What a side waits for, and on what it sleeps. spin_ready is asked while spinning (it may
 * do more than look, e.g. prefetch), ready after the sleeping flag is set.
 */
typedef struct iob__ring_wait {
    bool (*spin_ready)(void* side);
    bool (*ready)(void* side);
    void* side;
    _Atomic uint32_t* futex;    /* bumped and woken by the other side */
    _Atomic uint32_t* sleeping; /* this side's flag, read by the other side's publication */
    iob_ring_stats_t* stats;
} iob__ring_wait_t;

/* One wait, spinning until spin_until (block mode) and then sleeping on the futex. */
static inline __attribute__((always_inline)) zx_status_t
iob__ring_wait_for(const iob__ring_wait_t* w, bool block, zx_time_t spin_until,
                   zx_time_t deadline) {
    for (;;) {
        /* Spin first: on a loaded ring the other side moves within microseconds. */
        uint32_t every = block ? IOB__RING_SPIN_CLOCK_EVERY : IOB__RING_POLL_CLOCK_EVERY;
        for (uint32_t i = 0; i < every; i++) {
            if (w->spin_ready(w->side)) {
                return ZX_OK;
            }
            iob__ring_cpu_relax();
        }
        zx_time_t now = iob_ring_now();
        if (deadline != ZX_TIME_INFINITE && now >= deadline) {
            return ZX_ERR_TIMED_OUT;
        }
        if (!block || now < spin_until) {
            continue;
        }
        uint32_t seq = atomic_load_explicit(w->futex, memory_order_acquire);
        atomic_store_explicit(w->sleeping, 1, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        if (w->ready(w->side)) {
            atomic_store_explicit(w->sleeping, 0, memory_order_relaxed);
            return ZX_OK;
        }
        w->stats->futex_waits++;
        int rc = iob__ring_futex_wait(w->futex, seq, deadline);
        int err = errno;
        atomic_store_explicit(w->sleeping, 0, memory_order_relaxed);
        if (rc != 0 && err == ETIMEDOUT) {
            return w->ready(w->side) ? ZX_OK : ZX_ERR_TIMED_OUT;
        }
        /* Woken (or a spurious return): look again, spinning briefly before sleeping again. */
        spin_until = iob_ring_now() + IOB__RING_SPIN_MIN_NS;
    }
}

/* A side's wait in its mode; block mode learns its next spin budget from this one. */
static inline __attribute__((always_inline)) zx_status_t
iob__ring_wait(const iob__ring_wait_t* w, iob_ring_wait_mode_t mode, iob__ring_waiter_t* waiter,
               zx_time_t deadline) {
    if (mode != IOB_RING_WAIT_BLOCK) {
        /* Busy-poll reads no clock before its first look: that would only delay it. */
        return iob__ring_wait_for(w, false, 0, deadline);
    }
    zx_time_t start = iob_ring_now();
    int64_t work = iob__ring_waiter_work(waiter, start);
    zx_time_t spin_until = start + iob__ring_spin_budget(waiter, work);
    zx_status_t status = iob__ring_wait_for(w, true, spin_until, deadline);
    iob__ring_waiter_done(waiter, start, work);
    return status;
}

#endif /* IOB_SHM_RING_INTERNAL_H_ */
