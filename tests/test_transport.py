"""Byte streams (ampkit.transport) over real sockets on 127.0.0.1, real ptys and pyserial URLs."""

import os
import socket
import time

import pytest

from ampkit.errors import AmpNotAvailableError, ConfigurationError, ConnectionLostError
from ampkit.transport import SerialTransport, TCPTransport, open_stream
from ampkit.worker import Worker


@pytest.fixture
def server():
    """A listening socket; ``accept()`` gives the connection of the transport."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)
    yield listener
    listener.close()


def test_tcp_reads_what_is_there_and_waits_for_what_it_wants(server):
    port = server.getsockname()[1]
    with open_stream(f"tcp://127.0.0.1:{port}", name="dev") as stream:
        assert isinstance(stream, TCPTransport)
        peer, _ = server.accept()
        buf = bytearray(100)
        assert stream.recv_into(buf, 0.0) == 0  # nothing there, no wait
        t0 = time.monotonic()
        assert stream.recv_into(buf, 0.2) == 0  # waited, nothing came
        assert time.monotonic() - t0 >= 0.15

        def send(stop):
            stop.wait(0.2)  # the read below is waiting by then
            peer.sendall(b"x" * 10)
            stop.wait(0.2)
            peer.sendall(b"y" * 10)

        with Worker(send, "sender"):
            # Asked for 20 bytes: one wake-up when all 20 are there.
            assert stream.recv_into(buf, 5.0, want=20) == 20
        assert bytes(buf[:20]) == b"x" * 10 + b"y" * 10
        stream.write(b"command")
        assert peer.recv(100) == b"command"
        peer.close()
        with pytest.raises(ConnectionLostError, match="^dev: the server closed the connection"):
            stream.recv_into(buf, 1.0)


def test_tcp_without_a_server_is_not_available(server):
    port = server.getsockname()[1]
    server.close()
    with pytest.raises(AmpNotAvailableError, match=f"127.0.0.1:{port}: cannot connect"):
        TCPTransport("127.0.0.1", port, 1.0)


def test_a_pty_is_read_through_its_descriptor_and_its_loss_is_reported():
    master, slave = os.openpty()
    port = os.ttyname(slave)
    try:
        with SerialTransport(port, name="the device") as stream:
            assert stream._fd is not None  # the descriptor path, not pyserial's read
            os.write(master, b"hello\n")
            buf = bytearray(64)
            n = stream.recv_into(buf, 2.0)
            assert bytes(buf[:n]).startswith(b"hello")
            stream.write(b"START\n")
            assert os.read(master, 100) == b"START\n"
            os.close(master)  # unplugged
            master = None
            with pytest.raises(ConnectionLostError, match="^the device went away"):
                for _ in range(10):
                    stream.recv_into(buf, 0.5)
    finally:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)


def test_pyserial_urls_and_read_until():
    with open_stream("loop://") as stream:
        assert isinstance(stream, SerialTransport) and stream._fd is None
        stream.write(b"answer one$$$rest")
        assert stream.read_until(b"$$$", 2.0) == b"answer one"
        assert stream.read(100, 1.0) == b"rest"  # nothing after the terminator was taken
        assert stream.read(100, 0.0) == b""
        assert stream.read_until(b"$$$", 0.2) is None  # no answer in time


def test_bad_urls_and_ports():
    with pytest.raises(ConfigurationError, match="tcp://host:port"):
        open_stream("tcp://nohost")
    with pytest.raises(AmpNotAvailableError, match="could not open '/dev/does-not-exist-"):
        open_stream("/dev/does-not-exist-ampkit")


def test_an_exclusive_port_is_refused_to_a_second_opener():
    master, slave = os.openpty()
    try:
        with SerialTransport(os.ttyname(slave)):
            with pytest.raises(AmpNotAvailableError, match="lock"):
                SerialTransport(os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)
