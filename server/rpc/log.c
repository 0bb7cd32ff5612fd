/* SPDX-License-Identifier: MIT */
/* iobd's leveled log (see log.h). */
#include "server/rpc/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static atomic_int iobd__log_level = IOBD_LOG_INFO;

void iobd_log_set_level(iobd_log_level_t level) {
    atomic_store_explicit(&iobd__log_level, (int)level, memory_order_relaxed);
}

bool iobd_log_enabled(iobd_log_level_t level) {
    return (int)level <= atomic_load_explicit(&iobd__log_level, memory_order_relaxed);
}

bool iobd_log_parse_level(const char* text, iobd_log_level_t* out) {
    static const struct {
        const char* name;
        iobd_log_level_t level;
    } names[] = {{"error", IOBD_LOG_ERROR}, {"warn", IOBD_LOG_WARN}, {"warning", IOBD_LOG_WARN},
                 {"info", IOBD_LOG_INFO},   {"debug", IOBD_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *out = names[i].level;
            return true;
        }
    }
    return false;
}

const char* iobd_log_escape(const void* in, size_t len, char* out, size_t out_size) {
    static const char hex[] = "0123456789abcdef";
    if (out_size == 0) {
        return out;
    }
    const unsigned char* p = in;
    if (p == NULL) {
        len = 0;
    } else if (len == SIZE_MAX) {
        len = strlen((const char*)p);
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char buf[4];
        size_t n;
        unsigned char ch = p[i];
        if (ch == '\\' || ch == '"') {
            buf[0] = '\\';
            buf[1] = (char)ch;
            n = 2;
        } else if (ch < 0x20 || ch >= 0x7f) {
            buf[0] = '\\';
            buf[1] = 'x';
            buf[2] = hex[ch >> 4];
            buf[3] = hex[ch & 0xf];
            n = 4;
        } else {
            buf[0] = (char)ch;
            n = 1;
        }
        /* Room for this piece, and for "..." plus the NUL should more follow. */
        size_t need = n + (i + 1 < len ? 3 : 0) + 1;
        if (o + need > out_size) {
            if (o + 4 <= out_size) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, buf, n);
        o += n;
    }
    out[o] = '\0';
    return out;
}

void iobd_log(iobd_log_level_t level, const char* fmt, ...) {
    if (!iobd_log_enabled(level)) {
        return;
    }
    const char* tag = level <= IOBD_LOG_ERROR  ? "error"
                      : level <= IOBD_LOG_WARN ? "warn"
                      : level <= IOBD_LOG_INFO ? "info"
                                               : "debug";
    char line[1024];
    int n = snprintf(line, sizeof line, "iobd: %s: ", tag);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) {
        len = sizeof line - 2;
    }
    line[len++] = '\n';
    /* One write per line so that lines from the CQ thread and the loop never interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
