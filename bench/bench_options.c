/* SPDX-License-Identifier: MIT */
/* iob-bench's command line: flags, defaults (--quick's among them) and output paths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench.h"

static uint64_t parse_size(const char* s) {
    char* end;
    uint64_t v = strtoull(s, &end, 10);
    if (*end == 'K' || *end == 'k') {
        v <<= 10;
    } else if (*end == 'M' || *end == 'm') {
        v <<= 20;
    } else if (*end == 'G' || *end == 'g') {
        v <<= 30;
    }
    return v;
}

static void usage(void) {
    fprintf(stderr,
            "usage: iob-bench [--quick] [--csv FILE] [--json FILE] [--plot FILE.png]\n"
            "                 [--latency-csv FILE] [--out DIR] [--trials N] [--duration-ms N]\n"
            "                 [--sizes 8,64,4K,...] [--transports bare-ring,memcpy,...]\n"
            "                 [--cpus P,C] [--batch N] [--ring-bytes N] [--reserve-hugepages]\n"
            "                 [--no-block] [--no-paced] [--no-latency] [--no-2m]\n"
            "                 [--verify full|sampled]   (what consumers check; sampled: each\n"
            "                 message's sequence and first and last 8 bytes, every 256th in full)\n"
            "environment: IOB_SERVER measures that iobd's backing only (otherwise iob-bench\n"
            "starts a private iobd per backing); IOBD names the iobd binary to start\n");
}

static int parse_sizes(const char* v, bench_options_t* o) {
    char* copy = strdup(v);
    int rc = copy != NULL ? 0 : -1;
    for (char* tok = copy != NULL ? strtok(copy, ",") : NULL; tok != NULL && o->nsizes < 32;
         tok = strtok(NULL, ",")) {
        uint64_t sz = parse_size(tok);
        if (sz < 8 || sz % 8 != 0) {
            fprintf(stderr, "iob-bench: sizes must be multiples of 8 (got %s)\n", tok);
            rc = -1;
            break;
        }
        o->sizes[o->nsizes++] = sz;
    }
    free(copy);
    return rc;
}

static int parse_transports(const char* v, bench_options_t* o) {
    for (size_t t = 0; t < bench_transport_count; t++) {
        o->transport_on[t] = false;
    }
    char* copy = strdup(v);
    int rc = copy != NULL ? 0 : -1;
    for (char* tok = copy != NULL ? strtok(copy, ",") : NULL; tok != NULL;
         tok = strtok(NULL, ",")) {
        int t = bench_transport_find(tok);
        if (t < 0) {
            fprintf(stderr, "iob-bench: unknown transport %s\n", tok);
            rc = -1;
            break;
        }
        o->transport_on[t] = true;
    }
    free(copy);
    return rc;
}

/* A flag without a value; false when a is none of them. */
static bool parse_flag(const char* a, bench_options_t* o) {
    if (strcmp(a, "--quick") == 0) {
        o->quick = true;
    } else if (strcmp(a, "--reserve-hugepages") == 0) {
        o->reserve_hugepages = true;
    } else if (strcmp(a, "--no-block") == 0) {
        o->block = false;
    } else if (strcmp(a, "--no-paced") == 0) {
        o->paced = false;
    } else if (strcmp(a, "--no-latency") == 0) {
        o->latency = false;
    } else if (strcmp(a, "--no-2m") == 0) {
        o->two_meg = false;
    } else {
        return false;
    }
    return true;
}

/* A flag with its value v; 0 when done, -1 when a is unknown or v is wrong. */
static int parse_value(const char* a, const char* v, bench_options_t* o, int64_t* duration_ms) {
    if (strcmp(a, "--csv") == 0) {
        o->csv = v;
    } else if (strcmp(a, "--json") == 0) {
        o->json = v;
    } else if (strcmp(a, "--plot") == 0) {
        o->plot = v;
    } else if (strcmp(a, "--latency-csv") == 0) {
        o->latency_csv = v;
    } else if (strcmp(a, "--out") == 0) {
        o->out_dir = v;
    } else if (strcmp(a, "--trials") == 0) {
        o->trials = atoi(v);
    } else if (strcmp(a, "--duration-ms") == 0) {
        *duration_ms = atoll(v);
    } else if (strcmp(a, "--sizes") == 0) {
        return parse_sizes(v, o);
    } else if (strcmp(a, "--transports") == 0) {
        return parse_transports(v, o);
    } else if (strcmp(a, "--cpus") == 0) {
        return sscanf(v, "%d,%d", &o->cpu[0], &o->cpu[1]) == 2 ? 0 : -1;
    } else if (strcmp(a, "--batch") == 0) {
        o->batch = (uint32_t)atoi(v);
    } else if (strcmp(a, "--ring-bytes") == 0) {
        o->ring_bytes = parse_size(v);
    } else if (strcmp(a, "--verify") == 0 && strcmp(v, "full") == 0) {
        o->verify = BENCH_VERIFY_FULL;
    } else if (strcmp(a, "--verify") == 0 && strcmp(v, "sampled") == 0) {
        o->verify = BENCH_VERIFY_SAMPLED;
    } else {
        return -1;
    }
    return 0;
}

static const char* join_path(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s", dir, name);
    }
    return p;
}

/* What was not given: trials, durations, sizes (fewer with --quick) and the --out files. */
static void fill_defaults(bench_options_t* o, int64_t duration_ms) {
    if (o->trials <= 0) {
        o->trials = 5;
    }
    if (o->trials > 16) {
        o->trials = 16;
    }
    if (duration_ms <= 0) {
        duration_ms = o->quick ? 10 : 150;
    }
    o->duration_ns = duration_ms * 1000000;
    o->latency_iters = o->quick ? 20000 : 200000;
    if (o->nsizes == 0 && o->quick) {
        uint64_t q[] = {64, 4096, 65536, 1u << 20};
        for (int i = 0; i < 4; i++) {
            o->sizes[o->nsizes++] = q[i];
        }
    } else if (o->nsizes == 0) {
        for (uint64_t s = 8; s <= (UINT64_C(4) << 20); s <<= 1) {
            o->sizes[o->nsizes++] = s;
        }
    }
    if (o->out_dir != NULL) {
        mkdir(o->out_dir, 0755);
        o->csv = o->csv != NULL ? o->csv : join_path(o->out_dir, "throughput.csv");
        o->json = o->json != NULL ? o->json : join_path(o->out_dir, "results.json");
        o->plot = o->plot != NULL ? o->plot : join_path(o->out_dir, "throughput.png");
        o->latency_csv =
            o->latency_csv != NULL ? o->latency_csv : join_path(o->out_dir, "latency.csv");
    }
}

int bench_options_parse(int argc, char** argv, bench_options_t* o) {
    memset(o, 0, sizeof(*o));
    o->cpu[0] = 0;
    o->cpu[1] = 1;
    o->batch = 32;
    o->block = o->paced = o->latency = o->two_meg = true;
    for (size_t t = 0; t < bench_transport_count; t++) {
        o->transport_on[t] = true;
    }
    int64_t duration_ms = 0;
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage();
            exit(0);
        }
        if (parse_flag(a, o)) {
            continue;
        }
        if (i + 1 >= argc || parse_value(a, argv[i + 1], o, &duration_ms) != 0) {
            usage();
            return -1;
        }
        i++;
    }
    fill_defaults(o, duration_ms);
    return 0;
}
