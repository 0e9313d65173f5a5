"""The five-file recording, read back by MNE, by numpy + JSON (libmushu) and by ampkit."""

import json
import time

import mne
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iohelpers import expected, make_blocks, record

import ampkit
import ampkit.io
from ampkit.decorator import Block
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
