#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""iobd --metrics scraped directly: the text format (every sample parses, HELP and TYPE
before it), the counters after known calls, a non-loopback address refused unless
--metrics-allow-remote, the config-file key, and stalled scrapers that neither stall iobd's
other clients nor keep descriptors past the endpoint's timeout.

usage: test_metrics.py IOBD IOBCTL MEDIATED_PEER
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_util import Iobd, drive_load, fail, free_port, parse, value  # noqa: E402

iobd_bin, iobctl_bin, peer_bin = sys.argv[1], sys.argv[2], sys.argv[3]


def check_counters():
    d = Iobd(iobd_bin, iobctl_bin)
    try:
        status, ctype, text = d.scrape()
        if status != 200 or not ctype.startswith("text/plain; version=0.0.4"):
            fail("scrape: %d %r" % (status, ctype), d.log)
        samples, types = parse(text)
        for fam, t in [("iob_iobs", "gauge"), ("iob_bytes_in_use", "gauge"),
                       ("iob_rpc_calls_total", "counter"),
                       ("iob_rpc_call_duration_seconds", "histogram"),
                       ("iob_broker_requests_total", "counter"),
                       ("iob_mediated_records_total", "counter"),
                       ("iob_mediated_no_space_total", "counter"),
                       ("iob_token_expiries_total", "counter"),
                       ("iob_refused_connections_total", "counter"),
                       ("iob_budget_limit", "gauge"), ("iob_hugepages", "gauge")]:
            if types.get(fam) != t:
                fail("family %s: type %r, want %s" % (fam, types.get(fam), t), d.log)
        if value(samples, "iob_iobs") != 0:
            fail("a fresh iobd has IOBs", d.log)

        samples = drive_load(d, peer_bin, creates=5)
        ok = value(samples, "iob_rpc_calls_total", method="CreateIob", status="ZX_OK")
        bad = value(samples, "iob_rpc_calls_total", method="CreateIob",
                    status="ZX_ERR_INVALID_ARGS")
        if ok != 6 or bad != 1:
            fail("CreateIob ZX_OK %s (want 6), INVALID_ARGS %s (want 1)" % (ok, bad), d.log)
        # The writer's broker requests: one attach, one import, one shared-memory channel
        # (its records then go through the channel, not as requests).
        att = value(samples, "iob_broker_requests_total", method="Attach", status="ZX_OK")
        imp = value(samples, "iob_broker_requests_total", method="Import", status="ZX_OK")
        chan = value(samples, "iob_broker_requests_total", method="Channel", status="ZX_OK")
        if att != 1 or imp != 1 or chan != 1:
            fail("broker: attach %s import %s channel %s" % (att, imp, chan), d.log)
        count = value(samples, "iob_rpc_call_duration_seconds_count", method="CreateIob")
        inf = value(samples, "iob_rpc_call_duration_seconds_bucket", method="CreateIob", le="+Inf")
        if count != 7 or inf != 7:
            fail("CreateIob histogram count %s +Inf %s (want 7)" % (count, inf), d.log)
        les = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                     if k[0] == "iob_rpc_call_duration_seconds_bucket"
                     and dict(k[1]).get("method") == "CreateIob")
        if [v for _, v in les] != sorted(v for _, v in les) or les[0][0] != 1e-05:
            fail("buckets not cumulative from 10us: %s" % les, d.log)
        regions = [dict(k[1])["shared_region"] for k in samples
                   if k[0] == "iob_mediated_records_total"]
        named = [r for r in regions if r != "other"]
        if len(named) != 1 or "other" not in regions:
            fail("mediated series: %s" % regions, d.log)
        sr = named[0]
        rec = value(samples, "iob_mediated_records_total", shared_region=sr)
        byt = value(samples, "iob_mediated_bytes_total", shared_region=sr)
        ns = value(samples, "iob_mediated_no_space_total", shared_region=sr)
        # 16 KiB of ring, nobody reading: some records fit, then every write is NO_SPACE.
        if not rec or not ns or not byt or byt < rec:
            fail("shared region %s: records %s bytes %s no_space %s" % (sr, rec, byt, ns), d.log)
        records = int(rec)
        # The ring IOB (its ep0 token alive) and its shared region; the writer's ep1 is gone.
        if value(samples, "iob_iobs") != 1 or value(samples, "iob_shared_regions") != 1:
            fail("iobs %s shared %s" % (value(samples, "iob_iobs"),
                                        value(samples, "iob_shared_regions")), d.log)
        if value(samples, "iob_bytes_in_use", backing="4K") != 16384:
            fail("bytes in use %s" % value(samples, "iob_bytes_in_use", backing="4K"), d.log)
        if value(samples, "iob_budget_limit", scope="session", resource="iobs") != 65536:
            fail("session iob budget", d.log)

        # Only GET/HEAD /metrics.
        try:
            d.scrape("/nothing")
            fail("/nothing answered 200", d.log)
        except Exception as e:  # urllib raises HTTPError for 404
            if getattr(e, "code", None) != 404:
                fail("/nothing: %r" % e, d.log)

        # Stalled scrapers: 40 connections that never send a request. The baseline waits
        # for the scrapes above to be closed on iobd's side too.
        base = d.steady_fd_count()
        stalled = []
        for _ in range(40):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", d.port))
            except OSError:
                pass
            stalled.append(s)
        t = time.monotonic()
        d.ctl("server-info")
        took = time.monotonic() - t
        if took > 2 or not d.alive():
            fail("server-info took %.2f s with stalled scrapers" % took, d.log)
        held = d.fd_count() - base
        if held > 8 + 2:
            fail("iobd holds %d descriptors for 40 stalled scrapers (cap 8)" % held, d.log)
        # The endpoint's timeout (5 s) frees them while the clients still hold theirs.
        deadline = time.monotonic() + 12
        while d.fd_count() > base and time.monotonic() < deadline:
            time.sleep(0.2)
        if d.fd_count() != base:
            fail("descriptors %d, %d before the stalled scrapers" % (d.fd_count(), base), d.log)
        for s in stalled:
            s.close()
        if d.scrape()[0] != 200:
            fail("scrape after the stall", d.log)
        print("counters, format, stalled scrapers: ok (%d records, server-info %.3f s)"
              % (records, took))
    finally:
        d.stop()


def run_iobd(args, wait=3):
    """iobd with args; its exit status and log if it exits within `wait` s, else None."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log")
        with open(log, "w") as f:
            p = subprocess.Popen([iobd_bin, "--listen", "unix:%s/s.sock" % tmp,
                                  "--hugepages=off", "--exit-with-parent", *args],
                                 stdout=f, stderr=f)
        try:
            rc = p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait()
            rc = None
        with open(log) as f:
            return rc, f.read()


TOKEN = "metrics-test-token"


def check_token():
    """With iobd's token set, a scrape needs "Authorization: Bearer TOKEN": 401 without it or
    with another, the exposition with it (and iobctl top sends $IOB_TOKEN)."""
    d = Iobd(iobd_bin, iobctl_bin, extra=["--token", TOKEN])
    try:
        for header in (None, "Bearer wrong-token", "Bearer " + TOKEN + "x", "Basic " + TOKEN):
            req = urllib.request.Request("http://%s/metrics" % d.addr)
            if header is not None:
                req.add_header("Authorization", header)
            try:
                urllib.request.urlopen(req, timeout=5)
                fail("scrape with Authorization %r answered" % header, d.log)
            except urllib.error.HTTPError as e:
                if e.code != 401 or e.headers.get("WWW-Authenticate") != "Bearer":
                    fail("scrape with Authorization %r: %d %s" % (header, e.code, e.headers),
                         d.log)
        req = urllib.request.Request("http://%s/metrics" % d.addr)
        req.add_header("Authorization", "Bearer " + TOKEN)
        with urllib.request.urlopen(req, timeout=5) as r:
            if r.status != 200 or b"# TYPE iob_iobs gauge" not in r.read():
                fail("scrape with the token: %d" % r.status, d.log)
        env = dict(d.env, IOB_TOKEN=TOKEN)
        top = subprocess.run([iobctl_bin, "top", "--once", "--metrics", d.addr], env=env,
                             capture_output=True, timeout=30)
        if top.returncode != 0:
            fail("iobctl top with $IOB_TOKEN: exit %d %s" % (top.returncode, top.stderr), d.log)
        env.pop("IOB_TOKEN")
        top = subprocess.run([iobctl_bin, "top", "--once", "--metrics", d.addr], env=env,
                             capture_output=True, timeout=30)
        if top.returncode == 0:
            fail("iobctl top without the token succeeded", d.log)
    finally:
        d.stop()
    print("bearer token: ok")


def check_policy():
    rc, log = run_iobd(["--metrics", "0.0.0.0:0"])
    if rc != 1 or "not a loopback address" not in log:
        fail("0.0.0.0 without --metrics-allow-remote: exit %s\n%s" % (rc, log))
    rc, log = run_iobd(["--metrics", "[::]:0"])
    if rc != 1 or "not a loopback address" not in log:
        fail(":: without --metrics-allow-remote: exit %s\n%s" % (rc, log))
    rc, log = run_iobd(["--metrics", "nonsense"])
    if rc != 1 or "HOST:PORT" not in log:
        fail("bad address: exit %s\n%s" % (rc, log))
    # Remote scrapers are operators: as for gRPC over TCP, only with the bearer token.
    rc, log = run_iobd(["--metrics", "0.0.0.0:0", "--metrics-allow-remote"])
    if rc != 1 or "need the bearer token" not in log:
        fail("--metrics-allow-remote without a token: exit %s\n%s" % (rc, log))
    rc, log = run_iobd(["--metrics", "0.0.0.0:0", "--metrics-allow-remote", "--token", TOKEN],
                       wait=1)
    if rc is not None or "remote scrapers allowed" not in log:
        fail("--metrics-allow-remote: exit %s\n%s" % (rc, log))
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
        f.write("[iobd]\nmetrics = 127.0.0.1:0\nmetrics-max-named = 4\n")
        ini = f.name
    try:
        rc, log = run_iobd(["--config", ini], wait=1)
        if rc is not None or "metrics on http://127.0.0.1:" not in log:
            fail("config key metrics: exit %s\n%s" % (rc, log))
    finally:
        os.unlink(ini)
    rc, log = run_iobd([], wait=1)
    if "metrics on" in log:
        fail("metrics on by default:\n%s" % log)
    print("loopback policy, config key, off by default: ok")


def check_bounds_refusals_expiry():
    port = free_port()
    d = Iobd(iobd_bin, iobctl_bin, extra=["--metrics-max-named", "2", "--token-ttl", "1s",
                                          "--listen", "127.0.0.1:%d" % port, "--insecure",
                                          "--token", "s3cret"])
    try:
        for _ in range(4):
            d.ctl("create-shared-region", "--size", "4K", "--export")
        samples, _ = parse(d.scrape()[2])
        regions = sorted(dict(k[1])["shared_region"] for k in samples
                         if k[0] == "iob_mediated_records_total")
        if len(regions) != 3 or "other" not in regions:
            fail("--metrics-max-named 2 with 4 shared regions: %s" % regions, d.log)
        # A TCP call without the bearer token is refused and counted.
        r = d.ctl("--server", "127.0.0.1:%d" % port, "--insecure", "server-info", check=False)
        if r.returncode == 0:
            fail("a call without the token succeeded", d.log)
        # The four tokens expire (1 s, the expiry timer runs every second).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            samples, _ = parse(d.scrape()[2])
            if value(samples, "iob_token_expiries_total") == 4:
                break
            time.sleep(0.2)
        else:
            fail("token expiries %s, want 4" % value(samples, "iob_token_expiries_total"), d.log)
        auth = value(samples, "iob_refused_connections_total", reason="auth")
        if auth != 1:
            fail("auth refusals %s, want 1" % auth, d.log)
        if value(samples, "iob_shared_regions") != 0:
            fail("shared regions outlived their tokens", d.log)
        print("max-named, auth refusal, token expiries: ok (%s)" % regions)
    finally:
        d.stop()


check_policy()
check_token()
check_counters()
check_bounds_refusals_expiry()
print("PASS")
