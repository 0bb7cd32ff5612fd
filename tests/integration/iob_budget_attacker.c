/* SPDX-License-Identifier: MIT */
/*
 * iob_budget_attacker: a hostile client of test_budget_attacks, started with posix_spawn
 * (its own process and session, as a real attacker would be). Each job asks iobd to hold
 * more and more until it is refused, then reports one line on stdout and exits:
 *
 *   tib            one zx_iob_create of 64 private regions of 1 TiB each
 *                  -> "status NAME"
 *   tokens MAX     zx_handle_duplicate + iob_handle_export in a loop, never importing
 *                  -> "refused OP NAME COUNT" or "unrefused COUNT" after MAX pairs
 *   maps MAX       map-broker MAP of one page in a loop, never UNMAP (the fds are closed
 *                  at once: only iobd's mapping records pile up)
 *                  -> "refused map NAME COUNT" or "unrefused COUNT" after MAX
 *   replace N      one IOB, then zx_handle_replace of its endpoint N times (many rounds of a
 *                  small handle value space: iobd must reuse the values it freed)
 *                  -> "refused replace NAME COUNT" or "replaced N"
 *   big SIZE N     zx_iob_create of one private region of SIZE bytes, then close, N times
 *                  (one big region at a time)
 *                  -> "refused create NAME COUNT" or "created N"
 * Exit 0 when the job ran (whatever iobd answered); 2: usage; 3: set-up failed.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "test_regions.h"

#define ATK_TIB (UINT64_C(1) << 40)

#define ATK_EP0_RW (ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE)

static zx_status_t one_page_iob(zx_handle_t* ep0, zx_handle_t* ep1) {
    zx_iob_region_t r = test_private_region(zx_system_get_page_size(),
                                            ATK_EP0_RW | ZX_IOB_ACCESS_EP1_CAN_MAP_READ);
    return zx_iob_create(0, &r, 1, ep0, ep1);
}

/* An attacker that could not even start its attack: exit code 3. */
static int setup_failed(const char* what, zx_status_t st) {
    fprintf(stderr, "attacker: %s: %s\n", what, zx_status_get_string(st));
    return 3;
}

/* Reports the budget's refusal of the n-th op, if st is one. */
static bool refused(const char* op, zx_status_t st, unsigned long n) {
    if (st == ZX_OK) {
        return false;
    }
    printf("refused %s %s %lu\n", op, zx_status_get_string(st), n);
    return true;
}

static int job_tib(void) {
    zx_iob_region_t r[64];
    for (int i = 0; i < 64; i++) {
        r[i] = test_private_region(ATK_TIB, ATK_EP0_RW);
    }
    zx_handle_t ep0 = ZX_HANDLE_INVALID, ep1 = ZX_HANDLE_INVALID;
    zx_status_t st = zx_iob_create(0, r, 64, &ep0, &ep1);
    printf("status %s\n", zx_status_get_string(st));
    return 0;
}

static int job_tokens(unsigned long max) {
    zx_handle_t ep0, ep1;
    zx_status_t st = one_page_iob(&ep0, &ep1);
    if (st != ZX_OK) {
        return setup_failed("create", st);
    }
    for (unsigned long n = 0; n < max; n++) {
        zx_handle_t dup;
        char token[IOB_TOKEN_SIZE];
        if (refused("duplicate", zx_handle_duplicate(ep0, ZX_RIGHT_SAME_RIGHTS, &dup), n) ||
            refused("export", iob_handle_export(dup, token), n)) {
            return 0;
        }
    }
    printf("unrefused %lu\n", max);
    return 0;
}

static int job_maps(unsigned long max) {
    zx_handle_t ep0, ep1;
    zx_status_t st = one_page_iob(&ep0, &ep1);
    iob__session_t* session = NULL;
    if (st != ZX_OK || (st = iob__session_get(&session)) != ZX_OK) {
        return setup_failed("set-up", st);
    }
    uint64_t page = zx_system_get_page_size();
    for (unsigned long n = 0; n < max; n++) {
        iob__grant_t g;
        st = iob__broker_map(session, ep0, ZX_VM_PERM_READ, 0, 0, page, false, &g);
        if (refused("map", st, n)) {
            iob__session_put(session);
            return 0;
        }
        close(g.fd); /* the record stays in iobd: no UNMAP */
    }
    printf("unrefused %lu\n", max);
    iob__session_put(session);
    return 0;
}

static int job_replace(unsigned long max) {
    zx_handle_t ep0, ep1;
    zx_status_t st = one_page_iob(&ep0, &ep1);
    if (st != ZX_OK) {
        return setup_failed("create", st);
    }
    for (unsigned long n = 0; n < max; n++) {
        zx_handle_t next;
        if (refused("replace", zx_handle_replace(ep0, ZX_RIGHT_SAME_RIGHTS, &next), n)) {
            return 0;
        }
        ep0 = next;
    }
    printf("replaced %lu\n", max);
    return 0;
}

static int job_big(uint64_t size, unsigned long max) {
    zx_iob_region_t r = test_private_region(size, ATK_EP0_RW);
    for (unsigned long n = 0; n < max; n++) {
        zx_handle_t ep0, ep1;
        if (refused("create", zx_iob_create(0, &r, 1, &ep0, &ep1), n)) {
            return 0;
        }
        /* Closed before the next: the attack is the allocation's time, not its total. */
        zx_handle_close(ep0);
        zx_handle_close(ep1);
    }
    printf("created %lu\n", max);
    return 0;
}

int main(int argc, char** argv) {
    /* A test that fails midway cannot kill its helper: it goes with the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "tib") == 0) {
        return job_tib();
    }
    if (argc == 3 && strcmp(argv[1], "tokens") == 0) {
        return job_tokens(strtoul(argv[2], NULL, 10));
    }
    if (argc == 3 && strcmp(argv[1], "maps") == 0) {
        return job_maps(strtoul(argv[2], NULL, 10));
    }
    if (argc == 3 && strcmp(argv[1], "replace") == 0) {
        return job_replace(strtoul(argv[2], NULL, 10));
    }
    if (argc == 4 && strcmp(argv[1], "big") == 0) {
        return job_big(strtoull(argv[2], NULL, 10), strtoul(argv[3], NULL, 10));
    }
    fprintf(stderr,
            "usage: iob_budget_attacker tib | tokens MAX | maps MAX | replace N | "
            "big SIZE N\n");
    return 2;
}
