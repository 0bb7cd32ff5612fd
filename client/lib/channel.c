/* SPDX-License-Identifier: MIT */
/*
 * The writer's side of the mediated request channel (shm/mediated_channel.h has the layout
 * and the wake-up protocol): zx_iob_writev and zx_iob_allocate_id at memory speed, with no
 * system call per record while iobd's mediator is awake.
 *
 * One channel per session (the process), asked for on the first mediated call and tied to
 * the broker connection: iobd reclaims it when that connection closes, so a channel whose
 * connection generation is gone is dropped, and the calls go by datagram. The process's
 * threads take turns on it (chan_lock).
 *
 * Unreadable caller buffers. Zircon answers an unreadable iovec array, payload or blob with
 * a status at a precise step (mediated.c), and the datagram path learns unreadability from
 * the kernel's EFAULT. Asking the kernel for every record costs a system call
 * (process_vm_readv on ourselves measured 1.9 us on the reference host, more than the whole
 * record should cost), so the rule is: memory is read through the kernel
 * (iob__copy_from_user) the first time, and the pages it proved readable are remembered per
 * thread for IOB__HOT_NS; a buffer wholly inside remembered pages is copied with memcpy. A
 * logger formats into the same few buffers call after call, so it asks the kernel about
 * once per IOB__HOT_NS per buffer. A remembered page that the program unmaps or protects
 * within that time is still answered exactly when the fault reaches our SIGSEGV/SIGBUS
 * handler (installed with the first channel, chained to whatever was there before, and
 * checked to be in place, and not blocked by the thread, whenever a page is remembered):
 * a fault inside the range being copied returns "unreadable", every other fault goes to
 * the previous handler. Only a program that replaced that handler without chaining (or
 * blocked the signals in a thread that remembered pages) AND passes a buffer it unmapped
 * in the last IOB__HOT_NS would see its handler run where Zircon returns a status. NULL
 * buffers never reach a copy. The window is timed with the coarse clock (a few ns to read,
 * where the precise one costs about as much as the rest of a call): it ends at the first
 * clock tick (4 ms on the reference host) after IOB__HOT_NS, which only moves when the
 * kernel is asked next.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "client/lib/libiob.h"
#include "shm/fault_guard.h"
#include "shm/mediated_channel.h"

/* How long pages the kernel proved readable are read without asking it again. */
#define IOB__HOT_NS 2000000
#define IOB__HOT_ENTRIES 8u

/* The writer's spin before it sleeps: bounds (ns) and the start. */
#define IOB__MCHAN_SPIN_MIN_NS 2000
#define IOB__MCHAN_SPIN_MAX_NS 50000
/*
 * Pauses before the writer yields: about 1.5 us, a little more than an answer takes when
 * the mediator runs on another CPU.
 */
#define IOB__MCHAN_PAUSES 64u
/* How often a sleeping writer looks whether iobd is still there, and when it gives up. */
#define IOB__MCHAN_CHECK_NS 100000000
#define IOB__MCHAN_TIMEOUT_NS (INT64_C(10) * 1000000000)

typedef struct iob__mchan {
    void* sub_map;
    iob_mchan_sub_t* sub;
    unsigned char* msg; /* the request area in the submission memfd */
    const iob_mchan_comp_t* comp;
    _Atomic uint32_t* doorbell;
    uint64_t gen; /* the broker connection's generation it belongs to */
    uint32_t seq;
    int64_t spin_ns; /* adaptive: twice the last wait that ended while spinning */
} iob__mchan_t;

/* ---- Reading the caller's memory through the kernel ---- */

/* Where process_vm_readv is forbidden (seccomp, some containers): the kernel reads via a pipe. */
static bool iob__copy_via_pipe(void* dst, const void* src, size_t n) {
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        return false;
    }
    bool ok = true;
    const unsigned char* from = src;
    unsigned char* to = dst;
    while (ok && n > 0) {
        size_t chunk = n < 4096 ? n : 4096; /* within the pipe's capacity: never blocks */
        ssize_t w = write(p[1], from, chunk);
        if (w <= 0) {
            ok = false; /* EFAULT: not readable */
            break;
        }
        ssize_t r = read(p[0], to, (size_t)w);
        ok = r == w;
        from += w;
        to += w;
        n -= (size_t)w;
    }
    close(p[0]);
    close(p[1]);
    return ok;
}

bool iob__copy_from_user(void* dst, const void* src, size_t n) {
    if (n == 0) {
        return true;
    }
    if (src == NULL) {
        return false;
    }
    struct iovec local = {.iov_base = dst, .iov_len = n};
    struct iovec remote = {.iov_base = (void*)(uintptr_t)src, .iov_len = n};
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (got >= 0) {
        /* A fault part-way through returns the bytes read before it. */
        return (size_t)got == n;
    }
    if (errno == EFAULT) {
        return false;
    }
    return iob__copy_via_pipe(dst, src, n);
}

/* ---- The guarded copy ---- */

/* The signals a copy from the caller's memory can fault with (unmapped, or a file hole). */
#define IOB__GUARD_SIGNALS (IOB_FAULT_SIGSEGV | IOB_FAULT_SIGBUS)

static pthread_once_t g_guard_once = PTHREAD_ONCE_INIT;
static bool g_guard_ok;

static void iob__guard_install(void) {
    g_guard_ok = iob_fault_init(IOB__GUARD_SIGNALS) == ZX_OK;
}

/* Pages [lo, hi] this thread read through the kernel recently (see the top). */
typedef struct iob__hot {
    uintptr_t lo;
    uintptr_t hi;
    int64_t until;
} iob__hot_t;

/*
 * This thread's remembered pages and iob__hot_copies' state (below). initial-exec: every
 * record reads them several times, and a library's thread-locals otherwise cost a call to
 * __tls_get_addr at each access; the 208 bytes come out of the static TLS that glibc keeps
 * for libraries loaded later (dlopen, as Python's binding does), like fault_guard.c's guard.
 */
typedef struct iob__hot_pages {
    iob__hot_t entries[IOB__HOT_ENTRIES];
    unsigned next;
    bool missed; /* iob__hot_copies: a copy found its source not remembered */
    int64_t now; /* iob__hot_copies: the clock, read once for all its copies */
} iob__hot_pages_t;

static _Thread_local iob__hot_pages_t t_hot __attribute__((tls_model("initial-exec")));

static int64_t iob__clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t iob__mchan_now(void) {
    return iob__clock_ns(CLOCK_MONOTONIC);
}

/* Whether pages [lo, hi] were proved readable by the kernel recently (see the top). */
static bool iob__hot_has(uintptr_t lo, uintptr_t hi, int64_t now) {
    for (unsigned i = 0; i < IOB__HOT_ENTRIES; i++) {
        const iob__hot_t* h = &t_hot.entries[i];
        if (now < h->until && lo >= h->lo && hi <= h->hi) {
            return true;
        }
    }
    return false;
}

/*
 * Whether a fault in this thread reaches the guard: the kernel does not queue a fault
 * signal the thread blocks, it kills the process (a thread that leaves signals to a
 * sigwait thread blocks them all). Such a thread never reads remembered pages.
 */
static bool iob__guard_reaches_thread(void) {
    sigset_t blocked;
    return pthread_sigmask(SIG_BLOCK, NULL, &blocked) == 0 && !sigismember(&blocked, SIGSEGV) &&
           !sigismember(&blocked, SIGBUS);
}

bool iob__guarded_copy(void* dst, const void* src, size_t n) {
    if (n == 0) {
        return true;
    }
    uintptr_t a = (uintptr_t)src;
    if (src == NULL || a + (n - 1) < a) {
        return false;
    }
    uintptr_t lo = a & ~(uintptr_t)4095;
    uintptr_t hi = (a + (n - 1)) | 4095;
    int64_t now = iob__clock_ns(CLOCK_MONOTONIC_COARSE);
    if (iob__hot_has(lo, hi, now)) {
        return iob_fault_memcpy(src, n, dst, src, n) == ZX_OK;
    }
    if (!iob__copy_from_user(dst, src, n)) {
        return false;
    }
    if (g_guard_ok && iob_fault_in_place(IOB__GUARD_SIGNALS) && iob__guard_reaches_thread()) {
        t_hot.entries[t_hot.next] = (iob__hot_t){.lo = lo, .hi = hi, .until = now + IOB__HOT_NS};
        t_hot.next = (t_hot.next + 1) % IOB__HOT_ENTRIES;
    }
    return true;
}

bool iob__hot_copy(void* dst, const void* src, size_t n) {
    if (n == 0) {
        return true;
    }
    uintptr_t a = (uintptr_t)src;
    if (t_hot.missed || src == NULL || a + (n - 1) < a ||
        !iob__hot_has(a & ~(uintptr_t)4095, (a + (n - 1)) | 4095, t_hot.now)) {
        t_hot.missed = true;
        return false;
    }
    iob_fault_range(src, n);
    memcpy(dst, src, n);
    return true;
}

zx_status_t iob__hot_copies(zx_status_t (*fn)(void* ctx), void* ctx) {
    if (!g_guard_ok) {
        return ZX_ERR_NEXT;
    }
    t_hot.now = iob__clock_ns(CLOCK_MONOTONIC_COARSE);
    t_hot.missed = false;
    /* Nothing is recovered until the first copy names its source. */
    zx_status_t st = iob_fault_call(NULL, 0, fn, ctx);
    return st == ZX_OK && !t_hot.missed ? ZX_OK : ZX_ERR_NEXT;
}

/* ---- The channel ---- */

void iob__mchan_free(iob__mchan_t* ch) {
    if (ch == NULL) {
        return;
    }
    munmap(ch->sub_map, IOB_MCHAN_SUB_SIZE);
    munmap((void*)(uintptr_t)ch->comp, IOB_MCHAN_COMP_SIZE);
    munmap((void*)(uintptr_t)ch->doorbell, IOB_MCHAN_DOORBELL_SIZE);
    free(ch);
}

static iob__mchan_t* iob__mchan_map(const int fds[3], uint64_t gen) {
    iob__mchan_t* ch = calloc(1, sizeof *ch);
    if (ch == NULL) {
        return NULL;
    }
    void* sub = mmap(NULL, IOB_MCHAN_SUB_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    void* comp = mmap(NULL, IOB_MCHAN_COMP_SIZE, PROT_READ, MAP_SHARED, fds[1], 0);
    void* bell = mmap(NULL, IOB_MCHAN_DOORBELL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[2], 0);
    if (sub == MAP_FAILED || comp == MAP_FAILED || bell == MAP_FAILED) {
        if (sub != MAP_FAILED) {
            munmap(sub, IOB_MCHAN_SUB_SIZE);
        }
        if (comp != MAP_FAILED) {
            munmap(comp, IOB_MCHAN_COMP_SIZE);
        }
        if (bell != MAP_FAILED) {
            munmap(bell, IOB_MCHAN_DOORBELL_SIZE);
        }
        free(ch);
        return NULL;
    }
    ch->sub_map = sub;
    ch->sub = sub;
    ch->msg = (unsigned char*)sub + IOB_MCHAN_MSG_OFFSET;
    ch->comp = comp;
    ch->doorbell = bell;
    ch->gen = gen;
    ch->seq = atomic_load(&ch->sub->seq);
    ch->spin_ns = IOB__MCHAN_SPIN_MAX_NS;
    return ch;
}

zx_status_t iob__mchan_begin(iob__session_t* s, iob__mchan_t** out, unsigned char** msg) {
    pthread_mutex_lock(&s->chan_lock);
    if (s->chan != NULL && s->chan->gen != atomic_load(&s->broker_gen)) {
        /* Its broker connection closed: iobd reclaimed it. A new one may be had. */
        iob__mchan_free(s->chan);
        s->chan = NULL;
    }
    if (s->chan == NULL && !s->chan_off) {
        pthread_once(&g_guard_once, iob__guard_install);
        int fds[3] = {-1, -1, -1};
        uint64_t gen = 0;
        zx_status_t st = g_guard_ok ? iob__broker_channel(s, fds, &gen) : ZX_ERR_NOT_SUPPORTED;
        if (st == ZX_OK) {
            s->chan = iob__mchan_map(fds, gen);
            for (int i = 0; i < 3; i++) {
                close(fds[i]);
            }
        }
        /* Refused (budget, no broker): datagrams, and no asking again. */
        s->chan_off = s->chan == NULL;
    }
    if (s->chan == NULL) {
        pthread_mutex_unlock(&s->chan_lock);
        return ZX_ERR_NEXT;
    }
    *out = s->chan;
    *msg = s->chan->msg;
    return ZX_OK;
}

void iob__mchan_end(iob__session_t* s) {
    pthread_mutex_unlock(&s->chan_lock);
}

/* Whether the broker connection (and so iobd) is still there; chan_lock held. */
static bool iob__mchan_alive(iob__session_t* s, const iob__mchan_t* ch) {
    pthread_mutex_lock(&s->broker_lock);
    bool alive = s->broker_fd >= 0 && ch->gen == atomic_load(&s->broker_gen);
    if (alive) {
        struct pollfd p = {.fd = s->broker_fd, .events = 0};
        alive = poll(&p, 1, 0) == 0 || (p.revents & (POLLHUP | POLLERR | POLLNVAL)) == 0;
    }
    pthread_mutex_unlock(&s->broker_lock);
    return alive;
}

/* Whether this thread runs where the mediator last ran (it may be waiting for our CPU). */
static bool iob__mchan_shares_cpu(const iob__mchan_t* ch) {
    uint32_t cpu = atomic_load_explicit((_Atomic uint32_t*)(uintptr_t)&ch->comp->mediator_cpu,
                                        memory_order_relaxed);
    return cpu != 0 && (int64_t)cpu - 1 == (int64_t)sched_getcpu();
}

/* Sleeps until done_seq reaches seq: ZX_OK, or why no answer came. */
static zx_status_t iob__mchan_sleep(iob__session_t* s, iob__mchan_t* ch, uint32_t seq) {
    int64_t now = iob__mchan_now();
    int64_t give_up = now + IOB__MCHAN_TIMEOUT_NS;
    int64_t next_check = now + IOB__MCHAN_CHECK_NS;
    zx_status_t st = ZX_OK;
    /* seq_cst: against the mediator's store of done_seq (mediated_channel.h). */
    atomic_store(&ch->sub->writer_waiting, 1);
    for (;;) {
        uint32_t done = atomic_load((_Atomic uint32_t*)(uintptr_t)&ch->comp->done_seq);
        if (done == seq) {
            break;
        }
        struct timespec slice = {.tv_sec = 0, .tv_nsec = next_check - now};
        (void)iob_mchan_futex_wait((_Atomic uint32_t*)(uintptr_t)&ch->comp->done_seq, done,
                                   &slice);
        /*
         * By the clock, not by ETIMEDOUT: a thread that signals interrupt more often than
         * the slice (EINTR) would otherwise never look and never give up.
         */
        now = iob__mchan_now();
        if (now >= next_check) {
            if (!iob__mchan_alive(s, ch)) {
                st = ZX_ERR_PEER_CLOSED;
                break;
            }
            if (now >= give_up) {
                st = ZX_ERR_TIMED_OUT;
                break;
            }
            next_check = now + IOB__MCHAN_CHECK_NS;
        }
    }
    atomic_store(&ch->sub->writer_waiting, 0);
    return st;
}

zx_status_t iob__mchan_call(iob__session_t* s, iob__mchan_t* ch, zx_status_t* status,
                            uint32_t* id) {
    uint32_t seq = ++ch->seq;
    int cpu = sched_getcpu();
    atomic_store_explicit(&ch->sub->writer_cpu, cpu >= 0 ? (uint32_t)cpu + 1 : 0u,
                          memory_order_relaxed);
    /* seq_cst: against the mediator's store of mediator_sleeping (mediated_channel.h). */
    atomic_store(&ch->sub->seq, seq);
    _Atomic uint32_t* done = (_Atomic uint32_t*)(uintptr_t)&ch->comp->done_seq;
    _Atomic uint32_t* sleeping = (_Atomic uint32_t*)(uintptr_t)&ch->comp->mediator_sleeping;
    if (atomic_load(sleeping) != 0) {
        atomic_fetch_add(ch->doorbell, 1);
        iob_mchan_futex_wake(ch->doorbell);
    }
    /*
     * The clock is first read after 32 pauses: an answer that comes sooner (the common
     * case while the mediator is awake) costs no clock read on either side of the wait.
     */
    int64_t start = 0;
    int64_t spin_until = 0;
    zx_status_t st = ZX_OK;
    bool shared = false;
    for (unsigned spins = 0; atomic_load_explicit(done, memory_order_acquire) != seq; spins++) {
        /*
         * Pause while an answer from another CPU is still due, then yield, so that what
         * shares this CPU (other writers, a reader) runs; beside the mediator, yield at
         * once (the top of mediated_channel.h).
         */
        if ((spins & 31u) == 0) {
            shared = iob__mchan_shares_cpu(ch);
            int64_t now = spins > 0 ? iob__mchan_now() : 0;
            if (spins > 0 && start == 0) {
                start = now;
                spin_until = now + ch->spin_ns;
            } else if (spins > 0 && now >= spin_until) {
                st = iob__mchan_sleep(s, ch, seq);
                break;
            }
        }
        if (shared || spins >= IOB__MCHAN_PAUSES) {
            sched_yield();
        } else {
            iob_mchan_cpu_relax();
        }
    }
    /*
     * Spin about twice what an answer took when it came soon, halve the spin when it came
     * late (shm/ring.c's waiter does the same). An answer before the first clock read is as
     * soon as they come.
     */
    int64_t waited = start != 0 ? iob__mchan_now() - start : 0;
    int64_t want = waited <= IOB__MCHAN_SPIN_MAX_NS ? 2 * waited : ch->spin_ns / 2;
    ch->spin_ns = want < IOB__MCHAN_SPIN_MIN_NS   ? IOB__MCHAN_SPIN_MIN_NS
                  : want > IOB__MCHAN_SPIN_MAX_NS ? IOB__MCHAN_SPIN_MAX_NS
                                                  : want;
    if (st != ZX_OK) {
        /* No answer: this channel is not trusted again; the next call asks for a new one. */
        pthread_mutex_lock(&s->broker_lock);
        if (s->broker_fd >= 0 && ch->gen == atomic_load(&s->broker_gen)) {
            close(s->broker_fd);
            s->broker_fd = -1;
            atomic_fetch_add(&s->broker_gen, 1);
        }
        pthread_mutex_unlock(&s->broker_lock);
        return st;
    }
    atomic_thread_fence(memory_order_acquire);
    *status = ch->comp->status;
    if (id != NULL) {
        *id = ch->comp->id;
    }
    return ZX_OK;
}
