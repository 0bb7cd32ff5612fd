/* SPDX-License-Identifier: MIT */
/*
 * The fault recovery of fault_guard.h: one process-wide handler, a thread-local stack of
 * armed calls (each a sigjmp_buf and the range it covers).
 */
#include "shm/fault_guard.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef struct iob__fault_guard {
    sigjmp_buf env;
    /* volatile: iob_fault_range changes them between copies the handler may interrupt. */
    volatile uintptr_t base;
    volatile size_t size;
    struct iob__fault_guard* prev;
} iob__fault_guard_t;

/*
 * initial-exec: the handler reads it, and a first access of dynamic TLS may allocate,
 * which a signal handler must not. volatile: the handler must see the store made right
 * before fn runs.
 */
static _Thread_local iob__fault_guard_t* volatile t_guard
    __attribute__((tls_model("initial-exec")));

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_install_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned g_installed; /* IOB_FAULT_SIG* the handler is installed for */
/* What each signal did before us: faults that are not ours go there. */
static struct sigaction g_prev_bus;
static struct sigaction g_prev_segv;

/* Hands a fault that is not ours to the disposition that was there before us. */
static void iob__fault_chain(int sig, siginfo_t* info, void* uctx) {
    const struct sigaction* prev = sig == SIGSEGV ? &g_prev_segv : &g_prev_bus;
    if ((prev->sa_flags & SA_SIGINFO) != 0 && prev->sa_sigaction != NULL) {
        prev->sa_sigaction(sig, info, uctx);
        return;
    }
    if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    if (prev->sa_handler == SIG_IGN && info->si_code <= 0) {
        return; /* sent by a process and ignored before we came: still ignored */
    }
    /*
     * The default action: a fault re-executes the instruction on return and dies of it
     * (with a core dump that points at it); a signal sent by a process is raised again.
     */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (info->si_code <= 0) {
        raise(sig);
    }
}

static void iob__fault_handler(int sig, siginfo_t* info, void* uctx) {
    iob__fault_guard_t* g = t_guard;
    uintptr_t addr = (uintptr_t)info->si_addr;
    /* si_code > 0: raised by the kernel for an access, so si_addr is the faulting address. */
    if (g != NULL && info->si_code > 0 && addr >= g->base && addr - g->base < g->size) {
        siglongjmp(g->env, 1);
    }
    iob__fault_chain(sig, info, uctx);
}

static bool iob__fault_is_ours(const struct sigaction* sa) {
    return (sa->sa_flags & SA_SIGINFO) != 0 && sa->sa_sigaction == iob__fault_handler;
}

zx_status_t iob_fault_init(unsigned signals) {
    static const struct {
        unsigned bit;
        int sig;
        struct sigaction* prev;
    } table[] = {
        {IOB_FAULT_SIGBUS, SIGBUS, &g_prev_bus},
        {IOB_FAULT_SIGSEGV, SIGSEGV, &g_prev_segv},
    };
    bool ok = true;
    pthread_mutex_lock(&g_install_lock);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if ((signals & table[i].bit) == 0) {
            continue;
        }
        struct sigaction now;
        bool sig_ok = sigaction(table[i].sig, NULL, &now) == 0;
        if (sig_ok && !iob__fault_is_ours(&now)) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = iob__fault_handler;
            /*
             * NODEFER: the signal stays unblocked in the handler, so siglongjmp has no mask
             * to restore. ONSTACK: a fault on a thread with an alternate stack uses it.
             */
            sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
            sigemptyset(&sa.sa_mask);
            sig_ok = sigaction(table[i].sig, &sa, table[i].prev) == 0;
        }
        if (sig_ok) {
            atomic_fetch_or(&g_installed, table[i].bit);
        } else {
            atomic_fetch_and(&g_installed, ~table[i].bit);
            ok = false;
        }
    }
    pthread_mutex_unlock(&g_install_lock);
    return ok ? ZX_OK : ZX_ERR_INTERNAL;
}

bool iob_fault_in_place(unsigned signals) {
    struct sigaction now;
    return (atomic_load(&g_installed) & signals) == signals &&
           ((signals & IOB_FAULT_SIGBUS) == 0 ||
            (sigaction(SIGBUS, NULL, &now) == 0 && iob__fault_is_ours(&now))) &&
           ((signals & IOB_FAULT_SIGSEGV) == 0 ||
            (sigaction(SIGSEGV, NULL, &now) == 0 && iob__fault_is_ours(&now)));
}

static void iob__fault_install_once(void) {
    (void)iob_fault_init(IOB_FAULT_SIGBUS);
}

zx_status_t iob_fault_call(const void* base, size_t size, zx_status_t (*fn)(void* ctx), void* ctx) {
    /* Installed already (every call but the first): no pthread_once call. */
    if ((atomic_load_explicit(&g_installed, memory_order_acquire) & IOB_FAULT_SIGBUS) == 0 &&
        (pthread_once(&g_once, iob__fault_install_once) != 0 ||
         (atomic_load(&g_installed) & IOB_FAULT_SIGBUS) == 0)) {
        return ZX_ERR_INTERNAL;
    }
    iob__fault_guard_t g;
    g.base = (uintptr_t)base;
    g.size = size;
    g.prev = t_guard;
    /* Nothing below changes g after sigsetjmp, so its fields are intact after a fault. */
    if (sigsetjmp(g.env, 0) != 0) {
        t_guard = g.prev;
        return IOB_FAULT_STATUS;
    }
    t_guard = &g;
    zx_status_t status = fn(ctx);
    t_guard = g.prev;
    return status;
}

void iob_fault_range(const void* base, size_t size) {
    iob__fault_guard_t* g = t_guard;
    if (g != NULL) {
        g->base = (uintptr_t)base;
        g->size = size;
        /* Not moved past the copy that follows, even one the compiler inlines. */
        atomic_signal_fence(memory_order_seq_cst);
    }
}

typedef struct iob__fault_copy {
    void* dst;
    const void* src;
    size_t n;
} iob__fault_copy_t;

static zx_status_t iob__fault_copy(void* ctx) {
    iob__fault_copy_t* c = ctx;
    memcpy(c->dst, c->src, c->n);
    return ZX_OK;
}

zx_status_t iob_fault_memcpy(const void* base, size_t size, void* dst, const void* src, size_t n) {
    iob__fault_copy_t c = {dst, src, n};
    return iob_fault_call(base, size, iob__fault_copy, &c);
}
