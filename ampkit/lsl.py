"""All of ampkit's access to the lab streaming layer (LSL), through pylsl.

Reading (used by the ``lsl`` driver, :mod:`ampkit.drivers.lsl`, and by
:class:`ampkit.buffer.StreamWatcher`): finding streams
(:func:`lsl_predicate`, :func:`find_streams`, :func:`resolve_streams`,
:class:`StreamFinder`), their channel labels, units and sample type
(:func:`channel_labels`, :func:`channel_units`, :func:`sample_dtype`),
inlets (:func:`open_inlet`, :func:`full_info`, :func:`open_stream`) and pulls
(:class:`ChunkPuller` for numbers straight into numpy, :func:`pull_values`
for strings and markers). liblsl's errors come out as
:class:`~ampkit.errors.AmpNotAvailableError` (not found, not answering) and
:class:`~ampkit.errors.ConnectionLostError` (gone), naming the stream.

Publishing: :class:`LSLPublisher` is the decorator service behind
``amp.start(lsl=...)`` (see :meth:`ampkit.decorator.AmpDecorator.start`) and
``ampkit stream``. While the amp runs it keeps two LSL outlets:

* a numeric stream ``<name>`` (float32, the amp's channel labels and units in
  ``desc/channels``, the amp's nominal rate), every sample pushed with the
  timestamp the decorator gave it;
* a string stream ``<name>-markers`` (type ``Markers``, irregular rate), every
  marker of the block -- driver markers, network markers, gap markers --
  pushed with its own time stamp.

Both timestamps are on :func:`ampkit.clock.local_clock`, which is liblsl's
clock, so consumers on other machines get them translated by LSL's time
correction like any LSL stream.

pylsl (and with it liblsl) is imported when it is first needed -- a stream
searched for, a publisher created -- so ``import ampkit`` and amps that
neither read nor publish LSL never load it.

Both directions share the unit spellings (:func:`unit_to_lsl`,
:func:`unit_from_lsl`): ampkit says ``µV``, the XDF meta-data convention that
LSL consumers follow says ``microvolts``.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ampkit.block import AmpContext, Block
from ampkit.clock import local_clock
from ampkit.errors import AmpNotAvailableError, ConfigurationError, ConnectionLostError
from ampkit.worker import Closing, Worker

__all__ = [
    "LSLPublisher",
    "marker_stream_name",
    "lsl_predicate",
    "unit_to_lsl",
    "unit_from_lsl",
    "StreamFinder",
    "find_streams",
    "resolve_streams",
    "LABEL_TEMPLATE",
    "channel_labels",
    "channel_units",
    "sample_dtype",
    "open_inlet",
    "full_info",
    "open_stream",
    "pull_values",
    "ChunkPuller",
]

logger = logging.getLogger("ampkit")

# ampkit unit -> XDF/LSL spelling, and the reverse for everything LSL
# consumers and producers are known to write.
_TO_LSL = {"µV": "microvolts", "mV": "millivolts", "V": "volts", "nV": "nanovolts"}
_FROM_LSL = {
    "microvolts": "µV", "microvolt": "µV", "uv": "µV", "µv": "µV", "μv": "µV",
    "millivolts": "mV", "millivolt": "mV", "mv": "mV",
    "volts": "V", "volt": "V", "v": "V",
    "nanovolts": "nV", "nanovolt": "nV", "nv": "nV",
}


def unit_to_lsl(unit: str) -> str:
    """Return the LSL (XDF meta-data) spelling of an ampkit unit.

    >>> unit_to_lsl('µV')
    'microvolts'
    >>> unit_to_lsl('degC')
    'degC'
    """
    return _TO_LSL.get(unit, unit)


def unit_from_lsl(text: str | None, default: str = "µV") -> str:
    """Return the ampkit spelling of a unit read from an LSL stream description.

    An empty or missing unit gives ``default``; unknown units are kept as they are.

    >>> unit_from_lsl('microvolts')
    'µV'
    >>> unit_from_lsl('')
    'µV'
    """
    text = (text or "").strip()
    if not text:
        return default
    return _FROM_LSL.get(text.lower(), text)


def marker_stream_name(name: str) -> str:
    """Name of the marker stream published beside the data stream ``name``."""
    return f"{name}-markers"


def _quote(value: str) -> str:
    """An XPath 1.0 string literal for ``value`` (which has no escapes)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ConfigurationError(f"cannot search LSL for a value with both quote kinds: {value!r}")


def lsl_predicate(**properties: str | None) -> str:
    """Build the XPath predicate LSL resolves streams with.

    Parameters
    ----------
    **properties
        Stream properties (``name``, ``type``, ``source_id``, ``hostname``);
        None values are left out.

    Returns
    -------
    str
        e.g. ``"name='EEG-1' and type='EEG'"``; an empty string matches any stream.

    Examples
    --------
    >>> lsl_predicate(name='BioSemi', type='EEG', source_id=None)
    "name='BioSemi' and type='EEG'"
    """
    return " and ".join(
        f"{key}={_quote(str(value))}" for key, value in properties.items() if value is not None
    )


# -- reading streams ----------------------------------------------------------
#
# Everything ampkit reads from LSL goes through the functions below: the lsl
# driver (ampkit.drivers.lsl) and StreamWatcher (ampkit.buffer) call them,
# and neither imports pylsl itself.


def _pylsl() -> Any:
    """pylsl, imported on first use: ``import ampkit`` must not load liblsl."""
    import pylsl

    return pylsl


#: Seconds between two looks at a continuous resolver's results.
_POLL = 0.005

#: Most samples an inlet buffers for a slow reader (liblsl allocates the ring
#: at once and counts it in int32, so a fast stream's default 360 s would not
#: fit).
_MAX_BUFFERED = 10_000_000

# liblsl's chunk pull for each buffer dtype.
_PULL_CHUNK = {
    np.dtype(np.float32): "lsl_pull_chunk_f", np.dtype(np.float64): "lsl_pull_chunk_d",
    np.dtype(np.int8): "lsl_pull_chunk_c", np.dtype(np.int16): "lsl_pull_chunk_s",
    np.dtype(np.int32): "lsl_pull_chunk_i", np.dtype(np.int64): "lsl_pull_chunk_l",
}

#: How :func:`channel_labels` names a channel without a label by default:
#: ``Ch_0``, ``Ch_1``... as ampkit's synthetic drivers and XDF reader do
#: (libmushu's names). ``{i}`` is the 0-based index, ``{n}`` the 1-based number.
LABEL_TEMPLATE = "Ch_{i}"


class _Teardown(Closing):
    """Destroys liblsl resolvers in a thread of its own, so that nobody waits for it.

    liblsl's teardown of a continuous resolver (``lsl_destroy_continuous_resolver``)
    cancels its search and joins its thread. When the cancellation comes as
    one of the search's timers is due, the query wave that timer starts is
    not cancelled, and the teardown waits until that wave gives up by itself:
    ``MulticastMaxRTT`` (3 s) or ``UnicastMaxRTT`` (5 s) later. A search that
    ends at its timeout ends exactly then when the timeout is a multiple of
    the wave interval (1.75 s with ``KnownPeers``, else 1 s: timeouts of 1, 2,
    5 s) or 0.5 s past one (with ``KnownPeers``: 0.5, 2.25 s...). Measured
    with pylsl 1.18.6 and tests/lsl-loopback.cfg on a loaded machine: 12 to
    18 of 40 fruitless 0.5 s searches blocked 5 s in the teardown, none at
    0.6, 0.62, 0.8 or 1.2 s.

    The thread runs while there is something to destroy; ``close`` (also at
    interpreter exit) waits for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self._worker: Worker | None = None
        atexit.register(self.close)

    def put(self, resolver: Any) -> None:
        """Take over a ``pylsl.ContinuousResolver`` (the last reference to it)."""
        with self._lock:
            if self._worker is None:
                try:
                    self._worker = Worker(self._run, "ampkit-lsl-teardown").start()
                except RuntimeError:  # no new threads at interpreter shutdown
                    return  # the resolver is destroyed here, when this frame ends
            self._pending.append(resolver)

    def _run(self, stop: threading.Event) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._worker = None
                    return
                resolver = self._pending.pop()
            del resolver  # pylsl destroys it when its last reference goes

    def close(self) -> None:
        """Wait for the resolvers handed over so far to be destroyed."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            try:
                worker.stop(timeout=10.0)
            except RuntimeError as exc:
                logger.warning("LSL resolvers not destroyed: %s", exc)


_TEARDOWN = _Teardown()


class StreamFinder(Closing):
    """A search for LSL streams that runs in liblsl's background thread.

    liblsl's continuous resolver, asked for its results whenever the caller
    wants, so that waiting for a stream is bounded by the caller's own clock.
    liblsl's one-shot resolve (``pylsl.resolve_bypred``) is not: with
    ``KnownPeers`` configured (as in labs that span subnets, and in ampkit's
    loopback configuration) it sends a unicast query wave
    ``MulticastMinRTT`` (0.5 s) after each multicast wave, and when the
    timeout falls at that moment the unicast wave starts after the
    cancellation and is not cancelled: the call returns only when that wave
    gives up by itself, ``UnicastMaxRTT`` (5 s) later. Measured with pylsl
    1.18.6 (its liblsl 1.18.0) and tests/lsl-loopback.cfg: a fruitless
    ``resolve_bypred(pred, 1, 0.5)`` took 5.5 s in 15 runs of 15, with 1.75 s
    from 4.25 to 6.75 s; with 0.3, 0.7, 1.0 and 1.25 s it kept its timeout.
    The continuous resolver's teardown has the same flaw; it is done in a
    thread of its own, so it delays nobody.

    Parameters
    ----------
    predicate : str
        An XPath predicate (:func:`lsl_predicate`); empty for every stream.
    forget_after : float
        Seconds after which a stream that stopped answering is dropped from
        the results.
    """

    def __init__(self, predicate: str = "", forget_after: float = 5.0) -> None:
        self.predicate = predicate
        resolver = _pylsl().ContinuousResolver
        self._resolver: Any = (
            resolver(pred=predicate, forget_after=forget_after)
            if predicate
            else resolver(forget_after=forget_after)
        )

    def results(self) -> list[Any]:
        """The matching streams visible now (``pylsl.StreamInfo``, short info)."""
        if self._resolver is None:
            raise ConfigurationError(f"LSL search for [{self.predicate}] is closed")
        return self._resolver.results()

    def wait(self, timeout: float) -> list[Any]:
        """The matching streams, as soon as there are any, or ``[]`` after ``timeout`` s."""
        deadline = local_clock() + timeout
        while True:
            found = self.results()
            if found or local_clock() >= deadline:
                return found
            time.sleep(_POLL)

    def close(self) -> None:
        """End the search (liblsl's teardown runs in the background)."""
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            _TEARDOWN.put(resolver)

    def __del__(self) -> None:
        if _TEARDOWN is not None:  # None once the module is torn down at exit
            self.close()


def find_streams(predicate: str, timeout: float) -> list[Any]:
    """The streams matching ``predicate``, searched for up to ``timeout`` seconds.

    Returns as soon as one matches (with every match known by then), or an
    empty list after ``timeout``; see :class:`StreamFinder` for why this does
    not use liblsl's one-shot resolve.
    """
    with StreamFinder(predicate) as finder:
        return finder.wait(timeout)


def resolve_streams(predicate: str, timeout: float, what: str = "stream") -> list[Any]:
    """:func:`find_streams`, or a clear error when nothing matches.

    Parameters
    ----------
    predicate : str
        From :func:`lsl_predicate`; empty for any stream.
    timeout : float
        Seconds to search.
    what : str
        What is searched for, in messages (``"stream"``, ``"marker stream"``).

    Returns
    -------
    list of pylsl.StreamInfo
        At least one; use the first (when there are several, a warning names
        the one taken).

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        Nothing matched within ``timeout``.
    """
    found = find_streams(predicate, timeout)
    if not found:
        raise AmpNotAvailableError(
            f"no LSL {what} matching [{predicate or 'any stream'}] found within {timeout:g} s "
            "(is the outlet running, and does LSLAPICFG let this computer see it?)"
        )
    if len(found) > 1:
        logger.warning(
            "%d LSL streams match [%s]; using the first (source_id %r on %s)",
            len(found), predicate, found[0].source_id(), found[0].hostname(),
        )
    return found


def _channel_elements(info: Any) -> list[Any]:
    """The ``desc/channels/channel`` elements, at most one per channel."""
    count = info.channel_count()
    elements = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty() and len(elements) < count:
        elements.append(ch)
        ch = ch.next_sibling("channel")
    return elements


def channel_labels(info: Any, template: str = LABEL_TEMPLATE) -> list[str]:
    """Channel names from an LSL stream description.

    Reads ``desc/channels/channel/label`` (the XDF meta-data convention),
    else the channel's ``name``. A channel without either (or beyond the
    described ones) is named by ``template``: ``Ch_<i>`` from 0 by default,
    as ampkit's own drivers name channels; :class:`ampkit.buffer.StreamWatcher`
    passes ``ch_{n}`` (from 1), dareplane-utils' names. Some but not all
    channels unnamed is logged as a warning.

    Parameters
    ----------
    info : pylsl.StreamInfo
        The full info (``StreamInlet.info()``; a resolved info has no description).
    template : str
        Format of a missing name: ``{i}`` the channel's 0-based index, ``{n}``
        its 1-based number.

    Returns
    -------
    list of str
        One name per channel.
    """
    labels = [
        ch.child_value("label").strip() or ch.child_value("name").strip()
        for ch in _channel_elements(info)
    ]
    count = info.channel_count()
    labels += [""] * (count - len(labels))
    named = [label or template.format(i=i, n=i + 1) for i, label in enumerate(labels)]
    missing = [name for name, label in zip(named, labels, strict=True) if not label]
    if missing and len(missing) < count:
        logger.warning("LSL stream %r: no label for channel(s) %s", info.name(), missing)
    return named


def channel_units(info: Any) -> list[str]:
    """Channel units (ampkit's spelling, :func:`unit_from_lsl`) from an LSL
    stream description; ``µV`` where a channel has none."""
    units = [unit_from_lsl(ch.child_value("unit")) for ch in _channel_elements(info)]
    return units + ["µV"] * (info.channel_count() - len(units))


def sample_dtype(info: Any) -> Any:
    """The numpy dtype of a stream's samples: float32, float64, int8..int64,
    or ``object`` for strings; None for a format ampkit cannot read."""
    pylsl = _pylsl()
    return {
        pylsl.cf_float32: np.float32, pylsl.cf_double64: np.float64,
        pylsl.cf_int8: np.int8, pylsl.cf_int16: np.int16, pylsl.cf_int32: np.int32,
        pylsl.cf_int64: np.int64, pylsl.cf_string: object,
    }.get(info.channel_format())


def open_inlet(info: Any, *, recover: bool = False, clocksync: bool = False) -> Any:
    """A ``pylsl.StreamInlet`` for a resolved stream (not yet subscribed).

    Parameters
    ----------
    info : pylsl.StreamInfo
        From :func:`resolve_streams`.
    recover : bool
        liblsl's own recovery: a lost stream is waited for silently (pulls
        find nothing, and ``open_stream`` blocks for as long as it is away).
    clocksync : bool
        Translate the stream's timestamps to this computer's clock (liblsl's
        ``proc_clocksync``).
    """
    pylsl = _pylsl()
    # liblsl keeps up to max_buflen seconds (LSL's default: 360) for a slow
    # reader: capped at _MAX_BUFFERED samples for fast streams.
    rate = info.nominal_srate()
    seconds = max(1, min(360, int(_MAX_BUFFERED / rate))) if rate > 0 else 360
    flags = pylsl.proc_clocksync if clocksync else pylsl.proc_none
    return pylsl.StreamInlet(
        info, max_buflen=seconds, recover=bool(recover), processing_flags=flags
    )


def full_info(inlet: Any, timeout: float, name: str) -> Any:
    """The stream's full info (with its description) from an inlet.

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        The outlet did not answer within ``timeout`` or is gone.
    """
    util = _pylsl().util
    try:
        return inlet.info(timeout)
    except (util.LostError, util.TimeoutError) as exc:
        raise AmpNotAvailableError(
            f"LSL stream {name!r} was found but its description could not be read "
            f"within {timeout:g} s: {exc}"
        ) from None


def open_stream(inlet: Any, timeout: float, name: str, *, clocksync: bool = False) -> None:
    """Open the inlet's data stream (and, with ``clocksync``, LSL's first
    clock offset estimate, which takes several round trips: about 0.6 s,
    better now than in the middle of a read).

    Raises
    ------
    ampkit.errors.AmpNotAvailableError
        The outlet did not answer within ``timeout``.
    ampkit.errors.ConnectionLostError
        The outlet is gone.
    """
    util = _pylsl().util
    try:
        inlet.open_stream(timeout)
        if clocksync:
            inlet.time_correction(timeout)
    except util.TimeoutError:
        inlet.close_stream()
        raise AmpNotAvailableError(
            f"LSL stream {name!r} was found but did not answer within {timeout:g} s"
        ) from None
    except util.LostError:
        inlet.close_stream()
        raise ConnectionLostError(
            f"LSL stream {name!r} vanished before it could be opened"
        ) from None


def pull_values(inlet: Any, max_samples: int, name: str) -> tuple[list[Any], list[float]]:
    """What is waiting on an inlet, as pylsl's lists (strings decoded), without waiting.

    For string streams and marker streams; numeric data goes faster through
    :class:`ChunkPuller`.

    Returns
    -------
    samples : list of list
        Up to ``max_samples`` samples, each a list of channel values.
    stamps : list of float
        Their timestamps.

    Raises
    ------
    ampkit.errors.ConnectionLostError
        The stream is lost (its outlet went away and cannot be recovered).
    """
    try:
        return inlet.pull_chunk(timeout=0.0, max_samples=max_samples)
    except _pylsl().util.LostError:
        raise ConnectionLostError(f"LSL stream {name!r} was lost (its outlet went away)") from None


class ChunkPuller:
    """Pull the samples of numeric LSL inlets straight into numpy arrays.

    liblsl's ``lsl_pull_chunk_*`` for the buffer's dtype is called directly,
    writing samples and one float64 timestamp per sample into preallocated
    arrays: pylsl's ``pull_chunk`` costs several times more per call (it
    allocates buffers and builds a list of timestamps each time). liblsl
    converts the stream's format to the buffer's (a double64 stream into a
    float32 buffer, say).

    Parameters
    ----------
    name : str
        The stream's name, for messages.
    n_channels : int
        Channels of the stream.
    rows : int
        Most samples one :meth:`pull` takes.
    dtype : numpy dtype
        float32 (default), float64, int8, int16, int32 or int64.

    Attributes
    ----------
    data : ndarray, shape (rows, n_channels)
        Where :meth:`pull` writes samples (replaced by :meth:`take`).
    stamps : ndarray of float64, shape (rows,)
        Their timestamps.
    """

    def __init__(self, name: str, n_channels: int, rows: int, dtype: Any = np.float32) -> None:
        dtype = np.dtype(dtype)
        if dtype not in _PULL_CHUNK:
            raise ConfigurationError(f"LSL samples cannot be pulled into {dtype} arrays")
        self.name = name
        self.rows = int(rows)
        self.n_channels = int(n_channels)
        self._fn = getattr(_pylsl().lib.lib, _PULL_CHUNK[dtype])
        self._row_bytes = self.n_channels * dtype.itemsize
        self.data = np.empty((self.rows, self.n_channels), dtype)
        self.stamps = np.empty(self.rows, np.float64)
        self._err = ctypes.c_int()
        self._err_ref = ctypes.byref(self._err)
        self._no_wait = ctypes.c_double(0.0)
        self._whole = self._window(0, self.rows)

    def _window(self, row: int, n: int) -> tuple[Any, ...]:
        """liblsl's buffer arguments for ``n`` rows from ``row``."""
        return (
            ctypes.c_void_p(self.data.ctypes.data + row * self._row_bytes),
            ctypes.c_void_p(self.stamps.ctypes.data + row * 8),
            ctypes.c_size_t(n * self.n_channels),
            ctypes.c_size_t(n),
        )

    def _call(self, inlet: Any, window: tuple[Any, ...], timeout: Any) -> int:
        err = self._err
        err.value = 0
        values = self._fn(inlet.obj, *window, timeout, self._err_ref)
        code = err.value
        if code and code != -1:  # -1: the wait ended; not an error
            what = "was lost (its outlet went away)" if code == -2 else (
                f"failed with liblsl error code {code}"
            )
            raise ConnectionLostError(f"LSL stream {self.name!r} {what}")
        return values // self.n_channels

    def pull(self, inlet: Any, wait: float = 0.0) -> int:
        """Pull what is waiting into :attr:`data` and :attr:`stamps` from row 0.

        Parameters
        ----------
        inlet : pylsl.StreamInlet
            A subscribed inlet of ``n_channels`` channels.
        wait : float
            Seconds to wait for a first sample when none is waiting.

        Returns
        -------
        int
            Samples pulled (up to ``rows``).

        Raises
        ------
        ampkit.errors.ConnectionLostError
            The stream is lost, or liblsl failed.
        """
        n = self._call(inlet, self._whole, self._no_wait)
        if n == 0 and wait > 0:
            # liblsl's chunk pull waits for a full buffer: wait for one sample
            # only, then take whatever else is already there.
            n = self._call(inlet, self._window(0, 1), ctypes.c_double(wait))
            if n and self.rows > 1:
                n += self._call(inlet, self._window(1, self.rows - 1), self._no_wait)
        return n

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` pulled samples and their timestamps, as arrays of their own.

        A mostly full buffer is handed out itself (and a new one made for the
        next pull), a smaller part is copied.
        """
        if n * 2 > self.rows:
            data = self.data[:n]
            self.data = np.empty_like(self.data)
            self._whole = self._window(0, self.rows)
        else:
            data = self.data[:n].copy()
        return data, self.stamps[:n].copy()


def _default_source_id(name: str) -> str:
    # Stable across restarts, so that LSL consumers recover the stream when
    # the publishing program is restarted (liblsl recovers by source_id).
    return f"ampkit:{socket.gethostname()}:{name}"


class LSLPublisher(Closing):
    """Publish blocks as an LSL data stream and an LSL marker stream.

    A decorator service: :meth:`on_block` pushes one block, :meth:`close`
    destroys both outlets. Pushing never blocks (liblsl queues the samples
    for each consumer), so publishing needs no thread of its own.

    Given ``channels``, the outlets are created at once; without, the
    publisher is a service waiting for :meth:`open` (what
    ``AmpDecorator.start(lsl=...)`` builds with :meth:`from_options`).

    Parameters
    ----------
    name : str, optional
        Name of the data stream; the marker stream is ``<name>-markers``.
        Required with ``channels``; a service without one takes the amp's.
    channels : sequence of str, optional
        Channel labels, in column order.
    fs : float, optional
        Nominal sampling rate in Hz (0 for an irregular stream).
    units : sequence of str, optional
        Unit of each channel in ampkit's spelling (``µV`` by default);
        written in LSL's spelling (``microvolts``).
    type : str
        LSL content type of the data stream (``EEG`` by default).
    source_id : str, optional
        LSL source id; ``ampkit:<hostname>:<name>`` by default. The marker
        stream gets ``<source_id>-markers``. A stable source id lets LSL
        consumers recover the streams when the publisher restarts.
    chunk_size : int
        Preferred LSL chunk size in samples (0: as pushed).
    max_buffered : float
        Seconds of data liblsl keeps for a slow consumer.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('random', fs=250, channels=8)
    >>> amp.start(lsl='MyEEG')   # publishes MyEEG and MyEEG-markers  # doctest: +SKIP
    >>> block = amp.get_block()  # every block is pushed               # doctest: +SKIP
    >>> amp.stop()               # outlets are destroyed               # doctest: +SKIP
    """

    #: The ``AmpDecorator.start()`` options of the publisher as a service
    #: (see :class:`ampkit.block.ServiceType`).
    options: ClassVar[tuple[str, ...]] = ("lsl", "lsl_type", "lsl_source_id")
    order: ClassVar[int] = 50

    def __init__(
        self,
        name: str | None = None,
        channels: Sequence[str] | None = None,
        fs: float | None = None,
        units: Sequence[str] | None = None,
        type: str = "EEG",  # noqa: A002 - LSL's own word
        source_id: str | None = None,
        chunk_size: int = 0,
        max_buffered: float = 360,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigurationError(f"LSL stream name must be a non-empty string, got {name!r}")
        if not isinstance(type, str) or not type:
            raise ConfigurationError(f"lsl_type must be a non-empty string, got {type!r}")
        if source_id is not None and not isinstance(source_id, str):
            raise ConfigurationError(f"lsl_source_id must be a string, got {source_id!r}")
        self.name = name or ""
        self.type = type
        self.source_id = source_id
        self.channels: list[str] = []
        self.units: list[str] = []
        self.fs = 0.0
        self.n_samples = 0
        self.n_markers = 0
        self._chunk_size = int(chunk_size)
        self._max_buffered = max_buffered
        self._n_channels = 0
        self._outlet: Any = None
        self._marker_outlet: Any = None
        if channels is not None:
            if name is None:
                raise ConfigurationError("an LSL publisher given channels needs a stream name")
            self._create(name, channels, 0.0 if fs is None else fs, units)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> LSLPublisher | None:
        """The publisher ``lsl``, ``lsl_type`` and ``lsl_source_id``
        (``AmpDecorator.start()`` options) ask for, checked and not opened
        (no outlet yet: :meth:`open` publishes an amp), or None when ``lsl``
        is false or missing. ``lsl=True`` names the stream after the amp.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A bad value, or ``lsl_type``/``lsl_source_id`` without ``lsl``.
        """
        lsl = options.get("lsl", False)
        extra = {k: options[k] for k in ("lsl_type", "lsl_source_id") if k in options}
        if lsl is None or lsl is False:
            if extra:
                raise ConfigurationError(
                    f"{sorted(extra)} given without lsl=True or lsl='<stream name>'"
                )
            return None
        if lsl is not True and not (isinstance(lsl, str) and lsl):
            raise ConfigurationError(f"lsl must be True, False or a stream name, got {lsl!r}")
        return cls(None if lsl is True else lsl, type=extra.get("lsl_type", "EEG"),
                   source_id=extra.get("lsl_source_id"))

    def open(self, amp: AmpContext) -> None:
        """Publish a decorated amp: its channels, units and rate; its name
        unless the publisher has one.

        Raises
        ------
        ampkit.errors.ConfigurationError
            The amp has no channels.
        """
        self._create(self.name or amp.name, amp.channels, amp.fs, amp.units)

    def _create(
        self, name: str, channels: Sequence[str], fs: float, units: Sequence[str] | None
    ) -> None:
        """Check the stream's shape and create both outlets."""
        pylsl = _pylsl()
        channels = [str(c) for c in channels]
        if not channels:
            raise ConfigurationError("cannot publish an amp without channels to LSL")
        units = ["µV"] * len(channels) if units is None else [str(u) for u in units]
        if len(units) != len(channels):
            raise ConfigurationError(
                f"{len(units)} units for {len(channels)} channels in LSL stream {name!r}"
            )
        fs = float(fs)
        if not fs >= 0:
            raise ConfigurationError(f"LSL nominal rate must be >= 0, got {fs!r}")
        self.name = name
        if self.source_id is None:
            self.source_id = _default_source_id(name)
        self.channels = channels
        self.units = units
        self.fs = fs

        info = pylsl.StreamInfo(
            name, self.type, len(channels), fs, pylsl.cf_float32, self.source_id
        )
        desc = info.desc()
        chans = desc.append_child("channels")
        for label, unit in zip(channels, units, strict=True):
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit_to_lsl(unit))
            ch.append_child_value("type", self.type)
        desc.append_child("acquisition").append_child_value("software", "ampkit")
        minfo = pylsl.StreamInfo(
            marker_stream_name(name), "Markers", 1, pylsl.IRREGULAR_RATE,
            pylsl.cf_string, marker_stream_name(self.source_id),
        )
        minfo.desc().append_child("acquisition").append_child_value("software", "ampkit")
        self._outlet = pylsl.StreamOutlet(info, self._chunk_size, self._max_buffered)
        self._marker_outlet = pylsl.StreamOutlet(minfo)
        # push_chunk with one timestamp per sample, straight from numpy
        # memory (pylsl would build a ctypes array element by element).
        self._push_n = self._outlet.do_push_chunk_n
        self._handle_error = pylsl.util.handle_error
        self._n_channels = len(channels)
        logger.info(
            "publishing LSL streams %r (%d ch, %g Hz, type %s, source_id %s) and %r",
            name, len(channels), fs, self.type, self.source_id, marker_stream_name(name),
        )

    def on_block(self, block: Block) -> None:
        """Push the block's samples and markers, each with its timestamp."""
        outlet = self._outlet
        if outlet is None:
            raise ConfigurationError(f"LSL publisher {self.name!r} is closed")
        n = len(block.data)
        if n:
            data = np.ascontiguousarray(block.data, dtype=np.float32)
            if data.ndim != 2 or data.shape[1] != self._n_channels:
                raise ConfigurationError(
                    f"block of shape {data.shape} does not fit LSL stream {self.name!r} "
                    f"of {self._n_channels} channels"
                )
            stamps = np.ascontiguousarray(block.timestamps, dtype=np.float64)
            if stamps.shape != (n,):
                raise ConfigurationError(
                    f"{stamps.shape} timestamps for {n} samples in LSL stream {self.name!r}"
                )
            self._handle_error(
                self._push_n(
                    outlet.obj,
                    ctypes.c_void_p(data.ctypes.data),
                    ctypes.c_long(data.size),
                    ctypes.c_void_p(stamps.ctypes.data),
                    ctypes.c_int(1),
                )
            )
            self.n_samples += n
        for time_s, text in block.markers:
            self._marker_outlet.push_sample([text], time_s)
        self.n_markers += len(block.markers)

    def have_consumers(self) -> bool:
        """Whether any program is connected to the data stream."""
        return self._outlet is not None and bool(self._outlet.have_consumers())

    def status(self) -> dict[str, Any]:
        """``{'lsl': '<name> (consumers|no consumer)'}`` for progress displays."""
        state = "consumers" if self.have_consumers() else "no consumer"
        return {"lsl": f"{self.name} ({state})"}

    def close(self) -> None:
        """Destroy both outlets (consumers see the streams end)."""
        if self._outlet is not None:
            logger.info(
                "LSL stream %r closed after %d samples, %d markers",
                self.name, self.n_samples, self.n_markers,
            )
        # pylsl destroys an outlet when its object is collected.
        self._outlet = self._marker_outlet = None
        self._push_n = None

    def __repr__(self) -> str:
        return f"LSLPublisher({self.name!r}, {self._n_channels} ch, {self.fs:g} Hz)"
