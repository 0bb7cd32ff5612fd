/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the map broker's request handling (server/broker/broker.c): each
 * input is one datagram, sent raw over a fresh connection to a broker served on a libuv
 * loop that this process runs, optionally after a valid ATTACH and optionally carrying a
 * descriptor. Input layout:
 *
 *   byte 0, bits: 0 attach first; 1 carry a memfd holding the datagram's bytes (a blob
 *                 fd); 2 carry a pipe end instead (never a valid blob); 3 and 4 overwrite
 *                 the handle field of MAP, WRITEV and ALLOCATE_ID with endpoint 0 / 1 of
 *                 a prepared IOB (region 0 mappable, region 1 an ID allocator), so
 *                 requests get past the handle check
 *   the rest:     the datagram
 *
 * Checked on every input: each reply is of a known type and names the request (or 0),
 * at most one reply per request, a descriptor only with a MAP grant, the connection ends
 * when a descriptor is refused, and no descriptor of this process leaks.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "server/broker/broker.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_broker: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                             \
        }                                                                        \
    } while (0)

static uv_loop_t g_loop;
static iob_core_t* g_core;
static iobd_broker_t* g_broker;
static iob_session_id_t g_session;
static uint8_t g_secret[IOB_CORE_SECRET_SIZE];
static zx_handle_t g_ep[2];
static char g_path[108];
static int g_fds_at_start = -1;

static void quiet(void* ctx, int level, const char* msg) {
    (void)ctx;
    (void)level;
    (void)msg;
}

static int count_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 4096; fd++) {
        n += fcntl(fd, F_GETFD) >= 0;
    }
    return n;
}

static void init(void) {
    CHECK(uv_loop_init(&g_loop) == 0);
    iob_core_config_t cc;
    memset(&cc, 0, sizeof cc);
    cc.backing = IOB_BACKING_4K;
    cc.token_ttl_ns = UINT64_C(60) * 1000000000u;
    CHECK(iob_core_create(&cc, &g_core) == ZX_OK);
    iob_session_cred_t cred = {
        .pid = getpid(), .uid = getuid(), .gid = getgid(), .local = true, .known = true};
    CHECK(iob_core_session_open(g_core, &cred, &g_session, g_secret) == ZX_OK);
    zx_iob_region_t r[2];
    memset(r, 0, sizeof r);
    r[0].type = ZX_IOB_REGION_TYPE_PRIVATE;
    r[0].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                  ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    r[0].size = 2 * 4096;
    r[1].type = ZX_IOB_REGION_TYPE_PRIVATE;
    r[1].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE;
    r[1].size = 64 * 1024;
    r[1].discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    CHECK(iob_core_iob_create(g_core, g_session, 0, r, 2, &g_ep[0], &g_ep[1]) == ZX_OK);
    char dir[] = "/tmp/iob-fuzz-broker-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(g_path, sizeof g_path, "%s/broker.sock", dir);
    iobd_broker_config_t bc;
    memset(&bc, 0, sizeof bc);
    bc.socket_path = g_path;
    bc.socket_mode = 0600;
    bc.log = quiet;
    CHECK(iobd_broker_start(&g_loop, g_core, &bc, &g_broker) == ZX_OK);
}

static int connect_broker(void) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, g_path, strlen(g_path));
    CHECK(connect(fd, (struct sockaddr*)&a, sizeof a) == 0);
    int big = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    return fd;
}

/*
 * Runs the loop until fd has something to read (a reply or the end); false if nothing came
 * within 2 s. Waits in poll, not in a spin: the end of a connection comes from the
 * broker's closer thread, which needs the CPU too.
 */
static bool pump(int fd) {
    for (int i = 0; i < 2000; i++) {
        uv_run(&g_loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, i == 0 ? 0 : 1) > 0) {
            return true;
        }
    }
    return false;
}

typedef struct {
    bool closed;
    bool got_reply;
} outcome_t;

/* Reads what the broker sent for request `id` of `type`. */
static outcome_t read_replies(int fd, uint16_t type, uint64_t id) {
    outcome_t o = {false, false};
    while (pump(fd)) {
        union {
            iob_broker_hdr_t hdr;
            unsigned char bytes[IOB_BROKER_MAX_MSG + 1];
        } r;
        int fds[IOB_FDPASS_RECV_MAX_FDS];
        size_t len = 0;
        size_t nfds = 0;
        zx_status_t st = iob_fd_recv_all(fd, r.bytes, sizeof r.bytes, &len, fds, &nfds);
        for (size_t i = 0; i < nfds; i++) {
            close(fds[i]);
        }
        if (st == ZX_ERR_PEER_CLOSED) {
            o.closed = true;
            return o;
        }
        CHECK(st == ZX_OK);
        CHECK(!o.got_reply); /* one reply per request */
        CHECK(len >= sizeof(iob_broker_hdr_t) && r.hdr.size == len);
        CHECK(r.hdr.type == IOB_BROKER_ERROR || r.hdr.type == (type | IOB_BROKER_REPLY));
        CHECK(r.hdr.request_id == id || r.hdr.request_id == 0);
        CHECK(nfds == 0 || r.hdr.type == (IOB_BROKER_MAP | IOB_BROKER_REPLY));
        o.got_reply = true;
        /* Anything more arrives at once or not at all: one NOWAIT round is enough. */
        uv_run(&g_loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0) {
            break;
        }
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static bool ready;
    if (!ready) {
        init();
        ready = true;
    }
    if (size < 1 || size - 1 > IOB_BROKER_MAX_MEDIATED_MSG + 16) {
        return 0;
    }
    uint8_t opts = data[0];
    size_t len = size - 1;
    unsigned char* msg = malloc(len > 0 ? len : 1);
    CHECK(msg != NULL);
    memcpy(msg, data + 1, len);
    iob_broker_hdr_t hdr;
    memset(&hdr, 0, sizeof hdr);
    memcpy(&hdr, msg, len < sizeof hdr ? len : sizeof hdr);
    if ((opts & 0x18) != 0 && len >= sizeof hdr + 4) {
        zx_handle_t h = g_ep[(opts & 0x10) != 0];
        size_t off = 0;
        if (hdr.type == IOB_BROKER_MAP) {
            off = offsetof(iob_broker_map_req_t, handle);
        } else if (hdr.type == IOB_BROKER_WRITEV) {
            off = offsetof(iob_broker_writev_req_t, handle);
        } else if (hdr.type == IOB_BROKER_WRITEV_PACKED) {
            off = offsetof(iob_broker_writev_packed_req_t, handle);
        } else if (hdr.type == IOB_BROKER_ALLOCATE_ID) {
            off = offsetof(iob_broker_allocate_id_req_t, handle);
        }
        if (off != 0 && len >= off + sizeof h) {
            memcpy(msg + off, &h, sizeof h);
        }
    }

    int fd = connect_broker();
    if ((opts & 1) != 0) {
        iob_broker_attach_req_t at;
        memset(&at, 0, sizeof at);
        iob_broker_hdr_init(&at.hdr, IOB_BROKER_ATTACH, sizeof at, 99);
        at.session_id = g_session.value;
        memcpy(at.secret, g_secret, sizeof at.secret);
        CHECK(iob_fd_send(fd, &at, sizeof at, NULL, 0) == ZX_OK);
        outcome_t o = read_replies(fd, IOB_BROKER_ATTACH, 99);
        CHECK(o.got_reply && !o.closed);
    }
    int pass = -1;
    int spare = -1;
    if ((opts & 2) != 0) {
        pass = memfd_create("fuzz-blob", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        CHECK(pass >= 0);
        CHECK(len == 0 || write(pass, data + 1, len) == (ssize_t)len);
    } else if ((opts & 4) != 0) {
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0);
        pass = p[0];
        spare = p[1];
    }
    zx_status_t sent = len == 0 && pass < 0
                           ? ZX_ERR_INVALID_ARGS
                           : iob_fd_send(fd, msg, len, pass >= 0 ? &pass : NULL, pass >= 0);
    if (sent == ZX_OK) {
        outcome_t o = read_replies(fd, hdr.type, hdr.request_id);
        /* A descriptor the broker may not take ends the connection. */
        if ((opts & 6) == 4) {
            if (!o.closed) {
                o = read_replies(fd, 0, 0);
            }
            CHECK(o.closed);
        }
    }
    if (pass >= 0) {
        close(pass);
    }
    if (spare >= 0) {
        close(spare);
    }
    close(fd);
    free(msg);
    /*
     * Let the broker see the close, release what MAP granted, and check for leaks. Settled
     * by a deadline, not a number of rounds: the closer thread closes what a client sent,
     * and on a loaded host 1000 rounds of 100 us once passed before it had run.
     */
    iobd_broker_stats_t st;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    time_t give_up = now.tv_sec + 5; /* within libFuzzer's -timeout=10 */
    for (;;) {
        uv_run(&g_loop, UV_RUN_NOWAIT);
        iobd_broker_get_stats(g_broker, &st);
        if (st.connections == 0 && st.closes_pending == 0 &&
            (g_fds_at_start < 0 || count_fds() == g_fds_at_start)) {
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > give_up) {
            break;
        }
        usleep(100);
    }
    iob_core_session_release_mappings(g_core, g_session);
    CHECK(st.connections == 0);
    /* The first input's end is the baseline: libFuzzer's own descriptors have settled. */
    if (g_fds_at_start < 0) {
        g_fds_at_start = count_fds();
    }
    if (count_fds() != g_fds_at_start) {
        fprintf(stderr, "fuzz_broker: %d descriptors open, %d at the start:\n", count_fds(),
                g_fds_at_start);
        for (int d = 0; d < 4096; d++) {
            char path[64];
            char target[256] = "";
            snprintf(path, sizeof path, "/proc/self/fd/%d", d);
            ssize_t n = readlink(path, target, sizeof target - 1);
            if (n > 0) {
                target[n] = '\0';
                fprintf(stderr, "  %d -> %s\n", d, target);
            }
        }
    }
    CHECK(count_fds() == g_fds_at_start);
    return 0;
}
