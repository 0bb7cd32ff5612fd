/* SPDX-License-Identifier: MIT */
/* A real iobd for tests (see iobd_harness.h). */
#include "iobd_harness.h"

#include <stdio.h>
#include <stdlib.h>

static char iobd__harness_bin[512];

void iobd_harness_set_binary(const char* path) {
    snprintf(iobd__harness_bin, sizeof iobd__harness_bin, "%s", path);
}

bool iobd_harness_start(iobd_harness_t* h, const char* const* extra) {
    if (iobd__harness_bin[0] == '\0') {
        const char* dir = getenv("IOB_TEST_BINARY_DIR");
        snprintf(iobd__harness_bin, sizeof iobd__harness_bin, "%s/server/daemon/iobd",
                 dir != NULL ? dir : ".");
    }
    iob_tk_iobd_config_t config = {
        .binary = iobd__harness_bin, .log_level = "debug", .extra = extra, .log_file = true};
    char err[400];
    if (!iob_tk_iobd_start(h, &config, err, sizeof err)) {
        fprintf(stderr, "iobd_harness: %s\n", err);
        return false;
    }
    return true;
}

bool iobd_harness_stop(iobd_harness_t* h) {
    /* A clean shutdown takes milliseconds; give it 10 s before calling it a hang. */
    char why[160];
    if (!iob_tk_iobd_stop(h, 10000, why, sizeof why)) {
        fprintf(stderr, "iobd_harness: %s\n", why);
        return false;
    }
    return true;
}
