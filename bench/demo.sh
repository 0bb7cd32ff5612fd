#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The quick start: installs what is missing, builds, starts iobd with its defaults, and runs
# the benchmark demo against it (the iob ring through iobd, side by side with the bare ring,
# memcpy, pipe, Unix socket, TCP and gRPC), then the control-plane figures and the logging
# path (mediated writes against a Unix datagram socket). Results land in out/bench/ (table,
# CSV, JSON, PNG).
#   bench/demo.sh                          the demo: 11 sizes from 8 B to 4 MiB, 5 trials (~6 min)
#   bench/demo.sh --full                   iob-bench's full sweep: 8 B..4 MiB, 5 trials (~10 min)
#   bench/demo.sh [iob-bench flags...]     exactly these flags, e.g. bench/demo.sh --quick
# IOB_BUILD_DIR chooses the build tree (default: build/). The iob-ring rows run against the
# iobd started here, so on its backing only: 2M if hugepages were free when it started, else
# 4K (iob-bench labels them; without IOB_SERVER it would start one iobd per backing itself).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/.ci/install-deps"

build="${IOB_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DIOB_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target iobd iobctl iob-bench iob-bench-control \
  iob-bench-mediated

if [ "$(id -u)" -eq 0 ]; then
  sockdir=/run/iob              # iobd's default socket directory
  # iobd's default backing is "auto": hugepages when the pool has free pages. A fresh
  # machine's pool is empty, so reserve some (iobd gives them back when it exits).
  iobd_extra=(--reserve-hugepages=64)
  bench_extra=(--reserve-hugepages)
else
  sockdir="${XDG_RUNTIME_DIR:-/tmp}/iob-$(id -u)"
  iobd_extra=()
  bench_extra=()
fi
mkdir -p "$sockdir"
sock="$sockdir/iobd.sock"
export IOB_SERVER="unix:$sock"

log="$root/out/iobd.log"
mkdir -p "$root/out/bench"
"$build/server/daemon/iobd" --listen "$IOB_SERVER" "${iobd_extra[@]}" >"$log" 2>&1 &
iobd_pid=$!
trap 'kill -TERM $iobd_pid 2>/dev/null; wait $iobd_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -S "$sock" ] && break
  kill -0 $iobd_pid 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.05
done

echo "== iobd is serving $IOB_SERVER"
"$build/client/iobctl/iobctl" server-info
echo
echo "== iob-bench (results in out/bench/)"
# The full sweep (20 sizes x 5 trials, ~10 minutes on 2 CPUs) is more than a demo needs.
quick=()
for arg in "$@"; do
  [ "$arg" = "--quick" ] && quick=(--quick)
done
if [ $# -eq 0 ]; then
  set -- --trials 5 --sizes 8,32,64,256,1K,4K,16K,64K,256K,1M,4M
elif [ "$1" = "--full" ]; then
  shift
fi
"$build/bench/iob-bench" --out "$root/out/bench" "${bench_extra[@]}" "$@"

echo
echo "== iob-bench-control: control-plane figures (results in out/bench/control.*)"
# Without IOB_SERVER it starts its own iobd per backing, so the 4K criteria are judged too.
env -u IOB_SERVER "$build/bench/iob-bench-control" "${bench_extra[@]}" --csv "$root/out/bench/control.csv" \
  --json "$root/out/bench/control.json"

echo
echo "== iob-bench-mediated: the logging path (results in out/bench/mediated.csv)"
# zx_iob_writev through iobd's mediator, one writer and four, against a Unix datagram
# socket and the synchronous floor; it starts its own iobd (and one with --metrics).
env -u IOB_SERVER "$build/bench/iob-bench-mediated" "${quick[@]}" --csv "$root/out/bench/mediated.csv"
