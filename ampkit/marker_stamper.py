"""The engine of the marker servers: receive, frame and stamp network markers.

:class:`ampkit.markers.MarkerServers` binds the TCP and UDP sockets and hands
them to a :class:`Receiver`, which accepts clients, splits their bytes into
lines and stamps every marker on ampkit's clock when it arrives. The receiver
runs in one of two places:

* a **child process** (the default on POSIX): ``python -I -S
  marker_stamper.py --tcp-fd N --udp-fd M`` inherits the two sockets and
  sends ``(stamp, text)`` records to the acquiring process through a pipe.
  It has its own interpreter and its own GIL, so nothing the acquiring
  process does (numpy, file writes, a busy main loop) can hold it back;
* a **thread** of the acquiring process (``stamping='thread'``), where
  sockets cannot be handed to a child (Windows, frozen applications).

The stamp is ``time.perf_counter()`` -- the clock of
:func:`ampkit.clock.local_clock` and ``pylsl.local_clock``, which is the same
in every process of a machine. On Linux the receiver asks the kernel for
receive timestamps (``SO_TIMESTAMPNS``: the time each packet reached the
socket, taken in the kernel's network path), converts them from the
wall clock to the monotonic clock, and uses them instead of the time it read
the packet; so even the child's own scheduling delays do not count. TCP
reports one kernel timestamp per read (that of the newest packet), so lines
that a late read collects together share the newest one's stamp; the child
therefore asks for real-time scheduling where allowed (:func:`try_realtime`),
so that it reads at once even on a busy machine.

No marker is lost without a word: on Linux the receiver asks the kernel how
many datagrams it dropped because the UDP socket's buffer was full (the
socket's drop counter, ``SO_MEMINFO``; the figure ``/proc/net/udp`` shows),
and the child's output buffer is bounded (a parent that stops reading loses
markers, counted); both losses go to the parent as ``DROPPED`` records and
from there to the amp (see :meth:`ampkit.AmpDecorator.markers_lost`).

This module imports the standard library only, so that the child starts in
milliseconds without the package (or numpy) on its path. The sans-I/O
framing (:class:`LineFramer`, :func:`split_datagram`) and the pipe records
(:func:`encode_record`, :class:`RecordDecoder`) are used by both sides.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable

__all__ = [
    "LineFramer",
    "decode_line",
    "split_datagram",
    "encode_record",
    "RecordDecoder",
    "Receiver",
    "CallbackSink",
    "PipeSink",
    "main",
    "MARKER",
    "LOG",
    "READY",
    "FATAL",
    "DROPPED",
    "SO_TIMESTAMPNS",
    "ReceiveStamps",
    "SO_MEMINFO",
    "kernel_stamps_supported",
    "try_realtime",
]

# Pipe records: kind (1 byte), value (float64: stamp or log level), payload length, payload.
_HEADER = struct.Struct("<cdI")
MARKER = b"M"  #: value = stamp (s), payload = UTF-8 marker text
LOG = b"L"  #: value = logging level, payload = message
READY = b"R"  #: value = 0, payload = stamp source ("kernel"/"user") [+ " realtime"]
FATAL = b"E"  #: value = 0, payload = traceback of the error that ended the receiver
DROPPED = b"D"  #: value = markers lost before delivery, payload = why

#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS) on the architectures that use
#: the generic socket constants; Python's socket module does not export it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
#: Linux's SO_MEMINFO (generic socket constants): a socket's memory figures,
#: the ninth of which (since Linux 4.13) is the number of packets it dropped.
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)
_MEMINFO = struct.Struct("@9I")
_GENERIC_ARCHS = {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "armv7l", "riscv64"}
_TIMESPEC = struct.Struct("@ll")
# Bytes of records the child keeps for a parent that does not read (about
# 50 000 markers); beyond it markers are dropped and counted.
_MAX_PENDING_OUTPUT = 4 * 2**20
# A kernel stamp further than this before the read is not believed (wall clock stepped).
_MAX_KERNEL_AGE_NS = 10_000_000_000


def kernel_stamps_supported() -> bool:
    """Whether this platform gives receive timestamps this module can read."""
    return sys.platform.startswith("linux") and platform.machine().lower() in _GENERIC_ARCHS


# -- framing (sans-I/O) ------------------------------------------------------


def decode_line(raw: bytes, max_line: int) -> tuple[str | None, str | None]:
    """Turn one line (without its ``\\n``) into a marker text.

    Parameters
    ----------
    raw : bytes
        The line; one trailing ``\\r`` is removed.
    max_line : int
        Longest accepted line in bytes (without terminator).

    Returns
    -------
    text : str or None
        The marker, or None when the line is empty or bad.
    problem : str or None
        Why a non-empty line was rejected.
    """
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if not raw:
        return None, None
    if len(raw) > max_line:
        return None, f"line of {len(raw)} bytes is longer than max_line={max_line}; dropped"
    if b"\0" in raw:
        return None, f"line contains a NUL byte; dropped: {raw[:40]!r}"
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"line is not valid UTF-8 ({exc.reason} at byte {exc.start}); dropped"


class LineFramer:
    """Split one TCP connection's byte stream into marker lines.

    Parameters
    ----------
    max_line : int
        Longest accepted line in bytes. Longer lines are dropped as soon as
        they exceed the limit (so a peer that never sends a terminator
        cannot make the buffer grow), up to and including their ``\\n``.

    Examples
    --------
    >>> f = LineFramer(1024)
    >>> f.feed(b"S 1\\r\\nS ")
    [('S 1', None)]
    >>> f.feed(b"2\\n")
    [('S 2', None)]
    """

    def __init__(self, max_line: int = 1024) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._dropping = False

    @property
    def pending(self) -> int:
        """Bytes of an unterminated line held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[str | None, str | None]]:
        """Add received bytes; return ``(text, problem)`` for each finished line.

        Exactly one of ``text`` and ``problem`` is set; empty lines give
        nothing.
        """
        out: list[tuple[str | None, str | None]] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            piece = data[start:end]
            start = end + 1
            if self._dropping:
                self._dropping = False
                continue
            if self._buf:
                self._buf += piece
                piece = bytes(self._buf)
                self._buf.clear()
            text, problem = decode_line(piece, self.max_line)
            if text is not None or problem is not None:
                out.append((text, problem))
        if start < len(data) and not self._dropping:
            self._buf += data[start:]
            # +1: the line may still end in "\r\n".
            if len(self._buf) > self.max_line + 1:
                self._buf.clear()
                self._dropping = True
                out.append((None, f"line longer than max_line={self.max_line} bytes; "
                                  "dropping it up to its end"))
        return out


def split_datagram(data: bytes, max_line: int) -> list[tuple[str | None, str | None]]:
    """Split one UDP datagram into ``(text, problem)`` per line.

    A datagram holds one or more lines; the last terminator is optional.
    """
    parts = data.split(b"\n")
    if parts and not parts[-1]:
        parts.pop()
    out = []
    for part in parts:
        text, problem = decode_line(part, max_line)
        if text is not None or problem is not None:
            out.append((text, problem))
    return out


# -- pipe records ------------------------------------------------------------


def encode_record(kind: bytes, value: float, payload: str) -> bytes:
    """One record of the child's output pipe."""
    body = payload.encode("utf-8", "backslashreplace")
    return _HEADER.pack(kind, value, len(body)) + body


class RecordDecoder:
    """Reassemble records from the bytes of the child's output pipe."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, float, str]]:
        """Add bytes; return the complete ``(kind, value, payload)`` records."""
        buf = self._buf
        buf += data
        out = []
        pos = 0
        size = _HEADER.size
        while len(buf) - pos >= size:
            kind, value, length = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos - size < length:
                break
            body = bytes(buf[pos + size:pos + size + length])
            out.append((kind, value, body.decode("utf-8", "replace")))
            pos += size + length
        del buf[:pos]
        return out


# -- where markers and log lines go ------------------------------------------


class CallbackSink:
    """Deliver markers to a callback and log to the ``ampkit`` logger (thread mode)."""

    def __init__(
        self,
        deliver: Callable[[str, float], None],
        name: str = "ampkit",
        dropped: Callable[[int], None] | None = None,
    ) -> None:
        self._deliver = deliver
        self._dropped = dropped
        self._logger = logging.getLogger("ampkit")
        self._prefix = f"{name}: marker server: "

    def marker(self, stamp: float, text: str) -> None:
        self._deliver(text, stamp)

    def dropped(self, n: int) -> None:
        """``n`` markers were lost before delivery (the receiver logs why)."""
        if self._dropped is not None:
            self._dropped(n)

    def log(self, level: int, message: str) -> None:
        self._logger.log(level, "%s%s", self._prefix, message)

    def ready(self, source: str) -> None:
        self.log(logging.DEBUG, f"ready, stamping with {source} receive times")

    def flush(self, block: bool = False) -> bool:
        """Nothing is buffered; always True."""
        return True


class PipeSink:
    """Write records to a file descriptor without ever blocking the receiver.

    Parameters
    ----------
    fd : int
        The write end of the pipe to the acquiring process (made non-blocking).
    log_level : int
        Messages below this level are not sent.
    max_pending : int
        Bytes kept while the parent does not read; markers beyond it are
        dropped, and their number sent (a ``DROPPED`` record) once there is
        room again.
    """

    def __init__(
        self, fd: int, log_level: int = logging.WARNING, max_pending: int = _MAX_PENDING_OUTPUT
    ) -> None:
        self.fd = fd
        self.log_level = log_level
        self.max_pending = max_pending
        self._out = bytearray()
        self._lost = 0  # markers dropped, not reported yet
        os.set_blocking(fd, False)

    def marker(self, stamp: float, text: str) -> None:
        if len(self._out) >= self.max_pending:
            self._lost += 1
            return
        self._out += encode_record(MARKER, stamp, text)

    def dropped(self, n: int) -> None:
        """Report ``n`` markers lost before delivery."""
        self._out += encode_record(DROPPED, float(n), "")

    def log(self, level: int, message: str) -> None:
        if level >= self.log_level:
            self._out += encode_record(LOG, float(level), message)

    def ready(self, source: str) -> None:
        self._out += encode_record(READY, 0.0, source)
        self.flush(block=True)

    def fatal(self, text: str) -> None:
        self._out += encode_record(FATAL, 0.0, text)
        self.flush(block=True)

    def flush(self, block: bool = False) -> bool:
        """Write what is buffered; return True when nothing is left."""
        if self._lost and len(self._out) < self.max_pending:
            lost, self._lost = self._lost, 0
            self._out += encode_record(DROPPED, float(lost), "")
            if logging.WARNING >= self.log_level:
                self._out += encode_record(
                    LOG, float(logging.WARNING),
                    f"{lost} markers dropped: the acquiring process did not read them in time",
                )
        if block:
            os.set_blocking(self.fd, True)
        try:
            while self._out:
                try:
                    n = os.write(self.fd, self._out)
                except BlockingIOError:
                    return False
                del self._out[:n]
        finally:
            if block:
                os.set_blocking(self.fd, False)
        return True


# -- the receiver ------------------------------------------------------------


class _Client:
    __slots__ = ("sock", "peer", "framer", "since", "markers")

    def __init__(self, sock: socket.socket, peer: str, max_line: int) -> None:
        self.sock = sock
        self.peer = peer
        self.framer = LineFramer(max_line)
        self.since = time.monotonic()
        self.markers = 0


def _peer_name(proto: str, addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else addr[0]
        return f"{proto} {host}:{addr[1]}"
    return f"{proto} {addr}"


def _clock_offset_ns() -> int:
    """Wall clock minus ``perf_counter``, in ns, from the tightest of a few readings."""
    best = None
    for _ in range(5):
        a = time.perf_counter_ns()
        wall = time.time_ns()
        b = time.perf_counter_ns()
        if best is None or b - a < best[0]:
            best = (b - a, wall - (a + b) // 2)
    return best[1]  # type: ignore[index]


class ReceiveStamps:
    """When the bytes of a socket read arrived, on the ``perf_counter`` clock.

    Where the platform allows (:func:`kernel_stamps_supported`), the
    kernel's receive timestamp of the newest packet the read returns
    (``SO_TIMESTAMPNS``), converted from the wall clock; elsewhere, and for
    sockets that refuse the option, the time of the read. Used by the marker
    servers and by ``ampkit serve``'s command connection.

    Parameters
    ----------
    kernel : bool
        Use kernel timestamps where supported.
    """

    def __init__(self, kernel: bool = True) -> None:
        self.kernel = kernel and kernel_stamps_supported()
        self._offset_ns = _clock_offset_ns()
        self._offset_due = time.monotonic() + 1.0
        self._ancbuf = socket.CMSG_SPACE(_TIMESPEC.size) if self.kernel else 0

    def enable(self, sock: socket.socket) -> None:
        """Ask the kernel to stamp what ``sock`` receives (all of them, if it refuses)."""
        if self.kernel:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                self.kernel = False
                self._ancbuf = 0

    def recv(self, sock: socket.socket, size: int) -> tuple[bytes, float]:
        """``sock.recv(size)`` and the stamp of what it returned (s)."""
        if self.kernel:
            data, anc, _, _ = sock.recvmsg(size, self._ancbuf)
        else:  # no recvmsg on Windows
            data, anc = sock.recv(size), []
        return data, self.stamp(anc)

    def recvfrom(self, sock: socket.socket, size: int) -> tuple[bytes, object, float]:
        """``sock.recvfrom(size)`` and the stamp of the datagram (s)."""
        if self.kernel:
            data, anc, _, addr = sock.recvmsg(size, self._ancbuf)
        else:
            (data, addr), anc = sock.recvfrom(size), []
        return data, addr, self.stamp(anc)

    def stamp(self, ancdata: list) -> float:
        """The kernel's stamp in ``recvmsg``'s ancillary data, else now."""
        now = time.perf_counter_ns()
        for level, kind, raw in ancdata:
            if (level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                    and len(raw) == _TIMESPEC.size):
                sec, nsec = _TIMESPEC.unpack(raw)
                t = sec * 1_000_000_000 + nsec - self._offset_ns
                if now - _MAX_KERNEL_AGE_NS < t:
                    return min(t, now) / 1e9
        return now / 1e9

    def refresh(self) -> None:
        """Follow wall-clock steps (NTP): call about once a second."""
        now = time.monotonic()
        if now >= self._offset_due:
            self._offset_ns = _clock_offset_ns()
            self._offset_due = now + 1.0


class Receiver:
    """Serve the marker sockets until stopped.

    Parameters
    ----------
    tcp : socket.socket
        A listening TCP socket.
    udp : socket.socket
        A bound UDP socket.
    sink : CallbackSink or PipeSink
        Where markers and log lines go.
    max_line : int
        Longest line in bytes; longer ones are dropped with a log line.
    max_clients : int
        Most TCP connections served at once. When full, a new connection
        replaces the longest-connected client that has not sent a marker
        yet; if every client has sent markers, the newcomer is refused.
        Either way with a log line naming the peer.
    kernel_stamps : bool
        Use the kernel's receive timestamps where supported.
    control_fd : int, optional
        Stop when this file descriptor reaches end of file (child mode).
    stop_event : threading.Event, optional
        Stop when set (thread mode; checked every 0.1 s).
    log_burst : int
        Problem log lines allowed per 10 s; the rest are counted and
        summarised, so a flood of bad input cannot flood the log.
    realtime : bool
        Whether the caller gave this process real-time scheduling (reported
        with the ready record).
    """

    def __init__(
        self,
        tcp: socket.socket,
        udp: socket.socket,
        sink: CallbackSink | PipeSink,
        *,
        max_line: int = 1024,
        max_clients: int = 256,
        kernel_stamps: bool = True,
        control_fd: int | None = None,
        stop_event: threading.Event | None = None,
        log_burst: int = 50,
        realtime: bool = False,
    ) -> None:
        self.tcp = tcp
        self.udp = udp
        self.sink = sink
        self.max_line = max_line
        self.max_clients = max_clients
        self.control_fd = control_fd
        self.stop_event = stop_event
        self.log_burst = log_burst
        self.realtime = realtime
        self.clients: dict[socket.socket, _Client] = {}
        self._sel = selectors.DefaultSelector()
        self._done = False
        self._accept_paused_until = 0.0
        self._log_window = 0.0
        self._log_count = 0
        self._log_suppressed = 0
        self._stamps = ReceiveStamps(kernel_stamps)
        tcp.setblocking(False)
        udp.setblocking(False)
        self._stamps.enable(tcp)
        self._stamps.enable(udp)
        #: Datagrams the kernel dropped (socket buffer full) and reported:
        #: all since the socket was made, also those while the receiving
        #: process was starting.
        self.udp_dropped = 0
        #: Whether the kernel tells this receiver of dropped datagrams (Linux).
        self.counts_drops = self._kernel_drops() is not None
        self._drops_due = time.monotonic() + 1.0

    # -- logging -------------------------------------------------------

    def _problem(self, message: str, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        if now >= self._log_window:
            if self._log_suppressed:
                self.sink.log(level, f"{self._log_suppressed} more such messages in the "
                                     "last 10 s were not logged")
            self._log_window = now + 10.0
            self._log_count = self._log_suppressed = 0
        if self._log_count < self.log_burst:
            self._log_count += 1
            self.sink.log(level, message)
        else:
            self._log_suppressed += 1

    @property
    def kernel_stamps(self) -> bool:
        """Whether markers are stamped with the kernel's receive times."""
        return self._stamps.kernel

    # -- events --------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, addr = self.tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors, most likely: stop accepting for a moment
                # instead of spinning on a listener that stays readable.
                self._problem(f"accepting a connection failed: {exc}; pausing 0.5 s",
                              logging.ERROR)
                self._sel.unregister(self.tcp)
                self._accept_paused_until = time.monotonic() + 0.5
                return
            peer = _peer_name("tcp", addr)
            if len(self.clients) >= self.max_clients:
                silent = [c for c in self.clients.values() if c.markers == 0]
                if not silent:
                    self._problem(f"{peer}: refused: {self.max_clients} clients connected "
                                  "(max_clients) and all of them send markers")
                    sock.close()
                    continue
                victim = min(silent, key=lambda c: c.since)
                self._problem(
                    f"{victim.peer}: closed: no marker in "
                    f"{time.monotonic() - victim.since:.1f} s and {self.max_clients} "
                    f"clients connected (max_clients); making room for {peer}"
                )
                self._drop(victim)
            sock.setblocking(False)
            if self.kernel_stamps:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                except OSError:
                    pass  # inherited from the listener where the kernel allows it
            client = _Client(sock, peer, self.max_line)
            self.clients[sock] = client
            self._sel.register(sock, selectors.EVENT_READ, client)
            self.sink.log(logging.DEBUG, f"{peer}: connected")

    def _drop(self, client: _Client) -> None:
        self.clients.pop(client.sock, None)
        try:
            self._sel.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    def _read_client(self, client: _Client) -> None:
        try:
            data, stamp = self._stamps.recv(client.sock, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._problem(f"{client.peer}: connection failed ({exc}); closed", logging.INFO)
            self._drop(client)
            return
        if not data:
            if client.framer.pending:
                self._problem(f"{client.peer}: closed with {client.framer.pending} bytes of an "
                              "unterminated line; dropped")
            self.sink.log(logging.DEBUG, f"{client.peer}: disconnected")
            self._drop(client)
            return
        for text, problem in client.framer.feed(data):
            if text is not None:
                client.markers += 1
                self.sink.marker(stamp, text)
            else:
                self._problem(f"{client.peer}: {problem}")

    def _kernel_drops(self) -> int | None:
        """The UDP socket's count of dropped datagrams, None where unknown."""
        if not kernel_stamps_supported():
            return None
        try:
            raw = self.udp.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
        except OSError:
            return None
        if len(raw) < _MEMINFO.size:
            return None  # a kernel before 4.13: no drop counter
        return _MEMINFO.unpack(raw)[8]

    def _count_drops(self) -> None:
        """Report the datagrams the kernel dropped since the last report."""
        if not self.counts_drops:
            return
        total = self._kernel_drops()
        if total is None:
            return
        new = (total - self.udp_dropped) & 0xFFFFFFFF
        if new:
            self.udp_dropped += new
            self._problem(f"udp: the kernel dropped {new} marker datagrams "
                          f"({self.udp_dropped} so far): its socket buffer was full")
            self.sink.dropped(new)

    def _read_udp(self) -> None:
        for _ in range(256):
            try:
                data, addr, stamp = self._stamps.recvfrom(self.udp, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # e.g. ECONNREFUSED from an ICMP error: not fatal for a server.
                self._problem(f"udp: receive failed: {exc}", logging.INFO)
                return
            for text, problem in split_datagram(data, self.max_line):
                if text is not None:
                    self.sink.marker(stamp, text)
                else:
                    self._problem(f"{_peer_name('udp', addr)}: {problem}")

    def _read_control(self) -> None:
        try:
            data = os.read(self.control_fd, 4096)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        if not data:
            self._done = True

    # -- loop ----------------------------------------------------------

    def run(self) -> None:
        """Serve until stopped, then close every socket."""
        sel = self._sel
        sel.register(self.tcp, selectors.EVENT_READ, "tcp")
        sel.register(self.udp, selectors.EVENT_READ, "udp")
        if self.control_fd is not None:
            sel.register(self.control_fd, selectors.EVENT_READ, "control")
        sink = self.sink
        out_fd = getattr(sink, "fd", None)
        watching_out = False
        timeout = 0.1 if self.stop_event is not None else 1.0
        sink.ready(("kernel" if self.kernel_stamps else "user")
                   + (" realtime" if self.realtime else ""))
        try:
            while not self._done:
                for key, _ in sel.select(timeout):
                    what = key.data
                    if isinstance(what, _Client):
                        self._read_client(what)
                    elif what == "udp":
                        self._read_udp()
                        self._count_drops()
                    elif what == "tcp":
                        self._accept()
                    elif what == "control":
                        self._read_control()
                flushed = sink.flush()
                if out_fd is not None and flushed == watching_out:
                    # Wake up for the pipe only while output is held back.
                    if flushed:
                        sel.unregister(out_fd)
                    else:
                        sel.register(out_fd, selectors.EVENT_WRITE, "out")
                    watching_out = not flushed
                if self.stop_event is not None and self.stop_event.is_set():
                    break
                self._stamps.refresh()
                now = time.monotonic()
                if now >= self._drops_due:
                    self._drops_due = now + 1.0
                    self._count_drops()  # drops after the last datagram read
                if self._accept_paused_until and now >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    sel.register(self.tcp, selectors.EVENT_READ, "tcp")
        finally:
            try:
                self._count_drops()
            finally:
                self.close()

    def close(self) -> None:
        """Close all sockets (the listening ones first, so the ports are free)."""
        for sock in (self.tcp, self.udp, *self.clients):
            try:
                sock.close()
            except OSError:
                pass
        self.clients.clear()
        self._sel.close()


# -- child process entry point -------------------------------------------------


def try_realtime() -> bool:
    """Ask for real-time scheduling (``SCHED_FIFO``, lowest priority) if allowed.

    A TCP read returns one kernel timestamp, that of its newest byte, so
    markers that queue up while the receiver waits for a CPU share a late
    stamp. On a busy machine an ordinary process can wait milliseconds to be
    woken; a real-time one is woken at once. The receiver sleeps almost all
    the time, and Linux caps real-time tasks at 95 % of the CPU, so this
    cannot starve the machine. Allowed for root, with ``CAP_SYS_NICE``, or
    with an ``rtprio`` limit >= 1 (``/etc/security/limits.conf``, as audio
    setups grant); elsewhere this returns False and nothing changes.
    """
    setscheduler = getattr(os, "sched_setscheduler", None)
    if setscheduler is None:
        return False
    try:
        setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return False
    return True



def main(argv: list[str] | None = None) -> int:
    """Run the receiver as a child process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="marker_stamper")
    parser.add_argument("--tcp-fd", type=int, required=True)
    parser.add_argument("--udp-fd", type=int, required=True)
    parser.add_argument("--max-line", type=int, default=1024)
    parser.add_argument("--max-clients", type=int, default=256)
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    parser.add_argument("--no-kernel-stamps", action="store_true")
    parser.add_argument("--no-realtime", action="store_true")
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the whole process group; the parent decides
    # when this process ends (by closing our stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    realtime = not args.no_realtime and try_realtime()
    sink = PipeSink(1, args.log_level)
    try:
        tcp = socket.socket(fileno=args.tcp_fd)
        udp = socket.socket(fileno=args.udp_fd)
        receiver = Receiver(
            tcp, udp, sink,
            max_line=args.max_line, max_clients=args.max_clients,
            kernel_stamps=not args.no_kernel_stamps, control_fd=0,
            realtime=realtime,
        )
        receiver.run()
        sink.flush(block=True)
    except BrokenPipeError:
        return 1  # the acquiring process is gone
    except BaseException:  # noqa: BLE001 - reported to the parent
        try:
            sink.fatal(traceback.format_exc())
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
