/* SPDX-License-Identifier: MIT */
/*
 * iob_hostile_peer: a client that destroys memory of regions it may write, started by
 * test_hostile_memory with posix_spawn (gRPC is not fork-safe). It makes its own IOBs,
 * has iobd touch them once, punches a hole where iobd will touch next and, on hugepage
 * backing, takes the freed page back out of the pool with more IOBs through iobd, so
 * that iobd's next access there faults. Then it has iobd touch the hole:
 *
 *   idalloc   zx_iob_allocate_id on an ID-allocator region (hole made with MADV_REMOVE
 *             in a writable mapping of it)
 *   writev    zx_iob_writev into a mediated ring on a shared region (hole made with
 *             fallocate PUNCH_HOLE on the writable fd the map broker hands out)
 *   region    ReadRegion and WriteRegion over gRPC, on a region iobd had read before the
 *             hole and on one it had not (its view is made after the hole)
 *   shmem     (4 KiB backing) the same hole in shmem: iobd reads zeros there and the
 *             rest intact; ftruncate and F_ADD_SEALS on the writable fd fail (sealed)
 *
 * It prints "status S1 S2 ..." (the zx_status_t of each access to the hole) and, for
 * shmem, "ok", then waits to be killed with everything still open.
 * Exit 2: usage; 3..: a step that should have worked did not (message on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "shm/region.h"
#include "test_regions.h"

#define FAIL(code, ...)                           \
    do {                                          \
        fprintf(stderr, "hostile: " __VA_ARGS__); \
        fputc('\n', stderr);                      \
        exit(code);                               \
    } while (0)

#define CHECK(code, st, what)                                              \
    do {                                                                   \
        zx_status_t check_st_ = (st);                                      \
        if (check_st_ != ZX_OK) {                                          \
            FAIL(code, "%s: %s", (what), zx_status_get_string(check_st_)); \
        }                                                                  \
    } while (0)

static uint64_t g_page;

static iob__session_t* session(void) {
    iob__session_t* s = NULL;
    CHECK(3, iob__session_get(&s), "session");
    return s;
}

/* The writable fd of region 0 of the endpoint, as the map broker hands it to a writer. */
static int writable_fd(zx_handle_t ep, uint64_t len) {
    iob__session_t* s = session();
    iob__grant_t g = {.fd = -1};
    CHECK(4, iob__broker_map(s, ep, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, len, false, &g),
          "writable grant");
    iob__session_put(s);
    if (!g.writable) {
        FAIL(5, "the grant is not writable");
    }
    return g.fd;
}

static void punch(int fd, uint64_t offset, uint64_t len) {
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) != 0) {
        FAIL(6, "punch hole: %s", strerror(errno));
    }
}

/*
 * Takes every free 2 MiB page out of the pool with IOBs through iobd (kept open), so the
 * hole cannot be filled again; fails unless the pool ends up empty.
 */
static void drain_pool(void) {
    iob_hugepage_pool_t pool;
    CHECK(7, iob_hugepage_pool_read(IOB_BACKING_2M, &pool), "pool");
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_PRIVATE;
    r.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE;
    zx_handle_t ep0, ep1;
    if (pool.free > 1) {
        r.size = (pool.free - 1) * g_page;
        CHECK(8, zx_iob_create(0, &r, 1, &ep0, &ep1), "filler IOB");
    }
    r.size = g_page;
    zx_status_t st = ZX_OK;
    for (int i = 0; i < 64 && st == ZX_OK; i++) {
        st = zx_iob_create(0, &r, 1, &ep0, &ep1);
    }
    CHECK(9, iob_hugepage_pool_read(IOB_BACKING_2M, &pool), "pool");
    if (st != ZX_ERR_NO_MEMORY || pool.free != 0) {
        FAIL(10, "pool not drained: last create %s, %llu pages free", zx_status_get_string(st),
             (unsigned long long)pool.free);
    }
}

static int attack_idalloc(void) {
    zx_iob_region_t r = test_private_region(g_page, ZX_IOB_ACCESS_EP0_CAN_MAP_READ |
                                                        ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                                                        ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE);
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    zx_handle_t ep0, ep1;
    CHECK(11, zx_iob_create(0, &r, 1, &ep0, &ep1), "ID allocator IOB");
    uint32_t id = 0;
    const char blob[] = "a blob";
    CHECK(12, zx_iob_allocate_id(ep1, 0, 0, blob, sizeof blob, &id), "first allocate_id");
    zx_vaddr_t a = 0;
    CHECK(13,
          zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, ep0, 0, 0,
                          g_page, &a),
          "writable map");
    if (madvise((void*)a, g_page, MADV_REMOVE) != 0) {
        FAIL(14, "MADV_REMOVE: %s", strerror(errno));
    }
    drain_pool();
    zx_status_t first = zx_iob_allocate_id(ep1, 0, 0, blob, sizeof blob, &id);
    zx_status_t again = zx_iob_allocate_id(ep1, 0, 0, blob, sizeof blob, &id);
    printf("status %d %d\n", first, again);
    return 0;
}

static int attack_writev(void) {
    zx_handle_t shared;
    CHECK(15, zx_iob_create_shared_region(0, 2 * g_page, &shared), "shared region");
    zx_handle_t ep0, ep1;
    CHECK(16, ring_iob_create(shared, 7, &ep0, &ep1), "ring IOB");
    char msg[64] = "a record";
    zx_iovec_t v = {.buffer = msg, .capacity = sizeof msg};
    CHECK(17, zx_iob_writev(ep1, 0, 0, &v, 1), "first writev");
    int fd = writable_fd(ep0, 2 * g_page);
    /* Both pages: the header page and the data page the next record goes to. */
    punch(fd, 0, 2 * g_page);
    drain_pool();
    zx_status_t first = zx_iob_writev(ep1, 0, 0, &v, 1);
    zx_status_t again = zx_iob_writev(ep1, 0, 0, &v, 1);
    printf("status %d %d\n", first, again);
    return 0;
}

static zx_handle_t plain_iob(uint64_t size) {
    zx_iob_region_t r =
        test_private_region(size, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE);
    zx_handle_t ep0, ep1;
    CHECK(18, zx_iob_create(0, &r, 1, &ep0, &ep1), "IOB");
    return ep0;
}

static int attack_region(void) {
    iob__session_t* s = session();
    uint8_t buf[256];
    memset(buf, 0x5A, sizeof buf);
    zx_handle_t served = plain_iob(g_page);
    zx_handle_t fresh = plain_iob(g_page);
    CHECK(19, iob_conn_region_write(s->conn, served, 0, 0, buf, sizeof buf), "first write");
    CHECK(20, iob_conn_region_read(s->conn, served, 0, 0, buf, sizeof buf), "first read");
    int fd_served = writable_fd(served, g_page);
    int fd_fresh = writable_fd(fresh, g_page);
    punch(fd_served, 0, g_page);
    punch(fd_fresh, 0, g_page);
    drain_pool();
    zx_status_t st[4] = {
        iob_conn_region_read(s->conn, served, 0, 100, buf, sizeof buf),
        iob_conn_region_write(s->conn, served, 0, 100, buf, sizeof buf),
        iob_conn_region_read(s->conn, fresh, 0, 0, buf, sizeof buf),
        iob_conn_region_write(s->conn, fresh, 0, 0, buf, sizeof buf),
    };
    printf("status %d %d %d %d\n", st[0], st[1], st[2], st[3]);
    iob__session_put(s);
    return 0;
}

static int attack_shmem(void) {
    iob__session_t* s = session();
    enum { PAGES = 4 };
    zx_handle_t ep = plain_iob(PAGES * g_page);
    uint8_t* pattern = malloc(PAGES * g_page);
    uint8_t* back = malloc(PAGES * g_page);
    if (pattern == NULL || back == NULL) {
        FAIL(21, "malloc");
    }
    memset(pattern, 0xC3, PAGES * g_page);
    CHECK(22, iob_conn_region_write(s->conn, ep, 0, 0, pattern, PAGES * g_page), "write");
    CHECK(23, iob_conn_region_read(s->conn, ep, 0, 0, back, PAGES * g_page), "read");
    int fd = writable_fd(ep, PAGES * g_page);
    punch(fd, g_page, g_page);
    zx_status_t st = iob_conn_region_read(s->conn, ep, 0, 0, back, PAGES * g_page);
    CHECK(24, st, "read after the hole");
    for (uint64_t i = 0; i < PAGES * g_page; i++) {
        uint8_t want = i >= g_page && i < 2 * g_page ? 0 : 0xC3;
        if (back[i] != want) {
            FAIL(25, "byte %llu is 0x%x, not 0x%x", (unsigned long long)i, back[i], want);
        }
    }
    /* Writing into the hole fills it again. */
    CHECK(26, iob_conn_region_write(s->conn, ep, 0, g_page, pattern, g_page), "refill");
    if (ftruncate(fd, 0) == 0 || ftruncate(fd, (off_t)(PAGES + 1) * (off_t)g_page) == 0) {
        FAIL(27, "ftruncate of a region succeeded");
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) == 0) {
        FAIL(28, "a new seal was accepted");
    }
    printf("status %d\nok\n", st);
    iob__session_put(s);
    free(pattern);
    free(back);
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s idalloc|writev|region|shmem\n", argv[0]);
        return 2;
    }
    /* Never outlive the test, whatever way it ends: it waits for nothing else from us. */
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
        return 2;
    }
    g_page = zx_system_get_page_size();
    int rc;
    if (strcmp(argv[1], "idalloc") == 0) {
        rc = attack_idalloc();
    } else if (strcmp(argv[1], "writev") == 0) {
        rc = attack_writev();
    } else if (strcmp(argv[1], "region") == 0) {
        rc = attack_region();
    } else if (strcmp(argv[1], "shmem") == 0) {
        rc = attack_shmem();
    } else {
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    /* Everything stays open until the test kills this process, as a crashed client's would. */
    for (;;) {
        pause();
    }
    return rc;
}
