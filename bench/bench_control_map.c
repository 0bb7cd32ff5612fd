/* SPDX-License-Identifier: MIT */
/*
 * The mapping figures (issue 4), through libiob exactly as users call it.
 *
 * Process A (map-create) runs W warm + N measured rounds. Each round it creates
 *   - the IOB: zx_iob_create of one region of SIZE bytes (iobd makes the memfd server-side,
 *     so this figure includes the RPC), and
 *   - the floor: memfd_create (+MFD_HUGETLB on 2M) + fallocate + F_ADD_SEALS of SIZE bytes,
 * in alternating order (so neither always runs on a cache or pool warmed by the other),
 * exports ep1, and sends the token and the floor's memfd to B over the seqpacket pair.
 *
 * Process B (map-import), started once and connected before the first round, times in
 * alternating order
 *   - iob_handle_import + zx_vmar_map_iob(PERM_READ | MAP_RANGE) + a read of one byte per
 *     page, and
 *   - the floor: mmap(PROT_READ, MAP_SHARED | MAP_POPULATE) of the received memfd + the same
 *     reads.
 * ZX_VM_MAP_RANGE is MAP_POPULATE in libiob (client/lib/vmar.c), so both sides populate the
 * page tables in the kernel; the reads are there to prove "ready to read": the minor faults
 * they take (RUSAGE_THREAD) are reported and must be 0. B then unmaps, closes, and answers
 * A, which closes ep0 and the floor before the next round.
 */
#include <linux/memfd.h> /* MFD_HUGE_2MB; before sys/mman.h, which then skips its MFD_* */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

#include "bench/bench_control.h"

typedef struct map_args {
    const char* target;
    int runs;
    int warm;
    uint64_t size;
    uint64_t page;
    bool hugetlb;
} map_args_t;

static void parse_map_args(int argc, char** argv, map_args_t* a) {
    memset(a, 0, sizeof *a);
    a->runs = 20;
    a->warm = 3;
    a->size = UINT64_C(64) << 20;
    a->page = 4096;
    for (int i = 3; i + 1 < argc; i += 2) { /* argv: self --role NAME then pairs */
        const char* k = argv[i];
        const char* v = argv[i + 1];
        if (strcmp(k, "--target") == 0) {
            a->target = v;
        } else if (strcmp(k, "--runs") == 0) {
            a->runs = atoi(v);
        } else if (strcmp(k, "--warm") == 0) {
            a->warm = atoi(v);
        } else if (strcmp(k, "--size") == 0) {
            a->size = strtoull(v, NULL, 10);
        } else if (strcmp(k, "--page") == 0) {
            a->page = strtoull(v, NULL, 10);
        } else if (strcmp(k, "--hugetlb") == 0) {
            a->hugetlb = atoi(v) != 0;
        }
    }
}

/* ---- the seqpacket pair: one message, optionally with one descriptor ---- */

static bool peer_send(int sock, const char* text, int fd) {
    struct iovec iov = {.iov_base = (void*)(uintptr_t)text, .iov_len = strlen(text) + 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } c;
    memset(&c, 0, sizeof c);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        msg.msg_control = c.buf;
        msg.msg_controllen = sizeof c.buf;
        struct cmsghdr* h = CMSG_FIRSTHDR(&msg);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &fd, sizeof fd);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)iov.iov_len;
}

/* Returns the message length (0: the peer closed), -1 on error; *fd_out -1 when none. */
static ssize_t peer_recv(int sock, char* text, size_t len, int* fd_out) {
    struct iovec iov = {.iov_base = text, .iov_len = len - 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } c;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = c.buf;
    msg.msg_controllen = sizeof c.buf;
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    *fd_out = -1;
    if (n < 0) {
        return -1;
    }
    text[n] = '\0';
    for (struct cmsghdr* h = CMSG_FIRSTHDR(&msg); h != NULL; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
            memcpy(fd_out, CMSG_DATA(h), sizeof(int));
        }
    }
    return n;
}

/* ---- process A ---- */

/* The floor of "creating that IOB": what iobd's region code does, minus everything else. */
static int floor_create(const map_args_t* a) {
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    if (a->hugetlb) {
        flags |= MFD_HUGETLB | MFD_HUGE_2MB;
    }
    int fd = memfd_create("bctl-floor", flags);
    if (fd < 0) {
        return -1;
    }
    int rc;
    do {
        rc = fallocate(fd, 0, 0, (off_t)a->size);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static zx_iob_region_t map_region(uint64_t size) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_PRIVATE;
    r.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
               ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    r.size = size;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
    return r;
}

/* Connects this role's libiob session; on failure says so on the reply pipe. */
static bool map_connect(const map_args_t* a, iob_client_t** client) {
    zx_status_t st = iob_client_connect(a->target, client);
    if (st != ZX_OK) {
        bctl_write_line(BCTL_FD_RES, "err connect %s: %s", a->target ? a->target : "(default)",
                        zx_status_get_string(st));
        return false;
    }
    return true;
}

/* One round's durations in process A, in ns. */
typedef struct creator_times {
    double iob, floor, export_;
} creator_times_t;

/*
 * One round of A: create the IOB and the floor's memfd (alternating which goes first),
 * export ep1, hand B the token and the memfd, wait for B's answer. err stays "" on success.
 */
static void creator_round(const map_args_t* a, const zx_iob_region_t* region, int i,
                          creator_times_t* t, char* err, size_t err_len) {
    zx_handle_t ep0 = ZX_HANDLE_INVALID;
    zx_handle_t ep1 = ZX_HANDLE_INVALID;
    int ffd = -1;
    zx_status_t st;
    for (int k = 0; k < 2 && err[0] == '\0'; k++) {
        bool floor_now = (k == 0) == ((i & 1) == 0);
        int64_t t0 = bctl_now_ns();
        if (floor_now) {
            ffd = floor_create(a);
            if (ffd < 0) {
                snprintf(err, err_len, "floor memfd+fallocate+seal: %s", strerror(errno));
            }
            t->floor = (double)(bctl_now_ns() - t0);
        } else {
            st = zx_iob_create(0, region, 1, &ep0, &ep1);
            if (st != ZX_OK) {
                snprintf(err, err_len, "zx_iob_create %" PRIu64 " bytes: %s", a->size,
                         zx_status_get_string(st));
            }
            t->iob = (double)(bctl_now_ns() - t0);
        }
    }
    char token[IOB_TOKEN_SIZE] = "";
    if (err[0] == '\0') {
        int64_t t0 = bctl_now_ns();
        st = iob_handle_export(ep1, token);
        t->export_ = (double)(bctl_now_ns() - t0);
        if (st != ZX_OK) {
            snprintf(err, err_len, "iob_handle_export: %s", zx_status_get_string(st));
        } else {
            ep1 = ZX_HANDLE_INVALID; /* consumed */
        }
    }
    if (err[0] == '\0') {
        char msg[128];
        snprintf(msg, sizeof msg, "tok %s", token);
        char reply[256];
        int none;
        if (!peer_send(BCTL_FD_PEER, msg, ffd)) {
            snprintf(err, err_len, "send to B: %s", strerror(errno));
        } else if (peer_recv(BCTL_FD_PEER, reply, sizeof reply, &none) <= 0) {
            snprintf(err, err_len, "B went away");
        } else if (strncmp(reply, "err", 3) == 0) {
            snprintf(err, err_len, "B: %.150s", reply);
        }
    }
    if (ep0 != ZX_HANDLE_INVALID) {
        zx_handle_close(ep0);
    }
    if (ep1 != ZX_HANDLE_INVALID) {
        zx_handle_close(ep1);
    }
    if (ffd >= 0) {
        close(ffd);
    }
}

int bctl_map_creator_main(int argc, char** argv) {
    map_args_t a;
    parse_map_args(argc, argv, &a);
    iob_client_t* client = NULL;
    if (!map_connect(&a, &client)) {
        return 1;
    }
    int total = a.warm + a.runs;
    double* t_iob = calloc((size_t)total, sizeof(double));
    double* t_floor = calloc((size_t)total, sizeof(double));
    double* t_export = calloc((size_t)total, sizeof(double));
    char err[200] = "";
    if (t_iob == NULL || t_floor == NULL || t_export == NULL) {
        snprintf(err, sizeof err, "out of memory");
    }
    zx_iob_region_t region = map_region(a.size);
    int measured = 0;
    for (int i = 0; err[0] == '\0' && i < total; i++) {
        creator_times_t t = {0, 0, 0};
        creator_round(&a, &region, i, &t, err, sizeof err);
        if (i >= a.warm && err[0] == '\0') {
            t_iob[measured] = t.iob / 1000.0;
            t_floor[measured] = t.floor / 1000.0;
            t_export[measured] = t.export_ / 1000.0;
            measured++;
        }
    }
    int rc = 0;
    if (err[0] != '\0') {
        bctl_write_line(BCTL_FD_RES, "err %s", err);
        rc = 1;
    } else {
        char line[BCTL_LINE_MAX] = "ok";
        bctl_stats_t s;
        iob_tk_stats(t_iob, (size_t)measured, &s);
        bctl_stats_format(line, sizeof line, "create", &s);
        iob_tk_stats(t_floor, (size_t)measured, &s);
        bctl_stats_format(line, sizeof line, "floor", &s);
        iob_tk_stats(t_export, (size_t)measured, &s);
        bctl_stats_format(line, sizeof line, "export", &s);
        bctl_write_line(BCTL_FD_RES, "%s", line);
    }
    /* Closing our end tells B the rounds are over. */
    close(BCTL_FD_PEER);
    free(t_iob);
    free(t_floor);
    free(t_export);
    iob_client_close(client);
    return rc;
}

/* ---- process B ---- */

static long thread_minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt;
}

/* One byte per page; the sum keeps the reads from being optimised away. */
static unsigned touch_pages(const volatile unsigned char* p, uint64_t size, uint64_t page) {
    unsigned sum = 0;
    for (uint64_t off = 0; off < size; off += page) {
        sum += p[off];
    }
    return sum;
}

enum { B_IMPORT, B_MAP, B_TOUCH, B_TOTAL, B_FMAP, B_FTOUCH, B_FTOTAL, B_COUNT };
static const char* const k_b_series[B_COUNT] = {"import", "map",   "touch", "total",
                                                 "fmap",   "ftouch", "ftotal"};

/* The floor's side of a round: map the memfd (populated) and read a byte per page. */
static bool importer_floor(const map_args_t* a, int ffd, double* t, long* faults, unsigned* sink,
                           char* err, size_t err_len) {
    int64_t t0 = bctl_now_ns();
    void* p = mmap(NULL, (size_t)a->size, PROT_READ, MAP_SHARED | MAP_POPULATE, ffd, 0);
    int64_t t1 = bctl_now_ns();
    if (p == MAP_FAILED) {
        snprintf(err, err_len, "floor mmap: %s", strerror(errno));
        return false;
    }
    long f0 = thread_minor_faults();
    *sink += touch_pages(p, a->size, a->page);
    long f1 = thread_minor_faults();
    int64_t t2 = bctl_now_ns();
    *faults = f1 - f0;
    t[B_FMAP] = (double)(t1 - t0);
    t[B_FTOUCH] = (double)(t2 - t1);
    t[B_FTOTAL] = (double)(t2 - t0);
    munmap(p, (size_t)a->size);
    return true;
}

/* The IOB's side of a round: import the token, map the region, read a byte per page. */
static bool importer_iob(const map_args_t* a, const char* token, double* t, long* faults,
                         unsigned* sink, char* err, size_t err_len) {
    zx_handle_t h = ZX_HANDLE_INVALID;
    zx_vaddr_t addr = 0;
    int64_t t0 = bctl_now_ns();
    zx_status_t st = iob_handle_import(token, &h);
    int64_t t1 = bctl_now_ns();
    if (st != ZX_OK) {
        snprintf(err, err_len, "iob_handle_import: %s", zx_status_get_string(st));
        return false;
    }
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_MAP_RANGE, 0, h, 0, 0,
                         (size_t)a->size, &addr);
    int64_t t2 = bctl_now_ns();
    if (st != ZX_OK) {
        snprintf(err, err_len, "zx_vmar_map_iob: %s", zx_status_get_string(st));
        zx_handle_close(h);
        return false;
    }
    long f0 = thread_minor_faults();
    *sink += touch_pages((const volatile unsigned char*)addr, a->size, a->page);
    long f1 = thread_minor_faults();
    int64_t t3 = bctl_now_ns();
    *faults = f1 - f0;
    t[B_IMPORT] = (double)(t1 - t0);
    t[B_MAP] = (double)(t2 - t1);
    t[B_TOUCH] = (double)(t3 - t2);
    t[B_TOTAL] = (double)(t3 - t0);
    zx_vmar_unmap(zx_vmar_root_self(), addr, a->size);
    zx_handle_close(h);
    return true;
}

int bctl_map_importer_main(int argc, char** argv) {
    map_args_t a;
    parse_map_args(argc, argv, &a);
    iob_client_t* client = NULL;
    if (!map_connect(&a, &client)) {
        return 1;
    }
    bctl_write_line(BCTL_FD_RES, "ok ready");
    size_t cap = (size_t)(a.warm + a.runs) + 1;
    double* s[B_COUNT];
    bool ok = true;
    for (int i = 0; i < B_COUNT; i++) {
        s[i] = calloc(cap, sizeof(double));
        ok = ok && s[i] != NULL;
    }
    long faults_iob = 0;
    long faults_floor = 0;
    unsigned sink = 0;
    size_t round = 0;
    size_t measured = 0;
    char err[200] = "";
    while (ok && round < cap) {
        char msg[256];
        int ffd = -1;
        ssize_t n = peer_recv(BCTL_FD_PEER, msg, sizeof msg, &ffd);
        if (n <= 0) {
            break; /* A is done */
        }
        char token[IOB_TOKEN_SIZE] = "";
        if (sscanf(msg, "tok %63s", token) != 1 || ffd < 0) {
            snprintf(err, sizeof err, "bad message from A");
            break;
        }
        double t[B_COUNT] = {0};
        long f_iob = 0;
        long f_floor = 0;
        /* Which side goes first alternates round by round. */
        bool floor_first = (round & 1) == 0;
        bool done = floor_first ? importer_floor(&a, ffd, t, &f_floor, &sink, err, sizeof err) &&
                                      importer_iob(&a, token, t, &f_iob, &sink, err, sizeof err)
                                : importer_iob(&a, token, t, &f_iob, &sink, err, sizeof err) &&
                                      importer_floor(&a, ffd, t, &f_floor, &sink, err, sizeof err);
        close(ffd);
        if (!done) {
            peer_send(BCTL_FD_PEER, "err", -1);
            break;
        }
        if (round >= (size_t)a.warm) {
            for (int i = 0; i < B_COUNT; i++) {
                s[i][measured] = t[i] / 1000.0;
            }
            faults_iob += f_iob;
            faults_floor += f_floor;
            measured++;
        }
        round++;
        if (!peer_send(BCTL_FD_PEER, "done", -1)) {
            snprintf(err, sizeof err, "send to A: %s", strerror(errno));
            break;
        }
    }
    int rc = 0;
    if (!ok || err[0] != '\0') {
        bctl_write_line(BCTL_FD_RES, "err %s", ok ? err : "out of memory");
        rc = 1;
    } else {
        char line[BCTL_LINE_MAX];
        snprintf(line, sizeof line, "ok faults_iob=%ld faults_floor=%ld sink=%u", faults_iob,
                 faults_floor, sink & 1u);
        for (int i = 0; i < B_COUNT; i++) {
            bctl_stats_t st2;
            iob_tk_stats(s[i], measured, &st2);
            bctl_stats_format(line, sizeof line, k_b_series[i], &st2);
        }
        bctl_write_line(BCTL_FD_RES, "%s", line);
    }
    for (int i = 0; i < B_COUNT; i++) {
        free(s[i]);
    }
    iob_client_close(client);
    return rc;
}
