"""ampkit as a Dareplane module: the ``DefaultServer`` protocol around one decorated amp.

A Dareplane control room starts modules and drives them over TCP with the
protocol of dareplane-utils' ``DefaultServer`` (see
:mod:`ampkit.protocols.dareplane`). :class:`DareplaneModule` speaks it for
one amplifier, so a control room can open an amp, publish it to LSL, record,
mark and stop it with no code of its own (``ampkit serve``)::

    CONNECT|{"driver": "sine", "config": {"fs": 500, "channels": 8}}
    START|{"lsl": "eeg"}            start() options; LSL on unless "lsl": false;
                                    "share": "eeg" for shared memory (ampkit.attach)
    RECORD|{"fname": "run1.vhdr"}   record from now on (while acquisition runs)
    MARKER|{"text": "S 1"}          a marker at the sample being taken now
    STATUS                          one JSON line back
    STOPRECORD                      end the recording; acquisition goes on
    STOP                            stop acquisition (and any recording)
    CLOSE                           stop, release the amp, end the server
    UP                              replies 1 (the control room's health check)
    GET_PCOMMS                      replies the commands, |-joined

As in ``DefaultServer``: the server greets each connection with
``Connected to <name>\\n``, serves one connection at a time (the next waits
in the listen queue), answers only ``UP``, ``GET_PCOMMS`` (and ``STATUS``),
and logs what it cannot run -- a payload that is not a JSON object, an
unknown command, an argument a command does not take -- and goes on. Beyond
it: it listens on 127.0.0.1 unless told otherwise, drops commands longer
than a limit, and a failing command (a busy marker port, a recording that
exists) is logged as an error and counted in ``STATUS``, never the end of
the server.

Acquisition runs in a thread of the module (:class:`Acquisition`), reading
the amp every ``interval`` seconds so that its services -- LSL outlets,
recorder, marker servers -- see every block.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ampkit.decorator import AmpDecorator
from ampkit.errors import AmpkitError, ConfigurationError, ProtocolError, StateError
from ampkit.listener import Listener
from ampkit.marker_stamper import ReceiveStamps
from ampkit.protocols.dareplane import MAX_COMMAND_BYTES, CommandFramer, parse_command
from ampkit.registry import get_amp
from ampkit.worker import Closing, Worker

__all__ = ["Acquisition", "DareplaneModule", "DEFAULT_HOST", "DEFAULT_PORT", "BUILT_INS"]

logger = logging.getLogger("ampkit")

#: Interface listened on unless told otherwise: this machine only
#: (``DefaultServer``'s default is every interface).
DEFAULT_HOST = "127.0.0.1"
#: ``DefaultServer``'s default port.
DEFAULT_PORT = 8080
#: Commands every Dareplane module has, listed last by ``GET_PCOMMS``.
BUILT_INS = ("STOP", "CLOSE", "GET_PCOMMS", "UP")

_QUIET = {"UP"}  # the control room's once-a-second health check: never logged
_CHATTY = {"MARKER", "STATUS", "GET_PCOMMS"}  # logged at DEBUG, the rest at INFO


class Acquisition(Closing):
    """Read a decorated amp in a thread of its own, from :meth:`start` to :meth:`stop`.

    The reading thread holds a lock while it reads;
    :meth:`start_recording` and :meth:`stop_recording` take it, so they
    change the amp's services between two reads (see
    :meth:`ampkit.AmpDecorator.start_recording`).

    Parameters
    ----------
    amp : AmpDecorator
        The amp; it stays the caller's (``close`` closes it too).
    interval : float
        Seconds between reads.
    """

    def __init__(self, amp: AmpDecorator, interval: float = 0.01) -> None:
        self.amp = amp
        self.interval = float(interval)
        self._lock = threading.Lock()
        self._worker: Worker | None = None

    @property
    def running(self) -> bool:
        """Whether acquisition was started and not stopped (even if its thread failed)."""
        return self._worker is not None

    def start(self, **options: Any) -> None:
        """``amp.start(**options)``, then read in the thread.

        Raises
        ------
        ampkit.errors.StateError
            Running already.
        ampkit.errors.AmpkitError
            From ``amp.start()``; nothing is left running.
        """
        if self._worker is not None:
            raise StateError("acquiring already: STOP first")
        self.amp.start(**options)
        self._worker = Worker(self._run, f"acquisition {self.amp.name}")
        self._worker.start()

    def _run(self, stop: threading.Event) -> None:
        amp = self.amp
        while not stop.is_set():
            with self._lock:
                amp.get_block()
            stop.wait(self.interval)

    def poll(self) -> None:
        """If the reading thread ended with an error, stop the amp and raise it."""
        worker = self._worker
        if worker is not None and not worker.is_alive:
            self.stop()

    def start_recording(self, filename: str, overwrite: bool = False) -> None:
        """Start recording between two reads (see :meth:`ampkit.AmpDecorator.start_recording`)."""
        if self._worker is None:
            raise StateError("not acquiring: START first")
        with self._lock:
            self.amp.start_recording(filename, overwrite=overwrite)

    def stop_recording(self) -> str:
        """End the recording between two reads; returns its path."""
        with self._lock:
            return self.amp.stop_recording()

    def stop(self) -> None:
        """Stop reading, then stop the amp (closing its services).

        Raises
        ------
        Exception
            The error that ended the reading thread, if any; or the amp's
            error while stopping.
        """
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            worker.stop()
        finally:
            if self.amp.running:
                self.amp.stop()
        worker.check()

    def close(self) -> None:
        """Stop, then release the amp."""
        try:
            self.stop()
        finally:
            self.amp.close()


class _Limiter:
    """At most ``burst`` problem log lines per ``window`` seconds, the rest
    counted and summarised, so a client sending garbage cannot flood the log."""

    def __init__(self, burst: int = 20, window: float = 10.0) -> None:
        self.burst, self.window = burst, window
        self._until = 0.0
        self._count = self._suppressed = 0

    def log(self, level: int, message: str) -> None:
        now = time.monotonic()
        if now >= self._until:
            if self._suppressed:
                logger.log(level, "%d more such messages in the last %g s were not logged",
                           self._suppressed, self.window)
            self._until = now + self.window
            self._count = self._suppressed = 0
        if self._count < self.burst:
            self._count += 1
            logger.log(level, "%s", message)
        else:
            self._suppressed += 1


class DareplaneModule(Listener):
    """A Dareplane module around one amp: the ``DefaultServer`` protocol over TCP.

    Parameters
    ----------
    amp : AmpDecorator, optional
        The amp to serve (configured); it belongs to the module from now on.
        Without one, a client opens it with ``CONNECT``.
    driver : str, optional
        The amp's driver name, for ``STATUS`` and for a ``CONNECT`` without
        a driver (default: the amp's name).
    host : str
        Interface to listen on (default ``'127.0.0.1'``).
    port : int
        TCP port (default 8080; 0 picks a free one: see :attr:`address`).
    name : str
        The module's name, in the greeting ``Connected to <name>``.
    start_options : dict, optional
        Defaults of ``START``'s options (under those a client sends), e.g.
        ``{'marker_port': 0}``. ``lsl`` is ``True`` unless given.
    max_command_bytes : int
        Longest command accepted.
    interval : float
        Seconds between reads of the amp.

    Attributes
    ----------
    closed : threading.Event
        Set once ``CLOSE`` was received (or :meth:`close` called).
    n_errors : int
        Commands that failed or could not be parsed, and acquisition failures.
    last_error : str or None
        The newest of them.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('sine', fs=250, channels=4)
    >>> with DareplaneModule(amp, port=0) as module:       # doctest: +SKIP
    ...     print(module.address)
    ...     module.closed.wait()
    """

    def __init__(
        self,
        amp: AmpDecorator | None = None,
        *,
        driver: str | None = None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        name: str = "ampkit",
        start_options: dict[str, Any] | None = None,
        max_command_bytes: int = MAX_COMMAND_BYTES,
        interval: float = 0.01,
    ) -> None:
        super().__init__(host, port, f"dareplane module {name}",
                         "give another port (0: any free port, printed at start)")
        self.name = str(name)
        self.start_options = dict(start_options or {})
        self.max_command_bytes = int(max_command_bytes)
        self.interval = float(interval)
        self.driver = driver if driver is not None or amp is None else amp.name
        self.acquisition = None if amp is None else Acquisition(amp, self.interval)
        self.closed = threading.Event()
        self.n_errors = 0
        self.last_error: str | None = None
        self._lsl_name: str | None = None
        # rate and channel count of the last START
        self._shape: tuple[float | None, int | None] = (None, None)
        self._limiter = _Limiter()
        self._peer = ""
        self._conn: socket.socket | None = None
        # When the bytes of the command being run arrived: the kernel's receive
        # time where it tells, so that a MARKER is placed as precisely as one
        # sent to the marker servers, however busy this process is.
        self._stamps = ReceiveStamps()
        self._received_at = 0.0
        self.commands: dict[str, Callable[..., Any]] = {
            "CONNECT": self._cmd_connect,
            "START": self._cmd_start,
            "RECORD": self._cmd_record,
            "STOPRECORD": self._cmd_stoprecord,
            "MARKER": self._cmd_marker,
            "STATUS": self._cmd_status,
            "STOP": self._cmd_stop,
            "CLOSE": self._cmd_close,
            "GET_PCOMMS": self._cmd_get_pcomms,
            "UP": self._cmd_up,
        }

    # -- life cycle ----------------------------------------------------------

    def close(self) -> None:
        """Stop serving, stop acquisition and release the amp."""
        self.closed.set()
        try:
            super().close()
        finally:
            self._release()

    def _release(self) -> None:
        acquisition, self.acquisition = self.acquisition, None
        if acquisition is not None:
            acquisition.close()

    # -- commands (the Python side of the protocol) --------------------------

    @property
    def acquiring(self) -> bool:
        """Whether acquisition runs."""
        return self.acquisition is not None and self.acquisition.running

    def connect(self, driver: str | None = None, config: dict[str, Any] | None = None) -> None:
        """Open a driver (releasing the amp opened before) and configure it.

        Raises
        ------
        ampkit.errors.StateError
            Acquisition runs.
        ampkit.errors.ConfigurationError
            No driver known, or the driver refused the configuration.
        """
        if self.acquiring:
            raise StateError("CONNECT while acquiring: STOP first")
        driver = driver if driver is not None else self.driver
        if not driver:
            raise ConfigurationError(
                'CONNECT needs a driver: CONNECT|{"driver": "random"} (see `ampkit list`)'
            )
        if not isinstance(driver, str):
            raise ConfigurationError(f"CONNECT's driver must be a name, got {driver!r}")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ConfigurationError(f"CONNECT's config must be an object, got {config!r}")
        self._release()
        amp = get_amp(driver)
        try:
            if config:
                try:
                    amp.configure(**config)
                except TypeError as exc:
                    raise ConfigurationError(f"driver {driver!r} refused {config}: {exc}") from None
        except BaseException:
            amp.close()
            raise
        self.acquisition = Acquisition(amp, self.interval)
        self.driver = driver
        self._shape = (None, None)
        logger.info("%s: connected %s", self.name, driver)

    def start_acquisition(self, **options: Any) -> None:
        """Start the amp with ``start()`` options over :attr:`start_options`; read in a thread.

        Raises
        ------
        ampkit.errors.StateError
            No amp, or acquiring already.
        ampkit.errors.AmpkitError
            From ``start()``.
        """
        if self.acquisition is None:
            raise StateError(
                'no amp: CONNECT|{"driver": ...} first, or give ampkit serve a DRIVER'
            )
        options = {"lsl": True, **self.start_options, **options}
        self.acquisition.start(**options)
        amp = self.acquisition.amp
        # Read now, not in STATUS: a driver may ask its device (RDA connects).
        self._shape = (amp.get_sampling_frequency(), len(amp.get_channels()))
        lsl = options.get("lsl")
        self._lsl_name = None if not lsl else (amp.name if lsl is True else str(lsl))
        where = amp.marker_addresses.get("tcp")
        share = options.get("share")
        logger.info(
            "%s: acquiring from %s%s%s%s%s", self.name, self.driver,
            f"; LSL stream {self._lsl_name!r}" if self._lsl_name else "",
            f"; shared as {share!r}" if share else "",
            f"; marker servers on {where[0]}:{where[1]}" if where else "",
            f"; recording to {amp.recording}" if amp.recording else "",
        )

    def stop_acquisition(self) -> None:
        """Stop acquisition and any recording (nothing to do when not acquiring)."""
        if not self.acquiring:
            logger.info("%s: STOP: not acquiring", self.name)
            return
        amp = self.acquisition.amp  # type: ignore[union-attr]
        try:
            self.acquisition.stop()  # type: ignore[union-attr]
        finally:
            logger.info("%s: stopped after %d samples", self.name, amp.n_samples)

    def record(self, fname: str, overwrite: bool = False) -> None:
        """Start recording to ``fname`` while acquisition runs.

        Raises
        ------
        ampkit.errors.StateError
            Not acquiring, or recording already.
        ampkit.errors.RecordingError
            The file exists (and not ``overwrite``) or cannot be created.
        """
        if not isinstance(fname, str) or not fname:
            raise ConfigurationError(f"RECORD's fname must be a file name, got {fname!r}")
        if not self.acquiring:
            raise StateError("RECORD while not acquiring: START first")
        self.acquisition.start_recording(fname, overwrite=bool(overwrite))  # type: ignore[union-attr]
        logger.info("%s: recording to %s", self.name, self.acquisition.amp.recording)  # type: ignore[union-attr]

    def stop_record(self) -> None:
        """End the recording; acquisition goes on."""
        if not self.acquiring:
            raise StateError("STOPRECORD while not acquiring")
        path = self.acquisition.stop_recording()  # type: ignore[union-attr]
        logger.info("%s: recording to %s ended", self.name, path)

    def marker(self, text: str, timestamp: float | None = None) -> None:
        """Put a marker at the sample taken at ``timestamp`` (now when omitted)."""
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise ConfigurationError(f"MARKER's text must be a string, got {text!r}")
        if not self.acquiring:
            raise StateError(f"MARKER {text!r} while not acquiring: dropped")
        self.acquisition.amp.add_marker(str(text), timestamp)  # type: ignore[union-attr]

    def status(self) -> dict[str, Any]:
        """What ``STATUS`` replies.

        Returns
        -------
        dict
            ``name``, ``driver``, ``running``, ``recording`` (absolute path
            or None), ``samples``, ``markers``, ``gaps``, ``rate`` (nominal,
            Hz), ``channels`` (all of the current or last run),
            ``effective_rate`` (Hz, as measured:
            :attr:`ampkit.AmpDecorator.effective_rate`; None where not
            measured), ``lsl`` (data stream name or None), ``share`` (shared
            stream name or None), ``marker_port``
            (TCP, or None), ``errors`` (count) and ``last_error``.
        """
        info: dict[str, Any] = {
            "name": self.name, "driver": self.driver, "running": self.acquiring,
            "recording": None, "samples": 0, "rate": None, "effective_rate": None,
            "gaps": 0, "markers": 0, "channels": None, "lsl": None, "share": None,
            "marker_port": None,
        }
        if self.acquisition is not None:
            amp = self.acquisition.amp
            figures = amp.status()
            rate, channels = self._shape
            tcp = amp.marker_addresses.get("tcp")
            info.update(
                recording=None if amp.recording is None else os.path.abspath(amp.recording),
                samples=figures.get("samples", 0),
                markers=figures.get("markers", 0), gaps=figures.get("gaps", 0),
                rate=rate, effective_rate=figures.get("effective_rate"),
                channels=channels, lsl=self._lsl_name if self.acquiring else None,
                share=figures.get("share"),
                marker_port=None if tcp is None else tcp[1],
            )
        info.update(errors=self.n_errors, last_error=self.last_error)
        return info

    # -- the wire commands: each one's parameters are the JSON keys it takes ----

    def _cmd_connect(self, driver: str | None = None, config: dict | None = None) -> None:
        self.connect(driver, config)

    def _cmd_start(self, **options: Any) -> None:
        self.start_acquisition(**options)

    def _cmd_record(self, fname: str, overwrite: bool = False) -> None:
        self.record(fname, overwrite)

    def _cmd_stoprecord(self) -> None:
        self.stop_record()

    def _cmd_marker(self, text: str) -> None:
        self.marker(text, self._received_at)

    def _cmd_status(self) -> bytes:
        return json.dumps(self.status(), default=str).encode() + b"\n"

    def _cmd_stop(self) -> None:
        self.stop_acquisition()

    def _cmd_close(self) -> None:
        logger.info("%s: CLOSE: shutting down", self.name)
        self.closed.set()

    def _cmd_get_pcomms(self) -> bytes:
        own = [name for name in self.commands if name not in BUILT_INS]
        return "|".join(own + list(BUILT_INS)).encode()

    def _cmd_up(self) -> bytes:
        return b"1"

    # -- the serving thread ----------------------------------------------------

    def _serve(self, stop: threading.Event) -> None:
        assert self._listener is not None
        framer: CommandFramer | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            try:
                while not stop.is_set() and not self.closed.is_set():
                    for key, _ in sel.select(0.25):
                        if key.fileobj is self._listener:
                            framer = self._accept(sel)
                        elif framer is not None and not self._read(framer):
                            self._hang_up(sel)
                            framer = None
                        if self.closed.is_set():
                            break
                    self._watch()
            finally:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if self.closed.is_set():
                    self._shut_down()

    def _shut_down(self) -> None:
        try:
            self._release()
        except Exception as exc:  # noqa: BLE001 - logged: the module is ending anyway
            self._error(f"closing the amp failed: {exc}")

    def _accept(self, sel: selectors.BaseSelector) -> CommandFramer | None:
        try:
            conn, addr = self._listener.accept()  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._limiter.log(logging.ERROR, f"{self.name}: accepting a client failed: {exc}")
            time.sleep(0.1)  # out of descriptors: do not spin
            return None
        # Replies are small; a client that stops reading them is dropped
        # after this long instead of holding the module.
        conn.settimeout(5.0)
        self._stamps.enable(conn)
        self._peer = f"{addr[0]}:{addr[1]}"
        try:
            conn.sendall(f"Connected to {self.name}\n".encode())
        except OSError:
            logger.info("%s: client %s left before the greeting", self.name, self._peer)
            conn.close()
            return None
        logger.info("%s: client %s connected", self.name, self._peer)
        # One client at a time: the next ones wait in the listen queue.
        sel.unregister(self._listener)  # type: ignore[arg-type]
        sel.register(conn, selectors.EVENT_READ)
        self._conn = conn
        return CommandFramer(self.max_command_bytes)

    def _hang_up(self, sel: selectors.BaseSelector) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            sel.unregister(conn)
            conn.close()
        sel.register(self._listener, selectors.EVENT_READ)  # type: ignore[arg-type]

    def _read(self, framer: CommandFramer) -> bool:
        """Run the commands that arrived; False when the connection is over."""
        conn = self._conn
        assert conn is not None
        try:
            data, self._received_at = self._stamps.recv(conn, 65536)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return True
        except OSError as exc:
            logger.info("%s: client %s: connection failed (%s)", self.name, self._peer, exc)
            return False
        if not data:
            if framer.pending:
                self._limiter.log(logging.WARNING, f"{self.name}: client {self._peer} left "
                                  f"with {framer.pending} bytes of an unfinished command; ignored")
            logger.info("%s: client %s disconnected", self.name, self._peer)
            return False
        for segment, problem in framer.feed(data):
            if segment is None:
                self._problem(f"client {self._peer}: {problem}")
                continue
            reply = self._handle(segment)
            if reply is not None:
                try:
                    conn.sendall(reply)
                except OSError as exc:
                    logger.info("%s: client %s: reply not delivered (%s); disconnected",
                                self.name, self._peer, exc)
                    return False
            if self.closed.is_set():
                return False
        return True

    def _handle(self, segment: bytes) -> bytes | None:
        try:
            command = parse_command(segment)
        except ProtocolError as exc:
            self._problem(f"client {self._peer}: {exc}; ignored")
            return None
        name = command.name
        if name not in _QUIET:
            level = logging.DEBUG if name in _CHATTY else logging.INFO
            logger.log(level, "%s: received %s", self.name, segment.decode("utf-8", "replace"))
        handler = self.commands.get(name)
        if handler is None:
            message = (f"unknown command {name!r} from {self._peer}; ignored "
                       f"(commands: {'|'.join(self.commands)})")
            self._count(message)
            self._limiter.log(logging.WARNING, f"{self.name}: {message}")
            return None
        wrong = _wrong_arguments(name, handler, command.kwargs)
        if wrong:
            self._problem(f"{wrong}; ignored")
            return None
        try:
            return handler(**command.kwargs)
        except (AmpkitError, OSError) as exc:
            self._error(f"{name} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug in a command must not end the module
            logger.exception("%s: %s failed", self.name, name)
            self._count(f"{name} failed: {exc!r}")
        return None

    def _watch(self) -> None:
        """Notice an acquisition thread that failed: stop the amp, report the error."""
        self._stamps.refresh()
        acquisition = self.acquisition
        if acquisition is None:
            return
        try:
            acquisition.poll()
        except Exception as exc:  # noqa: BLE001 - reported; the module goes on
            self._error(f"acquisition failed: {exc}")

    def _problem(self, message: str) -> None:
        self._count(message)
        self._limiter.log(logging.ERROR, f"{self.name}: {message}")

    def _error(self, message: str) -> None:
        self._count(message)
        logger.error("%s: %s", self.name, message)

    def _count(self, message: str) -> None:
        self.n_errors += 1
        self.last_error = message


def _wrong_arguments(name: str, handler: Callable[..., Any], kwargs: dict[str, Any]) -> str:
    """What is wrong with calling a command with ``kwargs`` ('' when nothing)."""
    params = inspect.signature(handler).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return ""  # START: amp.start() judges its options
    takes = ", ".join(params) or "no arguments"
    unknown = [key for key in kwargs if key not in params]
    if unknown:
        return f"{name} has no argument {', '.join(map(repr, unknown))}; it takes {takes}"
    missing = [p for p, v in params.items() if v.default is v.empty and p not in kwargs]
    if missing:
        return f"{name} needs {', '.join(map(repr, missing))}; it takes {takes}"
    return ""
