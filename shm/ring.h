/* SPDX-License-Identifier: MIT */
/*
 * A single-producer single-consumer byte ring laid out in two shared regions of an IOB.
 *
 *   data region     ep0 (the producer) maps it writable, ep1 (the consumer) read-only.
 *                   Length-prefixed records, 8-byte aligned, at byte positions that only grow.
 *   control region  both map it writable: a versioned header, the producer's write index,
 *                   the consumer's read index and the futex words used for wake-ups.
 *
 * The consumer cannot write the data region, so everything it publishes (its read index,
 * its "I am asleep" word) lives in the control region. Each index has its own cache line
 * and each side caches the other's index, re-reading it only when it seems to have run out
 * (of data or of space), so the common case touches no line the other side is writing.
 *
 * Trust: each side treats everything the other side can write as hostile input. The
 * consumer validates every published write index (never backwards, never more than the
 * capacity ahead, 8-aligned) and every record header (read once into a local, then checked
 * against the published index and against the end of the data region) before it touches a
 * payload byte; anything wrong is ZX_ERR_IO_DATA_INTEGRITY, sticky, and never a crash, a
 * hang or an out-of-bounds read. The capacity is derived from the sizes of the regions as
 * the caller mapped them; the shared header must agree with that, it is never believed on
 * its own. The producer likewise validates the read index the consumer publishes.
 *
 * Threading: one producer thread and one consumer thread per ring (in the same or in
 * different processes). The endpoint structs are local state; never place them in shared
 * memory.
 */
#ifndef IOB_SHM_RING_H_
#define IOB_SHM_RING_H_

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <zircon/types.h>

/* ---- the shared layout (ABI: change IOB_RING_VERSION with any change below) ---------- */

#define IOB_RING_MAGIC UINT64_C(0x31474e4952424f49) /* "IOBRING1", little-endian */
#define IOB_RING_VERSION 1u
/*
 * Sections of the control region are 128 bytes apart rather than 64: the adjacent-line
 * prefetcher on current x86 parts pulls cache lines in pairs, so 64-byte neighbours still
 * ping-pong between cores.
 */
#define IOB_RING_LINE 128u
#define IOB_RING_ALIGN 8u              /* records start on multiples of this */
#define IOB_RING_RECORD_HEADER 8u      /* bytes before each payload */
#define IOB_RING_MIN_CAPACITY 4096u    /* smallest data capacity accepted */
#define IOB_RING_MAX_CAPACITY (UINT64_C(1) << 40)

/* Record types, the upper half of a record header (the lower half is the payload length). */
#define IOB_RING_REC_MSG 0x4d534731u /* a message of `length` payload bytes */
#define IOB_RING_REC_PAD 0x50414431u /* filler to the end of the data: length = rest - 8 */

typedef struct iob_ring_ctrl {
    /* Header: written once by iob_ring_format, version last (release). */
    uint64_t magic;
    _Atomic uint32_t version;
    uint32_t record_align;
    uint64_t data_capacity; /* bytes of the data region used; a power of two */
    uint64_t max_payload;   /* largest payload a record may carry */
    uint8_t header_pad[IOB_RING_LINE - 32];

    /* Written by the producer only. */
    _Atomic uint64_t write_index; /* byte position just past the last published record */
    _Atomic uint32_t producer_closed;
    uint32_t producer_pad32;
    uint8_t producer_pad[IOB_RING_LINE - 16];

    /* Written by the consumer only. */
    _Atomic uint64_t read_index; /* byte position just past the last released record */
    _Atomic uint32_t consumer_closed;
    uint32_t consumer_pad32;
    uint8_t consumer_pad[IOB_RING_LINE - 16];

    /*
     * Wake-ups for a consumer that waits for data: it sets consumer_sleeping and sleeps on
     * data_futex; the producer, once per published batch, sees the flag and bumps the word.
     */
    _Atomic uint32_t data_futex;
    _Atomic uint32_t consumer_sleeping;
    uint8_t data_wake_pad[IOB_RING_LINE - 8];

    /* The mirror image, for a producer that waits for space. */
    _Atomic uint32_t space_futex;
    _Atomic uint32_t producer_sleeping;
    uint8_t space_wake_pad[IOB_RING_LINE - 8];
} iob_ring_ctrl_t;

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free across processes");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free across processes");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && _Alignof(_Atomic uint64_t) == 8, "u64 atomics");
_Static_assert(sizeof(_Atomic uint32_t) == 4 && _Alignof(_Atomic uint32_t) == 4, "u32 atomics");
_Static_assert(offsetof(iob_ring_ctrl_t, magic) == 0, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, version) == 8, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, record_align) == 12, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, data_capacity) == 16, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, max_payload) == 24, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, write_index) == 1 * IOB_RING_LINE, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, producer_closed) == 1 * IOB_RING_LINE + 8, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, read_index) == 2 * IOB_RING_LINE, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, consumer_closed) == 2 * IOB_RING_LINE + 8, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, data_futex) == 3 * IOB_RING_LINE, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, consumer_sleeping) == 3 * IOB_RING_LINE + 4, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, space_futex) == 4 * IOB_RING_LINE, "layout");
_Static_assert(offsetof(iob_ring_ctrl_t, producer_sleeping) == 4 * IOB_RING_LINE + 4, "layout");
_Static_assert(sizeof(iob_ring_ctrl_t) == 5 * IOB_RING_LINE, "layout");

/* Bytes the control region must hold at least. */
#define IOB_RING_CTRL_SIZE ((uint64_t)sizeof(iob_ring_ctrl_t))

/*
 * The data capacity a data region of `data_size` bytes provides: the largest power of two
 * not above it, capped at IOB_RING_MAX_CAPACITY; 0 when data_size < IOB_RING_MIN_CAPACITY.
 * Both sides compute it from their own mapping; the header must agree.
 */
uint64_t iob_ring_capacity_for(uint64_t data_size);

/* The largest payload a ring of this capacity carries: capacity / 2 - 8, so any record fits
 * after at most one padding record, wherever the producer stands. */
uint64_t iob_ring_max_payload(uint64_t capacity);

/*
 * Writes a fresh header into a zero-filled control region for a data region of data_size
 * bytes. The region's creator (normally the producer) calls it once, before either side
 * attaches; the version is stored last with release ordering, so a side that attaches
 * early sees ZX_ERR_SHOULD_WAIT, never a half-written header.
 * Errors: ZX_ERR_INVALID_ARGS (ctrl NULL or misaligned), ZX_ERR_BUFFER_TOO_SMALL
 * (ctrl_size < IOB_RING_CTRL_SIZE, or data_size < IOB_RING_MIN_CAPACITY).
 */
zx_status_t iob_ring_format(void* ctrl, uint64_t ctrl_size, uint64_t data_size);

/* ---- endpoints (local state, caller-provided storage: _init/_fini) ------------------ */

typedef enum iob_ring_wait_mode {
    IOB_RING_WAIT_SPIN = 0,  /* waits busy-poll and never sleep */
    /*
     * Spin for a budget, then sleep on the futex word. The budget is up to twice the time
     * the side worked since its last wait while waits stay short beside that work (a
     * stream at full load: no sleeps), and otherwise learnt from earlier waits, 1-50 us
     * (a paced or idle stream: it sleeps almost at once). See ring.c.
     */
    IOB_RING_WAIT_BLOCK = 1,
} iob_ring_wait_mode_t;

typedef struct iob_ring_options {
    /*
     * Publish the index after this many messages (commit or release); 0 means 1. Whatever
     * the count, an endpoint publishes when a quarter of the capacity is unpublished, when
     * it runs out (of space or data), before it waits, and on flush and close. A producer
     * that goes idle must call iob_ring_producer_flush, or the last batch stays invisible.
     */
    uint32_t batch;
    iob_ring_wait_mode_t wait;
} iob_ring_options_t;

typedef struct iob_ring_stats {
    uint64_t publishes;    /* index stores */
    uint64_t futex_waits;  /* FUTEX_WAIT calls made by this side */
    uint64_t futex_wakes;  /* FUTEX_WAKE calls made by this side */
} iob_ring_stats_t;

/* Block mode's memory of earlier waits (ring.c, ring_spin_budget); private to the ring. */
typedef struct iob__ring_waiter {
    int64_t spin_ns;         /* the budget learnt from the lengths of earlier waits */
    zx_time_t wait_ended;    /* when the last wait returned (0: none yet) */
    bool dense;              /* the last wait was short beside the work before it */
} iob__ring_waiter_t;

typedef struct iob_ring_producer {
    iob_ring_ctrl_t* ctrl;
    unsigned char* data;
    uint64_t capacity;
    uint64_t mask;
    uint64_t max_payload;
    uint64_t write_pos;      /* local, ahead of what is published */
    uint64_t published;      /* last write_index stored */
    uint64_t cached_read;    /* last validated read_index */
    uint64_t reserved;       /* payload bytes of the open reservation + 1; 0: none */
    unsigned char* reserved_at; /* where its record header goes */
    uint64_t limit;          /* cached_read + capacity: writing stops here; 0 once broken */
    uint64_t fast_end;       /* min(limit, end of write_pos's lap): the fast paths' bound;
                                0 once broken. Only ever stale low (then: slow path). */
    uint64_t publish_bytes;  /* capacity / 4: unpublished bytes that force a publication */
    uint64_t publish_at;     /* published + publish_bytes */
    uint32_t batch;
    uint32_t batch_left;     /* commits until the batch is full (batch after a publication) */
    iob__ring_waiter_t waiter;
    iob_ring_wait_mode_t wait;
    zx_status_t broken;      /* sticky: ZX_ERR_IO_DATA_INTEGRITY once the consumer misbehaved */
    iob_ring_stats_t stats;
} iob_ring_producer_t;

typedef struct iob_ring_consumer {
    iob_ring_ctrl_t* ctrl;
    const unsigned char* data;
    uint64_t capacity;
    uint64_t mask;
    uint64_t max_payload;
    uint64_t read_pos;       /* local, ahead of what is published */
    uint64_t published;      /* last read_index stored */
    uint64_t cached_write;   /* last validated write_index; read_pos once broken */
    uint64_t fast_end;       /* min(cached_write, end of read_pos's lap): the fast paths'
                                bound; 0 once broken. Only ever stale low (then: slow path). */
    uint64_t pending;        /* record bytes of the message peek returned; 0: none */
    uint64_t publish_bytes;  /* the same, for released-but-unpublished bytes */
    uint64_t publish_at;     /* published + publish_bytes */
    uint32_t batch;
    uint32_t batch_left;     /* releases until the batch is full */
    iob__ring_waiter_t waiter;
    iob_ring_wait_mode_t wait;
    zx_status_t broken;
    iob_ring_stats_t stats;
} iob_ring_consumer_t;

/*
 * Attaches the producer to mapped regions: ctrl (ctrl_size bytes, writable) and data
 * (data_size bytes, writable). options may be NULL (batch 1, spin).
 * Errors: ZX_ERR_INVALID_ARGS (NULL or misaligned pointers), ZX_ERR_SHOULD_WAIT (header not
 * yet formatted: version 0), ZX_ERR_IO_DATA_INTEGRITY (bad magic, version, alignment,
 * capacity or payload limit that disagrees with data_size, or indices that make no sense),
 * ZX_ERR_BUFFER_TOO_SMALL (regions too small for a ring).
 */
zx_status_t iob_ring_producer_init(iob_ring_producer_t* p, void* ctrl, uint64_t ctrl_size,
                                   void* data, uint64_t data_size,
                                   const iob_ring_options_t* options);
/* Publishes what is committed. The struct may be reused after it. */
void iob_ring_producer_fini(iob_ring_producer_t* p);

/*
 * Reserves room for a payload of len bytes and returns where to write it (8-aligned).
 * Nothing is visible to the consumer until iob_ring_commit and a publication. At most one
 * reservation is open; reserving again replaces it.
 * Errors: ZX_ERR_OUT_OF_RANGE (len > max payload), ZX_ERR_SHOULD_WAIT (not enough space
 * now: wait with iob_ring_producer_wait), ZX_ERR_PEER_CLOSED (the consumer closed),
 * ZX_ERR_IO_DATA_INTEGRITY (the consumer published an impossible read index).
 */
static inline zx_status_t iob_ring_reserve(iob_ring_producer_t* p, size_t len, void** out);
/*
 * Closes the open reservation as a message of len bytes (len <= what was reserved).
 * Errors: ZX_ERR_BAD_STATE (no reservation), ZX_ERR_OUT_OF_RANGE (len too large).
 */
static inline zx_status_t iob_ring_commit(iob_ring_producer_t* p, size_t len);
/* Copies len bytes in as one message: reserve + memcpy + commit. Same errors as reserve. */
static inline zx_status_t iob_ring_write(iob_ring_producer_t* p, const void* buf, size_t len);
/*
 * A claim: room for several messages written in place one after another and committed
 * together, the zero-copy producer's batch (the mirror of a span). Each message's header is
 * written when the message is placed; nothing is visible to the consumer before
 * iob_ring_claim_end and the publication it may trigger.
 *
 *   iob_ring_claim_begin(p, &claim);
 *   while (more && (dst = iob_ring_claim_next(p, &claim, len)) != NULL) { fill(dst, len); }
 *   iob_ring_claim_end(p, &claim);
 *   if (dst == NULL) { ... iob_ring_reserve (it pads, waits for space, reports errors) ... }
 *
 * A claim reaches no further than the space known free when it began, the end of the data
 * region and the point where a publication is due; it replaces an open reservation.
 */
typedef struct iob_ring_claim {
    uint64_t pos;   /* where the next record goes */
    uint64_t end;   /* no record of the claim ends past this */
    uint32_t count; /* messages placed */
} iob_ring_claim_t;

static inline void iob_ring_claim_begin(iob_ring_producer_t* p, iob_ring_claim_t* claim);
/*
 * Places a message of len bytes in the claim and returns where its payload goes (8-aligned),
 * or NULL when the claim has no room for it (or len is above the maximum, or the ring is
 * broken): end the claim and use iob_ring_reserve, which says why.
 */
static inline void* iob_ring_claim_next(const iob_ring_producer_t* p, iob_ring_claim_t* claim,
                                        size_t len);
/* Commits every message of the claim. */
static inline void iob_ring_claim_end(iob_ring_producer_t* p, const iob_ring_claim_t* claim);

/* Publishes the write index now and wakes a sleeping consumer. */
void iob_ring_producer_flush(iob_ring_producer_t* p);
/*
 * Waits until a payload of len bytes can be reserved (busy-poll, or spin then futex in
 * block mode). deadline: CLOCK_MONOTONIC ns, ZX_TIME_INFINITE for none.
 * Errors: ZX_ERR_TIMED_OUT, ZX_ERR_PEER_CLOSED, ZX_ERR_OUT_OF_RANGE, ZX_ERR_IO_DATA_INTEGRITY.
 */
zx_status_t iob_ring_producer_wait(iob_ring_producer_t* p, size_t len, zx_time_t deadline);
/* Flushes, marks the producer closed and wakes the consumer, who drains then sees PEER_CLOSED. */
void iob_ring_producer_close(iob_ring_producer_t* p);

/*
 * Attaches the consumer: ctrl writable, data read-only. Same errors as producer_init.
 */
zx_status_t iob_ring_consumer_init(iob_ring_consumer_t* c, void* ctrl, uint64_t ctrl_size,
                                   const void* data, uint64_t data_size,
                                   const iob_ring_options_t* options);
void iob_ring_consumer_fini(iob_ring_consumer_t* c);

/*
 * Returns the oldest unreleased message in place: *out points into the data region (valid
 * until iob_ring_release) and *len is its length, already checked against the published
 * data and the end of the region. The producer can still scribble over those bytes, but
 * never make the consumer read outside them. Peeking again without releasing returns the
 * same message.
 * Errors: ZX_ERR_SHOULD_WAIT (nothing published), ZX_ERR_PEER_CLOSED (producer closed and
 * everything drained), ZX_ERR_IO_DATA_INTEGRITY (corrupt index or record; sticky).
 */
static inline zx_status_t iob_ring_peek(iob_ring_consumer_t* c, const void** out, size_t* len);
/* Releases the message the last peek returned (no-op when none). */
static inline void iob_ring_release(iob_ring_consumer_t* c);
/*
 * Copies the next message out and releases it. *len receives its length.
 * Errors: as peek, plus ZX_ERR_BUFFER_TOO_SMALL (cap < length: nothing is consumed and
 * *len says how much is needed).
 */
static inline zx_status_t iob_ring_read(iob_ring_consumer_t* c, void* buf, size_t cap,
                                        size_t* len);
/*
 * A span: several messages read in place one after another and released together, the
 * zero-copy consumer's batch (what Aeron's poll with a fragment limit is to its claims).
 * Per message it costs only the record's validation; the release and the publication
 * bookkeeping happen once, at iob_ring_span_end. Every message of a span stays valid until
 * then.
 *
 *   if (iob_ring_span_begin(c, &span, &msg, &len) == ZX_OK) {
 *       do { use(msg, len); } while (iob_ring_span_next(c, &span, &msg, &len) == ZX_OK);
 *       iob_ring_span_end(c, &span);
 *   }
 *
 * A span reaches at most as far as the data published when it began, and not past the end
 * of the data region or the point where a publication is due (see publish_bytes);
 * begin again for more. A span may be ended after any message.
 */
typedef struct iob_ring_span {
    uint64_t pos;   /* just past the last message taken */
    uint64_t end;   /* where the span stops: validated data, lap end, publication point */
    uint32_t count; /* messages taken */
} iob_ring_span_t;

/*
 * Opens a span with the oldest unreleased message (the one peek would return).
 * Errors: as peek; on an error no span is open.
 */
static inline zx_status_t iob_ring_span_begin(iob_ring_consumer_t* c, iob_ring_span_t* span,
                                              const void** out, size_t* len);
/*
 * The span's next message, validated exactly as peek validates. ZX_ERR_SHOULD_WAIT at the
 * end of the span, and for anything the fast check does not accept (padding, a corrupt
 * record): end the span and begin a new one, which then reports the error if there is one.
 */
static inline zx_status_t iob_ring_span_next(const iob_ring_consumer_t* c, iob_ring_span_t* span,
                                             const void** out, size_t* len);
/* Releases every message of the span. */
static inline void iob_ring_span_end(iob_ring_consumer_t* c, const iob_ring_span_t* span);

/* Publishes the read index now and wakes a producer sleeping for space. */
void iob_ring_consumer_flush(iob_ring_consumer_t* c);
/*
 * Waits until peek has something to say (a message, PEER_CLOSED or an integrity error).
 * Returns ZX_OK then, or ZX_ERR_TIMED_OUT at the deadline.
 */
zx_status_t iob_ring_consumer_wait(iob_ring_consumer_t* c, zx_time_t deadline);
/* Publishes, marks the consumer closed and wakes the producer. */
void iob_ring_consumer_close(iob_ring_consumer_t* c);

/* CLOCK_MONOTONIC now, in ns (the clock every deadline above uses). */
zx_time_t iob_ring_now(void);

/* ---- fast paths ----------------------------------------------------------------------- */
/*
 * The per-message calls are inline so that a message costs a handful of compares, one
 * header store or load and the copy, with no call. Each fast path handles only the common
 * case and hands everything else (no space or data by the cached index, padding at the end
 * of the data, errors, a broken ring) to an out-of-line iob__ slow path in ring.c that is
 * the complete, original implementation. The fast paths apply the same checks as the slow
 * ones, in an order that lets the compiler merge them:
 *
 *  producer  len <= max_payload, and the record ends before `fast_end`: the smaller of
 *            `limit` (the validated read index plus the capacity) and the end of the lap
 *            write_pos is in (the end of the data: no padding needed); 0 once broken, so a
 *            broken producer always takes the slow path.
 *  consumer  read_pos < fast_end, and a header read exactly once whose type is a message,
 *            whose length is <= max_payload, and whose record ends before `fast_end`: the
 *            smaller of the validated write index and the end of the lap read_pos is in (the
 *            end of the data); 0 once broken, so a broken consumer always takes the slow path.
 *
 *  Both fast_end bounds are recomputed by the slow paths only. Positions only grow, so a
 *  stale bound is low, never high: at worst it sends a call to the slow path, which
 *  refreshes it.
 */
#if defined(__GNUC__) || defined(__clang__)
#define IOB__RING_LIKELY(x) __builtin_expect(!!(x), 1)
#define IOB__RING_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define IOB__RING_LIKELY(x) (x)
#define IOB__RING_UNLIKELY(x) (x)
#endif

#define IOB__RING_NO_RESERVATION 0u /* p->reserved holds the reserved length + 1 */

/* The slow paths and the publication (ring.c). Internal: call the iob_ring_ API instead. */
zx_status_t iob__ring_reserve_slow(iob_ring_producer_t* p, size_t len, void** out);
zx_status_t iob__ring_commit_slow(iob_ring_producer_t* p, size_t len);
zx_status_t iob__ring_write_slow(iob_ring_producer_t* p, const void* buf, size_t len);
void iob__ring_producer_publish(iob_ring_producer_t* p);
zx_status_t iob__ring_peek_slow(iob_ring_consumer_t* c, const void** out, size_t* len);
zx_status_t iob__ring_read_slow(iob_ring_consumer_t* c, void* buf, size_t cap, size_t* len);
zx_status_t iob__ring_span_begin_slow(iob_ring_consumer_t* c, iob_ring_span_t* span,
                                      const void** out, size_t* len);
void iob__ring_consumer_publish(iob_ring_consumer_t* c);

static inline uint64_t iob__ring_round(uint64_t len) {
    return (len + (IOB_RING_ALIGN - 1)) & ~(uint64_t)(IOB_RING_ALIGN - 1);
}

/*
 * memcpy for message payloads. Small messages are the common case of a message ring, and
 * for them a call into the C library's size dispatch costs as much as the copy: up to 64
 * bytes are moved with two possibly overlapping fixed-size copies, which compile to a few
 * unaligned loads and stores.
 */
static inline void iob__ring_copy(void* dst, const void* src, size_t len) {
    unsigned char* d = dst;
    const unsigned char* s = src;
    if (len > 64) {
        memcpy(d, s, len);
    } else if (len >= 32) {
        memcpy(d, s, 32);
        memcpy(d + len - 32, s + len - 32, 32);
    } else if (len >= 16) {
        memcpy(d, s, 16);
        memcpy(d + len - 16, s + len - 16, 16);
    } else if (len >= 8) {
        memcpy(d, s, 8);
        memcpy(d + len - 8, s + len - 8, 8);
    } else if (len >= 4) {
        memcpy(d, s, 4);
        memcpy(d + len - 4, s + len - 4, 4);
    } else {
        for (size_t i = 0; i < len; i++) {
            d[i] = s[i];
        }
    }
}

/*
 * A commit happened at new position pos: publish when the batch is full or publish_bytes are
 * pending (batch_left counts down to the first, publish_at = published + publish_bytes).
 */
static inline void iob__ring_producer_count(iob_ring_producer_t* p, uint64_t pos) {
    if (--p->batch_left == 0 || pos >= p->publish_at) {
        iob__ring_producer_publish(p);
    }
}

static inline zx_status_t iob_ring_reserve(iob_ring_producer_t* p, size_t len, void** out) {
    uint64_t pos = p->write_pos;
    uint64_t rec = IOB_RING_RECORD_HEADER + iob__ring_round(len);
    if (IOB__RING_LIKELY(len <= p->max_payload && pos + rec <= p->fast_end)) {
        unsigned char* at = p->data + (pos & p->mask);
        p->reserved = (uint64_t)len + 1;
        p->reserved_at = at;
        *out = at + IOB_RING_RECORD_HEADER;
        return ZX_OK;
    }
    return iob__ring_reserve_slow(p, len, out);
}

static inline zx_status_t iob_ring_commit(iob_ring_producer_t* p, size_t len) {
    /* One compare: reserved is the reserved length + 1, and 0 (no reservation) refuses all. */
    if (IOB__RING_UNLIKELY(len >= p->reserved)) {
        return iob__ring_commit_slow(p, len);
    }
    uint64_t header = ((uint64_t)IOB_RING_REC_MSG << 32) | (uint64_t)len;
    memcpy(p->reserved_at, &header, sizeof(header));
    uint64_t pos = p->write_pos + IOB_RING_RECORD_HEADER + iob__ring_round(len);
    p->write_pos = pos;
    p->reserved = IOB__RING_NO_RESERVATION;
    iob__ring_producer_count(p, pos);
    return ZX_OK;
}

/* reserve + copy + commit, written out so that nothing is re-read after the copy. */
static inline zx_status_t iob_ring_write(iob_ring_producer_t* p, const void* buf, size_t len) {
    uint64_t pos = p->write_pos;
    uint64_t rec = IOB_RING_RECORD_HEADER + iob__ring_round(len);
    if (IOB__RING_LIKELY(len <= p->max_payload && pos + rec <= p->fast_end)) {
        unsigned char* at = p->data + (pos & p->mask);
        uint64_t header = ((uint64_t)IOB_RING_REC_MSG << 32) | (uint64_t)len;
        memcpy(at, &header, sizeof(header));
        iob__ring_copy(at + IOB_RING_RECORD_HEADER, buf, len);
        pos += rec;
        p->write_pos = pos;
        p->reserved = IOB__RING_NO_RESERVATION;
        iob__ring_producer_count(p, pos);
        return ZX_OK;
    }
    return iob__ring_write_slow(p, buf, len);
}

/*
 * The consumer's fast check of the record at read_pos. Returns its record size (header
 * plus rounded payload, > 0) with *off and *length filled, or 0 when the slow path must
 * decide (no data by the cached index, padding, anything invalid, broken).
 *
 * The header is read exactly once, through a volatile access, so that the compiler cannot
 * re-load it after the checks: the producer may rewrite it at any moment, and only the
 * local copy is validated and used.
 */
static inline uint64_t iob__ring_next(const iob_ring_consumer_t* c, uint64_t* off,
                                      uint64_t* length) {
    uint64_t pos = c->read_pos;
    uint64_t end = c->fast_end;
    if (IOB__RING_UNLIKELY(pos >= end)) {
        return 0;
    }
    uint64_t o = pos & c->mask;
    uint64_t header = *(const volatile uint64_t*)(const void*)(c->data + o);
    /*
     * Type and length in one compare: n is the length when the upper half is a message
     * type; any other type makes n at least 2^32, above every max_payload (<= UINT32_MAX).
     */
    uint64_t n = header - ((uint64_t)IOB_RING_REC_MSG << 32);
    uint64_t rec = IOB_RING_RECORD_HEADER + iob__ring_round(n);
    if (IOB__RING_LIKELY(n <= c->max_payload && pos + rec <= end)) {
        *off = o;
        *length = n;
        return rec;
    }
    return 0;
}

/* A release happened, to pos: publish when the batch is full or publish_bytes are pending. */
static inline void iob__ring_consumer_count(iob_ring_consumer_t* c, uint64_t pos) {
    if (--c->batch_left == 0 || pos >= c->publish_at) {
        iob__ring_consumer_publish(c);
    }
}

static inline zx_status_t iob_ring_peek(iob_ring_consumer_t* c, const void** out, size_t* len) {
    uint64_t off;
    uint64_t n;
    uint64_t rec = iob__ring_next(c, &off, &n);
    if (IOB__RING_LIKELY(rec != 0)) {
        c->pending = rec;
        *out = c->data + off + IOB_RING_RECORD_HEADER;
        *len = (size_t)n;
        return ZX_OK;
    }
    return iob__ring_peek_slow(c, out, len);
}

static inline void iob_ring_release(iob_ring_consumer_t* c) {
    uint64_t rec = c->pending;
    if (rec == 0) {
        return;
    }
    uint64_t pos = c->read_pos + rec;
    c->read_pos = pos;
    c->pending = 0;
    iob__ring_consumer_count(c, pos);
}

static inline zx_status_t iob_ring_read(iob_ring_consumer_t* c, void* buf, size_t cap,
                                        size_t* len) {
    uint64_t off;
    uint64_t n;
    uint64_t rec = iob__ring_next(c, &off, &n);
    if (IOB__RING_LIKELY(rec != 0 && n <= cap)) {
        uint64_t pos = c->read_pos;
        *len = (size_t)n;
        iob__ring_copy(buf, c->data + off + IOB_RING_RECORD_HEADER, (size_t)n);
        pos += rec;
        c->read_pos = pos;
        c->pending = 0;
        iob__ring_consumer_count(c, pos);
        return ZX_OK;
    }
    return iob__ring_read_slow(c, buf, cap, len);
}

/*
 * A span's bound: the consumer's fast bound (validated data, end of the lap), and no further
 * than the point where a publication is due, so that a long backlog is still handed back to
 * the producer publish_bytes at a time.
 */
static inline uint64_t iob__ring_span_bound(const iob_ring_consumer_t* c) {
    return c->fast_end < c->publish_at ? c->fast_end : c->publish_at;
}

static inline zx_status_t iob_ring_span_begin(iob_ring_consumer_t* c, iob_ring_span_t* span,
                                              const void** out, size_t* len) {
    uint64_t off;
    uint64_t n;
    uint64_t rec = iob__ring_next(c, &off, &n);
    if (IOB__RING_LIKELY(rec != 0)) {
        c->pending = 0;
        span->pos = c->read_pos + rec;
        span->end = iob__ring_span_bound(c);
        span->count = 1;
        *out = c->data + off + IOB_RING_RECORD_HEADER;
        *len = (size_t)n;
        return ZX_OK;
    }
    return iob__ring_span_begin_slow(c, span, out, len);
}

static inline zx_status_t iob_ring_span_next(const iob_ring_consumer_t* c, iob_ring_span_t* span,
                                             const void** out, size_t* len) {
    uint64_t pos = span->pos;
    uint64_t end = span->end;
    if (pos >= end) {
        return ZX_ERR_SHOULD_WAIT;
    }
    uint64_t o = pos & c->mask;
    /* Read once, then only the local copy is checked and used (see iob__ring_next). */
    uint64_t header = *(const volatile uint64_t*)(const void*)(c->data + o);
    uint64_t n = header - ((uint64_t)IOB_RING_REC_MSG << 32);
    uint64_t rec = IOB_RING_RECORD_HEADER + iob__ring_round(n);
    if (IOB__RING_LIKELY(n <= c->max_payload && pos + rec <= end)) {
        span->pos = pos + rec;
        span->count++;
        *out = c->data + o + IOB_RING_RECORD_HEADER;
        *len = (size_t)n;
        return ZX_OK;
    }
    return ZX_ERR_SHOULD_WAIT;
}

static inline void iob_ring_span_end(iob_ring_consumer_t* c, const iob_ring_span_t* span) {
    uint64_t pos = span->pos;
    c->read_pos = pos;
    c->pending = 0;
    if (span->count >= c->batch_left || pos >= c->publish_at) {
        iob__ring_consumer_publish(c);
    } else {
        c->batch_left -= span->count;
    }
}

static inline void iob_ring_claim_begin(iob_ring_producer_t* p, iob_ring_claim_t* claim) {
    p->reserved = IOB__RING_NO_RESERVATION;
    claim->pos = p->write_pos;
    /* fast_end is 0 once broken, so a broken producer's claims hold nothing. */
    claim->end = p->fast_end < p->publish_at ? p->fast_end : p->publish_at;
    claim->count = 0;
}

static inline void* iob_ring_claim_next(const iob_ring_producer_t* p, iob_ring_claim_t* claim,
                                        size_t len) {
    uint64_t pos = claim->pos;
    uint64_t rec = IOB_RING_RECORD_HEADER + iob__ring_round(len);
    if (IOB__RING_LIKELY(len <= p->max_payload && pos + rec <= claim->end)) {
        unsigned char* at = p->data + (pos & p->mask);
        uint64_t header = ((uint64_t)IOB_RING_REC_MSG << 32) | (uint64_t)len;
        memcpy(at, &header, sizeof(header));
        claim->pos = pos + rec;
        claim->count++;
        return at + IOB_RING_RECORD_HEADER;
    }
    return NULL;
}

static inline void iob_ring_claim_end(iob_ring_producer_t* p, const iob_ring_claim_t* claim) {
    uint64_t pos = claim->pos;
    p->write_pos = pos;
    if (claim->count >= p->batch_left || pos >= p->publish_at) {
        iob__ring_producer_publish(p);
    } else {
        p->batch_left -= claim->count;
    }
}

#endif /* IOB_SHM_RING_H_ */
