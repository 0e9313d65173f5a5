"""Byte streams from devices: a TCP connection, a serial port, a pty, a pyserial URL.

A transport moves bytes and nothing else: it knows no protocol (that is the
codec's job, :mod:`ampkit.protocols`) and owns no thread (the streaming layer,
:mod:`ampkit.streaming`, decides who reads and when). Each one offers the
same three calls:

* :meth:`Transport.recv_into` -- read what has arrived into a buffer the
  caller owns, waiting up to a timeout when nothing has; ``want`` says how
  many bytes would be worth waking up for (a TCP socket waits for them with
  ``SO_RCVLOWAT``, others ignore it);
* :meth:`Transport.write` -- send bytes (commands to a device);
* :meth:`Transport.close`.

A transport that fails raises :class:`~ampkit.errors.ConnectionLostError`
whose message starts with its ``name`` (the driver passes its own, e.g.
``'RDA 10.0.0.5:51244'``), so the error names the device and says what
happened.

:func:`open_stream` opens one from a URL or path: ``tcp://host:port`` is a
:class:`TCPTransport` (a non-blocking socket of its own), anything else goes
to pyserial's ``serial_for_url`` (device names such as ``/dev/ttyUSB0`` or
``COM3``, ptys, ``socket://host:port``, ``loop://``, ``spy://...``) as a
:class:`SerialTransport`. A USB bulk endpoint is
:class:`ampkit.usb.USBTransport`.
"""

from __future__ import annotations

import os
import select
import socket
from urllib.parse import urlsplit

import serial

from ampkit.clock import local_clock
from ampkit.errors import AmpNotAvailableError, ConfigurationError, ConnectionLostError
from ampkit.worker import Closing

__all__ = ["Transport", "TCPTransport", "SerialTransport", "open_stream"]

#: Largest SO_RCVLOWAT asked for (Linux caps it at half the receive buffer).
_LOWAT_MAX = 4 * 2**20
#: pyserial's read timeout on ports without a file descriptor to wait on.
_SERIAL_POLL = 0.05


class Transport(Closing):
    """A byte stream to a device (the interface; see the module's documentation).

    Attributes
    ----------
    name : str
        Names the device in error messages.
    """

    name = ""

    def recv_into(self, buffer: memoryview, timeout: float = 0.0, want: int = 1) -> int:
        """Read the bytes that have arrived (at most ``len(buffer)``) into ``buffer``.

        Parameters
        ----------
        buffer : writable buffer
            Where the bytes go (a memoryview, bytearray or uint8 array).
        timeout : float
            Seconds to wait when nothing has arrived; 0 returns at once.
        want : int
            Bytes worth waking up for (a hint; the call may return fewer).

        Returns
        -------
        int
            Bytes read; 0 when none came within ``timeout``.

        Raises
        ------
        ampkit.errors.ConnectionLostError
            The stream ended or failed.
        """
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send ``data`` entirely.

        Raises
        ------
        ampkit.errors.ConnectionLostError
            Writing failed.
        """
        raise NotImplementedError

    def read(self, n: int, timeout: float = 0.0) -> bytes:
        """Up to ``n`` bytes that have arrived, waiting up to ``timeout`` for some
        (for dialogues with a device; streaming reads use :meth:`recv_into`)."""
        buffer = bytearray(n)
        return bytes(buffer[: self.recv_into(buffer, timeout)])

    def read_until(self, terminator: bytes, timeout: float, limit: int = 65536) -> bytes | None:
        """The bytes before ``terminator`` (a device's answer to a command).

        Read one byte at a time, so nothing after the terminator is taken
        from the stream. Returns None when it did not come within
        ``timeout`` seconds or ``limit`` bytes.
        """
        data, one = bytearray(), bytearray(1)
        deadline = local_clock() + timeout
        while not data.endswith(terminator):
            left = deadline - local_clock()
            if left <= 0 or len(data) > limit:
                return None
            if self.recv_into(one, left):
                data += one
        return bytes(data[: len(data) - len(terminator)])


class TCPTransport(Transport):
    """A TCP connection, non-blocking: a read takes what is there with one
    system call and waits (``poll``) only when nothing is.

    Parameters
    ----------
    host, port : str, int
        The server.
    timeout : float
        Seconds to wait for the connection.
    name : str, optional
        Names the server in errors; ``'host:port'`` by default.

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        Nobody accepts connections there.
    """

    def __init__(self, host: str, port: int, timeout: float = 5.0, name: str = "") -> None:
        self.name = name or f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise AmpNotAvailableError(f"{self.name}: cannot connect ({exc})") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock
        self._lowat = 1
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(sock, select.POLLIN)

    def recv_into(self, buffer: memoryview, timeout: float = 0.0, want: int = 1) -> int:
        sock = self._sock
        try:
            try:
                n = sock.recv_into(buffer)
            except BlockingIOError:
                if timeout <= 0 or not self._wait(timeout, want):
                    return 0
                n = sock.recv_into(buffer)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise ConnectionLostError(f"{self.name}: connection failed: {exc}") from None
        if n == 0:
            raise ConnectionLostError(f"{self.name}: the server closed the connection")
        return n

    def _wait(self, timeout: float, want: int) -> bool:
        """Wait until ``want`` bytes (or an end) are there: one wake-up for a
        whole message, not one for each piece the network splits it into."""
        want = max(1, min(want, _LOWAT_MAX))
        if want != self._lowat and hasattr(socket, "SO_RCVLOWAT"):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
            self._lowat = want
        if self._poller is not None:
            return bool(self._poller.poll(timeout * 1000.0))
        return bool(select.select([self._sock], [], [], timeout)[0])

    def write(self, data: bytes) -> None:
        try:
            self._sock.setblocking(True)
            try:
                self._sock.sendall(data)
            finally:
                self._sock.setblocking(False)
        except OSError as exc:
            raise ConnectionLostError(f"{self.name}: sending failed: {exc}") from None

    def close(self) -> None:
        self._sock.close()


class SerialTransport(Transport):
    """A serial port, pty or pyserial URL, opened with ``serial_for_url``.

    A POSIX device port is read through its file descriptor without
    blocking (``select``, then ``os.readv`` into the caller's buffer); other
    ports and URLs through pyserial's ``read``.

    Parameters
    ----------
    url : str
        Device name (``/dev/ttyUSB0``, ``COM3``) or pyserial URL.
    baudrate : int
        Bits per second (8 data bits, no parity, 1 stop bit).
    timeout : float
        Seconds a write may take.
    name : str, optional
        Names the device in errors; ``url`` by default.
    exclusive : bool
        Lock the port, so another program (or a probe) cannot send commands
        into a running stream.

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        The port cannot be opened (absent, in use, no permission).
    """

    def __init__(
        self, url: str, baudrate: int = 115200, timeout: float = 3.0, name: str = "",
        exclusive: bool = True,
    ) -> None:
        self.name = name or url
        try:
            self._serial = serial.serial_for_url(
                url, baudrate=baudrate, bytesize=8, parity="N", stopbits=1,
                timeout=_SERIAL_POLL, write_timeout=timeout, exclusive=exclusive,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise AmpNotAvailableError(f"could not open {url!r}: {exc}") from exc
        fd = getattr(self._serial, "fd", None)
        plain = os.name == "posix" and type(self._serial) is serial.Serial
        self._fd: int | None = fd if plain and isinstance(fd, int) else None

    def recv_into(self, buffer: memoryview, timeout: float = 0.0, want: int = 1) -> int:
        try:
            if self._fd is None:
                return self._read_url(buffer, timeout, want)
            if not select.select([self._fd], [], [], max(timeout, 0.0))[0]:
                return 0
            n = os.readv(self._fd, [buffer])
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLostError(f"{self.name} went away: {exc}") from None
        if n == 0:
            raise ConnectionLostError(f"{self.name} went away: end of file (unplugged?)")
        return n

    def _read_url(self, buffer: memoryview, timeout: float, want: int) -> int:
        ser = self._serial
        deadline = local_clock() + timeout
        while True:
            waiting = ser.in_waiting
            if waiting or timeout > 0:
                data = ser.read(max(1, min(max(waiting, want), len(buffer))))
                if data:
                    buffer[: len(data)] = data
                    return len(data)
            if local_clock() >= deadline:
                return 0

    def write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
            self._serial.flush()
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLostError(f"writing to {self.name} failed: {exc}") from None

    def close(self) -> None:
        self._serial.close()


def open_stream(url: str, timeout: float = 5.0, name: str = "", **options: object) -> Transport:
    """Open a byte stream from a URL or path.

    Parameters
    ----------
    url : str
        ``tcp://host:port`` for a :class:`TCPTransport`; anything else
        (a device path, ``socket://host:port``, ``loop://``...) for a
        :class:`SerialTransport`.
    timeout : float
        Seconds to wait for a connection, or for a write.
    name : str, optional
        Names the device in errors.
    **options
        Passed on to :class:`SerialTransport` (``baudrate``, ``exclusive``).

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        The stream cannot be opened.
    ampkit.errors.ConfigurationError
        A ``tcp://`` URL without host and port.

    Examples
    --------
    >>> with open_stream("loop://") as stream:
    ...     stream.write(b"hello")
    ...     stream.read(16, timeout=1.0)
    b'hello'
    """
    if url.startswith("tcp://"):
        parts = urlsplit(url)
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host or not port:
            raise ConfigurationError(f"a TCP stream is tcp://host:port, got {url!r}")
        return TCPTransport(host, port, timeout, name)
    return SerialTransport(url, timeout=timeout, name=name, **options)  # type: ignore[arg-type]
