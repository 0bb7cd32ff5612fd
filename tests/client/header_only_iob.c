/* SPDX-License-Identifier: MIT */
/* <iob/iob.h> alone compiles under -std=c11 -Wall -Werror. */
#include <iob/iob.h>

int iob_test_header_iob(void);
int iob_test_header_iob(void) {
    return IOB_TOKEN_SIZE == 64 ? 0 : 1;
}
