/* SPDX-License-Identifier: MIT */
/*
 * The map broker's closer thread: every descriptor a client controls is closed there,
 * never on the loop, because a close can wait on the client (a TCP socket lingering with
 * unsent data, a FUSE file's flush, a Unix socket releasing the descriptors queued in it).
 * A bounded queue, with slots reserved for open connections' own sockets and a per-uid
 * share, so a uid whose closes are slow stalls only its own connections (broker.c pauses
 * reading them until iobd__closer_room_for says there is room again).
 */
#ifndef IOB_SERVER_BROKER_CLOSER_H_
#define IOB_SERVER_BROKER_CLOSER_H_

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <uv.h>
#include <zircon/types.h>

#include "shm/fdpass.h"

/*
 * Descriptors one uid may have waiting for the closer: past that, its connections are not
 * read until the closer has caught up with it, so a uid whose closes are slow (a FUSE
 * file's flush) stalls only its own work, not the others' (the headroom holds several).
 */
#define IOBD__CLOSER_PER_UID (2u * IOB_FDPASS_RECV_MAX_FDS)

/*
 * The closer thread's queue. Shared by the loop (pushes) and the thread (pops), under mu;
 * the thread never holds mu while it closes. Freed by the thread once the broker is gone
 * (exiting) and the queue is empty, so stopping iobd never waits on a close either.
 */
typedef struct iobd__closing {
    int fd;
    bool charged; /* counted in the uid's pending descriptors */
    uid_t uid;
} iobd__closing_t;

typedef struct iobd__uid_pending {
    uid_t uid;
    size_t pending;
} iobd__uid_pending_t;

typedef struct iobd__closer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    iobd__closing_t* ring;
    /* Uids with charged descriptors queued (few: a linear scan). */
    iobd__uid_pending_t* uids;
    size_t nuids;
    size_t uids_cap;
    size_t cap;
    size_t head;
    size_t count;
    /* Slots promised to descriptors not queued yet (open connections' sockets). */
    size_t reserved;
    bool exiting;
    /* Set by the loop when it paused for room: the thread then wakes it once (wake). */
    bool want_wake;
    uv_async_t* wake; /* NULL once the broker stops */
} iobd__closer_t;

/* Starts the thread with a queue of cap slots; wake is sent when a paused loop may read again. */
zx_status_t iobd__closer_start(size_t cap, uv_async_t* wake, iobd__closer_t** out);
/* One more slot promised to a descriptor not queued yet (an open connection's socket). */
void iobd__closer_reserve(iobd__closer_t* c);
void iobd__closer_push(iobd__closer_t* c, int fd, bool reserved);
void iobd__closer_push_from(iobd__closer_t* c, const int* fds, size_t n, uid_t uid);
bool iobd__closer_room_for(iobd__closer_t* c, uid_t uid);
bool iobd__closer_room(iobd__closer_t* c, size_t need, bool reserve);
void iobd__closer_unreserve(iobd__closer_t* c);
size_t iobd__closer_pending(iobd__closer_t* c);
void iobd__closer_exit(iobd__closer_t* c);
void iobd__closer_forget_wake(iobd__closer_t* c);

#endif /* IOB_SERVER_BROKER_CLOSER_H_ */
