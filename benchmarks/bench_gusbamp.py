"""CPU of the gusbamp driver at 16 channels x 38.4 kHz, beside a bare pyusb loop.

Run::

    python benchmarks/bench_gusbamp.py [--seconds 10] [--repeats 3]

Every case reads the emulated g.USBamp (:mod:`ampkit.sim.gusbamp`, a pyusb
backend, so it lives in the reading process) at its top rate, 16 channels x
38 400 Hz (2.6 MB/s of frames), in a loop that reads as fast as data comes:

* ``bare``: pyusb's ``Device.read`` into one ``array('B')`` of 10 ms of
  frames, ``numpy.frombuffer`` to frames, a read as soon as one returns --
  the least a Python program does with the endpoint, at the amp's pace (a
  read per USB transfer of the amp: 200 a second);
* ``bare-20ms``: the same every 20 ms, each read taking what gathered (the
  pace of the driver's default ``latency=0.02``);
* ``decorated``: ``ampkit.get_amp('gusbamp', ...)`` (default ``latency``)
  read with ``get_data()`` in a loop (marker servers on, no recording);
* ``recording``: the same, recording to the default five-file format.

Each case runs in a process of its own (a new session); its CPU is that
process's (all threads, ``time.process_time``) plus its helper processes'
(the marker servers, from /proc). The emulator's own cost -- computing the
frames and copying them into pyusb's buffer, in whichever thread reads -- is
measured by the emulator (thread CPU time around that work) and subtracted,
which leaves the reading side: pyusb, the transport, codec, layer, decorator,
recorder. Cases alternate over ``--repeats`` rounds; medians are shown.

Goals (the ``recording`` case): at most 1.5 x the bare loop's reading-side
CPU, and below 10 % of one core. Both bare loops are shown: ``bare-20ms`` is
the like-for-like peer (the same number of reads a second).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["LSLAPICFG"] = str(HERE.parent / "tests" / "lsl-loopback.cfg")
os.environ.setdefault("AMPKIT_MARKER_PORT", "0")  # a free port, not 12344

from bench_overhead import tree_cpu  # noqa: E402

FS = 38400

BARE = r"""
import array
import numpy as np
import usb.core, usb.util
from ampkit.protocols import gusbamp as proto
device = usb.core.find(idVendor=0x153C, backend=emulator)
device.set_configuration()
usb.util.claim_interface(device, 0)
for t in [proto.STOP, *proto.setup_transfers(FS)]:
    device.ctrl_transfer(0x40, t.request, t.value, t.index, t.data)
device.set_interface_altsetting(0, 1)
for t in proto.START:
    device.ctrl_transfer(0x40, t.request, t.value, t.index, t.data)
buf = array.array("B", bytes(round(FS * READ_SECONDS) * 68))
tick = time.perf_counter()
def read():
    global tick
    if PACE:
        tick += PACE
        time.sleep(max(0.0, tick - time.perf_counter()))
    n = device.read(0x86, buf, 100)
    return len(np.frombuffer(buf, "<f4", n // 4).reshape(-1, 17))
def finish():
    device.ctrl_transfer(0x40, 0xB8)
    usb.util.dispose_resources(device)
"""

SETUP = {
    "bare": "PACE, READ_SECONDS = 0, 0.01\n" + BARE,
    "bare-20ms": "PACE, READ_SECONDS = 0.02, 0.05\n" + BARE,
    "decorated": r"""
import ampkit
amp = ampkit.get_amp("gusbamp", backend=emulator, fs=FS)
amp.start()
def read():
    return len(amp.get_data()[0])
def finish():
    amp.stop(); amp.close()
""",
    "recording": r"""
import ampkit
amp = ampkit.get_amp("gusbamp", backend=emulator, fs=FS)
amp.start(filename=os.path.join(sys.argv[2], "rec"))
def read():
    return len(amp.get_data()[0])
def finish():
    amp.stop(); amp.close()
""",
}

#: Read as fast as data comes for sys.argv[1] seconds; report frames, process
#: CPU and the emulator's CPU over that time.
LOOP = r"""
for _ in range(20):
    read()
print("ready", flush=True)
sim0, cpu0 = emulator.cpu_seconds, time.process_time()
t0 = time.perf_counter()
n = 0
while time.perf_counter() - t0 < seconds:
    n += read()
cpu, sim = time.process_time() - cpu0, emulator.cpu_seconds - sim0
print("done", n, cpu, sim, flush=True)
sys.stdin.read()
finish()
"""

PRELUDE = rf"""
import os, sys, time
from ampkit.sim.gusbamp import GUSBampEmulator
seconds = float(sys.argv[1])
FS = {FS}
emulator = GUSBampEmulator()
"""


def run_case(kind: str, seconds: float) -> dict[str, float]:
    """One case in a process of its own: CPU per second (total, emulator,
    reading side) and frames per second."""
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", PRELUDE + SETUP[kind] + LOOP, str(seconds),
             folder],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        helpers0, wall0 = tree_cpu(proc.pid), time.perf_counter()
        line = proc.stdout.readline().split()
        helpers1, wall1 = tree_cpu(proc.pid), time.perf_counter()
        proc.stdin.close()
        proc.wait(60)
    assert line[0] == "done", line
    wall = wall1 - wall0
    frames, cpu, sim = int(line[1]), float(line[2]), float(line[3])
    total = (cpu + helpers1 - helpers0) / wall
    return {"total": total, "emulator": sim / wall, "reading": total - sim / wall,
            "rate": frames / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in SETUP}
    for _ in range(args.repeats):
        for kind in SETUP:
            results[kind].append(run_case(kind, args.seconds))
    print(f"g.USBamp emulated, 16 ch x {FS} Hz, read as data comes, {args.seconds:g} s x "
          f"{args.repeats} rounds; % of one core, median (min-max)")
    print(f"  {'case':<10} {'total':>16} {'emulator':>9} {'reading side':>22} {'frames/s':>10}")
    medians = {}
    for kind, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        medians[kind] = med
        low, high = min(r["reading"] for r in runs), max(r["reading"] for r in runs)
        print(f"  {kind:<10} {100 * med['total']:7.2f} %         {100 * med['emulator']:6.2f} %"
              f"  {100 * med['reading']:6.2f} % ({100 * low:.2f}-{100 * high:.2f})"
              f"  {med['rate']:10.0f}")
    share = medians["recording"]["reading"]
    for bare in ("bare", "bare-20ms"):
        ratio = share / medians[bare]["reading"]
        print(f"recording / {bare}, reading side: {ratio:.2f} "
              f"({'meets' if ratio <= 1.5 else 'misses'} the goal <= 1.5)")
    print(f"recording: {100 * share:.2f} % of a core "
          f"({'meets' if share < 0.10 else 'misses'} the goal < 10 %)")


if __name__ == "__main__":
    main()
