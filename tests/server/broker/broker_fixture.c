/* SPDX-License-Identifier: MIT */
/* The broker tests' fixture (broker_fixture.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_fixture.h"
#include "server/broker/broker.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"
#include "test_util.h"

uint32_t g_attach_timeout_ms;

static int64_t fake_now(void* ctx) {
    return ((fixture_t*)ctx)->now_ns;
}

/* Session events as the daemon's rpc layer receives them from the core. */
static void on_signals(void* ctx, iob_session_id_t session, zx_handle_t handle, zx_koid_t koid,
                       zx_signals_t signals) {
    (void)koid;
    (void)signals;
    fixture_t* f = ctx;
    f->signal_calls++;
    f->signal_session = session;
    f->signal_handle = handle;
}

static bool policy(void* ctx, pid_t pid, uid_t uid, gid_t gid) {
    fixture_t* f = ctx;
    (void)pid;
    (void)uid;
    (void)gid;
    return !f->refuse_peers;
}

void quiet_log(void* ctx, int level, const char* msg) {
    fixture_t* f = ctx;
    if (f != NULL && level == IOBD_BROKER_LOG_WARNING) {
        snprintf(f->last_warning, sizeof f->last_warning, "%s", msg);
    }
}

/* A session of this process as iobd's rpc opens it for a Unix-socket client. */
iob_session_id_t open_local_session(fixture_t* f, pid_t pid, uid_t uid,
                                    uint8_t secret[IOB_CORE_SECRET_SIZE]) {
    iob_session_cred_t cred = {
        .pid = pid, .uid = uid, .gid = getgid(), .local = true, .known = true};
    iob_session_id_t sid;
    assert_int_equal(iob_core_session_open(f->core, &cred, &sid, secret), ZX_OK);
    return sid;
}

int setup(void** state) {
    fixture_t* f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    iob_core_config_t cc;
    memset(&cc, 0, sizeof cc);
    cc.backing = IOB_BACKING_4K;
    cc.token_ttl_ns = UINT64_C(60) * 1000000000u;
    cc.now_ns = fake_now;
    cc.clock_ctx = f;
    cc.observer.ctx = f;
    cc.observer.handle_signals = on_signals;
    f->now_ns = INT64_C(1000000000);
    assert_int_equal(iob_core_create(&cc, &f->core), ZX_OK);
    f->session = open_local_session(f, getpid(), getuid(), f->secret);

    /* ep0 may map region 0 read-write, ep1 read-only; region 1 is ep0's alone. */
    zx_iob_region_t regions[2];
    memset(regions, 0, sizeof regions);
    regions[0].type = ZX_IOB_REGION_TYPE_PRIVATE;
    regions[0].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                        ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    regions[0].size = 3 * 4096;
    regions[1] = regions[0];
    regions[1].access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE;
    assert_int_equal(iob_core_iob_create(f->core, f->session, 0, regions, 2, &f->ep0, &f->ep1),
                     ZX_OK);

    f->dir = iob_test_tempdir();
    snprintf(f->path, sizeof f->path, "%s/broker.sock", f->dir);
    iobd_broker_config_t bc;
    memset(&bc, 0, sizeof bc);
    bc.socket_path = f->path;
    bc.socket_mode = 0600;
    bc.peer_allowed = policy;
    bc.policy_ctx = f;
    bc.log = quiet_log;
    bc.log_ctx = f;
    bc.attach_timeout_ms = g_attach_timeout_ms;
    assert_int_equal(iobd_broker_start(&f->loop, f->core, &bc, &f->broker), ZX_OK);
    *state = f;
    return 0;
}

int setup_short_deadline(void** state) {
    g_attach_timeout_ms = 100;
    int rc = setup(state);
    g_attach_timeout_ms = 0;
    return rc;
}

int teardown(void** state) {
    fixture_t* f = *state;
    iobd_broker_stop(f->broker);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* lets the broker's handles close and free it */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), -1); /* the socket file is gone */
    iob_core_destroy(f->core);
    rmdir(f->dir);
    free(f->dir);
    /*
     * The broker's closer thread closes the last descriptors (the listening socket, the
     * connections) after the broker is gone: the next test starts once it has, and nothing
     * leaked. The first test's count is the reference (libraries open a few descriptors
     * once, on first use); until then, the count only has to settle.
     */
    static int between_tests = -1;
    int n = iob_test_count_open_fds();
    for (int i = 0, stable = 0; i < 400 && (between_tests >= 0 ? n != between_tests : stable < 20);
         i++) {
        usleep(5000);
        int now = iob_test_count_open_fds();
        stable = now == n ? stable + 1 : 0;
        n = now;
    }
    if (between_tests >= 0) {
        assert_int_equal(n, between_tests);
    }
    between_tests = n;
    free(f);
    return 0;
}

int client_connect(fixture_t* f) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, f->path);
    assert_int_equal(connect(fd, (struct sockaddr*)&addr, sizeof addr), 0);
    return fd;
}

/* Runs the loop until the client socket has something to read (or was closed). */
void pump(fixture_t* f, int fd) {
    for (int i = 0; i < 500; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2) > 0) {
            return;
        }
    }
    fail_msg("no reply from the broker");
}

/* Runs the loop until this process has `want` descriptors open (the closer is a thread). */
void wait_fd_count(fixture_t* f, int want) {
    for (int i = 0; i < 400 && iob_test_count_open_fds() != want; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_int_equal(iob_test_count_open_fds(), want);
}

/* Sends raw bytes (and optionally one fd), returns the reply's length (0: closed). */
size_t exchange(fixture_t* f, int fd, const void* req, size_t len, int send_fd, reply_t* reply,
                int* fd_out) {
    assert_int_equal(iob_fd_send(fd, req, len, send_fd >= 0 ? &send_fd : NULL, send_fd >= 0),
                     ZX_OK);
    pump(f, fd);
    int fds[1];
    size_t n = 0;
    size_t nfds = 0;
    memset(reply, 0, sizeof *reply);
    zx_status_t st = iob_fd_recv(fd, reply->bytes, sizeof reply->bytes, &n, fds, 1, &nfds);
    if (st == ZX_ERR_PEER_CLOSED) {
        return 0;
    }
    assert_int_equal(st, ZX_OK);
    if (fd_out != NULL) {
        *fd_out = nfds > 0 ? fds[0] : -1;
    } else {
        assert_int_equal(nfds, 0);
    }
    return n;
}

zx_status_t attach(fixture_t* f, int fd, uint64_t session, const uint8_t* secret) {
    iob_broker_attach_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_ATTACH, sizeof req, 11);
    req.session_id = session;
    memcpy(req.secret, secret, 16);
    reply_t r;
    size_t n = exchange(f, fd, &req, sizeof req, -1, &r, NULL);
    if (n == 0) {
        return ZX_ERR_PEER_CLOSED;
    }
    assert_int_equal(n, sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ATTACH | IOB_BROKER_REPLY);
    assert_int_equal(r.hdr.request_id, 11);
    return r.status.status;
}

zx_status_t map(fixture_t* f, int fd, zx_handle_t h, uint32_t options, uint32_t index,
                uint32_t flags, iob_broker_map_reply_t* out, int* fd_out) {
    iob_broker_map_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_MAP, sizeof req, 22);
    req.handle = h;
    req.options = options;
    req.region_index = index;
    req.flags = flags;
    req.region_offset = 0;
    req.len = 3 * 4096;
    reply_t r;
    size_t n = exchange(f, fd, &req, sizeof req, -1, &r, fd_out);
    assert_int_equal(n, sizeof(iob_broker_map_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_MAP | IOB_BROKER_REPLY);
    assert_int_equal(r.hdr.request_id, 22);
    if (out != NULL) {
        *out = r.map;
    }
    return r.map.status;
}

zx_status_t unmap(fixture_t* f, int fd, uint64_t mapping_id) {
    iob_broker_unmap_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_UNMAP, sizeof req, 33);
    req.mapping_id = mapping_id;
    reply_t r;
    assert_int_equal(exchange(f, fd, &req, sizeof req, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_UNMAP | IOB_BROKER_REPLY);
    return r.status.status;
}

/* IMPORT with a token of up to 64 bytes (copied raw: it need not hold a NUL). */
zx_status_t import_raw(fixture_t* f, int fd, const char* token, size_t token_len,
                       zx_handle_t* out) {
    iob_broker_import_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_IMPORT, sizeof req, 44);
    memcpy(req.token, token, token_len);
    reply_t r;
    assert_int_equal(exchange(f, fd, &req, sizeof req, -1, &r, NULL),
                     sizeof(iob_broker_import_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_IMPORT | IOB_BROKER_REPLY);
    assert_int_equal(r.hdr.request_id, 44);
    if (r.import.status != ZX_OK) {
        assert_int_equal(r.import.handle, ZX_HANDLE_INVALID);
    }
    *out = r.import.handle;
    return r.import.status;
}

zx_status_t import(fixture_t* f, int fd, const char* token, zx_handle_t* out) {
    return import_raw(f, fd, token, strlen(token), out);
}

zx_signals_t core_signals(fixture_t* f, iob_session_id_t session, zx_handle_t h) {
    zx_signals_t sig = 0;
    zx_koid_t koid = 0;
    assert_int_equal(iob_core_signals(f->core, session, h, &sig, &koid), ZX_OK);
    return sig;
}

uint64_t core_mappings(fixture_t* f) {
    iob_core_stats_t st;
    iob_core_get_stats(f->core, &st);
    return st.mappings;
}

uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
