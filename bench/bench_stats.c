/* SPDX-License-Identifier: MIT */
/* Medians and spreads over trials (percentiles: client/testkit/percentile.h). */
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "client/testkit/percentile.h"

void bench_summarize(const double* values, int n, bench_summary_t* out) {
    memset(out, 0, sizeof(*out));
    if (n <= 0) {
        return;
    }
    /* The caller's order stays: its trials are interleaved with other rows'. */
    double* v = malloc((size_t)n * sizeof(double));
    if (v == NULL) {
        return;
    }
    memcpy(v, values, (size_t)n * sizeof(double));
    iob_tk_stats_t s;
    iob_tk_stats(v, (size_t)n, &s);
    out->n = n;
    out->min = s.min;
    out->max = s.max;
    out->median = s.p50;
    free(v);
}
