/* SPDX-License-Identifier: MIT */
/*
 * iob-bench's throughput phase: the plan (one row per size, transport, load, backing, mode
 * and wait), the order rows run in within a round, one trial (a producer and a consumer
 * process per trial) and each row's summary over its trials.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"

typedef struct config {
    bench_spec_t spec;
    bench_row_t* row;
    struct config* reference; /* run right before each trial of this one (bench_row_t) */
    double rate[16];
    double cpu[16];
    double waits[16];
    double wakes[16];
    int done;
} config_t;

/*
 * How long one trial of a size runs. Above 1 MiB trials last longer in proportion, so that
 * each carries about as many messages as a 1 MiB trial: at 4 MiB a 150 ms trial carried
 * some 200 messages, and two trials run back to back then differed by up to 25 %.
 */
static int64_t trial_ns(int64_t duration_ns, uint64_t msg_bytes) {
    uint64_t mib = UINT64_C(1) << 20;
    return msg_bytes <= mib ? duration_ns : duration_ns * (int64_t)(msg_bytes / mib);
}

/*
 * The order rows run in within a round. This host's speed changes from one second to the
 * next (a run's trials of one row can differ by 5x), so the rows a target compares run next
 * to each other: per backing and mode, bare-ring busy-poll, floor-ring, iob-ring busy-poll,
 * iob-ring blocking, bare-ring blocking. Every other row keeps its place after them.
 */
static uint64_t run_order_key(const config_t* c, size_t index) {
    const bench_transport_t* t = &bench_transports[c->spec.transport];
    if ((t->caps & BENCH_CAP_FLOOR) != 0) {
        return ((uint64_t)c->spec.backing << 16) | ((uint64_t)c->spec.mode << 8) | 1;
    }
    if ((t->caps & BENCH_CAP_RING) == 0) {
        return (UINT64_C(1) << 40) | index;
    }
    bool iob = (t->caps & BENCH_CAP_IOBD) != 0;
    bool block = c->spec.wait == BENCH_BLOCK;
    uint64_t slot = block ? (iob ? 3 : 4) : (iob ? 2 : 0);
    return ((uint64_t)c->spec.backing << 16) | ((uint64_t)c->spec.mode << 8) | slot;
}

static const config_t* g_order_cfgs;

static int run_order_cmp(const void* a, const void* b) {
    size_t i = *(const size_t*)a;
    size_t j = *(const size_t*)b;
    uint64_t ki = run_order_key(&g_order_cfgs[i], i);
    uint64_t kj = run_order_key(&g_order_cfgs[j], j);
    if (ki != kj) {
        return ki < kj ? -1 : 1;
    }
    return i < j ? -1 : (i > j);
}

static size_t* run_order(const config_t* cfgs, size_t n) {
    size_t* order = calloc(n == 0 ? 1 : n, sizeof(size_t));
    if (order == NULL) {
        fprintf(stderr, "iob-bench: ZX_ERR_NO_MEMORY: run order\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
    }
    g_order_cfgs = cfgs;
    qsort(order, n, sizeof(size_t), run_order_cmp);
    return order;
}

long bench_pool_2m(bool free_pages) {
    iob_hugepage_pool_t pool;
    if (iob_hugepage_pool_read(IOB_BACKING_2M, &pool) != ZX_OK) {
        return -1;
    }
    return (long)(free_pages ? pool.free : pool.total);
}

static void note_no_hugepages(bench_row_t* row) {
    snprintf(row->note, sizeof(row->note),
             "no free 2M hugepages (%ld free); as root, --reserve-hugepages", bench_pool_2m(true));
}

/*
 * Starts the trial's roles (the consumer first: it must be mapped and waiting before the
 * producer's clock starts), handing each its channel descriptors, then closes our copies.
 */
static void spawn_roles(const char* self, const config_t* c, bench_channel_t* ch, int nroles,
                        const int ready[2], int pids[2], int res[2]) {
    bool single = nroles == 1;
    char spec_text[256];
    bench_spec_format(&c->spec, spec_text, sizeof(spec_text));
    for (int k = nroles - 1; k >= 0; k--) {
        bench_role_t role = single ? BENCH_PRODUCER : (bench_role_t)k;
        int rp[2];
        if (pipe2(rp, O_CLOEXEC) != 0) {
            break;
        }
        char nfds[8];
        snprintf(nfds, sizeof(nfds), "%d", ch->nfds[role]);
        char self_copy[4096]; /* argv is not const in posix_spawn's signature */
        snprintf(self_copy, sizeof(self_copy), "%s", self);
        char* argv[] = {self_copy, "--role",  role == BENCH_PRODUCER ? "producer" : "consumer",
                        "--spec",  spec_text, "--nfds",
                        nfds,      "--arg",   ch->arg[role][0] ? ch->arg[role] : "-",
                        NULL};
        int ready_end = single ? -1 : (role == BENCH_PRODUCER ? ready[0] : ready[1]);
        pids[role] = bench_spawn(self, argv, ch->fds[role], ch->nfds[role], ready_end, rp[1]);
        close(rp[1]);
        res[role] = rp[0];
    }
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < BENCH_MAX_FDS; i++) {
            if (ch->fds[r][i] >= 0) {
                close(ch->fds[r][i]);
            }
        }
        if (ready[r] >= 0) {
            close(ready[r]);
        }
    }
}

/* Reads each role's result line into side; false (the row's note says why) when one failed. */
static bool collect_roles(config_t* c, int nroles, const int pids[2], const int res[2],
                          bench_side_result_t side[2]) {
    int64_t timeout = c->spec.duration_ns + INT64_C(60000000000);
    bool ok = true;
    for (int k = 0; k < nroles; k++) {
        char line[512] = "";
        zx_status_t st = res[k] >= 0 ? bench_collect(pids[k], res[k], timeout, line, sizeof(line))
                                     : ZX_ERR_BAD_STATE;
        char role_name[16];
        int okflag = 0;
        char err[160] = "";
        if (sscanf(line,
                   "%15s %" SCNd64 " %" SCNd64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                   " %d %159[^\n]",
                   role_name, &side[k].t_start, &side[k].t_end, &side[k].msgs, &side[k].cpu_ns,
                   &side[k].futex_waits, &side[k].futex_wakes, &okflag, err) < 8) {
            okflag = 0;
            snprintf(err, sizeof(err), "%.150s", line[0] ? line : "no result");
        }
        if (st != ZX_OK || okflag != 1) {
            ok = false;
            if (c->row->note[0] == '\0') {
                snprintf(c->row->note, sizeof(c->row->note), "%s: %.140s",
                         k == 0 ? "producer" : "consumer", err);
            }
        }
    }
    return ok;
}

/* Adds one trial's rate and per-message costs to c (a failed trial counts as rate 0). */
static void record_trial(config_t* c, bool single, bool ok, const bench_side_result_t side[2]) {
    double rate;
    uint64_t msgs;
    if (single) {
        msgs = side[0].msgs;
        rate = (double)msgs * 1e9 / (double)(side[0].t_end - side[0].t_start);
    } else {
        msgs = side[1].msgs;
        if (side[0].msgs != side[1].msgs) {
            ok = false;
        }
        rate = (double)msgs * 1e9 / (double)(side[1].t_end - side[0].t_start);
    }
    if (!ok || msgs == 0) {
        c->row->verified = false;
        rate = 0;
    }
    int d = c->done++;
    c->rate[d] = rate;
    double m = msgs > 0 ? (double)msgs : 1;
    c->cpu[d] = (double)(side[0].cpu_ns + side[1].cpu_ns) / m;
    c->waits[d] = (double)(side[0].futex_waits + side[1].futex_waits) / m;
    c->wakes[d] = (double)(side[0].futex_wakes + side[1].futex_wakes) / m;
}

/* Runs one trial; returns false when the measurement must be reported as skipped. */
static bool run_trial(const char* self, config_t* c) {
    const bench_transport_t* t = &bench_transports[c->spec.transport];
    bench_channel_t ch;
    char note[160] = "";
    zx_status_t st = t->prepare(&c->spec, &ch, note, sizeof(note));
    if (st != ZX_OK) {
        if (c->spec.backing == IOB_BACKING_2M && st == ZX_ERR_NO_MEMORY) {
            note_no_hugepages(c->row);
        } else {
            snprintf(c->row->note, sizeof(c->row->note), "%s", note);
        }
        c->row->skipped = true;
        return false;
    }
    bool single = (t->caps & BENCH_CAP_SINGLE) != 0;
    int nroles = single ? 1 : 2;
    int ready[2] = {-1, -1};
    if (!single && pipe2(ready, O_CLOEXEC) != 0) {
        c->row->skipped = true;
        snprintf(c->row->note, sizeof(c->row->note), "pipe: %s", strerror(errno));
        return false;
    }
    int pids[2] = {-1, -1};
    int res[2] = {-1, -1};
    spawn_roles(self, c, &ch, nroles, ready, pids, res);
    bench_side_result_t side[2];
    memset(side, 0, sizeof(side));
    bool ok = collect_roles(c, nroles, pids, res, side);
    t->discard(&ch);
    /*
     * A 2M ring whose creator is a child (iob-ring: iobd allocates at zx_iob_create) learns
     * that the hugepage pool ran dry only there; that is the same "no hugepages" as a
     * bare-ring prepare failing, so the row is skipped the same way, not failed.
     */
    if (!ok && c->spec.backing == IOB_BACKING_2M &&
        strstr(c->row->note, "open: ZX_ERR_NO_MEMORY") != NULL) {
        note_no_hugepages(c->row);
        c->row->skipped = true;
        return false;
    }
    record_trial(c, single, ok, side);
    return true;
}

static void finish_row(config_t* c) {
    bench_row_t* r = c->row;
    if (r->skipped || c->done == 0) {
        return;
    }
    bench_summarize(c->rate, c->done, &r->msgs_per_s);
    for (int i = 0; i < c->done && i < 16; i++) {
        r->trial_rates[i] = c->rate[i];
    }
    r->trial_count = c->done < 16 ? c->done : 16;
    /* A reference that missed a round would pair the wrong trials: then none is kept. */
    const config_t* ref = c->reference;
    if (ref != NULL && !ref->row->skipped && ref->done == c->done && ref->row->verified) {
        for (int i = 0; i < r->trial_count; i++) {
            r->reference_rates[i] = ref->rate[i];
        }
        r->reference_count = r->trial_count;
    }
    bench_summary_t s;
    bench_summarize(c->cpu, c->done, &s);
    r->cpu_ns_per_msg = s.median;
    bench_summarize(c->waits, c->done, &s);
    r->futex_waits_per_msg = s.median;
    bench_summarize(c->wakes, c->done, &s);
    r->futex_wakes_per_msg = s.median;
    r->payload_bytes_per_s = r->msgs_per_s.median * (double)r->msg_bytes;
}

static void progress(size_t done, size_t total, const config_t* c) {
    char size[32];
    snprintf(size, sizeof(size), "%" PRIu64, c->spec.msg_bytes);
    bool tty = isatty(STDERR_FILENO);
    if (tty) {
        fprintf(stderr, "\r\033[K[%zu/%zu] %s %s %s %s %s %s B", done, total, c->row->transport,
                bench_mode_name(c->spec.mode), c->row->backing, bench_wait_name(c->spec.wait),
                bench_load_name(c->spec.load), size);
    } else if (done == total || done % 50 == 0) {
        fprintf(stderr, "iob-bench: %zu/%zu trials\n", done, total);
    }
}

/* ---- the plan ---------------------------------------------------------------------------- */

/* Paced rows: only where pacing means something and is not measured twice. */
static bool load_wanted(const bench_options_t* o, const bench_transport_t* tr, int load) {
    if (load != BENCH_PACED) {
        return true;
    }
    uint32_t stream = BENCH_CAP_IOBD | BENCH_CAP_STREAM;
    if (!o->paced || (tr->caps & (BENCH_CAP_SINGLE | BENCH_CAP_FLOOR)) != 0 ||
        strcmp(tr->name, "tcp") == 0 || strcmp(tr->name, "pipe") == 0 ||
        (tr->caps & stream) == stream) {
        return false;
    }
    /* iob-ring paces with bare-ring's very code; the quick run (a smoke test under 30 s)
     * skips the duplicate rows and their per-trial iobd setup. */
    return !(o->quick && strcmp(tr->name, "iob-ring") == 0);
}

/* Backings other than 4K are for rings; zero-copy is for rings at full load. */
static bool shape_wanted(const bench_options_t* o, const bench_transport_t* tr, int load,
                         iob_backing_t backing, int mode) {
    bool ring = (tr->caps & BENCH_CAP_RING) != 0;
    if ((!ring && (tr->caps & BENCH_CAP_FLOOR) == 0 && backing != IOB_BACKING_4K) ||
        (backing == IOB_BACKING_2M && !o->two_meg)) {
        return false;
    }
    return mode != BENCH_ZEROCOPY || (ring && load != BENCH_PACED);
}

/* The wait of variant w (0 or 1) of a row; false when the transport has no such variant. */
static bool wait_variant(const bench_options_t* o, const bench_transport_t* tr, int w,
                         bench_wait_t* wait) {
    if ((tr->caps & BENCH_CAP_RING) == 0) {
        /* Kernel paths block; memcpy does not wait at all, the mediated reader polls its
         * mapping, the floor busy-polls. */
        bool spins = (tr->caps & (BENCH_CAP_SINGLE | BENCH_CAP_POLLED | BENCH_CAP_FLOOR)) != 0;
        *wait = spins ? BENCH_SPIN : BENCH_BLOCK;
        return w == 0;
    }
    *wait = (bench_wait_t)w;
    return *wait != BENCH_BLOCK || o->block;
}

static void plan_row(const bench_options_t* o, const config_t* shape, config_t* c, bench_row_t* r) {
    const bench_transport_t* tr = &bench_transports[shape->spec.transport];
    *c = *shape;
    c->row = r;
    c->spec.ring_bytes = bench_ring_bytes_for(c->spec.msg_bytes, c->spec.backing, o->ring_bytes);
    c->spec.batch = o->batch;
    c->spec.duration_ns = trial_ns(o->duration_ns, c->spec.msg_bytes);
    c->spec.cpu[0] = o->cpu[0];
    c->spec.cpu[1] = o->cpu[1];
    c->spec.verify = o->verify;
    r->transport = tr->name;
    r->mode = c->spec.mode;
    r->backing = iob_backing_name(c->spec.backing);
    r->wait = c->spec.wait;
    r->load = c->spec.load;
    r->msg_bytes = c->spec.msg_bytes;
    r->verified = true;
    r->verify = o->verify;
    if ((tr->caps & BENCH_CAP_IOBD) != 0 && (tr->caps & BENCH_CAP_STREAM) != 0) {
        /* Its region lives in whichever iobd serves it. */
        c->spec.backing = bench_iobd_stream_backing();
        r->backing = iob_backing_name(c->spec.backing);
    }
}

/* The measurement plan: full load first (trials interleaved per size), then paced. */
static size_t plan_rows(const bench_options_t* o, config_t* cfgs, bench_row_t* rows) {
    static const iob_backing_t backings[2] = {IOB_BACKING_2M, IOB_BACKING_4K};
    size_t n = 0;
    config_t shape;
    memset(&shape, 0, sizeof(shape));
    for (int si = 0; si < o->nsizes; si++) {
        shape.spec.msg_bytes = o->sizes[si];
        for (size_t t = 0; t < bench_transport_count; t++) {
            const bench_transport_t* tr = &bench_transports[t];
            shape.spec.transport = (int)t;
            for (int load = 0; load < 2 && o->transport_on[t]; load++) {
                shape.spec.load = (bench_load_t)load;
                for (int b = 0; b < 2 && load_wanted(o, tr, load); b++) {
                    shape.spec.backing = backings[b];
                    for (int mode = 0; mode < 2; mode++) {
                        shape.spec.mode = (bench_mode_t)mode;
                        for (int w = 0; w < 2 && shape_wanted(o, tr, load, backings[b], mode);
                             w++) {
                            if (wait_variant(o, tr, w, &shape.spec.wait)) {
                                plan_row(o, &shape, &cfgs[n], &rows[n]);
                                n++;
                            }
                        }
                    }
                }
            }
        }
    }
    return n;
}

/*
 * The zero-copy target compares iob-ring zero-copy at 32 B with bare-ring copy at 8 B,
 * two sizes that never share a round: bare-ring copy at 8 B is measured again right
 * before each trial of the 32 B zero-copy row, in its own hidden row.
 */
static void plan_references(const bench_options_t* o, config_t* cfgs, size_t nrows,
                            config_t ref_cfgs[2], bench_row_t ref_rows[2]) {
    size_t nrefs = 0;
    int bare = bench_transport_find("bare-ring");
    for (size_t i = 0; i < nrows && bare >= 0; i++) {
        config_t* c = &cfgs[i];
        if (strcmp(c->row->transport, "iob-ring") != 0 || c->spec.mode != BENCH_ZEROCOPY ||
            c->spec.wait != BENCH_SPIN || c->spec.load != BENCH_FULL || c->spec.msg_bytes != 32 ||
            nrefs == 2) {
            continue;
        }
        config_t* ref = &ref_cfgs[nrefs];
        ref->row = &ref_rows[nrefs++];
        ref->spec = c->spec;
        ref->spec.transport = bare;
        ref->spec.mode = BENCH_COPY;
        ref->spec.msg_bytes = 8;
        ref->spec.ring_bytes = bench_ring_bytes_for(8, c->spec.backing, o->ring_bytes);
        ref->row->transport = "bare-ring";
        ref->row->verified = true;
        ref->row->verify = o->verify;
        c->reference = ref;
        c->row->reference = "bare-ring copy spin 8 B, run right before each trial";
    }
}

/* Paced rows of a size offer 10 % of the same path's busy-poll rate at full load, just measured. */
static void set_pace_rates(config_t* cfgs, size_t nrows, uint64_t size) {
    for (size_t i = 0; i < nrows; i++) {
        config_t* c = &cfgs[i];
        if (c->spec.msg_bytes != size || c->spec.load != BENCH_PACED) {
            continue;
        }
        double ref = 0;
        for (size_t j = 0; j < nrows; j++) {
            config_t* f = &cfgs[j];
            if (f->spec.msg_bytes == c->spec.msg_bytes && f->spec.load == BENCH_FULL &&
                f->spec.transport == c->spec.transport && f->spec.backing == c->spec.backing &&
                f->spec.mode == c->spec.mode &&
                (f->spec.wait == BENCH_SPIN ||
                 (bench_transports[f->spec.transport].caps & BENCH_CAP_RING) == 0) &&
                !f->row->skipped) {
                ref = f->row->msgs_per_s.median;
            }
        }
        c->spec.pace_rate = ref * 0.10;
        if (ref <= 0) {
            c->row->skipped = true;
            snprintf(c->row->note, sizeof(c->row->note), "no busy-poll reference");
        } else {
            snprintf(c->row->note, sizeof(c->row->note), "offered %.0f msg/s", c->spec.pace_rate);
        }
    }
}

/* Per size and load: o->trials rounds of every row (in run order), then the rows' summaries. */
static void run_rounds(const bench_options_t* o, const char* self, config_t* cfgs, size_t nrows) {
    size_t* order = run_order(cfgs, nrows);
    size_t total = nrows * (size_t)o->trials;
    size_t done = 0;
    for (int si = 0; si < o->nsizes; si++) {
        for (int load = 0; load < 2; load++) {
            if (load == BENCH_PACED) {
                set_pace_rates(cfgs, nrows, o->sizes[si]);
            }
            for (int trial = 0; trial < o->trials; trial++) {
                for (size_t k = 0; k < nrows; k++) {
                    config_t* c = &cfgs[order[k]];
                    if (c->spec.msg_bytes != o->sizes[si] || (int)c->spec.load != load) {
                        continue;
                    }
                    if (!c->row->skipped) {
                        if (c->reference != NULL && !c->reference->row->skipped) {
                            run_trial(self, c->reference);
                        }
                        run_trial(self, c);
                    }
                    done++;
                    progress(done, total, c);
                }
            }
            for (size_t i = 0; i < nrows; i++) {
                if (cfgs[i].spec.msg_bytes == o->sizes[si] && (int)cfgs[i].spec.load == load) {
                    finish_row(&cfgs[i]);
                }
            }
        }
    }
    free(order);
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r\033[K");
    }
}

bench_row_t* bench_throughput_run(const bench_options_t* o, const char* self, size_t* nrows) {
    size_t max_rows = (size_t)o->nsizes * 64;
    bench_row_t* rows = calloc(max_rows, sizeof(bench_row_t));
    config_t* cfgs = calloc(max_rows, sizeof(config_t));
    if (rows == NULL || cfgs == NULL) {
        free(rows);
        free(cfgs);
        return NULL;
    }
    *nrows = plan_rows(o, cfgs, rows);
    bench_row_t ref_rows[2];
    config_t ref_cfgs[2];
    memset(ref_rows, 0, sizeof ref_rows);
    memset(ref_cfgs, 0, sizeof ref_cfgs);
    plan_references(o, cfgs, *nrows, ref_cfgs, ref_rows);
    run_rounds(o, self, cfgs, *nrows);
    free(cfgs);
    return rows;
}
