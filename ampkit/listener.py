"""A listening TCP socket and the thread that serves it, with one owner.

:class:`Listener` binds, starts a :class:`~ampkit.worker.Worker` running the
subclass's ``_serve(stop)``, re-raises that thread's error on :meth:`check`
and releases both on :meth:`close`. ``ampkit serve``'s command server and
the log receiver of ``ampkit logs`` are listeners.
"""

from __future__ import annotations

import socket
import threading
from typing import TypeVar

from ampkit.errors import ConfigurationError, StateError
from ampkit.worker import Closing, Worker

__all__ = ["Listener"]

_L = TypeVar("_L", bound="Listener")


class Listener(Closing):
    """Listen on ``host:port`` and serve in a thread (subclasses write ``_serve``).

    Parameters
    ----------
    host : str
        Interface to listen on.
    port : int
        Port; 0 picks a free one (see :attr:`address`).
    name : str
        Thread name, also used in messages.
    advice : str
        What the user can do when the port is taken (ends the error message).
    """

    def __init__(self, host: str, port: int, name: str, advice: str = "") -> None:
        self.host = host
        self.port = int(port)
        self.thread_name = name
        self.advice = advice
        self._listener: socket.socket | None = None
        self._worker: Worker | None = None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` listened on (the real port when 0 was asked for)."""
        if self._listener is None:
            return (self.host, self.port)
        return self._listener.getsockname()[:2]

    def start(self: _L) -> _L:
        """Listen (non-blocking socket) and start the serving thread.

        Raises
        ------
        ampkit.errors.StateError
            Started already.
        ampkit.errors.ConfigurationError
            The port is in use, or the host is not an address of this machine.
        """
        if self._listener is not None:
            raise StateError(f"{self.thread_name}: started already")
        try:
            listener = socket.create_server((self.host, self.port), backlog=8)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                + (f"; {self.advice}" if self.advice else "")
            ) from exc
        listener.setblocking(False)
        self._listener = listener
        self._worker = Worker(self._serve, self.thread_name)
        self._worker.start()
        return self

    def _serve(self, stop: threading.Event) -> None:
        """Serve ``self._listener`` until ``stop`` is set (the subclass's loop)."""
        raise NotImplementedError

    def __enter__(self: _L) -> _L:
        if self._listener is None:
            self.start()
        return self

    def check(self) -> None:
        """Raise the error that ended the serving thread, if any."""
        if self._worker is not None:
            self._worker.check()

    def close(self) -> None:
        """Stop the serving thread and close the listening socket."""
        try:
            if self._worker is not None:
                self._worker.stop()
                self._worker.check()
        finally:
            if self._listener is not None:
                self._listener.close()
