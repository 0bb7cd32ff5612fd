/* SPDX-License-Identifier: MIT */
/*
 * Reproducers from a review of server/broker: defects of the mediated request channel's
 * setup that the other broker tests do not reach.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_fixture.h"
#include "server/broker/mediator.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"
#include "shm/mediated_channel.h"
#include "test_util.h"

/* Asks for the connection's channel: its status, and the three fds with ZX_OK. */
static zx_status_t ask_channel(fixture_t* f, int fd, int fds[3]) {
    iob_broker_channel_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_CHANNEL, sizeof req, 77);
    req.layout = IOB_BROKER_MEDIATED_LAYOUT;
    assert_int_equal(iob_fd_send(fd, &req, sizeof req, NULL, 0), ZX_OK);
    pump(f, fd);
    iob_broker_channel_reply_t reply;
    size_t n = 0;
    size_t nfds = 0;
    assert_int_equal(iob_fd_recv(fd, &reply, sizeof reply, &n, fds, 3, &nfds), ZX_OK);
    assert_int_equal(n, sizeof reply);
    if (reply.status == ZX_OK) {
        assert_int_equal(nfds, 3);
    }
    return reply.status;
}

/*
 * The doorbell memfd is shared by every writer and sent to each of them read-write, but it
 * is not sealed with F_SEAL_SEAL: one client can add F_SEAL_FUTURE_WRITE to it, and from
 * then on no other client can map it writable, so every later channel is unusable (the
 * library then gives up on channels for the session). A hostile writer hurts others.
 */
static void test_doorbell_seals_are_frozen(void** state) {
    fixture_t* f = *state;
    int evil = client_connect(f);
    assert_int_equal(attach(f, evil, f->session.value, f->secret), ZX_OK);
    int efds[3];
    assert_int_equal(ask_channel(f, evil, efds), ZX_OK);
    /* The attacker freezes the shared doorbell against writable mappings. */
    int rc = fcntl(efds[2], F_ADD_SEALS, F_SEAL_FUTURE_WRITE);
    int err = errno;

    int good = client_connect(f);
    assert_int_equal(attach(f, good, f->session.value, f->secret), ZX_OK);
    int gfds[3];
    assert_int_equal(ask_channel(f, good, gfds), ZX_OK);
    void* bell =
        mmap(NULL, IOB_MCHAN_DOORBELL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, gfds[2], 0);
    bool mapped = bell != MAP_FAILED;
    if (mapped) {
        munmap(bell, IOB_MCHAN_DOORBELL_SIZE);
    }
    for (int i = 0; i < 3; i++) {
        close(efds[i]);
        close(gfds[i]);
    }
    close(evil);
    close(good);
    /* Either the seal is refused, or at least the next writer can still map its doorbell. */
    if (rc == 0) {
        print_message("attacker sealed the shared doorbell (F_SEAL_FUTURE_WRITE)\n");
    } else {
        assert_int_equal(err, EPERM);
    }
    assert_true(mapped);
}

/*
 * iobd_mediator_open stores the submission and completion fds into fds[0..1] before it
 * duplicates the doorbell fd; when that dup fails it closes both but leaves their numbers
 * in fds[], and its caller (iobd__handle_channel) closes every fds[i] >= 0 again: a double
 * close, which closes whatever descriptor another thread of iobd opened in between.
 */
static void test_open_failure_leaves_no_closed_fds(void** state) {
    fixture_t* f = *state;
    (void)f;
    iob_core_t* core = f->core;
    iobd_mediator_t* m = NULL;
    assert_int_equal(iobd_mediator_start(core, 4, &m), ZX_OK);
    /* Room for exactly two more descriptors: the two memfds; the dup then fails (EMFILE). */
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(probe >= 0);
    close(probe);
    int highest = 0;
    for (int fd = 0; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            highest = fd;
        }
    }
    /* The lowest free numbers must be the two below the limit. */
    assert_true(probe > highest || fcntl(probe + 1, F_GETFD) < 0);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)(highest > probe + 1 ? highest : probe + 1) + 1;
    /* Fill every free number below the limit except two. */
    int fill[4096];
    int nfill = 0;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    for (;;) {
        int d = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (d < 0) {
            break;
        }
        fill[nfill++] = d;
    }
    assert_true(nfill >= 2);
    close(fill[--nfill]);
    close(fill[--nfill]);
    int fds[3] = {-1, -1, -1};
    iobd_mchan_t* ch = NULL;
    iob_session_id_t s = f->session;
    zx_status_t st = iobd_mediator_open(m, s, &ch, fds);
    /* What iobd__handle_channel would close next: numbers that are closed already. */
    int stale = 0;
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0 && fcntl(fds[i], F_GETFD) < 0 && errno == EBADF) {
            stale++;
        }
    }
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    while (nfill > 0) {
        close(fill[--nfill]);
    }
    if (st == ZX_OK) {
        for (int i = 0; i < 3; i++) {
            close(fds[i]);
        }
        iobd_mediator_close(m, ch);
    }
    iobd_mediator_stop(m);
    assert_int_equal(st, ZX_ERR_NO_RESOURCES);
    if (stale > 0) {
        print_message("iobd_mediator_open failed leaving %d closed fd numbers in fds[]\n", stale);
    }
    assert_int_equal(stale, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_doorbell_seals_are_frozen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failure_leaves_no_closed_fds, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
