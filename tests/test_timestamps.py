import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ampkit.timestamps import RecentStamps, SampleClock


def test_first_block_ends_at_arrival():
    clock = SampleClock(100.0)
    ts, gap = clock.stamp(5, arrival=10.0)
    np.testing.assert_allclose(ts, [9.96, 9.97, 9.98, 9.99, 10.0])
    assert gap is None


def test_steady_blocks_continue_evenly():
    clock = SampleClock(250.0)
    all_ts = []
    for k in range(1, 41):
        # arrivals exactly when the block's last sample was due, plus jitter >= 0
        ts, gap = clock.stamp(25, arrival=k * 0.1 + (0.003 if k % 3 == 0 else 0.0))
        assert gap is None
        all_ts.append(ts)
    ts = np.concatenate(all_ts)
    np.testing.assert_allclose(np.diff(ts), 1 / 250.0, rtol=1e-6, atol=1e-9)
    # the lower envelope: the last sample is at its earliest arrival
    assert ts[-1] == pytest.approx(4.0, abs=1e-9)


def test_gap_is_detected_and_sized():
    clock = SampleClock(100.0)
    clock.stamp(10, arrival=0.1)
    ts, gap = clock.stamp(10, arrival=1.2)  # 1 s of samples missing
    assert gap is not None
    assert gap.n_missing == 100
    assert ts[-1] == pytest.approx(1.2)
    assert gap.time == pytest.approx(ts[0])


def test_empty_block():
    ts, gap = SampleClock(10.0).stamp(0, arrival=1.0)
    assert ts.shape == (0,) and gap is None


def test_rejects_bad_rate():
    with pytest.raises(ValueError):
        SampleClock(0)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.floats(1e-4, 0.3, allow_nan=False)),
        min_size=1,
        max_size=60,
    )
)
def test_timestamps_strictly_increase_and_never_follow_arrival(blocks):
    clock = SampleClock(200.0)
    t = 100.0
    last = -np.inf
    for n, dt in blocks:
        t += dt
        ts, _ = clock.stamp(n, arrival=t)
        assert len(ts) == n
        if n:
            assert ts[0] > last
            assert np.all(np.diff(ts) > 0)
            assert ts[-1] <= t + 1e-9
            last = ts[-1]


def filled_ring(sizes):
    """A RecentStamps of 1024 samples at 100 Hz, given blocks of ``sizes``; and all their stamps."""
    stamps = 5000.0 + np.cumsum(np.full(sum(sizes), 1 / 100.0))
    recent = RecentStamps(100.0, seconds=10.0)
    start = 0
    for n in sizes:
        recent.add(stamps[start:start + n])
        start += n
    return stamps, recent


@given(
    st.lists(st.integers(0, 700), min_size=1, max_size=40),
    st.floats(-1e-10, 1e-10),
    st.integers(0, 10**6),
)
def test_recent_stamps_snap_to_every_kept_sample(sizes, error, pick):
    stamps, recent = filled_ring(sizes)
    kept = stamps[-max(1024, 2 * max(sizes)):] if len(stamps) > 1024 else stamps
    if len(kept):
        target = kept[pick % len(kept)]
        assert recent.snap(target + error) == target
    if len(stamps):
        # Off the samples, or older than the ring: unchanged.
        assert recent.snap(stamps[-1] + 0.5 / 100) == stamps[-1] + 0.5 / 100
        assert recent.snap(stamps[0] - 1.0) == stamps[0] - 1.0


@given(
    st.lists(st.integers(0, 700), min_size=1, max_size=40),
    st.floats(-2.0, 2.0),
    st.integers(0, 10**6),
)
def test_recent_stamps_index_of_counts_every_sample_added(sizes, offset, pick):
    stamps, recent = filled_ring(sizes)
    assert recent.total == len(stamps)
    first_kept = len(stamps) - min(len(stamps), max(1024, 2 * max(sizes)))
    if len(stamps):
        # A kept sample's own time finds it; a time between two samples the later one.
        i = first_kept + pick % (len(stamps) - first_kept)
        assert recent.index_of(stamps[i]) == i
        assert recent.index_of(stamps[i] - 0.5 / 100) == i
        # Anywhere in the kept range, before it or after it:
        t = stamps[-1] + offset
        want = max(first_kept, int(np.searchsorted(stamps, t, side="left")))
        assert recent.index_of(t) == want
    assert recent.index_of(1e9) == len(stamps)
