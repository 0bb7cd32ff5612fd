/* SPDX-License-Identifier: MIT */
/*
 * The library's record of its IOB mappings: address ranges ("pieces"), each belonging to
 * one broker mapping record. A partial unmap splits or trims pieces; a mapping ends when
 * its last byte is gone, and only then is it reported to iobd (docs/zircon-iob.md L, "Lifetimes").
 *
 * Pure bookkeeping: no syscalls, no locking (the caller serialises, together with the
 * mmap/munmap calls that the table mirrors). Internal to libiob.
 */
#ifndef IOB_CLIENT_LIB_MAPTABLE_H_
#define IOB_CLIENT_LIB_MAPTABLE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zircon/types.h>

typedef struct iob__mapping {
    uint64_t mapping_id; /* the broker's record */
    uint64_t session_id; /* the session that holds the record */
    uint64_t live_bytes; /* bytes of this mapping still mapped */
} iob__mapping_t;

typedef struct iob__piece {
    uintptr_t start;
    uintptr_t end; /* exclusive */
    iob__mapping_t* mapping;
} iob__piece_t;

typedef struct iob__maptable {
    iob__piece_t* pieces; /* sorted by start, never overlapping */
    size_t count;
    size_t cap;
} iob__maptable_t;

void iob__maptable_init(iob__maptable_t* table);
/* Frees the table and every mapping record still in it. */
void iob__maptable_fini(iob__maptable_t* table);

/*
 * Records [start, start + len) as mapping_id. The range must not overlap a piece
 * (ZX_ERR_ALREADY_EXISTS) and len must be > 0 with no wrap (ZX_ERR_INVALID_ARGS).
 * ZX_ERR_NO_MEMORY on allocation failure; nothing changes on any error.
 */
zx_status_t iob__maptable_add(iob__maptable_t* table, uintptr_t start, size_t len,
                              uint64_t mapping_id, uint64_t session_id);

/*
 * Makes room for `extra` more pieces, so that the next adds and removes (a remove splits
 * at most one piece) cannot fail for lack of memory. ZX_ERR_NO_MEMORY.
 */
zx_status_t iob__maptable_reserve(iob__maptable_t* table, size_t extra);

/*
 * Calls fn for the part of each piece inside [start, start + len), in address order.
 * Stops and returns the first non-ZX_OK status fn returns.
 */
zx_status_t iob__maptable_for_each_piece(const iob__maptable_t* table, uintptr_t start, size_t len,
                                         zx_status_t (*fn)(void* ctx, uintptr_t at, size_t n),
                                         void* ctx);

/* True when some piece overlaps [start, start + len). */
bool iob__maptable_overlaps(const iob__maptable_t* table, uintptr_t start, size_t len);

/*
 * Calls fn for each gap of [start, start + len) not covered by a piece, in address order
 * (for SPECIFIC_OVERWRITE, which may replace only IOB mappings and free space). Stops and
 * returns the first non-ZX_OK status fn returns.
 */
zx_status_t iob__maptable_for_each_gap(const iob__maptable_t* table, uintptr_t start, size_t len,
                                       zx_status_t (*fn)(void* ctx, uintptr_t gap, size_t gap_len),
                                       void* ctx);

/*
 * Removes [start, start + len) from every piece it overlaps (splitting pieces as needed)
 * and calls ended(ctx, mapping) for each mapping whose last byte went away, after the
 * table is consistent again; the callee owns (frees) that record. *removed_bytes is the
 * number of bytes removed. ZX_ERR_NO_MEMORY, with nothing changed, only when a split needs
 * memory it cannot get; callers therefore update the table before they munmap.
 */
zx_status_t iob__maptable_remove(iob__maptable_t* table, uintptr_t start, size_t len,
                                 void (*ended)(void* ctx, iob__mapping_t* mapping), void* ctx,
                                 uint64_t* removed_bytes);

#endif /* IOB_CLIENT_LIB_MAPTABLE_H_ */
