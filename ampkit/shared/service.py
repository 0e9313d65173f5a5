"""The ``share`` service of a decorated amp: ``amp.start(share="eeg")``.

A :class:`~ampkit.block.ServiceType` (see :mod:`ampkit.services`) owning the
``start()`` options ``share`` and ``share_seconds``: once the driver runs it
opens a :class:`~ampkit.shared.writer.SharedWriter` with the amp's channels,
units and rate, hands it every block, and removes the stream at ``stop()``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ampkit.block import AmpContext, Block
from ampkit.errors import ConfigurationError, StateError
from ampkit.shared.segment import check_name
from ampkit.shared.writer import DEFAULT_SECONDS, SharedWriter, check_seconds
from ampkit.worker import Closing

__all__ = ["SharedService"]


class SharedService(Closing):
    """Share a decorated amp's blocks with the processes of this computer.

    Parameters
    ----------
    name : str
        The stream's name (readers: ``ampkit.attach(name)``).
    seconds : float
        Seconds the shared ring holds.

    Attributes
    ----------
    writer : SharedWriter or None
        The writer, while open.
    """

    #: The ``AmpDecorator.start()`` options this service owns.
    options: ClassVar[tuple[str, ...]] = ("share", "share_seconds")
    #: After the marker servers, before LSL and the recorder: readers on this
    #: computer get each block first.
    order: ClassVar[int] = 40

    def __init__(self, name: str, seconds: float = DEFAULT_SECONDS) -> None:
        self.name = check_name(name)
        self.seconds = check_seconds(seconds)
        self.writer: SharedWriter | None = None

    def __repr__(self) -> str:
        return f"SharedService({self.name!r})"

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SharedService | None:
        """The service ``share`` and ``share_seconds`` ask for, checked and not
        opened, or None when ``share`` is missing, None or False.

        Raises
        ------
        ampkit.errors.ConfigurationError
            A bad name or length, or ``share_seconds`` without ``share``.
        """
        name = options.get("share")
        if name is None or name is False:
            if "share_seconds" in options:
                raise ConfigurationError("share_seconds given without share='<stream name>'")
            return None
        if not isinstance(name, str):
            raise ConfigurationError(f"share must be a stream name (a string), got {name!r}")
        return cls(name, options.get("share_seconds", DEFAULT_SECONDS))

    def open(self, amp: AmpContext) -> None:
        """Create the shared stream for ``amp``'s channels, units and rate.

        Raises
        ------
        ampkit.errors.ConfigurationError
            The name is in use by a live writer or by another program.
        ampkit.errors.RecordingError
            /dev/shm has no room for ``seconds`` of signal.
        """
        if self.writer is not None:
            raise StateError(f"shared stream {self.name!r} is open already")
        self.writer = SharedWriter(self.name, amp.channels, amp.fs, seconds=self.seconds,
                                   units=amp.units, source=amp.name)

    def on_block(self, block: Block) -> None:
        """Write the block, its timestamps and markers."""
        writer = self.writer
        if writer is None:
            raise StateError(f"shared stream {self.name!r} is not open")
        writer.write(block.data, block.timestamps, block.markers)

    def status(self) -> dict[str, Any]:
        """``{'share': name}`` for progress displays."""
        return {"share": self.name}

    def close(self) -> None:
        """Remove the shared stream (readers read what is left, then learn
        that it ended). Safe to call twice."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
