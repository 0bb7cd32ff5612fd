/* SPDX-License-Identifier: MIT */
/* A program outside the tree: built with `pkg-config --cflags --libs iob` only. */
#include <stdio.h>
#include <string.h>

#include <iob/iob.h>
#include <zircon/status.h>
#include <zircon/syscalls.h>

int main(void) {
    zx_iob_region_t region;
    memset(&region, 0, sizeof region);
    region.type = ZX_IOB_REGION_TYPE_PRIVATE;
    region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                    ZX_IOB_ACCESS_EP1_CAN_MAP_READ;
    region.size = zx_system_get_page_size();
    zx_handle_t ep0;
    zx_handle_t ep1;
    zx_status_t st = zx_iob_create(0, &region, 1, &ep0, &ep1);
    if (st != ZX_OK) {
        fprintf(stderr, "zx_iob_create: %s\n", zx_status_get_string(st));
        return 1;
    }
    zx_vaddr_t w = 0;
    zx_vaddr_t r = 0;
    st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ | ZX_VM_PERM_WRITE, 0, ep0, 0, 0,
                         region.size, &w);
    if (st == ZX_OK) {
        st = zx_vmar_map_iob(zx_vmar_root_self(), ZX_VM_PERM_READ, 0, ep1, 0, 0, region.size, &r);
    }
    if (st != ZX_OK) {
        fprintf(stderr, "zx_vmar_map_iob: %s\n", zx_status_get_string(st));
        return 1;
    }
    strcpy((char*)w, "installed");
    char token[IOB_TOKEN_SIZE];
    st = iob_handle_export(ep1, token);
    printf("%s %s\n", (const char*)r, st == ZX_OK ? "exported" : zx_status_get_string(st));
    return strcmp((const char*)r, "installed") == 0 && st == ZX_OK ? 0 : 1;
}
