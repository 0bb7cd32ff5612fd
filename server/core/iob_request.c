/* SPDX-License-Identifier: MIT */
/* The one translation of mediated requests into core calls (iob_request.h). */
#include "server/core/iob_request.h"

#include <string.h>

#include "shm/mediated.h"

_Static_assert(IOB_REQUEST_MAX_VECTORS == IOB_MWRB_MAX_VECTORS, "Zircon's writev limit");

const char* iob_request_writev(iob_core_t* core, iob_session_id_t session,
                               const iob_writev_request_t* req, zx_status_t* status) {
    size_t expect = 0;
    if (!req->vectors_unreadable && req->num_vectors <= IOB_REQUEST_MAX_VECTORS) {
        expect = (size_t)req->num_vectors;
    }
    if (req->vec_count != expect) {
        return "the vectors sent are not the num_vectors the caller could read";
    }
    zx_iovec_t vecs[IOB_REQUEST_MAX_VECTORS];
    const unsigned char* data = req->data;
    size_t off = 0;
    for (size_t i = 0; i < expect; i++) {
        const iob_request_vec_t* v = &req->vecs[i];
        if (v->readable && v->capacity > req->data_len - off) {
            return "data is shorter than the readable capacities";
        }
        vecs[i].buffer = v->readable && v->capacity > 0 ? (void*)(uintptr_t)(data + off) : NULL;
        vecs[i].capacity = (size_t)v->capacity;
        off += v->readable ? (size_t)v->capacity : 0u;
    }
    if (off != req->data_len) {
        return "data is longer than the readable capacities";
    }
    if (core != NULL) {
        /* No array when none was sent: the core then never reads entries that were not. */
        *status = iob_core_iob_writev(core, session, req->handle, req->options, req->region_index,
                                      expect > 0 ? vecs : NULL, (size_t)req->num_vectors);
    }
    return NULL;
}

const char* iob_request_allocate_id(iob_core_t* core, iob_session_id_t session,
                                    const iob_allocate_id_request_t* req, uint32_t* id,
                                    zx_status_t* status) {
    if (req->blob_unreadable ? req->blob_len != 0 : req->blob_len != req->blob_size) {
        return "the blob sent is not the blob_size bytes the caller could read";
    }
    if (core == NULL) {
        return NULL;
    }
    const void* blob = req->blob_unreadable || req->blob_len == 0 ? NULL : req->blob;
    *status = iob_core_iob_allocate_id(core, session, req->handle, req->options, req->region_index,
                                       blob, req->blob_size, req->id_null ? NULL : id);
    return NULL;
}

zx_status_t iob_request_import(iob_core_t* core, iob_session_id_t session, const char* token,
                               size_t len, zx_handle_t* out) {
    /* One byte more than a token holds: a longer one keeps IOB_CORE_TOKEN_SIZE bytes. */
    char text[IOB_CORE_TOKEN_SIZE + 1];
    size_t n = len < IOB_CORE_TOKEN_SIZE ? len : IOB_CORE_TOKEN_SIZE;
    if (n > 0) {
        memcpy(text, token, n);
    }
    text[n] = '\0';
    zx_status_t st = iob_core_handle_import(core, session, text, out);
    explicit_bzero(text, sizeof text);
    return st;
}
