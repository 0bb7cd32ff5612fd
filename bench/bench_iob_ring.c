/* SPDX-License-Identifier: MIT */
/*
 * The iob-ring transport: the same ring as bare-ring, with its two regions obtained through
 * iobd exactly as users obtain them. THIS IS THE SEAM for the iobd/libiob work.
 *
 * What goes here once libiob exists (everything else in the benchmark stays as it is):
 *
 *  prepare (orchestrator, once per trial)
 *    Nothing that touches gRPC: the orchestrator may later fork-free spawn children, but
 *    keeping gRPC out of it is simplest. Put into ch->arg[BENCH_PRODUCER] whatever the
 *    producer needs to reach iobd (e.g. the socket path), and give the consumer one end of
 *    a Unix socketpair (ch->fds[BENCH_CONSUMER][0], and the other end to the producer as
 *    ch->fds[BENCH_PRODUCER][0]) over which the producer will hand over the endpoint.
 *
 *  open (child; role BENCH_PRODUCER is ep0, BENCH_CONSUMER is ep1)
 *    producer: connect to iobd, zx_iob_create with two regions
 *              region 0 "ctrl": ring control, ep0 and ep1 map read-write,
 *                       size >= IOB_RING_CTRL_SIZE (one page of the server's backing);
 *              region 1 "data": ep0 maps read-write, ep1 maps read-only,
 *                       size spec->ring_bytes (already a multiple of the backing page);
 *              map both (zx_vmar_map), iob_ring_format(ctrl, ctrl_size, data_size),
 *              then transfer ep1 to the consumer over the socketpair.
 *    consumer: connect to iobd, receive/import ep1, map region 0 read-write and region 1
 *              read-only.
 *    Both: fill ep->ctrl/ctrl_size/data/data_size from the sizes the mapping calls
 *    reported (never from the shared header); bench_run.c then runs the ring loop
 *    unchanged. If the client library hands out region fds instead of mapping for us,
 *    bench_ring_map(role, ctrl_fd, data_fd, ep) does the mapping exactly as for bare-ring.
 *    The producer must not start its clock before the consumer has mapped: that is already
 *    handled by the ready pipe (the consumer signals after open returns).
 *
 *  close: unmap, close the handles, drop the connection (the peer sees PEER_CLOSED).
 *
 * Until then prepare reports ZX_ERR_NOT_SUPPORTED and the iob-ring rows are printed as
 * skipped with the note below.
 */
#include <stdio.h>

#include "bench/bench.h"

zx_status_t bench_iob_ring_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                   size_t note_len) {
    (void)spec;
    (void)ch;
    snprintf(note, note_len, "iobd/libiob path not built into iob-bench yet");
    return ZX_ERR_NOT_SUPPORTED;
}

void bench_iob_ring_discard(bench_channel_t* ch) {
    (void)ch;
}

zx_status_t bench_iob_ring_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                const char* arg, bench_endpoint_t* ep) {
    (void)spec;
    (void)role;
    (void)nfds;
    (void)arg;
    (void)ep;
    return ZX_ERR_NOT_SUPPORTED;
}

void bench_iob_ring_close(bench_endpoint_t* ep) {
    bench_ring_unmap(ep);
}
