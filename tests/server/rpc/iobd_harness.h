/* SPDX-License-Identifier: MIT */
/*
 * Starts a real iobd for a test (posix_spawn: gRPC is not fork-safe) on a socket under a
 * fresh temp dir, with --hugepages=off, and stops it with SIGTERM.
 */
#ifndef IOB_TESTS_SERVER_RPC_IOBD_HARNESS_H_
#define IOB_TESTS_SERVER_RPC_IOBD_HARNESS_H_

#include <stdbool.h>
#include <sys/types.h>

typedef struct iobd_harness {
    pid_t pid;
    char* dir;
    char socket_path[256];
    char target[264]; /* "unix:<socket_path>" */
    char log_path[256];
} iobd_harness_t;

/* iobd's path: argv[1] of the test, else $IOB_TEST_BINARY_DIR/server/daemon/iobd. */
void iobd_harness_set_binary(const char* path);

/* extra: NULL-terminated extra flags. Returns false (and prints why) on failure. */
bool iobd_harness_start(iobd_harness_t* h, const char* const* extra);

/* SIGTERM; true when iobd exited 0 and removed its socket. Removes the temp dir. */
bool iobd_harness_stop(iobd_harness_t* h);

#endif /* IOB_TESTS_SERVER_RPC_IOBD_HARNESS_H_ */
