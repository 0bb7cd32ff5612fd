/* SPDX-License-Identifier: MIT */
/*
 * Shared regions and the mediated operations: zx_iob_create_shared_region, zx_iob_writev
 * and zx_iob_allocate_id. iobd carries out the writes (docs/zircon-iob.md L, "Mediated
 * operations"); the library's part is what only the caller's process can know: which of
 * the caller's addresses can be read. Zircon reports an unreadable iovec array at A.6 step
 * 7, an unreadable payload at step 11 and an unreadable blob at A.5 step 6, each after the
 * handle, rights and region checks, so the library never answers those itself: it tells
 * iobd what could not be read and iobd's core answers at the right step.
 *
 * Fast path (a co-located iobd): one datagram on the map-broker socket whose iovecs point
 * straight into the caller's buffers, so the kernel's copy into the socket is the only
 * copy on this side; if the kernel cannot read a buffer (EFAULT, nothing sent), the
 * buffers are read one by one into a private copy, which finds the unreadable ones, and
 * that copy is sent. Otherwise (a remote iobd, or a broker that did not take the request)
 * the same description travels over gRPC.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <zircon/syscalls.h>

#include "client/lib/libiob.h"

/* ---- Reading the caller's memory (iob__copy_from_user is in channel.c) ---- */

/*
 * Whether all n bytes at src can be read, found in pieces, nothing kept: ZX_OK, or
 * ZX_ERR_INVALID_ARGS (unreadable), or ZX_ERR_NO_MEMORY (no room to look).
 */
static zx_status_t iob__user_readable(const void* src, uint64_t n) {
    enum { PIECE = 64 * 1024 };
    unsigned char* scratch = malloc(PIECE);
    if (scratch == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    zx_status_t st = ZX_OK;
    for (uint64_t done = 0; done < n && st == ZX_OK; done += PIECE) {
        size_t piece = n - done < PIECE ? (size_t)(n - done) : PIECE;
        if (!iob__copy_from_user(scratch, (const unsigned char*)src + done, piece)) {
            st = ZX_ERR_INVALID_ARGS;
        }
    }
    free(scratch);
    return st;
}

/*
 * A sealed memfd holding the n bytes at src, for the broker (IOB_BROKER_ALLOC_BLOB_IN_FD):
 * ZX_OK, ZX_ERR_INVALID_ARGS when src cannot be read (the kernel's write says EFAULT), or
 * another status when no memfd could be made (the caller then goes another way).
 */
static zx_status_t iob__blob_memfd(const void* src, uint64_t n, int* fd_out) {
    int fd = memfd_create("iob-allocate-id-blob", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return ZX_ERR_NO_RESOURCES;
    }
    zx_status_t st = ZX_OK;
    for (uint64_t done = 0; done < n && st == ZX_OK;) {
        ssize_t w = write(fd, (const unsigned char*)src + done, (size_t)(n - done));
        if (w > 0) {
            done += (uint64_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            st = (w < 0 && errno == EFAULT) ? ZX_ERR_INVALID_ARGS : ZX_ERR_NO_MEMORY;
        }
    }
    if (st == ZX_OK &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        st = ZX_ERR_NO_RESOURCES;
    }
    if (st != ZX_OK) {
        close(fd);
        return st;
    }
    *fd_out = fd;
    return ZX_OK;
}

/* ---- zx_iob_create_shared_region ---- */

zx_status_t zx_iob_create_shared_region(uint64_t options, uint64_t size, zx_handle_t* out) {
    /* As for zx_iob_create (docs/zircon-iob.md L): a NULL out-pointer first. */
    if (out == NULL) {
        return ZX_ERR_INVALID_ARGS;
    }
    iob__session_t* s;
    zx_status_t st = iob__session_get(&s);
    if (st != ZX_OK) {
        return st;
    }
    st = iob_conn_shared_region_create(s->conn, options, size, out);
    iob__session_put(s);
    return st;
}

/* ---- zx_iob_writev ---- */

/* Reads the caller's memory: false when it cannot be read (never a crash). */
typedef bool (*iob__copier_t)(void* dst, const void* src, size_t n);

/* What the caller's arguments turned out to be, before any byte of payload is read. */
typedef struct iob__writev_plan {
    uint64_t num_vectors;
    bool array_unreadable;
    size_t count; /* entries of vecs that travel: num_vectors, or 0 */
    zx_iovec_t vecs[IOB_BROKER_WRITEV_MAX_VECTORS]; /* our copy of the caller's array */
    bool readable[IOB_BROKER_WRITEV_MAX_VECTORS];
    size_t data_len; /* bytes of the readable vectors */
} iob__writev_plan_t;

static void iob__writev_plan(const zx_iovec_t* vectors, size_t num_vectors,
                             iob__writev_plan_t* p, iob__copier_t copy) {
    memset(p, 0, sizeof *p);
    p->num_vectors = num_vectors;
    /* Above 8 the array is never read: the count alone decides (A.6 step 6). */
    if (num_vectors == 0 || num_vectors > IOB_BROKER_WRITEV_MAX_VECTORS) {
        return;
    }
    /* One kernel copy of at most 128 bytes: a bad array pointer is an answer, not a crash. */
    if (!copy(p->vecs, vectors, num_vectors * sizeof(zx_iovec_t))) {
        p->array_unreadable = true;
        return;
    }
    p->count = num_vectors;
    size_t sum = 0;
    bool too_big = false;
    for (size_t i = 0; i < num_vectors; i++) {
        size_t cap = p->vecs[i].capacity;
        if (cap > IOB_BROKER_WRITEV_MAX_BYTES - sum) {
            too_big = true; /* overflow-safe: the sum is never formed past the limit */
        } else {
            sum += cap;
        }
    }
    if (too_big) {
        /* Step 8 rejects the call before any buffer is looked at: send none. */
        return;
    }
    for (size_t i = 0; i < num_vectors; i++) {
        /* NULL with a capacity cannot be read; NULL with 0 bytes is an empty vector. */
        p->readable[i] = p->vecs[i].buffer != NULL || p->vecs[i].capacity == 0;
        p->data_len += p->readable[i] ? p->vecs[i].capacity : 0u;
    }
}

/*
 * Reads every vector flagged readable into buf (data_len bytes), unflagging those that
 * cannot be read; afterwards data_len is what buf holds.
 */
static void iob__writev_gather(iob__writev_plan_t* p, unsigned char* buf, iob__copier_t copy) {
    size_t off = 0;
    for (size_t i = 0; i < p->count; i++) {
        if (!p->readable[i]) {
            continue;
        }
        size_t cap = p->vecs[i].capacity;
        if (copy(buf + off, p->vecs[i].buffer, cap)) {
            off += cap;
        } else {
            p->readable[i] = false;
        }
    }
    p->data_len = off;
}

static void iob__writev_fill_req(const iob__writev_plan_t* p, zx_handle_t handle,
                                 uint64_t options, uint32_t region_index,
                                 iob_broker_writev_req_t* req) {
    memset(req, 0, sizeof *req);
    iob_broker_hdr_init(&req->hdr, IOB_BROKER_WRITEV,
                        (uint32_t)(sizeof *req + p->data_len), 0);
    req->layout = IOB_BROKER_MEDIATED_LAYOUT;
    req->handle = handle;
    req->options = options;
    req->region_index = region_index;
    req->flags = p->array_unreadable ? IOB_BROKER_WRITEV_VECTORS_UNREADABLE : 0u;
    req->num_vectors = p->num_vectors;
    req->vector_count = (uint32_t)p->count;
    for (size_t i = 0; i < p->count; i++) {
        req->vecs[i].capacity = p->vecs[i].capacity;
        req->vecs[i].flags = p->readable[i] ? IOB_BROKER_VEC_READABLE : 0u;
    }
}

/* Over the broker; ZX_ERR_NEXT when the caller must use gRPC instead. */
static zx_status_t iob__writev_broker(iob__session_t* s, iob__writev_plan_t* p,
                                      zx_handle_t handle, uint64_t options,
                                      uint32_t region_index) {
    iob_broker_writev_req_t req;
    iob_broker_status_reply_t reply;
    struct iovec iov[1 + IOB_BROKER_WRITEV_MAX_VECTORS];
    size_t n = 1;
    iob__writev_fill_req(p, handle, options, region_index, &req);
    iov[0] = (struct iovec){.iov_base = &req, .iov_len = sizeof req};
    for (size_t i = 0; i < p->count; i++) {
        if (p->readable[i] && p->vecs[i].capacity > 0) {
            iov[n++] = (struct iovec){.iov_base = p->vecs[i].buffer,
                                      .iov_len = p->vecs[i].capacity};
        }
    }
    zx_status_t st = iob__broker_mediated(s, &req.hdr, iov, n, -1, IOB_BROKER_WRITEV | IOB_BROKER_REPLY,
                                          &reply, sizeof reply);
    if (st == ZX_ERR_IO_INVALID) {
        /*
         * Some buffer cannot be read (or stopped being readable: another thread may unmap
         * it at any time). A private copy settles which, and cannot fault when sent.
         */
        unsigned char* buf = malloc(p->data_len > 0 ? p->data_len : 1);
        if (buf == NULL) {
            return ZX_ERR_NO_MEMORY;
        }
        iob__writev_gather(p, buf, iob__copy_from_user);
        iob__writev_fill_req(p, handle, options, region_index, &req);
        iov[1] = (struct iovec){.iov_base = buf, .iov_len = p->data_len};
        st = iob__broker_mediated(s, &req.hdr, iov, p->data_len > 0 ? 2 : 1, -1,
                                  IOB_BROKER_WRITEV | IOB_BROKER_REPLY, &reply, sizeof reply);
        free(buf);
        if (st == ZX_ERR_IO_INVALID) {
            st = ZX_ERR_IO; /* our own buffer: cannot happen */
        }
    }
    return st == ZX_OK ? reply.status : st;
}

/* The fixed part as planned, then the bytes right behind it (see iob__writev_channel). */
static void iob__writev_lay_out(iob__writev_plan_t* p, zx_handle_t handle, uint64_t options,
                                uint32_t region_index, unsigned char* msg, iob__copier_t copy) {
    iob_broker_writev_req_t req;
    iob__writev_fill_req(p, handle, options, region_index, &req);
    memcpy(msg, &req, sizeof req);
    size_t planned = p->data_len;
    iob__writev_gather(p, msg + sizeof req, copy);
    if (p->data_len != planned) {
        iob__writev_fill_req(p, handle, options, region_index, &req);
        memcpy(msg, &req, sizeof req);
    }
}

/* A writev packed into the channel under iob__hot_copies (iob__writev_channel). */
typedef struct iob__writev_packing {
    const zx_iovec_t* vectors;
    size_t num_vectors; /* at most IOB_BROKER_WRITEV_MAX_VECTORS */
    zx_handle_t handle;
    uint64_t options;
    uint32_t region_index;
    unsigned char* msg;
    bool packed; /* every vector was read: the request in msg is complete */
} iob__writev_packing_t;

static zx_status_t iob__writev_pack(void* ctx) {
    iob__writev_packing_t* w = ctx;
    zx_iovec_t vecs[IOB_BROKER_WRITEV_MAX_VECTORS];
    size_t n = w->num_vectors;
    /* A miss is remembered by iob__hot_copies, which then answers ZX_ERR_NEXT. */
    if (!iob__hot_copy(vecs, w->vectors, n * sizeof *vecs)) {
        return ZX_OK;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        /* Too big or NULL: answered by the core from the full form (A.6 steps 8 and 11). */
        if (vecs[i].capacity > IOB_BROKER_WRITEV_MAX_BYTES - total ||
            (vecs[i].buffer == NULL && vecs[i].capacity > 0)) {
            return ZX_OK;
        }
        total += vecs[i].capacity;
    }
    iob_broker_writev_packed_req_t req = {
        .layout = IOB_BROKER_MEDIATED_LAYOUT,
        .handle = w->handle,
        .options = w->options,
        .region_index = w->region_index,
        .num_vectors = (uint32_t)n,
    };
    iob_broker_hdr_init(&req.hdr, IOB_BROKER_WRITEV_PACKED, (uint32_t)(sizeof req + total), 0);
    memcpy(w->msg, &req, sizeof req);
    unsigned char* at = w->msg + sizeof req;
    for (size_t i = 0; i < n; i++) {
        if (!iob__hot_copy(at, vecs[i].buffer, vecs[i].capacity)) {
            return ZX_OK;
        }
        at += vecs[i].capacity;
    }
    w->packed = true;
    return ZX_OK;
}

/*
 * Through the session's channel, the caller's bytes copied straight into it (the only copy
 * on this side). The fixed part goes first and the bytes right behind it, so the request's
 * lines are written in one pass and none of them is written twice with the mediator
 * reading it in between. A logger's iovec array and buffers are usually in pages read
 * recently: then they are all copied under one guard (iob__hot_copies) into a
 * WRITEV_PACKED, two cache lines for a 64-byte record. Otherwise the request is the full
 * WRITEV, each piece copied its own way (iob__guarded_copy); a buffer that turns out
 * unreadable while it is copied (another thread unmapped it) changes the fixed part, which
 * is then written again. ZX_ERR_NEXT when there is no channel.
 */
static zx_status_t iob__writev_channel(iob__session_t* s, iob__writev_plan_t* p,
                                       const zx_iovec_t* vectors, size_t num_vectors,
                                       zx_handle_t handle, uint64_t options,
                                       uint32_t region_index) {
    iob__mchan_t* ch;
    unsigned char* msg;
    zx_status_t st = iob__mchan_begin(s, &ch, &msg);
    if (st != ZX_OK) {
        return st;
    }
    iob__writev_packing_t packing = {.vectors = vectors,
                                     .num_vectors = num_vectors,
                                     .handle = handle,
                                     .options = options,
                                     .region_index = region_index,
                                     .msg = msg};
    if (num_vectors > IOB_BROKER_WRITEV_MAX_VECTORS ||
        iob__hot_copies(iob__writev_pack, &packing) != ZX_OK || !packing.packed) {
        iob__writev_plan(vectors, num_vectors, p, iob__guarded_copy);
        iob__writev_lay_out(p, handle, options, region_index, msg, iob__guarded_copy);
    }
    zx_status_t status = ZX_ERR_INTERNAL;
    st = iob__mchan_call(s, ch, &status, NULL);
    iob__mchan_end(s);
    return st == ZX_OK ? status : st;
}

zx_status_t zx_iob_writev(zx_handle_t handle, zx_iob_write_options_t options,
                          uint32_t region_index, const zx_iovec_t* vectors, size_t num_vectors) {
    iob__writev_plan_t plan;
    iob__session_t* s;
    zx_status_t st = iob__session_get(&s);
    if (st != ZX_OK) {
        return st;
    }
    st = iob__writev_channel(s, &plan, vectors, num_vectors, handle, options, region_index);
    if (st != ZX_ERR_NEXT) {
        iob__session_put(s);
        return st;
    }
    iob__writev_plan(vectors, num_vectors, &plan, iob__copy_from_user);
    st = iob__writev_broker(s, &plan, handle, options, region_index);
    if (st == ZX_ERR_NEXT) {
        /* No broker (a remote iobd): gRPC needs the bytes in a buffer of its own anyway. */
        unsigned char* buf = plan.data_len > 0 ? malloc(plan.data_len) : NULL;
        if (plan.data_len > 0 && buf == NULL) {
            st = ZX_ERR_NO_MEMORY;
        } else {
            iob__writev_gather(&plan, buf, iob__copy_from_user);
            iob_conn_writev_vec_t vecs[IOB_BROKER_WRITEV_MAX_VECTORS];
            for (size_t i = 0; i < plan.count; i++) {
                vecs[i].capacity = plan.vecs[i].capacity;
                vecs[i].readable = plan.readable[i];
            }
            st = iob_conn_iob_writev(s->conn, handle, options, region_index, plan.num_vectors,
                                     plan.array_unreadable, vecs, buf, plan.data_len);
        }
        free(buf);
    }
    iob__session_put(s);
    return st;
}

/* ---- zx_iob_allocate_id ---- */

/* The fixed part of an ALLOCATE_ID request followed by body bytes of the blob. */
static void iob__allocate_id_fill_req(zx_handle_t handle, uint32_t options, uint32_t region_index,
                                      uint64_t blob_size, uint64_t body, uint32_t flags,
                                      iob_broker_allocate_id_req_t* req) {
    memset(req, 0, sizeof *req);
    iob_broker_hdr_init(&req->hdr, IOB_BROKER_ALLOCATE_ID, (uint32_t)(sizeof *req + body), 0);
    req->layout = IOB_BROKER_MEDIATED_LAYOUT;
    req->handle = handle;
    req->options = options;
    req->region_index = region_index;
    req->flags = flags;
    req->blob_size = blob_size;
}

/* Through the session's channel, for a blob that fits it; ZX_ERR_NEXT otherwise. */
static zx_status_t iob__allocate_id_channel(iob__session_t* s, zx_handle_t handle,
                                            uint32_t options, uint32_t region_index,
                                            const void* blob, uint64_t blob_size, bool id_null,
                                            uint32_t* got) {
    if (blob_size > IOB_BROKER_MAX_BLOB) {
        return ZX_ERR_NEXT; /* the datagram path hands it over in a memfd */
    }
    iob__mchan_t* ch;
    unsigned char* msg;
    zx_status_t st = iob__mchan_begin(s, &ch, &msg);
    if (st != ZX_OK) {
        return st;
    }
    iob_broker_allocate_id_req_t req;
    bool readable = blob_size == 0 ||
                    iob__guarded_copy(msg + sizeof req, blob, (size_t)blob_size);
    iob__allocate_id_fill_req(handle, options, region_index, blob_size, readable ? blob_size : 0,
                              (readable ? 0u : IOB_BROKER_ALLOC_BLOB_UNREADABLE) |
                                  (id_null ? IOB_BROKER_ALLOC_ID_NULL : 0u),
                              &req);
    memcpy(msg, &req, sizeof req);
    zx_status_t status = ZX_ERR_INTERNAL;
    st = iob__mchan_call(s, ch, &status, got);
    iob__mchan_end(s);
    return st == ZX_OK ? status : st;
}

zx_status_t zx_iob_allocate_id(zx_handle_t handle, zx_iob_allocate_id_options_t options,
                               uint32_t region_index, const void* blob, uint64_t blob_size,
                               uint32_t* id) {
    bool unreadable = blob == NULL && blob_size > 0;
    iob__session_t* s;
    zx_status_t st = iob__session_get(&s);
    if (st != ZX_OK) {
        return st;
    }
    uint32_t got = 0;
    st = iob__allocate_id_channel(s, handle, options, region_index, blob, blob_size, id == NULL,
                                  &got);
    if (st != ZX_ERR_NEXT) {
        iob__session_put(s);
        if (st == ZX_OK && id != NULL) {
            *id = got;
        }
        return st;
    }
    int blob_fd = -1;
    if (!unreadable && blob_size > IOB_BROKER_MAX_BLOB) {
        /* Too large for a datagram: the broker reads it from a memfd instead. */
        zx_status_t made = iob__blob_memfd(blob, blob_size, &blob_fd);
        unreadable = made == ZX_ERR_INVALID_ARGS;
    }
    if (unreadable || blob_size <= IOB_BROKER_MAX_BLOB || blob_fd >= 0) {
        iob_broker_allocate_id_req_t req;
        iob_broker_allocate_id_reply_t reply;
        for (int attempt = 0; attempt < 2 && (st == ZX_ERR_NEXT || st == ZX_ERR_IO_INVALID);
             attempt++) {
            if (st == ZX_ERR_IO_INVALID) {
                unreadable = true; /* the kernel could not read the blob: nothing was sent */
            }
            size_t body = unreadable || blob_fd >= 0 ? 0u : (size_t)blob_size;
            iob__allocate_id_fill_req(handle, options, region_index, blob_size, body,
                                      (unreadable ? IOB_BROKER_ALLOC_BLOB_UNREADABLE : 0u) |
                                          (id == NULL ? IOB_BROKER_ALLOC_ID_NULL : 0u) |
                                          (blob_fd >= 0 ? IOB_BROKER_ALLOC_BLOB_IN_FD : 0u),
                                      &req);
            struct iovec iov[2] = {{.iov_base = &req, .iov_len = sizeof req},
                                   {.iov_base = (void*)(uintptr_t)blob, .iov_len = body}};
            st = iob__broker_mediated(s, &req.hdr, iov, body > 0 ? 2 : 1, blob_fd,
                                      IOB_BROKER_ALLOCATE_ID | IOB_BROKER_REPLY, &reply,
                                      sizeof reply);
            if (st == ZX_OK) {
                st = reply.status;
                got = reply.id;
            } else if (st == ZX_ERR_NEXT) {
                break;
            }
        }
    }
    if (blob_fd >= 0) {
        close(blob_fd);
    }
    if (st == ZX_ERR_NEXT) {
        void* copy = NULL;
        if (!unreadable && blob_size > IOB_CONN_MAX_BLOB) {
            /* Not sent (see iob_conn.h): only whether it can be read matters. */
            st = iob__user_readable(blob, blob_size);
            if (st != ZX_ERR_NO_MEMORY) {
                st = iob_conn_allocate_id(s->conn, handle, options, region_index,
                                          st == ZX_OK ? blob : NULL, blob_size,
                                          id != NULL ? &got : NULL);
            }
        } else if (!unreadable && blob_size > 0 && (copy = malloc((size_t)blob_size)) == NULL) {
            st = ZX_ERR_NO_MEMORY;
        } else {
            if (!unreadable && !iob__copy_from_user(copy, blob, (size_t)blob_size)) {
                unreadable = true;
            }
            st = iob_conn_allocate_id(s->conn, handle, options, region_index,
                                      unreadable ? NULL : copy, blob_size, id != NULL ? &got : NULL);
        }
        free(copy);
    }
    iob__session_put(s);
    if (st == ZX_OK && id != NULL) {
        *id = got;
    }
    return st;
}
