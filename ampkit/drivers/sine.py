"""The ``sine`` driver (libmushu's ``sinusamp``): a sine wave on every channel."""

from __future__ import annotations

import numpy as np

from ampkit.amplifier import Marker
from ampkit.checks import check_positive_number
from ampkit.drivers.synthetic import SyntheticAmp

__all__ = ["SineAmp"]


class SineAmp(SyntheticAmp):
    """An amplifier that produces ``amplitude * sin(2 pi f t)`` on every channel.

    ``t`` is the sample time since ``start()`` (sample *k* at ``k / fs``),
    so the signal is exactly predictable, which tests use.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('sinusamp', f=10, fs=1000, channels=4)
    """

    presets = [
        ["Sine wave at 1Hz, 10Hz sampling, 16 channels", {"f": 1, "fs": 10, "channels": 16}],
        ["Sine wave at 3Hz, 100Hz sampling, 128 channels", {"f": 3, "fs": 100, "channels": 128}],
    ]

    def configure(
        self, f: float = 1, fs: float = 10, channels: int = 16, amplitude: float = 1.0
    ) -> None:
        """Set the sine frequency, sampling rate and channel count.

        Parameters
        ----------
        f : float
            Frequency of the sine in Hz (libmushu's first preset by default).
        fs : float
            Sampling frequency in Hz.
        channels : int
            Number of channels.
        amplitude : float
            Peak amplitude in µV.
        """
        self._configure_shape(fs, channels)
        self.f = check_positive_number("f", f)
        self.amplitude = float(amplitude)

    def _generate(self, first: int, n: int) -> tuple[np.ndarray, list[Marker]]:
        t = (first + np.arange(n)) / self.fs
        wave = (self.amplitude * np.sin(2 * np.pi * self.f * t)).astype(np.float32)
        return np.repeat(wave[:, None], self.channels, axis=1), []
