/* SPDX-License-Identifier: MIT */
/*
 * zx_iob_create's server half: IOB-SPEC.md A.3 in its order, with L's choices (NULL out
 * pointers first, private options must be 0, sizes above 2^63 are OUT_OF_RANGE), then the
 * configured limits, then the memory. Everything is allocated before anything is
 * published, so a failure at any step leaves no trace except burnt koids.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/core/iob_core_internal.h"

#define IOB__ACCESS_MAP_WRITE (ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE)
#define IOB__ACCESS_MEDIATED                                                                 \
    (ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ | ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE |            \
     ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ | ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE)

/*
 * The one place that says which disciplines the core can run. ID_ALLOCATOR and
 * MEDIATED_WRITE_RING_BUFFER are validated exactly as A.3 says, and then refused with
 * ZX_ERR_NOT_SUPPORTED until their mediated operations exist.
 */
static bool discipline_implemented(zx_iob_discipline_type_t type) {
    return type == ZX_IOB_DISCIPLINE_TYPE_NONE;
}

/* "Exactly MEDIATED_READ" for one endpoint's two mediated bits (A.3, ID_ALLOCATOR). */
static bool mediated_read_only(zx_iob_access_t access) {
    zx_iob_access_t ep0 = access & (ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ |
                                    ZX_IOB_ACCESS_EP0_CAN_MEDIATED_WRITE);
    zx_iob_access_t ep1 = access & (ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ |
                                    ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE);
    return ep0 == ZX_IOB_ACCESS_EP0_CAN_MEDIATED_READ || ep1 == ZX_IOB_ACCESS_EP1_CAN_MEDIATED_READ;
}

/* A.3 step 7 for one region: type, size, access sanity, discipline. */
static zx_status_t validate_region(iob_core_t* core, iob_session_id_t session,
                                   const zx_iob_region_t* r, uint32_t index, uint64_t* rounded) {
    /* Stays false until shared-region objects exist; the discipline rules already use it. */
    bool shared = false;
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
        /*
         * Shared-region objects do not exist yet, so no handle can name one: an IOB handle is
         * the wrong type, anything else a bad handle. Their 2-page minimum and koid go here.
         */
        if (iob__handle_lookup(core, session, s.shared_region) != NULL) {
            return IOB__ERR_SET(ZX_ERR_WRONG_TYPE, "region %u: handle 0x%x is not a shared region",
                                index, s.shared_region);
        }
        return IOB__ERR_SET(ZX_ERR_BAD_HANDLE, "region %u: shared region handle 0x%x", index,
                            s.shared_region);
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
        if (shared || mediated != 0) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS,
                                "region %u: discipline NONE allows no mediated access", index);
        }
        break;
    case ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR:
        if (shared || mediated_read_only(r->access)) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS,
                                "region %u: ID allocator needs a private region and no "
                                "read-only mediated endpoint",
                                index);
        }
        break;
    case ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER:
        if (!shared) {
            return IOB__ERR_SET(ZX_ERR_INVALID_ARGS,
                                "region %u: the ring buffer needs a shared region", index);
        }
        break;
    default:
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "region %u: unknown discipline %" PRIu64, index,
                            r->discipline.type);
    }
    return ZX_OK;
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

    iob__core_lock(core);
    zx_status_t status = ZX_OK;
    uint64_t sizes[ZX_IOB_MAX_REGIONS];
    uint64_t total = 0;
    bool implemented = true;
    for (uint32_t i = 0; i < count; i++) {
        status = validate_region(core, session, &regions[i], i, &sizes[i]);
        if (status != ZX_OK) {
            goto out;
        }
        total = add_saturating(total, sizes[i]);
        implemented = implemented && discipline_implemented(regions[i].discipline.type);
    }
    if (!implemented) {
        status = IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "mediated disciplines are not implemented yet");
        goto out;
    }

    /* Limits come after validation (L): a malformed request never reports exhaustion. */
    iob__session_t* owner = iob__session_live(core, session);
    if (owner == NULL) {
        status = IOB__ERR_SET(ZX_ERR_BAD_STATE, "session %llu is not open",
                              (unsigned long long)session.value);
        goto out;
    }
    uint64_t budget = core->config.max_total_bytes;
    if (budget != 0 && (core->bytes_in_use > budget || total > budget - core->bytes_in_use)) {
        status = IOB__ERR_SET(ZX_ERR_NO_MEMORY,
                              "%" PRIu64 " bytes exceed the budget (%" PRIu64 " of %" PRIu64
                              " in use)",
                              total, core->bytes_in_use, budget);
        goto out;
    }
    if (core->config.max_iobs_per_session != 0 &&
        owner->iob_count >= core->config.max_iobs_per_session) {
        status = IOB__ERR_SET(ZX_ERR_NO_RESOURCES, "session IOB limit %u reached",
                              core->config.max_iobs_per_session);
        goto out;
    }
    if (!iob__session_handles_fit(core, owner, 2)) {
        status = IOB__ERR_SET(ZX_ERR_NO_RESOURCES, "session handle limit %u reached",
                              core->config.max_handles_per_session);
        goto out;
    }

    iob__iob_t* iob = calloc(1, sizeof *iob + (size_t)count * sizeof(iob__region_t));
    iob__handle_t* h0 = calloc(1, sizeof *h0);
    iob__handle_t* h1 = calloc(1, sizeof *h1);
    if (iob == NULL || h0 == NULL || h1 == NULL ||
        iob__idmap_reserve(&core->handles, 2) != ZX_OK) {
        status = ZX_ERR_NO_MEMORY;
        goto fail;
    }
    h0->value = iob__handle_value_next(core);
    h1->value = iob__handle_value_next(core);
    if (h0->value == ZX_HANDLE_INVALID || h1->value == ZX_HANDLE_INVALID) {
        status = IOB__ERR_SET(ZX_ERR_NO_RESOURCES, "handle values exhausted");
        goto fail;
    }

    iob->region_count = count;
    for (uint32_t e = 0; e < 2; e++) {
        iob->ep[e].iob = iob;
        iob->ep[e].index = e;
        iob->ep[e].koid = core->next_koid++;
        iob->ep[e].handles = 1;
    }
    uint32_t made = 0;
    for (; made < count; made++) {
        iob__region_t* r = &iob->regions[made];
        memcpy(&r->desc, &regions[made], sizeof r->desc);
        r->desc.size = sizes[made];
        r->koid = core->next_koid++;
        r->ro_fd = -1;
        char name[64];
        snprintf(name, sizeof name, "iob-%" PRIu64 "-r%u", iob->ep[0].koid, made);
        status = iob_region_create(core->config.backing, sizes[made], name, &r->mem);
        if (status != ZX_OK) {
            /*
             * The request passed validation (A.3 step 7, L's 2^63 limit included), so not
             * getting its memory is an allocation failure, NO_MEMORY (A.3 step 4, L
             * "Memory"), whatever the layer below called it (a 2^63-byte memfd is
             * OUT_OF_RANGE there). Running out of descriptors stays NO_RESOURCES.
             */
            zx_status_t cause = status;
            status = cause == ZX_ERR_NO_RESOURCES ? ZX_ERR_NO_RESOURCES : ZX_ERR_NO_MEMORY;
            IOB__ERR_SET(status, "region %u: %" PRIu64 " bytes of %s memory (status %d)", made,
                         sizes[made], iob_backing_name(core->config.backing), (int)cause);
            break;
        }
    }
    if (status != ZX_OK) {
        while (made > 0) {
            iob_region_destroy(&iob->regions[--made].mem);
        }
        goto fail;
    }

    iob->total_bytes = total;
    iob->creator = owner;
    owner->iob_count++;
    iob__list_push_back(&core->iobs, &iob->link);
    core->iob_count++;
    core->bytes_in_use += total;
    h0->rights = ZX_DEFAULT_IOB_RIGHTS;
    h0->ep = &iob->ep[0];
    h1->rights = ZX_DEFAULT_IOB_RIGHTS;
    h1->ep = &iob->ep[1];
    iob__handle_install(core, owner, h0);
    iob__handle_install(core, owner, h1);
    *ep0_out = h0->value;
    *ep1_out = h1->value;
    goto out;

fail:
    free(iob);
    free(h0);
    free(h1);
out:
    iob__core_unlock(core);
    return status;
}
