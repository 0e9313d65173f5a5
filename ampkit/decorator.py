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
* :meth:`AmpDecorator.get_block`, the richer read: a
  :class:`~ampkit.block.Block` of data, timestamps and markers with
  absolute times;
* markers from other threads and programs (:meth:`AmpDecorator.add_marker`),
  placed at the right sample;
* *services* (:class:`ampkit.block.Service`) opened by
  :meth:`AmpDecorator.start` from its options, or by
  :meth:`AmpDecorator.add_service` while running, and closed by
  :meth:`AmpDecorator.stop`: each sees every block (recording, LSL
  publishing, watchers) or feeds markers (network marker servers). The
  decorator knows none of them by name: :mod:`ampkit.services` finds them.
"""

from __future__ import annotations

import bisect
import logging
import math
import numbers
import threading
from collections import deque
from typing import Any

import numpy as np

from ampkit.amplifier import Amplifier
from ampkit.block import DROPPED_MARKER, GAP_MARKER, AmpContext, Block, Marker, Service
from ampkit.checks import check_positive_int
from ampkit.clock import local_clock
from ampkit.errors import ConfigurationError, StateError
from ampkit.io.recorder import Recorder
from ampkit.logthrottle import LogThrottle
from ampkit.services import close_all, open_all, plan_services
from ampkit.timestamps import RecentStamps, SampleClock

__all__ = ["AmpDecorator"]

logger = logging.getLogger("ampkit")

#: Default of the ``marker_backlog`` start option.
MARKER_BACKLOG = 10_000
# Times within this of a sample's time are that sample's (see RecentStamps.snap).
_SNAP = 1e-9


def _time_of(marker: tuple[float, str]) -> float:
    # Markers are ordered by time alone: equal times keep their arrival order.
    return marker[0]


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_gap_threshold(value: object) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not 0 < value < math.inf:  # type: ignore[operator]
        raise ConfigurationError(
            f"gap_threshold must be a positive number of seconds, got {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


def _check_rate(name: str, fs: float) -> float:
    """The driver's rate, if it is one the clock can count with."""
    if not _is_number(fs) or not (0 < fs < math.inf and 1.0 / fs < math.inf):
        raise ConfigurationError(
            f"{name}: the driver reports a sampling frequency of {fs!r} Hz, which is not a "
            "positive finite number; check the device's (or file's) settings"
        )
    return float(fs)


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
    markers_dropped : int
        Markers lost since ``start()``: dropped because ``marker_backlog``
        markers were waiting for ``get_data()`` already, or reported lost by
        the marker servers (datagrams the kernel dropped). Each loss is also
        logged and marked in the data with a :data:`DROPPED_MARKER` marker.
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
        self._context: AmpContext | None = None
        self._clock: SampleClock | None = None
        self._stamped = False  # the decorator's clock stamped a block
        self._final_rate: float | None = None
        self._inbox: deque[tuple[float, str]] = deque()
        self._pending: list[tuple[float, str]] = []
        # Driver markers meant for samples not delivered yet: (row counted
        # from the next sample, text); timed when their samples arrive.
        self._ahead: list[tuple[float, str]] = []
        self.marker_backlog = MARKER_BACKLOG
        self.markers_dropped = 0
        self._marker_lock = threading.Lock()
        self._dropped_new = 0  # markers lost since the last DROPPED_MARKER
        self._warn_dropped = LogThrottle(logger)
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

    def get_impedances(self) -> np.ndarray | None:
        """The driver's electrode impedances in kΩ (None: it cannot measure them)."""
        return self.amp.get_impedances()

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
            Options of the decorator and its services. Each service type
            owns its options (installed packages may add services, and
            options, through the ``ampkit.services`` entry points: see
            :mod:`ampkit.services`). ampkit's own:

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
            share : str
                Share the amp's data and markers with the other processes of
                this computer through shared memory under this name
                (:mod:`ampkit.shared`; readers: :func:`ampkit.attach`).
            share_seconds : float
                Seconds the shared ring holds. Default 10.
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
            marker_backlog : int
                Most markers (network and :meth:`add_marker`) kept waiting
                for ``get_data()``; default 10000. Beyond it new markers are
                dropped, and the loss is shown (see :attr:`markers_dropped`).

        Raises
        ------
        ampkit.errors.StateError
            Already running.
        ampkit.errors.ConfigurationError
            An unknown option, or a bad value; the marker port is in use;
            the driver reports a sampling rate that is not a positive
            finite number.

        Notes
        -----
        A failed ``start()`` leaves nothing behind: every service checks its
        option values before anything is opened, the services open in their
        ``order`` with the recording (the only one that creates files) last,
        and on any error every service opened so far is closed and the
        driver stopped.
        """
        if self.running:
            raise StateError("start() while running: call stop() first")
        options = dict(options)
        gap_threshold = _check_gap_threshold(options.pop("gap_threshold", None))
        backlog = check_positive_int(
            "marker_backlog", options.pop("marker_backlog", MARKER_BACKLOG)
        )
        if filename is not None:
            options["filename"] = filename
        # Every service's options checked before anything opens.
        planned = plan_services(options)
        # The driver starts first: some learn their channels and rate from
        # the device only then (RDA's start message). Samples it receives
        # meanwhile wait in the driver for the first get_block().
        self.amp.start()
        try:
            self._channels = self.get_channels()
            self._fs = _check_rate(self.name, self.get_sampling_frequency())
            try:
                self._clock = SampleClock(self._fs, gap_threshold)
            except ValueError as exc:
                raise ConfigurationError(f"{self.name}: {exc}") from None
            self._recent = RecentStamps(self._fs)
            with self._marker_lock:  # before the marker servers can deliver
                self._inbox.clear()
                self._pending = []
                self._dropped_new = 0
            self._ahead = []
            self.marker_backlog = backlog
            self._context = self._make_context()
            opened = open_all(planned, self._context)
        except BaseException:
            self.amp.stop()
            raise
        self.n_samples = self.n_markers = 0
        self._stamped = False
        self._final_rate = None
        self.markers_dropped = 0
        self._last_time = -np.inf  # time of the newest sample delivered
        self.gaps = []
        self._services = opened
        self.running = True

    def _make_context(self) -> AmpContext:
        """What the services are told of this amp (see :class:`ampkit.block.AmpContext`)."""
        return AmpContext.of(self, add_marker=self.add_marker, markers_lost=self.markers_lost,
                             effective_rate=lambda: self.effective_rate)

    def stop(self) -> None:
        """Stop the driver, then close the services.

        Raises
        ------
        ampkit.errors.StateError
            The amp is not running.
        Exception
            The first error of a service's ``close()`` (all are closed).
        """
        if not self.running:
            raise StateError("stop() while not running")
        self._final_rate = self.effective_rate  # for the recording's metadata
        self.running = False
        try:
            self.amp.stop()
        finally:
            closing, self._services = self._services, []
            errors = close_all(closing, self.name)
            if errors:
                raise errors[0]

    def close(self) -> None:
        """Stop if running, then release the driver."""
        try:
            if self.running:
                self.stop()
        finally:
            self.amp.close()

    # -- services --------------------------------------------------------

    @property
    def services(self) -> tuple[Service, ...]:
        """The services running, in the order they see each block."""
        return tuple(self._services)

    def add_service(self, service: Service | None = None, **options: Any) -> list[Service]:
        """Open services while the amp runs; they see every block from the next on.

        They run until :meth:`remove_service` or :meth:`stop`. Call it from
        the thread that reads the amp, or hold off reading meanwhile: the
        services are not guarded against a concurrent :meth:`get_block`.

        Parameters
        ----------
        service : Service, optional
            A service to open (anything with ``open``, ``on_block``,
            ``status`` and ``close``: see :class:`ampkit.block.Service`),
            e.g. an :class:`ampkit.buffer.AmpWatcher`.
        **options
            ``start()`` options of the services to open, e.g.
            ``filename='run2.xdf'`` or ``lsl='EEG-2'``; only the services
            whose options are given are opened.

        Returns
        -------
        list of Service
            The services opened.

        Raises
        ------
        ampkit.errors.StateError
            The amp is not running.
        ampkit.errors.ConfigurationError
            An unknown option or a bad value, or ``service`` lacks a
            member of the protocol (nothing is opened).
        ampkit.errors.AmpkitError
            A service failed to open (those opened by this call are closed).
        """
        if not self.running:
            raise StateError("add_service() while not running: call start() first")
        if service is not None and not isinstance(service, Service):
            missing = [m for m in ("open", "on_block", "status", "close")
                       if not callable(getattr(service, m, None))]
            raise ConfigurationError(
                f"{service!r} is not a service: it lacks {', '.join(missing)} "
                "(see ampkit.block.Service)"
            )
        planned = plan_services(options, only_given=True)
        if service is not None:
            planned.append(service)
        opened = open_all(planned, self._context)
        self._services = [*self._services, *opened]
        return opened

    def remove_service(self, service: Service) -> None:
        """Close one of the running services; acquisition and the others go on.

        Raises
        ------
        ampkit.errors.StateError
            ``service`` is not running here.
        Exception
            Its ``close()`` failed (it is removed all the same).
        """
        if not any(s is service for s in self._services):
            raise StateError(f"{service!r} is not one of {self.name}'s services")
        self._services = [s for s in self._services if s is not service]
        service.close()

    @property
    def recording(self) -> str | None:
        """Path of the running recording, or None when not recording."""
        recorder = self._recorder()
        return None if recorder is None else str(recorder.path)

    def _recorder(self) -> Recorder | None:
        return next((s for s in self._services if isinstance(s, Recorder)), None)

    def start_recording(self, filename: str, overwrite: bool = False) -> None:
        """Start recording while the amp runs; the file begins with the next block.

        ``start(filename=...)`` records a whole run; this opens a recording
        mid-run (and :meth:`stop_recording` ends it), for programs that are
        told when to record while acquisition goes on: the same as
        ``add_service(filename=filename, overwrite=overwrite)``, one
        recording at a time.

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
        if not self.running:
            raise StateError("start_recording() while not running: call start() first")
        if self.recording is not None:
            raise StateError(
                f"start_recording() while recording to {self.recording}: "
                "call stop_recording() first"
            )
        self.add_service(filename=filename, overwrite=bool(overwrite))

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
        self.remove_service(recorder)
        return str(recorder.path)

    def status(self) -> dict[str, Any]:
        """Figures for progress displays.

        Returns
        -------
        dict
            ``samples``, ``markers`` and ``gaps`` delivered since ``start()``,
            ``effective_rate`` (Hz, 4 decimals) once measured,
            ``markers_dropped`` (see :attr:`markers_dropped`), plus whatever
            each running service reports.
        """
        info: dict[str, Any] = {
            "samples": self.n_samples,
            "markers": self.n_markers,
            "markers_dropped": self.markers_dropped + self._dropped_new,
            "gaps": len(self.gaps),
        }
        rate = self.effective_rate
        if rate is not None:
            info["effective_rate"] = round(rate, 4)
        for service in self._services:
            info.update(service.status())
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
        for service in self._services:
            addresses = getattr(service, "addresses", None)  # a service that listens
            if addresses:
                return dict(addresses)
        return {}

    def add_marker(self, text: str, timestamp: float | None = None) -> bool:
        """Add a marker from any thread; it appears at its sample.

        Parameters
        ----------
        text : str
            The marker's text.
        timestamp : float, optional
            When it happened, seconds on :func:`ampkit.clock.local_clock`;
            now when omitted.

        Returns
        -------
        bool
            False when the marker was dropped: ``marker_backlog`` markers
            are waiting for ``get_data()`` already. The loss is counted in
            :attr:`markers_dropped`, logged, and marked in the data with a
            :data:`DROPPED_MARKER` marker.
        """
        marker = (local_clock() if timestamp is None else float(timestamp), str(text))
        with self._marker_lock:
            if len(self._inbox) + len(self._pending) >= self.marker_backlog:
                self._dropped_new += 1
                return False
            self._inbox.append(marker)
        return True

    def markers_lost(self, n: int) -> None:
        """Report ``n`` markers lost before they reached :meth:`add_marker`
        (e.g. datagrams the kernel dropped); shown as dropped markers are."""
        with self._marker_lock:
            self._dropped_new += int(n)

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
        new: list[tuple[float, str]] = []
        if self._ahead and n:
            new = self._markers_arriving(timestamps)
        if driver_markers:
            new += self._driver_markers(driver_markers, timestamps, arrival)
        if gap is not None:
            self.gaps.append(gap)
            logger.warning(
                "%s: about %d samples (%.3f s) missing before t=%.3f",
                self.name, gap.n_missing, gap.duration, gap.time,
            )
            new.append((gap.time, GAP_MARKER.format(n=gap.n_missing)))
        last = float(timestamps[-1]) if n else self._last_time
        with self._marker_lock:
            inbox, self._inbox = self._inbox, deque()
            dropped, self._dropped_new = self._dropped_new, 0
        new.extend(inbox)
        if dropped:
            new.append(self._dropped(dropped, last, arrival))
        pending = self._pending
        if new:
            # One stable sort of the (sorted) pending markers and the new ones:
            # equal times keep their order of arrival, and a block with a
            # million markers costs a million steps, not a million insertions.
            pending = pending + new
            pending.sort(key=_time_of)
        markers: list[tuple[float, str]] = []
        # A block takes the markers up to its last sample; an empty block the
        # late ones, whose sample was delivered already (they must not wait
        # for samples that may never come).
        if pending and pending[0][0] <= last:
            cut = bisect.bisect_right(pending, last, key=_time_of)
            # Snap again: a marker extrapolated past an earlier block meets its sample here.
            markers = self._snap(pending[:cut], timestamps)
            pending = pending[cut:]
        self._pending = pending
        block = Block(data, timestamps, markers, self.n_samples, self._last_time + 1.0 / self._fs)
        self._last_time = last
        self.n_samples += n
        self.n_markers += len(markers)
        failed = None
        for service in self._services:
            try:
                service.on_block(block)
            except Exception as exc:  # noqa: BLE001 - raised below: the others get the block
                failed = failed or exc
        if failed is not None:
            raise failed
        return block

    def _dropped(self, n: int, last: float, arrival: float) -> tuple[float, str]:
        """Count, log and mark ``n`` lost markers (at the newest sample)."""
        self.markers_dropped += n
        self._warn_dropped(
            "%s: %d markers lost (%d since start()): more than marker_backlog=%d waited "
            "for get_data(), or the kernel dropped marker datagrams; marked '%s'",
            self.name, n, self.markers_dropped, self.marker_backlog,
            DROPPED_MARKER.format(n=n),
        )
        return (last if np.isfinite(last) else arrival, DROPPED_MARKER.format(n=n))

    def _driver_markers(
        self, driver_markers: list[Marker], timestamps: np.ndarray, arrival: float
    ) -> list[tuple[float, str]]:
        """``(time, text)`` of a block's driver markers on samples delivered
        so far, in one pass over the array for those inside the block (see
        :meth:`_marker_time`). A marker after the block's last sample (any
        marker of an empty block at or after its first row) waits in
        ``_ahead`` for its sample: its time is that sample's timestamp, which
        nobody knows yet (extrapolated at the nominal rate it could fall after
        the next block's stamps, and wait for samples that never come)."""
        n = len(timestamps)
        texts = [str(text) for _, text in driver_markers]
        rows = np.array([m for m, _ in driver_markers], dtype=np.float64)
        rows *= self._fs / 1000.0
        nearest = np.round(rows)
        on_sample = np.abs(rows - nearest) < 1e-6
        rows[on_sample] = nearest[on_sample]  # a marker on a sample stays on it
        ahead = rows > n - 1
        if ahead.any():
            self._ahead += [(float(rows[i]) - n, texts[i]) for i in np.flatnonzero(ahead)]
            keep = np.flatnonzero(~ahead)
            rows, texts = rows[keep], [texts[i] for i in keep]
        if n == 0:  # rows before the next sample: among those delivered
            times = [self._marker_time(float(r), timestamps, arrival) for r in rows]
            return list(zip(times, texts, strict=True))
        times = np.interp(rows, np.arange(n, dtype=np.float64), timestamps)
        # np.interp is the sample's time at a whole row and the straight line
        # between two samples elsewhere, as _marker_time; before the block it
        # would clamp, so those go the long way.
        for i in np.flatnonzero(rows < 0).tolist():
            times[i] = self._marker_time(float(rows[i]), timestamps, arrival)
        return list(zip(times.tolist(), texts, strict=True))

    def _markers_arriving(self, timestamps: np.ndarray) -> list[tuple[float, str]]:
        """``(time, text)`` of the waiting driver markers whose samples are in
        this block (rows between the previous sample and the first are placed
        on the line between the two); the others wait on."""
        n = len(timestamps)
        due = [(row, text) for row, text in self._ahead if row <= n - 1]
        self._ahead = [(row - n, text) for row, text in self._ahead if row > n - 1]
        if not due:
            return []
        rows = np.array([row for row, _ in due], dtype=np.float64)
        if np.isfinite(self._last_time):
            times = np.interp(rows, np.arange(-1, n, dtype=np.float64),
                              np.concatenate(([self._last_time], timestamps)))
        else:
            times = np.interp(rows, np.arange(n, dtype=np.float64), timestamps)
        return list(zip(times.tolist(), [text for _, text in due], strict=True))

    def _snap(
        self, markers: list[tuple[float, str]], timestamps: np.ndarray
    ) -> list[tuple[float, str]]:
        """Markers moved onto the time of a sample within 1 ns of theirs (see
        RecentStamps.snap): in one pass over the block for those in its span."""
        times = np.array([t for t, _ in markers], dtype=np.float64)
        snapped = times.copy()
        n = len(timestamps)
        inside = np.zeros(len(times), dtype=bool)
        if n:
            i = np.searchsorted(timestamps, times)
            for j in (np.clip(i - 1, 0, n - 1), np.clip(i, 0, n - 1)):
                near = np.abs(timestamps[j] - snapped) <= _SNAP
                snapped[near] = timestamps[j[near]]
            inside = times >= timestamps[0] - _SNAP
        for k in np.flatnonzero(~inside).tolist():  # late markers: earlier blocks
            snapped[k] = self._recent.snap(float(times[k]))
        out = list(markers)
        for k in np.flatnonzero(snapped != times).tolist():  # a few, if any
            out[k] = (float(snapped[k]), markers[k][1])
        return out

    def _marker_time(self, row: float, timestamps: np.ndarray, arrival: float) -> float:
        """Absolute time of a driver marker ``row`` samples after the block's
        first, for a row before the block (``row < 0``; in an empty block,
        rows count from the next sample): extrapolated at the nominal rate
        from the block's first sample, and put back on a delivered sample
        within 1 ns of it (rows after the block wait, see
        :meth:`_driver_markers`)."""
        if len(timestamps):
            return self._recent.snap(float(timestamps[0]) + row / self._fs)
        if not np.isfinite(self._last_time):  # nothing delivered yet
            return arrival + row / self._fs
        return self._recent.snap(self._last_time + (row + 1) / self._fs)

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
