import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampkit.pool import BufferPool

pytestmark = pytest.mark.skipif(
    not hasattr(sys, "getrefcount"), reason="reuse needs CPython's reference counts"
)


def address(a):
    return a.__array_interface__["data"][0]


def test_a_buffer_comes_back_once_its_last_view_is_gone():
    pool = BufferPool()
    a = pool.array((100, 8), np.float32)
    first = address(a)
    view = a[10:20]
    del a
    b = pool.array((100, 8), np.float32)
    assert address(b) != first  # ``view`` still holds the first buffer
    del view, b
    c = pool.array((50, 8), np.float32)  # smaller fits too
    assert address(c) == first


def test_arrays_have_the_shape_and_dtype_asked_and_are_writable():
    pool = BufferPool()
    a = pool.array((3, 4, 5), np.int16)
    assert a.shape == (3, 4, 5) and a.dtype == np.int16
    assert a.flags.c_contiguous and a.flags.writeable
    a[:] = 7
    assert pool.get(10).dtype == np.uint8 and len(pool.get(10)) == 10


def test_buffers_beyond_keep_bytes_are_not_pooled():
    pool = BufferPool(keep_bytes=10_000)
    a = pool.get(5_000)  # pooled (with its slack)
    first = address(a)
    big = pool.get(20_000)  # over the bound: freed with its last view
    del a, big
    assert address(pool.get(5_000)) == first
    assert [len(buf) >= 20_000 for buf in pool._buffers] == [False]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, 5000), st.integers(0, 7)),
        min_size=1, max_size=60,
    )
)
def test_no_memory_is_handed_out_twice_while_in_use(steps):
    """Take arrays, fill each with its own value, drop some at random: every
    array kept still holds its value, so no live memory was handed out again."""
    pool = BufferPool(keep_bytes=64_000)
    live = []
    for i, (keep, size, drop) in enumerate(steps):
        a = pool.get(size)
        a[:] = i % 251
        if keep:
            live.append((i % 251, a))
        if live and drop < len(live) and drop % 2:
            live.pop(drop)
        for value, kept in live:
            assert (kept == value).all()


def test_min_bytes_lets_any_request_up_to_it_reuse_a_free_buffer():
    pool = BufferPool(min_bytes=100_000)
    a = pool.get(1_000)
    first = address(a)
    del a
    assert address(pool.get(90_000)) == first  # bigger than the first request
    plain = BufferPool()
    b = plain.get(1_000)
    del b
    assert len(plain.get(90_000)) == 90_000 and len(plain._buffers) == 2
