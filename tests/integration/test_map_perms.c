/* SPDX-License-Identifier: MIT */
/*
 * What the kernel enforces for a client under another uid (docs/zircon-iob.md L): a helper
 * running as `nobody` (it drops privileges before gRPC starts) maps a region its endpoint
 * may only read, and every way to write fails in that process: a writable zx map,
 * mprotect, mmap(PROT_WRITE) of the raw fd, reopening the fd for writing, fchmod. A region
 * it may not map at all is ZX_ERR_ACCESS_DENIED. Needs root (to switch uid): else skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "map_harness.h"

static void test_nobody_reader(void** state) {
    (void)state;
    zx_iob_region_t r[2];
    memset(r, 0, sizeof r);
    r[0].type = ZX_IOB_REGION_TYPE_PRIVATE;
    r[0].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                  ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    r[0].size = zx_system_get_page_size();
    r[1] = r[0];
    r[1].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE;
    zx_handle_t ep0;
    zx_handle_t ep1;
    assert_int_equal(zx_iob_create(0, r, 2, &ep0, &ep1), ZX_OK);
    char token[IOB_TOKEN_SIZE];
    assert_int_equal(iob_handle_export(ep1, token), ZX_OK);
    const char* args[] = {"--drop", "ro", token, NULL};
    assert_int_equal(map_wait(map_spawn_peer(args, NULL)), 0);
    assert_int_equal(zx_handle_close(ep0), ZX_OK);
}

int main(void) {
    if (geteuid() != 0) {
        printf("SKIPPED: needs root to run a helper under another uid\n");
        return 77;
    }
    map_daemon_t daemon;
    map_daemon_start(&daemon, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nobody_reader),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    map_daemon_stop(&daemon);
    return rc;
}
