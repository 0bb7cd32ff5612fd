#!/bin/sh
# SPDX-License-Identifier: MIT
# iobctl against a real iobd: create --export, then commands by token; JSON output; the
# Zircon status in messages and the documented exit codes.
# usage: test_iobctl.sh IOBD IOBCTL
set -u
iobd=$1 iobctl=$2
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
"$iobd" --listen "unix:$dir/iobd.sock" --hugepages=off 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do [ -S "$dir/iobd.sock" ] && break; sleep 0.05; done
export IOB_SERVER="unix:$dir/iobd.sock"
fail() { echo "FAIL: $*"; cat "$dir/log"; exit 1; }

"$iobctl" server-info | grep -q "page size    4096 (4K)" || fail server-info
"$iobctl" server-info --json | grep -q '"backing": "4K"' || fail server-info --json
out=$("$iobctl" create --region size=1M,access=ep0:rw,ep1:r --region size=4096,access=ep0:w,ep1:r \
      --name demo --export) || fail create
t0=$(echo "$out" | awk '/^ep0/ {print $2}')
t1=$(echo "$out" | awk '/^ep1/ {print $2}')
[ -n "$t0" ] && [ -n "$t1" ] || fail "create --export printed no tokens: $out"
"$iobctl" list | grep -q demo || fail "list lacks the IOB"
"$iobctl" list --json | grep -q '"name": "demo"' || fail "list --json"
# An IOB picked from the listing, by koid, with no handle: its summary. Both endpoints
# are tokens in flight now, so each counts one handle and no mapping.
koid=$(echo "$out" | awk '/^koid/ {print $2}')
[ -n "$koid" ] || fail "create printed no koid: $out"
"$iobctl" list | awk -v k="$koid" '$1 == k && $2 == "demo"' | grep -q . || fail "list row for $koid"
info=$("$iobctl" info --koid "$koid") || fail "info --koid"
echo "$info" | grep -q "iob koid $koid, name \"demo\", 2 region(s)" || fail "info --koid: $info"
echo "$info" | grep -q "^ep0 koid [0-9]*: 1 handle(s), 0 mapping(s)" || fail "info --koid ep0: $info"
echo "$info" | grep -q "^ep1 koid [0-9]*: 1 handle(s), 0 mapping(s)" || fail "info --koid ep1: $info"
ep1koid=$(echo "$info" | awk '/^ep1 koid/ {sub(":", "", $3); print $3}')
"$iobctl" info --koid "$ep1koid" --json | grep -q '"name": "demo"' || fail "info --koid by ep1 koid"
"$iobctl" info --koid 999999 2>"$dir/err"; rc=$?
[ $rc -eq 4 ] || fail "unknown koid: exit $rc"
grep -q "iobctl: info: ZX_ERR_NOT_FOUND" "$dir/err" || fail "message: $(cat "$dir/err")"
"$iobctl" read --koid "$koid" --length 1 2>/dev/null; [ $? -eq 1 ] || fail "read --koid is usage"
printf 'hello from iobctl' > "$dir/in"
"$iobctl" write --token "$t0" --offset 100 --in "$dir/in" || fail write
got=$("$iobctl" read --token "$t1" --offset 100 --length 17) || fail read
[ "$got" = "hello from iobctl" ] || fail "read back '$got'"

# A used token: ZX_ERR_NOT_FOUND, exit 4.
"$iobctl" info --token "$t1" 2>"$dir/err"; rc=$?
[ $rc -eq 4 ] || fail "used token: exit $rc"
grep -q "iobctl: info: ZX_ERR_NOT_FOUND" "$dir/err" || fail "message: $(cat "$dir/err")"
# Invalid region spec for the server: ZX_ERR_INVALID_ARGS, exit 5.
"$iobctl" create --region size=4096,access=ep0:r,ep1:r 2>"$dir/err"; rc=$?
[ $rc -eq 5 ] || fail "create nobody-writes: exit $rc"
grep -q "iobctl: create: ZX_ERR_INVALID_ARGS" "$dir/err" || fail "message: $(cat "$dir/err")"
# Bad usage: exit 1. Unreachable server: exit 2.
"$iobctl" frobnicate 2>/dev/null; [ $? -eq 1 ] || fail "usage exit"
IOB_SERVER=unix:$dir/none.sock "$iobctl" list 2>"$dir/err"; rc=$?
[ $rc -eq 2 ] || fail "unreachable: exit $rc"
grep -q ZX_ERR_UNAVAILABLE "$dir/err" || fail "message: $(cat "$dir/err")"
# A watch that times out: exit 6.
out=$("$iobctl" create --region size=4096,access=ep0:rw,ep1:rw --export) || fail create2
t0=$(echo "$out" | awk '/^ep0/ {print $2}')
"$iobctl" watch --token "$t0" --signals 0x1000000 --timeout-ms 100 >/dev/null; rc=$?
[ $rc -eq 6 ] || fail "watch timeout: exit $rc"

# A shared region, a mediated ring on it, one record by writev, read back by the map side.
sr=$("$iobctl" create-shared-region --size 16K --export | awk '/^shared/ {print $2}')
[ -n "$sr" ] || fail "create-shared-region printed no token"
out=$("$iobctl" create --region "type=shared,shared=$sr,discipline=ring,tag=7,access=ep0:rw,ep1:W" \
      --export) || fail "create ring"
t0=$(echo "$out" | awk '/^ep0/ {print $2}')
t1=$(echo "$out" | awk '/^ep1/ {print $2}')
printf 'record' | "$iobctl" writev --token "$t1" || fail writev
got=$("$iobctl" read --token "$t0" --offset 4112 --length 6) || fail "read ring"
[ "$got" = "record" ] || fail "ring record '$got'"
# A region that is not a ring: ZX_ERR_WRONG_TYPE, exit 5.
out=$("$iobctl" create --region size=4096,access=ep0:rw,ep1:rw --export) || fail create3
t1=$(echo "$out" | awk '/^ep1/ {print $2}')
printf 'x' | "$iobctl" writev --token "$t1" 2>"$dir/err"; rc=$?
[ $rc -eq 5 ] || fail "writev wrong type: exit $rc"
grep -q "iobctl: writev: ZX_ERR_WRONG_TYPE" "$dir/err" || fail "message: $(cat "$dir/err")"

kill -TERM $pid; wait $pid; rc=$?
[ $rc -eq 0 ] || fail "iobd exit $rc"
[ ! -e "$dir/iobd.sock" ] || fail "socket left behind"
echo ok
