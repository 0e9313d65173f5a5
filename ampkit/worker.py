"""A background thread with an owner: start/stop/close and re-raised errors.

Every background activity in ampkit (reader threads of drivers, marker
servers, the recording writer, simulators) runs in a :class:`Worker`, so no
thread outlives its owner and no exception in a thread is lost: it is logged
when it happens and raised again to the owner on the next :meth:`Worker.check`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

__all__ = ["Closing", "Worker"]

logger = logging.getLogger("ampkit")

_C = TypeVar("_C", bound="Closing")


class Closing:
    """Mixin: the context manager of an object that owns something.

    ``with obj as o:`` binds ``obj`` itself and calls ``obj.close()`` on
    leaving, whatever happened. Owners that must be started first override
    ``__enter__`` to start them and return ``super().__enter__()``.
    """

    def close(self) -> None:
        """Release what the object owns."""
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Worker(Closing):
    """Run ``target(stop_event)`` in a daemon thread.

    The target loops until ``stop_event`` is set, waiting at most a fraction
    of a second at a time (socket and queue timeouts, ``stop_event.wait``),
    so that :meth:`stop` returns promptly.

    Parameters
    ----------
    target : callable
        ``target(stop_event: threading.Event) -> None``.
    name : str
        Thread name, also used in log messages.

    Examples
    --------
    >>> def loop(stop):
    ...     while not stop.wait(0.01):
    ...         pass
    >>> with Worker(loop, "demo") as w:
    ...     w.check()
    """

    def __init__(self, target: Callable[[threading.Event], None], name: str) -> None:
        self._target = target
        self.name = name
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._target(self.stop_event)
        except BaseException as exc:  # noqa: BLE001 - kept for the owner
            if not self.stop_event.is_set():
                logger.error("%s: background thread failed: %r", self.name, exc)
            self._error = exc

    def start(self) -> Worker:
        """Start the thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    @property
    def is_alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def check(self) -> None:
        """Raise the exception that ended the thread, if any (once)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait for it.

        Raises
        ------
        RuntimeError
            The thread did not end within ``timeout`` seconds.
        """
        self.stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"{self.name}: thread did not stop within {timeout} s")

    def close(self) -> None:
        """Stop the thread; same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> Worker:
        if self._thread is None:
            self.start()
        return super().__enter__()
