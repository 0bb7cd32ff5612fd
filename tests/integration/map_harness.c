/* SPDX-License-Identifier: MIT */
/* The map integration tests' daemon and helper-process plumbing (map_harness.h). */
#include "map_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static bool can_connect(const char* path, int type) {
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    /* A path that does not fit can never be connected to: say so instead of truncating. */
    size_t len = strlen(path);
    if (len >= sizeof addr.sun_path) {
        close(fd);
        return false;
    }
    memcpy(addr.sun_path, path, len);
    bool ok = connect(fd, (struct sockaddr*)&addr, sizeof addr) == 0;
    close(fd);
    return ok;
}

void map_daemon_start(map_daemon_t* d, const char* const* extra_args) {
    memset(d, 0, sizeof *d);
    if (access(IOB_TEST_IOBD, X_OK) != 0) {
        printf("SKIPPED: iobd not built (%s)\n", IOB_TEST_IOBD);
        exit(77);
    }
    snprintf(d->dir, sizeof d->dir, "/tmp/iob-map-test-XXXXXX");
    if (mkdtemp(d->dir) == NULL || chmod(d->dir, 0755) != 0) {
        perror("mkdtemp");
        exit(1);
    }
    char listen[300];
    char broker[300];
    snprintf(listen, sizeof listen, "unix:%s/iobd.sock", d->dir);
    snprintf(broker, sizeof broker, "%s/broker.sock", d->dir);
    snprintf(d->target, sizeof d->target, "%s", listen);
    /* posix_spawn takes char* const[] but never writes: copies keep -Wcast-qual quiet. */
    char* argv[32] = {strdup(IOB_TEST_IOBD), strdup("--listen"), strdup(listen),
                      strdup("--broker"), strdup(broker), strdup("--socket-mode"), strdup("0666"),
                      strdup("--hugepages"), strdup("off"), strdup("--token-ttl"), strdup("2s"),
                      strdup("--log-level"), strdup("warning")};
    size_t n = 13;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 31; i++) {
        argv[n++] = strdup(extra_args[i]);
    }
    argv[n] = NULL;
    int rc = posix_spawn(&d->pid, IOB_TEST_IOBD, NULL, NULL, argv, environ);
    for (size_t i = 0; i < n; i++) {
        free(argv[i]);
    }
    if (rc != 0) {
        perror("posix_spawn iobd");
        exit(1);
    }
    char sock[300];
    snprintf(sock, sizeof sock, "%s/iobd.sock", d->dir);
    for (int i = 0; i < 500; i++) {
        if (can_connect(sock, SOCK_STREAM) && can_connect(broker, SOCK_SEQPACKET)) {
            setenv("IOB_SERVER", d->target, 1);
            return;
        }
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            fprintf(stderr, "iobd exited early (status %d)\n", status);
            exit(1);
        }
        usleep(10000);
    }
    fprintf(stderr, "iobd did not come up\n");
    kill(d->pid, SIGKILL);
    exit(1);
}

void map_daemon_stop(map_daemon_t* d) {
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        for (int i = 0; i < 300; i++) {
            if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
                d->pid = 0;
                break;
            }
            usleep(10000);
        }
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
        }
    }
    char path[400];
    snprintf(path, sizeof path, "%s/iobd.sock", d->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/broker.sock", d->dir);
    unlink(path);
    rmdir(d->dir);
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
