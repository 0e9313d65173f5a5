"""AmpDecorator: what every lab needs, added on top of any driver.

:func:`ampkit.get_amp` returns every driver wrapped in an
:class:`AmpDecorator`. The decorator is itself an
:class:`~ampkit.amplifier.Amplifier`, so scripts use it exactly like a
libmushu amplifier, and it adds:

* per-sample timestamps on :func:`ampkit.clock.local_clock`, taken from the
  driver when it knows them (:meth:`Amplifier.get_timestamps`) and estimated
  from arrival times otherwise (:class:`ampkit.timestamps.SampleClock`, which
  follows the device's real rate), with gap detection; the device's measured
  rate is :attr:`AmpDecorator.effective_rate`;
* :meth:`AmpDecorator.get_block`, the richer read: a :class:`Block` of data,
  timestamps and markers with absolute times;
* markers from other threads and programs (:meth:`AmpDecorator.add_marker`),
  placed at the right sample;
* *services* started by :meth:`AmpDecorator.start` and stopped by
  :meth:`AmpDecorator.stop`: each sees every block (recording, LSL
  publishing) or feeds markers (network marker servers).
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ampkit.amplifier import Amplifier, Marker
from ampkit.clock import local_clock
from ampkit.errors import ConfigurationError, StateError
from ampkit.timestamps import RecentStamps, SampleClock

__all__ = ["AmpDecorator", "Block", "Service", "GAP_MARKER"]

logger = logging.getLogger("ampkit")

#: Text of the marker set at the first sample after a detected gap;
#: ``{n}`` is the estimated number of lost samples.
GAP_MARKER = "ampkit/gap {n}"


def _time_of(marker: tuple[float, str]) -> float:
    # Markers are ordered by time alone: equal times keep their arrival order.
    return marker[0]


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


class AmpDecorator(Amplifier):
    """Wrap a driver and add timestamps, markers and services.

    Parameters
    ----------
    amp : Amplifier subclass or instance
        The driver. A class is instantiated without arguments.
    name : str, optional
        Name to show for the amp (defaults to the driver's class name).

    Attributes
    ----------
    amp : Amplifier
        The wrapped driver; attributes the decorator lacks are looked up
        here, so driver-specific members stay reachable.
    n_samples : int
        Samples delivered since ``start()``.
    n_markers : int
        Markers delivered since ``start()``.
    gaps : list of ampkit.timestamps.Gap
        Gaps found since ``start()``.

    Examples
    --------
    >>> from ampkit.drivers.random import RandomAmp
    >>> with AmpDecorator(RandomAmp) as amp:
    ...     amp.configure(fs=100, channels=3)
    ...     amp.start()
    ...     data, markers = amp.get_data()
    ...     amp.stop()
    >>> data.shape[1]
    3
    """

    def __init__(self, amp: type[Amplifier] | Amplifier, name: str | None = None) -> None:
        if isinstance(amp, type):
            amp = amp()
        if not isinstance(amp, Amplifier):
            raise ConfigurationError(
                f"AmpDecorator wraps an Amplifier, got {type(amp).__name__}"
            )
        self.amp = amp
        self.name = name or type(amp).__name__
        self.running = False
        self.n_samples = 0
        self.n_markers = 0
        self.gaps: list = []
        self._services: list[Service] = []
        self._clock: SampleClock | None = None
        self._stamped = False  # the decorator's clock stamped a block
        self._final_rate: float | None = None
        self._inbox: deque[tuple[float, str]] = deque()
        self._pending: list[tuple[float, str]] = []
        self._channels: list[str] = []
        self._fs = 0.0
        self._last_time = -np.inf
        # Timestamps of the last seconds of samples, to put late driver
        # markers back exactly on their samples (see RecentStamps).
        self._recent = RecentStamps(1.0)

    # -- delegation ------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the decorator does not have.
        if name == "amp":
            raise AttributeError(name)
        return getattr(self.amp, name)

    @property
    def presets(self) -> list[list[Any]]:  # type: ignore[override]
        """The driver's presets."""
        return self.amp.presets

    def configure(self, **kwargs: Any) -> None:
        """Configure the driver (only while stopped).

        Raises
        ------
        ampkit.errors.StateError
            The amp is running.
        ampkit.errors.ConfigurationError
            The driver refused a value.
        """
        if self.running:
            raise StateError("configure() while running: call stop() first")
        self.amp.configure(**kwargs)

    def get_channels(self) -> list[str]:
        """The driver's channel names."""
        return list(self.amp.get_channels())

    def get_sampling_frequency(self) -> float:
        """The driver's sampling frequency in Hz."""
        return float(self.amp.get_sampling_frequency())

    def get_units(self) -> list[str]:
        """The driver's channel units."""
        return list(self.amp.get_units())

    def is_available(self) -> bool:  # type: ignore[override]
        """Whether the wrapped driver's device is reachable."""
        return bool(self.amp.is_available())

    def __str__(self) -> str:
        return f"AmpDecorator({self.name})"

    # -- life cycle ------------------------------------------------------

    def start(self, filename: str | None = None, **options: Any) -> None:
        """Start the driver, then the services.

        Parameters
        ----------
        filename : str or path, optional
            Record everything the amp delivers to this file (the format is
            chosen by the suffix; see :mod:`ampkit.io`).
        **options
            Options of the decorator's services:

            overwrite : bool
                Replace an existing recording instead of raising
                :class:`~ampkit.errors.RecordingError` (default False).
            gap_threshold : float
                Shortest loss, in seconds, found from arrival times (drivers
                without timestamps only: blocks that stay this much later
                than the device's clock predicts mean lost samples; see
                :class:`~ampkit.timestamps.SampleClock`). Default
                ``max(10 / fs, 0.05)``.
            lsl : bool or str
                Publish the amp's data and markers as LSL streams while it
                runs (:class:`ampkit.lsl.LSLPublisher`): ``True`` names the
                data stream after the amp, a string names it; the markers go
                to ``<name>-markers``. Default ``False``.
            lsl_type : str
                LSL content type of the data stream. Default ``'EEG'``.
            lsl_source_id : str
                LSL source id. Default ``'ampkit:<hostname>:<name>'``.
            marker_host : str
                Interface the TCP and UDP marker servers listen on
                (:mod:`ampkit.markers`). Default ``'127.0.0.1'``: this
                computer only; the any-address (0.0.0.0) accepts markers from others.
            marker_port : int or None
                Port of both marker servers. Default 12344 (libmushu's; the
                environment variable ``AMPKIT_MARKER_PORT`` changes it);
                0 picks free ports (see :attr:`marker_addresses`); None
                turns the servers off.
            marker_limits : dict
                ``max_line`` (bytes, default 1024) and ``max_clients``
                (default 256) of the marker servers.

        Raises
        ------
        ampkit.errors.StateError
            Already running.
        ampkit.errors.ConfigurationError
            An unknown option, or a bad value; the marker port is in use.
        """
        if self.running:
            raise StateError("start() while running: call stop() first")
        options = dict(options)
        gap_threshold = options.pop("gap_threshold", None)
        # The driver starts first: some learn their channels and rate from
        # the device only then (RDA's start message). Samples it receives
        # meanwhile wait in the driver for the first get_block().
        self.amp.start()
        try:
            self._channels = self.get_channels()
            self._fs = self.get_sampling_frequency()
            try:
                self._clock = SampleClock(self._fs, gap_threshold)
            except ValueError as exc:
                raise ConfigurationError(f"{self.name}: {exc}") from None
            self._inbox.clear()  # before the marker servers can deliver
            services = self._open_services(filename, options)
        except BaseException:
            self.amp.stop()
            raise
        self.n_samples = self.n_markers = 0
        self._stamped = False
        self._final_rate = None
        self._last_time = -np.inf  # time of the newest sample delivered
        self._recent = RecentStamps(self._fs)
        self.gaps = []
        self._pending = []
        self._services = services
        self.running = True

    def _open_services(self, filename: str | None, options: dict[str, Any]) -> list[Service]:
        """Create the services asked for; each pops the options it owns.

        An option no service took is a ConfigurationError. On any error the
        services opened so far are closed again.
        """
        from ampkit.io.recorder import Recorder
        from ampkit.markers import MarkerServers

        services: list[Service] = []
        try:
            overwrite = bool(options.pop("overwrite", False))
            # First: a busy marker port must fail before any recording file exists.
            servers = MarkerServers.from_options(self.add_marker, options, self.name)
            if servers is not None:
                services.append(servers)
            if filename is not None:
                services.append(Recorder(self, filename, overwrite=overwrite))
            from ampkit.lsl import publisher_from_options  # loads pylsl only when asked

            publisher = publisher_from_options(self, options)
            if publisher is not None:
                services.append(publisher)
            if options:
                raise ConfigurationError(f"unknown start() options: {sorted(options)}")
        except BaseException:
            for service in services:
                service.close()
            raise
        return services

    def stop(self) -> None:
        """Stop the driver, then close the services.

        Raises
        ------
        ampkit.errors.StateError
            The amp is not running.
        """
        if not self.running:
            raise StateError("stop() while not running")
        self._final_rate = self.effective_rate  # for the recording's metadata
        self.running = False
        try:
            self.amp.stop()
        finally:
            self._close_services()

    def _close_services(self) -> None:
        errors = []
        for service in self._services:
            try:
                service.close()
            except Exception as exc:  # noqa: BLE001 - raised below, after all closed
                logger.error("%s: closing %r failed: %r", self.name, service, exc)
                errors.append(exc)
        self._services = []
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Stop if running, then release the driver."""
        try:
            if self.running:
                self.stop()
        finally:
            self.amp.close()

    @property
    def recording(self) -> str | None:
        """Path of the running recording, or None when not recording."""
        recorder = self._recorder()
        return None if recorder is None else str(recorder.path)

    def _recorder(self) -> Any:
        from ampkit.io.recorder import Recorder

        return next((s for s in self._services if isinstance(s, Recorder)), None)

    def start_recording(self, filename: str, overwrite: bool = False) -> None:
        """Start recording while the amp runs; the file begins with the next block.

        ``start(filename=...)`` records a whole run; this opens a recording
        mid-run (and :meth:`stop_recording` ends it), for programs that are
        told when to record while acquisition goes on. Call it from the thread
        that reads the amp, or hold off reading meanwhile: the services are
        not guarded against a concurrent :meth:`get_block`.

        Parameters
        ----------
        filename : str or path
            Where to record; the format follows the suffix (see :mod:`ampkit.io`).
        overwrite : bool
            Replace an existing recording instead of raising.

        Raises
        ------
        ampkit.errors.StateError
            The amp is not running, or is recording already.
        ampkit.errors.RecordingError
            The file exists (and ``overwrite`` is false) or cannot be created.
        ampkit.errors.ConfigurationError
            An unknown suffix.
        """
        from ampkit.io.recorder import Recorder

        if not self.running:
            raise StateError("start_recording() while not running: call start() first")
        if self.recording is not None:
            raise StateError(
                f"start_recording() while recording to {self.recording}: "
                "call stop_recording() first"
            )
        self._services = [*self._services, Recorder(self, filename, overwrite=bool(overwrite))]

    def stop_recording(self) -> str:
        """End the recording; acquisition and the other services go on.

        Returns
        -------
        str
            Path of the recording that was closed.

        Raises
        ------
        ampkit.errors.StateError
            Not recording.
        ampkit.errors.RecordingError
            Writing the rest of the recording failed.
        """
        recorder = self._recorder()
        if recorder is None:
            raise StateError("stop_recording() while not recording")
        self._services = [s for s in self._services if s is not recorder]
        recorder.close()
        return str(recorder.path)

    def status(self) -> dict[str, Any]:
        """Figures for progress displays.

        Returns
        -------
        dict
            ``samples``, ``markers`` and ``gaps`` delivered since ``start()``,
            ``effective_rate`` (Hz, 4 decimals) once measured, plus whatever
            each running service reports.
        """
        info: dict[str, Any] = {
            "samples": self.n_samples,
            "markers": self.n_markers,
            "gaps": len(self.gaps),
        }
        rate = self.effective_rate
        if rate is not None:
            info["effective_rate"] = round(rate, 4)
        for service in self._services:
            report = getattr(service, "status", None)
            if report is not None:
                info.update(report())
        return info

    @property
    def effective_rate(self) -> float | None:
        """The device's sampling rate as measured, in Hz; None if not measured.

        Device clocks run some ppm off their nominal rate
        (:meth:`get_sampling_frequency`). The driver's measurement
        (:meth:`Amplifier.get_effective_rate`) when it has one, else that of
        the decorator's own sample clock once it stamped blocks; None for
        drivers that hand their own timestamps without a rate (LSL,
        synthetic, replay). After ``stop()``, the value at the stop.
        """
        if not self.running:
            return self._final_rate
        rate = self.amp.get_effective_rate()
        if rate is None and self._stamped and self._clock is not None:
            rate = self._clock.rate
        return None if rate is None else float(rate)

    # -- markers ---------------------------------------------------------

    @property
    def marker_addresses(self) -> dict[str, tuple[str, int]]:
        """Where the network marker servers listen.

        ``{'tcp': (host, port), 'udp': (host, port)}`` while running with
        marker servers, ``{}`` otherwise.
        """
        from ampkit.markers import MarkerServers

        for service in self._services:
            if isinstance(service, MarkerServers):
                return dict(service.addresses)
        return {}

    def add_marker(self, text: str, timestamp: float | None = None) -> None:
        """Add a marker from any thread; it appears at its sample.

        Parameters
        ----------
        text : str
            The marker's text.
        timestamp : float, optional
            When it happened, seconds on :func:`ampkit.clock.local_clock`;
            now when omitted.
        """
        self._inbox.append((local_clock() if timestamp is None else float(timestamp), str(text)))

    # -- reading ---------------------------------------------------------

    def get_block(self) -> Block:
        """Read the next block from the driver.

        Returns
        -------
        Block
            Data (float32), one timestamp per sample, and every marker whose
            time is not after the block's last sample (markers that come
            later wait for the next block; none is dropped or repeated). A
            marker that arrives after its sample was delivered comes with the
            next block, even an empty one.

        Raises
        ------
        ampkit.errors.StateError
            The amp is not running.
        """
        if not self.running:
            raise StateError("get_data()/get_block() before start()")
        raw, driver_markers = self.amp.get_data()
        arrival = local_clock()
        data = np.asarray(raw, dtype=np.float32)
        if data.ndim != 2:
            data = data.reshape(-1, len(self._channels))
        n = len(data)
        timestamps = self.amp.get_timestamps()
        gap = None
        if timestamps is None:
            timestamps, gap = self._clock.stamp(n, arrival)  # type: ignore[union-attr]
            self._stamped = True
        else:
            timestamps = np.asarray(timestamps, dtype=np.float64)
        if n:
            self._recent.add(timestamps)
        pending = self._pending
        if driver_markers:
            for ms, text in driver_markers:
                marker = (self._marker_time(float(ms), timestamps, arrival), str(text))
                bisect.insort(pending, marker, key=_time_of)
        if gap is not None:
            self.gaps.append(gap)
            logger.warning(
                "%s: about %d samples (%.3f s) missing before t=%.3f",
                self.name, gap.n_missing, gap.duration, gap.time,
            )
            bisect.insort(pending, (gap.time, GAP_MARKER.format(n=gap.n_missing)), key=_time_of)
        inbox = self._inbox
        while inbox:
            bisect.insort(pending, inbox.popleft(), key=_time_of)
        markers: list[tuple[float, str]] = []
        # A block takes the markers up to its last sample; an empty block the
        # late ones, whose sample was delivered already (they must not wait
        # for samples that may never come).
        last = float(timestamps[-1]) if n else self._last_time
        if pending and pending[0][0] <= last:
            cut = bisect.bisect_right(pending, last, key=_time_of)
            # Snap again: a marker extrapolated past an earlier block meets its sample here.
            markers = [(self._recent.snap(t), text) for t, text in pending[:cut]]
            self._pending = pending[cut:]
        block = Block(data, timestamps, markers, self.n_samples, self._last_time + 1.0 / self._fs)
        self._last_time = last
        self.n_samples += n
        self.n_markers += len(markers)
        for service in self._services:
            service.on_block(block)
        return block

    def _marker_time(self, ms: float, timestamps: np.ndarray, arrival: float) -> float:
        """Absolute time of a driver marker ``ms`` after the block's first sample.

        The marker's row (``ms * fs / 1000``) is looked up in the block's
        timestamps, so it lands on the sample the driver meant even where the
        timestamps are not evenly spaced; outside the block it is extrapolated
        at the nominal rate. In an empty block, rows count from the sample
        after the last one delivered.
        """
        n = len(timestamps)
        row = ms * self._fs / 1000.0
        nearest = round(row)
        if abs(row - nearest) < 1e-6:
            row = nearest  # a marker on a sample stays on it despite rounding
        if n == 0:
            # Counted from when the empty block's first sample is due.
            if not np.isfinite(self._last_time):
                return arrival + ms / 1000.0
            t = self._last_time + (row + 1) / self._fs
        elif row <= 0:
            t = float(timestamps[0]) + row / self._fs  # exactly the first sample at row 0
        elif row >= n - 1:
            t = float(timestamps[-1]) + (row - (n - 1)) / self._fs
        else:
            i = int(row)  # interpolate between the two samples around the row
            t = float(timestamps[i] + (row - i) * (timestamps[i + 1] - timestamps[i]))
        return self._recent.snap(t)

    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Read the next block in libmushu's shape.

        Returns
        -------
        data : ndarray of float32, shape (n_samples, n_channels)
        markers : list of (float, str)
            ``(ms, text)``, ``ms`` relative to the block's first sample.
        """
        block = self.get_block()
        return block.data, block.relative_markers()
