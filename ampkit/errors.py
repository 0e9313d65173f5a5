"""The exceptions ampkit raises.

Every error ampkit raises on purpose derives from :class:`AmpkitError`, so a
script can catch everything from the acquisition layer with one ``except``.
"""

from __future__ import annotations

__all__ = [
    "AmpkitError",
    "ConfigurationError",
    "AmpNotAvailableError",
    "DriverLoadError",
    "UnknownDriverError",
    "StateError",
    "ProtocolError",
    "ConnectionLostError",
    "StreamEndedError",
    "RecordingError",
]


class AmpkitError(Exception):
    """Base class of every error ampkit raises."""


class ConfigurationError(AmpkitError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class AmpNotAvailableError(AmpkitError):
    """The device (or stream, or server) cannot be reached from this computer."""


class DriverLoadError(AmpkitError, ImportError):
    """A driver is registered but its module could not be imported."""


class UnknownDriverError(AmpkitError, LookupError):
    """No driver is registered under the requested name."""


class StateError(AmpkitError, RuntimeError):
    """A method was called in the wrong state, e.g. ``get_data()`` before ``start()``."""


class ProtocolError(AmpkitError):
    """A device or network peer sent bytes that break its protocol.

    Parameters
    ----------
    reason : str
        What is wrong with the bytes.
    offset : int, optional
        Byte offset in the stream where the problem was found.
    """

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        text = reason if offset is None else f"{reason} (at byte offset {offset})"
        super().__init__(text)


class ConnectionLostError(AmpkitError, ConnectionError):
    """The device, server or stream went away during acquisition."""


class StreamEndedError(ConnectionLostError):
    """The device or server ended the stream on purpose (e.g. RDA's stop
    message, when BrainVision Recorder stops monitoring).

    A subclass of :class:`ConnectionLostError`, so code that handles a lost
    connection handles an ended stream too.
    """


class RecordingError(AmpkitError, OSError):
    """Writing a recording failed (unwritable path, full disk, existing file...)."""
