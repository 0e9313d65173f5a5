"""What flows out of a decorated amp, and what consumes it.

A leaf module: :class:`Block` (one read from an
:class:`~ampkit.decorator.AmpDecorator`), the texts of the markers ampkit sets
itself (:data:`GAP_MARKER`, :data:`DROPPED_MARKER`) and the :class:`Service`
protocol with the :class:`AmpContext` services are given. Drivers,
services, the recorder and the buffers import these from here, so none of
them needs the decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Block",
    "Marker",
    "AmpContext",
    "Service",
    "ServiceType",
    "GAP_MARKER",
    "DROPPED_MARKER",
]

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


@dataclass(frozen=True)
class AmpContext:
    """What a service may know of, and do to, the amp it serves.

    :meth:`~ampkit.decorator.AmpDecorator.start` builds one once the driver
    runs (some drivers learn their channels from the device only then) and
    hands it to each service's :meth:`Service.open`. Services get this, not
    the decorator, so that they depend on nothing above them.

    Attributes
    ----------
    name : str
        The amp's name (the driver name for amps from :func:`ampkit.get_amp`).
    channels : list of str
        Channel names, in column order.
    fs : float
        Nominal sampling rate in Hz.
    units : list of str
        Unit of each channel.
    resolutions : list of float or None
        Size of one converter step per channel, when the driver tells.
    add_marker : callable
        ``add_marker(text, timestamp=None) -> bool``: hand a marker to the
        amp from any thread (see :meth:`ampkit.AmpDecorator.add_marker`).
    markers_lost : callable
        ``markers_lost(n)``: report markers lost before they reached
        ``add_marker`` (shown as dropped markers are).
    effective_rate : callable
        ``effective_rate() -> float or None``: the device's measured rate
        (after ``stop()``, the value at the stop).
    """

    name: str
    channels: list[str]
    fs: float
    units: list[str]
    resolutions: list[float] | None = None
    add_marker: Callable[..., bool] = lambda text, timestamp=None: False
    markers_lost: Callable[[int], None] = lambda n: None
    effective_rate: Callable[[], float | None] = lambda: None

    @classmethod
    def of(cls, amp: Any, **hooks: Any) -> AmpContext:
        """The context of an amplifier, read through its getters.

        ``get_channels()``, ``get_sampling_frequency()``, ``get_units()``
        where it has one, the optional driver hook ``get_resolutions()``
        (ignored unless it gives one step per channel), and ``name`` (else
        ``str(amp)``); ``hooks`` sets ``add_marker``, ``markers_lost`` and
        ``effective_rate``.
        """
        channels = [str(c) for c in amp.get_channels()]
        get_units = getattr(amp, "get_units", None)
        units = [str(u) for u in get_units()] if get_units is not None else []
        resolutions = None
        get_resolutions = getattr(amp, "get_resolutions", None)
        if get_resolutions is not None:
            resolutions = [float(r) for r in np.asarray(get_resolutions()).ravel()]
            if len(resolutions) != len(channels):
                resolutions = None
        name = getattr(amp, "name", None) or str(amp)
        return cls(str(name), channels, float(amp.get_sampling_frequency()), units,
                   resolutions, **hooks)


@runtime_checkable
class Service(Protocol):
    """Something a decorated amp runs beside acquisition.

    Recording, LSL publishing, the network marker servers and
    :class:`~ampkit.buffer.AmpWatcher` are services. The decorator calls
    ``open`` once the driver runs (from :meth:`ampkit.AmpDecorator.start`,
    or :meth:`ampkit.AmpDecorator.add_service` while running), ``on_block``
    with every block :meth:`ampkit.AmpDecorator.get_block` returns, in the
    reading thread (a service with a background thread raises its thread's
    error from here), ``status`` for progress displays, and ``close`` once:
    at ``stop()``, at ``remove_service()``, or when another service failed
    to open. ``on_block`` runs on the acquisition path: it must be quick
    and never wait for a slow consumer without bound.
    """

    def open(self, amp: AmpContext) -> None:
        """Start serving ``amp``: bind, create files, start threads.

        Raises
        ------
        ampkit.errors.AmpkitError
            It cannot: the decorator closes whatever else was opened.
        """

    def on_block(self, block: Block) -> None:
        """Take one block (called with every block, empty ones included)."""

    def status(self) -> dict[str, Any]:
        """Figures for progress displays, merged into ``AmpDecorator.status()``."""

    def close(self) -> None:
        """Stop serving; release everything ``open`` took. Returns promptly."""


class ServiceType(Protocol):
    """A kind of service that ``AmpDecorator.start()`` options ask for.

    What an entry point of the group ``ampkit.services`` names (usually the
    service class itself): ampkit's own (marker servers, LSL, recording) are
    found the same way (see :mod:`ampkit.services`).

    Attributes
    ----------
    options : tuple of str
        The ``start()`` keywords it owns; no two service types may share one.
    order : int
        Services open, and see each block, in ascending order. Services that
        create files come last (the recorder is 100), so that no failure of
        another leaves files behind.
    """

    options: ClassVar[tuple[str, ...]]
    order: ClassVar[int]

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Service | None:
        """Check the options given (only this type's, possibly none) and
        return the service they ask for, not opened yet (nothing is bound
        or created), or None when they ask for none.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A bad value: nothing is opened anywhere.
        """
