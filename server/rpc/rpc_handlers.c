/* SPDX-License-Identifier: MIT */
/*
 * One translation per method of iob.v1.Iob: validate and copy in, call the core, turn
 * the result into the reply (shaped like sys_iob_create in Zircon's syscall layer). The
 * session comes from the call's "iob-session" metadata (rpc_server.c).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zircon/status.h>
#include <zircon/syscalls/object.h>

#include "server/core/iob_request.h"
#include "server/rpc/log.h"
#include "server/rpc/rpc_internal.h"

/* Largest get_info buffer: every topic's answer fits (64 regions of 128 bytes). */
#define IOBD_MAX_INFO_BYTES ((size_t)ZX_IOB_MAX_REGIONS * sizeof(zx_iob_region_info_t))

static const char* iobd__detail(zx_status_t st) {
    return st == ZX_OK ? NULL : iob_core_error_detail();
}

/* Ends a call with the core's status: the reply on ZX_OK, the core's detail otherwise. */
static void iobd__finish_core(iobd_call_t* c, zx_status_t st, const ProtobufCMessage* reply) {
    iobd__call_finish(c, st, st == ZX_OK ? reply : NULL, iobd__detail(st));
}

static void iobd__bad_request(iobd_call_t* c, const char* what) {
    iobd__call_finish(c, ZX_ERR_INVALID_ARGS, NULL, what);
}

/*
 * A CreateIob too large to decode within the unpack budget: answered from the top-level
 * fields, in A.3's order (options, then the count), as the core would have for the decoded
 * request. Only many regions make a CreateIob that large; anything else is malformed.
 */
static void iobd__create_iob_undecodable(iobd_call_t* c, bool over) {
    size_t n_options = 0, n_regions = 0;
    uint64_t options = 0;
    if (over && iob_wire_scan_field_bb(c->payload, 1, &n_options, &options) &&
        iob_wire_scan_field_bb(c->payload, 2, &n_regions, NULL)) {
        if (options != 0) {
            iobd__call_finish(c, ZX_ERR_INVALID_ARGS, NULL, "options must be 0");
            return;
        }
        if (n_regions > ZX_IOB_MAX_REGIONS) {
            iobd__call_finish(c, ZX_ERR_OUT_OF_RANGE, NULL, "more than 64 regions");
            return;
        }
    }
    iobd__bad_request(c,
                      over ? "CreateIobRequest too large to decode" : "malformed CreateIobRequest");
}

static void iobd__create_iob(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    iobd_rpc_t* srv = c->srv;
    const Iob__V1__CreateIobRequest* req = (const Iob__V1__CreateIobRequest*)msg;
    zx_status_t st = ZX_OK;
    zx_handle_t ep0 = 0, ep1 = 0;
    zx_iob_region_t regions[ZX_IOB_MAX_REGIONS];
    const char* detail = NULL;
    /* The caller's count as it is; its array only when every descriptor came (proto). */
    uint64_t count = req->region_count != 0 ? req->region_count : req->n_regions;
    bool sent = req->n_regions == count && count <= ZX_IOB_MAX_REGIONS && count > 0;
    for (size_t i = 0; sent && i < count && st == ZX_OK; i++) {
        st = iob_wire_region_from_pb(req->regions[i], &regions[i]);
        if (st != ZX_OK) {
            detail = "a region's raw descriptor must be exactly 120 bytes";
        }
    }
    if (st == ZX_OK) {
        st = iob_core_iob_create(srv->core, sid, req->options, sent ? regions : NULL, (size_t)count,
                                 &ep0, &ep1);
        detail = iobd__detail(st);
    }
    if (st != ZX_OK) {
        iobd__call_finish(c, st, NULL, detail);
        return;
    }
    Iob__V1__CreateIobReply r = IOB__V1__CREATE_IOB_REPLY__INIT;
    r.ep0 = ep0;
    r.ep1 = ep1;
    iobd__call_finish(c, ZX_OK, &r.base, NULL);
}

static void iobd__get_info(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__GetInfoRequest* req = (const Iob__V1__GetInfoRequest*)msg;
    uint32_t topic = req->topic;
    zx_handle_t handle = req->handle;
    /*
     * The caller's buffer size decides Zircon's actual/avail and BUFFER_TOO_SMALL; beyond
     * the largest answer it changes nothing, so the server's buffer stays bounded.
     */
    size_t size =
        req->buffer_size > IOBD_MAX_INFO_BYTES ? IOBD_MAX_INFO_BYTES : (size_t)req->buffer_size;
    _Alignas(8) uint8_t buf[IOBD_MAX_INFO_BYTES];
    size_t actual = 0, avail = 0;
    zx_status_t st = iob_core_get_info(c->srv->core, sid, handle, topic, size ? buf : NULL, size,
                                       &actual, &avail);
    /* BUFFER_TOO_SMALL is the only failure that fills in actual/avail (A.12); on any other
     * the caller's variables stay as they were. */
    if (st == ZX_OK || st == ZX_ERR_BUFFER_TOO_SMALL) {
        iobd__call_add_trailer(c, IOB_WIRE_MD_ACTUAL, actual);
        iobd__call_add_trailer(c, IOB_WIRE_MD_AVAIL, avail);
    }
    if (st != ZX_OK) {
        iobd__call_finish(c, st, NULL, iobd__detail(st));
        return;
    }
    Iob__V1__GetInfoReply r = IOB__V1__GET_INFO_REPLY__INIT;
    r.actual = actual;
    r.avail = avail;
    Iob__V1__InfoIob iob = IOB__V1__INFO_IOB__INIT;
    Iob__V1__InfoHandleBasic hb = IOB__V1__INFO_HANDLE_BASIC__INIT;
    Iob__V1__RegionInfo ri[ZX_IOB_MAX_REGIONS];
    Iob__V1__Region rg[ZX_IOB_MAX_REGIONS];
    Iob__V1__RegionInfo* rip[ZX_IOB_MAX_REGIONS];
    size_t bytes = 0;
    if (topic == ZX_INFO_IOB && actual > 0) {
        zx_info_iob_t* i = (zx_info_iob_t*)(void*)buf;
        iob.options = i->options;
        iob.region_count = i->region_count;
        r.iob = &iob;
        bytes = sizeof *i;
    } else if (topic == ZX_INFO_HANDLE_BASIC && actual > 0) {
        zx_info_handle_basic_t* i = (zx_info_handle_basic_t*)(void*)buf;
        hb.koid = i->koid;
        hb.rights = i->rights;
        hb.type = i->type;
        hb.related_koid = i->related_koid;
        r.handle_basic = &hb;
        bytes = sizeof *i;
    } else if (topic == ZX_INFO_IOB_REGIONS) {
        zx_iob_region_info_t* infos = (zx_iob_region_info_t*)(void*)buf;
        for (size_t k = 0; k < actual && k < ZX_IOB_MAX_REGIONS; k++) {
            iob__v1__region_info__init(&ri[k]);
            iob__v1__region__init(&rg[k]);
            iob_wire_region_to_pb(&infos[k].region, &rg[k]);
            ri[k].region = &rg[k];
            ri[k].koid = infos[k].koid;
            rip[k] = &ri[k];
        }
        r.n_regions = actual;
        r.regions = rip;
        bytes = actual * sizeof(zx_iob_region_info_t);
    }
    r.raw.data = buf;
    r.raw.len = bytes;
    iobd__call_finish(c, ZX_OK, &r.base, NULL);
}

/*
 * Finishes a call that produced a handle (duplicate, replace, import, a new shared region).
 */
static void iobd__finish_with_handle(iobd_call_t* c, zx_status_t st, zx_handle_t h) {
    if (st != ZX_OK) {
        iobd__call_finish(c, st, NULL, iobd__detail(st));
        return;
    }
    Iob__V1__HandleReply r = IOB__V1__HANDLE_REPLY__INIT;
    r.handle = h;
    iobd__call_finish(c, ZX_OK, &r.base, NULL);
}

static void iobd__handle_rights(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg,
                                bool replace) {
    const Iob__V1__HandleRightsRequest* req = (const Iob__V1__HandleRightsRequest*)msg;
    zx_handle_t out = 0;
    zx_status_t st =
        replace ? iob_core_handle_replace(c->srv->core, sid, req->handle, req->rights, &out)
                : iob_core_handle_duplicate(c->srv->core, sid, req->handle, req->rights, &out);
    iobd__finish_with_handle(c, st, out);
}

static void iobd__close_handle(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__HandleRequest* req = (const Iob__V1__HandleRequest*)msg;
    zx_status_t st = iob_core_handle_close(c->srv->core, sid, req->handle);
    Iob__V1__StatusReply r = IOB__V1__STATUS_REPLY__INIT;
    iobd__finish_core(c, st, &r.base);
}

/*
 * zx_handle_close_many's semantics: every entry is attempted, ZX_HANDLE_INVALID (0)
 * entries are skipped, and the first failure is reported after the rest were closed.
 * Duplicates: the second close of a value finds it gone (ZX_ERR_BAD_HANDLE), as in Zircon.
 */
static void iobd__close_handles(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__HandleListRequest* req = (const Iob__V1__HandleListRequest*)msg;
    zx_status_t st = ZX_OK;
    for (size_t i = 0; i < req->n_handles; i++) {
        if (req->handles[i] == ZX_HANDLE_INVALID) {
            continue;
        }
        zx_status_t one = iob_core_handle_close(c->srv->core, sid, req->handles[i]);
        if (one != ZX_OK && st == ZX_OK) {
            st = one;
        }
    }
    Iob__V1__StatusReply r = IOB__V1__STATUS_REPLY__INIT;
    iobd__finish_core(c, st, &r.base);
}

static void iobd__set_session_events(iobd_call_t* c, iob_session_id_t sid,
                                     const ProtobufCMessage* msg) {
    const Iob__V1__SessionEventsRequest* req = (const Iob__V1__SessionEventsRequest*)msg;
    zx_status_t st = iobd__session_set_events(c->srv, sid.value, req->enabled);
    Iob__V1__StatusReply r = IOB__V1__STATUS_REPLY__INIT;
    iobd__call_finish(c, st, st == ZX_OK ? &r.base : NULL, st == ZX_OK ? NULL : "session ended");
}

static void iobd__get_name(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__GetNameRequest* req = (const Iob__V1__GetNameRequest*)msg;
    char name[ZX_MAX_NAME_LEN + 1];
    memset(name, 0, sizeof name);
    uint32_t prop = req->property != 0 ? req->property : ZX_PROP_NAME;
    size_t size = req->buffer_size == 0 || req->buffer_size > ZX_MAX_NAME_LEN
                      ? ZX_MAX_NAME_LEN
                      : (size_t)req->buffer_size;
    zx_status_t st = iob_core_get_property(c->srv->core, sid, req->handle, prop, name, size);
    Iob__V1__NameReply r = IOB__V1__NAME_REPLY__INIT;
    r.name = name;
    iobd__finish_core(c, st, &r.base);
}

static void iobd__set_name(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__SetNameRequest* req = (const Iob__V1__SetNameRequest*)msg;
    /* Zircon cuts names to 31 bytes; a longer one is not an error. */
    char name[ZX_MAX_NAME_LEN];
    memset(name, 0, sizeof name);
    size_t n = req->name.len < ZX_MAX_NAME_LEN - 1 ? req->name.len : ZX_MAX_NAME_LEN - 1;
    if (n > 0) {
        memcpy(name, req->name.data, n);
    }
    uint32_t prop = req->property != 0 ? req->property : ZX_PROP_NAME;
    zx_status_t st =
        iob_core_set_property(c->srv->core, sid, req->handle, prop, name,
                              req->name.len < ZX_MAX_NAME_LEN ? req->name.len : ZX_MAX_NAME_LEN);
    Iob__V1__StatusReply r = IOB__V1__STATUS_REPLY__INIT;
    iobd__finish_core(c, st, &r.base);
}

static void iobd__signal(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg,
                         bool peer) {
    const Iob__V1__SignalRequest* req = (const Iob__V1__SignalRequest*)msg;
    zx_status_t st = peer ? iob_core_object_signal_peer(c->srv->core, sid, req->handle,
                                                        req->clear_mask, req->set_mask)
                          : iob_core_object_signal(c->srv->core, sid, req->handle, req->clear_mask,
                                                   req->set_mask);
    Iob__V1__StatusReply r = IOB__V1__STATUS_REPLY__INIT;
    iobd__finish_core(c, st, &r.base);
}

static void iobd__get_signals(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__HandleRequest* req = (const Iob__V1__HandleRequest*)msg;
    zx_signals_t sig = 0;
    zx_koid_t koid = 0;
    zx_status_t st = iob_core_signals(c->srv->core, sid, req->handle, &sig, &koid);
    Iob__V1__SignalsReply r = IOB__V1__SIGNALS_REPLY__INIT;
    r.signals = sig;
    r.endpoint_koid = koid;
    iobd__finish_core(c, st, &r.base);
}

static void iobd__export(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__HandleRequest* req = (const Iob__V1__HandleRequest*)msg;
    char token[IOB_CORE_TOKEN_SIZE];
    memset(token, 0, sizeof token);
    zx_status_t st = iob_core_handle_export(c->srv->core, sid, req->handle, token);
    Iob__V1__ExportReply r = IOB__V1__EXPORT_REPLY__INIT;
    r.token = token;
    iobd__finish_core(c, st, &r.base);
}

static void iobd__import(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__ImportRequest* req = (const Iob__V1__ImportRequest*)msg;
    zx_handle_t h = 0;
    const char* token = req->token != NULL ? req->token : "";
    zx_status_t st =
        iob_request_import(c->srv->core, sid, token, strnlen(token, IOB_CORE_TOKEN_SIZE), &h);
    iobd__finish_with_handle(c, st, h);
}

/*
 * The IOBs the caller may see (the proto's ListIobsReply): everything for operators (the
 * first IOB_WIRE_MAX_LIST; *total counts all), else those its uid's sessions hold handles
 * to. *out (caller frees) holds *n summaries, at most IOB_WIRE_MAX_LIST.
 */
static zx_status_t iobd__visible_iobs(iobd_call_t* c, bool* server_wide,
                                      iob_core_iob_summary_t** out, size_t* n, size_t* total) {
    iobd_rpc_t* srv = c->srv;
    *out = NULL;
    *n = *total = 0;
    *server_wide = iobd__call_is_operator(srv, c);
    iobd_cred_t cred = {.valid = false};
    if (!*server_wide && !iobd__peer_cred(srv, c->peer, &cred)) {
        return ZX_OK; /* no credentials: nothing is the caller's */
    }
    iob_core_iob_summary_t* sums = calloc(IOB_WIRE_MAX_LIST, sizeof *sums);
    if (sums == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    size_t count = 0;
    zx_status_t st = *server_wide
                         ? iob_core_list(srv->core, sums, IOB_WIRE_MAX_LIST, &count)
                         : iob_core_list_held(srv->core, cred.uid, sums, IOB_WIRE_MAX_LIST, &count);
    if (st != ZX_OK) {
        free(sums);
        return st;
    }
    *total = count;
    size_t got = count;
    *n = got < IOB_WIRE_MAX_LIST ? got : IOB_WIRE_MAX_LIST;
    *out = sums;
    return ZX_OK;
}

static void iobd__list(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    (void)sid;
    (void)msg; /* ListIobsRequest has no fields yet */
    size_t total = 0, n = 0;
    bool server_wide = false;
    iob_core_iob_summary_t* sums = NULL;
    Iob__V1__IobSummary* ps = calloc(IOB_WIRE_MAX_LIST, sizeof *ps);
    Iob__V1__IobSummary** pps = calloc(IOB_WIRE_MAX_LIST, sizeof *pps);
    Iob__V1__EndpointSummary* eps = calloc(2 * IOB_WIRE_MAX_LIST, sizeof *eps);
    Iob__V1__EndpointSummary** peps = calloc(2 * IOB_WIRE_MAX_LIST, sizeof *peps);
    zx_status_t st = ZX_ERR_NO_MEMORY;
    if (ps != NULL && pps != NULL && eps != NULL && peps != NULL) {
        st = iobd__visible_iobs(c, &server_wide, &sums, &n, &total);
    }
    if (st != ZX_OK) {
        iobd__call_finish(c, st, NULL, iobd__detail(st));
    } else {
        for (size_t i = 0; i < n; i++) {
            iob__v1__iob_summary__init(&ps[i]);
            ps[i].koid = sums[i].koid;
            ps[i].region_count = sums[i].region_count;
            ps[i].total_bytes = sums[i].total_bytes;
            sums[i].name[ZX_MAX_NAME_LEN - 1] = '\0';
            ps[i].name = sums[i].name;
            ps[i].shared_region_koid = sums[i].shared_koid;
            ps[i].shared_discipline_type = sums[i].shared_discipline;
            ps[i].shared_ring_buffer_tag = sums[i].shared_tag;
            for (size_t e = 0; e < 2; e++) {
                Iob__V1__EndpointSummary* ep = &eps[2 * i + e];
                iob__v1__endpoint_summary__init(ep);
                ep->koid = sums[i].endpoints[e].koid;
                ep->handles = sums[i].endpoints[e].handles;
                ep->mappings = sums[i].endpoints[e].mappings;
                ep->signals = sums[i].endpoints[e].signals;
                peps[2 * i + e] = ep;
            }
            ps[i].n_endpoints = 2;
            ps[i].endpoints = &peps[2 * i];
            pps[i] = &ps[i];
        }
        Iob__V1__ListIobsReply r = IOB__V1__LIST_IOBS_REPLY__INIT;
        r.n_iobs = n;
        r.iobs = pps;
        r.total = total;
        r.server_wide = server_wide;
        iobd__call_finish(c, ZX_OK, &r.base, NULL);
    }
    free(sums);
    free(ps);
    free(pps);
    free(eps);
    free(peps);
}

static void iobd__server_info(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    (void)sid;
    (void)msg; /* ServerInfoRequest has no fields yet */
    iobd_rpc_t* srv = c->srv;
    iob_core_stats_t s;
    iob_core_get_stats(srv->core, &s);
    bool server_wide = iobd__call_is_operator(srv, c);
    if (!server_wide) {
        /* Another user's activity is not the caller's business: only its own figures. */
        iob_core_iob_summary_t* sums = NULL;
        size_t n = 0, total = 0;
        bool ignored;
        s.iobs = s.sessions = s.handles = s.mappings = s.tokens = s.bytes_in_use = 0;
        s.shared_regions = s.uids = s.uid_max_bytes = 0;
        s.uid_max_bytes_uid = 0;
        if (iobd__visible_iobs(c, &ignored, &sums, &n, &total) == ZX_OK) {
            s.iobs = total;
            for (size_t i = 0; i < n; i++) {
                s.bytes_in_use += sums[i].total_bytes;
            }
        }
        free(sums);
        iobd_cred_t cred;
        if (iobd__peer_cred(srv, c->peer, &cred)) {
            iobd__uid_figures(srv, cred.uid, &s.sessions, &s.handles);
        }
    }
    Iob__V1__ServerInfoReply r = IOB__V1__SERVER_INFO_REPLY__INIT;
    r.version = (char*)(uintptr_t)(srv->version ? srv->version : "");
    r.page_size = (uint32_t)iob_core_page_size(srv->core);
    iob_backing_t backing = iob_core_backing(srv->core);
    r.backing = (char*)(uintptr_t)iob_backing_name(backing);
    if (backing != IOB_BACKING_4K) {
        iob_hugepage_pool_t pool;
        if (iob_hugepage_pool_read(backing, &pool) == ZX_OK) {
            r.hugepages_total = pool.total;
            r.hugepages_free = pool.free;
        }
    }
    r.max_total_bytes = s.max_total_bytes;
    r.max_iobs_per_session = s.max_iobs_per_session;
    r.max_handles_per_session = s.max_handles_per_session;
    r.token_ttl_ns = s.token_ttl_ns;
    r.iobs = s.iobs;
    r.sessions = s.sessions;
    r.handles = s.handles;
    r.mappings = s.mappings;
    r.tokens = s.tokens;
    r.bytes_in_use = s.bytes_in_use;
    r.max_message_bytes = (uint32_t)IOB_WIRE_MAX_MESSAGE;
    r.max_chunk_bytes = (uint32_t)IOB_WIRE_MAX_CHUNK;
    r.server_wide = server_wide;
    r.max_sessions_per_uid = srv->config.max_sessions_per_uid;
    r.max_waits_per_session = srv->config.max_waits_per_session;
    r.session_max_bytes = s.per_session.bytes;
    r.session_max_iobs = s.per_session.iobs;
    r.session_max_handles = s.per_session.handles;
    r.session_max_tokens = s.per_session.tokens;
    r.session_max_mappings = s.per_session.mappings;
    r.uid_max_bytes = s.per_uid.bytes;
    r.uid_max_iobs = s.per_uid.iobs;
    r.uid_max_handles = s.per_uid.handles;
    r.uid_max_tokens = s.per_uid.tokens;
    r.uid_max_mappings = s.per_uid.mappings;
    r.shared_regions = s.shared_regions;
    r.uids = s.uids;
    r.top_uid_bytes = s.uid_max_bytes;
    r.top_uid = s.uid_max_bytes_uid;
    r.handle_value_bits = s.handle_value_bits;
    iobd__call_finish(c, ZX_OK, &r.base, NULL);
}

/* ---- ReadRegion (server streaming) ---- */

static void iobd__read_start(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__ReadRegionRequest* req = (const Iob__V1__ReadRegionRequest*)msg;
    iobd_read_state_t* r = &c->u.read;
    r->handle = req->handle;
    r->region_index = req->region_index;
    r->offset = req->offset;
    r->remaining = req->length;
    if (r->offset + r->remaining < r->offset) {
        iobd__call_finish(c, ZX_ERR_OUT_OF_RANGE, NULL, "offset + length overflows");
        return;
    }
    /*
     * Check rights and the whole range before the first byte goes out, so a bad request
     * fails with nothing streamed: a 1-byte read at the end (or at offset for length 0).
     */
    uint8_t probe;
    uint64_t at = r->remaining > 0 ? r->offset + r->remaining - 1 : r->offset;
    zx_status_t st = iob_core_region_read(c->srv->core, sid, r->handle, r->region_index, at, &probe,
                                          r->remaining > 0 ? 1 : 0);
    if (st != ZX_OK) {
        iobd__call_finish(c, st, NULL, iobd__detail(st));
        return;
    }
    if (!iobd__call_start_close_chain(c)) {
        return;
    }
    iobd__read_continue(c);
}

void iobd__read_continue(iobd_call_t* c) {
    iobd_read_state_t* r = &c->u.read;
    if (r->remaining == 0) {
        iobd__call_finish(c, ZX_OK, NULL, NULL);
        return;
    }
    size_t n = r->remaining < IOB_WIRE_MAX_CHUNK ? (size_t)r->remaining : IOB_WIRE_MAX_CHUNK;
    uint8_t* buf = malloc(n);
    if (buf == NULL) {
        iobd__call_finish(c, ZX_ERR_NO_MEMORY, NULL, NULL);
        return;
    }
    zx_status_t st = iob_core_region_read(c->srv->core, (iob_session_id_t){c->session_id},
                                          r->handle, r->region_index, r->offset, buf, n);
    if (st != ZX_OK) {
        free(buf);
        iobd__call_finish(c, st, NULL, iobd__detail(st));
        return;
    }
    Iob__V1__ReadRegionReply m = IOB__V1__READ_REGION_REPLY__INIT;
    m.offset = r->offset;
    m.data.data = buf;
    m.data.len = n;
    r->offset += n;
    r->remaining -= n;
    iobd__call_send(c, &m.base);
    free(buf);
}

/* ---- WriteRegion (client streaming) ---- */

void iobd__write_continue(iobd_call_t* c, grpc_byte_buffer* msg) {
    iobd_write_state_t* w = &c->u.write;
    Iob__V1__WriteRegionReply reply = IOB__V1__WRITE_REGION_REPLY__INIT;
    if (msg == NULL) {
        /* The client half-closed: everything arrived. */
        if (!w->started) {
            iobd__call_finish(c, ZX_ERR_INVALID_ARGS, NULL, "WriteRegion without a message");
            return;
        }
        reply.written = w->written;
        iobd__call_finish(c, ZX_OK, &reply.base, NULL);
        return;
    }
    Iob__V1__WriteRegionRequest* req = (Iob__V1__WriteRegionRequest*)iob_wire_unpack(
        &iob__v1__write_region_request__descriptor, msg);
    grpc_byte_buffer_destroy(msg);
    if (req == NULL) {
        iobd__bad_request(c, "malformed WriteRegionRequest");
        return;
    }
    if (!w->started) {
        w->started = true;
        w->handle = req->handle;
        w->region_index = req->region_index;
        w->offset = req->offset;
    }
    zx_status_t st = ZX_OK;
    const char* detail = NULL;
    uint64_t at = w->offset + w->written;
    if (req->data.len > IOB_WIRE_MAX_CHUNK) {
        st = ZX_ERR_INVALID_ARGS;
        detail = "chunk larger than 1 MiB";
    } else if (at < w->offset || at + req->data.len < at) {
        st = ZX_ERR_OUT_OF_RANGE;
        detail = "offset overflows";
    } else {
        st = iob_core_region_write(c->srv->core, (iob_session_id_t){c->session_id}, w->handle,
                                   w->region_index, at, req->data.data, req->data.len);
        detail = iobd__detail(st);
        if (st == ZX_OK) {
            w->written += req->data.len;
        }
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
    if (st != ZX_OK) {
        reply.status = st;
        reply.written = w->written;
        iobd__call_add_trailer(c, "iob-written", w->written);
        iobd__call_finish(c, st, NULL, detail);
        return;
    }
    iobd__call_recv(c);
}

/* ---- Shared regions and mediated disciplines ---- */

static void iobd__create_shared_region(iobd_call_t* c, iob_session_id_t sid,
                                       const ProtobufCMessage* msg) {
    const Iob__V1__CreateSharedRegionRequest* req = (const Iob__V1__CreateSharedRegionRequest*)msg;
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t st = iob_core_shared_region_create(c->srv->core, sid, req->options, req->size, &h);
    /* Indexed like an endpoint so that Wait and session events (strobes) find it. */
    iobd__finish_with_handle(c, st, h);
}

/*
 * The request describes what the caller's process could read (iob.proto); the shared
 * translation (iob_request.h) rebuilds the core's NULL conventions from it.
 */
static void iobd__iob_writev(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__IobWritevRequest* req = (const Iob__V1__IobWritevRequest*)msg;
    iob_request_vec_t vecs[IOB_REQUEST_MAX_VECTORS];
    size_t n = req->n_capacities;
    zx_status_t st = ZX_ERR_INVALID_ARGS;
    const char* bad = "IobWritevRequest: capacities and readable must have num_vectors entries";
    if (n == req->n_readable && n <= IOB_REQUEST_MAX_VECTORS) {
        for (size_t i = 0; i < n; i++) {
            vecs[i] = (iob_request_vec_t){req->capacities[i], req->readable[i] != 0};
        }
        iob_writev_request_t w = {
            .handle = req->handle,
            .options = req->options,
            .region_index = req->region_index,
            .num_vectors = req->num_vectors,
            .vectors_unreadable = req->vectors_unreadable,
            .vecs = vecs,
            .vec_count = n,
            .data = req->data.data,
            .data_len = req->data.len,
        };
        bad = iob_request_writev(c->srv->core, sid, &w, &st);
    }
    Iob__V1__StatusReply r = IOB__V1__STATUS_REPLY__INIT;
    iobd__call_finish(c, st, st == ZX_OK ? &r.base : NULL, bad != NULL ? bad : iobd__detail(st));
}

static void iobd__allocate_id(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    const Iob__V1__AllocateIdRequest* req = (const Iob__V1__AllocateIdRequest*)msg;
    zx_status_t st = ZX_ERR_INVALID_ARGS;
    const char* bad = NULL;
    uint32_t id = 0;
    if (req->check_only) {
        /* A blob too large for gRPC: every status before the copy, without the bytes. */
        if (!req->blob_unreadable && req->blob.len == 0) {
            st = iob_core_iob_allocate_id_check(c->srv->core, sid, req->handle, req->options,
                                                req->region_index, req->blob_size, req->id_null);
        } else {
            bad = "AllocateIdRequest: check_only carries no blob and a readable one";
        }
    } else {
        iob_allocate_id_request_t a = {
            .handle = req->handle,
            .options = req->options,
            .region_index = req->region_index,
            .blob_size = req->blob_size,
            .blob_unreadable = req->blob_unreadable,
            .id_null = req->id_null,
            .blob = req->blob.data,
            .blob_len = req->blob.len,
        };
        bad = iob_request_allocate_id(c->srv->core, sid, &a, &id, &st);
    }
    Iob__V1__AllocateIdReply r = IOB__V1__ALLOCATE_ID_REPLY__INIT;
    r.id = id;
    iobd__call_finish(c, st, st == ZX_OK ? &r.base : NULL, bad != NULL ? bad : iobd__detail(st));
}

/* ---- Dispatch ---- */

static void iobd__duplicate_handle(iobd_call_t* c, iob_session_id_t sid,
                                   const ProtobufCMessage* msg) {
    iobd__handle_rights(c, sid, msg, false);
}

static void iobd__replace_handle(iobd_call_t* c, iob_session_id_t sid,
                                 const ProtobufCMessage* msg) {
    iobd__handle_rights(c, sid, msg, true);
}

static void iobd__signal_self(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    iobd__signal(c, sid, msg, false);
}

static void iobd__signal_peer(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    iobd__signal(c, sid, msg, true);
}

/* WriteRegion's messages arrive one by one (GRPC_SRM_PAYLOAD_NONE): iobd__write_continue. */
static void iobd__write_start(iobd_call_t* c, iob_session_id_t sid, const ProtobufCMessage* msg) {
    (void)sid;
    (void)msg;
    iobd__call_recv(c);
}

/* ---- The method table ---- */

typedef void (*iobd_handler_fn)(iobd_call_t* c, iob_session_id_t sid,
                                const ProtobufCMessage* request);

#define IOBD_M_NO_SESSION 1u /* management calls: callable without a session */
#define IOBD_M_SLOW 2u       /* its cost is the client's choice: runs on a slow thread */
#define IOBD_M_NO_REQUEST 4u /* client streaming: no request to decode up front */

typedef struct iobd_method {
    /* NULL: OpenSession and Wait, which rpc_server.c serves itself. */
    iobd_handler_fn handle;
    /* A request that does not decode (over: beyond the unpack budget); NULL: INVALID_ARGS. */
    void (*undecodable)(iobd_call_t* c, bool over);
    unsigned flags;
} iobd_method_t;

/*
 * One row per method of proto/wire.h's table, whose request type the dispatcher decodes
 * before the handler runs and frees after. A new method: a core function, a row here and
 * there, and a handler that translates the decoded request into the core call.
 */
static const iobd_method_t iobd__methods[IOB_WIRE_M_COUNT] = {
    [IOB_WIRE_M_CREATE_IOB] = {iobd__create_iob, iobd__create_iob_undecodable, IOBD_M_SLOW},
    [IOB_WIRE_M_GET_INFO] = {iobd__get_info, NULL, 0},
    [IOB_WIRE_M_DUPLICATE_HANDLE] = {iobd__duplicate_handle, NULL, 0},
    [IOB_WIRE_M_REPLACE_HANDLE] = {iobd__replace_handle, NULL, 0},
    [IOB_WIRE_M_CLOSE_HANDLE] = {iobd__close_handle, NULL, IOBD_M_SLOW},
    [IOB_WIRE_M_GET_NAME] = {iobd__get_name, NULL, 0},
    [IOB_WIRE_M_SET_NAME] = {iobd__set_name, NULL, 0},
    [IOB_WIRE_M_SIGNAL] = {iobd__signal_self, NULL, 0},
    [IOB_WIRE_M_SIGNAL_PEER] = {iobd__signal_peer, NULL, 0},
    [IOB_WIRE_M_GET_SIGNALS] = {iobd__get_signals, NULL, 0},
    [IOB_WIRE_M_EXPORT_HANDLE] = {iobd__export, NULL, 0},
    [IOB_WIRE_M_IMPORT_HANDLE] = {iobd__import, NULL, 0},
    [IOB_WIRE_M_READ_REGION] = {iobd__read_start, NULL, 0},
    [IOB_WIRE_M_WRITE_REGION] = {iobd__write_start, NULL, IOBD_M_NO_REQUEST},
    [IOB_WIRE_M_LIST_IOBS] = {iobd__list, NULL, IOBD_M_NO_SESSION},
    [IOB_WIRE_M_SERVER_INFO] = {iobd__server_info, NULL, IOBD_M_NO_SESSION},
    [IOB_WIRE_M_CLOSE_HANDLES] = {iobd__close_handles, NULL, IOBD_M_SLOW},
    [IOB_WIRE_M_SET_SESSION_EVENTS] = {iobd__set_session_events, NULL, 0},
    [IOB_WIRE_M_CREATE_SHARED_REGION] = {iobd__create_shared_region, NULL, IOBD_M_SLOW},
    [IOB_WIRE_M_IOB_WRITEV] = {iobd__iob_writev, NULL, 0},
    [IOB_WIRE_M_ALLOCATE_ID] = {iobd__allocate_id, NULL, 0},
};

bool iobd__method_is_slow(unsigned method) {
    return method < IOB_WIRE_M_COUNT && (iobd__methods[method].flags & IOBD_M_SLOW) != 0;
}

void iobd__dispatch_new(iobd_call_t* c) {
    const iobd_method_t* m = c->method < IOB_WIRE_M_COUNT ? &iobd__methods[c->method] : NULL;
    if (m == NULL || m->handle == NULL) {
        iobd__call_finish_code(c, ZX_ERR_NOT_SUPPORTED, GRPC_STATUS_UNIMPLEMENTED, NULL, NULL);
        return;
    }
    iob_session_id_t sid = {0};
    if (!(m->flags & IOBD_M_NO_SESSION)) {
        zx_status_t st = iobd__call_session(c, &sid.value);
        if (st != ZX_OK) {
            iobd__call_finish(c, st, NULL,
                              st == ZX_ERR_INVALID_ARGS
                                  ? "missing or malformed iob-session metadata"
                                  : "the iob-session does not name a session of this connection");
            return;
        }
    }
    if (m->flags & IOBD_M_NO_REQUEST) {
        m->handle(c, sid, NULL);
        return;
    }
    const ProtobufCMessageDescriptor* type = iob_wire_method_request((iob_wire_method_t)c->method);
    bool over = false;
    ProtobufCMessage* request = iob_wire_unpack_ex(type, c->payload, &over);
    if (request == NULL) {
        if (m->undecodable != NULL) {
            m->undecodable(c, over);
        } else {
            char what[96];
            snprintf(what, sizeof what, "malformed %s", type->short_name);
            iobd__bad_request(c, what);
        }
        return;
    }
    m->handle(c, sid, request);
    protobuf_c_message_free_unpacked(request, NULL);
}
