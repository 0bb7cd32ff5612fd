/* SPDX-License-Identifier: MIT */
/* iobd's counters and their Prometheus exposition (see iob_metrics.h). */
#include "server/core/iob_metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <zircon/status.h>

#include "server/core/iob_core.h"
#include "shm/region.h"

/* Zircon's statuses are 0 and -1 .. -(SLOTS - 2); the last slot is everything else. */
#define IOB__STATUS_SLOTS 64
#define IOB__OTHER_STATUS (IOB__STATUS_SLOTS - 1)

/* Upper bounds of the latency buckets, in nanoseconds (10 us .. 1 s); +Inf follows. */
static const uint64_t iob__bucket_ns[] = {
    10000,   25000,    50000,    100000,   250000,    500000,    1000000,   2500000,
    5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 500000000, 1000000000,
};
static const char* const iob__bucket_le[] = {
    "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
    "0.005", "0.01",    "0.025", "0.05",   "0.1",     "0.25",   "0.5",   "1",
};
#define IOB__BUCKETS (sizeof iob__bucket_ns / sizeof iob__bucket_ns[0])

typedef struct iob__plane {
    const char* const* names;
    unsigned name_count;
    /* Method IOB_METRICS_MAX_METHODS is "other". */
    _Atomic uint64_t calls[IOB_METRICS_MAX_METHODS + 1][IOB__STATUS_SLOTS];
    _Atomic uint64_t buckets[IOB_METRICS_MAX_METHODS + 1][IOB__BUCKETS + 1];
    _Atomic uint64_t sum_ns[IOB_METRICS_MAX_METHODS + 1];
} iob__plane_t;

static iob__plane_t iob__planes[IOB_METRICS_PLANES];
static _Atomic uint64_t iob__refusals[IOB_METRICS_REFUSALS];
static _Atomic uint64_t iob__token_expiries;

/* Slots of named shared regions; the lock guards acquire, release and the scrape's walk. */
static pthread_mutex_t iob__slots_lock = PTHREAD_MUTEX_INITIALIZER;
static iob_metrics_region_t iob__slots[IOB_METRICS_MAX_NAMED_LIMIT];
static iob_metrics_region_t iob__other_slot;
static uint32_t iob__max_named = IOB_METRICS_DEFAULT_MAX_NAMED;

static const char* const iob__plane_metric[IOB_METRICS_PLANES] = {"iob_rpc_call",
                                                                  "iob_broker_request"};
static const char* const iob__plane_what[IOB_METRICS_PLANES] = {"gRPC calls",
                                                                "map broker requests"};
static const char* const iob__refusal_names[IOB_METRICS_REFUSALS] = {
    "broker_connections", "broker_policy", "session_cap", "auth"};

atomic_bool iob_metrics_on;

void iob_metrics_enable(bool on) {
    atomic_store_explicit(&iob_metrics_on, on, memory_order_relaxed);
}

void iob_metrics_set_methods(iob_metrics_plane_t plane, const char* const* names, unsigned count) {
    if ((unsigned)plane >= IOB_METRICS_PLANES) {
        return;
    }
    iob__planes[plane].names = names;
    iob__planes[plane].name_count = count;
}

void iob_metrics_call(iob_metrics_plane_t plane, unsigned method, zx_status_t status, uint64_t ns) {
    if ((unsigned)plane >= IOB_METRICS_PLANES ||
        !atomic_load_explicit(&iob_metrics_on, memory_order_relaxed)) {
        return;
    }
    iob__plane_t* p = &iob__planes[plane];
    if (method >= IOB_METRICS_MAX_METHODS) {
        method = IOB_METRICS_MAX_METHODS;
    }
    unsigned s = status <= 0 && status > -IOB__OTHER_STATUS ? (unsigned)-status : IOB__OTHER_STATUS;
    size_t b = 0;
    while (b < IOB__BUCKETS && ns > iob__bucket_ns[b]) {
        b++;
    }
    atomic_fetch_add_explicit(&p->calls[method][s], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->buckets[method][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->sum_ns[method], ns, memory_order_relaxed);
}

void iob_metrics_refused(iob_metrics_refusal_t why) {
    if ((unsigned)why < IOB_METRICS_REFUSALS &&
        atomic_load_explicit(&iob_metrics_on, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&iob__refusals[why], 1, memory_order_relaxed);
    }
}

void iob_metrics_tokens_expired(uint64_t n) {
    if (!atomic_load_explicit(&iob_metrics_on, memory_order_relaxed)) {
        return;
    }
    atomic_fetch_add_explicit(&iob__token_expiries, n, memory_order_relaxed);
}

void iob_metrics_set_max_named(uint32_t n) {
    pthread_mutex_lock(&iob__slots_lock);
    iob__max_named = n > IOB_METRICS_MAX_NAMED_LIMIT ? IOB_METRICS_MAX_NAMED_LIMIT : n;
    pthread_mutex_unlock(&iob__slots_lock);
}

iob_metrics_region_t* iob_metrics_region_acquire(zx_koid_t koid) {
    iob_metrics_region_t* slot = &iob__other_slot;
    pthread_mutex_lock(&iob__slots_lock);
    for (uint32_t i = 0; i < iob__max_named && koid != 0; i++) {
        if (iob__slots[i].koid == 0) {
            slot = &iob__slots[i];
            slot->koid = koid;
            break;
        }
    }
    pthread_mutex_unlock(&iob__slots_lock);
    return slot;
}

static void iob__move_counts(iob_metrics_region_t* from, iob_metrics_region_t* to) {
    _Atomic uint64_t* f[3] = {&from->records, &from->bytes, &from->no_space};
    _Atomic uint64_t* t[3] = {&to->records, &to->bytes, &to->no_space};
    for (int i = 0; i < 3; i++) {
        atomic_fetch_add_explicit(t[i], atomic_exchange_explicit(f[i], 0, memory_order_relaxed),
                                  memory_order_relaxed);
    }
}

void iob_metrics_region_release(iob_metrics_region_t* slot) {
    if (slot == NULL || slot == &iob__other_slot) {
        return;
    }
    pthread_mutex_lock(&iob__slots_lock);
    iob__move_counts(slot, &iob__other_slot);
    slot->koid = 0;
    pthread_mutex_unlock(&iob__slots_lock);
}

void iob_metrics_reset(void) {
    pthread_mutex_lock(&iob__slots_lock);
    for (int p = 0; p < IOB_METRICS_PLANES; p++) {
        const char* const* names = iob__planes[p].names;
        unsigned count = iob__planes[p].name_count;
        memset(&iob__planes[p], 0, sizeof iob__planes[p]);
        iob__planes[p].names = names;
        iob__planes[p].name_count = count;
    }
    memset(iob__refusals, 0, sizeof iob__refusals);
    atomic_store(&iob__token_expiries, 0);
    memset(iob__slots, 0, sizeof iob__slots);
    memset(&iob__other_slot, 0, sizeof iob__other_slot);
    pthread_mutex_unlock(&iob__slots_lock);
}

/* ---- Exposition ---- */

static uint64_t iob__ld(_Atomic uint64_t* v) {
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void iob__head(FILE* out, const char* name, const char* type, const char* help) {
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void iob__gauge(FILE* out, const char* name, const char* help, uint64_t v) {
    iob__head(out, name, "gauge", help);
    fprintf(out, "%s %" PRIu64 "\n", name, v);
}

static const char* iob__method_name(const iob__plane_t* p, unsigned m) {
    return m < p->name_count && m < IOB_METRICS_MAX_METHODS && p->names[m] != NULL ? p->names[m]
                                                                                   : "other";
}

static void iob__render_plane(FILE* out, iob_metrics_plane_t plane) {
    iob__plane_t* p = &iob__planes[plane];
    const char* base = iob__plane_metric[plane];
    char name[96], help[160];
    /* Counter names are the plane's noun in the plural ("iob_rpc_calls_total"). */
    snprintf(name, sizeof name, "%ss_total", base);
    snprintf(help, sizeof help, "%s answered, by method and Zircon status", iob__plane_what[plane]);
    iob__head(out, name, "counter", help);
    for (unsigned m = 0; m <= IOB_METRICS_MAX_METHODS; m++) {
        for (unsigned s = 0; s < IOB__STATUS_SLOTS; s++) {
            uint64_t v = iob__ld(&p->calls[m][s]);
            if (v == 0) {
                continue;
            }
            const char* st = s == IOB__OTHER_STATUS ? "other" : zx_status_get_string(-(int)s);
            fprintf(out, "%s{method=\"%s\",status=\"%s\"} %" PRIu64 "\n", name,
                    iob__method_name(p, m), st, v);
        }
    }
    snprintf(name, sizeof name, "%s_duration_seconds", base);
    snprintf(help, sizeof help, "time from the arrival of %s to their answer",
             iob__plane_what[plane]);
    iob__head(out, name, "histogram", help);
    for (unsigned m = 0; m <= IOB_METRICS_MAX_METHODS; m++) {
        uint64_t counts[IOB__BUCKETS + 1];
        uint64_t total = 0;
        for (size_t b = 0; b <= IOB__BUCKETS; b++) {
            counts[b] = iob__ld(&p->buckets[m][b]);
            total += counts[b];
        }
        if (total == 0) {
            continue;
        }
        const char* mn = iob__method_name(p, m);
        uint64_t cum = 0;
        for (size_t b = 0; b < IOB__BUCKETS; b++) {
            cum += counts[b];
            fprintf(out, "%s_bucket{method=\"%s\",le=\"%s\"} %" PRIu64 "\n", name, mn,
                    iob__bucket_le[b], cum);
        }
        fprintf(out, "%s_bucket{method=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name, mn, total);
        uint64_t sum = iob__ld(&p->sum_ns[m]);
        fprintf(out, "%s_sum{method=\"%s\"} %" PRIu64 ".%09" PRIu64 "\n", name, mn,
                sum / 1000000000u, sum % 1000000000u);
        fprintf(out, "%s_count{method=\"%s\"} %" PRIu64 "\n", name, mn, total);
    }
}

static void iob__render_regions(FILE* out) {
    static const char records_help[] =
        "records appended to mediated-write ring buffers, by shared region (koid; \"other\": "
        "past --metrics-max-named, or freed)";
    static const char* const names[3] = {"iob_mediated_records_total", "iob_mediated_bytes_total",
                                         "iob_mediated_no_space_total"};
    static const char* const helps[3] = {
        records_help, "payload bytes of those records, by shared region",
        "mediated writes refused with ZX_ERR_NO_SPACE (ring full), by shared region"};
    pthread_mutex_lock(&iob__slots_lock);
    for (int k = 0; k < 3; k++) {
        iob__head(out, names[k], "counter", helps[k]);
        for (uint32_t i = 0; i <= iob__max_named; i++) {
            iob_metrics_region_t* r = i < iob__max_named ? &iob__slots[i] : &iob__other_slot;
            if (r != &iob__other_slot && r->koid == 0) {
                continue;
            }
            _Atomic uint64_t* v = k == 0 ? &r->records : k == 1 ? &r->bytes : &r->no_space;
            if (r == &iob__other_slot) {
                fprintf(out, "%s{shared_region=\"other\"} %" PRIu64 "\n", names[k], iob__ld(v));
            } else {
                fprintf(out, "%s{shared_region=\"%" PRIu64 "\"} %" PRIu64 "\n", names[k], r->koid,
                        iob__ld(v));
            }
        }
    }
    pthread_mutex_unlock(&iob__slots_lock);
}

/* A limit: UINT64_MAX ("none") is +Inf, as Prometheus spells it. */
static void iob__limit(FILE* out, const char* name, const char* labels, uint64_t v) {
    if (v == UINT64_MAX) {
        fprintf(out, "%s{%s} +Inf\n", name, labels);
    } else {
        fprintf(out, "%s{%s} %" PRIu64 "\n", name, labels, v);
    }
}

static void iob__render_core(FILE* out, iob_core_t* core) {
    iob_core_stats_t st;
    iob_core_get_stats(core, &st); /* the core's lock is held for this copy only */
    uint64_t page = iob_core_page_size(core);
    iob__gauge(out, "iob_iobs", "live IOBs", st.iobs);
    iob__gauge(out, "iob_shared_regions", "live shared-region objects", st.shared_regions);
    iob__gauge(out, "iob_regions", "regions of live IOBs", st.regions);
    iob__head(out, "iob_bytes_in_use", "gauge",
              "bytes of region memory held (IOBs' private regions and shared regions), by "
              "backing page size");
    static const iob_backing_t backings[3] = {IOB_BACKING_4K, IOB_BACKING_2M, IOB_BACKING_1G};
    for (int i = 0; i < 3; i++) {
        fprintf(out, "iob_bytes_in_use{backing=\"%s\"} %" PRIu64 "\n",
                iob_backing_name(backings[i]),
                iob_backing_page_size(backings[i]) == page ? st.bytes_in_use : 0);
    }
    iob__gauge(out, "iob_sessions", "open client sessions", st.sessions);
    iob__gauge(out, "iob_handles", "open handles (an exported token is in iob_tokens instead)",
               st.handles);
    iob__gauge(out, "iob_tokens", "exported transfer tokens not yet imported or expired",
               st.tokens);
    iob__gauge(out, "iob_mappings", "live mapping records", st.mappings);
    iob__gauge(out, "iob_uids", "uids with a session or a charge", st.uids);
    iob__gauge(out, "iob_uid_max_bytes", "the most region bytes any one uid has charged",
               st.uid_max_bytes);
    iob__head(out, "iob_budget_limit", "gauge",
              "effective budgets (+Inf: none); scope server, session or uid");
    iob__limit(out, "iob_budget_limit", "scope=\"server\",resource=\"bytes\"", st.max_total_bytes);
    const iob_core_amounts_t* sets[2] = {&st.per_session, &st.per_uid};
    const char* scopes[2] = {"session", "uid"};
    for (int i = 0; i < 2; i++) {
        const char* res[5] = {"bytes", "iobs", "handles", "tokens", "mappings"};
        uint64_t v[5] = {sets[i]->bytes, sets[i]->iobs, sets[i]->handles, sets[i]->tokens,
                         sets[i]->mappings};
        for (int r = 0; r < 5; r++) {
            char labels[64];
            snprintf(labels, sizeof labels, "scope=\"%s\",resource=\"%s\"", scopes[i], res[r]);
            iob__limit(out, "iob_budget_limit", labels, v[r]);
        }
    }
    iob__head(out, "iob_budget_used", "gauge",
              "server-wide use of the budgeted resources (compare with iob_budget_limit)");
    fprintf(out, "iob_budget_used{scope=\"server\",resource=\"bytes\"} %" PRIu64 "\n",
            st.bytes_in_use);
}

static void iob__render_pools(FILE* out) {
    iob__head(out, "iob_hugepages", "gauge",
              "the kernel's hugepage pools (/sys/kernel/mm/hugepages), pages by state");
    static const iob_backing_t backings[2] = {IOB_BACKING_2M, IOB_BACKING_1G};
    for (int i = 0; i < 2; i++) {
        iob_hugepage_pool_t pool = {0, 0};
        if (iob_hugepage_pool_read(backings[i], &pool) != ZX_OK) {
            continue;
        }
        const char* b = iob_backing_name(backings[i]);
        fprintf(out, "iob_hugepages{size=\"%s\",state=\"total\"} %" PRIu64 "\n", b, pool.total);
        fprintf(out, "iob_hugepages{size=\"%s\",state=\"free\"} %" PRIu64 "\n", b, pool.free);
    }
}

int iob_metrics_render(iob_core_t* core, FILE* out) {
    if (core != NULL) {
        iob__render_core(out, core);
    }
    iob__render_pools(out);
    for (int p = 0; p < IOB_METRICS_PLANES; p++) {
        iob__render_plane(out, (iob_metrics_plane_t)p);
    }
    iob__render_regions(out);
    iob__head(out, "iob_token_expiries_total", "counter",
              "transfer tokens dropped because their time-to-live passed");
    fprintf(out, "iob_token_expiries_total %" PRIu64 "\n", iob__ld(&iob__token_expiries));
    iob__head(out, "iob_refused_connections_total", "counter",
              "connections and calls refused before any work, by reason");
    for (int i = 0; i < IOB_METRICS_REFUSALS; i++) {
        fprintf(out, "iob_refused_connections_total{reason=\"%s\"} %" PRIu64 "\n",
                iob__refusal_names[i], iob__ld(&iob__refusals[i]));
    }
    return ferror(out) ? -1 : 0;
}
