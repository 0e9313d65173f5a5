"""Readers asleep in the futex, woken by the writer's commit: real processes."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import numpy as np
import pytest

import ampkit
from ampkit.shared import SharedWriter
from ampkit.shared.segment import WAITERS
from ampkit.shared.waiting import FUTEX_AVAILABLE, FutexWaiter, NapWaiter, waiter_for

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
