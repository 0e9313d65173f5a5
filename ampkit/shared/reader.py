"""The reading side of a shared stream: :func:`attach` and :class:`SharedReader`.

A reader has two faces on the same stream:

* dareplane-utils' ``StreamWatcher`` (as :class:`ampkit.buffer.AmpWatcher`):
  :meth:`~SharedReader.update` copies what is new into a local ring buffer,
  read through ``buffer``, ``buffer_t``, ``curr_i``, ``n_new``,
  ``unfold_buffer()``, ``get_last``/``get_last_s``, with the markers in
  ``marker_buffer``; between two ``update()`` calls nothing changes;
* rdaclient's ``Client``: samples by absolute index straight from shared
  memory -- ``last_sample``, ``get_data(start, end)`` (a read-only view where
  it can, None for samples not written yet or already overwritten),
  ``wait(start, end, timeout)`` and ``poll(n, timeout)``.
"""

from __future__ import annotations

import logging
import numbers
import time
from typing import Any

import numpy as np

from ampkit.buffer import AmpWatcher, RingBuffer, _Watcher
from ampkit.checks import check_positive_int
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    StateError,
    StreamEndedError,
)
from ampkit.logthrottle import LogThrottle
from ampkit.shared.segment import (
    CLAIMED,
    HUNG_AFTER,
    M_CLAIMED,
    M_WRITTEN,
    RUNNING,
    STALE_AFTER,
    STATE,
    WRITTEN,
    Segment,
    check_name,
    fence,
    open_segment,
)
from ampkit.shared.waiting import waiter_for

__all__ = ["attach", "SharedReader"]

logger = logging.getLogger("ampkit")

_NS = 1_000_000_000


def _check_timeout(name: str, value: object) -> float:
    if type(value) is float and value >= 0:  # the common case, without the ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _check_index(name: str, value: object) -> int:
    if type(value) is int:  # the common case, without the ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigurationError(f"{name} must be an integer sample index, got {value!r}")
    return int(value)


def attach(
    name: str,
    timeout: float = 5.0,
    *,
    buffer_size_s: float = 2.0,
    view_s: float = 0.0,
    marker_buffer_size: int = 1024,
    logger: logging.Logger = logger,
) -> SharedReader:
    """Attach to the shared stream ``name`` from any process of this machine.

    Parameters
    ----------
    name : str
        The stream's name, as given to ``start(share=...)``, ``--share`` or
        :class:`~ampkit.shared.SharedWriter`.
    timeout : float
        Seconds to wait for a live writer of that name (0: look once).
    buffer_size_s : float
        Seconds kept by the StreamWatcher face's local buffer (``update()``).
    view_s : float
        Reads of up to this many seconds from the local buffer are views
        (see :class:`ampkit.buffer.StreamWatcher`).
    marker_buffer_size : int
        Markers kept by the local marker buffer.
    logger : logging.Logger
        Where to log.

    Returns
    -------
    SharedReader

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        No live writer of that name within ``timeout`` (the message says
        whether a segment of a dead writer is in the way).
    ampkit.errors.ProtocolError
        The name is taken by a segment that is not an ampkit stream, or by
        one of another ampkit layout version.
    ampkit.errors.ConfigurationError
        A bad name or value.

    Examples
    --------
    >>> import ampkit
    >>> eeg = ampkit.attach("eeg", timeout=10)              # doctest: +SKIP
    >>> i = eeg.last_sample                                 # doctest: +SKIP
    >>> window = eeg.wait(i, i + 500, timeout=2)            # doctest: +SKIP
    """
    check_name(name)
    timeout = _check_timeout("timeout", timeout)
    deadline = time.monotonic() + timeout
    stale: int | None = None
    while True:
        try:
            segment = open_segment(name)
        except FileNotFoundError:
            segment = None
        if segment is not None:
            if segment.in_use():
                return SharedReader(
                    segment, name, buffer_size_s, logger, view_s=view_s,
                    marker_buffer_size=marker_buffer_size,
                )
            stale = int(segment.header.pid)
            segment.close()
        if time.monotonic() >= deadline:
            why = (
                f"only the segment of process {stale}, which is gone, is there (its next "
                "writer reclaims it)" if stale is not None else "it does not exist"
            )
            raise AmpNotAvailableError(
                f"no live shared stream {name!r} within {timeout:g} s: {why}; start the "
                f"writer with start(share={name!r}) or ampkit record --share {name}"
            )
        time.sleep(0.02)


class SharedReader(_Watcher):
    """A reader of a shared stream (made by :func:`attach`).

    Any number of readers, in any processes, read one writer's ring without
    ever slowing it down. Reads are checked against the writer's counters
    (see :mod:`ampkit.shared`): a reader never gets a half-written sample or
    one not committed yet, and knows what it missed.

    Attributes
    ----------
    name : str
        The stream's name.
    source : str
        What writes it (the amp's name).
    channel_names : list of str
    units : list of str
    fs : float
        Sampling rate, Hz.
    buffer_size : int
        Samples the shared ring holds (rdaclient's name); ``get_data`` reaches
        back this far.
    buffer_window : int
        Longest window ``get_data`` returns as a view where it wraps
        (rdaclient's "pocket").
    data_dtype : str
        The samples' type, e.g. ``'float32'``.
    buffer, buffer_t, curr_i, last_t, ring_buffer, n_new, samples, times
        The StreamWatcher face, as in :class:`ampkit.buffer.AmpWatcher`:
        the local buffer, filled by :meth:`update` (created at the first use).
    marker_buffer : ampkit.buffer.RingBuffer
        Markers received by :meth:`update`: rows ``[text]``, ``buffer_t``
        their times.
    n_new_markers : int
        Markers received since you last set it to 0.
    n_overrun : int
        Samples :meth:`update` did not deliver: the writer had overwritten
        them (the reader fell more than ``buffer_size`` samples behind), or
        more came since the last call than the local buffer holds (only the
        newest that fit are copied).
    markers_overrun : int
        Markers lost the same way.
    """

    def __init__(
        self,
        segment: Segment,
        name: str,
        buffer_size_s: float = 2.0,
        logger: logging.Logger = logger,
        *,
        view_s: float = 0.0,
        marker_buffer_size: int = 1024,
    ) -> None:
        super().__init__(name, buffer_size_s, logger, view_s)
        self.marker_buffer_size = check_positive_int("marker_buffer_size", marker_buffer_size)
        self._attach(segment)

    def _attach(self, segment: Segment) -> None:
        self.segment = segment
        meta = segment.meta
        self.source = str(meta.get("source", ""))
        self.channel_names = [str(c) for c in meta.get("channels", [])]
        if len(self.channel_names) != segment.n_channels:
            self.channel_names = [f"ch_{i + 1}" for i in range(segment.n_channels)]
        self.units = [str(u) for u in meta.get("units", [])]
        self.fs = segment.fs
        self.buffer_size = segment.n_rows
        self.buffer_window = segment.view_rows
        self.data_dtype = segment.dtype.name
        self._words = segment.words
        self._data = segment.data
        self._times = segment.times
        self._slots = segment.markers
        self._R = segment.n_rows
        self._P = segment.view_rows
        self._local: RingBuffer | None = None
        self.marker_buffer = RingBuffer((self.marker_buffer_size, 1), dtype=object)
        self.samples = np.empty((0, segment.n_channels), dtype=segment.dtype)
        self.times = np.empty(0, dtype=np.float64)
        self.n_new = 0
        self.n_new_markers = 0
        self.n_overrun = 0
        self.markers_overrun = 0
        # update() delivers what comes after attaching, as an LSL inlet does;
        # get_data() reaches everything still in the ring.
        self._next = self._words[WRITTEN]
        self._mnext = self._words[M_WRITTEN]
        self._warn_overrun = LogThrottle(self.logger)
        self._waiter = waiter_for(segment)
        self.connected = True

    def __repr__(self) -> str:
        state = "attached" if self.connected else "closed"
        return (
            f"SharedReader({self.name!r}, {len(self.channel_names)} ch at {self.fs:g} Hz, "
            f"{state})"
        )

    # The local buffer exists from the first use of the StreamWatcher face
    # on: a reader that only uses get_data() does not pay for it.
    @property
    def ring_buffer(self) -> RingBuffer | None:  # type: ignore[override]
        """The local buffer :meth:`update` fills (a :class:`~ampkit.buffer.RingBuffer`)."""
        if self._local is None and getattr(self, "connected", False):
            self._local = self._new_ring(self.fs, len(self.channel_names), self.segment.dtype)
        return self._local

    @ring_buffer.setter
    def ring_buffer(self, value: RingBuffer | None) -> None:
        self._local = value

    # -- the writer's health ---------------------------------------------

    def _check_writer(self) -> None:
        """Raise if the writer stopped or is gone."""
        words = self._words
        if words[STATE] != RUNNING:
            raise StreamEndedError(
                f"shared stream {self.name!r}: the writer ({self.source}) stopped after "
                f"{words[WRITTEN]} samples"
            )
        age = self.segment.heartbeat_age()
        if age > STALE_AFTER and (age > HUNG_AFTER or not self.segment.writer_alive()):
            what = "is gone" if age <= HUNG_AFTER else "has not answered"
            raise ConnectionLostError(
                f"shared stream {self.name!r}: the writer ({self.source}, process "
                f"{self.segment.header.pid}) {what} for {age:.1f} s; attach again when "
                "it runs again"
            )

    @property
    def is_streaming(self) -> bool:
        """Whether the writer runs (rdaclient's name)."""
        if not self.connected:
            return False
        try:
            self._check_writer()
        except ConnectionLostError:
            return False
        return True

    def _live(self) -> None:
        if not self.connected:
            raise StateError(f"shared stream {self.name!r}: the reader was closed")

    # -- StreamWatcher face ------------------------------------------------

    def update(self) -> None:
        """Copy every sample and marker written since the last call into the
        local buffers.

        Does not wait. ``n_new`` grows by the samples delivered, ``samples``
        and ``times`` are those samples (a fresh array).

        Raises
        ------
        ampkit.errors.StreamEndedError
            Nothing new and the writer stopped (every sample it wrote was
            delivered).
        ampkit.errors.ConnectionLostError
            Nothing new and the writer is gone (killed).
        ampkit.errors.StateError
            The reader was closed.
        """
        self._live()
        words = self._words
        self._update_markers()
        end = words[WRITTEN]
        nxt = self._next
        if end == nxt:
            self._check_writer()
            return
        fence()
        size = self._R
        local = self.ring_buffer
        # No more than the local buffer holds: older samples would only be
        # copied to be dropped (counted with the overwritten ones).
        start = max(nxt, end - size, end - local.size)  # type: ignore[union-attr]
        data = self._copy(self._data, start, end)
        times = self._copy(self._times, start, end)
        fence()
        valid = max(start, words[CLAIMED] - size)
        if valid > start:
            data, times = data[valid - start :], times[valid - start :]
        self._next = end
        if valid > nxt:
            self.n_overrun += valid - nxt
            self._warn_overrun(
                "shared stream %r: the reader fell behind and lost %d samples (%d in all); "
                "call update() more often, or share more seconds / keep a longer "
                "buffer_size_s", self.name, valid - nxt, self.n_overrun,
            )
        if len(times):
            local.add_samples(data, times)  # type: ignore[union-attr]
            self.samples, self.times = data, times
            self.n_new += len(times)

    def _copy(self, ring: np.ndarray, start: int, end: int) -> np.ndarray:
        """A copy of samples ``start .. end`` (at most ``buffer_size``)."""
        size = self._R
        i = start % size
        j = i + end - start
        if j <= size + self._P:
            return ring[i:j].copy()
        return np.concatenate((ring[i:size], ring[: j - size]))

    def _update_markers(self) -> None:
        words = self._words
        end = words[M_WRITTEN]
        nxt = self._mnext
        if end == nxt:
            return
        fence()
        n_slots = len(self._slots)
        start = max(nxt, end - n_slots)
        slots = self._marker_slots(start, end)
        fence()
        valid = max(start, words[M_CLAIMED] - n_slots)
        slots = slots[valid - start :]
        self._mnext = end
        if valid > nxt:
            self.markers_overrun += valid - nxt
            self._warn_overrun(
                "shared stream %r: the reader fell behind and lost %d markers",
                self.name, valid - nxt,
            )
        if len(slots):
            texts = np.empty((len(slots), 1), dtype=object)
            texts[:, 0] = [_text(s) for s in slots]
            self.marker_buffer.add_samples(texts, slots["time"].copy())
            self.n_new_markers += len(slots)

    def _marker_slots(self, start: int, end: int) -> np.ndarray:
        n_slots = len(self._slots)
        i, j = start % n_slots, start % n_slots + end - start
        if j <= n_slots:
            return self._slots[i:j].copy()
        return np.concatenate((self._slots[i:], self._slots[: j - n_slots]))

    #: The markers in the local marker buffer, oldest first: ``get_markers(since=None)``
    #: returns ``(time_s, text)`` pairs (see :meth:`ampkit.buffer.AmpWatcher.get_markers`).
    get_markers = AmpWatcher.get_markers

    def connect_to_stream(self, identifier: Any = None, timeout: float = 5.0) -> None:
        """Attach again, to the stream ``identifier`` (a name) or the same name:
        after its writer was restarted, for instance. The local buffers start
        empty.

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            As :func:`attach`.
        """
        name = self.name if identifier is None else check_name(identifier)
        fresh = attach(name, timeout, buffer_size_s=self.buffer_size_s, view_s=self.view_s,
                       marker_buffer_size=self.marker_buffer_size, logger=self.logger)
        segment = fresh.segment
        fresh.connected = False  # the segment changes hands; fresh is dropped
        if self.connected:
            self.disconnect()
        self.name = name
        self._attach(segment)

    # -- rdaclient face ----------------------------------------------------

    @property
    def last_sample(self) -> int:
        """Samples written so far: the index one past the newest (rdaclient's name)."""
        return self._words[WRITTEN]

    def get_data(self, sampleStart: int, sampleEnd: int, copy: bool = False) -> np.ndarray | None:  # noqa: N803 - rdaclient's names
        """Samples ``sampleStart`` (included) to ``sampleEnd`` (excluded), by
        absolute index (the first sample the writer wrote is 0).

        Parameters
        ----------
        sampleStart, sampleEnd : int
            The window.
        copy : bool
            Return a copy, checked after copying (see Returns).

        Returns
        -------
        ndarray, shape (sampleEnd - sampleStart, n_channels), or None
            None when a sample of the window is not written yet, or was
            already overwritten (or ``sampleStart`` is negative), as
            rdaclient. By default a read-only *view* of the shared ring
            (no copy) when the window is contiguous there (or wraps by at
            most ``buffer_window`` samples), a copy otherwise. A view is
            whole when returned and stays valid until the writer comes round
            again, ``buffer_size - (last_sample - sampleStart)`` samples
            later; with ``copy=True`` the copy is checked to be whole after
            it was taken.

        Raises
        ------
        ampkit.errors.ConfigurationError
            Not integers, or ``sampleEnd < sampleStart``.
        """
        self._live()
        return self._get(self._data, sampleStart, sampleEnd, copy)

    def get_timestamps(
        self, sampleStart: int, sampleEnd: int, copy: bool = False  # noqa: N803
    ) -> np.ndarray | None:
        """Timestamps (seconds on :func:`ampkit.clock.local_clock`) of the samples
        ``sampleStart .. sampleEnd``; same rules as :meth:`get_data`."""
        self._live()
        return self._get(self._times, sampleStart, sampleEnd, copy)

    def _get(self, ring: np.ndarray, start: Any, end: Any, copy: bool) -> np.ndarray | None:
        start = _check_index("sampleStart", start)
        end = _check_index("sampleEnd", end)
        if end < start:
            raise ConfigurationError(f"get_data({start}, {end}): the end is before the start")
        size = self._R
        if start < 0 or end - start > size or end > self._words[WRITTEN]:
            return None
        fence()
        i = start % size
        j = i + end - start
        if j <= size + self._P:
            out = ring[i:j].copy() if copy else ring[i:j]
        else:
            out = np.concatenate((ring[i:size], ring[: j - size]))
        fence()
        if start < self._words[CLAIMED] - size:
            return None  # (being) overwritten
        return out

    def get_markers_in(self, sampleStart: int, sampleEnd: int) -> list[tuple[int, float, str]]:  # noqa: N803
        """Markers on samples ``sampleStart .. sampleEnd`` (by absolute index)
        still in the shared marker ring.

        Every marker written with a sample is visible once the sample is.

        Returns
        -------
        list of (int, float, str)
            ``(sample_index, time_s, text)``, in the order written.
        """
        self._live()
        start = _check_index("sampleStart", sampleStart)
        end = _check_index("sampleEnd", sampleEnd)
        words = self._words
        m_end = words[M_WRITTEN]
        fence()
        n_slots = len(self._slots)
        m_start = max(0, m_end - n_slots)
        indices = self._marker_slots(m_start, m_end)["index"] if m_end else np.empty(0, int)
        hits = np.flatnonzero((indices >= start) & (indices < end))
        picked = [(m_start + int(k), self._slots[(m_start + int(k)) % n_slots].copy())
                  for k in hits]
        fence()
        oldest = words[M_CLAIMED] - n_slots
        return [(int(s["index"]), float(s["time"]), _text(s)) for k, s in picked if k >= oldest]

    def wait(
        self,
        sampleStart: int,  # noqa: N803
        sampleEnd: int,  # noqa: N803
        timeout: float = 1.0,
        sleep: float | None = None,
    ) -> np.ndarray | None:
        """:meth:`get_data` once the window is written, waiting up to ``timeout``.

        Parameters
        ----------
        sampleStart, sampleEnd : int
            The window.
        timeout : float
            Seconds to wait at most.
        sleep : float, optional
            Seconds between two looks (rdaclient's parameter). By default the
            reader sleeps until the writer's next commit wakes it (a futex;
            see :mod:`ampkit.shared.waiting`): no looks, no latency added by
            an interval.

        Returns
        -------
        ndarray or None
            The window (a view, as :meth:`get_data`); None when ``timeout``
            passed, or the window was overwritten (or can never be whole:
            longer than ``buffer_size``, negative start).

        Raises
        ------
        ampkit.errors.StreamEndedError
            The writer stopped before writing the window.
        ampkit.errors.ConnectionLostError
            The writer is gone (killed): noticed within a second.
        """
        timeout = _check_timeout("timeout", timeout)
        if sleep is not None:
            sleep = _check_timeout("sleep", sleep)
        data = self.get_data(sampleStart, sampleEnd)
        if data is not None:
            return data
        if sampleStart < 0 or sampleEnd - sampleStart > self._R:
            return None
        deadline = time.monotonic_ns() + int(timeout * _NS)
        words = self._words
        waiter = self._waiter
        if sleep is not None:
            while True:
                if sampleEnd <= words[WRITTEN]:
                    return self.get_data(sampleStart, sampleEnd)  # None if overwritten
                self._check_writer()
                if time.monotonic_ns() >= deadline:
                    return None
                time.sleep(sleep)
        self._check_writer()
        waiter.count_in()  # once per reader: counted until it closes
        written = words[WRITTEN]
        while sampleEnd > written:
            now = time.monotonic_ns()
            if now >= deadline:
                return None
            waiter.pause(written, deadline - now)
            new = words[WRITTEN]
            if new == written:  # no commit woke it: the writer may have stopped or died
                self._check_writer()
            written = new
        return self.get_data(sampleStart, sampleEnd)  # None if overwritten

    def poll(
        self, nSamples: int, timeout: float = 10.0, sleep: float | None = None  # noqa: N803
    ) -> np.ndarray | None:
        """Wait for the next sample, then return the newest ``nSamples``
        (rdaclient's ``poll``).

        Returns
        -------
        ndarray or None
            As :meth:`get_data`; None when nothing new came within
            ``timeout`` or fewer than ``nSamples`` were written.

        Raises
        ------
        ampkit.errors.StreamEndedError, ampkit.errors.ConnectionLostError
            As :meth:`wait`.
        """
        n = _check_index("nSamples", nSamples)
        last = self.last_sample
        if self.wait(last, last + 1, timeout, sleep) is None:
            return None
        last = self.last_sample
        return self.get_data(last - n, last)

    # -- life cycle --------------------------------------------------------

    def disconnect(self) -> None:
        """Detach from the shared stream; the local buffers stay readable.
        Views returned by :meth:`get_data` keep the memory mapped while they
        live. Safe to call twice."""
        if not self.connected:
            return
        self.connected = False
        self._waiter.close()
        del self._words, self._data, self._times, self._slots, self._waiter
        self.segment.close()


def _text(slot: Any) -> str:
    return bytes(slot["text"][: int(slot["length"])]).decode("utf-8", "replace")

