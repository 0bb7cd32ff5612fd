/* SPDX-License-Identifier: MIT */
/*
 * A private iobd for a test or a benchmark, and the "does it accept connections yet" probes.
 * The one launcher of the project: tests (tests/integration/map_harness.h,
 * tests/server/rpc/iobd_harness.h) and the benchmarks (bench/) all start iobd through it.
 *
 * iobd starts with posix_spawn, never fork: a caller may have called grpc_init, and gRPC's C
 * core is not fork-safe. Its sockets live in a fresh directory short enough for sun_path
 * (108 bytes): the stream socket <dir>/iobd.sock and the map broker's <dir>/iobd-broker.sock
 * (iobd's default place, next to the first Unix socket). Ready means that every socket it
 * was asked for accepts a connection; a bare connect() shows that without speaking gRPC.
 */
#ifndef IOB_CLIENT_TESTKIT_IOBD_LAUNCH_H_
#define IOB_CLIENT_TESTKIT_IOBD_LAUNCH_H_

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define IOB_TK_IOBD_EXTRA_MAX 32

typedef struct iob_tk_iobd_config {
    const char* binary;       /* iobd's path */
    const char* hugepages;    /* --hugepages value; NULL: "off" */
    const char* log_level;    /* --log-level value; NULL: "warning" */
    const char* const* extra; /* more arguments, NULL-terminated; NULL: none */
    bool tcp;                 /* also listen on a free loopback port (see tcp_target) */
    bool other_users;         /* directory 0755 and sockets 0666: helpers under other uids */
    bool log_file;            /* stdout and stderr to log_path; else both are inherited */
    bool exit_with_parent;    /* iobd --exit-with-parent: a killed caller takes it along */
    int start_timeout_ms;     /* 0: 10 s */
} iob_tk_iobd_config_t;

typedef struct iob_tk_iobd {
    pid_t pid; /* 0 when not running */
    char dir[64];
    char socket_path[96]; /* <dir>/iobd.sock */
    char broker_path[96]; /* <dir>/iobd-broker.sock; "" with --no-broker */
    char target[112];     /* "unix:<socket_path>" */
    char tcp_target[32];  /* "127.0.0.1:<port>" with tcp, else "" */
    char log_path[96];    /* <dir>/iobd.log with log_file, else "" */
} iob_tk_iobd_t;

/*
 * Starts iobd and waits until it accepts connections. With tcp, iobd serves TCP only to
 * holders of a bearer token: it gets one, and IOB_TOKEN is set (unless already set) so that
 * this process's clients and children send it. False with the reason (and the end of iobd's
 * log) in err; nothing is left running or on disk then.
 */
bool iob_tk_iobd_start(iob_tk_iobd_t* d, const iob_tk_iobd_config_t* config, char* err,
                       size_t err_len);

/*
 * SIGTERM, then SIGKILL after timeout_ms; removes the directory. True when iobd exited 0 in
 * time and removed its sockets; otherwise why says what went wrong, and iobd's log (if it
 * had one) is copied to stderr first. Harmless on a stopped or never started iobd.
 */
bool iob_tk_iobd_stop(iob_tk_iobd_t* d, int timeout_ms, char* why, size_t why_len);

/* A short fresh directory for sockets: mkdtemp of <TMPDIR or /tmp>/<prefix>-XXXXXX. */
bool iob_tk_tempdir(const char* prefix, char* out, size_t len);

/* Whether a connect() to the Unix socket at path (type SOCK_STREAM, SOCK_SEQPACKET) works. */
bool iob_tk_can_connect_unix(const char* path, int type);
/* Whether a connect() to 127.0.0.1:port works. */
bool iob_tk_can_connect_tcp(int port);
/*
 * A loopback port nobody listens on now (the kernel's choice for port 0), -1 on failure. The
 * window until the caller's server binds it is a race we accept: a clash shows as a start
 * that fails.
 */
int iob_tk_free_tcp_port(void);

#endif /* IOB_CLIENT_TESTKIT_IOBD_LAUNCH_H_ */
