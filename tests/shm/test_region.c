/* SPDX-License-Identifier: MIT */
/*
 * Tests for shm/region.c on 4 KiB pages: rounding, backing names, errno translation,
 * create/seal/zero-fill, the failure paths (through the fault seam), and what a read-only
 * file description lets a process do, under this uid and under another one.
 * Hugepage-backed regions are tested in test_region_hugetlb.c (needs root and the pool lock).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shm/region.h"
#include "shm/sys.h"
#include "test_util.h"

#define P4K UINT64_C(4096)
#define P2M (UINT64_C(2) << 20)
#define P1G (UINT64_C(1) << 30)
#define TWO_63 (UINT64_C(1) << 63)

/* ---- rounding ---------------------------------------------------------------------- */

typedef struct {
    uint64_t size;
    zx_status_t status;
    uint64_t result; /* when status is ZX_OK */
} round_case_t;

static void check_round_cases(uint64_t page) {
    const round_case_t cases[] = {
        {0, ZX_OK, 0},
        {1, ZX_OK, page},
        {page - 1, ZX_OK, page},
        {page, ZX_OK, page},
        {page + 1, ZX_OK, 2 * page},
        {2 * page - 1, ZX_OK, 2 * page},
        {TWO_63 - page, ZX_OK, TWO_63 - page},
        {TWO_63 - page + 1, ZX_OK, TWO_63}, /* rounds to exactly 2^63: still allowed */
        {TWO_63, ZX_OK, TWO_63},
        {TWO_63 + 1, ZX_ERR_OUT_OF_RANGE, 0},
        {UINT64_MAX - page + 1, ZX_ERR_OUT_OF_RANGE, 0},
        {UINT64_MAX - page + 2, ZX_ERR_OUT_OF_RANGE, 0}, /* would wrap to 0 */
        {UINT64_MAX, ZX_ERR_OUT_OF_RANGE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t out = 0xdeadbeef;
        zx_status_t status = iob_page_round_up(cases[i].size, page, &out);
        if (status != cases[i].status) {
            fail_msg("page %llu size %llu: status %d, expected %d", (unsigned long long)page,
                     (unsigned long long)cases[i].size, status, cases[i].status);
        }
        if (status == ZX_OK) {
            assert_int_equal(out, cases[i].result);
        } else {
            assert_int_equal(out, 0xdeadbeef); /* out-parameters only on success */
        }
    }
}

static void test_round_up_4k(void** state) {
    (void)state;
    check_round_cases(P4K);
}

static void test_round_up_2m(void** state) {
    (void)state;
    check_round_cases(P2M);
}

static void test_round_up_1g(void** state) {
    (void)state;
    check_round_cases(P1G);
}

static void test_round_up_bad_page_size(void** state) {
    (void)state;
    uint64_t out = 0;
    assert_int_equal(iob_page_round_up(1, 0, &out), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_page_round_up(1, 3, &out), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_page_round_up(1, 4097, &out), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_page_round_up(1, P4K, NULL), ZX_ERR_INVALID_ARGS);
    /* Page size 1 is a power of two: every size is already rounded. */
    assert_int_equal(iob_page_round_up(12345, 1, &out), ZX_OK);
    assert_int_equal(out, 12345);
}

/* ---- backing names ----------------------------------------------------------------- */

static void test_backing_names(void** state) {
    (void)state;
    assert_int_equal(iob_backing_page_size(IOB_BACKING_4K), P4K);
    assert_int_equal(iob_backing_page_size(IOB_BACKING_2M), P2M);
    assert_int_equal(iob_backing_page_size(IOB_BACKING_1G), P1G);
    assert_string_equal(iob_backing_name(IOB_BACKING_4K), "4K");
    assert_string_equal(iob_backing_name(IOB_BACKING_2M), "2M");
    assert_string_equal(iob_backing_name(IOB_BACKING_1G), "1G");

    const struct {
        const char* text;
        zx_status_t status;
        iob_backing_t backing;
    } cases[] = {
        {"4K", ZX_OK, IOB_BACKING_4K},    {"4k", ZX_OK, IOB_BACKING_4K},
        {"off", ZX_OK, IOB_BACKING_4K},   {"OFF", ZX_OK, IOB_BACKING_4K},
        {"2M", ZX_OK, IOB_BACKING_2M},    {"2m", ZX_OK, IOB_BACKING_2M},
        {"1G", ZX_OK, IOB_BACKING_1G},    {"1g", ZX_OK, IOB_BACKING_1G},
        {"auto", ZX_ERR_INVALID_ARGS, 0}, {"", ZX_ERR_INVALID_ARGS, 0},
        {"2MB", ZX_ERR_INVALID_ARGS, 0},  {" 2M", ZX_ERR_INVALID_ARGS, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        iob_backing_t out = (iob_backing_t)99;
        zx_status_t status = iob_backing_parse(cases[i].text, &out);
        if (status != cases[i].status) {
            fail_msg("parse \"%s\": %d, expected %d", cases[i].text, status, cases[i].status);
        }
        assert_int_equal(out, status == ZX_OK ? cases[i].backing : (iob_backing_t)99);
    }
    iob_backing_t out;
    assert_int_equal(iob_backing_parse(NULL, &out), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_backing_parse("2M", NULL), ZX_ERR_INVALID_ARGS);
}

/* Independent of the machine's pools: these never need a hugepage. */
static void test_backing_choose_without_pool(void** state) {
    (void)state;
    iob_backing_t out = IOB_BACKING_1G;
    assert_int_equal(iob_backing_choose("off", 0, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_4K);
    out = IOB_BACKING_1G;
    assert_int_equal(iob_backing_choose("4K", 0, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_4K);
    /* No pool has UINT64_MAX free pages, so auto falls back to 4K. */
    out = IOB_BACKING_1G;
    assert_int_equal(iob_backing_choose("auto", UINT64_MAX, &out), ZX_OK);
    assert_int_equal(out, IOB_BACKING_4K);
    assert_int_equal(iob_backing_choose("AUTO", UINT64_MAX, &out), ZX_OK);
    assert_int_equal(iob_backing_choose("bogus", 0, &out), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_backing_choose(NULL, 0, &out), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_backing_choose("auto", 0, NULL), ZX_ERR_INVALID_ARGS);
}

static void test_pool_read_4k_invalid(void** state) {
    (void)state;
    iob_hugepage_pool_t pool;
    uint64_t reached;
    assert_int_equal(iob_hugepage_pool_read(IOB_BACKING_4K, &pool), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_hugepage_pool_resize(IOB_BACKING_4K, 1, &reached), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_hugepage_pool_read(IOB_BACKING_2M, NULL), ZX_ERR_INVALID_ARGS);
}

/* ---- errno translation ------------------------------------------------------------- */

static void test_status_from_errno(void** state) {
    (void)state;
    const struct {
        int err;
        zx_status_t status;
    } cases[] = {
        {ENOMEM, ZX_ERR_NO_MEMORY},
        {ENOSPC, ZX_ERR_NO_MEMORY},
        {EMFILE, ZX_ERR_NO_RESOURCES},
        {ENFILE, ZX_ERR_NO_RESOURCES},
        {EINVAL, ZX_ERR_INVALID_ARGS},
        {EACCES, ZX_ERR_ACCESS_DENIED},
        {EPERM, ZX_ERR_ACCESS_DENIED},
        {EEXIST, ZX_ERR_ALREADY_EXISTS},
        {ENOENT, ZX_ERR_NOT_FOUND},
        {EPIPE, ZX_ERR_PEER_CLOSED},
        {ECONNRESET, ZX_ERR_PEER_CLOSED},
        {EAGAIN, ZX_ERR_SHOULD_WAIT},
        {EWOULDBLOCK, ZX_ERR_SHOULD_WAIT},
        {ENOSYS, ZX_ERR_NOT_SUPPORTED},
        {EOPNOTSUPP, ZX_ERR_NOT_SUPPORTED},
        {ENODEV, ZX_ERR_NOT_SUPPORTED},
        {EBADF, ZX_ERR_BAD_HANDLE},
        {EFBIG, ZX_ERR_OUT_OF_RANGE},
        {ETIMEDOUT, ZX_ERR_TIMED_OUT},
        {EINTR, ZX_ERR_INTERNAL_INTR_RETRY},
        {EIO, ZX_ERR_IO},
        {EXDEV, ZX_ERR_IO},
        {0, ZX_ERR_INTERNAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zx_status_t status = iob_status_from_errno(cases[i].err);
        if (status != cases[i].status) {
            fail_msg("errno %d (%s): %d, expected %d", cases[i].err, strerror(cases[i].err), status,
                     cases[i].status);
        }
    }
}

/* ---- create ------------------------------------------------------------------------ */

static void check_region_invariants(const iob_region_t* region, uint64_t size) {
    const char* problem = iob_test_region_problem(region, size);
    if (problem != NULL) {
        fail_msg("region of %llu bytes: %s", (unsigned long long)size, problem);
    }
}

static void test_create_sealed_zeroed(void** state) {
    (void)state;
    const uint64_t size = 3 * P4K;
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_4K, size, "iob-test-create", &region), ZX_OK);
    assert_int_equal(region.backing, IOB_BACKING_4K);
    check_region_invariants(&region, size);

    char link[PATH_MAX], path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", region.fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    assert_true(n > 0);
    link[n] = '\0';
    assert_non_null(strstr(link, "memfd:iob-test-create"));

    unsigned char* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, region.fd, 0);
    assert_true(p != MAP_FAILED);
    for (uint64_t i = 0; i < size; i++) {
        if (p[i] != 0) {
            fail_msg("byte %llu is %u, not zero", (unsigned long long)i, p[i]);
        }
    }
    /* Our own read-write description still writes, although the mode is 0400. */
    p[0] = 0xa5;
    p[size - 1] = 0x5a;
    unsigned char back[1];
    assert_int_equal(pread(region.fd, back, 1, (off_t)(size - 1)), 1);
    assert_int_equal(back[0], 0x5a);
    munmap(p, size);
    iob_region_destroy(&region);
    assert_int_equal(region.fd, -1);
}

static void test_create_size_zero(void** state) {
    (void)state;
    int fds = iob_test_count_open_fds();
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_4K, 0, "iob-test-empty", &region), ZX_OK);
    check_region_invariants(&region, 0);
    struct stat st;
    assert_int_equal(fstat(region.fd, &st), 0);
    assert_int_equal(st.st_blocks, 0);
    assert_int_equal(iob_test_count_open_fds(), fds + 1);
    iob_region_destroy(&region);
    assert_int_equal(iob_test_count_open_fds(), fds);
}

static void test_create_invalid(void** state) {
    (void)state;
    int fds = iob_test_count_open_fds();
    iob_region_t region = {.fd = -7, .size = 7, .backing = IOB_BACKING_1G};
    assert_int_equal(iob_region_create(IOB_BACKING_4K, 1, "x", &region), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K - 1, "x", &region), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K + 1, "x", &region), ZX_ERR_INVALID_ARGS);
    /* A 4K multiple is not a 2M or 1G multiple; rejected before any hugepage is involved. */
    assert_int_equal(iob_region_create(IOB_BACKING_2M, P4K, "x", &region), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_region_create(IOB_BACKING_1G, P2M, "x", &region), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_region_create((iob_backing_t)3, P4K, "x", &region), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K, "x", NULL), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_region_create(IOB_BACKING_4K, TWO_63, "x", &region), ZX_ERR_OUT_OF_RANGE);
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K, name, &region), ZX_ERR_INVALID_ARGS);
    name[249] = '\0'; /* the longest name memfd_create takes */
    iob_region_t ok;
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K, name, &ok), ZX_OK);
    iob_region_destroy(&ok);
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K, NULL, &ok), ZX_OK); /* default name */
    iob_region_destroy(&ok);
    /* Out-parameters are written only on success. */
    assert_int_equal(region.fd, -7);
    assert_int_equal(region.size, 7);
    assert_int_equal(iob_test_count_open_fds(), fds);
}

/* Each step of create, failed by the seam: the status it maps to, and nothing left behind. */
static void test_create_fault_paths(void** state) {
    (void)state;
    const struct {
        iob__sys_op_t op;
        int err;
        zx_status_t status;
    } cases[] = {
        {IOB__SYS_MEMFD_CREATE, EMFILE, ZX_ERR_NO_RESOURCES},
        {IOB__SYS_MEMFD_CREATE, ENFILE, ZX_ERR_NO_RESOURCES},
        {IOB__SYS_MEMFD_CREATE, ENOMEM, ZX_ERR_NO_MEMORY},
        {IOB__SYS_FCHMOD, EPERM, ZX_ERR_ACCESS_DENIED},
        /* No ftruncate step: fallocate sets the size (shm/region.c). */
        {IOB__SYS_FALLOCATE, ENOSPC, ZX_ERR_NO_MEMORY}, /* an exhausted hugepage pool */
        {IOB__SYS_FALLOCATE, ENOMEM, ZX_ERR_NO_MEMORY},
        {IOB__SYS_ADD_SEALS, EINVAL, ZX_ERR_INVALID_ARGS},
        {IOB__SYS_ADD_SEALS, EIO, ZX_ERR_IO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fds = iob_test_count_open_fds();
        iob_region_t region = {.fd = -7};
        iob_test_fault_arm(cases[i].op, cases[i].err, 1, 1);
        zx_status_t status = iob_region_create(IOB_BACKING_4K, 2 * P4K, "iob-test-fault", &region);
        unsigned hits = iob_test_fault_hits();
        iob_test_fault_clear();
        if (status != cases[i].status) {
            fail_msg("%s failing with %s: %d, expected %d", iob__sys_op_name(cases[i].op),
                     strerror(cases[i].err), status, cases[i].status);
        }
        assert_int_equal(hits, 1);
        assert_int_equal(region.fd, -7);
        if (iob_test_count_open_fds() != fds) {
            fail_msg("%s failing left an fd behind", iob__sys_op_name(cases[i].op));
        }
    }
}

static void test_create_fallocate_eintr_retried(void** state) {
    (void)state;
    iob_region_t region;
    iob_test_fault_arm(IOB__SYS_FALLOCATE, EINTR, 1, 2);
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K, "iob-test-eintr", &region), ZX_OK);
    assert_int_equal(iob_test_fault_hits(), 2);
    iob_test_fault_clear();
    check_region_invariants(&region, P4K);
    iob_region_destroy(&region);
}

/* The real EMFILE, not a simulated one: the descriptor table is full. */
static void test_create_real_emfile(void** state) {
    (void)state;
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int fds = iob_test_count_open_fds();
    /* Every slot up to the highest open fd may be in use; cap the table right there. */
    int highest = 0;
    for (int fd = 0; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            highest = fd;
        }
    }
    struct rlimit tight = saved;
    tight.rlim_cur = (rlim_t)highest + 1;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
    /* Fill any holes below the cap so that no slot is free at all. */
    int fillers[4096];
    int nfill = 0;
    for (;;) {
        int fd = dup(STDERR_FILENO);
        if (fd < 0) {
            break;
        }
        fillers[nfill++] = fd;
    }
    iob_region_t region = {.fd = -7};
    zx_status_t status = iob_region_create(IOB_BACKING_4K, P4K, "iob-test-emfile", &region);
    for (int i = 0; i < nfill; i++) {
        close(fillers[i]);
    }
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(status, ZX_ERR_NO_RESOURCES);
    assert_int_equal(region.fd, -7);
    assert_int_equal(iob_test_count_open_fds(), fds);
}

/* With stdin closed the memfd would become fd 0; create moves it above the std streams. */
static void test_create_never_stdio_fd(void** state) {
    (void)state;
    int saved_stdin = dup(STDIN_FILENO);
    assert_true(saved_stdin >= 0);
    close(STDIN_FILENO);
    iob_region_t region;
    zx_status_t status = iob_region_create(IOB_BACKING_4K, P4K, "iob-test-stdio", &region);
    bool stdin_still_closed = fcntl(STDIN_FILENO, F_GETFD) < 0;
    int readonly = -1;
    zx_status_t ro_status = status == ZX_OK ? iob_region_open_readonly(&region, &readonly) : status;
    bool stdin_still_closed_after_ro = fcntl(STDIN_FILENO, F_GETFD) < 0;
    assert_int_equal(dup2(saved_stdin, STDIN_FILENO), STDIN_FILENO);
    close(saved_stdin);
    assert_int_equal(status, ZX_OK);
    assert_int_equal(ro_status, ZX_OK);
    assert_true(region.fd > STDERR_FILENO);
    assert_true(readonly > STDERR_FILENO);
    assert_true(stdin_still_closed);
    assert_true(stdin_still_closed_after_ro);
    close(readonly);
    iob_region_destroy(&region);
}

static void test_destroy_zeroed_and_twice(void** state) {
    (void)state;
    int fds = iob_test_count_open_fds();
    iob_region_t zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    iob_region_destroy(&zeroed); /* fd 0 is stdin, never a region: left alone */
    assert_true(fcntl(STDIN_FILENO, F_GETFD) >= 0);
    iob_region_destroy(NULL);
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K, "iob-test-destroy", &region), ZX_OK);
    iob_region_destroy(&region);
    iob_region_destroy(&region);
    assert_int_equal(iob_test_count_open_fds(), fds);
}

/* ---- the read-only description, in this process ------------------------------------ */

static void test_readonly_same_process(void** state) {
    (void)state;
    const uint64_t size = 2 * P4K;
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_4K, size, "iob-test-ro", &region), ZX_OK);
    unsigned char* w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, region.fd, 0);
    assert_true(w != MAP_FAILED);
    memcpy(w, "iob", 4);

    int ro = -1;
    assert_int_equal(iob_region_open_readonly(&region, &ro), ZX_OK);
    assert_true(ro > STDERR_FILENO);
    assert_int_equal(fcntl(ro, F_GETFL) & O_ACCMODE, O_RDONLY);
    assert_int_equal(fcntl(ro, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

    /* These hold for every uid, root included: they depend on the description, not the mode. */
    errno = 0;
    assert_true(mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED);
    assert_int_equal(errno, EACCES);
    unsigned char* r = mmap(NULL, size, PROT_READ, MAP_SHARED, ro, 0);
    assert_true(r != MAP_FAILED);
    assert_string_equal((const char*)r, "iob"); /* the control: reading works */
    errno = 0;
    assert_int_equal(mprotect(r, size, PROT_READ | PROT_WRITE), -1);
    assert_int_equal(errno, EACCES);
    errno = 0;
    assert_int_equal(write(ro, "x", 1), -1);
    assert_int_equal(errno, EBADF);
    /* A writer's later stores show through the read-only mapping: it is the same memory. */
    w[0] = 'I';
    assert_int_equal(r[0], 'I');

    /* MAP_PRIVATE stays possible (copy-on-write) and never reaches the shared pages. */
    unsigned char* cow = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
    assert_true(cow != MAP_FAILED);
    cow[0] = 'X';
    assert_int_equal(w[0], 'I');
    munmap(cow, size);

    /*
     * Reopening for writing through /proc checks the file mode (0400), and root bypasses
     * file modes (CAP_DAC_OVERRIDE). So only a process under another uid is refused; that
     * case is test_readonly_other_uid, which drops to nobody in a child.
     */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", ro);
    int rw = open(path, O_RDWR | O_CLOEXEC);
    if (geteuid() != 0) {
        assert_int_equal(rw, -1);
        assert_int_equal(errno, EACCES);
    } else if (rw >= 0) {
        close(rw);
    }

    munmap(r, size);
    munmap(w, size);
    close(ro);
    iob_region_destroy(&region);
}

static void test_readonly_invalid_and_faults(void** state) {
    (void)state;
    int fds = iob_test_count_open_fds();
    int ro = -7;
    iob_region_t empty = {.fd = -1};
    assert_int_equal(iob_region_open_readonly(&empty, &ro), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_region_open_readonly(NULL, &ro), ZX_ERR_INVALID_ARGS);
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_4K, P4K, "iob-test-ro-fault", &region), ZX_OK);
    assert_int_equal(iob_region_open_readonly(&region, NULL), ZX_ERR_INVALID_ARGS);
    iob_test_fault_arm(IOB__SYS_OPEN, EMFILE, 1, 1);
    assert_int_equal(iob_region_open_readonly(&region, &ro), ZX_ERR_NO_RESOURCES);
    iob_test_fault_clear();
    assert_int_equal(ro, -7);
    iob_region_destroy(&region);
    assert_int_equal(iob_test_count_open_fds(), fds);
}

/* ---- the read-only description, under another uid ---------------------------------- */

typedef struct {
    int ro;      /* the region, read-only description */
    int rw;      /* the region, read-write description */
    int control; /* a memfd with mode 0666, to show /proc reopening works in the child */
    uint64_t size;
} uid_case_t;

/* In the child: report the first failed expectation by its number (exit status). */
#define CHILD_EXPECT(n, cond)                                                     \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "child check %d failed: %s (errno %s)\n", (n), #cond, \
                    strerror(errno));                                             \
            return (n);                                                           \
        }                                                                         \
    } while (0)

static int reopen(int fd, int flags) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return open(path, flags | O_CLOEXEC);
}

static int child_other_uid(void* arg) {
    const uid_case_t* c = arg;
    CHILD_EXPECT(1, geteuid() == IOB_TEST_NOBODY_UID);

    /* Control: the data is readable through the read-only description, by read and mmap. */
    char buf[8] = {0};
    CHILD_EXPECT(2, pread(c->ro, buf, 4, 0) == 4 && strcmp(buf, "iob") == 0);
    unsigned char* r = mmap(NULL, c->size, PROT_READ, MAP_SHARED, c->ro, 0);
    CHILD_EXPECT(3, r != MAP_FAILED && r[0] == 'i');

    /* What the read-only description refuses. */
    errno = 0;
    CHILD_EXPECT(4,
                 mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, c->ro, 0) == MAP_FAILED &&
                     errno == EACCES);
    errno = 0;
    CHILD_EXPECT(5, mprotect(r, c->size, PROT_READ | PROT_WRITE) == -1 && errno == EACCES);
    errno = 0;
    CHILD_EXPECT(6, reopen(c->ro, O_RDWR) == -1 && errno == EACCES);
    errno = 0;
    CHILD_EXPECT(7, reopen(c->ro, O_WRONLY) == -1 && errno == EACCES);
    /* Mode 0400 gives other uids nothing: not even a new read-only description. */
    errno = 0;
    CHILD_EXPECT(8, reopen(c->ro, O_RDONLY) == -1 && errno == EACCES);
    /* And the mode cannot be undone by a process that does not own the file. */
    errno = 0;
    CHILD_EXPECT(9, fchmod(c->ro, 0666) == -1 && errno == EPERM);

    /* The read-write description cannot be reopened for writing either (the mode)... */
    errno = 0;
    CHILD_EXPECT(10, reopen(c->rw, O_RDWR) == -1 && errno == EACCES);
    errno = 0;
    CHILD_EXPECT(11, fchmod(c->rw, 0666) == -1 && errno == EPERM);
    /* ...but whoever holds it can write through it: the right lives in the description. */
    unsigned char* w = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, c->rw, 0);
    CHILD_EXPECT(12, w != MAP_FAILED);
    w[1] = 'O';
    CHILD_EXPECT(13, r[1] == 'O');

    /* Control for 6-8 and 10: /proc/self/fd reopening itself works for this uid. */
    int again = reopen(c->control, O_RDWR);
    CHILD_EXPECT(14, again >= 0);
    close(again);

    munmap(w, c->size);
    munmap(r, c->size);
    return 0;
}

/*
 * The deployment case of docs/zircon-iob.md L: iobd owns the memfd (mode 0400), the client runs under
 * another uid. Root bypasses file modes (CAP_DAC_OVERRIDE), so a root test proves nothing
 * about the mode; the checks therefore run in a forked child that dropped to nobody (no gRPC
 * in this process, so fork is fine). Skipped when not root.
 */
static void test_readonly_other_uid(void** state) {
    (void)state;
    if (geteuid() != 0) {
        print_message("needs root to switch to uid %d\n", (int)IOB_TEST_NOBODY_UID);
        skip();
    }
    uid_case_t c = {.size = 2 * P4K};
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_4K, c.size, "iob-test-uid", &region), ZX_OK);
    assert_int_equal(pwrite(region.fd, "iob", 4, 0), 4);
    assert_int_equal(iob_region_open_readonly(&region, &c.ro), ZX_OK);
    c.rw = region.fd;
    c.control = memfd_create("iob-test-control", MFD_CLOEXEC);
    assert_true(c.control >= 0);
    assert_int_equal(fchmod(c.control, 0666), 0);

    int result = iob_test_run_as(IOB_TEST_NOBODY_UID, IOB_TEST_NOGROUP_GID, child_other_uid, &c);
    close(c.control);
    close(c.ro);
    char byte = 0;
    assert_int_equal(pread(region.fd, &byte, 1, 1), 1);
    iob_region_destroy(&region);
    if (result == IOB_TEST_SKIP) {
        print_message("could not switch to uid %d\n", (int)IOB_TEST_NOBODY_UID);
        skip();
    }
    if (result != 0) {
        fail_msg("child under uid %d: check %d failed", (int)IOB_TEST_NOBODY_UID, result);
    }
    assert_int_equal(byte, 'O'); /* the child's write through the RW description landed */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_up_4k),
        cmocka_unit_test(test_round_up_2m),
        cmocka_unit_test(test_round_up_1g),
        cmocka_unit_test(test_round_up_bad_page_size),
        cmocka_unit_test(test_backing_names),
        cmocka_unit_test(test_backing_choose_without_pool),
        cmocka_unit_test(test_pool_read_4k_invalid),
        cmocka_unit_test(test_status_from_errno),
        cmocka_unit_test(test_create_sealed_zeroed),
        cmocka_unit_test(test_create_size_zero),
        cmocka_unit_test(test_create_invalid),
        cmocka_unit_test(test_create_fault_paths),
        cmocka_unit_test(test_create_fallocate_eintr_retried),
        cmocka_unit_test(test_create_real_emfile),
        cmocka_unit_test(test_create_never_stdio_fd),
        cmocka_unit_test(test_destroy_zeroed_and_twice),
        cmocka_unit_test(test_readonly_same_process),
        cmocka_unit_test(test_readonly_invalid_and_faults),
        cmocka_unit_test(test_readonly_other_uid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
