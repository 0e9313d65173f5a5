import math
import re
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pylsl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ampkit
from ampkit.clock import local_clock
from ampkit.sim.arrivals import simulate_arrivals
from ampkit.sim.cyton import CytonSimulator
from ampkit.sim.rda import COUNTER_MODULUS, RDASimulator
from ampkit.timestamps import RecentStamps, SampleClock

FS = 1000.0
SKEWS = [-1000, -100, -50, 0, 50, 100, 1000]


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


def steady(clock, seconds, fs, block, start=0.0, ppm=0.0, delays=None, first=0):
    """Feed ``clock`` ``seconds`` of blocks due at a device rate of ``fs`` (1 + ppm);
    return the stamps, the true times and the gaps reported."""
    rate = fs * (1 + ppm * 1e-6)
    n_blocks = int(seconds * rate) // block
    stamps, truth, gaps = [], [], []
    for b in range(n_blocks):
        k = first + b * block + np.arange(block)
        due = start + (k + 1) / rate
        delay = 0.0 if delays is None else delays[b % len(delays)]
        ts, gap = clock.stamp(block, due[-1] + delay)
        stamps.append(ts)
        truth.append(due)
        if gap is not None:
            gaps.append(gap)
    return np.concatenate(stamps), np.concatenate(truth), gaps


def test_follows_a_slow_device_whose_blocks_always_arrive_late():
    # The case: 50 ppm slow, blocks of 20, delays >= 0. The old clock
    # (lower envelope at the nominal rate) was 178 ms off after an hour.
    rng = np.random.default_rng(1)
    clock = SampleClock(FS)
    ts, truth, gaps = steady(clock, 3600, FS, 20, ppm=-50, delays=rng.exponential(0.002, 5000))
    assert not gaps
    err = np.abs(ts - truth)[30 * 1000 :]
    assert err.max() < 0.5e-3
    assert clock.rate == pytest.approx(FS * (1 - 50e-6), abs=FS * 1e-6)


def test_a_stall_is_not_a_gap():
    # 300 ms with nothing, then the held-back blocks in a burst.
    clock = SampleClock(FS)
    ts1, truth1, gaps1 = steady(clock, 10, FS, 10)
    held = []
    for b in range(30):
        k = 10_000 + b * 10 + np.arange(10)
        ts, gap = clock.stamp(10, 10.0 + 0.3 + b * 1e-5)
        assert gap is None
        held.append(np.abs(ts - (k + 1) / FS).max())
    assert max(held) < 1e-6  # stamped on the line, not at the late arrival
    ts2, truth2, gaps2 = steady(clock, 10, FS, 10, first=10_300)
    assert not gaps1 and not gaps2
    assert np.abs(ts2 - truth2).max() < 1e-6


def test_a_loss_is_found_once_and_sized():
    clock = SampleClock(100.0)
    ts1, truth1, _ = steady(clock, 20, 100.0, 10)
    # 1 s of samples lost, then the device goes on.
    ts2, truth2, gaps = steady(clock, 20, 100.0, 10, first=2100)
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap.n_missing == 100
    assert gap.duration == pytest.approx(1.0, abs=0.011)
    # Reported once the blocks stayed late: the stamps from there are right,
    # and the gap's time is the first of them.
    right = np.flatnonzero(np.abs(ts2 - truth2) < 1e-6)
    assert right[0] <= 10 * 8 and np.all(np.diff(right) == 1) and right[-1] == len(ts2) - 1
    assert gap.time == ts2[right[0]]
    assert ts2[0] > ts1[-1]


def test_loss_told_by_a_counter_keeps_the_line():
    clock = SampleClock(FS, detect_gaps=False)
    ts1, _, _ = steady(clock, 5, FS, 20)
    ts, gap = clock.stamp(20, (5000 + 500 + 20) / FS, lost=500)
    assert gap is None
    np.testing.assert_allclose(ts, (5000 + 500 + 1 + np.arange(20)) / FS, atol=1e-9)
    # An empty block may carry a loss too.
    assert clock.stamp(0, 5.6, lost=30)[0].shape == (0,)
    ts, _ = clock.stamp(20, (5520 + 30 + 20) / FS)
    np.testing.assert_allclose(ts, (5520 + 30 + 1 + np.arange(20)) / FS, atol=1e-9)


def test_arrival_gaps_off_never_reports_one():
    clock = SampleClock(100.0, detect_gaps=False)
    steady(clock, 20, 100.0, 10)
    _, _, gaps = steady(clock, 20, 100.0, 10, first=2100)
    assert gaps == []


def test_restart_takes_the_new_phase_and_keeps_the_rate():
    clock = SampleClock(FS)
    steady(clock, 120, FS, 20, ppm=300)
    rate = clock.rate
    assert rate == pytest.approx(FS * 1.0003, abs=FS * 1e-6)
    clock.restart()
    # A new run whose samples have nothing to do with the old indices.
    ts, gap = clock.stamp(20, 500.0)
    assert gap is None and ts[-1] == pytest.approx(500.0, abs=1e-9)
    assert np.diff(ts) == pytest.approx(1 / rate)
    assert clock.rate == rate


def test_an_early_block_moves_the_stamps_back_at_once():
    clock = SampleClock(100.0)
    ts1, _ = clock.stamp(10, 10.0)
    ts2, _ = clock.stamp(10, 10.05)  # 50 ms earlier than predicted
    assert ts2[-1] == pytest.approx(10.05, abs=1e-9)
    assert ts2[0] > ts1[-1]
    assert np.all(np.diff(ts2) > 0)


def test_a_device_far_off_its_nominal_rate_is_reported(caplog):
    clock = SampleClock(FS)
    with caplog.at_level("WARNING", logger="ampkit"):
        steady(clock, 3, FS, 20, ppm=-30_000)  # 3 % slow: a wrong rate, not a crystal
    warnings = [r.getMessage() for r in caplog.records if "nominal" in r.getMessage()]
    assert len(warnings) == 1 and "970" in warnings[0]
    assert clock.rate == pytest.approx(FS / 1.02)  # followed as far as max_skew allows


def test_empty_block():
    ts, gap = SampleClock(10.0).stamp(0, arrival=1.0)
    assert ts.shape == (0,) and gap is None


@pytest.mark.parametrize(
    "kwargs",
    [{"fs": 0}, {"fs": math.nan}, {"fs": math.inf}, {"fs": 10, "gap_threshold": 0},
     {"fs": 10, "window": 0.1}],
)
def test_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        SampleClock(**kwargs)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.floats(1e-4, 0.3, allow_nan=False), st.integers(0, 3)),
        min_size=1,
        max_size=80,
    )
)
def test_timestamps_increase_evenly_within_blocks_and_never_follow_arrival(blocks):
    clock = SampleClock(200.0, detect_gaps=True)
    t = 100.0
    last = -np.inf
    for n, dt, lost in blocks:
        t += dt
        ts, _ = clock.stamp(n, arrival=t, lost=lost)
        assert len(ts) == n
        if n:
            assert ts[0] > last
            assert ts[-1] <= t + 1e-9
            if n > 1:
                step = np.diff(ts)
                assert np.all(step > 0)
                # evenly spaced (what Arrivals.score(per_sample=False) relies on)
                np.testing.assert_allclose(step, step[0], rtol=1e-6, atol=1e-12)
            last = ts[-1]


# -- a day of arrivals -----------------------------------------------------------

#: Blocks of 1..100 samples, nine in ten of 100 (the fewest arrivals per
#: second: the hardest case for the fit, and the cheapest to simulate).
MOSTLY_100 = np.r_[np.full(99, 0.1 / 99), 0.9]


def day_at(ppm):
    """24 h at 1 kHz, ``ppm`` off: delays of 2 ms mean, a 100 ms stall every
    3 minutes on average, 50 samples lost at a random time."""
    seed = 1000 + ppm
    when = float(np.random.default_rng(seed).uniform(3600, 80000))
    arrivals = simulate_arrivals(
        FS, 86400.0, ppm=ppm, block_sizes=MOSTLY_100, delay=0.002, stall_every=180.0,
        stall=0.1, losses=[(when, 50)], seed=seed,
    )
    clock = SampleClock(FS)
    score = arrivals.score(clock.stamp, settle=30.0, per_sample=False)
    lost_block = int(np.flatnonzero(arrivals.lost)[0])
    return {
        "ppm": ppm,
        "median": score.median, "p99": score.p99, "max": score.max,
        "gaps": [(block - lost_block, gap.n_missing) for block, gap in score.gaps],
        "undecided_s": score.undecided / FS,
        "rate_error_ppm": (clock.rate / arrivals.true_rate - 1) * 1e6,
    }


def test_a_day_at_every_skew():
    """The issue's acceptance test: 24 h at 1 kHz for each clock error,
    after 30 s: p99 <= 1 ms, max <= 2 ms, the loss found once, +-1 sample.

    The seven days run in two processes (about 1 M blocks each); the
    samples between the loss and its report are not scored (the clock
    cannot know yet: it waits for the blocks to stay late, see
    ``SampleClock``), and must be fewer than a second's worth.
    """
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(day_at, SKEWS))
    for r in results:
        assert r["p99"] <= 1e-3, r
        assert r["max"] <= 2e-3, r
        assert len(r["gaps"]) == 1, r
        delay, n_missing = r["gaps"][0]
        assert 0 <= delay <= 20 and abs(n_missing - 50) <= 1, r
        assert r["undecided_s"] < 1.0, r
        assert abs(r["rate_error_ppm"]) < 1.0, r


@pytest.mark.parametrize("ppm", SKEWS)
def test_an_hour_of_blocks_of_every_size(ppm):
    """1 h with block sizes uniform in 1..100, scored sample by sample."""
    arrivals = simulate_arrivals(
        FS, 3600.0, ppm=ppm, block_sizes=(1, 100), losses=[(1800.0, 50)], seed=ppm + 1007,
    )
    score = arrivals.score(SampleClock(FS).stamp, settle=30.0)
    assert score.p99 <= 1e-3 and score.max <= 2e-3, score.max
    assert [abs(gap.n_missing - 50) <= 1 for _, gap in score.gaps] == [True]


def test_single_sample_blocks_with_a_counter():
    """10 min of one-sample blocks from a device that counts its samples
    (the Cyton's case): the counter's losses, no arrival-time detection."""
    arrivals = simulate_arrivals(
        FS, 600.0, ppm=-1000, block_sizes=1, losses=[(100.0, 7), (300.0, 2000)], seed=3,
    )
    clock = SampleClock(FS, detect_gaps=False)
    score = arrivals.score(clock.stamp, settle=30.0, counters=True)
    assert score.gaps == [] and score.undecided == 0
    assert score.p99 <= 1e-3 and score.max <= 2e-3, score.max


# -- RecentStamps ------------------------------------------------------------


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


# -- end to end: the drivers against their simulators, clocks 0.2 % off ------

E2E_SECONDS = 30.0
E2E_FROM = 10.0  # judged after this many seconds


def _acquire(amp, seconds, column=None):
    """Read a decorated amp for ``seconds``: stamps, one data column, the rate."""
    stamps, values = [], []
    amp.start(marker_port=None)
    t_end = local_clock() + seconds
    try:
        while local_clock() < t_end:
            block = amp.get_block()
            stamps.append(block.timestamps)
            if column is not None:
                values.append(block.data[:, column])
        rate = amp.effective_rate
    finally:
        amp.stop()
        amp.close()
    return np.concatenate(stamps), (np.concatenate(values) if values else None), rate


def _rda_indices(values, resolution=0.1):
    """Sample indices from channel 0 (the simulator's counter, mod 30000)."""
    raw = np.rint(values / resolution).astype(np.int64)
    step = np.diff(raw) % COUNTER_MODULUS
    return raw[0] + np.concatenate([[0], np.cumsum(step)])


def _rda_via_cli(ppm, out):
    """``ampkit sim rda --ppm``: the true schedule from the line it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ampkit.cli", "sim", "rda", "--port", "0", "--channels", "2",
         "--marker-rate", "0", "--ppm", str(ppm), "-d", str(E2E_SECONDS + 15)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        port = int(re.search(r":(\d+):", proc.stdout.readline()).group(1))
        sent, rate = re.search(r"sent at (\S+) \+ k / (\S+) s", proc.stdout.readline()).groups()
        stamps, values, measured = _acquire(ampkit.get_amp("rda", port=port), E2E_SECONDS, 0)
    finally:
        proc.terminate()
        proc.wait(10)
    out.update(stamps=stamps, truth=float(sent) + _rda_indices(values) / float(rate),
               rate=measured, true_rate=float(rate))


def _rda_with_lsl(ppm, out):
    """In-process simulator; the decorated amp also publishes to LSL, whose
    consumer must see the same (corrected) times."""
    name = f"timing-{uuid.uuid4().hex[:8]}"
    with RDASimulator(port=0, channels=2, marker_rate=0, ppm=ppm) as sim:
        amp = ampkit.get_amp("rda", port=sim.port)
        amp.start(marker_port=None, lsl=name)
        inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, 1, 10)[0], recover=False)
        inlet.open_stream(10)
        stamps, values = [], []
        t_end = local_clock() + E2E_SECONDS
        try:
            while local_clock() < t_end:
                block = amp.get_block()
                stamps.append(block.timestamps)
                values.append(block.data[:, 0])
            rate = amp.effective_rate
            received = []
            deadline = local_clock() + 10
            total = sum(len(s) for s in stamps)
            while sum(len(r) for r in received) < total and local_clock() < deadline:
                _, ts = inlet.pull_chunk(timeout=0.5, max_samples=100_000)
                received.append(np.asarray(ts))
            inlet.close_stream()
        finally:
            amp.stop()
            amp.close()
        stamps = np.concatenate(stamps)
        truth = sim.sample_time(_rda_indices(np.concatenate(values)))
    out.update(stamps=stamps, truth=truth, rate=rate, true_rate=sim.true_rate,
               lsl=np.concatenate(received))


def _cyton(ppm, out):
    with CytonSimulator(ppm=ppm) as sim:
        stamps, values, rate = _acquire(ampkit.get_amp("cyton", port=sim.port), E2E_SECONDS, 0)
        index = np.arange(len(stamps))
        # Every sample came, in order: the values are the simulator's signal.
        expected = sim.expected_uv(index)[:, 0]
        np.testing.assert_allclose(values, expected, atol=0.1)
        out.update(stamps=stamps, truth=sim.sample_time(index), rate=rate,
                   true_rate=sim.true_rate)


def test_drivers_follow_simulators_whose_clocks_are_off():
    """rda and cyton against their simulators at -2000 and +2000 ppm, 30 s
    (concurrently): after 10 s every stamp within 2 ms of the time the
    simulator sent the sample; the measured rate within 50 ppm; an LSL
    consumer gets the same times. (Stamping at the nominal rate was 20 ms
    off after 10 s, 60 ms after 30 s.)"""
    runs = {
        "rda -2000 (ampkit sim rda --ppm)": (_rda_via_cli, -2000),
        "rda +2000 (and LSL)": (_rda_with_lsl, 2000),
        "cyton -2000": (_cyton, -2000),
        "cyton +2000": (_cyton, 2000),
    }
    results = {name: {} for name in runs}
    errors = {}

    def run(name, func, ppm):
        try:
            func(ppm, results[name])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[name] = exc

    threads = [threading.Thread(target=run, args=(name, *job)) for name, job in runs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(E2E_SECONDS + 60)
    assert not errors, errors
    for name, r in results.items():
        late = r["truth"] >= r["truth"][0] + E2E_FROM
        err = np.abs(r["stamps"] - r["truth"])[late]
        assert late.sum() > 15 * 240, name
        assert err.max() <= 2e-3, (name, err.max())
        assert np.all(np.diff(r["stamps"]) > 0), name
        assert r["rate"] == pytest.approx(r["true_rate"], rel=50e-6), name
        if "lsl" in r:
            np.testing.assert_allclose(r["lsl"], r["stamps"], rtol=0, atol=1e-9)
