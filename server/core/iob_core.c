/* SPDX-License-Identifier: MIT */
/*
 * iob_core: lifecycle, handles and lifetimes (A.9), for IOB endpoints and shared regions
 * alike. Sessions are in iob_session.c; info, properties, signals, listing and statistics are in
 * iob_object.c, creation in iob_create.c, mapping and mediated region access in iob_map.c, transfer
 * tokens in iob_token.c, shared regions and the mediated disciplines in iob_mediated.c.
 *
 * Threading: one mutex, taken at every public entry and released before it returns;
 * nothing in here blocks while holding it except the few syscalls of map. Region memory is
 * made before its IOB is installed and closed after the mutex is released (the dead lists
 * below), both outside the mutex, because their cost grows with the size a client asked.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "server/core/iob_core_internal.h"

#define IOB__DEFAULT_TOKEN_TTL_NS (UINT64_C(60) * 1000000000u)

/*
 * Enough for the IOBs one request can free in the common case (CloseHandles of a few
 * endpoints); a session ending with many IOBs overflows it, and the rest are closed as soon
 * as the mutex is released.
 */
#define IOB__DEFER_MAX 64u

/*
 * Handle values: (scramble(counter) << 2) | 3 with a scramble of handle_bits (at most 29)
 * bits, so values are never 0, have Zircon's low two bits set, and never have bit 31 set
 * (IOB_CORE_HANDLE_VALUE_LIMIT): the client library can use such values for pseudo-handles
 * without ever colliding. scramble is a bijection on those bits (odd multiplier, then a
 * per-core xor), and the counter wraps, so a value comes back only after the whole space has
 * gone round, and values still held are skipped: the space never runs out.
 */
#define IOB__HANDLE_BITS 29u
#define IOB__HANDLE_MASK ((UINT32_C(1) << IOB__HANDLE_BITS) - 1u)
#define IOB__HANDLE_MULT UINT32_C(0x2545F491)

_Static_assert(((IOB__HANDLE_MASK << 2) | 3u) < IOB_CORE_HANDLE_VALUE_LIMIT,
               "handle values stay below the limit promised in iob_core.h");
_Static_assert(IOB_VMAR_ROOT_HANDLE >= IOB_CORE_HANDLE_VALUE_LIMIT,
               "the root VMAR pseudo-handle is never a real handle's value");

/* ---- Error detail ---- */

static _Thread_local char err_detail[192];

zx_status_t iob__err_set(zx_status_t status, const char* func, int line, const char* fmt, ...) {
    int n = snprintf(err_detail, sizeof err_detail, "%s:%d: ", func, line);
    if (n >= 0 && (size_t)n < sizeof err_detail) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err_detail + n, sizeof err_detail - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return status;
}

void iob__err_clear(void) {
    err_detail[0] = '\0';
}

void iob__err_restore(const char* detail) {
    snprintf(err_detail, sizeof err_detail, "%s", detail);
}

const char* iob_core_error_detail(void) {
    return err_detail;
}

/* ---- Locking, clock ---- */

void iob__core_lock(iob_core_t* core) {
    pthread_mutex_lock(&core->lock);
    iob__err_clear();
}

static void dead_reap(unsigned keep);
static bool defer_on_get(void);

void iob__core_unlock(iob_core_t* core) {
    pthread_mutex_unlock(&core->lock);
    dead_reap(defer_on_get() ? IOB__DEFER_MAX : 0);
}

int64_t iob__now_ns(const iob_core_t* core) {
    if (core->config.now_ns != NULL) {
        return core->config.now_ns(core->config.clock_ctx);
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- Lifecycle ---- */

static uint32_t random_u32(void) {
    uint32_t value = 0;
    /*
     * The key only makes handle values less predictable; it protects nothing (a handle is
     * useless outside its session), so a failure to get randomness is not an error.
     */
    if (getrandom(&value, sizeof value, GRND_NONBLOCK) != (ssize_t)sizeof value) {
        value = (uint32_t)getpid() * UINT32_C(2654435761);
    }
    return value;
}

zx_status_t iob_core_create(const iob_core_config_t* config, iob_core_t** out) {
    iob__err_clear();
    if (config == NULL || out == NULL) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "config and out are required");
    }
    if (config->backing != IOB_BACKING_4K && config->backing != IOB_BACKING_2M &&
        config->backing != IOB_BACKING_1G) {
        return IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "unknown backing %d", (int)config->backing);
    }
    iob_core_t* core = calloc(1, sizeof *core);
    if (core == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    if (pthread_mutex_init(&core->lock, NULL) != 0) {
        free(core);
        return ZX_ERR_NO_RESOURCES;
    }
    core->config = *config;
    core->page_size = iob_backing_page_size(config->backing);
    core->token_ttl_ns =
        config->token_ttl_ns != 0 ? config->token_ttl_ns : IOB__DEFAULT_TOKEN_TTL_NS;
    core->next_koid = ZX_KOID_FIRST;
    core->next_session_id = 1;
    core->next_mapping_id = 1;
    core->handle_counter = 0;
    core->handle_bits =
        config->handle_value_bits != 0 && config->handle_value_bits < IOB__HANDLE_BITS
            ? config->handle_value_bits
            : IOB__HANDLE_BITS;
    core->handle_key = random_u32() & IOB__HANDLE_MASK;
    core->token_hash_key[0] = ((uint64_t)random_u32() << 32) | random_u32();
    core->token_hash_key[1] = ((uint64_t)random_u32() << 32) | random_u32();
    iob__budget_init(core);
    iob__idmap_init(&core->sessions);
    iob__idmap_init(&core->handles);
    iob__idmap_init(&core->mappings);
    iob__idmap_init(&core->uids);
    iob__idmap_init(&core->token_index);
    iob__list_init(&core->iobs);
    iob__list_init(&core->shared_regions);
    iob__list_init(&core->tokens);
    *out = core;
    return ZX_OK;
}

void iob_core_set_observer(iob_core_t* core, const iob_core_observer_t* observer) {
    iob__core_lock(core);
    if (observer != NULL) {
        core->config.observer = *observer;
    } else {
        memset(&core->config.observer, 0, sizeof core->config.observer);
    }
    iob__core_unlock(core);
}

void iob_core_destroy(iob_core_t* core) {
    if (core == NULL) {
        return;
    }
    pthread_mutex_lock(&core->lock);
    /* Whoever observes the core is tearing down too: no events from a dying core. */
    memset(&core->config.observer, 0, sizeof core->config.observer);
    /*
     * Releasing every session and token brings each IOB to zero handles and mappings, so the
     * A.9 path frees them; the loop over core->iobs is only a backstop.
     */
    while (core->sessions.count > 0) {
        for (size_t i = 0; i < core->sessions.capacity; i++) {
            if (core->sessions.keys[i] != 0) {
                iob__session_release(core, core->sessions.values[i]);
                break;
            }
        }
    }
    iob__tokens_destroy_all(core);
    while (!iob__list_empty(&core->iobs)) {
        iob__iob_free(core, IOB__CONTAINER_OF(core->iobs.next, iob__iob_t, link));
    }
    /* Freeing the IOBs released every shared region's last users; this is a backstop too. */
    while (!iob__list_empty(&core->shared_regions)) {
        iob__shared_region_free(
            core, IOB__CONTAINER_OF(core->shared_regions.next, iob__shared_region_t, link));
    }
    /* Every payer and session is gone, so no uid record is left; this is a backstop. */
    for (size_t i = 0; i < core->uids.capacity; i++) {
        if (core->uids.keys[i] != 0) {
            free(core->uids.values[i]);
        }
    }
    iob__idmap_fini(&core->sessions);
    iob__idmap_fini(&core->handles);
    iob__idmap_fini(&core->mappings);
    iob__idmap_fini(&core->uids);
    iob__idmap_fini(&core->token_index);
    iob__core_unlock(core);
    pthread_mutex_destroy(&core->lock);
    free(core);
}

uint64_t iob_core_page_size(const iob_core_t* core) {
    /* Fixed at creation, so no lock is needed. */
    return core->page_size;
}

iob_backing_t iob_core_backing(const iob_core_t* core) {
    return core->config.backing;
}

/* ---- Handles ---- */

/* The handle if `session` owns it; NULL otherwise. */
static iob__handle_t* handle_lookup(iob_core_t* core, iob_session_id_t session, zx_handle_t value) {
    iob__handle_t* h = iob__idmap_get(&core->handles, value);
    if (h == NULL || h->session->id != session.value) {
        return NULL;
    }
    return h;
}

/* The rights a handle lacks, named for the error detail. */
static zx_status_t rights_missing(zx_handle_t value, zx_rights_t held, zx_rights_t rights) {
    return IOB__ERR_SET(ZX_ERR_ACCESS_DENIED, "handle 0x%x lacks rights 0x%x", value,
                        rights & ~held);
}

zx_status_t iob__handle_get(iob_core_t* core, iob_session_id_t session, zx_handle_t value,
                            zx_obj_type_t type, zx_rights_t rights, iob__handle_t** out) {
    *out = NULL;
    if (value == IOB_VMAR_ROOT_HANDLE && iob__session_live(core, session) != NULL) {
        if (type != ZX_OBJ_TYPE_NONE && type != ZX_OBJ_TYPE_VMAR) {
            return IOB__ERR_SET(ZX_ERR_WRONG_TYPE, "handle 0x%x is the root VMAR, not type %u",
                                value, type);
        }
        if ((rights & ~IOB_VMAR_ROOT_RIGHTS) != 0) {
            return rights_missing(value, IOB_VMAR_ROOT_RIGHTS, rights);
        }
        return ZX_OK;
    }
    iob__handle_t* h = handle_lookup(core, session, value);
    if (h == NULL) {
        return IOB__ERR_SET(ZX_ERR_BAD_HANDLE, "handle 0x%x", value);
    }
    zx_obj_type_t held = h->shared != NULL ? ZX_OBJ_TYPE_IOB_SHARED_REGION : ZX_OBJ_TYPE_IOB;
    if (type != ZX_OBJ_TYPE_NONE && type != held) {
        return IOB__ERR_SET(ZX_ERR_WRONG_TYPE, "handle 0x%x is %s", value,
                            held == ZX_OBJ_TYPE_IOB ? "an IOB, not a shared region"
                                                    : "a shared region, not an IOB");
    }
    if ((rights & ~h->rights) != 0) {
        return rights_missing(value, h->rights, rights);
    }
    *out = h;
    return ZX_OK;
}

zx_status_t iob__region_get(iob_core_t* core, iob_session_id_t session, zx_handle_t value,
                            zx_rights_t rights, uint32_t region_index, iob__handle_t** handle_out,
                            iob__region_t** region_out) {
    iob__handle_t* h = NULL;
    zx_status_t status = iob__handle_get(core, session, value, ZX_OBJ_TYPE_IOB, rights, &h);
    if (status != ZX_OK) {
        return status;
    }
    iob__iob_t* iob = h->ep->iob;
    if (region_index >= iob->region_count) {
        return IOB__ERR_SET(ZX_ERR_OUT_OF_RANGE, "region %u of %u", region_index,
                            iob->region_count);
    }
    *handle_out = h;
    *region_out = &iob->regions[region_index];
    return ZX_OK;
}

zx_handle_t iob__handle_value_next(iob_core_t* core, zx_handle_t other) {
    uint32_t mask = (UINT32_C(1) << core->handle_bits) - 1u;
    /* At most one round of the space: past that every value is held. */
    for (uint64_t tries = 0; tries <= mask; tries++) {
        uint32_t counter = core->handle_counter = (core->handle_counter + 1u) & mask;
        uint32_t scrambled = ((counter * IOB__HANDLE_MULT) ^ core->handle_key) & mask;
        zx_handle_t value = (zx_handle_t)((scrambled << 2) | 3u);
        if (value != other && iob__idmap_get(&core->handles, value) == NULL) {
            return value;
        }
    }
    return ZX_HANDLE_INVALID;
}

zx_status_t iob__handle_alloc(iob_core_t* core, iob__session_t* session, iob__handle_t** out) {
    iob__handle_t* h = calloc(1, sizeof *h);
    if (h == NULL || iob__idmap_reserve(&core->handles, 1) != ZX_OK) {
        free(h);
        return ZX_ERR_NO_MEMORY;
    }
    h->value = iob__handle_value_next(core, ZX_HANDLE_INVALID);
    if (h->value == ZX_HANDLE_INVALID) {
        free(h);
        return IOB__ERR_SET(ZX_ERR_NO_RESOURCES, "every handle value is in use");
    }
    iob__usage_t one = iob__amount(IOB__RES_HANDLES, 1);
    zx_status_t status = iob__budget_charge(core, session, &one, &h->payer);
    if (status != ZX_OK) {
        free(h);
        return status;
    }
    *out = h;
    return ZX_OK;
}

void iob__handle_discard(iob_core_t* core, iob__handle_t* handle) {
    iob__usage_t one = iob__amount(IOB__RES_HANDLES, 1);
    iob__budget_release(core, &handle->payer, &one);
    free(handle);
}

void iob__handle_install(iob_core_t* core, iob__session_t* session, iob__handle_t* handle) {
    handle->session = session;
    iob__list_push_back(&session->handles, &handle->link);
    iob__list_push_back(handle->ep != NULL ? &handle->ep->holders : &handle->shared->holders,
                        &handle->holder_link);
    core->handle_count++;
    zx_status_t status = iob__idmap_put(&core->handles, handle->value, handle);
    /* Callers reserved room first; a failure here would leave a handle nobody can find. */
    if (status != ZX_OK) {
        abort();
    }
}

void iob__handle_destroy(iob_core_t* core, iob__handle_t* handle, bool keep_count) {
    iob__session_t* session = handle->session;
    iob__endpoint_t* ep = handle->ep;
    iob__shared_region_t* shared = handle->shared;
    iob__idmap_remove(&core->handles, handle->value);
    iob__list_remove(&handle->link);
    iob__list_remove(&handle->holder_link);
    core->handle_count--;
    if (core->config.observer.handle_closed != NULL) {
        core->config.observer.handle_closed(core->config.observer.ctx,
                                            (iob_session_id_t){session->id}, handle->value);
    }
    iob__handle_discard(core, handle);
    if (!keep_count) {
        iob__handle_target_released(core, ep, shared);
    }
}

void iob__handle_target_released(iob_core_t* core, iob__endpoint_t* ep,
                                 iob__shared_region_t* shared) {
    if (shared != NULL) {
        shared->handles--;
        iob__shared_region_released(core, shared);
    } else {
        ep->handles--;
        iob__endpoint_released(core, ep);
    }
}

zx_status_t iob_core_handle_close(iob_core_t* core, iob_session_id_t session, zx_handle_t handle) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    zx_status_t status = iob__handle_get(core, session, handle, ZX_OBJ_TYPE_NONE, 0, &h);
    /* h is NULL for the root VMAR: closing it succeeds and does nothing (A.12). */
    if (status == ZX_OK && h != NULL) {
        iob__handle_destroy(core, h, false);
    }
    iob__core_unlock(core);
    return status;
}

/* A.12: ZX_RIGHT_SAME_RIGHTS exactly, or a subset of what the handle has. */
static bool rights_valid(zx_rights_t requested, zx_rights_t held) {
    return requested == ZX_RIGHT_SAME_RIGHTS || (requested & ~held) == 0;
}

static zx_rights_t rights_resolve(zx_rights_t requested, zx_rights_t held) {
    return requested == ZX_RIGHT_SAME_RIGHTS ? held : requested;
}

zx_status_t iob_core_handle_duplicate(iob_core_t* core, iob_session_id_t session,
                                      zx_handle_t handle, zx_rights_t rights, zx_handle_t* out) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    zx_status_t status =
        iob__handle_get(core, session, handle, ZX_OBJ_TYPE_NONE, ZX_RIGHT_DUPLICATE, &h);
    if (status != ZX_OK) {
        goto done;
    }
    zx_rights_t held = h != NULL ? h->rights : IOB_VMAR_ROOT_RIGHTS;
    if (!rights_valid(rights, held)) {
        status =
            IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "rights 0x%x not a subset of 0x%x", rights, held);
        goto done;
    }
    if (out == NULL) {
        status = IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "out is NULL");
        goto done;
    }
    if (h == NULL) {
        /* Zircon would make a second VMAR handle; iob has no VMAR objects to hand out. */
        status = IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "the root VMAR cannot be duplicated");
        goto done;
    }
    iob__handle_t* dup = NULL;
    status = iob__handle_alloc(core, h->session, &dup);
    if (status != ZX_OK) {
        goto done;
    }
    dup->rights = rights_resolve(rights, h->rights);
    dup->ep = h->ep;
    dup->shared = h->shared;
    if (dup->shared != NULL) {
        dup->shared->handles++;
    } else {
        dup->ep->handles++;
    }
    iob__handle_install(core, h->session, dup);
    *out = dup->value;
done:
    iob__core_unlock(core);
    return status;
}

zx_status_t iob_core_handle_replace(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                    zx_rights_t rights, zx_handle_t* out) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    zx_status_t status = iob__handle_get(core, session, handle, ZX_OBJ_TYPE_NONE, 0, &h);
    if (status != ZX_OK) {
        goto done;
    }
    if (h == NULL) {
        /* The root VMAR is never consumed, and iob has no VMAR objects to hand out. */
        if (!rights_valid(rights, IOB_VMAR_ROOT_RIGHTS)) {
            status = IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "rights 0x%x not a subset of 0x%x", rights,
                                  IOB_VMAR_ROOT_RIGHTS);
        } else if (out == NULL) {
            status = IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "out is NULL");
        } else {
            status = IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "the root VMAR cannot be replaced");
        }
        goto done;
    }
    /* From here on the original is consumed whatever happens (A.12). */
    iob__handle_t* repl = NULL;
    if (!rights_valid(rights, h->rights)) {
        status = IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "rights 0x%x not a subset of 0x%x", rights,
                              h->rights);
    } else if (out == NULL) {
        status = IOB__ERR_SET(ZX_ERR_INVALID_ARGS, "out is NULL");
    } else {
        repl = calloc(1, sizeof *repl);
        if (repl == NULL || iob__idmap_reserve(&core->handles, 1) != ZX_OK) {
            status = ZX_ERR_NO_MEMORY;
        } else if ((repl->value = iob__handle_value_next(core, ZX_HANDLE_INVALID)) ==
                   ZX_HANDLE_INVALID) {
            status = IOB__ERR_SET(ZX_ERR_NO_RESOURCES, "every handle value is in use");
        }
    }
    if (status != ZX_OK || repl == NULL) {
        free(repl);
        iob__handle_destroy(core, h, false);
        goto done;
    }
    repl->rights = rights_resolve(rights, h->rights);
    repl->ep = h->ep;
    repl->shared = h->shared;
    /* One handle for another: the charge moves with it, so a full budget allows a replace. */
    repl->payer = h->payer;
    h->payer = (iob__payer_t){0, NULL};
    iob__session_t* owner = h->session;
    /* The endpoint keeps its count: one handle leaves, one arrives. */
    iob__handle_destroy(core, h, true);
    iob__handle_install(core, owner, repl);
    *out = repl->value;
done:
    iob__core_unlock(core);
    return status;
}

/* ---- Lifetimes (A.9) ---- */

/*
 * Tells the observer about a change of an object's signals once per handle that names it:
 * each holder's session learns it under the handle value it knows (the koid rides along
 * for logs and tests). strobe: ZX_IOB_SHARED_REGION_UPDATED was strobed, not latched.
 */
void iob__holders_notify(iob_core_t* core, iob__list_t* holders, zx_koid_t koid,
                         zx_signals_t signals, bool strobe) {
    const iob_core_observer_t* o = &core->config.observer;
    void (*fn)(void*, iob_session_id_t, zx_handle_t, zx_koid_t, zx_signals_t) =
        strobe ? o->handle_strobed : o->handle_signals;
    if (fn == NULL) {
        return;
    }
    for (iob__list_t* n = holders->next; n != holders; n = n->next) {
        iob__handle_t* h = IOB__CONTAINER_OF(n, iob__handle_t, holder_link);
        fn(o->ctx, (iob_session_id_t){h->session->id}, h->value, koid, signals);
    }
}

void iob__endpoint_set_signals(iob_core_t* core, iob__endpoint_t* ep, zx_signals_t signals) {
    if (ep->signals == signals) {
        return;
    }
    ep->signals = signals;
    iob__holders_notify(core, &ep->holders, ep->koid, signals, false);
}

static bool endpoint_gone(const iob__endpoint_t* ep) {
    return ep->handles == 0 && ep->mappings == 0;
}

void iob__endpoint_released(iob_core_t* core, iob__endpoint_t* ep) {
    if (!endpoint_gone(ep)) {
        return;
    }
    iob__iob_t* iob = ep->iob;
    iob__endpoint_t* peer = &iob->ep[1 - ep->index];
    if (endpoint_gone(peer)) {
        iob__iob_free(core, iob);
        return;
    }
    iob__endpoint_set_signals(core, peer, peer->signals | ZX_IOB_PEER_CLOSED);
}

/* ---- Closing region memory outside the mutex, and iob_core_release_defer ---- */

/*
 * IOBs and shared regions freed under the mutex wait here, per thread, until the thread
 * releases the mutex (iob__core_unlock), or under iob_core_release_defer until its
 * iob_core_release_flush (up to IOB__DEFER_MAX of them; more are closed at unlock). The
 * objects are already unlinked and uncharged: only their memory remains.
 */
static _Thread_local bool defer_on;
static _Thread_local unsigned dead_count;
static _Thread_local iob__list_t dead_iobs;
static _Thread_local iob__list_t dead_shared;

static bool defer_on_get(void) {
    return defer_on;
}

static void dead_lists_init(void) {
    if (dead_iobs.next == NULL) {
        iob__list_init(&dead_iobs);
        iob__list_init(&dead_shared);
    }
}

static void dead_push(iob__list_t* list, iob__list_t* link) {
    dead_lists_init();
    iob__list_push_back(list, link);
    dead_count++;
}

static void dead_reap(unsigned keep) {
    dead_lists_init();
    while (dead_count > keep && !iob__list_empty(&dead_iobs)) {
        iob__list_t* node = dead_iobs.next;
        iob__list_remove(node);
        dead_count--;
        iob__iob_t* iob = IOB__CONTAINER_OF(node, iob__iob_t, link);
        for (uint32_t i = 0; i < iob->region_count; i++) {
            iob__memory_release(&iob->regions[i].own);
        }
        free(iob);
    }
    while (dead_count > keep && !iob__list_empty(&dead_shared)) {
        iob__list_t* node = dead_shared.next;
        iob__list_remove(node);
        dead_count--;
        iob__shared_region_t* shared = IOB__CONTAINER_OF(node, iob__shared_region_t, link);
        iob__memory_release(&shared->memory);
        free(shared);
    }
}

void iob__shared_region_bury(iob__shared_region_t* shared) {
    dead_push(&dead_shared, &shared->link);
}

void iob_core_release_flush(void) {
    dead_reap(0);
}

void iob_core_release_defer(bool on) {
    if (!on) {
        iob_core_release_flush();
    }
    defer_on = on;
}

void* iob__memory_view(iob__memory_t* memory) {
    if (memory->server_view == NULL && memory->mem.size > 0) {
        /*
         * NORESERVE: the pages were allocated at create, so the view needs no hugepage
         * reservation; with one, a hole a writer punched (and whose page it took back from
         * the pool) would make this mmap fail, and the access the same hole makes fault
         * under iob_fault_call would answer differently depending on whether the view
         * existed before.
         */
        void* view = mmap(NULL, (size_t)memory->mem.size, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_NORESERVE, memory->mem.fd, 0);
        if (view == MAP_FAILED) {
            return NULL;
        }
        memory->server_view = view;
    }
    return memory->server_view;
}

void iob__memory_release(iob__memory_t* memory) {
    if (memory->server_view != NULL) {
        munmap(memory->server_view, (size_t)memory->mem.size);
        memory->server_view = NULL;
    }
    if (memory->ro_fd >= 0) {
        close(memory->ro_fd);
        memory->ro_fd = -1;
    }
    /* Region fds are never 0..2 (shm/region.c), so a zeroed region has nothing to close. */
    if (memory->mem.fd > STDERR_FILENO) {
        close(memory->mem.fd);
        memory->mem.fd = -1;
    }
    iob_region_destroy(&memory->mem);
}

void iob__iob_free(iob_core_t* core, iob__iob_t* iob) {
    for (uint32_t i = 0; i < iob->region_count; i++) {
        iob__region_t* r = &iob->regions[i];
        if (r->shared != NULL) {
            iob__shared_region_t* shared = r->shared;
            r->shared = NULL;
            shared->iob_regions--;
            iob__shared_region_released(core, shared);
        }
    }
    iob__list_remove(&iob->link);
    core->iob_count--;
    core->region_count -= iob->region_count;
    iob__usage_t charge = iob__amount(IOB__RES_BYTES, iob->total_bytes);
    charge.n[IOB__RES_IOBS] = 1;
    iob__budget_release(core, &iob->payer, &charge);
    /* Its private regions' memory is closed once the mutex is released. */
    dead_push(&dead_iobs, &iob->link);
}
