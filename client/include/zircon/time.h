/* SPDX-License-Identifier: MIT */
/* Time arithmetic helpers, as in Fuchsia's <zircon/time.h>: saturating, never wrapping. */
#ifndef ZIRCON_TIME_H_
#define ZIRCON_TIME_H_

#include <zircon/types.h>

static inline zx_time_t zx_time_add_duration(zx_time_t time, zx_duration_t duration) {
    zx_time_t sum;
    if (__builtin_add_overflow(time, duration, &sum)) {
        return duration < 0 ? ZX_TIME_INFINITE_PAST : ZX_TIME_INFINITE;
    }
    return sum;
}

static inline zx_duration_t zx_time_sub_time(zx_time_t a, zx_time_t b) {
    zx_duration_t diff;
    if (__builtin_sub_overflow(a, b, &diff)) {
        return b < 0 ? ZX_TIME_INFINITE : ZX_TIME_INFINITE_PAST;
    }
    return diff;
}

#endif /* ZIRCON_TIME_H_ */
