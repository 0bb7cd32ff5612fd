#!/bin/sh
# SPDX-License-Identifier: MIT
# iobd --config FILE: the [iobd] section is honoured (checked through ServerInfo, as an
# operator would: iobctl server-info --json), flags override the file, and a bad key,
# value or section makes iobd exit non-zero with a message naming the file and line.
# usage: test_iobd_config.sh IOBD IOBCTL
set -u
iobd=$1 iobctl=$2
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; cat "$dir/log" 2>/dev/null; exit 1; }

# Starts iobd with the arguments, waits for its socket ($dir/iobd.sock) and sets $pid.
start() {
  rm -f "$dir/iobd.sock"
  "$iobd" "$@" 2>"$dir/log" &
  pid=$!
  for _ in $(seq 200); do [ -S "$dir/iobd.sock" ] && return 0; sleep 0.05; done
  fail "iobd did not come up"
}
stop() {
  kill -TERM $pid; wait $pid; rc=$?; pid=
  [ $rc -eq 0 ] || fail "iobd exit $rc"
}
# json KEY: the value of "KEY" in server-info --json (numbers and strings).
json() { "$iobctl" server-info --json | sed -n "s/^ *\"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"; }
export IOB_SERVER="unix:$dir/iobd.sock"

cat >"$dir/iobd.ini" <<EOF
; comments and blank lines are fine

[iobd]
listen = unix:$dir/iobd.sock
hugepages = off
max-bytes = 64M
max-iobs-per-session = 3
max-handles-per-session = 40
token-ttl = 90s
log-level = error
EOF

# ---- The file alone ----
start --config "$dir/iobd.ini"
[ "$(json backing)" = 4K ] || fail "backing $(json backing)"
[ "$(json page_size)" = 4096 ] || fail "page_size"
[ "$(json max_total_bytes)" = 67108864 ] || fail "max_total_bytes $(json max_total_bytes)"
[ "$(json max_iobs_per_session)" = 3 ] || fail "max_iobs_per_session"
[ "$(json max_handles_per_session)" = 40 ] || fail "max_handles_per_session"
[ "$(json token_ttl_ns)" = 90000000000 ] || fail "token_ttl_ns"
# The byte budget is enforced, not only reported: 64M + 4K is over it (NO_MEMORY, exit 7).
"$iobctl" create --region size=64M,access=ep0:rw,ep1:r --region size=4K,access=ep0:rw,ep1:r \
  2>"$dir/err"; rc=$?
[ $rc -eq 7 ] || fail "create over max-bytes: exit $rc"
grep -q ZX_ERR_NO_MEMORY "$dir/err" || fail "over max-bytes: $(cat "$dir/err")"
# log-level = error: no info lines (iobd says "ready" at info).
grep -q "iobd: info:" "$dir/log" && fail "log-level=error still logs info"
stop

# ---- Flags override the file ----
start --config "$dir/iobd.ini" --max-iobs-per-session=5 --log-level=info --max-bytes=1G
[ "$(json max_iobs_per_session)" = 5 ] || fail "flag did not override max-iobs-per-session"
[ "$(json max_total_bytes)" = 1073741824 ] || fail "flag did not override max-bytes"
[ "$(json max_handles_per_session)" = 40 ] || fail "file value lost when another flag is given"
grep -q "iobd: info: .*ready" "$dir/log" || fail "--log-level=info did not override the file"
# It says what it runs with: the open-file limit it raised, and its budgets.
grep -q "iobd: info: open files: limit" "$dir/log" || fail "no open-file limit in the log"
grep -q "iobd: info: budget: 1073741824 bytes server-wide" "$dir/log" || fail "no budget in the log"
stop
# ---- Budgets: every one has a key and a flag, and no flag still means bounded ----
printf 'max-tokens-per-uid = 9\nmax-bytes-per-session = 1M\n' >>"$dir/iobd.ini"
start --config "$dir/iobd.ini" --max-mappings-per-session=unlimited --max-iobs-per-uid 7
"$iobctl" server-info >"$dir/info" || fail "server-info"
grep -q "per session  1048576 bytes, 3 iobs, 40 handles, 4096 tokens, unlimited mappings" \
  "$dir/info" || fail "per-session budgets: $(cat "$dir/info")"
grep -q "per uid      67108864 bytes, 7 iobs, 524288 handles, 9 tokens, 262144 mappings" \
  "$dir/info" || fail "per-uid budgets: $(cat "$dir/info")"
stop
start --listen "unix:$dir/iobd.sock" --hugepages off --log-level error
b=$(json max_total_bytes)
[ -n "$b" ] && [ "$b" != 0 ] && [ "$b" != null ] || fail "no flags: byte budget \"$b\""
stop
"$iobd" --help | grep -q -- "--max-tokens-per-session" || fail "--help lacks the budgets"

# --listen on the command line replaces the file's list (not appended to it).
start --listen "unix:$dir/iobd.sock" --config "$dir/iobd.ini" --no-broker
stop

# ---- Bad files: exit non-zero, one clear message with the file and line ----
# bad FILE_BODY EXPECTED_TEXT
bad() {
  printf '%s\n' "$1" >"$dir/bad.ini"
  "$iobd" --config "$dir/bad.ini" 2>"$dir/err" >/dev/null & bpid=$!
  # A config error is found before anything is bound; never leave an iobd behind.
  for _ in $(seq 100); do kill -0 $bpid 2>/dev/null || break; sleep 0.05; done
  if kill -0 $bpid 2>/dev/null; then kill -TERM $bpid; wait $bpid; fail "iobd ran with: $1"; fi
  wait $bpid; rc=$?
  [ $rc -ne 0 ] || fail "exit 0 for: $1"
  grep -qF "$2" "$dir/err" || fail "message for '$1': $(cat "$dir/err")"
}
bad "[iobd]
listen = unix:$dir/iobd.sock
max-byts = 1G" "bad.ini:3: unknown key \"max-byts\""
bad "[iobd]
max-bytes = lots" "bad.ini:2: bad value for max-bytes: \"lots\""
bad "[iobd]
hugepages = sometimes" "bad.ini:2: bad value for hugepages: \"sometimes\""
bad "[iobd]
max-iobs-per-session = -1" "bad value for max-iobs-per-session"
bad "[iobd]
log-level = loud" "bad value for log-level"
bad "[server]
listen = unix:$dir/iobd.sock" "bad.ini:2: unknown section [server]"
bad "[iobd]
this line has no equals sign" "bad.ini:2: syntax error"
"$iobd" --config "$dir/missing.ini" 2>"$dir/err"; rc=$?
[ $rc -ne 0 ] || fail "missing config: exit 0"
grep -q "cannot read config $dir/missing.ini" "$dir/err" || fail "missing: $(cat "$dir/err")"
# A bad flag value is as clear.
"$iobd" --config "$dir/iobd.ini" --max-bytes=lots 2>"$dir/err"; rc=$?
[ $rc -ne 0 ] || fail "bad flag: exit 0"
grep -q 'bad value for --max-bytes: "lots"' "$dir/err" || fail "bad flag: $(cat "$dir/err")"

# The map broker's budgets: keys of the file and flags (their effect: test_broker_attacks).
cp "$dir/iobd.ini" "$dir/broker.ini"
printf 'broker-max-conns-per-uid = 16\nbroker-attach-timeout = 500ms\n' >>"$dir/broker.ini"
start --config "$dir/broker.ini" --broker-attach-timeout 3s
stop
bad "[iobd]
broker-max-conns-per-uid = 0" "bad value for broker-max-conns-per-uid"
bad "[iobd]
broker-attach-timeout = 10us" "bad value for broker-attach-timeout"

# --exit-with-parent: when the process that started iobd dies (kill -9, no cleanup of its
# own), iobd exits the clean way: its socket is removed.
sh -c '"$1" --listen "unix:$2/iobd.sock" --hugepages=off --exit-with-parent 2>"$2/log" &
       echo $! >"$2/iobd.pid"; exec sleep 60' sh "$iobd" "$dir" &
parent=$!
for _ in $(seq 200); do [ -S "$dir/iobd.sock" ] && break; sleep 0.05; done
[ -S "$dir/iobd.sock" ] || fail "exit-with-parent: iobd did not come up"
child=$(cat "$dir/iobd.pid")
kill -9 $parent; wait $parent 2>/dev/null
for _ in $(seq 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.05; done
kill -0 "$child" 2>/dev/null && { kill -9 "$child"; fail "exit-with-parent: iobd outlived its parent"; }
[ -S "$dir/iobd.sock" ] && fail "exit-with-parent: socket left behind (not a clean exit)"

# SIGTERM the moment the socket appears (as a service manager stopping a starting iobd
# does): always the clean exit, status 0 and the socket removed. Before the signals were
# held back until the loop handles them, 2 of 30 such stops killed iobd (status 143, the
# socket left behind).
for i in $(seq 30); do
  "$iobd" --listen "unix:$dir/early.sock" --hugepages=off 2>"$dir/log" &
  pid=$!
  for _ in $(seq 400); do [ -S "$dir/early.sock" ] && break; sleep 0.005; done
  kill -TERM $pid; wait $pid; rc=$?; pid=
  [ $rc -eq 0 ] || fail "early SIGTERM (round $i): iobd exit $rc"
  [ -e "$dir/early.sock" ] && fail "early SIGTERM (round $i): socket left behind"
done
echo ok
