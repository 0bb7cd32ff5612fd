/* SPDX-License-Identifier: MIT */
/* iob_core_map / iob_core_unmap against docs/zircon-iob.md A.4 and A.12 (every error in its
 * order), the fds they hand out, and mediated region reads and writes. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core_fixture.h"
#include "test_util.h"

#define P FX_PAGE
#define R ZX_VM_PERM_READ
#define W ZX_VM_PERM_WRITE
#define X ZX_VM_PERM_EXECUTE
#define RO_BOTH (ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE | ZX_IOB_ACCESS_EP0_CAN_MAP_READ | \
                 ZX_IOB_ACCESS_EP1_CAN_MAP_READ)

static zx_status_t map(fx_t* f, zx_handle_t h, zx_vm_option_t options, uint32_t index,
                       uint64_t offset, uint64_t len) {
    iob_map_grant_t g;
    memset(&g, 0, sizeof g);
    zx_status_t status = iob_core_map(f->core, f->a, h, options, index, offset, len, &g);
    if (status == ZX_OK) {
        assert_int_equal(iob_core_unmap(f->core, f->a, g.mapping), ZX_OK);
    }
    return status;
}

static int access_mode(int fd) {
    int flags = fcntl(fd, F_GETFL);
    assert_true(flags >= 0);
    return flags & O_ACCMODE;
}

static void test_grant_writable(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, 2 * P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t g;
    assert_int_equal(iob_core_map(f->core, f->a, e0, R | W, 0, 0, 2 * P, &g), ZX_OK);
    assert_true(g.writable);
    assert_int_equal(g.region_size, 2 * P);
    zx_koid_t koid = fx_basic(f, f->a, e0).koid;
    assert_int_equal(g.iob_koid, koid);
    assert_int_equal(access_mode(g.fd), O_RDWR);
    assert_true(g.mapping.value != 0);
    /* The memfd is named after the IOB's koid and the region index. */
    char path[64], link[256], want[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g.fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    assert_true(n > 0);
    link[n] = '\0';
    snprintf(want, sizeof want, "/memfd:iob-%" PRIu64 "-r0", koid);
    assert_true(strncmp(link, want, strlen(want)) == 0);
    /* Zero-filled, and shared with what region_read sees. */
    unsigned char* p = mmap(NULL, 2 * P, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd, 0);
    assert_true(p != MAP_FAILED);
    for (uint64_t i = 0; i < 2 * P; i++) {
        assert_int_equal(p[i], 0);
    }
    memcpy(p + P, "via mmap", 8);
    char buf[8];
    assert_int_equal(iob_core_region_read(f->core, f->a, e1, 0, P, buf, 8), ZX_OK);
    assert_memory_equal(buf, "via mmap", 8);
    munmap(p, 2 * P);
    /* Even a mapping without PERM_WRITE gets the writable description (protect may upgrade). */
    iob_map_grant_t g2;
    assert_int_equal(iob_core_map(f->core, f->a, e0, R, 0, 0, P, &g2), ZX_OK);
    assert_true(g2.writable);
    assert_int_not_equal(g2.mapping.value, g.mapping.value);
    assert_int_equal(iob_core_unmap(f->core, f->a, g.mapping), ZX_OK);
    assert_int_equal(iob_core_unmap(f->core, f->a, g2.mapping), ZX_OK);
}

static void test_grant_read_only(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, nowrite;
    fx_create(f, P, RO_BOTH, &e0, &e1);
    iob_map_grant_t g, g2;
    assert_int_equal(iob_core_map(f->core, f->a, e1, R, 0, 0, P, &g), ZX_OK);
    assert_false(g.writable);
    assert_int_equal(access_mode(g.fd), O_RDONLY);
    /* The kernel refuses a shared writable mapping of it. */
    void* p = mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd, 0);
    assert_true(p == MAP_FAILED);
    assert_int_equal(errno, EACCES);
    /* Opened once per region. */
    assert_int_equal(iob_core_map(f->core, f->a, e1, R, 0, 0, P, &g2), ZX_OK);
    assert_int_equal(g2.fd, g.fd);
    /* A handle without WRITE on a writable endpoint also gets the read-only description. */
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0xF0EF & ~ZX_RIGHT_WRITE,
                                               &nowrite),
                     ZX_OK);
    iob_map_grant_t g3;
    assert_int_equal(iob_core_map(f->core, f->a, nowrite, R, 0, 0, P, &g3), ZX_OK);
    assert_false(g3.writable);
    assert_int_equal(g3.fd, g.fd);
    assert_int_equal(iob_core_unmap(f->core, f->a, g.mapping), ZX_OK);
    assert_int_equal(iob_core_unmap(f->core, f->a, g2.mapping), ZX_OK);
    assert_int_equal(iob_core_unmap(f->core, f->a, g3.mapping), ZX_OK);
}

static void test_bad_handle_and_index(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, nomap;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t g;
    assert_int_equal(iob_core_map(f->core, f->a, 0x80000003, R, 0, 0, P, &g), ZX_ERR_BAD_HANDLE);
    assert_int_equal(iob_core_map(f->core, f->b, e0, R, 0, 0, P, &g), ZX_ERR_BAD_HANDLE);
    assert_int_equal(map(f, e0, R, 1, 0, P), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R, UINT32_MAX, 0, P), ZX_ERR_OUT_OF_RANGE);
    /* The index comes before the rights. */
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0xF0EF & ~ZX_RIGHT_MAP, &nomap),
                     ZX_OK);
    assert_int_equal(map(f, nomap, R, 1, 0, P), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, nomap, R, 0, 0, P), ZX_ERR_ACCESS_DENIED);
}

static void test_map_right_first(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, nomap;
    /* ep1 has no map bits at all: its effective rights lack MAP. */
    fx_create(f, P, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE, &e0, &e1);
    assert_int_equal(map(f, e1, R, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e1, 0, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    /* Before the protection, flag and length checks. */
    assert_int_equal(map(f, e1, W, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e1, R | ZX_VM_CAN_MAP_READ, 0, 0, 0), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0xF0EF & ~ZX_RIGHT_MAP, &nomap),
                     ZX_OK);
    assert_int_equal(map(f, nomap, R, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, nomap, W, 0, 1, 0), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e0, R | W, 0, 0, P), ZX_OK);
}

static void test_protection_and_flag_errors(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, RO_BOTH, &e0, &e1); /* ep1 may only read */
    /* Invalid protection, before the permission check that would also fail. */
    assert_int_equal(map(f, e1, W, 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e1, X, 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e1, W | X, 0, 0, P), ZX_ERR_INVALID_ARGS);
    /* MAP_RANGE with SPECIFIC_OVERWRITE. */
    assert_int_equal(map(f, e1, R | ZX_VM_MAP_RANGE | ZX_VM_SPECIFIC_OVERWRITE, 0, 0, P),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e1, R | W | ZX_VM_MAP_RANGE | ZX_VM_SPECIFIC_OVERWRITE, 0, 0, P),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e1, R | ZX_VM_MAP_RANGE, 0, 0, P), ZX_OK);
    assert_int_equal(map(f, e1, R | ZX_VM_SPECIFIC_OVERWRITE, 0, 0, P), ZX_OK);
    /* CAN_MAP_READ/WRITE/EXECUTE from the caller: vmar_map_common, before the permissions. */
    static const zx_vm_option_t can_map[] = {ZX_VM_CAN_MAP_READ, ZX_VM_CAN_MAP_WRITE,
                                             ZX_VM_CAN_MAP_EXECUTE};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(map(f, e1, R | can_map[i], 0, 0, P), ZX_ERR_INVALID_ARGS);
        assert_int_equal(map(f, e1, R | W | can_map[i], 0, 0, P), ZX_ERR_INVALID_ARGS);
        assert_int_equal(map(f, e1, R | X | can_map[i], 0, 0, P), ZX_ERR_INVALID_ARGS);
    }
    /*
     * CAN_MAP_SPECIFIC is not among them: the VMAR refuses it for a mapping later
     * (CreateVmMapping's allowed flags), after the permissions.
     */
    assert_int_equal(map(f, e1, R | ZX_VM_CAN_MAP_SPECIFIC, 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e1, R | W | ZX_VM_CAN_MAP_SPECIFIC, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e1, R | X | ZX_VM_CAN_MAP_SPECIFIC, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e0, R | W | ZX_VM_CAN_MAP_SPECIFIC, 0, 0, P), ZX_ERR_INVALID_ARGS);
}

static void test_permission_errors(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1, noread, nowrite;
    fx_create(f, P, RO_BOTH, &e0, &e1);
    /* Endpoint access bits. */
    assert_int_equal(map(f, e1, R | W, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e1, R | W, 0, 0, 0), ZX_ERR_ACCESS_DENIED); /* before the length */
    assert_int_equal(map(f, e1, R | W, 0, 1, P), ZX_ERR_ACCESS_DENIED); /* and the alignment */
    assert_int_equal(map(f, e1, R | W | (1u << 16), 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e1, R, 0, 0, P), ZX_OK);
    assert_int_equal(map(f, e1, 0, 0, 0, P), ZX_OK);
    /* Handle rights. */
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0xF0EF & ~ZX_RIGHT_READ,
                                               &noread),
                     ZX_OK);
    assert_int_equal(map(f, noread, R, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e0, 0xF0EF & ~ZX_RIGHT_WRITE,
                                               &nowrite),
                     ZX_OK);
    assert_int_equal(map(f, nowrite, R | W, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, nowrite, R, 0, 0, P), ZX_OK);
    /* Execute is never granted, before the length. */
    assert_int_equal(map(f, e0, R | X, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e0, R | W | X, 0, 0, 0), ZX_ERR_ACCESS_DENIED);
    /* Read-if-XOM-unsupported means read here: refused where reading is. */
    assert_int_equal(map(f, noread, ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED, 0, 0, P),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e0, ZX_VM_PERM_READ_IF_XOM_UNSUPPORTED | W, 0, 0, P), ZX_OK);
    /* A write-only endpoint: mapping for read is refused. */
    zx_handle_t w0, w1;
    fx_create(f, P, ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE, &w0, &w1);
    assert_int_equal(map(f, w0, R, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, w0, 0, 0, 0, P), ZX_OK);
}

static void test_fault_beyond_stream_size(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    zx_vm_option_t fbss = ZX_VM_FAULT_BEYOND_STREAM_SIZE;
    zx_vm_option_t af = ZX_VM_ALLOW_FAULTS;
    assert_int_equal(map(f, e0, R | fbss, 0, 0, P), ZX_ERR_INVALID_ARGS);
    /* Without ALLOW_FAULTS it is refused before the length, the offset and the range... */
    assert_int_equal(map(f, e0, R | fbss, 0, UINT64_MAX - P + 1, 2 * P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | fbss, 0, 0, 2 * P), ZX_ERR_INVALID_ARGS);
    /*
     * ...and with it too: vmar_map_common refuses it for a VMO without a stream size (the
     * fix for b/504721827) before the VMAR parses options or looks at the range. A valid
     * request with it is refused, and it wins over an overflow, which alone would be
     * OUT_OF_RANGE.
     */
    assert_int_equal(map(f, e0, R | fbss | af, 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | fbss | af, 0, UINT64_MAX - P + 1, 2 * P),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | af, 0, UINT64_MAX - P + 1, 2 * P), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R | fbss | af, 0, 0, UINT64_MAX), ZX_ERR_INVALID_ARGS);
    assert_non_null(strstr(iob_core_error_detail(), "stream size"));
    assert_int_equal(map(f, e0, R | fbss | af | (1u << 16), 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_non_null(strstr(iob_core_error_detail(), "stream size"));
    /* But after the rights. */
    assert_int_equal(map(f, e0, R | X | fbss, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, e0, R | X | fbss | af, 0, UINT64_MAX - P + 1, 2 * P),
                     ZX_ERR_ACCESS_DENIED);
}

static void test_unknown_options_and_alignment(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(map(f, e0, R | (1u << 16), 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | (1u << 23), 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | (9u << ZX_VM_ALIGN_BASE), 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | (33u << ZX_VM_ALIGN_BASE), 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | (1u << ZX_VM_ALIGN_BASE), 0, 0, P), ZX_ERR_INVALID_ARGS);
    /* Unknown options before the length. */
    assert_int_equal(map(f, e0, R | (1u << 16), 0, 0, 0), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | ZX_VM_ALIGN_1KB, 0, 0, P), ZX_OK);
    assert_int_equal(map(f, e0, R | ZX_VM_ALIGN_4GB, 0, 0, P), ZX_OK);
    /* Options the client handles pass through the core. */
    assert_int_equal(map(f, e0, R | ZX_VM_SPECIFIC, 0, 0, P), ZX_OK);
    assert_int_equal(map(f, e0, R | ZX_VM_SPECIFIC_OVERWRITE | ZX_VM_OFFSET_IS_UPPER_LIMIT, 0, 0,
                         P),
                     ZX_OK);
    assert_int_equal(map(f, e0, R | ZX_VM_REQUIRE_NON_RESIZABLE | ZX_VM_ALLOW_FAULTS, 0, 0, P),
                     ZX_OK);
    assert_int_equal(map(f, e0, R | W | ZX_VM_MAP_RANGE, 0, 0, P), ZX_OK);
    /* COMPACT is a known option, but a mapping may not carry it (CreateVmMapping). */
    assert_int_equal(map(f, e0, R | ZX_VM_COMPACT, 0, 0, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | ZX_VM_COMPACT, 0, 0, 0), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | ZX_VM_COMPACT, 0, UINT64_MAX - P + 1, P), ZX_ERR_INVALID_ARGS);
    /* ...and that check comes after the permissions. */
    zx_handle_t r0, r1;
    fx_create(f, P, RO_BOTH, &r0, &r1);
    assert_int_equal(map(f, r1, R | W | ZX_VM_COMPACT, 0, 0, P), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, r1, R | ZX_VM_COMPACT, 0, 0, P), ZX_ERR_INVALID_ARGS);
}

/* Two step-7 errors at once: the option parsing comes before the range checks. */
static void test_options_before_range(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, 2 * P, FX_RW_BOTH, &e0, &e1);
    const uint64_t wrap = UINT64_MAX - P + 1; /* + one page overflows */
    /* Alone, each of these range errors is what it is... */
    assert_int_equal(map(f, e0, R, 0, wrap, P), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R, 0, 64 * P, P), ZX_ERR_BUFFER_TOO_SMALL);
    /* ...but unknown bits, bad alignments and mapping-only flags come first. */
    assert_int_equal(map(f, e0, R | (1u << 16), 0, wrap, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | (1u << 16), 0, 64 * P, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | (9u << ZX_VM_ALIGN_BASE), 0, wrap, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | (33u << ZX_VM_ALIGN_BASE), 0, 64 * P, P),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R | ZX_VM_CAN_MAP_SPECIFIC, 0, wrap, P), ZX_ERR_INVALID_ARGS);
    /* An unaligned offset comes before the overflow and the region's end. */
    assert_int_equal(map(f, e0, R, 0, UINT64_MAX, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R, 0, 64 * P + 1, P), ZX_ERR_INVALID_ARGS);
    /* A zero length comes before the region's end. */
    assert_int_equal(map(f, e0, R, 0, 64 * P, 0), ZX_ERR_INVALID_ARGS);
    /* The index comes before all of them. */
    assert_int_equal(map(f, e0, W, 1, 0, P), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R | ZX_VM_CAN_MAP_READ, 1, 0, P), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R | X, 1, 0, P), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R | (1u << 16), 1, 1, 0), ZX_ERR_OUT_OF_RANGE);
}

/* Only a real overflow is OUT_OF_RANGE; a huge length that fits in 64 bits is past the end. */
static void test_huge_length_is_past_the_end(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, 2 * P, FX_RW_BOTH, &e0, &e1);
    const uint64_t two63 = UINT64_C(1) << 63;
    assert_int_equal(map(f, e0, R, 0, 0, two63), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e0, R, 0, 0, two63 + 1), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e0, R, 0, 0, UINT64_MAX - P + 1), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e0, R, 0, P, UINT64_MAX - 2 * P + 1), ZX_ERR_BUFFER_TOO_SMALL);
    /* The rounding overflows, or the offset plus the rounded length does. */
    assert_int_equal(map(f, e0, R, 0, 0, UINT64_MAX - P + 2), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R, 0, P, UINT64_MAX - P + 1), ZX_ERR_OUT_OF_RANGE);
    /* With ALLOW_FAULTS the core has nothing against it (placement is the client's). */
    assert_int_equal(map(f, e0, R | ZX_VM_ALLOW_FAULTS, 0, 0, two63 + 1), ZX_OK);
}

/* The end that counts is the mapped region's own (rounded) size. */
static void test_past_the_end_per_region(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r[2] = {fx_region(P, FX_RW_BOTH), fx_region(2 * P + 1, FX_RW_BOTH)};
    zx_handle_t e0, e1;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, r, 2, &e0, &e1), ZX_OK);
    assert_int_equal(map(f, e0, R, 0, 0, P + 1), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e0, R, 0, P, 1), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e1, R, 1, 0, 3 * P), ZX_OK);
    assert_int_equal(map(f, e1, R, 1, 2 * P, P), ZX_OK);
    assert_int_equal(map(f, e1, R, 1, 2 * P, P + 1), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e1, R, 1, 3 * P, 1), ZX_ERR_BUFFER_TOO_SMALL);
    iob_map_grant_t g;
    assert_int_equal(iob_core_map(f->core, f->a, e1, R, 1, 0, 1, &g), ZX_OK);
    assert_int_equal(g.region_size, 3 * P);
    assert_int_equal(iob_core_unmap(f->core, f->a, g.mapping), ZX_OK);
}

static void test_length_and_offset(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, 2 * P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(map(f, e0, R, 0, 0, 0), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R, 0, 1, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R, 0, P - 1, P), ZX_ERR_INVALID_ARGS);
    assert_int_equal(map(f, e0, R, 0, P + 1, 0), ZX_ERR_INVALID_ARGS);
    /* Overflow: OUT_OF_RANGE, before the region-size check. */
    assert_int_equal(map(f, e0, R, 0, UINT64_MAX - P + 1, P), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R, 0, UINT64_MAX - P + 1, 1), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R, 0, 0, UINT64_MAX), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, e0, R | ZX_VM_ALLOW_FAULTS, 0, P, UINT64_MAX - P), ZX_ERR_OUT_OF_RANGE);
    /* Past the end: BUFFER_TOO_SMALL unless faults are allowed. */
    assert_int_equal(map(f, e0, R, 0, 0, 2 * P + 1), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e0, R, 0, P, P + 1), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e0, R, 0, 2 * P, 1), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e0, R, 0, 64 * P, P), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, e0, R | ZX_VM_ALLOW_FAULTS, 0, P, 2 * P), ZX_OK);
    /* Partial mappings at any page offset; lengths round up to pages. */
    assert_int_equal(map(f, e0, R, 0, 0, 1), ZX_OK);
    assert_int_equal(map(f, e0, R, 0, P, P), ZX_OK);
    assert_int_equal(map(f, e0, R, 0, P, 1), ZX_OK);
    assert_int_equal(map(f, e0, R, 0, 0, 2 * P), ZX_OK);
    /* A 0-byte region. */
    zx_handle_t z0, z1;
    fx_create(f, 0, FX_RW_BOTH, &z0, &z1);
    assert_int_equal(map(f, z0, R, 0, 0, P), ZX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(map(f, z0, R | ZX_VM_ALLOW_FAULTS, 0, 0, P), ZX_OK);
}

static void test_map_after_peer_closed_and_counts(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    assert_int_equal(iob_core_handle_close(f->core, f->a, e0), ZX_OK);
    iob_map_grant_t g[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(iob_core_map(f->core, f->a, e1, R | W, 0, 0, P, &g[i]), ZX_OK);
    }
    iob_core_iob_summary_t s;
    size_t n;
    assert_int_equal(iob_core_list(f->core, &s, 1, &n), ZX_OK);
    assert_int_equal(s.endpoints[1].mappings, 3);
    assert_int_equal(s.endpoints[0].mappings, 0);
    assert_int_equal(fx_stats(f).mappings, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(iob_core_unmap(f->core, f->a, g[i].mapping), ZX_OK);
    }
    assert_int_equal(fx_stats(f).mappings, 0);
}

static void test_unmap_errors(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    fx_create(f, P, FX_RW_BOTH, &e0, &e1);
    iob_map_grant_t g;
    assert_int_equal(iob_core_map(f->core, f->a, e0, R, 0, 0, P, &g), ZX_OK);
    assert_int_equal(iob_core_unmap(f->core, f->a, (iob_mapping_id_t){0}), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_core_unmap(f->core, f->a, (iob_mapping_id_t){g.mapping.value + 1}),
                     ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_core_unmap(f->core, f->b, g.mapping), ZX_ERR_NOT_FOUND);
    assert_int_equal(iob_core_unmap(f->core, f->a, g.mapping), ZX_OK);
    assert_int_equal(iob_core_unmap(f->core, f->a, g.mapping), ZX_ERR_NOT_FOUND);
}

static void test_region_read_write(void** state) {
    fx_t* f = *state;
    zx_iob_region_t r[2] = {fx_region(2 * P, FX_RW_BOTH), fx_region(P, RO_BOTH)};
    zx_handle_t e0, e1;
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, r, 2, &e0, &e1), ZX_OK);
    unsigned char buf[64];
    memset(buf, 0xFF, sizeof buf);
    assert_int_equal(iob_core_region_read(f->core, f->a, e1, 0, 2 * P - 64, buf, 64), ZX_OK);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(buf[i], 0);
    }
    assert_int_equal(iob_core_region_write(f->core, f->a, e0, 0, P - 3, "across", 6), ZX_OK);
    assert_int_equal(iob_core_region_read(f->core, f->a, e1, 0, P - 3, buf, 6), ZX_OK);
    assert_memory_equal(buf, "across", 6);
    assert_int_equal(iob_core_region_write(f->core, f->a, e0, 1, 0, "ep0", 3), ZX_OK);
    assert_int_equal(iob_core_region_read(f->core, f->a, e1, 1, 0, buf, 3), ZX_OK);
    assert_memory_equal(buf, "ep0", 3);
    /* Endpoint access bits: ep1 may only read region 1. */
    assert_int_equal(iob_core_region_write(f->core, f->a, e1, 1, 0, "x", 1),
                     ZX_ERR_ACCESS_DENIED);
    /* Range. */
    assert_int_equal(iob_core_region_read(f->core, f->a, e0, 0, 2 * P - 1, buf, 2),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_region_read(f->core, f->a, e0, 0, 2 * P + 1, buf, 0),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_region_read(f->core, f->a, e0, 0, UINT64_MAX, buf, 2),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_region_write(f->core, f->a, e0, 0, 1, buf, SIZE_MAX),
                     ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_region_read(f->core, f->a, e0, 0, 2 * P, buf, 0), ZX_OK);
    assert_int_equal(iob_core_region_read(f->core, f->a, e0, 2, 0, buf, 1), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(iob_core_region_read(f->core, f->b, e0, 0, 0, buf, 1), ZX_ERR_BAD_HANDLE);
    /* Handle rights, before the index; the index before the access bits. */
    zx_handle_t none;
    assert_int_equal(iob_core_handle_duplicate(f->core, f->a, e1,
                                               0xF0EF & ~(ZX_RIGHT_READ | ZX_RIGHT_WRITE), &none),
                     ZX_OK);
    assert_int_equal(iob_core_region_read(f->core, f->a, none, 0, 0, buf, 1),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_region_read(f->core, f->a, none, 9, 0, buf, 1),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_region_write(f->core, f->a, none, 0, 0, buf, 1),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_region_write(f->core, f->a, e1, 9, 0, buf, 1), ZX_ERR_OUT_OF_RANGE);
    /* Access bits before the range. */
    assert_int_equal(iob_core_region_write(f->core, f->a, e1, 1, UINT64_MAX, buf, 1),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_region_read(f->core, f->a, e0, 0, 0, NULL, 1), ZX_ERR_INVALID_ARGS);
}

static void test_region_access_bits_for_reading(void** state) {
    fx_t* f = *state;
    zx_handle_t e0, e1;
    /* ep1 may write but not read. */
    fx_create(f, P, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE, &e0, &e1);
    char buf[4];
    assert_int_equal(iob_core_region_write(f->core, f->a, e1, 0, 0, "abc", 3), ZX_OK);
    assert_int_equal(iob_core_region_read(f->core, f->a, e1, 0, 0, buf, 3), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_region_write(f->core, f->a, e0, 0, 0, "abc", 3),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(iob_core_region_read(f->core, f->a, e0, 0, 0, buf, 3), ZX_OK);
    assert_memory_equal(buf, "abc", 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
        T(test_grant_writable),
        T(test_grant_read_only),
        T(test_bad_handle_and_index),
        T(test_map_right_first),
        T(test_protection_and_flag_errors),
        T(test_permission_errors),
        T(test_fault_beyond_stream_size),
        T(test_unknown_options_and_alignment),
        T(test_options_before_range),
        T(test_huge_length_is_past_the_end),
        T(test_past_the_end_per_region),
        T(test_length_and_offset),
        T(test_map_after_peer_closed_and_counts),
        T(test_unmap_errors),
        T(test_region_read_write),
        T(test_region_access_bits_for_reading),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
