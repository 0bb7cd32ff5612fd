/* SPDX-License-Identifier: MIT */
/* iob-bench-mediated's baselines: the Unix datagram row and the sync-floor row (see the header). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
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

#include "bench/bench_mediated_scale.h"

/* The floor's request: the largest record it carries and its sequence number. */
#define FLOOR_REQ_BYTES 128u

/* dgram FD SIZE DURATION_MS: sends datagrams on FD until the time is up, then a 1-byte end. */
int dgram_main(char** argv) {
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

/* Unix datagram records/s (one writer process, this process reads). */
double bench_dgram(const char* self, size_t size, long ms) {
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
    char* argv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t) "dgram", fd_s, size_s, ms_s, NULL};
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
int floor_server_main(char** argv) {
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
int floor_writer_main(char** argv) {
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
double bench_floor(const char* self, size_t size, long ms) {
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
    char* sargv[] = {(char*)(uintptr_t)self, (char*)(uintptr_t) "floor-server", fd_s, size_s, NULL};
    char* wargv[] = {
        (char*)(uintptr_t)self, (char*)(uintptr_t) "floor-writer", fd_s, size_s, ms_s, out_s, NULL};
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
