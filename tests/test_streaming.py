"""StreamingAmp (ampkit.streaming): the semantics every byte-stream driver
shares, with a scripted device on a real pty whose lines are the codec's events."""

import logging
import os
import threading
import time
import tty

import numpy as np
import pytest
from reading import read_until

from ampkit.block import GAP_MARKER
from ampkit.codec import Chunk, Layout, Started, Stopped
from ampkit.errors import (
    AmpNotAvailableError,
    ConnectionLostError,
    ProtocolError,
    StateError,
    StreamEndedError,
)
from ampkit.streaming import StreamingAmp, check_stream_options
from ampkit.transport import open_stream


class ScriptCodec:
    """One line, one event: ``S <channels> <fs>``, ``P`` (stop),
    ``D <lost or ?> <rows>`` (rows of value 1, 2, ...), ``M <row> <text>``."""

    missing, read_ahead = 1, 4096

    def __init__(self):
        self._rest, self._next = b"", 1.0

    def feed(self, data):
        *lines, self._rest = (self._rest + bytes(data)).split(b"\n")
        events, chunk = [], None
        for line in lines:
            kind, *args = line.decode().split()
            if kind == "S":
                events.append(Started(Layout(tuple(f"C{i}" for i in range(int(args[0]))),
                                             float(args[1]))))
            elif kind == "P":
                events.append(Stopped("the script said so"))
            elif kind == "D":
                rows = int(args[1])
                values = self._next + np.arange(rows, dtype=np.float32)
                self._next += rows
                chunk = Chunk(np.repeat(values[:, None], 2, axis=1),
                              None if args[0] == "?" else int(args[0]), [], 7)
                events.append(chunk)
            elif kind == "M":
                chunk.markers.append((int(args[0]), args[1]))
            elif kind == "X":
                raise ProtocolError("script: bad line")
        return events


class ScriptAmp(StreamingAmp):
    """Its device answers the port's opening with ``script`` (written to the
    pty's other end, ``master``)."""

    master, script = None, b""

    def configure(self, port=None, timeout=2.0, buffer_seconds=60.0, silence_timeout=None,
                  on_stop="wait"):
        check_stream_options(timeout, buffer_seconds, False, silence_timeout, on_stop)
        self.port, self.timeout, self.buffer_seconds = port, timeout, buffer_seconds
        self.silence_timeout, self.on_stop = silence_timeout, on_stop

    def open_transport(self, timeout):
        return open_stream(self.port, timeout, name="script")

    def start_stream(self, transport):
        os.write(self.master, self.script)

    def new_codec(self, reconnected):
        return ScriptCodec()

    @staticmethod
    def is_available():
        return True


@pytest.fixture
def device():
    """(master fd to write the script to, the pty's port)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


def scripted(device, script=b"S 2 100\n", **config):
    amp = ScriptAmp()
    amp.configure(port=device[1], **config)
    amp.master, amp.script = device[0], script
    return amp


def started(device, script=b"S 2 100\n", **config):
    amp = scripted(device, script, **config)
    amp.start()
    return amp


def test_state_checks_have_one_meaning(device):
    amp = scripted(device)
    with pytest.raises(StateError, match="get_data\\(\\) before start"):
        amp.get_data()
    with pytest.raises(StateError, match="stop\\(\\) while not running"):
        amp.stop()
    amp.close()  # any state
    amp.start()
    with pytest.raises(StateError, match="start\\(\\) while running"):
        amp.start()
    with pytest.raises(StateError, match="configure\\(\\) while running"):
        amp.configure(port=device[1])  # the driver's own configure() does not check
    amp.stop()
    with pytest.raises(StateError):
        amp.stop()
    amp.close()


def test_the_chunks_before_a_stop_in_the_same_read_are_delivered_then_it_ends(device):
    amp = started(device, on_stop="raise")
    os.write(device[0], b"D 0 3\nD 0 4\nP\n")  # one write: one read
    data, _ = read_until(amp, 7, fs=100)
    np.testing.assert_array_equal(data[:, 0], np.arange(1, 8))
    with pytest.raises(StreamEndedError, match="script said so"):
        for _ in range(20):
            amp.get_data()
    amp.close()


def test_a_stop_waits_and_a_new_start_goes_on_after_a_gap(device):
    amp = started(device)
    os.write(device[0], b"D 0 5\nP\n")
    read_until(amp, 5, fs=100)
    assert len(amp.get_data()[0]) == 0 and amp.stream_stopped
    time.sleep(0.2)
    os.write(device[0], b"S 2 100\nD ? 5\n")  # the counter restarted: estimated from time
    data, marks = read_until(amp, 5, fs=100)
    ((row, text),) = marks
    assert row == 0 and int(text.split()[-1]) >= 15  # about 0.2 s at 100 Hz
    assert amp.gap_count == 1 and not amp.stream_stopped
    os.write(device[0], b"S 3 100\n")  # another layout while running
    with pytest.raises(ProtocolError, match="different setup"):
        for _ in range(20):
            amp.get_data()
    amp.close()


def test_losses_markers_past_their_chunk_and_overflow(device, caplog):
    amp = started(device, buffer_seconds=0.1)  # 10 samples at 100 Hz
    os.write(device[0], b"D 0 4\nM 9 late\nD 3 2\n")
    data, marks = read_until(amp, 6, fs=100)
    assert marks == [(3, "late"), (4, GAP_MARKER.format(n=3))]
    assert "marker 'late' at position 9 of block 7, which has 4 samples" in caplog.text
    os.write(device[0], b"D 0 8\nD 0 8\nD 0 8\n")  # 24 samples for a buffer of 10
    time.sleep(0.3)  # the background thread reads them
    data, marks = read_until(amp, 8, fs=100)
    assert marks == [(0, GAP_MARKER.format(n=16))] and len(data) == 8
    assert amp.gap_count == 2 and amp.lost_samples == 19
    assert "buffer of 0.1 s full" in caplog.text
    amp.close()


def test_a_failed_start_leaves_nothing_open(device):
    threads = set(threading.enumerate())
    fds = len(os.listdir("/proc/self/fd"))
    amp = scripted(device, b"", timeout=0.3)
    with pytest.raises(AmpNotAvailableError, match="sent no start message within 0.3 s"):
        amp.start()  # the device never says S
    amp.script = b"S 2 100\nX\n"
    with pytest.raises(ProtocolError, match="bad line"):
        amp.start()
        read_until(amp, 1, fs=100)
    amp.close()
    assert len(os.listdir("/proc/self/fd")) == fds
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - threads:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_silence_is_a_lost_connection(device, caplog):
    caplog.set_level(logging.INFO, logger="ampkit")
    amp = started(device, silence_timeout=0.3)
    os.write(device[0], b"D 0 5\n")
    read_until(amp, 5, fs=100)
    with pytest.raises(ConnectionLostError, match="no data for"):
        for _ in range(100):
            amp.get_data()
    amp.close()
