"""Network markers: the TCP and UDP marker servers and the client side.

Other programs (stimulus software, other machines, a shell) send markers to
a running amp as UTF-8 text, one marker per line terminated by ``\\n``
(``\\r\\n`` accepted), over TCP or UDP -- libmushu's wire format, on
libmushu's port 12344::

    printf 'S 1\\n' | nc 127.0.0.1 12344

:class:`MarkerServers` is the service :meth:`ampkit.AmpDecorator.start`
opens (options ``marker_host``, ``marker_port``, ``marker_limits``); each
marker is stamped on :func:`ampkit.clock.local_clock` the moment it arrives
and handed to :meth:`ampkit.AmpDecorator.add_marker`, which places it at its
sample. The receiving and stamping happen in a child process (see
:mod:`ampkit.marker_stamper`), so the acquiring process's GIL cannot delay
the stamps.

:func:`send_marker` sends one marker; :class:`MarkerClient` keeps a
connection for senders that send many.
"""

from __future__ import annotations

import errno
import logging
import numbers
import os
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ampkit import marker_stamper
from ampkit.block import AmpContext, Block
from ampkit.checks import check_positive_int
from ampkit.clock import local_clock
from ampkit.errors import (
    AmpkitError,
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    StateError,
)
from ampkit.worker import Closing, Worker

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MarkerServers",
    "MarkerClient",
    "send_marker",
    "default_port",
]

logger = logging.getLogger("ampkit")

#: Interface the servers listen on unless told otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
#: libmushu's marker port, for TCP and UDP alike.
DEFAULT_PORT = 12344
#: Environment variable that changes the default port (a number, or ``off``).
PORT_VARIABLE = "AMPKIT_MARKER_PORT"

_STAMPER = str(Path(marker_stamper.__file__).resolve())
_START_TIMEOUT = 20.0  # a loaded machine can take seconds to start an interpreter
_LIMITS = ("max_line", "max_clients")


def default_port() -> int | None:
    """The port the servers use when ``marker_port`` is not given.

    :data:`DEFAULT_PORT` (12344), unless the environment variable
    ``AMPKIT_MARKER_PORT`` says otherwise: a port number, ``0`` for free
    ports, or ``off`` for no servers (e.g. to run several test suites or
    amps on one machine).

    Raises
    ------
    ampkit.errors.ConfigurationError
        The variable holds something else.
    """
    text = os.environ.get(PORT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_PORT
    if text.lower() in ("off", "none"):
        return None
    try:
        return _check_port(int(text))
    except ValueError:
        raise ConfigurationError(
            f"{PORT_VARIABLE}={text!r}: expected a port number (0-65535) or 'off'"
        ) from None


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, numbers.Integral) or not 0 <= port <= 65535:
        raise ConfigurationError(
            f"marker_port must be a port number 0-65535 (0: any free port) or None "
            f"(no marker servers), got {port!r}"
        )
    return int(port)


def _busy(host: str, port: int, proto: str, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"marker port {port} ({proto}) on {host} is already in use, probably by another "
        f"program or another running amp ({exc.strerror}); pass marker_port=0 to use a free "
        f"port (see amp.marker_addresses) or marker_port=None to turn the marker servers off"
    )


def _bind(host: str, port: int, kernel_stamps: bool) -> tuple[socket.socket, socket.socket]:
    """Bind the TCP listener and the UDP socket (the same port when possible)."""
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigurationError(f"marker_host {host!r}: cannot resolve it ({exc})") from None
    family, _, _, _, address = infos[0]
    tcp = socket.socket(family, socket.SOCK_STREAM)
    udp = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if os.name == "posix":
            # Rebinding right after close (connections in TIME_WAIT); on Windows
            # this option would let two servers share a port, so not there.
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if kernel_stamps:
            # Stamp in the kernel from the start; accepted sockets inherit it.
            for sock in (tcp, udp):
                sock.setsockopt(socket.SOL_SOCKET, marker_stamper.SO_TIMESTAMPNS, 1)
        try:
            tcp.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _busy(host, port, "tcp", exc) from exc
            raise ConfigurationError(f"marker servers cannot listen on {host}:{port}: "
                                     f"{exc}") from None
        tcp.listen(128)
        bound = tcp.getsockname()[1]
        try:
            udp.bind((address[0], bound, *address[2:]))
        except OSError as exc:
            if port != 0:
                if exc.errno == errno.EADDRINUSE:
                    raise _busy(host, port, "udp", exc) from exc
                raise ConfigurationError(f"marker servers cannot listen on udp {host}:{port}: "
                                         f"{exc}") from None
            udp.bind((address[0], 0, *address[2:]))
    except BaseException:
        tcp.close()
        udp.close()
        raise
    return tcp, udp


class MarkerServers(Closing):
    """The TCP and UDP marker servers of a running amp (a decorator service).

    Usually opened by :meth:`ampkit.AmpDecorator.start`; usable alone with
    any ``deliver`` callback.

    Parameters
    ----------
    deliver : callable or None
        ``deliver(text, stamp)``, called from a background thread for every
        marker; ``stamp`` is its arrival time on
        :func:`ampkit.clock.local_clock` (seconds). None: set by
        :meth:`open` (the servers as a decorator service).
    host : str
        Interface to listen on. The default, ``127.0.0.1``, accepts markers
        from this computer only; ``0.0.0.0`` (or a LAN address) from other
        machines too.
    port : int
        Port for both protocols; 0 picks free ports (see :attr:`addresses`).
    max_line : int
        Longest marker line in bytes; longer lines are dropped and logged.
    max_clients : int
        Most TCP clients served at once; beyond it a client that has not
        sent anything yet makes room, or the newcomer is refused (logged).
    stamping : {'auto', 'process', 'thread'}
        Where markers are received and stamped: a child process with its
        own GIL (``auto`` on POSIX), or a thread of this process (``auto``
        elsewhere and in frozen applications).
    realtime : bool
        Let the receiving process ask for real-time scheduling where the
        system allows it (see :func:`ampkit.marker_stamper.try_realtime`):
        TCP stamps then stay exact on a busy machine.
    kernel_stamps : bool
        Use the kernel's receive timestamps where supported (Linux). False
        stamps when the receiver reads a packet, as on other systems.
    name : str
        Shown in log messages.
    on_dropped : callable, optional
        ``on_dropped(n)``, called from a background thread when ``n``
        markers were lost before they could be delivered: datagrams the
        kernel dropped because the UDP socket's buffer was full (counted
        on Linux, ``SO_RXQ_OVFL``), or markers the receiving process could
        not hand over fast enough. Each loss is also logged.

    Attributes
    ----------
    addresses : dict
        ``{'tcp': (host, port), 'udp': (host, port)}`` while running, else ``{}``.
    stamp_source : str
        ``'kernel'`` when the operating system's receive timestamps are
        used, ``'user'`` when the receiver reads the clock itself.
    realtime : bool
        Whether the receiving process got real-time scheduling (known once
        it has started).
    n_markers : int
        Markers delivered.
    n_dropped : int
        Markers lost before delivery (see ``on_dropped``).

    Examples
    --------
    >>> got = []
    >>> with MarkerServers(lambda text, t: got.append(text), port=0) as servers:
    ...     sent_at = send_marker("S 1", *servers.addresses["tcp"])
    """

    def __init__(
        self,
        deliver: Callable[[str, float], Any] | None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        max_line: int = 1024,
        max_clients: int = 256,
        stamping: str = "auto",
        realtime: bool = True,
        kernel_stamps: bool = True,
        name: str = "ampkit",
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"marker_host must be a host name or address, got {host!r}")
        if stamping not in ("auto", "process", "thread"):
            raise ConfigurationError(
                f"stamping must be 'auto', 'process' or 'thread', got {stamping!r}"
            )
        self.deliver = deliver
        self.host = host
        self.port = _check_port(port)
        self.max_line = check_positive_int("marker limit max_line", max_line)
        self.max_clients = check_positive_int("marker limit max_clients", max_clients)
        if stamping == "auto":
            frozen = getattr(sys, "frozen", False) or not sys.executable
            stamping = "process" if os.name == "posix" and not frozen else "thread"
        self.stamping = stamping
        self.want_realtime = bool(realtime)
        self.kernel_stamps = bool(kernel_stamps) and marker_stamper.kernel_stamps_supported()
        self.realtime = False
        self.name = name
        self.addresses: dict[str, tuple[str, int]] = {}
        self.stamp_source = ""
        self.n_markers = 0
        self.n_dropped = 0
        self.on_dropped = on_dropped
        self._proc: subprocess.Popen | None = None
        self._worker: Worker | None = None

    #: The ``AmpDecorator.start()`` options these servers take (a service type:
    #: see :class:`ampkit.block.ServiceType`).
    options: ClassVar[tuple[str, ...]] = ("marker_host", "marker_port", "marker_limits")
    #: First among the services: markers arrive from the first block on.
    order: ClassVar[int] = 10

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> MarkerServers | None:
        """The servers ``marker_host``, ``marker_port`` and ``marker_limits``
        (``AmpDecorator.start()`` options) ask for, checked but not started
        (nothing is opened yet: :meth:`open` starts them for an amp), or None
        when ``marker_port`` is None.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A bad value.
        """
        host = options.get("marker_host", DEFAULT_HOST)
        port = options.get("marker_port", "default")
        limits = options.get("marker_limits", None) or {}
        if port == "default":
            port = default_port()
        if port is None:
            return None
        if not isinstance(limits, dict) or set(limits) - set(_LIMITS):
            raise ConfigurationError(
                f"marker_limits must be a dict with keys from {list(_LIMITS)}, got {limits!r}"
            )
        return cls(None, host, port, **limits)

    # -- life cycle ------------------------------------------------------

    def open(self, amp: AmpContext) -> None:
        """Start the servers for a decorated amp: markers go to its
        ``add_marker``, losses to its ``markers_lost``.

        Raises
        ------
        ampkit.errors.ConfigurationError, ampkit.errors.AmpkitError
            As :meth:`start`.
        """
        self.deliver = amp.add_marker
        self.on_dropped = amp.markers_lost
        self.name = amp.name
        self.start()

    def start(self) -> MarkerServers:
        """Bind both sockets and start receiving.

        Returns
        -------
        MarkerServers
            self.

        Raises
        ------
        ampkit.errors.ConfigurationError
            The port is in use, or the host is not an address of this computer.
        ampkit.errors.AmpkitError
            The receiving process did not start.
        """
        if self._worker is not None:
            raise StateError("marker servers already started")
        if self.deliver is None:
            raise StateError("marker servers have nowhere to deliver: pass deliver, or open()")
        tcp, udp = _bind(self.host, self.port, self.kernel_stamps)
        addresses = {"tcp": tuple(tcp.getsockname()[:2]), "udp": tuple(udp.getsockname()[:2])}
        if self.stamping == "process":
            try:
                self._start_process(tcp, udp)
            finally:
                # The child owns them now: a dead child must mean refused
                # connections, not a listener nobody reads.
                tcp.close()
                udp.close()
        else:
            worker = Worker(lambda _: receiver.run(), f"{self.name} marker servers")
            receiver = marker_stamper.Receiver(
                tcp, udp, marker_stamper.CallbackSink(self._deliver, self.name, self._dropped),
                max_line=self.max_line, max_clients=self.max_clients,
                stop_event=worker.stop_event, kernel_stamps=self.kernel_stamps,
            )
            self.stamp_source = "kernel" if receiver.kernel_stamps else "user"
            self._worker = worker.start()
        self.addresses = addresses  # type: ignore[assignment]
        logger.info(
            "%s: marker servers on tcp %s:%d and udp %s:%d (%s stamps, %s)",
            self.name, *addresses["tcp"], *addresses["udp"], self.stamp_source, self.stamping,
        )
        return self

    def _deliver(self, text: str, stamp: float) -> None:
        self.n_markers += 1
        self.deliver(text, stamp)  # type: ignore[misc]

    def _dropped(self, n: int) -> None:
        self.n_dropped += n
        if self.on_dropped is not None:
            self.on_dropped(n)

    def _start_process(self, tcp: socket.socket, udp: socket.socket) -> None:
        fds = (tcp.fileno(), udp.fileno())
        command = [
            sys.executable, "-I", "-S", _STAMPER,
            "--tcp-fd", str(fds[0]), "--udp-fd", str(fds[1]),
            "--max-line", str(self.max_line), "--max-clients", str(self.max_clients),
            "--log-level", str(logger.getEffectiveLevel()),
            *([] if self.want_realtime else ["--no-realtime"]),
            *([] if self.kernel_stamps else ["--no-kernel-stamps"]),
        ]
        try:
            # Not in a new session: with Linux's autogroup scheduling that would
            # make it a scheduling group of its own, waking up milliseconds late
            # on a busy machine (measured: p99 2-3 ms instead of 0.07 ms). The
            # child ignores SIGINT, so Ctrl-C still reaches only this process.
            proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=fds,
                close_fds=True,
            )
        except OSError as exc:
            raise AmpkitError(f"cannot start the marker receiving process: {exc}") from exc
        decoder = marker_stamper.RecordDecoder()
        out = proc.stdout.fileno()  # type: ignore[union-attr]
        self._proc = proc
        if self.kernel_stamps:
            # The sockets stamp every packet in the kernel from now on (set in
            # _bind), so markers that arrive while the child is starting keep
            # their true arrival times: no need to wait for it. A child that
            # fails to start is reported by on_block().
            self.stamp_source = "kernel"
        else:
            self._wait_ready(proc, decoder, out)
        self._worker = Worker(lambda stop: self._pump(decoder, out, stop),
                              f"{self.name} marker servers").start()

    def _wait_ready(
        self, proc: subprocess.Popen, decoder: marker_stamper.RecordDecoder, out: int
    ) -> None:
        deadline = local_clock() + _START_TIMEOUT
        with selectors.DefaultSelector() as sel:  # select() fails on fds >= 1024
            sel.register(out, selectors.EVENT_READ)
            while not self.stamp_source:
                left = deadline - local_clock()
                chunk = b""
                if left > 0 and sel.select(left):
                    chunk = os.read(out, 65536)
                self._ready_chunk(proc, decoder, chunk)

    def _ready_chunk(
        self, proc: subprocess.Popen, decoder: marker_stamper.RecordDecoder, chunk: bytes
    ) -> None:
        """Handle startup output; on end of output or a failure, kill and raise."""
        try:
            if not chunk:
                raise AmpkitError(
                    f"the marker receiving process did not start (exit code {proc.poll()})"
                )
            for record in decoder.feed(chunk):
                self._handle(record)
        except AmpkitError:
            self._proc = None
            self._kill(proc)
            raise

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()

    def _handle(self, record: tuple[bytes, float, str]) -> None:
        kind, value, payload = record
        if kind == marker_stamper.MARKER:
            self._deliver(payload, value)
        elif kind == marker_stamper.READY:
            source, *flags = payload.split()
            self.stamp_source = source
            self.realtime = "realtime" in flags
            logger.debug("%s: marker receiving process ready (%s)", self.name, payload)
        elif kind == marker_stamper.DROPPED:
            self._dropped(int(value))
        elif kind == marker_stamper.LOG:
            logger.log(int(value), "%s: marker server: %s", self.name, payload)
        elif kind == marker_stamper.FATAL:
            raise AmpkitError(f"the marker receiving process failed: {payload}")

    def _pump(self, decoder: marker_stamper.RecordDecoder, fd: int, stop: threading.Event) -> None:
        """Worker: pass the child's records on until its output ends."""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                # No timeout: the loop ends only at the end of the child's
                # output (close() ends the child), so waking up to look at
                # ``stop`` would only cost CPU.
                if not sel.select():
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                for record in decoder.feed(chunk):
                    self._handle(record)
        if not stop.is_set():
            code = self._proc.wait() if self._proc is not None else None
            raise ConnectionLostError(
                f"the marker receiving process ended unexpectedly (exit code {code}); "
                "markers sent from now on are lost"
            )

    def on_block(self, block: Block) -> None:
        """Raise the error that stopped the servers, if any (called per block)."""
        self.check()

    def status(self) -> dict[str, int]:
        """``marker_server_markers`` received and ``marker_server_dropped``
        lost before delivery (see ``on_dropped``)."""
        return {"marker_server_markers": self.n_markers, "marker_server_dropped": self.n_dropped}

    def check(self) -> None:
        """Raise the error that stopped the servers, if any (once)."""
        if self._worker is not None:
            self._worker.check()

    def close(self) -> None:
        """Stop both servers and release their ports (returns within seconds).

        Markers received before ``close()`` are still delivered.
        """
        worker, proc = self._worker, self._proc
        self._worker = self._proc = None
        self.addresses = {}
        if worker is not None:
            worker.stop_event.set()  # before the child ends: its end is expected now
        if proc is not None:
            proc.stdin.close()  # type: ignore[union-attr]  # the child's signal to end
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                logger.error("%s: marker receiving process did not end; killed", self.name)
                proc.kill()
                proc.wait()
        if worker is not None:
            worker.stop(3.0)
            if proc is not None:
                proc.stdout.close()  # type: ignore[union-attr]
            worker.check()

    def __enter__(self) -> MarkerServers:
        if self._worker is None:
            self.start()
        return super().__enter__()

    def __repr__(self) -> str:
        return f"MarkerServers({self.addresses or 'stopped'})"


# -- client side ---------------------------------------------------------------


def _check_text(text: object) -> bytes:
    if not isinstance(text, str):
        raise ConfigurationError(f"a marker is a str, got {type(text).__name__}")
    if not text or any(c in text for c in "\n\r\0"):
        raise ConfigurationError(
            f"a marker is one non-empty line without NUL bytes, got {text!r}"
        )
    return text.encode("utf-8") + b"\n"


class MarkerClient(Closing):
    """A connection to a marker server for senders that send many markers.

    Parameters
    ----------
    host : str
        The amp's computer.
    port : int
        Its marker port.
    protocol : {'tcp', 'udp'}
        TCP delivers every marker or raises; UDP does not wait for anything
        but can lose datagrams on a congested network.
    timeout : float
        Seconds to wait for the connection.

    Examples
    --------
    >>> with MarkerClient('127.0.0.1', 12344) as client:  # doctest: +SKIP
    ...     client.send('S 1')
    ...     client.send('S 2')
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        protocol: str = "tcp",
        timeout: float = 5.0,
    ) -> None:
        if protocol not in ("tcp", "udp"):
            raise ConfigurationError(f"protocol must be 'tcp' or 'udp', got {protocol!r}")
        self.host = host
        self.port = port
        self.protocol = protocol
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self.connect()

    def connect(self) -> None:
        """(Re)connect; called by the constructor.

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            Nothing listens at ``host:port``.
        """
        self.close()
        kind = socket.SOCK_STREAM if self.protocol == "tcp" else socket.SOCK_DGRAM
        where = f"{self.protocol} {self.host}:{self.port}"
        try:
            family, _, _, _, address = socket.getaddrinfo(self.host, self.port, 0, kind)[0]
            sock = socket.socket(family, kind)
        except (OSError, UnicodeError) as exc:
            raise AmpNotAvailableError(f"no marker server at {where}: {exc}") from None
        try:
            sock.settimeout(self.timeout)
            sock.connect(address)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            sock.close()
            raise AmpNotAvailableError(
                f"no marker server at {where}: {exc.strerror or exc} (is the amp started, "
                "and is this its marker port?)"
            ) from None
        self._sock = sock

    def _peer_gone(self) -> bool:
        # The server never sends anything: a readable TCP socket means the
        # server closed it (e.g. the amp was restarted), and the marker about
        # to be sent would vanish into a dead connection.
        sock = self._sock
        if sock is None:
            return True
        sock.setblocking(False)
        try:
            sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False  # nothing to read: the connection is alive
        except OSError:
            return True
        finally:
            sock.settimeout(self.timeout)
        return True  # end of stream (or bytes the server never sends)

    def send(self, text: str) -> float:
        """Send one marker.

        Parameters
        ----------
        text : str
            One line of text (no newline, no NUL).

        Returns
        -------
        float
            ``local_clock()`` just before the marker was handed to the network.

        Raises
        ------
        ampkit.errors.ConfigurationError
            ``text`` is not one line.
        ampkit.errors.AmpNotAvailableError
            The server is gone and does not come back.
        ampkit.errors.ConnectionLostError
            Sending failed.
        """
        data = _check_text(text)
        if self.protocol == "tcp" and self._peer_gone():
            self.connect()
        sock = self._sock
        if sock is None:
            raise StateError("MarkerClient is closed")
        try:
            stamp = local_clock()
            sock.sendall(data)
        except ConnectionRefusedError:
            raise AmpNotAvailableError(
                f"no marker server at {self.protocol} {self.host}:{self.port} (refused)"
            ) from None
        except OSError as exc:
            raise ConnectionLostError(
                f"sending a marker to {self.protocol} {self.host}:{self.port} failed: {exc}"
            ) from None
        return stamp

    def close(self) -> None:
        """Close the connection (markers already sent are delivered)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                if self.protocol == "tcp":
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            sock.close()


def send_marker(
    text: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, protocol: str = "tcp"
) -> float:
    """Send one marker to a running amp.

    Parameters
    ----------
    text : str
        The marker: one line of text.
    host, port : str, int
        Where the amp's marker servers listen.
    protocol : {'tcp', 'udp'}

    Returns
    -------
    float
        ``local_clock()`` just before sending.

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        Nothing listens there (TCP).
    ampkit.errors.ConfigurationError
        ``text`` is not one line.

    Examples
    --------
    >>> send_marker('S 1')  # doctest: +SKIP
    """
    _check_text(text)
    with MarkerClient(host, port, protocol) as client:
        return client.send(text)
