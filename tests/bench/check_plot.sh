#!/bin/sh
# SPDX-License-Identifier: MIT
# bench/plot_throughput.gp draws a PNG, with no gnuplot warning (a series or panel with no
# data), from a full run's CSV and from a partial run's (4K pages only, a few transports).
#   check_plot.sh PLOT_SCRIPT CSV
set -u
script=$1 csv=$2
command -v gnuplot >/dev/null || { echo "SKIPPED: no gnuplot"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
awk -F, 'NR == 1 || ($3 == "4K" && ($1 == "iob-ring" || $1 == "pipe" || $1 == "memcpy"))' \
    "$csv" > "$dir/partial.csv"
for c in "$csv" "$dir/partial.csv"; do
  gnuplot -e "csv='$c'; png='$dir/out.png'" "$script" 2>"$dir/err" || { cat "$dir/err"; exit 1; }
  [ ! -s "$dir/err" ] || { echo "gnuplot said, for $c:"; cat "$dir/err"; exit 1; }
  [ "$(head -c 8 "$dir/out.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    { echo "no PNG for $c"; exit 1; }
  rm -f "$dir/out.png"
done
echo ok
