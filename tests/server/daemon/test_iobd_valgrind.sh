#!/bin/sh
# SPDX-License-Identifier: MIT
# iobd under valgrind: sessions, IOBs, transfers, remote reads and writes, then SIGTERM with
# IOBs and tokens still alive. A clean shutdown frees everything: no definite or indirect
# leak and no memory error (valgrind's exit code 99), and iobd exits 0.
# usage: test_iobd_valgrind.sh IOBD IOBCTL
set -u
iobd=$1 iobctl=$2
command -v valgrind >/dev/null || { echo "SKIPPED: no valgrind"; exit 77; }
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; cat "$dir/log"; exit 1; }

valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
         --errors-for-leak-kinds=definite,indirect \
         "$iobd" --listen "unix:$dir/iobd.sock" --hugepages=off 2>"$dir/log" &
pid=$!
for _ in $(seq 600); do [ -S "$dir/iobd.sock" ] && break; sleep 0.05; done
[ -S "$dir/iobd.sock" ] || fail "iobd did not start under valgrind"
export IOB_SERVER="unix:$dir/iobd.sock"
ctl() { "$iobctl" --timeout 20000 "$@"; }

out=$(ctl create --region size=64K,access=ep0:rw,ep1:r --name vg --export) || fail create
t0=$(echo "$out" | awk '/^ep0/ {print $2}')
t1=$(echo "$out" | awk '/^ep1/ {print $2}')
printf 'valgrind was here' > "$dir/in"
ctl write --token "$t0" --offset 10 --in "$dir/in" || fail write
got=$(ctl read --token "$t1" --offset 10 --length 17) || fail read
[ "$got" = "valgrind was here" ] || fail "read back '$got'"
ctl create --region size=4096,access=ep0:r,ep1:r 2>/dev/null && fail "bad create accepted"
ctl create --region size=8K,access=ep0:rw,ep1:rw --export >/dev/null || fail "second create"
ctl list >/dev/null || fail list

kill -TERM $pid; wait $pid; rc=$?; pid=
[ $rc -eq 0 ] || fail "iobd under valgrind exited $rc (99: valgrind found errors or leaks)"
echo "valgrind: no leaks, no errors"
