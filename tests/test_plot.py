"""ampkit.plot and `ampkit plot`: stacked channels, markers, 64 channels readable."""

import warnings

import numpy as np
import pytest
from matplotlib.image import imread

import ampkit.io
from ampkit.cli import main
from ampkit.errors import ConfigurationError
from ampkit.io import Header, Mark, Recording
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
    vlines = [ln for ln in ax.get_lines() if ln.get_gid() == "marker"]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == [2.0, 5.0, 9.6]
    # long recordings: an envelope, not every sample
    assert max(len(ln.get_xdata()) for ln in ax.get_lines()) <= 4000
    # the noisy channel is cut at 1.5 rows and named in red; the others are not
    colors = [t.get_color() for t in ax.get_yticklabels()]
    assert colors[5] != colors[4] == colors[6]


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


def channel_lines(fig):
    ax = fig.axes[0]
    names = {t.get_text() for t in ax.get_yticklabels()}
    return {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label() in names}


def make_recording(data, fs=1000.0, markers=(), units=None):
    names = [f"C{i}" for i in range(data.shape[1])]
    return Recording(data=np.asarray(data, np.float32), fs=fs, channels=names,
                     units=units or ["µV"] * len(names), markers=list(markers), path="mem")


@pytest.mark.parametrize("n", [5999, 4001, 8000, 12345])
def test_every_sample_is_drawn_to_the_last(n):
    """The envelope covers the tail: the drawn extent reaches the last sample's
    time, and each channel's drawn range is the range of all its samples."""
    rng = np.random.default_rng(n)
    data = rng.standard_normal((n, 3)).astype(np.float32)
    data[-1, 0] = 40.0  # a spike on the very last sample
    data[-2, 1] = -40.0
    rec = make_recording(data)
    fig = plot_recording(rec, clip=None)
    ticks = fig.axes[0].get_yticks()
    lines = channel_lines(fig)
    assert list(lines) == ["C0", "C1", "C2"]
    for i, line in enumerate(lines.values()):
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata()) - ticks[i]
        assert len(x) <= 4000
        assert x[0] == 0.0 and x[-1] == pytest.approx((n - 1) / 1000.0)
        assert np.all(np.diff(x) >= 0)
        column = data[:, i].astype(np.float64)
        column -= np.median(column)
        assert y.max() == pytest.approx(column.max()) and y.min() == pytest.approx(column.min())
    assert fig.axes[0].get_xlim()[1] == pytest.approx((n - 1) / 1000.0)


def test_scale_bar_and_offsets():
    n = 3000
    rng = np.random.default_rng(2)
    data = rng.standard_normal((n, 4)) * 20.0
    data[:, 1] += 50000.0  # DC offset: removed, the channel stays on its row
    data[:, 2] += np.linspace(0, 3000, n)  # drift far beyond a row: cut there
    fig = plot_recording(make_recording(data, fs=500.0))
    ax = fig.axes[0]
    ticks = ax.get_yticks()
    spacing = ticks[0] - ticks[1]
    [bar] = [ln for ln in ax.get_lines() if ln.get_gid() == "scalebar"]
    length = np.ptp(bar.get_ydata())
    mantissa = length / 10 ** np.floor(np.log10(length))
    assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-9
    assert spacing / 5 < length <= spacing
    [label] = [t for t in ax.texts if t.get_gid() == "scalebar-label"]
    assert label.get_text().splitlines()[0] == f"{length:g} µV"
    lines = channel_lines(fig)
    for i, name in enumerate(["C0", "C1", "C2", "C3"]):
        y = np.asarray(lines[name].get_ydata()) - ticks[i]
        assert np.all(np.abs(y) <= 1.5 * spacing + 1e-9), name
    dc = np.asarray(lines["C1"].get_ydata()) - ticks[1]
    assert np.median(dc) == pytest.approx(0.0, abs=0.01)  # on its row, and all of it drawn
    assert np.ptp(dc) == pytest.approx(np.ptp(data[:, 1]), abs=0.05)
    red = [t.get_text() for t in ax.get_yticklabels() if t.get_color() == "#c0392b"]
    assert red == ["C2"]
    assert "1 cut" in label.get_text()


def test_markers_past_the_data():
    n, fs = 1000, 100.0  # 10 s
    data = np.random.default_rng(3).standard_normal((n, 2))
    marks = [(500, 5.0, "inside"), (n, 11.0, "soon after"), (n, 60.0, "much later")]
    fig = plot_recording(make_recording(data, fs=fs, markers=marks))
    ax = fig.axes[0]
    solid = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_gid() == "marker"]
    dashed = [ln for ln in ax.get_lines() if ln.get_gid() == "marker-after-data"]
    assert solid == [5.0]
    assert [ln.get_xdata()[0] for ln in dashed] == [11.0]
    assert dashed[0].get_linestyle() == "--"
    assert ax.get_xlim()[1] > 11.0  # the axis reaches the marker
    [band] = [p for p in ax.patches if p.get_gid() == "no-data"]
    assert band.get_x() == pytest.approx(9.995)  # grey from just after the last sample
    texts = [t.get_text().strip() for t in ax.texts]
    assert "inside" in texts and "soon after" in texts and "no data" in texts
    assert "'much later' at 60 s" in ax.get_xlabel()  # too far to draw: listed
    assert "(2 after the data)" in fig._suptitle.get_text()
    # a window that ends before the data does: nothing is "after the data"
    fig = plot_recording(make_recording(data, fs=fs, markers=marks), duration=6.0)
    assert not [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "marker-after-data"]


def test_long_marker_texts_are_shortened(tmp_path):
    """A marker text of hundreds of characters (an XDF footer read as a marker)
    is drawn as one short label, and the layout still fits."""
    data = np.random.default_rng(4).standard_normal((500, 2))
    long = "<?xml version='1.0'?><info>" + "x" * 400 + "</info>"
    rec = make_recording(data, fs=100.0, markers=[(100, 1.0, long), (200, 2.0, "a\nb")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "constrained_layout not applied"
        save_plot(rec, tmp_path / "long.png")
    texts = [t.get_text().strip() for t in plot_recording(rec).axes[0].texts]
    assert "<?xml version='1.0'?><info>xxxx…" in texts and "a b" in texts
