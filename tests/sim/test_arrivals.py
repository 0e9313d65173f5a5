"""Tests of the arrival simulator and its score (ampkit.sim.arrivals)."""

import numpy as np
import pytest

from ampkit.sim.arrivals import simulate_arrivals
from ampkit.timestamps import SampleClock


def test_blocks_cover_every_sample_but_the_lost_ones():
    a = simulate_arrivals(500.0, 60.0, ppm=-300, block_sizes=(1, 30),
                          losses=[(10.0, 40), (30.0, 7)], seed=2)
    rate = 500.0 * (1 - 300e-6)
    assert a.true_rate == pytest.approx(rate)
    assert a.sizes.min() >= 1 and a.sizes.max() <= 30
    # Contiguous except where samples were lost, and the loss is on the next block.
    step = a.first[1:] - (a.first[:-1] + a.sizes[:-1])
    assert sorted(step[step > 0].tolist()) == [7, 40]
    np.testing.assert_array_equal(a.lost[1:], step)
    assert a.lost[0] == 0
    assert a.first[0] == 0 and a.first[-1] + a.sizes[-1] == int(60.0 * rate)
    lost_at = a.first[np.flatnonzero(a.lost)] - a.lost[a.lost > 0]
    np.testing.assert_array_equal(lost_at, [int(10.0 * rate), int(30.0 * rate)])


def test_arrivals_never_early_and_in_order():
    a = simulate_arrivals(1000.0, 600.0, ppm=100, block_sizes=20, delay=0.002,
                          stall_every=30.0, stall=0.1, seed=5)
    due = a.true_times(a.first + a.sizes - 1)
    delay = a.arrivals - due
    assert delay.min() >= 0
    assert np.all(np.diff(a.arrivals) >= 0)
    # Exponential delays of 2 ms mean, and the stalls' long ones.
    assert np.median(delay) == pytest.approx(0.002 * np.log(2), rel=0.1)
    assert 0.05 < delay.max() < 0.1 + 0.02
    # Blocks due during a stall arrive together at its end: equal arrival times.
    assert np.count_nonzero(np.diff(a.arrivals) == 0) >= 5 * 10


def test_block_size_weights():
    a = simulate_arrivals(1000.0, 100.0, block_sizes=[0.0, 0.5, 0.0, 0.5], seed=1,
                          stall_every=0)
    assert set(a.sizes[:-1].tolist()) == {2, 4}
    b = simulate_arrivals(1000.0, 100.0, block_sizes=7, delay=0, stall_every=0)
    assert set(b.sizes[:-1].tolist()) == {7}
    np.testing.assert_allclose(b.arrivals, b.true_times(b.first + b.sizes - 1))


def _replay(arrivals, offset=0.0):
    """A stamping function that knows the truth (plus ``offset``), block by block."""
    blocks = iter(range(len(arrivals.sizes)))

    def stamp(n, arrival):
        j = next(blocks)
        return arrivals.true_times(arrivals.first[j] + np.arange(n)) + offset, None

    return stamp


def test_score_of_the_truth_is_zero_and_of_a_shift_its_size():
    a = simulate_arrivals(250.0, 120.0, block_sizes=(5, 15), seed=4)
    assert a.score(_replay(a), settle=0.0).max == 0.0
    s = a.score(_replay(a, 0.003), settle=0.0)
    assert s.median == pytest.approx(0.003, abs=2e-6)
    assert s.max == pytest.approx(0.003, abs=1e-9)
    assert s.n == a.sizes.sum()
    assert s.fraction_above(0.002) == 1.0 and s.fraction_above(0.004) == 0.0
    late = a.score(_replay(a, 0.003), settle=60.0)
    assert late.n == pytest.approx(a.sizes.sum() / 2, rel=0.01)


def test_block_scoring_bounds_the_sample_scoring_for_even_stamps():
    a = simulate_arrivals(1000.0, 300.0, ppm=700, block_sizes=(1, 100),
                          losses=[(150.0, 80)], seed=9)
    exact = a.score(SampleClock(1000.0).stamp, settle=5.0)
    bound = a.score(SampleClock(1000.0).stamp, settle=5.0, per_sample=False)
    assert bound.max == pytest.approx(exact.max)
    assert exact.median <= bound.median and exact.p99 <= bound.p99 + 1e-6
    assert bound.n == pytest.approx(exact.n, rel=0.01)
    assert len(exact.gaps) == len(bound.gaps) == 1
    # The samples between the loss and its report are counted apart.
    assert 0 < exact.undecided == bound.undecided < 1000
    assert exact.undecided_max == pytest.approx(0.080, abs=0.005)


def test_batch_stampers_see_the_chunks_in_order():
    a = simulate_arrivals(1000.0, 200.0, block_sizes=20, delay=0, stall_every=0)
    seen = []

    def nominal(sizes, arrivals):
        seen.append(len(sizes))
        ends = np.repeat(arrivals, sizes)
        within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return ends - (np.repeat(sizes, sizes) - 1 - within) / 1000.0

    s = a.score(nominal, settle=0.0, batch=True, chunk=50_000)
    assert sum(seen) == len(a.sizes) and len(seen) == 4
    assert s.max < 1e-9
