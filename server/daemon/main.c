/* SPDX-License-Identifier: MIT */
/*
 * iobd: the IOB server. main owns the core, which it lends to the gRPC service, the map
 * broker and the metrics endpoint, and the libuv loop; on the loop run the Unix-socket accepts of
 * the gRPC service, the map broker, the token-expiry timer, pidfd watches and the signals that stop
 * the server. gRPC calls are handled on the service's completion-queue thread (creates and closes
 * on threads of their own).
 *
 * Shutdown (SIGTERM/SIGINT): stop the timer and the broker, shut the gRPC server down
 * (in-flight calls end with UNAVAILABLE, sessions close), remove the sockets, let the loop
 * drain, grpc_shutdown, destroy the core (after everything that borrowed it). Exit status 0.
 *
 * Hugepages reserved with --reserve-hugepages are given back when iobd exits (cleanly, or
 * after a failed start): the pool is set back to its size before iobd grew it, but only if
 * it still has the size iobd set (an administrator who resized it meanwhile wins). The
 * reservation exists for iobd's regions, which are gone by then; leaving it would pin that
 * memory for nobody. A pool that already had at least N pages is left alone, at start and
 * at exit. (A SIGKILLed iobd cannot give pages back; the next iobd does not know them.)
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include <zircon/status.h>

#include "proto/wire.h"
#include "server/broker/broker.h"
#include "server/core/iob_metrics.h"
#include "server/daemon/config.h"
#include "server/daemon/metrics.h"
#include "server/rpc/log.h"
#include "server/rpc/rpc.h"
#include "shm/region.h"

#ifndef IOB_VERSION
#define IOB_VERSION "0.0.0"
#endif

/* What --reserve-hugepages did to the pool, so that exit can undo exactly that. */
typedef struct iobd_reservation {
    bool grown;
    iob_backing_t backing;
    uint64_t before;  /* nr_hugepages before iobd grew it */
    uint64_t reached; /* nr_hugepages iobd left it at */
} iobd_reservation_t;

typedef struct iobd_main {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    uv_timer_t expiry;
    iob_core_t* core; /* lent to rpc, the broker and metrics; destroyed after them */
    iobd_rpc_t* rpc;
    iobd_broker_t* broker;
    iobd_metrics_t* metrics;
    bool stopping;
} iobd_main_t;

static void iobd__broker_log(void* ctx, int level, const char* msg) {
    (void)ctx;
    iobd_log((iobd_log_level_t)level, "broker: %s", msg);
}

static void iobd__on_expiry(uv_timer_t* t) {
    iobd_main_t* m = t->data;
    iob_core_expire_tokens(m->core);
}

static void iobd__rpc_done(void* ctx) {
    iobd_main_t* m = ctx;
    uv_close((uv_handle_t*)&m->sigterm, NULL);
    uv_close((uv_handle_t*)&m->sigint, NULL);
}

static void iobd__on_signal(uv_signal_t* s, int signum) {
    iobd_main_t* m = s->data;
    if (m->stopping) {
        return;
    }
    m->stopping = true;
    IOBD_INFO("%s: shutting down", strsignal(signum));
    uv_timer_stop(&m->expiry);
    uv_close((uv_handle_t*)&m->expiry, NULL);
    /* ---- map broker: stopped before the service so no new mapping races the end ---- */
    iobd_broker_stop(m->broker);
    m->broker = NULL;
    /* Its thread reads the core: stopped (joined) before the core goes. */
    iobd_metrics_stop(m->metrics);
    m->metrics = NULL;
    iobd_rpc_shutdown(m->rpc, iobd__rpc_done, m);
}

/* --reserve-hugepages: grows (never shrinks) the pool to N pages and records what it did. */
static void iobd__reserve(const iobd_options_t* o, iobd_reservation_t* res) {
    memset(res, 0, sizeof *res);
    if (o->reserve_hugepages == 0) {
        return;
    }
    iob_backing_t want = IOB_BACKING_2M;
    if (o->hugepages != NULL && strcasecmp(o->hugepages, "1G") == 0) {
        want = IOB_BACKING_1G;
    }
    iob_hugepage_pool_t before = {0, 0};
    zx_status_t st = iob_hugepage_pool_read(want, &before);
    if (st == ZX_OK && before.total >= o->reserve_hugepages) {
        IOBD_INFO("reserved hugepages: the %s pool already has %" PRIu64 " pages (asked %" PRIu64
                  "); left as is",
                  iob_backing_name(want), before.total, o->reserve_hugepages);
        return;
    }
    uint64_t reached = 0;
    if (st == ZX_OK) {
        st = iob_hugepage_pool_resize(want, o->reserve_hugepages, &reached);
    }
    if (st != ZX_OK) {
        IOBD_WARN("cannot reserve %" PRIu64 " %s hugepages: %s%s", o->reserve_hugepages,
                  iob_backing_name(want), zx_status_get_string(st),
                  st == ZX_ERR_ACCESS_DENIED ? " (not root)" : "");
        return;
    }
    res->grown = reached != before.total;
    res->backing = want;
    res->before = before.total;
    res->reached = reached;
    if (reached < o->reserve_hugepages) {
        IOBD_WARN("reserved hugepages: asked %" PRIu64 " x %s, the kernel found %" PRIu64
                  " (pool was %" PRIu64 ")",
                  o->reserve_hugepages, iob_backing_name(want), reached, before.total);
    } else {
        IOBD_INFO("reserved hugepages: asked %" PRIu64 " x %s, pool now %" PRIu64 " (was %" PRIu64
                  "; given back at exit)",
                  o->reserve_hugepages, iob_backing_name(want), reached, before.total);
    }
}

/* Undoes iobd__reserve at exit (see the file comment for when it does not). */
static void iobd__unreserve(iobd_reservation_t* res) {
    if (!res->grown) {
        return;
    }
    res->grown = false;
    iob_hugepage_pool_t now = {0, 0};
    if (iob_hugepage_pool_read(res->backing, &now) != ZX_OK || now.total != res->reached) {
        IOBD_INFO("hugepages: the %s pool was resized by someone else (%" PRIu64
                  " pages, iobd left %" PRIu64 "); not giving pages back",
                  iob_backing_name(res->backing), now.total, res->reached);
        return;
    }
    uint64_t reached = 0;
    zx_status_t st = iob_hugepage_pool_resize(res->backing, res->before, &reached);
    if (st != ZX_OK) {
        IOBD_WARN("hugepages: cannot give the reservation back: %s", zx_status_get_string(st));
    } else {
        IOBD_INFO("hugepages: reservation given back, %s pool %" PRIu64 " pages (was %" PRIu64
                  " before iobd)",
                  iob_backing_name(res->backing), reached, res->before);
    }
}

/*
 * Every live region holds a memfd, so the soft open-file limit (often 1024, or whatever the
 * shell had) would make creates fail with NO_RESOURCES long before memory runs out: raise
 * it to the hard limit, which is the operator's (systemd's LimitNOFILE=) to set.
 */
static void iobd__raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        IOBD_WARN("open files: getrlimit: %s", strerror(errno));
        return;
    }
    rlim_t before = rl.rlim_cur;
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            IOBD_WARN("open files: cannot raise the limit from %llu to %llu: %s",
                      (unsigned long long)before, (unsigned long long)rl.rlim_max, strerror(errno));
            return;
        }
    }
    IOBD_INFO("open files: limit %llu (was %llu; hard limit %llu)", (unsigned long long)rl.rlim_cur,
              (unsigned long long)before, (unsigned long long)rl.rlim_max);
}

/* "unlimited" for the core's UINT64_MAX, else the number. */
static void iobd__log_budgets(iob_core_t* core) {
    iob_core_stats_t st;
    iob_core_get_stats(core, &st);
    char a[24], b[24], c[24], d[24], e[24];
    IOBD_INFO("budget: %s bytes server-wide", iob_wire_limit_text(st.max_total_bytes, a, sizeof a));
    const iob_core_amounts_t* sets[2] = {&st.per_session, &st.per_uid};
    const char* names[2] = {"session", "uid"};
    for (int i = 0; i < 2; i++) {
        IOBD_INFO("budget per %s: %s bytes, %s iobs, %s handles, %s tokens, %s mappings", names[i],
                  iob_wire_limit_text(sets[i]->bytes, a, sizeof a),
                  iob_wire_limit_text(sets[i]->iobs, b, sizeof b),
                  iob_wire_limit_text(sets[i]->handles, c, sizeof c),
                  iob_wire_limit_text(sets[i]->tokens, d, sizeof d),
                  iob_wire_limit_text(sets[i]->mappings, e, sizeof e));
    }
}

/* The backing, chosen once and said loudly (docs/zircon-iob.md L, "Page size"). */
static zx_status_t iobd__choose_backing(const iobd_options_t* o, iob_backing_t* out) {
    zx_status_t st = iob_backing_choose(o->hugepages, o->core.hugepages_min_free, out);
    if (st != ZX_OK) {
        iob_backing_t want = strcasecmp(o->hugepages, "1G") == 0 ? IOB_BACKING_1G : IOB_BACKING_2M;
        iob_hugepage_pool_t pool = {0, 0};
        if (st == ZX_ERR_NO_MEMORY && iob_hugepage_pool_read(want, &pool) == ZX_OK) {
            IOBD_ERROR("--hugepages=%s: %s: the %s pool has %" PRIu64 " free of %" PRIu64
                       " pages; grow it (as root: --reserve-hugepages=N, or sysctl "
                       "vm.nr_hugepages) or use --hugepages=auto",
                       o->hugepages, zx_status_get_string(st), iob_backing_name(want), pool.free,
                       pool.total);
        } else if (st == ZX_ERR_NOT_SUPPORTED) {
            IOBD_ERROR("--hugepages=%s: %s: this kernel has no %s hugepages", o->hugepages,
                       zx_status_get_string(st), iob_backing_name(want));
        } else {
            IOBD_ERROR("--hugepages=%s: %s", o->hugepages, zx_status_get_string(st));
        }
        return st;
    }
    if (*out == IOB_BACKING_4K) {
        if (strcasecmp(o->hugepages, "off") == 0 || strcasecmp(o->hugepages, "4K") == 0) {
            IOBD_INFO("backing: 4K pages (hugepages off)");
        } else {
            IOBD_WARN(
                "backing: 4K pages: no usable hugepage pool (asked %s); "
                "zx_system_get_page_size() is 4096",
                o->hugepages);
        }
    } else {
        iob_hugepage_pool_t pool = {0, 0};
        iob_hugepage_pool_read(*out, &pool);
        IOBD_INFO("backing: %s hugepages (pool %" PRIu64 " pages, %" PRIu64 " free)",
                  iob_backing_name(*out), pool.total, pool.free);
    }
    return ZX_OK;
}

/* The broker's socket lives next to the first Unix socket unless told otherwise; "": none. */
static void iobd__broker_path(const iobd_options_t* o, char* out, size_t size) {
    out[0] = '\0';
    if (o->no_broker) {
        return;
    }
    if (o->broker_path != NULL) {
        snprintf(out, size, "%s", o->broker_path);
        return;
    }
    for (size_t i = 0; i < o->listen_count; i++) {
        if (strncmp(o->listen[i], "unix:", 5) == 0) {
            char tmp[512];
            snprintf(tmp, sizeof tmp, "%s", o->listen[i] + 5);
            snprintf(out, size, "%s/iobd-broker.sock", dirname(tmp));
            return;
        }
    }
}

/* The gRPC service's configuration from the options (pointers into them). */
static void iobd__rpc_config(const iobd_options_t* o, const char* broker_path,
                             iobd_rpc_config_t* rc) {
    memset(rc, 0, sizeof *rc);
    rc->listen = (const char* const*)o->listen;
    rc->listen_count = o->listen_count;
    rc->socket_mode = o->socket_mode;
    rc->allow_uids = o->allow_uids;
    rc->allow_uid_count = o->allow_uid_count;
    rc->allow_gids = o->allow_gids;
    rc->allow_gid_count = o->allow_gid_count;
    rc->tls_cert_file = o->tls_cert;
    rc->tls_key_file = o->tls_key;
    rc->tls_client_ca_file = o->tls_client_ca;
    rc->token = o->token;
    rc->insecure = o->insecure;
    rc->operator_uids = o->operator_uids;
    rc->operator_uid_count = o->operator_uid_count;
    rc->operator_gids = o->operator_gids;
    rc->operator_gid_count = o->operator_gid_count;
    rc->max_sessions_per_uid = o->max_sessions_per_uid;
    rc->max_waits_per_session = o->max_waits_per_session;
    rc->broker_path = broker_path[0] != '\0' ? broker_path : NULL;
    rc->version = IOB_VERSION;
}

/*
 * The map broker: the same loop and the same core, which authenticates its ATTACH. A
 * failure unwinds through the normal stop path.
 */
static zx_status_t iobd__broker_start(iobd_main_t* m, const iobd_options_t* o,
                                      const char* broker_path) {
    iobd_broker_config_t bc;
    memset(&bc, 0, sizeof bc);
    bc.socket_path = broker_path;
    bc.socket_mode = o->socket_mode;
    bc.peer_allowed = iobd_rpc_peer_allowed;
    bc.policy_ctx = m->rpc;
    bc.log = iobd__broker_log;
    bc.max_connections_per_uid = o->broker_max_conns_per_uid;
    bc.attach_timeout_ms = o->broker_attach_timeout_ms;
    zx_status_t st = iobd_broker_start(&m->loop, m->core, &bc, &m->broker);
    if (st != ZX_OK) {
        IOBD_ERROR("map broker on %s: %s", broker_path, zx_status_get_string(st));
        iobd__on_signal(&m->sigterm, SIGTERM);
    } else {
        IOBD_INFO("map broker on %s", broker_path);
    }
    return st;
}

int main(int argc, char** argv) {
    pid_t parent = getppid(); /* before anything: --exit-with-parent compares against it */
    iobd_options_t o;
    int pr = iobd_options_parse(&o, argc, argv);
    if (pr != 0) {
        iobd_options_fini(&o);
        return pr > 0 ? 0 : 2;
    }
    iobd_log_set_level(o.log_level);
    signal(SIGPIPE, SIG_IGN);
    /*
     * SIGTERM and SIGINT wait until the loop handles them: one that came while the sockets
     * exist but before the handlers do would kill iobd without its cleanup (socket files
     * left behind, reserved hugepages kept). Every thread started from here on inherits the
     * mask, so once the main thread unblocks them, the loop's handler gets them.
     */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    iobd__raise_nofile();

    iobd_reservation_t reservation;
    iobd__reserve(&o, &reservation);
    iob_backing_t backing;
    if (iobd__choose_backing(&o, &backing) != ZX_OK) {
        iobd__unreserve(&reservation);
        iobd_options_fini(&o);
        return 1;
    }

    char broker_path[512];
    iobd__broker_path(&o, broker_path, sizeof broker_path);

    iobd_main_t m;
    memset(&m, 0, sizeof m);
    uv_loop_init(&m.loop);

    /* Before the core exists: slots are taken as shared regions are created. */
    iob_metrics_set_max_named(o.metrics_max_named);
    iob_metrics_enable(o.metrics != NULL);
    iob_core_config_t cc = o.core;
    cc.backing = backing;
    cc.server_uid = geteuid();
    zx_status_t st = iob_core_create(&cc, &m.core);
    if (st != ZX_OK) {
        IOBD_ERROR("core: %s %s", zx_status_get_string(st), iob_core_error_detail());
    } else {
        iobd_rpc_config_t rc;
        iobd__rpc_config(&o, broker_path, &rc);
        st = iobd_rpc_start(&m.loop, m.core, &rc, &m.rpc);
        if (st != ZX_OK) {
            IOBD_ERROR("cannot start: %s", zx_status_get_string(st));
        }
    }
    if (st != ZX_OK) {
        iob_core_destroy(m.core);
        iobd__unreserve(&reservation);
        iobd_options_fini(&o);
        return 1;
    }

    iobd__log_budgets(m.core);

    uv_timer_init(&m.loop, &m.expiry);
    m.expiry.data = &m;
    uv_signal_init(&m.loop, &m.sigterm);
    uv_signal_init(&m.loop, &m.sigint);
    m.sigterm.data = m.sigint.data = &m;

    if (broker_path[0] != '\0') {
        st = iobd__broker_start(&m, &o, broker_path);
    }

    if (!m.stopping && o.metrics != NULL) {
        st = iobd_metrics_start(o.metrics, o.metrics_allow_remote, o.token, m.core, &m.metrics);
        if (st != ZX_OK) {
            iobd__on_signal(&m.sigterm, SIGTERM); /* unwind through the normal path */
        }
    }

    if (!m.stopping) {
        uv_timer_start(&m.expiry, iobd__on_expiry, 1000, 1000);
        uv_signal_start(&m.sigterm, iobd__on_signal, SIGTERM);
        uv_signal_start(&m.sigint, iobd__on_signal, SIGINT);
        pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
        /*
         * Only now, with SIGTERM handled by the loop: the parent's death then unwinds the
         * normal way (sockets removed, hugepages given back). A parent already gone before
         * the request (reparented) gets the same treatment at once.
         */
        if (o.exit_with_parent && (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)) {
            kill(getpid(), SIGTERM);
        }
        IOBD_INFO("iobd %s ready (page size %" PRIu64 ")", IOB_VERSION,
                  iob_backing_page_size(backing));
    }
    int exit_code = st == ZX_OK ? 0 : 1;
    uv_run(&m.loop, UV_RUN_DEFAULT);
    iobd_rpc_destroy(m.rpc);
    iob_core_destroy(m.core);
    if (uv_loop_close(&m.loop) != 0) {
        IOBD_WARN("libuv handles still open at exit");
    }
    /* After the core is gone: iobd's own regions no longer hold pool pages. */
    iobd__unreserve(&reservation);
    IOBD_INFO("stopped");
    iobd_options_fini(&o);
    return exit_code;
}
