/* SPDX-License-Identifier: MIT */
/* Medians, spreads and percentiles over trials. */
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a;
    double y = *(const double*)b;
    return x < y ? -1 : x > y;
}

void bench_sort(double* values, size_t n) {
    qsort(values, n, sizeof(double), cmp_double);
}

double bench_percentile_sorted(const double* sorted, size_t n, double p) {
    if (n == 0) {
        return 0;
    }
    double pos = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)pos;
    if (lo + 1 >= n) {
        return sorted[n - 1];
    }
    double frac = pos - (double)lo;
    return sorted[lo] * (1 - frac) + sorted[lo + 1] * frac;
}

void bench_summarize(const double* values, int n, bench_summary_t* out) {
    memset(out, 0, sizeof(*out));
    if (n <= 0) {
        return;
    }
    double* v = malloc((size_t)n * sizeof(double));
    if (v == NULL) {
        return;
    }
    memcpy(v, values, (size_t)n * sizeof(double));
    bench_sort(v, (size_t)n);
    out->n = n;
    out->min = v[0];
    out->max = v[n - 1];
    out->median = bench_percentile_sorted(v, (size_t)n, 50);
    free(v);
}
