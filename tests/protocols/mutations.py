"""Damage done to recorded byte streams by the codecs' property tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: Up to five edits: (position, bytes); positions wrap around the stream.
edits = st.lists(st.tuples(st.integers(0, 10**7), st.binary(max_size=12)), min_size=1,
                 max_size=5)
#: What an edit does at its position.
hows = st.sampled_from(["replace", "insert", "delete", "truncate"])


def mutate(raw: bytes, changes: list[tuple[int, bytes]], how: str) -> bytes:
    """``raw`` with each change applied: its bytes written over the stream
    (``replace``), put in (``insert``), as many bytes and one more taken out
    (``delete``), or the stream cut there (``truncate``)."""
    out = bytearray(raw)
    for pos, value in changes:
        pos %= len(out) + 1
        if how == "replace":
            out[pos : pos + len(value)] = value
        elif how == "insert":
            out[pos:pos] = value
        elif how == "delete":
            del out[pos : pos + 1 + len(value)]
        else:
            del out[pos:]
    return bytes(out)
