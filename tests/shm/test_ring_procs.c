/* SPDX-License-Identifier: MIT */
/* Tests of shm/ring across two processes: streams in both wait modes, wake-ups, spin budgets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ring_fixture.h"
#include "shm/ring.h"
#include "test_util.h"

/* ---- two processes ------------------------------------------------------------------ */

typedef struct shared_pair {
    void* ctrl;
    void* data;
    uint64_t data_size;
} shared_pair_t;

static shared_pair_t shared_new(uint64_t data_size) {
    shared_pair_t s;
    s.ctrl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    s.data = mmap(NULL, data_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(s.ctrl != MAP_FAILED && s.data != MAP_FAILED);
    s.data_size = data_size;
    assert_int_equal(iob_ring_format(s.ctrl, 4096, data_size), ZX_OK);
    return s;
}

static void shared_free(shared_pair_t* s) {
    munmap(s->ctrl, 4096);
    munmap(s->data, s->data_size);
}

/* Attaches a consumer, waiting for the producer's process to format the ring. */
static void consumer_attach(iob_ring_consumer_t* c, const shared_pair_t* s,
                            const iob_ring_options_t* o) {
    zx_status_t st;
    while ((st = iob_ring_consumer_init(c, s->ctrl, 4096, s->data, s->data_size, o)) ==
           ZX_ERR_SHOULD_WAIT) {
    }
    assert_int_equal(st, ZX_OK);
}

static uint64_t checksum(const unsigned char* b, size_t n) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211u;
    }
    return h;
}

/*
 * Child producer: message i carries i, a payload of varying length and a checksum of
 * that payload. Exit status 0 on success.
 */
static _Noreturn void run_producer(shared_pair_t* s, uint64_t count, iob_ring_wait_mode_t wait,
                                   uint32_t batch, int pause_every) {
    iob_ring_producer_t p;
    iob_ring_options_t o = {.batch = batch, .wait = wait};
    if (iob_ring_producer_init(&p, s->ctrl, 4096, s->data, s->data_size, &o) != ZX_OK) {
        _exit(10);
    }
    unsigned char payload[3000];
    for (uint64_t i = 0; i < count; i++) {
        size_t n = 16 + (size_t)((i * 2654435761u) % 2900u);
        void* dst;
        zx_status_t st;
        while ((st = iob_ring_reserve(&p, n, &dst)) == ZX_ERR_SHOULD_WAIT) {
            if (iob_ring_producer_wait(&p, n, iob_ring_now() + 10000000000) != ZX_OK) {
                _exit(11);
            }
        }
        if (st != ZX_OK) {
            _exit(12);
        }
        fill(payload + 16, n - 16, i);
        uint64_t sum = checksum(payload + 16, n - 16);
        memcpy(payload, &i, 8);
        memcpy(payload + 8, &sum, 8);
        memcpy(dst, payload, n);
        if (iob_ring_commit(&p, n) != ZX_OK) {
            _exit(13);
        }
        if (pause_every != 0 && (i % (uint64_t)pause_every) == 0) {
            /* Go idle now and then, so the consumer really falls asleep. */
            iob_ring_producer_flush(&p);
            usleep(50);
        }
    }
    iob_ring_producer_close(&p);
    _exit(0);
}

static void run_consumer(shared_pair_t* s, uint64_t count, iob_ring_wait_mode_t wait,
                         uint32_t batch, iob_ring_stats_t* stats) {
    iob_ring_consumer_t c;
    iob_ring_options_t o = {.batch = batch, .wait = wait};
    /* The consumer does not map the data region writable in real use; here it is shared
     * memory from mmap, and read-only access is all the code does. */
    consumer_attach(&c, s, &o);
    zx_status_t st;
    uint64_t got = 0;
    for (;;) {
        const void* msg;
        size_t len;
        st = iob_ring_peek(&c, &msg, &len);
        if (st == ZX_ERR_SHOULD_WAIT) {
            assert_int_equal(iob_ring_consumer_wait(&c, iob_ring_now() + 10000000000), ZX_OK);
            continue;
        }
        if (st == ZX_ERR_PEER_CLOSED) {
            break;
        }
        assert_int_equal(st, ZX_OK);
        const unsigned char* b = msg;
        uint64_t seq;
        uint64_t sum;
        memcpy(&seq, b, 8);
        memcpy(&sum, b + 8, 8);
        assert_int_equal(seq, got);
        assert_int_equal(len, 16 + (size_t)((got * 2654435761u) % 2900u));
        assert_int_equal(sum, checksum(b + 16, len - 16));
        iob_ring_release(&c);
        got++;
    }
    assert_int_equal(got, count);
    *stats = c.stats;
    iob_ring_consumer_fini(&c);
}

static void two_process(uint64_t data_size, uint64_t count, iob_ring_wait_mode_t wait,
                        uint32_t batch, int pause_every, iob_ring_stats_t* stats) {
    shared_pair_t s = shared_new(data_size);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        run_producer(&s, count, wait, batch, pause_every);
    }
    run_consumer(&s, count, wait, batch, stats);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    shared_free(&s);
}

static void test_two_process_spin(void** state) {
    (void)state;
    iob_ring_stats_t st;
    two_process(1u << 16, 200000, IOB_RING_WAIT_SPIN, 8, 0, &st);
}

static void test_two_process_block(void** state) {
    (void)state;
    iob_ring_stats_t st;
    two_process(1u << 14, 200000, IOB_RING_WAIT_BLOCK, 4, 0, &st);
}

/*
 * Lost wake-up stress: the producer goes idle every few messages, so the consumer keeps
 * falling asleep on the futex right as data arrives. A lost wake-up shows as a 10 s wait
 * timing out (the test fails, it does not hang); ctest's TIMEOUT bounds the rest.
 */
static void test_blocking_no_lost_wakeup(void** state) {
    (void)state;
    iob_ring_stats_t st;
    zx_time_t t0 = iob_ring_now();
    two_process(1u << 13, 20000, IOB_RING_WAIT_BLOCK, 1, 3, &st);
    zx_time_t t1 = iob_ring_now();
    assert_true(st.futex_waits > 0);
    assert_true(t1 - t0 < 60 * (zx_time_t)1000000000);
}

/* A producer blocked on a full ring is woken by the consumer draining it. */
static void test_blocking_producer_wakeup(void** state) {
    (void)state;
    iob_ring_stats_t st;
    /* Small ring, large messages: the producer sleeps for space all the time. */
    two_process(8192, 20000, IOB_RING_WAIT_BLOCK, 1, 0, &st);
}

/* Spins (no sleep: the point is to look busy) until `until`. */
static void busy_until(zx_time_t until) {
    while (iob_ring_now() < until) {
    }
}

/*
 * A producer sends a message every `period_ns` and a blocking consumer works `work_ns` on
 * each one; returns the consumer's stats.
 */
static iob_ring_stats_t paced_pair(int64_t period_ns, int64_t work_ns, uint64_t count) {
    shared_pair_t s = shared_new(1u << 16);
    iob_ring_options_t o = {.batch = 1, .wait = IOB_RING_WAIT_BLOCK};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        iob_ring_producer_t p;
        if (iob_ring_producer_init(&p, s.ctrl, 4096, s.data, s.data_size, &o) != ZX_OK) {
            _exit(10);
        }
        zx_time_t due = iob_ring_now();
        for (uint64_t i = 0; i < count; i++) {
            due += period_ns;
            busy_until(due);
            if (iob_ring_write(&p, &i, sizeof(i)) != ZX_OK) {
                _exit(11);
            }
            iob_ring_producer_flush(&p);
        }
        iob_ring_producer_close(&p);
        _exit(0);
    }
    iob_ring_consumer_t c;
    consumer_attach(&c, &s, &o);
    zx_status_t st;
    uint64_t got = 0;
    for (;;) {
        uint64_t seq;
        size_t len;
        st = iob_ring_read(&c, &seq, sizeof(seq), &len);
        if (st == ZX_ERR_SHOULD_WAIT) {
            assert_int_equal(iob_ring_consumer_wait(&c, iob_ring_now() + 10000000000), ZX_OK);
            continue;
        }
        if (st == ZX_ERR_PEER_CLOSED) {
            break;
        }
        assert_int_equal(st, ZX_OK);
        assert_int_equal(seq, got);
        got++;
        busy_until(iob_ring_now() + work_ns);
    }
    assert_int_equal(got, count);
    iob_ring_stats_t stats = c.stats;
    iob_ring_consumer_fini(&c);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    shared_free(&s);
    return stats;
}

/*
 * Full load where the consumer is a little faster than the producer: every wait is about
 * 100 us, longer than any fixed spin budget a sparse stream could afford, but short beside
 * the 300 us of work before it. Blocking mode must spin through such waits rather than
 * sleep at each one (a sleeping side costs the other a wake-up syscall per message and
 * wakes late on a VM). A preempted producer may cost a sleep or two.
 */
static void test_blocking_dense_stream_spins(void** state) {
    (void)state;
    iob_ring_stats_t st = paced_pair(400000, 300000, 200);
    assert_true(st.futex_waits < 200 / 4);
}

/* A sparse stream (1 ms gaps, no work): blocking mode sleeps through nearly every gap. */
static void test_blocking_sparse_stream_sleeps(void** state) {
    (void)state;
    iob_ring_stats_t st = paced_pair(1000000, 0, 100);
    assert_true(st.futex_waits > 100 / 2);
}

/*
 * `test_ring_procs waits` runs only the tests that judge blocking mode by time (how a waiter
 * spends its waits); ctest runs them alone (RUN_SERIAL), since another test's processes on
 * the same two CPUs change every wait they time.
 */
int main(int argc, char** argv) {
    const struct CMUnitTest timed[] = {
        cmocka_unit_test(test_blocking_dense_stream_spins),
        cmocka_unit_test(test_blocking_sparse_stream_sleeps),
    };
    if (argc > 1 && strcmp(argv[1], "waits") == 0) {
        return cmocka_run_group_tests_name("ring waits", timed, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_process_spin),
        cmocka_unit_test(test_two_process_block),
        cmocka_unit_test(test_blocking_no_lost_wakeup),
        cmocka_unit_test(test_blocking_producer_wakeup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
