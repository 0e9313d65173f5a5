import time

from ampkit.clock import local_clock


def test_local_clock_agrees_with_pylsl():
    import pylsl

    # Interleave the reads so the comparison does not include call latency.
    diffs = []
    for _ in range(50):
        a = local_clock()
        b = pylsl.local_clock()
        c = local_clock()
        diffs.append(b - (a + c) / 2)
    diffs.sort()
    assert abs(diffs[len(diffs) // 2]) < 1e-3


def test_local_clock_is_monotonic_and_in_seconds():
    a = local_clock()
    time.sleep(0.05)
    b = local_clock()
    assert 0.04 < b - a < 1.0
