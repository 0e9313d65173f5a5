"""Per-sample timestamps for drivers that do not know their sample times.

:class:`SampleClock` turns "n samples arrived now" into one time per sample
on :func:`ampkit.clock.local_clock`, and notices when samples are missing.

The model: sample *k* of a gap-free run was taken at ``anchor + k / fs``. A
sample can never arrive before it was taken, so each block's arrival time
bounds the anchor from above; the anchor follows the lower envelope of
``arrival - k / fs`` (the block that arrived with the least delay). When a
block arrives much later than the model predicts, samples are missing: the
clock starts a new run at the late block and reports the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SampleClock", "Gap", "RecentStamps"]


@dataclass(frozen=True)
class Gap:
    """Samples missing before a block.

    Attributes
    ----------
    time : float
        Time of the first sample after the gap (``local_clock`` seconds).
    duration : float
        Seconds between the last sample before and the first sample after
        the gap, less one sample period.
    n_missing : int
        Estimated number of samples lost.
    """

    time: float
    duration: float
    n_missing: int


class SampleClock:
    """Estimate sample times from arrival times and a nominal rate.

    Parameters
    ----------
    fs : float
        Nominal sampling frequency in Hz.
    gap_threshold : float, optional
        Seconds a block may arrive later than predicted before the clock
        decides samples were lost. Defaults to ``max(0.25, 10 / fs)``.

    Examples
    --------
    >>> clock = SampleClock(100.0)
    >>> ts, gap = clock.stamp(5, arrival=10.0)
    >>> ts
    array([9.96, 9.97, 9.98, 9.99, 10.  ])
    """

    def __init__(self, fs: float, gap_threshold: float | None = None) -> None:
        if not fs > 0:
            raise ValueError(f"sampling frequency must be positive, got {fs!r}")
        self.fs = float(fs)
        self.period = 1.0 / self.fs
        self.gap_threshold = (
            max(0.25, 10.0 * self.period) if gap_threshold is None else gap_threshold
        )
        self._anchor: float | None = None
        self._count = 0  # samples stamped since the anchor
        self._last = -np.inf  # time of the newest sample stamped

    def stamp(self, n: int, arrival: float) -> tuple[np.ndarray, Gap | None]:
        """Return times for ``n`` samples whose newest arrived at ``arrival``.

        Parameters
        ----------
        n : int
            Number of samples in the block.
        arrival : float
            ``local_clock()`` when the block was received.

        Returns
        -------
        timestamps : ndarray of float64, shape (n,)
            Strictly increasing, continuing those of earlier blocks.
        gap : Gap or None
            Set when samples before this block appear to be missing.
        """
        if n == 0:
            return np.empty(0, np.float64), None
        gap = None
        if self._anchor is None:
            self._anchor = arrival - (n - 1) * self.period
        else:
            lateness = arrival - (self._anchor + (self._count + n - 1) * self.period)
            if lateness > self.gap_threshold:
                first = arrival - (n - 1) * self.period
                duration = first - self._last - self.period
                gap = Gap(first, duration, max(1, round(duration * self.fs)))
                self._anchor, self._count = first, 0
            elif lateness < 0:
                # Arrived before its predicted time: the model ran late.
                self._anchor += lateness
        # anchor + (count + k) * period, in place (this runs for every block)
        ts = np.arange(self._count, self._count + n, dtype=np.float64)
        ts *= self.period
        ts += self._anchor
        if ts[0] <= self._last:
            # The anchor moved back past the previous block: spread this
            # block evenly between the previous sample and its own newest
            # sample so times stay increasing.
            step = (ts[-1] - self._last) / n
            if step <= 0:  # arrival not after the previous sample: only rounding
                step = self.period * 1e-6
            ts = self._last + step * np.arange(1, n + 1)
        self._count += n
        self._last = float(ts[-1])
        return ts, gap


class RecentStamps:
    """The timestamps of the samples delivered in the last ``seconds``.

    A driver gives its markers in milliseconds from a block's first sample;
    turned back into an absolute time, a marker meant "on sample k" of an
    earlier block may come out a rounding error after that sample's time and
    would be placed on the next one. :meth:`snap` puts it back on the sample;
    :meth:`index_of` finds the sample of a marker that arrives late (the
    recorder's use).
    Kept in a ring sized for ``seconds`` at the nominal rate (at most 2**20
    samples, 8 MB, but at least twice the largest block), so a marker that
    arrives seconds late still finds its sample.

    Parameters
    ----------
    fs : float
        Nominal sampling rate in Hz.
    seconds : float
        How far back samples are kept.

    Attributes
    ----------
    total : int
        Samples added so far (the numbering of :meth:`index_of`).
    """

    def __init__(self, fs: float, seconds: float = 10.0) -> None:
        self._ring = np.empty(min(max(1024, int(fs * seconds)), 2**20), dtype=np.float64)
        self._end = 0  # where the next stamp goes
        self._count = 0  # kept
        self.total = 0  # ever added

    def add(self, stamps: np.ndarray) -> None:
        """Remember the timestamps of a delivered block (in time order)."""
        n = len(stamps)
        size = len(self._ring)
        if 2 * n > size:
            kept = np.concatenate(self._parts())
            size = 2 * n
            self._ring = np.empty(size, dtype=np.float64)
            self._ring[: len(kept)] = kept
            self._end = self._count = len(kept)
        first = min(n, size - self._end)
        self._ring[self._end:self._end + first] = stamps[:first]
        self._ring[: n - first] = stamps[first:]
        self._end = (self._end + n) % size
        self._count = min(size, self._count + n)
        self.total += n

    def _parts(self) -> tuple[np.ndarray, ...]:
        """The kept stamps as at most two sorted runs, older first."""
        start = self._end - self._count
        if start >= 0:
            return (self._ring[start:self._end],)
        return (self._ring[start:], self._ring[:self._end])

    def index_of(self, t: float) -> int:
        """The first kept sample at or after ``t``, counted among all samples
        ever added (from 0): the oldest kept one for a ``t`` before it, and
        :attr:`total` (the next sample to come) for a ``t`` after the newest."""
        index = self.total - self._count
        for part in self._parts():
            if len(part) and t <= part[-1]:
                return index + int(np.searchsorted(part, t, side="left"))
            index += len(part)
        return self.total

    def snap(self, t: float, tolerance: float = 1e-9) -> float:
        """``t``, or the time of a kept sample within ``tolerance`` of it."""
        for part in self._parts():
            if len(part) and part[0] - tolerance <= t <= part[-1] + tolerance:
                i = int(np.searchsorted(part, t))
                for j in (i - 1, i):
                    if 0 <= j < len(part) and abs(part[j] - t) <= tolerance:
                        return float(part[j])
        return t
