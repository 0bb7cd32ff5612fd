/* SPDX-License-Identifier: MIT */
/*
 * iobd's listeners. TCP ports are gRPC's own (TLS unless --insecure). Unix sockets are
 * accepted here, on the libuv loop, because gRPC does not expose the peer's credentials:
 * we read SO_PEERCRED, apply the uid/gid policy, and hand the connection to gRPC with
 * grpc_server_add_channel_from_fd. Its calls then report the peer "fd:N", which maps back
 * to the credentials recorded here (notes/grpc-c-core.md section 7).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>

#include "server/rpc/log.h"
#include "server/rpc/rpc_internal.h"

bool iobd__peer_is_local(const char* peer) {
    return peer != NULL && strncmp(peer, "fd:", 3) == 0;
}

bool iobd__peer_cred(iobd_rpc_t* srv, const char* peer, iobd_cred_t* out) {
    if (!iobd__peer_is_local(peer)) {
        return false;
    }
    char* end = NULL;
    long fd = strtol(peer + 3, &end, 10);
    if (end == peer + 3 || fd < 0) {
        return false;
    }
    bool ok = false;
    pthread_mutex_lock(&srv->lock);
    if ((size_t)fd < srv->creds_cap && srv->creds[fd].valid) {
        *out = srv->creds[fd];
        ok = true;
    }
    pthread_mutex_unlock(&srv->lock);
    return ok;
}

static void iobd__remember_cred(iobd_rpc_t* srv, int fd, const struct ucred* cr) {
    pthread_mutex_lock(&srv->lock);
    if ((size_t)fd >= srv->creds_cap) {
        size_t cap = srv->creds_cap == 0 ? 64 : srv->creds_cap;
        while (cap <= (size_t)fd) {
            cap *= 2;
        }
        iobd_cred_t* n = realloc(srv->creds, cap * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&srv->lock);
            return;
        }
        memset(n + srv->creds_cap, 0, (cap - srv->creds_cap) * sizeof *n);
        srv->creds = n;
        srv->creds_cap = cap;
    }
    /*
     * gRPC closes the fd without telling us, so the number may come back for a later
     * connection: every accept overwrites its entry.
     */
    srv->creds[fd] = (iobd_cred_t){true, cr->pid, cr->uid, cr->gid};
    pthread_mutex_unlock(&srv->lock);
}

bool iobd_rpc_peer_allowed(void* ctx, pid_t pid, uid_t uid, gid_t gid) {
    (void)pid;
    iobd_rpc_t* srv = ctx;
    const iobd_rpc_config_t* c = &srv->config;
    if (c->allow_uid_count == 0 && c->allow_gid_count == 0) {
        return true; /* the socket file's permissions are the policy */
    }
    if (uid == 0 || uid == geteuid()) {
        return true;
    }
    for (size_t i = 0; i < c->allow_uid_count; i++) {
        if (c->allow_uids[i] == uid) {
            return true;
        }
    }
    for (size_t i = 0; i < c->allow_gid_count; i++) {
        if (c->allow_gids[i] == gid) {
            return true;
        }
    }
    return false;
}

bool iobd__call_is_operator(iobd_rpc_t* srv, const iobd_call_t* c) {
    if (!iobd__peer_is_local(c->peer)) {
        /* TCP is never served without the bearer token (iobd__listen_tcp). */
        return true;
    }
    iobd_cred_t cr;
    if (!iobd__peer_cred(srv, c->peer, &cr)) {
        return false;
    }
    if (cr.uid == 0 || cr.uid == geteuid()) {
        return true;
    }
    const iobd_rpc_config_t* cfg = &srv->config;
    for (size_t i = 0; i < cfg->operator_uid_count; i++) {
        if (cfg->operator_uids[i] == cr.uid) {
            return true;
        }
    }
    for (size_t i = 0; i < cfg->operator_gid_count; i++) {
        if (cfg->operator_gids[i] == cr.gid) {
            return true;
        }
    }
    return false;
}

static void iobd__client_closed(uv_handle_t* h) {
    free(h);
}

static void iobd__on_unix_connection(uv_stream_t* server, int status) {
    iobd_unix_listener_t* l = server->data;
    iobd_rpc_t* srv = l->srv;
    if (status < 0) {
        IOBD_WARN("accept on %s: %s", l->path, uv_strerror(status));
        return;
    }
    uv_pipe_t* cli = malloc(sizeof *cli);
    if (cli == NULL || uv_pipe_init(srv->loop, cli, 0) != 0) {
        free(cli);
        return;
    }
    if (uv_accept(server, (uv_stream_t*)cli) != 0) {
        uv_close((uv_handle_t*)cli, iobd__client_closed);
        return;
    }
    uv_os_fd_t fd = -1;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (uv_fileno((uv_handle_t*)cli, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
        IOBD_WARN("%s: no peer credentials, connection refused", l->path);
        uv_close((uv_handle_t*)cli, iobd__client_closed);
        return;
    }
    if (atomic_load(&srv->shutting_down) ||
        !iobd_rpc_peer_allowed(srv, cr.pid, cr.uid, cr.gid)) {
        IOBD_WARN("%s: refused pid %d uid %d gid %d (policy)", l->path, (int)cr.pid, (int)cr.uid,
                  (int)cr.gid);
        uv_close((uv_handle_t*)cli, iobd__client_closed);
        return;
    }
    /* gRPC owns the duplicate; libuv closes its own fd with the handle. */
    int g = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    uv_close((uv_handle_t*)cli, iobd__client_closed);
    if (g < 0) {
        IOBD_WARN("%s: dup: %s", l->path, strerror(errno));
        return;
    }
    /* libuv made it non-blocking, as gRPC's endpoint wants. */
    iobd__remember_cred(srv, g, &cr);
    IOBD_DEBUG("%s: accepted pid %d uid %d gid %d as fd:%d", l->path, (int)cr.pid, (int)cr.uid,
               (int)cr.gid, g);
    grpc_server_credentials* ic = grpc_insecure_server_credentials_create();
    grpc_server_add_channel_from_fd(srv->server, g, ic);
    grpc_server_credentials_release(ic);
}

/* Another live iobd answers on path: refuse to take it over. */
static bool iobd__socket_in_use(const char* path) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        return false;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        return false;
    }
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    bool used = connect(s, (struct sockaddr*)&a, sizeof a) == 0;
    close(s);
    return used;
}

static zx_status_t iobd__listen_unix(iobd_rpc_t* srv, iobd_unix_listener_t* l, const char* path) {
    l->srv = srv;
    l->path = strdup(path);
    if (l->path == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    if (strlen(path) >= sizeof(((struct sockaddr_un*)0)->sun_path)) {
        IOBD_ERROR("socket path too long: %s", path);
        return ZX_ERR_INVALID_ARGS;
    }
    /* The directory: created 0755 if missing, so clients can reach the socket. */
    char dir[sizeof(((struct sockaddr_un*)0)->sun_path)];
    snprintf(dir, sizeof dir, "%s", path);
    char* slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) == 0) {
            IOBD_INFO("created %s (0755)", dir);
        }
    }
    if (iobd__socket_in_use(path)) {
        IOBD_ERROR("%s: another server is listening there", path);
        return ZX_ERR_ADDRESS_IN_USE;
    }
    unlink(path); /* a stale socket from a server that crashed */
    if (uv_pipe_init(srv->loop, &l->pipe, 0) != 0) {
        return ZX_ERR_IO;
    }
    l->pipe.data = l;
    int r = uv_pipe_bind(&l->pipe, path);
    if (r != 0) {
        IOBD_ERROR("bind %s: %s", path, uv_strerror(r));
        uv_close((uv_handle_t*)&l->pipe, NULL);
        return r == UV_EACCES ? ZX_ERR_ACCESS_DENIED : ZX_ERR_IO;
    }
    l->bound = true;
    mode_t mode = srv->config.socket_mode != 0 ? (mode_t)srv->config.socket_mode : 0660;
    if (chmod(path, mode) != 0) {
        IOBD_ERROR("chmod %s: %s", path, strerror(errno));
        return ZX_ERR_IO;
    }
    r = uv_listen((uv_stream_t*)&l->pipe, 128, iobd__on_unix_connection);
    if (r != 0) {
        IOBD_ERROR("listen %s: %s", path, uv_strerror(r));
        return ZX_ERR_IO;
    }
    IOBD_INFO("listening on unix:%s (mode %04o)", path, (unsigned)mode);
    return ZX_OK;
}

/* A PEM file for TLS, or NULL with the reason logged. */
static char* iobd__read_file(const char* path) {
    char* text = iob_wire_read_pem(path);
    if (text == NULL) {
        IOBD_ERROR("cannot read %s: %s", path, strerror(errno));
    }
    return text;
}

static zx_status_t iobd__listen_tcp(iobd_rpc_t* srv, const char* addr) {
    const iobd_rpc_config_t* c = &srv->config;
    grpc_server_credentials* creds = NULL;
    if (c->tls_cert_file != NULL || c->tls_key_file != NULL) {
        if (c->tls_cert_file == NULL || c->tls_key_file == NULL) {
            IOBD_ERROR("TLS needs both --tls-cert and --tls-key");
            return ZX_ERR_INVALID_ARGS;
        }
        char* cert = iobd__read_file(c->tls_cert_file);
        char* key = iobd__read_file(c->tls_key_file);
        char* ca = c->tls_client_ca_file != NULL ? iobd__read_file(c->tls_client_ca_file) : NULL;
        if (cert == NULL || key == NULL || (c->tls_client_ca_file != NULL && ca == NULL)) {
            free(cert);
            free(key);
            free(ca);
            return ZX_ERR_IO;
        }
        grpc_ssl_pem_key_cert_pair kp = {key, cert};
        creds = grpc_ssl_server_credentials_create_ex(
            ca, &kp, 1,
            ca != NULL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            NULL);
        free(cert);
        free(key);
        free(ca);
        if (creds == NULL) {
            IOBD_ERROR("bad TLS certificate or key");
            return ZX_ERR_INVALID_ARGS;
        }
    } else if (c->insecure) {
        creds = grpc_insecure_server_credentials_create();
    } else {
        IOBD_ERROR("%s: TCP needs --tls-cert/--tls-key and --token, or --insecure", addr);
        return ZX_ERR_INVALID_ARGS;
    }
    /*
     * Never without the token, not even with --insecure or on loopback: a TCP caller has no
     * uid to judge it by, any local user can reach a loopback port, and TCP callers are
     * operators (they see every IOB). Plaintext with a token is allowed, with a warning.
     */
    if (srv->token == NULL) {
        grpc_server_credentials_release(creds);
        IOBD_ERROR("%s: TCP needs a bearer token (--token or --token-file)%s", addr,
                   c->insecure ? "; --insecure only drops TLS, never the token" : "");
        return ZX_ERR_INVALID_ARGS;
    }
    if (c->insecure) {
        IOBD_WARN("%s: plaintext TCP (--insecure): the bearer token travels in clear", addr);
    }
    int port = grpc_server_add_http2_port(srv->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        IOBD_ERROR("cannot listen on %s", addr);
        return ZX_ERR_ADDRESS_IN_USE;
    }
    IOBD_INFO("listening on tcp %s (port %d, %s)", addr, port,
              c->insecure ? "plaintext" : (c->tls_client_ca_file ? "mutual TLS" : "TLS"));
    return ZX_OK;
}

zx_status_t iobd__listen_all(iobd_rpc_t* srv) {
    size_t n = srv->config.listen_count;
    srv->unix_listeners = calloc(n, sizeof *srv->unix_listeners);
    if (srv->unix_listeners == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        const char* a = srv->listen[i];
        zx_status_t st;
        if (strncmp(a, "unix:", 5) == 0) {
            st = iobd__listen_unix(srv, &srv->unix_listeners[srv->unix_listener_count++], a + 5);
        } else if (strchr(a, ':') != NULL) {
            st = iobd__listen_tcp(srv, a);
        } else {
            IOBD_ERROR("bad listen address \"%s\" (unix:PATH or HOST:PORT)", a);
            st = ZX_ERR_INVALID_ARGS;
        }
        if (st != ZX_OK) {
            return st;
        }
    }
    return ZX_OK;
}

static void iobd__listener_closed(uv_handle_t* h) {
    iobd_unix_listener_t* l = h->data;
    free(l->path);
    l->path = NULL;
}

void iobd__listen_close(iobd_rpc_t* srv) {
    for (size_t i = 0; i < srv->unix_listener_count; i++) {
        iobd_unix_listener_t* l = &srv->unix_listeners[i];
        if (l->path == NULL) {
            continue;
        }
        if (l->bound) {
            unlink(l->path);
        }
        if (uv_is_active((uv_handle_t*)&l->pipe) || l->bound) {
            uv_close((uv_handle_t*)&l->pipe, iobd__listener_closed);
        } else {
            free(l->path);
            l->path = NULL;
        }
    }
}
