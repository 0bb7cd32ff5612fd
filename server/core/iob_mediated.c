/* SPDX-License-Identifier: MIT */
/*
 * Shared regions (zx_iob_create_shared_region) and the two mediated disciplines: the
 * server halves of zx_iob_writev (docs/zircon-iob.md A.6, A.7) and zx_iob_allocate_id (A.5, A.8).
 * The on-region layouts themselves live in shm/mediated.c, which clients use to read them.
 *
 * Locking: the core's one mutex is held for the whole of each call, so it is also the
 * per-shared-region lock of A.7 (writers of one ring are serialised) and keeps ID
 * allocations of the server's callers serialised; userspace allocators that write an ID
 * allocator region directly race with the server only through the atomics of A.8.
 * Unlike the kernel, the server never faults on a caller's buffer: the adapter has copied
 * the bytes, and what it could not read arrives as NULL (see iob_core.h). It may fault on
 * the region, whose memory a writer can destroy: every access runs under iob_fault_call.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/core/iob_core_internal.h"
#include "shm/fault_guard.h"
#include "shm/mediated.h"

/* ---- Shared-region objects ---- */

void iob__shared_region_free(iob_core_t* core, iob__shared_region_t* shared) {
    iob__usage_t charge = iob__amount(IOB__RES_BYTES, shared->memory.mem.size);
    charge.n[IOB__RES_IOBS] = 1;
    iob__budget_release(core, &shared->payer, &charge);
    iob__list_remove(&shared->link);
    core->shared_region_count--;
    iob_metrics_region_release(shared->metrics);
    shared->metrics = NULL;
    /* Its memory is closed once the mutex is released. */
    iob__shared_region_bury(shared);
}

void iob__shared_region_released(iob_core_t* core, iob__shared_region_t* shared) {
    if (shared->handles == 0 && shared->iob_regions == 0) {
        iob__shared_region_free(core, shared);
    }
}

zx_status_t iob_core_shared_region_create(iob_core_t* core, iob_session_id_t session,
                                          uint64_t options, uint64_t size, zx_handle_t* out) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__err_clear();
    if (out == NULL) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "out is required");
    }
    /*
     * Zircon refuses these three together, before anything else, and does not round the
     * size: the caller asks for whole pages (zx_system_get_page_size, here the server's).
     */
    if (options != 0 || size == 0 || size % core->page_size != 0) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS,
                            "options 0x%" PRIx64 " must be 0 and size %" PRIu64
                            " a non-zero multiple of %" PRIu64,
                            options, size, core->page_size);
    }
    uint64_t checked = 0;
    if (iob_page_round_up(size, core->page_size, &checked) != ZX_OK) {
        return IOB__ERR_SET(ZX_ERR_OUT_OF_RANGE, "size %" PRIu64 " is above 2^63", size);
    }
    iob__shared_region_t* shared = calloc(1, sizeof *shared);
    if (shared == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    shared->memory.ro_fd = -1;
    shared->memory.mem.fd = -1;
    /*
     * A shared region holds memory and can be exported like an IOB, so it takes one of the
     * session's and uid's IOB slots: otherwise it would be a way around those budgets.
     */
    iob__usage_t charge = iob__amount(IOB__RES_BYTES, size);
    charge.n[IOB__RES_IOBS] = 1;
    char detail[192] = ""; /* why the allocation failed, which the second lock clears */

    /* ---- Under the lock: the session and the budgets ---- */
    iob__core_lock(core);
    zx_status_t status = ZX_OK;
    iob__handle_t* h = NULL;
    iob__session_t* owner = iob__session_live(core, session);
    if (owner == NULL) {
        status = IOB__ERR_SET(ZX_ERR_BAD_STATE, "session %llu is not open",
                              (unsigned long long)session.value);
        goto fail_locked;
    }
    status = iob__budget_charge(core, owner, &charge, &shared->payer);
    if (status != ZX_OK) {
        goto fail_locked;
    }
    status = iob__handle_alloc(core, owner, &h);
    if (status != ZX_OK) {
        goto fail_locked;
    }
    shared->koid = core->next_koid++;
    iob__list_init(&shared->holders);
    iob_backing_t backing = core->config.backing;
    iob__core_unlock(core);

    /* ---- Without the lock: the memory ---- */
    char name[64];
    snprintf(name, sizeof name, "iob-shared-%" PRIu64, shared->koid);
    status = iob_region_create(backing, size, name, &shared->memory.mem);
    if (status != ZX_OK) {
        /* As for IOB regions: validated sizes that find no memory are NO_MEMORY. */
        zx_status_t cause = status;
        status = cause == ZX_ERR_NO_RESOURCES ? ZX_ERR_NO_RESOURCES : ZX_ERR_NO_MEMORY;
        shared->memory.mem.fd = -1;
        snprintf(detail, sizeof detail, "shared region: %" PRIu64 " bytes of %s memory (status %d)",
                 size, iob_backing_name(backing), (int)cause);
    }

    /* ---- Under the lock again: publish, or give everything back ---- */
    iob__core_lock(core);
    if (status == ZX_OK && iob__session_live(core, session) == NULL) {
        status = IOB__ERR_SET(ZX_ERR_BAD_STATE, "session %llu closed during the create",
                              (unsigned long long)session.value);
    }
    if (status == ZX_OK && iob__idmap_reserve(&core->handles, 1) != ZX_OK) {
        status = ZX_ERR_NO_MEMORY;
    }
    if (status == ZX_OK &&
        (h->value = iob__handle_value_next(core, ZX_HANDLE_INVALID)) == ZX_HANDLE_INVALID) {
        status = IOB__ERR_SET(ZX_ERR_NO_RESOURCES, "every handle value is in use");
    }
    if (status != ZX_OK) {
        goto fail_locked;
    }
    owner = iob__session_live(core, session);
    shared->handles = 1;
    iob__list_push_back(&core->shared_regions, &shared->link);
    core->shared_region_count++;
    shared->metrics = iob_metrics_region_acquire(shared->koid);
    h->rights = ZX_DEFAULT_IOB_SHARED_REGION_RIGHTS;
    h->shared = shared;
    iob__handle_install(core, owner, h);
    *out = h->value;
    iob__core_unlock(core);
    return ZX_OK;

fail_locked:
    iob__budget_release(core, &shared->payer, &charge);
    if (h != NULL) {
        iob__handle_discard(core, h);
    }
    iob__core_unlock(core);
    iob__memory_release(&shared->memory);
    free(shared);
    if (detail[0] != '\0') {
        iob__err_restore(detail);
    }
    return status;
}

/* ---- The checks zx_iob_writev and zx_iob_allocate_id share (A.5, A.6 steps 2-5) ---- */

/*
 * The start of both calls: options (ZX_ERR_INVALID_ARGS unless 0), then under the lock the
 * handle (with ZX_RIGHT_WRITE, the wrong type before the missing right, as Zircon's handle
 * table decides), the region index, the region's discipline and this endpoint's
 * MEDIATED_WRITE bit, in that order, and the server's view of the region's memory. Returns
 * the region with the core locked for the caller (who unlocks), or NULL with *status_out
 * set and the core unlocked.
 */
static iob__region_t* mediated_enter(iob_core_t* core, iob_session_id_t session,
                                     zx_handle_t handle, uint64_t options, uint32_t region_index,
                                     zx_iob_discipline_type_t discipline, void** view_out,
                                     zx_status_t* status_out) {
    if (core == NULL) {
        *status_out = ZX_ERR_INVALID_ARGS;
        return NULL;
    }
    iob__err_clear();
    if (options != 0) {
        *status_out = IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "options 0x%" PRIx64 " != 0", options);
        return NULL;
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    iob__region_t* r = NULL;
    zx_status_t status =
        iob__region_get(core, session, handle, ZX_RIGHT_WRITE, region_index, &h, &r);
    void* view = NULL;
    if (status != ZX_OK) {
        /* iob__region_get said why. */
    } else if (r->desc.discipline.type != discipline) {
        status =
            IOB__ERR_SET(ZX_ERR_WRONG_TYPE, "region %u has discipline %" PRIu64 ", not %" PRIu64,
                         region_index, r->desc.discipline.type, discipline);
    } else if (!(iob__access_view(r->desc.access, h->ep->index) &
                 ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE)) {
        status = IOB__ERR_SET(ZX_ERR_ACCESS_DENIED, "endpoint %u may not write region %u mediated",
                              h->ep->index, region_index);
    } else if ((view = iob__memory_view(iob__region_memory(r))) == NULL) {
        /* An ID allocator's own memory, or (A.3) a ring buffer's shared region. */
        status = IOB__ERR_SET(ZX_ERR_NO_MEMORY, "mapping region %u", region_index);
    }
    *status_out = status;
    if (status != ZX_OK) {
        iob__core_unlock(core);
        return NULL;
    }
    *view_out = view;
    return r;
}

/* ---- zx_iob_writev ---- */

/* iob_mwrb_write_at's arguments, for iob_fault_call. */
typedef struct iob__ring_append {
    void* ring;
    iob_mwrb_cursor_t* cursor;
    uint64_t size;
    uint64_t page_size;
    uint64_t tag;
    const zx_iovec_t* vectors;
    size_t num_vectors;
} iob__ring_append_t;

static zx_status_t ring_append(void* ctx) {
    const iob__ring_append_t* a = ctx;
    return iob_mwrb_write_at(a->ring, a->size, a->page_size, a->tag, a->vectors, a->num_vectors,
                             a->cursor);
}

zx_status_t iob_core_iob_writev(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                uint64_t options, uint32_t region_index, const zx_iovec_t* vectors,
                                size_t num_vectors) {
    void* ring = NULL;
    zx_status_t status = ZX_OK;
    iob__region_t* r =
        mediated_enter(core, session, handle, options, region_index,
                       ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER, &ring, &status);
    if (r == NULL) {
        return status;
    }
    iob__shared_region_t* shared = r->shared;
    iob__ring_append_t append = {.ring = ring,
                                 .cursor = &shared->ring_cursor,
                                 .size = shared->memory.mem.size,
                                 .page_size = core->page_size,
                                 .tag = r->desc.discipline.ring_buffer.tag,
                                 .vectors = vectors,
                                 .num_vectors = num_vectors};
    status = iob_fault_call(ring, (size_t)shared->memory.mem.size, ring_append, &append);
    uint64_t bytes = 0;
    for (size_t i = 0; status == ZX_OK && i < num_vectors; i++) {
        bytes += vectors[i].capacity;
    }
    iob_metrics_mediated_record(shared->metrics, bytes, status);
    if (status != ZX_OK) {
        IOB__ERR_SET(status, "region %u: ring of shared region %" PRIu64 " refused the record",
                     region_index, shared->koid);
        goto done;
    }
    iob__holders_notify(core, &shared->holders, shared->koid, shared->signals, true);
done:
    iob__core_unlock(core);
    return status;
}

/* ---- zx_iob_allocate_id ---- */

/* iob_idalloc_check's or iob_idalloc_allocate's arguments, for iob_fault_call. */
typedef struct iob__id_claim {
    void* container;
    uint64_t size;
    const void* blob;
    uint64_t blob_size;
    uint32_t* id; /* NULL: the caller's id pointer was NULL */
    bool check_only;
} iob__id_claim_t;

static zx_status_t id_claim(void* ctx) {
    const iob__id_claim_t* c = ctx;
    return c->check_only
               ? iob_idalloc_check(c->container, c->size, c->blob_size, c->id == NULL)
               : iob_idalloc_allocate(c->container, c->size, c->blob, c->blob_size, c->id);
}

/*
 * Both allocate_id calls: steps 1-5 under the lock, then the container's checks, and the
 * allocation itself unless `check_only`.
 */
static zx_status_t allocate_id(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                               uint32_t options, uint32_t region_index, const void* blob,
                               uint64_t blob_size, uint32_t* id, bool check_only) {
    void* container = NULL; /* made at create, when the header was written (iob_create.c) */
    zx_status_t status = ZX_OK;
    iob__region_t* r = mediated_enter(core, session, handle, options, region_index,
                                      ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR, &container, &status);
    if (r == NULL) {
        return status;
    }
    uint32_t allocated = 0;
    iob__id_claim_t claim = {.container = container,
                             .size = r->desc.size,
                             .blob = blob,
                             .blob_size = blob_size,
                             .id = id != NULL ? &allocated : NULL,
                             .check_only = check_only};
    status = iob_fault_call(container, (size_t)r->own.mem.size, id_claim, &claim);
    if (status != ZX_OK) {
        IOB__ERR_SET(status, "region %u: allocating an ID for %" PRIu64 " bytes", region_index,
                     blob_size);
        goto done;
    }
    if (!check_only) {
        *id = allocated;
    }
done:
    iob__core_unlock(core);
    return status;
}

zx_status_t iob_core_iob_allocate_id(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                     uint32_t options, uint32_t region_index, const void* blob,
                                     uint64_t blob_size, uint32_t* id) {
    return allocate_id(core, session, handle, options, region_index, blob, blob_size, id, false);
}

zx_status_t iob_core_iob_allocate_id_check(iob_core_t* core, iob_session_id_t session,
                                           zx_handle_t handle, uint32_t options,
                                           uint32_t region_index, uint64_t blob_size,
                                           bool id_null) {
    /* Any non-NULL pointer stands for the caller's: it is only compared with NULL. */
    uint32_t id_stand_in = 0;
    return allocate_id(core, session, handle, options, region_index, NULL, blob_size,
                       id_null ? NULL : &id_stand_in, true);
}
