/* SPDX-License-Identifier: MIT */
/* zx_vmar_root_self, as in Fuchsia's <zircon/process.h>. */
#ifndef ZIRCON_PROCESS_H_
#define ZIRCON_PROCESS_H_

#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The pseudo-handle that stands for this process's whole address space (docs/zircon-iob.md L:
 * VMAR sub-regions do not exist on Linux). It is a fixed value, never closed.
 */
ZX_EXPORT zx_handle_t zx_vmar_root_self(void);

#ifdef __cplusplus
}
#endif

#endif /* ZIRCON_PROCESS_H_ */
