"""Shared streams: a decorated amp's live data for every process of this machine.

The writer (:class:`SharedWriter`, the ``share`` service of a decorated amp:
``amp.start(share="eeg")``) puts every block, its timestamps and its markers
into a ring in POSIX shared memory; any number of readers in other processes
(:func:`attach`) read it with dareplane-utils' ``StreamWatcher`` face or
rdaclient's sample-indexed face, without a copy per reader, a socket or a
lock. Same machine only; other machines: LSL.

One writer, many readers, no locks
----------------------------------
The header holds two sample counters, each one aligned 8-byte word:
``claimed`` and ``written`` (and the same pair for the marker ring). Sample
``k`` lives in row ``k % n_rows``. To append ``n`` samples the writer

1. stores ``claimed = written + n`` -- from now on the rows of samples below
   ``claimed - n_rows`` may be overwritten;
2. fence; writes the rows (and their timestamps);
3. fence; stores ``written = claimed`` -- the new samples are committed.

A reader of samples ``a .. b`` loads ``written`` and gives up if ``b`` is
beyond it (never reads past what is committed); fence; reads (or copies) the
rows; fence; loads ``claimed`` and discards the read if ``a < claimed -
n_rows`` (the writer may have been writing those rows meanwhile: overrun,
counted). The writer never waits for anybody, so a reader cannot slow it
down, and the writer's work is the same for one reader or a hundred: after
a commit it makes one ``FUTEX_WAKE`` system call for all the readers asleep
waiting for it, or none when none is (:mod:`ampkit.shared.waiting`).

Why that holds without atomics in Python:

* Counters are written and read as single aligned 8-byte words (a
  ``memoryview`` cast to ``'Q'`` on a page-aligned mapping: one ``mov`` on
  x86-64, one ``str``/``ldr`` on aarch64). Both architectures make aligned
  8-byte accesses single-copy atomic: no reader sees half a counter.
* x86-64 is TSO: stores become visible in program order and loads are not
  reordered with other loads, so steps 1-3 are seen in order by every reader
  and a reader's loads happen in its order. Bulk copies (``rep movsb`` or
  non-temporal stores inside ``memcpy``) may reorder among themselves, but
  Intel's rule for them is exactly this pattern: string stores are ordered
  before a later discrete store to a flag (the counter), and glibc ends its
  non-temporal copies with ``sfence``. The C compiler cannot move accesses
  across the interpreter's opaque calls either. :func:`~ampkit.shared.segment.fence`
  is a no-op there.
* aarch64 is weakly ordered: stores may be seen out of order and loads may be
  satisfied early, so the fences are real. Python has no fence; the cheapest
  one it can reach is a lock release followed by an acquire (store-release
  then load-acquire, which ARMv8 never reorders: together a full barrier).
  This reasoning is not tested on aarch64 hardware here; the torn-read test
  runs on x86-64.

Liveness: the writer beats a heartbeat word every 0.1 s from a thread. A
reader that finds it older than 0.5 s looks at the writer's process (pid and
start time from the header, in /proc): gone or a zombie means
:class:`~ampkit.errors.ConnectionLostError`; alive but silent for 5 s means
lost too. A writer that stops marks the segment stopped (readers read what is
left, then get :class:`~ampkit.errors.StreamEndedError`) and removes it.


The reader (:mod:`ampkit.shared.reader`) is built on :mod:`ampkit.buffer`, a
layer above the writer's (which the decorator's services use), so this
package exports the writing side only; ``ampkit.attach`` is the reader's
entry point.
"""

from ampkit.shared.service import SharedService
from ampkit.shared.writer import SharedWriter

__all__ = ["SharedService", "SharedWriter"]
