"""Finding drivers by name: ``get_amp`` and ``get_available_amps``.

Drivers are registered in the ``ampkit.drivers`` entry-point group, ampkit's
own included, so a driver in another installed package is found exactly like
a built-in one. A third-party package declares, in its ``pyproject.toml``::

    [project.entry-points."ampkit.drivers"]
    mydevice = "mypackage.driver:MyDeviceAmp"

and ``ampkit.get_amp('mydevice')`` works with no change to ampkit.
libmushu's driver names are aliases of ampkit's (:data:`ALIASES`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

from ampkit.amplifier import Amplifier
from ampkit.decorator import AmpDecorator
from ampkit.errors import DriverLoadError, UnknownDriverError
from ampkit.plugins import entry_points_of

__all__ = [
    "ENTRY_POINT_GROUP",
    "ALIASES",
    "DriverInfo",
    "driver_names",
    "load_driver",
    "list_drivers",
    "get_amp",
    "get_available_amps",
]

logger = logging.getLogger("ampkit")

#: The entry-point group drivers register in.
ENTRY_POINT_GROUP = "ampkit.drivers"

#: libmushu's driver names and the ampkit names they stand for (``gusbamp``
#: kept its name).
ALIASES = {
    "randomamp": "random",
    "sinusamp": "sine",
    "replayamp": "replay",
    "lslamp": "lsl",
    "gusbamp": "gusbamp",
}


def _entry_points() -> dict[str, EntryPoint]:
    return entry_points_of(ENTRY_POINT_GROUP, "driver")


def driver_names() -> list[str]:
    """Names of all registered drivers (without aliases), sorted."""
    return sorted(_entry_points())


def _resolve(name: str) -> tuple[str, EntryPoint]:
    eps = _entry_points()
    key = name if name in eps else ALIASES.get(name, name)
    if key not in eps:
        known = sorted(eps) + sorted(
            a for a, target in ALIASES.items() if target in eps and a not in eps)
        alias = f" (libmushu name for {key!r}, which is not installed)" if name in ALIASES else ""
        raise UnknownDriverError(
            f"no amplifier driver named {name!r}{alias}; known drivers: {', '.join(known)}"
        )
    return key, eps[key]


def load_driver(name: str) -> type[Amplifier]:
    """Return the driver class registered under ``name`` (or a libmushu alias).

    Raises
    ------
    ampkit.errors.UnknownDriverError
        No driver of that name; the message lists the known names.
    ampkit.errors.DriverLoadError
        The driver is registered but failed to import, or is not an
        :class:`~ampkit.amplifier.Amplifier` subclass.
    """
    key, ep = _resolve(name)
    try:
        cls = ep.load()
    except Exception as exc:
        raise DriverLoadError(
            f"driver {key!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Amplifier)):
        raise DriverLoadError(f"driver {key!r} ({ep.value}) is not an Amplifier subclass")
    return cls


@dataclass
class DriverInfo:
    """What :func:`list_drivers` knows of one driver.

    Attributes
    ----------
    name : str
        Registered name.
    target : str
        ``module:Class`` of the entry point.
    cls : type or None
        The driver class, or None when it failed to load.
    available : bool or None
        Result of ``is_available()``; None when it could not be asked.
    error : str or None
        Why the driver could not be loaded or asked.
    """

    name: str
    target: str
    cls: type[Amplifier] | None
    available: bool | None
    error: str | None


def list_drivers() -> list[DriverInfo]:
    """Load every registered driver and ask whether its device is available.

    Drivers that fail to import or whose ``is_available()`` raises are
    reported in the result (and logged), not skipped.
    """
    infos = []
    for name, ep in sorted(_entry_points().items()):
        cls, available, error = None, None, None
        try:
            cls = load_driver(name)
            available = bool(cls.is_available())
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            error = str(exc) if cls is None else f"is_available() failed: {exc!r}"
            logger.warning("driver %r: %s", name, error)
        infos.append(DriverInfo(name, ep.value, cls, available, error))
    return infos


def get_available_amps() -> list[str]:
    """Names of the drivers whose device is reachable from this computer.

    Drivers that fail to import are logged as warnings naming the driver.
    """
    return [info.name for info in list_drivers() if info.available]


def get_amp(name: str, /, **config: Any) -> AmpDecorator:
    """Return the named driver, decorated, and configured when ``config`` is given.

    Parameters
    ----------
    name : str
        A registered driver name (``'random'``, ``'rda'``...) or a libmushu
        alias (``'randomamp'``...).
    **config
        Passed to ``configure()``.

    Returns
    -------
    AmpDecorator

    Raises
    ------
    ampkit.errors.UnknownDriverError, ampkit.errors.DriverLoadError
    ampkit.errors.ConfigurationError
        The driver refused the configuration.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('random', fs=250, channels=8)
    >>> amp.get_sampling_frequency()
    250.0
    """
    key, _ = _resolve(name)
    amp = AmpDecorator(load_driver(key), name=key)
    if config:
        amp.configure(**config)
    return amp
