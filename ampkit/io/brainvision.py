"""The default recording: five files sharing one base name.

``BASE.eeg``
    Raw float32, little-endian, multiplexed (sample after sample, the
    channels of a sample side by side). It is libmushu's data file and
    BrainVision's binary data file at once.
``BASE.meta``
    libmushu's JSON header: ``Channels``, ``Sampling Frequency``, ``Amp``.
``BASE.marker``
    libmushu's markers, one line each: ``"<ms since the first sample> <text>"``.
``BASE.vhdr`` and ``BASE.vmrk``
    The BrainVision Core Data Format 1.0 header and marker files, so that
    ``mne.io.read_raw_brainvision('BASE.vhdr')`` reads the recording in volts,
    with every marker an annotation at its sample.

Crash safety: all headers are complete before the first sample (the sample
count is implied by the size of ``BASE.eeg``), and every batch of samples and
markers goes to the operating system at each flush (the recorder flushes every
0.1 s), data first, so a killed process leaves files every reader opens.
``BASE.eeg`` is written past the page cache where the system allows it
(:mod:`ampkit.io.direct`): at high rates that costs a fraction of the CPU.

Marker texts go into ``.vmrk`` as type ``Comment`` (MNE shows them as
``Comment/<text>``), except texts already of the form ``Stimulus/...`` or
``Response/...``, which keep that type (MNE shows them unchanged and maps them
to events). Commas are written as ``\\1`` (the format's escape); line breaks
in marker texts become spaces in ``.vmrk`` and ``.marker``.
"""

from __future__ import annotations

import configparser
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ampkit.errors import RecordingError
from ampkit.io.direct import AppendFile
from ampkit.io.writer import (
    FormatWriter,
    Header,
    Mark,
    check_new,
    create_file,
    recording_error,
    write_all,
)

__all__ = ["BrainVisionWriter", "read_brainvision", "base_of", "SUFFIXES"]

#: Suffixes naming one of the five files; any of them names the recording.
SUFFIXES = (".vhdr", ".eeg", ".vmrk", ".meta", ".marker")

_TYPED = re.compile(r"^(Stimulus|Response)/(.*)$", re.DOTALL)


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
    return _one_line(text).replace(",", r"\1")


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
            meta = {
                "Channels": header.channels,
                "Sampling Frequency": header.fs,
                "Amp": header.amp,
            }
            self._put(".meta", json.dumps(meta, indent=4))
            self._close_fd(".vhdr")
            self._close_fd(".meta")
        except BaseException:
            self._close_all()
            raise
        self._n_vmrk = 1  # Mk1 is the "New Segment" marker

    # -- header texts ------------------------------------------------------

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


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _lines(text: str) -> list[str]:
    # Only "\n" ends a line: marker texts may hold other Unicode line breaks.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _parse_vhdr(path: Path) -> dict:
    text = _read_text(path)
    first = text.splitlines()[0] if text else ""
    if "Brain" not in first or "Header" not in first:
        raise RecordingError(f"{path}: not a BrainVision header (first line {first!r})")
    cfg = configparser.ConfigParser(interpolation=None, comment_prefixes=(";",), strict=False)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        cfg.read_string(text[len(first):])
        common = cfg["Common Infos"]
        n = int(common["NumberOfChannels"])
        fs = 1e6 / float(common["SamplingInterval"])
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"SamplingInterval={common['SamplingInterval']}")
        channels, units, resolutions = [], [], []
        for i in range(1, n + 1):
            props = cfg["Channel Infos"][f"Ch{i}"].split(",")
            props += [""] * (4 - len(props))
            channels.append(props[0].replace(r"\1", ","))
            resolutions.append(float(props[2]) if props[2] else 1.0)
            units.append(props[3].replace(r"\1", ",") or "µV")
        fmt = cfg.get("Binary Infos", "BinaryFormat", fallback="IEEE_FLOAT_32")
        orient = common.get("DataOrientation", "MULTIPLEXED")
    except (KeyError, ValueError, ZeroDivisionError, configparser.Error) as exc:
        raise RecordingError(f"{path}: malformed BrainVision header: {exc!r}") from None
    if common.get("DataFormat", "BINARY").upper() != "BINARY" or orient.upper() != "MULTIPLEXED":
        raise RecordingError(f"{path}: only BINARY MULTIPLEXED BrainVision data is supported")
    dtypes = {"IEEE_FLOAT_32": "<f4", "INT_16": "<i2", "INT_32": "<i4"}
    if fmt.upper() not in dtypes:
        raise RecordingError(f"{path}: unsupported BinaryFormat {fmt!r}")
    return {
        "channels": channels,
        "units": units,
        "resolutions": np.array(resolutions),
        "fs": fs,
        "dtype": dtypes[fmt.upper()],
        "datafile": common.get("DataFile"),
        "markerfile": common.get("MarkerFile"),
    }


def _parse_vmrk(path: Path) -> list[tuple[int, str]]:
    """``(sample, text)`` of every marker but the "New Segment" ones."""
    out = []
    for line in _lines(_read_text(path)):
        m = re.match(r"^Mk\d+=(.*)$", line)
        if not m:
            continue
        parts = m.group(1).split(",")
        if len(parts) < 3:
            continue
        mtype, desc = parts[0].replace(r"\1", ","), parts[1].replace(r"\1", ",")
        if mtype == "New Segment":
            continue
        try:
            sample = max(0, int(parts[2]) - 1)
        except ValueError:
            continue
        out.append((sample, desc if mtype == "Comment" else f"{mtype}/{desc}"))
    return out


def _parse_marker(path: Path) -> list[tuple[float, str]]:
    """``(ms, text)`` lines of a libmushu ``.marker`` file."""
    out = []
    for line in _lines(_read_text(path)):
        if not line.strip():
            continue
        ms, _, text = line.partition(" ")
        try:
            value = float(ms)
        except ValueError:
            continue  # a line cut by a crash
        if math.isfinite(value):
            out.append((value, text))
    return out


def read_brainvision(path: os.PathLike | str):
    """Read a five-file recording (or a BrainVision or libmushu recording).

    Parameters
    ----------
    path : str or path
        The base name or any of the files.

    Returns
    -------
    ampkit.io.Recording
    """
    from ampkit.io import Recording

    base = base_of(path)
    vhdr, meta, eeg = (_sibling(base, s) for s in (".vhdr", ".meta", ".eeg"))
    if Path(path).suffix.lower() == ".vhdr":
        vhdr = Path(path)
    hdr = _parse_vhdr(vhdr) if vhdr.exists() else None
    amp = ""
    if meta.exists():
        try:
            info = json.loads(_read_text(meta))
            if not isinstance(info["Channels"], list):
                raise TypeError("Channels is not a list")
            channels = [str(c) for c in info["Channels"]]
            fs = float(info["Sampling Frequency"])
            amp = str(info.get("Amp", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordingError(f"{meta}: malformed libmushu meta file: {exc!r}") from None
        units = hdr["units"] if hdr and len(hdr["units"]) == len(channels) else ["µV"] * len(
            channels
        )
        dtype, resolutions = "<f4", None
    elif hdr is not None:
        channels, units, fs, dtype = hdr["channels"], hdr["units"], hdr["fs"], hdr["dtype"]
        resolutions = hdr["resolutions"]
        if hdr["datafile"]:
            eeg = vhdr.with_name(hdr["datafile"])
    else:
        raise RecordingError(f"{path}: no {vhdr.name} or {meta.name} found")
    if not eeg.exists():
        raise RecordingError(f"{path}: data file {eeg} is missing")
    n_ch = len(channels)
    if not n_ch or not (math.isfinite(fs) and fs > 0):
        raise RecordingError(f"{path}: header has {n_ch} channels at {fs} Hz")
    raw = np.fromfile(eeg, dtype=dtype)
    n = len(raw) // n_ch
    data = raw[: n * n_ch].reshape(n, n_ch)
    if resolutions is not None and not np.all(resolutions == 1.0):
        data = (data * resolutions).astype(np.float32)
    elif data.dtype != np.float32:
        data = data.astype(np.float32)
    else:
        data = data.astype(np.float32, copy=False)

    vmrk_path = _sibling(base, ".vmrk")
    if hdr is not None and hdr["markerfile"]:
        vmrk_path = vhdr.with_name(hdr["markerfile"])
    positions = _parse_vmrk(vmrk_path) if vmrk_path.exists() else []
    marker_path = _sibling(base, ".marker")
    markers: list[tuple[int, float, str]] = []
    if marker_path.exists():
        lines = _parse_marker(marker_path)
        for i, (ms, text) in enumerate(lines):
            if i < len(positions):
                sample = positions[i][0]
            else:  # no .vmrk line (other software, or cut by a crash)
                sample = max(0, math.ceil(ms * fs / 1000.0 - 1e-6))
            markers.append((sample, ms / 1000.0, text))
    else:
        markers = [(s, s / fs, text) for s, text in positions]
    return Recording(
        data=data,
        fs=fs,
        channels=channels,
        units=units,
        markers=markers,
        amp=amp,
        path=base,
        format="brainvision",
    )
