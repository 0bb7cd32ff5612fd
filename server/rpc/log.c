/* SPDX-License-Identifier: MIT */
/* iobd's leveled log (see log.h). */
#include "server/rpc/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
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
