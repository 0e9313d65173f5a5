"""Cyton serial driver: codec throughput and end-to-end CPU at 250 Hz.

Run::

    python benchmarks/bench_serial.py [--seconds 5]

1. Codec alone (parser + sample assembler + scaling to µV), packets per
   second of CPU time on one core, fed in chunks of 4 packets (what a USB
   serial adapter hands over at 250 Hz with its 16 ms latency timer) and of
   64 packets. Goal: at least 100x the board's 250 packets/s.
2. End to end: a decorated ``cyton`` amp reading the pty simulator (run in
   a child process so its CPU is not counted) at the board's real rate;
   this process's CPU time (all threads) over wall time, in % of one core.
   Goal: below 2 %. The peer in the same run: BrainFlow's Cyton driver
   (C++, its own reader thread) reading the same simulator, polled every
   20 ms, and ampkit polled the same way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["LSLAPICFG"] = str(HERE.parent / "tests" / "lsl-loopback.cfg")

import numpy as np  # noqa: E402

from ampkit.protocols.cyton import (  # noqa: E402
    PacketParser,
    SampleAssembler,
    counts_to_uv,
    encode_packets,
)

BOARD_RATE = 250.0
SIM_CODE = (
    "import sys\n"
    "from ampkit.sim.cyton import CytonSimulator\n"
    "sim = CytonSimulator(daisy=%r).start()\n"
    "print(sim.port, flush=True)\n"
    "sys.stdin.read()\n"
    "sim.close()\n"
)


def codec_rate(n_packets: int, chunk_packets: int, daisy: bool, repeats: int = 3) -> float:
    """Best packets per CPU second over ``repeats`` runs."""
    rng = np.random.default_rng(0)
    eeg = rng.integers(-(2**23), 2**23, (n_packets, 8))
    aux = np.zeros((n_packets, 3), int)
    aux[::10] = [0, 0, 8000]
    data = encode_packets(np.arange(n_packets), eeg, aux)
    step = 33 * chunk_packets
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    gains = [24] * (16 if daisy else 8)
    best = 0.0
    for _ in range(repeats):
        parser, assembler = PacketParser(), SampleAssembler(daisy=daisy)
        got = 0
        t0 = time.process_time()
        for chunk in chunks:
            samples = assembler.push(parser.feed(chunk))
            if len(samples):
                counts_to_uv(samples.eeg, gains)
            got += len(samples)
        cpu = time.process_time() - t0
        assert parser.n_packets == n_packets and parser.n_skipped == 0
        best = max(best, n_packets / cpu)
    return best


class Simulator:
    """The pty simulator in a child process."""

    def __init__(self, daisy: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SIM_CODE % daisy],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.port = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        if not self.port:
            raise RuntimeError("the simulator did not start")

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(10)


def cpu_percent(run, seconds: float) -> tuple[float, int]:
    """(% of one core used by this process while ``run(deadline)`` runs, samples)."""
    w0, c0 = time.perf_counter(), time.process_time()
    n = run(time.perf_counter() + seconds)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return 100.0 * cpu / wall, n


def polling(read: Callable[[], int], poll: float | None) -> Callable[[float], int]:
    """The loop every end-to-end case times: sleep ``poll`` seconds (none: read
    back to back), read, count the samples, until the deadline."""

    def run(deadline: float) -> int:
        n = 0
        while time.perf_counter() < deadline:
            if poll is not None:
                time.sleep(poll)
            n += read()
        return n

    return run


def ampkit_e2e(port: str, seconds: float, poll: float | None) -> tuple[float, int, float]:
    import ampkit

    amp = ampkit.get_amp("cyton", port=port)
    amp.start(marker_port=0)
    amp.get_data()  # the first block may carry samples read during start()

    try:
        pct, n = cpu_percent(polling(lambda: len(amp.get_data()[0]), poll), seconds)
    finally:
        amp.stop()
        amp.close()
    return pct, n, n / seconds


def brainflow_e2e(port: str, seconds: float, poll: float) -> tuple[float, int, float] | None:
    try:
        from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams
    except ImportError:
        return None
    BoardShim.disable_board_logger()
    params = BrainFlowInputParams()
    params.serial_port = port
    board = BoardShim(BoardIds.CYTON_BOARD, params)
    board.prepare_session()
    board.start_stream()
    time.sleep(0.2)
    board.get_board_data()

    try:
        pct, n = cpu_percent(polling(lambda: board.get_board_data().shape[1], poll), seconds)
    finally:
        board.stop_stream()
        board.release_session()
    return pct, n, n / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per end-to-end run")
    ap.add_argument("--packets", type=int, default=50_000, help="packets for the codec runs")
    ap.add_argument("--rounds", type=int, default=3, help="end-to-end rounds")
    args = ap.parse_args()

    print("1. codec alone (parser + assembler + scaling), one core, CPU time")
    for daisy in (False, True):
        for chunk in (4, 64):
            rate = codec_rate(args.packets, chunk, daisy)
            label = "16 ch" if daisy else " 8 ch"
            print(f"   {label}, {chunk:2d}-packet reads: {rate:10.0f} packets/s = "
                  f"{rate / BOARD_RATE:6.0f} x the board's 250 Hz (goal >= 100 x)")

    print(f"2. end to end at 250 Hz, {args.seconds:g} s per run, median of {args.rounds} "
          "interleaved rounds; % of one core (this process, all threads)")
    runs: dict[str, list[float]] = {}

    def record(label: str, result: tuple[float, int, float] | None) -> None:
        if result is not None:
            runs.setdefault(label, []).append(result[0])
            rates.setdefault(label, []).append(result[2])

    rates: dict[str, list[float]] = {}
    sim = Simulator()
    try:
        for _ in range(args.rounds):
            record("ampkit, blocking get_data() loop", ampkit_e2e(sim.port, args.seconds, None))
            record("ampkit, get_data() every 20 ms", ampkit_e2e(sim.port, args.seconds, 0.02))
            record("BrainFlow Cyton, polled every 20 ms (peer)",
                   brainflow_e2e(sim.port, args.seconds, 0.02))
            record("floor: 2 idle Python threads, 100 wake/s", idle_floor(args.seconds))
    finally:
        sim.close()
    for label, values in runs.items():
        rate = float(np.median(rates[label]))
        shown = f"{rate:6.1f} samples/s" if rate else " " * 16
        print(f"   {label:<44}: {np.median(values):5.2f} % CPU  {shown}  "
              f"(runs: {', '.join(f'{v:.2f}' for v in values)})")
    if "BrainFlow Cyton, polled every 20 ms (peer)" not in runs:
        print("   BrainFlow not installed: no peer run")
    print("   goal: ampkit below 2 % of one core")


def idle_floor(seconds: float) -> tuple[float, int, float]:
    """Two Python threads that only wake up (50 Hz each): the machine's floor."""
    import threading

    stop = threading.Event()

    def idle() -> None:
        while not stop.wait(0.02):
            pass

    def run(deadline: float) -> int:
        thread = threading.Thread(target=idle)
        thread.start()
        while time.perf_counter() < deadline:
            time.sleep(0.02)
        stop.set()
        thread.join()
        return 0

    pct, _ = cpu_percent(run, seconds)
    return pct, 0, 0.0


if __name__ == "__main__":
    main()
