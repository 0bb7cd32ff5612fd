/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpora of the fuzz targets: fuzz_seeds DIR fills DIR/<target>/ with
 * small valid programs in each target's input format (see the comment at the top of each
 * fuzz_*.c): rings written and read in every way, records appended and read, blobs
 * allocated and looked up, and for fuzz_rpc one well-formed request of every method of
 * iob.v1.Iob on the fixture's handles, plus a few sequences (create, write, read, map,
 * export, close). tests/fuzz/corpus/ holds its output; run.sh regenerates it, so the seeds
 * follow the message definitions and the fixture.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <protobuf-c/protobuf-c.h>

#include "fuzz/fuzz_rpc_fixture.h"
#include "proto/wire.h"

typedef struct seed {
    uint8_t bytes[16384];
    size_t len;
} seed_t;

static const char* out_dir;

static void put(seed_t* s, uint64_t v, unsigned n) {
    for (unsigned i = 0; i < n && s->len < sizeof s->bytes; i++) {
        s->bytes[s->len++] = (uint8_t)(v >> (8 * i));
    }
}

static void put_bytes(seed_t* s, const void* p, size_t n) {
    if (s->len + n <= sizeof s->bytes) {
        memcpy(s->bytes + s->len, p, n);
        s->len += n;
    }
}

static void save(const char* target, const char* name, const seed_t* s) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE* f = fopen(path, "wb");
    if (f == NULL || fwrite(s->bytes, 1, s->len, f) != s->len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ---- fuzz_ring: cfg, producer batch, consumer batch, then operations ------------------ */

enum { R_WRITE, R_RESERVE_COMMIT, R_CLAIM, R_PFLUSH, R_PWAIT, R_PCLOSE, R_READ, R_PEEK, R_SPAN,
       R_CFLUSH, R_CWAIT, R_CCLOSE, R_T_WRITE_INDEX, R_T_READ_INDEX, R_T_DATA, R_T_FLAGS };

static void ring_seeds(void) {
    seed_t s = {.len = 0};
    /* Copy in and out, batch 1, until the ring wraps. */
    put(&s, 0, 1), put(&s, 0, 1), put(&s, 0, 1);
    for (int i = 0; i < 40; i++) {
        put(&s, R_WRITE, 1), put(&s, 100 + i, 2), put(&s, R_READ, 1), put(&s, 8192, 2);
    }
    save("fuzz_ring", "copy_wrap", &s);
    /* Batches of 4, claims and spans, a large message, a full ring, close. */
    s.len = 0;
    put(&s, 1, 1), put(&s, 3, 1), put(&s, 3, 1);
    for (int i = 0; i < 12; i++) {
        put(&s, R_CLAIM, 1), put(&s, 6, 1);
        for (int k = 0; k < 6; k++) {
            put(&s, 24 + k, 2);
        }
        put(&s, R_SPAN, 1), put(&s, 8, 1);
    }
    put(&s, R_WRITE, 1), put(&s, 0x8000u | 3000u, 2);
    put(&s, R_WRITE, 1), put(&s, 0x8000u | 3000u, 2);
    put(&s, R_WRITE, 1), put(&s, 0x8000u | 3000u, 2);
    put(&s, R_PWAIT, 1), put(&s, 0x8000u | 3000u, 2);
    put(&s, R_PEEK, 1), put(&s, 1, 1), put(&s, R_CFLUSH, 1);
    put(&s, R_RESERVE_COMMIT, 1), put(&s, 64, 2), put(&s, 40, 2);
    put(&s, R_PCLOSE, 1), put(&s, R_SPAN, 1), put(&s, 8, 1), put(&s, R_READ, 1), put(&s, 100, 2);
    put(&s, R_CWAIT, 1), put(&s, R_CCLOSE, 1);
    save("fuzz_ring", "batch_claim_span", &s);
    /* A consumer that lies about its index, and a producer that lies about its own. */
    s.len = 0;
    put(&s, 0, 1), put(&s, 0, 1), put(&s, 0, 1);
    put(&s, R_WRITE, 1), put(&s, 16, 2), put(&s, R_T_READ_INDEX, 1), put(&s, 0, 1), put(&s, 8, 8);
    put(&s, R_WRITE, 1), put(&s, 16, 2), put(&s, R_T_WRITE_INDEX, 1), put(&s, 0, 1),
        put(&s, 4096, 8);
    put(&s, R_READ, 1), put(&s, 64, 2), put(&s, R_T_DATA, 1), put(&s, 0, 2),
        put(&s, UINT64_C(0x4d53473100000100), 8);
    put(&s, R_PEEK, 1), put(&s, 0, 1), put(&s, R_T_FLAGS, 1), put(&s, 3, 1);
    save("fuzz_ring", "tampered", &s);
}

/* ---- fuzz_mwrb: cfg, start, then operations ------------------------------------------ */

enum { M_WRITE, M_PEEK, M_T_HEAD, M_T_TAIL, M_T_DATA };

static void mwrb_seeds(void) {
    seed_t s = {.len = 0};
    put(&s, 1u | (2u << 2), 1), put(&s, 0x1000, 4); /* 64-byte pages, 4 of them */
    for (int i = 0; i < 12; i++) {
        put(&s, M_WRITE, 1), put(&s, 2, 1), put(&s, 42, 8), put(&s, 0, 1);
        put(&s, 5 + i, 2), put(&s, 9, 2);
        put(&s, M_PEEK, 1), put(&s, 200, 2);
    }
    save("fuzz_mwrb", "append_read", &s);
    s.len = 0;
    put(&s, 3u | (1u << 2), 1), put(&s, 0, 4); /* 4 KiB pages, 3 of them */
    put(&s, M_WRITE, 1), put(&s, 8, 1), put(&s, 7, 8), put(&s, 0, 1);
    for (int k = 0; k < 8; k++) {
        put(&s, 0x8000u | 300u, 2);
    }
    put(&s, M_WRITE, 1), put(&s, 1, 1), put(&s, 7, 8), put(&s, 0x80, 1), put(&s, 30, 2);
    put(&s, M_PEEK, 1), put(&s, 16, 2), put(&s, M_PEEK, 1), put(&s, 0x8000, 2);
    put(&s, M_T_HEAD, 1), put(&s, 0, 1), put(&s, 8, 8);
    put(&s, M_PEEK, 1), put(&s, 0x8000, 2);
    put(&s, M_T_TAIL, 1), put(&s, 1, 1), put(&s, UINT64_MAX - 7, 8);
    put(&s, M_WRITE, 1), put(&s, 1, 1), put(&s, 7, 8), put(&s, 0, 1), put(&s, 30, 2);
    put(&s, M_T_DATA, 1), put(&s, 4096 + 8, 4), put(&s, 0xffff, 8);
    put(&s, M_PEEK, 1), put(&s, 0x8000, 2);
    save("fuzz_mwrb", "large_unreadable_tampered", &s);
}

/* ---- fuzz_idalloc: size, then operations --------------------------------------------- */

enum { I_ALLOCATE, I_LOOKUP, I_NEXT_ID, I_T_HEADER, I_T_WORD };

static void idalloc_seeds(void) {
    seed_t s = {.len = 0};
    put(&s, 4096, 2);
    for (int i = 0; i < 10; i++) {
        put(&s, I_ALLOCATE, 1), put(&s, 10 + 3 * i, 2), put(&s, 0, 1);
        put(&s, I_LOOKUP, 1), put(&s, 0, 1), put(&s, i, 1);
    }
    put(&s, I_ALLOCATE, 1), put(&s, 0x8000u | 5000u, 2), put(&s, 0, 1); /* too large */
    put(&s, I_ALLOCATE, 1), put(&s, 0x4000u | 0x8000u | 20u, 2), put(&s, 0, 1);
    put(&s, I_ALLOCATE, 1), put(&s, 4, 2), put(&s, 0xff, 1);
    put(&s, I_NEXT_ID, 1);
    save("fuzz_idalloc", "allocate_lookup", &s);
    s.len = 0;
    put(&s, 61, 2); /* 69 bytes: not a multiple of 8 */
    put(&s, I_ALLOCATE, 1), put(&s, 5, 2), put(&s, 0, 1);
    put(&s, I_T_HEADER, 1), put(&s, 1, 1), put(&s, 2, 8); /* blob_head past the end */
    put(&s, I_LOOKUP, 1), put(&s, 0, 1), put(&s, 0, 1);
    put(&s, I_T_WORD, 1), put(&s, 8, 2), put(&s, UINT64_C(0x0000004000000010), 8);
    put(&s, I_LOOKUP, 1), put(&s, 0, 1), put(&s, 0, 1);
    put(&s, I_ALLOCATE, 1), put(&s, 1, 2), put(&s, 0, 1);
    save("fuzz_idalloc", "tampered_odd_size", &s);
}

/* ---- fuzz_rpc ------------------------------------------------------------------------- */

enum { P_MAP = IOB_WIRE_M_COUNT, P_UNMAP, P_CLOCK, P_SESSION };

static void put_msg(seed_t* s, const ProtobufCMessage* m) {
    uint8_t buf[8192];
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > sizeof buf) {
        fprintf(stderr, "fuzz_seeds: message too large\n");
        exit(1);
    }
    protobuf_c_message_pack(m, buf);
    put(s, n, 2);
    put_bytes(s, buf, n);
    put(s, n / 2, 1); /* split in two slices half of the time (odd split values) */
}

static void req(seed_t* s, unsigned method, const ProtobufCMessage* m) {
    put(s, method, 1);
    put_msg(s, m);
}

static void handle_req(seed_t* s, unsigned method, zx_handle_t h) {
    Iob__V1__HandleRequest m = IOB__V1__HANDLE_REQUEST__INIT;
    m.handle = h;
    req(s, method, &m.base);
}

static void write_region(seed_t* s, zx_handle_t h, uint32_t region, uint64_t offset,
                         size_t chunk, unsigned chunks) {
    static uint8_t data[4096];
    memset(data, 0x5a, sizeof data);
    put(s, IOB_WIRE_M_WRITE_REGION, 1);
    put(s, chunks - 1, 1);
    for (unsigned i = 0; i < chunks; i++) {
        Iob__V1__WriteRegionRequest m = IOB__V1__WRITE_REGION_REQUEST__INIT;
        m.handle = h;
        m.region_index = region;
        m.offset = offset;
        m.data.data = data;
        m.data.len = chunk;
        put_msg(s, &m.base);
    }
}

static void read_region(seed_t* s, zx_handle_t h, uint32_t region, uint64_t offset,
                        uint64_t length) {
    Iob__V1__ReadRegionRequest m = IOB__V1__READ_REGION_REQUEST__INIT;
    m.handle = h;
    m.region_index = region;
    m.offset = offset;
    m.length = length;
    req(s, IOB_WIRE_M_READ_REGION, &m.base);
}

/* Long because it is a list: one short paragraph per seed file, each a request sequence. */
static void rpc_seeds(void) {
    fz_rpc_world_t w;
    memset(&w, 0, sizeof w);
    fz_rpc_world_init(&w);
    seed_t s = {.len = 0};

    /* CreateIob: two plain regions, then info on the fixture's endpoint and a close. */
    Iob__V1__Region r0 = IOB__V1__REGION__INIT, r1 = IOB__V1__REGION__INIT;
    r0.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    r0.size = 4096;
    r1 = r0;
    r1.size = 12288;
    r1.discipline_type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    Iob__V1__Region* regions[] = {&r0, &r1};
    Iob__V1__CreateIobRequest create = IOB__V1__CREATE_IOB_REQUEST__INIT;
    create.n_regions = 2;
    create.regions = regions;
    req(&s, IOB_WIRE_M_CREATE_IOB, &create.base);
    Iob__V1__GetInfoRequest info = IOB__V1__GET_INFO_REQUEST__INIT;
    info.handle = w.plain_ep0;
    info.topic = ZX_INFO_IOB_REGIONS;
    info.buffer_size = 8192;
    req(&s, IOB_WIRE_M_GET_INFO, &info.base);
    info.topic = ZX_INFO_HANDLE_BASIC;
    req(&s, IOB_WIRE_M_GET_INFO, &info.base);
    info.topic = ZX_INFO_IOB;
    req(&s, IOB_WIRE_M_GET_INFO, &info.base);
    Iob__V1__ListIobsRequest list = IOB__V1__LIST_IOBS_REQUEST__INIT;
    req(&s, IOB_WIRE_M_LIST_IOBS, &list.base);
    Iob__V1__ServerInfoRequest si = IOB__V1__SERVER_INFO_REQUEST__INIT;
    req(&s, IOB_WIRE_M_SERVER_INFO, &si.base);
    save("fuzz_rpc", "create_info_list", &s);

    /* WriteRegion in chunks through ep0, ReadRegion back through ep1. */
    s.len = 0;
    write_region(&s, w.plain_ep0, 0, 100, 1000, 3);
    read_region(&s, w.plain_ep1, 0, 0, 4096);
    read_region(&s, w.plain_ep1, 0, 4000, 200); /* past the end */
    write_region(&s, w.plain_ep1, 0, 0, 10, 1); /* read-only endpoint */
    save("fuzz_rpc", "write_read", &s);

    /* Mediated writes: a record through IobWritev, a blob through AllocateId. */
    s.len = 0;
    uint64_t caps[] = {5, 7};
    protobuf_c_boolean readable[] = {1, 1};
    uint8_t bytes[12] = "hello world";
    Iob__V1__IobWritevRequest wv = IOB__V1__IOB_WRITEV_REQUEST__INIT;
    wv.handle = w.ring_ep1;
    wv.num_vectors = 2;
    wv.n_capacities = 2;
    wv.capacities = caps;
    wv.n_readable = 2;
    wv.readable = readable;
    wv.data.data = bytes;
    wv.data.len = 12;
    req(&s, IOB_WIRE_M_IOB_WRITEV, &wv.base);
    readable[1] = 0;
    wv.data.len = 5;
    req(&s, IOB_WIRE_M_IOB_WRITEV, &wv.base);
    Iob__V1__AllocateIdRequest al = IOB__V1__ALLOCATE_ID_REQUEST__INIT;
    al.handle = w.plain_ep1;
    al.region_index = 1;
    al.blob_size = 11;
    al.blob.data = bytes;
    al.blob.len = 11;
    req(&s, IOB_WIRE_M_ALLOCATE_ID, &al.base);
    al.check_only = 1;
    al.blob.len = 0;
    al.blob_size = 1u << 24;
    req(&s, IOB_WIRE_M_ALLOCATE_ID, &al.base);
    Iob__V1__CreateSharedRegionRequest cs = IOB__V1__CREATE_SHARED_REGION_REQUEST__INIT;
    cs.size = 8192;
    req(&s, IOB_WIRE_M_CREATE_SHARED_REGION, &cs.base);
    save("fuzz_rpc", "mediated", &s);

    /* Handles: duplicate, replace, names, signals, export and import, closing. */
    s.len = 0;
    Iob__V1__HandleRightsRequest hr = IOB__V1__HANDLE_RIGHTS_REQUEST__INIT;
    hr.handle = w.plain_ep0;
    hr.rights = 1u << 31;
    req(&s, IOB_WIRE_M_DUPLICATE_HANDLE, &hr.base);
    hr.handle = w.ring_ep0;
    hr.rights = 0;
    req(&s, IOB_WIRE_M_REPLACE_HANDLE, &hr.base);
    Iob__V1__SetNameRequest sn = IOB__V1__SET_NAME_REQUEST__INIT;
    sn.handle = w.plain_ep0;
    sn.name.data = bytes;
    sn.name.len = 11;
    req(&s, IOB_WIRE_M_SET_NAME, &sn.base);
    Iob__V1__GetNameRequest gn = IOB__V1__GET_NAME_REQUEST__INIT;
    gn.handle = w.plain_ep1;
    req(&s, IOB_WIRE_M_GET_NAME, &gn.base);
    Iob__V1__SignalRequest sig = IOB__V1__SIGNAL_REQUEST__INIT;
    sig.handle = w.plain_ep0;
    sig.set_mask = 1u << 24;
    req(&s, IOB_WIRE_M_SIGNAL, &sig.base);
    req(&s, IOB_WIRE_M_SIGNAL_PEER, &sig.base);
    handle_req(&s, IOB_WIRE_M_GET_SIGNALS, w.plain_ep1);
    handle_req(&s, IOB_WIRE_M_EXPORT_HANDLE, w.plain_ep1);
    /* The function, not the macro: the macro casts const away, which clang reports. */
    Iob__V1__ImportRequest im;
    iob__v1__import_request__init(&im);
    char token[] = "iob1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    im.token = token;
    req(&s, IOB_WIRE_M_IMPORT_HANDLE, &im.base);
    put(&s, P_CLOCK, 1);
    uint32_t hs[] = {w.plain_ep0, 0, w.shared, w.shared};
    Iob__V1__HandleListRequest hl = IOB__V1__HANDLE_LIST_REQUEST__INIT;
    hl.n_handles = 4;
    hl.handles = hs;
    req(&s, IOB_WIRE_M_CLOSE_HANDLES, &hl.base);
    handle_req(&s, IOB_WIRE_M_CLOSE_HANDLE, w.ring_ep1);
    Iob__V1__SessionEventsRequest se = IOB__V1__SESSION_EVENTS_REQUEST__INIT;
    req(&s, IOB_WIRE_M_SET_SESSION_EVENTS, &se.base);
    save("fuzz_rpc", "handles", &s);

    /* Mappings: map both endpoints, close the handles, then unmap (A.9's last steps). */
    s.len = 0;
    put(&s, P_MAP, 1), put(&s, 0, 1), put(&s, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 4);
    put(&s, 0, 1), put(&s, 0, 8), put(&s, 4096, 8);
    put(&s, P_MAP, 1), put(&s, 1, 1), put(&s, ZX_VM_PERM_READ, 4);
    put(&s, 0, 1), put(&s, 0, 8), put(&s, 4096, 8);
    put(&s, P_MAP, 1), put(&s, 3, 1), put(&s, ZX_VM_PERM_READ, 4);
    put(&s, 0, 1), put(&s, 0, 8), put(&s, 8192, 8);
    handle_req(&s, IOB_WIRE_M_CLOSE_HANDLE, w.plain_ep0);
    handle_req(&s, IOB_WIRE_M_GET_SIGNALS, w.plain_ep1);
    put(&s, P_UNMAP, 1), put(&s, 0, 1);
    handle_req(&s, IOB_WIRE_M_GET_SIGNALS, w.plain_ep1);
    put(&s, P_SESSION, 1);
    handle_req(&s, IOB_WIRE_M_GET_SIGNALS, w.plain_ep1);
    put(&s, P_SESSION, 1);
    put(&s, P_UNMAP, 1), put(&s, 0, 1);
    save("fuzz_rpc", "map_peer_closed", &s);

    iob_core_destroy(w.core);
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 1;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        perror(out_dir);
        return 1;
    }
    ring_seeds();
    mwrb_seeds();
    idalloc_seeds();
    rpc_seeds();
    return 0;
}
