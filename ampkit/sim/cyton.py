"""An OpenBCI Cyton on a pseudo-terminal.

:class:`CytonSimulator` opens a pty pair and speaks the board's side of the
protocol on the master end, so the Cyton driver -- or any other Cyton
software that accepts a port name, such as BrainFlow -- talks to it through
the slave end (:attr:`CytonSimulator.port`, e.g. ``/dev/pts/7``) exactly as
to a real dongle. It answers ``v`` with a banner, ``d``, ``c``/``C``,
``~N`` and ``x...X`` with the board's answers, streams on ``b`` until ``s``
at the real rate (paced by :class:`ampkit.pacing.Pacer`), alternates
9-16 (even sample numbers) and 1-8 (odd) packets with the Daisy, and sends
the accelerometer every tenth packet as the firmware does.

The signal is known: channel *i* (0-based) carries
``amplitudes[i] * sin(2 pi frequencies[i] k / fs_out + i * 0.3)`` µV at
output sample *k* (``fs_out`` is the rate of complete samples: ``fs``, or
``fs / 2`` with the Daisy), quantised with the channel's current gain;
:meth:`CytonSimulator.expected_uv` returns it, so tests can check values.

Faults: random garbage bytes between packets (``garbage=``), dropped
packets (``drop=``, or :meth:`CytonSimulator.drop_packets`), injected bytes
(:meth:`CytonSimulator.inject`) and :meth:`CytonSimulator.unplug`, which
closes both ends of the pty as a pulled dongle disappears.

POSIX only (``os.openpty``).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import tty
from collections.abc import Sequence

import numpy as np

from ampkit.clock import local_clock
from ampkit.errors import ProtocolError, StateError
from ampkit.pacing import Pacer, check_ppm, skewed
from ampkit.protocols.cyton import (
    SAMPLE_RATES,
    CommandParser,
    GainTracker,
    decode_channel_settings,
    decode_sample_rate,
    encode_packets,
    g_to_accel,
    uv_to_counts,
)
from ampkit.worker import Closing, Worker

__all__ = ["CytonSimulator", "default_amplitudes", "default_frequencies"]

logger = logging.getLogger("ampkit")

_BANNER = (
    "OpenBCI V3 8-16 channel\n"
    "On Board ADS1299 Device ID: 0x3E\n"
    "{daisy}"
    "LIS3DH Device ID: 0x33\n"
    "Firmware: v3.1.2\n"
)
#: Bytes kept for a reader that does not read, besides the pty's own
#: buffer; beyond, packets are lost, as on a real dongle whose host does
#: not read, and show as gaps in the sample numbers.
_MAX_BACKLOG = 4096


def default_amplitudes(channels: int = 16) -> np.ndarray:
    """µV amplitude of each channel's sine: 40, 50, ... (channel 1 first)."""
    return 40.0 + 10.0 * np.arange(channels)


def default_frequencies(channels: int = 16) -> np.ndarray:
    """Hz of each channel's sine: 1, 2, ..., 16 (channel 1 first)."""
    return 1.0 + np.arange(channels, dtype=np.float64)


class CytonSimulator(Closing):
    """A simulated Cyton (optionally with Daisy) behind a pty.

    Parameters
    ----------
    daisy : bool
        Simulate the Daisy module (16 channels).
    fs : int
        Initial board sample rate in Hz (``~N`` changes it).
    amplitudes, frequencies : sequence of float, optional
        Per-channel sine amplitude (µV) and frequency (Hz), 16 values;
        :func:`default_amplitudes` and :func:`default_frequencies` by default.
    accel : (float, float, float)
        Accelerometer reading in g, sent every tenth packet.
    garbage : float
        Probability, per packet, of writing 1..40 random bytes before it.
    drop : float
        Probability, per packet, of not sending it (its sample number is
        used up all the same).
    seed : int
        Seed of the fault generator, so faults repeat.
    ppm : float
        How far the board's clock runs from its nominal rate, in parts per
        million (-100: 100 ppm slow), as real crystals do: packets are sent
        at ``fs * (1 + ppm / 1e6)``. :meth:`sample_time` tells when each
        sample was sent.

    Attributes
    ----------
    port : str
        Path of the pty's slave end: give this to the driver.
    n_sent, n_dropped : int
        Packets sent and dropped since the last ``b``.
    streaming : bool

    Examples
    --------
    >>> with CytonSimulator() as sim:           # doctest: +SKIP
    ...     amp = ampkit.get_amp('cyton', port=sim.port)
    """

    def __init__(
        self,
        daisy: bool = False,
        fs: int = 250,
        amplitudes: Sequence[float] | None = None,
        frequencies: Sequence[float] | None = None,
        accel: Sequence[float] = (0.0, 0.0, 1.0),
        garbage: float = 0.0,
        drop: float = 0.0,
        seed: int = 0,
        ppm: float = 0.0,
    ) -> None:
        if fs not in SAMPLE_RATES:
            raise ValueError(f"fs must be one of {SAMPLE_RATES}, got {fs!r}")
        self.ppm = check_ppm(ppm)
        self.daisy = bool(daisy)
        self.fs = int(fs)
        self.amplitudes = np.asarray(
            default_amplitudes() if amplitudes is None else amplitudes, np.float64
        ).reshape(16)
        self.frequencies = np.asarray(
            default_frequencies() if frequencies is None else frequencies, np.float64
        ).reshape(16)
        self.accel = g_to_accel(np.asarray(accel, np.float64).reshape(3))
        self.garbage = float(garbage)
        self.drop = float(drop)
        self._rng = np.random.default_rng(seed)
        self._master, self._slave = os.openpty()
        # Raw on the slave: no echo, no line editing, 8 bits through.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._tracker = GainTracker()
        self._commands = CommandParser()
        self._lock = threading.Lock()
        self._inject: list[bytes] = []
        self._drop_next = 0
        self._out = bytearray()
        self._worker: Worker | None = None
        self._closed = False
        self.streaming = False
        self._channels_on = 16 if self.daisy else 8
        self.n_sent = 0
        self.n_dropped = 0
        self.n_overflow = 0
        self.commands: list[bytes] = []

    # -- the known signal ----------------------------------------------

    @property
    def gains(self) -> list[int]:
        """Current gain of channels 1..16."""
        return list(self._tracker.gains)

    @property
    def channels(self) -> int:
        """Channels streamed (8, or 16 with the Daisy attached)."""
        return self._channels_on

    @property
    def output_rate(self) -> float:
        """Rate of complete samples in Hz (``fs / 2`` with the Daisy)."""
        return self.fs / 2 if self._channels_on == 16 else float(self.fs)

    @property
    def true_rate(self) -> float:
        """The rate complete samples really come at: :attr:`output_rate` off by ``ppm``."""
        return skewed(self.output_rate, self.ppm)

    def sample_time(self, index: np.ndarray | Sequence[int] | int) -> np.ndarray | float:
        """When output sample ``index`` (0 = first after ``b``) was sent
        (``local_clock``): its packet (with the Daisy, its second packet) went
        out then."""
        packet = np.asarray(index, np.float64)
        if self._channels_on == 16:
            packet = 2.0 * packet + 1.0
        return self._pacer.t0 + (packet + 1.0) / self._pacer.fs

    def expected_uv(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """The input signal in µV at output samples ``index`` (0 = first after ``b``).

        Returns
        -------
        ndarray of float64, shape (len(index), 16)
        """
        k = np.asarray(index, np.float64)[:, None]
        phase = 0.3 * np.arange(16)
        return self.amplitudes * np.sin(
            2 * np.pi * self.frequencies * k / self.output_rate + phase
        )

    # -- faults -----------------------------------------------------------

    def inject(self, data: bytes) -> None:
        """Write ``data`` to the port before the next packet (thread safe)."""
        with self._lock:
            self._inject.append(bytes(data))

    def drop_packets(self, n: int) -> None:
        """Do not send the next ``n`` packets (thread safe)."""
        with self._lock:
            self._drop_next += int(n)

    def unplug(self) -> None:
        """Vanish like a pulled dongle: stop, and close both ends of the pty.

        The port's path disappears; a program holding it open gets an
        error on its next read.
        """
        self.close()

    # -- life cycle -------------------------------------------------------

    def start(self) -> CytonSimulator:
        """Power the board on (start the simulator's thread)."""
        if self._closed:
            raise StateError("the simulator is closed (unplugged)")
        if self._worker is not None and self._worker.is_alive:
            raise StateError("the simulator is already running")
        self._worker = Worker(self._run, f"cyton simulator {self.port}")
        self._worker.start()
        return self

    def stop(self) -> None:
        """Power the board off (stop the thread); the pty stays."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
            worker.check()

    def close(self) -> None:
        """Stop and close the pty (the port disappears)."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            for fd in (self._master, self._slave):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def check(self) -> None:
        """Raise the error that ended the simulator's thread, if any."""
        if self._worker is not None:
            self._worker.check()

    def __enter__(self) -> CytonSimulator:
        if self._worker is None:
            self.start()
        return super().__enter__()


    # -- the board ----------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        master = self._master
        while not stop.is_set():
            wait = 0.05
            if self.streaming:
                wait = min(wait, max(self._pacer.time_of(self._pacer.count) - local_clock(), 0.0))
            want_write = [master] if self._out else []
            readable, writable, _ = select.select([master], want_write, [], wait)
            if readable:
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    data = b""
                for cmd in self._commands.feed(data):
                    self._handle(cmd)
            if self.streaming:
                n = self._pacer.due()
                if n:
                    self._produce(n)
            if self._out:
                try:
                    written = os.write(master, self._out)
                except BlockingIOError:
                    written = 0
                del self._out[:written]

    def _say(self, text: str) -> None:
        if not self.streaming:
            self._out += text.encode("ascii") + b"$$$"

    def _handle(self, cmd: bytes) -> None:
        self.commands.append(cmd)
        self._tracker.apply(cmd)
        if cmd == b"v":
            self.streaming = False
            self._out.clear()
            self._channels_on = 16 if self.daisy else 8
            daisy = "On Daisy ADS1299 Device ID: 0x3E\n" if self.daisy else ""
            self._say(_BANNER.format(daisy=daisy))
        elif cmd == b"d":
            self._say("updating channel settings to default")
        elif cmd == b"b":
            if not self.streaming:
                self._begin()
        elif cmd == b"s":
            self.streaming = False
            self._out.clear()
        elif cmd == b"c":
            if self._channels_on == 16:
                self._channels_on = 8
                self._say("daisy removed")
        elif cmd == b"C":
            if not self.daisy:
                self._say("no daisy to attach!8")
            elif self._channels_on == 16:
                self._say("16")
            else:
                self._channels_on = 16
                self._say("daisy attached16")
        elif cmd[:1] == b"~":
            try:
                self.fs = decode_sample_rate(cmd)
            except ProtocolError:
                self._say("Failure: invalid sample value")
            else:
                self._say(f"Success: Sample rate is {self.fs}Hz")
        elif cmd[:1] == b"x":
            try:
                channel, _ = decode_channel_settings(cmd)
            except ProtocolError:
                self._say("Failure: Err: too few chars")
            else:
                self._say(f"Success: Channel set for {channel}")
        elif cmd == b"V":
            self._say("v3.1.2")
        # Other commands are accepted silently, as the board does for many.

    def _begin(self) -> None:
        self.streaming = True
        self._out.clear()
        self._sample_number = 0
        self.n_sent = self.n_dropped = 0
        self._pacer = Pacer(skewed(self.fs, self.ppm))
        self._pacer.start()

    def _produce(self, n: int) -> None:
        first = self._sample_number
        p = first + np.arange(n)
        self._sample_number += n
        gains = self._tracker.gains
        if self._channels_on == 16:
            # Packets 2m (channels 9-16) and 2m+1 (channels 1-8) carry sample m.
            counts = uv_to_counts(self.expected_uv(p // 2), gains)
            eeg = np.where((p % 2 == 1)[:, None], counts[:, :8], counts[:, 8:])
        else:
            eeg = uv_to_counts(self.expected_uv(p)[:, :8], gains[:8])
        aux = np.zeros((n, 3), np.int64)
        aux[p % 10 == 0] = self.accel
        with self._lock:
            injected, self._inject = self._inject, []
            drop_next = self._drop_next
        send = np.ones(n, bool)
        if drop_next:
            k = min(drop_next, n)
            send[:k] = False
            with self._lock:
                self._drop_next -= k
        if self.drop:
            send &= self._rng.random(n) >= self.drop
        chunks = list(injected)
        for i in range(n):
            if not send[i]:
                self.n_dropped += 1
                continue
            if self.garbage and self._rng.random() < self.garbage:
                size = int(self._rng.integers(1, 41))
                chunks.append(self._rng.integers(0, 256, size, np.uint8).tobytes())
            chunks.append(encode_packets(p[i : i + 1], eeg[i : i + 1], aux[i : i + 1]))
            self.n_sent += 1
        data = b"".join(chunks)
        if len(self._out) + len(data) > _MAX_BACKLOG:
            self.n_overflow += n
            return
        self._out += data
