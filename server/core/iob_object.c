/* SPDX-License-Identifier: MIT */
/*
 * What a handle's object tells and what may be set on it: zx_object_get_info (A.12),
 * properties and signals (A.10); and the operator's views (listing, statistics). The
 * locking is iob_core.c's: one mutex per public entry.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/core/iob_core_internal.h"

/* ---- Info ---- */

static void set_counts(size_t* actual, size_t* avail, size_t a, size_t b) {
    if (actual != NULL) {
        *actual = a;
    }
    if (avail != NULL) {
        *avail = b;
    }
}

/*
 * A single-record topic: a buffer too small for the record reports actual 0, avail 1 and
 * BUFFER_TOO_SMALL (A.12), the one case where out-parameters are written on an error.
 */
static zx_status_t copy_single(const void* record, size_t record_size, void* buffer,
                               size_t buffer_size, size_t* actual, size_t* avail) {
    if (buffer_size < record_size) {
        set_counts(actual, avail, 0, 1);
        return IOB__ERR_SET(ZX_ERR_BUFFER_TOO_SMALL, "need %zu bytes", record_size);
    }
    if (buffer == NULL) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "buffer is NULL");
    }
    memcpy(buffer, record, record_size);
    set_counts(actual, avail, 1, 1);
    return ZX_OK;
}

/*
 * Zircon's info topics that belong to other object types: ZX_INFO_PROCESS (3) through
 * ZX_INFO_CLOCK_MAPPED_SIZE (40), plus their versioned forms (version in bits 28..31).
 */
static bool iob__info_topic_of_other_type(uint32_t topic) {
    uint32_t base = topic & 0x0FFFFFFFu;
    return base >= 3 && base <= 40 && base != ZX_INFO_IOB && base != ZX_INFO_IOB_REGIONS;
}

/* get_info on a shared-region handle: it is no IOB, so the IOB topics are the wrong type. */
static zx_status_t shared_region_info(const iob__handle_t* h, uint32_t topic, void* buffer,
                                      size_t buffer_size, size_t* actual, size_t* avail) {
    switch (topic) {
        case ZX_INFO_HANDLE_VALID:
            return ZX_OK;
        case ZX_INFO_HANDLE_BASIC: {
            zx_info_handle_basic_t info;
            memset(&info, 0, sizeof info);
            info.koid = h->shared->koid;
            info.rights = h->rights;
            info.type = ZX_OBJ_TYPE_IOB_SHARED_REGION;
            info.related_koid = ZX_KOID_INVALID;
            return copy_single(&info, sizeof info, buffer, buffer_size, actual, avail);
        }
        default:
            return IOB__ERR_SET(ZX_ERR_WRONG_TYPE, "topic %u needs an IOB, not a shared region",
                                topic);
    }
}

/*
 * get_info on the root VMAR pseudo-handle (only the topics any object answers reach here).
 * Its record says VMAR, as Zircon's does; iob has no VMAR object, so no koid.
 */
static zx_status_t root_vmar_info(uint32_t topic, void* buffer, size_t buffer_size, size_t* actual,
                                  size_t* avail) {
    if (topic != ZX_INFO_HANDLE_BASIC) {
        return ZX_OK; /* ZX_INFO_HANDLE_VALID */
    }
    zx_info_handle_basic_t info;
    memset(&info, 0, sizeof info);
    info.koid = ZX_KOID_INVALID;
    info.rights = IOB_VMAR_ROOT_RIGHTS;
    info.type = ZX_OBJ_TYPE_VMAR;
    info.related_koid = ZX_KOID_INVALID;
    return copy_single(&info, sizeof info, buffer, buffer_size, actual, avail);
}

zx_status_t iob_core_get_info(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                              uint32_t topic, void* buffer, size_t buffer_size, size_t* actual,
                              size_t* avail) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    /*
     * Zircon dispatches on the topic first: a topic it does not know at all is NOT_SUPPORTED
     * before the handle is looked up; a topic of another object type (ZX_INFO_VMO,
     * ZX_INFO_PROCESS, ...) looks the handle up and then finds it is not of that type.
     */
    bool ours = topic == ZX_INFO_HANDLE_VALID || topic == ZX_INFO_HANDLE_BASIC ||
                topic == ZX_INFO_IOB || topic == ZX_INFO_IOB_REGIONS;
    if (!ours && !iob__info_topic_of_other_type(topic)) {
        iob__err_clear();
        return IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "topic %u unknown", topic);
    }
    /* The IOB topics look the handle up as an IOB with INSPECT (A.10), the rest as anything. */
    bool iob_topic = topic == ZX_INFO_IOB || topic == ZX_INFO_IOB_REGIONS;
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    zx_status_t status =
        iob__handle_get(core, session, handle, iob_topic ? ZX_OBJ_TYPE_IOB : ZX_OBJ_TYPE_NONE,
                        iob_topic ? ZX_RIGHT_INSPECT : 0, &h);
    if (status != ZX_OK) {
        goto done;
    }
    if (!ours) {
        status = IOB__ERR_SET(ZX_ERR_WRONG_TYPE, "topic %u is not an IOB topic", topic);
        goto done;
    }
    if (h == NULL) {
        status = root_vmar_info(topic, buffer, buffer_size, actual, avail);
        goto done;
    }
    if (h->shared != NULL) {
        status = shared_region_info(h, topic, buffer, buffer_size, actual, avail);
        goto done;
    }
    iob__endpoint_t* ep = h->ep;
    iob__iob_t* iob = ep->iob;
    switch (topic) {
        case ZX_INFO_HANDLE_VALID:
            break;
        case ZX_INFO_HANDLE_BASIC: {
            zx_info_handle_basic_t info;
            memset(&info, 0, sizeof info);
            info.koid = ep->koid;
            info.rights = h->rights;
            info.type = ZX_OBJ_TYPE_IOB;
            info.related_koid = iob->ep[1 - ep->index].koid;
            status = copy_single(&info, sizeof info, buffer, buffer_size, actual, avail);
            break;
        }
        case ZX_INFO_IOB: {
            zx_info_iob_t info;
            memset(&info, 0, sizeof info);
            info.options = 0;
            info.region_count = iob->region_count;
            status = copy_single(&info, sizeof info, buffer, buffer_size, actual, avail);
            break;
        }
        case ZX_INFO_IOB_REGIONS: {
            size_t room = buffer_size / sizeof(zx_iob_region_info_t);
            if (room > 0 && buffer == NULL) {
                status = IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "buffer is NULL");
                break;
            }
            size_t n = room < iob->region_count ? room : iob->region_count;
            zx_iob_region_info_t* out = buffer;
            for (size_t i = 0; i < n; i++) {
                zx_iob_region_info_t info;
                memset(&info, 0, sizeof info);
                memcpy(&info.region, &iob->regions[i].desc, sizeof info.region);
                info.region.access = iob__access_view(info.region.access, ep->index);
                info.koid = iob->regions[i].koid;
                memcpy(&out[i], &info, sizeof info);
            }
            set_counts(actual, avail, n, iob->region_count);
            break;
        }
        default:
            status = ZX_ERR_INTERNAL;
            break;
    }
done:
    iob__core_unlock(core);
    return status;
}

/* ---- Properties ---- */

/* ZX_PROP_NAME of the object h names, into value (at least ZX_MAX_NAME_LEN bytes). */
static zx_status_t name_get(const iob__handle_t* h, void* value, size_t value_size) {
    if (value_size < ZX_MAX_NAME_LEN) {
        return IOB__ERR_SET(ZX_ERR_BUFFER_TOO_SMALL, "name needs %zu bytes", ZX_MAX_NAME_LEN);
    }
    if (h->shared != NULL || h->ep->iob->regions[0].shared != NULL) {
        /*
         * Zircon's shared region has no name (Dispatcher's default get_name: all zeroes), and
         * an IOB reports region 0's memory object's name, which for a shared region is that
         * same unnamed object: set_name skips shared regions, so it stays empty.
         */
        memset(value, 0, ZX_MAX_NAME_LEN);
    } else {
        memcpy(value, h->ep->iob->name, ZX_MAX_NAME_LEN);
    }
    return ZX_OK;
}

static zx_status_t name_set(const iob__handle_t* h, const char* text, size_t value_size) {
    if (h->shared != NULL) {
        /* IoBufferSharedRegionDispatcher keeps Dispatcher's default set_name. */
        return IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "shared regions have no name");
    }
    /* Long names are cut to 31 bytes, not refused; the name ends at its first NUL. */
    char name[ZX_MAX_NAME_LEN];
    memset(name, 0, sizeof name);
    size_t len = value_size < ZX_MAX_NAME_LEN - 1 ? value_size : ZX_MAX_NAME_LEN - 1;
    for (size_t i = 0; i < len && text[i] != '\0'; i++) {
        name[i] = text[i];
    }
    memcpy(h->ep->iob->name, name, sizeof name);
    return ZX_OK;
}

/*
 * get_property and set_property, in Zircon's order: the value pointer, the handle, its
 * right, then the property (ZX_PROP_NAME is the only one an IOB has).
 */
static zx_status_t property_call(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                 uint32_t property, bool set, void* value, size_t value_size) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__err_clear();
    if (value == NULL) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "value is NULL");
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    zx_rights_t right = set ? ZX_RIGHT_SET_PROPERTY : ZX_RIGHT_GET_PROPERTY;
    zx_status_t status = iob__handle_get(core, session, handle, ZX_OBJ_TYPE_NONE, right, &h);
    /* The root VMAR holds no property right, so h is never NULL past the rights check. */
    if (status == ZX_OK && (h == NULL || property != ZX_PROP_NAME)) {
        status = IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "property %u", property);
    } else if (status == ZX_OK) {
        status = set ? name_set(h, value, value_size) : name_get(h, value, value_size);
    }
    iob__core_unlock(core);
    return status;
}

zx_status_t iob_core_get_property(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                  uint32_t property, void* value, size_t value_size) {
    return property_call(core, session, handle, property, false, value, value_size);
}

zx_status_t iob_core_set_property(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                  uint32_t property, const void* value, size_t value_size) {
    /* Only read: property_call passes it on as const to name_set. */
    return property_call(core, session, handle, property, true, (void*)(uintptr_t)value,
                         value_size);
}

/* ---- Signals ---- */

static zx_status_t signal_common(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                 uint32_t clear_mask, uint32_t set_mask, bool peer) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    zx_rights_t needed = peer ? ZX_RIGHT_SIGNAL_PEER : ZX_RIGHT_SIGNAL;
    zx_status_t status = iob__handle_get(core, session, handle, ZX_OBJ_TYPE_NONE, needed, &h);
    if (status != ZX_OK) {
        goto done;
    }
    if (h == NULL) {
        /* The root VMAR holds neither signal right; kept in case its rights ever change. */
        status = IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "the root VMAR takes no signals");
        goto done;
    }
    if (((clear_mask | set_mask) & ~ZX_USER_SIGNAL_ALL) != 0) {
        status = IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "only user signals may change (0x%x/0x%x)",
                              clear_mask, set_mask);
        goto done;
    }
    if (h->shared != NULL) {
        /*
         * A solo object: user_signal_peer is NOT_SUPPORTED (unreachable in practice, since
         * a shared region's handle never holds ZX_RIGHT_SIGNAL_PEER).
         */
        if (peer) {
            status = IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "a shared region has no peer");
            goto done;
        }
        iob__shared_region_t* sr = h->shared;
        zx_signals_t next = (sr->signals & ~clear_mask) | set_mask;
        if (next != sr->signals) {
            sr->signals = next;
            iob__holders_notify(core, &sr->holders, sr->koid, next, false);
        }
        goto done;
    }
    iob__endpoint_t* target = h->ep;
    if (peer) {
        target = &h->ep->iob->ep[1 - h->ep->index];
        /*
         * Zircon drops the peer link when the peer's last handle goes (tokens count as
         * handles); mappings alone keep memory, not the peer, alive. Signals set on an
         * endpoint nobody can hold could never be observed anyway.
         */
        if (target->handles == 0) {
            status = IOB__ERR_SET(ZX_ERR_PEER_CLOSED, "peer has no handles");
            goto done;
        }
    }
    iob__endpoint_set_signals(core, target, (target->signals & ~clear_mask) | set_mask);
done:
    iob__core_unlock(core);
    return status;
}

zx_status_t iob_core_object_signal(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                   uint32_t clear_mask, uint32_t set_mask) {
    return signal_common(core, session, handle, clear_mask, set_mask, false);
}

zx_status_t iob_core_object_signal_peer(iob_core_t* core, iob_session_id_t session,
                                        zx_handle_t handle, uint32_t clear_mask,
                                        uint32_t set_mask) {
    return signal_common(core, session, handle, clear_mask, set_mask, true);
}

zx_status_t iob_core_signals(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                             zx_signals_t* signals_out, zx_koid_t* endpoint_koid_out) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    zx_status_t status =
        iob__handle_get(core, session, handle, ZX_OBJ_TYPE_NONE, ZX_RIGHT_WAIT, &h);
    if (status == ZX_OK && h == NULL) {
        /* The root VMAR holds no WAIT right; kept in case its rights ever change. */
        status = IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "the root VMAR has no signals");
    } else if (status == ZX_OK) {
        zx_signals_t signals = h->shared != NULL ? h->shared->signals : h->ep->signals;
        zx_koid_t koid = h->shared != NULL ? h->shared->koid : h->ep->koid;
        if (signals_out != NULL) {
            *signals_out = signals;
        }
        if (endpoint_koid_out != NULL) {
            *endpoint_koid_out = koid;
        }
    }
    iob__core_unlock(core);
    return status;
}

/* ---- Operators ---- */

static bool held_by_uid(iob__list_t* holders, uid_t uid) {
    for (iob__list_t* n = holders->next; n != holders; n = n->next) {
        iob__handle_t* h = IOB__CONTAINER_OF(n, iob__handle_t, holder_link);
        if (h->session->cred.uid == uid) {
            return true;
        }
    }
    return false;
}

/* iob_core_list (all: every IOB) and iob_core_list_held (those uid holds). */
static zx_status_t list_iobs(iob_core_t* core, bool all, uid_t uid, iob_core_iob_summary_t* out,
                             size_t capacity, size_t* count_out) {
    if (core == NULL || (out == NULL && capacity > 0)) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    size_t n = 0;
    for (iob__list_t* node = core->iobs.next; node != &core->iobs; node = node->next) {
        iob__iob_t* iob = IOB__CONTAINER_OF(node, iob__iob_t, link);
        if (!all && !held_by_uid(&iob->ep[0].holders, uid) &&
            !held_by_uid(&iob->ep[1].holders, uid)) {
            continue;
        }
        if (n++ >= capacity) {
            continue;
        }
        iob_core_iob_summary_t* s = &out[n - 1];
        memset(s, 0, sizeof *s);
        s->koid = iob->ep[0].koid;
        s->region_count = iob->region_count;
        s->total_bytes = iob->total_bytes;
        memcpy(s->name, iob->name, sizeof s->name);
        for (uint32_t r = 0; r < iob->region_count && s->shared_koid == 0; r++) {
            if (iob->regions[r].shared != NULL) {
                s->shared_koid = iob->regions[r].shared->koid;
                s->shared_discipline = iob->regions[r].desc.discipline.type;
                s->shared_tag = iob->regions[r].desc.discipline.ring_buffer.tag;
            }
        }
        for (int i = 0; i < 2; i++) {
            s->endpoints[i].koid = iob->ep[i].koid;
            s->endpoints[i].handles = iob->ep[i].handles;
            s->endpoints[i].mappings = iob->ep[i].mappings;
            s->endpoints[i].signals = iob->ep[i].signals;
        }
    }
    if (count_out != NULL) {
        *count_out = n;
    }
    iob__core_unlock(core);
    return ZX_OK;
}

zx_status_t iob_core_list(iob_core_t* core, iob_core_iob_summary_t* out, size_t capacity,
                          size_t* count_out) {
    return list_iobs(core, true, 0, out, capacity, count_out);
}

zx_status_t iob_core_list_held(iob_core_t* core, uid_t uid, iob_core_iob_summary_t* out,
                               size_t capacity, size_t* count_out) {
    return list_iobs(core, false, uid, out, capacity, count_out);
}

uint64_t iob_core_uid_handles(iob_core_t* core, uid_t uid) {
    if (core == NULL) {
        return 0;
    }
    uint64_t n = 0;
    iob__core_lock(core);
    for (size_t i = 0; i < core->sessions.capacity; i++) {
        const iob__session_t* s = core->sessions.keys[i] != 0 ? core->sessions.values[i] : NULL;
        if (s != NULL && s->cred.uid == uid) {
            for (const iob__list_t* h = s->handles.next; h != &s->handles; h = h->next) {
                n++;
            }
        }
    }
    iob__core_unlock(core);
    return n;
}

void iob_core_get_stats(iob_core_t* core, iob_core_stats_t* out) {
    if (core == NULL || out == NULL) {
        return;
    }
    iob__core_lock(core);
    memset(out, 0, sizeof *out);
    out->iobs = core->iob_count;
    out->shared_regions = core->shared_region_count;
    out->sessions = core->sessions.count;
    out->handles = core->handle_count;
    out->mappings = core->mapping_count;
    out->tokens = core->token_count;
    out->bytes_in_use = core->bytes_in_use;
    out->max_total_bytes = core->config.max_total_bytes;
    out->token_ttl_ns = core->token_ttl_ns;
    out->max_iobs_per_session = (uint32_t)(core->session_limit.n[IOB__RES_IOBS] > UINT32_MAX
                                               ? UINT32_MAX
                                               : core->session_limit.n[IOB__RES_IOBS]);
    out->max_handles_per_session = (uint32_t)(core->session_limit.n[IOB__RES_HANDLES] > UINT32_MAX
                                                  ? UINT32_MAX
                                                  : core->session_limit.n[IOB__RES_HANDLES]);
    const iob__usage_t* limits[2] = {&core->session_limit, &core->uid_limit};
    iob_core_amounts_t* outs[2] = {&out->per_session, &out->per_uid};
    for (int i = 0; i < 2; i++) {
        outs[i]->bytes = limits[i]->n[IOB__RES_BYTES];
        outs[i]->iobs = limits[i]->n[IOB__RES_IOBS];
        outs[i]->handles = limits[i]->n[IOB__RES_HANDLES];
        outs[i]->tokens = limits[i]->n[IOB__RES_TOKENS];
        outs[i]->mappings = limits[i]->n[IOB__RES_MAPPINGS];
    }
    out->uids = core->uids.count;
    for (size_t i = 0; i < core->uids.capacity; i++) {
        const iob__uid_t* u = core->uids.values[i];
        if (core->uids.keys[i] != 0 && u->used.n[IOB__RES_BYTES] > out->uid_max_bytes) {
            out->uid_max_bytes = u->used.n[IOB__RES_BYTES];
            out->uid_max_bytes_uid = (uint32_t)u->uid;
        }
    }
    out->handle_value_bits = core->handle_bits;
    out->regions = core->region_count;
    iob__core_unlock(core);
}
