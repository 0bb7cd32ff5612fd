/* SPDX-License-Identifier: MIT */
/* The helpers of mediated_fixture.h. */
#include <string.h>
#include <sys/mman.h>

#include "mediated_fixture.h"
#include "shm/mediated.h"

zx_handle_t shared_create(fx_t* f, uint64_t size) {
    zx_handle_t h = 0;
    assert_int_equal(iob_core_shared_region_create(f->core, f->a, 0, size, &h), ZX_OK);
    assert_int_not_equal(h, 0);
    return h;
}

zx_iob_region_t ring_region(zx_handle_t shared, zx_iob_access_t access, uint64_t tag) {
    zx_iob_region_t r;
    memset(&r, 0, sizeof r);
    r.type = ZX_IOB_REGION_TYPE_SHARED;
    r.access = access;
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    r.discipline.ring_buffer.tag = tag;
    r.shared_region.shared_region = shared;
    return r;
}

zx_iob_region_t idalloc_region(uint64_t size, zx_iob_access_t access) {
    zx_iob_region_t r = fx_region(size, access);
    r.discipline.type = ZX_IOB_DISCIPLINE_TYPE_ID_ALLOCATOR;
    return r;
}

void ring_iob(fx_t* f, zx_handle_t shared, zx_iob_access_t access, uint64_t tag,
                     zx_handle_t* e0, zx_handle_t* e1) {
    zx_iob_region_t r = ring_region(shared, access, tag);
    assert_int_equal(iob_core_iob_create(f->core, f->a, 0, &r, 1, e0, e1), ZX_OK);
}

mapping_t map_region(fx_t* f, zx_handle_t h, uint32_t index, bool write) {
    iob_map_grant_t g;
    zx_vm_option_t perm = ZX_VM_PERM_READ | (write ? ZX_VM_PERM_WRITE : 0);
    assert_int_equal(iob_core_map(f->core, f->a, h, perm, index, 0, P, &g), ZX_OK);
    int prot = PROT_READ | (write ? PROT_WRITE : 0);
    void* p = mmap(NULL, (size_t)g.region_size, prot, MAP_SHARED, g.fd, 0);
    assert_true(p != MAP_FAILED);
    return (mapping_t){p, g.region_size, g.mapping};
}

void unmap_region(fx_t* f, mapping_t* m) {
    assert_int_equal(munmap(m->base, (size_t)m->size), 0);
    assert_int_equal(iob_core_unmap(f->core, f->a, m->id), ZX_OK);
}

_Atomic uint64_t* head_of(const mapping_t* m) {
    return &((iob_mwrb_header_t*)(void*)m->base)->head;
}

_Atomic uint64_t* tail_of(const mapping_t* m) {
    return &((iob_mwrb_header_t*)(void*)m->base)->tail;
}

zx_status_t mx_writev(fx_t* f, zx_handle_t h, const zx_iovec_t* v, size_t n) {
    return iob_core_iob_writev(f->core, f->a, h, 0, 0, v, n);
}

zx_status_t mx_write_str(fx_t* f, zx_handle_t h, const char* text, size_t len) {
    zx_iovec_t v = {.buffer = (void*)(uintptr_t)text, .capacity = len};
    return mx_writev(f, h, &v, 1);
}

