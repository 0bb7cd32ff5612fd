/* SPDX-License-Identifier: MIT */
/*
 * The iobd servers behind the iob-ring and grpc rows. Orchestrator only; the children get
 * a server's gRPC target as their channel argument (bench_iob_ring.c, bench_grpc.c).
 *
 * Without IOB_SERVER the bench measures each backing against a private iobd it starts
 * itself: `iobd --hugepages=off` for 4K and `iobd --hugepages=2M` for 2M (the latter only
 * when the 2 MiB pool has free pages; --reserve-hugepages grows it first). Each listens on
 * a socket in a temporary directory of its own, because iobd puts its map broker's socket
 * next to the first Unix socket and two servers must not share it. Both servers run for
 * the whole throughput phase rather than one after the other, so that iob-ring trials stay
 * interleaved with the bare-ring trials of the same size like every other row (an idle
 * iobd sleeps in epoll). They are stopped with SIGTERM afterwards and must exit 0: a
 * server that crashes, hangs on shutdown or (in a sanitizer build) leaks fails the run.
 *
 * The iobd binary: $IOBD, else the one of this build tree (IOB_BENCH_IOBD, set by CMake).
 *
 * With IOB_SERVER set the bench starts nothing: it asks that server for its backing
 * (ServerInfo) and measures only that one; the other backing's iob-ring rows are skipped
 * with a note. A remote server (no map broker) can carry the grpc rows but no iob-ring.
 *
 * The orchestrator speaks gRPC once at most: one short ServerInfo call, with IOB_SERVER
 * only. That is safe for its later posix_spawn calls, which run no user-space code in the
 * child before exec; the children open their own connections.
 *
 * Also here, because they are the executable's side of the iobd rows: prepare (shared by
 * iob-ring and grpc, no gRPC), and the loader of the iob-bench-iob module with the
 * forwarders the transport table points to (why a module: bench.h).
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/testkit/iobd_launch.h"

#ifndef IOB_BENCH_IOBD
#define IOB_BENCH_IOBD "iobd"
#endif
#ifndef IOB_BENCH_MODULE
#define IOB_BENCH_MODULE "iob-bench-iob.so"
#endif

#define BENCH_IOBD_BACKINGS 3 /* indexed by iob_backing_t */
#define BENCH_IOBD_START_MS 20000 /* sanitizer builds start slowly */
#define BENCH_IOBD_STOP_MS 20000

typedef struct bench_iobd {
    bool ready;          /* target serves this backing */
    bool mappable;       /* local server with a map broker: iob-ring can run */
    iob_tk_iobd_t proc;  /* ours; proc.pid 0 for IOB_SERVER's */
    zx_status_t status;  /* why not ready: NO_MEMORY reads as "no hugepages" in the report */
    char target[112];
    char note[160];
} bench_iobd_t;

static bench_iobd_t g_iobd[BENCH_IOBD_BACKINGS];
static const bench_iob_module_t* g_module;
static int64_t g_hugepages_before = -1; /* free 2M pages when this 2M trial was prepared */
static bool g_iobd_started;
static iob_backing_t g_stream_backing = IOB_BACKING_4K;

/*
 * The module: the one of this build tree (IOB_BENCH_MODULE, set by CMake), else the one
 * next to this executable. Loaded once per process, by the processes that need it.
 */
static const bench_iob_module_t* load_module(char* note, size_t note_len) {
    if (g_module != NULL) {
        return g_module;
    }
    void* h = dlopen(IOB_BENCH_MODULE, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        char path[4096];
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
        if (n > 0) {
            path[n] = '\0';
            char* slash = strrchr(path, '/');
            if (slash != NULL && (size_t)(slash - path) + 20 < sizeof(path)) {
                strcpy(slash + 1, "iob-bench-iob.so");
                h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            }
        }
    }
    if (h == NULL) {
        snprintf(note, note_len, "cannot load the iob module: %.120s", dlerror());
        return NULL;
    }
    g_module = dlsym(h, BENCH_IOB_MODULE_SYMBOL);
    if (g_module == NULL) {
        snprintf(note, note_len, "iob module without %s", BENCH_IOB_MODULE_SYMBOL);
    }
    return g_module;
}

__attribute__((format(printf, 3, 4))) static void iobd_unavailable(iob_backing_t b,
                                                                   zx_status_t st,
                                                                   const char* fmt, ...) {
    g_iobd[b].ready = false;
    g_iobd[b].status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_iobd[b].note, sizeof(g_iobd[b].note), fmt, ap);
    va_end(ap);
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void start_private(const char* iobd, iob_backing_t b) {
    bench_iobd_t* s = &g_iobd[b];
    /* --exit-with-parent: a bench that is killed takes its private servers with it. */
    iob_tk_iobd_config_t config = {.binary = iobd,
                                   .hugepages = b == IOB_BACKING_4K ? "off" : "2M",
                                   .log_level = "info",
                                   .log_file = true,
                                   .exit_with_parent = true,
                                   .start_timeout_ms = BENCH_IOBD_START_MS};
    char err[200];
    if (!iob_tk_iobd_start(&s->proc, &config, err, sizeof(err))) {
        iobd_unavailable(b, ZX_ERR_NOT_SUPPORTED, "iobd did not start: %.130s", err);
        fprintf(stderr, "iob-bench: iobd --hugepages=%s: %s\n", config.hugepages, err);
        return;
    }
    _Static_assert(sizeof(s->target) == sizeof(s->proc.target), "the same target text");
    memcpy(s->target, s->proc.target, sizeof(s->target));
    s->ready = true;
    s->mappable = true;
}

static void probe_external(const char* target) {
    char note[160] = "";
    const bench_iob_module_t* m = load_module(note, sizeof(note));
    char name[8] = "";
    bool mappable = false;
    zx_status_t st = m != NULL ? m->server_info(target, name, &mappable) : ZX_ERR_NOT_SUPPORTED;
    iob_backing_t served = IOB_BACKING_4K;
    if (st == ZX_OK) {
        st = iob_backing_parse(name, &served);
    }
    if (st != ZX_OK) {
        for (int b = 0; b < BENCH_IOBD_BACKINGS; b++) {
            iobd_unavailable((iob_backing_t)b, ZX_ERR_NOT_SUPPORTED, "IOB_SERVER: %s",
                             m != NULL ? zx_status_get_string(st) : note);
        }
        return;
    }
    for (int b = 0; b < BENCH_IOBD_BACKINGS; b++) {
        iobd_unavailable((iob_backing_t)b, ZX_ERR_NOT_SUPPORTED,
                         "IOB_SERVER serves %s pages only", name);
    }
    bench_iobd_t* s = &g_iobd[served];
    s->ready = true;
    s->mappable = mappable;
    snprintf(s->target, sizeof(s->target), "%s", target);
    if (!mappable) {
        snprintf(s->note, sizeof(s->note), "IOB_SERVER is remote: no mapping");
    }
    g_stream_backing = served;
}

void bench_iobd_start(bool two_meg, char* summary, size_t len) {
    g_iobd_started = true;
    memset(g_iobd, 0, sizeof(g_iobd));
    for (int b = 0; b < BENCH_IOBD_BACKINGS; b++) {
        iobd_unavailable((iob_backing_t)b, ZX_ERR_NOT_SUPPORTED, "%s", "backing not measured");
    }
    const char* external = getenv("IOB_SERVER");
    if (external != NULL && external[0] != '\0') {
        probe_external(external);
        bool up = g_iobd[g_stream_backing].ready;
        snprintf(summary, len, "iobd: IOB_SERVER %.100s (%s)", external,
                 up ? iob_backing_name(g_stream_backing) : "not usable");
        return;
    }
    const char* iobd = getenv("IOBD");
    if (iobd == NULL || iobd[0] == '\0') {
        iobd = IOB_BENCH_IOBD;
    }
    start_private(iobd, IOB_BACKING_4K);
    if (two_meg) {
        iob_hugepage_pool_t pool = {0, 0};
        if (iob_hugepage_pool_read(IOB_BACKING_2M, &pool) != ZX_OK || pool.free == 0) {
            /* The report turns NO_MEMORY on a 2M row into its "no free hugepages" note. */
            iobd_unavailable(IOB_BACKING_2M, ZX_ERR_NO_MEMORY, "%s", "no free 2M hugepages");
        } else {
            start_private(iobd, IOB_BACKING_2M);
        }
    }
    snprintf(summary, len, "iobd: private, 4K %s, 2M %s",
             g_iobd[IOB_BACKING_4K].ready ? "up" : "down",
             g_iobd[IOB_BACKING_2M].ready ? "up" : "not started");
}

const char* bench_iobd_target(iob_backing_t backing, bool need_mapping, zx_status_t* st,
                              char* note, size_t note_len) {
    if ((int)backing < 0 || (int)backing >= BENCH_IOBD_BACKINGS || !g_iobd_started) {
        *st = ZX_ERR_NOT_SUPPORTED;
        snprintf(note, note_len, "no iobd for this backing");
        return NULL;
    }
    bench_iobd_t* s = &g_iobd[backing];
    if (!s->ready || (need_mapping && !s->mappable)) {
        *st = s->ready ? ZX_ERR_NOT_SUPPORTED : s->status;
        snprintf(note, note_len, "%s", s->note);
        return NULL;
    }
    *st = ZX_OK;
    return s->target;
}

iob_backing_t bench_iobd_stream_backing(void) {
    return g_stream_backing;
}

void bench_iobd_kill(void) {
    for (int b = 0; b < BENCH_IOBD_BACKINGS; b++) {
        if (g_iobd[b].proc.pid > 0) {
            kill(g_iobd[b].proc.pid, SIGTERM);
        }
    }
}

int bench_iobd_stop(void) {
    int failed = 0;
    for (int b = 0; b < BENCH_IOBD_BACKINGS; b++) {
        bench_iobd_t* s = &g_iobd[b];
        bool ours = s->proc.pid > 0;
        char why[160];
        s->ready = false;
        if (!iob_tk_iobd_stop(&s->proc, BENCH_IOBD_STOP_MS, why, sizeof(why)) && ours) {
            fprintf(stderr, "iob-bench: iobd (%s): %s\n", iob_backing_name((iob_backing_t)b), why);
            failed = 1;
        }
    }
    return failed;
}

/* ---- the transport table's iob-ring and grpc entries ------------------------------------- */

/*
 * prepare, both transports (orchestrator, once per trial, no gRPC): the iobd that serves
 * the row's backing goes into both roles' argument, and the roles get the two ends of a
 * Unix socketpair (fds[role][0]), over which the producer hands the consumer its endpoint
 * token (and, for grpc, the per-message notifications).
 */
static zx_status_t iobd_channel(const bench_spec_t* spec, bool need_mapping, bench_channel_t* ch,
                                char* note, size_t note_len) {
    memset(ch, 0, sizeof(*ch));
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < BENCH_MAX_FDS; i++) {
            ch->fds[r][i] = -1;
        }
    }
    zx_status_t st;
    const char* target = bench_iobd_target(spec->backing, need_mapping, &st, note, note_len);
    if (target == NULL) {
        return st;
    }
    int64_t before = -1;
    /* bare-ring's prepare finds an empty pool by allocating; iobd allocates in the child,
     * so look first and skip the trial as bare-ring would (ctrl page + data pages). */
    if (spec->backing == IOB_BACKING_2M) {
        iob_hugepage_pool_t pool = {0, 0};
        uint64_t need = 1 + spec->ring_bytes / iob_backing_page_size(IOB_BACKING_2M);
        if (iob_hugepage_pool_read(IOB_BACKING_2M, &pool) == ZX_OK && pool.free < need) {
            snprintf(note, note_len, "no free 2M hugepages");
            return ZX_ERR_NO_MEMORY;
        }
        before = (int64_t)pool.free;
    }
    if (strlen(target) >= sizeof(ch->arg[0])) {
        snprintf(note, note_len, "iobd target longer than %zu bytes", sizeof(ch->arg[0]) - 1);
        return ZX_ERR_NOT_SUPPORTED;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(note, note_len, "socketpair: %s", strerror(errno));
        return ZX_ERR_NO_RESOURCES;
    }
    ch->fds[BENCH_PRODUCER][0] = sv[0];
    ch->fds[BENCH_CONSUMER][0] = sv[1];
    ch->nfds[BENCH_PRODUCER] = ch->nfds[BENCH_CONSUMER] = 1;
    for (int r = 0; r < 2; r++) {
        snprintf(ch->arg[r], sizeof(ch->arg[r]), "%s", target);
    }
    g_hugepages_before = before;
    return ZX_OK;
}

/* A child that cannot load the module says why on stderr: open has no note to fill. */
static const bench_iob_module_t* child_module(void) {
    char note[160] = "";
    const bench_iob_module_t* m = load_module(note, sizeof(note));
    if (m == NULL) {
        fprintf(stderr, "iob-bench: %s\n", note);
    }
    return m;
}

zx_status_t bench_iob_ring_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                   size_t note_len) {
    return iobd_channel(spec, true, ch, note, note_len);
}

/*
 * After a 2M trial, iobd frees the IOB's hugepages once it has seen both sessions end,
 * a little after the children exited. Waiting for the pool to come back here keeps the
 * next 2M trial (of any ring) from finding it empty because of this one.
 */
static void hugepages_settle(void) {
    if (g_hugepages_before < 0) {
        return;
    }
    int64_t deadline = bench_now_ns() + INT64_C(2000000000);
    iob_hugepage_pool_t pool = {0, 0};
    while (iob_hugepage_pool_read(IOB_BACKING_2M, &pool) == ZX_OK &&
           (int64_t)pool.free < g_hugepages_before && bench_now_ns() < deadline) {
        sleep_ms(1);
    }
    g_hugepages_before = -1;
}

void bench_iob_ring_discard(bench_channel_t* ch) {
    (void)ch;
    hugepages_settle();
}

zx_status_t bench_iob_ring_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                const char* arg, bench_endpoint_t* ep) {
    const bench_iob_module_t* m = child_module();
    return m != NULL ? m->ring_open(spec, role, nfds, arg, ep) : ZX_ERR_NOT_SUPPORTED;
}

void bench_iob_ring_close(bench_endpoint_t* ep) {
    if (g_module != NULL) {
        g_module->ring_close(ep);
    }
}

zx_status_t bench_grpc_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                               size_t note_len) {
    return iobd_channel(spec, false, ch, note, note_len);
}

void bench_grpc_discard(bench_channel_t* ch) {
    (void)ch;
    hugepages_settle();
}

zx_status_t bench_grpc_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                            const char* arg, bench_endpoint_t* ep) {
    const bench_iob_module_t* m = child_module();
    return m != NULL ? m->grpc_open(spec, role, nfds, arg, ep) : ZX_ERR_NOT_SUPPORTED;
}

void bench_grpc_close(bench_endpoint_t* ep) {
    if (g_module != NULL) {
        g_module->grpc_close(ep);
    }
}

/* send/recv are only reached after a successful open, so the module is loaded. */
zx_status_t bench_grpc_send(bench_endpoint_t* ep, const void* buf, size_t len) {
    return g_module->grpc_send(ep, buf, len);
}

zx_status_t bench_grpc_recv(bench_endpoint_t* ep, void* buf, size_t len) {
    return g_module->grpc_recv(ep, buf, len);
}

/*
 * The mediated rows need a local server (the writer reaches it over the map broker, the
 * reader maps the ring) and messages that fit one record (A.6: at most 65519 bytes).
 */
zx_status_t bench_mediated_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                   size_t note_len) {
    if (spec->msg_bytes > 65519) {
        snprintf(note, note_len, "a mediated record carries at most 65519 bytes");
        return ZX_ERR_NOT_SUPPORTED;
    }
    return iobd_channel(spec, true, ch, note, note_len);
}

void bench_mediated_discard(bench_channel_t* ch) {
    (void)ch;
    hugepages_settle();
}

zx_status_t bench_mediated_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                const char* arg, bench_endpoint_t* ep) {
    const bench_iob_module_t* m = child_module();
    return m != NULL ? m->mediated_open(spec, role, nfds, arg, ep) : ZX_ERR_NOT_SUPPORTED;
}

void bench_mediated_close(bench_endpoint_t* ep) {
    if (g_module != NULL) {
        g_module->mediated_close(ep);
    }
}

zx_status_t bench_mediated_send(bench_endpoint_t* ep, const void* buf, size_t len) {
    return g_module->mediated_send(ep, buf, len);
}

zx_status_t bench_mediated_recv(bench_endpoint_t* ep, void* buf, size_t len) {
    return g_module->mediated_recv(ep, buf, len);
}
