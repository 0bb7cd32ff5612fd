#!/bin/sh
# SPDX-License-Identifier: MIT
# CI smoke test of the scale and load sections of iob-bench-control:
# `iob-bench-control --quick --scale --load --csv FILE` (32 client processes for 3 s, and the
# scale servers at 1,000 IOBs / tokens and 32 sessions). It must exit 0, which the load
# section only does when every effect was accounted for and iobd's state, fds and RSS came
# back; the CSV must then hold those verdicts as "pass" (RSS is not judged in an
# AddressSanitizer build), a positive iteration rate, and measured scale rows. Scale ratios
# are not judged here: at --quick sizes on a shared machine they are smoke figures.
# Exit 77 (skip) when iobd is not built.
#   check_load_csv.sh IOB_BENCH_CONTROL CSV_FILE
set -u
bench=$1
csv=$2
[ -x "$bench" ] || { echo "SKIPPED: $bench not built"; exit 77; }
rm -f "$csv"
"$bench" --quick --scale --load --csv "$csv" >"$csv.stdout" 2>"$csv.stderr"
rc=$?
[ $rc -eq 77 ] && { cat "$csv.stdout"; exit 77; }
if [ $rc -ne 0 ]; then
    echo "iob-bench-control failed ($rc):"; cat "$csv.stderr"; cat "$csv.stdout"; exit 1
fi
[ -s "$csv" ] || { echo "no CSV written"; exit 1; }
awk -F'"' '
NR == 1 { next }
{
    # $1 = "D," ; $2 = figure ; $3 = ",unix,4K,32,n,p50,p99,min,max,mean,ops_per_s,"
    split($3, f, ",")
    sec = substr($1, 1, 1); fig = $2; n = f[5]; p50 = f[6]; ops = f[11]
    if ($0 ~ /,error,"/) { print "line " NR ": error row: " $0; bad = 1 }
    if (sec == "C" && fig ~ /^(create\+close|import), /) {
        if (n + 0 <= 0 || p50 + 0 <= 0) { print "line " NR ": no figures: " $0; bad = 1 }
        scale++
    }
    if (sec == "D" && fig ~ /^iterations/) iters = ops + 0
    # RSS is "info" in an AddressSanitizer build (its quarantine keeps freed memory).
    if (sec == "D" && fig ~ /^(accounting|iobd state|iobd fds|iobd RSS)/) {
        if ($0 ~ /,pass,"/ || (fig ~ /^iobd RSS/ && $0 ~ /,info,".*AddressSanitizer/)) passed++
        else { print "line " NR ": " $0; bad = 1 }
    }
}
END {
    if (scale != 10) { print "expected 10 scale rows, got " scale + 0; bad = 1 }
    if (iters <= 0) { print "no load iterations"; bad = 1 }
    if (passed != 4) { print "expected 4 passing load checks, got " passed + 0; bad = 1 }
    if (bad) exit 1
    print "load: " iters " iterations/s, every check passed; " scale " scale rows"
}' "$csv" || { cat "$csv.stderr"; cat "$csv.stdout"; exit 1; }
