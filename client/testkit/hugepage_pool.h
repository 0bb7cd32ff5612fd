/* SPDX-License-Identifier: MIT */
/*
 * Borrowing hugepages for a test or a benchmark run: the one place outside iobd that grows a
 * hugepage pool (through shm/region.h) and gives the pages back. Tests that use it hold the
 * ctest resource lock "hugepage_pool"; the benchmarks run under the same lock.
 *
 * What a run gives back is what it added, not an absolute "before": another user of the pool
 * may have grown it meanwhile, and its pages must stay.
 */
#ifndef IOB_CLIENT_TESTKIT_HUGEPAGE_POOL_H_
#define IOB_CLIENT_TESTKIT_HUGEPAGE_POOL_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/region.h"

/*
 * Makes sure the 2M or 1G pool has at least free_pages free pages, growing it by what is
 * missing when this process may (root). iob_tk_pool_restore (also registered with atexit)
 * gives back what was added. note (may be NULL) says what happened, e.g. "2 MiB pool grown
 * 0 -> 48 pages (48 free) for this run, given back at exit". False when the pool still has
 * fewer free pages (the caller skips what needed them).
 */
bool iob_tk_pool_reserve(iob_backing_t backing, uint64_t free_pages, char* note, size_t note_len);

/*
 * Gives back the pages added so far. Also called from fatal-signal handlers (the benchmarks
 * install some): it does no allocation and takes no lock, only open/read/write/close and
 * integer formatting.
 */
void iob_tk_pool_restore(void);

#endif /* IOB_CLIENT_TESTKIT_HUGEPAGE_POOL_H_ */
