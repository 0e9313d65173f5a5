"""Tests of ampkit.buffer.StreamWatcher against real LSL outlets (loopback only).

tests/conftest.py points LSLAPICFG at tests/lsl-loopback.cfg before pylsl is
imported. Every test uses its own uuid stream name so no test sees another's
streams.
"""

import time
import uuid

import numpy as np
import pylsl
import pytest
from dareplane_peer import DareplaneStreamWatcher
from numpy.testing import assert_array_equal

from ampkit.buffer import DEFAULT_IRREGULAR_SRATE, StreamWatcher
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    StateError,
)

TIMEOUT = 10.0  # generous: the machine is shared and loaded


def unique(prefix="ampkit-test"):
    return f"{prefix}-{uuid.uuid4().hex}"


def make_outlet(name, n_ch=3, fmt="float32", srate=100.0, labels=None, stype="EEG"):
    info = pylsl.StreamInfo(name, stype, n_ch, srate, fmt, source_id=name)
    if labels is not None:
        channels = info.desc().append_child("channels")
        for label in labels:
            ch = channels.append_child("channel")
            if label is not None:
                ch.append_child_value("label", label)
            ch.append_child_value("unit", "uV")
    return pylsl.StreamOutlet(info)


def connected(name, **kwargs):
    sw = StreamWatcher(name, **kwargs)
    sw.connect_to_stream(timeout=TIMEOUT)
    return sw


def pull_until(sw, n, timeout=TIMEOUT):
    """Call update() until n_new reaches n (or fail after timeout).

    Returns ``(samples, times)`` of every update that received samples (LSL
    may hand one pushed chunk over in several pieces).
    """
    got = []
    deadline = time.monotonic() + timeout
    while sw.n_new < n:
        assert time.monotonic() < deadline, f"only {sw.n_new} of {n} samples arrived"
        before = sw.n_new
        sw.update()
        if sw.n_new > before:
            assert len(sw.samples) == len(sw.times) == sw.n_new - before
            got.append((sw.samples, sw.times))
        time.sleep(0.002)
    assert sw.n_new == n
    return got


def joined(got):
    return np.concatenate([s for s, _ in got]), np.concatenate([t for _, t in got])


FORMATS = {
    "float32": (np.float32, [[1.5, -2.25, 3e30], [0.0, -0.0, 1e-30]]),
    "double64": (np.float64, [[1.0 / 3, -1e300, 2.0**-1070], [7.0, 8.0, 9.0]]),
    "int8": (np.int8, [[-128, 127, 0], [1, -1, 5]]),
    "int16": (np.int16, [[-32768, 32767, 0], [1, -1, 5]]),
    "int32": (np.int32, [[-(2**31), 2**31 - 1, 0], [1, -1, 5]]),
    "int64": (np.int64, [[-(2**63), 2**63 - 1, 0], [1, -1, 5]]),
    "string": (object, [["S 1", "", "ü ✓"], ["a b", "x" * 300, "0"]]),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_channel_format(fmt):
    dtype, rows = FORMATS[fmt]
    name = unique()
    outlet = make_outlet(name, fmt=fmt, srate=0.0 if fmt == "string" else 100.0)
    with connected(name) as sw:
        assert sw.buffer.dtype == np.dtype(dtype)
        stamps = [1000.25, 1000.5]
        if fmt == "string":
            for row, t in zip(rows, stamps, strict=True):
                outlet.push_sample(row, t)
        else:
            outlet.push_chunk(np.array(rows, dtype=dtype), stamps)
        samples, times = joined(pull_until(sw, 2))
        if fmt != "string":
            rows = np.array(rows, dtype=dtype).tolist()  # float32 rounding
        assert sw.samples.dtype == np.dtype(dtype)
        assert samples.tolist() == rows
        assert times.tolist() == stamps
        assert sw.get_last(2).tolist() == rows
        assert sw.get_last_t(2).tolist() == stamps
        assert sw.last_t == stamps[-1]
        assert sw.unfold_buffer()[-2:].tolist() == rows


@pytest.mark.parametrize("fmt", ["string", "float32", "int16"])
def test_update_is_the_format_s_method_as_in_dareplane(fmt):
    """dareplane-utils' own tests check ``sw.update == sw.update_char_p`` (string
    streams) or ``== sw.update_numeric``; ampkit's watcher answers the same."""
    name = unique()
    outlet = make_outlet(name, n_ch=2, fmt=fmt, srate=0.0 if fmt == "string" else 100.0)
    ours = StreamWatcher(name)
    with pytest.raises(StateError, match="before connect"):
        ours.update()
    ours.connect_to_stream(timeout=TIMEOUT)
    theirs = DareplaneStreamWatcher(name)
    theirs.connect_to_stream()
    right, wrong = ("update_char_p", "update_numeric")[:: 1 if fmt == "string" else -1]
    assert theirs.update == getattr(theirs, right)
    assert ours.update == getattr(ours, right) and ours.update != getattr(ours, wrong)
    with pytest.raises(StateError, match=right):
        getattr(ours, wrong)()
    row = ["a", "b"] if fmt == "string" else [3, 4]
    outlet.push_sample(row, 5.0)
    deadline = time.monotonic() + TIMEOUT
    while ours.n_new < 1:
        assert time.monotonic() < deadline
        getattr(ours, right)()
        time.sleep(0.002)
    assert ours.get_last(1).tolist() == [row] and ours.get_last_t(1).tolist() == [5.0]
    theirs.disconnect()
    ours.disconnect()
    with pytest.raises(StateError):
        ours.update()


def test_channel_names_from_labels_with_fallbacks():
    name = unique()
    _outlet = make_outlet(name, n_ch=4, labels=["Fz", None, "Cz", ""])
    with connected(name) as sw:
        assert sw.channel_names == ["Fz", "ch_2", "Cz", "ch_4"]
    name = unique()
    _outlet2 = make_outlet(name, n_ch=3, labels=["C3"])  # fewer channel elements
    with connected(name) as sw:
        assert sw.channel_names == ["C3", "ch_2", "ch_3"]
    name = unique()
    _outlet3 = make_outlet(name, n_ch=2)  # no description at all
    with connected(name) as sw:
        assert sw.channel_names == ["ch_1", "ch_2"]


def test_buffer_size_follows_rate_and_expected_rate():
    name = unique()
    _regular = make_outlet(name, srate=250.0)
    assert len(connected(name, buffer_size_s=3).buffer) == 750
    name = unique()
    _irregular = make_outlet(name, srate=pylsl.IRREGULAR_RATE)
    assert len(connected(name, buffer_size_s=3).buffer) == 3 * DEFAULT_IRREGULAR_SRATE
    sw = StreamWatcher(name, buffer_size_s=3, expected_srate=20)
    sw.connect_to_stream(timeout=TIMEOUT)
    assert sw.buffer.shape == (60, 3) and sw.buffer_t.shape == (60,)
    sw.expected_srate = 0
    with pytest.raises(ConfigurationError):
        sw.connect_to_stream(timeout=TIMEOUT)


def test_curr_i_is_live_and_samples_are_not_overwritten():
    name = unique()
    outlet = make_outlet(name, n_ch=2, srate=10.0)
    sw = connected(name, buffer_size_s=1)  # 10 rows
    assert sw.curr_i == 0 and sw.n_new == 0
    outlet.push_chunk(np.array([[1, 2], [3, 4], [5, 6]], np.float32), [1.0, 2.0, 3.0])
    first = pull_until(sw, 3)
    assert sw.curr_i == 3 == sw.ring_buffer.curr_i
    outlet.push_chunk(np.full((4, 2), 9, np.float32), [4.0, 5.0, 6.0, 7.0])
    second = pull_until(sw, 7)
    assert sw.curr_i == 7
    # the arrays the first pulls handed out still hold the first samples
    assert joined(first)[0].tolist() == [[1, 2], [3, 4], [5, 6]]
    assert joined(second)[0].tolist() == [[9, 9]] * 4
    assert joined(second)[1].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert sw.buffer is sw.ring_buffer.buffer and sw.buffer_t is sw.ring_buffer.buffer_t
    # an update that finds nothing keeps the last samples (as dareplane does)
    last = sw.samples
    sw.update()
    assert sw.n_new == 7 and sw.samples is last
    sw.disconnect()


def test_wrapping_keeps_the_newest_rows():
    name = unique()
    outlet = make_outlet(name, n_ch=1, srate=10.0)
    sw = connected(name, buffer_size_s=1)
    values = np.arange(37, dtype=np.float32)[:, None]
    for start in range(0, 37, 5):  # chunks of 5 rows, wrapping the 10-row ring
        outlet.push_chunk(values[start : start + 5], list(values[start : start + 5, 0] + 0.5))
    pull_until(sw, 37)
    assert sw.unfold_buffer().ravel().tolist() == list(range(27, 37))
    assert sw.unfold_buffer_t().tolist() == [v + 0.5 for v in range(27, 37)]
    assert sw.buffer[sw.curr_i - 1, 0] == 36  # curr_i depends on how the chunks arrived
    assert sw.ring_buffer.n_overflow == 27
    sw.disconnect()


def test_more_samples_than_one_pull_are_drained():
    name = unique()
    outlet = make_outlet(name, n_ch=2, srate=1000.0)
    sw = connected(name, buffer_size_s=1)
    sw.chunk_buffer_size = 64  # applies at the next connect
    sw.connect_to_stream(timeout=TIMEOUT)
    assert sw.chunk_buffer.shape == (64, 2)
    data = np.arange(600, dtype=np.float32).reshape(300, 2)
    outlet.push_chunk(data, list(np.arange(300) * 0.001))
    pull_until(sw, 300)
    assert_array_equal(sw.get_last(300), data)
    sw.disconnect()


def test_get_last_s_uses_the_buffer_rate_and_view_s():
    name = unique()
    outlet = make_outlet(name, n_ch=1, srate=100.0)
    sw = connected(name, buffer_size_s=1, view_s=0.5)
    assert sw.ring_buffer.view_rows == 50
    values = np.arange(130, dtype=np.float32)[:, None]
    outlet.push_chunk(values[:60], list(np.arange(60) * 0.01))
    pull_until(sw, 60)
    outlet.push_chunk(values[60:], list(np.arange(60, 130) * 0.01))
    pull_until(sw, 130)
    assert sw.curr_i == 30  # 130 rows in a 100-row ring
    data, times = sw.get_last_s(0.5)
    assert data.ravel().tolist() == list(range(80, 130))
    assert_array_equal(times, np.arange(80, 130) * 0.01)
    assert np.shares_memory(data, sw.ring_buffer._store)  # a view although it wraps
    sw.disconnect()


def test_identifier_dict_and_string():
    name = unique()
    _eeg = make_outlet(name, n_ch=2, stype="EEG")
    _other_type = make_outlet(name, n_ch=5, stype="Markers", fmt="string", srate=0.0)
    sw = StreamWatcher()
    sw.connect_to_stream({"name": name, "type": "EEG"}, timeout=TIMEOUT)
    assert sw.name == name and sw.buffer.shape[1] == 2
    sw.connect_to_stream({"name": name, "type": "Markers"}, timeout=TIMEOUT)  # reconnect
    assert sw.buffer.shape[1] == 5 and sw.buffer.dtype == object
    sw.disconnect()
    sw2 = StreamWatcher()
    sw2.connect_to_stream({"source_id": name, "type": "EEG"}, timeout=TIMEOUT)
    assert sw2.name == "" and sw2.buffer.shape[1] == 2
    sw2.disconnect()


def test_not_found_raises_within_the_timeout():
    sw = StreamWatcher(unique("absent"))
    t0 = time.monotonic()
    with pytest.raises(AmpNotAvailableError, match="found within 0.3 s"):
        sw.connect_to_stream(timeout=0.3)
    assert time.monotonic() - t0 < 5.0
    assert sw.inlet is None
    with pytest.raises(ConfigurationError):
        StreamWatcher().connect_to_stream(timeout=0.3)  # no name to look for


def test_update_before_connect_and_after_disconnect_raise():
    sw = StreamWatcher(unique())
    assert sw.curr_i == 0 and sw.buffer.size == 0
    with pytest.raises(StateError, match="connect_to_stream"):
        sw.update()
    with pytest.raises(StateError):
        sw.unfold_buffer()
    name = unique()
    outlet = make_outlet(name, n_ch=1)
    sw = connected(name)
    outlet.push_chunk(np.ones((3, 1), np.float32), [1.0, 2.0, 3.0])
    pull_until(sw, 3)
    sw.disconnect()
    sw.disconnect()  # twice is fine
    assert sw.inlet is None
    with pytest.raises(StateError):
        sw.update()
    assert sw.get_last(3).ravel().tolist() == [1, 1, 1]  # the buffer stays readable


def test_same_results_as_dareplane_streamwatcher():
    name = unique()
    outlet = make_outlet(name, n_ch=3, srate=50.0, labels=["a", "b", "c"])
    ours = connected(name, buffer_size_s=1)
    theirs = DareplaneStreamWatcher(name, buffer_size_s=1)
    theirs.connect_to_stream()
    theirs.inlet.open_stream(TIMEOUT)  # dareplane subscribes lazily; samples before are lost
    data = np.random.default_rng(0).standard_normal((80, 3)).astype(np.float32)
    for start in range(0, 80, 7):  # pull after every chunk, so both rings wrap the same way
        stop = min(start + 7, 80)
        outlet.push_chunk(data[start:stop], list(np.arange(start, stop) * 0.02))
        pull_until(ours, stop)
        deadline = time.monotonic() + TIMEOUT
        while theirs.n_new < stop:
            assert time.monotonic() < deadline
            theirs.update()
            time.sleep(0.002)
    assert ours.channel_names == theirs.channel_names
    assert ours.buffer.dtype == theirs.ring_buffer.buffer.dtype
    assert_array_equal(ours.unfold_buffer(), theirs.unfold_buffer())
    assert_array_equal(ours.unfold_buffer_t(), theirs.unfold_buffer_t())
    assert ours.curr_i == theirs.ring_buffer.curr_i != theirs.curr_i == 0  # theirs is stale
    theirs.disconnect()
    ours.disconnect()


def test_lost_stream_raises_when_not_recovering():
    name = unique()
    outlet = make_outlet(name, n_ch=2)
    sw = connected(name, recover=False)
    outlet.push_chunk(np.ones((4, 2), np.float32), [1.0, 2.0, 3.0, 4.0])
    pull_until(sw, 4)
    del outlet
    deadline = time.monotonic() + TIMEOUT
    with pytest.raises(ConnectionLostError, match=name):
        while time.monotonic() < deadline:
            sw.update()
            time.sleep(0.01)
    assert sw.n_new == 4 and sw.get_last(4).tolist() == [[1, 1]] * 4
    sw.disconnect()


def test_watching_what_an_ampkit_amp_publishes():
    """A dareplane-style consumer of ampkit's own LSL publishing (start(lsl=...))."""
    import ampkit

    name = unique("ampkit-published")
    amp = ampkit.get_amp("random", fs=500, channels=3)
    amp.start(lsl=name, lsl_source_id=name)
    try:
        data_sw = connected(name, buffer_size_s=2)
        marker_sw = connected(f"{name}-markers")
        assert data_sw.channel_names == amp.get_channels()
        assert marker_sw.buffer.dtype == object
        blocks = []
        while sum(len(b) for b in blocks) < 300:  # everything after both subscribed
            blocks.append(amp.get_block())
        stamp = blocks[-1].timestamps[-1]
        amp.add_marker("hello", stamp)
        blocks.append(amp.get_block())
        sent = np.concatenate([b.data for b in blocks])
        sent_t = np.concatenate([b.timestamps for b in blocks])
        pull_until(data_sw, len(sent))
        pull_until(marker_sw, 1)
    finally:
        amp.stop()
    assert_array_equal(data_sw.get_last(len(sent)), sent)
    assert_array_equal(data_sw.get_last_t(len(sent)), sent_t)
    assert marker_sw.get_last(1).tolist() == [["hello"]]
    assert marker_sw.get_last_t(1)[0] == pytest.approx(stamp, abs=1e-9)
    data_sw.disconnect()
    marker_sw.disconnect()


def test_names_with_quotes():
    name = unique("it's")
    _outlet = make_outlet(name, n_ch=1)
    sw = connected(name)
    assert sw.stream.name() == name
    sw.disconnect()
    with pytest.raises(ConfigurationError, match="quote"):
        StreamWatcher("both ' and \"").connect_to_stream(timeout=0.3)
