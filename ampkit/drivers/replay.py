"""The ``replay`` driver (libmushu's ``replayamp``): play back recorded data.

Configured with an array and its markers, or with a recording file
(``configure(filename='session1')``, any format :func:`ampkit.io.read`
reads), it hands the data out in blocks of a fixed size, in real time (a
block whenever its duration has passed) or as fast as it is asked (one block
per ``get_data()``). Markers come out in the block they fall in, with times
relative to that block, as libmushu's did. A marker after the last sample
has no block: it is dropped when configured, with a warning.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ampkit.amplifier import Amplifier, Marker
from ampkit.checks import check_positive_int, check_positive_number
from ampkit.errors import ConfigurationError, RecordingError, StateError
from ampkit.io import read
from ampkit.pacing import Pacer

__all__ = ["ReplayAmp"]

logger = logging.getLogger("ampkit")


def _finite_rate(fs: object) -> bool:
    # A rate of inf (an XDF nominal_srate of 1e400), or one whose period is
    # inf, would overflow wherever samples are counted from time.
    try:
        return 0 < fs < math.inf and 1.0 / fs < math.inf  # type: ignore[operator]
    except TypeError:
        return False


class ReplayAmp(Amplifier):
    """Replay an array of samples and its markers.

    Examples
    --------
    >>> import numpy as np, ampkit
    >>> amp = ampkit.get_amp('replayamp')
    >>> amp.configure(data=np.zeros((1000, 2)), marker=[(500.0, 'S 1')],
    ...               channels=['C3', 'C4'], fs=100, realtime=False,
    ...               blocksize_samples=10)
    """

    def __init__(self) -> None:
        self.running = False
        self.data: np.ndarray | None = None
        self.finished = False
        self._timestamps: np.ndarray | None = None

    def configure(
        self,
        data: Any = None,
        marker: Sequence[tuple[float, str]] = (),
        channels: Sequence[str] | None = None,
        fs: float | None = None,
        realtime: bool = True,
        blocksize_ms: float | None = None,
        blocksize_samples: int | None = None,
        filename: str | os.PathLike | None = None,
    ) -> None:
        """Set what to replay and how.

        Parameters
        ----------
        data : array_like, shape (n_samples, n_channels)
            The samples.
        marker : sequence of (float, str)
            ``(ms since the first sample, text)``.
        channels : sequence of str
            Channel names, one per column of ``data``.
        fs : float
            Sampling frequency in Hz.
        realtime : bool
            Pace blocks at ``fs`` (True) or return one block per call (False).
        blocksize_ms, blocksize_samples : float or int
            The block size; exactly one of the two must be given, and
            ``blocksize_ms`` must be a whole number of samples. With
            ``filename``, both may be left out: blocks of 10 ms.
        filename : str or path, optional
            Replay this recording (read with :func:`ampkit.io.read`): its
            data, channels, rate, units and markers, each marker at its
            sample. Replaces ``data``, ``marker``, ``channels`` and ``fs``.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A missing or inconsistent value.
        """
        if self.running:
            raise StateError("configure() while running")
        units = None
        if filename is not None:
            if data is not None or channels is not None or fs is not None or marker:
                raise ConfigurationError("give filename or data/marker/channels/fs, not both")
            try:
                rec = read(filename)
            except RecordingError as exc:
                raise ConfigurationError(f"replay: {exc}") from exc
            data, channels, fs, units = rec.data, rec.channels, rec.fs, rec.units
            if not _finite_rate(fs):
                raise ConfigurationError(
                    f"replay: {os.fspath(filename)}: the file's sampling rate {fs!r} Hz is "
                    "not a positive finite number; the file is damaged or was written wrong"
                )
            # A hair before the sample's time, so the decorator's "first sample
            # at or after" lands on that very sample despite rounding.
            marker = [(s * 1000.0 / fs - 1e-6, text) for s, _, text in rec.markers]
            if blocksize_ms is None and blocksize_samples is None:
                blocksize_samples = max(1, round(fs / 100.0))
        if data is None or channels is None or fs is None:
            raise ConfigurationError("replay needs data, channels and fs")
        if [blocksize_ms, blocksize_samples].count(None) != 1:
            raise ConfigurationError(
                "give exactly one of blocksize_ms and blocksize_samples"
            )
        fs = check_positive_number("fs", fs)
        if not _finite_rate(fs):
            raise ConfigurationError(f"fs must be a positive finite number, got {fs!r}")
        arr = np.asarray(data, dtype=np.float32)
        if arr.ndim != 2:
            raise ConfigurationError(f"data must be 2-D (time, channels), got shape {arr.shape}")
        channels = [str(c) for c in channels]
        if arr.shape[1] != len(channels):
            raise ConfigurationError(
                f"data has {arr.shape[1]} columns but {len(channels)} channel names were given"
            )
        if blocksize_ms is not None:
            samples = check_positive_number("blocksize_ms", blocksize_ms) * fs / 1000.0
            if abs(samples - round(samples)) > 1e-9:
                raise ConfigurationError(
                    f"blocksize_ms={blocksize_ms} is {samples} samples at {fs} Hz, "
                    "not a whole number"
                )
            blocksize = int(round(samples))
        else:
            blocksize = check_positive_int("blocksize_samples", blocksize_samples)
        try:
            markers = sorted(((float(ms), str(text)) for ms, text in marker), key=lambda m: m[0])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"markers must be (ms, text) pairs: {exc}") from None
        last_ms = (len(arr) - 1) * 1000.0 / fs
        past = [text for ms, text in markers if not ms <= last_ms]
        if past:
            logger.warning("replay: %d marker(s) after the last sample (%.6g ms) dropped: %s",
                           len(past), last_ms, ", ".join(repr(t) for t in past[:3])
                           + (", ..." if len(past) > 3 else ""))
            markers = [(ms, text) for ms, text in markers if ms <= last_ms]
        self.data = np.ascontiguousarray(arr)
        self.markers = markers
        self._marker_ms = np.array([ms for ms, _ in markers], dtype=np.float64)
        self.channels = channels
        self.units = list(units) if units is not None else None
        self.fs = fs
        self.realtime = bool(realtime)
        self.blocksize = blocksize

    def start(self) -> None:
        """Start replaying from the first sample."""
        if self.data is None:
            raise StateError("configure() the replay before start()")
        self.pos = 0
        self._next_marker = 0
        self.finished = False
        self._pacer = Pacer(self.fs)
        self._pacer.start()
        self.running = True

    def stop(self) -> None:
        """Stop replaying."""
        self.running = False

    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Return the next block(s) and the markers that fall in them.

        After the end of the data, blocks are empty and ``finished`` is true.
        """
        if not self.running:
            raise StateError("get_data() before start()")
        assert self.data is not None
        if self.realtime:
            n = self._pacer.due(multiple=self.blocksize)
        else:
            n = self.blocksize
        start = self.pos
        stop = min(start + n, len(self.data))
        self.pos = stop
        self.finished = stop >= len(self.data)
        chunk = self.data[start:stop]
        offset = start * 1000.0 / self.fs
        if self.finished:  # (none is after the last sample: see configure)
            hi = len(self.markers)
        else:
            hi = int(np.searchsorted(self._marker_ms, stop * 1000.0 / self.fs))
        markers = [(ms - offset, text) for ms, text in self.markers[self._next_marker : hi]]
        self._timestamps = self._pacer.t0 + (start + 1 + np.arange(stop - start)) / self.fs
        self._next_marker = max(self._next_marker, hi)
        return chunk, markers

    def get_timestamps(self) -> np.ndarray | None:
        """Times of the last block's samples: sample *k* at ``start + (k + 1) / fs``.

        In real time these are when the samples became due; replaying as fast
        as asked, they keep the recording's spacing, so markers stay at their
        samples.
        """
        return self._timestamps

    def get_channels(self) -> list[str]:
        """The configured channel names."""
        return list(self.channels) if self.data is not None else []

    def get_sampling_frequency(self) -> float:
        """The configured rate in Hz."""
        return self.fs if self.data is not None else 0.0

    def get_units(self) -> list[str]:
        """The recording's units (``'µV'`` when replaying an array)."""
        units = getattr(self, "units", None)
        return list(units) if units is not None else super().get_units()

    @staticmethod
    def is_available() -> bool:
        """Always true: no hardware needed."""
        return True
