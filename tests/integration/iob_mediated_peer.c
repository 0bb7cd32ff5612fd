/* SPDX-License-Identifier: MIT */
/*
 * Writer process of the mediated-ring integration tests (started with posix_spawn: gRPC is
 * not fork-safe). It imports an endpoint from a token and writes records with zx_iob_writev:
 *
 * The first argument is the transport of the mediated calls: "broker" (the default path)
 * or "grpc" (the broker only maps; see test_mediated_ring.c).
 *
 *   iob_mediated_peer MODE writev TOKEN COUNT   COUNT records (mediated_record_fill), retrying
 *                                          on ZX_ERR_NO_SPACE until the reader makes room;
 *                                          prints "ready", then "done <no_space retries>"
 *   iob_mediated_peer MODE hang TOKEN           one record, prints "ready", then sleeps until
 *                                          killed (the PEER_CLOSED test)
 *
 * Exit status 0 on success, 2 on usage errors, 3 on an unexpected status (printed).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "mediated_records.h"

static zx_status_t write_record(zx_handle_t ep, uint64_t seq) {
    uint8_t payload[MEDIATED_RECORD_MAX];
    size_t len = mediated_record_fill(seq, payload);
    /* Three vectors, one of them empty, so the record is gathered from pieces. */
    size_t a = len / 3;
    zx_iovec_t v[3] = {{payload, a}, {NULL, 0}, {payload + a, len - a}};
    return zx_iob_writev(ep, 0, 0, v, 3);
}

int main(int argc, char** argv) {
    /* A test that fails midway cannot kill its helper: it goes with the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 4) {
        fprintf(stderr, "usage: %s broker|grpc writev TOKEN COUNT | hang TOKEN\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "grpc") == 0) {
        iob__session_t* s;
        if (iob__session_get(&s) != ZX_OK) {
            return 3;
        }
        s->broker_no_mediated = true; /* before any other thread exists */
        iob__session_put(s);
    }
    argc--;
    argv++;
    zx_handle_t ep = ZX_HANDLE_INVALID;
    zx_status_t st = iob_handle_import(argv[2], &ep);
    if (st != ZX_OK) {
        printf("import: %d\n", st);
        return 3;
    }
    if (strcmp(argv[1], "hang") == 0) {
        st = write_record(ep, 0);
        printf("ready %d\n", st);
        fflush(stdout);
        for (;;) {
            pause();
        }
    }
    if (strcmp(argv[1], "writev") != 0 || argc < 4) {
        return 2;
    }
    uint64_t count = strtoull(argv[3], NULL, 10);
    printf("ready\n");
    fflush(stdout);
    uint64_t no_space = 0;
    for (uint64_t seq = 0; seq < count; seq++) {
        for (;;) {
            st = write_record(ep, seq);
            if (st != ZX_ERR_NO_SPACE) {
                break;
            }
            /* The ring is full until the reader advances tail. */
            no_space++;
            struct timespec ts = {0, 200 * 1000};
            nanosleep(&ts, NULL);
        }
        if (st != ZX_OK) {
            printf("writev %llu: %d\n", (unsigned long long)seq, st);
            return 3;
        }
    }
    printf("done %llu\n", (unsigned long long)no_space);
    fflush(stdout);
    zx_handle_close(ep);
    return 0;
}
