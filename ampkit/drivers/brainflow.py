"""The ``brainflow`` driver: every board BrainFlow supports, as an ampkit amp.

BrainFlow (``pip install brainflow``) talks to 60+ boards -- OpenBCI
Cyton/Daisy/Ganglion, Muse, Neurosity, g.tec Unicorn, BrainBit, ... -- each
behind one ``BoardShim``. :class:`BrainFlowAmp` wraps a ``BoardShim``, so
each of those boards gets what the decorator adds (network markers on the
right sample, recordings MNE opens, live buffers, LSL, drift-following
timestamps)::

    amp = ampkit.get_amp('brainflow', board='cyton', serial_port='/dev/ttyUSB0')
    amp = ampkit.get_amp('brainflow', board='synthetic')          # no device

BrainFlow keeps its own ring buffer filled by its own thread, so this driver
has no thread: ``get_data()`` takes what BrainFlow has gathered since the
last call. BrainFlow's own log output goes to the logger
``ampkit.brainflow`` (:class:`BrainFlowLog`), never to the terminal.

BrainFlow is imported when the first amp is configured, not when drivers are
listed: :func:`ampkit.get_available_amps` stays fast and probes nothing.
"""

from __future__ import annotations

import atexit
import difflib
import importlib.util
import logging
import numbers
import os
import re
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from ampkit.amplifier import Amplifier, EitherMethod, Marker
from ampkit.block import GAP_MARKER
from ampkit.checks import check_positive_number
from ampkit.clock import local_clock
from ampkit.errors import (
    AmpkitError,
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    StateError,
)
from ampkit.timestamps import Gap, SampleClock

__all__ = ["BrainFlowAmp", "BrainFlowLog", "board_id", "board_names", "marker_text"]

logger = logging.getLogger("ampkit")

#: The logger BrainFlow's own messages are forwarded to.
brainflow_logger = logging.getLogger("ampkit.brainflow")

#: Short names for BrainFlow's boards, beside the ``BoardIds`` names.
BOARD_ALIASES = {"synthetic": "SYNTHETIC_BOARD", "playback": "PLAYBACK_FILE_BOARD"}

#: Row kinds of BrainFlow's board descriptors that ``rows=`` can ask for:
#: kind -> (descriptor key, channel name prefix, unit). BrainFlow documents
#: µV for EXG rows; the other units are what its OpenBCI, Muse and
#: synthetic boards deliver and are labels only ('a.u.' where unknown).
ROW_KINDS = {
    "eeg": ("eeg_channels", "EEG", "µV"),
    "exg": ("exg_channels", "EXG", "µV"),
    "emg": ("emg_channels", "EMG", "µV"),
    "ecg": ("ecg_channels", "ECG", "µV"),
    "eog": ("eog_channels", "EOG", "µV"),
    "accel": ("accel_channels", "Acc", "g"),
    "gyro": ("gyro_channels", "Gyro", "deg/s"),
    "magnetometer": ("magnetometer_channels", "Mag", "a.u."),
    "eda": ("eda_channels", "EDA", "a.u."),
    "ppg": ("ppg_channels", "PPG", "a.u."),
    "temperature": ("temperature_channels", "Temp", "°C"),
    "resistance": ("resistance_channels", "Res", "a.u."),
    "optical": ("optical_channels", "Optical", "a.u."),
    "rotation": ("rotation_channels", "Rot", "a.u."),
    "analog": ("analog_channels", "Analog", "a.u."),
    "other": ("other_channels", "Other", "a.u."),
    "battery": ("battery_channel", "Battery", "%"),
    "package": ("package_num_channel", "Package", "a.u."),
}

#: The kinds tried, in order, when ``rows`` is not given.
DEFAULT_KINDS = ("eeg", "exg", "emg", "ecg", "eog")

#: BrainFlowInputParams fields that take text, and those that take an int.
_TEXT_PARAMS = (
    "serial_port", "mac_address", "ip_address", "ip_address_aux", "ip_address_anc",
    "other_info", "serial_number", "file", "file_aux", "file_anc",
)
_INT_PARAMS = ("ip_port", "ip_port_aux", "ip_port_anc", "timeout")
_PRESET_FILES = {0: "file", 1: "file_aux", 2: "file_anc"}
_PROTOCOLS = {"none": 0, "udp": 1, "tcp": 2}

#: What a failed ``prepare_session``/``start_stream`` most likely means, by
#: BrainFlow exit code name: (error class, what to check).
_EXIT_HINTS: dict[str, tuple[type[AmpkitError], str]] = {
    "PORT_ALREADY_OPEN_ERROR": (
        AmpNotAvailableError, "the port is open already: close other programs using it"),
    "UNABLE_TO_OPEN_PORT_ERROR": (
        AmpNotAvailableError,
        "the port could not be opened: check serial_port (the dongle plugged in? "
        "permission to open it, e.g. the dialout group on Linux? no other program using it?)"),
    "SER_PORT_ERROR": (AmpNotAvailableError, "the serial port failed: check serial_port"),
    "BOARD_WRITE_ERROR": (
        AmpNotAvailableError, "writing to the board failed: is it connected and switched on?"),
    "INCOMMING_MSG_ERROR": (
        AmpNotAvailableError, "the board's answer was not understood: is it the board named?"),
    "INITIAL_MSG_ERROR": (
        AmpNotAvailableError, "the board's first message was wrong: is it the board named?"),
    "BOARD_NOT_READY_ERROR": (
        AmpNotAvailableError,
        "the board did not answer: is it switched on, in range, and (OpenBCI) the dongle "
        "switched to GPIO6?"),
    "SYNC_TIMEOUT_ERROR": (
        AmpNotAvailableError,
        "no answer in time: is the board switched on and in range? (timeout= waits longer)"),
    "INVALID_ARGUMENTS_ERROR": (
        ConfigurationError,
        "BrainFlow refused the parameters: check the ones this board needs "
        "(serial_port, mac_address, ip_address, ip_port, serial_number, file, other_info)"),
    "UNSUPPORTED_BOARD_ERROR": (
        AmpNotAvailableError,
        "this BrainFlow build does not support the board on this platform"),
    "ANOTHER_BOARD_IS_CREATED_ERROR": (
        AmpNotAvailableError,
        "a session for the same board with the same parameters is open in this process: "
        "stop() or close() the other amp first"),
    "STREAM_ALREADY_RUN_ERROR": (
        AmpNotAvailableError, "the board is streaming already in this process"),
    "INVALID_BUFFER_SIZE_ERROR": (
        ConfigurationError, "the buffer is too large for BrainFlow: lower buffer="),
}

#: Seconds between forwarding BrainFlow's log while streaming (it logs
#: little then; every start, stop and failure forwards at once).
LOG_INTERVAL = 1.0

_bf: SimpleNamespace | None = None
_bf_lock = threading.Lock()


def _brainflow() -> SimpleNamespace:
    """Import BrainFlow (once) and route its log output into ``ampkit.brainflow``.

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        BrainFlow is not installed or its library does not load.
    """
    global _bf
    with _bf_lock:
        if _bf is not None:
            return _bf
        try:
            with warnings.catch_warnings():
                # brainflow 5.x finds its library through pkg_resources when
                # it first loads it, which warns of its own deprecation.
                warnings.filterwarnings("ignore", message="pkg_resources", category=UserWarning)
                import brainflow.board_shim as board_shim
                import brainflow.exit_codes as exit_codes

                board_shim.BoardControllerDLL.get_instance()
        except (ImportError, OSError) as exc:
            raise AmpNotAvailableError(
                f"the brainflow driver needs BrainFlow: pip install brainflow ({exc})"
            ) from exc
        bf = SimpleNamespace(
            BoardShim=board_shim.BoardShim,
            Session=_session_class(board_shim.BoardShim),
            BoardIds=board_shim.BoardIds,
            BrainFlowInputParams=board_shim.BrainFlowInputParams,
            BrainFlowPresets=board_shim.BrainFlowPresets,
            BrainFlowError=exit_codes.BrainFlowError,
            BrainFlowExitCodes=exit_codes.BrainFlowExitCodes,
            version=board_shim.BoardShim.get_version(),
        )
        bf.log = BrainFlowLog(bf.BoardShim)
        _bf = bf
        return bf


def _session_class(board_shim: type) -> type:
    """``BoardShim`` that releases its session when collected only if it prepared it.

    BrainFlow knows a session by board and parameters, not by object: the
    stock ``BoardShim.__del__`` of an object whose ``prepare_session`` failed
    because the same board is open elsewhere in the process would release
    that other session.
    """

    class Session(board_shim):  # type: ignore[misc, valid-type]
        owner = False

        def __del__(self) -> None:
            if self.owner:
                super().__del__()

    return Session


# -- BrainFlow's log ------------------------------------------------------

_LOG_LINE = re.compile(r"^\[[^\]]*\] \[[^\]]*\] \[(\w+)\] (.*)$")
_LEVELS_IN = {
    "trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
    "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
}


def _brainflow_level(level: int) -> int:
    """BrainFlow's log level (0 trace ... 6 off) for a Python logging level."""
    for limit, value in (
        (logging.DEBUG - 1, 0), (logging.DEBUG, 1), (logging.INFO, 2),
        (logging.WARNING, 3), (logging.ERROR, 4), (logging.CRITICAL, 5),
    ):
        if level <= limit:
            return value
    return 6


class BrainFlowLog:
    """BrainFlow's board logger, forwarded to the logger ``ampkit.brainflow``.

    BrainFlow's C++ library writes its log lines to stderr, or to a file
    (``BoardShim.set_log_file``); it has no callback. This object points it
    at a private file (unlinked at once on POSIX, so nothing is left behind)
    that it reads at every :meth:`poll` -- the driver polls after each call
    into BrainFlow -- and forwards each message at its level. A message over
    several lines (BrainFlow's JSON dumps) stays one record. At most
    ``max_read`` bytes are forwarded per poll; the rest of a flood (BrainFlow
    logs every failed read of a lost serial device at debug level) is
    skipped with a warning saying how much. The file is replaced when it
    grows past ``rotate_at`` bytes.

    BrainFlow's logger is one per process: while this is installed, every
    BoardShim of the process logs here.

    Parameters
    ----------
    board_shim : type
        ``brainflow.board_shim.BoardShim``.
    max_read, rotate_at : int
        Bytes.
    """

    def __init__(self, board_shim: Any, max_read: int = 1 << 20, rotate_at: int = 1 << 22):
        self._shim = board_shim
        self.max_read = max_read
        self.rotate_at = rotate_at
        self._lock = threading.Lock()
        self._fd = -1
        self._old_fd = -1  # the previous file, read once more after a rotation
        self._rest = b""
        self._level: int | None = None
        self._open()
        self.set_level(brainflow_logger.getEffectiveLevel())
        atexit.register(self.close)

    def _open(self) -> None:
        fd, path = tempfile.mkstemp(prefix="ampkit-brainflow-", suffix=".log")
        try:
            self._shim.set_log_file(path)
            new = os.open(path, os.O_RDONLY)
        finally:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:  # Windows: the open file stays until exit
                atexit.register(_remove, path)
        self._old_fd, self._fd = self._fd, new

    def set_level(self, level: int) -> None:
        """Let BrainFlow produce messages from the Python ``level`` up."""
        value = _brainflow_level(level)
        if value != self._level:
            self._shim.set_log_level(value)
            self._level = value

    def poll(self) -> list[tuple[int, str]]:
        """Forward what BrainFlow logged since the last poll.

        Returns
        -------
        list of (int, str)
            The ``(level, message)`` records forwarded.
        """
        with self._lock:
            if self._fd < 0:
                return []
            data = b""
            if self._old_fd >= 0:
                data = self._read_all(self._old_fd)
                os.close(self._old_fd)
                self._old_fd = -1
            data += self._read_all(self._fd)
            if not data:
                return []
            if os.lseek(self._fd, 0, os.SEEK_CUR) > self.rotate_at:
                self._open()
            text = (self._rest + data).decode("utf-8", "replace")
            lines = text.split("\n")
            self._rest = lines.pop().encode()  # an unfinished line waits
            records = self._records(lines)
        for level, message in records:
            brainflow_logger.log(level, "BrainFlow: %s", message)
        return records

    def _read_all(self, fd: int) -> bytes:
        chunks, size = [], 0
        while size < self.max_read:
            chunk = os.read(fd, self.max_read - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        else:
            here = os.lseek(fd, 0, os.SEEK_CUR)
            end = os.lseek(fd, 0, os.SEEK_END)
            if end > here:
                brainflow_logger.warning(
                    "BrainFlow logged faster than it can be forwarded: %d bytes skipped",
                    end - here,
                )
        return b"".join(chunks)

    @staticmethod
    def _records(lines: list[str]) -> list[tuple[int, str]]:
        records: list[tuple[int, str]] = []
        for line in lines:
            match = _LOG_LINE.match(line)
            if match:
                level = _LEVELS_IN.get(match.group(1), logging.INFO)
                records.append((level, match.group(2)))
            elif records:
                level, text = records[-1]
                records[-1] = (level, f"{text}\n{line}")
            elif line:
                records.append((logging.INFO, line))
        return records

    def close(self) -> None:
        """Stop reading (BrainFlow keeps writing to the unlinked file)."""
        with self._lock:
            for fd in (self._fd, self._old_fd):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._old_fd = -1


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- boards -----------------------------------------------------------------


def _short(name: str) -> str:
    return "_".join(part for part in name.lower().split("_") if part != "board")


def board_names() -> list[str]:
    """Short names of the boards the installed BrainFlow knows, sorted.

    ``'cyton'``, ``'cyton_daisy'``, ``'muse_2'``, ..., and ``'synthetic'``
    and ``'playback'``. ``BoardIds`` names (``'CYTON_DAISY_BOARD'``) and
    numbers are accepted too. ``STREAMING_BOARD`` is left out (see
    :func:`board_id`).

    Returns
    -------
    list of str
    """
    bf = _brainflow()
    names = {_short(b.name) for b in bf.BoardIds if b.name not in ("NO_BOARD", "STREAMING_BOARD")}
    return sorted(names | set(BOARD_ALIASES))


def board_id(board: Any) -> int:
    """BrainFlow's board id for a name, ``BoardIds`` member or number.

    Names are case-insensitive, with or without ``_board``
    (``'cyton_daisy'``, ``'CYTON_DAISY_BOARD'``), plus ``'synthetic'`` and
    ``'playback'``.

    Parameters
    ----------
    board : str, int or brainflow.board_shim.BoardIds

    Returns
    -------
    int

    Raises
    ------
    ampkit.errors.ConfigurationError
        Unknown board (the message lists close matches), or
        ``STREAMING_BOARD``, which receives multicast from another process
        and is not supported: publish with LSL and use the ``lsl`` driver.
    """
    bf = _brainflow()
    ids = {b.value: b for b in bf.BoardIds}
    if isinstance(board, bool):
        raise ConfigurationError(f"board must be a name or a number, got {board!r}")
    if isinstance(board, numbers.Integral):
        member = ids.get(int(board))
        if member is None or member.name == "NO_BOARD":
            raise ConfigurationError(
                f"BrainFlow {bf.version} has no board number {board}; "
                f"known: {min(ids)}..{max(ids)} (see board_names())"
            )
    elif isinstance(board, str):
        key = board.strip().lower().replace("-", "_").replace(" ", "_")
        by_name = {b.name.lower(): b for b in bf.BoardIds if b.name != "NO_BOARD"}
        by_name.update({_short(name): b for name, b in list(by_name.items())})
        by_name.update({alias: bf.BoardIds[target] for alias, target in BOARD_ALIASES.items()})
        member = by_name.get(key)
        if member is None:
            close = difflib.get_close_matches(key, [n for n in board_names()], n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ConfigurationError(
                f"BrainFlow {bf.version} has no board {board!r}{hint} "
                "(ampkit.drivers.brainflow.board_names() lists them all)"
            )
    else:
        raise ConfigurationError(f"board must be a name or a number, got {board!r}")
    if member.name == "STREAMING_BOARD":
        raise ConfigurationError(
            "STREAMING_BOARD is not supported: it receives BrainFlow's multicast; "
            "stream the board from its own process with ampkit's LSL publishing instead "
            "(amp.start(lsl=True)) and read it with the 'lsl' driver"
        )
    return int(member.value)


def marker_text(value: float) -> str:
    """The text of a BrainFlow marker value: the number as Python prints it,
    without a ``.0`` for whole numbers.

    Parameters
    ----------
    value : float

    Returns
    -------
    str
        ``'3'`` for 3.0, ``'2.5'`` for 2.5, ``'1e+20'`` for 1e20.
    """
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


# -- playback markers -------------------------------------------------------


class _FileMarkers:
    """The marker column of a file BrainFlow's playback board replays.

    BrainFlow's playback board writes its marker queue (zeros, unless
    ``insert_marker`` was called) over the marker column of every row it
    replays, so the recorded markers are lost. They are read back here from
    the file: each row's timestamp -- the playback board is told to keep the
    file's (``old_timestamps``) -- and how many rows just before it carry the
    same timestamp identify the row, whether the file is replayed once,
    looped or seeked into. Rows are read as BrainFlow reads them: fields
    split at tabs (commas when a line has no tab), lines with the wrong
    number of fields skipped.
    """

    def __init__(self, path: str, n_rows: int, ts_row: int, marker_row: int) -> None:
        self.markers: dict[tuple[float, int], float] = {}
        self.n_rows = 0  # rows BrainFlow will replay
        previous, repeat = None, 0
        with open(path, "rb") as f:
            for line in f:
                fields = line.split(b"\t" if b"\t" in line else b",")
                if fields and fields[-1] == b"\n":
                    fields.pop()
                if len(fields) != n_rows:
                    continue
                self.n_rows += 1
                try:
                    t, value = float(fields[ts_row]), float(fields[marker_row])
                except ValueError:
                    continue
                repeat = repeat + 1 if t == previous else 0
                previous = t
                if value != 0.0:
                    self.markers[(t, repeat)] = value
        self._times = np.array(sorted({t for t, _ in self.markers}), dtype=np.float64)
        self._previous = np.nan  # timestamp of the last row replayed
        self._repeat = 0  # and how many rows before it had the same

    def find(self, stamps: np.ndarray) -> list[tuple[int, float]]:
        """``(row, value)`` of the file's markers among replayed rows with these timestamps."""
        n = len(stamps)
        if n == 0:
            return []
        index = np.arange(n)
        same = np.empty(n, bool)
        same[0] = stamps[0] == self._previous
        np.equal(stamps[1:], stamps[:-1], out=same[1:])
        run_start = np.maximum.accumulate(np.where(same, -1, index))
        repeat = np.where(run_start >= 0, index - run_start, index + self._repeat + 1)
        self._previous, self._repeat = float(stamps[-1]), int(repeat[-1])
        found = []
        for row in np.flatnonzero(np.isin(stamps, self._times)):
            value = self.markers.get((float(stamps[row]), int(repeat[row])))
            if value is not None:
                found.append((int(row), value))
        return found


# -- the driver ---------------------------------------------------------------


@dataclass
class _Layout:
    """Where ampkit's channels are among a preset's rows."""

    select: slice | np.ndarray  # the rows, as a slice where they are consecutive
    names: list[str]
    units: list[str]
    fs: float
    n_rows: int
    ts_row: int
    marker_row: int


def _layout(descr: dict[str, Any], kinds: Sequence[str], board: str) -> _Layout:
    rows: list[int] = []
    names: list[str] = []
    units: list[str] = []
    for kind in kinds:
        key, prefix, unit = ROW_KINDS[kind]
        found = descr.get(key)
        if found is None:
            available = [k for k, (key2, _, _) in ROW_KINDS.items() if key2 in descr]
            raise ConfigurationError(
                f"board {board!r} has no {kind!r} rows; it has: {', '.join(available)}"
            )
        found = [found] if isinstance(found, int) else list(found)
        new = [r for r in found if r not in rows]
        if kind == "eeg" and descr.get("eeg_names"):
            labels = str(descr["eeg_names"]).split(",")
            if len(labels) == len(found):
                kind_names = dict(zip(found, labels, strict=True))
            else:
                kind_names = {r: f"{prefix}{i}" for i, r in enumerate(found, 1)}
        elif len(found) == 1:
            kind_names = {found[0]: prefix}
        elif len(found) == 3 and kind in ("accel", "gyro", "magnetometer"):
            kind_names = dict(zip(found, (f"{prefix}{a}" for a in "XYZ"), strict=True))
        else:
            kind_names = {r: f"{prefix}{i}" for i, r in enumerate(found, 1)}
        rows += new
        names += [kind_names[r] for r in new]
        units += [unit] * len(new)
    consecutive = len(rows) > 0 and rows == list(range(rows[0], rows[0] + len(rows)))
    select = slice(rows[0], rows[0] + len(rows)) if consecutive else np.array(rows, np.intp)
    return _Layout(
        select, names, units, float(descr["sampling_rate"]),
        int(descr["num_rows"]), int(descr["timestamp_channel"]), int(descr["marker_channel"]),
    )


# Running amps, stopped at exit: a BoardShim still prepared when the
# interpreter shuts down complains from its __del__.
_running: weakref.WeakSet[BrainFlowAmp] = weakref.WeakSet()


@atexit.register
def _stop_running() -> None:
    for amp in list(_running):
        try:
            amp.stop()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


class BrainFlowAmp(Amplifier):
    """Any BrainFlow board as an ampkit amp.

    ``get_data()`` returns the rows chosen with ``rows=`` (EEG by default)
    of BrainFlow's data, in the board's units (µV for EXG rows); values
    BrainFlow put in its marker row become markers whose text is the number
    (:func:`marker_text`). Sample times: BrainFlow stamps each sample with
    the wall-clock time of its arrival in the computer; those stamps are
    jittery and come in bursts, so they are not handed on: a
    :class:`~ampkit.timestamps.SampleClock` stamps each block, fed with
    BrainFlow's stamp of the block's newest sample as its arrival (see the
    BrainFlow page of the docs for the measurement). It also measures the
    board's effective rate and finds lost samples from arrival times
    (``ampkit/gap`` markers). BrainFlow's own stamps of the last block stay
    available from :meth:`get_brainflow_timestamps`.

    Attributes
    ----------
    board_shim : brainflow.board_shim.BoardShim or None
        BrainFlow's session while running (for ``config_board`` and the like).
    finished : bool
        Playback board only: the whole file was replayed.
    n_overflows : int
        Reads that found BrainFlow's ring buffer full (older samples lost).
    gap_count, lost_samples : int
        Gaps the sample clock found since ``start()``, and samples lost in them.

    Examples
    --------
    >>> amp = ampkit.get_amp('brainflow', board='synthetic')      # doctest: +SKIP
    >>> amp.get_channels()[:3]                                     # doctest: +SKIP
    ['Fz', 'C3', 'Cz']
    """

    def __init__(self) -> None:
        self.running = False
        self.board_shim: Any = None
        self.finished = False
        self.n_overflows = self.gap_count = self.lost_samples = 0
        self._stamps = (np.empty(0), 0.0)
        self.configure()

    # -- configuration ------------------------------------------------------

    def configure(
        self,
        board: str | int = "synthetic",
        *,
        serial_port: str | None = None,
        mac_address: str | None = None,
        ip_address: str | None = None,
        ip_address_aux: str | None = None,
        ip_address_anc: str | None = None,
        ip_port: int | None = None,
        ip_port_aux: int | None = None,
        ip_port_anc: int | None = None,
        ip_protocol: str | int | None = None,
        serial_number: str | None = None,
        file: str | os.PathLike[str] | None = None,
        file_aux: str | os.PathLike[str] | None = None,
        file_anc: str | os.PathLike[str] | None = None,
        other_info: str | None = None,
        timeout: int | None = None,
        master_board: str | int | None = None,
        preset: str | int = "default",
        rows: str | Sequence[str] | None = None,
        config: str | Sequence[str] = (),
        buffer: float = 300.0,
        silence: float | None = None,
    ) -> None:
        """Choose the board, its connection parameters and what to read.

        Parameters
        ----------
        board : str or int
            A board name (``'synthetic'``, ``'playback'``, ``'cyton'``,
            ``'cyton_daisy'``, ``'ganglion'``, ``'muse_2'``,
            ``'unicorn'``...; :func:`board_names` lists them), a
            ``BoardIds`` name or member, or BrainFlow's board number.
        serial_port, mac_address, ip_address, ip_address_aux, ip_address_anc, \
ip_port, ip_port_aux, ip_port_anc, serial_number, other_info, timeout : optional
            BrainFlow's ``BrainFlowInputParams`` of the same names: which
            ones a board needs is in BrainFlow's list of supported boards
            (e.g. Cyton: ``serial_port``; Muse 2 over BLED: ``serial_port``
            of the dongle; Unicorn: optionally ``serial_number``).
            ``timeout`` is BrainFlow's, in whole seconds (discovery).
        ip_protocol : {'udp', 'tcp'} or int, optional
        file, file_aux, file_anc : str or path, optional
            Playback board: the files, written by BrainFlow
            (``DataFilter.write_file`` or a ``file://`` streamer), of the
            default, auxiliary and ancillary presets.
        master_board : str or int, optional
            Playback board: the board that recorded the file (required).
        preset : {'default', 'auxiliary', 'ancillary'} or int
            Which of BrainFlow's presets (data streams of their own rate) to
            read; one amp reads one preset.
        rows : str or sequence of str, optional
            Which rows of BrainFlow's data become channels, kinds of
            :data:`ROW_KINDS` (``'eeg'``, ``'accel'``, ``'gyro'``,
            ``'ppg'``, ``'other'``, ``'package'``...), e.g.
            ``('eeg', 'accel')`` or ``'eeg,accel'``. A row that an earlier
            kind already took is not repeated (many boards list the same rows
            as EEG, EMG and ECG). Default: the board's EEG rows (or EXG, EMG,
            ECG, EOG, the first it has).
        config : str or sequence of str
            Commands sent with BrainFlow's ``config_board`` after the session
            is prepared and before streaming starts, in order (e.g. Cyton's
            ``'x2010110X'``).
        buffer : float
            Seconds of data BrainFlow's ring buffer holds between two
            ``get_data()`` calls; older samples are overwritten (and logged).
        silence : float, optional
            Seconds without new samples after which ``get_data()`` raises
            :class:`~ampkit.errors.ConnectionLostError` (the playback board:
            sets ``finished``). Default ``max(3, 20 / fs)``.

        Raises
        ------
        ampkit.errors.ConfigurationError
            An unknown board (with close matches), row kind or preset, or a
            value of the wrong type.
        ampkit.errors.AmpNotAvailableError
            BrainFlow is not installed.
        ampkit.errors.StateError
            Called while running.
        """
        if getattr(self, "running", False):
            raise StateError("configure() while running: call stop() first")
        bf = _brainflow()
        ident = board_id(board)
        playback = ident == bf.BoardIds.PLAYBACK_FILE_BOARD.value
        if playback:
            if master_board is None:
                raise ConfigurationError(
                    "board='playback' needs master_board=, the board that recorded the file "
                    "(e.g. master_board='cyton')"
                )
            master = board_id(master_board)
            if master == bf.BoardIds.PLAYBACK_FILE_BOARD.value:
                raise ConfigurationError("master_board cannot be the playback board itself")
        elif master_board is not None:
            raise ConfigurationError("master_board= is for board='playback' only")
        else:
            master = ident
        params = bf.BrainFlowInputParams()
        given = {
            "serial_port": serial_port, "mac_address": mac_address, "ip_address": ip_address,
            "ip_address_aux": ip_address_aux, "ip_address_anc": ip_address_anc,
            "other_info": other_info, "serial_number": serial_number,
            "file": file, "file_aux": file_aux, "file_anc": file_anc,
        }
        for name in _TEXT_PARAMS:
            value = given[name]
            if value is None:
                continue
            if isinstance(value, os.PathLike) and name.startswith("file"):
                value = os.fspath(value)
            if not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a string, got {value!r}")
            setattr(params, name, value)
        numbers_given = {
            "ip_port": ip_port, "ip_port_aux": ip_port_aux, "ip_port_anc": ip_port_anc,
            "timeout": timeout,
        }
        for name in _INT_PARAMS:
            value = numbers_given[name]
            if value is None:
                continue
            top = 65535 if name.startswith("ip_port") else 2**31 - 1
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
                0 <= value <= top
            ):
                raise ConfigurationError(f"{name} must be an integer 0..{top}, got {value!r}")
            setattr(params, name, int(value))
        if ip_protocol is not None:
            protocol = _PROTOCOLS.get(str(ip_protocol).lower(), ip_protocol)
            if protocol not in _PROTOCOLS.values() or isinstance(protocol, bool):
                raise ConfigurationError(
                    f"ip_protocol must be 'udp' or 'tcp', got {ip_protocol!r}"
                )
            params.ip_protocol = int(protocol)
        if playback:
            params.master_board = master
        preset_id = self._preset(bf, preset, master)
        if playback and not getattr(params, _PRESET_FILES[preset_id]):
            raise ConfigurationError(
                f"board='playback' with preset {preset!r} needs {_PRESET_FILES[preset_id]}=, "
                "the file to replay"
            )
        descr = bf.BoardShim.get_board_descr(master, preset_id)
        name = self._board_name(bf, ident, master)
        kinds = self._kinds(rows, descr, name)
        layout = _layout(descr, kinds, name)
        commands = [config] if isinstance(config, str) else list(config)
        if not all(isinstance(c, str) for c in commands):
            raise ConfigurationError(f"config must be a string or strings, got {config!r}")
        buffer = check_positive_number("buffer", buffer)
        if silence is not None:
            silence = check_positive_number("silence", silence)
        self.bf = bf
        self.board_id = ident
        self.master_board = master
        self.board_name = name
        self.params = params
        self.preset = preset_id
        self.kinds = kinds
        self.layout = layout
        self.config_commands = commands
        self.buffer = buffer
        self.silence = silence
        self._fs = layout.fs

    @staticmethod
    def _preset(bf: SimpleNamespace, preset: str | int, board: int) -> int:
        names = {p.name.split("_")[0].lower(): int(p.value) for p in bf.BrainFlowPresets}
        if isinstance(preset, str):
            value = names.get(preset.lower().removesuffix("_preset"))
        elif isinstance(preset, numbers.Integral) and not isinstance(preset, bool):
            value = int(preset) if int(preset) in names.values() else None
        else:
            value = None
        if value is None:
            raise ConfigurationError(
                f"preset must be one of {', '.join(map(repr, names))}, got {preset!r}"
            )
        available = bf.BoardShim.get_board_presets(board)
        if value not in available:
            have = [n for n, v in names.items() if v in available]
            raise ConfigurationError(
                f"this board has no {preset!r} preset; it has: {', '.join(have)}"
            )
        return value

    @staticmethod
    def _board_name(bf: SimpleNamespace, ident: int, master: int) -> str:
        name = _short(bf.BoardIds(ident).name)
        if ident != master:
            name += f" of {_short(bf.BoardIds(master).name)}"
        return name

    @staticmethod
    def _kinds(rows: str | Sequence[str] | None, descr: dict[str, Any], board: str) -> list[str]:
        if rows is None:
            for kind in DEFAULT_KINDS:
                if ROW_KINDS[kind][0] in descr:
                    return [kind]
            available = [k for k, (key, _, _) in ROW_KINDS.items() if key in descr]
            raise ConfigurationError(
                f"board {board!r} has no EXG rows: choose rows= among {', '.join(available)}"
            )
        kinds = rows.split(",") if isinstance(rows, str) else list(rows)
        kinds = [str(k).strip().lower() for k in kinds]
        unknown = [k for k in kinds if k not in ROW_KINDS]
        if unknown or not kinds:
            raise ConfigurationError(
                f"rows must be among {', '.join(ROW_KINDS)}, got {rows!r}"
            )
        return list(dict.fromkeys(kinds))

    # -- contract -------------------------------------------------------------

    def get_channels(self) -> list[str]:
        """Channel names: BrainFlow's EEG names where it knows them (else
        ``EEG1``...), then ``AccX``, ``GyroX``, ``PPG1``... for other rows."""
        return list(self.layout.names)

    def get_units(self) -> list[str]:
        """µV for EXG rows; ``ROW_KINDS`` has the labels of the others."""
        return list(self.layout.units)

    def get_sampling_frequency(self) -> float:
        """The board's rate in Hz (while running: the session's, which a
        ``config`` command may have changed, e.g. Cyton's ``~5``)."""
        return self._fs

    @EitherMethod
    def is_available(self: Any) -> bool:
        """Whether the board can be used, without taking the device.

        Asked of the class: whether BrainFlow is installed (its synthetic
        board needs no device). Asked of a configured amp: the synthetic
        board always; the playback board when its file exists; a board with
        a device path as ``serial_port`` when that path exists. BrainFlow has
        no cheap check of Bluetooth or network boards: those count as
        available when configured.
        """
        if importlib.util.find_spec("brainflow") is None:
            return False
        if isinstance(self, type):
            return True
        if self.board_id == self.bf.BoardIds.PLAYBACK_FILE_BOARD.value:
            return os.path.isfile(getattr(self.params, _PRESET_FILES[self.preset]))
        port = self.params.serial_port
        if port.startswith("/"):
            return os.path.exists(port)
        return True

    # -- life cycle -----------------------------------------------------------

    def _fail(self, exc: Exception, doing: str, said: list[tuple[int, str]]) -> AmpkitError:
        """An ampkit error for a BrainFlowError, with BrainFlow's own words."""
        code = getattr(exc, "exit_code", None)
        try:
            code_name = self.bf.BrainFlowExitCodes(code).name
        except ValueError:
            code_name = f"exit code {code}"
        cls, hint = _EXIT_HINTS.get(code_name, (AmpNotAvailableError, "see BrainFlow's log"))
        where = ", ".join(
            f"{name}={getattr(self.params, name)!r}"
            for name in (*_TEXT_PARAMS, "ip_port") if getattr(self.params, name)
        )
        words = " / ".join(m.splitlines()[0] for level, m in said if level >= logging.WARNING)
        return cls(
            f"BrainFlow could not {doing} the {self.board_name} board"
            + (f" ({where})" if where else "")
            + f": {code_name} -- {hint}"
            + (f". BrainFlow said: {words}" if words else "")
        )

    def start(self) -> None:
        """Prepare BrainFlow's session, send ``config`` and start streaming.

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            BrainFlow could not open the board; the message names the board,
            BrainFlow's exit code, what to check and what BrainFlow logged.
        ampkit.errors.ConfigurationError
            BrainFlow refused the parameters, a ``config`` command, or the
            playback file is missing.
        """
        if self.running:
            raise StateError("start() while running: call stop() first")
        bf = self.bf
        log = bf.log
        log.set_level(brainflow_logger.getEffectiveLevel())
        log.poll()
        playback = self.board_id == bf.BoardIds.PLAYBACK_FILE_BOARD.value
        markers = None
        if playback:
            path = getattr(self.params, _PRESET_FILES[self.preset])
            try:
                markers = _FileMarkers(
                    path, self.layout.n_rows, self.layout.ts_row, self.layout.marker_row
                )
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read the playback file {path!r}: {exc.strerror or exc}"
                ) from exc
        shim = bf.Session(self.board_id, self.params)
        doing = "prepare a session with"
        try:
            shim.prepare_session()
            shim.owner = True
            for command in self.config_commands:
                doing = f"send config {command!r} to"
                shim.config_board(command)
            if playback:
                # Keep the file's timestamps: they identify the rows whose
                # markers the playback board drops (_FileMarkers).
                shim.config_board("old_timestamps")
            doing = "start streaming from"
            size = min(max(int(self.buffer * self._fs), 1), 86400 * 250)
            shim.start_stream(size)
            self._fs = float(shim.get_board_sampling_rate(self.preset))
        except bf.BrainFlowError as exc:
            error = self._fail(exc, doing, log.poll())
            _release(shim, bf)
            log.poll()
            raise error from None
        except BaseException:
            _release(shim, bf)
            raise
        log.poll()
        self.board_shim = shim
        self._capacity = size
        self._markers = markers
        self._delivered = 0
        # The playback board ends after the file's rows, unless told to loop
        # or to seek (then only silence tells the end).
        counted = markers is not None and not any(
            c.startswith(("loopback_true", "set_index_percentage")) for c in self.config_commands
        )
        self._end = markers.n_rows if counted else np.inf  # type: ignore[union-attr]
        self.finished = False
        self.n_overflows = 0
        self._lost: str | None = None
        self._silence = self.silence if self.silence is not None else max(3.0, 20.0 / self._fs)
        self._grace = min(0.5, self._silence / 2)
        self._last_data = local_clock()
        self._poll_wait = min(max(0.5 / self._fs, 0.001), 0.01)
        self._stamps = (np.empty(0), 0.0)
        self._timestamps = np.empty(0)
        self._clock = SampleClock(self._fs)
        self._previous_read = self._polled = local_clock()
        self._stamps_suspect = False
        self.gap_count = self.lost_samples = 0
        self.running = True
        _running.add(self)

    def stop(self) -> None:
        """Stop streaming and release BrainFlow's session (the device is free again)."""
        if not self.running:
            raise StateError("stop() while not running")
        self.running = False
        _running.discard(self)
        shim, self.board_shim = self.board_shim, None
        if shim is not None:
            _release(shim, self.bf)
        self.bf.log.poll()

    def close(self) -> None:
        """Stop if running."""
        if self.running:
            self.stop()

    def insert_marker(self, value: float) -> None:
        """Put a number into BrainFlow's marker row (``BoardShim.insert_marker``).

        It lands on the next sample BrainFlow receives; markers inserted
        before that sample arrives queue up and land one per sample.
        ``amp.add_marker(text)`` of the decorated amp is exact to the
        sample instead, and takes text.

        Parameters
        ----------
        value : float
            A non-zero number (BrainFlow's 0 means "no marker").
        """
        if not self.running or self.board_shim is None:
            raise StateError("insert_marker() before start()")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value == 0:
            raise ConfigurationError(
                f"a BrainFlow marker is a non-zero number (0 means none), got {value!r}"
            )
        self.board_shim.insert_marker(float(value), self.preset)

    def get_brainflow_timestamps(self) -> np.ndarray:
        """BrainFlow's timestamps of the block last returned, on :func:`~ampkit.clock.local_clock`.

        BrainFlow stamps a sample with the wall clock (``time.time()``) when
        it arrives (the playback board: the file's timestamps); they are
        moved onto ``local_clock`` with the offset between the two clocks at
        the read.

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        stamps, offset = self._stamps
        return stamps - offset

    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Return the samples BrainFlow received since the last call.

        Waits for at least one sample (up to ``silence`` seconds), except
        after the end of a playback file, when blocks are empty and
        ``finished`` is true.

        Returns
        -------
        data : ndarray of float32, shape (n, channels)
        markers : list of (float, str)
            Values of BrainFlow's marker row at their samples, and the
            markers of a playback file.

        Raises
        ------
        ampkit.errors.ConnectionLostError
            No sample for ``silence`` seconds (the device was switched off,
            went out of range or was unplugged), or BrainFlow's session
            failed. The session is released at once.
        """
        if not self.running:
            raise StateError("get_data() before start()")
        if self._lost is not None:
            raise ConnectionLostError(self._lost)
        layout = self.layout
        entered = local_clock()
        while True:
            raw = self._read()
            n = raw.shape[1]
            if n:
                break
            if self.finished or self._delivered >= self._end:
                self.finished = True
                self._stamps = (np.empty(0), 0.0)
                self._timestamps = np.empty(0)
                return np.empty((0, len(layout.names)), np.float32), []
            now = local_clock()
            # ... and BrainFlow's thread had time to catch up after a stall
            # of this whole process (a loaded machine)
            if now - self._last_data > self._silence and now - entered > self._grace:
                if self._markers is not None:
                    self.finished = True  # the end of a file we could not count
                    continue
                raise self._lose(
                    f"no data from the {self.board_name} board for {self._silence:g} s: "
                    "switched off, out of range or unplugged?"
                )
            time.sleep(self._poll_wait)
        now = self._last_data = local_clock()
        offset = time.time() - now
        if n >= self._capacity:
            self.n_overflows += 1
            logger.warning(
                "%s: BrainFlow's buffer (%d samples) was full: older samples were lost; "
                "call get_data() more often or configure a larger buffer=",
                self.board_name, self._capacity,
            )
        self._delivered += n
        data = raw[layout.select].T.astype(np.float32, order="C")
        stamps = raw[layout.ts_row]
        # Moved onto local_clock only when asked (get_brainflow_timestamps).
        self._stamps = (stamps, offset)
        period_ms = 1000.0 / self._fs
        markers: list[Marker] = []
        gap = self._stamp(n, float(stamps[-1]) - offset, now)
        if gap is not None:
            markers.append((0.0, GAP_MARKER.format(n=gap.n_missing)))
        values = raw[layout.marker_row]
        if values.any():
            for row in np.flatnonzero(values):
                markers.append((row * period_ms, marker_text(float(values[row]))))
        if self._markers is not None and self._markers.markers:
            found = self._markers.find(raw[layout.ts_row])
            # (skipping those BrainFlow delivered itself, should it stop dropping them)
            markers += [
                (row * period_ms, marker_text(value)) for row, value in found
                if values[row] != value
            ]
            markers.sort(key=lambda m: m[0])
        return data, markers

    def _stamp(self, n: int, newest: float, now: float) -> Gap | None:
        """Stamp a block with the sample clock; the gap it found, if any.

        The block's arrival is BrainFlow's stamp of its newest sample (when
        BrainFlow's thread received it) where that is plausible -- not in the
        future, not before the previous read -- else the time of this read
        (the playback board's stamps are the file's, some boards' may come
        from the device).
        """
        arrival = newest if self._previous_read - 0.5 <= newest <= now else now
        if arrival is now and not self._stamps_suspect:
            self._stamps_suspect = True
            logger.info(
                "%s: BrainFlow's timestamps are not arrival times here; "
                "samples are stamped from the reads", self.board_name,
            )
        self._previous_read = now
        self._timestamps, gap = self._clock.stamp(n, arrival)
        if gap is not None:
            self.gap_count += 1
            self.lost_samples += gap.n_missing
            logger.warning(
                "%s: about %d samples (%.3f s) missing before t=%.3f",
                self.board_name, gap.n_missing, gap.duration, gap.time,
            )
        return gap

    def get_timestamps(self) -> np.ndarray | None:
        """Times of the samples last returned by ``get_data()`` (local_clock)."""
        return self._timestamps

    def get_effective_rate(self) -> float | None:
        """The board's sample rate measured from arrival times (Hz), None at first."""
        clock = getattr(self, "_clock", None)
        return None if clock is None else clock.rate

    def _read(self) -> np.ndarray:
        shim = self.board_shim
        try:
            raw = shim.get_board_data(preset=self.preset)
        except self.bf.BrainFlowError as exc:
            if not self.running:
                raise StateError("get_data() after stop()") from None
            raise self._lose(
                f"BrainFlow's session of the {self.board_name} board failed: {exc}"
            ) from None
        now = local_clock()
        if now - self._polled > LOG_INTERVAL:
            self._polled = now
            self.bf.log.poll()
        return raw

    def _lose(self, reason: str) -> ConnectionLostError:
        """Release the session of a lost device; the error to raise, now and on later reads."""
        self._lost = reason
        shim, self.board_shim = self.board_shim, None
        if shim is not None:
            _release(shim, self.bf)
        self.bf.log.poll()
        return ConnectionLostError(reason)

    def __str__(self) -> str:
        return f"BrainFlowAmp({getattr(self, 'board_name', '?')})"


def _release(shim: Any, bf: SimpleNamespace) -> None:
    """End a BrainFlow session whatever state it is in (a lost device fails to stop)."""
    if not shim.owner:  # not prepared: the same board's session may be another amp's
        return
    shim.owner = False
    for step in ("stop_stream", "release_session"):
        try:
            getattr(shim, step)()
        except bf.BrainFlowError as exc:
            logger.debug("BrainFlow %s: %s", step, exc)
