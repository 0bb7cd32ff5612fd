/* SPDX-License-Identifier: MIT */
/* The transport table: rings (bare memfd, iobd, the floor), memcpy, pipe, Unix stream socket, TCP. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/memfd.h>

#include "bench/bench.h"
#include "shm/ring.h"

static void channel_reset(bench_channel_t* ch) {
    memset(ch, 0, sizeof(*ch));
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < BENCH_MAX_FDS; i++) {
            ch->fds[r][i] = -1;
        }
    }
}

static zx_status_t errno_status(int err) {
    switch (err) {
    case ENOMEM:
    case ENOSPC:
        return ZX_ERR_NO_MEMORY;
    case EMFILE:
    case ENFILE:
        return ZX_ERR_NO_RESOURCES;
    case EACCES:
    case EPERM:
        return ZX_ERR_ACCESS_DENIED;
    case EINVAL:
        return ZX_ERR_INVALID_ARGS;
    case EPIPE:
    case ECONNRESET:
        return ZX_ERR_PEER_CLOSED;
    default:
        return ZX_ERR_IO;
    }
}

/* ---- ring regions ---------------------------------------------------------------------- */

/*
 * Small messages want a ring that stays in cache; large ones need room for a few messages
 * in flight (a payload may take at most half the capacity). A hugepage-backed region is at
 * least one 2 MiB page, and the 4 KiB rows use the same size so the two compare fairly.
 */
uint64_t bench_ring_bytes_for(uint64_t msg_bytes, iob_backing_t backing, uint64_t override) {
    uint64_t page = iob_backing_page_size(backing);
    uint64_t bytes = override != 0 ? override : (UINT64_C(2) << 20);
    uint64_t rec = 1;
    while (rec < msg_bytes + IOB_RING_RECORD_HEADER) {
        rec <<= 1;
    }
    if (bytes < 4 * rec) {
        bytes = 4 * rec;
    }
    if (bytes < page) {
        bytes = page;
    }
    return bytes;
}

zx_status_t bench_memfd_region(iob_backing_t backing, uint64_t size, const char* name, int* fd_out,
                               char* note, size_t note_len) {
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    if (backing == IOB_BACKING_2M) {
        flags |= MFD_HUGETLB | MFD_HUGE_2MB;
    } else if (backing == IOB_BACKING_1G) {
        flags |= MFD_HUGETLB | MFD_HUGE_1GB;
    }
    int fd = memfd_create(name, flags);
    if (fd < 0) {
        snprintf(note, note_len, "memfd_create(%s): %s", iob_backing_name(backing),
                 strerror(errno));
        return errno_status(errno);
    }
    /*
     * fallocate takes the hugepages now: an empty pool is an error here, never a SIGBUS in
     * a child halfway through a trial.
     */
    if (ftruncate(fd, (off_t)size) != 0 || fallocate(fd, 0, 0, (off_t)size) != 0) {
        int err = errno;
        snprintf(note, note_len, "%s region of %llu bytes: %s", iob_backing_name(backing),
                 (unsigned long long)size, strerror(err));
        close(fd);
        return errno_status(err);
    }
    *fd_out = fd;
    return ZX_OK;
}

zx_status_t bench_ring_map(bench_role_t role, int ctrl_fd, int data_fd, bench_endpoint_t* ep) {
    struct stat cst;
    struct stat dst;
    if (fstat(ctrl_fd, &cst) != 0 || fstat(data_fd, &dst) != 0) {
        return ZX_ERR_BAD_HANDLE;
    }
    /* The sizes come from our own descriptors, never from the shared header. */
    ep->ctrl_size = (uint64_t)cst.st_size;
    ep->data_size = (uint64_t)dst.st_size;
    ep->ctrl = mmap(NULL, ep->ctrl_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    ctrl_fd, 0);
    int prot = role == BENCH_PRODUCER ? (PROT_READ | PROT_WRITE) : PROT_READ;
    ep->data = mmap(NULL, ep->data_size, prot, MAP_SHARED | MAP_POPULATE, data_fd, 0);
    if (ep->ctrl == MAP_FAILED || ep->data == MAP_FAILED) {
        zx_status_t st = errno_status(errno);
        bench_ring_unmap(ep);
        return st;
    }
    return ZX_OK;
}

void bench_ring_unmap(bench_endpoint_t* ep) {
    if (ep->ctrl != NULL && ep->ctrl != MAP_FAILED) {
        munmap(ep->ctrl, ep->ctrl_size);
    }
    if (ep->data != NULL && ep->data != MAP_FAILED) {
        munmap(ep->data, ep->data_size);
    }
    ep->ctrl = NULL;
    ep->data = NULL;
}

/* bare-ring: the orchestrator plays the IOB's creator with plain memfds. */
static zx_status_t bare_ring_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                     size_t note_len) {
    channel_reset(ch);
    int ctrl_fd = -1;
    int data_fd = -1;
    uint64_t page = iob_backing_page_size(spec->backing);
    zx_status_t st = bench_memfd_region(spec->backing, page, "iob-bench-ctrl", &ctrl_fd, note,
                                        note_len);
    if (st != ZX_OK) {
        return st;
    }
    st = bench_memfd_region(spec->backing, spec->ring_bytes, "iob-bench-data", &data_fd, note,
                            note_len);
    if (st != ZX_OK) {
        close(ctrl_fd);
        return st;
    }
    void* ctrl = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, ctrl_fd, 0);
    if (ctrl == MAP_FAILED) {
        snprintf(note, note_len, "mmap ctrl: %s", strerror(errno));
        close(ctrl_fd);
        close(data_fd);
        return ZX_ERR_NO_MEMORY;
    }
    st = iob_ring_format(ctrl, page, spec->ring_bytes);
    munmap(ctrl, page);
    /* The consumer gets a read-only file description of the data, as it would from iobd. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", data_fd);
    int data_ro = open(path, O_RDONLY | O_CLOEXEC);
    if (st != ZX_OK || data_ro < 0) {
        snprintf(note, note_len, "ring format/reopen failed");
        close(ctrl_fd);
        close(data_fd);
        if (data_ro >= 0) {
            close(data_ro);
        }
        return st != ZX_OK ? st : ZX_ERR_IO;
    }
    int ctrl2 = dup(ctrl_fd);
    ch->fds[BENCH_PRODUCER][0] = ctrl_fd;
    ch->fds[BENCH_PRODUCER][1] = data_fd;
    ch->fds[BENCH_CONSUMER][0] = ctrl2;
    ch->fds[BENCH_CONSUMER][1] = data_ro;
    ch->nfds[BENCH_PRODUCER] = 2;
    ch->nfds[BENCH_CONSUMER] = 2;
    return ctrl2 >= 0 ? ZX_OK : ZX_ERR_NO_RESOURCES;
}

static void no_discard(bench_channel_t* ch) {
    (void)ch;
}

static zx_status_t bare_ring_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                  const char* arg, bench_endpoint_t* ep) {
    (void)spec;
    (void)arg;
    if (nfds != 2) {
        return ZX_ERR_INVALID_ARGS;
    }
    zx_status_t st = bench_ring_map(role, BENCH_FD_BASE, BENCH_FD_BASE + 1, ep);
    close(BENCH_FD_BASE);
    close(BENCH_FD_BASE + 1);
    return st;
}

static void ring_close(bench_endpoint_t* ep) {
    bench_ring_unmap(ep);
}

/* ---- stream transports ------------------------------------------------------------------- */

zx_status_t bench_write_full(int fd, const void* buf, size_t len) {
    const unsigned char* p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno_status(errno);
        }
        p += n;
        len -= (size_t)n;
    }
    return ZX_OK;
}

zx_status_t bench_read_full(int fd, void* buf, size_t len, bool sock) {
    unsigned char* p = buf;
    while (len > 0) {
        /* MSG_WAITALL: the kernel gathers the whole message, so one call per message. */
        ssize_t n = sock ? recv(fd, p, len, MSG_WAITALL) : read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno_status(errno);
        }
        if (n == 0) {
            return ZX_ERR_PEER_CLOSED;
        }
        p += n;
        len -= (size_t)n;
    }
    return ZX_OK;
}

static zx_status_t stream_send(bench_endpoint_t* ep, const void* buf, size_t len) {
    return bench_write_full(ep->fd, buf, len);
}

static zx_status_t pipe_recv(bench_endpoint_t* ep, void* buf, size_t len) {
    return bench_read_full(ep->fd, buf, len, false);
}

static zx_status_t sock_recv(bench_endpoint_t* ep, void* buf, size_t len) {
    return bench_read_full(ep->fd, buf, len, true);
}

static zx_status_t stream_open_fd(const bench_spec_t* spec, bench_role_t role, int nfds,
                                  const char* arg, bench_endpoint_t* ep) {
    (void)spec;
    (void)role;
    (void)arg;
    if (nfds != 1) {
        return ZX_ERR_INVALID_ARGS;
    }
    ep->fd = BENCH_FD_BASE;
    return ZX_OK;
}

static void stream_close(bench_endpoint_t* ep) {
    if (ep->fd >= 0) {
        close(ep->fd);
        ep->fd = -1;
    }
}

static zx_status_t pipe_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                size_t note_len) {
    (void)spec;
    channel_reset(ch);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        snprintf(note, note_len, "pipe: %s", strerror(errno));
        return errno_status(errno);
    }
    /* The largest pipe an unprivileged user may ask for by default (pipe-max-size). */
    (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    ch->fds[BENCH_PRODUCER][0] = p[1];
    ch->fds[BENCH_CONSUMER][0] = p[0];
    ch->nfds[0] = ch->nfds[1] = 1;
    return ZX_OK;
}

static zx_status_t uds_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                               size_t note_len) {
    (void)spec;
    channel_reset(ch);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(note, note_len, "socketpair: %s", strerror(errno));
        return errno_status(errno);
    }
    ch->fds[BENCH_PRODUCER][0] = sv[0];
    ch->fds[BENCH_CONSUMER][0] = sv[1];
    ch->nfds[0] = ch->nfds[1] = 1;
    return ZX_OK;
}

/*
 * Unix datagrams: the syslog-style transport that mediated logging replaces. One send and
 * one recv per message; a datagram is never split, so a message must fit one (64 KiB here).
 */
static zx_status_t dgram_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                 size_t note_len) {
    if (spec->msg_bytes > 65536) {
        snprintf(note, note_len, "a datagram carries at most 64 KiB here");
        return ZX_ERR_NOT_SUPPORTED;
    }
    channel_reset(ch);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(note, note_len, "socketpair: %s", strerror(errno));
        return errno_status(errno);
    }
    /* Room for a few of the largest datagrams in flight. */
    int buf = 4 * 65536 + 4096;
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    ch->fds[BENCH_PRODUCER][0] = sv[0];
    ch->fds[BENCH_CONSUMER][0] = sv[1];
    ch->nfds[0] = ch->nfds[1] = 1;
    return ZX_OK;
}

static zx_status_t dgram_recv(bench_endpoint_t* ep, void* buf, size_t len) {
    for (;;) {
        ssize_t n = recv(ep->fd, buf, len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno_status(errno);
        }
        return (size_t)n == len ? ZX_OK : ZX_ERR_IO_DATA_INTEGRITY;
    }
}

/*
 * TCP loopback: the orchestrator listens on an ephemeral port; the consumer accepts on it,
 * the producer connects to it. Both connect/accept happen before the clock starts.
 */
static zx_status_t tcp_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                               size_t note_len) {
    (void)spec;
    channel_reset(ch);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) {
        snprintf(note, note_len, "socket: %s", strerror(errno));
        return errno_status(errno);
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (bind(ls, (struct sockaddr*)&sa, sizeof(sa)) != 0 || listen(ls, 4) != 0 ||
        getsockname(ls, (struct sockaddr*)&sa, &sl) != 0) {
        snprintf(note, note_len, "tcp listen: %s", strerror(errno));
        close(ls);
        return errno_status(errno);
    }
    ch->fds[BENCH_CONSUMER][0] = ls;
    ch->nfds[BENCH_CONSUMER] = 1;
    ch->nfds[BENCH_PRODUCER] = 0;
    snprintf(ch->arg[BENCH_PRODUCER], sizeof(ch->arg[0]), "%u", (unsigned)ntohs(sa.sin_port));
    return ZX_OK;
}

static zx_status_t tcp_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                            const char* arg, bench_endpoint_t* ep) {
    (void)spec;
    int one = 1;
    if (role == BENCH_CONSUMER) {
        if (nfds != 1) {
            return ZX_ERR_INVALID_ARGS;
        }
        int fd = accept4(BENCH_FD_BASE, NULL, NULL, SOCK_CLOEXEC);
        close(BENCH_FD_BASE);
        if (fd < 0) {
            return errno_status(errno);
        }
        ep->fd = fd;
    } else {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return errno_status(errno);
        }
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)atoi(arg));
        if (connect(fd, (struct sockaddr*)&sa, sizeof(sa)) != 0) {
            zx_status_t st = errno_status(errno);
            close(fd);
            return st;
        }
        ep->fd = fd;
    }
    (void)setsockopt(ep->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return ZX_OK;
}

/* memcpy: one process, no channel; the child runs it alone (bench_run.c). */
static zx_status_t single_prepare(const bench_spec_t* spec, bench_channel_t* ch, char* note,
                                  size_t note_len) {
    (void)spec;
    (void)note;
    (void)note_len;
    channel_reset(ch);
    return ZX_OK;
}

static zx_status_t single_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                               const char* arg, bench_endpoint_t* ep) {
    (void)spec;
    (void)role;
    (void)nfds;
    (void)arg;
    (void)ep;
    return ZX_OK;
}

static void single_close(bench_endpoint_t* ep) {
    (void)ep;
}

/*
 * The table. Rows are reported in this order. The iob-ring entry differs from bare-ring
 * only in prepare/open/close: it obtains the two regions through iobd (create, export,
 * import, map) and then runs the very same ring loop.
 */
const bench_transport_t bench_transports[] = {
    {"iob-ring", BENCH_CAP_RING | BENCH_CAP_IOBD, bench_iob_ring_prepare, bench_iob_ring_discard,
     bench_iob_ring_open, bench_iob_ring_close, NULL, NULL},
    {"bare-ring", BENCH_CAP_RING, bare_ring_prepare, no_discard, bare_ring_open, ring_close,
     NULL, NULL},
    /* The floor (bench_floor_ring.c): bare-ring's regions, its own minimal ring loops. */
    {"floor-ring", BENCH_CAP_FLOOR, bench_floor_prepare, no_discard, bare_ring_open, ring_close,
     NULL, NULL},
    {"memcpy", BENCH_CAP_SINGLE, single_prepare, no_discard, single_open, single_close, NULL,
     NULL},
    {"pipe", BENCH_CAP_STREAM, pipe_prepare, no_discard, stream_open_fd, stream_close,
     stream_send, pipe_recv},
    {"uds", BENCH_CAP_STREAM, uds_prepare, no_discard, stream_open_fd, stream_close,
     stream_send, sock_recv},
    {"tcp", BENCH_CAP_STREAM, tcp_prepare, no_discard, tcp_open, stream_close, stream_send,
     sock_recv},
    {"dgram", BENCH_CAP_STREAM, dgram_prepare, no_discard, stream_open_fd, stream_close,
     stream_send, dgram_recv},
    {"grpc", BENCH_CAP_STREAM | BENCH_CAP_IOBD, bench_grpc_prepare, bench_grpc_discard, bench_grpc_open,
     bench_grpc_close, bench_grpc_send, bench_grpc_recv},
    {"mediated", BENCH_CAP_STREAM | BENCH_CAP_POLLED | BENCH_CAP_IOBD, bench_mediated_prepare,
     bench_mediated_discard, bench_mediated_open, bench_mediated_close, bench_mediated_send,
     bench_mediated_recv},
};
const size_t bench_transport_count = sizeof(bench_transports) / sizeof(bench_transports[0]);

int bench_transport_find(const char* name) {
    for (size_t i = 0; i < bench_transport_count; i++) {
        if (strcmp(bench_transports[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}
