/* SPDX-License-Identifier: MIT */
/*
 * iob_core's private structures, shared by the files of server/core/ only.
 *
 * Ownership graph (who frees what):
 *   core ─┬─ sessions (idmap by id) ─┬─ handles (list; also in core->handles by value)
 *         │                          └─ mapping records (list; also in core->mappings by id)
 *         ├─ iobs (list, creation order) ── regions (private: memfd, read-only fd, server
 *         │                                  mapping; shared: a counted pointer to ...)
 *         ├─ shared regions (list) ── memfd, read-only fd, server mapping
 *         ├─ tokens (list in creation order = expiry order; also in core->token_index by
 *         │          a keyed hash of their text)
 *         └─ uid records (idmap by uid + 1): what each uid has charged (iob_budget.c)
 * Handles, mapping records and tokens point at an endpoint and are counted in it
 * (handles: handles + tokens; mappings: records). An IOB is freed by the call that
 * brings the second of its endpoints to zero handles and zero mappings (A.9); nothing
 * else frees it, so holding a handle, a record or a token keeps the pointer valid.
 * A handle or token names either an endpoint or a shared region (exactly one pointer is
 * set). A shared region counts its handles and tokens, and the regions of live IOBs built
 * on it; the call that brings both counts to zero frees it (mappings of it are made
 * through IOBs, whose regions keep it counted until the IOB goes).
 */
#ifndef IOB_SERVER_CORE_IOB_CORE_INTERNAL_H_
#define IOB_SERVER_CORE_IOB_CORE_INTERNAL_H_

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/core/iob_core.h"
#include "server/core/iob_metrics.h"
#include "shm/handles.h"
#include "shm/mediated.h"

/* ---- Intrusive doubly linked lists ---- */

typedef struct iob__list {
    struct iob__list* prev;
    struct iob__list* next;
} iob__list_t;

#define IOB__CONTAINER_OF(ptr, type, member) \
    ((type*)(void*)((char*)(ptr)-offsetof(type, member)))

static inline void iob__list_init(iob__list_t* head) {
    head->prev = head;
    head->next = head;
}

static inline bool iob__list_empty(const iob__list_t* head) {
    return head->next == head;
}

static inline void iob__list_push_back(iob__list_t* head, iob__list_t* node) {
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static inline void iob__list_remove(iob__list_t* node) {
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node;
    node->next = node;
}

/* ---- id -> pointer map (open addressing, keys never 0) ---- */

typedef struct iob__idmap {
    uint64_t* keys;
    void** values;
    size_t capacity; /* 0 or a power of two */
    size_t count;
} iob__idmap_t;

void iob__idmap_init(iob__idmap_t* map);
void iob__idmap_fini(iob__idmap_t* map);
void* iob__idmap_get(const iob__idmap_t* map, uint64_t key);
/*
 * Makes room for `extra` more keys, so that the next `extra` puts cannot fail. Lets a
 * multi-step operation allocate everything before it changes anything.
 */
zx_status_t iob__idmap_reserve(iob__idmap_t* map, size_t extra);
/* key must be non-zero and absent. ZX_ERR_NO_MEMORY when growing fails. */
zx_status_t iob__idmap_put(iob__idmap_t* map, uint64_t key, void* value);
/* Returns the removed value, or NULL when the key was absent. */
void* iob__idmap_remove(iob__idmap_t* map, uint64_t key);

/* ---- Budgets (iob_budget.c) ---- */

typedef enum iob__res {
    IOB__RES_BYTES = 0, /* over budget: ZX_ERR_NO_MEMORY */
    IOB__RES_IOBS,      /* IOBs and shared regions; these and below: ZX_ERR_NO_RESOURCES */
    IOB__RES_HANDLES,
    IOB__RES_TOKENS,
    IOB__RES_MAPPINGS,
    IOB__RES_COUNT
} iob__res_t;

typedef struct iob__usage {
    uint64_t n[IOB__RES_COUNT];
} iob__usage_t;

/* What one uid has charged, over all its sessions and the objects that outlived them. */
typedef struct iob__uid {
    uid_t uid;
    bool exempt;   /* root or the server's uid: counted, never refused by per-uid limits */
    uint64_t refs; /* sessions plus payers that point here; freed at 0 */
    iob__usage_t used;
} iob__uid_t;

/*
 * Who paid for an object: the session (by id: once it is released the charge simply stops
 * counting against it) and the uid (counted: the uid record lives while any payer does).
 * An object's charge is given back exactly once, by iob__budget_release.
 */
typedef struct iob__payer {
    uint64_t session_id;
    iob__uid_t* uid;
} iob__payer_t;

/* ---- The object graph ---- */

typedef struct iob__session iob__session_t;
typedef struct iob__iob iob__iob_t;
typedef struct iob__shared_region iob__shared_region_t;

typedef struct iob__endpoint {
    iob__iob_t* iob;
    uint32_t index; /* 0 or 1 */
    zx_koid_t koid;
    uint32_t handles;  /* open handles plus tokens in flight */
    uint32_t mappings; /* live mapping records made through this endpoint */
    zx_signals_t signals;
    iob__list_t holders; /* its handles (iob__handle_t.holder_link), for the observer */
} iob__endpoint_t;

/* A region's memory and what the server derives from it on demand. */
typedef struct iob__memory {
    iob_region_t mem;
    int ro_fd;         /* read-only description, opened on first read-only map; -1 */
    void* server_view; /* MAP_SHARED read-write view (mediated access), made lazily; NULL */
} iob__memory_t;

typedef struct iob__region {
    /* As given; a private region's size is replaced by the rounded size (a shared one's
     * stays 0, as in Zircon: the memory's size is shared->memory.mem.size). */
    zx_iob_region_t desc;
    zx_koid_t koid;             /* a shared region's koid for shared regions (A.3 7.2) */
    iob__memory_t own;          /* private regions only */
    iob__shared_region_t* shared; /* shared regions only; counted in shared->iob_regions */
} iob__region_t;

/*
 * zx_iob_create_shared_region's object. Its lock for A.7 is the core's mutex: every
 * writer runs under it, so writes into one ring are serialised as the kernel's
 * per-shared-region lock serialises them.
 */
struct iob__shared_region {
    iob__list_t link; /* core->shared_regions; after it is freed, the thread's dead list */
    zx_koid_t koid;
    uint32_t handles;     /* open handles plus tokens in flight */
    uint32_t iob_regions; /* regions of live IOBs that use it */
    zx_signals_t signals; /* user signals only; SHARED_REGION_UPDATED is only strobed */
    iob__list_t holders;  /* its handles (iob__handle_t.holder_link), for the observer */
    /* Its bytes and IOB slot, charged to the creating session and uid until it is freed. */
    iob__payer_t payer;
    iob__memory_t memory;
    iob_metrics_region_t* metrics; /* its mediated-write counters (iob_metrics.h) */
    iob_mwrb_cursor_t ring_cursor; /* where the core's last append to its ring ended */
};

static inline iob__memory_t* iob__region_memory(iob__region_t* r) {
    return r->shared != NULL ? &r->shared->memory : &r->own;
}

/* The bytes a region's memory has (a shared region's description says 0). */
static inline uint64_t iob__region_bytes(const iob__region_t* r) {
    return r->shared != NULL ? r->shared->memory.mem.size : r->desc.size;
}

struct iob__iob {
    iob__list_t link; /* core->iobs, creation order; after it is freed, the thread's dead list */
    iob__endpoint_t ep[2];
    iob__payer_t payer; /* total_bytes and an IOB slot */
    uint64_t total_bytes;
    char name[ZX_MAX_NAME_LEN]; /* always NUL-terminated and zero-padded */
    uint32_t region_count;
    iob__region_t regions[];
};

typedef struct iob__handle {
    zx_handle_t value;
    zx_rights_t rights;
    iob__endpoint_t* ep;            /* an IOB endpoint's handle, or */
    iob__shared_region_t* shared;   /* a shared region's handle */
    iob__session_t* session;
    iob__list_t link;        /* session->handles */
    iob__list_t holder_link; /* its endpoint's or shared region's holders */
    iob__payer_t payer;
} iob__handle_t;

typedef struct iob__mapping {
    uint64_t id;
    iob__endpoint_t* ep;
    iob__session_t* session;
    iob__list_t link; /* session->mappings */
    iob__payer_t payer;
} iob__mapping_t;

struct iob__session {
    uint64_t id;
    iob_session_cred_t cred;
    uint8_t secret[IOB_CORE_SECRET_SIZE];
    bool closed;       /* connection gone; only mapping records remain */
    bool attached;     /* the map broker attached it: it may hold mapping records */
    iob__uid_t* uid;   /* counted in uid->refs */
    iob__usage_t used; /* what objects it made still charge to it */
    iob__list_t handles;
    iob__list_t mappings;
};

typedef struct iob__token {
    iob__list_t link; /* core->tokens */
    uint64_t key;     /* in core->token_index: a keyed hash of text */
    iob__payer_t payer;             /* the exporter's token slot, until imported or expired */
    char text[IOB_CORE_TOKEN_SIZE]; /* zero-padded, so comparisons cover fixed bytes */
    iob__endpoint_t* ep;          /* what the handle named: an endpoint, or */
    iob__shared_region_t* shared; /* a shared region */
    zx_rights_t rights;
    int64_t expires_ns;
} iob__token_t;

struct iob_core {
    pthread_mutex_t lock;
    iob_core_config_t config;
    uint64_t page_size;
    uint64_t token_ttl_ns;

    zx_koid_t next_koid;
    uint64_t next_session_id;
    uint64_t next_mapping_id;
    uint32_t handle_counter; /* position in the value space; wraps */
    uint32_t handle_key;     /* per-core scramble of handle values */
    uint32_t handle_bits;    /* the value space has 2^handle_bits values */
    uint64_t token_hash_key[2]; /* per-core key of the token index's hash */
    iob__usage_t session_limit; /* effective limits, defaults filled in */
    iob__usage_t uid_limit;

    iob__idmap_t sessions; /* id -> iob__session_t* */
    iob__idmap_t handles;  /* value -> iob__handle_t* */
    iob__idmap_t mappings; /* id -> iob__mapping_t* */
    iob__idmap_t uids;     /* uid + 1 -> iob__uid_t* */
    iob__idmap_t token_index; /* keyed hash of the text -> iob__token_t* */
    iob__list_t iobs;
    iob__list_t shared_regions;
    iob__list_t tokens;

    uint64_t iob_count;
    uint64_t shared_region_count;
    uint64_t handle_count;
    uint64_t mapping_count;
    uint64_t token_count;
    uint64_t bytes_in_use;
    uint64_t region_count; /* regions of live IOBs (metrics) */
};

/* ---- Error detail ---- */

zx_status_t iob__err_set(zx_status_t status, const char* func, int line, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
void iob__err_clear(void);
/* Puts back a detail saved from iob_core_error_detail (a lock in between cleared it). */
void iob__err_restore(const char* detail);
/* Records why `status` is returned (thread-local, read with iob_core_error_detail). */
#define IOB__ERR_SET(status, ...) iob__err_set((status), __func__, __LINE__, __VA_ARGS__)

/* ---- Helpers shared by the files of the core (the lock is held) ---- */

void iob__core_lock(iob_core_t* core);
/* Unlocks, then closes the region memory this thread freed meanwhile (the dead lists). */
void iob__core_unlock(iob_core_t* core);

/* Fills in the effective limits from the configuration (iob_core_create). */
void iob__budget_init(iob_core_t* core);
/* The session's uid record, made on first use (ZX_ERR_NO_MEMORY). Counts a reference. */
zx_status_t iob__uid_get(iob_core_t* core, uid_t uid, iob__uid_t** out);
/* Drops a reference; frees the record at 0. */
void iob__uid_put(iob_core_t* core, iob__uid_t* uid);
/*
 * The one place budgets are checked: charges `amount` to the session, its uid and (bytes)
 * the server, or changes nothing and answers why not (NO_MEMORY for bytes, NO_RESOURCES
 * otherwise; checked in iob__res_t order). On success *payer names who paid, for
 * iob__budget_release.
 */
zx_status_t iob__budget_charge(iob_core_t* core, iob__session_t* session,
                               const iob__usage_t* amount, iob__payer_t* payer);
/* Gives a charge back; the payer is cleared. A cleared payer gives nothing back. */
void iob__budget_release(iob_core_t* core, iob__payer_t* payer, const iob__usage_t* amount);
/* An amount of one resource. */
static inline iob__usage_t iob__amount(iob__res_t res, uint64_t n) {
    iob__usage_t u = {{0}};
    u.n[res] = n;
    return u;
}

/* Closes the session if it is open, drops its mapping records and frees it. */
void iob__session_release(iob_core_t* core, iob__session_t* session);
/* A live session (not closed); NULL otherwise. */
iob__session_t* iob__session_live(iob_core_t* core, iob_session_id_t session);
/*
 * Zircon's GetDispatcherWithRights: looks `value` up in `session` expecting an object of
 * `type` (ZX_OBJ_TYPE_IOB, ZX_OBJ_TYPE_IOB_SHARED_REGION, or ZX_OBJ_TYPE_NONE for any) and
 * holding every right of `rights`, and answers in Zircon's order: ZX_ERR_BAD_HANDLE (not a
 * handle of this live session), ZX_ERR_WRONG_TYPE, ZX_ERR_ACCESS_DENIED. Calls whose
 * documented order checks a right later pass 0 and check it themselves.
 *
 * The root VMAR pseudo-handle (IOB_VMAR_ROOT_HANDLE) is a VMAR every live session holds,
 * with IOB_VMAR_ROOT_RIGHTS; it has no iob__handle_t, so when it passes (type NONE) *out
 * is NULL and the caller decides what a VMAR does.
 */
zx_status_t iob__handle_get(iob_core_t* core, iob_session_id_t session, zx_handle_t value,
                            zx_obj_type_t type, zx_rights_t rights, iob__handle_t** out);

/*
 * iob__handle_get for an IOB handle with `rights`, then its region `region_index`
 * (ZX_ERR_OUT_OF_RANGE past its last): what every per-region operation looks up first.
 */
zx_status_t iob__region_get(iob_core_t* core, iob_session_id_t session, zx_handle_t value,
                            zx_rights_t rights, uint32_t region_index, iob__handle_t** handle_out,
                            iob__region_t** region_out);

/*
 * Gives out the next handle value that no live handle holds and that differs from `other`
 * (a value drawn but not installed yet; 0 for none), or 0 when every value is held (the
 * caller answers ZX_ERR_NO_RESOURCES).
 */
zx_handle_t iob__handle_value_next(iob_core_t* core, zx_handle_t other);
/*
 * A new handle ready for iob__handle_install: charged to the session (handle budget), room
 * reserved in the handle map and a fresh value drawn (ZX_ERR_NO_RESOURCES, NO_MEMORY).
 * The caller fills in rights and endpoint; nothing changes on failure (iob__handle_discard
 * undoes it if the caller fails later).
 */
zx_status_t iob__handle_alloc(iob_core_t* core, iob__session_t* session, iob__handle_t** out);
void iob__handle_discard(iob_core_t* core, iob__handle_t* handle);
/*
 * Installs a handle made by the caller (value, rights, ep set) into session;
 * the core's handle map must have room (iob__idmap_reserve). Counts it in the session but
 * not in the endpoint: callers decide whether the endpoint's count changes.
 */
void iob__handle_install(iob_core_t* core, iob__session_t* session, iob__handle_t* handle);
/*
 * Removes a handle from its session and the handle map and tells the observer. When
 * keep_count is false the endpoint loses the handle (which may raise PEER_CLOSED or free
 * the IOB); export passes true because the token takes the handle's place.
 */
void iob__handle_destroy(iob_core_t* core, iob__handle_t* handle, bool keep_count);

/* Sets an endpoint's signals and tells the observer when they change. */
void iob__holders_notify(iob_core_t* core, iob__list_t* holders, zx_koid_t koid,
                         zx_signals_t signals, bool strobe);
void iob__endpoint_set_signals(iob_core_t* core, iob__endpoint_t* ep, zx_signals_t signals);
/*
 * Call after an endpoint lost a handle, token or mapping record: applies A.9 (the peer
 * sees PEER_CLOSED once this endpoint has neither; the IOB goes once both have neither).
 * The endpoint may be freed on return.
 */
void iob__endpoint_released(iob_core_t* core, iob__endpoint_t* ep);

/* Endpoint `index`'s view of region access bits: ep1 sees them swapped, reserved bits gone. */
static inline zx_iob_access_t iob__access_view(zx_iob_access_t access, uint32_t index) {
    if (index == 0) {
        return access;
    }
    return ((access & 0x0Fu) << 4) | ((access & 0xF0u) >> 4);
}

/*
 * The object a handle or token names lost one handle (close, session end, expired token):
 * applies A.9 to an endpoint, or frees a shared region nobody uses any more.
 */
void iob__handle_target_released(iob_core_t* core, iob__endpoint_t* ep,
                                 iob__shared_region_t* shared);
/* A shared region lost a handle or an IOB region; frees it when it has neither left. */
void iob__shared_region_released(iob_core_t* core, iob__shared_region_t* shared);
void iob__shared_region_free(iob_core_t* core, iob__shared_region_t* shared);
/* Hands a freed shared region to this thread's dead list: its memory closes after unlock. */
void iob__shared_region_bury(iob__shared_region_t* shared);

/*
 * The server's read-write MAP_SHARED view of a region's memory, made on first use and kept
 * until the memory is freed. NULL when mmap fails (the caller answers ZX_ERR_NO_MEMORY).
 */
void* iob__memory_view(iob__memory_t* memory);
/* Unmaps the view and closes the fds, now: only outside the core's mutex. */
void iob__memory_release(iob__memory_t* memory);

/* Drops every mapping record and token and frees all IOBs (core destruction). */
void iob__tokens_destroy_all(iob_core_t* core);
void iob__mapping_destroy(iob_core_t* core, iob__mapping_t* mapping);
void iob__iob_free(iob_core_t* core, iob__iob_t* iob);

int64_t iob__now_ns(const iob_core_t* core);

#endif /* IOB_SERVER_CORE_IOB_CORE_INTERNAL_H_ */
