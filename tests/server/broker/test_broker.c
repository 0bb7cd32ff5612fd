/* SPDX-License-Identifier: MIT */
/*
 * Tests server/broker/broker.c in-process: a real iob_core (4 KiB backing), a libuv loop,
 * and a raw SOCK_SEQPACKET client speaking shm/broker_wire.h. The loop runs in this
 * thread between a request and its reply, so every test is deterministic.
 */
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

#include "server/broker/broker.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"
#include "test_util.h"

typedef struct fixture {
    uv_loop_t loop;
    iob_core_t* core;
    iob_session_id_t session;
    uint8_t secret[IOB_CORE_SECRET_SIZE]; /* the session's, from the core */
    iobd_broker_t* broker;
    char* dir;
    char path[108];
    bool refuse_peers;
    char last_warning[512]; /* the broker's last warning */
    zx_handle_t ep0;
    zx_handle_t ep1;
    int64_t now_ns; /* the core's clock (token expiry) */
    /* The core's handle_signals calls: how many, and the last one's arguments. */
    int signal_calls;
    iob_session_id_t signal_session;
    zx_handle_t signal_handle;
} fixture_t;

/* The next setup's attach deadline (0: the broker's default). */
static uint32_t g_attach_timeout_ms;

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

static void quiet_log(void* ctx, int level, const char* msg) {
    fixture_t* f = ctx;
    if (f != NULL && level == IOBD_BROKER_LOG_WARNING) {
        snprintf(f->last_warning, sizeof f->last_warning, "%s", msg);
    }
}

/* A session of this process as iobd's rpc opens it for a Unix-socket client. */
static iob_session_id_t open_local_session(fixture_t* f, pid_t pid, uid_t uid,
                                           uint8_t secret[IOB_CORE_SECRET_SIZE]) {
    iob_session_cred_t cred = {
        .pid = pid, .uid = uid, .gid = getgid(), .local = true, .known = true};
    iob_session_id_t sid;
    assert_int_equal(iob_core_session_open(f->core, &cred, &sid, secret), ZX_OK);
    return sid;
}

static int setup(void** state) {
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
    assert_int_equal(
        iob_core_iob_create(f->core, f->session, 0, regions, 2, &f->ep0, &f->ep1), ZX_OK);

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

static int setup_short_deadline(void** state) {
    g_attach_timeout_ms = 100;
    int rc = setup(state);
    g_attach_timeout_ms = 0;
    return rc;
}

static int teardown(void** state) {
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

static int client_connect(fixture_t* f) {
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
static void pump(fixture_t* f, int fd) {
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
static void wait_fd_count(fixture_t* f, int want) {
    for (int i = 0; i < 400 && iob_test_count_open_fds() != want; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_int_equal(iob_test_count_open_fds(), want);
}

typedef union {
    iob_broker_hdr_t hdr;
    iob_broker_status_reply_t status;
    iob_broker_map_reply_t map;
    iob_broker_import_reply_t import;
    unsigned char bytes[IOB_BROKER_MAX_MSG + 1];
} reply_t;

/* Sends raw bytes (and optionally one fd), returns the reply's length (0: closed). */
static size_t exchange(fixture_t* f, int fd, const void* req, size_t len, int send_fd,
                       reply_t* reply, int* fd_out) {
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

static zx_status_t attach(fixture_t* f, int fd, uint64_t session, const uint8_t* secret) {
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

static zx_status_t map(fixture_t* f, int fd, zx_handle_t h, uint32_t options, uint32_t index,
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

static zx_status_t unmap(fixture_t* f, int fd, uint64_t mapping_id) {
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
static zx_status_t import_raw(fixture_t* f, int fd, const char* token, size_t token_len,
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

static zx_status_t import(fixture_t* f, int fd, const char* token, zx_handle_t* out) {
    return import_raw(f, fd, token, strlen(token), out);
}

static zx_signals_t core_signals(fixture_t* f, iob_session_id_t session, zx_handle_t h) {
    zx_signals_t sig = 0;
    zx_koid_t koid = 0;
    assert_int_equal(iob_core_signals(f->core, session, h, &sig, &koid), ZX_OK);
    return sig;
}

static uint64_t core_mappings(fixture_t* f) {
    iob_core_stats_t st;
    iob_core_get_stats(f->core, &st);
    return st.mappings;
}

static void test_attach_requires_secret(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    uint8_t wrong[IOB_CORE_SECRET_SIZE];
    memcpy(wrong, f->secret, sizeof wrong);
    wrong[15] ^= 1;
    assert_int_equal(attach(f, fd, f->session.value, wrong), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(attach(f, fd, f->session.value + 1, f->secret), ZX_ERR_ACCESS_DENIED);
    /* Mapping needs an attached connection. */
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 0, 0, NULL, NULL), ZX_ERR_BAD_STATE);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_ERR_BAD_STATE);
    close(fd);

    /* Three failures end the connection. */
    fd = client_connect(f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(attach(f, fd, 999, f->secret), ZX_ERR_ACCESS_DENIED);
    }
    pump(f, fd);
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.auth_failures, 5);
}

/*
 * The core checks the peer's SO_PEERCRED against the session's owner: the right secret
 * from another process or another uid is ACCESS_DENIED with nothing attached, and the
 * warning names both identities.
 */
static void test_attach_checks_peer_identity(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    uint8_t secret[IOB_CORE_SECRET_SIZE];
    /* As if another process had opened the session and leaked its secret. */
    iob_session_id_t other_pid = open_local_session(f, getpid() + 1, getuid(), secret);
    assert_int_equal(attach(f, fd, other_pid.value, secret), ZX_ERR_ACCESS_DENIED);
    char who[128];
    snprintf(who, sizeof who, "refused to pid %d uid %d gid %d: another process", (int)getpid(),
             (int)getuid(), (int)getgid());
    assert_non_null(strstr(f->last_warning, who));
    assert_false(iob_core_session_attached(f->core, other_pid));
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 0, 0, NULL, NULL), ZX_ERR_BAD_STATE);

    iob_session_id_t other_uid = open_local_session(f, getpid(), getuid() + 1, secret);
    assert_int_equal(attach(f, fd, other_uid.value, secret), ZX_ERR_ACCESS_DENIED);
    assert_non_null(strstr(f->last_warning, "another uid"));
    assert_false(iob_core_session_attached(f->core, other_uid));

    assert_false(iob_core_session_attached(f->core, f->session));
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    assert_true(iob_core_session_attached(f->core, f->session));
    close(fd);
}

/*
 * iob_core_map_dup: the fd is the caller's own (close-on-exec, not the core's), and stays
 * valid after the core has dropped the IOB entirely.
 */
static void test_core_map_dup_fd_is_owned(void** state) {
    fixture_t* f = *state;
    iob_map_grant_t borrowed;
    iob_map_grant_t owned;
    assert_int_equal(iob_core_map(f->core, f->session, f->ep0, ZX_VM_PERM_READ, 0, 0, 4096,
                                  &borrowed),
                     ZX_OK);
    assert_int_equal(iob_core_map_dup(f->core, f->session, f->ep0, ZX_VM_PERM_READ, 0, 0, 4096,
                                      &owned),
                     ZX_OK);
    assert_int_not_equal(owned.fd, borrowed.fd);
    assert_true((fcntl(owned.fd, F_GETFD) & FD_CLOEXEC) != 0);
    assert_int_equal(owned.iob_koid, borrowed.iob_koid);
    assert_int_equal(owned.writable, borrowed.writable);
    assert_int_equal(core_mappings(f), 2);
    /* Refused maps create no fd and no record. */
    iob_map_grant_t none;
    assert_int_equal(iob_core_map_dup(f->core, f->session, f->ep1, ZX_VM_PERM_READ, 1, 0, 4096,
                                      &none),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(core_mappings(f), 2);
    /* Everything gone: handles, records, the IOB and its memfds. */
    assert_int_equal(iob_core_unmap(f->core, f->session, borrowed.mapping), ZX_OK);
    assert_int_equal(iob_core_unmap(f->core, f->session, owned.mapping), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->session, f->ep0), ZX_OK);
    assert_int_equal(iob_core_handle_close(f->core, f->session, f->ep1), ZX_OK);
    iob_core_stats_t st;
    iob_core_get_stats(f->core, &st);
    assert_int_equal(st.iobs, 0);
    char* p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, owned.fd, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(p[0], 0);
    munmap(p, 4096);
    assert_int_equal(close(owned.fd), 0);
}

static void test_map_grants_and_read_only_fds(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);

    iob_broker_map_reply_t rep;
    int rw = -1;
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, &rep, &rw), ZX_OK);
    assert_true(rw >= 0);
    assert_true(rep.flags & IOB_BROKER_GRANT_WRITABLE);
    assert_int_equal(rep.region_size, 3 * 4096);
    assert_true((fcntl(rw, F_GETFD) & FD_CLOEXEC) != 0);
    char* w = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
    assert_true(w != MAP_FAILED);
    close(rw);
    strcpy(w + 4096, "through the broker");

    iob_broker_map_reply_t rep_ro;
    int ro = -1;
    assert_int_equal(map(f, fd, f->ep1, ZX_VM_PERM_READ, 0, 0, &rep_ro, &ro), ZX_OK);
    assert_true(ro >= 0);
    assert_false(rep_ro.flags & IOB_BROKER_GRANT_WRITABLE);
    assert_int_equal(rep_ro.iob_koid, rep.iob_koid);
    assert_int_equal(fcntl(ro, F_GETFL) & O_ACCMODE, O_RDONLY);
    assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED);
    assert_int_equal(errno, EACCES);
    char* r = mmap(NULL, 3 * 4096, PROT_READ, MAP_SHARED, ro, 0);
    assert_true(r != MAP_FAILED);
    close(ro);
    assert_string_equal(r + 4096, "through the broker");
    assert_int_equal(mprotect(r, 4096, PROT_READ | PROT_WRITE), -1);

    /* ep1 may not write region 0, nor map region 1 at all (A.4 answered by the core). */
    assert_int_equal(map(f, fd, f->ep1, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, NULL, NULL),
                     ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, fd, f->ep1, ZX_VM_PERM_READ, 1, 0, NULL, NULL), ZX_ERR_ACCESS_DENIED);
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 2, 0, NULL, NULL), ZX_ERR_OUT_OF_RANGE);
    assert_int_equal(map(f, fd, 0x12345673u, ZX_VM_PERM_READ, 0, 0, NULL, NULL),
                     ZX_ERR_BAD_HANDLE);
    assert_int_equal(core_mappings(f), 2);

    /* Check-only: every check, no record, no fd. */
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 0, IOB_BROKER_MAP_CHECK_ONLY, NULL, NULL),
                     ZX_OK);
    assert_int_equal(core_mappings(f), 2);
    assert_int_equal(map(f, fd, f->ep0, ZX_VM_PERM_READ, 0, 0x80, NULL, NULL), ZX_ERR_INVALID_ARGS);

    assert_int_equal(unmap(f, fd, rep.mapping_id), ZX_OK);
    assert_int_not_equal(unmap(f, fd, rep.mapping_id), ZX_OK);
    assert_int_equal(core_mappings(f), 1);

    /* A dropped connection releases nothing but itself: the record stays counted. */
    close(fd);
    for (int i = 0; i < 5; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.connections, 0);
    assert_int_equal(core_mappings(f), 1);
    munmap(w, 3 * 4096);
    munmap(r, 3 * 4096);
}

static void test_hostile_messages(void** state) {
    fixture_t* f = *state;
    int fd = client_connect(f);
    reply_t r;

    iob_broker_hdr_t hdr;
    iob_broker_hdr_init(&hdr, 77, sizeof hdr, 5);
    assert_int_equal(exchange(f, fd, &hdr, sizeof hdr, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, 5);
    assert_int_equal(r.status.status, ZX_ERR_NOT_SUPPORTED);

    iob_broker_hdr_init(&hdr, IOB_BROKER_ATTACH, sizeof hdr, 6); /* too short for ATTACH */
    assert_int_equal(exchange(f, fd, &hdr, sizeof hdr, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.status.status, ZX_ERR_INVALID_ARGS);

    iob_broker_hdr_init(&hdr, IOB_BROKER_ATTACH, sizeof hdr, 7);
    hdr.version = 2;
    assert_int_equal(exchange(f, fd, &hdr, sizeof hdr, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.status.status, ZX_ERR_NOT_SUPPORTED);

    unsigned char junk[3] = {1, 2, 3};
    assert_int_equal(exchange(f, fd, junk, sizeof junk, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, 0);

    unsigned char big[IOB_BROKER_MAX_MSG + 100];
    memset(big, 0xab, sizeof big);
    assert_int_equal(exchange(f, fd, big, sizeof big, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);

    /*
     * An fd on a message that may not carry one: refused, the connection ended, and the fd
     * closed by the broker (it runs in this process) off the loop, soon.
     */
    int before = iob_test_count_open_fds();
    int extra = dup(0);
    iob_broker_unmap_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_UNMAP, sizeof req, 8);
    assert_int_equal(exchange(f, fd, &req, sizeof req, extra, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, 8);
    close(extra);
    pump(f, fd);
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
    wait_fd_count(f, before - 2); /* our end of fd and the broker's */

    /* Still serving after all that. */
    fd = client_connect(f);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    close(fd);
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.bad_messages, 6);
    assert_int_equal(stats.fds_refused, 1);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * A TCP socket whose close would linger 30 s, sent on a message that may not carry an fd:
 * the loop answers at once and goes on serving another connection, and the socket is
 * closed (reset) soon after, by the closer thread.
 */
static void test_lingering_fd_does_not_stall(void** state) {
    fixture_t* f = *state;
    int before = iob_test_count_open_fds();
    int listener = -1;
    int sock = iob_test_lingering_socket(30, &listener);
    assert_true(sock >= 0);
    int fd = client_connect(f);
    uint64_t t0 = now_ms();
    iob_broker_hdr_t hdr;
    iob_broker_hdr_init(&hdr, IOB_BROKER_MAP, sizeof hdr, 3);
    assert_int_equal(iob_fd_send(fd, &hdr, sizeof hdr, &sock, 1), ZX_OK);
    close(sock); /* the broker's copy is the last one now */
    int other = client_connect(f);
    reply_t r;
    assert_int_equal(attach(f, other, f->session.value, f->secret), ZX_OK);
    assert_int_equal(unmap(f, other, 12345), ZX_ERR_NOT_FOUND);
    assert_true(now_ms() - t0 < 1000);
    /* The attacker's connection was ended after the ERROR reply. */
    pump(f, fd);
    size_t n = 0;
    size_t nfds = 0;
    assert_int_equal(iob_fd_recv(fd, r.bytes, sizeof r.bytes, &n, NULL, 0, &nfds), ZX_OK);
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    pump(f, fd);
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
    close(other);
    /* Only the listener is left of what this test opened. */
    wait_fd_count(f, before + 1);
    assert_true(now_ms() - t0 < 2000);
    close(listener);
}

/*
 * The same socket one level down, queued in a Unix socket that is sent instead: the
 * closer takes it out and resets it rather than letting the Unix socket's close release
 * it (which would linger 30 s in the closer).
 */
static void test_nested_lingering_fd(void** state) {
    fixture_t* f = *state;
    int before = iob_test_count_open_fds();
    int listener = -1;
    int sock = iob_test_lingering_socket(30, &listener);
    assert_true(sock >= 0);
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    assert_int_equal(iob_fd_send(pair[0], "x", 1, &sock, 1), ZX_OK);
    close(sock);
    close(pair[0]);
    int fd = client_connect(f);
    uint64_t t0 = now_ms();
    iob_broker_hdr_t hdr;
    iob_broker_hdr_init(&hdr, IOB_BROKER_MAP, sizeof hdr, 4);
    reply_t r;
    assert_int_equal(exchange(f, fd, &hdr, sizeof hdr, pair[1], &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    close(pair[1]);
    close(fd);
    wait_fd_count(f, before + 1);
    assert_true(now_ms() - t0 < 2000);
    close(listener);
}

/* A connection that does not attach in time is closed; an attached one stays. */
static void test_attach_deadline(void** state) {
    fixture_t* f = *state;
    int idle = client_connect(f);
    int fd = client_connect(f);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    uint64_t t0 = now_ms();
    pump(f, idle);
    char b;
    assert_int_equal(recv(idle, &b, 1, 0), 0);
    uint64_t took = now_ms() - t0;
    assert_true(took < 1000);
    /* Past the deadline, the attached connection is served as ever. */
    while (now_ms() - t0 < 300) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_int_equal(unmap(f, fd, 12345), ZX_ERR_NOT_FOUND);
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.attach_timeouts, 1);
    assert_int_equal(stats.connections, 1);
    close(idle);
    close(fd);
}

/*
 * IMPORT over the broker: the token rules are the core's (single use, NOT_FOUND for
 * unknown, used, expired or over-long tokens), the exported rights survive, the token
 * keeps the endpoint alive for PEER_CLOSED and the import hands it to the attached
 * session, whose holder the core tells of the endpoint's signal changes (session events).
 */
static void test_import(void** state) {
    fixture_t* f = *state;
    /* Another process's session exports endpoint 1 of its IOB with fewer rights. */
    uint8_t exporter_secret[IOB_CORE_SECRET_SIZE];
    iob_session_id_t exporter = open_local_session(f, getpid() + 1, getuid(), exporter_secret);
    zx_iob_region_t region;
    memset(&region, 0, sizeof region);
    region.type = ZX_IOB_REGION_TYPE_PRIVATE;
    region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                    ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    region.size = 3 * 4096;
    zx_handle_t e0, e1, e1_less;
    assert_int_equal(iob_core_iob_create(f->core, exporter, 0, &region, 1, &e0, &e1), ZX_OK);
    const zx_rights_t rights = ZX_RIGHT_TRANSFER | ZX_RIGHT_READ | ZX_RIGHT_MAP |
                               ZX_RIGHT_INSPECT | ZX_RIGHT_WAIT;
    assert_int_equal(iob_core_handle_replace(f->core, exporter, e1, rights, &e1_less), ZX_OK);
    char token[IOB_CORE_TOKEN_SIZE];
    assert_int_equal(iob_core_handle_export(f->core, exporter, e1_less, token), ZX_OK);
    /* The token in flight keeps endpoint 1 alive: no PEER_CLOSED for endpoint 0. */
    assert_int_equal(core_signals(f, exporter, e0) & ZX_IOB_PEER_CLOSED, 0);

    int fd = client_connect(f);
    zx_handle_t h = ZX_HANDLE_INVALID;
    /* Before attach: BAD_STATE, and the token is not spent. */
    assert_int_equal(import(f, fd, token, &h), ZX_ERR_BAD_STATE);
    assert_int_equal(attach(f, fd, f->session.value, f->secret), ZX_OK);
    assert_int_equal(import(f, fd, "iob1.no-such-token", &h), ZX_ERR_NOT_FOUND);
    assert_int_equal(import(f, fd, "", &h), ZX_ERR_NOT_FOUND);
    char no_nul[IOB_BROKER_TOKEN_SIZE];
    memset(no_nul, 'x', sizeof no_nul);
    assert_int_equal(import_raw(f, fd, no_nul, sizeof no_nul, &h), ZX_ERR_NOT_FOUND);
    /* A token that matches only in its first 63 bytes is another token. */
    memcpy(no_nul, token, strlen(token));
    assert_int_equal(import_raw(f, fd, no_nul, sizeof no_nul, &h), ZX_ERR_NOT_FOUND);

    assert_int_equal(import(f, fd, token, &h), ZX_OK);
    assert_int_not_equal(h, ZX_HANDLE_INVALID);
    /* A signal from the peer reaches the imported handle in the attached session. */
    int calls = f->signal_calls;
    assert_int_equal(iob_core_object_signal_peer(f->core, exporter, e0, 0, ZX_USER_SIGNAL_0),
                     ZX_OK);
    assert_int_equal(f->signal_calls, calls + 1);
    assert_int_equal(f->signal_session.value, f->session.value);
    assert_int_equal(f->signal_handle, h);
    /* Single use. */
    zx_handle_t again = ZX_HANDLE_INVALID;
    assert_int_equal(import(f, fd, token, &again), ZX_ERR_NOT_FOUND);

    /* The handle is the attached session's, with exactly the exported rights. */
    zx_info_handle_basic_t info;
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_core_get_info(f->core, f->session, h, ZX_INFO_HANDLE_BASIC, &info,
                                       sizeof info, &actual, &avail),
                     ZX_OK);
    assert_int_equal(info.rights, rights);
    assert_int_equal(iob_core_get_info(f->core, exporter, h, ZX_INFO_HANDLE_BASIC, &info,
                                       sizeof info, &actual, &avail),
                     ZX_ERR_BAD_HANDLE);
    /* It maps read-only through the same connection, and not writable. */
    int ro = -1;
    assert_int_equal(map(f, fd, h, ZX_VM_PERM_READ, 0, 0, NULL, &ro), ZX_OK);
    assert_true(ro >= 0);
    close(ro);
    assert_int_equal(map(f, fd, h, ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, 0, NULL, NULL),
                     ZX_ERR_ACCESS_DENIED);

    /* Endpoint 1 lives on in the importer: closing its handle leaves a mapping record... */
    assert_int_equal(core_signals(f, exporter, e0) & ZX_IOB_PEER_CLOSED, 0);
    assert_int_equal(iob_core_handle_close(f->core, f->session, h), ZX_OK);
    assert_int_equal(core_signals(f, exporter, e0) & ZX_IOB_PEER_CLOSED, 0);
    /* ...and once that record goes, endpoint 0 sees PEER_CLOSED. */
    assert_int_equal(iob_core_session_release_mappings(f->core, f->session), ZX_OK);
    assert_int_equal(core_signals(f, exporter, e0) & ZX_IOB_PEER_CLOSED, ZX_IOB_PEER_CLOSED);

    /* Expired: NOT_FOUND, and the endpoint the token held is released. */
    zx_handle_t e0b, e1b;
    assert_int_equal(iob_core_iob_create(f->core, exporter, 0, &region, 1, &e0b, &e1b), ZX_OK);
    assert_int_equal(iob_core_handle_export(f->core, exporter, e1b, token), ZX_OK);
    f->now_ns += INT64_C(61) * 1000000000;
    assert_int_equal(import(f, fd, token, &h), ZX_ERR_NOT_FOUND);
    assert_int_equal(core_signals(f, exporter, e0b) & ZX_IOB_PEER_CLOSED, ZX_IOB_PEER_CLOSED);

    /* A wrong-sized IMPORT is a protocol error, not a lookup. */
    iob_broker_import_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_IMPORT, sizeof req - 1, 45);
    reply_t r;
    assert_int_equal(exchange(f, fd, &req, sizeof req - 1, -1, &r, NULL),
                     sizeof(iob_broker_status_reply_t));
    assert_int_equal(r.hdr.type, IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, 45);
    assert_int_equal(r.status.status, ZX_ERR_INVALID_ARGS);

    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.imports, 1);
    assert_int_equal(stats.imports_refused, 7);
    close(fd);
    iob_core_session_close(f->core, exporter);
}

static void test_policy_refuses(void** state) {
    fixture_t* f = *state;
    f->refuse_peers = true;
    int fd = client_connect(f);
    pump(f, fd);
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
    iobd_broker_stats_t stats;
    iobd_broker_get_stats(f->broker, &stats);
    assert_int_equal(stats.refused, 1);
}

static void test_start_arguments(void** state) {
    fixture_t* f = *state;
    iobd_broker_config_t bc;
    memset(&bc, 0, sizeof bc);
    iobd_broker_t* b = NULL;
    assert_int_equal(iobd_broker_start(&f->loop, f->core, &bc, &b), ZX_ERR_INVALID_ARGS);
    bc.socket_path = "/nonexistent-dir/x.sock";
    bc.log = quiet_log;
    assert_int_equal(iobd_broker_start(&f->loop, f->core, &bc, &b), ZX_ERR_BAD_PATH);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    bc.socket_path = longp;
    assert_int_equal(iobd_broker_start(&f->loop, f->core, &bc, &b), ZX_ERR_INVALID_ARGS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attach_requires_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_checks_peer_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_map_dup_fd_is_owned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grants_and_read_only_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lingering_fd_does_not_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_lingering_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_deadline, setup_short_deadline, teardown),
        cmocka_unit_test_setup_teardown(test_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
