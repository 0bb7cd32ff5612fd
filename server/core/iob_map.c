/* SPDX-License-Identifier: MIT */
/*
 * Mapping authorisation (zx_vmar_map_iob's server half, docs/zircon-iob.md A.4 and A.12), mapping
 * records (A.9), and mediated region reads and writes for clients that cannot map.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "server/core/iob_core_internal.h"
#include "shm/fault_guard.h"

/* The CAN_MAP_* bits vmar_map_common refuses from callers (not CAN_MAP_SPECIFIC). */
#define IOB__VM_CAN_MAP_RWX (ZX_VM_CAN_MAP_READ | ZX_VM_CAN_MAP_WRITE | ZX_VM_CAN_MAP_EXECUTE)
/*
 * Known flags that a VMAR accepts when parsing the options but that a mapping may not
 * carry (VmAddressRegion::CreateVmMapping's allowed-flags check): INVALID_ARGS.
 */
#define IOB__VM_NOT_FOR_MAPPINGS (ZX_VM_COMPACT | ZX_VM_CAN_MAP_SPECIFIC)
/* Every option bit below ZX_VM_ALIGN_BASE that Zircon defines. */
#define IOB__VM_KNOWN_FLAGS ((zx_vm_option_t)0xFFFFu)
#define IOB__VM_ALIGN_MIN 10u
#define IOB__VM_ALIGN_MAX 32u

/* A.4 step 5: what an endpoint's access bits let a mapping have, as object rights. */
static zx_rights_t region_map_rights(zx_iob_access_t view) {
    zx_rights_t rights = 0;
    if (view & ZX_IOB_ACCESS_EP0_CAN_MAP_READ) {
        rights |= ZX_RIGHT_READ | ZX_RIGHT_MAP;
    }
    if (view & ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE) {
        rights |= ZX_RIGHT_WRITE | ZX_RIGHT_MAP;
    }
    return rights;
}

/*
 * The checks of A.4 from step 3 on, in Zircon's order: sys_vmar_map_iob (region index),
 * vmar_map_common (MAP right, protection, MAP_RANGE with SPECIFIC_OVERWRITE, CAN_MAP_READ/
 * WRITE/EXECUTE, permissions, FAULT_BEYOND_STREAM_SIZE), then VmAddressRegionDispatcher::Map
 * (option bits and alignment) and CreateVmMapping (flags a mapping may not carry, length,
 * offset alignment, overflow), then A.4 step 8 (past the region's end). Rights come before
 * lengths and alignment, so a 0-length map of a forbidden region is ACCESS_DENIED.
 */
static zx_status_t check_map(const iob_core_t* core, const iob__handle_t* h,
                             zx_vm_option_t options, uint32_t region_index,
                             uint64_t region_offset, uint64_t len, zx_rights_t* effective) {
    const iob__iob_t* iob = h->ep->iob;
    if (region_index >= iob->region_count) {
        return IOB__ERR_SET(ZX_ERR_OUT_OF_RANGE, "region %u of %u", region_index,
                            iob->region_count);
    }
    const iob__region_t* r = &iob->regions[region_index];
    zx_rights_t eff =
        h->rights & region_map_rights(iob__access_view(r->desc.access, h->ep->index));

    /* No execute-only mappings here, so Zircon's fallback applies: read is added. */
    if (options & ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED) {
        options |= ZX_VM_PERM_READ;
    }
    if (!(eff & ZX_RIGHT_MAP)) {
        return IOB__ERR_SET(ZX_ERR_ACCESS_DENIED,
                            "no ZX_RIGHT_MAP (handle rights 0x%x, region %u access 0x%x)",
                            h->rights, region_index, r->desc.access);
    }
    if ((options & (ZX_VM_PERM_WRITE | ZX_VM_PERM_EXECUTE)) && !(options & ZX_VM_PERM_READ)) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "write or execute without read");
    }
    if ((options & ZX_VM_MAP_RANGE) && (options & ZX_VM_SPECIFIC_OVERWRITE)) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "MAP_RANGE with SPECIFIC_OVERWRITE");
    }
    if (options & IOB__VM_CAN_MAP_RWX) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "ZX_VM_CAN_MAP_READ/WRITE/EXECUTE from caller");
    }
    if ((options & ZX_VM_PERM_READ) && !(eff & ZX_RIGHT_READ)) {
        return IOB__ERR_SET(ZX_ERR_ACCESS_DENIED, "read not allowed");
    }
    if ((options & ZX_VM_PERM_WRITE) && !(eff & ZX_RIGHT_WRITE)) {
        return IOB__ERR_SET(ZX_ERR_ACCESS_DENIED, "write not allowed");
    }
    if (options & ZX_VM_PERM_EXECUTE) {
        return IOB__ERR_SET(ZX_ERR_ACCESS_DENIED, "IOB handles never carry ZX_RIGHT_EXECUTE");
    }
    if ((options & ZX_VM_FAULT_BEYOND_STREAM_SIZE) && !(options & ZX_VM_ALLOW_FAULTS)) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "FAULT_BEYOND_STREAM_SIZE without ALLOW_FAULTS");
    }
    /*
     * The fix for b/504721827: vmar_map_common refuses FAULT_BEYOND_STREAM_SIZE when the VMO
     * has no user stream size, which an IOB region's never has. That check sits right here,
     * before the VMAR parses the options or looks at the range, so it wins over all of them.
     */
    if (options & ZX_VM_FAULT_BEYOND_STREAM_SIZE) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "FAULT_BEYOND_STREAM_SIZE: IOB regions have no "
                                                 "stream size");
    }
    uint32_t align = options >> ZX_VM_ALIGN_BASE;
    if ((options & ~IOB__VM_KNOWN_FLAGS & ((1u << ZX_VM_ALIGN_BASE) - 1u)) != 0 ||
        (align != 0 && (align < IOB__VM_ALIGN_MIN || align > IOB__VM_ALIGN_MAX))) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "unknown options 0x%x", options);
    }
    if (options & IOB__VM_NOT_FOR_MAPPINGS) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "COMPACT/CAN_MAP_SPECIFIC on a mapping");
    }
    if (len == 0) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "length 0");
    }
    if (region_offset % core->page_size != 0) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "offset %" PRIu64 " not page-aligned",
                            region_offset);
    }
    /*
     * Mappings cover whole pages, so the rounded length is what must fit. Only a real
     * overflow (of the rounding, or of offset + rounded length) is OUT_OF_RANGE, as in
     * CreateVmMapping; a huge length that does not overflow is merely past the end.
     * (iob_page_round_up is not used: its 2^63 cap is a rule for region sizes.)
     */
    uint64_t mask = core->page_size - 1;
    if (len > UINT64_MAX - mask || region_offset > UINT64_MAX - ((len + mask) & ~mask)) {
        return IOB__ERR_SET(ZX_ERR_OUT_OF_RANGE, "offset + length overflows");
    }
    uint64_t rounded_len = (len + mask) & ~mask;
    /*
     * A.4 step 8. Zircon's kernel code has no such check (a paged VMO maps past its end and
     * faults there); zx_vmar_map's documentation and docs/zircon-iob.md A.4 give BUFFER_TOO_SMALL
     * for a non-resizable VMO without ALLOW_FAULTS, which on Linux also spares the client a
     * SIGBUS past the memfd's sealed end.
     */
    uint64_t region_bytes = iob__region_bytes(r);
    if (region_offset + rounded_len > region_bytes && !(options & ZX_VM_ALLOW_FAULTS)) {
        return IOB__ERR_SET(ZX_ERR_BUFFER_TOO_SMALL,
                            "[%" PRIu64 ", +%" PRIu64 ") is past the region's %" PRIu64 " bytes",
                            region_offset, rounded_len, region_bytes);
    }
    *effective = eff;
    return ZX_OK;
}

/*
 * iob_core_map and iob_core_map_dup. dup_fd: the grant's fd is a new descriptor (a dup,
 * close-on-exec) made under the core's lock and owned by the caller, so no other thread can
 * close the region between the grant and the caller's copy.
 */
static zx_status_t iob__map(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                            zx_vm_option_t options, uint32_t region_index,
                            uint64_t region_offset, uint64_t len, bool dup_fd,
                            iob_map_grant_t* grant_out) {
    if (core == NULL || grant_out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    /* A.4 step 2 needs no right yet: the rights count at step 6 (check_map). */
    zx_status_t status = iob__handle_get(core, session, handle, ZX_OBJ_TYPE_IOB, 0, &h);
    if (status != ZX_OK) {
        goto done;
    }
    zx_rights_t eff = 0;
    status = check_map(core, h, options, region_index, region_offset, len, &eff);
    if (status != ZX_OK) {
        goto done;
    }
    iob__region_t* r = &h->ep->iob->regions[region_index];
    /* A shared region's IOBs all hand out the one memfd of the shared region (A.3 7.2). */
    iob__memory_t* memory = iob__region_memory(r);
    /*
     * Writable whenever the rights allow writing, even for a read-only mapping: Zircon gives
     * such a mapping CAN_MAP_WRITE, so zx_vmar_protect may make it writable later.
     */
    bool writable = (eff & ZX_RIGHT_WRITE) != 0;
    if (!writable && memory->ro_fd < 0) {
        status = iob_region_open_readonly(&memory->mem, &memory->ro_fd);
        if (status != ZX_OK) {
            memory->ro_fd = -1;
            IOB__ERR_SET(status, "read-only description of region %u", region_index);
            goto done;
        }
    }
    iob__mapping_t* m = calloc(1, sizeof *m);
    if (m == NULL) {
        status = ZX_ERR_NO_MEMORY;
        goto done;
    }
    /* A record lives until UNMAP or the process's exit: the session's budget bounds them. */
    iob__usage_t one = iob__amount(IOB__RES_MAPPINGS, 1);
    status = iob__budget_charge(core, h->session, &one, &m->payer);
    if (status != ZX_OK) {
        free(m);
        goto done;
    }
    m->id = core->next_mapping_id;
    status = iob__idmap_put(&core->mappings, m->id, m);
    if (status != ZX_OK) {
        iob__budget_release(core, &m->payer, &one);
        free(m);
        goto done;
    }
    core->next_mapping_id++;
    m->ep = h->ep;
    m->session = h->session;
    iob__list_push_back(&h->session->mappings, &m->link);
    h->ep->mappings++;
    core->mapping_count++;

    int fd = writable ? memory->mem.fd : memory->ro_fd;
    if (dup_fd) {
        fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            status = IOB__ERR_SET(iob_status_from_errno(errno), "dup of region %u's fd: %s",
                                  region_index, strerror(errno));
            /* The endpoint keeps handle h, so taking the record back changes no signal. */
            iob__mapping_destroy(core, m);
            goto done;
        }
    }
    grant_out->mapping = (iob_mapping_id_t){m->id};
    grant_out->fd = fd;
    grant_out->writable = writable;
    grant_out->region_size = iob__region_bytes(r);
    grant_out->iob_koid = h->ep->iob->ep[0].koid;
done:
    iob__core_unlock(core);
    return status;
}

zx_status_t iob_core_map(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                         zx_vm_option_t options, uint32_t region_index, uint64_t region_offset,
                         uint64_t len, iob_map_grant_t* grant_out) {
    return iob__map(core, session, handle, options, region_index, region_offset, len, false,
                    grant_out);
}

/* ---- iob_core_map_dup (added for the map broker; see iob_core.h) ---- */

zx_status_t iob_core_map_dup(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                             zx_vm_option_t options, uint32_t region_index,
                             uint64_t region_offset, uint64_t len, iob_map_grant_t* grant_out) {
    return iob__map(core, session, handle, options, region_index, region_offset, len, true,
                    grant_out);
}

void iob__mapping_destroy(iob_core_t* core, iob__mapping_t* mapping) {
    iob__endpoint_t* ep = mapping->ep;
    iob__idmap_remove(&core->mappings, mapping->id);
    iob__list_remove(&mapping->link);
    core->mapping_count--;
    iob__usage_t one = iob__amount(IOB__RES_MAPPINGS, 1);
    iob__budget_release(core, &mapping->payer, &one);
    free(mapping);
    ep->mappings--;
    iob__endpoint_released(core, ep);
}

zx_status_t iob_core_unmap(iob_core_t* core, iob_session_id_t session, iob_mapping_id_t mapping) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    zx_status_t status = ZX_OK;
    iob__mapping_t* m = iob__idmap_get(&core->mappings, mapping.value);
    if (m == NULL || m->session->id != session.value) {
        status = IOB__ERR_SET(ZX_ERR_NOT_FOUND, "no mapping %llu in this session",
                              (unsigned long long)mapping.value);
    } else {
        iob__mapping_destroy(core, m);
    }
    iob__core_unlock(core);
    return status;
}

/* ---- Mediated access ---- */

/*
 * Shared checks of region_read/region_write, in the order of A.5/A.6: the handle's right,
 * the region index, the endpoint's access bit, then the range.
 */
static zx_status_t region_access(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                 uint32_t region_index, uint64_t offset, size_t len,
                                 bool write, uint8_t** where) {
    iob__handle_t* h = NULL;
    iob__region_t* r = NULL;
    zx_status_t status = iob__region_get(
        core, session, handle, write ? ZX_RIGHT_WRITE : ZX_RIGHT_READ, region_index, &h, &r);
    if (status != ZX_OK) {
        return status;
    }
    zx_iob_access_t bit = write ? ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE : ZX_IOB_ACCESS_EP0_CAN_MAP_READ;
    if (!(iob__access_view(r->desc.access, h->ep->index) & bit)) {
        return IOB__ERR_SET(ZX_ERR_ACCESS_DENIED, "endpoint %u may not %s region %u",
                            h->ep->index, write ? "write" : "read", region_index);
    }
    uint64_t region_bytes = iob__region_bytes(r);
    if (offset > region_bytes || len > region_bytes - offset) {
        return IOB__ERR_SET(ZX_ERR_OUT_OF_RANGE,
                            "[%" PRIu64 ", +%zu) is past the region's %" PRIu64 " bytes", offset,
                            len, region_bytes);
    }
    if (len == 0) {
        *where = NULL;
        return ZX_OK;
    }
    uint8_t* view = iob__memory_view(iob__region_memory(r));
    if (view == NULL) {
        return IOB__ERR_SET(ZX_ERR_NO_MEMORY, "mapping region %u in the server", region_index);
    }
    *where = view + offset;
    return ZX_OK;
}

/* ReadRegion and WriteRegion: one copy between region memory and the caller's buffer. */
static zx_status_t region_copy(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                               uint32_t region_index, uint64_t offset, void* buffer, size_t len,
                               bool write) {
    if (core == NULL || (buffer == NULL && len > 0)) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    uint8_t* where = NULL;
    zx_status_t status =
        region_access(core, session, handle, region_index, offset, len, write, &where);
    if (status == ZX_OK && len > 0) {
        status = write ? iob_fault_memcpy(where, len, where, buffer, len)
                       : iob_fault_memcpy(where, len, buffer, where, len);
        if (status != ZX_OK) {
            IOB__ERR_SET(status, "region %u: memory at [%" PRIu64 ", +%zu) is gone", region_index,
                         offset, len);
        }
    }
    iob__core_unlock(core);
    return status;
}

zx_status_t iob_core_region_read(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                 uint32_t region_index, uint64_t offset, void* buffer, size_t len) {
    return region_copy(core, session, handle, region_index, offset, buffer, len, false);
}

zx_status_t iob_core_region_write(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                  uint32_t region_index, uint64_t offset, const void* buffer,
                                  size_t len) {
    /* Not written through: region_copy only reads the buffer when `write` is set. */
    return region_copy(core, session, handle, region_index, offset, (void*)(uintptr_t)buffer, len,
                       true);
}
