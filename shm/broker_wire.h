/* SPDX-License-Identifier: MIT */
/*
 * Wire format of the map broker (server/broker/broker.h), shared by iobd and libiob.
 *
 * One message is one SOCK_SEQPACKET datagram: a header followed by a type-specific body,
 * fixed-width fields, little-endian, naturally aligned, no pointers. The receiver checks
 * that the datagram's size equals the size of its type exactly; anything else is a
 * protocol error, answered (by the server) with an ERROR reply and never trusted.
 *
 * Requests go client -> server; every request gets exactly one reply with the same
 * request_id. A MAP reply with status ZX_OK carries exactly one file descriptor
 * (SCM_RIGHTS); no other message carries any, and a server closes every fd a client sends.
 *
 * Versioning: `version` is IOB_BROKER_WIRE_VERSION. A server answers a request of another
 * version, of a type it does not know, or of the wrong size with an ERROR reply (status
 * ZX_ERR_NOT_SUPPORTED or ZX_ERR_INVALID_ARGS) in its own version and does nothing else;
 * when it could not read the request's header, the ERROR's request_id is 0. A client has
 * one request in flight per connection, so it takes that ERROR as the answer to it, and
 * lets gRPC do what the broker did not.
 *
 * Mediated operations (WRITEV, ALLOCATE_ID) are the only messages of variable size: a
 * fixed part whose size is exact, then the caller's bytes, whose length the fixed part
 * determines exactly. They can be up to IOB_BROKER_MAX_MEDIATED_MSG bytes, so both ends
 * make sure their socket buffers hold one (SO_SNDBUF, SO_RCVBUF).
 * `layout` in each fixed part is IOB_BROKER_MEDIATED_LAYOUT: a server answers any other
 * layout with ERROR (ZX_ERR_NOT_SUPPORTED), so these bodies can change without touching
 * the other messages' version.
 */
#ifndef IOB_SHM_BROKER_WIRE_H_
#define IOB_SHM_BROKER_WIRE_H_

#include <stddef.h>
#include <stdint.h>

#include <zircon/types.h>

/* Structs are sent as they lie in memory: only little-endian hosts speak this format. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "broker wire format is little-endian");

#define IOB_BROKER_WIRE_VERSION 1u
#define IOB_BROKER_SECRET_SIZE 16u
/*
 * Every valid fixed-size message is at most this long; receive buffers for replies may be
 * exactly this size + 1. Mediated requests are longer (IOB_BROKER_MAX_MEDIATED_MSG).
 */
#define IOB_BROKER_MAX_MSG 80u
/* A token with its terminating NUL, as IOB_CORE_TOKEN_SIZE and IOB_TOKEN_SIZE. */
#define IOB_BROKER_TOKEN_SIZE 64u

enum {
    /* Replies have the high bit set: reply type = request type | IOB_BROKER_REPLY. */
    IOB_BROKER_REPLY = 0x8000u,

    /* Binds the connection to a session. Body: iob_broker_attach_req_t. */
    IOB_BROKER_ATTACH = 1u,
    /* Asks for a mapping. Body: iob_broker_map_req_t. Needs an attached connection. */
    IOB_BROKER_MAP = 2u,
    /* Reports that a mapping ended. Body: iob_broker_unmap_req_t. Needs attachment. */
    IOB_BROKER_UNMAP = 3u,
    /*
     * Imports a transfer token into the attached session (iob_handle_import without a
     * gRPC call: the importer needs this connection to map anyway). Body:
     * iob_broker_import_req_t; reply iob_broker_import_reply_t. Needs attachment.
     */
    IOB_BROKER_IMPORT = 4u,
    /*
     * zx_iob_writev through iobd without a gRPC call. Body: iob_broker_writev_req_t then
     * the readable vectors' bytes; reply iob_broker_status_reply_t (the core's status).
     * Needs attachment.
     */
    IOB_BROKER_WRITEV = 5u,
    /*
     * zx_iob_allocate_id. Body: iob_broker_allocate_id_req_t then the blob; reply
     * iob_broker_allocate_id_reply_t. Needs attachment.
     */
    IOB_BROKER_ALLOCATE_ID = 6u,
    /*
     * Asks for the connection's mediated request channel (shm/mediated_channel.h). Body:
     * iob_broker_channel_req_t; reply iob_broker_channel_reply_t, with three fds on ZX_OK.
     * Needs attachment; one per connection.
     */
    IOB_BROKER_CHANNEL = 7u,
    /*
     * zx_iob_writev whose iovec array and buffers were all read (what a logger sends): the
     * buffers' bytes concatenated, without a vector table. Body:
     * iob_broker_writev_packed_req_t then the bytes; reply iob_broker_status_reply_t, as
     * WRITEV's. Needs attachment.
     */
    IOB_BROKER_WRITEV_PACKED = 8u,

    /*
     * The server could not parse the request (wrong size, unknown type, wrong version) or
     * the request is not allowed in this state. Body: iob_broker_status_reply_t. The
     * request_id echoes the request's when its header could be read, else 0.
     */
    IOB_BROKER_ERROR = IOB_BROKER_REPLY | 0x7fffu,
};

typedef struct iob_broker_hdr {
    uint16_t version;    /* IOB_BROKER_WIRE_VERSION */
    uint16_t type;       /* IOB_BROKER_* */
    uint32_t size;       /* whole message in bytes, header included */
    uint64_t request_id; /* chosen by the client, echoed in the reply */
} iob_broker_hdr_t;

typedef struct iob_broker_attach_req {
    iob_broker_hdr_t hdr;
    uint64_t session_id;
    uint8_t secret[IOB_BROKER_SECRET_SIZE];
} iob_broker_attach_req_t;

/* Reply to ATTACH and UNMAP, and the ERROR message. */
typedef struct iob_broker_status_reply {
    iob_broker_hdr_t hdr;
    int32_t status; /* zx_status_t */
    uint32_t reserved;
} iob_broker_status_reply_t;

/* MAP flags. */
enum {
    /*
     * Run every check and create no mapping: the server calls iob_core_map and at once
     * iob_core_unmap, and sends no fd. The client uses it when its own checks already
     * failed, to learn whether one of the server's earlier checks wins (A.4's order).
     */
    IOB_BROKER_MAP_CHECK_ONLY = 1u << 0,
};

typedef struct iob_broker_map_req {
    iob_broker_hdr_t hdr;
    uint32_t handle;        /* zx_handle_t of the attached session */
    uint32_t options;       /* zx_vm_option_t, as the caller gave them */
    uint32_t region_index;
    uint32_t flags;         /* IOB_BROKER_MAP_*; unknown bits: ZX_ERR_INVALID_ARGS */
    uint64_t region_offset;
    uint64_t len;
} iob_broker_map_req_t;

/* MAP reply flags. */
enum {
    IOB_BROKER_GRANT_WRITABLE = 1u << 0, /* the fd is a writable file description */
};

typedef struct iob_broker_map_reply {
    iob_broker_hdr_t hdr;
    int32_t status;        /* zx_status_t; an fd travels only with ZX_OK (and no CHECK_ONLY) */
    uint32_t flags;        /* IOB_BROKER_GRANT_* */
    uint64_t mapping_id;   /* give back in UNMAP */
    uint64_t region_size;  /* bytes (rounded to the page size) */
    uint64_t iob_koid;     /* endpoint 0's koid (names the memfd) */
} iob_broker_map_reply_t;

typedef struct iob_broker_unmap_req {
    iob_broker_hdr_t hdr;
    uint64_t mapping_id;
} iob_broker_unmap_req_t;

/*
 * The token travels NUL-padded; one without a NUL in its 64 bytes cannot be a token and is
 * ZX_ERR_NOT_FOUND, as over gRPC. It is a credential: both sides wipe their copies.
 */
typedef struct iob_broker_import_req {
    iob_broker_hdr_t hdr;
    char token[IOB_BROKER_TOKEN_SIZE];
} iob_broker_import_req_t;

typedef struct iob_broker_import_reply {
    iob_broker_hdr_t hdr;
    int32_t status;  /* zx_status_t: the core's (ZX_ERR_NOT_FOUND: unknown, used, expired) */
    uint32_t handle; /* zx_handle_t of the attached session; 0 unless ZX_OK */
} iob_broker_import_reply_t;

/* ---- Mediated operations ---- */

#define IOB_BROKER_MEDIATED_LAYOUT 1u
/* zx_iob_writev's limits (docs/zircon-iob.md A.6): 8 vectors, 65535 - 16 payload bytes. */
#define IOB_BROKER_WRITEV_MAX_VECTORS 8u
#define IOB_BROKER_WRITEV_MAX_BYTES 65519u
/* Largest blob ALLOCATE_ID carries in the datagram; a larger one travels in a memfd. */
#define IOB_BROKER_MAX_BLOB 65519u

/* iob_broker_writev_req_t.flags */
enum {
    /* The caller's iovec array could not be read: vector_count is 0 (A.6 step 7). */
    IOB_BROKER_WRITEV_VECTORS_UNREADABLE = 1u << 0,
};

/* iob_broker_vec_t.flags */
enum {
    /* The buffer was read: its capacity bytes follow the fixed part, in vector order. */
    IOB_BROKER_VEC_READABLE = 1u << 0,
};

typedef struct iob_broker_vec {
    uint64_t capacity;
    uint32_t flags; /* IOB_BROKER_VEC_*; unknown bits: the message is malformed */
    uint32_t reserved;
} iob_broker_vec_t;

/*
 * One zx_iob_writev. num_vectors is the caller's count, whatever it is; vector_count the
 * number of meaningful entries of vecs: num_vectors when it is at most 8 and the array was
 * readable, else 0. The message is exactly sizeof(iob_broker_writev_req_t) plus the sum of
 * the capacities of the vectors flagged readable (at most 65519 bytes). A client whose
 * capacities add up to more than 65519 flags no vector readable and sends no bytes: the
 * core answers INVALID_ARGS at step 8 before it would look at a buffer.
 */
typedef struct iob_broker_writev_req {
    iob_broker_hdr_t hdr;
    uint32_t layout; /* IOB_BROKER_MEDIATED_LAYOUT */
    uint32_t handle;
    uint64_t options;
    uint32_t region_index;
    uint32_t flags; /* IOB_BROKER_WRITEV_* */
    uint64_t num_vectors;
    uint32_t vector_count;
    uint32_t reserved;
    iob_broker_vec_t vecs[IOB_BROKER_WRITEV_MAX_VECTORS];
} iob_broker_writev_req_t;

/*
 * The same call as a WRITEV whose num_vectors entries (at most 8) are all flagged readable,
 * with the message's bytes after the fixed part as their concatenation: the record is the
 * concatenation, so where one vector ends and the next begins never changes an answer or a
 * byte of the ring (docs/zircon-iob.md A.6). The vector table, 128 of the 184 bytes of
 * WRITEV's fixed part, is what makes a 64-byte record's request four cache lines instead
 * of two.
 */
typedef struct iob_broker_writev_packed_req {
    iob_broker_hdr_t hdr;
    uint32_t layout; /* IOB_BROKER_MEDIATED_LAYOUT */
    uint32_t handle;
    uint64_t options;
    uint32_t region_index;
    uint32_t num_vectors; /* at most IOB_BROKER_WRITEV_MAX_VECTORS */
} iob_broker_writev_packed_req_t;

/* iob_broker_allocate_id_req_t.flags */
enum {
    IOB_BROKER_ALLOC_BLOB_UNREADABLE = 1u << 0, /* no blob bytes follow (A.5 step 6) */
    IOB_BROKER_ALLOC_ID_NULL = 1u << 1,         /* the caller's id pointer is NULL (step 7) */
    /*
     * A blob over IOB_BROKER_MAX_BLOB: no bytes follow; the message carries one fd
     * (SCM_RIGHTS), a memfd whose first blob_size bytes are the blob. iobd reads it with
     * pread (never maps it: a sender that shrinks it gets INVALID_ARGS, not a SIGBUS in iobd).
     */
    IOB_BROKER_ALLOC_BLOB_IN_FD = 1u << 2,
};

/* Followed by exactly blob_size bytes, or none with IOB_BROKER_ALLOC_BLOB_UNREADABLE or
 * IOB_BROKER_ALLOC_BLOB_IN_FD. */
typedef struct iob_broker_allocate_id_req {
    iob_broker_hdr_t hdr;
    uint32_t layout; /* IOB_BROKER_MEDIATED_LAYOUT */
    uint32_t handle;
    uint32_t options;
    uint32_t region_index;
    uint32_t flags; /* IOB_BROKER_ALLOC_* */
    uint32_t reserved;
    uint64_t blob_size;
} iob_broker_allocate_id_req_t;

typedef struct iob_broker_allocate_id_reply {
    iob_broker_hdr_t hdr;
    int32_t status; /* zx_status_t */
    uint32_t id;    /* valid with ZX_OK */
} iob_broker_allocate_id_reply_t;

/* The largest mediated message: a full writev (the blob limit is the same). */
#define IOB_BROKER_MAX_MEDIATED_MSG \
    (sizeof(iob_broker_writev_req_t) + IOB_BROKER_WRITEV_MAX_BYTES)

_Static_assert(sizeof(iob_broker_vec_t) == 16, "vector entry is 16 bytes");
_Static_assert(sizeof(iob_broker_writev_req_t) == 184, "writev fixed part is 184 bytes");
_Static_assert(offsetof(iob_broker_writev_req_t, vecs) == 56, "writev offsets");
_Static_assert(sizeof(iob_broker_writev_packed_req_t) == 40, "packed writev fixed part is 40 bytes");
_Static_assert(offsetof(iob_broker_writev_packed_req_t, layout) ==
                   offsetof(iob_broker_writev_req_t, layout),
               "every mediated fixed part has layout right after the header");
_Static_assert(sizeof(iob_broker_allocate_id_req_t) == 48, "allocate_id fixed part is 48 bytes");
_Static_assert(sizeof(iob_broker_allocate_id_reply_t) == 24, "allocate_id reply is 24 bytes");
_Static_assert(sizeof(iob_broker_allocate_id_req_t) + IOB_BROKER_MAX_BLOB <=
                   IOB_BROKER_MAX_MEDIATED_MSG,
               "the largest blob fits the mediated limit");

_Static_assert(sizeof(iob_broker_hdr_t) == 16, "header is 16 bytes");
_Static_assert(sizeof(iob_broker_import_req_t) == 80, "import request is 80 bytes");
_Static_assert(sizeof(iob_broker_import_reply_t) == 24, "import reply is 24 bytes");
_Static_assert(sizeof(iob_broker_import_req_t) <= IOB_BROKER_MAX_MSG, "largest message fits");
_Static_assert(sizeof(iob_broker_attach_req_t) == 40, "attach is 40 bytes");
_Static_assert(sizeof(iob_broker_status_reply_t) == 24, "status reply is 24 bytes");
_Static_assert(sizeof(iob_broker_map_req_t) == 48, "map request is 48 bytes");
_Static_assert(sizeof(iob_broker_map_reply_t) == 48, "map reply is 48 bytes");
_Static_assert(sizeof(iob_broker_unmap_req_t) == 24, "unmap request is 24 bytes");
_Static_assert(offsetof(iob_broker_map_req_t, region_offset) == 32, "map offsets");
_Static_assert(offsetof(iob_broker_map_reply_t, mapping_id) == 24, "map reply offsets");

static inline void iob_broker_hdr_init(iob_broker_hdr_t* hdr, uint16_t type, uint32_t size,
                                       uint64_t request_id) {
    hdr->version = IOB_BROKER_WIRE_VERSION;
    hdr->type = type;
    hdr->size = size;
    hdr->request_id = request_id;
}

#endif /* IOB_SHM_BROKER_WIRE_H_ */
