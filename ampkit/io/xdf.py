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
* StreamFooter chunks (tag 6) at close.

Each batch goes to the operating system in one unbuffered write, so a killed
recording ends at a chunk boundary (or inside the last chunk, which pyxdf
and :func:`read_xdf` skip), and reads without footers.
"""

from __future__ import annotations

import os
import socket
import struct
import uuid
from pathlib import Path
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

import numpy as np

from ampkit.clock import local_clock
from ampkit.errors import RecordingError
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

__all__ = ["XDFWriter", "read_xdf", "BOUNDARY"]

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
                footer = _xml("info", {
                    "first_timestamp": repr(self._first.get(sid, 0.0)),
                    "last_timestamp": repr(self._last.get(sid, 0.0)),
                    "sample_count": self._count[sid],
                }, f"<clock_offsets>{offsets}</clock_offsets>")
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

_FORMATS = {"float32": "<f4", "double64": "<f8", "int8": "i1", "int16": "<i2",
            "int32": "<i4", "int64": "<i8"}


def _read_varlen(buf: bytes, pos: int) -> tuple[int, int]:
    width = buf[pos]
    if width == 1:
        return buf[pos + 1], pos + 2
    if width == 4:
        return struct.unpack_from("<I", buf, pos + 1)[0], pos + 5
    if width == 8:
        return struct.unpack_from("<Q", buf, pos + 1)[0], pos + 9
    raise ValueError(f"bad variable-length integer width {width}")


class _Stream:
    def __init__(self, info: ET.Element) -> None:
        self.info = info
        self.n_ch = int(info.findtext("channel_count", "0"))
        self.srate = float(info.findtext("nominal_srate", "0"))
        self.fmt = info.findtext("channel_format", "float32")
        self.stamps: list[np.ndarray] = []
        self.values: list = []
        self.last = 0.0

    def _stamp(self, buf: bytes, pos: int) -> int:
        """Read one sample's optional timestamp at ``pos`` into ``self.last``
        (deduced from the rate when absent); return the position after it."""
        has, pos = buf[pos], pos + 1
        if has:
            self.last = struct.unpack_from("<d", buf, pos)[0]
            pos += 8
        elif self.srate > 0:
            self.last += 1.0 / self.srate
        return pos

    def samples(self, buf: bytes) -> None:
        n, pos = _read_varlen(buf, 4)
        if n > len(buf):  # each sample takes at least one byte
            raise ValueError(f"{n} samples in a chunk of {len(buf)} bytes")
        if self.fmt not in _FORMATS and self.fmt != "string":
            raise ValueError(f"unknown channel_format {self.fmt!r}")
        if self.fmt == "string":
            stamps, texts = [], []
            for _ in range(n):
                pos = self._stamp(buf, pos)
                stamps.append(self.last)
                row = []
                for _ in range(self.n_ch):
                    size, pos = _read_varlen(buf, pos)
                    row.append(buf[pos : pos + size].decode("utf-8", errors="replace"))
                    pos += size
                texts.append(row)
            if pos > len(buf):
                raise ValueError("cut samples chunk")
            self.stamps.append(np.array(stamps))
            self.values.extend(texts)
            return
        dtype = np.dtype(_FORMATS[self.fmt])
        if n * (1 + self.n_ch * dtype.itemsize) > len(buf):
            raise ValueError(f"{n} samples of {self.n_ch} channels do not fit the chunk")
        full = np.dtype([("n", "u1"), ("t", "<f8"), ("v", dtype, (self.n_ch,))])
        if len(buf) - pos == n * full.itemsize:
            rows = np.frombuffer(buf, full, n, pos)
            if np.all(rows["n"] == 8):
                self.stamps.append(rows["t"].copy())
                self.values.append(rows["v"].copy())
                self.last = float(rows["t"][-1]) if n else self.last
                return
        stamps = np.empty(n)
        values = np.empty((n, self.n_ch), dtype)
        for k in range(n):
            pos = self._stamp(buf, pos)
            stamps[k] = self.last
            values[k] = np.frombuffer(buf, dtype, self.n_ch, pos)
            pos += self.n_ch * dtype.itemsize
        self.stamps.append(stamps)
        self.values.append(values)


def read_xdf(path: os.PathLike | str):
    """Read an XDF file: its first numeric stream and its string streams' markers.

    Parameters
    ----------
    path : str or path

    Returns
    -------
    ampkit.io.Recording
        ``timestamps`` are the data stream's own (LSL clock); each marker is
        placed at the first sample whose timestamp is at or after it, and its
        ``time_s`` is seconds since the first sample.

    Raises
    ------
    ampkit.errors.RecordingError
        Not an XDF file, or no numeric stream in it.
    """
    from ampkit.io import Recording

    path = Path(path)
    raw = path.read_bytes()
    if raw[:4] != b"XDF:":
        raise RecordingError(f"{path}: not an XDF file")
    streams: dict[int, _Stream] = {}
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
            if tag == 2:
                sid = struct.unpack_from("<I", content)[0]
                streams[sid] = _Stream(ET.fromstring(content[4:]))
            elif tag == 3:
                sid = struct.unpack_from("<I", content)[0]
                if sid in streams:
                    streams[sid].samples(content)
        except (ValueError, IndexError, struct.error, ET.ParseError, KeyError) as exc:
            raise RecordingError(f"{path}: damaged chunk at byte {pos}: {exc}") from None
        pos = end
    data_streams = [s for s in streams.values() if s.fmt != "string"]
    if not data_streams:
        raise RecordingError(f"{path}: no numeric stream")
    ds = data_streams[0]
    channels, units = [], []
    for ch in ds.info.findall("./desc/channels/channel"):
        channels.append(ch.findtext("label", ""))
        units.append(ch.findtext("unit", "") or "µV")
    if len(channels) != ds.n_ch:
        channels = [f"Ch_{i}" for i in range(ds.n_ch)]
        units = ["µV"] * ds.n_ch
    if ds.values:
        data = np.concatenate(ds.values).astype(np.float32, copy=False)
        stamps = np.concatenate(ds.stamps)
    else:
        data, stamps = np.zeros((0, ds.n_ch), np.float32), np.zeros(0)
    fs = ds.srate
    if not fs > 0 and len(stamps) > 1:
        fs = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    markers: list[tuple[int, float, str]] = []
    t0 = stamps[0] if len(stamps) else 0.0
    for s in streams.values():
        if s.fmt != "string" or not s.stamps:
            continue
        mstamps = np.concatenate(s.stamps)
        rows = np.searchsorted(stamps, mstamps, side="left")
        rows = np.clip(rows, 0, max(len(stamps) - 1, 0))
        for row, stamp, values in zip(rows, mstamps, s.values, strict=True):
            markers.append((int(row), float(stamp - t0), values[0] if values else ""))
    markers.sort(key=lambda m: (m[0], m[1]))
    return Recording(
        data=data,
        fs=fs,
        channels=channels,
        units=units,
        markers=markers,
        amp=ds.info.findtext("./desc/acquisition/model", "") or ds.info.findtext("name", ""),
        path=path,
        format="xdf",
        timestamps=stamps,
    )
