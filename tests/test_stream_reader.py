"""StreamReader (ampkit.reader): buffers sized by the codec, views handed out
uncopied, pooled buffers reused only when free, the caller's reads and the
thread's, silence; over real sockets on 127.0.0.1."""

import socket
import struct
import threading
import time

import numpy as np
import pytest

from ampkit.clock import local_clock
from ampkit.codec import Chunk
from ampkit.errors import ConnectionLostError, ProtocolError
from ampkit.reader import SilenceWatch, StreamReader
from ampkit.transport import TCPTransport
from ampkit.worker import Worker


class FramedCodec:
    """Frames of ``uint32 n`` then ``n`` rows of 2 float32: each frame one chunk,
    a view of the bytes it came in when it came whole (as RDA's codec)."""

    def __init__(self):
        self._head, self._body, self._fed = b"", None, []

    @property
    def missing(self):
        return 4 - len(self._head) if self._body is None else self._body - len(self._fed)

    @property
    def read_ahead(self):
        return 0 if self._body is None else 4

    def feed(self, data):
        view, events = memoryview(data), []
        while len(view):
            if self._body is None:
                take = 4 - len(self._head)
                self._head += bytes(view[:take])
                view = view[take:]
                if len(self._head) == 4:
                    (n,) = struct.unpack("<I", self._head)
                    if n > 100_000:
                        raise ProtocolError(f"frame of {n} rows")
                    self._body, self._fed = 8 * n, b""
            else:
                take = self._body - len(self._fed)
                if not self._fed and len(view) >= take:
                    body = view[:take]  # whole: a view, no copy
                else:
                    self._fed += bytes(view[:take])
                    body = self._fed
                view = view[take:]
                if len(body) == self._body:
                    events.append(Chunk(np.frombuffer(body, np.float32).reshape(-1, 2)))
                    self._head, self._body = b"", None
        return events


def frame(i, rows=50):
    return struct.pack("<I", rows) + np.full((rows, 2), i, np.float32).tobytes()


def connected(payloads, pause=0.0):
    """A server sending ``payloads`` (a pause between them) and a transport to it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve(stop):
        conn, _ = listener.accept()
        with conn:
            for payload in payloads:
                conn.sendall(payload)
                stop.wait(pause)
            stop.wait(10)

    server = Worker(serve, "server").start()
    return listener, server, TCPTransport("127.0.0.1", listener.getsockname()[1])


def test_chunks_are_views_of_pooled_buffers_reused_only_once_free():
    # 72 KB frames: big enough for the pool.
    listener, server, transport = connected([frame(i, 9000) for i in range(200)], pause=0.001)
    got = []
    reader = StreamReader(transport, FramedCodec(), lambda ev, t: got.extend(ev), "test")
    with listener, server:
        kept, seen = [], 0
        deadline = time.monotonic() + 20
        while seen < 200 and time.monotonic() < deadline:
            reader.read(0.1)  # in this thread: nothing started in the background
            for chunk in got:
                # Received whole into a pooled buffer, handed out as a view of it.
                assert any(np.shares_memory(chunk.data, b) for b in reader._pool._buffers)
                if chunk.data[0, 0] % 10 == 0:
                    kept.append(chunk.data)  # held, like a late caller's arrays
                else:
                    chunk.data[:] = -1  # its owner writes to it, then drops it
            seen += len(got)
            got.clear()
        reader.close()
    assert [int(k[0, 0]) for k in kept] == list(range(0, 200, 10))
    for data in kept:  # never overwritten by a later message
        assert np.all(data == data[0, 0])
    # Few buffers in all: those dropped were reused.
    assert len(reader._pool._buffers) <= len(kept) + 10


def test_the_caller_reads_while_it_calls_and_the_thread_when_it_does_not():
    listener, server, transport = connected([frame(i, 5) for i in range(400)], pause=0.005)
    readers = []

    def on_events(events, arrival):
        readers.extend([threading.get_ident()] * len(events))

    reader = StreamReader(transport, FramedCodec(), on_events, "test").start()
    with listener, server:
        try:
            time.sleep(0.3)  # nobody calls: the thread reads
            assert len(readers) >= 10 and threading.get_ident() not in readers
            start = len(readers)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.5:
                reader.read(0.1)
            mine = readers[start:].count(threading.get_ident())
            assert mine >= 0.9 * (len(readers) - start) and mine >= 20
        finally:
            reader.close()


def test_a_silent_stream_ends_the_reader_with_connection_lost():
    listener, server, transport = connected([frame(0)])
    watch = SilenceWatch(0.3)
    reader = StreamReader(transport, FramedCodec(), lambda ev, t: watch.heard(t, 0.01),
                          "dev", silence=watch)
    watch.arm(local_clock())
    with listener, server:
        reader.start()
        deadline = time.monotonic() + 10
        while reader.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ConnectionLostError, match="^dev: no data for .* silence_timeout"):
            reader.check()
        reader.close()
