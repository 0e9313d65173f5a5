import time

import pytest

from ampkit.clock import local_clock
from ampkit.pacing import Pacer


def test_due_counts_without_drift():
    p = Pacer(1000.0)
    p.start(t0=local_clock() - 1.0)
    n = p.due()
    assert 1000 <= n <= 1100
    total = n
    for _ in range(20):
        time.sleep(0.003)
        total += p.due()
    expected = int((local_clock() - p.t0) * 1000)
    assert expected - 5 <= total <= expected


def test_wait_and_multiple():
    p = Pacer(200.0)
    p.start()
    n = p.due(wait=True, multiple=4)
    assert n >= 4 and n % 4 == 0


def test_time_of():
    p = Pacer(10.0)
    p.start(t0=5.0)
    assert p.time_of(0) == pytest.approx(5.1)


def test_bad_rate():
    with pytest.raises(ValueError):
        Pacer(-1)
