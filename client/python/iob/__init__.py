# SPDX-License-Identifier: MIT
"""iob from Python: IOBs, endpoints, zero-copy mappings, signals, the mediated disciplines
and the SPSC ring, as thin wrappers over libiob (cffi, ABI mode: no compiler needed).

    import iob
    ep0, ep1 = iob.create([iob.Region(4096, iob.EP0_CAN_MAP_READ | iob.EP0_CAN_MAP_WRITE |
                                            iob.EP1_CAN_MAP_READ)])
    with ep0.map(0, writable=True) as m:
        m.view[:5] = b"hello"

Every call reaches iobd through libiob's one connection per process ($IOB_SERVER, else the
default socket; or iob.connect(target) first). Every failing status raises iob.ZxError
with the Zircon status and its name. Handles close on close(), on leaving a `with` block,
or when the object is collected; a mapping stays mapped while any view or array taken
from it is alive, so no view can outlive the memory behind it.
"""
import time

from ._ffi import ffi, lib

__all__ = [
    "ZxError", "Region", "Endpoint", "SharedRegion", "Mapping", "Ring", "create",
    "create_shared_region", "import_token", "connect", "disconnect", "page_size",
    "ring_regions", "status_name",
]

# ---- statuses -------------------------------------------------------------------------

ZX_OK = 0


def status_name(status):
    """Zircon's name of a status ("ZX_ERR_NO_MEMORY"), from libiob's own table."""
    return ffi.string(lib.zx_status_get_string(status)).decode()


class ZxError(Exception):
    """A call failed: .status is the zx_status_t (negative int), .name its Zircon name."""

    def __init__(self, status, what=None):
        self.status = int(status)
        self.name = status_name(self.status)
        self.message = ffi.string(lib.iob_status_message(self.status)).decode()
        text = "%s (%s)" % (self.name, self.message)
        super().__init__("%s: %s" % (what, text) if what else text)


def _check(status, what):
    if status != ZX_OK:
        raise ZxError(status, what)


# Every ZX_ERR_* name as a module constant, from libiob's table (one list, the C side's).
_ERR = {status_name(v): v for v in range(-1, -100, -1) if status_name(v).startswith("ZX_ERR_")}
globals().update(_ERR)

# ---- constants (Zircon's ABI values) ----------------------------------------------------

REGION_TYPE_PRIVATE = 0
REGION_TYPE_SHARED = 1

EP0_CAN_MAP_READ = 1 << 0
EP0_CAN_MAP_WRITE = 1 << 1
EP0_CAN_MEDIATED_READ = 1 << 2
EP0_CAN_MEDIATED_WRITE = 1 << 3
EP1_CAN_MAP_READ = 1 << 4
EP1_CAN_MAP_WRITE = 1 << 5
EP1_CAN_MEDIATED_READ = 1 << 6
EP1_CAN_MEDIATED_WRITE = 1 << 7

DISCIPLINE_NONE = 0
DISCIPLINE_ID_ALLOCATOR = 1
DISCIPLINE_MEDIATED_WRITE_RING_BUFFER = 2

ZX_IOB_PEER_CLOSED = 1 << 2
ZX_IOB_SHARED_REGION_UPDATED = 1 << 3
ZX_SIGNAL_HANDLE_CLOSED = 1 << 23
for _i in range(8):
    globals()["ZX_USER_SIGNAL_%d" % _i] = 1 << (24 + _i)
del _i
ZX_USER_SIGNAL_ALL = 0xFF000000

ZX_RIGHT_SAME_RIGHTS = 1 << 31

_ZX_VM_PERM_READ = 1 << 0
_ZX_VM_PERM_WRITE = 1 << 1
_ZX_INFO_HANDLE_BASIC = 2
_ZX_INFO_IOB_REGIONS = 35
_ZX_TIME_INFINITE = (1 << 63) - 1
_IOB_TOKEN_SIZE = 64


def _deadline(timeout):
    """A timeout in seconds (None: forever) as a CLOCK_MONOTONIC deadline in ns."""
    if timeout is None:
        return _ZX_TIME_INFINITE
    return lib.zx_deadline_after(max(0, int(timeout * 1e9)))


# ---- the connection ---------------------------------------------------------------------

_client = None


def connect(target=None):
    """Opens this process's connection to iobd at target ("unix:/path"; None: $IOB_SERVER,
    else the default socket). Optional: the first call connects on its own."""
    global _client
    out = ffi.new("iob_client_t**")
    _check(lib.iob_client_connect(target.encode() if target else ffi.NULL, out), "connect")
    _client = out[0]


def disconnect():
    """Ends the connection: every handle of the session closes (mappings stay valid)."""
    global _client
    lib.iob_client_close(_client if _client is not None else ffi.NULL)
    _client = None


def page_size():
    """The server's backing page size (4 KiB or 2 MiB): region sizes are rounded to it."""
    return lib.zx_system_get_page_size()


# ---- handles ------------------------------------------------------------------------------


class _Handle:
    def __init__(self, handle):
        self._handle = int(handle)

    @property
    def handle(self):
        """The raw zx_handle_t; ZxError(ZX_ERR_BAD_HANDLE) once closed or exported."""
        if self._handle == 0:
            raise ZxError(_ERR["ZX_ERR_BAD_HANDLE"], "handle")
        return self._handle

    def close(self):
        h, self._handle = self._handle, 0
        if h != 0:
            _check(lib.zx_handle_close(h), "zx_handle_close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # At interpreter exit the session may already be gone; nothing is left to free then.
        try:
            if self._handle != 0:
                lib.zx_handle_close(self._handle)
                self._handle = 0
        except Exception:
            pass

    def _take(self):
        h, self._handle = self.handle, 0
        return h

    def koid(self):
        info = ffi.new("zx_info_handle_basic_t*")
        _check(lib.zx_object_get_info(self.handle, _ZX_INFO_HANDLE_BASIC, info,
                                      ffi.sizeof(info[0]), ffi.NULL, ffi.NULL),
               "zx_object_get_info")
        return info.koid

    def export(self):
        """A single-use token (str) for iob.import_token in another process; consumes the
        handle (this object is closed afterwards)."""
        token = ffi.new("char[]", _IOB_TOKEN_SIZE)
        _check(lib.iob_handle_export(self.handle, token), "iob_handle_export")
        self._handle = 0
        return ffi.string(token).decode()

    def signal(self, clear=0, set=0):
        _check(lib.zx_object_signal(self.handle, clear, set), "zx_object_signal")

    def wait_one(self, signals, timeout=None):
        """Waits until any of signals is asserted or the timeout (seconds; None: forever)
        passes; returns the observed signals. ZxError(ZX_ERR_TIMED_OUT) on timeout."""
        observed = ffi.new("zx_signals_t*")
        st = lib.zx_object_wait_one(self.handle, signals, _deadline(timeout), observed)
        _check(st, "zx_object_wait_one")
        return observed[0]

    def __repr__(self):
        return "<%s handle=%#x>" % (type(self).__name__, self._handle)


class Region:
    """One region of an IOB (zx_iob_region_t): size in bytes (rounded up to the page size
    by iobd), access bits (EP0_CAN_MAP_READ | ...), type, discipline; a shared region
    (type REGION_TYPE_SHARED) names its SharedRegion and has no size of its own."""

    def __init__(self, size=0, access=0, type=REGION_TYPE_PRIVATE, discipline=DISCIPLINE_NONE,
                 tag=0, shared_region=None):
        self.size = size
        self.access = access
        self.type = type
        self.discipline = discipline
        self.tag = tag
        self.shared_region = shared_region

    def _fill(self, r):
        r.type = self.type
        r.access = self.access
        r.size = self.size
        r.discipline.type = self.discipline
        if self.discipline == DISCIPLINE_MEDIATED_WRITE_RING_BUFFER:
            r.discipline.ring_buffer.tag = self.tag
        if self.shared_region is not None:
            r.shared_region.shared_region = self.shared_region.handle


def create(regions, options=0):
    """zx_iob_create: returns the two endpoints (Endpoint, Endpoint)."""
    regions = list(regions)
    arr = ffi.new("zx_iob_region_t[]", max(1, len(regions)))
    for i, r in enumerate(regions):
        r._fill(arr[i])
    ep0 = ffi.new("zx_handle_t*")
    ep1 = ffi.new("zx_handle_t*")
    _check(lib.zx_iob_create(options, arr, len(regions), ep0, ep1), "zx_iob_create")
    return Endpoint(ep0[0]), Endpoint(ep1[0])


def create_shared_region(size, options=0):
    """zx_iob_create_shared_region: size is a whole number of pages (iob.page_size())."""
    out = ffi.new("zx_handle_t*")
    _check(lib.zx_iob_create_shared_region(options, size, out), "zx_iob_create_shared_region")
    return SharedRegion(out[0])


def import_token(token):
    """iob_handle_import: the endpoint (or shared region) a token stands for."""
    out = ffi.new("zx_handle_t*")
    _check(lib.iob_handle_import(token.encode(), out), "iob_handle_import")
    return Endpoint(out[0])


class SharedRegion(_Handle):
    """A shared region's handle (zx_iob_create_shared_region), for Region(shared_region=)."""


class Endpoint(_Handle):
    """One endpoint of an IOB."""

    def duplicate(self, rights=ZX_RIGHT_SAME_RIGHTS):
        out = ffi.new("zx_handle_t*")
        _check(lib.zx_handle_duplicate(self.handle, rights, out), "zx_handle_duplicate")
        return Endpoint(out[0])

    def signal_peer(self, clear=0, set=0):
        _check(lib.zx_object_signal_peer(self.handle, clear, set), "zx_object_signal_peer")

    def region_sizes(self):
        """Each region's size in bytes as iobd reports it (ZX_INFO_IOB_REGIONS; 0 for a
        region of a shared region, as in Zircon)."""
        buf = ffi.new("zx_iob_region_info_t[64]")
        actual = ffi.new("size_t*")
        _check(lib.zx_object_get_info(self.handle, _ZX_INFO_IOB_REGIONS, buf, ffi.sizeof(buf),
                                      actual, ffi.NULL), "zx_object_get_info")
        return [buf[i].region.size for i in range(actual[0])]

    def map(self, region_index, writable=False, offset=0, length=None):
        """zx_vmar_map_iob: maps [offset, offset + length) of a region (length: the rest
        of the region) and returns a Mapping."""
        if length is None:
            length = self.region_sizes()[region_index] - offset
            if length <= 0:  # a region of a shared region reports no size (Zircon's way)
                raise ValueError("give the length to map of region %d" % region_index)
        opts = _ZX_VM_PERM_READ | (_ZX_VM_PERM_WRITE if writable else 0)
        addr = ffi.new("zx_vaddr_t*")
        _check(lib.zx_vmar_map_iob(lib.zx_vmar_root_self(), opts, 0, self.handle, region_index,
                                   offset, length, addr), "zx_vmar_map_iob")
        return Mapping(addr[0], length, writable)

    def writev(self, region_index, *buffers, options=0):
        """zx_iob_writev: one record of the buffers' bytes, appended by iobd to a mediated
        ring buffer region (ZX_ERR_NO_SPACE while it is full)."""
        keep = [ffi.from_buffer(b) for b in buffers]
        vec = ffi.new("zx_iovec_t[]", max(1, len(keep)))
        for i, b in enumerate(keep):
            vec[i].buffer = b
            vec[i].capacity = len(b)
        _check(lib.zx_iob_writev(self.handle, options, region_index, vec, len(keep)),
               "zx_iob_writev")

    def allocate_id(self, region_index, blob, options=0):
        """zx_iob_allocate_id: stores blob in an ID allocator region; returns its ID."""
        out = ffi.new("uint32_t*")
        b = ffi.from_buffer(blob)
        _check(lib.zx_iob_allocate_id(self.handle, options, region_index, b, len(b), out),
               "zx_iob_allocate_id")
        return out[0]


def _unmap(ptr, length):
    def unmap(p):
        try:
            lib.zx_vmar_unmap(lib.zx_vmar_root_self(), int(ffi.cast("uintptr_t", p)), length)
        except Exception:
            pass  # interpreter exit: the process is going away with its mappings
    return ffi.gc(ptr, unmap)


class Mapping:
    """A mapped region (zx_vmar_map_iob). .view is a zero-copy memoryview (read-only
    unless mapped writable); .numpy(dtype) a zero-copy numpy array. The memory is unmapped
    once the mapping is closed (close(), `with`, or collected) and no view or array taken
    from it is alive any more: each of them keeps the memory mapped."""

    def __init__(self, addr, length, writable):
        self._ptr = _unmap(ffi.cast("char*", addr), length)
        self.address = addr
        self.length = length
        self.writable = writable
        view = memoryview(ffi.buffer(self._ptr, length))
        self._view = view if writable else view.toreadonly()

    @property
    def view(self):
        if self._view is None:
            raise ValueError("mapping is closed")
        return self._view

    def numpy(self, dtype="uint8", offset=0, count=-1):
        import numpy

        return numpy.frombuffer(self.view, dtype=dtype, count=count, offset=offset)

    def close(self):
        view, self._view, self._ptr = self._view, None, None
        if view is not None:
            try:
                view.release()
            except BufferError:
                pass  # an array still uses it: the memory goes with the last user

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        return self.length


# ---- the SPSC ring --------------------------------------------------------------------

_RING_OPEN_FORMAT = 1
_RING_OPEN_BLOCK = 2


def ring_regions(data_size, ctrl_size=None):
    """The two regions of a ring (shm/ring.h): 0 "ctrl", both endpoints map it read-write;
    1 "data", ep0 (the producer) maps it read-write, ep1 (the consumer) read-only. The
    largest message is half the data capacity less 8 bytes."""
    ctrl_size = ctrl_size or page_size()
    rw = EP0_CAN_MAP_READ | EP0_CAN_MAP_WRITE
    return [Region(ctrl_size, rw | EP1_CAN_MAP_READ | EP1_CAN_MAP_WRITE),
            Region(data_size, rw | EP1_CAN_MAP_READ)]


class Ring:
    """One side of the SPSC ring of shm/ring.h over two mappings (ring_regions): the
    producer if the data mapping is writable, else the consumer; a C program using
    shm/ring.h can be the other side. format=True writes a fresh header (the producer that
    created the IOB, once, before the consumer opens). Waits spin briefly, then sleep."""

    def __init__(self, ctrl, data, format=False, timeout=5.0):
        self._ctrl, self._data = ctrl, data  # the ring's memory stays mapped while it lives
        self.producer = data.writable
        c = ffi.cast("void*", ctrl.address)
        d = ffi.cast("void*", data.address)
        if self.producer:
            out = ffi.new("iob_ring_producer_t**")
            flags = _RING_OPEN_BLOCK | (_RING_OPEN_FORMAT if format else 0)
            _check(lib.iob_ring_producer_open(c, ctrl.length, d, data.length, flags, out),
                   "iob_ring_producer_open")
            self._end = ffi.gc(out[0], lib.iob_ring_producer_destroy)
        else:
            if format:
                raise ValueError("only the producer formats a ring")
            out = ffi.new("iob_ring_consumer_t**")
            end = lib.zx_deadline_after(int(timeout * 1e9))
            while True:  # the producer may not have written the header yet
                st = lib.iob_ring_consumer_open(c, ctrl.length, d, data.length,
                                                _RING_OPEN_BLOCK, out)
                if st != _ERR["ZX_ERR_SHOULD_WAIT"] or lib.zx_clock_get_monotonic() >= end:
                    break
                time.sleep(0.001)
            _check(st, "iob_ring_consumer_open")
            self._end = ffi.gc(out[0], lib.iob_ring_consumer_destroy)
            self._buf = ffi.new("char[]", 4096)
            self._len = ffi.new("size_t*")

    def write(self, data, timeout=None):
        """Copies data (any bytes-like object) in as one message, waiting for space."""
        b = ffi.from_buffer(data)
        _check(lib.iob_ring_send(self._live(), b, len(b), _deadline(timeout)), "ring write")

    def read(self, timeout=None):
        """The next message as bytes, waiting for one. ZxError(ZX_ERR_PEER_CLOSED) once the
        producer closed and everything is read."""
        end = self._live()
        deadline = _deadline(timeout)
        while True:
            st = lib.iob_ring_receive(end, self._buf, len(self._buf), self._len, deadline)
            if st != _ERR["ZX_ERR_BUFFER_TOO_SMALL"]:
                break
            self._buf = ffi.new("char[]", self._len[0])
        _check(st, "ring read")
        return ffi.buffer(self._buf, self._len[0])[:]

    def __iter__(self):
        """Messages until the producer closes."""
        while True:
            try:
                yield self.read()
            except ZxError as e:
                if e.status == _ERR["ZX_ERR_PEER_CLOSED"]:
                    return
                raise

    def _live(self):
        if self._end is None:
            raise ValueError("ring is closed")
        return self._end

    def close(self):
        """Closes this side (the consumer sees ZX_ERR_PEER_CLOSED once it has drained)."""
        end, self._end = self._end, None
        if end is not None:
            ffi.release(end)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
