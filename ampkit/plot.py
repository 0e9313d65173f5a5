"""Draw a recording: channels stacked over time, markers as labelled lines.

Needs matplotlib (the optional extra ``pip install ampkit[plot]``); it is
imported only when a plot is drawn, and only its object-oriented API is used
(no pyplot, no GUI backend), so plotting works on headless machines and in
threads.

Every channel gets one row; rows are spaced by a robust common amplitude
(the median over channels of their 1st-99th percentile spread) so that one
noisy channel does not squash the others, and long recordings are reduced to
a min/max envelope per pixel column, so spikes stay visible. The figure grows
with the channel count so 64 channels and more stay readable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ampkit.errors import ConfigurationError

__all__ = ["plot_recording", "save_plot"]


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
    """Min/max per bin when there are more samples than ``max_points``."""
    n = len(t)
    if n <= max_points:
        return t, y
    bins = max_points // 2
    size = n // bins
    m = bins * size
    yb = y[:m].reshape(bins, size, -1)
    lo, hi = yb.min(axis=1), yb.max(axis=1)
    tb = t[:m].reshape(bins, size)
    tt = np.repeat(tb[:, 0], 2)
    yy = np.empty((2 * bins, y.shape[1]), y.dtype)
    yy[0::2], yy[1::2] = lo, hi
    return tt, yy


def plot_recording(
    recording: Any,
    start: float = 0.0,
    duration: float | None = None,
    channels: list[str] | None = None,
    max_points: int = 4000,
    title: str | None = None,
) -> Any:
    """Draw a recording into a new matplotlib figure.

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
        Above this many samples in the window, draw a min/max envelope.
    title : str, optional
        Figure title (default: file name, rate and size).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ampkit.errors.ConfigurationError
        matplotlib is missing, an unknown channel, or an empty window.
    """
    from ampkit.io import Recording, read

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
    offsets = -np.arange(len(cols)) * spacing
    tt, yy = _envelope(t, y, max_points)

    n = len(cols)
    row_height = 0.22 if n > 16 else 0.45
    fig = Figure(figsize=(12, max(3.5, 1.6 + row_height * n)), layout="constrained")
    ax = fig.add_subplot()
    label_size = max(6.0, min(10.0, 400.0 / max(n, 1)))
    ax.plot(tt, yy + offsets, linewidth=0.6, color="#1f3b73")
    ax.set_yticks(offsets, [names[c] for c in cols], fontsize=label_size)
    ax.set_ylim(offsets[-1] - spacing, spacing)
    ax.set_xlim(t[0], t[-1] if len(t) > 1 else t[0] + 1.0 / fs)
    ax.set_xlabel("time (s)")
    units = sorted({rec.units[c] for c in cols})
    ax.text(1.0, 1.0, f"rows {spacing:.3g} {'/'.join(units)} apart", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=8)
    shown = sorted((s / fs, text) for s, _, text in rec.markers if first <= s < last)
    # Labels are vertical text above the axes; markers closer than a label's
    # width get their labels pushed right, side by side, instead of overprinted.
    points_per_s = 0.9 * 12 * 72 / max((last - first) / fs, 1.0 / fs)
    label_at = -np.inf
    for x, text in shown:
        ax.axvline(x, color="#c0392b", linewidth=0.8, alpha=0.8)
        wanted = x * points_per_s
        label_at = max(wanted, label_at + 9.0)
        ax.annotate(f" {text}", (x, 1.0), xycoords=ax.get_xaxis_transform(),
                    xytext=(label_at - wanted, 0), textcoords="offset points", rotation=90,
                    va="bottom", ha="center", fontsize=7, color="#c0392b",
                    annotation_clip=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.suptitle(title or (
        f"{Path(rec.path).name}: {len(names)} channels, {fs:g} Hz, {rec.duration:.1f} s, "
        f"{len(rec.markers)} markers"
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
