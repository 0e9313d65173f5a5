import numpy as np
import pytest

import ampkit
from ampkit.drivers.sine import SineAmp
from ampkit.errors import ConfigurationError


def test_libmushu_defaults():
    amp = SineAmp()
    assert (amp.f, amp.fs, amp.channels) == (1.0, 10.0, 16)


def test_exact_values():
    amp = ampkit.get_amp("sine", f=5, fs=1000, channels=3, amplitude=2.0)
    amp.start()
    blocks = [amp.get_data()[0] for _ in range(5)]
    amp.stop()
    data = np.concatenate(blocks)
    k = np.arange(len(data))
    expected = 2.0 * np.sin(2 * np.pi * 5 * k / 1000)
    for ch in range(3):
        np.testing.assert_allclose(data[:, ch], expected, atol=1e-6)


def test_bad_frequency():
    with pytest.raises(ConfigurationError, match="f must"):
        SineAmp().configure(f=0)
