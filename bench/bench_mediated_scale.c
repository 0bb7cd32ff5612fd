/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-mediated: the logging path's figures (issue 12). Mediated writes
 * (zx_iob_writev through iobd's mediator) with one writer process and with N writer
 * processes into one shared region, against the syslog-style baseline: a Unix datagram
 * socket, one send per record by one writer process and one recv per record by the reader.
 * Also iobd's CPU while idle with writers' channels open.
 *
 *   iob-bench-mediated [--quick] [--size B] [--writers N] [--duration-ms N] [--idle-s N]
 *                      [--csv FILE]
 *
 * Last, what counting costs: one writer against its iobd and against a second one serving
 * --metrics (the only iobd that counts), alternating, as the median of paired rounds.
 *
 * Like Fuchsia's logging: the reader creates one shared region with the
 * MEDIATED_WRITE_RING_BUFFER discipline and one IOB per writer over it, each with its own
 * tag; every writer process imports its endpoint and writes records with zx_iob_writev
 * (retrying a full ring after yielding). The reader maps the region, drains it with
 * shm/mediated.h's validated reader and checks every record's tag and length; it sleeps
 * 50 us when the ring is empty, so that on a small host the CPUs go to the writers and the
 * mediator. Records/s are counted by the reader over the writers' common window. Children
 * are started with posix_spawn (this binary, re-executed), never forked after libiob has
 * gRPC state. Without IOB_SERVER it starts a private iobd (the build's, or $IOBD).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "client/testkit/iobd_launch.h"
#include "client/testkit/percentile.h"
#include "shm/mediated.h"

extern char** environ;

#define MAX_WRITERS 16
#define TAG_BASE UINT64_C(0x6c6f6700) /* "\0gol" + the writer's index */
/* The floor's request: the largest record it carries and its sequence number. */
#define FLOOR_REQ_BYTES 128u

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void nap_us(long us) {
    struct timespec t = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

static pid_t spawn_self(const char* self, char* const argv[]) {
    pid_t pid;
    return posix_spawn(&pid, self, NULL, NULL, argv, environ) == 0 ? pid : -1;
}

/* ---- Children ---- */

/* writer TOKEN SIZE DURATION_MS RESULT_FD: writes records until the time is up. */
static int writer_main(char** argv) {
    const char* token = argv[0];
    size_t size = strtoul(argv[1], NULL, 10);
    int64_t duration = strtoll(argv[2], NULL, 10) * 1000000;
    int out = atoi(argv[3]);
    zx_handle_t ep;
    zx_status_t st = iob_handle_import(token, &ep);
    if (st != ZX_OK) {
        dprintf(out, "error import %d\n", st);
        return 1;
    }
    unsigned char rec[65536];
    memset(rec, 0x5a, sizeof rec);
    zx_iovec_t v = {rec, size};
    /* The first call opens the channel: not measured. */
    while ((st = zx_iob_writev(ep, 0, 0, &v, 1)) == ZX_ERR_NO_SPACE) {
        sched_yield();
    }
    uint64_t n = 1;
    uint64_t full = 0;
    int64_t end = duration > 0 ? now_ns() + duration : 0;
    while (st == ZX_OK && duration > 0) {
        st = zx_iob_writev(ep, 0, 0, &v, 1);
        if (st == ZX_ERR_NO_SPACE) {
            full++;
            sched_yield();
            st = ZX_OK;
            continue;
        }
        if ((++n & 63u) == 0 && now_ns() >= end) {
            break;
        }
    }
    if (duration == 0 && st == ZX_OK) {
        /* idle: keep the channel open until told to go. */
        dprintf(out, "ready\n");
        pause();
    }
    dprintf(out, "%s %" PRIu64 " %" PRIu64 "\n", st == ZX_OK ? "ok" : "error", n, full);
    zx_handle_close(ep);
    return st == ZX_OK ? 0 : 1;
}

/* dgram FD SIZE DURATION_MS: sends datagrams on FD until the time is up, then a 1-byte end. */
static int dgram_main(char** argv) {
    int fd = atoi(argv[0]);
    size_t size = strtoul(argv[1], NULL, 10);
    int64_t end = now_ns() + strtoll(argv[2], NULL, 10) * 1000000;
    unsigned char rec[65536];
    memset(rec, 0x5a, sizeof rec);
    for (uint64_t n = 1;; n++) {
        if (send(fd, rec, size, 0) != (ssize_t)size) {
            return 1;
        }
        if ((n & 63u) == 0 && now_ns() >= end) {
            break;
        }
    }
    return send(fd, rec, 1, 0) == 1 ? 0 : 1;
}

/*
 * ---- The synchronous floor ----
 *
 * The least any synchronous mediated write can cost on this machine: one process (the
 * writer) copies a record into shared memory and publishes its sequence number, the other
 * (the server) sees it, copies the record out, checks it and answers in a word of its own;
 * the writer's call ends when it sees the answer. Payload and sequence share the request's
 * cache lines (the sequence last), the answer has a line to itself, nothing else is
 * shared: every call moves the request's lines one way and the answer's line back, one
 * round trip between the CPUs at least. Both sides wait as the mediated path does (a
 * short pause spin, then sched_yield, so that two of them sharing a CPU still progress);
 * nobody is pinned, as in the mediated run.
 */
typedef struct floor_shm {
    _Alignas(64) unsigned char req[FLOOR_REQ_BYTES]; /* the record, then `seq` in its last word */
    _Alignas(64) _Atomic uint32_t done;              /* the server's answer: the seq served */
    _Alignas(64) _Atomic uint32_t stop;              /* the writer is finished */
    uint32_t bad;                                    /* records the server found torn */
} floor_shm_t;

static inline void floor_relax(unsigned* spins) {
    if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
#endif
    } else {
        sched_yield();
    }
}

static _Atomic uint32_t* floor_seq(floor_shm_t* f) {
    return (_Atomic uint32_t*)(void*)(f->req + FLOOR_REQ_BYTES - sizeof(uint32_t));
}

static floor_shm_t* floor_map(int fd) {
    void* p = mmap(NULL, sizeof(floor_shm_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* floor-server FD SIZE: serves requests until the writer stops. */
static int floor_server_main(char** argv) {
    floor_shm_t* f = floor_map(atoi(argv[0]));
    size_t size = strtoul(argv[1], NULL, 10);
    if (f == NULL || size > FLOOR_REQ_BYTES - sizeof(uint32_t)) {
        return 1;
    }
    unsigned char out[FLOOR_REQ_BYTES];
    uint32_t served = 0;
    unsigned spins = 0;
    while (atomic_load_explicit(&f->stop, memory_order_relaxed) == 0) {
        uint32_t seq = atomic_load_explicit(floor_seq(f), memory_order_acquire);
        if (seq == served) {
            floor_relax(&spins);
            continue;
        }
        spins = 0;
        memcpy(out, f->req, size);
        uint32_t stamp;
        memcpy(&stamp, out, sizeof stamp);
        f->bad += stamp != seq;
        served = seq;
        atomic_store_explicit(&f->done, seq, memory_order_release);
    }
    return 0;
}

/* floor-writer FD SIZE DURATION_MS RESULT_FD: synchronous calls until the time is up. */
static int floor_writer_main(char** argv) {
    floor_shm_t* f = floor_map(atoi(argv[0]));
    size_t size = strtoul(argv[1], NULL, 10);
    int64_t duration = strtoll(argv[2], NULL, 10) * 1000000;
    int out = atoi(argv[3]);
    if (f == NULL || size < sizeof(uint32_t) || size > FLOOR_REQ_BYTES - sizeof(uint32_t)) {
        return 1;
    }
    unsigned char rec[FLOOR_REQ_BYTES];
    memset(rec, 0x5a, sizeof rec);
    uint32_t seq = 0;
    int64_t start = now_ns();
    int64_t end = start + duration;
    int64_t t = start;
    for (;;) {
        seq++;
        memcpy(rec, &seq, sizeof seq); /* the server checks that the copy it read is whole */
        memcpy(f->req, rec, size);
        atomic_store_explicit(floor_seq(f), seq, memory_order_release);
        unsigned spins = 0;
        while (atomic_load_explicit(&f->done, memory_order_acquire) != seq) {
            floor_relax(&spins);
        }
        if ((seq & 63u) == 0 && (t = now_ns()) >= end) {
            break;
        }
    }
    atomic_store(&f->stop, 1);
    dprintf(out, "ok %" PRIu32 " %" PRId64 "\n", seq, t - start);
    return 0;
}

/* The floor's calls/s, or a negative number on failure. */
static double bench_floor(const char* self, size_t size, long ms) {
    if (size > FLOOR_REQ_BYTES - sizeof(uint32_t)) {
        return -1; /* the floor is for small records only */
    }
    int fd = memfd_create("iob-bench-sync-floor", 0); /* inherited by both children */
    FILE* res = tmpfile();
    if (fd < 0 || res == NULL || ftruncate(fd, sizeof(floor_shm_t)) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        if (res != NULL) {
            fclose(res);
        }
        return -1;
    }
    int out = dup(fileno(res));
    fclose(res);
    char fd_s[16], size_s[32], ms_s[32], out_s[16];
    snprintf(fd_s, sizeof fd_s, "%d", fd);
    snprintf(size_s, sizeof size_s, "%zu", size);
    snprintf(ms_s, sizeof ms_s, "%ld", ms);
    snprintf(out_s, sizeof out_s, "%d", out);
    char* sargv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t)"floor-server", fd_s, size_s,
                     NULL};
    char* wargv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t)"floor-writer", fd_s, size_s,
                     ms_s, out_s, NULL};
    pid_t server = spawn_self(self, sargv);
    pid_t writer = server > 0 ? spawn_self(self, wargv) : -1;
    int ws = 0;
    int ss = 0;
    if (writer > 0) {
        waitpid(writer, &ws, 0);
    } else if (server > 0) {
        kill(server, SIGTERM);
    }
    if (server > 0) {
        waitpid(server, &ss, 0);
    }
    char line[128] = "";
    ssize_t n = pread(out, line, sizeof line - 1, 0);
    line[n > 0 ? n : 0] = '\0';
    uint32_t calls = 0;
    int64_t ns = 0;
    floor_shm_t* f = floor_map(fd);
    bool ok = writer > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && WIFEXITED(ss) &&
              WEXITSTATUS(ss) == 0 && f != NULL && f->bad == 0 &&
              sscanf(line, "ok %" SCNu32 " %" SCNd64, &calls, &ns) == 2 && ns > 0;
    if (f != NULL) {
        munmap(f, sizeof *f);
    }
    close(out);
    close(fd);
    return ok ? (double)calls * 1e9 / (double)ns : -1;
}

/* ---- The reader ---- */

typedef struct run {
    zx_handle_t shared;
    void* base;
    uint64_t size;
    iob_mwrb_reader_t reader;
    zx_handle_t reader_ep[MAX_WRITERS];
    char tokens[MAX_WRITERS][IOB_TOKEN_SIZE];
} run_t;

static zx_status_t run_setup(run_t* r, int writers, uint64_t ring_bytes) {
    uint64_t page = zx_system_get_page_size();
    r->size = ring_bytes + page;
    zx_status_t st = zx_iob_create_shared_region(0, r->size, &r->shared);
    for (int i = 0; st == ZX_OK && i < writers; i++) {
        zx_iob_region_t region;
        memset(&region, 0, sizeof region);
        region.type = ZX_IOB_REGION_TYPE_SHARED;
        region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                        ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE;
        region.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
        region.discipline.ring_buffer.tag = TAG_BASE + (uint64_t)i;
        region.shared_region.shared_region = r->shared;
        zx_handle_t w;
        st = zx_iob_create(0, &region, 1, &r->reader_ep[i], &w);
        if (st == ZX_OK) {
            st = iob_handle_export(w, r->tokens[i]);
        }
    }
    zx_vaddr_t addr = 0;
    if (st == ZX_OK) {
        st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                             r->reader_ep[0], 0, 0, (size_t)r->size, &addr);
    }
    if (st == ZX_OK) {
        r->base = (void*)addr;
        st = iob_mwrb_reader_init(&r->reader, r->base, r->size, page);
    }
    return st;
}

static void run_teardown(run_t* r, int writers) {
    if (r->base != NULL) {
        zx_vmar_unmap(zx_vmar_root_self(), (zx_vaddr_t)r->base, r->size);
    }
    for (int i = 0; i < writers; i++) {
        zx_handle_close(r->reader_ep[i]);
    }
    zx_handle_close(r->shared);
}

/* Drains the ring until every writer has reported; returns records read, or -1. */
static int64_t run_drain(run_t* r, int writers, size_t size, const int* outs, uint64_t* per) {
    static unsigned char buf[65536];
    int done = 0;
    int64_t got = 0;
    int64_t stall = now_ns() + INT64_C(60) * 1000000000;
    for (;;) {
        iob_mwrb_record_t rec;
        zx_status_t st = iob_mwrb_peek(&r->reader, &rec, buf, sizeof buf);
        if (st == ZX_OK) {
            uint64_t w = rec.tag - TAG_BASE;
            if (w >= (uint64_t)writers || rec.length != size) {
                fprintf(stderr, "bad record: tag %" PRIx64 " length %" PRIu64 "\n", rec.tag,
                        (uint64_t)rec.length);
                return -1;
            }
            per[w]++;
            got++;
            iob_mwrb_advance(&r->reader, &rec);
            continue;
        }
        if (st != ZX_ERR_SHOULD_WAIT) {
            fprintf(stderr, "reader: %s\n", zx_status_get_string(st));
            return -1;
        }
        if (done == writers) {
            return got;
        }
        nap_us(50);
        /* A writer reports when it stops; all stopped and the ring empty: done. */
        done = 0;
        for (int i = 0; i < writers; i++) {
            struct stat sb;
            done += fstat(outs[i], &sb) == 0 && sb.st_size > 0;
        }
        if (now_ns() > stall) {
            fprintf(stderr, "reader: stalled\n");
            return -1;
        }
    }
}

/* Mediated records/s with `writers` processes, or a negative number on failure. */
static double bench_mediated(const char* self, int writers, size_t size, long ms) {
    run_t r;
    memset(&r, 0, sizeof r);
    zx_status_t st = run_setup(&r, writers, UINT64_C(4) << 20);
    if (st != ZX_OK) {
        fprintf(stderr, "setup: %s\n", zx_status_get_string(st));
        return -1;
    }
    pid_t pids[MAX_WRITERS];
    int outs[MAX_WRITERS];
    char size_s[32];
    char ms_s[32];
    snprintf(size_s, sizeof size_s, "%zu", size);
    snprintf(ms_s, sizeof ms_s, "%ld", ms);
    for (int i = 0; i < writers; i++) {
        /* A result file per writer: its size says when the writer is done. */
        FILE* f = tmpfile();
        outs[i] = dup(fileno(f));
        fclose(f);
        char fd_s[16];
        snprintf(fd_s, sizeof fd_s, "%d", outs[i]);
        char* argv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t)"writer", r.tokens[i], size_s,
                        ms_s, fd_s, NULL};
        pids[i] = spawn_self(self, argv);
    }
    uint64_t per[MAX_WRITERS] = {0};
    int64_t got = run_drain(&r, writers, size, outs, per);
    bool ok = got > 0;
    for (int i = 0; i < writers; i++) {
        int status = 0;
        waitpid(pids[i], &status, 0);
        ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        char line[128] = "";
        ssize_t n = pread(outs[i], line, sizeof line - 1, 0);
        line[n > 0 ? n : 0] = '\0';
        uint64_t sent = 0;
        uint64_t full = 0;
        ok = ok && sscanf(line, "ok %" SCNu64 " %" SCNu64, &sent, &full) == 2 && sent == per[i];
        close(outs[i]);
    }
    run_teardown(&r, writers);
    /* Each writer writes for ms after its setup; the windows overlap but for the spawns. */
    return ok ? (double)got / ((double)ms / 1000.0) : -1;
}

/* Unix datagram records/s (one writer process, this process reads). */
static double bench_dgram(const char* self, size_t size, long ms) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return -1;
    }
    int child = dup(sv[0]); /* without CLOEXEC: the writer's end */
    char fd_s[16];
    char size_s[32];
    char ms_s[32];
    snprintf(fd_s, sizeof fd_s, "%d", child);
    snprintf(size_s, sizeof size_s, "%zu", size);
    snprintf(ms_s, sizeof ms_s, "%ld", ms);
    char* argv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t)"dgram", fd_s, size_s, ms_s, NULL};
    pid_t pid = spawn_self(self, argv);
    close(child);
    close(sv[0]);
    static unsigned char buf[65536];
    uint64_t n = 0;
    bool ok = pid > 0;
    for (; ok;) {
        ssize_t r = recv(sv[1], buf, sizeof buf, 0);
        if (r == 1) {
            break;
        }
        ok = r == (ssize_t)size;
        n++;
    }
    close(sv[1]);
    int status = 0;
    if (pid > 0) {
        waitpid(pid, &status, 0);
    }
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return ok ? (double)n / ((double)ms / 1000.0) : -1;
}

/* iobd's pid from its Unix socket's peer credentials (the local iobd we talk to). */
static pid_t iobd_pid(const char* target) {
    const char* path = strncmp(target, "unix:", 5) == 0 ? target + 5 : NULL;
    if (path == NULL) {
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    struct ucred cred;
    socklen_t len = sizeof cred;
    pid_t pid = -1;
    if (fd >= 0 && connect(fd, (struct sockaddr*)&addr, sizeof addr) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        pid = cred.pid;
    }
    if (fd >= 0) {
        close(fd);
    }
    return pid;
}

static double cpu_seconds(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE* f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char* p = strrchr(buf, ')');
    unsigned long ut = 0;
    unsigned long stime = 0;
    /* After "pid (comm)": state is field 3, utime 14, stime 15. */
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &stime) != 2) {
        return -1;
    }
    return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* iobd's CPU share while `writers` idle writers hold channels open (percent of one CPU). */
static double bench_idle(const char* self, const char* target, int writers, long secs) {
    pid_t server = iobd_pid(target);
    if (server <= 0) {
        return -1;
    }
    run_t r;
    memset(&r, 0, sizeof r);
    if (run_setup(&r, writers, UINT64_C(1) << 20) != ZX_OK) {
        return -1;
    }
    pid_t pids[MAX_WRITERS];
    int outs[MAX_WRITERS];
    for (int i = 0; i < writers; i++) {
        FILE* f = tmpfile();
        outs[i] = dup(fileno(f));
        fclose(f);
        char fd_s[16];
        snprintf(fd_s, sizeof fd_s, "%d", outs[i]);
        char* argv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t)"writer", r.tokens[i],
                        (char*)(uintptr_t)"64", (char*)(uintptr_t)"0", fd_s, NULL};
        pids[i] = spawn_self(self, argv);
    }
    /* Wait for every writer to have its channel open (its one record sent). */
    for (int i = 0; i < writers; i++) {
        struct stat sb;
        for (int k = 0; k < 1000 && (fstat(outs[i], &sb) != 0 || sb.st_size == 0); k++) {
            nap_us(10000);
        }
    }
    nap_us(200000); /* the mediator's spin after the last record, and the reader's setup */
    double c0 = cpu_seconds(server);
    int64_t t0 = now_ns();
    nap_us(secs * 1000000);
    double c1 = cpu_seconds(server);
    int64_t t1 = now_ns();
    for (int i = 0; i < writers; i++) {
        kill(pids[i], SIGTERM);
        waitpid(pids[i], NULL, 0);
        close(outs[i]);
    }
    run_teardown(&r, writers);
    return c0 < 0 || c1 < 0 ? -1 : 100.0 * (c1 - c0) / ((double)(t1 - t0) / 1e9);
}

/* ---- A private iobd ---- */

/* [0]: the iobd every row uses; [1]: the same with --metrics, for the cost of counting. */
static iob_tk_iobd_t g_iobd[2];

static const char* start_iobd(int idx, bool metrics, char* target, size_t len) {
    const char* bin = getenv("IOBD") != NULL ? getenv("IOBD") : IOB_BENCH_IOBD;
    char metrics_addr[64];
    snprintf(metrics_addr, sizeof metrics_addr, "127.0.0.1:%d", iob_tk_free_tcp_port());
    const char* extra[] = {"--metrics", metrics_addr, NULL};
    iob_tk_iobd_config_t config = {.binary = bin, .extra = metrics ? extra : NULL};
    char err[400];
    if (!iob_tk_iobd_start(&g_iobd[idx], &config, err, sizeof err)) {
        fprintf(stderr, "iob-bench-mediated: %s\n", err);
        return NULL;
    }
    snprintf(target, len, "%s", g_iobd[idx].target);
    return target;
}

static void stop_iobd(int idx) {
    char why[160];
    if (!iob_tk_iobd_stop(&g_iobd[idx], 20000, why, sizeof why)) {
        fprintf(stderr, "iob-bench-mediated: %s\n", why);
    }
}

/* "rate SIZE MS": one writer's records/s against $IOB_SERVER, printed (a fresh process, so
 * that its libiob session is with that iobd). */
static int rate_main(const char* self, char** argv) {
    double r = bench_mediated(self, 1, strtoul(argv[0], NULL, 10), atol(argv[1]));
    printf("%.0f\n", r);
    return r > 0 ? 0 : 1;
}

/* One writer's rate against the iobd `server`, measured by a child (rate_main). */
static double child_rate(const char* self, const char* server, size_t size, long ms) {
    char a_size[32], a_ms[32];
    snprintf(a_size, sizeof a_size, "%zu", size);
    snprintf(a_ms, sizeof a_ms, "%ld", ms);
    char* argv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t)"rate", a_size, a_ms, NULL};
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    char env_server[300];
    snprintf(env_server, sizeof env_server, "IOB_SERVER=%s", server);
    char* envp[64];
    size_t n = 0;
    envp[n++] = env_server;
    for (char** e = environ; *e != NULL && n < 63; e++) {
        if (strncmp(*e, "IOB_SERVER=", 11) != 0) {
            envp[n++] = *e;
        }
    }
    envp[n] = NULL;
    pid_t pid;
    int rc = posix_spawn(&pid, self, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    double r = -1;
    if (rc == 0) {
        char buf[64] = "";
        ssize_t got = read(p[0], buf, sizeof buf - 1);
        if (got > 0) {
            buf[got] = '\0';
            r = atof(buf);
        }
        waitpid(pid, NULL, 0);
    }
    close(p[0]);
    return r;
}

int main(int argc, char** argv) {
    if (argc >= 6 && strcmp(argv[1], "writer") == 0) {
        return writer_main(argv + 2);
    }
    if (argc >= 5 && strcmp(argv[1], "dgram") == 0) {
        return dgram_main(argv + 2);
    }
    if (argc >= 4 && strcmp(argv[1], "floor-server") == 0) {
        return floor_server_main(argv + 2);
    }
    if (argc >= 6 && strcmp(argv[1], "floor-writer") == 0) {
        return floor_writer_main(argv + 2);
    }
    if (argc >= 4 && strcmp(argv[1], "rate") == 0) {
        char me[4096];
        ssize_t ml = readlink("/proc/self/exe", me, sizeof me - 1);
        if (ml <= 0) {
            return 1;
        }
        me[ml] = '\0';
        return rate_main(me, argv + 2);
    }
    size_t size = 64;
    int writers = 4;
    long ms = 2000;
    long idle_s = 10;
    int trials = 3;
    const char* csv = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            ms = 500;
            idle_s = 2;
            trials = 1;
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--writers") == 0 && i + 1 < argc) {
            writers = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--duration-ms") == 0 && i + 1 < argc) {
            ms = atol(argv[++i]);
        } else if (strcmp(argv[i], "--idle-s") == 0 && i + 1 < argc) {
            idle_s = atol(argv[++i]);
        } else if (strcmp(argv[i], "--trials") == 0 && i + 1 < argc) {
            trials = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            csv = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: iob-bench-mediated [--quick] [--size B] [--writers N] "
                    "[--duration-ms N] [--idle-s N] [--trials N] [--csv FILE]\n");
            return 2;
        }
    }
    if (writers < 1 || writers > MAX_WRITERS || size < 1 || size > 65519 || trials < 1) {
        fprintf(stderr, "iob-bench-mediated: bad arguments\n");
        return 2;
    }
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        return 1;
    }
    self[sl] = '\0';
    char target[256];
    const char* server = getenv("IOB_SERVER");
    if (server == NULL) {
        server = start_iobd(0, false, target, sizeof target);
        if (server == NULL) {
            fprintf(stderr, "iob-bench-mediated: could not start iobd\n");
            stop_iobd(0);
            return 1;
        }
        setenv("IOB_SERVER", server, 1);
    }
    /* The best of the trials: the machine is shared, interference only ever slows a run. */
    double dgram = -1;
    double floor = -1;
    double one = -1;
    double many = -1;
    for (int t = 0; t < trials; t++) {
        double d = bench_dgram(self, size, ms);
        double f = bench_floor(self, size, ms);
        double o = bench_mediated(self, 1, size, ms);
        double m = bench_mediated(self, writers, size, ms);
        dgram = d > dgram ? d : dgram;
        floor = f > floor ? f : floor;
        one = o > one ? o : one;
        many = m > many ? m : many;
    }
    double idle = bench_idle(self, server, writers, idle_s);
    /*
     * What counting costs the mediated path: one writer against this iobd and against a
     * second one serving --metrics (so counting), in alternating order, paired per round.
     * Only with iobds of our own (IOB_SERVER unset).
     */
    double metrics_ratio = -1;
    char target_m[256];
    if (g_iobd[0].pid > 0 && start_iobd(1, true, target_m, sizeof target_m) != NULL) {
        enum { ROUNDS_MAX = 15 };
        int rounds = trials * 2 + 1 < ROUNDS_MAX ? trials * 2 + 1 : ROUNDS_MAX;
        double ratios[ROUNDS_MAX];
        int got = 0;
        for (int i = 0; i < rounds; i++) {
            double off, on;
            if (i % 2 == 0) {
                off = child_rate(self, server, size, ms);
                on = child_rate(self, target_m, size, ms);
            } else {
                on = child_rate(self, target_m, size, ms);
                off = child_rate(self, server, size, ms);
            }
            if (off > 0 && on > 0) {
                ratios[got++] = on / off;
                fprintf(stderr, "iob-bench-mediated: metrics round %d: off %.0f on %.0f (%.2fx)\n",
                        i, off, on, on / off);
            }
        }
        if (got > 0) {
            metrics_ratio = iob_tk_median(ratios, (size_t)got);
        }
        stop_iobd(1);
    }
    printf("iob-bench-mediated: %zu B records, %ld ms per run, best of %d; %ld CPUs\n", size, ms,
           trials, sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-22s %14s %10s\n", "row", "records/s", "ratio");
    printf("%-22s %14.0f %10s\n", "unix-dgram", dgram, "1.00x");
    if (floor > 0) {
        printf("%-22s %14.0f %9.2fx  (two processes, one synchronous %zu B request/reply in "
               "shared memory)\n",
               "sync-floor", floor, dgram > 0 ? floor / dgram : 0, size);
    }
    printf("%-22s %14.0f %9.2fx  (target >= 1,000,000 and >= 5x unix-dgram)\n",
           "mediated-1-writer", one, dgram > 0 ? one / dgram : 0);
    if (floor > 0) {
        printf("%-22s %14s %9.2fx  (mediated-1-writer / sync-floor)\n", "mediated-of-floor", "",
               one / floor);
    }
    char row[32];
    snprintf(row, sizeof row, "mediated-%d-writers", writers);
    printf("%-22s %14.0f %9.2fx  (of one writer; target >= 0.8x)\n", row, many,
           one > 0 ? many / one : 0);
    printf("%-22s %13.2f%%             (target < 1%%, %d channels open, %ld s)\n",
           "idle-mediator-cpu", idle, writers, idle_s);
    if (metrics_ratio > 0) {
        printf("%-22s %14s %9.2fx  (one writer, iobd --metrics / without; median of paired "
               "rounds)\n",
               "metrics-cost", "", metrics_ratio);
    }
    if (csv != NULL) {
        FILE* f = fopen(csv, "w");
        if (f != NULL) {
            fprintf(f, "row,msg_bytes,writers,records_per_s,ratio,idle_cpu_percent\n");
            fprintf(f, "unix-dgram,%zu,1,%.0f,1.00,\n", size, dgram);
            if (floor > 0) {
                fprintf(f, "sync-floor,%zu,1,%.0f,%.2f,\n", size, floor,
                        dgram > 0 ? floor / dgram : 0);
            }
            fprintf(f, "mediated,%zu,1,%.0f,%.2f,\n", size, one, dgram > 0 ? one / dgram : 0);
            if (floor > 0) {
                fprintf(f, "mediated-of-floor,%zu,1,,%.2f,\n", size, one / floor);
            }
            fprintf(f, "mediated,%zu,%d,%.0f,%.2f,\n", size, writers, many,
                    one > 0 ? many / one : 0);
            fprintf(f, "idle,%zu,%d,,,%.2f\n", size, writers, idle);
            if (metrics_ratio > 0) {
                fprintf(f, "metrics-on-vs-off,%zu,1,,%.2f,\n", size, metrics_ratio);
            }
            fclose(f);
        }
    }
    stop_iobd(0);
    bool ok = dgram > 0 && one > 0 && many > 0 && idle >= 0;
    return ok ? 0 : 1;
}
