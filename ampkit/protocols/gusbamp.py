"""The g.tec g.USBamp's USB protocol, sans I/O: control transfers, data frames, filters.

What is known of the protocol comes from libmushu's ``libmushu/driver/gtec.py``
(bbci/mushu), written from USB dumps of g.tec's own driver, and from the
documentation of g.tec's C API quoted by other open-source drivers (see
:doc:`/gusbamp`). None of it was verified on hardware by ampkit.

* The amp is configured by vendor OUT control transfers
  (``bmRequestType`` 0x40) on endpoint 0: a request number, a ``wValue`` and
  sometimes a payload (:class:`Transfer`). :func:`setup_transfers` is the
  whole sequence ampkit sends before each start, :data:`START` and
  :data:`STOP` start and stop acquisition.
* Data comes on the bulk IN endpoint 0x86 (alternate setting 1 of interface
  0) as frames of 17 little-endian float32: channels 1..16 and the digital
  trigger input. :class:`FrameParser` cuts a byte stream read in pieces of any
  size into whole frames.
* Each channel has a band-pass and a notch filter, set as 18 little-endian
  doubles (9 ``b`` then 9 ``a`` coefficients, :func:`filter_payload`);
  :func:`butterworth` designs them (numpy only, the design of
  ``scipy.signal.butter``).
* In impedance mode the channels carry a measured voltage that
  :func:`impedance_kohm` converts as libmushu did.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from ampkit.errors import ConfigurationError

__all__ = [
    "VENDOR_IDS", "PRODUCT_ID", "REQUEST_TYPE", "INTERFACE", "ALT_SETUP", "ALT_STREAM",
    "ENDPOINT", "CHANNELS", "FRAME_VALUES", "FRAME_BYTES", "SAMPLING_RATES", "MODES",
    "WAVE_SHAPES", "GROUPS", "NOTCH_BANDS", "MAX_BANDPASS_ORDER", "Request", "Transfer",
    "START", "STOP", "NULL_FILTER", "setup_transfers", "mode_transfers", "dac_payload",
    "parse_dac", "filter_payload", "parse_filter", "group_mask", "butterworth",
    "bandpass_coefficients", "notch_coefficients", "impedance_kohm", "impedance_raw",
    "FrameParser",
]

#: g.tec's USB vendor IDs (libmushu saw amps with either) and the g.USBamp's product ID.
VENDOR_IDS = (0x153C, 0x15C3)
PRODUCT_ID = 0x0001
#: Vendor request, host to device, recipient device.
REQUEST_TYPE = 0x40
INTERFACE = 0
#: Alternate settings of the interface: configuration happens in the first,
#: streaming in the second (libmushu selects setting 1 after configuring).
ALT_SETUP = 0
ALT_STREAM = 1
#: The bulk IN endpoint the frames come on.
ENDPOINT = 0x86
CHANNELS = 16
FRAME_VALUES = CHANNELS + 1
FRAME_BYTES = 4 * FRAME_VALUES
SAMPLING_RATES = (32, 64, 128, 256, 512, 600, 1200, 2400, 4800, 9600, 19200, 38400)
#: Electrode groups of the amp (4 channels each), for common ground and reference.
GROUPS = "ABCD"
#: Band-pass designs of at most this order fit the 9 coefficients of a payload.
MAX_BANDPASS_ORDER = 4
#: Stop bands of the notch filters (g.tec's own notches are 48-52 and 58-62 Hz).
NOTCH_BANDS = {50: (48.0, 52.0), 60: (58.0, 62.0)}
_NOTCH_ORDER = 2
_COEFFICIENTS = 9


class Request:
    """Request numbers (``bRequest``) of the vendor control transfers."""

    MODE_DATA = 0xC0
    MODE_CALIBRATION = 0xC1
    MODE = 0xC2  # wValue 1 data, 2 calibration, 3 impedance
    MODE_IMPEDANCE = 0xC9
    RATE = 0xB6  # wValue: samples per second
    PREPARE = 0xB5  # wValue 0x80 during setup, 0x08 before START
    CHANNELS = 0xB9  # payload: the channels to acquire, 1..16
    SLAVE = 0xCD  # wValue 1: slave, 0: master
    INIT_D3 = 0xD3  # wValue 1 (meaning unknown; in the dump)
    INIT_CA = 0xCA  # wValue 1 (meaning unknown; in the dump)
    BIPOLAR = 0xC8  # 16 bytes, zero: no bipolar derivation (inferred, see the docs)
    COMMON_REFERENCE = 0xBF  # wValue: group mask
    COMMON_GROUND = 0xBE  # wValue: group mask
    CALIBRATION_SIGNAL = 0xCB  # 7 bytes: shape, amplitude, frequency, offset
    BANDPASS = 0xC6  # wValue: channel 1..16; 18 doubles
    NOTCH = 0xC7  # wValue: channel 1..16; 18 doubles
    START = 0xF7
    STOP = 0xB8


class Transfer(NamedTuple):
    """One vendor OUT control transfer: ``bRequest``, ``wValue``, ``wIndex``, payload."""

    request: int
    value: int = 0
    index: int = 0
    data: bytes = b""

    def __str__(self) -> str:
        payload = f", {len(self.data)} bytes" if self.data else ""
        return f"request 0x{self.request:02X} (value {self.value}{payload})"


#: Operating modes: the mode's own request, then ``MODE`` with its value.
MODES = {
    "data": (Request.MODE_DATA, 1),
    "calibration": (Request.MODE_CALIBRATION, 2),
    "impedance": (Request.MODE_IMPEDANCE, 3),
}
#: Calibration signal shapes (libmushu's names) and their code in the payload.
WAVE_SHAPES = {"square": 1, "sawtooth": 2, "sine": 3, "whitenoise": 5}

#: ``PREPARE`` then ``START``: begin acquisition (in alternate setting 1).
START = (Transfer(Request.PREPARE, 0x08), Transfer(Request.START))
#: End acquisition.
STOP = Transfer(Request.STOP)

_FILTER = struct.Struct("<18d")
_DAC = struct.Struct("<BhHH")
#: The "no filter" payload of the dump: 1.0, then 17 zeros.
NULL_FILTER = _FILTER.pack(1.0, *([0.0] * 17))


def mode_transfers(mode: str) -> list[Transfer]:
    """The two transfers that select ``mode`` (``'data'``, ``'calibration'``, ``'impedance'``)."""
    request, value = MODES[mode]
    return [Transfer(request), Transfer(Request.MODE, value)]


def dac_payload(shape: str, amplitude: int = 2000, frequency: int = 2, offset: int = 2047) -> bytes:
    """The 7-byte payload of ``CALIBRATION_SIGNAL``.

    Shape, amplitude (-2000..2000, 2000 being 250 mV according to g.tec's
    C API documentation), frequency in Hz and offset (2047: none); the
    defaults are the values of libmushu's dump.
    """
    return _DAC.pack(WAVE_SHAPES[shape], amplitude, frequency, offset)


def parse_dac(payload: bytes) -> tuple[int, int, int, int]:
    """``(shape code, amplitude, frequency, offset)`` of a ``CALIBRATION_SIGNAL`` payload.

    Raises
    ------
    ValueError
        Not 7 bytes.
    """
    if len(payload) != _DAC.size:
        raise ValueError(f"a calibration signal payload has {_DAC.size} bytes, got {len(payload)}")
    return _DAC.unpack(payload)


def filter_payload(b: Sequence[float], a: Sequence[float]) -> bytes:
    """The 144-byte payload of ``BANDPASS``/``NOTCH``: ``b`` then ``a``,
    each padded with zeros to 9 coefficients.

    Raises
    ------
    ValueError
        More than 9 coefficients, or ones that are not finite.
    """
    b, a = np.asarray(b, np.float64).ravel(), np.asarray(a, np.float64).ravel()
    if len(b) > _COEFFICIENTS or len(a) > _COEFFICIENTS:
        raise ValueError(f"a filter has at most {_COEFFICIENTS} b and a coefficients each")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(a))):
        raise ValueError("filter coefficients must be finite")
    padded = np.zeros(2 * _COEFFICIENTS)
    padded[: len(b)] = b
    padded[_COEFFICIENTS : _COEFFICIENTS + len(a)] = a
    return _FILTER.pack(*padded)


def parse_filter(payload: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """``(b, a)`` of a filter payload (9 each, zero-padded); None for :data:`NULL_FILTER`.

    Raises
    ------
    ValueError
        Not 144 bytes.
    """
    if len(payload) != _FILTER.size:
        raise ValueError(f"a filter payload has {_FILTER.size} bytes, got {len(payload)}")
    if payload == NULL_FILTER:
        return None
    values = np.array(_FILTER.unpack(payload))
    return values[:_COEFFICIENTS], values[_COEFFICIENTS:]


def group_mask(groups: bool | str | Iterable[str]) -> int:
    """The 4-bit mask of electrode groups: True (all), False (none), or group
    letters (``'AB'``, ``['A', 'C']``); bit 0 is group A.

    Raises
    ------
    ampkit.errors.ConfigurationError
        Not one of these.
    """
    if groups is True:
        return 0b1111
    if groups is False or groups is None:
        return 0
    try:
        letters = [str(g).upper() for g in groups]  # type: ignore[union-attr]
    except TypeError:
        letters = ["?"]
    if not letters or any(g not in GROUPS for g in letters):
        raise ConfigurationError(
            f"electrode groups are True (all), False (none) or letters of {GROUPS!r}, "
            f"got {groups!r}"
        )
    return sum(1 << GROUPS.index(g) for g in set(letters))


def setup_transfers(
    fs: int,
    mode: str = "data",
    common_ground: int = 0,
    common_reference: int = 0,
    calibration: str = "sine",
    bandpass: bytes = NULL_FILTER,
    notch: bytes = NULL_FILTER,
) -> list[Transfer]:
    """Every transfer ampkit sends before :data:`START`, in order.

    The order and the fixed transfers are those of libmushu's replay of
    g.tec's driver: the mode, the setup requests, channels 1..16 (the
    channel subset is taken on the host), master mode, common reference
    and ground, the calibration signal, the filters of each of the 16
    channels and the rate last.

    Parameters
    ----------
    fs : int
        One of :data:`SAMPLING_RATES`.
    mode : str
        A key of :data:`MODES`.
    common_ground, common_reference : int
        Group masks (:func:`group_mask`).
    calibration : str
        A key of :data:`WAVE_SHAPES`.
    bandpass, notch : bytes
        Filter payloads for every channel (:func:`filter_payload`).
    """
    transfers = mode_transfers(mode)
    transfers += [
        Transfer(Request.RATE, 0x80),
        Transfer(Request.PREPARE, 0x80),
        Transfer(Request.CHANNELS, 0, 0, bytes(range(1, CHANNELS + 1))),
        Transfer(Request.SLAVE, 0),
        Transfer(Request.INIT_D3, 1),
        Transfer(Request.INIT_CA, 1),
        Transfer(Request.BIPOLAR, 1, 0, bytes(CHANNELS)),
        Transfer(Request.COMMON_REFERENCE, common_reference),
        Transfer(Request.COMMON_GROUND, common_ground),
        Transfer(Request.CALIBRATION_SIGNAL, 0, 0, dac_payload(calibration)),
    ]
    for channel in range(1, CHANNELS + 1):
        transfers.append(Transfer(Request.BANDPASS, channel, 0, bandpass))
        transfers.append(Transfer(Request.NOTCH, channel, 0, notch))
    transfers.append(Transfer(Request.RATE, fs))
    return transfers


# -- filter design --------------------------------------------------------


def butterworth(order: int, band: tuple[float, float], fs: float, btype: str) -> tuple[
        np.ndarray, np.ndarray]:
    """A digital Butterworth band-pass or band-stop filter as ``(b, a)``.

    The design of ``scipy.signal.butter(order, band, btype, fs=fs)``:
    analog prototype poles, the band transform around the pre-warped edges,
    the bilinear transform, then the polynomials. ``2 * order + 1``
    coefficients each.

    Parameters
    ----------
    order : int
        Order of the low-pass prototype (the filter's is twice that).
    band : (float, float)
        Edge frequencies in Hz, ``0 < low < high < fs / 2``.
    fs : float
        Sampling rate in Hz.
    btype : {'bandpass', 'bandstop'}
    """
    low, high = band
    if not 0 < low < high < fs / 2:
        raise ValueError(f"band edges must be 0 < low < high < fs/2 = {fs / 2:g} Hz, got {band}")
    # Analog prototype: poles on the left half of the unit circle, no zeros.
    k = np.arange(-order + 1, order, 2)
    poles = -np.exp(1j * np.pi * k / (2 * order))
    # Pre-warped edges (rad/s) of the digital band for the bilinear transform.
    twice_fs = 2.0 * fs
    warped_low = twice_fs * np.tan(np.pi * low / fs)
    warped_high = twice_fs * np.tan(np.pi * high / fs)
    width = warped_high - warped_low
    center = np.sqrt(warped_low * warped_high)
    if btype == "bandpass":
        scaled = poles * width / 2
        root = np.sqrt(scaled**2 - center**2)
        analog_poles = np.concatenate([scaled + root, scaled - root])
        analog_zeros = np.zeros(order)
        gain = width**order
    elif btype == "bandstop":
        inverted = (width / 2) / poles
        root = np.sqrt(inverted**2 - center**2)
        analog_poles = np.concatenate([inverted + root, inverted - root])
        analog_zeros = np.concatenate([np.full(order, 1j * center), np.full(order, -1j * center)])
        gain = np.real(1.0 / np.prod(-poles))
    else:
        raise ValueError(f"btype must be 'bandpass' or 'bandstop', got {btype!r}")
    # Bilinear transform; zeros at infinity go to z = -1.
    zeros = (twice_fs + analog_zeros) / (twice_fs - analog_zeros)
    zeros = np.concatenate([zeros, -np.ones(len(analog_poles) - len(analog_zeros))])
    digital_poles = (twice_fs + analog_poles) / (twice_fs - analog_poles)
    gain = gain * np.real(np.prod(twice_fs - analog_zeros) / np.prod(twice_fs - analog_poles))
    b = gain * np.real(np.poly(zeros))
    a = np.real(np.poly(digital_poles))
    return b, a


def bandpass_coefficients(low: float, high: float, fs: float, order: int = 4) -> tuple[
        np.ndarray, np.ndarray]:
    """``(b, a)`` of the Butterworth band-pass the amp is given.

    Raises
    ------
    ampkit.errors.ConfigurationError
        An order outside 1..4 or edges outside ``0 < low < high < fs/2``.
    """
    if isinstance(order, bool) or not isinstance(order, int) or not (
            1 <= order <= MAX_BANDPASS_ORDER):
        raise ConfigurationError(
            f"bandpass_order must be 1..{MAX_BANDPASS_ORDER} (the amp takes 9 coefficients), "
            f"got {order!r}"
        )
    if not 0 < low < high < fs / 2:
        raise ConfigurationError(
            f"bandpass=(low, high) needs 0 < low < high < {fs / 2:g} Hz (half of fs={fs:g}), "
            f"got ({low!r}, {high!r})"
        )
    return butterworth(order, (low, high), fs, "bandpass")


def notch_coefficients(line: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """``(b, a)`` of the notch filter for mains at ``line`` Hz (50 or 60): a
    4th-order Butterworth band-stop over :data:`NOTCH_BANDS`.

    Raises
    ------
    ampkit.errors.ConfigurationError
        Not 50 or 60, or a band above half of ``fs``.
    """
    if line not in NOTCH_BANDS or isinstance(line, bool):
        raise ConfigurationError(f"notch must be 50, 60 or None, got {line!r}")
    band = NOTCH_BANDS[line]
    if band[1] >= fs / 2:
        raise ConfigurationError(
            f"a {line} Hz notch needs fs above {2 * band[1]:g} Hz, got fs={fs:g}"
        )
    return butterworth(_NOTCH_ORDER, band, fs, "bandstop")


# -- impedance ------------------------------------------------------------

_APPLIED = 1e4  # the voltage libmushu's conversion takes as applied


def impedance_kohm(measured: np.ndarray) -> np.ndarray:
    """Impedances in kΩ from the values of impedance mode, as libmushu
    converts them (``u * 1e6 / (1e4 - u) - 1e4`` ohms); inf where ``u`` is 1e4."""
    u = np.asarray(measured, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ohms = u * 1e6 / (_APPLIED - u) - 1e4
    return ohms / 1e3


def impedance_raw(kohm: np.ndarray) -> np.ndarray:
    """The value impedance mode reports for an impedance in kΩ (the inverse
    of :func:`impedance_kohm`; the simulator uses it)."""
    ohms = np.asarray(kohm, np.float64) * 1e3
    return _APPLIED * (ohms + 1e4) / (ohms + 1e4 + 1e6)


# -- data -----------------------------------------------------------------

_FLOAT = np.dtype("<f4")


class FrameParser:
    """Cuts the bulk stream, read in pieces of any size, into whole frames.

    Bytes after the last whole frame are kept for the next piece, so a read
    that ends inside a frame never shifts a channel.

    Examples
    --------
    >>> parser = FrameParser()
    >>> stream = np.arange(34, dtype='<f4').tobytes()   # two frames
    >>> parser.feed(stream[:50]).shape, parser.buffered
    ((0, 17), 50)
    >>> parser.feed(stream[50:])[:, 16].tolist()
    [16.0, 33.0]
    """

    def __init__(self) -> None:
        self._rest = b""

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._rest)

    @property
    def missing(self) -> int:
        """Bytes that complete the next frame."""
        return FRAME_BYTES - len(self._rest)

    def feed(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        """The frames ``data`` completes, ``(n, 17)`` float32 (a view of
        ``data`` when no earlier bytes were held back)."""
        view = memoryview(data).cast("B")
        head = None
        if self._rest:
            need = FRAME_BYTES - len(self._rest)
            if len(view) < need:
                self._rest += bytes(view)
                return np.empty((0, FRAME_VALUES), _FLOAT)
            head = np.frombuffer(self._rest + bytes(view[:need]), _FLOAT)
            view = view[need:]
        whole = len(view) - len(view) % FRAME_BYTES
        self._rest = bytes(view[whole:])
        frames = np.frombuffer(view[:whole], _FLOAT).reshape(-1, FRAME_VALUES)
        if head is not None:
            frames = np.concatenate([head[None], frames])
        return frames
