"""Tests of ampkit.buffer.RingBuffer.

Every result is checked against a naive reference (a Python list of all rows
ever added) and, for the layout of ``buffer``/``buffer_t``/``curr_i``, against
dareplane-utils' own RingBuffer, which ampkit's must be a drop-in for.
"""

import logging

import numpy as np
import pytest
from dareplane_peer import DareplaneRingBuffer
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from ampkit.buffer import RingBuffer
from ampkit.errors import ConfigurationError


class NaiveRing:
    """Reference: remember every row, answer questions from the full history."""

    def __init__(self, size, n_ch, dtype=np.float32):
        self.size = size
        self.rows = []
        self.times = []
        self.n_ch = n_ch
        self.fill = np.zeros(n_ch, dtype=dtype)

    def add(self, samples, times):
        self.rows.extend(np.asarray(samples))
        self.times.extend(times)

    def unfold(self):
        pad = max(0, self.size - len(self.rows))
        rows = [self.fill] * pad + self.rows[len(self.rows) - self.size + pad :]
        return np.array(rows).reshape(self.size, -1)

    def unfold_t(self):
        pad = max(0, self.size - len(self.times))
        return np.array([0.0] * pad + self.times[len(self.times) - self.size + pad :])

    def last(self, n):
        n = min(n, len(self.rows))
        return np.array(self.rows[len(self.rows) - n :]).reshape(n, self.n_ch)

    def last_t(self, n):
        n = min(n, len(self.times))
        return np.array(self.times[len(self.times) - n :], dtype=np.float64)


def chunk(start, n, n_ch=3):
    """Rows whose values say which sample they are (sample k holds k*10+c)."""
    k = np.arange(start, start + n)
    data = (k[:, None] * 10 + np.arange(n_ch)[None, :]).astype(np.float32)
    return data, (k * 0.001 + 5.0).tolist()


def check_against_references(rb, naive, dp):
    # the mirrored rows past the end of the ring always equal its first rows
    assert_array_equal(rb._store[rb.size :], rb.buffer[: rb.view_rows])
    assert_array_equal(rb._store_t[rb.size :], rb.buffer_t[: rb.view_rows])
    assert_array_equal(rb.unfold_buffer(), naive.unfold())
    assert_array_equal(rb.unfold_buffer_t(), naive.unfold_t())
    assert_array_equal(rb.buffer, dp.buffer)
    assert_array_equal(rb.buffer_t, dp.buffer_t)
    assert rb.curr_i == dp.curr_i
    for n in range(rb.size + 1):
        assert_array_equal(rb.get_last(n), naive.last(n))
        assert_array_equal(rb.get_last_t(n), naive.last_t(n))


@pytest.mark.parametrize("size", [1, 2, 7])
@pytest.mark.parametrize("mirror", ["none", "some", "all"])
def test_every_offset_and_chunk_size(size, mirror):
    """A chunk of 0, 1, size-1, size, size+1 and 2*size+3 rows at every start offset."""
    view_rows = {"none": 0, "some": size // 2, "all": size}[mirror]
    for offset in range(size):
        for n in sorted({0, 1, max(size - 1, 0), size, size + 1, 2 * size + 3}):
            rb = RingBuffer((size, 3), view_rows=view_rows)
            naive = NaiveRing(size, 3)
            dp = DareplaneRingBuffer((size, 3))
            k = 0
            # fill once completely so "offset" is a real position in a full ring
            for part in (size, offset):
                if part:
                    data, t = chunk(k, part)
                    for target in (rb, dp):
                        target.add_samples(data, t)
                    naive.add(data, t)
                    k += part
            assert rb.curr_i == offset
            data, t = chunk(k, n)
            rb.add_samples(data, t)
            if n:
                dp.add_samples(data, t)  # dareplane logs a warning for empty chunks
            naive.add(data, t)
            assert rb.curr_i == (offset + min(n, size)) % size
            check_against_references(rb, naive, dp)
            assert rb.last_t == (naive.times[-1] if naive.times else 0.0)


def test_partly_filled_buffer():
    rb = RingBuffer((5, 2))
    assert rb.last_t == 0.0
    assert rb.get_last(3).shape == (0, 2)
    rb.add_samples([[1, 2], [3, 4]], [0.1, 0.2])
    assert rb.get_last(5).tolist() == [[1, 2], [3, 4]]  # only what was added
    assert rb.get_last_t(5).tolist() == [0.1, 0.2]
    assert rb.unfold_buffer().tolist() == [[0, 0]] * 3 + [[1, 2], [3, 4]]
    assert rb.n_filled == 2
    assert rb.last_t == 0.2


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 12),
    n_ch=st.integers(1, 3),
    chunks=st.lists(st.integers(0, 30), max_size=25),
    reads=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    mirror=st.floats(0, 1),
)
def test_random_sequences_match_reference(size, n_ch, chunks, reads, mirror):
    rb = RingBuffer((size, n_ch), view_rows=int(mirror * size))
    dp = DareplaneRingBuffer((size, n_ch))
    naive = NaiveRing(size, n_ch)
    k = 0
    for n in chunks:
        data, t = chunk(k, n, n_ch)
        k += n
        rb.add_samples(data, t)
        if n:
            dp.add_samples(data, t)
        naive.add(data, t)
        assert_array_equal(rb.unfold_buffer(), naive.unfold())
        assert_array_equal(rb.unfold_buffer_t(), naive.unfold_t())
        assert rb.curr_i == dp.curr_i
        for r in reads:
            r = min(r, size)
            assert_array_equal(rb.get_last(r), naive.last(r))
            assert_array_equal(rb.get_last_t(r), naive.last_t(r))
    assert_array_equal(rb.buffer, dp.buffer)
    assert_array_equal(rb.buffer_t, dp.buffer_t)
    assert_array_equal(rb._store[size:], rb.buffer[: rb.view_rows])
    assert rb.n_added == k


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(1, 10),
    chunks=st.lists(st.integers(0, 25), max_size=15),
    mirror=st.floats(0, 1),
)
def test_view_exactly_when_not_wrapping_or_mirrored(size, chunks, mirror):
    rb = RingBuffer((size, 2), view_rows=int(mirror * size))
    k = 0
    for n in chunks:
        data, t = chunk(k, n, 2)
        k += n
        rb.add_samples(data, t)
        for r in range(rb.n_filled + 1):
            last = rb.get_last(r)
            i = rb.curr_i
            wraps = r > i and i != 0
            view = r > 0 and (not wraps or i <= rb.view_rows)
            assert np.shares_memory(last, rb._store) == view
            assert np.shares_memory(rb.get_last_t(r), rb._store_t) == view
            if r <= rb.view_rows:
                assert view or r == 0
            assert not np.shares_memory(rb.get_last(r, copy=True), rb.buffer)
            assert not np.shares_memory(rb.get_last_t(r, copy=True), rb.buffer_t)


def test_view_sees_later_writes_and_copy_does_not():
    rb = RingBuffer((4, 1))
    rb.add_samples([[1], [2]], [1.0, 2.0])
    view, kept = rb.get_last(2), rb.get_last(2, copy=True)
    rb.add_samples([[3], [4], [5], [6]], [3.0, 4.0, 5.0, 6.0])
    assert view.ravel().tolist() == [5, 6]  # rows 0 and 1 were written again
    assert kept.ravel().tolist() == [1, 2]


def test_unfold_returns_copies():
    rb = RingBuffer((3, 1))
    rb.add_samples([[1], [2], [3]], [1.0, 2.0, 3.0])
    assert rb.curr_i == 0
    out = rb.unfold_buffer()
    out[:] = 0
    assert rb.buffer.ravel().tolist() == [1, 2, 3]
    assert not np.shares_memory(rb.unfold_buffer_t(), rb.buffer_t)


def test_unread_and_overflow_counts():
    rb = RingBuffer((4, 1))
    assert (rb.n_unread, rb.n_overflow) == (0, 0)
    rb.add_samples([[1], [2], [3]], [1.0, 2.0, 3.0])
    assert (rb.n_unread, rb.n_overflow) == (3, 0)
    data, times = rb.get_new()
    assert data.ravel().tolist() == [1, 2, 3] and times.tolist() == [1.0, 2.0, 3.0]
    assert (rb.n_unread, rb.n_overflow) == (0, 0)
    rb.add_samples([[4], [5], [6], [7], [8], [9]], [4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    assert (rb.n_unread, rb.n_overflow) == (4, 2)  # 4 and 5 were overwritten unread
    data, times = rb.get_new()
    assert data.ravel().tolist() == [6, 7, 8, 9]
    rb.add_samples([[10]], [10.0])
    rb.mark_read()
    assert (rb.n_unread, rb.n_overflow) == (0, 2)
    # a chunk larger than the buffer: the dropped rows are lost unread too
    rb.add_samples(np.arange(7)[:, None], np.arange(7.0))
    assert (rb.n_unread, rb.n_overflow) == (4, 5)
    assert rb.get_new()[0].ravel().tolist() == [3, 4, 5, 6]


def test_oversize_chunk_logs_a_warning_once(caplog):
    rb = RingBuffer((2, 1))
    with caplog.at_level(logging.DEBUG, logger="ampkit"):
        rb.add_samples(np.zeros((5, 1)), np.zeros(5))
        rb.add_samples(np.zeros((5, 1)), np.zeros(5))
    levels = [r.levelno for r in caplog.records if "does not fit" in r.message]
    assert levels == [logging.WARNING, logging.DEBUG]


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, object]
)
def test_dtypes(dtype):
    rb = RingBuffer((3, 2), dtype=dtype)
    assert rb.buffer.dtype == np.dtype(dtype)
    assert rb.buffer_t.dtype == np.float64
    if dtype is object:
        assert rb.buffer.tolist() == [["", ""]] * 3
        rows = [["a", "bb"], ["", "ü"], ["x", "y"], ["z", "w"]]
    else:
        info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
        rows = [[info.min, info.max], [0, 1], [-1, 2], [3, 4]]
    rb.add_samples(rows, [1.0, 2.0, 3.0, 4.0])
    out = rb.unfold_buffer()
    assert out.dtype == np.dtype(dtype)
    assert out.tolist() == [list(r) for r in rows[1:]]


def test_list_inputs_as_dareplane_accepts_them():
    rb = RingBuffer((10, 3))
    rows = [np.full(3, i, dtype=np.float32) for i in range(5)]
    rb.add_samples(rows, list(range(5)))
    assert rb.get_last(5)[:, 0].tolist() == [0, 1, 2, 3, 4]
    rb.add_samples(rows + rows, list(range(10)))  # wraps, list slicing path
    assert rb.unfold_buffer_t().tolist() == list(range(10))


def test_more_than_two_dimensions():
    rb = RingBuffer((4, 2, 3))
    data = np.arange(5 * 6).reshape(5, 2, 3)
    rb.add_samples(data, np.arange(5.0))
    assert_array_equal(rb.unfold_buffer(), data[1:])
    assert_array_equal(rb.get_last(3), data[2:])


def test_bad_input_raises():
    with pytest.raises(ConfigurationError):
        RingBuffer((0, 3))
    with pytest.raises(ConfigurationError):
        RingBuffer(())
    for bad in (-1, 5, 1.5, True):
        with pytest.raises(ConfigurationError, match="view_rows"):
            RingBuffer((4, 1), view_rows=bad)
    rb = RingBuffer((4, 1))
    with pytest.raises(ConfigurationError, match="2 samples but 3 timestamps"):
        rb.add_samples([[1], [2]], [1.0, 2.0, 3.0])
    with pytest.raises(ConfigurationError, match="5 samples but 4 timestamps"):
        rb.add_samples(np.zeros((5, 1)), np.zeros(4))
    with pytest.raises(ConfigurationError):
        rb.get_last(5)
    with pytest.raises(ConfigurationError):
        rb.get_last(-1)
    assert rb.n_added == 0 and rb.curr_i == 0


def test_buffer_arrays_cannot_be_rebound():
    rb = RingBuffer((4, 2), view_rows=2)
    with pytest.raises(ConfigurationError, match="cannot be replaced"):
        rb.buffer = rb.buffer.astype(np.float64)  # what dareplane's StreamWatcher does
    with pytest.raises(ConfigurationError, match="cannot be replaced"):
        rb.buffer_t = np.zeros(4)
    assert rb.buffer.dtype == np.float32 and rb.buffer_t.shape == (4,)
