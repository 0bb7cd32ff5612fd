/* SPDX-License-Identifier: MIT */
/* The library's mapping table (maptable.h). */
#include "client/lib/maptable.h"

#include <stdlib.h>
#include <string.h>

void iob__maptable_init(iob__maptable_t* table) {
    memset(table, 0, sizeof *table);
}

void iob__maptable_fini(iob__maptable_t* table) {
    /* Several pieces may share a record: free each record once, at its last piece. */
    for (size_t i = 0; i < table->count; i++) {
        iob__mapping_t* m = table->pieces[i].mapping;
        uint64_t piece_len = table->pieces[i].end - table->pieces[i].start;
        m->live_bytes -= piece_len;
        if (m->live_bytes == 0) {
            free(m);
        }
    }
    free(table->pieces);
    memset(table, 0, sizeof *table);
}

zx_status_t iob__maptable_reserve(iob__maptable_t* table, size_t extra) {
    if (table->count + extra <= table->cap) {
        return ZX_OK;
    }
    size_t cap = table->cap != 0 ? table->cap * 2 : 16;
    while (cap < table->count + extra) {
        cap *= 2;
    }
    iob__piece_t* p = realloc(table->pieces, cap * sizeof *p);
    if (p == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    table->pieces = p;
    table->cap = cap;
    return ZX_OK;
}

/* Index of the first piece whose end is above addr (the first that could overlap it). */
static size_t iob__maptable_lower(const iob__maptable_t* table, uintptr_t addr) {
    size_t lo = 0;
    size_t hi = table->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (table->pieces[mid].end <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

bool iob__maptable_overlaps(const iob__maptable_t* table, uintptr_t start, size_t len) {
    if (len == 0) {
        return false;
    }
    size_t i = iob__maptable_lower(table, start);
    return i < table->count && table->pieces[i].start < start + len;
}

zx_status_t iob__maptable_add(iob__maptable_t* table, uintptr_t start, size_t len,
                              uint64_t mapping_id, uint64_t session_id) {
    if (len == 0 || start + len < start) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (iob__maptable_overlaps(table, start, len)) {
        return ZX_ERR_ALREADY_EXISTS;
    }
    if (iob__maptable_reserve(table, 1) != ZX_OK) {
        return ZX_ERR_NO_MEMORY;
    }
    iob__mapping_t* m = malloc(sizeof *m);
    if (m == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    m->mapping_id = mapping_id;
    m->session_id = session_id;
    m->live_bytes = len;
    size_t i = iob__maptable_lower(table, start);
    memmove(&table->pieces[i + 1], &table->pieces[i], (table->count - i) * sizeof table->pieces[0]);
    table->pieces[i] = (iob__piece_t){.start = start, .end = start + len, .mapping = m};
    table->count++;
    return ZX_OK;
}

zx_status_t iob__maptable_for_each_gap(const iob__maptable_t* table, uintptr_t start, size_t len,
                                       zx_status_t (*fn)(void* ctx, uintptr_t gap, size_t gap_len),
                                       void* ctx) {
    uintptr_t end = start + len;
    uintptr_t cursor = start;
    for (size_t i = iob__maptable_lower(table, start); i < table->count && cursor < end; i++) {
        const iob__piece_t* p = &table->pieces[i];
        if (p->start >= end) {
            break;
        }
        if (p->start > cursor) {
            zx_status_t st = fn(ctx, cursor, p->start - cursor);
            if (st != ZX_OK) {
                return st;
            }
        }
        cursor = p->end;
    }
    if (cursor < end) {
        return fn(ctx, cursor, end - cursor);
    }
    return ZX_OK;
}

zx_status_t iob__maptable_for_each_piece(const iob__maptable_t* table, uintptr_t start, size_t len,
                                         zx_status_t (*fn)(void* ctx, uintptr_t at, size_t n),
                                         void* ctx) {
    uintptr_t end = start + len;
    for (size_t i = iob__maptable_lower(table, start); i < table->count; i++) {
        const iob__piece_t* p = &table->pieces[i];
        if (p->start >= end) {
            break;
        }
        uintptr_t a = p->start > start ? p->start : start;
        uintptr_t b = p->end < end ? p->end : end;
        zx_status_t st = fn(ctx, a, b - a);
        if (st != ZX_OK) {
            return st;
        }
    }
    return ZX_OK;
}

zx_status_t iob__maptable_remove(iob__maptable_t* table, uintptr_t start, size_t len,
                                 void (*ended)(void* ctx, iob__mapping_t* mapping), void* ctx,
                                 uint64_t* removed_bytes) {
    *removed_bytes = 0;
    if (len == 0 || start + len < start) {
        return ZX_OK;
    }
    uintptr_t end = start + len;
    size_t first = iob__maptable_lower(table, start);
    /* Only a piece that strictly contains the range needs a new slot (split in two). */
    if (first < table->count && table->pieces[first].start < start &&
        table->pieces[first].end > end && iob__maptable_reserve(table, 1) != ZX_OK) {
        return ZX_ERR_NO_MEMORY;
    }

    /*
     * Records whose last byte goes away are collected here and handed out at the end, so
     * the callback never sees a half-updated table.
     */
    iob__mapping_t** done = NULL;
    size_t ndone = 0;
    size_t done_cap = 0;
    uint64_t removed = 0;

    size_t i = first;
    while (i < table->count && table->pieces[i].start < end) {
        iob__piece_t* p = &table->pieces[i];
        uintptr_t cut_start = p->start > start ? p->start : start;
        uintptr_t cut_end = p->end < end ? p->end : end;
        uint64_t cut = cut_end - cut_start;
        iob__mapping_t* m = p->mapping;
        removed += cut;
        m->live_bytes -= cut;
        if (p->start < cut_start && p->end > cut_end) {
            /* Split: [p->start, cut_start) stays here, [cut_end, p->end) goes after it. */
            memmove(&table->pieces[i + 2], &table->pieces[i + 1],
                    (table->count - i - 1) * sizeof table->pieces[0]);
            table->pieces[i + 1] = (iob__piece_t){.start = cut_end, .end = p->end, .mapping = m};
            p->end = cut_start;
            table->count++;
            break; /* the range lay strictly inside this piece */
        } else if (p->start < cut_start) {
            p->end = cut_start;
            i++;
        } else if (p->end > cut_end) {
            p->start = cut_end;
            i++;
        } else {
            memmove(&table->pieces[i], &table->pieces[i + 1],
                    (table->count - i - 1) * sizeof table->pieces[0]);
            table->count--;
        }
        if (m->live_bytes == 0) {
            if (ndone == done_cap) {
                size_t cap = done_cap != 0 ? done_cap * 2 : 8;
                iob__mapping_t** d = realloc(done, cap * sizeof *d);
                if (d == NULL) {
                    /*
                     * The table is already updated; losing the report leaves the server
                     * counting this mapping until the process exits, which is safe.
                     */
                    free(m);
                    continue;
                }
                done = d;
                done_cap = cap;
            }
            done[ndone++] = m;
        }
    }
    *removed_bytes = removed;
    for (size_t k = 0; k < ndone; k++) {
        ended(ctx, done[k]);
    }
    free(done);
    return ZX_OK;
}
