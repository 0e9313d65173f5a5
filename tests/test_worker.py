import threading
import time

import pytest

from ampkit.worker import Worker


def test_stop_returns_promptly():
    def loop(stop):
        while not stop.wait(0.01):
            pass

    w = Worker(loop, "loop").start()
    assert w.is_alive
    t = time.monotonic()
    w.stop()
    assert time.monotonic() - t < 1.0
    assert not w.is_alive


def test_exception_is_reraised_once():
    def boom(stop):
        raise ValueError("device said no")

    with Worker(boom, "boom") as w:
        for _ in range(100):
            if not w.is_alive:
                break
            time.sleep(0.01)
        with pytest.raises(ValueError, match="device said no"):
            w.check()
        w.check()  # reported once


def test_stop_times_out_for_a_stuck_thread():
    release = threading.Event()

    def stuck(stop):
        release.wait(5)

    w = Worker(stuck, "stuck").start()
    with pytest.raises(RuntimeError, match="did not stop"):
        w.stop(timeout=0.05)
    release.set()
    w.stop()


def test_double_start_refused():
    w = Worker(lambda stop: None, "once").start()
    with pytest.raises(RuntimeError):
        w.start()
    w.close()


def test_closing_mixin_closes_on_exit_even_after_an_error():
    from ampkit.worker import Closing

    class Owner(Closing):
        closed = 0

        def close(self):
            self.closed += 1

    with pytest.raises(KeyError):
        with Owner() as owner:
            raise KeyError("x")
    assert owner.closed == 1
    with pytest.raises(NotImplementedError):
        Closing().close()
