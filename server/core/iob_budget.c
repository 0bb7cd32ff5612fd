/* SPDX-License-Identifier: MIT */
/*
 * Budgets: what each session and each uid may make the server hold, and the server-wide
 * byte budget, with defaults derived from the machine so that a server started with no
 * flags is bounded too. Every charge goes through iob__budget_charge, before the thing it
 * pays for is allocated, and comes back through iob__budget_release when that thing goes.
 *
 * A uid's charges outlive its sessions: an IOB a session made and handed to another session
 * still counts against the uid that made it until it is freed, so a client cannot escape
 * its uid's budget by opening a new session. A session's own charges end with it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/core/iob_core_internal.h"

/* ---- Defaults from the machine ---- */

zx_status_t iob_core_machine_read(iob_backing_t backing, const char* meminfo_path,
                                  iob_core_machine_t* out) {
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    memset(out, 0, sizeof *out);
    FILE* f = fopen(meminfo_path != NULL ? meminfo_path : "/proc/meminfo", "re");
    if (f == NULL) {
        return ZX_ERR_NOT_FOUND;
    }
    char line[256];
    bool found = false;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long kib = 0;
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
            out->mem_available = kib > UINT64_MAX / 1024 ? UINT64_MAX : (uint64_t)kib * 1024;
            found = true;
        }
    }
    fclose(f);
    if (backing != IOB_BACKING_4K) {
        iob_hugepage_pool_t pool = {0, 0};
        if (iob_hugepage_pool_read(backing, &pool) == ZX_OK) {
            out->hugepages_free = pool.free;
        }
    }
    return found ? ZX_OK : ZX_ERR_NOT_FOUND;
}

uint64_t iob_core_default_total_bytes(iob_backing_t backing, const iob_core_machine_t* machine,
                                      uint64_t min_free_pages) {
    uint64_t page = iob_backing_page_size(backing);
    uint64_t bytes;
    if (backing == IOB_BACKING_4K) {
        /* Half: the rest is for the clients that map the regions, and everyone else. */
        bytes = machine->mem_available / 2 / page * page;
    } else {
        uint64_t pages =
            machine->hugepages_free > min_free_pages ? machine->hugepages_free - min_free_pages : 0;
        bytes = pages > UINT64_MAX / page ? UINT64_MAX / page * page : pages * page;
    }
    return bytes < page ? page : bytes;
}

/* ---- Effective limits ---- */

static uint64_t limit_u32(uint32_t configured, uint64_t fallback) {
    if (configured == UINT32_MAX) {
        return UINT64_MAX;
    }
    return configured != 0 ? configured : fallback;
}

static uint64_t limit_u64(uint64_t configured, uint64_t fallback) {
    return configured != 0 ? configured : fallback;
}

void iob__budget_init(iob_core_t* core) {
    const iob_core_config_t* c = &core->config;
    if (c->max_total_bytes == 0) {
        iob_core_machine_t machine;
        const iob_core_machine_t* m = c->machine;
        if (m == NULL) {
            /*
             * No MemAvailable (no /proc): the budget falls back to one page, which is
             * bounded and makes the problem obvious at the first create.
             */
            iob_core_machine_read(c->backing, NULL, &machine);
            m = &machine;
        }
        core->config.max_total_bytes =
            iob_core_default_total_bytes(c->backing, m, c->hugepages_min_free);
    }
    uint64_t total = core->config.max_total_bytes;
    uint64_t *s = core->session_limit.n, *u = core->uid_limit.n;
    /*
     * Bytes are bounded server-wide already; by default one uid may use all of it (an
     * operator who hosts several tenants sets --max-bytes-per-uid).
     */
    u[IOB__RES_BYTES] = limit_u64(c->max_bytes_per_uid, total);
    u[IOB__RES_IOBS] = limit_u32(c->max_iobs_per_uid, IOB_CORE_DEFAULT_IOBS_PER_UID);
    u[IOB__RES_HANDLES] = limit_u32(c->max_handles_per_uid, IOB_CORE_DEFAULT_HANDLES_PER_UID);
    u[IOB__RES_TOKENS] = limit_u32(c->max_tokens_per_uid, IOB_CORE_DEFAULT_TOKENS_PER_UID);
    u[IOB__RES_MAPPINGS] = limit_u32(c->max_mappings_per_uid, IOB_CORE_DEFAULT_MAPPINGS_PER_UID);
    s[IOB__RES_BYTES] = limit_u64(c->max_bytes_per_session, u[IOB__RES_BYTES]);
    s[IOB__RES_IOBS] = limit_u32(c->max_iobs_per_session, IOB_CORE_DEFAULT_IOBS_PER_SESSION);
    s[IOB__RES_HANDLES] =
        limit_u32(c->max_handles_per_session, IOB_CORE_DEFAULT_HANDLES_PER_SESSION);
    s[IOB__RES_TOKENS] = limit_u32(c->max_tokens_per_session, IOB_CORE_DEFAULT_TOKENS_PER_SESSION);
    s[IOB__RES_MAPPINGS] =
        limit_u32(c->max_mappings_per_session, IOB_CORE_DEFAULT_MAPPINGS_PER_SESSION);
}

/* ---- uid records ---- */

zx_status_t iob__uid_get(iob_core_t* core, uid_t uid, iob__uid_t** out) {
    uint64_t key = (uint64_t)uid + 1;
    iob__uid_t* u = iob__idmap_get(&core->uids, key);
    if (u == NULL) {
        u = calloc(1, sizeof *u);
        if (u == NULL) {
            return ZX_ERR_NO_MEMORY;
        }
        u->uid = uid;
        u->exempt = uid == 0 || uid == core->config.server_uid;
        if (iob__idmap_put(&core->uids, key, u) != ZX_OK) {
            free(u);
            return ZX_ERR_NO_MEMORY;
        }
    }
    u->refs++;
    *out = u;
    return ZX_OK;
}

void iob__uid_put(iob_core_t* core, iob__uid_t* uid) {
    if (--uid->refs == 0) {
        iob__idmap_remove(&core->uids, (uint64_t)uid->uid + 1);
        free(uid);
    }
}

/* ---- Charging ---- */

static const char* const res_name[IOB__RES_COUNT] = {"bytes", "IOBs", "handles", "tokens",
                                                     "mapping records"};

static bool fits(uint64_t used, uint64_t want, uint64_t limit) {
    return used <= limit && want <= limit - used;
}

zx_status_t iob__budget_charge(iob_core_t* core, iob__session_t* session,
                               const iob__usage_t* amount, iob__payer_t* payer) {
    iob__uid_t* uid = session->uid;
    for (int r = 0; r < IOB__RES_COUNT; r++) {
        uint64_t want = amount->n[r];
        if (want == 0) {
            continue;
        }
        zx_status_t over = r == IOB__RES_BYTES ? ZX_ERR_NO_MEMORY : ZX_ERR_NO_RESOURCES;
        if (r == IOB__RES_BYTES && !fits(core->bytes_in_use, want, core->config.max_total_bytes)) {
            return IOB__ERR_SET(over,
                                "%" PRIu64 " bytes exceed the server's budget (%" PRIu64
                                " of %" PRIu64 " in use)",
                                want, core->bytes_in_use, core->config.max_total_bytes);
        }
        if (!fits(session->used.n[r], want, core->session_limit.n[r])) {
            return IOB__ERR_SET(over,
                                "session %s limit %" PRIu64 " reached (%" PRIu64 " in use, %" PRIu64
                                " more asked)",
                                res_name[r], core->session_limit.n[r], session->used.n[r], want);
        }
        if (!uid->exempt && !fits(uid->used.n[r], want, core->uid_limit.n[r])) {
            return IOB__ERR_SET(over,
                                "uid %u's %s limit %" PRIu64 " reached (%" PRIu64
                                " in use, %" PRIu64 " more asked)",
                                (unsigned)uid->uid, res_name[r], core->uid_limit.n[r],
                                uid->used.n[r], want);
        }
    }
    for (int r = 0; r < IOB__RES_COUNT; r++) {
        session->used.n[r] += amount->n[r];
        uid->used.n[r] += amount->n[r];
    }
    core->bytes_in_use += amount->n[IOB__RES_BYTES];
    uid->refs++;
    payer->session_id = session->id;
    payer->uid = uid;
    return ZX_OK;
}

void iob__budget_release(iob_core_t* core, iob__payer_t* payer, const iob__usage_t* amount) {
    if (payer->uid == NULL) {
        return;
    }
    iob__session_t* session = iob__idmap_get(&core->sessions, payer->session_id);
    for (int r = 0; r < IOB__RES_COUNT; r++) {
        if (session != NULL) {
            session->used.n[r] -= amount->n[r];
        }
        payer->uid->used.n[r] -= amount->n[r];
    }
    core->bytes_in_use -= amount->n[IOB__RES_BYTES];
    iob__uid_put(core, payer->uid);
    payer->uid = NULL;
    payer->session_id = 0;
}
