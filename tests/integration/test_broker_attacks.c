/* SPDX-License-Identifier: MIT */
/*
 * Hostile clients of the map broker against a real iobd, each a separate process
 * (iob_broker_attacker): a descriptor whose close lingers, a descriptor on a message that
 * may not carry one, a connection flood from one uid, a connection that never attaches.
 * For each: iobd stays alive, another client's calls (gRPC and broker, in this process
 * and in a new one) complete promptly, and iobd's descriptors and accounted bytes return
 * to where they were.
 */
#include <setjmp.h>
#include <signal.h>
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
#include "test_regions.h"

#define PER_UID 8
#define ATTACH_TIMEOUT "2s"
/* "Promptly": the broken server took 10 s (a client's broker timeout) to 30 s. */
#define PROMPT_MS 1000u

static map_daemon_t g_daemon;
static char g_broker[300];

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t iobd_bytes(void) {
    iob__session_t* s;
    assert_int_equal(iob__session_get(&s), ZX_OK);
    iob_conn_server_info_t si;
    zx_status_t st = iob_conn_server_info(s->conn, &si);
    iob__session_put(s);
    assert_int_equal(st, ZX_OK);
    return si.bytes_in_use;
}

static void assert_iobd_alive(void) {
    assert_int_equal(waitpid(g_daemon.pid, NULL, WNOHANG), 0);
    assert_int_equal(kill(g_daemon.pid, 0), 0);
}

/* Waits up to 5 s for the child; its exit status, or -1 (killed) when it did not exit. */
static int wait_bounded(pid_t pid, int timeout_ms) {
    for (int i = 0; i < timeout_ms / 10; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void ms_check(const char* what, uint64_t t0) {
    uint64_t took = now_ms() - t0;
    if (took >= PROMPT_MS) {
        fail_msg("%s took %llu ms", what, (unsigned long long)took);
    }
}

/*
 * Another client's work, each step timed: this process creates an IOB and maps it through
 * the broker (a new mapping: a broker round trip), asks for ServerInfo, and a new process
 * (a fresh gRPC session and broker connection) imports an endpoint and maps it.
 */
static void probe(void) {
    uint64_t pg = zx_system_get_page_size();
    zx_iob_region_t reg =
        test_private_region(pg, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                                    ZX_IOB_ACCESS_EP1_CAN_MAP_READ);
    zx_handle_t ep0, ep1;
    uint64_t t0 = now_ms();
    assert_int_equal(zx_iob_create(0, &reg, 1, &ep0, &ep1), ZX_OK);
    ms_check("zx_iob_create", t0);
    t0 = now_ms();
    zx_vaddr_t a = 0;
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                                     ep0, 0, 0, pg, &a),
                     ZX_OK);
    ms_check("zx_vmar_map_iob", t0);
    strcpy((char*)a, "probe");
    t0 = now_ms();
    (void)iobd_bytes();
    ms_check("ServerInfo", t0);
    char token[IOB_TOKEN_SIZE];
    assert_int_equal(iob_handle_export(ep1, token), ZX_OK);
    t0 = now_ms();
    pid_t peer = map_spawn_peer((const char* const[]){"read", token, "0", "0", "probe", NULL},
                                NULL);
    assert_int_equal(wait_bounded(peer, 5000), 0);
    /* A process start, gRPC included: a wider bound, still far from the 10 s stall. */
    if (now_ms() - t0 >= 3 * PROMPT_MS) {
        fail_msg("a new process's import and map took %llu ms",
                 (unsigned long long)(now_ms() - t0));
    }
    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), a, pg), ZX_OK);
    zx_handle_close(ep0);
    zx_handle_close(ep1);
}

typedef struct baseline {
    size_t fds;
    uint64_t bytes;
} baseline_t;

static baseline_t baseline(void) {
    probe(); /* this process's own connections are open from here on */
    /* The probe's peer process has exited; iobd lets go of its session a moment later. */
    size_t fds = map_daemon_fds(&g_daemon, NULL);
    for (int stable = 0, i = 0; stable < 20 && i < 500; i++) {
        usleep(10000);
        size_t now = map_daemon_fds(&g_daemon, NULL);
        stable = now == fds ? stable + 1 : 0;
        fds = now;
    }
    baseline_t b = {fds, iobd_bytes()};
    return b;
}

/* iobd's descriptors and bytes come back to b (connections close asynchronously). */
static void assert_back_to(baseline_t b) {
    size_t fds = map_daemon_fds(&g_daemon, NULL);
    for (int i = 0; i < 300 && fds != b.fds; i++) {
        usleep(10000);
        fds = map_daemon_fds(&g_daemon, NULL);
    }
    assert_int_equal(fds, b.fds);
    assert_int_equal(iobd_bytes(), b.bytes);
}

static pid_t spawn_attacker(const char* const* args, int* out) {
    return map_spawn(IOB_TEST_ATTACKER, args, out);
}

static void kill_attacker(pid_t pid, int out) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (out >= 0) {
        close(out);
    }
}

/*
 * (a) A TCP socket whose last close lingers 30 s, sent in a datagram of no session. While
 * it lingers in the attacker's hands, everything else is served at once and iobd holds no
 * descriptor of it.
 */
static void test_lingering_socket(void** state) {
    (void)state;
    baseline_t b = baseline();
    int out = -1;
    pid_t pid = spawn_attacker((const char* const[]){"linger", g_broker, NULL}, &out);
    char line[64];
    assert_true(map_read_line(out, line, sizeof line, 5000));
    assert_string_equal(line, "sent");
    usleep(100 * 1000); /* iobd has read it by now */
    probe();
    assert_iobd_alive();
    /* The attacker still holds the listener: the socket would still be lingering. */
    assert_back_to(b);
    kill_attacker(pid, out);
    probe();
    assert_back_to(b);
}

/* (b) An fd on a message that may not carry one: refused, connection dropped, fd not kept. */
static void test_fd_on_wrong_message(void** state) {
    (void)state;
    baseline_t b = baseline();
    pid_t pid = spawn_attacker((const char* const[]){"fd", g_broker, NULL}, NULL);
    assert_int_equal(wait_bounded(pid, 10000), 0);
    assert_int_equal(map_daemon_fds(&g_daemon, "iob-attacker-fd"), 0);
    probe();
    assert_iobd_alive();
    assert_back_to(b);
}

/*
 * (c) One uid opens many connections: it gets its share (PER_UID) and no more, while
 * another uid still connects (a second attacker process, in its own share) and this
 * process (root) still maps.
 */
static void test_connection_flood(void** state) {
    (void)state;
    if (geteuid() != 0) {
        skip();
    }
    baseline_t b = baseline();
    int out = -1;
    pid_t pid = spawn_attacker((const char* const[]){"flood", g_broker, "65534", "40", NULL},
                               &out);
    char line[64];
    assert_true(map_read_line(out, line, sizeof line, 5000));
    char want[32];
    snprintf(want, sizeof want, "open %d", PER_UID);
    assert_string_equal(line, want);
    int out2 = -1;
    pid_t other = spawn_attacker((const char* const[]){"flood", g_broker, "65533", "1", NULL},
                                 &out2);
    assert_true(map_read_line(out2, line, sizeof line, 5000));
    assert_string_equal(line, "open 1");
    probe();
    assert_iobd_alive();
    kill_attacker(other, out2);
    kill_attacker(pid, out);
    assert_back_to(b);
}

/* (d) A connection that never attaches is closed at the deadline (2 s here). */
static void test_attach_deadline(void** state) {
    (void)state;
    baseline_t b = baseline();
    int out = -1;
    pid_t pid = spawn_attacker((const char* const[]){"idle", g_broker, NULL}, &out);
    char line[64];
    assert_true(map_read_line(out, line, sizeof line, 25000));
    unsigned long ms = 0;
    assert_int_equal(sscanf(line, "closed %lu", &ms), 1);
    assert_true(ms >= 1500 && ms <= 4000);
    assert_int_equal(wait_bounded(pid, 5000), 0);
    close(out);
    probe();
    assert_iobd_alive();
    assert_back_to(b);
}

/* One test alone: test_broker_attacks NAME (a cmocka filter pattern). */
int main(int argc, char** argv) {
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]);
    }
    map_daemon_start(&g_daemon, (const char* const[]){"--broker-max-conns-per-uid", "8",
                                                      "--broker-attach-timeout",
                                                      ATTACH_TIMEOUT, NULL});
    snprintf(g_broker, sizeof g_broker, "%s", g_daemon.broker_path);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lingering_socket),
        cmocka_unit_test(test_fd_on_wrong_message),
        cmocka_unit_test(test_connection_flood),
        cmocka_unit_test(test_attach_deadline),
    };
    int rc = cmocka_run_group_tests_name("broker_attacks", tests, NULL, NULL);
    map_daemon_stop(&g_daemon);
    return rc;
}
