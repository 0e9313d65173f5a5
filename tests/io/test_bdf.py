"""BDF+ recordings read back by MNE, pyedflib and ampkit; ampkit reading pyedflib's files."""

import logging

import mne
import numpy as np
import pyedflib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iohelpers import expected, make_blocks, record

import ampkit.io
from ampkit.decorator import Block
from ampkit.errors import ConfigurationError, RecordingError
from ampkit.io.bdf import BDFWriter, read_bdf
from ampkit.io.recorder import Recorder
from ampkit.io.writer import Header

mne.set_log_level("ERROR")
STEP = 2 * 262143.0 / (2**24 - 1)  # µV per digital step of the default range


def test_bdf_read_by_mne_pyedflib_and_ampkit(tmp_path):
    blocks = make_blocks(n_blocks=30)
    data, _, marks = expected(blocks)
    path = tmp_path / "rec.bdf"
    record(path, blocks)
    n = len(data)

    r = mne.io.read_raw_bdf(path, preload=True)
    assert r.ch_names == ["C0", "C1", "C2"] and r.info["sfreq"] == 250.0
    got = r.get_data()[:, :n].T * 1e6
    np.testing.assert_allclose(got, data, atol=STEP / 2 + 1e-6)
    assert np.all(np.abs(r.get_data()[:, n:]) * 1e6 <= STEP)  # zeros padding the last record
    assert len(r.get_data().T) - n < 25  # at most one 0.1 s record of padding
    assert [round(a["onset"] * 250) for a in r.annotations] == [m[0] for m in marks]
    assert [a["description"] for a in r.annotations] == [m[2] for m in marks]

    f = pyedflib.EdfReader(str(path))
    try:
        assert f.getSignalLabels() == ["C0", "C1", "C2"]
        np.testing.assert_allclose(f.readSignal(1)[:n], data[:, 1], atol=STEP / 2 + 1e-6)
        onsets, _, texts = f.readAnnotations()
        assert list(texts) == [m[2] for m in marks]
        np.testing.assert_allclose(onsets, [m[0] / 250 for m in marks], atol=1e-7)
    finally:
        f.close()

    rec = ampkit.io.read(path)
    assert rec.n_samples == n  # the padding is not returned
    np.testing.assert_allclose(rec.data, data, atol=STEP / 2 + 1e-4)
    assert rec.units == ["µV"] * 3 and rec.fs == 250.0 and rec.amp == "scripted"
    assert [(s, t) for s, _, t in rec.markers] == [(s, t) for s, _, t in marks]


def test_readable_while_recording(tmp_path):
    path = tmp_path / "live.bdf"
    rec = Recorder(Header(["a", "b"], 100.0), path, interval=0.02)
    ts = 50.0 + np.arange(95) / 100.0
    rec.on_block(Block(np.ones((95, 2), np.float32), ts, [(ts[12], "early")], 0))
    for _ in range(200):
        live = read_bdf(path)
        if live.n_samples == 90 and live.markers:
            break
        import time

        time.sleep(0.01)
    assert live.n_samples == 90  # whole 0.1 s records so far
    assert live.markers == [(12, 0.12, "early")]
    assert mne.io.read_raw_bdf(path).n_times == 90
    rec.close()
    assert read_bdf(path).n_samples == 95
    assert mne.io.read_raw_bdf(path).n_times == 100  # padded to whole records


def test_other_units_and_range(tmp_path):
    header = Header(["volt", "milli"], 200.0, ["V", "mV"])
    w = BDFWriter(tmp_path / "u.bdf", header)
    x = np.array([[0.1, -100.0], [-0.2, 200.0]] * 10, np.float32)
    w.write(x, np.arange(20) / 200.0, [])
    w.close()
    r = mne.io.read_raw_bdf(tmp_path / "u.bdf", preload=True)
    np.testing.assert_allclose(r.get_data()[0, :20], x[:, 0], atol=1e-7)
    np.testing.assert_allclose(r.get_data()[1, :20], x[:, 1] * 1e-3, atol=1e-7)
    assert ampkit.io.read(tmp_path / "u.bdf").units == ["V", "mV"]


def test_clipping_is_logged(tmp_path, caplog):
    w = BDFWriter(tmp_path / "c.bdf", Header(["a"], 10.0), physical_max=100.0)
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        w.write(np.array([[1000.0]] * 10, np.float32), np.arange(10) / 10.0, [])
    w.close()
    assert "clipped" in caplog.text and "c.bdf" in caplog.text
    assert read_bdf(tmp_path / "c.bdf").data.max() == pytest.approx(100.0, abs=1e-3)


def test_many_markers_in_one_record_are_all_kept(tmp_path):
    w = BDFWriter(tmp_path / "m.bdf", Header(["a"], 10.0))
    from ampkit.io.writer import Mark

    marks = [Mark(0, 0.0, 0.0, f"marker number {i:03d}") for i in range(40)]
    w.write(np.zeros((1, 1), np.float32), np.zeros(1), marks)
    w.close()
    r = mne.io.read_raw_bdf(tmp_path / "m.bdf")
    assert [a["description"] for a in r.annotations] == [m.text for m in marks]


def test_reads_edf_and_bdf_written_by_pyedflib(tmp_path):
    for kind, ext in ((pyedflib.FILETYPE_BDFPLUS, "bdf"), (pyedflib.FILETYPE_EDFPLUS, "edf")):
        path = str(tmp_path / f"other.{ext}")
        w = pyedflib.EdfWriter(path, 2, file_type=kind)
        w.setSignalHeaders([
            {"label": f"E{i}", "dimension": "uV", "sample_frequency": 128,
             "physical_max": 500.0, "physical_min": -500.0,
             "digital_max": 8388607 if ext == "bdf" else 32767,
             "digital_min": -8388608 if ext == "bdf" else -32768}
            for i in range(2)
        ])
        sig = [np.sin(np.arange(256) / 10) * 100, np.cos(np.arange(256) / 7) * 50]
        w.writeSamples(sig)
        w.writeAnnotation(0.5, -1, "half")
        w.close()
        rec = ampkit.io.read(path)
        assert rec.format == ext and rec.channels == ["E0", "E1"] and rec.fs == 128.0
        step = 1000.0 / (2**24 if ext == "bdf" else 2**16)
        np.testing.assert_allclose(rec.data, np.array(sig).T, atol=step)
        assert rec.markers == [(64, 0.5, "half")]


def test_edf_writing_refused(tmp_path):
    with pytest.raises(ConfigurationError, match=".bdf"):
        ampkit.io.open_writer(tmp_path / "x.edf", Header(["a"], 10.0))


def _valid_bdf(tmp_path_factory):
    path = tmp_path_factory.mktemp("bdfseed") / "seed.bdf"
    record(path, make_blocks(n_blocks=6, channels=2), channels=2)
    return path.read_bytes()


@settings(max_examples=200, deadline=None)
@given(
    st.data(),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.integers(0, 10**6),
)
def test_reader_fuzz_damaged_files(tmp_path_factory, data, flips, cut):
    seed = _valid_bdf.cache if hasattr(_valid_bdf, "cache") else None
    if seed is None:
        seed = _valid_bdf.cache = _valid_bdf(tmp_path_factory)
    raw = bytearray(seed[: cut % (len(seed) + 1)] if data.draw(st.booleans()) else seed)
    for pos, value in flips:
        if raw:
            raw[pos % len(raw)] = value
    path = tmp_path_factory.mktemp("bdffuzz") / "j.bdf"
    path.write_bytes(bytes(raw))
    try:
        rec = read_bdf(path)
    except RecordingError:
        return
    assert rec.data.ndim == 2 and rec.data.shape[1] >= 1


def test_driver_resolutions_are_stored_exactly(tmp_path):
    res = [0.1, 1.0, 0.05, 0.5]
    header = Header(["a", "b", "c", "d"], 100.0, [], "amp", resolutions=res)
    w = BDFWriter(tmp_path / "r.bdf", header)
    k = np.random.default_rng(3).integers(-32768, 32767, (200, 4))
    exact = k * np.array(res)
    w.write(exact.astype(np.float32), np.arange(200) / 100.0, [])
    w.close()
    f = pyedflib.EdfReader(str(tmp_path / "r.bdf"))
    try:
        for i in range(4):
            np.testing.assert_allclose(f.readSignal(i), exact[:, i], rtol=1e-12, atol=1e-12)
    finally:
        f.close()
    raw = mne.io.read_raw_bdf(tmp_path / "r.bdf", preload=True)
    np.testing.assert_allclose(raw.get_data().T * 1e6, exact, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(read_bdf(tmp_path / "r.bdf").data, exact, rtol=1e-7)
