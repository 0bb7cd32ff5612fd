/* SPDX-License-Identifier: MIT */
/* The one iobd launcher and the socket probes (iobd_launch.h). */
#include "client/testkit/iobd_launch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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

#define IOB_TK_TOKEN "iob-testkit-loopback"

bool iob_tk_can_connect_unix(const char* path, int type) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    /* A path that does not fit can never be connected to: say so instead of truncating. */
    size_t len = strlen(path);
    if (len >= sizeof a.sun_path) {
        return false;
    }
    memcpy(a.sun_path, path, len);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    bool ok = connect(fd, (struct sockaddr*)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void loopback(struct sockaddr_in* a, int port) {
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

bool iob_tk_can_connect_tcp(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_in a;
    loopback(&a, port);
    bool ok = connect(fd, (struct sockaddr*)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int iob_tk_free_tcp_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in a;
    loopback(&a, 0);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr*)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr*)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

bool iob_tk_tempdir(const char* prefix, char* out, size_t len) {
    /* Sockets go here and sun_path holds 108 bytes: a long TMPDIR falls back to /tmp. */
    const char* base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0' || strlen(base) > 40) {
        base = "/tmp";
    }
    int n = snprintf(out, len, "%s/%s-XXXXXX", base, prefix);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return false;
    }
    return mkdtemp(out) != NULL;
}

/* The end of iobd's log on one line, for an error message that says why it did not start. */
static void log_tail(const char* path, char* out, size_t len) {
    out[0] = '\0';
    int fd = path[0] != '\0' ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        return;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)(len - 1) ? end - (off_t)(len - 1) : 0;
    if (lseek(fd, from, SEEK_SET) >= 0) {
        ssize_t n = read(fd, out, len - 1);
        out[n > 0 ? n : 0] = '\0';
    }
    close(fd);
    for (char* p = out; *p != '\0'; p++) {
        *p = *p == '\n' ? ' ' : *p;
    }
}

static void copy_log_to_stderr(const char* path) {
    FILE* f = path[0] != '\0' ? fopen(path, "re") : NULL;
    char line[512];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        fprintf(stderr, "  iobd: %s", line);
    }
    if (f != NULL) {
        fclose(f);
    }
}

static void remove_dir(iob_tk_iobd_t* d) {
    if (d->dir[0] == '\0') {
        return;
    }
    /* iobd removes its sockets on a clean exit; these are for the unclean ones. */
    const char* names[] = {"iobd.sock", "iobd-broker.sock", "iobd.log"};
    char path[sizeof d->dir + 32];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", d->dir, names[i]);
        unlink(path);
    }
    rmdir(d->dir);
    d->dir[0] = '\0';
}

static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

typedef struct argv_builder {
    /* posix_spawn takes char* const[] but never writes: copies keep -Wcast-qual quiet. */
    char* v[24 + IOB_TK_IOBD_EXTRA_MAX];
    int n;
} argv_builder_t;

static bool arg(argv_builder_t* a, const char* s) {
    if (a->n + 1 >= (int)(sizeof a->v / sizeof a->v[0])) {
        return false;
    }
    a->v[a->n] = strdup(s);
    return a->v[a->n++] != NULL;
}

static void argv_free(argv_builder_t* a) {
    for (int i = 0; i < a->n; i++) {
        free(a->v[i]);
    }
    a->n = 0;
}

static bool has_arg(const char* const* extra, const char* name) {
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (strcmp(extra[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static bool build_argv(const iob_tk_iobd_t* d, const iob_tk_iobd_config_t* c, argv_builder_t* a) {
    bool ok = arg(a, c->binary) && arg(a, "--listen") && arg(a, d->target) &&
              arg(a, "--hugepages") && arg(a, c->hugepages != NULL ? c->hugepages : "off") &&
              arg(a, "--log-level") && arg(a, c->log_level != NULL ? c->log_level : "warning");
    if (ok && c->tcp) {
        ok = arg(a, "--listen") && arg(a, d->tcp_target) && arg(a, "--insecure") &&
             arg(a, "--token=" IOB_TK_TOKEN);
    }
    if (ok && c->other_users) {
        ok = arg(a, "--socket-mode") && arg(a, "0666");
    }
    if (ok && c->exit_with_parent) {
        ok = arg(a, "--exit-with-parent");
    }
    for (size_t i = 0; ok && c->extra != NULL && c->extra[i] != NULL; i++) {
        ok = i < IOB_TK_IOBD_EXTRA_MAX && arg(a, c->extra[i]);
    }
    a->v[a->n] = NULL;
    return ok;
}

static bool spawn(iob_tk_iobd_t* d, const iob_tk_iobd_config_t* c, char* err, size_t err_len) {
    argv_builder_t a = {.n = 0};
    if (!build_argv(d, c, &a)) {
        argv_free(&a);
        snprintf(err, err_len, "too many iobd arguments");
        return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (c->log_file) {
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, d->log_path,
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    }
    int rc = posix_spawn(&d->pid, c->binary, &fa, NULL, a.v, environ);
    posix_spawn_file_actions_destroy(&fa);
    argv_free(&a);
    if (rc != 0) {
        d->pid = 0;
        snprintf(err, err_len, "posix_spawn %s: %s", c->binary, strerror(rc));
        return false;
    }
    return true;
}

static bool ready(const iob_tk_iobd_t* d, int port) {
    return iob_tk_can_connect_unix(d->socket_path, SOCK_STREAM) &&
           (d->broker_path[0] == '\0' || iob_tk_can_connect_unix(d->broker_path, SOCK_SEQPACKET)) &&
           (port < 0 || iob_tk_can_connect_tcp(port));
}

/* Paths and the TCP port; false when they do not fit. */
static bool lay_out(iob_tk_iobd_t* d, const iob_tk_iobd_config_t* c, int* port) {
    *port = -1;
    bool fit =
        (size_t)snprintf(d->socket_path, sizeof d->socket_path, "%s/iobd.sock", d->dir) <
            sizeof d->socket_path &&
        (size_t)snprintf(d->target, sizeof d->target, "unix:%s", d->socket_path) < sizeof d->target;
    if (!has_arg(c->extra, "--no-broker")) {
        snprintf(d->broker_path, sizeof d->broker_path, "%s/iobd-broker.sock", d->dir);
    }
    if (c->log_file) {
        snprintf(d->log_path, sizeof d->log_path, "%s/iobd.log", d->dir);
    }
    if (c->tcp) {
        *port = iob_tk_free_tcp_port();
        snprintf(d->tcp_target, sizeof d->tcp_target, "127.0.0.1:%d", *port);
    }
    return fit && (!c->tcp || *port > 0);
}

bool iob_tk_iobd_start(iob_tk_iobd_t* d, const iob_tk_iobd_config_t* c, char* err, size_t err_len) {
    memset(d, 0, sizeof *d);
    if (access(c->binary, X_OK) != 0) {
        snprintf(err, err_len, "iobd not executable: %s", c->binary);
        return false;
    }
    if (!iob_tk_tempdir("iob-tk-iobd", d->dir, sizeof d->dir) ||
        (c->other_users && chmod(d->dir, 0755) != 0)) {
        snprintf(err, err_len, "socket directory: %s", strerror(errno));
        d->dir[0] = '\0';
        return false;
    }
    int port;
    if (!lay_out(d, c, &port)) {
        snprintf(err, err_len, c->tcp && port <= 0 ? "no free loopback port" : "paths too long");
        remove_dir(d);
        return false;
    }
    if (c->tcp) {
        setenv("IOB_TOKEN", IOB_TK_TOKEN, 0);
    }
    if (!spawn(d, c, err, err_len)) {
        remove_dir(d);
        return false;
    }
    int timeout_ms = c->start_timeout_ms > 0 ? c->start_timeout_ms : 10000;
    for (int waited = 0; waited < timeout_ms; waited += 5) {
        if (ready(d, port)) {
            return true;
        }
        int status;
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            char tail[200];
            log_tail(d->log_path, tail, sizeof tail);
            snprintf(err, err_len, "iobd exited at start (status %d): %s", status, tail);
            remove_dir(d);
            return false;
        }
        sleep_ms(5);
    }
    char tail[200];
    log_tail(d->log_path, tail, sizeof tail);
    snprintf(err, err_len, "iobd did not come up in %d ms: %s", timeout_ms, tail);
    iob_tk_iobd_stop(d, 2000, NULL, 0);
    return false;
}

bool iob_tk_iobd_stop(iob_tk_iobd_t* d, int timeout_ms, char* why, size_t why_len) {
    char text[160] = "";
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int status = 0;
        pid_t got = 0;
        for (int waited = 0;; waited += 5) {
            got = waitpid(d->pid, &status, WNOHANG);
            if (got != 0 || waited >= timeout_ms) {
                break;
            }
            sleep_ms(5);
        }
        if (got == 0) {
            kill(d->pid, SIGKILL);
            while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR) {
            }
            snprintf(text, sizeof text, "iobd did not stop on SIGTERM in %d ms; killed",
                     timeout_ms);
        } else if (got < 0) {
            snprintf(text, sizeof text, "waitpid: %s", strerror(errno));
        } else if (WIFSIGNALED(status)) {
            snprintf(text, sizeof text, "iobd died of signal %d", WTERMSIG(status));
        } else if (WEXITSTATUS(status) != 0) {
            snprintf(text, sizeof text, "iobd exited with status %d", WEXITSTATUS(status));
        } else if (access(d->socket_path, F_OK) == 0) {
            snprintf(text, sizeof text, "iobd left its socket behind");
        }
        d->pid = 0;
    }
    if (text[0] != '\0') {
        copy_log_to_stderr(d->log_path);
    }
    if (why != NULL && why_len > 0) {
        snprintf(why, why_len, "%s", text);
    }
    remove_dir(d);
    return text[0] == '\0';
}
