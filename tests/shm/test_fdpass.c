/* SPDX-License-Identifier: MIT */
/*
 * Tests for shm/fdpass.c over socketpair(AF_UNIX, SOCK_SEQPACKET): round trips with 0, 1 and
 * many descriptors, FD_CLOEXEC on arrival, every integrity failure closing what arrived
 * (checked by counting this process's open fds), peer shutdown, and the send failure paths
 * through the fault seam.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "shm/fdpass.h"
#include "shm/region.h"
#include "shm/sys.h"
#include "test_util.h"

typedef struct {
    int send; /* sv[0] */
    int recv; /* sv[1] */
} pair_t;

static int setup_pair(void** state) {
    static pair_t pair;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        return -1;
    }
    pair.send = sv[0];
    pair.recv = sv[1];
    *state = &pair;
    return 0;
}

static int teardown_pair(void** state) {
    pair_t* pair = *state;
    if (pair->send >= 0) {
        close(pair->send);
    }
    if (pair->recv >= 0) {
        close(pair->recv);
    }
    iob_test_fault_clear();
    return 0;
}

/* A memfd holding `tag`, so the receiver can tell which descriptor is which. */
static int tagged_fd(const char* tag) {
    int fd = memfd_create("iob-test-fdpass", MFD_CLOEXEC);
    assert_true(fd >= 0);
    size_t len = strlen(tag) + 1;
    assert_int_equal(write(fd, tag, len), (ssize_t)len);
    return fd;
}

static void assert_tag(int fd, const char* tag) {
    char buf[32] = {0};
    assert_true(pread(fd, buf, sizeof buf - 1, 0) > 0);
    assert_string_equal(buf, tag);
}

static void round_trip(pair_t* pair, size_t nfds, size_t payload_len) {
    int fds[IOB_FDPASS_MAX_FDS];
    char tag[32];
    for (size_t i = 0; i < nfds; i++) {
        snprintf(tag, sizeof tag, "fd-%zu", i);
        fds[i] = tagged_fd(tag);
    }
    char payload[256];
    for (size_t i = 0; i < payload_len; i++) {
        payload[i] = (char)('a' + i % 26);
    }
    int open_before = iob_test_count_open_fds();
    assert_int_equal(iob_fd_send(pair->send, payload, payload_len, fds, nfds), ZX_OK);
    /* The sender keeps its own copies. */
    for (size_t i = 0; i < nfds; i++) {
        assert_true(fcntl(fds[i], F_GETFD) >= 0);
    }

    char buf[256];
    int got[IOB_FDPASS_MAX_FDS];
    size_t len = 999, ngot = 999;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, got, IOB_FDPASS_MAX_FDS, &ngot),
                     ZX_OK);
    assert_int_equal(len, payload_len);
    assert_memory_equal(buf, payload, payload_len);
    assert_int_equal(ngot, nfds);
    assert_int_equal(iob_test_count_open_fds(), open_before + (int)nfds);
    for (size_t i = 0; i < ngot; i++) {
        assert_int_equal(fcntl(got[i], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        snprintf(tag, sizeof tag, "fd-%zu", i);
        assert_tag(got[i], tag); /* in order, and working */
        close(got[i]);
        close(fds[i]);
    }
}

static void test_round_trip_no_fds(void** state) {
    round_trip(*state, 0, 17);
}

static void test_round_trip_one_fd(void** state) {
    round_trip(*state, 1, 5);
}

static void test_round_trip_many_fds(void** state) {
    round_trip(*state, 5, 200);
    round_trip(*state, IOB_FDPASS_MAX_FDS, 1);
}

/* Descriptors with no data bytes: a real message, not a shutdown. */
static void test_round_trip_fds_without_payload(void** state) {
    round_trip(*state, 2, 0);
}

static void test_region_fd_round_trip(void** state) {
    pair_t* pair = *state;
    iob_region_t region;
    assert_int_equal(iob_region_create(IOB_BACKING_4K, 4096, "iob-test-pass", &region), ZX_OK);
    int ro = -1;
    assert_int_equal(iob_region_open_readonly(&region, &ro), ZX_OK);
    uint32_t index = 3;
    assert_int_equal(iob_fd_send(pair->send, &index, sizeof index, &ro, 1), ZX_OK);
    close(ro);
    uint32_t got_index = 0;
    int got = -1;
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_recv(pair->recv, &got_index, sizeof got_index, &len, &got, 1, &ngot),
                     ZX_OK);
    assert_int_equal(got_index, 3);
    assert_int_equal(ngot, 1);
    /* The read-only description survives the trip: still not writable-mappable. */
    assert_int_equal(fcntl(got, F_GETFL) & O_ACCMODE, O_RDONLY);
    errno = 0;
    assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, got, 0) == MAP_FAILED);
    assert_int_equal(errno, EACCES);
    close(got);
    iob_region_destroy(&region);
}

static void test_more_fds_than_max(void** state) {
    pair_t* pair = *state;
    int fds[3] = {tagged_fd("a"), tagged_fd("b"), tagged_fd("c")};
    int open_before = iob_test_count_open_fds();
    assert_int_equal(iob_fd_send(pair->send, "x", 1, fds, 3), ZX_OK);
    char buf[8];
    int got[2] = {-7, -7};
    size_t len = 999, ngot = 999;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, got, 2, &ngot),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_test_count_open_fds(), open_before);
    assert_int_equal(got[0], -7);
    assert_int_equal(len, 999);
    assert_int_equal(ngot, 999);
    /* Descriptors when none were expected at all. */
    assert_int_equal(iob_fd_send(pair->send, "x", 1, fds, 1), ZX_OK);
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, NULL, 0, &ngot),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_test_count_open_fds(), open_before);
    for (int i = 0; i < 3; i++) {
        close(fds[i]);
    }
}

/* Sends "x" with n copies of fd in one SCM_RIGHTS message (up to the kernel's 253). */
static void send_copies(pair_t* pair, int fd, size_t n) {
    enum { N = 253 };
    assert_true(n <= N);
    int fds[N];
    for (size_t i = 0; i < n; i++) {
        fds[i] = fd;
    }
    union {
        char buf[CMSG_SPACE(sizeof(int) * N)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * n);
    assert_int_equal(sendmsg(pair->send, &msg, 0), 1);
}

/*
 * iob_fd_recv_all hands over every descriptor a message can carry (the kernel's 253), so
 * the kernel never releases one in the receiving thread; with a truncated payload too.
 */
static void test_recv_all(void** state) {
    pair_t* pair = *state;
    int fd = tagged_fd("all");
    int open_before = iob_test_count_open_fds();
    send_copies(pair, fd, 253);
    char buf[8];
    int got[IOB_FDPASS_RECV_MAX_FDS];
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_recv_all(pair->recv, buf, sizeof buf, &len, got, &ngot), ZX_OK);
    assert_int_equal(len, 1);
    assert_int_equal(ngot, 253);
    assert_int_equal(iob_test_count_open_fds(), open_before + 253);
    for (size_t i = 0; i < ngot; i++) {
        assert_tag(got[i], "all");
        close(got[i]);
    }
    assert_int_equal(iob_fd_send(pair->send, "0123456789", 10, &fd, 1), ZX_OK);
    assert_int_equal(iob_fd_recv_all(pair->recv, buf, 4, &len, got, &ngot),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(ngot, 1);
    close(got[0]);
    /* Nothing queued on a non-blocking read. */
    assert_int_equal(iob_fd_recv_all_flags(pair->recv, buf, sizeof buf, MSG_DONTWAIT, &len, got,
                                           &ngot),
                     ZX_ERR_SHOULD_WAIT);
    assert_int_equal(ngot, 0);
    assert_int_equal(iob_test_count_open_fds(), open_before);
    close(fd);
}

/* Many more descriptors than the caller takes: every one is closed. */
static void test_control_truncated(void** state) {
    pair_t* pair = *state;
    enum { N = 64 };
    int fd = tagged_fd("many");
    send_copies(pair, fd, N);

    int open_before = iob_test_count_open_fds();
    char buf[8];
    int got[IOB_FDPASS_MAX_FDS];
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, got, IOB_FDPASS_MAX_FDS, &ngot),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_test_count_open_fds(), open_before);
    close(fd);
}

static void test_payload_truncated(void** state) {
    pair_t* pair = *state;
    int fds[2] = {tagged_fd("a"), tagged_fd("b")};
    int open_before = iob_test_count_open_fds();
    assert_int_equal(iob_fd_send(pair->send, "0123456789", 10, fds, 2), ZX_OK);
    char buf[4];
    int got[2];
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, got, 2, &ngot),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_test_count_open_fds(), open_before);
    /* SOCK_SEQPACKET drops the rest of a truncated message: the next one is intact. */
    assert_int_equal(iob_fd_send(pair->send, "ok", 2, NULL, 0), ZX_OK);
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, got, 2, &ngot), ZX_OK);
    assert_int_equal(len, 2);
    assert_int_equal(ngot, 0);
    close(fds[0]);
    close(fds[1]);
}

/* Any control message other than SCM_RIGHTS is refused (here SCM_CREDENTIALS). */
static void test_unexpected_cmsg(void** state) {
    pair_t* pair = *state;
    int on = 1;
    assert_int_equal(setsockopt(pair->recv, SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
    int fd = tagged_fd("cred");
    int open_before = iob_test_count_open_fds();
    assert_int_equal(iob_fd_send(pair->send, "x", 1, &fd, 1), ZX_OK);
    char buf[8];
    int got[1];
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, got, 1, &ngot),
                     ZX_ERR_IO_DATA_INTEGRITY);
    assert_int_equal(iob_test_count_open_fds(), open_before);
    close(fd);
}

static void test_peer_closed(void** state) {
    pair_t* pair = *state;
    /* A message queued before the shutdown is still delivered first. */
    assert_int_equal(iob_fd_send(pair->send, "last", 4, NULL, 0), ZX_OK);
    close(pair->send);
    pair->send = -1;
    char buf[8];
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, NULL, 0, &ngot), ZX_OK);
    assert_int_equal(len, 4);
    len = 999;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, NULL, 0, &ngot),
                     ZX_ERR_PEER_CLOSED);
    assert_int_equal(len, 999);
    /* And the other way round: sending to a closed peer, with no SIGPIPE. */
    assert_int_equal(iob_fd_send(pair->recv, "x", 1, NULL, 0), ZX_ERR_PEER_CLOSED);
}

static void test_nonblocking_empty(void** state) {
    pair_t* pair = *state;
    int flags = fcntl(pair->recv, F_GETFL);
    assert_int_equal(fcntl(pair->recv, F_SETFL, flags | O_NONBLOCK), 0);
    char buf[8];
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, NULL, 0, &ngot),
                     ZX_ERR_SHOULD_WAIT);
}

static void test_invalid_args(void** state) {
    pair_t* pair = *state;
    int fds[IOB_FDPASS_MAX_FDS + 1] = {0};
    char buf[8];
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_send(pair->send, "x", 1, fds, IOB_FDPASS_MAX_FDS + 1),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_fd_send(pair->send, "x", 1, NULL, 1), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_fd_send(pair->send, NULL, 1, NULL, 0), ZX_ERR_INVALID_ARGS);
    /* Would read as a shutdown at the other end. */
    assert_int_equal(iob_fd_send(pair->send, buf, 0, NULL, 0), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, NULL, NULL, 0, &ngot),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, NULL, 0, NULL),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_fd_recv(pair->recv, NULL, 1, &len, NULL, 0, &ngot), ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, NULL, 1, &ngot),
                     ZX_ERR_INVALID_ARGS);
    assert_int_equal(
        iob_fd_recv(pair->recv, buf, sizeof buf, &len, fds, IOB_FDPASS_MAX_FDS + 1, &ngot),
        ZX_ERR_INVALID_ARGS);
    assert_int_equal(iob_fd_send(-1, "x", 1, NULL, 0), ZX_ERR_BAD_HANDLE);
}

/* ---- send failure paths, through the fault seam ------------------------------------ */

static void test_send_faults(void** state) {
    pair_t* pair = *state;
    int fd = tagged_fd("fault");
    const struct {
        int err;
        zx_status_t status;
    } cases[] = {
        {EPIPE, ZX_ERR_PEER_CLOSED}, {ECONNRESET, ZX_ERR_PEER_CLOSED}, {EAGAIN, ZX_ERR_SHOULD_WAIT},
        {ENOBUFS, ZX_ERR_IO},        {EMFILE, ZX_ERR_NO_RESOURCES},    {ENOMEM, ZX_ERR_NO_MEMORY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        iob_test_fault_arm(IOB__SYS_SENDMSG, cases[i].err, 1, 1);
        zx_status_t status = iob_fd_send(pair->send, "x", 1, &fd, 1);
        iob_test_fault_clear();
        if (status != cases[i].status) {
            fail_msg("sendmsg failing with %s: %d, expected %d", strerror(cases[i].err), status,
                     cases[i].status);
        }
    }
    /* Nothing reached the socket. */
    int flags = fcntl(pair->recv, F_GETFL);
    assert_int_equal(fcntl(pair->recv, F_SETFL, flags | O_NONBLOCK), 0);
    char buf[8];
    size_t len = 0, ngot = 0;
    int got[1];
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, got, 1, &ngot),
                     ZX_ERR_SHOULD_WAIT);
    close(fd);
}

static void test_send_eintr_retried(void** state) {
    pair_t* pair = *state;
    iob_test_fault_arm(IOB__SYS_SENDMSG, EINTR, 1, 3);
    assert_int_equal(iob_fd_send(pair->send, "abc", 3, NULL, 0), ZX_OK);
    assert_int_equal(iob_test_fault_hits(), 3);
    iob_test_fault_clear();
    iob_test_fault_arm(IOB__SYS_RECVMSG, EINTR, 1, 1);
    char buf[8];
    size_t len = 0, ngot = 0;
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, NULL, 0, &ngot), ZX_OK);
    assert_int_equal(iob_test_fault_hits(), 1);
    iob_test_fault_clear();
    assert_int_equal(len, 3);
}

/*
 * A short send (which SOCK_SEQPACKET never does for real) is ZX_ERR_IO at the sender; the
 * receiver gets a shorter message and whatever fds came with it, and counts its own length.
 */
static void test_send_short(void** state) {
    pair_t* pair = *state;
    int fd = tagged_fd("short");
    iob_test_fault_arm(IOB__SYS_SENDMSG, IOB__FAULT_SHORT, 1, 1);
    assert_int_equal(iob_fd_send(pair->send, "abcd", 4, &fd, 1), ZX_ERR_IO);
    iob_test_fault_clear();
    char buf[8];
    size_t len = 0, ngot = 0;
    int got[1] = {-1};
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, got, 1, &ngot), ZX_OK);
    assert_int_equal(len, 3);
    assert_int_equal(ngot, 1);
    close(got[0]);
    close(fd);
}

static void test_recv_fault(void** state) {
    pair_t* pair = *state;
    char buf[8];
    size_t len = 0, ngot = 0;
    iob_test_fault_arm(IOB__SYS_RECVMSG, ECONNRESET, 1, 1);
    assert_int_equal(iob_fd_recv(pair->recv, buf, sizeof buf, &len, NULL, 0, &ngot),
                     ZX_ERR_PEER_CLOSED);
    iob_test_fault_clear();
}

#define PAIR_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup_pair, teardown_pair)

int main(void) {
    /* MSG_NOSIGNAL is what keeps us alive; make sure nothing else is masking a SIGPIPE. */
    signal(SIGPIPE, SIG_DFL);
    const struct CMUnitTest tests[] = {
        PAIR_TEST(test_round_trip_no_fds),    PAIR_TEST(test_round_trip_one_fd),
        PAIR_TEST(test_round_trip_many_fds),  PAIR_TEST(test_round_trip_fds_without_payload),
        PAIR_TEST(test_region_fd_round_trip), PAIR_TEST(test_more_fds_than_max),
        PAIR_TEST(test_control_truncated),
        PAIR_TEST(test_recv_all),    PAIR_TEST(test_payload_truncated),
        PAIR_TEST(test_unexpected_cmsg),      PAIR_TEST(test_peer_closed),
        PAIR_TEST(test_nonblocking_empty),    PAIR_TEST(test_invalid_args),
        PAIR_TEST(test_send_faults),          PAIR_TEST(test_send_eintr_retried),
        PAIR_TEST(test_send_short),           PAIR_TEST(test_recv_fault),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
