"""The ``cyton`` driver: OpenBCI Cyton (8 channels) and Cyton + Daisy (16) over serial.

A :class:`~ampkit.streaming.StreamingAmp` on a :class:`~ampkit.transport.SerialTransport`
(``/dev/ttyUSB0``, ``COM3``, ``/dev/cu.usbserial-...`` or a pyserial URL) with the
codec of :mod:`ampkit.protocols.cyton`; this module adds the board's command
dialogue, scaling by the gains the board was told, and losses from the packets'
sample numbers. Without hardware: ``ampkit sim cyton`` prints a pty to use as port.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ampkit.checks import check_positive_number
from ampkit.clock import local_clock
from ampkit.codec import Chunk, Layout
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    ProtocolError,
)
from ampkit.protocols import cyton as proto
from ampkit.protocols.cyton import Banner
from ampkit.streaming import StreamingAmp
from ampkit.transport import SerialTransport, Transport

__all__ = ["CytonAmp", "CytonCodec", "probe"]

logger = logging.getLogger("ampkit")

#: Environment variable naming ports (separated by ``os.pathsep``) that
#: :meth:`CytonAmp.is_available` probes besides the configured ones.
PORT_ENV = "AMPKIT_CYTON_PORT"
#: Bytes without a valid packet after which streaming counts as broken
#: (about one second of data).
MAX_GARBAGE = 8192


class CytonCodec:
    """Cyton bytes as streaming chunks: µV (and g), one chunk per run of
    samples between losses, each with the samples lost before it."""

    read_ahead = 4096

    def __init__(self, source: str, daisy: bool, accel: bool, gains: Sequence[int]) -> None:
        self.parser = proto.PacketParser(source=source, max_garbage=MAX_GARBAGE)
        self.assembler = proto.SampleAssembler(daisy=daisy, source=source, accel=accel)
        self.accel = accel
        self.scale = np.array([proto.uv_per_count(g) for g in gains])

    @property
    def missing(self) -> int:
        return max(1, proto.PACKET_SIZE - self.parser.buffered)

    def feed(self, data: memoryview) -> list[Chunk]:
        samples = self.assembler.push(self.parser.feed(data))
        if not len(samples) and not samples.gaps:
            return []
        if self.accel:
            uv = np.empty((len(samples), self.scale.size + 3))
            np.multiply(samples.eeg, self.scale, out=uv[:, :-3])
            np.multiply(samples.accel, proto.ACCEL_G_PER_COUNT, out=uv[:, -3:])
        else:
            uv = samples.eeg * self.scale
        chunks, row, lost = [], 0, 0
        for at, n in samples.gaps:
            if at > row:
                chunks.append(Chunk(uv[row:at], lost))
                row, lost = at, 0
            lost += n
        chunks.append(Chunk(uv[row:], lost))
        return chunks


def _ask(transport: Transport, command: bytes, timeout: float) -> str:
    """Send a command; return the board's answer (the text before ``$$$``)."""
    transport.write(command)
    answer = transport.read_until(proto.EOT, timeout)
    if answer is None:
        raise AmpNotAvailableError(
            f"no answer to {command.decode('latin-1')!r} from {transport.name} within "
            f"{timeout:g} s (is the board switched on, and the dongle switched to GPIO6?)"
        )
    logger.debug("%s: %r -> %r", transport.name, command, answer)
    return answer.decode("utf-8", "replace")


def _reset(transport: Transport, timeout: float) -> Banner:
    """Stop a stream left running, discard what it sent, soft-reset (``v``)."""
    transport.write(b"s")
    end = last = local_clock()
    while local_clock() - end < 1.0 and local_clock() - last < 0.1:
        if transport.read(4096, 0.05):
            last = local_clock()
    return proto.parse_banner(_ask(transport, b"v", timeout), source=transport.name)


def _open(port: str, timeout: float) -> SerialTransport:
    try:
        return SerialTransport(port, proto.BAUDRATE, timeout, name=f"the Cyton on {port}")
    except AmpNotAvailableError as exc:
        raise AmpNotAvailableError(
            f"could not open Cyton port {port!r}: {exc.__cause__ or exc}") from None


def probe(port: str, timeout: float = 2.0) -> Banner | None:
    """Return the banner of the Cyton on ``port``, or None if none answers.

    Sends ``s`` and ``v`` (a soft reset). Never raises for an absent or
    silent device.
    """
    try:
        transport = _open(port, timeout)
    except AmpNotAvailableError as exc:
        logger.debug("probe %s: %s", port, exc)
        return None
    try:
        return _reset(transport, timeout)
    except (AmpNotAvailableError, ConnectionLostError, ProtocolError) as exc:
        logger.debug("probe %s: %s", port, exc)
        return None
    finally:
        transport.close()


class CytonAmp(StreamingAmp):
    """OpenBCI Cyton, or Cyton + Daisy, through its USB dongle (see :doc:`/cyton`).

    ``start()`` runs the board's connect sequence: ``s`` (stop a stream left
    running), ``v`` (soft reset), ``c``/``C`` (8 or 16 channels), ``d``, ``~N``
    (sample rate, firmware 3), ``x...X`` for each gain not the default, ``b``;
    ``stop()`` sends ``s``. Data in µV by each channel's gain (the
    accelerometer, with ``accel=True``, in g); losses from the sample numbers.

    Attributes
    ----------
    banner : Banner or None
        The board's answer to ``v`` at the last ``start()``.
    gap_count, lost_samples, skipped_bytes : int
        Runs of lost samples, samples lost and bytes skipped as garbage since ``start()``.
    """

    presets: ClassVar[list[list[Any]]] = [
        ["Cyton, 8 channels at 250 Hz", {"daisy": False}],
        ["Cyton + Daisy, 16 channels at 125 Hz", {"daisy": True}],
    ]
    dtype = np.float64
    silence_option = "timeout"
    read_interval = 0.1  # the thread drains the port ten times a second: few wake-ups

    #: Ports given to ``configure()`` in this process; ``is_available()`` probes them.
    known_ports: ClassVar[list[str]] = []
    _amps: ClassVar[weakref.WeakSet[CytonAmp]] = weakref.WeakSet()  # a running one is not probed

    def __init__(self) -> None:
        self.banner: Banner | None = None
        self._codec: CytonCodec | None = None
        super().__init__()
        CytonAmp._amps.add(self)

    @property
    def name(self) -> str:
        return f"Cyton on {self.port}"

    @property
    def skipped_bytes(self) -> int:
        """Bytes skipped as garbage since ``start()``."""
        return 0 if self._codec is None else self._codec.parser.n_skipped

    def configure(
        self,
        port: str | None = None,
        daisy: bool = False,
        gains: int | Sequence[int] | None = None,
        fs: int = 250,
        timeout: float = 3.0,
        latency: float = 0.01,
        accel: bool = False,
        channel_names: Sequence[str] | None = None,
    ) -> None:
        """Choose the port and the board's settings.

        Parameters
        ----------
        port : str, optional
            Serial device or pyserial URL; by default the first entry of the
            ``AMPKIT_CYTON_PORT`` environment variable.
        daisy : bool
            16 channels with the Daisy module (125 Hz per 16-channel sample).
        gains : int or sequence of int, optional
            Gain of all channels, or one per channel: 1, 2, 4, 6, 8, 12 or 24 (default).
        fs : int
            Board rate in Hz: 250 (the only rate the radio dongle carries), or
            500 ... 16000 (firmware 3, WiFi shield). With the Daisy: ``fs / 2``.
        timeout : float
            Seconds to wait for each answer of the board, and the longest
            silence tolerated while streaming.
        latency : float
            Seconds (0 to 0.1) a waiting ``get_data()`` lets packets gather
            between looks (fewer wake-ups); 0: each packet as it arrives.
        accel : bool
            Add accelerometer columns ``AccX``, ``AccY``, ``AccZ`` (g).
        channel_names : sequence of str, optional
            Names of the EEG channels; ``Ch1``... by default.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A value is out of range (:class:`~ampkit.errors.StateError` while running).
        """
        if port is None:
            port = os.environ.get(PORT_ENV, "").split(os.pathsep)[0] or None
        if port is not None and not isinstance(port, str):
            raise ConfigurationError(f"port must be a string, got {port!r}")
        if not isinstance(daisy, bool):
            raise ConfigurationError(f"daisy must be True or False, got {daisy!r}")
        n = 16 if daisy else 8
        gains = proto.DEFAULT_GAIN if gains is None else gains
        one = isinstance(gains, (int, np.integer)) and not isinstance(gains, bool)
        try:
            gain_list = [int(gains)] * n if one else [int(g) for g in gains]  # type: ignore
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"gains must be an int or {n} ints, got {gains!r}") from exc
        if len(gain_list) != n:
            raise ConfigurationError(f"gains must have {n} values, got {len(gain_list)}")
        bad = [g for g in gain_list if g not in proto.GAINS]
        if bad:
            raise ConfigurationError(f"gains must be among {proto.GAINS}, got {bad}")
        if fs not in proto.SAMPLE_RATES or isinstance(fs, bool):
            rates = sorted(proto.SAMPLE_RATES)
            raise ConfigurationError(f"fs must be one of {rates} Hz, got {fs!r}")
        names = [f"Ch{i + 1}" for i in range(n)] if channel_names is None else [
            str(c) for c in channel_names]
        if len(names) != n:
            raise ConfigurationError(f"channel_names must have {n} names, got {len(names)}")
        timeout = check_positive_number("timeout", timeout)
        if isinstance(latency, bool) or not isinstance(latency, (int, float)) \
                or not 0 <= latency <= 0.1:
            raise ConfigurationError(f"latency must be 0 to 0.1 s, got {latency!r}")
        self.port, self.daisy, self.gains, self.fs = port, daisy, gain_list, int(fs)
        self.timeout = self.silence_timeout = timeout
        self.gather, self.accel, self.channel_names = float(latency), bool(accel), names
        if port is not None and port not in CytonAmp.known_ports:
            CytonAmp.known_ports.append(port)

    def known_layout(self) -> Layout:
        """EEG channel names, then ``AccX``, ``AccY``, ``AccZ`` with ``accel``;
        the rate of complete samples: ``fs``, or ``fs / 2`` with the Daisy."""
        names = self.channel_names + (["AccX", "AccY", "AccZ"] if self.accel else [])
        return Layout(tuple(names), self.fs / 2 if self.daisy else float(self.fs))

    def get_units(self) -> list[str]:
        """µV for EEG channels, g for the accelerometer."""
        return ["µV"] * len(self.channel_names) + (["g"] * 3 if self.accel else [])

    def open_transport(self, timeout: float) -> Transport:
        if self.port is None:
            raise ConfigurationError(f"no port configured: configure(port=...) or set {PORT_ENV}")
        return _open(self.port, timeout)

    def start_stream(self, transport: Transport) -> None:
        tracker = proto.GainTracker()  # the gains the board is told, for scaling

        def ask(command: bytes, success: bool = False) -> str:
            tracker.feed(command)
            answer = _ask(transport, command, self.timeout)
            if success and "success" not in answer.lower():
                raise ProtocolError(f"the Cyton on {self.port} refused "
                                    f"{command.decode('latin-1')!r}: {answer!r}")
            return answer

        try:
            self.banner = banner = _reset(transport, self.timeout)
        except ProtocolError as exc:  # not an OpenBCI banner
            raise AmpNotAvailableError(str(exc)) from exc
        logger.info("Cyton on %s: %s", self.port, banner.text.split("\n")[0])
        if self.daisy:
            answer = ask(b"C")
            if "no daisy" in answer.lower() or not answer.strip().endswith("16"):
                raise AmpNotAvailableError(
                    f"daisy=True but the board on {self.port} has no Daisy module: {answer!r}")
        elif banner.daisy:
            ask(b"c")  # answers 'daisy removed'
        ask(b"d")
        if banner.firmware >= (3, 0, 0):
            ask(proto.encode_sample_rate(self.fs), success=True)
        elif self.fs != 250:
            raise ConfigurationError(f"fs={self.fs} needs firmware 3 or later; the board runs "
                                     f"v{'.'.join(map(str, banner.firmware))}")
        if self.fs > 250:
            logger.warning("Cyton on %s: the radio dongle carries only 250 Hz; fs=%d needs "
                           "another link", self.port, self.fs)
        for channel, gain in enumerate(self.gains, start=1):
            if gain != tracker.gains[channel - 1]:
                settings = proto.ChannelSettings(gain=gain)
                ask(proto.encode_channel_settings(channel, settings), success=True)
        # No command is sent while streaming, so the gains stay as tracked.
        gains = tracker.gains[: len(self.gains)]
        if gains != self.gains:
            raise ProtocolError(f"gains not applied on {self.port}: {tracker.gains}")
        self._codec = CytonCodec(f"Cyton on {self.port}", self.daisy, self.accel, gains)
        transport.write(b"b")

    def new_codec(self, reconnected: bool) -> CytonCodec:
        assert self._codec is not None  # made by start_stream, with the gains it set
        return self._codec

    def stop_stream(self, transport: Transport) -> None:
        transport.write(b"s")

    @staticmethod
    def is_available() -> bool:
        """Whether a Cyton answers (to ``v``, a soft reset) on a port given to
        ``configure()`` in this process or named in ``AMPKIT_CYTON_PORT``, or
        streams here; ports are not scanned (``v`` could disturb another device)."""
        ports = list(CytonAmp.known_ports)
        ports += [p for p in os.environ.get(PORT_ENV, "").split(os.pathsep) if p]
        streaming = {amp.port for amp in CytonAmp._amps if amp.running}
        return any(port in streaming or probe(port) is not None for port in dict.fromkeys(ports))
