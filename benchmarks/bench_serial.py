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


def ampkit_e2e(port: str, seconds: float, poll: float | None) -> tuple[float, int, float]:
    import ampkit

    amp = ampkit.get_amp("cyton", port=port)
    amp.start(marker_port=0)
    amp.get_data()  # the first block may carry samples read during start()

    def run(deadline: float) -> int:
        n = 0
        while time.perf_counter() < deadline:
            if poll is not None:
                time.sleep(poll)
            n += len(amp.get_data()[0])
        return n

    try:
        pct, n = cpu_percent(run, seconds)
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

    def run(deadline: float) -> int:
        n = 0
        while time.perf_counter() < deadline:
            time.sleep(poll)
            n += board.get_board_data().shape[1]
        return n

    try:
        pct, n = cpu_percent(run, seconds)
    finally:
        board.stop_stream()
        board.release_session()
    return pct, n, n / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per end-to-end run")
    ap.add_argument("--packets", type=int, default=50_000, help="packets for the codec runs")
    args = ap.parse_args()

    print("1. codec alone (parser + assembler + scaling), one core, CPU time")
    for daisy in (False, True):
        for chunk in (4, 64):
            rate = codec_rate(args.packets, chunk, daisy)
            label = "16 ch" if daisy else " 8 ch"
            print(f"   {label}, {chunk:2d}-packet reads: {rate:10.0f} packets/s = "
                  f"{rate / BOARD_RATE:6.0f} x the board's 250 Hz (goal >= 100 x)")

    print(f"2. end to end at 250 Hz, {args.seconds:g} s each; % of one core (this process)")
    sim = Simulator()
    try:
        for label, poll in (("ampkit, blocking get_data() loop", None),
                            ("ampkit, get_data() every 20 ms", 0.02)):
            pct, n, rate = ampkit_e2e(sim.port, args.seconds, poll)
            print(f"   {label:<36}: {pct:5.2f} % CPU, {rate:6.1f} samples/s "
                  f"(goal < 2 %)")
        peer = brainflow_e2e(sim.port, args.seconds, 0.02)
        if peer is None:
            print("   BrainFlow not installed: no peer run")
        else:
            pct, n, rate = peer
            print(f"   {'BrainFlow Cyton, polled every 20 ms':<36}: {pct:5.2f} % CPU, "
                  f"{rate:6.1f} samples/s (peer)")
    finally:
        sim.close()


if __name__ == "__main__":
    main()
