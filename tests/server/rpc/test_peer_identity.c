/* SPDX-License-Identifier: MIT */
/*
 * Who may talk to iobd, end to end with a real iobd:
 *   - the map broker attaches a session only for the process that opened it: the session's
 *     id and secret used by another process (same uid, or another uid) are refused with
 *     ZX_ERR_ACCESS_DENIED, and iobd logs both identities;
 *   - --allow-uid: a client under a uid not listed is refused at accept (its first call
 *     fails) and the refusal is logged with its uid and pid; a listed uid works (root only,
 *     since a client under another uid is needed).
 *
 * The other processes are this binary again (posix_spawn of /proc/self/exe: this process
 * runs gRPC and must not fork), in a child mode that drops privileges before anything
 * touches gRPC:
 *   --child-attach BROKER_PATH SESSION_ID SECRET_HEX [UID]   raw broker attach; prints the status
 *   --child-conn TARGET [UID]                                iob_conn_open, ServerInfo, CreateIob;
 *                                                            prints the first failing status
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <zircon/status.h>
#include <zircon/syscalls/iob.h>

#include "client/rpc/iob_conn.h"
#include "iobd_harness.h"
#include "shm/broker_wire.h"
#include "shm/fdpass.h"

extern char** environ;

#define NOBODY 65534u
#define NOT_ALLOWED 65533u /* a uid with no privileges and no --allow-uid entry */

/* ---- Child modes (no cmocka, no gRPC before the drop) ---- */

static void child_drop(const char* uid_text) {
    if (uid_text == NULL) {
        return;
    }
    uid_t uid = (uid_t)strtoul(uid_text, NULL, 10);
    /* Before any gRPC thread exists: the whole process is `uid` from here on. */
    if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) {
        printf("drop failed: %s\n", strerror(errno));
        exit(2);
    }
    /* Dropping clears the dumpable flag; sanitizer runtimes need it to inspect us at exit. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
}

static zx_status_t raw_attach(const char* broker_path, uint64_t session_id,
                              const uint8_t secret[16]) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return ZX_ERR_IO;
    }
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", broker_path);
    if (connect(fd, (struct sockaddr*)&a, sizeof a) != 0) {
        close(fd);
        return ZX_ERR_UNAVAILABLE;
    }
    iob_broker_attach_req_t req;
    memset(&req, 0, sizeof req);
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_ATTACH, sizeof req, 7);
    req.session_id = session_id;
    memcpy(req.secret, secret, 16);
    zx_status_t st = iob_fd_send(fd, &req, sizeof req, NULL, 0);
    if (st == ZX_OK) {
        union {
            iob_broker_status_reply_t r;
            unsigned char bytes[IOB_BROKER_MAX_MSG + 1];
        } reply;
        memset(&reply, 0, sizeof reply);
        size_t n = 0;
        size_t nfds = 0;
        int fds[1];
        st = iob_fd_recv(fd, reply.bytes, sizeof reply.bytes, &n, fds, 1, &nfds);
        if (st == ZX_OK) {
            st = n == sizeof reply.r && nfds == 0 ? reply.r.status : ZX_ERR_IO_DATA_INTEGRITY;
        }
    }
    close(fd);
    return st;
}

static int child_attach(int argc, char** argv) {
    if (argc < 5) {
        return 2;
    }
    child_drop(argc > 5 ? argv[5] : NULL);
    uint8_t secret[16];
    for (int i = 0; i < 16; i++) {
        unsigned v = 0;
        if (sscanf(argv[4] + 2 * i, "%2x", &v) != 1) {
            return 2;
        }
        secret[i] = (uint8_t)v;
    }
    zx_status_t st = raw_attach(argv[2], strtoull(argv[3], NULL, 10), secret);
    printf("%s\n", zx_status_get_string(st));
    return 0;
}

static int child_conn(int argc, char** argv) {
    if (argc < 3) {
        return 2;
    }
    child_drop(argc > 3 ? argv[3] : NULL);
    iob_conn_options_t o;
    memset(&o, 0, sizeof o);
    o.target = argv[2];
    o.timeout_ms = 5000;
    iob_conn_t* c = NULL;
    zx_status_t st = iob_conn_open(&o, &c);
    if (st == ZX_OK) {
        iob_conn_server_info_t si;
        st = iob_conn_server_info(c, &si);
    }
    if (st == ZX_OK) {
        zx_iob_region_t r;
        memset(&r, 0, sizeof r);
        r.type = ZX_IOB_REGION_TYPE_PRIVATE;
        r.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                   ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
        r.size = 4096;
        zx_handle_t ep0 = 0;
        zx_handle_t ep1 = 0;
        st = iob_conn_iob_create(c, 0, &r, 1, &ep0, &ep1);
    }
    if (c != NULL) {
        iob_conn_close(c);
    }
    printf("%s\n", zx_status_get_string(st));
    return 0;
}

/* ---- The parent: cmocka ---- */

static iobd_harness_t g_iobd;

/* Runs this binary in a child mode; returns its first stdout line, and its pid in *pid_out. */
static void run_child(const char* const* args, char* line, size_t cap, pid_t* pid_out) {
    const char* argv[16] = {"/proc/self/exe"};
    int n = 1;
    for (size_t i = 0; args[i] != NULL && n < 15; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    pid_t pid = 0;
    char self[512];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = '\0';
    argv[0] = self;
    assert_int_equal(
        posix_spawn(&pid, self, &fa, NULL, (char* const*)(uintptr_t)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    size_t got = 0;
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (poll(&pf, 1, 20000) <= 0) {
            break;
        }
        ssize_t r = read(p[0], line + got, cap - 1 - got);
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
        if (got + 1 >= cap) {
            break;
        }
    }
    line[got] = '\0';
    line[strcspn(line, "\n")] = '\0';
    close(p[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("child %s exited with status 0x%x, said \"%s\"", args[0], status, line);
    }
    *pid_out = pid;
}

/* Waits up to 5 s for iobd's log to contain every one of the NULL-terminated strings. */
static bool log_has_line_with(const char* const* needles) {
    for (int tries = 0; tries < 250; tries++) {
        FILE* f = fopen(g_iobd.log_path, "r");
        char buf[1024];
        while (f != NULL && fgets(buf, sizeof buf, f) != NULL) {
            bool all = true;
            for (size_t i = 0; needles[i] != NULL && all; i++) {
                all = strstr(buf, needles[i]) != NULL;
            }
            if (all) {
                fclose(f);
                return true;
            }
        }
        if (f != NULL) {
            fclose(f);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void print_log(void) {
    FILE* f = fopen(g_iobd.log_path, "r");
    char buf[1024];
    while (f != NULL && fgets(buf, sizeof buf, f) != NULL) {
        fprintf(stderr, "  iobd: %s", buf);
    }
    if (f != NULL) {
        fclose(f);
    }
}

/* Sockets that clients under other uids can reach (the test's other users). */
static void start_iobd(const char* const* extra) {
    if (!iobd_harness_start(&g_iobd, extra)) {
        fail_msg("iobd did not start");
    }
    assert_int_equal(chmod(g_iobd.dir, 0755), 0);
}

static void stop_iobd(void) {
    assert_true(iobd_harness_stop(&g_iobd));
}

static void test_session_secret_from_another_process(void** state) {
    (void)state;
    const char* extra[] = {"--socket-mode=0666", NULL};
    start_iobd(extra);
    iob_conn_options_t o;
    memset(&o, 0, sizeof o);
    o.target = g_iobd.target;
    iob_conn_t* c = NULL;
    assert_int_equal(iob_conn_open(&o, &c), ZX_OK);
    const iob_conn_session_info_t* s = iob_conn_session(c);
    assert_true(s->broker_path[0] != '\0');

    /* The session's own process attaches (any thread of it would: same pid). */
    assert_int_equal(raw_attach(s->broker_path, s->session_id, s->secret), ZX_OK);

    char id[32];
    char hex[33];
    snprintf(id, sizeof id, "%" PRIu64, s->session_id);
    for (int i = 0; i < 16; i++) {
        snprintf(hex + 2 * i, 3, "%02x", s->secret[i]);
    }
    char line[128];
    pid_t pid = 0;
    /* Another process under the same uid, with the right id and secret: refused. */
    const char* same_uid[] = {"--child-attach", s->broker_path, id, hex, NULL};
    run_child(same_uid, line, sizeof line, &pid);
    assert_string_equal(line, "ZX_ERR_ACCESS_DENIED");
    char who[64];
    snprintf(who, sizeof who, "refused to pid %d uid %d", (int)pid, (int)getuid());
    const char* n1[] = {who, "another process", "ZX_ERR_ACCESS_DENIED", NULL};
    if (!log_has_line_with(n1)) {
        print_log();
        fail_msg("no log line with \"%s\" / another process", who);
    }

    /* And under another uid (root can make one). */
    if (geteuid() == 0) {
        char uid[16];
        snprintf(uid, sizeof uid, "%u", NOBODY);
        const char* other_uid[] = {"--child-attach", s->broker_path, id, hex, uid, NULL};
        run_child(other_uid, line, sizeof line, &pid);
        assert_string_equal(line, "ZX_ERR_ACCESS_DENIED");
        snprintf(who, sizeof who, "refused to pid %d uid %u", (int)pid, NOBODY);
        const char* n2[] = {who, "another uid", NULL};
        if (!log_has_line_with(n2)) {
            print_log();
            fail_msg("no log line with \"%s\" / another uid", who);
        }
    } else {
        printf("# not root: the other-uid case is skipped\n");
    }
    /* The owner still can. */
    assert_int_equal(raw_attach(s->broker_path, s->session_id, s->secret), ZX_OK);
    iob_conn_close(c);
    stop_iobd();
}

static void test_allow_uid_policy(void** state) {
    (void)state;
    if (geteuid() != 0) {
        skip(); /* needs a client under another uid */
    }
    char allow[32];
    snprintf(allow, sizeof allow, "--allow-uid=%u", NOBODY);
    const char* extra[] = {"--socket-mode=0666", allow, NULL};
    start_iobd(extra);

    char line[128];
    pid_t pid = 0;
    char uid[16];
    /* A uid the policy does not list: refused at accept, so its first call fails. */
    snprintf(uid, sizeof uid, "%u", NOT_ALLOWED);
    const char* refused[] = {"--child-conn", g_iobd.target, uid, NULL};
    run_child(refused, line, sizeof line, &pid);
    if (strcmp(line, "ZX_ERR_UNAVAILABLE") != 0 && strcmp(line, "ZX_ERR_ACCESS_DENIED") != 0) {
        print_log();
        fail_msg("refused client: %s", line);
    }
    char who[64];
    snprintf(who, sizeof who, "refused pid %d uid %u", (int)pid, NOT_ALLOWED);
    const char* n1[] = {who, "(policy)", NULL};
    if (!log_has_line_with(n1)) {
        print_log();
        fail_msg("no log line with \"%s\"", who);
    }

    /* The listed uid works: session, ServerInfo, CreateIob. */
    snprintf(uid, sizeof uid, "%u", NOBODY);
    const char* allowed[] = {"--child-conn", g_iobd.target, uid, NULL};
    run_child(allowed, line, sizeof line, &pid);
    if (strcmp(line, "ZX_OK") != 0) {
        print_log();
        fail_msg("allowed client: %s", line);
    }
    /* Root (this process) is always accepted, whatever the list says. */
    const char* as_root[] = {"--child-conn", g_iobd.target, NULL};
    run_child(as_root, line, sizeof line, &pid);
    assert_string_equal(line, "ZX_OK");
    stop_iobd();
}

int main(int argc, char** argv) {
    if (argc > 1 && strcmp(argv[1], "--child-attach") == 0) {
        return child_attach(argc, argv);
    }
    if (argc > 1 && strcmp(argv[1], "--child-conn") == 0) {
        return child_conn(argc, argv);
    }
    if (argc > 1) {
        iobd_harness_set_binary(argv[1]);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_secret_from_another_process),
        cmocka_unit_test(test_allow_uid_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
