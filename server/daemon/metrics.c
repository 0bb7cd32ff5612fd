/* SPDX-License-Identifier: MIT */
/* The Prometheus endpoint (see metrics.h). */
#include "server/daemon/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "proto/wire.h"
#include "server/core/iob_metrics.h"
#include "server/rpc/log.h"

struct iobd_metrics {
    struct MHD_Daemon* daemon;
    iob_core_t* core;
    const char* token; /* iobd's bearer token (outlives the endpoint); NULL: none asked */
};

/* Request headers and the like: a scrape's request is one short line and a few headers. */
#define IOBD__METRICS_CONN_MEMORY (32 * 1024)

static bool iobd__is_loopback(const struct sockaddr* sa) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in* in = (const struct sockaddr_in*)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6* in6 = (const struct sockaddr_in6*)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
            return true;
        }
        /* ::ffff:127.x.y.z */
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

static enum MHD_Result iobd__reply(struct MHD_Connection* conn, unsigned code, const char* text) {
    /* Copied: this libmicrohttpd takes a non-const buffer even when it only reads it. */
    char* copy = strdup(text);
    if (copy == NULL) {
        return MHD_NO;
    }
    struct MHD_Response* r =
        MHD_create_response_from_buffer(strlen(copy), copy, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(copy);
    }
    if (r == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }
    if (code == MHD_HTTP_UNAUTHORIZED) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    }
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

/*
 * "Authorization: Bearer <iobd's token>", compared in constant time: with a token set, the
 * endpoint answers only who may use the management plane over TCP.
 */
static bool iobd__bearer_ok(const iobd_metrics_t* m, struct MHD_Connection* conn) {
    const char* v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t tlen = strlen(m->token);
    if (v == NULL || strncmp(v, "Bearer ", 7) != 0 || strlen(v + 7) != tlen) {
        return false;
    }
    return iob_core_ct_equal(v + 7, m->token, tlen);
}

static enum MHD_Result iobd__on_request(void* cls, struct MHD_Connection* conn, const char* url,
                                        const char* method, const char* version,
                                        const char* upload_data, size_t* upload_data_size,
                                        void** req_cls) {
    (void)version;
    (void)upload_data;
    iobd_metrics_t* m = cls;
    /* The first call only announces the headers; a body (there should be none) is dropped. */
    if (*req_cls == NULL) {
        *req_cls = m;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        return iobd__reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    if (m->token != NULL && !iobd__bearer_ok(m, conn)) {
        return iobd__reply(conn, MHD_HTTP_UNAUTHORIZED, "a bearer token is required\n");
    }
    if (strcmp(url, "/metrics") != 0) {
        return iobd__reply(conn, MHD_HTTP_NOT_FOUND, "iobd serves /metrics only\n");
    }
    char* buf = NULL;
    size_t len = 0;
    FILE* out = open_memstream(&buf, &len);
    if (out == NULL) {
        return iobd__reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    int rc = iob_metrics_render(m->core, out);
    if (fclose(out) != 0 || rc != 0) {
        free(buf);
        return iobd__reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    struct MHD_Response* r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/*
 * Debug level: libmicrohttpd speaks once per connection (limit reached, timed out), so at a
 * higher level anyone who can open the port could flood the log. A failure to start is
 * reported by iobd_metrics_start itself.
 */
static void iobd__mhd_log(void* cls, const char* fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    IOBD_DEBUG("metrics: %s", msg);
}

zx_status_t iobd_metrics_start(const char* addr, bool allow_remote, const char* token,
                               iob_core_t* core, iobd_metrics_t** out) {
    char host[256], port[16];
    if (!iob_wire_split_host_port(addr, host, sizeof host, port, sizeof port)) {
        IOBD_ERROR("--metrics %s: expected HOST:PORT or [IPV6]:PORT", addr);
        return ZX_ERR_INVALID_ARGS;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo* ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        IOBD_ERROR("--metrics %s: %s", addr, gai_strerror(gai));
        return ZX_ERR_INVALID_ARGS;
    }
    if (!allow_remote && !iobd__is_loopback(ai->ai_addr)) {
        IOBD_ERROR(
            "--metrics %s: not a loopback address; the endpoint cannot tell who "
            "connects (no uid), so other addresses need --metrics-allow-remote",
            addr);
        freeaddrinfo(ai);
        return ZX_ERR_ACCESS_DENIED;
    }
    if (allow_remote && token == NULL) {
        /* As TCP for gRPC: remote callers are operators, and only the token says who is. */
        IOBD_ERROR("--metrics %s: remote scrapers need the bearer token (--token or "
                   "--token-file), as TCP callers of the management plane do",
                   addr);
        freeaddrinfo(ai);
        return ZX_ERR_ACCESS_DENIED;
    }
    iobd_metrics_t* m = calloc(1, sizeof *m);
    if (m == NULL) {
        freeaddrinfo(ai);
        return ZX_ERR_NO_MEMORY;
    }
    m->core = core;
    m->token = token;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    m->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, iobd__on_request, m, MHD_OPTION_EXTERNAL_LOGGER, iobd__mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)IOBD_METRICS_MAX_CONNS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)IOBD_METRICS_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)IOBD__METRICS_CONN_MEMORY, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (m->daemon == NULL) {
        IOBD_ERROR("--metrics %s: cannot listen there", addr);
        free(m);
        return ZX_ERR_BAD_STATE;
    }
    const union MHD_DaemonInfo* info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    IOBD_INFO("metrics on http://%s%s%s:%u/metrics%s%s", strchr(host, ':') ? "[" : "", host,
              strchr(host, ':') ? "]" : "", info != NULL ? (unsigned)info->port : 0u,
              allow_remote ? " (remote scrapers allowed)" : "",
              token != NULL ? " (bearer token required)" : "");
    *out = m;
    return ZX_OK;
}

void iobd_metrics_stop(iobd_metrics_t* m) {
    if (m == NULL) {
        return;
    }
    MHD_stop_daemon(m->daemon);
    free(m);
}
