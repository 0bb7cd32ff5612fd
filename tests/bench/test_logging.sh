#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs iob-logging with three writers against a private iobd and checks its output: every
# writer's records appear, in order per writer, each writer's exit is reported after its
# last record, and iobctl shows the shared region with the three writers' IOBs and tags.
#   test_logging.sh IOB_LOGGING IOBD IOBCTL
set -u
prog=$1 iobd=$2 iobctl=$3
tmp=$(mktemp -d /tmp/iob-logging-test-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
chmod 0755 "$tmp"
"$iobd" --listen "unix:$tmp/iobd.sock" --broker "$tmp/broker.sock" --hugepages off \
        --log-level warning &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/broker.sock" ] && break; sleep 0.05; done
[ -S "$tmp/broker.sock" ] || { echo "iobd did not start"; exit 1; }
export IOB_SERVER=unix:$tmp/iobd.sock

if ! "$prog" --writers 3 --records 20 --interval-ms 1 >"$tmp/out" 2>"$tmp/err"; then
  echo "iob-logging failed:"; cat "$tmp/err"; cat "$tmp/out"; exit 1
fi
cat "$tmp/out"
awk -v writers="netstack audio wlan" -v records=20 '
/^\[[a-z]+\] record [0-9]+ of [0-9]+ \(pid [0-9]+\)$/ {
    name = substr($1, 2, length($1) - 2)
    if (name in done) { print "record after exit: " $0; bad = 1 }
    if ($3 != next_rec[name] + 1) { print "out of order: " $0; bad = 1 }
    next_rec[name] = $3
    next
}
/^\[[a-z]+\] exited \(ZX_IOB_PEER_CLOSED\) after [0-9]+ records$/ {
    name = substr($1, 2, length($1) - 2)
    if (name in done) { print "exit reported twice: " $0; bad = 1 }
    done[name] = 1
    if ($5 != records || next_rec[name] != records) { print "exit before all records: " $0; bad = 1 }
    next
}
/^\[/ { print "unexpected line: " $0; bad = 1 }
END {
    n = split(writers, w, " ")
    for (i = 1; i <= n; i++) {
        if (next_rec[w[i]] != records) { print w[i] ": " next_rec[w[i]] + 0 " records"; bad = 1 }
        if (!(w[i] in done)) { print w[i] ": exit not reported"; bad = 1 }
    }
    exit bad
}' "$tmp/out" || { echo "FAILED: output above"; exit 1; }
grep -q "^iob-logging: every writer exited$" "$tmp/out" || { echo "no final line"; exit 1; }

# While a slower run is going: iobctl lists one shared region with the three writers' IOBs
# and their tags (a writer may already be gone; its IOB stays while the reader holds ep0).
"$prog" --writers 3 --records 40 --interval-ms 50 >"$tmp/out2" 2>&1 &
run=$!
listed=
for _ in $(seq 40); do
  sleep 0.1
  "$iobctl" list >"$tmp/list" 2>/dev/null || continue
  if [ "$(grep -c ' ring  tag 100[012] ' "$tmp/list")" = 3 ]; then listed=1; break; fi
done
wait $run || { echo "second run failed:"; cat "$tmp/out2"; exit 1; }
cat "$tmp/list"
[ -n "$listed" ] || { echo "iobctl list did not show the three writers on one shared region"; exit 1; }
[ "$(grep -c '^shared region koid ' "$tmp/list")" = 1 ] || { echo "expected one shared region"; exit 1; }
echo "example_logging: ok"
