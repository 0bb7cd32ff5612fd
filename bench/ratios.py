#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The ring benchmark's target ratios, computed from one iob-bench run's output files.

    bench/ratios.py DIR        (DIR holds throughput.csv, latency.csv, results.json: --out DIR)

Prints each ratio the ring and benchmark issue sets a target for, per backing, with the
figures it comes from, and ends with one line per target: met or not met in this run.
Among them iob-ring ÷ floor-ring (copy, busy-poll): the ring against the independent floor,
a minimal ring with glibc memcpy written only for the benchmark (bench/bench_floor_ring.c),
judged only under the sampled verification policy, which the target is stated for.

For iob-ring ÷ bare-ring, blocking ÷ busy-poll and the round trip ÷ the cache-line floor,
two estimates are printed and the paired one is judged: the median over trial rounds of the two rows' per-round ratio
(results.json keeps every trial; trials of one size run round by round, and iob-bench runs
the compared rows next to each other within a round). On a host whose speed changes during
a run, a round slowed for both rows still gives a fair ratio, where the ratio of medians
(printed in brackets) can swing by 10-40 %. The zero-copy target compares two sizes, which
never share a round: iob-bench runs its reference (bare-ring copy at 8 B) again right before
each trial of zero-copy at 32 B, and those pairs are judged.
Only the Python standard library: runs with any python3.
"""
import json
import csv
import os
import sys


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rate(rows, transport, mode, backing, wait, size, load="full"):
    for r in rows:
        if (r["transport"] == transport and r["mode"] == mode and r["backing"] == backing
                and r["wait"] == wait and r["load"] == load and int(r["msg_bytes"]) == size
                and r["verified"] == "yes"):
            return float(r["msgs_per_s"])
    return None


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = sys.argv[1]
    rows = load(os.path.join(out, "throughput.csv"))
    trials = {}
    lat_trials = {}
    verify = "full"  # runs from before --verify checked every byte
    json_path = os.path.join(out, "results.json")
    if os.path.exists(json_path):
        with open(json_path) as f:
            doc = json.load(f)
            verify = doc.get("verify", verify)
            for r in doc.get("throughput", []):
                if "msgs_per_s_trials" in r:
                    key = (r["transport"], r["mode"], r["backing"], r["wait"], r["load"],
                           int(r["msg_bytes"]))
                    trials[key] = r["msgs_per_s_trials"]
                if "reference_msgs_per_s_trials" in r:
                    trials[key + ("reference",)] = r["reference_msgs_per_s_trials"]
            for r in doc.get("round_trip_64B", []):
                if "p50_ns_trials" in r:
                    lat_trials[r["path"]] = r["p50_ns_trials"]

    def paired(num, den):
        """Median over trial rounds of num's rate / den's rate; keys as in `trials`."""
        k = trials.get(num)
        p = trials.get(den)
        if not k or not p or len(k) != len(p) or min(p) <= 0:
            return None
        return median([x / y for x, y in zip(k, p)])

    def row(transport, mode, b, wait, s):
        return (transport, mode, b, wait, "full", s)

    def shown(pr, plain):
        return "%s(%.2f)" % ("%.2f" % pr if pr is not None else "-", plain)
    sizes = sorted({int(r["msg_bytes"]) for r in rows})
    backings = sorted({r["backing"] for r in rows if r["transport"] == "iob-ring"})
    verdicts = {}

    def judge(name, ok):
        verdicts[name] = verdicts.get(name, True) and ok

    print("verification: %s" % verify)
    print("iob-ring / floor-ring, copy, busy-poll (target >= 0.9 at every size under sampled);")
    print("  size:paired (ratio of medians):")
    for b in backings:
        parts = []
        for s in sizes:
            i = rate(rows, "iob-ring", "copy", b, "spin", s)
            r = rate(rows, "floor-ring", "copy", b, "spin", s)
            if i and r:
                pr = paired(row("iob-ring", "copy", b, "spin", s),
                            row("floor-ring", "copy", b, "spin", s))
                parts.append("%d:%s" % (s, shown(pr, i / r)))
                if verify == "sampled":
                    judge("copy iob-ring/floor-ring >= 0.9", (pr if pr is not None else i / r) >= 0.9)
        if parts:
            print("  %s  %s" % (b, " ".join(parts)))
    if verify != "sampled":
        print("  (not judged: the floor target is for --verify sampled)")

    print("iob-ring / bare-ring, copy, busy-poll (target >= 0.9 at every size);")
    print("  size:paired (ratio of medians):")
    for b in backings:
        parts = []
        for s in sizes:
            i = rate(rows, "iob-ring", "copy", b, "spin", s)
            r = rate(rows, "bare-ring", "copy", b, "spin", s)
            if i and r:
                pr = paired(row("iob-ring", "copy", b, "spin", s),
                            row("bare-ring", "copy", b, "spin", s))
                parts.append("%d:%s" % (s, shown(pr, i / r)))
                judge("copy iob-ring/bare-ring >= 0.9", (pr if pr is not None else i / r) >= 0.9)
        print("  %s  %s" % (b, " ".join(parts)))

    print("zero-copy 32 B (iob-ring) / bare-ring copy 8 B (target >= 1);")
    print("  paired with bare-ring copy 8 B run right before each trial (ratio of medians):")
    for b in backings:
        z = rate(rows, "iob-ring", "zerocopy", b, "spin", 32)
        c = rate(rows, "bare-ring", "copy", b, "spin", 8)
        if z and c:
            zrow = row("iob-ring", "zerocopy", b, "spin", 32)
            pr = paired(zrow, zrow + ("reference",))
            print("  %s  %s  (%.1f M / %.1f M)" % (b, shown(pr, z / c), z / 1e6, c / 1e6))
            judge("zero-copy 32 B >= copy 8 B", (pr if pr is not None else z / c) >= 1.0)

    print("blocking / busy-poll at full load, iob-ring (target >= 0.5 at 64 B, >= 0.95 from 4 KiB);")
    print("  size:paired (ratio of medians):")
    for b in backings:
        for mode in ("copy", "zerocopy"):
            parts = []
            for s in sizes:
                if s != 64 and s < 4096:
                    continue
                k = rate(rows, "iob-ring", mode, b, "block", s)
                p = rate(rows, "iob-ring", mode, b, "spin", s)
                if k and p:
                    pr = paired(row("iob-ring", mode, b, "block", s),
                                row("iob-ring", mode, b, "spin", s))
                    judged = pr if pr is not None else k / p
                    parts.append("%d:%s" % (s, shown(pr, k / p)))
                    judge("blocking >= 0.5 at 64 B" if s == 64 else "blocking >= 0.95 from 4 KiB",
                          judged >= (0.5 if s == 64 else 0.95))
            print("  %s %-8s %s" % (b, mode, " ".join(parts)))

    lat_path = os.path.join(out, "latency.csv")
    if os.path.exists(lat_path):
        lat = {r["path"]: float(r["p50_ns"]) for r in load(lat_path)}
        if "ring" in lat and "cacheline" in lat:
            ratio = lat["ring"] / lat["cacheline"]
            ring_t, line_t = lat_trials.get("ring"), lat_trials.get("cacheline")
            pr = None
            if ring_t and line_t and len(ring_t) == len(line_t) and min(line_t) > 0:
                pr = median([x / y for x, y in zip(ring_t, line_t)])
            print("round trip 64 B p50: ring %.0f ns / cache line %.0f ns, paired by round %s "
                  "(target <= 1.2)" % (lat["ring"], lat["cacheline"], shown(pr, ratio)))
            judge("round trip <= 1.2x the cache line", (pr if pr is not None else ratio) <= 1.2)

    print()
    for name, ok in verdicts.items():
        print("%-36s %s" % (name, "met" if ok else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
