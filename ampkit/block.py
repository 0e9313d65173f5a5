"""What flows out of a decorated amp, and what consumes it.

A leaf module: :class:`Block` (one read from an
:class:`~ampkit.decorator.AmpDecorator`), the texts of the markers ampkit sets
itself (:data:`GAP_MARKER`, :data:`DROPPED_MARKER`) and the :class:`Service`
protocol. Drivers, services, the recorder and the buffers import these from
here, so none of them needs the decorator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = ["Block", "Marker", "Service", "GAP_MARKER", "DROPPED_MARKER"]

#: A driver marker: ``(milliseconds relative to the block's first sample, text)``.
Marker = tuple[float, str]

#: Text of the marker set at the first sample after a detected gap;
#: ``{n}`` is the estimated number of lost samples.
GAP_MARKER = "ampkit/gap {n}"
#: Text of the marker set when markers were lost (the queue of markers
#: waiting for ``get_data()`` was full, or the kernel dropped marker
#: datagrams); ``{n}`` is how many since the last such marker.
DROPPED_MARKER = "ampkit/markers-dropped {n}"


@dataclass
class Block:
    """One read from a decorated amplifier.

    Attributes
    ----------
    data : ndarray of float32, shape (n_samples, n_channels)
        The samples, oldest first.
    timestamps : ndarray of float64, shape (n_samples,)
        When each sample was taken, seconds on :func:`ampkit.clock.local_clock`.
    markers : list of (float, str)
        ``(time_s, text)`` with absolute times on the same clock, sorted.
    index : int
        Number of samples delivered before this block since ``start()``.
    origin : float
        When the block's first sample was due: where an empty block's
        relative marker times count from.
    """

    data: np.ndarray
    timestamps: np.ndarray
    markers: list[tuple[float, str]] = field(default_factory=list)
    index: int = 0
    origin: float = float("nan")

    def __len__(self) -> int:
        return len(self.data)

    def relative_markers(self) -> list[Marker]:
        """Markers as libmushu has them: ``(ms after the first sample, text)``."""
        if not self.markers:
            return []
        t0 = self.timestamps[0] if len(self.timestamps) else self.origin
        return [((t - t0) * 1000.0, text) for t, text in self.markers]

    def marker_samples(self) -> list[tuple[int, str]]:
        """Markers as ``(row, text)``: the row of the first sample at or after
        the marker's time (clipped to the block)."""
        if not self.markers:
            return []
        rows = np.searchsorted(self.timestamps, [t for t, _ in self.markers])
        rows = np.clip(rows, 0, max(len(self.timestamps) - 1, 0))
        return [(int(r), text) for r, (_, text) in zip(rows, self.markers, strict=True)]


class Service(Protocol):
    """Something a decorated amp runs beside acquisition.

    Recording, LSL publishing and the network marker servers are services.
    ``on_block`` is called with every block :meth:`AmpDecorator.get_block`
    returns (a service with a background thread raises its thread's error
    from here); ``close`` is called once by :meth:`AmpDecorator.stop`.
    """

    def on_block(self, block: Block) -> None: ...

    def close(self) -> None: ...

    # Optional: ``status() -> dict`` of figures for progress displays
    # (bytes written, backlog, consumers...); merged into AmpDecorator.status().
