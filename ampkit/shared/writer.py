"""The writing side of a shared stream: blocks into the shared-memory ring.

:class:`SharedWriter` writes from any program that produces samples
(``write(data, timestamps, markers)``); a decorated amp runs one as its
``share`` service (:mod:`ampkit.shared.service`).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ampkit.checks import check_positive_int
from ampkit.errors import ConfigurationError, StateError
from ampkit.logthrottle import LogThrottle
from ampkit.shared.segment import (
    CLAIMED,
    HEARTBEAT,
    HEARTBEAT_INTERVAL,
    M_CLAIMED,
    M_WRITTEN,
    MARKER_TEXT,
    STATE,
    STOPPED,
    TRUNCATED,
    WRITTEN,
    check_name,
    create_segment,
    fence,
)
from ampkit.shared.waiting import CommitSignal
from ampkit.worker import Closing, Worker

__all__ = ["SharedWriter", "check_seconds", "DEFAULT_SECONDS", "DEFAULT_MARKERS"]

logger = logging.getLogger("ampkit")

#: Default length of the shared ring (the ``share_seconds`` start option).
DEFAULT_SECONDS = 10.0
#: Default number of marker slots.
DEFAULT_MARKERS = 1024
#: Rows after the ring that repeat its first rows: windows up to this many
#: seconds are views even where they wrap (capped at the ring's length).
VIEW_SECONDS = 1.0
_MAX_ROWS = 2**40


def check_seconds(seconds: object) -> float:
    """``share_seconds`` as a float, or ConfigurationError."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, numbers.Real)
        or not 0 < seconds < math.inf
    ):
        raise ConfigurationError(
            f"share_seconds must be a positive finite number of seconds, got {seconds!r}"
        )
    return float(seconds)


class SharedWriter(Closing):
    """Write samples, their timestamps and markers into a shared stream.

    Creates the segment ``/dev/shm/ampkit-<name>`` (reclaiming one left by a
    writer that died) and keeps its heartbeat going in a thread until
    :meth:`close`, which removes the segment. Readers in other processes
    attach with :func:`ampkit.attach`. The writer never waits for them.

    Parameters
    ----------
    name : str
        Name of the stream: 1-64 letters, digits, ``_``, ``.``, ``-``.
    channels : sequence of str
        Channel names, in column order.
    fs : float
        Sampling rate in Hz (sizes the ring; readers see it).
    seconds : float
        Length of the ring: readers can reach samples up to this old.
    units : sequence of str, optional
        Unit of each channel (default ``µV``).
    source : str
        What writes (shown to readers and in errors), e.g. the amp's name.
    marker_slots : int
        Markers kept in the side ring.
    dtype : numpy dtype
        float32 (default), float64, int16 or int32.

    Attributes
    ----------
    name : str
    n_written : int
        Samples written: the index the next sample gets.
    n_markers : int
        Markers written.

    Raises
    ------
    ampkit.errors.ConfigurationError
        A bad value; the name is in use by a live writer or by a segment of
        another program.
    ampkit.errors.RecordingError
        /dev/shm has no room for ``seconds`` of signal.
    ampkit.errors.AmpNotAvailableError
        No /dev/shm on this system.

    Examples
    --------
    >>> with SharedWriter("demo", ["C3", "C4"], 100.0, seconds=5) as w:   # doctest: +SKIP
    ...     w.write(np.zeros((10, 2), np.float32), np.arange(10) / 100.0)
    """

    def __init__(
        self,
        name: str,
        channels: Sequence[str],
        fs: float,
        *,
        seconds: float = DEFAULT_SECONDS,
        units: Sequence[str] | None = None,
        source: str = "",
        marker_slots: int = DEFAULT_MARKERS,
        dtype: Any = np.float32,
    ) -> None:
        self.name = check_name(name)
        channels = [str(c) for c in channels]
        if not channels:
            raise ConfigurationError(f"shared stream {name!r}: no channels to share")
        if isinstance(fs, bool) or not isinstance(fs, numbers.Real) or not 0 < fs < math.inf:
            raise ConfigurationError(
                f"shared stream {name!r}: the sampling rate must be a positive finite "
                f"number, got {fs!r}"
            )
        seconds = check_seconds(seconds)
        units = ["µV"] * len(channels) if units is None else [str(u) for u in units]
        if len(units) != len(channels):
            raise ConfigurationError(
                f"shared stream {name!r}: {len(units)} units for {len(channels)} channels"
            )
        marker_slots = check_positive_int("marker_slots", marker_slots)
        n_rows = math.ceil(seconds * fs)
        if n_rows > _MAX_ROWS:
            raise ConfigurationError(
                f"shared stream {name!r}: {seconds:g} s at {fs:g} Hz is too long a ring"
            )
        view_rows = min(n_rows, math.ceil(VIEW_SECONDS * fs))
        meta = {
            "channels": channels, "units": units, "fs": float(fs), "source": str(source),
            "pid": os.getpid(), "seconds": seconds,
        }
        self.segment = create_segment(
            self.name, len(channels), n_rows, view_rows, float(fs), dtype, meta,
            int(marker_slots),
        )
        self.channels = channels
        self.fs = float(fs)
        self.n_rows = n_rows
        self.n_written = 0
        self.n_markers = 0
        self._words = self.segment.words
        self._data = self.segment.data
        self._times = self.segment.times
        self._slots = self.segment.markers
        self._signal = CommitSignal(self.segment)
        self._warn_cut = LogThrottle(logger)
        self._closed = False
        self._beat_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._heartbeat = Worker(self._beat, f"shared stream {name} heartbeat").start()
        logger.info(
            "sharing %r in %s: %d channels at %g Hz, %g s (%.1f MB)",
            name, self.segment.path, len(channels), fs, seconds,
            self.segment.header.total_size / 1e6,
        )

    def __repr__(self) -> str:
        return f"SharedWriter({self.name!r}, n_written={self.n_written})"

    def _beat(self, stop: threading.Event) -> None:
        words = self._words
        while not stop.wait(HEARTBEAT_INTERVAL):
            with self._beat_lock:
                if self._closed:
                    return
                words[HEARTBEAT] = time.monotonic_ns()

    # -- writing ---------------------------------------------------------

    def write(
        self,
        data: Any,
        timestamps: Any,
        markers: Sequence[tuple[float, str]] = (),
    ) -> None:
        """Append samples, their timestamps and markers.

        Readers see the markers no later than the samples: when a sample is
        visible, every marker written with it is too.

        Parameters
        ----------
        data : array_like, shape (n, n_channels)
        timestamps : array_like, shape (n,)
            Seconds on :func:`ampkit.clock.local_clock`.
        markers : sequence of (float, str)
            ``(time_s, text)`` on the same clock. Each is given the index of
            the first sample at or after its time (among the samples shared
            so far and these).

        Raises
        ------
        ampkit.errors.StateError
            After :meth:`close`.
        ampkit.errors.ConfigurationError
            ``data`` does not have ``n_channels`` columns, or not one
            timestamp per row.
        """
        if self._closed:
            raise StateError(f"shared stream {self.name!r}: write() after close()")
        self._heartbeat.check()
        data = np.asarray(data)
        n = len(timestamps)
        if data.ndim != 2 or len(data) != n or data.shape[1] != len(self.channels):
            raise ConfigurationError(
                f"shared stream {self.name!r}: a block of shape {data.shape} with "
                f"{n} timestamps does not fit {len(self.channels)} channels"
            )
        if markers:
            self._write_markers(markers, timestamps)
        if not n:
            return
        words = self._words
        size = self.n_rows
        first = self.n_written
        end = first + n
        # Claim first: a reader that copies rows of samples < end - size
        # meanwhile finds them claimed afterwards and drops its copy.
        words[CLAIMED] = end
        fence()
        if n > size:
            data, timestamps, first = data[n - size :], timestamps[n - size :], end - size
        self._put(first % size, data, timestamps)
        fence()
        words[WRITTEN] = end
        self._signal.committed()
        self.n_written = end

    def _put(self, row: int, data: Any, timestamps: Any) -> None:
        size = self.n_rows
        n = len(timestamps)
        k = size - row
        if n <= k:
            self._rows(row, data, timestamps)
        else:
            self._rows(row, data[:k], timestamps[:k])
            self._rows(0, data[k:], timestamps[k:])

    def _rows(self, a: int, data: Any, timestamps: Any) -> None:
        b = a + len(timestamps)
        self._data[a:b] = data
        self._times[a:b] = timestamps
        view_rows = self.segment.view_rows
        if a < view_rows:  # the copy past the end, for windows that wrap
            e = min(b, view_rows)
            size = self.n_rows
            self._data[size + a : size + e] = self._data[a:e]
            self._times[size + a : size + e] = self._times[a:e]

    def _write_markers(self, markers: Sequence[tuple[float, str]], timestamps: Any) -> None:
        slots = self._slots
        n_slots = len(slots)
        times = np.array([t for t, _ in markers], dtype=np.float64)
        indices = self._indices(times, np.asarray(timestamps, dtype=np.float64))
        first = self.n_markers
        end = first + len(markers)
        words = self._words
        words[M_CLAIMED] = end
        fence()
        start = max(first, end - n_slots)
        for k in range(start, end):
            text = str(markers[k - first][1]).encode("utf-8")
            flags = 0
            if len(text) > MARKER_TEXT:
                self._warn_cut(
                    "shared stream %r: a marker of %d bytes was cut to %d (UTF-8)",
                    self.name, len(text), MARKER_TEXT,
                )
                text = text[:MARKER_TEXT].decode("utf-8", "ignore").encode("utf-8")
                flags = TRUNCATED
            slot = slots[k % n_slots]
            slot["time"] = times[k - first]
            slot["index"] = indices[k - first]
            slot["length"] = len(text)
            slot["flags"] = flags
            slot["text"][: len(text)] = np.frombuffer(text, np.uint8)
        fence()
        words[M_WRITTEN] = end
        self.n_markers = end

    def _indices(self, times: np.ndarray, block_t: np.ndarray) -> np.ndarray:
        """Sample index of each marker: the first sample at or after its time,
        among the samples shared so far followed by ``block_t``."""
        first = self.n_written
        out = first + np.searchsorted(block_t, times, side="left")
        early = np.flatnonzero(times < (block_t[0] if len(block_t) else np.inf))
        if len(early):
            # Before this block: look back in the ring (late markers).
            size = self.n_rows
            lo = max(0, first - size)
            ring_t = self._unfold_times(lo, first)
            out[early] = lo + np.searchsorted(ring_t, times[early], side="left")
        return out

    def _unfold_times(self, lo: int, hi: int) -> np.ndarray:
        size = self.n_rows
        a, b = lo % size, hi % size
        if hi - lo == 0:
            return self._times[:0]
        if a < b:
            return self._times[a:b]
        return np.concatenate((self._times[a:size], self._times[:b]))

    def close(self) -> None:
        """Mark the stream stopped, stop the heartbeat, remove the segment.

        Readers attached keep what was written: they read it to the end,
        then get :class:`ampkit.errors.StreamEndedError`. Safe to call twice.
        """
        with self._close_lock:  # a second close() returns when the first is done
            with self._beat_lock:
                if self._closed:
                    return
                self._closed = True
                self._words[STATE] = STOPPED
                self._signal.committed()  # sleeping readers learn it now
            try:
                self.segment.path.unlink()
            except FileNotFoundError:
                logger.warning("shared stream %r: %s was removed by someone else",
                               self.name, self.segment.path)
            try:
                self._heartbeat.stop()
            finally:
                del self._words, self._data, self._times, self._slots, self._signal
                self.segment.close()
            logger.info("shared stream %r closed after %d samples", self.name, self.n_written)
