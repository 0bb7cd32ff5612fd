#!/bin/sh
# SPDX-License-Identifier: MIT
# Remote management with mutual TLS: iobd on loopback TCP with a server certificate, a
# client CA and a bearer token. iobctl with a client certificate signed by that CA gets in;
# without one, or with one from another CA, the handshake fails (ZX_ERR_UNAVAILABLE, exit 2).
# usage: test_iobd_mtls.sh IOBD IOBCTL
set -u
iobd=$1 iobctl=$2
command -v openssl >/dev/null || { echo "SKIPPED: no openssl"; exit 77; }
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; cat "$dir/log" 2>/dev/null; exit 1; }

ossl() { openssl "$@" >/dev/null 2>&1 || fail "openssl $*"; }
make_ca() {  # name
  ossl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$1" \
       -keyout "$dir/$1.key" -out "$dir/$1.pem"
}
make_cert() {  # name ca cn ext
  ossl req -newkey rsa:2048 -nodes -subj "/CN=$3" -keyout "$dir/$1.key" -out "$dir/$1.csr"
  printf '%s\n' "$4" > "$dir/$1.ext"
  ossl x509 -req -in "$dir/$1.csr" -CA "$dir/$2.pem" -CAkey "$dir/$2.key" -CAcreateserial \
       -days 1 -extfile "$dir/$1.ext" -out "$dir/$1.pem"
}
make_ca ca
make_ca other-ca
make_cert server ca localhost "subjectAltName=DNS:localhost,IP:127.0.0.1"
make_cert client ca operator "extendedKeyUsage=clientAuth"
make_cert stranger other-ca stranger "extendedKeyUsage=clientAuth"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/token"

# A free port: iobd refuses to start on a taken one, so try a few.
for try in 1 2 3 4 5; do
  port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000 ))
  "$iobd" --listen "unix:$dir/iobd.sock" --listen "127.0.0.1:$port" --hugepages=off \
          --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" \
          --tls-client-ca "$dir/ca.pem" --token-file "$dir/token" 2>"$dir/log" &
  pid=$!
  for _ in $(seq 100); do [ -S "$dir/iobd.sock" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  kill -0 $pid 2>/dev/null && break
  pid=
done
[ -n "$pid" ] || fail "iobd did not start"

remote() { "$iobctl" --server "127.0.0.1:$port" --tls-ca "$dir/ca.pem" --token-file "$dir/token" \
                     --timeout 5000 "$@"; }
remote --tls-cert "$dir/client.pem" --tls-key "$dir/client.key" server-info \
  | grep -q "page size" || fail "client certificate from the CA refused"
out=$(remote --tls-cert "$dir/client.pem" --tls-key "$dir/client.key" \
        create --region size=4096,access=ep0:rw,ep1:r --export) || fail "remote create"
echo "$out" | grep -q '^ep0' || fail "remote create printed no token: $out"

remote server-info 2>"$dir/err"; rc=$?
[ $rc -eq 2 ] || fail "no client certificate: exit $rc ($(cat "$dir/err"))"
remote --tls-cert "$dir/stranger.pem" --tls-key "$dir/stranger.key" server-info 2>"$dir/err"; rc=$?
[ $rc -eq 2 ] || fail "certificate from another CA: exit $rc ($(cat "$dir/err"))"

kill -TERM $pid; wait $pid; rc=$?; pid=
[ $rc -eq 0 ] || fail "iobd exit $rc after SIGTERM"
echo "mutual TLS: 3 cases passed"
