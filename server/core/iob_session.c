/* SPDX-License-Identifier: MIT */
/*
 * iob_core's sessions: who opened each (its credentials), the secret that proves it, the
 * map broker's attach rules, and its two-step end (the connection closes its handles; the
 * process's exit releases its mapping records).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/core/iob_core_internal.h"

iob__session_t* iob__session_live(iob_core_t* core, iob_session_id_t session) {
    iob__session_t* s = iob__idmap_get(&core->sessions, session.value);
    return (s != NULL && !s->closed) ? s : NULL;
}

zx_status_t iob_core_session_open(iob_core_t* core, const iob_session_cred_t* cred,
                                  iob_session_id_t* out, uint8_t secret_out[IOB_CORE_SECRET_SIZE]) {
    if (core == NULL || out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__session_t* session = calloc(1, sizeof *session);
    if (session == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    /* Before the lock: getrandom may wait for the entropy pool at early boot. */
    if (getrandom(session->secret, sizeof session->secret, 0) != (ssize_t)sizeof session->secret) {
        free(session);
        return ZX_ERR_NO_RESOURCES;
    }
    session->cred = cred != NULL ? *cred : (iob_session_cred_t){.uid = (uid_t)-1, .gid = (gid_t)-1};
    iob__list_init(&session->handles);
    iob__list_init(&session->mappings);
    iob__core_lock(core);
    session->id = core->next_session_id;
    zx_status_t status = iob__uid_get(core, session->cred.uid, &session->uid);
    if (status == ZX_OK) {
        status = iob__idmap_put(&core->sessions, session->id, session);
        if (status != ZX_OK) {
            iob__uid_put(core, session->uid);
        }
    }
    if (status == ZX_OK) {
        core->next_session_id++;
        *out = (iob_session_id_t){session->id};
        if (secret_out != NULL) {
            memcpy(secret_out, session->secret, sizeof session->secret);
        }
    }
    iob__core_unlock(core);
    if (status != ZX_OK) {
        explicit_bzero(session->secret, sizeof session->secret);
        free(session);
    }
    return status;
}

bool iob_core_ct_equal(const void* a, const void* b, size_t n) {
    const unsigned char* x = a;
    const unsigned char* y = b;
    volatile unsigned char diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (unsigned char)(x[i] ^ y[i]);
    }
    return diff == 0;
}

/*
 * The open session `id` if `secret` is its own, else NULL. The comparison runs even when
 * there is no such session (against zeros), so its time tells nothing.
 */
static iob__session_t* session_proven_locked(iob_core_t* core, uint64_t id,
                                             const uint8_t secret[IOB_CORE_SECRET_SIZE]) {
    static const uint8_t none[IOB_CORE_SECRET_SIZE];
    iob__session_t* s = iob__idmap_get(&core->sessions, id);
    bool match = iob_core_ct_equal(s != NULL ? s->secret : none, secret, IOB_CORE_SECRET_SIZE);
    return s != NULL && match && !s->closed ? s : NULL;
}

bool iob_core_session_verify(iob_core_t* core, uint64_t id,
                             const uint8_t secret[IOB_CORE_SECRET_SIZE]) {
    if (core == NULL || secret == NULL) {
        return false;
    }
    iob__core_lock(core);
    bool ok = session_proven_locked(core, id, secret) != NULL;
    iob__core_unlock(core);
    return ok;
}

zx_status_t iob_core_session_attach(iob_core_t* core, uint64_t id,
                                    const uint8_t secret[IOB_CORE_SECRET_SIZE],
                                    const iob_session_cred_t* peer, iob_session_id_t* out) {
    if (core == NULL || secret == NULL || peer == NULL || out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    zx_status_t status = ZX_ERR_ACCESS_DENIED;
    iob__session_t* s = session_proven_locked(core, id, secret);
    if (s != NULL && s->cred.local) {
        const char* why = NULL;
        if (!s->cred.known) {
            why = "the session's process is unknown";
        } else if (peer->uid != s->cred.uid) {
            why = "another uid";
        } else if (peer->pid != s->cred.pid) {
            why = "another process";
        }
        if (why != NULL) {
            IOB__ERR_SET(status,
                         "session %llu (pid %d uid %d) refused to pid %d uid %d gid %d: %s "
                         "(ZX_ERR_ACCESS_DENIED)",
                         (unsigned long long)id, (int)s->cred.pid, (int)s->cred.uid, (int)peer->pid,
                         (int)peer->uid, (int)peer->gid, why);
        } else {
            s->attached = true;
            *out = (iob_session_id_t){id};
            status = ZX_OK;
        }
    }
    iob__core_unlock(core);
    return status;
}

bool iob_core_session_attached(iob_core_t* core, iob_session_id_t session) {
    if (core == NULL) {
        return false;
    }
    iob__core_lock(core);
    iob__session_t* s = iob__idmap_get(&core->sessions, session.value);
    bool attached = s != NULL && s->attached;
    iob__core_unlock(core);
    return attached;
}

static void session_close_locked(iob_core_t* core, iob__session_t* session) {
    session->closed = true;
    while (!iob__list_empty(&session->handles)) {
        iob__handle_destroy(core, IOB__CONTAINER_OF(session->handles.next, iob__handle_t, link),
                            false);
    }
}

void iob__session_release(iob_core_t* core, iob__session_t* session) {
    /* A process that exited before its connection was noticed closing: close it too. */
    if (!session->closed) {
        session_close_locked(core, session);
    }
    while (!iob__list_empty(&session->mappings)) {
        iob__mapping_destroy(core, IOB__CONTAINER_OF(session->mappings.next, iob__mapping_t, link));
    }
    /*
     * IOBs, shared regions and tokens it made outlive it: they stop counting against the
     * session (their payers find no session by this id any more) but still count against
     * its uid until they go.
     */
    iob__idmap_remove(&core->sessions, session->id);
    iob__uid_put(core, session->uid);
    explicit_bzero(session->secret, sizeof session->secret);
    free(session);
}

/*
 * The session ends in two steps: close (its connection) and release (its process). `open`
 * asks for a session not closed yet; the step runs on it, or the answer is NOT_FOUND.
 */
static zx_status_t session_step(iob_core_t* core, iob_session_id_t session, bool open,
                                void (*step)(iob_core_t*, iob__session_t*)) {
    if (core == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    zx_status_t status = ZX_OK;
    iob__session_t* s = iob__idmap_get(&core->sessions, session.value);
    if (s == NULL || (open && s->closed)) {
        status = IOB__ERR_SET(ZX_ERR_NOT_FOUND, "no %ssession %llu", open ? "open " : "",
                              (unsigned long long)session.value);
    } else {
        step(core, s);
    }
    iob__core_unlock(core);
    return status;
}

zx_status_t iob_core_session_close(iob_core_t* core, iob_session_id_t session) {
    return session_step(core, session, true, session_close_locked);
}

zx_status_t iob_core_session_release_mappings(iob_core_t* core, iob_session_id_t session) {
    return session_step(core, session, false, iob__session_release);
}
