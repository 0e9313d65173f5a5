"""Network marker timing and load: ampkit's marker servers beside libmushu's approach.

**Timing.** A sender process stamps ``local_clock()`` just before each send
and sends 1000 markers/s for ``--seconds`` over TCP and over UDP to each of

* ``ampkit``: the marker servers ``amp.start()`` opens (receiving process,
  kernel receive timestamps, real-time scheduling where the system allows);
* ``ampkit-nonrt``: the same without real-time scheduling (what an ordinary
  user account gets);
* ``ampkit-thread``: the same servers in a thread of the acquiring process
  (``MarkerServers(stamping='thread')``, the fallback where a child process
  cannot be used);
* ``libmushu``: libmushu's approach -- a Python thread in the acquiring
  process that reads the socket and stamps with ``time.time()`` (converted to
  ``local_clock`` by an offset taken at start) --

all at once, while the amp records 256 channels x 10 kHz from the random
driver (to a temporary recording when ``amp.start(filename=...)`` is
available) and the main loop reads at 100 Hz. For each marker the error is
the marker's time in the data (``block.timestamps[0] + ms / 1000`` as
``get_data()`` reports it) minus the send stamp, and the error of the sample
it lands on (first sample at or after that time). Reported: median, p99 and
max in ms, and the count lost. Goal: TCP loses 0; median <= 0.2 ms, p99 <= 1 ms.

**Load.** 8 TCP client processes send 10 000 markers/s in total for
``--seconds`` to ampkit's servers under the same acquisition: none may be lost.

Run: ``python benchmarks/bench_markers.py [--seconds 10]`` (Linux or macOS).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ["LSLAPICFG"] = str(Path(__file__).resolve().parents[1] / "tests" / "lsl-loopback.cfg")

import numpy as np  # noqa: E402

import ampkit  # noqa: E402
from ampkit.clock import local_clock  # noqa: E402
from ampkit.markers import MarkerClient, MarkerServers  # noqa: E402

FS, CHANNELS, READ_HZ = 10_000, 256, 100


# -- the sender processes --------------------------------------------------------


def run_sender(args: argparse.Namespace) -> None:
    """Child: send ``rate`` markers/s to each target; print the send stamps as JSON."""
    targets = json.loads(args.targets)
    clients = [(tag, MarkerClient(host, port, proto)) for tag, proto, host, port in targets]
    stamps: dict[str, list[float]] = {tag: [] for tag, _ in clients}
    n_total = int(args.rate * args.seconds)
    t0 = args.start
    while local_clock() < t0:
        time.sleep(min(0.01, max(t0 - local_clock(), 0)))
    i = 0
    while i < n_total:
        due = min(n_total, int((local_clock() - t0) * args.rate) + 1)
        while i < due:
            for tag, client in clients:
                stamps[tag].append(client.send(f"{tag} {i}"))
            i += 1
        wait = t0 + i / args.rate - local_clock()
        if wait > 0:
            time.sleep(wait)
    for _, client in clients:
        client.close()
    json.dump(stamps, sys.stdout)


def start_sender(targets: list, rate: float, seconds: float, start: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--sender", "--targets", json.dumps(targets),
         "--rate", str(rate), "--seconds", str(seconds), "--start", repr(start)],
        stdout=subprocess.PIPE, text=True,
    )


# -- libmushu's approach: a receiving Python thread stamping time.time() ---------


class LibmushuStyleServers:
    """TCP and UDP servers in threads of this process, stamping ``time.time()``
    when a line's first bytes are read, as libmushu's marker handler did."""

    def __init__(self, amp) -> None:
        self.amp = amp
        # time.time() -> local_clock: the tightest of a few paired readings.
        pairs = []
        for _ in range(20):
            a = local_clock()
            w = time.time()
            b = local_clock()
            pairs.append((b - a, w - (a + b) / 2))
        self.offset = min(pairs)[1]
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._serve_tcp, daemon=True),
                        threading.Thread(target=self._serve_udp, daemon=True)]
        for t in self.threads:
            t.start()

    def _deliver(self, wall: float, text: bytes) -> None:
        self.amp.add_marker(text.decode(), wall - self.offset)

    def _serve_tcp(self) -> None:
        self.tcp.settimeout(0.1)
        conns = []
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
            t.start()
            conns.append(t)

    def _serve_conn(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buf, first = b"", None
        while not self.stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            now = time.time()
            if not data:
                break
            if first is None:
                first = now
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self._deliver(first, line)
                first = now if buf else None
        conn.close()

    def _serve_udp(self) -> None:
        self.udp.settimeout(0.1)
        while not self.stop.is_set():
            try:
                data = self.udp.recv(65536)
            except TimeoutError:
                continue
            now = time.time()
            for line in data.split(b"\n"):
                if line:
                    self._deliver(now, line)

    def addresses(self) -> dict:
        return {"tcp": self.tcp.getsockname(), "udp": self.udp.getsockname()}

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(2)
        self.tcp.close()
        self.udp.close()


# -- acquisition under load --------------------------------------------------------


def acquire(amp, until, received: dict, sample_times: list) -> dict:
    """Read at READ_HZ until ``until()``; collect markers as get_data() places them."""
    n_reads = 0
    late = 0
    tick = local_clock()
    while not until():
        block = amp.get_block()
        n_reads += 1
        if len(block):
            sample_times.append(block.timestamps.copy())
            t_first = block.timestamps[0]
            for ms, text in block.relative_markers():
                received.setdefault(text, []).append(t_first + ms / 1000.0)
                late += ms < 0
        tick += 1.0 / READ_HZ
        wait = tick - local_clock()
        if wait > 0:
            time.sleep(wait)
        else:
            tick = local_clock()
    return {"reads": n_reads, "late": late}


def start_amp(tmp: str):
    amp = ampkit.get_amp("random", fs=FS, channels=CHANNELS)
    try:
        amp.start(filename=os.path.join(tmp, "bench"), marker_port=0)
        recording = True
    except ampkit.errors.AmpkitError as exc:
        print(f"(not recording: {exc})")
        amp.start(marker_port=0)
        recording = False
    return amp, recording


def stats(errors_ms: np.ndarray) -> str:
    if not len(errors_ms):
        return f"{'-':>8} {'-':>8} {'-':>8}"
    return (f"{np.median(errors_ms):8.3f} {np.percentile(errors_ms, 99):8.3f} "
            f"{np.max(errors_ms):8.3f}")


def timing(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        amp, recording = start_amp(tmp)
        thread_servers = MarkerServers(amp.add_marker, port=0, stamping="thread",
                                       name="ampkit-thread").start()
        nonrt_servers = MarkerServers(amp.add_marker, port=0, stamping="process",
                                      realtime=False, name="ampkit-nonrt").start()
        libmushu = LibmushuStyleServers(amp)
        main_servers = next(s for s in amp.services if isinstance(s, MarkerServers))
        endpoints = {"ampkit": amp.marker_addresses, "ampkit-nonrt": nonrt_servers.addresses,
                     "ampkit-thread": thread_servers.addresses, "libmushu": libmushu.addresses()}
        targets = [[f"{name}/{proto}", proto, *endpoints[name][proto]]
                   for name in endpoints for proto in ("tcp", "udp")]
        received: dict[str, list[float]] = {}
        sample_times: list[np.ndarray] = []
        start = local_clock() + 3.0
        sender = start_sender(targets, 1000, seconds, start)
        out: dict = {}
        reader = threading.Thread(target=lambda: out.update(sent=json.loads(
            sender.communicate()[0])), daemon=True)
        reader.start()
        end = [None]

        def until():
            if end[0] is None and not reader.is_alive():
                end[0] = local_clock() + 1.0  # a second for stragglers
            return end[0] is not None and local_clock() > end[0]

        info = acquire(amp, until, received, sample_times)
        source = main_servers.stamp_source
        realtime = main_servers.realtime
        libmushu.close()
        thread_servers.close()
        nonrt_servers.close()
        amp.stop()
        rows = sum(len(t) for t in sample_times)
        print(f"acquisition: {CHANNELS} ch x {FS} Hz, {rows} samples, {info['reads']} reads "
              f"at {READ_HZ} Hz, {'recording' if recording else 'not recording'}; "
              f"ampkit stamps: {source} receive times, real-time scheduling "
              f"{'granted' if realtime else 'not allowed here'}")
    times = np.concatenate(sample_times)
    sent = out["sent"]
    print(f"\n{seconds:g} s at 1000 markers/s per row, all rows at once "
          f"(markers that reached the amp after their block was read: {info['late']})")
    print(f"{'server/protocol':<20} {'sent':>6} {'lost':>5} {'dup':>4} | marker time - send "
          f"stamp (ms): {'median':>8} {'p99':>8} {'max':>8} | sample time - send stamp (ms): "
          f"{'median':>8} {'p99':>8} {'max':>8}")
    for tag, stamps in sent.items():
        errors, sample_errors, lost, dup = [], [], 0, 0
        for i, t_sent in enumerate(stamps):
            got = received.get(f"{tag} {i}", [])
            if not got:
                lost += 1
                continue
            dup += len(got) - 1
            errors.append(got[0] - t_sent)
            row = min(int(np.searchsorted(times, got[0])), len(times) - 1)
            sample_errors.append(times[row] - t_sent)
        e = np.array(errors) * 1000
        s = np.array(sample_errors) * 1000
        print(f"{tag:<20} {len(stamps):>6} {lost:>5} {dup:>4} | {'':>31}{stats(e)} | "
              f"{'':>30}{stats(s)}")


def load(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        amp, recording = start_amp(tmp)
        host, port = amp.marker_addresses["tcp"]
        start = local_clock() + 4.0
        senders = [start_sender([[f"c{k}", "tcp", host, port]], 1250, seconds, start)
                   for k in range(8)]
        results: list = [None] * 8

        def collect(k):
            results[k] = json.loads(senders[k].communicate()[0])

        readers = [threading.Thread(target=collect, args=(k,), daemon=True) for k in range(8)]
        for r in readers:
            r.start()
        received: dict[str, list[float]] = {}
        end = [None]

        def until():
            if end[0] is None and not any(r.is_alive() for r in readers):
                end[0] = local_clock() + 1.0
            return end[0] is not None and local_clock() > end[0]

        acquire(amp, until, received, [])
        amp.stop()
    sent = {f"{tag} {i}": t for res in results for tag, ts in res.items()
            for i, t in enumerate(ts)}
    lost = sum(1 for text in sent if text not in received)
    dup = sum(len(v) - 1 for v in received.values())
    first = min(sent.values())
    last = max(sent.values())
    errors = np.array([received[t][0] - s for t, s in sent.items() if t in received]) * 1000
    print(f"\nload: 8 TCP clients, {len(sent)} markers in {last - first:.2f} s "
          f"({len(sent) / (last - first):.0f} markers/s), "
          f"{'recording' if recording else 'not recording'} {CHANNELS} ch x {FS} Hz")
    print(f"  lost {lost}, duplicated {dup}; marker time - send stamp (ms): median "
          f"{np.median(errors):.3f}, p99 {np.percentile(errors, 99):.3f}, max {errors.max():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--targets", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--skip-load", action="store_true", help="timing only")
    args = parser.parse_args()
    if args.sender:
        run_sender(args)
        return
    timing(args.seconds)
    if not args.skip_load:
        load(args.seconds)


if __name__ == "__main__":
    main()
