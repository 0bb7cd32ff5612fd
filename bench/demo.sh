#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The quick start: installs what is missing, builds, starts iobd with its defaults, and runs
# the benchmark demo against it (the iob ring through iobd, side by side with the bare ring,
# memcpy, pipe, Unix socket and TCP). Results land in out/bench/ (table, CSV, JSON, PNG).
#   bench/demo.sh [iob-bench flags...]     e.g. bench/demo.sh --quick
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/.ci/install-deps"

build="$root/build"
cmake -S "$root" -B "$build" -DIOB_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target iobd iobctl iob-bench

if [ "$(id -u)" -eq 0 ]; then
  sockdir=/run/iob              # iobd's default socket directory
  bench_extra=(--reserve-hugepages)
else
  sockdir="${XDG_RUNTIME_DIR:-/tmp}/iob-$(id -u)"
  bench_extra=()
fi
mkdir -p "$sockdir"
sock="$sockdir/iobd.sock"
export IOB_SERVER="unix:$sock"

log="$root/out/iobd.log"
mkdir -p "$root/out/bench"
"$build/server/daemon/iobd" --listen "$IOB_SERVER" >"$log" 2>&1 &
iobd_pid=$!
trap 'kill -TERM $iobd_pid 2>/dev/null; wait $iobd_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -S "$sock" ] && break
  kill -0 $iobd_pid 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.05
done

echo "== iobd is serving $IOB_SERVER"
"$build/client/iobctl/iobctl" info
echo
echo "== iob-bench (results in out/bench/)"
"$build/bench/iob-bench" --out "$root/out/bench" "${bench_extra[@]}" "$@"
