/* SPDX-License-Identifier: MIT */
/*
 * The world fuzz_rpc runs its requests in, shared with fuzz_seeds (whose seed requests
 * name the handles made here): a 4 KiB-backed core with a small budget and a clock the
 * input moves, two sessions, and in session A an IOB with a plain region and an ID
 * allocator region, a shared region and an IOB with a mediated-write ring buffer on it.
 * Handle values are made deterministic (the core's per-core scramble key is zeroed), so
 * a seed written once keeps naming the same handles.
 */
#ifndef IOB_TESTS_FUZZ_FUZZ_RPC_FIXTURE_H_
#define IOB_TESTS_FUZZ_FUZZ_RPC_FIXTURE_H_

#include "server/core/iob_core.h"

#define FZ_RPC_BUDGET (UINT64_C(1) << 20)
#define FZ_RPC_TOKEN_TTL_NS (INT64_C(60) * 1000000000)

typedef struct fz_rpc_world {
    iob_core_t* core;
    int64_t now;
    iob_session_id_t a, b;
    /* Session A's handles: IOB 1 (region 0 plain 4 KiB ep0 rw / ep1 r, region 1 an ID
     * allocator ep0 rw / ep1 mediated write), the shared region, IOB 2 (region 0 a ring
     * buffer on the shared region, ep0 rw / ep1 mediated write). */
    zx_handle_t plain_ep0, plain_ep1, shared, ring_ep0, ring_ep1;
} fz_rpc_world_t;

/* Builds the world; aborts when the core refuses (the machine cannot run the target). */
void fz_rpc_world_init(fz_rpc_world_t* w);

#endif /* IOB_TESTS_FUZZ_FUZZ_RPC_FIXTURE_H_ */
