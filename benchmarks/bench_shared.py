"""Shared streams against LSL: latency to another process, CPU per reader, writer cost.

Run from the project root::

    python benchmarks/bench_shared.py [--seconds 3] [--readers 1 4 8]

A writer process runs a decorated amp (a benchmark driver that hands over one
block every 10 ms, stamped on its schedule as a device clock would, and that
writes the moment it hands the block to the decorator into channel 1) with
``start(share=...)`` -- or, in the same run, ``start(lsl=...)``. N reader
processes (1, 4, 8) read it:

* shared memory: ``ampkit.attach`` and a loop of ``wait(i, i + 1)`` (the
  reader's default wait: asleep in FUTEX_WAIT until the writer's commit wakes
  it) then a copy of the new samples (``get_data(..., copy=True)``);
* LSL: a pylsl inlet on the amp's outlet, ``pull_chunk(timeout=1,
  min_samples=1, dest_obj=...)`` -- liblsl wakes it when a sample arrives
  (the lowest-latency, least-CPU way to read an inlet).

Figures, for 64 ch x 1 kHz and 256 ch x 25 kHz:

* latency: when a reader has a block's last sample, minus when the block
  entered the decorator (channel 1), over every block every reader saw
  (median, p99); and its two parts, block by block, each a median:
  (a) in the writer, from the block entering the decorator to its commit
  (for shared memory the store of the ``written`` counter, before the
  wake-up call; for LSL the push returning), of which "decor" is the
  decorator's own part (up to the block reaching the service); (b) from the
  commit to a reader having it (median and p99 over blocks and readers);
* "warm (a)": the writer's part again for 200 blocks handed over back to
  back after the span (no sleep before each block, no reader): what the
  same code costs while the caches are warm;
* CPU per reader: process CPU time (all threads, liblsl's included) per
  second of wall time, mean over the readers, in % of one core. A reader
  notes each block it sees with a few scalar reads and works out latencies
  after the span, so the figure is the reading, not the benchmark's
  arithmetic (numpy on every block had added about 1 point to both sides);
* writer CPU: the writer process's CPU per second, for each N: shared memory
  should not grow with N (LSL serialises and sends once per inlet).

Goals: shared median <= 0.05 ms and <= 1/5 of LSL's; CPU per reader <= 1/2
of an LSL inlet's; writer cost independent of N.

The machine this was written on has two cores, shared with other work: with
8 readers (+ the writer) the processes queue for a core, and the latency
then measures the scheduler as much as the transport. Read the ratios.

LSLAPICFG is set to tests/lsl-loopback.cfg before pylsl is imported, here
and in every child process (they inherit the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["LSLAPICFG"] = str(ROOT / "tests" / "lsl-loopback.cfg")
os.environ["AMPKIT_MARKER_PORT"] = "off"

import numpy as np  # noqa: E402

from ampkit.amplifier import Amplifier  # noqa: E402
from ampkit.clock import local_clock  # noqa: E402
from ampkit.decorator import AmpDecorator  # noqa: E402
from ampkit.lsl import LSLPublisher  # noqa: E402
from ampkit.shared import SharedService  # noqa: E402

BLOCK_S = 0.010  # one block every 10 ms
CONFIGS = {"64ch-1kHz": (64, 1000.0), "256ch-25kHz": (256, 25000.0)}
PULL = 8192  # LSL: most samples per pull
WRAP = 2**24  # channel 1: µs modulo this


def micros(t: float) -> float:
    """``t`` (seconds) in µs modulo WRAP: what channel 1 holds."""
    return float(round(t * 1e6) % WRAP)


def latency(seen: float, entered: float) -> float:
    """Seconds from the moment in channel 1 (``entered``) to ``seen``."""
    return ((micros(seen) - entered) % WRAP) / 1e6


class BenchAmp(Amplifier):
    """Blocks of ``BLOCK_S`` seconds on an absolute schedule, stamped on it
    (as a device clock would stamp them). Channel 0 holds each sample's
    index, channel 1 the moment the block is handed to the decorator, in µs
    modulo 2**24 (float32 holds that exactly): a reader in another process
    subtracts it from its own clock."""

    def __init__(self, n_ch: int, fs: float) -> None:
        self.n_ch, self.fs = n_ch, fs
        self.rows = round(fs * BLOCK_S)
        self.block = np.random.default_rng(0).standard_normal((self.rows, n_ch)).astype(
            np.float32)
        self.offsets = (np.arange(self.rows) - (self.rows - 1)) / fs
        self.n = 0
        self.due = 0.0
        self.stamps = None
        self.entered = 0.0
        self.paced = True

    def configure(self, **kwargs):
        pass

    def start(self):
        self.n = 0
        self.due = local_clock()

    def stop(self):
        pass

    def get_data(self):
        self.due += BLOCK_S
        wait = self.due - local_clock()
        if wait > 0 and self.paced:
            time.sleep(wait)
        self.block[:, 0] = np.arange(self.n, self.n + self.rows)
        self.n += self.rows
        self.stamps = self.due + self.offsets
        self.entered = local_clock()
        self.block[:, 1] = micros(self.entered)
        return self.block, []

    def get_timestamps(self):
        return self.stamps

    def get_channels(self):
        return [f"c{i}" for i in range(self.n_ch)]

    def get_sampling_frequency(self):
        return self.fs

    @staticmethod
    def is_available():
        return True


# -- processes ------------------------------------------------------------------

def instrument(amp: AmpDecorator, mode: str, marks: dict[str, float]) -> None:
    """Note when a block reaches the shared/LSL service ("service") and when it
    is committed there ("commit"): for shared memory the moment ``written``
    is stored (readers may see the block from then on), before the wake-up;
    for LSL when the push returns."""
    for service in amp.services:
        if isinstance(service, SharedService if mode == "shm" else LSLPublisher):
            break
    else:
        raise RuntimeError(f"no {mode} service on {amp.services}")
    on_block = service.on_block

    def timed_on_block(block):
        marks["service"] = local_clock()
        on_block(block)
        if mode == "lsl":
            marks["commit"] = local_clock()

    service.on_block = timed_on_block
    if mode == "shm":
        signal = service.writer._signal
        committed = signal.committed

        def timed_committed():
            marks["commit"] = local_clock()
            committed()

        signal.committed = timed_committed


def run_writer(a: argparse.Namespace) -> None:
    n_ch, fs = CONFIGS[a.config]
    amp = AmpDecorator(BenchAmp(n_ch, fs), name="bench")
    options = {"share": a.name, "share_seconds": 2.0} if a.mode == "shm" else {"lsl": a.name}
    amp.start(marker_port=None, **options)
    marks: dict[str, float] = {}
    instrument(amp, a.mode, marks)
    print("ready", flush=True)
    a.t_start, a.t_end = map(float, sys.stdin.readline().split())
    amp.amp.due = local_clock()  # the schedule starts now, not with a burst to catch up
    cpu0: tuple[float, float] | None = None
    cpu1: tuple[float, float] | None = None
    # per block in the span: its last sample's index, when it entered the
    # decorator, reached the service, was committed
    blocks: list[tuple[int, float, float, float]] = []
    while True:
        amp.get_data()
        now = local_clock()
        if cpu0 is None and now >= a.t_start:
            cpu0 = (time.process_time(), now)
        elif cpu0 is not None and cpu1 is None:
            blocks.append((amp.amp.n - 1, amp.amp.entered, marks["service"], marks["commit"]))
        if now >= a.t_end and cpu1 is None:
            cpu1 = (time.process_time(), now)
        if now >= a.t_end + 0.5:  # readers stop at t_end; none waits for a block in vain
            break
    # The same path back to back (no sleep before each block; readers gone):
    # what the writer's part costs with warm caches.
    amp.amp.paced = False
    warm = []
    for _ in range(200):
        amp.get_data()
        warm.append((amp.amp.entered, marks["service"], marks["commit"]))
    amp.stop()
    amp.close()
    print(json.dumps({"cpu": (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]),
                      "blocks": blocks, "warm": warm[50:]}), flush=True)


def run_reader(a: argparse.Namespace) -> None:
    n_ch, fs = CONFIGS[a.config]
    rows = round(fs * BLOCK_S)
    # per block end seen: its index, channel 1 (when it entered the decorator),
    # when this reader had it -- noted with a few scalar reads per block (the
    # arithmetic is done after the span, so the CPU measured is the reader's)
    ends: list[tuple[int, float, float]] = []

    def note_ends(data: np.ndarray, seen: float) -> None:
        k = (rows - 1 - int(data[0, 0])) % rows
        while k < len(data):
            ends.append((int(data[k, 0]), float(data[k, 1]), seen))
            k += rows

    cpu0 = None
    if a.mode == "shm":
        import ampkit

        r = ampkit.attach(a.name, timeout=10)
        print("ready", flush=True)
        a.t_start, a.t_end = map(float, sys.stdin.readline().split())
        i = r.last_sample
        while True:
            got = r.wait(i, i + 1, timeout=1.0)
            seen = local_clock()
            if seen >= a.t_end:
                break
            if got is None:  # overwritten before this reader looked (or the wait timed out)
                i = max(i, r.last_sample - 1)
                continue
            last = r.last_sample
            data = r.get_data(i, last, copy=True)
            times = r.get_timestamps(i, last, copy=True)
            i = last
            if data is None or times is None:
                continue  # overrun (the writer lapped this reader)
            if cpu0 is None and seen >= a.t_start:
                cpu0 = (time.process_time(), seen)
            elif cpu0 is not None:
                note_ends(data, seen)
        r.close()
    else:
        import pylsl

        info = pylsl.resolve_byprop("name", a.name, 1, 10.0)[0]
        inlet = pylsl.StreamInlet(info, max_buflen=2)
        inlet.open_stream(10.0)
        print("ready", flush=True)
        a.t_start, a.t_end = map(float, sys.stdin.readline().split())
        buf = np.empty((PULL, n_ch), dtype=np.float32)
        while True:
            _, ts = inlet.pull_chunk(timeout=1.0, max_samples=PULL, dest_obj=buf,
                                     min_samples=1, as_numpy=True)
            seen = local_clock()
            if seen >= a.t_end:
                break
            if not len(ts):
                continue
            if cpu0 is None and seen >= a.t_start:
                cpu0 = (time.process_time(), seen)
            elif cpu0 is not None:
                note_ends(buf[: len(ts)], seen)
        inlet.close_stream()
    # None: no block came in the whole span (the writer starved)
    cpu = None if cpu0 is None else (time.process_time() - cpu0[0]) / (local_clock() - cpu0[1])
    latencies = [latency(seen, entered) for _, entered, seen in ends]
    seen_at = [(i, seen) for i, _, seen in ends]
    print(json.dumps({"cpu": cpu, "latencies": latencies, "seen": seen_at}), flush=True)


# -- the run --------------------------------------------------------------------

def child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if line.strip() != "ready":
        raise RuntimeError(f"child failed: {line} {proc.stderr.read()}")  # type: ignore[union-attr]


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    if proc.returncode:
        raise RuntimeError(f"child failed: {err}")
    return json.loads(out.strip().splitlines()[-1])


def measure(config: str, mode: str, n_readers: int, seconds: float) -> dict:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    common = ["--config", config, "--mode", mode, "--name", name]
    writer = child("writer", *common)
    ready(writer)
    readers = [child("reader", *common) for _ in range(n_readers)]
    for r in readers:
        ready(r)
    # Everybody measures over the same span of the shared clock, once all are up.
    t_start = local_clock() + 1.0
    for proc in (writer, *readers):
        proc.stdin.write(f"{t_start!r} {t_start + seconds!r}\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    outs = [result(r) for r in readers]
    w = result(writer)
    lat = np.array([x for o in outs for x in o["latencies"]] or [np.nan]) * 1e3
    cpus = [o["cpu"] for o in outs if o["cpu"] is not None] or [np.nan]
    # The two parts, block by block: in the writer (entered -> committed),
    # and from the commit to a reader having it (over every reader).
    blocks = {i: (entered, service, commit) for i, entered, service, commit in w["blocks"]}
    to_reader = [seen - blocks[i][2] for o in outs for i, seen in o["seen"] if i in blocks]
    parts = np.array([b for b in blocks.values()])
    warm = np.array(w["warm"])
    return {"median_ms": float(np.median(lat)), "p99_ms": float(np.percentile(lat, 99)),
            "blocks": int(np.isfinite(lat).sum()), "cpu_reader": float(np.mean(cpus)) * 100,
            "cpu_writer": w["cpu"] * 100,
            "writer_ms": float(np.median(parts[:, 2] - parts[:, 0])) * 1e3,
            "decorator_ms": float(np.median(parts[:, 1] - parts[:, 0])) * 1e3,
            "reader_ms": float(np.median(to_reader or [np.nan])) * 1e3,
            "reader_p99_ms": float(np.percentile(to_reader or [np.nan], 99)) * 1e3,
            "warm_ms": float(np.median(warm[:, 2] - warm[:, 0])) * 1e3,
            "warm_decorator_ms": float(np.median(warm[:, 1] - warm[:, 0])) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="run", choices=["run", "writer", "reader"])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured span per case")
    parser.add_argument("--readers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--config", choices=list(CONFIGS))
    parser.add_argument("--mode", choices=["shm", "lsl"])
    parser.add_argument("--name")
    a = parser.parse_args()
    if a.role == "writer":
        return run_writer(a)
    if a.role == "reader":
        return run_reader(a)

    print(f"blocks every {BLOCK_S * 1e3:g} ms; {a.seconds:g} s measured per case; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the start\n")
    print("latency = (a) in writer + (b) commit -> reader, each a median over blocks "
          "(so their sum is not the median of the total);\n"
          "(a) = block entering the decorator -> committed (of which 'decor': -> reaching "
          "the service); 'warm': (a) back to back, no sleep before each block\n")
    header = (f"{'case':<12} {'N':>2} {'via':<4} {'median ms':>9} {'p99 ms':>7} "
              f"{'blocks':>6} {'CPU/reader %':>12} {'writer CPU %':>12} {'(a) ms':>7} "
              f"{'decor':>6} {'(b) ms':>7} {'(b) p99':>7} {'warm (a)':>8} {'decor':>6}")
    verdicts = []
    for config in CONFIGS:
        print(header)
        writer_cpu: dict[str, list[float]] = {"shm": [], "lsl": []}
        for n in a.readers:
            got = {}
            for mode in ("shm", "lsl"):
                got[mode] = m = measure(config, mode, n, a.seconds)
                writer_cpu[mode].append(m["cpu_writer"])
                print(f"{config:<12} {n:>2} {mode:<4} {m['median_ms']:9.3f} {m['p99_ms']:7.3f} "
                      f"{m['blocks']:6d} {m['cpu_reader']:12.2f} {m['cpu_writer']:12.2f} "
                      f"{m['writer_ms']:7.3f} {m['decorator_ms']:6.3f} {m['reader_ms']:7.3f} "
                      f"{m['reader_p99_ms']:7.3f} {m['warm_ms']:8.3f} "
                      f"{m['warm_decorator_ms']:6.3f}",
                      flush=True)
            s, lsl = got["shm"], got["lsl"]
            lat_ratio = s["median_ms"] / lsl["median_ms"]
            cpu_ratio = s["cpu_reader"] / lsl["cpu_reader"]
            verdicts.append(
                f"{config} N={n}: commit -> reader {s['reader_ms']:.3f} ms, "
                f"{s['reader_ms'] / lsl['reader_ms']:.3f} x LSL's; "
                f"median {s['median_ms']:.3f} ms "
                f"({'ok' if s['median_ms'] <= 0.05 else 'MISSED'} <= 0.05), "
                f"{lat_ratio:.3f} x LSL ({'ok' if lat_ratio <= 0.2 else 'MISSED'} <= 0.2); "
                f"CPU/reader {cpu_ratio:.2f} x LSL ({'ok' if cpu_ratio <= 0.5 else 'MISSED'} "
                "<= 0.5)")
        for mode, cpus in writer_cpu.items():
            verdicts.append(f"{config} writer CPU via {mode} for N={a.readers}: "
                            + ", ".join(f"{c:.2f}%" for c in cpus)
                            + f" (max/min {max(cpus) / min(cpus):.2f})")
        print()
    print("\n".join(verdicts))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
