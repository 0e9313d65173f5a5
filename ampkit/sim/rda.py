"""An RDA server: BrainVision Recorder's side of the RDA protocol, on loopback.

:class:`RDASimulator` listens on TCP like Recorder does, sends each client
that connects a start message (after an optional preamble of state, info,
keep-alive and unknown messages) and then the data blocks of a recording that
runs whether or not anybody listens, so a client that connects later joins
mid-recording with a continuing ``nBlock``. A new recording's first block
goes out in the same write as its start message, as Brain Products' servers
send it. Faults can be injected: dropped blocks, cut connections, stop and
restart of the recording (on the same connections), a server that falls
silent while connected (with or without keep-alives), garbage, the server
going away.

The signal is deterministic, so a client can check every sample it receives:
:meth:`RDASimulator.samples` and :meth:`RDASimulator.markers` return what
the simulator sends for any sample range. Channel 0 is a sample counter
(``k mod 30000`` in raw units, a sawtooth), the other channels are sines.

Examples
--------
>>> from ampkit.sim.rda import RDASimulator
>>> with RDASimulator(port=0, channels=4, fs=500) as sim:
...     port = sim.port           # connect an RDA client here
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ampkit.checks import check_positive_int, check_positive_number
from ampkit.clock import local_clock
from ampkit.errors import ConfigurationError, StateError
from ampkit.pacing import Pacer, check_ppm, skewed
from ampkit.protocols import rda
from ampkit.worker import Closing, Worker

__all__ = ["RDASimulator", "COUNTER_MODULUS", "PREAMBLE"]

logger = logging.getLogger("ampkit")

#: Channel 0 counts samples modulo this (fits int16).
COUNTER_MODULUS = 30000
#: Messages sent before the start message when ``preamble=True``: the
#: non-data types Recorder and other servers are known to send, plus one no
#: server uses; a client must skip them all by ``nSize``.
PREAMBLE = [
    rda.UnknownMessage(5, b"\x01\x00\x00\x00"),  # state
    rda.UnknownMessage(9, b"ampkit RDA simulator\0"),  # info
    rda.UnknownMessage(10000),  # keep-alive
    rda.UnknownMessage(100000, b"test message\0"),  # test
    rda.UnknownMessage(4242, bytes(range(256)) * 3),  # nobody's type
]
_SINE_PERIOD = 1000  # samples; channel c >= 1 makes 1 + (c - 1) % 10 cycles per period
_SINE_UV = 50.0


class RDASimulator(Closing):
    """A real RDA server on loopback, with a deterministic signal and faults.

    Parameters
    ----------
    host : str
        Address to listen on.
    port : int, optional
        TCP port; 0 picks a free one (read it from :attr:`port`). Default:
        Recorder's port for the data type (51244 float32, 51234 int16).
    channels : int or sequence of str
        Number of channels (named ``Ch1`` ...) or their names.
    fs : float
        Sampling frequency in Hz.
    block_size : int, optional
        Samples per data message (default: 20 ms worth, as Recorder).
    dtype : {'float32', 'int16'}
        Sample type on the wire.
    resolution : float or sequence of float
        µV per unit, for all channels or one per channel.
    marker_rate : float
        Markers per second (``Stimulus/S  1`` ... ``Stimulus/S 15``); 0 for none.
    preamble : bool
        Send :data:`PREAMBLE` to each client before the start message.
    keepalive_every : int
        Also send a keep-alive message after every this many blocks (0: never).
    keepalive_interval : float
        Also send a keep-alive message every this many seconds, whatever the
        state (stopped, muted); 0: never.
    first_block_with_start : bool
        Send a new recording's first block in the same write as its start
        message (:meth:`start_recording`), instead of one block later.
    realtime : bool
        Pace blocks at ``fs`` (True), or send them as fast as the client
        takes them, only while a client is connected (False, for benchmarks).
    send_timeout : float
        Seconds a client may block a send before it is dropped.
    ppm : float
        How far the simulated amplifier's clock runs from ``fs``, in parts
        per million (-100: 100 ppm slow): blocks are paced at
        ``fs * (1 + ppm / 1e6)`` while the start message says ``fs``, as a
        real amplifier's crystal does. :meth:`sample_time` tells when each
        sample was taken.

    Attributes
    ----------
    port : int
        The port the server listens on.
    blocks_sent, blocks_dropped : int
        Data blocks sent (to at least one client, or produced while none was
        connected) and blocks withheld by :meth:`drop_blocks`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        channels: int | Sequence[str] = 8,
        fs: float = 1000.0,
        block_size: int | None = None,
        dtype: str = "float32",
        resolution: float | Sequence[float] = 0.1,
        marker_rate: float = 1.0,
        preamble: bool = False,
        keepalive_every: int = 0,
        keepalive_interval: float = 0.0,
        first_block_with_start: bool = True,
        realtime: bool = True,
        send_timeout: float = 5.0,
        ppm: float = 0.0,
    ) -> None:
        self.host = str(host)
        self.ppm = check_ppm(ppm)
        self._set_layout(channels, fs, block_size, dtype, resolution, marker_rate)
        if port is None:
            port = rda.PORT_INT16 if self.dtype == np.int16 else rda.PORT_FLOAT32
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ConfigurationError(f"port must be an integer in 0..65535, got {port!r}")
        self.port = port
        self.preamble = bool(preamble)
        self.keepalive_every = int(keepalive_every)
        if isinstance(keepalive_interval, bool) or not keepalive_interval >= 0:
            raise ConfigurationError(
                f"keepalive_interval must be >= 0 seconds, got {keepalive_interval!r}"
            )
        self.keepalive_interval = float(keepalive_interval)
        self.first_block_with_start = bool(first_block_with_start)
        self.realtime = bool(realtime)
        self.send_timeout = check_positive_number("send_timeout", send_timeout)
        self.blocks_sent = 0
        self.blocks_dropped = 0
        self._lock = threading.RLock()
        self._clients: list[tuple[socket.socket, Any]] = []
        self._listener: socket.socket | None = None
        self._workers: list[Worker] = []
        self._recording = False
        self._muted = False
        self._next_keepalive = 0.0
        self._drop = 0
        self._block = 0
        self._count = 0
        self._pacer = Pacer(self.true_rate)

    # -- layout and signal -------------------------------------------------

    def _set_layout(
        self,
        channels: int | Sequence[str],
        fs: float,
        block_size: int | None,
        dtype: str,
        resolution: float | Sequence[float],
        marker_rate: float,
    ) -> None:
        if isinstance(channels, (str, bytes)):
            raise ConfigurationError("channels is a count or a list of names")
        if isinstance(channels, Sequence):
            names = [str(c) for c in channels]
            if not names:
                raise ConfigurationError("channels: at least one channel")
        else:
            names = [f"Ch{i + 1}" for i in range(check_positive_int("channels", channels))]
        fs = check_positive_number("fs", fs)
        if block_size is None:
            block_size = max(1, round(fs * 0.02))
        block_size = check_positive_int("block_size", block_size)
        if str(dtype) not in ("float32", "int16"):
            raise ConfigurationError(f"dtype must be 'float32' or 'int16', got {dtype!r}")
        if np.ndim(resolution) > 0:  # a list or an array: one per channel
            res = [check_positive_number("resolution", r) for r in np.asarray(resolution).tolist()]
            if len(res) != len(names):
                raise ConfigurationError(
                    f"{len(res)} resolutions for {len(names)} channels"
                )
        else:
            res = [check_positive_number("resolution", resolution)] * len(names)
        if isinstance(marker_rate, bool) or not marker_rate >= 0:
            raise ConfigurationError(f"marker_rate must be >= 0, got {marker_rate!r}")
        # Check the encoder accepts the names before anything is sent.
        rda.encode_start(names, 1e6 / fs, res)
        self.channels = names
        self.fs = fs
        self.block_size = block_size
        self.dtype = np.dtype(str(dtype))
        self.resolutions = np.asarray(res, dtype=np.float64)
        self.marker_rate = float(marker_rate)
        self.marker_every = max(1, round(fs / marker_rate)) if marker_rate > 0 else 0
        c = np.arange(1, len(names))
        phase = 2 * np.pi * np.arange(_SINE_PERIOD)[:, None] * (1 + (c - 1) % 10) / _SINE_PERIOD
        table = np.zeros((_SINE_PERIOD, len(names)), np.float64)
        table[:, 1:] = _SINE_UV * np.sin(phase) / self.resolutions[1:]
        if self.dtype == np.int16:
            table = np.clip(np.round(table), -32768, 32767)
        self._table = table.astype(self.dtype)

    def start_message(self) -> bytes:
        """The bytes of the start message of the current layout."""
        return rda.encode_start(self.channels, 1e6 / self.fs, self.resolutions)

    def samples(self, first: int, n: int) -> np.ndarray:
        """Raw samples ``first`` .. ``first + n - 1`` of the recording.

        Returns
        -------
        ndarray
            Shape ``(n, channels)``, of the wire dtype; multiply by
            :attr:`resolutions` for µV.
        """
        k = np.arange(first, first + n)
        out = self._table[k % _SINE_PERIOD]
        out[:, 0] = k % COUNTER_MODULUS
        return out

    def markers(self, first: int, n: int) -> list[rda.RDAMarker]:
        """The markers in samples ``first`` .. ``first + n - 1``.

        Markers fall on every sample ``k > 0`` with ``k % marker_every == 0``;
        their ``position`` is relative to ``first``.
        """
        every = self.marker_every
        if not every or n <= 0:
            return []
        k = max(every, -(-first // every) * every)
        out = []
        while k < first + n:
            i = k // every
            out.append(rda.RDAMarker(k - first, "Stimulus", f"S{(i - 1) % 15 + 1:3d}"))
            k += every
        return out

    # -- life cycle --------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the server."""
        return (self.host, self.port)

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._listener is not None

    @property
    def clients(self) -> int:
        """Number of connected clients."""
        with self._lock:
            return len(self._clients)

    def start(self) -> RDASimulator:
        """Listen and start the recording (block counter 0).

        Raises
        ------
        ampkit.errors.StateError
            Already running.
        OSError
            The port cannot be bound.
        """
        if self._listener is not None:
            raise StateError("RDA simulator already running")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(8)
            listener.settimeout(0.1)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener
        with self._lock:
            self._reset_recording()
            self._recording = True
        self._workers = [
            Worker(self._accept_loop, f"RDA simulator :{self.port} accept").start(),
            Worker(self._produce_loop, f"RDA simulator :{self.port} blocks").start(),
        ]
        logger.info(
            "RDA simulator on %s:%d: %d channels, %g Hz, %s",
            self.host, self.port, len(self.channels), self.fs, self.dtype,
        )
        return self

    def stop(self) -> None:
        """Stop serving: close the listening socket and every connection.

        The simulator can be started again (on the same port).
        """
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop_event.set()
        # The listener goes first: a client that reconnects at once must be
        # refused, not parked in the backlog of a socket about to close.
        if self._listener is not None:
            try:
                # Stops listening at once even while the accept thread still
                # polls the socket (close() alone waits for that poll).
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        # Unblock a send to a client that does not read (it holds the lock).
        for sock, _ in list(self._clients):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for worker in workers:
            worker.stop()
        with self._lock:
            self._recording = False
            self._close_clients()
        for worker in workers:
            worker.check()

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> RDASimulator:
        if self._listener is None:
            self.start()
        return super().__enter__()

    def check(self) -> None:
        """Raise the error that ended a background thread, if any."""
        for worker in self._workers:
            worker.check()

    # -- faults and recording control ----------------------------------------

    def drop_blocks(self, n: int = 1) -> None:
        """Withhold the next ``n`` data blocks (their ``nBlock`` is skipped)."""
        with self._lock:
            self._drop += check_positive_int("n", n)

    def mute(self) -> None:
        """Fall silent while connected: the recording goes on (blocks are
        produced and numbered) but no block reaches any client until
        :meth:`unmute`; start and stop messages and the keep-alives of
        ``keepalive_interval`` still go out."""
        with self._lock:
            self._muted = True

    def unmute(self) -> None:
        """Send blocks again (those produced while muted are lost to clients)."""
        with self._lock:
            self._muted = False

    def send_garbage(self, data: bytes = b"this is not RDA") -> None:
        """Send ``data`` as they are to every client (bytes that break the protocol)."""
        with self._lock:
            self._broadcast(bytes(data))

    def cut(self) -> None:
        """Close every client connection now; the server keeps listening."""
        with self._lock:
            self._close_clients()

    def stop_recording(self) -> None:
        """Send a stop message to every client and stop sending blocks."""
        with self._lock:
            self._recording = False
            self._broadcast(rda.encode_stop())

    def start_recording(self, **changes: Any) -> None:
        """Start a new recording (block counter back to 0) and tell every client.

        Parameters
        ----------
        **changes
            New values of ``channels``, ``fs``, ``block_size``, ``dtype``,
            ``resolution`` or ``marker_rate``.
        """
        with self._lock:
            if changes:
                layout = {
                    "channels": self.channels,
                    "fs": self.fs,
                    "block_size": self.block_size,
                    "dtype": str(self.dtype),
                    "resolution": list(self.resolutions),
                    "marker_rate": self.marker_rate,
                }
                unknown = set(changes) - set(layout)
                if unknown:
                    raise ConfigurationError(f"cannot change {sorted(unknown)}")
                layout.update(changes)
                if "channels" in changes and "resolution" not in changes:
                    layout["resolution"] = float(self.resolutions[0])
                self._set_layout(**layout)
            self._reset_recording()
            self._recording = True
            if self.first_block_with_start and self.realtime:
                # Block 0 due now: it goes out behind the start message.
                self._pacer.start(local_clock() - self.block_size / self.fs)
                self._pacer.due(multiple=self.block_size)
                self._emit_block(prefix=self.start_message())
            else:
                self._broadcast(self.start_message())

    def restart(self, **changes: Any) -> None:
        """Stop and start the recording, as when Recorder restarts monitoring."""
        with self._lock:
            self.stop_recording()
            self.start_recording(**changes)

    # -- internals -----------------------------------------------------------

    @property
    def true_rate(self) -> float:
        """The rate samples are really produced at: ``fs`` off by ``ppm``."""
        return skewed(self.fs, self.ppm)

    def sample_time(self, k: np.ndarray | int) -> np.ndarray | float:
        """When sample ``k`` of the current recording was taken (``local_clock``).

        The block holding it is sent at the time of its last sample (with
        ``realtime``).
        """
        return self._pacer.t0 + (np.asarray(k, np.float64) + 1.0) / self._pacer.fs

    def _reset_recording(self) -> None:
        self._block = 0
        self._count = 0
        self._pacer = Pacer(self.true_rate)
        self._pacer.start()

    def _close_clients(self) -> None:
        for sock, peer in self._clients:
            logger.info("RDA simulator :%d: closing connection from %s", self.port, peer)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._clients = []

    def _send(self, sock: socket.socket, peer: Any, data: bytes) -> bool:
        try:
            sock.sendall(data)
            return True
        except OSError as exc:
            logger.info("RDA simulator :%d: dropping client %s: %r", self.port, peer, exc)
            sock.close()
            return False

    def _broadcast(self, data: bytes) -> None:
        self._clients = [(s, p) for s, p in self._clients if self._send(s, p, data)]

    def _accept_loop(self, stop: threading.Event) -> None:
        listener = self._listener
        assert listener is not None
        while not stop.is_set():
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if stop.is_set():  # stop() closed the listener
                    return
                raise
            sock.settimeout(self.send_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            logger.info("RDA simulator :%d: client %s connected", self.port, peer)
            with self._lock:
                hello = b"".join(rda.encode(m) for m in PREAMBLE) if self.preamble else b""
                if self._recording:
                    hello += self.start_message()
                if not hello or self._send(sock, peer, hello):
                    self._clients.append((sock, peer))

    def _emit_block(self, prefix: bytes = b"") -> None:
        n = self.block_size
        first = self._count
        block = self._block
        self._count += n
        self._block = (block + 1) & 0xFFFFFFFF
        if self._drop or self._muted:
            if self._drop:
                self._drop -= 1
                self.blocks_dropped += 1
            if prefix:
                self._broadcast(prefix)
            return
        self.blocks_sent += 1
        if not self._clients:
            return
        msg = rda.encode_data(block, self.samples(first, n), self.markers(first, n))
        if self.keepalive_every and (block + 1) % self.keepalive_every == 0:
            msg += rda.encode_message(10000)
        self._broadcast(prefix + msg)

    def _keepalive(self) -> float:
        """Send the interval's keep-alive when due; seconds until the next."""
        if not self.keepalive_interval:
            return 0.05
        now = local_clock()
        if now >= self._next_keepalive:
            self._broadcast(rda.encode_message(10000))
            self._next_keepalive = max(self._next_keepalive + self.keepalive_interval, now)
        return self._next_keepalive - now

    def _produce_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            wait = 0.05
            with self._lock:
                keepalive = self._keepalive()
                if self._recording and not self.realtime:
                    if self._clients:
                        self._emit_block()
                        wait = 0.0
                    else:
                        wait = 0.01
                elif self._recording:
                    pacer = self._pacer
                    for _ in range(pacer.due(multiple=self.block_size) // self.block_size):
                        self._emit_block()
                    wait = pacer.time_of(pacer.count + self.block_size - 1) - local_clock()
            wait = min(wait, keepalive)
            if wait > 0:
                stop.wait(min(wait, 0.05))
