/* SPDX-License-Identifier: MIT */
/* zx_status_get_string, as in Fuchsia's <zircon/status.h>. */
#ifndef ZIRCON_STATUS_H_
#define ZIRCON_STATUS_H_

#include <zircon/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the status's name ("ZX_ERR_INVALID_ARGS"); "(UNKNOWN)" for values not in the list. */
ZX_EXPORT const char* zx_status_get_string(zx_status_t status);

#ifdef __cplusplus
}
#endif

#endif /* ZIRCON_STATUS_H_ */
