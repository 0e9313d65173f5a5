"""The ``rda`` driver: BrainVision Recorder (or any RDA server) over TCP.

A :class:`~ampkit.streaming.StreamingAmp`: the codec is
:mod:`ampkit.protocols.rda`, the transport a
:class:`~ampkit.transport.TCPTransport`; this module adds what is RDA's own:
the layout from the start message, the block counter (``nBlock``) that
decides losses, scaling to µV by the channels' resolutions, markers as
``'<type>/<description>'``, and the stop message. Reading (in the caller's
thread while it calls ``get_data()``), stamping, gaps, the bounded buffer,
silence, reconnection and the stop semantics are the layer's.
"""

from __future__ import annotations

import logging
import socket

import numpy as np

from ampkit.amplifier import EitherMethod
from ampkit.codec import Chunk, Event, Layout, Started, Stopped
from ampkit.errors import AmpNotAvailableError, ConfigurationError
from ampkit.protocols.rda import (
    PORT_FLOAT32,
    PORT_INT16,
    DataMessage,
    RDAParser,
    StartMessage,
    StopMessage,
)
from ampkit.streaming import StreamingAmp, check_stream_options
from ampkit.transport import TCPTransport, Transport

__all__ = ["RDAAmp", "RDACodec"]

logger = logging.getLogger("ampkit")

_BLOCK_MASK = 0xFFFFFFFF


class _Scaler:
    """Multiplies raw samples by their channel's resolution (µV per unit).

    One flat pass over contiguous memory: a multiplication by one number when
    all channels share a resolution, none when it is 1, else by the
    resolutions repeated for a whole block (numpy's broadcasting over rows
    of a few hundred channels takes about twice as long).
    """

    def __init__(self, resolutions: np.ndarray) -> None:
        res = np.asarray(resolutions, np.float32)
        self._res = res
        self._one = res[0] if len(res) and np.all(res == res[0]) else None
        self._tiled = np.empty(0, np.float32)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` (points, channels) in µV, float32: scaled where it is
        when it is writable float32 (just received, so still in this core's
        cache), else into a new array."""
        out = raw if raw.dtype == np.float32 and raw.flags.writeable else np.empty(
            raw.shape, np.float32)
        one = self._one
        if one is not None:
            if one != 1 or out is not raw:
                np.multiply(raw, one, out=out, casting="unsafe")
            return out
        size = raw.size
        if len(self._tiled) < size:
            self._tiled = np.tile(self._res, len(raw))
        np.multiply(raw.reshape(-1), self._tiled[:size], out=out.reshape(-1), casting="unsafe")
        return out


class RDACodec:
    """RDA messages as streaming events: start messages as the layout, data
    messages as µV chunks whose losses ``nBlock`` tells, stop messages.

    Parameters
    ----------
    source : str
        The server, named in errors.
    reconnected : bool
        A new connection within the same run: the block counter may go on
        where it was (nothing lost), skip (blocks lost while away) or start
        again (a new recording: the layer estimates the gap from the time).
    """

    def __init__(self, source: str, reconnected: bool = False) -> None:
        self.parser = RDAParser(source=source)
        self.source = source
        self._last: int | None = None  # nBlock of the last data block
        self._points = 0  # samples in the last non-empty block
        self._new_run = reconnected  # a reconnection or a new start: check the counter
        self._stopped = False  # a stop message came since the last block
        self._scale: _Scaler | None = None

    def continue_from(self, other: RDACodec) -> None:
        """Take over ``other``'s block counter (a reconnection)."""
        self._last, self._points, self._stopped = other._last, other._points, other._stopped

    @property
    def missing(self) -> int:
        return self.parser.missing

    @property
    def read_ahead(self) -> int:
        return self.parser.read_ahead

    def feed(self, data: memoryview) -> list[Event]:
        """The events of the bytes; a protocol error after some comes last."""
        events: list[Event] = []
        for message in self.parser.feed(data):
            if type(message) is DataMessage:
                events.append(self._chunk(message))
            elif isinstance(message, StartMessage):
                self._scale = _Scaler(message.resolutions)
                self._new_run = self._new_run or self._last is not None
                events.append(Started(Layout(
                    tuple(message.channels), message.fs, tuple(message.resolutions.tolist()))))
            elif isinstance(message, StopMessage):
                self._stopped = True
                events.append(Stopped("the server's stop message: Recorder stopped monitoring"))
            else:
                logger.debug("%s: skipped message type %d", self.source, message.type)
        if self.parser.error is not None:
            events.append(self.parser.error)
        return events

    def _chunk(self, block: DataMessage) -> Chunk:
        assert self._scale is not None  # the parser refuses data before a start
        n = block.points
        lost = self._lost(block.block)
        if n:
            self._points = n
        marks = [(m[0], f"{m[1]}/{m[2]}") for m in block.markers]  # m.text, inlined
        return Chunk(self._scale(block.data), lost, marks, block.block)

    def _lost(self, block: int) -> int | None:
        """Samples lost before ``block`` by its number; None: the counter restarted."""
        last, self._last = self._last, block
        new_run, stopped = self._new_run, self._stopped
        self._new_run = self._stopped = False
        if last is None:
            return 0
        skipped = (block - last - 1) & _BLOCK_MASK
        if new_run and stopped:
            return None  # a new recording after a stop
        if skipped >= 1 << 31:
            return None  # the counter went back: a new recording
        return skipped * self._points


class RDAAmp(StreamingAmp):
    """Acquire from BrainVision Recorder, or any RDA server, over TCP.

    Channel names, sampling frequency and resolutions come from the server's
    start message: the first call that needs them (``get_channels()``,
    ``start()``...) connects and waits for it. Samples are delivered in µV
    (raw value times the channel's resolution, int16 and float32 alike);
    RDA markers become ``(ms, '<type>/<description>')`` markers, e.g.
    ``'Stimulus/S  1'``, at their sample. Sample times come from the
    layer's :class:`~ampkit.timestamps.SampleClock` (see :doc:`/timing`);
    ``nBlock`` alone decides losses. ``get_data()`` returns the buffer
    float32 samples were received into, scaled where they are (a copy only
    when it joins several blocks): the array is the caller's to keep.

    Attributes
    ----------
    gap_count, lost_samples : int
        Discontinuities found since ``start()`` and the samples lost in them.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('rda', host='192.168.1.20', port=51244)  # doctest: +SKIP
    >>> amp.start()                                                    # doctest: +SKIP
    >>> data, markers = amp.get_data()                                 # doctest: +SKIP
    """

    presets = [
        ["Recorder on this computer, float32 (port 51244)", {"port": PORT_FLOAT32}],
        ["Recorder on this computer, int16 (port 51234)", {"port": PORT_INT16}],
    ]

    host = "127.0.0.1"
    port = PORT_FLOAT32
    no_layout_hint = "is Recorder monitoring or recording?"

    def __init__(self) -> None:
        self._codec: RDACodec | None = None
        super().__init__()

    @property
    def name(self) -> str:
        """``'RDA host:port'``, used in log messages and errors."""
        return f"RDA {self.host}:{self.port}"

    @property
    def server_stopped(self) -> bool:
        """The server sent a stop message and no start message since."""
        return self.stream_stopped

    def configure(
        self,
        host: str = "127.0.0.1",
        port: int = PORT_FLOAT32,
        timeout: float = 5.0,
        reconnect: bool = False,
        buffer_seconds: float = 60.0,
        silence_timeout: float | None = None,
        on_stop: str = "wait",
    ) -> None:
        """Set the server's address and how to treat it.

        Parameters
        ----------
        host : str
            Name or address of the computer running Recorder.
        port : int
            51244 for float32 samples, 51234 for int16.
        timeout : float
            Seconds to wait for the connection and for the start message.
        reconnect : bool
            When the server goes away (or falls silent) during acquisition,
            reconnect and mark the gap instead of raising ConnectionLostError.
        buffer_seconds : float
            Samples kept for a caller that reads late; beyond that the oldest
            are dropped, logged and marked as a gap.
        silence_timeout : float, optional
            Seconds without a data block, while the server streams, after
            which the connection counts as lost. None (default): ten blocks'
            worth of time, at least 2 s; ``math.inf``: never.
        on_stop : {'wait', 'raise'}
            What the server's stop message (Recorder stops monitoring) does,
            once the blocks before it are read: ``'wait'`` returns empty
            blocks (:attr:`server_stopped` is true) until a new start
            message, then goes on with a gap marker; ``'raise'`` raises
            :class:`~ampkit.errors.StreamEndedError`.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A value of the wrong type or out of range.
        ampkit.errors.StateError
            Called while running (the streaming layer checks).
        """
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"host must be a non-empty string, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"port must be an integer in 1..65535, got {port!r}")
        check_stream_options(timeout, buffer_seconds, reconnect, silence_timeout, on_stop)
        self._disconnect()
        self.host, self.port, self.timeout = host, port, timeout
        self.reconnect, self.buffer_seconds = reconnect, buffer_seconds
        self.silence_timeout, self.on_stop = silence_timeout, on_stop

    def open_transport(self, timeout: float) -> Transport:
        try:
            return TCPTransport(self.host, self.port, timeout, self.name)
        except AmpNotAvailableError as exc:
            raise AmpNotAvailableError(
                f"no RDA server at {self.host}:{self.port} ({exc.__cause__ or exc}); is "
                "BrainVision Recorder running with Remote Data Access enabled, or "
                "`ampkit sim rda` started?"
            ) from None

    def new_codec(self, reconnected: bool) -> RDACodec:
        codec = RDACodec(self.name, reconnected)
        if reconnected and self._codec is not None:
            codec.continue_from(self._codec)
        self._codec = codec
        return codec

    def get_resolutions(self) -> np.ndarray:
        """µV per unit of each channel, from the start message (connects if needed)."""
        return np.array(self._layout().resolutions, np.float64)

    @EitherMethod
    def is_available(self) -> bool:
        """Whether an RDA server accepts connections at the configured address
        (the default address, ``127.0.0.1:51244``, when asked of the class)."""
        try:
            sock = socket.create_connection((self.host, self.port), min(self.timeout, 1.0))
        except OSError:
            return False
        sock.close()
        return True
