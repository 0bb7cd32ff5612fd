#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the Python package's tests (pytest, this directory) with an interpreter that can
# import cffi and pytest: the distro's /usr/bin/python3 (python3-cffi, python3-pytest), which
# is not always the first python3 on PATH; the same lookup as test_grpc_interop.sh.
# Exit 77 (skipped) when there is none.
#   run_pytest.sh IOBD IOBCTL LIBIOB RING_PEER [pytest args]
here=$(dirname "$0")
export IOB_TEST_IOBD=$1 IOB_TEST_IOBCTL=$2 IOB_LIBIOB=$3 IOB_TEST_RING_PEER=$4
shift 4
export PYTHONDONTWRITEBYTECODE=1
if [ -n "${IOB_TEST_PRELOAD:-}" ]; then
  # A sanitizer build (tests/client/CMakeLists.txt): the interpreter gets ASan's runtime
  # first and no leak check; conftest.py gives iobd and the C programs their own settings.
  export IOB_TEST_ASAN_OPTIONS="${ASAN_OPTIONS:-}"
  export LD_PRELOAD=$IOB_TEST_PRELOAD ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
for py in /usr/bin/python3 python3; do
  if "$py" -c 'import cffi, pytest' >/dev/null 2>&1; then
    exec "$py" -m pytest -p no:cacheprovider -q "$here" "$@"
  fi
done
echo "SKIPPED: no python3 with cffi and pytest (apt-get install python3-cffi python3-pytest)"
exit 77
