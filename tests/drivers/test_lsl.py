"""The ``lsl`` driver against real pylsl outlets on the loopback (LSLAPICFG from conftest)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pylsl
import pytest

import ampkit
from ampkit.block import GAP_MARKER
from ampkit.drivers.lsl import LSLAmp
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    StateError,
)
from ampkit.lsl import lsl_predicate


def unique(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_outlet(name, labels=None, units=None, fs=100.0, fmt="float32", stype="EEG",
                source_id=None, n=None):
    n = len(labels) if labels is not None else n
    info = pylsl.StreamInfo(name, stype, n, fs, fmt, source_id or name)
    if labels is not None:
        chans = info.desc().append_child("channels")
        for i, label in enumerate(labels):
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            if units is not None:
                ch.append_child_value("unit", units[i])
    return pylsl.StreamOutlet(info)


def marker_outlet(name, fmt="string", stype="Markers"):
    return pylsl.StreamOutlet(pylsl.StreamInfo(name, stype, 1, 0.0, fmt, name))


def read_until(amp, n_samples, deadline_s=10.0):
    blocks = []
    total = 0
    deadline = time.monotonic() + deadline_s
    while total < n_samples:
        assert time.monotonic() < deadline, f"only {total} of {n_samples} samples arrived"
        block = amp.get_block()
        blocks.append(block)
        total += len(block)
    return blocks


def read_with_markers(amp, out, n_samples, n_markers, t_next, fs, deadline_s=15.0):
    """Read ``n_samples`` samples and ``n_markers`` markers.

    A marker goes out with a block that holds data, so a marker that arrives
    after the last real sample needs more samples: push fillers (later
    stamps, value -1) while waiting.
    """
    blocks, total, marks = [], 0, 0
    deadline = time.monotonic() + deadline_s
    while total < n_samples or marks < n_markers:
        assert time.monotonic() < deadline, f"{total} samples, {marks} markers arrived"
        if total >= n_samples:
            out.push_chunk(np.full((1, len(amp.get_channels())), -1, np.float32), [t_next])
            t_next += 1.0 / fs
        block = amp.get_block()
        blocks.append(block)
        total += len(block)
        marks += len(block.markers)
    return blocks


def placed_markers(blocks):
    """``(sample, text)`` of every marker: the first sample at or after its time.

    By absolute time over all blocks: a marker whose packet arrives after its
    sample was delivered comes with a later block (with its true time), as
    the Amplifier contract allows; recordings place it at its sample.
    """
    stamps = np.concatenate([b.timestamps for b in blocks])
    return [(int(np.searchsorted(stamps, t)), text) for b in blocks for t, text in b.markers]


def test_every_sample_timestamp_and_marker_arrives():
    name = unique()
    labels = ["Fz", "Cz", "Pz", "EOG"]
    out = make_outlet(name, labels, ["microvolts", "microvolts", "uV", "millivolts"], fs=250)
    mout = marker_outlet(f"{name}-markers")
    with ampkit.get_amp("lsl", name=name, marker_stream=True, timeout=5) as amp:
        assert amp.get_channels() == labels
        assert amp.get_units() == ["µV", "µV", "µV", "mV"]
        assert amp.get_sampling_frequency() == 250.0
        amp.start()
        rng = np.random.default_rng(1)
        data = rng.standard_normal((1000, 4)).astype(np.float32)
        stamps = pylsl.local_clock() + np.arange(1000) / 250.0
        sent_markers = {0: "first", 137: "S 1", 500: "middle", 999: "last"}
        # Chunks of irregular sizes, markers pushed with the stamps of their samples.
        i = 0
        for size in [1, 7, 100, 250, 42, 600]:
            out.push_chunk(data[i:i + size], stamps[i:i + size].tolist())
            for row, text in sent_markers.items():
                if i <= row < i + size:
                    mout.push_sample([text], stamps[row])
            i += size
        assert i == 1000
        blocks = read_with_markers(amp, out, 1000, len(sent_markers), stamps[-1] + 0.004, 250)
        amp.stop()
    got = np.concatenate([b.data for b in blocks])[:1000]
    np.testing.assert_array_equal(got, data)
    got_ts = np.concatenate([b.timestamps for b in blocks])[:1000]
    # Same computer: the stream's own timestamps, exactly.
    np.testing.assert_allclose(got_ts, stamps, rtol=0, atol=1e-9)
    assert placed_markers(blocks) == sorted(sent_markers.items())
    assert all(b.index == sum(len(x) for x in blocks[:k]) for k, b in enumerate(blocks))


def test_libmushu_alias_and_relative_markers():
    # libmushu's lslamp took the first stream of type EEG and the first of
    # type Markers; unique types here, as other test runs may publish those.
    name = unique()
    data_type, marker_type = unique("EEG"), unique("Markers")
    out = make_outlet(name, ["a", "b"], fs=100, stype=data_type)
    mout = marker_outlet(unique("mk"), stype=marker_type)
    amp = ampkit.get_amp("lslamp")
    amp.configure(type=data_type, marker_type=marker_type)
    assert amp.marker_stream_name == mout.get_info().name()
    amp.start()
    try:
        stamps = pylsl.local_clock() + np.arange(50) / 100.0
        out.push_chunk(np.ones((50, 2), np.float32), stamps.tolist())
        mout.push_sample(["hello"], stamps[20] + 0.004)  # between samples 20 and 21
        got, markers, total = [], [], 0
        deadline = time.monotonic() + 15
        t_next = stamps[-1] + 0.01
        while total < 50 or not markers:
            assert time.monotonic() < deadline
            if total >= 50:  # markers go out with data: push more while waiting
                out.push_chunk(np.ones((1, 2), np.float32), [t_next])
                t_next += 0.01
            data, mk = amp.get_data()
            markers += [(ms + total * 10.0, text) for ms, text in mk]
            total += len(data)
            got.append(data)
    finally:
        amp.stop()
        amp.close()
    assert total >= 50
    assert len(markers) == 1 and markers[0][1] == "hello"
    assert markers[0][0] == pytest.approx(204.0, abs=1e-6)


def test_numeric_marker_stream_becomes_text():
    name = unique()
    out = make_outlet(name, ["x"], fs=100)
    mout = marker_outlet(f"{name}-trig", fmt="int32")
    with ampkit.get_amp("lsl", name=name, marker_stream=f"{name}-trig") as amp:
        amp.start()
        stamps = pylsl.local_clock() + np.arange(10) / 100.0
        out.push_chunk(np.zeros((10, 1), np.float32), stamps.tolist())
        mout.push_sample([7], stamps[3])
        blocks = read_with_markers(amp, out, 10, 1, stamps[-1] + 0.01, 100)
        amp.stop()
    assert placed_markers(blocks) == [(3, "7")]


def test_stream_without_description_and_double_format():
    name = unique()
    out = make_outlet(name, None, fs=500, fmt="double64", n=3)
    with ampkit.get_amp("lsl", name=name) as amp:
        assert amp.get_channels() == ["Ch_0", "Ch_1", "Ch_2"]
        assert amp.get_units() == ["µV"] * 3
        amp.start()
        data = np.arange(30, dtype=np.float64).reshape(10, 3) + 0.5
        out.push_chunk(data)
        blocks = read_until(amp, 10)
        amp.stop()
    got = np.concatenate([b.data for b in blocks])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, data.astype(np.float32))


def test_resolves_by_type_and_source_id():
    name = unique()
    sid = unique("sid")
    _out = make_outlet(name, ["a"], stype="ExoticType", source_id=sid)
    amp = LSLAmp()
    amp.configure(type=None, source_id=sid, timeout=5)
    assert amp.stream_name == name
    amp.configure(type="ExoticType", source_id=sid, timeout=5)
    assert amp.stream_name == name
    with pytest.raises(AmpNotAvailableError):
        amp.configure(type="EEG", source_id=sid, timeout=0.3)
    amp.close()


def test_nothing_found_is_a_clear_error_within_the_timeout():
    name = unique("absent")
    t0 = time.monotonic()
    with pytest.raises(AmpNotAvailableError) as info:
        ampkit.get_amp("lsl", name=name, timeout=0.5)
    # Bounded, not exact: on a loaded machine liblsl sometimes ends a fruitless
    # search a few seconds late.
    assert time.monotonic() - t0 < 15.0
    message = str(info.value)
    assert f"name='{name}'" in message and "type='EEG'" in message and "0.5 s" in message


def test_missing_marker_stream_is_a_clear_error():
    name = unique()
    _out = make_outlet(name, ["a"])
    with pytest.raises(AmpNotAvailableError, match=f"marker stream.*{name}-nope"):
        ampkit.get_amp("lsl", name=name, marker_stream=f"{name}-nope", timeout=0.5)


def test_irregular_stream_refused_unless_opted_in():
    name = unique()
    out = make_outlet(name, ["a", "b"], fs=pylsl.IRREGULAR_RATE)
    with pytest.raises(ConfigurationError, match="irregular.*irregular_fs"):
        ampkit.get_amp("lsl", name=name)
    with ampkit.get_amp("lsl", name=name, irregular_fs=20) as amp:
        assert amp.get_sampling_frequency() == 20.0
        amp.start()
        now = pylsl.local_clock()
        stamps = now + np.array([0.0, 0.013, 0.5, 0.51, 2.0])
        out.push_chunk(np.arange(10, dtype=np.float32).reshape(5, 2), stamps.tolist())
        blocks = read_until(amp, 5)
        amp.stop()
    np.testing.assert_allclose(np.concatenate([b.timestamps for b in blocks]), stamps, atol=1e-9)
    # Irregular spacing is not a gap.
    assert not [m for b in blocks for _, m in b.markers]


def test_string_stream_refused_as_data():
    name = unique()
    _out = marker_outlet(name)
    with pytest.raises(ConfigurationError, match="strings.*marker_stream"):
        ampkit.get_amp("lsl", name=name, type=None)


@pytest.mark.parametrize(
    "config",
    [
        {"timeout": 0}, {"timeout": "5"}, {"name": ""}, {"name": 3}, {"max_samples": 0},
        {"wait": -1}, {"irregular_fs": -5}, {"marker_stream": True}, {"marker_stream": 3},
        {"clocksync": "yes"}, {"marker_type": ""},
    ],
)
def test_bad_configuration(config):
    with pytest.raises(ConfigurationError):
        LSLAmp().configure(**config)


def test_state_errors_and_max_samples():
    name = unique()
    out = make_outlet(name, ["a"], fs=1000)
    with ampkit.get_amp("lsl", name=name, max_samples=64) as amp:
        with pytest.raises(StateError):
            amp.get_data()
        amp.start()
        with pytest.raises(StateError):
            amp.configure(name=name)
        out.push_chunk(np.arange(300, dtype=np.float32)[:, None])
        blocks = read_until(amp, 300)
        amp.stop()
        with pytest.raises(StateError):
            amp.get_data()
    assert max(len(b) for b in blocks) <= 64
    np.testing.assert_array_equal(np.concatenate([b.data for b in blocks])[:, 0], np.arange(300))


def test_empty_block_after_wait_when_nothing_arrives():
    name = unique()
    _out = make_outlet(name, ["a"])
    with ampkit.get_amp("lsl", name=name, wait=0.05) as amp:
        amp.start()
        t0 = time.monotonic()
        block = amp.get_block()
        assert len(block) == 0 and block.data.shape == (0, 1)
        assert time.monotonic() - t0 < 2.0
        amp.stop()


def test_vanished_stream_raises_connection_lost():
    name = unique()
    out = make_outlet(name, ["a"])
    with ampkit.get_amp("lsl", name=name, wait=0.05) as amp:
        amp.start()
        out.push_chunk(np.zeros((5, 1), np.float32))
        read_until(amp, 5)
        del out
        deadline = time.monotonic() + 10
        with pytest.raises(ConnectionLostError, match=name):
            while time.monotonic() < deadline:
                amp.get_block()


def test_reconnect_waits_for_the_stream_to_come_back():
    name = unique()
    sid = unique("sid")
    out = make_outlet(name, ["a"], fs=100, source_id=sid)
    mout = marker_outlet(f"{name}-markers")
    with ampkit.get_amp(
        "lsl", name=name, marker_stream=True, reconnect=True, wait=0.05
    ) as amp:
        amp.start()
        t = pylsl.local_clock()
        out.push_chunk(np.zeros((5, 1), np.float32), (t + np.arange(5) / 100).tolist())
        read_until(amp, 5)
        del out, mout
        for _ in range(10):  # the streams are gone; reads return nothing, without error
            assert len(amp.get_block()) == 0
        out = make_outlet(name, ["a"], fs=100, source_id=sid)
        mout = marker_outlet(f"{name}-markers")
        # Push until the recovered inlet is subscribed and samples flow again.
        deadline = time.monotonic() + 20
        got = []
        while not got:
            assert time.monotonic() < deadline, "stream did not come back"
            t = pylsl.local_clock()
            out.push_chunk(np.ones((5, 1), np.float32), (t + np.arange(5) / 100).tolist())
            block = amp.get_block()
            if len(block):
                got.append(block)
        # The marker stream came back too.
        while not mout.have_consumers():
            assert time.monotonic() < deadline, "marker stream did not come back"
            amp.get_block()
        t = pylsl.local_clock()
        mout.push_sample(["back"], t + 0.02)
        later = []
        deadline = time.monotonic() + 20
        while not any(b.markers for b in later):
            assert time.monotonic() < deadline, "marker did not arrive"
            # Markers go out with the block holding their time: keep data flowing.
            out.push_chunk(np.ones((5, 1), np.float32), (t + np.arange(5) / 100).tolist())
            t += 0.05
            later.append(amp.get_block())
        amp.stop()
    assert [text for b in later for _, text in b.markers] == ["back"]
    np.testing.assert_array_equal(got[0].data, 1.0)
    # The interruption is marked as a gap at the first sample after it.
    texts = [text for _, text in got[0].markers]
    assert len(texts) == 1 and texts[0].startswith(GAP_MARKER.split("{")[0])


def test_predicate_quoting():
    assert lsl_predicate(name="it's") == "name=\"it's\""
    assert lsl_predicate(name=None, type=None) == ""
    with pytest.raises(ConfigurationError):
        lsl_predicate(name="'\"")


def test_reconnect_never_blocks_while_the_stream_is_away():
    name = unique()
    out = make_outlet(name, ["a", "b"], fs=100)
    mout = marker_outlet(f"{name}-markers")
    with ampkit.get_amp("lsl", name=name, marker_stream=True, reconnect=True, wait=0.05) as amp:
        amp.start()
        out.push_chunk(np.zeros((5, 2), np.float32))
        read_until(amp, 5)
        del out, mout
        t0 = time.monotonic()
        for _ in range(20):
            t = time.monotonic()
            assert len(amp.get_block()) == 0
            assert time.monotonic() - t < 2.0
        assert time.monotonic() - t0 < 10.0
        t = time.monotonic()
        amp.stop()
        assert time.monotonic() - t < 2.0


def test_reconnect_refuses_a_stream_that_came_back_different():
    name = unique()
    out = make_outlet(name, ["a"], fs=100)
    with ampkit.get_amp("lsl", name=name, reconnect=True, wait=0.05) as amp:
        amp.start()
        del out
        _out2 = make_outlet(name, ["a", "b", "c"], fs=100)  # kept alive by the name
        deadline = time.monotonic() + 15
        with pytest.raises(ConnectionLostError, match="3 channels instead of 1"):
            while time.monotonic() < deadline:
                amp.get_block()


def test_restart_and_forced_time_correction():
    name = unique()
    out = make_outlet(name, ["a"], fs=100)
    # clocksync=True: LSL's time correction even for a stream from this computer;
    # the correction is then an estimate of zero (well under a millisecond).
    with ampkit.get_amp("lsl", name=name, clocksync=True) as amp:
        for run in range(2):
            amp.start()
            stamps = pylsl.local_clock() + np.arange(20) / 100.0
            out.push_chunk(np.full((20, 1), run, np.float32), stamps.tolist())
            blocks = read_until(amp, 20)
            amp.stop()
            got = np.concatenate([b.data for b in blocks])
            np.testing.assert_array_equal(got[:, 0], run)
            got_ts = np.concatenate([b.timestamps for b in blocks])
            np.testing.assert_allclose(got_ts, stamps, rtol=0, atol=1e-3)


def test_stream_gone_before_start():
    name = unique()
    out = make_outlet(name, ["a"])
    amp = ampkit.get_amp("lsl", name=name, timeout=1)
    del out
    with pytest.raises((ConnectionLostError, AmpNotAvailableError), match=name):
        amp.start()
    assert not amp.running
    amp.close()


def test_stamp_unanchored_backwards_from_the_first_real_time():
    from ampkit.clock import local_clock
    from ampkit.drivers.lsl import stamp_unanchored

    ts = np.array([0.001, 0.002, 0.003, 50.0, 50.001])
    assert stamp_unanchored(ts, 40.0, 0.001, None) == (3, None)
    np.testing.assert_allclose(ts, [49.997, 49.998, 49.999, 50.0, 50.001])
    ts = np.array([41.0, 41.1])
    assert stamp_unanchored(ts, 40.0, 0.1, None) == (0, None)
    np.testing.assert_array_equal(ts, [41.0, 41.1])
    # No real time in the block: continue the estimate, or end now.
    ts = np.array([0.001, 0.002])
    n, nxt = stamp_unanchored(ts, 40.0, 0.01, 45.0)
    assert n == 2 and nxt == pytest.approx(45.02)
    np.testing.assert_allclose(ts, [45.0, 45.01])
    ts = np.array([0.001, 0.002, 0.003])
    n, nxt = stamp_unanchored(ts, 40.0, 0.5, None)
    now = local_clock()
    assert n == 3 and now - 1.0 < ts[-1] <= now and nxt == pytest.approx(ts[-1] + 0.5)
    np.testing.assert_allclose(np.diff(ts), 0.5)


PUSHER = """
import sys, time, numpy as np, pylsl
info = pylsl.StreamInfo(sys.argv[1], "EEG", 1, 1e6, "float32", sys.argv[1])
out = pylsl.StreamOutlet(info)
chunk = np.zeros((1024, 1), np.float32)
print("ready", flush=True)
end = time.monotonic() + 30
while time.monotonic() < end:
    out.push_chunk(chunk)
"""


def test_subscribing_in_the_middle_of_a_chunk(caplog):
    # liblsl sends only the first sample of a chunk with a time; the others
    # are deduced from the sample before. An inlet that subscribes in the
    # middle of a chunk has none before, and gets times near zero for the rest
    # of that chunk: the driver must give them real ones (and no false gap).
    import logging
    import subprocess
    import sys

    name = unique()
    proc = subprocess.Popen([sys.executable, "-c", PUSHER, name], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with ampkit.get_amp("lsl", name=name, timeout=10) as amp:
            for _attempt in range(5):
                caplog.clear()
                with caplog.at_level(logging.INFO, logger="ampkit"):
                    t_open = pylsl.local_clock()
                    amp.start()
                    blocks = read_until(amp, 5000)
                    amp.stop()
                stamps = np.concatenate([b.timestamps for b in blocks])
                assert stamps.min() > t_open - 10.0
                assert not [text for b in blocks for _, text in b.markers]
                if any("no time base" in r.getMessage() for r in caplog.records):
                    break
            else:
                pytest.fail("never subscribed in the middle of a chunk")
    finally:
        proc.kill()
        proc.wait()
