"""XDF recordings (``.xdf``), written incrementally.

XDF (the format of LabRecorder) is a sequence of chunks after the magic
``XDF:``; each chunk is ``[length][tag][content]``. This writer emits:

* a FileHeader chunk (tag 1);
* two StreamHeader chunks (tag 2): stream 1 is the amp's data (``float32``,
  one channel per amp channel, the channel labels and units in
  ``desc/channels``), stream 2 its markers (one ``string`` channel,
  irregular rate);
* Samples chunks (tag 3) with an 8-byte LSL-clock timestamp on every sample;
* ClockOffset chunks (tag 4) every 5 s: the recording is made on the clock
  of the samples, so every offset is 0;
* Boundary chunks (tag 5) every 10 s, so readers can resynchronise after a
  damaged chunk;
* StreamFooter chunks (tag 6) at close; the data stream's also carries
  ``effective_srate``, the device's rate as measured (see :doc:`/timing`).

Each batch goes to the operating system in one unbuffered write, so a killed
recording ends at a chunk boundary (or inside the last chunk, which pyxdf
and :func:`read_xdf` skip), and reads without footers.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import socket
import struct
import uuid
from pathlib import Path
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import numpy as np

from ampkit.clock import local_clock
from ampkit.errors import ConfigurationError, RecordingError
from ampkit.io.recording import Recording, keep_markers_in_data
from ampkit.io.units import normalise_unit
from ampkit.io.writer import (
    FormatWriter,
    Header,
    Mark,
    check_new,
    create_file,
    recording_error,
    write_all,
    write_all_v,
)

__all__ = ["XDFWriter", "read_xdf", "BOUNDARY", "synchronize", "clock_segments", "huber_line"]

#: Content of a Boundary chunk (fixed by the XDF specification).
BOUNDARY = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")
_DATA_ID, _MARKER_ID = 1, 2


def _varlen(n: int) -> bytes:
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def _chunk(tag: int, content: bytes) -> bytes:
    return _varlen(len(content) + 2) + struct.pack("<H", tag) + content


def _xml(tag: str, fields: dict[str, object], desc: str = "") -> str:
    body = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0"?><{tag}>{body}{desc}</{tag}>'


class XDFWriter(FormatWriter):
    """Write an XDF file with a data stream and a marker stream.

    Parameters
    ----------
    path : str or path
        The ``.xdf`` file.
    header : ampkit.io.writer.Header
    overwrite : bool
        Replace an existing file instead of raising.
    """

    format = "xdf"

    def __init__(self, path: os.PathLike | str, header: Header, overwrite: bool = False) -> None:
        super().__init__(path, header, overwrite)
        self.paths = [self.path]
        n_ch = len(header.channels)
        self._dtype = np.dtype([("n", "u1"), ("t", "<f8"), ("v", "<f4", (n_ch,))])
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._count = {_DATA_ID: 0, _MARKER_ID: 0}
        self._offsets: list[float] = []
        self._next_offset = self._next_boundary = 0.0
        check_new(self.paths, overwrite)
        self._fd: int | None = create_file(self.path, overwrite)
        try:
            self._put(b"XDF:" + _chunk(1, self._file_header()) + self._stream_headers())
            self._put(self._periodic(local_clock()))
        except BaseException:
            self._close_fd()
            raise

    def _file_header(self) -> bytes:
        fields = {"version": "1.0", "datetime": self.header.start.isoformat()}
        return _xml("info", fields).encode()

    def _stream_headers(self) -> bytes:
        h = self.header
        host = socket.gethostname()
        common = {"created_at": repr(local_clock()), "session_id": "default",
                  "hostname": host, "version": "1.1"}
        channels = "".join(
            f"<channel><label>{escape(c)}</label><unit>{escape(u)}</unit>"
            "<type>EEG</type></channel>"
            for c, u in zip(h.channels, h.units, strict=True)
        )
        desc = (f"<desc><channels>{channels}</channels><acquisition>"
                f"<manufacturer>ampkit</manufacturer><model>{escape(h.amp)}</model>"
                "</acquisition></desc>")
        name = h.amp or "ampkit"
        data = _xml("info", {
            "name": name, "type": "EEG", "channel_count": len(h.channels),
            "nominal_srate": repr(h.fs), "channel_format": "float32",
            "source_id": f"ampkit-{name}", **common, "uid": str(uuid.uuid4()),
        }, desc)
        markers = _xml("info", {
            "name": f"{name}-markers", "type": "Markers", "channel_count": 1,
            "nominal_srate": "0", "channel_format": "string",
            "source_id": f"ampkit-{name}-markers", **common, "uid": str(uuid.uuid4()),
        }, "<desc/>")
        return (_chunk(2, struct.pack("<I", _DATA_ID) + data.encode())
                + _chunk(2, struct.pack("<I", _MARKER_ID) + markers.encode()))

    def _periodic(self, now: float) -> bytes:
        out = b""
        if now >= self._next_offset:
            self._next_offset = now + 5.0
            self._offsets.append(now)
            for sid in (_DATA_ID, _MARKER_ID):
                out += _chunk(4, struct.pack("<Idd", sid, now, 0.0))
        if now >= self._next_boundary:
            self._next_boundary = now + 10.0
            out += _chunk(5, BOUNDARY)
        return out

    def _put(self, data: bytes) -> None:
        assert self._fd is not None
        self.bytes_written += write_all(self._fd, data, self.path)

    def write(self, data: np.ndarray, timestamps: np.ndarray, marks: list[Mark]) -> None:
        """Append one Samples chunk per stream (and periodic chunks) in one write."""
        self.write_blocks([data], [timestamps], marks)

    def write_blocks(
        self, data: list[np.ndarray], timestamps: list[np.ndarray], marks: list[Mark]
    ) -> None:
        """Append one Samples chunk per block, the markers' chunk, in one ``writev``."""
        parts: list = []
        for block, stamps in zip(data, timestamps, strict=True):
            n = len(block)
            if not n:
                continue
            rows = np.empty(n, self._dtype)
            rows["n"] = 8
            rows["t"] = stamps
            rows["v"] = block
            head = struct.pack("<I", _DATA_ID) + _varlen(n)
            parts += [_varlen(len(head) + rows.nbytes + 2) + struct.pack("<H", 3) + head, rows]
            self._first.setdefault(_DATA_ID, float(stamps[0]))
            self._last[_DATA_ID] = float(stamps[-1])
            self._count[_DATA_ID] += n
            self.n_samples += n
        out = b""
        if marks:
            items = [struct.pack("<I", _MARKER_ID), _varlen(len(marks))]
            for mark in marks:
                text = mark.text.encode("utf-8")
                items.append(struct.pack("<Bd", 8, mark.stamp) + _varlen(len(text)) + text)
                self._first.setdefault(_MARKER_ID, mark.stamp)
                self._last[_MARKER_ID] = mark.stamp
            out += _chunk(3, b"".join(items))
            self._count[_MARKER_ID] += len(marks)
            self.n_markers += len(marks)
        out += self._periodic(local_clock())
        parts.append(out)
        assert self._fd is not None
        self.bytes_written += write_all_v(self._fd, parts, self.path)

    def close(self) -> None:
        """Write the stream footers and close."""
        if self._fd is None:
            return
        try:
            out = b""
            for sid in (_DATA_ID, _MARKER_ID):
                offsets = "".join(
                    f"<offset><time>{t!r}</time><value>0.0</value></offset>" for t in self._offsets
                )
                fields: dict[str, object] = {
                    "first_timestamp": repr(self._first.get(sid, 0.0)),
                    "last_timestamp": repr(self._last.get(sid, 0.0)),
                    "sample_count": self._count[sid],
                }
                if sid == _DATA_ID and self.effective_rate is not None:
                    fields["effective_srate"] = repr(float(self.effective_rate))
                footer = _xml("info", fields, f"<clock_offsets>{offsets}</clock_offsets>")
                out += _chunk(6, struct.pack("<I", sid) + footer.encode())
            self._put(out + _chunk(5, BOUNDARY))
        finally:
            self._close_fd()

    def abort(self) -> None:
        """Close without footers (readers do not need them)."""
        try:
            self._close_fd()
        except RecordingError:
            pass

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                raise recording_error(self.path, exc, "close") from exc


# -- reading -------------------------------------------------------------------
#
# What is read follows the XDF specification and what pyxdf.load_xdf makes
# of the same file with synchronize_clocks=True and dejitter_timestamps=False
# (the facts; the code is ampkit's).

_FORMATS = {"float32": "<f4", "double64": "<f8", "int8": "i1", "int16": "<i2",
            "int32": "<i4", "int64": "<i8"}
#: pyxdf's clock-reset detection: a jump in the time between two clock
#: offsets (5 MADs and 5 s) together with a jump in their value (10 MADs and
#: 1 s) starts a new clock segment, as does time going backwards.
RESET_TIME_STDS, RESET_TIME_SECONDS = 5.0, 5.0
RESET_VALUE_STDS, RESET_VALUE_SECONDS = 10.0, 1.0
#: Offsets further than this from the fitted line count less (Huber loss).
WINSOR_SECONDS = 1e-4


def _read_varlen(buf, pos: int) -> tuple[int, int]:
    width = buf[pos]
    if width == 1:
        return buf[pos + 1], pos + 2
    if width == 4:
        return struct.unpack_from("<I", buf, pos + 1)[0], pos + 5
    if width == 8:
        return struct.unpack_from("<Q", buf, pos + 1)[0], pos + 9
    raise ValueError(f"bad variable-length integer width {width}")


def _parse_xml(content) -> ET.Element:
    data = bytes(content)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        # no XDF header needs them, and entity expansion is how XML bombs grow
        raise ValueError("XML with a DOCTYPE or ENTITY declaration")
    return ET.fromstring(data)


class _Stream:
    """One stream's header, samples and clock offsets, as read from the chunks."""

    def __init__(self, sid: int, info: ET.Element, file_size: int) -> None:
        self.sid = sid
        self.info = info
        self.name = info.findtext("name", "") or ""
        self.type = info.findtext("type", "") or ""
        self.n_ch = int(info.findtext("channel_count", "0"))
        if not 0 < self.n_ch <= file_size:
            raise ValueError(f"stream {self.name!r} has channel_count {self.n_ch} "
                             f"(a file of {file_size} bytes holds at most {file_size})")
        self.srate = float(info.findtext("nominal_srate", "0"))
        if not (math.isfinite(self.srate) and self.srate >= 0):
            raise ValueError(f"stream {self.name!r} has nominal_srate {self.srate}")
        self.fmt = info.findtext("channel_format", "float32")
        if self.fmt not in _FORMATS and self.fmt != "string":
            raise ValueError(f"stream {self.name!r} has unknown channel_format {self.fmt!r}")
        self.tdiff = 1.0 / self.srate if self.srate > 0 else 0.0
        self.stamps: list[np.ndarray] = []
        self.values: list = []
        self.n = 0
        self.last = 0.0
        self.clock_times: list[float] = []
        self.clock_values: list[float] = []
        self.footer: ET.Element | None = None

    def samples(self, buf: memoryview) -> None:
        """Read a Samples chunk's content (after the stream id)."""
        n, pos = _read_varlen(buf, 4)
        if n > len(buf):  # each sample takes at least one byte
            raise ValueError(f"{n} samples in a chunk of {len(buf)} bytes")
        stamps = np.empty(n)
        if self.fmt == "string":
            texts = []
            for k in range(n):
                pos = self._stamp(buf, pos, stamps, k)
                row = []
                for _ in range(self.n_ch):
                    size, pos = _read_varlen(buf, pos)
                    if pos + size > len(buf):
                        raise ValueError("a string runs past its chunk")
                    row.append(bytes(buf[pos : pos + size]).decode("utf-8", errors="replace"))
                    pos += size
                texts.append(row)
            self.values.extend(texts)
        else:
            dtype = np.dtype(_FORMATS[self.fmt])
            row = self.n_ch * dtype.itemsize
            if n * (1 + row) > len(buf) - pos:
                raise ValueError(f"{n} samples of {self.n_ch} channels do not fit the chunk")
            full = np.dtype([("n", "u1"), ("t", "<f8"), ("v", dtype, (self.n_ch,))])
            rows = None
            if len(buf) - pos == n * full.itemsize:
                rows = np.frombuffer(buf, full, n, pos)
                if not np.all(rows["n"] == 8):
                    rows = None
            if rows is not None:  # every sample stamped: LabRecorder's and ampkit's way
                stamps[:] = rows["t"]
                values = rows["v"].copy()
                if n:
                    self.last = float(stamps[-1])
            else:
                out = bytearray(n * row)
                for k in range(n):
                    pos = self._stamp(buf, pos, stamps, k)
                    if pos + row > len(buf):
                        raise ValueError("a sample runs past its chunk")
                    out[k * row : (k + 1) * row] = buf[pos : pos + row]
                    pos += row
                values = np.frombuffer(out, dtype).reshape(n, self.n_ch)
            self.values.append(values)
        self.stamps.append(stamps)
        self.n += n

    def _stamp(self, buf: memoryview, pos: int, stamps: np.ndarray, k: int) -> int:
        """Sample ``k``'s timestamp: its own, or the one before plus 1/rate (as pyxdf)."""
        if buf[pos]:
            self.last = struct.unpack_from("<d", buf, pos + 1)[0]
            pos += 9
        else:
            self.last += self.tdiff
            pos += 1
        stamps[k] = self.last
        return pos

    def timestamps(self) -> np.ndarray:
        return np.concatenate(self.stamps) if self.stamps else np.zeros(0)

    def describe(self) -> str:
        return f"{self.name!r} (type {self.type!r}, {self.fmt}, {self.n} samples)"


def _glitches(diff: np.ndarray, stds: float, seconds: float) -> np.ndarray:
    shift = diff - np.median(diff)
    mad = np.median(np.abs(shift)) + np.finfo(float).eps
    return (np.abs(shift / mad) > stds) & (np.abs(shift) > seconds)


def clock_segments(times: np.ndarray, values: np.ndarray) -> list[tuple[int, int]]:
    """Ranges ``(first, last)`` of clock offsets between clock resets, as pyxdf finds them."""
    if len(times) < 2:
        return [(0, len(times) - 1)]
    dtime, dvalue = np.diff(times), np.diff(values)
    resets = (dtime < 0) | (_glitches(dtime, RESET_TIME_STDS, RESET_TIME_SECONDS)
                            & _glitches(dvalue, RESET_VALUE_STDS, RESET_VALUE_SECONDS))
    breaks = np.flatnonzero(resets)
    starts = [0, *(breaks + 1).tolist()]
    ends = [*breaks.tolist(), len(times) - 1]
    return list(zip(starts, ends, strict=True))


def huber_line(t: np.ndarray, y: np.ndarray, delta: float = WINSOR_SECONDS) -> tuple[float, float]:
    """``(intercept, slope)`` of the line through ``(t, y)`` with least Huber loss.

    Iteratively reweighted least squares; the same minimum pyxdf's robust fit
    reaches by ADMM.
    """
    t0 = float(np.min(t))
    a = np.column_stack([np.ones(len(t)), t - t0])
    with np.errstate(all="ignore"):  # absurd offsets (1e300) give inf: caller's to judge
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        for _ in range(200):
            r = np.abs(a @ coef - y)
            w = np.where(r <= delta, 1.0, delta / np.maximum(r, delta))
            aw = a * w[:, None]
            new = np.linalg.solve(aw.T @ a, aw.T @ y)
            done = np.allclose(new, coef, rtol=0, atol=1e-13)
            coef = new
            if done:
                break
        return float(coef[0] - coef[1] * t0), float(coef[1])


def synchronize(stamps: np.ndarray, times: list[float], values: list[float]) -> np.ndarray:
    """``stamps`` moved onto the recording computer's clock by a stream's clock offsets.

    Each clock segment (see :func:`clock_segments`) gets its own line
    ``offset = a + b * time``; each timestamp belongs to the segment whose
    last offset is nearer than the next segment's first one, as in pyxdf.
    """
    if not len(stamps) or not times:
        return stamps
    times_a, values_a = np.asarray(times, float), np.asarray(values, float)
    ranges = clock_segments(times_a, values_a)
    coefs = []
    for first, last in ranges:
        seg_t, seg_v = times_a[first : last + 1], values_a[first : last + 1]
        if first == last:
            coefs.append((float(seg_v[0]), 0.0))
        elif np.ptp(seg_t) == 0 or not np.all(np.isfinite(seg_t) & np.isfinite(seg_v)):
            coefs.append((0.0, 0.0))  # pyxdf: these offsets cannot be used
        else:
            try:
                coef = huber_line(seg_t, seg_v)
            except np.linalg.LinAlgError:
                coef = (math.nan, math.nan)
            # pyxdf: offsets it cannot fit are not used
            coefs.append(coef if all(map(math.isfinite, coef)) else (0.0, 0.0))
    out = stamps.copy()
    start = 0
    for (a, b), (_, last) in zip(coefs, ranges, strict=True):
        if last + 1 < len(times_a):
            rest = out[start:]
            nearer = np.abs(rest - times_a[last]) < np.abs(rest - times_a[last + 1])
            stop = start + (len(nearer) if nearer.all() else int(np.argmin(nearer)))
        else:
            stop = len(out)
        if stop > start:
            out[start:stop] += a + b * out[start:stop]
            start = stop
    return out


def _file_date(header: ET.Element | None) -> dt.datetime | None:
    text = header.findtext("datetime", "") if header is not None else ""
    for parse in (dt.datetime.fromisoformat,
                  lambda x: dt.datetime.strptime(x, "%Y-%m-%dT%H:%M:%S%z")):
        try:
            when = parse(text.strip())
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return when.astimezone(dt.timezone.utc)
    return None


def _choose(path: Path, streams: list[_Stream], stream: str | None) -> _Stream:
    listing = "; ".join(s.describe() for s in streams) or "none"
    if stream is not None:
        matches = [s for s in streams if stream in (s.name, s.type)] or [
            s for s in streams if stream.lower() in (s.name.lower(), s.type.lower())]
        if not matches:
            raise ConfigurationError(f"{path}: no stream named or of type {stream!r}; "
                                     f"streams: {listing}")
        candidates = [s for s in matches if s.fmt != "string"]
        if not candidates:
            raise ConfigurationError(f"{path}: stream {stream!r} holds text markers, not "
                                     f"samples; streams: {listing}")
    else:
        candidates = [s for s in streams if s.fmt != "string"]
        if not candidates:
            raise RecordingError(f"{path}: no numeric stream; streams: {listing}")
    with_data = [s for s in candidates if s.n]
    return with_data[0] if with_data else candidates[0]


def read_xdf(path: os.PathLike | str, stream: str | None = None) -> Recording:
    """Read an XDF file: one numeric stream, and the string streams as markers.

    Parameters
    ----------
    path : str or path
    stream : str, optional
        The stream to read, by name or by type (exact, else ignoring case).
        By default the first numeric stream that holds samples (an empty
        stream is taken only when every numeric stream is empty).

    Returns
    -------
    ampkit.io.Recording
        ``timestamps`` are the stream's own, moved onto the recording
        computer's clock by the file's clock offsets (each stream's own,
        with clock resets, as ``pyxdf.load_xdf(synchronize_clocks=True)``;
        not dejittered). Each marker of every string stream, synchronised
        the same way, is placed at the first sample whose timestamp is at or
        after it; markers after the last sample are dropped with a warning.
        ``fs`` is the nominal rate (the measured one for an irregular
        stream); ``effective_fs`` is the footer's ``effective_srate`` where
        the writer stored one, else measured from the timestamps.

    Raises
    ------
    ampkit.errors.RecordingError
        Not an XDF file, a damaged chunk, or no numeric stream.
    ampkit.errors.ConfigurationError
        ``stream`` names no stream, or a string (marker) stream.
    """
    path = Path(path)
    raw = memoryview(path.read_bytes())
    if bytes(raw[:4]) != b"XDF:":
        raise RecordingError(f"{path}: not an XDF file")
    streams: dict[int, _Stream] = {}
    file_header = None
    pos = 4
    while pos < len(raw):
        try:
            if pos + 1 + min(raw[pos], 9) > len(raw):
                break  # the last chunk's length was cut by a crash
            length, start = _read_varlen(raw, pos)
            end = start + length
            if end > len(raw) or length < 2:
                break  # the last chunk was cut by a crash
            tag = struct.unpack_from("<H", raw, start)[0]
            content = raw[start + 2 : end]
            if tag == 1:
                file_header = _parse_xml(content)
            elif tag in (2, 3, 4, 6):
                sid = struct.unpack_from("<I", content)[0]
                if tag == 2:
                    streams[sid] = _Stream(sid, _parse_xml(content[4:]), len(raw))
                elif sid not in streams:
                    pass  # a chunk of a stream whose header is missing: pyxdf fails, we skip
                elif tag == 3:
                    streams[sid].samples(content)
                elif tag == 4:
                    when, value = struct.unpack_from("<dd", content, 4)
                    streams[sid].clock_times.append(when)
                    streams[sid].clock_values.append(value)
                else:
                    try:
                        streams[sid].footer = _parse_xml(content[4:])
                    except ET.ParseError:
                        pass  # a damaged footer is not needed (pyxdf ignores it too)
        except (ValueError, IndexError, struct.error, ET.ParseError) as exc:
            raise RecordingError(f"{path}: damaged chunk at byte {pos}: {exc}") from None
        pos = end
    chosen = _choose(path, list(streams.values()), stream)
    stamps = synchronize(chosen.timestamps(), chosen.clock_times, chosen.clock_values)
    if chosen.values:
        data = np.concatenate(chosen.values).astype(np.float32, copy=False)
    else:
        data = np.zeros((0, chosen.n_ch), np.float32)
    measured = None
    if len(stamps) > 1 and stamps[-1] > stamps[0]:
        measured = (len(stamps) - 1) / float(stamps[-1] - stamps[0])
        if not math.isfinite(measured):
            measured = None
    fs = chosen.srate or measured
    if not fs:
        raise RecordingError(f"{path}: stream {chosen.describe()} has no nominal rate and "
                             "too few samples to measure one")
    effective = measured
    if chosen.footer is not None:
        try:
            stored = float(chosen.footer.findtext("effective_srate", "nan"))
            if math.isfinite(stored) and stored > 0:
                effective = stored
        except ValueError:
            pass
    channels, units, types = [], [], []
    for ch in chosen.info.findall("./desc/channels/channel"):
        channels.append(ch.findtext("label", "") or "")
        units.append(ch.findtext("unit", "") or "")
        types.append((ch.findtext("type", "") or chosen.type).lower())
    if len(channels) != chosen.n_ch:
        channels = [f"Ch_{i}" for i in range(chosen.n_ch)]
        units = [""] * chosen.n_ch
        types = [chosen.type.lower()] * chosen.n_ch
    eeg = chosen.type.upper() in ("EEG", "EXG")
    units = [normalise_unit(u) if u else ("µV" if eeg else "") for u in units]
    placed: list[tuple[float, float, str]] = []
    t0 = stamps[0] if len(stamps) else 0.0
    for s in streams.values():
        if s.fmt != "string" or not s.n:
            continue
        mstamps = synchronize(s.timestamps(), s.clock_times, s.clock_values)
        rows = np.searchsorted(stamps, mstamps, side="left")
        for row, stamp, values in zip(rows, mstamps, s.values, strict=True):
            placed.append((int(row), float(stamp - t0), values[0] if values else ""))
    return Recording(
        data=data,
        fs=float(fs),
        channels=channels,
        units=units,
        markers=keep_markers_in_data(placed, len(data), path),
        amp=(chosen.info.findtext("./desc/acquisition/model", "")
             or chosen.info.findtext("name", "")),
        path=path,
        format="xdf",
        timestamps=stamps,
        meas_date=_file_date(file_header),
        types=types,
        effective_fs=effective,
    )
