"""Tests of ampkit.buffer.AmpWatcher fed by real drivers through ampkit.get_amp."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import ampkit
from ampkit.buffer import AmpWatcher
from ampkit.drivers.random import RandomAmp
from ampkit.errors import ConfigurationError, StateError


def update_until(aw, n, max_updates=100_000):
    for _ in range(max_updates):
        if aw.n_new >= n:
            return
        aw.update()
    raise AssertionError(f"only {aw.n_new} of {n} samples after {max_updates} updates")


def test_random_amp_fills_and_wraps():
    amp = ampkit.get_amp("random", fs=1000, channels=4)
    aw = AmpWatcher(amp, buffer_size_s=0.25, view_s=0.1)
    assert aw.buffer.shape == (250, 4) and aw.buffer.dtype == np.float32
    assert aw.ring_buffer.view_rows == 100
    assert aw.channel_names == ["Ch_0", "Ch_1", "Ch_2", "Ch_3"]
    with amp:
        amp.start()
        while aw.n_new < 600:
            aw.update()
            # the newest 0.1 s is a view into the buffer wherever the ring is
            last = aw.get_last(100)
            assert np.shares_memory(last, aw.ring_buffer._store)
            assert_array_equal(last, aw.unfold_buffer()[250 - len(last) :])
        amp.stop()
    rb = aw.ring_buffer
    assert rb.n_added == aw.n_new == amp.n_samples
    t = aw.unfold_buffer_t()
    # synthetic drivers know exact sample times: 1 ms apart, on local_clock
    assert_allclose(np.diff(t), 1e-3, rtol=1e-6)
    assert t[-1] == aw.last_t <= ampkit.local_clock()
    assert_array_equal(aw.get_last(100), aw.unfold_buffer()[-100:])
    assert_array_equal(aw.get_last_t(100), t[-100:])
    assert aw.samples.shape[1] == 4 and len(aw.samples) == len(aw.times)
    assert aw.times[-1] == aw.last_t
    assert not np.shares_memory(aw.samples, aw.buffer)


def test_sine_amp_content_is_exact():
    amp = ampkit.get_amp("sine", f=7, fs=500, channels=3, amplitude=2.0)
    aw = AmpWatcher(amp, buffer_size_s=0.5)
    amp.start()
    try:
        update_until(aw, 400)  # more than the 250 rows: the ring wraps
    finally:
        amp.stop()
    n = aw.ring_buffer.n_added
    k = np.arange(n - 250, n)  # the sample numbers now in the buffer
    expected = (2.0 * np.sin(2 * np.pi * 7 * k / 500)).astype(np.float32)
    data = aw.unfold_buffer()
    assert_allclose(data, np.repeat(expected[:, None], 3, axis=1), atol=1e-5)
    assert_allclose(np.diff(aw.unfold_buffer_t()), 1 / 500, rtol=1e-6)


def test_replay_data_and_markers():
    data = np.arange(300 * 2, dtype=np.float32).reshape(300, 2)
    markers = [(50.0, "S 1"), (555.0, "S 2"), (1000.0, "S 3"), (2990.0, "end")]
    amp = ampkit.get_amp(
        "replay", data=data, marker=markers, channels=["C3", "C4"], fs=100,
        realtime=False, blocksize_samples=20,
    )
    aw = AmpWatcher(amp, buffer_size_s=1, marker_buffer_size=3)
    amp.start()
    for _ in range(15):  # 15 blocks of 20 = all 300 samples
        aw.update()
    amp.stop()
    assert aw.n_new == 300
    assert_array_equal(aw.unfold_buffer(), data[-100:])
    assert_array_equal(aw.get_last(7), data[-7:])
    assert not np.shares_memory(aw.samples, data)  # samples is the watcher's own copy
    assert_array_equal(aw.samples, data[-20:])
    # 4 markers into a 3-marker buffer: the newest three, oldest first
    assert aw.n_new_markers == 4
    got = aw.get_markers()
    assert [text for _, text in got] == ["S 2", "S 3", "end"]
    t = aw.unfold_buffer_t()
    t0 = t[-1] - 299 / 100  # time of sample 0
    assert_allclose([time for time, _ in got], [t0 + 0.555, t0 + 1.0, t0 + 2.99], atol=1e-9)
    assert aw.marker_buffer.unfold_buffer()[:, 0].tolist() == ["S 2", "S 3", "end"]
    # markers of the newest window only
    assert [text for _, text in aw.get_markers(since=aw.get_last_t(100)[0])] == ["end"]


def test_markers_added_through_the_decorator():
    amp = ampkit.get_amp("random", fs=1000, channels=2)
    aw = AmpWatcher(amp)
    assert aw.get_markers() == []
    amp.start()
    try:
        aw.update()
        stamp = ampkit.local_clock()
        amp.add_marker("go", stamp)
        while aw.n_new_markers < 1:
            aw.update()
    finally:
        amp.stop()
    assert aw.get_markers() == [(stamp, "go")]
    assert aw.marker_buffer.last_t == stamp


def test_reconfigured_amp_needs_a_new_connect():
    amp = ampkit.get_amp("random", fs=200, channels=3)
    aw = AmpWatcher(amp)
    amp.configure(fs=200, channels=5)
    amp.start()
    try:
        with pytest.raises(StateError, match="connect_to_stream"):
            aw.update()
        aw.connect_to_stream()
        assert aw.buffer.shape == (400, 5)
        update_until(aw, 10)
    finally:
        amp.stop()


def test_errors_and_life_cycle():
    with pytest.raises(ConfigurationError, match="decorated amp"):
        AmpWatcher(RandomAmp())  # a bare driver has no get_block()
    with pytest.raises(ConfigurationError, match="configure the amp"):
        AmpWatcher(ampkit.get_amp("replay"))  # nothing to replay yet
    with pytest.raises(ConfigurationError):
        AmpWatcher(ampkit.get_amp("random"), buffer_size_s=0)
    with pytest.raises(ConfigurationError, match="view_s"):
        AmpWatcher(ampkit.get_amp("random"), view_s=-1)
    amp = ampkit.get_amp("random", fs=100, channels=1)
    with AmpWatcher(amp) as aw:
        with pytest.raises(StateError):  # the amp is not running
            aw.update()
    with pytest.raises(StateError, match="disconnect"):
        aw.update()
    assert aw.buffer.shape == (200, 1)  # still readable


def test_lsl_driver_feeds_the_watcher():
    import uuid

    import pylsl  # LSLAPICFG is set by tests/conftest.py

    name = f"ampkit-aw-{uuid.uuid4().hex}"
    out = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 2, 100.0, "float32", name))
    mname = f"{name}-markers"
    mout = pylsl.StreamOutlet(pylsl.StreamInfo(mname, "Markers", 1, 0.0, "string", mname))
    data = np.arange(600, dtype=np.float32).reshape(300, 2)
    stamps = pylsl.local_clock() + np.arange(300) / 100.0
    with ampkit.get_amp("lsl", name=name, marker_stream=True, timeout=10) as amp:
        aw = AmpWatcher(amp, buffer_size_s=1)
        assert aw.buffer.shape == (100, 2)
        amp.start()
        for start in range(0, 300, 50):
            out.push_chunk(data[start : start + 50], stamps[start : start + 50].tolist())
        mout.push_sample(["S 250"], stamps[250])
        for _ in range(500):  # the driver waits at most 0.1 s per read
            if aw.n_new >= 300 and aw.n_new_markers >= 1:
                break
            aw.update()
        amp.stop()
    assert aw.n_new == 300 and aw.n_new_markers == 1
    assert_array_equal(aw.unfold_buffer(), data[-100:])
    assert_allclose(aw.unfold_buffer_t(), stamps[-100:], rtol=0, atol=1e-9)
    [(t, text)] = aw.get_markers()
    assert text == "S 250" and abs(t - stamps[250]) < 1e-9


def test_rda_driver_feeds_the_watcher():
    from ampkit.sim.rda import COUNTER_MODULUS, RDASimulator

    with RDASimulator(
        port=0, channels=["Cnt", "Fz"], fs=1000.0, block_size=10, resolution=[1.0, 0.5],
        marker_rate=20,
    ) as sim:
        with ampkit.get_amp("rda", port=sim.port) as amp:
            aw = AmpWatcher(amp, buffer_size_s=0.5)
            assert aw.channel_names == ["Cnt", "Fz"]
            amp.start()
            update_until(aw, 1500)
            amp.stop()
    # channel 0 counts the simulator's samples: the buffer holds an unbroken run
    counter = aw.unfold_buffer()[:, 0].astype(np.int64)
    assert np.all(np.diff(counter) % COUNTER_MODULUS == 1)
    t = aw.unfold_buffer_t()
    assert np.all(np.diff(t) > 0)
    markers = aw.get_markers(since=t[0])
    assert aw.n_new_markers > 0 and markers
    for time_s, text in markers:  # each marker sits on the time of one of the samples
        assert text and np.min(np.abs(t - time_s)) < 1e-6


def test_a_watcher_as_a_service_sees_every_block_whoever_reads():
    """amp.add_service(watcher): blocks read with get_data() (another
    reader's loop, ampkit serve) fill the watcher; update() reads nothing."""
    amp = ampkit.get_amp("random", fs=1000, channels=3)
    aw = AmpWatcher(amp, buffer_size_s=2)
    with amp:
        amp.start(marker_port=None)
        amp.add_service(aw)
        assert aw.fed
        amp.add_marker("mark")
        read = 0
        while read < 300:
            read += len(amp.get_data()[0])
        before = aw.n_new
        aw.update()  # no read of its own: the reader's blocks feed it
        assert aw.n_new == before == read == amp.n_samples
        assert [text for _, text in aw.get_markers()] == ["mark"]
        amp.remove_service(aw)
        amp.get_data()
        assert aw.n_new == read  # no longer fed
        amp.stop()
    # Not a service any more: the buffers stay readable.
    assert aw.get_last(read).shape == (read, 3)
