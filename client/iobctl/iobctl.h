/* SPDX-License-Identifier: MIT */
/*
 * What iobctl's files share: the parsed command line, the exit codes, the error and
 * output helpers (iobctl.c) and one function per command (iobctl_show.c, iobctl_io.c).
 */
#ifndef IOB_CLIENT_IOBCTL_IOBCTL_H_
#define IOB_CLIENT_IOBCTL_IOBCTL_H_

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include <zircon/syscalls/iob.h>

#include "client/rpc/iob_conn.h"


/* Exit codes (documented in --help). */
enum {
    EXIT_USAGE = 1,
    EXIT_UNREACHABLE = 2, /* ZX_ERR_UNAVAILABLE, ZX_ERR_PEER_CLOSED */
    EXIT_DENIED = 3,      /* ZX_ERR_ACCESS_DENIED */
    EXIT_NOT_FOUND = 4,   /* ZX_ERR_NOT_FOUND, ZX_ERR_BAD_HANDLE (unknown token or handle) */
    EXIT_INVALID = 5,     /* ZX_ERR_INVALID_ARGS, ZX_ERR_OUT_OF_RANGE, ZX_ERR_WRONG_TYPE, ... */
    EXIT_TIMED_OUT = 6,   /* ZX_ERR_TIMED_OUT */
    EXIT_NO_MEMORY = 7,   /* ZX_ERR_NO_MEMORY, ZX_ERR_NO_RESOURCES */
    EXIT_LOCAL_IO = 8,    /* reading or writing a local file */
    EXIT_OTHER = 9,       /* any other status */
};


typedef struct iobctl_args {
    const char* token;
    long long handle;
    uint32_t region;
    uint64_t offset;
    uint64_t length;
    bool have_length;
    const char* in;
    const char* out;
    uint32_t set, clear;
    bool peer;
    uint32_t signals;
    long long timeout_ms;
    zx_iob_region_t regions[ZX_IOB_MAX_REGIONS];
    size_t region_count;
    const char* name;
    bool export_tokens;
    uint64_t koid; /* info --koid; 0: not given */
    uint64_t size; /* create-shared-region --size */
    bool have_size;
    /*
     * Tokens named by shared=TOKEN, per region: imported by cmd_create (a handle of this
     * process's session is what the region description must name). Owned: main frees them.
     */
    char* shared_tokens[ZX_IOB_MAX_REGIONS];
} iobctl_args_t;

/* The handle a command acts on: imported from --token, or --handle (this session's). */

/* --json: every command prints one JSON document instead of a table. */
extern bool iobctl__json;

/* The exit code for a status (the EXIT_* above). */
int iobctl__exit_code(zx_status_t st);
/* Reports a failed call on stderr; the exit code for st. */
int iobctl__fail(const char* cmd, zx_status_t st, const char* what);
/* Reports a misuse with the usage text; EXIT_USAGE. */
int iobctl__usage_error(const char* msg);
/* The handle a command acts on: imported from --token, or --handle (this session's). */
zx_status_t iobctl__target(iob_conn_t* c, const iobctl_args_t* a, zx_handle_t* h);
/* Prints j indented with sorted keys, and releases it. */
void iobctl__print_json(json_t* j);

/* The commands; each returns iobctl's exit code. */
int cmd_server_info(iob_conn_t* c, const iobctl_args_t* a);
int cmd_list(iob_conn_t* c, const iobctl_args_t* a);
int cmd_info(iob_conn_t* c, const iobctl_args_t* a);
int cmd_create(iob_conn_t* c, const iobctl_args_t* a);
int cmd_create_shared_region(iob_conn_t* c, const iobctl_args_t* a);
int cmd_read(iob_conn_t* c, const iobctl_args_t* a);
int cmd_write(iob_conn_t* c, const iobctl_args_t* a);
int cmd_writev(iob_conn_t* c, const iobctl_args_t* a);
int cmd_signal(iob_conn_t* c, const iobctl_args_t* a);
int cmd_watch(iob_conn_t* c, const iobctl_args_t* a);
int cmd_close(iob_conn_t* c, const iobctl_args_t* a);

#endif /* IOB_CLIENT_IOBCTL_IOBCTL_H_ */
