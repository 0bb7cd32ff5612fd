/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the mediated-write ring buffer (shm/mediated.h, A.7) from both sides: iobd's
 * appender (iob_mwrb_write and iob_mwrb_write_at with a cursor of its own, which read
 * head and tail from a page the reader can write)
 * and the reader (iob_mwrb_peek / iob_mwrb_advance and iob_mwrb_drain, which trust nothing
 * in the region),
 * with tamper operations that write head, tail or any word of the data as a hostile mapper
 * could. The region is a heap block of exactly its size, so ASan reports any access past it.
 *
 * Checked always: the statuses each function documents, and nothing written by a failed
 * append. Checked while nothing was tampered with: the reader gets exactly the records
 * appended, in order (tag, length, bytes), and an append says NO_SPACE only when the
 * record does not fit beside the unread ones.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_input.h"
#include "shm/mediated.h"

#define FZ_MAX_OPS 256
#define FZ_MODEL 1024

enum { OP_WRITE, OP_PEEK, OP_T_HEAD, OP_T_TAIL, OP_T_DATA, OP_DRAIN, OP_COUNT };

typedef struct mwrb_fx {
    uint8_t* base;
    uint64_t size, page;
    iob_mwrb_reader_t reader;
    iob_mwrb_cursor_t cursor; /* the appender's, kept across appends as iobd keeps it */
    bool tampered;
    uint32_t len[FZ_MODEL];
    uint64_t tag[FZ_MODEL];
    uint64_t seq[FZ_MODEL];
    size_t head, count;
    uint64_t next_seq;
    uint64_t unread; /* bytes of the records in the model */
} mwrb_fx_t;

static uint8_t pattern(uint64_t seq, size_t i) {
    return (uint8_t)(seq * 37u + i * 13u + 5u);
}

static uint64_t round8(uint64_t v) {
    return (v + 7u) & ~(uint64_t)7u;
}

static void op_write(mwrb_fx_t* f, fz_in_t* in) {
    static uint8_t payload[IOB_MWRB_MAX_PAYLOAD + 64];
    zx_iovec_t vecs[IOB_MWRB_MAX_VECTORS + 2];
    size_t n = fz_u8(in) % (IOB_MWRB_MAX_VECTORS + 2);
    uint64_t tag = fz_u64(in);
    uint8_t flags = fz_u8(in);
    size_t total = 0;
    bool unreadable = false;
    for (size_t i = 0; i < n; i++) {
        uint16_t v = fz_u16(in);
        size_t cap = (v & 0x8000u) ? (v & 0x7fffu) * 3u : v % 64u;
        if (total + cap > sizeof payload) {
            cap = sizeof payload - total;
        }
        vecs[i].capacity = cap;
        vecs[i].buffer = payload + total;
        if ((flags & 0x80u) && i == (flags & 7u) && cap > 0) {
            vecs[i].buffer = NULL; /* what the caller's process could not read */
            unreadable = true;
        }
        total += cap;
    }
    for (size_t i = 0; i < total; i++) {
        payload[i] = pattern(f->next_seq, i);
    }
    const zx_iovec_t* arg = (flags & 0x40u) && n > 0 ? NULL : vecs;
    uint8_t* copy = malloc(f->size);
    FZ_CHECK(copy != NULL);
    memcpy(copy, f->base, f->size);
    /* With the appender's cursor (iobd's way) or without: the same ring either way. */
    zx_status_t st = (flags & 0x20u) ? iob_mwrb_write(f->base, f->size, f->page, tag, arg, n)
                                     : iob_mwrb_write_at(f->base, f->size, f->page, tag, arg, n,
                                                         &f->cursor);
    if (st != ZX_OK) {
        FZ_CHECK(memcmp(copy, f->base, f->size) == 0); /* nothing written */
    }
    free(copy);
    uint64_t record = round8(total + IOB_MWRB_RECORD_HEADER_SIZE);
    uint64_t b = f->size - f->page;
    if (n > IOB_MWRB_MAX_VECTORS || arg == NULL || total > IOB_MWRB_MAX_PAYLOAD) {
        FZ_CHECK(st == ZX_ERR_INVALID_ARGS);
        return;
    }
    if (record > b) {
        FZ_CHECK(st == ZX_ERR_NO_SPACE);
        return;
    }
    if (f->tampered) {
        return;
    }
    if (f->unread + record > b) {
        FZ_CHECK(st == ZX_ERR_NO_SPACE);
        return;
    }
    FZ_CHECK(st == (unreadable ? ZX_ERR_NOT_FOUND : ZX_OK));
    if (st == ZX_OK) {
        FZ_CHECK(f->count < FZ_MODEL);
        size_t at = (f->head + f->count) % FZ_MODEL;
        f->len[at] = (uint32_t)total;
        f->tag[at] = tag;
        f->seq[at] = f->next_seq++;
        f->count++;
        f->unread += record;
    }
}

static void op_peek(mwrb_fx_t* f, fz_in_t* in) {
    static uint8_t buf[IOB_MWRB_MAX_PAYLOAD + 64];
    uint16_t v = fz_u16(in);
    size_t cap = (v & 0x8000u) ? sizeof buf : v % 256u;
    iob_mwrb_record_t rec;
    memset(&rec, 0, sizeof rec);
    zx_status_t st = iob_mwrb_peek(&f->reader, &rec, cap > 0 ? buf : NULL, cap);
    if (st == ZX_OK || st == ZX_ERR_BUFFER_TOO_SMALL) {
        FZ_CHECK(rec.length <= IOB_MWRB_MAX_PAYLOAD);
        FZ_CHECK(rec.size == round8(rec.length + IOB_MWRB_RECORD_HEADER_SIZE));
        FZ_CHECK((st == ZX_OK) == (rec.length <= cap));
        /* Found at tail, and wholly before head (nobody moved either during the call). */
        uint64_t head = atomic_load(&f->reader.header->head);
        uint64_t tail = atomic_load(&f->reader.header->tail);
        FZ_CHECK(rec.position == tail && rec.size <= head - tail);
    }
    if (!f->tampered) {
        if (f->count == 0) {
            FZ_CHECK(st == ZX_ERR_SHOULD_WAIT);
            return;
        }
        FZ_CHECK(st == ZX_OK || st == ZX_ERR_BUFFER_TOO_SMALL);
        size_t at = f->head % FZ_MODEL;
        FZ_CHECK(rec.tag == f->tag[at] && rec.length == f->len[at]);
        if (st == ZX_OK) {
            for (size_t i = 0; i < rec.length; i++) {
                FZ_CHECK(buf[i] == pattern(f->seq[at], i));
            }
        }
    }
    if (st == ZX_OK && (v & 0x4000u) == 0) {
        FZ_CHECK(iob_mwrb_advance(&f->reader, &rec) == ZX_OK);
        if (!f->tampered) {
            f->head = (f->head + 1) % FZ_MODEL;
            f->count--;
            f->unread -= rec.size;
        }
    }
}

/* One drain's view: the records it handed over against the model and the counters. */
typedef struct drain_check {
    mwrb_fx_t* f;
    const uint8_t* buf;
    size_t cap;
    uint64_t next;  /* where the next record must start */
    uint64_t head;  /* head when the drain began (nothing moves it during the call) */
    size_t visited;
    size_t stop_after;
} drain_check_t;

static bool drain_visit(void* ctx, const iob_mwrb_record_t* rec, const void* payload) {
    drain_check_t* d = ctx;
    mwrb_fx_t* f = d->f;
    FZ_CHECK(payload == (d->cap > 0 ? d->buf : NULL) && rec->length <= d->cap);
    FZ_CHECK(rec->size == round8(rec->length + IOB_MWRB_RECORD_HEADER_SIZE));
    FZ_CHECK(rec->position == d->next && rec->size <= d->head - d->next);
    d->next += rec->size;
    if (!f->tampered) {
        FZ_CHECK(f->count > 0);
        size_t at = f->head % FZ_MODEL;
        FZ_CHECK(rec->tag == f->tag[at] && rec->length == f->len[at]);
        for (size_t i = 0; i < rec->length; i++) {
            FZ_CHECK(d->buf[i] == pattern(f->seq[at], i));
        }
        f->head = (f->head + 1) % FZ_MODEL;
        f->count--;
        f->unread -= rec->size;
    }
    return ++d->visited != d->stop_after;
}

static void op_drain(mwrb_fx_t* f, fz_in_t* in) {
    static uint8_t buf[IOB_MWRB_MAX_PAYLOAD + 64];
    uint16_t v = fz_u16(in);
    drain_check_t d = {.f = f,
                       .buf = buf,
                       .cap = (v & 0x8000u) ? sizeof buf : v % 256u,
                       .next = atomic_load(&f->reader.header->tail),
                       .head = atomic_load(&f->reader.header->head),
                       .stop_after = (v >> 8) & 7u};
    size_t before = f->count;
    size_t count = SIZE_MAX;
    zx_status_t st = iob_mwrb_drain(&f->reader, d.cap > 0 ? buf : NULL, d.cap, drain_visit, &d,
                                    &count);
    FZ_CHECK(st == ZX_OK || st == ZX_ERR_SHOULD_WAIT || st == ZX_ERR_BUFFER_TOO_SMALL ||
             st == ZX_ERR_IO_DATA_INTEGRITY);
    FZ_CHECK(count == d.visited);
    FZ_CHECK(st != ZX_OK || count > 0);
    FZ_CHECK(st != ZX_ERR_SHOULD_WAIT || count == 0);
    /* Exactly the records handed over are consumed, with one store at the end. */
    if (count > 0) {
        FZ_CHECK(atomic_load(&f->reader.header->tail) == d.next);
    }
    if (!f->tampered) {
        FZ_CHECK(st != ZX_ERR_IO_DATA_INTEGRITY);
        FZ_CHECK((st == ZX_ERR_SHOULD_WAIT) == (before == 0));
        if (st == ZX_OK && d.stop_after == 0) {
            FZ_CHECK(f->count == 0); /* everything present was read */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    fz_in_t in = {bytes, size, 0};
    static const uint64_t pages[] = {16, 64, 256, 4096};
    uint8_t cfg = fz_u8(&in);
    mwrb_fx_t* f = calloc(1, sizeof *f);
    FZ_CHECK(f != NULL);
    f->page = pages[cfg & 3u];
    f->size = f->page * (2u + ((cfg >> 2) & 7u));
    f->base = malloc(f->size); /* 16-aligned, and ASan knows its exact end */
    FZ_CHECK(f->base != NULL);
    memset(f->base, 0, f->size);
    FZ_CHECK(iob_mwrb_reader_init(&f->reader, f->base, f->size, f->page) == ZX_OK);
    /* A ring that has already wrapped a few times: head and tail start anywhere (8-aligned). */
    uint64_t start = (fz_u32(&in) & ~UINT32_C(7));
    iob_mwrb_header_t* h = (iob_mwrb_header_t*)(void*)f->base;
    atomic_store(&h->head, start);
    atomic_store(&h->tail, start);
    for (int i = 0; i < FZ_MAX_OPS && fz_more(&in); i++) {
        switch (fz_u8(&in) % OP_COUNT) {
        case OP_WRITE:
            op_write(f, &in);
            break;
        case OP_PEEK:
            op_peek(f, &in);
            break;
        case OP_DRAIN:
            op_drain(f, &in);
            break;
        case OP_T_HEAD:
            f->tampered = true;
            fz_tamper_word(&in, &h->head);
            break;
        case OP_T_TAIL:
            f->tampered = true;
            fz_tamper_word(&in, &h->tail);
            break;
        case OP_T_DATA: {
            f->tampered = true;
            fz_poke(&in, f->base, f->size, fz_u32(&in) % f->size);
            break;
        }
        default:
            break;
        }
    }
    free(f->base);
    free(f);
    return 0;
}
