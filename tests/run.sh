#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds iob and runs the whole test suite with ctest.
#   tests/run.sh              the normal build (build/)
#   tests/run.sh --sanitize   AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
# The normal run ends with a short run of every fuzz target (tests/fuzz/run.sh: its own
# clang build with ASan + UBSan, so not again under --sanitize); FUZZ_SECONDS=0 skips it.
# Tests that need what the machine lacks (hugepages, root) report "skipped", never "passed".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/.ci/install-deps"

build="$root/build"
extra=()
retry=()
if [ "${1:-}" = "--sanitize" ]; then
  build="$root/build-asan"
  extra=(-DIOB_SANITIZE="address;undefined" -DCMAKE_BUILD_TYPE=Debug)
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  # LeakSanitizer's tracer thread now and then crashes while it stops a process whose
  # gRPC threads are exiting ("LeakSanitizer has encountered a fatal error"), which fails
  # a test that found no leak. A test that fails for a real reason fails twice.
  retry=(--repeat until-pass:2)
  if [ -f "$root/tests/lsan.supp" ]; then
    export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
  fi
fi

cmake -S "$root" -B "$build" -DIOB_WERROR=ON "${extra[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure --timeout 300 -j"$(nproc)" "${retry[@]}"
if [ "${1:-}" != "--sanitize" ] && [ "${FUZZ_SECONDS:-25}" != 0 ]; then
  "$root/tests/fuzz/run.sh"
fi
