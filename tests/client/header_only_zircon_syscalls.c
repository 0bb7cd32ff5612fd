/* SPDX-License-Identifier: MIT */
/* <zircon/syscalls.h> alone compiles under -std=c11 -Wall -Werror. */
#include <zircon/syscalls.h>

int iob_test_header_zircon(void);
int iob_test_header_zircon(void) {
    return ZX_OK;
}
