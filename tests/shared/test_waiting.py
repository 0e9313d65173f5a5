"""Readers asleep in the futex, woken by the writer's commit: real processes."""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from collections.abc import Callable

import numpy as np
import pytest

import ampkit
from ampkit.shared import SharedWriter
from ampkit.shared.segment import WAITERS, WAITERS_OFFSET
from ampkit.shared.waiting import (
    FUTEX_AVAILABLE,
    FutexWaiter,
    NapWaiter,
    _count_out,
    waiter_for,
)

needs_futex = pytest.mark.skipif(not FUTEX_AVAILABLE, reason="no futex on this platform")


def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait (generously) for ``condition``; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.005)


def one_row(w: SharedWriter) -> None:
    n = w.n_written
    w.write(np.full((1, 1), n, np.float32), [n / 100.0])


@pytest.fixture
def writer(shm_name):
    w = SharedWriter(shm_name, ["a"], 100.0, seconds=2)
    yield w
    w.close()


def sleepers(spawn, name: str, n: int) -> list:
    return [spawn("sleeper", name, "--duration", "60", wait_ready=True) for _ in range(n)]


def outcome(proc) -> dict:
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return json.loads(out)


@needs_futex
def test_a_reader_in_another_process_sleeps_until_the_commit_wakes_it(writer, spawn):
    words = writer.segment.words
    (proc,) = sleepers(spawn, writer.name, 1)
    until(lambda: words[WAITERS] == 1, "the reader counted as a waiter")
    time.sleep(0.3)
    assert proc.poll() is None, "the reader returned with nothing written"
    assert writer._signal.n_wakes == 0  # nothing committed: no wake-up
    one_row(writer)
    assert outcome(proc) == {"got": [[0.0]], "index": 0}
    assert writer._signal.n_wakes == 1
    until(lambda: words[WAITERS] == 0, "the reader counted out")


@needs_futex
def test_one_wake_up_per_commit_however_many_readers_and_none_without(writer, spawn):
    words = writer.segment.words
    procs = sleepers(spawn, writer.name, 4)
    until(lambda: words[WAITERS] == 4, "four readers counted as waiters")
    one_row(writer)
    for proc in procs:
        assert outcome(proc)["got"] == [[0.0]]
    assert writer._signal.n_wakes == 1
    until(lambda: words[WAITERS] == 0, "the readers counted out")
    for _ in range(10):
        one_row(writer)
    assert writer._signal.n_wakes == 1  # nobody waits: no system call


@needs_futex
def test_a_reader_counts_in_once_and_out_when_it_closes(writer):
    words, signal_ = writer.segment.words, writer._signal
    r = ampkit.attach(writer.name, timeout=0)
    try:
        one_row(writer)
        assert words[WAITERS] == 0 and signal_.n_wakes == 0  # polling readers are not counted
        for _ in range(3):  # nothing comes: each wait sleeps and times out
            assert r.wait(1, 2, timeout=0.02) is None
            assert words[WAITERS] == 1  # counted once, not once per wait
        one_row(writer)
        assert r.wait(1, 2, timeout=1) is not None
        assert words[WAITERS] == 1
        one_row(writer)  # awake, but counted: the writer still calls FUTEX_WAKE
        assert signal_.n_wakes == 2
    finally:
        r.close()
    assert words[WAITERS] == 0
    r.close()  # twice: counted out once
    assert words[WAITERS] == 0
    one_row(writer)
    assert signal_.n_wakes == 2


@needs_futex
def test_a_reader_dropped_without_close_counts_out(writer):
    r = ampkit.attach(writer.name, timeout=0)
    assert r.wait(0, 1, timeout=0.01) is None
    assert writer.segment.words[WAITERS] == 1
    del r
    gc.collect()
    assert writer.segment.words[WAITERS] == 0


@needs_futex
def test_a_forked_child_that_exits_does_not_count_its_parent_out(writer):
    """The count-out at exit belongs to the process that counted in; a child
    that inherited the reader through fork runs the same exit hooks."""
    r = ampkit.attach(writer.name, timeout=0)
    try:
        assert r.wait(0, 1, timeout=0.01) is None
        address = r.segment.control_address + WAITERS_OFFSET
        _count_out(address, os.getpid() + 1)  # what the hook does in another process
        assert writer.segment.words[WAITERS] == 1
    finally:
        r.close()
    assert writer.segment.words[WAITERS] == 0


@needs_futex
def test_a_reader_killed_in_its_sleep_costs_one_wake_per_commit(shm_name, writer, spawn):
    words = writer.segment.words
    procs = sleepers(spawn, writer.name, 2)
    until(lambda: words[WAITERS] == 2, "two readers counted as waiters")
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # Known and bounded: a reader killed asleep stays counted for the rest of
    # this writer's run, so each commit makes one FUTEX_WAKE that wakes
    # nobody -- one, however many were killed.
    assert words[WAITERS] == 2
    for _ in range(5):
        one_row(writer)
    assert writer._signal.n_wakes == 5
    # The count still works for the living.
    (proc,) = sleepers(spawn, writer.name, 1)
    until(lambda: words[WAITERS] == 3, "a new reader counted on top")
    one_row(writer)
    assert outcome(proc) == {"got": [[5.0]], "index": 5}
    until(lambda: words[WAITERS] == 2, "the new reader counted out")
    writer.close()
    with SharedWriter(shm_name, ["a"], 100.0) as fresh:  # the next run starts from 0
        assert fresh.segment.words[WAITERS] == 0


@needs_futex
def test_closing_the_writer_wakes_sleeping_readers(writer, spawn):
    words = writer.segment.words
    procs = sleepers(spawn, writer.name, 2)
    until(lambda: words[WAITERS] == 2, "two readers counted as waiters")
    writer.close()
    for proc in procs:
        assert "stopped after 0 samples" in outcome(proc)["ended"]


@needs_futex
def test_a_reader_maps_the_header_writable_and_waits_on_the_futex(writer):
    r = ampkit.attach(writer.name, timeout=0)
    try:
        assert r.segment.control_address
        assert isinstance(waiter_for(r.segment), FutexWaiter)
        assert r.segment.data.flags.writeable is False  # the rings stay read-only
    finally:
        r.close()


def test_the_fallback_naps_until_the_block_is_there(shm_name, spawn):
    """Where there is no futex a reader looks at intervals; nobody is counted."""
    # 10 rows every 10 ms, each holding the block's first index
    writer = spawn("paced", shm_name, wait_ready=True)
    r = ampkit.attach(shm_name, timeout=5)
    try:
        r._waiter = NapWaiter(r.segment)
        for _ in range(5):
            last = r.last_sample
            block = r.wait(last, last + 10, timeout=10)
            assert block is not None and (block == last).all()
        assert r.segment.words[WAITERS] == 0
    finally:
        r.close()
        writer.send_signal(signal.SIGTERM)
        writer.communicate(timeout=30)
