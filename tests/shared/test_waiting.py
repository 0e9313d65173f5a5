"""When the writer says its next block is due, and how a reader sleeps till then."""

from __future__ import annotations

import numpy as np
import pytest

from ampkit.shared import waiting
from ampkit.shared.segment import DUE_NS, JITTER_NS, PERIOD_NS, WRITTEN
from ampkit.shared.waiting import CommitRhythm, CommitWaiter

MS = 1_000_000


def run_rhythm(delays_ms: list[float]) -> list[float]:
    """Blocks of 10 ms on a device schedule, committed ``delay`` ms after their
    newest sample (never before the previous commit); returns, for each, how
    far its commit was from the due time published before it (ms)."""
    rhythm = CommitRhythm()
    errors, last = [], 0
    for k, delay in enumerate(delays_ms):
        newest = 1_000 * MS + k * 10 * MS
        now = max(last, newest + int(delay * MS))
        if rhythm.due:
            errors.append((now - rhythm.due) / MS)
        rhythm.commit(now, newest / 1e9)
        last = now
    return errors


def test_steady_blocks_are_expected_on_time():
    rng = np.random.default_rng(0)
    errors = run_rhythm(list(0.2 + 0.1 * rng.random(300)))
    assert np.abs(errors[20:]).max() < 0.1


def test_a_stall_does_not_shift_the_schedule():
    # blocks 100-103 held up 40 ms, then they come in a burst; later blocks on time
    delays = [0.2] * 300
    for k in range(100, 104):
        delays[k] = 40.0 - 10 * (k - 100)
    errors = run_rhythm(delays)  # errors[k - 2] is block k's
    assert abs(errors[97]) < 0.1  # block 99
    assert all(e > 5 for e in errors[98:102])  # the stalled ones come late...
    assert abs(errors[102]) < 0.5  # ...block 104 is expected when it comes
    assert np.abs(errors[103:]).max() < 0.5


@pytest.mark.parametrize("stall", [20, 40, 60, 200])
def test_after_a_stall_of_any_length_the_burst_is_expected(stall):
    n = stall // 10
    delays = [0.2] * 300
    for k in range(100, 100 + n):
        delays[k] = stall - 10 * (k - 100)  # held up, then all at once
    errors = run_rhythm(delays)
    assert np.abs(errors[98 + n :]).max() < 0.5, errors[95 : 110 + n]  # from block 100 + n


def test_a_pause_is_relearned():
    errors = run_rhythm([0.2] * 50 + [500.0] * 50)  # from now on commits lag 0.5 s
    assert errors[48] > 400 and errors[49] > 400  # two late ones...
    assert np.abs(errors[50:]).max() < 0.5  # ...and the next are expected


@pytest.fixture
def sleeps(monkeypatch):
    """The sleeps a CommitWaiter asks for, in seconds (not slept)."""
    asked = []
    monkeypatch.setattr(waiting.time, "sleep", asked.append)
    return asked


def test_sleeps_till_shortly_before_due(sleeps):
    now = 10_000 * MS
    words = [0] * 64  # the header's words, as a reader sees them
    words[PERIOD_NS], words[DUE_NS], words[JITTER_NS] = 10 * MS, now + 8 * MS, 50_000
    waiter = CommitWaiter(words)  # type: ignore[arg-type]
    waiter.pause(now, now + 1000 * MS, 0)
    lead = waiting.OVERSLEEP + 50_000 + waiting.MARGIN
    assert sleeps == [pytest.approx((8 * MS - lead) / 1e9)]
    # about due: short naps
    waiter.pause(now + 8 * MS - 10_000, now + 1000 * MS, 0)
    assert sleeps[-1] == waiting.CLOSE_NAP / 1e9
    # long overdue: naps of period / 20
    waiter.pause(now + 20 * MS, now + 1000 * MS, 0)
    assert sleeps[-1] == pytest.approx(0.0005)
    # never past the caller's deadline
    waiter.pause(now, now + 1 * MS, 0)
    assert sleeps[-1] == pytest.approx(0.001)


def test_no_sleep_when_a_block_came_after_the_caller_looked(sleeps):
    words = [0] * 64
    words[PERIOD_NS], words[DUE_NS], words[WRITTEN] = 10 * MS, 20 * MS, 7
    CommitWaiter(words).pause(0, 1000 * MS, 6)  # type: ignore[arg-type]
    assert sleeps == []  # the due time read may be the block after block 7's


def test_unknown_rhythm_naps(sleeps):
    waiter = CommitWaiter([0] * 64)  # type: ignore[arg-type]
    waiter.pause(0, 1000 * MS, 0)
    assert sleeps == [waiting.UNKNOWN_NAP / 1e9]
