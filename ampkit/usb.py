"""USB devices through pyusb: finding them, and a bulk IN endpoint as a byte stream.

:class:`USBTransport` is the :class:`~ampkit.transport.Transport` of a USB
device: ``recv_into`` reads its bulk IN endpoint, so the streaming layer
(:mod:`ampkit.streaming`) reads a USB amplifier as it reads a socket. Its
control pipe is there too (:meth:`USBTransport.control_out`), for the
driver's own dialogue with the device (the requests are the driver's; the
transport knows no protocol).

pyusb reads whole USB packets: a read shorter than the device's packet could
overflow, so the transport reads a multiple of the endpoint's packet size
into a buffer of its own and keeps what did not fit into the caller's buffer
for the next call. A read that times out is "nothing came" (0 bytes; the
streaming layer decides when silence means a dead device); an endpoint that
stalls is cleared and read again.

Every pyusb error becomes an :mod:`ampkit.errors` exception that says what
to do (:func:`usb_error`): no permission (with the udev rule to add), the
device in use by another program, unplugged, no USB library.

A pyusb *backend* decides where devices come from: ``None`` is pyusb's own
choice (libusb 1.0, ...); tests and users without hardware pass an emulator,
e.g. :class:`ampkit.sim.gusbamp.GUSBampEmulator`.
"""

from __future__ import annotations

import array
import errno
import logging
import math
from collections.abc import Callable
from typing import Any

import usb.backend.libusb0
import usb.backend.libusb1
import usb.backend.openusb
import usb.core
import usb.util

from ampkit.clock import local_clock
from ampkit.errors import (
    AmpkitError,
    AmpNotAvailableError,
    ConnectionLostError,
    ProtocolError,
)
from ampkit.transport import Transport

__all__ = [
    "USBTransport", "find_devices", "default_backend", "describe", "udev_rule", "usb_error",
]

logger = logging.getLogger("ampkit")

#: libusb's own error codes for the cases that need their own message
#: (pyusb passes them as ``backend_error_code``; errno is not set everywhere).
_LIBUSB_ACCESS, _LIBUSB_NO_DEVICE, _LIBUSB_BUSY, _LIBUSB_TIMEOUT, _LIBUSB_PIPE = (
    -3, -4, -6, -7, -9)
#: Stalls of the bulk endpoint in a row after which it counts as broken.
_MAX_STALLS = 3
#: Seconds a read waits at least (libusb's timeouts are whole milliseconds).
_LEAST_WAIT = 0.001
_UNKNOWN = object()
_default_backend: Any = _UNKNOWN


def default_backend() -> Any:
    """pyusb's own choice of backend (libusb 1.0, OpenUSB, libusb 0.1), or
    None when none of them is installed.

    Looked for once per process: without libusb, pyusb looks for the library
    on every ``usb.core.find`` (tenths of a second each), and asking whether
    a device is there must stay quick.
    """
    global _default_backend
    if _default_backend is _UNKNOWN:
        found = None
        for module in (usb.backend.libusb1, usb.backend.openusb, usb.backend.libusb0):
            found = module.get_backend()
            if found is not None:
                break
        _default_backend = found
    return _default_backend


def _kind(exc: BaseException) -> str:
    """``'access'``, ``'busy'``, ``'gone'``, ``'timeout'``, ``'stall'`` or ``'other'``."""
    code = getattr(exc, "backend_error_code", None)
    number = getattr(exc, "errno", None)
    if isinstance(exc, usb.core.USBTimeoutError) or code == _LIBUSB_TIMEOUT \
            or number == errno.ETIMEDOUT:
        return "timeout"
    if code == _LIBUSB_ACCESS or number in (errno.EACCES, errno.EPERM):
        return "access"
    if code == _LIBUSB_BUSY or number == errno.EBUSY:
        return "busy"
    if code == _LIBUSB_NO_DEVICE or number in (errno.ENODEV, errno.ENXIO):
        return "gone"
    if code == _LIBUSB_PIPE or number == errno.EPIPE:
        return "stall"
    return "other"


def udev_rule(vendor: int, product: int) -> str:
    """The udev rule that lets every user open a device (Linux).

    Examples
    --------
    >>> udev_rule(0x153C, 0x0001)
    'SUBSYSTEM=="usb", ATTR{idVendor}=="153c", ATTR{idProduct}=="0001", MODE="0666"'
    """
    return (f'SUBSYSTEM=="usb", ATTR{{idVendor}}=="{vendor:04x}", '
            f'ATTR{{idProduct}}=="{product:04x}", MODE="0666"')


def describe(devices: Any) -> str:
    """``'153c:0001 on bus 1 address 4'``; for a list or tuple of devices, each
    of them, separated by commas (``'none'`` for none)."""
    if isinstance(devices, (list, tuple)):
        return ", ".join(describe(d) for d in devices) or "none"
    return (f"{devices.idVendor:04x}:{devices.idProduct:04x} on bus {devices.bus} "
            f"address {devices.address}")


def usb_error(exc: BaseException, name: str, doing: str, device: Any = None) -> AmpkitError:
    """The ampkit error for a pyusb error met while ``doing`` something.

    Parameters
    ----------
    exc : BaseException
        The pyusb error (``usb.core.USBError`` or one of its kind).
    name : str
        Names the device.
    doing : str
        What failed (``'opening it'``, ``'request 0xB6'``...).
    device : usb.core.Device, optional
        For the udev rule of a permission error.

    Returns
    -------
    AmpkitError
        :class:`~ampkit.errors.AmpNotAvailableError` for no permission and a
        device in use, :class:`~ampkit.errors.ConnectionLostError` for an
        unplugged device, a timeout or another failure,
        :class:`~ampkit.errors.ProtocolError` for a request the device
        refused (a stall).
    """
    kind = _kind(exc)
    if kind == "access":
        rule = "" if device is None else (
            f": add the udev rule '{udev_rule(device.idVendor, device.idProduct)}' to "
            f"/etc/udev/rules.d/50-ampkit.rules, run 'sudo udevadm control --reload-rules && "
            f"sudo udevadm trigger' and plug it in again")
        return AmpNotAvailableError(f"{name}: no permission for {doing} ({exc}){rule}")
    if kind == "busy":
        return AmpNotAvailableError(
            f"{name} is in use by another program (or another amp object of this one) "
            f"({doing}: {exc}): close that first")
    if kind == "gone":
        return ConnectionLostError(f"{name} went away during {doing}: unplugged? ({exc})")
    if kind == "stall":
        return ProtocolError(f"{name} refused {doing} (the device stalled: {exc})")
    if kind == "timeout":
        return ConnectionLostError(f"{name} did not answer {doing} in time ({exc})")
    return ConnectionLostError(f"{name}: {doing} failed: {exc}")


def find_devices(
    backend: Any, match: Callable[[Any], bool] | None = None, **fields: int
) -> tuple[list[Any], list[Any]]:
    """USB devices whose descriptor fields match, and every device found.

    Parameters
    ----------
    backend : pyusb backend or None
        None: :func:`default_backend`.
    match : callable, optional
        A further test of a device.
    **fields
        Descriptor fields to match (``idProduct=1``).

    Returns
    -------
    matching, everything : list of usb.core.Device

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        pyusb has no backend (libusb is not installed), or enumerating failed.
    """
    if backend is None:
        backend = default_backend()
    if backend is None:
        raise AmpNotAvailableError(
            "pyusb found no USB library: install libusb 1.0 (Debian/Ubuntu: apt install "
            "libusb-1.0-0; macOS: brew install libusb; Windows: see the pyusb FAQ)"
        )
    try:
        everything = list(usb.core.find(find_all=True, backend=backend))
    except usb.core.USBError as exc:
        raise AmpNotAvailableError(f"listing USB devices failed: {exc}") from exc

    def matches(device: Any) -> bool:
        return all(getattr(device, key) == value for key, value in fields.items()) and (
            match is None or match(device))

    return [d for d in everything if matches(d)], everything


class USBTransport(Transport):
    """The bulk IN endpoint of a USB device as a byte stream, and its control pipe.

    Opening sets the device's configuration, detaches a kernel driver that
    holds the interface, claims it and selects ``alt_setting``.

    Parameters
    ----------
    device : usb.core.Device
        Found with :func:`find_devices` (or ``usb.core.find``).
    endpoint : int
        Address of the bulk IN endpoint (``0x86``).
    interface : int
        The interface holding it.
    alt_setting : int
        Alternate setting selected on opening.
    read_size : int
        Bytes asked of the endpoint per read (rounded up to whole packets):
        large enough for a few milliseconds of data.
    timeout : float
        Seconds a control transfer may take.
    name : str, optional
        Names the device in errors.

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        No permission, or the device is in use.
    ampkit.errors.ConnectionLostError
        The device went away or failed while opening.
    """

    def __init__(
        self,
        device: Any,
        endpoint: int,
        interface: int = 0,
        alt_setting: int = 0,
        read_size: int = 16384,
        timeout: float = 1.0,
        name: str = "",
    ) -> None:
        self.device = device
        self.endpoint = endpoint
        self.interface = interface
        self.timeout = timeout
        self.name = name or f"USB device {describe(device)}"
        self._read_size = max(1, int(read_size))
        self._buf = array.array("B")
        self._view = memoryview(self._buf)
        self._start = self._end = 0  # what the last read left for the next call
        self._stalls = 0
        self._emptied = -math.inf  # when a transfer last came back short
        self._closed = False
        try:
            self._call("opening it", self._open, alt_setting)
        except BaseException:
            self.close()
            raise

    def _open(self, alt_setting: int) -> None:
        device = self.device
        try:
            active = device.is_kernel_driver_active(self.interface)
        except (NotImplementedError, usb.core.USBError):
            active = False  # not on this platform, or it cannot tell
        if active:
            device.detach_kernel_driver(self.interface)
        device.set_configuration()
        usb.util.claim_interface(device, self.interface)
        self.set_alt_setting(alt_setting)

    def _call(self, doing: str, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` with pyusb's errors as ampkit's."""
        try:
            return function(*args)
        except usb.core.USBError as exc:
            raise usb_error(exc, self.name, doing, self.device) from None

    def set_alt_setting(self, alt_setting: int) -> None:
        """Select an alternate setting of the interface; the next read uses
        the endpoint's packet size in it."""
        self._call(f"selecting alternate setting {alt_setting}",
                   self.device.set_interface_altsetting, self.interface, alt_setting)
        setting = usb.util.find_descriptor(
            self.device.get_active_configuration(), bInterfaceNumber=self.interface,
            bAlternateSetting=alt_setting)
        found = None if setting is None else usb.util.find_descriptor(
            setting, bEndpointAddress=self.endpoint)
        if found is not None:
            packet = max(1, int(found.wMaxPacketSize) & 0x7FF)
            size = -(-self._read_size // packet) * packet
            if size != len(self._buf):
                self._buf = array.array("B", bytes(size))
                self._view = memoryview(self._buf)
                self._start = self._end = 0

    def control_out(
        self, request: int, value: int = 0, index: int = 0, data: bytes = b"",
        request_type: int = 0x40, attempts: int = 3,
    ) -> None:
        """Send a control transfer to the device (host to device).

        A transfer that times out is sent again, up to ``attempts`` times.

        Parameters
        ----------
        request, value, index : int
            ``bRequest``, ``wValue``, ``wIndex``.
        data : bytes
            The payload.
        request_type : int
            ``bmRequestType`` (0x40: vendor request to the device).
        attempts : int
            Tries before a timeout is reported.

        Raises
        ------
        ampkit.errors.ProtocolError
            The device refused the request (stalled).
        ampkit.errors.AmpNotAvailableError
            It did not answer within ``attempts`` tries.
        ampkit.errors.ConnectionLostError
            It went away.
        """
        doing = f"request 0x{request:02X} (value {value})"
        for attempt in range(1, attempts + 1):
            try:
                self.device.ctrl_transfer(request_type, request, value, index, data,
                                          max(1, round(self.timeout * 1000)))
                return
            except usb.core.USBError as exc:
                if _kind(exc) != "timeout":
                    raise usb_error(exc, self.name, doing, self.device) from None
                logger.warning("%s: %s timed out (try %d of %d)", self.name, doing,
                               attempt, attempts)
        raise AmpNotAvailableError(
            f"{self.name} did not answer {doing} in {attempts} tries of {self.timeout:g} s: "
            "is it switched on and its cable plugged in firmly?")

    def recv_into(self, buffer: memoryview, timeout: float = 0.0, want: int = 1) -> int:
        start, end = self._start, self._end
        if start == end:
            if timeout <= 0 and local_clock() - self._emptied < _LEAST_WAIT:
                # The device had no more a moment ago: another transfer would
                # wait its least time (a wake-up) for nothing.
                return 0
            end = self._read(timeout)
            start = 0
            if not end:
                return 0
        n = min(len(buffer), end - start)
        buffer[:n] = self._view[start : start + n]
        self._start, self._end = start + n, end
        return n

    def _read(self, timeout: float) -> int:
        """One read of the endpoint into the own buffer; bytes read (0: none came)."""
        try:
            # libusb reads without waiting only in its asynchronous API: the
            # least wait here is a millisecond (and 0 would be forever).
            n = self.device.read(self.endpoint, self._buf,
                                 max(1, round(timeout * 1000)))
        except usb.core.USBError as exc:
            kind = _kind(exc)
            if kind == "timeout":
                self._emptied = local_clock()
                return 0
            if kind == "stall" and self._stalls < _MAX_STALLS:
                self._stalls += 1
                logger.warning("%s: the data endpoint stalled; clearing it", self.name)
                try:
                    self.device.clear_halt(self.endpoint)
                except usb.core.USBError as again:
                    raise usb_error(again, self.name, "clearing the stalled endpoint",
                                    self.device) from None
                return 0
            error = usb_error(exc, self.name, "reading data", self.device)
            if isinstance(error, ConnectionLostError):
                raise error from None
            raise ConnectionLostError(str(error)) from None
        self._stalls = 0
        if n < len(self._buf):
            self._emptied = local_clock()
        return n

    def close(self) -> None:
        """Release the interface and the device (errors of a device that is
        gone are ignored)."""
        if self._closed:
            return
        self._closed = True
        try:
            usb.util.dispose_resources(self.device)
        except usb.core.USBError as exc:
            logger.debug("%s: releasing: %s", self.name, exc)
