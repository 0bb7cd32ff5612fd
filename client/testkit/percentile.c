/* SPDX-License-Identifier: MIT */
/* Percentiles of samples (percentile.h). */
#include "client/testkit/percentile.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a;
    double y = *(const double*)b;
    return x < y ? -1 : x > y;
}

void iob_tk_sort(double* v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
}

double iob_tk_percentile_sorted(const double* sorted, size_t n, double p) {
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

void iob_tk_stats(double* v, size_t n, iob_tk_stats_t* out) {
    memset(out, 0, sizeof *out);
    if (n == 0) {
        return;
    }
    iob_tk_sort(v, n);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += v[i];
    }
    out->n = n;
    out->min = v[0];
    out->max = v[n - 1];
    out->mean = sum / (double)n;
    out->p50 = iob_tk_percentile_sorted(v, n, 50);
    out->p99 = iob_tk_percentile_sorted(v, n, 99);
    out->p999 = iob_tk_percentile_sorted(v, n, 99.9);
}

double iob_tk_median(double* v, size_t n) {
    iob_tk_sort(v, n);
    return iob_tk_percentile_sorted(v, n, 50);
}
