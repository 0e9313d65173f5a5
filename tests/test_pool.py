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
    ),
    st.booleans(),
)
def test_no_memory_is_handed_out_twice_while_in_use(steps, classes):
    """Take arrays, fill each with its own value, drop some at random: every
    array kept still holds its value, so no live memory was handed out again."""
    pool = BufferPool(keep_bytes=64_000, size_classes=classes)
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


def test_size_classes_share_buffers_within_twice_the_request():
    pool = BufferPool(size_classes=True)
    a = pool.get(1000)
    first = address(a)
    assert len(a.base) == 1024
    del a
    b = pool.get(600)  # the same class: the same buffer
    assert address(b) == first
    del b
    c = pool.get(400)  # a 1024-byte buffer would be more than twice 400
    assert address(c) != first and len(c.base) == 512


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 100_000), st.booleans()), min_size=1, max_size=40))
def test_a_kept_array_holds_at_most_twice_its_size_with_size_classes(steps):
    pool = BufferPool(size_classes=True)
    kept = []
    for n, keep in steps:
        a = pool.get(n)
        assert n <= len(a.base) <= 2 * n
        if keep:
            kept.append(a)
