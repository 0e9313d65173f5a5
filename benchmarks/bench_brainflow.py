"""The brainflow bridge: its CPU cost beside BrainFlow alone, and its timestamps.

1. CPU per second of acquisition (process CPU time over wall time, every
   thread, plus any helper process such as ampkit's marker servers) of

   * the decorated bridge: ``get_amp('brainflow', board='synthetic')``,
     ``start()`` with its defaults, ``get_data()`` every 100 ms;
   * the same without the marker servers (``start(marker_port=None)``);
   * BrainFlow alone: ``BoardShim`` of the synthetic board (32 rows x 250 Hz),
     ``get_board_data()`` every 100 ms.

   Each case runs in a process of its own; cases alternate over ``--repeats``
   rounds so machine noise hits them alike; medians are shown. Goal: the
   bridge <= 1.2 x BrainFlow alone.

2. Timestamp error against the truth, read every 100 ms through the bridge:
   BrainFlow's own per-sample stamps (wall-clock arrival times, moved onto
   ``local_clock``), the decorated amp's timestamps (the driver's sample
   clock, fed with BrainFlow's stamp of each block's newest sample), and a
   sample clock fed with the time of each read instead (the alternative).

   * the Cyton board reading ampkit's Cyton simulator on a pty: the truth is
     the simulator's send schedule (sample *k* at ``t0 + (k + 1) / 250``);
   * the synthetic board: BrainFlow's generator has no schedule of its own
     to compare with; the truth is the straight line fitted to its stamps
     (least squares), i.e. evenly spaced samples at its effective rate.

   Errors are taken after the first third of the run (the clocks settle).

Run: ``python benchmarks/bench_brainflow.py [--seconds 10] [--repeats 3]
[--ts-seconds 30]`` (Linux; needs ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
from bench_overhead import BRAINFLOW_SETUP, run_child

import ampkit
from ampkit.clock import local_clock
from ampkit.errors import ConnectionLostError
from ampkit.sim.cyton import CytonSimulator
from ampkit.timestamps import SampleClock

#: Setup of the bridge cases (see bench_overhead.run_child): sys.argv[2] is
#: "markers" for a default start(), anything else for no marker servers.
BRIDGE_SETUP = r"""
import ampkit
amp = ampkit.get_amp("brainflow", board="synthetic")
if sys.argv[2] == "markers":
    amp.start()
else:
    amp.start(marker_port=None)
read = amp.get_data
def count(data):
    return len(data[0])
def finish():
    amp.stop(); amp.close()
"""

#: case name -> (child setup, its argument)
CASES = {
    "bridge": (BRIDGE_SETUP, "markers"),
    "bridge, no marker servers": (BRIDGE_SETUP, "none"),
    "BrainFlow alone": (BRAINFLOW_SETUP, ""),
}


def cpu_figures(seconds: float, repeats: int) -> None:
    results: dict[str, list[tuple[float, float]]] = {c: [] for c in CASES}
    for _ in range(repeats):
        for case in CASES:
            setup, arg = CASES[case]
            results[case].append(run_child(setup, seconds, arg))
    print(f"CPU per second of acquisition, synthetic board 250 Hz read every 100 ms, "
          f"{seconds:g} s x {repeats} rounds, median (min-max); 1.0 = one core")
    medians = {}
    for case, runs in results.items():
        cpu = [c for c, _ in runs]
        medians[case] = statistics.median(cpu)
        rate = statistics.median(r for _, r in runs)
        print(f"  {case:<27} {100 * medians[case]:6.2f} % ({100 * min(cpu):.2f}-"
              f"{100 * max(cpu):.2f})  {rate:7.1f} samples/s")
    for case in list(CASES)[:2]:
        ratio = medians[case] / medians["BrainFlow alone"]
        verdict = "meets" if ratio <= 1.2 else "misses"
        print(f"  {case} / BrainFlow alone: {ratio:.2f} ({verdict} the goal <= 1.2)")


def read_through_bridge(amp, seconds: float):
    """Read every 100 ms.

    Returns
    -------
    ours, theirs, by_read, data
        The decorated amp's timestamps, BrainFlow's stamps (on local_clock),
        the stamps of a SampleClock fed with the time of each read instead of
        BrainFlow's stamp of each block's newest sample, and the data.
    """
    ours, theirs, data = [], [], []
    by_read, clock = [], SampleClock(amp.get_sampling_frequency())
    t0 = tick = time.perf_counter()
    while tick - t0 < seconds:
        tick += 0.1
        time.sleep(max(0.0, tick - time.perf_counter()))
        block = amp.get_block()
        read = local_clock()
        ours.append(block.timestamps)
        theirs.append(amp.amp.get_brainflow_timestamps())
        by_read.append(clock.stamp(len(block), read)[0])
        data.append(block.data)
    return (np.concatenate(ours), np.concatenate(theirs), np.concatenate(by_read),
            np.concatenate(data))


def report(name: str, stamps: np.ndarray, truth: np.ndarray) -> None:
    settled = slice(len(truth) // 3, None)
    error = (stamps - truth)[settled] * 1000
    spacing = np.diff(stamps[settled]) * 1000
    print(f"    {name:<26} median {np.median(error):8.3f}  p1 {np.percentile(error, 1):8.3f}  "
          f"p99 {np.percentile(error, 99):8.3f}  max |e| {np.abs(error).max():8.3f} ms;  "
          f"sd of sample spacing {spacing.std():6.3f} ms")


def timestamp_figures(seconds: float) -> None:

    print(f"Timestamp error (ms, stamp - truth), read every 100 ms for {seconds:g} s")
    with CytonSimulator() as sim:
        amp = ampkit.get_amp("brainflow", board="cyton", serial_port=sim.port,
                             rows="eeg,package")
        amp.start(marker_port=None)
        try:
            ours, theirs, by_read, data = read_through_bridge(amp, seconds)
        except ConnectionLostError as exc:
            data = None
            print(f"  cyton: {exc} (the simulator sent {sim.n_sent} packets and dropped "
                  f"{sim.n_overflow} it could not send); no figure")
        finally:
            amp.stop()
        if data is None:
            pass
        elif not np.all(np.diff(data[:, -1].astype(int)) % 256 == 1):
            print("  cyton: samples were lost; the truth is unknown, no figure")
        else:
            # private: the simulator keeps its schedule to itself
            k = int(data[0, -1]) + np.arange(len(data))
            truth = np.array([sim._pacer.time_of(int(i)) for i in k])
            print(f"  Cyton board on the simulator ({len(truth)} samples; "
                  "truth: its send schedule)")
            report("BrainFlow's stamps", theirs, truth)
            report("ampkit (sample clock)", ours, truth)
            report("clock fed with read times", by_read, truth)
    amp = ampkit.get_amp("brainflow", board="synthetic")
    amp.start(marker_port=None)
    try:
        ours, theirs, by_read, _ = read_through_bridge(amp, seconds)
    finally:
        amp.stop()
    k = np.arange(len(theirs))
    slope, intercept = np.polyfit(k, theirs, 1)
    truth = intercept + slope * k
    print(f"  synthetic board ({len(truth)} samples; truth: the line through its stamps, "
          f"{1 / slope:.3f} Hz)")
    report("BrainFlow's stamps", theirs, truth)
    report("ampkit (sample clock)", ours, truth)
    report("clock fed with read times", by_read, truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per CPU case and round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ts-seconds", type=float, default=30.0, help="per timestamp run")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    cpu_figures(args.seconds, args.repeats)
    timestamp_figures(args.ts_seconds)


if __name__ == "__main__":
    main()
