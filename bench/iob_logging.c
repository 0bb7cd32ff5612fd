/* SPDX-License-Identifier: MIT */
/*
 * Many writers, one log: the way Fuchsia's logging uses IOBs, with the public API only.
 *
 *   iob-logging [--writers N] [--records M] [--interval-ms T]
 *
 * The reader (this process) creates one shared region with the mediated-write ring buffer
 * discipline and, per writer, an IOB on it whose discipline tag names that writer. It
 * keeps endpoint 0 of every IOB, hands endpoint 1 (EP1_CAN_MEDIATED_WRITE: the writer may
 * append records through iobd but can never map the region) to a writer process it starts
 * (posix_spawn of this program with --writer), maps the region and prints every record
 * with the name its tag stands for. When a writer exits, its endpoint 1 closes and the
 * reader's endpoint 0 of that IOB raises ZX_IOB_PEER_CLOSED: the reader prints the
 * writer's last records, then its exit.
 *
 * iobd is found through $IOB_SERVER, as for every libiob program.
 */
#include <errno.h>
#include <poll.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

extern char** environ;

#define MAX_WRITERS 16
#define TAG_BASE 1000u     /* writer i writes with tag TAG_BASE + i */
#define REGION_PAGES 16u   /* page 0 holds head and tail; the rest is the ring */
#define MAX_RECORD 256u    /* longest record this example writes or prints */

static const char* const k_names[MAX_WRITERS] = {
    "netstack", "audio",  "wlan",    "storage", "display", "input", "power",  "sensors",
    "camera",   "update", "session", "fonts",   "bt",      "usb",   "thermal", "time"};

/* ---- the writer: a component that logs through its endpoint ------------------------- */

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int writer_main(const char* name, const char* token, unsigned records, int interval_ms) {
    zx_handle_t ep;
    zx_status_t st = iob_handle_import(token, &ep);
    if (st != ZX_OK) {
        fprintf(stderr, "%s: import: %s\n", name, zx_status_get_string(st));
        return 1;
    }
    for (unsigned k = 1; k <= records; k++) {
        char msg[MAX_RECORD];
        int len = snprintf(msg, sizeof msg, "record %u of %u (pid %d)", k, records, (int)getpid());
        zx_iovec_t v = {.buffer = msg, .capacity = (size_t)len};
        /* A full ring is the reader's backlog, not an error: wait for it to drain. */
        while ((st = zx_iob_writev(ep, 0, 0, &v, 1)) == ZX_ERR_NO_SPACE) {
            sleep_ms(1);
        }
        if (st != ZX_OK) {
            fprintf(stderr, "%s: writev: %s\n", name, zx_status_get_string(st));
            return 1;
        }
        if (interval_ms > 0) {
            sleep_ms(interval_ms);
        }
    }
    /* Exiting closes the endpoint: the reader sees ZX_IOB_PEER_CLOSED. */
    return 0;
}

/* ---- the reader ----------------------------------------------------------------------- */

/*
 * The ring's layout (Zircon's mediated-write ring buffer): page 0 holds head (written by
 * iobd) and tail (written by the reader), free-running byte counts; the data is the rest of
 * the region, B bytes, and a count c lives at offset c % B. Each record is a tag, a length
 * and the payload, padded to 8 bytes, wrapping byte by byte at B.
 */
typedef struct log_ring {
    _Atomic uint64_t* head;
    _Atomic uint64_t* tail;
    const unsigned char* data;
    uint64_t size; /* B */
} log_ring_t;

static void ring_copy(const log_ring_t* r, uint64_t pos, void* out, size_t len) {
    unsigned char* o = out;
    for (size_t i = 0; i < len; i++) {
        o[i] = r->data[(pos + i) % r->size];
    }
}

typedef struct writer {
    const char* name;
    zx_handle_t ep0;
    pid_t pid;
    unsigned records; /* printed so far */
    bool exited;
} writer_t;

/*
 * Prints every record published so far and consumes it. iobd is trusted to write the ring,
 * but a reader of shared memory checks what it reads all the same: a record that does not
 * fit between tail and head ends the program instead of being read out of bounds.
 */
static bool ring_drain(const log_ring_t* r, writer_t* w, size_t n) {
    uint64_t tail = atomic_load_explicit(r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(r->head, memory_order_acquire);
    if (head < tail || head - tail > r->size || (head | tail) % 8 != 0) {
        fprintf(stderr, "iob-logging: ring indices out of range\n");
        return false;
    }
    while (tail != head) {
        uint64_t hdr[2];
        ring_copy(r, tail, hdr, sizeof hdr);
        uint64_t tag = hdr[0];
        uint64_t len = hdr[1];
        uint64_t size = 16 + ((len + 7) & ~(uint64_t)7);
        if (len > 65519 || size > head - tail) {
            fprintf(stderr, "iob-logging: malformed record\n");
            return false;
        }
        char text[MAX_RECORD + 1];
        size_t shown = len < MAX_RECORD ? (size_t)len : MAX_RECORD;
        ring_copy(r, tail + 16, text, shown);
        text[shown] = '\0';
        const char* name = NULL;
        if (tag >= TAG_BASE && tag - TAG_BASE < n) {
            name = w[tag - TAG_BASE].name;
            w[tag - TAG_BASE].records++;
        }
        if (name != NULL) {
            printf("[%s] %s\n", name, text);
        } else {
            printf("[tag %llu] %s\n", (unsigned long long)tag, text);
        }
        tail += size;
    }
    /* Once for all the records read (Zircon's reader protocol): iobd stores head in the
     * same cache line for every record it appends. */
    atomic_store_explicit(r->tail, tail, memory_order_release);
    fflush(stdout);
    return true;
}

static zx_status_t spawn_writer(char* self, writer_t* w, zx_handle_t ep1, unsigned records,
                                int interval_ms) {
    char token[IOB_TOKEN_SIZE];
    zx_status_t st = iob_handle_export(ep1, token); /* consumes ep1 */
    if (st != ZX_OK) {
        zx_handle_close(ep1);
        return st;
    }
    char count[16];
    char interval[16];
    snprintf(count, sizeof count, "%u", records);
    snprintf(interval, sizeof interval, "%d", interval_ms);
    char flag[] = "--writer";
    char name[32];
    snprintf(name, sizeof name, "%s", w->name);
    char* argv[] = {self, flag, name, token, count, interval, NULL};
    /* A fresh process (exec), never a fork of one that holds a connection to iobd. */
    if (posix_spawn(&w->pid, self, NULL, NULL, argv, environ) != 0) {
        return ZX_ERR_NO_RESOURCES;
    }
    return ZX_OK;
}

/* One IOB per writer, all on the shared region: ep0 for the reader, ep1 for the writer. */
static zx_status_t create_iobs(zx_handle_t shared, writer_t* w, zx_handle_t* ep1, unsigned n) {
    for (unsigned i = 0; i < n; i++) {
        w[i].name = k_names[i];
        zx_iob_region_t region;
        memset(&region, 0, sizeof region);
        region.type = ZX_IOB_REGION_TYPE_SHARED;
        /* ep0 (the reader) maps the ring to read it and move its tail; ep1 (the writer)
         * may only append records through iobd. */
        region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                        ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE;
        region.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
        region.discipline.ring_buffer.tag = TAG_BASE + i;
        region.shared_region.shared_region = shared;
        zx_status_t st = zx_iob_create(0, &region, 1, &w[i].ep0, &ep1[i]);
        if (st != ZX_OK) {
            fprintf(stderr, "iob-logging: IOB for %s: %s\n", w[i].name, zx_status_get_string(st));
            return st;
        }
    }
    return ZX_OK;
}

/*
 * The event loop: the signal fd wakes us when a record is written to the shared region
 * (its UPDATED strobe) or an endpoint's signals change (PEER_CLOSED). A writer's exit is
 * reported only once the ring is drained, after its last record. Returns the exit code.
 */
static int watch(int sfd, const log_ring_t* ring, writer_t* w, unsigned n) {
    unsigned exited = 0;
    zx_time_t deadline = zx_deadline_after(ZX_SEC(60));
    while (exited < n) {
        if (!ring_drain(ring, w, n)) {
            return 1;
        }
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        int ready = poll(&p, 1, 200);
        iob_signal_event_t ev[32];
        size_t got = ready > 0 ? iob_signal_read(ev, 32) : 0;
        bool closed[MAX_WRITERS] = {false};
        for (size_t e = 0; e < got; e++) {
            for (unsigned i = 0; i < n; i++) {
                if (ev[e].handle == w[i].ep0 && (ev[e].signals & ZX_IOB_PEER_CLOSED) != 0) {
                    closed[i] = true;
                }
            }
        }
        /* A quiet spell: ask each endpoint directly, in case an event was missed. */
        for (unsigned i = 0; ready == 0 && i < n; i++) {
            zx_signals_t obs = 0;
            if (!w[i].exited &&
                zx_object_wait_one(w[i].ep0, ZX_IOB_PEER_CLOSED, 0, &obs) == ZX_OK) {
                closed[i] = true;
            }
        }
        if (!ring_drain(ring, w, n)) {
            return 1;
        }
        for (unsigned i = 0; i < n; i++) {
            if (closed[i] && !w[i].exited) {
                w[i].exited = true;
                exited++;
                printf("[%s] exited (ZX_IOB_PEER_CLOSED) after %u records\n", w[i].name,
                       w[i].records);
                fflush(stdout);
            }
        }
        if (zx_clock_get_monotonic() > deadline) {
            fprintf(stderr, "iob-logging: writers still running after 60 s\n");
            return 1;
        }
    }
    return 0;
}

/* Waits for every writer (stopping them first when the run failed) and closes its IOB. */
static int reap_writers(writer_t* w, unsigned n, int rc) {
    for (unsigned i = 0; i < n; i++) {
        int status = 0;
        if (w[i].pid > 0) {
            if (rc != 0) {
                kill(w[i].pid, SIGTERM);
            }
            while (waitpid(w[i].pid, &status, 0) < 0 && errno == EINTR) {
            }
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "iob-logging: %s failed\n", w[i].name);
                rc = 1;
            }
        }
        zx_handle_close(w[i].ep0);
    }
    return rc;
}

static int reader_main(char* self, unsigned n, unsigned records, int interval_ms) {
    /* Signal events are recorded only from the moment the fd exists: ask first. */
    int sfd = iob_signal_fd();
    if (sfd < 0) {
        fprintf(stderr, "iob-logging: cannot reach iobd (is IOB_SERVER set?)\n");
        return 1;
    }
    uint64_t page = zx_system_get_page_size();
    uint64_t region_size = REGION_PAGES * page;
    zx_handle_t shared;
    zx_status_t st = zx_iob_create_shared_region(0, region_size, &shared);
    if (st != ZX_OK) {
        fprintf(stderr, "iob-logging: shared region: %s\n", zx_status_get_string(st));
        return 1;
    }
    writer_t w[MAX_WRITERS];
    zx_handle_t ep1[MAX_WRITERS];
    memset(w, 0, sizeof w);
    if (create_iobs(shared, w, ep1, n) != ZX_OK) {
        return 1;
    }
    /* Every IOB maps the same region: map it once, through the first. */
    zx_vaddr_t base = 0;
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, w[0].ep0, 0, 0,
                         region_size, &base);
    if (st != ZX_OK) {
        fprintf(stderr, "iob-logging: map: %s\n", zx_status_get_string(st));
        return 1;
    }
    log_ring_t ring = {.head = (_Atomic uint64_t*)base,
                       .tail = (_Atomic uint64_t*)base + 1,
                       .data = (const unsigned char*)base + page,
                       .size = region_size - page};
    printf("iob-logging: %u writers, one shared region of %llu KiB\n", n,
           (unsigned long long)(region_size >> 10));
    for (unsigned i = 0; i < n; i++) {
        printf("iob-logging: %s writes with tag %u\n", w[i].name, TAG_BASE + i);
    }
    fflush(stdout);
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        st = spawn_writer(self, &w[i], ep1[i], records, interval_ms);
        if (st != ZX_OK) {
            fprintf(stderr, "iob-logging: start %s: %s\n", w[i].name, zx_status_get_string(st));
            /* Its IOB's ep1 is gone: PEER_CLOSED reports it like any writer that ended. */
            rc = 1;
        }
    }
    if (rc == 0) {
        rc = watch(sfd, &ring, w, n);
    }
    rc = reap_writers(w, n, rc);
    zx_vmar_unmap(zx_vmar_root_self(), base, region_size);
    zx_handle_close(shared);
    if (rc == 0) {
        printf("iob-logging: every writer exited\n");
    }
    return rc;
}

int main(int argc, char** argv) {
    if (argc == 6 && strcmp(argv[1], "--writer") == 0) {
        return writer_main(argv[2], argv[3], (unsigned)atoi(argv[4]), atoi(argv[5]));
    }
    unsigned writers = 3;
    unsigned records = 5;
    int interval_ms = 2;
    for (int i = 1; i < argc; i++) {
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--writers") == 0 && v != NULL) {
            writers = (unsigned)atoi(v);
            i++;
        } else if (strcmp(argv[i], "--records") == 0 && v != NULL) {
            records = (unsigned)atoi(v);
            i++;
        } else if (strcmp(argv[i], "--interval-ms") == 0 && v != NULL) {
            interval_ms = atoi(v);
            i++;
        } else {
            fprintf(stderr, "usage: iob-logging [--writers N] [--records M] [--interval-ms T]\n");
            return 2;
        }
    }
    if (writers < 1 || writers > MAX_WRITERS) {
        fprintf(stderr, "iob-logging: 1 to %d writers\n", MAX_WRITERS);
        return 2;
    }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        return 1;
    }
    self[len] = '\0';
    return reader_main(self, writers, records, interval_ms);
}
