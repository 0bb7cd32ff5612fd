/* SPDX-License-Identifier: MIT */
/* The mediated disciplines of iob_core (server/core/iob_mediated.c): zx_iob_writev into the
 * mediated-write ring buffer and zx_iob_allocate_id, docs/zircon-iob.md A.5-A.8, every
 * documented error in its order, with the ring and the ID allocator read back through a
 * client's mapping and shm/mediated.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core_fixture.h"
#include "mediated_fixture.h"
#include "shm/mediated.h"
#include "test_util.h"

/* ==== zx_iob_writev (A.6, A.7) ==== */

typedef struct ring_fx {
    zx_handle_t shared, e0, e1;
    mapping_t map; /* ep0's read-write mapping of the whole shared region */
} ring_fx_t;

/* A ring of `size` bytes; ep0 mediated-writes and maps it read-write, ep1 does neither. */
static ring_fx_t ring_setup(fx_t* f, uint64_t size) {
    ring_fx_t r;
    r.shared = shared_create(f, size);
    zx_iob_region_t config[2] = {
        ring_region(r.shared,
                    MED_W0 | ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE, TAG),
        fx_region(P, FX_RW_BOTH)};
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, config, 2, &r.e0, &r.e1), ZX_OK);
    r.map = map_region(f, r.e0, 0, true);
    assert_int_equal(r.map.size, size);
    return r;
}

static void test_writev_errors_in_order(void** state) {
    fx_t* f = *state;
    ring_fx_t r = ring_setup(f, 2 * P);
    iob_core_t* c = f->core;
    char buf[] = "hello";
    zx_iovec_t v = {.buffer = buf, .capacity = sizeof buf};
    zx_handle_t no_rights = 0, no_write = 0;
    assert_int_equal(iob_core_handle_duplicate(c, f->a, r.e0, 0, &no_rights), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, r.e0,
                                               ZX_DEFAULT_IOB_RIGHTS & ~ZX_RIGHT_WRITE, &no_write),
                     ZX_OK);
    zx_iovec_t nine[9];
    for (int i = 0; i < 9; i++) {
        nine[i] = v;
    }
    zx_iovec_t overflow[2] = {{buf, SIZE_MAX}, {buf, SIZE_MAX}};
    size_t strobes = f->n_strobes;

    /* 1. options */
    assert_int_equal(iob_core_iob_writev(c, f->a, r.e0, 1, 0, &v, 1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_writev(c, f->a, 0x1234567, 1, 9, nine, 9), ZX_ERR_INVALID_ARGS);
    /* 2. handle: bad, wrong type, no WRITE (a duplicate with rights 0 too) */
    assert_int_equal(iob_core_iob_writev(c, f->a, 0x1234567, 0, 9, nine, 9), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_writev(c, f->b, r.e0, 0, 0, &v, 1), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_writev(c, f->a, r.shared, 0, 9, nine, 9), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_writev(c, f->a, no_rights, 0, 0, &v, 1), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_iob_writev(c, f->a, no_write, 0, 9, nine, 9), ZX_ERR_ACCESS_DENIED);
    /* 3. index */
    assert_int_equal(iob_core_iob_writev(c, f->a, r.e0, 0, 2, nine, 9), ZX_ERR_OUT_OF_RANGE);
    /* 4. discipline */
    assert_int_equal(iob_core_iob_writev(c, f->a, r.e0, 0, 1, nine, 9), ZX_ERR_WRONG_TYPE);
    /* 5. MEDIATED_WRITE of this endpoint */
    assert_int_equal(iob_core_iob_writev(c, f->a, r.e1, 0, 0, nine, 9), ZX_ERR_ACCESS_DENIED);
    /* 6. more than 8 vectors, 7. an unreadable vector array */
    assert_int_equal(mx_writev(f, r.e0, nine, 9), ZX_ERR_INVALID_ARGS);
    assert_int_equal(mx_writev(f, r.e0, NULL, 9), ZX_ERR_INVALID_ARGS);
    assert_int_equal(mx_writev(f, r.e0, NULL, 1), ZX_ERR_INVALID_ARGS);
    /* 8. the sum of capacities, overflow-safe */
    assert_int_equal(mx_writev(f, r.e0, overflow, 2), ZX_ERR_INVALID_ARGS);
    zx_iovec_t big = {.buffer = NULL, .capacity = IOB_MWRB_MAX_PAYLOAD + 1};
    assert_int_equal(mx_writev(f, r.e0, &big, 1), ZX_ERR_INVALID_ARGS);
    /* 9. larger than B: before the ring is looked at, even a corrupt one */
    zx_iovec_t page_plus = {.buffer = NULL, .capacity = P + 1};
    atomic_store(tail_of(&r.map), 8); /* tail > head */
    assert_int_equal(mx_writev(f, r.e0, &page_plus, 1), ZX_ERR_NO_SPACE);
    /* 10. the ring: integrity, then space; an unreadable payload comes after both */
    zx_iovec_t unreadable = {.buffer = NULL, .capacity = 5};
    assert_int_equal(mx_writev(f, r.e0, &unreadable, 1), ZX_ERR_IO_DATA_INTEGRITY);
    atomic_store(tail_of(&r.map), 0);
    atomic_store(head_of(&r.map), P - 8); /* 8 bytes free */
    assert_int_equal(mx_writev(f, r.e0, &unreadable, 1), ZX_ERR_NO_SPACE);
    atomic_store(head_of(&r.map), 0);
    /* 11. the payload: NOT_FOUND, and nothing written */
    assert_int_equal(mx_writev(f, r.e0, &unreadable, 1), ZX_ERR_NOT_FOUND);
    zx_iovec_t mixed[2] = {v, unreadable};
    assert_int_equal(mx_writev(f, r.e0, mixed, 2), ZX_ERR_NOT_FOUND);
    assert_int_equal(atomic_load(head_of(&r.map)), 0);
    for (size_t i = 0; i < 64; i++) {
        assert_int_equal(r.map.base[P + i], 0);
    }
    /* Failures never strobe. */
    assert_int_equal(f->n_strobes, strobes);
    /* And the same endpoint can write. */
    assert_int_equal(mx_writev(f, r.e0, &v, 1), ZX_OK);
    assert_int_equal(f->n_strobes, strobes + 1);
    unmap_region(f, &r.map);
}

static void test_writev_records_and_wrap(void** state) {
    fx_t* f = *state;
    ring_fx_t r = ring_setup(f, 2 * P);
    char buf[] = "12345";
    /* One vector or two, the record is the same. */
    zx_iovec_t one[1] = {{buf, 6}};
    zx_iovec_t two[2] = {{buf, 3}, {buf + 3, 3}};
    const uint8_t expected[22] = {0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, 6,   0,   0,
                                  0,    0,    0,    0,    0,    '1',  '2',  '3',  '4', '5', 0};
    const uint64_t record = 24;
    uint64_t last = 0;
    size_t strobes = f->n_strobes;
    for (unsigned i = 0; i < P / record; i++) {
        assert_int_equal(i % 2 ? mx_writev(f, r.e0, two, 2) : mx_writev(f, r.e0, one, 1), ZX_OK);
        assert_int_equal(atomic_load(head_of(&r.map)), last + record);
        assert_int_equal(atomic_load(tail_of(&r.map)), 0);
        assert_memory_equal(r.map.base + P + last, expected, sizeof expected);
        last += record;
    }
    assert_int_equal(f->n_strobes, strobes + P / record);
    assert_int_equal(f->last_strobe, fx_basic(f, f->a, r.shared).koid);
    /* Full: 16 bytes left for a 24-byte record; records never overwrite. */
    assert_int_equal(mx_writev(f, r.e0, one, 1), ZX_ERR_NO_SPACE);
    assert_int_equal(f->n_strobes, strobes + P / record);
    /* Free one record: the next crosses the end of B, byte-wise. */
    atomic_store(tail_of(&r.map), record);
    assert_int_equal(mx_writev(f, r.e0, two, 2), ZX_OK);
    assert_int_equal(atomic_load(head_of(&r.map)), last + record);
    uint64_t before_end = P - last;
    assert_int_equal(before_end, 16);
    assert_memory_equal(r.map.base + P + last, expected, before_end);
    assert_memory_equal(r.map.base + P, expected + before_end, sizeof expected - before_end);
    /* Padding is never written: record 0's bytes 6 and 7 survive behind the new record. */
    assert_int_equal(r.map.base[P + 6], expected[6]);
    assert_int_equal(r.map.base[P + 7], expected[7]);
    assert_int_equal(r.map.base[P + 24 + 22], 0);
    assert_int_equal(r.map.base[P + 24 + 23], 0);

    /* A client's validated reader sees every record, the wrapped one included. */
    iob_mwrb_reader_t reader;
    assert_int_equal(iob_mwrb_reader_init(&reader, r.map.base, r.map.size, P), ZX_OK);
    iob_mwrb_record_t rec;
    char got[16];
    unsigned records = 0;
    zx_status_t st;
    while ((st = iob_mwrb_peek(&reader, &rec, got, sizeof got)) == ZX_OK) {
        assert_int_equal(rec.tag, TAG);
        assert_int_equal(rec.length, 6);
        assert_int_equal(rec.size, record);
        assert_string_equal(got, "12345");
        assert_int_equal(iob_mwrb_advance(&reader, &rec), ZX_OK);
        records++;
    }
    assert_int_equal(st, ZX_ERR_SHOULD_WAIT);
    assert_int_equal(records, P / record);
    assert_int_equal(atomic_load(tail_of(&r.map)), atomic_load(head_of(&r.map)));
    unmap_region(f, &r.map);
}

static void test_writev_header_only_records(void** state) {
    fx_t* f = *state;
    zx_handle_t s = shared_create(f, 2 * P);
    zx_handle_t a0, a1, b0, b1;
    ring_iob(f, s, MED_W0 | ZX_IOB_ACCESS_EP1_CAN_MAP_READ, UINT64_C(0xAAAAAAAAAAAAAAAA), &a0, &a1);
    ring_iob(f, s, MED_W0, UINT64_C(0xBBBBBBBBBBBBBBBB), &b0, &b1);
    zx_iovec_t empty = {.buffer = NULL, .capacity = 0};
    assert_int_equal(mx_writev(f, a0, NULL, 0), ZX_OK);
    assert_int_equal(mx_writev(f, b0, &empty, 1), ZX_OK);
    char ma[] = "MsgFromA", mb[] = "MsgFromB!";
    assert_int_equal(mx_write_str(f, a0, ma, sizeof ma), ZX_OK);
    assert_int_equal(mx_write_str(f, b0, mb, sizeof mb), ZX_OK);
    mapping_t m = map_region(f, a1, 0, false);
    assert_int_equal(atomic_load(head_of(&m)), 16 + 16 + 32 + 32);
    iob_mwrb_reader_t reader;
    assert_int_equal(iob_mwrb_reader_init(&reader, m.base, m.size, P), ZX_OK);
    struct {
        uint64_t tag;
        const char* text;
        uint64_t length;
    } want[] = {{UINT64_C(0xAAAAAAAAAAAAAAAA), "", 0},
                {UINT64_C(0xBBBBBBBBBBBBBBBB), "", 0},
                {UINT64_C(0xAAAAAAAAAAAAAAAA), ma, sizeof ma},
                {UINT64_C(0xBBBBBBBBBBBBBBBB), mb, sizeof mb}};
    /* The reader cannot write this read-only mapping, so it walks by peeking at copies. */
    uint64_t tail = 0;
    for (size_t i = 0; i < 4; i++) {
        iob_mwrb_record_header_t rh;
        memcpy(&rh, m.base + P + tail, sizeof rh);
        assert_int_equal(rh.tag, want[i].tag);
        assert_int_equal(rh.length, want[i].length);
        assert_memory_equal(m.base + P + tail + 16, want[i].text, want[i].length);
        tail += (16 + want[i].length + 7) & ~UINT64_C(7);
    }
    assert_int_equal(tail, 96);
    iob_mwrb_record_t rec;
    assert_int_equal(iob_mwrb_peek(&reader, &rec, NULL, 0), ZX_OK);
    assert_int_equal(rec.length, 0);
    assert_int_equal(rec.size, 16);
    unmap_region(f, &m);
}

static void test_writev_max_payload_and_vectors(void** state) {
    fx_t* f = *state;
    const uint64_t max = IOB_MWRB_MAX_PAYLOAD;
    assert_int_equal(max, 65519);
    /* Room for two maximum records. */
    const uint64_t size = 2 * (max / P + 2) * P;
    ring_fx_t r = ring_setup(f, size);
    uint8_t* payload = malloc(max + 1);
    assert_non_null(payload);
    for (uint64_t i = 0; i <= max; i++) {
        payload[i] = (uint8_t)i;
    }
    zx_iovec_t v = {.buffer = payload, .capacity = max + 1};
    assert_int_equal(mx_writev(f, r.e0, &v, 1), ZX_ERR_INVALID_ARGS);
    v.capacity = max;
    assert_int_equal(mx_writev(f, r.e0, &v, 1), ZX_OK);
    const uint64_t head = atomic_load(head_of(&r.map));
    assert_int_equal(head, (max + 16 + 7) & ~UINT64_C(7));
    iob_mwrb_record_header_t rh;
    memcpy(&rh, r.map.base + P, sizeof rh);
    assert_int_equal(rh.tag, TAG);
    assert_int_equal(rh.length, max);
    assert_memory_equal(r.map.base + P + 16, payload, max);
    /* Eight vectors carrying the maximum; nine are refused whatever their size. */
    zx_iovec_t vecs[9];
    uint64_t gap = max / 8, off = 0;
    for (int i = 0; i < 8; i++) {
        vecs[i].buffer = payload + off;
        vecs[i].capacity = i < 7 ? gap : max - off;
        off += vecs[i].capacity;
    }
    vecs[8] = (zx_iovec_t){NULL, 0};
    assert_int_equal(mx_writev(f, r.e0, vecs, 9), ZX_ERR_INVALID_ARGS);
    assert_int_equal(mx_writev(f, r.e0, vecs, 8), ZX_OK);
    assert_memory_equal(r.map.base + P + head + 16, payload, max);
    /* One more byte over eight vectors is refused as well. */
    vecs[7].capacity++;
    assert_int_equal(mx_writev(f, r.e0, vecs, 8), ZX_ERR_INVALID_ARGS);
    free(payload);
    unmap_region(f, &r.map);
}

static void test_writev_corrupt_ring(void** state) {
    fx_t* f = *state;
    ring_fx_t r = ring_setup(f, 2 * P);
    char text[] = "12345678abc"; /* 12 bytes: a 32-byte record */
    size_t strobes = f->n_strobes;
    atomic_store(tail_of(&r.map), 8);
    assert_int_equal(mx_write_str(f, r.e0, text, sizeof text), ZX_ERR_IO_DATA_INTEGRITY);
    atomic_store(head_of(&r.map), 9);
    assert_int_equal(mx_write_str(f, r.e0, text, sizeof text), ZX_ERR_IO_DATA_INTEGRITY);
    /* head + record would pass UINT64_MAX. */
    atomic_store(head_of(&r.map), UINT64_MAX - 32 + 1);
    atomic_store(tail_of(&r.map), UINT64_MAX - 32 + 1);
    assert_int_equal(mx_write_str(f, r.e0, text, sizeof text), ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(f->n_strobes, strobes);
    /* A smaller record still fits below the limit. */
    assert_int_equal(mx_write_str(f, r.e0, text, 5), ZX_OK);
    assert_int_equal(atomic_load(head_of(&r.map)), UINT64_MAX - 32 + 1 + 24);
    assert_int_equal(f->n_strobes, strobes + 1);
    /* Head more than B past tail: NO_SPACE, the writer never overwrites. */
    atomic_store(head_of(&r.map), 2 * P);
    atomic_store(tail_of(&r.map), 0);
    assert_int_equal(mx_write_str(f, r.e0, text, 5), ZX_ERR_NO_SPACE);
    unmap_region(f, &r.map);
}


/* ==== zx_iob_allocate_id (A.5, A.8) ==== */

typedef struct ida_fx {
    zx_handle_t e0, e1;
    mapping_t map; /* ep0's read-write mapping: a userspace allocator's view */
} ida_fx_t;

/* Region 0: ep0 maps it read-write, ep1 allocates through the server. Region 1: NONE. */
static ida_fx_t ida_setup(fx_t* f, uint64_t size) {
    ida_fx_t x;
    zx_iob_region_t config[2] = {idalloc_region(size, ZX_IOB_ACCESS_EP0_CAN_MAP_READ |
                                                          ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE | MED_W1),
                                 fx_region(P, FX_RW_BOTH)};
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, config, 2, &x.e0, &x.e1), ZX_OK);
    x.map = map_region(f, x.e0, 0, true);
    return x;
}

static zx_status_t alloc_id(fx_t* f, zx_handle_t h, const void* blob, uint64_t size, uint32_t* id) {
    return iob_core_iob_allocate_id(f->core, f->a, h, 0, 0, blob, size, id);
}

static void test_allocate_id_header_at_create(void** state) {
    fx_t* f = *state;
    /* Written at create even with no mediated bits at all (A.3 7.5). */
    zx_iob_region_t r = idalloc_region(3 * P - 5, FX_RW_BOTH);
    zx_handle_t e0, e1;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &e0, &e1), ZX_OK);
    mapping_t m = map_region(f, e0, 0, false);
    iob_idalloc_header_t h;
    memcpy(&h, m.base, sizeof h);
    assert_int_equal(h.next_id, 0);
    assert_int_equal(h.blob_head, 3 * P);
    for (uint64_t i = 8; i < m.size; i++) {
        assert_int_equal(m.base[i], 0);
    }
    unmap_region(f, &m);
}

static void test_allocate_id_errors_in_order(void** state) {
    fx_t* f = *state;
    ida_fx_t x = ida_setup(f, P);
    iob_core_t* c = f->core;
    uint32_t id = 0xDEAD;
    char blob[10] = "abcdefghi";
    zx_handle_t no_write = 0, s = shared_create(f, 2 * P);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, x.e1, ZX_RIGHT_READ, &no_write), ZX_OK);
    iob_idalloc_header_t* hdr = (iob_idalloc_header_t*)(void*)x.map.base;

    /* 1. options */
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, x.e1, UINT32_MAX, 0, blob, 10, &id),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, 0x1234567, 1, 5, NULL, 10, NULL),
                     ZX_ERR_INVALID_ARGS);
    /* 2. handle: bad, wrong type, no WRITE */
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, 0x1234567, 0, 5, NULL, 10, NULL),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, s, 0, 5, NULL, 10, NULL), ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, no_write, 0, 5, NULL, 10, NULL),
                     ZX_ERR_ACCESS_DENIED);
    /* 3. index, 4. discipline, 5. this endpoint's MEDIATED_WRITE */
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, x.e1, 0, 2, NULL, 10, NULL),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, x.e1, 0, 1, NULL, 10, NULL),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_allocate_id(c, f->a, x.e0, 0, 0, NULL, 10, NULL),
                     ZX_ERR_ACCESS_DENIED);
    /* 6. the container: a corrupt header first ... */
    iob_idalloc_header_t saved = *hdr;
    hdr->next_id = UINT32_MAX;
    assert_int_equal(alloc_id(f, x.e1, NULL, UINT32_MAX, NULL), ZX_ERR_IO_DATA_INTEGRITY);
    hdr->next_id = 0;
    hdr->blob_head = (uint32_t)P + 1; /* past the end */
    assert_int_equal(alloc_id(f, x.e1, NULL, 10, NULL), ZX_ERR_IO_DATA_INTEGRITY);
    *hdr = saved;
    /* ... then room (NO_MEMORY means the region is full) ... */
    assert_int_equal(alloc_id(f, x.e1, NULL, P, NULL), ZX_ERR_NO_MEMORY);
    assert_int_equal(alloc_id(f, x.e1, blob, P - 8 - 8 + 1, &id), ZX_ERR_NO_MEMORY);
    /* ... then the blob ... */
    assert_int_equal(alloc_id(f, x.e1, NULL, 10, NULL), ZX_ERR_INVALID_ARGS);
    /* ... then the new ID's slot ... */
    uint64_t* slot0 = (uint64_t*)(void*)(x.map.base + 8);
    *slot0 = 1;
    assert_int_equal(alloc_id(f, x.e1, blob, 10, NULL), ZX_ERR_IO_DATA_INTEGRITY);
    *slot0 = 0;
    /* 7. ... and last the out-pointer; none of these consumed an ID. */
    assert_int_equal(alloc_id(f, x.e1, blob, 10, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(hdr->next_id, 0);
    assert_int_equal(hdr->blob_head, P);
    assert_int_equal(alloc_id(f, x.e1, blob, 10, &id), ZX_OK);
    assert_int_equal(id, 0);
    /* A blob of exactly what is left fits. */
    assert_int_equal(alloc_id(f, x.e1, NULL, 0, &id), ZX_OK);
    uint64_t left = hdr->blob_head - (8 + 8 * (uint64_t)hdr->next_id) - 8;
    uint8_t* rest = calloc(1, left);
    assert_non_null(rest);
    assert_int_equal(alloc_id(f, x.e1, rest, left + 1, &id), ZX_ERR_NO_MEMORY);
    assert_int_equal(alloc_id(f, x.e1, rest, left, &id), ZX_OK);
    assert_int_equal(id, 2);
    assert_int_equal(alloc_id(f, x.e1, NULL, 0, &id), ZX_ERR_NO_MEMORY);
    free(rest);
    unmap_region(f, &x.map);
}

/* The check answers as the call would, step by step, and takes no ID. */
static void test_allocate_id_check(void** state) {
    fx_t* f = *state;
    ida_fx_t x = ida_setup(f, P);
    iob_core_t* c = f->core;
    zx_handle_t no_write = 0, s = shared_create(f, 2 * P);
    assert_int_equal(iob_core_handle_duplicate(c, f->a, x.e1, ZX_RIGHT_READ, &no_write), ZX_OK);
    iob_idalloc_header_t* hdr = (iob_idalloc_header_t*)(void*)x.map.base;
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 1, 0, 10, false),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, 0x1234567, 0, 0, 10, false),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, s, 0, 0, 10, false),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, no_write, 0, 0, 10, false),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 2, 10, false),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 1, 10, false),
                     ZX_ERR_WRONG_TYPE);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e0, 0, 0, 10, false),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 0, P, false),
                     ZX_ERR_NO_MEMORY);
    hdr->next_id = UINT32_MAX;
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 0, 10, false),
                     ZX_ERR_IO_DATA_INTEGRITY);
    hdr->next_id = 0;
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 0, 10, true),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_iob_allocate_id_check(c, f->a, x.e1, 0, 0, P - 16, false), ZX_OK);
    assert_int_equal(hdr->next_id, 0);
    assert_int_equal(hdr->blob_head, P);
    uint32_t id = 99;
    assert_int_equal(alloc_id(f, x.e1, "abc", 3, &id), ZX_OK);
    assert_int_equal(id, 0);
    unmap_region(f, &x.map);
}

static void test_allocate_id_sequential_and_readable(void** state) {
    fx_t* f = *state;
    ida_fx_t x = ida_setup(f, 2 * P);
    /* ep1 through the server and ep0's own userspace allocator share one sequence. */
    char blob[16];
    for (uint32_t want = 0; want < 100; want++) {
        snprintf(blob, sizeof blob, "blob-%u", want);
        uint32_t id = 0xDEAD;
        if (want % 2 == 0) {
            assert_int_equal(alloc_id(f, x.e1, blob, strlen(blob), &id), ZX_OK);
        } else {
            assert_int_equal(iob_idalloc_allocate(x.map.base, x.map.size, blob, strlen(blob), &id),
                             ZX_OK);
        }
        assert_int_equal(id, want);
    }
    /* Zero-length blobs are IDs too. */
    uint32_t id = 0;
    assert_int_equal(alloc_id(f, x.e1, NULL, 0, &id), ZX_OK);
    assert_int_equal(id, 100);
    uint32_t next = 0;
    assert_int_equal(iob_idalloc_next_id(x.map.base, x.map.size, &next), ZX_OK);
    assert_int_equal(next, 101);
    for (uint32_t i = 0; i < 100; i++) {
        const void* p = NULL;
        uint32_t size = 0;
        assert_int_equal(iob_idalloc_lookup(x.map.base, x.map.size, i, &p, &size), ZX_OK);
        snprintf(blob, sizeof blob, "blob-%u", i);
        assert_int_equal(size, strlen(blob));
        assert_memory_equal(p, blob, size);
    }
    const void* p = NULL;
    uint32_t size = 1;
    assert_int_equal(iob_idalloc_lookup(x.map.base, x.map.size, 100, &p, &size), ZX_OK);
    assert_int_equal(size, 0);
    assert_int_equal(iob_idalloc_lookup(x.map.base, x.map.size, 101, &p, &size), ZX_ERR_NOT_FOUND);
    unmap_region(f, &x.map);
}

static void test_allocate_id_until_full(void** state) {
    fx_t* f = *state;
    ida_fx_t x = ida_setup(f, P);
    char blob[10] = {'a'};
    uint32_t id = 0, count = 0;
    zx_status_t st;
    while ((st = alloc_id(f, x.e1, blob, sizeof blob, &id)) == ZX_OK) {
        assert_int_equal(id, count);
        count++;
    }
    assert_int_equal(st, ZX_ERR_NO_MEMORY);
    /* Each ID takes an 8-byte slot and 10 blob bytes out of P - 8. */
    assert_int_equal(count, (P - 8) / 18);
    iob_idalloc_header_t h;
    memcpy(&h, x.map.base, sizeof h);
    assert_int_equal(h.next_id, count);
    assert_int_equal(h.blob_head, P - 10 * count);
    unmap_region(f, &x.map);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
        T(test_writev_errors_in_order),
        T(test_writev_records_and_wrap),
        T(test_writev_header_only_records),
        T(test_writev_max_payload_and_vectors),
        T(test_writev_corrupt_ring),
        T(test_allocate_id_header_at_create),
        T(test_allocate_id_errors_in_order),
        T(test_allocate_id_check),
        T(test_allocate_id_sequential_and_readable),
        T(test_allocate_id_until_full),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
