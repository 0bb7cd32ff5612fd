/* SPDX-License-Identifier: MIT */
/*
 * Touching memory someone else can destroy, without dying of it: one process-wide handler
 * for iobd (region and channel memory a client can destroy) and libiob (a caller's buffer
 * it unmaps while the library copies it).
 *
 * A client that may write a region can punch a hole in it (madvise MADV_REMOVE, fallocate
 * PUNCH_HOLE) and, on hugetlb backing, take the freed page back out of the pool. The
 * server's next load or store there is a SIGBUS. Seals cannot forbid that without
 * forbidding writes, so every access iobd makes to region memory runs inside
 * iob_fault_call: a fault whose address lies in the range the call was armed for returns
 * from iob_fault_call with IOB_FAULT_STATUS instead of killing the process.
 *
 * Chaining. The handler is installed for the signals a part of the process asks for
 * (iobd: SIGBUS; libiob's channel: SIGSEGV and SIGBUS), each at most once unless something
 * replaced it, and hands every fault that is not ours to whatever was that signal's
 * disposition before (the default action, or a sanitizer's report): a fault outside an
 * armed call, outside the armed range, or a signal sent by a process (kill) ends the
 * process or reaches that handler as it would have without this file, so a real bug still
 * crashes. iobd does not take SIGSEGV: its views are its own mappings of sealed memfds,
 * which no client can unmap, shrink or protect, so a SIGSEGV there is a bug in iobd.
 *
 * The recovery point is thread-local and lives only for one call: fn runs with it armed,
 * and a recovered fault leaves fn at the faulting instruction. fn must therefore take no
 * lock, allocate nothing and change no state that must stay consistent (the caller's
 * locks are taken outside iob_fault_call and released after it, normally); memory of the
 * region may be left partly written, which is what the client asked for. Arming costs a
 * sigsetjmp without saving the signal mask (the handler runs with SA_NODEFER, so leaving
 * it with siglongjmp has no mask to restore): no system call. A thread that blocks the
 * signal is killed by the fault instead: threads that run guarded calls unblock it.
 */
#ifndef IOB_SHM_FAULT_GUARD_H_
#define IOB_SHM_FAULT_GUARD_H_

#include <stdbool.h>
#include <stddef.h>

#include <zircon/types.h>

/*
 * What an access to lost memory answers, everywhere in iobd's core: the bytes that were
 * there are gone because a writer of the region destroyed them, which is corruption of
 * client-writable memory like any other the core reports (server/core/iob_core.h).
 */
#define IOB_FAULT_STATUS ZX_ERR_IO_DATA_INTEGRITY

/* The signals iob_fault_init installs the handler for. */
#define IOB_FAULT_SIGBUS 1u
#define IOB_FAULT_SIGSEGV 2u

/*
 * Runs fn(ctx) with faults inside [base, base + size) recovered: fn's status, or
 * IOB_FAULT_STATUS when such a fault interrupted it. Calls may nest (the inner range
 * wins while it runs). Installs the handler for SIGBUS on first use unless iob_fault_init
 * did; ZX_ERR_INTERNAL when it could not be installed (fn is not run then).
 */
zx_status_t iob_fault_call(const void* base, size_t size, zx_status_t (*fn)(void* ctx), void* ctx);

/*
 * Inside fn of iob_fault_call: a fault is recovered in [base, base + size) from now on,
 * instead of the range the call was armed with. Lets one call (one sigsetjmp) guard copies
 * from several places in turn; fn keeps track of which one was running. Outside a call it
 * does nothing.
 */
void iob_fault_range(const void* base, size_t size);

/* memcpy of n bytes where dst or src lies in [base, base + size), under iob_fault_call. */
zx_status_t iob_fault_memcpy(const void* base, size_t size, void* dst, const void* src, size_t n);

/*
 * Installs the handler now for each of `signals` (IOB_FAULT_SIG*) whose handler it is not
 * already; what was there becomes the handler chained to. For a process whose other parts
 * replace a handler after the first call (a test framework that installs its own around
 * each test). ZX_ERR_INTERNAL when sigaction fails.
 */
zx_status_t iob_fault_init(unsigned signals);

/* Whether the handler is in place for each of `signals` right now (a system call each). */
bool iob_fault_in_place(unsigned signals);

#endif /* IOB_SHM_FAULT_GUARD_H_ */
