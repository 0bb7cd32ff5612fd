/* SPDX-License-Identifier: MIT */
/*
 * Internals of the map broker shared by broker.c (connections, reading, accepting, start
 * and stop) and broker_requests.c (one handler per request type). Everything here runs on
 * the loop's thread.
 */
#ifndef IOB_SERVER_BROKER_BROKER_INTERNAL_H_
#define IOB_SERVER_BROKER_BROKER_INTERNAL_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "server/broker/broker.h"
#include "server/broker/closer.h"
#include "server/broker/mediator.h"
#include "shm/broker_wire.h"
#include "shm/mediated_channel.h"

typedef struct iobd__conn iobd__conn_t;

/* The fixed parts of every request; the union keeps each body aligned. */
typedef union {
    iob_broker_hdr_t hdr;
    iob_broker_attach_req_t attach;
    iob_broker_map_req_t map;
    iob_broker_unmap_req_t unmap;
    iob_broker_import_req_t import;
    iob_broker_writev_req_t writev;
    iob_broker_writev_packed_req_t writev_packed;
    iob_broker_allocate_id_req_t allocate_id;
    iob_broker_channel_req_t channel;
} iobd__rx_t;

struct iobd__conn {
    uv_poll_t poll; /* first member: the poll's data points back here anyway */
    uv_timer_t attach_timer;
    iobd_broker_t* broker;
    int fd;
    unsigned open_handles; /* poll + timer not yet closed */
    bool closing;
    bool paused; /* poll stopped until the closer has room */
    bool attached;
    iob_session_id_t session;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    unsigned auth_failures;
    iobd_mchan_t* chan; /* its mediated request channel, once asked for */
    iobd__conn_t* prev;
    iobd__conn_t* next;
};

struct iobd_broker {
    uv_loop_t* loop;
    iob_core_t* core;
    iobd_broker_config_t config;
    char* socket_path; /* our copy; config.socket_path points here */
    int listen_fd;
    uv_poll_t listen_poll;
    bool stopping;
    unsigned open_handles; /* listen poll, wake, connection handles not yet closed */
    bool listen_paused;
    iobd__conn_t* conns;
    iobd__closer_t* closer;
    uv_async_t wake; /* the closer made room: resume paused reading and accepting */
    iobd_broker_stats_t stats;
    iobd_mediator_t* mediator; /* serves the connections' request channels */
    /*
     * One receive buffer for every connection (all of them are served on the loop thread,
     * one datagram at a time): room for the largest mediated request plus one byte, so a
     * longer datagram shows as truncated. Its bytes go to the core as they are: the core
     * copies them into the shared region, the only copy on iobd's side.
     */
    iobd__rx_t* rx;
    /*
     * The fd the datagram in rx carried (an ALLOCATE_ID blob memfd), or -1. Its handler
     * only borrows it; the closer thread gets it after the dispatch.
     */
    int rx_fd;
    int64_t rx_start_ns; /* when the datagram in rx was read, for the latency metrics */
};

/* ---- broker.c ---- */

void iobd__log(iobd_broker_t* broker, int level, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Ends a connection. Mapping records granted through it are deliberately kept: the
 * process may still have the memory mapped (broker.h, "Lifetimes").
 */
void iobd__conn_close(iobd__conn_t* conn, const char* why);
/* Sends a reply (with fds); its status is counted in the metrics. */
zx_status_t iobd__send_fds(iobd__conn_t* conn, const void* msg, size_t len, const int* fds,
                           unsigned nfds);
zx_status_t iobd__send(iobd__conn_t* conn, const void* msg, size_t len, int fd);
/* Replies with a status-only message; a failed send ends the connection. */
void iobd__reply_status(iobd__conn_t* conn, uint16_t type, uint64_t request_id, zx_status_t status);
/* Counts and answers a malformed message. */
void iobd__bad_message(iobd__conn_t* conn, uint64_t request_id, zx_status_t status,
                       const char* what);

/* ---- broker_requests.c ---- */

/* Validates one datagram (in broker->rx, with broker->rx_fd) and runs its handler. */
void iobd__dispatch(iobd__conn_t* conn, size_t len);

#endif /* IOB_SERVER_BROKER_BROKER_INTERNAL_H_ */
