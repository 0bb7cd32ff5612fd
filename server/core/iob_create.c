/* SPDX-License-Identifier: MIT */
/*
 * zx_iob_create's server half: docs/zircon-iob.md A.3 in its order, with L's choices (NULL out
 * pointers first, private options must be 0, sizes above 2^63 are OUT_OF_RANGE), then the
 * budgets (charged under the core's mutex), then the memory (made without the mutex, so a
 * large create never stalls other clients), then the IOB is published under the mutex.
 * Everything is allocated before anything is published, and a failure at any step gives
 * every charge back, so it leaves no trace except burnt koids.
 * Shared regions bring their own memory (already counted in the byte budget when the
 * shared region was made), so they add nothing to the IOB's bytes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/core/iob_core_internal.h"
#include "shm/fault_guard.h"
#include "shm/mediated.h"

#define IOB__ACCESS_MAP_WRITE (ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE)
#define IOB__ACCESS_MEDIATED                                                                 \
    (ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ | ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE |            \
     ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ | ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE)

/* "Exactly MEDIATED_READ" for one endpoint's two mediated bits (A.3, ID_ALLOCATOR). */
static bool mediated_read_only(zx_iob_access_t access) {
    zx_iob_access_t ep0 = access & (ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ |
                                    ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE);
    zx_iob_access_t ep1 = access & (ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ |
                                    ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE);
    return ep0 == ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ || ep1 == ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ;
}

/*
 * A.3 step 7 for one region: type, size, access sanity, discipline. *rounded is the bytes
 * the IOB must allocate for it (0 for a shared region, whose memory exists already), and
 * *shared_out the shared region it names (NULL for a private one).
 */
static zx_status_t validate_region(iob_core_t* core, iob_session_id_t session,
                                   const zx_iob_region_t* r, uint32_t index, uint64_t* rounded,
                                   iob__shared_region_t** shared_out) {
    iob__shared_region_t* shared = NULL;
    *rounded = 0;
    switch (r->type) {
    case ZX_IOB_REGION_TYPE_PRIVATE:
        if (r->private_region.options != 0) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "region %u: private options 0x%x != 0",
                                index, r->private_region.options);
        }
        if (iob_page_round_up(r->size, core->page_size, rounded) != ZX_OK) {
            return IOB__ERR_SET(ZX_ERR_OUT_OF_RANGE, "region %u: size %" PRIu64 " too large",
                                index, r->size);
        }
        break;
    case ZX_IOB_REGION_TYPE_SHARED: {
        zx_iob_region_shared_t s;
        memcpy(&s, r->max_extension, sizeof s);
        if (s.options != 0 || r->size != 0) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "region %u: shared options/size not 0",
                                index);
        }
        /* Looked up with no rights required: the handle is not consumed either. */
        iob__handle_t* h = NULL;
        zx_status_t status =
            iob__handle_get(core, session, s.shared_region, ZX_OBJ_TYPE_IOB_SHARED_REGION, 0, &h);
        if (status != ZX_OK) {
            return status;
        }
        /* A header page and at least one page of data (A.7). */
        if (h->shared->memory.mem.size / core->page_size < 2) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS,
                                "region %u: shared region of %" PRIu64 " bytes is below 2 pages",
                                index, h->shared->memory.mem.size);
        }
        shared = h->shared;
        break;
    }
    default:
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "region %u: unknown type %u", index, r->type);
    }

    /* Memory must be writable by someone: a mapping or the (server-)kernel. */
    zx_iob_access_t mediated = r->access & IOB__ACCESS_MEDIATED;
    if ((r->access & IOB__ACCESS_MAP_WRITE) == 0 && mediated == 0) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "region %u: access 0x%x lets nobody write",
                            index, r->access);
    }

    switch (r->discipline.type) {
    case ZX_IOB_DISCIPLINE_TYPE_NONE:
        if (shared != NULL || mediated != 0) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS,
                                "region %u: discipline NONE allows no mediated access", index);
        }
        break;
    case ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR:
        if (shared != NULL || mediated_read_only(r->access)) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS,
                                "region %u: ID allocator needs a private region and no "
                                "read-only mediated endpoint",
                                index);
        }
        /*
         * The container's header needs 8 bytes, and a 0-byte region has none (Zircon cannot
         * map an empty VMO into the kernel for it either).
         */
        if (*rounded == 0) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "region %u: an ID allocator of 0 bytes",
                                index);
        }
        break;
    case ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER:
        if (shared == NULL) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS,
                                "region %u: the ring buffer needs a shared region", index);
        }
        break;
    default:
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "region %u: unknown discipline %" PRIu64, index,
                            r->discipline.type);
    }
    *shared_out = shared;
    return ZX_OK;
}

/* iob_idalloc_init's arguments, for iob_fault_call. */
typedef struct iob__id_format {
    void* view;
    uint64_t size;
} iob__id_format_t;

static zx_status_t id_format(void* ctx) {
    const iob__id_format_t* f = ctx;
    return iob_idalloc_init(f->view, f->size);
}

/*
 * Gives private region `index` of a new IOB its memory: a fresh memfd, zero-filled, with the
 * ID allocator's header when it has that discipline. Runs without the core's mutex (the IOB
 * is not published yet): its cost grows with the size.
 */
static zx_status_t region_memory_make(iob_backing_t backing, iob__iob_t* iob, uint32_t index) {
    iob__region_t* r = &iob->regions[index];
    uint64_t size = r->desc.size;
    char name[64];
    snprintf(name, sizeof name, "iob-%" PRIu64 "-r%u", iob->ep[0].koid, index);
    zx_status_t status = iob_region_create(backing, size, name, &r->own.mem);
    if (status != ZX_OK) {
        /*
         * The request passed validation (A.3 step 7, L's 2^63 limit included) and the
         * budget, so not getting its memory is an allocation failure, NO_MEMORY (A.3 step
         * 4, L "Memory"), whatever the layer below called it. Running out of descriptors
         * stays NO_RESOURCES.
         */
        zx_status_t cause = status;
        status = cause == ZX_ERR_NO_RESOURCES ? ZX_ERR_NO_RESOURCES : ZX_ERR_NO_MEMORY;
        r->own.mem.fd = -1;
        return IOB__ERR_SET(status, "region %u: %" PRIu64 " bytes of %s memory (status %d)", index,
                            size, iob_backing_name(backing), (int)cause);
    }
    if (r->desc.discipline.type == ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR) {
        /*
         * Zircon writes the container header at create, mediated bits or not (A.3 7.5). The
         * server writes through its own mapping (hugetlbfs has no write(2)), which it keeps
         * for zx_iob_allocate_id; a fresh memfd is zero-filled already.
         */
        void* view = iob__memory_view(&r->own);
        if (view == NULL) {
            return IOB__ERR_SET(ZX_ERR_NO_MEMORY, "region %u: mapping the ID allocator", index);
        }
        /*
         * No client holds this memory yet, so nothing can have destroyed it; guarded anyway,
         * as every access to region memory is (shm/fault_guard.h), so that none is forgotten.
         */
        iob__id_format_t format = {view, size};
        zx_status_t init = iob_fault_call(view, (size_t)r->own.mem.size, id_format, &format);
        if (init != ZX_OK) {
            return IOB__ERR_SET(ZX_ERR_INTERNAL, "region %u: ID allocator init (status %d)",
                                index, (int)init);
        }
    }
    return ZX_OK;
}

/* Undoes what create reserved under the lock (the lock is held). */
static void create_unreserve(iob_core_t* core, iob__iob_t* iob, iob__handle_t* h[2],
                             const iob__usage_t* charge) {
    iob__budget_release(core, &iob->payer, charge);
    for (int e = 0; e < 2; e++) {
        if (h[e] != NULL) {
            iob__handle_discard(core, h[e]);
            h[e] = NULL;
        }
    }
    for (uint32_t i = 0; i < iob->region_count; i++) {
        iob__shared_region_t* shared = iob->regions[i].shared;
        if (shared != NULL) {
            iob->regions[i].shared = NULL;
            shared->iob_regions--;
            iob__shared_region_released(core, shared);
        }
    }
}

static uint64_t add_saturating(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

zx_status_t iob_core_iob_create(iob_core_t* core, iob_session_id_t session, uint64_t options,
                                const zx_iob_region_t* regions, size_t region_count,
                                zx_handle_t* ep0_out, zx_handle_t* ep1_out) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__err_clear();
    if (ep0_out == NULL || ep1_out == NULL) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "ep0_out and ep1_out are required");
    }
    if (options != 0) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "options 0x%" PRIx64 " != 0", options);
    }
    if (region_count > ZX_IOB_MAX_REGIONS) {
        return IOB__ERR_SET(ZX_ERR_OUT_OF_RANGE, "%zu regions, at most %d", region_count,
                            ZX_IOB_MAX_REGIONS);
    }
    if (regions == NULL && region_count > 0) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "regions is NULL");
    }
    if (region_count == 0) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "no regions");
    }
    uint32_t count = (uint32_t)region_count;
    /* Allocated before the lock: nothing a client controls is paid for while it is held. */
    iob__iob_t* iob = calloc(1, sizeof *iob + (size_t)count * sizeof(iob__region_t));
    if (iob == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    iob->region_count = count;
    for (uint32_t i = 0; i < count; i++) {
        iob->regions[i].own.mem.fd = -1;
        iob->regions[i].own.ro_fd = -1;
    }
    iob__handle_t* h[2] = {NULL, NULL};
    iob__usage_t charge = {{0}};

    /* ---- Under the lock: validate, charge the budgets, pin shared regions ---- */
    iob__core_lock(core);
    zx_status_t status = ZX_OK;
    uint64_t sizes[ZX_IOB_MAX_REGIONS];
    iob__shared_region_t* shared[ZX_IOB_MAX_REGIONS];
    uint64_t total = 0;
    for (uint32_t i = 0; i < count; i++) {
        status = validate_region(core, session, &regions[i], i, &sizes[i], &shared[i]);
        if (status != ZX_OK) {
            goto fail_locked;
        }
        total = add_saturating(total, sizes[i]);
    }

    /* Limits come after validation (L): a malformed request never reports exhaustion. */
    iob__session_t* owner = iob__session_live(core, session);
    if (owner == NULL) {
        status = IOB__ERR_SET(ZX_ERR_BAD_STATE, "session %llu is not open",
                              (unsigned long long)session.value);
        goto fail_locked;
    }
    charge.n[IOB__RES_BYTES] = total;
    charge.n[IOB__RES_IOBS] = 1;
    status = iob__budget_charge(core, owner, &charge, &iob->payer);
    if (status != ZX_OK) {
        goto fail_locked;
    }
    for (int e = 0; e < 2; e++) {
        status = iob__handle_alloc(core, owner, &h[e]);
        if (status != ZX_OK) {
            goto fail_locked;
        }
    }
    for (uint32_t e = 0; e < 2; e++) {
        iob->ep[e].iob = iob;
        iob->ep[e].index = e;
        iob->ep[e].koid = core->next_koid++;
        iob->ep[e].handles = 1;
        iob__list_init(&iob->ep[e].holders);
    }
    for (uint32_t i = 0; i < count; i++) {
        iob__region_t* r = &iob->regions[i];
        /* Byte for byte as given (A.3 notes); only a private region's size is rounded. */
        memcpy(&r->desc, &regions[i], sizeof r->desc);
        if (shared[i] != NULL) {
            /* Pinned: a shared region's last handle may close while the memory is made. */
            r->shared = shared[i];
            r->koid = shared[i]->koid;
            shared[i]->iob_regions++;
        } else {
            r->desc.size = sizes[i];
            r->koid = core->next_koid++;
        }
    }
    iob_backing_t backing = core->config.backing;
    iob__core_unlock(core);

    /* ---- Without the lock: the memory, whose cost grows with the size asked ---- */
    for (uint32_t i = 0; i < count && status == ZX_OK; i++) {
        if (iob->regions[i].shared == NULL) {
            status = region_memory_make(backing, iob, i);
        }
    }

    /* ---- Under the lock again: publish, or give everything back ---- */
    char detail[192] = "";
    if (status != ZX_OK) {
        snprintf(detail, sizeof detail, "%s", iob_core_error_detail());
    }
    iob__core_lock(core);
    if (status == ZX_OK && iob__session_live(core, session) == NULL) {
        status = IOB__ERR_SET(ZX_ERR_BAD_STATE, "session %llu closed during the create",
                              (unsigned long long)session.value);
    }
    if (status == ZX_OK && iob__idmap_reserve(&core->handles, 2) != ZX_OK) {
        status = ZX_ERR_NO_MEMORY;
    }
    if (status == ZX_OK) {
        h[0]->value = iob__handle_value_next(core, ZX_HANDLE_INVALID);
        h[1]->value = iob__handle_value_next(core, h[0]->value);
        if (h[0]->value == ZX_HANDLE_INVALID || h[1]->value == ZX_HANDLE_INVALID) {
            status = IOB__ERR_SET(ZX_ERR_NO_RESOURCES, "every handle value is in use");
        }
    }
    if (status != ZX_OK) {
        create_unreserve(core, iob, h, &charge);
        iob__core_unlock(core);
        for (uint32_t i = 0; i < count; i++) {
            iob__memory_release(&iob->regions[i].own);
        }
        free(iob);
        /* Taking the lock again cleared what the allocation said; it is still the cause. */
        if (detail[0] != '\0') {
            iob__err_restore(detail);
        }
        return status;
    }
    owner = iob__session_live(core, session);
    iob->total_bytes = total;
    iob__list_push_back(&core->iobs, &iob->link);
    core->iob_count++;
    core->region_count += iob->region_count;
    for (int e = 0; e < 2; e++) {
        h[e]->rights = ZX_DEFAULT_IOB_RIGHTS;
        h[e]->ep = &iob->ep[e];
        iob__handle_install(core, owner, h[e]);
    }
    *ep0_out = h[0]->value;
    *ep1_out = h[1]->value;
    iob__core_unlock(core);
    return ZX_OK;

fail_locked:
    create_unreserve(core, iob, h, &charge);
    iob__core_unlock(core);
    free(iob);
    return status;
}
