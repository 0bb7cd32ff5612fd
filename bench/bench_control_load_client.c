/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-control --load: one client process (role "load"; the run is described in
 * bench_control_load.c). It runs the lockstep iteration with its partner over the
 * SOCK_SEQPACKET pair at BCTL_FD_PEER and reports its counters and every non-OK status.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "bench/bench_control.h"
#include "bench/bench_control_load.h"

#define LOAD_PAGES 4
#define LOAD_REIMPORT_EVERY 8
/* A partner that has not answered in this long is gone (the whole run is under a minute). */
#define LOAD_PEER_TIMEOUT_MS 60000

enum { OP_CREATE, OP_MAP, OP_EXPORT, OP_IMPORT, OP_REIMPORT, OP_UNMAP, OP_CLOSE, OP_COUNT };
static const char* const k_op_names[OP_COUNT] = {"create",   "map",   "export", "import",
                                                 "reimport", "unmap", "close"};

const char* const bctl_load_counter_names[BCTL_LOAD_COUNT] = {
    "iters",    "creates",    "maps",  "writes",           "exports",           "imports",
    "verified", "mismatches", "acked", "reimport_refused", "reimport_accepted", "unmaps",
    "closes",   "errors"};

typedef struct load_msg {
    uint32_t seq;
    uint32_t more;      /* the sender wants another iteration */
    uint32_t has_token; /* token messages: the sender's IOB made it to an export */
    uint32_t verified;  /* acknowledgements: the receiver read the pattern back intact */
    uint64_t seed;
    char token[IOB_TOKEN_SIZE];
} load_msg_t;

typedef struct load_state {
    uint64_t c[BCTL_LOAD_COUNT];
    /* Non-OK statuses by operation: a few distinct ones at most, kept as a small table. */
    struct {
        int op;
        zx_status_t st;
        uint64_t n;
    } err[16];
    size_t nerr;
    uint64_t size;
    char fatal[200];
} load_state_t;

static void note_error(load_state_t* s, int op, zx_status_t st) {
    s->c[BCTL_LOAD_ERRORS]++;
    for (size_t i = 0; i < s->nerr; i++) {
        if (s->err[i].op == op && s->err[i].st == st) {
            s->err[i].n++;
            return;
        }
    }
    if (s->nerr < sizeof s->err / sizeof s->err[0]) {
        s->err[s->nerr].op = op;
        s->err[s->nerr].st = st;
        s->err[s->nerr].n = 1;
        s->nerr++;
    }
}

static uint64_t pattern_word(uint64_t seed, size_t i) {
    uint64_t x = seed + (uint64_t)i * UINT64_C(0x9e3779b97f4a7c15);
    x ^= x >> 31;
    return x * UINT64_C(0xbf58476d1ce4e5b9);
}

static bool peer_send(load_state_t* s, const load_msg_t* m) {
    for (;;) {
        ssize_t n = send(BCTL_FD_PEER, m, sizeof *m, MSG_NOSIGNAL);
        if (n == (ssize_t)sizeof *m) {
            return true;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        snprintf(s->fatal, sizeof s->fatal, "send to partner: %s",
                 n < 0 ? strerror(errno) : "short");
        return false;
    }
}

static bool peer_recv(load_state_t* s, load_msg_t* m) {
    struct pollfd p = {.fd = BCTL_FD_PEER, .events = POLLIN};
    int rc;
    do {
        rc = poll(&p, 1, LOAD_PEER_TIMEOUT_MS);
    } while (rc < 0 && errno == EINTR);
    if (rc <= 0) {
        snprintf(s->fatal, sizeof s->fatal, "partner silent for %d ms", LOAD_PEER_TIMEOUT_MS);
        return false;
    }
    ssize_t n;
    do {
        n = recv(BCTL_FD_PEER, m, sizeof *m, 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof *m) {
        snprintf(s->fatal, sizeof s->fatal, "partner gone (%s)",
                 n < 0    ? strerror(errno)
                 : n == 0 ? "closed"
                          : "short message");
        return false;
    }
    m->token[sizeof m->token - 1] = '\0';
    return true;
}

static bool unmap(load_state_t* s, zx_vaddr_t addr) {
    zx_status_t st = zx_vmar_unmap(zx_vmar_root_self(), addr, s->size);
    if (st != ZX_OK) {
        note_error(s, OP_UNMAP, st);
        return false;
    }
    s->c[BCTL_LOAD_UNMAPS]++;
    return true;
}

static void close_handle(load_state_t* s, zx_handle_t h) {
    zx_status_t st = zx_handle_close(h);
    if (st != ZX_OK) {
        note_error(s, OP_CLOSE, st);
    } else {
        s->c[BCTL_LOAD_CLOSES]++;
    }
}

/* The creator's half up to the export. On failure everything made so far is undone. */
static bool make_and_export(load_state_t* s, uint64_t seed, zx_handle_t* ep0_out,
                            zx_vaddr_t* addr_out, char token[IOB_TOKEN_SIZE]) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_PRIVATE;
    r.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
               ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    r.size = s->size;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
    zx_handle_t ep0;
    zx_handle_t ep1;
    zx_status_t st = zx_iob_create(0, &r, 1, &ep0, &ep1);
    if (st != ZX_OK) {
        note_error(s, OP_CREATE, st);
        return false;
    }
    s->c[BCTL_LOAD_CREATES]++;
    zx_vaddr_t addr = 0;
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, ep0, 0, 0,
                         s->size, &addr);
    if (st != ZX_OK) {
        note_error(s, OP_MAP, st);
        close_handle(s, ep0);
        close_handle(s, ep1);
        return false;
    }
    s->c[BCTL_LOAD_MAPS]++;
    uint64_t* w = (uint64_t*)addr;
    for (size_t i = 0; i < s->size / sizeof *w; i++) {
        w[i] = pattern_word(seed, i);
    }
    s->c[BCTL_LOAD_WRITES]++;
    st = iob_handle_export(ep1, token);
    if (st != ZX_OK) {
        note_error(s, OP_EXPORT, st);
        unmap(s, addr);
        close_handle(s, ep0);
        close_handle(s, ep1);
        return false;
    }
    s->c[BCTL_LOAD_EXPORTS]++;
    *ep0_out = ep0;
    *addr_out = addr;
    return true;
}

/* The importer's half: true when the partner's pattern was read back intact. */
static bool import_and_verify(load_state_t* s, const load_msg_t* m) {
    zx_handle_t h;
    zx_status_t st = iob_handle_import(m->token, &h);
    if (st != ZX_OK) {
        note_error(s, OP_IMPORT, st);
        return false;
    }
    s->c[BCTL_LOAD_IMPORTS]++;
    if (m->seq % LOAD_REIMPORT_EVERY == 0) {
        /* A token is single-use: a second import would be a doubled effect. */
        zx_handle_t again;
        st = iob_handle_import(m->token, &again);
        if (st == ZX_ERR_NOT_FOUND) {
            s->c[BCTL_LOAD_REFUSED]++;
        } else if (st == ZX_OK) {
            s->c[BCTL_LOAD_DOUBLED]++;
            zx_handle_close(again);
        } else {
            note_error(s, OP_REIMPORT, st);
        }
    }
    bool good = false;
    zx_vaddr_t addr = 0;
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, h, 0, 0, s->size, &addr);
    if (st != ZX_OK) {
        note_error(s, OP_MAP, st);
    } else {
        s->c[BCTL_LOAD_MAPS]++;
        const volatile uint64_t* w = (const volatile uint64_t*)addr;
        good = true;
        for (size_t i = 0; i < s->size / sizeof *w; i++) {
            good = good && w[i] == pattern_word(m->seed, i);
        }
        s->c[good ? BCTL_LOAD_VERIFIED : BCTL_LOAD_MISMATCHES]++;
        unmap(s, addr);
    }
    close_handle(s, h);
    return good;
}

static void run_loop(load_state_t* s, uint32_t id, int64_t end, uint64_t max_iters) {
    for (uint32_t seq = 1;; seq++) {
        uint64_t seed = ((uint64_t)id << 32) | seq;
        zx_handle_t ep0 = ZX_HANDLE_INVALID;
        zx_vaddr_t addr = 0;
        load_msg_t out;
        memset(&out, 0, sizeof out);
        out.seq = seq;
        out.seed = seed;
        out.has_token = make_and_export(s, seed, &ep0, &addr, out.token);
        out.more = bctl_now_ns() < end && seq < max_iters;
        load_msg_t in;
        if (!peer_send(s, &out) || !peer_recv(s, &in)) {
            return; /* the token, if any, expires in iobd: the orchestrator sees the gap */
        }
        load_msg_t ack;
        memset(&ack, 0, sizeof ack);
        ack.seq = in.seq;
        ack.verified = in.has_token && import_and_verify(s, &in);
        load_msg_t their_ack;
        if (!peer_send(s, &ack) || !peer_recv(s, &their_ack)) {
            return;
        }
        if (out.has_token) {
            s->c[BCTL_LOAD_ACKED] += their_ack.verified && their_ack.seq == seq;
            unmap(s, addr);
            close_handle(s, ep0);
        }
        s->c[BCTL_LOAD_ITERS]++;
        /* Both sides saw both flags: they stop after the same iteration. */
        if (!out.more || !in.more) {
            return;
        }
    }
}

int bctl_load_main(int argc, char** argv) {
    const char* target = NULL;
    uint32_t id = 0;
    for (int i = 3; i + 1 < argc; i += 2) { /* argv: self --role NAME then pairs */
        if (strcmp(argv[i], "--target") == 0) {
            target = argv[i + 1];
        } else if (strcmp(argv[i], "--id") == 0) {
            id = (uint32_t)strtoul(argv[i + 1], NULL, 10);
        }
    }
    iob_client_t* client = NULL;
    zx_status_t st = iob_client_connect(target, &client);
    if (st != ZX_OK) {
        bctl_write_line(BCTL_FD_RES, "err connect %s: %s", target ? target : "(default)",
                        zx_status_get_string(st));
        return 1;
    }
    load_state_t s;
    memset(&s, 0, sizeof s);
    s.size = (uint64_t)zx_system_get_page_size() * LOAD_PAGES;
    bctl_write_line(BCTL_FD_RES, "ok ready");
    char line[BCTL_LINE_MAX];
    long long start = 0;
    long long dur = 0;
    unsigned long long max_iters = 0;
    int rc = 0;
    if (bctl_read_line(BCTL_FD_CMD, line, sizeof line, INT64_C(1) << 40) != 0 ||
        sscanf(line, "run %lld %lld %llu", &start, &dur, &max_iters) != 3) {
        rc = 1; /* the orchestrator gave up before the run: nothing to report */
    } else {
        struct timespec ts = {.tv_sec = (time_t)(start / 1000000000),
                              .tv_nsec = (long)(start % 1000000000)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        run_loop(&s, id, start + dur, max_iters);
        char reply[BCTL_LINE_MAX];
        int n = snprintf(reply, sizeof reply, "ok end_ns=%" PRId64, bctl_now_ns());
        for (int i = 0; i < BCTL_LOAD_COUNT && n > 0 && (size_t)n < sizeof reply; i++) {
            n += snprintf(reply + n, sizeof reply - (size_t)n, " %s=%" PRIu64,
                          bctl_load_counter_names[i], s.c[i]);
        }
        for (size_t i = 0; i < s.nerr && n > 0 && (size_t)n < sizeof reply; i++) {
            n += snprintf(reply + n, sizeof reply - (size_t)n, " err_%s_%s=%" PRIu64,
                          k_op_names[s.err[i].op], zx_status_get_string(s.err[i].st), s.err[i].n);
        }
        if (s.fatal[0] != '\0' && n > 0 && (size_t)n < sizeof reply) {
            /* Spaces would split the value: the reason goes last, after "fatal=". */
            snprintf(reply + n, sizeof reply - (size_t)n, " fatal=%s", s.fatal);
        }
        bctl_write_line(BCTL_FD_RES, "%s", reply);
        (void)bctl_read_line(BCTL_FD_CMD, line, sizeof line, INT64_C(1) << 40); /* "quit" */
    }
    /* Closing the session closes anything left; the mappings go when the process exits. */
    iob_client_close(client);
    return rc;
}
