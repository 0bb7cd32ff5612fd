/* SPDX-License-Identifier: MIT */
/*
 * zx_iob_writev and zx_iob_allocate_id end to end: libiob -> (map broker | gRPC) -> iobd's
 * core -> a shared region read back through shm/mediated.h's validated reader.
 *
 * Run as `test_mediated_ring` (co-located: the broker carries the mediated calls) and as
 * `test_mediated_ring grpc` (mappings still through the broker, mediated calls over gRPC,
 * the way a client of a remote iobd makes them). The reader is this process; writers are
 * other processes started with posix_spawn.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
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

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "map_harness.h"
#include "mediated_records.h"
#include "shm/fault_guard.h"
#include "shm/mediated.h"
#include "test_regions.h"

extern char** environ;

#define TAG 0x7461672d31323334ull /* "tag-1234" */
#define RING_PAGES 64u

static bool g_grpc; /* the gRPC variant (see force_grpc) */
static map_daemon_t g_daemon;

/*
 * The gRPC variant: this process (and the writers it starts) keep the broker for mapping
 * but send mediated calls over gRPC, as a process talking to a remote iobd would.
 */
static void force_grpc(void) {
    iob__session_t* s;
    if (iob__session_get(&s) == ZX_OK) {
        pthread_mutex_lock(&s->broker_lock);
        s->broker_no_mediated = true;
        pthread_mutex_unlock(&s->broker_lock);
        iob__session_put(s);
    }
}

static pid_t spawn_writer(const char* const* args, int* out_fd) {
    char* argv[8] = {strdup(IOB_TEST_MEDIATED_PEER), strdup(g_grpc ? "grpc" : "broker")};
    size_t n = 2;
    for (size_t i = 0; args[i] != NULL && n < 7; i++) {
        argv[n++] = strdup(args[i]);
    }
    argv[n] = NULL;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawn(&pid, IOB_TEST_MEDIATED_PEER, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    for (size_t i = 0; i < n; i++) {
        free(argv[i]);
    }
    assert_int_equal(rc, 0);
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

/* ---- Fixture: a shared region, an IOB on it, the reader's mapping ---- */

typedef struct ring {
    zx_handle_t shared;
    zx_handle_t ep0; /* map read + write: the reader (advances tail) */
    zx_handle_t ep1; /* MEDIATED_WRITE only */
    uint64_t pg;
    uint64_t size;
    zx_vaddr_t map;
    iob_mwrb_reader_t reader;
} ring_t;

static void ring_create(ring_t* r, uint64_t pages) {
    memset(r, 0, sizeof *r);
    r->pg = zx_system_get_page_size();
    assert_int_equal(zx_iob_create_shared_region(0, pages * r->pg, &r->shared), ZX_OK);
    assert_int_equal(ring_iob_create(r->shared, TAG, &r->ep0, &r->ep1), ZX_OK);
    zx_iob_region_info_t info;
    size_t actual = 0, avail = 0;
    assert_int_equal(zx_object_get_info(r->ep0, ZX_INFO_IOB_REGIONS, &info, sizeof info, &actual,
                                        &avail),
                     ZX_OK);
    assert_int_equal(actual, 1);
    r->size = info.region.size != 0 ? info.region.size : pages * r->pg;
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                                     r->ep0, 0, 0, r->size, &r->map),
                     ZX_OK);
    assert_int_equal(iob_mwrb_reader_init(&r->reader, (void*)r->map, r->size, r->pg), ZX_OK);
}

static void ring_destroy(ring_t* r) {
    zx_vmar_unmap(zx_vmar_root_self(), r->map, r->size);
    zx_handle_close(r->ep0);
    zx_handle_close(r->ep1);
    zx_handle_close(r->shared);
}

/* Reads the next record and checks it is record `seq`; false when there is none. */
static bool read_one(ring_t* r, uint64_t seq) {
    uint8_t buf[MEDIATED_RECORD_MAX], want[MEDIATED_RECORD_MAX];
    iob_mwrb_record_t rec;
    zx_status_t st = iob_mwrb_peek(&r->reader, &rec, buf, sizeof buf);
    if (st == ZX_ERR_SHOULD_WAIT) {
        return false;
    }
    assert_int_equal(st, ZX_OK);
    assert_true(rec.tag == TAG);
    size_t len = mediated_record_fill(seq, want);
    assert_int_equal(rec.length, len);
    assert_memory_equal(buf, want, len);
    assert_int_equal(iob_mwrb_advance(&r->reader, &rec), ZX_OK);
    return true;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Tests ---- */

/* Another process writes many records; this one reads and checks every one. */
static void test_writer_process(void** state) {
    (void)state;
    ring_t r;
    ring_create(&r, 2); /* a small ring (B = one page): the writer may meet NO_SPACE */
    char token[IOB_TOKEN_SIZE];
    assert_int_equal(iob_handle_export(r.ep1, token), ZX_OK);
    r.ep1 = ZX_HANDLE_INVALID;
    const uint64_t count = 3000;
    char count_s[32];
    snprintf(count_s, sizeof count_s, "%llu", (unsigned long long)count);
    const char* args[] = {"writev", token, count_s, NULL};
    int out;
    pid_t pid = spawn_writer(args, &out);
    char line[128];
    assert_true(map_read_line(out, line, sizeof line, 10000));
    assert_string_equal(line, "ready");
    uint64_t seq = 0;
    uint64_t deadline = now_ns() + 60ull * 1000000000u;
    while (seq < count && now_ns() < deadline) {
        if (read_one(&r, seq)) {
            seq++;
            continue;
        }
        /* Nothing yet: the strobe wakes us; a short timeout covers one that came before. */
        zx_signals_t obs = 0;
        zx_object_wait_one(r.shared, ZX_IOB_SHARED_REGION_UPDATED, zx_deadline_after(20000000),
                           &obs);
    }
    assert_int_equal(seq, count);
    assert_true(map_read_line(out, line, sizeof line, 10000));
    unsigned long long no_space = 0;
    assert_int_equal(sscanf(line, "done %llu", &no_space), 1);
    printf("writer: %llu records, %llu NO_SPACE retries\n", (unsigned long long)count, no_space);
    assert_int_equal(map_wait(pid), 0);
    close(out);
    /* Nothing left behind. */
    iob_mwrb_record_t rec;
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, NULL, 0), ZX_ERR_SHOULD_WAIT);
    ring_destroy(&r);
}

/* NO_SPACE when full, and writes succeed again once the reader advances tail. */
static void test_no_space_and_recovery(void** state) {
    (void)state;
    ring_t r;
    ring_create(&r, 2); /* B = one page */
    uint8_t p[MEDIATED_RECORD_MAX];
    uint64_t written = 0;
    zx_status_t st;
    for (;;) {
        size_t len = mediated_record_fill(written, p);
        zx_iovec_t v = {p, len};
        st = zx_iob_writev(r.ep1, 0, 0, &v, 1);
        if (st != ZX_OK) {
            break;
        }
        written++;
    }
    assert_int_equal(st, ZX_ERR_NO_SPACE);
    assert_true(written > 0);
    /* A.6 order: a full ring is NO_SPACE even for an unreadable payload (step 9/10 < 11). */
    zx_iovec_t bad = {NULL, 4000};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &bad, 1), ZX_ERR_NO_SPACE);
    assert_true(read_one(&r, 0));
    /* Record 0 was consumed: record `written` now fits if it is no larger. */
    uint8_t q[MEDIATED_RECORD_MAX];
    size_t len = mediated_record_fill(0, q);
    zx_iovec_t v = {q, len};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &v, 1), ZX_OK);
    for (uint64_t s = 1; s < written; s++) {
        assert_true(read_one(&r, s));
    }
    assert_true(read_one(&r, 0));
    ring_destroy(&r);
}

typedef struct waiter {
    zx_handle_t h;
    zx_status_t st;
    zx_signals_t observed;
} waiter_t;

static void* wait_thread(void* arg) {
    waiter_t* w = arg;
    w->st = zx_object_wait_one(w->h, ZX_IOB_SHARED_REGION_UPDATED, zx_deadline_after(10000000000),
                               &w->observed);
    return NULL;
}

/* The strobe wakes a wait armed before the write, never one armed after it. */
static void test_strobe(void** state) {
    (void)state;
    ring_t r;
    ring_create(&r, 4);
    waiter_t w = {r.shared, 1, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
    usleep(300000); /* the wait is armed in iobd by then */
    uint64_t v = 42;
    zx_iovec_t iov = {&v, sizeof v};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &iov, 1), ZX_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.st, ZX_OK);
    assert_true((w.observed & ZX_IOB_SHARED_REGION_UPDATED) != 0);
    /* Not latched: a wait armed after the write times out and does not observe it. */
    zx_signals_t obs = 0xffffffffu;
    assert_int_equal(zx_object_wait_one(r.shared, ZX_IOB_SHARED_REGION_UPDATED,
                                        zx_deadline_after(200000000), &obs),
                     ZX_ERR_TIMED_OUT);
    assert_int_equal(obs & ZX_IOB_SHARED_REGION_UPDATED, 0);
    /* User signals on a shared region work like on an endpoint. */
    assert_int_equal(zx_object_signal(r.shared, 0, ZX_USER_SIGNAL_1), ZX_OK);
    assert_int_equal(zx_object_wait_one(r.shared, ZX_USER_SIGNAL_1, zx_deadline_after(1000000000),
                                        &obs),
                     ZX_OK);
    assert_int_equal(obs & (ZX_USER_SIGNAL_1 | ZX_IOB_SHARED_REGION_UPDATED), ZX_USER_SIGNAL_1);
    ring_destroy(&r);
}

/*
 * A strobe event carries the shared region's state: a user signal set just before a write
 * is still in the event that reports the write. (iob_signal_read keeps one entry per
 * handle, so a strobe event without the state would replace the USER_0 event not yet read.)
 */
static void test_strobe_event_keeps_user_signals(void** state) {
    (void)state;
    /* Events are recorded only once the fd exists: ask for it before anything happens. */
    int sfd = iob_signal_fd();
    assert_true(sfd >= 0);
    ring_t r;
    ring_create(&r, 4);
    iob_signal_event_t ev[16];
    while (iob_signal_read(ev, 16) > 0) {
    }
    assert_int_equal(zx_object_signal(r.shared, 0, ZX_USER_SIGNAL_0), ZX_OK);
    uint64_t v = 7;
    zx_iovec_t iov = {&v, sizeof v};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &iov, 1), ZX_OK);
    /* The USER_0 change may be read on its own first; the strobe must still carry it. */
    zx_signals_t strobe_event = 0;
    bool user0_seen = false;
    zx_time_t deadline = zx_deadline_after(ZX_SEC(5));
    while (strobe_event == 0 && zx_clock_get_monotonic() < deadline) {
        size_t n = iob_signal_read(ev, 16);
        for (size_t i = 0; i < n; i++) {
            if (ev[i].handle != r.shared) {
                continue;
            }
            user0_seen = user0_seen || (ev[i].signals & ZX_USER_SIGNAL_0) != 0;
            if ((ev[i].signals & ZX_IOB_SHARED_REGION_UPDATED) != 0) {
                strobe_event = ev[i].signals;
            }
        }
        if (n == 0) {
            struct pollfd p = {.fd = sfd, .events = POLLIN};
            poll(&p, 1, 100);
        }
    }
    assert_int_equal(strobe_event, ZX_USER_SIGNAL_0 | ZX_IOB_SHARED_REGION_UPDATED);
    assert_true(user0_seen);
    /* The state itself: USER_0, never the strobe. */
    zx_signals_t obs = 0;
    assert_int_equal(zx_object_wait_one(r.shared, ZX_USER_SIGNAL_0, 0, &obs), ZX_OK);
    assert_int_equal(obs, ZX_USER_SIGNAL_0);
    /* And the record the strobe announced is there. */
    uint64_t got = 0;
    iob_mwrb_record_t rec;
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, &got, sizeof got), ZX_OK);
    assert_int_equal(rec.length, sizeof got);
    assert_int_equal(got, 7);
    ring_destroy(&r);
}

/* Every documented error of A.6 through the real client path, in Zircon's order. */
static void test_writev_errors(void** state) {
    (void)state;
    ring_t r;
    ring_create(&r, RING_PAGES);
    uint8_t buf[64] = {1, 2, 3};
    zx_iovec_t ok = {buf, sizeof buf};
    /* 1. options */
    assert_int_equal(zx_iob_writev(r.ep1, 1, 0, &ok, 1), ZX_ERR_INVALID_ARGS);
    /* 2. handle and rights */
    assert_int_equal(zx_iob_writev(0x7ffffff3u, 0, 0, &ok, 1), ZX_ERR_BAD_HANDLE);
    assert_int_equal(zx_iob_writev(r.shared, 0, 0, &ok, 1), ZX_ERR_WRONG_TYPE);
    zx_handle_t no_write;
    assert_int_equal(zx_handle_duplicate(r.ep1, ZX_DEFAULT_IOB_RIGHTS & ~ZX_RIGHT_WRITE, &no_write),
                     ZX_OK);
    assert_int_equal(zx_iob_writev(no_write, 0, 0, &ok, 1), ZX_ERR_ACCESS_DENIED);
    zx_handle_t none;
    assert_int_equal(zx_handle_duplicate(r.ep1, 0, &none), ZX_OK);
    assert_int_equal(zx_iob_writev(none, 0, 0, &ok, 1), ZX_ERR_ACCESS_DENIED);
    /* 3. index */
    assert_int_equal(zx_iob_writev(r.ep1, 0, 1, &ok, 1), ZX_ERR_OUT_OF_RANGE);
    /* 5. the reader's endpoint has no MEDIATED_WRITE */
    assert_int_equal(zx_iob_writev(r.ep0, 0, 0, &ok, 1), ZX_ERR_ACCESS_DENIED);
    /* 6. nine vectors: the client does not read them (a NULL array would fault) */
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, NULL, 9), ZX_ERR_INVALID_ARGS);
    /* ... but the handle is checked first */
    assert_int_equal(zx_iob_writev(0x7ffffff3u, 0, 0, NULL, 9), ZX_ERR_BAD_HANDLE);
    /* 7. unreadable array: NULL, and an address that cannot be read */
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, NULL, 1), ZX_ERR_INVALID_ARGS);
    void* none_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(none_page != MAP_FAILED);
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, (const zx_iovec_t*)none_page, 2),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_iob_writev(r.ep0, 0, 0, NULL, 1), ZX_ERR_ACCESS_DENIED);
    /* 8. more than 65519 bytes, overflow-safe */
    zx_iovec_t big[2] = {{buf, 65519}, {buf, 1}};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, big, 2), ZX_ERR_INVALID_ARGS);
    zx_iovec_t wrap[2] = {{buf, SIZE_MAX}, {buf, 2}};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, wrap, 2), ZX_ERR_INVALID_ARGS);
    /* 11. unreadable payload: NULL with a capacity, and a PROT_NONE page */
    zx_iovec_t nul = {NULL, 8};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &nul, 1), ZX_ERR_NOT_FOUND);
    zx_iovec_t prot[2] = {{buf, 8}, {none_page, 16}};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, prot, 2), ZX_ERR_NOT_FOUND);
    /* Partly readable: the last byte of a readable page and the PROT_NONE page after it. */
    uint8_t* two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(two != MAP_FAILED);
    assert_int_equal(mprotect(two + 4096, 4096, PROT_NONE), 0);
    zx_iovec_t straddle = {two + 4000, 200};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &straddle, 1), ZX_ERR_NOT_FOUND);
    /* Nothing was written by any of the failures. */
    iob_mwrb_record_t rec;
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, NULL, 0), ZX_ERR_SHOULD_WAIT);
    /* Valid edge cases: (NULL, 0), ({NULL, 0}, 1), exactly 65519 bytes, a fresh page. */
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, NULL, 0), ZX_OK);
    zx_iovec_t empty = {NULL, 0};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &empty, 1), ZX_OK);
    uint8_t* max = malloc(65519);
    for (size_t i = 0; i < 65519; i++) {
        max[i] = (uint8_t)(i * 13u);
    }
    zx_iovec_t maxv[3] = {{max, 1000}, {max + 1000, 0}, {max + 1000, 64519}};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, maxv, 3), ZX_OK);
    zx_iovec_t fresh = {two, 64}; /* untouched anonymous memory: needs a page fault only */
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &fresh, 1), ZX_OK);
    uint8_t* got = malloc(65519);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, 65519), ZX_OK);
        assert_int_equal(rec.length, 0);
        assert_true(rec.tag == TAG);
        assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
    }
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, 65519), ZX_OK);
    assert_int_equal(rec.length, 65519);
    assert_memory_equal(got, max, 65519);
    assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, 65519), ZX_OK);
    assert_int_equal(rec.length, 64);
    assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
    free(max);
    free(got);
    munmap(two, 8192);
    munmap(none_page, 4096);
    zx_handle_close(no_write);
    zx_handle_close(none);
    ring_destroy(&r);
}

/* A region that is not a ring: WRONG_TYPE (step 4); handle ops on a shared region. */
static void test_wrong_type_and_handle_ops(void** state) {
    (void)state;
    uint64_t pg = zx_system_get_page_size();
    zx_iob_region_t reg = test_private_region(
        pg, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE | ZX_IOB_ACCESS_EP1_CAN_MAP_READ);
    zx_handle_t a, b;
    assert_int_equal(zx_iob_create(0, &reg, 1, &a, &b), ZX_OK);
    uint64_t v = 1;
    zx_iovec_t iov = {&v, sizeof v};
    assert_int_equal(zx_iob_writev(b, 0, 0, &iov, 1), ZX_ERR_WRONG_TYPE);
    uint32_t id = 0;
    assert_int_equal(zx_iob_allocate_id(b, 0, 0, &v, sizeof v, &id), ZX_ERR_WRONG_TYPE);
    zx_handle_close(a);
    zx_handle_close(b);

    /* Shared-region handles: basic info, duplicate, replace, transfer, close. */
    zx_handle_t sr;
    assert_int_equal(zx_iob_create_shared_region(1, 2 * pg, &sr), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_iob_create_shared_region(0, 2 * pg, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_iob_create_shared_region(0, 2 * pg, &sr), ZX_OK);
    zx_info_handle_basic_t info;
    assert_int_equal(zx_object_get_info(sr, ZX_INFO_HANDLE_BASIC, &info, sizeof info, NULL, NULL),
                     ZX_OK);
    assert_int_equal(info.type, ZX_OBJ_TYPE_IOB_SHARED_REGION);
    assert_int_equal(info.rights, ZX_DEFAULT_IOB_SHARED_REGION_RIGHTS);
    zx_handle_t dup, rep;
    assert_int_equal(zx_handle_duplicate(sr, ZX_RIGHT_SAME_RIGHTS, &dup), ZX_OK);
    assert_int_equal(zx_handle_replace(dup, ZX_RIGHT_WAIT | ZX_RIGHT_TRANSFER, &rep), ZX_OK);
    zx_info_handle_basic_t info2;
    assert_int_equal(zx_object_get_info(rep, ZX_INFO_HANDLE_BASIC, &info2, sizeof info2, NULL,
                                        NULL),
                     ZX_OK);
    assert_int_equal(info2.koid, info.koid);
    assert_int_equal(info2.rights, ZX_RIGHT_WAIT | ZX_RIGHT_TRANSFER);
    char token[IOB_TOKEN_SIZE];
    assert_int_equal(iob_handle_export(rep, token), ZX_OK);
    zx_handle_t back;
    assert_int_equal(iob_handle_import(token, &back), ZX_OK);
    assert_int_equal(zx_object_get_info(back, ZX_INFO_HANDLE_BASIC, &info2, sizeof info2, NULL,
                                        NULL),
                     ZX_OK);
    assert_int_equal(info2.koid, info.koid);
    assert_int_equal(zx_handle_close(back), ZX_OK);
    assert_int_equal(zx_handle_close(sr), ZX_OK);
    assert_int_equal(zx_handle_close(sr), ZX_ERR_BAD_HANDLE);
}

/* ID allocator: IDs in order, blobs readable through the mapping, A.5's errors. */
static void test_allocate_id(void** state) {
    (void)state;
    uint64_t pg = zx_system_get_page_size();
    zx_handle_t ep0, ep1;
    zx_vaddr_t map;
    assert_int_equal(idalloc_iob_create(4 * pg, &ep0, &ep1, &map), ZX_OK);
    const char* blobs[] = {"first", "", "the third blob"};
    for (uint32_t i = 0; i < 3; i++) {
        uint32_t id = 99;
        assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, blobs[i], strlen(blobs[i]), &id), ZX_OK);
        assert_int_equal(id, i);
    }
    uint32_t id = 99;
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, NULL, 0, &id), ZX_OK);
    assert_int_equal(id, 3);
    for (uint32_t i = 0; i < 3; i++) {
        const void* p;
        uint32_t size;
        assert_int_equal(iob_idalloc_lookup((const void*)map, 4 * pg, i, &p, &size), ZX_OK);
        assert_int_equal(size, strlen(blobs[i]));
        assert_memory_equal(p, blobs[i], size);
    }
    /* Errors in A.5's order. */
    assert_int_equal(zx_iob_allocate_id(ep1, 1, 0, "x", 1, &id), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_iob_allocate_id(0x7ffffff3u, 0, 0, "x", 1, &id), ZX_ERR_BAD_HANDLE);
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 1, "x", 1, &id), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(zx_iob_allocate_id(ep0, 0, 0, "x", 1, &id), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, NULL, 4, &id), ZX_ERR_INVALID_ARGS);
    void* none_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, none_page, 16, &id), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, "x", 1, NULL), ZX_ERR_INVALID_ARGS);
    /* Full: NO_MEMORY comes before the unreadable blob (step 6's order). */
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, none_page, 8 * pg, &id), ZX_ERR_NO_MEMORY);
    munmap(none_page, 4096);
    /* Still counting: the failures above were not given IDs the caller could see. */
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, "z", 1, &id), ZX_OK);
    assert_true(id >= 4);
    zx_vmar_unmap(zx_vmar_root_self(), map, 4 * pg);
    zx_handle_close(ep0);
    zx_handle_close(ep1);
}

/*
 * Blobs too large for one message. Over the map broker they travel in a memfd and are
 * stored like any other. Over gRPC (past 1 MiB) they are not sent: iobd checks the call
 * without them, so every error still comes in A.5's order, and a call that would have gone
 * on is ZX_ERR_NOT_SUPPORTED with no ID taken. 1 MiB itself travels either way.
 */
static void test_allocate_id_large_blob(void** state) {
    (void)state;
    uint64_t region = 4u << 20;
    zx_handle_t ep0, ep1;
    zx_vaddr_t map;
    assert_int_equal(idalloc_iob_create(region, &ep0, &ep1, &map), ZX_OK);
    size_t big = 2u << 20;
    unsigned char* blob = malloc(big);
    assert_non_null(blob);
    for (size_t i = 0; i < big; i++) {
        blob[i] = (unsigned char)(i * 7u);
    }
    uint32_t id = 99;
    /* Every step before the copy answers as it would for a small blob. */
    assert_int_equal(zx_iob_allocate_id(ep1, 1, 0, blob, big, &id), ZX_ERR_INVALID_ARGS);
    assert_int_equal(zx_iob_allocate_id(0x7ffffff3u, 0, 0, blob, big, &id), ZX_ERR_BAD_HANDLE);
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 1, blob, big, &id), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(zx_iob_allocate_id(ep0, 0, 0, blob, big, &id), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, blob, big, NULL), ZX_ERR_INVALID_ARGS);
    void* none = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(none != MAP_FAILED);
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, none, big, &id), ZX_ERR_INVALID_ARGS);
    /* Room is checked before the blob is looked at. */
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, none, 2 * region, &id), ZX_ERR_NO_MEMORY);
    munmap(none, big);
    assert_int_equal(id, 99);
    uint32_t next = 99;
    assert_int_equal(iob_idalloc_next_id((const void*)map, region, &next), ZX_OK);
    assert_int_equal(next, 0);

    const void* p;
    uint32_t size;
    uint32_t expect = 0;
    if (g_grpc) {
        assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, blob, big, &id), ZX_ERR_NOT_SUPPORTED);
        assert_int_equal(id, 99);
        assert_int_equal(iob_idalloc_next_id((const void*)map, region, &next), ZX_OK);
        assert_int_equal(next, 0);
    } else {
        assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, blob, big, &id), ZX_OK);
        assert_int_equal(id, 0);
        assert_int_equal(iob_idalloc_lookup((const void*)map, region, 0, &p, &size), ZX_OK);
        assert_int_equal(size, big);
        assert_memory_equal(p, blob, size);
        expect = 1;
    }
    assert_int_equal(zx_iob_allocate_id(ep1, 0, 0, blob + 1, 1u << 20, &id), ZX_OK);
    assert_int_equal(id, expect);
    assert_int_equal(iob_idalloc_lookup((const void*)map, region, expect, &p, &size), ZX_OK);
    assert_int_equal(size, 1u << 20);
    assert_memory_equal(p, blob + 1, size);
    free(blob);
    zx_vmar_unmap(zx_vmar_root_self(), map, region);
    zx_handle_close(ep0);
    zx_handle_close(ep1);
}

/* A writer killed mid-run: the reader sees PEER_CLOSED; iobd keeps serving. */
static void test_writer_killed(void** state) {
    (void)state;
    ring_t r;
    ring_create(&r, 4);
    char token[IOB_TOKEN_SIZE];
    assert_int_equal(iob_handle_export(r.ep1, token), ZX_OK);
    r.ep1 = ZX_HANDLE_INVALID;
    const char* args[] = {"hang", token, NULL};
    int out;
    pid_t pid = spawn_writer(args, &out);
    char line[128];
    assert_true(map_read_line(out, line, sizeof line, 10000));
    assert_string_equal(line, "ready 0");
    assert_true(read_one(&r, 0));
    zx_signals_t obs = 0;
    assert_int_equal(zx_object_wait_one(r.ep0, ZX_IOB_PEER_CLOSED, zx_deadline_after(100000000),
                                        &obs),
                     ZX_ERR_TIMED_OUT);
    kill(pid, SIGKILL);
    assert_int_equal(map_wait(pid), 128 + SIGKILL);
    close(out);
    assert_int_equal(zx_object_wait_one(r.ep0, ZX_IOB_PEER_CLOSED, zx_deadline_after(5000000000),
                                        &obs),
                     ZX_OK);
    ring_destroy(&r);
    /* Serving on: a fresh ring works. */
    ring_t r2;
    ring_create(&r2, 4);
    uint8_t p[MEDIATED_RECORD_MAX];
    size_t len = mediated_record_fill(5, p);
    zx_iovec_t v = {p, len};
    assert_int_equal(zx_iob_writev(r2.ep1, 0, 0, &v, 1), ZX_OK);
    assert_true(read_one(&r2, 5));
    ring_destroy(&r2);
}

/*
 * A buffer the library read a moment ago (its pages are remembered as readable) that the
 * program then protects: the next call still answers Zircon's status for it, whether the
 * payload (NOT_FOUND, step 11) or the iovec array (INVALID_ARGS, step 7) is gone, and the
 * call after the program gives the page back succeeds. Exercises the library's recovery of
 * a fault in its copy from remembered pages.
 */
static void test_protected_after_use(void** state) {
    (void)state;
    /*
     * cmocka puts its own SIGSEGV handler in place around each test: ours goes back on top,
     * or the library would not remember pages (it asks the kernel every time without it).
     */
    assert_int_equal(iob_fault_init(IOB_FAULT_SIGBUS | IOB_FAULT_SIGSEGV), ZX_OK);
    ring_t r;
    ring_create(&r, RING_PAGES);
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t* page = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(page != MAP_FAILED);
    memset(page, 0x6b, (size_t)pg);
    zx_iovec_t* vec = (zx_iovec_t*)(void*)(page + pg); /* the array on a page of its own */
    vec[0] = (zx_iovec_t){page + 100, 64};
    int records = 0;
    for (int round = 0; round < 20; round++) {
        assert_int_equal(zx_iob_writev(r.ep1, 0, 0, vec, 1), ZX_OK);
        records++;
        assert_int_equal(mprotect(page, (size_t)pg, PROT_NONE), 0);
        assert_int_equal(zx_iob_writev(r.ep1, 0, 0, vec, 1), ZX_ERR_NOT_FOUND);
        assert_int_equal(mprotect(page, (size_t)pg, PROT_READ | PROT_WRITE), 0);
        assert_int_equal(zx_iob_writev(r.ep1, 0, 0, vec, 1), ZX_OK);
        records++;
        assert_int_equal(mprotect(page + pg, (size_t)pg, PROT_NONE), 0);
        assert_int_equal(zx_iob_writev(r.ep1, 0, 0, vec, 1), ZX_ERR_INVALID_ARGS);
        assert_int_equal(mprotect(page + pg, (size_t)pg, PROT_READ | PROT_WRITE), 0);
    }
    /* Exactly the calls that succeeded wrote records, each whole. */
    uint8_t got[64];
    iob_mwrb_record_t rec;
    for (int i = 0; i < records; i++) {
        assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_OK);
        assert_int_equal(rec.length, 64);
        assert_int_equal(got[0], 0x6b);
        assert_int_equal(got[63], 0x6b);
        assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
    }
    assert_int_equal(iob_mwrb_peek(&r.reader, &rec, got, sizeof got), ZX_ERR_SHOULD_WAIT);
    munmap(page, (size_t)pg * 2);
    ring_destroy(&r);
}

/*
 * The same from a thread that blocks every signal (a common way to leave signals to one
 * sigwait thread): a fault the kernel cannot deliver to our handler kills the process, so
 * the library must not read remembered pages with memcpy there. Zircon answers NOT_FOUND.
 */
typedef struct blocked_call {
    zx_handle_t ep;
    uint8_t* page;
    long pg;
    zx_status_t first;
    zx_status_t second;
} blocked_call_t;

static void* blocked_thread(void* arg) {
    blocked_call_t* b = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    zx_iovec_t v = {b->page + 100, 64};
    b->first = zx_iob_writev(b->ep, 0, 0, &v, 1);
    mprotect(b->page, (size_t)b->pg, PROT_NONE);
    b->second = zx_iob_writev(b->ep, 0, 0, &v, 1); /* within the 2 ms the page is remembered */
    return NULL;
}

static void test_protected_after_use_signals_blocked(void** state) {
    (void)state;
    assert_int_equal(iob_fault_init(IOB_FAULT_SIGBUS | IOB_FAULT_SIGSEGV), ZX_OK);
    ring_t r;
    ring_create(&r, RING_PAGES);
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t* page = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
    assert_true(page != MAP_FAILED);
    memset(page, 0x6b, (size_t)pg);
    for (int round = 0; round < 5; round++) {
        assert_int_equal(mprotect(page, (size_t)pg, PROT_READ | PROT_WRITE), 0);
        blocked_call_t b = {.ep = r.ep1, .page = page, .pg = pg};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, blocked_thread, &b), 0);
        pthread_join(th, NULL);
        assert_int_equal(b.first, ZX_OK);
        assert_int_equal(b.second, ZX_ERR_NOT_FOUND);
    }
    munmap(page, (size_t)pg);
    ring_destroy(&r);
}

/*
 * Stops iobd (SIGSTOP) and returns once every one of its threads is stopped: the signal
 * reaches a thread that is running on another CPU a moment later, and a request it
 * answered in that moment would not have waited at all.
 */
static void stop_iobd(pid_t pid) {
    assert_int_equal(kill(pid, SIGSTOP), 0);
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    for (int tries = 0; tries < 5000; tries++) {
        DIR* d = opendir(dir);
        assert_non_null(d);
        bool all = true;
        struct dirent* e;
        while ((e = readdir(d)) != NULL && all) {
            if (e->d_name[0] == '.') {
                continue;
            }
            char path[384];
            char buf[512] = "";
            snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
            FILE* f = fopen(path, "r");
            if (f == NULL) {
                continue; /* the thread ended */
            }
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = '\0';
            const char* paren = strrchr(buf, ')'); /* the state follows the name */
            all = paren != NULL && (paren[2] == 'T' || paren[2] == 't');
        }
        closedir(d);
        if (all) {
            return;
        }
        usleep(1000);
    }
    fail_msg("iobd did not stop");
}

/* Lets iobd run again after `ms` (it was stopped with SIGSTOP). */
typedef struct resume {
    pid_t pid;
    long ms;
} resume_t;

static void* resume_thread(void* arg) {
    const resume_t* r = arg;
    usleep((useconds_t)(r->ms * 1000));
    kill(r->pid, SIGCONT);
    return NULL;
}

/*
 * A writer whose answer is late sleeps (after spinning at most 50 us), and the answer
 * must wake it: iobd is stopped for 10 ms while the call is in flight. A lost wake-up
 * leaves the writer to its own re-check every 100 ms, so the call would take 100 ms.
 */
static void test_sleeping_writer_woken(void** state) {
    (void)state;
    if (g_grpc) {
        skip(); /* the channel's wake-up: the gRPC variant has no channel */
    }
    ring_t r;
    ring_create(&r, RING_PAGES);
    uint8_t p[64];
    memset(p, 0x3c, sizeof p);
    zx_iovec_t v = {p, sizeof p};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &v, 1), ZX_OK); /* the channel is open */
    const int rounds = 5;
    int slow = 0;
    uint64_t worst = 0;
    for (int round = 0; round < rounds; round++) {
        resume_t res = {.pid = g_daemon.pid, .ms = 10};
        pthread_t th;
        assert_int_equal(kill(g_daemon.pid, SIGSTOP), 0);
        assert_int_equal(pthread_create(&th, NULL, resume_thread, &res), 0);
        uint64_t t0 = now_ns();
        assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &v, 1), ZX_OK);
        uint64_t took = now_ns() - t0;
        pthread_join(th, NULL);
        worst = took > worst ? took : worst;
        slow += took > 60000000u;
    }
    printf("a call answered after iobd was stopped 10 ms: worst %.1f ms, %d of %d above 60 ms\n",
           (double)worst / 1e6, slow, rounds);
    assert_int_equal(slow, 0);
    iob_mwrb_record_t rec;
    for (int i = 0; i < rounds + 1; i++) {
        assert_int_equal(iob_mwrb_peek(&r.reader, &rec, NULL, 0), ZX_ERR_BUFFER_TOO_SMALL);
        assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
    }
    ring_destroy(&r);
}

/*
 * A writer whose answer never comes gives up after 10 s (ZX_ERR_TIMED_OUT) even when
 * signals keep interrupting its sleep: iobd is stopped, and the writing thread gets a
 * signal every 20 ms (a profiler, a timer). An interrupted sleep must count towards the
 * give-up time, or the call never returns while iobd is gone.
 */
static void on_usr1(int sig) {
    (void)sig;
}

typedef struct nagger {
    pthread_t target;
    _Atomic bool stop;
} nagger_t;

static void* nag_thread(void* arg) {
    nagger_t* n = arg;
    uint64_t t0 = now_ns();
    while (!atomic_load(&n->stop)) {
        pthread_kill(n->target, SIGUSR1);
        usleep(20000);
        if (now_ns() - t0 > 14ull * 1000000000u) {
            kill(g_daemon.pid, SIGCONT); /* the watchdog: the call did not give up */
        }
    }
    return NULL;
}

static void test_timeout_despite_signals(void** state) {
    (void)state;
    if (g_grpc) {
        skip(); /* the channel's wait: the gRPC variant has no channel */
    }
    ring_t r;
    ring_create(&r, RING_PAGES);
    uint8_t p[64];
    memset(p, 0x3d, sizeof p);
    zx_iovec_t v = {p, sizeof p};
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &v, 1), ZX_OK); /* the channel is open */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    nagger_t n = {.target = pthread_self()};
    atomic_init(&n.stop, false);
    stop_iobd(g_daemon.pid);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, nag_thread, &n), 0);
    uint64_t t0 = now_ns();
    zx_status_t st = zx_iob_writev(r.ep1, 0, 0, &v, 1);
    uint64_t took = now_ns() - t0;
    atomic_store(&n.stop, true);
    pthread_join(th, NULL);
    kill(g_daemon.pid, SIGCONT);
    sigaction(SIGUSR1, &old, NULL);
    printf("# a call with iobd stopped and a signal every 20 ms: status %d after %.1f s\n",
           (int)st, (double)took / 1e9);
    assert_int_equal(st, ZX_ERR_TIMED_OUT);
    assert_true(took < 13ull * 1000000000u);
    /* The next call takes a new channel (the record of the timed-out one may be there). */
    assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &v, 1), ZX_OK);
    ring_destroy(&r);
}

/* Round-trip latency of a small writev (reported, not asserted). */
static void test_latency(void** state) {
    (void)state;
    ring_t r;
    ring_create(&r, RING_PAGES);
    uint8_t p[64];
    memset(p, 0xab, sizeof p);
    zx_iovec_t v = {p, sizeof p};
    const int n = 2000;
    for (int i = 0; i < 50; i++) { /* warm-up: connections, caches */
        assert_int_equal(zx_iob_writev(r.ep1, 0, 0, &v, 1), ZX_OK);
        iob_mwrb_record_t rec;
        assert_int_equal(iob_mwrb_peek(&r.reader, &rec, NULL, 0), ZX_ERR_BUFFER_TOO_SMALL);
        assert_int_equal(iob_mwrb_advance(&r.reader, &rec), ZX_OK);
    }
    uint64_t t0 = now_ns();
    for (int i = 0; i < n; i++) {
        zx_status_t st = zx_iob_writev(r.ep1, 0, 0, &v, 1);
        if (st == ZX_ERR_NO_SPACE) {
            iob_mwrb_record_t rec;
            while (iob_mwrb_peek(&r.reader, &rec, NULL, 0) == ZX_ERR_BUFFER_TOO_SMALL) {
                iob_mwrb_advance(&r.reader, &rec);
            }
            i--;
            continue;
        }
        assert_int_equal(st, ZX_OK);
    }
    uint64_t t1 = now_ns();
    printf("zx_iob_writev 64 B over %s: %.1f us per call (%d calls)\n",
           g_grpc ? "gRPC" : "the map broker", (double)(t1 - t0) / n / 1000.0, n);
    uint32_t id;
    zx_iob_region_t reg = test_private_region(
        64u * r.pg, ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE | ZX_IOB_ACCESS_EP0_CAN_MAP_READ);
    reg.discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    zx_handle_t a, b;
    assert_int_equal(zx_iob_create(0, &reg, 1, &a, &b), ZX_OK);
    t0 = now_ns();
    for (int i = 0; i < n; i++) {
        assert_int_equal(zx_iob_allocate_id(b, 0, 0, p, 16, &id), ZX_OK);
    }
    t1 = now_ns();
    printf("zx_iob_allocate_id 16 B over %s: %.1f us per call\n",
           g_grpc ? "gRPC" : "the map broker", (double)(t1 - t0) / n / 1000.0);
    zx_handle_close(a);
    zx_handle_close(b);
    ring_destroy(&r);
}

int main(int argc, char** argv) {
    g_grpc = argc > 1 && strcmp(argv[1], "grpc") == 0;
    map_daemon_start(&g_daemon, NULL);
    if (g_grpc) {
        force_grpc();
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writev_errors),
        cmocka_unit_test(test_no_space_and_recovery),
        cmocka_unit_test(test_strobe),
        cmocka_unit_test(test_strobe_event_keeps_user_signals),
        cmocka_unit_test(test_wrong_type_and_handle_ops),
        cmocka_unit_test(test_allocate_id),
        cmocka_unit_test(test_allocate_id_large_blob),
        cmocka_unit_test(test_writer_process),
        cmocka_unit_test(test_writer_killed),
        cmocka_unit_test(test_protected_after_use),
        cmocka_unit_test(test_protected_after_use_signals_blocked),
        cmocka_unit_test(test_sleeping_writer_woken),
        cmocka_unit_test(test_timeout_despite_signals),
        cmocka_unit_test(test_latency),
    };
    int rc = cmocka_run_group_tests_name(g_grpc ? "mediated_ring_grpc" : "mediated_ring", tests,
                                         NULL, NULL);
    map_daemon_stop(&g_daemon);
    return rc;
}
