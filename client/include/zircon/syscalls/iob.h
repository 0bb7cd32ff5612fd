/* SPDX-License-Identifier: MIT */
/* IOBuffer types and constants, Zircon's layout (docs/zircon-iob.md A.1, A.2). */
#ifndef ZIRCON_SYSCALLS_IOB_H_
#define ZIRCON_SYSCALLS_IOB_H_

#include <stdint.h>

#include <zircon/types.h>

#define ZX_IOB_MAX_REGIONS 64

typedef uint32_t zx_iob_region_type_t;
#define ZX_IOB_REGION_TYPE_PRIVATE ((zx_iob_region_type_t)0u)
#define ZX_IOB_REGION_TYPE_SHARED ((zx_iob_region_type_t)1u)

typedef uint32_t zx_iob_access_t;
#define ZX_IOB_ACCESS_EP0_CAN_MAP_READ ((zx_iob_access_t)1u << 0)
#define ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE ((zx_iob_access_t)1u << 1)
#define ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ ((zx_iob_access_t)1u << 2)
#define ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE ((zx_iob_access_t)1u << 3)
#define ZX_IOB_ACCESS_EP1_CAN_MAP_READ ((zx_iob_access_t)1u << 4)
#define ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE ((zx_iob_access_t)1u << 5)
#define ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ ((zx_iob_access_t)1u << 6)
#define ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE ((zx_iob_access_t)1u << 7)

typedef uint64_t zx_iob_discipline_type_t;
#define ZX_IOB_DISCIPLINE_TYPE_NONE ((zx_iob_discipline_type_t)0u)
#define ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR ((zx_iob_discipline_type_t)1u)
#define ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER ((zx_iob_discipline_type_t)2u)

typedef uint32_t zx_iob_allocate_id_options_t;
typedef uint64_t zx_iob_write_options_t;

typedef struct zx_iob_discipline_mediated_write_ring_buffer {
    uint64_t tag;
    uint64_t reserved[7];
} zx_iob_discipline_mediated_write_ring_buffer_t;

typedef struct zx_iob_discipline {
    zx_iob_discipline_type_t type;
    union {
        zx_iob_discipline_mediated_write_ring_buffer_t ring_buffer;
        uint64_t reserved[8];
    };
} zx_iob_discipline_t;

typedef struct zx_iob_region_private {
    uint32_t options;
    uint32_t padding1;
    uint64_t padding2[3];
} zx_iob_region_private_t;

typedef struct zx_iob_region_shared {
    uint32_t options;
    zx_handle_t shared_region;
    uint64_t padding[3];
} zx_iob_region_shared_t;

typedef struct zx_iob_region {
    zx_iob_region_type_t type;
    zx_iob_access_t access;
    uint64_t size;
    zx_iob_discipline_t discipline;
    union {
        zx_iob_region_private_t private_region;
        zx_iob_region_shared_t shared_region;
        uint8_t max_extension[4 * 8];
    };
} zx_iob_region_t;

typedef struct zx_iovec {
    void* buffer;
    size_t capacity;
} zx_iovec_t;

_Static_assert(sizeof(zx_iob_discipline_t) == 72, "zx_iob_discipline_t is 72 bytes");
_Static_assert(sizeof(zx_iob_region_private_t) == 32, "zx_iob_region_private_t is 32 bytes");
_Static_assert(sizeof(zx_iob_region_shared_t) == 32, "zx_iob_region_shared_t is 32 bytes");
_Static_assert(sizeof(zx_iob_region_t) == 120, "zx_iob_region_t is 120 bytes");
_Static_assert(offsetof(zx_iob_region_t, discipline) == 16, "discipline at 16");
_Static_assert(offsetof(zx_iob_region_t, private_region) == 88, "extension at 88");

#endif /* ZIRCON_SYSCALLS_IOB_H_ */
