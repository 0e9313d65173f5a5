"""Finding the services ``AmpDecorator.start()`` options ask for, and running a list of them.

A *service type* (:class:`ampkit.block.ServiceType`) owns some ``start()``
keywords and turns them into a :class:`~ampkit.block.Service`. ampkit's own
are listed in :data:`BUILTIN`; others are found through the entry-point
group ``ampkit.services``, so a package adds a service with no change to
ampkit::

    [project.entry-points."ampkit.services"]
    share = "mypackage.shared:SharedRing"   # amp.start(share="eeg")

The decorator calls :func:`plan_services` before anything opens (a bad value
anywhere is refused with nothing bound or created), :func:`open_all` once the
driver runs, and :func:`close_all` at ``stop()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from ampkit.block import AmpContext, Service, ServiceType
from ampkit.errors import ConfigurationError
from ampkit.io.recorder import Recorder
from ampkit.lsl import LSLPublisher
from ampkit.markers import MarkerServers
from ampkit.plugins import entry_points_of, load_plugin, warn_once
from ampkit.shared.service import SharedService

__all__ = ["ENTRY_POINT_GROUP", "BUILTIN", "service_types", "plan_services", "open_all",
           "close_all"]

logger = logging.getLogger("ampkit")

#: The entry-point group of third-party service types.
ENTRY_POINT_GROUP = "ampkit.services"

#: ampkit's own service types, by name.
BUILTIN: dict[str, ServiceType] = {
    "markers": MarkerServers,
    "lsl": LSLPublisher,
    "share": SharedService,
    "recording": Recorder,
}


def service_types() -> dict[str, ServiceType]:
    """Every service type, built-in and installed, in the order they open.

    A third-party type that fails to import, or claims an option another
    type owns, is logged and left out.
    """
    found: dict[str, ServiceType] = dict(BUILTIN)
    owners = {option: name for name, kind in found.items() for option in kind.options}
    for name, ep in entry_points_of(ENTRY_POINT_GROUP, "service").items():
        if name in found:
            warn_once("service %r (%s): the name of ampkit's own; left out", name, ep.value)
            continue
        kind = load_plugin(ep, "service")
        if kind is None:
            continue
        options = tuple(getattr(kind, "options", ()))
        taken = [o for o in options if o in owners]
        if taken or not callable(getattr(kind, "from_options", None)):
            why = (f"its options {taken} belong to {sorted({owners[o] for o in taken})}"
                   if taken else "it has no from_options()")
            warn_once("service %r (%s) left out: %s", name, ep.value, why)
            continue
        found[name] = kind  # type: ignore[assignment]
        owners.update((o, name) for o in options)
    return dict(sorted(found.items(), key=lambda item: getattr(item[1], "order", 50)))


def plan_services(options: dict[str, Any], only_given: bool = False) -> list[Service]:
    """The services ``options`` ask for, checked and not opened.

    Parameters
    ----------
    options : dict
        ``start()`` keywords; every one must belong to a service type.
    only_given : bool
        Ask only the types whose options are given (adding services while
        running); by default every type is asked, so that a service that is
        on by default (the marker servers) starts.

    Returns
    -------
    list of Service
        In the order they open.

    Raises
    ------
    ampkit.errors.ConfigurationError
        An option no service type owns (the message lists the known ones),
        or a bad value.
    """
    kinds = service_types()
    known = {option for kind in kinds.values() for option in kind.options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown start() options: {unknown}; the services take {sorted(known)}"
        )
    services = []
    for kind in kinds.values():
        mine = {k: options[k] for k in kind.options if k in options}
        if only_given and not mine:
            continue
        service = kind.from_options(mine)
        if service is not None:
            services.append(service)
    return services


def open_all(services: Iterable[Service], amp: AmpContext) -> list[Service]:
    """Open ``services`` in order; on any error close those opened and raise it.

    Returns
    -------
    list of Service
        The services, open.
    """
    opened: list[Service] = []
    try:
        for service in services:
            service.open(amp)
            opened.append(service)
    except BaseException:
        close_all(reversed(opened), amp.name)
        raise
    return opened


def close_all(services: Iterable[Service], name: str) -> list[Exception]:
    """Close every one of ``services``, each even if another fails.

    Returns
    -------
    list of Exception
        The errors, each logged naming ``name`` and the service.
    """
    errors = []
    for service in services:
        try:
            service.close()
        except Exception as exc:  # noqa: BLE001 - returned, after all closed
            logger.error("%s: closing %r failed: %r", name, service, exc)
            errors.append(exc)
    return errors
