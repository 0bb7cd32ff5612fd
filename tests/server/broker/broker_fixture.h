/* SPDX-License-Identifier: MIT */
/*
 * The in-process broker fixture shared by the broker's tests: a real iob_core (4 KiB
 * backing), a libuv loop run in the test's thread between a request and its reply, and a
 * raw SOCK_SEQPACKET client speaking shm/broker_wire.h.
 */
#ifndef IOB_TESTS_SERVER_BROKER_BROKER_FIXTURE_H_
#define IOB_TESTS_SERVER_BROKER_BROKER_FIXTURE_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "server/broker/broker.h"
#include "server/core/iob_core.h"
#include "shm/broker_wire.h"

typedef struct fixture {
    uv_loop_t loop;
    iob_core_t* core;
    iob_session_id_t session;
    uint8_t secret[IOB_CORE_SECRET_SIZE]; /* the session's, from the core */
    iobd_broker_t* broker;
    char* dir;
    char path[108];
    bool refuse_peers;
    char last_warning[512]; /* the broker's last warning */
    zx_handle_t ep0;
    zx_handle_t ep1;
    int64_t now_ns; /* the core's clock (token expiry) */
    /* The core's handle_signals calls: how many, and the last one's arguments. */
    int signal_calls;
    iob_session_id_t signal_session;
    zx_handle_t signal_handle;
} fixture_t;

/* Any broker reply. */
typedef union {
    iob_broker_hdr_t hdr;
    iob_broker_status_reply_t status;
    iob_broker_map_reply_t map;
    iob_broker_import_reply_t import;
    unsigned char bytes[IOB_BROKER_MAX_MSG + 1];
} reply_t;

/* The next setup's attach deadline (0: the broker's default). */
extern uint32_t g_attach_timeout_ms;

/* The broker's log callback: keeps the last warning in the fixture (last_warning). */
void quiet_log(void* ctx, int level, const char* msg);
/* A core session as rpc would open one for a Unix-socket client (pid, uid). */
iob_session_id_t open_local_session(fixture_t* f, pid_t pid, uid_t uid,
                                    uint8_t secret[IOB_CORE_SECRET_SIZE]);
/* A broker on a fresh core and loop, with one attached-capable session and an IOB. */
int setup(void** state);
int setup_short_deadline(void** state);
int teardown(void** state);
int client_connect(fixture_t* f);
void pump(fixture_t* f, int fd);
void wait_fd_count(fixture_t* f, int want);
/* Sends raw bytes (and optionally one fd), returns the reply's length (0: closed). */
size_t exchange(fixture_t* f, int fd, const void* req, size_t len, int send_fd, reply_t* reply,
                int* fd_out);
zx_status_t attach(fixture_t* f, int fd, uint64_t session, const uint8_t* secret);
zx_status_t map(fixture_t* f, int fd, zx_handle_t h, uint32_t options, uint32_t index,
                uint32_t flags, iob_broker_map_reply_t* out, int* fd_out);
zx_status_t unmap(fixture_t* f, int fd, uint64_t mapping_id);
zx_status_t import_raw(fixture_t* f, int fd, const char* token, size_t token_len, zx_handle_t* out);
zx_status_t import(fixture_t* f, int fd, const char* token, zx_handle_t* out);
zx_signals_t core_signals(fixture_t* f, iob_session_id_t session, zx_handle_t h);
uint64_t core_mappings(fixture_t* f);
uint64_t now_ms(void);

#endif /* IOB_TESTS_SERVER_BROKER_BROKER_FIXTURE_H_ */
