/* SPDX-License-Identifier: MIT */
/*
 * Reproducers from a review of server/broker: defects of the mediated request channel's
 * setup that the other broker tests do not reach.
 */
#include <errno.h>
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <linux/falloc.h>
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
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
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


static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct stopper {
    iobd_mediator_t* m;
    struct timespec at;
    _Atomic bool kicked; /* set once iobd_mediator_stop was called */
    _Atomic bool done;
} stopper_t;

static void* stopper_main(void* arg) {
    stopper_t* s = arg;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &s->at, NULL);
    atomic_store(&s->kicked, true);
    iobd_mediator_stop(s->m);
    atomic_store(&s->done, true);
    return NULL;
}

/*
 * The doorbell is client-writable, and the mediator sleeps on it with no timeout, trusting
 * that "an increment after it read the doorbell makes its FUTEX_WAIT return at once". A
 * client that keeps storing the value the mediator read undoes the increment of any wake
 * that lands between that read and the futex call: the mediator sleeps through it. When the
 * lost wake is iobd's own (iobd_mediator_stop's kick), the loop blocks in pthread_join until
 * some client rings: the loop waits on a client. Each trial: a client scribbles a constant
 * into the doorbell and rings now and then (so the mediator keeps going to sleep); at a
 * random moment another thread stops the mediator; the scribbler stops ringing. A stop that
 * takes more than half a second lost its wake.
 */
static void test_scribbled_doorbell_loses_stop(void** state) {
    fixture_t* f = *state;
    const int trials = getenv("REVIEW_TRIALS") != NULL ? atoi(getenv("REVIEW_TRIALS")) : 1000;
    const int channels = 200;
    int hung = 0;
    unsigned seed = 12345;
    for (int t = 0; t < trials && hung == 0; t++) {
        iobd_mediator_t* m = NULL;
        assert_int_equal(iobd_mediator_start(f->core, (uint32_t)channels, &m), ZX_OK);
        _Atomic uint32_t* bell = NULL;
        int subs[256];
        for (int c = 0; c < channels; c++) {
            int fds[3];
            iobd_mchan_t* ch = NULL;
            assert_int_equal(iobd_mediator_open(m, f->session, &ch, fds), ZX_OK);
            if (bell == NULL) {
                void* p = mmap(NULL, IOB_MCHAN_DOORBELL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                               fds[2], 0);
                assert_true(p != MAP_FAILED);
                bell = p;
            }
            subs[c] = fds[0];
            close(fds[1]);
            close(fds[2]);
        }
        stopper_t s = {.m = m};
        clock_gettime(CLOCK_MONOTONIC, &s.at);
        s.at.tv_nsec += 2000000 + (long)(rand_r(&seed) % 300000);
        if (s.at.tv_nsec >= 1000000000) {
            s.at.tv_sec++;
            s.at.tv_nsec -= 1000000000;
        }
        pthread_t th;
        iobd_mediator_stats_t before;
        iobd_mediator_get_stats(m, &before);
        assert_int_equal(pthread_create(&th, NULL, stopper_main, &s), 0);
        double kicked_at = 0;
        unsigned n = 0;
        while (!atomic_load(&s.done)) {
            atomic_store(bell, 7u); /* the scribbler's constant */
            if (!atomic_load(&s.kicked)) {
                if (++n % 4096 == 0) {
                    iob_mchan_futex_wake(bell); /* keeps the mediator cycling */
                }
                continue;
            }
            if (kicked_at == 0) {
                kicked_at = mono_s();
                if (getenv("REVIEW_DEBUG") != NULL) {
                    iobd_mediator_stats_t now;
                    iobd_mediator_get_stats(m, &now);
                    print_message("trial %d: %llu sleeps\n", t,
                                  (unsigned long long)(now.sleeps - before.sleeps));
                }
            } else if (mono_s() - kicked_at > 0.5) {
                hung++;
                print_message("trial %d: iobd_mediator_stop still blocked after 0.5 s\n", t);
                break;
            }
        }
        /* Release it, as any writer's ring would. */
        while (!atomic_load(&s.done)) {
            atomic_fetch_add(bell, 1);
            iob_mchan_futex_wake(bell);
            usleep(1000);
        }
        pthread_join(th, NULL);
        for (int c = 0; c < channels; c++) {
            close(subs[c]);
        }
        munmap((void*)(uintptr_t)bell, IOB_MCHAN_DOORBELL_SIZE);
    }
    assert_int_equal(hung, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_doorbell_seals_are_frozen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failure_leaves_no_closed_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scribbled_doorbell_loses_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
