"""The five-file recording, read back by MNE, by numpy + JSON (libmushu) and by ampkit."""

import json
import re
import time

import mne
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iohelpers import (
    assert_same_raw,
    expected,
    foreign,
    make_blocks,
    mutate,
    mutations,
    read_or_refuse,
    record,
)

import ampkit
import ampkit.io
from ampkit.block import Block
from ampkit.errors import RecordingError
from ampkit.io.brainvision import BrainVisionWriter, base_of
from ampkit.io.writer import Header, Mark

mne.set_log_level("ERROR")


def test_five_files_read_by_mne_numpy_and_ampkit(tmp_path):
    blocks = make_blocks()
    data, ts, marks = expected(blocks)
    base = tmp_path / "rec"
    record(base, blocks)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["rec.eeg", "rec.marker", "rec.meta", "rec.vhdr", "rec.vmrk"]

    # libmushu: raw float32 multiplexed + JSON meta + "<ms> <text>" lines
    meta = json.loads((tmp_path / "rec.meta").read_text())
    assert meta == {"Channels": ["C0", "C1", "C2"], "Sampling Frequency": 250.0,
                    "Amp": "scripted"}
    raw = np.fromfile(tmp_path / "rec.eeg", dtype="<f4").reshape(-1, 3)
    np.testing.assert_array_equal(raw, data)
    lines = (tmp_path / "rec.marker").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(marks)
    for line, (_, time_s, text) in zip(lines, marks, strict=True):
        ms, _, got = line.partition(" ")
        assert got == text
        assert float(ms) == pytest.approx(time_s * 1000.0, abs=1e-6)

    # MNE: volts, names, rate, every marker an annotation at its sample
    r = mne.io.read_raw_brainvision(tmp_path / "rec.vhdr", preload=True)
    assert r.ch_names == ["C0", "C1", "C2"]
    assert r.info["sfreq"] == 250.0
    np.testing.assert_allclose(r.get_data().T, data.astype(np.float64) * 1e-6, rtol=1e-12)
    assert len(r.annotations) == len(marks)
    for ann, (sample, _, text) in zip(r.annotations, marks, strict=True):
        assert round(ann["onset"] * 250.0) == sample
        want = text if text.startswith("Stimulus/") else f"Comment/{text}"
        assert ann["description"] == want

    # ampkit
    rec = ampkit.io.read(base)
    np.testing.assert_array_equal(rec.data, data)
    assert rec.fs == 250.0 and rec.channels == ["C0", "C1", "C2"] and rec.units == ["µV"] * 3
    assert [(s, t) for s, _, t in rec.markers] == [(s, t) for s, _, t in marks]
    np.testing.assert_allclose([m[1] for m in rec.markers], [m[1] for m in marks], atol=1e-9)
    assert ampkit.io.read(tmp_path / "rec.vhdr").n_samples == len(data)


def test_units_reach_mne_as_volts(tmp_path):
    blocks = make_blocks(n_blocks=4)
    data, _, _ = expected(blocks)
    record(tmp_path / "u", blocks, units=["mV", "µV", "V"])
    r = mne.io.read_raw_brainvision(tmp_path / "u.vhdr", preload=True)
    np.testing.assert_allclose(
        r.get_data().T, data.astype(np.float64) * [1e-3, 1e-6, 1.0], rtol=1e-12
    )
    assert ampkit.io.read(tmp_path / "u").units == ["mV", "µV", "V"]


def test_never_overwrites_unless_asked(tmp_path):
    base = tmp_path / "rec"
    (tmp_path / "rec.marker").write_text("keep me")
    header = Header(["a"], 100.0)
    with pytest.raises(RecordingError, match="rec.marker exists"):
        BrainVisionWriter(base, header)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.marker"]  # nothing created
    w = BrainVisionWriter(str(base) + ".vhdr", header, overwrite=True)
    w.close()
    assert (tmp_path / "rec.marker").read_text() == ""


def test_decorated_amp_records_every_sample_and_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("AMPKIT_MARKER_PORT", "0")
    amp = ampkit.get_amp("sine", f=5, fs=500, channels=4, amplitude=100)
    amp.start(filename=tmp_path / "sine")
    blocks = []
    t_end = time.monotonic() + 0.6
    while time.monotonic() < t_end:
        amp.add_marker(f"m{len(blocks)}")
        blocks.append(amp.get_block())
    status = amp.status()
    amp.stop()
    assert status["bytes"] > 0 and "backlog" in status
    data, _, marks = expected(blocks)
    rec = ampkit.io.read(tmp_path / "sine")
    np.testing.assert_array_equal(rec.data, data)
    k = np.arange(len(data))
    np.testing.assert_allclose(rec.data[:, 0], 100 * np.sin(2 * np.pi * 5 * k / 500), atol=1e-4)
    assert [(s, t) for s, _, t in rec.markers] == [(s, t) for s, _, t in marks]
    with pytest.raises(RecordingError, match="exists"):
        amp.start(filename=tmp_path / "sine")
    assert not amp.running
    amp.start(filename=tmp_path / "sine", overwrite=True)
    amp.stop()


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(RecordingError, match="nothing"):
        ampkit.io.read(tmp_path / "nothing")
    (tmp_path / "bad.vhdr").write_text("not a header\n")
    with pytest.raises(RecordingError, match="bad.vhdr"):
        ampkit.io.read(tmp_path / "bad.vhdr")


def test_base_names():
    assert str(base_of("a/rec.vhdr")) == "a/rec"
    assert str(base_of("a/s1.run2")) == "a/s1.run2"
    assert ampkit.io.format_of("x.BDF") == "bdf"


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30) | st.sampled_from(
    ["a\u2028b", "x\x1cy", "l1\r\nl2", "c,d", "Stimulus/S  1", "Comment/x", " lead"])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    channels=st.lists(names, min_size=1, max_size=5),
    sizes=st.lists(st.integers(0, 30), min_size=1, max_size=6),
    marker_texts=st.lists(texts, max_size=8),
    fs=st.sampled_from([1.0, 100.0, 256.0, 512.0, 1000.0, 3.0]),
)
def test_round_trip_fuzz(tmp_path_factory, channels, sizes, marker_texts, fs):
    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(len(sizes))
    w = BrainVisionWriter(d / "f", Header(channels, fs, [], "fuzz"))
    chunks, index, marks = [], 0, []
    for i, n in enumerate(sizes):
        chunk = rng.standard_normal((n, len(channels))).astype(np.float32) * 1e3
        ts = 10.0 + (index + np.arange(n)) / fs
        these = [Mark(index, index / fs, 10.0 + index / fs, t) for t in marker_texts[i::len(sizes)]]
        w.write(chunk, ts, these)
        chunks.append(chunk)
        marks += these
        index += n
    w.close()
    rec = ampkit.io.read(d / "f")
    np.testing.assert_array_equal(rec.data, np.concatenate(chunks))
    assert rec.channels == channels
    assert rec.fs == pytest.approx(fs, rel=1e-12)
    marks = [m for m in marks if m.sample < index]  # one after the last sample is dropped
    one_line = [m.text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ") for m in marks]
    assert [m[2] for m in rec.markers] == one_line
    assert [m[0] for m in rec.markers] == [m.sample for m in marks]


def test_block_copy_protects_against_reused_buffers(tmp_path):
    buf = np.ones((10, 3), np.float32)
    ts = 100.0 + np.arange(10) / 250.0
    from ampkit.io.recorder import Recorder

    rec = Recorder(Header(["a", "b", "c"], 250.0), tmp_path / "reuse")
    rec.on_block(Block(buf, ts, [], 0))
    buf[:] = 2.0  # a driver refilling its buffer
    rec.on_block(Block(buf, ts + 10 / 250.0, [], 10))
    rec.close()
    got = ampkit.io.read(tmp_path / "reuse").data
    assert (got[:10] == 1).all() and (got[10:] == 2).all()


@settings(max_examples=150, deadline=None)
@given(
    which=st.sampled_from([".vhdr", ".vmrk", ".meta", ".marker", ".eeg"]),
    flips=st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10**5),
)
def test_reader_fuzz_damaged_files(tmp_path_factory, which, flips, cut):
    d = tmp_path_factory.mktemp("bvdamage")
    w = BrainVisionWriter(d / "s", Header(["a", "b"], 100.0, [], "amp"))
    w.write(np.ones((20, 2), np.float32), np.arange(20) / 100.0,
            [Mark(3, 0.03, 0.03, "m, 1"), Mark(9, 0.09, 0.09, "Stimulus/S  2")])
    w.close()
    path = d / f"s{which}"
    raw = bytearray(path.read_bytes())
    raw = raw[: cut % (len(raw) + 1)]
    for pos, value in flips:
        if raw:
            raw[pos % len(raw)] = value
    path.write_bytes(bytes(raw))
    try:
        rec = ampkit.io.read(d / "s")
    except RecordingError:
        return
    assert rec.data.ndim == 2 and rec.data.shape[1] == len(rec.channels)
    assert all(s >= 0 for s, _, _ in rec.markers)


# -- files written by other software ----------------------------------------------


def _same_as_mne(path, rec=None, **mne_kw):
    """ampkit and MNE read ``path`` alike: names, rate, samples, values, markers."""
    rec = rec or ampkit.io.read(path)
    raw = mne.io.read_raw_brainvision(path, preload=True, **mne_kw)
    assert rec.channels == raw.ch_names
    assert rec.fs == raw.info["sfreq"] and rec.n_samples == raw.n_times
    assert rec.meas_date == raw.info["meas_date"]
    assert_same_raw(rec.to_mne(), raw)
    # the markers: each annotation at its sample (those past the data dropped by both)
    want = [(round(a["onset"] * rec.fs), a["description"]) for a in raw.annotations]
    want = [(s, t) for s, t in want if s < rec.n_samples]  # MNE keeps one at the very end
    assert [(s, t) for s, _, t in rec.markers] == want
    return rec, raw


@pytest.mark.parametrize("path", foreign("brainvision/*.vhdr") + foreign("other/*.vhdr"))
def test_foreign_files_read_as_mne_reads_them(path):
    rec, raw = _same_as_mne(path)
    assert rec.n_samples > 0 and rec.markers


def test_vision_recorder_header_with_comment_section():
    path = foreign("brainvision/test.vhdr")[0].values[0]
    if path is None:
        pytest.skip("the shared test files are absent")
    rec = ampkit.io.read(path)
    assert rec.meas_date.isoformat() == "2013-11-13T16:14:03.794232+00:00"
    # "Ch2=FP2,,0.5," and "Ch3=F3,,0.5": no unit means µV; µS, ARU, S, C are misc
    assert rec.units[1:3] == ["µV", "µV"] and rec.units[27] == "µS"
    assert rec.types[27:] == ["misc"] * 5
    assert ("SyncStatus/Sync On", "Optic/O  1") == tuple(m[2] for m in rec.markers[-2:])


@pytest.mark.parametrize("fmt", ["binary_float32", "binary_int16"])
def test_pybv_files(tmp_path, fmt):
    pybv = pytest.importorskip("pybv")
    rng = np.random.default_rng(1)
    data = rng.standard_normal((4, 1000)) * [[20e-6], [1e-3], [0.2], [3e-6]]
    events = [{"onset": 100, "duration": 1, "description": 1, "type": "Stimulus"},
              {"onset": 250, "duration": 5, "description": 3, "type": "Response"},
              {"onset": 400, "duration": 0, "description": "go now", "type": "Comment"},
              {"onset": 999, "duration": 1, "description": 2, "type": "Stimulus"}]
    pybv.write_brainvision(data=data, sfreq=500.0, ch_names=["Fz", "EMG", "V", "HEOGL"],
                           fname_base="p", folder_out=tmp_path, events=events, fmt=fmt,
                           unit=["µV", "mV", "V", "µV"], resolution=[0.1, 1e-3, 1e-4, 0.05],
                           meas_date="20240102030405123456")
    rec, raw = _same_as_mne(tmp_path / "p.vhdr")
    assert rec.units == ["µV", "mV", "V", "µV"] and rec.types[3] == "eog"
    assert [m[2] for m in rec.markers] == ["Stimulus/S  1", "Response/R  3",
                                           "Comment/go now", "Stimulus/S  2"]
    np.testing.assert_allclose(rec.data[:, 0] * 1e-6, data[0], atol=0.1e-6 + 1e-9)  # pybv truncates


def test_mne_export_round_trip(tmp_path):
    pytest.importorskip("pybv")
    info = mne.create_info(["C3", "C4", "EOG1"], 250.0, ["eeg", "eeg", "eog"])
    x = np.random.default_rng(2).standard_normal((3, 500)) * 1e-5
    raw = mne.io.RawArray(x, info, verbose="error")
    raw.set_annotations(mne.Annotations([0.4, 1.2], [0, 0], ["Stimulus/S  7", "hello"]))
    mne.export.export_raw(tmp_path / "m.vhdr", raw, fmt="brainvision", verbose="error")
    rec, _ = _same_as_mne(tmp_path / "m.vhdr")
    np.testing.assert_allclose(rec.data.T * 1e-6, x, atol=1e-10)


# -- crafted files: every variant the specification allows ------------------------

_VMRK = """Brain Vision Data Exchange Marker File, Version 1.0

[Common Infos]
Codepage={cp}
DataFile={name}.eeg

[Marker Infos]
; Each entry: Mk<Marker number>=<Type>,<Description>,<Position in data points>,
Mk1=New Segment,,1,1,0,20200304050607080910
Mk2=Stimulus,S  1,3,1,0
Mk3=Response,R 12,5,2,0
Mk4=Comment,a\\1 b,7,1,0
Mk5=New Segment,,9,1,0
Mk6=Bad Interval,Bad Min-Max,10,4,0
Mk7=Stimulus,S  2,12,1,0
Mk8=Stimulus,late,99,1,0
"""


def _craft(folder, name="c", cp="UTF-8", fmt="INT_16", orientation="MULTIPLEXED",
           encoding="utf-8", data=None, datapoints=False, ascii_infos="", extra="",
           channels=None, payload=None, big=False):
    """Write a BrainVision header, marker and data file as the specification allows."""
    channels = channels or ["Fp1,,0.5,µV", "Cz ä,,1,mV", "GSR,,0.25,µS"]
    data = np.arange(36).reshape(12, 3) * [1, -2, 3] if data is None else data
    n, n_ch = data.shape
    lines = ["Brain Vision Data Exchange Header File Version 1.0",
             "; Data created by the Vision Recorder", "", "[Common Infos]",
             f"Codepage={cp}", f"DataFile={name}.eeg", f"MarkerFile={name}.vmrk",
             f"DataFormat={'ASCII' if fmt == 'ASCII' else 'BINARY'}",
             f"DataOrientation={orientation}", f"NumberOfChannels={n_ch}",
             "SamplingInterval=2000"]
    if datapoints:
        lines.append(f"DataPoints={n}")
    if fmt != "ASCII":
        lines += ["", "[Binary Infos]", f"BinaryFormat={fmt}"]
        if big:
            lines.append("UseBigEndianOrder=YES")
    else:
        lines += ["", "[ASCII Infos]", *ascii_infos.split("\n")]
    lines += ["", "[Channel Infos]", "; Ch<n>=<Name>,<Ref>,<Resolution>,<Unit>"]
    lines += [f"Ch{i + 1}={c}" for i, c in enumerate(channels)]
    lines += ["", extra, "[Comment]", "", "A m p l i f i e r  S e t u p", "=" * 28,
              "Channels", "#  Name  Phys. Chn.  Resolution / Unit  Low Cutoff [s]",
              "Impedance [kOhm] at 12:00:00 :", "Fp1:   5", "[Not a section] = 3"]
    (folder / f"{name}.vhdr").write_bytes("\n".join(lines).encode(encoding))
    (folder / f"{name}.vmrk").write_bytes(_VMRK.format(cp=cp, name=name).encode(encoding))
    if payload is None:
        dtype = {"INT_16": "i2", "INT_32": "i4", "IEEE_FLOAT_32": "f4"}[fmt]
        arr = data.T if orientation == "VECTORIZED" else data
        payload = arr.astype((">" if big else "<") + dtype).tobytes()
    (folder / f"{name}.eeg").write_bytes(payload)
    return folder / f"{name}.vhdr"


@pytest.mark.parametrize("fmt", ["INT_16", "INT_32", "IEEE_FLOAT_32"])
@pytest.mark.parametrize("orientation,datapoints", [("MULTIPLEXED", False),
                                                    ("VECTORIZED", True),
                                                    ("VECTORIZED", False)])
@pytest.mark.parametrize("cp,encoding", [("UTF-8", "utf-8"), ("ANSI", "cp1252"),
                                         ("Latin-1", "latin-1")])
def test_crafted_binary_variants(tmp_path, caplog, fmt, orientation, datapoints, cp,
                                 encoding):
    path = _craft(tmp_path, fmt=fmt, orientation=orientation, datapoints=datapoints, cp=cp,
                  encoding=encoding)
    with caplog.at_level("WARNING", logger="ampkit"):
        rec, raw = _same_as_mne(path)
    assert "1 marker(s) past the last sample" in caplog.text and "c.vmrk" in caplog.text
    assert rec.channels == ["Fp1", "Cz ä", "GSR"] and rec.units == ["µV", "mV", "µS"]
    assert rec.types == ["eeg", "eeg", "misc"]
    want = np.arange(36).reshape(12, 3) * [1, -2, 3] * [0.5, 1, 0.25]
    np.testing.assert_array_equal(rec.data, want)
    assert [(s, t) for s, _, t in rec.markers] == [
        (2, "Stimulus/S  1"), (4, "Response/R 12"), (6, "Comment/a, b"), (8, "New Segment/"),
        (9, "Bad Interval/Bad Min-Max"), (11, "Stimulus/S  2")]


def test_crafted_big_endian(tmp_path):
    # MNE does not read UseBigEndianOrder: compared with the numbers written
    path = _craft(tmp_path, fmt="INT_32", big=True)
    want = np.arange(36).reshape(12, 3) * [1, -2, 3] * [0.5, 1, 0.25]
    np.testing.assert_array_equal(ampkit.io.read(path).data, want)


@pytest.mark.parametrize("decimal", [".", ","])
def test_crafted_ascii_multiplexed(tmp_path, decimal):
    data = np.arange(36).reshape(12, 3) * [1.5, -2.25, 3]
    rows = [" ".join(f"{v:g}".replace(".", decimal) for v in row) for row in data]
    body = "Fp1 Cz GSR\n" + "\n".join(rows) + "\n"
    path = _craft(tmp_path, fmt="ASCII", data=data, payload=body.encode(),
                  ascii_infos=f"DecimalSymbol={decimal}\nSkipLines=1\nSkipColumns=0")
    rec, raw = _same_as_mne(path)
    np.testing.assert_allclose(rec.data, data * [0.5, 1, 0.25])


def test_crafted_ascii_vectorized_and_skipped_columns(tmp_path):
    # MNE refuses VECTORIZED ASCII (BrainVision Analyzer's export): compared with the numbers
    data = np.arange(36).reshape(12, 3) * [1.5, -2.25, 3]
    rows = [name + " " + " ".join(f"{v:g}" for v in col)
            for name, col in zip(["Fp1", "Cz", "GSR"], data.T, strict=True)]
    path = _craft(tmp_path, fmt="ASCII", data=data, orientation="VECTORIZED",
                  payload=("\n".join(rows) + "\n").encode(),
                  ascii_infos="DecimalSymbol=.\nSkipLines=0\nSkipColumns=1")
    rec = ampkit.io.read(path)
    np.testing.assert_allclose(rec.data, data * [0.5, 1, 0.25])
    (tmp_path / "c.eeg").write_bytes(b"Fp1 1 2 3\nCz 1 2\nGSR 1 2 3\n")
    with pytest.raises(RecordingError, match="c.eeg"):
        ampkit.io.read(path)
    (tmp_path / "c.eeg").write_bytes(b"Fp1 1 2 3\nCz 1 x 3\nGSR 1 2 3\n")
    with pytest.raises(RecordingError, match="not a number"):
        ampkit.io.read(path)


def test_header_variants_refused_with_reasons(tmp_path):
    path = _craft(tmp_path, fmt="INT_16")
    text = path.read_text(encoding="utf-8")
    for old, new, reason in [
        ("BinaryFormat=INT_16", "BinaryFormat=UINT_8", "BinaryFormat=UINT_8"),
        ("DataOrientation=MULTIPLEXED", "DataOrientation=DIAGONAL", "DIAGONAL"),
        ("SamplingInterval=2000", "SamplingInterval=0", "SamplingInterval"),
        ("SamplingInterval=2000", "SamplingInterval=1e400", "SamplingInterval"),
        ("NumberOfChannels=3", "NumberOfChannels=4", "no Ch4"),
        ("NumberOfChannels=3", "NumberOfChannels=-1", "NumberOfChannels"),
        ("DataFile=c.eeg", "DataFile=../c.eeg", "DataFile='../c.eeg'"),
        ("DataFile=c.eeg", "DataFile=/etc/passwd", "beside the header"),
        ("MarkerFile=c.vmrk", "MarkerFile=/etc/passwd", "MarkerFile='/etc/passwd'"),
        ("MarkerFile=c.vmrk", "MarkerFile=..\\\\x.vmrk", "MarkerFile"),
        ("Codepage=UTF-8", "Codepage=UTF-8\nDataType=FREQUENCYDOMAIN", "TIMEDOMAIN"),
    ]:
        path.write_text(text.replace(old, new), encoding="utf-8")
        with pytest.raises(RecordingError, match=re.escape(reason)) as info:
            ampkit.io.read(path)
        assert "c.vhdr" in str(info.value)


def test_never_reads_outside_the_header_folder(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _craft(tmp_path, name="outside")  # a readable recording one folder up
    text = path.read_text(encoding="utf-8").replace("DataFile=outside.eeg",
                                                    "DataFile=../outside.eeg")
    (inner / "rec.vhdr").write_text(text, encoding="utf-8")
    (inner / "rec.vmrk").write_text(_VMRK.format(cp="UTF-8", name="rec"), encoding="utf-8")
    with pytest.raises(RecordingError, match="only files beside the header"):
        ampkit.io.read(inner / "rec.vhdr")
    # MNE does follow it: the refusal is ampkit's
    assert mne.io.read_raw_brainvision(inner / "rec.vhdr").n_times == 12


def test_backslash_one_in_marker_texts_survives(tmp_path):
    texts = ["path C:\\1st", "a,b", "\\\u20601 joined", "plain"]
    w = BrainVisionWriter(tmp_path / "e", Header(["x\\1y", "b"], 100.0))
    w.write(np.zeros((20, 2), np.float32), np.arange(20) / 100.0,
            [Mark(i * 3, i * 0.03, i * 0.03, t) for i, t in enumerate(texts)])
    w.close()
    raw = mne.io.read_raw_brainvision(tmp_path / "e.vhdr")
    # MNE turns every "\1" into a comma; the escaped backslash shows as written
    descriptions = [d.replace("\u2060", "") for d in raw.annotations.description]
    assert descriptions == [f"Comment/{t.replace(chr(0x2060), '')}" for t in texts]
    assert raw.ch_names[0].replace("\u2060", "") == "x\\1y"
    assert [m[2] for m in ampkit.io.read(tmp_path / "e").markers] == texts
    (tmp_path / "e.marker").unlink()  # the texts from .vmrk alone come back exactly too
    rec = ampkit.io.read(tmp_path / "e")
    assert [m[2] for m in rec.markers] == [f"Comment/{t}" for t in texts]
    assert rec.channels[0] == "x\\1y"


def test_libmushu_files_with_hostile_values(tmp_path, caplog):
    w = BrainVisionWriter(tmp_path / "h", Header(["a"], 100.0))
    w.write(np.zeros((10, 1), np.float32), np.arange(10) / 100.0, [])
    w.close()
    (tmp_path / "h.marker").write_text("1e308 far\n-5 early\nnan x\n30 ok\n")
    (tmp_path / "h.vmrk").unlink()
    with caplog.at_level("WARNING", logger="ampkit"):
        rec = ampkit.io.read(tmp_path / "h")
    assert [(s, t) for s, _, t in rec.markers] == [(0, "early"), (3, "ok")]
    assert "'far'" in caplog.text
    meta = tmp_path / "h.meta"
    for text in ["[" * 100000 + "]" * 100000, '{"Channels": ["a"], "Sampling Frequency": 1e400}',
                 '{"Channels": "a", "Sampling Frequency": 1}', "[]", '{"Channels": []}']:
        meta.write_text(text)
        with pytest.raises(RecordingError, match="h.meta"):
            ampkit.io.read(tmp_path / "h")


# -- any bytes: read, or refused naming the file ------------------------------------


def _seed(folder, kind):
    if kind == "ampkit":
        w = BrainVisionWriter(folder / "s", Header(["a", "b"], 100.0, [], "amp"))
        w.write(np.ones((20, 2), np.float32), np.arange(20) / 100.0,
                [Mark(3, 0.03, 0.03, "m, 1"), Mark(9, 0.09, 0.09, "Stimulus/S  2")])
        w.close()
    elif kind == "ascii":
        _craft(folder, "s", fmt="ASCII", payload=b"a b c\n1 2 3\n4,5 6 7\n" * 4,
               ascii_infos="DecimalSymbol=,\nSkipLines=1\nSkipColumns=0", data=np.zeros((8, 3)))
    else:
        _craft(folder, "s", fmt="INT_16", orientation="VECTORIZED", datapoints=True,
               cp="ANSI", encoding="cp1252")
    return [folder / f"s{s}" for s in (".vhdr", ".vmrk", ".meta", ".marker", ".eeg")]


@settings(max_examples=120, deadline=2000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.sampled_from(["ampkit", "ascii", "vectorized"]),
    which=st.sampled_from([".vhdr", ".vmrk", ".meta", ".marker", ".eeg"]),
    drop_meta=st.booleans(),
    mutation=mutations(),
)
def test_any_bytes_read_or_refused(tmp_path_factory, seed, which, drop_meta, mutation):
    d = tmp_path_factory.mktemp("bvany")
    files = _seed(d, seed)
    if drop_meta and seed == "ampkit":  # the BrainVision header alone decides
        (d / "s.meta").unlink()
        (d / "s.marker").unlink()
    path = d / f"s{which}"
    if not path.exists():
        return
    path.write_bytes(mutate(path.read_bytes(), mutation))
    read_or_refuse(ampkit.io.read, d / "s.vhdr", files)


def test_channels_at_the_origin_are_misc_as_in_mne(tmp_path):
    coordinates = "[Coordinates]\nCh1=1,-90,-72\nCh2=0,0,0\nCh3=1,45,90\n"
    rec, raw = _same_as_mne(_craft(tmp_path, extra=coordinates))
    assert rec.types == ["eeg", "misc", "misc"]
