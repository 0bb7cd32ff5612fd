# SPDX-License-Identifier: MIT
"""libiob through cffi in ABI mode: the declarations below mirror <zircon/syscalls.h> and
<iob/iob.h> (layouts checked against Zircon's sizes at import), and the library is found
at run time, so the package needs no compiler.

Where libiob comes from, first match wins: $IOB_LIBIOB (a path); the build tree of the
checkout this package sits in (build/client/lib/libiob.so); the system's libiob.so.0
(`cmake --install`).
"""
import os

import cffi

ffi = cffi.FFI()
ffi.cdef(
    """
typedef int32_t zx_status_t;
typedef uint32_t zx_handle_t;
typedef uint32_t zx_signals_t;
typedef uint64_t zx_koid_t;
typedef int64_t zx_time_t;
typedef int64_t zx_duration_t;
typedef uintptr_t zx_vaddr_t;
typedef uint32_t zx_vm_option_t;
typedef uint32_t zx_rights_t;

typedef struct zx_iob_discipline {
    uint64_t type;
    union {
        struct { uint64_t tag; uint64_t reserved[7]; } ring_buffer;
        uint64_t reserved[8];
    };
} zx_iob_discipline_t;

typedef struct zx_iob_region {
    uint32_t type;
    uint32_t access;
    uint64_t size;
    zx_iob_discipline_t discipline;
    union {
        struct { uint32_t options; uint32_t padding1; uint64_t padding2[3]; } private_region;
        struct { uint32_t options; zx_handle_t shared_region; uint64_t padding[3]; } shared_region;
        uint8_t max_extension[32];
    };
} zx_iob_region_t;

typedef struct zx_iob_region_info {
    zx_iob_region_t region;
    zx_koid_t koid;
} zx_iob_region_info_t;

typedef struct zx_info_handle_basic {
    zx_koid_t koid;
    zx_rights_t rights;
    uint32_t type;
    zx_koid_t related_koid;
    uint32_t reserved;
    uint8_t padding1[4];
} zx_info_handle_basic_t;

typedef struct zx_iovec { void* buffer; size_t capacity; } zx_iovec_t;

zx_status_t zx_iob_create(uint64_t options, const zx_iob_region_t* regions, size_t region_count,
                          zx_handle_t* ep0_out, zx_handle_t* ep1_out);
zx_status_t zx_iob_create_shared_region(uint64_t options, uint64_t size, zx_handle_t* out);
zx_status_t zx_iob_writev(zx_handle_t handle, uint64_t options, uint32_t region_index,
                          const zx_iovec_t* vectors, size_t num_vectors);
zx_status_t zx_iob_allocate_id(zx_handle_t handle, uint32_t options, uint32_t region_index,
                               const void* blob, uint64_t blob_size, uint32_t* id);
zx_status_t zx_vmar_map_iob(zx_handle_t vmar, zx_vm_option_t options, size_t vmar_offset,
                            zx_handle_t ep, uint32_t region_index, uint64_t region_offset,
                            size_t region_len, zx_vaddr_t* mapped_addr);
zx_status_t zx_vmar_unmap(zx_handle_t vmar, zx_vaddr_t addr, uint64_t len);
zx_handle_t zx_vmar_root_self(void);
zx_status_t zx_object_get_info(zx_handle_t handle, uint32_t topic, void* buffer,
                               size_t buffer_size, size_t* actual, size_t* avail);
zx_status_t zx_handle_close(zx_handle_t handle);
zx_status_t zx_handle_duplicate(zx_handle_t handle, zx_rights_t rights, zx_handle_t* out);
zx_status_t zx_object_signal(zx_handle_t handle, uint32_t clear_mask, uint32_t set_mask);
zx_status_t zx_object_signal_peer(zx_handle_t handle, uint32_t clear_mask, uint32_t set_mask);
zx_status_t zx_object_wait_one(zx_handle_t handle, zx_signals_t signals, zx_time_t deadline,
                               zx_signals_t* observed);
zx_time_t zx_clock_get_monotonic(void);
zx_time_t zx_deadline_after(zx_duration_t nanoseconds);
uint32_t zx_system_get_page_size(void);
const char* zx_status_get_string(zx_status_t status);

typedef struct iob_client iob_client_t;
zx_status_t iob_client_connect(const char* target, iob_client_t** out);
void iob_client_close(iob_client_t* client);
uint64_t iob_client_session_id(const iob_client_t* client);
zx_status_t iob_handle_export(zx_handle_t handle, char token[64]);
zx_status_t iob_handle_import(const char* token, zx_handle_t* out);
const char* iob_status_message(zx_status_t status);

typedef struct iob_ring_producer iob_ring_producer_t;
typedef struct iob_ring_consumer iob_ring_consumer_t;
zx_status_t iob_ring_producer_open(void* ctrl, uint64_t ctrl_size, void* data, uint64_t data_size,
                                   uint32_t flags, iob_ring_producer_t** out);
zx_status_t iob_ring_consumer_open(void* ctrl, uint64_t ctrl_size, const void* data,
                                   uint64_t data_size, uint32_t flags, iob_ring_consumer_t** out);
zx_status_t iob_ring_send(iob_ring_producer_t* p, const void* buf, size_t len, zx_time_t deadline);
zx_status_t iob_ring_receive(iob_ring_consumer_t* c, void* buf, size_t cap, size_t* len,
                             zx_time_t deadline);
void iob_ring_producer_destroy(iob_ring_producer_t* p);
void iob_ring_consumer_destroy(iob_ring_consumer_t* c);
"""
)

# Zircon's ABI, as <zircon/syscalls/iob.h> and <zircon/syscalls/object.h> assert it.
assert ffi.sizeof("zx_iob_discipline_t") == 72
assert ffi.sizeof("zx_iob_region_t") == 120
assert ffi.offsetof("zx_iob_region_t", "discipline") == 16
assert ffi.offsetof("zx_iob_region_t", "private_region") == 88
assert ffi.sizeof("zx_iob_region_info_t") == 128
assert ffi.sizeof("zx_info_handle_basic_t") == 32

LIB_SONAME = "libiob.so.0"


def _candidates():
    env = os.environ.get("IOB_LIBIOB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.normpath(os.path.join(here, "..", "..", ".."))
    return [os.path.join(checkout, "build", "client", "lib", "libiob.so"), LIB_SONAME]


def _open():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ffi.dlopen(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("iob: cannot load libiob; tried " + "; ".join(tried) +
                      ". Set IOB_LIBIOB to the path of libiob.so.")


lib = _open()
