/* SPDX-License-Identifier: MIT */
/*
 * A client that destroys memory of regions it may write (iob_hostile_peer, a separate
 * process) cannot take iobd down. With 2 MiB hugepages (idalloc, writev, region) the hole
 * it punches cannot be filled again once it has drained the pool, so iobd's next access
 * there faults: zx_iob_allocate_id, zx_iob_writev and ReadRegion/WriteRegion each answer
 * ZX_ERR_IO_DATA_INTEGRITY (iob_core.h), iobd stays alive, serves another client promptly
 * meanwhile, and once the attacker is killed its descriptors and accounted bytes are back
 * at their start values. With 4 KiB pages (shmem) the same hole is harmless: iobd reads
 * zeros there, and the region cannot be truncated or sealed further.
 * The hugepage runs are skipped when the pool cannot hold its pages or may overcommit (a
 * surplus page would fill the hole).
 */
#include <errno.h>
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
#include "client/testkit/hugepage_pool.h"
#include "map_harness.h"
#include "test_regions.h"
#include "test_util.h"

extern char** environ;

static map_daemon_t g_daemon;
static iob__session_t* g_session;
static zx_handle_t g_own; /* this client's IOB, used while the attacker holds its own */
static uint64_t g_page;
static pid_t g_attacker; /* while it runs; killed by the teardown if a check failed */

/*
 * iobd's descriptor count once it is steady: fds of handles just closed may be closed
 * right after the reply (iob_core_release_defer).
 */
static size_t iobd_fd_count_settled(void) {
    size_t n = map_daemon_fds(&g_daemon, NULL);
    for (int same = 0, i = 0; same < 10 && i < 200; i++) {
        usleep(10000);
        size_t again = map_daemon_fds(&g_daemon, NULL);
        same = again == n ? same + 1 : 0;
        n = again;
    }
    return n;
}

static uint64_t iobd_bytes(void) {
    iob_conn_server_info_t info;
    assert_int_equal(iob_conn_server_info(g_session->conn, &info), ZX_OK);
    return info.bytes_in_use;
}

static bool iobd_alive(void) {
    return kill(g_daemon.pid, 0) == 0 && waitpid(g_daemon.pid, NULL, WNOHANG) == 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static pid_t spawn_attacker(const char* mode, int* out_fd) {
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    char* argv[] = {strdup(IOB_TEST_HOSTILE_PEER), strdup(mode), NULL};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, IOB_TEST_HOSTILE_PEER, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    free(argv[0]);
    free(argv[1]);
    close(p[1]);
    assert_int_equal(rc, 0);
    *out_fd = p[0];
    return pid;
}

/*
 * Runs the attacker in `mode` and returns the statuses it printed; checks on the way that
 * iobd lives and serves this client while the attacker holds everything, and that killing
 * the attacker gives back every descriptor and byte.
 */
static size_t run_attack(const char* mode, zx_status_t* statuses, size_t cap) {
    size_t fds0 = iobd_fd_count_settled();
    uint64_t bytes0 = iobd_bytes();
    int out = -1;
    pid_t pid = spawn_attacker(mode, &out);
    g_attacker = pid;
    size_t n = 0;
    bool ready = false;
    char line[256];
    while (!ready && map_read_line(out, line, sizeof line, 60000)) {
        if (strncmp(line, "status", 6) == 0) {
            char* p = line + 6;
            char* end;
            for (long v = strtol(p, &end, 10); end != p && n < cap; v = strtol(p, &end, 10)) {
                statuses[n++] = (zx_status_t)v;
                p = end;
            }
        }
        ready = strcmp(line, "ready") == 0;
    }
    close(out);
    if (!ready) {
        kill(pid, SIGKILL);
        g_attacker = 0;
        fail_msg("attacker %s ended early (exit %d); iobd %s", mode, map_wait(pid),
                 iobd_alive() ? "alive" : "dead");
    }
    assert_true(iobd_alive());

    /* Another client, meanwhile: its own region reads and writes, and a server query. */
    double t0 = now_s();
    uint8_t buf[64];
    memset(buf, 0x3C, sizeof buf);
    assert_int_equal(iob_conn_region_write(g_session->conn, g_own, 0, 0, buf, sizeof buf), ZX_OK);
    memset(buf, 0, sizeof buf);
    assert_int_equal(iob_conn_region_read(g_session->conn, g_own, 0, 0, buf, sizeof buf), ZX_OK);
    assert_int_equal(buf[63], 0x3C);
    (void)iobd_bytes();
    double took = now_s() - t0;
    assert_true(took < 1.0);

    kill(pid, SIGKILL);
    g_attacker = 0;
    assert_int_equal(map_wait(pid), 128 + SIGKILL);
    /* iobd ends the dead client's session when it notices; give it a moment. */
    size_t fds = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < 500; i++) {
        fds = map_daemon_fds(&g_daemon, NULL);
        bytes = iobd_bytes();
        if (fds == fds0 && bytes == bytes0) {
            break;
        }
        usleep(10000);
    }
    assert_int_equal(fds, fds0);
    assert_int_equal(bytes, bytes0);
    assert_true(iobd_alive());

    /* And new memory again, now that the attacker's pages are back. */
    zx_iob_region_t r = test_private_region(
        g_page, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE);
    zx_handle_t ep0, ep1;
    assert_int_equal(zx_iob_create(0, &r, 1, &ep0, &ep1), ZX_OK);
    zx_handle_t both[2] = {ep0, ep1};
    assert_int_equal(zx_handle_close_many(both, 2), ZX_OK);
    return n;
}

static void expect_all_lost(const char* mode, size_t want) {
    zx_status_t st[8];
    size_t n = run_attack(mode, st, 8);
    printf("# %s:", mode);
    for (size_t i = 0; i < n; i++) {
        printf(" %d", st[i]);
    }
    printf("\n");
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(st[i], ZX_ERR_IO_DATA_INTEGRITY);
    }
}

static void test_allocate_id_on_lost_memory(void** state) {
    (void)state;
    expect_all_lost("idalloc", 2);
}

static void test_writev_on_lost_memory(void** state) {
    (void)state;
    expect_all_lost("writev", 2);
}

static void test_region_rw_on_lost_memory(void** state) {
    (void)state;
    expect_all_lost("region", 4);
}

static void test_shmem_hole_reads_zeros(void** state) {
    (void)state;
    zx_status_t st[1];
    assert_int_equal(run_attack("shmem", st, 1), 1);
    assert_int_equal(st[0], ZX_OK);
}

static int attacker_reap(void** state) {
    (void)state;
    if (g_attacker > 0) {
        kill(g_attacker, SIGKILL);
        map_wait(g_attacker);
        g_attacker = 0;
    }
    return 0;
}

static bool pool_may_overcommit(void) {
    FILE* f = fopen("/proc/sys/vm/nr_overcommit_hugepages", "r");
    unsigned long long n = 1;
    if (f != NULL) {
        if (fscanf(f, "%llu", &n) != 1) {
            n = 1;
        }
        fclose(f);
    }
    return n != 0;
}

static int group_setup(void** state) {
    (void)state;
    if (iob__session_get(&g_session) != ZX_OK) {
        return -1;
    }
    g_page = zx_system_get_page_size();
    zx_iob_region_t r = test_private_region(
        g_page, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE);
    zx_handle_t ep1;
    if (zx_iob_create(0, &r, 1, &g_own, &ep1) != ZX_OK) {
        return -1;
    }
    return 0;
}

int main(int argc, char** argv) {
    /* One attack per run, each against its own iobd: on a server that dies of one, the
     * others still show what they do. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_allocate_id_on_lost_memory, attacker_reap),
        cmocka_unit_test_teardown(test_writev_on_lost_memory, attacker_reap),
        cmocka_unit_test_teardown(test_region_rw_on_lost_memory, attacker_reap),
        cmocka_unit_test_teardown(test_shmem_hole_reads_zeros, attacker_reap),
    };
    const char* modes[] = {"idalloc", "writev", "region", "shmem"};
    size_t which = 0;
    while (which < 4 && (argc != 2 || strcmp(argv[1], modes[which]) != 0)) {
        which++;
    }
    if (which == 4) {
        fprintf(stderr, "usage: %s idalloc|writev|region|shmem\n", argv[0]);
        return 2;
    }
    bool huge = which != 3;
    if (huge) {
        if (pool_may_overcommit()) {
            iob_test_skip("nr_overcommit_hugepages is not 0: a surplus page would fill the hole");
        }
        /* This client's page, and at most three of the attacker's before it drains the rest. */
        if (!iob_tk_pool_reserve(IOB_BACKING_2M, 8, NULL, 0)) {
            iob_test_skip("no room for 8 free 2 MiB hugepages");
        }
    }
    const char* extra[] = {"--hugepages", huge ? "2M" : "off", "--max-bytes", "unlimited", NULL};
    map_daemon_start(&g_daemon, extra);
    int rc = _cmocka_run_group_tests(modes[which], &tests[which], 1, group_setup, NULL);
    if (g_session != NULL) {
        iob__session_put(g_session);
    }
    map_daemon_stop(&g_daemon);
    if (huge) {
        iob_tk_pool_restore();
    }
    return rc;
}
