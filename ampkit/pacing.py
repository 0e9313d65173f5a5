"""Drift-free pacing of sample production at a nominal rate.

Synthetic drivers and device simulators produce samples "as time passes".
:class:`Pacer` counts how many samples are due from the time elapsed since
``start()``, advancing by whole samples, so that rounding never accumulates:
after *T* seconds exactly ``floor(T * fs)`` samples have been handed out, in
however many calls.
"""

from __future__ import annotations

import time

from ampkit.clock import local_clock
from ampkit.errors import ConfigurationError

__all__ = ["Pacer", "check_ppm", "skewed"]

#: Largest clock error a simulator accepts, in ppm (1 %).
MAX_PPM = 10_000.0


def check_ppm(ppm: object) -> float:
    """Return a clock error in ppm as a float, or raise ConfigurationError.

    Simulators take ``ppm=`` to run their sample clock that far from the
    nominal rate, as real crystals do; within +-:data:`MAX_PPM`.
    """
    if (
        isinstance(ppm, bool)
        or not isinstance(ppm, (int, float))
        or not -MAX_PPM <= ppm <= MAX_PPM
    ):
        raise ConfigurationError(f"ppm must be a number within +-{MAX_PPM:g}, got {ppm!r}")
    return float(ppm)


def skewed(fs: float, ppm: float) -> float:
    """The real rate of a clock that runs ``ppm`` parts per million off ``fs``."""
    return fs * (1.0 + ppm * 1e-6)


class Pacer:
    """Count samples due at ``fs`` Hz since :meth:`start`.

    Parameters
    ----------
    fs : float
        Samples per second.

    Examples
    --------
    >>> p = Pacer(1000.0)
    >>> p.start()
    >>> n = p.due()            # samples produced since start, 0 or more
    """

    def __init__(self, fs: float) -> None:
        if not fs > 0:
            raise ValueError(f"fs must be positive, got {fs!r}")
        self.fs = float(fs)
        self.t0 = 0.0
        self.count = 0

    def start(self, t0: float | None = None) -> None:
        """Start counting at ``t0`` (now by default)."""
        self.t0 = local_clock() if t0 is None else t0
        self.count = 0

    def time_of(self, k: int) -> float:
        """Time at which sample ``k`` (0-based) became due."""
        return self.t0 + (k + 1) / self.fs

    def due(self, wait: bool = False, multiple: int = 1) -> int:
        """Return the number of samples that became due since the last call.

        Parameters
        ----------
        wait : bool
            Sleep until at least ``multiple`` samples are due (libmushu's
            synthetic amps block this way).
        multiple : int
            Hand out only whole multiples of this many samples.
        """
        while True:
            total = int((local_clock() - self.t0) * self.fs)
            n = (total - self.count) // multiple * multiple
            if n > 0 or not wait:
                break
            time.sleep(max(self.time_of(self.count + multiple - 1) - local_clock(), 0.0))
        self.count += n
        return n
