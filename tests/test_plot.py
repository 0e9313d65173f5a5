"""ampkit.plot and `ampkit plot`: stacked channels, markers, 64 channels readable."""

import numpy as np
import pytest
from matplotlib.image import imread

import ampkit.io
from ampkit.cli import main
from ampkit.errors import ConfigurationError
from ampkit.io import Header, Mark
from ampkit.plot import plot_recording, save_plot


@pytest.fixture
def rec64(tmp_path):
    fs, n = 250.0, 2500
    names = [f"EEG{i:02d}" for i in range(64)]
    w = ampkit.io.open_writer(tmp_path / "big", Header(names, fs, [], "test"))
    rng = np.random.default_rng(1)
    data = (rng.standard_normal((n, 64)) * 10).astype(np.float32)
    data[:, 5] *= 1000  # one very noisy channel must not squash the others
    marks = [Mark(500, 2.0, 2.0, "S  1"), Mark(1250, 5.0, 5.0, "target"),
             Mark(2400, 9.6, 9.6, "end")]
    w.write(data, np.arange(n) / fs, marks)
    w.close()
    return tmp_path / "big"


def test_figure_layout(rec64):
    fig = plot_recording(rec64)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"EEG{i:02d}" for i in range(64)]
    assert fig.get_size_inches()[1] >= 14  # ~0.22 in per row at 64 channels
    ticks = ax.get_yticks()
    assert np.allclose(np.diff(ticks), ticks[1] - ticks[0])  # evenly stacked
    spacing = abs(ticks[1] - ticks[0])
    assert spacing < 200  # set by the typical channel, not the noisy one (~20000 wide)
    texts = [t.get_text().strip() for t in ax.texts]
    assert {"S  1", "target", "end"} <= set(texts)
    vlines = [ln for ln in ax.get_lines() if len(set(ln.get_xdata())) == 1]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == [2.0, 5.0, 9.6]
    # long recordings: an envelope, not every sample
    assert max(len(ln.get_xdata()) for ln in ax.get_lines()) <= 4000


def test_window_and_channels(rec64):
    fig = plot_recording(rec64, start=4.0, duration=2.0, channels=["EEG03", "EEG01"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["EEG03", "EEG01"]
    assert [t.get_text().strip() for t in ax.texts if t.get_text().strip() == "target"]
    assert ax.get_xlim() == pytest.approx((4.0, 5.996))
    with pytest.raises(ConfigurationError, match="EEG99"):
        plot_recording(rec64, channels=["EEG99"])
    with pytest.raises(ConfigurationError, match="nothing to draw"):
        plot_recording(rec64, start=100.0)


def test_png_and_cli(rec64, tmp_path, capsys):
    out = save_plot(rec64, tmp_path / "a.png")
    img = imread(out)
    assert img.shape[0] > 1400 and img.shape[1] == 1200
    args = ["plot", str(rec64), "-o", str(tmp_path / "b.png"), "--channels", "EEG00,EEG02"]
    assert main(args) == 0
    assert imread(tmp_path / "b.png").shape[1] == 1200
    assert main(["plot", str(rec64) + ".vhdr"]) == 0
    assert (tmp_path / "big.vhdr.png").exists()
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
