/* SPDX-License-Identifier: MIT */
/*
 * The C side of a ring shared with Python (test_python.py): shm/ring.h used directly, the
 * way a C program would, against a ring whose other side is the Python package.
 *
 *   ring_peer consume TOKEN   imports ep1 (the consumer's endpoint), maps the control region
 *                             read-write and the data region read-only, reads until the
 *                             producer closes, verifying every message's sequence number
 *                             and bytes; prints "received N messages B bytes".
 *   ring_peer produce TOKEN N imports ep0, maps both regions read-write, formats the ring,
 *                             writes N messages, closes; prints "sent N messages B bytes".
 *
 * Message i: 8 bytes of i (little-endian), then (i * 37) % 1000 bytes, byte k being
 * (i + k) & 0xff. Exit 0 on success, 1 on any error (said on stderr).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "shm/ring.h"

static size_t msg_len(uint64_t i) {
    return 8 + (size_t)((i * 37) % 1000);
}

static void msg_fill(uint64_t i, unsigned char* buf) {
    memcpy(buf, &i, 8);
    for (size_t k = 8; k < msg_len(i); k++) {
        buf[k] = (unsigned char)((i + k) & 0xff);
    }
}

static int fail(const char* what, zx_status_t st) {
    fprintf(stderr, "ring_peer: %s: %s\n", what, zx_status_get_string(st));
    return 1;
}

static zx_status_t map(zx_handle_t ep, uint32_t index, bool writable, uint64_t size, void** out) {
    zx_vaddr_t addr = 0;
    zx_vm_option_t opts = ZX_VM_PERM_READ | (writable ? ZX_VM_PERM_WRITE : 0);
    zx_status_t st = zx_vmar_map_iob(zx_vmar_root_self(), opts, 0, ep, index, 0, size, &addr);
    *out = (void*)addr;
    return st;
}

int main(int argc, char** argv) {
    if (argc < 3 || (strcmp(argv[1], "consume") != 0 && strcmp(argv[1], "produce") != 0) ||
        (strcmp(argv[1], "produce") == 0 && argc < 4)) {
        fprintf(stderr, "usage: ring_peer consume TOKEN | ring_peer produce TOKEN COUNT\n");
        return 1;
    }
    bool produce = strcmp(argv[1], "produce") == 0;
    zx_handle_t ep;
    zx_status_t st = iob_handle_import(argv[2], &ep);
    if (st != ZX_OK) {
        return fail("import", st);
    }
    zx_iob_region_info_t info[2];
    size_t actual = 0;
    st = zx_object_get_info(ep, ZX_INFO_IOB_REGIONS, info, sizeof(info), &actual, NULL);
    if (st != ZX_OK || actual != 2) {
        return fail("regions", st != ZX_OK ? st : ZX_ERR_BAD_STATE);
    }
    uint64_t ctrl_size = info[0].region.size, data_size = info[1].region.size;
    void *ctrl, *data;
    if ((st = map(ep, 0, true, ctrl_size, &ctrl)) != ZX_OK ||
        (st = map(ep, 1, produce, data_size, &data)) != ZX_OK) {
        return fail("map", st);
    }
    iob_ring_options_t opts = {.batch = 1, .wait = IOB_RING_WAIT_BLOCK};
    unsigned char* buf = malloc(2048);
    uint64_t n = 0, bytes = 0;
    zx_time_t deadline = zx_deadline_after(ZX_SEC(60));
    if (produce) {
        uint64_t count = strtoull(argv[3], NULL, 10);
        iob_ring_producer_t p;
        if ((st = iob_ring_format(ctrl, ctrl_size, data_size)) != ZX_OK ||
            (st = iob_ring_producer_init(&p, ctrl, ctrl_size, data, data_size, &opts)) != ZX_OK) {
            return fail("producer", st);
        }
        for (; n < count; n++) {
            msg_fill(n, buf);
            while ((st = iob_ring_write(&p, buf, msg_len(n))) == ZX_ERR_SHOULD_WAIT) {
                if ((st = iob_ring_producer_wait(&p, msg_len(n), deadline)) != ZX_OK) {
                    return fail("wait for space", st);
                }
            }
            if (st != ZX_OK) {
                return fail("write", st);
            }
            bytes += msg_len(n);
        }
        iob_ring_producer_close(&p);
        iob_ring_producer_fini(&p);
        printf("sent %" PRIu64 " messages %" PRIu64 " bytes\n", n, bytes);
    } else {
        iob_ring_consumer_t c;
        while ((st = iob_ring_consumer_init(&c, ctrl, ctrl_size, data, data_size, &opts)) ==
                   ZX_ERR_SHOULD_WAIT &&
               zx_clock_get_monotonic() < deadline) {
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL); /* until the producer formats */
        }
        if (st != ZX_OK) {
            return fail("consumer", st);
        }
        unsigned char* want = malloc(2048);
        for (;;) {
            size_t len = 0;
            st = iob_ring_read(&c, buf, 2048, &len);
            if (st == ZX_ERR_SHOULD_WAIT) {
                if ((st = iob_ring_consumer_wait(&c, deadline)) != ZX_OK) {
                    return fail("wait for data", st);
                }
                continue;
            }
            if (st == ZX_ERR_PEER_CLOSED) {
                break;
            }
            if (st != ZX_OK) {
                return fail("read", st);
            }
            msg_fill(n, want);
            if (len != msg_len(n) || memcmp(buf, want, len) != 0) {
                uint64_t seq = 0;
                memcpy(&seq, buf, len >= 8 ? 8 : len);
                fprintf(stderr, "ring_peer: message %" PRIu64 ": %zu bytes, sequence %" PRIu64
                        ", expected %zu bytes of message %" PRIu64 "\n", n, len, seq, msg_len(n), n);
                return 1;
            }
            n++;
            bytes += len;
        }
        iob_ring_consumer_close(&c);
        iob_ring_consumer_fini(&c);
        free(want);
        printf("received %" PRIu64 " messages %" PRIu64 " bytes\n", n, bytes);
    }
    free(buf);
    zx_handle_close(ep);
    return 0;
}
