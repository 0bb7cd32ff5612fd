#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs test_grpc_interop.py (or the script named by $IOB_PY_TEST) with an interpreter that
# can import grpc and grpc_tools: the distro's /usr/bin/python3 (python3-grpcio), which is
# not always the first python3 on PATH.
# Exit 77 (skipped) when there is none.
here=$(dirname "$0")
for py in /usr/bin/python3 python3; do
  if "$py" -c 'import grpc, grpc_tools' >/dev/null 2>&1; then
    exec "$py" "$here/${IOB_PY_TEST:-test_grpc_interop.py}" "$@"
  fi
done
echo "SKIPPED: no python3 with grpcio and grpc_tools (apt-get install python3-grpcio python3-grpc-tools)"
exit 77
