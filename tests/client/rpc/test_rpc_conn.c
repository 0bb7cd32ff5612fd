/* SPDX-License-Identifier: MIT */
/*
 * iobd end to end through iob_conn (client/rpc): a real iobd on a Unix socket. Each case
 * checks the exact Zircon status that crosses the wire, and that the server keeps serving.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <zircon/syscalls/iob.h>
#include <zircon/syscalls/object.h>

#include "client/rpc/iob_conn.h"
#include "iobd_harness.h"

static iobd_harness_t g_iobd;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static iob_conn_t* open_conn(void) {
    iob_conn_options_t o;
    memset(&o, 0, sizeof o);
    o.target = g_iobd.target;
    iob_conn_t* c = NULL;
    assert_int_equal(iob_conn_open(&o, &c), ZX_OK);
    return c;
}

static zx_iob_region_t region(uint64_t size, uint32_t access) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_PRIVATE;
    r.access = access;
    r.size = size;
    return r;
}

#define RW_BOTH                                                                         \
    (ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |                 \
     ZX_IOB_ACCESS_EP1_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE)

/* A connection and one IOB of one 4 KiB region both endpoints map read-write. */
static iob_conn_t* open_with_iob(zx_handle_t* ep0, zx_handle_t* ep1) {
    iob_conn_t* c = open_conn();
    zx_iob_region_t r = region(4096, RW_BOTH);
    assert_int_equal(iob_conn_iob_create(c, 0, &r, 1, ep0, ep1), ZX_OK);
    return c;
}

static void test_session_info(void** state) {
    (void)state;
    iob_conn_t* c = open_conn();
    const iob_conn_session_info_t* s = iob_conn_session(c);
    assert_true(s->session_id != 0);
    assert_int_equal(s->page_size, 4096);
    assert_string_equal(s->backing, "4K");
    assert_non_null(strstr(s->broker_path, "iobd-broker.sock"));
    iob_conn_server_info_t si;
    assert_int_equal(iob_conn_server_info(c, &si), ZX_OK);
    assert_int_equal(si.page_size, 4096);
    assert_string_equal(si.backing, "4K");
    assert_true(si.sessions >= 1);
    iob_conn_close(c);
}

static void test_create_info_close(void** state) {
    (void)state;
    iob_conn_t* c = open_conn();
    zx_iob_region_t r[2] = {region(5000, RW_BOTH),
                            region(1, ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                                          ZX_IOB_ACCESS_EP1_CAN_MAP_READ)};
    /* Bytes beyond the readable fields must survive the trip. */
    r[0].max_extension[31] = 0; /* private options stay 0; padding bytes: */
    r[0].private_region.padding2[2] = 0x1122334455667788ull;
    zx_handle_t ep0 = 0, ep1 = 0;
    assert_int_equal(iob_conn_iob_create(c, 0, r, 2, &ep0, &ep1), ZX_OK);
    assert_true(ep0 != 0 && ep1 != 0 && ep0 != ep1);

    zx_info_iob_t info;
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_conn_get_info(c, ep0, ZX_INFO_IOB, &info, sizeof info, &actual, &avail),
                     ZX_OK);
    assert_int_equal(info.region_count, 2);
    assert_int_equal(actual, 1);

    zx_iob_region_info_t ri[4];
    assert_int_equal(iob_conn_get_info(c, ep1, ZX_INFO_IOB_REGIONS, ri, sizeof ri, &actual, &avail),
                     ZX_OK);
    assert_int_equal(actual, 2);
    assert_int_equal(avail, 2);
    assert_true(ri[0].region.size == 8192);
    assert_true(ri[0].region.private_region.padding2[2] == 0x1122334455667788ull);
    /* ep1 sees the access bits swapped. */
    assert_int_equal(ri[1].region.access,
                     ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE);

    /* A buffer for one record only: actual 1, avail 2. */
    assert_int_equal(iob_conn_get_info(c, ep1, ZX_INFO_IOB_REGIONS, ri, sizeof ri[0], &actual,
                                       &avail),
                     ZX_OK);
    assert_int_equal(actual, 1);
    assert_int_equal(avail, 2);

    /* Too small for the one record: BUFFER_TOO_SMALL, with actual 0, avail 1 (trailers). */
    actual = avail = 99;
    assert_int_equal(iob_conn_get_info(c, ep0, ZX_INFO_IOB, &info, 8, &actual, &avail),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(actual, 0);
    assert_int_equal(avail, 1);

    zx_info_handle_basic_t hb;
    assert_int_equal(iob_conn_get_info(c, ep0, ZX_INFO_HANDLE_BASIC, &hb, sizeof hb, NULL, NULL),
                     ZX_OK);
    assert_int_equal(hb.type, ZX_OBJ_TYPE_IOB);
    assert_int_equal(hb.rights, ZX_DEFAULT_IOB_RIGHTS);

    assert_int_equal(iob_conn_handle_close(c, ep0), ZX_OK);
    assert_int_equal(iob_conn_handle_close(c, ep0), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_conn_handle_close(c, ep1), ZX_OK);
    iob_conn_close(c);
}

static void test_create_errors(void** state) {
    (void)state;
    iob_conn_t* c = open_conn();
    zx_handle_t a, b;
    zx_iob_region_t r = region(4096, RW_BOTH);
    assert_int_equal(iob_conn_iob_create(c, 1, &r, 1, &a, &b), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_conn_iob_create(c, 0, &r, 0, &a, &b), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_conn_iob_create(c, 0, &r, 1, NULL, &b), ZX_ERR_INVALID_ARGS);
    zx_iob_region_t many[65];
    for (int i = 0; i < 65; i++) {
        many[i] = region(4096, RW_BOTH);
    }
    assert_int_equal(iob_conn_iob_create(c, 0, many, 65, &a, &b), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_conn_iob_create(c, 0, many, 64, &a, &b), ZX_OK);
    zx_iob_region_t huge = region(UINT64_MAX, RW_BOTH);
    assert_int_equal(iob_conn_iob_create(c, 0, &huge, 1, &a, &b), ZX_ERR_OUT_OF_RANGE);
    zx_iob_region_t nobody = region(4096, 0);
    assert_int_equal(iob_conn_iob_create(c, 0, &nobody, 1, &a, &b), ZX_ERR_INVALID_ARGS);
    /* Invalid handles. */
    assert_int_equal(iob_conn_handle_close(c, 0x12345677), ZX_ERR_BAD_HANDLE);
    zx_signals_t sig;
    assert_int_equal(iob_conn_signals(c, 0, &sig), ZX_ERR_BAD_HANDLE);
    iob_conn_close(c);
}

static void test_other_sessions_handles(void** state) {
    (void)state;
    iob_conn_t* c1 = open_conn();
    iob_conn_t* c2 = open_conn();
    zx_handle_t ep0, ep1;
    zx_iob_region_t r = region(4096, RW_BOTH);
    assert_int_equal(iob_conn_iob_create(c1, 0, &r, 1, &ep0, &ep1), ZX_OK);
    /* Another session's handle is as bad as one that never existed. */
    assert_int_equal(iob_conn_handle_close(c2, ep0), ZX_ERR_BAD_HANDLE);
    zx_info_iob_t info;
    assert_int_equal(iob_conn_get_info(c2, ep0, ZX_INFO_IOB, &info, sizeof info, NULL, NULL),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_conn_handle_close(c1, ep0), ZX_OK);
    iob_conn_close(c2);
    iob_conn_close(c1);
}

static void test_rights_name_signals(void** state) {
    (void)state;
    zx_handle_t ep0, ep1, dup, rep;
    iob_conn_t* c = open_with_iob(&ep0, &ep1);
    assert_int_equal(iob_conn_handle_duplicate(c, ep0, ZX_RIGHT_WAIT | ZX_RIGHT_INSPECT, &dup),
                     ZX_OK);
    assert_int_equal(iob_conn_object_signal(c, dup, 0, ZX_USER_SIGNAL_0), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_conn_handle_duplicate(c, dup, ZX_RIGHT_SAME_RIGHTS, &rep),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_conn_handle_replace(c, dup, ZX_RIGHT_WAIT, &rep), ZX_OK);
    assert_int_equal(iob_conn_handle_close(c, dup), ZX_ERR_BAD_HANDLE);

    char name[ZX_MAX_NAME_LEN];
    assert_int_equal(iob_conn_set_property(c, ep0, ZX_PROP_NAME, "my-iob", 6), ZX_OK);
    memset(name, 'x', sizeof name);
    assert_int_equal(iob_conn_get_property(c, ep1, ZX_PROP_NAME, name, sizeof name), ZX_OK);
    assert_string_equal(name, "my-iob");
    assert_int_equal(iob_conn_get_property(c, ep1, ZX_PROP_NAME, name, 8),
                     ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(iob_conn_get_property(c, ep1, ZX_PROP_NAME, NULL, 32), ZX_ERR_INVALID_ARGS);
    const char* longname = "0123456789012345678901234567890123456789";
    assert_int_equal(iob_conn_set_property(c, ep0, ZX_PROP_NAME, longname, strlen(longname)),
                     ZX_OK);
    assert_int_equal(iob_conn_get_property(c, ep0, ZX_PROP_NAME, name, sizeof name), ZX_OK);
    assert_int_equal(strlen(name), 31);

    assert_int_equal(iob_conn_object_signal(c, ep0, 0, ZX_IOB_PEER_CLOSED), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_conn_object_signal_peer(c, ep0, 0, ZX_USER_SIGNAL_1), ZX_OK);
    zx_signals_t sig = 0;
    assert_int_equal(iob_conn_signals(c, ep1, &sig), ZX_OK);
    assert_int_equal(sig, ZX_USER_SIGNAL_1);
    assert_int_equal(iob_conn_signals(c, rep, &sig), ZX_OK);
    assert_int_equal(sig, 0);

    iob_conn_handle_close(c, rep);
    iob_conn_handle_close(c, ep1);
    assert_int_equal(iob_conn_object_signal_peer(c, ep0, 0, ZX_USER_SIGNAL_1),
                     ZX_ERR_PEER_CLOSED);
    iob_conn_handle_close(c, ep0);
    iob_conn_close(c);
}

typedef struct event_log {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    zx_handle_t handle[64];
    zx_signals_t signals[64];
    int count;
} event_log_t;

static void on_event(void* ctx, zx_handle_t handle, zx_signals_t signals) {
    event_log_t* l = ctx;
    pthread_mutex_lock(&l->lock);
    if (l->count < 64) {
        l->handle[l->count] = handle;
        l->signals[l->count] = signals;
        l->count++;
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

/* Waits up to 2 s for an event (handle, signals) to have been seen. */
static bool saw_event(event_log_t* l, zx_handle_t h, zx_signals_t s) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        for (int i = 0; i < l->count; i++) {
            if (l->handle[i] == h && l->signals[i] == s) {
                pthread_mutex_unlock(&l->lock);
                return true;
            }
        }
        if (pthread_cond_timedwait(&l->cond, &l->lock, &dl) != 0) {
            pthread_mutex_unlock(&l->lock);
            return false;
        }
    }
}

static void test_events_and_peer_closed(void** state) {
    (void)state;
    event_log_t log;
    memset(&log, 0, sizeof log);
    pthread_mutex_init(&log.lock, NULL);
    pthread_cond_init(&log.cond, NULL);
    iob_conn_t* c1 = open_conn();
    iob_conn_set_event_callback(c1, on_event, &log);
    iob_conn_t* c2 = open_conn();
    zx_handle_t ep0, ep1, mine;
    zx_iob_region_t r = region(4096, RW_BOTH);
    assert_int_equal(iob_conn_iob_create(c1, 0, &r, 1, &ep0, &ep1), ZX_OK);
    char token[IOB_CONN_TOKEN_SIZE];
    assert_int_equal(iob_conn_handle_export(c1, ep1, token), ZX_OK);
    assert_true(saw_event(&log, ep1, ZX_SIGNAL_HANDLE_CLOSED));
    assert_int_equal(iob_conn_handle_import(c2, token, &mine), ZX_OK);
    assert_int_equal(iob_conn_handle_import(c2, token, &mine), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_conn_object_signal_peer(c2, mine, 0, ZX_USER_SIGNAL_2), ZX_OK);
    assert_true(saw_event(&log, ep0, ZX_USER_SIGNAL_2));
    /* c2's session ends: its handle closes, the peer sees PEER_CLOSED. */
    iob_conn_close(c2);
    assert_true(saw_event(&log, ep0, ZX_USER_SIGNAL_2 | ZX_IOB_PEER_CLOSED));
    zx_signals_t obs = 0;
    assert_int_equal(iob_conn_wait_one(c1, ep0, ZX_IOB_PEER_CLOSED, now_ns() + ZX_SEC(5), &obs),
                     ZX_OK);
    assert_true(obs & ZX_IOB_PEER_CLOSED);
    iob_conn_close(c1);
    pthread_cond_destroy(&log.cond);
    pthread_mutex_destroy(&log.lock);
}

/*
 * CloseHandles (zx_handle_close_many): ZX_HANDLE_INVALID entries skipped; a bad entry
 * among good ones is BAD_HANDLE with the good ones closed; the peer in another session sees
 * PEER_CLOSED, on its event stream and in its signals.
 */
static void test_close_many(void** state) {
    (void)state;
    event_log_t log;
    memset(&log, 0, sizeof log);
    pthread_mutex_init(&log.lock, NULL);
    pthread_cond_init(&log.cond, NULL);
    iob_conn_t* c1 = open_conn();
    iob_conn_t* c2 = open_conn();
    assert_int_equal(iob_conn_set_event_callback(c2, on_event, &log), ZX_OK);
    zx_iob_region_t r = region(4096, RW_BOTH);
    zx_handle_t a0, a1, b0, b1, dup, theirs;
    assert_int_equal(iob_conn_iob_create(c1, 0, &r, 1, &a0, &a1), ZX_OK);
    assert_int_equal(iob_conn_iob_create(c1, 0, &r, 1, &b0, &b1), ZX_OK);
    assert_int_equal(iob_conn_handle_duplicate(c1, a0, ZX_RIGHT_SAME_RIGHTS, &dup), ZX_OK);

    /* Nothing, and only ZX_HANDLE_INVALID: OK. */
    assert_int_equal(iob_conn_handle_close_many(c1, NULL, 0), ZX_OK);
    const zx_handle_t none[2] = {ZX_HANDLE_INVALID, ZX_HANDLE_INVALID};
    assert_int_equal(iob_conn_handle_close_many(c1, none, 2), ZX_OK);

    /* Invalid entries between two good ones. */
    const zx_handle_t some[4] = {ZX_HANDLE_INVALID, dup, ZX_HANDLE_INVALID, b1};
    assert_int_equal(iob_conn_handle_close_many(c1, some, 4), ZX_OK);
    zx_signals_t sig = 0;
    assert_int_equal(iob_conn_signals(c1, dup, &sig), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_conn_signals(c1, b1, &sig), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_conn_signals(c1, b0, &sig), ZX_OK);
    assert_true(sig & ZX_IOB_PEER_CLOSED);

    /* ep1 goes to the other session; then a bad handle among good ones. */
    char token[IOB_CONN_TOKEN_SIZE];
    assert_int_equal(iob_conn_handle_export(c1, a1, token), ZX_OK);
    assert_int_equal(iob_conn_handle_import(c2, token, &theirs), ZX_OK);
    const zx_handle_t mixed[3] = {a0, 0x12345677, b0};
    assert_int_equal(iob_conn_handle_close_many(c1, mixed, 3), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_conn_signals(c1, a0, &sig), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_conn_signals(c1, b0, &sig), ZX_ERR_BAD_HANDLE);
    /* The imported handle's event reached c2's stream, and its signals say so. */
    assert_true(saw_event(&log, theirs, ZX_IOB_PEER_CLOSED));
    assert_int_equal(iob_conn_signals(c2, theirs, &sig), ZX_OK);
    assert_true(sig & ZX_IOB_PEER_CLOSED);
    /* The same value twice: the second finds it gone. */
    const zx_handle_t twice[2] = {theirs, theirs};
    assert_int_equal(iob_conn_handle_close_many(c2, twice, 2), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_conn_signals(c2, theirs, &sig), ZX_ERR_BAD_HANDLE);
    iob_conn_close(c2);
    iob_conn_close(c1);
    pthread_cond_destroy(&log.cond);
    pthread_mutex_destroy(&log.lock);
}

typedef struct waiter_arg {
    iob_conn_t* conn;
    zx_handle_t handle;
    zx_status_t status;
    zx_signals_t observed;
} waiter_arg_t;

static void* waiter(void* p) {
    waiter_arg_t* a = p;
    a->status = iob_conn_wait_one(a->conn, a->handle, ZX_USER_SIGNAL_3, ZX_TIME_INFINITE,
                                  &a->observed);
    return NULL;
}

static void test_wait(void** state) {
    (void)state;
    zx_handle_t ep0, ep1, nowait;
    iob_conn_t* c = open_with_iob(&ep0, &ep1);
    zx_signals_t obs = 0xdead;
    int64_t t0 = now_ns();
    assert_int_equal(iob_conn_wait_one(c, ep0, ZX_USER_SIGNAL_0, t0 + ZX_MSEC(200), &obs),
                     ZX_ERR_TIMED_OUT);
    assert_true(now_ns() - t0 >= ZX_MSEC(190));
    assert_int_equal(obs, 0);
    assert_int_equal(iob_conn_wait_one(c, ep0, ZX_USER_SIGNAL_0, 0, &obs), ZX_ERR_TIMED_OUT);

    /* Woken by a signal from another thread. */
    waiter_arg_t a = {c, ep1, 1, 0};
    pthread_t th;
    pthread_create(&th, NULL, waiter, &a);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_int_equal(iob_conn_object_signal_peer(c, ep0, 0, ZX_USER_SIGNAL_3), ZX_OK);
    pthread_join(th, NULL);
    assert_int_equal(a.status, ZX_OK);
    assert_true(a.observed & ZX_USER_SIGNAL_3);

    /* A handle closed during the wait: CANCELED with HANDLE_CLOSED. */
    assert_int_equal(iob_conn_object_signal(c, ep1, ZX_USER_SIGNAL_3, 0), ZX_OK);
    a.status = 1;
    pthread_create(&th, NULL, waiter, &a);
    nanosleep(&ts, NULL);
    assert_int_equal(iob_conn_handle_close(c, ep1), ZX_OK);
    pthread_join(th, NULL);
    assert_int_equal(a.status, ZX_ERR_CANCELED);
    assert_true(a.observed & ZX_SIGNAL_HANDLE_CLOSED);

    assert_int_equal(iob_conn_handle_duplicate(c, ep0, ZX_RIGHT_INSPECT, &nowait), ZX_OK);
    assert_int_equal(iob_conn_wait_one(c, nowait, ZX_USER_SIGNAL_0, 0, &obs),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_conn_wait_one(c, 0x7777, ZX_USER_SIGNAL_0, 0, &obs), ZX_ERR_BAD_HANDLE);
    iob_conn_close(c);
}

static void test_read_write(void** state) {
    (void)state;
    iob_conn_t* c = open_conn();
    const size_t size = 3u << 20; /* several 1 MiB chunks */
    zx_handle_t ep0, ep1;
    zx_iob_region_t r[2] = {region(size, ZX_IOB_ACCESS_EP0_CAN_MAP_READ |
                                             ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                                             ZX_IOB_ACCESS_EP1_CAN_MAP_READ),
                            region(4096, RW_BOTH)};
    assert_int_equal(iob_conn_iob_create(c, 0, r, 2, &ep0, &ep1), ZX_OK);
    uint8_t* data = malloc(size);
    uint8_t* back = malloc(size);
    for (size_t i = 0; i < size; i++) {
        data[i] = (uint8_t)(i * 31 + (i >> 12));
    }
    assert_int_equal(iob_conn_region_write(c, ep0, 0, 0, data, size), ZX_OK);
    memset(back, 0, size);
    assert_int_equal(iob_conn_region_read(c, ep1, 0, 0, back, size), ZX_OK);
    assert_memory_equal(data, back, size);
    assert_int_equal(iob_conn_region_read(c, ep1, 0, 12345, back, 100), ZX_OK);
    assert_memory_equal(data + 12345, back, 100);
    /* ep1 may only read region 0. */
    assert_int_equal(iob_conn_region_write(c, ep1, 0, 0, data, 10), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_conn_region_read(c, ep0, 0, size - 10, back, 11), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_conn_region_read(c, ep0, 0, UINT64_MAX - 2, back, 10),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_conn_region_write(c, ep0, 1, 4000, data, 200), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_conn_region_read(c, ep0, 7, 0, back, 1), ZX_ERR_OUT_OF_RANGE);
    /* A handle without READ. */
    zx_handle_t weak;
    assert_int_equal(iob_conn_handle_duplicate(c, ep1, ZX_RIGHT_WAIT, &weak), ZX_OK);
    assert_int_equal(iob_conn_region_read(c, weak, 0, 0, back, 1), ZX_ERR_ACCESS_DENIED);
    free(data);
    free(back);
    iob_conn_close(c);
}

static void test_list(void** state) {
    (void)state;
    zx_handle_t ep0, ep1;
    iob_conn_t* c = open_with_iob(&ep0, &ep1);
    assert_int_equal(iob_conn_set_property(c, ep0, ZX_PROP_NAME, "listed", 6), ZX_OK);
    iob_conn_iob_summary_t s[64];
    size_t n = 0;
    assert_int_equal(iob_conn_list(c, s, 64, &n), ZX_OK);
    bool found = false;
    for (size_t i = 0; i < n && i < 64; i++) {
        if (strcmp(s[i].name, "listed") == 0) {
            found = true;
            assert_int_equal(s[i].region_count, 1);
            assert_true(s[i].total_bytes == 4096);
        }
    }
    assert_true(found);
    iob_conn_close(c);
}

static void test_unreachable(void** state) {
    (void)state;
    iob_conn_options_t o;
    memset(&o, 0, sizeof o);
    o.target = "unix:/nonexistent/iobd.sock";
    o.timeout_ms = 2000;
    iob_conn_t* c = NULL;
    assert_int_equal(iob_conn_open(&o, &c), ZX_ERR_UNAVAILABLE);
    assert_null(c);
}

static int setup(void** state) {
    (void)state;
    return iobd_harness_start(&g_iobd, NULL) ? 0 : -1;
}

static int teardown(void** state) {
    (void)state;
    return iobd_harness_stop(&g_iobd) ? 0 : -1;
}

int main(int argc, char** argv) {
    if (argc > 1) {
        iobd_harness_set_binary(argv[1]);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_info),
        cmocka_unit_test(test_create_info_close),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_other_sessions_handles),
        cmocka_unit_test(test_rights_name_signals),
        cmocka_unit_test(test_events_and_peer_closed),
        cmocka_unit_test(test_close_many),
        cmocka_unit_test(test_wait),
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
