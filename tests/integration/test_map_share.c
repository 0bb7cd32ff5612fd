/* SPDX-License-Identifier: MIT */
/*
 * Two processes share an IOB through a real iobd: create here, export ep1, import it in a
 * helper process; both map; bytes cross in both directions; partial and multiple mappings
 * of one region; the imported handle has exactly the exported rights.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "map_harness.h"

static map_daemon_t g_daemon;

typedef struct {
    zx_handle_t ep0;
    zx_handle_t ep1;
    zx_vaddr_t map0; /* ep0's read-write mapping of region 0 */
    uint64_t pg;
} share_t;

static int setup(void** state) {
    static share_t s;
    s.pg = zx_system_get_page_size();
    zx_iob_region_t r[2];
    memset(r, 0, sizeof r);
    r[0].type = ZX_IOB_REGION_TYPE_PRIVATE;
    r[0].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                  ZX_IOB_ACCESS_EP1_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE;
    r[0].size = 4 * s.pg;
    r[1] = r[0];
    r[1].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                  ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    assert_int_equal(zx_iob_create(0, r, 2, &s.ep0, &s.ep1), ZX_OK);
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                                     s.ep0, 0, 0, 4 * s.pg, &s.map0),
                     ZX_OK);
    *state = &s;
    return 0;
}

static int teardown(void** state) {
    share_t* s = *state;
    zx_vmar_unmap(zx_vmar_root_self(), s->map0, 4 * s->pg);
    zx_handle_close(s->ep0);
    zx_handle_close(s->ep1);
    return 0;
}

/* A token for a duplicate of ep1 with `rights`. */
static void token_for(share_t* s, zx_rights_t rights, char token[IOB_TOKEN_SIZE]) {
    zx_handle_t dup;
    assert_int_equal(zx_handle_duplicate(s->ep1, rights, &dup), ZX_OK);
    assert_int_equal(iob_handle_export(dup, token), ZX_OK);
}

static int run_peer(const char* const* args) {
    return map_wait(map_spawn_peer(args, NULL));
}

static void test_parent_writes_peer_reads(void** state) {
    share_t* s = *state;
    strcpy((char*)s->map0 + s->pg + 24, "written by the creator");
    char token[IOB_TOKEN_SIZE];
    char off[32];
    snprintf(off, sizeof off, "%llu", (unsigned long long)(s->pg + 24));
    token_for(s, ZX_RIGHT_SAME_RIGHTS, token);
    const char* args[] = {"read", token, "0", off, "written by the creator", NULL};
    assert_int_equal(run_peer(args), 0);
}

static void test_peer_writes_parent_reads(void** state) {
    share_t* s = *state;
    char token[IOB_TOKEN_SIZE];
    char off[32];
    snprintf(off, sizeof off, "%llu", (unsigned long long)(2 * s->pg + 8));
    token_for(s, ZX_RIGHT_SAME_RIGHTS, token);
    const char* args[] = {"write", token, "0", off, "written by the peer", NULL};
    assert_int_equal(run_peer(args), 0);
    assert_string_equal((const char*)s->map0 + 2 * s->pg + 8, "written by the peer");
}

static void test_partial_and_multiple_mappings(void** state) {
    share_t* s = *state;
    strcpy((char*)s->map0 + s->pg, "page one");
    char token[IOB_TOKEN_SIZE];
    token_for(s, ZX_RIGHT_SAME_RIGHTS, token);
    const char* args[] = {"multi", token, "page one", NULL};
    assert_int_equal(run_peer(args), 0);
}

static void test_read_only_region_refuses_writer(void** state) {
    share_t* s = *state;
    char token[IOB_TOKEN_SIZE];
    token_for(s, ZX_RIGHT_SAME_RIGHTS, token);
    /* Region 1 is read-only for ep1: the peer's writable map fails (exit 4). */
    const char* args[] = {"write", token, "1", "0", "nope", NULL};
    assert_int_equal(run_peer(args), 4);
}

static void test_imported_rights(void** state) {
    share_t* s = *state;
    zx_rights_t rights = ZX_RIGHT_TRANSFER | ZX_RIGHT_MAP | ZX_RIGHT_READ | ZX_RIGHT_WAIT |
                         ZX_RIGHT_INSPECT;
    char token[IOB_TOKEN_SIZE];
    char hex[16];
    snprintf(hex, sizeof hex, "%x", rights);
    token_for(s, rights, token);
    const char* args[] = {"rights", token, hex, NULL};
    assert_int_equal(run_peer(args), 0);
}

/* iob_client_connect / iob_client_close in a fresh process (the peer). */
static void test_explicit_connection(void** state) {
    (void)state;
    const char* args[] = {"explicit", g_daemon.target, NULL};
    assert_int_equal(run_peer(args), 0);
}

int main(void) {
    map_daemon_start(&g_daemon, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parent_writes_peer_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_writes_parent_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_and_multiple_mappings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_region_refuses_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_imported_rights, setup, teardown),
        cmocka_unit_test(test_explicit_connection),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    map_daemon_stop(&g_daemon);
    return rc;
}
