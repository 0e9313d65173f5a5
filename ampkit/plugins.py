"""Entry points: how drivers, services and recording formats are found.

ampkit's drivers (group ``ampkit.drivers``), decorator services
(``ampkit.services``) and recording formats (``ampkit.formats``) are
extensible the way python-can's interfaces are: another installed package
declares, in its ``pyproject.toml``::

    [project.entry-points."ampkit.services"]
    myservice = "mypackage.service:MyService"

and ampkit finds it with no change to ampkit. This module only lists the
entry points of a group; what a group's objects must be is said where the
group is used (:mod:`ampkit.registry`, :mod:`ampkit.services`,
:mod:`ampkit.io.formats`).
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

__all__ = ["entry_points_of", "load_plugin", "warn_once"]

logger = logging.getLogger("ampkit")

# Plug-in problems already logged: the tables are looked up at every start()
# or file opened, and one broken package must not fill the log.
_warned: set[str] = set()


def warn_once(message: str, *args: object) -> None:
    """Log a warning about a plug-in once per process."""
    text = message % args
    if text not in _warned:
        _warned.add(text)
        logger.warning("%s", text)


def entry_points_of(group: str, what: str) -> dict[str, EntryPoint]:
    """The entry points of ``group`` by name; a name registered twice keeps the first.

    Parameters
    ----------
    group : str
        The entry-point group, e.g. ``'ampkit.drivers'``.
    what : str
        What the group holds (``'driver'``), for the warning about a name
        registered twice.

    Returns
    -------
    dict of str to importlib.metadata.EntryPoint
    """
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        if ep.name in found and found[ep.name].value != ep.value:
            warn_once(
                "%s %r is registered twice (%s and %s); using the first",
                what, ep.name, found[ep.name].value, ep.value,
            )
            continue
        found[ep.name] = ep
    return found


def load_plugin(ep: EntryPoint, what: str) -> object | None:
    """Load ``ep``; a plug-in that fails to import is logged (naming it) and None.

    For groups where one broken third-party package must not stop the
    others (services, formats); the driver registry reports its own errors.
    """
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001 - logged; the plug-in is left out
        warn_once("%s %r (%s) failed to import, left out: %s: %s",
                  what, ep.name, ep.value, type(exc).__name__, exc)
        return None
