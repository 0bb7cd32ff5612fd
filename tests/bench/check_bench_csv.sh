#!/bin/sh
# SPDX-License-Identifier: MIT
# CI smoke test of iob-bench: runs `iob-bench --quick --csv FILE` and checks the CSV.
#   check_bench_csv.sh IOB_BENCH CSV_FILE [REQUIRED_TRANSPORT...]
# Every row must be verified=yes and use the documented vocabularies; each required transport
# must have rows at 64 B and 64 KiB on 4K pages, and on 2M pages too as soon as any required
# transport has a 2M row (then hugepages were there for all of them: a 2M row that only one
# ring got means the other failed to get them). Exit 77 (skip) when the machine cannot run
# the benchmark.
set -u
bench=$1
csv=$2
shift 2
[ -x "$bench" ] || { echo "SKIPPED: $bench not built"; exit 77; }
rm -f "$csv"
if ! "$bench" --quick --csv "$csv" >"$csv.stdout" 2>"$csv.stderr"; then
    echo "iob-bench failed:"; cat "$csv.stderr"; tail -40 "$csv.stdout"; exit 1
fi
[ -s "$csv" ] || { echo "no CSV written"; exit 1; }
awk -F, -v required="$*" '
NR == 1 {
    n = split("transport mode backing wait msg_bytes msgs_per_s payload_bytes_per_s verified verify", need, " ")
    for (i = 1; i <= NF; i++) col[$i] = i
    for (i = 1; i <= n; i++) if (!(need[i] in col)) { print "missing column " need[i]; bad = 1 }
    if (bad) exit 1
    next
}
{
    t = $col["transport"]; m = $col["mode"]; b = $col["backing"]; w = $col["wait"]
    if (t !~ /^(iob-ring|bare-ring|floor-ring|memcpy|pipe|uds|tcp|dgram|grpc|mediated)$/) { print "line " NR ": bad transport " t; bad = 1 }
    if (m !~ /^(copy|zerocopy)$/) { print "line " NR ": bad mode " m; bad = 1 }
    if (b !~ /^(2M|1G|4K)$/) { print "line " NR ": bad backing " b; bad = 1 }
    if (w !~ /^(spin|block)$/) { print "line " NR ": bad wait " w; bad = 1 }
    if ($col["verify"] !~ /^(full|sampled)$/) { print "line " NR ": bad verify " $col["verify"]; bad = 1 }
    if ($col["msg_bytes"] !~ /^[0-9]+$/ || $col["msgs_per_s"] !~ /^[0-9.]+$/ || $col["msgs_per_s"] + 0 <= 0) {
        print "line " NR ": bad figures"; bad = 1
    }
    if ($col["verified"] != "yes") { print "line " NR ": not verified: " $0; bad = 1 }
    seen[t "," b "," $col["msg_bytes"]] = 1
    if (b == "2M") huge[t] = 1
    rows++
}
END {
    if (bad) exit 1
    if (rows == 0) { print "no rows"; exit 1 }
    n = split(required, req, " ")
    want2m = 0
    for (i = 1; i <= n; i++) if (req[i] in huge) want2m = 1
    for (i = 1; i <= n; i++) {
        if (!((req[i] ",4K,64") in seen) || !((req[i] ",4K,65536") in seen)) {
            print "missing " req[i] " 4K rows at 64 B or 64 KiB"; exit 1
        }
        if (want2m && (!((req[i] ",2M,64") in seen) || !((req[i] ",2M,65536") in seen))) {
            print "missing " req[i] " 2M rows at 64 B or 64 KiB (other rings had hugepages)"; exit 1
        }
    }
    print rows " rows verified"
}' "$csv" || { tail -60 "$csv.stdout"; exit 1; }
