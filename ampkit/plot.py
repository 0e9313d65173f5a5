"""Draw a recording: channels stacked over time, markers as labelled lines.

Needs matplotlib (the optional extra ``pip install ampkit[plot]``); it is
imported only when a plot is drawn, and only its object-oriented API is used
(no pyplot, no GUI backend), so plotting works on headless machines and in
threads.

Every channel gets one row, its median removed; rows are spaced by a robust
common amplitude (the median over channels of their 1st-99th percentile
spread) so that one noisy channel does not squash the others, a channel that
leaves its row by more than 1.5 rows is cut there (and named in red), and a
scale bar gives the amplitude. Long recordings are reduced to a min/max
envelope per pixel column that covers every sample, so spikes and the last
samples stay visible. The figure grows with the channel count so 64 channels
and more stay readable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ampkit.errors import ConfigurationError
from ampkit.io import Recording, read

__all__ = ["plot_recording", "save_plot"]

#: Longest marker label drawn, in characters.
_LABEL_CHARS = 32


def _matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigurationError(
            "plotting needs matplotlib: pip install 'ampkit[plot]'"
        ) from None
    return Figure, FigureCanvasAgg


def _envelope(t: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max per bin when there are more samples than ``max_points``.

    The bins cover every sample (their sizes differ by at most one), and each
    is drawn from its first sample's time (its minimum) to its last sample's
    time (its maximum): the line spans the window to its last sample and
    reaches every sample's value.
    """
    n = len(t)
    if n <= max_points:
        return t, y
    bins = max(1, max_points // 2)
    edges = np.linspace(0, n, bins + 1).astype(np.intp)  # n > 2 * bins: no empty bin
    starts = edges[:-1]
    tt = np.empty(2 * bins, t.dtype)
    tt[0::2], tt[1::2] = t[starts], t[edges[1:] - 1]
    yy = np.empty((2 * bins, y.shape[1]), y.dtype)
    yy[0::2] = np.minimum.reduceat(y, starts, axis=0)
    yy[1::2] = np.maximum.reduceat(y, starts, axis=0)
    return tt, yy


def _short(text: str, most: int = _LABEL_CHARS) -> str:
    """``text`` on one line, cut to ``most`` characters with an ellipsis."""
    text = " ".join(text.splitlines())  # keep spaces: BrainVision's "S  1" has two
    return text if len(text) <= most else text[: most - 1] + "…"


def _scale_length(spacing: float) -> float:
    """The largest 1, 2 or 5 times a power of ten that fits in ``spacing``."""
    power = 10.0 ** np.floor(np.log10(spacing))
    return float(max(m * power for m in (1.0, 2.0, 5.0) if m * power <= spacing * (1 + 1e-9)))


def plot_recording(
    recording: Any,
    start: float = 0.0,
    duration: float | None = None,
    channels: list[str] | None = None,
    max_points: int = 4000,
    title: str | None = None,
    clip: float = 1.5,
) -> Any:
    """Draw a recording into a new matplotlib figure.

    Each channel is drawn around its own row with its median over the window
    removed (a DC offset does not move it off its row), all rows with the
    same scale, shown by the scale bar at the right. Markers past the end of
    the data are drawn dashed over a grey "no data" band when they are close
    to the end (within half the window), and listed below the plot otherwise.

    Parameters
    ----------
    recording : ampkit.io.Recording or str or path
        A recording, or a file :func:`ampkit.io.read` reads.
    start : float
        First second to draw.
    duration : float, optional
        Seconds to draw (default: to the end).
    channels : list of str, optional
        Channels to draw, in this order (default: all).
    max_points : int
        Above this many samples in the window, draw a min/max envelope (every
        sample still counts: the envelope of a bin holds its extremes).
    title : str, optional
        Figure title (default: file name, rate and size).
    clip : float or None
        Cut each channel's trace at this many row spacings from its row, as
        MNE's browser does, so that a drifting or very noisy channel does
        not hide the others; the labels of cut channels are red. None: no
        cut.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; each channel's line is labelled with the channel name, the
        scale bar's line has the gid ``'scalebar'``, marker lines ``'marker'``
        (``'marker-after-data'`` past the end).

    Raises
    ------
    ampkit.errors.ConfigurationError
        matplotlib is missing, an unknown channel, or an empty window.
    """
    rec = recording if isinstance(recording, Recording) else read(recording)
    Figure, _ = _matplotlib()
    names = list(rec.channels)
    if channels:
        missing = [c for c in channels if c not in names]
        if missing:
            raise ConfigurationError(f"no channel(s) {missing} in {rec.path}; it has {names}")
        cols = [names.index(c) for c in channels]
    else:
        cols = list(range(len(names)))
    fs = rec.fs
    first = max(0, int(round(start * fs)))
    last = rec.n_samples if duration is None else min(rec.n_samples, first + int(duration * fs))
    if last <= first:
        raise ConfigurationError(
            f"nothing to draw: {rec.path} has {rec.duration:.3f} s, asked from {start} s"
        )
    y = rec.data[first:last][:, cols].astype(np.float64)
    t = np.arange(first, last) / fs
    y -= np.median(y, axis=0)
    spread = np.percentile(y, 99, axis=0) - np.percentile(y, 1, axis=0)
    spacing = float(np.median(spread[spread > 0])) if np.any(spread > 0) else 1.0
    clipped = np.zeros(len(cols), bool)
    if clip is not None:
        limit = clip * spacing
        clipped = np.any(np.abs(y) > limit, axis=0)
        np.clip(y, -limit, limit, out=y)
    offsets = -np.arange(len(cols)) * spacing
    tt, yy = _envelope(t, y, max_points)

    # Markers: inside the window at their sample; past the end of the data
    # (when the window reaches it) at their time, if near enough to show.
    end = t[-1]
    window = max(end - t[0], 1.0 / fs)
    # (sample, time, text); long texts (an XDF stream's XML footer) shortened,
    # else one label can take the whole figure's height
    marks = [(int(m[0]), float(m[1]), _short(str(m[2]))) for m in rec.markers]
    inside = sorted((s / fs, text, False) for s, _, text in marks if first <= s < last)
    after = sorted((tm, text) for s, tm, text in marks if s >= rec.n_samples)
    if last < rec.n_samples:
        after = []
    near = [(tm, text, True) for tm, text in after if tm <= end + 0.5 * window]
    far = [(tm, text) for tm, text in after if tm > end + 0.5 * window]
    right = end if len(t) > 1 else end + 1.0 / fs
    if near:
        right = max(tm for tm, _, _ in near) + 0.02 * window

    n = len(cols)
    row_height = 0.22 if n > 16 else 0.45
    fig = Figure(figsize=(12, max(3.5, 1.6 + row_height * n)), layout="constrained")
    ax = fig.add_subplot()
    label_size = max(6.0, min(10.0, 400.0 / max(n, 1)))
    lines = ax.plot(tt, yy + offsets, linewidth=0.6, color="#1f3b73")
    for line, c in zip(lines, cols, strict=True):
        line.set_label(names[c])
    ax.set_yticks(offsets, [names[c] for c in cols], fontsize=label_size)
    for label, cut in zip(ax.get_yticklabels(), clipped, strict=True):
        if cut:
            label.set_color("#c0392b")
    ax.set_ylim(offsets[-1] - spacing, spacing)
    ax.set_xlim(t[0], right)
    ax.set_xlabel("time (s)")
    units = "/".join(sorted({rec.units[c] for c in cols}))

    # Scale bar: just right of the axes, on the last row.
    length = _scale_length(spacing)
    bar_x = ax.get_yaxis_transform()  # x in axes fraction, y in data
    bar = ax.plot([1.01, 1.01], [offsets[-1] - length / 2, offsets[-1] + length / 2],
                  transform=bar_x, color="black", linewidth=2.0, clip_on=False,
                  solid_capstyle="butt")[0]
    bar.set_gid("scalebar")
    note = f"{length:g} {units}\n\nrows {spacing:.3g}\n{units} apart"
    if clipped.any():
        note += f"\n\n{int(clipped.sum())} cut at\n±{clip:g} rows\n(red)"
    ax.text(1.02, offsets[-1] + length / 2, note, transform=bar_x, va="top", ha="left",
            fontsize=7, clip_on=False, gid="scalebar-label")

    if near:
        ax.axvspan(end + 0.5 / fs, right, color="0.85", zorder=0, gid="no-data")
        ax.text(end + 0.5 / fs, 0.0, " no data", transform=ax.get_xaxis_transform(),
                ha="left", va="bottom", fontsize=7, color="0.4")
    # Labels are vertical text above the axes; markers closer than a label's
    # width get their labels pushed right, side by side, instead of overprinted.
    points_per_s = 0.9 * 12 * 72 / max(right - t[0], 1.0 / fs)
    label_at = -np.inf
    for x, text, past in inside + near:
        ax.axvline(x, color="#c0392b", linewidth=0.8, alpha=0.8,
                   linestyle="--" if past else "-",
                   gid="marker-after-data" if past else "marker")
        wanted = x * points_per_s
        label_at = max(wanted, label_at + 9.0)
        ax.annotate(f" {text}", (x, 1.0), xycoords=ax.get_xaxis_transform(),
                    xytext=(label_at - wanted, 0), textcoords="offset points", rotation=90,
                    va="bottom", ha="center", fontsize=7, color="#c0392b",
                    annotation_clip=False)
    if far:
        listed = ", ".join(f"{text!r} at {tm:.3g} s" for tm, text in far[:5])
        more = f" and {len(far) - 5} more" if len(far) > 5 else ""
        ax.set_xlabel(f"time (s)\nafter the data ends ({end:.3g} s): {listed}{more}",
                      color="#c0392b")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    n_after = len(after)
    fig.suptitle(title or (
        f"{Path(rec.path).name}: {len(names)} channels, {fs:g} Hz, {rec.duration:.1f} s, "
        f"{len(rec.markers)} markers" + (f" ({n_after} after the data)" if n_after else "")
    ), fontsize=10)
    return fig


def save_plot(recording: Any, output: os.PathLike | str, dpi: int = 100, **kwargs: Any) -> Path:
    """Draw ``recording`` (see :func:`plot_recording`) into an image file.

    The format follows the suffix of ``output`` (``.png``, ``.pdf``, ``.svg``).
    Returns the path written.
    """
    _, FigureCanvasAgg = _matplotlib()
    fig = plot_recording(recording, **kwargs)
    FigureCanvasAgg(fig)
    output = Path(output)
    fig.savefig(output, dpi=dpi)
    return output
