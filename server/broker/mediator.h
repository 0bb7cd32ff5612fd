/* SPDX-License-Identifier: MIT */
/*
 * iobd's mediator: one thread that serves the mediated request channels of co-located
 * writers (shm/mediated_channel.h), and the checks every mediated request passes, whether
 * it came as a broker datagram or through a channel.
 *
 * Trust model: a channel's submission memory and the doorbell are written by clients at
 * any moment. The mediator copies a request into its own buffer before it reads any field,
 * reads channel memory only within the channel and only under iob_fault_call, and never
 * waits on a client: it neither sleeps on a word a single client controls nor takes a lock
 * a client can hold. What a hostile writer can do is send malformed requests (refused with
 * ZX_ERR_INVALID_ARGS, posted to its own completion page) or many requests (served round
 * robin with everyone else's: one request per channel per scan).
 *
 * Threads: iobd_mediator_open and iobd_mediator_close run on the broker's loop; the
 * mediator thread owns the channels once they are handed over and frees them. The core's
 * calls are thread-safe (its own lock); the mediator holds no lock of its own while in them.
 *
 * Budget: one channel per broker connection (so per uid as many as its connections) and at
 * most max_channels in all; past that a process is refused a channel and keeps using
 * datagrams.
 */
#ifndef IOB_SERVER_BROKER_MEDIATOR_H_
#define IOB_SERVER_BROKER_MEDIATOR_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <zircon/types.h>

#include "server/core/iob_core.h"
#include "server/core/iob_request.h"
#include "shm/broker_wire.h"

#define IOBD_MEDIATOR_DEFAULT_MAX_CHANNELS 256u

typedef struct iobd_mediator iobd_mediator_t;
typedef struct iobd_mchan iobd_mchan_t;

typedef struct iobd_mediator_stats {
    uint64_t channels_open;
    uint64_t channels_refused;
    uint64_t requests; /* served through channels */
    uint64_t malformed;
    uint64_t sleeps; /* times the mediator slept on the doorbell */
} iobd_mediator_stats_t;

/* Starts the thread. ZX_ERR_NO_MEMORY / ZX_ERR_NO_RESOURCES. */
zx_status_t iobd_mediator_start(iob_core_t* core, uint32_t max_channels, iobd_mediator_t** out);
/* Stops and joins the thread (it never waits on a client), frees every channel. */
void iobd_mediator_stop(iobd_mediator_t* m);

/*
 * A new channel for `session`: fds[0..2] are the submission, completion and doorbell
 * memfds for the client (the caller sends and then closes them). ZX_ERR_NO_RESOURCES at
 * the cap; ZX_ERR_NO_MEMORY.
 */
zx_status_t iobd_mediator_open(iobd_mediator_t* m, iob_session_id_t session, iobd_mchan_t** out,
                               int fds[3]);
/* The connection that owns ch ended: the mediator stops serving it and frees it. */
void iobd_mediator_close(iobd_mediator_t* m, iobd_mchan_t* ch);

void iobd_mediator_get_stats(iobd_mediator_t* m, iobd_mediator_stats_t* out);

/*
 * A WRITEV request in iobd's own memory, `len` bytes that the header's size agrees with
 * (a datagram, or a channel's request once copied out): false when it is malformed
 * (nothing ran), else true with the core's status. The fixed part's fields are checked
 * here; the rest is iob_request_writev's, the translation the gRPC adapter uses too.
 * A NULL core only checks.
 */
bool iobd_mediated_writev(iob_core_t* core, iob_session_id_t session,
                          const iob_broker_writev_req_t* req, size_t len, zx_status_t* status);
/*
 * A WRITEV_PACKED request (shm/broker_wire.h), as iobd_mediated_writev: the core sees
 * num_vectors readable vectors, the first holding every byte sent.
 */
bool iobd_mediated_writev_packed(iob_core_t* core, iob_session_id_t session,
                                 const iob_broker_writev_packed_req_t* req, size_t len,
                                 zx_status_t* status);
/*
 * Whether an ALLOCATE_ID's flags agree with its length and descriptor (have_fd: a blob memfd
 * came with it). The bytes sent against blob_size are iob_request_allocate_id's check.
 */
bool iobd_mediated_allocate_id_layout_ok(const iob_broker_allocate_id_req_t* req, size_t len,
                                         bool have_fd);
/*
 * An ALLOCATE_ID whose layout is ok, through iob_request_allocate_id: its blob is the bytes
 * after the fixed part, or with IOB_BROKER_ALLOC_BLOB_IN_FD fd_blob (read from its memfd).
 * NULL and the core's status, or why the request is malformed; a NULL core only checks.
 */
const char* iobd_mediated_allocate_id(iob_core_t* core, iob_session_id_t session,
                                      const iob_broker_allocate_id_req_t* req, size_t len,
                                      const void* fd_blob, uint32_t* id, zx_status_t* status);

#endif /* IOB_SERVER_BROKER_MEDIATOR_H_ */
