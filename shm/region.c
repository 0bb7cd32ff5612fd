/* SPDX-License-Identifier: MIT */
/*
 * Shared-memory regions: memfds on 4 KiB pages or on hugetlbfs, the hugepage pools behind
 * them, and page-size rounding (docs/zircon-iob.md L, "Page size", "Memory", "Who may write").
 *
 * What the kernel does with a hugetlb memfd (observed on Linux 6.18; what the code
 * below relies on):
 *  - ftruncate only sets the size, allocating nothing, and refuses (EINVAL) a size that is
 *    not a multiple of the huge page size.
 *  - fallocate(mode 0) takes the pages from the pool at once (free_hugepages drops by the
 *    region's page count) and extends the size to offset + len, as on shmem, so create
 *    needs no ftruncate. (It does not refuse a len that is not a multiple of the huge page
 *    size; region create checks that itself.) When the pool runs dry it fails with
 *    ENOSPC, but keeps the pages it managed to take before that; they go back to the pool
 *    only when the file is released. That is why every failure path below closes the
 *    memfd.
 *  - MFD_ALLOW_SEALING works, and all of F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL are
 *    accepted: after them ftruncate (either way), fallocate past the end and F_ADD_SEALS
 *    fail with EPERM. No seal had to be left out.
 *  - hugetlbfs has no write(2): pwrite fails with EINVAL (pread works). Whoever fills a
 *    region (the server's mediated writes, remote writes over RPC) must go through a
 *    mapping; 4K (shmem) memfds accept both.
 *  - Reopening through /proc/self/fd works on hugetlb memfds as on shmem ones.
 */
#include "shm/region.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/memfd.h> /* MFD_HUGE_*; before sys/mman.h, which then skips its MFD_* */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/sys.h"

#define IOB__PAGE_4K UINT64_C(4096)
#define IOB__PAGE_2M (UINT64_C(2) << 20)
#define IOB__PAGE_1G (UINT64_C(1) << 30)
#define IOB__SIZE_LIMIT (UINT64_C(1) << 63)

/* Linux's limit on a memfd name, without the "memfd:" prefix and the NUL. */
#define IOB__MEMFD_NAME_MAX 249

static bool backing_valid(iob_backing_t backing) {
    return backing == IOB_BACKING_4K || backing == IOB_BACKING_2M || backing == IOB_BACKING_1G;
}

uint64_t iob_backing_page_size(iob_backing_t backing) {
    switch (backing) {
        case IOB_BACKING_2M:
            return IOB__PAGE_2M;
        case IOB_BACKING_1G:
            return IOB__PAGE_1G;
        case IOB_BACKING_4K:
        default:
            return IOB__PAGE_4K;
    }
}

const char* iob_backing_name(iob_backing_t backing) {
    switch (backing) {
        case IOB_BACKING_4K:
            return "4K";
        case IOB_BACKING_2M:
            return "2M";
        case IOB_BACKING_1G:
            return "1G";
        default:
            return "?";
    }
}

zx_status_t iob_backing_parse(const char* text, iob_backing_t* out) {
    if (text == NULL || out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (strcasecmp(text, "4K") == 0 || strcasecmp(text, "off") == 0) {
        *out = IOB_BACKING_4K;
    } else if (strcasecmp(text, "2M") == 0) {
        *out = IOB_BACKING_2M;
    } else if (strcasecmp(text, "1G") == 0) {
        *out = IOB_BACKING_1G;
    } else {
        return ZX_ERR_INVALID_ARGS;
    }
    return ZX_OK;
}

bool iob_page_round(uint64_t size, uint64_t page_size, uint64_t* out) {
    uint64_t mask = page_size - 1;
    if (size > UINT64_MAX - mask) {
        return false;
    }
    *out = (size + mask) & ~mask;
    return true;
}

zx_status_t iob_page_round_up(uint64_t size, uint64_t page_size, uint64_t* out) {
    if (out == NULL || page_size == 0 || (page_size & (page_size - 1)) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    uint64_t rounded;
    if (!iob_page_round(size, page_size, &rounded) || rounded > IOB__SIZE_LIMIT) {
        return ZX_ERR_OUT_OF_RANGE;
    }
    *out = rounded;
    return ZX_OK;
}

zx_status_t iob_status_from_errno(int err) {
    switch (err) {
        case ENOMEM:
        case ENOSPC:
            return ZX_ERR_NO_MEMORY;
        case EMFILE:
        case ENFILE:
            return ZX_ERR_NO_RESOURCES;
        case EINVAL:
            return ZX_ERR_INVALID_ARGS;
        case EACCES:
        case EPERM:
            return ZX_ERR_ACCESS_DENIED;
        case EEXIST:
            return ZX_ERR_ALREADY_EXISTS;
        case ENOENT:
            return ZX_ERR_NOT_FOUND;
        case EPIPE:
        case ECONNRESET:
            return ZX_ERR_PEER_CLOSED;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return ZX_ERR_SHOULD_WAIT;
        case ENOSYS:
        case EOPNOTSUPP:
#if ENOTSUP != EOPNOTSUPP
        case ENOTSUP:
#endif
        case ENODEV:
            return ZX_ERR_NOT_SUPPORTED;
        case EBADF:
            return ZX_ERR_BAD_HANDLE;
        case EFBIG:
        case EOVERFLOW:
            return ZX_ERR_OUT_OF_RANGE;
        case ETIMEDOUT:
            return ZX_ERR_TIMED_OUT;
        case EINTR:
            return ZX_ERR_INTERNAL_INTR_RETRY;
        case 0:
            /*
             * Asked to translate "no error": a bug in the caller. Never answer ZX_OK here, or a
             * failed call would pass for a successful one.
             */
            return ZX_ERR_INTERNAL;
        default:
            /*
             * Something the OS refused for a reason this table does not know. ZX_ERR_IO rather
             * than ZX_ERR_INTERNAL: it is the environment failing, not an invariant of ours.
             */
            return ZX_ERR_IO;
    }
}

/* ---- hugepage pools ---------------------------------------------------------------- */

static const char* pool_dir(iob_backing_t backing) {
    switch (backing) {
        case IOB_BACKING_2M:
            return "/sys/kernel/mm/hugepages/hugepages-2048kB";
        case IOB_BACKING_1G:
            return "/sys/kernel/mm/hugepages/hugepages-1048576kB";
        case IOB_BACKING_4K:
        default:
            return NULL;
    }
}

/* A missing pool directory means the kernel or CPU has no such page size. */
static zx_status_t pool_status_from_errno(int err) {
    return err == ENOENT ? ZX_ERR_NOT_SUPPORTED : iob_status_from_errno(err);
}

static zx_status_t pool_read_value(iob_backing_t backing, const char* file, uint64_t* out) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", pool_dir(backing), file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return pool_status_from_errno(errno);
    }
    char text[32];
    ssize_t n;
    do {
        n = read(fd, text, sizeof text - 1);
    } while (n < 0 && errno == EINTR);
    int err = errno;
    close(fd);
    if (n < 0) {
        return pool_status_from_errno(err);
    }
    text[n] = '\0';
    char* end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (end == text || errno != 0 || (*end != '\n' && *end != '\0')) {
        return ZX_ERR_IO_DATA_INTEGRITY;
    }
    *out = (uint64_t)value;
    return ZX_OK;
}

zx_status_t iob_hugepage_pool_read(iob_backing_t backing, iob_hugepage_pool_t* out) {
    if (out == NULL || pool_dir(backing) == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_hugepage_pool_t pool;
    zx_status_t status = pool_read_value(backing, "nr_hugepages", &pool.total);
    if (status == ZX_OK) {
        status = pool_read_value(backing, "free_hugepages", &pool.free);
    }
    if (status == ZX_OK) {
        *out = pool;
    }
    return status;
}

zx_status_t iob_hugepage_pool_resize(iob_backing_t backing, uint64_t pages, uint64_t* reached) {
    if (reached == NULL || pool_dir(backing) == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/nr_hugepages", pool_dir(backing));
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return pool_status_from_errno(errno);
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%" PRIu64 "\n", pages);
    ssize_t n;
    do {
        n = write(fd, text, (size_t)len);
    } while (n < 0 && errno == EINTR);
    int err = errno;
    close(fd);
    if (n < 0) {
        return pool_status_from_errno(err);
    }
    /*
     * The kernel grows the pool as far as it can find free (for 1G: contiguous) memory and
     * reports success either way, so the size reached is read back rather than assumed.
     */
    uint64_t total = 0;
    zx_status_t status = pool_read_value(backing, "nr_hugepages", &total);
    if (status == ZX_OK) {
        *reached = total;
    }
    return status;
}

static unsigned int memfd_flags(iob_backing_t backing) {
    switch (backing) {
        case IOB_BACKING_2M:
            return MFD_HUGETLB | MFD_HUGE_2MB;
        case IOB_BACKING_1G:
            return MFD_HUGETLB | MFD_HUGE_1GB;
        case IOB_BACKING_4K:
        default:
            return 0;
    }
}

/* Can this process create a memfd of this hugepage size at all (kernel, CONFIG, seccomp)? */
static zx_status_t hugetlb_probe(iob_backing_t backing) {
    int fd =
        iob__sys_memfd_create("iob-probe", MFD_CLOEXEC | MFD_ALLOW_SEALING | memfd_flags(backing));
    if (fd < 0) {
        int err = errno;
        /* EINVAL here is the kernel not knowing the flag or the page size. */
        return (err == EINVAL || err == ENOENT) ? ZX_ERR_NOT_SUPPORTED : iob_status_from_errno(err);
    }
    close(fd);
    return ZX_OK;
}

/*
 * "auto" compares the free count with min_free_pages, raised to 1: a pool with no free page
 * cannot back even one region, so choosing it would only turn every create into
 * ZX_ERR_NO_MEMORY. "2M"/"1G" were asked for explicitly, so they ignore the auto threshold
 * and fail only when the kernel lacks the page size (NOT_SUPPORTED) or the pool has no
 * free page at all (NO_MEMORY). Surplus pages (nr_overcommit_hugepages) are not counted.
 */
zx_status_t iob_backing_choose(const char* want, uint64_t min_free_pages, iob_backing_t* out) {
    if (want == NULL || out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_hugepage_pool_t pool;
    if (strcasecmp(want, "auto") == 0) {
        uint64_t threshold = min_free_pages > 0 ? min_free_pages : 1;
        if (iob_hugepage_pool_read(IOB_BACKING_2M, &pool) == ZX_OK && pool.free >= threshold &&
            hugetlb_probe(IOB_BACKING_2M) == ZX_OK) {
            *out = IOB_BACKING_2M;
        } else {
            *out = IOB_BACKING_4K;
        }
        return ZX_OK;
    }
    iob_backing_t backing;
    zx_status_t status = iob_backing_parse(want, &backing);
    if (status != ZX_OK) {
        return status;
    }
    if (backing != IOB_BACKING_4K) {
        status = iob_hugepage_pool_read(backing, &pool);
        if (status != ZX_OK) {
            return status == ZX_ERR_NOT_SUPPORTED ? status : ZX_ERR_NO_MEMORY;
        }
        status = hugetlb_probe(backing);
        if (status != ZX_OK) {
            return status;
        }
        if (pool.free == 0) {
            return ZX_ERR_NO_MEMORY;
        }
    }
    *out = backing;
    return ZX_OK;
}

/* ---- regions ----------------------------------------------------------------------- */

/*
 * Moves fd above the standard streams. A daemon whose stdout was closed would otherwise get
 * a region as fd 1, and the first stray printf would write into shared memory. It also
 * lets a zeroed iob_region_t (fd 0) read as empty. Consumes fd; returns the new one or -1.
 */
static int fd_above_stdio(int fd) {
    if (fd > STDERR_FILENO) {
        return fd;
    }
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    int err = errno;
    close(fd);
    errno = err;
    return moved;
}

static zx_status_t fail_closing(int fd, int err) {
    close(fd);
    return iob_status_from_errno(err);
}

zx_status_t iob_region_create(iob_backing_t backing, uint64_t size, const char* name,
                              iob_region_t* out) {
    if (out == NULL || !backing_valid(backing)) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (size % iob_backing_page_size(backing) != 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    if (size > (uint64_t)INT64_MAX) {
        return ZX_ERR_OUT_OF_RANGE; /* beyond off_t: the rounding rule's 2^63 limit */
    }
    if (name == NULL) {
        name = "iob-region";
    }
    if (strlen(name) > IOB__MEMFD_NAME_MAX) {
        return ZX_ERR_INVALID_ARGS;
    }

    int fd = iob__sys_memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | memfd_flags(backing));
    if (fd < 0) {
        return iob_status_from_errno(errno);
    }
    fd = fd_above_stdio(fd);
    if (fd < 0) {
        return iob_status_from_errno(errno);
    }
    /*
     * 0400 and owned by this process's uid: a process under another uid that holds only a
     * read-only description cannot reopen the file for writing through /proc (docs/zircon-iob.md
     * L). Our own read-write description keeps working: modes are checked at open, not at use.
     */
    if (iob__sys_fchmod(fd, S_IRUSR) != 0) {
        return fail_closing(fd, errno);
    }
    if (size > 0) {
        /*
         * fallocate(mode 0) both allocates and sets the size (shmem and hugetlbfs alike), so
         * no ftruncate first: one syscall less per create. Allocating up front matters:
         * otherwise an empty pool would surface as SIGBUS in whichever process touches the
         * page first. size is a multiple of the page size (checked above), which hugetlbfs
         * needs to map the file as a whole.
         */
        int rc;
        do {
            rc = iob__sys_fallocate(fd, 0, 0, (off_t)size);
        } while (rc != 0 && errno == EINTR);
        if (rc != 0) {
            return fail_closing(fd, errno);
        }
    }
    if (iob__sys_add_seals(fd, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        return fail_closing(fd, errno);
    }
    out->fd = fd;
    out->size = size;
    out->backing = backing;
    return ZX_OK;
}

void iob_region_destroy(iob_region_t* region) {
    if (region == NULL) {
        return;
    }
    /* Region fds are never 0..2 (fd_above_stdio), so a zeroed struct closes nothing. */
    if (region->fd > STDERR_FILENO) {
        close(region->fd);
    }
    region->fd = -1;
    region->size = 0;
}

zx_status_t iob_region_open_readonly(const iob_region_t* region, int* fd_out) {
    if (region == NULL || fd_out == NULL || region->fd <= STDERR_FILENO) {
        return ZX_ERR_INVALID_ARGS;
    }
    /*
     * dup() would share the read-write description; only a fresh open gives a description
     * without FMODE_WRITE, which is what makes mmap(PROT_WRITE, MAP_SHARED) and a later
     * mprotect(PROT_WRITE) fail in the receiver whatever its uid.
     */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", region->fd);
    int fd = iob__sys_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return iob_status_from_errno(errno);
    }
    fd = fd_above_stdio(fd);
    if (fd < 0) {
        return iob_status_from_errno(errno);
    }
    *fd_out = fd;
    return ZX_OK;
}
