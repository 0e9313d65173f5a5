"""Recording to disk and reading recordings back.

The format follows the file name, as python-can's ``Logger`` does (the table
is :mod:`ampkit.io.formats`, open to other packages' formats):

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

from ampkit.io.formats import Format, format_of, formats, open_writer, read
from ampkit.io.recorder import Recorder
from ampkit.io.recording import Recording
from ampkit.io.writer import FormatWriter, Header, Mark

__all__ = [
    "Recording",
    "Recorder",
    "Header",
    "Mark",
    "Format",
    "FormatWriter",
    "format_of",
    "formats",
    "is_recording",
    "open_writer",
    "read",
]


def is_recording(path: os.PathLike | str) -> bool:
    """Whether ``path`` names an existing recording (a file, or a five-file base name)."""
    path = Path(path)
    if path.is_file():
        return True
    return any(Path(f"{path}{s}").is_file() for s in (".vhdr", ".meta"))
