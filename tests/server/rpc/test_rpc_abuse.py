# SPDX-License-Identifier: MIT
"""Hostile clients of iobd's gRPC side, each a real separate process (this script again, in
attacker mode, as root or as another uid): session churn, the per-uid session and
per-session Wait budgets, a CreateIob that decodes to hundreds of MB, a forged log line,
and what ListIobs/ServerInfo show to a caller that is not an operator. After every attack
iobd must be alive, another client's call must complete promptly, and iobd's fd count and
accounted bytes must be back at their start values.

usage: test_rpc_abuse.py IOBD PROTO_DIR WORK_DIR
       test_rpc_abuse.py attack STUBS TARGET MODE ARGS...   (the attacker; internal)
"""
import json
import os
import sys
import time

ZX_ERR_NO_RESOURCES, ZX_ERR_OUT_OF_RANGE = -3, -14
NOBODY, OTHER, OPERATOR = 65534, 65533, 65532


# ---------------------------------------------------------------- the attacker process

def attacker(argv):
    stubs, target, mode, args = argv[0], argv[1], argv[2], argv[3:]
    sys.path.insert(0, stubs)
    import grpc
    from iob.v1 import iob_pb2 as pb
    from iob.v1 import iob_pb2_grpc as pbg

    def status_of(err):
        for k, v in err.trailing_metadata() or ():
            if k == "iob-status":
                return int(v)
        return None

    def report(**kw):
        print(json.dumps(kw), flush=True)

    ch = grpc.insecure_channel(target)
    stub = pbg.IobStub(ch)

    def open_session(name="attacker"):
        call = stub.OpenSession(pb.OpenSessionRequest(client_name=name), timeout=30)
        o = next(call).opened
        return call, (("iob-session", "%d:%s" % (o.session_id, o.secret.hex())),)

    def create(md, name=None):
        r = stub.CreateIob(pb.CreateIobRequest(
            regions=[pb.Region(type=0, access=0x33, size=4096)]), metadata=md, timeout=10)
        if name:
            stub.SetName(pb.SetNameRequest(handle=r.ep0, name=name.encode()), metadata=md,
                         timeout=10)
        return r

    if mode == "churn":
        # Opens and cancels sessions, an IOB in every tenth, then stays alive without a
        # connection: whatever iobd still holds for it now is a leak.
        for i in range(int(args[0])):
            call, md = open_session()
            if i % 10 == 0:
                create(md)
            call.cancel()
        ch.close()
        report(done=True)
        sys.stdin.read()  # alive until the test has looked
    elif mode == "cap":
        sessions, waits = int(args[0]), int(args[1])
        held, refused = [], None
        for _ in range(sessions + 1):
            try:
                held.append(open_session())
            except grpc.RpcError as e:
                refused = status_of(e)
                break
        md = held[0][1]
        ep0 = create(md).ep0
        armed, wait_refused = [], None
        for _ in range(waits + 1):
            w = stub.Wait(pb.WaitRequest(handle=ep0, signals=1 << 24, watch=True,
                                         timeout_ns=-1), metadata=md, timeout=30)
            try:
                next(w)
                armed.append(w)
            except grpc.RpcError as e:
                wait_refused = status_of(e)
                break
        report(opened=len(held), refused=refused, waits=len(armed), wait_refused=wait_refused)
        sys.stdin.read()
        for w in armed:
            w.cancel()
        for call, _ in held:
            call.cancel()
    elif mode == "big_create":
        # ~2M empty Region submessages in one message just under the 4 MiB limit.
        call, md = open_session()
        raw = ch.unary_unary("/iob.v1.Iob/CreateIob", request_serializer=None,
                             response_deserializer=None)
        t0 = time.time()
        try:
            raw(b"\x12\x00" * int(args[0]), metadata=md, timeout=60)
            report(status=0, seconds=time.time() - t0)
        except grpc.RpcError as e:
            report(status=status_of(e), code=str(e.code()), seconds=time.time() - t0)
        call.cancel()
    elif mode == "name":
        call, md = open_session(args[0])
        call.cancel()
        report(done=True)
    elif mode == "mine":
        # Creates an IOB of its own and reports what the listing and the figures show.
        call, md = open_session()
        create(md, args[0])
        lst = stub.ListIobs(pb.ListIobsRequest(), timeout=10)
        info = stub.ServerInfo(pb.ServerInfoRequest(), timeout=10)
        report(names=sorted(i.name for i in lst.iobs), total=lst.total,
               server_wide=lst.server_wide, info_server_wide=info.server_wide,
               iobs=info.iobs, sessions=info.sessions, handles=info.handles,
               page_size=info.page_size)
        sys.stdin.read()
        call.cancel()
    ch.close()


if len(sys.argv) > 1 and sys.argv[1] == "attack":
    attacker(sys.argv[2:])
    sys.exit(0)


# ---------------------------------------------------------------- the test

import subprocess  # noqa: E402
import traceback  # noqa: E402

import grpc  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import test_grpc_interop as interop  # noqa: E402
from proc_util import fd_count, steady_fd_count  # noqa: E402
from test_grpc_interop import Iobd, Session, pb, pbg, T  # noqa: E402

IS_ROOT = os.geteuid() == 0
HERE = os.path.abspath(__file__)




def vm_hwm_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def info(ch):
    return pbg.IobStub(ch).ServerInfo(pb.ServerInfoRequest(), timeout=T)


class Attacker:
    """This script in attacker mode, exec'd as a process of its own (optionally as uid)."""

    def __init__(self, srv, mode, *args, uid=None):
        # The attacker reads the stubs and this script: both must be readable by its uid.
        cmd = [sys.executable, HERE, "attack", interop.STUBS, "unix:" + srv.sock, mode]
        self.p = subprocess.Popen(cmd + [str(a) for a in args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, user=uid,
                                  group=uid, extra_groups=[] if uid is not None else None)

    def result(self, timeout=120):
        line = self.p.stdout.readline()
        assert line, "attacker died (exit %s)" % self.p.poll()
        return json.loads(line)

    def finish(self):
        self.p.stdin.close()
        assert self.p.wait(timeout=30) == 0, "attacker exit %d" % self.p.returncode


def other_client_works(srv, within=2.0):
    """Another client (this process, a fresh connection) opens a session and creates."""
    ch = grpc.insecure_channel("unix:" + srv.sock,
                               options=[("grpc.use_local_subchannel_pool", 1)])
    t0 = time.time()
    s = Session(ch)
    try:
        interop.create(s)
    finally:
        s.close()
        ch.close()
    took = time.time() - t0
    assert took < within, "another client's calls took %.2f s" % took


def settle(what, get, want, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        got = get()
        if got == want or time.time() > deadline:
            break
        time.sleep(0.05)
    assert got == want, "%s: %s, want %s" % (what, got, want)


class Baseline:
    """iobd's fd count, sessions and accounted bytes before an attack; checked after it."""

    def __init__(self, srv, ch):
        self.srv, self.ch = srv, ch
        i = info(ch)
        self.fds = steady_fd_count(srv.proc.pid)
        self.sessions, self.bytes = i.sessions, i.bytes_in_use

    def check(self):
        assert self.srv.proc.poll() is None, "iobd died"
        other_client_works(self.srv)
        settle("fd count", lambda: fd_count(self.srv.proc.pid), self.fds)
        settle("sessions", lambda: info(self.ch).sessions, self.sessions)
        settle("bytes_in_use", lambda: info(self.ch).bytes_in_use, self.bytes)


def open_up(srv):
    """Lets other uids reach the socket (iobd runs with --socket-mode=0666)."""
    os.chmod(srv.dir, 0o755)


def case_churn():
    """(a) 2,000 sessions opened and cancelled: nothing stays behind while the process lives."""
    srv = Iobd()
    ch = grpc.insecure_channel("unix:" + srv.sock)
    try:
        base = Baseline(srv, ch)
        a = Attacker(srv, "churn", 2000)
        try:
            a.result()
            # The attacker is alive: the old code kept a pidfd and a session per churn.
            base.check()
        finally:
            a.finish()
    finally:
        ch.close()
        srv.stop()


def case_caps():
    """(b) A uid past max-sessions-per-uid, a session past max-waits-per-session."""
    if not IS_ROOT:
        print("  (not root: other uids unavailable, skipped)")
        return
    srv = Iobd(["--socket-mode=0666", "--max-sessions-per-uid=4", "--max-waits-per-session=3"])
    open_up(srv)
    ch = grpc.insecure_channel("unix:" + srv.sock)
    try:
        base = Baseline(srv, ch)
        a = Attacker(srv, "cap", 4, 3, uid=NOBODY)
        try:
            r = a.result()
            assert r["opened"] == 4 and r["refused"] == ZX_ERR_NO_RESOURCES, r
            assert r["waits"] == 3 and r["wait_refused"] == ZX_ERR_NO_RESOURCES, r
            # Another uid is not affected by that one's budget.
            b = Attacker(srv, "cap", 4, 3, uid=OTHER)
            try:
                r = b.result()
                assert r["opened"] == 4 and r["waits"] == 3, r
            finally:
                b.finish()
            other_client_works(srv)
        finally:
            a.finish()
        base.check()
        # The budget is given back when sessions end: the same uid may open again.
        a = Attacker(srv, "cap", 4, 3, uid=NOBODY)
        try:
            r = a.result()
            assert r["opened"] == 4, r
        finally:
            a.finish()
    finally:
        ch.close()
        srv.stop()


def case_big_create():
    """(c) A 4 MiB CreateIob of 2M empty regions: bounded memory, Zircon's status."""
    srv = Iobd()
    ch = grpc.insecure_channel("unix:" + srv.sock)
    try:
        base = Baseline(srv, ch)
        hwm0 = vm_hwm_kib(srv.proc.pid)
        a = Attacker(srv, "big_create", 2000000)
        try:
            r = a.result()
        finally:
            a.finish()
        grew = vm_hwm_kib(srv.proc.pid) - hwm0
        print("  VmHWM grew %d KiB; status %s in %.2f s" % (grew, r["status"], r["seconds"]))
        # docs/zircon-iob.md A.3: options are 0, so the count decides: more than 64 regions.
        assert r["status"] == ZX_ERR_OUT_OF_RANGE, r
        assert grew < 64 * 1024, "iobd's peak RSS grew by %d KiB" % grew
        base.check()
    finally:
        ch.close()
        srv.stop()


def case_log_forgery():
    """(f) A client_name with a newline is one escaped log line."""
    srv = Iobd()
    ch = grpc.insecure_channel("unix:" + srv.sock)
    try:
        base = Baseline(srv, ch)
        forged = "iobd: error: FORGED by a client"
        a = Attacker(srv, "name", "evil\n" + forged + "\x1b[2J")
        try:
            a.result()
        finally:
            a.finish()
        log = open(srv.log).read().splitlines()
        assert not any(line.startswith(forged) for line in log), "forged line in the log"
        hits = [line for line in log if "evil\\x0a" + forged + "\\x1b[2J" in line]
        assert len(hits) == 1, hits
        base.check()
    finally:
        ch.close()
        srv.stop()


def case_listing():
    """(d) ListIobs/ServerInfo: operators see everything, anyone else only its own."""
    if not IS_ROOT:
        print("  (not root: other uids unavailable, skipped)")
        return
    srv = Iobd(["--socket-mode=0666", "--operator-uid=%d" % OPERATOR])
    open_up(srv)
    ch = grpc.insecure_channel("unix:" + srv.sock)
    s = Session(ch)
    try:
        r = s.stub.CreateIob(pb.CreateIobRequest(
            regions=[pb.Region(type=0, access=0x33, size=4096)]), metadata=s.md, timeout=T)
        s.stub.SetName(pb.SetNameRequest(handle=r.ep0, name=b"root-iob"), metadata=s.md,
                       timeout=T)
        a = Attacker(srv, "mine", "nobody-iob", uid=NOBODY)
        b = Attacker(srv, "mine", "other-iob", uid=OTHER)
        try:
            ra, rb = a.result(), b.result()
            # Each saw its own only (the other may not have created yet: never more).
            assert ra["names"] == ["nobody-iob"] and ra["total"] == 1, ra
            assert rb["names"] == ["other-iob"] and rb["total"] == 1, rb
            for r_ in (ra, rb):
                assert not r_["server_wide"] and not r_["info_server_wide"], r_
                assert r_["iobs"] == 1 and r_["sessions"] == 1 and r_["handles"] == 2, r_
                assert r_["page_size"] == 4096, r_
            # A configured operator and root see all three.
            c = Attacker(srv, "mine", "operator-iob", uid=OPERATOR)
            try:
                rc = c.result()
                assert {"root-iob", "nobody-iob", "other-iob"} <= set(rc["names"]), rc
                assert rc["server_wide"] and rc["info_server_wide"], rc
                assert rc["sessions"] >= 4, rc
            finally:
                c.finish()
            lst = s.stub.ListIobs(pb.ListIobsRequest(), timeout=T)
            names = {i.name for i in lst.iobs}
            assert {"root-iob", "nobody-iob", "other-iob"} <= names and lst.server_wide, names
        finally:
            a.finish()
            b.finish()
    finally:
        s.close()
        ch.close()
        srv.stop()


def main():
    os.chmod(interop.STUBS, 0o755)  # the attackers of other uids import the stubs
    for d, _, files in os.walk(interop.STUBS):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    failures = 0
    for c in (case_big_create, case_churn, case_caps, case_log_forgery, case_listing):
        try:
            c()
            print("ok   " + c.__name__, flush=True)
        except Exception:
            failures += 1
            print("FAIL " + c.__name__, flush=True)
            traceback.print_exc()
    import shutil
    shutil.rmtree(interop.STUBS, ignore_errors=True)
    sys.exit(1 if failures else 0)


main()
