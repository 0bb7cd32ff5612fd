/* SPDX-License-Identifier: MIT */
/* Shared set-up for the iob_core tests. */
#include "core_fixture.h"

#include <stdlib.h>
#include <string.h>

#include "test_util.h"

static int64_t fake_now(void* ctx) {
    return ((fx_t*)ctx)->now;
}

/* The core tells each change once per handle; recorded by object, the last one counts. */
static void on_signals(void* ctx, iob_session_id_t session, zx_handle_t handle, zx_koid_t koid,
                       zx_signals_t signals) {
    (void)session;
    (void)handle;
    fx_t* f = ctx;
    if (f->n_signals < FX_MAX_EVENTS) {
        f->signals[f->n_signals++] = (fx_signal_event_t){koid, signals};
    }
}

static void on_closed(void* ctx, iob_session_id_t session, zx_handle_t handle) {
    fx_t* f = ctx;
    if (f->n_closed < FX_MAX_EVENTS) {
        f->closed[f->n_closed++] = (fx_close_event_t){session, handle};
    }
}

static void on_strobe(void* ctx, iob_session_id_t session, zx_handle_t handle,
                      zx_koid_t shared_region_koid, zx_signals_t signals) {
    (void)session;
    (void)handle;
    (void)signals;
    fx_t* f = ctx;
    f->n_strobes++;
    f->last_strobe = shared_region_koid;
}

static void open_sessions(fx_t* f) {
    iob_session_cred_t cred = {.pid = 100, .uid = 1000, .gid = 1000};
    assert_int_equal(iob_core_create(&f->config, &f->core), ZX_OK);
    assert_int_equal(iob_core_session_open(f->core, &cred, &f->a, NULL), ZX_OK);
    cred.pid = 200;
    assert_int_equal(iob_core_session_open(f->core, &cred, &f->b, NULL), ZX_OK);
}

int fx_setup(void** state) {
    fx_t* f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -1;
    }
    f->fds_before = iob_test_count_open_fds();
    f->now = 1000;
    f->config.backing = IOB_BACKING_4K;
    f->config.now_ns = fake_now;
    f->config.clock_ctx = f;
    f->config.observer.ctx = f;
    f->config.observer.handle_signals = on_signals;
    f->config.observer.handle_closed = on_closed;
    f->config.observer.handle_strobed = on_strobe;
    open_sessions(f);
    *state = f;
    return 0;
}

int fx_teardown(void** state) {
    fx_t* f = *state;
    iob_core_destroy(f->core);
    /* Every memfd, read-only description and server mapping must be gone. */
    int fds_after = iob_test_count_open_fds();
    int before = f->fds_before;
    free(f);
    assert_int_equal(fds_after, before);
    return 0;
}

void fx_reconfigure(fx_t* f) {
    iob_core_destroy(f->core);
    f->n_signals = 0;
    f->n_closed = 0;
    f->n_strobes = 0;
    open_sessions(f);
}

zx_iob_region_t fx_region(uint64_t size, zx_iob_access_t access) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_PRIVATE;
    r.access = access;
    r.size = size;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_NONE;
    return r;
}

void fx_create(fx_t* f, uint64_t size, zx_iob_access_t access, zx_handle_t* ep0,
               zx_handle_t* ep1) {
    zx_iob_region_t r = fx_region(size, access);
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, ep0, ep1), ZX_OK);
}

zx_info_handle_basic_t fx_basic(fx_t* f, iob_session_id_t s, zx_handle_t h) {
    zx_info_handle_basic_t info;
    size_t actual = 0, avail = 0;
    assert_int_equal(iob_core_get_info(f->core, s, h, ZX_INFO_HANDLE_BASIC, &info, sizeof info,
                                       &actual, &avail),
                     ZX_OK);
    assert_int_equal(actual, 1);
    assert_int_equal(avail, 1);
    return info;
}

zx_signals_t fx_signals(fx_t* f, iob_session_id_t s, zx_handle_t h) {
    zx_signals_t signals = 0xDEADBEEF;
    assert_int_equal(iob_core_signals(f->core, s, h, &signals, NULL), ZX_OK);
    return signals;
}

zx_signals_t fx_last_signals(const fx_t* f, zx_koid_t koid) {
    for (size_t i = f->n_signals; i > 0; i--) {
        if (f->signals[i - 1].koid == koid) {
            return f->signals[i - 1].signals;
        }
    }
    return UINT32_MAX;
}

int fx_closed_reported(const fx_t* f, iob_session_id_t s, zx_handle_t h) {
    for (size_t i = 0; i < f->n_closed; i++) {
        if (f->closed[i].session.value == s.value && f->closed[i].handle == h) {
            return 1;
        }
    }
    return 0;
}

iob_core_stats_t fx_stats(fx_t* f) {
    iob_core_stats_t st;
    iob_core_get_stats(f->core, &st);
    return st;
}
