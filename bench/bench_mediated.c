/* SPDX-License-Identifier: MIT */
/*
 * The mediated transport: Fuchsia's mediated-write ring buffer (docs/zircon-iob.md A.6, A.7), the
 * path for writers that may not map the memory they write into. Part of the iob-bench-iob
 * module (bench.h), so only its children load libiob.
 *
 * The consumer plays the reader of A.7 (Archivist's part in Fuchsia): it creates a shared
 * region and an IOB whose one region is that shared region with the
 * MEDIATED_WRITE_RING_BUFFER discipline, ep0 (its own) may map it read-write (the reader
 * advances tail), ep1 may only write through the server (MEDIATED_WRITE). It maps the
 * region, exports ep1 and hands the token to the producer over the trial's socketpair.
 *
 * The producer imports ep1 and sends every message with zx_iob_writev: iobd's mediator copies
 * it into the ring on the producer's behalf (one synchronous call per message through the
 * producer's request channel in shared memory, as a stream transport pays one system call
 * per message). A full ring (ZX_ERR_NO_SPACE) is
 * retried after yielding the CPU: records never block in the kernel either.
 *
 * The consumer polls head in its mapping and reads each record through shm/mediated.h's
 * validated reader (hostile-input rules: the ring is writable by anyone who may map it
 * writable), checks the tag and the length, copies the payload out and advances tail.
 * Polling memory is the reader's fast path; ZX_IOB_SHARED_REGION_UPDATED is a strobe meant
 * for readers that sleep, and waiting for it costs a server round trip per wake-up.
 */
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <iob/iob.h>
#include <zircon/syscalls.h>

#include "bench/bench.h"
#include "shm/mediated.h"
#include "shm/ring.h"

/* The tag every record of the trial carries; the consumer checks it. */
#define BENCH_MEDIATED_TAG UINT64_C(0x62656e63686d7772) /* "bwmhcneb" */

/* A consumer that sees nothing for this long gives up instead of hanging the run. */
#define BENCH_MEDIATED_STALL_NS (INT64_C(20) * 1000000000)

typedef struct mediated_end {
    iob_client_t* client;
    zx_handle_t ep;
    zx_handle_t shared;
    void* base; /* the consumer's mapping of the shared region */
    uint64_t size;
    iob_mwrb_reader_t reader;
} mediated_end_t;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static zx_status_t consumer_open(const bench_spec_t* spec, mediated_end_t* end, int fd) {
    uint64_t page = zx_system_get_page_size();
    /* The ring's data area is the region minus its header page. */
    uint64_t size = (spec->ring_bytes + page - 1) / page * page + page;
    zx_status_t st = zx_iob_create_shared_region(0, size, &end->shared);
    if (st != ZX_OK) {
        return st;
    }
    zx_iob_region_t region;
    memset(&region, 0, sizeof(region));
    region.type = ZX_IOB_REGION_TYPE_SHARED;
    region.access = ZX_IOB_ACCESS_EP0_CAN_MAP_READ | ZX_IOB_ACCESS_EP0_CAN_MAP_WRITE |
                    ZX_IOB_ACCESS_EP1_CAN_MEDIATED_WRITE;
    region.discipline.type = ZX_IOB_DISCIPLINE_TYPE_MEDIATED_WRITE_RING_BUFFER;
    region.discipline.ring_buffer.tag = BENCH_MEDIATED_TAG;
    region.shared_region.shared_region = end->shared;
    zx_handle_t writer = ZX_HANDLE_INVALID;
    st = zx_iob_create(0, &region, 1, &end->ep, &writer);
    if (st != ZX_OK) {
        return st;
    }
    /* ZX_INFO_IOB_REGIONS says 0 for a shared region's size (as Zircon does): the creator's
     * own figure is the one to map. */
    end->size = size;
    zx_vaddr_t addr = 0;
    if (st == ZX_OK) {
        st = zx_vmar_map_iob(zx_vmar_root_self(),
                             ZX_VM_PERM_READ | ZX_VM_PERM_WRITE | ZX_VM_MAP_RANGE, 0, end->ep, 0,
                             0, (size_t)end->size, &addr);
    }
    if (st == ZX_OK) {
        end->base = (void*)addr;
        st = iob_mwrb_reader_init(&end->reader, end->base, end->size, page);
    }
    char token[IOB_TOKEN_SIZE];
    memset(token, 0, sizeof(token));
    if (st == ZX_OK) {
        st = iob_handle_export(writer, token); /* consumes the writer's handle */
        if (st == ZX_OK) {
            writer = ZX_HANDLE_INVALID;
            st = bench_token_io(fd, token, true);
        }
    }
    if (writer != ZX_HANDLE_INVALID) {
        zx_handle_close(writer);
    }
    return st;
}

zx_status_t bench_mediated_module_open(const bench_spec_t* spec, bench_role_t role, int nfds,
                                       const char* arg, bench_endpoint_t* ep) {
    if (nfds != 1 || arg == NULL || strcmp(arg, "-") == 0) {
        return ZX_ERR_INVALID_ARGS;
    }
    mediated_end_t* end = calloc(1, sizeof(*end));
    if (end == NULL) {
        return ZX_ERR_NO_MEMORY;
    }
    end->ep = ZX_HANDLE_INVALID;
    end->shared = ZX_HANDLE_INVALID;
    ep->priv = end;
    int fd = BENCH_FD_BASE;
    zx_status_t st = iob_client_connect(arg, &end->client);
    if (st == ZX_OK) {
        if (role == BENCH_CONSUMER) {
            st = consumer_open(spec, end, fd);
        } else {
            char token[IOB_TOKEN_SIZE];
            st = bench_token_io(fd, token, false);
            if (st == ZX_OK) {
                st = iob_handle_import(token, &end->ep);
            }
        }
    }
    close(fd);
    if (st != ZX_OK) {
        bench_mediated_module_close(ep);
    }
    return st;
}

void bench_mediated_module_close(bench_endpoint_t* ep) {
    mediated_end_t* end = ep->priv;
    if (end == NULL) {
        return;
    }
    if (end->base != NULL) {
        zx_vmar_unmap(zx_vmar_root_self(), (zx_vaddr_t)end->base, end->size);
    }
    zx_handle_t handles[2] = {end->ep, end->shared};
    zx_handle_close_many(handles, 2);
    iob_client_close(end->client);
    free(end);
    ep->priv = NULL;
}

zx_status_t bench_mediated_module_send(bench_endpoint_t* ep, const void* buf, size_t len) {
    mediated_end_t* end = ep->priv;
    zx_iovec_t vector = {(void*)(uintptr_t)buf, len};
    for (;;) {
        zx_status_t st = zx_iob_writev(end->ep, 0, 0, &vector, 1);
        if (st != ZX_ERR_NO_SPACE) {
            return st;
        }
        sched_yield();
    }
}

zx_status_t bench_mediated_module_recv(bench_endpoint_t* ep, void* buf, size_t len) {
    mediated_end_t* end = ep->priv;
    int64_t give_up = 0;
    for (uint32_t spins = 0;; spins++) {
        iob_mwrb_record_t record;
        zx_status_t st = iob_mwrb_peek(&end->reader, &record, buf, len);
        if (st == ZX_OK) {
            if (record.tag != BENCH_MEDIATED_TAG || record.length != len) {
                return ZX_ERR_IO_DATA_INTEGRITY;
            }
            return iob_mwrb_advance(&end->reader, &record);
        }
        if (st == ZX_ERR_BUFFER_TOO_SMALL) {
            return ZX_ERR_IO_DATA_INTEGRITY; /* a record longer than any the producer sends */
        }
        if (st != ZX_ERR_SHOULD_WAIT) {
            return st;
        }
        /*
         * Empty: sleep instead of spinning, 1 ms as a log reader that drains periodically
         * does (iob-bench-mediated's reader too). On a small host the writer and iobd's
         * mediator need the CPUs: a reader that spins takes one from them, and one that woke
         * every 50 us cost the writer about a third of its rate on a 2-CPU VM. The ring
         * (2 MiB at small sizes) holds about 20 ms of 64-byte records, so the nap costs no
         * throughput.
         */
        if (spins > 64) {
            struct timespec nap = {.tv_sec = 0, .tv_nsec = 1000000};
            nanosleep(&nap, NULL);
        } else {
            cpu_relax();
        }
        if ((spins & 0xffu) == 0xffu) {
            int64_t now = iob_ring_now();
            if (give_up == 0) {
                give_up = now + BENCH_MEDIATED_STALL_NS;
            } else if (now >= give_up) {
                return ZX_ERR_TIMED_OUT;
            }
        }
    }
}
