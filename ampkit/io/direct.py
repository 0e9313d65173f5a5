"""Appending a large data file past the page cache.

A recording's data file is written once and not read back while recording.
Written the usual way, every byte is first copied into the kernel's page
cache, which costs a page of fresh memory per 4 KiB; on some machines (virtual
machines whose memory the host hands out page by page) that costs more CPU
than acquisition itself. :class:`AppendFile` writes the file with ``O_DIRECT``
where the system and file system allow it: whole aligned chunks go from a
page-aligned staging buffer to the disk, and only the unaligned tail -- less
than 4 KiB -- goes through the page cache at each :meth:`AppendFile.flush`,
so that everything appended so far is in the file for other programs and
survives a killed process. A later aligned write covers the tail again.
Data that already sits in memory as it will sit in the file -- the same
offset from a page boundary -- is written from where it is, without the copy
into the staging buffer: :class:`BlockBuffers` is memory that places blocks
so (the recorder queues its copies of the blocks there).

Where ``O_DIRECT`` is missing (Windows, macOS) or refused (ramfs, tmpfs before
Linux 6.6, some network file systems), the same class writes through the page
cache.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ampkit.io.writer import recording_error, write_all

__all__ = ["AppendFile", "BlockBuffers", "ALIGN", "STAGE_BYTES", "SLAB_BYTES"]

logger = logging.getLogger("ampkit")

#: Alignment of direct writes (memory address, file offset and length): the
#: page size, a multiple of every common disk's logical block size.
ALIGN = mmap.PAGESIZE

#: Size of the staging buffer: data is written to the disk in chunks of this size.
STAGE_BYTES = 8 * 2**20

#: Contiguous data at least this long, placed in memory as it will be in the
#: file (same offset from a page boundary), is written from where it is.
ZERO_COPY_BYTES = 256 * 2**10

#: Size of the reusable buffers of :class:`BlockBuffers` (bigger blocks get a
#: buffer of their own size, reused as well).
SLAB_BYTES = 8 * 2**20
_PAGE_FLOATS = ALIGN // 4


class _Slab:
    """A buffer that blocks are copied into, one after the other, with
    room for their timestamps.

    The filling thread fills it (``used`` floats, ``rows`` timestamps,
    ``copied`` blocks) and retires it when the next block does not fit; the
    releasing thread counts the blocks written (``written``). Retired with
    every block written, it is free for reuse.
    """

    __slots__ = ("array", "stamps", "used", "rows", "copied", "written", "retired")

    def __init__(self, n_floats: int, width: int) -> None:
        # Page-aligned, for writes straight from it; from the heap (not a
        # mapping of its own), which the next recording reuses without faults.
        raw = np.empty(n_floats + _PAGE_FLOATS, np.float32)
        skip = -raw.ctypes.data % ALIGN // 4
        self.array = raw[skip : skip + n_floats]
        # Timestamps too are kept here: a small array per block would cost a
        # page fault per block (freed memory handed back to the system and
        # faulted in again).
        self.stamps = np.empty(n_floats // width + 1, np.float64)
        self.used = self.rows = self.copied = self.written = 0
        self.retired = False


class BlockBuffers:
    """Reusable memory for blocks that wait to be written to a file of float32 rows.

    One thread copies blocks in (:meth:`copy`), another gives them back once
    written (:meth:`release`). Copies go into large page-aligned buffers,
    each block at the offset from a page boundary that its samples have in
    a file of all the samples so far (BrainVision's ``.eeg``), so that
    :class:`AppendFile` writes runs of them straight from here (``O_DIRECT``,
    no copy). Written buffers are reused: fresh memory would cost the kernel
    a page fault and a zeroed page per 4 KiB, more than the copy.

    Parameters
    ----------
    width : int
        Floats per row (channels).
    keep_bytes : int
        Written buffers are kept for reuse up to this many bytes (a backlog
        that came once tends to come again, and then needs no fresh memory).
    slab_bytes : int, optional
        Size of each buffer (default :data:`SLAB_BYTES`).
    """

    def __init__(self, width: int, keep_bytes: int, slab_bytes: int | None = None) -> None:
        self.width = int(width)
        self.keep_bytes = int(keep_bytes)
        self.slab_floats = (SLAB_BYTES if slab_bytes is None else int(slab_bytes)) // 4
        self._lock = threading.Lock()
        self._slab: _Slab | None = None  # being filled (filling thread only)
        self._floats = 0  # floats copied so far (filling thread only)
        self.spare: list[_Slab] = []  # retired and written: free for reuse
        self._spare_bytes = 0

    def copy(self, data: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        """Copy ``data`` (n, width) as float32, and its timestamps as float64.

        Returns
        -------
        data, timestamps : ndarray
            The copies; valid until their ``token`` is released.
        token : object
            Hand it to :meth:`release` once the copies are written.
        """
        n = data.shape[0]
        need = n * self.width
        slab = self._slab
        if slab is None or slab.used + need > len(slab.array):
            skip = self._floats % _PAGE_FLOATS
            with self._lock:
                if slab is not None:
                    # ``copied`` is final now: only this thread changes it,
                    # and no block goes into a retired slab.
                    slab.retired = True
                    if slab.written == slab.copied:
                        self._keep(slab)
                slab = self._take(need + skip)
            slab.used, slab.rows = skip, 0
            self._slab = slab
        view = slab.array[slab.used : slab.used + need].reshape(n, self.width)
        np.copyto(view, data, casting="unsafe")
        stamps = slab.stamps[slab.rows : slab.rows + n]
        np.copyto(stamps, timestamps, casting="unsafe")
        slab.used += need
        slab.rows += n
        slab.copied += 1
        self._floats += need
        return view, stamps, slab

    def release(self, tokens: Iterable[Any]) -> None:
        """The copies of these :meth:`copy` calls are written: their memory may be reused."""
        with self._lock:
            for slab in tokens:
                slab.written += 1
                # Read ``copied`` only once retired (set under this lock,
                # after the last copy): then it no longer changes.
                if slab.retired and slab.written == slab.copied:
                    self._keep(slab)

    def _take(self, need: int) -> _Slab:
        """A spare buffer that holds ``need`` floats, or a new one (lock held)."""
        for i, slab in enumerate(self.spare):
            if len(slab.array) >= need:
                self._spare_bytes -= slab.array.nbytes
                return self.spare.pop(i)
        return _Slab(max(need, self.slab_floats), self.width)

    def _keep(self, slab: _Slab) -> None:
        """Keep a written, retired buffer for reuse (lock held)."""
        slab.used = slab.rows = slab.copied = slab.written = 0
        slab.retired = False
        if self._spare_bytes + slab.array.nbytes <= self.keep_bytes:
            self.spare.append(slab)
            self._spare_bytes += slab.array.nbytes


def _runs(arrays: list[np.ndarray]):
    """``(address, length, arrays)`` of each run of arrays adjacent in memory."""
    run: list[np.ndarray] = []
    start = end = 0
    for array in arrays:
        if not len(array):
            continue
        addr = array.ctypes.data
        if run and addr == end:
            run.append(array)
        else:
            if run:
                yield start, end - start, run
            run, start = [array], addr
        end = addr + len(array)
    if run:
        yield start, end - start, run


class AppendFile:
    """Append-only writing of an open file, through ``O_DIRECT`` where possible.

    Parameters
    ----------
    fd : int
        The file, open for writing and empty (the class takes ownership and
        closes it).
    path : pathlib.Path
        Its path, named in errors (and reopened with ``O_DIRECT`` where
        ``/proc/self/fd`` is missing).
    direct : bool
        Try ``O_DIRECT`` (default); False writes through the page cache.
    stage_bytes : int
        Size of the staging buffer, a multiple of :data:`ALIGN`: data goes to
        the disk in chunks of this size.
    zero_copy_bytes : int
        Runs of buffers adjacent in memory, at least this long and placed as
        they will be in the file (the same offset from a page boundary), are
        written from where they are, not copied into the staging buffer.

    Attributes
    ----------
    size : int
        Bytes appended so far (in the file after :meth:`flush`).
    """

    def __init__(
        self,
        fd: int,
        path: Path,
        direct: bool = True,
        stage_bytes: int = STAGE_BYTES,
        zero_copy_bytes: int = ZERO_COPY_BYTES,
    ) -> None:
        if stage_bytes <= 0 or stage_bytes % ALIGN:
            raise ValueError(f"stage_bytes must be a positive multiple of {ALIGN}")
        self.path = Path(path)
        self._stage_bytes = stage_bytes
        self._zero_copy_bytes = max(ALIGN, zero_copy_bytes)
        self._fd = fd
        self._direct_fd = -1
        self._stage: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._fill = 0  # bytes staged
        self._base = 0  # file offset of the staging buffer's first byte
        self.size = 0
        if direct and hasattr(os, "O_DIRECT") and stat.S_ISREG(os.fstat(fd).st_mode):
            # The same file for certain (not whatever the path names now)
            # through /proc where it exists.
            proc = f"/proc/self/fd/{fd}"
            try:
                self._direct_fd = os.open(
                    proc if os.path.exists(proc) else self.path, os.O_WRONLY | os.O_DIRECT
                )
            except OSError as exc:
                logger.debug("%s: no O_DIRECT (%s); writing through the page cache",
                             self.path, exc)
        if self._direct_fd >= 0:
            self._stage = mmap.mmap(-1, stage_bytes)  # page-aligned
            self._view = memoryview(self._stage)

    @property
    def direct(self) -> bool:
        """Whether data goes past the page cache."""
        return self._direct_fd >= 0

    def write(self, buffers: list) -> int:
        """Append ``buffers`` (bytes-like, C-contiguous, in order); return the byte count.

        The buffers must stay unchanged until the call returns (nothing is
        kept after it).

        Raises
        ------
        ampkit.errors.RecordingError
            The disk refused (full, gone, read-only): names the file.
        """
        arrays = [np.frombuffer(b, np.uint8) for b in buffers]
        total = sum(len(a) for a in arrays)
        if self._stage is None:
            for array in arrays:
                self._write_plain(memoryview(array))
        else:
            for addr, n, parts in _runs(arrays):
                if n >= self._zero_copy_bytes and (addr - self._base - self._fill) % ALIGN == 0:
                    self._write_run(addr, n, parts)
                else:
                    for part in parts:
                        self._append(memoryview(part))
        self.size += total
        return total

    def _append(self, view: memoryview) -> None:
        """Copy ``view`` into the staging buffer, writing it out each time it is full."""
        done = 0
        while done < len(view) and self._stage is not None:
            k = min(len(view) - done, self._stage_bytes - self._fill)
            self._view[self._fill:self._fill + k] = view[done:done + k]
            self._fill += k
            done += k
            if self._fill == self._stage_bytes:
                self._write_direct(self._fill)
        if done < len(view):  # no O_DIRECT (any more)
            self._write_plain(view[done:])

    def _write_run(self, addr: int, n: int, parts: list[np.ndarray]) -> None:
        """Append ``n`` contiguous bytes at ``addr`` (kept alive by ``parts``)
        that sit at the same offset from a page boundary as they will in the
        file: the aligned middle goes to the disk from where it is, uncopied."""
        view = memoryview((ctypes.c_char * n).from_address(addr)).cast("B")
        head = -(self._base + self._fill) % ALIGN
        self._append(view[:head])  # completes the staged page
        if self._stage is not None and self._fill:
            self._write_direct(self._fill)
        if self._stage is None:  # fell back to the page cache
            self._write_plain(view[head:])
            return
        middle = (n - head) // ALIGN * ALIGN
        done = self._pwrite_direct(view[head:head + middle], self._base) if middle else 0
        if self._stage is None:  # refused at its first byte
            self._write_plain(view[head:])
            return
        if done < middle:  # a short, unaligned write: the rest the plain way
            self._pwrite_buffered(view[head + done:head + middle], self._base + done)
        self._base += middle
        self._append(view[head + middle:])

    def _pwrite_direct(self, view: memoryview, offset: int) -> int:
        """Write aligned ``view`` at ``offset`` with O_DIRECT; return the bytes written
        (fewer after a short write). A file system that refuses the first byte
        makes the file fall back to the page cache (returns 0)."""
        done = 0
        try:
            while done < len(view) and done % ALIGN == 0:
                k = os.pwrite(self._direct_fd, view[done:], offset + done)
                if k <= 0:  # pragma: no cover - regular files do not do this
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += k
        except OSError as exc:
            if exc.errno != errno.EINVAL or done:
                raise recording_error(self.path, exc) from exc
            # The file system took the descriptor but not the write.
            logger.debug("%s: O_DIRECT write refused (%s); writing through the page cache",
                         self.path, exc)
            self._fall_back()
        return done

    def _write_direct(self, n: int) -> None:
        """Write the first ``n`` staged bytes (a multiple of ALIGN) to the disk,
        and keep the rest at the start of the buffer."""
        view = self._view
        done = self._pwrite_direct(view[:n], self._base)
        if self._stage is None:
            return  # fell back: the staged bytes were written the plain way
        if done < n:  # a short, unaligned write: the rest the plain way
            self._pwrite_buffered(view[done:n], self._base + done)
        self._stage.move(0, n, self._fill - n)
        self._fill -= n
        self._base += n

    def _fall_back(self) -> None:
        """Write through the page cache from now on, the staged bytes first."""
        staged = bytes(self._view[:self._fill])
        self._close_direct()
        os.lseek(self._fd, self._base, os.SEEK_SET)
        self._write_plain(memoryview(staged))
        self._fill = 0

    def _write_plain(self, view: memoryview) -> None:
        """Write at the descriptor's position (files, pipes, devices)."""
        write_all(self._fd, view, self.path)

    def _pwrite_buffered(self, view: memoryview, offset: int) -> None:
        done = 0
        try:
            while done < len(view):
                k = os.pwrite(self._fd, view[done:], offset + done)
                if k == 0:  # pragma: no cover - regular files do not do this
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += k
        except OSError as exc:
            raise recording_error(self.path, exc) from exc

    def flush(self) -> None:
        """Put everything appended so far into the file.

        Raises
        ------
        ampkit.errors.RecordingError
            The disk refused.
        """
        if self._stage is None or not self._fill:
            return
        aligned = self._fill - self._fill % ALIGN
        if aligned:
            self._write_direct(aligned)
        if self._stage is not None and self._fill:
            # The tail through the page cache; the next aligned write covers it.
            self._pwrite_buffered(self._view[:self._fill], self._base)

    def fileno(self) -> int:
        """The descriptor of the plain (page-cache) side of the file."""
        return self._fd

    def _close_direct(self) -> None:
        if self._direct_fd >= 0:
            os.close(self._direct_fd)
            self._direct_fd = -1
        # Dropped, not closed: a traceback may still hold a slice of it.
        self._stage = self._view = None

    def close(self) -> None:
        """Flush and close the file (also after a failure: then without flushing).

        Raises
        ------
        ampkit.errors.RecordingError
            The last flush failed; the file is closed all the same.
        """
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close without flushing what is staged (after a failed write)."""
        self._close_direct()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as exc:
                raise recording_error(self.path, exc, "close") from exc
