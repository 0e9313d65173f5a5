"""Writer and reader processes for the shared-stream tests.

Run as ``python shared_procs.py ROLE NAME [options]``; each role prints one
line of JSON when it is done (readers) or ``ready`` once it writes (writers).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("AMPKIT_MARKER_PORT", "off")

import ampkit  # noqa: E402
from ampkit.errors import ConnectionLostError, StreamEndedError  # noqa: E402
from ampkit.shared import SharedWriter  # noqa: E402

HERE = Path(__file__).resolve()
N_COLS = 8  # hammer rows: index, 6 random integers, their sum


def script(role: str, name: str, *args: str) -> list[str]:
    """The command line of a role."""
    return [sys.executable, str(HERE), role, name, *args]


def hammer_rows(first: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows whose last column is the sum of the others and whose first is their index."""
    rows = np.empty((n, N_COLS), dtype=np.float64)
    rows[:, 0] = np.arange(first, first + n)
    rows[:, 1:-1] = rng.integers(0, 1 << 20, size=(n, N_COLS - 2))
    rows[:, -1] = rows[:, :-1].sum(axis=1)
    return rows


def check_rows(rows: np.ndarray, times: np.ndarray, first: int) -> int:
    """Rows that are torn, of another sample, or out of place (0 if all good)."""
    idx = np.arange(first, first + len(rows))
    bad = (rows[:, -1] != rows[:, :-1].sum(axis=1)) | (rows[:, 0] != idx) | (times != idx)
    return int(bad.sum())


def amp_writer(args: argparse.Namespace) -> None:
    """A decorated random amp: shared, recorded, markers; runs for --duration."""
    amp = ampkit.get_amp("random", fs=args.fs, channels=args.channels)
    options = {"share": args.name, "share_seconds": args.seconds}
    if args.record:
        options["filename"] = args.record
    amp.start(**options)
    print("ready", flush=True)
    end = time.monotonic() + args.duration
    k = 0
    while time.monotonic() < end:
        amp.get_data()
        k += 1
        if k % 7 == 0:
            amp.add_marker(f"m{k}")
    amp.stop()
    amp.close()


def hammer(args: argparse.Namespace) -> None:
    """A bare writer writing blocks of 1..5 checksummed rows as fast as it can
    into a small ring, until --duration or SIGTERM."""
    rng = np.random.default_rng(1)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with SharedWriter(args.name, [f"c{i}" for i in range(N_COLS)], 1000.0,
                      seconds=args.seconds, dtype=np.float64) as w:
        print("ready", flush=True)
        end = time.monotonic() + args.duration
        while not stop and time.monotonic() < end:
            n = int(rng.integers(1, 6))
            rows = hammer_rows(w.n_written, n, rng)
            w.write(rows, rows[:, 0].copy(), [(float(rows[0, 0]), f"k{int(rows[0, 0])}")])


def paced(args: argparse.Namespace) -> None:
    """A bare writer: one 10-row block every 10 ms, until killed (SIGTERM: it
    closes the stream)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with SharedWriter(args.name, ["a", "b"], 1000.0, seconds=args.seconds) as w:
        print("ready", flush=True)
        while True:
            n = w.n_written
            w.write(np.zeros((10, 2), np.float32) + n, np.arange(n, n + 10) / 1000.0)
            time.sleep(0.01)


def reader(args: argparse.Namespace) -> None:
    """Read every sample by index from 0 (wait/get_data) until the writer stops."""
    r = ampkit.attach(args.name, timeout=20)
    chunks, stamps = [], []
    i = 0
    try:
        while True:
            if r.wait(i, i + 1, timeout=5) is None:
                break
            last = r.last_sample
            data = r.get_data(i, last, copy=True)
            times = r.get_timestamps(i, last, copy=True)
            if data is None or times is None:
                print(json.dumps({"error": f"samples {i}..{last} overwritten"}), flush=True)
                return
            chunks.append(data)
            stamps.append(times)
            i = last
    except StreamEndedError:
        pass
    markers = r.get_markers_in(0, i)
    np.savez(args.out, data=np.concatenate(chunks), times=np.concatenate(stamps),
             marker_index=np.array([m[0] for m in markers], dtype=np.int64),
             marker_text=np.array([m[2] for m in markers]))
    print(json.dumps({"samples": i}), flush=True)


def checker(args: argparse.Namespace) -> None:
    """Read a hammer writer every way there is, checking every row, until it stops."""
    r = ampkit.attach(args.name, timeout=20)
    rng = np.random.default_rng(os.getpid())
    bad = checked = none = 0
    try:
        while True:
            way = rng.integers(0, 3)
            if way == 0:
                r.update()
                if len(r.times):
                    bad += check_rows(r.samples, r.times, int(r.times[0]))
                    checked += len(r.times)
            else:
                last = r.last_sample
                n = int(rng.integers(1, r.buffer_size + 1))
                start = max(0, last - n) if way == 1 else max(0, last - r.buffer_size)
                data = r.get_data(start, last, copy=True)
                times = r.get_timestamps(start, last, copy=True)
                if data is None or times is None:
                    none += 1
                else:
                    bad += check_rows(data, times, start)
                    checked += len(times)
            if rng.random() < 0.01:
                time.sleep(0.002)  # fall behind now and then
    except StreamEndedError:
        pass
    for index, t, text in r.get_markers_in(0, r.last_sample):
        if text != f"k{index}" or t != index:
            bad += 1
    print(json.dumps({"bad": bad, "checked": checked, "none": none,
                      "overrun": r.n_overrun}), flush=True)


def lost(args: argparse.Namespace) -> None:
    """Wait on a paced writer until it is lost; print how long after the
    last sample that was noticed."""
    r = ampkit.attach(args.name, timeout=20)
    print("attached", flush=True)
    try:
        while True:
            r.wait(r.last_sample, r.last_sample + 1, timeout=10)
    except ConnectionLostError as exc:
        print(json.dumps({"lost_at": time.monotonic(), "error": str(exc)}), flush=True)


def sleeper(args: argparse.Namespace) -> None:
    """Attach, then wait once for the next sample (up to --duration s);
    print whether it came, or how the stream ended."""
    r = ampkit.attach(args.name, timeout=20)
    print("attached", flush=True)
    last = r.last_sample
    try:
        got = r.wait(last, last + 1, timeout=args.duration)
    except StreamEndedError as exc:
        print(json.dumps({"ended": str(exc)}), flush=True)
        return
    print(json.dumps({"got": None if got is None else got.tolist(), "index": last}),
          flush=True)


def attach_and_exit(args: argparse.Namespace) -> None:
    """Attach, read a little, exit normally."""
    r = ampkit.attach(args.name, timeout=20)
    r.update()
    print(json.dumps({"last_sample": r.last_sample}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role")
    parser.add_argument("name")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--fs", type=float, default=1000.0)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--record")
    parser.add_argument("--out")
    args = parser.parse_args()
    roles = {"amp-writer": amp_writer, "hammer": hammer, "paced": paced, "reader": reader,
             "checker": checker, "lost": lost, "sleeper": sleeper,
             "attach-and-exit": attach_and_exit}
    roles[args.role](args)


if __name__ == "__main__":
    main()
