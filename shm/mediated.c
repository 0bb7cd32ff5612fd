/* SPDX-License-Identifier: MIT */
/*
 * The mediated-write ring buffer (docs/zircon-iob.md A.7) and the ID allocator (A.8): the server's
 * writers and the clients' validated readers. See mediated.h for the layouts and the trust
 * model; the rule that runs through this file is "load a shared word once, validate the
 * local copy, derive every address from validated locals".
 */
#include "shm/mediated.h"

#include <stdbool.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "A.8 packs two u32 into one atomic u64 word assuming little-endian (x86-64, arm64)"
#endif

/* ---- ring buffer ---- */

static uint64_t round_up8(uint64_t value) {
    return (value + (IOB_MWRB_RECORD_ALIGN - 1)) & ~(uint64_t)(IOB_MWRB_RECORD_ALIGN - 1);
}

static bool aligned8(const void* p) {
    return ((uintptr_t)p & 7u) == 0;
}

/*
 * A ring needs a header page and at least one data page, and a page size that keeps every
 * record header (16 bytes at multiples of 8) inside one page-aligned data area whose size B
 * is a multiple of 8.
 */
static bool ring_geometry_valid(const void* base, uint64_t size, uint64_t page_size) {
    /* Masks, not a division: every append checks this (page_size is a power of two first). */
    return base != NULL && aligned8(base) && page_size >= 16 &&
           (page_size & (page_size - 1)) == 0 && (size & (page_size - 1)) == 0 &&
           size / 2 >= page_size;
}

/* Copies len (<= B) bytes to data[offset ...], wrapping at B; returns the offset after. */
static uint64_t ring_copy_in(uint8_t* data, uint64_t data_size, uint64_t offset, const void* src,
                             uint64_t len) {
    uint64_t room = data_size - offset;
    /* Most copies do not wrap: one memcpy of a size known where it is inlined (headers). */
    if (len < room) {
        memcpy(data + offset, src, (size_t)len);
        return offset + len;
    }
    memcpy(data + offset, src, (size_t)room);
    memcpy(data, (const uint8_t*)src + room, (size_t)(len - room));
    return len - room;
}

static uint64_t ring_copy_out(const uint8_t* data, uint64_t data_size, uint64_t offset, void* dst,
                              uint64_t len) {
    uint64_t room = data_size - offset;
    if (len < room) {
        memcpy(dst, data + offset, (size_t)len);
        return offset + len;
    }
    memcpy(dst, data + offset, (size_t)room);
    memcpy((uint8_t*)dst + room, data, (size_t)(len - room));
    return len - room;
}

zx_status_t iob_mwrb_write(void* base, uint64_t size, uint64_t page_size, uint64_t tag,
                           const zx_iovec_t* vectors, size_t num_vectors) {
    return iob_mwrb_write_at(base, size, page_size, tag, vectors, num_vectors, NULL);
}

zx_status_t iob_mwrb_write_at(void* base, uint64_t size, uint64_t page_size, uint64_t tag,
                              const zx_iovec_t* vectors, size_t num_vectors,
                              iob_mwrb_cursor_t* cursor) {
    if (!ring_geometry_valid(base, size, page_size)) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (num_vectors > IOB_MWRB_MAX_VECTORS) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (vectors == NULL && num_vectors > 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t length = 0;
    for (size_t i = 0; i < num_vectors; i++) {
        /* Written as a subtraction so that capacities near SIZE_MAX cannot wrap the sum. */
        if (vectors[i].capacity > IOB_MWRB_MAX_PAYLOAD - length) {
            return ZX_ERR_INVALID_ARGS;
        }
        length += vectors[i].capacity;
    }
    uint64_t record = round_up8(length + IOB_MWRB_RECORD_HEADER_SIZE);
    uint64_t data_size = size - page_size;
    if (record > data_size) {
        return ZX_ERR_NO_SPACE;
    }

    iob_mwrb_header_t* header = base;
    /* Relaxed: only the server moves head, and the caller serialises the server's writers. */
    uint64_t head = atomic_load_explicit(&header->head, memory_order_relaxed);
    /* Acquire: our stores below must not overtake the reader's last reads of that space. */
    uint64_t tail = atomic_load_explicit(&header->tail, memory_order_acquire);
    if (tail > head || UINT64_MAX - head < record || head % IOB_MWRB_RECORD_ALIGN != 0) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    if (head - tail > data_size - record) {
        return ZX_ERR_NO_SPACE;
    }
    /*
     * The adapter passes what the caller's process could not read as NULL; finding it before
     * the first byte is written keeps the ring untouched (A.6 step 11).
     */
    for (size_t i = 0; i < num_vectors; i++) {
        if (vectors[i].buffer == NULL && vectors[i].capacity > 0) {
            return ZX_ERR_NOT_FOUND;
        }
    }

    uint8_t* data = (uint8_t*)base + page_size;
    uint64_t start = cursor != NULL && cursor->valid && cursor->head == head ? cursor->offset
                                                                            : head % data_size;
    iob_mwrb_record_header_t rh = {.tag = tag, .length = length};
    uint64_t offset = ring_copy_in(data, data_size, start, &rh, sizeof rh);
    for (size_t i = 0; i < num_vectors; i++) {
        if (vectors[i].capacity > 0) {
            offset = ring_copy_in(data, data_size, offset, vectors[i].buffer, vectors[i].capacity);
        }
    }
    /*
     * A store, not Zircon's fetch_add: head was validated as loaded, and a mapper that moved
     * it meanwhile gets it overwritten with a consistent value rather than added to.
     * Release: the record's bytes are visible before the head that covers them.
     */
    atomic_store_explicit(&header->head, head + record, memory_order_release);
    if (cursor != NULL) {
        uint64_t next = start + record; /* record <= B: one wrap at most */
        *cursor = (iob_mwrb_cursor_t){
            .head = head + record, .offset = next >= data_size ? next - data_size : next,
            .valid = true};
    }
    return ZX_OK;
}

zx_status_t iob_mwrb_reader_init(iob_mwrb_reader_t* reader, void* base, uint64_t size,
                                 uint64_t page_size) {
    if (reader == NULL || !ring_geometry_valid(base, size, page_size)) {
        return ZX_ERR_INVALID_ARGS;
    }
    reader->header = base;
    reader->data = (const uint8_t*)base + page_size;
    reader->data_size = size - page_size;
    return ZX_OK;
}

/* tail and head as A.7's reader protocol loads them, validated; SHOULD_WAIT when equal. */
static zx_status_t mwrb_counters(const iob_mwrb_reader_t* reader, uint64_t* tail_out,
                                 uint64_t* head_out) {
    /* Relaxed: tail is ours. Acquire on head pairs with the writer's release. */
    uint64_t tail = atomic_load_explicit(&reader->header->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&reader->header->head, memory_order_acquire);
    if (tail > head || head - tail > reader->data_size || head % IOB_MWRB_RECORD_ALIGN != 0 ||
        tail % IOB_MWRB_RECORD_ALIGN != 0) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    *tail_out = tail;
    *head_out = head;
    return head == tail ? ZX_ERR_SHOULD_WAIT : ZX_OK;
}

/*
 * The record at tail (< head, both validated): its header is copied out before it is
 * looked at, then its payload into buffer when it fits.
 */
static zx_status_t mwrb_record_at(const iob_mwrb_reader_t* reader, uint64_t tail, uint64_t head,
                                  iob_mwrb_record_t* record, void* buffer, size_t buffer_size) {
    uint64_t data_size = reader->data_size;
    uint64_t available = head - tail;
    if (available < IOB_MWRB_RECORD_HEADER_SIZE) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    iob_mwrb_record_header_t rh;
    uint64_t offset = ring_copy_out(reader->data, data_size, tail % data_size, &rh, sizeof rh);
    if (rh.length > IOB_MWRB_MAX_PAYLOAD) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    uint64_t size = round_up8(rh.length + IOB_MWRB_RECORD_HEADER_SIZE);
    if (size > available) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    record->tag = rh.tag;
    record->length = rh.length;
    record->position = tail;
    record->size = size;
    if (buffer_size < rh.length) {
        return ZX_ERR_BUFFER_TOO_SMALL;
    }
    if (rh.length > 0) {
        ring_copy_out(reader->data, data_size, offset, buffer, rh.length);
    }
    return ZX_OK;
}

zx_status_t iob_mwrb_peek(const iob_mwrb_reader_t* reader, iob_mwrb_record_t* record, void* buffer,
                          size_t buffer_size) {
    if (reader == NULL || record == NULL || (buffer == NULL && buffer_size > 0)) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t tail = 0;
    uint64_t head = 0;
    zx_status_t st = mwrb_counters(reader, &tail, &head);
    return st != ZX_OK ? st : mwrb_record_at(reader, tail, head, record, buffer, buffer_size);
}

zx_status_t iob_mwrb_drain(iob_mwrb_reader_t* reader, void* buffer, size_t buffer_size,
                           iob_mwrb_visit_t visit, void* ctx, size_t* count) {
    if (count != NULL) {
        *count = 0;
    }
    if (reader == NULL || visit == NULL || (buffer == NULL && buffer_size > 0)) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t tail = 0;
    uint64_t head = 0;
    zx_status_t st = mwrb_counters(reader, &tail, &head);
    if (st != ZX_OK) {
        return st;
    }
    uint64_t start = tail;
    size_t n = 0;
    bool more = true;
    while (more && tail != head) {
        iob_mwrb_record_t record;
        st = mwrb_record_at(reader, tail, head, &record, buffer, buffer_size);
        if (st != ZX_OK) {
            break;
        }
        tail += record.size;
        n++;
        more = visit(ctx, &record, buffer);
    }
    if (tail != start) {
        /* Release: our reads of the records happen before the writer may reuse their space. */
        atomic_store_explicit(&reader->header->tail, tail, memory_order_release);
    }
    if (count != NULL) {
        *count = n;
    }
    return n > 0 && st == ZX_OK ? ZX_OK : st;
}

zx_status_t iob_mwrb_advance(iob_mwrb_reader_t* reader, const iob_mwrb_record_t* record) {
    if (reader == NULL || record == NULL || record->size < IOB_MWRB_RECORD_HEADER_SIZE ||
        record->size % IOB_MWRB_RECORD_ALIGN != 0 || record->size > reader->data_size ||
        record->position > UINT64_MAX - record->size) {
        return ZX_ERR_INVALID_ARGS;
    }
    /* Release: our reads of the record happen before the writer may reuse its space. */
    atomic_store_explicit(&reader->header->tail, record->position + record->size,
                          memory_order_release);
    return ZX_OK;
}

/* ---- ID allocator ---- */

static _Atomic uint64_t* word_at(const void* base, uint64_t offset) {
    return (_Atomic uint64_t*)(void*)((uintptr_t)base + (uintptr_t)offset);
}

static uint64_t pack(uint32_t low, uint32_t high) {
    return (uint64_t)low | ((uint64_t)high << 32);
}

static uint32_t low_half(uint64_t word) {
    return (uint32_t)word;
}

static uint32_t high_half(uint64_t word) {
    return (uint32_t)(word >> 32);
}

/* 8 + 8 * next_id, which fits 64 bits for every u32 next_id, so it cannot overflow. */
static uint64_t index_end(uint32_t next_id) {
    return IOB_IDALLOC_HEADER_SIZE + (uint64_t)next_id * IOB_IDALLOC_INDEX_SIZE;
}

static bool header_valid(uint64_t header, uint64_t length) {
    uint64_t blob_head = high_half(header);
    return index_end(low_half(header)) <= blob_head && blob_head <= length;
}

static bool container_valid(const void* base, uint64_t region_size) {
    return base != NULL && aligned8(base) && region_size >= IOB_IDALLOC_HEADER_SIZE;
}

uint64_t iob_idalloc_length(uint64_t region_size) {
    return region_size > UINT32_MAX ? UINT32_MAX : region_size;
}

zx_status_t iob_idalloc_init(void* base, uint64_t region_size) {
    if (!container_valid(base, region_size)) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint32_t length = (uint32_t)iob_idalloc_length(region_size);
    atomic_store_explicit(word_at(base, 0), pack(0, length), memory_order_release);
    return ZX_OK;
}

/* Exchanges an allocation tries before it calls the header's writers hostile. */
#define IOB_IDALLOC_MAX_ATTEMPTS 4096u

/*
 * A.5 step 6-7 on a header value `seen`, in order, up to the claim of the ID (see
 * iob_idalloc_allocate). The slot check reads the container, which is inside the region
 * whenever the header is valid and there is room (the slot lies below blob_head).
 */
static zx_status_t idalloc_checks(const void* base, uint64_t length, uint64_t seen,
                                  bool blob_readable, uint64_t blob_size, bool id_null) {
    if (!header_valid(seen, length)) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    uint64_t end = index_end(low_half(seen));
    uint64_t remaining = high_half(seen) - end;
    if (remaining < IOB_IDALLOC_INDEX_SIZE || remaining - IOB_IDALLOC_INDEX_SIZE < blob_size) {
        return ZX_ERR_NO_MEMORY;
    }
    if (!blob_readable && blob_size > 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (atomic_load_explicit(word_at(base, end), memory_order_relaxed) != 0) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    if (id_null) {
        return ZX_ERR_INVALID_ARGS;
    }
    return ZX_OK;
}

zx_status_t iob_idalloc_allocate(void* base, uint64_t region_size, const void* blob,
                                 uint64_t blob_size, uint32_t* id_out) {
    if (!container_valid(base, region_size)) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t length = iob_idalloc_length(region_size);
    _Atomic uint64_t* header = word_at(base, 0);
    uint64_t seen = atomic_load_explicit(header, memory_order_relaxed);
    for (uint32_t attempt = 0;; attempt++) {
        /*
         * Each failed exchange means another allocator took an ID, or a writer of the
         * mapping keeps rewriting the header: bounded, so a hostile writer cannot hold the
         * caller (iobd, under its lock) in this loop.
         */
        if (attempt == IOB_IDALLOC_MAX_ATTEMPTS) {
            return ZX_ERR_IO_DATA_INTEGRITY;
        }
        zx_status_t status =
            idalloc_checks(base, length, seen, blob != NULL, blob_size, id_out == NULL);
        if (status != ZX_OK) {
            return status;
        }
        uint64_t claimed = pack(low_half(seen) + 1, high_half(seen) - (uint32_t)blob_size);
        /* Relaxed, as A.8 says: the slot's release store below is what publishes the blob. */
        if (atomic_compare_exchange_weak_explicit(header, &seen, claimed, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            break;
        }
        /* Another allocator won (or the header was scribbled on): start over from `seen`. */
    }
    uint32_t id = low_half(seen);
    uint32_t offset = high_half(seen) - (uint32_t)blob_size;
    if (blob_size > 0) {
        memcpy((uint8_t*)base + offset, blob, (size_t)blob_size);
    }
    uint64_t empty = 0;
    if (!atomic_compare_exchange_strong_explicit(word_at(base, index_end(id)), &empty,
                                                 pack((uint32_t)blob_size, offset),
                                                 memory_order_release, memory_order_relaxed)) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    *id_out = id;
    return ZX_OK;
}

zx_status_t iob_idalloc_check(const void* base, uint64_t region_size, uint64_t blob_size,
                              bool id_null) {
    if (!container_valid(base, region_size)) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t seen = atomic_load_explicit(word_at(base, 0), memory_order_relaxed);
    return idalloc_checks(base, iob_idalloc_length(region_size), seen, true, blob_size, id_null);
}

zx_status_t iob_idalloc_next_id(const void* base, uint64_t region_size, uint32_t* next_id_out) {
    if (!container_valid(base, region_size) || next_id_out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t header = atomic_load_explicit(word_at(base, 0), memory_order_acquire);
    if (!header_valid(header, iob_idalloc_length(region_size))) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    *next_id_out = low_half(header);
    return ZX_OK;
}

zx_status_t iob_idalloc_lookup(const void* base, uint64_t region_size, uint32_t id,
                               const void** blob_out, uint32_t* size_out) {
    if (!container_valid(base, region_size) || blob_out == NULL || size_out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t length = iob_idalloc_length(region_size);
    /* Acquire, so a reader attaching right after init sees the zeroed index behind it. */
    uint64_t header = atomic_load_explicit(word_at(base, 0), memory_order_acquire);
    if (!header_valid(header, length)) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    if (id >= low_half(header)) {
        return ZX_ERR_NOT_FOUND;
    }
    /* Acquire pairs with the allocator's release: the blob's bytes come before its slot. */
    uint64_t slot = atomic_load_explicit(word_at(base, index_end(id)), memory_order_acquire);
    if (slot == 0) {
        return ZX_ERR_SHOULD_WAIT;
    }
    uint64_t size = low_half(slot);
    uint64_t offset = high_half(slot);
    if (offset < high_half(header) || offset > length || size > length - offset) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    *blob_out = (const uint8_t*)base + offset;
    *size_out = (uint32_t)size;
    return ZX_OK;
}
