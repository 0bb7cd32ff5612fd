/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests: skipping, fd-leak checks, the hugepage pool. */
#ifndef IOB_TESTS_TEST_UTIL_H_
#define IOB_TESTS_TEST_UTIL_H_

#include <stdbool.h>
#include <stdint.h>

#include "shm/region.h"

/* ctest's SKIP_RETURN_CODE: the machine lacks what the test needs. */
#define IOB_TEST_SKIP 77

/* Prints "SKIPPED: reason" and exits 77. */
_Noreturn void iob_test_skip(const char* reason);

/* Number of open descriptors of this process (/proc/self/fd), for leak checks. */
int iob_test_count_open_fds(void);

/*
 * Makes sure the pool of `backing` has at least `free_pages` free pages, growing it when
 * this process may (root), and remembers the previous size so iob_test_hugepages_restore
 * puts it back (also registered with atexit). Returns false when that is impossible;
 * callers then skip. Tests that call it hold the ctest resource lock "hugepage_pool".
 */
bool iob_test_hugepages_reserve(iob_backing_t backing, uint64_t free_pages);
void iob_test_hugepages_restore(void);

/* A fresh temporary directory (mkdtemp under TMPDIR); the caller removes it. */
char* iob_test_tempdir(void);

#endif /* IOB_TESTS_TEST_UTIL_H_ */
