#!/bin/sh
# SPDX-License-Identifier: MIT
# CI smoke test of iob-bench-control: runs `iob-bench-control --quick --csv FILE` and checks
# that the CSV has the columns of the report and measured rows for both issues: section A
# (the unary floor and create+close, Unix socket) and section B (create and import+map of
# the 64 MiB region, on whichever backing the machine allows). Verdicts are results, not
# failures: only errors and missing figures fail. Exit 77 (skip) when iobd is not built.
#   check_control_csv.sh IOB_BENCH_CONTROL CSV_FILE
set -u
bench=$1
csv=$2
[ -x "$bench" ] || { echo "SKIPPED: $bench not built"; exit 77; }
rm -f "$csv"
"$bench" --quick --csv "$csv" >"$csv.stdout" 2>"$csv.stderr"
rc=$?
[ $rc -eq 77 ] && { cat "$csv.stdout"; exit 77; }
if [ $rc -ne 0 ]; then
    echo "iob-bench-control failed ($rc):"; cat "$csv.stderr"; cat "$csv.stdout"; exit 1
fi
[ -s "$csv" ] || { echo "no CSV written"; exit 1; }
# Fields are quoted where they hold text, so split on the unquoted columns only: the first
# (section) and the numeric ones never contain commas; figure is field 2 in quotes.
awk -F'"' '
NR == 1 {
    if ($0 !~ /^section,figure,transport,backing,clients,n,p50_us,p99_us,/) { print "bad header: " $0; bad = 1 }
    next
}
{
    # $1 = "A," ; $2 = figure ; $3 = ",unix,4K,1,n,p50,..." up to the reference
    split($3, f, ",")
    sec = substr($1, 1, 1); fig = $2; via = f[2]; n = f[5]; p50 = f[6]
    if ($0 ~ /,error,"/) { print "line " NR ": error row: " $0; bad = 1 }
    if ($0 ~ /,skip,"/) next
    if (n !~ /^[0-9]+$/ || n + 0 <= 0 || p50 + 0 <= 0) { print "line " NR ": no figures: " $0; bad = 1 }
    if (sec == "A" && via == "unix" && fig ~ /^unary GetSignals/) a_unary = 1
    if (sec == "A" && via == "unix" && fig ~ /^create\+close \(2 calls\)/) a_cc = 1
    if (sec == "A" && fig ~ /^4 clients: create\+close/) a_tput = 1
    if (sec == "B" && fig ~ /^create 64 MiB IOB/) b_create = 1
    if (sec == "B" && fig ~ /^import\+map\+read/) b_map = 1
    rows++
}
END {
    if (!a_unary || !a_cc || !a_tput) { print "missing section A rows"; bad = 1 }
    if (!b_create || !b_map) { print "missing section B rows"; bad = 1 }
    if (bad) exit 1
    print rows " measured rows"
}' "$csv" || { cat "$csv.stdout"; exit 1; }
