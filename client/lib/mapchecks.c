/* SPDX-License-Identifier: MIT */
/*
 * The pure parts of zx_vmar_map_iob's validation (see vmar.c for how the checks are split
 * between iobd and the library, and libiob.h for the contracts). No syscalls, so unit
 * tests link this file alone.
 */
#include <stdbool.h>
#include <stdint.h>

#include "client/lib/libiob.h"
#include "shm/region.h"

#define IOB__VM_KNOWN_OPTIONS                                                                      \
    (ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_PERM_EXECUTE | ZX_VM_COMPACT | ZX_VM_SPECIFIC |    \
     ZX_VM_SPECIFIC_OVERWRITE | ZX_VM_CAN_MAP_SPECIFIC | ZX_VM_CAN_MAP_READ |                      \
     ZX_VM_CAN_MAP_WRITE | ZX_VM_CAN_MAP_EXECUTE | ZX_VM_MAP_RANGE | ZX_VM_REQUIRE_NON_RESIZABLE | \
     ZX_VM_ALLOW_FAULTS | ZX_VM_OFFSET_IS_UPPER_LIMIT | ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED |       \
     ZX_VM_FAULT_BEYOND_STREAM_SIZE)
#define IOB__VM_ALIGN_MASK ((zx_vm_option_t)0xffu << ZX_VM_ALIGN_BASE)

bool iob__add_overflows(uint64_t a, uint64_t b) {
    uint64_t r;
    return __builtin_add_overflow(a, b, &r);
}

zx_status_t iob__map_local_checks(zx_vm_option_t options, uint64_t vmar_offset,
                                  uint64_t region_offset, uint64_t region_len, uint64_t page_size) {
    /* The VMAR's option parsing: unknown bits below the alignment field, bad alignments. */
    if ((options & ~IOB__VM_ALIGN_MASK & ~IOB__VM_KNOWN_OPTIONS) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint32_t align = (options & IOB__VM_ALIGN_MASK) >> ZX_VM_ALIGN_BASE;
    if (align != 0 && (align < 10 || align > 32)) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (region_len == 0 || (region_offset & (page_size - 1)) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    bool specific = (options & (ZX_VM_SPECIFIC | ZX_VM_SPECIFIC_OVERWRITE)) != 0;
    if (specific) {
        if ((vmar_offset & (page_size - 1)) != 0) {
            return ZX_ERR_INVALID_ARGS;
        }
        if (align != 0 && (vmar_offset & ((UINT64_C(1) << align) - 1)) != 0) {
            return ZX_ERR_INVALID_ARGS;
        }
    } else if (vmar_offset != 0 && (options & ZX_VM_OFFSET_IS_UPPER_LIMIT) == 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t rounded;
    if (!iob_page_round(region_len, page_size, &rounded) ||
        iob__add_overflows(region_offset, rounded)) {
        return ZX_ERR_OUT_OF_RANGE;
    }
    return ZX_OK;
}

zx_status_t iob__map_merge_status(zx_status_t local, zx_status_t server, zx_vm_option_t options,
                                  uint64_t region_offset, uint64_t region_len, uint64_t page_size) {
    if (local == ZX_OK) {
        return server;
    }
    switch (server) {
        case ZX_OK:
        case ZX_ERR_BUFFER_TOO_SMALL: /* the region-size check comes after all of step 7 */
            return local;
        case ZX_ERR_INVALID_ARGS:
            /*
             * Either an earlier server check (protection, CAN_MAP_*, ...) or one of the step-7
             * checks the server shares with us; both give INVALID_ARGS whichever came first.
             */
            return ZX_ERR_INVALID_ARGS;
        case ZX_ERR_OUT_OF_RANGE: {
            if (local == ZX_ERR_OUT_OF_RANGE) {
                return local;
            }
            /*
             * The server says OUT_OF_RANGE for a region index past the end (step 3, before ours)
             * or for an offset+length overflow (after ours). Without an overflow it was the
             * index. With both an overflow and a bad index the answer is ambiguous; we say
             * INVALID_ARGS, right for the overflow case.
             */
            uint64_t rounded;
            bool overflow = !iob_page_round(region_len, page_size, &rounded) ||
                            iob__add_overflows(region_offset, rounded);
            (void)options;
            return overflow ? local : ZX_ERR_OUT_OF_RANGE;
        }
        default:
            /* BAD_HANDLE, WRONG_TYPE, ACCESS_DENIED: earlier steps; transport errors as they are.
             */
            return server;
    }
}
