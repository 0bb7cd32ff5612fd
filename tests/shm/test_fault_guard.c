/* SPDX-License-Identifier: MIT */
/*
 * The SIGBUS recovery of shm/fault_guard.h on memory that really faults: a memfd
 * mapped two pages long and then truncated to one, so its second page is a SIGBUS. A
 * guarded access there returns ZX_ERR_IO_DATA_INTEGRITY (also from many threads at once,
 * and over and over, with SIGBUS still deliverable afterwards); a fault outside the armed
 * range, outside any armed call, or a SIGBUS sent by kill still kills, and reaches a handler
 * installed before ours (checked in forked children: this test never starts gRPC).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "shm/fault_guard.h"
#include "shm/sys.h"

static size_t g_page;

/* Two pages mapped, the second past the end of the file: reading it is a SIGBUS. */
typedef struct half_gone {
    uint8_t* map;
    int fd;
} half_gone_t;

static void half_gone_make(half_gone_t* h) {
    /*
     * cmocka puts its own SIGBUS handler in place around each test (and back after it);
     * ours goes on top, as in iobd it goes on top of whatever was there.
     */
    assert_int_equal(iob_fault_init(IOB_FAULT_SIGBUS), ZX_OK);
    h->fd = iob__sys_memfd_create("iob-fault-test", MFD_CLOEXEC);
    assert_true(h->fd >= 0);
    assert_int_equal(ftruncate(h->fd, (off_t)(2 * g_page)), 0);
    h->map = mmap(NULL, 2 * g_page, PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, 0);
    assert_true(h->map != MAP_FAILED);
    memset(h->map, 0xA5, 2 * g_page);
    assert_int_equal(ftruncate(h->fd, (off_t)g_page), 0);
}

static void half_gone_free(half_gone_t* h) {
    munmap(h->map, 2 * g_page);
    close(h->fd);
}

static bool sigbus_blocked(void) {
    sigset_t now;
    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &now), 0);
    return sigismember(&now, SIGBUS) == 1;
}

static zx_status_t return_arg(void* ctx) {
    return *(const zx_status_t*)ctx;
}

static void test_guarded_copy(void** state) {
    (void)state;
    half_gone_t h;
    half_gone_make(&h);
    uint8_t buf[64];
    size_t range = 2 * g_page;
    /* The page still there copies both ways. */
    memset(buf, 0, sizeof buf);
    assert_int_equal(iob_fault_memcpy(h.map, range, buf, h.map + 8, sizeof buf), ZX_OK);
    assert_int_equal(buf[0], 0xA5);
    assert_int_equal(buf[63], 0xA5);
    memset(buf, 0x11, sizeof buf);
    assert_int_equal(iob_fault_memcpy(h.map, range, h.map + 8, buf, sizeof buf), ZX_OK);
    assert_int_equal(h.map[8], 0x11);
    /* The page that is gone: a status, both ways, and a copy straddling the end. */
    assert_int_equal(iob_fault_memcpy(h.map, range, buf, h.map + g_page, sizeof buf),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_fault_memcpy(h.map, range, h.map + g_page + 100, buf, sizeof buf),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_fault_memcpy(h.map, range, buf, h.map + g_page - 32, sizeof buf),
                     ZX_ERR_IO_DATA_INTEGRITY);
    /* Recovery leaves nothing behind: the mask, and the next call's status passes through. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(iob_fault_memcpy(h.map, range, buf, h.map + g_page + (size_t)i, 1),
                         ZX_ERR_IO_DATA_INTEGRITY);
    }
    assert_false(sigbus_blocked());
    zx_status_t want = ZX_ERR_NO_SPACE;
    assert_int_equal(iob_fault_call(h.map, range, return_arg, &want), ZX_ERR_NO_SPACE);
    assert_int_equal(iob_fault_memcpy(h.map, range, buf, h.map, sizeof buf), ZX_OK);
    half_gone_free(&h);
}

/* libiob's channel: SIGSEGV too, on a page the program took away from under the copy. */
static void test_sigsegv(void** state) {
    (void)state;
    assert_int_equal(iob_fault_init(IOB_FAULT_SIGBUS | IOB_FAULT_SIGSEGV), ZX_OK);
    assert_true(iob_fault_in_place(IOB_FAULT_SIGBUS | IOB_FAULT_SIGSEGV));
    uint8_t* map = mmap(NULL, 2 * g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    assert_true(map != MAP_FAILED);
    memset(map, 0x5A, 2 * g_page);
    assert_int_equal(mprotect(map + g_page, g_page, PROT_NONE), 0);
    uint8_t buf[64];
    assert_int_equal(iob_fault_memcpy(map + g_page - 32, sizeof buf, buf, map + g_page - 32,
                                      sizeof buf),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_fault_memcpy(map, sizeof buf, buf, map, sizeof buf), ZX_OK);
    assert_int_equal(buf[63], 0x5A);
    munmap(map, 2 * g_page);
}

typedef struct nest {
    half_gone_t* h;
    zx_status_t inner;
} nest_t;

static zx_status_t nested_inner(void* ctx) {
    nest_t* n = ctx;
    uint8_t b;
    n->inner = iob_fault_memcpy(n->h->map, 2 * g_page, &b, n->h->map + g_page, 1);
    /* The outer call's recovery point is armed again: this fault ends it. */
    volatile uint8_t* gone = n->h->map + g_page + 1;
    (void)*gone;
    return ZX_OK;
}

static void test_nested(void** state) {
    (void)state;
    half_gone_t h;
    half_gone_make(&h);
    nest_t n = {&h, ZX_OK};
    assert_int_equal(iob_fault_call(h.map, 2 * g_page, nested_inner, &n), ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(n.inner, ZX_ERR_IO_DATA_INTEGRITY);
    half_gone_free(&h);
}

/* One call, its range moved from copy to copy (iob_fault_range), as libiob's writev does. */
typedef struct moving {
    const uint8_t* first;
    const uint8_t* second;
    uint8_t buf[32];   /* where the copies go (the caller's: they cannot be optimised away) */
    volatile int step; /* the copy running when the call ended; 3: both made */
} moving_t;

static zx_status_t moving_copies(void* ctx) {
    moving_t* m = ctx;
    m->step = 1;
    iob_fault_range(m->first, sizeof m->buf);
    memcpy(m->buf, m->first, sizeof m->buf);
    m->step = 2;
    iob_fault_range(m->second, sizeof m->buf);
    memcpy(m->buf, m->second, sizeof m->buf);
    m->step = 3;
    return ZX_OK;
}

static void test_range_moves(void** state) {
    (void)state;
    half_gone_t h;
    half_gone_make(&h);
    uint8_t other[32] = {0};
    /* Armed for nothing at first: each copy names its own source; the second straddles the
     * end of the file. */
    moving_t m = {.first = other, .second = h.map + g_page - 16};
    assert_int_equal(iob_fault_call(NULL, 0, moving_copies, &m), ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(m.step, 2);
    m = (moving_t){.first = h.map + 64, .second = other};
    assert_int_equal(iob_fault_call(NULL, 0, moving_copies, &m), ZX_OK);
    assert_int_equal(m.step, 3);
    assert_int_equal(m.buf[0], 0); /* the second copy's */
    assert_false(sigbus_blocked());
    /* Outside any call, moving the range does nothing (and does not crash). */
    iob_fault_range(h.map, 2 * g_page);
    half_gone_free(&h);
}

enum { THREADS = 4, ROUNDS = 2000 };

static void* fault_thread(void* arg) {
    half_gone_t* h = arg;
    uint8_t buf[32];
    for (int i = 0; i < ROUNDS; i++) {
        size_t at = (size_t)(i * 97) % (g_page - sizeof buf);
        if (iob_fault_memcpy(h->map, 2 * g_page, buf, h->map + g_page + at, sizeof buf) !=
                ZX_ERR_IO_DATA_INTEGRITY ||
            iob_fault_memcpy(h->map, 2 * g_page, buf, h->map + at, sizeof buf) != ZX_OK ||
            buf[0] != 0xA5) {
            return (void*)1;
        }
    }
    return NULL;
}

static void test_threads(void** state) {
    (void)state;
    half_gone_t h;
    half_gone_make(&h);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, fault_thread, &h), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void* rc = (void*)1;
        assert_int_equal(pthread_join(t[i], &rc), 0);
        assert_null(rc);
    }
    half_gone_free(&h);
}

/* ---- Faults that are not ours still kill ---- */

typedef enum unguarded {
    FAULT_UNARMED,      /* no call armed */
    FAULT_OUT_OF_RANGE, /* armed, but for other memory */
    FAULT_SENT,         /* armed, in range, but the SIGBUS comes from kill */
    FAULT_CHAINED,      /* unarmed, with a handler installed before ours */
    FAULT_RANGE_MOVED,  /* armed for the gone page, then moved elsewhere (iob_fault_range) */
} unguarded_t;

static half_gone_t* g_child_h;

enum { CHAINED_EXIT = 42 };

/* A handler that was there before ours (as a sanitizer's is): it must get the fault. */
static void earlier_handler(int sig, siginfo_t* info, void* uctx) {
    (void)uctx;
    _exit(sig == SIGBUS && info->si_addr == g_child_h->map + g_page ? CHAINED_EXIT : 4);
}

static zx_status_t touch_gone(void* ctx) {
    (void)ctx;
    volatile uint8_t* gone = g_child_h->map + g_page;
    (void)*gone;
    return ZX_OK;
}

static zx_status_t move_then_touch_gone(void* ctx) {
    static uint8_t elsewhere[16];
    (void)ctx;
    iob_fault_range(elsewhere, sizeof elsewhere);
    return touch_gone(NULL);
}

static zx_status_t send_sigbus(void* ctx) {
    (void)ctx;
    kill(getpid(), SIGBUS);
    return ZX_OK;
}

/* The child's exit: 0 when it survived what should have killed it. */
static int child_main(unguarded_t how, half_gone_t* h) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    g_child_h = h;
    /* The default action behind ours, not cmocka's handler (which would go on testing here). */
    struct sigaction before;
    memset(&before, 0, sizeof before);
    before.sa_handler = SIG_DFL;
    if (how == FAULT_CHAINED) {
        before.sa_sigaction = earlier_handler;
        before.sa_flags = SA_SIGINFO;
    }
    sigaction(SIGBUS, &before, NULL);
    if (iob_fault_init(IOB_FAULT_SIGBUS) != ZX_OK) {
        return 3;
    }
    uint8_t other[16];
    switch (how) {
    case FAULT_UNARMED:
    case FAULT_CHAINED:
        touch_gone(NULL);
        break;
    case FAULT_OUT_OF_RANGE:
        iob_fault_call(other, sizeof other, touch_gone, NULL);
        break;
    case FAULT_SENT:
        iob_fault_call(h->map, 2 * g_page, send_sigbus, NULL);
        break;
    case FAULT_RANGE_MOVED:
        iob_fault_call(h->map, 2 * g_page, move_then_touch_gone, NULL);
        break;
    }
    return 0;
}

static void expect_killed(unguarded_t how) {
    half_gone_t h;
    half_gone_make(&h);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(child_main(how, &h));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (how == FAULT_CHAINED) {
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), CHAINED_EXIT);
    } else {
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGBUS);
    }
    half_gone_free(&h);
}

static void test_unarmed_fault_kills(void** state) {
    (void)state;
    expect_killed(FAULT_UNARMED);
}

static void test_fault_outside_range_kills(void** state) {
    (void)state;
    expect_killed(FAULT_OUT_OF_RANGE);
}

static void test_sent_sigbus_kills(void** state) {
    (void)state;
    expect_killed(FAULT_SENT);
}

static void test_moved_range_no_longer_recovers(void** state) {
    (void)state;
    expect_killed(FAULT_RANGE_MOVED);
}

static void test_earlier_handler_gets_other_faults(void** state) {
    (void)state;
    expect_killed(FAULT_CHAINED);
}

int main(void) {
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guarded_copy),
        cmocka_unit_test(test_sigsegv),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_range_moves),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_unarmed_fault_kills),
        cmocka_unit_test(test_fault_outside_range_kills),
        cmocka_unit_test(test_sent_sigbus_kills),
        cmocka_unit_test(test_moved_range_no_longer_recovers),
        cmocka_unit_test(test_earlier_handler_gets_other_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
