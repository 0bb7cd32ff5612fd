/* SPDX-License-Identifier: MIT */
/* <zircon/syscalls.h> alone compiles under -std=c11 -Wall -Werror. */
#include <zircon/syscalls.h>

int iob_test_header_zircon(void);
int iob_test_header_zircon(void) {
    return ZX_OK;
}

/* Fuchsia code tests statuses in the preprocessor: each is a macro with Zircon's value. */
#if !defined(ZX_OK) || !defined(ZX_ERR_NO_MEMORY) || !defined(ZX_ERR_WRONG_TYPE)
#error "Zircon's statuses must be macros"
#endif
#if ZX_ERR_NO_MEMORY != -4 || ZX_ERR_WRONG_TYPE != -12 || ZX_ERR_NO_SPACE != -54 || ZX_OK != 0
#error "Zircon's status values"
#endif
