"""One RDA data message with very many markers, through the decorated ``rda`` driver.

A server (a plain socket on loopback) sends a start message, then one data
message of 20 samples carrying ``N`` markers of 16 bytes each (no strings:
a million of them make a 16 MiB message), their positions cycling over the
block's samples (unsorted, the costly order). Timed: from the message's
send to the last of its markers returned by ``AmpDecorator.get_data()``.

Compared in the same run with the least Python work per marker, the limit:
``struct.iter_unpack`` over the marker bytes into ``(ms, text)`` tuples,
then a sort by time. Reported per ``N``: seconds, µs per marker, the ratio
to the limit, and for the largest ``N`` the growth against the smallest
(linear work grows as ``N`` does).

Run: ``python benchmarks/bench_rda_markers.py [--markers 200000 1000000]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import threading
import time

os.environ.setdefault("AMPKIT_MARKER_PORT", "off")

import numpy as np  # noqa: E402

import ampkit  # noqa: E402
from ampkit.protocols import rda  # noqa: E402

POINTS = 20
_MARKER = struct.Struct("<IIIi")


def message(n: int) -> bytes:
    """A float32 data message of 20 samples x 2 channels and ``n`` markers."""
    marks = b"".join(_MARKER.pack(16, i % POINTS, 1, -1) for i in range(n))
    body = struct.pack("<III", 0, POINTS, n) + np.zeros((POINTS, 2), "<f4").tobytes() + marks
    return rda.encode_message(rda.TYPE_DATA_FLOAT32, body)


def through_ampkit(raw: bytes, n: int) -> float:
    """Seconds from sending ``raw`` to ``get_data()`` having returned ``n`` markers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sent = threading.Event()
    t_send = [0.0]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(rda.encode_start(["A", "B"], 1000.0, [1.0, 1.0]))
            sent.wait()
            t_send[0] = time.perf_counter()
            conn.sendall(raw)
            time.sleep(3600)

    threading.Thread(target=serve, daemon=True).start()
    try:  # the server says nothing after the message: not a silence to act on
        amp = ampkit.get_amp("rda", port=listener.getsockname()[1], silence_timeout=3600.0)
    except TypeError:  # ampkit before the silence timeout (to measure it too)
        amp = ampkit.get_amp("rda", port=listener.getsockname()[1])
    with listener, amp:
        amp.start()
        got = 0
        sent.set()
        while got < n:
            got += len(amp.get_data()[1])
        elapsed = time.perf_counter() - t_send[0]
        amp.stop()
    return elapsed


def limit(raw: bytes, n: int) -> float:
    """Seconds for the least per-marker work: unpack, make (ms, text), sort."""
    t0 = time.perf_counter()
    start = len(raw) - 16 * n
    out = [(p * 1.0, "") for _, p, _, _ in _MARKER.iter_unpack(raw[start:])]
    out.sort(key=lambda m: m[0])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markers", type=int, nargs="+", default=[200_000, 1_000_000])
    args = parser.parse_args()
    rows = []
    for n in args.markers:
        raw = message(n)
        t_ampkit = through_ampkit(raw, n)
        t_limit = limit(raw, n)
        rows.append((n, len(raw), t_ampkit, t_limit))
        print(f"{n:>9} markers, {len(raw) / 2**20:5.1f} MiB: ampkit {t_ampkit:7.2f} s "
              f"({t_ampkit / n * 1e6:5.2f} µs/marker), limit {t_limit:5.2f} s, "
              f"ratio {t_ampkit / t_limit:5.1f}", flush=True)
    if len(rows) > 1:
        (n0, _, a0, l0), (n1, _, a1, l1) = rows[0], rows[-1]
        print(f"growth {n0} -> {n1} markers (x{n1 / n0:g}): ampkit x{a1 / a0:.1f}, "
              f"limit x{l1 / l0:.1f}")


if __name__ == "__main__":
    main()
