"""The OpenBCI Cyton serial protocol, sans I/O.

The Cyton (an ADS1299 board, 8 channels, or 16 with the Daisy module) talks
to the computer through its USB radio dongle at 115200 baud, 8-N-1. This
module turns bytes into samples and settings into bytes; it never touches a
port, so the driver (:mod:`ampkit.drivers.cyton`) and the simulator
(:mod:`ampkit.sim.cyton`) share it, and it can be fuzzed.

Data packets are 33 bytes::

    0      0xA0 (start)
    1      sample number, uint8, wraps 255 -> 0
    2-25   8 channels, 24-bit signed big-endian ADC counts
    26-31  3 aux values, int16 big-endian (accelerometer X, Y, Z when the
           footer is 0xC0)
    32     footer 0xC0..0xC6 (0xC0: aux carries the accelerometer)

With the Daisy module the board alternates: an even sample number carries
channels 9-16, the following odd one channels 1-8; each pair (counting from
0 at ``b``) is one 16-channel sample (125 Hz at the board's 250 Hz). This
is the pairing of the firmware's sample counter and of BrainFlow.

Scaling: ``µV = count * 4.5 / gain / (2**23 - 1) * 1e6`` with the channel's
programmable gain (24 after reset: 0.02235 µV per count), and
``g = count * 0.002 / 16`` for the accelerometer.

Outside streaming the board answers commands with text ending in ``$$$``
(:class:`ResponseReader`). Commands are single characters (``v`` soft reset,
``d`` default channel settings, ``b``/``s`` start/stop streaming, ``c``/``C``
8/16 channels) or short sequences (``x<ch><power><gain><input><bias><srb2>
<srb1>X`` channel settings, ``~<0-6>`` sample rate), split by
:class:`CommandParser`; :class:`GainTracker` follows the gains they set.

The parts:

* :class:`PacketParser` -- bytes in arbitrary chunks to :class:`PacketBatch`,
  resynchronising on ``0xA0`` after garbage and rejecting bad footers;
* :class:`SampleAssembler` -- packets to samples: sample-number gap detection
  (with wrap-around), Daisy pairing, accelerometer hold;
* :func:`counts_to_uv`, :func:`uv_to_counts`, :func:`accel_to_g`,
  :func:`g_to_accel` -- scaling;
* :func:`encode_packets`, :func:`encode_channel_settings`,
  :func:`encode_sample_rate`, :func:`decode_channel_settings` -- encoders.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ampkit.errors import ProtocolError

__all__ = [
    "BAUDRATE",
    "PACKET_SIZE",
    "START_BYTE",
    "FOOTERS",
    "ACCEL_FOOTER",
    "EOT",
    "GAINS",
    "DEFAULT_GAIN",
    "SAMPLE_RATES",
    "CHANNEL_CHARS",
    "ADC_MAX",
    "VREF",
    "ACCEL_G_PER_COUNT",
    "uv_per_count",
    "counts_to_uv",
    "uv_to_counts",
    "accel_to_g",
    "g_to_accel",
    "PacketBatch",
    "PacketParser",
    "Samples",
    "SampleAssembler",
    "encode_packets",
    "ChannelSettings",
    "encode_channel_settings",
    "decode_channel_settings",
    "encode_sample_rate",
    "decode_sample_rate",
    "CommandParser",
    "GainTracker",
    "ResponseReader",
    "Banner",
    "parse_banner",
]

logger = logging.getLogger("ampkit")

#: Serial speed of the dongle.
BAUDRATE = 115200
#: Bytes per data packet.
PACKET_SIZE = 33
#: First byte of every data packet.
START_BYTE = 0xA0
#: Valid last bytes of a data packet.
FOOTERS = frozenset(range(0xC0, 0xC7))
#: Footer of packets whose aux bytes are accelerometer readings.
ACCEL_FOOTER = 0xC0
#: End of every text answer of the board.
EOT = b"$$$"
#: Programmable gains, indexed by the digit of the ``x...X`` command.
GAINS = (1, 2, 4, 6, 8, 12, 24)
#: Gain of every channel after reset or ``d``.
DEFAULT_GAIN = 24
#: Sample rates in Hz, indexed by the digit of the ``~`` command.
SAMPLE_RATES = (16000, 8000, 4000, 2000, 1000, 500, 250)
#: Channel characters of the ``x...X`` command, channel 1 first.
CHANNEL_CHARS = "12345678QWERTYUI"
#: Full scale of the 24-bit ADC.
ADC_MAX = 2**23 - 1
#: ADS1299 reference voltage in volts.
VREF = 4.5
#: Accelerometer (LIS3DH, ±4 g) scale.
ACCEL_G_PER_COUNT = 0.002 / 16

_START = bytes([START_BYTE])
#: After garbage, a candidate packet whose sample number is at most this
#: many packets past the last one is taken without waiting for the next.
_RESYNC_WINDOW = 8


# -- scaling ------------------------------------------------------------


def uv_per_count(gain: float) -> float:
    """Microvolts of one ADC count at ``gain``.

    >>> round(uv_per_count(24), 5)
    0.02235
    """
    return VREF / gain / ADC_MAX * 1e6


def _scales(gains: float | Sequence[float], n: int) -> np.ndarray:
    g = np.broadcast_to(np.asarray(gains, dtype=np.float64), (n,))
    return VREF / g / ADC_MAX * 1e6


def counts_to_uv(counts: np.ndarray, gains: float | Sequence[float]) -> np.ndarray:
    """Convert ADC counts ``(n_samples, n_channels)`` to µV (float64).

    Parameters
    ----------
    counts : array of int, shape (n_samples, n_channels)
    gains : float or sequence of float
        One gain for all channels, or one per channel.
    """
    counts = np.asarray(counts)
    return counts * _scales(gains, counts.shape[-1])


def uv_to_counts(uv: np.ndarray, gains: float | Sequence[float]) -> np.ndarray:
    """Quantise µV to ADC counts as the board would (rounded, clipped to 24 bits)."""
    uv = np.asarray(uv, dtype=np.float64)
    counts = np.rint(uv / _scales(gains, uv.shape[-1]))
    return np.clip(counts, -ADC_MAX - 1, ADC_MAX).astype(np.int32)


def accel_to_g(counts: np.ndarray) -> np.ndarray:
    """Convert accelerometer counts to g (float64)."""
    return np.asarray(counts) * ACCEL_G_PER_COUNT


def g_to_accel(g: np.ndarray) -> np.ndarray:
    """Quantise accelerations in g to accelerometer counts (int16)."""
    counts = np.rint(np.asarray(g, dtype=np.float64) / ACCEL_G_PER_COUNT)
    return np.clip(counts, -(2**15), 2**15 - 1).astype(np.int16)


# -- packets ------------------------------------------------------------


@dataclass
class PacketBatch:
    """Data packets decoded from one :meth:`PacketParser.feed` call.

    Attributes
    ----------
    sample_numbers : ndarray of uint8, shape (n,)
    eeg : ndarray of int32, shape (n, 8)
        ADC counts.
    aux : ndarray of int16, shape (n, 3)
    footers : ndarray of uint8, shape (n,)
    """

    sample_numbers: np.ndarray
    eeg: np.ndarray
    aux: np.ndarray
    footers: np.ndarray

    def __len__(self) -> int:
        return len(self.sample_numbers)

    @classmethod
    def empty(cls) -> PacketBatch:
        """A batch of no packets."""
        return cls(
            np.empty(0, np.uint8),
            np.empty((0, 8), np.int32),
            np.empty((0, 3), np.int16),
            np.empty(0, np.uint8),
        )


def _decode(packets: bytes) -> PacketBatch:
    """Decode consecutive framed packets (``len(packets)`` a multiple of 33)."""
    n = len(packets) // PACKET_SIZE
    # Strided views straight into the bytes. Each channel is read as the
    # big-endian int32 that starts with its 3 bytes (the byte after belongs
    # to the next field, for channel 8 the first aux byte, so no read runs
    # past its packet); one arithmetic shift right by 8, in place on the
    # native copy, drops that byte and sign-extends the 24-bit value.
    eeg = np.ndarray((n, 8), ">i4", packets, 2, (PACKET_SIZE, 3)).astype(np.int32)
    eeg >>= 8
    aux = np.ndarray((n, 3), ">i2", packets, 26, (PACKET_SIZE, 2)).astype(np.int16)
    sn = np.ndarray((n,), np.uint8, packets, 1, (PACKET_SIZE,)).copy()
    footers = np.ndarray((n,), np.uint8, packets, 32, (PACKET_SIZE,)).copy()
    return PacketBatch(sn, eeg, aux, footers)


def encode_packets(
    sample_numbers: Iterable[int] | np.ndarray,
    eeg: np.ndarray,
    aux: np.ndarray | None = None,
    footer: int = ACCEL_FOOTER,
) -> bytes:
    """Encode packets as the board sends them.

    Parameters
    ----------
    sample_numbers : sequence of int, shape (n,)
        Taken modulo 256.
    eeg : array of int, shape (n, 8)
        ADC counts, within the signed 24-bit range.
    aux : array of int, shape (n, 3), optional
        Aux values (int16); zeros when omitted.
    footer : int
        0xC0..0xC6, the same for every packet.

    Returns
    -------
    bytes
        ``n * 33`` bytes.

    Raises
    ------
    ValueError
        A value does not fit its field.
    """
    sn = np.asarray(sample_numbers, dtype=np.int64).reshape(-1) % 256
    eeg = np.asarray(eeg, dtype=np.int64).reshape(len(sn), 8)
    if eeg.size and (eeg.min() < -ADC_MAX - 1 or eeg.max() > ADC_MAX):
        raise ValueError("EEG counts outside the signed 24-bit range")
    if footer not in FOOTERS:
        raise ValueError(f"footer must be 0xC0..0xC6, got {footer:#x}")
    n = len(sn)
    out = np.empty((n, PACKET_SIZE), np.uint8)
    out[:, 0] = START_BYTE
    out[:, 1] = sn
    u = eeg & 0xFFFFFF
    out[:, 2:26] = np.stack([u >> 16, (u >> 8) & 0xFF, u & 0xFF], axis=-1).reshape(n, 24)
    if aux is None:
        out[:, 26:32] = 0
    else:
        a = np.asarray(aux, dtype=np.int64).reshape(n, 3)
        if a.size and (a.min() < -(2**15) or a.max() >= 2**15):
            raise ValueError("aux values outside int16")
        out[:, 26:32] = a.astype(">i2").view(np.uint8).reshape(n, 6)
    out[:, 32] = footer
    return out.tobytes()


class PacketParser:
    """Find and decode data packets in a byte stream split anyhow.

    A packet is accepted when it starts with ``0xA0`` and ends with a valid
    footer. While in step (each packet right after the previous one) that is
    enough; after garbage, a candidate must also be confirmed -- its sample
    number is less than 8 past the last packet's, or another ``0xA0``
    follows it -- so a
    stray ``0xA0`` in garbage is rarely taken for a packet. Skipped bytes are
    counted and logged once per run of garbage.

    The parser assumes the stream starts at a packet boundary (as it does
    after ``b``); if not, the first bytes are skipped as garbage.

    Parameters
    ----------
    source : str
        Named in log messages and errors (the port).
    max_garbage : int, optional
        Raise :class:`~ampkit.errors.ProtocolError` after this many
        consecutive bytes without a packet (wrong port or baud rate, or the
        board is not streaming). Unlimited by default.

    Attributes
    ----------
    n_packets : int
        Packets accepted.
    n_skipped : int
        Bytes skipped as garbage.
    n_resyncs : int
        Times the parser lost step and found it again.

    Examples
    --------
    >>> p = PacketParser()
    >>> data = encode_packets([7], np.arange(8).reshape(1, 8))
    >>> len(p.feed(data[:10])), len(p.feed(data[10:]))
    (0, 1)
    """

    def __init__(self, source: str = "cyton", max_garbage: int | None = None) -> None:
        self.source = source
        self.max_garbage = max_garbage
        self._buf = bytearray()
        self.reset()

    def reset(self) -> None:
        """Forget buffered bytes and state (e.g. before ``b``); counters restart."""
        self._buf.clear()
        self._in_step = True
        self._last_sn: int | None = None
        self._garbage = 0  # consecutive bytes skipped since the last packet
        self._offset = 0  # stream offset of self._buf[0]
        self.n_packets = 0
        self.n_skipped = 0
        self.n_resyncs = 0

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a packet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> PacketBatch:
        """Add bytes; return the packets completed by them.

        Raises
        ------
        ampkit.errors.ProtocolError
            More than ``max_garbage`` bytes in a row were not packets. The
            bytes are consumed; the parser can be fed again.
        """
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        starts: list[int] = []
        in_step = self._in_step
        last_sn = self._last_sn
        skipped_run = 0
        while n - pos >= PACKET_SIZE:
            if buf[pos] == START_BYTE and buf[pos + 32] in FOOTERS:
                ok = in_step or (
                    last_sn is not None and (buf[pos + 1] - last_sn - 1) & 0xFF < _RESYNC_WINDOW
                )
                if not ok:
                    nxt = pos + PACKET_SIZE
                    if nxt >= n:
                        break  # cannot confirm yet: wait for the next byte
                    ok = buf[nxt] == START_BYTE
                if ok:
                    if not in_step and self._garbage:
                        self._log_resync()
                    starts.append(pos)
                    last_sn = buf[pos + 1]
                    in_step = True
                    self._garbage = 0
                    pos += PACKET_SIZE
                    continue
            # Not a packet here: skip to the next start byte.
            in_step = False
            nxt = buf.find(_START, pos + 1)
            if nxt < 0:
                nxt = n
            self._garbage += nxt - pos
            skipped_run += nxt - pos
            pos = nxt
        self._in_step, self._last_sn = in_step, last_sn
        self.n_skipped += skipped_run
        batch = self._consume(pos, starts)
        if self.max_garbage is not None and self._garbage > self.max_garbage and not len(batch):
            # Packets found in this call are returned first; the error comes
            # with the next call if the garbage goes on.
            garbage, self._garbage = self._garbage, 0
            raise ProtocolError(
                f"{self.source}: no valid Cyton packet in the last {garbage} bytes "
                "(wrong port or baud rate, or the board is not streaming)",
                self._offset,
            )
        return batch

    def _log_resync(self) -> None:
        self.n_resyncs += 1
        logger.warning(
            "%s: skipped %d bytes that were not Cyton packets; back in step",
            self.source, self._garbage,
        )

    def _consume(self, pos: int, starts: list[int]) -> PacketBatch:
        buf = self._buf
        k = len(starts)
        if k == 0:
            batch = PacketBatch.empty()
        else:
            end = starts[-1] + PACKET_SIZE
            if end == k * PACKET_SIZE:  # no garbage among them: one slice
                packets = bytes(buf[:end])
            else:
                packets = b"".join(buf[i : i + PACKET_SIZE] for i in starts)
            batch = _decode(packets)
            self.n_packets += k
        del buf[:pos]
        self._offset += pos
        return batch


# -- samples ------------------------------------------------------------


@dataclass
class Samples:
    """Samples assembled from packets.

    Attributes
    ----------
    eeg : ndarray of int32, shape (n, 8 or 16)
        ADC counts.
    accel : ndarray of int16, shape (n, 3)
        The newest accelerometer reading at each sample (the board sends one
        every few packets and zeros between; zeros are not readings).
    gaps : list of (int, int)
        ``(row, n_lost)``: ``n_lost`` samples are missing before row ``row``.
    """

    eeg: np.ndarray
    accel: np.ndarray
    gaps: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.eeg)

    @property
    def n_lost(self) -> int:
        """Samples missing in or before this block."""
        return sum(n for _, n in self.gaps)

    @classmethod
    def concatenate(cls, parts: Sequence[Samples], channels: int) -> Samples:
        """Join consecutive blocks into one."""
        if not parts:
            return cls(np.empty((0, channels), np.int32), np.empty((0, 3), np.int16))
        if len(parts) == 1:
            return parts[0]
        gaps: list[tuple[int, int]] = []
        row = 0
        for part in parts:
            gaps.extend((row + r, n) for r, n in part.gaps)
            row += len(part)
        return cls(
            np.concatenate([p.eeg for p in parts]),
            np.concatenate([p.accel for p in parts]),
            gaps,
        )


class SampleAssembler:
    """Turn packets into samples, counting lost packets from the sample number.

    Parameters
    ----------
    daisy : bool
        Pair packets into 16-channel samples: an even sample number carries
        channels 9-16, the next (odd) one channels 1-8. A half whose partner
        is missing is dropped, and the sample counts as lost.
    source : str
        Named in log messages.
    accel : bool
        Track the accelerometer (``Samples.accel`` stays zero otherwise,
        which saves work per call).

    Attributes
    ----------
    n_samples : int
        Samples produced.
    n_lost : int
        Samples found missing from jumps of the sample number. A loss of a
        multiple of 256 packets cannot be seen in an 8-bit counter.
    n_lost_packets : int
        Packets found missing.

    Examples
    --------
    >>> a = SampleAssembler()
    >>> p = PacketParser()
    >>> data = encode_packets([1, 2, 5], np.zeros((3, 8)))
    >>> a.push(p.feed(data)).gaps
    [(2, 2)]
    """

    def __init__(self, daisy: bool = False, source: str = "cyton", accel: bool = True) -> None:
        self.daisy = daisy
        self.source = source
        self.accel = accel
        self.channels = 16 if daisy else 8
        self.reset()

    def reset(self) -> None:
        """Forget the last sample number (e.g. before ``b``); counters restart."""
        self._last_sn: int | None = None
        self._last_slot: int | None = None
        self._half: tuple[int, np.ndarray] | None = None  # (sample number, eeg) of 9-16
        self._accel = np.zeros(3, np.int16)
        self.n_samples = 0
        self.n_lost = 0
        self.n_lost_packets = 0

    def push(self, batch: PacketBatch) -> Samples:
        """Return the samples completed by ``batch``."""
        n = len(batch)
        if n == 0:
            return Samples(np.empty((0, self.channels), np.int32), np.empty((0, 3), np.int16))
        # A plain loop: fewer array operations per call than numpy would
        # need, which matters for the few packets of a typical read.
        sn = batch.sample_numbers.tolist()
        prev = sn[0] - 1 if self._last_sn is None else self._last_sn
        jumps: list[tuple[int, int]] = []
        for row, s in enumerate(sn):
            jump = (s - prev - 1) & 0xFF
            if jump:
                jumps.append((row, jump))
            prev = s
        self._last_sn = prev
        if jumps:
            self.n_lost_packets += sum(j for _, j in jumps)
        accel = self._hold_accel(batch)
        if self.daisy:
            samples = self._pair(sn, batch.eeg, accel)
        else:
            samples = Samples(batch.eeg, accel, jumps)
        if samples.gaps:  # logged by the driver, which marks them too
            self.n_lost += samples.n_lost
        self.n_samples += len(samples)
        return samples

    def _hold_accel(self, batch: PacketBatch) -> np.ndarray:
        """Per packet: the newest non-zero accelerometer reading so far."""
        aux = batch.aux
        if not self.accel or not aux.any():
            # Every row the held reading: a read-only view with a zero row
            # stride (what np.broadcast_to makes, at a fraction of its cost).
            held = np.ndarray(aux.shape, np.int16, self._accel, 0, (0, self._accel.strides[0]))
            held.flags.writeable = False
            return held
        if len(aux) <= 64:
            # Few packets (the usual read): a loop costs less than the
            # array operations below.
            held = self._accel.tolist()
            out = []
            for values, footer in zip(aux.tolist(), batch.footers.tolist(), strict=True):
                if footer == ACCEL_FOOTER and any(values):
                    held = values
                out.append(held)
            self._accel = np.array(held, np.int16)
            return np.array(out, np.int16)
        fresh = (batch.footers == ACCEL_FOOTER) & aux.any(axis=1)
        idx = np.where(fresh, np.arange(len(aux)), -1)
        np.maximum.accumulate(idx, out=idx)
        out = np.where((idx >= 0)[:, None], aux[np.maximum(idx, 0)], self._accel)
        self._accel = out[-1].copy()
        return out.astype(np.int16)

    def _pair(self, sn: list[int], eeg: np.ndarray, accel: np.ndarray) -> Samples:
        rows_eeg: list[np.ndarray] = []
        rows_accel: list[np.ndarray] = []
        gaps: list[tuple[int, int]] = []
        for i, s in enumerate(sn):
            if not s & 1:
                self._half = (s, eeg[i])
                continue
            half = self._half
            self._half = None
            if half is None or half[0] + 1 != s:
                continue  # channels 1-8 without their 9-16: counted via the slot jump
            slot = s >> 1
            if self._last_slot is not None:
                lost = (slot - self._last_slot - 1) % 128
                if lost:
                    gaps.append((len(rows_eeg), lost))
            self._last_slot = slot
            rows_eeg.append(np.concatenate([eeg[i], half[1]]))
            rows_accel.append(accel[i])
        if not rows_eeg:
            return Samples(np.empty((0, 16), np.int32), np.empty((0, 3), np.int16), gaps)
        return Samples(np.array(rows_eeg, np.int32), np.array(rows_accel, np.int16), gaps)


# -- commands -----------------------------------------------------------


@dataclass(frozen=True)
class ChannelSettings:
    """One channel's settings, as the ``x...X`` command carries them.

    The defaults are those ``d`` restores (``x?060110X``).

    Attributes
    ----------
    power_down : bool
    gain : int
        One of :data:`GAINS`.
    input_type : int
        0 normal, 1 shorted, 2 bias meas, 3 mvdd, 4 temp, 5 testsig,
        6 bias drp, 7 bias drn.
    bias : bool
        Include in the bias derivation.
    srb2 : bool
        Connect to SRB2.
    srb1 : bool
        Connect all negative inputs to SRB1.
    """

    power_down: bool = False
    gain: int = DEFAULT_GAIN
    input_type: int = 0
    bias: bool = True
    srb2: bool = True
    srb1: bool = False

    def __post_init__(self) -> None:
        if self.gain not in GAINS:
            raise ValueError(f"gain must be one of {GAINS}, got {self.gain!r}")
        if not 0 <= self.input_type <= 7:
            raise ValueError(f"input_type must be 0..7, got {self.input_type!r}")


def encode_channel_settings(channel: int, settings: ChannelSettings | None = None) -> bytes:
    """Return the ``x...X`` command for ``channel`` (1-based, 1..16).

    >>> encode_channel_settings(3, ChannelSettings(gain=8))
    b'x3040110X'
    >>> encode_channel_settings(9)
    b'xQ060110X'
    """
    if not 1 <= channel <= 16:
        raise ValueError(f"channel must be 1..16, got {channel!r}")
    s = settings or ChannelSettings()
    return (
        f"x{CHANNEL_CHARS[channel - 1]}{int(s.power_down)}{GAINS.index(s.gain)}"
        f"{s.input_type}{int(s.bias)}{int(s.srb2)}{int(s.srb1)}X"
    ).encode("ascii")


_X_COMMAND = re.compile(rb"x([1-8QWERTYUI])([01])([0-6])([0-7])([01])([01])([01])X")


def decode_channel_settings(command: bytes) -> tuple[int, ChannelSettings]:
    """Parse an ``x...X`` command into ``(channel, settings)``.

    Raises
    ------
    ampkit.errors.ProtocolError
        The command is malformed.
    """
    m = _X_COMMAND.fullmatch(bytes(command))
    if m is None:
        raise ProtocolError(f"malformed channel settings command {bytes(command)!r}")
    ch, pd, gain, inp, bias, srb2, srb1 = (g.decode("ascii") for g in m.groups())
    return CHANNEL_CHARS.index(ch) + 1, ChannelSettings(
        power_down=pd == "1", gain=GAINS[int(gain)], input_type=int(inp),
        bias=bias == "1", srb2=srb2 == "1", srb1=srb1 == "1",
    )


def encode_sample_rate(fs: float) -> bytes:
    """Return the ``~N`` command for ``fs`` Hz (one of :data:`SAMPLE_RATES`).

    >>> encode_sample_rate(250)
    b'~6'
    """
    if fs not in SAMPLE_RATES:
        raise ValueError(f"sample rate must be one of {SAMPLE_RATES} Hz, got {fs!r}")
    return b"~" + str(SAMPLE_RATES.index(int(fs))).encode("ascii")


def decode_sample_rate(command: bytes) -> int:
    """Return the rate in Hz a ``~N`` command sets.

    Raises
    ------
    ampkit.errors.ProtocolError
        Not a ``~0``..``~6`` command.
    """
    command = bytes(command)
    if len(command) != 2 or command[:1] != b"~" or command[1:] not in b"0123456":
        raise ProtocolError(f"malformed sample rate command {command!r}")
    return SAMPLE_RATES[command[1] - ord("0")]


#: Multi-byte commands: first byte -> (total length, required last byte or None).
_MULTI = {ord("x"): (9, ord("X")), ord("z"): (5, ord("Z")), ord("~"): (2, None),
          ord("/"): (2, None), ord("`"): (2, None)}


class CommandParser:
    """Split the computer-to-board byte stream into commands.

    Single characters are commands of their own; ``x`` starts a 9-byte
    channel setting ending in ``X``, ``z`` a 5-byte one ending in ``Z``,
    ``~``, ``/`` and `````` take one argument byte. An ``x``/``z`` sequence
    whose last byte is wrong is returned as it is (decoding it raises).

    Examples
    --------
    >>> CommandParser().feed(b"vdx1060110Xb")
    [b'v', b'd', b'x1060110X', b'b']
    """

    def __init__(self) -> None:
        self._partial = bytearray()

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Add bytes; return the complete commands among them."""
        out: list[bytes] = []
        partial = self._partial
        for byte in bytes(data):
            if partial:
                partial.append(byte)
                length, _ = _MULTI[partial[0]]
                if len(partial) == length:
                    out.append(bytes(partial))
                    partial.clear()
            elif byte in _MULTI:
                partial.append(byte)
            else:
                out.append(bytes([byte]))
        return out


class GainTracker:
    """Follow each channel's gain from the commands sent to the board.

    Feed it every byte written to the board; ``v`` and ``d`` restore the
    default gain, a valid ``x...X`` sets one channel's gain.

    Attributes
    ----------
    gains : list of int
        Current gain of channels 1..16.

    Examples
    --------
    >>> t = GainTracker()
    >>> t.feed(b"x2010110X")
    >>> t.gains[:3]
    [24, 2, 24]
    """

    def __init__(self) -> None:
        self.gains = [DEFAULT_GAIN] * 16
        self.settings = [ChannelSettings()] * 16
        self._parser = CommandParser()

    def feed(self, data: bytes) -> None:
        """Apply the commands in ``data``; malformed ones change nothing."""
        for cmd in self._parser.feed(data):
            self.apply(cmd)

    def apply(self, command: bytes) -> bool:
        """Apply one complete command; return whether it changed channel settings."""
        if command in (b"v", b"d"):
            self.settings = [ChannelSettings()] * 16
        elif command[:1] == b"x":
            try:
                channel, settings = decode_channel_settings(command)
            except ProtocolError:
                return False
            self.settings[channel - 1] = settings
        else:
            return False
        self.gains = [s.gain for s in self.settings]
        return True


class ResponseReader:
    """Collect the board's text answers, each ending in ``$$$``.

    Parameters
    ----------
    max_size : int
        Bytes kept while waiting for ``$$$``; older bytes are dropped (and
        logged) beyond it, so a streaming board cannot fill memory.

    Examples
    --------
    >>> r = ResponseReader()
    >>> r.feed(b"updating channel settings to default$$")
    []
    >>> r.feed(b"$")
    ['updating channel settings to default']
    """

    def __init__(self, max_size: int = 65536, source: str = "cyton") -> None:
        self.max_size = max_size
        self.source = source
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> list[str]:
        """Add bytes; return the completed answers (without ``$$$``)."""
        self._buf += data
        out = []
        while True:
            i = self._buf.find(EOT)
            if i < 0:
                break
            out.append(self._buf[:i].decode("utf-8", "replace"))
            del self._buf[: i + len(EOT)]
        if len(self._buf) > self.max_size:
            drop = len(self._buf) - self.max_size
            logger.warning("%s: dropped %d bytes of unterminated answer", self.source, drop)
            del self._buf[:drop]
        return out

    def clear(self) -> None:
        """Forget a partial answer."""
        self._buf.clear()


@dataclass(frozen=True)
class Banner:
    """What the ``v`` answer says about the board.

    Attributes
    ----------
    text : str
    firmware : tuple of int
        ``(major, minor, patch)``; ``(1, 0, 0)`` when the banner names none
        (firmware v1 does not).
    daisy : bool
        The banner lists a Daisy ADS1299.
    """

    text: str
    firmware: tuple[int, int, int]
    daisy: bool


# At most 9 digits a part: int() refuses strings of thousands of digits.
_FIRMWARE = re.compile(r"Firmware:\s*v(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?")


def parse_banner(text: str, source: str | None = None) -> Banner:
    """Parse the answer to ``v``.

    Parameters
    ----------
    text : str
        The answer, without its ``$$$``.
    source : str, optional
        The port, named at the start of the error message.

    Raises
    ------
    ampkit.errors.ProtocolError
        The text is not an OpenBCI banner.
    """
    if "OpenBCI" not in text:
        prefix = f"{source}: " if source else ""
        raise ProtocolError(
            f"{prefix}not an OpenBCI board: answer to 'v' was {text[-200:]!r}"
        )
    m = _FIRMWARE.search(text)
    firmware = (1, 0, 0) if m is None else tuple(int(g or 0) for g in m.groups())
    return Banner(text, firmware, "Daisy" in text)  # type: ignore[arg-type]
