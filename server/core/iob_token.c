/* SPDX-License-Identifier: MIT */
/*
 * Transfer tokens (docs/zircon-iob.md L, "Transfer"): the stand-in for a handle in flight in a
 * Zircon channel. A token holds its endpoint like a handle does (it counts in the
 * endpoint's handles, so the peer sees no PEER_CLOSED) whatever happens to the exporting
 * session, until it is imported once or its time-to-live passes.
 *
 * Token text: "iob1." and 24 bytes from getrandom in base64url (192 bits, 37 characters).
 * Import finds the token through an index keyed by a hash of the text under a per-core
 * secret key (so a lookup costs the same with one token or a million), then compares the
 * full fixed size without an early exit: timing reveals nothing about how much of a guess
 * was right. Outstanding tokens are charged to the exporting session and uid until they are
 * imported or expire, so a client cannot park an unbounded number of them in the server.
 * All tokens share one time-to-live, so creation order is expiry order and expiring costs
 * only the tokens that expire.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/core/iob_core_internal.h"

#define IOB__TOKEN_PREFIX "iob1."
#define IOB__TOKEN_RANDOM_BYTES 24

_Static_assert(sizeof(IOB__TOKEN_PREFIX) - 1 + (IOB__TOKEN_RANDOM_BYTES / 3) * 4 <
                   IOB_CORE_TOKEN_SIZE,
               "a token and its NUL fit IOB_CORE_TOKEN_SIZE");

static zx_status_t random_bytes(uint8_t* out, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(out + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return iob_status_from_errno(errno);
        }
        got += (size_t)n;
    }
    return ZX_OK;
}

static zx_status_t token_generate(char text[IOB_CORE_TOKEN_SIZE]) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[IOB__TOKEN_RANDOM_BYTES];
    zx_status_t status = random_bytes(raw, sizeof raw);
    if (status != ZX_OK) {
        return status;
    }
    memset(text, 0, IOB_CORE_TOKEN_SIZE);
    size_t n = sizeof(IOB__TOKEN_PREFIX) - 1;
    memcpy(text, IOB__TOKEN_PREFIX, n);
    for (size_t i = 0; i < sizeof raw; i += 3) {
        uint32_t v = ((uint32_t)raw[i] << 16) | ((uint32_t)raw[i + 1] << 8) | raw[i + 2];
        text[n++] = alphabet[(v >> 18) & 63];
        text[n++] = alphabet[(v >> 12) & 63];
        text[n++] = alphabet[(v >> 6) & 63];
        text[n++] = alphabet[v & 63];
    }
    return ZX_OK;
}

/* A keyed hash of the whole fixed-size text; never 0 (the index's free-slot key). */
static uint64_t token_key(const iob_core_t* core, const char text[IOB_CORE_TOKEN_SIZE]) {
    uint64_t h = core->token_hash_key[0];
    for (size_t i = 0; i < IOB_CORE_TOKEN_SIZE; i += 8) {
        uint64_t word;
        memcpy(&word, text + i, sizeof word);
        h ^= word + core->token_hash_key[1];
        h *= UINT64_C(0x9E3779B97F4A7C15);
        h ^= h >> 29;
    }
    h ^= h >> 32;
    h *= UINT64_C(0xD6E8FEB86659FD93);
    h ^= h >> 32;
    return h != 0 ? h : 1;
}

static bool token_equal(const char a[IOB_CORE_TOKEN_SIZE], const char b[IOB_CORE_TOKEN_SIZE]) {
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < IOB_CORE_TOKEN_SIZE; i++) {
        diff |= (uint8_t)(a[i] ^ b[i]);
    }
    return diff == 0;
}

/* The token is gone: its endpoint loses the handle it stood for. */
static void token_destroy(iob_core_t* core, iob__token_t* token, bool keep_count) {
    iob__endpoint_t* ep = token->ep;
    iob__shared_region_t* shared = token->shared;
    iob__list_remove(&token->link);
    iob__idmap_remove(&core->token_index, token->key);
    iob__usage_t one = iob__amount(IOB__RES_TOKENS, 1);
    iob__budget_release(core, &token->payer, &one);
    core->token_count--;
    /* Wipe it, so a freed token's bytes cannot be found in memory. */
    memset(token->text, 0, sizeof token->text);
    free(token);
    if (!keep_count) {
        iob__handle_target_released(core, ep, shared);
    }
}

void iob__tokens_destroy_all(iob_core_t* core) {
    while (!iob__list_empty(&core->tokens)) {
        token_destroy(core, IOB__CONTAINER_OF(core->tokens.next, iob__token_t, link), false);
    }
}

static bool token_expired(const iob__token_t* token, int64_t now) {
    return now >= token->expires_ns;
}

static int64_t deadline_after(int64_t now, uint64_t ttl_ns) {
    int64_t ttl = ttl_ns > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)ttl_ns;
    return now > INT64_MAX - ttl ? INT64_MAX : now + ttl;
}

zx_status_t iob_core_handle_export(iob_core_t* core, iob_session_id_t session, zx_handle_t handle,
                                   char token_out[IOB_CORE_TOKEN_SIZE]) {
    if (core == NULL || token_out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__core_lock(core);
    iob__handle_t* h = NULL;
    zx_status_t status =
        iob__handle_get(core, session, handle, ZX_OBJ_TYPE_NONE, ZX_RIGHT_TRANSFER, &h);
    if (status != ZX_OK) {
        goto done;
    }
    if (h == NULL) {
        /* Every process has its own root VMAR: there is nothing to move to another one. */
        status = IOB__ERR_SET(ZX_ERR_NOT_SUPPORTED, "the root VMAR cannot be exported");
        goto done;
    }
    iob__token_t* token = calloc(1, sizeof *token);
    if (token == NULL || iob__idmap_reserve(&core->token_index, 1) != ZX_OK) {
        free(token);
        status = ZX_ERR_NO_MEMORY;
        goto done;
    }
    /* The key must be unique in the index; a clash of 64-bit keys just draws again. */
    do {
        status = token_generate(token->text);
        token->key = token_key(core, token->text);
    } while (status == ZX_OK && iob__idmap_get(&core->token_index, token->key) != NULL);
    if (status != ZX_OK) {
        free(token);
        IOB__ERR_SET(status, "getrandom failed");
        goto done;
    }
    /* The session pays for the token until it is imported or expires (not the importer). */
    iob__usage_t one = iob__amount(IOB__RES_TOKENS, 1);
    status = iob__budget_charge(core, h->session, &one, &token->payer);
    if (status != ZX_OK) {
        free(token);
        goto done;
    }
    int64_t now = iob__now_ns(core);
    token->ep = h->ep;
    token->shared = h->shared;
    token->rights = h->rights;
    token->expires_ns = deadline_after(now, core->token_ttl_ns);
    iob__list_push_back(&core->tokens, &token->link);
    if (iob__idmap_put(&core->token_index, token->key, token) != ZX_OK) {
        abort(); /* room was reserved above */
    }
    core->token_count++;
    memcpy(token_out, token->text, IOB_CORE_TOKEN_SIZE);
    /* The token takes the handle's place in the endpoint's count. */
    iob__handle_destroy(core, h, true);
done:
    iob__core_unlock(core);
    return status;
}

zx_status_t iob_core_handle_import(iob_core_t* core, iob_session_id_t session, const char* token,
                                   zx_handle_t* out) {
    if (core == NULL || token == NULL || out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    char wanted[IOB_CORE_TOKEN_SIZE];
    memset(wanted, 0, sizeof wanted);
    size_t len = strnlen(token, IOB_CORE_TOKEN_SIZE);
    if (len < IOB_CORE_TOKEN_SIZE) {
        memcpy(wanted, token, len);
    }

    iob__core_lock(core);
    zx_status_t status = ZX_OK;
    iob__token_t* found = NULL;
    if (len > 0 && len < IOB_CORE_TOKEN_SIZE) {
        iob__token_t* t = iob__idmap_get(&core->token_index, token_key(core, wanted));
        if (t != NULL && token_equal(t->text, wanted)) {
            found = t;
        }
    }
    if (found != NULL && token_expired(found, iob__now_ns(core))) {
        token_destroy(core, found, false);
        found = NULL;
    }
    if (found == NULL) {
        status = IOB__ERR_SET(ZX_ERR_NOT_FOUND, "unknown, used or expired token");
        goto done;
    }
    /* A failure below leaves the token in place, so the importer may try again. */
    iob__session_t* s = iob__session_live(core, session);
    if (s == NULL) {
        status = IOB__ERR_SET(ZX_ERR_BAD_STATE, "session %llu is not open",
                              (unsigned long long)session.value);
        goto done;
    }
    iob__handle_t* h = NULL;
    status = iob__handle_alloc(core, s, &h);
    if (status != ZX_OK) {
        goto done;
    }
    h->rights = found->rights;
    h->ep = found->ep;
    h->shared = found->shared;
    token_destroy(core, found, true);
    iob__handle_install(core, s, h);
    *out = h->value;
done:
    memset(wanted, 0, sizeof wanted);
    iob__core_unlock(core);
    return status;
}

void iob_core_expire_tokens(iob_core_t* core) {
    if (core == NULL) {
        return;
    }
    iob__core_lock(core);
    int64_t now = iob__now_ns(core);
    uint64_t expired = 0;
    while (!iob__list_empty(&core->tokens)) {
        iob__token_t* t = IOB__CONTAINER_OF(core->tokens.next, iob__token_t, link);
        if (!token_expired(t, now)) {
            break; /* every later token expires later */
        }
        token_destroy(core, t, false);
        expired++;
    }
    iob__core_unlock(core);
    if (expired > 0) {
        iob_metrics_tokens_expired(expired);
    }
}
