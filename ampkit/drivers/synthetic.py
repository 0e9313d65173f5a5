"""Shared base of the synthetic drivers (``random``, ``sine``).

A synthetic amp produces samples as time passes, paced by
:class:`ampkit.pacing.Pacer`; ``get_data()`` blocks until at least one sample
is due (as libmushu's synthetic amps do) and knows the exact time of each
sample, which it hands to the decorator through ``get_timestamps()``.
"""

from __future__ import annotations

import numpy as np

from ampkit.amplifier import Amplifier, Marker
from ampkit.checks import check_positive_int, check_positive_number
from ampkit.errors import StateError
from ampkit.pacing import Pacer

__all__ = ["SyntheticAmp"]


class SyntheticAmp(Amplifier):
    """Base class: paced production of ``_generate(first, n)`` blocks."""

    def __init__(self) -> None:
        self.running = False
        self._timestamps: np.ndarray | None = None
        self.configure()

    def _configure_shape(self, fs: object, channels: object) -> None:
        if getattr(self, "running", False):
            raise StateError("configure() while running")
        self.fs = check_positive_number("fs", fs)
        self.channels = check_positive_int("channels", channels)

    def _generate(self, first: int, n: int) -> tuple[np.ndarray, list[Marker]]:
        """Return samples ``first`` .. ``first + n - 1`` and their markers."""
        raise NotImplementedError

    def start(self) -> None:
        """Start producing samples."""
        self._pacer = Pacer(self.fs)
        self._pacer.start()
        self.running = True

    def stop(self) -> None:
        """Stop producing samples."""
        self.running = False

    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Return the samples due since the last call (at least one)."""
        if not self.running:
            raise StateError("get_data() before start()")
        pacer = self._pacer
        first = pacer.count
        n = pacer.due(wait=True)
        self._timestamps = pacer.t0 + (first + 1 + np.arange(n)) / pacer.fs
        return self._generate(first, n)

    def get_timestamps(self) -> np.ndarray | None:
        """Exact times of the samples of the last block."""
        return self._timestamps

    def get_channels(self) -> list[str]:
        """``Ch_0`` ... ``Ch_{n-1}`` (libmushu's names)."""
        return [f"Ch_{i}" for i in range(self.channels)]

    def get_sampling_frequency(self) -> float:
        """The configured rate in Hz."""
        return self.fs

    @staticmethod
    def is_available() -> bool:
        """Always true: no hardware needed."""
        return True
