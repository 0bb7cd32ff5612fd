/* SPDX-License-Identifier: MIT */
/*
 * Hostile writers of the mediated request channel hurt only themselves. Each test starts
 * iob_channel_attacker (a separate process) with a writer endpoint of its own on the same
 * shared ring as this process's well-behaved writer, lets it attack its channel (random
 * words and absurd lengths, half a request then sleep, an unpublished half request, holes
 * punched in its channel and the doorbell, a scribbled doorbell, a flood of requests),
 * and meanwhile checks that:
 * - every record of the good writer arrives, in order and intact, each call answered
 *   within a bound (generous: the reference host is small and shared);
 * - iobd lives, and its descriptors, accounted bytes and channel mappings are back at
 *   their start values once the attacker is killed (its channel is reclaimed).
 * The attacker also checks the channel's protections: it cannot map, write, punch or
 * resize or seal what it may not ("denied 7").
 * The channel is new, so there is no old code for these to fail on: they demonstrate the
 * properties of docs/zircon-iob.md L.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "map_harness.h"
#include "mediated_records.h"
#include "shm/mediated.h"
#include "test_regions.h"

extern char** environ;

#define TAG_GOOD 0x676f6f64ull /* "good" */
#define TAG_EVIL 0x6576696cull /* "evil" */
#define RING_PAGES 64u
#define RECORDS 2000u
/* The slowest call the good writer may see while attacked (a loaded 2-CPU host). */
#define MAX_CALL_S 2.0

static map_daemon_t g_daemon;

typedef struct ring {
    zx_handle_t shared;
    zx_handle_t good_reader; /* ep0 of the good writer's IOB: maps the ring */
    zx_handle_t good;        /* its writer endpoint, this process's */
    zx_handle_t evil_reader;
    char evil_token[IOB_TOKEN_SIZE];
    void* base;
    uint64_t size;
    iob_mwrb_reader_t reader;
} ring_t;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static zx_handle_t make_iob(ring_t* r, uint64_t tag, zx_handle_t* writer) {
    zx_handle_t ep0;
    assert_int_equal(ring_iob_create(r->shared, tag, &ep0, writer), ZX_OK);
    return ep0;
}

static void ring_create(ring_t* r) {
    memset(r, 0, sizeof *r);
    uint64_t page = zx_system_get_page_size();
    r->size = (RING_PAGES + 1) * page;
    assert_int_equal(zx_iob_create_shared_region(0, r->size, &r->shared), ZX_OK);
    r->good_reader = make_iob(r, TAG_GOOD, &r->good);
    zx_handle_t evil;
    r->evil_reader = make_iob(r, TAG_EVIL, &evil);
    assert_int_equal(iob_handle_export(evil, r->evil_token), ZX_OK);
    zx_vaddr_t addr = 0;
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                                     r->good_reader, 0, 0, (size_t)r->size, &addr),
                     ZX_OK);
    r->base = (void*)addr;
    assert_int_equal(iob_mwrb_reader_init(&r->reader, r->base, r->size, page), ZX_OK);
}

static void ring_destroy(ring_t* r) {
    zx_vmar_unmap(zx_vmar_root_self(), (zx_vaddr_t)r->base, r->size);
    zx_handle_t hs[4] = {r->good_reader, r->good, r->evil_reader, r->shared};
    zx_handle_close_many(hs, 4);
}

/*
 * Reads what the ring holds: the good writer's records must come in order (*next) and
 * intact; the attacker's may be anything it wrote, but carry its tag.
 */
static void drain(ring_t* r, uint64_t* next) {
    uint8_t buf[65536];
    iob_mwrb_record_t rec;
    zx_status_t st;
    while ((st = iob_mwrb_peek(&r->reader, &rec, buf, sizeof buf)) == ZX_OK) {
        if (rec.tag == TAG_GOOD) {
            uint8_t want[MEDIATED_RECORD_MAX];
            size_t len = mediated_record_fill(*next, want);
            assert_int_equal(rec.length, len);
            assert_memory_equal(buf, want, len);
            (*next)++;
        } else {
            assert_true(rec.tag == TAG_EVIL);
        }
        assert_int_equal(iob_mwrb_advance(&r->reader, &rec), ZX_OK);
    }
    assert_int_equal(st, ZX_ERR_SHOULD_WAIT);
}

/* Mappings of channel memory in iobd (one per open channel). */
static int iobd_channels(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)g_daemon.pid);
    FILE* f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, "iob-mediated-channel") != NULL;
    }
    fclose(f);
    return n;
}

static uint64_t iobd_bytes(void) {
    iob__session_t* s;
    assert_int_equal(iob__session_get(&s), ZX_OK);
    iob_conn_server_info_t info;
    assert_int_equal(iob_conn_server_info(s->conn, &info), ZX_OK);
    iob__session_put(s);
    return info.bytes_in_use;
}

static bool iobd_alive(void) {
    return kill(g_daemon.pid, 0) == 0 && waitpid(g_daemon.pid, NULL, WNOHANG) == 0;
}

static size_t iobd_fds_settled(void) {
    size_t n = (size_t)map_daemon_fds(&g_daemon, NULL);
    for (int same = 0, i = 0; same < 10 && i < 200; i++) {
        usleep(10000);
        size_t again = (size_t)map_daemon_fds(&g_daemon, NULL);
        same = again == n ? same + 1 : 0;
        n = again;
    }
    return n;
}

static void attack(const char* mode) {
    ring_t r;
    ring_create(&r);
    uint64_t next = 0;
    /* The good writer's first call opens its channel: the start values count it. */
    uint8_t p[MEDIATED_RECORD_MAX];
    zx_iovec_t v = {p, mediated_record_fill(next, p)};
    assert_int_equal(zx_iob_writev(r.good, 0, 0, &v, 1), ZX_OK);
    uint64_t sent = 1;
    drain(&r, &next);
    int chans0 = iobd_channels();
    assert_true(chans0 >= 1); /* this process's writes go through a channel */
    size_t fds0 = iobd_fds_settled();
    uint64_t bytes0 = iobd_bytes();

    const char* args[] = {mode, r.evil_token, NULL};
    int out = -1;
    pid_t pid = map_spawn(IOB_TEST_CHANNEL_ATTACKER, args, &out);
    char line[128];
    bool ready = false;
    int denied = -1;
    while (!ready && map_read_line(out, line, sizeof line, 30000)) {
        sscanf(line, "denied %d", &denied);
        ready = strcmp(line, "ready") == 0;
    }
    close(out);
    if (!ready) {
        kill(pid, SIGKILL);
        fail_msg("attacker %s did not start (exit %d)", mode, map_wait(pid));
    }
    if (strcmp(mode, "punch") == 0) {
        assert_int_equal(denied, 7);
    }
    assert_int_equal(iobd_channels(), chans0 + 1);

    double worst = 0;
    while (sent < RECORDS) {
        v.buffer = p;
        v.capacity = mediated_record_fill(sent, p);
        double t0 = now_s();
        zx_status_t st = zx_iob_writev(r.good, 0, 0, &v, 1);
        double took = now_s() - t0;
        worst = took > worst ? took : worst;
        if (st == ZX_ERR_NO_SPACE) {
            drain(&r, &next); /* the flood fills the shared ring: make room, retry */
            continue;
        }
        assert_int_equal(st, ZX_OK);
        sent++;
        if (sent % 16 == 0) {
            drain(&r, &next);
        }
    }
    drain(&r, &next);
    printf("# %s: %u good records, slowest call %.1f ms\n", mode, RECORDS, worst * 1000);
    assert_int_equal(next, RECORDS);
    assert_true(worst < MAX_CALL_S);
    assert_true(iobd_alive());

    kill(pid, SIGKILL);
    assert_int_equal(map_wait(pid), 128 + SIGKILL);
    size_t fds = 0;
    int chans = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < 500; i++) {
        fds = (size_t)map_daemon_fds(&g_daemon, NULL);
        chans = iobd_channels();
        bytes = iobd_bytes();
        if (fds == fds0 && chans == chans0 && bytes == bytes0) {
            break;
        }
        usleep(10000);
    }
    assert_int_equal(fds, fds0);
    assert_int_equal(chans, chans0);
    assert_int_equal(bytes, bytes0);
    assert_true(iobd_alive());
    /* And the good writer keeps going after the attacker is gone. */
    v.capacity = mediated_record_fill(next, p);
    assert_int_equal(zx_iob_writev(r.good, 0, 0, &v, 1), ZX_OK);
    drain(&r, &next);
    assert_int_equal(next, RECORDS + 1);
    ring_destroy(&r);
}

static void test_scribble(void** state) {
    (void)state;
    attack("scribble");
}

static void test_half_then_sleep(void** state) {
    (void)state;
    attack("half");
}

static void test_unpublished_half(void** state) {
    (void)state;
    attack("stall");
}

static void test_punch_holes(void** state) {
    (void)state;
    attack("punch");
}

static void test_doorbell_scribble(void** state) {
    (void)state;
    attack("doorbell");
}

static void test_flood(void** state) {
    (void)state;
    attack("flood");
}

int main(void) {
    map_daemon_start(&g_daemon, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scribble),          cmocka_unit_test(test_half_then_sleep),
        cmocka_unit_test(test_unpublished_half),  cmocka_unit_test(test_punch_holes),
        cmocka_unit_test(test_doorbell_scribble), cmocka_unit_test(test_flood),
    };
    int rc = cmocka_run_group_tests_name("mediated_channel", tests, NULL, NULL);
    map_daemon_stop(&g_daemon);
    return rc;
}
