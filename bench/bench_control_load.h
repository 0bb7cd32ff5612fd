/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-control --load: what a load client process (bench_control_load_client.c) reports
 * to the orchestrator (bench_control_load.c): its counters, in this order, under these names.
 */
#ifndef IOB_BENCH_BENCH_CONTROL_LOAD_H_
#define IOB_BENCH_BENCH_CONTROL_LOAD_H_

enum {
    BCTL_LOAD_ITERS,
    BCTL_LOAD_CREATES,
    BCTL_LOAD_MAPS,
    BCTL_LOAD_WRITES,
    BCTL_LOAD_EXPORTS,
    BCTL_LOAD_IMPORTS,
    BCTL_LOAD_VERIFIED,
    BCTL_LOAD_MISMATCHES,
    BCTL_LOAD_ACKED,
    BCTL_LOAD_REFUSED,
    BCTL_LOAD_DOUBLED,
    BCTL_LOAD_UNMAPS,
    BCTL_LOAD_CLOSES,
    BCTL_LOAD_ERRORS,
    BCTL_LOAD_COUNT
};
extern const char* const bctl_load_counter_names[BCTL_LOAD_COUNT];

#endif /* IOB_BENCH_BENCH_CONTROL_LOAD_H_ */
