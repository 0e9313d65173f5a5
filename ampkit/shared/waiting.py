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

from ampkit.shared.segment import DUE_NS, JITTER_NS, PERIOD_NS, WRITTEN, fence

__all__ = ["CommitRhythm", "CommitWaiter", "precise_sleeps"]

_NS = 1_000_000_000
#: Extra lead (ns) on top of jitter and oversleep.
MARGIN = 20_000
#: Nap (ns) while looking closely around the due time.
CLOSE_NAP = 40_000
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

    Blocks come on the device's schedule, which their samples' timestamps
    tell: the next block is due when its samples will have been taken (the
    newest sample's time plus the mean time a block spans) plus the usual
    delay from a sample's time to its commit (transport, decoding, the
    decorator). A block held up for milliseconds (the CPUs were busy, the
    device stalled) does not shift that schedule, so the blocks that come in
    a burst after it are expected when they come. Both means are clipped to
    a few jitters per step, so one late block moves them a little only. A
    commit much earlier than due re-locks the delay at once (expecting blocks
    too late would make readers sleep through them); commits more than four
    periods late re-lock it when two in a row are as late (the delay changed
    for good, not a stall followed by a burst).

    Attributes
    ----------
    due : float
        When the next commit is expected, ns on ``time.monotonic_ns()``
        (0 until two commits were seen).
    period : float
        Mean time a block spans, ns.
    delay : float
        Usual time from a block's newest sample to its commit, ns.
    jitter : float
        Mean distance of commits from their due time (clipped), ns.
    """

    def __init__(self) -> None:
        self.due = 0.0
        self.period = 0.0
        self.delay = 0.0
        self.jitter = 0.0
        self._last_t: float | None = None
        self._late: float | None = None

    def commit(self, now: int, newest: float) -> None:
        """Count a commit at ``now`` (``time.monotonic_ns()``) of a block whose
        newest sample was taken at ``newest`` (seconds on
        :func:`ampkit.clock.local_clock`)."""
        t = newest * 1e9
        last_t, self._last_t = self._last_t, t
        delay = now - t
        if last_t is None:
            self.delay = delay
            return
        span = t - last_t
        if not self.period:
            self.period = span
        else:
            self.period += (span - self.period) / 16
            error = now - self.due
            bound = 4 * self.jitter + MARGIN
            if error > 4 * self.period:
                # Far later than due: a stall (the next blocks come in a burst,
                # each less late), or the delay changed for good (the next is
                # as late): take it when two in a row say the same.
                if self._late is not None and abs(delay - self._late) < bound:
                    self.delay = delay
                self._late = delay
            elif error < -bound:
                self.delay = delay  # much earlier: expecting blocks too late is worse
                self._late = None
            else:
                self.jitter += (min(abs(error), bound) - self.jitter) / 8
                self.delay += min(bound, delay - self.delay) / 8
                self._late = None
        self.due = t + self.period + self.delay


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

    def pause(self, now: int, deadline: int, written: int) -> None:
        """Sleep once, unless a block came after the caller looked.

        Parameters
        ----------
        now, deadline : int
            ``time.monotonic_ns()`` now, and when the caller stops waiting.
        written : int
            The ``written`` counter the caller found (too small).
        """
        words = self.words
        left = deadline - now
        period = words[PERIOD_NS]
        if not period:
            time.sleep(min(UNKNOWN_NAP, left) / _NS)
            return
        due = words[DUE_NS]
        # The writer stores the next due time after the commit: a due time
        # read before ``written`` changed is this block's, not the next one's
        # (sleeping till that would sleep through the block).
        fence()
        if words[WRITTEN] != written:
            return
        jitter = words[JITTER_NS]
        lead = min(self.oversleep + jitter + MARGIN, period // 2)
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
