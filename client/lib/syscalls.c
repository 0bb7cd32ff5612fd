/* SPDX-License-Identifier: MIT */
/*
 * The Zircon calls of <zircon/syscalls.h> other than mapping: thin wrappers over the
 * process's iob_conn session. Each makes the client-side argument checks Zircon makes
 * before it looks at the kernel object, in Zircon's order, then lets iobd's core answer,
 * so the status is the one Zircon would return (docs/zircon-iob.md A.3, A.9, A.10, A.12).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>
#include <zircon/time.h>

#include "client/lib/libiob.h"

/* Runs `call` with the current session `s` in scope; returns its status. */
#define IOB__WITH_SESSION(s, call)                 \
    do {                                           \
        iob__session_t* s;                         \
        zx_status_t iob__st = iob__session_get(&s); \
        if (iob__st != ZX_OK) {                    \
            return iob__st;                        \
        }                                          \
        iob__st = (call);                          \
        iob__session_put(s);                       \
        return iob__st;                            \
    } while (0)

zx_status_t zx_iob_create(uint64_t options, const zx_iob_region_t* regions, size_t region_count,
                          zx_handle_t* ep0_out, zx_handle_t* ep1_out) {
    /* Every check is iobd's core, in A.3's order (docs/zircon-iob.md). */
    IOB__WITH_SESSION(s, iob_conn_iob_create(s->conn, options, regions, region_count, ep0_out,
                                             ep1_out));
}

zx_status_t zx_object_get_info(zx_handle_t handle, uint32_t topic, void* buffer, size_t buffer_size,
                               size_t* actual, size_t* avail) {
    IOB__WITH_SESSION(s, iob_conn_get_info(s->conn, handle, topic, buffer, buffer_size, actual,
                                           avail));
}

zx_status_t zx_object_get_property(zx_handle_t handle, uint32_t property, void* value,
                                   size_t value_size) {
    if (value == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    IOB__WITH_SESSION(s, iob_conn_get_property(s->conn, handle, property, value, value_size));
}

zx_status_t zx_object_set_property(zx_handle_t handle, uint32_t property, const void* value,
                                   size_t value_size) {
    if (value == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    IOB__WITH_SESSION(s, iob_conn_set_property(s->conn, handle, property, value, value_size));
}

zx_status_t zx_handle_close(zx_handle_t handle) {
    /*
     * Closing nothing, or the root VMAR pseudo-handle (never really closed, A.12), succeeds
     * without iobd, so it cannot fail for want of a connection.
     */
    if (handle == ZX_HANDLE_INVALID || handle == IOB_VMAR_ROOT_HANDLE) {
        return ZX_OK;
    }
    IOB__WITH_SESSION(s, iob_conn_handle_close(s->conn, handle));
}

zx_status_t zx_handle_close_many(const zx_handle_t* handles, size_t num_handles) {
    if (num_handles == 0) {
        return ZX_OK;
    }
    if (handles == NULL) {
        return ZX_ERR_INVALID_ARGS; /* Zircon: the copy-in of the array faults */
    }
    /* As zx_handle_close: nothing but the invalid value and the root VMAR needs no session. */
    bool any = false;
    for (size_t i = 0; i < num_handles; i++) {
        any = any || (handles[i] != ZX_HANDLE_INVALID && handles[i] != IOB_VMAR_ROOT_HANDLE);
    }
    if (!any) {
        return ZX_OK;
    }
    /* iobd closes the root VMAR as it closes it alone: successfully, doing nothing. */
    IOB__WITH_SESSION(s, iob_conn_handle_close_many(s->conn, handles, num_handles));
}

/*
 * Zircon creates the new handle and then fails to copy it out to a NULL pointer: the new
 * handle is destroyed and the call is INVALID_ARGS (replace has consumed the original).
 */
static zx_status_t iob__drop_new_handle(iob__session_t* s, zx_status_t st, zx_handle_t made) {
    if (st == ZX_OK) {
        iob_conn_handle_close(s->conn, made);
        return ZX_ERR_INVALID_ARGS;
    }
    return st;
}

zx_status_t zx_handle_duplicate(zx_handle_t handle, zx_rights_t rights, zx_handle_t* out) {
    iob__session_t* s;
    zx_status_t st = iob__session_get(&s);
    if (st != ZX_OK) {
        return st;
    }
    zx_handle_t made = ZX_HANDLE_INVALID;
    st = iob_conn_handle_duplicate(s->conn, handle, rights, &made);
    if (out == NULL) {
        st = iob__drop_new_handle(s, st, made);
    } else if (st == ZX_OK) {
        *out = made;
    }
    iob__session_put(s);
    return st;
}

zx_status_t zx_handle_replace(zx_handle_t handle, zx_rights_t rights, zx_handle_t* out) {
    iob__session_t* s;
    zx_status_t st = iob__session_get(&s);
    if (st != ZX_OK) {
        return st;
    }
    zx_handle_t made = ZX_HANDLE_INVALID;
    st = iob_conn_handle_replace(s->conn, handle, rights, &made);
    if (out == NULL) {
        st = iob__drop_new_handle(s, st, made);
    } else if (st == ZX_OK) {
        *out = made;
    }
    iob__session_put(s);
    return st;
}

zx_status_t zx_object_signal(zx_handle_t handle, uint32_t clear_mask, uint32_t set_mask) {
    IOB__WITH_SESSION(s, iob_conn_object_signal(s->conn, handle, clear_mask, set_mask));
}

zx_status_t zx_object_signal_peer(zx_handle_t handle, uint32_t clear_mask, uint32_t set_mask) {
    IOB__WITH_SESSION(s, iob_conn_object_signal_peer(s->conn, handle, clear_mask, set_mask));
}

zx_status_t zx_object_wait_one(zx_handle_t handle, zx_signals_t signals, zx_time_t deadline,
                               zx_signals_t* observed) {
    zx_signals_t seen = 0;
    iob__session_t* s;
    zx_status_t st = iob__session_get(&s);
    if (st != ZX_OK) {
        return st;
    }
    st = iob_conn_wait_one(s->conn, handle, signals, deadline, &seen);
    iob__session_put(s);
    /* Zircon writes observed on success, on timeout and on cancellation. */
    if (observed != NULL &&
        (st == ZX_OK || st == ZX_ERR_TIMED_OUT || st == ZX_ERR_CANCELED)) {
        *observed = seen;
    }
    return st;
}

zx_time_t zx_clock_get_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (zx_time_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

zx_time_t zx_deadline_after(zx_duration_t nanoseconds) {
    return zx_time_add_duration(zx_clock_get_monotonic(), nanoseconds);
}

uint32_t zx_system_get_page_size(void) {
    return (uint32_t)iob__page_size();
}

zx_status_t iob_handle_export(zx_handle_t handle, char token[IOB_TOKEN_SIZE]) {
    if (token == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    _Static_assert(IOB_TOKEN_SIZE == IOB_CONN_TOKEN_SIZE, "token sizes agree");
    IOB__WITH_SESSION(s, iob_conn_handle_export(s->conn, handle, token));
}

zx_status_t iob_handle_import(const char* token, zx_handle_t* out) {
    if (token == NULL || out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    /* Longer than any token: cannot be one, and need not travel to iobd. */
    if (strnlen(token, IOB_TOKEN_SIZE) >= IOB_TOKEN_SIZE) {
        return ZX_ERR_NOT_FOUND;
    }
    iob__session_t* s;
    zx_status_t st = iob__session_get(&s);
    if (st != ZX_OK) {
        return st;
    }
    /* The broker first: one socket round trip; gRPC when there is none (a remote iobd). */
    zx_handle_t h = ZX_HANDLE_INVALID;
    st = iob__broker_import(s, token, &h);
    if (st == ZX_ERR_NEXT) {
        st = iob_conn_handle_import(s->conn, token, &h);
    }
    if (st == ZX_OK) {
        *out = h;
    }
    iob__session_put(s);
    return st;
}
