/* SPDX-License-Identifier: MIT */
/*
 * server/core/iob_metrics: statuses and methods map to bounded labels, the exposition
 * carries the core's figures, mediated records land on their shared region's series until
 * --metrics-max-named is used up (then "other"), a freed region's counts move to "other",
 * and token expiries are counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core_fixture.h"
#include "server/core/iob_metrics.h"

#define P FX_PAGE
#define SEC INT64_C(1000000000)

static char* render(fx_t* f) {
    char* buf = NULL;
    size_t len = 0;
    FILE* out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(iob_metrics_render(f != NULL ? f->core : NULL, out), 0);
    assert_int_equal(fclose(out), 0);
    return buf;
}

/* The value of the sample line that starts with `series` + ' ', or -1. */
static double sample(const char* text, const char* series) {
    size_t n = strlen(series);
    for (const char* p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return -1;
}

static int setup(void** state) {
    iob_metrics_reset();
    iob_metrics_enable(true);
    iob_metrics_set_max_named(2);
    return fx_setup(state);
}

static int teardown(void** state) {
    int r = fx_teardown(state);
    iob_metrics_set_max_named(IOB_METRICS_DEFAULT_MAX_NAMED);
    iob_metrics_reset();
    return r;
}

/* Without --metrics nothing is counted: the counting calls return before any atomic add. */
static void test_disabled_counts_nothing(void** state) {
    (void)state;
    static const char* const names[] = {"Alpha"};
    iob_metrics_set_methods(IOB_METRICS_RPC, names, 1);
    iob_metrics_enable(false);
    iob_metrics_call(IOB_METRICS_RPC, 0, ZX_OK, 5000);
    iob_metrics_refused(IOB_METRICS_REFUSED_AUTH);
    iob_metrics_tokens_expired(3);
    iob_metrics_region_t* slot = iob_metrics_region_acquire(4242);
    iob_metrics_mediated_record(slot, 64, ZX_OK);
    iob_metrics_mediated_record(slot, 64, ZX_ERR_NO_SPACE);
    char* t = render(NULL);
    assert_true(sample(t, "iob_rpc_calls_total{method=\"Alpha\",status=\"ZX_OK\"}") <= 0); /* absent or 0 */
    assert_true(sample(t, "iob_refused_connections_total{reason=\"auth\"}") <= 0); /* absent or 0 */
    assert_true(sample(t, "iob_mediated_records_total{shared_region=\"4242\"}") <= 0); /* absent or 0 */
    assert_true(sample(t, "iob_mediated_no_space_total{shared_region=\"4242\"}") <= 0); /* absent or 0 */
    free(t);
    /* Enabled again, the same calls count. */
    iob_metrics_enable(true);
    iob_metrics_call(IOB_METRICS_RPC, 0, ZX_OK, 5000);
    iob_metrics_mediated_record(slot, 64, ZX_OK);
    t = render(NULL);
    assert_true(sample(t, "iob_rpc_calls_total{method=\"Alpha\",status=\"ZX_OK\"}") == 1);
    assert_true(sample(t, "iob_mediated_records_total{shared_region=\"4242\"}") == 1);
    free(t);
    iob_metrics_region_release(slot);
}

static void test_calls(void** state) {
    (void)state;
    static const char* const names[] = {"Alpha", "Beta"};
    iob_metrics_set_methods(IOB_METRICS_RPC, names, 2);
    iob_metrics_call(IOB_METRICS_RPC, 0, ZX_OK, 5000);            /* bucket 10us */
    iob_metrics_call(IOB_METRICS_RPC, 0, ZX_OK, 2000000000);      /* +Inf */
    iob_metrics_call(IOB_METRICS_RPC, 1, ZX_ERR_NO_SPACE, 30000); /* 50us */
    iob_metrics_call(IOB_METRICS_RPC, 7, ZX_ERR_INTERNAL, 1);     /* unnamed method */
    iob_metrics_call(IOB_METRICS_RPC, 1000, 12345, 1);            /* out of range both */
    iob_metrics_refused(IOB_METRICS_REFUSED_AUTH);
    char* t = render(NULL);
    assert_true(sample(t, "iob_rpc_calls_total{method=\"Alpha\",status=\"ZX_OK\"}") == 2);
    assert_true(sample(t, "iob_rpc_calls_total{method=\"Beta\",status=\"ZX_ERR_NO_SPACE\"}") == 1);
    assert_true(sample(t, "iob_rpc_calls_total{method=\"other\",status=\"ZX_ERR_INTERNAL\"}") == 1);
    assert_true(sample(t, "iob_rpc_calls_total{method=\"other\",status=\"other\"}") == 1);
    assert_true(sample(t, "iob_rpc_call_duration_seconds_bucket{method=\"Alpha\",le=\"1e-05\"}") ==
                1);
    assert_true(sample(t, "iob_rpc_call_duration_seconds_bucket{method=\"Alpha\",le=\"1\"}") == 1);
    assert_true(sample(t, "iob_rpc_call_duration_seconds_bucket{method=\"Alpha\",le=\"+Inf\"}") ==
                2);
    assert_true(sample(t, "iob_rpc_call_duration_seconds_count{method=\"Alpha\"}") == 2);
    assert_true(sample(t, "iob_rpc_call_duration_seconds_sum{method=\"Alpha\"}") == 2.000005);
    assert_true(sample(t, "iob_rpc_call_duration_seconds_bucket{method=\"Beta\",le=\"2.5e-05\"}") ==
                0);
    assert_true(sample(t, "iob_rpc_call_duration_seconds_bucket{method=\"Beta\",le=\"5e-05\"}") ==
                1);
    assert_true(sample(t, "iob_refused_connections_total{reason=\"auth\"}") == 1);
    assert_true(sample(t, "iob_refused_connections_total{reason=\"session_cap\"}") == 0);
    /* No samples without a HELP and TYPE: each family announces itself once. */
    assert_non_null(strstr(t, "# TYPE iob_rpc_calls_total counter\n"));
    assert_non_null(strstr(t, "# TYPE iob_rpc_call_duration_seconds histogram\n"));
    assert_null(strstr(t, "iob_iobs")); /* no core, no core figures */
    free(t);
}

static void test_core_figures(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, 3 * P, FX_RW_BOTH, &e0, &e1);
    char* t = render(f);
    assert_true(sample(t, "iob_iobs") == 1);
    assert_true(sample(t, "iob_regions") == 1);
    assert_true(sample(t, "iob_bytes_in_use{backing=\"4K\"}") == 3 * P);
    assert_true(sample(t, "iob_bytes_in_use{backing=\"2M\"}") == 0);
    assert_true(sample(t, "iob_sessions") == 2);
    assert_true(sample(t, "iob_handles") == 2);
    assert_true(sample(t, "iob_budget_used{scope=\"server\",resource=\"bytes\"}") == 3 * P);
    assert_true(sample(t, "iob_budget_limit{scope=\"session\",resource=\"iobs\"}") ==
                IOB_CORE_DEFAULT_IOBS_PER_SESSION);
    free(t);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_OK);
    t = render(f);
    assert_true(sample(t, "iob_iobs") == 0);
    assert_true(sample(t, "iob_regions") == 0);
    free(t);
}

static void ring(fx_t* f, zx_handle_t* shared, zx_handle_t* writer) {
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, 2 * P, shared), ZX_OK);
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_SHARED;
    r.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
               ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    r.shared_region.shared_region = *shared;
    zx_handle_t reader;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, &reader, writer), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, reader), ZX_OK);
}

static void test_mediated(void** state) {
    fx_t* f = *state;
    zx_handle_t s[3], w[3];
    for (int i = 0; i < 3; i++) {
        ring(f, &s[i], &w[i]);
    }
    zx_info_handle_basic_t info[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(iob_core_get_info(f->core, f->a, s[i], ZX_INFO_HANDLE_BASIC, &info[i],
                                           sizeof info[i], NULL, NULL),
                         ZX_OK);
    }
    uint8_t payload[1000];
    memset(payload, 7, sizeof payload);
    zx_iovec_t v = {payload, sizeof payload};
    /* Region 0: records until its one page of ring is full; 1 and 2: one record each. */
    int ok = 0, full = 0;
    for (int i = 0; i < 10; i++) {
        zx_status_t st = iob_core_iob_writev(f->core, f->a, w[0], 0, 0, &v, 1);
        ok += st == ZX_OK;
        full += st == ZX_ERR_NO_SPACE;
    }
    assert_true(ok > 0 && full > 0 && ok + full == 10);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(iob_core_iob_writev(f->core, f->a, w[i], 0, 0, &v, 1), ZX_OK);
    }
    char series[128];
    char* t = render(f);
    snprintf(series, sizeof series, "iob_mediated_records_total{shared_region=\"%llu\"}",
             (unsigned long long)info[0].koid);
    assert_true(sample(t, series) == ok);
    snprintf(series, sizeof series, "iob_mediated_bytes_total{shared_region=\"%llu\"}",
             (unsigned long long)info[0].koid);
    assert_true(sample(t, series) == ok * 1000);
    snprintf(series, sizeof series, "iob_mediated_no_space_total{shared_region=\"%llu\"}",
             (unsigned long long)info[0].koid);
    assert_true(sample(t, series) == full);
    /* --metrics-max-named 2: the third region has no series of its own. */
    snprintf(series, sizeof series, "iob_mediated_records_total{shared_region=\"%llu\"}",
             (unsigned long long)info[2].koid);
    assert_true(sample(t, series) == -1);
    assert_true(sample(t, "iob_mediated_records_total{shared_region=\"other\"}") == 1);
    free(t);
    /* The first region goes: its counts move to "other", its slot is free for a new one. */
    assert_int_equal(iob_core_handle_close(f->core, f->a, w[0]), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->a, s[0]), ZX_OK);
    zx_handle_t s4, w4;
    ring(f, &s4, &w4);
    zx_info_handle_basic_t i4;
    assert_int_equal(
        iob_core_get_info(f->core, f->a, s4, ZX_INFO_HANDLE_BASIC, &i4, sizeof i4, NULL, NULL),
        ZX_OK);
    t = render(f);
    assert_true(sample(t, "iob_mediated_records_total{shared_region=\"other\"}") == ok + 1);
    assert_true(sample(t, "iob_mediated_no_space_total{shared_region=\"other\"}") == full);
    snprintf(series, sizeof series, "iob_mediated_records_total{shared_region=\"%llu\"}",
             (unsigned long long)i4.koid);
    assert_true(sample(t, series) == 0);
    snprintf(series, sizeof series, "iob_mediated_records_total{shared_region=\"%llu\"}",
             (unsigned long long)info[0].koid);
    assert_true(sample(t, series) == -1);
    free(t);
}

static void test_token_expiries(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, token), ZX_OK);
    iob_core_expire_tokens(f->core);
    char* t = render(f);
    assert_true(sample(t, "iob_token_expiries_total") == 0);
    free(t);
    f->now += 61 * SEC;
    iob_core_expire_tokens(f->core);
    t = render(f);
    assert_true(sample(t, "iob_token_expiries_total") == 1);
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_disabled_counts_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_figures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mediated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_expiries, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
