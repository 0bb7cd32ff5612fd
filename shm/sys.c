/* SPDX-License-Identifier: MIT */
/* The OS seam of shm/: system-call wrappers with a test-only fault hook. */
#include "shm/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * One pointer to a {fn, ctx} pair, so that a reader never sees a new fn with an old ctx.
 * Acquire pairs with the installer's release, so the pair's fields are visible once the
 * pointer is.
 */
static _Atomic(const iob__fault_sim_t*) fault_sim;

void iob__fault_sim_install(const iob__fault_sim_t* sim) {
    atomic_store_explicit(&fault_sim, sim, memory_order_release);
}

static int fault_check(iob__sys_op_t op) {
    const iob__fault_sim_t* sim = atomic_load_explicit(&fault_sim, memory_order_acquire);
    if (sim == NULL || sim->fn == NULL) {
        return 0;
    }
    return sim->fn(op, sim->ctx);
}

/* Fails the wrapped call with the hook's errno, if it asked for one. */
#define IOB__FAULT_OR_PASS(op)        \
    do {                              \
        int fault_ = fault_check(op); \
        if (fault_ > 0) {             \
            errno = fault_;           \
            return -1;                \
        }                             \
    } while (0)

const char* iob__sys_op_name(iob__sys_op_t op) {
    static const char* const names[IOB__SYS_OP_COUNT] = {
        [IOB__SYS_MEMFD_CREATE] = "memfd_create",
        [IOB__SYS_FCHMOD] = "fchmod",
        [IOB__SYS_FTRUNCATE] = "ftruncate",
        [IOB__SYS_FALLOCATE] = "fallocate",
        [IOB__SYS_ADD_SEALS] = "fcntl(F_ADD_SEALS)",
        [IOB__SYS_OPEN] = "open",
        [IOB__SYS_SENDMSG] = "sendmsg",
        [IOB__SYS_RECVMSG] = "recvmsg",
    };
    return (unsigned)op < IOB__SYS_OP_COUNT ? names[op] : "?";
}

int iob__sys_memfd_create(const char* name, unsigned int flags) {
    IOB__FAULT_OR_PASS(IOB__SYS_MEMFD_CREATE);
    return memfd_create(name, flags);
}

int iob__sys_fchmod(int fd, mode_t mode) {
    IOB__FAULT_OR_PASS(IOB__SYS_FCHMOD);
    return fchmod(fd, mode);
}

int iob__sys_ftruncate(int fd, off_t length) {
    IOB__FAULT_OR_PASS(IOB__SYS_FTRUNCATE);
    return ftruncate(fd, length);
}

int iob__sys_fallocate(int fd, int mode, off_t offset, off_t len) {
    IOB__FAULT_OR_PASS(IOB__SYS_FALLOCATE);
    return fallocate(fd, mode, offset, len);
}

int iob__sys_add_seals(int fd, int seals) {
    IOB__FAULT_OR_PASS(IOB__SYS_ADD_SEALS);
    return fcntl(fd, F_ADD_SEALS, seals);
}

int iob__sys_open(const char* path, int flags) {
    IOB__FAULT_OR_PASS(IOB__SYS_OPEN);
    return open(path, flags);
}

ssize_t iob__sys_sendmsg(int sock, const struct msghdr* msg, int flags) {
    int fault = fault_check(IOB__SYS_SENDMSG);
    if (fault > 0) {
        errno = fault;
        return -1;
    }
    if (fault != IOB__FAULT_SHORT || msg->msg_iovlen == 0) {
        return sendmsg(sock, msg, flags);
    }
    /*
     * A SOCK_SEQPACKET send is all or nothing, so a short count never happens for real;
     * the simulation sends a genuinely shorter message so both ends see what they would.
     */
    struct msghdr shorter = *msg;
    struct iovec iov[8];
    size_t n = msg->msg_iovlen < 8 ? msg->msg_iovlen : 8;
    for (size_t i = 0; i < n; i++) {
        iov[i] = msg->msg_iov[i];
    }
    shorter.msg_iov = iov;
    shorter.msg_iovlen = n;
    for (size_t i = n; i-- > 0;) {
        if (iov[i].iov_len > 0) {
            iov[i].iov_len--;
            break;
        }
    }
    return sendmsg(sock, &shorter, flags);
}

ssize_t iob__sys_recvmsg(int sock, struct msghdr* msg, int flags) {
    IOB__FAULT_OR_PASS(IOB__SYS_RECVMSG);
    return recvmsg(sock, msg, flags);
}
