/* SPDX-License-Identifier: MIT */
/* The broker's IMPORT: a transfer token redeemed over the map-broker socket (broker_fixture.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_fixture.h"
#include "server/broker/broker.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"
#include "test_util.h"

/*
 * IMPORT over the broker: the token rules are the core's (single use, NOT_FOUND for
 * unknown, used, expired or over-long tokens), the exported rights survive, the token
 * keeps the endpoint alive for PEER_CLOSED and the import hands it to the attached
 * session, whose holder the core tells of the endpoint's signal changes (session events).
 */
static void test_import(void** state) {
    fixture_t* f = *state;
    /* Another process's session exports endpoint 1 of its IOB with fewer rights. */
    uint8_t exporter_secret[IOB_CORE_SECRET_SIZE];
    iob_session_id_t exporter = open_local_session(f, getpid() + 1, getuid(), exporter_secret);
    zx_iob_region_t region;
    memset(&region, 0, sizeof region);
    region.type = ZX_IOB_REGION_TYPE_PRIVATE;
    region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                    ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    region.size = 3 * 4096;
    zx_handle_t e0, e1, e1_less;
    assert_int_equal(iob_core_iob_create(f->core, exporter, 0, &region, 1, &e0, &e1), ZX_OK);
    const zx_rights_t rights =
        ZX_RIGHT_TRANSFER | ZX_RIGHT_READ | ZX_RIGHT_MAP | ZX_RIGHT_INSPECT | ZX_RIGHT_WAIT;
    assert_int_equal(iob_core_handle_replace(f->core, exporter, e1, rights, &e1_less), ZX_OK);
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, exporter, e1_less, token), ZX_OK);
    /* The token in flight keeps endpoint 1 alive: no PEER_CLOSED for endpoint 0. */
    assert_int_equal(core_signals(f, exporter, e0) & ZX_IOB_PEER_CLOSED, 0);

    int fd = client_connect(f);
    zx_handle_t h = ZX_HANDLE_INVALID;
    /* Before attach: BAD_STATE, and the token is not spent. */
    assert_int_equal(import(f, fd, token, &h), ZX_ERR_BAD_STATE);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    assert_int_equal(import(f, fd, "iob1.no-such-token", &h), ZX_ERR_NOT_FOUND);
    assert_int_equal(import(f, fd, "", &h), ZX_ERR_NOT_FOUND);
    char no_nul[IOB_BROKER_TOKEN_SIZE];
    memset(no_nul, 'x', sizeof no_nul);
    assert_int_equal(import_raw(f, fd, no_nul, sizeof no_nul, &h), ZX_ERR_NOT_FOUND);
    /* A token that matches only in its first 63 bytes is another token. */
    memcpy(no_nul, token, strlen(token));
    assert_int_equal(import_raw(f, fd, no_nul, sizeof no_nul, &h), ZX_ERR_NOT_FOUND);

    assert_int_equal(import(f, fd, token, &h), ZX_OK);
    assert_int_not_equal(h, ZX_HANDLE_INVALID);
    /* A signal from the peer reaches the imported handle in the attached session. */
    int calls = f->signal_calls;
    assert_int_equal(iob_core_object_signal_peer(f->core, exporter, e0, 0, ZX_USER_SIGNAL_0),
                     ZX_OK);
    assert_int_equal(f->signal_calls, calls + 1);
    assert_int_equal(f->signal_session.value, f->session.value);
    assert_int_equal(f->signal_handle, h);
    /* Single use. */
    zx_handle_t again = ZX_HANDLE_INVALID;
    assert_int_equal(import(f, fd, token, &again), ZX_ERR_NOT_FOUND);

    /* The handle is the attached session's, with exactly the exported rights. */
    zx_info_handle_basic_t info;
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_core_get_info(f->core, f->session, h, ZX_INFO_HANDLE_BASIC, &info,
                                       sizeof info, &actual, &avail),
                     ZX_OK);
    assert_int_equal(info.rights, rights);
    assert_int_equal(iob_core_get_info(f->core, exporter, h, ZX_INFO_HANDLE_BASIC, &info,
                                       sizeof info, &actual, &avail),
                     ZX_ERR_BAD_HANDLE);
    /* It maps read-only through the same connection, and not writable. */
    int ro = -1;
    assert_int_equal(map(f, fd, h, ZX_VM_PERM_READ, 0, 0, NULL, &ro), ZX_OK);
    assert_true(ro >= 0);
    close(ro);
    assert_int_equal(map(f, fd, h, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, NULL, NULL),
                     ZX_ERR_ACCESS_DENIED);

    /* Endpoint 1 lives on in the importer: closing its handle leaves a mapping record... */
    assert_int_equal(core_signals(f, exporter, e0) & ZX_IOB_PEER_CLOSED, 0);
    assert_int_equal(iob_core_handle_close(f->core, f->session, h), ZX_OK);
    assert_int_equal(core_signals(f, exporter, e0) & ZX_IOB_PEER_CLOSED, 0);
    /* ...and once that record goes, endpoint 0 sees PEER_CLOSED. */
    assert_int_equal(iob_core_session_release_mappings(f->core, f->session), ZX_OK);
    assert_int_equal(core_signals(f, exporter, e0) & ZX_IOB_PEER_CLOSED, ZX_IOB_PEER_CLOSED);

    /* Expired: NOT_FOUND, and the endpoint the token held is released. */
    zx_handle_t e0b, e1b;
    assert_int_equal(iob_core_iob_create(f->core, exporter, 0, &region, 1, &e0b, &e1b), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, exporter, e1b, token), ZX_OK);
    f->now_ns += INT64_C(61) * 1000000000;
    assert_int_equal(import(f, fd, token, &h), ZX_ERR_NOT_FOUND);
    assert_int_equal(core_signals(f, exporter, e0b) & ZX_IOB_PEER_CLOSED, ZX_IOB_PEER_CLOSED);

    /* A wrong-sized IMPORT is a protocol error, not a lookup. */
    iob_broker_import_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_IMPORT, sizeof req - 1, 45);
    reply_t r;
    assert_int_equal(exchange(f, fd, &req, sizeof req - 1, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, 45);
    assert_int_equal(r.status.status, ZX_ERR_INVALID_ARGS);

    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.imports, 1);
    assert_int_equal(stats.imports_refused, 7);
    close(fd);
    iob_core_session_close(f->core, exporter);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_import, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
