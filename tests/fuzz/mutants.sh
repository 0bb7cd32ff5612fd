#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Keeps the fuzz targets honest: plants one known bug at a time in the code a target
# drives, rebuilds that target and expects it to fail within FUZZ_SECONDS (default 60).
# Not part of CI (a few minutes); run it after changing a target's checks. It edits
# tracked sources and restores them with git, so it refuses to run while they have
# uncommitted changes. Needs build-fuzz (tests/fuzz/run.sh makes it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
files=(shm/ring.h shm/mediated.c server/core/iob_core.c server/rpc/rpc_handlers.c)
if ! git diff --quiet -- "${files[@]}"; then
  echo "mutants: ${files[*]} have uncommitted changes" >&2
  exit 1
fi
seconds=${FUZZ_SECONDS:-60}
work=$(mktemp -d)
restore() { git checkout -q -- "${files[@]}"; }
trap 'restore; rm -rf "$work"' EXIT
missed=0

# try NAME FILE TARGET PERL-SUBSTITUTION
try() {
  local name=$1 file=$2 target=$3 expr=$4
  restore
  perl -0pi -e "$expr" "$file"
  if git diff --quiet -- "$file"; then
    echo "$name: the bug could not be planted (the code changed?)"
    missed=1
    return
  fi
  cmake --build build-fuzz -j"$(nproc)" --target "$target" >/dev/null
  mkdir -p "$work/$name"
  if "build-fuzz/tests/fuzz/$target" -max_total_time="$seconds" -artifact_prefix="$work/$name/" \
      "$work/$name" "tests/fuzz/corpus/$target" >"$work/$name.log" 2>&1; then
    echo "$name: NOT caught by $target in ${seconds}s"
    missed=1
  else
    echo "$name: caught by $target: $(grep -m1 -E 'check failed|ERROR: (Address|Leak)Sanitizer|runtime error' \
      "$work/$name.log" | cut -c1-120)"
  fi
}

# The consumer's fast path forgets that a record must end before the published index.
try ring_fast_bound shm/ring.h fuzz_ring \
  's/if \(IOB__RING_LIKELY\(n <= c->max_payload && pos \+ rec <= end\)\) \{\n        \*off = o;/if (IOB__RING_LIKELY(n <= c->max_payload)) {\n        *off = o;/'
# The ring buffer's reader accepts a record that reaches past head.
try mwrb_past_head shm/mediated.c fuzz_mwrb \
  's/    if \(size > available\) \{\n        return ZX_ERR_IO_DATA_INTEGRITY;\n    \}\n//'
# The ID allocator's lookup accepts a blob that runs past the container.
try idalloc_slot_bounds shm/mediated.c fuzz_idalloc \
  's/if \(offset < high_half\(header\) \|\| offset > length \|\| size > length - offset\)/if (offset < high_half(header) || offset > length)/'
# CloseHandle's handler leaks its decoded request.
try rpc_leak server/rpc/rpc_handlers.c fuzz_rpc \
  's/(zx_status_t st = iob_core_handle_close\(c->srv->core, sid, req->handle\);\n)    protobuf_c_message_free_unpacked\(&req->base, NULL\);\n/$1/'
# A.9: the last release of both endpoints forgets to free the IOB.
try core_no_free server/core/iob_core.c fuzz_rpc \
  's/        iob__iob_free\(core, iob\);\n        return;\n    \}\n    iob__endpoint_set_signals/        return;\n    }\n    iob__endpoint_set_signals/'

restore
cmake --build build-fuzz -j"$(nproc)" --target fuzz_ring fuzz_mwrb fuzz_idalloc fuzz_rpc >/dev/null
exit $missed
