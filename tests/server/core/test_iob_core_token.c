/* SPDX-License-Identifier: MIT */
/* Transfer tokens (docs/zircon-iob.md L, "Transfer"): export needs TRANSFER and consumes the
 * handle, a token works once, expires with the injected clock, and keeps its endpoint
 * alive in the meantime. */
#include <ctype.h>
#include <string.h>

#include "core_fixture.h"
#include "test_util.h"

#define P FX_PAGE
#define SEC INT64_C(1000000000)

static void test_export_import(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, t;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_koid_t k1 = fx_basic(f, f->a, e1).koid;
    char token[IOB_CORE_TOKEN_SIZE];
    memset(token, 0x7F, sizeof token);
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, token), ZX_OK);
    size_t len = strnlen(token, sizeof token);
    assert_true(len < IOB_CORE_TOKEN_SIZE);
    assert_true(len >= 22); /* at least 128 bits of base64 */
    for (size_t i = 0; i < len; i++) {
        assert_true(isprint((unsigned char)token[i]));
        assert_false(isspace((unsigned char)token[i]));
    }
    /* Export consumed the handle and reported it. */
    assert_true(fx_closed_reported(f, f->a, e1));
    assert_int_equal(iob_core_handle_close(f->core, f->a, e1), ZX_ERR_BAD_HANDLE);
    assert_int_equal(fx_stats(f).tokens, 1);
    assert_int_equal(fx_stats(f).handles, 1);
    /* The token counts as a handle: no PEER_CLOSED for ep0. */
    assert_int_equal(fx_signals(f, f->a, e0), 0);
    iob_core_iob_summary_t s;
    size_t n;
    assert_int_equal(iob_core_list(f->core, &s, 1, &n), ZX_OK);
    assert_int_equal(s.endpoints[1].handles, 1);

    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_OK);
    zx_info_handle_basic_t b = fx_basic(f, f->b, t);
    assert_int_equal(b.koid, k1);
    assert_int_equal(b.rights, 0xF0EF);
    assert_int_equal(iob_core_object_signal_peer(f->core, f->b, t, 0, ZX_USER_SIGNAL_5), ZX_OK);
    assert_int_equal(fx_signals(f, f->a, e0), ZX_USER_SIGNAL_5);
    assert_int_equal(fx_stats(f).tokens, 0);
    /* Single use. */
    zx_handle_t again = 0;
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &again), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_core_handle_import(f->core, f->a, token, &again), ZX_ERR_NOT_FOUND);
    assert_int_equal(again, 0);
}

static void test_rights_travel(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, r, t;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_rights_t rights = ZX_RIGHT_TRANSFER | ZX_RIGHT_READ | ZX_RIGHT_MAP | ZX_RIGHT_WAIT;
    assert_int_equal(iob_core_handle_replace(f->core, f->a, e0, rights, &r), ZX_OK);
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, r, token), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, f->a, token, &t), ZX_OK);
    assert_int_equal(fx_basic(f, f->a, t).rights, rights);
    assert_int_not_equal(t, r);
}

static void test_export_errors(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, notransfer;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char token[IOB_CORE_TOKEN_SIZE] = "untouched";
    assert_int_equal(iob_core_handle_export(f->core, f->a, 0x80000003, token), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_export(f->core, f->b, e0, token), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0xF0EF & ~ZX_RIGHT_TRANSFER,
                                               &notransfer),
                     ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, f->a, notransfer, token),
                     ZX_ERR_ACCESS_DENIED);
    assert_string_equal(token, "untouched");
    /* Nothing was consumed. */
    assert_int_equal(fx_basic(f, f->a, notransfer).rights, 0xF0EF & ~ZX_RIGHT_TRANSFER);
    assert_int_equal(f->n_closed, 0);
    assert_int_equal(iob_core_handle_export(f->core, f->a, e0, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(fx_basic(f, f->a, e0).rights, 0xF0EF);
}

static void test_import_errors(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, t = 0;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, token), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, f->b, "", &t), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_core_handle_import(f->core, f->b, "iob1.nope", &t), ZX_ERR_NOT_FOUND);
    /* A prefix, or the token with one more character, is not the token. */
    char wrong[IOB_CORE_TOKEN_SIZE + 8];
    size_t len = strlen(token);
    memcpy(wrong, token, len - 1);
    wrong[len - 1] = '\0';
    assert_int_equal(iob_core_handle_import(f->core, f->b, wrong, &t), ZX_ERR_NOT_FOUND);
    memcpy(wrong, token, len);
    wrong[len] = 'A';
    wrong[len + 1] = '\0';
    assert_int_equal(iob_core_handle_import(f->core, f->b, wrong, &t), ZX_ERR_NOT_FOUND);
    memcpy(wrong, token, len + 1);
    wrong[len - 1] = wrong[len - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(iob_core_handle_import(f->core, f->b, wrong, &t), ZX_ERR_NOT_FOUND);
    /* Longer than any token can be, and unterminated within the limit. */
    memset(wrong, 'a', sizeof wrong);
    wrong[sizeof wrong - 1] = '\0';
    assert_int_equal(iob_core_handle_import(f->core, f->b, wrong, &t), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_core_handle_import(f->core, f->b, NULL, &t), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(t, 0);
    /* A session that is not open cannot import; the token survives for another. */
    assert_int_equal(iob_core_handle_import(f->core, (iob_session_id_t){777}, token, &t),
                     ZX_ERR_BAD_STATE);
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_OK);
}

static void test_tokens_distinct(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, d;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char a[IOB_CORE_TOKEN_SIZE], b[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, f->a, e0, a), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, f->a, d, b), ZX_OK);
    assert_string_not_equal(a, b);
    zx_handle_t ta, tb;
    assert_int_equal(iob_core_handle_import(f->core, f->b, b, &tb), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, f->b, a, &ta), ZX_OK);
}

static void test_expiry(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, t;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_koid_t k0 = fx_basic(f, f->a, e0).koid;
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, token), ZX_OK);
    /* Default TTL 60 s: still there just before, gone at the deadline. */
    f->now += 60 * SEC - 1;
    iob_core_expire_tokens(f->core);
    assert_int_equal(fx_signals(f, f->a, e0), 0);
    assert_int_equal(fx_stats(f).tokens, 1);
    f->now += 1;
    iob_core_expire_tokens(f->core);
    assert_int_equal(fx_stats(f).tokens, 0);
    /* The handle it stood for is gone: ep0 sees PEER_CLOSED. */
    assert_int_equal(fx_signals(f, f->a, e0), ZX_IOB_PEER_CLOSED);
    assert_int_equal(fx_last_signals(f, k0), ZX_IOB_PEER_CLOSED);
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_ERR_NOT_FOUND);
}

static void test_expiry_checked_on_import(void** state) {
    fx_t* f = *state;
    f->config.token_ttl_ns = 5 * (uint64_t)SEC;
    fx_reconfigure(f);
    zx_handle_t e0, e1, t = 0;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, token), ZX_OK);
    f->now += 5 * SEC;
    /* No timer ran, but the import itself sees the deadline passed. */
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_ERR_NOT_FOUND);
    assert_int_equal(t, 0);
    assert_int_equal(fx_signals(f, f->a, e0), ZX_IOB_PEER_CLOSED);
    /* A fresh token within its TTL works. */
    zx_handle_t d;
    zx_handle_t e2, e3;
    fx_create(f, P, FX_RW_BOTH, &e2, &e3);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e3, ZX_RIGHT_SAME_RIGHTS, &d), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, f->a, d, token), ZX_OK);
    f->now += 5 * SEC - 1;
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_OK);
}

static void test_token_outlives_exporting_session(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, t;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    char tok0[IOB_CORE_TOKEN_SIZE], tok1[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, tok1), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, f->a, e0, tok0), ZX_OK);
    assert_int_equal(iob_core_session_close(f->core, f->a), ZX_OK);
    assert_int_equal(iob_core_session_release_mappings(f->core, f->a), ZX_OK);
    assert_int_equal(fx_stats(f).iobs, 1); /* both endpoints are in flight */
    assert_int_equal(fx_stats(f).tokens, 2);
    assert_int_equal(iob_core_handle_import(f->core, f->b, tok0, &t), ZX_OK);
    assert_int_equal(fx_basic(f, f->b, t).rights, 0xF0EF);
    assert_int_equal(fx_signals(f, f->b, t), 0); /* ep1's token still holds the peer */
    f->now += 60 * SEC;
    iob_core_expire_tokens(f->core);
    assert_int_equal(fx_signals(f, f->b, t), ZX_IOB_PEER_CLOSED);
}

static void test_import_respects_handle_limit(void** state) {
    fx_t* f = *state;
    f->config.max_handles_per_session = 2;
    fx_reconfigure(f);
    zx_handle_t e0, e1, x0, x1, t = 0;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &(zx_iob_region_t){0}, 1, &x0, &x1),
                     ZX_ERR_INVALID_ARGS);
    zx_iob_region_t r = fx_region(P, FX_RW_BOTH);
    assert_int_equal(iob_core_iob_create(f->core, f->b, 0, &r, 1, &x0, &x1), ZX_OK);
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, f->a, e1, token), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_ERR_NO_RESOURCES);
    assert_int_equal(t, 0);
    assert_int_equal(iob_core_handle_close(f->core, f->b, x0), ZX_OK);
    assert_int_equal(iob_core_handle_import(f->core, f->b, token, &t), ZX_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
        T(test_export_import),
        T(test_rights_travel),
        T(test_export_errors),
        T(test_import_errors),
        T(test_tokens_distinct),
        T(test_expiry),
        T(test_expiry_checked_on_import),
        T(test_token_outlives_exporting_session),
        T(test_import_respects_handle_limit),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
