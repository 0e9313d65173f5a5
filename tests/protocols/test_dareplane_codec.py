"""Dareplane's command and log-record framing (ampkit.protocols.dareplane)."""

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampkit.errors import ProtocolError
from ampkit.protocols.dareplane import (
    Command,
    CommandFramer,
    LogRecordDecoder,
    encode_log_record,
    parse_command,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_in_pieces(framer, data, cuts):
    out = []
    start = 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]:
        out += framer.feed(data[start:cut])
        start = cut
    return out


# -- commands -------------------------------------------------------------------


def test_framer_splits_at_semicolons_and_ignores_empty_segments():
    framer = CommandFramer()
    assert framer.feed(b";;UP;  ;\r\nSTATUS\r\n;START|{\"lsl\": fal") == [
        (b"UP", None), (b"STATUS", None)]
    assert framer.pending == len(b'START|{"lsl": fal')
    assert framer.feed(b"se};") == [(b'START|{"lsl": false}', None)]
    assert framer.pending == 0


def test_framer_drops_an_oversize_command_up_to_its_semicolon():
    framer = CommandFramer(max_bytes=10)
    out = framer.feed(b"MARKER|{\"text\"")
    assert out == [(None, "command longer than 10 bytes; dropped")]
    assert framer.skipping and framer.pending == 0  # its bytes are not kept
    assert framer.feed(b"x" * 100_000) == []
    assert framer.pending == 0
    assert framer.feed(b": 1};UP;") == [(b"UP", None)]
    assert not framer.skipping
    # exactly at the limit is fine
    assert CommandFramer(max_bytes=6).feed(b"STATUS;") == [(b"STATUS", None)]


@pytest.mark.parametrize(("raw", "command"), [
    (b"UP", Command("UP")),
    (b"STOP|", Command("STOP")),  # DefaultServer's empty-payload variant
    (b'MARKER|{"text": "S 1"}', Command("MARKER", {"text": "S 1"})),
    (b' START | {"lsl": "eeg", "marker_port": null} ',
     Command("START", {"lsl": "eeg", "marker_port": None})),
    ('MARKER|{"text": "Ä\\u007cb"}'.encode(), Command("MARKER", {"text": "Ä|b"})),
])
def test_parse_command(raw, command):
    assert parse_command(raw) == command


@pytest.mark.parametrize(("raw", "says"), [
    (b'MARKER|{"text": "a|b"}', "more than one '|'"),
    (b"MARKER|{text: 1}", "is not JSON"),
    (b"MARKER|[1, 2]", "not an object of keyword arguments"),
    (b'MARKER|"S 1"', "not an object"),
    (b"\xff\xfeUP", "not UTF-8"),
    (b"|{}", "no command name"),
    (b"GET PCOMMS", "no command name"),
    (b"START|" + b"[" * 100_000, "is not JSON"),  # nesting deeper than the parser goes
])
def test_parse_command_rejects(raw, says):
    with pytest.raises(ProtocolError, match=says.replace("|", r"\|").replace("[", r"\[")):
        parse_command(raw)


@FUZZ
@given(st.lists(st.sampled_from([b"UP", b"STATUS", b'MARKER|{"text": "x;y"}', b"", b" ",
                                 b"START|{}", b"\r\n", b"A" * 40]), max_size=12),
       st.lists(st.integers(0, 400), max_size=8))
def test_framer_result_does_not_depend_on_how_the_stream_is_cut(parts, cuts):
    data = b";".join(parts) + b";"
    whole = CommandFramer(max_bytes=30).feed(data)
    assert feed_in_pieces(CommandFramer(max_bytes=30), data, cuts) == whole


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_any_bytes_parse_or_raise_protocol_error(data, cuts):
    framer = CommandFramer(max_bytes=64)
    for segment, problem in feed_in_pieces(framer, data, cuts):
        assert (segment is None) != (problem is None)
        if segment is not None:
            assert len(segment) <= 64
            try:
                command = parse_command(segment)
            except ProtocolError:
                continue
            assert command.name and isinstance(command.kwargs, dict)
    assert framer.pending <= 64


# -- log records ---------------------------------------------------------------------


def test_log_record_round_trip_and_dareplane_framing():
    fields = {"name": "ampkit", "msg": "hello", "levelno": 20, "created": 1.5, "obj": object()}
    frame = encode_log_record(fields)
    (size,) = struct.unpack(">L", frame[:4])
    assert size == len(frame) - 4
    body = json.loads(frame[4:])
    assert body["msg"] == "hello" and body["obj"].startswith("<object")  # unserialisable -> text
    decoder = LogRecordDecoder()
    assert decoder.feed(frame[:3]) == []
    assert decoder.feed(frame[3:] + frame) == [(body, None), (body, None)]
    assert decoder.pending == 0


def test_log_decoder_drops_bad_frames_and_refuses_huge_ones():
    decoder = LogRecordDecoder(max_bytes=100)
    bad = b"{not json"
    notobj = b"[1, 2]"
    out = decoder.feed(struct.pack(">L", len(bad)) + bad + struct.pack(">L", len(notobj)) + notobj
                       + encode_log_record({"msg": "ok"}))
    assert [f for f, _ in out] == [None, None, {"msg": "ok"}]
    assert "not JSON" in out[0][1] and "not an object" in out[1][1]
    with pytest.raises(ProtocolError, match="101 bytes announced; the limit is 100"):
        decoder.feed(struct.pack(">L", 101))


@FUZZ
@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=20),
                                max_size=4), max_size=6),
       st.lists(st.integers(0, 600), max_size=8))
def test_log_decoder_result_does_not_depend_on_how_the_stream_is_cut(records, cuts):
    data = b"".join(encode_log_record(r) for r in records)
    assert feed_in_pieces(LogRecordDecoder(), data, cuts) == [(r, None) for r in records]


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_log_decoder_any_bytes_decode_or_raise_protocol_error(data, cuts):
    decoder = LogRecordDecoder(max_bytes=200)
    try:
        for fields, problem in feed_in_pieces(decoder, data, cuts):
            assert (fields is None) != (problem is None)
    except ProtocolError:
        return
    assert decoder.pending <= 204
