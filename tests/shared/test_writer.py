"""The writer: what it puts in the ring, markers, bad input, the amp's ``share`` service."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import leftovers

import ampkit
from ampkit.errors import ConfigurationError, StateError
from ampkit.shared import SharedWriter
from ampkit.shared.segment import CLAIMED, WRITTEN


def block(first: int, n: int, n_ch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose every value is the sample's index; times index / 100."""
    rows = np.repeat(np.arange(first, first + n, dtype=np.float32)[:, None], n_ch, axis=1)
    return rows, np.arange(first, first + n) / 100.0


@pytest.fixture
def pair(shm_name):
    """A writer of 3 channels at 100 Hz, 2 s (200 rows, 100 view rows), and a reader."""
    w = SharedWriter(shm_name, ["a", "b", "c"], 100.0, seconds=2, units=["µV", "mV", "V"],
                     source="test-amp")
    r = ampkit.attach(shm_name, timeout=0)
    yield w, r
    r.close()
    w.close()


@pytest.mark.parametrize("sizes", [[1] * 450, [7] * 100, [199, 1, 200, 3], [450], [0, 5, 0]])
def test_every_sample_lands_at_its_index(pair, sizes):
    w, r = pair
    n = 0
    for size in sizes:
        w.write(*block(n, size))
        n += size
    assert r.last_sample == w.n_written == n
    assert r.segment.words[CLAIMED] == n
    lo = max(0, n - r.buffer_size)
    data = r.get_data(lo, n)
    np.testing.assert_array_equal(data[:, 0], np.arange(lo, n))
    np.testing.assert_array_equal(r.get_timestamps(lo, n), np.arange(lo, n) / 100.0)
    # every short window, wrapped or not, through the view rows where it wraps
    for start in range(lo, n - 10, 13):
        np.testing.assert_array_equal(r.get_data(start, start + 10)[:, 1],
                                      np.arange(start, start + 10))


def test_metadata_reaches_readers(pair):
    w, r = pair
    assert r.channel_names == ["a", "b", "c"]
    assert r.units == ["µV", "mV", "V"]
    assert (r.fs, r.source, r.data_dtype) == (100.0, "test-amp", "float32")
    assert (r.buffer_size, r.buffer_window) == (200, 100)


def test_markers_get_the_index_of_their_sample(pair):
    w, r = pair
    w.write(*block(0, 10), markers=[(0.0, "first"), (0.035, "between 3 and 4"), (0.09, "last")])
    w.write(*block(10, 10))
    # late: a marker for a sample of an earlier block comes with a later one
    w.write(*block(20, 5), markers=[(0.05, "late"), (0.22, "in block")])
    w.write(*block(25, 0), markers=[(0.12, "in an empty block")])
    assert r.get_markers_in(0, 25) == [
        (0, 0.0, "first"), (4, 0.035, "between 3 and 4"), (9, 0.09, "last"),
        (5, 0.05, "late"), (22, 0.22, "in block"), (12, 0.12, "in an empty block"),
    ]
    assert [m[2] for m in r.get_markers_in(5, 10)] == ["last", "late"]
    assert r.get_markers_in(100, 200) == []


def test_long_markers_are_cut_at_a_character(pair, caplog):
    w, r = pair
    w.write(*block(0, 1), markers=[(0.0, "é" * 300)])
    [(_, _, text)] = r.get_markers_in(0, 1)
    assert text == "é" * 244  # 488 bytes of UTF-8
    assert "cut to 488" in caplog.text


def test_marker_ring_overrun(pair):
    w, r = pair
    slots = len(w.segment.markers)
    w.write(*block(0, 1), markers=[(0.0, f"m{i}") for i in range(slots + 5)])
    r.update()
    assert r.n_new_markers == slots and r.markers_overrun == 5
    assert r.get_markers()[0] == (0.0, "m5")
    assert len(r.get_markers_in(0, 1)) == slots


def test_bad_blocks_are_refused(pair):
    w, r = pair
    for data, times in [(np.zeros((3, 2)), np.zeros(3)), (np.zeros((3, 3)), np.zeros(2)),
                        (np.zeros(3), np.zeros(3))]:
        with pytest.raises(ConfigurationError, match="does not fit 3 channels"):
            w.write(data, times)
    assert r.last_sample == 0 and r.segment.words[CLAIMED] == 0
    w.close()
    with pytest.raises(StateError, match="write\\(\\) after close"):
        w.write(*block(0, 1))


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=[]), "no channels"),
    (dict(fs=0), "sampling rate"),
    (dict(fs=float("inf")), "sampling rate"),
    (dict(seconds=-1), "share_seconds"),
    (dict(seconds=float("nan")), "share_seconds"),
    (dict(units=["V"]), "1 units for 2 channels"),
    (dict(marker_slots=0), "marker_slots"),
    (dict(dtype=np.complex64), "shared streams hold"),
])
def test_bad_settings_are_refused_and_leave_nothing(shm_name, kwargs, match):
    settings = dict(channels=["a", "b"], fs=100.0) | kwargs
    with pytest.raises(ConfigurationError, match=match):
        SharedWriter(shm_name, settings.pop("channels"), settings.pop("fs"), **settings)
    assert leftovers(shm_name) == []


def test_written_counter_never_passes_claimed(pair):
    w, r = pair
    for k in range(30):
        w.write(*block(k * 17, 17))
        assert r.segment.words[WRITTEN] == r.segment.words[CLAIMED] == (k + 1) * 17
