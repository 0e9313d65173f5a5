"""The ``rda`` driver: BrainVision Recorder (or any RDA server) over TCP.

Three layers, as every protocol driver in ampkit:

* the codec, :mod:`ampkit.protocols.rda` (bytes in, messages out);
* the transport, :class:`RDAReceiver`: a socket read by a background
  :class:`~ampkit.worker.Worker` (which also reconnects when asked), or by
  the caller's own thread while it is calling ``get_data()`` in a loop;
* the amplifier, :class:`RDAAmp`: turns messages into blocks of µV with
  per-sample timestamps and markers, in a buffer that a slow caller can drain
  later without losing anything that fits in it.

Every discontinuity of the sample stream -- blocks missing from the server's
``nBlock`` sequence, a reconnection, a restart of the recording, buffer
overflow -- is counted, logged and marked with a
:data:`ampkit.block.GAP_MARKER` marker at the first sample after it.
"""

from __future__ import annotations

import functools
import logging
import math
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ampkit.amplifier import Amplifier, Marker
from ampkit.block import GAP_MARKER
from ampkit.checks import check_positive_number
from ampkit.clock import local_clock
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    ProtocolError,
    StateError,
    StreamEndedError,
)
from ampkit.logthrottle import LogThrottle
from ampkit.pool import BufferPool
from ampkit.protocols.rda import (
    PORT_FLOAT32,
    PORT_INT16,
    DataMessage,
    Message,
    RDAParser,
    StartMessage,
    StopMessage,
)
from ampkit.timestamps import SampleClock
from ampkit.worker import Worker

__all__ = ["RDAAmp", "RDAReceiver", "SilenceWatch"]

logger = logging.getLogger("ampkit")

_POLL = 0.1  # seconds a blocking call waits between looks at the stop flag
# After a get_data() call, the background thread leaves the socket to the
# caller for this long (see RDAReceiver).
_LEASE = 0.01
# Having waited for data, a get_data() call takes at most this much more of
# what has arrived already.
_DRAIN_BYTES = 4 * 2**20
_LOWAT_MAX = 4 * 2**20
_RECONNECT_INTERVAL = 0.5
_BLOCK_MASK = 0xFFFFFFFF
# At most this many values (and at least one block) per get_data() call: a
# caller that fell behind catches up in reads of about 4 MB. Arrays of that
# size reuse freed memory; bigger ones are fresh pages each time (a page fault
# and a zeroed page per 4 KiB), which would slow a late caller down further.
_READ_FLOATS = 2**20
# Joins of at least this many bytes go into reused buffers (within twice
# their size); smaller ones into memory of their own size.
_JOIN_POOLED = 256 * 2**10


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    return value


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise AmpNotAvailableError(
            f"no RDA server at {host}:{port} ({exc}); is BrainVision Recorder running "
            "with Remote Data Access enabled, or `ampkit sim rda` started?"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Non-blocking: a read takes what is there with one system call and
    # waits (_wait_readable) only when nothing is.
    sock.setblocking(False)
    return sock


def _wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``sock`` to have data (or an end)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000.0))
    return bool(select.select([sock], [], [], timeout)[0])


class SilenceWatch:
    """Notice a stream that should be sending but has gone quiet.

    Armed when the stream starts (RDA's start message), fed with every block,
    paused while the server has said it stopped. The limit is ``timeout``
    when set, else ten blocks' worth of time and at least ``floor`` seconds
    (before the first block: ``floor``), so a slow server is not taken for a
    dead one. Thread-safe in the way it is used: one thread feeds it, one
    asks :meth:`overdue`.

    Parameters
    ----------
    timeout : float or None
        Seconds of silence tolerated; None for the automatic limit.
    floor : float
        The least automatic limit in seconds.
    """

    BLOCKS = 10.0

    def __init__(self, timeout: float | None = None, floor: float = 2.0) -> None:
        self.timeout = timeout
        self.floor = floor
        self._block_seconds = 0.0
        self._since: float | None = None  # last data; None: not watching

    @property
    def limit(self) -> float:
        """Seconds of silence after which :meth:`overdue` reports it."""
        if self.timeout is not None:
            return self.timeout
        return max(self.floor, self.BLOCKS * self._block_seconds)

    def arm(self, now: float) -> None:
        """Start watching (the stream started)."""
        self._since = now

    def heard(self, now: float, block_seconds: float) -> None:
        """A block of ``block_seconds`` arrived at ``now``."""
        if block_seconds > 0:
            self._block_seconds = block_seconds
        self._since = now

    def pause(self) -> None:
        """Stop watching (the stream stopped on purpose)."""
        self._since = None

    @property
    def deadline(self) -> float:
        """When the silence becomes overdue (inf while not watching)."""
        since = self._since
        return math.inf if since is None else since + self.limit

    def overdue(self, now: float) -> float | None:
        """Seconds of silence if over the limit, else None."""
        since = self._since
        if since is None or now - since <= self.limit:
            return None
        return now - since


class RDAReceiver:
    """A connection to an RDA server, read and parsed in a background thread,
    or in the caller's thread while it is waiting for data.

    Whoever holds the receiver's read lock reads the socket: the background
    thread, unless :meth:`read` was called in the last ``10 ms`` (a caller
    reading in a loop then reads the socket itself, and each message costs no
    wake-up of a second thread and no hand-over of the interpreter lock
    between two). A caller that stops calling loses nothing: the background
    thread takes over within that time. Either way messages are delivered in
    stream order through ``on_messages``; errors and reconnection are always
    handled by the background thread.

    Parameters
    ----------
    host, port : str, int
        The server.
    timeout : float
        Seconds to wait for a connection.
    reconnect : bool
        When the server goes away, reconnect (forever, every half second,
        until :meth:`close`) instead of ending with
        :class:`~ampkit.errors.ConnectionLostError`.
    on_messages : callable
        ``on_messages(messages, arrival)`` with the messages completed by
        each read of the socket, in the thread that read it; ``arrival`` is
        the ``local_clock()`` time their last bytes came.
    on_connect : callable, optional
        ``on_connect(reconnected: bool)`` after each (re)connection.
    on_end : callable, optional
        Called in the reader thread when it ends, for whatever reason.
    silence : SilenceWatch, optional
        Watched by the reader thread: when it reports the stream overdue
        (and a read found nothing waiting), the connection counts as lost.
    """

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        reconnect: bool,
        on_messages: Callable[[list[Message], float], None],
        on_connect: Callable[[bool], None] | None = None,
        on_end: Callable[[], None] | None = None,
        silence: SilenceWatch | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.timeout = timeout
        self.reconnect = reconnect
        self.on_messages = on_messages
        self.on_connect = on_connect
        self.on_end = on_end
        self.silence = silence
        self.reconnects = 0
        self._sock: socket.socket | None = None
        self._parser = RDAParser(source=self.name)
        # When a read last found the socket empty: a silence is only real
        # once nothing was left unread after its deadline.
        self._empty_at = -math.inf
        self._lock = threading.Lock()  # held while reading the socket
        self._lease = -math.inf  # until then the caller, not the thread, reads
        self._reads = 0  # reads that delivered messages
        self._lowat = 1  # the socket's SO_RCVLOWAT
        # Why reading stopped: a reason (str) for a lost connection, or an
        # exception; the background thread acts on it.
        self._broken: str | BaseException | None = None
        self._worker: Worker | None = None

    @property
    def name(self) -> str:
        """``'RDA host:port'``, used in log messages and errors."""
        return f"RDA {self.host}:{self.port}"

    def open(self) -> RDAReceiver:
        """Connect and start the reader thread.

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            Nobody accepts connections at the address.
        """
        self._sock = _connect(self.host, self.port, self.timeout)
        if self.on_connect is not None:
            self.on_connect(False)
        self._worker = Worker(self._run, f"{self.name} reader").start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the reader thread is running."""
        return self._worker is not None and self._worker.is_alive

    def check(self) -> None:
        """Raise the error that ended the reader thread, if any."""
        if self._worker is not None:
            self._worker.check()

    def close(self) -> None:
        """Stop the reader thread and close the socket."""
        if self._worker is not None:
            self._worker.stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read(self, timeout: float) -> None:
        """Read the socket in the calling thread until one read delivers
        messages (or the background thread delivered some meanwhile), then
        take what else has arrived already (at most about 4 MB).

        Parameters
        ----------
        timeout : float
            Seconds to wait at most, for the socket and for the read lock.

        Notes
        -----
        Errors are not raised here: they end the background thread, whose
        error :meth:`check` raises.
        """
        reads = self._reads
        deadline = local_clock() + timeout
        self._lease = deadline + _LEASE
        if not self._lock.acquire(timeout=timeout):
            return
        try:
            # Wait for the first messages, then take what else has come
            # (so a caller that fell behind catches up in bigger steps).
            while self._reads == reads and self._broken is None:
                sock, left = self._sock, deadline - local_clock()
                if sock is None or left <= 0:
                    return
                self._read_here(sock, left)
            drained = 0
            while drained < _DRAIN_BYTES and self._broken is None and self._sock is not None:
                n = self._read_here(self._sock, 0.0)
                if not n:
                    return
                drained += n
        finally:
            self._lease = local_clock() + _LEASE
            self._lock.release()

    def _read_here(self, sock: socket.socket, timeout: float) -> int:
        """:meth:`_read_once` in the caller's thread: errors go to the reader thread."""
        try:
            return self._read_once(sock, self._parser, timeout)
        except Exception as exc:  # noqa: BLE001 - the reader thread raises it
            self._broken = exc
            return 0

    def _read_once(self, sock: socket.socket, parser: RDAParser, timeout: float) -> int:
        """One read of the socket (lock held), waiting up to ``timeout``
        seconds (0: only what is there); messages go to ``on_messages``.
        Returns the bytes read."""
        # Every byte goes straight into the parser's buffer for it (the
        # header, then a buffer of the message's size): no copies.
        buffer = parser.get_buffer()
        try:
            try:
                n = sock.recv_into(buffer)
            except BlockingIOError:
                self._empty_at = local_clock()
                if timeout <= 0:
                    return 0
                # Wake when the whole message is there, not for each piece.
                self._set_lowat(sock, parser.missing)
                if not _wait_readable(sock, timeout):
                    self._empty_at = local_clock()
                    return 0
                n = sock.recv_into(buffer)
        except BlockingIOError:
            self._empty_at = local_clock()
            return 0
        except OSError as exc:
            self._broken = f"connection failed: {exc}"
            return 0
        if n == 0:
            self._broken = "the server closed the connection"
            return 0
        arrival = local_clock()
        try:
            messages = parser.buffer_updated(n)
        except ProtocolError as exc:  # names the server (the parser's source)
            self._broken = exc
            return n
        if messages:
            self._reads += 1
            self.on_messages(messages, arrival)
        if parser.error is not None:
            self._broken = parser.error
        return n

    def _set_lowat(self, sock: socket.socket, n: int) -> None:
        """Have the socket report data only once ``n`` bytes are there
        (Linux caps it at half the receive buffer; an end of stream is
        reported whatever it is)."""
        n = max(1, min(n, _LOWAT_MAX))
        if n != self._lowat and hasattr(socket, "SO_RCVLOWAT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
            self._lowat = n

    def _reconnect(self, stop: threading.Event) -> socket.socket | None:
        attempts = 0
        while not stop.is_set():
            try:
                sock = _connect(self.host, self.port, min(self.timeout, 1.0))
            except AmpNotAvailableError:
                attempts += 1
                if attempts == 1 or attempts % 20 == 0:
                    logger.warning("%s: server not reachable, retrying", self.name)
                stop.wait(_RECONNECT_INTERVAL)
                continue
            self.reconnects += 1
            logger.warning("%s: reconnected", self.name)
            return sock
        return None

    def _run(self, stop: threading.Event) -> None:
        try:
            self._read(stop)
        finally:
            if self.on_end is not None:
                self.on_end()

    def _check_silence(self) -> None:
        """Count the connection as lost when the stream went quiet for too long.

        Only once nothing is left unread: a process that was held up (a
        suspended laptop, a debugger) finds the blocks that came meanwhile
        waiting in the socket, and that is no silence.
        """
        watch = self.silence
        now = local_clock()
        if watch is None or self._broken is not None or watch.overdue(now) is None:
            return
        if self._empty_at < watch.deadline:  # nobody has found it empty since
            if self._lease > now:
                return  # the caller is reading the socket: its reads will tell
            if not self._lock.acquire(timeout=_POLL):
                return
            try:
                drained = 0
                while (self._broken is None and self._sock is not None
                       and drained < _DRAIN_BYTES):
                    n = self._read_once(self._sock, self._parser, 0.0)
                    if not n:
                        break
                    drained += n
            finally:
                self._lock.release()
            if self._empty_at < watch.deadline:
                return
        quiet = watch.overdue(local_clock())
        if quiet is not None and self._broken is None:
            watch.pause()  # once; the next start message (or data) re-arms it
            self._broken = (
                f"no data for {quiet:.1f} s (limit {watch.limit:g} s, silence_timeout): "
                "the server hangs or the network is down"
            )

    def _read(self, stop: threading.Event) -> None:
        lock = self._lock
        while not stop.is_set():
            self._check_silence()
            if self._broken is not None:
                if not self._recover(stop):
                    return
                continue
            wait = self._lease - local_clock()
            if wait > 0:  # the caller is reading
                stop.wait(min(wait, _POLL))
                continue
            if not lock.acquire(timeout=_POLL):
                continue
            try:
                sock = self._sock
                if self._broken is None and sock is not None:
                    self._read_once(sock, self._parser, _POLL)
            finally:
                lock.release()

    def _recover(self, stop: threading.Event) -> bool:
        """Act on a broken connection: raise, or reconnect (False: stopped)."""
        with self._lock:
            broken, sock, self._sock = self._broken, self._sock, None
        if sock is not None:
            sock.close()
        if stop.is_set():
            return False
        if isinstance(broken, BaseException):
            raise broken
        if not self.reconnect:
            raise ConnectionLostError(f"{self.name}: {broken}")
        logger.warning("%s: %s; reconnecting", self.name, broken)
        new = self._reconnect(stop)
        if new is None:
            return False
        with self._lock:
            self._sock, self._parser, self._broken = new, RDAParser(source=self.name), None
            self._lowat = 1
        if self.on_connect is not None:
            self.on_connect(True)
        return True


class _Scaler:
    """Multiplies raw samples by their channel's resolution (µV per unit).

    One flat pass over contiguous memory: a multiplication by one number when
    all channels share a resolution, none when it is 1, else by the
    resolutions repeated for a whole block (numpy's broadcasting over rows
    of a few hundred channels takes about twice as long).
    """

    def __init__(self, resolutions: np.ndarray) -> None:
        res = np.asarray(resolutions, np.float32)
        self._res = res
        self._one = res[0] if len(res) and np.all(res == res[0]) else None
        self._tiled = np.empty(0, np.float32)

    def __call__(self, raw: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write ``raw`` (points, channels) in µV to ``out`` (float32, same
        shape, C-contiguous; may be ``raw`` itself) and return ``out``."""
        one = self._one
        if one is not None:
            if one != 1 or out is not raw:
                np.multiply(raw, one, out=out, casting="unsafe")
            return out
        size = raw.size
        if len(self._tiled) < size:
            self._tiled = np.tile(self._res, len(raw))
        np.multiply(raw.reshape(-1), self._tiled[:size], out=out.reshape(-1), casting="unsafe")
        return out


class _EitherMethod:
    """A method that receives the class when called on the class and the
    instance when called on an instance (``RDAAmp.is_available()`` asks the
    default address, ``amp.is_available()`` the configured one)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        return functools.partial(self.func, cls if obj is None else obj)


class RDAAmp(Amplifier):
    """Acquire from BrainVision Recorder, or any RDA server, over TCP.

    Channel names, sampling frequency and resolutions come from the server's
    start message: the first call that needs them (``get_channels()``,
    ``start()``...) connects and waits for it. Samples are delivered in µV
    (raw value times the channel's resolution, int16 and float32 alike);
    RDA markers become ``(ms, '<type>/<description>')`` markers, e.g.
    ``'Stimulus/S  1'``, at their sample. Each sample's time, on
    :func:`ampkit.clock.local_clock`, comes from
    :class:`~ampkit.timestamps.SampleClock`, which follows the server's own
    sample rate from the arrival times of its blocks (see :doc:`/timing`);
    ``nBlock`` alone decides losses.

    ``get_data()`` returns the buffer float32 samples were received into,
    scaled where they are (a copy only when it joins several blocks): the
    array is the caller's to keep or change.

    Attributes
    ----------
    gap_count : int
        Discontinuities found since ``start()`` (each marked with a gap marker).
    lost_samples : int
        Estimated samples lost in them.
    server_stopped : bool
        The server sent a stop message (Recorder stopped monitoring) and no
        start message since.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('rda', host='192.168.1.20', port=51244)  # doctest: +SKIP
    >>> amp.start()                                                    # doctest: +SKIP
    >>> data, markers = amp.get_data()                                 # doctest: +SKIP
    """

    presets = [
        ["Recorder on this computer, float32 (port 51244)", {"port": PORT_FLOAT32}],
        ["Recorder on this computer, int16 (port 51234)", {"port": PORT_INT16}],
    ]

    host = "127.0.0.1"
    port = PORT_FLOAT32
    timeout = 5.0

    def __init__(self) -> None:
        self.running = False
        self.reconnect = False
        self.buffer_seconds = 60.0
        self.silence_timeout: float | None = None
        self.on_stop = "wait"
        self.gap_count = 0
        self.lost_samples = 0
        self.server_stopped = False
        # Blocks are queued from start() on, including those that come with
        # the start message, before start() returns (see start()).
        self._accepting = False
        self._ended: StreamEndedError | None = None  # on_stop='raise' after a stop
        self._silence = SilenceWatch()
        self._warn_marker = LogThrottle(logger)
        self._receiver: RDAReceiver | None = None
        self._cond = threading.Condition(threading.Lock())
        self._start: StartMessage | None = None
        self._failure: BaseException | None = None
        self._timestamps: np.ndarray | None = None
        self._joined = BufferPool(size_classes=True)  # big joins of several blocks
        self._reset_stream()

    def _reset_stream(self) -> None:
        """Forget the stream's history (a new connection from ``start()``)."""
        self._queue: deque[list[Any]] = deque()
        self._queued = 0
        self._clock: SampleClock | None = None
        self._restarted = False
        self._last_block: int | None = None
        self._last_points = 0
        self._last_time = 0.0
        self._new_run = False
        self._stopped = False
        self.server_stopped = False
        self._pending_lost = 0
        self._overflow_logged = -1e9
        self._overflow_dropped = self._overflow_markers = 0

    # -- configuration ---------------------------------------------------

    def configure(
        self,
        host: str = "127.0.0.1",
        port: int = PORT_FLOAT32,
        timeout: float = 5.0,
        reconnect: bool = False,
        buffer_seconds: float = 60.0,
        silence_timeout: float | None = None,
        on_stop: str = "wait",
    ) -> None:
        """Set the server's address and how to treat it.

        Parameters
        ----------
        host : str
            Name or address of the computer running Recorder.
        port : int
            51244 for float32 samples, 51234 for int16.
        timeout : float
            Seconds to wait for the connection and for the start message.
        reconnect : bool
            When the server goes away during acquisition, reconnect (and mark
            the gap) instead of raising ConnectionLostError.
        buffer_seconds : float
            Samples kept for a caller that reads late; beyond that the oldest
            are dropped, logged and marked as a gap.
        silence_timeout : float, optional
            Seconds without a data block, while the server streams, after
            which the connection counts as lost (ConnectionLostError, or a
            reconnection with ``reconnect``). None (default): ten blocks'
            worth of time, at least 2 s; ``math.inf``: never.
        on_stop : {'wait', 'raise'}
            What the server's stop message (Recorder stops monitoring) does,
            once the blocks before it are read: ``'wait'`` returns empty
            blocks (:attr:`server_stopped` is true) until a new start
            message, then goes on with a gap marker; ``'raise'`` raises
            :class:`~ampkit.errors.StreamEndedError`.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A value of the wrong type or out of range.
        ampkit.errors.StateError
            Called while running.
        """
        if self.running:
            raise StateError("configure() while running")
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"host must be a non-empty string, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"port must be an integer in 1..65535, got {port!r}")
        # Finite: both end up in integer sample counts and socket timeouts.
        timeout = _finite("timeout", check_positive_number("timeout", timeout))
        buffer_seconds = _finite(
            "buffer_seconds", check_positive_number("buffer_seconds", buffer_seconds)
        )
        if not isinstance(reconnect, bool):
            raise ConfigurationError(f"reconnect must be True or False, got {reconnect!r}")
        if silence_timeout is not None:
            silence_timeout = check_positive_number("silence_timeout", silence_timeout)
        if on_stop not in ("wait", "raise"):
            raise ConfigurationError(f"on_stop must be 'wait' or 'raise', got {on_stop!r}")
        self._disconnect()
        self.host, self.port, self.timeout = host, port, timeout
        self.reconnect, self.buffer_seconds = reconnect, buffer_seconds
        self.silence_timeout, self.on_stop = silence_timeout, on_stop

    def _disconnect(self) -> None:
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
        self._start = None

    def _connect(self) -> StartMessage:
        """Connect (if not connected) and wait for the start message."""
        receiver = self._receiver
        if (
            receiver is not None and receiver.alive and self._start is not None
            and not self.server_stopped
        ):
            return self._start
        self._disconnect()
        with self._cond:
            self._reset_stream()
            self._failure = None
        self._silence = SilenceWatch(self.silence_timeout)
        receiver = RDAReceiver(
            self.host, self.port, self.timeout, self.reconnect,
            self._on_messages, self._on_connect, self._on_end, self._silence,
        )
        self._receiver = receiver.open()
        with self._cond:
            self._cond.wait_for(
                lambda: self._start is not None or not receiver.alive, self.timeout
            )
            start = self._start
        if start is None:
            self._disconnect()
            receiver.check()
            raise AmpNotAvailableError(
                f"RDA {self.host}:{self.port} accepted the connection but sent no start "
                f"message within {self.timeout} s: is Recorder monitoring or recording?"
            )
        return start

    def get_channels(self) -> list[str]:
        """Channel names from the server's start message (connects if needed)."""
        return list((self._start or self._connect()).channels)

    def get_sampling_frequency(self) -> float:
        """Sampling frequency from the server's start message (connects if needed)."""
        return (self._start or self._connect()).fs

    def get_resolutions(self) -> np.ndarray:
        """µV per unit of each channel, from the start message (connects if needed)."""
        return (self._start or self._connect()).resolutions.copy()

    @_EitherMethod
    def is_available(self) -> bool:
        """Whether an RDA server accepts connections at the configured address
        (the default address, ``127.0.0.1:51244``, when asked of the class)."""
        try:
            sock = socket.create_connection((self.host, self.port), min(self.timeout, 1.0))
        except OSError:
            return False
        sock.close()
        return True

    # -- life cycle ------------------------------------------------------

    def start(self) -> None:
        """Connect (if not connected), wait for the start message, and begin.

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            No server, or no start message within ``timeout``.
        ampkit.errors.ProtocolError
            The server broke the protocol.
        """
        if self.running:
            raise StateError("start() while running")
        with self._cond:
            self._queue.clear()
            self._queued = 0
            self.gap_count = self.lost_samples = 0
            self._pending_lost = 0
            self._ended = None
            # From here on, not from the end of start(): a server sends the
            # first block right behind the start message, often in the same
            # read, before _connect() has returned.
            self._accepting = True
        try:
            self._connect()
        except BaseException:
            with self._cond:
                self._accepting = False
            raise
        with self._cond:
            self.running = True
        if self._receiver is not None:
            self._receiver.reconnects = 0

    def stop(self) -> None:
        """Stop acquisition and close the connection."""
        with self._cond:
            self.running = self._accepting = False
        self._disconnect()

    def close(self) -> None:
        """Stop if running and release the connection."""
        self.stop()

    @property
    def reconnects(self) -> int:
        """Reconnections since ``start()``."""
        return 0 if self._receiver is None else self._receiver.reconnects

    # -- reader thread ---------------------------------------------------

    def _on_end(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _on_connect(self, reconnected: bool) -> None:
        with self._cond:
            if reconnected:
                self._new_run = True

    def _on_messages(self, messages: list[Message], arrival: float) -> None:
        ready: list[list[Any]] = []
        try:
            for message in messages:
                if isinstance(message, DataMessage):
                    entry = self._on_data(message, arrival)
                    if entry is not None:
                        ready.append(entry)
                else:
                    self._on_control(message)
        finally:
            # One lock and one wake-up per read of the socket, not per block.
            if ready:
                self._enqueue(ready)

    def _on_control(self, message: Message) -> None:
        if isinstance(message, StartMessage):
            with self._cond:
                old = self._start
                if old is not None and not old.same_layout(message) and self.running:
                    raise ProtocolError(
                        f"RDA {self.host}:{self.port} restarted with a different setup "
                        f"({len(message.channels)} channels at {message.fs:g} Hz, was "
                        f"{len(old.channels)} at {old.fs:g} Hz): stop() and start() again"
                    )
                if old is not None and not old.same_layout(message):
                    self._reset_stream()
                self._start = message
                self._scale = _Scaler(message.resolutions)
                if self._last_block is not None:
                    self._new_run = True
                resumed, self.server_stopped = self.server_stopped, False
                self._cond.notify_all()
            self._silence.arm(local_clock())
            logger.log(
                logging.WARNING if resumed and self.running else logging.INFO,
                "RDA %s:%d: start: %d channels at %g Hz%s",
                self.host, self.port, len(message.channels), message.fs,
                " (started again: the blocks go on after a gap marker)"
                if resumed and self._accepting else "",
            )
        elif isinstance(message, StopMessage):
            self._on_stop()
        else:
            logger.debug("RDA %s:%d: skipped message type %d", self.host, self.port, message.type)

    def _on_stop(self) -> None:
        """The server's stop message: the end of the stream, for now or for good."""
        self._silence.pause()  # a stopped server may say nothing for hours
        with self._cond:
            self._stopped = self.server_stopped = True
            if self.on_stop == "raise" and self._accepting:
                self._ended = StreamEndedError(
                    f"RDA {self.host}:{self.port}: the server stopped acquisition (stop "
                    "message: Recorder stopped monitoring); every block before it was "
                    "returned. Call stop() and start() to wait for the next start, or "
                    "configure(on_stop='wait') to wait without an error"
                )
                self._accepting = False  # nothing after the end
            self._cond.notify_all()
        if self.running:
            logger.warning(
                "RDA %s:%d: the server stopped acquisition (Recorder stopped monitoring)%s",
                self.host, self.port,
                "" if self.on_stop == "raise"
                else "; get_data() returns empty blocks until it starts again",
            )
        else:
            logger.info("RDA %s:%d: the server stopped acquisition", self.host, self.port)

    def _count_lost(self, block: DataMessage, n: int, arrival: float, fs: float) -> int:
        """Samples lost before ``block`` (0 when it continues the stream)."""
        last = self._last_block
        if last is None:
            return 0
        expected = (last + 1) & _BLOCK_MASK
        skipped = (block.block - expected) & _BLOCK_MASK
        if self._new_run:
            if block.block == expected and not self._stopped:
                return 0  # reconnected without losing a block
            if self._stopped or skipped >= 1 << 31:
                # A new recording (counter restarted): estimate from the time.
                self._restarted = True
                first = arrival - (n - 1) / fs
                return max(1, round((first - self._last_time) * fs) - 1)
            return skipped * self._last_points
        if skipped == 0:
            return 0
        if skipped >= 1 << 31:
            self._restarted = True
            first = arrival - (n - 1) / fs
            return max(1, round((first - self._last_time) * fs) - 1)
        return skipped * self._last_points

    def _on_data(self, block: DataMessage, arrival: float) -> list[Any] | None:
        """Check a block's continuity and stamp it; return its queue entry
        ``[µV data, timestamps, [(row, text)...], samples lost before]``
        (None while not running, or for an empty block)."""
        start = self._start
        assert start is not None  # the parser refuses data before a start message
        n = block.points
        fs = start.fs
        self._silence.heard(arrival, n / fs)
        lost = self._count_lost(block, max(n, 1), arrival, fs)
        if lost:
            logger.warning(
                "RDA %s:%d: about %d samples lost before block %d%s",
                self.host, self.port, lost, block.block,
                " (reconnected or restarted)" if self._new_run else "",
            )
        self._new_run = self._stopped = False
        self._last_block = block.block
        if n == 0:
            self._pending_lost += lost
            if not block.markers or not self._accepting:
                return None
            # Markers without samples: at the next sample to come.
            markers = self._block_markers(block, 0)
            return [np.empty((0, len(start.channels)), np.float32),
                    np.empty(0, np.float64), markers, 0]
        self._last_points = n
        lost += self._pending_lost
        self._pending_lost = 0
        # nBlock is the authority on losses: the clock only follows the
        # server's sample rate (a late block is a late server, not a loss).
        if self._clock is None:
            self._clock = SampleClock(fs, detect_gaps=False)
        elif self._restarted:
            self._clock.restart()  # a new recording: its own phase
        self._restarted = False
        stamps = self._clock.stamp(n, arrival, lost)[0]
        self._last_time = float(stamps[-1])
        if not self._accepting:
            return None
        if lost:
            self.gap_count += 1
            self.lost_samples += lost
        raw = block.data
        if raw.dtype == np.float32:
            # Scaled to µV where they are, in the message's own buffer (just
            # received, so still in this core's cache); get_data() hands the
            # array over without another copy.
            data = self._scale(raw, raw)
        else:
            data = self._scale(raw, np.empty(raw.shape, np.float32))
        return [data, stamps, self._block_markers(block, n), lost]

    def _block_markers(self, block: DataMessage, n: int) -> list[tuple[int, str]]:
        """``(row, text)`` of a block's markers; a marker positioned past the
        block's ``n`` samples is put on its last one (the next sample to come
        for an empty block), with a warning naming it: left where it says,
        it would wait for a sample that may never come."""
        marks = [(m[0], f"{m[1]}/{m[2]}") for m in block.markers]  # m.text, inlined
        last = max(n - 1, 0)
        if marks and max(position for position, _ in marks) > last:
            for i, (position, text) in enumerate(marks):
                if position > last:
                    marks[i] = (last, text)
                    self._warn_marker(
                        "RDA %s:%d: marker %r at position %d of block %d, which has %d "
                        "samples: placed on %s",
                        self.host, self.port, text, position, block.block, n,
                        "its last sample" if n else "the next sample",
                    )
        return marks

    def _enqueue(self, entries: list[list[Any]]) -> None:
        start = self._start
        assert start is not None
        with self._cond:
            if not self._accepting:
                return
            self._queue.extend(entries)
            self._queued += sum(len(entry[0]) for entry in entries)
            limit = max(int(self.buffer_seconds * start.fs), len(entries[-1][0]))
            if self._queued > limit:
                self._overflow(limit)
            self._cond.notify_all()

    def _overflow(self, limit: int) -> None:
        """Drop the oldest blocks down to ``limit`` samples; the new oldest
        block carries the gap (including gaps the dropped blocks carried)."""
        dropped = dropped_markers = carried = merged = 0
        while self._queued > limit:
            data, _, markers, lost = self._queue.popleft()
            dropped += len(data)
            carried += lost  # already counted when it was found
            merged += lost > 0
            dropped_markers += len(markers)
            self._queued -= len(data)
        head = self._queue[0]
        merged += head[3] > 0
        # The gaps met here become one: one marker, counted once.
        self.gap_count += 1 - merged
        head[3] += dropped + carried
        self.lost_samples += dropped
        self._overflow_dropped += dropped
        self._overflow_markers += dropped_markers
        now = local_clock()
        if now - self._overflow_logged >= 1.0:
            logger.warning(
                "RDA %s:%d: buffer of %g s full (get_data() not called often enough): "
                "dropped the oldest %d samples and %d markers",
                self.host, self.port, self.buffer_seconds,
                self._overflow_dropped, self._overflow_markers,
            )
            self._overflow_logged = now
            self._overflow_dropped = self._overflow_markers = 0

    # -- reading ---------------------------------------------------------

    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Return the samples (µV) and markers received since the last call.

        Waits up to 0.1 s for at least one block; returns an empty block
        when none came (and while the server is stopped, with ``on_stop``
        ``'wait'``). A caller that fell far behind gets the backlog in
        parts of about 4 MB (at least one block each), oldest first.

        Raises
        ------
        ampkit.errors.StateError
            Not started.
        ampkit.errors.StreamEndedError
            The server stopped acquisition and ``on_stop`` is ``'raise'``;
            blocks received before are returned first.
        ampkit.errors.ConnectionLostError
            The server went away or fell silent for ``silence_timeout`` (and
            ``reconnect`` is off); blocks received before are returned first.
        ampkit.errors.ProtocolError
            The server broke the protocol.
        """
        if not self.running:
            raise StateError("get_data() before start()")
        receiver = self._receiver
        assert receiver is not None and self._start is not None
        n_channels = len(self._start.channels)
        blocks = self._take()
        if not blocks:
            # Wait for data reading the socket here (see RDAReceiver).
            deadline = local_clock() + _POLL
            receiver.read(_POLL)
            with self._cond:
                if not self._queue:
                    self._cond.wait_for(
                        lambda: self._queue or not receiver.alive or self._ended,
                        max(0.0, deadline - local_clock()),
                    )
            blocks = self._take()
        if not blocks:
            self._raise_failure(receiver)
            self._timestamps = np.empty(0, np.float64)
            return np.empty((0, n_channels), np.float32), []
        period_ms = 1000.0 / self._start.fs
        markers: list[Marker] = []
        row = 0
        for data, _, block_markers, lost in blocks:
            if lost:
                markers.append((row * period_ms, GAP_MARKER.format(n=lost)))
            markers.extend(((row + pos) * period_ms, text) for pos, text in block_markers)
            row += len(data)
        if len(blocks) == 1:
            data = blocks[0][0]  # nobody else refers to it: no copy
            self._timestamps = blocks[0][1]
        else:
            rows = sum(len(b[0]) for b in blocks)
            out = None
            if rows * n_channels * 4 >= _JOIN_POOLED:
                # A reused buffer: a fresh one of megabytes would be faulted
                # in page by page, and a caller that fell behind would then
                # fall further behind.
                out = self._joined.array((rows, n_channels), np.float32)
            data = np.concatenate([b[0] for b in blocks], out=out)
            self._timestamps = np.concatenate([b[1] for b in blocks])
        return data, markers

    def _take(self) -> list[list[Any]]:
        """The queued blocks, oldest first: all of them, or at least one and
        at most about ``_READ_FLOATS`` values."""
        start = self._start
        assert start is not None
        limit = _READ_FLOATS // len(start.channels)
        with self._cond:
            queue = self._queue
            if self._queued <= limit:
                blocks = list(queue)
                queue.clear()
                self._queued = 0
                return blocks
            blocks = [queue.popleft()]
            taken = len(blocks[0][0])
            while queue and taken + len(queue[0][0]) <= limit:
                blocks.append(queue.popleft())
                taken += len(blocks[-1][0])
            self._queued -= taken
        return blocks

    def _raise_failure(self, receiver: RDAReceiver) -> None:
        if self._ended is not None:
            raise self._ended
        if self._failure is None and not receiver.alive:
            try:
                receiver.check()
            except BaseException as exc:  # noqa: BLE001 - kept and raised below
                self._failure = exc
            else:
                self._failure = ConnectionLostError(f"{receiver.name}: reader stopped")
        if self._failure is not None:
            raise self._failure

    def get_timestamps(self) -> np.ndarray | None:
        """Times of the samples last returned by ``get_data()`` (local_clock)."""
        return self._timestamps

    def get_effective_rate(self) -> float | None:
        """The server's sample rate measured from arrival times (Hz)."""
        return None if self._clock is None else self._clock.rate
