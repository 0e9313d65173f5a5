"""Recording to disk and reading recordings back.

The format follows the file name, as python-can's ``Logger`` does:

* ``rec`` or ``rec.vhdr``: five files, ``rec.eeg`` (raw float32), libmushu's
  ``rec.meta`` and ``rec.marker``, BrainVision's ``rec.vhdr`` and
  ``rec.vmrk`` (:mod:`ampkit.io.brainvision`);
* ``rec.bdf``: BDF+, 24-bit, markers as annotations (:mod:`ampkit.io.bdf`);
* ``rec.xdf``: XDF, a data and a marker stream with LSL timestamps
  (:mod:`ampkit.io.xdf`).

A name with any other suffix (``subject1.run2``) is a base name of the
five-file format. :func:`read` reads every format back into one
:class:`Recording`. Recording itself is done by :class:`Recorder`, the
service :meth:`ampkit.AmpDecorator.start` opens for ``start(filename=...)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ampkit.errors import ConfigurationError, RecordingError
from ampkit.io.writer import FormatWriter, Header, Mark

__all__ = [
    "Recording",
    "Recorder",
    "Header",
    "Mark",
    "FormatWriter",
    "format_of",
    "is_recording",
    "open_writer",
    "read",
]


@dataclass
class Recording:
    """A recording read back from disk.

    Attributes
    ----------
    data : ndarray of float32, shape (n_samples, n_channels)
        The samples in the recorded units.
    fs : float
        Sampling frequency in Hz.
    channels : list of str
    units : list of str
        One per channel, e.g. ``'µV'``.
    markers : list of (int, float, str)
        ``(sample_index, time_s, text)``: the first sample at or after the
        marker, and its time in seconds since the first sample.
    amp : str
        Name of the amplifier, where the format stores it.
    path : pathlib.Path
        The file (the base name for the five-file format).
    format : str
        ``'brainvision'``, ``'bdf'``, ``'edf'`` or ``'xdf'``.
    timestamps : ndarray of float64 or None
        Per-sample LSL-clock times, where the format stores them (XDF).

    The properties ``n_samples`` and ``duration`` (seconds) give the size.
    """

    data: np.ndarray
    fs: float
    channels: list[str]
    units: list[str]
    markers: list[tuple[int, float, str]] = field(default_factory=list)
    amp: str = ""
    path: Path = Path()
    format: str = ""
    timestamps: np.ndarray | None = None

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
        if self.n_samples:
            lo, hi = float(np.min(self.data)), float(np.max(self.data))
            lines.append(f"range:     {lo:.6g} .. {hi:.6g}")
        for sample, time_s, text in self.markers[:10]:
            lines.append(f"  {time_s:10.3f} s  sample {sample:<9d} {text}")
        if len(self.markers) > 10:
            lines.append(f"  ... {len(self.markers) - 10} more")
        return "\n".join(lines)


def format_of(path: os.PathLike | str) -> str:
    """The format a file name asks for: ``'brainvision'``, ``'bdf'`` or ``'xdf'``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".bdf":
        return "bdf"
    if suffix == ".xdf":
        return "xdf"
    if suffix == ".edf":
        return "edf"
    return "brainvision"


def is_recording(path: os.PathLike | str) -> bool:
    """Whether ``path`` names an existing recording (a file, or a five-file base name)."""
    path = Path(path)
    if path.is_file():
        return True
    return any(Path(f"{path}{s}").is_file() for s in (".vhdr", ".meta"))


def open_writer(
    path: os.PathLike | str, header: Header, overwrite: bool = False, **options: Any
) -> FormatWriter:
    """Open the writer the file name asks for; its header is written now.

    Parameters
    ----------
    path : str or path
        ``BASE`` / ``BASE.vhdr`` (five files), ``BASE.bdf`` or ``BASE.xdf``.
    header : Header
    overwrite : bool
        Replace existing files instead of raising.
    **options
        Format options (``physical_max`` for BDF+).

    Raises
    ------
    ampkit.errors.RecordingError
        A file exists (without ``overwrite``) or cannot be created.
    ampkit.errors.ConfigurationError
        ``.edf`` (16 bits lose EEG resolution: use ``.bdf``), or a bad option.
    """
    if path is None or not str(path):
        raise ConfigurationError("recording needs a file name")
    kind = format_of(path)
    if kind == "edf":
        raise ConfigurationError(f"{path}: ampkit does not write EDF; use .bdf (BDF+, 24 bit)")
    if kind == "bdf":
        from ampkit.io.bdf import BDFWriter

        return BDFWriter(path, header, overwrite, **options)
    if options:
        raise ConfigurationError(f"unknown options for {kind}: {sorted(options)}")
    if kind == "xdf":
        from ampkit.io.xdf import XDFWriter

        return XDFWriter(path, header, overwrite)
    from ampkit.io.brainvision import BrainVisionWriter

    return BrainVisionWriter(path, header, overwrite)


def read(path: os.PathLike | str) -> Recording:
    """Read a recording in any format ampkit writes.

    Parameters
    ----------
    path : str or path
        ``BASE`` or any of its five files, ``.bdf``/``.edf``, or ``.xdf``.
        Files of a recording still running, or of one that was killed, are
        read up to their last complete sample.

    Returns
    -------
    Recording

    Raises
    ------
    ampkit.errors.RecordingError
        No such recording, or the files are not in the expected format.

    Examples
    --------
    >>> rec = ampkit.io.read('session1')                   # doctest: +SKIP
    >>> rec.data.shape, rec.fs, rec.markers[:1]            # doctest: +SKIP
    ((25000, 8), 250.0, [(1250, 5.0, 'S  1')])
    """
    kind = format_of(path)
    if kind in ("bdf", "edf"):
        from ampkit.io.bdf import read_bdf

        reader = read_bdf
    elif kind == "xdf":
        from ampkit.io.xdf import read_xdf

        reader = read_xdf
    else:
        from ampkit.io.brainvision import read_brainvision

        reader = read_brainvision
    try:
        return reader(path)
    except FileNotFoundError as exc:
        raise RecordingError(f"no recording at {path}: {exc.strerror}") from None
    except RecordingError:
        raise
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc}") from exc


def __getattr__(name: str) -> Any:
    # Recorder imports the decorator; load it on first use so that importing
    # ampkit.io (e.g. from the decorator) stays cycle-free.
    if name == "Recorder":
        from ampkit.io.recorder import Recorder

        return Recorder
    raise AttributeError(name)
