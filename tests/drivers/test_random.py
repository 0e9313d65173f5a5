import time

import numpy as np
import pytest

import ampkit
from ampkit.clock import local_clock
from ampkit.drivers.random import RandomAmp
from ampkit.errors import ConfigurationError, StateError


def test_defaults_and_channels():
    amp = RandomAmp()
    assert amp.fs == 100 and amp.channels == 17
    assert amp.get_channels()[0] == "Ch_0" and len(amp.get_channels()) == 17
    assert RandomAmp.is_available()
    assert amp.presets


@pytest.mark.parametrize("bad", [dict(fs=0), dict(fs="100"), dict(channels=0),
                                 dict(channels=2.5), dict(fs=True)])
def test_bad_values(bad):
    with pytest.raises(ConfigurationError):
        RandomAmp().configure(**bad)


def test_get_data_before_start():
    with pytest.raises(StateError):
        RandomAmp().get_data()


def test_blocks_float32_noise_at_least_one_sample():
    amp = ampkit.get_amp("random", fs=500, channels=4)
    amp.start()
    data, markers = amp.get_data()
    amp.stop()
    assert data.dtype == np.float32 and data.shape[1] == 4 and len(data) >= 1
    assert markers == []


def test_effective_rate_within_0_1_percent():
    amp = ampkit.get_amp("random", fs=1000, channels=2)
    amp.start()
    t_start = amp.amp._pacer.t0
    total = 0
    deadline = local_clock() + 3.0
    while local_clock() < deadline:
        total += len(amp.get_block())
        elapsed = local_clock() - t_start
        time.sleep(0.02)
    amp.stop()
    rate = total / elapsed
    assert abs(rate - 1000) / 1000 < 1e-3, rate


def test_no_drift_over_a_minute_of_backlog():
    # 60 s of elapsed time (the pacer's start moved back) come out in one block,
    # exactly fs * 60 samples plus what accrued meanwhile.
    amp = ampkit.get_amp("random", fs=100, channels=1)
    amp.start()
    amp.amp._pacer.t0 -= 60.0
    block = amp.get_block()
    amp.stop()
    assert 6000 <= len(block) <= 6005
    np.testing.assert_allclose(np.diff(block.timestamps), 0.01, atol=1e-9)


def test_timestamps_are_the_sample_times():
    amp = ampkit.get_amp("random", fs=200, channels=1)
    amp.start()
    b1 = amp.get_block()
    time.sleep(0.05)
    b2 = amp.get_block()
    amp.stop()
    ts = np.concatenate([b1.timestamps, b2.timestamps])
    np.testing.assert_allclose(np.diff(ts), 1 / 200, atol=1e-9)
    assert ts[-1] <= local_clock()
