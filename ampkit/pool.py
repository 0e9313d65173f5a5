"""Reusable buffers for arrays that are handed out and given back implicitly.

A receiver that allocates a fresh multi-megabyte array for every message
makes the kernel fault in (and zero) fresh pages each time, which costs about
as much as receiving the bytes. :class:`BufferPool` hands out views of a few
buffers instead and reuses a buffer once nothing refers to it any more:
CPython's reference count tells, so callers never give anything back
explicitly and may keep an array as long as they like (the pool then
allocates another one).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import numpy.typing as npt

__all__ = ["BufferPool"]


class BufferPool:
    """Buffers reused once nothing refers to them any more.

    :meth:`get` returns a view of a pooled buffer; the buffer is free again
    when every array viewing it is gone. Where the interpreter has no
    reference counts (not CPython), every buffer is new.

    Parameters
    ----------
    keep_bytes : int
        Bytes of buffers kept for reuse; buffers allocated beyond this are
        not pooled (they are freed with their last view).
    size_classes : bool
        For requests of varying sizes: allocate powers of two, and hand a
        buffer out only for a request of at least half its size, so that
        requests of a class share buffers while an array its caller keeps
        holds at most twice its own size. Otherwise (for streams of equal
        sizes) a buffer is the first request plus an eighth and 4 KiB (room
        to read ahead into), and any free buffer at least as big fits.

    Examples
    --------
    >>> pool = BufferPool()
    >>> a = pool.array((500, 64), np.float32)
    >>> address = a.__array_interface__["data"][0]
    >>> del a
    >>> b = pool.array((500, 64), np.float32)
    >>> b.__array_interface__["data"][0] == address  # the same memory again
    True
    """

    def __init__(self, keep_bytes: int = 64 * 2**20, size_classes: bool = False) -> None:
        self._room = int(keep_bytes)
        self._classes = bool(size_classes)
        self._buffers: list[np.ndarray] = []
        self._next = 0  # where the next look starts
        self._refcount = getattr(sys, "getrefcount", None)

    def get(self, n: int) -> np.ndarray:
        """A writable uint8 array of ``n`` bytes (contents undefined)."""
        refcount = self._refcount
        buffers = self._buffers
        most = 2 * n if self._classes else math.inf  # largest buffer handed out for n
        i = 0
        if refcount is not None and buffers:
            # Buffers are handed out round the list and mostly come back in
            # that order (consumers read oldest first): the oldest one, where
            # the look starts, is usually free. A few looks, not all: a
            # consumer that fell behind holds hundreds of them.
            count = len(buffers)
            i = self._next % count
            for _ in range(min(count, 8)):
                buf = buffers[i]
                i = i + 1 if i + 1 < count else 0
                # Free when only the list, this name and the call refer to it.
                if n <= len(buf) <= most and refcount(buf) <= 3:
                    self._next = i
                    return buf[:n]
        if self._classes:
            buf = np.empty(1 << max(n - 1, 0).bit_length(), np.uint8)
        else:
            buf = np.empty(n + n // 8 + 4096, np.uint8)
        if refcount is not None and len(buf) <= self._room:
            self._room -= len(buf)
            # The newest in the round, after those just looked at (all busy):
            # the next look goes on with the ones after them, so buffers a
            # consumer keeps for good do not stop the rest from being reused.
            buffers.insert(i, buf)
            self._next = i + 1
        return buf[:n]

    def array(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
        """A writable C-contiguous array of ``shape`` and ``dtype`` from the pool
        (contents undefined)."""
        dtype = np.dtype(dtype)
        return self.get(math.prod(shape) * dtype.itemsize).view(dtype).reshape(shape)
