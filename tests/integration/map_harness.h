/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the map integration tests: a real iobd on a private socket directory, and
 * helper processes started with posix_spawn (gRPC is not fork-safe: never fork+continue).
 */
#ifndef IOB_TESTS_INTEGRATION_MAP_HARNESS_H_
#define IOB_TESTS_INTEGRATION_MAP_HARNESS_H_

#include <stdbool.h>
#include <sys/types.h>

#include "client/testkit/iobd_launch.h"

/*
 * pid, dir (mode 0755, so helpers under other uids reach the sockets), target (also
 * exported as IOB_SERVER), broker_path.
 */
typedef iob_tk_iobd_t map_daemon_t;

/*
 * Starts iobd (client/testkit/iobd_launch.h: 4 KiB pages, sockets mode 0666, a 2 s token
 * time-to-live) with the extra NULL-terminated arguments, waits until both of its sockets
 * accept connections and sets IOB_SERVER for this process and its children. Exits 77 (skip)
 * when iobd was not built, 1 when it does not start.
 */
void map_daemon_start(map_daemon_t* d, const char* const* extra_args);
void map_daemon_stop(map_daemon_t* d);

/*
 * Starts the iob_test_peer helper with argv (not including the program name). When
 * stdout_fd is not NULL, the child's stdout is a pipe whose read end is returned there.
 */
pid_t map_spawn_peer(const char* const* argv, int* stdout_fd);
/* The same for any program (`prog`: its path, also its argv[0]). */
pid_t map_spawn(const char* prog, const char* const* argv, int* stdout_fd);

/*
 * How many descriptors iobd has open; with `needle`, only those whose target (the
 * /proc/PID/fd link) contains it, such as a memfd's name. Fails the test when /proc
 * cannot be read. For the checks that an attack left nothing behind in iobd.
 */
int map_daemon_fds(const map_daemon_t* d, const char* needle);

/* Waits for the child; its exit status, or 128 + signal. */
int map_wait(pid_t pid);

/* Reads one line from fd into buf (NUL-terminated, newline dropped); false on EOF/timeout. */
bool map_read_line(int fd, char* buf, size_t cap, int timeout_ms);

#endif /* IOB_TESTS_INTEGRATION_MAP_HARNESS_H_ */
