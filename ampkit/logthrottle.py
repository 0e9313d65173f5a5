"""Warnings that can repeat many times a second, logged at most once a second.

A peer that keeps sending bad input, or a flood that keeps overflowing a
queue, must not flood the log in turn: :class:`LogThrottle` logs the first
message, then at most one per interval, saying how many it held back.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["LogThrottle"]


class LogThrottle:
    """Log a repeating message at most once per ``interval`` seconds.

    Parameters
    ----------
    logger : logging.Logger
        Where the messages go.
    interval : float
        Seconds between two logged messages at least.
    level : int
        Logging level of the messages.

    Attributes
    ----------
    held : int
        Messages not logged since the last one that was.

    Examples
    --------
    >>> import logging
    >>> warn = LogThrottle(logging.getLogger("ampkit"))
    >>> for i in range(1000):
    ...     logged = warn("marker %d is outside its block", i)   # the first only
    >>> warn.held
    999
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 1.0, level: int = logging.WARNING
    ) -> None:
        self.logger = logger
        self.interval = float(interval)
        self.level = level
        self.held = 0
        self._last = -float("inf")
        self._lock = threading.Lock()

    def __call__(self, message: str, *args: object) -> bool:
        """Log ``message % args`` unless one was logged less than ``interval``
        seconds ago; return whether it was logged."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self.held += 1
                return False
            held, self.held, self._last = self.held, 0, now
        if held:
            message += f" ({held} more such messages before this one were not logged)"
        self.logger.log(self.level, message, *args)
        return True
