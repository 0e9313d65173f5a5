"""A simulator of the line device of ``linedevice.py`` on a pseudo-terminal (POSIX).

It speaks the device's side: after ``START`` a line ``D <k mod 1000> ...`` per
sample at 100 Hz (sample ``k``, channel ``c`` carries ``k + c / 10`` µV),
until ``STOP``. :meth:`LineDeviceSimulator.drop` skips lines (a loss the
sample numbers show), :meth:`~LineDeviceSimulator.mark` sends a marker,
:meth:`~LineDeviceSimulator.mute` falls silent (until ``START``),
:meth:`~LineDeviceSimulator.send` writes any bytes, and ``close()`` unplugs.
"""

import os
import select
import threading
import tty

import numpy as np
from linedevice import CHANNELS, FS, MODULUS

from ampkit.pacing import Pacer
from ampkit.worker import Closing, Worker


def expected(first, n):
    """The µV of samples ``first`` .. ``first + n - 1``."""
    return np.arange(first, first + n)[:, None] + np.arange(len(CHANNELS)) / 10


class LineDeviceSimulator(Closing):
    """The device behind a pty; give :attr:`port` to the driver."""

    def __init__(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing
        os.set_blocking(self._master, False)  # stop() must not wait for a reader
        self.port = os.ttyname(self._slave)
        self._fds = (self._master, self._slave)
        self.streaming = self.muted = False
        self.sent = 0  # samples produced since START (dropped ones too)
        self._drop, self._out, self._pending = 0, [], b""
        self._lock = threading.Lock()
        self._worker = Worker(self._run, f"line device on {self.port}").start()

    def drop(self, n):
        """Do not send the next ``n`` samples."""
        with self._lock:
            self._drop += n

    def mark(self, text):
        """Send a marker (before the next sample)."""
        self.send(f"M {text}\n".encode())

    def send(self, data):
        """Write ``data`` before the next sample."""
        with self._lock:
            self._out.append(data)

    def mute(self):
        """Keep producing samples but send nothing (until the next ``START``)."""
        self.muted = True

    def _run(self, stop):
        commands, pacer = b"", Pacer(FS)
        while not stop.is_set():
            if self._pending:  # what the pty did not take yet, kept whole
                try:
                    self._pending = self._pending[os.write(self._master, self._pending):]
                except BlockingIOError:
                    pass
            if select.select([self._master], [], [], 0.005)[0]:
                *lines, commands = (commands + os.read(self._master, 1024)).split(b"\n")
                for line in lines:
                    if line.strip() == b"START":
                        self.streaming, self.muted, self.sent = True, False, 0
                        pacer.start()
                    elif line.strip() == b"STOP":
                        self.streaming = False
            if not self.streaming:
                continue
            out = []
            for k in range(self.sent, self.sent + pacer.due()):
                with self._lock:
                    out += self._out
                    self._out.clear()
                    if self._drop:
                        self._drop -= 1
                        continue
                values = " ".join(f"{v:g}" for v in expected(k, 1)[0])
                out.append(f"D {k % MODULUS} {values}\n".encode())
            self.sent = pacer.count
            if not self.muted and len(self._pending) < 2**20:
                self._pending += b"".join(out)

    def close(self):
        """Stop and close the pty: the port disappears, as when unplugged."""
        self._worker.stop()
        fds, self._fds = self._fds, ()
        for fd in fds:
            os.close(fd)
