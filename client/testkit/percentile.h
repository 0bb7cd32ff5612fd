/* SPDX-License-Identifier: MIT */
/*
 * Percentiles of samples, the one definition the tests and the benchmarks share so that
 * their figures compare: linear interpolation between the closest ranks (p of n sorted
 * samples sits at position p/100 * (n - 1)).
 */
#ifndef IOB_CLIENT_TESTKIT_PERCENTILE_H_
#define IOB_CLIENT_TESTKIT_PERCENTILE_H_

#include <stddef.h>

typedef struct iob_tk_stats {
    double p50, p99, p999, min, max, mean; /* in the unit of the samples */
    size_t n;
} iob_tk_stats_t;

/* Ascending. */
void iob_tk_sort(double* v, size_t n);
/* p in [0, 100] of sorted samples; 0 when n == 0. */
double iob_tk_percentile_sorted(const double* sorted, size_t n, double p);
/* Sorts v in place and summarizes it; n == 0 gives all zeros. */
void iob_tk_stats(double* v, size_t n, iob_tk_stats_t* out);
/* The median of v (sorted in place). */
double iob_tk_median(double* v, size_t n);

#endif /* IOB_CLIENT_TESTKIT_PERCENTILE_H_ */
