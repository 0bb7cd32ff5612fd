/* SPDX-License-Identifier: MIT */
/*
 * iobd's log: one line per event on stderr, "iobd: <level>: <message>", filtered by a
 * level set once at start (--log-level). Thread-safe (one write per line).
 */
#ifndef IOB_SERVER_RPC_LOG_H_
#define IOB_SERVER_RPC_LOG_H_

#include <stdbool.h>
#include <stddef.h>

/* syslog's numbering, so the broker's levels (3..7) pass straight through. */
typedef enum iobd_log_level {
    IOBD_LOG_ERROR = 3,
    IOBD_LOG_WARN = 4,
    IOBD_LOG_INFO = 6,
    IOBD_LOG_DEBUG = 7,
} iobd_log_level_t;

void iobd_log_set_level(iobd_log_level_t level);
bool iobd_log_enabled(iobd_log_level_t level);
/* "error", "warn", "info", "debug" (case-insensitive); false for anything else. */
bool iobd_log_parse_level(const char* text, iobd_log_level_t* out);

/*
 * What a client supplied (names, method paths), made safe to print inside one log line:
 * bytes outside printable ASCII become "\xNN", and '\\' and '"' are escaped, so nobody
 * can forge a line or hide text with terminal escapes. len: SIZE_MAX for a C string.
 * Always NUL-terminated; cut with "..." when out is too small. Returns out.
 */
const char* iobd_log_escape(const void* in, size_t len, char* out, size_t out_size);

__attribute__((format(printf, 2, 3))) void iobd_log(iobd_log_level_t level, const char* fmt, ...);

#define IOBD_ERROR(...) iobd_log(IOBD_LOG_ERROR, __VA_ARGS__)
#define IOBD_WARN(...) iobd_log(IOBD_LOG_WARN, __VA_ARGS__)
#define IOBD_INFO(...) iobd_log(IOBD_LOG_INFO, __VA_ARGS__)
#define IOBD_DEBUG(...)                        \
    do {                                       \
        if (iobd_log_enabled(IOBD_LOG_DEBUG)) { \
            iobd_log(IOBD_LOG_DEBUG, __VA_ARGS__); \
        }                                      \
    } while (0)

#endif /* IOB_SERVER_RPC_LOG_H_ */
