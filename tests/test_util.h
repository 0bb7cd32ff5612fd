/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the tests: skipping, fd-leak checks, faults, uids. What the benchmarks
 * need too (starting iobd, hugepage pools, percentiles) is in client/testkit/.
 */
#ifndef IOB_TESTS_TEST_UTIL_H_
#define IOB_TESTS_TEST_UTIL_H_

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/region.h"
#include "shm/sys.h"

/* ctest's SKIP_RETURN_CODE: the machine lacks what the test needs. */
#define IOB_TEST_SKIP 77

/* The conventional unprivileged account, for tests that drop root. */
#define IOB_TEST_NOBODY_UID ((uid_t)65534)
#define IOB_TEST_NOGROUP_GID ((gid_t)65534)

/* Prints "SKIPPED: reason" and exits 77. */
_Noreturn void iob_test_skip(const char* reason);

/* Number of open descriptors of this process (/proc/self/fd), for leak checks. */
int iob_test_count_open_fds(void);

/*
 * Checks what every region promises (docs/zircon-iob.md L, "Memory"): an fd above 2 with
 * FD_CLOEXEC, read-write, exactly the three seals, mode 0400, owned by this process's euid,
 * `size` bytes, allocated up front, and the seals refusing grow, shrink and new seals.
 * Returns NULL when all hold, else a description of the first that does not (static text).
 */
const char* iob_test_region_problem(const iob_region_t* region, uint64_t size);

/*
 * A fresh temporary directory, short enough for socket paths (iob_tk_tempdir); the caller
 * removes it and frees the string.
 */
char* iob_test_tempdir(void);

/*
 * Fault injection through shm/sys.h: starting with the nth (1-based) call of `op` from now,
 * `times` calls in a row (0: every call) answer `err` (a positive errno, or
 * IOB__FAULT_SHORT for sendmsg) instead of reaching the kernel. Arming again replaces the
 * previous plan; iob_test_fault_clear removes the hook. Thread-safe.
 */
void iob_test_fault_arm(iob__sys_op_t op, int err, unsigned nth, unsigned times);
void iob_test_fault_clear(void);
/* How many calls the current plan has failed so far. */
unsigned iob_test_fault_hits(void);

/*
 * Runs fn(arg) in a forked child that has dropped every group and switched to uid/gid
 * (setgroups, setresgid, setresuid), and returns the child's exit status (fn's result,
 * 0..255), or -1 when fork or wait failed. The child exits with IOB_TEST_SKIP when it may
 * not change uid (not root). It leaves with _exit: no atexit handlers (so no pool restore
 * twice) and no LeakSanitizer pass. Never use it in a process that called grpc_init.
 */
int iob_test_run_as(uid_t uid, gid_t gid, int (*fn)(void* arg), void* arg);

/*
 * A TCP socket whose last close blocks for linger_s seconds: connected over loopback to
 * *listener_out, which never accepts or reads, its send buffer full, SO_LINGER {1,
 * linger_s}. The caller keeps the listener open while the socket should linger (closing it
 * resets the connection) and closes both. -1 with errno on failure.
 */
int iob_test_lingering_socket(int linger_s, int* listener_out);

#endif /* IOB_TESTS_TEST_UTIL_H_ */
