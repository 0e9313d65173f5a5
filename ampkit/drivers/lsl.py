"""The ``lsl`` driver (libmushu's ``lslamp``): any LSL stream as an amplifier.

:class:`LSLAmp` resolves a numeric LSL stream (by name, type and/or source
id, with a timeout), takes its channel labels and units from the stream
description and its rate from the nominal rate, and hands out its samples in
blocks pulled straight into numpy memory. Each sample keeps the stream's own
timestamp, translated to this machine's clock by LSL's time correction, and
the decorator uses those times instead of estimating them. An optional
second stream of strings (a marker stream) becomes ampkit markers at the
right samples.

Every call into pylsl goes through :mod:`ampkit.lsl` (finding streams,
labels, units, inlets, pulls), shared with :class:`ampkit.buffer.StreamWatcher`;
this module adds what makes a stream an amplifier: reconnecting, markers at
their samples, gaps, and real times for samples liblsl could not stamp.

Run anything that uses it with ``LSLAPICFG`` pointing at a liblsl
configuration fit for your network (see the LSL page of the documentation);
tests use ``tests/lsl-loopback.cfg``.
"""

from __future__ import annotations

import logging
import math
import numbers
import socket
import time
from typing import Any

import numpy as np

from ampkit.amplifier import Amplifier, Marker
from ampkit.block import GAP_MARKER
from ampkit.checks import check_positive_int, check_positive_number
from ampkit.clock import local_clock
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    StateError,
)
from ampkit.lsl import (
    ChunkPuller,
    StreamFinder,
    channel_labels,
    channel_units,
    find_streams,
    full_info,
    lsl_predicate,
    marker_stream_name,
    open_inlet,
    open_stream,
    pull_values,
    resolve_streams,
    sample_dtype,
)
from ampkit.timestamps import default_gap_threshold

__all__ = ["LSLAmp", "stamp_unanchored"]

logger = logging.getLogger("ampkit")

# Seconds without samples after which a reconnecting amp says it is waiting.
_SILENCE_WARNING = 2.0

# Many LSL outlets stamp each push with the time it was pushed (pylsl's
# default), so a stream's own times jitter with its producer's scheduling: a
# step between two samples shorter than this is not taken for a loss.
_STAMP_JITTER = 0.25

# A sample stamped this long before its subscription began has no real time.
_IMPLAUSIBLE = 10.0


def stamp_unanchored(
    stamps: np.ndarray, floor: float, period: float, next_estimate: float | None
) -> tuple[int, float | None]:
    """Give times to samples that liblsl could not stamp (in place).

    An LSL outlet sends most samples of a chunk without a time (*deduced*:
    the previous sample's time plus one period). An inlet that subscribes in
    the middle of a chunk has no previous time and deduces from zero, so its
    first samples come with times near 0. Those (times before ``floor``) are
    stamped backwards from the first sample with a real time at ``period``
    spacing; when the block has none, they continue ``next_estimate``, or end
    now.

    Parameters
    ----------
    stamps : ndarray of float64
        Times of one block, changed in place.
    floor : float
        Times before this are not real (subscription time less a margin).
    period : float
        Seconds per sample.
    next_estimate : float or None
        Time of the next sample when earlier blocks were estimated.

    Returns
    -------
    n_fixed : int
        Samples given a time.
    next_estimate : float or None
        None once a real time was found (later samples are stamped by liblsl
        from it), else the time of the next sample.

    Examples
    --------
    >>> ts = np.array([0.001, 0.002, 100.0, 100.001])
    >>> stamp_unanchored(ts, 90.0, 0.001, None)
    (2, None)
    >>> ts
    array([ 99.998,  99.999, 100.   , 100.001])
    """
    n = len(stamps)
    good = np.flatnonzero(stamps >= floor)
    j = int(good[0]) if len(good) else n
    if j == 0:
        return 0, None
    if len(good):
        stamps[:j] = stamps[j] - (j - np.arange(j)) * period
        return j, None
    start = next_estimate if next_estimate is not None else local_clock() - (n - 1) * period
    stamps[:] = start + np.arange(n) * period
    return n, float(stamps[-1] + period)


class _Source:
    """One stream an LSLAmp reads: its inlet, and its way back after a loss.

    Inlets are made with liblsl's own recovery off: a recovering liblsl
    inlet blocks ``pull_chunk`` for as long as the stream is away, whatever
    the timeout. Instead, a lost stream is searched for again in the
    background (:class:`ampkit.lsl.StreamFinder`, by name, type and source
    id) and re-subscribed when it reappears.
    """

    def __init__(self, found: Any, what: str, clocksync: bool | None) -> None:
        self.what = what
        self.name = found.name()
        self.uid = found.uid()
        self.channel_count = found.channel_count()
        self.predicate = lsl_predicate(
            name=found.name(), type=found.type() or None, source_id=found.source_id() or None
        )
        self.clocksync = clocksync
        self.synced = False
        self.inlet: Any = self._make(found)
        self._finder: StreamFinder | None = None
        self._next_try = 0.0

    def _make(self, found: Any) -> Any:
        sync = self.clocksync
        if sync is None:
            # A stream from this computer is already on this clock.
            sync = found.hostname() != socket.gethostname()
        self.synced = bool(sync)
        return open_inlet(found, clocksync=self.synced)

    def subscribe(self, timeout: float) -> None:
        open_stream(self.inlet, timeout, self.name, clocksync=self.synced)

    def reopen(self, timeout: float) -> None:
        """Find the stream again, now (for start() after a loss)."""
        found = resolve_streams(self.predicate, timeout, self.what)[0]
        self.inlet = self._make(found)
        self.uid = found.uid()
        self._finder = None

    def close_stream(self) -> None:
        if self.inlet is not None:
            self.inlet.close_stream()

    def lose(self) -> None:
        logger.warning("LSL %s %r lost; waiting for it to come back", self.what, self.name)
        self.inlet = None
        self._finder = StreamFinder(self.predicate, forget_after=2.0)
        self._next_try = 0.0

    def try_back(self, timeout: float) -> bool:
        """Re-subscribe if the stream is visible again (checked every 0.2 s)."""
        now = local_clock()
        if now < self._next_try:
            return False
        self._next_try = now + 0.2
        for found in self._finder.results():  # type: ignore[union-attr]
            if found.uid() == self.uid:
                continue  # the lost outlet, not yet forgotten by the resolver
            if found.channel_count() != self.channel_count:
                raise ConnectionLostError(
                    f"LSL {self.what} {self.name!r} came back with {found.channel_count()} "
                    f"channels instead of {self.channel_count}"
                )
            self.inlet = self._make(found)
            try:
                self.subscribe(timeout)
            except (AmpNotAvailableError, ConnectionLostError):
                self.inlet = None
                continue
            self.uid = found.uid()
            self._finder = None
            logger.warning("LSL %s %r is back", self.what, self.name)
            return True
        return False


class LSLAmp(Amplifier):
    """Read an LSL stream as an amplifier.

    Configure with :meth:`configure` (which resolves the stream, so channel
    names and rate are known before ``start()``); ``start()`` subscribes,
    ``get_data()`` returns what arrived since the last call, waiting up to
    ``wait`` seconds for the first sample, and ``stop()`` unsubscribes.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('lsl', name='BioSemi', marker_stream=True)  # doctest: +SKIP
    >>> amp.start()                                                    # doctest: +SKIP
    >>> block = amp.get_block()  # the stream's timestamps, markers  # doctest: +SKIP
    >>> amp.stop()                                                     # doctest: +SKIP
    """

    presets = [
        ["First EEG stream on the network", {"type": "EEG"}],
        ["libmushu's lslamp: first EEG stream, markers from the first Markers stream",
         {"type": "EEG", "marker_type": "Markers"}],
    ]

    def __init__(self) -> None:
        self.running = False
        self._data: _Source = None  # type: ignore[assignment]
        self._markers: _Source | None = None
        self._info: Any = None
        self._configured = False
        self._timestamps: np.ndarray | None = None
        self._settings: dict[str, Any] = {}
        self._set(None, "EEG", None, None, None, 5.0, None, False, None, 0.1, None)

    # -- configuration ---------------------------------------------------

    def _set(
        self, name, type, source_id, marker_stream, marker_type,  # noqa: A002
        timeout, irregular_fs, reconnect, max_samples, wait, clocksync,
    ) -> None:
        for key, value in (("name", name), ("type", type), ("source_id", source_id),
                           ("marker_type", marker_type)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{key} must be a non-empty string or None, got {value!r}")
        if not (marker_stream is None or marker_stream is True or marker_stream is False
                or (isinstance(marker_stream, str) and marker_stream)):
            raise ConfigurationError(
                f"marker_stream must be a stream name, True (<name>-markers) or None, "
                f"got {marker_stream!r}"
            )
        if marker_stream is True and name is None:
            raise ConfigurationError("marker_stream=True needs name= (it means '<name>-markers')")
        timeout = check_positive_number("timeout", timeout)
        if irregular_fs is not None:
            irregular_fs = check_positive_number("irregular_fs", irregular_fs)
        if max_samples is not None:
            max_samples = check_positive_int("max_samples", max_samples)
        if isinstance(wait, bool) or not isinstance(wait, numbers.Real) or not wait >= 0:
            raise ConfigurationError(f"wait must be a number >= 0, got {wait!r}")
        if clocksync not in (None, True, False):
            raise ConfigurationError(f"clocksync must be None, True or False, got {clocksync!r}")
        self._settings = {
            "name": name, "type": type, "source_id": source_id,
            "marker_stream": marker_stream or None, "marker_type": marker_type,
            "timeout": timeout,
            "irregular_fs": irregular_fs, "reconnect": bool(reconnect),
            "max_samples": max_samples, "wait": float(wait), "clocksync": clocksync,
        }

    def configure(
        self,
        name: str | None = None,
        type: str | None = "EEG",  # noqa: A002 - LSL's own word
        source_id: str | None = None,
        marker_stream: str | bool | None = None,
        marker_type: str | None = None,
        timeout: float = 5.0,
        irregular_fs: float | None = None,
        reconnect: bool = False,
        max_samples: int | None = None,
        wait: float = 0.1,
        clocksync: bool | None = None,
    ) -> None:
        """Choose the stream and resolve it.

        The first stream matching all of ``name``, ``type`` and ``source_id``
        (those that are not None) is used.

        Parameters
        ----------
        name : str, optional
            LSL stream name.
        type : str or None
            LSL content type (``'EEG'`` by default; None for any type).
        source_id : str, optional
            LSL source id.
        marker_stream : str or True, optional
            Name of a marker stream (strings, or numbers) whose samples become
            ampkit markers; ``True`` means ``'<name>-markers'``, the marker
            stream ampkit publishes beside a data stream.
        marker_type : str, optional
            Content type of the marker stream: the first stream of this type
            (and of name ``marker_stream`` if given) is used. libmushu's
            ``lslamp`` took the first stream of type ``'Markers'``
            (``marker_type='Markers'``, or the driver's second preset).
        timeout : float
            Seconds to search for each stream before giving up.
        irregular_fs : float, optional
            Streams without a nominal rate are refused unless this is given:
            the rate ampkit then reports for them (buffers and recordings need
            one). Sample times stay the stream's own.
        reconnect : bool
            If the stream vanishes, wait for it to come back instead of
            raising :class:`~ampkit.errors.ConnectionLostError`: it is
            searched for by name, type and source id, and re-subscribed when
            it reappears; meanwhile ``get_data()`` returns empty blocks, and
            the first block after the return carries a gap marker.
        max_samples : int, optional
            Most samples one ``get_data()`` returns (default: one second of
            data, at least 1024).
        wait : float
            Seconds ``get_data()`` waits for a first sample before returning
            an empty block.
        clocksync : bool or None
            Translate the stream's timestamps to this machine's clock with
            LSL's time correction. None (default): for streams from other
            computers only -- a stream from this computer is already on
            this clock, and its exact timestamps are kept (the correction
            would add tens of microseconds of estimation noise).

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            No matching stream within ``timeout``; the message says what was
            searched for.
        ampkit.errors.ConfigurationError
            A bad value; a string stream as data stream; an irregular stream
            without ``irregular_fs``.
        ampkit.errors.StateError
            Called while running.
        """
        if self.running:
            raise StateError("configure() while running: call stop() first")
        self._set(name, type, source_id, marker_stream, marker_type, timeout, irregular_fs,
                  reconnect, max_samples, wait, clocksync)
        self._configured = False
        self._open_inlets()

    def _open_inlets(self) -> None:
        s = self._settings
        self._release()
        predicate = lsl_predicate(name=s["name"], type=s["type"], source_id=s["source_id"])
        found = resolve_streams(predicate, s["timeout"], "stream")[0]
        if sample_dtype(found) in (None, object):
            raise ConfigurationError(
                f"LSL stream {found.name()!r} carries strings, not samples; "
                f"read it as marker_stream={found.name()!r} beside a numeric stream"
            )
        if not found.nominal_srate() > 0 and s["irregular_fs"] is None:
            raise ConfigurationError(
                f"LSL stream {found.name()!r} has an irregular rate; pass irregular_fs=<Hz> "
                "(the rate to report for buffers and recordings) to read it anyway"
            )
        source = _Source(found, "stream", s["clocksync"])
        info = full_info(source.inlet, s["timeout"], found.name())
        self._data = source
        self._info = info
        self.stream_name = info.name()
        self.fs = info.nominal_srate() or s["irregular_fs"]
        self.regular = info.nominal_srate() > 0
        self._gap = default_gap_threshold(self.fs, floor=_STAMP_JITTER)
        self.channels = channel_labels(info)
        self.units = channel_units(info)
        n_ch = info.channel_count()
        cap = s["max_samples"] or max(1024, math.ceil(self.fs))
        self._puller = ChunkPuller(self.stream_name, n_ch, cap)

        marker = s["marker_stream"]
        if marker is True:
            marker = marker_stream_name(self.stream_name)
        self.marker_stream_name = None
        if marker is not None or s["marker_type"] is not None:
            mpredicate = lsl_predicate(name=marker, type=s["marker_type"])
            mfound = resolve_streams(mpredicate, s["timeout"], "marker stream")[0]
            self._markers = _Source(mfound, "marker stream", s["clocksync"])
            marker = self.marker_stream_name = mfound.name()
        self._configured = True
        logger.info(
            "LSL stream %r: %d channels at %g Hz from %s%s", self.stream_name, n_ch, self.fs,
            info.hostname(), f", markers from {marker!r}" if marker else "",
        )

    def _ensure(self) -> None:
        if not self._configured:
            self._open_inlets()

    # -- the contract ----------------------------------------------------

    def start(self) -> None:
        """Subscribe to the stream (and the marker stream).

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            The stream could not be opened within ``timeout``.
        ampkit.errors.ConnectionLostError
            The stream is gone since ``configure()``.
        """
        self._ensure()
        if self._data.inlet is None:  # lost during an earlier run: find it again
            self._open_inlets()
        timeout = self._settings["timeout"]
        sources = [self._data] + ([self._markers] if self._markers else [])
        try:
            for source in sources:
                if source.inlet is None:
                    source.reopen(timeout)
                source.subscribe(timeout)
        except (AmpNotAvailableError, ConnectionLostError):
            self._close_streams()
            raise
        self._pending: list[tuple[float, str]] = []
        self._last_ts: float | None = None
        self._last_data = local_clock()
        self._silent = False
        self._timestamps = None
        self._subscribed()
        self.running = True

    def _subscribed(self) -> None:
        """A new subscription: its first samples may lack real times."""
        self._floor: float | None = local_clock() - _IMPLAUSIBLE
        self._next_estimate: float | None = None

    def _close_streams(self) -> None:
        for source in (self._data, self._markers):
            if source is not None:
                source.close_stream()

    def stop(self) -> None:
        """Unsubscribe; samples still in flight are dropped."""
        self.running = False
        self._close_streams()

    def _read(self) -> int:
        """Fill the buffers with what has arrived (waiting ``wait`` for a first sample)."""
        source = self._data
        wait = self._settings["wait"]
        if source.inlet is None:
            if not source.try_back(self._settings["timeout"]):
                if wait:
                    time.sleep(min(wait, 0.2))
                return 0
            self._subscribed()
        try:
            return self._puller.pull(source.inlet, wait)
        except ConnectionLostError as exc:
            self._lost(source, exc)
            return 0

    def _lost(self, source: _Source, exc: ConnectionLostError) -> None:
        if not self._settings["reconnect"]:
            raise ConnectionLostError(
                f"{exc}; configure(reconnect=True) waits for it to come back"
            ) from None
        source.lose()

    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Return the samples that arrived since the last call, and their markers.

        Waits up to ``wait`` seconds for a first sample, then takes every
        sample already there (up to ``max_samples``).

        Raises
        ------
        ampkit.errors.StateError
            Not started.
        ampkit.errors.ConnectionLostError
            The stream vanished (and ``reconnect`` is off).
        """
        if not self.running:
            raise StateError("get_data() before start()")
        data, stamps = self._puller.take(self._read())
        n = len(stamps)
        if n and self._floor is not None:
            fixed, self._next_estimate = stamp_unanchored(
                stamps, self._floor, 1.0 / self.fs, self._next_estimate
            )
            if self._next_estimate is None:
                self._floor = None  # real times from here on
            if fixed:
                logger.info(
                    "LSL stream %r: %d samples at the start of the subscription had no time "
                    "base (subscribed mid-chunk); stamped %s", self.stream_name, fixed,
                    "estimated" if self._floor is not None else "from the first stamped sample",
                )
        self._timestamps = stamps
        if self._markers is not None:
            self._pull_markers()
        markers: list[Marker] = []
        if n:
            self._last_data = local_clock()
            if self._silent:
                logger.warning("LSL stream %r: samples flow again", self.stream_name)
                self._silent = False
            t0 = float(stamps[0])
            if self.regular and self._last_ts is not None:
                step = t0 - self._last_ts
                if step > self._gap:
                    missing = max(1, round(step * self.fs) - 1)
                    logger.warning(
                        "LSL stream %r: about %d samples (%.3f s) missing before t=%.3f",
                        self.stream_name, missing, step, t0,
                    )
                    markers.append((0.0, GAP_MARKER.format(n=missing)))
            self._last_ts = float(stamps[-1])
            if self._pending:
                markers += [((t - t0) * 1000.0, text) for t, text in self._pending]
                self._pending = []
        elif self._pending and self._last_ts is not None:
            # An empty block's markers count from when its first sample is due
            # (the contract), so markers keep flowing when the samples stop.
            origin = self._last_ts + 1.0 / self.fs
            markers = [((t - origin) * 1000.0, text) for t, text in self._pending]
            self._pending = []
        if not n and not self._silent and local_clock() - self._last_data > _SILENCE_WARNING:
            self._silent = True
            logger.warning("no samples from LSL stream %r for %.0f s",
                           self.stream_name, _SILENCE_WARNING)
        return data, markers

    def _pull_markers(self) -> None:
        source = self._markers
        if source.inlet is None and not source.try_back(self._settings["timeout"]):
            return
        try:
            while True:
                samples, stamps = pull_values(source.inlet, 256, source.name)
                if not stamps:
                    return
                for sample, t in zip(samples, stamps, strict=True):
                    self._pending.append((float(t), _marker_text(sample)))
        except ConnectionLostError as exc:
            self._lost(source, exc)

    def get_timestamps(self) -> np.ndarray | None:
        """The stream's own times (time-corrected) of the last block's samples."""
        return self._timestamps

    def get_channels(self) -> list[str]:
        """Channel labels from the stream description (``Ch_<i>`` where missing)."""
        self._ensure()
        return list(self.channels)

    def get_units(self) -> list[str]:
        """Channel units from the stream description (``µV`` where missing)."""
        self._ensure()
        return list(self.units)

    def get_sampling_frequency(self) -> float:
        """The stream's nominal rate (``irregular_fs`` for irregular streams)."""
        self._ensure()
        return float(self.fs)

    @staticmethod
    def is_available() -> bool:
        """Whether any LSL stream is visible within half a second."""
        return bool(find_streams("", 0.5))

    def _release(self) -> None:
        # pylsl destroys inlets when their objects are collected.
        self._data: _Source = None  # type: ignore[assignment]
        self._markers: _Source | None = None
        self._configured = False

    def close(self) -> None:
        """Drop the inlets."""
        if self.running:
            self.stop()
        self._release()

    def __str__(self) -> str:
        name = getattr(self, "stream_name", None)
        return f"LSLAmp({name!r})" if name else "LSLAmp"


def _marker_text(sample: list[Any]) -> str:
    values = [
        str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in sample
    ]
    return values[0] if len(values) == 1 else "/".join(values)
