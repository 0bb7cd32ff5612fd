/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the ID allocator (shm/mediated.h, A.8): the allocate path iobd runs against a
 * container any writer of the region may have scribbled on (iob_idalloc_check, then
 * iob_idalloc_allocate), and the readers clients run (iob_idalloc_next_id,
 * iob_idalloc_lookup), with tamper operations that write the header or any word as a
 * hostile mapper could. The region is a heap block of exactly its size (any size from 8
 * bytes, not only multiples of 8), so ASan reports any access past it.
 *
 * Checked always: check and allocate agree (the same status for the same header), every
 * blob lookup returns lies inside the region, and a failed allocation writes nothing.
 * Checked while nothing was tampered with: IDs are 0, 1, 2, ...; every lookup returns the
 * bytes allocated under that ID; NO_MEMORY comes exactly when the blob and its slot do not
 * fit.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_input.h"
#include "shm/mediated.h"

#define FZ_MAX_OPS 256
#define FZ_MAX_IDS 1024

enum { OP_ALLOCATE, OP_LOOKUP, OP_NEXT_ID, OP_T_HEADER, OP_T_WORD, OP_COUNT };

typedef struct idalloc_fx {
    uint8_t* base;
    uint64_t size;
    bool tampered;
    uint32_t ids;                /* allocated so far (untampered) */
    uint32_t blob_len[FZ_MAX_IDS];
    uint64_t free_bytes;         /* between the index and the blobs (untampered) */
} idalloc_fx_t;

static uint8_t pattern(uint32_t id, size_t i) {
    return (uint8_t)(id * 29u + i * 3u + 11u);
}

static void op_allocate(idalloc_fx_t* f, fz_in_t* in) {
    static uint8_t blob[16384];
    uint16_t v = fz_u16(in);
    uint64_t len = (v & 0x8000u) ? (v & 0x3fffu) : v % 48u;
    bool unreadable = (v & 0x4000u) != 0 && len > 0;
    bool id_null = fz_u8(in) == 0xffu;
    uint32_t next = f->ids;
    for (size_t i = 0; i < len; i++) {
        blob[i] = pattern(next, i);
    }
    zx_status_t check = iob_idalloc_check(f->base, f->size, len, id_null);
    uint8_t* copy = malloc(f->size);
    FZ_CHECK(copy != NULL);
    memcpy(copy, f->base, f->size);
    uint32_t id = UINT32_MAX;
    zx_status_t st =
        iob_idalloc_allocate(f->base, f->size, unreadable ? NULL : blob, len, id_null ? NULL : &id);
    if (st != ZX_OK && st != ZX_ERR_IO_DATA_INTEGRITY) {
        /* Refused before the header moved (a slot found taken after it may not be). */
        FZ_CHECK(memcmp(copy, f->base, f->size) == 0);
    }
    free(copy);
    /* iobd's pre-check (AllocateId over gRPC) answers as the allocation does. */
    if (unreadable) {
        /* The blob's readability is checked after the room: INVALID_ARGS from there on. */
        FZ_CHECK(st == check || st == ZX_ERR_INVALID_ARGS);
    } else {
        FZ_CHECK(st == check);
    }
    if (f->tampered) {
        return;
    }
    bool fits = f->free_bytes >= IOB_IDALLOC_INDEX_SIZE &&
                f->free_bytes - IOB_IDALLOC_INDEX_SIZE >= len;
    if (!fits) {
        FZ_CHECK(st == ZX_ERR_NO_MEMORY);
        return;
    }
    FZ_CHECK(st == (unreadable || id_null ? ZX_ERR_INVALID_ARGS : ZX_OK));
    if (st == ZX_OK) {
        FZ_CHECK(id == next);
        if (next < FZ_MAX_IDS) {
            f->blob_len[next] = (uint32_t)len;
        }
        f->ids++;
        f->free_bytes -= IOB_IDALLOC_INDEX_SIZE + len;
    }
}

static void op_lookup(idalloc_fx_t* f, fz_in_t* in) {
    uint32_t id = fz_u8(in) == 0xffu ? fz_u32(in) : fz_u8(in);
    const void* blob = NULL;
    uint32_t len = 0;
    zx_status_t st = iob_idalloc_lookup(f->base, f->size, id, &blob, &len);
    if (st == ZX_OK) {
        const uint8_t* b = blob;
        FZ_CHECK(b >= f->base && b <= f->base + f->size);
        FZ_CHECK(len <= (uint64_t)(f->base + f->size - b));
        volatile uint8_t sum = 0;
        for (uint32_t i = 0; i < len; i++) {
            sum ^= b[i]; /* ASan: every byte is readable */
        }
        (void)sum;
    }
    if (f->tampered) {
        return;
    }
    if (id >= f->ids) {
        FZ_CHECK(st == ZX_ERR_NOT_FOUND);
        return;
    }
    FZ_CHECK(st == ZX_OK);
    if (id < FZ_MAX_IDS) {
        FZ_CHECK(len == f->blob_len[id]);
        for (uint32_t i = 0; i < len; i++) {
            FZ_CHECK(((const uint8_t*)blob)[i] == pattern(id, i));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    fz_in_t in = {bytes, size, 0};
    idalloc_fx_t* f = calloc(1, sizeof *f);
    FZ_CHECK(f != NULL);
    f->size = 8u + fz_u16(&in) % 8192u;
    f->base = malloc(f->size); /* 16-aligned, and ASan knows its exact end */
    FZ_CHECK(f->base != NULL);
    memset(f->base, 0, f->size);
    FZ_CHECK(iob_idalloc_init(f->base, f->size) == ZX_OK);
    f->free_bytes = f->size - IOB_IDALLOC_HEADER_SIZE;
    for (int i = 0; i < FZ_MAX_OPS && fz_more(&in); i++) {
        switch (fz_u8(&in) % OP_COUNT) {
        case OP_ALLOCATE:
            op_allocate(f, &in);
            break;
        case OP_LOOKUP:
            op_lookup(f, &in);
            break;
        case OP_NEXT_ID: {
            uint32_t next = UINT32_MAX;
            zx_status_t st = iob_idalloc_next_id(f->base, f->size, &next);
            if (!f->tampered) {
                FZ_CHECK(st == ZX_OK && next == f->ids);
            }
            break;
        }
        case OP_T_HEADER: {
            f->tampered = true;
            fz_tamper_word(&in, (_Atomic uint64_t*)(void*)f->base);
            break;
        }
        case OP_T_WORD: {
            f->tampered = true;
            fz_poke(&in, f->base, f->size, fz_u16(&in) % f->size);
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
