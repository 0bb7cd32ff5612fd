/* SPDX-License-Identifier: MIT */
/* Status helpers beyond Zircon's zx_status_get_string, for logs, the CLI and the RPC layer. */
#ifndef IOB_CLIENT_STATUS_TEXT_H_
#define IOB_CLIENT_STATUS_TEXT_H_

#include <zircon/status.h>
#include <zircon/types.h>

/* A human-readable sentence for the status ("invalid arguments"). */
const char* iob_status_message(zx_status_t status);
/* "ZX_ERR_NOT_FOUND" -> -25; an unknown name -> 1 (never a valid status). */
zx_status_t iob_status_from_name(const char* name);

#endif /* IOB_CLIENT_STATUS_TEXT_H_ */
