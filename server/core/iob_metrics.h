/* SPDX-License-Identifier: MIT */
/*
 * iob_metrics: iobd's counters and their Prometheus text exposition (format 0.0.4).
 *
 * Counting is process-wide (one iobd, one set of counters) and costs relaxed atomic adds
 * only: no lock, no allocation, nothing a scrape can make a counting thread wait for.
 * What changes slowly (IOBs, bytes, sessions, budgets) is not counted here at all: a scrape
 * copies the core's figures (iob_core_get_stats, the core's lock held for that copy only).
 *
 * Labels are bounded: methods and statuses come from fixed tables (statuses outside
 * Zircon's range count as "other"), refusal reasons are an enum, and shared regions get a
 * label of their own (their koid) only up to iob_metrics_set_max_named of them alive at a
 * time; the rest, and the counts of freed ones, go to shared_region="other".
 */
#ifndef IOB_SERVER_CORE_IOB_METRICS_H_
#define IOB_SERVER_CORE_IOB_METRICS_H_

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <zircon/types.h>

typedef struct iob_core iob_core_t;

#define IOB_METRICS_MAX_METHODS 32
#define IOB_METRICS_MAX_NAMED_LIMIT 1024u
#define IOB_METRICS_DEFAULT_MAX_NAMED 32u

typedef enum iob_metrics_plane {
    IOB_METRICS_RPC,    /* gRPC calls: iob_rpc_calls_total, iob_rpc_call_duration_seconds */
    IOB_METRICS_BROKER, /* map broker requests: iob_broker_requests_total, ..._seconds */
    IOB_METRICS_PLANES
} iob_metrics_plane_t;

typedef enum iob_metrics_refusal {
    IOB_METRICS_REFUSED_BROKER_CONNS,  /* broker connection caps (server-wide or per uid) */
    IOB_METRICS_REFUSED_BROKER_POLICY, /* broker peer not allowed (--allow-uid/gid) */
    IOB_METRICS_REFUSED_SESSION_CAP,   /* --max-sessions-per-uid */
    IOB_METRICS_REFUSED_AUTH,          /* TCP call without a valid bearer token */
    IOB_METRICS_REFUSALS
} iob_metrics_refusal_t;

/*
 * The method names of a plane, indexed as the adapter numbers its methods (names and the
 * array stay valid for the process's life). Methods at or past `count` (or
 * IOB_METRICS_MAX_METHODS) are counted as method="other".
 */
void iob_metrics_set_methods(iob_metrics_plane_t plane, const char* const* names, unsigned count);

/*
 * Counting happens only once enabled (iobd: when --metrics serves them), so an iobd without
 * the endpoint pays nothing for it; iob-bench-mediated measures one against the other in
 * the same run. Shared-region slots are taken either way.
 */
extern atomic_bool iob_metrics_on;
void iob_metrics_enable(bool on);

/* One call answered with `status` after `ns` nanoseconds. */
void iob_metrics_call(iob_metrics_plane_t plane, unsigned method, zx_status_t status, uint64_t ns);

void iob_metrics_refused(iob_metrics_refusal_t why);
void iob_metrics_tokens_expired(uint64_t n);

/* ---- Mediated writes, per shared region ---- */

typedef struct iob_metrics_region {
    _Atomic uint64_t records;  /* records appended */
    _Atomic uint64_t bytes;    /* payload bytes of those records */
    _Atomic uint64_t no_space; /* writes refused with ZX_ERR_NO_SPACE (ring full) */
    zx_koid_t koid;            /* 0: the slot is free (or the "other" slot) */
} iob_metrics_region_t;

/* How many shared regions get their own label (0..IOB_METRICS_MAX_NAMED_LIMIT). Set once,
 * before any shared region exists. */
void iob_metrics_set_max_named(uint32_t n);

/*
 * A slot for a new shared region: its own while fewer than max-named are alive, else the
 * shared "other" slot. Never NULL; released with iob_metrics_region_release when the
 * shared region goes (its counts then move to "other", so sums over the label only grow).
 */
iob_metrics_region_t* iob_metrics_region_acquire(zx_koid_t koid);
void iob_metrics_region_release(iob_metrics_region_t* slot);

/*
 * One mediated write into the shared region `slot` counts for: ZX_OK adds a record of
 * `bytes`, ZX_ERR_NO_SPACE a refusal, anything else nothing (those statuses are already in
 * the call counters). At most two relaxed atomic adds; callable from any thread while the
 * slot is held.
 */
static inline void iob_metrics_mediated_record(iob_metrics_region_t* slot, uint64_t bytes,
                                               zx_status_t status) {
    if (slot == NULL || !atomic_load_explicit(&iob_metrics_on, memory_order_relaxed)) {
        return;
    }
    if (status == ZX_OK) {
        atomic_fetch_add_explicit(&slot->records, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&slot->bytes, bytes, memory_order_relaxed);
    } else if (status == ZX_ERR_NO_SPACE) {
        atomic_fetch_add_explicit(&slot->no_space, 1, memory_order_relaxed);
    }
}

/*
 * Writes the whole exposition: the counters above, the core's figures (core may be NULL)
 * and the hugepage pools. Returns 0, or -1 when out failed.
 */
int iob_metrics_render(iob_core_t* core, FILE* out);

/* For tests: every counter back to zero and every slot free. */
void iob_metrics_reset(void);

#endif /* IOB_SERVER_CORE_IOB_METRICS_H_ */
