"""The ``cyton`` driver: OpenBCI Cyton (8 channels) and Cyton + Daisy (16) over serial.

Three layers, as for every protocol driver:

* the codec, :mod:`ampkit.protocols.cyton` (packets, commands, scaling);
* the transport, :class:`CytonLink`: a pyserial port -- a device name
  (``/dev/ttyUSB0``, ``COM3``, ``/dev/cu.usbserial-DM00XXXX``) or any pyserial
  URL (``socket://host:port``, ``loop://``) -- with the board's command
  dialogue and a background reader (:class:`ampkit.worker.Worker`);
* :class:`CytonAmp`, the :class:`~ampkit.amplifier.Amplifier`.

Try it without hardware::

    $ ampkit sim cyton
    /dev/pts/7
    >>> amp = ampkit.get_amp('cyton', port='/dev/pts/7')
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import serial

from ampkit.amplifier import Amplifier, Marker
from ampkit.block import GAP_MARKER
from ampkit.checks import check_positive_number
from ampkit.clock import local_clock
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    ProtocolError,
    StateError,
)
from ampkit.protocols.cyton import (
    ACCEL_G_PER_COUNT,
    BAUDRATE,
    DEFAULT_GAIN,
    GAINS,
    PACKET_SIZE,
    SAMPLE_RATES,
    Banner,
    ChannelSettings,
    GainTracker,
    PacketParser,
    ResponseReader,
    SampleAssembler,
    Samples,
    encode_channel_settings,
    encode_sample_rate,
    parse_banner,
    uv_per_count,
)
from ampkit.timestamps import SampleClock
from ampkit.worker import Worker

__all__ = ["CytonAmp", "CytonLink", "probe"]

logger = logging.getLogger("ampkit")

#: Environment variable naming ports (separated by ``os.pathsep``) that
#: :meth:`CytonAmp.is_available` probes besides the configured ones.
PORT_ENV = "AMPKIT_CYTON_PORT"

#: Seconds between drains of a device port by the reader thread: far below
#: what the smallest OS buffer (4 KB, half a second of data) holds, and few
#: wake-ups (each costs more CPU on a busy machine than the drain itself).
DRAIN_INTERVAL = 0.1

#: Bytes without a valid packet after which streaming counts as broken
#: (about one second of data).
MAX_GARBAGE = 8192


def _posix_fd(ser: serial.SerialBase) -> int | None:
    """The file descriptor of a POSIX device port, None for URLs and Windows."""
    if os.name != "posix" or type(ser) is not serial.Serial:
        return None
    fd = getattr(ser, "fd", None)
    return fd if isinstance(fd, int) else None


def _open(port: str, timeout: float) -> serial.SerialBase:
    try:
        # exclusive: another program using the port (or a probe from
        # is_available()) must not send commands into a running stream.
        return serial.serial_for_url(
            port, baudrate=BAUDRATE, bytesize=8, parity="N", stopbits=1,
            timeout=0.05, write_timeout=timeout, exclusive=True,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise AmpNotAvailableError(f"could not open Cyton port {port!r}: {exc}") from exc


class CytonLink:
    """A serial connection to a Cyton: commands, answers, streaming.

    Parameters
    ----------
    port : str
        Device name or pyserial URL.
    daisy : bool
        Assemble 16-channel samples from pairs of packets.
    timeout : float
        Seconds to wait for an answer, and the longest silence tolerated
        while streaming before :class:`~ampkit.errors.ConnectionLostError`.
    read_interval : float
        Seconds the reader thread pauses after each read while streaming,
        letting packets gather (0: wake up for every packet).
    accel : bool
        Decode the accelerometer.

    Attributes
    ----------
    tracker : GainTracker
        Follows every command written, so the gains used for scaling are
        those the board was told.
    parser : PacketParser
    assembler : SampleAssembler
    """

    def __init__(
        self,
        port: str,
        daisy: bool = False,
        timeout: float = 3.0,
        read_interval: float = 0.0,
        accel: bool = True,
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.read_interval = read_interval
        self.tracker = GainTracker()
        self.parser = PacketParser(source=f"Cyton on {port}", max_garbage=MAX_GARBAGE)
        self.assembler = SampleAssembler(daisy=daisy, source=f"Cyton on {port}", accel=accel)
        self._answers = ResponseReader(source=f"Cyton on {port}")
        self._serial: serial.SerialBase | None = _open(port, timeout)
        self._worker: Worker | None = None
        self._cond = threading.Condition()
        self._raw = bytearray()  # received, not yet decoded
        self._io_lock = threading.Lock()
        self._fd: int | None = None
        self._last_bytes = 0.0
        self._raw_time = 0.0  # when the newest bytes in _raw arrived
        #: When the newest bytes of the samples last returned by :meth:`read`
        #: arrived (``local_clock``).
        self.arrival = 0.0
        self._lost: ConnectionLostError | None = None

    # -- commands -------------------------------------------------------

    def write(self, command: bytes) -> None:
        """Send bytes to the board (and track the gains they set)."""
        ser = self._require()
        self.tracker.feed(command)
        try:
            ser.write(command)
            ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLostError(f"writing to the Cyton on {self.port} failed: {exc}") from exc

    def command(self, command: bytes, timeout: float | None = None) -> str:
        """Send a command and return the board's answer (without ``$$$``).

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            No complete answer within ``timeout`` seconds.
        """
        self.write(command)
        return self.read_answer(command, timeout)

    def read_answer(self, command: bytes = b"", timeout: float | None = None) -> str:
        """Wait for the next text answer ending in ``$$$``."""
        ser = self._require()
        deadline = local_clock() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise ConnectionLostError(
                    f"reading from the Cyton on {self.port} failed: {exc}"
                ) from exc
            answers = self._answers.feed(data)
            if answers:
                logger.debug("Cyton on %s: %r -> %r", self.port, command, answers[0])
                return answers[0]
            if local_clock() > deadline:
                raise AmpNotAvailableError(
                    f"no answer to {command.decode('latin-1')!r} from a Cyton on {self.port} "
                    f"within {self.timeout if timeout is None else timeout:g} s "
                    "(is the board switched on, and the dongle switched to GPIO6?)"
                )

    def drain(self, quiet: float = 0.1, limit: float = 1.0) -> int:
        """Discard input until the line is quiet for ``quiet`` s (at most ``limit`` s)."""
        ser = self._require()
        end = local_clock() + limit
        last = local_clock()
        n = 0
        while local_clock() < end and local_clock() - last < quiet:
            data = ser.read(max(1, ser.in_waiting))
            if data:
                n += len(data)
                last = local_clock()
        ser.reset_input_buffer()
        self._answers.clear()
        return n

    def reset(self) -> Banner:
        """Stop any stream, soft-reset (``v``) and return the parsed banner.

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            No answer, or the answer is not an OpenBCI banner.
        """
        self.write(b"s")
        self.drain()
        text = self.command(b"v")
        try:
            return parse_banner(text)
        except ProtocolError as exc:
            raise AmpNotAvailableError(f"{self.port}: {exc}") from exc

    # -- streaming ------------------------------------------------------

    def start_stream(self) -> None:
        """Reset the codec, start the reader thread, then send ``b``."""
        self.parser.reset()
        self.assembler.reset()
        with self._cond:
            self._raw.clear()
        self._last_bytes = local_clock()
        self._fd = _posix_fd(self._require())
        self._worker = Worker(self._read_loop, f"cyton reader {self.port}")
        self._worker.start()
        self.write(b"b")

    # Two ways to move bytes from the port into self._raw:
    #
    # * a POSIX device port (the usual case): its file descriptor is read
    #   without blocking, by get_data() itself when called (the freshest
    #   data, no thread hand-off) and every DRAIN_INTERVAL by the reader
    #   thread, which keeps the OS buffer from overflowing while nobody
    #   calls get_data() (its size depends on the OS and driver; at 8 KB/s
    #   even 4 KB lasts half a second). Few wake-ups, hence little CPU.
    # * anything else (pyserial URLs): the reader thread reads with
    #   Serial.read(), pausing read_interval after each read.
    #
    # Reads and appends happen under _io_lock, so bytes keep their order.

    def _pull(self) -> int:
        """Read what the port holds now, without blocking (device ports)."""
        fd = self._fd
        assert fd is not None
        with self._io_lock:
            if not select.select([fd], [], [], 0)[0]:
                return 0
            try:
                data = os.read(fd, 65536)
            except OSError as exc:
                raise ConnectionLostError(f"the Cyton on {self.port} went away: {exc}") from exc
            if not data:
                raise ConnectionLostError(
                    f"the Cyton on {self.port} went away: end of file (unplugged?)"
                )
            self._last_bytes = local_clock()
            with self._cond:  # as a lock: nobody waits on it for a device port
                self._raw += data
                self._raw_time = self._last_bytes
            return len(data)

    def _read_loop(self, stop: threading.Event) -> None:
        if self._fd is not None:
            while not stop.wait(DRAIN_INTERVAL):
                self._pull()
                self._check_silence()
            return
        ser = self._require()
        pending = 0  # bytes since the last whole packet, to wake once per packet
        while not stop.is_set():
            try:
                data = ser.read(max(ser.in_waiting, PACKET_SIZE - pending))
            except (serial.SerialException, OSError) as exc:
                raise ConnectionLostError(
                    f"the Cyton on {self.port} went away: {exc}"
                ) from exc
            if data:
                self._last_bytes = local_clock()
                pending = (pending + len(data)) % PACKET_SIZE
                with self._cond:
                    self._raw += data
                    self._raw_time = self._last_bytes
                    self._cond.notify_all()
                if self.read_interval:
                    # Let a few packets gather: fewer wake-ups of this
                    # thread and of a reader blocked in get_data().
                    stop.wait(self.read_interval)
            else:
                self._check_silence()

    def _check_silence(self) -> None:
        if local_clock() - self._last_bytes > self.timeout:
            raise ConnectionLostError(
                f"no data from the Cyton on {self.port} for {self.timeout:g} s"
            )

    def _wait_for_bytes(self, worker: Worker, deadline: float) -> None:
        """Block until bytes are in self._raw, the reader died, or the deadline."""
        fd = self._fd
        if fd is None:
            with self._cond:
                while not self._raw and worker.is_alive:
                    remaining = deadline - local_clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(min(remaining, 0.1))
            return
        while not self._raw and worker.is_alive:
            remaining = deadline - local_clock()
            if remaining <= 0:
                return
            if self.read_interval:
                # Look every read_interval: packets gather meanwhile, and a
                # tight loop wakes up once per interval, not per packet.
                time.sleep(min(self.read_interval, remaining))
                if not self._pull():
                    self._check_silence()
            # Short waits: the reader thread may take the bytes meanwhile.
            elif select.select([fd], [], [], min(remaining, 0.01))[0]:
                self._pull()
            else:
                self._check_silence()

    def read(self, wait: float) -> Samples | None:
        """Return all samples received so far, waiting up to ``wait`` s for some.

        Returns None when nothing arrived in time.

        Raises
        ------
        ampkit.errors.ConnectionLostError
            The port failed, or the board fell silent (after the samples
            received before were returned).
        ampkit.errors.ProtocolError
            The stream was garbage for too long.
        """
        worker = self._worker
        if worker is None:
            raise StateError("the Cyton is not streaming")
        if self._lost is not None:
            error, self._lost = self._lost, None
            raise error
        deadline = local_clock() + wait
        parts: list[Samples] = []
        lost: ConnectionLostError | None = None
        while True:
            if self._fd is not None and worker.is_alive and lost is None:
                try:
                    self._pull()
                except ConnectionLostError as exc:
                    lost = exc  # raised after what arrived before is handed out
            if not self._raw and lost is None:
                try:
                    self._wait_for_bytes(worker, deadline)
                except ConnectionLostError as exc:
                    lost = exc
            with self._cond:
                raw, self._raw = self._raw, bytearray()
                arrival = self._raw_time
            if raw:
                samples = self.assembler.push(self.parser.feed(raw))
                if len(samples):
                    parts.append(samples)
                    self.arrival = arrival
            if parts or lost is not None or not worker.is_alive:
                break
            if local_clock() >= deadline:
                break
        if parts:
            if lost is not None:
                self._lost = lost
            return Samples.concatenate(parts, self.assembler.channels)
        if lost is not None:
            raise lost
        worker.check()
        if not worker.is_alive:
            raise ConnectionLostError(f"the Cyton reader on {self.port} stopped")
        return None

    def stop_stream(self) -> None:
        """Send ``s`` (if the port still works) and stop the reader."""
        try:
            if self._serial is not None:
                self.write(b"s")
        except ConnectionLostError as exc:
            logger.info("Cyton on %s: could not send 's': %s", self.port, exc)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    def close(self) -> None:
        """Stop streaming and close the port."""
        self.stop_stream()
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError) as exc:
                logger.info("Cyton on %s: closing the port: %s", self.port, exc)

    def _require(self) -> serial.SerialBase:
        if self._serial is None:
            raise StateError(f"the port {self.port} is closed")
        return self._serial


def probe(port: str, timeout: float = 2.0) -> Banner | None:
    """Return the banner of the Cyton on ``port``, or None if none answers.

    Sends ``s`` and ``v`` (a soft reset). Never raises for an absent or
    silent device.
    """
    try:
        link = CytonLink(port, timeout=timeout)
    except AmpNotAvailableError as exc:
        logger.debug("probe %s: %s", port, exc)
        return None
    try:
        return link.reset()
    except (AmpNotAvailableError, ConnectionLostError, StateError) as exc:
        logger.debug("probe %s: %s", port, exc)
        return None
    finally:
        link.close()


class CytonAmp(Amplifier):
    """OpenBCI Cyton, or Cyton + Daisy, through its USB dongle.

    ``start()`` opens the port and runs the board's connect sequence: ``s``
    (stop a stream left running), ``v`` (soft reset, wait for the banner),
    ``c``/``C`` (8 or 16 channels), ``d`` (default channel settings), ``~N``
    (sample rate, firmware 3 and later), an ``x...X`` per channel whose gain
    is not the default, then ``b``. ``stop()`` sends ``s`` and closes the
    port.

    Data are in µV, scaled with each channel's gain; with ``accel=True``
    three more columns carry the accelerometer in g. Samples lost on the
    radio link are found from the packets' sample numbers: each loss is
    logged, counted in :attr:`lost_samples` and marked with
    :data:`ampkit.block.GAP_MARKER` at the first sample after it. The
    board has no clock the computer can read: each sample's time comes from
    a :class:`~ampkit.timestamps.SampleClock` that follows the board's own
    rate from the arrival times of the bytes (see :doc:`/timing`), with the
    sample numbers deciding losses.

    Attributes
    ----------
    banner : Banner or None
        The board's answer to ``v`` at the last ``start()``.
    gap_count : int
        Runs of lost samples since ``start()``.
    lost_samples : int
        Samples lost since ``start()``.
    skipped_bytes : int
        Bytes skipped as garbage since ``start()``.

    Examples
    --------
    >>> amp = ampkit.get_amp('cyton', port='/dev/ttyUSB0', daisy=True)  # doctest: +SKIP
    >>> amp.start(); data, markers = amp.get_data(); amp.stop()        # doctest: +SKIP
    """

    presets: ClassVar[list[list[Any]]] = [
        ["Cyton, 8 channels at 250 Hz", {"daisy": False}],
        ["Cyton + Daisy, 16 channels at 125 Hz", {"daisy": True}],
    ]

    #: Ports given to ``configure()`` in this process; ``is_available()`` probes them.
    known_ports: ClassVar[list[str]] = []
    #: Ports currently streaming in this process (not probed again).
    _ports_in_use: ClassVar[set[str]] = set()

    def __init__(self) -> None:
        self.running = False
        self._link: CytonLink | None = None
        self.banner: Banner | None = None
        self.gap_count = 0
        self.lost_samples = 0
        self.skipped_bytes = 0
        self._clock: SampleClock | None = None
        self._timestamps: np.ndarray | None = None
        self.configure()

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
            Serial device (``/dev/ttyUSB0``, ``COM3``...) or pyserial URL. When
            omitted, the first entry of the ``AMPKIT_CYTON_PORT`` environment
            variable.
        daisy : bool
            16 channels with the Daisy module (125 Hz per 16-channel sample).
        gains : int or sequence of int, optional
            Gain of all channels, or one per channel; each one of
            1, 2, 4, 6, 8, 12, 24. Default: 24 (the board's default).
        fs : int
            Board sample rate in Hz: 250 (the only rate the radio dongle
            carries), or 500 ... 16000 (firmware 3, WiFi shield or SD card
            setups). With the Daisy, complete samples come at ``fs / 2``.
        timeout : float
            Seconds to wait for each answer of the board, and the longest
            silence tolerated while streaming.
        latency : float
            Seconds (0 to 0.1) a ``get_data()`` that waits for data lets
            packets gather after the first arrives, so a tight loop wakes
            up less often; 0 returns each packet as soon as it arrives. A
            ``get_data()`` that finds data waiting returns it at once. (The
            dongle's USB serial chip adds its own latency timer, 16 ms by
            default.)
        accel : bool
            Add accelerometer columns ``AccX``, ``AccY``, ``AccZ`` (g).
        channel_names : sequence of str, optional
            Names of the EEG channels; ``Ch1``... by default.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A value is out of range.
        ampkit.errors.StateError
            Called while running.
        """
        if getattr(self, "running", False):
            raise StateError("configure() while running: call stop() first")
        if port is None:
            env = os.environ.get(PORT_ENV, "")
            port = env.split(os.pathsep)[0] or None
        if port is not None and not isinstance(port, str):
            raise ConfigurationError(f"port must be a string, got {port!r}")
        if not isinstance(daisy, bool):
            raise ConfigurationError(f"daisy must be True or False, got {daisy!r}")
        n = 16 if daisy else 8
        if gains is None:
            gain_list = [DEFAULT_GAIN] * n
        elif isinstance(gains, (int, np.integer)) and not isinstance(gains, bool):
            gain_list = [int(gains)] * n
        else:
            try:
                gain_list = [int(g) for g in gains]  # type: ignore[union-attr]
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"gains must be an int or {n} ints, got {gains!r}"
                ) from exc
            if len(gain_list) != n:
                raise ConfigurationError(f"gains must have {n} values, got {len(gain_list)}")
        bad = [g for g in gain_list if g not in GAINS]
        if bad:
            raise ConfigurationError(f"gains must be among {GAINS}, got {bad}")
        if fs not in SAMPLE_RATES or isinstance(fs, bool):
            raise ConfigurationError(f"fs must be one of {sorted(SAMPLE_RATES)} Hz, got {fs!r}")
        if channel_names is not None:
            channel_names = [str(c) for c in channel_names]
            if len(channel_names) != n:
                raise ConfigurationError(
                    f"channel_names must have {n} names, got {len(channel_names)}"
                )
        timeout = check_positive_number("timeout", timeout)
        if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not (
            0 <= latency <= 0.1
        ):
            raise ConfigurationError(f"latency must be 0 to 0.1 s, got {latency!r}")
        self.port = port
        self.daisy = daisy
        self.gains = gain_list
        self.fs = int(fs)
        self.timeout = timeout
        self.latency = float(latency)
        self.accel = bool(accel)
        self.channel_names = channel_names or [f"Ch{i + 1}" for i in range(n)]
        if port is not None and port not in CytonAmp.known_ports:
            CytonAmp.known_ports.append(port)

    # -- contract -----------------------------------------------------------

    def get_channels(self) -> list[str]:
        """EEG channel names, then ``AccX``, ``AccY``, ``AccZ`` with ``accel``."""
        return list(self.channel_names) + (["AccX", "AccY", "AccZ"] if self.accel else [])

    def get_units(self) -> list[str]:
        """µV for EEG channels, g for the accelerometer."""
        return ["µV"] * len(self.channel_names) + (["g"] * 3 if self.accel else [])

    def get_sampling_frequency(self) -> float:
        """Rate of complete samples: ``fs``, or ``fs / 2`` with the Daisy."""
        return self.fs / 2 if self.daisy else float(self.fs)

    def start(self) -> None:
        """Open the port, configure the board and start streaming.

        Raises
        ------
        ampkit.errors.ConfigurationError
            No port configured, or a setting the board's firmware lacks.
        ampkit.errors.AmpNotAvailableError
            The port cannot be opened, or no Cyton answers on it, or the
            Daisy is asked for but absent.
        ampkit.errors.ProtocolError
            The board refused a setting.
        """
        if self.running:
            raise StateError("start() while running: call stop() first")
        if self.port is None:
            raise ConfigurationError(
                f"no port configured: configure(port=...) or set {PORT_ENV}"
            )
        link = CytonLink(
            self.port, daisy=self.daisy, timeout=self.timeout, read_interval=self.latency,
            accel=self.accel,
        )
        try:
            self._connect(link)
            link.start_stream()
        except BaseException:
            link.close()
            raise
        self._link = link
        # No command is sent while streaming, so the gains stay as tracked.
        gains = link.tracker.gains[: len(self.gains)]
        self._scale = np.array([uv_per_count(g) for g in gains])
        self.gap_count = 0
        self.lost_samples = 0
        self.skipped_bytes = 0
        self._clock = SampleClock(self.get_sampling_frequency(), detect_gaps=False)
        self._lost_after = 0  # lost after the last sample returned
        self.running = True
        CytonAmp._ports_in_use.add(self.port)

    def _connect(self, link: CytonLink) -> None:
        banner = link.reset()
        self.banner = banner
        logger.info("Cyton on %s: %s", self.port, " / ".join(banner.text.split("\n")[:1]))
        if self.daisy:
            answer = link.command(b"C")
            if "no daisy" in answer.lower() or not answer.strip().endswith("16"):
                raise AmpNotAvailableError(
                    f"daisy=True but the board on {self.port} has no Daisy module: {answer!r}"
                )
        elif banner.daisy:
            link.command(b"c")  # answers 'daisy removed'
        link.command(b"d")
        if banner.firmware >= (3, 0, 0):
            self._expect_success(link, encode_sample_rate(self.fs))
        elif self.fs != 250:
            raise ConfigurationError(
                f"fs={self.fs} needs firmware 3 or later; the board runs "
                f"v{'.'.join(map(str, banner.firmware))}"
            )
        if self.fs > 250:
            logger.warning(
                "Cyton on %s: the radio dongle carries only 250 Hz; fs=%d needs another link",
                self.port, self.fs,
            )
        for channel, gain in enumerate(self.gains, start=1):
            if gain != link.tracker.gains[channel - 1]:
                self._expect_success(
                    link, encode_channel_settings(channel, ChannelSettings(gain=gain))
                )
        if link.tracker.gains[: len(self.gains)] != self.gains:
            raise ProtocolError(f"gains not applied on {self.port}: {link.tracker.gains}")

    def _expect_success(self, link: CytonLink, command: bytes) -> None:
        answer = link.command(command)
        if "success" not in answer.lower():
            raise ProtocolError(
                f"the Cyton on {self.port} refused {command.decode('latin-1')!r}: {answer!r}"
            )

    def stop(self) -> None:
        """Send ``s``, stop the reader and close the port (prompt, even if unplugged)."""
        if not self.running:
            raise StateError("stop() while not running")
        self.running = False
        CytonAmp._ports_in_use.discard(self.port)  # type: ignore[arg-type]
        link, self._link = self._link, None
        if link is not None:
            self.skipped_bytes = link.parser.n_skipped
            link.close()

    def close(self) -> None:
        """Stop if running."""
        if self.running:
            self.stop()

    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Return the samples received since the last call (waits for at least one).

        Returns
        -------
        data : ndarray of float64, shape (n, channels)
            µV (and g for the accelerometer columns).
        markers : list of (float, str)
            A :data:`~ampkit.block.GAP_MARKER` at the first sample after
            each run of lost samples.

        Raises
        ------
        ampkit.errors.ConnectionLostError
            The port went away or the board fell silent for ``timeout`` s.
        ampkit.errors.ProtocolError
            The board sent only garbage for about a second.
        """
        if not self.running or self._link is None:
            raise StateError("get_data() before start()")
        link = self._link
        samples = link.read(wait=self.timeout)
        self.skipped_bytes = link.parser.n_skipped
        if samples is None:
            self._timestamps = np.empty(0)
            n = len(self.get_channels())
            return np.empty((0, n)), []
        self._timestamps = self._stamp(samples, link.arrival)
        if self.accel:
            data = np.empty((len(samples), self._scale.size + 3))
            np.multiply(samples.eeg, self._scale, out=data[:, :-3])
            np.multiply(samples.accel, ACCEL_G_PER_COUNT, out=data[:, -3:])
        else:
            data = samples.eeg * self._scale
        markers: list[Marker] = []
        if not samples.gaps:
            return data, markers
        period_ms = 1000.0 / self.get_sampling_frequency()
        for row, lost in samples.gaps:
            self.gap_count += 1
            self.lost_samples += lost
            markers.append((row * period_ms, GAP_MARKER.format(n=lost)))
        return data, markers

    def _stamp(self, samples: Samples, arrival: float) -> np.ndarray:
        """Times of ``samples``, whose newest arrived at ``arrival``; the lost
        samples the sample numbers show take their places in the clock."""
        clock = self._clock
        assert clock is not None
        n = len(samples)
        lost_before = self._lost_after
        self._lost_after = 0
        if not samples.gaps:
            return clock.stamp(n, arrival, lost_before)[0]
        extra = np.zeros(n, np.int64)
        for row, lost in samples.gaps:
            if row < n:
                extra[row] += lost
            else:
                self._lost_after += lost
        lost_before += int(extra[0])
        extra[0] = 0
        position = np.arange(n) + np.cumsum(extra)
        return clock.stamp(int(position[-1]) + 1, arrival, lost_before)[0][position]

    def get_timestamps(self) -> np.ndarray | None:
        """Times of the samples last returned by ``get_data()`` (local_clock)."""
        return self._timestamps

    def get_effective_rate(self) -> float | None:
        """The board's sample rate measured from arrival times (Hz)."""
        return None if self._clock is None else self._clock.rate

    @staticmethod
    def is_available() -> bool:
        """Whether a Cyton answers on a configured port.

        Probes the ports given to ``configure()`` in this process and those
        in the ``AMPKIT_CYTON_PORT`` environment variable (a probe sends
        ``v``, a soft reset); a port streaming in this process counts as
        available. Ports are not scanned: sending ``v`` to an unknown
        device could disturb it.
        """
        ports = list(CytonAmp.known_ports)
        ports += [p for p in os.environ.get(PORT_ENV, "").split(os.pathsep) if p]
        for port in dict.fromkeys(ports):
            if port in CytonAmp._ports_in_use or probe(port) is not None:
                return True
        return False

