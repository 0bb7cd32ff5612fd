# SPDX-License-Identifier: MIT
"""iobd against a gRPC client nobody here wrote: Python's grpcio, with stubs generated at
test time from proto/. Over the Unix socket and over TCP with TLS and a bearer token.
Also the bad-input cases that are easiest to provoke from Python (raw malformed bytes,
oversized messages, unknown methods, clients that vanish mid-stream).

usage: test_grpc_interop.py IOBD PROTO_DIR WORK_DIR
(test_rpc_abuse.py imports it, with the same arguments, for Iobd, Session and the stubs.)
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import grpc
from grpc_tools import protoc

IOBD, PROTO_DIR, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(WORK, exist_ok=True)
STUBS = tempfile.mkdtemp(prefix="stubs-", dir=WORK)
rc = protoc.main(["protoc", "-I" + PROTO_DIR, "--python_out=" + STUBS,
                  "--grpc_python_out=" + STUBS, os.path.join(PROTO_DIR, "iob/v1/iob.proto")])
if rc != 0:
    sys.exit("protoc failed")
sys.path.insert(0, STUBS)
from iob.v1 import iob_pb2 as pb  # noqa: E402
from iob.v1 import iob_pb2_grpc as pbg  # noqa: E402

ZX_ERR_INVALID_ARGS, ZX_ERR_BAD_HANDLE, ZX_ERR_OUT_OF_RANGE = -10, -11, -14
ZX_ERR_ACCESS_DENIED, ZX_ERR_NOT_SUPPORTED, ZX_ERR_NOT_FOUND = -30, -2, -25
ZX_ERR_WRONG_TYPE, ZX_ERR_NO_MEMORY = -12, -4
SHARED_REGION_UPDATED = 1 << 3
RW_BOTH = 0x33
USER_0 = 1 << 24
PEER_CLOSED = 1 << 2
T = 10  # seconds per call


def short_tempdir(prefix):
    """A private directory for sockets: under TMPDIR when it is short, else /tmp."""
    base = os.environ.get("TMPDIR", "")
    return tempfile.mkdtemp(prefix=prefix, dir=base if 0 < len(base) <= 40 else "/tmp")


class Iobd:
    def __init__(self, extra=(), tcp=None):
        # Sockets live in a short private directory (TMPDIR or /tmp), never under WORK:
        # a build directory's path may be longer than a socket path can be (108 bytes).
        self.dir = short_tempdir("iobd-")
        self.sock = os.path.join(self.dir, "iobd.sock")
        self.log = os.path.join(self.dir, "iobd.log")
        args = [IOBD, "--listen=unix:" + self.sock, "--hugepages=off", "--log-level=debug"]
        if tcp:
            args.append("--listen=" + tcp)
        args += list(extra)
        self.proc = subprocess.Popen(args, stderr=open(self.log, "w"))
        for _ in range(500):
            if self.proc.poll() is not None:
                raise RuntimeError("iobd exited early:\n" + open(self.log).read())
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                break
            except OSError:
                time.sleep(0.01)
        else:
            raise RuntimeError("iobd did not start")
        if tcp:
            time.sleep(0.1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        log = open(self.log).read()
        assert code == 0, "iobd exit %d\n%s" % (code, log)
        assert not os.path.exists(self.sock), "socket left behind"
        shutil.rmtree(self.dir)


class Session:
    """A session: the long-lived OpenSession call and the metadata naming it."""

    def __init__(self, channel, extra_md=()):
        self.stub = pbg.IobStub(channel)
        self.call = self.stub.OpenSession(pb.OpenSessionRequest(client_name="interop"),
                                          metadata=extra_md)
        first = next(self.call)
        assert first.WhichOneof("kind") == "opened"
        self.opened = first.opened
        self.md = tuple(extra_md) + (
            ("iob-session", "%d:%s" % (first.opened.session_id, first.opened.secret.hex())),)
        self.events = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for m in self.call:
                self.events.append((m.event.handle, m.event.signals))
        except grpc.RpcError:
            pass

    def close(self):
        self.call.cancel()
        self.thread.join(5)


def iob_status(err):
    for k, v in err.trailing_metadata() or ():
        if k == "iob-status":
            return int(v)
    return None


def expect_error(fn, code, zx=None):
    try:
        fn()
    except grpc.RpcError as e:
        assert code is None or e.code() == code, "got %s (%s), want %s" % (
            e.code(), e.details(), code)
        if zx is not None:
            assert iob_status(e) == zx, "iob-status %s, want %d (%s)" % (
                iob_status(e), zx, e.details())
        return e
    raise AssertionError("call succeeded, want %s" % code)


def raw_unary(channel, method):
    return channel.unary_unary("/iob.v1.Iob/" + method, request_serializer=None,
                               response_deserializer=None)


def create(s, size=4096, access=RW_BOTH, n=1):
    r = s.stub.CreateIob(pb.CreateIobRequest(
        regions=[pb.Region(type=0, access=access, size=size)] * n), metadata=s.md, timeout=T)
    assert r.status == 0
    return r.ep0, r.ep1


# ---------------------------------------------------------------- Unix-socket cases

def case_mediated(ch):
    """CreateSharedRegion, IobWritev, AllocateId and the strobe, from a foreign client."""
    s = Session(ch)
    try:
        sr = s.stub.CreateSharedRegion(pb.CreateSharedRegionRequest(size=4 * 4096),
                                       metadata=s.md, timeout=T).handle
        expect_error(lambda: s.stub.CreateSharedRegion(
            pb.CreateSharedRegionRequest(options=1, size=8192), metadata=s.md, timeout=T),
            grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_INVALID_ARGS)
        raw = bytearray(120)
        raw[0:4] = (1).to_bytes(4, "little")               # SHARED
        raw[4:8] = (0x03 | 0x80).to_bytes(4, "little")     # ep0 map rw, ep1 mediated write
        raw[16:24] = (2).to_bytes(8, "little")             # MEDIATED_WRITE_RING_BUFFER
        raw[24:32] = (99).to_bytes(8, "little")            # tag
        raw[92:96] = sr.to_bytes(4, "little")              # shared_region handle
        r = s.stub.CreateIob(pb.CreateIobRequest(regions=[pb.Region(raw=bytes(raw))]),
                             metadata=s.md, timeout=T)
        ep1 = r.ep1
        # A Wait armed before the write sees the strobe; GetSignals never shows it.
        waiter = s.stub.Wait(pb.WaitRequest(handle=sr, signals=SHARED_REGION_UPDATED,
                                            timeout_ns=10 ** 10), metadata=s.md, timeout=T)
        time.sleep(0.3)
        s.stub.IobWritev(pb.IobWritevRequest(handle=ep1, num_vectors=2, capacities=[3, 2],
                                             readable=[True, True], data=b"abcde"),
                         metadata=s.md, timeout=T)
        replies = list(waiter)
        assert replies[-1].status == 0 and replies[-1].observed & SHARED_REGION_UPDATED
        sig = s.stub.GetSignals(pb.HandleRequest(handle=sr), metadata=s.md, timeout=T)
        assert sig.signals & SHARED_REGION_UPDATED == 0
        # Session events carry the strobe too (events are on for this session).
        deadline = time.time() + 5
        while time.time() < deadline and not any(
                h == sr and sg & SHARED_REGION_UPDATED for h, sg in s.events):
            time.sleep(0.01)
        assert any(h == sr and sg & SHARED_REGION_UPDATED for h, sg in s.events), s.events
        # A watch: the reply that carries the strobe is followed by the state without it
        # (the strobe is never latched, not even in what a watcher was told last).
        s.stub.Signal(pb.SignalRequest(handle=sr, set_mask=USER_0), metadata=s.md, timeout=T)
        wt = s.stub.Wait(pb.WaitRequest(handle=sr, signals=SHARED_REGION_UPDATED | USER_0,
                                        watch=True, timeout_ns=-1), metadata=s.md, timeout=5)
        try:
            assert next(wt).observed == USER_0
            s.stub.IobWritev(pb.IobWritevRequest(handle=ep1, num_vectors=1, capacities=[2],
                                                 readable=[True], data=b"fg"),
                             metadata=s.md, timeout=T)
            assert next(wt).observed == USER_0 | SHARED_REGION_UPDATED
            try:
                after = next(wt).observed
            except grpc.RpcError as e:
                raise AssertionError("no reply after the strobe's: %s" % e.code())
            assert after == USER_0, hex(after)
        finally:
            wt.cancel()
        s.stub.Signal(pb.SignalRequest(handle=sr, clear_mask=USER_0), metadata=s.md, timeout=T)
        # A.6 statuses over the wire.
        bad = [
            (dict(handle=ep1, options=1), ZX_ERR_INVALID_ARGS),
            (dict(handle=ep1, num_vectors=9), ZX_ERR_INVALID_ARGS),
            (dict(handle=ep1, num_vectors=1, vectors_unreadable=True), ZX_ERR_INVALID_ARGS),
            (dict(handle=ep1, num_vectors=1, capacities=[4], readable=[False]), ZX_ERR_NOT_FOUND),
            (dict(handle=r.ep0, num_vectors=0), ZX_ERR_ACCESS_DENIED),
            (dict(handle=sr, num_vectors=0), ZX_ERR_WRONG_TYPE),
            # Inconsistent requests: malformed, INVALID_ARGS before anything else.
            (dict(handle=ep1, num_vectors=1, capacities=[4], readable=[True], data=b"ab"),
             ZX_ERR_INVALID_ARGS),
            (dict(handle=0x7ffffff3, num_vectors=2, capacities=[1]), ZX_ERR_INVALID_ARGS),
        ]
        for kw, zx in bad:
            expect_error(lambda: s.stub.IobWritev(pb.IobWritevRequest(**kw), metadata=s.md,
                                                  timeout=T), None, zx)
        # The ID allocator.
        raw = bytearray(120)
        raw[4:8] = (0x01 | 0x80).to_bytes(4, "little")
        raw[8:16] = (4096).to_bytes(8, "little")
        raw[16:24] = (1).to_bytes(8, "little")             # ID_ALLOCATOR
        r = s.stub.CreateIob(pb.CreateIobRequest(regions=[pb.Region(raw=bytes(raw))]),
                             metadata=s.md, timeout=T)
        ids = [s.stub.AllocateId(pb.AllocateIdRequest(handle=r.ep1, blob=b, blob_size=len(b)),
                                 metadata=s.md, timeout=T).id for b in (b"x", b"", b"yz")]
        assert ids == [0, 1, 2], ids
        expect_error(lambda: s.stub.AllocateId(pb.AllocateIdRequest(
            handle=r.ep1, blob=b"x", blob_size=1, id_null=True), metadata=s.md, timeout=T),
            None, ZX_ERR_INVALID_ARGS)
        expect_error(lambda: s.stub.AllocateId(pb.AllocateIdRequest(
            handle=r.ep1, blob_size=1 << 20, blob_unreadable=True), metadata=s.md, timeout=T),
            None, ZX_ERR_NO_MEMORY)
    finally:
        s.close()


def case_server_info(ch):
    r = pbg.IobStub(ch).ServerInfo(pb.ServerInfoRequest(), timeout=T)
    assert r.page_size == 4096 and r.backing == "4K" and r.version


def case_session_and_create(ch):
    s = Session(ch)
    try:
        assert s.opened.page_size == 4096 and len(s.opened.secret) == 16
        assert s.opened.broker_path.endswith("iobd-broker.sock")
        ep0, ep1 = create(s, size=5000)
        info = s.stub.GetInfo(pb.GetInfoRequest(handle=ep1, topic=35, buffer_size=1 << 20),
                              metadata=s.md, timeout=T)
        assert info.actual == 1 and info.regions[0].region.size == 8192
        assert len(info.regions[0].region.raw) == 120 and len(info.raw) == 128
        # The raw descriptor round-trips byte for byte (padding bytes included).
        raw = bytearray(120)
        raw[4] = RW_BOTH
        raw[8:16] = (4096).to_bytes(8, "little")
        raw[112:120] = b"PADDING!"
        r = s.stub.CreateIob(pb.CreateIobRequest(regions=[pb.Region(raw=bytes(raw))]),
                             metadata=s.md, timeout=T)
        info = s.stub.GetInfo(pb.GetInfoRequest(handle=r.ep0, topic=35, buffer_size=128),
                              metadata=s.md, timeout=T)
        assert info.regions[0].region.raw == bytes(raw)
        _, call = s.stub.CloseHandle.with_call(pb.HandleRequest(handle=ep0), metadata=s.md,
                                               timeout=T)
        assert dict(call.trailing_metadata())["iob-status"] == "0"
        expect_error(lambda: s.stub.CloseHandle(pb.HandleRequest(handle=ep0), metadata=s.md,
                                                timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_BAD_HANDLE)
    finally:
        s.close()


def case_bad_input(ch):
    s = Session(ch)
    try:
        # Malformed protobuf: a truncated varint.
        expect_error(lambda: raw_unary(ch, "CreateIob")(b"\x08\xff", metadata=s.md, timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_INVALID_ARGS)
        expect_error(lambda: raw_unary(ch, "ServerInfo")(b"\x0f\x01", timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_INVALID_ARGS)
        # Unknown fields are ignored (proto3): ServerInfo with field 99.
        raw_unary(ch, "ServerInfo")(b"\x98\x06\x07", timeout=T)
        # A raw descriptor of the wrong length.
        expect_error(lambda: s.stub.CreateIob(pb.CreateIobRequest(
            regions=[pb.Region(raw=b"x" * 119)]), metadata=s.md, timeout=T),
            grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_INVALID_ARGS)
        # Sizes that overflow, too many regions.
        expect_error(lambda: s.stub.CreateIob(pb.CreateIobRequest(
            regions=[pb.Region(access=RW_BOTH, size=2**64 - 1)]), metadata=s.md, timeout=T),
            grpc.StatusCode.OUT_OF_RANGE, ZX_ERR_OUT_OF_RANGE)
        expect_error(lambda: s.stub.CreateIob(pb.CreateIobRequest(
            regions=[pb.Region(access=RW_BOTH, size=4096)] * 65), metadata=s.md, timeout=T),
            grpc.StatusCode.OUT_OF_RANGE, ZX_ERR_OUT_OF_RANGE)
        expect_error(lambda: s.stub.CreateIob(pb.CreateIobRequest(
            regions=[pb.Region(access=RW_BOTH, size=4096)] * 100000), metadata=s.md,
            timeout=T), grpc.StatusCode.OUT_OF_RANGE, ZX_ERR_OUT_OF_RANGE)
        # Over the receive limit: refused before any handler runs.
        e = expect_error(lambda: raw_unary(ch, "SetName")(b"\x12\x80\x80\x40" + b"a" * (1 << 20)
                                                         * 5, metadata=s.md, timeout=T),
                         grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert iob_status(e) is None
        # A write chunk over 1 MiB (but under the limit).
        ep0, ep1 = create(s, size=4 << 20)
        expect_error(lambda: s.stub.WriteRegion(iter([pb.WriteRegionRequest(
            handle=ep0, data=b"z" * ((1 << 20) + 1))]), metadata=s.md, timeout=T),
            grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_INVALID_ARGS)
        # Reads past the end, offset overflow.
        expect_error(lambda: list(s.stub.ReadRegion(pb.ReadRegionRequest(
            handle=ep0, offset=(4 << 20) - 1, length=2), metadata=s.md, timeout=T)),
            grpc.StatusCode.OUT_OF_RANGE, ZX_ERR_OUT_OF_RANGE)
        expect_error(lambda: list(s.stub.ReadRegion(pb.ReadRegionRequest(
            handle=ep0, offset=2**64 - 2, length=4), metadata=s.md, timeout=T)),
            grpc.StatusCode.OUT_OF_RANGE, ZX_ERR_OUT_OF_RANGE)
        # No session, a malformed one, a wrong secret.
        expect_error(lambda: s.stub.CloseHandle(pb.HandleRequest(handle=ep0), timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_INVALID_ARGS)
        expect_error(lambda: s.stub.CloseHandle(pb.HandleRequest(handle=ep0),
                                                metadata=(("iob-session", "1:zz"),), timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_INVALID_ARGS)
        bad = (("iob-session", "%d:%s" % (s.opened.session_id, "00" * 16)),)
        expect_error(lambda: s.stub.CloseHandle(pb.HandleRequest(handle=ep0), metadata=bad,
                                                timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_BAD_HANDLE)
        # Unknown method: UNIMPLEMENTED at once, not a hang.
        t0 = time.time()
        expect_error(lambda: raw_unary(ch, "NoSuchMethod")(b"", timeout=T),
                     grpc.StatusCode.UNIMPLEMENTED)
        assert time.time() - t0 < 2
        expect_error(lambda: ch.unary_unary("/other.Service/X")(b"", timeout=T),
                     grpc.StatusCode.UNIMPLEMENTED)
    finally:
        s.close()


def case_other_sessions(ch):
    a = Session(ch)
    # Python shares connections between channels unless told not to: a second connection.
    ch2 = grpc.insecure_channel(ch._target, options=[("grpc.use_local_subchannel_pool", 1)])
    b = Session(ch2)
    try:
        ep0, ep1 = create(a)
        expect_error(lambda: b.stub.CloseHandle(pb.HandleRequest(handle=ep0), metadata=b.md,
                                                timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_BAD_HANDLE)
        # a's session named over another connection is not a's.
        expect_error(lambda: b.stub.CloseHandle(pb.HandleRequest(handle=ep0), metadata=a.md,
                                                timeout=T),
                     grpc.StatusCode.INVALID_ARGUMENT, ZX_ERR_BAD_HANDLE)
        # Transfer, then the importer's session ends: the exporter sees PEER_CLOSED.
        tok = a.stub.ExportHandle(pb.HandleRequest(handle=ep1), metadata=a.md, timeout=T).token
        assert 0 < len(tok) < 64
        h = b.stub.ImportHandle(pb.ImportRequest(token=tok), metadata=b.md, timeout=T).handle
        expect_error(lambda: b.stub.ImportHandle(pb.ImportRequest(token=tok), metadata=b.md,
                                                 timeout=T),
                     grpc.StatusCode.NOT_FOUND, ZX_ERR_NOT_FOUND)
        b.stub.SignalPeer(pb.SignalRequest(handle=h, set_mask=USER_0), metadata=b.md, timeout=T)
        w = list(a.stub.Wait(pb.WaitRequest(handle=ep0, signals=USER_0, timeout_ns=10**9),
                             metadata=a.md, timeout=T))
        assert w[-1].status == 0 and w[-1].observed & USER_0
        b.close()
        w = list(a.stub.Wait(pb.WaitRequest(handle=ep0, signals=PEER_CLOSED, timeout_ns=5 * 10**9),
                             metadata=a.md, timeout=T))
        assert w[-1].observed & PEER_CLOSED
        deadline = time.time() + 2
        while (ep0, USER_0 | PEER_CLOSED) not in a.events and time.time() < deadline:
            time.sleep(0.01)
        assert (ep0, USER_0 | PEER_CLOSED) in a.events, a.events
    finally:
        a.close()
        ch2.close()


def case_stream_disconnect(ch):
    s = Session(ch)
    try:
        ep0, ep1 = create(s, size=16 << 20)
        s.stub.WriteRegion(iter([pb.WriteRegionRequest(handle=ep0, offset=100, data=b"abc")]),
                           metadata=s.md, timeout=T)
        it = s.stub.ReadRegion(pb.ReadRegionRequest(handle=ep1, offset=0, length=16 << 20),
                               metadata=s.md, timeout=T)
        first = next(it)
        assert first.offset == 0 and first.data[100:103] == b"abc"
        it.cancel()  # the client walks away mid-stream
        # A watch that the client abandons.
        wt = s.stub.Wait(pb.WaitRequest(handle=ep0, signals=USER_0, watch=True, timeout_ns=-1),
                         metadata=s.md, timeout=T)
        assert next(wt).observed == 0
        s.stub.Signal(pb.SignalRequest(handle=ep0, set_mask=USER_0), metadata=s.md, timeout=T)
        assert next(wt).observed == USER_0
        wt.cancel()
        # A client-streaming write that vanishes halfway.
        def gen():
            yield pb.WriteRegionRequest(handle=ep0, offset=8192, data=b"q" * 1000)
            raise RuntimeError("client gone")
        try:
            s.stub.WriteRegion(gen(), metadata=s.md, timeout=T)
        except Exception:
            pass
        # And the server keeps serving everyone.
        r = list(s.stub.ReadRegion(pb.ReadRegionRequest(handle=ep1, offset=100, length=3),
                                   metadata=s.md, timeout=T))
        assert b"".join(m.data for m in r) == b"abc"
    finally:
        s.close()
    # A process that drops its whole channel mid-session.
    ch3 = grpc.insecure_channel(ch._target, options=[("grpc.use_local_subchannel_pool", 1)])
    s3 = Session(ch3)
    create(s3)
    ch3.close()
    case_server_info(ch)


# ---------------------------------------------------------------- TCP + TLS + token

def make_certs(d):
    def run(*a):
        subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=iob-test-ca", "-keyout", d + "/ca.key", "-out", d + "/ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", d + "/server.key", "-out", d + "/server.csr")
    with open(d + "/san.ext", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.pem",
        "-CAkey", d + "/ca.key", "-CAcreateserial", "-days", "1", "-extfile", d + "/san.ext",
        "-out", d + "/server.pem")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def case_tcp_tls():
    if shutil.which("openssl") is None:
        print("  (no openssl: TLS cases skipped)")
        return
    d = tempfile.mkdtemp(prefix="tls-", dir=WORK)
    make_certs(d)
    port = free_port()
    token = "s3cret-token-for-tests"
    srv = Iobd(["--tls-cert=" + d + "/server.pem", "--tls-key=" + d + "/server.key",
                "--token=" + token], tcp="127.0.0.1:%d" % port)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=open(d + "/ca.pem", "rb").read())
        ch = grpc.secure_channel("127.0.0.1:%d" % port, creds)
        auth = (("authorization", "Bearer " + token),)
        stub = pbg.IobStub(ch)
        assert stub.ServerInfo(pb.ServerInfoRequest(), metadata=auth, timeout=T).page_size == 4096
        s = Session(ch, auth)
        assert s.opened.broker_path == ""  # remote sessions cannot map
        ep0, ep1 = create(s)
        s.stub.WriteRegion(iter([pb.WriteRegionRequest(handle=ep0, data=b"over tls")]),
                           metadata=s.md, timeout=T)
        got = list(s.stub.ReadRegion(pb.ReadRegionRequest(handle=ep1, length=8), metadata=s.md,
                                     timeout=T))
        assert got[0].data == b"over tls"
        s.close()
        # No token, a wrong token: refused.
        expect_error(lambda: stub.ServerInfo(pb.ServerInfoRequest(), timeout=T),
                     grpc.StatusCode.UNAUTHENTICATED, ZX_ERR_ACCESS_DENIED)
        expect_error(lambda: stub.ServerInfo(pb.ServerInfoRequest(),
                                             metadata=(("authorization", "Bearer nope"),),
                                             timeout=T),
                     grpc.StatusCode.UNAUTHENTICATED, ZX_ERR_ACCESS_DENIED)
        expect_error(lambda: next(stub.OpenSession(pb.OpenSessionRequest(), timeout=T)),
                     grpc.StatusCode.UNAUTHENTICATED, ZX_ERR_ACCESS_DENIED)
        ch.close()
        # Plaintext against the TLS port: refused.
        pc = grpc.insecure_channel("127.0.0.1:%d" % port)
        expect_error(lambda: pbg.IobStub(pc).ServerInfo(pb.ServerInfoRequest(), metadata=auth,
                                                        timeout=3),
                     grpc.StatusCode.UNAVAILABLE)
        pc.close()
        # The Unix socket needs no token.
        uc = grpc.insecure_channel("unix:" + srv.sock)
        pbg.IobStub(uc).ServerInfo(pb.ServerInfoRequest(), timeout=T)
        uc.close()
    finally:
        srv.stop()
        shutil.rmtree(d)
    # TCP without TLS is refused unless --insecure is explicit, and never without a token
    # (--insecure alone used to serve every IOB to anyone who could reach the port).
    short = short_tempdir("iobd-refuse-")
    for extra, why in (([], b"--insecure"), (["--insecure"], b"needs a bearer token")):
        p = subprocess.run([IOBD, "--listen=unix:" + short + "/refuse.sock",
                            "--listen=127.0.0.1:%d" % free_port(), "--hugepages=off",
                            "--no-broker"] + extra, capture_output=True, timeout=15)
        assert p.returncode != 0 and why in p.stderr, p.stderr
        assert not os.path.exists(short + "/refuse.sock"), "socket left behind"
    shutil.rmtree(short)
    port = free_port()
    srv = Iobd(["--insecure", "--token=" + token], tcp="127.0.0.1:%d" % port)
    try:
        ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        auth = (("authorization", "Bearer " + token),)
        expect_error(lambda: pbg.IobStub(ch).ServerInfo(pb.ServerInfoRequest(), timeout=T),
                     grpc.StatusCode.UNAUTHENTICATED, ZX_ERR_ACCESS_DENIED)
        s = Session(ch, auth)
        create(s)
        s.close()
        ch.close()
    finally:
        srv.stop()


def main():
    srv = Iobd()
    ch = grpc.insecure_channel("unix:" + srv.sock)
    ch._target = "unix:" + srv.sock
    failures = 0
    cases = [case_server_info, case_session_and_create, case_bad_input, case_other_sessions,
             case_stream_disconnect, case_mediated]
    for c in cases:
        try:
            c(ch)
            print("ok   " + c.__name__)
        except Exception:
            failures += 1
            print("FAIL " + c.__name__)
            traceback.print_exc()
    ch.close()
    try:
        srv.stop()
        print("ok   clean stop (unix)")
    except Exception:
        failures += 1
        traceback.print_exc()
    try:
        case_tcp_tls()
        print("ok   case_tcp_tls")
    except Exception:
        failures += 1
        print("FAIL case_tcp_tls")
        traceback.print_exc()
    shutil.rmtree(STUBS, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
