# SPDX-License-Identifier: MIT
"""Shared by the metrics tests: a private iobd with --metrics, load through iobctl, scrapes.

Every process is started by exec (subprocess), never forked from a process that runs gRPC.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from proc_util import fd_count, steady_fd_count  # noqa: E402

SKIP = 77


def fail(msg, log=None):
    print("FAIL:", msg)
    if log is not None and os.path.exists(log):
        with open(log) as f:
            print(f.read()[-4000:])
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Iobd:
    """iobd on a Unix socket in a temp dir with --metrics 127.0.0.1:0 (the port from its log)."""

    def __init__(self, iobd, iobctl, extra=()):
        self.dir = tempfile.mkdtemp(prefix="iob-metrics-")
        self.sock = os.path.join(self.dir, "iobd.sock")
        self.log = os.path.join(self.dir, "iobd.log")
        self.iobctl = iobctl
        # iobd's bearer token, which every scrape then needs.
        extra = list(extra)
        self.token = extra[extra.index("--token") + 1] if "--token" in extra else None
        args = [iobd, "--listen", "unix:" + self.sock, "--hugepages=off", "--exit-with-parent",
                "--metrics", "127.0.0.1:0", *extra]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        self.port = None
        for _ in range(200):
            with open(self.log) as f:
                m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", f.read())
            if m and os.path.exists(self.sock):
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            fail("iobd did not start with --metrics", self.log)
        self.addr = "127.0.0.1:%d" % self.port
        self.env = dict(os.environ, IOB_SERVER="unix:" + self.sock)

    def ctl(self, *args, input=None, check=True):
        r = subprocess.run([self.iobctl, *args], input=input, env=self.env, capture_output=True,
                           timeout=30)
        if check and r.returncode != 0:
            fail("iobctl %s: exit %d: %s" % (" ".join(args), r.returncode,
                                               r.stderr.decode(errors="replace")), self.log)
        return r

    def scrape(self, path="/metrics"):
        req = urllib.request.Request("http://%s%s" % (self.addr, path))
        if self.token is not None:
            req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()

    def alive(self):
        return self.proc.poll() is None

    def fd_count(self):
        return fd_count(self.proc.pid)

    def steady_fd_count(self):
        return steady_fd_count(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def drive_load(d, peer, creates=5):
    """Known calls: `creates` good creates and one INVALID_ARGS create over gRPC, then a
    writer process (peer: iob_mediated_peer) that writes records through iobd's mediator into
    a 16 KiB ring nobody reads until it has met ZX_ERR_NO_SPACE. Returns the scrape that saw
    that (parsed samples)."""
    for _ in range(creates):
        d.ctl("create", "--region", "size=64K,access=ep0:rw,ep1:r")
    r = d.ctl("create", "--region", "size=4096,access=ep0:r,ep1:r", check=False)
    if r.returncode != 5 or b"ZX_ERR_INVALID_ARGS" not in r.stderr:
        fail("nobody-writes create: exit %d %s" % (r.returncode, r.stderr), d.log)
    out = d.ctl("create-shared-region", "--size", "16K", "--export").stdout.decode()
    sr = re.search(r"^shared\s+(\S+)", out, re.M).group(1)
    out = d.ctl("create", "--region",
                "type=shared,shared=%s,discipline=ring,tag=7,access=ep0:rw,ep1:W" % sr,
                "--export").stdout.decode()
    t1 = re.search(r"^ep1\s+(\S+)", out, re.M).group(1)
    w = subprocess.Popen([peer, "broker", "writev", t1, "100000"], env=d.env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            samples, _ = parse(d.scrape()[2])
            if any(k[0] == "iob_mediated_no_space_total" and v > 0 for k, v in samples.items()):
                break
            if w.poll() is not None:
                fail("the writer exited: %s" % w.stdout.read(), d.log)
            time.sleep(0.1)
        else:
            fail("the ring never said ZX_ERR_NO_SPACE", d.log)
    finally:
        w.kill()
        w.wait()
    time.sleep(0.2)  # the writer's last request answered and counted
    return parse(d.scrape()[2])[0]


SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})?'
    r' ([-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|Inf|NaN))$')


def parse(text):
    """Checks the text format 0.0.4 strictly enough for the tests; returns
    {(name, frozenset(labels)): value} and {family: type}."""
    samples, types, helps = {}, {}, set()
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram", "summary",
                                                    "untyped"):
                fail("line %d: bad TYPE: %r" % (n, line))
            if parts[2] in types:
                fail("line %d: second TYPE for %s" % (n, parts[2]))
            types[parts[2]] = parts[3]
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            fail("line %d does not parse: %r" % (n, line))
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        if family not in types or family not in helps:
            fail("line %d: %s has no HELP/TYPE before it" % (n, name))
        if types[family] == "counter" and not name.endswith("_total"):
            fail("line %d: counter %s without _total" % (n, name))
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""))
        v = m.group(4)
        samples[(name, labels)] = float("inf") if v in ("Inf", "+Inf") else float(v)
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))
