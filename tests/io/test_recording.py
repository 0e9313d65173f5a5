"""Recording.to_mne: every format ampkit writes arrives in MNE as MNE's own readers read it."""

import logging

import mne
import numpy as np
import pytest
import pyxdf
from iohelpers import assert_same_raw, expected, make_blocks, record

import ampkit.io
from ampkit.io.recording import Recording, keep_markers_in_data, unique_names

mne.set_log_level("ERROR")


UNITS = ["µV", "mV", "V", "µV"]


def test_five_files_to_mne_equals_read_raw_brainvision(tmp_path):
    blocks = make_blocks(n_blocks=12, channels=4)
    record(tmp_path / "r", blocks, channels=4, units=UNITS)
    rec = ampkit.io.read(tmp_path / "r")
    want = mne.io.read_raw_brainvision(tmp_path / "r.vhdr", preload=True)
    got = rec.to_mne()
    assert_same_raw(got, want)
    assert got.info["meas_date"] is not None  # from the New Segment marker
    # the markers themselves keep their texts; MNE's view adds the BrainVision type
    assert [m[2] for m in rec.markers] == [m[2] for m in expected(blocks)[2]]


def test_bdf_to_mne_equals_read_raw_bdf(tmp_path):
    blocks = make_blocks(n_blocks=12, channels=4)
    record(tmp_path / "r.bdf", blocks, channels=4, units=UNITS)
    rec = ampkit.io.read(tmp_path / "r.bdf")
    want = mne.io.read_raw_bdf(tmp_path / "r.bdf", preload=True)
    # MNE shows the zeros padding the last 0.1 s record; ampkit drops them
    assert_same_raw(rec.to_mne(), want, n=rec.n_samples)
    assert want.n_times - rec.n_samples < 25


def test_xdf_to_mne_equals_pyxdf_in_volts(tmp_path):
    blocks = make_blocks(n_blocks=12, channels=4)
    _, ts, marks = expected(blocks)
    record(tmp_path / "r.xdf", blocks, channels=4, units=UNITS)
    raw = ampkit.io.read(tmp_path / "r.xdf").to_mne()
    streams, header = pyxdf.load_xdf(str(tmp_path / "r.xdf"), dejitter_timestamps=False)
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    np.testing.assert_allclose(raw.get_data(), eeg["time_series"].T * np.array(
        [[1e-6], [1e-3], [1.0], [1e-6]]), rtol=1e-7)
    assert raw.info["sfreq"] == float(eeg["info"]["nominal_srate"][0])
    assert raw.get_channel_types() == ["eeg"] * 4
    assert [round(a["onset"] * 250) for a in raw.annotations] == [m[0] for m in marks]
    assert list(raw.annotations.description) == [m[2] for m in marks]
    assert raw.info["meas_date"] is not None  # the file header's datetime


def test_to_mne_of_a_recording_in_memory():
    rec = Recording(np.arange(20, dtype=np.float32).reshape(10, 2), 10.0, ["a", "a"],
                    ["µV", "°C"], [(3, 0.3, "x"), (9, 0.9, "y")])
    raw = rec.to_mne()
    assert raw.ch_names == ["a-0", "a-1"] and raw.get_channel_types() == ["eeg", "misc"]
    np.testing.assert_allclose(raw.get_data()[0], rec.data[:, 0] * 1e-6)
    np.testing.assert_allclose(raw.get_data()[1], rec.data[:, 1])
    assert list(raw.annotations.onset) == [0.3, 0.9] and raw.info["meas_date"] is None


@pytest.mark.parametrize("names", [
    ["a", "b"], ["EEG", "EEG", "EEG-0", "ECG", "EEG"], ["x"] * 30,
    ["a", "a-0", "a-a", "a", "a"], ["", ""],
])
def test_unique_names_as_mne(names):
    from mne._fiff.meas_info import _unique_channel_names  # the reference behaviour

    assert unique_names(list(names)) == _unique_channel_names(list(names), verbose="error")


def test_markers_past_the_data_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        kept = keep_markers_in_data([(5, 0.5, "b"), (-3, -0.3, "a"), (10, 1.0, "end"),
                                     (float("inf"), 1e308, "far"), (float("nan"), 0, "?")],
                                    10, "rec.xdf")
    assert kept == [(0, -0.3, "a"), (5, 0.5, "b")]
    assert "rec.xdf: 3 marker(s) past the last sample (10) dropped: 'end', 'far', '?'" in \
        caplog.text
