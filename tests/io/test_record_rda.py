"""Recording a real protocol driver: the RDA driver against its simulator, to every format."""

import time

import mne
import numpy as np
import pytest

import ampkit
import ampkit.io
from ampkit.sim.rda import RDASimulator

mne.set_log_level("ERROR")
RES = [0.1, 0.5, 1.0, 0.05, 2.0]


@pytest.fixture(autouse=True)
def _free_marker_port(monkeypatch):
    monkeypatch.setenv("AMPKIT_MARKER_PORT", "0")


@pytest.mark.parametrize("name", ["rda", "rda.bdf", "rda.xdf"])
def test_rda_recording_keeps_every_sample_marker_and_resolution(tmp_path, name):
    channels = ["Cnt", "Fz", "Cz", "Pz", "Oz"]
    with RDASimulator(port=0, channels=channels, fs=500, block_size=10, dtype="int16",
                      resolution=RES, marker_rate=20) as sim:
        amp = ampkit.get_amp("rda", port=sim.port)
        amp.start(filename=tmp_path / name)
        blocks = []
        deadline = time.monotonic() + 20
        while sum(len(b) for b in blocks) < 400:
            assert time.monotonic() < deadline
            blocks.append(amp.get_block())
        amp.stop()
        amp.close()
    data = np.concatenate([b.data for b in blocks])
    marks = [(b.index + r, t) for b in blocks for r, t in b.marker_samples()]
    assert marks, "the simulator sends markers"
    rec = ampkit.io.read(tmp_path / name)
    assert rec.channels == channels and rec.fs == 500.0
    assert [(s, t) for s, _, t in rec.markers] == marks
    if name == "rda.bdf":
        # the driver's resolutions are the BDF+ steps: nothing lost to quantisation
        assert rec.n_samples == len(data)
        np.testing.assert_allclose(rec.data, data, rtol=1e-6, atol=1e-9)
        raw = mne.io.read_raw_bdf(tmp_path / name, preload=True)
        np.testing.assert_allclose(raw.get_data()[:, : len(data)].T * 1e6, data,
                                   rtol=1e-6, atol=1e-9)
        steps = np.diff(np.unique(rec.data[:, 1]))
        assert steps.min() >= RES[1] * (1 - 1e-6)
    else:
        np.testing.assert_array_equal(rec.data, data)
