/* SPDX-License-Identifier: MIT */
/*
 * The mediator (mediator.h) and the request checks shared with the broker's datagrams.
 * The channel layout and the wake-up protocol are in shm/mediated_channel.h.
 *
 * The thread scans every channel in turn, serving at most one request of each per scan.
 * While any channel had work in the last MEDIATOR_SPIN_NS it keeps scanning (no system
 * call per record: a busy mediator only reads memory), then it announces that it sleeps
 * and sleeps on the doorbell, costing no CPU while idle.
 */
#include "server/broker/mediator.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shm/fault_guard.h"
#include "shm/mediated_channel.h"

/*
 * How long the mediator keeps scanning after its last request before it sleeps: long
 * enough to cover a writer's turn-around between two calls (its own copy and bookkeeping,
 * a few microseconds), short enough that a burst's tail costs little CPU on a small host.
 */
#define MEDIATOR_SPIN_NS 50000
/*
 * What a request's first copy takes, in one go: a packed writev of a 64-byte record (104
 * bytes). Every line more is also prefetched at every look at seq while crossings are
 * dear, and taken from the writer while it writes (512 here moved 5 % fewer records).
 */
#define MEDIATOR_TAKE_FIRST 128u
_Static_assert(MEDIATOR_TAKE_FIRST <= IOB_BROKER_MAX_MEDIATED_MSG, "within the request area");
/*
 * The longest the idle mediator sleeps on the doorbell at a time: the doorbell is
 * client-writable, so a wake-up can be lost (mediator_sleep); this bounds what that costs
 * the writer or the loop (iobd_mediator_stop joins the thread). Each timeout costs a
 * wake-up: with four idle channels, iobd used 0.6 % of a CPU at 10 ms on the reference VM,
 * 0.1-0.2 % at 100 ms (one or two clock ticks in 10 s), 0.0-0.1 % with no bound.
 */
#define MEDIATOR_SLEEP_MAX_NS 100000000
/*
 * An idle yield that returns later than this (1 ms) means tasks other than the writers
 * held this CPU: the writers and the mediator yield within microseconds, so only a foreign
 * task that runs its whole slice keeps a yield away that long. The scheduler puts a
 * yielder behind such tasks, so on a busy host every request waited a slice (one writer
 * fell to a few hundred records/s with a CPU-bound process per CPU). For
 * MEDIATOR_CONTENDED_FOR_NS the idle mediator then sleeps on the doorbell at once instead
 * of yielding, and does not yield after serving: writers ring it, and a woken sleeper runs
 * ahead of the tasks that kept the CPU busy. One yield after that period looks again. The
 * writer's side keeps yielding: with four writers on two CPUs its yields hand the CPU to
 * another writer, and waiting on the futex there cost three quarters of the rate.
 */
#define MEDIATOR_CONTENDED_NS 1000000
#define MEDIATOR_CONTENDED_FOR_NS 100000000
/* Scans between clock reads while spinning. */
#define MEDIATOR_CLOCK_EVERY 64u
/*
 * Prefetching a request's lines with its seq (mediator_take) saves a crossing when
 * crossings between the writer's CPU and the mediator's are dear, and costs more than it
 * saves when they are cheap: reading the lines at every scan takes them back from the
 * writer while it writes them, and its stores must fetch them again. On the reference host
 * a crossing takes about 35 ns or 110-230 ns depending on where the hypervisor put the two
 * vCPUs that minute; in paired runs one writer went from 0.41x to 0.50x of the sync floor
 * with prefetching in the slow minutes, and from 2.7 to 2.3 M records/s in the fast ones.
 * So each channel measures: one request in MEDIATOR_PROBE_EVERY is taken without
 * prefetching, and how long its first lines took to arrive decides for the next ones.
 */
#define MEDIATOR_PROBE_EVERY 128u
#define MEDIATOR_PREFETCH_ABOVE_NS 100

struct iobd_mchan {
    iob_session_id_t session;
    iob_mchan_sub_t* sub;   /* client-writable: read only under iob_fault_call */
    iob_mchan_comp_t* comp; /* ours: the client maps it read-only */
    uint32_t served_seq;    /* the last seq value served (the mediator thread's) */
    uint32_t writer_cpu;    /* the writer's hint, as read with its last request */
    uint32_t until_probe;   /* requests until one is taken without prefetching */
    bool prefetch;          /* what the last probe decided */
    bool wake_check;        /* an answer was posted: whether its writer sleeps is read next */
    _Atomic bool closed;    /* set by the loop; the mediator then frees the channel */
    bool broken;            /* its memory faulted: no longer served */
    iobd_mchan_t* next_new; /* in the handover list, under mu */
};

struct iobd_mediator {
    iob_core_t* core;
    uint32_t max_channels;
    pthread_t thread;
    pthread_mutex_t mu;      /* the handover list, the channel count, the stats */
    iobd_mchan_t* new_chans; /* opened, not yet taken by the thread */
    uint32_t channel_count;  /* open channels, handed over or not */
    _Atomic bool changed;    /* new channels or closes to look at */
    _Atomic bool stopping;
    int doorbell_fd;
    void* doorbell_map;
    _Atomic uint32_t* doorbell; /* its first word; client-writable */
    /* The thread's own. */
    int cpu; /* where it last ran, as published in every completion page; -1: not yet */
    int64_t contended_until; /* until then the idle mediator sleeps instead of yielding */
    iobd_mchan_t** chans;
    size_t nchans;
    size_t chans_cap;
    unsigned char* rx; /* one request copied out of a channel */
    /* Under mu. */
    uint64_t channels_open;
    uint64_t channels_refused;
    /* The thread's counters, read by iobd_mediator_get_stats from the loop. */
    _Atomic uint64_t requests;
    _Atomic uint64_t malformed;
    _Atomic uint64_t sleeps;
};

/*
 * Counts one more in a counter only the mediator thread writes (the loop reads it): a
 * plain load and store, where an atomic add is a locked instruction that waits for every
 * store before it, the answer just posted included.
 */
static void mediator_count(_Atomic uint64_t* counter) {
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ---- The checks of a mediated request (both transports) ---- */

bool iobd_mediated_writev(iob_core_t* core, iob_session_id_t session,
                          const iob_broker_writev_req_t* req, size_t len, zx_status_t* status) {
    bool array_unreadable = (req->flags & IOB_BROKER_WRITEV_VECTORS_UNREADABLE) != 0;
    if ((req->flags & ~(uint32_t)IOB_BROKER_WRITEV_VECTORS_UNREADABLE) != 0 ||
        req->vector_count > IOB_BROKER_WRITEV_MAX_VECTORS || len < sizeof *req) {
        return false;
    }
    iob_request_vec_t vecs[IOB_BROKER_WRITEV_MAX_VECTORS];
    for (uint32_t i = 0; i < req->vector_count; i++) {
        const iob_broker_vec_t* v = &req->vecs[i];
        if ((v->flags & ~(uint32_t)IOB_BROKER_VEC_READABLE) != 0) {
            return false;
        }
        vecs[i] = (iob_request_vec_t){v->capacity, (v->flags & IOB_BROKER_VEC_READABLE) != 0};
    }
    iob_writev_request_t w = {
        .handle = req->handle,
        .options = req->options,
        .region_index = req->region_index,
        .num_vectors = req->num_vectors,
        .vectors_unreadable = array_unreadable,
        .vecs = vecs,
        .vec_count = req->vector_count,
        .data = req + 1,
        .data_len = len - sizeof *req,
    };
    return iob_request_writev(core, session, &w, status) == NULL;
}

bool iobd_mediated_writev_packed(iob_core_t* core, iob_session_id_t session,
                                 const iob_broker_writev_packed_req_t* req, size_t len,
                                 zx_status_t* status) {
    if (len < sizeof *req || req->num_vectors > IOB_BROKER_WRITEV_MAX_VECTORS) {
        return false;
    }
    /* The first vector holds every byte, the others none: the same record and answers. */
    iob_request_vec_t vecs[IOB_BROKER_WRITEV_MAX_VECTORS];
    for (uint32_t i = 0; i < req->num_vectors; i++) {
        vecs[i] = (iob_request_vec_t){i == 0 ? len - sizeof *req : 0u, true};
    }
    iob_writev_request_t w = {
        .handle = req->handle,
        .options = req->options,
        .region_index = req->region_index,
        .num_vectors = req->num_vectors,
        .vecs = vecs,
        .vec_count = req->num_vectors,
        .data = req + 1,
        .data_len = len - sizeof *req,
    };
    return iob_request_writev(core, session, &w, status) == NULL;
}

bool iobd_mediated_allocate_id_layout_ok(const iob_broker_allocate_id_req_t* req, size_t len,
                                         bool have_fd) {
    const uint32_t known =
        IOB_BROKER_ALLOC_BLOB_UNREADABLE | IOB_BROKER_ALLOC_ID_NULL | IOB_BROKER_ALLOC_BLOB_IN_FD;
    bool unreadable = (req->flags & IOB_BROKER_ALLOC_BLOB_UNREADABLE) != 0;
    bool in_fd = (req->flags & IOB_BROKER_ALLOC_BLOB_IN_FD) != 0;
    /* The bytes sent must agree with blob_size too: iob_request_allocate_id checks that. */
    return len >= sizeof *req && (req->flags & ~known) == 0 &&
           (!in_fd || (!unreadable && len == sizeof *req && have_fd));
}

const char* iobd_mediated_allocate_id(iob_core_t* core, iob_session_id_t session,
                                      const iob_broker_allocate_id_req_t* req, size_t len,
                                      const void* fd_blob, uint32_t* id, zx_status_t* status) {
    bool in_fd = (req->flags & IOB_BROKER_ALLOC_BLOB_IN_FD) != 0;
    iob_allocate_id_request_t a = {
        .handle = req->handle,
        .options = req->options,
        .region_index = req->region_index,
        .blob_size = req->blob_size,
        .blob_unreadable = (req->flags & IOB_BROKER_ALLOC_BLOB_UNREADABLE) != 0,
        .id_null = (req->flags & IOB_BROKER_ALLOC_ID_NULL) != 0,
        .blob = in_fd ? fd_blob : (const void*)(req + 1),
        .blob_len = in_fd ? (size_t)req->blob_size : len - sizeof *req,
    };
    return iob_request_allocate_id(core, session, &a, id, status);
}

/* A channel's request (in m->rx, len bytes): its status; *id for ALLOCATE_ID. */
static zx_status_t mediator_run(iobd_mediator_t* m, iobd_mchan_t* ch, size_t len, uint32_t* id) {
    const iob_broker_hdr_t* hdr = (const iob_broker_hdr_t*)m->rx;
    bool ok = hdr->version == IOB_BROKER_WIRE_VERSION && hdr->size == len;
    zx_status_t st = ZX_ERR_INVALID_ARGS;
    if (ok && hdr->type == IOB_BROKER_WRITEV && len >= sizeof(iob_broker_writev_req_t)) {
        const iob_broker_writev_req_t* req = (const iob_broker_writev_req_t*)m->rx;
        ok = req->layout == IOB_BROKER_MEDIATED_LAYOUT &&
             iobd_mediated_writev(m->core, ch->session, req, len, &st);
    } else if (ok && hdr->type == IOB_BROKER_WRITEV_PACKED &&
               len >= sizeof(iob_broker_writev_packed_req_t)) {
        const iob_broker_writev_packed_req_t* req = (const iob_broker_writev_packed_req_t*)m->rx;
        ok = req->layout == IOB_BROKER_MEDIATED_LAYOUT &&
             iobd_mediated_writev_packed(m->core, ch->session, req, len, &st);
    } else if (ok && hdr->type == IOB_BROKER_ALLOCATE_ID &&
               len >= sizeof(iob_broker_allocate_id_req_t)) {
        const iob_broker_allocate_id_req_t* req = (const iob_broker_allocate_id_req_t*)m->rx;
        ok = req->layout == IOB_BROKER_MEDIATED_LAYOUT &&
             iobd_mediated_allocate_id_layout_ok(req, len, false) &&
             iobd_mediated_allocate_id(m->core, ch->session, req, len, NULL, id, &st) == NULL;
    } else {
        ok = false;
    }
    if (!ok) {
        mediator_count(&m->malformed);
        return ZX_ERR_INVALID_ARGS;
    }
    return st;
}

/* ---- Reading a channel ---- */

static int64_t mediator_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct mediator_take {
    iobd_mediator_t* m;
    iobd_mchan_t* ch;
    bool wake;   /* the writer of the last answer sleeps (or says it does) */
    bool probe;  /* taken without prefetching, timed */
    int64_t first_ns; /* with probe: how long the first lines of a new request took */
    uint32_t seq;
    size_t len; /* 0: a new seq whose request is malformed before any field could be used */
    bool fresh;
} mediator_take_t;

/*
 * Under iob_fault_call: whether the writer of the last answer posted sleeps, a new seq,
 * and its request copied into m->rx. The header's size is read from our copy and bounded
 * before the rest is copied; the fields are then checked in our copy only (so what is
 * checked is what was copied).
 */
static zx_status_t mediator_take(void* ctx) {
    mediator_take_t* t = ctx;
    iob_mchan_sub_t* sub = t->ch->sub;
    const unsigned char* msg = (const unsigned char*)sub + IOB_MCHAN_MSG_OFFSET;
    /*
     * While crossings are dear (the channel's last probe took longer than
     * MEDIATOR_PREFETCH_ABOVE_NS), the request's first lines are asked for together with
     * seq's: when seq is new they arrive with it, where loading them after seq turned out
     * new waits for a second crossing from the writer's CPU.
     */
    bool prefetch = t->ch->prefetch && !t->probe;
    for (unsigned off = 0; prefetch && off < MEDIATOR_TAKE_FIRST; off += 64) {
        __builtin_prefetch(msg + off);
    }
    /* seq_cst: after the store of done_seq that posted the answer (mediator_post). */
    t->wake = t->ch->wake_check && atomic_load(&sub->writer_waiting) != 0;
    t->seq = atomic_load_explicit(&sub->seq, memory_order_acquire);
    t->fresh = t->seq != t->ch->served_seq;
    t->len = 0;
    if (!t->fresh) {
        return ZX_OK;
    }
    t->ch->writer_cpu = atomic_load_explicit(&sub->writer_cpu, memory_order_relaxed);
    /*
     * The first lines whatever the size says: they cross from the writer's CPU together,
     * where reading the header first and then the rest would wait for two crossings.
     */
    unsigned char* rx = t->m->rx;
    int64_t start = t->probe ? mediator_now() : 0;
    memcpy(rx, msg, MEDIATOR_TAKE_FIRST);
    t->first_ns = t->probe ? mediator_now() - start : 0;
    iob_broker_hdr_t hdr;
    memcpy(&hdr, rx, sizeof hdr);
    if (hdr.size < sizeof hdr || hdr.size > IOB_BROKER_MAX_MEDIATED_MSG) {
        return ZX_OK;
    }
    if (hdr.size > MEDIATOR_TAKE_FIRST) {
        memcpy(rx + MEDIATOR_TAKE_FIRST, msg + MEDIATOR_TAKE_FIRST, hdr.size - MEDIATOR_TAKE_FIRST);
    }
    t->len = hdr.size;
    return ZX_OK;
}

/*
 * Posts a request's outcome. Whether its writer sleeps is read with the channel's next
 * take (one scan later, under the guard that read takes anyway, instead of a guard of its
 * own for every answer): a writer goes to sleep only after spinning for microseconds, so
 * waking it a scan later changes nothing it can see.
 */
static void mediator_post(iobd_mchan_t* ch, uint32_t seq, zx_status_t status, uint32_t id) {
    ch->comp->status = status;
    ch->comp->id = id;
    /* seq_cst: against the writer's store of writer_waiting (mediated_channel.h). */
    atomic_store(&ch->comp->done_seq, seq);
    ch->served_seq = seq;
    ch->wake_check = true;
}

/* Serves at most one request of ch; true when it did. */
static bool mediator_serve(iobd_mediator_t* m, iobd_mchan_t* ch) {
    if (ch->broken) {
        return false;
    }
    mediator_take_t t = {.m = m, .ch = ch, .probe = ch->until_probe == 0};
    zx_status_t st = iob_fault_call(ch->sub, IOB_MCHAN_SUB_SIZE, mediator_take, &t);
    /* A lost page reads as a fault: wake then too, a spurious wake-up costs nothing. */
    if (ch->wake_check && (t.wake || st != ZX_OK)) {
        iob_mchan_futex_wake(&ch->comp->done_seq);
    }
    ch->wake_check = false;
    if (st != ZX_OK) {
        /*
         * Only a writer that destroyed its own channel gets here (a shmem memfd sealed
         * against shrinking does not fault today; this is the guard if it ever does): it
         * is not served any more, and its calls time out into the datagram path.
         */
        ch->broken = true;
        return false;
    }
    if (!t.fresh) {
        return false;
    }
    if (t.probe) {
        ch->prefetch = t.first_ns > MEDIATOR_PREFETCH_ABOVE_NS;
        ch->until_probe = MEDIATOR_PROBE_EVERY;
    } else {
        ch->until_probe--;
    }
    uint32_t id = 0;
    zx_status_t status = ZX_ERR_INVALID_ARGS;
    if (t.len == 0) {
        mediator_count(&m->malformed);
    } else {
        status = mediator_run(m, ch, t.len, &id);
    }
    mediator_post(ch, t.seq, status, status == ZX_OK ? id : 0u);
    mediator_count(&m->requests);
    return true;
}

static void mediator_free_chan(iobd_mchan_t* ch) {
    munmap(ch->sub, IOB_MCHAN_SUB_SIZE);
    munmap(ch->comp, IOB_MCHAN_COMP_SIZE);
    free(ch);
}

/* Takes new channels in and frees closed ones (the thread's side of the handover). */
static void mediator_update(iobd_mediator_t* m) {
    /* A plain load first: every scan comes here, and an exchange would write the line. */
    if (!atomic_load_explicit(&m->changed, memory_order_relaxed) ||
        !atomic_exchange(&m->changed, false)) {
        return;
    }
    pthread_mutex_lock(&m->mu);
    while (m->new_chans != NULL) {
        iobd_mchan_t* ch = m->new_chans;
        if (m->nchans == m->chans_cap) {
            /* Capacity for every channel was reserved at open: cannot fail here. */
            break;
        }
        m->new_chans = ch->next_new;
        m->chans[m->nchans++] = ch;
        m->cpu = -1; /* the new channel learns where the mediator runs */
    }
    size_t kept = 0;
    for (size_t i = 0; i < m->nchans; i++) {
        iobd_mchan_t* ch = m->chans[i];
        if (atomic_load(&ch->closed)) {
            mediator_free_chan(ch);
            m->channel_count--;
        } else {
            m->chans[kept++] = ch;
        }
    }
    m->nchans = kept;
    pthread_mutex_unlock(&m->mu);
}

typedef struct mediator_bell {
    iobd_mediator_t* m;
    uint32_t value;
} mediator_bell_t;

static zx_status_t mediator_read_doorbell(void* ctx) {
    mediator_bell_t* b = ctx;
    b->value = atomic_load(b->m->doorbell);
    return ZX_OK;
}

static void mediator_announce_sleep(iobd_mediator_t* m, uint32_t sleeping) {
    for (size_t i = 0; i < m->nchans; i++) {
        atomic_store(&m->chans[i]->comp->mediator_sleeping, sleeping);
    }
}

/*
 * Every channel was idle for the spin budget: sleep on the doorbell unless a last look
 * (after announcing it) finds work. The doorbell is client-writable: a changed value ends
 * the wait early, and a fault (a punched page) just skips the sleep. A value stored back
 * right after someone's increment (a writer's ring, or iobd's own kick at open, close and
 * stop) hides that wake-up, so each wait is bounded by MEDIATOR_SLEEP_MAX_NS; a wait that
 * times out looks once more and sleeps again at once, without spinning first, so an idle
 * mediator costs a system call and a look every MEDIATOR_SLEEP_MAX_NS.
 */
static void mediator_sleep(iobd_mediator_t* m) {
    mediator_announce_sleep(m, 1);
    bool counted = false;
    for (;;) {
        mediator_bell_t bell = {.m = m, .value = 0};
        bool ok = iob_fault_call(m->doorbell, IOB_MCHAN_DOORBELL_SIZE, mediator_read_doorbell,
                                 &bell) == ZX_OK;
        bool work = atomic_load(&m->changed) || atomic_load(&m->stopping);
        for (size_t i = 0; !work && i < m->nchans; i++) {
            work = mediator_serve(m, m->chans[i]);
        }
        if (!ok || work) {
            break;
        }
        if (!counted) {
            mediator_count(&m->sleeps);
            counted = true;
        }
        const struct timespec bound = {.tv_sec = 0, .tv_nsec = MEDIATOR_SLEEP_MAX_NS};
        if (iob_mchan_futex_wait(m->doorbell, bell.value, &bound) == 0 || errno != ETIMEDOUT) {
            break; /* rung (or the value changed): spin again before the next sleep */
        }
    }
    mediator_announce_sleep(m, 0);
}

/* Tells the writers where the mediator runs when that changed (mediated_channel.h). */
static void mediator_publish_cpu(iobd_mediator_t* m) {
    int cpu = sched_getcpu();
    if (cpu == m->cpu) {
        return;
    }
    m->cpu = cpu;
    for (size_t i = 0; i < m->nchans; i++) {
        atomic_store_explicit(&m->chans[i]->comp->mediator_cpu, cpu >= 0 ? (uint32_t)cpu + 1 : 0,
                              memory_order_relaxed);
    }
}

static void* mediator_main(void* arg) {
    iobd_mediator_t* m = arg;
    /*
     * The thread was started with every signal blocked, but a fault's SIGBUS must reach
     * iob_fault_call's handler: a blocked fault signal kills the process instead.
     */
    sigset_t faults;
    sigemptyset(&faults);
    sigaddset(&faults, SIGBUS);
    sigaddset(&faults, SIGSEGV);
    pthread_sigmask(SIG_UNBLOCK, &faults, NULL);
    m->cpu = -1;
    int64_t idle_since = 0;
    unsigned scans = 0;
    while (!atomic_load(&m->stopping)) {
        mediator_update(m);
        /* Where this thread runs changes at a scheduler's pace, not a scan's. */
        if (m->cpu < 0 || scans % MEDIATOR_CLOCK_EVERY == 0) {
            mediator_publish_cpu(m);
        }
        bool served = false;
        bool beside = false;
        bool elsewhere = false;
        for (size_t i = 0; i < m->nchans; i++) {
            iobd_mchan_t* ch = m->chans[i];
            if (mediator_serve(m, ch)) {
                served = true;
                if (m->cpu >= 0 && ch->writer_cpu == (uint32_t)m->cpu + 1) {
                    beside = true;
                } else {
                    elsewhere = true;
                }
            }
        }
        if (served) {
            /*
             * A writer served on this CPU runs now (mediated_channel.h); not while writers
             * on other CPUs keep the mediator busy: they would wait for the yield.
             */
            if (beside && !elsewhere && mediator_now() >= m->contended_until) {
                sched_yield();
            }
            scans = 0;
            idle_since = 0;
            continue;
        }
        /*
         * Idle scans give the CPU away when someone else wants it: on a small host the
         * writer may be waiting for this very CPU to make the next request.
         */
        if (scans >= MEDIATOR_CLOCK_EVERY) {
            int64_t before = mediator_now();
            if (before < m->contended_until) {
                mediator_sleep(m);
                scans = 0;
                idle_since = 0;
                continue;
            }
            sched_yield();
            if (mediator_now() - before > MEDIATOR_CONTENDED_NS) {
                m->contended_until = before + MEDIATOR_CONTENDED_FOR_NS;
            }
        } else {
            iob_mchan_cpu_relax();
        }
        if (++scans % MEDIATOR_CLOCK_EVERY != 0) {
            continue;
        }
        int64_t now = mediator_now();
        if (idle_since == 0) {
            idle_since = now;
        } else if (now - idle_since >= MEDIATOR_SPIN_NS) {
            mediator_sleep(m);
            idle_since = 0;
        }
    }
    return NULL;
}

/* ---- The loop's side ---- */

/*
 * A sealed memfd of `size` bytes. extra_seals F_SEAL_SEAL for a memfd a client gets whose
 * seals are final: the doorbell is shared by every writer, and one that could add
 * F_SEAL_FUTURE_WRITE to it would keep every later writer from mapping it writable.
 */
static int mediator_memfd(const char* name, size_t size, int extra_seals) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return -1;
    }
    if (ftruncate(fd, (off_t)size) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | extra_seals) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void* mediator_map(int fd, size_t size) {
    void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

zx_status_t iobd_mediator_start(iob_core_t* core, uint32_t max_channels, iobd_mediator_t** out) {
    iobd_mediator_t* m = calloc(1, sizeof *m);
    if (m == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    m->core = core;
    m->max_channels = max_channels != 0 ? max_channels : IOBD_MEDIATOR_DEFAULT_MAX_CHANNELS;
    m->chans_cap = m->max_channels;
    m->chans = calloc(m->chans_cap, sizeof *m->chans);
    m->rx = malloc(IOB_BROKER_MAX_MEDIATED_MSG);
    m->doorbell_fd = mediator_memfd("iob-mediator-doorbell", IOB_MCHAN_DOORBELL_SIZE, F_SEAL_SEAL);
    m->doorbell_map =
        m->doorbell_fd >= 0 ? mediator_map(m->doorbell_fd, IOB_MCHAN_DOORBELL_SIZE) : NULL;
    m->doorbell = m->doorbell_map;
    zx_status_t st = m->chans != NULL && m->rx != NULL ? ZX_OK : ZX_ERR_NO_MEMORY;
    if (st == ZX_OK && m->doorbell == NULL) {
        st = ZX_ERR_NO_RESOURCES;
    }
    if (st == ZX_OK) {
        pthread_mutex_init(&m->mu, NULL);
        /* Signals are the loop's business: the mediator takes none. */
        sigset_t all;
        sigset_t old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&m->thread, NULL, mediator_main, m);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            pthread_mutex_destroy(&m->mu);
            st = ZX_ERR_NO_RESOURCES;
        }
    }
    if (st != ZX_OK) {
        if (m->doorbell != NULL) {
            munmap(m->doorbell_map, IOB_MCHAN_DOORBELL_SIZE);
        }
        if (m->doorbell_fd >= 0) {
            close(m->doorbell_fd);
        }
        free(m->rx);
        free(m->chans);
        free(m);
        return st;
    }
    *out = m;
    return ZX_OK;
}

/* Wakes the thread wherever it sleeps (the doorbell is also ours to ring). */
static void mediator_kick(iobd_mediator_t* m) {
    atomic_fetch_add(m->doorbell, 1);
    iob_mchan_futex_wake(m->doorbell);
}

void iobd_mediator_stop(iobd_mediator_t* m) {
    if (m == NULL) {
        return;
    }
    atomic_store(&m->stopping, true);
    mediator_kick(m);
    pthread_join(m->thread, NULL);
    for (size_t i = 0; i < m->nchans; i++) {
        mediator_free_chan(m->chans[i]);
    }
    while (m->new_chans != NULL) {
        iobd_mchan_t* ch = m->new_chans;
        m->new_chans = ch->next_new;
        mediator_free_chan(ch);
    }
    pthread_mutex_destroy(&m->mu);
    munmap(m->doorbell_map, IOB_MCHAN_DOORBELL_SIZE);
    close(m->doorbell_fd);
    free(m->rx);
    free(m->chans);
    free(m);
}

zx_status_t iobd_mediator_open(iobd_mediator_t* m, iob_session_id_t session, iobd_mchan_t** out,
                               int fds[3]) {
    pthread_mutex_lock(&m->mu);
    bool room = m->channel_count < m->max_channels;
    if (room) {
        m->channel_count++; /* the thread's array has a slot for each counted channel */
    } else {
        m->channels_refused++;
    }
    pthread_mutex_unlock(&m->mu);
    if (!room) {
        return ZX_ERR_NO_RESOURCES;
    }
    iobd_mchan_t* ch = calloc(1, sizeof *ch);
    int sub_fd = mediator_memfd("iob-mediated-channel", IOB_MCHAN_SUB_SIZE, F_SEAL_SEAL);
    int comp_fd = mediator_memfd("iob-mediated-completion", IOB_MCHAN_COMP_SIZE, 0);
    zx_status_t st = ch != NULL ? ZX_OK : ZX_ERR_NO_MEMORY;
    if (st == ZX_OK && (sub_fd < 0 || comp_fd < 0)) {
        st = ZX_ERR_NO_RESOURCES;
    }
    if (st == ZX_OK) {
        ch->session = session;
        ch->sub = mediator_map(sub_fd, IOB_MCHAN_SUB_SIZE);
        ch->comp = mediator_map(comp_fd, IOB_MCHAN_COMP_SIZE);
        /*
         * After our writable mapping exists: the client can map the completion page only
         * read-only, cannot write(2) it and cannot punch holes in it.
         */
        if (ch->sub == NULL || ch->comp == NULL ||
            fcntl(comp_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) != 0) {
            st = ZX_ERR_NO_RESOURCES;
        }
    }
    int bell_fd = -1;
    if (st == ZX_OK && (bell_fd = fcntl(m->doorbell_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        st = ZX_ERR_NO_RESOURCES;
    }
    if (st == ZX_OK) {
        /* Only on success: the caller closes whatever fds[] holds (they stay -1 otherwise). */
        fds[0] = sub_fd;
        fds[1] = comp_fd;
        fds[2] = bell_fd;
    }
    if (st != ZX_OK) {
        if (ch != NULL) {
            if (ch->sub != NULL) {
                munmap(ch->sub, IOB_MCHAN_SUB_SIZE);
            }
            if (ch->comp != NULL) {
                munmap(ch->comp, IOB_MCHAN_COMP_SIZE);
            }
            free(ch);
        }
        if (sub_fd >= 0) {
            close(sub_fd);
        }
        if (comp_fd >= 0) {
            close(comp_fd);
        }
        pthread_mutex_lock(&m->mu);
        m->channel_count--;
        pthread_mutex_unlock(&m->mu);
        return st;
    }
    pthread_mutex_lock(&m->mu);
    ch->next_new = m->new_chans;
    m->new_chans = ch;
    m->channels_open++;
    pthread_mutex_unlock(&m->mu);
    atomic_store(&m->changed, true);
    mediator_kick(m);
    *out = ch;
    return ZX_OK;
}

void iobd_mediator_close(iobd_mediator_t* m, iobd_mchan_t* ch) {
    if (m == NULL || ch == NULL) {
        return;
    }
    pthread_mutex_lock(&m->mu);
    m->channels_open--;
    pthread_mutex_unlock(&m->mu);
    atomic_store(&ch->closed, true);
    atomic_store(&m->changed, true);
    mediator_kick(m);
}

void iobd_mediator_get_stats(iobd_mediator_t* m, iobd_mediator_stats_t* out) {
    pthread_mutex_lock(&m->mu);
    out->channels_open = m->channels_open;
    out->channels_refused = m->channels_refused;
    pthread_mutex_unlock(&m->mu);
    out->requests = atomic_load_explicit(&m->requests, memory_order_relaxed);
    out->malformed = atomic_load_explicit(&m->malformed, memory_order_relaxed);
    out->sleeps = atomic_load_explicit(&m->sleeps, memory_order_relaxed);
}
