/* SPDX-License-Identifier: MIT */
/* Object info topics, properties and records used with IOBs (docs/zircon-iob.md A.1, A.2, A.10). */
#ifndef ZIRCON_SYSCALLS_OBJECT_H_
#define ZIRCON_SYSCALLS_OBJECT_H_

#include <stddef.h>
#include <stdint.h>

#include <zircon/syscalls/iob.h>
#include <zircon/types.h>

#define ZX_INFO_NONE ((zx_object_info_topic_t)0u)
#define ZX_INFO_HANDLE_VALID ((zx_object_info_topic_t)1u)
#define ZX_INFO_HANDLE_BASIC ((zx_object_info_topic_t)2u)
#define ZX_INFO_IOB ((zx_object_info_topic_t)34u)
#define ZX_INFO_IOB_REGIONS ((zx_object_info_topic_t)35u)

#define ZX_PROP_NAME ((uint32_t)3u)

typedef struct zx_info_handle_basic {
    zx_koid_t koid;
    zx_rights_t rights;
    zx_obj_type_t type;
    zx_koid_t related_koid;
    uint32_t reserved;
    uint8_t padding1[4];
} zx_info_handle_basic_t;

typedef struct zx_info_iob {
    uint64_t options;
    uint32_t region_count;
    uint8_t padding1[4];
} zx_info_iob_t;

typedef struct zx_iob_region_info {
    zx_iob_region_t region;
    zx_koid_t koid;
} zx_iob_region_info_t;

_Static_assert(sizeof(zx_info_handle_basic_t) == 32, "zx_info_handle_basic_t is 32 bytes");
_Static_assert(sizeof(zx_info_iob_t) == 16, "zx_info_iob_t is 16 bytes");
_Static_assert(sizeof(zx_iob_region_info_t) == 128, "zx_iob_region_info_t is 128 bytes");
_Static_assert(offsetof(zx_iob_region_info_t, koid) == 120, "koid at 120");

#endif /* ZIRCON_SYSCALLS_OBJECT_H_ */
