/* SPDX-License-Identifier: MIT */
/*
 * iob_signal_fd: one eventfd per process that becomes readable when the signals of any
 * of its handles change, fed by iob_conn's event callback (which runs on the connection's
 * reader thread and must not block). Pending changes are kept per handle, latest state
 * only, so a burst of changes costs one entry per handle.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <iob/iob.h>

#include "client/lib/libiob.h"

static pthread_mutex_t g_sig_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_sig_fd = -1;
static iob_signal_event_t* g_pending;
static size_t g_pending_count;
static size_t g_pending_cap;

void iob__signal_event(void* ctx, zx_handle_t handle, zx_signals_t signals) {
    (void)ctx;
    pthread_mutex_lock(&g_sig_lock);
    if (g_sig_fd < 0) {
        /* Nobody asked for the fd: nothing to record. */
        pthread_mutex_unlock(&g_sig_lock);
        return;
    }
    size_t i = 0;
    while (i < g_pending_count && g_pending[i].handle != handle) {
        i++;
    }
    bool existed = i < g_pending_count;
    if (i == g_pending_count) {
        if (g_pending_count == g_pending_cap) {
            size_t cap = g_pending_cap != 0 ? g_pending_cap * 2 : 16;
            iob_signal_event_t* p = realloc(g_pending, cap * sizeof *p);
            if (p == NULL) {
                pthread_mutex_unlock(&g_sig_lock);
                return; /* the waiter still sees the fd if others are pending */
            }
            g_pending = p;
            g_pending_cap = cap;
        }
        g_pending_count++;
    }
    /* A strobe (a record written into a shared region; its event carries the state too) is
     * an event, not a state: a newer state must not hide it until it is read. */
    zx_signals_t strobe = existed ? g_pending[i].signals & ZX_IOB_SHARED_REGION_UPDATED : 0u;
    g_pending[i].handle = handle;
    g_pending[i].signals = signals | strobe;
    uint64_t one = 1;
    ssize_t n = write(g_sig_fd, &one, sizeof one); /* EAGAIN: the counter is already set */
    (void)n;
    pthread_mutex_unlock(&g_sig_lock);
}

bool iob__signal_fd_wanted(void) {
    pthread_mutex_lock(&g_sig_lock);
    bool wanted = g_sig_fd >= 0;
    pthread_mutex_unlock(&g_sig_lock);
    return wanted;
}

int iob_signal_fd(void) {
    pthread_mutex_lock(&g_sig_lock);
    if (g_sig_fd < 0) {
        g_sig_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    int fd = g_sig_fd;
    int err = errno;
    pthread_mutex_unlock(&g_sig_lock);
    if (fd < 0) {
        errno = err;
        return -1;
    }
    /* Events flow only while a session exists: open it now if needed. */
    iob__session_t* s;
    if (iob__session_get(&s) != ZX_OK) {
        errno = ENOTCONN;
        return -1;
    }
    /* The session sends events only once asked (and then a thread reads them). */
    zx_status_t st = iob_conn_set_event_callback(s->conn, iob__signal_event, NULL);
    iob__session_put(s);
    if (st != ZX_OK) {
        errno = st == ZX_ERR_NO_RESOURCES ? EAGAIN : ENOTCONN;
        return -1;
    }
    return fd;
}

size_t iob_signal_read(iob_signal_event_t* events, size_t capacity) {
    if (events == NULL && capacity > 0) {
        return 0;
    }
    pthread_mutex_lock(&g_sig_lock);
    size_t n = g_pending_count < capacity ? g_pending_count : capacity;
    for (size_t i = 0; i < n; i++) {
        events[i] = g_pending[i];
    }
    for (size_t i = n; i < g_pending_count; i++) {
        g_pending[i - n] = g_pending[i];
    }
    g_pending_count -= n;
    if (g_pending_count == 0 && g_sig_fd >= 0) {
        uint64_t v;
        ssize_t r = read(g_sig_fd, &v, sizeof v); /* resets the counter: fd unreadable */
        (void)r;
    }
    pthread_mutex_unlock(&g_sig_lock);
    return n;
}
