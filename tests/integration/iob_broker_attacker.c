/* SPDX-License-Identifier: MIT */
/*
 * iob_broker_attacker: a hostile client of iobd's map broker, run by test_broker_attacks
 * as a separate process. It speaks the wire format raw (no libiob, no gRPC) and reports on
 * stdout:
 *
 *   linger SOCK          sends one 16-byte datagram carrying a TCP socket whose close
 *                        lingers 30 s (full send buffer, listener never reads), closes its
 *                        own copy, prints "sent", then waits to be killed (it keeps the
 *                        listener, so the socket keeps lingering)
 *   fd SOCK              sends an UNMAP carrying a memfd named "iob-attacker-fd"; exit 0
 *                        when answered with ERROR and then disconnected, 4 when the
 *                        connection stays open, 3 when no ERROR came
 *   flood SOCK UID N     as UID, opens N connections, prints "open K" with K the number
 *                        iobd kept after 500 ms, then waits to be killed
 *   idle SOCK            connects and never attaches; prints "closed MS" when iobd closes
 *                        the connection MS ms later (exit 0), or "open" after 20 s (exit 4)
 *
 * Exit 2: usage or setup failure; 77: may not change uid (not root). It dies with the
 * process that started it.
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shm/broker_wire.h"
#include "shm/fdpass.h"
#include "test_util.h"

static const char* g_sock;

static int broker_connect(void) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (fd < 0 || strlen(g_sock) >= sizeof a.sun_path) {
        exit(2);
    }
    memcpy(a.sun_path, g_sock, strlen(g_sock));
    if (connect(fd, (struct sockaddr*)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* True when iobd has closed fd (EOF waiting, nothing else), within timeout_ms. */
static bool closed_within(int fd, int timeout_ms) {
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = now_ms();
        int left = now >= end ? 0 : (int)(end - now);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0) {
            return false;
        }
        char buf[IOB_BROKER_MAX_MSG + 1];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0) {
            return true;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return true; /* ECONNRESET and the like: closed all the same */
        }
    }
}

static void wait_forever(void) {
    for (;;) {
        pause();
    }
}

static int do_linger(void) {
    int listener = -1;
    int sock = iob_test_lingering_socket(30, &listener);
    int fd = broker_connect();
    if (sock < 0 || fd < 0) {
        perror("attacker: linger setup");
        return 2;
    }
    iob_broker_hdr_t hdr;
    iob_broker_hdr_init(&hdr, IOB_BROKER_MAP, sizeof hdr, 1);
    if (iob_fd_send(fd, &hdr, sizeof hdr, &sock, 1) != ZX_OK) {
        return 2;
    }
    /* Not the last reference: iobd holds one now, so this close does not linger. */
    close(sock);
    printf("sent\n");
    fflush(stdout);
    wait_forever();
    return 0;
}

static int do_fd(void) {
    int fd = broker_connect();
    int pass = memfd_create("iob-attacker-fd", MFD_CLOEXEC);
    if (fd < 0 || pass < 0) {
        return 2;
    }
    iob_broker_unmap_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_UNMAP, sizeof req, 7);
    if (iob_fd_send(fd, &req, sizeof req, &pass, 1) != ZX_OK) {
        return 2;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    iob_broker_status_reply_t r;
    if (poll(&p, 1, 3000) != 1 || recv(fd, &r, sizeof r, 0) != (ssize_t)sizeof r ||
        r.hdr.type != IOB_BROKER_ERROR || r.hdr.request_id != 7) {
        fprintf(stderr, "attacker: no ERROR reply\n");
        return 3;
    }
    if (!closed_within(fd, 3000)) {
        fprintf(stderr, "attacker: iobd kept the connection\n");
        return 4;
    }
    return 0;
}

static int drop_to(uid_t uid) {
    if (getuid() == uid) {
        return 0;
    }
    if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
        return IOB_TEST_SKIP;
    }
    return 0;
}

static int do_flood(uid_t uid, int n) {
    int rc = drop_to(uid);
    if (rc != 0) {
        return rc;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a change of uid cleared it */
    int* fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; i < n; i++) {
        fds[i] = broker_connect();
    }
    usleep(500 * 1000);
    int open = 0;
    for (int i = 0; i < n; i++) {
        open += fds[i] >= 0 && !closed_within(fds[i], 0);
    }
    printf("open %d\n", open);
    fflush(stdout);
    wait_forever();
    return 0;
}

static int do_idle(void) {
    int fd = broker_connect();
    if (fd < 0) {
        return 2;
    }
    uint64_t t0 = now_ms();
    if (!closed_within(fd, 20000)) {
        printf("open\n");
        return 4;
    }
    printf("closed %llu\n", (unsigned long long)(now_ms() - t0));
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: see the top of iob_broker_attacker.c\n");
        return 2;
    }
    g_sock = argv[2];
    /* A test that fails midway cannot kill its attacker: it goes with the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (strcmp(argv[1], "linger") == 0) {
        return do_linger();
    }
    if (strcmp(argv[1], "fd") == 0) {
        return do_fd();
    }
    if (strcmp(argv[1], "flood") == 0 && argc == 5) {
        return do_flood((uid_t)strtoul(argv[3], NULL, 10), atoi(argv[4]));
    }
    if (strcmp(argv[1], "idle") == 0) {
        return do_idle();
    }
    fprintf(stderr, "attacker: unknown mode %s\n", argv[1]);
    return 2;
}
