"""CPU cost of acquisition: a decorated ampkit amp beside BrainFlow's synthetic board.

Each case runs in its own process: the library is imported and acquisition is
started first, then the CPU time of the whole process tree (every thread via
``time.process_time``, plus any helper process ampkit starts, from /proc) is
measured for ``--seconds`` of
acquisition in which the main loop reads every 100 ms. The figure is CPU
seconds per second of acquisition (1.0 = one core busy). Cases alternate over
``--repeats`` rounds so that machine noise hits them alike; the median is shown.

Cases:

* ampkit ``random`` decorated, 32 channels x 250 Hz (BrainFlow's synthetic shape)
* BrainFlow ``SYNTHETIC_BOARD`` (32 rows x 250 Hz), ``get_board_data()`` every 100 ms
* ampkit at 64 x 1 kHz and 256 x 10 kHz

Goal: ampkit's CPU per second no more than BrainFlow's at the same shape.

Run: ``python benchmarks/bench_overhead.py [--seconds 10] [--repeats 3]`` (Linux).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

# A child process runs a setup (one per case: it defines ``read()``,
# ``count(data)`` and ``finish()``; its arguments follow the seconds in
# sys.argv) and then READ_LOOP.

#: Setup of the ampkit case: the decorated random amp.
AMPKIT_SETUP = r"""
import ampkit
amp = ampkit.get_amp("random", fs=float(sys.argv[3]), channels=int(sys.argv[2]))
amp.start()
read = amp.get_data
def count(data):
    return len(data[0])
def finish():
    amp.stop(); amp.close()
"""

#: Setup of BrainFlow alone: its synthetic board (32 rows x 250 Hz).
BRAINFLOW_SETUP = r"""
from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams
BoardShim.disable_board_logger()
board = BoardShim(BoardIds.SYNTHETIC_BOARD.value, BrainFlowInputParams())
board.prepare_session()
board.start_stream()
read = board.get_board_data
def count(data):
    return data.shape[1]
def finish():
    board.stop_stream(); board.release_session()
"""

#: Read every 100 ms for sys.argv[1] seconds; report samples and process CPU.
READ_LOOP = r"""
import os
read()
print("ready", flush=True)
cpu0 = time.process_time()
n = 0
t0 = time.perf_counter()
tick = t0
while tick - t0 < seconds:
    tick += 0.1
    time.sleep(max(0.0, tick - time.perf_counter()))
    n += count(read())
print("done", n, time.process_time() - cpu0, flush=True)
sys.stdin.read()
finish()
os._exit(0)  # skip interpreter teardown (BrainFlow's destructor complains there)
"""


def tree_cpu(session: int) -> float:
    """CPU seconds (user + system, 10 ms ticks) of the processes of a session
    other than its leader (whose CPU the leader measures itself, to the ns)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session and int(entry) != session:  # field 6: session id
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def run_child(setup: str, seconds: float, *args: object) -> tuple[float, float]:
    """Run ``setup`` + :data:`READ_LOOP` in a process of its own.

    Returns
    -------
    (CPU seconds per second, samples per second) of the reading loop: the
    wall time is measured here, around the child's loop; the child reports
    its own process CPU time (all threads), :func:`tree_cpu` adds its helpers.
    """
    code = "import sys, time\nseconds = float(sys.argv[1])\n" + setup + READ_LOOP
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", code, str(seconds), *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    cpu0, wall0 = tree_cpu(proc.pid), time.perf_counter()
    line = proc.stdout.readline().split()
    cpu1, wall1 = tree_cpu(proc.pid), time.perf_counter()
    proc.stdin.close()
    proc.wait(30)
    assert line[0] == "done", line
    wall = wall1 - wall0
    own_cpu = float(line[2])
    return (own_cpu + cpu1 - cpu0) / wall, int(line[1]) / wall


def run_case(kind: str, channels: int, fs: float, seconds: float) -> tuple[float, float]:
    """Return (CPU seconds per second, samples per second) of one case."""
    setup = AMPKIT_SETUP if kind == "ampkit" else BRAINFLOW_SETUP
    return run_child(setup, seconds, channels, fs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = [
        ("ampkit", 32, 250.0),
        ("brainflow", 32, 250.0),
        ("ampkit", 64, 1000.0),
        ("ampkit", 256, 10000.0),
    ]
    results: dict[tuple, list[tuple[float, float]]] = {c: [] for c in cases}
    for _ in range(args.repeats):
        for case in cases:
            results[case].append(run_case(*case, args.seconds))
    print(f"CPU per second of acquisition, read every 100 ms, {args.seconds:g} s x "
          f"{args.repeats} rounds, median (min-max); 1.0 = one core")
    medians = {}
    for (kind, ch, fs), runs in results.items():
        cpu = [c for c, _ in runs]
        rate = statistics.median(r for _, r in runs)
        medians[(kind, ch, fs)] = statistics.median(cpu)
        print(f"  {kind:<9} {ch:>4} ch x {fs:>7g} Hz: {100 * statistics.median(cpu):6.2f} % "
              f"({100 * min(cpu):.2f}-{100 * max(cpu):.2f})  {rate:9.1f} samples/s")
    ratio = medians[("ampkit", 32, 250.0)] / medians[("brainflow", 32, 250.0)]
    verdict = "meets" if ratio <= 1.0 else "misses"
    print(f"ampkit / BrainFlow at 32 ch x 250 Hz: {ratio:.2f} ({verdict} the goal <= 1.0)")


if __name__ == "__main__":
    main()
