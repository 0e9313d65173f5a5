"""The ``gusbamp`` driver: g.tec g.USBamp (16 channels and a trigger input) over USB.

A :class:`~ampkit.streaming.StreamingAmp` on a :class:`~ampkit.usb.USBTransport`
(pyusb 1.x) with the protocol of :mod:`ampkit.protocols.gusbamp`. This module
adds what is the g.USBamp's own: finding the amp (by serial number if asked),
the control transfers that configure and start it, the channel subset (taken
on the host), the trigger input as markers ``'trigger/<value>'`` on the
sample where it changes, filter design, and impedance mode in kΩ with the
optional :meth:`~ampkit.amplifier.Amplifier.get_impedances` hook. Reading,
stamping, the bounded buffer, silence and reconnection are the layer's.

Without hardware: ``backend=GUSBampEmulator()`` (:mod:`ampkit.sim.gusbamp`),
or ``backend='emulator'``. Nothing here was verified on a real amp; see
:doc:`/gusbamp`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import usb.core
import usb.util

from ampkit.amplifier import EitherMethod
from ampkit.clock import local_clock
from ampkit.codec import Chunk, Layout
from ampkit.errors import AmpkitError, AmpNotAvailableError, ConfigurationError, StateError
from ampkit.protocols import gusbamp as proto
from ampkit.protocols.gusbamp import FrameParser
from ampkit.sim.gusbamp import GUSBampEmulator
from ampkit.streaming import StreamingAmp, check_stream_options
from ampkit.usb import USBTransport, describe, find_devices, usb_error

__all__ = ["GUSBampAmp", "GUSBampCodec", "TRIGGER_MARKER"]

logger = logging.getLogger("ampkit")

#: Text of the marker at each change of the trigger input.
TRIGGER_MARKER = "trigger/{value}"
#: Seconds of data a read of the endpoint asks for at least, and in latencies:
#: one read takes what gathered while get_data() waited.
_READ_SECONDS = 0.01
_READ_LATENCIES = 2.5
#: Seconds of impedance values get_impedances() takes the median of.
_IMPEDANCE_SECONDS = 0.1


def _trigger_text(value: float) -> str:
    value = float(value)
    return TRIGGER_MARKER.format(
        value=int(value) if math.isfinite(value) and value.is_integer() else f"{value:g}")


class GUSBampCodec:
    """Bulk stream bytes as chunks: the selected channels (µV, or kΩ in
    impedance mode), and a marker at each change of the trigger input.

    Parameters
    ----------
    source : str
        Names the amp in errors.
    columns : sequence of int
        0-based channels to deliver, in order.
    mode : str
        ``'data'``, ``'calibration'`` or ``'impedance'``.
    scale : float
        µV per unit the amp sends.
    read_ahead : int
        Bytes a read may take past the next frame.
    reconnected : bool
        After a lost connection: the first chunk's gap is estimated from the time.
    """

    def __init__(self, source: str, columns: Sequence[int], mode: str = "data",
                 scale: float = 1.0, read_ahead: int = 16384, reconnected: bool = False) -> None:
        self.source = source
        self.parser = FrameParser()
        self.columns = np.asarray(columns, np.intp)
        self._all = list(columns) == list(range(proto.CHANNELS))
        self.mode = mode
        self.scale = np.float32(scale)
        self.read_ahead = read_ahead
        self._lost: int | None = None if reconnected else 0
        self._trigger = np.uint32(0)  # bits of the trigger input's last value (0.0)
        #: Impedances in kΩ of the last frame (impedance mode), per column.
        self.impedances = np.full(len(self.columns), np.nan)

    @property
    def missing(self) -> int:
        return self.parser.missing

    def feed(self, data: memoryview) -> list[Chunk]:
        frames = self.parser.feed(data)
        if not len(frames):
            return []
        markers: list[tuple[int, str]] = []
        if self.mode == "impedance":
            kohm = proto.impedance_kohm(frames[:, self.columns])
            self.impedances = kohm[-1]
            values = kohm.astype(np.float32)
        else:
            # A copy either way: contiguous columns for the caller, not a
            # view of the receive buffer.
            values = frames[:, : proto.CHANNELS].copy() if self._all else frames[:, self.columns]
            if self.scale != 1:
                values *= self.scale
            markers = self._triggers(frames[:, proto.CHANNELS])
        lost, self._lost = self._lost, 0
        return [Chunk(values, lost, markers)]

    def _triggers(self, trigger: np.ndarray) -> list[tuple[int, str]]:
        """``(row, text)`` where the trigger input changes (compared bit by
        bit: a NaN equals itself)."""
        bits = trigger.view(np.uint32)
        rows = np.flatnonzero(bits[1:] != bits[:-1]) + 1
        if bits[0] != self._trigger:
            rows = np.concatenate([[0], rows])
        self._trigger = bits[-1]
        return [(int(row), _trigger_text(trigger[row])) for row in rows]


def _check_channels(channels: Iterable[int] | None) -> list[int]:
    if channels is None:
        return list(range(1, proto.CHANNELS + 1))
    try:
        numbers = list(channels)
    except TypeError:
        numbers = [channels]  # type: ignore[list-item]
    good = all(isinstance(c, (int, np.integer)) and not isinstance(c, bool)
               and 1 <= c <= proto.CHANNELS for c in numbers)
    if not numbers or not good or len(set(numbers)) != len(numbers):
        raise ConfigurationError(
            f"channels must be distinct channel numbers 1..16 (e.g. [1, 2, 3]) or None for "
            f"all, got {channels!r}"
        )
    return [int(c) for c in numbers]


def _check_fs(fs: object) -> int:
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or fs not in proto.SAMPLING_RATES:
        raise ConfigurationError(
            f"fs must be one of the g.USBamp's rates {', '.join(map(str, proto.SAMPLING_RATES))} "
            f"Hz, got {fs!r}"
        )
    return int(fs)


def _is_gtec(device: Any) -> bool:
    return device.idVendor in proto.VENDOR_IDS


class GUSBampAmp(StreamingAmp):
    """Acquire from a g.tec g.USBamp over USB (pyusb 1.x).

    Samples come in µV (see :doc:`/gusbamp` for what that rests on), one
    column per selected channel; each change of the trigger input is a
    marker ``'trigger/<value>'`` on its sample. In impedance mode the
    columns are impedances in kΩ. Sample times come from the layer's
    :class:`~ampkit.timestamps.SampleClock`: the amp numbers no samples, so
    a loss inside the amp or the USB stack cannot be seen.

    Attributes
    ----------
    gap_count, lost_samples : int
        Discontinuities found since ``start()`` (reconnections) and the
        samples estimated lost in them.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('gusbamp', fs=256, bandpass=(0.5, 30), notch=50)  # doctest: +SKIP
    >>> amp.start()                                                             # doctest: +SKIP
    >>> data, markers = amp.get_data()                                          # doctest: +SKIP
    """

    presets = [
        ["256 Hz, all channels, 0.5-30 Hz band-pass, 50 Hz notch",
         {"fs": 256, "bandpass": (0.5, 30.0), "notch": 50}],
        ["512 Hz, all channels, no filters", {"fs": 512}],
        ["impedance check (kΩ)", {"mode": "impedance"}],
        ["an emulated amp (no hardware), 256 Hz", {"backend": "emulator", "fs": 256}],
    ]

    #: The pyusb backend asked by ``is_available()`` on the class (and the
    #: registry): None for pyusb's own.
    backend: Any = None
    serial: str | None = None
    _emulator: GUSBampEmulator | None = None

    def __init__(self) -> None:
        self._emulator: GUSBampEmulator | None = None
        self._codec: GUSBampCodec | None = None
        super().__init__()

    @property
    def name(self) -> str:
        """``'g.USBamp'``, with the serial number when one was asked for."""
        return "g.USBamp" + (f" {self.serial}" if self.serial else "")

    def configure(
        self,
        fs: int = 256,
        channels: Iterable[int] | None = None,
        bandpass: tuple[float, float] | None = None,
        bandpass_order: int = 4,
        notch: int | None = None,
        mode: str = "data",
        calibration: str = "sine",
        common_ground: bool | str | Iterable[str] = False,
        common_reference: bool | str | Iterable[str] = False,
        serial: str | None = None,
        backend: Any = None,
        scale: float = 1.0,
        latency: float = 0.02,
        timeout: float = 5.0,
        reconnect: bool = False,
        buffer_seconds: float = 60.0,
        silence_timeout: float | None = None,
    ) -> None:
        """Choose the amp and how it acquires.

        Parameters
        ----------
        fs : int
            Samples per second: 32, 64, 128, 256, 512, 600, 1200, 2400,
            4800, 9600, 19200 or 38400.
        channels : sequence of int, optional
            Channel numbers 1..16 to deliver, in this order (None: all).
        bandpass : (float, float), optional
            Edges in Hz of the amp's digital Butterworth band-pass on every
            channel (None: no band-pass).
        bandpass_order : int
            Order of its low-pass prototype, 1..4 (the filter's is twice that).
        notch : {50, 60, None}
            Mains frequency of the amp's notch filter (a 4th-order
            Butterworth band-stop over 48-52 or 58-62 Hz).
        mode : {'data', 'calibration', 'impedance'}
            Acquire the electrodes, the amp's calibration signal on every
            channel, or the electrodes' impedances (columns in kΩ).
        calibration : {'sine', 'square', 'sawtooth', 'whitenoise'}
            Shape of the calibration signal (2 Hz, amplitude 2000 units).
        common_ground, common_reference : bool or str
            Electrode groups (``'A'``..``'D'``, 4 channels each) connected to
            the common ground / reference: True for all, False for none, or
            letters such as ``'AB'``.
        serial : str, optional
            Serial number of the amp to use (None: the first found).
        backend : pyusb backend, optional
            Where USB devices come from: None for pyusb's own (libusb), an
            emulator (:class:`~ampkit.sim.gusbamp.GUSBampEmulator`), or the
            string ``'emulator'`` for one made here.
        scale : float
            µV per unit the amp sends (1: the amp sends µV).
        latency : float
            Seconds (0 to 0.1) frames gather in the amp between reads of the
            endpoint, by a waiting ``get_data()`` or the background thread:
            fewer reads, less CPU (at 38.4 kHz, 200 transfers a second come
            in 50 reads); 0: each USB transfer as it comes.
        timeout : float
            Seconds to find and open the amp; control transfers time out
            after at most 1 s and are tried 3 times.
        reconnect : bool
            When the amp goes away (or falls silent) while acquiring,
            reconnect and mark the gap instead of raising ConnectionLostError.
        buffer_seconds : float
            Samples kept for a caller that reads late.
        silence_timeout : float, optional
            Seconds without data after which the amp counts as lost (None:
            ten reads' worth, at least 2 s).

        Raises
        ------
        ampkit.errors.ConfigurationError
            A value the amp cannot take.
        ampkit.errors.StateError
            Called while running.
        """
        fs = _check_fs(fs)
        numbers = _check_channels(channels)
        if mode not in proto.MODES:
            raise ConfigurationError(f"mode must be one of {list(proto.MODES)}, got {mode!r}")
        if calibration not in proto.WAVE_SHAPES:
            raise ConfigurationError(
                f"calibration must be one of {list(proto.WAVE_SHAPES)}, got {calibration!r}")
        if bandpass is None:
            bandpass_payload = proto.NULL_FILTER
        else:
            try:
                low, high = (float(edge) for edge in bandpass)
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"bandpass must be (low, high) in Hz or None, got {bandpass!r}") from None
            bandpass_payload = proto.filter_payload(
                *proto.bandpass_coefficients(low, high, fs, bandpass_order))
        notch_payload = proto.NULL_FILTER if notch is None else proto.filter_payload(
            *proto.notch_coefficients(notch, fs))
        ground = proto.group_mask(common_ground)
        reference = proto.group_mask(common_reference)
        if serial is not None and not isinstance(serial, str):
            raise ConfigurationError(f"serial must be a string or None, got {serial!r}")
        if not (backend is None or backend == "emulator" or hasattr(backend, "enumerate_devices")):
            raise ConfigurationError(
                f"backend must be None, 'emulator' or a pyusb backend, got {backend!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
                math.isfinite(scale) and scale > 0):
            raise ConfigurationError(f"scale must be a positive number, got {scale!r}")
        if isinstance(latency, bool) or not isinstance(latency, (int, float)) \
                or not 0 <= latency <= 0.1:
            raise ConfigurationError(f"latency must be 0 to 0.1 s, got {latency!r}")
        check_stream_options(timeout, buffer_seconds, reconnect, silence_timeout, "wait")
        self._disconnect()
        self.fs, self.channels, self.mode, self.calibration = fs, numbers, mode, calibration
        self.bandpass, self.notch = bandpass, notch
        self._filters = (bandpass_payload, notch_payload)
        self.common_ground, self.common_reference = ground, reference
        self.serial, self.scale = serial, float(scale)
        # The caller's reads and the background thread's looks alike.
        self.gather = self.read_interval = float(latency)
        if backend != "emulator" or not isinstance(self._emulator, GUSBampEmulator):
            self._emulator = GUSBampEmulator() if backend == "emulator" else None
        self.backend = backend
        self.timeout, self.reconnect = timeout, reconnect
        self.buffer_seconds, self.silence_timeout = buffer_seconds, silence_timeout

    # -- the streaming layer's parts --------------------------------------

    def known_layout(self) -> Layout:
        return Layout(tuple(f"Ch{n}" for n in self.channels), float(self.fs))

    def get_units(self) -> list[str]:
        """``'kΩ'`` for every channel in impedance mode, else ``'µV'``."""
        return ["kΩ" if self.mode == "impedance" else "µV"] * len(self.channels)

    def _backend(self) -> Any:
        return self._emulator if self.backend == "emulator" else self.backend

    @property
    def _read_size(self) -> int:
        seconds = max(_READ_SECONDS, _READ_LATENCIES * self.gather)
        return max(1, round(self.fs * seconds)) * proto.FRAME_BYTES

    def _find(self) -> Any:
        """The amp's pyusb device."""
        found, everything = find_devices(self._backend(), match=_is_gtec,
                                         idProduct=proto.PRODUCT_ID)
        if not found:
            raise AmpNotAvailableError(
                "no g.USBamp found (USB vendor 153c or 15c3, product 0001); USB devices "
                f"found: {describe(everything)}. Is it plugged in and switched on?"
            )
        if self.serial is None:
            return found[0]
        serials = []
        for device in found:
            try:
                langid = usb.util.get_langids(device)[0]
                serials.append(usb.util.get_string(device, device.iSerialNumber, langid))
            except (usb.core.USBError, IndexError, ValueError) as exc:
                raise usb_error(exc, f"g.USBamp {describe(device)}",
                                "reading its serial number", device) from None
            finally:
                usb.util.dispose_resources(device)
            if serials[-1] == self.serial:
                return device
        listed = ", ".join(f"{s} ({describe(d)})" for s, d in zip(serials, found, strict=False))
        raise AmpNotAvailableError(f"no g.USBamp with serial {self.serial!r}; found: {listed}")

    def open_transport(self, timeout: float) -> USBTransport:
        return USBTransport(
            self._find(), proto.ENDPOINT, proto.INTERFACE, proto.ALT_SETUP, self._read_size,
            timeout=min(timeout, 1.0), name=self.name,
        )

    def start_stream(self, transport: USBTransport) -> None:  # type: ignore[override]
        # STOP first: an amp left running by a program that ended without
        # stopping it would refuse to be configured.
        transport.control_out(proto.STOP.request)
        bandpass, notch = self._filters
        for t in proto.setup_transfers(self.fs, self.mode, self.common_ground,
                                       self.common_reference, self.calibration, bandpass, notch):
            transport.control_out(t.request, t.value, t.index, t.data)
        transport.set_alt_setting(proto.ALT_STREAM)
        for t in proto.START:
            transport.control_out(t.request, t.value, t.index, t.data)

    def stop_stream(self, transport: USBTransport) -> None:  # type: ignore[override]
        transport.control_out(proto.STOP.request)

    def new_codec(self, reconnected: bool) -> GUSBampCodec:
        self._codec = GUSBampCodec(
            self.name, [n - 1 for n in self.channels], self.mode, self.scale, self._read_size,
            reconnected,
        )
        return self._codec

    # -- beyond the layer -------------------------------------------------

    @EitherMethod
    def is_available(self) -> bool:
        """Whether a g.USBamp is on the USB bus (with the configured serial
        number, when one was asked for and can be read), through the
        configured backend (pyusb's own when asked of the class)."""
        backend = self._emulator if self.backend == "emulator" else self.backend
        if self.backend == "emulator" and backend is None:
            return True
        try:
            found, _ = find_devices(backend, match=_is_gtec, idProduct=proto.PRODUCT_ID)
        except AmpkitError:
            return False
        if not found or not getattr(self, "serial", None):
            return bool(found)
        try:
            self._find()
        except AmpNotAvailableError as exc:
            return "no g.USBamp with serial" not in str(exc)
        except AmpkitError:
            return True  # there, but its serial cannot be read: start() says why
        return True

    def get_impedances(self) -> np.ndarray:
        """Electrode impedances in kΩ, one per channel of ``get_channels()``.

        While stopped: switches the amp to impedance mode, reads for 0.1 s,
        stops it and returns the median of each channel (the configured mode
        stays). While acquiring in impedance mode: the values of the last
        frame read.

        Raises
        ------
        ampkit.errors.StateError
            Acquiring in another mode (the amp measures impedance in a mode
            of its own: stop first).
        ampkit.errors.AmpNotAvailableError
            The amp cannot be reached, or sent nothing within ``timeout``.
        """
        if self.running:
            if self.mode != "impedance":
                raise StateError(
                    f"get_impedances() while acquiring in mode {self.mode!r}: the g.USBamp "
                    "measures impedance in a mode of its own; stop() first")
            assert self._codec is not None
            return self._codec.impedances.copy()
        saved, self.mode = self.mode, "impedance"
        try:
            self.start()
            blocks, rows = [], 0
            need = max(1, round(self.fs * _IMPEDANCE_SECONDS))
            deadline = local_clock() + self.timeout
            while rows < need:
                if local_clock() > deadline:
                    raise AmpNotAvailableError(
                        f"{self.name} sent {rows} impedance values within {self.timeout:g} s")
                data = self.get_data()[0]
                blocks.append(data)
                rows += len(data)
            return np.median(np.concatenate(blocks).astype(np.float64), axis=0)
        finally:
            if self.running:
                self.stop()
            self.mode = saved
