/* SPDX-License-Identifier: MIT */
/*
 * The core owns sessions: their secrets (iob_core_session_verify) and the map broker's
 * attach rules (iob_core_session_attach: the right secret of an open local session, from
 * the session's own uid and process), and whether a session was ever attached.
 */
#include <string.h>

#include "core_fixture.h"

static const iob_session_cred_t kOwner = {
    .pid = 4242, .uid = 1000, .gid = 1000, .local = true, .known = true};

static iob_session_id_t open_with(fx_t* f, const iob_session_cred_t* cred,
                                  uint8_t secret[IOB_CORE_SECRET_SIZE]) {
    iob_session_id_t sid;
    assert_int_equal(iob_core_session_open(f->core, cred, &sid, secret), ZX_OK);
    return sid;
}

static zx_status_t attach_as(fx_t* f, uint64_t id, const uint8_t* secret, pid_t pid, uid_t uid) {
    iob_session_cred_t peer = {.pid = pid, .uid = uid, .gid = 1000};
    iob_session_id_t out = {0};
    zx_status_t st = iob_core_session_attach(f->core, id, secret, &peer, &out);
    if (st == ZX_OK) {
        assert_int_equal(out.value, id);
    }
    return st;
}

static void test_secret_is_fresh_and_verified(void** state) {
    fx_t* f = *state;
    uint8_t s1[IOB_CORE_SECRET_SIZE], s2[IOB_CORE_SECRET_SIZE];
    iob_session_id_t a = open_with(f, &kOwner, s1);
    iob_session_id_t b = open_with(f, &kOwner, s2);
    assert_memory_not_equal(s1, s2, sizeof s1);
    assert_true(iob_core_session_verify(f->core, a.value, s1));
    assert_true(iob_core_session_verify(f->core, b.value, s2));
    /* Another session's secret, a flipped bit, an unknown id: refused. */
    assert_false(iob_core_session_verify(f->core, a.value, s2));
    s1[7] ^= 0x10;
    assert_false(iob_core_session_verify(f->core, a.value, s1));
    s1[7] ^= 0x10;
    assert_false(iob_core_session_verify(f->core, b.value + 1000, s1));
    /* Closed: the secret proves nothing any more. */
    assert_int_equal(iob_core_session_close(f->core, a), ZX_OK);
    assert_false(iob_core_session_verify(f->core, a.value, s1));
}

static void test_attach_rules(void** state) {
    fx_t* f = *state;
    uint8_t secret[IOB_CORE_SECRET_SIZE];
    iob_session_id_t s = open_with(f, &kOwner, secret);
    uint8_t wrong[IOB_CORE_SECRET_SIZE];
    memcpy(wrong, secret, sizeof wrong);
    wrong[0] ^= 1;

    /* Wrong secret, unknown id: refused, and no detail (nothing to tell a stranger). */
    assert_int_equal(attach_as(f, s.value, wrong, kOwner.pid, kOwner.uid), ZX_ERR_ACCESS_DENIED);
    assert_string_equal(iob_core_error_detail(), "");
    assert_int_equal(attach_as(f, s.value + 7, secret, kOwner.pid, kOwner.uid),
                     ZX_ERR_ACCESS_DENIED);

    /* The right secret from another process or another uid: refused, and said why. */
    assert_int_equal(attach_as(f, s.value, secret, kOwner.pid + 1, kOwner.uid),
                     ZX_ERR_ACCESS_DENIED);
    assert_non_null(strstr(iob_core_error_detail(), "refused to pid 4243 uid 1000"));
    assert_non_null(strstr(iob_core_error_detail(), "another process (ZX_ERR_ACCESS_DENIED)"));
    assert_int_equal(attach_as(f, s.value, secret, kOwner.pid, kOwner.uid + 1),
                     ZX_ERR_ACCESS_DENIED);
    assert_non_null(strstr(iob_core_error_detail(), "another uid"));
    assert_false(iob_core_session_attached(f->core, s));

    /* The owner: attached. */
    assert_int_equal(attach_as(f, s.value, secret, kOwner.pid, kOwner.uid), ZX_OK);
    assert_true(iob_core_session_attached(f->core, s));

    /* Closed: refused, and the attached flag stays for the pidfd decision. */
    assert_int_equal(iob_core_session_close(f->core, s), ZX_OK);
    assert_int_equal(attach_as(f, s.value, secret, kOwner.pid, kOwner.uid), ZX_ERR_ACCESS_DENIED);
    assert_true(iob_core_session_attached(f->core, s));
    assert_int_equal(iob_core_session_release_mappings(f->core, s), ZX_OK);
    assert_false(iob_core_session_attached(f->core, s));
}

static void test_attach_needs_local_known_session(void** state) {
    fx_t* f = *state;
    uint8_t secret[IOB_CORE_SECRET_SIZE];
    /* A remote (TCP) session cannot be attached, even by a process with its pid and uid. */
    iob_session_cred_t remote = kOwner;
    remote.local = false;
    remote.known = false;
    iob_session_id_t r = open_with(f, &remote, secret);
    assert_int_equal(attach_as(f, r.value, secret, kOwner.pid, kOwner.uid), ZX_ERR_ACCESS_DENIED);
    assert_false(iob_core_session_attached(f->core, r));

    /* Local, but its process unknown (no SO_PEERCRED): refused, and said why. */
    iob_session_cred_t unknown = kOwner;
    unknown.known = false;
    iob_session_id_t u = open_with(f, &unknown, secret);
    assert_int_equal(attach_as(f, u.value, secret, kOwner.pid, kOwner.uid), ZX_ERR_ACCESS_DENIED);
    assert_non_null(strstr(iob_core_error_detail(), "the session's process is unknown"));
    assert_false(iob_core_session_attached(f->core, u));

    /* A NULL secret_out is allowed; the session still has one nobody knows. */
    iob_session_id_t n;
    assert_int_equal(iob_core_session_open(f->core, &kOwner, &n, NULL), ZX_OK);
    uint8_t zeros[IOB_CORE_SECRET_SIZE] = {0};
    assert_int_equal(attach_as(f, n.value, zeros, kOwner.pid, kOwner.uid), ZX_ERR_ACCESS_DENIED);
}

static void test_ct_equal(void** state) {
    (void)state;
    assert_true(iob_core_ct_equal("abcd", "abcd", 4));
    assert_false(iob_core_ct_equal("abcd", "abce", 4));
    assert_true(iob_core_ct_equal("abcd", "abce", 3));
    assert_true(iob_core_ct_equal("", "x", 0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_secret_is_fresh_and_verified, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_attach_rules, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_attach_needs_local_known_session, fx_setup,
                                        fx_teardown),
        cmocka_unit_test(test_ct_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
