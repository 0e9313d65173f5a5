"""LSL input: throughput and latency of ampkit's ``lsl`` driver against its peers.

Run from the project root::

    python benchmarks/bench_lsl.py [--seconds 2] [--rounds 3]

One outlet process pushes 64 channels of float32 as fast as it can; in the
same run, interleaved rounds measure how many samples per second each reader
takes out of it:

(a) a bare pylsl loop, ``inlet.pull_chunk(dest_obj=buffer, min_samples=1)``
    into one preallocated array -- the ceiling: no copy, no timestamps kept,
    no checks. Like the driver it waits (up to 0.1 s) for a first sample and
    then takes what is there: a loop that spins with ``timeout=0`` steals the
    CPU the outlet needs on a small machine and measures less;
(b) ampkit's decorated ``lsl`` driver, ``amp.get_block()`` -- data, the
    stream's timestamps and markers as a :class:`ampkit.block.Block`;
(c) ``mne_lsl.stream.StreamLSL`` with a counting callback, if installed.

Goal: (b) >= 0.9 x (a), and ahead of (c).

On a small, shared machine the live figure is often the outlet's speed, not
the reader's: the outlet and the reader compete for the same cores. So each
round also measures reader capacity alone, for (a) and (b): the reader
subscribes, lets a backlog build up in its inlet (``--backlog`` seconds of the
outlet pushing), then drains it as fast as it can; samples drained divided by
the time to drain (until a pull finds nothing) is the rate it can sustain.

Then a second outlet process pushes 10-sample chunks at 1 kHz (64 channels),
each stamped when pushed, and the push-to-``get_data`` latency of the last
sample of every chunk is measured for (b) and, as the floor, for a bare pylsl
``pull_chunk(min_samples=1)`` loop. Goal: (b) median <= 0.5 ms.

Like every script that touches LSL, this one sets LSLAPICFG to the loopback
configuration in tests/ before pylsl (or mne_lsl) is imported, and the outlet
processes inherit it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["LSLAPICFG"] = str(ROOT / "tests" / "lsl-loopback.cfg")
# No network marker servers needed here (and no clash with other runs on 12344).
os.environ.setdefault("AMPKIT_MARKER_PORT", "off")

import numpy as np  # noqa: E402
import pylsl  # noqa: E402

N_CH = 64
PULL = 4096  # samples per pull for every reader: the same buffer size for all
PUSH = 1024  # samples per push_chunk of the fast outlet
FS_NOMINAL = 1000.0


# -- outlet processes ---------------------------------------------------------


def run_outlet(mode: str, name: str) -> None:
    """The producing side, in its own process (until killed or stdin closes)."""
    info = pylsl.StreamInfo(name, "EEG", N_CH, FS_NOMINAL, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for i in range(N_CH):
        ch = chans.append_child("channel")
        ch.append_child_value("label", f"E{i}")
        ch.append_child_value("unit", "microvolts")
    outlet = pylsl.StreamOutlet(info, 0, 30)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if mode == "fast":
        chunk = np.random.default_rng(0).standard_normal((PUSH, N_CH)).astype(np.float32)
        while True:
            outlet.push_chunk(chunk)
    # paced: 10-sample chunks at 1 kHz; channel 0 counts samples, and the
    # newest sample of each chunk is stamped at the moment of the push.
    chunk = np.zeros((10, N_CH), np.float32)
    k = 0
    t_next = time.perf_counter()
    while True:
        t_next += 0.010
        delay = t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        chunk[:, 0] = np.arange(k, k + 10)
        outlet.push_chunk(chunk, pylsl.local_clock())
        k += 10


def start_outlet(mode: str, name: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--outlet", mode, name],
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
    )
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("outlet process failed to start")
    return proc


def stop_outlet(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


# -- readers ------------------------------------------------------------------


def rate_pylsl(name: str, warmup: float, seconds: float) -> float:
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, 1, 10)[0], recover=False)
    inlet.open_stream(10)
    buf = np.empty((PULL, N_CH), np.float32)
    n = 0
    t_end = time.perf_counter() + warmup
    while time.perf_counter() < t_end:
        inlet.pull_chunk(timeout=0.1, max_samples=PULL, dest_obj=buf, min_samples=1,
                         as_numpy=True)
    t0 = time.perf_counter()
    t_end = t0 + seconds
    while True:
        _, ts = inlet.pull_chunk(timeout=0.1, max_samples=PULL, dest_obj=buf, min_samples=1,
                                 as_numpy=True)
        n += len(ts)
        now = time.perf_counter()
        if now >= t_end:
            break
    inlet.close_stream()
    return n / (now - t0)


def rate_ampkit(name: str, warmup: float, seconds: float) -> float:
    import ampkit

    amp = ampkit.get_amp("lsl", name=name, max_samples=PULL, timeout=10)
    amp.start()
    n = 0
    t_end = time.perf_counter() + warmup
    while time.perf_counter() < t_end:
        amp.get_block()
    t0 = time.perf_counter()
    t_end = t0 + seconds
    while True:
        n += len(amp.get_block())
        now = time.perf_counter()
        if now >= t_end:
            break
    amp.stop()
    amp.close()
    return n / (now - t0)


def drain_pylsl(name: str, backlog: float) -> float:
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, 1, 10)[0], recover=False)
    inlet.open_stream(10)
    buf = np.empty((PULL, N_CH), np.float32)
    time.sleep(backlog)
    n = 0
    t0 = time.perf_counter()
    while True:
        _, ts = inlet.pull_chunk(timeout=0.0, max_samples=PULL, dest_obj=buf, as_numpy=True)
        if not len(ts):
            break
        n += len(ts)
    rate = n / (time.perf_counter() - t0)
    inlet.close_stream()
    return rate


def drain_ampkit(name: str, backlog: float) -> float:
    import ampkit

    amp = ampkit.get_amp("lsl", name=name, max_samples=PULL, timeout=10, wait=0.0)
    amp.start()
    time.sleep(backlog)
    n = 0
    t0 = time.perf_counter()
    while True:
        k = len(amp.get_block())
        if not k:
            break
        n += k
    rate = n / (time.perf_counter() - t0)
    amp.stop()
    amp.close()
    return rate


def rate_mne_lsl(name: str, warmup: float, seconds: float) -> float:
    from mne_lsl.stream import StreamLSL

    counted = [0]

    def count(data, timestamps, info):
        counted[0] += len(timestamps)
        return data, timestamps

    stream = StreamLSL(bufsize=PULL / FS_NOMINAL, name=name)
    stream.connect(acquisition_delay=0.001, timeout=10)
    stream.add_callback(count)
    time.sleep(warmup)
    n0, t0 = counted[0], time.perf_counter()
    time.sleep(seconds)
    n1, t1 = counted[0], time.perf_counter()
    stream.disconnect()
    return (n1 - n0) / (t1 - t0)


def latency_pylsl(name: str, n_chunks: int) -> np.ndarray:
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, 1, 10)[0], recover=False)
    inlet.open_stream(10)
    buf = np.empty((PULL, N_CH), np.float32)
    lat: list[float] = []
    while len(lat) < n_chunks:
        data, ts = inlet.pull_chunk(
            timeout=1.0, max_samples=PULL, dest_obj=buf, min_samples=1, as_numpy=True
        )
        now = pylsl.local_clock()
        last = data[:, 0] % 10 == 9
        lat.extend(now - ts[last])
    inlet.close_stream()
    return np.array(lat)


def latency_ampkit(name: str, n_chunks: int) -> np.ndarray:
    import ampkit
    from ampkit.clock import local_clock

    amp = ampkit.get_amp("lsl", name=name, timeout=10, wait=1.0)
    amp.start()
    lat: list[float] = []
    while len(lat) < n_chunks:
        data, _ = amp.get_data()
        now = local_clock()
        ts = amp.amp.get_timestamps()  # the stamps the decorator used for this block
        last = data[:, 0] % 10 == 9
        lat.extend(now - ts[last])
    amp.stop()
    amp.close()
    return np.array(lat)


# -- main ---------------------------------------------------------------------


A, B = "(a) pylsl pull_chunk(dest_obj)", "(b) ampkit lsl driver"


def report(results: dict[str, list[float]]) -> dict[str, float]:
    """Print each reader's median rate, its ratio to (a) and its rounds; return the medians."""
    med = {k: float(np.median(v)) for k, v in results.items()}
    for key, values in results.items():
        rounds = ", ".join(f"{v / 1e6:.2f}" for v in values)
        print(f"  {key:<32} {med[key] / 1e6:6.2f} M samples/s  ({med[key] / med[A]:5.2f} x a)"
              f"   rounds: {rounds}")
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--chunks", type=int, default=1000, help="chunks for the latency figure")
    parser.add_argument("--backlog", type=float, default=0.3,
                        help="seconds of backlog for the drain figure")
    parser.add_argument("--outlet", nargs=2, metavar=("MODE", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.outlet:
        run_outlet(*args.outlet)
        return

    readers = {A: rate_pylsl, B: rate_ampkit}
    try:
        import mne_lsl  # noqa: F401

        readers["(c) mne_lsl StreamLSL"] = rate_mne_lsl
    except ImportError:
        print("(c) mne_lsl not installed: skipped")

    print(f"liblsl {pylsl.library_version()}, pylsl {pylsl.__version__}, {os.cpu_count()} cpus")
    print(f"throughput: {N_CH} ch float32, outlet pushes {PUSH}-sample chunks as fast as it "
          f"can; readers pull up to {PULL} samples; {args.rounds} rounds x {args.seconds:g} s")
    name = f"bench-fast-{uuid.uuid4().hex[:8]}"
    proc = start_outlet("fast", name)
    rates: dict[str, list[float]] = {k: [] for k in readers}
    drainers = {A: drain_pylsl, B: drain_ampkit}
    drains: dict[str, list[float]] = {k: [] for k in drainers}
    try:
        for r in range(args.rounds):
            order = list(readers)
            order = order[r % len(order):] + order[: r % len(order)]  # rotate who goes first
            for key in order:
                rates[key].append(readers[key](name, 0.5, args.seconds))
            for key in list(drainers)[:: 1 if r % 2 else -1]:
                drains[key].append(drainers[key](name, args.backlog))
    finally:
        stop_outlet(proc)
    med = report(rates)
    b, ceiling = med[B], med[A]
    print(f"  goal (b) >= 0.9 x (a): {'met' if b >= 0.9 * ceiling else 'NOT met'}")
    if "(c) mne_lsl StreamLSL" in med:
        c = med["(c) mne_lsl StreamLSL"]
        print(f"  goal (b) ahead of (c): {'met' if b > c else 'NOT met'} ({b / c:.2f} x c)")
    print(f"reader capacity: draining a backlog of {args.backlog:g} s of the outlet")
    dmed = report(drains)
    print(f"  goal (b) >= 0.9 x (a): {'met' if dmed[B] >= 0.9 * dmed[A] else 'NOT met'}")

    print(f"latency: 10-sample chunks at 1 kHz, {N_CH} ch; push of the chunk's newest sample "
          f"to the return of the read, {args.chunks} chunks")
    name = f"bench-paced-{uuid.uuid4().hex[:8]}"
    proc = start_outlet("paced", name)
    try:
        lat = {
            "(a) pylsl pull_chunk(min_samples=1)": latency_pylsl(name, args.chunks),
            "(b) ampkit lsl get_data()": latency_ampkit(name, args.chunks),
        }
    finally:
        stop_outlet(proc)
    for key, values in lat.items():
        values = values[20:] * 1000.0  # ms, first chunks skipped (connection warm-up)
        print(f"  {key:<36} median {np.median(values):6.3f} ms   p99 "
              f"{np.percentile(values, 99):6.3f} ms   max {values.max():7.3f} ms")
    b_med = float(np.median(lat["(b) ampkit lsl get_data()"][20:] * 1000.0))
    print(f"  goal (b) median <= 0.5 ms: {'met' if b_med <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
