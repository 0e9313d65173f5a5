"""Marker round trip through ``ampkit serve`` (Dareplane's MARKER command) beside the
TCP marker server, in the same run, into the same amp.

``ampkit serve random`` runs as its own process (256 ch x 10 kHz by default,
publishing to LSL and recording to XDF, as a Dareplane setup would run it).
A sender process stamps ``local_clock()`` just before each send and sends
``--rate`` markers/s for ``--seconds``, each one twice, in alternating order:

* ``serve``: ``MARKER|{"text": ...};`` over the module's command connection
  (stamped by the module when the command's bytes are read), and
* ``marker server``: a line to the TCP marker server the same amp opened at
  START (stamped in its own process with the kernel's receive time).

After CLOSE the XDF recording is read back. For each marker: its time minus
the send stamp, and the time of the sample it lands on (first at or after)
minus the send stamp; median, p99 and max in ms, and the count lost. Two
rounds: the sender's command connection is first dareplane-utils'
``SocketCommunicator`` (what a control room uses: Nagle's algorithm on), then
a plain socket with ``TCP_NODELAY``. Goal: the serve median within 2x the
marker server's.

Run: ``python benchmarks/bench_serve.py [--seconds 10] [--rate 100]`` (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["LSLAPICFG"] = str(Path(__file__).resolve().parents[1] / "tests" / "lsl-loopback.cfg")

import numpy as np  # noqa: E402

import ampkit.io  # noqa: E402
from ampkit.clock import local_clock  # noqa: E402
from ampkit.markers import MarkerClient  # noqa: E402

# -- the sender process ------------------------------------------------------------


def run_sender(args: argparse.Namespace) -> None:
    """Child: send each marker to both; print the send stamps as JSON."""
    if args.client == "dareplane":
        from dareplane_utils.module_handling.communication import SocketCommunicator

        comm = SocketCommunicator("127.0.0.1", args.serve_port, "ampkit")
        comm.connect()  # reads the greeting (waits up to 1 s for more)
        send = comm.send
        close = comm.disconnect
    else:
        sock = socket.create_connection(("127.0.0.1", args.serve_port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        greeting = b""
        while not greeting.endswith(b"\n"):
            greeting += sock.recv(100)
        send = sock.sendall
        close = sock.close
    markers = MarkerClient("127.0.0.1", args.marker_port, "tcp")
    stamps: dict[str, list[float]] = {"serve": [], "marker server": []}

    def via_serve(i: int) -> None:
        payload = f'MARKER|{{"text": "serve {i}"}};'.encode()
        stamps["serve"].append(local_clock())
        send(payload)

    def via_markers(i: int) -> None:
        stamps["marker server"].append(markers.send(f"tcp {i}"))

    n = int(args.rate * args.seconds)
    t0 = local_clock() + 0.5
    for i in range(n):
        wait = t0 + i / args.rate - local_clock()
        if wait > 0:
            time.sleep(wait)
        first, second = (via_serve, via_markers) if i % 2 == 0 else (via_markers, via_serve)
        first(i)
        second(i)
    time.sleep(0.5)  # let the last ones arrive before the connection goes
    markers.close()
    close()
    json.dump(stamps, sys.stdout)


# -- the module and its control connection -------------------------------------------


class Control:
    """The bench's own command connection (the module serves one at a time)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""
        self.until(b"\n")  # greeting

    def until(self, end: bytes) -> bytes:
        while end not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        i = self.buf.index(end) + len(end)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def command(self, text: str) -> None:
        self.sock.sendall(text.encode() + b";")

    def status(self) -> dict:
        self.command("STATUS")
        return json.loads(self.until(b"\n"))

    def close(self) -> None:
        self.sock.close()


def one_round(client: str, args: argparse.Namespace, tmp: str) -> None:
    record = os.path.join(tmp, f"bench-{client}.xdf")
    module = subprocess.Popen(
        [sys.executable, "-m", "ampkit.cli", "serve", "random", "-c", f"fs={args.fs}",
         "-c", f"channels={args.channels}", "--port", "0", "--no-log", "--marker-port", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ},
    )
    try:
        line = module.stdout.readline()
        port = int(line.split("127.0.0.1:")[1].split()[0])
        control = Control(port)
        control.command("START|" + json.dumps({"lsl": f"bench-serve-{os.getpid()}",
                                                "filename": record}))
        status = control.status()
        assert status["running"], status
        control.close()  # the sender's turn: one connection at a time
        sender = subprocess.Popen(
            [sys.executable, __file__, "--sender", "--client", client, "--serve-port", str(port),
             "--marker-port", str(status["marker_port"]), "--rate", str(args.rate),
             "--seconds", str(args.seconds)],
            stdout=subprocess.PIPE, text=True,
        )
        sent = json.loads(sender.communicate()[0])
        control = Control(port)
        final = control.status()
        control.command("STOP")
        control.command("CLOSE")
        module.wait(60)
        control.close()
    finally:
        if module.poll() is None:
            module.kill()
            module.wait()
        module.stdout.close()
    rec = ampkit.io.read(record)
    times = rec.timestamps
    landed = {text: (sample, times[0] + t) for sample, t, text in rec.markers}
    print(f"\nclient of the serve connection: {client}; module: {args.channels} ch x "
          f"{args.fs:g} Hz, LSL on, recording XDF; {final['samples']} samples, "
          f"{final['gaps']} gaps, {final['errors']} command errors")
    print(f"{'path':<16} {'sent':>6} {'lost':>5} | marker time - send (ms): {'median':>8} "
          f"{'p99':>8} {'max':>8} | sample time - send (ms): {'median':>8} {'p99':>8} "
          f"{'max':>8}")
    medians = {}
    for path, prefix in (("serve", "serve"), ("marker server", "tcp")):
        errors, sample_errors, lost = [], [], 0
        for i, t_sent in enumerate(sent[path]):
            got = landed.get(f"{prefix} {i}")
            if got is None:
                lost += 1
                continue
            sample, t = got
            errors.append(t - t_sent)
            sample_errors.append(times[sample] - t_sent)
        e = np.array(errors) * 1000
        s = np.array(sample_errors) * 1000
        medians[path] = (np.median(e), np.median(s))
        print(f"{path:<16} {len(sent[path]):>6} {lost:>5} | {'':>24} {stats(e)} | "
              f"{'':>24}{stats(s)}")
    (serve, serve_sample), (server, server_sample) = medians["serve"], medians["marker server"]
    print(f"serve median / marker server median: marker time {serve / server:.2f} "
          f"(goal <= 2), sample time {serve_sample / server_sample:.2f}")


def stats(ms: np.ndarray) -> str:
    if not len(ms):
        return f"{'-':>8} {'-':>8} {'-':>8}"
    return f"{np.median(ms):8.3f} {np.percentile(ms, 99):8.3f} {np.max(ms):8.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="markers/s on each path")
    parser.add_argument("--fs", type=float, default=10_000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", default="nodelay", help=argparse.SUPPRESS)
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--marker-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        run_sender(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for client in ("dareplane", "nodelay"):
            one_round(client, args, tmp)


if __name__ == "__main__":
    main()
