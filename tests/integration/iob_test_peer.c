/* SPDX-License-Identifier: MIT */
/*
 * iob_test_peer: the second process of the map integration tests, started with
 * posix_spawn (never fork: gRPC is not fork-safe). It drops to `nobody` first when asked,
 * before anything touches gRPC, then imports a token and does one job:
 *
 *   [--drop] read   TOKEN REGION OFFSET TEXT   map read-only, expect TEXT at OFFSET
 *   [--drop] write  TOKEN REGION OFFSET TEXT   map read-write, write TEXT at OFFSET
 *   [--drop] multi  TOKEN TEXT                 several partial mappings of region 0, each
 *                                               must see TEXT at offset 0 of page 1
 *   [--drop] hold   TOKEN MAP                  map region 0 when MAP is 1, print "ready",
 *                                               then wait to be killed
 *   [--drop] rights TOKEN RIGHTS               the imported handle has exactly RIGHTS (hex)
 *   [--drop] ro     TOKEN                      region 0 is readable only, region 1 not
 *                                               mappable: every way to write must fail
 *   [--drop] events TOKEN                      print "ready", then expect a PEER_CLOSED
 *                                               session event for the imported handle
 *                                               within 10 s (the importer's event index
 *                                               knows the handle, whichever way it came)
 *            explicit TARGET                   iob_client_connect / iob_client_close, then
 *                                               the implicit connection takes over
 * Exit 0: as expected; 2: usage; 3..: the failing check (message on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "test_regions.h"

#define FAIL(code, ...)                       \
    do {                                      \
        fprintf(stderr, "peer: " __VA_ARGS__); \
        fputc('\n', stderr);                  \
        exit(code);                           \
    } while (0)

static zx_handle_t import_or_die(const char* token) {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_status_t st = iob_handle_import(token, &h);
    if (st != ZX_OK) {
        FAIL(3, "import: %s", zx_status_get_string(st));
    }
    return h;
}

static zx_vaddr_t map_or_die(zx_vm_option_t options, zx_handle_t h, uint32_t region,
                             uint64_t offset, size_t len) {
    zx_vaddr_t a = 0;
    zx_status_t st = zx_vmar_map_iob(zx_vmar_root_self(), options, 0, h, region, offset, len, &a);
    if (st != ZX_OK) {
        FAIL(4, "map region %u at %llu: %s", region, (unsigned long long)offset,
             zx_status_get_string(st));
    }
    return a;
}

/* The read-only checks of docs/zircon-iob.md L, made by the kernel, in a process under another uid. */
static int ro_checks(zx_handle_t h) {
    uint64_t pg = zx_system_get_page_size();
    zx_vaddr_t a = map_or_die(ZX_VM_PERM_READ, h, 0, 0, pg);
    volatile char c = *(volatile char*)a;
    (void)c;
    zx_vaddr_t b = 0;
    zx_status_t st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, h,
                                     0, 0, pg, &b);
    if (st != ZX_ERR_ACCESS_DENIED) {
        FAIL(5, "writable map: %s", zx_status_get_string(st));
    }
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, h, 1, 0, pg, &b);
    if (st != ZX_ERR_ACCESS_DENIED) {
        FAIL(6, "map of a region ep1 may not map: %s", zx_status_get_string(st));
    }
    if (mprotect((void*)a, pg, PROT_READ | PROT_WRITE) == 0) {
        FAIL(7, "mprotect to writable succeeded");
    }
    /* Ask the broker for the raw fd, as a hostile client would, and try to write through it. */
    iob__session_t* s;
    if (iob__session_get(&s) != ZX_OK) {
        FAIL(8, "session");
    }
    iob__grant_t g = {.fd = -1};
    st = iob__broker_map(s, h, ZX_VM_PERM_READ, 0, 0, pg, false, &g);
    if (st != ZX_OK) {
        FAIL(9, "raw grant: %s", zx_status_get_string(st));
    }
    if (g.writable || (fcntl(g.fd, F_GETFL) & O_ACCMODE) != O_RDONLY) {
        FAIL(10, "read-only grant is writable");
    }
    if (mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, g.fd, 0) != MAP_FAILED) {
        FAIL(11, "mmap(PROT_WRITE, MAP_SHARED) of the read-only fd succeeded");
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g.fd);
    int w = open(path, O_RDWR);
    if (w >= 0) {
        FAIL(12, "reopening the fd for writing succeeded");
    }
    if (fchmod(g.fd, 0600) == 0) {
        FAIL(13, "fchmod of the memfd succeeded");
    }
    void* r = mmap(NULL, pg, PROT_READ, MAP_SHARED, g.fd, 0);
    if (r == MAP_FAILED || mprotect(r, pg, PROT_READ | PROT_WRITE) == 0) {
        FAIL(14, "read mapping of the raw fd: mmap failed or mprotect to writable succeeded");
    }
    close(g.fd);
    iob__broker_unmap(s, g.mapping_id);
    iob__session_put(s);
    return 0;
}

static zx_status_t create_one(zx_handle_t* ep0, zx_handle_t* ep1) {
    zx_iob_region_t r =
        test_private_region(1, ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE);
    return zx_iob_create(0, &r, 1, ep0, ep1);
}

static int explicit_connection(const char* target) {
    iob_client_t* c = NULL;
    zx_status_t st = iob_client_connect(target, &c);
    if (st != ZX_OK) {
        FAIL(30, "connect %s: %s", target, zx_status_get_string(st));
    }
    iob_client_t* again = NULL;
    if (iob_client_connect(target, &again) != ZX_ERR_ALREADY_BOUND || iob_client_session_id(c) == 0) {
        FAIL(31, "second connect or session id");
    }
    zx_handle_t ep0;
    zx_handle_t ep1;
    if (create_one(&ep0, &ep1) != ZX_OK) {
        FAIL(32, "create on the explicit connection");
    }
    zx_vaddr_t a = 0;
    if (zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, ep0, 0, 0,
                        zx_system_get_page_size(), &a) != ZX_OK) {
        FAIL(33, "map on the explicit connection");
    }
    uint64_t old_session = iob_client_session_id(c);
    iob_client_close(c);
    /* The mapping stays usable; the handles are gone with the session. */
    ((volatile char*)a)[0] = 1;
    zx_info_handle_basic_t info;
    st = zx_object_get_info(ep0, ZX_INFO_HANDLE_BASIC, &info, sizeof info, NULL, NULL);
    if (st != ZX_ERR_BAD_HANDLE) {
        FAIL(34, "old handle after close: %s", zx_status_get_string(st));
    }
    /* The next call opened a fresh implicit session. */
    if (create_one(&ep0, &ep1) != ZX_OK) {
        FAIL(35, "create after close");
    }
    (void)old_session;
    return zx_vmar_unmap(zx_vmar_root_self(), a, zx_system_get_page_size()) == ZX_OK ? 0 : 36;
}

int main(int argc, char** argv) {
    int i = 1;
    if (i < argc && strcmp(argv[i], "--drop") == 0) {
        /* Before any gRPC: the whole process, threads included, is `nobody` from here. */
        if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
            setresuid(65534, 65534, 65534) != 0) {
            FAIL(2, "cannot drop privileges: %s", strerror(errno));
        }
        i++;
    }
    /* After the uid change, which clears it: a test that fails midway takes its peer along. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc - i == 2 && strcmp(argv[i], "explicit") == 0) {
        return explicit_connection(argv[i + 1]);
    }
    if (argc - i < 2) {
        FAIL(2, "usage: iob_test_peer [--drop] CMD TOKEN ...");
    }
    const char* cmd = argv[i];
    if (strcmp(cmd, "events") == 0 && iob_signal_fd() < 0) {
        /* Before the import: the session must open with its event stream on. */
        FAIL(2, "iob_signal_fd failed");
    }
    zx_handle_t h = import_or_die(argv[i + 1]);
    char** rest = &argv[i + 2];
    int nrest = argc - i - 2;
    uint64_t pg = zx_system_get_page_size();

    if (strcmp(cmd, "read") == 0 && nrest == 3) {
        uint32_t region = (uint32_t)strtoul(rest[0], NULL, 0);
        uint64_t off = strtoull(rest[1], NULL, 0);
        uint64_t page_off = off & ~(pg - 1);
        zx_vaddr_t a = map_or_die(ZX_VM_PERM_READ, h, region, page_off, pg);
        if (strcmp((const char*)a + (off - page_off), rest[2]) != 0) {
            FAIL(20, "read \"%.32s\", expected \"%s\"", (const char*)a + (off - page_off), rest[2]);
        }
        return 0;
    }
    if (strcmp(cmd, "write") == 0 && nrest == 3) {
        uint32_t region = (uint32_t)strtoul(rest[0], NULL, 0);
        uint64_t off = strtoull(rest[1], NULL, 0);
        uint64_t page_off = off & ~(pg - 1);
        zx_vaddr_t a = map_or_die(ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, h, region, page_off, pg);
        strcpy((char*)a + (off - page_off), rest[2]);
        return 0;
    }
    if (strcmp(cmd, "multi") == 0 && nrest == 1) {
        zx_vaddr_t whole = map_or_die(ZX_VM_PERM_READ, h, 0, 0, 2 * pg);
        zx_vaddr_t second = map_or_die(ZX_VM_PERM_READ, h, 0, pg, pg);
        zx_vaddr_t again = map_or_die(ZX_VM_PERM_READ, h, 0, pg, pg);
        if (strcmp((const char*)whole + pg, rest[0]) != 0 ||
            strcmp((const char*)second, rest[0]) != 0 || strcmp((const char*)again, rest[0]) != 0) {
            FAIL(21, "partial mappings disagree");
        }
        if (zx_vmar_unmap(zx_vmar_root_self(), whole, pg) != ZX_OK ||
            strcmp((const char*)second, rest[0]) != 0) {
            FAIL(22, "unmapping one mapping affected another");
        }
        return 0;
    }
    if (strcmp(cmd, "hold") == 0 && nrest == 1) {
        if (atoi(rest[0]) != 0) {
            map_or_die(ZX_VM_PERM_READ, h, 0, 0, pg);
        }
        printf("ready\n");
        fflush(stdout);
        for (;;) {
            pause();
        }
    }
    if (strcmp(cmd, "events") == 0 && nrest == 0) {
        printf("ready\n");
        fflush(stdout);
        zx_time_t deadline = zx_deadline_after(ZX_SEC(10));
        iob_signal_event_t ev[16];
        while (zx_clock_get_monotonic() < deadline) {
            size_t n = iob_signal_read(ev, 16);
            for (size_t k = 0; k < n; k++) {
                if (ev[k].handle == h && (ev[k].signals & ZX_IOB_PEER_CLOSED) != 0) {
                    return 0;
                }
            }
            if (n == 0) {
                struct pollfd p = {.fd = iob_signal_fd(), .events = POLLIN};
                poll(&p, 1, 10);
            }
        }
        FAIL(25, "no PEER_CLOSED event for the imported handle 0x%x", h);
    }
    if (strcmp(cmd, "rights") == 0 && nrest == 1) {
        zx_info_handle_basic_t info;
        zx_status_t st = zx_object_get_info(h, ZX_INFO_HANDLE_BASIC, &info, sizeof info, NULL, NULL);
        zx_rights_t want = (zx_rights_t)strtoul(rest[0], NULL, 16);
        if (st != ZX_OK || info.rights != want) {
            FAIL(23, "rights 0x%x, expected 0x%x (%s)", info.rights, want,
                 zx_status_get_string(st));
        }
        return 0;
    }
    if (strcmp(cmd, "ro") == 0 && nrest == 0) {
        return ro_checks(h);
    }
    FAIL(2, "unknown command %s", cmd);
}
