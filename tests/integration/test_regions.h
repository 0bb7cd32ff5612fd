/* SPDX-License-Identifier: MIT */
/*
 * Regions the integration tests and their peer programs describe again and again: a plain
 * private region, and IOBs with one mediated region (a ring buffer or an ID allocator).
 */
#ifndef IOB_TESTS_INTEGRATION_TEST_REGIONS_H_
#define IOB_TESTS_INTEGRATION_TEST_REGIONS_H_

#include <string.h>

#include <zircon/syscalls.h>

/* A private region of `size` bytes with no discipline. */
static inline zx_iob_region_t test_private_region(uint64_t size, zx_iob_access_t access) {
    zx_iob_region_t reg;
    memset(&reg, 0, sizeof reg);
    reg.type = ZX_IOB_REGION_TYPE_PRIVATE;
    reg.access = access;
    reg.size = size;
    reg.discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
    return reg;
}

/*
 * Region 0: `size` bytes, ep0 may map it for reading, ep1 may allocate IDs through iobd.
 * ep0's read-only mapping of the whole region goes to *map.
 */
static inline zx_status_t idalloc_iob_create(uint64_t size, zx_handle_t* ep0, zx_handle_t* ep1,
                                             zx_vaddr_t* map) {
    zx_iob_region_t reg;
    memset(&reg, 0, sizeof reg);
    reg.type = ZX_IOB_REGION_TYPE_PRIVATE;
    reg.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE;
    reg.size = size;
    reg.discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    zx_status_t st = zx_iob_create(0, &reg, 1, ep0, ep1);
    if (st != ZX_OK) {
        return st;
    }
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, *ep0, 0, 0, size, map);
    if (st != ZX_OK) {
        zx_handle_close(*ep0);
        zx_handle_close(*ep1);
    }
    return st;
}

/*
 * Region 0: a mediated-write ring buffer over the shared region `shared`, its records tagged
 * `tag`; ep0 may map it read-write (the reader), ep1 may write through iobd.
 */
static inline zx_status_t ring_iob_create(zx_handle_t shared, uint64_t tag, zx_handle_t* ep0,
                                          zx_handle_t* ep1) {
    zx_iob_region_t reg;
    memset(&reg, 0, sizeof reg);
    reg.type = ZX_IOB_REGION_TYPE_SHARED;
    reg.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                 ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE;
    reg.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    reg.discipline.ring_buffer.tag = tag;
    reg.shared_region.shared_region = shared;
    return zx_iob_create(0, &reg, 1, ep0, ep1);
}

#endif /* IOB_TESTS_INTEGRATION_TEST_REGIONS_H_ */
