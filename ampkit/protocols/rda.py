"""BrainVision Remote Data Access (RDA): messages, parser and encoders.

RDA is the TCP protocol through which BrainVision Recorder (and other RDA
servers) stream what they record: port 51244 carries float32 samples, port
51234 int16 samples. This module is the protocol without the socket (the
sans-I/O style of h11): :class:`RDAParser` takes bytes in arbitrary chunks and
returns message objects; the ``encode_*`` functions build the bytes of every
message (the simulator :mod:`ampkit.sim.rda` speaks through them).

Wire format (little-endian, packed). Every message starts with a 24-byte
header: the 16-byte GUID ``{4358458E-C996-4C86-AF4A-98BBF6C91450}`` in
Windows byte order, ``uint32 nSize`` (the whole message, header included) and
``uint32 nType``:

============  =============================================================
nType         body
============  =============================================================
1 start       ``uint32 nChannels, double dSamplingInterval`` (µs),
              ``double dResolutions[nChannels]`` (µV per unit), then
              ``nChannels`` zero-terminated channel names
2 data int16  ``uint32 nBlock, nPoints, nMarkers``, ``int16
              data[nPoints][nChannels]``, then ``nMarkers`` markers
3 stop        (empty)
4 data float  as 2, with ``float32`` samples
other         skipped by ``nSize`` (state, impedance, info, keep-alive...)
============  =============================================================

Each marker is ``uint32 nSize, nPosition, nPoints, int32 nChannel`` followed
by two zero-terminated strings, type and description (``Stimulus``,
``S  1``); markers are walked by their own ``nSize``.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ampkit.errors import ConfigurationError, ProtocolError

__all__ = [
    "GUID",
    "HEADER_SIZE",
    "MAX_MESSAGE_SIZE",
    "MIN_INTERVAL",
    "MAX_INTERVAL",
    "TYPE_START",
    "TYPE_DATA_INT16",
    "TYPE_STOP",
    "TYPE_DATA_FLOAT32",
    "PORT_FLOAT32",
    "PORT_INT16",
    "RDAMarker",
    "StartMessage",
    "DataMessage",
    "StopMessage",
    "UnknownMessage",
    "Message",
    "RDAParser",
    "encode",
    "encode_start",
    "encode_data",
    "encode_stop",
    "encode_message",
    "encode_marker",
]

#: The GUID every RDA message starts with, in Windows (little-endian) byte order.
GUID = uuid.UUID("4358458E-C996-4C86-AF4A-98BBF6C91450").bytes_le
#: Size of the message header: GUID, nSize, nType.
HEADER_SIZE = 24
#: Largest message the parser accepts (64 MiB: a second of 1024 channels at
#: 16 kHz in float32), so a corrupt nSize cannot make it wait for, or
#: allocate, gigabytes.
MAX_MESSAGE_SIZE = 1 << 26

#: Shortest sampling interval accepted (µs): 10 MHz. Shorter ones (down to
#: the 5e-324 of a corrupt or hostile server) would make the rate infinite.
MIN_INTERVAL = 0.1
#: Longest sampling interval accepted (µs): one sample a day.
MAX_INTERVAL = 86400e6

TYPE_START = 1
TYPE_DATA_INT16 = 2
TYPE_STOP = 3
TYPE_DATA_FLOAT32 = 4

#: Recorder's port for float32 data.
PORT_FLOAT32 = 51244
#: Recorder's port for int16 data.
PORT_INT16 = 51234

_HEADER = struct.Struct("<16sII")
_START = struct.Struct("<Id")
_DATA = struct.Struct("<III")
_MARKER = struct.Struct("<IIIi")
_DTYPES = {TYPE_DATA_INT16: np.dtype("<i2"), TYPE_DATA_FLOAT32: np.dtype("<f4")}


def _decode_text(raw: bytes) -> str:
    # Recorder writes names in the Windows code page; UTF-8 first (what the
    # encoder writes), Latin-1 as the fallback that never fails.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _encode_text(text: str, what: str) -> bytes:
    raw = str(text).encode("utf-8")
    if b"\0" in raw:
        raise ConfigurationError(f"{what} {text!r} contains a NUL character")
    return raw + b"\0"


class RDAMarker(NamedTuple):
    """One marker of a data message.

    A named tuple: data messages can carry hundreds of thousands of markers,
    and a tuple is made several times faster than a frozen dataclass.

    Attributes
    ----------
    position : int
        Sample of the block the marker is at (0 is the block's first sample).
    type : str
        Marker type, e.g. ``'Stimulus'``.
    description : str
        Marker description, e.g. ``'S  1'``.
    points : int
        Duration in samples (RDA's 0 is read as 1).
    channel : int
        Channel the marker belongs to, -1 for all channels.
    """

    position: int
    type: str
    description: str
    points: int = 1
    channel: int = -1

    @property
    def text(self) -> str:
        """``'<type>/<description>'``, MNE's convention (``'Stimulus/S  1'``)."""
        return f"{self.type}/{self.description}"


@dataclass
class StartMessage:
    """Start of acquisition (nType 1): the stream's layout.

    Attributes
    ----------
    channels : list of str
        Channel names.
    sampling_interval : float
        Microseconds between samples.
    resolutions : ndarray of float64
        µV per unit of each channel.
    """

    channels: list[str]
    sampling_interval: float
    resolutions: np.ndarray

    @property
    def fs(self) -> float:
        """Sampling frequency in Hz."""
        return 1e6 / self.sampling_interval

    def same_layout(self, other: StartMessage) -> bool:
        """Whether ``other`` describes the same channels, rate and resolutions."""
        return (
            self.channels == other.channels
            and self.sampling_interval == other.sampling_interval
            and np.array_equal(self.resolutions, other.resolutions)
        )


@dataclass
class DataMessage:
    """A block of samples (nType 2 for int16, 4 for float32).

    Attributes
    ----------
    block : int
        The server's block counter (nBlock).
    data : ndarray
        Raw samples, shape ``(points, channels)``, int16 or float32, not yet
        scaled by the resolutions.
    markers : list of RDAMarker
    """

    block: int
    data: np.ndarray
    markers: list[RDAMarker] = field(default_factory=list)

    @property
    def points(self) -> int:
        """Number of samples in the block."""
        return int(self.data.shape[0])


@dataclass
class StopMessage:
    """End of acquisition (nType 3)."""


@dataclass
class UnknownMessage:
    """A message of a type this codec does not interpret (state, keep-alive...).

    Attributes
    ----------
    type : int
        nType.
    payload : bytes
        The body after the 24-byte header.
    """

    type: int
    payload: bytes = b""


Message = StartMessage | DataMessage | StopMessage | UnknownMessage


class RDAParser:
    """Incremental parser of an RDA byte stream.

    Feed it bytes as they arrive, in chunks of any size; it returns every
    message completed by each chunk. Data messages are read with the layout
    of the last start message. A parser that raised :class:`ProtocolError`
    stays broken (the stream has lost its framing): every later call raises
    the same error; make a new parser for a new connection. When one chunk
    completes some messages and then breaks the protocol, :meth:`feed`
    returns those messages and keeps the error in :attr:`error` for the next
    call, so no valid message is lost to a later fault.

    A message body that comes whole in one chunk is parsed where it lies:
    the samples of a data message are then a view of the chunk (writable if
    the chunk is), not a copy, so a reader that gives each message a buffer
    of its own (see :attr:`missing` and :attr:`read_ahead`) copies nothing.
    A body split over several chunks is gathered into memory of its own.

    Parameters
    ----------
    max_message_size : int
        Messages announcing a larger ``nSize`` are refused.
    source : str, optional
        The peer (e.g. ``'RDA 10.0.0.5:51244'``), named at the start of every
        error message.

    Attributes
    ----------
    start : StartMessage or None
        The layout in force (None before the first start and after a stop).
    offset : int
        Stream offset of the message being received (bytes of the stream in
        complete messages so far).

    Examples
    --------
    >>> parser = RDAParser()
    >>> raw = encode_start(["Fz", "Cz"], 1000.0, [0.1, 0.1]) + encode_stop()
    >>> [type(m).__name__ for m in parser.feed(raw[:30]) + parser.feed(raw[30:])]
    ['StartMessage', 'StopMessage']
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE, source: str = "") -> None:
        self.max_message_size = int(max_message_size)
        self.source = source
        self.start: StartMessage | None = None
        self.offset = 0
        self._head = bytearray()  # the header being received
        self._size = -1  # body size of the message being received; -1: in its header
        self._type = 0
        self._body: np.ndarray | None = None  # a body gathered from several chunks
        self._body_fill = 0
        self._error: ProtocolError | None = None

    @property
    def error(self) -> ProtocolError | None:
        """The error that broke the stream, or None."""
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes received of the message not yet complete."""
        return len(self._head) + self._body_fill

    @property
    def missing(self) -> int:
        """Bytes still to come before the message being received is complete
        (before its header is, while the header is incomplete); 1 once broken."""
        if self._size < 0:
            return max(1, HEADER_SIZE - len(self._head))
        return max(1, self._size - self._body_fill)

    @property
    def read_ahead(self) -> int:
        """Bytes past :attr:`missing` that may come in the same chunk without
        splitting a message body: the next header, once a body is awaited."""
        return 0 if self._size < 0 else HEADER_SIZE

    def feed(self, data: bytes | bytearray | memoryview | np.ndarray) -> list[Message]:
        """Add bytes; return the messages they complete, in stream order.

        Raises
        ------
        ampkit.errors.ProtocolError
            The bytes break the protocol; the exception's ``offset`` is the
            stream offset of the offending message (or marker).
        """
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B")
        end = len(view)
        i = 0
        messages: list[Message] = []
        try:
            while i < end or self._size == 0:
                if self._size < 0:
                    take = min(HEADER_SIZE - len(self._head), end - i)
                    self._head += view[i : i + take]
                    i += take
                    self._check_head()
                    if len(self._head) == HEADER_SIZE:
                        self._start_body()
                    continue
                take = min(self._size - self._body_fill, end - i)
                if self._body is None and take == self._size:
                    body = view[i : i + take]  # whole here: parsed where it lies
                else:
                    if self._body is None:
                        self._body = np.empty(self._size, np.uint8)
                    self._body[self._body_fill : self._body_fill + take] = view[i : i + take]
                    self._body_fill += take
                    body = self._body
                i += take
                if self._body_fill in (0, self._size):
                    messages.append(self._finish(body))
        except ProtocolError as exc:
            self._keep(exc, messages)
        return messages  # an error after messages waits for the next call

    def _keep(self, exc: ProtocolError, messages: list[Message]) -> None:
        """Break the stream with ``exc``; raise it now unless messages came
        before it in the same call (then the next call raises it)."""
        if self.source:
            exc = ProtocolError(f"{self.source}: {exc.reason}", exc.offset)
        self._error = exc
        if not messages:
            raise exc

    def _check_head(self) -> None:
        # Fail fast on a wrong GUID rather than wait for a whole header.
        n = min(len(self._head), 16)
        if self._head[:n] != GUID[:n]:
            raise ProtocolError(f"bad RDA GUID (starts {bytes(self._head[:n]).hex()})", self.offset)

    def _start_body(self) -> None:
        _, size, mtype = _HEADER.unpack(self._head)
        if size < HEADER_SIZE:
            raise ProtocolError(f"nSize {size} is smaller than the 24-byte header", self.offset)
        if size > self.max_message_size:
            raise ProtocolError(
                f"nSize {size} is over the limit of {self.max_message_size} bytes", self.offset
            )
        self._type = mtype
        self._size = size - HEADER_SIZE

    def _finish(self, body: memoryview | np.ndarray) -> Message:
        where, size = self.offset, self._size
        self.offset += HEADER_SIZE + size
        self._head.clear()
        self._size, self._body, self._body_fill = -1, None, 0
        return self._parse(self._type, body, where)

    def _parse(self, mtype: int, body: memoryview | np.ndarray, where: int) -> Message:
        if mtype == TYPE_START:
            self.start = _parse_start(memoryview(body), where)
            return self.start
        if mtype in _DTYPES:
            if self.start is None:
                raise ProtocolError("data message before any start message", where)
            return _parse_data(body, _DTYPES[mtype], self.start, where)
        if mtype == TYPE_STOP:
            self.start = None
            return StopMessage()
        return UnknownMessage(mtype, bytes(body))


def _parse_start(body: memoryview, where: int) -> StartMessage:
    if len(body) < _START.size:
        raise ProtocolError(f"start message truncated: {len(body)} body bytes", where)
    n, interval = _START.unpack_from(body, 0)
    if n == 0:
        raise ProtocolError("start message with 0 channels", where)
    # Each channel needs 8 bytes of resolution and at least a 1-byte name.
    if _START.size + 9 * n > len(body):
        raise ProtocolError(
            f"start message announces {n} channels but has only {len(body)} body bytes", where
        )
    if not (MIN_INTERVAL <= interval <= MAX_INTERVAL):  # also refuses nan and inf
        raise ProtocolError(
            f"start message: sampling interval {interval!r} µs is outside "
            f"{MIN_INTERVAL:g}..{MAX_INTERVAL:g} µs ({1e6 / MAX_INTERVAL:g} Hz to "
            f"{1e6 / MIN_INTERVAL:g} Hz)",
            where,
        )
    resolutions = np.frombuffer(body, "<f8", n, _START.size).astype(np.float64)
    if not np.all(np.isfinite(resolutions)):
        raise ProtocolError("start message: resolution that is not a finite number", where)
    names_raw = bytes(body[_START.size + 8 * n :])
    parts = names_raw.split(b"\0")
    if len(parts) <= n:
        raise ProtocolError(
            f"start message: {n} channels but only {len(parts) - 1} zero-terminated names", where
        )
    channels = [_decode_text(p) for p in parts[:n]]
    return StartMessage(channels, float(interval), resolutions)


def _parse_data(
    body: memoryview | np.ndarray, dtype: np.dtype, start: StartMessage, where: int
) -> DataMessage:
    if len(body) < _DATA.size:
        raise ProtocolError(f"data message truncated: {len(body)} body bytes", where)
    block, points, n_markers = _DATA.unpack_from(body, 0)
    n_channels = len(start.channels)
    nbytes = points * n_channels * dtype.itemsize
    room = len(body) - _DATA.size
    if nbytes > room:
        raise ProtocolError(
            f"data block {block}: {points} points x {n_channels} channels need {nbytes} bytes "
            f"but the message holds {room}: it does not match the start message",
            where,
        )
    # A view of the body: no copy.
    data = np.frombuffer(body, dtype, points * n_channels, _DATA.size).reshape(points, n_channels)
    if not dtype.isnative:
        data = data.astype(dtype.newbyteorder("="))
    pos = _DATA.size + nbytes
    left = len(body) - pos
    if n_markers * _MARKER.size > left:
        raise ProtocolError(
            f"data block {block}: {n_markers} markers do not fit in the {left} bytes "
            "after the samples",
            where,
        )
    markers, pos = _parse_markers(body, pos, n_markers, block, where)
    if pos != len(body):
        raise ProtocolError(
            f"data block {block}: {len(body) - pos} bytes left after the samples and markers: "
            f"the block does not match the start message's {n_channels} channels",
            where,
        )
    return DataMessage(block, data, markers)


_new_marker = tuple.__new__


def _marker_texts(strings: bytes) -> tuple[str, str]:
    """Type and description from a marker's zero-terminated strings."""
    parts = strings.split(b"\0", 2)
    return _decode_text(parts[0]), _decode_text(parts[1]) if len(parts) > 1 else ""


def _parse_markers(
    body: memoryview | np.ndarray, pos: int, n_markers: int, block: int, where: int
) -> tuple[list[RDAMarker], int]:
    """The ``n_markers`` markers from byte ``pos`` of a data message body,
    and the position after them.

    One pass over one copy of the marker bytes, a few operations per marker:
    a message can hold a million of them (its size bounds their number, 16
    bytes each at least).
    """
    if not n_markers:
        return [], pos
    raw = body[pos:].tobytes()
    end = len(raw)
    unpack = _MARKER.unpack_from
    markers: list[RDAMarker] = []
    append = markers.append
    texts: dict[bytes, tuple[str, str]] = {}  # the same few texts, again and again
    p = 0
    for _ in range(n_markers):
        left = end - p
        if left < _MARKER.size:
            raise ProtocolError(
                f"data block {block}: marker truncated", where + HEADER_SIZE + pos + p
            )
        size, position, points, channel = unpack(raw, p)
        if size < _MARKER.size or size > left:
            raise ProtocolError(
                f"data block {block}: marker nSize {size} outside 16..{left}",
                where + HEADER_SIZE + pos + p,
            )
        strings = raw[p + _MARKER.size : p + size]
        pair = texts.get(strings)
        if pair is None:
            pair = texts[strings] = _marker_texts(strings)
        append(_new_marker(RDAMarker, (position, *pair, points or 1, channel)))
        p += size
    return markers, pos + p


# -- encoders -----------------------------------------------------------


def encode_message(mtype: int, payload: bytes = b"") -> bytes:
    """Return a whole message of type ``mtype`` with the given body.

    Examples
    --------
    >>> len(encode_message(10000))   # a keep-alive: header only
    24
    """
    return _HEADER.pack(GUID, HEADER_SIZE + len(payload), mtype) + bytes(payload)


def encode_start(
    channels: Sequence[str], sampling_interval: float, resolutions: Iterable[float]
) -> bytes:
    """Return a start message.

    Parameters
    ----------
    channels : sequence of str
        Channel names (no NUL characters).
    sampling_interval : float
        Microseconds between samples (``1e6 / fs``).
    resolutions : iterable of float
        µV per unit, one per channel.
    """
    res = np.asarray(list(resolutions), dtype="<f8")
    if len(res) != len(channels):
        raise ConfigurationError(
            f"{len(channels)} channels but {len(res)} resolutions"
        )
    names = b"".join(_encode_text(c, "channel name") for c in channels)
    body = _START.pack(len(channels), float(sampling_interval)) + res.tobytes() + names
    return encode_message(TYPE_START, body)


def encode_marker(marker: RDAMarker) -> bytes:
    """Return the bytes of one marker (as found inside a data message)."""
    text = _encode_text(marker.type, "marker type") + _encode_text(
        marker.description, "marker description"
    )
    return _MARKER.pack(
        _MARKER.size + len(text), marker.position, marker.points, marker.channel
    ) + text


def encode_data(block: int, data: np.ndarray, markers: Iterable[RDAMarker] = ()) -> bytes:
    """Return a data message.

    Parameters
    ----------
    block : int
        nBlock, the server's block counter.
    data : ndarray
        Raw samples, shape ``(points, channels)``, int16 or float32; the
        dtype selects the message type (2 or 4).
    markers : iterable of RDAMarker
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise ConfigurationError(f"data must be 2-D (points, channels), got shape {data.shape}")
    if data.dtype == np.int16:
        mtype, wire = TYPE_DATA_INT16, "<i2"
    elif data.dtype == np.float32:
        mtype, wire = TYPE_DATA_FLOAT32, "<f4"
    else:
        raise ConfigurationError(f"RDA data is int16 or float32, got {data.dtype}")
    markers = list(markers)
    marks = b"".join(encode_marker(m) for m in markers)
    samples = np.ascontiguousarray(data, dtype=wire).tobytes()
    head = _HEADER.pack(
        GUID, HEADER_SIZE + _DATA.size + len(samples) + len(marks), mtype
    ) + _DATA.pack(block, data.shape[0], len(markers))
    return b"".join((head, samples, marks))


def encode_stop() -> bytes:
    """Return a stop message."""
    return encode_message(TYPE_STOP)


def encode(message: Message) -> bytes:
    """Return the bytes of any message object (the inverse of the parser)."""
    if isinstance(message, StartMessage):
        return encode_start(message.channels, message.sampling_interval, message.resolutions)
    if isinstance(message, DataMessage):
        return encode_data(message.block, message.data, message.markers)
    if isinstance(message, StopMessage):
        return encode_stop()
    if isinstance(message, UnknownMessage):
        return encode_message(message.type, message.payload)
    raise ConfigurationError(f"not an RDA message: {message!r}")
