/* SPDX-License-Identifier: MIT */
/*
 * The iob-ring transport: the same ring as bare-ring, with its two regions obtained through
 * iobd exactly as users obtain them, through libiob's Zircon API. bench_run.c runs the very
 * same ring loop on them; only prepare/open/close differ from bare-ring. This file is part
 * of the iob-bench-iob module (see bench.h), so only iob-ring children load libiob.
 *
 *  prepare (orchestrator, once per trial; bench_iobd.c, no gRPC)
 *    picks the iobd that serves the row's backing, puts its target into both roles'
 *    argument and gives the two roles the ends of a Unix socketpair (fds[role][0]), over
 *    which the producer hands the consumer its endpoint.
 *
 *  open (child; BENCH_PRODUCER holds ep0, BENCH_CONSUMER ep1)
 *    producer: iob_client_connect(target), then zx_iob_create with two private regions,
 *              sized in the server's pages (zx_system_get_page_size()):
 *                region 0 "ctrl": ep0 and ep1 map read-write, one page;
 *                region 1 "data": ep0 maps read-write, ep1 read-only, spec->ring_bytes;
 *              maps both (zx_vmar_map_iob, ZX_VM_MAP_RANGE pre-faults as bare-ring's
 *              MAP_POPULATE does), iob_ring_format, iob_handle_export(ep1) and writes the
 *              token to the socketpair.
 *    consumer: reads the token, iob_client_connect(target), iob_handle_import, learns the
 *              region sizes from ZX_INFO_IOB_REGIONS (the server's word, never the shared
 *              header), maps ctrl read-write and data READ-ONLY. That the read-only
 *              mapping is enforced is checked once per open: asking for a writable data
 *              mapping must fail with ZX_ERR_ACCESS_DENIED.
 *    The producer's clock starts only after the consumer has mapped (the ready pipe).
 *
 *  close: zx_vmar_unmap both, zx_handle_close, iob_client_close (the peer sees
 *  ZX_IOB_PEER_CLOSED once this process's mappings are gone too).
 *
 * The explicit iob_client_connect (rather than the implicit $IOB_SERVER connection) is
 * because the orchestrator may run two servers at once, one per backing: the target comes
 * with the trial, and a server that is down is reported at open, not at the first zx_*.
 * The page-size check catches a server whose backing is not the row's label.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "bench/bench.h"
#include "shm/ring.h"

typedef struct iob_ring_end {
    iob_client_t* client;
    zx_handle_t ep;
} iob_ring_end_t;

zx_status_t bench_token_io(int fd, char* token, bool out) {
    size_t done = 0;
    while (done < IOB_TOKEN_SIZE) {
        /* MSG_NOSIGNAL: a consumer that has gone is a status, not a SIGPIPE. */
        ssize_t n = out ? send(fd, token + done, IOB_TOKEN_SIZE - done, MSG_NOSIGNAL)
                         : read(fd, token + done, IOB_TOKEN_SIZE - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return ZX_ERR_PEER_CLOSED;
        }
        done += (size_t)n;
    }
    token[IOB_TOKEN_SIZE - 1] = '\0';
    return ZX_OK;
}

static zx_status_t map_region(zx_handle_t ep, uint32_t index, bool writable, uint64_t size,
                              void** out) {
    zx_vaddr_t addr = 0;
    zx_vm_option_t opts = ZX_VM_PERM_READ | ZX_VM_MAP_RANGE | (writable ? ZX_VM_PERM_WRITE : 0);
    zx_status_t st = zx_vmar_map_iob(zx_vmar_root_self(), opts, 0, ep, index, 0, (size_t)size,
                                     &addr);
    *out = st == ZX_OK ? (void*)addr : NULL;
    return st;
}

static zx_status_t producer_open(const bench_spec_t* spec, iob_ring_end_t* end,
                                 bench_endpoint_t* ep, int fd) {
    uint64_t page = zx_system_get_page_size();
    if (page != iob_backing_page_size(spec->backing)) {
        return ZX_ERR_BAD_STATE; /* the server's backing is not the row's */
    }
    ep->ctrl_size = page >= IOB_RING_CTRL_SIZE ? page : IOB_RING_CTRL_SIZE;
    ep->data_size = (spec->ring_bytes + page - 1) / page * page;
    zx_iob_region_t regions[2];
    memset(regions, 0, sizeof(regions));
    regions[0].type = ZX_IOB_REGION_TYPE_PRIVATE;
    regions[0].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                        ZX_IOB_ACCESS_EP1_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE;
    regions[0].size = ep->ctrl_size;
    regions[0].discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
    regions[1] = regions[0];
    regions[1].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                        ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    regions[1].size = ep->data_size;
    zx_handle_t ep1 = ZX_HANDLE_INVALID;
    /* The previous trial's IOB goes when iobd has seen both its sessions end, which may be
     * just after this one starts: with hugepages that can be the whole pool, so wait for
     * it a little before calling the pool empty (the row is then skipped, not failed). */
    zx_status_t st;
    for (int tries = 0; (st = zx_iob_create(0, regions, 2, &end->ep, &ep1)) == ZX_ERR_NO_MEMORY &&
                        tries < 50;
         tries++) {
        usleep(10000);
    }
    if (st != ZX_OK) {
        return st;
    }
    st = map_region(end->ep, 0, true, ep->ctrl_size, &ep->ctrl);
    if (st == ZX_OK) {
        st = map_region(end->ep, 1, true, ep->data_size, &ep->data);
    }
    if (st == ZX_OK) {
        st = iob_ring_format(ep->ctrl, ep->ctrl_size, ep->data_size);
    }
    char token[IOB_TOKEN_SIZE];
    memset(token, 0, sizeof(token));
    if (st == ZX_OK) {
        st = iob_handle_export(ep1, token); /* consumes ep1 */
        if (st == ZX_OK) {
            ep1 = ZX_HANDLE_INVALID;
            st = bench_token_io(fd, token, true);
        }
    }
    if (ep1 != ZX_HANDLE_INVALID) {
        zx_handle_close(ep1);
    }
    return st;
}

static zx_status_t consumer_open(const bench_spec_t* spec, iob_ring_end_t* end,
                                 bench_endpoint_t* ep, const char* token) {
    zx_status_t st = iob_handle_import(token, &end->ep);
    if (st != ZX_OK) {
        return st;
    }
    if (zx_system_get_page_size() != iob_backing_page_size(spec->backing)) {
        return ZX_ERR_BAD_STATE;
    }
    zx_iob_region_info_t info[2];
    size_t actual = 0;
    size_t avail = 0;
    st = zx_object_get_info(end->ep, ZX_INFO_IOB_REGIONS, info, sizeof(info), &actual, &avail);
    if (st != ZX_OK) {
        return st;
    }
    if (actual != 2) {
        return ZX_ERR_BAD_STATE;
    }
    ep->ctrl_size = info[0].region.size;
    ep->data_size = info[1].region.size;
    /* The kernel, not our good manners, keeps the consumer from writing the data. */
    void* probe = NULL;
    st = map_region(end->ep, 1, true, ep->data_size, &probe);
    if (st != ZX_ERR_ACCESS_DENIED) {
        if (st == ZX_OK) {
            zx_vmar_unmap(zx_vmar_root_self(), (zx_vaddr_t)probe, ep->data_size);
        }
        return ZX_ERR_BAD_STATE;
    }
    st = map_region(end->ep, 0, true, ep->ctrl_size, &ep->ctrl);
    if (st == ZX_OK) {
        st = map_region(end->ep, 1, false, ep->data_size, &ep->data);
    }
    return st;
}

zx_status_t bench_iob_ring_module_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                       const char* arg, bench_endpoint_t* ep) {
    if (nfds != 1 || arg == NULL || strcmp(arg, "-") == 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob_ring_end_t* end = calloc(1, sizeof(*end));
    if (end == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    end->ep = ZX_HANDLE_INVALID;
    ep->priv = end;
    int fd = BENCH_FD_BASE;
    zx_status_t st;
    char token[IOB_TOKEN_SIZE];
    /* Both connect at once (the consumer before it waits for the token): connecting is
     * most of a trial's setup, and a producer that fails closes the socket anyway. */
    st = iob_client_connect(arg, &end->client);
    if (st == ZX_OK && role == BENCH_CONSUMER) {
        st = bench_token_io(fd, token, false);
    }
    if (st == ZX_OK) {
        st = role == BENCH_PRODUCER ? producer_open(spec, end, ep, fd)
                                    : consumer_open(spec, end, ep, token);
    }
    close(fd);
    if (st != ZX_OK) {
        bench_iob_ring_module_close(ep);
    }
    return st;
}

void bench_iob_ring_module_close(bench_endpoint_t* ep) {
    iob_ring_end_t* end = ep->priv;
    if (ep->ctrl != NULL) {
        zx_vmar_unmap(zx_vmar_root_self(), (zx_vaddr_t)ep->ctrl, ep->ctrl_size);
        ep->ctrl = NULL;
    }
    if (ep->data != NULL) {
        zx_vmar_unmap(zx_vmar_root_self(), (zx_vaddr_t)ep->data, ep->data_size);
        ep->data = NULL;
    }
    if (end == NULL) {
        return;
    }
    if (end->ep != ZX_HANDLE_INVALID) {
        zx_handle_close(end->ep);
    }
    iob_client_close(end->client);
    free(end);
    ep->priv = NULL;
}
