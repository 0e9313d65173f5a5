"""The Cyton codec: packets, samples, commands, answers, scaling.

Properties are checked with hypothesis over arbitrary chunk splits, garbage,
mutations and random bytes; the parser may only ever return packets or raise
ProtocolError.
"""

from __future__ import annotations

import functools
import logging
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mutations import edits, hows, mutate

from ampkit.errors import ProtocolError
from ampkit.protocols.cyton import (
    ADC_MAX,
    GAINS,
    PACKET_SIZE,
    SAMPLE_RATES,
    ChannelSettings,
    CommandParser,
    GainTracker,
    PacketParser,
    ResponseReader,
    SampleAssembler,
    Samples,
    accel_to_g,
    counts_to_uv,
    decode_channel_settings,
    decode_sample_rate,
    encode_channel_settings,
    encode_packets,
    encode_sample_rate,
    g_to_accel,
    parse_banner,
    uv_per_count,
    uv_to_counts,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def feed_all(parser: PacketParser, chunks: list[bytes]):
    batches = [parser.feed(c) for c in chunks]
    return (
        np.concatenate([b.sample_numbers for b in batches]),
        np.concatenate([b.eeg for b in batches]),
        np.concatenate([b.aux for b in batches]),
        np.concatenate([b.footers for b in batches]),
    )


@st.composite
def packet_streams(draw, min_size=1, max_size=40):
    n = draw(st.integers(min_size, max_size))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    start = draw(st.integers(0, 255))
    sn = (start + np.arange(n)) % 256
    eeg = rng.integers(-ADC_MAX - 1, ADC_MAX + 1, (n, 8))
    aux = rng.integers(-(2**15), 2**15, (n, 3))
    footer = draw(st.integers(0xC0, 0xC6))
    return sn, eeg, aux, footer


# -- packets -------------------------------------------------------------


def test_packet_layout_matches_the_protocol():
    data = encode_packets([5], np.array([[1, -1, ADC_MAX, -ADC_MAX - 1, 0, 2, 3, 4]]),
                          np.array([[256, -2, 7]]))
    assert len(data) == PACKET_SIZE
    assert data[0] == 0xA0 and data[1] == 5 and data[32] == 0xC0
    assert data[2:5] == b"\x00\x00\x01"
    assert data[5:8] == b"\xff\xff\xff"
    assert data[8:11] == b"\x7f\xff\xff"
    assert data[11:14] == b"\x80\x00\x00"
    assert data[26:32] == b"\x01\x00\xff\xfe\x00\x07"


@FAST
@given(packet_streams(), st.lists(st.integers(0, 10_000), max_size=30))
def test_any_split_gives_the_same_packets(stream, cuts):
    sn, eeg, aux, footer = stream
    data = encode_packets(sn, eeg, aux, footer)
    parser = PacketParser()
    got_sn, got_eeg, got_aux, got_footers = feed_all(parser, split(data, cuts))
    np.testing.assert_array_equal(got_sn, sn)
    np.testing.assert_array_equal(got_eeg, eeg)
    np.testing.assert_array_equal(got_aux, aux)
    assert (got_footers == footer).all()
    assert parser.n_skipped == 0 and parser.buffered == 0


@FAST
@given(
    packet_streams(min_size=2),
    st.data(),
    st.lists(st.integers(0, 10_000), max_size=20),
)
def test_garbage_between_packets_is_skipped_and_every_packet_recovered(stream, data, cuts):
    sn, eeg, aux, footer = stream
    packets = [encode_packets(sn[i : i + 1], eeg[i : i + 1], aux[i : i + 1], footer)
               for i in range(len(sn))]
    garbage_bytes = st.binary(min_size=1, max_size=80).map(lambda b: b.replace(b"\xa0", b"\x55"))
    inserts = data.draw(st.dictionaries(st.integers(1, len(sn) - 1), garbage_bytes, max_size=5))
    stream_bytes = b"".join(inserts.get(i, b"") + p for i, p in enumerate(packets))
    parser = PacketParser()
    got_sn, got_eeg, _, _ = feed_all(parser, split(stream_bytes, cuts))
    np.testing.assert_array_equal(got_sn, sn)
    np.testing.assert_array_equal(got_eeg, eeg)
    assert parser.n_skipped == sum(len(g) for g in inserts.values())
    assert parser.n_resyncs == len(inserts)


def test_leading_garbage_and_bad_footers_are_skipped(caplog):
    eeg = np.arange(24).reshape(3, 8)
    good = encode_packets([1, 2, 3], eeg)
    bad_footer = bytearray(encode_packets([9], eeg[:1]))
    bad_footer[32] = 0xC7
    parser = PacketParser(source="COM9")
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        batch = parser.feed(b"\x00\xa0junk" + bytes(bad_footer) + good)
    np.testing.assert_array_equal(batch.sample_numbers, [1, 2, 3])
    assert parser.n_skipped == 6 + PACKET_SIZE
    assert "COM9" in caplog.text and "skipped" in caplog.text


def test_a_truncated_packet_is_dropped_not_merged():
    eeg = np.arange(32).reshape(4, 8)
    data = encode_packets([1, 2, 3, 4], eeg)
    stream = data[:33] + data[33:50] + data[66:]  # packet 2 cut short
    parser = PacketParser()
    batch = parser.feed(stream)
    np.testing.assert_array_equal(batch.sample_numbers, [1, 3, 4])
    np.testing.assert_array_equal(batch.eeg, eeg[[0, 2, 3]])


def test_after_garbage_a_far_sample_number_waits_for_confirmation():
    eeg = np.arange(24).reshape(3, 8)
    parser = PacketParser()
    parser.feed(encode_packets([1], eeg[:1]))
    # Garbage, then a packet 100 numbers on: it could be a stray 0xA0, so
    # it is taken only when the next packet starts right after it.
    batch = parser.feed(b"\x01\x02" + encode_packets([101], eeg[1:2]))
    assert len(batch) == 0
    batch = parser.feed(encode_packets([102], eeg[2:]))
    np.testing.assert_array_equal(batch.sample_numbers, [101, 102])


@FAST
@given(st.lists(st.binary(max_size=200), max_size=20), st.none() | st.integers(0, 300))
def test_random_bytes_never_crash(chunks, max_garbage):
    parser = PacketParser(max_garbage=max_garbage)
    total = 0
    packets = 0
    for chunk in chunks:
        total += len(chunk)
        try:
            batch = parser.feed(chunk)
        except ProtocolError as exc:
            assert max_garbage is not None and "no valid Cyton packet" in str(exc)
            continue
        packets += len(batch)
        assert batch.eeg.shape == (len(batch), 8)
        assert ((batch.footers >= 0xC0) & (batch.footers <= 0xC6)).all()
    assert packets == parser.n_packets
    assert parser.n_packets * PACKET_SIZE + parser.n_skipped + parser.buffered == total


@FAST
@given(packet_streams(min_size=5), st.data(), st.lists(st.integers(0, 10_000), max_size=10))
def test_mutated_streams_never_crash_and_keep_in_step_packets(stream, data, cuts):
    sn, eeg, aux, footer = stream
    raw = bytearray(encode_packets(sn, eeg, aux, footer))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)),
                               max_size=8))
    for pos, value in flips:
        raw[pos] = value
    parser = PacketParser()
    assembler = SampleAssembler()
    for chunk in split(bytes(raw), cuts):
        batch = parser.feed(chunk)
        samples = assembler.push(batch)
        assert len(samples) == len(batch)
    assert parser.n_packets * PACKET_SIZE + parser.n_skipped + parser.buffered == len(raw)


@FAST
@given(packet_streams(min_size=2), st.data())
def test_corrupted_payload_bytes_do_not_lose_step(stream, data):
    sn, eeg, aux, footer = stream
    raw = bytearray(encode_packets(sn, eeg, aux, footer))
    payload = st.tuples(st.integers(0, len(sn) - 1), st.integers(2, 31), st.integers(0, 255))
    for k, off, value in data.draw(st.lists(payload, max_size=10)):
        raw[k * PACKET_SIZE + off] = value
    batch = PacketParser().feed(bytes(raw))
    np.testing.assert_array_equal(batch.sample_numbers, sn)


def test_endless_garbage_raises_protocol_error_naming_the_port():
    parser = PacketParser(source="/dev/ttyUSB0", max_garbage=1000)
    with pytest.raises(ProtocolError, match="/dev/ttyUSB0"):
        for _ in range(20):
            parser.feed(bytes(range(256)) * 1)
    # The parser goes on working afterwards.
    batch = parser.feed(encode_packets([1, 2], np.zeros((2, 8))))
    assert len(batch) >= 1


# -- samples --------------------------------------------------------------


@FAST
@given(st.integers(0, 255), st.data())
def test_dropped_packets_are_counted_across_the_wrap(start, data):
    n = 240
    keep = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    keep[0] = True
    idx = np.flatnonzero(keep)
    sn = (start + idx) % 256
    eeg = np.repeat(idx[:, None], 8, axis=1)
    raw = encode_packets(sn, eeg)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=10))
    parser, assembler = PacketParser(), SampleAssembler()
    parts = [assembler.push(parser.feed(c)) for c in split(raw, cuts)]
    out = Samples.concatenate(parts, 8)
    np.testing.assert_array_equal(out.eeg[:, 0], idx)
    expected = [(r, int(idx[r] - idx[r - 1] - 1)) for r in range(1, len(idx))
                if idx[r] - idx[r - 1] > 1]
    assert out.gaps == expected
    assert assembler.n_lost == assembler.n_lost_packets == idx[-1] + 1 - len(idx)


def test_wrap_without_loss_is_not_a_gap():
    sn = np.arange(250, 262) % 256
    samples = SampleAssembler().push(PacketParser().feed(encode_packets(sn, np.zeros((12, 8)))))
    assert samples.gaps == [] and len(samples) == 12


@FAST
@given(st.integers(0, 255), st.data())
def test_daisy_pairs_even_with_the_next_odd_and_counts_lost_pairs(start, data):
    n = 200
    keep = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    present = np.flatnonzero(keep)
    assume(len(present) > 0)
    g = start + present  # sample numbers before the wrap
    eeg = np.repeat(g[:, None], 8, axis=1)
    raw = encode_packets(g % 256, eeg)
    parser, assembler = PacketParser(), SampleAssembler(daisy=True)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=10))
    parts = [assembler.push(parser.feed(c)) for c in split(raw, cuts)]
    out = Samples.concatenate(parts, 16)
    gs = set(g.tolist())
    pairs = [x for x in sorted(gs) if x % 2 == 0 and x + 1 in gs]
    assert out.eeg.shape == (len(pairs), 16)
    np.testing.assert_array_equal(out.eeg[:, 0], np.array(pairs, int) + 1)  # channels 1-8: odd
    np.testing.assert_array_equal(out.eeg[:, 8], pairs)  # channels 9-16: even
    slots = [x // 2 for x in pairs]
    expected = [(r, slots[r] - slots[r - 1] - 1) for r in range(1, len(slots))
                if slots[r] - slots[r - 1] > 1]
    assert out.gaps == expected
    assert assembler.n_lost == sum(k for _, k in expected)


def test_accelerometer_readings_are_held_between_packets():
    aux = np.zeros((6, 3), int)
    aux[1] = [10, 20, 8000]
    aux[4] = [-5, 0, 7999]
    parser, assembler = PacketParser(), SampleAssembler()
    out = assembler.push(parser.feed(encode_packets(range(6), np.zeros((6, 8)), aux)))
    np.testing.assert_array_equal(out.accel[:, 2], [0, 8000, 8000, 8000, 7999, 7999])
    out = assembler.push(parser.feed(encode_packets([6], np.zeros((1, 8)))))
    np.testing.assert_array_equal(out.accel, [[-5, 0, 7999]])


# -- scaling --------------------------------------------------------------


def test_scale_factors_match_the_datasheet():
    assert uv_per_count(24) == pytest.approx(0.02235, abs=1e-5)
    assert counts_to_uv(np.array([[ADC_MAX]]), 1)[0, 0] == pytest.approx(4.5e6)
    assert accel_to_g(np.array([8000]))[0] == pytest.approx(1.0)
    assert g_to_accel(np.array([1.0]))[0] == 8000


@FAST
@given(st.lists(st.floats(-180_000, 180_000), min_size=8, max_size=8),
       st.lists(st.sampled_from(GAINS), min_size=8, max_size=8))
def test_quantise_and_scale_back_within_half_a_count(values, gains):
    limit = 4.5e6 / np.array(gains) * 0.99
    uv = np.clip(np.array([values]), -limit, limit)
    back = counts_to_uv(uv_to_counts(uv, gains), gains)
    step = np.array([uv_per_count(g) for g in gains])
    assert (np.abs(back - uv) <= step / 2 + 1e-9).all()


# -- commands and answers -------------------------------------------------


@st.composite
def channel_settings(draw):
    return ChannelSettings(
        power_down=draw(st.booleans()), gain=draw(st.sampled_from(GAINS)),
        input_type=draw(st.integers(0, 7)), bias=draw(st.booleans()),
        srb2=draw(st.booleans()), srb1=draw(st.booleans()),
    )


@FAST
@given(st.integers(1, 16), channel_settings())
def test_channel_settings_round_trip(channel, cs):
    cmd = encode_channel_settings(channel, cs)
    assert len(cmd) == 9 and cmd[:1] == b"x" and cmd[-1:] == b"X"
    assert decode_channel_settings(cmd) == (channel, cs)


def test_default_channel_command_is_the_documented_one():
    assert encode_channel_settings(1) == b"x1060110X"
    assert encode_channel_settings(16, ChannelSettings(gain=1)) == b"xI000110X"


@pytest.mark.parametrize("bad", [b"x9060110X", b"x1070110X", b"x1060110Y", b"x106011X", b"v"])
def test_malformed_channel_commands_raise(bad):
    with pytest.raises(ProtocolError):
        decode_channel_settings(bad)


def test_sample_rate_commands():
    assert [encode_sample_rate(fs) for fs in SAMPLE_RATES] == [b"~%d" % i for i in range(7)]
    assert decode_sample_rate(b"~6") == 250
    with pytest.raises(ValueError):
        encode_sample_rate(300)
    with pytest.raises(ProtocolError):
        decode_sample_rate(b"~9")


commands = st.one_of(
    st.sampled_from([b"v", b"d", b"b", b"s", b"c", b"C", b"?", b"1", b"!"]),
    st.builds(encode_channel_settings, st.integers(1, 16), channel_settings()),
    st.sampled_from(SAMPLE_RATES).map(encode_sample_rate),
)


@FAST
@given(st.lists(commands, max_size=20), st.lists(st.integers(0, 500), max_size=10))
def test_command_parser_splits_any_chunking(cmds, cuts):
    parser = CommandParser()
    got = [c for chunk in split(b"".join(cmds), cuts) for c in parser.feed(chunk)]
    assert got == cmds


@FAST
@given(st.lists(commands, max_size=30))
def test_gain_tracker_follows_a_model(cmds):
    tracker = GainTracker()
    model = [24] * 16
    for cmd in cmds:
        tracker.feed(cmd)
        if cmd in (b"v", b"d"):
            model = [24] * 16
        elif cmd[:1] == b"x":
            ch, cs = decode_channel_settings(cmd)
            model[ch - 1] = cs.gain
    assert tracker.gains == model


@FAST
@given(st.binary(max_size=300))
def test_command_parser_and_tracker_survive_random_bytes(data):
    tracker = GainTracker()
    tracker.feed(data)
    assert all(g in GAINS for g in tracker.gains)


@FAST
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                              blacklist_characters="$"), max_size=40),
                max_size=5),
       st.lists(st.integers(0, 300), max_size=10))
def test_response_reader_any_split(answers, cuts):
    raw = b"".join(a.encode() + b"$$$" for a in answers)
    reader = ResponseReader()
    got = [r for chunk in split(raw, cuts) for r in reader.feed(chunk)]
    assert got == answers


def test_response_reader_is_bounded():
    reader = ResponseReader(max_size=100)
    assert reader.feed(b"x" * 1000) == []
    assert reader.feed(b"ok$$$") == ["x" * 100 + "ok"]


def test_banner_parsing():
    text = ("OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n"
            "On Daisy ADS1299 Device ID: 0x3E\nLIS3DH Device ID: 0x33\nFirmware: v3.1.2\n")
    banner = parse_banner(text)
    assert banner.firmware == (3, 1, 2) and banner.daisy
    assert parse_banner("OpenBCI V3 8 channel\n").firmware == (1, 0, 0)
    with pytest.raises(ProtocolError, match="not an OpenBCI board"):
        parse_banner("Device failed to poll Host")


@FAST
@given(st.data())
def test_accelerometer_hold_same_for_any_chunking(data):
    n = 150
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    aux = np.where(rng.random((n, 1)) < 0.2, rng.integers(-500, 500, (n, 3)), 0)
    footers = data.draw(st.sampled_from([0xC0, 0xC1]))
    raw = encode_packets(np.arange(n), np.zeros((n, 8)), aux, footers)
    whole = SampleAssembler().push(PacketParser().feed(raw)).accel  # > 64: array path
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=20))
    parser, assembler = PacketParser(), SampleAssembler()
    parts = [assembler.push(parser.feed(c)) for c in split(raw, cuts)]
    np.testing.assert_array_equal(Samples.concatenate(parts, 8).accel, whole)
    if footers == 0xC0:
        fresh = np.flatnonzero(aux.any(axis=1))
        if len(fresh):
            np.testing.assert_array_equal(whole[fresh[-1]:], np.broadcast_to(aux[fresh[-1]],
                                                                              (n - fresh[-1], 3)))
    else:
        assert not whole.any()  # other aux modes are not accelerometer readings


# -- real streams (issue 14): what the simulator sent over a real pty ----------------


PORT = "/dev/ttyUSB7"


@functools.lru_cache(maxsize=2)
def real_stream(daisy: bool) -> tuple[bytes, bytes]:
    """(answers, packets): the bytes a client read from the Cyton simulator
    on a real pty -- the answers to ``v``, ``d`` and ``~6``, then a stream
    with injected garbage and dropped packets."""
    import serial

    from ampkit.sim.cyton import CytonSimulator

    def read_for(ser, seconds):
        out, end = b"", time.monotonic() + seconds
        while time.monotonic() < end:
            out += ser.read(max(1, ser.in_waiting))
        return out

    with CytonSimulator(daisy=daisy, fs=1000) as sim, \
            serial.Serial(sim.port, 115200, timeout=0.02) as ser:
        ser.write(b"v")
        answers = read_for(ser, 0.3)
        ser.write(b"d~5")
        answers += read_for(ser, 0.2)
        ser.write(b"b")
        packets = read_for(ser, 0.1)
        sim.inject(b"\xa0garbage\xc0\xa0" * 3)
        sim.drop_packets(5)
        packets += read_for(ser, 0.1)
        ser.write(b"s")
    return answers, packets


@pytest.mark.parametrize("daisy", [False, True])
def test_the_real_streams_parse_whole(daisy):
    answers, packets = real_stream(daisy)
    replies = ResponseReader(source=PORT).feed(answers)
    assert parse_banner(replies[0], source=PORT).daisy == daisy
    assert "updating channel settings to default" in replies
    parser = PacketParser(source=PORT)
    samples = SampleAssembler(daisy, source=PORT).push(parser.feed(packets))
    assert len(samples) > 20 and parser.n_resyncs >= 1 and samples.n_lost >= 2


@FAST
@given(st.booleans(), edits, hows, st.lists(st.integers(0, 10**6), max_size=8),
       st.none() | st.integers(0, 400))
def test_mutated_real_packet_streams_parse_or_name_the_port_in_bounded_memory(
    daisy, changes, how, cuts, max_garbage
):
    raw = mutate(real_stream(daisy)[1], changes, how)
    parser = PacketParser(source=PORT, max_garbage=max_garbage)
    assembler = SampleAssembler(daisy, source=PORT)
    tracemalloc.start()
    try:
        for chunk in split(raw, cuts):
            try:
                samples = assembler.push(parser.feed(chunk))
            except ProtocolError as exc:
                assert str(exc).startswith(f"{PORT}: ")
                continue
            assert samples.eeg.shape[1] == (16 if daisy else 8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parser.n_packets * PACKET_SIZE + parser.n_skipped + parser.buffered == len(raw)
    assert peak <= 16 * len(raw) + 2**20


@FAST
@given(st.booleans(), edits, hows, st.lists(st.integers(0, 10**6), max_size=8))
def test_mutated_real_answers_parse_or_name_the_port(daisy, changes, how, cuts):
    raw = mutate(real_stream(daisy)[0], changes, how)
    reader = ResponseReader(max_size=4096, source=PORT)
    for chunk in split(raw, cuts):
        for reply in reader.feed(chunk):
            try:
                banner = parse_banner(reply, source=PORT)
            except ProtocolError as exc:
                assert str(exc).startswith(f"{PORT}: ")
            else:
                assert all(0 <= part for part in banner.firmware)
    assert len(reader._buf) <= 4096


@FAST
@given(st.text(max_size=300), st.integers(0, 20_000))
def test_any_banner_text_parses_or_raises_protocol_error(text, digits):
    for candidate in (text, f"OpenBCI {text}", f"OpenBCI Firmware: v{'9' * digits}.1"):
        try:
            parse_banner(candidate, source=PORT)
        except ProtocolError as exc:
            assert str(exc).startswith(f"{PORT}: ")
