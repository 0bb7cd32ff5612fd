/* SPDX-License-Identifier: MIT */
/* iobctl's views of what iobd holds: server-info, list and info. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <zircon/status.h>
#include <zircon/syscalls/iob.h>
#include <zircon/syscalls/object.h>

#include "client/iobctl/iobctl.h"
#include "client/status_text.h"
#include "proto/wire.h"

/* A budget for JSON: null when there is none. */
static json_t* iobctl__limit_json(uint64_t v) {
    return v == UINT64_MAX ? json_null() : json_integer((json_int_t)v);
}

int cmd_server_info(iob_conn_t* c, const iobctl_args_t* args) {
    (void)args;
    iob_conn_server_info_t si;
    zx_status_t st = iob_conn_server_info(c, &si);
    if (st != ZX_OK) {
        return iobctl__fail("server-info", st, NULL);
    }
    if (iobctl__json) {
        json_t* j = json_pack(
            "{s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
            "version", si.version, "page_size", (json_int_t)si.page_size, "backing", si.backing,
            "hugepages_total", (json_int_t)si.hugepages_total, "hugepages_free",
            (json_int_t)si.hugepages_free, "max_total_bytes", (json_int_t)si.max_total_bytes,
            "max_iobs_per_session", (json_int_t)si.max_iobs_per_session, "max_handles_per_session",
            (json_int_t)si.max_handles_per_session, "token_ttl_ns", (json_int_t)si.token_ttl_ns,
            "iobs", (json_int_t)si.iobs, "sessions", (json_int_t)si.sessions, "handles",
            (json_int_t)si.handles, "mappings", (json_int_t)si.mappings, "tokens",
            (json_int_t)si.tokens, "bytes_in_use", (json_int_t)si.bytes_in_use, "shared_regions",
            (json_int_t)si.shared_regions, "uids", (json_int_t)si.uids, "top_uid",
            (json_int_t)si.top_uid, "top_uid_bytes", (json_int_t)si.top_uid_bytes);
        if (j != NULL) {
            json_object_set_new(j, "max_total_bytes", iobctl__limit_json(si.max_total_bytes));
            json_object_set_new(j, "handle_value_bits",
                                json_integer((json_int_t)si.handle_value_bits));
            const char* names[5] = {"bytes", "iobs", "handles", "tokens", "mappings"};
            uint64_t per_session[5] = {si.session_max_bytes, si.session_max_iobs,
                                       si.session_max_handles, si.session_max_tokens,
                                       si.session_max_mappings};
            uint64_t per_uid[5] = {si.uid_max_bytes, si.uid_max_iobs, si.uid_max_handles,
                                   si.uid_max_tokens, si.uid_max_mappings};
            json_t* js = json_object();
            json_t* ju = json_object();
            for (int i = 0; i < 5; i++) {
                json_object_set_new(js, names[i], iobctl__limit_json(per_session[i]));
                json_object_set_new(ju, names[i], iobctl__limit_json(per_uid[i]));
            }
            json_object_set_new(j, "per_session", js);
            json_object_set_new(j, "per_uid", ju);
        }
        iobctl__print_json(j);
        return 0;
    }
    char a[24], b[24], d[24], e[24], f[24];
    printf("server       %s (iobd %s)\n", iob_conn_target(c), si.version);
    printf("page size    %" PRIu32 " (%s)\n", si.page_size, si.backing);
    if (si.hugepages_total > 0) {
        printf("hugepages    %" PRIu64 " total, %" PRIu64 " free\n", si.hugepages_total,
               si.hugepages_free);
    }
    printf("budget       %s bytes server-wide, token ttl %" PRIu64 " s, handle values 2^%" PRIu32
           "\n",
           iob_wire_limit_text(si.max_total_bytes, a, sizeof a),
           (uint64_t)(si.token_ttl_ns / 1000000000u), si.handle_value_bits);
    printf("per session  %s bytes, %s iobs, %s handles, %s tokens, %s mappings\n",
           iob_wire_limit_text(si.session_max_bytes, a, sizeof a),
           iob_wire_limit_text(si.session_max_iobs, b, sizeof b),
           iob_wire_limit_text(si.session_max_handles, d, sizeof d),
           iob_wire_limit_text(si.session_max_tokens, e, sizeof e),
           iob_wire_limit_text(si.session_max_mappings, f, sizeof f));
    printf(
        "per uid      %s bytes, %s iobs, %s handles, %s tokens, %s mappings"
        " (not for root and iobd's uid)\n",
        iob_wire_limit_text(si.uid_max_bytes, a, sizeof a),
        iob_wire_limit_text(si.uid_max_iobs, b, sizeof b),
        iob_wire_limit_text(si.uid_max_handles, d, sizeof d),
        iob_wire_limit_text(si.uid_max_tokens, e, sizeof e),
        iob_wire_limit_text(si.uid_max_mappings, f, sizeof f));
    printf("per client   sessions/uid %" PRIu32 ", waits/session %" PRIu32 " (0 = unlimited)\n",
           si.max_sessions_per_uid, si.max_waits_per_session);
    if (!si.server_wide) {
        /* Not an operator: iobd tells only what is the caller's own. */
        printf("yours        %" PRIu64 " iobs, %" PRIu64 " sessions, %" PRIu64 " handles, %" PRIu64
               " bytes (server-wide figures: operators only)\n",
               si.iobs, si.sessions, si.handles, si.bytes_in_use);
        return 0;
    }
    printf("in use       %" PRIu64 " bytes, %" PRIu64 " iobs, %" PRIu64 " shared regions, %" PRIu64
           " handles, %" PRIu64 " tokens, %" PRIu64 " mappings\n",
           si.bytes_in_use, si.iobs, si.shared_regions, si.handles, si.tokens, si.mappings);
    printf("clients      %" PRIu64 " sessions, %" PRIu64 " uids; most bytes: uid %" PRIu32
           " with %" PRIu64 "\n",
           si.sessions, si.uids, si.top_uid, si.top_uid_bytes);
    return 0;
}

/* The discipline a shared region is used with, as `create --region discipline=` names it. */
static const char* iobctl__discipline_name(uint64_t type) {
    switch (type) {
    case ZX_IOB_DISCIPLINE_TYPE_NONE:
        return "none";
    case ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER:
        return "ring";
    case ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR:
        return "id";
    default:
        return "?";
    }
}

/*
 * After the table: each shared region with the IOBs built on it and their tags (for a
 * mediated log, its writers; a writer whose process went shows its ep0 peer-closed).
 */
static void iobctl__print_shared(const iob_conn_iob_summary_t* s, size_t n) {
    bool header = false;
    for (size_t i = 0; i < n; i++) {
        zx_koid_t k = s[i].shared_koid;
        bool first = k != 0;
        for (size_t j = 0; j < i && first; j++) {
            first = s[j].shared_koid != k;
        }
        if (!first) {
            continue;
        }
        if (!header) {
            printf("\nshared regions (IOBs on each, with their discipline and tag):\n");
            header = true;
        }
        printf("shared region koid %" PRIu64 "\n", k);
        for (size_t j = i; j < n; j++) {
            if (s[j].shared_koid == k) {
                printf("  iob %-8" PRIu64 " %-20s %-5s tag %-10" PRIu64 "%s\n", s[j].koid,
                       s[j].name[0] ? s[j].name : "-",
                       iobctl__discipline_name(s[j].shared_discipline), s[j].shared_tag,
                       (s[j].endpoints[0].signals & ZX_IOB_PEER_CLOSED) != 0 ? " (ep1 closed)"
                                                                              : "");
            }
        }
    }
}

int cmd_list(iob_conn_t* c, const iobctl_args_t* a) {
    (void)a;
    static iob_conn_iob_summary_t s[4096];
    size_t n = 0;
    zx_status_t st = iob_conn_list(c, s, 4096, &n);
    if (st != ZX_OK) {
        return iobctl__fail("list", st, NULL);
    }
    if (n > 4096) {
        n = 4096;
    }
    iob_conn_server_info_t si;
    if (!iobctl__json && iob_conn_server_info(c, &si) == ZX_OK && !si.server_wide) {
        fprintf(stderr, "iobctl: not an operator: only the IOBs your uid holds handles to\n");
    }
    if (iobctl__json) {
        json_t* arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t* eps = json_array();
            for (int e = 0; e < 2; e++) {
                json_array_append_new(
                    eps, json_pack("{s:I,s:I,s:I,s:I}", "koid", (json_int_t)s[i].endpoints[e].koid,
                                   "handles", (json_int_t)s[i].endpoints[e].handles, "mappings",
                                   (json_int_t)s[i].endpoints[e].mappings, "signals",
                                   (json_int_t)s[i].endpoints[e].signals));
            }
            json_t* o = json_pack("{s:I,s:s,s:I,s:I,s:o}", "koid", (json_int_t)s[i].koid, "name",
                                  s[i].name, "regions", (json_int_t)s[i].region_count, "bytes",
                                  (json_int_t)s[i].total_bytes, "endpoints", eps);
            if (s[i].shared_koid != 0) {
                json_object_set_new(
                    o, "shared_region",
                    json_pack("{s:I,s:s,s:I}", "koid", (json_int_t)s[i].shared_koid,
                              "discipline", iobctl__discipline_name(s[i].shared_discipline),
                              "tag", (json_int_t)s[i].shared_tag));
            }
            json_array_append_new(arr, o);
        }
        iobctl__print_json(arr);
        return 0;
    }
    printf("%-8s %-20s %7s %12s  %-26s %-26s\n", "KOID", "NAME", "REGIONS", "BYTES",
           "EP0 (handles/maps/signals)", "EP1 (handles/maps/signals)");
    for (size_t i = 0; i < n; i++) {
        printf("%-8" PRIu64 " %-20s %7" PRIu32 " %12" PRIu64 "  %3" PRIu32 "/%-3" PRIu32
               "/0x%08" PRIx32 "         %3" PRIu32 "/%-3" PRIu32 "/0x%08" PRIx32 "\n",
               s[i].koid, s[i].name[0] ? s[i].name : "-", s[i].region_count, s[i].total_bytes,
               s[i].endpoints[0].handles, s[i].endpoints[0].mappings, s[i].endpoints[0].signals,
               s[i].endpoints[1].handles, s[i].endpoints[1].mappings, s[i].endpoints[1].signals);
    }
    iobctl__print_shared(s, n);
    return 0;
}


/* One IOB's summary, as in `list`. */
static void iobctl__print_summary(const iob_conn_iob_summary_t* s) {
    if (iobctl__json) {
        json_t* eps = json_array();
        for (int e = 0; e < 2; e++) {
            json_array_append_new(
                eps, json_pack("{s:I,s:I,s:I,s:I,s:b}", "koid", (json_int_t)s->endpoints[e].koid,
                               "handles", (json_int_t)s->endpoints[e].handles, "mappings",
                               (json_int_t)s->endpoints[e].mappings, "signals",
                               (json_int_t)s->endpoints[e].signals, "peer_closed",
                               (s->endpoints[e].signals & ZX_IOB_PEER_CLOSED) != 0));
        }
        json_t* o = json_pack("{s:I,s:s,s:I,s:I,s:o}", "koid", (json_int_t)s->koid, "name",
                              s->name, "regions", (json_int_t)s->region_count, "bytes",
                              (json_int_t)s->total_bytes, "endpoints", eps);
        if (s->shared_koid != 0) {
            json_object_set_new(o, "shared_region",
                                json_pack("{s:I,s:s,s:I}", "koid", (json_int_t)s->shared_koid,
                                          "discipline",
                                          iobctl__discipline_name(s->shared_discipline), "tag",
                                          (json_int_t)s->shared_tag));
        }
        iobctl__print_json(o);
        return;
    }
    printf("iob koid %" PRIu64 ", name \"%s\", %" PRIu32 " region(s), %" PRIu64 " bytes\n", s->koid,
           s->name, s->region_count, s->total_bytes);
    if (s->shared_koid != 0) {
        printf("on shared region koid %" PRIu64 ", discipline %s, tag %" PRIu64 "\n",
               s->shared_koid, iobctl__discipline_name(s->shared_discipline), s->shared_tag);
    }
    for (int e = 0; e < 2; e++) {
        const iob_conn_endpoint_summary_t* ep = &s->endpoints[e];
        printf("ep%d koid %" PRIu64 ": %" PRIu32 " handle(s), %" PRIu32 " mapping(s), signals 0x%08" PRIx32
               "%s\n",
               e, ep->koid, ep->handles, ep->mappings, ep->signals,
               (ep->signals & ZX_IOB_PEER_CLOSED) != 0 ? " (peer closed)" : "");
    }
}

/*
 * info --koid: the server's listing (ListIobs) filtered to one IOB. It needs no handle,
 * because ListIobs needs none: an operator sees what the server holds, but acting on an
 * IOB still takes a handle that its holder gives out (a token).
 */
static int cmd_info_koid(iob_conn_t* c, uint64_t koid) {
    static iob_conn_iob_summary_t s[4096];
    size_t n = 0;
    zx_status_t st = iob_conn_list(c, s, 4096, &n);
    if (st != ZX_OK) {
        return iobctl__fail("info", st, "listing the IOBs");
    }
    size_t have = n < 4096 ? n : 4096;
    for (size_t i = 0; i < have; i++) {
        if (s[i].koid == koid || s[i].endpoints[0].koid == koid || s[i].endpoints[1].koid == koid) {
            iobctl__print_summary(&s[i]);
            return 0;
        }
    }
    char what[96];
    snprintf(what, sizeof what, "no IOB with koid %" PRIu64 "%s", koid,
             have < n ? " in the first 4096 listed" : "");
    return iobctl__fail("info", ZX_ERR_NOT_FOUND, what);
}

int cmd_info(iob_conn_t* c, const iobctl_args_t* a) {
    if (a->koid != 0) {
        return cmd_info_koid(c, a->koid);
    }
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st != ZX_OK) {
        return iobctl__fail("info", st, a->token ? "importing the token" : "--token or --handle");
    }
    zx_info_handle_basic_t hb;
    zx_iob_region_info_t ri[ZX_IOB_MAX_REGIONS];
    size_t n = 0, avail = 0;
    char name[ZX_MAX_NAME_LEN] = "";
    if ((st = iob_conn_get_info(c, h, ZX_INFO_HANDLE_BASIC, &hb, sizeof hb, NULL, NULL)) != ZX_OK ||
        (st = iob_conn_get_info(c, h, ZX_INFO_IOB_REGIONS, ri, sizeof ri, &n, &avail)) != ZX_OK) {
        return iobctl__fail("info", st, NULL);
    }
    iob_conn_get_property(c, h, ZX_PROP_NAME, name, sizeof name);
    zx_signals_t sig = 0;
    iob_conn_signals(c, h, &sig);
    if (iobctl__json) {
        json_t* regs = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(regs, json_pack("{s:I,s:I,s:I,s:I}", "size",
                                                  (json_int_t)ri[i].region.size, "access",
                                                  (json_int_t)ri[i].region.access, "type",
                                                  (json_int_t)ri[i].region.type, "koid",
                                                  (json_int_t)ri[i].koid));
        }
        iobctl__print_json(json_pack("{s:I,s:I,s:I,s:s,s:I,s:o}", "koid", (json_int_t)hb.koid,
                                     "peer_koid", (json_int_t)hb.related_koid, "rights",
                                     (json_int_t)hb.rights, "name", name, "signals",
                                     (json_int_t)sig, "regions", regs));
        return 0;
    }
    printf("endpoint koid %" PRIu64 " (peer %" PRIu64 "), rights 0x%x, name \"%s\", signals 0x%08x\n",
           hb.koid, hb.related_koid, hb.rights, name, sig);
    printf("%-6s %-14s %-8s %s\n", "REGION", "SIZE", "ACCESS", "KOID");
    for (size_t i = 0; i < n; i++) {
        printf("%-6zu %-14" PRIu64 " 0x%02x     %" PRIu64 "\n", i, ri[i].region.size,
               ri[i].region.access, ri[i].koid);
    }
    return 0;
}
