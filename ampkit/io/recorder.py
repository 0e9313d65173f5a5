"""The recording service: blocks in on the acquisition thread, files out on a writer thread.

:class:`Recorder` is what :meth:`ampkit.AmpDecorator.start` opens for
``start(filename=...)``. ``on_block`` only copies the block into a bounded
queue (into memory reused once written, :class:`ampkit.io.direct.BlockBuffers`,
which also places it for the data file's direct writes), so a slow disk
never slows acquisition until the queue is full; then it logs a warning with
the backlog and waits for the disk (nothing is ever dropped). A
:class:`~ampkit.worker.Worker` thread takes everything queued every
``interval`` seconds (sooner when the queue fills), places each marker
at its sample, hands the batch to the format writer and flushes it, so the
files on disk are at most about ``interval`` behind acquisition.

A failed write (full disk, file system gone) ends the writer thread; the
error, a :class:`~ampkit.errors.RecordingError` naming the file, is raised by
the next ``on_block`` (and by every later one: the recording is over) or by
``close``. What was written before stays readable.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ampkit.block import AmpContext, Block
from ampkit.clock import local_clock
from ampkit.errors import RecordingError
from ampkit.io.direct import BlockBuffers
from ampkit.io.formats import open_writer
from ampkit.io.writer import FormatWriter, Header, Mark
from ampkit.timestamps import RecentStamps
from ampkit.worker import Worker

__all__ = ["Recorder", "MAX_BACKLOG_BYTES"]

logger = logging.getLogger("ampkit")

#: Default bound of the queue between acquisition and the writer thread.
MAX_BACKLOG_BYTES = 256 * 2**20

class Recorder:
    """Record every block of a decorated amp to a file.

    Parameters
    ----------
    source : Header, AmpContext or Amplifier, optional
        The recording's channels, rate, units and name (an amplifier is
        asked through its getters): the files are created now. Without it
        (nor ``writer``) the recorder is a service waiting for :meth:`open`
        (what ``AmpDecorator.start(filename=...)`` builds with
        :meth:`from_options`).
    filename : str or path
        Where to record; the format follows the suffix (see
        :func:`ampkit.io.open_writer`).
    overwrite : bool
        Replace existing files instead of raising.
    interval : float
        Seconds between the writer thread's batches (and flushes).
    max_backlog_bytes : int
        Bound of the queue; when full, ``on_block`` warns and waits.
        Memory written is kept for reuse up to this size too.
    writer : ampkit.io.writer.FormatWriter, optional
        Use this open writer instead of opening ``filename``.

    Raises
    ------
    ampkit.errors.RecordingError
        A file exists (and ``overwrite`` is false) or cannot be created.
    ampkit.errors.ConfigurationError
        An unknown suffix, or an amp whose channels cannot be recorded.

    Examples
    --------
    >>> import ampkit
    >>> amp = ampkit.get_amp('random', fs=100, channels=4)
    >>> amp.start(filename='/tmp/ampkit-doc-rec', overwrite=True)  # doctest: +SKIP

    On its own::

        with Recorder(Header(['C3', 'C4'], 250.0), 'run1.xdf') as rec:
            rec.on_block(block)
    """

    #: The ``AmpDecorator.start()`` options of the recorder as a service
    #: (see :class:`ampkit.block.ServiceType`); ``filename`` is also
    #: ``start()``'s first argument.
    options: ClassVar[tuple[str, ...]] = ("filename", "overwrite")
    #: Last among the services: the only one that creates files, so that no
    #: other service's failure to open leaves them behind.
    order: ClassVar[int] = 100

    def __init__(
        self,
        source: Header | AmpContext | Any = None,
        filename: os.PathLike | str | None = None,
        overwrite: bool = False,
        interval: float = 0.1,
        max_backlog_bytes: int = MAX_BACKLOG_BYTES,
        writer: FormatWriter | None = None,
    ) -> None:
        self.path = None if filename is None else Path(filename)
        self.overwrite = bool(overwrite)
        self.interval = float(interval)
        self.max_backlog_bytes = int(max_backlog_bytes)
        self.writer: FormatWriter | None = None
        self._closed = False
        if writer is not None:
            self._start(writer, None)
        elif source is not None:
            self.open(source)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Recorder | None:
        """The recorder ``filename`` and ``overwrite`` (``AmpDecorator.start()``
        options) ask for, not opened (no file yet: :meth:`open` creates
        them), or None without ``filename``."""
        filename = options.get("filename")
        if filename is None:
            return None
        return cls(None, filename, overwrite=bool(options.get("overwrite", False)))

    def open(self, source: Header | AmpContext | Any) -> None:
        """Create the files (their header written now) and start the writer thread.

        Parameters
        ----------
        source : Header, AmpContext or Amplifier
            The recording's channels, rate, units and name; an amp or its
            context is also asked for the measured rate at close.

        Raises
        ------
        ampkit.errors.RecordingError
            A file exists (and ``overwrite`` is false) or cannot be created.
        ampkit.errors.ConfigurationError
            An unknown suffix, or channels that cannot be recorded.
        """
        if self.writer is not None:
            raise RecordingError(f"recording to {self.path} is open already")
        if isinstance(source, Header):
            header, rate = source, None
        else:
            if not isinstance(source, AmpContext):  # an amplifier, asked through its getters
                amp = source
                source = AmpContext.of(amp, effective_rate=lambda: getattr(amp, "effective_rate",
                                                                            None))
            header, rate = Header.from_context(source), source.effective_rate
        self._start(open_writer(self.path, header, overwrite=self.overwrite), rate)

    def _start(self, writer: FormatWriter, rate: Callable[[], float | None] | None) -> None:
        self.writer = writer
        self.path = writer.path
        # Asked for the measured rate at close (the files' metadata).
        self._effective_rate = rate
        # Wake the writer early once this much waits: big batches, yet the
        # disk works while acquisition is still filling the queue.
        self._wake_bytes = min(self.max_backlog_bytes // 4, 4 * 2**20)
        self._cond = threading.Condition()
        self._queue: deque[tuple[Block, Any]] = deque()  # copies and their memory's tokens
        self._width = len(writer.header.channels)
        self._buffers = BlockBuffers(self._width, keep_bytes=self.max_backlog_bytes)
        self._queued_bytes = 0
        self._queued_samples = 0
        self._failed: BaseException | None = None
        self._reported = False
        self._warned_at = -1e9
        self._t0: float | None = None
        # Timestamps of the samples written in the last 30 s (writer thread),
        # to place markers that arrive late.
        self._history = RecentStamps(writer.header.fs, seconds=30.0)
        self._first_index = 0  # block index of the first sample remembered
        self._index0: int | None = None  # the run's index of the recording's first block
        self._worker = Worker(self._run, f"recorder {self.path}")
        self._worker.start()

    # -- acquisition side ------------------------------------------------------

    def on_block(self, block: Block) -> None:
        """Queue a copy of ``block`` for the writer thread.

        Raises
        ------
        ampkit.errors.RecordingError
            The writer thread failed (now or earlier).
        """
        if self.writer is None:
            raise RecordingError(f"recording to {self.path} is not open: call open() first")
        self._check()
        if self._closed:
            raise RecordingError(f"recording to {self.path} is closed")
        if not len(block) and not block.markers:
            return
        if len(block) and block.data.shape[1:] != (self._width,):
            raise RecordingError(
                f"recording to {self.path}: a block of shape {block.data.shape} does not "
                f"fit the recording's {self._width} channels"
            )
        if len(block.timestamps) != len(block):
            raise RecordingError(
                f"recording to {self.path}: a block of {len(block)} samples with "
                f"{len(block.timestamps)} timestamps"
            )
        if len(block):
            data, stamps, memory = self._buffers.copy(block.data, block.timestamps)
        else:
            data, stamps, memory = np.empty((0, self._width), np.float32), np.empty(0), None
        if self._index0 is None:
            # Samples are numbered from the recording's first block: a
            # recording opened mid-run (start_recording) begins at index > 0.
            self._index0 = block.index
        copy = Block(data, stamps, list(block.markers), block.index - self._index0)
        size = copy.data.nbytes + copy.timestamps.nbytes
        with self._cond:
            if self._queue and self._queued_bytes + size > self.max_backlog_bytes:
                self._warn_backlog()
                while self._queue and self._queued_bytes + size > self.max_backlog_bytes:
                    if not self._worker.is_alive:
                        break
                    self._cond.wait(0.25)
            self._queue.append((copy, memory))
            self._queued_bytes += size
            self._queued_samples += len(copy)
            if self._queued_bytes > self._wake_bytes:
                self._cond.notify_all()
        self._check()

    def _warn_backlog(self) -> None:
        now = local_clock()
        if now - self._warned_at < 5.0:
            return
        self._warned_at = now
        fs = self.writer.header.fs
        logger.warning(
            "recording to %s: the disk is not keeping up; %d samples (%.1f s, %.1f MB) "
            "wait to be written; acquisition waits for the disk",
            self.path, self._queued_samples, self._queued_samples / fs,
            self._queued_bytes / 1e6,
        )

    def _check(self) -> None:
        try:
            self._worker.check()
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised below
            self._failed = exc
        if self._failed is not None:
            if not self._reported:
                self._reported = True
                raise self._failed
            raise RecordingError(f"recording to {self.path} stopped: {self._failed}")

    def status(self) -> dict[str, Any]:
        """Figures for progress displays: ``bytes`` written and ``backlog`` (samples)."""
        if self.writer is None:
            return {}
        return {"bytes": self.writer.bytes_written, "backlog": self._queued_samples}

    def close(self) -> None:
        """Write what is queued, finish the files and stop the writer thread.

        Raises
        ------
        ampkit.errors.RecordingError
            Writing failed and that was not reported by ``on_block`` yet.
        """
        if self._closed:
            return
        self._closed = True
        if self.writer is None:  # never opened: nothing to finish
            return
        self._worker.stop_event.set()
        with self._cond:
            self._cond.notify_all()
        try:
            self._worker.stop(timeout=max(30.0, self._queued_bytes / 5e6))
        except RuntimeError as exc:
            raise RecordingError(f"recording to {self.path}: {exc}") from None
        try:
            self._worker.check()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            self._failed = exc
        if self._failed is not None:
            if not self._reported:
                self._reported = True
                raise self._failed
            return
        rate = None if self._effective_rate is None else self._effective_rate()
        self.writer.effective_rate = None if rate is None else float(rate)
        self.writer.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "not open" if self.writer is None else self.writer.format
        return f"<Recorder {self.path} ({kind})>"

    # -- writer thread ---------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        try:
            while True:
                with self._cond:
                    if not stop.is_set():
                        self._cond.wait(self.interval)
                    entries = list(self._queue)
                    self._queue.clear()
                    self._queued_bytes = 0
                    self._queued_samples = 0
                    self._cond.notify_all()
                if entries:
                    self._write([block for block, _ in entries])
                    self.writer.flush()
                    # Written: the writers keep no reference to the arrays.
                    self._buffers.release(m for _, m in entries if m is not None)
                elif stop.is_set():
                    return
        except BaseException as exc:
            self.writer.abort()
            with self._cond:
                self._cond.notify_all()
            if isinstance(exc, RecordingError):
                raise
            raise RecordingError(f"recording to {self.path} failed: {exc!r}") from exc

    def _write(self, blocks: list[Block]) -> None:
        marks: list[Mark] = []
        for block in blocks:
            if len(block):
                if self._t0 is None:
                    self._t0 = float(block.timestamps[0])
                self._remember(block)
            for t, text in block.markers:
                marks.append(Mark(self._sample_of(t, block), t - (self._t0 or t), t, text))
        full = [b for b in blocks if len(b)]
        self.writer.write_blocks([b.data for b in full], [b.timestamps for b in full], marks)

    def _remember(self, block: Block) -> None:
        if not self._history.total:
            self._first_index = block.index
        self._history.add(block.timestamps)

    def _sample_of(self, t: float, block: Block) -> int:
        """First sample at or after ``t``, among the samples written so far
        (``block``, remembered already, and those before it as far back as
        they are kept; earlier ones go on the oldest kept). A marker after
        the newest sample goes on the block's last sample, or, with an
        empty block (its markers are always late), on the next one."""
        if not self._history.total:
            return block.index
        index = self._first_index + self._history.index_of(t)
        return min(index, block.index + len(block) - 1) if len(block) else index
