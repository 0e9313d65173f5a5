"""How a reader waits for the writer's next block: asleep, and awake just in time.

Readers cannot be woken by the writer (it never makes a system call for
them: its cost must not grow with their number), so they look. Looking all
the time burns a core per reader; looking every 0.5 ms (rdaclient) adds a
quarter of a millisecond of latency. So the writer publishes when its next
block is due (:class:`CommitRhythm`: a phase-locked estimate of its own
rhythm, which a late block does not shift, so the blocks that catch up after
it are expected on time) and how much its blocks stray from that; a
:class:`CommitWaiter` sleeps until shortly before then and looks closely only
around that moment.

"Shortly before" is the jitter of the writer's rhythm plus how late this
process wakes from a sleep (measured: on an idle virtual machine a 10 ms
sleep can end a quarter of a millisecond late, however small the timer
slack).
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from collections.abc import Iterator
from typing import Any

from ampkit.shared.segment import DUE_NS, JITTER_NS, PERIOD_NS

__all__ = ["CommitRhythm", "CommitWaiter", "precise_sleeps"]

_NS = 1_000_000_000
#: Extra lead (ns) on top of jitter and oversleep.
MARGIN = 20_000
#: Nap (ns) while looking closely around the due time.
CLOSE_NAP = 20_000
#: Look closely until this long (ns, plus twice the jitter) after a block was due.
LATE = 100_000
#: Naps (ns) while a block is overdue (the writer waits for its device, or paused).
NAP_MIN, NAP_MAX = 100_000, 1_000_000
#: Longest single sleep (ns): the writer's health is checked between sleeps.
MAX_SLEEP = 50_000_000
#: Nap (ns) before the writer's rhythm is known (fewer than two blocks).
UNKNOWN_NAP = 200_000
#: First guess of how late a sleep ends (ns), refined by every sleep by STEP.
OVERSLEEP = 100_000
STEP = 8_000

# prctl(2) options: a thread's timer slack (how late the kernel may wake it).
_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30
_libc: Any = None
with contextlib.suppress(OSError, AttributeError):
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl  # noqa: B018 - present on Linux only


@contextlib.contextmanager
def precise_sleeps() -> Iterator[None]:
    """Let this thread's sleeps end within 1 µs of their time while waiting.

    Linux lets a sleeping thread wake up to its *timer slack* late (50 µs by
    default), to batch wake-ups. The slack is the calling thread's own and
    is put back afterwards.
    """
    if _libc is None:
        yield
        return
    old = _libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
    _libc.prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    try:
        yield
    finally:
        if old > 0:
            _libc.prctl(_PR_SET_TIMERSLACK, old, 0, 0, 0)


class CommitRhythm:
    """The writer's side: when its next commit is due.

    A second-order phase-locked loop on the commit times: each commit moves
    the expected phase by a quarter and the period by 1/32 of how far it was
    from its due time, that error clipped to a few jitters, so that one block
    held up for milliseconds (the CPUs were busy, the device stalled) moves
    the schedule by a little only, and the blocks that then come in a burst
    are expected when they come. A commit more than four periods off
    re-locks (the writer paused).

    Attributes
    ----------
    due : float
        When the next commit is expected, ns on ``time.monotonic_ns()``
        (0 until two commits were seen).
    period, jitter : float
        Mean time between commits and mean distance of commits from their
        due time, ns.
    """

    def __init__(self) -> None:
        self.due = 0.0
        self.period = 0.0
        self.jitter = 0.0
        self._last = 0

    def commit(self, now: int) -> None:
        """Count a commit at ``now`` (``time.monotonic_ns()``)."""
        last, self._last = self._last, now
        if not last:
            return
        if not self.period:
            self.period = float(now - last)
            self.due = now + self.period
            return
        error = now - self.due
        if abs(error) > 4 * self.period:
            self.due = now + self.period
            return
        bound = 4 * self.jitter + MARGIN
        clipped = max(-bound, min(bound, error))
        self.jitter += (abs(clipped) - self.jitter) / 8
        self.period += clipped / 32
        self.due += clipped / 4 + self.period


class CommitWaiter:
    """Decide how long a reader sleeps before it looks for a new block again.

    Parameters
    ----------
    words : memoryview
        The segment's header as uint64 words (the writer's rhythm is there).

    Attributes
    ----------
    oversleep : int
        How late this process's sleeps end, in ns: a running estimate of the
        80th percentile.
    """

    def __init__(self, words: memoryview) -> None:
        self.words = words
        self.oversleep = OVERSLEEP

    def pause(self, now: int, deadline: int) -> None:
        """Sleep (or yield) once; ``now`` and ``deadline`` in ``time.monotonic_ns()``."""
        words = self.words
        left = deadline - now
        period = words[PERIOD_NS]
        if not period:
            time.sleep(min(UNKNOWN_NAP, left) / _NS)
            return
        due = words[DUE_NS]
        jitter = words[JITTER_NS]
        lead = min(self.oversleep + 2 * jitter + MARGIN, period // 2)
        wake = due - lead
        if now < wake:
            if wake - now > min(left, MAX_SLEEP):
                time.sleep(min(left, MAX_SLEEP) / _NS)
                return
            time.sleep((wake - now) / _NS)
            # Track the 80th percentile of how late sleeps end, a step at a
            # time: a sleep that ended milliseconds late (the CPUs were busy)
            # moves it by one step, not by milliseconds.
            if time.monotonic_ns() - wake > self.oversleep:
                self.oversleep += STEP
            elif self.oversleep > STEP:
                self.oversleep -= STEP // 4
        elif now < due + 2 * jitter + LATE:
            # About due: look closely. Short naps, not sched_yield(): on busy
            # CPUs a yield hands the core over for a whole time slice
            # (milliseconds), while a sleeper whose timer fires is let back
            # on at once.
            time.sleep(CLOSE_NAP / _NS)
        else:
            time.sleep(min(max(period // 20, NAP_MIN), NAP_MAX, left) / _NS)
