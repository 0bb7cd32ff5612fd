/* SPDX-License-Identifier: MIT */
/* iob-bench-control: statistics on a reply line and the line protocol between processes. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_control.h"

int64_t bctl_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bctl_stats_format(char* line, size_t len, const char* prefix, const bctl_stats_t* s) {
    size_t used = strlen(line);
    if (used >= len) {
        return;
    }
    snprintf(line + used, len - used, " %s_p50=%.3f %s_p99=%.3f %s_min=%.3f %s_max=%.3f %s_mean=%.3f %s_n=%zu",
             prefix, s->p50, prefix, s->p99, prefix, s->min, prefix, s->max, prefix, s->mean,
             prefix, s->n);
}

bool bctl_kv(const char* line, const char* key, double* out) {
    char pat[64];
    if (strlen(key) > sizeof pat - 3) {
        return false; /* no key of ours is that long */
    }
    snprintf(pat, sizeof pat, " %.60s=", key);
    const char* p = strstr(line, pat);
    if (p == NULL) {
        return false;
    }
    char* end;
    double v = strtod(p + strlen(pat), &end);
    if (end == p + strlen(pat)) {
        return false;
    }
    *out = v;
    return true;
}

bool bctl_kv_str(const char* line, const char* key, char* out, size_t len) {
    char pat[64];
    if (strlen(key) > sizeof pat - 3) {
        return false; /* no key of ours is that long */
    }
    snprintf(pat, sizeof pat, " %.60s=", key);
    const char* p = strstr(line, pat);
    if (p == NULL || len == 0) {
        return false;
    }
    p += strlen(pat);
    size_t n = strcspn(p, " ");
    if (n >= len) {
        n = len - 1;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

bool bctl_stats_parse(const char* line, const char* prefix, bctl_stats_t* out) {
    memset(out, 0, sizeof *out);
    char key[64];
    double n = 0;
    snprintf(key, sizeof key, "%s_p50", prefix);
    if (!bctl_kv(line, key, &out->p50)) {
        return false;
    }
    snprintf(key, sizeof key, "%s_p99", prefix);
    bctl_kv(line, key, &out->p99);
    snprintf(key, sizeof key, "%s_min", prefix);
    bctl_kv(line, key, &out->min);
    snprintf(key, sizeof key, "%s_max", prefix);
    bctl_kv(line, key, &out->max);
    snprintf(key, sizeof key, "%s_mean", prefix);
    bctl_kv(line, key, &out->mean);
    snprintf(key, sizeof key, "%s_n", prefix);
    bctl_kv(line, key, &n);
    out->n = (size_t)n;
    return true;
}

bool bctl_write_line(int fd, const char* fmt, ...) {
    char buf[BCTL_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return false;
    }
    size_t len = (size_t)n < sizeof buf - 2 ? (size_t)n : sizeof buf - 2;
    buf[len++] = '\n';
    /* Pipes: a write below PIPE_BUF is atomic, but loop anyway for partial writes on EINTR. */
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        off += (size_t)w;
    }
    return true;
}

int bctl_read_line(int fd, char* buf, size_t len, int64_t timeout_ms) {
    /*
     * One byte at a time: replies are short and rare (one per request), and not reading
     * ahead means no buffer has to survive between calls.
     */
    size_t used = 0;
    int64_t deadline = bctl_now_ns() + timeout_ms * 1000000;
    for (;;) {
        int64_t left_ms = (deadline - bctl_now_ns()) / 1000000;
        if (left_ms <= 0) {
            buf[used] = '\0';
            return -2;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, left_ms > 1000 ? 1000 : (int)left_ms);
        if (rc < 0 && errno != EINTR) {
            return -1;
        }
        if (rc <= 0) {
            continue;
        }
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            buf[used] = '\0';
            return -1;
        }
        if (c == '\n') {
            buf[used] = '\0';
            return 0;
        }
        if (used + 1 < len) {
            buf[used++] = c;
        }
    }
}
