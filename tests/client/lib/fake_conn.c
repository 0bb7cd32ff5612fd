/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for client/rpc's iob_conn, for libiob's in-process tests: the same contract
 * (iob_conn.h), served by a real iob_core and a real map broker in this process, with the
 * broker's libuv loop on its own thread. It lets the library's map, unmap, transfer and
 * Zircon-call logic be tested without gRPC; the integration tests use the real thing.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/rpc/iob_conn.h"
#include "server/broker/broker.h"
#include "test_util.h"

#define FAKE_MAX_SESSIONS 16

struct iob_conn {
    iob_session_id_t session;
    iob_conn_session_info_t info;
    bool open;
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static iob_core_t* g_core;
static uv_loop_t g_loop;
static iobd_broker_t* g_broker;
static char g_path[108];
static iob_conn_t* g_conns[FAKE_MAX_SESSIONS];

/* The fake's sessions all live in this process, so the peer's identity is not checked. */
static void fake_log(void* ctx, int level, const char* msg) {
    (void)ctx;
    (void)level;
    (void)msg;
}

static void* loop_thread(void* arg) {
    (void)arg;
    uv_run(&g_loop, UV_RUN_DEFAULT);
    return NULL;
}

static void fake_init(void) {
    iob_core_config_t cc;
    memset(&cc, 0, sizeof cc);
    cc.backing = IOB_BACKING_4K;
    if (iob_core_create(&cc, &g_core) != ZX_OK || uv_loop_init(&g_loop) != 0) {
        abort();
    }
    char* dir = iob_test_tempdir();
    snprintf(g_path, sizeof g_path, "%s/broker.sock", dir);
    free(dir);
    iobd_broker_config_t bc;
    memset(&bc, 0, sizeof bc);
    bc.socket_path = g_path;
    bc.log = fake_log;
    if (iobd_broker_start(&g_loop, g_core, &bc, &g_broker) != ZX_OK) {
        abort();
    }
    pthread_t t;
    pthread_create(&t, NULL, loop_thread, NULL);
    pthread_detach(t);
}

iob_core_t* fake_conn_core(void);
iob_core_t* fake_conn_core(void) {
    pthread_once(&g_once, fake_init);
    return g_core;
}

zx_status_t iob_conn_open(const iob_conn_options_t* options, iob_conn_t** out) {
    (void)options;
    pthread_once(&g_once, fake_init);
    iob_conn_t* c = calloc(1, sizeof *c);
    iob_session_cred_t cred = {
        .pid = getpid(), .uid = getuid(), .gid = getgid(), .local = true, .known = true};
    zx_status_t st = iob_core_session_open(g_core, &cred, &c->session, c->info.secret);
    if (st != ZX_OK) {
        free(c);
        return st;
    }
    c->open = true;
    c->info.session_id = c->session.value;
    c->info.page_size = 4096;
    strcpy(c->info.backing, "4K");
    strcpy(c->info.broker_path, g_path);
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < FAKE_MAX_SESSIONS; i++) {
        if (g_conns[i] == NULL) {
            g_conns[i] = c;
            break;
        }
    }
    pthread_mutex_unlock(&g_lock);
    *out = c;
    return ZX_OK;
}

void iob_conn_close(iob_conn_t* conn) {
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < FAKE_MAX_SESSIONS; i++) {
        if (g_conns[i] == conn) {
            g_conns[i] = NULL;
        }
    }
    pthread_mutex_unlock(&g_lock);
    iob_core_session_close(g_core, conn->session);
    /* This process is still alive, so its mapping records stay (as iobd would keep them). */
    free(conn);
}

const iob_conn_session_info_t* iob_conn_session(const iob_conn_t* conn) {
    return &conn->info;
}

zx_status_t iob_conn_set_event_callback(iob_conn_t* conn, iob_conn_event_fn fn, void* ctx) {
    (void)conn;
    (void)fn;
    (void)ctx;
    return ZX_OK;
}

/* What iobd's CloseHandles does (server/rpc/rpc_handlers.c). */
zx_status_t iob_conn_handle_close_many(iob_conn_t* c, const zx_handle_t* handles,
                                       size_t num_handles) {
    zx_status_t st = ZX_OK;
    for (size_t i = 0; i < num_handles; i++) {
        if (handles[i] == ZX_HANDLE_INVALID) {
            continue;
        }
        zx_status_t one = iob_core_handle_close(g_core, c->session, handles[i]);
        if (one != ZX_OK && st == ZX_OK) {
            st = one;
        }
    }
    return st;
}

zx_status_t iob_conn_iob_create(iob_conn_t* c, uint64_t options, const zx_iob_region_t* regions,
                                size_t region_count, zx_handle_t* ep0_out, zx_handle_t* ep1_out) {
    return iob_core_iob_create(g_core, c->session, options, regions, region_count, ep0_out,
                               ep1_out);
}
zx_status_t iob_conn_get_info(iob_conn_t* c, zx_handle_t handle, uint32_t topic, void* buffer,
                              size_t buffer_size, size_t* actual, size_t* avail) {
    return iob_core_get_info(g_core, c->session, handle, topic, buffer, buffer_size, actual, avail);
}
zx_status_t iob_conn_get_property(iob_conn_t* c, zx_handle_t handle, uint32_t property,
                                  void* value, size_t value_size) {
    return iob_core_get_property(g_core, c->session, handle, property, value, value_size);
}
zx_status_t iob_conn_set_property(iob_conn_t* c, zx_handle_t handle, uint32_t property,
                                  const void* value, size_t value_size) {
    return iob_core_set_property(g_core, c->session, handle, property, value, value_size);
}
zx_status_t iob_conn_handle_close(iob_conn_t* c, zx_handle_t handle) {
    return iob_core_handle_close(g_core, c->session, handle);
}
zx_status_t iob_conn_handle_duplicate(iob_conn_t* c, zx_handle_t handle, zx_rights_t rights,
                                      zx_handle_t* out) {
    return iob_core_handle_duplicate(g_core, c->session, handle, rights, out);
}
zx_status_t iob_conn_handle_replace(iob_conn_t* c, zx_handle_t handle, zx_rights_t rights,
                                    zx_handle_t* out) {
    return iob_core_handle_replace(g_core, c->session, handle, rights, out);
}
zx_status_t iob_conn_object_signal(iob_conn_t* c, zx_handle_t handle, uint32_t clear_mask,
                                   uint32_t set_mask) {
    return iob_core_object_signal(g_core, c->session, handle, clear_mask, set_mask);
}
zx_status_t iob_conn_object_signal_peer(iob_conn_t* c, zx_handle_t handle, uint32_t clear_mask,
                                        uint32_t set_mask) {
    return iob_core_object_signal_peer(g_core, c->session, handle, clear_mask, set_mask);
}
zx_status_t iob_conn_signals(iob_conn_t* c, zx_handle_t handle, zx_signals_t* signals_out) {
    zx_koid_t koid;
    return iob_core_signals(g_core, c->session, handle, signals_out, &koid);
}
zx_status_t iob_conn_wait_one(iob_conn_t* c, zx_handle_t handle, zx_signals_t signals,
                              zx_time_t deadline, zx_signals_t* observed) {
    for (;;) {
        zx_signals_t now = 0;
        zx_status_t st = iob_conn_signals(c, handle, &now);
        if (st != ZX_OK) {
            return st;
        }
        *observed = now;
        if ((now & signals) != 0) {
            return ZX_OK;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if ((zx_time_t)ts.tv_sec * 1000000000 + ts.tv_nsec >= deadline) {
            return ZX_ERR_TIMED_OUT;
        }
        usleep(1000);
    }
}
zx_status_t iob_conn_handle_export(iob_conn_t* c, zx_handle_t handle,
                                   char token_out[IOB_CONN_TOKEN_SIZE]) {
    return iob_core_handle_export(g_core, c->session, handle, token_out);
}
zx_status_t iob_conn_handle_import(iob_conn_t* c, const char* token, zx_handle_t* out) {
    return iob_core_handle_import(g_core, c->session, token, out);
}
zx_status_t iob_conn_region_read(iob_conn_t* c, zx_handle_t handle, uint32_t region_index,
                                 uint64_t offset, void* buffer, size_t len) {
    return iob_core_region_read(g_core, c->session, handle, region_index, offset, buffer, len);
}
zx_status_t iob_conn_region_write(iob_conn_t* c, zx_handle_t handle, uint32_t region_index,
                                  uint64_t offset, const void* buffer, size_t len) {
    return iob_core_region_write(g_core, c->session, handle, region_index, offset, buffer, len);
}
