"""Ring buffer speed: ampkit's RingBuffer beside dareplane-utils' and an np.roll buffer.

The shape of a typical closed-loop consumer: 64 channels at 1 kHz arriving in
chunks of 10 samples, kept in a 5 s or a 60 s buffer, and the newest 1 s
(1000 rows) read back. All peers run in the same process, in the same run:

* ``ampkit``: :class:`ampkit.buffer.RingBuffer`, read with ``get_last(1000)``
  (a view when the newest rows do not wrap, a copy when they do);
* ``ampkit view_rows=1s``: the same with ``view_rows=1000``, so every read of
  up to 1 s is a view, at the cost of a second write for chunks landing in
  the first 1000 rows;
* ``dareplane-utils``: ``dareplane_utils.general.ringbuffer.RingBuffer``,
  read with ``unfold_buffer()[-1000:]`` (how dareplane modules read);
* ``np.roll``: the layout MNE-LSL's ``StreamLSL`` uses -- ``np.roll`` the data
  and timestamp arrays by the chunk length, write the chunk at the end; read
  with ``buffer[-1000:]`` (a view; MNE-LSL's ``get_data`` then copies through
  its channel picks, which is not counted here).

``limit: 2 slice writes`` is the floor for a ring written by numpy slice
assignment: the two writes (data, timestamps) with no bookkeeping at all.

``add`` is one ``add_samples(chunk, times)`` (data and timestamps), averaged
over a sweep of the whole ring, after one untimed warm-up sweep (the steady
state: no first-touch page faults). ``read`` is one read of the newest
1000 rows of data, timed call by call at every position a 10-sample chunk
leaves the write index at (so the share of wrapped reads is the real one),
minus the timer's own cost; ``wrapped`` is the mean over only the positions
where the newest 1000 rows wrap (ampkit's worst case). Rounds interleave the
peers; every block of 50 adds and every read position keeps its best of
``--repeats`` rounds. Read the ratios: the machine is shared.

Then ``StreamWatcher.update()`` of ampkit and of dareplane-utils on the same
real LSL outlet (loopback only): the median time of an update that finds a
10-sample chunk of 64 channels waiting, and of one that finds nothing.

Goals (issue 5): add under 1 us and at least 1.5x faster than dareplane-utils;
reading the newest 1 s at least 10x faster than dareplane-utils'
``unfold_buffer()[-n:]`` and independent of the buffer length.

Run: ``python benchmarks/bench_buffer.py [--repeats 5] [--updates 400]``
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

# liblsl must stay on this machine's loopback; set before pylsl is imported.
os.environ["LSLAPICFG"] = str(Path(__file__).resolve().parents[1] / "tests" / "lsl-loopback.cfg")

N_CH = 64
FS = 1000
CHUNK = 10
WINDOW = FS  # the newest 1 s


class RollBuffer:
    """MNE-LSL's buffer update: roll by the chunk length, write at the end."""

    def __init__(self, rows: int, n_ch: int) -> None:
        self.buffer = np.zeros((rows, n_ch), dtype=np.float32)
        self.timestamps = np.zeros(rows, dtype=np.float64)

    def add_samples(self, samples: np.ndarray, times: np.ndarray) -> None:
        n = times.size
        self.buffer = np.roll(self.buffer, -n, axis=0)
        self.timestamps = np.roll(self.timestamps, -n, axis=0)
        self.buffer[-n:, :] = samples
        self.timestamps[-n:] = times


class SliceWrites:
    """The limit: the two slice writes any numpy ring must make, no bookkeeping."""

    def __init__(self, rows: int, n_ch: int) -> None:
        self.buffer = np.zeros((rows, n_ch), dtype=np.float32)
        self.buffer_t = np.zeros(rows, dtype=np.float64)
        self.rows = rows
        self.i = 0

    def add_samples(self, samples: np.ndarray, times: np.ndarray) -> None:
        i = self.i if self.i + CHUNK <= self.rows else 0
        self.buffer[i : i + CHUNK] = samples
        self.buffer_t[i : i + CHUNK] = times
        self.i = i + CHUNK


LIMIT = "limit: 2 slice writes"
ROLL = "np.roll (MNE-LSL)"
DAREPLANE = "dareplane-utils"
AMPKIT = "ampkit"
MIRRORED = "ampkit view_rows=1s"


def make_peers(rows: int) -> dict[str, tuple[object, object]]:
    """name -> (buffer, read-the-newest-1-s function or None)."""
    from ampkit.buffer import RingBuffer

    DareplaneRingBuffer, _ = import_dareplane()

    plain = RingBuffer((rows, N_CH))
    mirrored = RingBuffer((rows, N_CH), view_rows=WINDOW)
    theirs = DareplaneRingBuffer((rows, N_CH))
    roll = RollBuffer(rows, N_CH)
    return {
        LIMIT: (SliceWrites(rows, N_CH), None),
        AMPKIT: (plain, lambda: plain.get_last(WINDOW)),
        MIRRORED: (mirrored, lambda: mirrored.get_last(WINDOW)),
        DAREPLANE: (theirs, lambda: theirs.unfold_buffer()[-WINDOW:]),
        ROLL: (roll, lambda: roll.buffer[-WINDOW:]),
    }


def sweep_adds(
    buf: object, chunks: list[tuple[np.ndarray, np.ndarray]], block: int = 50
) -> np.ndarray:
    """Mean seconds per add_samples, for each block of ``block`` chunks in turn."""
    add = buf.add_samples  # type: ignore[attr-defined]
    clock = time.perf_counter
    out = []
    for start in range(0, len(chunks), block):
        part = chunks[start : start + block]
        t0 = clock()
        for data, times in part:
            add(data, times)
        out.append((clock() - t0) / len(part))
    return np.array(out)


def timer_cost() -> float:
    """Median cost of one ``perf_counter_ns`` pair, subtracted from single-call timings."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(20000):
        t0 = clock()
        samples.append(clock() - t0)
    return float(np.median(samples)) * 1e-9


def batch_reads(read: object, number: int) -> float:
    """Mean seconds per call of ``read()`` over ``number`` calls in a row."""
    t0 = time.perf_counter()
    for _ in range(number):
        read()  # type: ignore[operator]
    return (time.perf_counter() - t0) / number


def sweep_reads(
    buf: object, read: object, chunks: list[tuple[np.ndarray, np.ndarray]], overhead: float
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per read of the newest rows after each chunk, and whether it wrapped.

    The buffer is advanced chunk by chunk through the ring; the read after
    every chunk is timed on its own.
    """
    clock = time.perf_counter_ns
    add = buf.add_samples  # type: ignore[attr-defined]
    costs = np.empty(len(chunks))
    wrapped = np.zeros(len(chunks), dtype=bool)
    for k, (data, times) in enumerate(chunks):
        add(data, times)
        t0 = clock()
        read()  # type: ignore[operator]
        costs[k] = clock() - t0
        wrapped[k] = 0 < buf.curr_i < WINDOW  # type: ignore[attr-defined]
    return costs * 1e-9 - overhead, wrapped


def import_dareplane() -> tuple[type, type]:
    """dareplane-utils' RingBuffer and StreamWatcher, without its logging setup.

    Importing dareplane_utils reconfigures the root logger (a socket handler
    to 127.0.0.1:9020, every existing logger disabled); undo that here.
    """
    root = logging.getLogger()
    handlers = list(root.handlers)
    from dareplane_utils.general.ringbuffer import RingBuffer
    from dareplane_utils.stream_watcher.lsl_stream_watcher import StreamWatcher

    root.handlers[:] = handlers
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            logger.disabled = False
            if name.startswith("dareplane_utils"):
                logger.handlers = []
    logging.getLogger("dareplane_utils").setLevel(logging.ERROR)
    return RingBuffer, StreamWatcher


def bench_watchers(updates: int) -> dict[str, tuple[float, float]]:
    """Median seconds per ``update()`` of ampkit's and dareplane's StreamWatcher.

    Both watch the same 64-channel float32 outlet at 1 kHz nominal; a
    10-sample chunk is pushed, then each watcher's ``update()`` is timed
    with the chunk waiting and once more with nothing waiting. The order
    alternates; the first ``update()`` after the pause pays for a cold CPU,
    so both positions are reported by their median over both.
    """
    import pylsl

    from ampkit.buffer import StreamWatcher

    _, DareplaneStreamWatcher = import_dareplane()
    name = f"bench-buffer-{uuid.uuid4().hex}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", N_CH, FS, "float32", name))
    ours = StreamWatcher(name, buffer_size_s=5)
    ours.connect_to_stream(timeout=10)
    theirs = DareplaneStreamWatcher(name, buffer_size_s=5)
    theirs.connect_to_stream()
    theirs.inlet.open_stream(10)
    chunk = np.random.default_rng(1).standard_normal((CHUNK, N_CH)).astype(np.float32)
    times: dict[str, tuple[list[float], list[float]]] = {"ampkit": ([], []), DAREPLANE: ([], [])}
    clock = time.perf_counter
    for k in range(updates):
        outlet.push_chunk(chunk)
        time.sleep(0.003)
        order = [("ampkit", ours), (DAREPLANE, theirs)]
        for label, watcher in order if k % 2 else order[::-1]:
            before = watcher.n_new
            t0 = clock()
            watcher.update()
            full = clock() - t0
            t0 = clock()
            watcher.update()
            empty = clock() - t0
            if watcher.n_new - before == CHUNK:  # the whole chunk had arrived
                times[label][0].append(full)
                times[label][1].append(empty)
    ours.disconnect()
    theirs.disconnect()
    return {label: (float(np.median(f)), float(np.median(e))) for label, (f, e) in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds per figure (best is kept)")
    parser.add_argument(
        "--updates", type=int, default=400, help="StreamWatcher.update() rounds (0: skip)"
    )
    args = parser.parse_args(argv)
    import dareplane_utils

    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"dareplane-utils {getattr(dareplane_utils, '__version__', '?')}"
    )
    print(f"{N_CH} channels x {FS} Hz, chunks of {CHUNK} samples, read the newest {WINDOW} rows")
    overhead = timer_cost()
    rng = np.random.default_rng(0)
    results: dict[tuple[int, str], list[float]] = {}
    gc.disable()
    try:
        for seconds in (5, 60):
            rows = seconds * FS
            # chunks come from a small pool, as from a reused receive buffer;
            # one sweep is exactly one turn of the ring, so every round sees
            # the same positions in the same order
            pool = [rng.standard_normal((CHUNK, N_CH), dtype=np.float32) for _ in range(16)]
            chunks = [
                (pool[k % len(pool)], np.arange(k * CHUNK, (k + 1) * CHUNK) / FS)
                for k in range(rows // CHUNK)
            ]
            peers = make_peers(rows)
            adds: dict[str, np.ndarray] = {}
            reads: dict[str, np.ndarray] = {}
            wrapped: dict[str, np.ndarray] = {}
            for name, (buf, _) in peers.items():  # warm-up: first writes to fresh pages fault
                sweep_adds(buf, chunks if name != ROLL else chunks[:20])
            # Rounds interleave the peers in a rotating order, so that load
            # spikes and cold caches hit them alike; each block of adds and
            # each read position keeps its best round, which drops the moments
            # this process was not running.
            names = list(peers)
            for r in range(args.repeats):
                # rotate who goes first: the peer after np.roll finds a cold cache
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    buf, read = peers[name]
                    # each np.roll moves the whole buffer: time a slice of the sweep
                    t = sweep_adds(buf, chunks if name != ROLL else chunks[:50])
                    adds[name] = np.minimum(adds.get(name, t), t)
                    if read is None:
                        continue
                    if name in (AMPKIT, MIRRORED):
                        t, wrapped[name] = sweep_reads(buf, read, chunks, overhead)
                    else:  # these peers cost the same at every position
                        t = np.array([batch_reads(read, 20 if seconds > 5 else 100)])
                    reads[name] = np.minimum(reads.get(name, t), t)
            print(f"\n{seconds} s buffer ({rows} rows)")
            print(f"  {'':22s} {'add (us)':>10s} {'read 1 s (us)':>14s} {'wrapped (us)':>13s}")
            for name in peers:
                add = float(np.mean(adds[name]))
                if name not in reads:
                    read_mean = read_wrapped = float("nan")
                    read_text, wrapped_text = "-", "-"
                elif name in wrapped:
                    read_mean = float(np.mean(reads[name]))
                    read_wrapped = float(np.mean(reads[name][wrapped[name]]))
                    read_text, wrapped_text = f"{read_mean * 1e6:.3f}", f"{read_wrapped * 1e6:.3f}"
                else:
                    read_mean = read_wrapped = float(reads[name][0])
                    read_text, wrapped_text = f"{read_mean * 1e6:.3f}", "(same)"
                results[seconds, name] = [add, read_mean, read_wrapped]
                print(f"  {name:22s} {add * 1e6:10.3f} {read_text:>14s} {wrapped_text:>13s}")
    finally:
        gc.enable()

    print("\nratios (dareplane-utils time / ampkit time; higher is better for ampkit)")
    for seconds in (5, 60):
        theirs = results[seconds, DAREPLANE]
        limit = results[seconds, LIMIT][0]
        for name in (AMPKIT, MIRRORED):
            ours = results[seconds, name]
            print(
                f"  {seconds:2d} s {name:20s} add {theirs[0] / ours[0]:5.2f}x "
                f"(limit +{(ours[0] - limit) * 1e6:.2f} us)   read {theirs[1] / ours[1]:7.1f}x"
                f"   read at the worst position {theirs[1] / max(ours[1:]):7.1f}x"
            )
    for name in (AMPKIT, MIRRORED):
        a5, a60 = results[5, name], results[60, name]
        print(
            f"  {name}: worst-position read, 60 s / 5 s buffer = "
            f"{max(a60[1:]) / max(a5[1:]):.2f} (1.0 = independent of length)"
        )

    if args.updates:
        watchers = bench_watchers(args.updates)
        print(
            f"\nStreamWatcher.update(), {N_CH} ch float32 LSL outlet, {CHUNK}-sample chunks "
            f"(median over up to {args.updates} rounds)"
        )
        print(f"  {'':22s} {'chunk waiting (us)':>19s} {'nothing waiting (us)':>21s}")
        for label, (full, empty) in watchers.items():
            print(f"  {label:22s} {full * 1e6:19.1f} {empty * 1e6:21.1f}")

    print("\ngoals")
    ok = True
    for seconds in (5, 60):
        ours, theirs = results[seconds, AMPKIT], results[seconds, DAREPLANE]
        checks = [
            (
                f"{seconds} s: ampkit add < 1 us (here: {ours[0] * 1e6:.2f} us; two bare slice "
                f"writes alone: {results[seconds, LIMIT][0] * 1e6:.2f} us)",
                ours[0] < 1e-6,
            ),
            (
                f"{seconds} s: ampkit add >= 1.5x faster than dareplane-utils",
                theirs[0] / ours[0] >= 1.5,
            ),
            (
                f"{seconds} s: ampkit read of 1 s (mean over positions) >= 10x faster",
                theirs[1] / ours[1] >= 10,
            ),
            (
                f"{seconds} s: ampkit view_rows=1s read of 1 s at every position >= 10x faster",
                theirs[1] / max(results[seconds, MIRRORED][1:]) >= 10,
            ),
        ]
        for text, passed in checks:
            ok &= passed
            print(f"  {'met ' if passed else 'MISS'} {text}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
