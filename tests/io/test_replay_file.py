"""The replay driver playing recordings: re-recorded, every sample and marker comes back."""

import time

import numpy as np
import pytest
from iohelpers import expected, make_blocks, record

import ampkit
import ampkit.io
from ampkit.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _free_marker_port(monkeypatch):
    monkeypatch.setenv("AMPKIT_MARKER_PORT", "0")


@pytest.mark.parametrize("name", ["orig", "orig.bdf", "orig.xdf"])
def test_replay_as_fast_as_asked_and_rerecord(tmp_path, name):
    blocks = make_blocks(n_blocks=40, channels=3)
    data, _, marks = expected(blocks)
    record(tmp_path / name, blocks, units=["µV", "mV", "µV"])
    original = ampkit.io.read(tmp_path / name)

    amp = ampkit.get_amp("replay")
    amp.configure(filename=tmp_path / name, realtime=False, blocksize_samples=7)
    assert amp.get_channels() == ["C0", "C1", "C2"]
    assert amp.get_units() == ["µV", "mV", "µV"]
    copy = tmp_path / ("copy" + name[4:])
    amp.start(filename=copy)
    got_markers = []
    while not amp.amp.finished:
        block = amp.get_block()
        got_markers += [(block.index + r, t) for r, t in block.marker_samples()]
    amp.stop()
    assert got_markers == [(s, t) for s, _, t in original.markers]
    again = ampkit.io.read(copy)
    n = original.n_samples
    np.testing.assert_array_equal(again.data[:n], original.data)
    assert again.units == original.units and again.fs == original.fs
    assert [(s, t) for s, _, t in again.markers] == [(s, t) for s, _, t in original.markers]
    assert [(s, t) for s, _, t in original.markers] == [(s, t) for s, _, t in marks]
    if name == "orig":
        np.testing.assert_array_equal(again.data, data)


def test_replay_in_real_time(tmp_path):
    fs = 200.0
    w = ampkit.io.open_writer(tmp_path / "rt", ampkit.io.Header(["a"], fs))
    x = np.arange(100, dtype=np.float32)[:, None]
    w.write(x, np.arange(100) / fs, [ampkit.io.Mark(60, 0.3, 0.3, "at 60")])
    w.close()
    amp = ampkit.get_amp("replayamp")
    amp.configure(filename=tmp_path / "rt")  # real time, 10 ms blocks
    amp.start()
    t0 = time.monotonic()
    got, markers = [], []
    while not amp.amp.finished and time.monotonic() - t0 < 10:
        data, mk = amp.get_data()
        markers += [(len(np.concatenate(got)) if got else 0, ms, text) for ms, text in mk]
        got.append(data)
        if not len(data):
            time.sleep(0.002)
    elapsed = time.monotonic() - t0
    amp.stop()
    np.testing.assert_array_equal(np.concatenate(got), x)
    assert elapsed >= 0.4  # 100 samples at 200 Hz take 0.5 s
    (first, ms, text), = markers
    assert text == "at 60" and round(first + ms * fs / 1000.0) == 60


def test_replay_configuration_errors(tmp_path):
    amp = ampkit.get_amp("replay")
    with pytest.raises(ConfigurationError, match="nothing"):
        amp.configure(filename=tmp_path / "nothing")
    with pytest.raises(ConfigurationError, match="not both"):
        amp.configure(filename=tmp_path / "x", data=np.zeros((3, 1)), channels=["a"], fs=1)
    # the libmushu signature still works
    amp.configure(data=np.zeros((10, 2)), marker=[(50.0, "S 1")], channels=["C3", "C4"],
                  fs=100, realtime=False, blocksize_samples=5)
    assert amp.get_units() == ["µV", "µV"]
