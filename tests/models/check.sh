#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Checks the Promela models of tests/models/ exhaustively with spin: for each model, spin -a,
# compile pan (safety: assertions and invalid end states), run it; "errors: 0" is required.
# Then each mutation the model defines (every BUG_* it tests with #ifdef) is checked the
# same way and must make pan report an error: a model that cannot catch the bug it was
# written for proves nothing.
#   tests/models/check.sh               every model
#   tests/models/check.sh ring.pml      one
# Exit 77 (skipped) when spin or a C compiler is missing (.ci/install-deps installs spin).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null || { echo "spin is not installed: skipped"; exit 77; }
cc=${CC:-cc}
command -v "$cc" >/dev/null || { echo "no C compiler: skipped"; exit 77; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

models=("$@")
[ ${#models[@]} -eq 0 ] && models=("$here"/*.pml)

# Runs one model with the given -D flags; prints pan's verdict and sets $errors.
verify() {
  local model=$1
  shift
  rm -f "$work"/pan*
  (cd "$work" && spin "$@" -a "$model" >spin.log 2>&1) || { cat "$work/spin.log"; exit 1; }
  # pan.c is spin's, not ours: its warnings are not ours to fix.
  "$cc" -w -O1 -DSAFETY -o "$work/pan" "$work/pan.c"
  (cd "$work" && ./pan -m1000000 >pan.log 2>&1) || true
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$work/pan.log")
  if [ -z "$errors" ]; then
    cat "$work/pan.log"
    echo "check: pan gave no verdict" >&2
    exit 1
  fi
  states=$(sed -n 's/^ *\([0-9e.+]*\) states, stored.*/\1/p' "$work/pan.log")
  first=$(grep -m1 -E '^pan:1:' "$work/pan.log" | cut -c1-160 || true)
}

failed=0
for m in "${models[@]}"; do
  case "$m" in /*) ;; *) m="$here/$m" ;; esac
  name=$(basename "$m")
  verify "$m"
  if [ "$errors" != 0 ]; then
    echo "FAIL  $name: $errors error(s): $first"
    cat "$work/pan.log"
    failed=1
    continue
  fi
  echo "ok    $name: errors: 0 ($states states)"
  for bug in $(grep -oE '^#ifn?def BUG_[A-Z_]+' "$m" | awk '{print $2}' | sort -u); do
    verify "$m" "-D$bug"
    if [ "$errors" = 0 ]; then
      echo "FAIL  $name -D$bug: the mutation went unnoticed"
      failed=1
    else
      echo "ok    $name -D$bug: caught ($first)"
    fi
  done
done
exit $failed
