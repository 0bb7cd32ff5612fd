#!/bin/sh
# SPDX-License-Identifier: MIT
# iobd and the 2M hugepage pool (root only; exit 77 otherwise):
#   - --hugepages=2M with an empty pool and no reservation: iobd refuses to start, naming
#     the Zircon status (ZX_ERR_NO_MEMORY, or NOT_SUPPORTED without 2M pages);
#   - --hugepages=2M --reserve-hugepages=8: starts, logs the reservation, ServerInfo says
#     backing 2M, page size 2097152 and the pool's numbers; a region takes a page;
#   - on a clean exit iobd gives the reservation back (the pool is as before).
# The pool is shared by the whole machine: ctest runs this under RESOURCE_LOCK
# hugepage_pool, and the trap puts nr_hugepages back to what it was whatever happens.
# usage: test_iobd_hugepages.sh IOBD IOBCTL
set -u
iobd=$1 iobctl=$2
pool=/sys/kernel/mm/hugepages/hugepages-2048kB
if [ "$(id -u)" != 0 ]; then echo "skip: needs root to resize the hugepage pool"; exit 77; fi
if [ ! -w "$pool/nr_hugepages" ]; then echo "skip: no writable 2M hugepage pool"; exit 77; fi
before=$(cat "$pool/nr_hugepages")
dir=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL $pid 2>/dev/null && wait $pid 2>/dev/null
  echo "$before" >"$pool/nr_hugepages"
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; cat "$dir/log" 2>/dev/null; exit 1; }
json() { "$iobctl" server-info --json | sed -n "s/^ *\"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"; }
export IOB_SERVER="unix:$dir/iobd.sock"

# ---- An empty pool: iobd refuses --hugepages=2M ----
echo 0 >"$pool/nr_hugepages" || { echo "skip: cannot empty the pool"; exit 77; }
[ "$(cat "$pool/free_hugepages")" = 0 ] || { echo "skip: pool pages in use elsewhere"; exit 77; }
"$iobd" --listen "unix:$dir/iobd.sock" --hugepages=2M 2>"$dir/log" >/dev/null & pid=$!
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
kill -0 $pid 2>/dev/null && fail "iobd started on an empty pool"
wait $pid; rc=$?; pid=
[ $rc -ne 0 ] || fail "empty pool: exit 0"
grep -Eq "ZX_ERR_NO_MEMORY|ZX_ERR_NOT_SUPPORTED" "$dir/log" || fail "no status in the message"
grep -q -- "--hugepages=2M" "$dir/log" || fail "the message does not name the flag"
[ ! -e "$dir/iobd.sock" ] || fail "socket left behind by a failed start"

# ---- --reserve-hugepages=8 ----
"$iobd" --listen "unix:$dir/iobd.sock" --hugepages=2M --reserve-hugepages=8 --token-ttl=30s \
  2>"$dir/log" & pid=$!
for _ in $(seq 200); do
  [ -S "$dir/iobd.sock" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
if [ ! -S "$dir/iobd.sock" ]; then
  wait $pid; pid=
  # The kernel may find no free 2 MiB blocks at all on a loaded machine.
  if grep -q "the kernel found 0" "$dir/log"; then echo "skip: no memory for hugepages"; exit 77; fi
  fail "iobd did not start with --reserve-hugepages=8"
fi
grep -q "reserved hugepages: asked 8 x 2M, pool now 8 (was 0" "$dir/log" ||
  grep -q "reserved hugepages: asked 8 x 2M, the kernel found" "$dir/log" ||
  fail "reservation not logged"
reached=$(cat "$pool/nr_hugepages")
[ "$(json backing)" = 2M ] || fail "backing $(json backing)"
[ "$(json page_size)" = 2097152 ] || fail "page_size $(json page_size)"
[ "$(json hugepages_total)" = "$reached" ] || fail "hugepages_total $(json hugepages_total) != $reached"
[ "$(json hugepages_free)" = "$reached" ] || fail "hugepages_free $(json hugepages_free)"
"$iobctl" server-info | grep -q "hugepages    $reached total, $reached free" || fail "server-info text"
# A 2M region (kept alive by its exported tokens) takes one page from the pool.
"$iobctl" create --region size=2M,access=ep0:rw,ep1:r --export >/dev/null || fail "create 2M"
[ "$(json hugepages_free)" = $((reached - 1)) ] || fail "free after create: $(json hugepages_free)"

# ---- A clean exit gives the reservation back ----
kill -TERM $pid; wait $pid; rc=$?; pid=
[ $rc -eq 0 ] || fail "iobd exit $rc"
grep -q "reservation given back, 2M pool 0 pages" "$dir/log" || fail "give-back not logged"
[ "$(cat "$pool/nr_hugepages")" = 0 ] || fail "pool left at $(cat "$pool/nr_hugepages")"
echo ok
