/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests: skipping, fd-leak checks, faults, uids. */
#include "test_util.h"

#include "client/testkit/iobd_launch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

_Noreturn void iob_test_skip(const char* reason) {
    printf("SKIPPED: %s\n", reason);
    fflush(stdout);
    exit(IOB_TEST_SKIP);
}

int iob_test_count_open_fds(void) {
    DIR* dir = opendir("/proc/self/fd");
    if (dir == NULL) {
        return -1;
    }
    int count = 0;
    struct dirent* entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] != '.') {
            count++;
        }
    }
    closedir(dir);
    return count - 1; /* the directory stream's own descriptor */
}

const char* iob_test_region_problem(const iob_region_t* region, uint64_t size) {
    const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
    if (region->fd <= STDERR_FILENO) {
        return "fd is a standard stream or invalid";
    }
    if (region->size != size) {
        return "region.size differs from the size asked for";
    }
    if (fcntl(region->fd, F_GET_SEALS) != seals) {
        return "seals are not exactly SHRINK|GROW|SEAL";
    }
    if ((fcntl(region->fd, F_GETFD) & FD_CLOEXEC) == 0) {
        return "FD_CLOEXEC is not set";
    }
    if ((fcntl(region->fd, F_GETFL) & O_ACCMODE) != O_RDWR) {
        return "the description is not read-write";
    }
    struct stat st;
    if (fstat(region->fd, &st) != 0) {
        return "fstat failed";
    }
    if ((st.st_mode & 07777) != 0400) {
        return "mode is not 0400";
    }
    if (st.st_uid != geteuid()) {
        return "not owned by this process's euid";
    }
    if ((uint64_t)st.st_size != size) {
        return "file size differs from the size asked for";
    }
    /* hugetlbfs reports st_blocks too (in 512-byte units of the pages it holds). */
    if ((uint64_t)st.st_blocks * 512 < size) {
        return "not allocated up front (st_blocks too small)";
    }
    uint64_t page = iob_backing_page_size(region->backing);
    if (size > 0) {
        /* A page multiple: on hugetlbfs any other size is EINVAL before the seal is asked. */
        errno = 0;
        if (ftruncate(region->fd, (off_t)(size - page)) == 0 || errno != EPERM) {
            return "shrinking was not refused with EPERM";
        }
    }
    errno = 0;
    if (ftruncate(region->fd, (off_t)(size + page)) == 0 || errno != EPERM) {
        return "growing was not refused with EPERM";
    }
    errno = 0;
    if (fcntl(region->fd, F_ADD_SEALS, F_SEAL_WRITE) == 0 || errno != EPERM) {
        return "adding a seal was not refused with EPERM";
    }
    if (fcntl(region->fd, F_GET_SEALS) != seals) {
        return "seals changed";
    }
    return NULL;
}

char* iob_test_tempdir(void) {
    char dir[256];
    return iob_tk_tempdir("iob-test", dir, sizeof dir) ? strdup(dir) : NULL;
}

/* ---- fault injection --------------------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    iob__sys_op_t op;
    int err;
    unsigned skip; /* matching calls still to let through */
    unsigned left; /* faults still to inject; UINT32_MAX for "every call" */
    unsigned hits;
} fault_plan = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int fault_hook(iob__sys_op_t op, void* ctx) {
    (void)ctx;
    int answer = 0;
    pthread_mutex_lock(&fault_plan.lock);
    if (op == fault_plan.op && fault_plan.left > 0) {
        if (fault_plan.skip > 0) {
            fault_plan.skip--;
        } else {
            answer = fault_plan.err;
            fault_plan.hits++;
            if (fault_plan.left != UINT32_MAX) {
                fault_plan.left--;
            }
        }
    }
    pthread_mutex_unlock(&fault_plan.lock);
    return answer;
}

static const iob__fault_sim_t fault_sim = {.fn = fault_hook, .ctx = NULL};

void iob_test_fault_arm(iob__sys_op_t op, int err, unsigned nth, unsigned times) {
    pthread_mutex_lock(&fault_plan.lock);
    fault_plan.op = op;
    fault_plan.err = err;
    fault_plan.skip = nth > 0 ? nth - 1 : 0;
    fault_plan.left = times > 0 ? times : UINT32_MAX;
    fault_plan.hits = 0;
    pthread_mutex_unlock(&fault_plan.lock);
    iob__fault_sim_install(&fault_sim);
}

void iob_test_fault_clear(void) {
    iob__fault_sim_install(NULL);
    pthread_mutex_lock(&fault_plan.lock);
    fault_plan.left = 0;
    pthread_mutex_unlock(&fault_plan.lock);
}

unsigned iob_test_fault_hits(void) {
    pthread_mutex_lock(&fault_plan.lock);
    unsigned hits = fault_plan.hits;
    pthread_mutex_unlock(&fault_plan.lock);
    return hits;
}

/* ---- running as another user ------------------------------------------------------- */

int iob_test_run_as(uid_t uid, gid_t gid, int (*fn)(void* arg), void* arg) {
    fflush(NULL); /* or buffered output would be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        /* Groups first: once the uid is gone, so is the right to change them. */
        if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
            setresuid(uid, uid, uid) != 0) {
            _exit(IOB_TEST_SKIP);
        }
        _exit(fn(arg) & 0xff);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- a socket whose close lingers ---------------------------------------------------- */

int iob_test_lingering_socket(int linger_s, int* listener_out) {
    int small = 4096;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* Small buffers on both ends (the listener's pass to the connection it queues). */
    if (l < 0 || c < 0 || setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) != 0 ||
        setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) != 0 ||
        bind(l, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr*)&addr, &alen) != 0 ||
        connect(c, (struct sockaddr*)&addr, sizeof addr) != 0) {
        goto fail;
    }
    int flags = fcntl(c, F_GETFL);
    fcntl(c, F_SETFL, flags | O_NONBLOCK);
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    /* Until the peer's window and our buffer are full (a few hundred KiB at most). */
    for (int i = 0; i < 4096; i++) {
        if (send(c, buf, sizeof buf, MSG_NOSIGNAL) < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            goto fail;
        }
    }
    fcntl(c, F_SETFL, flags);
    struct linger lg = {.l_onoff = 1, .l_linger = linger_s};
    if (setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0) {
        goto fail;
    }
    *listener_out = l;
    return c;
fail:;
    int err = errno;
    if (l >= 0) {
        close(l);
    }
    if (c >= 0) {
        close(c);
    }
    errno = err;
    return -1;
}
