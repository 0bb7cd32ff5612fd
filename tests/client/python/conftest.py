# SPDX-License-Identifier: MIT
"""A real iobd for the Python tests: started once per run on a Unix socket in a temp dir
(--hugepages=off), reached through IOB_SERVER; every test must leave iobd's IOB, handle,
mapping and token counts where it found them (iobctl server-info --json).

Paths come from the ctest entry (run_pytest.sh): IOB_TEST_IOBD, IOB_TEST_IOBCTL,
IOB_TEST_RING_PEER, and IOB_LIBIOB for the package itself.
"""
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "client", "python"))


def _env_path(name):
    path = os.environ.get(name)
    if not path or not os.path.exists(path):
        pytest.exit("%s is not set to an existing file (run through ctest)" % name, 2)
    return path


def child_env(**extra):
    """The environment of the programs a test starts: under a sanitizer build the
    interpreter's preload and its ASAN_OPTIONS are its own (run_pytest.sh)."""
    env = dict(os.environ, **extra)
    if "IOB_TEST_PRELOAD" in env:
        env.pop("LD_PRELOAD", None)
        env["ASAN_OPTIONS"] = env.get("IOB_TEST_ASAN_OPTIONS", "")
    return env


@pytest.fixture(scope="session")
def iobd():
    binary = _env_path("IOB_TEST_IOBD")
    iobctl = _env_path("IOB_TEST_IOBCTL")
    tmp = tempfile.TemporaryDirectory(prefix="iob-python-")
    sock = os.path.join(tmp.name, "iobd.sock")
    log = open(os.path.join(tmp.name, "iobd.log"), "w+")
    proc = subprocess.Popen([binary, "--listen", "unix:" + sock, "--hugepages=off"],
                            stdout=log, stderr=subprocess.STDOUT, env=child_env())
    for _ in range(200):
        if os.path.exists(sock) or proc.poll() is not None:
            break
        time.sleep(0.025)
    if not os.path.exists(sock):
        proc.kill()
        proc.wait()
        log.seek(0)
        pytest.exit("iobd did not start: " + log.read(), 1)
    os.environ["IOB_SERVER"] = "unix:" + sock
    server = Server(proc, iobctl, "unix:" + sock)
    yield server
    import iob

    iob.disconnect()
    proc.terminate()
    rc = proc.wait(timeout=10)
    log.seek(0)
    text = log.read()
    log.close()
    tmp.cleanup()
    assert rc == 0, "iobd exited %d:\n%s" % (rc, text)


class Server:
    def __init__(self, proc, iobctl, target):
        self.proc = proc
        self.iobctl = iobctl
        self.target = target

    def info(self):
        out = subprocess.run([self.iobctl, "server-info", "--json"], check=True,
                             capture_output=True, text=True,
                             env=child_env(IOB_SERVER=self.target)).stdout
        return json.loads(out)

    def counts(self):
        i = self.info()
        return {k: i[k] for k in ("iobs", "shared_regions", "handles", "mappings", "tokens")}


@pytest.fixture(autouse=True)
def no_leaks(iobd):
    """Each test gives back every IOB, handle, mapping and token it made."""
    before = iobd.counts()
    yield
    gc.collect()
    after = iobd.counts()
    assert iobd.proc.poll() is None, "iobd died"
    assert after == before, "iobd's counts before %s, after %s" % (before, after)
