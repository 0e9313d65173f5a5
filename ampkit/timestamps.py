"""Per-sample timestamps for drivers that do not know their sample times.

:class:`SampleClock` turns "n samples arrived now" into one time per sample
on :func:`ampkit.clock.local_clock`, following the device's own clock, and
notices when samples are missing.

The model: sample *k* of a run was taken at ``t(k) = a + k * p``, where
``p`` is the device's true sample period (its crystal runs some ppm off the
nominal ``1 / fs``) and ``a`` the run's start. A block arrives after its
newest sample was taken, never before, and usually a little after (transport
and scheduling delays: mostly short, sometimes long, never negative). So the
points ``(k_last, arrival)`` of all blocks lie on or above the line ``t(k)``,
and the line is found as the *lower envelope* of the points, both its slope
and its offset: the line under all points of the last ``window`` seconds that
is highest at their mean ``k`` (a small linear programme whose solution is
an edge of the points' lower convex hull; Moon, Skelly and Towsley, "Estimation
and removal of clock skew from network delay measurements", INFOCOM 1999). Only
the least delayed arrivals decide it, so delays, stalls and bursts of any size
do not move it. The points are thinned to the least delayed block of every
quarter second, and the hull is kept incrementally (two hulls, restarted in
turn every ``window / 2``, so the fit covers the last ``window / 2`` to
``window`` seconds): the work per block is a few arithmetic operations.

The timestamps handed out follow the fit smoothly: after each refit the
stamps slew towards the new line over about a second, so they stay strictly
increasing and continuous. A block that arrives *before* the stamps predict
proves them late: they are moved back to it at once (that block's samples
are spread between the previous sample and its arrival).

Gaps: drivers whose device numbers its samples (RDA's block counter, the
Cyton's sample number) pass the count lost (``lost=``) and turn arrival-time
detection off. Without a counter, a block that arrives ``gap_threshold``
later than the line predicts may be a stall (the samples come late, then in
a burst) or a loss (every later block is late by the same amount): the clock
keeps stamping on the line until blocks have stayed late for ``confirm``
seconds, then declares the gap, sized as the whole number of sample periods
in the least late of those blocks' lateness, moves the stamps forward by it
and checks the new run's offset against its own arrivals.

See :doc:`/timing` for the choice of this method over others and its figures.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SampleClock", "Gap", "RecentStamps", "default_gap_threshold"]

logger = logging.getLogger("ampkit")

#: Seconds of arrivals of which the least delayed block becomes a fit point.
BUCKET = 0.25
#: Seconds over which the stamps slew to a new fit.
SLEW = 1.0
#: Seconds of arrivals after which the fit's own slope is trusted over the
#: nominal one (at the start of acquisition).
TRUST = 1.0
#: Blocks that must stay late before an arrival-time gap is declared.
CONFIRM_BLOCKS = 8
#: Sample periods missing that make a gap, by default.
GAP_PERIODS = 10


def default_gap_threshold(fs: float, floor: float = 0.05) -> float:
    """The shortest loss, in seconds, counted as a gap by default.

    :data:`GAP_PERIODS` sample periods, and at least ``floor`` seconds: the
    jitter that times of the kind being checked can have without a loss.

    >>> default_gap_threshold(1000.0), default_gap_threshold(100.0)
    (0.05, 0.1)
    """
    return max(GAP_PERIODS / fs, floor)


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


class _LowerHull:
    """The lower convex hull of points added in increasing ``x``.

    Also keeps the points' count and mean ``x`` (where the fit is made).
    """

    __slots__ = ("xs", "ys", "first", "count", "sum_x")

    def __init__(self) -> None:
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.first = 0.0
        self.count = 0
        self.sum_x = 0.0

    def add(self, x: float, y: float) -> None:
        xs, ys = self.xs, self.ys
        if not self.count:
            self.first = x
        self.count += 1
        self.sum_x += x
        if xs and x <= xs[-1]:
            # Same x again (only after a restart at the same sample): keep the lower.
            if y >= ys[-1]:
                return
            xs.pop()
            ys.pop()
        while len(xs) >= 2:
            ox, oy = xs[-2], ys[-2]
            # The last vertex is not below the chord from the one before to
            # the new point: no longer part of the lower hull.
            if (xs[-1] - ox) * (y - oy) - (ys[-1] - oy) * (x - ox) <= 0.0:
                xs.pop()
                ys.pop()
            else:
                break
        xs.append(x)
        ys.append(y)

    def span(self) -> float:
        return self.xs[-1] - self.first if self.count else 0.0

    def fit(self) -> tuple[float, float, float] | None:
        """``(x, y, slope)``: the hull's edge under the points' mean ``x``
        (the highest line under all points there), or None for one vertex."""
        xs = self.xs
        if len(xs) < 2:
            return None
        xc = self.sum_x / self.count
        i = min(max(bisect.bisect_right(xs, xc), 1), len(xs) - 1)
        slope = (self.ys[i] - self.ys[i - 1]) / (xs[i] - xs[i - 1])
        return xc, self.ys[i - 1] + slope * (xc - xs[i - 1]), slope

    def offset(self, slope: float) -> float:
        """The highest ``c`` with ``c + slope * x`` under every point."""
        return min(y - slope * x for x, y in zip(self.xs, self.ys, strict=True))


class SampleClock:
    """Estimate sample times from arrival times: the device's rate and offset.

    Parameters
    ----------
    fs : float
        Nominal sampling frequency in Hz.
    gap_threshold : float, optional
        Shortest loss, in seconds, found from arrival times. Defaults to
        :func:`default_gap_threshold` ``(fs)``: ``max(10 / fs, 0.05)``.
    detect_gaps : bool
        Find gaps from arrival times. Drivers whose device counts samples
        turn this off and pass the count lost to :meth:`stamp` instead.
    window : float
        Seconds of arrivals the fit uses (the last ``window / 2`` to
        ``window``): longer averages over more arrivals, shorter follows a
        device whose rate wanders (with temperature) sooner.
    confirm : float
        Seconds blocks must stay late before an arrival-time gap is
        declared (a stall resolves sooner: its samples come in a burst).
    max_skew : float
        Largest relative deviation of the device's rate from ``fs`` the fit
        accepts (0.02: 2 %).

    Attributes
    ----------
    fs : float
        The nominal rate.

    Examples
    --------
    >>> clock = SampleClock(100.0)
    >>> ts, gap = clock.stamp(5, arrival=10.0)
    >>> ts.round(2).tolist()
    [9.96, 9.97, 9.98, 9.99, 10.0]
    """

    def __init__(
        self,
        fs: float,
        gap_threshold: float | None = None,
        *,
        detect_gaps: bool = True,
        window: float = 120.0,
        confirm: float = 0.1,
        max_skew: float = 0.02,
    ) -> None:
        if not fs > 0 or not math.isfinite(fs):
            raise ValueError(f"sampling frequency must be positive, got {fs!r}")
        self.fs = float(fs)
        self.period = 1.0 / self.fs
        self.gap_threshold = (
            default_gap_threshold(self.fs) if gap_threshold is None else float(gap_threshold)
        )
        if not self.gap_threshold > 0:
            raise ValueError(f"gap_threshold must be positive, got {gap_threshold!r}")
        if not window > 2 * BUCKET:
            raise ValueError(f"window must be longer than {2 * BUCKET} s, got {window!r}")
        self.detect_gaps = bool(detect_gaps)
        self.window = float(window)
        self.confirm = float(confirm)
        self.max_skew = float(max_skew)
        self._half = 0.5 * self.window * self.fs  # samples
        self._slew = SLEW * self.fs  # samples
        self._watch_level = 0.75 * self.gap_threshold if self.detect_gaps else math.inf
        self._k = 0  # index of the next sample (counting lost ones)
        self._last = -math.inf  # the newest stamp handed out
        self._slope = self.period  # the fitted period
        self._started = False
        self._measured = False
        self._warned = False
        self._runs = 0

    # -- state -------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The device's effective sampling rate in Hz as measured so far,
        None until the arrivals of a second were seen."""
        return 1.0 / self._slope if self._measured else None

    def restart(self) -> None:
        """Begin a new run: the next block's samples have an unknown phase.

        For a device that restarted its acquisition (a new recording on an
        RDA server): the estimated rate is kept, the offset is found afresh
        from the next arrivals.
        """
        self._started = False

    def _begin(self, k: int, n: int, arrival: float) -> None:
        first_run = not self._runs
        self._runs += 1
        self._started = True
        # Stamps: t(k) = _to + _s * (k - _ko), the last sample at the arrival.
        self._ko = k + n - 1
        self._to = arrival
        self._s = self._slope
        if first_run:
            self._tref = arrival
            self._kref = self._ko
        self._reset_fit(arrival, trust=TRUST * self.fs if first_run else self._half)
        x = float(self._ko - self._kref)
        self._line = (x, arrival - self._tref - x * self.period, self._slope - self.period)
        self._cand_t: float | None = None
        self._watch = self._watch_level

    def _reset_fit(self, arrival: float, trust: float) -> None:
        self._hull = self._young = _LowerHull()
        self._trust = trust
        self._prior = self._slope
        self._anchor: tuple[float, float] | None = None  # a point of the prior line
        self._bucket_end = arrival + BUCKET
        self._best = math.inf
        self._best_k = 0
        self._best_t = 0.0

    # -- stamping ------------------------------------------------------------

    def stamp(self, n: int, arrival: float, lost: int = 0) -> tuple[np.ndarray, Gap | None]:
        """Return times for ``n`` samples whose newest arrived at ``arrival``.

        Parameters
        ----------
        n : int
            Number of samples in the block.
        arrival : float
            ``local_clock()`` when the block was received.
        lost : int
            Samples the device's counter says were lost before this block
            (they advance the sample index; no :class:`Gap` is returned for
            them: the caller knows).

        Returns
        -------
        timestamps : ndarray of float64, shape (n,)
            Strictly increasing, continuing those of earlier blocks, never
            after ``arrival``.
        gap : Gap or None
            Set when arrival times show samples before this block missing
            (``detect_gaps`` only).
        """
        k = self._k + lost
        if n <= 0:
            self._k = k
            return np.empty(0, np.float64), None
        if not self._started:
            self._begin(k, n, arrival)
        if arrival >= self._bucket_end:
            self._refit(k, arrival)
        s = self._s
        first = self._to + s * (k - self._ko)
        late = arrival - (first + s * (n - 1))
        gap = 0
        if late > self._watch:
            gap = self._late_block(late, arrival, k + n - 1)
            if gap:
                first = self._to + s * (k - self._ko)
                late = arrival - (first + s * (n - 1))
        if late < 0.0:
            # Arrived before its predicted time: the stamps run late.
            self._to += late
            first += late
        if late < self._best:
            self._best = late
            self._best_k = k + n - 1
            self._best_t = arrival
        last = self._last
        if first <= last:
            # Moved back past the previous block: spread this block evenly
            # between the previous sample and its own last sample.
            s = (first + (n - 1) * s - last) / n
            if s <= 0.0:  # only rounding
                s = self.period * 1e-6
            first = last + s
        # One call: numpy fills first + i * step (arange of floats).
        ts = np.arange(first, first + (n - 0.5) * s, s)
        self._last = float(ts[-1])
        self._k = k + n
        if gap:
            duration = float(ts[0]) - self._gap_from - self.period
            return ts, Gap(float(ts[0]), duration, gap)
        return ts, None

    def _late_block(self, late: float, arrival: float, last_k: int) -> int:
        """A block later than the watch level: open, keep or close a gap
        candidate. Returns the samples missing once a gap is confirmed."""
        threshold = self.gap_threshold
        if self._cand_t is None:
            if late > self._watch_level:
                self._cand_t = arrival
                self._cand_late = late
                self._cand_blocks = 1
                self._watch = -math.inf  # see every block until decided
            return 0
        if late < 0.5 * threshold:
            # Back on the line: the late blocks were a stall, nothing lost.
            self._cand_t = None
            self._watch = self._watch_level
            return 0
        self._cand_blocks += 1
        if late < self._cand_late:
            self._cand_late = late
        if arrival - self._cand_t < self.confirm or self._cand_blocks < CONFIRM_BLOCKS:
            return 0
        # Late for long enough: samples were lost, a whole number of them.
        # The least late block came with the least delay (never negative),
        # so the loss is the whole number of periods in its lateness (with
        # a little room for the fit's own error).
        slope = self._slope
        missing = max(1, int(self._cand_late / slope + 0.1))
        shift = missing * slope
        self._gap_from = self._last
        self._to += shift
        self._cand_t = None
        self._watch = self._watch_level
        # A new run. Its line is the old one moved by the loss, unless its
        # arrivals show it earlier (the count was one too many); the rate
        # is kept until the new run's own fit spans half a window.
        x = float(last_k - self._kref)
        xc, yc, dslope = self._line
        self._reset_fit(arrival, trust=self._half)
        self._anchor = (x, yc + dslope * (x - xc) + shift)
        return missing

    def _refit(self, k: int, arrival: float) -> None:
        """Close the bucket: add its best point, refit, steer the stamps."""
        if self._best < math.inf:
            x = float(self._best_k - self._kref)
            y = self._best_t - self._tref - x * self.period
            hull, young = self._hull, self._young
            hull.add(x, y)
            if young is not hull:
                young.add(x, y)
            if young.span() >= self._half:
                self._hull = young
                self._young = _LowerHull()
        self._best = math.inf
        self._bucket_end = arrival + BUCKET
        hull = self._hull
        if not hull.count:
            return
        fit = hull.fit() if hull.span() >= self._trust else None
        limit = self.max_skew * self.period
        if fit is not None:
            xc, yc, dslope = fit
            if abs(dslope) > limit and not self._warned:
                self._warned = True
                logger.warning(
                    "the device runs at about %.6g Hz, more than %g %% off its nominal "
                    "%g Hz: timestamps follow at most %g %% (is the rate configured right?)",
                    1.0 / (self.period + dslope), 100 * self.max_skew, self.fs,
                    100 * self.max_skew,
                )
            dslope = min(max(dslope, -limit), limit)
            self._measured = True
        else:
            dslope = self._prior - self.period
            xc = 0.0
            yc = hull.offset(dslope)
            if self._anchor is not None:
                yc = min(yc, self._anchor[1] - dslope * self._anchor[0])
        self._slope = self.period + dslope
        self._line = (xc, yc, dslope)
        # Steer: from the current stamp of sample k, reach the fitted line
        # one slew time ahead.
        x = float(k - self._kref)
        now = self._to + self._s * (k - self._ko)
        ahead = x + self._slew
        target = self._tref + ahead * self.period + yc + dslope * (ahead - xc)
        s = (target - now) / self._slew
        self._s = max(s, 0.25 * self._slope)
        self._to = now
        self._ko = k


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
