/* SPDX-License-Identifier: MIT */
/* A real iobd for tests (see iobd_harness.h). */
#include "iobd_harness.h"

#include <errno.h>
#include <fcntl.h>
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

#include "test_util.h"

extern char** environ;

static char iobd__harness_bin[512];

void iobd_harness_set_binary(const char* path) {
    snprintf(iobd__harness_bin, sizeof iobd__harness_bin, "%s", path);
}

static bool iobd__harness_connectable(const char* path) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof a.sun_path) {
        close(s);
        return false;
    }
    memcpy(a.sun_path, path, strlen(path) + 1);
    bool ok = connect(s, (struct sockaddr*)&a, sizeof a) == 0;
    close(s);
    return ok;
}

bool iobd_harness_start(iobd_harness_t* h, const char* const* extra) {
    memset(h, 0, sizeof *h);
    if (iobd__harness_bin[0] == '\0') {
        const char* dir = getenv("IOB_TEST_BINARY_DIR");
        snprintf(iobd__harness_bin, sizeof iobd__harness_bin, "%s/server/daemon/iobd",
                 dir != NULL ? dir : ".");
    }
    h->dir = iob_test_tempdir();
    if (h->dir == NULL) {
        return false;
    }
    snprintf(h->socket_path, sizeof h->socket_path, "%s/iobd.sock", h->dir);
    snprintf(h->target, sizeof h->target, "unix:%s", h->socket_path);
    snprintf(h->log_path, sizeof h->log_path, "%s/iobd.log", h->dir);
    char listen[300];
    snprintf(listen, sizeof listen, "--listen=%s", h->target);
    const char* argv[32] = {iobd__harness_bin, listen, "--hugepages=off", "--log-level=debug"};
    int argc = 4;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < 31; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, h->log_path,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int r = posix_spawn(&h->pid, iobd__harness_bin, &fa, NULL, (char* const*)(uintptr_t)argv,
                        environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        fprintf(stderr, "spawn %s: %s\n", iobd__harness_bin, strerror(r));
        return false;
    }
    for (int i = 0; i < 500; i++) {
        if (iobd__harness_connectable(h->socket_path)) {
            return true;
        }
        int status;
        if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
            fprintf(stderr, "iobd exited early (status %d); see %s\n", status, h->log_path);
            h->pid = 0;
            return false;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "iobd did not come up on %s\n", h->socket_path);
    return false;
}

bool iobd_harness_stop(iobd_harness_t* h) {
    bool ok = true;
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        int status = 0;
        /* A clean shutdown takes milliseconds; give it 10 s before calling it a hang. */
        int waited = 0;
        while (waitpid(h->pid, &status, WNOHANG) == 0) {
            if (++waited > 1000) {
                fprintf(stderr, "iobd ignored SIGTERM; killing it\n");
                kill(h->pid, SIGKILL);
                waitpid(h->pid, &status, 0);
                ok = false;
                break;
            }
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "iobd exit status %d; log follows\n", status);
            ok = false;
        }
        struct stat st;
        if (lstat(h->socket_path, &st) == 0) {
            fprintf(stderr, "iobd left its socket behind\n");
            ok = false;
        }
        h->pid = 0;
    }
    if (!ok) {
        FILE* f = fopen(h->log_path, "r");
        char line[512];
        while (f != NULL && fgets(line, sizeof line, f) != NULL) {
            fputs(line, stderr);
        }
        if (f != NULL) {
            fclose(f);
        }
    }
    if (h->dir != NULL) {
        /* No system(): this process runs gRPC, and forking it is not safe. */
        unlink(h->log_path);
        if (rmdir(h->dir) != 0) {
            fprintf(stderr, "rmdir %s: %s\n", h->dir, strerror(errno));
            ok = false;
        }
        free(h->dir);
        h->dir = NULL;
    }
    return ok;
}
