#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""iobctl top in a real terminal: tmux runs it in a 120x40 pane against a test iobd that
holds three IOBs; after a few refreshes the pane shows them and the calls that made them,
calls made meanwhile show up as a rate, q ends it with status 0. --once and --json are
checked on their own; an endpoint nobody serves is exit 2. Exit 77 without tmux.

usage: test_iobctl_top.py IOBD IOBCTL
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "server",
                                "daemon"))
from metrics_util import SKIP, Iobd, fail  # noqa: E402

iobd_bin, iobctl_bin = sys.argv[1], sys.argv[2]
tmux_bin = shutil.which("tmux")
if tmux_bin is None:
    print("SKIPPED: tmux is not installed (apt-get install tmux)")
    sys.exit(SKIP)

d = Iobd(iobd_bin, iobctl_bin)
sock = "iob-top-%d" % os.getpid()  # a tmux server of our own


def tmux(*args, check=True):
    r = subprocess.run([tmux_bin, "-L", sock, *args], capture_output=True, timeout=10,
                       env=dict(os.environ, TERM="xterm"))
    if check and r.returncode != 0:
        fail("tmux %s: %s" % (" ".join(args), r.stderr.decode()), d.log)
    return r.stdout.decode()


def screen_until(pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        text = tmux("capture-pane", "-p", "-t", "top")
        if pred(text):
            return text
        if time.monotonic() > deadline:
            fail("%s; the pane shows:\n%s" % (what, text), d.log)
        time.sleep(0.2)


def row(text, name):
    """The numbers of a method's row: (calls/s, total, errors)."""
    m = re.search(r"^%s\s+([0-9.]+)\s+([0-9]+)\s+([0-9]+)\s*$" % name, text, re.M)
    return tuple(float(x) for x in m.groups()) if m else None


try:
    # Three IOBs kept alive by their exported tokens (the creating iobctl exits).
    for _ in range(3):
        d.ctl("create", "--region", "size=64K,access=ep0:rw,ep1:r", "--export")

    cmd = "%s top --metrics %s --interval 0.5; echo \"top exited $?\"; sleep 30" % (
        shlex.quote(iobctl_bin), d.addr)
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "top", cmd)
    text = screen_until(lambda t: "IOBs 3 " in t and row(t, "CreateIob") is not None,
                        "top never showed the three IOBs and their creates")
    if row(text, "CreateIob")[1] != 3 or "iobctl top - http://%s/metrics" % d.addr not in text:
        fail("first screen:\n" + text, d.log)
    if not re.search(r"^sessions \d+\s+handles 0\s+tokens 6\s+mappings 0", text, re.M):
        fail("handles/tokens line:\n" + text, d.log)
    # Calls made while it runs: a rate above zero, then the new total.
    for _ in range(4):
        d.ctl("server-info")
    text = screen_until(lambda t: row(t, "ServerInfo") is not None
                        and row(t, "ServerInfo")[1] == 4,
                        "top never showed the four ServerInfo calls")
    print("screen:\n" + "\n".join(text.rstrip().split("\n")[:14]))
    tmux("send-keys", "-t", "top", "q")
    screen_until(lambda t: "top exited 0" in t, "q did not end top with status 0")
    tmux("kill-server", check=False)

    # --once: one screen, from two samples.
    r = subprocess.run([iobctl_bin, "top", "--metrics", d.addr, "--once", "--interval", "0.2"],
                       capture_output=True, timeout=10)
    out = r.stdout.decode()
    if r.returncode != 0 or "IOBs 3 " not in out or row(out, "CreateIob") is None:
        fail("--once: exit %d\n%s%s" % (r.returncode, out, r.stderr.decode()), d.log)
    # --json: one object.
    r = subprocess.run([iobctl_bin, "top", "--metrics", d.addr, "--json", "--interval", "0.2"],
                       capture_output=True, timeout=10)
    try:
        o = json.loads(r.stdout)
    except ValueError:
        fail("--json is not JSON: %r" % r.stdout, d.log)
    creates = [m for m in o.get("rpc", []) if m["method"] == "CreateIob"]
    if (r.returncode != 0 or o["iobs"] != 3 or o["tokens"] != 6 or len(creates) != 1
            or creates[0]["total"] != 3 or not 0.1 < o["interval_s"] < 5
            or o["backing"] != "4K" or "mediated" not in o):
        fail("--json: %s" % json.dumps(o), d.log)
    # Nobody serving: exit 2 and a message.
    r = subprocess.run([iobctl_bin, "top", "--metrics", "127.0.0.1:1", "--once"],
                       capture_output=True, timeout=10)
    if r.returncode != 2 or b"cannot connect" not in r.stderr:
        fail("no endpoint: exit %d %r" % (r.returncode, r.stderr), d.log)
    print("PASS")
finally:
    subprocess.run([tmux_bin, "-L", sock, "kill-server"], capture_output=True)
    d.stop()
