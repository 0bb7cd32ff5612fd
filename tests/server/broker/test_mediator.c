/* SPDX-License-Identifier: MIT */
/*
 * The mediator (server/broker/mediator.c) outside its request path: a channel that cannot
 * be opened leaves its caller nothing to close, and a request whose doorbell ring was lost
 * is still served (the sleep is bounded). The doorbell's seals, and scribbling on it, are
 * tested by iob_channel_attacker, a separate process (test_mediated_channel).
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_fixture.h"
#include "server/broker/mediator.h"
#include "shm/mediated_channel.h"

/*
 * An open that fails after some of its descriptors were made (here the doorbell's dup, at
 * the descriptor limit) leaves fds[] at -1: its caller (iobd__handle_channel) closes every
 * fds[i] >= 0, and a number closed twice would close whatever another thread of iobd had
 * opened in between.
 */
static void test_open_failure_leaves_no_closed_fds(void** state) {
    fixture_t* f = *state;
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

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * The doorbell is client-writable: a client that stores back the value the mediator read
 * before sleeping, right after someone's increment, hides that wake-up (a writer's ring, or
 * iobd's own kick at open, close and stop, for which the loop would wait in pthread_join).
 * The mediator's sleep is therefore bounded: a request whose ring never arrived is still
 * served, a few milliseconds late. Here the writer publishes a request and never rings,
 * which is what a hidden ring looks like to the mediator: it must be answered (the request
 * area is all zeros, so ZX_ERR_INVALID_ARGS) within a second.
 */
static void test_unrung_request_is_served(void** state) {
    fixture_t* f = *state;
    iobd_mediator_t* m = NULL;
    assert_int_equal(iobd_mediator_start(f->core, 4, &m), ZX_OK);
    int fds[3];
    iobd_mchan_t* ch = NULL;
    assert_int_equal(iobd_mediator_open(m, f->session, &ch, fds), ZX_OK);
    iob_mchan_sub_t* sub =
        mmap(NULL, IOB_MCHAN_SUB_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    const iob_mchan_comp_t* comp = mmap(NULL, IOB_MCHAN_COMP_SIZE, PROT_READ, MAP_SHARED, fds[1], 0);
    assert_true(sub != MAP_FAILED && comp != MAP_FAILED);
    /* Until the mediator has announced its sleep, then a little longer: it is in the wait. */
    double give_up = mono_s() + 5;
    while (atomic_load(&((iob_mchan_comp_t*)(uintptr_t)comp)->mediator_sleeping) == 0) {
        assert_true(mono_s() < give_up);
        usleep(1000);
    }
    usleep(20000);
    double published = mono_s();
    atomic_store(&sub->seq, 1u); /* and no ring */
    _Atomic uint32_t* done = &((iob_mchan_comp_t*)(uintptr_t)comp)->done_seq;
    while (atomic_load(done) != 1u && mono_s() - published < 1.0) {
        usleep(100);
    }
    double waited = mono_s() - published;
    assert_int_equal(atomic_load(done), 1u);
    assert_int_equal(comp->status, ZX_ERR_INVALID_ARGS);
    print_message("an unrung request was answered after %.1f ms\n", waited * 1e3);
    munmap(sub, IOB_MCHAN_SUB_SIZE);
    munmap((void*)(uintptr_t)comp, IOB_MCHAN_COMP_SIZE);
    for (int i = 0; i < 3; i++) {
        close(fds[i]);
    }
    iobd_mediator_close(m, ch);
    double stop_start = mono_s();
    iobd_mediator_stop(m);
    assert_true(mono_s() - stop_start < 1.0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_failure_leaves_no_closed_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unrung_request_is_served, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
