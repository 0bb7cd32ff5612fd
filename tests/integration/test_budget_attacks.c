/* SPDX-License-Identifier: MIT */
/*
 * Hostile clients against a real iobd started with no limit flags (its default budgets):
 * each attacker (iob_budget_attacker) is a separate process that asks iobd to hold ever
 * more until it is refused. After each attack iobd must be alive, another client's calls
 * must still complete promptly, and iobd's open fds and accounted bytes must come back to
 * what they were.
 *   - 64 regions of 1 TiB in one create: NO_MEMORY (or OUT_OF_RANGE), nothing allocated;
 *   - duplicate + export without import: refused (NO_RESOURCES) at the token budget, iobd's
 *     memory bounded, another client's import still fast;
 *   - broker MAP without UNMAP: refused (NO_RESOURCES) at the mapping-record budget.
 * Two more run against an iobd restarted with their own flags:
 *   - zx_handle_replace 50 rounds of a 256-value handle space (--handle-value-bits 8): never
 *     refused, and another client's create, duplicate and export/import keep working;
 *   - create + close of a 2 GiB region in a loop: another client's map-broker calls, which
 *     need the core lock, stay fast (the memory is made without the lock), and so do its
 *     gRPC calls (creates and closes run off the completion-queue thread, one client at a
 *     time per thread).
 */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "client/rpc/iob_conn.h"
#include "client/testkit/percentile.h"
#include "map_harness.h"
#include "test_regions.h"

static map_daemon_t g_daemon;
static iob_client_t* g_client; /* this process's session, on g_daemon */

/*
 * How much iobd's RSS may grow while holding a session's whole token budget. AddressSanitizer
 * adds redzones, shadow and allocation stacks to every small allocation (main() also shrinks
 * its quarantine of freed memory, which would otherwise count every freed message).
 */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK_KIB (96 * 1024)
#else
#define RSS_SLACK_KIB (16 * 1024)
#endif

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* iobd's descriptors, for the message when a count does not come back. */
static void dump_fds(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)g_daemon.pid);
    DIR* d = opendir(path);
    if (d == NULL) {
        return;
    }
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        char link[320], target[256];
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            fprintf(stderr, "  iobd fd %s -> %s\n", e->d_name, target);
        }
    }
    closedir(d);
}

static uint64_t iobd_rss_kib(void) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)g_daemon.pid);
    FILE* f = fopen(path, "r");
    assert_non_null(f);
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmRSS: %llu kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}

static iob_conn_server_info_t server_info(void) {
    iob__session_t* s = NULL;
    assert_int_equal(iob__session_get(&s), ZX_OK);
    iob_conn_server_info_t si;
    assert_int_equal(iob_conn_server_info(s->conn, &si), ZX_OK);
    iob__session_put(s);
    return si;
}

static void make(zx_handle_t* ep0, zx_handle_t* ep1) {
    zx_iob_region_t r =
        test_private_region(zx_system_get_page_size(), ZX_IOB_ACCESS_EP0_CAN_MAP_READ |
                                                           ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                                                           ZX_IOB_ACCESS_EP1_CAN_MAP_READ);
    assert_int_equal(zx_iob_create(0, &r, 1, ep0, ep1), ZX_OK);
}

/* This client's create + close, timed: the "other client" every attack must not stall. */
static double victim_create_ms(void) {
    double t0 = now_ms();
    zx_handle_t e0, e1;
    make(&e0, &e1);
    double t = now_ms() - t0;
    assert_int_equal(zx_handle_close(e0), ZX_OK);
    assert_int_equal(zx_handle_close(e1), ZX_OK);
    return t;
}

/*
 * Opens every connection this client will use (gRPC and the map broker, which import takes),
 * so that iobd's fd count at the start of a test already includes them.
 */
static void victim_warm(void) {
    /* The previous attacker's session and sockets may still be closing in iobd. */
    double deadline = now_ms() + 5000;
    while (server_info().sessions > 1 && now_ms() < deadline) {
        usleep(20000);
    }
    zx_handle_t e0, e1, t;
    char token[IOB_TOKEN_SIZE];
    make(&e0, &e1);
    assert_int_equal(iob_handle_export(e1, token), ZX_OK);
    assert_int_equal(iob_handle_import(token, &t), ZX_OK);
    assert_int_equal(zx_handle_close(e0), ZX_OK);
    assert_int_equal(zx_handle_close(t), ZX_OK);
    /* Settled: the same count 100 ms apart. */
    for (int fds = map_daemon_fds(&g_daemon, NULL); now_ms() < deadline + 5000;) {
        usleep(100000);
        int again = map_daemon_fds(&g_daemon, NULL);
        if (again == fds) {
            break;
        }
        fds = again;
    }
}

/* Runs the attacker to completion; its one report line goes to `line`. */
static void run_attacker(const char* const* argv, char* line, size_t cap) {
    int out = -1;
    pid_t pid = map_spawn(IOB_TEST_BUDGET_ATTACKER, argv, &out);
    bool got = map_read_line(out, line, cap, 120000);
    close(out);
    int rc = map_wait(pid);
    if (!got) {
        line[0] = '\0';
    }
    fprintf(stderr, "attacker %s: \"%s\" (exit %d)\n", argv[0], line, rc);
    assert_int_equal(rc, 0);
}

/* Polls until iobd's fds and bytes are back to their start values (or 10 s pass). */
static void assert_back_to(int fds, uint64_t bytes) {
    double deadline = now_ms() + 10000;
    int f = map_daemon_fds(&g_daemon, NULL);
    uint64_t b = server_info().bytes_in_use;
    while ((f != fds || b != bytes) && now_ms() < deadline) {
        usleep(50000);
        f = map_daemon_fds(&g_daemon, NULL);
        b = server_info().bytes_in_use;
    }
    if (f != fds) {
        dump_fds();
    }
    assert_int_equal(f, fds);
    assert_int_equal(b, bytes);
}

static void assert_alive(void) {
    assert_int_equal(kill(g_daemon.pid, 0), 0);
}

/*
 * (Re)starts g_daemon with the flags every attack here uses plus `extra` (NULL-terminated;
 * NULL: none) and connects this process's session to it.
 */
static void daemon_start(const char* const* extra) {
    if (g_client != NULL) {
        iob_client_close(g_client);
        g_client = NULL;
        map_daemon_stop(&g_daemon);
    }
    /*
     * A token time-to-live of 4 s lets the token flood finish well inside it (so only the
     * budget can stop it) and the test wait for expiry.
     */
    const char* args[16] = {"--token-ttl", "4s"};
    size_t n = 2;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 15; i++) {
        args[n++] = extra[i];
    }
    args[n] = NULL;
    map_daemon_start(&g_daemon, args);
    /*
     * IOB_TEST_IOBD_CGROUP_PROCS names a memory cgroup's cgroup.procs: iobd is moved there,
     * so that running this test against an unfixed iobd (which allocates until it is
     * killed) can only exhaust that cgroup, never the machine other work runs on.
     */
    const char* procs = getenv("IOB_TEST_IOBD_CGROUP_PROCS");
    if (procs != NULL) {
        FILE* f = fopen(procs, "w");
        if (f == NULL || fprintf(f, "%d\n", (int)g_daemon.pid) < 0 || fclose(f) != 0) {
            fprintf(stderr, "cannot move iobd into %s\n", procs);
            map_daemon_stop(&g_daemon);
            exit(1);
        }
    }
    if (iob_client_connect(g_daemon.target, &g_client) != ZX_OK) {
        fprintf(stderr, "cannot connect to iobd at %s\n", g_daemon.target);
        map_daemon_stop(&g_daemon);
        exit(1);
    }
}

static void test_64_tib_create(void** state) {
    (void)state;
    victim_warm();
    int fds = map_daemon_fds(&g_daemon, NULL);
    uint64_t bytes = server_info().bytes_in_use;
    char line[128];
    const char* argv[] = {"tib", NULL};
    run_attacker(argv, line, sizeof line);
    assert_alive();
    assert_true(strcmp(line, "status ZX_ERR_NO_MEMORY") == 0 ||
                strcmp(line, "status ZX_ERR_OUT_OF_RANGE") == 0);
    assert_true(victim_create_ms() < 1000);
    assert_back_to(fds, bytes);
}

static void test_token_flood(void** state) {
    (void)state;
    victim_warm();
    zx_handle_t e0, e1;
    make(&e0, &e1);
    int fds = map_daemon_fds(&g_daemon, NULL);
    uint64_t bytes = server_info().bytes_in_use;
    uint64_t rss_before = iobd_rss_kib();
    char line[128];
    const char* argv[] = {"tokens", "200000", NULL};
    run_attacker(argv, line, sizeof line);
    assert_alive();
    unsigned long count = 0;
    assert_int_equal(sscanf(line, "refused export ZX_ERR_NO_RESOURCES %lu", &count), 1);
    iob_conn_server_info_t si = server_info();
    assert_true(si.tokens >= count);
    assert_true(si.tokens <= si.session_max_tokens + 16);
    uint64_t rss_after = iobd_rss_kib();
    fprintf(stderr, "tokens outstanding %llu, iobd RSS %llu -> %llu KiB\n",
            (unsigned long long)si.tokens, (unsigned long long)rss_before,
            (unsigned long long)rss_after);
    assert_true(rss_after < rss_before + RSS_SLACK_KIB);
    /*
     * Another client's import stays fast with the attacker's tokens parked in iobd. The
     * median of 20: a loaded test machine may stall any single call.
     */
    double ms[20];
    for (int i = 0; i < 20; i++) {
        zx_handle_t d, t;
        char token[IOB_TOKEN_SIZE];
        assert_int_equal(zx_handle_duplicate(e1, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
        assert_int_equal(iob_handle_export(d, token), ZX_OK);
        double t0 = now_ms();
        assert_int_equal(iob_handle_import(token, &t), ZX_OK);
        ms[i] = now_ms() - t0;
        assert_int_equal(zx_handle_close(t), ZX_OK);
    }
    iob_tk_stats_t import_ms;
    iob_tk_stats(ms, 20, &import_ms);
    fprintf(stderr, "victim import: median %.3f ms, worst %.3f ms\n", import_ms.p50, import_ms.max);
    assert_true(import_ms.p50 < 5.0);
    assert_true(victim_create_ms() < 1000);
    /* The tokens expire (the harness's short time-to-live) and take the IOB with them. */
    assert_back_to(fds, bytes);
    assert_int_equal(server_info().tokens, 0);
    assert_int_equal(zx_handle_close(e0), ZX_OK);
    assert_int_equal(zx_handle_close(e1), ZX_OK);
}

static void test_mapping_flood(void** state) {
    (void)state;
    victim_warm();
    int fds = map_daemon_fds(&g_daemon, NULL);
    uint64_t bytes = server_info().bytes_in_use;
    uint64_t mappings = server_info().mappings;
    char line[128];
    const char* argv[] = {"maps", "300000", NULL};
    run_attacker(argv, line, sizeof line);
    assert_alive();
    unsigned long count = 0;
    assert_int_equal(sscanf(line, "refused map ZX_ERR_NO_RESOURCES %lu", &count), 1);
    assert_true(victim_create_ms() < 1000);
    /* The attacker exited: its records go with its process. */
    assert_back_to(fds, bytes);
    assert_int_equal(server_info().mappings, mappings);
}

/* This client's create, duplicate and export/import of the duplicate, each must succeed. */
static void victim_handles(void) {
    zx_handle_t e0, e1, d, t;
    char token[IOB_TOKEN_SIZE];
    make(&e0, &e1);
    assert_int_equal(zx_handle_duplicate(e1, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    assert_int_not_equal(d, e1);
    assert_int_equal(iob_handle_export(d, token), ZX_OK);
    assert_int_equal(iob_handle_import(token, &t), ZX_OK);
    assert_int_equal(zx_handle_close(t), ZX_OK);
    assert_int_equal(zx_handle_close(e1), ZX_OK);
    assert_int_equal(zx_handle_close(e0), ZX_OK);
}

/* 2^8 handle values; the attacker goes round them 50 times. */
#define VALUE_BITS "8"
#define REPLACE_ROUNDS 50

static void test_handle_value_churn(void** state) {
    (void)state;
    const char* extra[] = {"--handle-value-bits", VALUE_BITS, NULL};
    daemon_start(extra);
    victim_warm();
    /* Held through the attack: its values must stay valid while the others are reused. */
    zx_handle_t held0, held1;
    make(&held0, &held1);
    int fds = map_daemon_fds(&g_daemon, NULL);
    uint64_t bytes = server_info().bytes_in_use;
    char n[32], line[128];
    snprintf(n, sizeof n, "%d", REPLACE_ROUNDS << atoi(VALUE_BITS));
    const char* argv[] = {"replace", n, NULL};
    int out = -1;
    pid_t pid = map_spawn(IOB_TEST_BUDGET_ATTACKER, argv, &out);
    /* While the attacker runs: this client's calls keep getting fresh, working handles. */
    unsigned rounds = 0;
    for (;;) {
        struct pollfd p = {.fd = out, .events = POLLIN};
        if (poll(&p, 1, 0) != 0) {
            break;
        }
        victim_handles();
        rounds++;
    }
    bool got = map_read_line(out, line, sizeof line, 120000);
    close(out);
    int rc = map_wait(pid);
    fprintf(stderr, "attacker replace: \"%s\" (exit %d), victim rounds meanwhile %u\n",
            got ? line : "", rc, rounds);
    assert_true(got);
    assert_int_equal(rc, 0);
    assert_alive();
    char want[64];
    snprintf(want, sizeof want, "replaced %s", n);
    assert_string_equal(line, want);
    for (int i = 0; i < 4 << atoi(VALUE_BITS); i++) {
        victim_handles();
    }
    zx_handle_t d;
    assert_int_equal(zx_handle_duplicate(held1, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    assert_int_equal(zx_handle_close(d), ZX_OK);
    assert_true(victim_create_ms() < 1000);
    assert_back_to(fds, bytes);
    assert_int_equal(zx_handle_close(held0), ZX_OK);
    assert_int_equal(zx_handle_close(held1), ZX_OK);
}

#define BIG_REGION (UINT64_C(2) << 30)
#define BIG_CREATES 4
/*
 * Worst small call while the attacker allocates. A call that waits for the allocation waits
 * 75-100 ms per GiB of fallocate; otherwise it waits only for the CPU, which a loaded
 * two-core test machine shares (measured: under 5 ms).
 */
#define SMALL_CALL_MAX_MS 50.0

static uint64_t mem_available(void) {
    FILE* f = fopen("/proc/meminfo", "r");
    assert_non_null(f);
    char line[256];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return (uint64_t)kib << 10;
}

typedef struct big_attack {
    double worst_create, worst_info; /* gRPC: create + close of one page, ServerInfo */
    double worst_map;                /* map broker: map + unmap of an IOB made before */
    unsigned rpc_rounds, map_rounds;
    uint64_t bytes, peak; /* accounted bytes before the attack, and the most seen during it */
} big_attack_t;

typedef struct map_prober {
    zx_handle_t ep;
    atomic_bool stop;
    double worst;
    unsigned rounds;
    zx_status_t status;
} map_prober_t;

/* The broker path on its own thread, so that a gRPC call held up does not hide its stalls. */
static void* map_probe(void* arg) {
    map_prober_t* p = arg;
    iob__session_t* session = NULL;
    p->status = iob__session_get(&session);
    while (p->status == ZX_OK && !atomic_load(&p->stop)) {
        double t0 = now_ms();
        iob__grant_t g;
        p->status = iob__broker_map(session, p->ep, ZX_VM_PERM_READ, 0, 0,
                                    zx_system_get_page_size(), false, &g);
        if (p->status != ZX_OK) {
            break;
        }
        close(g.fd);
        p->status = iob__broker_unmap(session, g.mapping_id);
        double ms = now_ms() - t0;
        p->worst = ms > p->worst ? ms : p->worst;
        p->rounds++;
        usleep(1000);
    }
    iob__session_put(session);
    return NULL;
}

/*
 * The attacker creates and closes a 2 GiB region BIG_CREATES times while this client times
 * its small calls, each kind on its own thread; iobd must then be back where it started.
 */
static big_attack_t run_big_attack(void) {
    if (mem_available() < (UINT64_C(6) << 30)) {
        fprintf(stderr, "MemAvailable below 6 GiB: big-create attack skipped\n");
        skip();
    }
    const char* extra[] = {"--max-bytes", "3G", NULL};
    daemon_start(extra);
    victim_warm();
    big_attack_t r;
    memset(&r, 0, sizeof r);
    int fds = map_daemon_fds(&g_daemon, NULL);
    r.bytes = server_info().bytes_in_use;
    zx_handle_t m0, m1;
    make(&m0, &m1);
    map_prober_t prober = {.ep = m0, .status = ZX_OK};
    atomic_init(&prober.stop, false);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, map_probe, &prober), 0);
    char size[32], count[16], line[128];
    snprintf(size, sizeof size, "%llu", (unsigned long long)BIG_REGION);
    snprintf(count, sizeof count, "%d", BIG_CREATES);
    const char* argv[] = {"big", size, count, NULL};
    int out = -1;
    double start = now_ms();
    pid_t pid = map_spawn(IOB_TEST_BUDGET_ATTACKER, argv, &out);
    for (;;) {
        struct pollfd p = {.fd = out, .events = POLLIN};
        if (poll(&p, 1, 0) != 0) {
            break;
        }
        double c = victim_create_ms();
        double t0 = now_ms();
        iob_conn_server_info_t si = server_info();
        double i = now_ms() - t0;
        r.worst_create = c > r.worst_create ? c : r.worst_create;
        r.worst_info = i > r.worst_info ? i : r.worst_info;
        r.peak = si.bytes_in_use > r.peak ? si.bytes_in_use : r.peak;
        r.rpc_rounds++;
        usleep(1000);
    }
    bool got = map_read_line(out, line, sizeof line, 120000);
    close(out);
    int rc = map_wait(pid);
    atomic_store(&prober.stop, true);
    pthread_join(thread, NULL);
    r.worst_map = prober.worst;
    r.map_rounds = prober.rounds;
    fprintf(stderr,
            "attacker big: \"%s\" (exit %d) in %.0f ms; worst of %u gRPC rounds: create+close "
            "%.3f ms, ServerInfo %.3f ms; worst of %u broker map+unmap %.3f ms; peak bytes in "
            "use %llu MiB\n",
            got ? line : "", rc, now_ms() - start, r.rpc_rounds, r.worst_create, r.worst_info,
            r.map_rounds, r.worst_map, (unsigned long long)(r.peak >> 20));
    assert_int_equal(prober.status, ZX_OK);
    assert_true(got);
    assert_int_equal(rc, 0);
    assert_alive();
    char want[32];
    snprintf(want, sizeof want, "created %d", BIG_CREATES);
    assert_string_equal(line, want);
    assert_int_equal(zx_handle_close(m0), ZX_OK);
    assert_int_equal(zx_handle_close(m1), ZX_OK);
    assert_back_to(fds, r.bytes);
    return r;
}

/* The allocation is made without the core lock: a call that needs only the lock is not held. */
static void test_big_create_stall(void** state) {
    (void)state;
    big_attack_t r = run_big_attack();
    assert_true(r.worst_map < SMALL_CALL_MAX_MS);
    /*
     * The calls overlapped the allocations (charged before the memory is made): otherwise
     * the timings prove nothing.
     */
    assert_true(r.peak >= r.bytes + BIG_REGION);
}

/*
 * The same for gRPC calls: 200-540 ms per 2 GiB create while one completion-queue thread
 * served every call, the allocation included.
 */
static void test_big_create_rpc_stall(void** state) {
    (void)state;
    big_attack_t r = run_big_attack();
    assert_true(r.worst_create < SMALL_CALL_MAX_MS);
    assert_true(r.worst_info < SMALL_CALL_MAX_MS);
    assert_true(r.peak >= r.bytes + BIG_REGION);
}

int main(void) {
#if defined(__SANITIZE_ADDRESS__)
    char asan[512];
    const char* was = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%squarantine_size_mb=1", was != NULL ? was : "",
             was != NULL && was[0] != '\0' ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
#endif
    /* No limit flags: the defaults must hold. */
    daemon_start(NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_64_tib_create),
        cmocka_unit_test(test_token_flood),
        cmocka_unit_test(test_mapping_flood),
        /* Last: each restarts iobd with its own flags. */
        cmocka_unit_test(test_handle_value_churn),
        cmocka_unit_test(test_big_create_stall),
        cmocka_unit_test(test_big_create_rpc_stall),
    };
    /* One attack alone (e.g. against an unfixed iobd that the first attack kills). */
    if (getenv("IOB_TEST_ONLY") != NULL) {
        cmocka_set_test_filter(getenv("IOB_TEST_ONLY"));
    }
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    iob_client_close(g_client);
    map_daemon_stop(&g_daemon);
    return rc;
}
