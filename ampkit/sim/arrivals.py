"""Arrival times of a device whose clock drifts, and a score for timestamps.

A sample clock (:class:`ampkit.timestamps.SampleClock`) sees only when
blocks arrive. :func:`simulate_arrivals` makes those arrival times for a
device whose crystal runs ``ppm`` off its nominal rate, behind a transport
that delays every block (exponentially distributed delays, occasional
stalls that hold everything back and release it in a burst, delivery in
order) and that may lose runs of samples. It is vectorised, so a day of
arrivals at 1 kHz takes a second to make. :meth:`Arrivals.score` feeds the
blocks to a stamping function and measures its timestamps against the
samples' true times, chunk by chunk, in bounded memory.

Examples
--------
>>> from ampkit.sim.arrivals import simulate_arrivals
>>> from ampkit.timestamps import SampleClock
>>> arrivals = simulate_arrivals(1000.0, 600.0, ppm=-100, block_sizes=20)
>>> score = arrivals.score(SampleClock(1000.0).stamp, settle=30.0)
>>> score.p99 < 1e-3
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Arrivals", "Score", "simulate_arrivals"]

#: Resolution of the error histogram of :class:`Score` (seconds).
RESOLUTION = 1e-6
_BINS = 100_000  # errors beyond 0.1 s share the last bin (their maximum is kept)


@dataclass
class Score:
    """How far timestamps were from the true sample times.

    Attributes
    ----------
    median, p99, max : float
        Of the absolute error in seconds, over the samples scored (those
        taken after the settling time, outside the undecided windows).
    n : int
        Samples scored.
    gaps : list of (int, object)
        ``(block, gap)`` for each gap the stamping function reported.
    undecided : int
        Samples between a loss and the block where the stamping function
        reported it (not scored: until then it cannot know).
    undecided_max : float
        Largest error among them.
    histogram : ndarray
        Counts of the absolute error in steps of :data:`RESOLUTION`.
    """

    median: float
    p99: float
    max: float
    n: int
    gaps: list = field(default_factory=list)
    undecided: int = 0
    undecided_max: float = 0.0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fraction_above(self, limit: float) -> float:
        """Fraction of the scored samples whose error exceeds ``limit`` seconds."""
        if not self.n:
            return 0.0
        return float(self.histogram[int(limit / RESOLUTION) + 1 :].sum()) / self.n


@dataclass
class Arrivals:
    """Blocks of a simulated device as a receiver gets them.

    Attributes
    ----------
    fs : float
        The nominal rate in Hz.
    ppm : float
        How far the device's clock runs from nominal (positive: fast).
    t0 : float
        When the device's sample 0 was due, less one period.
    sizes : ndarray of int64
        Samples per block received.
    first : ndarray of int64
        The device's index of each block's first sample.
    arrivals : ndarray of float64
        When each block arrived (non-decreasing).
    lost : ndarray of int64
        Samples the device lost just before each block (0 mostly).
    """

    fs: float
    ppm: float
    t0: float
    sizes: np.ndarray
    first: np.ndarray
    arrivals: np.ndarray
    lost: np.ndarray

    @property
    def true_rate(self) -> float:
        """The device's real rate in Hz."""
        return self.fs * (1.0 + self.ppm * 1e-6)

    def true_times(self, index: np.ndarray) -> np.ndarray:
        """When the device took samples ``index`` (sample k at ``t0 + (k + 1) / rate``)."""
        return self.t0 + (np.asarray(index, np.float64) + 1.0) / self.true_rate

    def score(
        self,
        stamp: Callable[..., tuple[np.ndarray, object]],
        settle: float = 30.0,
        counters: bool = False,
        per_sample: bool = True,
        batch: bool = False,
        chunk: int = 1 << 20,
    ) -> Score:
        """Feed every block to ``stamp`` and measure its timestamps.

        Parameters
        ----------
        stamp : callable
            ``stamp(n, arrival)`` (or ``stamp(n, arrival, lost)`` with
            ``counters``) returning ``(timestamps, gap or None)``, as
            :meth:`ampkit.timestamps.SampleClock.stamp`.
        settle : float
            Seconds after the start whose samples are not scored.
        counters : bool
            Tell ``stamp`` the samples lost before each block (a device
            with a sample counter); otherwise it has to find them.
        per_sample : bool
            Score every sample (True), or each block by the larger error of
            its first and last sample, counted for each of its samples
            (False: several times faster; exact for the maximum, and an
            upper bound of every quantile, when the stamps of a block are
            evenly spaced, as :class:`~ampkit.timestamps.SampleClock`'s are).
        batch : bool
            ``stamp(sizes, arrivals)`` takes the arrays of a chunk of blocks
            and returns the stamps of all their samples (a stamping method
            that is vectorised, or that runs elsewhere, such as liblsl's).
        chunk : int
            Samples scored at a time (memory bound).
        """
        hist = np.zeros(_BINS + 1, np.int64)
        worst = 0.0
        gaps: list = []
        undecided = 0
        undecided_max = 0.0
        start = self.t0 + settle
        sizes = self.sizes.tolist()
        arrivals = self.arrivals.tolist()
        lost = self.lost.tolist()
        losses = np.flatnonzero(self.lost).tolist()
        # Blocks are fed and scored a chunk of about ``chunk`` samples at a time.
        n_samples = int(self.sizes.sum())
        cuts = np.searchsorted(np.cumsum(self.sizes), np.arange(chunk, n_samples, chunk))
        bounds = np.unique(np.concatenate([[0], cuts + 1, [len(sizes)]])).tolist()
        for j0, j1 in zip(bounds[:-1], bounds[1:], strict=False):
            if batch:
                stamps = np.asarray(stamp(self.sizes[j0:j1], self.arrivals[j0:j1]), np.float64)
            else:
                parts: list[np.ndarray] = []
                keep_part = parts.append
                if counters:
                    blocks = zip(sizes[j0:j1], arrivals[j0:j1], lost[j0:j1], strict=True)
                else:
                    blocks = zip(sizes[j0:j1], arrivals[j0:j1], strict=True)
                for i, block in enumerate(blocks, j0):
                    ts, gap = stamp(*block)
                    if gap is not None:
                        gaps.append((i, gap))
                    keep_part(ts)
                stamps = np.concatenate(parts)
            n_c = self.sizes[j0:j1]
            if per_sample:
                index = np.repeat(self.first[j0:j1] - np.cumsum(n_c) + n_c, n_c)
                index += np.arange(len(stamps))
                owner = np.repeat(np.arange(j0, j1), n_c)
                truth = self.true_times(index)
                err = np.abs(stamps - truth)
                weight = None
            else:
                ends = np.cumsum(n_c)
                last = self.first[j0:j1] + n_c - 1
                err = np.maximum(
                    np.abs(stamps[ends - n_c] - self.true_times(self.first[j0:j1])),
                    np.abs(stamps[ends - 1] - self.true_times(last)),
                )
                owner = np.arange(j0, j1)
                truth = self.true_times(self.first[j0:j1])
                weight = n_c
            keep = truth >= start
            if not counters:
                # From a loss to the block where it is reported the stamping
                # cannot know yet: those samples are counted apart.
                for b in losses:
                    reported = [g for g, _ in gaps if g >= b]
                    mask = (owner >= b) & (owner < (reported[0] if reported else j1))
                    if mask.any():
                        undecided += int(mask.sum() if weight is None else weight[mask].sum())
                        undecided_max = max(undecided_max, float(err[mask].max()))
                        keep &= ~mask
            err = err[keep]
            if len(err):
                worst = max(worst, float(err.max()))
                bins = np.minimum((err / RESOLUTION).astype(np.int64), _BINS)
                hist += np.bincount(
                    bins, None if weight is None else weight[keep], minlength=_BINS + 1
                ).astype(np.int64)
        total = int(hist.sum())
        cum = np.cumsum(hist)

        def quantile(q: float) -> float:
            if not total:
                return float("nan")
            return float(np.searchsorted(cum, q * total) + 0.5) * RESOLUTION

        return Score(
            median=quantile(0.5),
            p99=quantile(0.99),
            max=worst,
            n=total,
            gaps=gaps,
            undecided=undecided,
            undecided_max=undecided_max,
            histogram=hist,
        )


def simulate_arrivals(
    fs: float,
    seconds: float,
    ppm: float = 0.0,
    block_sizes: int | tuple[int, int] | Sequence[float] = 20,
    delay: float = 0.002,
    stall_every: float = 180.0,
    stall: float = 0.1,
    losses: Sequence[tuple[float, int]] = (),
    t0: float = 1000.0,
    seed: int = 0,
) -> Arrivals:
    """Arrival times of the blocks of a device running ``ppm`` off ``fs``.

    Parameters
    ----------
    fs : float
        Nominal sampling rate in Hz.
    seconds : float
        Length of the run.
    ppm : float
        The device's clock error in parts per million (-100: 100 ppm slow).
    block_sizes : int, (int, int) or sequence of float
        Samples per block; or the range they are drawn from, uniformly
        (inclusive); or the probabilities of sizes 1, 2, 3, ...
    delay : float
        Mean of the exponentially distributed delay of each block (s).
    stall_every : float
        Mean seconds between stalls (Poisson); 0 for none.
    stall : float
        Length of a stall: blocks due during it arrive at its end.
    losses : sequence of (float, int)
        ``(time, n)``: the device loses ``n`` samples from ``time`` seconds
        after the start (the receiver gets the blocks around them cut).
    t0 : float
        Start of the run on the receiver's clock.
    seed : int
        Seed of the random generator (runs repeat).
    """
    rng = np.random.default_rng(seed)
    rate = fs * (1.0 + ppm * 1e-6)
    total = int(seconds * rate)
    if isinstance(block_sizes, (int, np.integer)):
        weights = np.zeros(int(block_sizes))
        weights[-1] = 1.0
    elif isinstance(block_sizes, tuple) and len(block_sizes) == 2:
        lo, hi = (int(b) for b in block_sizes)
        weights = np.zeros(hi)
        weights[lo - 1 :] = 1.0
    else:
        weights = np.asarray(block_sizes, np.float64)
    weights = weights / weights.sum()
    mean = float(weights @ np.arange(1, len(weights) + 1))
    # Block boundaries (sample indices), plus the edges of every loss.
    choices = np.arange(1, len(weights) + 1)
    draws = rng.choice(choices, size=int(total / mean * 1.01) + 16, p=weights)
    bounds = np.concatenate([[0], np.cumsum(draws)])
    while bounds[-1] < total:  # drew too few (rare): more
        more = rng.choice(choices, size=len(draws) // 100 + 16, p=weights)
        bounds = np.concatenate([bounds, bounds[-1] + np.cumsum(more)])
    bounds = bounds[bounds < total]
    cuts = []
    for when, n in losses:
        begin = int(when * rate)
        cuts.append((begin, begin + int(n)))
    edges = [e for c in cuts for e in c]
    bounds = np.sort(np.concatenate([bounds, edges, [total]]).astype(np.int64))
    bounds = bounds[np.concatenate([[True], np.diff(bounds) > 0])]
    first, ends = bounds[:-1], bounds[1:]
    keep = np.ones(len(first), bool)
    lost = np.zeros(len(first), np.int64)
    for begin, end in cuts:
        dropped = (first >= begin) & (ends <= end)
        keep &= ~dropped
        after = np.searchsorted(first, end)
        if after < len(lost):
            lost[after] += end - begin
    first, ends, lost = first[keep], ends[keep], lost[keep]
    sizes = ends - first
    due = t0 + ends / rate  # the block's last sample was taken then
    arrival = due + rng.exponential(delay, len(due)) if delay > 0 else due.copy()
    if stall_every > 0:
        n_stalls = rng.poisson(seconds / stall_every)
        reach = 50.0 * delay + stall  # no delay is longer (exponential)
        for begin in np.sort(rng.uniform(t0, t0 + seconds, n_stalls)):
            lo, hi = np.searchsorted(due, [begin - reach, begin + stall])
            part = arrival[lo:hi]
            part[(part >= begin) & (part < begin + stall)] = begin + stall
    arrival = np.maximum.accumulate(arrival)  # delivered in order
    return Arrivals(float(fs), float(ppm), float(t0), sizes, first, arrival, lost)
