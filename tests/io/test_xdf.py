"""XDF recordings read back by pyxdf (with and without footers) and by ampkit."""

import datetime as dt
import struct

import numpy as np
import pytest
import pyxdf
from hypothesis import given, settings
from hypothesis import strategies as st
from iohelpers import (
    expected,
    foreign,
    make_blocks,
    mutate,
    mutations,
    read_or_refuse,
    record,
    xdf_chunk,
    xdf_offset,
    xdf_samples,
    xdf_stream_header,
)

import ampkit.io
from ampkit.errors import ConfigurationError, RecordingError
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

    marks = [Mark(0, 0.0, 7.0 + i / 1000.0, t) for i, t in enumerate(texts)]
    for i, n in enumerate(sizes):
        chunk = rng.standard_normal((n, n_ch)).astype(np.float32)
        w.write(chunk, 7.0 + (index + np.arange(n)) / 500.0, marks if i == 0 else [])
        chunks.append(chunk)
        index += n
    w.close()
    rec = read_xdf(path)
    np.testing.assert_array_equal(rec.data, np.concatenate(chunks))
    # markers 1 ms apart from the first sample on; those after the last sample are dropped
    assert [m[2] for m in rec.markers] == texts[: max(0, 2 * index - 1)]
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


# -- files written by other software, compared with pyxdf ---------------------------


def _pyxdf_view(path, stream=None):
    """What pyxdf makes of ``path`` (clocks synchronised, not dejittered): the
    chosen stream and the markers at the first sample at or after them."""
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False, synchronize_clocks=True)
    numeric = [s for s in streams if s["info"]["channel_format"][0] != "string"]
    if stream is not None:
        numeric = [s for s in numeric if stream in (s["info"]["name"][0], s["info"]["type"][0])]
    data = next((s for s in numeric if len(s["time_stamps"])), numeric[0])
    ts = data["time_stamps"]
    markers = []
    for s in streams:
        if s["info"]["channel_format"][0] == "string":
            rows = np.searchsorted(ts, s["time_stamps"], side="left")
            markers += [(int(r), v[0]) for r, v in zip(rows, s["time_series"], strict=True)
                        if r < len(ts)]
    return data, sorted(markers)


def _same_as_pyxdf(path, stream=None):
    rec = ampkit.io.read(path, stream=stream)
    data, markers = _pyxdf_view(path, stream)
    assert rec.n_samples == len(data["time_stamps"])
    np.testing.assert_allclose(rec.data, data["time_series"], rtol=1e-6)
    np.testing.assert_allclose(rec.timestamps, data["time_stamps"], rtol=0, atol=1e-6)
    assert rec.fs == float(data["info"]["nominal_srate"][0]) or not rec.fs
    assert rec.effective_fs == pytest.approx(data["info"]["effective_srate"], rel=1e-6)
    assert sorted((s, t) for s, _, t in rec.markers) == markers
    return rec


@pytest.mark.parametrize("path", foreign("xdf/*.xdf"))
def test_foreign_files_read_as_pyxdf_reads_them(path):
    rec = _same_as_pyxdf(path)
    assert rec.n_samples > 0


@pytest.mark.parametrize("path", foreign("xdf/empty_streams.xdf"))
def test_an_empty_stream_is_not_chosen(path):
    streams, _ = pyxdf.load_xdf(str(path))
    first = next(s for s in streams if s["info"]["channel_format"][0] != "string")
    assert len(first["time_stamps"]) == 0  # the file's first numeric stream is empty
    rec = ampkit.io.read(path)
    assert rec.n_samples == 10 and rec.amp == "Data stream: test stream 0 counter"
    empty = ampkit.io.read(path, stream="Empty data stream: test stream 0 counter")
    assert empty.n_samples == 0
    with pytest.raises(ConfigurationError, match="holds text markers"):
        ampkit.io.read(path, stream="control")
    with pytest.raises(ConfigurationError, match="no stream named or of type 'EEG'.*ctrl"):
        ampkit.io.read(path, stream="EEG")


def _lab_recording(path, reset=True, stamps_every=1):
    """A LabRecorder-like file: an EEG stream and a marker stream, each on its own
    clock with clock offsets every 5 s; the EEG computer's clock is reset (jumps
    back 3000 s) in the middle, with a new offset."""
    fs, n = 100.0, 4000
    k = np.arange(n)
    true = 1000.0 + k / fs  # the recording computer's clock
    drift = 20e-6 * (true - 1000.0)
    before = 50.0 + drift  # the EEG clock = true - offset; offsets slowly drift
    after = -2000.0 + drift  # after the reset
    cut = n // 2 if reset else n
    offset = np.where(k < cut, before, after)
    eeg_stamps = true - offset
    values = np.column_stack([k, -k]).astype(np.float32)
    out = [b"XDF:", xdf_chunk(1, b'<?xml version="1.0"?><info><version>1.0</version>'
                                 b"<datetime>2024-03-04T05:06:07+01:00</datetime></info>"),
           xdf_stream_header(1, "BioSemi", "EEG", 2, fs,
                             desc="<desc><channels><channel><label>A</label><unit>microvolts"
                                  "</unit><type>EEG</type></channel><channel><label>B</label>"
                                  "<unit>microvolts</unit><type>EOG</type></channel>"
                                  "</channels></desc>"),
           xdf_stream_header(2, "Markers", "Markers", 1, 0, "string")]
    marker_true = 1000.0 + np.array([0.5037, 3.333, 12.0041, 19.995, 20.004, 25.5027, 39.0019])
    marker_stamps = marker_true - 7.25  # the stimulus computer: a constant offset
    for start in range(0, n, 100):
        stop = start + 100
        rows = [eeg_stamps[i] if i % stamps_every == 0 or i == start else None
                for i in range(start, stop)]
        out.append(xdf_samples(1, rows, values[start:stop]))
        t = true[start]
        if start % 500 == 0:
            out.append(xdf_offset(1, t - offset[start], offset[start]))
            out.append(xdf_offset(2, t - 7.25, 7.25))
        for j in np.flatnonzero((marker_true >= t) & (marker_true < true[stop - 1] + 0.01)):
            out.append(xdf_samples(2, [marker_stamps[j]], [[f"m{j}"]], "string"))
    path.write_bytes(b"".join(out))
    return path, true, marker_true


@pytest.mark.parametrize("reset", [False, True])
@pytest.mark.parametrize("stamps_every", [1, 7])
def test_clock_offsets_and_resets_as_pyxdf(tmp_path, reset, stamps_every):
    path, true, marker_true = _lab_recording(tmp_path / "lab.xdf", reset, stamps_every)
    rec = _same_as_pyxdf(path)
    np.testing.assert_allclose(rec.timestamps, true, atol=1e-6)  # back on one clock
    want = [int(np.searchsorted(true, t - 1e-9)) for t in marker_true]
    assert [s for s, _, _ in rec.markers] == want
    assert rec.channels == ["A", "B"] and rec.units == ["µV", "µV"]
    assert rec.types == ["eeg", "eog"] and rec.amp == "BioSemi"
    assert rec.meas_date == dt.datetime(2024, 3, 4, 4, 6, 7, tzinfo=dt.timezone.utc)
    raw = rec.to_mne()
    assert raw.get_channel_types() == ["eeg", "eog"]
    np.testing.assert_allclose(raw.get_data(), rec.data.T * 1e-6)
    assert [round(o * 100) for o in raw.annotations.onset] == want


def test_stream_chosen_by_name_or_type(tmp_path):
    path, _, _ = _lab_recording(tmp_path / "lab.xdf")
    assert ampkit.io.read(path, stream="BioSemi").n_samples == 4000
    assert ampkit.io.read(path, stream="eeg").n_samples == 4000  # case does not matter
    with pytest.raises(ConfigurationError, match="stream= applies to XDF"):
        ampkit.io.read(tmp_path / "x.bdf", stream="EEG")


def test_effective_rate_from_the_footer(tmp_path):
    path = tmp_path / "f.xdf"
    path.write_bytes(b"XDF:" + xdf_stream_header(1, "a", "EEG", 1, 100.0)
                     + xdf_samples(1, [1.0, 1.01, 1.02], [[1], [2], [3]])
                     + xdf_chunk(6, struct.pack("<I", 1) + b"<info><effective_srate>"
                                 b"99.97</effective_srate></info>"))
    rec = ampkit.io.read(path)
    assert rec.fs == 100.0 and rec.effective_fs == 99.97


def test_hostile_stream_headers(tmp_path):
    cases = {
        "count": xdf_stream_header(1, "a", "EEG", 100_000_000, 100.0),
        "negative": xdf_stream_header(1, "a", "EEG", -1, 100.0),
        "rate": xdf_stream_header(1, "a", "EEG", 1, "1e400"),
        "format": xdf_stream_header(1, "a", "EEG", 1, 100.0, "float128"),
        "bomb": xdf_chunk(2, struct.pack("<I", 1) + b'<?xml version="1.0"?><!DOCTYPE l ['
                          b'<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
                          b"<info><name>&b;</name></info>"),
    }
    for name, header in cases.items():
        path = tmp_path / f"{name}.xdf"
        path.write_bytes(b"XDF:" + header)
        with pytest.raises(RecordingError, match=f"{name}.xdf: damaged chunk"):
            read_or_refuse(read_xdf, path, [path], factor=8) or read_xdf(path)


# -- any bytes: read, or refused naming the file ------------------------------------


@settings(max_examples=120, deadline=2000)
@given(seed=st.sampled_from(["ampkit", "lab"]), mutation=mutations(10**4, prefix=b"XDF:"))
def test_any_bytes_read_or_refused(tmp_path_factory, seed, mutation):
    d = tmp_path_factory.mktemp("xdfany")
    path = d / "s.xdf"
    if seed == "ampkit":
        record(path, make_blocks(n_blocks=3, channels=2), channels=2)
    else:
        full = _lab_recording(d / "full.xdf", stamps_every=3)[0].read_bytes()
        path.write_bytes(full[:6000])
    path.write_bytes(mutate(path.read_bytes(), mutation))
    read_or_refuse(ampkit.io.read, path, [path])
