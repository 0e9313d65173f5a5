"""The shared-memory segment of a shared stream: name, layout, life and death.

A shared stream is one POSIX shared-memory object, the file
``/dev/shm/ampkit-<name>`` (what :class:`multiprocessing.shared_memory.SharedMemory`
creates on Linux, so ``SharedMemory("ampkit-<name>")`` opens it too), laid
out as::

    0                header, one page: identity, geometry, counters (Header)
    meta_offset      JSON: channel names, units, rate, the writer's name
    data_offset      data ring: (n_rows + view_rows) x n_channels samples
    time_offset      time ring: (n_rows + view_rows) float64 timestamps
    marker_offset    marker ring: marker_slots slots of MARKER_SLOT bytes

Sample ``k`` (counted from 0 since the writer opened the segment) is in row
``k % n_rows`` of the rings. The ``view_rows`` rows after the ring repeat its
first rows (rdaclient's "pocket"), so that a window that wraps around the end
is still one contiguous slice when it is at most ``view_rows`` long.

Why the segment is opened as a file and not through ``SharedMemory``: on
Python < 3.13 every ``SharedMemory`` (also one that only attaches) registers
the segment with :mod:`multiprocessing.resource_tracker`, which unlinks it
when that process exits -- a reader's exit would remove the writer's
segment. Opening ``/dev/shm`` directly registers nothing, and lets the
writer build the segment under a temporary name and publish it with an
atomic ``link()``, so that nobody ever sees a half-built segment.

Concurrency (one writer, any number of readers, no locks): see
:mod:`ampkit.shared` for the protocol and why it holds on x86-64 and aarch64.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import mmap
import os
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ProtocolError,
    RecordingError,
)

__all__ = [
    "SHM_DIR",
    "PREFIX",
    "MAGIC",
    "VERSION",
    "HEARTBEAT_INTERVAL",
    "STALE_AFTER",
    "HUNG_AFTER",
    "MARKER_SLOT",
    "MARKER_TEXT",
    "RUNNING",
    "STOPPED",
    "Header",
    "Segment",
    "check_name",
    "segment_path",
    "create_segment",
    "open_segment",
    "fence",
    "full_fence",
    "writer_alive",
]

logger = logging.getLogger("ampkit")

#: Where Linux keeps POSIX shared memory (a tmpfs).
SHM_DIR = Path("/dev/shm")
#: Segment files are ``PREFIX + name``: ampkit's names cannot collide with
#: other programs' segments.
PREFIX = "ampkit-"
#: First 8 bytes of every ampkit segment.
MAGIC = int.from_bytes(b"ampkitSH", "little")
#: Layout version; a reader refuses another one.
VERSION = 2
_PAGE = 4096
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")

#: Seconds between two heartbeats of a writer.
HEARTBEAT_INTERVAL = 0.1
#: A heartbeat older than this (seconds) makes readers look at the writer's
#: process: gone means the stream is lost.
STALE_AFTER = 0.5
#: A heartbeat older than this means lost even if the process is still there
#: (stopped, or hung in C code).
HUNG_AFTER = 5.0

#: Bytes per marker slot, and of those the text's (UTF-8; longer is cut).
MARKER_SLOT = 512
MARKER_TEXT = MARKER_SLOT - 24
MARKER_DTYPE = np.dtype(
    [("time", "<f8"), ("index", "<i8"), ("length", "<u4"), ("flags", "<u4"),
     ("text", "u1", (MARKER_TEXT,))]
)
#: ``flags`` bit: the text was cut to MARKER_TEXT bytes.
TRUNCATED = 1

#: Values of ``Header.state``.
RUNNING = 1
STOPPED = 2

_DTYPES = ("<f4", "<f8", "<i2", "<i4")


class Header(ctypes.Structure):
    """The first page of a segment.

    The fields up to ``total_size`` are written once, before the segment is
    published; the counters (one cache line from ``claimed`` on, apart from
    the static fields readers keep reading) change while the writer runs and
    are read and written as single aligned 8-byte words.
    """

    _fields_ = [
        ("magic", ctypes.c_uint64),
        ("version", ctypes.c_uint32),
        ("header_size", ctypes.c_uint32),
        ("pid", ctypes.c_uint64),
        ("starttime", ctypes.c_uint64),  # of the writer process, /proc/PID/stat
        ("token", ctypes.c_uint64),  # random, tells two runs under one name apart
        ("n_channels", ctypes.c_uint64),
        ("n_rows", ctypes.c_uint64),
        ("view_rows", ctypes.c_uint64),
        ("dtype", ctypes.c_char * 8),
        ("fs", ctypes.c_double),
        ("meta_offset", ctypes.c_uint64),
        ("meta_size", ctypes.c_uint64),
        ("data_offset", ctypes.c_uint64),
        ("time_offset", ctypes.c_uint64),
        ("marker_offset", ctypes.c_uint64),
        ("marker_slots", ctypes.c_uint64),
        ("total_size", ctypes.c_uint64),
        ("_pad0", ctypes.c_uint8 * (192 - 136)),
        # -- changing (192: its own cache lines) --
        ("state", ctypes.c_uint64),
        ("heartbeat_ns", ctypes.c_uint64),  # time.monotonic_ns() of the writer's last beat
        ("_pad1", ctypes.c_uint8 * 48),
        ("claimed", ctypes.c_uint64),  # samples whose rows the writer may be writing: < this
        ("written", ctypes.c_uint64),  # samples committed: readable are < this
        ("marker_claimed", ctypes.c_uint64),
        ("marker_written", ctypes.c_uint64),
        ("_pad2", ctypes.c_uint8 * 32),
        # -- written by readers (320: its own cache line) --
        ("waiters", ctypes.c_uint32),  # readers in (or about to enter) FUTEX_WAIT
        ("_pad3", ctypes.c_uint8 * 60),
    ]


def _word(field: str) -> int:
    return getattr(Header, field).offset // 8


# Indices of the changing fields in the header seen as uint64 words.
STATE = _word("state")
HEARTBEAT = _word("heartbeat_ns")
CLAIMED = _word("claimed")
WRITTEN = _word("written")
M_CLAIMED = _word("marker_claimed")
M_WRITTEN = _word("marker_written")
WAITERS = _word("waiters")  # the uint32 count is the low half of this word
#: Byte offsets in the header of the futex words: readers wait on the low
#: 32 bits of ``written`` (they change with every commit), and count
#: themselves in ``waiters``.
WRITTEN_OFFSET = Header.written.offset
WAITERS_OFFSET = Header.waiters.offset


# -- memory ordering ---------------------------------------------------------

def _no_fence() -> None:
    """x86-64 (TSO): stores are seen in program order, loads are done in
    program order; the interpreter's opaque calls keep the C compiler from
    reordering across them. Nothing to do."""


_fence_lock = threading.Lock()


def _lock_fence() -> None:
    """A full barrier from a lock's release followed by an acquire.

    A release is a store-release, an acquire a load-acquire; on aarch64 a
    load-acquire is never observed before an earlier store-release (RCsc),
    so every access before the release is ordered before every access after
    the next acquire: the pair orders like ``dmb ish``. Python has no fence
    of its own; this is the cheapest one it can reach (~0.1 µs).
    """
    with _fence_lock:
        pass
    with _fence_lock:
        pass


#: Order every memory access before the call before every access after it,
#: as seen by other processes, except a store before it against a load after
#: it on x86-64 (see :data:`full_fence`). Free on x86-64, a lock round trip
#: elsewhere.
fence: Callable[[], None] = (
    _no_fence if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    else _lock_fence
)

def _locked_instruction() -> None:
    """x86-64: a lock's acquire is a locked instruction (``lock cmpxchg``),
    which drains the store buffer: a full barrier."""
    with _fence_lock:
        pass


#: A full barrier, store-load included: x86-64 lets a load pass an earlier
#: store (still in the store buffer), so :data:`fence` does not do; needed
#: where a writer stores one word and then loads another that readers store
#: (the commit, then the waiter count). About 0.3 µs on x86-64.
full_fence: Callable[[], None] = (
    _locked_instruction if fence is _no_fence else _lock_fence
)


# -- names and processes -----------------------------------------------------

def check_name(name: object) -> str:
    """Return ``name`` if it can name a shared stream, else raise.

    Raises
    ------
    ampkit.errors.ConfigurationError
        Not 1-64 characters of letters, digits, ``_``, ``.``, ``-``,
        starting with a letter or digit.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"a shared stream name is 1-64 letters, digits, '_', '.' or '-', starting with a "
            f"letter or digit (it becomes {SHM_DIR}/{PREFIX}<name>), got {name!r}"
        )
    return name


def segment_path(name: str) -> Path:
    """``/dev/shm/ampkit-<name>``."""
    return SHM_DIR / f"{PREFIX}{check_name(name)}"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, starttime)`` of a process from /proc, None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = text[text.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[19])


def own_starttime() -> int:
    """This process's start time in clock ticks since boot (/proc/self/stat)."""
    stat = _proc_stat(os.getpid())
    return 0 if stat is None else stat[1]


def writer_alive(pid: int, starttime: int) -> bool:
    """Whether the process that wrote a segment still runs.

    A process that is gone, a zombie (killed, not yet reaped by its parent)
    or another process that got the same pid (its start time differs) is not
    the writer. A writer in another pid namespace (a container) is invisible
    here and counts as gone: its heartbeat tells.
    """
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X", "x") and stat[1] == starttime


# -- the mapped segment ------------------------------------------------------

class Segment:
    """A mapped segment: its header's figures and numpy views of its rings.

    Made by :func:`create_segment` (writable) or :func:`open_segment`
    (read-only). Not thread-safe; one writer process.

    Attributes
    ----------
    path : pathlib.Path
        The file in /dev/shm.
    header : Header
        A copy of the header as it was when the segment was mapped (the
        static fields do not change).
    meta : dict
        ``channels``, ``units``, ``fs``, ``source`` (the writer's name), ``pid``.
    words : memoryview
        The header as uint64 words; index with :data:`WRITTEN` etc.
    data : ndarray, shape (n_rows + view_rows, n_channels)
    times : ndarray of float64, shape (n_rows + view_rows,)
    markers : ndarray of MARKER_DTYPE, shape (marker_slots,)
    control_address : int
        Address of the header in a writable mapping (the writer's, or a
        reader's own mapping of the header page), for the futex system
        calls; 0 when this process could only map the segment read-only.
    """

    def __init__(
        self, path: Path, mm: mmap.mmap, writable: bool, control: mmap.mmap | None = None
    ) -> None:
        self.path = path
        self.mm = mm
        self.writable = writable
        if writable:
            control = mm
        self.control = control
        # Pins the mapping while its address is in use (close() drops it first).
        self._pin = None if control is None else (ctypes.c_char * _PAGE).from_buffer(control)
        self.control_address = 0 if self._pin is None else ctypes.addressof(self._pin)
        header = Header.from_buffer_copy(mm, 0)
        self.header = header
        meta = bytes(mm[header.meta_offset : header.meta_offset + header.meta_size])
        try:
            self.meta: dict[str, Any] = json.loads(meta.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ProtocolError(f"{path} has an ampkit header but no readable metadata: "
                                "damaged") from None
        self.n_rows = int(header.n_rows)
        self.view_rows = int(header.view_rows)
        self.n_channels = int(header.n_channels)
        self.marker_slots = int(header.marker_slots)
        self.fs = float(header.fs)
        self.dtype = np.dtype(header.dtype.decode("ascii"))
        rows = self.n_rows + self.view_rows
        self.words = memoryview(mm)[: ctypes.sizeof(Header)].cast("Q")
        self.data = np.frombuffer(
            mm, self.dtype, rows * self.n_channels, int(header.data_offset)
        ).reshape(rows, self.n_channels)
        self.times = np.frombuffer(mm, np.float64, rows, int(header.time_offset))
        self.markers = np.frombuffer(
            mm, MARKER_DTYPE, self.marker_slots, int(header.marker_offset)
        )


    def heartbeat_age(self) -> float:
        """Seconds since the writer's last heartbeat."""
        return (time.monotonic_ns() - self.words[HEARTBEAT]) / 1e9

    def writer_alive(self) -> bool:
        """Whether the writer's process is still there (see :func:`writer_alive`)."""
        return writer_alive(int(self.header.pid), int(self.header.starttime))

    def in_use(self) -> bool:
        """Whether a live writer owns the segment: it runs and its process is
        there, or its heartbeat is fresh (a writer this process cannot see)."""
        if self.words[STATE] != RUNNING:
            return False
        return self.writer_alive() or self.heartbeat_age() < STALE_AFTER

    def close(self) -> None:
        """Drop the views and unmap (when no view handed out is alive). Safe
        to call twice."""
        if self.mm.closed:
            return
        self._pin = None
        self.control_address = 0
        if self.control is not None and self.control is not self.mm:
            self.control.close()
        self.control = None
        self.words.release()
        self.data = self.times = self.markers = None  # type: ignore[assignment]
        try:
            self.mm.close()
        except BufferError:
            # Views handed to the caller (get_data) still point into the
            # mapping; it goes when the last of them is collected.
            pass


def _layout(
    n_channels: int, n_rows: int, view_rows: int, dtype: np.dtype, marker_slots: int,
    meta_size: int,
) -> dict[str, int]:
    def page(n: int) -> int:
        return -(-n // _PAGE) * _PAGE

    rows = n_rows + view_rows
    meta_offset = _PAGE
    data_offset = page(meta_offset + meta_size)
    time_offset = page(data_offset + rows * n_channels * dtype.itemsize)
    marker_offset = page(time_offset + rows * 8)
    total = page(marker_offset + marker_slots * MARKER_SLOT)
    return dict(meta_offset=meta_offset, meta_size=meta_size, data_offset=data_offset,
                time_offset=time_offset, marker_offset=marker_offset, total_size=total)


@contextlib.contextmanager
def _creation_lock() -> Iterator[None]:
    """Serialise ampkit writers creating or reclaiming segments on this
    machine (an flock on /dev/shm itself, held for microseconds; the kernel
    drops it if the holder dies)."""
    fd = os.open(SHM_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AmpNotAvailableError(
                        f"another process has held the lock on {SHM_DIR} for 5 s; "
                        "shared streams cannot be created now"
                    ) from None
                time.sleep(0.001)
        yield
    finally:
        os.close(fd)


def _check_platform() -> None:
    if not SHM_DIR.is_dir():
        raise AmpNotAvailableError(
            f"shared streams need POSIX shared memory in {SHM_DIR} (Linux); there is no "
            f"{SHM_DIR} here: use LSL (start(lsl=...)) to reach other processes"
        )


def _sweep() -> None:
    """Remove what writers that died left behind, whatever its name: segments
    whose writer is gone and temporary files of writers that died while
    building one. A stream whose
    writer crashed is otherwise only reclaimed by the next writer of the same
    name, which may never come."""
    for path in SHM_DIR.glob(f"{PREFIX}*"):
        stem = path.name[len(PREFIX):]
        if "~" in stem:  # a temporary: NAME~PID
            pid = stem.rsplit("~", 1)[1]
            if pid.isdigit() and _proc_stat(int(pid)) is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            continue
        try:
            old = open_segment(stem)
        except (OSError, ConfigurationError, ProtocolError):
            continue  # gone meanwhile, not ours, not readable: leave it
        try:
            # Its writer's process is gone (one that is closing it is not),
            # or cannot be seen and has not beaten for STALE_AFTER.
            gone = not old.writer_alive() and not (
                old.words[STATE] == RUNNING and old.heartbeat_age() < STALE_AFTER
            )
            if gone:
                logger.warning(
                    "removed the shared stream %r left by process %d, which is gone",
                    stem, old.header.pid,
                )
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        finally:
            old.close()


def _reclaim(path: Path, name: str) -> None:
    """Remove a segment left by a writer that died; refuse a live or foreign one."""
    try:
        old = open_segment(name)
    except FileNotFoundError:
        return
    except ProtocolError as exc:
        raise ConfigurationError(
            f"cannot share as {name!r}: {exc}; choose another name"
        ) from None
    try:
        if old.words[STATE] == RUNNING and not old.writer_alive():
            # Killed a moment ago, or alive where this process cannot see it
            # (another pid namespace): only the latter keeps beating.
            deadline = time.monotonic() + STALE_AFTER + HEARTBEAT_INTERVAL
            while old.heartbeat_age() < STALE_AFTER and time.monotonic() < deadline:
                time.sleep(0.02)
        if old.in_use():
            raise ConfigurationError(
                f"the shared stream {name!r} is in use by process {old.header.pid} "
                f"({old.meta.get('source', '?')}); stop it or choose another name"
            )
        logger.warning(
            "shared stream %r: reclaiming the segment %s left by process %d, which is gone",
            name, path, old.header.pid,
        )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    finally:
        old.close()


def create_segment(
    name: str,
    n_channels: int,
    n_rows: int,
    view_rows: int,
    fs: float,
    dtype: Any,
    meta: dict[str, Any],
    marker_slots: int,
) -> Segment:
    """Create, fill in and publish the segment of shared stream ``name``.

    A segment of the same name left by a writer that died is removed first.
    Memory is reserved up front (``posix_fallocate``): a /dev/shm too small
    fails here, not with a SIGBUS in the middle of a run.

    Returns
    -------
    Segment
        Mapped read-write, state RUNNING, heartbeat now.

    Raises
    ------
    ampkit.errors.ConfigurationError
        A bad name, or the name is in use by a live writer or by another
        program's segment.
    ampkit.errors.RecordingError
        /dev/shm has no room for the segment.
    ampkit.errors.AmpNotAvailableError
        No /dev/shm (not Linux).
    """
    check_name(name)
    _check_platform()
    dtype = np.dtype(dtype).newbyteorder("<")
    if dtype.str not in _DTYPES:
        raise ConfigurationError(f"shared streams hold {_DTYPES}, not {dtype}")
    meta_bytes = json.dumps(meta).encode("utf-8")
    layout = _layout(n_channels, n_rows, view_rows, dtype, marker_slots, len(meta_bytes))
    path = segment_path(name)
    tmp = SHM_DIR / f"{PREFIX}{name}~{os.getpid()}"
    with _creation_lock():
        _reclaim(path, name)
        _sweep()
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        mm = None
        try:
            try:
                os.posix_fallocate(fd, 0, layout["total_size"])
            except OSError as exc:
                raise RecordingError(
                    f"no room in {SHM_DIR} for the shared stream {name!r} "
                    f"({layout['total_size'] / 1e6:.1f} MB): {exc.strerror}; lower "
                    "share_seconds or free /dev/shm"
                ) from None
            mm = mmap.mmap(fd, layout["total_size"], mmap.MAP_SHARED | mmap.MAP_POPULATE)
            header = Header.from_buffer(mm, 0)
            header.version = VERSION
            header.header_size = ctypes.sizeof(Header)
            header.pid = os.getpid()
            header.starttime = own_starttime()
            header.token = int.from_bytes(os.urandom(8), "little")
            header.n_channels = n_channels
            header.n_rows = n_rows
            header.view_rows = view_rows
            header.dtype = dtype.str.encode("ascii")
            header.fs = fs
            for key, value in layout.items():
                setattr(header, key, value)
            header.marker_slots = marker_slots
            header.state = RUNNING
            header.heartbeat_ns = time.monotonic_ns()
            offset = layout["meta_offset"]
            mm[offset : offset + len(meta_bytes)] = meta_bytes
            header.magic = MAGIC
            del header  # no export left on the mapping
            os.link(tmp, path)  # atomic, never replaces: the segment appears whole
        except FileExistsError:
            if mm is not None:
                mm.close()
            raise ConfigurationError(
                f"{path} appeared while the shared stream {name!r} was being created "
                "(another program?); choose another name"
            ) from None
        except BaseException:
            if mm is not None:
                mm.close()
            raise
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return Segment(path, mm, writable=True)


def open_segment(name: str) -> Segment:
    """Map the segment of shared stream ``name`` read-only.

    Raises
    ------
    FileNotFoundError
        There is none (yet).
    ampkit.errors.ProtocolError
        The file is not an ampkit segment, or one of another layout version.
    ampkit.errors.ConfigurationError
        A bad name.
    """
    path = segment_path(name)
    try:
        # Read-write only for the header page (see below).
        fd = os.open(path, os.O_RDWR)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    mm = control = None
    try:
        size = os.fstat(fd).st_size
        if size < _PAGE:
            raise ProtocolError(
                f"{path} is not an ampkit shared stream ({size} bytes, no ampkit header): "
                "another program uses this name"
            )
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ)
        _validate(path, Header.from_buffer_copy(mm, 0), size)
        # The header page once more, writable, from the same open file (the
        # name may meanwhile be another writer's): readers count themselves
        # in ``waiters`` there before they sleep on ``written``.
        with contextlib.suppress(PermissionError):
            control = mmap.mmap(fd, _PAGE, mmap.MAP_SHARED)
        return Segment(path, mm, writable=False, control=control)
    except BaseException:
        for m in (control, mm):
            if m is not None:
                m.close()
        raise
    finally:
        os.close(fd)


def _validate(path: Path, h: Header, size: int) -> None:
    if h.magic != MAGIC:
        raise ProtocolError(
            f"{path} is not an ampkit shared stream (no ampkit header): another program "
            "uses this name"
        )
    if h.version != VERSION:
        raise ProtocolError(
            f"{path} has shared-stream layout version {h.version}; this ampkit reads "
            f"version {VERSION}: run the same ampkit version in writer and readers"
        )
    try:
        dtype = h.dtype.decode("ascii")
    except UnicodeDecodeError:
        dtype = "?"
    rows = h.n_rows + h.view_rows
    ok = (
        h.header_size == ctypes.sizeof(Header)
        and dtype in _DTYPES
        and h.n_channels >= 1 and h.n_rows >= 1 and h.view_rows <= h.n_rows
        and h.marker_slots >= 1
        and h.total_size <= size
        and h.meta_offset + h.meta_size <= h.data_offset
        and h.data_offset + rows * h.n_channels * np.dtype(dtype).itemsize <= h.time_offset
        and h.time_offset + rows * 8 <= h.marker_offset
        and h.marker_offset + h.marker_slots * MARKER_SLOT <= h.total_size
    )
    if not ok:
        raise ProtocolError(f"{path} has an ampkit header that does not fit the file: damaged")
