"""The streaming-driver layer: what every byte-stream driver shares, written once.

A driver for a device that streams bytes (an RDA server, a Cyton dongle, a
line-based serial device) is a :class:`StreamingAmp` that supplies:

* ``open_transport(timeout)`` -- the byte stream (:mod:`ampkit.transport`);
* ``new_codec(reconnected)`` -- a :class:`~ampkit.codec.Codec`: bytes in,
  events out (:mod:`ampkit.codec`), no I/O;
* optionally ``start_stream(transport)`` / ``stop_stream(transport)`` --
  the dialogue that makes the device stream and stop (commands, answers) --
  and ``known_layout()``, the channels and rate when the configuration
  tells them (else the codec's :class:`~ampkit.codec.Started` event does);
* its ``configure()`` (setting the layer's options, :func:`check_stream_options`)
  and ``is_available()``.

The layer does the rest, the same way for every driver:

* **who reads**: a :class:`~ampkit.reader.StreamReader`, in the caller's
  thread while it calls ``get_data()`` in a loop, else in a background thread;
* **time**: every chunk is stamped on arrival by a
  :class:`~ampkit.timestamps.SampleClock` that follows the device's real
  rate, with the codec's loss counts deciding gaps;
* **gaps**: every discontinuity (samples the device's counters show lost, a
  restart, a reconnection, an overflow of the bounded queue) is counted
  (``gap_count``, ``lost_samples``), logged and marked with a
  :data:`~ampkit.block.GAP_MARKER` at the first sample after it;
* **ends**: a :class:`~ampkit.codec.Stopped` event ends the stream
  (``on_stop='raise'``: :class:`~ampkit.errors.StreamEndedError` after every
  chunk before it) or pauses it (``'wait'``); a stream silent for
  ``silence_timeout`` counts as lost; a lost connection raises
  :class:`~ampkit.errors.ConnectionLostError` after every chunk before it,
  or reconnects (``reconnect=True``);
* **state**: ``start()`` and ``configure()`` while running, ``stop()`` while
  stopped and ``get_data()`` before ``start()`` raise
  :class:`~ampkit.errors.StateError`; a failed ``start()`` leaves nothing open.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ampkit.amplifier import Amplifier
from ampkit.block import GAP_MARKER, Marker
from ampkit.checks import check_positive_number
from ampkit.clock import local_clock
from ampkit.codec import Chunk, Codec, Event, Layout, Started, Stopped
from ampkit.errors import (
    AmpkitError,
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    ProtocolError,
    StateError,
    StreamEndedError,
)
from ampkit.logthrottle import LogThrottle
from ampkit.pool import BufferPool
from ampkit.reader import POLL, SilenceWatch, StreamReader
from ampkit.timestamps import SampleClock
from ampkit.transport import Transport

__all__ = ["StreamingAmp", "check_stream_options"]

logger = logging.getLogger("ampkit")

# At most this many values (and at least one chunk) per get_data() call: a
# caller that fell behind catches up in reads of about 4 MB. Arrays of that
# size reuse freed memory; bigger ones are fresh pages each time (a page fault
# and a zeroed page per 4 KiB), which would slow a late caller down further.
_READ_FLOATS = 2**20
# Joins of at least this many bytes go into reused buffers (within twice
# their size); smaller ones into memory of their own size.
_JOIN_POOLED = 256 * 2**10
_NO_TIMES = np.empty(0, np.float64)


def check_stream_options(
    timeout: float, buffer_seconds: float, reconnect: bool, silence_timeout: float | None,
    on_stop: str,
) -> None:
    """Check the options every streaming driver takes (see :class:`StreamingAmp`).

    Raises
    ------
    ampkit.errors.ConfigurationError
        A value of the wrong type or out of range.
    """
    # Finite: both end up in integer sample counts and socket timeouts.
    for name, value in (("timeout", timeout), ("buffer_seconds", buffer_seconds)):
        if not math.isfinite(check_positive_number(name, value)):
            raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if not isinstance(reconnect, bool):
        raise ConfigurationError(f"reconnect must be True or False, got {reconnect!r}")
    if silence_timeout is not None:
        check_positive_number("silence_timeout", silence_timeout)
    if on_stop not in ("wait", "raise"):
        raise ConfigurationError(f"on_stop must be 'wait' or 'raise', got {on_stop!r}")


def _while_stopped(configure: Callable[..., None]) -> Callable[..., None]:
    """``configure`` refused (StateError) while the amp runs."""

    @functools.wraps(configure)
    def checked(self: StreamingAmp, *args: Any, **kwargs: Any) -> None:
        if self.running:
            raise StateError("configure() while running: call stop() first")
        configure(self, *args, **kwargs)

    return checked


class StreamingAmp(Amplifier):
    """Base class of drivers for devices that stream bytes (see the module).

    A subclass implements :meth:`open_transport` and :meth:`new_codec`,
    optionally :meth:`start_stream`, :meth:`stop_stream` and :meth:`known_layout`, its
    ``configure()`` (setting the options below) and ``is_available()``.

    Options (attributes a driver's ``configure()`` sets):

    ``timeout`` (5 s)
        To open the transport, and to wait for the stream's layout.
    ``reconnect`` (False)
        When the connection is lost or falls silent: reconnect and mark the
        gap, instead of raising :class:`~ampkit.errors.ConnectionLostError`.
    ``buffer_seconds`` (60 s)
        Samples kept for a caller that reads late; beyond, the oldest are
        dropped, logged and marked as a gap.
    ``silence_timeout`` (None)
        Seconds without data, while streaming, after which the connection
        counts as lost; None: ten chunks' worth, at least 2 s; ``math.inf``:
        never.
    ``on_stop`` (``'wait'``)
        After a :class:`~ampkit.codec.Stopped` event: ``'wait'`` returns empty blocks
        (:attr:`stream_stopped`) until the stream starts again, then goes
        on after a gap marker; ``'raise'`` raises
        :class:`~ampkit.errors.StreamEndedError`.
    ``read_interval``, ``gather`` (0 s)
        See :class:`~ampkit.reader.StreamReader`.

    Attributes
    ----------
    layout : Layout or None
        The stream's layout (None before it is known).
    gap_count : int
        Discontinuities found since ``start()`` (each marked with a gap marker).
    lost_samples : int
        Estimated samples lost in them.
    stream_stopped : bool
        The device stopped the stream (a :class:`~ampkit.codec.Stopped` event) and has not
        started it again.
    """

    timeout = 5.0
    reconnect = False
    buffer_seconds = 60.0
    silence_timeout: float | None = None
    on_stop = "wait"
    read_interval = 0.0
    gather = 0.0
    #: dtype of the empty blocks get_data() returns while nothing comes.
    dtype: Any = np.float32
    #: The option named in a silence error.
    silence_option = "silence_timeout"
    #: Said when the stream's layout does not come within ``timeout``.
    no_layout_hint = "is the device streaming?"
    #: Seconds get_data() waits for data at most.
    wait = POLL

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "configure" in cls.__dict__:  # configure() while running: one check for all
            cls.configure = _while_stopped(cls.__dict__["configure"])  # type: ignore[method-assign]

    def __init__(self) -> None:
        self.running = False
        self.gap_count = 0
        self.lost_samples = 0
        self.stream_stopped = False
        self.layout: Layout | None = None
        # Chunks are queued from start() on, including those that come with
        # the stream's start, before start() returns.
        self._accepting = False
        self._ended: StreamEndedError | None = None  # on_stop='raise' after a stop
        self._failure: BaseException | None = None
        self._silence = SilenceWatch()
        self._warn_marker = LogThrottle(logger)
        self._reader: StreamReader | None = None
        self._cond = threading.Condition(threading.Lock())
        self._timestamps: np.ndarray | None = None
        self._joined = BufferPool(size_classes=True)  # big joins of several chunks
        self._reset_stream()
        self.configure()  # the driver's defaults

    def _reset_stream(self) -> None:
        """Forget the stream's history (a new connection from ``start()``)."""
        self._queue: deque[list[Any]] = deque()
        self._queued = 0
        self._clock: SampleClock | None = None
        self._restarted = False
        self._last_time = 0.0
        self.stream_stopped = False
        self._pending_lost = 0
        self._overflow_logged = -1e9
        self._overflow_dropped = self._overflow_markers = 0

    # -- what a driver supplies ------------------------------------------

    @property
    def name(self) -> str:
        """Names the device in logs and errors."""
        return type(self).__name__

    @abstractmethod
    def open_transport(self, timeout: float) -> Transport:
        """Open the byte stream (``timeout``: seconds to connect).

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            The device cannot be reached.
        """

    @abstractmethod
    def new_codec(self, reconnected: bool) -> Codec:
        """A codec for a new connection (``reconnected``: after a lost one,
        within the same run)."""

    def known_layout(self) -> Layout | None:
        """The layout when the configuration tells it, without the device
        (None: the codec's :class:`~ampkit.codec.Started` event brings it)."""
        return None

    def start_stream(self, transport: Transport) -> None:
        """Talk the device into streaming (commands, answers)."""

    def stop_stream(self, transport: Transport) -> None:
        """Tell the device to stop streaming (errors are logged, not raised)."""

    # -- life cycle ------------------------------------------------------

    def start(self) -> None:
        """Connect (if not connected), wait for the stream's layout, and begin.

        Raises
        ------
        ampkit.errors.StateError
            Already running.
        ampkit.errors.AmpNotAvailableError
            The device cannot be reached, or sends no layout within ``timeout``.
        ampkit.errors.ProtocolError
            The device broke its protocol.
        """
        if self.running:
            raise StateError("start() while running: call stop() first")
        with self._cond:
            self._queue.clear()
            self._queued = 0
            self.gap_count = self.lost_samples = 0
            self._pending_lost = 0
            self._ended = None
            # From here on, not from the end of start(): a device may send
            # its first data right behind the stream's start, before
            # _connect() has returned.
            self._accepting = True
        try:
            self._connect()
        except BaseException:
            with self._cond:
                self._accepting = False
            raise
        with self._cond:
            self.running = True
        if self._reader is not None:
            self._reader.reconnects = 0

    def stop(self) -> None:
        """Stop acquisition and close the connection (promptly).

        Raises
        ------
        ampkit.errors.StateError
            Not running.
        """
        if not self.running:
            raise StateError("stop() while not running")
        with self._cond:
            self.running = self._accepting = False
        self._disconnect()

    def close(self) -> None:
        """Stop if running and release the connection."""
        if self.running:
            self.stop()
        self._disconnect()

    def _connect(self) -> Layout:
        """Connect (if not connected) and wait for the layout."""
        reader = self._reader
        if (reader is not None and reader.alive and self.layout is not None
                and not self.stream_stopped):
            return self.layout
        self._disconnect()
        with self._cond:
            self._reset_stream()
            self._failure = None
        self._silence = SilenceWatch(self.silence_timeout, option=self.silence_option)
        transport = self.open_transport(self.timeout)
        try:
            self.start_stream(transport)
            layout = self.known_layout()
            reader = StreamReader(
                transport, self.new_codec(False), self._on_events, self.name,
                self._reopen if self.reconnect else None, self._silence,
                self.read_interval, self.gather, self._on_end,
            )
        except BaseException:
            transport.close()
            raise
        if layout is not None:
            self._on_started(Started(layout))
        self._reader = reader.start()
        with self._cond:
            self._cond.wait_for(lambda: self.layout is not None or not reader.alive, self.timeout)
            layout = self.layout
        if layout is None:
            self._disconnect()
            reader.check()
            raise AmpNotAvailableError(
                f"{self.name} accepted the connection but sent no start message within "
                f"{self.timeout:g} s: {self.no_layout_hint}"
            )
        return layout

    def _reopen(self) -> tuple[Transport, Codec]:
        """A new connection after a lost one (in the reader thread)."""
        transport = self.open_transport(min(self.timeout, 1.0))  # stop() stays prompt
        try:
            self.start_stream(transport)
            layout = self.known_layout()
            codec = self.new_codec(True)
        except BaseException:
            transport.close()
            raise
        if layout is not None:
            self._on_started(Started(layout))
        return transport, codec

    def _disconnect(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.stop()
                if reader.transport is not None:
                    try:
                        self.stop_stream(reader.transport)
                    except AmpkitError as exc:
                        logger.info("%s: stopping the stream: %s", self.name, exc)
            finally:
                reader.close()
        self.layout = None

    @property
    def reconnects(self) -> int:
        """Reconnections since ``start()``."""
        return 0 if self._reader is None else self._reader.reconnects

    # -- the layout --------------------------------------------------------

    def _layout(self) -> Layout:
        return self.layout or self.known_layout() or self._connect()

    def get_channels(self) -> list[str]:
        """Channel names from the layout (connects if only the stream tells)."""
        return list(self._layout().channels)

    def get_sampling_frequency(self) -> float:
        """Sampling frequency from the layout (connects if only the stream tells)."""
        return self._layout().fs

    # -- events (in the thread that read them) ------------------------------

    def _on_end(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _on_events(self, events: Sequence[Event], arrival: float) -> None:
        ready: list[list[Any]] = []
        try:
            for event in events:
                if type(event) is Chunk:
                    entry = self._on_chunk(event, arrival)
                    if entry is not None:
                        ready.append(entry)
                else:
                    if ready:  # chunks before a start or stop are queued before it acts
                        self._enqueue(ready)
                        ready = []
                    if isinstance(event, Started):
                        self._on_started(event)
                    elif isinstance(event, Stopped):
                        self._on_stopped(event)
        finally:
            # One lock and one wake-up per read, not per chunk.
            if ready:
                self._enqueue(ready)

    def _on_started(self, event: Started) -> None:
        layout = event.layout
        with self._cond:
            old = self.layout
            if old is not None and old != layout:
                if self.running:
                    raise ProtocolError(
                        f"{self.name} restarted with a different setup ({len(layout.channels)} "
                        f"channels at {layout.fs:g} Hz, was {len(old.channels)} at "
                        f"{old.fs:g} Hz): stop() and start() again"
                    )
                self._reset_stream()
            self.layout = layout
            resumed, self.stream_stopped = self.stream_stopped, False
            self._cond.notify_all()
        self._silence.arm(local_clock())
        logger.log(
            logging.WARNING if resumed and self.running else logging.INFO,
            "%s: start: %d channels at %g Hz%s", self.name, len(layout.channels), layout.fs,
            " (started again: the blocks go on after a gap marker)"
            if resumed and self._accepting else "",
        )

    def _on_stopped(self, event: Stopped) -> None:
        """The end of the stream, for now or for good."""
        self._silence.pause()  # a stopped device may say nothing for hours
        with self._cond:
            self.stream_stopped = True
            if self.on_stop == "raise" and self._accepting:
                self._ended = StreamEndedError(
                    f"{self.name}: stopped acquisition ({event.reason}); every block before "
                    "it was returned. Call stop() and start() to wait for the next start, "
                    "or configure(on_stop='wait') to wait without an error"
                )
                self._accepting = False  # nothing after the end
            self._cond.notify_all()
        logger.log(
            logging.WARNING if self.running else logging.INFO,
            "%s: stopped acquisition (%s)%s", self.name, event.reason,
            "; get_data() returns empty blocks until it starts again"
            if self.running and self.on_stop == "wait" else "",
        )

    def _on_chunk(self, chunk: Chunk, arrival: float) -> list[Any] | None:
        """Stamp a chunk and count what was lost before it; return its queue
        entry ``[data, timestamps, [(row, text)...], samples lost before]``
        (None while not accepting, or for an empty chunk without markers)."""
        layout = self.layout
        assert layout is not None  # a codec yields chunks only once started
        fs = layout.fs
        n = len(chunk.data)
        self._silence.heard(arrival, n / fs)
        lost = chunk.lost
        if lost is None:  # the device's counter restarted: estimate from the time
            lost = 0
            if self._clock is not None:
                self._restarted = True
                first = arrival - (max(n, 1) - 1) / fs
                lost = max(1, round((first - self._last_time) * fs) - 1)
        if lost:
            logger.warning(
                "%s: %d samples lost%s", self.name, lost,
                "" if chunk.counter is None else f" before block {chunk.counter}",
            )
        if n == 0:
            self._pending_lost += lost
            if not chunk.markers or not self._accepting:
                return None
            # Markers without samples: at the next sample to come.
            return [chunk.data, _NO_TIMES, self._place(chunk, 0), 0]
        lost += self._pending_lost
        self._pending_lost = 0
        # The counters are the authority on losses: the clock only follows
        # the device's rate (a late chunk is a late device, not a loss).
        if self._clock is None:
            self._clock = SampleClock(fs, detect_gaps=False)
        elif self._restarted:
            self._clock.restart()  # a new run: its own phase
        self._restarted = False
        stamps = self._clock.stamp(n, arrival, lost)[0]
        self._last_time = float(stamps[-1])
        if not self._accepting:
            return None
        if lost:
            self.gap_count += 1
            self.lost_samples += lost
        return [chunk.data, stamps, self._place(chunk, n) if chunk.markers else [], lost]

    def _place(self, chunk: Chunk, n: int) -> list[tuple[int, str]]:
        """A chunk's markers; one positioned past its ``n`` samples goes on
        the last (for an empty chunk: the next sample to come), with a
        warning naming it: left where it says, it would wait for a sample
        that may never come."""
        marks = chunk.markers
        last = max(n - 1, 0)
        if max(position for position, _ in marks) <= last:
            return marks
        where = "a block" if chunk.counter is None else f"block {chunk.counter}"
        placed = []
        for position, text in marks:
            if position > last:
                self._warn_marker(
                    "%s: marker %r at position %d of %s, which has %d samples: placed on %s",
                    self.name, text, position, where, n,
                    "its last sample" if n else "the next sample",
                )
                position = last
            placed.append((position, text))
        return placed

    def _enqueue(self, entries: list[list[Any]]) -> None:
        layout = self.layout
        assert layout is not None
        with self._cond:
            if not self._accepting:
                return
            self._queue.extend(entries)
            for entry in entries:
                self._queued += len(entry[0])
            limit = max(int(self.buffer_seconds * layout.fs), len(entries[-1][0]))
            if self._queued > limit:
                self._overflow(limit)
            self._cond.notify_all()

    def _overflow(self, limit: int) -> None:
        """Drop the oldest chunks down to ``limit`` samples; the new oldest
        carries the gap (including gaps the dropped ones carried)."""
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
                "%s: buffer of %g s full (get_data() not called often enough): "
                "dropped the oldest %d samples and %d markers",
                self.name, self.buffer_seconds, self._overflow_dropped, self._overflow_markers,
            )
            self._overflow_logged = now
            self._overflow_dropped = self._overflow_markers = 0

    # -- reading ---------------------------------------------------------

    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Return the samples and markers received since the last call.

        Waits up to 0.1 s for data, then takes what else has arrived; an
        empty block when nothing came (and while the device has stopped the
        stream, with ``on_stop='wait'``). A caller that fell far behind gets
        the backlog in parts of about 4 MB, oldest first. A single chunk
        is returned as the codec made it (no copy).

        Raises
        ------
        ampkit.errors.StateError
            Not started.
        ampkit.errors.StreamEndedError
            The device stopped the stream and ``on_stop`` is ``'raise'``;
            what came before is returned first.
        ampkit.errors.ConnectionLostError
            The connection was lost, or the stream fell silent for
            ``silence_timeout`` (and ``reconnect`` is off); what came before
            is returned first.
        ampkit.errors.ProtocolError
            The device broke its protocol.
        """
        if not self.running:
            raise StateError("get_data() before start()")
        reader, layout = self._reader, self.layout
        assert reader is not None and layout is not None
        # (A look without the lock first: nothing queued is the usual case
        # of a caller reading in a loop.)
        blocks = self._take(len(layout.channels)) if self._queue else []
        if not blocks:
            # Wait for data reading the transport here (see StreamReader).
            deadline = local_clock() + self.wait
            reader.read(self.wait)
            blocks = self._take(len(layout.channels))
        if not blocks:  # the thread may deliver yet (it held the transport)
            with self._cond:
                self._cond.wait_for(
                    lambda: self._queue or not reader.alive or self._ended,
                    max(0.0, deadline - local_clock()),
                )
            blocks = self._take(len(layout.channels))
        if not blocks:
            self._raise_failure(reader)
            self._timestamps = _NO_TIMES
            return np.empty((0, len(layout.channels)), self.dtype), []
        period_ms = 1000.0 / layout.fs
        markers: list[Marker] = []
        row = 0
        for data, _, block_markers, lost in blocks:
            if lost:
                markers.append((row * period_ms, GAP_MARKER.format(n=lost)))
            if block_markers:
                markers.extend(((row + pos) * period_ms, text) for pos, text in block_markers)
            row += len(data)
        if len(blocks) == 1:
            data = blocks[0][0]  # nobody else refers to it: no copy
            self._timestamps = blocks[0][1]
        else:
            first = blocks[0][0]
            out = None
            if row * first.shape[1] * first.itemsize >= _JOIN_POOLED:
                # A reused buffer: a fresh one of megabytes would be faulted
                # in page by page, and a caller that fell behind would then
                # fall further behind.
                out = self._joined.array((row, first.shape[1]), first.dtype)
            data = np.concatenate([b[0] for b in blocks], out=out)
            self._timestamps = np.concatenate([b[1] for b in blocks])
        return data, markers

    def _take(self, n_channels: int) -> list[list[Any]]:
        """The queued chunks, oldest first: all of them, or at least one and
        at most about ``_READ_FLOATS`` values."""
        limit = _READ_FLOATS // n_channels
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

    def _raise_failure(self, reader: StreamReader) -> None:
        if self._ended is not None:
            raise self._ended
        if self._failure is None and not reader.alive:
            try:
                reader.check()
            except BaseException as exc:  # noqa: BLE001 - kept and raised below
                self._failure = exc
            else:
                self._failure = ConnectionLostError(f"{self.name}: reader stopped")
        if self._failure is not None:
            raise self._failure

    def get_timestamps(self) -> np.ndarray | None:
        """Times of the samples last returned by ``get_data()`` (local_clock)."""
        return self._timestamps

    def get_effective_rate(self) -> float | None:
        """The device's sample rate measured from arrival times (Hz)."""
        return None if self._clock is None else self._clock.rate
