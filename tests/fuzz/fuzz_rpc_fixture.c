/* SPDX-License-Identifier: MIT */
/* fuzz_rpc's world (fuzz_rpc_fixture.h). */
#include "fuzz/fuzz_rpc_fixture.h"

#include "fuzz/fuzz_input.h"
#include "server/core/iob_core_internal.h"

static int64_t world_now(void* ctx) {
    return ((const fz_rpc_world_t*)ctx)->now;
}

void fz_rpc_world_init(fz_rpc_world_t* w) {
    w->now = 1;
    iob_core_config_t cfg = {
        .backing = IOB_BACKING_4K,
        .max_total_bytes = FZ_RPC_BUDGET,
        .max_iobs_per_session = 8,
        .max_handles_per_session = 32,
        .token_ttl_ns = FZ_RPC_TOKEN_TTL_NS,
        .now_ns = world_now,
        .clock_ctx = w,
    };
    FZ_CHECK(iob_core_create(&cfg, &w->core) == ZX_OK);
    w->core->handle_key = 0;
    iob_session_cred_t cred = {.pid = 1, .uid = 0, .gid = 0};
    FZ_CHECK(iob_core_session_open(w->core, &cred, &w->a, NULL) == ZX_OK);
    /* The uid fuzz_rpc.c's peer_cred gives non-operators: they see what b holds. */
    cred.uid = cred.gid = 65534;
    FZ_CHECK(iob_core_session_open(w->core, &cred, &w->b, NULL) == ZX_OK);

    zx_iob_region_t plain[2] = {
        {.type = ZX_IOB_REGION_TYPE_PRIVATE,
         .access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                   ZX_IOB_ACCESS_EP1_CAN_MAP_READ,
         .size = 4096,
         .discipline = {.type = ZX_IOB_DISCIPLINE_TYPE_NONE}},
        {.type = ZX_IOB_REGION_TYPE_PRIVATE,
         .access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                   ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE,
         .size = 8192,
         .discipline = {.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR}},
    };
    FZ_CHECK(iob_core_iob_create(w->core, w->a, 0, plain, 2, &w->plain_ep0, &w->plain_ep1) ==
             ZX_OK);
    FZ_CHECK(iob_core_shared_region_create(w->core, w->a, 0, 8192, &w->shared) == ZX_OK);
    zx_iob_region_t ring = {
        .type = ZX_IOB_REGION_TYPE_SHARED,
        .access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                  ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE,
        .discipline = {.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER,
                       .ring_buffer = {.tag = 42}},
        .shared_region = {.shared_region = w->shared},
    };
    FZ_CHECK(iob_core_iob_create(w->core, w->a, 0, &ring, 1, &w->ring_ep0, &w->ring_ep1) ==
             ZX_OK);
}
