"""What every reader returns: :class:`Recording`, and its hand-off to MNE.

The readers (:mod:`ampkit.io.brainvision`, :mod:`ampkit.io.bdf`,
:mod:`ampkit.io.xdf`) build a :class:`Recording` and pass their markers
through :func:`keep_markers_in_data`, so a marker always points at a sample
the recording has. :meth:`Recording.to_mne` is the way into MNE-Python
(imported there, and only there).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ampkit.io.units import is_voltage, si_scale

__all__ = ["Recording", "keep_markers_in_data", "unique_names", "marker_sample"]

logger = logging.getLogger("ampkit")

Marker = tuple[int, float, str]


@dataclass
class Recording:
    """A recording read back from disk.

    Attributes
    ----------
    data : ndarray of float32, shape (n_samples, n_channels)
        The samples in the recorded units.
    fs : float
        Sampling frequency in Hz (the nominal rate, where the format has one).
    channels : list of str
    units : list of str
        One per channel, e.g. ``'µV'``.
    markers : list of (int, float, str)
        ``(sample_index, time_s, text)``: the first sample at or after the
        marker, and its time in seconds since the first sample. Markers past
        the last sample are not kept (a warning names the file).
    amp : str
        Name of the amplifier, where the format stores it.
    path : pathlib.Path
        The file (the base name for the five-file format).
    format : str
        ``'brainvision'``, ``'bdf'``, ``'edf'`` or ``'xdf'``.
    timestamps : ndarray of float64 or None
        Per-sample LSL-clock times, where the format stores them (XDF).
    meas_date : datetime.datetime or None
        When the recording started (UTC), where the format says.
    types : list of str or None
        MNE channel types (``'eeg'``, ``'eog'``, ``'stim'``, ``'misc'``, ...)
        where the format tells them; None: :meth:`to_mne` decides by unit.
    annotations : list of (float, float, str) or None
        ``(onset_s, duration_s, description)`` as MNE's reader of the same
        file names its annotations (BrainVision: ``Type/description``), when
        that differs from ``markers``; None: :meth:`to_mne` uses ``markers``.
    effective_fs : float or None
        The measured rate, where the file stores or implies it (XDF).

    The properties ``n_samples`` and ``duration`` (seconds) give the size.
    """

    data: np.ndarray
    fs: float
    channels: list[str]
    units: list[str]
    markers: list[Marker] = field(default_factory=list)
    amp: str = ""
    path: Path = Path()
    format: str = ""
    timestamps: np.ndarray | None = None
    meas_date: dt.datetime | None = None
    types: list[str] | None = None
    annotations: list[tuple[float, float, str]] | None = None
    effective_fs: float | None = None

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.data)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.fs if self.fs else 0.0

    def summary(self) -> str:
        """A few lines describing the recording (what ``ampkit info FILE`` prints)."""
        units = ", ".join(sorted(set(self.units)))
        lines = [
            f"file:      {self.path} ({self.format})",
            f"amp:       {self.amp or '?'}",
            f"rate:      {self.fs:g} Hz",
            f"channels:  {len(self.channels)}: {', '.join(self.channels)}",
            f"units:     {units}",
            f"samples:   {self.n_samples} ({self.duration:.3f} s)",
            f"markers:   {len(self.markers)}",
        ]
        if self.meas_date is not None:
            lines.insert(2, f"start:     {self.meas_date.isoformat()}")
        if self.n_samples:
            lo, hi = float(np.min(self.data)), float(np.max(self.data))
            lines.append(f"range:     {lo:.6g} .. {hi:.6g}")
        for sample, time_s, text in self.markers[:10]:
            lines.append(f"  {time_s:10.3f} s  sample {sample:<9d} {text}")
        if len(self.markers) > 10:
            lines.append(f"  ... {len(self.markers) - 10} more")
        return "\n".join(lines)

    def to_mne(self) -> Any:
        """The recording as an MNE-Python ``Raw`` object (``mne.io.RawArray``).

        Data in SI units (volts for voltage channels, from each channel's
        unit; stim channels as they are), channel types where the file tells
        them (else EEG for voltages, misc for other units), markers as
        annotations at their samples, and the measurement date where known.
        For a file MNE also reads, the result equals what
        ``mne.io.read_raw_brainvision`` / ``read_raw_bdf`` / ``read_raw_edf``
        give, annotations included (see docs/recording.rst for the
        exceptions).

        Returns
        -------
        mne.io.RawArray

        Raises
        ------
        ImportError
            MNE-Python is not installed (``pip install mne``).

        Examples
        --------
        >>> raw = ampkit.io.read('session1').to_mne()          # doctest: +SKIP
        >>> events, ids = mne.events_from_annotations(raw)     # doctest: +SKIP
        """
        import mne  # optional: only this method needs it

        types = self._mne_types(mne)
        scales = np.array([1.0 if t == "stim" else si_scale(u)
                           for t, u in zip(types, self.units, strict=True)])
        info = mne.create_info(unique_names(list(self.channels)), float(self.fs), types)
        data = self.data.T.astype(np.float64) * scales[:, None]
        raw = mne.io.RawArray(data, info, verbose="error")
        meas_date = self.meas_date
        if meas_date is not None:
            if meas_date.tzinfo is None:
                meas_date = meas_date.replace(tzinfo=dt.timezone.utc)
            raw.set_meas_date(meas_date.astimezone(dt.timezone.utc))
        if self.annotations is not None:
            # MNE leaves out those outside the data, but fails on infinite ones
            kept = [a for a in self.annotations if math.isfinite(a[0]) and math.isfinite(a[1])]
            onsets = [a[0] for a in kept]
            durations = [a[1] for a in kept]
            texts = [a[2] for a in kept]
        else:
            onsets = [s / self.fs for s, _, _ in self.markers]
            durations = [0.0] * len(self.markers)
            texts = [text for _, _, text in self.markers]
        if onsets:
            annotations = mne.Annotations(onsets, durations, texts,
                                          orig_time=raw.info["meas_date"])
            raw.set_annotations(annotations, verbose="error")
        return raw

    def _mne_types(self, mne: Any) -> list[str]:
        known = set(mne.io.get_channel_type_constants())
        out = []
        for i, unit in enumerate(self.units):
            kind = (self.types[i] if self.types else "").lower()
            if kind not in known:
                kind = "eeg" if is_voltage(unit) else "misc"
            out.append(kind)
        return out


def marker_sample(seconds: float, fs: float) -> float:
    """The first sample at or after ``seconds`` (``inf`` for non-finite times)."""
    x = seconds * fs
    if not math.isfinite(x):
        return math.inf if not x < 0 else -math.inf
    return float(math.ceil(x - 1e-6))


def keep_markers_in_data(markers: list[tuple[float, float, str]], n_samples: int,
                         path: Any) -> list[Marker]:
    """Sort markers, put those before the first sample on it, drop those past the last.

    ``markers`` are ``(sample, time_s, text)`` with ``sample`` possibly a
    float (``inf`` for a time that could not be placed). The dropped ones
    are counted in a warning that names ``path``.
    """
    kept, dropped = [], []
    for sample, time_s, text in markers:
        if sample >= n_samples or sample != sample:  # past the end, or NaN
            dropped.append(text)
        else:
            kept.append((int(sample) if sample > 0 else 0, float(time_s), text))
    if dropped:
        shown = ", ".join(repr(t) for t in dropped[:3]) + (", ..." if len(dropped) > 3 else "")
        logger.warning("%s: %d marker(s) past the last sample (%d) dropped: %s",
                       path, len(dropped), n_samples, shown)
    kept.sort(key=lambda m: (m[0], m[1]))
    return kept


def unique_names(names: list[str]) -> list[str]:
    """Names made unique as MNE does: duplicates get ``-0``, ``-1``, ... appended.

    Where such a name is taken already, the letters ``-a``, ``-b``, ... are
    tried after the number.
    """
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    dups = [n for n, count in seen.items() if count > 1]
    if not dups:
        return names
    out = list(names)
    taken = set(out)
    for stem in dups:
        where = [i for i, n in enumerate(names) if n == stem]
        for k, i in enumerate(where):
            for suffix in (str(k), *"abcdefghijklmnopqrstuvwxyz"):
                candidate = f"{stem}-{suffix}"
                if candidate not in taken:
                    break
            else:  # 27 names taken: count on
                j = len(where)
                while f"{stem}-{j}" in taken:
                    j += 1
                candidate = f"{stem}-{j}"
            out[i] = candidate
            taken.add(candidate)
    return out
