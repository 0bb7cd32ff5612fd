/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes shm/ring.h from both sides: one producer and one consumer attached to the same
 * control and data regions, driven by the input, with "tamper" operations in between that
 * write what the other side could write (either index, either closed flag, any word of the
 * data). The data region is a heap block of exactly its size, so ASan reports any access
 * past it.
 *
 * Checked always: every pointer the ring hands out (reserve, claim, peek, span) lies inside
 * the data region with its whole length, and lengths never exceed the maximum payload.
 * Checked while nothing was tampered with (the ring must then behave as a FIFO): every
 * message read is the one written, byte for byte; no call reports ZX_ERR_IO_DATA_INTEGRITY;
 * a consumer that says SHOULD_WAIT has read everything published; a producer that says
 * SHOULD_WAIT really has no room; PEER_CLOSED comes only after the producer closed and
 * everything was read.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_input.h"
#include "shm/ring.h"

#define FZ_MAX_OPS 512
#define FZ_MODEL 4096 /* messages in flight at most: capacity / 8 */

enum {
    OP_WRITE,
    OP_RESERVE_COMMIT,
    OP_CLAIM,
    OP_PFLUSH,
    OP_PWAIT,
    OP_PCLOSE,
    OP_READ,
    OP_PEEK,
    OP_SPAN,
    OP_CFLUSH,
    OP_CWAIT,
    OP_CCLOSE,
    OP_T_WRITE_INDEX,
    OP_T_READ_INDEX,
    OP_T_DATA,
    OP_T_FLAGS,
    OP_T_RECORD,
    OP_COUNT
};

typedef struct ring_fx {
    iob_ring_ctrl_t* ctrl;
    unsigned char* data;
    uint64_t data_size;
    iob_ring_producer_t p;
    iob_ring_consumer_t c;
    bool tampered;
    bool p_closed;
    /* Messages committed and not yet consumed, oldest first: length and sequence number. */
    uint32_t len[FZ_MODEL];
    uint64_t seq[FZ_MODEL];
    size_t head, count;
    uint64_t next_seq;
} ring_fx_t;

static unsigned char pattern(uint64_t seq, size_t i) {
    return (unsigned char)(seq * 131u + i * 7u + 1u);
}

static void fill(unsigned char* dst, uint64_t seq, size_t len) {
    for (size_t i = 0; i < len; i++) {
        dst[i] = pattern(seq, i);
    }
}

static void push(ring_fx_t* f, size_t len) {
    FZ_CHECK(f->count < FZ_MODEL);
    size_t at = (f->head + f->count) % FZ_MODEL;
    f->len[at] = (uint32_t)len;
    f->seq[at] = f->next_seq++;
    f->count++;
}

/* The message k places behind the oldest unconsumed one matches what was written. */
static void expect(const ring_fx_t* f, size_t k, const unsigned char* msg, size_t len) {
    if (f->tampered) {
        return;
    }
    FZ_CHECK(k < f->count);
    size_t at = (f->head + k) % FZ_MODEL;
    FZ_CHECK(len == f->len[at]);
    for (size_t i = 0; i < len; i++) {
        FZ_CHECK(msg[i] == pattern(f->seq[at], i));
    }
}

static void pop(ring_fx_t* f, size_t n) {
    if (f->tampered) {
        return;
    }
    FZ_CHECK(n <= f->count);
    f->head = (f->head + n) % FZ_MODEL;
    f->count -= n;
}

/* A region the ring handed out: inside the data region, whole. */
static void in_data(const ring_fx_t* f, const void* at, size_t len) {
    const unsigned char* p = at;
    FZ_CHECK(p >= f->data && p <= f->data + f->data_size);
    FZ_CHECK(len <= (size_t)(f->data + f->data_size - p));
    FZ_CHECK(((uintptr_t)p % IOB_RING_ALIGN) == 0);
}

static void status_ok(const ring_fx_t* f, zx_status_t st) {
    if (!f->tampered) {
        FZ_CHECK(st != ZX_ERR_IO_DATA_INTEGRITY);
    }
}

/* A consumer that found nothing has consumed everything published (untampered). */
static void consumer_idle(const ring_fx_t* f, zx_status_t st) {
    if (f->tampered) {
        return;
    }
    if (st == ZX_ERR_SHOULD_WAIT || st == ZX_ERR_PEER_CLOSED) {
        FZ_CHECK(f->c.read_pos == atomic_load(&f->ctrl->write_index));
        FZ_CHECK(f->c.read_pos == f->p.published);
    }
    if (st == ZX_ERR_PEER_CLOSED) {
        FZ_CHECK(f->p_closed);
    }
}

/* A producer that found no room has none, even with every released byte taken back. */
static void producer_full(const ring_fx_t* f, zx_status_t st, size_t len) {
    if (f->tampered || st != ZX_ERR_SHOULD_WAIT) {
        return;
    }
    uint64_t rec = IOB_RING_RECORD_HEADER + ((len + IOB_RING_ALIGN - 1) & ~(uint64_t)7);
    uint64_t tail = f->p.capacity - (f->p.write_pos & f->p.mask);
    uint64_t need = rec > tail ? tail + rec : rec;
    uint64_t r = atomic_load(&f->ctrl->read_index);
    FZ_CHECK(f->p.write_pos + need - r > f->p.capacity);
}

static size_t fz_len(fz_in_t* in, const ring_fx_t* f) {
    /* Mostly small, sometimes up to and past the maximum payload. */
    uint16_t v = fz_u16(in);
    if (v & 0x8000u) {
        return (size_t)(v & 0x7fffu) % (f->p.max_payload + 64);
    }
    return v % 200u;
}

static void op_write(ring_fx_t* f, fz_in_t* in) {
    size_t len = fz_len(in, f);
    unsigned char buf[8192];
    size_t n = len < sizeof buf ? len : sizeof buf;
    fill(buf, f->next_seq, n);
    zx_status_t st = iob_ring_write(&f->p, buf, n);
    status_ok(f, st);
    producer_full(f, st, n);
    if (!f->tampered) {
        FZ_CHECK((st == ZX_ERR_OUT_OF_RANGE) == (n > f->p.max_payload));
    }
    if (st == ZX_OK) {
        push(f, n);
    }
}

static void op_reserve_commit(ring_fx_t* f, fz_in_t* in) {
    size_t len = fz_len(in, f);
    size_t commit = fz_u16(in) % (len + 2);
    void* at = NULL;
    zx_status_t st = iob_ring_reserve(&f->p, len, &at);
    status_ok(f, st);
    producer_full(f, st, len);
    if (st != ZX_OK) {
        return;
    }
    in_data(f, at, len);
    size_t written = commit < len ? commit : len;
    fill(at, f->next_seq, written);
    st = iob_ring_commit(&f->p, commit);
    FZ_CHECK(st == (commit > len ? ZX_ERR_OUT_OF_RANGE : ZX_OK));
    if (st == ZX_OK) {
        push(f, commit);
    } else {
        /* The reservation is still open: a second commit within it goes through. */
        FZ_CHECK(iob_ring_commit(&f->p, written) == ZX_OK);
        push(f, written);
    }
    FZ_CHECK(iob_ring_commit(&f->p, 0) == ZX_ERR_BAD_STATE);
}

static void op_claim(ring_fx_t* f, fz_in_t* in) {
    iob_ring_claim_t claim;
    iob_ring_claim_begin(&f->p, &claim);
    unsigned n = fz_u8(in) % 9u;
    for (unsigned i = 0; i < n; i++) {
        size_t len = fz_len(in, f);
        void* at = iob_ring_claim_next(&f->p, &claim, len);
        if (at == NULL) {
            break;
        }
        in_data(f, at, len);
        fill(at, f->next_seq, len);
        push(f, len);
    }
    iob_ring_claim_end(&f->p, &claim);
}

static void check_msg(ring_fx_t* f, size_t k, const void* msg, size_t len) {
    in_data(f, msg, len);
    FZ_CHECK(len <= f->c.max_payload);
    expect(f, k, msg, len);
}

static void op_read(ring_fx_t* f, fz_in_t* in) {
    static unsigned char buf[8192];
    size_t cap = fz_u16(in) % (sizeof buf + 1);
    size_t len = 0;
    zx_status_t st = iob_ring_read(&f->c, buf, cap, &len);
    status_ok(f, st);
    consumer_idle(f, st);
    if (st == ZX_OK) {
        FZ_CHECK(len <= cap);
        expect(f, 0, buf, len);
        pop(f, 1);
    } else if (st == ZX_ERR_BUFFER_TOO_SMALL) {
        FZ_CHECK(len > cap);
    }
}

static void op_peek(ring_fx_t* f, fz_in_t* in) {
    const void* msg = NULL;
    size_t len = 0;
    zx_status_t st = iob_ring_peek(&f->c, &msg, &len);
    status_ok(f, st);
    consumer_idle(f, st);
    if (st != ZX_OK) {
        return;
    }
    check_msg(f, 0, msg, len);
    if (fz_u8(in) & 1u) {
        iob_ring_release(&f->c);
        pop(f, 1);
    }
}

static void op_span(ring_fx_t* f, fz_in_t* in) {
    iob_ring_span_t span;
    const void* msg = NULL;
    size_t len = 0;
    zx_status_t st = iob_ring_span_begin(&f->c, &span, &msg, &len);
    status_ok(f, st);
    consumer_idle(f, st);
    if (st != ZX_OK) {
        return;
    }
    check_msg(f, 0, msg, len);
    unsigned more = fz_u8(in) % 40u;
    for (unsigned i = 0; i < more; i++) {
        if (iob_ring_span_next(&f->c, &span, &msg, &len) != ZX_OK) {
            break;
        }
        check_msg(f, span.count - 1, msg, len);
    }
    uint32_t count = span.count;
    iob_ring_span_end(&f->c, &span);
    pop(f, count);
}

static void tamper_index(fz_in_t* in, _Atomic uint64_t* index) {
    uint8_t mode = fz_u8(in);
    uint64_t v = fz_u64(in);
    /* Near the current value (the interesting lies), or anywhere. */
    uint64_t cur = atomic_load(index);
    atomic_store(index, (mode & 1u) ? v : cur + (uint64_t)(int64_t)(int16_t)v);
}

static void op(ring_fx_t* f, fz_in_t* in) {
    uint8_t code = fz_u8(in) % OP_COUNT;
    switch (code) {
    case OP_WRITE:
        op_write(f, in);
        break;
    case OP_RESERVE_COMMIT:
        op_reserve_commit(f, in);
        break;
    case OP_CLAIM:
        op_claim(f, in);
        break;
    case OP_PFLUSH:
        iob_ring_producer_flush(&f->p);
        break;
    case OP_PWAIT: {
        size_t len = fz_len(in, f);
        /* A deadline in the past: one look (and its spin), then TIMED_OUT. */
        zx_status_t st = iob_ring_producer_wait(&f->p, len, 0);
        status_ok(f, st);
        break;
    }
    case OP_PCLOSE:
        iob_ring_producer_close(&f->p);
        f->p_closed = true;
        break;
    case OP_READ:
        op_read(f, in);
        break;
    case OP_PEEK:
        op_peek(f, in);
        break;
    case OP_SPAN:
        op_span(f, in);
        break;
    case OP_CFLUSH:
        iob_ring_consumer_flush(&f->c);
        break;
    case OP_CWAIT:
        (void)iob_ring_consumer_wait(&f->c, 0);
        break;
    case OP_CCLOSE:
        iob_ring_consumer_close(&f->c);
        break;
    case OP_T_WRITE_INDEX:
        f->tampered = true;
        tamper_index(in, &f->ctrl->write_index);
        break;
    case OP_T_READ_INDEX:
        f->tampered = true;
        tamper_index(in, &f->ctrl->read_index);
        break;
    case OP_T_DATA: {
        f->tampered = true;
        uint64_t off = (fz_u16(in) % f->data_size) & ~(uint64_t)7;
        uint64_t v = fz_u64(in);
        if (off + sizeof v <= f->data_size) {
            memcpy(f->data + off, &v, sizeof v);
        }
        break;
    }
    case OP_T_FLAGS: {
        f->tampered = true;
        uint8_t v = fz_u8(in);
        atomic_store(&f->ctrl->producer_closed, v & 1u);
        atomic_store(&f->ctrl->consumer_closed, (v >> 1) & 1u);
        break;
    }
    case OP_T_RECORD: {
        /*
         * The lie a producer is most likely to tell: a plausible record header (a message or
         * padding, of a length near what fits) at or just after where the consumer reads.
         */
        f->tampered = true;
        uint64_t off = (f->c.read_pos + 8u * fz_u8(in)) & f->c.mask;
        uint8_t kind = fz_u8(in);
        uint32_t type = (kind & 1u) ? IOB_RING_REC_PAD : IOB_RING_REC_MSG;
        uint64_t length = (kind & 2u) ? fz_u32(in) : f->c.max_payload - fz_u8(in);
        uint64_t header = ((uint64_t)type << 32) | (length & UINT32_MAX);
        memcpy(f->data + off, &header, sizeof header);
        break;
    }
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    fz_in_t in = {bytes, size, 0};
    uint8_t cfg = fz_u8(&in);
    ring_fx_t* f = calloc(1, sizeof *f);
    FZ_CHECK(f != NULL);
    /* A 4 or 8 KiB ring, in a data region of exactly that or a little more. */
    f->data_size = ((cfg & 1u) ? 8192u : 4096u) + ((cfg & 2u) ? 8u * (cfg >> 4) : 0u);
    f->ctrl = aligned_alloc(IOB_RING_LINE, sizeof *f->ctrl);
    f->data = malloc(f->data_size);
    FZ_CHECK(f->ctrl != NULL && f->data != NULL);
    memset(f->ctrl, 0, sizeof *f->ctrl);
    memset(f->data, 0, f->data_size);
    FZ_CHECK(iob_ring_format(f->ctrl, sizeof *f->ctrl, f->data_size) == ZX_OK);
    iob_ring_options_t po = {.batch = 1u + (fz_u8(&in) % 8u), .wait = IOB_RING_WAIT_SPIN};
    iob_ring_options_t co = {.batch = 1u + (fz_u8(&in) % 8u), .wait = IOB_RING_WAIT_SPIN};
    FZ_CHECK(iob_ring_producer_init(&f->p, f->ctrl, sizeof *f->ctrl, f->data, f->data_size,
                                    &po) == ZX_OK);
    FZ_CHECK(iob_ring_consumer_init(&f->c, f->ctrl, sizeof *f->ctrl, f->data, f->data_size,
                                    &co) == ZX_OK);
    for (int i = 0; i < FZ_MAX_OPS && fz_more(&in); i++) {
        op(f, &in);
    }
    /* Untampered, a flushed producer's messages all come out, in order, then nothing. */
    if (!f->tampered) {
        iob_ring_producer_flush(&f->p);
        static unsigned char buf[8192];
        size_t len;
        while (f->count > 0) {
            FZ_CHECK(iob_ring_read(&f->c, buf, sizeof buf, &len) == ZX_OK);
            expect(f, 0, buf, len);
            pop(f, 1);
        }
        zx_status_t st = iob_ring_read(&f->c, buf, sizeof buf, &len);
        FZ_CHECK(st == (f->p_closed ? ZX_ERR_PEER_CLOSED : ZX_ERR_SHOULD_WAIT));
    }
    iob_ring_producer_fini(&f->p);
    iob_ring_consumer_fini(&f->c);
    free(f->data);
    free(f->ctrl);
    free(f);
    return 0;
}
