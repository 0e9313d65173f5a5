"""Shared helpers of the ampkit.io tests: scripted blocks and what a reader must find."""

from __future__ import annotations

import numpy as np

from ampkit.decorator import Block
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
