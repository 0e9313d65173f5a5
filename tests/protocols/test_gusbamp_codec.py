"""Tests of the g.USBamp protocol (ampkit.protocols.gusbamp): frames, payloads, filters."""

import struct

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st
from mutations import edits, hows, mutate

from ampkit.errors import ConfigurationError
from ampkit.protocols import gusbamp as proto
from ampkit.protocols.gusbamp import Request, Transfer


def stream(n, seed=0):
    """``n`` frames of random float32 values and their little-endian bytes."""
    values = np.random.default_rng(seed).normal(0, 100, (n, 17)).astype("<f4")
    return values, values.tobytes()


def test_frame_is_17_little_endian_float32():
    frame = struct.pack("<17f", *range(17))
    out = proto.FrameParser().feed(frame)
    assert out.shape == (1, 17)
    assert out[0].tolist() == list(range(17))
    assert proto.FRAME_BYTES == 68


def test_frames_held_back_until_whole():
    values, raw = stream(3)
    parser = proto.FrameParser()
    assert len(parser.feed(raw[:67])) == 0
    assert parser.buffered == 67 and parser.missing == 1
    first = parser.feed(raw[67:69])
    np.testing.assert_array_equal(first, values[:1])
    assert parser.buffered == 1
    np.testing.assert_array_equal(parser.feed(raw[69:]), values[1:])
    assert parser.buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_split_of_the_stream_gives_the_same_frames(data):
    values, raw = stream(data.draw(st.integers(0, 40)), data.draw(st.integers(0, 5)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=30)))
    parser, out = proto.FrameParser(), []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        out.append(parser.feed(raw[start:end]))
    joined = np.concatenate(out) if out else np.empty((0, 17))
    np.testing.assert_array_equal(joined, values)
    assert parser.buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_any_bytes_parse_and_nothing_piles_up(raw, sizes):
    """Every byte string is frames (there is no framing to break); a rest
    shorter than a frame is all that is ever held."""
    parser, rows, at = proto.FrameParser(), 0, 0
    for size in sizes * (len(raw) // sum(sizes) + 1):
        rows += len(parser.feed(raw[at : at + size]))
        at += size
        assert parser.buffered < proto.FRAME_BYTES
        if at >= len(raw):
            break
    assert rows == len(raw) // proto.FRAME_BYTES


@settings(max_examples=100, deadline=None)
@given(edits, hows)
def test_damaged_stream_stays_aligned_to_what_arrives(changes, how):
    _, raw = stream(20)
    damaged = mutate(raw, changes, how)
    frames = proto.FrameParser().feed(damaged)
    assert len(frames) == len(damaged) // proto.FRAME_BYTES
    np.testing.assert_array_equal(
        frames.reshape(-1).view(np.uint8)[: len(frames) * 68], np.frombuffer(
            damaged[: len(frames) * 68], np.uint8))


def test_null_filter_is_the_dumps_bytes():
    assert proto.NULL_FILTER == b"\x00\x00\x00\x00\x00\x00\xf0\x3f" + b"\x00" * 8 * 17
    assert proto.parse_filter(proto.NULL_FILTER) is None


def test_filter_payload_round_trip_and_padding():
    b, a = [0.1, 0.2, 0.1], [1.0, -0.5, 0.25]
    payload = proto.filter_payload(b, a)
    assert len(payload) == 144
    values = struct.unpack("<18d", payload)
    assert values[:3] == (0.1, 0.2, 0.1) and values[3:9] == (0.0,) * 6
    assert values[9:12] == (1.0, -0.5, 0.25) and values[12:] == (0.0,) * 6
    pb, pa = proto.parse_filter(payload)
    np.testing.assert_array_equal(pb[:3], b)
    np.testing.assert_array_equal(pa[:3], a)
    with pytest.raises(ValueError, match="at most 9"):
        proto.filter_payload(np.ones(10), [1.0])
    with pytest.raises(ValueError, match="finite"):
        proto.filter_payload([np.nan], [1.0])
    with pytest.raises(ValueError, match="144 bytes"):
        proto.parse_filter(payload[:-1])


@pytest.mark.parametrize("fs", proto.SAMPLING_RATES)
@pytest.mark.parametrize("order", [1, 2, 4])
def test_bandpass_matches_scipy_butter(fs, order):
    for low, high in [(0.1, fs * 0.4), (0.5, min(30.0, fs * 0.45)), (2.0, fs / 4)]:
        b, a = proto.bandpass_coefficients(low, high, fs, order)
        ref_b, ref_a = scipy.signal.butter(order, [low, high], "bandpass", fs=fs)
        assert len(b) == len(a) == 2 * order + 1
        np.testing.assert_allclose(b, ref_b, rtol=0, atol=1e-12 * np.abs(ref_b).max())
        np.testing.assert_allclose(a, ref_a, rtol=0, atol=1e-12 * np.abs(ref_a).max())


@pytest.mark.parametrize("fs", [fs for fs in proto.SAMPLING_RATES if fs >= 128])
@pytest.mark.parametrize("line", [50, 60])
def test_notch_matches_scipy_butter_bandstop(fs, line):
    b, a = proto.notch_coefficients(line, fs)
    ref_b, ref_a = scipy.signal.butter(2, proto.NOTCH_BANDS[line], "bandstop", fs=fs)
    np.testing.assert_allclose(b, ref_b, rtol=0, atol=1e-12 * np.abs(ref_b).max())
    np.testing.assert_allclose(a, ref_a, rtol=0, atol=1e-12 * np.abs(ref_a).max())
    # It does notch: the response at the line frequency is far below the pass band.
    _, h = scipy.signal.freqz(b, a, [line, 10.0], fs=fs)
    assert abs(h[0]) < 0.1 and abs(h[1]) > 0.95


def test_filter_design_refuses_what_it_cannot_do():
    with pytest.raises(ConfigurationError, match="bandpass_order must be 1..4"):
        proto.bandpass_coefficients(1, 30, 256, 5)
    with pytest.raises(ConfigurationError, match="0 < low < high < 128 Hz"):
        proto.bandpass_coefficients(1, 200, 256)
    with pytest.raises(ConfigurationError, match="0 < low < high"):
        proto.bandpass_coefficients(30, 1, 256)
    with pytest.raises(ConfigurationError, match="needs fs above 124 Hz"):
        proto.notch_coefficients(60, 64)
    with pytest.raises(ConfigurationError, match="50, 60 or None"):
        proto.notch_coefficients(55, 256)
    with pytest.raises(ValueError, match="btype"):
        proto.butterworth(2, (1, 2), 100, "lowpass")


@pytest.mark.parametrize("shape,code", [("square", 1), ("sawtooth", 2), ("sine", 3),
                                        ("whitenoise", 5)])
def test_calibration_payload_is_the_dumps(shape, code):
    payload = proto.dac_payload(shape)
    assert payload == bytes([code, 0xD0, 0x07, 0x02, 0x00, 0xFF, 0x07])
    assert proto.parse_dac(payload) == (code, 2000, 2, 2047)
    with pytest.raises(ValueError, match="7 bytes"):
        proto.parse_dac(payload + b"\0")


def test_group_masks():
    assert proto.group_mask(False) == 0
    assert proto.group_mask(True) == 0b1111
    assert proto.group_mask("A") == 1
    assert proto.group_mask("bd") == 0b1010
    assert proto.group_mask(["C", "A"]) == 0b0101
    for bad in ["E", "", [1], 3]:
        with pytest.raises(ConfigurationError, match="electrode groups"):
            proto.group_mask(bad)


def test_impedance_conversion_is_libmushus():
    u = np.array([0.0, 100.0, 147.78325, 5000.0])
    expected = (u * 1e6 / (1e4 - u) - 1e4) / 1e3  # libmushu's, in kΩ
    np.testing.assert_allclose(proto.impedance_kohm(u), expected)
    kohm = np.array([0.5, 5.0, 20.0, 1000.0])
    np.testing.assert_allclose(proto.impedance_kohm(proto.impedance_raw(kohm)), kohm)
    assert np.isinf(proto.impedance_kohm(np.array([1e4])))[0]


def test_setup_sequence_replays_the_dump():
    """The transfers libmushu replays from g.tec's driver, in its order, with
    ampkit's choices (all 16 channels' filters, the rate last)."""
    transfers = proto.setup_transfers(512)
    head = [
        Transfer(0xC0), Transfer(0xC2, 1), Transfer(0xB6, 0x80), Transfer(0xB5, 0x80),
        Transfer(0xB9, 0, 0, bytes(range(1, 17))), Transfer(0xCD, 0), Transfer(0xD3, 1),
        Transfer(0xCA, 1), Transfer(0xC8, 1, 0, bytes(16)), Transfer(0xBF, 0), Transfer(0xBE, 0),
        Transfer(0xCB, 0, 0, b"\x03\xd0\x07\x02\x00\xff\x07"),
    ]
    assert transfers[: len(head)] == head
    filters = transfers[len(head) : -1]
    assert [(t.request, t.value) for t in filters] == [
        (r, ch) for ch in range(1, 17) for r in (0xC6, 0xC7)]
    assert all(t.data == proto.NULL_FILTER for t in filters)
    assert transfers[-1] == Transfer(0xB6, 512)
    assert proto.START == (Transfer(0xB5, 0x08), Transfer(0xF7))
    assert proto.STOP == Transfer(0xB8)


@pytest.mark.parametrize("mode,first", [("data", (0xC0, 1)), ("impedance", (0xC9, 3)),
                                        ("calibration", (0xC1, 2))])
def test_modes(mode, first):
    request, value = first
    assert proto.mode_transfers(mode) == [Transfer(request), Transfer(Request.MODE, value)]


def test_transfer_text_names_the_request():
    assert str(Transfer(0xB6, 512)) == "request 0xB6 (value 512)"
    assert "144 bytes" in str(Transfer(0xC6, 1, 0, proto.NULL_FILTER))
