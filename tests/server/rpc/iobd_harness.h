/* SPDX-License-Identifier: MIT */
/*
 * A real iobd for the RPC tests: client/testkit/iobd_launch.h with --hugepages=off, debug
 * logging into <dir>/iobd.log, and a stop that insists on a clean exit.
 */
#ifndef IOB_TESTS_SERVER_RPC_IOBD_HARNESS_H_
#define IOB_TESTS_SERVER_RPC_IOBD_HARNESS_H_

#include <stdbool.h>
#include <sys/types.h>

#include "client/testkit/iobd_launch.h"

/* pid, dir, socket_path, target ("unix:<socket_path>"), log_path. */
typedef iob_tk_iobd_t iobd_harness_t;

/* iobd's path: argv[1] of the test, else $IOB_TEST_BINARY_DIR/server/daemon/iobd. */
void iobd_harness_set_binary(const char* path);

/* extra: NULL-terminated extra flags. Returns false (and prints why) on failure. */
bool iobd_harness_start(iobd_harness_t* h, const char* const* extra);

/*
 * SIGTERM; true when iobd exited 0 and removed its socket (else says why, with its log).
 * Removes the temp dir.
 */
bool iobd_harness_stop(iobd_harness_t* h);

#endif /* IOB_TESTS_SERVER_RPC_IOBD_HARNESS_H_ */
