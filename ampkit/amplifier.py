"""The contract every amplifier driver implements.

This is libmushu's ``Amplifier`` kept member for member, so drivers and
scripts written for libmushu port mechanically, plus a context manager,
:meth:`Amplifier.close` and optional hooks (:meth:`Amplifier.get_units`,
:meth:`Amplifier.get_timestamps`, :meth:`Amplifier.get_effective_rate` and
:meth:`Amplifier.get_impedances`).

A driver author writes a subclass that talks to one device. Everything generic
-- network markers, recording, timestamps, live buffers, LSL -- is added by
:class:`ampkit.decorator.AmpDecorator`, which :func:`ampkit.get_amp` wraps
around every driver.
"""

from __future__ import annotations

import functools
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ampkit.block import Marker
from ampkit.errors import ConfigurationError
from ampkit.worker import Closing

__all__ = ["Amplifier", "EitherMethod", "Marker"]


class EitherMethod:
    """A method that receives the class when called on the class and the
    instance when called on an instance.

    For :meth:`Amplifier.is_available` of drivers whose answer depends on
    the configuration: the registry asks the class (the defaults), a
    configured amp asks about its own device.

    Examples
    --------
    >>> class Amp:
    ...     host = 'default'
    ...     @EitherMethod
    ...     def where(self):
    ...         return self.host
    >>> a = Amp(); a.host = 'configured'
    >>> Amp.where(), a.where()
    ('default', 'configured')
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        return functools.partial(self.func, cls if obj is None else obj)


class Amplifier(Closing, metaclass=ABCMeta):
    """Base class of all amplifier drivers (the libmushu contract).

    An abstract class: a driver must implement :meth:`start`, :meth:`stop`,
    :meth:`get_data`, :meth:`get_channels` and
    :meth:`get_sampling_frequency` (creating a driver that lacks one raises
    a ``TypeError`` naming what is missing); usually :meth:`configure` and
    :meth:`is_available`, and optionally the hooks :meth:`get_units`,
    :meth:`get_timestamps`, :meth:`get_effective_rate`, :meth:`get_impedances`
    and :meth:`close`.

    The life cycle is::

        amp = MyAmp()
        amp.configure(**settings)   # any number of times while stopped
        amp.start()
        while running:
            data, markers = amp.get_data()
        amp.stop()
        amp.close()                 # or use ``with MyAmp() as amp:``

    Attributes
    ----------
    presets : list of [str, dict]
        Named configurations, each ``[name, {keyword: value}]``, that
        ``configure(**preset[1])`` accepts. Empty by default.

    Examples
    --------
    A driver that produces zeros::

        class ZeroAmp(Amplifier):
            def configure(self, fs=100, channels=4):
                self.fs, self.n = fs, channels
            def start(self):
                self.t0 = time.monotonic(); self.sent = 0
            def stop(self):
                pass
            def get_data(self):
                due = int((time.monotonic() - self.t0) * self.fs) - self.sent
                self.sent += due
                return np.zeros((due, self.n), np.float32), []
            def get_channels(self):
                return [f"ch{i}" for i in range(self.n)]
            def get_sampling_frequency(self):
                return self.fs
    """

    presets: ClassVar[list[list[Any]]] = []

    def __new__(cls, *args: Any, **kwargs: Any) -> Amplifier:
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            # Python's own message names the methods but not that this is
            # the driver contract, nor where it is described.
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} is not a complete driver: implement "
                f"{', '.join(m + '()' for m in missing)} (see ampkit.amplifier.Amplifier "
                "and the driver guide)"
            )
        return super().__new__(cls)

    def configure(self, **kwargs: Any) -> None:
        """Apply device-specific settings.

        Parameters
        ----------
        **kwargs
            Settings of the device; see the driver's documentation.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A value is unknown, of the wrong type or out of range.
        """
        if kwargs:
            raise ConfigurationError(
                f"{type(self).__name__} takes no settings, got {sorted(kwargs)}"
            )

    @abstractmethod
    def start(self) -> None:
        """Begin acquisition."""
        raise NotImplementedError

    @abstractmethod
    def stop(self) -> None:
        """End acquisition. Must return promptly."""
        raise NotImplementedError

    @abstractmethod
    def get_data(self) -> tuple[np.ndarray, list[Marker]]:
        """Return the samples and markers that arrived since the last call.

        Returns
        -------
        data : ndarray, shape (n_samples, n_channels)
            The new samples, oldest first; ``n_samples`` may be 0.
        markers : list of (float, str)
            ``(ms, text)`` with ``ms`` relative to the first sample of ``data``
            (negative values and values beyond the block are allowed). In an
            empty block, ``ms`` counts from when its first sample is due: the
            sample after the last one returned.

        Raises
        ------
        ampkit.errors.StateError
            Acquisition is not running.
        ampkit.errors.ConnectionLostError
            The device went away.
        """
        raise NotImplementedError

    @abstractmethod
    def get_channels(self) -> list[str]:
        """Return the channel names, in the column order of ``get_data()``."""
        raise NotImplementedError

    @abstractmethod
    def get_sampling_frequency(self) -> float:
        """Return the sampling frequency in Hz."""
        raise NotImplementedError

    @staticmethod
    def is_available() -> bool:
        """Return whether the device is reachable from this computer.

        Drivers override it (``ampkit list`` asks every driver); the default
        says it cannot tell.
        """
        raise NotImplementedError("this driver cannot tell whether its device is reachable")

    # -- beyond libmushu -------------------------------------------------

    def get_units(self) -> list[str]:
        """Return the physical unit of each channel (``'µV'`` by default)."""
        return ["µV"] * len(self.get_channels())

    def get_timestamps(self) -> np.ndarray | None:
        """Return true sample times of the block last returned by ``get_data()``.

        A driver that knows when each sample was taken (an LSL inlet, a device
        with a hardware clock) overrides this to return one float64 per
        sample of that block, in seconds on :func:`ampkit.clock.local_clock`.
        The default returns ``None``: the decorator then estimates the times
        from arrival times and the sampling frequency.
        """
        return None

    def get_effective_rate(self) -> float | None:
        """Return the device's sampling rate as measured, in Hz, if known.

        Device clocks run some ppm off their nominal rate. A driver that
        estimates the real rate (with :class:`ampkit.timestamps.SampleClock`)
        returns it here; the decorator shows it and recordings store it. The
        default returns ``None``: not measured by the driver.
        """
        return None

    def get_impedances(self) -> np.ndarray | None:
        """Return electrode impedances in kΩ, one per channel of ``get_channels()``.

        A driver whose device measures impedance overrides this (``ampkit
        impedance DRIVER`` shows the values live). Called while stopped, it
        measures on its own (switching the device to an impedance mode if it
        has one, and back) and leaves the device stopped; while acquiring it
        may return what the stream carries, or raise
        :class:`~ampkit.errors.StateError`. NaN marks a channel not measured.
        The default returns ``None``: this driver cannot measure impedance.
        """
        return None

    def close(self) -> None:
        """Release the device. Called once, after ``stop()``.

        The default does nothing; drivers holding ports or sockets override it.
        """

    def __str__(self) -> str:
        return type(self).__name__
