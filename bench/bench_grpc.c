/* SPDX-License-Identifier: MIT */
/*
 * The grpc transport: the baseline of moving every payload through iobd's RPCs instead of
 * mapping, i.e. what a client that cannot map (a remote one, or one that chose not to)
 * pays per message. A byte-stream transport for bench_run.c (send/recv per message).
 *
 * What "streamed through iobd's region-write RPC" means here, and why:
 *  - The producer creates an IOB with one region (ep0 read-write, ep1 read-only) and hands
 *    ep1 to the consumer with iob_conn_handle_export/import, as iob-ring does.
 *  - Each message is one WriteRegion call (client streaming; iob_conn_region_write, which
 *    cuts payloads above the server's chunk size into several stream messages) into the
 *    next slot of the region, used as a ring of msg-sized slots.
 *  - The consumer reads each message back with one ReadRegion call (server streaming;
 *    iob_conn_region_read) into its private buffer and verifies sequence and checksum
 *    there, like every stream transport. Both copies cross gRPC, so the payload path is
 *    producer -> gRPC -> iobd -> gRPC -> consumer, the RPC counterpart of pipe's
 *    producer -> kernel -> consumer. Reading through the consumer's own mapping instead
 *    would hide half of the RPC cost behind shared memory.
 *  - Notification and flow control are not what is measured, so they take the cheapest
 *    honest route over a Unix socketpair: one byte per message from the producer ("the
 *    next slot is written"), and one byte per quarter of the slots back from the consumer
 *    ("that many more slots are read"), with at most as many messages in flight as the
 *    region has slots. That costs a few microseconds against the tens of microseconds of
 *    each RPC; doing it with iobd's signals (zx_object_signal_peer plus a WaitOne stream)
 *    would add two more RPCs per message and measure signalling, not payload transfer.
 *    Acknowledgements are batched because every byte sent alone costs an skb of a few
 *    hundred bytes of socket buffer: one per message, a producer running ahead on its
 *    credits left a few hundred unread and the consumer blocked writing the next one while
 *    the producer blocked writing notifications (a deadlock seen in the demo). Batched,
 *    at most about four are ever unread, so the consumer never blocks on them.
 * The region is spec->ring_bytes rounded to the server's page, the same footprint as the
 * rings. Rows are labelled with the backing of the server used (4K for the private one).
 * prepare (no gRPC) is bench_iobd.c's; this file is part of the iob-bench-iob module.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/rpc/iob_conn.h"

typedef struct grpc_end {
    iob_conn_t* conn;
    zx_handle_t ep;
    int fd;            /* the socketpair: notifications one way, acknowledgements the other */
    uint64_t slot;     /* bytes per slot */
    uint64_t nslots;
    uint64_t ack_every; /* messages per acknowledgement byte */
    uint64_t done;     /* messages sent (producer) or read (consumer) */
    uint64_t peer;     /* acknowledgements (producer) or notifications (consumer) seen */
} grpc_end_t;

static ssize_t write_nosignal(int fd, const void* p, size_t len) {
    return send(fd, p, len, MSG_NOSIGNAL);
}

static zx_status_t full_io(int fd, void* buf, size_t len, bool out) {
    unsigned char* p = buf;
    while (len > 0) {
        /* MSG_NOSIGNAL: a peer that has gone is a status, not a SIGPIPE. */
        ssize_t n = out ? write_nosignal(fd, p, len) : read(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return ZX_ERR_PEER_CLOSED;
        }
        p += n;
        len -= (size_t)n;
    }
    return ZX_OK;
}

/* Waits until the peer has said at least `want` bytes' worth in total; takes all there is. */
static zx_status_t wait_peer(grpc_end_t* g, uint64_t want) {
    unsigned char buf[256];
    while (g->peer < want) {
        ssize_t n = read(g->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return ZX_ERR_PEER_CLOSED;
        }
        g->peer += (uint64_t)n;
    }
    return ZX_OK;
}

zx_status_t bench_grpc_module_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                   const char* arg, bench_endpoint_t* ep) {
    if (nfds != 1 || arg == NULL || strcmp(arg, "-") == 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    grpc_end_t* g = calloc(1, sizeof(*g));
    if (g == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    g->fd = BENCH_FD_BASE;
    g->ep = ZX_HANDLE_INVALID;
    ep->priv = g;
    char token[IOB_CONN_TOKEN_SIZE];
    memset(token, 0, sizeof(token));
    /* Both connect at once; the consumer then waits for the token. */
    iob_conn_options_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.target = arg;
    zx_status_t st = iob_conn_open(&opts, &g->conn);
    if (st == ZX_OK && role == BENCH_CONSUMER) {
        st = full_io(g->fd, token, sizeof(token), false);
        token[sizeof(token) - 1] = '\0';
    }
    if (st != ZX_OK) {
        return st;
    }
    uint64_t size;
    if (role == BENCH_PRODUCER) {
        uint64_t page = iob_conn_session(g->conn)->page_size;
        size = (spec->ring_bytes + page - 1) / page * page;
        zx_iob_region_t region;
        memset(&region, 0, sizeof(region));
        region.type = ZX_IOB_REGION_TYPE_PRIVATE;
        region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                        ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
        region.size = size;
        region.discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
        zx_handle_t ep1 = ZX_HANDLE_INVALID;
        st = iob_conn_iob_create(g->conn, 0, &region, 1, &g->ep, &ep1);
        if (st == ZX_OK) {
            st = iob_conn_handle_export(g->conn, ep1, token);
            if (st != ZX_OK) {
                iob_conn_handle_close(g->conn, ep1);
            }
        }
        if (st == ZX_OK) {
            st = full_io(g->fd, token, sizeof(token), true);
        }
    } else {
        st = iob_conn_handle_import(g->conn, token, &g->ep);
        zx_iob_region_info_t info;
        size_t actual = 0;
        size_t avail = 0;
        if (st == ZX_OK) {
            st = iob_conn_get_info(g->conn, g->ep, ZX_INFO_IOB_REGIONS, &info, sizeof(info),
                                   &actual, &avail);
        }
        if (st == ZX_OK && actual != 1) {
            st = ZX_ERR_BAD_STATE;
        }
        size = st == ZX_OK ? info.region.size : 0;
    }
    if (st != ZX_OK) {
        return st;
    }
    /* Slots on cache lines; the two sides compute the same layout from the same size. */
    g->slot = (spec->msg_bytes + 63) & ~UINT64_C(63);
    g->nslots = size / g->slot;
    g->ack_every = g->nslots / 4 > 0 ? g->nslots / 4 : 1;
    return g->nslots >= 2 ? ZX_OK : ZX_ERR_BUFFER_TOO_SMALL;
}

void bench_grpc_module_close(bench_endpoint_t* ep) {
    grpc_end_t* g = ep->priv;
    if (g == NULL) {
        return;
    }
    if (g->conn != NULL) {
        /* Ending the connection closes the session's handles; the peer sees PEER_CLOSED. */
        iob_conn_close(g->conn);
    }
    close(g->fd);
    free(g);
    ep->priv = NULL;
}

zx_status_t bench_grpc_module_send(bench_endpoint_t* ep, const void* buf, size_t len) {
    grpc_end_t* g = ep->priv;
    /* The slot about to be overwritten must have been read: nslots messages in flight. */
    zx_status_t st = ZX_OK;
    if (g->done >= g->nslots) {
        uint64_t need = g->done - g->nslots + 1; /* messages read, in acknowledgement bytes: */
        st = wait_peer(g, (need + g->ack_every - 1) / g->ack_every);
    }
    if (st == ZX_OK) {
        st = iob_conn_region_write(g->conn, g->ep, 0, (g->done % g->nslots) * g->slot, buf, len);
    }
    if (st == ZX_OK) {
        char c = 'w';
        st = full_io(g->fd, &c, 1, true);
    }
    g->done++;
    return st;
}

zx_status_t bench_grpc_module_recv(bench_endpoint_t* ep, void* buf, size_t len) {
    grpc_end_t* g = ep->priv;
    zx_status_t st = wait_peer(g, g->done + 1);
    if (st == ZX_OK) {
        st = iob_conn_region_read(g->conn, g->ep, 0, (g->done % g->nslots) * g->slot, buf, len);
    }
    g->done++;
    if (st == ZX_OK && g->done % g->ack_every == 0) {
        /* The producer may have exited after its last message: a lost acknowledgement
         * is harmless, it only ever frees slots. */
        char c = 'r';
        (void)full_io(g->fd, &c, 1, true);
    }
    return st;
}
