/* SPDX-License-Identifier: MIT */
/* Reports: the table on stdout, CSV, JSON with the machine's description, a gnuplot PNG. */
#include <errno.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"

extern char** environ;

static void read_loadavg(double out[3]) {
    out[0] = out[1] = out[2] = -1;
    FILE* f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fscanf(f, "%lf %lf %lf", &out[0], &out[1], &out[2]) != 3) {
            out[0] = out[1] = out[2] = -1;
        }
        fclose(f);
    }
}

void bench_machine_describe(bench_machine_t* m) {
    memset(m, 0, sizeof(*m));
    snprintf(m->cpu_model, sizeof(m->cpu_model), "unknown");
    FILE* f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[256];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "model name", 10) == 0) {
                char* colon = strchr(line, ':');
                if (colon != NULL) {
                    colon += 2;
                    colon[strcspn(colon, "\n")] = '\0';
                    snprintf(m->cpu_model, sizeof(m->cpu_model), "%s", colon);
                }
                break;
            }
        }
        fclose(f);
    }
    m->cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(m->kernel, sizeof(m->kernel), "%.40s %.80s %.30s", u.sysname, u.release, u.machine);
    }
    read_loadavg(m->load_before);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(m->started, sizeof(m->started), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void human_rate(double v, char* out, size_t len) {
    if (v >= 1e9) {
        snprintf(out, len, "%.2fG", v / 1e9);
    } else if (v >= 1e6) {
        snprintf(out, len, "%.2fM", v / 1e6);
    } else if (v >= 1e3) {
        snprintf(out, len, "%.1fk", v / 1e3);
    } else {
        snprintf(out, len, "%.0f", v);
    }
}

static void human_size(uint64_t b, char* out, size_t len) {
    if (b >= (1u << 20) && b % (1u << 20) == 0) {
        snprintf(out, len, "%" PRIu64 "M", b >> 20);
    } else if (b >= 1024 && b % 1024 == 0) {
        snprintf(out, len, "%" PRIu64 "K", b >> 10);
    } else {
        snprintf(out, len, "%" PRIu64, b);
    }
}

void bench_report_table(FILE* out, const bench_row_t* rows, size_t n) {
    fprintf(out, "%-9s %-8s %-4s %-5s %-5s %6s %10s %19s %11s %8s %8s %8s %s\n", "transport",
            "mode", "back", "wait", "load", "size", "msgs/s", "(min..max)", "payload B/s",
            "cpu ns/m", "waits/m", "wakes/m", "verified");
    for (size_t i = 0; i < n; i++) {
        const bench_row_t* r = &rows[i];
        char size[32];
        human_size(r->msg_bytes, size, sizeof(size));
        if (r->skipped) {
            fprintf(out, "%-9s %-8s %-4s %-5s %-5s %6s   skipped: %s\n", r->transport,
                    bench_mode_name(r->mode), r->backing, bench_wait_name(r->wait),
                    bench_load_name(r->load), size, r->note);
            continue;
        }
        char med[16];
        char mn[16];
        char mx[16];
        char bw[16];
        char spread[40];
        human_rate(r->msgs_per_s.median, med, sizeof(med));
        human_rate(r->msgs_per_s.min, mn, sizeof(mn));
        human_rate(r->msgs_per_s.max, mx, sizeof(mx));
        human_rate(r->payload_bytes_per_s, bw, sizeof(bw));
        snprintf(spread, sizeof(spread), "(%s..%s)", mn, mx);
        fprintf(out, "%-9s %-8s %-4s %-5s %-5s %6s %10s %19s %11s %8.1f %8.4f %8.4f %s%s%s\n",
                r->transport, bench_mode_name(r->mode), r->backing, bench_wait_name(r->wait),
                bench_load_name(r->load), size, med, spread, bw, r->cpu_ns_per_msg,
                r->futex_waits_per_msg, r->futex_wakes_per_msg, r->verified ? "yes" : "NO",
                r->note[0] ? "  " : "", r->note);
    }
}

void bench_report_latency_table(FILE* out, const bench_latency_row_t* rows, size_t n) {
    fprintf(out, "\nround trip, 64 B messages (ns; median of %s trials, p50 spread in brackets)\n",
            n > 0 ? "the" : "no");
    fprintf(out, "%-12s %10s %21s %10s %10s\n", "path", "p50", "(min..max)", "p99", "p99.9");
    for (size_t i = 0; i < n; i++) {
        const bench_latency_row_t* r = &rows[i];
        if (r->skipped) {
            fprintf(out, "%-12s skipped: %s\n", r->kind, r->note);
            continue;
        }
        char spread[48];
        snprintf(spread, sizeof(spread), "(%.0f..%.0f)", r->p50_min, r->p50_max);
        fprintf(out, "%-12s %10.0f %21s %10.0f %10.0f\n", r->kind, r->p50_ns, spread, r->p99_ns,
                r->p999_ns);
    }
}

static void csv_note(FILE* f, const char* note) {
    fputc('"', f);
    for (const char* p = note; *p; p++) {
        if (*p == '"') {
            fputc('"', f);
        }
        fputc(*p, f);
    }
    fputc('"', f);
}

int bench_report_csv(const char* path, const bench_row_t* rows, size_t n) {
    FILE* f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f, "transport,mode,backing,wait,load,msg_bytes,msgs_per_s,payload_bytes_per_s,"
               "verified,verify,trials,msgs_per_s_min,msgs_per_s_max,cpu_ns_per_msg,"
               "futex_waits_per_msg,futex_wakes_per_msg,note\n");
    for (size_t i = 0; i < n; i++) {
        const bench_row_t* r = &rows[i];
        if (r->skipped) {
            /* Skipped measurements have no figures; they are listed in the JSON and table. */
            continue;
        }
        fprintf(f, "%s,%s,%s,%s,%s,%" PRIu64 ",%.0f,%.0f,%s,%s,%d,%.0f,%.0f,%.2f,%.6f,%.6f,",
                r->transport, bench_mode_name(r->mode), r->backing, bench_wait_name(r->wait),
                bench_load_name(r->load), r->msg_bytes, r->msgs_per_s.median,
                r->payload_bytes_per_s, r->verified ? "yes" : "no", bench_verify_name(r->verify),
                r->msgs_per_s.n,
                r->msgs_per_s.min, r->msgs_per_s.max, r->cpu_ns_per_msg,
                r->futex_waits_per_msg, r->futex_wakes_per_msg);
        csv_note(f, r->note);
        fputc('\n', f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int bench_report_latency_csv(const char* path, const bench_latency_row_t* rows, size_t n) {
    FILE* f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f, "path,msg_bytes,trials,p50_ns,p99_ns,p999_ns,p50_min_ns,p50_max_ns\n");
    for (size_t i = 0; i < n; i++) {
        const bench_latency_row_t* r = &rows[i];
        if (!r->skipped) {
            fprintf(f, "%s,64,%d,%.0f,%.0f,%.0f,%.0f,%.0f\n", r->kind, r->trials, r->p50_ns,
                    r->p99_ns, r->p999_ns, r->p50_min, r->p50_max);
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

static void json_str(FILE* f, const char* s) {
    fputc('"', f);
    for (const char* p = s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p, f);
        } else if ((unsigned char)*p < 0x20) {
            fprintf(f, "\\u%04x", (unsigned)(unsigned char)*p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

int bench_report_json(const char* path, const bench_machine_t* m, const bench_row_t* rows,
                      size_t n, const bench_latency_row_t* lat, size_t nlat, int trials,
                      bool quick) {
    FILE* f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    double after[3];
    read_loadavg(after);
    fprintf(f, "{\n  \"machine\": {\"cpu\": ");
    json_str(f, m->cpu_model);
    fprintf(f, ", \"cpus\": %d, \"kernel\": ", m->cpus);
    json_str(f, m->kernel);
    fprintf(f, ", \"page_backing\": ");
    json_str(f, m->backing_note);
    fprintf(f,
            ", \"loadavg_before\": [%.2f, %.2f, %.2f], \"loadavg_after\": [%.2f, %.2f, %.2f], "
            "\"started\": ",
            m->load_before[0], m->load_before[1], m->load_before[2], after[0], after[1],
            after[2]);
    json_str(f, m->started);
    /* One policy for every row of a run (iob-bench --verify). */
    fprintf(f, "},\n  \"trials\": %d,\n  \"quick\": %s,\n  \"verify\": \"%s\",\n"
               "  \"throughput\": [\n",
            trials, quick ? "true" : "false",
            bench_verify_name(n > 0 ? rows[0].verify : BENCH_VERIFY_SAMPLED));
    for (size_t i = 0; i < n; i++) {
        const bench_row_t* r = &rows[i];
        fprintf(f, "    {\"transport\": \"%s\", \"mode\": \"%s\", \"backing\": \"%s\", "
                   "\"wait\": \"%s\", \"load\": \"%s\", \"msg_bytes\": %" PRIu64 ", "
                   "\"verify\": \"%s\", ",
                r->transport, bench_mode_name(r->mode), r->backing, bench_wait_name(r->wait),
                bench_load_name(r->load), r->msg_bytes, bench_verify_name(r->verify));
        if (r->skipped) {
            fprintf(f, "\"skipped\": true, \"note\": ");
        } else {
            fprintf(f, "\"msgs_per_s_trials\": [");
            for (int k = 0; k < r->trial_count; k++) {
                fprintf(f, "%s%.0f", k > 0 ? ", " : "", r->trial_rates[k]);
            }
            fprintf(f, "], ");
            if (r->reference_count > 0) {
                fprintf(f, "\"reference\": ");
                json_str(f, r->reference);
                fprintf(f, ", \"reference_msgs_per_s_trials\": [");
                for (int k = 0; k < r->reference_count; k++) {
                    fprintf(f, "%s%.0f", k > 0 ? ", " : "", r->reference_rates[k]);
                }
                fprintf(f, "], ");
            }
            fprintf(f,
                    "\"msgs_per_s\": %.0f, \"msgs_per_s_min\": %.0f, \"msgs_per_s_max\": %.0f, "
                    "\"payload_bytes_per_s\": %.0f, \"cpu_ns_per_msg\": %.2f, "
                    "\"futex_waits_per_msg\": %.6f, \"futex_wakes_per_msg\": %.6f, "
                    "\"trials\": %d, \"verified\": %s, \"note\": ",
                    r->msgs_per_s.median, r->msgs_per_s.min, r->msgs_per_s.max,
                    r->payload_bytes_per_s, r->cpu_ns_per_msg, r->futex_waits_per_msg,
                    r->futex_wakes_per_msg, r->msgs_per_s.n, r->verified ? "true" : "false");
        }
        json_str(f, r->note);
        fprintf(f, "}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "  ],\n  \"round_trip_64B\": [\n");
    for (size_t i = 0; i < nlat; i++) {
        const bench_latency_row_t* r = &lat[i];
        fprintf(f, "    {\"path\": \"%s\", ", r->kind);
        if (r->skipped) {
            fprintf(f, "\"skipped\": true, \"note\": ");
            json_str(f, r->note);
        } else {
            fprintf(f,
                    "\"trials\": %d, \"p50_ns\": %.0f, \"p99_ns\": %.0f, \"p999_ns\": %.0f, "
                    "\"p50_min_ns\": %.0f, \"p50_max_ns\": %.0f",
                    r->trials, r->p50_ns, r->p99_ns, r->p999_ns, r->p50_min, r->p50_max);
            /* Every path's trial k ran in round k: ratios.py pairs them. */
            fprintf(f, ", \"p50_ns_trials\": [");
            for (int k = 0; k < r->trials && k < 16; k++) {
                fprintf(f, "%s%.0f", k > 0 ? ", " : "", r->result[k].p50_ns);
            }
            fprintf(f, "]");
        }
        fprintf(f, "}%s\n", i + 1 < nlat ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/*
 * The panels a reader compares (bench/plot_throughput.gp, IOB_BENCH_PLOT_SCRIPT): the script
 * reads the rows as CSV, so the same picture can be drawn again from a run's throughput.csv.
 * The rows go to a CSV beside the picture for the script, and are removed after it.
 */
int bench_report_plot(const char* png_path, const bench_row_t* rows, size_t n) {
    char csv[4096], expr[8400];
    if (strchr(png_path, '\'') != NULL || /* gnuplot's quotes below */
        snprintf(csv, sizeof(csv), "%s.csv", png_path) >= (int)sizeof(csv) ||
        bench_report_csv(csv, rows, n) != 0) {
        return -1;
    }
    snprintf(expr, sizeof(expr), "csv='%s'; png='%s'", csv, png_path);
    char* argv[] = {"gnuplot", "-e", expr, IOB_BENCH_PLOT_SCRIPT, NULL};
    pid_t pid;
    int status = -1;
    if (posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ) == 0) {
        waitpid(pid, &status, 0);
    }
    unlink(csv);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}
