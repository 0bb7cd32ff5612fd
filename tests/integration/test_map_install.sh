#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the project into a temporary prefix, checks the installed files, builds a small
# program against the installed libiob with pkg-config alone (shared, then static), and
# runs it against a test iobd.
#   test_map_install.sh BUILD_DIR PROGRAM.c IOBD
set -euo pipefail
build=$1 prog=$2 iobd=$3
command -v pkg-config >/dev/null || { echo "SKIPPED: no pkg-config"; exit 77; }
tmp=$(mktemp -d /tmp/iob-install-test-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
p=$tmp/prefix
libdir=$(ls -d "$p"/lib*/pkgconfig | head -1 | xargs dirname)
for f in include/zircon/syscalls.h include/zircon/syscalls/iob.h include/iob/iob.h \
         lib/systemd/system/iobd.service; do
  [ -f "$p/$f" ] || { echo "missing $f"; exit 1; }
done
for f in libiob.so libiob.a pkgconfig/iob.pc cmake/iob/iobConfig.cmake; do
  [ -e "$libdir/$f" ] || { echo "missing $libdir/$f"; exit 1; }
done
[ -x "$p/sbin/iobd" ] || { echo "missing sbin/iobd"; exit 1; }
grep -q '^User=iob' "$p/lib/systemd/system/iobd.service"
grep -q '^RuntimeDirectory=iob' "$p/lib/systemd/system/iobd.service"

# Only zx_* and iob_* leave the shared library.
bad=$(nm -D --defined-only "$libdir/libiob.so" | awk '$2 ~ /[TDBRV]/ {print $3}' | sed 's/@.*//' \
      | grep -v -E '^(zx_|iob_(client_connect|client_close|client_session_id|handle_export|handle_import|signal_fd|signal_read|status_message|ring_(producer|consumer)_(open|destroy)|ring_send|ring_receive)$)' | grep -v -E '^(_init|_fini|IOB_0)$' || true)
if [ -n "$bad" ]; then echo "unexpected exported symbols:"; echo "$bad" | head; exit 1; fi

export PKG_CONFIG_PATH=$libdir/pkgconfig
# Compile-only checks: each public header alone.
printf '#include <iob/iob.h>\nint main(void) { return 0; }\n' > "$tmp/h1.c"
printf '#include <zircon/syscalls.h>\nint main(void) { return 0; }\n' > "$tmp/h2.c"
cc -std=c11 -Wall -Werror $(pkg-config --cflags iob) -c "$tmp/h1.c" -o "$tmp/h1.o"
cc -std=c11 -Wall -Werror $(pkg-config --cflags iob) -c "$tmp/h2.c" -o "$tmp/h2.o"

cc -std=c11 -Wall -Werror "$prog" -o "$tmp/prog" $(pkg-config --cflags --libs iob)
cc -std=c11 -Wall -Werror "$prog" -o "$tmp/prog_static" $(pkg-config --cflags iob) \
   "$libdir/libiob.a" $(pkg-config --static --libs-only-other --libs-only-L iob) \
   $(pkg-config --static --libs grpc libprotobuf-c) -lpthread

mkdir -p "$tmp/run" && chmod 0755 "$tmp/run"
"$iobd" --listen "unix:$tmp/run/iobd.sock" --broker "$tmp/run/broker.sock" --hugepages off \
        --log-level warning &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/run/broker.sock" ] && break; sleep 0.05; done
export IOB_SERVER=unix:$tmp/run/iobd.sock
LD_LIBRARY_PATH=$libdir "$tmp/prog"
"$tmp/prog_static"
echo "install test: ok"
