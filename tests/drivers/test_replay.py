import time

import numpy as np
import pytest

import ampkit
from ampkit.errors import ConfigurationError, StateError

DATA = np.arange(200, dtype=np.float32).reshape(100, 2)
MARKERS = [(-10.0, "before"), (0.0, "first"), (105.0, "S 1"), (990.0, "last"),
           (1500.0, "after")]


def replay(**kw):
    config = dict(data=DATA, marker=MARKERS, channels=["C3", "C4"], fs=100,
                  realtime=False, blocksize_samples=10)
    config.update(kw)
    return ampkit.get_amp("replayamp", **config)


def test_as_fast_as_asked_returns_every_sample_and_marker_once(caplog):
    with caplog.at_level("WARNING", logger="ampkit"):
        amp = replay()
    assert "1 marker(s) after the last sample" in caplog.text and "'after'" in caplog.text
    amp.start()
    rows, marks = [], []
    for _ in range(12):
        block = amp.get_block()
        rows.append(block.data)
        for row, text in block.marker_samples():
            marks.append((block.index + row, text))
    amp.stop()
    np.testing.assert_array_equal(np.concatenate(rows), DATA)
    assert [m for _, m in marks] == ["before", "first", "S 1", "last"]
    rows = {text: row for row, text in marks}
    # 105 ms -> row 10.5 -> the first sample at or after it; "after" has no sample
    assert rows == {"before": 0, "first": 0, "S 1": 11, "last": 99}
    assert amp.amp.finished


def test_relative_ms_in_libmushu_shape():
    amp = replay()
    amp.start()
    amp.get_data()
    data, markers = amp.get_data()  # samples 10..19, 100..190 ms
    amp.stop()
    assert data[0, 0] == 20.0
    assert markers == [(pytest.approx(5.0), "S 1")]


def test_realtime_blocks_are_whole_multiples():
    amp = replay(realtime=True, blocksize_samples=None, blocksize_ms=50)  # 5 samples
    amp.start()
    time.sleep(0.12)
    data, _ = amp.get_data()
    amp.stop()
    assert len(data) % 5 == 0 and len(data) >= 10


@pytest.mark.parametrize("bad", [
    dict(blocksize_samples=None),
    dict(blocksize_ms=100),  # both given
    dict(blocksize_samples=None, blocksize_ms=15),  # 1.5 samples
    dict(channels=["only one"]),
    dict(data=np.zeros(10)),
    dict(fs=0),
    dict(marker=[("x", "y")]),
    dict(data=None),
])
def test_checks(bad):
    with pytest.raises(ConfigurationError):
        replay(**bad)


def test_start_before_configure():
    amp = ampkit.get_amp("replay")
    with pytest.raises(StateError):
        amp.start()


def test_a_file_with_an_infinite_rate_is_a_configuration_error(tmp_path):
    # An XDF whose nominal_srate is 1e400 (inf) used to overflow in
    # configure() -- or, played through the decorator, after its marker
    # servers were opened.
    amp = ampkit.get_amp("replay", data=np.zeros((100, 2)), channels=["a", "b"], fs=1000,
                         realtime=False, blocksize_samples=10)
    amp.start(filename=str(tmp_path / "rec.xdf"), marker_port=None)
    for _ in range(10):
        amp.get_block()
    amp.stop()
    raw = (tmp_path / "rec.xdf").read_bytes()
    assert raw.count(b"<nominal_srate>1000.0</nominal_srate>") == 1
    bad = tmp_path / "inf.xdf"
    bad.write_bytes(raw.replace(b"<nominal_srate>1000.0<", b"<nominal_srate>1e4000<"))
    with pytest.raises(ConfigurationError, match="inf.xdf"):
        ampkit.get_amp("replay", filename=str(bad))
    with pytest.raises(ConfigurationError, match="finite"):
        ampkit.get_amp("replay", data=np.zeros((10, 1)), channels=["a"], fs=float("inf"),
                       blocksize_samples=1)
