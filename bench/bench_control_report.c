/* SPDX-License-Identifier: MIT */
/* iob-bench-control: the table on stdout, the CSV and the JSON. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_control.h"

static void fmt_num(char* out, size_t len, double v, bool present) {
    if (!present) {
        snprintf(out, len, "-");
    } else if (v >= 100000) {
        snprintf(out, len, "%.0f", v);
    } else if (v >= 100) {
        snprintf(out, len, "%.1f", v);
    } else {
        snprintf(out, len, "%.2f", v);
    }
}

void bctl_report_table(FILE* out, const bctl_row_t* rows, size_t n) {
    fprintf(out, "%-2s %-34s %-5s %-4s %2s %5s %10s %10s %10s  %-26s %7s %-7s %-7s %s\n", "", "figure",
            "via", "back", "cl", "n", "p50_us", "p99_us", "ops/s", "reference", "ratio", "limit",
            "verdict", "note");
    const char* last_section = "";
    for (size_t i = 0; i < n; i++) {
        const bctl_row_t* r = &rows[i];
        if (strcmp(r->section, last_section) != 0) {
            const char* title =
                strcmp(r->section, "A") == 0   ? "-- A. management plane (issue 3) --"
                : strcmp(r->section, "B") == 0 ? "-- B. mapping a 64 MiB region (issue 4) --"
                : strcmp(r->section, "C") == 0 ? "-- C. scale: cost against what iobd holds --"
                                               : "-- D. load: concurrent client processes --";
            fprintf(out, "%s\n", title);
            last_section = r->section;
        }
        char p50[24], p99[24], ops[24], ratio[24];
        fmt_num(p50, sizeof p50, r->lat_us.p50, r->lat_us.n > 0);
        fmt_num(p99, sizeof p99, r->lat_us.p99, r->lat_us.n > 0);
        fmt_num(ops, sizeof ops, r->ops_per_s, r->ops_per_s > 0);
        if (isnan(r->ratio)) {
            snprintf(ratio, sizeof ratio, "-");
        } else {
            snprintf(ratio, sizeof ratio, "%.3f", r->ratio);
        }
        fprintf(out, "%-2s %-34s %-5s %-4s %2d %5zu %10s %10s %10s  %-26s %7s %-7s %-7s %s\n",
                r->section, r->figure, r->transport, r->backing, r->clients, r->lat_us.n, p50, p99,
                ops, r->reference[0] ? r->reference : "-", ratio, r->limit[0] ? r->limit : "-",
                r->verdict, r->note);
    }
}

/* RFC 4180: quote every text field, double the quotes inside. */
static void csv_text(FILE* f, const char* s) {
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"') {
            fputc('"', f);
        }
        fputc(*s, f);
    }
    fputc('"', f);
}

bool bctl_report_csv(const char* path, const bctl_row_t* rows, size_t n) {
    FILE* f = fopen(path, "w");
    if (f == NULL) {
        return false;
    }
    fprintf(f, "section,figure,transport,backing,clients,n,p50_us,p99_us,min_us,max_us,mean_us,"
               "ops_per_s,reference,ratio,limit,verdict,note\n");
    for (size_t i = 0; i < n; i++) {
        const bctl_row_t* r = &rows[i];
        fprintf(f, "%s,", r->section);
        csv_text(f, r->figure);
        fprintf(f, ",%s,%s,%d,%zu,%.3f,%.3f,%.3f,%.3f,%.3f,%.1f,", r->transport, r->backing,
                r->clients, r->lat_us.n, r->lat_us.p50, r->lat_us.p99, r->lat_us.min,
                r->lat_us.max, r->lat_us.mean, r->ops_per_s);
        csv_text(f, r->reference);
        if (isnan(r->ratio)) {
            fprintf(f, ",,");
        } else {
            fprintf(f, ",%.4f,", r->ratio);
        }
        csv_text(f, r->limit);
        fprintf(f, ",%s,", r->verdict);
        csv_text(f, r->note);
        fputc('\n', f);
    }
    return fclose(f) == 0;
}

static void json_text(FILE* f, const char* s) {
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

bool bctl_report_json(const char* path, const bctl_run_info_t* info, const bctl_row_t* rows,
                      size_t n) {
    FILE* f = fopen(path, "w");
    if (f == NULL) {
        return false;
    }
    fprintf(f, "{\n  \"benchmark\": \"iob-bench-control\",\n  \"started\": ");
    json_text(f, info->started);
    fprintf(f, ",\n  \"kernel\": ");
    json_text(f, info->kernel);
    fprintf(f, ",\n  \"cpu_model\": ");
    json_text(f, info->cpu_model);
    fprintf(f, ",\n  \"cpus\": %d,\n  \"quick\": %s,\n  \"hugepages\": ", info->cpus,
            info->quick ? "true" : "false");
    json_text(f, info->hugepages_note);
    fprintf(f, ",\n  \"load_before\": %.2f,\n  \"load_after\": %.2f,\n  \"rows\": [\n",
            info->load_before, info->load_after);
    for (size_t i = 0; i < n; i++) {
        const bctl_row_t* r = &rows[i];
        fprintf(f, "    {\"section\": \"%s\", \"figure\": ", r->section);
        json_text(f, r->figure);
        fprintf(f, ", \"transport\": \"%s\", \"backing\": \"%s\", \"clients\": %d, \"n\": %zu",
                r->transport, r->backing, r->clients, r->lat_us.n);
        if (r->lat_us.n > 0) {
            fprintf(f, ", \"p50_us\": %.3f, \"p99_us\": %.3f, \"min_us\": %.3f, \"max_us\": %.3f, "
                       "\"mean_us\": %.3f",
                    r->lat_us.p50, r->lat_us.p99, r->lat_us.min, r->lat_us.max, r->lat_us.mean);
        }
        if (r->ops_per_s > 0) {
            fprintf(f, ", \"ops_per_s\": %.1f", r->ops_per_s);
        }
        fprintf(f, ", \"reference\": ");
        json_text(f, r->reference);
        if (!isnan(r->ratio)) {
            fprintf(f, ", \"ratio\": %.4f", r->ratio);
        }
        fprintf(f, ", \"limit\": ");
        json_text(f, r->limit);
        fprintf(f, ", \"verdict\": \"%s\", \"note\": ", r->verdict);
        json_text(f, r->note);
        fprintf(f, "}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0;
}
