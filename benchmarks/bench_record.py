"""Sustained recording throughput of each format against ``ndarray.tofile``.

For each format, the real recording service (:class:`ampkit.io.Recorder`:
block copy, bounded queue, writer thread, format writer, flushes) is fed
blocks as fast as it accepts them, and timed from the first block until
``close()`` has put every byte into the operating system. The limit is the
same float32 payload written block by block with ``ndarray.tofile`` to the
same directory in the same run. Runs alternate between the contenders and
the median of the repeats is reported, because the machine is shared.

Also reported: the time ``on_block`` (the acquisition thread's share) costs
per MB, and the headroom over a 64-channel 1 kHz amplifier.

    python benchmarks/bench_record.py [--dir DIR] [--mb 96] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ampkit.block import Block
from ampkit.io import Header, Recorder

CHANNELS = 64
FS = 1000.0
BLOCK = 250  # samples per block: 250 ms at 1 kHz, 64 KB


def make_blocks(total_mb: float) -> list[Block]:
    n_blocks = int(total_mb * 1e6 / (BLOCK * CHANNELS * 4))
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal((8, BLOCK, CHANNELS)) * 20).astype(np.float32)
    blocks = []
    for i in range(n_blocks):
        ts = 1000.0 + (i * BLOCK + np.arange(BLOCK)) / FS
        markers = [(float(ts[7]), f"S {i % 10}")] if i % 4 == 0 else []
        blocks.append(Block(pool[i % 8], ts, markers, i * BLOCK))
    return blocks


def run_tofile(path: Path, blocks: list[Block]) -> tuple[float, float]:
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for b in blocks:
            b.data.tofile(fh)
    elapsed = time.perf_counter() - t0
    return elapsed, elapsed


def run_recorder(path: Path, blocks: list[Block]) -> tuple[float, float]:
    header = Header([f"EEG{i:02d}" for i in range(CHANNELS)], FS, [], "bench")
    rec = Recorder(header, path)
    t0 = time.perf_counter()
    for b in blocks:
        rec.on_block(b)
    t_fed = time.perf_counter() - t0
    rec.close()
    return time.perf_counter() - t0, t_fed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="directory on the disk to test (default: a temp dir here)")
    parser.add_argument("--mb", type=float, default=96.0, help="payload per run in MB")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ampkit-bench-",
                                                                 dir=os.getcwd()))
    base.mkdir(parents=True, exist_ok=True)
    blocks = make_blocks(args.mb)
    payload = sum(b.data.nbytes for b in blocks)
    values = payload / 4
    contenders = {
        "ndarray.tofile (limit)": ("raw.f32", run_tofile),
        "five-file (default)": ("rec", run_recorder),
        "BDF+ (.bdf)": ("rec.bdf", run_recorder),
        "XDF (.xdf)": ("rec.xdf", run_recorder),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    feed: dict[str, list[float]] = {k: [] for k in contenders}
    try:
        for name, (fname, fn) in contenders.items():  # warm-up: page cache, threads
            warm = base / f"warm-{abs(hash(name))}"
            warm.mkdir()
            fn(warm / fname, blocks[: max(1, len(blocks) // 4)])
            shutil.rmtree(warm)
        for r in range(args.repeats):
            for name, (fname, fn) in contenders.items():
                run_dir = base / f"{r}-{len(times[name])}-{abs(hash(name))}"
                run_dir.mkdir()
                elapsed, fed = fn(run_dir / fname, blocks)
                times[name].append(elapsed)
                feed[name].append(fed)
                shutil.rmtree(run_dir)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)

    print(f"payload {payload / 1e6:.1f} MB per run: {CHANNELS} channels x "
          f"{int(values / CHANNELS)} samples float32 in {len(blocks)} blocks of {BLOCK}; "
          f"median of {args.repeats} runs; disk: {base}")
    limit = statistics.median(times["ndarray.tofile (limit)"])
    amp_rate = CHANNELS * FS * 4 / 1e6
    print(f"{'format':<24} {'MB/s':>9} {'Mvalues/s':>10} {'x limit':>8} "
          f"{'on_block ms/MB':>15} {'x 64ch@1kHz':>12}")
    for name in contenders:
        t = statistics.median(times[name])
        mbs = payload / 1e6 / t
        fed = statistics.median(feed[name]) * 1e3 / (payload / 1e6)
        fed_text = "-" if name.startswith("ndarray") else f"{fed:.2f}"
        print(f"{name:<24} {mbs:9.1f} {values / t / 1e6:10.1f} {limit / t:8.2f} "
              f"{fed_text:>15} {mbs / amp_rate:12.0f}")
    print("goal: five-file >= 0.80 x limit")


if __name__ == "__main__":
    main()
