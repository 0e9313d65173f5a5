"""Who reads a device's byte stream, and when: :class:`StreamReader`.

A reader owns a transport (:mod:`ampkit.transport`) and a codec
(:mod:`ampkit.codec`) and delivers the codec's events, in stream order, from
whichever thread read the bytes:

* the caller's own thread while it waits for data (``get_data()`` in a
  loop): no wake-up of a second thread and no hand-over of the interpreter
  lock per message, which is most of what a message costs;
* a background :class:`~ampkit.worker.Worker` otherwise (10 ms after the
  caller's last read), so a caller that reads late loses nothing.

Receive buffers come from a :class:`~ampkit.pool.BufferPool` and are sized
from the codec's ``missing`` and ``read_ahead``: a message a codec frames by
its length arrives whole in one buffer of its own, which the codec may hand
out as views (no copy between the socket and the caller), and which is
reused once nothing refers to it any more. A TCP transport is asked to wake
the reader only once a whole message is there (``SO_RCVLOWAT``).

The background thread also watches for silence (:class:`SilenceWatch`) and
acts on a broken stream: it reconnects when it may, else it ends with the
error, which the owner raises to its caller.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from ampkit.clock import local_clock
from ampkit.codec import Codec, Event
from ampkit.errors import AmpkitError, AmpNotAvailableError, ConnectionLostError
from ampkit.pool import BufferPool
from ampkit.transport import Transport
from ampkit.worker import Closing, Worker

__all__ = ["SilenceWatch", "StreamReader"]

logger = logging.getLogger("ampkit")

#: Seconds a blocking call waits between looks at the stop flag.
POLL = 0.1
# After a read by the caller, the background thread leaves the transport to
# it for this long.
_LEASE = 0.01
# Having waited for data, a caller takes at most this much more of what has
# arrived already.
_DRAIN_BYTES = 4 * 2**20
_RECONNECT_INTERVAL = 0.5
# Reads of at least this many bytes go into pooled buffers.
_POOLED = 64 * 2**10


class SilenceWatch:
    """Notice a stream that should be sending but has gone quiet.

    Armed when the stream starts, fed with every chunk, paused while the
    device has said it stopped. The limit is ``timeout`` when set, else ten
    chunks' worth of time and at least ``floor`` seconds (before the first
    chunk: ``floor``), so a slow device is not taken for a dead one. One
    thread feeds it, one asks :meth:`overdue`.

    Parameters
    ----------
    timeout : float or None
        Seconds of silence tolerated; None for the automatic limit.
    floor : float
        The least automatic limit in seconds.
    option : str
        The setting that sets ``timeout``, named in the error.
    """

    BLOCKS = 10.0

    def __init__(
        self, timeout: float | None = None, floor: float = 2.0, option: str = "silence_timeout"
    ) -> None:
        self.timeout = timeout
        self.floor = floor
        self.option = option
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
        """A chunk of ``block_seconds`` arrived at ``now``."""
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


class StreamReader(Closing):
    """Reads a transport through a codec, in a background thread or in the
    caller's thread while it waits for data.

    Whoever holds the read lock reads: the background thread, unless
    :meth:`read` was called in the last 10 ms (a caller reading in a loop
    then reads the transport itself, and each message costs no wake-up of a
    second thread and no hand-over of the interpreter lock). A caller that
    stops calling loses nothing: the thread takes over. Events reach
    ``on_events`` in stream order either way; errors, silence and
    reconnection are always handled by the thread.

    Parameters
    ----------
    transport : Transport
    codec : Codec
    on_events : callable
        ``on_events(events, arrival)`` in the thread that read them;
        ``arrival`` is the ``local_clock()`` time their last bytes came.
    name : str
        Names the device in logs and the thread.
    reopen : callable, optional
        Returns a new ``(transport, codec)`` after the connection was lost
        (raising :class:`~ampkit.errors.AmpNotAvailableError` while it
        cannot); None: a lost connection ends the reader with its error.
    silence : SilenceWatch, optional
        When it reports the stream overdue (and a read found nothing
        waiting), the connection counts as lost.
    interval : float
        For a slow stream: the background thread looks every ``interval``
        seconds and takes what has come (fewer wake-ups than one per
        piece); 0 (default): it waits on the transport and reads each piece
        as it comes.
    gather : float
        Seconds a waiting :meth:`read` lets bytes gather between looks,
        instead of waking for every piece.
    on_end : callable, optional
        Called in the thread when it ends, for whatever reason.
    """

    def __init__(
        self,
        transport: Transport,
        codec: Codec,
        on_events: Callable[[Sequence[Event], float], None],
        name: str,
        reopen: Callable[[], tuple[Transport, Codec]] | None = None,
        silence: SilenceWatch | None = None,
        interval: float = 0.0,
        gather: float = 0.0,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.transport: Transport | None = transport
        self.codec = codec
        self.on_events = on_events
        self.name = name
        self.reopen = reopen
        self.silence = silence
        self.interval = interval
        self.gather = gather
        self.on_end = on_end
        self.reconnects = 0
        self._pool = BufferPool()
        self._buf: memoryview | None = None  # being filled until it holds _need bytes
        self._fill = self._need = 0
        # When a read last found nothing: a silence is only real once
        # nothing was left unread after its deadline.
        self._empty_at = -math.inf
        self._lock = threading.Lock()  # held while reading
        self._lease = -math.inf  # until then the caller, not the thread, reads
        self._reads = 0  # reads that delivered events
        self._broken: BaseException | None = None  # why reading stopped
        self._worker: Worker | None = None

    def start(self) -> StreamReader:
        """Start the background thread."""
        self._worker = Worker(self._run, f"{self.name} reader").start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the background thread is running."""
        return self._worker is not None and self._worker.is_alive

    def check(self) -> None:
        """Raise the error that ended the background thread, if any."""
        if self._worker is not None:
            self._worker.check()

    def stop(self) -> None:
        """Stop the background thread (the transport stays open)."""
        if self._worker is not None:
            self._worker.stop()

    def close(self) -> None:
        """Stop the thread and close the transport."""
        self.stop()
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()

    def read(self, timeout: float) -> None:
        """Read in the calling thread until one read delivers events (or the
        thread delivered some meanwhile), then take what else has arrived
        already (at most about 4 MB; with ``gather``, the read after the
        pause takes it).

        Parameters
        ----------
        timeout : float
            Seconds to wait at most, for data and for the read lock.

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
            while self._reads == reads and self._broken is None:
                left = deadline - local_clock()
                if self.transport is None or left <= 0:
                    return
                self._read_here(0.0 if self.gather else left)
                if self.gather and self._reads == reads:
                    time.sleep(min(self.gather, max(deadline - local_clock(), 0.0)))
            if not self.gather:  # (a slow stream's last look took what there was)
                self._drain(self._read_here)
        finally:
            self._lease = local_clock() + _LEASE
            self._lock.release()

    def _drain(self, read: Callable[[float], int]) -> None:
        """Take what has arrived (lock held), at most about 4 MB."""
        drained = 0
        while drained < _DRAIN_BYTES and self._broken is None and self.transport is not None:
            n = read(0.0)
            if not n:
                return
            drained += n

    def _read_here(self, timeout: float) -> int:
        """:meth:`_read_once` in the caller's thread: errors go to the thread."""
        try:
            return self._read_once(timeout)
        except Exception as exc:  # noqa: BLE001 - the reader thread raises it
            self._broken = exc
            return 0

    def _read_once(self, timeout: float) -> int:
        """One read (lock held), waiting up to ``timeout`` seconds (0: only
        what is there); events go to ``on_events``. Returns the bytes read."""
        transport, codec = self.transport, self.codec
        assert transport is not None
        buf = self._buf
        if buf is None:
            # A buffer of its own for each message: the codec may hand out
            # views of it. Big ones come from the pool, which reuses a buffer
            # only once those views are gone (fresh megabytes would be
            # faulted in page by page); small ones are fresh.
            self._need, self._fill = codec.missing, 0
            size = self._need + codec.read_ahead
            buf = self._buf = memoryview(
                self._pool.get(size) if size >= _POOLED else bytearray(size))
        try:
            n = transport.recv_into(buf[self._fill :], timeout, self._need - self._fill)
        except ConnectionLostError as exc:
            self._broken = exc
            return 0
        if not n:
            self._empty_at = local_clock()
            return 0
        self._fill += n
        if self._fill < self._need:
            return n
        arrival = local_clock()
        self._buf = None
        try:
            events = codec.feed(buf[: self._fill])
        except AmpkitError as exc:  # names the device (the codec's source)
            self._broken = exc
            return n
        if events and isinstance(events[-1], AmpkitError):
            self._broken = events[-1]
            events = events[:-1]
        if events:
            self._reads += 1
            self.on_events(events, arrival)
        return n

    def _run(self, stop: threading.Event) -> None:
        try:
            lock = self._lock
            while not stop.is_set():
                self._check_silence()
                if self._broken is not None:
                    if not self._recover(stop):
                        return
                    continue
                wait = self._lease - local_clock()
                if wait > 0 and not self.interval:  # the caller is reading
                    stop.wait(min(wait, POLL))
                    continue
                if wait <= 0 and lock.acquire(timeout=POLL):
                    try:
                        if self.interval:
                            self._drain(self._read_once)  # what came since the last look
                        elif self._broken is None:
                            self._read_once(POLL)
                    finally:
                        lock.release()
                if self.interval:  # a slow stream: one look every interval, few wake-ups
                    stop.wait(self.interval)
        finally:
            if self.on_end is not None:
                self.on_end()

    def _check_silence(self) -> None:
        """Count the connection as lost when the stream went quiet for too long.

        Only once nothing is left unread: a process that was held up (a
        suspended laptop, a debugger) finds the data that came meanwhile
        waiting, and that is no silence.
        """
        watch = self.silence
        now = local_clock()
        if watch is None or self._broken is not None or watch.overdue(now) is None:
            return
        if self._empty_at < watch.deadline:  # nobody has found it empty since
            if self._lease > now:
                return  # the caller is reading: its reads will tell
            if not self._lock.acquire(timeout=POLL):
                return
            try:
                self._drain(self._read_once)
            finally:
                self._lock.release()
            if self._empty_at < watch.deadline:
                return
        quiet = watch.overdue(local_clock())
        if quiet is not None and self._broken is None:
            watch.pause()  # once; the next start (or data) re-arms it
            self._broken = ConnectionLostError(
                f"{self.name}: no data for {quiet:.1f} s (limit {watch.limit:g} s, "
                f"{watch.option}): the device hangs or "
                "the connection is down"
            )

    def _recover(self, stop: threading.Event) -> bool:
        """Act on a broken stream: raise, or reconnect (False: stopped)."""
        with self._lock:
            broken, transport, self.transport = self._broken, self.transport, None
        if transport is not None:
            transport.close()
        if stop.is_set():
            return False
        if self.reopen is None or not isinstance(broken, ConnectionLostError):
            assert broken is not None
            raise broken
        logger.warning("%s; reconnecting", broken)
        attempts = 0
        while not stop.is_set():
            try:
                opened = self.reopen()
            except AmpNotAvailableError:
                attempts += 1
                if attempts == 1 or attempts % 20 == 0:
                    logger.warning("%s: not reachable, retrying", self.name)
                stop.wait(_RECONNECT_INTERVAL)
                continue
            self.reconnects += 1
            logger.warning("%s: reconnected", self.name)
            with self._lock:
                self.transport, self.codec = opened
                self._broken, self._buf = None, None
            return True
        return False
