/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the shared-region and mediated-discipline tests of iob_core: regions that
 * name a shared region or a discipline, a client's mapping made from the fd the core
 * grants (as libiob does), and the core's calls with the tests' usual arguments.
 */
#ifndef IOB_TESTS_SERVER_CORE_MEDIATED_FIXTURE_H_
#define IOB_TESTS_SERVER_CORE_MEDIATED_FIXTURE_H_

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core_fixture.h"

#define P FX_PAGE
#define MED_W0 ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE
#define MED_W1 ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE
#define TAG UINT64_C(0x0123456789abcdef)

/* A shared region of `size` bytes in session A. */
zx_handle_t shared_create(fx_t* f, uint64_t size);
/* A region over `shared` with the mediated-write ring buffer discipline. */
zx_iob_region_t ring_region(zx_handle_t shared, zx_iob_access_t access, uint64_t tag);
/* A private region with the ID allocator discipline. */
zx_iob_region_t idalloc_region(uint64_t size, zx_iob_access_t access);
/* An IOB in session A whose one region is ring_region(shared, access, tag). */
void ring_iob(fx_t* f, zx_handle_t shared, zx_iob_access_t access, uint64_t tag,
              zx_handle_t* e0, zx_handle_t* e1);

/* A client's mapping of a region, made from the fd the core grants (as libiob does). */
typedef struct mapping {
    uint8_t* base;
    uint64_t size;
    iob_mapping_id_t id;
} mapping_t;

mapping_t map_region(fx_t* f, zx_handle_t h, uint32_t index, bool write);
void unmap_region(fx_t* f, mapping_t* m);
/* The ring buffer's indices in a mapping of it. */
_Atomic uint64_t* head_of(const mapping_t* m);
_Atomic uint64_t* tail_of(const mapping_t* m);

/* zx_iob_writev on region 0 in session A, of vectors or of one string. */
zx_status_t mx_writev(fx_t* f, zx_handle_t h, const zx_iovec_t* v, size_t n);
zx_status_t mx_write_str(fx_t* f, zx_handle_t h, const char* text, size_t len);

#endif /* IOB_TESTS_SERVER_CORE_MEDIATED_FIXTURE_H_ */
