/* SPDX-License-Identifier: MIT */
/*
 * The mediated request channel: how a co-located writer hands zx_iob_writev and
 * zx_iob_allocate_id to iobd's mediator through shared memory instead of one broker
 * datagram per call (docs/zircon-iob.md L, "Mediated operations").
 *
 * A process asks for its channel once, over its broker connection (IOB_BROKER_CHANNEL);
 * the reply carries three memfds, all made by iobd and sealed against shrinking and growing
 * (so no access within their sizes can fall past the end of the file):
 *
 * - the submission memfd (IOB_MCHAN_SUB_SIZE bytes), which the writer maps read-write: the
 *   control words of iob_mchan_sub_t and, at IOB_MCHAN_MSG_OFFSET, one request laid out
 *   exactly as the broker datagram of the same call (shm/broker_wire.h: header, fixed part,
 *   the caller's bytes; IOB_BROKER_MAX_MEDIATED_MSG at most, so the largest record, 65519
 *   bytes, travels in one piece). Only the writer writes it;
 * - the completion memfd (one page, iob_mchan_comp_t), sealed F_SEAL_FUTURE_WRITE after
 *   iobd mapped it: the writer can map it read-only and nothing else, so a completion it
 *   reads is iobd's, and it cannot punch holes in it;
 * - the doorbell memfd (one page), shared read-write by every writer of this iobd: the one
 *   futex word the idle mediator sleeps on.
 *
 * One call: the writer fills the request, then stores seq + 1 into `seq` (release). The
 * mediator serves each new value of `seq` once: it copies the request into its own memory
 * before it looks at any field (the writer may change the channel at any moment), checks
 * it exactly as a datagram is checked, runs it in the core, writes status and id and then
 * `done_seq` = that seq value (release). The writer's call returns when done_seq equals its
 * seq. Who writes what: the writer writes the submission memfd and the doorbell; iobd
 * writes the completion page; iobd trusts nothing it reads from the first two, and a writer
 * that scribbles over them gets malformed requests refused (ZX_ERR_INVALID_ARGS) or
 * records of its own that say what it wrote: it hurts only itself.
 *
 * Waiting, both sides spin briefly and then sleep on a futex:
 * - the writer spins on done_seq, then sets writer_waiting (seq_cst), looks once more and
 *   sleeps on done_seq; the mediator, after it stored done_seq (seq_cst), reads
 *   writer_waiting when it next looks at the channel's seq and wakes the word when it is
 *   set. Either the writer's second look sees the completion or the mediator sees the flag
 *   (the stores precede the loads on both sides).
 * - the mediator, when every channel has been idle for its spin budget, sets
 *   mediator_sleeping in every channel's completion page (seq_cst), reads the doorbell,
 *   looks at every channel once more and sleeps on the doorbell with the value it read. A
 *   writer that finds mediator_sleeping set after publishing its seq increments the
 *   doorbell and wakes it. Either the mediator's last look sees the request or the
 *   writer sees the flag; an increment after the mediator read the doorbell makes its
 *   FUTEX_WAIT return at once. mediator_sleeping lives in the read-only page because a
 *   writer that could clear it could make every other writer skip the wake-up; the
 *   doorbell itself may be scribbled on by anyone: that wakes the mediator early, or (a
 *   value stored back over someone's increment) hides one wake-up, which is why the
 *   mediator's sleep is bounded (MEDIATOR_SLEEP_MAX_NS in server/broker/mediator.c).
 *
 * - a writer on the CPU the mediator last ran on (mediator_cpu, which the mediator
 *   publishes when it changes) yields at once instead of spinning first: its spinning
 *   could only keep the mediator off that CPU. Elsewhere it pauses about as long as an
 *   answer takes from another CPU before it yields (a sched_yield is a system call that
 *   costs more than a whole call when both sides have a CPU). The other way round, a
 *   mediator that served a writer on its own CPU (writer_cpu, the writer's word and so
 *   only a hint: a lie costs the mediator one yield per scan) and no writer elsewhere
 *   yields once after the scan, so that the writer runs now and makes its next request.
 *
 * The futex words are shared between processes, so no FUTEX_PRIVATE_FLAG.
 */
#ifndef IOB_SHM_MEDIATED_CHANNEL_H_
#define IOB_SHM_MEDIATED_CHANNEL_H_

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/broker_wire.h"

/* The request starts on its own cache line, after the writer's control words. */
#define IOB_MCHAN_MSG_OFFSET 64u
/* Whole pages: the control words, the largest request. */
#define IOB_MCHAN_SUB_SIZE \
    ((IOB_MCHAN_MSG_OFFSET + IOB_BROKER_MAX_MEDIATED_MSG + 4095u) / 4096u * 4096u)
#define IOB_MCHAN_COMP_SIZE 4096u
#define IOB_MCHAN_DOORBELL_SIZE 4096u

/* The writer's page (read-write for it). */
typedef struct iob_mchan_sub {
    _Atomic uint32_t seq;            /* the writer's last published request */
    _Atomic uint32_t writer_waiting; /* non-zero: the writer sleeps (or is about to) on done_seq */
    _Atomic uint32_t writer_cpu;     /* the CPU of the writer's last request, + 1; 0: unknown */
} iob_mchan_sub_t;

/* iobd's page (read-only for the writer). */
typedef struct iob_mchan_comp {
    _Atomic uint32_t done_seq; /* seq of the last request served; the writer's futex word */
    int32_t status;            /* zx_status_t of that request */
    uint32_t id;               /* ALLOCATE_ID's id, with ZX_OK */
    _Atomic uint32_t mediator_cpu;      /* the CPU the mediator last ran on, + 1; 0: unknown */
    _Atomic uint32_t mediator_sleeping; /* non-zero: ring the doorbell after publishing */
} iob_mchan_comp_t;

/* IOB_BROKER_CHANNEL's request. */
typedef struct iob_broker_channel_req {
    iob_broker_hdr_t hdr;
    uint32_t layout; /* IOB_BROKER_MEDIATED_LAYOUT: the requests the channel carries */
    uint32_t reserved;
} iob_broker_channel_req_t;

/* IOB_BROKER_CHANNEL's reply; with ZX_OK it carries the three fds, in the order above. */
typedef struct iob_broker_channel_reply {
    iob_broker_hdr_t hdr;
    int32_t status;    /* zx_status_t; ZX_ERR_NO_RESOURCES: no channel (use datagrams) */
    uint32_t sub_size; /* IOB_MCHAN_SUB_SIZE */
} iob_broker_channel_reply_t;

_Static_assert(sizeof(iob_broker_channel_req_t) == 24, "channel request is 24 bytes");
_Static_assert(sizeof(iob_broker_channel_reply_t) == 24, "channel reply is 24 bytes");
_Static_assert(sizeof(iob_broker_channel_reply_t) <= IOB_BROKER_MAX_MSG, "fits a reply buffer");
_Static_assert(sizeof(_Atomic uint32_t) == 4, "futex words are 4 bytes");

static inline int iob_mchan_futex_wait(_Atomic uint32_t* word, uint32_t expected,
                                       const struct timespec* relative) {
    return (int)syscall(SYS_futex, (void*)(uintptr_t)word, FUTEX_WAIT, expected, relative, NULL,
                        0);
}

static inline void iob_mchan_futex_wake(_Atomic uint32_t* word) {
    (void)syscall(SYS_futex, (void*)(uintptr_t)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static inline void iob_mchan_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif /* IOB_SHM_MEDIATED_CHANNEL_H_ */
