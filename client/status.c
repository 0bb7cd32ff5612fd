/* SPDX-License-Identifier: MIT */
/* Status names and messages, generated from ZX_STATUS_LIST. */
#include <zircon/status.h>

#include "client/status_text.h"

/* Each row of the list has the value of the macro of the same name (errors.h spells both). */
#define IOB__STATUS_MATCHES_MACRO(name, value, msg) \
    _Static_assert((name) == (value), #name " differs from its row in ZX_STATUS_LIST");
ZX_STATUS_LIST(IOB__STATUS_MATCHES_MACRO)
#undef IOB__STATUS_MATCHES_MACRO

const char* zx_status_get_string(zx_status_t status) {
    switch (status) {
#define IOB__STATUS_NAME(name, value, msg) \
    case value:                            \
        return #name;
        ZX_STATUS_LIST(IOB__STATUS_NAME)
#undef IOB__STATUS_NAME
    default:
        return "(UNKNOWN)";
    }
}

const char* iob_status_message(zx_status_t status) {
    switch (status) {
#define IOB__STATUS_MSG(name, value, msg) \
    case value:                           \
        return msg;
        ZX_STATUS_LIST(IOB__STATUS_MSG)
#undef IOB__STATUS_MSG
    default:
        return "unknown status";
    }
}

zx_status_t iob_status_from_name(const char* name) {
    if (name == NULL) {
        return 1; /* not a status: every status is <= 0 */
    }
#define IOB__STATUS_FROM_NAME(sym, value, msg)       \
    if (__builtin_strcmp(name, #sym) == 0) {         \
        return value;                                \
    }
    ZX_STATUS_LIST(IOB__STATUS_FROM_NAME)
#undef IOB__STATUS_FROM_NAME
    return 1;
}
