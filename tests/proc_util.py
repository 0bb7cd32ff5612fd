# SPDX-License-Identifier: MIT
"""Looking at a process from outside, for the Python tests: its descriptor count, and that
count once it holds still."""
import os
import time


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def steady_fd_count(pid, quiet=0.3, timeout=5.0):
    """The process's descriptor count once it has not changed for `quiet` seconds: a
    connection its client just closed is closed on iobd's side a moment later, and a
    baseline that counted it would make a later check find one descriptor too few."""
    deadline = time.time() + timeout
    last, since = fd_count(pid), time.time()
    while time.time() < deadline and time.time() - since < quiet:
        time.sleep(0.05)
        now = fd_count(pid)
        if now != last:
            last, since = now, time.time()
    return last
