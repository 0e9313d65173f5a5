"""An emulated g.tec g.USBamp, as a pyusb backend.

:class:`GUSBampEmulator` implements pyusb's ``usb.backend.IBackend``: pass it
as ``backend`` and ``usb.core.find`` finds the amps it emulates, with their
descriptors and string descriptors, and every transfer goes to them instead
of to libusb. The ``gusbamp`` driver takes it the same way::

    from ampkit.sim.gusbamp import GUSBampEmulator
    amp = ampkit.get_amp('gusbamp', backend=GUSBampEmulator(), fs=256)

(``backend='emulator'`` creates one, e.g. ``ampkit record gusbamp -c
backend=emulator``.)

Each :class:`EmulatedGUSBamp` checks every vendor control transfer against
what is known of the protocol (:mod:`ampkit.protocols.gusbamp`), records the
ones it accepts in :attr:`~EmulatedGUSBamp.transfers` and stalls the others
(an unknown request, a value out of range, a malformed payload, setup while
streaming), as a device refuses a request. Started, it produces frames paced
at its rate (off by ``ppm`` if asked), handed over in blocks of
``block_frames`` as a device completes its USB transfers; nothing is lost
while nobody reads (the frames are computed when read). The values are
deterministic (:meth:`EmulatedGUSBamp.frames`): channel ``c`` (1..16) of
frame ``k`` is ``100 * c + (k % 65536) / 1024`` µV in data mode, the
calibration signal in calibration mode, a fixed impedance per channel in
impedance mode; the trigger input follows a pattern (pulses of rising value
by default).

Faults: :meth:`~EmulatedGUSBamp.unplug` (and ``plug``), stalled control
transfers and a halted data endpoint, short reads (fewer bytes than a frame's
multiple), reads and transfers that time out, no permission to open
(``deny_access``) and a device in use (``busy``, or claimed by another
handle).

What the real amp does beyond the transfers of libmushu's dump -- its
descriptors past the IDs, what it refuses, its block size, its serial
number's place -- is this emulator's guess; see :doc:`/gusbamp`.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import usb.backend
import usb.core

from ampkit.clock import local_clock
from ampkit.errors import ConfigurationError
from ampkit.pacing import check_ppm, skewed
from ampkit.protocols import gusbamp as proto
from ampkit.protocols.gusbamp import Request, Transfer

__all__ = ["GUSBampEmulator", "EmulatedGUSBamp", "OtherDevice", "DEFAULT_SERIAL"]

DEFAULT_SERIAL = "UA-2020.01.01"
#: libusb's error codes, as pyusb's libusb 1.0 backend passes them.
_ACCESS, _NO_DEVICE, _NOT_FOUND, _BUSY, _TIMEOUT, _PIPE = -3, -4, -5, -6, -7, -9
_MAX_PACKET = 512
_STRINGS = {1: "g.tec medical engineering GmbH", 2: "g.USBamp"}
_LANGID = 0x0409
_UV_PER_DAC_UNIT = 125.0  # 2000 units = 250 mV (g.tec's C API documentation)


def _error(text: str, code: int, number: int) -> usb.core.USBError:
    if code == _TIMEOUT:
        return usb.core.USBTimeoutError(text, code, number)
    return usb.core.USBError(text, code, number)


def _gone() -> usb.core.USBError:
    return _error("No such device (it may have been disconnected)", _NO_DEVICE, errno.ENODEV)


def _stall(why: str) -> usb.core.USBError:
    return _error(f"Pipe error ({why})", _PIPE, errno.EPIPE)


def _timeout() -> usb.core.USBError:
    return _error("Operation timed out", _TIMEOUT, errno.ETIMEDOUT)


class _Handle:
    """An open device, as libusb hands one out."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.generation = device.generation
        self.claimed: set[int] = set()


class OtherDevice:
    """Another device on the emulated bus (found, but of no use to a driver).

    Parameters
    ----------
    vendor, product : int
        Its IDs.
    """

    def __init__(self, vendor: int, product: int) -> None:
        self.vendor, self.product = vendor, product
        self.plugged = True
        self.generation = 0
        self.descriptor = SimpleNamespace(
            bLength=18, bDescriptorType=1, bcdUSB=0x0200, bDeviceClass=9, bDeviceSubClass=0,
            bDeviceProtocol=0, bMaxPacketSize0=64, idVendor=vendor, idProduct=product,
            bcdDevice=0x0100, iManufacturer=0, iProduct=0, iSerialNumber=0, bNumConfigurations=0,
            address=0, bus=1, port_number=0, port_numbers=(), speed=3,
        )


class EmulatedGUSBamp:
    """One emulated g.USBamp: its state, the transfers it took, its faults.

    Parameters
    ----------
    serial : str
        Its serial number (string descriptor 3).
    vendor : int
        One of :data:`ampkit.protocols.gusbamp.VENDOR_IDS`.
    impedances : sequence of 16 float, optional
        Electrode impedances in kΩ reported in impedance mode; default
        ``2 + channel`` (3..18 kΩ).
    trigger_pattern : sequence of (int, int), optional
        ``(frame, value)``: the trigger input takes ``value`` from ``frame``
        on (0 before the first). Default: a pulse every half second (at
        least 2 frames apart) of a tenth of that, of value 1, 2, ... 8, then
        again.
    trigger_period : int, optional
        Frames after which the pattern repeats (None: it does not); with
        the default pattern, 8 pulses.
    ppm : float
        The amp's clock runs this many ppm off its rate.
    block_frames : int, optional
        Frames per USB transfer of the amp (default: 5 ms worth, at least 1).

    Attributes
    ----------
    transfers : list of Transfer
        Every vendor control transfer accepted, in order.
    refused : list of (Transfer, str)
        Every one stalled, with the reason.
    deny_access : bool
        Opening fails as without permission (no udev rule).
    busy : bool
        Claiming the interface fails as when another program holds it.
    frames_sent : int
        Whole frames read since the last start.
    """

    def __init__(
        self,
        serial: str = DEFAULT_SERIAL,
        vendor: int = proto.VENDOR_IDS[0],
        impedances: Sequence[float] | None = None,
        trigger_pattern: Sequence[tuple[int, int]] | None = None,
        trigger_period: int | None = None,
        ppm: float = 0.0,
        block_frames: int | None = None,
        bus: int = 1,
        address: int = 4,
    ) -> None:
        if vendor not in proto.VENDOR_IDS:
            raise ConfigurationError(f"a g.USBamp has vendor ID 0x153c or 0x15c3, got {vendor!r}")
        self.serial = str(serial)
        self.vendor = vendor
        self.impedances = np.asarray(
            [2.0 + c for c in range(1, proto.CHANNELS + 1)] if impedances is None else impedances,
            np.float64)
        if self.impedances.shape != (proto.CHANNELS,):
            raise ConfigurationError(f"impedances: 16 values in kΩ, got {impedances!r}")
        self.ppm = check_ppm(ppm)
        if block_frames is not None and (not isinstance(block_frames, int) or block_frames < 1):
            raise ConfigurationError(f"block_frames must be a positive int, got {block_frames!r}")
        self._block_frames = block_frames
        self._pattern = None if trigger_pattern is None else sorted(
            (int(f), int(v)) for f, v in trigger_pattern)
        self._period = trigger_period
        self.bus, self.address = bus, address
        self.transfers: list[Transfer] = []
        self.refused: list[tuple[Transfer, str]] = []
        self.deny_access = False
        self.busy = False
        self.plugged = True
        self.generation = 0
        self.cpu_seconds = 0.0
        self._cond = threading.Condition(threading.RLock())
        self._stalls: list[int | None] = []  # requests (None: any) to stall next
        self._control_timeouts = 0
        self._read_timeouts = 0
        self._short_reads = 0
        self._halted = False
        self._hung = False
        self._short_rng = np.random.default_rng(0)
        self._claims: dict[int, _Handle] = {}
        self._reset()

    def _reset(self) -> None:
        self.mode = "data"
        self.fs = 128
        self.alt_setting = 0
        self.configuration = 0
        self.running = False
        self.bandpass: dict[int, bytes] = {}
        self.notch: dict[int, bytes] = {}
        self.common_ground = self.common_reference = 0
        self.calibration = (3, 2000, 2, 2047)
        self.channels = list(range(1, proto.CHANNELS + 1))
        self._prepared = False
        self._t0 = 0.0
        self._sent = 0  # bytes read since the start

    # -- what it sends ------------------------------------------------------

    @property
    def true_rate(self) -> float:
        """The rate frames are really produced at: ``fs`` off by ``ppm``."""
        return skewed(self.fs, self.ppm)

    @property
    def block_frames(self) -> int:
        """Frames per USB transfer."""
        return self._block_frames or max(1, int(self.fs * 0.005))

    @property
    def frames_sent(self) -> int:
        """Whole frames read since the last start."""
        return self._sent // proto.FRAME_BYTES

    def sample_time(self, k: np.ndarray | int) -> np.ndarray | float:
        """When frame ``k`` of the current run was taken (``local_clock``)."""
        return self._t0 + (np.asarray(k, np.float64) + 1.0) / self.true_rate

    def trigger_pattern(self) -> tuple[list[tuple[int, int]], int | None]:
        """The trigger pattern in use and its period, in frames."""
        if self._pattern is not None:
            return self._pattern, self._period
        step = max(2, self.fs // 2)
        width = max(1, step // 10)
        pattern = []
        for i in range(8):
            pattern += [(i * step, i + 1), (i * step + width, 0)]
        return pattern, 8 * step

    def triggers(self, first: int, n: int) -> np.ndarray:
        """The trigger input's value for frames ``first .. first + n - 1``."""
        pattern, period = self.trigger_pattern()
        k = np.arange(first, first + n, dtype=np.int64)
        if period:
            k %= period
        at = np.array([f for f, _ in pattern], np.int64)
        values = np.array([0] + [v for _, v in pattern], np.float32)
        return values[np.searchsorted(at, k, side="right")]

    def frames(self, first: int, n: int) -> np.ndarray:
        """The frames ``first .. first + n - 1`` of a run in the current mode,
        ``(n, 17)`` float32: what the amp sends."""
        out = np.empty((n, proto.FRAME_VALUES), np.float32)
        k = np.arange(first, first + n, dtype=np.int64)
        if self.mode == "impedance":
            out[:, : proto.CHANNELS] = proto.impedance_raw(self.impedances)
            out[:, proto.CHANNELS] = 0.0
            return out
        if self.mode == "calibration":
            shape, amplitude, frequency, _ = self.calibration
            phase = (k * frequency / self.fs) % 1.0
            if shape == 1:
                wave = np.where(phase < 0.5, 1.0, -1.0)
            elif shape == 2:
                wave = 2.0 * phase - 1.0
            elif shape == 3:
                wave = np.sin(2 * np.pi * phase)
            elif shape == 5:
                wave = ((k * 2654435761) % 2**32) / 2**31 - 1.0  # a hash of k: repeatable noise
            else:
                wave = np.zeros(n)
            out[:, : proto.CHANNELS] = (amplitude * _UV_PER_DAC_UNIT * wave)[:, None]
        else:
            ramp = (k % 65536).astype(np.float32) / np.float32(1024)
            out[:, : proto.CHANNELS] = ramp[:, None] + 100 * np.arange(
                1, proto.CHANNELS + 1, dtype=np.float32)
        out[:, proto.CHANNELS] = self.triggers(first, n)
        return out

    # -- faults -------------------------------------------------------------

    def unplug(self) -> None:
        """Pull the cable: the amp leaves the bus, every transfer fails."""
        with self._cond:
            self.plugged = False
            self.generation += 1
            self._claims.clear()
            self._cond.notify_all()

    def plug(self) -> None:
        """Plug it in again: found again (at a new address), reset."""
        with self._cond:
            if not self.plugged:
                self.plugged = True
                self.address += 1
                self._reset()

    def stall_control(self, request: int | None = None, count: int = 1) -> None:
        """Stall the next ``count`` vendor transfers of ``request`` (None: of any)."""
        with self._cond:
            self._stalls += [request] * count

    def stall_endpoint(self) -> None:
        """Halt the data endpoint: reads stall until the host clears the halt."""
        with self._cond:
            self._halted = True
            self._cond.notify_all()

    def short_reads(self, count: int) -> None:
        """The next ``count`` data reads return fewer bytes, not a whole number of frames."""
        with self._cond:
            self._short_reads += count

    def timeouts(self, count: int, control: bool = False) -> None:
        """The next ``count`` data reads (or control transfers) time out."""
        with self._cond:
            if control:
                self._control_timeouts += count
            else:
                self._read_timeouts += count

    def hang(self, hung: bool = True) -> None:
        """Stop answering data reads (every read times out) until ``hang(False)``."""
        with self._cond:
            self._hung = hung
            self._cond.notify_all()

    # -- USB ------------------------------------------------------------------

    def _check(self, handle: _Handle) -> None:
        if not self.plugged or handle.generation != self.generation:
            raise _gone()

    def claim(self, handle: _Handle, interface: int) -> None:
        with self._cond:
            self._check(handle)
            if interface != proto.INTERFACE:
                raise _error("Entity not found", _NOT_FOUND, errno.ENOENT)
            holder = self._claims.get(interface)
            if self.busy or (holder is not None and holder is not handle):
                raise _error("Resource busy", _BUSY, errno.EBUSY)
            self._claims[interface] = handle
            handle.claimed.add(interface)

    def release(self, handle: _Handle, interface: int) -> None:
        with self._cond:
            handle.claimed.discard(interface)
            if self._claims.get(interface) is handle:
                del self._claims[interface]

    def set_configuration(self, handle: _Handle, value: int) -> None:
        with self._cond:
            self._check(handle)
            if any(h is not handle for h in self._claims.values()):
                raise _error("Resource busy", _BUSY, errno.EBUSY)
            if value not in (0, 1):
                raise _error("Entity not found", _NOT_FOUND, errno.ENOENT)
            self.configuration = value
            self.alt_setting = 0

    def set_alt_setting(self, handle: _Handle, interface: int, alt: int) -> None:
        with self._cond:
            self._check(handle)
            if interface not in handle.claimed or alt not in (proto.ALT_SETUP, proto.ALT_STREAM):
                raise _error("Entity not found", _NOT_FOUND, errno.ENOENT)
            self.alt_setting = alt
            self._halted = False

    def string(self, index: int) -> bytes:
        """String descriptor ``index`` (0: the language IDs)."""
        if index == 0:
            body = _LANGID.to_bytes(2, "little")
        elif index == 3:
            body = self.serial.encode("utf-16-le")
        elif index in _STRINGS:
            body = _STRINGS[index].encode("utf-16-le")
        else:
            raise _stall(f"no string {index}")
        return bytes([2 + len(body), 3]) + body

    def control(self, handle: _Handle, request_type: int, request: int, value: int, index: int,
                data: Any, timeout: int) -> int:
        with self._cond:
            self._check(handle)
            if request_type == 0x80 and request == 6 and value >> 8 == 3:  # GET_DESCRIPTOR, string
                descriptor = self.string(value & 0xFF)[: len(data)]
                memoryview(data).cast("B")[: len(descriptor)] = descriptor
                return len(descriptor)
            payload = bytes(data)
            transfer = Transfer(request, value, index, payload)
            if self._control_timeouts:
                self._control_timeouts -= 1
                wait = timeout / 1000.0 if timeout else 1.0
            else:
                wait = None
        if wait is not None:
            time.sleep(min(wait, 1.0))
            raise _timeout()
        with self._cond:
            self._check(handle)
            if request_type != proto.REQUEST_TYPE:
                why = f"bmRequestType 0x{request_type:02X}"
            elif self._stalls and self._stalls[0] in (None, request):
                self._stalls.pop(0)
                why = "stall injected"
            else:
                why = self._vendor(transfer)
            if why:
                self.refused.append((transfer, why))
                raise _stall(why)
            self.transfers.append(transfer)
            self._cond.notify_all()
            return len(payload)

    def _vendor(self, t: Transfer) -> str:
        """Act on a vendor transfer; the reason it is refused, or ''."""
        request, value, data = t.request, t.value, t.data
        if t.index != 0:
            return "wIndex must be 0"
        if self.running and request != Request.STOP:
            return "setup while streaming"
        takes_data = {Request.CHANNELS, Request.BIPOLAR, Request.CALIBRATION_SIGNAL,
                      Request.BANDPASS, Request.NOTCH}
        if data and request not in takes_data:
            return "no payload expected"
        if request in (Request.MODE_DATA, Request.MODE_CALIBRATION, Request.MODE_IMPEDANCE):
            return "" if value == 0 else "value must be 0"
        if request == Request.MODE:
            modes = {v: m for m, (_, v) in proto.MODES.items()}
            if value not in modes:
                return "mode must be 1, 2 or 3"
            self.mode = modes[value]
        elif request == Request.RATE:
            if value not in proto.SAMPLING_RATES:
                return f"no sampling rate {value}"
            self.fs = value
        elif request == Request.PREPARE:
            if value not in (0x80, 0x08):
                return "value must be 0x80 or 0x08"
            self._prepared = value == 0x08
            return ""
        elif request == Request.CHANNELS:
            if not 1 <= len(data) <= proto.CHANNELS or len(set(data)) != len(data) or not all(
                    1 <= c <= proto.CHANNELS for c in data):
                return "channels: 1..16 distinct numbers in 1..16"
            self.channels = list(data)
        elif request == Request.SLAVE:
            if value not in (0, 1):
                return "value must be 0 or 1"
        elif request in (Request.INIT_D3, Request.INIT_CA):
            if value != 1:
                return "value must be 1"
        elif request == Request.BIPOLAR:
            if value != 1 or len(data) != proto.CHANNELS or any(c > proto.CHANNELS for c in data):
                return "bipolar: value 1 and 16 channel numbers (0: none)"
        elif request in (Request.COMMON_GROUND, Request.COMMON_REFERENCE):
            if not 0 <= value <= 0b1111:
                return "group mask must be 0..15"
            if request == Request.COMMON_GROUND:
                self.common_ground = value
            else:
                self.common_reference = value
        elif request == Request.CALIBRATION_SIGNAL:
            try:
                shape, amplitude, frequency, offset = proto.parse_dac(data)
            except ValueError as exc:
                return str(exc)
            if shape not in (1, 2, 3, 4, 5) or not -2000 <= amplitude <= 2000 \
                    or frequency < 1 or offset > 4096:
                return "calibration signal out of range"
            self.calibration = (shape, amplitude, frequency, offset)
        elif request in (Request.BANDPASS, Request.NOTCH):
            if not 1 <= value <= proto.CHANNELS:
                return "channel must be 1..16"
            try:
                coefficients = proto.parse_filter(data)
            except ValueError as exc:
                return str(exc)
            if coefficients is not None:
                b, a = coefficients
                if not (np.all(np.isfinite(b)) and np.all(np.isfinite(a))) or a[0] == 0:
                    return "filter coefficients must be finite with a[0] != 0"
            (self.bandpass if request == Request.BANDPASS else self.notch)[value] = data
        elif request == Request.START:
            if self.alt_setting != proto.ALT_STREAM or not self._prepared:
                return "start needs alternate setting 1 and request 0xB5 value 0x08 first"
            self.running = True
            self._prepared = False
            self._t0 = local_clock()
            self._sent = 0
        elif request == Request.STOP:
            self.running = False
        else:
            return "unknown request"
        if request != Request.PREPARE:
            self._prepared = False
        return ""

    def clear_halt(self, handle: _Handle, endpoint: int) -> None:
        with self._cond:
            self._check(handle)
            self._halted = False

    def read(self, handle: _Handle, endpoint: int, buffer: Any, timeout: int) -> int:
        """A bulk read of the data endpoint (blocks like libusb's)."""
        deadline = local_clock() + (timeout / 1000.0 if timeout else 3600.0)
        with self._cond:
            self._check(handle)
            if endpoint != proto.ENDPOINT or self.alt_setting != proto.ALT_STREAM \
                    or proto.INTERFACE not in handle.claimed:
                raise _error("Invalid parameter", -2, errno.EINVAL)
            timed_out = self._read_timeouts > 0
            if timed_out:
                self._read_timeouts -= 1
            while True:
                self._check(handle)
                if self._halted:
                    raise _stall("endpoint halted")
                now = local_clock()
                due = self._due(now) if self.running and not (self._hung or timed_out) else 0
                if due > self._sent:
                    break
                if now >= deadline:
                    raise _timeout()
                wait = deadline - now
                if self.running and not (self._hung or timed_out):
                    block = self.block_frames
                    done = int((now - self._t0) * self.true_rate) // block + 1
                    wait = min(wait, self._t0 + done * block / self.true_rate - now)
                self._cond.wait(max(wait, 0.0))
            started = time.thread_time()
            size = len(buffer) * buffer.itemsize
            n = min(size, due - self._sent)
            if self._short_reads and n > 1:
                self._short_reads -= 1
                n = int(self._short_rng.integers(1, n))
                if n % proto.FRAME_BYTES == 0:
                    n -= 1
            first = self._sent // proto.FRAME_BYTES
            count = -(-(self._sent + n) // proto.FRAME_BYTES) - first
            skip = self._sent - first * proto.FRAME_BYTES
            raw = self.frames(first, count).view(np.uint8).reshape(-1)
            memoryview(buffer).cast("B")[:n] = raw[skip : skip + n]
            self._sent += n
            self.cpu_seconds += time.thread_time() - started
            return n

    def _due(self, now: float) -> int:
        """Bytes the amp has handed to USB by ``now`` (whole blocks)."""
        block = self.block_frames
        frames = int((now - self._t0) * self.true_rate) // block * block
        return frames * proto.FRAME_BYTES


def _device_descriptor(amp: EmulatedGUSBamp) -> SimpleNamespace:
    return SimpleNamespace(
        bLength=18, bDescriptorType=1, bcdUSB=0x0200, bDeviceClass=0, bDeviceSubClass=0,
        bDeviceProtocol=0, bMaxPacketSize0=64, idVendor=amp.vendor, idProduct=proto.PRODUCT_ID,
        bcdDevice=0x0100, iManufacturer=1, iProduct=2, iSerialNumber=3, bNumConfigurations=1,
        address=amp.address, bus=amp.bus, port_number=1, port_numbers=(1,), speed=3,
    )


class GUSBampEmulator(usb.backend.IBackend):
    """A pyusb backend whose bus holds emulated g.USBamps (and other devices).

    Parameters
    ----------
    serial : str
        Serial number of the first amp.
    others : sequence of (int, int)
        ``(vendor, product)`` of other devices on the bus (found, useless).
    amps : int
        Number of amps (serial numbers count up from ``serial``'s last digits).
    **options
        For each :class:`EmulatedGUSBamp` (``ppm``, ``impedances``,
        ``trigger_pattern``, ``block_frames``...).

    Attributes
    ----------
    amps : list of EmulatedGUSBamp
    amp : EmulatedGUSBamp
        The first.

    Examples
    --------
    >>> import usb.core
    >>> emulator = GUSBampEmulator()
    >>> device = usb.core.find(idVendor=0x153C, backend=emulator)
    >>> device.idProduct, device.serial_number
    (1, 'UA-2020.01.01')
    """

    def __init__(
        self, serial: str = DEFAULT_SERIAL, others: Sequence[tuple[int, int]] = (),
        amps: int = 1, **options: Any,
    ) -> None:
        super().__init__()
        self.amps: list[EmulatedGUSBamp] = []
        stem, _, number = serial.rpartition(".")
        for i in range(amps):
            name = serial if i == 0 or not number.isdigit() else (
                f"{stem}.{int(number) + i:0{len(number)}d}")
            self.amps.append(EmulatedGUSBamp(name, address=4 + i, **options))
        self.others = [OtherDevice(v, p) for v, p in others]

    @property
    def amp(self) -> EmulatedGUSBamp:
        """The first emulated amp."""
        return self.amps[0]

    @property
    def cpu_seconds(self) -> float:
        """Thread CPU seconds the amps spent producing data (not waiting)."""
        return sum(a.cpu_seconds for a in self.amps)

    # -- IBackend ---------------------------------------------------------

    def enumerate_devices(self) -> list[Any]:
        return [d for d in [*self.others, *self.amps] if d.plugged]

    def get_parent(self, dev: Any) -> None:
        return None

    def get_device_descriptor(self, dev: Any) -> SimpleNamespace:
        if isinstance(dev, OtherDevice):
            return dev.descriptor
        return _device_descriptor(dev)

    def get_configuration_descriptor(self, dev: Any, config: int) -> SimpleNamespace:
        if isinstance(dev, OtherDevice) or config != 0:
            raise IndexError(config)
        return SimpleNamespace(
            bLength=9, bDescriptorType=2, wTotalLength=9 + 9 + 9 + 7, bNumInterfaces=1,
            bConfigurationValue=1, iConfiguration=0, bmAttributes=0x80, bMaxPower=250,
            extra_descriptors=[],
        )

    def get_interface_descriptor(self, dev: Any, intf: int, alt: int, config: int) -> Any:
        if isinstance(dev, OtherDevice) or config != 0 or intf != 0 or alt not in (0, 1):
            raise IndexError((intf, alt))
        return SimpleNamespace(
            bLength=9, bDescriptorType=4, bInterfaceNumber=proto.INTERFACE, bAlternateSetting=alt,
            bNumEndpoints=alt, bInterfaceClass=0xFF, bInterfaceSubClass=0, bInterfaceProtocol=0,
            iInterface=0, extra_descriptors=[],
        )

    def get_endpoint_descriptor(self, dev: Any, ep: int, intf: int, alt: int, config: int) -> Any:
        if isinstance(dev, OtherDevice) or (config, intf, alt, ep) != (0, 0, 1, 0):
            raise IndexError(ep)
        return SimpleNamespace(
            bLength=7, bDescriptorType=5, bEndpointAddress=proto.ENDPOINT, bmAttributes=2,
            wMaxPacketSize=_MAX_PACKET, bInterval=0, bRefresh=0, bSynchAddress=0,
            extra_descriptors=[],
        )

    def open_device(self, dev: Any) -> _Handle:
        if not dev.plugged:
            raise _gone()
        if isinstance(dev, OtherDevice) or dev.deny_access:
            raise _error("Access denied (insufficient permissions)", _ACCESS, errno.EACCES)
        return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        for interface in list(dev_handle.claimed):
            dev_handle.device.release(dev_handle, interface)

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        dev_handle.device.set_configuration(dev_handle, config_value)

    def get_configuration(self, dev_handle: _Handle) -> int:
        dev_handle.device._check(dev_handle)
        return dev_handle.device.configuration

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        dev_handle.device.set_alt_setting(dev_handle, intf, altsetting)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        dev_handle.device.claim(dev_handle, intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        dev_handle.device.release(dev_handle, intf)

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        return dev_handle.device.read(dev_handle, ep, buff, timeout)

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        raise _error("Invalid parameter", -2, errno.EINVAL)

    def ctrl_transfer(self, dev_handle: _Handle, bmRequestType: int, bRequest: int,  # noqa: N803
                      wValue: int, wIndex: int, data: Any, timeout: int) -> int:  # noqa: N803
        return dev_handle.device.control(dev_handle, bmRequestType, bRequest, wValue, wIndex,
                                         data, timeout)

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        dev_handle.device.clear_halt(dev_handle, ep)

    def reset_device(self, dev_handle: _Handle) -> None:
        amp = dev_handle.device
        with amp._cond:
            amp._check(dev_handle)
            amp._reset()

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return False

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None
