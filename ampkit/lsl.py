"""Publishing a decorated amp to the lab network as LSL streams.

:class:`LSLPublisher` is the decorator service behind
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

pylsl (and with it liblsl) is imported only when a publisher is created, so
``import ampkit`` and amps that do not publish never load it.

The module also holds the unit spellings shared with the ``lsl`` driver
(:func:`unit_to_lsl`, :func:`unit_from_lsl`): ampkit says ``µV``, the XDF
meta-data convention that LSL consumers follow says ``microvolts``.
"""

from __future__ import annotations

import ctypes
import logging
import socket
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ampkit.block import AmpContext, Block
from ampkit.errors import ConfigurationError
from ampkit.worker import Closing

__all__ = [
    "LSLPublisher",
    "marker_stream_name",
    "lsl_predicate",
    "unit_to_lsl",
    "unit_from_lsl",
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
        import pylsl

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
