/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes request decoding and the core's validation through iobd's real handlers: each
 * request's bytes become a gRPC byte buffer (in one slice or two) that
 * server/rpc/rpc_handlers.c unpacks with iob_wire_unpack, translates and hands to a real
 * iob_core_t (fuzz_rpc_fixture.h). The call and session plumbing of rpc_server.c is
 * replaced here by stand-ins that record how each call ended and pack its reply.
 *
 * Input: a sequence of operations, each one byte, then its arguments:
 *   a method of iob.v1.Iob   u16 length, that many bytes: the request message (WriteRegion:
 *                            then u8 n and n more length-prefixed messages, then half-close)
 *   MAP                      u8 handle slot, u32 options, u8 region, u64 offset, u64 len:
 *                            the map broker's iob_core_map_dup (the fd is closed at once)
 *   UNMAP                    u8 slot of a mapping made before
 *   CLOCK                    the clock jumps past the token TTL; expired tokens go
 *   SESSION                  further requests come from the other session
 *
 * Checked: every call ends exactly once, with a reply only on ZX_OK, and the reply packs
 * (protobuf_c_message_check); at the end, after both sessions end and every token expires,
 * the core holds nothing (no IOB, shared region, handle, mapping, token or accounted
 * byte: A.9's accounting balanced), no descriptor is left open, and ASan's leak check
 * finds nothing.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

#include "fuzz/fuzz_input.h"
#include "fuzz/fuzz_rpc_fixture.h"
#include "server/rpc/rpc_internal.h"

#define FZ_MAX_OPS 48
#define FZ_MAX_MAPPINGS 16
#define FZ_MAX_READ_CHUNKS 8

enum { PSEUDO_MAP, PSEUDO_UNMAP, PSEUDO_CLOCK, PSEUDO_SESSION, PSEUDO_COUNT };

/* The call in progress (one at a time: the handlers never keep one across requests). */
static struct {
    bool finished;
    int finishes;
    bool recv_armed;
    bool close_chain;
    iob_session_id_t session;
} fz_call;

/* ---- rpc_server.c's side, as the handlers see it ------------------------------------- */

static void fz_check_message(const ProtobufCMessage* msg) {
    FZ_CHECK(protobuf_c_message_check(msg));
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t* buf = malloc(n > 0 ? n : 1);
    FZ_CHECK(buf != NULL);
    FZ_CHECK(protobuf_c_message_pack(msg, buf) == n);
    free(buf);
}

void iobd__call_finish_code(iobd_call_t* c, zx_status_t status, grpc_status_code code,
                            const ProtobufCMessage* reply, const char* detail) {
    (void)code;
    /* FZ_RPC_TRACE=1 prints how each call ended (to see what a seed reaches). */
    static int trace = -1;
    if (trace < 0) {
        trace = getenv("FZ_RPC_TRACE") != NULL;
    }
    if (trace) {
        fprintf(stderr, "fuzz_rpc: %s -> %d %s\n", iob_wire_method_path(c->method), (int)status,
                detail != NULL ? detail : "");
    }
    FZ_CHECK(!fz_call.finished);
    /* A reply travels only with success (iob.proto: errors are the status alone). */
    FZ_CHECK(reply == NULL || status == ZX_OK);
    if (reply != NULL) {
        fz_check_message(reply);
    }
    fz_call.finished = true;
    fz_call.finishes++;
}

void iobd__call_finish(iobd_call_t* c, zx_status_t status, const ProtobufCMessage* reply,
                       const char* detail) {
    iobd__call_finish_code(c, status, iob_wire_grpc_code(status), reply, detail);
}

void iobd__call_add_trailer(iobd_call_t* c, const char* key, uint64_t value) {
    (void)c;
    (void)value;
    FZ_CHECK(key != NULL && !fz_call.finished);
}

bool iobd__call_send(iobd_call_t* c, const ProtobufCMessage* msg) {
    (void)c;
    FZ_CHECK(!fz_call.finished);
    fz_check_message(msg);
    return true;
}

bool iobd__call_start_close_chain(iobd_call_t* c) {
    (void)c;
    fz_call.close_chain = true;
    return true;
}

bool iobd__call_recv(iobd_call_t* c) {
    (void)c;
    fz_call.recv_armed = true;
    return true;
}

zx_status_t iobd__call_session(iobd_call_t* c, uint64_t* session_out) {
    (void)c;
    *session_out = fz_call.session.value;
    return ZX_OK;
}

zx_status_t iobd__session_set_events(iobd_rpc_t* srv, uint64_t session_id, bool enabled) {
    (void)srv;
    (void)session_id;
    (void)enabled;
    return ZX_OK;
}

/*
 * Who is asking: sessions with odd ids are operators, even ones an ordinary local uid that
 * sees only what it holds (the fuzzer's second session reaches the non-operator paths).
 */
bool iobd__call_is_operator(iobd_rpc_t* srv, const iobd_call_t* c) {
    (void)srv;
    (void)c;
    return (fz_call.session.value & 1u) != 0;
}

bool iobd__peer_cred(iobd_rpc_t* srv, const char* peer, iobd_cred_t* out) {
    (void)srv;
    (void)peer;
    memset(out, 0, sizeof *out);
    out->valid = true;
    out->uid = 65534;
    out->gid = 65534;
    return true;
}

void iobd__uid_figures(iobd_rpc_t* srv, uid_t uid, uint64_t* sessions, uint64_t* handles) {
    (void)srv;
    (void)uid;
    *sessions = 1;
    *handles = 0;
}

/* ---- the driver ---------------------------------------------------------------------- */

/* A request's bytes as gRPC delivers them: one slice, or split in two at `split`. */
static grpc_byte_buffer* fz_payload(const uint8_t* bytes, size_t len, size_t split) {
    grpc_slice s[2];
    size_t n = 1;
    if (split > 0 && split < len) {
        s[0] = grpc_slice_from_copied_buffer((const char*)bytes, split);
        s[1] = grpc_slice_from_copied_buffer((const char*)bytes + split, len - split);
        n = 2;
    } else {
        s[0] = grpc_slice_from_copied_buffer((const char*)bytes, len);
    }
    grpc_byte_buffer* bb = grpc_raw_byte_buffer_create(s, n);
    for (size_t i = 0; i < n; i++) {
        grpc_slice_unref(s[i]);
    }
    return bb;
}

static grpc_byte_buffer* fz_next_payload(fz_in_t* in) {
    size_t want = fz_u16(in) % 4096u;
    size_t len = 0;
    const uint8_t* bytes = fz_bytes(in, want, &len);
    size_t split = fz_u8(in);
    return fz_payload(bytes, len, split);
}

static void fz_request(iobd_rpc_t* srv, unsigned method, fz_in_t* in) {
    iobd_call_t* c = calloc(1, sizeof *c);
    FZ_CHECK(c != NULL);
    c->srv = srv;
    c->method = method;
    c->session_id = fz_call.session.value;
    fz_call.finished = false;
    fz_call.finishes = 0;
    fz_call.recv_armed = false;
    fz_call.close_chain = false;
    if (method != IOB_WIRE_M_WRITE_REGION) {
        c->payload = fz_next_payload(in);
    }
    iobd__dispatch_new(c);
    if (method == IOB_WIRE_M_READ_REGION && fz_call.close_chain) {
        for (int i = 0; i < FZ_MAX_READ_CHUNKS && !fz_call.finished; i++) {
            iobd__read_continue(c);
        }
    }
    if (method == IOB_WIRE_M_WRITE_REGION) {
        FZ_CHECK(fz_call.recv_armed && !fz_call.finished);
        unsigned n = 1u + fz_u8(in) % 4u;
        for (unsigned i = 0; i < n && !fz_call.finished; i++) {
            fz_call.recv_armed = false;
            iobd__write_continue(c, fz_next_payload(in));
            FZ_CHECK(fz_call.finished != fz_call.recv_armed);
        }
        if (!fz_call.finished) {
            iobd__write_continue(c, NULL); /* the client half-closed */
        }
    }
    FZ_CHECK(fz_call.finished && fz_call.finishes == 1);
    if (c->payload != NULL) {
        grpc_byte_buffer_destroy(c->payload);
    }
    free(c);
}

typedef struct fz_state {
    fz_rpc_world_t w;
    iob_mapping_id_t maps[FZ_MAX_MAPPINGS];
    iob_session_id_t map_session[FZ_MAX_MAPPINGS];
    size_t n_maps;
} fz_state_t;

static void fz_map(fz_state_t* s, fz_in_t* in) {
    const zx_handle_t known[] = {s->w.plain_ep0, s->w.plain_ep1, s->w.shared, s->w.ring_ep0,
                                 s->w.ring_ep1};
    uint8_t slot = fz_u8(in);
    zx_handle_t h = slot < 5 ? known[slot] : (zx_handle_t)fz_u32(in);
    zx_vm_option_t options = fz_u32(in);
    uint32_t region = fz_u8(in) % 4u;
    uint64_t offset = fz_u64(in);
    uint64_t len = fz_u64(in);
    iob_map_grant_t grant;
    zx_status_t st = iob_core_map_dup(s->w.core, fz_call.session, h, options, region, offset, len,
                                      &grant);
    if (st != ZX_OK) {
        return;
    }
    FZ_CHECK(grant.fd >= 0);
    close(grant.fd);
    if (s->n_maps < FZ_MAX_MAPPINGS) {
        s->maps[s->n_maps] = grant.mapping;
        s->map_session[s->n_maps] = fz_call.session;
        s->n_maps++;
    } else {
        FZ_CHECK(iob_core_unmap(s->w.core, fz_call.session, grant.mapping) == ZX_OK);
    }
}

static void fz_unmap(fz_state_t* s, fz_in_t* in) {
    if (s->n_maps == 0) {
        return;
    }
    size_t i = fz_u8(in) % s->n_maps;
    /* By the session that made it; a second unmap of the same record is refused. */
    iob_session_id_t who = s->map_session[i];
    FZ_CHECK(iob_core_unmap(s->w.core, who, s->maps[i]) == ZX_OK);
    FZ_CHECK(iob_core_unmap(s->w.core, who, s->maps[i]) != ZX_OK);
    s->maps[i] = s->maps[--s->n_maps];
    s->map_session[i] = s->map_session[s->n_maps];
}

static int fz_count_fds(void) {
    DIR* d = opendir("/proc/self/fd");
    FZ_CHECK(d != NULL);
    int n = 0;
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    int fds_before = fz_count_fds();
    fz_in_t in = {bytes, size, 0};
    fz_state_t* s = calloc(1, sizeof *s);
    iobd_rpc_t* srv = calloc(1, sizeof *srv);
    FZ_CHECK(s != NULL && srv != NULL);
    fz_rpc_world_init(&s->w);
    srv->core = s->w.core;
    fz_call.session = s->w.a;

    for (int i = 0; i < FZ_MAX_OPS && fz_more(&in); i++) {
        unsigned op = fz_u8(&in) % (IOB_WIRE_M_COUNT + PSEUDO_COUNT);
        if (op < IOB_WIRE_M_COUNT) {
            fz_request(srv, op, &in);
            continue;
        }
        switch (op - IOB_WIRE_M_COUNT) {
        case PSEUDO_MAP:
            fz_map(s, &in);
            break;
        case PSEUDO_UNMAP:
            fz_unmap(s, &in);
            break;
        case PSEUDO_CLOCK:
            s->w.now += FZ_RPC_TOKEN_TTL_NS + 1;
            iob_core_expire_tokens(s->w.core);
            break;
        case PSEUDO_SESSION:
            fz_call.session = fz_call.session.value == s->w.a.value ? s->w.b : s->w.a;
            break;
        default:
            break;
        }
    }

    /* Both processes go away, every token expires: nothing may stay behind. */
    FZ_CHECK(iob_core_session_release_mappings(s->w.core, s->w.a) == ZX_OK);
    FZ_CHECK(iob_core_session_release_mappings(s->w.core, s->w.b) == ZX_OK);
    s->w.now += FZ_RPC_TOKEN_TTL_NS + 1;
    iob_core_expire_tokens(s->w.core);
    iob_core_stats_t st;
    iob_core_get_stats(s->w.core, &st);
    FZ_CHECK(st.iobs == 0 && st.shared_regions == 0 && st.handles == 0 && st.mappings == 0 &&
             st.tokens == 0 && st.bytes_in_use == 0 && st.sessions == 0);
    iob_core_destroy(s->w.core);
    free(srv);
    free(s);
    FZ_CHECK(fz_count_fds() == fds_before);
    return 0;
}
