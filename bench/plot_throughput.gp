# SPDX-License-Identifier: MIT
# throughput.png from iob-bench's throughput.csv, three panels of the comparisons a reader
# makes (full load, payload bytes per second against message size, both axes logarithmic):
#   1. iob-ring (copy, busy-poll, 2M pages if the run had them) against the rings it must match (bare-ring, and
#      floor-ring when the CSV has it) and the per-message system-call baselines;
#   2. copy against zero-copy, on both page sizes;
#   3. busy-poll against blocking waits, in both modes.
# Each series has its own colour and marker within a panel and a legend entry beside it.
# iob-bench runs this after a run; by hand:
#   gnuplot -e "csv='bench/results/throughput.csv'; png='bench/results/throughput.png'" \
#       bench/plot_throughput.gp
if (!exists("csv")) csv = 'throughput.csv'
if (!exists("png")) png = 'throughput.png'

set terminal pngcairo size 1300,1560 noenhanced font ',11'
set output png
set datafile separator ','

# One series: the rows of a transport at full load, with mode, backing and wait when given
# ('' matches any). Each series is its own stream, so its points are joined by a line.
rows(t, m, b, w) = sprintf("awk -F, -v t='%s' -v m='%s' -v b='%s' -v w='%s' '$1 == t && $5 ~ /^full$/ && (length(m) == 0 || $2 == m) && (length(b) == 0 || $3 == b) && (length(w) == 0 || $4 == w)' '%s'", t, m, b, w, csv)
has(t, m, b, w) = int(system(rows(t, m, b, w).' | wc -l')) > 0
# A series' plot clause, or nothing when the run has no such rows (a run of some transports
# or sizes only): each panel draws what the run has, and a panel with nothing is left empty.
ser(t, m, b, w, ls, title) = has(t, m, b, w) ? sprintf("\"< %s\" using 6:8 with linespoints ls %d title '%s', ", \
    rows(t, m, b, w), ls, title) : ''
panel(clauses) = strlen(clauses) > 0 ? 'plot '.clauses[1:strlen(clauses) - 2] : 'set multiplot next'


set logscale x 2
set logscale y 10
set xrange [6:6e6]
set xtics ("8 B" 8, "32 B" 32, "64 B" 64, "256 B" 256, "1 KiB" 1024, "4 KiB" 4096, \
           "16 KiB" 16384, "64 KiB" 65536, "256 KiB" 262144, "1 MiB" 1048576, "4 MiB" 4194304)
set format y '%.0s %cB/s'
set xlabel 'message size'
set ylabel 'payload bytes per second'
set grid xtics ytics mytics lc rgb '#dddddd'
set key outside right top vertical Left reverse spacing 1.3 width 2
set lmargin at screen 0.08
set rmargin at screen 0.66

set multiplot layout 3,1 title 'iob-bench: throughput against message size (median of trials, full load)' font ',13'

# ---- 1: the ring against the floor and the baselines ----
set title 'iob-ring against the floor and the per-message baselines (copy mode)'
set style line 1 lc rgb '#d62728' lw 3 pt 7 ps 1.1
set style line 2 lc rgb '#000000' lw 1.5 dt 2 pt 6 ps 1.4
set style line 3 lc rgb '#7f7f7f' lw 1.5 dt 3 pt 4 ps 1.3
set style line 4 lc rgb '#9467bd' lw 1.5 pt 3 ps 1.1
set style line 5 lc rgb '#1f77b4' lw 1.5 pt 5 ps 1.0
set style line 6 lc rgb '#2ca02c' lw 1.5 pt 9 ps 1.2
set style line 7 lc rgb '#ff7f0e' lw 1.5 pt 11 ps 1.2
set style line 8 lc rgb '#8c564b' lw 1.5 pt 13 ps 1.2
set style line 9 lc rgb '#e377c2' lw 1.5 pt 2 ps 1.2
# The rings on 2M pages when the run had them, else on 4K pages.
rb = has('iob-ring', 'copy', '2M', 'spin') ? '2M' : '4K'
fb = has('floor-ring', 'copy', rb, 'spin') ? rb : ''
eval panel( \
    ser('iob-ring', 'copy', rb, 'spin', 1, sprintf('iob-ring copy, %s pages, busy-poll', rb)). \
    ser('bare-ring', 'copy', rb, 'spin', 2, 'bare-ring (same ring on a bare memfd)'). \
    ser('floor-ring', 'copy', fb, 'spin', 3, 'floor-ring'). \
    ser('memcpy', '', '', '', 4, 'memcpy (one copy, no peer)'). \
    ser('pipe', '', '', '', 5, 'pipe'). \
    ser('uds', '', '', '', 6, 'Unix socket'). \
    ser('tcp', '', '', '', 7, 'TCP (loopback)'). \
    ser('mediated', '', '', '', 8, 'mediated (zx_iob_writev)'). \
    ser('grpc', '', '', '', 9, 'gRPC (iobd region RPCs)'))

# ---- 2: copy against zero-copy ----
set title 'iob-ring: copy against zero-copy (busy-poll)'
set style line 11 lc rgb '#1f77b4' lw 2.5 pt 7 ps 1.1
set style line 12 lc rgb '#ff7f0e' lw 2.5 pt 5 ps 1.1
set style line 13 lc rgb '#1f77b4' lw 1.5 dt 2 pt 6 ps 1.3
set style line 14 lc rgb '#ff7f0e' lw 1.5 dt 2 pt 4 ps 1.3
eval panel( \
    ser('iob-ring', 'copy', '2M', 'spin', 11, 'copy, 2M pages'). \
    ser('iob-ring', 'zerocopy', '2M', 'spin', 12, 'zero-copy, 2M pages'). \
    ser('iob-ring', 'copy', '4K', 'spin', 13, 'copy, 4K pages'). \
    ser('iob-ring', 'zerocopy', '4K', 'spin', 14, 'zero-copy, 4K pages'))

# ---- 3: busy-poll against blocking ----
set title sprintf('iob-ring: busy-poll against blocking waits (%s pages)', rb)
set style line 21 lc rgb '#2ca02c' lw 2.5 pt 7 ps 1.1
set style line 22 lc rgb '#9467bd' lw 2.5 pt 5 ps 1.1
set style line 23 lc rgb '#2ca02c' lw 1.5 dt 2 pt 6 ps 1.3
set style line 24 lc rgb '#9467bd' lw 1.5 dt 2 pt 4 ps 1.3
eval panel( \
    ser('iob-ring', 'copy', rb, 'spin', 21, 'copy, busy-poll'). \
    ser('iob-ring', 'copy', rb, 'block', 22, 'copy, blocking'). \
    ser('iob-ring', 'zerocopy', rb, 'spin', 23, 'zero-copy, busy-poll'). \
    ser('iob-ring', 'zerocopy', rb, 'block', 24, 'zero-copy, blocking'))

unset multiplot
