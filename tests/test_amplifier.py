import numpy as np
import pytest

from ampkit.amplifier import Amplifier
from ampkit.errors import ConfigurationError


class Minimal(Amplifier):
    closed = False

    def start(self):
        pass

    def stop(self):
        pass

    def get_data(self):
        return np.zeros((2, 3), np.float32), []

    def get_channels(self):
        return ["a", "b", "c"]

    def get_sampling_frequency(self):
        return 10.0

    @staticmethod
    def is_available():
        return True

    def close(self):
        self.closed = True


def test_a_driver_must_implement_the_contract():
    with pytest.raises(TypeError, match=r"implement get_channels\(\), get_data\(\), "
                       r"get_sampling_frequency\(\), start\(\), stop\(\)"):
        Amplifier()

    class NoChannels(Amplifier):  # a driver missing get_channels was accepted until start()
        start = stop = Minimal.start
        get_data = Minimal.get_data
        get_sampling_frequency = Minimal.get_sampling_frequency

    with pytest.raises(TypeError, match=r"test_amplifier.*NoChannels is not a complete driver: "
                       r"implement get_channels\(\) \(see ampkit.amplifier.Amplifier"):
        NoChannels()
    with pytest.raises(NotImplementedError, match="cannot tell"):
        Amplifier.is_available()


def test_defaults_of_the_hooks():
    amp = Minimal()
    assert amp.presets == []
    assert amp.get_units() == ["µV"] * 3
    assert amp.get_timestamps() is None
    assert str(amp) == "Minimal"


def test_configure_without_settings_accepts_nothing():
    amp = Minimal()
    amp.configure()
    with pytest.raises(ConfigurationError, match="takes no settings"):
        amp.configure(fs=10)


def test_context_manager_closes():
    with Minimal() as amp:
        assert not amp.closed
    assert amp.closed
