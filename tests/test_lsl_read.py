"""The reading side of ampkit.lsl (finding streams, labels, units, inlets, pulls),
against real pylsl outlets on the loopback (LSLAPICFG from conftest).

The lsl driver (tests/drivers/test_lsl.py) and StreamWatcher
(tests/test_buffer_lsl.py) are tested through their own faces; these tests
pin what the shared functions promise to both.
"""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np
import pylsl
import pytest

from ampkit import lsl
from ampkit.buffer import lsl_channel_names
from ampkit.errors import AmpNotAvailableError, ConfigurationError, ConnectionLostError

TIMEOUT = 10.0


def unique(prefix: str = "read") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def described(n, channels, fmt="float32"):
    """A local StreamInfo whose desc has ``channels``: dicts of child values."""
    info = pylsl.StreamInfo(unique(), "EEG", n, 100.0, fmt, "sid")
    chans = info.desc().append_child("channels")
    for values in channels:
        ch = chans.append_child("channel")
        for key, value in values.items():
            ch.append_child_value(key, value)
    return info


def subscribed(name, n_ch=2, fmt="float32", fs=100.0, recover=False):
    """An outlet, and an inlet subscribed to it."""
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", n_ch, fs, fmt, name))
    [found] = lsl.resolve_streams(lsl.lsl_predicate(name=name), TIMEOUT)
    inlet = lsl.open_inlet(found, recover=recover)
    lsl.open_stream(inlet, TIMEOUT, name)
    return outlet, inlet


def pull_until(puller, inlet, n, deadline_s=TIMEOUT):
    data, stamps = [], []
    deadline = time.monotonic() + deadline_s
    while sum(len(t) for t in stamps) < n:
        assert time.monotonic() < deadline, "samples did not arrive"
        d, t = puller.take(puller.pull(inlet, wait=0.05))
        data.append(d)
        stamps.append(t)
    return np.concatenate(data), np.concatenate(stamps)


# -- finding streams ------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.5, 1.75])
def test_a_fruitless_search_keeps_its_timeout(timeout):
    # With KnownPeers, liblsl's one-shot resolve (pylsl.resolve_bypred) returned
    # 5 s late for exactly these timeouts: its unicast wave started as the
    # timeout cancelled the search, and was not cancelled (see StreamFinder);
    # the continuous resolver's teardown, when done in the caller's thread,
    # often blocked as long.
    name = unique("absent")
    for _ in range(3):
        t0 = time.monotonic()
        assert lsl.find_streams(lsl.lsl_predicate(name=name), timeout) == []
        took = time.monotonic() - t0
        assert timeout <= took < timeout + 2.0, took


def test_found_at_once_by_any_property():
    name = unique()
    sid = unique("sid")
    _a = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 1, 100.0, "float32", f"{name}-a"))
    _b = pylsl.StreamOutlet(pylsl.StreamInfo(name, "ExG", 2, 100.0, "float32", sid))
    t0 = time.monotonic()
    found = lsl.find_streams(lsl.lsl_predicate(name=name, source_id=sid), TIMEOUT)
    assert time.monotonic() - t0 < 2.0
    assert [f.source_id() for f in found] == [sid]
    found = lsl.find_streams(lsl.lsl_predicate(type="ExG", name=name), TIMEOUT)
    assert [f.channel_count() for f in found] == [2]
    # A search ends when the first match answers: both, or either.
    found = lsl.find_streams(lsl.lsl_predicate(name=name), TIMEOUT)
    assert found and {f.source_id() for f in found} <= {f"{name}-a", sid}


def test_resolve_names_the_search():
    name = unique("absent")
    with pytest.raises(AmpNotAvailableError) as info:
        lsl.resolve_streams(lsl.lsl_predicate(name=name, type="EEG"), 0.3, "marker stream")
    message = str(info.value)
    assert f"marker stream matching [name='{name}' and type='EEG']" in message
    assert "0.3 s" in message and "LSLAPICFG" in message


# -- descriptions ---------------------------------------------------------------


def test_labels_from_label_then_name_then_the_template(caplog):
    info = described(5, [{"label": " Fz "}, {"name": "Cz"}, {"label": "", "name": ""},
                         {"label": "Pz", "name": "ignored"}])
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        assert lsl.channel_labels(info) == ["Fz", "Cz", "Ch_2", "Pz", "Ch_4"]
    assert "['Ch_2', 'Ch_4']" in caplog.text
    assert lsl.channel_labels(info, "ch_{n}") == ["Fz", "Cz", "ch_3", "Pz", "ch_5"]
    assert lsl_channel_names(info) == ["Fz", "Cz", "ch_3", "Pz", "ch_5"]


def test_no_description_is_not_a_warning_and_extra_channels_are_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        assert lsl.channel_labels(described(3, [])) == ["Ch_0", "Ch_1", "Ch_2"]
    assert not caplog.records
    info = described(2, [{"label": "a"}, {"label": "b"}, {"label": "c"}])
    assert lsl.channel_labels(info) == ["a", "b"]
    assert lsl.channel_units(info) == ["µV", "µV"]


def test_units_in_ampkit_spelling():
    info = described(4, [{"unit": "microvolts"}, {"unit": "mV"}, {"unit": "degC"}])
    assert lsl.channel_units(info) == ["µV", "mV", "degC", "µV"]


@pytest.mark.parametrize(
    ("fmt", "dtype"),
    [("float32", np.float32), ("double64", np.float64), ("int8", np.int8),
     ("int16", np.int16), ("int32", np.int32), ("int64", np.int64), ("string", object)],
)
def test_sample_dtype(fmt, dtype):
    assert lsl.sample_dtype(pylsl.StreamInfo(unique(), "EEG", 1, 100.0, fmt, "sid")) is dtype


# -- pulls ----------------------------------------------------------------------


def test_numbers_pulled_with_their_stamps_in_the_buffer_dtype():
    name = unique()
    outlet, inlet = subscribed(name, n_ch=3, fmt="int16")
    puller = lsl.ChunkPuller(name, 3, 16, np.int16)
    rows = np.arange(60, dtype=np.int16).reshape(20, 3) - 30
    stamps = 1000.0 + np.arange(20) / 100.0
    outlet.push_chunk(rows, stamps.tolist())
    data, times = pull_until(puller, inlet, 20)
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, rows)
    np.testing.assert_array_equal(times, stamps)


def test_liblsl_converts_to_the_buffer_dtype():
    name = unique()
    outlet, inlet = subscribed(name, n_ch=2, fmt="double64")
    puller = lsl.ChunkPuller(name, 2, 8)  # float32
    rows = np.array([[1.0 / 3, -2.5], [1e10, 0.0]])
    outlet.push_chunk(rows, [5.0, 6.0])
    data, times = pull_until(puller, inlet, 2)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, rows.astype(np.float32))
    np.testing.assert_array_equal(times, [5.0, 6.0])


def test_take_hands_out_arrays_the_next_pull_does_not_touch():
    name = unique()
    outlet, inlet = subscribed(name, n_ch=1)
    puller = lsl.ChunkPuller(name, 1, 4)
    outlet.push_chunk(np.array([[1.0]], np.float32), [1.0])
    small, small_t = pull_until(puller, inlet, 1)  # copied (1 of 4 rows)
    outlet.push_chunk(np.array([[2.0], [3.0], [4.0]], np.float32), [2.0, 3.0, 4.0])
    big, big_t = pull_until(puller, inlet, 3)  # maybe the buffer itself
    outlet.push_chunk(np.full((4, 1), 9.0, np.float32), [5.0, 6.0, 7.0, 8.0])
    pull_until(puller, inlet, 4)
    assert small.ravel().tolist() == [1.0] and small_t.tolist() == [1.0]
    assert big.ravel().tolist() == [2.0, 3.0, 4.0] and big_t.tolist() == [2.0, 3.0, 4.0]


def test_wait_for_a_first_sample_then_take_what_is_there():
    name = unique()
    outlet, inlet = subscribed(name, n_ch=1)
    puller = lsl.ChunkPuller(name, 1, 100)
    t0 = time.monotonic()
    assert puller.pull(inlet, wait=0.2) == 0
    assert 0.15 < time.monotonic() - t0 < 5.0
    one_row = lsl.ChunkPuller(name, 1, 1)
    outlet.push_chunk(np.ones((3, 1), np.float32), [1.0, 2.0, 3.0])
    deadline = time.monotonic() + TIMEOUT
    got = []
    while len(got) < 3:
        assert time.monotonic() < deadline
        n = one_row.pull(inlet, wait=0.05)
        assert n <= 1
        got += one_row.take(n)[1].tolist()
    assert got == [1.0, 2.0, 3.0]


def test_a_lost_stream_is_connection_lost_naming_it():
    name = unique()
    outlet, inlet = subscribed(name, n_ch=1, recover=False)
    puller = lsl.ChunkPuller(name, 1, 8)
    del outlet
    deadline = time.monotonic() + TIMEOUT
    with pytest.raises(ConnectionLostError, match=f"{name}.*lost"):
        while time.monotonic() < deadline:
            puller.pull(inlet, wait=0.05)


def test_strings_and_their_loss():
    name = unique()
    outlet, inlet = subscribed(name, n_ch=2, fmt="string", fs=0.0)
    outlet.push_sample(["a", "ü ✓"], 7.0)
    deadline = time.monotonic() + TIMEOUT
    values, stamps = [], []
    while not stamps:
        assert time.monotonic() < deadline
        values, stamps = lsl.pull_values(inlet, 16, name)
    assert values == [["a", "ü ✓"]] and stamps == [7.0]
    del outlet
    with pytest.raises(ConnectionLostError, match=name):
        while time.monotonic() < deadline:
            lsl.pull_values(inlet, 16, name)
            time.sleep(0.01)


def test_opening_a_vanished_stream_is_a_clear_error():
    name = unique()
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", 1, 100.0, "float32", name))
    [found] = lsl.resolve_streams(lsl.lsl_predicate(name=name), TIMEOUT)
    inlet = lsl.open_inlet(found)
    del outlet
    with pytest.raises((ConnectionLostError, AmpNotAvailableError), match=name):
        lsl.open_stream(inlet, 1.0, name)


def test_pulls_only_into_lsl_types():
    with pytest.raises(ConfigurationError, match="uint8"):
        lsl.ChunkPuller("x", 1, 8, np.uint8)


def test_resolver_teardown_thread_ends_when_done():
    import threading

    for _ in range(3):
        lsl.find_streams(lsl.lsl_predicate(name=unique("absent")), 0.5)
    deadline = time.monotonic() + 15.0  # a teardown can take liblsl's MaxRTT (5 s)
    while any(t.name == "ampkit-lsl-teardown" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "teardown thread still running"
        time.sleep(0.05)
