/* SPDX-License-Identifier: MIT */
/*
 * The OS seam of shm/: thin wrappers over the system calls whose failures are hard to
 * provoke for real (EMFILE, ENOSPC from an exhausted hugepage pool, a short sendmsg), plus a
 * SQLite-style fault hook (sqlite3FaultSim) that a test installs to make one of them fail.
 *
 * The wrappers are compiled into every build. With no hook installed each one costs one
 * relaxed atomic load and then makes the real call; production code never installs a hook.
 * Internal to the project (iob__ prefix): never part of libiob's ABI.
 */
#ifndef IOB_SHM_SYS_H_
#define IOB_SHM_SYS_H_

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef enum iob__sys_op {
    IOB__SYS_MEMFD_CREATE = 0,
    IOB__SYS_FCHMOD,
    IOB__SYS_FTRUNCATE,
    IOB__SYS_FALLOCATE,
    IOB__SYS_ADD_SEALS,
    IOB__SYS_OPEN,
    IOB__SYS_SENDMSG,
    IOB__SYS_RECVMSG,
    IOB__SYS_OP_COUNT
} iob__sys_op_t;

/*
 * A hook's answer for IOB__SYS_SENDMSG only: really send the message, but one byte shorter
 * than asked (a zero-byte message stays zero bytes), and return that count, the way a
 * kernel that accepted part of a message would. Any other op treats it as 0.
 */
#define IOB__FAULT_SHORT (-1)

/*
 * Called before each wrapped system call. Returns 0 to let the call through, a positive
 * errno to fail the call with that errno without making it, or IOB__FAULT_SHORT (see
 * above). May be called from any thread that uses shm/; the hook does its own locking.
 */
typedef int (*iob__fault_fn)(iob__sys_op_t op, void* ctx);

typedef struct iob__fault_sim {
    iob__fault_fn fn;
    void* ctx;
} iob__fault_sim_t;

/*
 * Installs sim (NULL removes any hook). The caller keeps *sim alive and unchanged until it
 * installs another one or NULL. Tests only.
 */
void iob__fault_sim_install(const iob__fault_sim_t* sim);

/* "memfd_create", "fallocate", ...: for test messages. */
const char* iob__sys_op_name(iob__sys_op_t op);

/* Same contracts as the system calls they wrap: -1 with errno set on failure. */
int iob__sys_memfd_create(const char* name, unsigned int flags);
int iob__sys_fchmod(int fd, mode_t mode);
int iob__sys_ftruncate(int fd, off_t length);
int iob__sys_fallocate(int fd, int mode, off_t offset, off_t len);
int iob__sys_add_seals(int fd, int seals);
int iob__sys_open(const char* path, int flags);
ssize_t iob__sys_sendmsg(int sock, const struct msghdr* msg, int flags);
ssize_t iob__sys_recvmsg(int sock, struct msghdr* msg, int flags);

#endif /* IOB_SHM_SYS_H_ */
