/* SPDX-License-Identifier: MIT */
/*
 * Lifetimes through a real iobd (docs/zircon-iob.md A.9, L): kill -9 of the process holding ep1,
 * with and without a live mapping, raises ZX_IOB_PEER_CLOSED on ep0 within 100 ms of the
 * exit (measured from waitpid's return to the event on the session stream, so the bound is
 * on the server's reaction, not on setting up a new call). Tokens: used, unknown
 * and expired ones are NOT_FOUND, export needs ZX_RIGHT_TRANSFER, an expired token lets
 * its endpoint go (PEER_CLOSED), and mapping after the peer has closed still works.
 */
#include <poll.h>
#include <setjmp.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "map_harness.h"
#include "test_regions.h"

static map_daemon_t g_daemon;

static void make(zx_handle_t* ep0, zx_handle_t* ep1) {
    zx_iob_region_t r =
        test_private_region(zx_system_get_page_size(), ZX_IOB_ACCESS_EP0_CAN_MAP_READ |
                                                           ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                                                           ZX_IOB_ACCESS_EP1_CAN_MAP_READ);
    assert_int_equal(zx_iob_create(0, &r, 1, ep0, ep1), ZX_OK);
}

/* An IOB whose ep1 travels as a token (export takes the handle): ep0 stays here. */
static void make_exported(zx_handle_t* ep0, char token[IOB_TOKEN_SIZE]) {
    zx_handle_t ep1;
    make(ep0, &ep1);
    assert_int_equal(iob_handle_export(ep1, token), ZX_OK);
}

/* Starts iob_test_peer with args and waits until it says "ready"; its stdout in *out. */
static pid_t spawn_ready(const char* const* args, int* out) {
    pid_t pid = map_spawn_peer(args, out);
    char line[32];
    assert_true(map_read_line(*out, line, sizeof line, 10000));
    assert_string_equal(line, "ready");
    return pid;
}

/*
 * Waits for a PEER_CLOSED event for `handle` on iob_signal_fd (fed by the session's event
 * stream, already open); returns when it arrived, or 0 after 5 s.
 */
static zx_time_t wait_peer_closed_event(zx_handle_t handle) {
    int sfd = iob_signal_fd();
    assert_true(sfd >= 0);
    zx_time_t deadline = zx_deadline_after(ZX_SEC(5));
    iob_signal_event_t ev[16];
    while (zx_clock_get_monotonic() < deadline) {
        size_t n = iob_signal_read(ev, 16);
        for (size_t i = 0; i < n; i++) {
            if (ev[i].handle == handle && (ev[i].signals & ZX_IOB_PEER_CLOSED) != 0) {
                return zx_clock_get_monotonic();
            }
        }
        if (n == 0) {
            struct pollfd p = {.fd = sfd, .events = POLLIN};
            poll(&p, 1, 10);
        }
    }
    return 0;
}

static void kill_peer_and_expect_peer_closed(int map) {
    zx_handle_t ep0;
    char token[IOB_TOKEN_SIZE];
    make_exported(&ep0, token);
    const char* args[] = {"hold", token, map ? "1" : "0", NULL};
    int out = -1;
    pid_t pid = spawn_ready(args, &out);
    zx_signals_t seen = 0;
    assert_int_equal(zx_object_wait_one(ep0, ZX_IOB_PEER_CLOSED, 0, &seen), ZX_ERR_TIMED_OUT);
    /*
     * Events from earlier tests must not count. Asking for the fd first also matters: the
     * library records changes for iob_signal_read only once the fd exists, and the event
     * may arrive before wait_peer_closed_event runs.
     */
    assert_true(iob_signal_fd() >= 0);
    iob_signal_event_t stale[16];
    while (iob_signal_read(stale, 16) > 0) {
    }

    kill(pid, SIGKILL);
    assert_int_equal(map_wait(pid), 128 + SIGKILL);
    zx_time_t exited = zx_clock_get_monotonic();
    zx_time_t observed = wait_peer_closed_event(ep0);
    assert_true(observed != 0);
    /* The event may even beat waitpid (the pidfd fires at exit): count that as 0. */
    zx_duration_t took = observed > exited ? observed - exited : 0;
    printf("# PEER_CLOSED %.1f ms after the peer's exit (%s mapping)\n", (double)took / 1e6,
           map ? "with a" : "without a");
    assert_true(took < ZX_MSEC(100));
    assert_int_equal(zx_object_wait_one(ep0, ZX_IOB_PEER_CLOSED, 0, &seen), ZX_OK);
    close(out);

    /* Mapping after the peer has closed still works. */
    zx_vaddr_t a = 0;
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                                     ep0, 0, 0, zx_system_get_page_size(), &a),
                     ZX_OK);
    ((char*)a)[0] = 1;
    assert_int_equal(zx_vmar_unmap(zx_vmar_root_self(), a, zx_system_get_page_size()), ZX_OK);
    assert_int_equal(zx_handle_close(ep0), ZX_OK);
}

static void test_kill_without_mapping(void** state) {
    (void)state;
    kill_peer_and_expect_peer_closed(0);
}

static void test_kill_with_mapping(void** state) {
    (void)state;
    kill_peer_and_expect_peer_closed(1);
}

static void test_tokens(void** state) {
    (void)state;
    zx_handle_t ep0;
    zx_handle_t ep1;
    make(&ep0, &ep1);
    char token[IOB_TOKEN_SIZE];
    zx_handle_t nt;
    assert_int_equal(zx_handle_duplicate(ep1, ZX_DEFAULT_IOB_RIGHTS & ~ZX_RIGHT_TRANSFER, &nt),
                     ZX_OK);
    assert_int_equal(iob_handle_export(nt, token), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(zx_handle_close(nt), ZX_OK);

    zx_handle_t x;
    assert_int_equal(iob_handle_import("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &x), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_handle_export(ep1, token), ZX_OK);
    /* Used once by a helper process, then never again. */
    const char* args[] = {"rights", token, "f0ef", NULL};
    assert_int_equal(map_wait(map_spawn_peer(args, NULL)), 0);
    assert_int_equal(iob_handle_import(token, &x), ZX_ERR_NOT_FOUND);
    /* The helper has exited and its handle with it. */
    zx_signals_t seen = 0;
    assert_int_equal(
        zx_object_wait_one(ep0, ZX_IOB_PEER_CLOSED, zx_deadline_after(ZX_SEC(5)), &seen), ZX_OK);
    assert_int_equal(zx_handle_close(ep0), ZX_OK);
}

/*
 * An imported handle (libiob imports over the map broker when it can) is known to the
 * importer's session-event index: closing ep0 here reaches the importer as a PEER_CLOSED
 * event for its handle.
 */
static void test_imported_handle_gets_events(void** state) {
    (void)state;
    zx_handle_t ep0;
    char token[IOB_TOKEN_SIZE];
    make_exported(&ep0, token);
    const char* args[] = {"events", token, NULL};
    int out = -1;
    pid_t pid = spawn_ready(args, &out);
    assert_int_equal(zx_handle_close(ep0), ZX_OK);
    assert_int_equal(map_wait(pid), 0);
    close(out);
}

static void test_expired_token(void** state) {
    (void)state;
    zx_handle_t ep0;
    char token[IOB_TOKEN_SIZE];
    make_exported(&ep0, token);
    /* In flight, the token keeps ep1 alive. */
    zx_signals_t seen = 0;
    assert_int_equal(zx_object_wait_one(ep0, ZX_IOB_PEER_CLOSED, 0, &seen), ZX_ERR_TIMED_OUT);
    /* iobd runs with --token-ttl 2s. */
    assert_int_equal(
        zx_object_wait_one(ep0, ZX_IOB_PEER_CLOSED, zx_deadline_after(ZX_SEC(6)), &seen), ZX_OK);
    zx_handle_t x;
    assert_int_equal(iob_handle_import(token, &x), ZX_ERR_NOT_FOUND);
    assert_int_equal(zx_handle_close(ep0), ZX_OK);
}

/* The pollable fd: readable once ep0's signals change (here: PEER_CLOSED after a kill). */
static void test_signal_fd(void** state) {
    (void)state;
    int sfd = iob_signal_fd();
    assert_true(sfd >= 0);
    iob_signal_event_t ev[16];
    while (iob_signal_read(ev, 16) > 0) {
    }
    zx_handle_t ep0;
    zx_handle_t ep1;
    make(&ep0, &ep1);
    assert_int_equal(zx_handle_close(ep1), ZX_OK);
    bool seen = false;
    zx_time_t deadline = zx_deadline_after(ZX_SEC(5));
    while (!seen && zx_clock_get_monotonic() < deadline) {
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        size_t n = iob_signal_read(ev, 16);
        for (size_t i = 0; i < n; i++) {
            seen = seen || (ev[i].handle == ep0 && (ev[i].signals & ZX_IOB_PEER_CLOSED) != 0);
        }
    }
    assert_true(seen);
    assert_int_equal(zx_handle_close(ep0), ZX_OK);
}

int main(void) {
    map_daemon_start(&g_daemon, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_without_mapping),
        cmocka_unit_test(test_kill_with_mapping),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_imported_handle_gets_events),
        cmocka_unit_test(test_expired_token),
        cmocka_unit_test(test_signal_fd),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    map_daemon_stop(&g_daemon);
    return rc;
}
