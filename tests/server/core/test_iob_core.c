/* SPDX-License-Identifier: MIT */
/* iob_core (server/core/iob_core.c): handles (A.12), lifetimes and PEER_CLOSED (A.9),
 * sessions, the observer, and the core's lock under concurrent sessions. */
#include <pthread.h>
#include <string.h>

#include "core_fixture.h"
#include "test_util.h"

#define P FX_PAGE
/* Never issued: at or above IOB_CORE_HANDLE_VALUE_LIMIT. */
#define BOGUS_HANDLE ((zx_handle_t)0x80000003)

/* ---- duplicate, replace, close ---- */

static void test_duplicate(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, d, d2;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    assert_int_not_equal(d, e0);
    assert_int_equal(d & 3u, 3u);
    zx_info_handle_basic_t b = fx_basic(f, f->a, d);
    assert_int_equal(b.rights, 0xF0EF);
    assert_int_equal(b.koid, fx_basic(f, f->a, e0).koid);
    /* Reduce, then SAME_RIGHTS keeps the reduced set. */
    zx_rights_t small = ZX_RIGHT_DUPLICATE | ZX_RIGHT_READ | ZX_RIGHT_INSPECT;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, small, &d), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, d, ZX_RIGHT_SAME_RIGHTS, &d2), ZX_OK);
    assert_int_equal(fx_basic(f, f->a, d2).rights, small);
    /* Not a subset: more rights, or SAME_RIGHTS mixed with others. */
    d = 0;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, d2, small | ZX_RIGHT_WRITE, &d),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0,
                                               ZX_RIGHT_SAME_RIGHTS | ZX_RIGHT_READ, &d),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_EXECUTE, &d),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(d, 0);
    /* No DUPLICATE: ACCESS_DENIED, checked before the rights. */
    zx_handle_t nodup;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_READ, &nodup), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, nodup, ZX_RIGHT_SAME_RIGHTS, &d),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, nodup, ZX_RIGHT_WRITE, &d),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, BOGUS_HANDLE, 0, &d),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->b, e0, 0, &d), ZX_ERR_BAD_HANDLE);
    /* The originals are untouched by all of this. */
    assert_int_equal(fx_basic(f, f->a, e0).rights, 0xF0EF);
    assert_int_equal(f->n_closed, 0);
}

static void test_replace(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, r, r2;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_koid_t koid = fx_basic(f, f->a, e0).koid;
    /* Replace needs no right: drop everything, then replace the rightless handle. */
    assert_int_equal(iob_core_handle_replace(f->core, f->a, e0, 0, &r), ZX_OK);
    assert_true(fx_closed_reported(f, f->a, e0));
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_ERR_BAD_HANDLE);
    assert_int_equal(fx_basic(f, f->a, r).rights, 0);
    assert_int_equal(fx_basic(f, f->a, r).koid, koid);
    assert_int_equal(iob_core_handle_replace(f->core, f->a, r, ZX_RIGHT_SAME_RIGHTS, &r2), ZX_OK);
    assert_int_not_equal(r2, r);
    assert_int_equal(fx_basic(f, f->a, r2).rights, 0);
    /* Invalid rights: INVALID_ARGS, and the original is consumed anyway. */
    zx_handle_t out = 0;
    assert_int_equal(iob_core_handle_replace(f->core, f->a, r2, ZX_RIGHT_READ, &out),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(out, 0);
    assert_true(fx_closed_reported(f, f->a, r2));
    assert_int_equal(iob_core_handle_close(f->core, f->a, r2), ZX_ERR_BAD_HANDLE);
    /* That was ep0's last handle: the peer sees PEER_CLOSED. */
    assert_int_equal(fx_signals(f, f->a, e1), ZX_IOB_PEER_CLOSED);
    /* Bad handles consume nothing. */
    assert_int_equal(iob_core_handle_replace(f->core, f->a, BOGUS_HANDLE, 0, &out),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_replace(f->core, f->b, e1, 0, &out), ZX_ERR_BAD_HANDLE);
    assert_int_equal(fx_basic(f, f->a, e1).rights, 0xF0EF);
}

static void test_close(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_handle_close(f->core, f->b, e0), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_close(f->core, f->a, BOGUS_HANDLE), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_close(f->core, f->a, ZX_HANDLE_INVALID), ZX_ERR_BAD_HANDLE);
    assert_int_equal(f->n_closed, 0);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(f->n_closed, 1);
    assert_true(fx_closed_reported(f, f->a, e0));
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(fx_stats(f).iobs, 0);
    assert_int_equal(fx_stats(f).handles, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 0);
}

static void test_handle_values_unique(void** state) {
    fx_t* f = *state;
    enum { N = 2000 };
    static zx_handle_t seen[N];
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    seen[0] = e0;
    seen[1] = e1;
    /* Replace over and over: each value is new, even though one handle exists at a time. */
    for (int i = 2; i < N; i++) {
        zx_handle_t next;
        assert_int_equal(iob_core_handle_replace(f->core, f->a, seen[i - 1], ZX_RIGHT_SAME_RIGHTS,
                                                 &next),
                         ZX_OK);
        assert_int_not_equal(next, 0);
        assert_int_equal(next & 3u, 3u);
        assert_true(next < IOB_CORE_HANDLE_VALUE_LIMIT);
        for (int k = 0; k < i; k++) {
            assert_int_not_equal(seen[k], next);
        }
        seen[i] = next;
    }
}

/* ---- lifetimes (A.9) ---- */

static iob_core_iob_summary_t summary(fx_t* f) {
    iob_core_iob_summary_t s[2];
    size_t n = 0;
    assert_int_equal(iob_core_list(f->core, s, 2, &n), ZX_OK);
    assert_int_equal(n, 1);
    return s[0];
}

static void test_peer_closed_on_last_handle(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, d;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_koid_t k1 = fx_basic(f, f->a, e1).koid;
    assert_int_equal(fx_signals(f, f->a, e0), 0);
    assert_int_equal(fx_signals(f, f->a, e1), 0);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0, &d), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e1), 0); /* d still holds ep0 */
    assert_int_equal(fx_last_signals(f, k1), UINT32_MAX);
    assert_int_equal(iob_core_handle_close(f->core, f->a, d), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e1), ZX_IOB_PEER_CLOSED);
    assert_int_equal(fx_last_signals(f, k1), ZX_IOB_PEER_CLOSED);
    iob_core_iob_summary_t s = summary(f);
    assert_int_equal(s.endpoints[0].handles, 0);
    assert_int_equal(s.endpoints[1].handles, 1);
    assert_int_equal(s.endpoints[1].signals, ZX_IOB_PEER_CLOSED);
    /* The survivor still works. */
    char name[32];
    assert_int_equal(iob_core_get_property(f->core, f->a, e1, ZX_PROP_NAME, name, 32), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(fx_stats(f).iobs, 0);
}

static void test_peer_closed_waits_for_mappings(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t m1, m2;
    assert_int_equal(iob_core_map(f->core, f->a, e0, ZX_VM_PERM_READ, 0, 0, P, &m1), ZX_OK);
    assert_int_equal(iob_core_map(f->core, f->a, e0, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, P,
                                  &m2),
                     ZX_OK);
    /* Handles first, unmapping last. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e1), 0);
    assert_int_equal(iob_core_unmap(f->core, f->a, m1.mapping), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e1), 0);
    assert_int_equal(summary(f).endpoints[0].mappings, 1);
    assert_int_equal(iob_core_unmap(f->core, f->a, m2.mapping), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e1), ZX_IOB_PEER_CLOSED);
    /* The peer's own mapping keeps the IOB after its handle goes. */
    iob_map_grant_t m3;
    assert_int_equal(iob_core_map(f->core, f->a, e1, ZX_VM_PERM_READ, 0, 0, P, &m3), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(fx_stats(f).iobs, 1);
    assert_int_equal(fx_stats(f).mappings, 1);
    assert_int_equal(iob_core_unmap(f->core, f->a, m3.mapping), ZX_OK);
    assert_int_equal(fx_stats(f).iobs, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 0);
}

static void test_peer_closed_unmap_first(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t m;
    assert_int_equal(iob_core_map(f->core, f->a, e1, ZX_VM_PERM_READ, 0, 0, P, &m), ZX_OK);
    /* Unmapping first changes nothing while a handle remains. */
    assert_int_equal(iob_core_unmap(f->core, f->a, m.mapping), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e0), 0);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e0), ZX_IOB_PEER_CLOSED);
}

static void test_signal_peer_with_only_mappings_left(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t m;
    assert_int_equal(iob_core_map(f->core, f->a, e1, ZX_VM_PERM_READ, 0, 0, P, &m), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    /* The memory lives on, but the peer endpoint has no handle to be signalled through. */
    assert_int_equal(fx_signals(f, f->a, e0), 0);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->a, e0, 0, ZX_USER_SIGNAL_0),
                     ZX_ERR_PEER_CLOSED);
    assert_int_equal(iob_core_unmap(f->core, f->a, m.mapping), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e0), ZX_IOB_PEER_CLOSED);
}

/* ---- sessions ---- */

static void test_session_close_keeps_mappings(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, t;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, token), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_OK);
    iob_map_grant_t m;
    assert_int_equal(iob_core_map(f->core, f->a, e0, ZX_VM_PERM_READ, 0, 0, P, &m), ZX_OK);
    f->n_closed = 0;
    assert_int_equal(iob_core_session_close(f->core, f->a), ZX_OK);
    assert_true(fx_closed_reported(f, f->a, e0));
    assert_int_equal(f->n_closed, 1);
    /* Handles are gone at once; the mapping keeps ep0 from being closed for B. */
    assert_int_equal(fx_signals(f, f->b, t), 0);
    assert_int_equal(fx_stats(f).sessions, 2);
    assert_int_equal(fx_stats(f).mappings, 1);
    assert_int_equal(iob_core_session_close(f->core, f->a), ZX_ERR_NOT_FOUND);
    /* A closed session owns no handles and cannot make new ones. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_session_release_mappings(f->core, f->a), ZX_OK);
    assert_int_equal(fx_signals(f, f->b, t), ZX_IOB_PEER_CLOSED);
    assert_int_equal(fx_stats(f).sessions, 1);
    assert_int_equal(fx_stats(f).mappings, 0);
    assert_int_equal(iob_core_session_release_mappings(f->core, f->a), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_core_session_close(f->core, (iob_session_id_t){12345}), ZX_ERR_NOT_FOUND);
}

static void test_session_close_both_ends(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t m;
    assert_int_equal(iob_core_map(f->core, f->a, e1, ZX_VM_PERM_READ, 0, 0, P, &m), ZX_OK);
    assert_int_equal(iob_core_session_close(f->core, f->a), ZX_OK);
    assert_int_equal(fx_stats(f).iobs, 1); /* the mapping keeps the memory */
    assert_int_equal(fx_stats(f).handles, 0);
    /* Unmapping works on a closed session until its mappings are released. */
    assert_int_equal(iob_core_unmap(f->core, f->a, m.mapping), ZX_OK);
    assert_int_equal(fx_stats(f).iobs, 0);
    assert_int_equal(iob_core_session_release_mappings(f->core, f->a), ZX_OK);
}

static void test_release_without_close(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t m;
    assert_int_equal(iob_core_map(f->core, f->a, e0, ZX_VM_PERM_READ, 0, 0, P, &m), ZX_OK);
    f->n_closed = 0;
    /* The process exited before the connection was seen to drop: both happen at once. */
    assert_int_equal(iob_core_session_release_mappings(f->core, f->a), ZX_OK);
    assert_int_equal(f->n_closed, 2);
    assert_int_equal(fx_stats(f).iobs, 0);
    assert_int_equal(fx_stats(f).sessions, 1);
}

static void test_destroy_with_everything_open(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, 3 * P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t m;
    assert_int_equal(iob_core_map(f->core, f->a, e0, ZX_VM_PERM_READ, 0, 0, P, &m), ZX_OK);
    assert_int_equal(iob_core_map(f->core, f->a, e1, 0, 0, 0, P, &m), ZX_OK); /* read-only fd */
    char buf[8] = "abc";
    assert_int_equal(iob_core_region_write(f->core, f->a, e0, 0, 0, buf, 3), ZX_OK);
    char token[IOB_CORE_TOKEN_SIZE];
    zx_handle_t d;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, f->a, d, token), ZX_OK);
    /* Teardown destroys the core and checks that no fd is left. */
}

/* ---- threading: every entry takes the core's lock ---- */

typedef struct {
    fx_t* f;
    iob_session_id_t s;
    int failures;
} worker_t;

static void* worker(void* arg) {
    worker_t* w = arg;
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    for (int i = 0; i < 300; i++) {
        zx_handle_t e0, e1, d;
        iob_map_grant_t g;
        char token[IOB_CORE_TOKEN_SIZE];
        if (iob_core_iob_create(w->f->core, w->s, 0, &r, 1, &e0, &e1) != ZX_OK ||
            iob_core_handle_duplicate(w->f->core, w->s, e0, ZX_RIGHT_SAME_RIGHTS, &d) != ZX_OK ||
            iob_core_map(w->f->core, w->s, d, ZX_VM_PERM_READ, 0, 0, P, &g) != ZX_OK ||
            iob_core_handle_export(w->f->core, w->s, e1, token) != ZX_OK ||
            iob_core_handle_import(w->f->core, w->s, token, &e1) != ZX_OK ||
            iob_core_region_write(w->f->core, w->s, e1, 0, 0, "x", 1) != ZX_OK ||
            iob_core_handle_close(w->f->core, w->s, e0) != ZX_OK ||
            iob_core_handle_close(w->f->core, w->s, d) != ZX_OK ||
            iob_core_unmap(w->f->core, w->s, g.mapping) != ZX_OK ||
            iob_core_handle_close(w->f->core, w->s, e1) != ZX_OK) {
            w->failures++;
        }
    }
    return NULL;
}

static void test_concurrent_sessions(void** state) {
    fx_t* f = *state;
    /* The recording observer is not thread-safe; events are not what this test checks. */
    f->config.observer.handle_signals = NULL;
    f->config.observer.handle_closed = NULL;
    fx_reconfigure(f);
    worker_t w[2] = {{f, f->a, 0}, {f, f->b, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(fx_stats(f).iobs, 0);
    assert_int_equal(fx_stats(f).handles, 0);
    assert_int_equal(fx_stats(f).mappings, 0);
    assert_int_equal(fx_stats(f).tokens, 0);
    assert_int_equal(fx_stats(f).bytes_in_use, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
        T(test_duplicate),
        T(test_replace),
        T(test_close),
        T(test_handle_values_unique),
        T(test_peer_closed_on_last_handle),
        T(test_peer_closed_waits_for_mappings),
        T(test_peer_closed_unmap_first),
        T(test_signal_peer_with_only_mappings_left),
        T(test_session_close_keeps_mappings),
        T(test_session_close_both_ends),
        T(test_release_without_close),
        T(test_destroy_with_everything_open),
        T(test_concurrent_sessions),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
