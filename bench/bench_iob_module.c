/* SPDX-License-Identifier: MIT */
/*
 * The iob-bench-iob module's one export: the table bench_iobd.c looks up after dlopen
 * (why a module at all: bench.h, bench_iob_module_t). Also the ServerInfo probe the
 * orchestrator makes when IOB_SERVER names the server to measure.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "client/rpc/iob_conn.h"

static zx_status_t server_info(const char* target, char* backing, bool* mappable) {
    iob_conn_options_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.target = target;
    iob_conn_t* conn = NULL;
    zx_status_t st = iob_conn_open(&opts, &conn);
    if (st != ZX_OK) {
        return st;
    }
    iob_conn_server_info_t info;
    memset(&info, 0, sizeof(info));
    st = iob_conn_server_info(conn, &info);
    if (st == ZX_OK) {
        snprintf(backing, 8, "%.7s", info.backing);
        /* Mapping needs the map broker, which only a local server offers. */
        *mappable = iob_conn_session(conn)->broker_path[0] != '\0';
    }
    iob_conn_close(conn);
    return st;
}

__attribute__((visibility("default"))) const bench_iob_module_t bench_iob_module_table = {
    .ring_open = bench_iob_ring_module_open,
    .ring_close = bench_iob_ring_module_close,
    .grpc_open = bench_grpc_module_open,
    .grpc_close = bench_grpc_module_close,
    .grpc_send = bench_grpc_module_send,
    .grpc_recv = bench_grpc_module_recv,
    .mediated_open = bench_mediated_module_open,
    .mediated_close = bench_mediated_module_close,
    .mediated_send = bench_mediated_module_send,
    .mediated_recv = bench_mediated_module_recv,
    .server_info = server_info,
};
