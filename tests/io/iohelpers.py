"""Shared helpers of the ampkit.io tests: scripted blocks and what a reader must find."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np

from ampkit.block import Block
from ampkit.errors import AmpkitError
from ampkit.io.recorder import Recorder
from ampkit.io.writer import Header


def make_blocks(
    n_blocks: int = 20,
    channels: int = 3,
    fs: float = 250.0,
    seed: int = 0,
    texts: tuple[str, ...] = ("S  1", "Stimulus/S 12", "a, b", "µ-ä ☃", "x"),
    t0: float = 5000.0,
) -> list[Block]:
    """Blocks of random data on a regular clock, with markers between and on samples."""
    rng = np.random.default_rng(seed)
    blocks, index, k = [], 0, 0
    for b in range(n_blocks):
        n = int(rng.integers(1, 40))
        ts = t0 + (index + np.arange(n)) / fs
        data = (rng.standard_normal((n, channels)) * 50).astype(np.float32)
        markers = []
        if b % 2 == 0:
            # one marker between two samples, one exactly on a sample
            markers.append((ts[0] + 0.4 / fs if n > 1 else ts[0], texts[k % len(texts)]))
            markers.append((float(ts[n // 2]), f"{texts[(k + 1) % len(texts)]}{b}"))
            k += 2
        if b == 0:
            markers.insert(0, (t0 - 1.0, "before"))  # older than the first sample
        markers.sort()
        blocks.append(Block(data, ts, markers, index))
        index += n
    return blocks


def expected(blocks: list[Block]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, float, str]]]:
    """All data, all timestamps, and ``(sample, time_s, text)`` of every marker."""
    data = np.concatenate([b.data for b in blocks])
    ts = np.concatenate([b.timestamps for b in blocks])
    marks = []
    for b in blocks:
        for t, text in b.markers:
            sample = int(np.searchsorted(ts, t, side="left"))
            marks.append((min(sample, len(ts) - 1), t - ts[0], text))
    return data, ts, marks


def record(path, blocks: list[Block], channels: int = 3, fs: float = 250.0,
           units: list[str] | None = None, **kwargs) -> Recorder:
    """Record ``blocks`` through a real Recorder and close it."""
    header = Header([f"C{i}" for i in range(channels)], fs, units or [], "scripted")
    rec = Recorder(header, path, **kwargs)
    for block in blocks:
        rec.on_block(block)
    rec.close()
    return rec


# -- files written by other software, and crafted files ------------------------

#: Recordings written by other programs (BrainVision Recorder, BioSemi,
#: LabRecorder, pybv, MNE): ``../shared/foreign`` beside the repository.
FOREIGN = Path(__file__).resolve().parents[2] / ".." / "shared" / "foreign"


def foreign(pattern: str) -> list:
    """``pytest.param``s of the foreign files matching ``pattern``, or one skipped param."""
    import pytest

    found = sorted(FOREIGN.glob(pattern)) if FOREIGN.is_dir() else []
    if not found:
        reason = f"no {pattern} in {FOREIGN.resolve()} (the shared test files are absent)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(p, id=p.name) for p in found]


def craft_edf(path, signals, duration=1.0, bdf=False, reserved="", annotations=None,
              recording="Startdate 02-JAN-2024 X X X", start=("02.01.24", "10.20.30"),
              duration_text=None):
    """Write an EDF/BDF file from the specification (no library), for variants
    other writers do not make.

    ``signals``: dicts with ``label``, ``spr`` (samples per record),
    ``digital`` (ints, ``n_records * spr``) and optionally ``unit``,
    ``pmin``/``pmax``/``dmin``/``dmax`` (as header texts or numbers).
    ``annotations``: one TAL byte string per record (an annotation signal is
    added when given).
    """
    width = 3 if bdf else 2
    n_records = len(signals[0]["digital"]) // signals[0]["spr"]
    sigs = list(signals)
    if annotations is not None:
        size = max(len(a) for a in annotations)
        spr = -(-size // width)
        sigs.append({"label": "BDF Annotations" if bdf else "EDF Annotations", "spr": spr,
                     "unit": "", "pmin": -1, "pmax": 1, "dmin": -(2 ** (8 * width - 1)),
                     "dmax": 2 ** (8 * width - 1) - 1, "tal": annotations})
    ns = len(sigs)

    def f(text, n):
        return str(text).encode("latin-1")[:n].ljust(n)

    head = [b"\xffBIOSEMI" if bdf else b"0       ", f("X X X X", 80), f(recording, 80),
            f(start[0], 8), f(start[1], 8), f(256 * (ns + 1), 8), f(reserved, 44),
            f(n_records, 8), f(duration_text or repr(duration), 8), f(ns, 4)]
    full = 2 ** (8 * width - 1)
    for key, n, default in (("label", 16, ""), ("transducer", 80, ""), ("unit", 8, "uV"),
                            ("pmin", 8, -1000), ("pmax", 8, 1000), ("dmin", 8, -full),
                            ("dmax", 8, full - 1), ("prefilter", 80, ""), ("spr", 8, 1),
                            ("reserved", 32, "")):
        head += [f(s.get(key, default), n) for s in sigs]
    out = [b"".join(head)]
    for r in range(n_records):
        for s in sigs:
            if "tal" in s:
                out.append(s["tal"][r].ljust(s["spr"] * width, b"\x00"))
            else:
                values = np.asarray(s["digital"][r * s["spr"]: (r + 1) * s["spr"]], np.int64)
                raw = (values & (2 ** (8 * width) - 1)).astype("<u4").view(np.uint8)
                out.append(raw.reshape(-1, 4)[:, :width].tobytes())
    Path(path).write_bytes(b"".join(out))
    return Path(path)


def xdf_chunk(tag: int, content: bytes) -> bytes:
    """One XDF chunk (the specification's framing: length, tag, content)."""
    n = len(content) + 2
    size = struct.pack("<BB", 1, n) if n < 256 else struct.pack("<BI", 4, n)
    return size + struct.pack("<H", tag) + content


def xdf_stream_header(sid: int, name: str, kind: str, n_ch: int, srate: float,
                      fmt: str = "float32", desc: str = "") -> bytes:
    xml = (f"<?xml version=\"1.0\"?><info><name>{name}</name><type>{kind}</type>"
           f"<channel_count>{n_ch}</channel_count><nominal_srate>{srate}</nominal_srate>"
           f"<channel_format>{fmt}</channel_format>{desc}</info>")
    return xdf_chunk(2, struct.pack("<I", sid) + xml.encode())


def xdf_samples(sid: int, stamps, values, fmt: str = "<f4") -> bytes:
    """A Samples chunk; a stamp of None leaves that sample's timestamp out."""
    out = [struct.pack("<IBI", sid, 4, len(values))]
    for stamp, row in zip(stamps, values, strict=True):
        out.append(b"\x00" if stamp is None else struct.pack("<Bd", 8, stamp))
        if fmt == "string":
            for text in row:
                raw = text.encode()
                out.append(struct.pack("<BI", 4, len(raw)) + raw)
        else:
            out.append(np.asarray(row, fmt).tobytes())
    return xdf_chunk(3, b"".join(out))


def xdf_offset(sid: int, when: float, value: float) -> bytes:
    return xdf_chunk(4, struct.pack("<Idd", sid, when, value))


# -- the reader contract under any bytes ------------------------------------------

def read_or_refuse(read, path, files, factor: int = 48, slack: int = 2**19):
    """Call ``read(path)``: it returns a Recording or raises an ampkit error that
    names the file, never anything else; and it allocates at most ``factor``
    times the size of ``files`` (plus ``slack``) on the way.

    Returns the Recording, or None when the file was refused.
    """
    size = sum(Path(f).stat().st_size for f in files if Path(f).exists())
    tracemalloc.start()
    try:
        try:
            rec = read(path)
        except AmpkitError as exc:
            assert Path(path).name.split(".")[0] in str(exc), exc
            rec = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= factor * size + slack, (peak, size)
    if rec is not None:
        assert rec.data.ndim == 2 and rec.data.shape[1] == len(rec.channels)
        assert rec.fs > 0 and all(0 <= m[0] < rec.n_samples for m in rec.markers)
    return rec


def mutations(span: int = 10**5, prefix: bytes = b""):
    """A hypothesis strategy of damage to a file: cut, flipped bytes, inserted
    bytes, a header field overwritten, or any bytes at all (after ``prefix``)."""
    from hypothesis import strategies as st

    return st.one_of(
        st.tuples(st.just("cut"), st.integers(0, span)),
        st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, span),
                                                       st.integers(0, 255)), max_size=6)),
        st.tuples(st.just("insert"), st.tuples(st.integers(0, span), st.binary(max_size=40))),
        st.tuples(st.just("field"), st.tuples(st.integers(0, span), st.sampled_from(
            [b"inf", b"-1", b"0", b"nan", b"1e400", b"99999999", b" "]))),
        st.tuples(st.just("any"), st.binary(max_size=400).map(lambda b: prefix + b)),
    )


def mutate(raw: bytes, mutation) -> bytes:
    """``raw`` damaged as one of :func:`mutations` says."""
    out = bytearray(raw)
    kind, arg = mutation
    if kind == "cut":
        return bytes(out[: arg % (len(out) + 1)])
    if kind == "any":
        return arg
    if not out:
        return b""
    if kind == "flip":
        for pos, value in arg:
            out[pos % len(out)] = value
    elif kind == "insert":
        pos = arg[0] % (len(out) + 1)
        out[pos:pos] = arg[1]
    else:
        pos = arg[0] % len(out)
        out[pos : pos + 8] = arg[1].ljust(8)
    return bytes(out)


def assert_same_raw(got, want, n=None):
    """Two MNE Raw objects alike: names, rate, types, date, values, annotations
    (``want`` cut to ``n`` samples)."""
    n = want.n_times if n is None else n
    assert got.ch_names == want.ch_names
    assert got.info["sfreq"] == want.info["sfreq"]
    assert got.get_channel_types() == want.get_channel_types()
    assert got.info["meas_date"] == want.info["meas_date"]
    assert got.n_times == n
    np.testing.assert_allclose(got.get_data(), want.get_data()[:, :n], rtol=1e-6, atol=1e-12)
    assert list(got.annotations.description) == list(want.annotations.description)
    np.testing.assert_allclose(got.annotations.onset, want.annotations.onset, atol=1e-9)
    np.testing.assert_allclose(got.annotations.duration, want.annotations.duration, atol=1e-9)
