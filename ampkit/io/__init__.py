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
from pathlib import Path
from typing import Any

from ampkit.errors import ConfigurationError, RecordingError
from ampkit.io.recording import Recording
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


def read(path: os.PathLike | str, *, stream: str | None = None,
         stim_channel: str | list[str] | None = "auto") -> Recording:
    """Read a recording in any format ampkit writes, or written by other software.

    Parameters
    ----------
    path : str or path
        ``BASE`` or any of its five files, a BrainVision ``.vhdr``,
        ``.bdf``/``.edf``, or ``.xdf``. Files of a recording still running,
        or of one that was killed, are read up to their last complete sample.
    stream : str, optional
        XDF only: the stream to read, by name or by type (``'EEG'``); by
        default the first numeric stream that holds samples.
    stim_channel : str or list of str or None
        EDF/BDF only: the trigger channels decoded into markers. ``'auto'``
        takes channels named ``Status`` or ``TRIGGER`` (any case), as MNE
        does; None decodes none.

    Returns
    -------
    Recording
        Hand it to MNE-Python with :meth:`Recording.to_mne`.

    Raises
    ------
    ampkit.errors.RecordingError
        No such recording, or the files are not in a format (or a variant of
        it) ampkit reads; the message names the file.
    ampkit.errors.ConfigurationError
        An option that does not apply to the format.

    Examples
    --------
    >>> rec = ampkit.io.read('session1')                   # doctest: +SKIP
    >>> rec.data.shape, rec.fs, rec.markers[:1]            # doctest: +SKIP
    ((25000, 8), 250.0, [(1250, 5.0, 'S  1')])
    >>> raw = ampkit.io.read('session1.bdf').to_mne()      # doctest: +SKIP
    """
    kind = format_of(path)
    if stream is not None and kind != "xdf":
        raise ConfigurationError(f"{path}: stream= applies to XDF files only")
    if stim_channel != "auto" and kind not in ("bdf", "edf"):
        raise ConfigurationError(f"{path}: stim_channel= applies to EDF/BDF files only")
    try:
        if kind in ("bdf", "edf"):
            from ampkit.io.bdf import read_bdf

            return read_bdf(path, stim_channel=stim_channel)
        if kind == "xdf":
            from ampkit.io.xdf import read_xdf

            return read_xdf(path, stream=stream)
        from ampkit.io.brainvision import read_brainvision

        return read_brainvision(path)
    except FileNotFoundError as exc:
        raise RecordingError(f"no recording at {path}: {exc.strerror}") from None
    except RecordingError:
        raise
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc}") from exc
    except MemoryError:
        raise RecordingError(f"{path}: too big to read into memory") from None


def __getattr__(name: str) -> Any:
    # Recorder imports the decorator; load it on first use so that importing
    # ampkit.io (e.g. from the decorator) stays cycle-free.
    if name == "Recorder":
        from ampkit.io.recorder import Recorder

        return Recorder
    raise AttributeError(name)
