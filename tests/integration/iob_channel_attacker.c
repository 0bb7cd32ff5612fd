/* SPDX-License-Identifier: MIT */
/*
 * A hostile writer of the mediated request channel (test_mediated_channel.c starts it with
 * posix_spawn). It imports a writer endpoint, asks the broker for its channel directly
 * (iob__broker_channel: libiob's own calls would use the channel politely) and attacks it
 * until killed:
 *
 *   iob_channel_attacker scribble TOKEN   random words and absurd lengths over its request
 *                                         area, a new seq each time, doorbell rung
 *   iob_channel_attacker half TOKEN       a request that claims 60000 bytes with only the
 *                                         first half written, published, then sleeps
 *   iob_channel_attacker stall TOKEN      half a request written, never published, sleeps
 *   iob_channel_attacker punch TOKEN      punches holes in its submission memfd and the
 *                                         doorbell while publishing; first tries what it may
 *                                         not do and prints "denied N" (how many of the 7
 *                                         forbidden operations failed)
 *   iob_channel_attacker doorbell TOKEN   scribbles on the shared doorbell and wakes it
 *   iob_channel_attacker flood TOKEN      valid requests, one per seq, never waiting for an
 *                                         answer
 *
 * It prints "ready" once the attack runs. Exit 3 on a setup failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "shm/mediated_channel.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

typedef struct chan {
    int fds[3];
    iob_mchan_sub_t* sub;
    unsigned char* msg;
    const iob_mchan_comp_t* comp;
    _Atomic uint32_t* bell;
} chan_t;

static void publish(chan_t* c) {
    atomic_fetch_add(&c->sub->seq, 1);
    atomic_fetch_add(c->bell, 1);
    iob_mchan_futex_wake(c->bell);
}

/* A valid one-vector WRITEV of len bytes on handle h. */
static void valid_writev(chan_t* c, zx_handle_t h, uint32_t len) {
    iob_broker_writev_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_WRITEV, (uint32_t)(sizeof req + len), 0);
    req.layout = IOB_BROKER_MEDIATED_LAYOUT;
    req.handle = h;
    req.num_vectors = 1;
    req.vector_count = 1;
    req.vecs[0].capacity = len;
    req.vecs[0].flags = IOB_BROKER_VEC_READABLE;
    memcpy(c->msg, &req, sizeof req);
    memset(c->msg + sizeof req, 0xa7, len);
}

/* The seven things the channel must not allow; how many failed as they should. */
static int try_forbidden(chan_t* c) {
    int denied = 0;
    void* p = mmap(NULL, IOB_MCHAN_COMP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, c->fds[1], 0);
    denied += p == MAP_FAILED;
    if (p != MAP_FAILED) {
        munmap(p, IOB_MCHAN_COMP_SIZE);
    }
    denied += mprotect((void*)(uintptr_t)c->comp, IOB_MCHAN_COMP_SIZE, PROT_READ | PROT_WRITE) != 0;
    uint32_t forged = 7;
    denied += pwrite(c->fds[1], &forged, sizeof forged, 0) < 0;
    denied += fallocate(c->fds[1], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                        IOB_MCHAN_COMP_SIZE) != 0;
    denied += ftruncate(c->fds[0], 4096) != 0;
    denied += ftruncate(c->fds[2], 0) != 0;
    /* The shared doorbell: a seal would keep every later process from mapping it. */
    denied += fcntl(c->fds[2], F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0;
    return denied;
}

int main(int argc, char** argv) {
    /* A test that fails midway cannot kill its helper: it goes with the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODE TOKEN\n", argv[0]);
        return 2;
    }
    const char* mode = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);
    zx_handle_t ep = ZX_HANDLE_INVALID;
    if (iob_handle_import(argv[2], &ep) != ZX_OK) {
        return 3;
    }
    iob__session_t* s;
    if (iob__session_get(&s) != ZX_OK) {
        return 3;
    }
    chan_t c;
    uint64_t gen = 0;
    if (iob__broker_channel(s, c.fds, &gen) != ZX_OK) {
        printf("no channel\n");
        return 3;
    }
    c.sub = mmap(NULL, IOB_MCHAN_SUB_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, c.fds[0], 0);
    c.comp = mmap(NULL, IOB_MCHAN_COMP_SIZE, PROT_READ, MAP_SHARED, c.fds[1], 0);
    c.bell = mmap(NULL, IOB_MCHAN_DOORBELL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, c.fds[2], 0);
    if (c.sub == MAP_FAILED || c.comp == MAP_FAILED || c.bell == MAP_FAILED) {
        return 3;
    }
    c.msg = (unsigned char*)c.sub + IOB_MCHAN_MSG_OFFSET;

    if (strcmp(mode, "half") == 0 || strcmp(mode, "stall") == 0) {
        valid_writev(&c, ep, 60000);
        /* Only the first half of the payload: the rest is whatever was there (zeros). */
        memset(c.msg + sizeof(iob_broker_writev_req_t) + 30000, 0, 30000);
        if (strcmp(mode, "half") == 0) {
            publish(&c);
        }
        printf("ready\n");
        for (;;) {
            pause();
        }
    }
    if (strcmp(mode, "punch") == 0) {
        printf("denied %d\n", try_forbidden(&c));
    }
    for (uint64_t i = 0;; i++) {
        if (strcmp(mode, "scribble") == 0) {
            uint64_t* w = (uint64_t*)(void*)c.msg;
            size_t words = (rnd() % 64) + 1;
            for (size_t k = 0; k < words; k++) {
                w[rnd() % 32] = rnd();
            }
            iob_broker_hdr_t* hdr = (iob_broker_hdr_t*)(void*)c.msg;
            switch (rnd() % 4) {
            case 0:
                hdr->size = (uint32_t)rnd(); /* absurd */
                break;
            case 1:
                hdr->size = IOB_BROKER_MAX_MEDIATED_MSG; /* the whole area, random inside */
                hdr->version = IOB_BROKER_WIRE_VERSION;
                hdr->type = rnd() % 2 ? IOB_BROKER_WRITEV : IOB_BROKER_WRITEV_PACKED;
                break;
            case 2:
                valid_writev(&c, ep, (uint32_t)(rnd() % 128));
                ((iob_broker_writev_req_t*)(void*)c.msg)->vecs[0].capacity = rnd();
                break;
            default:
                break;
            }
            atomic_store(&c.sub->seq, (uint32_t)rnd());
            atomic_store(&c.sub->writer_waiting, (uint32_t)rnd());
            atomic_fetch_add(c.bell, 1);
            iob_mchan_futex_wake(c.bell);
        } else if (strcmp(mode, "punch") == 0) {
            valid_writev(&c, ep, 64);
            publish(&c);
            fallocate(c.fds[0], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, IOB_MCHAN_SUB_SIZE);
            madvise(c.sub, IOB_MCHAN_SUB_SIZE, MADV_REMOVE);
            fallocate(c.fds[2], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                      IOB_MCHAN_DOORBELL_SIZE);
        } else if (strcmp(mode, "doorbell") == 0) {
            atomic_store(c.bell, (uint32_t)rnd());
            iob_mchan_futex_wake(c.bell);
        } else if (strcmp(mode, "flood") == 0) {
            valid_writev(&c, ep, 64);
            publish(&c);
        } else {
            return 2;
        }
        if (i == 1000) {
            printf("ready\n");
        }
    }
}
