/* SPDX-License-Identifier: MIT */
/*
 * zx_vmar_map_iob and zx_vmar_unmap on Linux (docs/zircon-iob.md A.4, A.12, L "Mapping").
 *
 * The checks of A.4 are split between iobd and the library, and the status must be the
 * one Zircon's order gives. iobd (iob_core_map, through the broker) makes steps 2-6 and
 * the parts of step 7-8 that concern the region (length, region offset, region size);
 * the library makes step 1 (the VMAR) and the parts of step 7 that concern placement
 * (option bits, alignment, vmar_offset), then the placement itself (overlap, room).
 * When a local check fails, the library still asks iobd (check-only: no mapping is made,
 * no fd sent) because an earlier server check must win; iob__map_merge_status combines.
 *
 * Every mapping is recorded in g_maps under g_maps_lock, held across the mmap/munmap it
 * mirrors, so the table and the address space agree. Broker reports of ended mappings are
 * sent after the lock is dropped.
 *
 * Decisions (documented in <iob/iob.h> and the README):
 * - ZX_VM_SPECIFIC maps at the absolute address vmar_offset (the root VMAR spans the whole
 *   address space) with MAP_FIXED_NOREPLACE; overlap: ZX_ERR_ALREADY_EXISTS.
 * - ZX_VM_SPECIFIC_OVERWRITE replaces IOB mappings of this library and free space only;
 *   any other memory in the range: ZX_ERR_ALREADY_EXISTS (libc's heap is not ours to drop).
 * - ZX_VM_OFFSET_IS_UPPER_LIMIT: ZX_ERR_NOT_SUPPORTED, once every Zircon check has passed.
 * - zx_vmar_unmap removes only IOB mappings of this library inside the range and leaves
 *   other memory alone; a range with no IOB mapping at all is ZX_ERR_NOT_FOUND.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "client/lib/maptable.h"
#include "shm/region.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define IOB__VM_ALIGN_MASK ((zx_vm_option_t)0xffu << ZX_VM_ALIGN_BASE)

static pthread_mutex_t g_maps_lock = PTHREAD_MUTEX_INITIALIZER;
static iob__maptable_t g_maps; /* zero-initialised == iob__maptable_init */

zx_handle_t zx_vmar_root_self(void) {
    return IOB_VMAR_ROOT_HANDLE;
}

/* ---- Placement ---- */

static int iob__prot(zx_vm_option_t options) {
    int prot = PROT_NONE;
    if ((options & (ZX_VM_PERM_READ | ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED)) != 0) {
        prot |= PROT_READ;
    }
    if ((options & ZX_VM_PERM_WRITE) != 0) {
        prot |= PROT_WRITE;
    }
    return prot; /* never PROT_EXEC: iobd refuses PERM_EXECUTE before we get here */
}

/*
 * Reserves a free gap of SPECIFIC_OVERWRITE's range (ctx: the end of what is claimed so
 * far), so that MAP_FIXED replaces only free space and IOB mappings.
 */
static zx_status_t iob__claim_gap(void* ctx, uintptr_t gap, size_t gap_len) {
    uintptr_t* claimed_end = ctx;
    void* p = mmap((void*)gap, gap_len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) {
        return errno == EEXIST ? ZX_ERR_ALREADY_EXISTS : iob_status_from_errno(errno);
    }
    if ((uintptr_t)p != gap) {
        /* A kernel older than 4.17 treats NOREPLACE as a hint: something was there. */
        munmap(p, gap_len);
        return ZX_ERR_ALREADY_EXISTS;
    }
    *claimed_end = gap + gap_len;
    return ZX_OK;
}

static zx_status_t iob__release_gap(void* ctx, uintptr_t gap, size_t gap_len) {
    (void)ctx;
    munmap((void*)gap, gap_len);
    return ZX_OK;
}

typedef struct iob__ended_list {
    iob__mapping_t** items;
    size_t count;
    size_t cap;
} iob__ended_list_t;

static void iob__collect_ended(void* ctx, iob__mapping_t* m) {
    iob__ended_list_t* list = ctx;
    if (list->count == list->cap) {
        size_t cap = list->cap != 0 ? list->cap * 2 : 4;
        iob__mapping_t** items = realloc(list->items, cap * sizeof *items);
        if (items == NULL) {
            free(m); /* unreported: iobd counts it until the process exits, which is safe */
            return;
        }
        list->items = items;
        list->cap = cap;
    }
    list->items[list->count++] = m;
}

/* Reports ended mappings to iobd, outside g_maps_lock. */
static void iob__report_ended(iob__ended_list_t* list) {
    if (list->count == 0) {
        free(list->items);
        return;
    }
    /* Only the session that holds the records can release them: never open one for this. */
    iob__session_t* s = iob__session_peek();
    if (s != NULL) {
        for (size_t i = 0; i < list->count; i++) {
            /* A record of an earlier session stays counted until this process exits. */
            if (list->items[i]->session_id == s->info.session_id) {
                iob__broker_unmap(s, list->items[i]->mapping_id);
            }
        }
        iob__session_put(s);
    }
    for (size_t i = 0; i < list->count; i++) {
        free(list->items[i]);
    }
    free(list->items);
}

/*
 * Maps the grant's fd. g_maps_lock held. On success *addr_out is the address and the table
 * has the new mapping; *ended collects mappings SPECIFIC_OVERWRITE replaced.
 */
static zx_status_t iob__place(zx_vm_option_t options, uint64_t vmar_offset, uint64_t region_offset,
                              uint64_t len, uint64_t page, const iob__grant_t* grant,
                              uint64_t session_id, iob__ended_list_t* ended, uintptr_t* addr_out) {
    int prot = iob__prot(options);
    int flags = MAP_SHARED;
    if ((options & ZX_VM_MAP_RANGE) != 0) {
        flags |= MAP_POPULATE;
    }
    uint32_t align_log2 = (options & IOB__VM_ALIGN_MASK) >> ZX_VM_ALIGN_BASE;
    uint64_t align = align_log2 != 0 ? UINT64_C(1) << align_log2 : page;
    if (align < page) {
        align = page;
    }
    /* One piece for the new mapping, one for the split an overwrite may cause. */
    if (iob__maptable_reserve(&g_maps, 2) != ZX_OK) {
        return ZX_ERR_NO_MEMORY;
    }

    void* p;
    if ((options & ZX_VM_SPECIFIC_OVERWRITE) != 0) {
        uintptr_t at = (uintptr_t)vmar_offset;
        if (iob__add_overflows(at, len)) {
            return ZX_ERR_INVALID_ARGS;
        }
        uintptr_t claimed_end = at;
        zx_status_t st = iob__maptable_for_each_gap(&g_maps, at, len, iob__claim_gap, &claimed_end);
        if (st != ZX_OK) {
            /* Give back the gaps already claimed; the ones not yet reached are untouched. */
            iob__maptable_for_each_gap(&g_maps, at, claimed_end - at, iob__release_gap, NULL);
            return st;
        }
        p = mmap((void*)at, len, prot, flags | MAP_FIXED, grant->fd, (off_t)region_offset);
        if (p == MAP_FAILED) {
            zx_status_t err = iob_status_from_errno(errno);
            iob__maptable_for_each_gap(&g_maps, at, len, iob__release_gap, NULL);
            return err;
        }
        uint64_t removed;
        if (iob__maptable_remove(&g_maps, at, len, iob__collect_ended, ended, &removed) != ZX_OK) {
            /* Cannot happen: reserve_hint made room for the one split this can need. */
            return ZX_ERR_NO_MEMORY;
        }
    } else if ((options & ZX_VM_SPECIFIC) != 0) {
        uintptr_t at = (uintptr_t)vmar_offset;
        p = mmap((void*)at, len, prot, flags | MAP_FIXED_NOREPLACE, grant->fd,
                 (off_t)region_offset);
        if (p == MAP_FAILED) {
            return errno == EEXIST   ? ZX_ERR_ALREADY_EXISTS
                   : errno == ENOMEM ? ZX_ERR_NO_RESOURCES
                                     : iob_status_from_errno(errno);
        }
        if ((uintptr_t)p != at) {
            munmap(p, len);
            return ZX_ERR_ALREADY_EXISTS;
        }
    } else if (align > page) {
        /* Over-map a PROT_NONE reservation, place the mapping at an aligned address in it, trim. */
        uint64_t span;
        if (iob__add_overflows(len, align)) {
            return ZX_ERR_NO_RESOURCES;
        }
        span = len + align;
        void* r = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == MAP_FAILED) {
            return ZX_ERR_NO_RESOURCES;
        }
        uintptr_t base = ((uintptr_t)r + align - 1) & ~(uintptr_t)(align - 1);
        p = mmap((void*)base, len, prot, flags | MAP_FIXED, grant->fd, (off_t)region_offset);
        if (p == MAP_FAILED) {
            zx_status_t err = iob_status_from_errno(errno);
            munmap(r, span);
            return err == ZX_ERR_NO_MEMORY ? ZX_ERR_NO_RESOURCES : err;
        }
        if (base > (uintptr_t)r) {
            munmap(r, base - (uintptr_t)r);
        }
        uintptr_t tail = base + len;
        uintptr_t r_end = (uintptr_t)r + span;
        if (r_end > tail) {
            munmap((void*)tail, r_end - tail);
        }
    } else {
        p = mmap(NULL, len, prot, flags, grant->fd, (off_t)region_offset);
        if (p == MAP_FAILED) {
            return errno == ENOMEM ? ZX_ERR_NO_RESOURCES : iob_status_from_errno(errno);
        }
    }
    zx_status_t st = iob__maptable_add(&g_maps, (uintptr_t)p, len, grant->mapping_id, session_id);
    if (st != ZX_OK) {
        munmap(p, len);
        return st;
    }
    *addr_out = (uintptr_t)p;
    return ZX_OK;
}

static zx_status_t iob__unmap_piece(void* ctx, uintptr_t at, size_t n) {
    (void)ctx;
    munmap((void*)at, n);
    return ZX_OK;
}

/* Step 1: the VMAR handle. Only the root pseudo-handle names a VMAR on Linux. */
static zx_status_t iob__check_vmar(iob__session_t* s, zx_handle_t vmar) {
    if (vmar == IOB_VMAR_ROOT_HANDLE) {
        return ZX_OK;
    }
    if (vmar == ZX_HANDLE_INVALID) {
        return ZX_ERR_BAD_HANDLE;
    }
    zx_info_handle_basic_t info;
    zx_status_t st =
        iob_conn_get_info(s->conn, vmar, ZX_INFO_HANDLE_BASIC, &info, sizeof info, NULL, NULL);
    return st == ZX_OK ? ZX_ERR_WRONG_TYPE : ZX_ERR_BAD_HANDLE;
}

zx_status_t zx_vmar_map_iob(zx_handle_t vmar, zx_vm_option_t options, size_t vmar_offset,
                            zx_handle_t ep, uint32_t region_index, uint64_t region_offset,
                            size_t region_len, zx_vaddr_t* mapped_addr) {
    iob__session_t* s;
    zx_status_t st = iob__session_get(&s);
    if (st != ZX_OK) {
        return st;
    }
    st = iob__check_vmar(s, vmar);
    if (st != ZX_OK) {
        iob__session_put(s);
        return st;
    }
    uint64_t page = iob__page_size();
    zx_status_t local =
        iob__map_local_checks(options, vmar_offset, region_offset, region_len, page);
    iob__grant_t grant = {.fd = -1};
    st = iob__broker_map(s, ep, options, region_index, region_offset, region_len, local != ZX_OK,
                         &grant);
    if (local != ZX_OK) {
        iob__session_put(s);
        return iob__map_merge_status(local, st, options, region_offset, region_len, page);
    }
    if (st != ZX_OK) {
        iob__session_put(s);
        return st;
    }
    if ((options & ZX_VM_OFFSET_IS_UPPER_LIMIT) != 0) {
        /* Linux has no "anywhere below this address" search. Every Zircon check passed. */
        st = ZX_ERR_NOT_SUPPORTED;
    }
    uint64_t len = 0;
    iob_page_round(region_len, page, &len); /* cannot fail: local checks passed */

    iob__ended_list_t ended = {0};
    uintptr_t addr = 0;
    if (st == ZX_OK) {
        pthread_mutex_lock(&g_maps_lock);
        st = iob__place(options, vmar_offset, region_offset, len, page, &grant, s->info.session_id,
                        &ended, &addr);
        pthread_mutex_unlock(&g_maps_lock);
    }
    /* The process keeps no way to map this region again behind iobd's back. */
    if (grant.fd >= 0) {
        close(grant.fd);
    }

    if (st == ZX_OK && mapped_addr == NULL) {
        /* Zircon maps, fails to copy the address out, unmaps: INVALID_ARGS, after all else. */
        uint64_t removed;
        pthread_mutex_lock(&g_maps_lock);
        iob__maptable_remove(&g_maps, addr, len, iob__collect_ended, &ended, &removed);
        munmap((void*)addr, len);
        pthread_mutex_unlock(&g_maps_lock);
        st = ZX_ERR_INVALID_ARGS;
    } else if (st != ZX_OK) {
        iob__broker_unmap(s, grant.mapping_id);
    } else {
        *mapped_addr = addr;
    }
    iob__session_put(s);
    iob__report_ended(&ended);
    return st;
}

zx_status_t zx_vmar_unmap(zx_handle_t vmar, zx_vaddr_t addr, uint64_t len) {
    if (vmar != IOB_VMAR_ROOT_HANDLE) {
        iob__session_t* s;
        zx_status_t st = iob__session_get(&s);
        if (st != ZX_OK) {
            return ZX_ERR_BAD_HANDLE;
        }
        st = iob__check_vmar(s, vmar);
        iob__session_put(s);
        return st;
    }
    uint64_t page = iob__page_size();
    uint64_t rounded;
    if ((addr & (page - 1)) != 0 || len == 0 || !iob_page_round(len, page, &rounded) ||
        iob__add_overflows(addr, rounded)) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__ended_list_t ended = {0};
    pthread_mutex_lock(&g_maps_lock);
    zx_status_t st = ZX_ERR_NOT_FOUND;
    if (iob__maptable_overlaps(&g_maps, addr, rounded)) {
        /*
         * Only our pieces are unmapped; other memory in the range is left alone.
         */
        uint64_t removed;
        st = iob__maptable_reserve(&g_maps, 1); /* so the remove below cannot fail */
        if (st == ZX_OK) {
            iob__maptable_for_each_piece(&g_maps, addr, rounded, iob__unmap_piece, NULL);
            st = iob__maptable_remove(&g_maps, addr, rounded, iob__collect_ended, &ended, &removed);
        }
    }
    pthread_mutex_unlock(&g_maps_lock);
    iob__report_ended(&ended);
    return st;
}
