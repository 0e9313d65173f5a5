"""BDF+ recordings read back by MNE, pyedflib and ampkit; ampkit reading pyedflib's files."""

import datetime as dt
import logging

import mne
import numpy as np
import pyedflib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from iohelpers import (
    assert_same_raw,
    craft_edf,
    expected,
    foreign,
    make_blocks,
    mutate,
    mutations,
    read_or_refuse,
    record,
)

import ampkit.io
from ampkit.block import Block
from ampkit.errors import ConfigurationError, RecordingError
from ampkit.io.bdf import BDFWriter, read_bdf
from ampkit.io.recorder import Recorder
from ampkit.io.writer import Header, Mark

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


def test_a_sample_count_with_a_superscript_digit_is_ignored(tmp_path_factory):
    # '¹' (byte 0xB9 in the header's Latin-1) is a digit to str.isdigit()
    # but not to int(): the reader raised a raw ValueError (found by the fuzz below).
    raw = bytearray(_valid_bdf(tmp_path_factory))
    at = raw.index(b"ampkit_samples=") + len(b"ampkit_samples=")
    raw[at] = 0xB9
    path = tmp_path_factory.mktemp("bdfsup") / "s.bdf"
    path.write_bytes(bytes(raw))
    rec = read_bdf(path)  # the count is ignored: every record's samples
    assert rec.data.ndim == 2 and rec.n_samples > 0


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


# -- files written by other software, compared with MNE ----------------------------


def _same_as_mne(rec, raw, stim=None):
    """ampkit and MNE read the file alike: names, rate, samples, values, events."""
    assert rec.channels == raw.ch_names
    assert rec.fs == raw.info["sfreq"] and rec.n_samples == raw.n_times
    assert rec.meas_date == raw.info["meas_date"]
    assert_same_raw(rec.to_mne(), raw)
    want = [(round(a["onset"] * rec.fs), a["description"]) for a in raw.annotations]
    if stim is not None:
        events = mne.find_events(raw, stim_channel=stim, shortest_event=1, verbose="error")
        want += [(int(s), str(int(v))) for s, _, v in events]
    assert sorted((s, t) for s, _, t in rec.markers) == sorted(want)


@pytest.mark.parametrize("path", foreign("edf/*.bdf"))
def test_foreign_biosemi_file(path):
    rec = ampkit.io.read(path)
    raw = mne.io.read_raw_bdf(path, preload=True)
    _same_as_mne(rec, raw, stim="Status")
    status = rec.channels.index("Status")
    assert rec.types[status] == "stim" and rec.data[:, status].max() < 2**17
    assert rec.markers  # the Status channel's triggers


@pytest.mark.parametrize("path", foreign("edf/*stim*.edf"))
def test_foreign_edf_with_a_trigger_channel(path):
    rec = ampkit.io.read(path, stim_channel="DIG DTRIG")
    raw = mne.io.read_raw_edf(path, preload=True, stim_channel="DIG DTRIG")
    _same_as_mne(rec, raw, stim="DIG DTRIG")
    assert len(rec.markers) == 12
    with pytest.raises(ConfigurationError, match="no channel named nothing"):
        ampkit.io.read(path, stim_channel="nothing")
    assert ampkit.io.read(path).markers == []  # no Status/TRIGGER channel: nothing decoded


def _pyedflib_file(path, signals, annotations=(), bdf=True):
    kind = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    dmax = 2**23 - 1 if bdf else 2**15 - 1
    w = pyedflib.EdfWriter(str(path), len(signals), file_type=kind)
    try:
        w.setStartdatetime(dt.datetime(2021, 5, 6, 7, 8, 9))
        w.setSignalHeaders([
            {"label": label, "dimension": unit, "sample_frequency": fs,
             "physical_max": pmax, "physical_min": -pmax, "digital_max": dmax,
             "digital_min": -dmax - 1}
            for label, unit, fs, pmax, _ in signals
        ])
        w.writeSamples([np.asarray(x, float) for *_, x in signals])
        for onset, text in annotations:
            w.writeAnnotation(onset, -1, text)
    finally:
        w.close()
    return path


def _trigger(n, fs, at):
    x = np.zeros(n)
    for t, value, length in at:
        x[int(t * fs): int(t * fs) + length] = value
    return x


@pytest.mark.parametrize("bdf", [True, False])
def test_triggers_and_annotations_written_by_pyedflib(tmp_path, bdf):
    rng = np.random.default_rng(3)
    n = 512
    trig = _trigger(n, 256, [(0.25, 5, 3), (0.5, 5, 1), (0.52, 7, 4), (1.5, 65535, 9)])
    trig[100:102] = 3  # rising after a fall: 0 -> 3
    path = _pyedflib_file(tmp_path / ("t.bdf" if bdf else "t.edf"), [
        ("Fz", "uV", 256, 3000.0, rng.standard_normal(n) * 50),
        ("Cz", "uV", 256, 3000.0, rng.standard_normal(n) * 50),
        ("TRIGGER", "", 256, 70000.0 if bdf else 32767.0, trig),
    ], annotations=[(0.125, "start"), (1.0, "middle, with a comma")], bdf=bdf)
    rec = ampkit.io.read(path)
    raw = (mne.io.read_raw_bdf if bdf else mne.io.read_raw_edf)(path, preload=True)
    _same_as_mne(rec, raw, stim="TRIGGER")
    assert [m for m in rec.markers if m[2] in ("start", "middle, with a comma")] == [
        (32, 0.125, "start"), (256, 1.0, "middle, with a comma")]
    assert rec.types == ["eeg", "eeg", "stim"]


def test_status_bits_above_the_triggers_are_masked(tmp_path):
    # BioSemi sets CMS-in-range (bit 20) and others above the 16 trigger bits
    status = np.full(200, (1 << 20) | (1 << 23), np.int64)
    status[50:60] |= 0x00FF
    status[120:130] |= 0x0103
    path = craft_edf(tmp_path / "s.bdf", [
        {"label": "A1", "spr": 100, "digital": np.arange(200) - 100},
        {"label": "Status", "spr": 100, "digital": status, "unit": "Boolean"},
    ], bdf=True)
    rec = ampkit.io.read(path)
    raw = mne.io.read_raw_bdf(path, preload=True)
    _same_as_mne(rec, raw, stim="Status")
    assert [(s, t) for s, _, t in rec.markers] == [(50, "255"), (120, "259")]


def test_one_event_on_two_trigger_channels_is_one_marker(tmp_path):
    trig = np.zeros(300, np.int64)
    trig[[40, 41, 200]] = [3, 3, 9]
    path = craft_edf(tmp_path / "two.bdf", [
        {"label": "STATUS", "spr": 100, "digital": trig},
        {"label": "trigger", "spr": 100, "digital": trig},
        {"label": "C3", "spr": 100, "digital": np.arange(300)}], bdf=True)
    rec = ampkit.io.read(path)
    raw = mne.io.read_raw_bdf(path, preload=True)
    _same_as_mne(rec, raw, stim=["STATUS", "trigger"])
    assert [(s, t) for s, _, t in rec.markers] == [(40, "3"), (200, "9")]


def test_mixed_rates(tmp_path, caplog):
    n = 1024
    slow = np.sin(np.arange(n // 8) / 5) * 100
    trig = np.zeros(n // 4)
    trig[[10, 11, 70]] = [4, 4, 9]
    path = _pyedflib_file(tmp_path / "m.bdf", [
        ("EEG1", "uV", 256, 3000.0, np.cos(np.arange(n) / 9) * 200),
        ("Temp", "degC", 32, 100.0, slow),
        ("EEG2", "uV", 256, 3000.0, np.sin(np.arange(n) / 9) * 200),
        ("Status", "", 64, 70000.0, trig),
    ])
    with caplog.at_level("WARNING", logger="ampkit"):
        rec = ampkit.io.read(path)
    assert "left out: Temp" in caplog.text and "m.bdf" in caplog.text
    raw = mne.io.read_raw_bdf(path, preload=True)
    assert rec.fs == raw.info["sfreq"] == 256 and rec.n_samples == raw.n_times
    assert rec.channels == ["EEG1", "EEG2"]
    np.testing.assert_allclose(rec.data.T * 1e-6, raw.get_data(["EEG1", "EEG2"]),
                               rtol=1e-6, atol=1e-12)
    events = mne.find_events(raw, stim_channel="Status", verbose="error")
    assert [(s, t) for s, _, t in rec.markers] == [(int(s), str(v)) for s, _, v in events]
    assert [s for s, _, _ in rec.markers] == [40, 280]


def test_duplicate_labels_as_mne(tmp_path, caplog):
    x = np.zeros(256)
    path = _pyedflib_file(tmp_path / "d.edf", [
        ("EEG", "uV", 128, 100.0, x), ("EEG", "uV", 128, 100.0, x), ("EEG-0", "uV", 128, 100.0, x),
        ("ECG", "mV", 128, 10.0, x), ("EEG", "uV", 128, 100.0, x)], bdf=False)
    with caplog.at_level("WARNING", logger="ampkit"):
        rec = ampkit.io.read(path)
    assert "duplicate" in caplog.text
    raw = mne.io.read_raw_edf(path)
    assert rec.channels == raw.ch_names == ["EEG-a", "EEG-1", "EEG-0", "ECG", "EEG-2"]


# -- hostile headers: an ampkit error naming the file, or markers dropped -----------


def _simple(tmp_path, name="h.bdf", **kw):
    return craft_edf(tmp_path / name, [{"label": "A", "spr": 10, "digital": np.arange(30)}],
                     bdf=True, **kw)


def test_hostile_headers(tmp_path):
    for text in ("inf", "nan", "0", "-1", "1e400"):
        path = _simple(tmp_path, duration_text=text)
        with pytest.raises(RecordingError, match="h.bdf: data record duration"):
            ampkit.io.read(path)
    path = _simple(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[256 + 16 + 80 + 8 : 256 + 16 + 80 + 16] = b"inf     "  # physical minimum
    path.write_bytes(bytes(raw))
    with pytest.raises(RecordingError, match="h.bdf: a physical or digital limit"):
        ampkit.io.read(path)


def test_hostile_annotation_onsets(tmp_path, caplog):
    tals = [b"+0\x14\x14\x00+1e400\x14x\x14\x00+nan\x14y\x14\x00",
            b"+1\x14\x14\x00+" + b"9" * 400 + b"\x14far\x14\x00+1.5\x14ok\x14\x00",
            b"+2\x14\x14\x00-5\x14before\x14\x00"]
    path = _simple(tmp_path, annotations=tals)
    with caplog.at_level("WARNING", logger="ampkit"):
        rec = ampkit.io.read(path)
    assert [(s, t) for s, _, t in rec.markers] == [(0, "before"), (15, "ok")]
    assert "'far'" in caplog.text
    # (mne.io.read_raw_bdf raises OverflowError on this file)
    assert list(rec.to_mne().annotations.description) == ["ok"]


def test_annotation_never_past_the_data_after_sigkill(tmp_path):
    # the markers of samples still waiting for their record wait with them
    w = BDFWriter(tmp_path / "k.bdf", Header(["a"], 100.0))  # records of 10 samples
    w.write(np.ones((15, 1), np.float32), np.arange(15) / 100.0,
            [Mark(3, 0.03, 0.03, "in the first record"), Mark(12, 0.12, 0.12, "pending")])
    # killed here: what is on disk holds 10 samples and only the annotation among them
    # (MNE and ampkit.io.read would hide one past the data; pyedflib shows every TAL)
    f = pyedflib.EdfReader(str(tmp_path / "k.bdf"))
    try:
        assert f.getNSamples()[0] == 10
        assert list(f.readAnnotations()[2]) == ["in the first record"]
    finally:
        f.close()
    assert [m[2] for m in read_bdf(tmp_path / "k.bdf").markers] == ["in the first record"]
    w.write(np.ones((5, 1), np.float32), np.arange(15, 20) / 100.0, [])
    raw = mne.io.read_raw_bdf(tmp_path / "k.bdf")
    assert [round(a["onset"] * 100) for a in raw.annotations] == [3, 12]
    w.close()


# -- any bytes: read, or refused naming the file ------------------------------------


@settings(max_examples=120, deadline=2000)
@given(seed=st.sampled_from(["ampkit", "craft", "edf"]), mutation=mutations(3000))
def test_any_bytes_read_or_refused(tmp_path_factory, seed, mutation):
    d = tmp_path_factory.mktemp("bdfany")
    if seed == "ampkit":
        path = d / "s.bdf"
        record(path, make_blocks(n_blocks=4, channels=2), channels=2)
    else:
        path = craft_edf(d / ("s.bdf" if seed == "craft" else "s.edf"), [
            {"label": "A", "spr": 8, "digital": np.arange(32)},
            {"label": "Status", "spr": 4, "digital": np.arange(16) % 3},
            {"label": "A", "spr": 8, "digital": -np.arange(32)}],
            bdf=seed == "craft", annotations=[b"+0\x14\x14\x00+0.5\x14m\x14\x00"] * 4)
    path.write_bytes(mutate(path.read_bytes(), mutation))
    read_or_refuse(ampkit.io.read, path, [path])
