#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets (clang, ASan + UBSan, in build-fuzz/) and runs each one for a
# bounded time: first over its seeds (tests/fuzz/corpus/<target>/, and the seeds fuzz_seeds
# writes from today's messages), then mutating. Any crash, leak, sanitizer report, failed
# check or hang fails the script; the input that did it is left in build-fuzz/artifacts/.
#
#   tests/fuzz/run.sh                       every target, FUZZ_SECONDS (default 25) each
#   tests/fuzz/run.sh fuzz_rpc fuzz_ring    only these
#
# A longer session (what grows the corpus; see tests/fuzz/README.md):
#   FUZZ_SECONDS=3600 FUZZ_JOBS=2 tests/fuzz/run.sh fuzz_rpc
# The working corpus build-fuzz/corpus/<target>/ persists between runs; copy inputs worth
# keeping (a crash's reproducer once fixed, new coverage) into tests/fuzz/corpus/<target>/.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/.ci/install-deps" --fuzz

build="$root/build-fuzz"
seconds=${FUZZ_SECONDS:-25}
jobs=${FUZZ_JOBS:-1}
# Without -Werror: the gcc builds hold the code to that; a warning only clang gives must not
# keep the fuzzers from running.
cmake -S "$root" -B "$build" -DIOB_FUZZ=ON -DCMAKE_C_COMPILER=clang >/dev/null
mapfile -t all < "$build/fuzzers.txt"
cmake --build "$build" -j"$(nproc)" --target "${all[@]}" fuzz_seeds

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

rm -rf "$build/seeds"
"$build/tests/fuzz/fuzz_seeds" "$build/seeds"
mkdir -p "$build/artifacts"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failed=()
for t in "${targets[@]}"; do
  [ -n "$t" ] || continue
  work="$build/corpus/$t"
  mkdir -p "$work"
  dirs=("$work")
  for d in "$root/tests/fuzz/corpus/$t" "$build/seeds/$t"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  echo "== $t: ${seconds}s"
  log="$build/artifacts/$t.log"
  fork=()
  [ "$jobs" -gt 1 ] && fork=(-fork="$jobs" -ignore_crashes=0)
  if "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "${fork[@]}" \
       "${dirs[@]}" >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^#[0-9]+ +DONE" "$log" | tr '\n' ' '
    echo
  else
    echo "FAILED: $t (log: $log)"
    tail -n 40 "$log"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
