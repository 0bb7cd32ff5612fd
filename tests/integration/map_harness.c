/* SPDX-License-Identifier: MIT */
/* The map integration tests' daemon and helper-process plumbing (map_harness.h). */
#include "map_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

void map_daemon_start(map_daemon_t* d, const char* const* extra_args) {
    if (access(IOB_TEST_IOBD, X_OK) != 0) {
        printf("SKIPPED: iobd not built (%s)\n", IOB_TEST_IOBD);
        exit(77);
    }
    /* The short time-to-live lets the token tests see expiry; the caller's args come after. */
    const char* extra[IOB_TK_IOBD_EXTRA_MAX + 1] = {"--token-ttl", "2s"};
    size_t n = 2;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
        if (n >= IOB_TK_IOBD_EXTRA_MAX) {
            fprintf(stderr, "map_harness: too many iobd arguments\n");
            exit(1);
        }
        extra[n++] = extra_args[i];
    }
    iob_tk_iobd_config_t config = {.binary = IOB_TEST_IOBD, .extra = extra, .other_users = true};
    char err[400];
    if (!iob_tk_iobd_start(d, &config, err, sizeof err)) {
        fprintf(stderr, "map_harness: %s\n", err);
        exit(1);
    }
    setenv("IOB_SERVER", d->target, 1);
}

void map_daemon_stop(map_daemon_t* d) {
    char why[160];
    if (!iob_tk_iobd_stop(d, 3000, why, sizeof why)) {
        fprintf(stderr, "map_harness: %s\n", why);
    }
}

pid_t map_spawn_peer(const char* const* args, int* stdout_fd) {
    return map_spawn(IOB_TEST_PEER, args, stdout_fd);
}

pid_t map_spawn(const char* prog, const char* const* args, int* stdout_fd) {
    char* argv[32] = {strdup(prog)};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = strdup(args[i]);
    }
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int p[2] = {-1, -1};
    if (stdout_fd != NULL) {
        if (pipe2(p, O_CLOEXEC) != 0) {
            perror("pipe");
            exit(1);
        }
        posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    for (size_t i = 0; i < n; i++) {
        free(argv[i]);
    }
    if (rc != 0) {
        fprintf(stderr, "posix_spawn %s: %s\n", prog, strerror(rc));
        exit(1);
    }
    if (stdout_fd != NULL) {
        close(p[1]);
        *stdout_fd = p[0];
    }
    return pid;
}

int map_wait(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    return 128 + WTERMSIG(status);
}

bool map_read_line(int fd, char* buf, size_t cap, int timeout_ms) {
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0) {
            return false;
        }
        char c;
        if (read(fd, &c, 1) != 1) {
            return false;
        }
        if (c == '\n') {
            break;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    return true;
}

int map_daemon_fds(const map_daemon_t* d, const char* needle) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)d->pid);
    DIR* dir = opendir(path);
    if (dir == NULL) {
        fprintf(stderr, "map_harness: cannot read %s\n", path);
        exit(1);
    }
    int n = 0;
    struct dirent* e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        if (needle == NULL) {
            n++;
            continue;
        }
        char link[64 + 256 + 2];
        char target[256];
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len > 0) {
            target[len] = '\0';
            n += strstr(target, needle) != NULL;
        }
    }
    closedir(dir);
    return n;
}
