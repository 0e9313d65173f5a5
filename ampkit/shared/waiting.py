"""How a reader waits for the writer's next block: asleep in the kernel, woken by the commit.

Readers sleep in ``FUTEX_WAIT`` on the low 32 bits of the segment's
``written`` counter, which change with every commit; the writer, after each
commit, makes one ``FUTEX_WAKE`` system call that wakes them all -- but only
when the header's ``waiters`` count says a reader may be asleep, so a writer
no reader ever waited for makes no system call at all, and one with readers
makes one per commit however many they are (the kernel's work inside that
call grows with the sleepers it wakes).

No wake-up is lost: a reader

1. adds 1 to ``waiters`` before its first sleep (an atomic add, done by the
   kernel: ``FUTEX_WAKE_OP`` on a word nobody waits on -- Python has no
   atomic instructions; a locked instruction, so also a full barrier);
2. sleeps with ``FUTEX_WAIT(written, w)``, where ``w`` is the count it found
   too small: the kernel sleeps only if ``written`` still holds ``w``,
   checked under its own lock;
3. subtracts 1 from ``waiters`` when it closes (or its process exits), not
   after each wait: counting in and out are two system calls, which cost a
   reader woken every 10 ms about a fifth of its CPU (measured on the
   development machine: ``wait()`` took 108-119 µs of CPU per block counting
   once, 130-162 µs counting around each wait).

The writer stores ``written``, then a full barrier (:data:`~ampkit.shared.segment.full_fence`),
then loads ``waiters``. Either it sees the reader's 1 and wakes -- a reader
that went to sleep before the wake is woken, one that comes after it finds
``written`` changed and does not sleep -- or it loaded 0 before the reader's
add, and then the reader's step 2 reads the new ``written`` and returns at
once. The futex is a shared one (no ``FUTEX_PRIVATE_FLAG``): the kernel keys
it by the file and offset, so the writer's mapping and each reader's meet.

The price of counting once: the writer makes its one ``FUTEX_WAKE`` per
commit while a reader that has waited is attached, asleep or not (about a
µs when nobody sleeps, the same for one reader or many). A reader killed
(SIGKILL, so it cannot count out) leaves ``waiters`` one too high for the
rest of the writer's run, with the same cost. Each sleep ends after at most
:data:`CHECK_EVERY` seconds, so that a reader notices a writer that died
(its heartbeat stops).

Where there is no futex (a CPU whose system call number is not known here,
no ``syscall`` in the C library, a segment this process may only map
read-only), :class:`NapWaiter` looks every :data:`NAP` seconds instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
import time
import weakref
from typing import Any

from ampkit.shared.segment import (
    WAITERS,
    WAITERS_OFFSET,
    WRITTEN,
    WRITTEN_OFFSET,
    Segment,
    full_fence,
)

__all__ = [
    "CHECK_EVERY",
    "NAP",
    "FUTEX_AVAILABLE",
    "FutexWaiter",
    "NapWaiter",
    "CommitSignal",
    "waiter_for",
]

_NS = 1_000_000_000
#: Longest sleep (s) before a waiting reader checks the writer's health.
CHECK_EVERY = 0.1
#: Interval (s) of the fallback's looks: rdaclient looked every 0.5 ms.
NAP = 0.0002

# futex(2)
_FUTEX_WAIT, _FUTEX_WAKE, _FUTEX_WAKE_OP = 0, 1, 5
_FUTEX_OP_ADD = 1
_INT_MAX = 2**31 - 1
# The futex system call's number by CPU (Linux; asm-generic for the newer ones).
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "riscv64": 98}


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_syscall() -> Any:
    number = _SYS_FUTEX.get(platform.machine().lower())
    if not sys.platform.startswith("linux") or number is None:
        return None, 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syscall
    except (OSError, AttributeError):
        return None, 0
    call.restype = ctypes.c_long
    call.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32,
                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32]
    return call, number


_syscall, _SYS_futex = _load_syscall()
#: Whether this platform has the futex system call (Linux on x86-64, aarch64, riscv64).
FUTEX_AVAILABLE = _syscall is not None


def _futex_op(op: int, oparg: int) -> int:
    """``FUTEX_OP(op, oparg, FUTEX_OP_CMP_EQ, 0)``: oparg is 12 bits, signed."""
    return ((op & 0xF) << 28) | ((oparg & 0xFFF) << 12)


_ADD_ONE = _futex_op(_FUTEX_OP_ADD, 1)
_SUB_ONE = _futex_op(_FUTEX_OP_ADD, -1)


def _add_waiters(address: int, op: int) -> None:
    """Atomically add to the uint32 at ``address``: FUTEX_WAKE_OP with both
    futexes on that word, which nobody waits on (so it wakes nobody)."""
    if _syscall(_SYS_futex, address, _FUTEX_WAKE_OP, 0, None, address, op) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"futex(FUTEX_WAKE_OP): {os.strerror(err)}")


def _count_out(address: int, pid: int, segment: Segment | None = None) -> None:
    """Subtract the count a reader of process ``pid`` added (not from a child
    that inherited the reader through fork and exits). ``segment``, the
    mapping ``address`` is in, is passed only to be kept mapped until then."""
    if os.getpid() == pid:
        _add_waiters(address, _SUB_ONE)


class FutexWaiter:
    """A reader's wait for ``written`` to change: asleep until the writer's
    commit wakes it (see the module's text).

    Parameters
    ----------
    segment : Segment
        A segment with a writable mapping of its header (``control_address``).
    """

    def __init__(self, segment: Segment) -> None:
        self.words = segment.words
        base = segment.control_address
        self._written = base + WRITTEN_OFFSET
        self._waiters = base + WAITERS_OFFSET
        self._timeout = _Timespec()
        self._timeout_ref = ctypes.byref(self._timeout)
        self._segment = segment
        self._counted: weakref.finalize | None = None

    def count_in(self) -> None:
        """Be counted as a waiter in the header (the writer wakes waiters only
        while it counts some), from the first call until :meth:`close` -- or
        this process's exit, for a reader that is never closed. Once, not per
        wait: the two system calls of counting in and out cost a sleeping
        reader about a fifth of its CPU per block."""
        if self._counted is None:
            _add_waiters(self._waiters, _ADD_ONE)
            self._counted = weakref.finalize(
                self, _count_out, self._waiters, os.getpid(), self._segment)

    def close(self) -> None:
        """Count out (if counted in). Before the segment is unmapped; safe to
        call twice."""
        if self._counted is not None:
            self._counted()

    def pause(self, written: int, timeout_ns: int) -> None:
        """Sleep until ``written`` changes, or ``timeout_ns`` (capped at
        :data:`CHECK_EVERY`) passed, or a signal came. Only after
        :meth:`count_in`.

        Parameters
        ----------
        written : int
            The ``written`` counter the caller found too small.
        timeout_ns : int
            Longest sleep, ns.
        """
        timeout_ns = max(0, min(timeout_ns, int(CHECK_EVERY * _NS)))
        self._timeout.tv_sec, self._timeout.tv_nsec = divmod(timeout_ns, _NS)
        if _syscall(_SYS_futex, self._written, _FUTEX_WAIT, written & 0xFFFFFFFF,
                    self._timeout_ref, None, 0) < 0:
            err = ctypes.get_errno()
            # EAGAIN: written changed before the kernel looked; ETIMEDOUT,
            # EINTR: the caller looks again.
            if err not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
                raise OSError(err, f"futex(FUTEX_WAIT): {os.strerror(err)}")


class NapWaiter:
    """The fallback where there is no futex: look every :data:`NAP` seconds."""

    def __init__(self, segment: Segment) -> None:
        self.words = segment.words

    def count_in(self) -> None:
        """Nothing to announce: the writer does not wake nap-takers."""

    def close(self) -> None:
        """Nothing to undo."""

    def pause(self, written: int, timeout_ns: int) -> None:
        """Sleep :data:`NAP` seconds (less if ``timeout_ns`` is shorter),
        unless ``written`` changed already."""
        if self.words[WRITTEN] == written:
            time.sleep(max(0, min(timeout_ns / _NS, NAP)))


def waiter_for(segment: Segment) -> FutexWaiter | NapWaiter:
    """A :class:`FutexWaiter` where the futex can be used, else a :class:`NapWaiter`."""
    if FUTEX_AVAILABLE and segment.control_address:
        return FutexWaiter(segment)
    return NapWaiter(segment)


class CommitSignal:
    """The writer's side: wake the sleeping readers after a commit.

    Parameters
    ----------
    segment : Segment
        The writer's segment.

    Attributes
    ----------
    n_wakes : int
        ``FUTEX_WAKE`` calls made (commits that found waiters counted).
    """

    def __init__(self, segment: Segment) -> None:
        self.words = segment.words
        self._written = segment.control_address + WRITTEN_OFFSET
        self.n_wakes = 0

    def committed(self) -> None:
        """Wake every reader asleep on ``written``, if any is counted. Call
        after each store to ``written`` (and when the stream stops)."""
        full_fence()  # the store to written before the load of waiters
        if self.words[WAITERS] and _syscall is not None:
            _syscall(_SYS_futex, self._written, _FUTEX_WAKE, _INT_MAX, None, None, 0)
            self.n_wakes += 1
