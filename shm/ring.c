/* SPDX-License-Identifier: MIT */
/*
 * The shared-memory SPSC ring: the header, the futex calls and the spin budget both sides
 * use. The producer is in ring_producer.c, the consumer in ring_consumer.c, what they share
 * in ring_internal.h.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/ring_internal.h"

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
#define RING_SPIN_MAX_NS INT64_C(50000)
#define RING_SPIN_INITIAL_NS (RING_SPIN_MAX_NS / 4)
#define RING_SPIN_WORK_FACTOR 2
#define RING_SPIN_WORK_MAX_NS INT64_C(1000000)

/*
 * Unpublished bytes that force a publication whatever the batch: a quarter of the ring.
 * (Publishing large messages one by one instead let the consumer catch up with the
 * producer's writes, and runs fell into a state five times slower at 256 KiB.)
 */
uint64_t iob__ring_publish_bytes(uint64_t capacity) {
    return capacity / 4;
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

int iob__ring_futex_wait(_Atomic uint32_t* word, uint32_t expected, zx_time_t deadline) {
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

void iob__ring_futex_wake(_Atomic uint32_t* word) {
    (void)syscall(SYS_futex, ring_futex_addr(word), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * Both sides check the header against what they know from their own mappings; the header
 * is data the other side could have written. The control region is mapped writable by
 * both, so nothing in it is trusted beyond this check.
 */
zx_status_t iob__ring_check_header(iob_ring_ctrl_t* ctrl, uint64_t ctrl_size, const void* data,
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

uint32_t iob__ring_batch(const iob_ring_options_t* options) {
    return (options == NULL || options->batch == 0) ? 1u : options->batch;
}

iob_ring_wait_mode_t iob__ring_wait_mode(const iob_ring_options_t* options) {
    return (options == NULL) ? IOB_RING_WAIT_SPIN : options->wait;
}

void iob__ring_waiter_init(iob__ring_waiter_t* w) {
    w->spin_ns = RING_SPIN_INITIAL_NS;
    w->wait_ended = 0;
    w->dense = false;
}

/* The time a side worked between its last wait and one starting at `start` (-1: unknown). */
int64_t iob__ring_waiter_work(const iob__ring_waiter_t* w, zx_time_t start) {
    return w->wait_ended == 0 ? -1 : start - w->wait_ended;
}

/* How long a wait starts by spinning (see RING_SPIN_WORK_FACTOR). */
int64_t iob__ring_spin_budget(const iob__ring_waiter_t* w, int64_t work) {
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
void iob__ring_waiter_done(iob__ring_waiter_t* w, zx_time_t start, int64_t work) {
    zx_time_t now = iob_ring_now();
    int64_t waited = now - start;
    if (waited <= RING_SPIN_MAX_NS) {
        int64_t want = 2 * waited;
        w->spin_ns = want > w->spin_ns ? want : w->spin_ns;
        w->spin_ns = w->spin_ns < RING_SPIN_MAX_NS ? w->spin_ns : RING_SPIN_MAX_NS;
    } else {
        w->spin_ns /= 2;
        w->spin_ns = w->spin_ns > IOB__RING_SPIN_MIN_NS ? w->spin_ns : IOB__RING_SPIN_MIN_NS;
    }
    w->dense = work >= 0 && waited <= RING_SPIN_WORK_FACTOR * work;
    w->wait_ended = now;
}
