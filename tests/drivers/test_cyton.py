"""The cyton driver end to end against the pty simulator (real pseudo-terminals)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from reading import read_until

import ampkit
from ampkit.block import GAP_MARKER
from ampkit.drivers.cyton import CytonAmp, probe
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    StateError,
)
from ampkit.protocols.cyton import uv_per_count
from ampkit.sim.cyton import CytonSimulator

GAINS8 = [1, 2, 4, 6, 8, 12, 24, 24]


collect = read_until


def wait_for(condition, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def assert_within_one_count(data, sim, index, gains):
    n = len(gains)
    expected = sim.expected_uv(index)[:, :n]
    step = np.array([uv_per_count(g) for g in gains])
    error = np.abs(data[:, :n] - expected) / step
    assert error.max() <= 1.0, f"worst error {error.max():.2f} counts"


def start(amp, filename=None):
    # Only the driver's gap markers are wanted here: the decorator's own gap
    # detection, from arrival times, could fire on a loaded machine.
    amp.start(filename, marker_port=None, gap_threshold=30.0)


@pytest.mark.parametrize("daisy", [False, True], ids=["8ch", "16ch"])
def test_values_gains_and_accelerometer(daisy):
    gains = GAINS8 * 2 if daisy else GAINS8
    with CytonSimulator(daisy=daisy, accel=(0.25, -0.5, 1.0)) as sim:
        with ampkit.get_amp("cyton", port=sim.port, daisy=daisy, gains=gains, accel=True,
                            timeout=2.0) as amp:
            n = len(gains)
            assert amp.get_channels()[:n] == [f"Ch{i + 1}" for i in range(n)]
            assert amp.get_channels()[n:] == ["AccX", "AccY", "AccZ"]
            assert amp.get_units() == ["µV"] * n + ["g"] * 3
            assert amp.get_sampling_frequency() == (125.0 if daisy else 250.0)
            start(amp)
            data, markers = collect(amp, 120)
            amp.stop()
            assert sim.gains[:n] == gains
            assert amp.banner.firmware == (3, 1, 2)
        assert markers == []
        assert data.shape[1] == n + 3
        assert_within_one_count(data, sim, np.arange(len(data)), gains)
        # The accelerometer comes every tenth packet; it is held in between.
        np.testing.assert_allclose(data[-1, n:], [0.25, -0.5, 1.0], atol=0.002 / 16)
        expected = [b"s", b"v", b"C", b"d", b"~6"] if daisy else [b"s", b"v", b"d", b"~6"]
        assert sim.commands[: len(expected)] == expected
        wait_for(lambda: sim.commands[-1:] == [b"s"])  # the simulator reads it a bit later
        assert sim.commands[-2:] == [b"b", b"s"]


def spy_url(port: str) -> str:
    """A pyserial URL for ``port``: the driver's generic (non-descriptor) read path."""
    return f"spy://{port}?file={os.devnull}"


def test_pyserial_url_values_and_unplug():
    with CytonSimulator() as sim:
        amp = ampkit.get_amp("cyton", port=spy_url(sim.port), gains=GAINS8, timeout=2.0)
        start(amp)
        data, markers = collect(amp, 60)
        assert markers == []
        assert_within_one_count(data, sim, np.arange(len(data)), GAINS8)
        sim.unplug()
        with pytest.raises(ConnectionLostError, match="went away"):
            for _ in range(1000):
                amp.get_block()
        amp.stop()


def test_a_late_get_data_loses_nothing():
    # Bytes read by the reader thread meanwhile and those get_data() reads
    # itself join in order.
    with CytonSimulator() as sim:
        amp = ampkit.get_amp("cyton", port=sim.port)
        start(amp)
        time.sleep(1.5)
        data, markers = collect(amp, 300)
        amp.stop()
        assert markers == [] and amp.lost_samples == 0
        assert_within_one_count(data, sim, np.arange(len(data)), [24] * 8)


def test_default_gain_and_second_start_on_the_same_port():
    with CytonSimulator() as sim:
        amp = ampkit.get_amp("cyton", port=sim.port)
        for _ in range(2):
            start(amp)
            data, _ = collect(amp, 50)
            amp.stop()
            assert data.shape[1] == 8
            assert_within_one_count(data, sim, np.arange(len(data)), [24] * 8)
        # No x...X command: the defaults restored by 'd' are wanted.
        assert not any(c.startswith(b"x") for c in sim.commands)
        amp.close()


def test_garbage_is_skipped_and_the_stream_resynchronised(caplog):
    with CytonSimulator(garbage=0.2, seed=3) as sim:
        amp = ampkit.get_amp("cyton", port=sim.port, gains=GAINS8)
        start(amp)
        data, markers = collect(amp, 200)
        amp.stop()
        assert amp.skipped_bytes > 0
        assert amp.lost_samples == 0 and markers == []
        assert_within_one_count(data, sim, np.arange(len(data)), GAINS8)
    assert "not Cyton packets" in caplog.text and sim.port in caplog.text


def test_dropped_packets_are_counted_and_marked(caplog):
    with CytonSimulator() as sim:
        amp = ampkit.get_amp("cyton", port=sim.port)
        start(amp)
        first, _ = collect(amp, 30)
        sim.drop_packets(7)
        rest, markers = collect(amp, 60)
        amp.stop()
        assert sim.n_dropped == 7
        assert amp.lost_samples == 7 and amp.gap_count == 1
        assert [text for _, text in markers] == [GAP_MARKER.format(n=7)]
        (row, _), = markers
        data = np.concatenate([first, rest])
        gap_at = len(first) + row
        index = np.arange(len(data))
        index[gap_at:] += 7
        assert_within_one_count(data, sim, index, [24] * 8)
    assert "7 samples lost" in caplog.text


def test_dropped_daisy_packets_lose_whole_samples():
    with CytonSimulator(daisy=True) as sim:
        amp = ampkit.get_amp("cyton", port=sim.port, daisy=True)
        start(amp)
        first, _ = collect(amp, 20)
        sim.drop_packets(5)  # 2 or 3 samples, depending on where the drop starts
        rest, markers = collect(amp, 30)
        amp.stop()
        (row, text), = markers
        lost = int(text.rsplit(" ", 1)[1])
        assert lost in (2, 3) and amp.lost_samples == lost
        data = np.concatenate([first, rest])
        index = np.arange(len(data))
        index[len(first) + row:] += lost
        assert_within_one_count(data, sim, index, [24] * 16)


def test_unplug_raises_connection_lost_and_the_recording_is_closed(tmp_path):
    sim = CytonSimulator().start()
    amp = ampkit.get_amp("cyton", port=sim.port, timeout=2.0)
    start(amp, str(tmp_path / "rec"))
    got, _ = collect(amp, 40)
    sim.unplug()
    assert not os.path.exists(sim.port)
    t0 = time.monotonic()
    with pytest.raises(ConnectionLostError, match=f"{sim.port} went away"):
        for _ in range(1000):
            amp.get_block()
    assert time.monotonic() - t0 < 3.0
    t0 = time.monotonic()
    amp.stop()
    amp.close()
    assert time.monotonic() - t0 < 2.0
    rec = ampkit.io.read(tmp_path / "rec")
    assert rec.data.shape[1] == 8 and rec.n_samples >= len(got)


def test_a_silent_board_is_reported_as_connection_lost():
    with CytonSimulator() as sim:
        amp = ampkit.get_amp("cyton", port=sim.port, timeout=1.0)
        start(amp)
        collect(amp, 10)
        sim.stop()  # the board loses power; the dongle (pty) stays
        with pytest.raises(ConnectionLostError, match="no data"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                amp.get_block()
        amp.stop()


def test_no_board_on_the_port():
    sim = CytonSimulator()  # a pty nobody answers on
    try:
        amp = ampkit.get_amp("cyton", port=sim.port, timeout=0.3)
        with pytest.raises(AmpNotAvailableError, match="no answer to 'v'"):
            start(amp)
        assert not amp.running
        assert probe(sim.port, timeout=0.3) is None
    finally:
        sim.close()
    with pytest.raises(AmpNotAvailableError, match="could not open Cyton port"):
        start(ampkit.get_amp("cyton", port="/dev/does-not-exist-ampkit"))


def test_a_port_in_use_is_refused_and_not_disturbed():
    with CytonSimulator() as sim:
        amp = ampkit.get_amp("cyton", port=sim.port)
        start(amp)
        collect(amp, 10)
        n_commands = len(sim.commands)
        other = ampkit.get_amp("cyton", port=sim.port)
        with pytest.raises(AmpNotAvailableError, match="lock"):
            start(other)
        assert probe(sim.port, timeout=0.3) is None
        time.sleep(0.2)  # anything sent would have reached the simulator by now
        assert len(sim.commands) == n_commands  # nothing was sent into the stream
        assert CytonAmp.is_available()  # in use by this process counts as available
        collect(amp, 10)
        amp.stop()


def test_daisy_asked_for_but_absent():
    with CytonSimulator(daisy=False) as sim:
        amp = ampkit.get_amp("cyton", port=sim.port, daisy=True, timeout=1.0)
        with pytest.raises(AmpNotAvailableError, match="no Daisy"):
            start(amp)


def test_eight_channels_from_a_board_with_daisy_sends_c():
    with CytonSimulator(daisy=True) as sim:
        amp = ampkit.get_amp("cyton", port=sim.port)
        start(amp)
        data, _ = collect(amp, 30)
        amp.stop()
        assert b"c" in sim.commands and data.shape[1] == 8
        # The board then streams 8 channels at 250 Hz.
        assert_within_one_count(data, sim, np.arange(len(data)), [24] * 8)


def test_is_available_probes_configured_ports(monkeypatch):
    monkeypatch.setattr(CytonAmp, "known_ports", [])
    monkeypatch.delenv("AMPKIT_CYTON_PORT", raising=False)
    assert CytonAmp.is_available() is False
    with CytonSimulator() as sim:
        monkeypatch.setenv("AMPKIT_CYTON_PORT", sim.port)
        assert CytonAmp.is_available() is True
        banner = probe(sim.port)
        assert banner is not None and "OpenBCI" in banner.text
        # The port from the environment is also the default port.
        amp = CytonAmp()
        assert amp.port == sim.port
    assert "cyton" in ampkit.registry.driver_names()


@pytest.mark.parametrize(
    "config",
    [
        {"gains": 3},
        {"gains": [24] * 7},
        {"gains": "high"},
        {"fs": 300},
        {"daisy": "yes"},
        {"timeout": 0},
        {"port": 5},
        {"channel_names": ["a"]},
    ],
)
def test_bad_configuration_is_refused(config):
    with pytest.raises(ConfigurationError):
        CytonAmp().configure(**config)


def test_state_errors():
    amp = CytonAmp()
    amp.configure(port=None)
    with pytest.raises(StateError):
        amp.get_data()
    with pytest.raises(StateError):
        amp.stop()
    if not os.environ.get("AMPKIT_CYTON_PORT"):
        with pytest.raises(ConfigurationError, match="no port"):
            amp.start()
