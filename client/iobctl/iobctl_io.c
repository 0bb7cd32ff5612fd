/* SPDX-License-Identifier: MIT */
/*
 * iobctl's commands that make and use IOBs: create (and --export), create-shared-region,
 * read, write, writev, signal, watch and close.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include <zircon/status.h>
#include <zircon/syscalls/iob.h>
#include <zircon/syscalls/object.h>

#include "client/iobctl/iobctl.h"
#include "client/status_text.h"
#include "proto/wire.h"

int cmd_create(iob_conn_t* c, const iobctl_args_t* a) {
    if (a->region_count == 0) {
        return iobctl__usage_error("create: at least one --region");
    }
    zx_iob_region_t regions[ZX_IOB_MAX_REGIONS];
    memcpy(regions, a->regions, a->region_count * sizeof regions[0]);
    for (size_t i = 0; i < a->region_count; i++) {
        if (a->shared_tokens[i] != NULL) {
            zx_status_t ist = iob_conn_handle_import(c, a->shared_tokens[i],
                                                     &regions[i].shared_region.shared_region);
            if (ist != ZX_OK) {
                return iobctl__fail("create: shared region token", ist, NULL);
            }
        }
    }
    zx_handle_t ep0, ep1;
    zx_status_t st = iob_conn_iob_create(c, 0, regions, a->region_count, &ep0, &ep1);
    if (st != ZX_OK) {
        return iobctl__fail("create", st, NULL);
    }
    if (a->name != NULL) {
        st = iob_conn_set_property(c, ep0, ZX_PROP_NAME, a->name, strlen(a->name));
        if (st != ZX_OK) {
            return iobctl__fail("create: name", st, NULL);
        }
    }
    zx_info_handle_basic_t hb;
    iob_conn_get_info(c, ep0, ZX_INFO_HANDLE_BASIC, &hb, sizeof hb, NULL, NULL);
    char t0[IOB_CONN_TOKEN_SIZE] = "", t1[IOB_CONN_TOKEN_SIZE] = "";
    if (a->export_tokens) {
        if ((st = iob_conn_handle_export(c, ep0, t0)) != ZX_OK ||
            (st = iob_conn_handle_export(c, ep1, t1)) != ZX_OK) {
            return iobctl__fail("create: export", st, NULL);
        }
    }
    if (iobctl__json) {
        json_t* j = json_pack("{s:I,s:I}", "koid", (json_int_t)hb.koid, "regions",
                              (json_int_t)a->region_count);
        if (a->export_tokens) {
            json_object_set_new(j, "ep0_token", json_string(t0));
            json_object_set_new(j, "ep1_token", json_string(t1));
        }
        iobctl__print_json(j);
    } else if (a->export_tokens) {
        printf("koid %" PRIu64 "\nep0 %s\nep1 %s\n", hb.koid, t0, t1);
    } else {
        printf("koid %" PRIu64 " (handles close when iobctl exits; use --export to keep it)\n",
               hb.koid);
    }
    return 0;
}

int cmd_read(iob_conn_t* c, const iobctl_args_t* a) {
    if (!a->have_length) {
        return iobctl__usage_error("read: --length");
    }
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st != ZX_OK) {
        return iobctl__fail("read", st, NULL);
    }
    uint8_t* buf = malloc(a->length ? a->length : 1);
    if (buf == NULL) {
        return iobctl__fail("read", ZX_ERR_NO_MEMORY, NULL);
    }
    st = iob_conn_region_read(c, h, a->region, a->offset, buf, a->length);
    if (st != ZX_OK) {
        free(buf);
        return iobctl__fail("read", st, NULL);
    }
    FILE* f = a->out != NULL && strcmp(a->out, "-") != 0 ? fopen(a->out, "wb") : stdout;
    if (f == NULL || fwrite(buf, 1, a->length, f) != a->length) {
        fprintf(stderr, "iobctl: read: %s: %s\n", a->out ? a->out : "stdout", strerror(errno));
        free(buf);
        return EXIT_LOCAL_IO;
    }
    if (f != stdout) {
        fclose(f);
    }
    free(buf);
    return 0;
}

int cmd_write(iob_conn_t* c, const iobctl_args_t* a) {
    FILE* f = a->in != NULL && strcmp(a->in, "-") != 0 ? fopen(a->in, "rb") : stdin;
    if (f == NULL) {
        fprintf(stderr, "iobctl: write: %s: %s\n", a->in, strerror(errno));
        return EXIT_LOCAL_IO;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t* buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            return iobctl__fail("write", ZX_ERR_NO_MEMORY, NULL);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    if (f != stdin) {
        fclose(f);
    }
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st == ZX_OK) {
        st = iob_conn_region_write(c, h, a->region, a->offset, buf, len);
    }
    free(buf);
    return st == ZX_OK ? 0 : iobctl__fail("write", st, NULL);
}

int cmd_create_shared_region(iob_conn_t* c, const iobctl_args_t* a) {
    if (!a->have_size) {
        return iobctl__usage_error("create-shared-region: --size N");
    }
    zx_handle_t h;
    zx_status_t st = iob_conn_shared_region_create(c, 0, a->size, &h);
    if (st != ZX_OK) {
        return iobctl__fail("create-shared-region", st, NULL);
    }
    char token[IOB_CONN_TOKEN_SIZE] = "";
    if (a->export_tokens && (st = iob_conn_handle_export(c, h, token)) != ZX_OK) {
        return iobctl__fail("create-shared-region: export", st, NULL);
    }
    if (iobctl__json) {
        iobctl__print_json(a->export_tokens ? json_pack("{s:s}", "token", token)
                                            : json_pack("{s:I}", "handle", (json_int_t)h));
    } else if (a->export_tokens) {
        printf("shared %s\n", token);
    } else {
        printf("handle %u (closes when iobctl exits; use --export to keep it)\n", (unsigned)h);
    }
    return 0;
}

/* One record into a MEDIATED_WRITE_RING_BUFFER region (over gRPC: iobctl does not map). */
int cmd_writev(iob_conn_t* c, const iobctl_args_t* a) {
    FILE* f = a->in != NULL && strcmp(a->in, "-") != 0 ? fopen(a->in, "rb") : stdin;
    if (f == NULL) {
        fprintf(stderr, "iobctl: writev: %s: %s\n", a->in, strerror(errno));
        return EXIT_LOCAL_IO;
    }
    /* One byte more than a record holds: a longer input is refused by iobd (A.6 step 8). */
    static uint8_t buf[65520];
    size_t len = fread(buf, 1, sizeof buf, f);
    if (f != stdin) {
        fclose(f);
    }
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st == ZX_OK) {
        iob_conn_writev_vec_t v = {.capacity = len, .readable = len < sizeof buf};
        st = iob_conn_iob_writev(c, h, 0, a->region, 1, false, &v, v.readable ? buf : NULL,
                                 v.readable ? len : 0);
    }
    return st == ZX_OK ? 0 : iobctl__fail("writev", st, NULL);
}

int cmd_signal(iob_conn_t* c, const iobctl_args_t* a) {
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st == ZX_OK) {
        st = a->peer ? iob_conn_object_signal_peer(c, h, a->clear, a->set)
                     : iob_conn_object_signal(c, h, a->clear, a->set);
    }
    return st == ZX_OK ? 0 : iobctl__fail("signal", st, NULL);
}

int cmd_watch(iob_conn_t* c, const iobctl_args_t* a) {
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st != ZX_OK) {
        return iobctl__fail("watch", st, NULL);
    }
    zx_signals_t want = a->signals ? a->signals : 0xffffffffu;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    zx_time_t deadline = a->timeout_ms < 0 ? ZX_TIME_INFINITE
                                           : (zx_time_t)ts.tv_sec * 1000000000 + ts.tv_nsec +
                                                 (zx_time_t)a->timeout_ms * 1000000;
    zx_signals_t obs = 0;
    st = iob_conn_wait_one(c, h, want, deadline, &obs);
    if (iobctl__json) {
        iobctl__print_json(json_pack("{s:s,s:I}", "status", zx_status_get_string(st), "observed",
                                     (json_int_t)obs));
    } else {
        printf("%s observed 0x%08x\n", zx_status_get_string(st), obs);
    }
    return st == ZX_OK ? 0 : iobctl__exit_code(st);
}

int cmd_close(iob_conn_t* c, const iobctl_args_t* a) {
    zx_handle_t h;
    zx_status_t st = iobctl__target(c, a, &h);
    if (st == ZX_OK) {
        st = iob_conn_handle_close(c, h);
    }
    return st == ZX_OK ? 0 : iobctl__fail("close", st, NULL);
}
