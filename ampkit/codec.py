"""What a codec yields: the sans-I/O interface between a protocol and the streaming layer.

A codec (the h11 style: bytes in, events out, no I/O) turns a device's bytes
into three kinds of events:

* :class:`Chunk` -- samples, in the driver's units, with the samples the
  device's own counters say were lost before them and their markers;
* :class:`Started` -- the stream starts (again) with a :class:`Layout`;
* :class:`Stopped` -- the device ended the stream on purpose.

:class:`Codec` is the interface the streaming layer (:mod:`ampkit.streaming`)
reads through; each protocol driver writes one around its protocol's parser
(:mod:`ampkit.protocols`), so the parser itself knows nothing of ampkit's
drivers and can be shared with a simulator and fuzzed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ampkit.errors import AmpkitError

__all__ = ["Layout", "Chunk", "Started", "Stopped", "Event", "Codec"]



@dataclass(frozen=True)
class Layout:
    """What a stream carries: channel names, rate, and (optionally) the
    value of one unit of each channel. A stream that starts again with
    another layout cannot go on (a :class:`~ampkit.errors.ProtocolError`)."""

    channels: tuple[str, ...]
    fs: float
    resolutions: tuple[float, ...] | None = None


@dataclass(slots=True)
class Chunk:
    """Samples decoded from the stream.

    Attributes
    ----------
    data : ndarray
        ``(samples, channels)`` in the driver's units; handed to the caller
        as it is (no copy).
    lost : int or None
        Samples the device's counters say were lost before this chunk;
        None when its counter restarted (the layer estimates from the time).
    markers : list of (int, str)
        ``(row, text)``; a row past the chunk goes on its last sample.
    counter : int or None
        The device's number of the chunk (named in warnings).
    """

    data: np.ndarray
    lost: int | None = 0
    markers: list[tuple[int, str]] = field(default_factory=list)
    counter: int | None = None


@dataclass(frozen=True)
class Started:
    """The stream starts (or starts again) with ``layout``."""

    layout: Layout


@dataclass(frozen=True)
class Stopped:
    """The device ended the stream on purpose; ``reason`` says how."""

    reason: str


#: One result of :meth:`Codec.feed`; an :class:`~ampkit.errors.AmpkitError`
#: may come last (the bytes after the events broke the stream).
Event = Chunk | Started | Stopped | AmpkitError


class Codec(Protocol):
    """Bytes in, events out: the part of a driver that knows its protocol.

    ``feed`` takes bytes in pieces of any size and returns the events they
    complete; it raises :class:`~ampkit.errors.ProtocolError` for bytes that
    break the protocol. ``missing`` and ``read_ahead`` let the reader size
    its buffers: it feeds at least ``missing`` bytes and at most ``missing +
    read_ahead`` at a time, so a codec that frames messages by length gets
    each message whole and may return views of the buffer it was fed.
    """

    @property
    def missing(self) -> int:
        """Bytes still to come before the next event can be complete (>= 1)."""

    @property
    def read_ahead(self) -> int:
        """Bytes past ``missing`` a read may take in the same buffer."""

    def feed(self, data: memoryview) -> Sequence[Event]:
        """Return the events the bytes complete, in stream order."""
