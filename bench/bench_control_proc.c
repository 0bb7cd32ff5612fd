/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-control: child processes, the benchmark's own iobd instances (started by
 * client/testkit/iobd_launch.h, tracked here for the signal handlers) and the 2 MiB pool.
 * Everything here runs in the orchestrator, which never touches gRPC, so posix_spawn is the only
 * way a process starts (gRPC's C core is not fork-safe).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_control.h"
#include "client/testkit/hugepage_pool.h"

extern char** environ;

/* ---- children ---- */

bool bctl_spawn_role(const char* self, char* const argv[], int peer_fd, bctl_child_t* out) {
    int cmd[2];
    int res[2];
    if (pipe2(cmd, O_CLOEXEC) != 0) {
        return false;
    }
    if (pipe2(res, O_CLOEXEC) != 0) {
        close(cmd[0]);
        close(cmd[1]);
        return false;
    }
    /*
     * Our descriptors are all close-on-exec; dup2 to the fixed numbers is how one passes.
     * The sources are first moved above those numbers: a source that is itself 3, 4 or 5
     * would otherwise be overwritten by an earlier dup2 before its own turn.
     */
    int src[3] = {fcntl(cmd[0], F_DUPFD_CLOEXEC, 10), fcntl(res[1], F_DUPFD_CLOEXEC, 10),
                  peer_fd >= 0 ? fcntl(peer_fd, F_DUPFD_CLOEXEC, 10) : -1};
    close(cmd[0]);
    close(res[1]);
    int rc = EMFILE;
    pid_t pid = -1;
    if (src[0] >= 0 && src[1] >= 0 && (peer_fd < 0 || src[2] >= 0)) {
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, src[0], BCTL_FD_CMD);
        posix_spawn_file_actions_adddup2(&fa, src[1], BCTL_FD_RES);
        if (src[2] >= 0) {
            posix_spawn_file_actions_adddup2(&fa, src[2], BCTL_FD_PEER);
        }
        rc = posix_spawn(&pid, self, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
    }
    for (int i = 0; i < 3; i++) {
        if (src[i] >= 0) {
            close(src[i]);
        }
    }
    if (rc != 0) {
        close(cmd[1]);
        close(res[0]);
        errno = rc;
        return false;
    }
    out->pid = pid;
    out->cmd_fd = cmd[1];
    out->res_fd = res[0];
    return true;
}

/* waitpid with a deadline; true when reaped. */
static bool reap_within(pid_t pid, int timeout_ms, int* status) {
    int64_t deadline = bctl_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            return true;
        }
        if (bctl_now_ns() >= deadline) {
            return false;
        }
        usleep(5000);
    }
}

void bctl_child_end(bctl_child_t* c, int timeout_ms) {
    if (c->pid <= 0) {
        return;
    }
    if (c->cmd_fd >= 0) {
        (void)bctl_write_line(c->cmd_fd, "quit");
        close(c->cmd_fd);
        c->cmd_fd = -1;
    }
    int status;
    if (!reap_within(c->pid, timeout_ms, &status)) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &status, 0);
    }
    if (c->res_fd >= 0) {
        close(c->res_fd);
        c->res_fd = -1;
    }
    c->pid = 0;
}

/* ---- cleanup on every way out ---- */

#define BCTL_MAX_IOBD 8
/* Written by the main thread only; read by the signal handler (async-signal-safe calls only). */
static volatile pid_t g_iobd_pids[BCTL_MAX_IOBD];

static void track_iobd(pid_t pid, bool add) {
    for (int i = 0; i < BCTL_MAX_IOBD; i++) {
        if (add ? g_iobd_pids[i] == 0 : g_iobd_pids[i] == pid) {
            g_iobd_pids[i] = add ? pid : 0;
            return;
        }
    }
}

/* Only read/write/open/kill/waitpid: the handler may run in the middle of anything. */
static void stop_all_iobd_signal_safe(void) {
    for (int i = 0; i < BCTL_MAX_IOBD; i++) {
        pid_t pid = g_iobd_pids[i];
        if (pid > 0) {
            kill(pid, SIGTERM);
            int st;
            waitpid(pid, &st, 0);
            g_iobd_pids[i] = 0;
        }
    }
}

static void on_exit_cleanup(void) {
    stop_all_iobd_signal_safe();
    iob_tk_pool_restore();
}

static void on_fatal_signal(int sig) {
    on_exit_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

void bctl_cleanup_install(void) {
    atexit(on_exit_cleanup);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
    /* A child that dies mid-request must not kill us with SIGPIPE on the next write. */
    signal(SIGPIPE, SIG_IGN);
}

/* ---- hugepages ---- */

bool bctl_hp_ensure_free(uint64_t want, bool may_grow, char* note, size_t note_len) {
    iob_hugepage_pool_t pool;
    if (!may_grow && iob_hugepage_pool_read(IOB_BACKING_2M, &pool) == ZX_OK && pool.free < want) {
        snprintf(note, note_len,
                 "2 MiB pool: %llu free of %llu, %llu needed (pass --reserve-hugepages as root)",
                 (unsigned long long)pool.free, (unsigned long long)pool.total,
                 (unsigned long long)want);
        return false;
    }
    return iob_tk_pool_reserve(IOB_BACKING_2M, want, note, note_len);
}

/* ---- iobd ---- */

bool bctl_iobd_start(const char* iobd_path, const char* hugepages, bool tcp,
                     const char* const* extra, bctl_iobd_t* d, char* err, size_t err_len) {
    iob_tk_iobd_config_t config = {.binary = iobd_path,
                                   .hugepages = hugepages,
                                   .log_level = "warn",
                                   .extra = extra,
                                   .tcp = tcp,
                                   .log_file = true};
    if (!iob_tk_iobd_start(d, &config, err, err_len)) {
        return false;
    }
    track_iobd(d->pid, true);
    return true;
}

bool bctl_proc_usage(pid_t pid, uint64_t* rss_kib, uint64_t* fds) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE* f = fopen(path, "re");
    if (f == NULL) {
        return false;
    }
    char line[256];
    bool have_rss = false;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long v;
        if (sscanf(line, "VmRSS: %llu kB", &v) == 1) {
            *rss_kib = v;
            have_rss = true;
            break;
        }
    }
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR* dir = opendir(path);
    if (dir == NULL) {
        return false;
    }
    uint64_t n = 0;
    for (struct dirent* e = readdir(dir); e != NULL; e = readdir(dir)) {
        n += e->d_name[0] != '.';
    }
    closedir(dir);
    *fds = n;
    return have_rss;
}

uint64_t bctl_raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (uint64_t)rl.rlim_cur;
}

void bctl_iobd_stop(bctl_iobd_t* d) {
    pid_t pid = d->pid;
    char why[160];
    if (!iob_tk_iobd_stop(d, 5000, why, sizeof why)) {
        fprintf(stderr, "iob-bench-control: %s\n", why);
    }
    track_iobd(pid, false);
}
