/* SPDX-License-Identifier: MIT */
/*
 * iob-bench-mediated's baselines, beside its mediated rows (bench_mediated_scale.c): the
 * Unix datagram socket that mediated logging replaces, and the synchronous floor (the least
 * any synchronous mediated write can cost on this machine). Both run their other side as
 * this binary re-executed, like the mediated writers.
 */
#ifndef IOB_BENCH_BENCH_MEDIATED_SCALE_H_
#define IOB_BENCH_BENCH_MEDIATED_SCALE_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int64_t now_ns(void);
pid_t spawn_self(const char* self, char* const argv[]);

/* Records/s of one writer process, this process reading or answering; -1: failed. */
double bench_dgram(const char* self, size_t size, long ms);
double bench_floor(const char* self, size_t size, long ms);

/* The child roles behind them (argv after the role's name). */
int dgram_main(char** argv);
int floor_server_main(char** argv);
int floor_writer_main(char** argv);

#endif /* IOB_BENCH_BENCH_MEDIATED_SCALE_H_ */
