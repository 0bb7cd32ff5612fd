/* SPDX-License-Identifier: MIT */
/*
 * The mediator (server/broker/mediator.c) outside its request path: a channel that cannot
 * be opened leaves its caller nothing to close, and a hostile writer of the shared doorbell
 * (a separate process) cannot make the mediator sleep through iobd's own stop. The
 * doorbell's seals are tested by iob_channel_attacker (test_mediated_channel).
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_fixture.h"
#include "server/broker/mediator.h"
#include "shm/mediated_channel.h"

extern char** environ;

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

/* Starts iob_word_scribbler on fd (inherited), storing value; its pid. */
static pid_t start_scribbler(int fd, uint32_t value) {
    int child_fd = dup(fd); /* without CLOEXEC: the scribbler's */
    assert_true(child_fd >= 0);
    char fd_s[16];
    char value_s[16];
    snprintf(fd_s, sizeof fd_s, "%d", child_fd);
    snprintf(value_s, sizeof value_s, "%u", value);
    char* argv[] = {(char*)(uintptr_t)IOB_TEST_WORD_SCRIBBLER, fd_s, value_s, NULL};
    pid_t pid = -1;
    assert_int_equal(posix_spawn(&pid, IOB_TEST_WORD_SCRIBBLER, NULL, NULL, argv, environ), 0);
    close(child_fd);
    return pid;
}

/*
 * The doorbell is client-writable: a client that keeps storing the value the mediator read
 * before sleeping undoes any increment that lands between that read and the futex call, and
 * the mediator sleeps through that wake-up. When the wake-up is iobd's own (the kick of
 * iobd_mediator_stop), the loop waits in pthread_join: the mediator's sleep must be bounded
 * for that not to be a wait on a client. Each trial: a scribbler process stores a constant
 * into the doorbell; this thread wakes the futex now and then (a writer ringing without
 * changing the word) so that the mediator keeps going back to sleep; at a random moment
 * another thread stops the mediator. A stop that takes more than half a second lost its
 * wake-up for good (unbounded, the race was hit about once in 1,500-3,000 trials on the
 * reference host; bounded, never). IOB_TEST_TRIALS runs more trials.
 */
static void test_scribbled_doorbell_does_not_hold_stop(void** state) {
    fixture_t* f = *state;
    const int trials = getenv("IOB_TEST_TRIALS") != NULL ? atoi(getenv("IOB_TEST_TRIALS")) : 1000;
    const int channels = 200;
    int hung = 0;
    unsigned seed = 12345;
    for (int t = 0; t < trials && hung == 0; t++) {
        iobd_mediator_t* m = NULL;
        assert_int_equal(iobd_mediator_start(f->core, (uint32_t)channels, &m), ZX_OK);
        _Atomic uint32_t* bell = NULL;
        pid_t scribbler = -1;
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
                scribbler = start_scribbler(fds[2], 7u);
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
        assert_int_equal(pthread_create(&th, NULL, stopper_main, &s), 0);
        double kicked_at = 0;
        unsigned n = 0;
        while (!atomic_load(&s.done)) {
            if (!atomic_load(&s.kicked)) {
                if (++n % 256 == 0) {
                    iob_mchan_futex_wake(bell); /* keeps the mediator cycling */
                }
                continue;
            }
            if (kicked_at == 0) {
                kicked_at = mono_s();
            } else if (mono_s() - kicked_at > 0.5) {
                hung++;
                print_message("trial %d: iobd_mediator_stop still blocked after 0.5 s\n", t);
                break;
            }
        }
        kill(scribbler, SIGKILL);
        waitpid(scribbler, NULL, 0);
        /* Release a stuck stop, as any writer's ring would. */
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
        cmocka_unit_test_setup_teardown(test_open_failure_leaves_no_closed_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scribbled_doorbell_does_not_hold_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
