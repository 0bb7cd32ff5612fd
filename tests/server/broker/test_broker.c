/* SPDX-License-Identifier: MIT */
/*
 * Tests server/broker/broker.c in-process: a real iob_core (4 KiB backing), a libuv loop,
 * and a raw SOCK_SEQPACKET client speaking shm/broker_wire.h. The loop runs in this
 * thread between a request and its reply, so every test is deterministic.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_fixture.h"
#include "server/broker/broker.h"
#include "server/broker/broker_internal.h"
#include "server/core/iob_metrics.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"
#include "test_util.h"
static void test_attach_requires_secret(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    uint8_t wrong[IOB_CORE_SECRET_SIZE];
    memcpy(wrong, f->secret, sizeof wrong);
    wrong[15] ^= 1;
    assert_int_equal(attach(f, fd, f->session.value, wrong), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(attach(f, fd, f->session.value + 1, f->secret), ZX_ERR_ACCESS_DENIED);
    /* Mapping needs an attached connection. */
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 0, 0, NULL, NULL), ZX_ERR_BAD_STATE);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_ERR_BAD_STATE);
    close(fd);

    /* Three failures end the connection. */
    fd = client_connect(f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(attach(f, fd, 999, f->secret), ZX_ERR_ACCESS_DENIED);
    }
    pump(f, fd);
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.auth_failures, 5);
}

/*
 * The core checks the peer's SO_PEERCRED against the session's owner: the right secret
 * from another process or another uid is ACCESS_DENIED with nothing attached, and the
 * warning names both identities.
 */
static void test_attach_checks_peer_identity(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    uint8_t secret[IOB_CORE_SECRET_SIZE];
    /* As if another process had opened the session and leaked its secret. */
    iob_session_id_t other_pid = open_local_session(f, getpid() + 1, getuid(), secret);
    assert_int_equal(attach(f, fd, other_pid.value, secret), ZX_ERR_ACCESS_DENIED);
    char who[128];
    snprintf(who, sizeof who, "refused to pid %d uid %d gid %d: another process", (int)getpid(),
             (int)getuid(), (int)getgid());
    assert_non_null(strstr(f->last_warning, who));
    assert_false(iob_core_session_attached(f->core, other_pid));
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 0, 0, NULL, NULL), ZX_ERR_BAD_STATE);

    iob_session_id_t other_uid = open_local_session(f, getpid(), getuid() + 1, secret);
    assert_int_equal(attach(f, fd, other_uid.value, secret), ZX_ERR_ACCESS_DENIED);
    assert_non_null(strstr(f->last_warning, "another uid"));
    assert_false(iob_core_session_attached(f->core, other_uid));

    assert_false(iob_core_session_attached(f->core, f->session));
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    assert_true(iob_core_session_attached(f->core, f->session));
    close(fd);
}

/*
 * iob_core_map_dup: the fd is the caller's own (close-on-exec, not the core's), and stays
 * valid after the core has dropped the IOB entirely.
 */
static void test_core_map_dup_fd_is_owned(void** state) {
    fixture_t* f = *state;
    iob_map_grant_t borrowed;
    iob_map_grant_t owned;
    assert_int_equal(
        iob_core_map(f->core, f->session, f->ep0, ZX_VM_PERM_READ, 0, 0, 4096, &borrowed), ZX_OK);
    assert_int_equal(
        iob_core_map_dup(f->core, f->session, f->ep0, ZX_VM_PERM_READ, 0, 0, 4096, &owned), ZX_OK);
    assert_int_not_equal(owned.fd, borrowed.fd);
    assert_true((fcntl(owned.fd, F_GETFD) & FD_CLOEXEC) != 0);
    assert_int_equal(owned.iob_koid, borrowed.iob_koid);
    assert_int_equal(owned.writable, borrowed.writable);
    assert_int_equal(core_mappings(f), 2);
    /* Refused maps create no fd and no record. */
    iob_map_grant_t none;
    assert_int_equal(
        iob_core_map_dup(f->core, f->session, f->ep1, ZX_VM_PERM_READ, 1, 0, 4096, &none),
        ZX_ERR_ACCESS_DENIED);
    assert_int_equal(core_mappings(f), 2);
    /* Everything gone: handles, records, the IOB and its memfds. */
    assert_int_equal(iob_core_unmap(f->core, f->session, borrowed.mapping), ZX_OK);
    assert_int_equal(iob_core_unmap(f->core, f->session, owned.mapping), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->session, f->ep0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->session, f->ep1), ZX_OK);
    iob_core_stats_t st;
    iob_core_get_stats(f->core, &st);
    assert_int_equal(st.iobs, 0);
    char* p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, owned.fd, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(p[0], 0);
    munmap(p, 4096);
    assert_int_equal(close(owned.fd), 0);
}

static void test_map_grants_and_read_only_fds(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);

    iob_broker_map_reply_t rep;
    int rw = -1;
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, &rep, &rw),
                     ZX_OK);
    assert_true(rw >= 0);
    assert_true(rep.flags & IOB_BROKER_GRANT_WRITABLE);
    assert_int_equal(rep.region_size, 3 * 4096);
    assert_true((fcntl(rw, F_GETFD) & FD_CLOEXEC) != 0);
    char* w = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
    assert_true(w != MAP_FAILED);
    close(rw);
    strcpy(w + 4096, "through the broker");

    iob_broker_map_reply_t rep_ro;
    int ro = -1;
    assert_int_equal(map(f, fd, f->ep1, ZX_VM_PERM_READ, 0, 0, &rep_ro, &ro), ZX_OK);
    assert_true(ro >= 0);
    assert_false(rep_ro.flags & IOB_BROKER_GRANT_WRITABLE);
    assert_int_equal(rep_ro.iob_koid, rep.iob_koid);
    assert_int_equal(fcntl(ro, F_GETFL) & O_ACCMODE, O_RDONLY);
    assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED);
    assert_int_equal(errno, EACCES);
    char* r = mmap(NULL, 3 * 4096, PROT_READ, MAP_SHARED, ro, 0);
    assert_true(r != MAP_FAILED);
    close(ro);
    assert_string_equal(r + 4096, "through the broker");
    assert_int_equal(mprotect(r, 4096, PROT_READ | PROT_WRITE), -1);

    /* ep1 may not write region 0, nor map region 1 at all (A.4 answered by the core). */
    assert_int_equal(map(f, fd, f->ep1, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, NULL, NULL),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, fd, f->ep1, ZX_VM_PERM_READ, 1, 0, NULL, NULL), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 2, 0, NULL, NULL), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, fd, 0x12345673u, ZX_VM_PERM_READ, 0, 0, NULL, NULL), ZX_ERR_BAD_HANDLE);
    assert_int_equal(core_mappings(f), 2);

    /* Check-only: every check, no record, no fd. */
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 0, IOB_BROKER_MAP_CHECK_ONLY, NULL, NULL),
                     ZX_OK);
    assert_int_equal(core_mappings(f), 2);
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 0, 0x80, NULL, NULL), ZX_ERR_INVALID_ARGS);

    assert_int_equal(unmap(f, fd, rep.mapping_id), ZX_OK);
    assert_int_not_equal(unmap(f, fd, rep.mapping_id), ZX_OK);
    assert_int_equal(core_mappings(f), 1);

    /* A dropped connection releases nothing but itself: the record stays counted. */
    close(fd);
    for (int i = 0; i < 5; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.connections, 0);
    assert_int_equal(core_mappings(f), 1);
    munmap(w, 3 * 4096);
    munmap(r, 3 * 4096);
}

static void test_hostile_messages(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    reply_t r;

    iob_broker_hdr_t hdr;
    iob_broker_hdr_init(&hdr, 77, sizeof hdr, 5);
    assert_int_equal(exchange(f, fd, &hdr, sizeof hdr, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, 5);
    assert_int_equal(r.status.status, ZX_ERR_NOT_SUPPORTED);

    iob_broker_hdr_init(&hdr, IOB_BROKER_ATTACH, sizeof hdr, 6); /* too short for ATTACH */
    assert_int_equal(exchange(f, fd, &hdr, sizeof hdr, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.status.status, ZX_ERR_INVALID_ARGS);

    iob_broker_hdr_init(&hdr, IOB_BROKER_ATTACH, sizeof hdr, 7);
    hdr.version = 2;
    assert_int_equal(exchange(f, fd, &hdr, sizeof hdr, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.status.status, ZX_ERR_NOT_SUPPORTED);

    unsigned char junk[3] = {1, 2, 3};
    assert_int_equal(exchange(f, fd, junk, sizeof junk, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, 0);

    unsigned char big[IOB_BROKER_MAX_MSG + 100];
    memset(big, 0xab, sizeof big);
    assert_int_equal(exchange(f, fd, big, sizeof big, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);

    /*
     * An fd on a message that may not carry one: refused, the connection ended, and the fd
     * closed by the broker (it runs in this process) off the loop, soon.
     */
    int before = iob_test_count_open_fds();
    int extra = dup(0);
    iob_broker_unmap_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_UNMAP, sizeof req, 8);
    assert_int_equal(exchange(f, fd, &req, sizeof req, extra, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, 8);
    close(extra);
    pump(f, fd);
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
    wait_fd_count(f, before - 2); /* our end of fd and the broker's */

    /* Still serving after all that. */
    fd = client_connect(f);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    close(fd);
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.bad_messages, 6);
    assert_int_equal(stats.fds_refused, 1);
}

/*
 * An IMPORT datagram carries a credential (the token): iobd wipes it from its receive
 * buffer after every IMPORT, the refused ones included (here: one that carries an fd, which
 * no IMPORT may), so no token lingers until the next datagram overwrites it.
 */
static void test_refused_import_leaves_no_token(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    iob_broker_import_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_IMPORT, sizeof req, 12);
    static const char mark[] = "iob1.the-secret-part-of-a-token";
    memcpy(req.token, mark, sizeof mark - 1);
    int extra = dup(0);
    reply_t r;
    assert_int_equal(exchange(f, fd, &req, sizeof req, extra, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.status.status, ZX_ERR_INVALID_ARGS);
    close(extra);
    close(fd);
    const unsigned char* rx = (const unsigned char*)f->broker->rx;
    assert_null(memmem(rx, sizeof req, mark, sizeof mark - 1));
}

/*
 * Every request type is counted under its own method in iob_broker_requests_total: a
 * packed writev (type 8, added after CHANNEL) once fell past the names and was counted as
 * "Invalid".
 */
static void test_packed_writev_has_its_method(void** state) {
    fixture_t* f = *state;
    iob_metrics_enable(true);
    int fd = client_connect(f);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    iob_broker_writev_packed_req_t w;
    memset(&w, 0, sizeof w);
    iob_broker_hdr_init(&w.hdr, IOB_BROKER_WRITEV_PACKED, sizeof w, 9);
    w.layout = IOB_BROKER_MEDIATED_LAYOUT;
    w.handle = 0; /* no such handle */
    reply_t r;
    assert_int_equal(exchange(f, fd, &w, sizeof w, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_WRITEV_PACKED | IOB_BROKER_REPLY);
    assert_int_equal(r.status.status, ZX_ERR_BAD_HANDLE);
    close(fd);
    char* text = NULL;
    size_t len = 0;
    FILE* out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(iob_metrics_render(NULL, out), 0);
    fclose(out);
    iob_metrics_enable(false);
    bool counted = strstr(text, "iob_broker_requests_total{method=\"WritevPacked\","
                                "status=\"ZX_ERR_BAD_HANDLE\"} 1") != NULL;
    if (!counted) {
        print_message("%s", text);
    }
    free(text);
    assert_true(counted);
}

/*
 * A TCP socket whose close would linger 30 s, sent on a message that may not carry an fd:
 * the loop answers at once and goes on serving another connection, and the socket is
 * closed (reset) soon after, by the closer thread.
 */
static void test_lingering_fd_does_not_stall(void** state) {
    fixture_t* f = *state;
    int before = iob_test_count_open_fds();
    int listener = -1;
    int sock = iob_test_lingering_socket(30, &listener);
    assert_true(sock >= 0);
    int fd = client_connect(f);
    uint64_t t0 = now_ms();
    iob_broker_hdr_t hdr;
    iob_broker_hdr_init(&hdr, IOB_BROKER_MAP, sizeof hdr, 3);
    assert_int_equal(iob_fd_send(fd, &hdr, sizeof hdr, &sock, 1), ZX_OK);
    close(sock); /* the broker's copy is the last one now */
    int other = client_connect(f);
    reply_t r;
    assert_int_equal(attach(f, other, f->session.value, f->secret), ZX_OK);
    assert_int_equal(unmap(f, other, 12345), ZX_ERR_NOT_FOUND);
    assert_true(now_ms() - t0 < 1000);
    /* The attacker's connection was ended after the ERROR reply. */
    pump(f, fd);
    size_t n = 0;
    size_t nfds = 0;
    assert_int_equal(iob_fd_recv(fd, r.bytes, sizeof r.bytes, &n, NULL, 0, &nfds), ZX_OK);
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    pump(f, fd);
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
    close(other);
    /* Only the listener is left of what this test opened. */
    wait_fd_count(f, before + 1);
    assert_true(now_ms() - t0 < 2000);
    close(listener);
}

/*
 * The same socket one level down, queued in a Unix socket that is sent instead: the
 * closer takes it out and resets it rather than letting the Unix socket's close release
 * it (which would linger 30 s in the closer).
 */
static void test_nested_lingering_fd(void** state) {
    fixture_t* f = *state;
    int before = iob_test_count_open_fds();
    int listener = -1;
    int sock = iob_test_lingering_socket(30, &listener);
    assert_true(sock >= 0);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    assert_int_equal(iob_fd_send(pair[0], "x", 1, &sock, 1), ZX_OK);
    close(sock);
    close(pair[0]);
    int fd = client_connect(f);
    uint64_t t0 = now_ms();
    iob_broker_hdr_t hdr;
    iob_broker_hdr_init(&hdr, IOB_BROKER_MAP, sizeof hdr, 4);
    reply_t r;
    assert_int_equal(exchange(f, fd, &hdr, sizeof hdr, pair[1], &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    close(pair[1]);
    close(fd);
    wait_fd_count(f, before + 1);
    assert_true(now_ms() - t0 < 2000);
    close(listener);
}

/* A connection that does not attach in time is closed; an attached one stays. */
static void test_attach_deadline(void** state) {
    fixture_t* f = *state;
    int idle = client_connect(f);
    int fd = client_connect(f);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    uint64_t t0 = now_ms();
    pump(f, idle);
    char b;
    assert_int_equal(recv(idle, &b, 1, 0), 0);
    uint64_t took = now_ms() - t0;
    assert_true(took < 1000);
    /* Past the deadline, the attached connection is served as ever. */
    while (now_ms() - t0 < 300) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_int_equal(unmap(f, fd, 12345), ZX_ERR_NOT_FOUND);
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.attach_timeouts, 1);
    assert_int_equal(stats.connections, 1);
    close(idle);
    close(fd);
}

static void test_policy_refuses(void** state) {
    fixture_t* f = *state;
    f->refuse_peers = true;
    int fd = client_connect(f);
    pump(f, fd);
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.refused, 1);
}

static void test_start_arguments(void** state) {
    fixture_t* f = *state;
    iobd_broker_config_t bc;
    memset(&bc, 0, sizeof bc);
    iobd_broker_t* b = NULL;
    assert_int_equal(iobd_broker_start(&f->loop, f->core, &bc, &b), ZX_ERR_INVALID_ARGS);
    bc.socket_path = "/nonexistent-dir/x.sock";
    bc.log = quiet_log;
    assert_int_equal(iobd_broker_start(&f->loop, f->core, &bc, &b), ZX_ERR_BAD_PATH);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    bc.socket_path = longp;
    assert_int_equal(iobd_broker_start(&f->loop, f->core, &bc, &b), ZX_ERR_INVALID_ARGS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attach_requires_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_checks_peer_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_map_dup_fd_is_owned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grants_and_read_only_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_packed_writev_has_its_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_import_leaves_no_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lingering_fd_does_not_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_lingering_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_deadline, setup_short_deadline, teardown),
        cmocka_unit_test_setup_teardown(test_policy_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
