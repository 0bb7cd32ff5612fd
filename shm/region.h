/* SPDX-License-Identifier: MIT */
/*
 * Shared-memory regions: one memfd each, hugepage-backed or on 4 KiB pages
 * (docs/zircon-iob.md L, "Page size" and "Memory"). No RPC, no event loop.
 *
 * A region's memfd is created by the server, owned by its uid with mode 0400, sized and
 * allocated up front (fallocate, so an empty hugepage pool is ZX_ERR_NO_MEMORY here and
 * not a SIGBUS later), sealed against shrink, grow and further sealing, zero-filled. Only a
 * hole a writer punches can fault later (see shm/fault_guard.h).
 */
#ifndef IOB_SHM_REGION_H_
#define IOB_SHM_REGION_H_

#include <stdbool.h>
#include <stdint.h>

#include <zircon/types.h>

typedef enum iob_backing {
    IOB_BACKING_4K = 0, /* ordinary shmem pages */
    IOB_BACKING_2M = 1, /* MFD_HUGETLB | MFD_HUGE_2MB */
    IOB_BACKING_1G = 2, /* MFD_HUGETLB | MFD_HUGE_1GB */
} iob_backing_t;

/* 4096, 2 MiB or 1 GiB. */
uint64_t iob_backing_page_size(iob_backing_t backing);
/* "4K", "2M", "1G": the labels used in logs, server info and benchmark output. */
const char* iob_backing_name(iob_backing_t backing);
/* Parses "4K"/"off", "2M", "1G" (case-insensitive). Unknown text: ZX_ERR_INVALID_ARGS. */
zx_status_t iob_backing_parse(const char* text, iob_backing_t* out);

/*
 * Rounds size up to a multiple of page_size (a power of two). A result that overflows or
 * exceeds 2^63 is ZX_ERR_OUT_OF_RANGE. 0 stays 0.
 */
zx_status_t iob_page_round_up(uint64_t size, uint64_t page_size, uint64_t* out);
/*
 * The rounding alone, for lengths that are not region sizes (a VMAR range, a mapping):
 * false when it overflows. page_size must be a power of two.
 */
bool iob_page_round(uint64_t size, uint64_t page_size, uint64_t* out);

typedef struct iob_hugepage_pool {
    uint64_t total; /* pages in the pool (nr_hugepages) */
    uint64_t free;  /* pages not yet allocated */
} iob_hugepage_pool_t;

/* Reads /sys/kernel/mm/hugepages for this backing. 4K: ZX_ERR_INVALID_ARGS. */
zx_status_t iob_hugepage_pool_read(iob_backing_t backing, iob_hugepage_pool_t* out);
/* Sets nr_hugepages (root only: ZX_ERR_ACCESS_DENIED otherwise). Reports the count reached. */
zx_status_t iob_hugepage_pool_resize(iob_backing_t backing, uint64_t pages, uint64_t* reached);

/*
 * Chooses the server's backing once: "auto" picks 2M when the pool has at least
 * min_free_pages free pages and a hugetlb memfd can be created, else 4K; "2M"/"1G"
 * insist (ZX_ERR_NO_MEMORY when unavailable); "off" is 4K.
 * A min_free_pages of 0 counts as 1. "2M"/"1G" ignore the threshold: they fail with
 * ZX_ERR_NOT_SUPPORTED when the kernel lacks that page size and ZX_ERR_NO_MEMORY when its
 * pool has no free page. Unknown text: ZX_ERR_INVALID_ARGS.
 */
zx_status_t iob_backing_choose(const char* want, uint64_t min_free_pages, iob_backing_t* out);

typedef struct iob_region {
    int fd;        /* read-write file description; -1 when empty */
    uint64_t size; /* bytes, a multiple of the page size */
    iob_backing_t backing;
} iob_region_t;

/*
 * Creates a region of `size` bytes (already a multiple of the backing's page size;
 * otherwise ZX_ERR_INVALID_ARGS). name shows in /proc/PID/maps as "memfd:<name>".
 * Errors: ZX_ERR_NO_MEMORY (ENOMEM, ENOSPC: the pool or memory is exhausted),
 * ZX_ERR_NO_RESOURCES (EMFILE, ENFILE), ZX_ERR_OUT_OF_RANGE (size above INT64_MAX),
 * ZX_ERR_INVALID_ARGS (also: a name longer than 249 bytes). Nothing is left behind on
 * failure: no fd, and no hugepage taken from the pool. NULL name: "iob-region".
 * The region's fd is never 0, 1 or 2, so a zeroed iob_region_t holds nothing to close.
 */
zx_status_t iob_region_create(iob_backing_t backing, uint64_t size, const char* name,
                              iob_region_t* out);
/* Closes the fd. Safe on a zeroed or already-destroyed region. */
void iob_region_destroy(iob_region_t* region);

/*
 * Opens a new read-only file description of the region (through /proc/self/fd), so a
 * process under another uid that receives it can neither mmap it writable, mprotect such
 * a mapping to writable, nor reopen it for writing. The caller owns *fd_out.
 */
zx_status_t iob_region_open_readonly(const iob_region_t* region, int* fd_out);

/*
 * errno -> zx_status_t: ENOMEM/ENOSPC -> NO_MEMORY, EMFILE/ENFILE -> NO_RESOURCES,
 * EINVAL -> INVALID_ARGS, EACCES/EPERM -> ACCESS_DENIED, EEXIST -> ALREADY_EXISTS,
 * ENOENT -> NOT_FOUND, EPIPE/ECONNRESET -> PEER_CLOSED, EAGAIN -> SHOULD_WAIT,
 * ENOSYS/EOPNOTSUPP/ENODEV -> NOT_SUPPORTED, EBADF -> BAD_HANDLE, EFBIG/EOVERFLOW ->
 * OUT_OF_RANGE, ETIMEDOUT -> TIMED_OUT, EINTR -> INTERNAL_INTR_RETRY; any other errno ->
 * ZX_ERR_IO (the environment failed, not our invariants); 0 -> ZX_ERR_INTERNAL (never ZX_OK).
 */
zx_status_t iob_status_from_errno(int err);

#endif /* IOB_SHM_REGION_H_ */
