"""The driver guide's example (docs/examples/): a line-based serial device,
its driver on the streaming layer and its simulator on a real pty."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampkit import AmpDecorator
from ampkit.block import GAP_MARKER
from ampkit.errors import AmpkitError, ConnectionLostError, ProtocolError, StateError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))
from linedevice import LineAmp, LineCodec  # noqa: E402
from linedevice_sim import LineDeviceSimulator, expected  # noqa: E402
from reading import read_until  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="needs ptys")


def decorated(port):
    amp = AmpDecorator(LineAmp)
    amp.configure(port=port)
    return amp


def test_every_sample_and_marker_through_the_decorator():
    with LineDeviceSimulator() as sim, decorated(sim.port) as amp:
        assert amp.get_channels() == ["Fz", "Cz", "Pz", "Oz"]
        amp.start(marker_port=None)
        data, _ = read_until(amp, 20)
        sim.mark("button")
        more, marks = read_until(amp, 30)
        amp.stop()
    data = np.concatenate([data, more])
    np.testing.assert_allclose(data, expected(0, len(data)), atol=1e-4)
    ((row, text),) = marks
    assert text == "button" and 0 <= row <= len(more)


def test_lost_lines_are_a_gap_marker_and_a_count():
    with LineDeviceSimulator() as sim, decorated(sim.port) as amp:
        amp.start(marker_port=None, gap_threshold=30.0)
        first, _ = read_until(amp, 20)
        sim.drop(7)
        rest, marks = read_until(amp, 40)
        amp.stop()
        assert amp.amp.gap_count == 1 and amp.amp.lost_samples == 7
    (row, text), = marks
    assert text == GAP_MARKER.format(n=7)
    k = np.round(np.concatenate([first, rest])[:, 0]).astype(int)
    assert k[len(first) + row] - k[len(first) + row - 1] == 8


def test_silence_unplug_garbage_and_state():
    with LineDeviceSimulator() as sim:
        amp = LineAmp()
        amp.configure(port=sim.port, silence_timeout=0.5)
        with pytest.raises(StateError):
            amp.get_data()
        amp.start()
        with pytest.raises(StateError):
            amp.start()
        read_until(amp, fs=100, n=10)
        sim.mute()
        with pytest.raises(ConnectionLostError, match="no data for .*silence_timeout"):
            read_until(amp, fs=100, n=10**6)
        amp.stop()
        with pytest.raises(StateError):
            amp.stop()
        amp.start()  # a new START: the simulator streams again
        read_until(amp, fs=100, n=10)
        sim.send(b"X what\n")
        with pytest.raises(ProtocolError, match="unknown line"):
            read_until(amp, fs=100, n=10**6)
        amp.close()
    with LineDeviceSimulator() as sim:
        amp = LineAmp()
        amp.configure(port=sim.port)
        amp.start()
        read_until(amp, fs=100, n=10)
        sim.close()  # unplugged
        with pytest.raises(ConnectionLostError, match="went away"):
            read_until(amp, fs=100, n=10**6)
        amp.close()


def test_a_line_split_anywhere_parses_the_same():
    raw = b"D 998 1 2 3 4\nM a\nD 999 5 6 7 8\nD 2 1 1 1 1\n"
    whole = LineCodec("test").feed(raw)
    pieces = LineCodec("test")
    split = [c for i in range(len(raw)) for c in pieces.feed(raw[i : i + 1])]
    assert [c.lost for c in whole] == [0, 2] and whole[0].markers == [(1, "a")]
    assert np.concatenate([c.data for c in split]).tolist() == np.concatenate(
        [c.data for c in whole]).tolist()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 50))
def test_any_bytes_parse_or_raise_an_ampkit_error(raw, step):
    codec = LineCodec("test")
    try:
        for i in range(0, len(raw), step):
            codec.feed(raw[i : i + step])
    except AmpkitError as exc:
        assert str(exc).startswith("test: ")
