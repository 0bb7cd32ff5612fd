# SPDX-License-Identifier: MIT
"""The iob Python package against a real iobd (conftest.py): IOBs and statuses, zero-copy
mappings between two endpoints, numpy views, signals, the mediated disciplines, the SPSC
ring shared with a C program (tests/client/python/ring_peer.c) in both directions, and the
README's example run as it is written there."""
import os
import re
import struct
import subprocess

import pytest

import iob
from conftest import child_env

RW0 = iob.EP0_CAN_MAP_READ | iob.EP0_CAN_MAP_WRITE


def pair(size=4096, access=RW0 | iob.EP1_CAN_MAP_READ):
    return iob.create([iob.Region(size, access)])


def hand_over(ep):
    """ep as another process would receive it: exported, then imported."""
    return iob.import_token(ep.export())


def test_create_close():
    ep0, ep1 = pair()
    assert ep0.koid() != ep1.koid()
    assert ep0.region_sizes() == [4096]
    ep0.close()
    ep0.close()  # closing again does nothing
    with pytest.raises(iob.ZxError) as e:
        ep0.koid()
    assert e.value.name == "ZX_ERR_BAD_HANDLE"
    assert ep1.wait_one(iob.ZX_IOB_PEER_CLOSED, timeout=5) & iob.ZX_IOB_PEER_CLOSED
    with ep1:
        pass
    assert ep1._handle == 0


def test_statuses():
    with pytest.raises(iob.ZxError) as e:
        iob.create([iob.Region(4096, RW0)], options=1)
    assert e.value.status == -10 == iob.ZX_ERR_INVALID_ARGS
    assert e.value.name == "ZX_ERR_INVALID_ARGS"
    assert "ZX_ERR_INVALID_ARGS" in str(e.value)
    # Nobody may write: Zircon's INVALID_ARGS too; no region at all likewise.
    with pytest.raises(iob.ZxError, match="ZX_ERR_INVALID_ARGS"):
        iob.create([iob.Region(4096, iob.EP0_CAN_MAP_READ | iob.EP1_CAN_MAP_READ)])
    with pytest.raises(iob.ZxError) as e:
        iob.import_token("iob1.nosuchtoken")
    assert e.value.name == "ZX_ERR_NOT_FOUND"
    # The names are the C side's.
    assert iob.ZX_ERR_NO_MEMORY == -4 and iob.status_name(-4) == "ZX_ERR_NO_MEMORY"
    assert iob.status_name(iob.ZX_ERR_PEER_CLOSED) == "ZX_ERR_PEER_CLOSED"
    # A read-only endpoint cannot map for writing: ACCESS_DENIED.
    ep0, ep1 = pair()
    with ep0, ep1:
        with pytest.raises(iob.ZxError) as e:
            ep1.map(0, writable=True)
        assert e.value.status == iob.ZX_ERR_ACCESS_DENIED


def test_map_round_trip():
    ep0, ep1 = pair(size=8192)
    ep1 = hand_over(ep1)
    with ep0, ep1, ep0.map(0, writable=True) as w, ep1.map(0) as r:
        assert len(w) == 8192 and w.view.nbytes == 8192
        w.view[100:117] = b"hello from python"
        assert bytes(r.view[100:117]) == b"hello from python"
        w.view[8191] = 0x5A
        assert r.view[8191] == 0x5A
        assert r.view.readonly
        with pytest.raises(TypeError):
            r.view[0] = 1
        # Zero-copy: the views are the mappings themselves.
        r2 = ep1.map(0, offset=4096, length=4096)
        assert bytes(r2.view[:4]) == bytes(w.view[4096:4100])
        w.view[4096:4100] = b"abcd"
        assert bytes(r2.view[:4]) == b"abcd"
        r2.close()
        with pytest.raises(ValueError):
            r2.view


def test_numpy_view():
    np = pytest.importorskip("numpy")
    ep0, ep1 = pair(size=4096 * 4)
    with ep0, ep1, ep0.map(0, writable=True) as w, ep1.map(0) as r:
        a = w.numpy(np.uint32)
        assert a.shape == (4096,) and a.ctypes.data == w.address
        a[:] = np.arange(4096, dtype=np.uint32) * 3
        b = r.numpy(np.uint32)
        assert b.ctypes.data == r.address and not b.flags.writeable
        assert (b == np.arange(4096, dtype=np.uint32) * 3).all()
        assert struct.unpack_from("<I", r.view, 4 * 1000)[0] == 3000
        a[7] = 0xDEADBEEF
        assert b[7] == 0xDEADBEEF
        # An array outlives the mapping object's close: the memory stays mapped for it.
        r.close()
        assert b[7] == 0xDEADBEEF
        del b


def test_signals():
    ep0, ep1 = pair()
    with ep0, ep1:
        ep0.signal_peer(0, iob.ZX_USER_SIGNAL_1)
        seen = ep1.wait_one(iob.ZX_USER_SIGNAL_1 | iob.ZX_USER_SIGNAL_2, timeout=5)
        assert seen & iob.ZX_USER_SIGNAL_1 and not seen & iob.ZX_USER_SIGNAL_2
        with pytest.raises(iob.ZxError) as e:
            ep0.wait_one(iob.ZX_USER_SIGNAL_1, timeout=0.05)  # the peer's, not ep0's
        assert e.value.name == "ZX_ERR_TIMED_OUT"
        ep1.signal(iob.ZX_USER_SIGNAL_1, iob.ZX_USER_SIGNAL_7)
        seen = ep1.wait_one(iob.ZX_USER_SIGNAL_ALL, timeout=5)
        assert seen & iob.ZX_USER_SIGNAL_ALL == iob.ZX_USER_SIGNAL_7
        with pytest.raises(iob.ZxError) as e:
            ep1.signal(0, iob.ZX_IOB_PEER_CLOSED)  # not a user signal
        assert e.value.name == "ZX_ERR_INVALID_ARGS"
        ep0.close()
        assert ep1.wait_one(iob.ZX_IOB_PEER_CLOSED, timeout=5) & iob.ZX_IOB_PEER_CLOSED


def test_mediated_writev():
    page = iob.page_size()
    with iob.create_shared_region(4 * page) as shared:
        ep0, ep1 = iob.create([iob.Region(
            access=RW0 | iob.EP1_CAN_MEDIATED_WRITE, type=iob.REGION_TYPE_SHARED,
            discipline=iob.DISCIPLINE_MEDIATED_WRITE_RING_BUFFER, tag=42, shared_region=shared)])
    writer = hand_over(ep1)
    with ep0, writer, ep0.map(0, length=4 * page) as r:
        writer.writev(0, b"hello ", bytearray(b"mediated"), memoryview(b" world"))
        writer.writev(0, b"second")
        # The ring buffer (docs/zircon-iob.md A.7): a page of header, then records of
        # tag, length and the payload, each starting on a multiple of 8.
        tag, length = struct.unpack_from("<QQ", r.view, page)
        assert (tag, length) == (42, 20)
        assert bytes(r.view[page + 16:page + 36]) == b"hello mediated world"
        tag, length = struct.unpack_from("<QQ", r.view, page + 16 + 24)
        assert (tag, length) == (42, 6)
        assert bytes(r.view[page + 56:page + 62]) == b"second"
        with pytest.raises(iob.ZxError) as e:
            writer.writev(0, b"x" * 70000)  # more than a record may carry
        assert e.value.name == "ZX_ERR_INVALID_ARGS"
    ep0, ep1 = pair()
    with ep0, ep1, pytest.raises(iob.ZxError) as e:
        ep1.writev(0, b"not a ring")
    assert e.value.name in ("ZX_ERR_ACCESS_DENIED", "ZX_ERR_WRONG_TYPE")


def test_allocate_id():
    ep0, ep1 = iob.create([iob.Region(4096, RW0 | iob.EP1_CAN_MEDIATED_WRITE,
                                      discipline=iob.DISCIPLINE_ID_ALLOCATOR)])
    with ep0, ep1, ep0.map(0) as r:
        assert ep1.allocate_id(0, b"first blob") == 0
        assert ep1.allocate_id(0, b"second") == 1
        assert b"first blob" in bytes(r.view) and b"second" in bytes(r.view)


def ring_iob(data_size=64 * 1024):
    return iob.create(iob.ring_regions(data_size))


def message(i):
    n = 8 + (i * 37) % 1000
    return struct.pack("<Q", i) + bytes((i + k) & 0xFF for k in range(8, n))


def test_ring_python_producer_c_consumer():
    count = 5000
    ep0, ep1 = ring_iob()
    with ep0, ep0.map(0, writable=True) as ctrl, ep0.map(1, writable=True) as data:
        ring = iob.Ring(ctrl, data, format=True)
        peer = subprocess.Popen([os.environ["IOB_TEST_RING_PEER"], "consume", ep1.export()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_env())
        try:
            total = 0
            for i in range(count):
                m = message(i)
                ring.write(m, timeout=30)
                total += len(m)
            ring.close()
            out, err = peer.communicate(timeout=60)
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.wait()
        assert peer.returncode == 0, err
        assert out.strip() == "received %d messages %d bytes" % (count, total)
        with pytest.raises(ValueError):
            ring.write(b"closed")


def test_ring_c_producer_python_consumer():
    count = 5000
    ep0, ep1 = ring_iob()
    peer = subprocess.Popen([os.environ["IOB_TEST_RING_PEER"], "produce", ep0.export(),
                             str(count)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=child_env())
    try:
        with ep1, ep1.map(0, writable=True) as ctrl, ep1.map(1) as data:
            with iob.Ring(ctrl, data, timeout=30) as ring:
                assert not ring.producer
                got = 0
                for i, m in enumerate(ring):
                    assert m == message(i), "message %d" % i
                    got += 1
                assert got == count
                with pytest.raises(iob.ZxError) as e:
                    ring.read(timeout=0)
                assert e.value.name == "ZX_ERR_PEER_CLOSED"
        out, err = peer.communicate(timeout=60)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
    assert peer.returncode == 0, err
    assert out.startswith("sent %d messages" % count)


def test_ring_in_one_process():
    ep0, ep1 = ring_iob(data_size=16384)
    with ep0, ep1:
        p = iob.Ring(ep0.map(0, writable=True), ep0.map(1, writable=True), format=True)
        c = iob.Ring(ep1.map(0, writable=True), ep1.map(1))
        p.write(b"one")
        p.write(bytearray(3000))
        assert c.read(timeout=1) == b"one"
        assert c.read(timeout=1) == bytes(3000)
        with pytest.raises(iob.ZxError) as e:
            c.read(timeout=0.01)
        assert e.value.name == "ZX_ERR_TIMED_OUT"
        with pytest.raises(iob.ZxError) as e:
            p.write(bytes(8192))  # above half the capacity less 8
        assert e.value.name == "ZX_ERR_OUT_OF_RANGE"
        p.write(bytes(5000))
        assert len(c.read(timeout=1)) == 5000  # past the first read buffer: it grows
        p.close()
        c.close()


def readme_example():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "..", "README.md")) as f:
        text = f.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no python example"
    return blocks[0]


def test_readme_example(capsys):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() != ""
