"""Dareplane's two wire formats, without the sockets: module commands and JSON log records.

**Commands** (what a Dareplane control room sends to a module built on
dareplane-utils' ``DefaultServer``). A TCP byte stream of commands separated
by ``;``; empty segments are ignored and surrounding white space
(``\\r\\n`` of telnet) is dropped. A command is ``PCOMM`` or
``PCOMM|{json object}``, the object's keys being the command's keyword
arguments. :class:`CommandFramer` splits the stream (bounding a command's
size), :func:`parse_command` turns one segment into a :class:`Command` or
raises :class:`~ampkit.errors.ProtocolError` for what ``DefaultServer`` logs
and ignores: more than one ``|``, a payload that is not JSON or not an object.

**Log records** (what dareplane-utils' ``UJsonSocketHandler`` sends to the
log server, port 9020 by default): each record is a 4-byte big-endian length
followed by that many bytes of a JSON object, the ``LogRecord``'s attribute
dictionary. :func:`encode_log_record` frames one, :class:`LogRecordDecoder`
takes bytes in any chunks and returns the objects.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from ampkit.errors import ProtocolError

__all__ = [
    "DELIMITER",
    "MAX_COMMAND_BYTES",
    "MAX_LOG_RECORD_BYTES",
    "Command",
    "CommandFramer",
    "parse_command",
    "encode_log_record",
    "LogRecordDecoder",
]

#: Separator of commands on the wire (dareplane-utils' ``DefaultServer.delimiter``).
DELIMITER = b";"
#: Default bound of one command, payload included.
MAX_COMMAND_BYTES = 64 * 1024
#: Default bound of one log record's JSON.
MAX_LOG_RECORD_BYTES = 1024 * 1024

_LENGTH = struct.Struct(">L")


@dataclass(frozen=True)
class Command:
    """One parsed command.

    Attributes
    ----------
    name : str
        The primary command (``PCOMM``), e.g. ``'START'``.
    kwargs : dict
        Keyword arguments from the JSON payload (empty without one).
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class CommandFramer:
    """Split one connection's bytes into command segments at ``;``.

    Parameters
    ----------
    max_bytes : int
        Longest command accepted. A longer one is dropped as soon as it
        exceeds the bound (its bytes are not kept) up to the next ``;``.

    Examples
    --------
    >>> framer = CommandFramer()
    >>> framer.feed(b"UP;STA") + framer.feed(b"TUS;")
    [(b'UP', None), (b'STATUS', None)]
    """

    def __init__(self, max_bytes: int = MAX_COMMAND_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._buffer = bytearray()
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes of an unfinished command held (0 while one is being dropped)."""
        return len(self._buffer)

    @property
    def skipping(self) -> bool:
        """Whether an oversize command is being dropped up to its ``;``."""
        return self._skipping

    def feed(self, data: bytes) -> list[tuple[bytes | None, str | None]]:
        """Take the next bytes of the stream.

        Returns
        -------
        list of (segment, problem)
            For each finished non-empty command its bytes (white space
            stripped) and None, or None and why it was dropped.
        """
        out: list[tuple[bytes | None, str | None]] = []
        start = 0
        while True:
            end = data.find(DELIMITER, start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._skipping:
                if len(self._buffer) + len(piece) > self.max_bytes:
                    self._skipping = True
                    self._buffer.clear()
                    out.append((None, f"command longer than {self.max_bytes} bytes; dropped"))
                else:
                    self._buffer += piece
            if end < 0:
                return out
            if not self._skipping:
                segment = bytes(self._buffer).strip()
                if segment:
                    out.append((segment, None))
            self._buffer.clear()
            self._skipping = False
            start = end + 1


def parse_command(segment: bytes) -> Command:
    """Parse one command segment (as :meth:`CommandFramer.feed` returns it).

    Parameters
    ----------
    segment : bytes
        ``PCOMM`` or ``PCOMM|{json object}``; a trailing ``|`` alone counts
        as no payload.

    Returns
    -------
    Command

    Raises
    ------
    ampkit.errors.ProtocolError
        Not UTF-8, more than one ``|``, an empty or spaced command name, a
        payload that is not JSON, or JSON that is not an object.
    """
    try:
        text = segment.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    parts = text.split("|")
    if len(parts) > 2:
        raise ProtocolError(
            f"more than one '|' in {_cut(text)!r}: expected PCOMM or PCOMM|{{json object}}"
        )
    name = parts[0].strip()
    if not name or any(c.isspace() for c in name) or not name.isprintable():
        raise ProtocolError(f"no command name in {_cut(text)!r}")
    payload = parts[1].strip() if len(parts) == 2 else ""
    if not payload:
        return Command(name)
    try:
        kwargs = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(f"payload of {name} is not JSON ({exc}): {_cut(payload)!r}") from None
    if not isinstance(kwargs, dict):
        raise ProtocolError(
            f"payload of {name} is JSON but not an object of keyword arguments: "
            f"{_cut(payload)!r}"
        )
    return Command(name, kwargs)


def _cut(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."


def encode_log_record(fields: dict[str, Any]) -> bytes:
    """Frame a log record's attribute dictionary for a Dareplane log server.

    Parameters
    ----------
    fields : dict
        The record's attributes; values JSON cannot hold are sent as text.

    Returns
    -------
    bytes
        4-byte big-endian length, then the JSON.
    """
    body = json.dumps(fields, default=str).encode("utf-8")
    return _LENGTH.pack(len(body)) + body


class LogRecordDecoder:
    """Turn a log stream's bytes, in any chunks, into record dictionaries.

    Parameters
    ----------
    max_bytes : int
        Largest record accepted; a larger length prefix raises
        :class:`~ampkit.errors.ProtocolError` (the stream cannot be followed
        further: the caller closes the connection).
    """

    def __init__(self, max_bytes: int = MAX_LOG_RECORD_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._buffer = bytearray()
        self._offset = 0  # bytes of the stream consumed before the buffer

    @property
    def pending(self) -> int:
        """Bytes of an unfinished record held."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[dict[str, Any] | None, str | None]]:
        """Take the next bytes.

        Returns
        -------
        list of (fields, problem)
            Per complete record its dictionary and None, or None and why it
            was dropped (not JSON, not an object); the stream goes on after it.

        Raises
        ------
        ampkit.errors.ProtocolError
            A length prefix over ``max_bytes``.
        """
        self._buffer += data
        out: list[tuple[dict[str, Any] | None, str | None]] = []
        pos = 0
        buffer = self._buffer
        while len(buffer) - pos >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer, pos)
            if size > self.max_bytes:
                raise ProtocolError(
                    f"log record of {size} bytes announced; the limit is {self.max_bytes}",
                    self._offset + pos,
                )
            if len(buffer) - pos - _LENGTH.size < size:
                break
            body = bytes(buffer[pos + _LENGTH.size : pos + _LENGTH.size + size])
            pos += _LENGTH.size + size
            try:
                fields = json.loads(body)
            except (ValueError, RecursionError) as exc:
                out.append((None, f"log record is not JSON ({exc}); dropped"))
                continue
            if not isinstance(fields, dict):
                out.append((None, f"log record is JSON but not an object: {_cut(repr(fields))}"))
                continue
            out.append((fields, None))
        del buffer[:pos]
        self._offset += pos
        return out
