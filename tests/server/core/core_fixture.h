/* SPDX-License-Identifier: MIT */
/* Shared set-up for the iob_core tests: a 4 KiB-backed core, two sessions, a fake clock,
 * an observer that records every event, and an fd-leak check at teardown. */
#ifndef IOB_TESTS_SERVER_CORE_CORE_FIXTURE_H_
#define IOB_TESTS_SERVER_CORE_CORE_FIXTURE_H_

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "server/core/iob_core.h"

#define FX_PAGE UINT64_C(4096)
#define FX_MAX_EVENTS 256

/* Read/write for both endpoints: the most common access in these tests. */
#define FX_RW_BOTH                                                                           \
    (ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |                      \
     ZX_IOB_ACCESS_EP1_CAN_MAP_READ | ZX_IOB_ACCESS_EP1_CAN_MAP_WRITE)

typedef struct fx_signal_event {
    zx_koid_t koid;
    zx_signals_t signals;
} fx_signal_event_t;

typedef struct fx_close_event {
    iob_session_id_t session;
    zx_handle_t handle;
} fx_close_event_t;

typedef struct fx {
    iob_core_t* core;
    iob_core_config_t config;
    iob_session_id_t a; /* session A */
    iob_session_id_t b; /* session B */
    int64_t now;        /* the injected clock, ns */
    size_t n_signals;
    fx_signal_event_t signals[FX_MAX_EVENTS];
    size_t n_closed;
    fx_close_event_t closed[FX_MAX_EVENTS];
    size_t n_strobes;          /* handle_strobed calls */
    zx_koid_t last_strobe;     /* the koid of the last one */
    int fds_before;
} fx_t;

/* cmocka setup/teardown: a core with no limits. */
int fx_setup(void** state);
int fx_teardown(void** state);
/* Rebuilds f->core from f->config (after a test changed limits or the TTL). */
void fx_reconfigure(fx_t* f);

/* A private, discipline-NONE region description. */
zx_iob_region_t fx_region(uint64_t size, zx_iob_access_t access);
/* Creates a one-region IOB in session A, asserting success. */
void fx_create(fx_t* f, uint64_t size, zx_iob_access_t access, zx_handle_t* ep0,
               zx_handle_t* ep1);
/* The handle's rights / koid / related koid (ZX_INFO_HANDLE_BASIC), asserting success. */
zx_info_handle_basic_t fx_basic(fx_t* f, iob_session_id_t s, zx_handle_t h);
/* The endpoint's current signals, asserting success. */
zx_signals_t fx_signals(fx_t* f, iob_session_id_t s, zx_handle_t h);
/* Last recorded signals for koid, or UINT32_MAX if none was recorded. */
zx_signals_t fx_last_signals(const fx_t* f, zx_koid_t koid);
/* Whether handle_closed was reported for (session, handle). */
int fx_closed_reported(const fx_t* f, iob_session_id_t s, zx_handle_t h);
/* The core's statistics now. */
iob_core_stats_t fx_stats(fx_t* f);

#endif /* IOB_TESTS_SERVER_CORE_CORE_FIXTURE_H_ */
