/* SPDX-License-Identifier: MIT */
/*
 * The map broker's mediated messages (WRITEV, ALLOCATE_ID) against a real iobd, spoken raw
 * over its socket: malformed requests (truncated, oversized, wrong version or layout, sizes
 * that do not add up, fds attached) each get an ERROR reply, leak nothing, and leave the
 * connection and the server serving; well-formed ones reach the core.
 */
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
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "client/lib/libiob.h"
#include "map_harness.h"
#include "shm/broker_wire.h"
#include "shm/mediated.h"
#include "test_regions.h"

static map_daemon_t g_daemon;

static int raw_connect(void) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    char path[300];
    snprintf(path, sizeof path, "%s", g_daemon.broker_path);
    assert_true(strlen(path) < sizeof a.sun_path);
    memcpy(a.sun_path, path, strlen(path) + 1);
    assert_int_equal(connect(fd, (struct sockaddr*)&a, sizeof a), 0);
    int big = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Receives one reply of exactly `len` bytes into out; returns its header type. */
static uint16_t recv_reply(int fd, void* out, size_t len) {
    unsigned char buf[IOB_BROKER_MAX_MSG + 1];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    assert_int_equal(n, (ssize_t)len);
    memcpy(out, buf, len);
    return ((iob_broker_hdr_t*)out)->type;
}

static void expect_error(int fd, uint64_t request_id, zx_status_t status) {
    iob_broker_status_reply_t r;
    assert_int_equal(recv_reply(fd, &r, sizeof r), IOB_BROKER_ERROR);
    assert_int_equal(r.hdr.request_id, request_id);
    assert_int_equal(r.status, status);
}

/* iobd ends the connection (its next read is EOF). */
static void expect_closed(int fd) {
    char b;
    assert_int_equal(recv(fd, &b, 1, 0), 0);
    close(fd);
}

/* iobd closes clients' fds on a thread of their own: soon, not necessarily before a reply. */
static void wait_no_fd_naming(const char* needle) {
    for (int i = 0; i < 300 && map_daemon_fds(&g_daemon, needle) != 0; i++) {
        usleep(10000);
    }
    assert_int_equal(map_daemon_fds(&g_daemon, needle), 0);
}

static void writev_init(iob_broker_writev_req_t* w, uint64_t id, size_t extra) {
    memset(w, 0, sizeof *w);
    iob_broker_hdr_init(&w->hdr, IOB_BROKER_WRITEV, (uint32_t)(sizeof *w + extra), id);
    w->layout = IOB_BROKER_MEDIATED_LAYOUT;
}

static void send_all(int fd, const void* a, size_t alen, const void* b, size_t blen) {
    struct iovec iov[2] = {{(void*)(uintptr_t)a, alen}, {(void*)(uintptr_t)b, blen}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = blen > 0 ? 2 : 1};
    assert_int_equal(sendmsg(fd, &m, MSG_NOSIGNAL), (ssize_t)(alen + blen));
}

/* Sends msg (and body) with `pass` attached as SCM_RIGHTS (none when pass < 0). */
static void send_with_fd(int fd, const void* msg, size_t len, const void* body, size_t blen,
                         int pass) {
    struct iovec iov[2] = {{(void*)(uintptr_t)msg, len}, {(void*)(uintptr_t)body, blen}};
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = blen > 0 ? 2 : 1};
    if (pass >= 0) {
        m.msg_control = cbuf;
        m.msg_controllen = sizeof cbuf;
        struct cmsghdr* c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass, sizeof pass);
    }
    assert_int_equal(sendmsg(fd, &m, MSG_NOSIGNAL), (ssize_t)(len + blen));
}

/* A raw connection attached to this process's session. */
static int attached_connect(void) {
    iob__session_t* s;
    assert_int_equal(iob__session_get(&s), ZX_OK);
    int fd = raw_connect();
    iob_broker_attach_req_t at;
    memset(&at, 0, sizeof at);
    iob_broker_hdr_init(&at.hdr, IOB_BROKER_ATTACH, sizeof at, 1);
    at.session_id = s->info.session_id;
    memcpy(at.secret, s->info.secret, sizeof at.secret);
    iob__session_put(s);
    send_all(fd, &at, sizeof at, NULL, 0);
    iob_broker_status_reply_t r;
    assert_int_equal(recv_reply(fd, &r, sizeof r), IOB_BROKER_ATTACH | IOB_BROKER_REPLY);
    assert_int_equal(r.status, ZX_OK);
    return fd;
}

static void test_malformed(void** state) {
    (void)state;
    int fd = raw_connect();
    iob_broker_writev_req_t w;

    /* Truncated: shorter than a header. */
    uint8_t tiny[8] = {1, 0, 5, 0};
    send_all(fd, tiny, sizeof tiny, NULL, 0);
    expect_error(fd, 0, ZX_ERR_INVALID_ARGS);

    /* Shorter than the fixed part, the header claiming so. */
    writev_init(&w, 11, 0);
    w.hdr.size = 100;
    send_all(fd, &w, 100, NULL, 0);
    expect_error(fd, 11, ZX_ERR_INVALID_ARGS);

    /* Wrong version. */
    writev_init(&w, 12, 0);
    w.hdr.version = 99;
    send_all(fd, &w, sizeof w, NULL, 0);
    expect_error(fd, 12, ZX_ERR_NOT_SUPPORTED);

    /* Wrong layout of the mediated body. */
    writev_init(&w, 13, 0);
    w.layout = 7;
    send_all(fd, &w, sizeof w, NULL, 0);
    expect_error(fd, 13, ZX_ERR_NOT_SUPPORTED);

    /* Oversized: more than the largest mediated message; the server sees it truncated. */
    size_t huge = IOB_BROKER_MAX_MEDIATED_MSG + 4096;
    uint8_t* big = calloc(1, huge);
    writev_init((iob_broker_writev_req_t*)(void*)big, 14, huge - sizeof w);
    send_all(fd, big, huge, NULL, 0);
    expect_error(fd, 0, ZX_ERR_INVALID_ARGS);

    /* The header's size disagrees with the datagram. */
    writev_init(&w, 15, 0);
    w.hdr.size += 8;
    send_all(fd, &w, sizeof w, NULL, 0);
    expect_error(fd, 15, ZX_ERR_INVALID_ARGS);

    /* Data that does not match the readable capacities (too long, too short). */
    uint8_t data[64] = {0};
    static const size_t sent[] = {64, 16};
    for (size_t i = 0; i < 2; i++) {
        uint64_t id = 16 + i;
        writev_init(&w, id, sent[i]);
        w.num_vectors = 1;
        w.vector_count = 1;
        w.vecs[0].capacity = 32;
        w.vecs[0].flags = IOB_BROKER_VEC_READABLE;
        send_all(fd, &w, sizeof w, data, sent[i]);
        expect_error(fd, id, ZX_ERR_INVALID_ARGS);
    }

    /* Capacities whose sum overflows; a count that disagrees; unknown flags. */
    writev_init(&w, 18, 0);
    w.num_vectors = 2;
    w.vector_count = 2;
    w.vecs[0].capacity = UINT64_MAX;
    w.vecs[0].flags = IOB_BROKER_VEC_READABLE;
    w.vecs[1].capacity = 2;
    w.vecs[1].flags = IOB_BROKER_VEC_READABLE;
    send_all(fd, &w, sizeof w, NULL, 0);
    expect_error(fd, 18, ZX_ERR_INVALID_ARGS);
    writev_init(&w, 19, 0);
    w.num_vectors = 9;
    w.vector_count = 9;
    send_all(fd, &w, sizeof w, NULL, 0);
    expect_error(fd, 19, ZX_ERR_INVALID_ARGS);
    writev_init(&w, 20, 0);
    w.flags = 0x80;
    send_all(fd, &w, sizeof w, NULL, 0);
    expect_error(fd, 20, ZX_ERR_INVALID_ARGS);

    /* An ALLOCATE_ID whose blob is not blob_size bytes. */
    iob_broker_allocate_id_req_t a;
    memset(&a, 0, sizeof a);
    iob_broker_hdr_init(&a.hdr, IOB_BROKER_ALLOCATE_ID, sizeof a + 4, 21);
    a.layout = IOB_BROKER_MEDIATED_LAYOUT;
    a.blob_size = 5;
    send_all(fd, &a, sizeof a, data, 4);
    expect_error(fd, 21, ZX_ERR_INVALID_ARGS);

    close(fd);
    free(big);
}

/*
 * A file descriptor attached: answered with ERROR, the connection ended, the fd closed by
 * iobd. The descriptor is a memfd with a name of its own, so that the check below looks for
 * exactly it among iobd's descriptors (iobd's count of descriptors also moves for reasons
 * of its own).
 */
static void test_passed_fd(void** state) {
    (void)state;
    iob_broker_writev_req_t w;
    int pass = memfd_create("iob-test-passed-fd", MFD_CLOEXEC);
    assert_true(pass >= 0);
    for (int k = 0; k < 3; k++) {
        int victim = raw_connect();
        writev_init(&w, 22, 0);
        send_with_fd(victim, &w, sizeof w, NULL, 0, pass);
        expect_error(victim, 22, ZX_ERR_INVALID_ARGS);
        expect_closed(victim);
    }
    close(pass);
    wait_no_fd_naming("iob-test-passed-fd");
}

/* Well-formed but not attached: the request's own reply, BAD_STATE. */
static void test_unattached(void** state) {
    (void)state;
    int fd = raw_connect();
    iob_broker_writev_req_t w;
    iob_broker_allocate_id_req_t a;
    writev_init(&w, 23, 0);
    send_all(fd, &w, sizeof w, NULL, 0);
    iob_broker_status_reply_t r;
    assert_int_equal(recv_reply(fd, &r, sizeof r), IOB_BROKER_WRITEV | IOB_BROKER_REPLY);
    assert_int_equal(r.hdr.request_id, 23);
    assert_int_equal(r.status, ZX_ERR_BAD_STATE);
    /* Answered: iobd holds the connection's fd now. */
    size_t fds_before = map_daemon_fds(&g_daemon, NULL);
    memset(&a, 0, sizeof a);
    iob_broker_hdr_init(&a.hdr, IOB_BROKER_ALLOCATE_ID, sizeof a, 24);
    a.layout = IOB_BROKER_MEDIATED_LAYOUT;
    send_all(fd, &a, sizeof a, NULL, 0);
    iob_broker_allocate_id_reply_t ar;
    assert_int_equal(recv_reply(fd, &ar, sizeof ar), IOB_BROKER_ALLOCATE_ID | IOB_BROKER_REPLY);
    assert_int_equal(ar.status, ZX_ERR_BAD_STATE);

    close(fd);
    /* The connection's own fd goes (give the loop a moment). */
    size_t fds_after = fds_before;
    for (int i = 0; i < 200 && fds_after >= fds_before; i++) {
        usleep(10000);
        fds_after = map_daemon_fds(&g_daemon, NULL);
    }
    assert_true(fds_after < fds_before);
}

/* A ring IOB over a shared region of `pages` pages (one of them the header), mapped by ep0. */
typedef struct ring_fixture {
    zx_handle_t sr, ep0, ep1;
    zx_vaddr_t map;
    uint64_t size;
    iob_mwrb_reader_t rd;
} ring_fixture_t;

static void ring_open(ring_fixture_t* f, uint64_t pages, uint64_t tag) {
    uint64_t pg = zx_system_get_page_size();
    f->size = pages * pg;
    assert_int_equal(zx_iob_create_shared_region(0, f->size, &f->sr), ZX_OK);
    assert_int_equal(ring_iob_create(f->sr, tag, &f->ep0, &f->ep1), ZX_OK);
    assert_int_equal(zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0,
                                     f->ep0, 0, 0, f->size, &f->map),
                     ZX_OK);
    assert_int_equal(iob_mwrb_reader_init(&f->rd, (void*)f->map, f->size, pg), ZX_OK);
}

static void ring_close(ring_fixture_t* f) {
    zx_vmar_unmap(zx_vmar_root_self(), f->map, f->size);
    zx_handle_t all[3] = {f->ep0, f->ep1, f->sr};
    zx_handle_close_many(all, 3);
}

/* The next record in rd is `len` bytes with `tag`; it is consumed. */
static void expect_record(iob_mwrb_reader_t* rd, uint64_t tag, const void* bytes, size_t len) {
    iob_mwrb_record_t rec;
    char got[64];
    assert_int_equal(iob_mwrb_peek(rd, &rec, got, sizeof got), ZX_OK);
    assert_int_equal(rec.tag, tag);
    assert_int_equal(rec.length, len);
    assert_memory_equal(got, bytes, len);
    assert_int_equal(iob_mwrb_advance(rd, &rec), ZX_OK);
}

/* An attached raw connection: a writev and an allocate_id reach the core. */
static void test_attached(void** state) {
    (void)state;
    ring_fixture_t f;
    ring_open(&f, 4, 77);
    zx_handle_t ep1 = f.ep1;
    int fd = attached_connect();
    iob_broker_status_reply_t r;

    /* Two vectors, the second unreadable: NOT_FOUND from the core, nothing written. */
    iob_broker_writev_req_t w;
    writev_init(&w, 2, 5);
    w.handle = ep1;
    w.num_vectors = 2;
    w.vector_count = 2;
    w.vecs[0].capacity = 5;
    w.vecs[0].flags = IOB_BROKER_VEC_READABLE;
    w.vecs[1].capacity = 3;
    send_all(fd, &w, sizeof w, "hello", 5);
    assert_int_equal(recv_reply(fd, &r, sizeof r), IOB_BROKER_WRITEV | IOB_BROKER_REPLY);
    assert_int_equal(r.status, ZX_ERR_NOT_FOUND);
    /* The same, readable: one record "hello". */
    w.hdr.request_id = 3;
    w.num_vectors = 1;
    w.vector_count = 1;
    memset(&w.vecs[1], 0, sizeof w.vecs[1]);
    send_all(fd, &w, sizeof w, "hello", 5);
    assert_int_equal(recv_reply(fd, &r, sizeof r), IOB_BROKER_WRITEV | IOB_BROKER_REPLY);
    assert_int_equal(r.status, ZX_OK);
    expect_record(&f.rd, 77, "hello", 5);
    /* Unreadable array flag: INVALID_ARGS (step 7), after the handle check. */
    writev_init(&w, 4, 0);
    w.handle = ep1;
    w.num_vectors = 3;
    w.flags = IOB_BROKER_WRITEV_VECTORS_UNREADABLE;
    send_all(fd, &w, sizeof w, NULL, 0);
    assert_int_equal(recv_reply(fd, &r, sizeof r), IOB_BROKER_WRITEV | IOB_BROKER_REPLY);
    assert_int_equal(r.status, ZX_ERR_INVALID_ARGS);
    w.handle = 0x7ffffff3u;
    w.hdr.request_id = 5;
    send_all(fd, &w, sizeof w, NULL, 0);
    assert_int_equal(recv_reply(fd, &r, sizeof r), IOB_BROKER_WRITEV | IOB_BROKER_REPLY);
    assert_int_equal(r.status, ZX_ERR_BAD_HANDLE);
    close(fd);

    /* The library's own path still works after all of this. */
    zx_iovec_t v = {"again", 5};
    assert_int_equal(zx_iob_writev(ep1, 0, 0, &v, 1), ZX_OK);
    expect_record(&f.rd, 77, "again", 5);
    ring_close(&f);
}

static void packed_init(iob_broker_writev_packed_req_t* w, uint64_t id, zx_handle_t handle,
                        uint32_t num_vectors, size_t extra) {
    memset(w, 0, sizeof *w);
    iob_broker_hdr_init(&w->hdr, IOB_BROKER_WRITEV_PACKED, (uint32_t)(sizeof *w + extra), id);
    w->layout = IOB_BROKER_MEDIATED_LAYOUT;
    w->handle = handle;
    w->num_vectors = num_vectors;
}

/* The status of one WRITEV or WRITEV_PACKED request on fd, answered as its own type. */
static zx_status_t writev_status(int fd, const void* req, size_t len, const void* body,
                                 size_t blen, uint64_t id) {
    const iob_broker_hdr_t* hdr = req;
    send_all(fd, req, len, body, blen);
    iob_broker_status_reply_t r;
    assert_int_equal(recv_reply(fd, &r, sizeof r), hdr->type | IOB_BROKER_REPLY);
    assert_int_equal(r.hdr.request_id, id);
    return r.status;
}

/*
 * WRITEV_PACKED: the record is the bytes sent, and every answer is the one the full WRITEV
 * of the same call (all vectors readable) gets, at the same step; malformed ones are
 * refused as such.
 */
static void test_packed(void** state) {
    (void)state;
    uint64_t pg = zx_system_get_page_size();
    ring_fixture_t f;
    ring_open(&f, 2, 78);
    zx_handle_t ep0 = f.ep0;
    zx_handle_t ep1 = f.ep1;
    iob_mwrb_reader_t* rd = &f.rd;
    int fd = attached_connect();

    /* Three vectors' bytes in one: one record of them all. */
    iob_broker_writev_packed_req_t p;
    packed_init(&p, 30, ep1, 3, 11);
    assert_int_equal(writev_status(fd, &p, sizeof p, "hello world", 11, 30), ZX_OK);
    expect_record(rd, 78, "hello world", 11);

    /* Each case as packed and as the full form with one readable vector: the same status. */
    struct {
        zx_handle_t handle;
        uint64_t options;
        uint32_t region_index;
        uint32_t num_vectors;
        size_t bytes;
        zx_status_t want;
    } cases[] = {
        {0x7ffffff3u, 0, 0, 1, 8, ZX_ERR_BAD_HANDLE},
        {ep0, 0, 0, 1, 8, ZX_ERR_ACCESS_DENIED},
        {ep1, 1, 0, 1, 8, ZX_ERR_INVALID_ARGS},
        {ep1, 0, 1, 1, 8, ZX_ERR_OUT_OF_RANGE},
        {ep1, 0, 0, 1, pg, ZX_ERR_NO_SPACE}, /* more than the one-page ring holds */
        {ep1, 0, 0, 0, 0, ZX_OK},
    };
    static unsigned char bytes[65536];
    memset(bytes, 0x6b, sizeof bytes);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t id = 40 + 2 * i;
        packed_init(&p, id, cases[i].handle, cases[i].num_vectors, cases[i].bytes);
        p.options = cases[i].options;
        p.region_index = cases[i].region_index;
        zx_status_t packed = writev_status(fd, &p, sizeof p, bytes, cases[i].bytes, id);
        iob_broker_writev_req_t w;
        writev_init(&w, id + 1, cases[i].bytes);
        w.handle = cases[i].handle;
        w.options = cases[i].options;
        w.region_index = cases[i].region_index;
        w.num_vectors = cases[i].num_vectors;
        w.vector_count = cases[i].num_vectors;
        if (cases[i].num_vectors > 0) {
            w.vecs[0].capacity = cases[i].bytes;
            w.vecs[0].flags = IOB_BROKER_VEC_READABLE;
        }
        zx_status_t full = writev_status(fd, &w, sizeof w, bytes, cases[i].bytes, id + 1);
        assert_int_equal(packed, cases[i].want);
        assert_int_equal(full, cases[i].want);
    }
    /* The two empty records the last case wrote. */
    for (int k = 0; k < 2; k++) {
        expect_record(rd, 78, "", 0);
    }
    iob_mwrb_record_t rec;
    char got[8];
    assert_int_equal(iob_mwrb_peek(rd, &rec, got, sizeof got), ZX_ERR_SHOULD_WAIT);

    /* Malformed: more than 8 vectors; bytes with no vector to hold them; a short fixed part. */
    packed_init(&p, 60, ep1, 9, 0);
    send_all(fd, &p, sizeof p, NULL, 0);
    expect_error(fd, 60, ZX_ERR_INVALID_ARGS);
    packed_init(&p, 61, ep1, 0, 4);
    send_all(fd, &p, sizeof p, "abcd", 4);
    expect_error(fd, 61, ZX_ERR_INVALID_ARGS);
    packed_init(&p, 62, ep1, 1, 0);
    p.hdr.size = sizeof p - 8;
    send_all(fd, &p, sizeof p - 8, NULL, 0);
    expect_error(fd, 62, ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_mwrb_peek(rd, &rec, got, sizeof got), ZX_ERR_SHOULD_WAIT);

    close(fd);
    ring_close(&f);
}

static int blob_memfd(size_t n, unsigned char fill) {
    int m = memfd_create("iob-test-blob-fd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(m >= 0);
    unsigned char* b = malloc(n);
    assert_non_null(b);
    memset(b, fill, n);
    assert_int_equal(write(m, b, n), (ssize_t)n);
    free(b);
    return m;
}

/*
 * ALLOCATE_ID with the blob in a memfd (IOB_BROKER_ALLOC_BLOB_IN_FD): stored when the fd is
 * a memfd holding the blob; every other fd or layout refused, and never kept by iobd.
 */
static void test_blob_in_fd(void** state) {
    (void)state;
    uint64_t region = 1u << 20;
    zx_handle_t ep0, ep1;
    zx_vaddr_t map;
    assert_int_equal(idalloc_iob_create(region, &ep0, &ep1, &map), ZX_OK);
    int fd = attached_connect();

    size_t n = 100000;
    iob_broker_allocate_id_req_t a;
    memset(&a, 0, sizeof a);
    iob_broker_hdr_init(&a.hdr, IOB_BROKER_ALLOCATE_ID, sizeof a, 2);
    a.layout = IOB_BROKER_MEDIATED_LAYOUT;
    a.handle = ep1;
    a.flags = IOB_BROKER_ALLOC_BLOB_IN_FD;
    a.blob_size = n;
    iob_broker_allocate_id_reply_t ar;

    /* The flag without an fd, or with bytes as well, or with the unreadable flag. */
    send_with_fd(fd, &a, sizeof a, NULL, 0, -1);
    expect_error(fd, 2, ZX_ERR_INVALID_ARGS);
    int good = blob_memfd(n, 0x5a);
    a.hdr.size = sizeof a + 3;
    send_with_fd(fd, &a, sizeof a, "abc", 3, good);
    expect_error(fd, 2, ZX_ERR_INVALID_ARGS);
    a.hdr.size = sizeof a;
    a.flags = IOB_BROKER_ALLOC_BLOB_IN_FD | IOB_BROKER_ALLOC_BLOB_UNREADABLE;
    send_with_fd(fd, &a, sizeof a, NULL, 0, good);
    expect_error(fd, 2, ZX_ERR_INVALID_ARGS);
    /*
     * An fd without the flag is any other message's fd, and an fd that is not a memfd (a
     * pipe) is not a blob: either ends the connection.
     */
    a.flags = 0;
    a.blob_size = 0;
    int victim = attached_connect();
    send_with_fd(victim, &a, sizeof a, NULL, 0, good);
    expect_error(victim, 2, ZX_ERR_INVALID_ARGS);
    expect_closed(victim);
    a.flags = IOB_BROKER_ALLOC_BLOB_IN_FD;
    a.blob_size = n;
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct stat pst;
    assert_int_equal(fstat(p[0], &pst), 0);
    char pipe_name[64];
    snprintf(pipe_name, sizeof pipe_name, "pipe:[%lu]", (unsigned long)pst.st_ino);
    victim = attached_connect();
    send_with_fd(victim, &a, sizeof a, NULL, 0, p[0]);
    expect_error(victim, 2, ZX_ERR_INVALID_ARGS);
    expect_closed(victim);
    /* A memfd shorter than the blob: refused, the connection kept. */
    int short_fd = blob_memfd(n - 1, 0x5a);
    send_with_fd(fd, &a, sizeof a, NULL, 0, short_fd);
    expect_error(fd, 2, ZX_ERR_INVALID_ARGS);
    /* The checks come before the blob is read: a bad handle is the call's own status. */
    a.handle = 0x7ffffff3u;
    send_with_fd(fd, &a, sizeof a, NULL, 0, short_fd);
    assert_int_equal(recv_reply(fd, &ar, sizeof ar), IOB_BROKER_ALLOCATE_ID | IOB_BROKER_REPLY);
    assert_int_equal(ar.status, ZX_ERR_BAD_HANDLE);
    a.handle = ep1;
    /* Nothing was taken by any of those. */
    uint32_t next = 99;
    assert_int_equal(iob_idalloc_next_id((const void*)map, region, &next), ZX_OK);
    assert_int_equal(next, 0);
    /* A memfd with the blob: stored. */
    send_with_fd(fd, &a, sizeof a, NULL, 0, good);
    assert_int_equal(recv_reply(fd, &ar, sizeof ar), IOB_BROKER_ALLOCATE_ID | IOB_BROKER_REPLY);
    assert_int_equal(ar.status, ZX_OK);
    assert_int_equal(ar.id, 0);
    const void* blob;
    uint32_t size;
    assert_int_equal(iob_idalloc_lookup((const void*)map, region, 0, &blob, &size), ZX_OK);
    assert_int_equal(size, n);
    const unsigned char* b = blob;
    assert_int_equal(b[0], 0x5a);
    assert_int_equal(b[n - 1], 0x5a);
    /* iobd kept none of the descriptors. */
    close(good);
    close(short_fd);
    close(p[0]);
    close(p[1]);
    wait_no_fd_naming("iob-test-blob-fd");
    wait_no_fd_naming(pipe_name);
    close(fd);
    zx_vmar_unmap(zx_vmar_root_self(), map, region);
    zx_handle_close(ep0);
    zx_handle_close(ep1);
}

int main(void) {
    map_daemon_start(&g_daemon, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_passed_fd),
        cmocka_unit_test(test_unattached),
        cmocka_unit_test(test_attached),
        cmocka_unit_test(test_packed),
        cmocka_unit_test(test_blob_in_fd),
    };
    int rc = cmocka_run_group_tests_name("mediated_broker", tests, NULL, NULL);
    map_daemon_stop(&g_daemon);
    return rc;
}
