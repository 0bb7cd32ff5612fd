/* SPDX-License-Identifier: MIT */
/*
 * Budgets (iob_budget.c): each resource per session, per uid and (bytes) server-wide, the
 * defaults derived from the machine, the 64 x 1 TiB create, handle values that wrap instead
 * of running out, and memory made outside the core's lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core_fixture.h"
#include "test_util.h"

#define P FX_PAGE
#define TIB (UINT64_C(1) << 40)

static iob_session_id_t open_as(fx_t* f, uid_t uid) {
    iob_session_cred_t cred = {.pid = 300, .uid = uid, .gid = uid};
    iob_session_id_t s;
    assert_int_equal(iob_core_session_open(f->core, &cred, &s, NULL), ZX_OK);
    return s;
}

static zx_status_t create_in(fx_t* f, iob_session_id_t s, uint64_t size, zx_handle_t* e0,
                             zx_handle_t* e1) {
    zx_iob_region_t r = fx_region(size, FX_RW_BOTH);
    return iob_core_iob_create(f->core, s, 0, &r, 1, e0, e1);
}

static iob_core_stats_t stats(fx_t* f) {
    iob_core_stats_t st;
    iob_core_get_stats(f->core, &st);
    return st;
}

/* ---- Per session ---- */

static void test_session_bytes(void** state) {
    fx_t* f = *state;
    f->config.max_bytes_per_session = 3 * P;
    fx_reconfigure(f);
    zx_handle_t e0, e1, g0 = 0, g1 = 0;
    assert_int_equal(create_in(f, f->a, 2 * P, &e0, &e1), ZX_OK);
    assert_int_equal(create_in(f, f->a, 2 * P, &g0, &g1), ZX_ERR_NO_MEMORY);
    assert_non_null(strstr(iob_core_error_detail(), "session bytes limit"));
    /* The other session of the same uid has its own session budget. */
    assert_int_equal(create_in(f, f->b, 2 * P, &g0, &g1), ZX_OK);
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 2 * P, &g0), ZX_ERR_NO_MEMORY);
    assert_int_equal(stats(f).bytes_in_use, 4 * P);
}

static void test_session_tokens_held_until_import(void** state) {
    fx_t* f = *state;
    f->config.max_tokens_per_session = 3;
    fx_reconfigure(f);
    zx_handle_t e0, e1, d;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char tokens[3][IOB_CORE_TOKEN_SIZE];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d),
                         ZX_OK);
        assert_int_equal(iob_core_handle_export(f->core, f->a, d, tokens[i]), ZX_OK);
    }
    /* Export gave the handle back, but the token is held against the budget. */
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    char extra[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, d, extra), ZX_ERR_NO_RESOURCES);
    assert_non_null(strstr(iob_core_error_detail(), "tokens"));
    /* The handle survives a refused export. */
    assert_int_equal(fx_basic(f, f->a, d).type, ZX_OBJ_TYPE_IOB);
    assert_int_equal(stats(f).tokens, 3);
    /* An import (by anyone) gives the slot back; so does expiry. */
    zx_handle_t t;
    assert_int_equal(iob_core_handle_import(f->core, f->b, tokens[0], &t), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, f->a, d, extra), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, f->a, d, extra), ZX_ERR_NO_RESOURCES);
    f->now += 61 * INT64_C(1000000000);
    iob_core_expire_tokens(f->core);
    assert_int_equal(stats(f).tokens, 0);
    assert_int_equal(iob_core_handle_export(f->core, f->a, d, extra), ZX_OK);
}

static void test_session_mappings(void** state) {
    fx_t* f = *state;
    f->config.max_mappings_per_session = 4;
    fx_reconfigure(f);
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t g[5];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(
            iob_core_map(f->core, f->a, e0, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, P, &g[i]),
            ZX_OK);
    }
    assert_int_equal(
        iob_core_map(f->core, f->a, e0, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, P, &g[4]),
        ZX_ERR_NO_RESOURCES);
    assert_non_null(strstr(iob_core_error_detail(), "mapping records"));
    assert_int_equal(stats(f).mappings, 4);
    assert_int_equal(iob_core_unmap(f->core, f->a, g[0].mapping), ZX_OK);
    assert_int_equal(
        iob_core_map(f->core, f->a, e0, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, P, &g[4]), ZX_OK);
    /* Session B's own budget is untouched. */
    zx_handle_t t;
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, token), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_OK);
    assert_int_equal(iob_core_map(f->core, f->b, t, ZX_VM_PERM_READ, 0, 0, P, &g[0]), ZX_OK);
    /* Releasing the session's mappings gives everything back. */
    assert_int_equal(iob_core_session_release_mappings(f->core, f->a), ZX_OK);
    assert_int_equal(stats(f).mappings, 1);
}

/* A replace moves the handle's charge: a session at its handle limit may still replace. */
static void test_replace_at_handle_limit(void** state) {
    fx_t* f = *state;
    f->config.max_handles_per_session = 2;
    fx_reconfigure(f);
    zx_handle_t e0, e1, r = 0, d = 0;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d),
                     ZX_ERR_NO_RESOURCES);
    assert_int_equal(iob_core_handle_replace(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &r), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, r), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e1, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
}

/* ---- Per uid ---- */

static void test_uid_budgets_span_sessions(void** state) {
    fx_t* f = *state;
    f->config.max_iobs_per_uid = 2;
    f->config.max_bytes_per_uid = 4 * P;
    fx_reconfigure(f);
    iob_session_id_t s1 = open_as(f, 3000), s2 = open_as(f, 3000), other = open_as(f, 4000);
    zx_handle_t a0, a1, b0, b1, c0 = 0, c1 = 0, sr = 0;
    assert_int_equal(create_in(f, s1, P, &a0, &a1), ZX_OK);
    assert_int_equal(create_in(f, s2, 3 * P, &b0, &b1), ZX_OK);
    /* Both of uid 3000's slots and all its bytes are used, whichever session asks. */
    assert_int_equal(create_in(f, s2, 0, &c0, &c1), ZX_ERR_NO_RESOURCES);
    assert_non_null(strstr(iob_core_error_detail(), "uid 3000"));
    assert_int_equal(iob_core_shared_region_create(f->core, s1, 0, 2 * P, &sr), ZX_ERR_NO_MEMORY);
    /* Another uid is not affected. */
    assert_int_equal(create_in(f, other, 4 * P, &c0, &c1), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, other, c0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, other, c1), ZX_OK);
    /*
     * Handing the IOBs to another uid and closing both sessions does not shed the charge:
     * the uid that made them pays until they are freed.
     */
    char t0[IOB_CORE_TOKEN_SIZE], t1[IOB_CORE_TOKEN_SIZE];
    zx_handle_t k0, k1;
    assert_int_equal(iob_core_handle_export(f->core, s2, b0, t0), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, s2, b1, t1), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, other, t0, &k0), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, other, t1, &k1), ZX_OK);
    assert_int_equal(iob_core_session_release_mappings(f->core, s2), ZX_OK);
    iob_session_id_t s3 = open_as(f, 3000);
    assert_int_equal(create_in(f, s3, 0, &c0, &c1), ZX_ERR_NO_RESOURCES);
    assert_int_equal(iob_core_handle_close(f->core, other, k0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, other, k1), ZX_OK);
    assert_int_equal(create_in(f, s3, 2 * P, &c0, &c1), ZX_OK);
    /* Shared regions take uid IOB slots too (its bytes would still fit). */
    assert_int_equal(iob_core_shared_region_create(f->core, s3, 0, P, &sr), ZX_ERR_NO_RESOURCES);
    iob_core_stats_t st = stats(f);
    assert_int_equal(st.per_uid.iobs, 2);
    assert_int_equal(st.per_uid.bytes, 4 * P);
    assert_int_equal(st.uid_max_bytes, 3 * P);
    assert_int_equal(st.uid_max_bytes_uid, 3000);
}

static void test_uid_handles_tokens_mappings(void** state) {
    fx_t* f = *state;
    f->config.max_handles_per_uid = 3;
    f->config.max_tokens_per_uid = 1;
    f->config.max_mappings_per_uid = 1;
    fx_reconfigure(f);
    iob_session_id_t s1 = open_as(f, 3000), s2 = open_as(f, 3000);
    zx_handle_t a0, a1, d = 0;
    assert_int_equal(create_in(f, s1, P, &a0, &a1), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(f->core, s1, a0, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    zx_handle_t b0 = 0, b1 = 0;
    assert_int_equal(create_in(f, s2, P, &b0, &b1), ZX_ERR_NO_RESOURCES);
    char t[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, s1, d, t), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, s1, a1, t), ZX_ERR_NO_RESOURCES);
    iob_map_grant_t g;
    assert_int_equal(iob_core_map(f->core, s1, a0, ZX_VM_PERM_READ, 0, 0, P, &g), ZX_OK);
    /* The other session of the uid: its own session budget is free, the uid's is not. */
    zx_handle_t x;
    assert_int_equal(iob_core_handle_import(f->core, s2, t, &x), ZX_OK);
    assert_int_equal(iob_core_map(f->core, s2, x, ZX_VM_PERM_READ, 0, 0, P, &g),
                     ZX_ERR_NO_RESOURCES);
    assert_non_null(strstr(iob_core_error_detail(), "uid 3000"));
}

/* Root and the server's own uid are counted but not limited per uid; the server-wide budget
 * still holds for them. */
static void test_uid_exemptions(void** state) {
    fx_t* f = *state;
    f->config.max_iobs_per_uid = 1;
    f->config.max_total_bytes = 8 * P;
    f->config.server_uid = 5000;
    fx_reconfigure(f);
    iob_session_id_t root = open_as(f, 0), self = open_as(f, 5000), user = open_as(f, 3000);
    zx_handle_t e0, e1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(create_in(f, root, P, &e0, &e1), ZX_OK);
        assert_int_equal(create_in(f, self, P, &e0, &e1), ZX_OK);
    }
    assert_int_equal(create_in(f, user, P, &e0, &e1), ZX_OK);
    assert_int_equal(create_in(f, user, P, &e0, &e1), ZX_ERR_NO_RESOURCES);
    assert_int_equal(create_in(f, root, 2 * P, &e0, &e1), ZX_ERR_NO_MEMORY);
    assert_non_null(strstr(iob_core_error_detail(), "server's budget"));
    assert_int_equal(stats(f).bytes_in_use, 7 * P);
}

/* ---- Defaults ---- */

static void test_default_derivation(void** state) {
    fx_t* f = *state;
    char* dir = iob_test_tempdir();
    char path[512];
    snprintf(path, sizeof path, "%s/meminfo", dir);
    FILE* fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(
        "MemTotal:       16384000 kB\nMemFree:         1000 kB\n"
        "MemAvailable:    8192000 kB\nHugePages_Free:     12\n",
        fp);
    fclose(fp);
    iob_core_machine_t m;
    assert_int_equal(iob_core_machine_read(IOB_BACKING_4K, path, &m), ZX_OK);
    assert_int_equal(m.mem_available, UINT64_C(8192000) * 1024);
    assert_int_equal(iob_core_default_total_bytes(IOB_BACKING_4K, &m, 1),
                     UINT64_C(8192000) * 1024 / 2);
    iob_core_machine_t huge = {.mem_available = 0, .hugepages_free = 10};
    assert_int_equal(iob_core_default_total_bytes(IOB_BACKING_2M, &huge, 2),
                     8 * (UINT64_C(2) << 20));
    /* An empty pool or no memory still leaves one page, never "unlimited". */
    huge.hugepages_free = 1;
    assert_int_equal(iob_core_default_total_bytes(IOB_BACKING_2M, &huge, 4), UINT64_C(2) << 20);
    iob_core_machine_t none = {0, 0};
    assert_int_equal(iob_core_default_total_bytes(IOB_BACKING_4K, &none, 0), P);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("MemTotal: 1 kB\n", fp);
    fclose(fp);
    assert_int_equal(iob_core_machine_read(IOB_BACKING_4K, path, &m), ZX_ERR_NOT_FOUND);
    unlink(path);
    rmdir(dir);
    free(dir);

    /* A core with no limits configured derives them all: every one bounded. */
    iob_core_machine_t small = {.mem_available = 64 * P, .hugepages_free = 0};
    f->config.machine = &small;
    fx_reconfigure(f);
    iob_core_stats_t st = stats(f);
    assert_int_equal(st.max_total_bytes, 32 * P);
    uint64_t* limits[] = {&st.per_session.bytes,  &st.per_session.iobs,     &st.per_session.handles,
                          &st.per_session.tokens, &st.per_session.mappings, &st.per_uid.bytes,
                          &st.per_uid.iobs,       &st.per_uid.handles,      &st.per_uid.tokens,
                          &st.per_uid.mappings};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        assert_true(*limits[i] > 0 && *limits[i] < UINT64_MAX);
    }
    assert_int_equal(st.per_session.tokens, IOB_CORE_DEFAULT_TOKENS_PER_SESSION);
    zx_handle_t e0, e1;
    assert_int_equal(create_in(f, f->a, 33 * P, &e0, &e1), ZX_ERR_NO_MEMORY);
    assert_int_equal(create_in(f, f->a, 32 * P, &e0, &e1), ZX_OK);
    /* UINT64_MAX / UINT32_MAX are the operator's explicit "no limit". */
    f->config.max_total_bytes = UINT64_MAX;
    f->config.max_tokens_per_session = UINT32_MAX;
    fx_reconfigure(f);
    st = stats(f);
    assert_int_equal(st.max_total_bytes, UINT64_MAX);
    assert_int_equal(st.per_session.tokens, UINT64_MAX);
}

/* The reported attack: 64 private regions of 1 TiB each, against a server with no flags. */
static void test_64_tib_regions(void** state) {
    fx_t* f = *state;
    f->config.machine = NULL; /* this machine's own defaults */
    fx_reconfigure(f);
    int fds = iob_test_count_open_fds();
    zx_iob_region_t r[64];
    for (int i = 0; i < 64; i++) {
        r[i] = fx_region(TIB, FX_RW_BOTH);
    }
    zx_handle_t e0 = 0, e1 = 0;
    zx_status_t st = iob_core_iob_create(f->core, f->a, 0, r, 64, &e0, &e1);
    assert_true(st == ZX_ERR_NO_MEMORY || st == ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(e0, 0);
    assert_int_equal(iob_test_count_open_fds(), fds);
    iob_core_stats_t s = stats(f);
    assert_int_equal(s.bytes_in_use, 0);
    assert_int_equal(s.iobs, 0);
    assert_int_equal(s.handles, 0);
    /* One region of 1 TiB too (no machine here has half of that available). */
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, r, 1, &e0, &e1), ZX_ERR_NO_MEMORY);
    assert_int_equal(iob_test_count_open_fds(), fds);
    /* The server still serves. */
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
}

/* ---- Handle values ---- */

static void test_handle_values_wrap(void** state) {
    fx_t* f = *state;
    f->config.handle_value_bits = 3; /* 8 values */
    fx_reconfigure(f);
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_handle_t h = e0;
    /* Far past the space: every replace still works, values stay in Zircon's form. */
    for (int i = 0; i < 1000; i++) {
        zx_handle_t next = 0;
        assert_int_equal(iob_core_handle_replace(f->core, f->a, h, ZX_RIGHT_SAME_RIGHTS, &next),
                         ZX_OK);
        assert_int_not_equal(next, h); /* never the value just consumed */
        assert_int_not_equal(next, e1);
        assert_int_equal(next & 3u, 3u);
        assert_true(next < IOB_CORE_HANDLE_VALUE_LIMIT);
        assert_true(next < (8u << 2));
        assert_int_equal(iob_core_handle_close(f->core, f->a, h), ZX_ERR_BAD_HANDLE);
        h = next;
    }
    /* All 8 values held: the next handle is refused, one close makes room again. */
    zx_handle_t d[6];
    for (int i = 0; i < 6; i++) {
        assert_int_equal(iob_core_handle_duplicate(f->core, f->a, h, ZX_RIGHT_SAME_RIGHTS, &d[i]),
                         ZX_OK);
    }
    zx_handle_t x = 0;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, h, ZX_RIGHT_SAME_RIGHTS, &x),
                     ZX_ERR_NO_RESOURCES);
    zx_handle_t c0 = 0, c1 = 0;
    assert_int_equal(create_in(f, f->a, P, &c0, &c1), ZX_ERR_NO_RESOURCES);
    assert_int_equal(stats(f).iobs, 1); /* nothing half-made */
    assert_int_equal(iob_core_handle_close(f->core, f->a, d[3]), ZX_OK);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, h, ZX_RIGHT_SAME_RIGHTS, &x), ZX_OK);
    assert_int_equal(x, d[3]);
    /* Two free values: a create gets two distinct ones. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, d[0]), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, d[1]), ZX_OK);
    assert_int_equal(create_in(f, f->a, P, &c0, &c1), ZX_OK);
    assert_int_not_equal(c0, c1);
}

/* ---- Tokens at scale ---- */

static void test_many_tokens(void** state) {
    fx_t* f = *state;
    f->config.max_tokens_per_session = 30000;
    f->config.max_tokens_per_uid = 30000;
    fx_reconfigure(f);
    enum { N = 20000 };
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char(*tokens)[IOB_CORE_TOKEN_SIZE] = calloc(N, IOB_CORE_TOKEN_SIZE);
    assert_non_null(tokens);
    for (int i = 0; i < N; i++) {
        zx_handle_t d;
        assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d),
                         ZX_OK);
        assert_int_equal(iob_core_handle_export(f->core, f->a, d, tokens[i]), ZX_OK);
        if (i == N / 2) {
            f->now += 1000; /* the second half expires later */
        }
    }
    /* Every token is found, once; a near miss is not. */
    char wrong[IOB_CORE_TOKEN_SIZE];
    memcpy(wrong, tokens[7], sizeof wrong);
    wrong[10] ^= 1;
    zx_handle_t t;
    assert_int_equal(iob_core_handle_import(f->core, f->b, wrong, &t), ZX_ERR_NOT_FOUND);
    for (int i = 0; i < N; i += 2) {
        assert_int_equal(iob_core_handle_import(f->core, f->b, tokens[i], &t), ZX_OK);
        assert_int_equal(iob_core_handle_close(f->core, f->b, t), ZX_OK);
    }
    assert_int_equal(stats(f).tokens, N / 2);
    /* Expiry in order: only the first half's survivors go at its deadline. */
    f->now += 60 * INT64_C(1000000000) - 1000;
    iob_core_expire_tokens(f->core);
    assert_int_equal(stats(f).tokens, N / 4);
    assert_int_equal(iob_core_handle_import(f->core, f->b, tokens[1], &t), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_core_handle_import(f->core, f->b, tokens[N - 1], &t), ZX_OK);
    free(tokens);
}

/* ---- Memory made outside the lock ---- */

typedef struct slow_hook {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered; /* the first fallocate is waiting */
    int release;
    int calls;
} slow_hook_t;

static slow_hook_t g_slow = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

/* The first fallocate waits until the test lets it go: a huge region being allocated. */
static int slow_fallocate(iob__sys_op_t op, void* ctx) {
    slow_hook_t* h = ctx;
    if (op != IOB__SYS_FALLOCATE) {
        return 0;
    }
    pthread_mutex_lock(&h->mu);
    if (h->calls++ == 0) {
        h->entered = 1;
        pthread_cond_broadcast(&h->cv);
        while (!h->release) {
            pthread_cond_wait(&h->cv, &h->mu);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return 0;
}

typedef struct create_job {
    fx_t* f;
    iob_session_id_t session;
    uint64_t size;
    zx_status_t status;
    zx_handle_t e0, e1;
    int done;
    pthread_mutex_t* mu;
    pthread_cond_t* cv;
} create_job_t;

static void* create_thread(void* arg) {
    create_job_t* j = arg;
    zx_status_t st = create_in(j->f, j->session, j->size, &j->e0, &j->e1);
    pthread_mutex_lock(j->mu);
    j->status = st;
    j->done = 1;
    pthread_cond_broadcast(j->cv);
    pthread_mutex_unlock(j->mu);
    return NULL;
}

/* Waits up to ms for the job; true when it finished. */
static bool job_wait(create_job_t* j, int ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(j->mu);
    while (!j->done) {
        if (pthread_cond_timedwait(j->cv, j->mu, &deadline) != 0) {
            break;
        }
    }
    bool done = j->done != 0;
    pthread_mutex_unlock(j->mu);
    return done;
}

static void test_create_allocates_outside_lock(void** state) {
    fx_t* f = *state;
    g_slow.entered = g_slow.release = g_slow.calls = 0;
    iob__fault_sim_t sim = {slow_fallocate, &g_slow};
    iob__fault_sim_install(&sim);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    create_job_t big = {.f = f, .session = f->a, .size = 64 * P, .mu = &mu, .cv = &cv};
    create_job_t small = {.f = f, .session = f->b, .size = P, .mu = &mu, .cv = &cv};
    pthread_t tb, ts;
    assert_int_equal(pthread_create(&tb, NULL, create_thread, &big), 0);
    pthread_mutex_lock(&g_slow.mu);
    while (!g_slow.entered) {
        pthread_cond_wait(&g_slow.cv, &g_slow.mu);
    }
    pthread_mutex_unlock(&g_slow.mu);
    /* The big create is inside its fallocate: another session's create must not wait. */
    assert_int_equal(pthread_create(&ts, NULL, create_thread, &small), 0);
    bool small_done = job_wait(&small, 2000);
    /* Its bytes are reserved while it allocates, so the budget cannot be oversold. */
    iob_core_stats_t during = stats(f);
    pthread_mutex_lock(&g_slow.mu);
    g_slow.release = 1;
    pthread_cond_broadcast(&g_slow.cv);
    pthread_mutex_unlock(&g_slow.mu);
    pthread_join(tb, NULL);
    pthread_join(ts, NULL);
    iob__fault_sim_install(NULL);
    assert_true(small_done);
    assert_int_equal(small.status, ZX_OK);
    assert_int_equal(during.bytes_in_use, 65 * P);
    assert_int_equal(during.iobs, 1); /* the big one is not published yet */
    assert_int_equal(big.status, ZX_OK);
    assert_int_equal(stats(f).iobs, 2);
}

/* A session that closes while its create allocates: BAD_STATE, nothing left behind. */
static void test_session_closed_during_create(void** state) {
    fx_t* f = *state;
    g_slow.entered = g_slow.release = g_slow.calls = 0;
    iob__fault_sim_t sim = {slow_fallocate, &g_slow};
    iob__fault_sim_install(&sim);
    int fds = iob_test_count_open_fds();
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    create_job_t job = {.f = f, .session = f->b, .size = 4 * P, .mu = &mu, .cv = &cv};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, create_thread, &job), 0);
    pthread_mutex_lock(&g_slow.mu);
    while (!g_slow.entered) {
        pthread_cond_wait(&g_slow.cv, &g_slow.mu);
    }
    pthread_mutex_unlock(&g_slow.mu);
    assert_int_equal(iob_core_session_close(f->core, f->b), ZX_OK);
    pthread_mutex_lock(&g_slow.mu);
    g_slow.release = 1;
    pthread_cond_broadcast(&g_slow.cv);
    pthread_mutex_unlock(&g_slow.mu);
    pthread_join(t, NULL);
    iob__fault_sim_install(NULL);
    assert_int_equal(job.status, ZX_ERR_BAD_STATE);
    iob_core_stats_t st = stats(f);
    assert_int_equal(st.iobs, 0);
    assert_int_equal(st.handles, 0);
    assert_int_equal(st.bytes_in_use, 0);
    assert_int_equal(iob_test_count_open_fds(), fds);
}

/* Freed memory is closed once the core's lock is released, by the call that freed it. */
static void test_close_releases_memory_after_unlock(void** state) {
    fx_t* f = *state;
    int fds = iob_test_count_open_fds();
    zx_handle_t e0, e1, s;
    fx_create(f, 4 * P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 2 * P, &s), ZX_OK);
    assert_int_equal(iob_test_count_open_fds(), fds + 2);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, s), ZX_OK);
    assert_int_equal(iob_test_count_open_fds(), fds);
    assert_int_equal(stats(f).bytes_in_use, 0);
}

/* Out of descriptors is NO_RESOURCES, for creates and for maps, and nothing is half-made. */
static void test_out_of_fds(void** state) {
    fx_t* f = *state;
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int fds = iob_test_count_open_fds();
    struct rlimit low = saved;
    low.rlim_cur = (rlim_t)fds + 8; /* room for a few regions and the fd counter itself */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    zx_handle_t e[64][2];
    int made = 0;
    zx_status_t st = ZX_OK;
    while (made < 64 && (st = create_in(f, f->a, P, &e[made][0], &e[made][1])) == ZX_OK) {
        made++;
    }
    iob_core_stats_t s = stats(f);
    zx_status_t map_st = ZX_OK;
    iob_map_grant_t g;
    if (made > 0) {
        map_st = iob_core_map_dup(f->core, f->a, e[0][0], ZX_VM_PERM_READ, 0, 0, P, &g);
        if (map_st == ZX_OK) {
            close(g.fd);
        }
    }
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(st, ZX_ERR_NO_RESOURCES);
    assert_true(made > 0 && made < 64);
    assert_int_equal(s.iobs, (uint64_t)made);
    assert_int_equal(s.bytes_in_use, (uint64_t)made * P);
    assert_int_equal(map_st, ZX_ERR_NO_RESOURCES);
    assert_int_equal(stats(f).mappings, 0);
    for (int i = 0; i < made; i++) {
        assert_int_equal(iob_core_handle_close(f->core, f->a, e[i][0]), ZX_OK);
        assert_int_equal(iob_core_handle_close(f->core, f->a, e[i][1]), ZX_OK);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
        T(test_session_bytes),
        T(test_session_tokens_held_until_import),
        T(test_session_mappings),
        T(test_replace_at_handle_limit),
        T(test_uid_budgets_span_sessions),
        T(test_uid_handles_tokens_mappings),
        T(test_uid_exemptions),
        T(test_default_derivation),
        T(test_64_tib_regions),
        T(test_handle_values_wrap),
        T(test_many_tokens),
        T(test_create_allocates_outside_lock),
        T(test_session_closed_during_create),
        T(test_close_releases_memory_after_unlock),
        T(test_out_of_fds),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
