/* SPDX-License-Identifier: MIT */
/*
 * The one translation of a mediated request into core calls, for every transport that
 * carries one (the gRPC adapter, the map broker's datagrams and its mediator's channels).
 *
 * A client sends what its process could read of zx_iob_writev's, zx_iob_allocate_id's and
 * the token import's arguments, plus the bytes it could read. Each adapter decodes its own
 * wire form into the descriptions below (checking only what is particular to that form);
 * these functions check that the description and the bytes agree, rebuild the core's NULL
 * conventions (iob_core.h: what could not be read is NULL, so the core reports it at its
 * step of Zircon's order) and make the core call. A description that disagrees with its
 * bytes is malformed: the client library never sends one, so no Zircon order applies and
 * the adapter answers it as its wire's malformed request.
 */
#ifndef IOB_SERVER_CORE_IOB_REQUEST_H_
#define IOB_SERVER_CORE_IOB_REQUEST_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/core/iob_core.h"

/* The most vectors a writev request describes (Zircon's limit; more stop the core early). */
#define IOB_REQUEST_MAX_VECTORS 8u

/* One vector of zx_iob_writev as the caller's process found it. */
typedef struct iob_request_vec {
    uint64_t capacity;
    bool readable; /* its buffer could be read: `capacity` of its bytes are in the data */
} iob_request_vec_t;

typedef struct iob_writev_request {
    zx_handle_t handle;
    uint64_t options;
    uint32_t region_index;
    uint64_t num_vectors;    /* as the caller passed it */
    bool vectors_unreadable; /* the iovec array itself could not be read */
    /*
     * The vectors sent: num_vectors of them when the array was readable and num_vectors is
     * at most IOB_REQUEST_MAX_VECTORS, else none.
     */
    const iob_request_vec_t* vecs;
    size_t vec_count;
    /* The readable vectors' bytes, back to back. */
    const void* data;
    size_t data_len;
} iob_writev_request_t;

/*
 * NULL and the core's status in *status (core NULL: only the checks, *status untouched), or
 * why the request is malformed (nothing ran).
 */
const char* iob_request_writev(iob_core_t* core, iob_session_id_t session,
                               const iob_writev_request_t* req, zx_status_t* status);

typedef struct iob_allocate_id_request {
    zx_handle_t handle;
    uint32_t options;
    uint32_t region_index;
    uint64_t blob_size;   /* as the caller passed it */
    bool blob_unreadable; /* the blob could not be read: no bytes sent */
    bool id_null;         /* the caller's id out-pointer is NULL */
    const void* blob;     /* the bytes sent: blob_size of them unless blob_unreadable */
    size_t blob_len;
} iob_allocate_id_request_t;

/*
 * NULL and the core's status in *status (and the ID in *id), or why it is malformed. A NULL
 * core only checks.
 */
const char* iob_request_allocate_id(iob_core_t* core, iob_session_id_t session,
                                    const iob_allocate_id_request_t* req, uint32_t* id,
                                    zx_status_t* status);

/*
 * Imports a token sent as `len` bytes that need not end in a NUL (a fixed-size field, or
 * a string): at most IOB_CORE_TOKEN_SIZE of them count, so an over-long token is simply
 * one that is not found, however it travelled.
 */
zx_status_t iob_request_import(iob_core_t* core, iob_session_id_t session, const char* token,
                               size_t len, zx_handle_t* out);

#endif /* IOB_SERVER_CORE_IOB_REQUEST_H_ */
