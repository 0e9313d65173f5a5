"""A driver for a made-up serial device that sends one text line per sample.

After ``START`` (until ``STOP``) the device streams 4 channels at 100 Hz::

    D 41 12.5 -3.25 0.5 7      sample number 41 (0..999, then 0 again), 4 values in µV
    M button                   a marker at the next sample
"""

import numpy as np

from ampkit.codec import Chunk, Layout
from ampkit.errors import ConfigurationError, ProtocolError
from ampkit.streaming import StreamingAmp, check_stream_options
from ampkit.transport import open_stream

CHANNELS = ("Fz", "Cz", "Pz", "Oz")
FS = 100.0
MODULUS = 1000  # the sample number wraps here
MAX_LINE = 200  # a longer line is garbage


class LineCodec:
    """Lines in, chunks out: a new chunk after each loss the sample numbers show."""

    missing, read_ahead = 1, 4096  # any byte may end a line; read what is there

    def __init__(self, source):
        self.source, self._rest, self._last = source, b"", None

    def feed(self, data):
        *lines, self._rest = (self._rest + bytes(data)).split(b"\n")
        if len(self._rest) > MAX_LINE:
            raise ProtocolError(f"{self.source}: no end of line in {len(self._rest)} bytes")
        chunks, rows, marks, lost = [], [], [], 0
        for line in lines:
            kind, _, rest = line.strip().partition(b" ")
            if kind == b"M":
                marks.append((len(rows), rest.decode("utf-8", "replace")))
            elif kind == b"D":
                number, values = self._sample(rest)
                skipped = 0 if self._last is None else (number - self._last - 1) % MODULUS
                self._last = number
                if skipped and (rows or marks):
                    chunks.append(Chunk(np.array(rows, np.float32).reshape(-1, 4), lost, marks))
                    rows, marks, lost = [], [], 0
                lost += skipped
                rows.append(values)
            elif kind:
                raise ProtocolError(f"{self.source}: unknown line {line[:40]!r}")
        if rows or marks or lost:
            chunks.append(Chunk(np.array(rows, np.float32).reshape(-1, 4), lost, marks))
        return chunks

    def _sample(self, text):
        try:
            number, *values = text.split()
            number, values = int(number), [float(v) for v in values]
        except ValueError:  # also too few fields to unpack
            number, values = -1, []
        if not 0 <= number < MODULUS or len(values) != len(CHANNELS):
            raise ProtocolError(f"{self.source}: bad sample line {text[:40]!r}")
        return number, values


class LineAmp(StreamingAmp):
    """The line device on a serial port (``/dev/ttyUSB0``, a pty, a pyserial URL)."""

    @property
    def name(self):
        return f"line device on {self.port}"

    def configure(self, port=None, timeout=2.0, buffer_seconds=60.0, silence_timeout=None):
        if port is not None and not isinstance(port, str):
            raise ConfigurationError(f"port must be a string, got {port!r}")
        check_stream_options(timeout, buffer_seconds, False, silence_timeout, "wait")
        self.port, self.timeout, self.buffer_seconds = port, timeout, buffer_seconds
        self.silence_timeout = silence_timeout

    def known_layout(self):
        return Layout(CHANNELS, FS)

    def open_transport(self, timeout):
        if self.port is None:
            raise ConfigurationError("no port: configure(port=...)")
        return open_stream(self.port, timeout, name=self.name)

    def start_stream(self, transport):
        transport.write(b"START\n")

    def stop_stream(self, transport):
        transport.write(b"STOP\n")

    def new_codec(self, reconnected):
        return LineCodec(self.name)

    @staticmethod
    def is_available():
        return False  # a serial device cannot be found without its port
