/* SPDX-License-Identifier: MIT */
/*
 * The on-region layouts of IOB's two mediated disciplines (docs/zircon-iob.md A.7 and A.8), as the
 * server writes them and as clients that map the regions read them:
 *
 *   iob_mwrb_*     ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER: a byte ring in a shared
 *                  region. Page 0 holds head and tail; the rest is data. Only the server
 *                  (zx_iob_writev) appends; readers consume and advance tail.
 *   iob_idalloc_*  ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR: sequential IDs naming blobs, an index
 *                  growing up from the start of a private region and blobs packed down from
 *                  its end. The server (zx_iob_allocate_id) and userspace allocators that map
 *                  the region writable both allocate, with the same atomics.
 *
 * These layouts are Zircon's, byte for byte; they carry no magic or version of their own
 * (the discipline in the IOB's region description says what the memory holds).
 *
 * Trust: every word in these regions can be written by a process holding a writable
 * mapping, at any moment. Every function here loads each shared word once into a local,
 * validates it, and computes every address from validated locals only, so nonsense is
 * ZX_ERR_IO_DATA_INTEGRITY, never an out-of-bounds access, a crash or a loop that does not
 * end. Bytes that a hostile writer changes while they are being copied are copied as found.
 *
 * Memory ordering is spelled out at each shared access (acquire/release as A.7 and A.8 say).
 * No function here blocks, sleeps or allocates. Internal to the project; not libiob's ABI.
 */
#ifndef IOB_SHM_MEDIATED_H_
#define IOB_SHM_MEDIATED_H_

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zircon/syscalls/iob.h>
#include <zircon/types.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free across processes");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && _Alignof(_Atomic uint64_t) == 8, "u64 atomics");

/* ==== Mediated-write ring buffer (A.7) ================================================== */

/*
 * Page 0 of the shared region. head and tail are free-running byte counts that never wrap;
 * the data offset of a count c is c % B, where B = region size - page size (B need not be a
 * power of two). Only the writer moves head, only the reader moves tail; the rest of page 0
 * is reserved.
 */
typedef struct iob_mwrb_header {
    _Atomic uint64_t head; /* written by the server only, with release ordering */
    _Atomic uint64_t tail; /* written by the reader only, with release ordering */
} iob_mwrb_header_t;

_Static_assert(offsetof(iob_mwrb_header_t, head) == 0, "A.7: head at offset 0");
_Static_assert(offsetof(iob_mwrb_header_t, tail) == 8, "A.7: tail at offset 8");
_Static_assert(sizeof(iob_mwrb_header_t) == 16, "A.7: a 16-byte header");

/*
 * Each record: tag (u64, the writing IOB's discipline tag), length (u64, the payload bytes
 * without padding), the payload; the next record starts at the next multiple of 8. Records
 * wrap byte-wise at B. Padding bytes are never written.
 */
typedef struct iob_mwrb_record_header {
    uint64_t tag;
    uint64_t length;
} iob_mwrb_record_header_t;

_Static_assert(sizeof(iob_mwrb_record_header_t) == 16, "A.7: tag and length");

#define IOB_MWRB_RECORD_HEADER_SIZE 16u
#define IOB_MWRB_RECORD_ALIGN 8u
/* A record with its header fits in 64 KiB and its length in 16 bits: 65535 - 16. */
#define IOB_MWRB_MAX_PAYLOAD 65519u
#define IOB_MWRB_MAX_VECTORS 8u

/*
 * The server's append, A.6 steps 6 to 11 then A.7, for a ring of `size` bytes at `base` (the
 * whole shared region, `page_size` its page size) and the IOB's `tag`. The caller holds the
 * region's writer lock. Checks, in this order:
 *   num_vectors > 8                                        ZX_ERR_INVALID_ARGS
 *   vectors NULL with num_vectors > 0 (unreadable array)   ZX_ERR_INVALID_ARGS
 *   sum of capacities > IOB_MWRB_MAX_PAYLOAD (no overflow) ZX_ERR_INVALID_ARGS
 *   the rounded record is larger than B                    ZX_ERR_NO_SPACE
 *   tail > head, head + record overflows, head % 8 != 0    ZX_ERR_IO_DATA_INTEGRITY
 *   head - tail > B - record                               ZX_ERR_NO_SPACE
 *   a vector with buffer NULL and capacity > 0 (unreadable) ZX_ERR_NOT_FOUND
 * then writes the record and publishes head + record with release ordering. Nothing is
 * written when any check fails. A base, size or page size that is not a ring (NULL, size
 * below two pages, page size not a power of two of at least 16, size not a multiple of it)
 * is ZX_ERR_INVALID_ARGS before everything else.
 */
zx_status_t iob_mwrb_write(void* base, uint64_t size, uint64_t page_size, uint64_t tag,
                           const zx_iovec_t* vectors, size_t num_vectors);

/*
 * The appender's memory of where its last record ended: head as it stored it and that
 * head's data offset (head % B). It lives in the appender's own memory, never in the
 * region. An append that loads exactly that head takes the offset from here instead of
 * dividing by B (which need not be a power of two); any other head (a mapper moved it)
 * is divided as usual, so a stale cursor costs a division, never a wrong offset.
 * Zero-initialised: no memory yet.
 */
typedef struct iob_mwrb_cursor {
    uint64_t head;
    uint64_t offset;
    bool valid;
} iob_mwrb_cursor_t;

/* iob_mwrb_write with the appender's cursor (updated after each record appended). */
zx_status_t iob_mwrb_write_at(void* base, uint64_t size, uint64_t page_size, uint64_t tag,
                              const zx_iovec_t* vectors, size_t num_vectors,
                              iob_mwrb_cursor_t* cursor);

/*
 * A reader's view of a ring it has mapped: local state only, never place it in shared
 * memory. One reader per ring (A.7's reader protocol): tail belongs to it.
 */
typedef struct iob_mwrb_reader {
    iob_mwrb_header_t* header;
    const uint8_t* data; /* header + page_size */
    uint64_t data_size;  /* B */
} iob_mwrb_reader_t;

/* What iob_mwrb_peek found at tail. */
typedef struct iob_mwrb_record {
    uint64_t tag;
    uint64_t length;   /* payload bytes (at most IOB_MWRB_MAX_PAYLOAD) */
    uint64_t position; /* the tail it was found at */
    uint64_t size;     /* bytes it occupies: 16 + length rounded up to 8 */
} iob_mwrb_record_t;

/*
 * Attaches to the ring at base, whose size and page size the caller knows from its own
 * mapping (the size the shared region was created with, which is what it mapped; not
 * ZX_INFO_IOB_REGIONS, which reports 0 for shared regions as Zircon does;
 * zx_system_get_page_size), never from the region.
 * Errors: ZX_ERR_INVALID_ARGS (reader or base NULL, base not 8-byte aligned, page size not a
 * power of two of at least 16, size not a multiple of it or below two pages).
 */
zx_status_t iob_mwrb_reader_init(iob_mwrb_reader_t* reader, void* base, uint64_t size,
                                 uint64_t page_size);

/*
 * Reads the record at tail without consuming it: tail relaxed, head acquire, both validated,
 * then the record header; copies the payload into buffer (wrapping byte-wise at B).
 * Errors: ZX_ERR_SHOULD_WAIT (no record: head == tail), ZX_ERR_IO_DATA_INTEGRITY (tail >
 * head, head - tail > B, either not a multiple of 8, a length above IOB_MWRB_MAX_PAYLOAD or
 * a record reaching past head), ZX_ERR_BUFFER_TOO_SMALL (buffer_size < length: *record is
 * filled in, nothing is copied, so the caller may skip it or retry with more room),
 * ZX_ERR_INVALID_ARGS (reader or record NULL, buffer NULL with buffer_size > 0).
 */
zx_status_t iob_mwrb_peek(const iob_mwrb_reader_t* reader, iob_mwrb_record_t* record, void* buffer,
                          size_t buffer_size);

/*
 * Consumes the record peeked last: tail = record->position + record->size, stored with
 * release ordering, so the writer may reuse the space.
 * Errors: ZX_ERR_INVALID_ARGS (NULL arguments, or a record not of iob_mwrb_peek's making:
 * size below 16 or not a multiple of 8, or above B).
 */
zx_status_t iob_mwrb_advance(iob_mwrb_reader_t* reader, const iob_mwrb_record_t* record);

/* A record handed over by iob_mwrb_drain, its payload in the caller's buffer; false: stop. */
typedef bool (*iob_mwrb_visit_t)(void* ctx, const iob_mwrb_record_t* record, const void* payload);

/*
 * A.7's reader protocol over every record present: tail and head loaded once and
 * validated, the records between them handed to visit in order (each one's header copied
 * out and checked as iob_mwrb_peek checks it, its payload copied into buffer), then tail
 * stored once, after the last record handed over (release). A reader that drains
 * periodically touches the ring's header line twice per drain instead of twice per record:
 * the writer stores head in that line for every record it appends, so per-record loads and
 * stores make the line cross between the reader's CPU and iobd's at every record.
 * The record for which visit returns false is consumed, and the drain stops after it.
 * *count (when not NULL) receives the number of records handed over.
 * Status: ZX_OK (one or more records), ZX_ERR_SHOULD_WAIT (none), ZX_ERR_BUFFER_TOO_SMALL
 * (the next record's payload is above buffer_size: it stays unconsumed and iob_mwrb_peek
 * with more room reads it), ZX_ERR_IO_DATA_INTEGRITY (counters or a record as for
 * iob_mwrb_peek); in the last two, the records before are handed over and consumed.
 * ZX_ERR_INVALID_ARGS: reader or visit NULL, buffer NULL with buffer_size > 0.
 */
zx_status_t iob_mwrb_drain(iob_mwrb_reader_t* reader, void* buffer, size_t buffer_size,
                           iob_mwrb_visit_t visit, void* ctx, size_t* count);

/* ==== ID allocator (A.8) ================================================================ */

/*
 * Offset 0: the header, one 8-byte atomic word {next_id (low 32 bits), blob_head (high)}.
 * Offset 8 + 8 * i: index slot of ID i, one 8-byte atomic word {size (low), offset (high)};
 * {0, 0} is empty (not committed yet). Blobs are packed downward from the end of the
 * container; blob i occupies [offset_i, offset_i + size_i), unaligned.
 * Valid header: 8 + 8 * next_id (computed without overflow) <= blob_head <= length.
 */
typedef struct iob_idalloc_header {
    uint32_t next_id;
    uint32_t blob_head;
} iob_idalloc_header_t;

typedef struct iob_idalloc_index {
    uint32_t size;
    uint32_t offset;
} iob_idalloc_index_t;

_Static_assert(sizeof(iob_idalloc_header_t) == 8 && offsetof(iob_idalloc_header_t, next_id) == 0 &&
                   offsetof(iob_idalloc_header_t, blob_head) == 4,
               "A.8: next_id in the low half of the header word");
_Static_assert(sizeof(iob_idalloc_index_t) == 8 && offsetof(iob_idalloc_index_t, size) == 0 &&
                   offsetof(iob_idalloc_index_t, offset) == 4,
               "A.8: size in the low half of an index word");

#define IOB_IDALLOC_HEADER_SIZE 8u
#define IOB_IDALLOC_INDEX_SIZE 8u

/*
 * The bytes of a region of region_size bytes that the container uses: offsets are 32-bit,
 * so a region above 4 GiB - 1 uses its first UINT32_MAX bytes (Zircon's allocator cannot
 * describe more either). Server and readers both derive it from the region size.
 */
uint64_t iob_idalloc_length(uint64_t region_size);

/*
 * Formats a zero-filled region as an empty container: the header {0, length} is stored
 * with release ordering, so a reader that sees it sees zeroes behind it.
 * Errors: ZX_ERR_INVALID_ARGS (base NULL or not 8-byte aligned, region below 8 bytes).
 */
zx_status_t iob_idalloc_init(void* base, uint64_t region_size);

/*
 * Stores blob and gives it the next ID (A.8 "Allocate", racing safely with other
 * allocators of the same region through CAS on the header and the slot). Checks, in A.5
 * step 6-7 order:
 *   invalid header                                          ZX_ERR_IO_DATA_INTEGRITY
 *   remaining < 8 or remaining - 8 < blob_size (full)       ZX_ERR_NO_MEMORY
 *   blob NULL with blob_size > 0 (unreadable blob)          ZX_ERR_INVALID_ARGS
 *   the new ID's slot is not empty                          ZX_ERR_IO_DATA_INTEGRITY
 *   id_out NULL                                             ZX_ERR_INVALID_ARGS
 * The argument errors are found before the header is updated, so they consume no ID
 * (Zircon consumes one; nobody can tell, the caller never learns it). A slot found taken
 * after the header update (a racing writer corrupted it) is IO_DATA_INTEGRITY too, and that
 * ID stays consumed. A header that keeps changing under the exchange (4096 failed attempts:
 * a writer of the mapping rewriting it) is IO_DATA_INTEGRITY as well, so no writer can keep
 * the caller in the loop. Also ZX_ERR_INVALID_ARGS for a base that is NULL or misaligned,
 * or a region below 8 bytes.
 */
zx_status_t iob_idalloc_allocate(void* base, uint64_t region_size, const void* blob,
                                 uint64_t blob_size, uint32_t* id_out);

/*
 * What iob_idalloc_allocate would answer for a readable blob of blob_size bytes (and a NULL
 * id_out when id_null), up to where it would claim the ID: the same checks in the same
 * order against the header as it is now. Writes nothing. ZX_OK: the allocation would go on.
 * For callers that cannot bring the blob's bytes along (iobd's AllocateId over gRPC, whose
 * messages stop at 1 MiB) but owe the caller every earlier status in A.5's order.
 */
zx_status_t iob_idalloc_check(const void* base, uint64_t region_size, uint64_t blob_size,
                              bool id_null);

/*
 * The number of IDs allocated so far (next_id) of a valid header, loaded with acquire.
 * Errors: ZX_ERR_IO_DATA_INTEGRITY (invalid header), ZX_ERR_INVALID_ARGS (as above, or
 * next_id_out NULL).
 */
zx_status_t iob_idalloc_next_id(const void* base, uint64_t region_size, uint32_t* next_id_out);

/*
 * Finds ID id's blob (A.8 "Read"): *blob_out points into the region (bytes a writer of the
 * region could still change; copy them to keep them), *size_out its length.
 * Errors: ZX_ERR_IO_DATA_INTEGRITY (invalid header; a slot whose blob is not inside
 * [blob_head, length)), ZX_ERR_NOT_FOUND (id >= next_id: not allocated), ZX_ERR_SHOULD_WAIT
 * (allocated but its slot is not committed yet: retry), ZX_ERR_INVALID_ARGS (NULL
 * arguments, misaligned base, region below 8 bytes).
 */
zx_status_t iob_idalloc_lookup(const void* base, uint64_t region_size, uint32_t id,
                               const void** blob_out, uint32_t* size_out);

#endif /* IOB_SHM_MEDIATED_H_ */
