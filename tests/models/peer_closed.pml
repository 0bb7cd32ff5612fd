/* SPDX-License-Identifier: MIT */
/*
 * PEER_CLOSED accounting (docs/zircon-iob.md A.9) as server/core implements it, checked
 * exhaustively by tests/models/check.sh.
 *
 * Mirrors: the per-endpoint counters of iob__endpoint_t (handles: open handles plus tokens
 * in flight; mappings: live mapping records) and the one function that acts on them,
 * iob__endpoint_released in iob_core.c (endpoint_gone; free the IOB when the peer is gone
 * too, else raise ZX_IOB_PEER_CLOSED on the peer), called by every operation that drops a
 * handle, token or record: iob_core_handle_close and session close/release
 * (iob__handle_destroy -> iob__handle_target_released), token expiry (iob_token.c),
 * iob_core_unmap and session release (iob__mapping_destroy). The operations that keep the
 * counts: iob_core_handle_duplicate (+1 handle), iob_core_handle_replace (one handle for
 * another), iob_core_handle_export (iob__handle_destroy with keep_count: the token takes
 * the handle's place), iob_core_handle_import (the token becomes a handle), iob_core_map
 * (+1 record, needs a handle).
 *
 * Abstractions: one IOB; each operation runs whole, as the core's one mutex makes it, so a
 * single process choosing any enabled operation covers every order in which sessions can
 * issue them; sessions, rights, regions and koids are gone (a session ending is a series
 * of closes and unmaps); each endpoint holds at most 2 handles, 1 token and 2 mapping
 * records at once, which makes every case (last handle with a token left, last handle with
 * a mapping left, both endpoints emptied in either order) reachable.
 *
 * Checked (a monitor asserts them in every reachable state): PEER_CLOSED is never raised
 * on an endpoint while its peer has a handle, token or mapping left; it is raised once the
 * peer has none left (while this side still has something); the IOB is freed exactly
 * once, only when neither endpoint has anything left, and nothing touches it afterwards;
 * the core's counters equal what the holders actually hold.
 *
 * Mutations (check.sh expects spin to report an error for each):
 *   BUG_IGNORE_MAPPINGS  endpoint_gone looks at handles only
 *   BUG_TOKEN_UNCOUNTED  export drops the handle's count (no keep_count) while the token
 *                        still names the endpoint
 */

#define MAXH 2   /* handles an endpoint's holders may have open at once */
#define MAXT 1   /* tokens in flight */
#define MAXM 2   /* mapping records */

/* What holders really hold (ghost state). */
byte h[2];
byte t[2];
byte m[2];
/* The core's counters (iob__endpoint_t.handles, .mappings) and state. */
byte handles[2];
byte mappings[2];
bit peer_closed[2];
bit created;
bit freed;
byte frees;

#define HOLDS(e) (h[e] + t[e] + m[e] > 0)

/* Inline parameters are substituted as text: their names must differ from the arguments'. */
inline gone(ge, result) {
#ifdef BUG_IGNORE_MAPPINGS
    result = (handles[ge] == 0)
#else
    result = (handles[ge] == 0 && mappings[ge] == 0)
#endif
}

/* iob__endpoint_released */
inline released(re) {
    gone(re, g);
    if
    :: g ->
        gone(1 - re, g);
        if
        :: g -> assert(!freed); freed = 1; frees++
        :: else -> peer_closed[1 - re] = 1
        fi
    :: else -> skip
    fi
}

active proctype Sessions() {
    byte e;
    bit g;

    /* iob_core_iob_create: one handle to each endpoint. */
    atomic { h[0] = 1; h[1] = 1; handles[0] = 1; handles[1] = 1; created = 1 }
    do
    :: freed -> break
    :: else ->
        /* Any endpoint whose holders hold something; then any operation they can make. */
        if
        :: HOLDS(0) -> e = 0
        :: HOLDS(1) -> e = 1
        fi;
        atomic {
            if
            :: h[e] > 0 && h[e] < MAXH ->          /* duplicate */
                assert(!freed); h[e]++; handles[e]++
            :: h[e] > 0 ->                          /* replace: same count */
                assert(!freed)
            :: h[e] > 0 ->                          /* close (or the session ends) */
                assert(!freed); h[e]--; handles[e]--; released(e)
            :: h[e] > 0 && t[e] < MAXT ->           /* export */
                assert(!freed); h[e]--; t[e]++;
#ifdef BUG_TOKEN_UNCOUNTED
                handles[e]--; released(e)
#else
                skip
#endif
            :: t[e] > 0 && h[e] < MAXH ->           /* import */
                assert(!freed); t[e]--; h[e]++;
#ifdef BUG_TOKEN_UNCOUNTED
                handles[e]++
#else
                skip
#endif
            :: t[e] > 0 ->                          /* the token expires */
                assert(!freed); t[e]--;
#ifdef BUG_TOKEN_UNCOUNTED
                skip
#else
                handles[e]--; released(e)
#endif
            :: h[e] > 0 && m[e] < MAXM ->           /* map */
                assert(!freed); m[e]++; mappings[e]++
            :: m[e] > 0 ->                          /* unmap (or the process exits) */
                assert(!freed); m[e]--; mappings[e]--; released(e)
            fi
        }
    od;
    assert(frees == 1)
}

#define P_FREED_ONCE (frees <= 1 && freed == (!HOLDS(0) && !HOLDS(1)))
#define P_NOT_EARLY ((!peer_closed[0] || !HOLDS(1)) && (!peer_closed[1] || !HOLDS(0)))
#define P_NOT_LATE ((HOLDS(1) || !HOLDS(0) || peer_closed[0]) && \
                    (HOLDS(0) || !HOLDS(1) || peer_closed[1]))
#define P_COUNTS (freed || (handles[0] == h[0] + t[0] && handles[1] == h[1] + t[1] && \
                            mappings[0] == m[0] && mappings[1] == m[1]))
/*
 * The invariant, in every state after the create: the IOB freed at most once, and exactly
 * when nobody holds anything; PEER_CLOSED never raised while the peer still holds
 * something; raised once the peer holds nothing (and this side something); the core's
 * counters are the truth while the IOB exists.
 */
#define INVARIANT (!created || (P_FREED_ONCE && P_NOT_EARLY && P_NOT_LATE && P_COUNTS))

/* Waits for a state that breaks the invariant; none may exist. */
active proctype Monitor() {
end:
    /* One assertion per property, so that a failure names the one that broke. */
    atomic {
        !INVARIANT ->
        assert(P_FREED_ONCE); assert(P_NOT_EARLY); assert(P_NOT_LATE); assert(P_COUNTS)
    }
}
