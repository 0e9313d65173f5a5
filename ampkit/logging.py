"""Log records over TCP in Dareplane's framing: the shipping handler and a receiver.

Dareplane modules log to a log server (the control room's, port 9020 by
default) through dareplane-utils' ``UJsonSocketHandler``: every record's
attribute dictionary as JSON behind a 4-byte length
(:mod:`ampkit.protocols.dareplane`).

* :class:`LogShipper` is a :class:`logging.Handler` sending ampkit's records
  that way. ``ampkit serve`` attaches it to the ``ampkit`` logger; nothing
  else does. A log server that is missing, slow or gone costs the logging
  call nothing: ``emit`` only queues the encoded record (bounded, oldest
  dropped first, drops counted and reported once the server is back), and a
  thread of the handler's own connects, sends and reconnects.
* :class:`LogReceiver` is the other end (``ampkit logs``): it accepts any
  number of senders, ampkit's and dareplane-utils' alike, and rebuilds their
  records (:func:`record_from_fields`).

dareplane-utils' receiver formats ``msg % args`` with ``args`` arriving as a
JSON list, which fails for two or more arguments (and for ``%s`` in a message
sent without arguments). :func:`fields_of` therefore sends every record with
its message formatted and ``args`` empty, and with ``%`` doubled when the
text holds ``%s``, flagged so that :func:`record_from_fields` undoes it.

(The module is ``ampkit.logging``; inside the package, ``import logging``
still means the standard library: imports are absolute.)
"""

from __future__ import annotations

import ast
import logging
import select
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ampkit.errors import ProtocolError
from ampkit.listener import Listener
from ampkit.protocols.dareplane import (
    MAX_LOG_RECORD_BYTES,
    LogRecordDecoder,
    encode_log_record,
)
from ampkit.worker import Closing, Worker

__all__ = [
    "DEFAULT_PORT",
    "LogShipper",
    "LogReceiver",
    "fields_of",
    "record_from_fields",
    "FORMAT",
]

logger = logging.getLogger("ampkit")

#: Dareplane's log server port (``logging.handlers.DEFAULT_TCP_LOGGING_PORT``).
DEFAULT_PORT = 9020
#: Dareplane's line format, used by ``ampkit logs``.
FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"

#: Extra field of records whose message had its ``%`` doubled (see the module text).
_ESCAPED = "ampkit_percent_escaped"
_FORMATTER = logging.Formatter()


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """A record's attributes as they go on the wire: message formatted, no args.

    Parameters
    ----------
    record : logging.LogRecord

    Returns
    -------
    dict
        ``record.__dict__`` with ``msg`` formatted, ``args`` an empty list,
        the exception and stack rendered as text (``exc_text``,
        ``stack_info``) and ``exc_info`` None, as :class:`logging.handlers.SocketHandler`
        prepares records.
    """
    fields = dict(record.__dict__)
    try:
        message = record.getMessage()
    except Exception as exc:  # noqa: BLE001 - a bad format must not lose the record
        message = f"{record.msg!r} % {record.args!r} (could not be formatted: {exc})"
    if "%s" in message:
        fields[_ESCAPED] = True
        message = message.replace("%", "%%")
    fields["msg"] = message
    fields["args"] = []
    if record.exc_info and not record.exc_text:
        fields["exc_text"] = _FORMATTER.formatException(record.exc_info)
    fields["exc_info"] = None
    fields.pop("message", None)
    return fields


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def record_from_fields(fields: dict[str, Any]) -> logging.LogRecord:
    """Rebuild a record sent by :class:`LogShipper` or dareplane-utils' handler.

    The message is formatted here (``msg % args``, ``args`` as the JSON list
    the sender made of its tuple); when that fails, the arguments are appended
    instead. Text stand-ins that dareplane-utils' handler sends for values JSON
    cannot hold (``"None"``, numbers as strings) are turned back.

    Parameters
    ----------
    fields : dict
        One decoded record.

    Returns
    -------
    logging.LogRecord
        With ``args`` None and ``msg`` the finished message.
    """
    fields = dict(fields)
    for key in ("exc_info", "exc_text", "stack_info"):
        if fields.get(key) in ("None", ""):
            fields[key] = None
    exc_info = fields.pop("exc_info", None)
    if exc_info is not None and not fields.get("exc_text"):
        fields["exc_text"] = str(exc_info)  # a traceback cannot travel; its text can
    msg = fields.get("msg", "")
    msg = msg if isinstance(msg, str) else str(msg)
    args = fields.get("args")
    if isinstance(args, str) and args.startswith("(") and len(args) < 10_000:
        # dareplane-utils' handler sends the repr of the args tuple when the
        # record holds something JSON cannot (an exception): read it back if
        # it is made of literals only.
        try:
            args = list(ast.literal_eval(args))
        except Exception:  # noqa: BLE001 - not literals: the message stays unformatted
            args = None
    if isinstance(args, list) and args:
        try:
            msg = msg % tuple(args)
        except (TypeError, ValueError, KeyError):
            msg = f"{msg} {args!r}"
    elif isinstance(args, dict) and args:
        try:
            msg = msg % args
        except (TypeError, ValueError, KeyError):
            msg = f"{msg} {args!r}"
    if fields.pop(_ESCAPED, False):
        msg = msg.replace("%%", "%")
    fields["msg"] = msg
    fields["args"] = None
    now = time.time()
    fields["created"] = _number(fields.get("created"), now)
    fields["msecs"] = _number(fields.get("msecs"), (fields["created"] % 1) * 1000)
    fields["relativeCreated"] = _number(fields.get("relativeCreated"), 0.0)
    levelno = int(_number(fields.get("levelno"), logging.INFO))
    fields["levelno"] = levelno
    if not isinstance(fields.get("levelname"), str):
        fields["levelname"] = logging.getLevelName(levelno)
    if not isinstance(fields.get("name"), str):
        fields["name"] = str(fields.get("name", "?"))
    return logging.makeLogRecord(fields)


class LogShipper(logging.Handler, Closing):
    """Send log records to a Dareplane log server, never blocking the caller.

    Parameters
    ----------
    host : str
        The log server's address (default ``'127.0.0.1'``).
    port : int
        Its port (default 9020, Dareplane's).
    level : int
        The handler's level.
    max_bytes : int
        Bound of the records waiting to be sent (encoded size). When full,
        the oldest is dropped and counted in :attr:`dropped`.
    retry : float
        Seconds between connection attempts while the server is missing.

    Attributes
    ----------
    dropped : int
        Records dropped so far (queue full, or too large to ever send).
    sent : int
        Records sent.
    connected : bool
        Whether a connection to the server is open.

    Examples
    --------
    >>> import logging
    >>> with LogShipper(port=9020) as shipper:            # doctest: +SKIP
    ...     logging.getLogger("ampkit").addHandler(shipper)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        level: int = logging.NOTSET,
        max_bytes: int = MAX_LOG_RECORD_BYTES,
        retry: float = 1.0,
    ) -> None:
        logging.Handler.__init__(self, level)
        self.host = host
        self.port = int(port)
        self.max_bytes = int(max_bytes)
        self.retry = float(retry)
        self.dropped = 0
        self.sent = 0
        self.connected = False
        self._reported = 0  # drops told to the server already
        self._queue: deque[bytes] = deque()
        self._queued = 0  # bytes in _queue
        self._guard = threading.Lock()  # the queue: emit() and the sender thread
        self._wake = threading.Event()
        self._sock: socket.socket | None = None  # the sending thread's connection
        self._worker = Worker(self._run, f"log shipper {host}:{port}")

    def start(self) -> LogShipper:
        """Start the sending thread (once)."""
        self._worker.start()
        return self

    def __enter__(self) -> LogShipper:
        if not self._worker.is_alive:
            self.start()
        return self

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for the sending thread; never waits for the network."""
        try:
            data = encode_log_record(fields_of(record))
        except Exception:  # noqa: BLE001 - logging's own convention for a failed emit
            self.handleError(record)
            return
        with self._guard:
            if len(data) > self.max_bytes:
                self.dropped += 1
                return
            while self._queued + len(data) > self.max_bytes:
                self._queued -= len(self._queue.popleft())
                self.dropped += 1
            self._queue.append(data)
            self._queued += len(data)
        self._wake.set()

    # -- the sending thread ----------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        sock: socket.socket | None = None
        next_try = 0.0
        try:
            while True:
                if sock is None and time.monotonic() >= next_try:
                    sock = self._sock = self._connect()
                    if sock is None:
                        next_try = time.monotonic() + self.retry
                if sock is not None:
                    sock = self._sock = self._send_queued(sock)
                if stop.is_set():
                    return
                self._wake.wait(self.retry if sock is None else 0.25)
                self._wake.clear()
                if sock is not None and self._peer_closed(sock):
                    sock.close()
                    sock = self._sock = None
                    self.connected = False
        finally:
            self._sock = None
            if sock is not None:
                sock.close()
            self.connected = False

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2.0)
        except OSError:
            return None
        # A whole record or nothing: a receiver left with half a record
        # (dareplane-utils' spins on it) is worse than a slow send.
        sock.settimeout(10.0)
        self.connected = True
        return sock

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """Whether the server ended the connection (it never sends anything else)."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and not sock.recv(4096)
        except OSError:
            return True

    def _send_queued(self, sock: socket.socket) -> socket.socket | None:
        while True:
            with self._guard:
                if self.dropped > self._reported:
                    notice = self._drop_notice(self.dropped - self._reported)
                    self._reported = self.dropped
                    self._queue.appendleft(notice)
                    self._queued += len(notice)
                if not self._queue:
                    return sock
                # Taken off the queue while it is sent, so that emit() cannot
                # drop (and count) a record that is on its way.
                data = self._queue.popleft()
                self._queued -= len(data)
            try:
                sock.sendall(data)
            except OSError:
                with self._guard:  # kept for the next connection
                    self._queue.appendleft(data)
                    self._queued += len(data)
                sock.close()
                self.connected = False
                return None
            self.sent += 1

    def _drop_notice(self, lost: int) -> bytes:
        record = logging.LogRecord(
            "ampkit", logging.WARNING, __file__, 0,
            f"{lost} log records were dropped: the log server at {self.host}:{self.port} "
            "was unreachable or slow while they were queued", None, None,
        )
        return encode_log_record(fields_of(record))

    # -- ownership ---------------------------------------------------------

    def flush(self, timeout: float = 1.0) -> None:
        """Wait up to ``timeout`` seconds for the queue to be sent (if connected)."""
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self.connected and time.monotonic() < deadline:
            with self._guard:
                if not self._queue:
                    return
            time.sleep(0.01)

    def stop(self, timeout: float = 1.0) -> None:
        """Send what is queued (up to ``timeout`` seconds), then end the thread.

        A send still blocked then (a server that stopped reading) is cut off.
        """
        self.flush(timeout)
        self._worker.stop_event.set()
        self._wake.set()
        sock = self._sock
        if sock is not None and self._worker.is_alive:
            try:
                self._worker.stop(timeout=0.5)
            except RuntimeError:  # blocked in sendall: cut it off
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._worker.stop()
        self._worker.check()

    def close(self) -> None:
        """Stop the thread and detach from logging (records still queued are lost)."""
        try:
            self.stop()
        finally:
            logging.Handler.close(self)

    def __repr__(self) -> str:
        return f"<LogShipper {self.host}:{self.port} sent={self.sent} dropped={self.dropped}>"


class _Sender:
    __slots__ = ("sock", "peer", "decoder")

    def __init__(self, sock: socket.socket, peer: str, max_bytes: int) -> None:
        self.sock = sock
        self.peer = peer
        self.decoder = LogRecordDecoder(max_bytes)


class LogReceiver(Listener):
    """A Dareplane-compatible log server: records from any number of senders.

    Parameters
    ----------
    on_record : callable
        ``on_record(record: logging.LogRecord)``, called in the receiver's
        thread for every record (see :func:`record_from_fields`).
    host : str
        Interface to listen on (default ``'127.0.0.1'``).
    port : int
        Port (default 9020; 0 picks a free one, see :attr:`address`).
    max_bytes : int
        Largest record accepted; a sender announcing a larger one is
        disconnected with a log line.
    max_senders : int
        Most connections served at once; more are refused with a log line.

    Raises
    ------
    ampkit.errors.ConfigurationError
        From :meth:`start`: the port is in use or the address is not
        this machine's.
    """

    def __init__(
        self,
        on_record: Callable[[logging.LogRecord], None],
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_bytes: int = MAX_LOG_RECORD_BYTES,
        max_senders: int = 64,
    ) -> None:
        super().__init__(host, port, f"log receiver {host}:{port}",
                         "another log server (a control room?) may be running there")
        self.on_record = on_record
        self.max_bytes = int(max_bytes)
        self.max_senders = int(max_senders)
        self.n_records = 0

    def _serve(self, stop: threading.Event) -> None:
        assert self._listener is not None
        senders: dict[socket.socket, _Sender] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            try:
                while not stop.is_set():
                    for key, _ in sel.select(0.2):
                        if key.fileobj is self._listener:
                            self._accept(sel, senders)
                        else:
                            self._read(sel, senders, key.data)
            finally:
                for sender in senders.values():
                    sender.sock.close()

    def _accept(self, sel: selectors.BaseSelector, senders: dict) -> None:
        try:
            sock, addr = self._listener.accept()  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.error("log receiver: accepting a sender failed: %s", exc)
            time.sleep(0.1)  # out of descriptors: do not spin
            return
        peer = f"{addr[0]}:{addr[1]}"
        if len(senders) >= self.max_senders:
            logger.warning("log receiver: %s refused: %d senders connected", peer, len(senders))
            sock.close()
            return
        sock.setblocking(False)
        sender = _Sender(sock, peer, self.max_bytes)
        senders[sock] = sender
        sel.register(sock, selectors.EVENT_READ, sender)

    def _read(self, sel: selectors.BaseSelector, senders: dict, sender: _Sender) -> None:
        try:
            data = sender.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        try:
            if not data:
                if sender.decoder.pending:
                    logger.warning("log receiver: %s closed in the middle of a record "
                                   "(%d bytes); dropped", sender.peer, sender.decoder.pending)
                raise EOFError
            for fields, problem in sender.decoder.feed(data):
                if fields is None:
                    logger.warning("log receiver: %s: %s", sender.peer, problem)
                    continue
                self.n_records += 1
                self.on_record(record_from_fields(fields))
        except ProtocolError as exc:
            logger.warning("log receiver: %s: %s; disconnected", sender.peer, exc)
        except EOFError:
            pass
        else:
            return
        sel.unregister(sender.sock)
        senders.pop(sender.sock, None)
        sender.sock.close()

