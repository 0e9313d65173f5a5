"""Timestamps of a drifting device: ampkit's SampleClock beside naive stamping and liblsl.

Run from the project root::

    python benchmarks/bench_clock.py [--hours 24] [--lsl-hours 4] [--ppm 50,-50,500,-500]

For each clock error (ppm) the same arrival sequence -- a 1 kHz device whose
crystal runs that far off, 20-sample blocks, every block delayed by an
exponential delay of mean 2 ms, a 100 ms stall every 3 minutes on average
(:func:`ampkit.sim.arrivals.simulate_arrivals`) -- is stamped by:

* ampkit: :class:`ampkit.timestamps.SampleClock`, block by block, as the
  drivers and the decorator call it;
* (a) naive: every sample of a block stamped with the block's arrival (what
  BrainFlow does with the packets it reads together);
* (a2) back-extrapolated: the block's last sample at its arrival, the others
  before it at the nominal rate (liblsl's ``push_chunk`` with one timestamp,
  before any post-processing);
* (b) liblsl: an outlet fed each block with ``push_chunk(block, timestamp=arrival)``,
  an inlet with ``processing_flags=proc_dejitter`` (its recursive least
  squares with a 90 s half-time), on the loopback.

Every sample's stamp is compared with the time the device really took it;
the first 30 s are left out (settling), the rest is the figure: median, 99th
percentile and maximum of the absolute error in ms. Goal: ampkit's p99 <= 1
ms, at least 10 x better than (a), no worse than (b).

Then the cost: microseconds per 20-sample block of ``SampleClock.stamp`` over
an hour of arrivals, beside the floor of any stamping method -- one
``numpy.arange`` per block making the block's stamps (the same output, no
estimation). Goal: <= 5 us per block.

liblsl runs its own C++ code but needs one ``push_chunk`` call per block and
every block through a TCP connection (a system call each): about 8 s per
simulated hour here, so by default it gets the first 4 hours of each day
(``--lsl-hours``), and ampkit is scored over the same span beside it.

Like every script that touches LSL, this one sets LSLAPICFG to the loopback
configuration in tests/ before pylsl is imported.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["LSLAPICFG"] = str(ROOT / "tests" / "lsl-loopback.cfg")

import numpy as np  # noqa: E402
import pylsl  # noqa: E402

from ampkit.sim.arrivals import Arrivals, Score, simulate_arrivals  # noqa: E402
from ampkit.timestamps import SampleClock  # noqa: E402

FS = 1000.0
BLOCK = 20
SETTLE = 30.0


def naive(sizes: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
    """(a): every sample at its block's arrival."""
    return np.repeat(arrivals, sizes)


def back_extrapolated(sizes: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
    """(a2): the last sample at the arrival, the others at the nominal rate before it."""
    ends = np.repeat(arrivals, sizes)
    within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return ends - (np.repeat(sizes, sizes) - 1 - within) / FS


class LiblslDejitter:
    """(b): push each block with its arrival time, pull with proc_dejitter."""

    def __init__(self) -> None:
        name = f"bench-clock-{uuid.uuid4().hex[:8]}"
        info = pylsl.StreamInfo(name, "EEG", 1, FS, pylsl.cf_float32, name)
        self.outlet = pylsl.StreamOutlet(info, 0, 3600)
        found = pylsl.resolve_byprop("source_id", name, 1, 10)
        if not found:
            raise RuntimeError(f"LSL stream {name} not found on the loopback")
        self.inlet = pylsl.StreamInlet(
            found[0], max_buflen=3600, processing_flags=pylsl.proc_dejitter, recover=False
        )
        self.inlet.open_stream(10)
        self._push = self.outlet.do_push_chunk  # one C call per block, as pylsl makes it
        self._zeros = np.zeros(100, np.float32)

    def __call__(self, sizes: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
        total = int(sizes.sum())
        data = ctypes.c_void_p(self._zeros.ctypes.data)
        push, obj = self._push, self.outlet.obj
        for n, t in zip(sizes.tolist(), arrivals.tolist(), strict=True):
            push(obj, data, ctypes.c_long(n), ctypes.c_double(t), ctypes.c_int(1))
        out = np.empty(total, np.float64)
        got = 0
        values = np.empty((65536, 1), np.float32)
        deadline = time.monotonic() + 60
        while got < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"liblsl delivered {got} of {total} samples")
            _, stamps = self.inlet.pull_chunk(
                timeout=1.0, max_samples=min(65536, total - got), dest_obj=values
            )
            out[got : got + len(stamps)] = stamps
            got += len(stamps)
        return out

    def close(self) -> None:
        self.inlet.close_stream()
        del self.inlet, self.outlet


def row(name: str, score: Score, note: str = "") -> str:
    return (f"  {name:<28} {score.median * 1e3:9.3f} {score.p99 * 1e3:9.3f} "
            f"{score.max * 1e3:9.3f}  {note}")


def accuracy(hours: float, lsl_hours: float, ppms: list[float]) -> None:
    print(f"Error of each sample's stamp (ms), 1 kHz, {BLOCK}-sample blocks, delays 2 ms "
          "mean + a 100 ms stall every ~3 min, after 30 s:")
    for ppm in ppms:
        arrivals = simulate_arrivals(FS, hours * 3600, ppm=ppm, block_sizes=BLOCK,
                                     seed=int(abs(ppm)) + (ppm < 0))
        print(f"\n{ppm:+g} ppm, {hours:g} h ({len(arrivals.sizes)} blocks)")
        print(f"  {'':<28} {'median':>9} {'p99':>9} {'max':>9}")
        t0 = time.perf_counter()
        clock = SampleClock(FS)
        ours = arrivals.score(clock.stamp, settle=SETTLE)
        took = time.perf_counter() - t0
        rate_err = (clock.rate / arrivals.true_rate - 1) * 1e6
        print(row("ampkit SampleClock", ours,
                  f"rate {clock.rate:.6f} Hz ({rate_err:+.3f} ppm off); {took:.0f} s"))
        a = arrivals.score(naive, settle=SETTLE, batch=True)
        print(row("(a) naive arrival", a, f"ampkit p99 {a.p99 / ours.p99:.0f} x better"))
        a2 = arrivals.score(back_extrapolated, settle=SETTLE, batch=True)
        print(row("(a2) back-extrapolated", a2))
        span = arrivals if lsl_hours >= hours else _first_hours(arrivals, lsl_hours)
        lsl = LiblslDejitter()
        try:
            t0 = time.perf_counter()
            b = span.score(lsl, settle=SETTLE, batch=True, chunk=1 << 17)
            took = time.perf_counter() - t0
        finally:
            lsl.close()
        ours_span = ours
        if span is not arrivals:
            ours_span = span.score(SampleClock(FS).stamp, settle=SETTLE)
            print(row(f"ampkit, first {lsl_hours:g} h", ours_span))
        print(row(f"(b) liblsl dejitter{'' if span is arrivals else f', {lsl_hours:g} h'}", b,
                  f"ampkit p99 {b.p99 / ours_span.p99:.1f} x better; {took:.0f} s"))


def _first_hours(arrivals: Arrivals, hours: float) -> Arrivals:
    n = int(np.searchsorted(arrivals.arrivals, arrivals.t0 + hours * 3600))
    return Arrivals(arrivals.fs, arrivals.ppm, arrivals.t0, arrivals.sizes[:n],
                    arrivals.first[:n], arrivals.arrivals[:n], arrivals.lost[:n])


def cost(rounds: int) -> None:
    arrivals = simulate_arrivals(FS, 3600.0, ppm=-50, block_sizes=BLOCK, seed=1)
    sizes = arrivals.sizes.tolist()
    times = arrivals.arrivals.tolist()

    def clock_pass() -> float:
        stamp = SampleClock(FS).stamp
        t0 = time.perf_counter()
        for n, t in zip(sizes, times, strict=True):
            stamp(n, t)
        return time.perf_counter() - t0

    def floor_pass() -> float:
        arange = np.arange
        period = 1.0 / FS
        t0 = time.perf_counter()
        for n, t in zip(sizes, times, strict=True):
            arange(t, t + (n - 0.5) * period, period)
        return time.perf_counter() - t0

    def loop_pass() -> float:
        t0 = time.perf_counter()
        for _n, _t in zip(sizes, times, strict=True):
            pass
        return time.perf_counter() - t0

    clock, floor, loop = [], [], []
    for _ in range(rounds):  # interleaved: machine noise hits all alike
        clock.append(clock_pass())
        floor.append(floor_pass())
        loop.append(loop_pass())
    per = 1e6 / len(sizes)
    c = (np.median(clock) - np.median(loop)) * per
    f = (np.median(floor) - np.median(loop)) * per
    print(f"\nCost per {BLOCK}-sample block (median of {rounds} passes over "
          f"{len(sizes)} blocks, loop overhead taken out):")
    print(f"  SampleClock.stamp              {c:6.2f} us   (goal <= 5 us)")
    print(f"  floor: one numpy.arange        {f:6.2f} us   (clock = {c / f:.1f} x the floor)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--lsl-hours", type=float, default=4.0,
                        help="span of the liblsl comparison (default 4 h: about 30 s per hour "
                             "here)")
    parser.add_argument("--ppm", default="50,-50,500,-500")
    parser.add_argument("--rounds", type=int, default=5, help="passes of the cost figure")
    args = parser.parse_args()
    accuracy(args.hours, min(args.lsl_hours, args.hours),
             [float(p) for p in args.ppm.split(",")])
    cost(args.rounds)


if __name__ == "__main__":
    main()
