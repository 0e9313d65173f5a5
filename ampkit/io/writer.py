"""What every recording format shares: the header, markers, file creation.

A format module (:mod:`ampkit.io.brainvision`, :mod:`ampkit.io.bdf`,
:mod:`ampkit.io.xdf`) subclasses :class:`FormatWriter`. A format writer is
synchronous and single-threaded: :class:`ampkit.io.recorder.Recorder` calls it
from its writer thread. It writes its header in ``__init__`` (before the first
sample), appends in :meth:`FormatWriter.write`, makes everything written so far
readable in :meth:`FormatWriter.flush`, and finishes in
:meth:`FormatWriter.close`. Every ``OSError`` becomes a
:class:`~ampkit.errors.RecordingError` that names the file.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ampkit.block import AmpContext
from ampkit.errors import ConfigurationError, RecordingError

__all__ = [
    "Header",
    "Mark",
    "FormatWriter",
    "create_file",
    "write_all",
    "write_all_v",
    "replace_file",
    "recording_error",
]


class Mark(NamedTuple):
    """A marker placed in a recording.

    Attributes
    ----------
    sample : int
        Index of the first sample whose timestamp is at or after the marker.
    time : float
        Seconds since the first sample of the recording (may be negative).
    stamp : float
        The marker's absolute time on :func:`ampkit.clock.local_clock`.
    text : str
        The marker's text.
    """

    sample: int
    time: float
    stamp: float
    text: str


@dataclass
class Header:
    """What a writer needs to know before the first sample.

    Attributes
    ----------
    channels : list of str
        Channel names, in column order.
    fs : float
        Sampling frequency in Hz.
    units : list of str
        Unit of each channel (``'µV'`` by default).
    amp : str
        Name of the amplifier, stored where the format has a place for it.
    start : datetime.datetime
        Wall-clock time of the recording's start (local time zone).
    resolutions : list of float or None
        The size of one step of each channel's converter, in the channel's
        unit, when the driver tells (``get_resolutions()``, e.g. RDA).
        BDF+ then stores exactly those steps.
    """

    channels: list[str]
    fs: float
    units: list[str] = field(default_factory=list)
    amp: str = ""
    start: dt.datetime = field(default_factory=lambda: dt.datetime.now().astimezone())
    resolutions: list[float] | None = None

    def __post_init__(self) -> None:
        self.channels = [str(c) for c in self.channels]
        if not self.channels:
            raise ConfigurationError("cannot record an amp with no channels")
        if not self.units:
            self.units = ["µV"] * len(self.channels)
        self.units = [str(u) for u in self.units]
        if len(self.units) != len(self.channels):
            raise ConfigurationError(
                f"{len(self.units)} units for {len(self.channels)} channels"
            )
        if not self.fs > 0:
            raise ConfigurationError(f"cannot record at a sampling frequency of {self.fs!r}")
        self.fs = float(self.fs)
        if self.resolutions is not None:
            self.resolutions = [float(r) for r in self.resolutions]
            if len(self.resolutions) != len(self.channels):
                raise ConfigurationError(
                    f"{len(self.resolutions)} resolutions for {len(self.channels)} channels"
                )

    @classmethod
    def from_amp(cls, amp: Any) -> Header:
        """Build the header of a (decorated) amplifier from its getters."""
        return cls.from_context(AmpContext.of(amp))

    @classmethod
    def from_context(cls, amp: AmpContext) -> Header:
        """Build the header of the amp a service was opened for."""
        return cls(amp.channels, amp.fs, amp.units, amp.name, resolutions=amp.resolutions)


def recording_error(path: os.PathLike | str, exc: OSError, doing: str = "write") -> RecordingError:
    """A :class:`RecordingError` for ``exc`` that names ``path``."""
    reason = exc.strerror or str(exc)
    err = RecordingError(f"cannot {doing} {os.fspath(path)}: {reason}")
    err.errno = exc.errno
    err.strerror = reason
    err.filename = os.fspath(path)
    return err


def create_file(path: Path, overwrite: bool) -> int:
    """Create ``path`` for writing and return its descriptor.

    Raises
    ------
    ampkit.errors.RecordingError
        The file exists and ``overwrite`` is false, or it cannot be created.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        return os.open(path, flags, 0o666)
    except FileExistsError:
        raise RecordingError(
            f"{path} exists; not overwriting it (pass overwrite=True, or --overwrite)"
        ) from None
    except OSError as exc:
        raise recording_error(path, exc, "create") from exc


def check_new(paths: list[Path], overwrite: bool) -> None:
    """Raise before creating anything if any of ``paths`` exists."""
    if overwrite:
        return
    for path in paths:
        if os.path.lexists(path):
            raise RecordingError(
                f"{path} exists; not overwriting it (pass overwrite=True, or --overwrite)"
            )


def write_all(fd: int, data: bytes | memoryview, path: Path) -> int:
    """Write all of ``data`` to ``fd`` (unbuffered); return the byte count."""
    view = memoryview(data).cast("B")
    done = 0
    try:
        while done < len(view):
            n = os.write(fd, view[done:])
            if n == 0:  # pragma: no cover - regular files do not do this
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += n
    except OSError as exc:
        raise recording_error(path, exc) from exc
    return done


def write_all_v(fd: int, buffers: list, path: Path) -> int:
    """Write all ``buffers`` to ``fd`` with as few ``writev`` calls as possible."""
    views = [memoryview(b).cast("B") for b in buffers]
    views = [v for v in views if len(v)]
    if not hasattr(os, "writev"):  # pragma: no cover - Windows
        return sum(write_all(fd, v, path) for v in views)
    total = 0
    try:
        while views:
            n = os.writev(fd, views[:512])
            total += n
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if n:
                views[0] = views[0][n:]
    except OSError as exc:
        raise recording_error(path, exc) from exc
    return total


def replace_file(path: Path, text: str) -> int:
    """Replace ``path`` with ``text`` (UTF-8) in one step: a reader, or a
    crash, sees the old file or the new one, never a part. Returns the bytes.

    Raises
    ------
    ampkit.errors.RecordingError
        Writing failed (the old file stays).
    """
    temporary = path.with_name(f".{path.name}.ampkit-new")
    data = text.encode("utf-8")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            write_all(fd, data, temporary)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise recording_error(path, exc) from exc
    except RecordingError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return len(data)


class FormatWriter:
    """Base class of the per-format writers.

    Parameters
    ----------
    path : str or path
        Where to record (see :func:`ampkit.io.open_writer`).
    header : Header
        Channels, rate, units and names.
    overwrite : bool
        Replace existing files instead of raising.

    Attributes
    ----------
    paths : list of pathlib.Path
        The files this writer creates.
    bytes_written : int
        Bytes handed to the operating system so far.
    effective_rate : float or None
        The device's measured sampling rate (Hz), set by the recorder before
        :meth:`close`; the writer stores it where the format has a place
        (the header's ``fs`` stays nominal, as every reader expects).
    """

    #: Name of the format, e.g. ``'brainvision'``.
    format = ""

    def __init__(self, path: os.PathLike | str, header: Header, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.header = header
        self.overwrite = overwrite
        self.paths: list[Path] = []
        self.bytes_written = 0
        self.n_samples = 0
        self.n_markers = 0
        self.effective_rate: float | None = None

    def write(self, data: np.ndarray, timestamps: np.ndarray, marks: list[Mark]) -> None:
        """Append samples (float32, (n, channels)) and markers.

        ``marks`` are the markers that arrived with these samples; their
        ``sample`` may point back into samples written earlier.
        """
        raise NotImplementedError

    def write_blocks(
        self, data: list[np.ndarray], timestamps: list[np.ndarray], marks: list[Mark]
    ) -> None:
        """Append several blocks at once (the writer thread's batch).

        The default joins them and calls :meth:`write`; a format that can
        write the blocks as they are overrides it to save the copy. A writer
        keeps no reference to the arrays (nor views of them) after it
        returns: the recorder reuses their memory for later blocks.
        """
        if len(data) == 1:
            self.write(data[0], timestamps[0], marks)
        elif data:
            self.write(np.concatenate(data), np.concatenate(timestamps), marks)
        else:
            width = len(self.header.channels)
            self.write(np.zeros((0, width), np.float32), np.zeros(0), marks)

    def flush(self) -> None:
        """Make everything written so far readable by other programs."""

    def close(self) -> None:
        """Finish the files (footers, final header fields) and close them."""
        raise NotImplementedError

    def abort(self) -> None:
        """After a failed write: leave what was written readable, close, never raise."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"
