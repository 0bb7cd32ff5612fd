#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The real thing: Debian's prometheus scrapes a test iobd every second; after known load
(creates over gRPC, one INVALID_ARGS, a writer filling a mediated ring through iobd's
mediator until ZX_ERR_NO_SPACE) the expected series and values are read back through
Prometheus's HTTP API (/api/v1/query). Exit 77 where prometheus is not installed.

usage: test_metrics_prometheus.py IOBD IOBCTL MEDIATED_PEER
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_util import SKIP, Iobd, drive_load, fail, free_port, value  # noqa: E402

iobd_bin, iobctl_bin, peer_bin = sys.argv[1], sys.argv[2], sys.argv[3]
prom_bin = shutil.which("prometheus") or ("/usr/bin/prometheus"
                                          if os.path.exists("/usr/bin/prometheus") else None)
if prom_bin is None:
    print("SKIPPED: prometheus is not installed (apt-get install prometheus)")
    sys.exit(SKIP)

d = Iobd(iobd_bin, iobctl_bin)
tmp = tempfile.mkdtemp(prefix="iob-prom-")
prom = None
try:
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: iobd\n    static_configs:\n"
                "      - targets: ['%s']\n" % d.addr)
    web = "127.0.0.1:%d" % free_port()
    plog = os.path.join(tmp, "prometheus.log")
    with open(plog, "w") as f:
        prom = subprocess.Popen([prom_bin, "--config.file=" + cfg,
                                 "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                                 "--web.listen-address=" + web, "--log.level=warn"],
                                stdout=f, stderr=f)

    def api(query):
        url = "http://%s/api/v1/query?%s" % (web, urllib.parse.urlencode({"query": query}))
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        if body.get("status") != "success":
            fail("query %s: %s" % (query, body), plog)
        return body["data"]["result"]

    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen("http://%s/-/ready" % web, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if prom.poll() is not None or time.monotonic() > deadline:
            fail("prometheus did not become ready", plog)
        time.sleep(0.2)

    samples = drive_load(d, peer_bin, creates=5)
    wok = sum(v for k, v in samples.items() if k[0] == "iob_mediated_records_total"
              and dict(k[1]).get("shared_region") != "other")
    if not wok:
        fail("no mediated records in iobd's own scrape", d.log)

    # (PromQL, check of the single result's value, what it means)
    expect = [
        ('up{job="iobd"}', lambda v: v == 1, "prometheus scrapes iobd"),
        ('iob_rpc_calls_total{method="CreateIob",status="ZX_OK"}', lambda v: v == 6,
         "six good creates"),
        ('iob_rpc_calls_total{method="CreateIob",status="ZX_ERR_INVALID_ARGS"}',
         lambda v: v == 1, "one create nobody may write"),
        ('iob_rpc_call_duration_seconds_count{method="CreateIob"}', lambda v: v == 7,
         "every create timed"),
        ('histogram_quantile(0.5, sum by (le) (iob_rpc_call_duration_seconds_bucket'
         '{method="CreateIob"}))', lambda v: 0 < v <= 1, "a median create latency"),
        ('iob_broker_requests_total{method="Channel",status="ZX_OK"}',
         lambda v: v == 1, "the writer's shared-memory channel"),
        ('sum(iob_mediated_records_total{shared_region!="other"})', lambda v: v == wok,
         "records per shared region, as iobd's own scrape said"),
        ('sum(iob_mediated_no_space_total{shared_region!="other"})', lambda v: v >= 1,
         "ZX_ERR_NO_SPACE per shared region"),
        ('iob_iobs', lambda v: v == 1, "the ring IOB alive"),
        ('iob_bytes_in_use{backing="4K"}', lambda v: v == 16384, "its shared region's bytes"),
        ('iob_budget_limit{scope="session",resource="iobs"}', lambda v: v == 65536,
         "a budget"),
        ('iob_refused_connections_total{reason="auth"}', lambda v: v == 0, "no refusals"),
    ]
    pending = list(expect)
    deadline = time.monotonic() + 20
    last = {}
    while pending and time.monotonic() < deadline:
        still = []
        for q, ok, what in pending:
            res = api(q)
            v = float(res[0]["value"][1]) if len(res) == 1 else None
            last[q] = res
            if v is None or not ok(v):
                still.append((q, ok, what))
        pending = still
        if pending:
            time.sleep(0.5)
    if pending:
        fail("series not as expected: " + "; ".join(
            "%s (%s): %s" % (q, what, last.get(q)) for q, _, what in pending), d.log)
    for q, _, what in expect:
        print("ok  %-70s %s" % (q, last[q][0]["value"][1]))
    print("PASS (%d mediated records)" % wok)
finally:
    if prom is not None:
        prom.terminate()
        try:
            prom.wait(timeout=10)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
    d.stop()
    shutil.rmtree(tmp, ignore_errors=True)
