/* SPDX-License-Identifier: MIT */
/*
 * Touching memory a client can destroy, without dying of it.
 *
 * A client that may write a region can punch a hole in it (madvise MADV_REMOVE, fallocate
 * PUNCH_HOLE) and, on hugetlb backing, take the freed page back out of the pool. The
 * server's next load or store there is a SIGBUS. Seals cannot forbid that without
 * forbidding writes, so every access iobd makes to region memory runs inside
 * iob_fault_call: a SIGBUS whose address lies in the range the call was armed for
 * returns from iob_fault_call with IOB_FAULT_STATUS instead of killing the process.
 *
 * The handler is installed once (by the first call) and chains to whatever was installed
 * before it (the default action, or a sanitizer's report). A SIGBUS outside an armed
 * call, outside the armed range, or sent by a process (kill) still ends the process as it
 * would have without this file: a real bug must still crash. SIGSEGV is not handled: the
 * server's views are its own mappings of sealed memfds, which no client can unmap, shrink
 * or protect, so a SIGSEGV there is a bug in iobd.
 *
 * The recovery point is thread-local and lives only for one call: fn runs with it armed,
 * and a recovered fault leaves fn at the faulting instruction. fn must therefore take no
 * lock, allocate nothing and change no server state that must stay consistent (the
 * caller's locks are taken outside iob_fault_call and released after it, normally);
 * memory of the region may be left partly written, which is what the client asked for.
 * Arming costs a sigsetjmp without saving the signal mask (the handler runs with
 * SA_NODEFER, so leaving it with siglongjmp has no mask to restore): no system call.
 */
#ifndef IOB_SERVER_CORE_IOB_FAULT_H_
#define IOB_SERVER_CORE_IOB_FAULT_H_

#include <stddef.h>

#include <zircon/types.h>

/*
 * What an access to lost region memory answers, everywhere in the core: the bytes that
 * were there are gone because a writer of the region destroyed them, which is corruption of
 * client-writable memory like any other the core reports (iob_core.h).
 */
#define IOB_FAULT_STATUS ZX_ERR_IO_DATA_INTEGRITY

/*
 * Runs fn(ctx) with SIGBUS inside [base, base + size) recovered: fn's status, or
 * IOB_FAULT_STATUS when such a fault interrupted it. Calls may nest (the inner range
 * wins while it runs). ZX_ERR_INTERNAL when the handler could not be installed (fn is not
 * run then).
 */
zx_status_t iob_fault_call(const void* base, size_t size, zx_status_t (*fn)(void* ctx), void* ctx);

/* memcpy of n bytes where dst or src lies in [base, base + size), under iob_fault_call. */
zx_status_t iob_fault_memcpy(const void* base, size_t size, void* dst, const void* src, size_t n);

/*
 * Installs the handler now unless it is SIGBUS's handler already (iob_fault_call installs
 * it on first use); what was there becomes the handler chained to. For a process whose
 * other parts replace SIGBUS's handler after the first call (a test framework that installs
 * its own around each test). ZX_ERR_INTERNAL when sigaction fails.
 */
zx_status_t iob_fault_init(void);

#endif /* IOB_SERVER_CORE_IOB_FAULT_H_ */
