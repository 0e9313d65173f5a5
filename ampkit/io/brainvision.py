"""The default recording: five files sharing one base name.

``BASE.eeg``
    Raw float32, little-endian, multiplexed (sample after sample, the
    channels of a sample side by side). It is libmushu's data file and
    BrainVision's binary data file at once.
``BASE.meta``
    libmushu's JSON header: ``Channels``, ``Sampling Frequency``, ``Amp``;
    at the end also ``Effective Sampling Frequency``, the device's rate as
    measured (its clock runs some ppm off the nominal one; see :doc:`/timing`).
``BASE.marker``
    libmushu's markers, one line each: ``"<ms since the first sample> <text>"``.
``BASE.vhdr`` and ``BASE.vmrk``
    The BrainVision Core Data Format 1.0 header and marker files, so that
    ``mne.io.read_raw_brainvision('BASE.vhdr')`` reads the recording in volts,
    with every marker an annotation at its sample. At the end a comment line
    gives the measured (effective) sampling rate.

Crash safety: all headers are complete before the first sample (the sample
count is implied by the size of ``BASE.eeg``), and every batch of samples and
markers goes to the operating system at each flush (the recorder flushes every
0.1 s), data first, so a killed process leaves files every reader opens.
``BASE.eeg`` is written past the page cache where the system allows it
(:mod:`ampkit.io.direct`): at high rates that costs a fraction of the CPU.

Marker texts go into ``.vmrk`` as type ``Comment`` (MNE shows them as
``Comment/<text>``), except texts already of the form ``Stimulus/...`` or
``Response/...``, which keep that type (MNE shows them unchanged and maps them
to events). Commas are written as ``\\1`` (the format's escape), and a ``\\1``
in a text gets an invisible word joiner (U+2060) after its backslash, since
the format has no other escape (MNE then shows it as written, not as a
comma; ``ampkit.io.read`` removes the joiner); line breaks in marker texts
become spaces in ``.vmrk`` and ``.marker``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ampkit.errors import RecordingError
from ampkit.io.direct import AppendFile
from ampkit.io.recording import Recording, keep_markers_in_data, marker_sample
from ampkit.io.units import normalise_unit
from ampkit.io.writer import (
    FormatWriter,
    Header,
    Mark,
    check_new,
    create_file,
    recording_error,
    replace_file,
    write_all,
)

__all__ = ["BrainVisionWriter", "read_brainvision", "base_of", "SUFFIXES"]

logger = logging.getLogger("ampkit")

#: Suffixes naming one of the five files; any of them names the recording.
SUFFIXES = (".vhdr", ".eeg", ".vmrk", ".meta", ".marker")

_TYPED = re.compile(r"^(Stimulus|Response)/(.*)$", re.DOTALL)
# A backslash, any word joiners (U+2060), then "1": "\\1" is the format's comma.
_ESCAPED = re.compile("\\\\(\u2060*)1")


def base_of(path: os.PathLike | str) -> Path:
    """The base name of a five-file recording (``rec.vhdr`` -> ``rec``)."""
    path = Path(path)
    if path.suffix.lower() in SUFFIXES:
        return path.with_suffix("")
    return path


def _sibling(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _bv_escape(text: str) -> str:
    """``text`` for a BrainVision field: one line, commas as ``\\1``.

    The format has no escape for a backslash, and every reader turns ``\\1``
    into a comma; so a ``\\1`` in the text gets a word joiner (U+2060,
    invisible) after the backslash, which :func:`_bv_unescape` removes again
    (MNE shows it as written, joiner included).
    """
    text = _ESCAPED.sub(lambda m: "\\\u2060" + m.group(1) + "1", _one_line(text))
    return text.replace(",", r"\1")


def _format_number(x: float) -> str:
    return repr(float(x)).removesuffix(".0")


class BrainVisionWriter(FormatWriter):
    """Write the five-file recording (libmushu + BrainVision).

    Parameters
    ----------
    path : str or path
        The base name, or any of the five file names.
    header : ampkit.io.writer.Header
    overwrite : bool
        Replace existing files; otherwise an existing file raises
        :class:`~ampkit.errors.RecordingError` before anything is created.
    """

    format = "brainvision"

    def __init__(self, path: os.PathLike | str, header: Header, overwrite: bool = False) -> None:
        super().__init__(path, header, overwrite)
        self.base = base_of(path)
        names = {s: _sibling(self.base, s) for s in (".eeg", ".vhdr", ".vmrk", ".meta", ".marker")}
        self.paths = list(names.values())
        self._names = names
        check_new(self.paths, overwrite)
        self._fds: dict[str, int] = {}
        self._eeg: AppendFile | None = None
        try:
            for suffix, p in names.items():
                self._fds[suffix] = create_file(p, overwrite)
            # The big one goes past the page cache (see ampkit.io.direct).
            self._eeg = AppendFile(self._fds.pop(".eeg"), names[".eeg"])
            self._put(".vhdr", self._vhdr_text())
            self._put(".vmrk", self._vmrk_text())
            self._put(".meta", self._meta_text())
            self._close_fd(".vhdr")
            self._close_fd(".meta")
        except BaseException:
            self._close_all()
            raise
        self._n_vmrk = 1  # Mk1 is the "New Segment" marker

    # -- header texts ------------------------------------------------------

    def _meta_text(self) -> str:
        meta: dict = {
            "Channels": self.header.channels,
            "Sampling Frequency": self.header.fs,
            "Amp": self.header.amp,
        }
        if self.effective_rate is not None:
            meta["Effective Sampling Frequency"] = self.effective_rate
        return json.dumps(meta, indent=4)

    def _vhdr_text(self) -> str:
        h = self.header
        lines = [
            "Brain Vision Data Exchange Header File Version 1.0",
            f"; Data written by ampkit ({_one_line(h.amp)})",
            "",
            "[Common Infos]",
            "Codepage=UTF-8",
            f"DataFile={self._names['.eeg'].name}",
            f"MarkerFile={self._names['.vmrk'].name}",
            "DataFormat=BINARY",
            "; Data orientation: MULTIPLEXED=ch1,pt1, ch2,pt1 ...",
            "DataOrientation=MULTIPLEXED",
            f"NumberOfChannels={len(h.channels)}",
            "; Sampling interval in microseconds",
            f"SamplingInterval={_format_number(1e6 / h.fs)}",
        ]
        if self.effective_rate is not None:
            lines.append(
                f"; Effective sampling rate (the device's clock, measured by ampkit): "
                f"{self.effective_rate!r} Hz"
            )
        lines += [
            "",
            "[Binary Infos]",
            "BinaryFormat=IEEE_FLOAT_32",
            "",
            "[Channel Infos]",
            "; Each entry: Ch<Channel number>=<Name>,<Reference channel name>,",
            "; <Resolution in \"Unit\">,<Unit>; float data: resolution 1",
        ]
        for i, (name, unit) in enumerate(zip(h.channels, h.units, strict=True), 1):
            lines.append(f"Ch{i}={_bv_escape(name)},,1,{_bv_escape(unit)}")
        return "\n".join(lines) + "\n"

    def _vmrk_text(self) -> str:
        stamp = self.header.start.strftime("%Y%m%d%H%M%S%f")
        lines = [
            "Brain Vision Data Exchange Marker File, Version 1.0",
            "",
            "[Common Infos]",
            "Codepage=UTF-8",
            f"DataFile={self._names['.eeg'].name}",
            "",
            "[Marker Infos]",
            "; Each entry: Mk<Marker number>=<Type>,<Description>,<Position in data points>,",
            "; <Size in data points>,<Channel number (0 = marker is related to all channels)>",
            f"Mk1=New Segment,,1,1,0,{stamp}",
        ]
        return "\n".join(lines) + "\n"

    # -- file plumbing -----------------------------------------------------

    def _put(self, suffix: str, text: str | bytes) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        self.bytes_written += write_all(self._fds[suffix], data, self._names[suffix])

    def _close_fd(self, suffix: str) -> None:
        fd = self._fds.pop(suffix, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                raise recording_error(self._names[suffix], exc, "close") from exc

    def _close_all(self) -> None:
        if self._eeg is not None:
            eeg, self._eeg = self._eeg, None
            try:
                eeg.abandon()
            except RecordingError:
                pass
        for suffix in list(self._fds):
            try:
                self._close_fd(suffix)
            except RecordingError:
                pass

    # -- writing -----------------------------------------------------------

    def write(self, data: np.ndarray, timestamps: np.ndarray, marks: list[Mark]) -> None:
        """Append samples to ``.eeg``, then their markers to ``.vmrk`` and ``.marker``."""
        self.write_blocks([data], [timestamps], marks)

    def write_blocks(
        self, data: list[np.ndarray], timestamps: list[np.ndarray], marks: list[Mark]
    ) -> None:
        """Append blocks, then their markers (after the data is in the file)."""
        arrays = [np.ascontiguousarray(d, dtype="<f4") for d in data if len(d)]
        if arrays:
            self.bytes_written += self._eeg.write(arrays)
            self.n_samples += sum(len(a) for a in arrays)
        if marks:
            self._eeg.flush()  # a marker never points past the data on disk
            vmrk, mlines = [], []
            for mark in marks:
                self._n_vmrk += 1
                typed = _TYPED.match(mark.text)
                mtype, desc = typed.groups() if typed else ("Comment", mark.text)
                vmrk.append(
                    f"Mk{self._n_vmrk}={mtype},{_bv_escape(desc)},{mark.sample + 1},1,0\n"
                )
                mlines.append(f"{mark.time * 1000.0:f} {_one_line(mark.text)}\n")
            self._put(".vmrk", "".join(vmrk))
            self._put(".marker", "".join(mlines))
            self.n_markers += len(marks)

    def flush(self) -> None:
        """Put the data appended so far into ``.eeg`` (markers are written at once)."""
        self._eeg.flush()

    def close(self) -> None:
        """Close the files (the headers are already complete)."""
        fds = list(self._fds)
        first: RecordingError | None = None
        if self._eeg is not None:
            eeg, self._eeg = self._eeg, None
            try:
                eeg.close()
            except RecordingError as exc:
                first = exc
        for suffix in fds:
            try:
                self._close_fd(suffix)
            except RecordingError as exc:
                first = first or exc
        if first is None and self.effective_rate is not None:
            # Known only now: the headers are written again, each in one step.
            try:
                for suffix, text in ((".vhdr", self._vhdr_text()), (".meta", self._meta_text())):
                    self.bytes_written += replace_file(self._names[suffix], text)
            except RecordingError as exc:
                first = exc
        if first is not None:
            raise first

    def abort(self) -> None:
        """Cut a partial last sample left by a failed write, then close."""
        if self._eeg is not None:
            fd = self._eeg.fileno()
            try:
                self._eeg.flush()  # what can still be written
            except RecordingError:
                pass
            try:
                size = os.fstat(fd).st_size
                frame = 4 * len(self.header.channels)
                if size % frame:
                    os.ftruncate(fd, size - size % frame)
            except OSError:
                pass
        self._close_all()


# -- reading -----------------------------------------------------------------
#
# What is read follows the BrainVision Core Data Format 1.0 and what
# mne.io.read_raw_brainvision makes of the same files (the facts; the code is
# ampkit's): keys are case-insensitive, ";" starts a comment line, and
# everything from "[Comment]" on is free text (Vision Recorder puts its
# amplifier tables, impedances and filter settings there).

_FIRST_LINE = re.compile(r"Brain ?Vision.*(Header|Marker) File", re.IGNORECASE)
_CODECS = {"utf-8": "utf-8", "utf8": "utf-8", "ansi": "cp1252", "latin-1": "latin-1",
           "latin1": "latin-1", "iso-8859-1": "latin-1", "cp1252": "cp1252",
           "windows-1252": "cp1252"}
_OTHER_CODEPAGE = re.compile(r"(cp|windows-)125[0-8]|iso-?8859-([1-9]|1[0-6])")
_BINARY = {"INT_16": "i2", "INT_32": "i4", "IEEE_FLOAT_32": "f4"}
#: Units MNE takes as voltages (the others make misc channels).
_MNE_VOLTS = ("V", "mV", "µV", "uV", "nV")
#: Channel names MNE makes EOG channels by default.
_MNE_EOG = ("HEOGL", "HEOGR", "VEOGb")
_NEW_SEGMENT_DATE = re.compile(r"^\d{20}$")


def _decode(raw: bytes) -> str:
    """The text of a header or marker file, in the code page it names.

    ``Codepage=UTF-8`` (or none) is UTF-8, ``ANSI`` is Windows-1252; bytes
    that do not decode so are read as Latin-1 (older files), as MNE does.
    """
    found = re.search(rb"^[ \t]*Codepage[ \t]*=([^\r\n]*)", raw, re.IGNORECASE | re.MULTILINE)
    name = found.group(1).decode("ascii", "ignore").strip().lower() if found else "utf-8"
    codec = _CODECS.get(name)
    if codec is None and _OTHER_CODEPAGE.fullmatch(name):
        codec = name  # another Windows or ISO 8859 code page
    try:
        return raw.decode(codec or "latin-1")
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


def _sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """``{section (lower case): [(key (lower case), value), ...]}`` up to ``[Comment]``."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.split("\n")[1:]:
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip().lower()
            if name == "comment":
                break
            current = out.setdefault(name, [])
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current.append((key.strip().lower(), value.strip()))
    return out


def _get(sections: dict, section: str, key: str, default: str | None = None) -> str | None:
    for k, v in reversed(sections.get(section, [])):
        if k == key:
            return v
    return default


def _check_first_line(path: Path, text: str, kind: str) -> None:
    first = text.split("\n", 1)[0].strip()
    if not _FIRST_LINE.search(first) or kind.lower() not in first.lower():
        message = f"{path}: not a BrainVision {kind.lower()} file (first line {first[:80]!r})"
        if kind == "Header":
            raise RecordingError(message)
        logger.warning("%s; reading its markers anyway", message)


def _bv_unescape(text: str) -> str:
    """Undo :func:`_bv_escape`: ``\\1`` is a comma, and a backslash, word joiners
    and ``1`` lose one joiner."""
    return _ESCAPED.sub(lambda m: "\\" + m.group(1)[1:] + "1" if m.group(1) else ",", text)


def _beside(header: Path, name: str, key: str) -> Path:
    """The file ``name`` in ``header``'s folder; anything else is refused."""
    bad = (not name or name in (".", "..") or any(c in name for c in "/\\:\x00")
           or Path(name).is_absolute())
    if bad:
        raise RecordingError(
            f"{header}: {key}={name!r} is not the name of a file in the header's folder; "
            f"ampkit reads only files beside the header (edit {key} to the bare file name)"
        )
    return header.with_name(name)


def _number(path: Path, key: str, text: str | None, kind: type = float) -> float:
    try:
        value = kind(text)
        if kind is float and not math.isfinite(value):
            raise ValueError("not finite")
        return value
    except (TypeError, ValueError) as exc:
        raise RecordingError(f"{path}: {key}={text!r} is not a valid number ({exc})") from None


def _parse_vhdr(path: Path) -> dict:
    text = _decode(path.read_bytes())
    _check_first_line(path, text, "Header")
    sec = _sections(text)
    common = "common infos"
    n_ch = int(_number(path, "NumberOfChannels", _get(sec, common, "numberofchannels"), int))
    if not 1 <= n_ch <= len(text):
        raise RecordingError(f"{path}: NumberOfChannels={n_ch} does not fit the header")
    interval = _number(path, "SamplingInterval", _get(sec, common, "samplinginterval"))
    fs = 1e6 / interval if interval > 0 else math.inf
    if not (math.isfinite(fs) and fs > 0):
        raise RecordingError(f"{path}: SamplingInterval={interval!r} must be a positive "
                             "number of microseconds")
    infos = dict(sec.get("channel infos", []))
    channels, units, resolutions, types = [], [], [], []
    for i in range(1, n_ch + 1):
        props = infos.get(f"ch{i}")
        if props is None:
            raise RecordingError(f"{path}: [Channel Infos] has no Ch{i} "
                                 f"(NumberOfChannels={n_ch})")
        fields = props.split(",") + [""] * 3
        name = _bv_unescape(fields[0])
        res = _number(path, f"Ch{i} resolution", fields[2]) if fields[2].strip() else 1.0
        unit = fields[3].strip().replace("\xc2", "") or "µV"
        channels.append(name)
        resolutions.append(res)
        units.append(normalise_unit(unit))
        if name in _MNE_EOG:
            types.append("eog")
        elif unit not in _MNE_VOLTS:
            types.append("misc")
        elif name == "STI 014":
            types.append("stim")
        else:
            types.append("eeg")
    # MNE makes a channel placed at the origin ([Coordinates] radius 0) misc
    for key, value in sec.get("coordinates", []):
        index = int(key[2:]) - 1 if re.fullmatch(r"ch\d{1,9}", key) else -1
        radius = value.split(",")[0].strip()
        if 0 <= index < n_ch and types[index] != "eog" and radius in ("0", "0.0"):
            types[index] = "misc"
    data_format = (_get(sec, common, "dataformat") or "BINARY").upper()
    orientation = (_get(sec, common, "dataorientation") or "MULTIPLEXED").upper()
    data_type = (_get(sec, common, "datatype") or "TIMEDOMAIN").upper()
    if data_type != "TIMEDOMAIN":
        raise RecordingError(f"{path}: DataType={data_type} is not supported (only "
                             "TIMEDOMAIN data are samples over time)")
    if data_format not in ("BINARY", "ASCII"):
        raise RecordingError(f"{path}: DataFormat={data_format} is not BINARY or ASCII")
    if orientation not in ("MULTIPLEXED", "VECTORIZED"):
        raise RecordingError(f"{path}: DataOrientation={orientation} is not MULTIPLEXED "
                             "or VECTORIZED")
    out = {"channels": channels, "units": units, "types": types,
           "resolutions": np.array(resolutions), "fs": fs, "format": data_format,
           "vectorized": orientation == "VECTORIZED"}
    if data_format == "BINARY":
        fmt = (_get(sec, "binary infos", "binaryformat") or "IEEE_FLOAT_32").upper()
        if fmt not in _BINARY:
            raise RecordingError(f"{path}: BinaryFormat={fmt} is not supported (INT_16, "
                                 "INT_32 or IEEE_FLOAT_32)")
        big = (_get(sec, "binary infos", "usebigendianorder") or "NO").upper() == "YES"
        out["dtype"] = np.dtype((">" if big else "<") + _BINARY[fmt])
    else:
        out["decimal"] = _get(sec, "ascii infos", "decimalsymbol", ".") or "."
        for key in ("skiplines", "skipcolumns"):
            value = int(_number(path, key, _get(sec, "ascii infos", key, "0"), int))
            if not 0 <= value <= 10**6:
                raise RecordingError(f"{path}: {key}={value} is out of range")
            out[key] = value
    points = _get(sec, common, "datapoints")
    out["points"] = int(_number(path, "DataPoints", points, int)) if points else None
    if out["points"] is not None and out["points"] < 0:
        raise RecordingError(f"{path}: DataPoints={points} is negative")
    datafile = _get(sec, common, "datafile")
    if datafile is None:
        raise RecordingError(f"{path}: no DataFile in [Common Infos]")
    out["datafile"] = _beside(path, datafile, "DataFile")
    markerfile = _get(sec, common, "markerfile")
    out["markerfile"] = _beside(path, markerfile, "MarkerFile") if markerfile else None
    return out


def _read_binary(path: Path, hdr: dict, n_ch: int) -> np.ndarray:
    dtype = hdr["dtype"]
    frame = dtype.itemsize * n_ch
    size = path.stat().st_size
    if not hdr["vectorized"]:
        n = size // frame  # a partial last sample (a recording cut short) is left out
        raw = np.fromfile(path, dtype=dtype, count=n * n_ch).reshape(n, n_ch)
    else:
        n = hdr["points"] if hdr["points"] is not None else size // frame
        if n * frame > size:
            raise RecordingError(f"{path}: holds {size} bytes, the header's DataPoints="
                                 f"{n} needs {n * frame} (VECTORIZED data cut short)")
        raw = np.fromfile(path, dtype=dtype, count=n * n_ch).reshape(n_ch, n).T
    return raw


def _read_ascii(path: Path, hdr: dict, n_ch: int) -> np.ndarray:
    """ASCII data: one sample per line (MULTIPLEXED) or one channel per line (VECTORIZED)."""
    body = path.read_bytes().decode("latin-1")
    pos = 0
    for _ in range(hdr["skiplines"]):
        pos = body.find("\n", pos) + 1
        if not pos:
            pos = len(body)
            break
    body = body[pos:]
    if hdr["decimal"] == ",":
        body = body.replace(",", ".")
    elif "," in body:
        body = body.replace(",", " ")  # comma-separated values (BrainVision Analyzer exports)
    if hdr["skipcolumns"]:
        skip = hdr["skipcolumns"]
        body = re.sub(rf"(?m)^[ \t]*(?:\S+[ \t]+){{{skip}}}", "", body)
    rows = sum(1 for _ in re.finditer(r"(?m)^[ \t\r]*[^\s]", body))
    values = np.zeros(0)
    if rows:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            try:
                values = np.fromstring(body, dtype=np.float64, sep=" ")
            except (ValueError, DeprecationWarning):
                raise RecordingError(f"{path}: ASCII data holds something that is not "
                                     "a number") from None
    if hdr["vectorized"]:
        if rows != n_ch or len(values) % n_ch:
            raise RecordingError(f"{path}: VECTORIZED ASCII data has {rows} lines of "
                                 f"values for {n_ch} channels, or lines of unequal length")
        data = values.reshape(n_ch, -1).T
        if hdr["points"] is not None:
            data = data[: hdr["points"]]
        return data
    if len(values) != rows * n_ch:
        raise RecordingError(f"{path}: ASCII data has {len(values)} values in {rows} "
                             f"lines, not {n_ch} per line")
    return values.reshape(rows, n_ch)


def _parse_vmrk(path: Path) -> tuple[list[tuple[str, str, int, int]], dt.datetime | None]:
    """``([(type, description, position, size), ...], date of the first New Segment)``.

    Positions are as written (1 is the first sample); the type and
    description have ``\\1`` still in them.
    """
    text = _decode(path.read_bytes())
    _check_first_line(path, text, "Marker")
    entries, date = [], None
    for key, value in _sections(text).get("marker infos", []):
        if not re.fullmatch(r"mk\d+", key):
            continue
        parts = value.split(",")
        if len(parts) < 3:
            continue
        try:
            position = int(parts[2])
        except ValueError:
            continue
        size_text = parts[3].strip() if len(parts) > 3 else ""
        size = int(size_text) if size_text.isascii() and size_text.isdigit() else 0
        # positions and sizes past any file's end are kept as "far past the end"
        entries.append((parts[0], parts[1], min(position, 2**62), min(size, 2**62)))
        if (date is None and parts[0] == "New Segment" and len(parts) == 6
                and _NEW_SEGMENT_DATE.match(parts[5].strip())):
            try:
                date = dt.datetime.strptime(parts[5].strip(), "%Y%m%d%H%M%S%f").replace(
                    tzinfo=dt.timezone.utc)
            except ValueError:
                pass
    return entries, date


def _parse_meta(path: Path) -> tuple[list[str], float, str]:
    try:
        info = json.loads(_decode(path.read_bytes()))
        if not isinstance(info, dict) or not isinstance(info.get("Channels"), list):
            raise TypeError("Channels is not a list")
        channels = [str(c) for c in info["Channels"]]
        fs = float(info["Sampling Frequency"])
        amp = str(info.get("Amp", ""))
    except RecursionError:
        raise RecordingError(f"{path}: malformed libmushu meta file (nested too deeply)") from None
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise RecordingError(f"{path}: malformed libmushu meta file: {exc!r}") from None
    if not (math.isfinite(fs) and fs > 0) or not channels:
        raise RecordingError(f"{path}: {len(channels)} channels at {fs} Hz")
    return channels, fs, amp


def _parse_marker(path: Path) -> list[tuple[float, str]]:
    """``(ms, text)`` lines of a libmushu ``.marker`` file."""
    out = []
    for line in _decode(path.read_bytes()).split("\n"):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        ms, _, text = line.partition(" ")
        try:
            value = float(ms)
        except ValueError:
            continue  # a line cut by a crash
        if not math.isnan(value):
            out.append((value, text))
    return out


def read_brainvision(path: os.PathLike | str) -> Recording:
    """Read a five-file recording, or a BrainVision or libmushu recording.

    Parameters
    ----------
    path : str or path
        The base name or any of the files (for BrainVision files written by
        other software, the ``.vhdr``).

    Returns
    -------
    ampkit.io.Recording
        With a ``.marker`` file (ampkit, libmushu), its texts are the
        markers; otherwise the ``.vmrk`` markers are ``Type/description``
        (``Stimulus/S  1``), as MNE names them; the first ``New Segment``
        gives ``meas_date`` and is not a marker.

    Raises
    ------
    ampkit.errors.RecordingError
        No such recording, a header that names files outside its folder, a
        variant the format does not define, or data that do not fit the
        header.
    """
    base = base_of(path)
    vhdr, meta, eeg = (_sibling(base, s) for s in (".vhdr", ".meta", ".eeg"))
    if Path(path).suffix.lower() == ".vhdr":
        vhdr = Path(path)
    hdr = _parse_vhdr(vhdr) if vhdr.exists() else None
    amp, types, resolutions = "", None, None
    if meta.exists():
        channels, fs, amp = _parse_meta(meta)
        if hdr and len(hdr["units"]) == len(channels):
            units, types = hdr["units"], hdr["types"]
        else:
            units = ["µV"] * len(channels)
        data = np.fromfile(eeg, dtype="<f4") if eeg.exists() else None
        if data is not None:
            n = len(data) // len(channels)
            data = data[: n * len(channels)].reshape(n, len(channels))
    elif hdr is not None:
        channels, units, types, fs = hdr["channels"], hdr["units"], hdr["types"], hdr["fs"]
        eeg = hdr["datafile"]
        data = None
        if eeg.exists():
            reader = _read_binary if hdr["format"] == "BINARY" else _read_ascii
            data = reader(eeg, hdr, len(channels))
            resolutions = hdr["resolutions"]
    else:
        raise RecordingError(f"{path}: no {vhdr.name} or {meta.name} found")
    if data is None:
        raise RecordingError(f"{path}: data file {eeg} is missing")
    if resolutions is not None and not np.all(resolutions == 1.0):
        data = (data * resolutions).astype(np.float32)
    else:
        data = data.astype(np.float32, copy=False)
    n = len(data)

    vmrk = _sibling(base, ".vmrk")
    if hdr is not None and hdr["markerfile"] is not None:
        vmrk = hdr["markerfile"]
        if not vmrk.exists() and _sibling(base, ".vmrk").exists():
            logger.warning("%s: MarkerFile %s not found; reading %s", vhdr, vmrk.name,
                           _sibling(base, ".vmrk").name)
            vmrk = _sibling(base, ".vmrk")
    entries, meas_date = _parse_vmrk(vmrk) if vmrk.exists() else ([], None)
    # MNE's view: every entry but a leading New Segment, "Type/description"
    shown = entries[1:] if entries and entries[0][0] == "New Segment" else entries
    annotations = [((pos - 1) / fs, size / fs, f"{t.replace(chr(92) + '1', ',')}/"
                    f"{d.replace(chr(92) + '1', ',')}") for t, d, pos, size in shown]
    marker_path = _sibling(base, ".marker")
    placed: list[tuple[float, float, str]] = []
    if marker_path.exists():
        # ampkit and libmushu: the texts as given; the samples from .vmrk where it has them
        positions = [pos - 1 for t, _, pos, _ in entries if t != "New Segment"]
        for i, (ms, text) in enumerate(_parse_marker(marker_path)):
            sample = positions[i] if i < len(positions) else marker_sample(ms / 1000.0, fs)
            placed.append((sample, ms / 1000.0, text))
    else:
        for t, d, pos, _ in shown:
            placed.append((pos - 1, (pos - 1) / fs, f"{_bv_unescape(t)}/{_bv_unescape(d)}"))
    return Recording(
        data=data,
        fs=fs,
        channels=channels,
        units=units,
        markers=keep_markers_in_data(placed, n, vmrk if not marker_path.exists() else base),
        amp=amp,
        path=base,
        format="brainvision",
        meas_date=meas_date,
        types=types,
        annotations=annotations if hdr is not None and vmrk.exists() else None,
    )
