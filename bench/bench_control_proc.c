/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-control: child processes, the benchmark's own iobd instances and the 2 MiB
 * hugepage pool. Everything here runs in the orchestrator, which never touches gRPC, so
 * posix_spawn is the only way a process starts (gRPC's C core is not fork-safe).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_control.h"

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
static volatile long g_hp_added;   /* pages this run added to the 2 MiB pool */
static const char k_hp_nr[] = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
static const char k_hp_free[] = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

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

static long read_long_raw(const char* path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    long v = 0;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) {
        v = v * 10 + (buf[i] - '0');
    }
    return v;
}

static bool write_long_raw(const char* path, long v) {
    char buf[32];
    int len = 0;
    char tmp[32];
    int t = 0;
    do {
        tmp[t++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && t < (int)sizeof tmp);
    while (t > 0) {
        buf[len++] = tmp[--t];
    }
    buf[len++] = '\n';
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    bool ok = write(fd, buf, (size_t)len) == len;
    return close(fd) == 0 && ok;
}

static void hp_restore_signal_safe(void) {
    long added = g_hp_added;
    if (added <= 0) {
        return;
    }
    /*
     * Give back what this run added rather than writing back an absolute "before": another
     * user of the pool (a test holding the hugepage_pool lock elsewhere) may have grown it
     * meanwhile, and its own pages must stay.
     */
    long now = read_long_raw(k_hp_nr);
    if (now >= 0) {
        long target = now > added ? now - added : 0;
        if (write_long_raw(k_hp_nr, target)) {
            g_hp_added = 0;
        }
    }
}

void bctl_hp_restore(void) {
    hp_restore_signal_safe();
}

static void on_exit_cleanup(void) {
    stop_all_iobd_signal_safe();
    hp_restore_signal_safe();
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

bool bctl_hp_read(uint64_t* total, uint64_t* free_pages) {
    long t = read_long_raw(k_hp_nr);
    long f = read_long_raw(k_hp_free);
    if (t < 0 || f < 0) {
        return false;
    }
    *total = (uint64_t)t;
    *free_pages = (uint64_t)f;
    return true;
}

bool bctl_hp_ensure_free(uint64_t want, bool may_grow, char* note, size_t note_len) {
    uint64_t total;
    uint64_t fr;
    if (!bctl_hp_read(&total, &fr)) {
        snprintf(note, note_len, "no 2 MiB hugepage pool on this kernel");
        return false;
    }
    if (fr >= want) {
        snprintf(note, note_len, "2 MiB pool: %llu pages, %llu free (enough)",
                 (unsigned long long)total, (unsigned long long)fr);
        return true;
    }
    if (!may_grow) {
        snprintf(note, note_len,
                 "2 MiB pool: %llu free of %llu, %llu needed (pass --reserve-hugepages as root)",
                 (unsigned long long)fr, (unsigned long long)total, (unsigned long long)want);
        return false;
    }
    long add = (long)(want - fr);
    if (!write_long_raw(k_hp_nr, (long)total + add)) {
        snprintf(note, note_len, "cannot grow the 2 MiB pool: %s", strerror(errno));
        return false;
    }
    uint64_t total2 = total;
    uint64_t fr2 = fr;
    bctl_hp_read(&total2, &fr2);
    /* Remember only what the kernel really added: it may stop short when memory is low. */
    g_hp_added += total2 > total ? (long)(total2 - total) : 0;
    snprintf(note, note_len, "2 MiB pool grown %llu -> %llu pages (%llu free) for this run, "
             "given back at exit",
             (unsigned long long)total, (unsigned long long)total2, (unsigned long long)fr2);
    return fr2 >= want;
}

/* ---- iobd ---- */

static bool can_connect_unix(const char* path, int type) {
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    /* A path that does not fit can never be connected to: say so instead of truncating. */
    size_t len = strlen(path);
    if (len >= sizeof a.sun_path) {
        close(fd);
        return false;
    }
    memcpy(a.sun_path, path, len);
    bool ok = connect(fd, (struct sockaddr*)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static bool can_connect_tcp(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr*)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/*
 * A loopback port nobody listens on now: bind to port 0 and let the kernel choose. The
 * window until iobd binds it is a race we accept (a clash shows as "did not come up").
 */
static int free_tcp_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr*)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr*)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

static void log_tail(const char* path, char* out, size_t len) {
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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
        if (*p == '\n') {
            *p = ' ';
        }
    }
}

bool bctl_iobd_start(const char* iobd_path, const char* hugepages, bool tcp, bctl_iobd_t* d,
                     char* err, size_t err_len) {
    return bctl_iobd_start_ex(iobd_path, hugepages, tcp, NULL, d, err, err_len);
}

bool bctl_iobd_start_ex(const char* iobd_path, const char* hugepages, bool tcp,
                        const char* const* extra, bctl_iobd_t* d, char* err, size_t err_len) {
    memset(d, 0, sizeof *d);
    if (access(iobd_path, X_OK) != 0) {
        snprintf(err, err_len, "iobd not executable: %s", iobd_path);
        return false;
    }
    snprintf(d->dir, sizeof d->dir, "/tmp/iob-bench-ctl-XXXXXX");
    if (mkdtemp(d->dir) == NULL) {
        snprintf(err, err_len, "mkdtemp: %s", strerror(errno));
        d->dir[0] = '\0';
        return false;
    }
    snprintf(d->unix_target, sizeof d->unix_target, "unix:%s/iobd.sock", d->dir);
    snprintf(d->log_path, sizeof d->log_path, "%s/iobd.log", d->dir);
    snprintf(d->backing, sizeof d->backing, "%s", strcmp(hugepages, "off") == 0 ? "4K" : "2M");
    int port = tcp ? free_tcp_port() : -1;
    if (tcp && port < 0) {
        snprintf(err, err_len, "no free loopback port");
        return false;
    }
    char tcp_listen[64] = "";
    if (tcp) {
        snprintf(tcp_listen, sizeof tcp_listen, "127.0.0.1:%d", port);
        snprintf(d->tcp_target, sizeof d->tcp_target, "%s", tcp_listen);
    }
    char hp_arg[16];
    snprintf(hp_arg, sizeof hp_arg, "%s", hugepages);
    /* Writable copies: posix_spawn takes char* const[] (and -Wcast-qual is on). */
    char a_path[512], a_listen[16] = "--listen", a_unix[160], a_listen2[16] = "--listen",
        a_insecure[16] = "--insecure", a_hp[16] = "--hugepages", a_ll[16] = "--log-level",
        a_warn[8] = "warn";
    snprintf(a_path, sizeof a_path, "%s", iobd_path);
    snprintf(a_unix, sizeof a_unix, "%s", d->unix_target);
    char* argv[16 + BCTL_IOBD_EXTRA_MAX];
    char extra_copy[BCTL_IOBD_EXTRA_MAX][128];
    int n = 0;
    argv[n++] = a_path;
    argv[n++] = a_listen;
    argv[n++] = a_unix;
    /*
     * iobd serves no TCP without a bearer token; the clients spawned from here inherit it
     * through IOB_TOKEN (iob_conn's default).
     */
    char a_token[64] = "--token=iob-bench-loopback";
    if (tcp) {
        argv[n++] = a_listen2;
        argv[n++] = tcp_listen;
        argv[n++] = a_insecure;
        argv[n++] = a_token;
        setenv("IOB_TOKEN", a_token + strlen("--token="), 0);
    }
    argv[n++] = a_hp;
    argv[n++] = hp_arg;
    argv[n++] = a_ll;
    argv[n++] = a_warn;
    for (int i = 0; extra != NULL && extra[i] != NULL && i < BCTL_IOBD_EXTRA_MAX; i++) {
        snprintf(extra_copy[i], sizeof extra_copy[i], "%s", extra[i]);
        argv[n++] = extra_copy[i];
    }
    argv[n] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, d->log_path,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, iobd_path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        snprintf(err, err_len, "posix_spawn %s: %s", iobd_path, strerror(rc));
        return false;
    }
    d->pid = pid;
    track_iobd(pid, true);

    char sock[200];
    char broker[200];
    snprintf(sock, sizeof sock, "%s/iobd.sock", d->dir);
    snprintf(broker, sizeof broker, "%s/iobd-broker.sock", d->dir);
    for (int i = 0; i < 1000; i++) {
        if (can_connect_unix(sock, SOCK_STREAM) && can_connect_unix(broker, SOCK_SEQPACKET) &&
            (!tcp || can_connect_tcp(port))) {
            return true;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            track_iobd(pid, false);
            d->pid = 0;
            char tail[300];
            log_tail(d->log_path, tail, sizeof tail);
            snprintf(err, err_len, "iobd (--hugepages %s) exited at start: %s", hugepages, tail);
            bctl_iobd_stop(d);
            return false;
        }
        usleep(10000);
    }
    char tail[300];
    log_tail(d->log_path, tail, sizeof tail);
    snprintf(err, err_len, "iobd did not come up in 10 s: %s", tail);
    bctl_iobd_stop(d);
    return false;
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
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int status;
        if (!reap_within(d->pid, 5000, &status)) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
        }
        track_iobd(d->pid, false);
        d->pid = 0;
    }
    if (d->dir[0] != '\0') {
        /* iobd removes its sockets on a clean exit; the log and any leftovers go here. */
        const char* names[] = {"iobd.sock", "iobd-broker.sock", "iobd.log"};
        char path[200];
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf(path, sizeof path, "%s/%s", d->dir, names[i]);
            unlink(path);
        }
        rmdir(d->dir);
        d->dir[0] = '\0';
    }
}
