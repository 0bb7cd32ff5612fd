/* SPDX-License-Identifier: MIT */
/*
 * The Zircon system calls that iob provides on Linux, with Zircon's signatures, so that
 * code written for Fuchsia's IOBuffer compiles unchanged. Each call returns exactly the
 * status Zircon would (docs/zircon-iob.md); calls reach iobd through libiob's implicit
 * connection (IOB_SERVER, or the default socket path).
 */
#ifndef ZIRCON_SYSCALLS_H_
#define ZIRCON_SYSCALLS_H_

#include <stddef.h>
#include <stdint.h>

#include <zircon/errors.h>
#include <zircon/process.h>
#include <zircon/rights.h>
#include <zircon/syscalls/iob.h>
#include <zircon/syscalls/object.h>
#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an IOB. Errors: docs/zircon-iob.md A.3 and L (INVALID_ARGS, OUT_OF_RANGE, NO_MEMORY, NO_RESOURCES). */
ZX_EXPORT zx_status_t zx_iob_create(uint64_t options, const zx_iob_region_t* regions,
                                    size_t region_count, zx_handle_t* ep0_out,
                                    zx_handle_t* ep1_out);

/*
 * Creates a shared region of size bytes that IOBs can use as a ZX_IOB_REGION_TYPE_SHARED
 * region; its handle has ZX_DEFAULT_IOB_SHARED_REGION_RIGHTS. As in Zircon, the size is not
 * rounded: it must be a non-zero multiple of zx_system_get_page_size().
 * Errors: INVALID_ARGS (options != 0, size 0 or not a whole number of pages, out NULL),
 * OUT_OF_RANGE (size above 2^63), NO_MEMORY, NO_RESOURCES.
 */
ZX_EXPORT zx_status_t zx_iob_create_shared_region(uint64_t options, uint64_t size,
                                                  zx_handle_t* out);

/*
 * Appends one record (tag, length, the vectors' bytes) to a MEDIATED_WRITE_RING_BUFFER
 * region; iobd writes it on the caller's behalf. Errors: docs/zircon-iob.md A.6 and A.7.
 */
ZX_EXPORT zx_status_t zx_iob_writev(zx_handle_t handle, zx_iob_write_options_t options,
                                    uint32_t region_index, const zx_iovec_t* vectors,
                                    size_t num_vectors);

/*
 * Stores blob in an ID_ALLOCATOR region and returns its ID; iobd writes it on the caller's
 * behalf. Errors: docs/zircon-iob.md A.5 and A.8.
 */
ZX_EXPORT zx_status_t zx_iob_allocate_id(zx_handle_t handle, zx_iob_allocate_id_options_t options,
                                         uint32_t region_index, const void* blob,
                                         uint64_t blob_size, uint32_t* id);

/* Maps part of a region into the caller's address space. Errors: docs/zircon-iob.md A.4, A.12. */
ZX_EXPORT zx_status_t zx_vmar_map_iob(zx_handle_t vmar, zx_vm_option_t options,
                                      size_t vmar_offset, zx_handle_t ep, uint32_t region_index,
                                      uint64_t region_offset, size_t region_len,
                                      zx_vaddr_t* mapped_addr);

ZX_EXPORT zx_status_t zx_vmar_unmap(zx_handle_t vmar, zx_vaddr_t addr, uint64_t len);

ZX_EXPORT zx_status_t zx_object_get_info(zx_handle_t handle, uint32_t topic, void* buffer,
                                         size_t buffer_size, size_t* actual, size_t* avail);

ZX_EXPORT zx_status_t zx_object_get_property(zx_handle_t handle, uint32_t property, void* value,
                                             size_t value_size);

ZX_EXPORT zx_status_t zx_object_set_property(zx_handle_t handle, uint32_t property,
                                             const void* value, size_t value_size);

ZX_EXPORT zx_status_t zx_handle_close(zx_handle_t handle);

/*
 * Closes every handle of the array: ZX_HANDLE_INVALID entries are ignored; if any other
 * entry is not a valid handle the call returns ZX_ERR_BAD_HANDLE, and all the others are
 * closed all the same. One round trip to iobd for the whole array.
 */
ZX_EXPORT zx_status_t zx_handle_close_many(const zx_handle_t* handles, size_t num_handles);

ZX_EXPORT zx_status_t zx_handle_duplicate(zx_handle_t handle, zx_rights_t rights,
                                          zx_handle_t* out);

ZX_EXPORT zx_status_t zx_handle_replace(zx_handle_t handle, zx_rights_t rights, zx_handle_t* out);

ZX_EXPORT zx_status_t zx_object_signal(zx_handle_t handle, uint32_t clear_mask, uint32_t set_mask);

ZX_EXPORT zx_status_t zx_object_signal_peer(zx_handle_t handle, uint32_t clear_mask,
                                            uint32_t set_mask);

ZX_EXPORT zx_status_t zx_object_wait_one(zx_handle_t handle, zx_signals_t signals,
                                         zx_time_t deadline, zx_signals_t* observed);

ZX_EXPORT zx_time_t zx_clock_get_monotonic(void);

ZX_EXPORT zx_time_t zx_deadline_after(zx_duration_t nanoseconds);

/* The server's backing page size (4 KiB, 2 MiB or 1 GiB); the OS page size with no server. */
ZX_EXPORT uint32_t zx_system_get_page_size(void);

#ifdef __cplusplus
}
#endif

#endif /* ZIRCON_SYSCALLS_H_ */
