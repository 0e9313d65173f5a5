"""Live buffers: the last N seconds of signal, for closed-loop and BCI code.

Three classes with the attribute and method names of dareplane-utils, so a
dareplane module ports to ampkit by changing one import line:

* :class:`RingBuffer` -- a numpy ring of samples and their timestamps
  (``buffer``, ``buffer_t``, ``curr_i``, ``add_samples``, ``unfold_buffer``,
  ``unfold_buffer_t``), plus what dareplane lacks: :meth:`RingBuffer.get_last`
  (the newest *n* rows in order, a zero-copy view when they do not wrap) and
  an unread/overflow count.
* :class:`StreamWatcher` -- a ring buffer fed by an LSL inlet; a drop-in for
  ``dareplane_utils.stream_watcher.lsl_stream_watcher.StreamWatcher``.
* :class:`AmpWatcher` -- the same face, fed by any decorated amp
  (:meth:`ampkit.decorator.AmpDecorator.get_block`), with the amp's markers in
  a companion ring buffer.

Differences from dareplane-utils, each a fix of a known defect: ``curr_i``,
``buffer``, ``buffer_t`` and ``last_t`` of a watcher are always the ring
buffer's current values (dareplane copies them once, at connection);
``samples`` is a fresh array that the next pull does not overwrite;
irregular-rate LSL streams get ``buffer_size_s * expected_srate`` rows
instead of a fixed 1000; ``connect_to_stream`` gives up after ``timeout``
seconds with :class:`ampkit.errors.AmpNotAvailableError` instead of waiting
forever; a stream whose channel description lacks a label gets ``ch_<i>``
for that channel instead of crashing; ``update()`` before connecting raises
:class:`ampkit.errors.StateError` instead of doing nothing.

LSL is read through :mod:`ampkit.lsl` (shared with the ``lsl`` driver),
which imports pylsl only when a :class:`StreamWatcher` connects, so importing
ampkit does not load liblsl.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ampkit.block import AmpContext, Block
from ampkit.checks import check_positive_int, check_positive_number
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    StateError,
)
from ampkit.lsl import (
    ChunkPuller,
    channel_labels,
    full_info,
    lsl_predicate,
    open_inlet,
    open_stream,
    pull_values,
    resolve_streams,
    sample_dtype,
)
from ampkit.worker import Closing

__all__ = [
    "RingBuffer",
    "StreamWatcher",
    "AmpWatcher",
    "DEFAULT_IRREGULAR_SRATE",
    "lsl_channel_names",
]

logger = logging.getLogger("ampkit")

#: Rate (Hz) assumed to size the buffer of an irregular-rate LSL stream when
#: no ``expected_srate`` is given: 500 Hz makes the default 2 s buffer 1000
#: rows, the fixed size dareplane-utils uses.
DEFAULT_IRREGULAR_SRATE = 500.0

#: Upper bound on the pulls one ``StreamWatcher.update()`` makes to drain the
#: inlet, so that a producer faster than the consumer cannot keep it looping.
_MAX_PULLS_PER_UPDATE = 64

#: Samples pulled per call from a string stream (pylsl keeps one char* buffer
#: per size, so a dareplane-sized 32768 would make every string pull slow).
_STRING_CHUNK = 1024


class RingBuffer:
    """A fixed-size numpy ring of samples and their timestamps.

    Rows are written in order at ``curr_i``, wrapping to 0 at the end; the
    layout of ``buffer`` and ``buffer_t`` and the value of ``curr_i`` after
    every :meth:`add_samples` are exactly those of dareplane-utils'
    ``RingBuffer``, so code that indexes them directly keeps working.

    Parameters
    ----------
    shape : tuple of int
        ``(n_rows, n_channels, ...)``: the number of rows the ring keeps,
        then the shape of one sample.
    dtype : numpy dtype, optional
        Type of the samples (float32 by default). ``object`` buffers (string
        streams) start filled with ``""``, all others with zeros.
    view_rows : int, optional
        Keep a copy of the first ``view_rows`` rows of the ring just past its
        end, so that :meth:`get_last` returns a view (never a copy) for any
        ``n <= view_rows``, also when the rows wrap. Costs ``view_rows``
        rows of memory and a second write for the chunks that land in those
        rows. Default 0: views only when the rows do not wrap.

    Attributes
    ----------
    curr_i : int
        Index of the row the next sample goes to; the newest sample is at
        ``curr_i - 1`` (modulo ``n_rows``).
    size : int
        ``n_rows``.
    n_added : int
        Samples passed to :meth:`add_samples` since creation, including the
        rows dropped from chunks longer than the buffer.
    logger : logging.Logger
        Where the buffer reports dropped rows.

    Examples
    --------
    >>> rb = RingBuffer((4, 2))
    >>> rb.add_samples(np.arange(6).reshape(3, 2), [0.0, 1.0, 2.0])
    >>> rb.add_samples(np.arange(6, 12).reshape(3, 2), [3.0, 4.0, 5.0])
    >>> rb.curr_i
    2
    >>> rb.unfold_buffer_t()
    array([2., 3., 4., 5.])
    >>> rb.get_last(2)          # a view: the newest two rows do not wrap
    array([[ 8.,  9.],
           [10., 11.]], dtype=float32)
    >>> rb.n_overflow           # two samples were never read
    2
    """

    def __init__(
        self, shape: int | Sequence[int], dtype: Any = np.float32, view_rows: int = 0
    ) -> None:
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if not shape:
            raise ConfigurationError("a RingBuffer shape needs at least one dimension")
        size = check_positive_int("the number of rows of a RingBuffer", shape[0])
        if isinstance(view_rows, bool) or not isinstance(view_rows, (int, np.integer)) or not (
            0 <= view_rows <= size
        ):
            raise ConfigurationError(f"view_rows must be an int in 0..{size}, got {view_rows!r}")
        dtype = np.dtype(dtype)
        # The ring is the first `size` rows of a store; the `view_rows` rows
        # after it mirror the ring's first rows, so short wrapped windows are
        # contiguous in the store.
        # np.full writes every element, so all pages are touched here rather
        # than faulted in one by one by the first turn of the ring (np.zeros
        # maps them lazily), which would make early adds slow and jittery.
        store_shape = (size + int(view_rows),) + tuple(shape[1:])
        self._store = np.full(store_shape, "" if dtype.kind == "O" else 0, dtype=dtype)
        self._store_t = np.full(size + int(view_rows), 0.0, dtype=np.float64)
        self._buf = self._store[:size]
        self._buf_t = self._store_t[:size]
        self.view_rows = int(view_rows)
        self.curr_i = 0
        self.size = size
        self.n_added = 0
        self.logger = logger
        self._read_mark = 0
        self._overflow_before_mark = 0
        self._warned_oversize = False

    def __repr__(self) -> str:
        return (
            f"RingBuffer(shape={self._buf.shape}, dtype={self._buf.dtype}, "
            f"curr_i={self.curr_i}, n_added={self.n_added})"
        )

    @property
    def buffer(self) -> np.ndarray:
        """The ring of samples, an ndarray of ``shape``.

        Read it; write only through :meth:`add_samples` (direct writes miss
        the ``view_rows`` copies). It cannot be rebound.
        """
        return self._buf

    @buffer.setter
    def buffer(self, value: Any) -> None:
        raise ConfigurationError(
            "RingBuffer.buffer cannot be replaced (get_last() reads the same memory): "
            "create a new RingBuffer of the shape and dtype you need"
        )

    @property
    def buffer_t(self) -> np.ndarray:
        """The timestamp of each row of :attr:`buffer`: float64, shape ``(n_rows,)``.

        It cannot be rebound either.
        """
        return self._buf_t

    @buffer_t.setter
    def buffer_t(self, value: Any) -> None:
        raise ConfigurationError(
            "RingBuffer.buffer_t cannot be replaced: create a new RingBuffer"
        )

    # -- writing ---------------------------------------------------------

    def add_samples(self, samples: Any, times: Any) -> None:
        """Append samples and their timestamps, overwriting the oldest rows.

        Parameters
        ----------
        samples : array_like, shape (n, n_channels, ...)
            The samples, oldest first; an ndarray or a list of rows.
        times : array_like, shape (n,)
            One timestamp per sample.

        Notes
        -----
        An empty chunk changes nothing. Of a chunk longer than the buffer
        only the newest ``size`` rows are kept; the dropped rows are counted
        in :attr:`n_overflow`.

        Raises
        ------
        ampkit.errors.ConfigurationError
            ``samples`` and ``times`` differ in length.
        """
        # The common case (a chunk that does not reach the end of the ring)
        # is inlined and kept to two slice assignments, plus the mirror
        # writes when it lands in the first view_rows rows: it runs for
        # every chunk.
        n = len(times)
        i = self.curr_i
        j = i + n
        if 0 < n and j < self.size and len(samples) == n:
            self._buf[i:j] = samples
            self._buf_t[i:j] = times
            if i < self.view_rows:
                self._mirror(i, j)
            self.curr_i = j
            self.n_added += n
            return
        self._add_reaching_end(samples, times, n)

    def _add_reaching_end(self, samples: Any, times: Any, n: int) -> None:
        if len(samples) != n:
            raise ConfigurationError(
                f"add_samples() got {len(samples)} samples but {n} timestamps"
            )
        if n == 0:
            return
        size = self.size
        self.n_added += n
        if n > size:
            log = self.logger.debug if self._warned_oversize else self.logger.warning
            log(
                "a chunk of %d samples does not fit a ring buffer of %d rows: "
                "the oldest %d are dropped (counted in n_overflow)",
                n, size, n - size,
            )
            self._warned_oversize = True
            samples = samples[n - size :]
            times = times[n - size :]
            n = size
        i = self.curr_i
        k = size - i
        if n <= k:
            self._put(i, samples, times)
            self.curr_i = (i + n) % size
        else:
            self._put(i, samples[:k], times[:k])
            self._put(0, samples[k:], times[k:])
            self.curr_i = n - k

    def _put(self, a: int, samples: Any, times: Any) -> None:
        b = a + len(times)
        self._buf[a:b] = samples
        self._buf_t[a:b] = times
        if a < self.view_rows:
            self._mirror(a, b)

    def _mirror(self, a: int, b: int) -> None:
        """Copy ring rows ``a .. min(b, view_rows)`` to their place past the end."""
        e = min(b, self.view_rows)
        size = self.size
        self._store[size + a : size + e] = self._buf[a:e]
        self._store_t[size + a : size + e] = self._buf_t[a:e]

    # -- reading ---------------------------------------------------------

    @property
    def last_t(self) -> float:
        """Timestamp of the newest sample (0.0 while the buffer is empty)."""
        if not self.n_added:
            return 0.0
        return float(self._buf_t[self.curr_i - 1])

    @property
    def n_filled(self) -> int:
        """Rows holding samples: ``min(n_added, size)``."""
        return min(self.n_added, self.size)

    def unfold_buffer(self) -> np.ndarray:
        """Return a copy of the whole buffer in time order, newest row last.

        Rows never written (before the buffer first fills) come first and
        hold zeros (``""`` for object buffers), as in dareplane-utils.
        """
        return self._unfold(self._buf)

    def unfold_buffer_t(self) -> np.ndarray:
        """Return a copy of the timestamps in time order, newest last."""
        return self._unfold(self._buf_t)

    def _unfold(self, arr: np.ndarray) -> np.ndarray:
        i = self.curr_i
        if i == 0:
            return arr.copy()
        return np.concatenate((arr[i:], arr[:i]))

    def get_last(self, n: int, copy: bool = False) -> np.ndarray:
        """Return the newest ``n`` samples in time order, newest last.

        Parameters
        ----------
        n : int
            How many rows; at most ``size``. Fewer come back while fewer
            than ``n`` samples have been added.
        copy : bool
            Always return a copy. By default the result is a view (no copy,
            constant time) when the rows do not wrap around the end of
            ``buffer`` or when ``n <= view_rows``, and a copy otherwise.

        Returns
        -------
        ndarray, shape (min(n, n_filled), n_channels, ...)
            A view is valid until the ring writes over those rows again;
            copy it (or pass ``copy=True``) to keep it longer.

        Raises
        ------
        ampkit.errors.ConfigurationError
            ``n`` is negative or larger than the buffer.
        """
        return self._last(self._store, n, copy)

    def get_last_t(self, n: int, copy: bool = False) -> np.ndarray:
        """Return the timestamps of :meth:`get_last` ``(n)``, same rules."""
        return self._last(self._store_t, n, copy)

    def _last(self, store: np.ndarray, n: int, copy: bool) -> np.ndarray:
        size = self.size
        if not 0 <= n <= size:
            raise ConfigurationError(f"get_last({n}) on a ring buffer of {size} rows")
        if n > self.n_added:
            n = self.n_added
        i = self.curr_i
        if n <= i:
            out = store[i - n : i]
        elif i == 0:
            out = store[size - n : size]
        elif i <= self.view_rows:
            out = store[size + i - n : size + i]  # runs into the mirrored rows
        else:
            return np.concatenate((store[size - n + i : size], store[:i]))
        return out.copy() if copy else out

    # -- unread / overflow -----------------------------------------------

    @property
    def n_unread(self) -> int:
        """Samples added since the last :meth:`get_new` / :meth:`mark_read`
        that are still in the buffer."""
        return min(self.n_added - self._read_mark, self.size)

    @property
    def n_overflow(self) -> int:
        """Samples lost unread since creation: overwritten (or dropped from an
        oversize chunk) before :meth:`get_new` or :meth:`mark_read` saw them.
        A buffer that is never read counts everything beyond its size."""
        return self._overflow_before_mark + max(0, self.n_added - self._read_mark - self.size)

    def mark_read(self) -> None:
        """Count every sample in the buffer as read."""
        self._overflow_before_mark = self.n_overflow
        self._read_mark = self.n_added

    def get_new(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the unread samples and their timestamps, and mark them read.

        Returns
        -------
        samples : ndarray, shape (n_unread, n_channels, ...)
        times : ndarray of float64, shape (n_unread,)
            Copies, oldest first. Samples lost before this call are counted
            in :attr:`n_overflow`.
        """
        n = self.n_unread
        out = self.get_last(n, copy=True), self.get_last_t(n, copy=True)
        self.mark_read()
        return out


class _Watcher(Closing):
    """What :class:`StreamWatcher` and :class:`AmpWatcher` share: the face of
    dareplane-utils' StreamWatcher over a :class:`RingBuffer`."""

    def __init__(
        self, name: str, buffer_size_s: float, logger: logging.Logger, view_s: float
    ) -> None:
        self.name = name
        self.buffer_size_s = check_positive_number("buffer_size_s", buffer_size_s)
        if isinstance(view_s, bool) or not isinstance(view_s, (int, float)) or view_s < 0:
            raise ConfigurationError(f"view_s must be a number >= 0, got {view_s!r}")
        self.view_s = float(view_s)
        self.logger = logger
        self.ring_buffer: RingBuffer | None = None
        self._rate = 0.0
        self.channel_names: list[str] = []
        self.n_new = 0
        self.samples: np.ndarray = np.empty((0, 0), dtype=np.float32)
        self.times: np.ndarray = np.empty(0, dtype=np.float64)

    def _new_ring(self, rate: float, n_ch: int, dtype: Any) -> RingBuffer:
        rows = max(1, int(round(rate * self.buffer_size_s)))
        view_rows = min(rows, int(round(rate * self.view_s)))
        rb = RingBuffer((rows, n_ch), dtype=dtype, view_rows=view_rows)
        rb.logger = self.logger
        self._rate = float(rate)
        return rb

    # dareplane copies these from the ring buffer once; here they are live.

    @property
    def buffer(self) -> np.ndarray:
        """The ring buffer's samples (``ring_buffer.buffer``); empty before
        connecting."""
        rb = self.ring_buffer
        return np.array([]) if rb is None else rb.buffer

    @property
    def buffer_t(self) -> np.ndarray:
        """The ring buffer's timestamps (``ring_buffer.buffer_t``)."""
        rb = self.ring_buffer
        return np.array([]) if rb is None else rb.buffer_t

    @property
    def curr_i(self) -> int:
        """The ring buffer's next write index, always current."""
        rb = self.ring_buffer
        return 0 if rb is None else rb.curr_i

    @property
    def last_t(self) -> float:
        """Timestamp of the newest sample (0.0 before any)."""
        rb = self.ring_buffer
        return 0.0 if rb is None else rb.last_t

    def _ring(self) -> RingBuffer:
        rb = self.ring_buffer
        if rb is None:
            raise StateError(
                f"{type(self).__name__} {self.name!r} has no buffer: call connect_to_stream()"
            )
        return rb

    def unfold_buffer(self) -> np.ndarray:
        """A copy of the buffer in time order, newest row last."""
        return self._ring().unfold_buffer()

    def unfold_buffer_t(self) -> np.ndarray:
        """A copy of the timestamps in time order, newest last."""
        return self._ring().unfold_buffer_t()

    def get_last(self, n: int, copy: bool = False) -> np.ndarray:
        """The newest ``n`` samples; see :meth:`RingBuffer.get_last`."""
        return self._ring().get_last(n, copy)

    def get_last_t(self, n: int, copy: bool = False) -> np.ndarray:
        """Timestamps of the newest ``n`` samples; see :meth:`RingBuffer.get_last`."""
        return self._ring().get_last_t(n, copy)

    def get_last_s(self, seconds: float, copy: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The samples and timestamps of the newest ``seconds`` of signal.

        The row count is ``round(seconds * rate)`` with the rate used to size
        the buffer, capped at the buffer size.
        """
        rb = self._ring()
        n = min(rb.size, int(round(seconds * self._rate)))
        return rb.get_last(n, copy), rb.get_last_t(n, copy)

    def disconnect(self) -> None:
        """Stop feeding the buffer; it stays readable."""
        raise NotImplementedError

    def close(self) -> None:
        """Same as :meth:`disconnect`."""
        self.disconnect()


#: How dareplane-utils names channels without a label: ``ch_1``, ``ch_2``...
_DAREPLANE_LABEL = "ch_{n}"


def lsl_channel_names(info: Any) -> list[str]:
    """Channel names from an LSL stream description, as dareplane-utils names them.

    :func:`ampkit.lsl.channel_labels` with dareplane-utils' names for
    channels without a label: ``ch_<n>``, counted from 1 (where ampkit's own
    drivers say ``Ch_<i>`` from 0).

    Parameters
    ----------
    info : pylsl.StreamInfo
        The full info, as ``StreamInlet.info()`` returns it.

    Returns
    -------
    list of str
        One name per channel.
    """
    return channel_labels(info, _DAREPLANE_LABEL)


class StreamWatcher(_Watcher):
    """Keep the last ``buffer_size_s`` seconds of an LSL stream.

    A drop-in for dareplane-utils' ``StreamWatcher``: same constructor, same
    attributes and methods; the differences are fixes (see the module
    documentation).

    Parameters
    ----------
    name : str
        Name of the LSL stream to watch (``connect_to_stream`` can give
        another).
    buffer_size_s : float
        Seconds of signal to keep.
    logger : logging.Logger
        Where to log (the ``ampkit`` logger by default).
    expected_srate : float, optional
        For streams of irregular rate (nominal rate 0): the mean rate to
        expect, which sizes the buffer to ``buffer_size_s * expected_srate``
        rows. Default :data:`DEFAULT_IRREGULAR_SRATE`. Set it before
        ``connect_to_stream``.
    view_s : float
        Reads of up to this many seconds (:meth:`get_last`,
        :meth:`get_last_s`) are always views, never copies (see
        ``view_rows`` of :class:`RingBuffer`). Default 0.
    recover : bool
        Passed to ``pylsl.StreamInlet``. True (the default, as in
        dareplane-utils): when the outlet goes away, liblsl waits silently
        for a stream with the same ``source_id`` to come back, and
        ``update()`` just finds nothing new. False: ``update()`` raises
        :class:`ampkit.errors.ConnectionLostError` as soon as liblsl sees
        the stream is gone.

    Attributes
    ----------
    buffer, buffer_t, curr_i, last_t
        The ring buffer's arrays and indices, always current.
    ring_buffer : RingBuffer
        The buffer itself (None before connecting).
    n_new : int
        Samples received since you last set it to 0 (dareplane modules reset
        it after each read).
    samples : ndarray, shape (n, n_channels)
        The samples of the last ``update()`` that received any, a fresh
        array (dtype ``object`` of ``str`` for string streams).
    times : ndarray of float64
        Their timestamps (the sender's LSL clock).
    channel_names : list of str
        From the stream's channel labels; ``ch_1`` ... for missing ones.
    inlet : pylsl.StreamInlet
        The connection (None when disconnected).
    streams : list of pylsl.StreamInfo
        What the last ``connect_to_stream`` resolved.
    chunk_buffer_size : int
        Most samples one pull asks for (numeric streams).

    Examples
    --------
    >>> sw = StreamWatcher("my_eeg", buffer_size_s=5)   # doctest: +SKIP
    >>> sw.connect_to_stream(timeout=2)                 # doctest: +SKIP
    >>> while True:                                     # doctest: +SKIP
    ...     sw.update()
    ...     if sw.n_new >= 100:
    ...         window = sw.get_last(500)
    ...         sw.n_new = 0
    """

    def __init__(
        self,
        name: str = "",
        buffer_size_s: float = 2,
        logger: logging.Logger = logger,
        *,
        expected_srate: float | None = None,
        view_s: float = 0.0,
        recover: bool = True,
    ) -> None:
        super().__init__(name, buffer_size_s, logger, view_s)
        self.expected_srate = expected_srate
        self.recover = bool(recover)
        self.chunk_buffer_size = 1024 * 32
        self.stream: Any = None
        self.streams: list[Any] = []
        self.inlet: Any = None
        self._puller: ChunkPuller | None = None
        self._strings = False  # a string stream: update is update_char_p

    @property
    def chunk_buffer(self) -> np.ndarray | None:
        """Where the next pull of a numeric stream writes (None for strings
        and before connecting)."""
        return None if self._puller is None else self._puller.data

    def connect_to_stream(
        self, identifier: dict[str, str] | str | None = None, timeout: float = 5.0
    ) -> None:
        """Find the stream, open an inlet and create the buffer.

        Parameters
        ----------
        identifier : dict or str, optional
            Stream properties to match, e.g. ``{"name": "eeg"}`` or
            ``{"name": "eeg", "type": "EEG", "source_id": "amp1"}``; a string
            is a name. Default: ``{"name": self.name}``. A given name becomes
            ``self.name``.
        timeout : float
            Seconds to wait for the stream to be found and to answer.

        Raises
        ------
        ampkit.errors.AmpNotAvailableError
            No matching stream within ``timeout``.
        ampkit.errors.ConfigurationError
            No name or properties to look for, or a bad ``expected_srate``.
        """
        props = {"name": identifier} if isinstance(identifier, str) else dict(identifier or {})
        if not props:
            props = {"name": self.name}
        props = {str(k): str(v) for k, v in props.items() if v is not None and str(v) != ""}
        if not props:
            raise ConfigurationError("StreamWatcher needs a stream name (or properties) to find")
        if "name" in props:
            self.name = props["name"]
        timeout = check_positive_number("timeout", timeout)
        streams = resolve_streams(lsl_predicate(**props), timeout)
        if self.inlet is not None:
            self.disconnect()
        found = streams[0].name()
        inlet = open_inlet(streams[0], recover=self.recover)
        info = full_info(inlet, timeout, found)
        open_stream(inlet, timeout, found)
        self.streams = streams
        self.stream = streams[0]
        self.channel_names = lsl_channel_names(info)
        self._init_buffer(info)
        self.inlet = inlet
        self.n_new = 0
        self.logger.info(
            "watching LSL stream %r: %d channels, %s, %d rows",
            self.name, len(self.channel_names), self.buffer.dtype, len(self.buffer_t),
        )

    def _init_buffer(self, info: Any) -> None:
        srate = info.nominal_srate()
        if srate <= 0:
            srate = self.expected_srate
            if srate is None:
                srate = DEFAULT_IRREGULAR_SRATE
            srate = check_positive_number("expected_srate", srate)
        dtype = sample_dtype(info)
        if dtype is None:
            raise AmpNotAvailableError(
                f"LSL stream {self.name!r} has an unknown channel format "
                f"({info.channel_format()})"
            )
        n_ch = info.channel_count()
        self.ring_buffer = self._new_ring(srate, n_ch, dtype)
        self.samples = np.empty((0, n_ch), dtype=dtype)
        self.times = np.empty(0, dtype=np.float64)
        self._strings = dtype is object
        if self._strings:
            self._puller = None
        else:
            rows = check_positive_int("chunk_buffer_size", self.chunk_buffer_size)
            self._puller = ChunkPuller(info.name(), n_ch, rows, dtype)

    @property
    def update(self) -> Callable[[], None]:
        """Move every sample waiting on the inlet into the buffer: call ``update()``.

        As in dareplane-utils, ``update`` is the method for the stream's
        channel format once connected: :meth:`update_char_p` for a string
        stream, :meth:`update_numeric` for any other (and before connecting,
        when it raises :class:`ampkit.errors.StateError`). Code that checks
        ``sw.update == sw.update_char_p`` works unchanged.
        """
        return self.update_char_p if self._strings else self.update_numeric

    def update_numeric(self) -> None:
        """Move every sample waiting on a numeric inlet into the buffer.

        Does not wait: returns at once when nothing is waiting.

        Raises
        ------
        ampkit.errors.StateError
            Not connected, or connected to a string stream (use
            :meth:`update_char_p`, or ``update()``).
        ampkit.errors.ConnectionLostError
            liblsl reports the stream lost (its outlet went away and cannot
            be recovered).
        """
        self._drain(self._take_numeric, strings=False)

    def update_char_p(self) -> None:
        """Move every string sample waiting on the inlet into the buffer.

        The string-stream counterpart of :meth:`update_numeric` (the name is
        dareplane-utils', after pylsl's ``c_char_p`` value type); same
        behaviour and errors.
        """
        self._drain(self._take_strings, strings=True)

    def _take_numeric(self, inlet: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        puller: ChunkPuller = self._puller  # type: ignore[assignment]
        n = puller.pull(inlet)
        if not n:  # the common case of a tight update() loop: no copies
            return puller.data[:0], puller.stamps[:0], False
        data, times = puller.take(n)
        return data, times, n == puller.rows

    def _take_strings(self, inlet: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        values, ts = pull_values(inlet, _STRING_CHUNK, self.name)
        data = np.empty((len(ts), len(self.channel_names)), dtype=object)
        if len(ts):
            data[:] = values
        return data, np.array(ts, dtype=np.float64), len(ts) == _STRING_CHUNK

    def _drain(
        self, take: Callable[[Any], tuple[np.ndarray, np.ndarray, bool]], strings: bool
    ) -> None:
        """Pull with ``take`` until the inlet is empty (or the pull limit)."""
        inlet = self.inlet
        if inlet is None:
            raise StateError(f"StreamWatcher {self.name!r}: update() before connect_to_stream()")
        if strings != self._strings:
            right = "update_char_p" if self._strings else "update_numeric"
            raise StateError(
                f"StreamWatcher {self.name!r}: the stream is "
                f"{'a string' if self._strings else 'a numeric'} stream; call {right}() "
                f"or update()"
            )
        rb = self.ring_buffer
        pulled: list[tuple[np.ndarray, np.ndarray]] = []
        try:
            for _ in range(_MAX_PULLS_PER_UPDATE):
                data, times, more = take(inlet)
                if not len(data):
                    break
                rb.add_samples(data, times)  # type: ignore[union-attr]
                pulled.append((data, times))
                if not more:
                    break
        finally:
            if len(pulled) == 1:
                self.samples, self.times = pulled[0]
            elif pulled:
                self.samples = np.concatenate([d for d, _ in pulled])
                self.times = np.concatenate([t for _, t in pulled])
            self.n_new += sum(len(t) for _, t in pulled)

    def disconnect(self) -> None:
        """Close the inlet; the buffer stays readable. Safe to call twice."""
        inlet = self.inlet
        if inlet is None:
            return
        self.logger.info("disconnecting from LSL stream %r", self.name)
        self.inlet = None
        inlet.close_stream()
        del inlet


class AmpWatcher(_Watcher):
    """Keep the last ``buffer_size_s`` seconds of a decorated amp.

    The face of :class:`StreamWatcher`, fed by
    :meth:`ampkit.decorator.AmpDecorator.get_block`: the buffer holds the
    amp's samples (float32) with their timestamps on
    :func:`ampkit.clock.local_clock`, and the amp's markers go to a companion
    ring buffer, :attr:`marker_buffer`, read the same way (its rows are
    ``[text]``, its ``buffer_t`` the markers' times).

    Parameters
    ----------
    amp : ampkit.decorator.AmpDecorator
        A decorated amp (what :func:`ampkit.get_amp` returns), configured.
        The watcher reads from it but does not start, stop or close it.
    buffer_size_s : float
        Seconds of signal to keep.
    logger : logging.Logger
        Where to log.
    marker_buffer_size : int
        How many markers to keep.
    view_s : float
        Reads of up to this many seconds are always views (see
        :class:`StreamWatcher`). Default 0.

    Attributes
    ----------
    buffer, buffer_t, curr_i, last_t, ring_buffer, n_new, samples, times,
    channel_names
        As in :class:`StreamWatcher`.
    marker_buffer : RingBuffer
        The newest markers: ``marker_buffer.unfold_buffer()[:, 0]`` are their
        texts and ``unfold_buffer_t()`` their times.
    n_new_markers : int
        Markers received since you last set it to 0.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('random', fs=1000, channels=8)
    >>> aw = AmpWatcher(amp, buffer_size_s=5)
    >>> amp.start()
    >>> while aw.n_new < 100:
    ...     aw.update()
    >>> amp.add_marker("go")   # True: accepted
    True
    >>> aw.update()
    >>> amp.stop()
    >>> aw.get_last(100).shape
    (100, 8)
    >>> [text for t, text in aw.get_markers()]
    ['go']
    """

    def __init__(
        self,
        amp: Any,
        buffer_size_s: float = 2,
        logger: logging.Logger = logger,
        *,
        marker_buffer_size: int = 1024,
        view_s: float = 0.0,
    ) -> None:
        if not callable(getattr(amp, "get_block", None)):
            raise ConfigurationError(
                f"AmpWatcher reads a decorated amp (ampkit.get_amp(...)), got {type(amp).__name__}"
            )
        name = str(getattr(amp, "name", type(amp).__name__))
        super().__init__(name, buffer_size_s, logger, view_s)
        self.amp = amp
        self.marker_buffer_size = check_positive_int("marker_buffer_size", marker_buffer_size)
        self.marker_buffer = RingBuffer((self.marker_buffer_size, 1), dtype=object)
        self.n_new_markers = 0
        self.connected = False
        self.fed = False  # a service of the amp (see open())
        self.connect_to_stream()

    def connect_to_stream(self, identifier: Any = None, timeout: float | None = None) -> None:
        """(Re)create the buffers from the amp's current channels and rate.

        The constructor calls it; call it again after reconfiguring the amp.
        The arguments are ignored: they are there so code written for
        :class:`StreamWatcher` runs unchanged.

        Raises
        ------
        ampkit.errors.ConfigurationError
            The amp has no channels or no sampling rate (not configured).
        """
        self._connect(self.amp.get_channels(), self.amp.get_sampling_frequency())

    def _connect(self, channels: Sequence[str], fs: float) -> None:
        channels = [str(c) for c in channels]
        fs = float(fs)
        if not channels or not fs > 0:
            raise ConfigurationError(
                f"{self.name}: configure the amp before watching it "
                f"({len(channels)} channels at {fs:g} Hz)"
            )
        self.channel_names = channels
        self.ring_buffer = self._new_ring(fs, len(channels), np.float32)
        self.marker_buffer = RingBuffer((self.marker_buffer_size, 1), dtype=object)
        self.samples = np.empty((0, len(channels)), dtype=np.float32)
        self.times = np.empty(0, dtype=np.float64)
        self.n_new = 0
        self.n_new_markers = 0
        self.connected = True

    # -- as a service of the amp (amp.add_service(watcher)) ----------------

    def open(self, amp: AmpContext) -> None:
        """Be fed every block the amp delivers, whoever reads it.

        Called by ``amp.add_service(watcher)``: the buffers are made anew
        for the running amp's channels and rate, and from then on every
        block any reader of the amp gets (``get_data()``, ``get_block()``,
        ``ampkit serve``) goes into them; :meth:`update` then returns at
        once. Until ``amp.remove_service(watcher)`` or ``amp.stop()``.
        """
        self._connect(amp.channels, amp.fs)
        self.fed = True

    def on_block(self, block: Block) -> None:
        """Take a block from the amp (while a service of it; see :meth:`open`)."""
        if self.fed:
            self.add_block(block)

    def status(self) -> dict[str, Any]:
        """Nothing to report: the buffers say it all."""
        return {}

    def update(self) -> None:
        """Read one block from the amp (``amp.get_block()``) into the buffers.

        Waits as long as the amp's ``get_data()`` does (the synthetic drivers
        wait for the next sample).

        Raises
        ------
        ampkit.errors.StateError
            Disconnected, the amp is not running, or its channel count
            changed (call :meth:`connect_to_stream` again).
        """
        if not self.connected:
            raise StateError(f"AmpWatcher {self.name!r}: update() after disconnect()")
        if self.fed:  # blocks come from whoever reads the amp
            return
        self.add_block(self.amp.get_block())

    def add_block(self, block: Any) -> None:
        """Put a :class:`ampkit.block.Block` into the buffers.

        :meth:`update` calls it; it is public so that whatever already reads
        the amp can feed the watcher too (or make the watcher a service of
        the amp: ``amp.add_service(watcher)``, see :meth:`open`).
        """
        data = block.data
        n_ch = len(self.channel_names)
        if data.ndim != 2 or data.shape[1] != n_ch:
            raise StateError(
                f"AmpWatcher {self.name!r}: a block of shape {data.shape} does not fit "
                f"{n_ch} channels; call connect_to_stream() after reconfiguring the amp"
            )
        n = len(data)
        if n:
            self.ring_buffer.add_samples(data, block.timestamps)  # type: ignore[union-attr]
            self.samples = np.array(data, dtype=np.float32)
            self.times = np.array(block.timestamps, dtype=np.float64)
            self.n_new += n
        markers = block.markers
        if markers:
            texts = np.empty((len(markers), 1), dtype=object)
            texts[:, 0] = [text for _, text in markers]
            self.marker_buffer.add_samples(texts, [t for t, _ in markers])
            self.n_new_markers += len(markers)

    def get_markers(self, since: float | None = None) -> list[tuple[float, str]]:
        """The markers in the marker buffer, oldest first.

        Parameters
        ----------
        since : float, optional
            Only markers at or after this time (seconds on
            :func:`ampkit.clock.local_clock`), e.g. ``get_last_t(n)[0]`` for
            the markers of the newest window.

        Returns
        -------
        list of (float, str)
            ``(time_s, text)``.
        """
        mb = self.marker_buffer
        n = mb.n_filled
        times = mb.get_last_t(n).tolist()
        texts = mb.get_last(n)[:, 0].tolist()
        return [(t, s) for t, s in zip(times, texts, strict=True) if since is None or t >= since]

    def disconnect(self) -> None:
        """Stop reading the amp (it keeps running); the buffers stay readable.

        Also what the amp calls when the watcher stops being its service
        (``close``).
        """
        self.connected = False
        self.fed = False
