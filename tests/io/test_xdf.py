"""XDF recordings read back by pyxdf (with and without footers) and by ampkit."""

import numpy as np
import pytest
import pyxdf
from hypothesis import given, settings
from hypothesis import strategies as st
from iohelpers import expected, make_blocks, record

import ampkit.io
from ampkit.errors import RecordingError
from ampkit.io.recorder import Recorder
from ampkit.io.writer import Header
from ampkit.io.xdf import BOUNDARY, XDFWriter, read_xdf


def _load(path):
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False, synchronize_clocks=True)
    by_type = {s["info"]["type"][0]: s for s in streams}
    return by_type["EEG"], by_type["Markers"]


def test_xdf_read_by_pyxdf_and_ampkit(tmp_path):
    blocks = make_blocks(n_blocks=25)
    data, ts, marks = expected(blocks)
    path = tmp_path / "rec.xdf"
    record(path, blocks, units=["µV", "mV", "µV"])

    eeg, mk = _load(path)
    np.testing.assert_array_equal(eeg["time_series"], data)
    np.testing.assert_array_equal(eeg["time_stamps"], ts)  # offsets are 0: unchanged
    labels = [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == ["C0", "C1", "C2"]
    assert float(eeg["info"]["nominal_srate"][0]) == 250.0
    assert [row[0] for row in mk["time_series"]] == [m[2] for m in marks]
    stamps = np.array([b_t for b in blocks for b_t, _ in b.markers])
    np.testing.assert_array_equal(mk["time_stamps"], stamps)
    assert int(eeg["footer"]["info"]["sample_count"][0]) == len(data)
    assert float(eeg["footer"]["info"]["first_timestamp"][0]) == ts[0]

    rec = ampkit.io.read(path)
    np.testing.assert_array_equal(rec.data, data)
    np.testing.assert_array_equal(rec.timestamps, ts)
    assert rec.channels == ["C0", "C1", "C2"] and rec.units == ["µV", "mV", "µV"]
    assert [(s, t) for s, _, t in rec.markers] == [(s, t) for s, _, t in marks]
    np.testing.assert_allclose([m[1] for m in rec.markers], [m[1] for m in marks], atol=1e-9)


def test_without_footers_and_cut_mid_chunk(tmp_path):
    path = tmp_path / "cut.xdf"
    blocks = make_blocks(n_blocks=10)
    data, ts, marks = expected(blocks)
    rec = Recorder(Header(["C0", "C1", "C2"], 250.0), path)
    for b in blocks:
        rec.on_block(b)
    rec._worker.stop_event.set()  # drain and end the thread without close(): no footers
    rec._worker.stop()
    rec.writer.abort()
    raw = path.read_bytes()
    assert raw.count(BOUNDARY) == 1  # the one written at the start; none at close
    eeg, mk = _load(path)
    assert "footer" not in eeg
    np.testing.assert_array_equal(eeg["time_series"], data)
    assert len(mk["time_series"]) == len(marks)

    # a crash in the middle of the last chunk: readers keep everything before it
    w = XDFWriter(tmp_path / "cut2.xdf", Header(["a"], 10.0))
    w.write(np.ones((5, 1), np.float32), np.arange(5) / 10.0, [])
    size = (tmp_path / "cut2.xdf").stat().st_size
    w.write(np.full((5, 1), 2, np.float32), 0.5 + np.arange(5) / 10.0, [])
    w.abort()
    cut = tmp_path / "cut3.xdf"
    for keep in range(1, 21):  # in the length field, the tag, the content
        cut.write_bytes((tmp_path / "cut2.xdf").read_bytes()[: size + keep])
        assert read_xdf(cut).n_samples == 5
    eeg, _ = _load(cut)
    assert len(eeg["time_series"]) == 5


def test_refuses_existing_file(tmp_path):
    (tmp_path / "a.xdf").write_bytes(b"precious")
    with pytest.raises(RecordingError, match="a.xdf exists"):
        XDFWriter(tmp_path / "a.xdf", Header(["a"], 10.0))
    assert (tmp_path / "a.xdf").read_bytes() == b"precious"


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5),
    texts=st.lists(st.text(max_size=300), max_size=6),
    n_ch=st.integers(1, 70),
)
def test_round_trip_fuzz(tmp_path_factory, sizes, texts, n_ch):
    path = tmp_path_factory.mktemp("xdffuzz") / "f.xdf"
    w = XDFWriter(path, Header([f"c{i}" for i in range(n_ch)], 500.0))
    rng = np.random.default_rng(n_ch)
    chunks, index = [], 0
    from ampkit.io.writer import Mark

    marks = [Mark(0, 0.0, 7.0 + i, t) for i, t in enumerate(texts)]
    for i, n in enumerate(sizes):
        chunk = rng.standard_normal((n, n_ch)).astype(np.float32)
        w.write(chunk, 7.0 + (index + np.arange(n)) / 500.0, marks if i == 0 else [])
        chunks.append(chunk)
        index += n
    w.close()
    rec = read_xdf(path)
    np.testing.assert_array_equal(rec.data, np.concatenate(chunks))
    assert [m[2] for m in rec.markers] == texts
    eeg, mk = _load(path)
    assert eeg["time_series"].shape == (index, n_ch)
    assert [r[0] for r in mk["time_series"]] == texts


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       st.integers(0, 10**6))
def test_reader_fuzz_damaged_files(tmp_path_factory, flips, cut):
    d = tmp_path_factory.mktemp("xdfdamage")
    w = XDFWriter(d / "s.xdf", Header(["a", "b"], 100.0))
    from ampkit.io.writer import Mark

    w.write(np.ones((20, 2), np.float32), np.arange(20) / 100.0, [Mark(3, 0.03, 0.03, "m")])
    w.close()
    raw = bytearray((d / "s.xdf").read_bytes())
    raw = raw[: cut % (len(raw) + 1)]
    for pos, value in flips:
        if raw:
            raw[pos % len(raw)] = value
    (d / "j.xdf").write_bytes(bytes(raw))
    try:
        rec = read_xdf(d / "j.xdf")
    except RecordingError:
        return
    assert rec.data.ndim == 2
