"""The ``random`` driver (libmushu's ``randomamp``): noise at a configured rate.

Blocks are sized by the time elapsed since the previous call, and the count
never drifts: after *T* seconds of acquisition exactly ``floor(T * fs)``
samples have been delivered. Useful to try ampkit, for tests and benchmarks.
"""

from __future__ import annotations

import numpy as np

from ampkit.amplifier import Marker
from ampkit.drivers.synthetic import SyntheticAmp

__all__ = ["RandomAmp"]


class RandomAmp(SyntheticAmp):
    """An amplifier that produces Gaussian noise (float32, µV).

    Configure with ``configure(fs=100, channels=17)``.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('random', fs=250, channels=8)
    >>> amp.get_channels()[:2]
    ['Ch_0', 'Ch_1']
    """

    presets = [
        ["Random noise at 50Hz, 16 channels", {"fs": 50, "channels": 16}],
        ["Random noise at 1kHz, 128 channels", {"fs": 1000, "channels": 128}],
        ["BrainFlow synthetic shape: 250Hz, 32 channels", {"fs": 250, "channels": 32}],
    ]

    def __init__(self) -> None:
        super().__init__()
        self._rng = np.random.default_rng()

    def configure(self, fs: float = 100, channels: int = 17, amplitude: float = 10.0) -> None:
        """Set the rate and channel count.

        Parameters
        ----------
        fs : float
            Sampling frequency in Hz.
        channels : int
            Number of channels, named ``Ch_0`` ... ``Ch_{n-1}``.
        amplitude : float
            Standard deviation of the noise in µV.
        """
        self._configure_shape(fs, channels)
        self.amplitude = float(amplitude)

    def _generate(self, first: int, n: int) -> tuple[np.ndarray, list[Marker]]:
        data = self._rng.standard_normal((n, self.channels), dtype=np.float32)
        data *= self.amplitude
        return data, []

