"""The recording formats: one table from file suffix to writer and reader.

As python-can's ``Logger`` and ``LogReader`` pick their class by suffix, ampkit
keeps one :class:`Format` per file kind, each naming its writer class, its
reader function and the options each takes. :func:`open_writer` and
:func:`read` look the suffix up here; nothing else knows the formats.

Other packages add formats through the entry-point group ``ampkit.formats``,
each entry point naming a :class:`Format`::

    [project.entry-points."ampkit.formats"]
    fif = "mypackage.fif:FIF"    # FIF = Format("fif", "FIF", (".fif",), FIFWriter, read_fif)

A suffix ampkit knows already keeps ampkit's format (the other is logged and
left out). A name with a suffix no format claims (``subject1.run2``) is a
base name of the default five-file format.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ampkit.errors import ConfigurationError, RecordingError
from ampkit.io.bdf import BDFWriter, read_bdf
from ampkit.io.brainvision import BrainVisionWriter, read_brainvision
from ampkit.io.recording import Recording
from ampkit.io.writer import FormatWriter, Header
from ampkit.io.xdf import XDFWriter, read_xdf
from ampkit.plugins import entry_points_of, load_plugin, warn_once

__all__ = [
    "Format",
    "BUILTIN",
    "DEFAULT",
    "ENTRY_POINT_GROUP",
    "formats",
    "format_for",
    "format_of",
    "open_writer",
    "read",
]

#: The entry-point group of third-party formats.
ENTRY_POINT_GROUP = "ampkit.formats"


@dataclass(frozen=True)
class Format:
    """One file format: its suffixes, writer and reader.

    Attributes
    ----------
    name : str
        Short name (``'bdf'``), what :func:`format_of` returns.
    label : str
        How messages name it (``'BDF'``).
    suffixes : tuple of str
        Lower-case suffixes with the dot (``('.bdf',)``).
    writer : callable or None
        ``writer(path, header, overwrite, **write_options)`` returning an
        open :class:`~ampkit.io.writer.FormatWriter`; None for a format
        ampkit reads but does not write.
    reader : callable or None
        ``reader(path, **read_options)`` returning a
        :class:`~ampkit.io.recording.Recording`; None for write-only.
    write_options, read_options : tuple of str
        The keyword options the writer and the reader take.
    not_written : str
        Why there is no writer, and what to use instead.
    """

    name: str
    label: str
    suffixes: tuple[str, ...]
    writer: Callable[..., FormatWriter] | None = None
    reader: Callable[..., Recording] | None = None
    write_options: tuple[str, ...] = ()
    read_options: tuple[str, ...] = ()
    not_written: str = ""


#: ampkit's own formats.
BUILTIN = (
    Format("brainvision", "BrainVision", (".vhdr", ".eeg", ".vmrk", ".meta", ".marker"),
           BrainVisionWriter, read_brainvision),
    Format("bdf", "BDF", (".bdf",), BDFWriter, read_bdf, ("physical_max",), ("stim_channel",)),
    Format("edf", "EDF", (".edf",), None, read_bdf, (), ("stim_channel",),
           not_written="ampkit does not write EDF; use .bdf (BDF+, 24 bit)"),
    Format("xdf", "XDF", (".xdf",), XDFWriter, read_xdf, (), ("stream",)),
)
#: The format of a name whose suffix no format claims: five files of one base name.
DEFAULT = BUILTIN[0]


def formats() -> dict[str, Format]:
    """Every format by suffix, ampkit's and installed ones.

    A third-party format that fails to import, is not a :class:`Format`, or
    claims a suffix taken already, is logged and left out.
    """
    table = {suffix: fmt for fmt in BUILTIN for suffix in fmt.suffixes}
    for name, ep in entry_points_of(ENTRY_POINT_GROUP, "format").items():
        fmt = load_plugin(ep, "format")
        if fmt is None:
            continue
        if not isinstance(fmt, Format):
            warn_once("format %r (%s) is not an ampkit.io.formats.Format; left out",
                      name, ep.value)
            continue
        taken = [s for s in fmt.suffixes if s.lower() in table]
        if taken:
            warn_once("format %r (%s) left out: %s taken already", name, ep.value, taken)
            continue
        table.update((s.lower(), fmt) for s in fmt.suffixes)
    return table


def format_for(path: os.PathLike | str) -> Format:
    """The format a file name asks for (by its suffix, any case)."""
    suffix = Path(path).suffix.lower()
    if suffix in ("", *DEFAULT.suffixes):  # most names: no need to ask the entry points
        return DEFAULT
    return formats().get(suffix, DEFAULT)


def format_of(path: os.PathLike | str) -> str:
    """The name of the format a file name asks for: ``'brainvision'``, ``'bdf'``,
    ``'edf'``, ``'xdf'`` or an installed format's."""
    return format_for(path).name


def _unknown(path: os.PathLike | str, fmt: Format, given: list[str], kind: str) -> None:
    """Raise for options the format does not take, naming the formats that do."""
    for option in given:
        takers = [f.label for f in dict.fromkeys(formats().values())
                  if option in getattr(f, f"{kind}_options")]
        if takers:
            raise ConfigurationError(f"{path}: {option}= applies to {'/'.join(takers)} "
                                     "files only")
    raise ConfigurationError(f"unknown options for {fmt.name}: {sorted(given)}")


def open_writer(
    path: os.PathLike | str, header: Header, overwrite: bool = False, **options: Any
) -> FormatWriter:
    """Open the writer the file name asks for; its header is written now.

    Parameters
    ----------
    path : str or path
        ``BASE`` / ``BASE.vhdr`` (five files), ``BASE.bdf``, ``BASE.xdf``,
        or a suffix an installed format claims.
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
        A format ampkit does not write (``.edf``: 16 bits lose EEG
        resolution; use ``.bdf``), or an option the format does not take.
    """
    if path is None or not str(path):
        raise ConfigurationError("recording needs a file name")
    fmt = format_for(path)
    if fmt.writer is None:
        why = fmt.not_written or f"ampkit does not write {fmt.label}"
        raise ConfigurationError(f"{path}: {why}")
    unknown = [k for k in options if k not in fmt.write_options]
    if unknown:
        _unknown(path, fmt, unknown, "write")
    return fmt.writer(path, header, overwrite, **options)


def read(path: os.PathLike | str, *, stream: str | None = None,
         stim_channel: str | list[str] | None = "auto", **options: Any) -> Recording:
    """Read a recording in any format ampkit writes, or written by other software.

    Parameters
    ----------
    path : str or path
        ``BASE`` or any of its five files, a BrainVision ``.vhdr``,
        ``.bdf``/``.edf``, ``.xdf``, or a suffix an installed format claims.
        Files of a recording still running, or of one that was killed, are
        read up to their last complete sample.
    stream : str, optional
        XDF only: the stream to read, by name or by type (``'EEG'``); by
        default the first numeric stream that holds samples.
    stim_channel : str or list of str or None
        EDF/BDF only: the trigger channels decoded into markers. ``'auto'``
        takes channels named ``Status`` or ``TRIGGER`` (any case), as MNE
        does; None decodes none.
    **options
        Options of an installed format's reader (its ``read_options``).

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
    fmt = format_for(path)
    given: dict[str, Any] = dict(options)
    if stream is not None:
        given["stream"] = stream
    if stim_channel != "auto":
        given["stim_channel"] = stim_channel
    unknown = [k for k in given if k not in fmt.read_options]
    if unknown:
        _unknown(path, fmt, unknown, "read")
    if fmt.reader is None:
        raise ConfigurationError(f"{path}: ampkit does not read {fmt.label} files")
    try:
        return fmt.reader(path, **given)
    except FileNotFoundError as exc:
        raise RecordingError(f"no recording at {path}: {exc.strerror}") from None
    except RecordingError:
        raise
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc}") from exc
    except MemoryError:
        raise RecordingError(f"{path}: too big to read into memory") from None
