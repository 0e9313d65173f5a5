"""Tests of the RDA codec (ampkit.protocols.rda): known bytes, round trips, fuzzing."""

import functools
import socket
import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import edits, hows, mutate

from ampkit.errors import ProtocolError
from ampkit.protocols import rda

# The GUID as printed in Recorder's RDA.h: "As byte array: 8E45584396C9864CAF4A98BBF6C91450".
GUID_BYTES = bytes.fromhex("8E45584396C9864CAF4A98BBF6C91450")


def hand_start(names, interval, resolutions):
    body = struct.pack("<Id", len(names), interval)
    body += b"".join(struct.pack("<d", r) for r in resolutions)
    body += b"".join(n.encode() + b"\0" for n in names)
    return GUID_BYTES + struct.pack("<II", 24 + len(body), 1) + body


def hand_data(mtype, block, rows, markers):
    fmt = "<h" if mtype == 2 else "<f"
    samples = b"".join(struct.pack(fmt, v) for row in rows for v in row)
    marks = b""
    for pos, typ, desc in markers:
        text = typ.encode() + b"\0" + desc.encode() + b"\0"
        marks += struct.pack("<IIIi", 16 + len(text), pos, 1, -1) + text
    body = struct.pack("<III", block, len(rows), len(markers)) + samples + marks
    return GUID_BYTES + struct.pack("<II", 24 + len(body), mtype) + body


def parse_all(chunks, max_size=rda.MAX_MESSAGE_SIZE):
    """Feed chunks; return (messages, offset of the ProtocolError or None)."""
    parser = rda.RDAParser(max_size)
    out = []
    try:
        for chunk in chunks:
            out += parser.feed(chunk)
        out += parser.feed(b"")  # raises an error kept for the next call
    except ProtocolError as exc:
        assert parser.error is exc or parser.error.offset == exc.offset
        return out, exc.offset
    return out, None


def same(a, b):
    """Whether two message lists are equal (arrays compared exactly)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        if isinstance(x, rda.DataMessage):
            if x.block != y.block or x.markers != y.markers:
                return False
            if x.data.dtype != y.data.dtype or not np.array_equal(x.data, y.data, equal_nan=True):
                return False
        elif isinstance(x, rda.StartMessage):
            if not x.same_layout(y):
                return False
        elif x != y:
            return False
    return True


def split(data, cuts):
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


# -- known bytes -------------------------------------------------------------


def test_guid_is_windows_byte_order():
    assert rda.GUID == GUID_BYTES
    assert rda.GUID[:4] == b"\x8e\x45\x58\x43"


def test_parses_hand_built_stream():
    raw = (
        hand_start(["Fp1", "Cz", "O2"], 2000.0, [0.1, 0.5, 10.0])
        + GUID_BYTES + struct.pack("<II", 28, 10000) + b"ping"
        + hand_data(2, 7, [[1, -2, 3], [32767, -32768, 0]], [(1, "Stimulus", "S  1")])
        + hand_data(4, 8, [[1.5, -2.25, 3e5]], [])
        + GUID_BYTES + struct.pack("<II", 24, 3)
    )
    msgs = rda.RDAParser().feed(raw)
    start, unknown, d16, d32, stop = msgs
    assert start.channels == ["Fp1", "Cz", "O2"]
    assert start.fs == 500.0
    np.testing.assert_array_equal(start.resolutions, [0.1, 0.5, 10.0])
    assert unknown == rda.UnknownMessage(10000, b"ping")
    assert d16.block == 7 and d16.data.dtype == np.int16
    np.testing.assert_array_equal(d16.data, [[1, -2, 3], [32767, -32768, 0]])
    assert d16.markers == [rda.RDAMarker(1, "Stimulus", "S  1", 1, -1)]
    assert d16.markers[0].text == "Stimulus/S  1"
    assert d32.block == 8 and d32.data.dtype == np.float32
    np.testing.assert_array_equal(d32.data, [[1.5, -2.25, 3e5]])
    assert isinstance(stop, rda.StopMessage)


def test_encoders_write_the_hand_built_bytes():
    assert rda.encode_start(["Fp1", "Cz"], 1000.0, [0.1, 0.5]) == hand_start(
        ["Fp1", "Cz"], 1000.0, [0.1, 0.5]
    )
    rows = [[1, -2], [300, 4]]
    marker = rda.RDAMarker(1, "Response", "R 12")
    assert rda.encode_data(3, np.array(rows, np.int16), [marker]) == hand_data(
        2, 3, rows, [(1, "Response", "R 12")]
    )
    assert rda.encode_data(3, np.array(rows, np.float32)) == hand_data(4, 3, rows, [])
    assert rda.encode_stop() == GUID_BYTES + struct.pack("<II", 24, 3)


def test_marker_with_zero_points_means_one_and_is_walked_by_its_size():
    start = hand_start(["A"], 1000.0, [1.0])
    # A marker padded beyond its strings: the parser must step by nSize.
    text = b"Stimulus\0S  2\0\0\0\0\0"
    m1 = struct.pack("<IIIi", 16 + len(text), 0, 0, 3) + text
    text2 = b"Comment\0hello\0"
    m2 = struct.pack("<IIIi", 16 + len(text2), 1, 5, -1) + text2
    body = struct.pack("<III", 0, 2, 2) + struct.pack("<2h", 10, 11) + m1 + m2
    data = GUID_BYTES + struct.pack("<II", 24 + len(body), 2) + body
    _, msg = rda.RDAParser().feed(start + data)
    assert msg.markers == [
        rda.RDAMarker(0, "Stimulus", "S  2", 1, 3),
        rda.RDAMarker(1, "Comment", "hello", 5, -1),
    ]


def test_incomplete_message_waits_for_more():
    raw = rda.encode_start(["A", "B"], 1000.0, [1, 1])
    parser = rda.RDAParser()
    assert parser.feed(raw[:-1]) == []
    assert parser.buffered == len(raw) - 1
    (msg,) = parser.feed(raw[-1:])
    assert msg.channels == ["A", "B"] and parser.buffered == 0 and parser.offset == len(raw)


# -- errors ---------------------------------------------------------------------

START = rda.encode_start(["A", "B"], 1000.0, [1.0, 1.0])


@pytest.mark.parametrize(
    "raw, offset, words",
    [
        (b"\x8e\x45\x58\x44" + bytes(20), 0, "GUID"),
        (b"\x00", 0, "GUID"),
        (START + b"garbage", len(START), "GUID"),
        (GUID_BYTES + struct.pack("<II", 23, 1), 0, "smaller than"),
        (GUID_BYTES + struct.pack("<II", 0xFFFFFFFF, 2), 0, "over the limit"),
        (rda.encode_data(0, np.zeros((2, 2), np.int16)), 0, "before any start"),
        (START + rda.encode_data(0, np.zeros((2, 3), np.int16)), len(START), "does not match"),
        (START + rda.encode_data(0, np.zeros((4, 1), np.float32)), len(START), "does not match"),
        (START + rda.encode_data(0, np.zeros((2, 1), np.int16)), len(START), "need"),
        (rda.encode_message(1, struct.pack("<Id", 1000, 1000.0)), 0, "1000 channels"),
        (rda.encode_message(1, struct.pack("<I", 1)), 0, "truncated"),
        (rda.encode_message(1, struct.pack("<Id", 0, 1000.0)), 0, "0 channels"),
        (rda.encode_message(1, struct.pack("<Idd", 1, 0.0, 1.0) + b"A\0"), 0, "interval"),
        (rda.encode_message(1, struct.pack("<Idd", 1, 1e3, float("nan")) + b"A\0"), 0, "finite"),
        (rda.encode_message(1, struct.pack("<Iddd", 2, 1e3, 1.0, 1.0) + b"A\0B"), 0, "names"),
        (START + rda.encode_message(2, struct.pack("<II", 0, 0)), len(START), "truncated"),
        (START + rda.encode_message(2, struct.pack("<III", 0, 0, 3) + bytes(40)), len(START),
         "markers do not fit"),
        (START + rda.encode_message(2, struct.pack("<III", 0, 0, 1) + struct.pack("<IIIi", 8, 0,
         0, 0)), len(START) + 36, "outside"),  # the marker's own offset
    ],
)
def test_protocol_errors_name_offset_and_reason(raw, offset, words):
    parser = rda.RDAParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(raw)
        parser.feed(b"")  # an error after good messages comes with the next call
    assert info.value.offset == offset
    assert words in info.value.reason


def test_error_after_good_messages_is_kept_for_the_next_call():
    parser = rda.RDAParser()
    msgs = parser.feed(START + b"nonsense")
    assert len(msgs) == 1 and parser.error is not None
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"")
    assert info.value.offset == len(START)
    with pytest.raises(ProtocolError):  # broken for good
        parser.feed(START)


def test_stop_forgets_the_layout():
    parser = rda.RDAParser()
    parser.feed(START + rda.encode_stop())
    assert parser.start is None
    with pytest.raises(ProtocolError, match="before any start"):
        parser.feed(rda.encode_data(0, np.zeros((1, 2), np.int16)))


def test_huge_announced_size_does_not_allocate_or_wait():
    parser = rda.RDAParser(max_message_size=1000)
    with pytest.raises(ProtocolError, match="over the limit"):
        parser.feed(GUID_BYTES + struct.pack("<II", 1001, 4))
    # A size under the limit waits for its bytes, holding only what came.
    parser = rda.RDAParser(max_message_size=1000)
    assert parser.feed(GUID_BYTES + struct.pack("<II", 1000, 4)) == []
    assert parser.buffered == 24


# -- hypothesis -----------------------------------------------------------------

names = st.text(
    st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=8
)


@st.composite
def streams(draw):
    """A valid RDA stream: a list of messages with consistent layouts."""
    messages = []
    for _ in range(draw(st.integers(1, 3))):
        for _ in range(draw(st.integers(0, 2))):
            messages.append(
                rda.UnknownMessage(
                    draw(st.sampled_from([5, 6, 7, 8, 9, 10000, 100000, 77])),
                    draw(st.binary(max_size=40)),
                )
            )
        n = draw(st.integers(1, 5))
        start = rda.StartMessage(
            draw(st.lists(names, min_size=n, max_size=n)),
            draw(st.floats(1.0, 1e6)),
            np.array(draw(st.lists(st.floats(1e-3, 1e3), min_size=n, max_size=n))),
        )
        messages.append(start)
        dtype = draw(st.sampled_from([np.int16, np.float32]))
        for _ in range(draw(st.integers(0, 4))):
            points = draw(st.integers(0, 6))
            if dtype is np.int16:
                values = st.integers(-32768, 32767)
            else:
                values = st.floats(width=32, allow_nan=False)
            data = np.array(
                draw(st.lists(values, min_size=points * n, max_size=points * n)), dtype
            ).reshape(points, n)
            markers = [
                rda.RDAMarker(
                    draw(st.integers(0, 2**32 - 1)), draw(names), draw(names),
                    draw(st.integers(1, 2**32 - 1)), draw(st.integers(-(2**31), 2**31 - 1)),
                )
                for _ in range(draw(st.integers(0, 2)))
            ]
            messages.append(rda.DataMessage(draw(st.integers(0, 2**32 - 1)), data, markers))
            if draw(st.booleans()):
                messages.append(rda.UnknownMessage(10000))
        if draw(st.booleans()):
            messages.append(rda.StopMessage())
    return messages


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(streams(), st.lists(st.integers(0, 5000), max_size=12))
def test_round_trip_in_arbitrary_chunks(messages, cuts):
    raw = b"".join(rda.encode(m) for m in messages)
    whole, error = parse_all([raw])
    assert error is None
    assert same(whole, messages)
    pieces, _ = parse_all(split(raw, cuts))
    assert same(pieces, messages)
    bytewise, _ = parse_all([raw[i : i + 1] for i in range(len(raw))])
    assert same(bytewise, messages)


@FUZZ
@given(
    streams(),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    st.lists(st.integers(0, 5000), max_size=8),
    st.sampled_from(["replace", "insert", "delete", "truncate"]),
)
def test_mutated_streams_only_raise_protocol_error(messages, edits, cuts, how):
    raw = bytearray(b"".join(rda.encode(m) for m in messages))
    for pos, value in edits:
        pos %= len(raw) + 1
        if how == "replace" and pos < len(raw):
            raw[pos] = value
        elif how == "insert":
            raw[pos:pos] = bytes([value])
        elif how == "delete":
            del raw[pos : pos + 1 + value % 8]
        elif how == "truncate":
            del raw[pos:]
    raw = bytes(raw)
    whole = parse_all([raw], max_size=1 << 16)
    pieces = parse_all(split(raw, cuts), max_size=1 << 16)
    # Whatever the damage, the outcome does not depend on how bytes arrive.
    assert same(whole[0], pieces[0]) and whole[1] == pieces[1]


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_random_bytes_only_raise_protocol_error(raw, cuts):
    whole = parse_all([raw])
    pieces = parse_all(split(raw, cuts))
    assert same(whole[0], pieces[0]) and whole[1] == pieces[1]
    if raw[:1] not in (b"", GUID_BYTES[:1]):
        assert whole == ([], 0)


@FUZZ
@given(
    st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3, 4, 9, 10000]),
    st.binary(max_size=200), st.booleans(),
)
def test_random_bodies_behind_a_valid_header_only_raise_protocol_error(size, mtype, body, lead):
    # Past the GUID, so the fuzzing reaches the body parsers.
    head = START if lead else b""
    raw = head + GUID_BYTES + struct.pack("<II", size % 300, mtype) + body
    msgs, error = parse_all([raw], max_size=1 << 16)
    assert error is None or error >= 0


def reader_pieces(parser, raw, sizes):
    """Cut ``raw`` as the streaming layer reads it: each piece holds at least
    ``parser.missing`` bytes and at most ``missing + read_ahead``, ``sizes``
    choosing within that; each piece is a fresh writable buffer. Yields them
    as they are fed (feed each before asking for the next)."""
    pos, i = 0, 0
    while pos < len(raw):
        low, high = parser.missing, parser.missing + parser.read_ahead
        assert low >= 1
        n = min(len(raw) - pos, max(low, min(sizes[i % len(sizes)], high)))
        yield np.frombuffer(raw[pos : pos + n], np.uint8).copy()
        pos += n
        i += 1


@FUZZ
@given(streams(), st.lists(st.integers(1, 5000), min_size=1, max_size=20))
def test_reading_the_streaming_layers_way_parses_identically_without_copies(messages, sizes):
    # Pieces of at least `missing` bytes: every body comes whole, and the
    # samples are views of the piece they came in.
    encoded = [rda.encode(m) for m in messages]
    raw = b"".join(encoded)
    starts = np.cumsum([0] + [len(e) for e in encoded])[:-1]
    length = {int(start): len(e) for start, e in zip(starts, encoded, strict=True)}
    parser = rda.RDAParser()
    out, pos = [], 0
    for piece in reader_pieces(parser, raw, sizes):
        # What the reader waits for: the rest of the header, then of the message.
        start = parser.offset
        end = start + (rda.HEADER_SIZE if pos - start < rda.HEADER_SIZE else length[start])
        assert parser.missing == end - pos
        got = parser.feed(piece)
        for m in got:
            if isinstance(m, rda.DataMessage) and m.data.size and m.data.dtype.isnative:
                assert np.shares_memory(m.data, piece) and m.data.flags.writeable
        out += got
        pos += len(piece)
    assert same(out, messages)
    assert parser.buffered == 0 and parser.offset == len(raw)


def receive_all(raw, sizes):
    """Receive ``raw`` the streaming layer's way in pieces chosen by ``sizes``;
    return (messages, offset of the ProtocolError or None)."""
    parser = rda.RDAParser()
    out = []
    try:
        for piece in reader_pieces(parser, raw, sizes):
            out += parser.feed(piece)
        out += parser.feed(b"")
    except ProtocolError as exc:
        return out, exc.offset
    return out, None


@FUZZ
@given(streams(), st.lists(st.integers(1, 5000), min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_receiving_corrupted_bytes_keeps_every_message_before_the_damage(messages, sizes, flips):
    raw = bytearray(b"".join(rda.encode(m) for m in messages))
    for pos, value in flips:
        raw[pos % len(raw)] = value
    got, error = receive_all(bytes(raw), sizes)
    fed, fed_error = parse_all([bytes(raw)])
    # Read ahead or not, the same messages and the same error.
    assert same(got, fed) and error == fed_error


def test_a_bad_header_read_with_the_message_before_it_waits_for_the_next_call():
    raw = START + b"\x00" * 24
    parser = rda.RDAParser()
    assert parser.feed(raw[:24]) == []
    assert parser.missing == len(START) - 24 and parser.read_ahead == 24
    messages = parser.feed(raw[24:])  # the body and the next (bad) header
    assert [type(m) for m in messages] == [rda.StartMessage]
    assert parser.error is not None and parser.error.offset == len(START)
    with pytest.raises(ProtocolError, match="GUID"):
        parser.feed(b"")


def test_a_body_split_over_pieces_is_gathered_and_a_whole_one_is_not_copied():
    start = rda.encode_start(["A", "B"], 1000.0, [1.0, 1.0])
    block = rda.encode_data(7, np.arange(200, dtype=np.float32).reshape(100, 2))
    parser = rda.RDAParser()
    parser.feed(start)
    whole = bytearray(block)
    (msg,) = parser.feed(whole)
    assert np.shares_memory(msg.data, np.frombuffer(whole, np.uint8))
    (split_msg,) = parser.feed(block[:100]) + parser.feed(block[100:])
    assert not np.shares_memory(split_msg.data, np.frombuffer(whole, np.uint8))
    np.testing.assert_array_equal(split_msg.data, msg.data)
    # Fed read-only bytes, the samples are read-only views.
    (ro,) = parser.feed(block)
    assert not ro.data.flags.writeable


# -- hardening (issue 14): rates, the peer's name, many markers, real streams ------------


@pytest.mark.parametrize("interval", [5e-324, 1e-300, 0.0999, float("inf"), -1.0, 86400e6 * 2])
def test_start_message_with_an_impossible_rate_is_refused(interval):
    # 5e-324 µs made the rate infinite, and AmpDecorator.start() crashed
    # with an OverflowError after the marker servers were opened.
    raw = rda.encode_message(1, struct.pack("<Idd", 1, interval, 1.0) + b"A\0")
    with pytest.raises(ProtocolError, match="sampling interval .* is outside"):
        rda.RDAParser().feed(raw)


@pytest.mark.parametrize("interval", [rda.MIN_INTERVAL, 1000.0, rda.MAX_INTERVAL])
def test_start_message_rates_at_the_limits_are_accepted(interval):
    (start,) = rda.RDAParser().feed(rda.encode_start(["A"], interval, [1.0]))
    assert 0 < start.fs < float("inf") and start.fs == 1e6 / interval


def test_errors_name_the_peer():
    parser = rda.RDAParser(source="RDA 10.0.0.5:51244")
    with pytest.raises(ProtocolError, match=r"^RDA 10\.0\.0\.5:51244: bad RDA GUID") as info:
        parser.feed(START + b"garbage" * 4)
        parser.feed(b"")
    assert info.value.offset == len(START)
    assert info.value.reason.startswith("RDA 10.0.0.5:51244: ")


def test_many_markers_parse_in_one_pass():
    # The bytes are walked once (benchmarks/bench_rda_markers.py times a
    # million markers in a 16 MiB message).
    n = 200_000
    texts = [b"", b"Stimulus\0S  1\0", b"Comment\0", b"R\0x\0\0pad"]
    marks = b"".join(
        struct.pack("<IIIi", 16 + len(texts[i % 4]), i % 7, 0, -1) + texts[i % 4]
        for i in range(n)
    )
    body = struct.pack("<III", 5, 7, n) + bytes(7 * 2 * 4) + marks
    raw = START + rda.encode_message(rda.TYPE_DATA_FLOAT32, body)
    assert len(raw) > 3 * 2**20
    _, msg = rda.RDAParser().feed(raw)
    assert len(msg.markers) == n
    assert msg.markers[:4] == [
        rda.RDAMarker(0, "", "", 1, -1),
        rda.RDAMarker(1, "Stimulus", "S  1", 1, -1),
        rda.RDAMarker(2, "Comment", "", 1, -1),
        rda.RDAMarker(3, "R", "x", 1, -1),
    ]
    assert msg.markers[-1] == rda.RDAMarker((n - 1) % 7, "R", "x", 1, -1)


def test_marker_count_is_bounded_by_the_message_size():
    # 16 bytes a marker at least: a count the message cannot hold is refused
    # before any marker is read.
    body = struct.pack("<III", 0, 0, 2**32 - 1) + bytes(64)
    parser = rda.RDAParser()
    parser.feed(START)
    with pytest.raises(ProtocolError, match="markers do not fit"):
        parser.feed(rda.encode_message(rda.TYPE_DATA_INT16, body))


@functools.lru_cache(maxsize=1)
def real_stream():
    """Bytes an RDA client received from the simulator: a preamble of state,
    info and unknown messages, int16 blocks with markers and keep-alives, a
    stop, a start with another layout and float32 blocks."""
    from ampkit.sim.rda import RDASimulator

    got = bytearray()
    with RDASimulator(port=0, channels=3, fs=2000.0, block_size=8, dtype="int16",
                      marker_rate=400, preamble=True, keepalive_every=3) as sim:
        with socket.create_connection(sim.address, timeout=5) as sock:
            sock.settimeout(0.05)

            def read_for(seconds):
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    try:
                        got.extend(sock.recv(65536))
                    except TimeoutError:
                        pass

            read_for(0.15)
            sim.restart(channels=5, dtype="float32", resolution=0.5)
            read_for(0.15)
    return bytes(got)


STREAM_SOURCE = "RDA 192.0.2.7:51244"


def parse_peer(chunks, max_size=1 << 16):
    """Parse chunks with a named parser; (messages, error or None). Any other
    exception than a ProtocolError naming the peer fails the test."""
    parser = rda.RDAParser(max_size, source=STREAM_SOURCE)
    out = []
    try:
        for chunk in chunks:
            out += parser.feed(chunk)
        out += parser.feed(b"")
    except ProtocolError as exc:
        assert str(exc).startswith(STREAM_SOURCE + ": ")
        return out, exc
    return out, None


def test_the_real_stream_parses_whole():
    raw = real_stream()
    messages, error = parse_peer([raw])
    assert error is None
    kinds = {type(m) for m in messages}
    assert kinds == {rda.StartMessage, rda.DataMessage, rda.StopMessage, rda.UnknownMessage}
    assert sum(len(m.markers) for m in messages if isinstance(m, rda.DataMessage)) >= 20


@FUZZ
@given(st.integers(0, 10**7), st.lists(st.integers(0, 10**7), max_size=6))
def test_truncations_of_a_real_stream_give_a_prefix_of_its_messages(cut, cuts):
    raw = real_stream()
    whole, _ = parse_peer([raw])
    part = raw[: cut % (len(raw) + 1)]
    messages, error = parse_peer(split(part, [c % (len(part) + 1) for c in cuts]))
    assert error is None  # a cut stream waits for its missing bytes, it is not wrong
    assert same(messages, whole[: len(messages)])


@FUZZ
@given(edits, hows, st.lists(st.integers(0, 10**7), max_size=6))
def test_mutations_of_a_real_stream_parse_or_name_the_peer_in_bounded_memory(changes, how, cuts):
    raw = mutate(real_stream(), changes, how)
    max_size = 1 << 16
    tracemalloc.start()
    try:
        parse_peer(split(raw, [c % (len(raw) + 1) for c in cuts]), max_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Messages refer to their own buffers (no copies); a marker costs a
    # tuple of about ten times its 16+ bytes; one message buffer (at most
    # max_message_size) may be announced and not yet filled.
    assert peak <= 16 * len(raw) + 2 * max_size + 2**20
