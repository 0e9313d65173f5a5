"""The ``share`` service: ``amp.start(share=...)``, options, failures, adding it while running."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import leftovers

import ampkit
from ampkit.errors import ConfigurationError, RecordingError, StreamEndedError
from ampkit.services import service_types
from ampkit.shared import SharedService, SharedWriter
from ampkit.shared.segment import segment_path


def test_options_are_checked_before_anything_opens():
    assert SharedService.from_options({}) is None
    assert SharedService.from_options({"share": None}) is None
    assert SharedService.from_options({"share": False}) is None
    with pytest.raises(ConfigurationError, match="share_seconds given without share"):
        SharedService.from_options({"share_seconds": 3})
    with pytest.raises(ConfigurationError, match="share must be a stream name"):
        SharedService.from_options({"share": True})
    with pytest.raises(ConfigurationError, match="share_seconds must be"):
        SharedService.from_options({"share": "x", "share_seconds": 0})
    with pytest.raises(ConfigurationError, match="shared stream name"):
        SharedService.from_options({"share": "a/b"})
    service = SharedService.from_options({"share": "x", "share_seconds": 2})
    assert (service.name, service.seconds, service.writer) == ("x", 2.0, None)


def test_it_is_one_of_ampkits_services():
    kinds = list(service_types())
    assert kinds.index("markers") < kinds.index("share") < kinds.index("lsl")


def test_amp_start_share(shm_name):
    amp = ampkit.get_amp("random", fs=500, channels=4)
    amp.start(share=shm_name, share_seconds=3)
    try:
        r = ampkit.attach(shm_name, timeout=0)
        assert r.channel_names == amp.get_channels() and r.fs == 500.0
        assert r.buffer_size == 1500 and r.source == amp.name and r.units == amp.get_units()
        got = []
        while sum(len(b) for b in got) < 100:
            got.append(amp.get_block())
        amp.add_marker("go")
        while not amp.n_markers:
            got.append(amp.get_block())
        assert amp.status()["share"] == shm_name
        n = amp.n_samples
        data = np.concatenate([b.data for b in got])
        np.testing.assert_array_equal(r.get_data(0, n), data)
        np.testing.assert_array_equal(r.get_timestamps(0, n),
                                      np.concatenate([b.timestamps for b in got]))
        [(index, t, text)] = r.get_markers_in(0, n)
        assert text == "go" and t == got[-1].markers[0][0]
        assert index == got[-1].index + got[-1].marker_samples()[0][0]
    finally:
        amp.stop()
    assert not segment_path(shm_name).exists()
    r.update()  # what was written is still there after the writer stopped
    assert r.n_new == n and r.get_markers() == got[-1].markers
    with pytest.raises(StreamEndedError, match=f"stopped after {n} samples"):
        r.update()
    amp.close()


def test_a_failed_start_leaves_no_segment(shm_name, tmp_path):
    amp = ampkit.get_amp("random", fs=500, channels=4)
    with pytest.raises(ConfigurationError, match="unknown start\\(\\) options"):
        amp.start(share=shm_name, no_such_option=1)
    assert leftovers(shm_name) == [] and not amp.running
    # another service failing to open (the recorder, after it) closes it again
    (tmp_path / "exists.xdf").write_bytes(b"")
    with pytest.raises(RecordingError, match="exists"):
        amp.start(share=shm_name, filename=tmp_path / "exists.xdf")
    assert leftovers(shm_name) == [] and not amp.running
    with SharedWriter(shm_name, ["x"], 10.0):
        with pytest.raises(ConfigurationError, match="in use by process"):
            amp.start(share=shm_name)
    assert not amp.running
    amp.close()


def test_shared_while_running(shm_name):
    with ampkit.get_amp("random", fs=500, channels=2) as amp:
        amp.start(marker_port=None)
        amp.get_block()
        [service] = amp.add_service(share=shm_name)
        r = ampkit.attach(shm_name, timeout=0)
        while r.last_sample < 10:
            amp.get_block()
        amp.remove_service(service)
        assert leftovers(shm_name) == []
        with pytest.raises(StreamEndedError):
            r.wait(r.last_sample, r.last_sample + 1)
        amp.stop()
