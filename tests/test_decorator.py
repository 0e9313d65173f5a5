import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from ampkit.amplifier import Amplifier
from ampkit.block import DROPPED_MARKER, GAP_MARKER, Block
from ampkit.clock import local_clock
from ampkit.decorator import AmpDecorator
from ampkit.drivers.random import RandomAmp
from ampkit.errors import AmpkitError, ConfigurationError, RecordingError, StateError
from ampkit.pacing import Pacer, skewed


class Scripted(Amplifier):
    """Returns pre-set blocks, one per get_data() call (a driver without timestamps)."""

    def __init__(self, blocks=(), fs=100.0, channels=2):
        self.blocks = list(blocks)
        self.fs = fs
        self.channels = channels
        self.started = self.stopped = self.closed = False
        self.times = None

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def close(self):
        self.closed = True

    def get_data(self):
        if self.blocks:
            return self.blocks.pop(0)
        return np.zeros((0, self.channels)), []

    def get_channels(self):
        return [f"c{i}" for i in range(self.channels)]

    def get_sampling_frequency(self):
        return self.fs

    def get_timestamps(self):
        return self.times

    @staticmethod
    def is_available():
        return False

    def special(self):
        return "driver-specific"


def test_wraps_class_or_instance_and_delegates():
    a = AmpDecorator(RandomAmp)
    assert isinstance(a.amp, RandomAmp)
    driver = Scripted()
    b = AmpDecorator(driver, name="scripted")
    assert b.amp is driver
    assert b.get_channels() == ["c0", "c1"]
    assert b.get_sampling_frequency() == 100.0
    assert b.get_units() == ["µV", "µV"]
    assert b.is_available() is False
    assert b.special() == "driver-specific"
    assert b.presets == []
    assert str(b) == "AmpDecorator(scripted)"
    with pytest.raises(AttributeError):
        b.no_such_thing  # noqa: B018


def test_rejects_non_amplifiers():
    with pytest.raises(ConfigurationError):
        AmpDecorator(object())


def test_wrong_state_calls():
    amp = AmpDecorator(Scripted())
    with pytest.raises(StateError):
        amp.get_data()
    with pytest.raises(StateError):
        amp.get_block()
    with pytest.raises(StateError):
        amp.stop()
    amp.start()
    with pytest.raises(StateError):
        amp.start()
    with pytest.raises(StateError):
        amp.configure(fs=1)
    amp.stop()


def test_unknown_start_option():
    amp = AmpDecorator(Scripted())
    with pytest.raises(ConfigurationError, match="unknown start"):
        amp.start(no_such_option=1)
    assert not amp.running


def test_block_data_timestamps_and_libmushu_shape():
    rows = np.arange(10, dtype=np.int64).reshape(5, 2)  # ints become float32
    amp = AmpDecorator(Scripted([(rows, [(20.0, "S 1")])]))
    amp.start()
    t_before = local_clock()
    block = amp.get_block()
    t_after = local_clock()
    assert isinstance(block, Block)
    assert block.data.dtype == np.float32 and block.data.shape == (5, 2)
    np.testing.assert_array_equal(block.data, rows)
    assert block.timestamps.dtype == np.float64
    np.testing.assert_allclose(np.diff(block.timestamps), 0.01)
    assert t_before <= block.timestamps[-1] <= t_after
    # driver marker: 20 ms after the first sample, absolute on the same clock
    [(t, text)] = block.markers
    assert text == "S 1"
    assert t == pytest.approx(block.timestamps[0] + 0.02)
    assert block.marker_samples() == [(2, "S 1")]
    assert block.index == 0
    amp.stop()


def test_get_data_reduces_to_relative_ms():
    amp = AmpDecorator(Scripted([(np.ones((4, 2)), [(-5.0, "early"), (30.0, "late-in-block")])]))
    amp.start()
    data, markers = amp.get_data()
    assert data.shape == (4, 2)
    assert [text for _, text in markers] == ["early", "late-in-block"]
    assert markers[0][0] == pytest.approx(-5.0)
    assert markers[1][0] == pytest.approx(30.0)
    amp.stop()


def test_driver_timestamps_are_used_when_given():
    driver = Scripted([(np.ones((3, 2)), [])])
    driver.times = np.array([1.0, 1.5, 2.0])
    amp = AmpDecorator(driver)
    amp.start()
    block = amp.get_block()
    np.testing.assert_array_equal(block.timestamps, [1.0, 1.5, 2.0])
    amp.stop()


def test_added_markers_wait_for_their_block_and_are_never_repeated():
    driver = Scripted([(np.ones((2, 2)), []) for _ in range(3)])
    driver.times = None
    amp = AmpDecorator(driver)
    amp.start()
    amp.add_marker("past", timestamp=0.0)
    amp.add_marker("future", timestamp=local_clock() + 1e6)
    b1 = amp.get_block()
    assert [m for _, m in b1.markers] == ["past"]
    b2 = amp.get_block()
    assert b2.markers == []
    amp.add_marker("now")
    b3 = amp.get_block()
    assert [m for _, m in b3.markers] == ["now"]
    assert amp.n_markers == 2
    status = amp.status()
    assert {k: status[k] for k in ("samples", "markers", "gaps", "markers_dropped")} == {
        "samples": 6, "markers": 2, "gaps": 0, "markers_dropped": 0
    }
    amp.stop()


def test_markers_of_an_empty_block_come_with_the_next_samples():
    driver = Scripted([(np.zeros((0, 2)), [(0.0, "m")]), (np.ones((3, 2)), [])])
    amp = AmpDecorator(driver)
    amp.start()
    assert amp.get_block().markers == []
    block = amp.get_block()
    assert [m for _, m in block.markers] == ["m"]
    amp.stop()


class Paced(Amplifier):
    """A driver without counters or timestamps whose device runs ``ppm`` off
    ``fs`` (samples become due in real time) and loses ``lose`` samples from
    sample ``lose_at``. ``kept`` holds the device index of every sample returned."""

    def __init__(self, fs=200.0, ppm=0.0, lose_at=-1, lose=0):
        self.fs = fs
        self.pacer = Pacer(skewed(fs, ppm))
        self.lose_at, self.lose = lose_at, lose
        self.kept = []

    def start(self):
        self.pacer.start()

    def stop(self):
        pass

    def get_data(self):
        n = self.pacer.due(wait=True)  # returns when the newest sample is due
        index = np.arange(self.pacer.count - n, self.pacer.count)
        index = index[(index < self.lose_at) | (index >= self.lose_at + self.lose)]
        self.kept.append(index)
        return np.zeros((len(index), 2)), []

    def get_channels(self):
        return ["a", "b"]

    def get_sampling_frequency(self):
        return self.fs


def test_slow_device_is_followed_and_a_loss_marked_once():
    # The case: a device 0.2 % slow, read every 20 ms. With the
    # nominal rate the stamps were 10 ms off after 5 s and kept drifting.
    driver = Paced(fs=200.0, ppm=-2000, lose_at=500, lose=10)  # 50 ms lost at 2.5 s
    amp = AmpDecorator(driver)
    amp.start(gap_threshold=0.05)
    blocks = []
    while driver.pacer.count < 800:
        time.sleep(0.02)
        blocks.append(amp.get_block())
    stamps = np.concatenate([b.timestamps for b in blocks])
    index = np.concatenate(driver.kept)
    err = np.abs(stamps - driver.pacer.time_of(index))
    assert len(amp.gaps) == 1 and abs(amp.gaps[0].n_missing - 10) <= 1
    assert amp.status()["gaps"] == 1
    n = amp.gaps[0].n_missing
    marked = [b for b in blocks if (b.markers and b.markers[0][1] == GAP_MARKER.format(n=n))]
    assert len(marked) == 1
    assert marked[0].markers[0][0] == pytest.approx(marked[0].timestamps[0])
    # Right after 2 s, except from the loss until it was found (the clock
    # waits for the blocks to stay late: a stall would not).
    found = int(np.searchsorted(stamps, amp.gaps[0].time))
    judged = (index >= 400) & ((index < 500) | (np.arange(len(index)) >= found))
    assert err[judged].max() < 2e-3, err[judged].max()
    assert amp.effective_rate == pytest.approx(200 * (1 - 2000e-6), rel=300e-6)
    amp.stop()
    assert amp.effective_rate == amp._final_rate


class Seen:
    """A service that keeps what it is shown."""

    def __init__(self, fail=False):
        self.amp, self.blocks, self.closed, self.fail = None, [], 0, fail

    def open(self, amp):
        self.amp = amp

    def on_block(self, block):
        self.blocks.append(len(block))
        if self.fail:
            raise ConnectionError("service broke")

    def status(self):
        return {"seen": len(self.blocks)}

    def close(self):
        self.closed += 1


def test_services_see_every_block_and_close_at_stop():
    amp = AmpDecorator(Scripted([(np.ones((3, 2)), []), (np.ones((4, 2)), [])]), name="s")
    with pytest.raises(StateError, match="not running"):
        amp.add_service(Seen())
    amp.start(marker_port=None)
    with pytest.raises(ConfigurationError, match="not a service: it lacks open, status"):
        amp.add_service(type("OnBlockOnly", (), {"on_block": print, "close": print})())
    service = Seen()
    assert amp.add_service(service) == [service]
    assert amp.services == (service,)
    assert (service.amp.name, service.amp.channels, service.amp.fs) == ("s", ["c0", "c1"], 100.0)
    assert service.amp.add_marker("from a service") is True
    amp.get_block()
    amp.get_block()
    assert amp.status()["seen"] == 2
    amp.stop()
    assert service.blocks == [3, 4] and service.closed == 1
    assert amp.services == ()


def test_a_service_removed_while_running_sees_no_more_blocks():
    amp = AmpDecorator(Scripted([(np.ones((3, 2)), [])] * 3))
    amp.start(marker_port=None)
    service = Seen()
    amp.add_service(service)
    amp.get_block()
    amp.remove_service(service)
    assert service.closed == 1
    amp.get_block()
    with pytest.raises(StateError, match="not one of"):
        amp.remove_service(service)
    amp.stop()
    assert service.blocks == [3] and service.closed == 1


def test_every_service_gets_the_block_when_one_fails():
    amp = AmpDecorator(Scripted([(np.ones((3, 2)), [])]))
    amp.start(marker_port=None)
    broken, after = Seen(fail=True), Seen()
    amp.add_service(broken)
    amp.add_service(after)
    with pytest.raises(ConnectionError, match="service broke"):
        amp.get_block()
    assert after.blocks == [3]
    amp.stop()


COUNTER = """
    from ampkit.errors import ConfigurationError

    class Counter:
        options = ("count_to",)
        order = 60
        made = []

        @classmethod
        def from_options(cls, options):
            if "count_to" not in options:
                return None
            if not isinstance(options["count_to"], int):
                raise ConfigurationError(f"count_to must be an int, got {options['count_to']!r}")
            service = cls()
            cls.made.append(service)
            return service

        def open(self, amp):
            self.name, self.n, self.open_ = amp.name, 0, True

        def on_block(self, block):
            self.n += len(block)

        def status(self):
            return {"counted": self.n}

        def close(self):
            self.open_ = False
"""


def test_a_service_from_an_entry_point_owns_its_start_options(install_plugin):
    install_plugin("ampkit_counter", COUNTER,
                   {"ampkit.services": {"counter": "ampkit_counter:Counter"}})
    from ampkit_counter import Counter

    amp = AmpDecorator(Scripted([(np.ones((3, 2)), [])] * 2), name="c")
    with pytest.raises(ConfigurationError, match="count_to must be an int"):
        amp.start(marker_port=None, count_to="x")
    assert not amp.running and not Counter.made
    with pytest.raises(ConfigurationError, match="unknown start.*count_to"):
        amp.start(marker_port=None, count_too=3)  # the message lists the known options
    amp.start(marker_port=None, count_to=3)
    amp.get_block()
    assert amp.status()["counted"] == 3
    (service,) = Counter.made
    assert service.name == "c" and service.open_
    amp.stop()
    assert not service.open_
    # While running: only the services whose options are given.
    amp.start(marker_port=None)
    (added,) = amp.add_service(count_to=1)
    assert added is Counter.made[-1] and amp.services == (added,)
    amp.stop()


def test_a_broken_service_plugin_is_left_out_and_logged(install_plugin, caplog):
    install_plugin("ampkit_broken", "raise ImportError('missing dependency')\n",
                   {"ampkit.services": {"broken": "ampkit_broken:Service"}})
    amp = AmpDecorator(Scripted([(np.ones((3, 2)), [])]))
    amp.start(marker_port=None)
    amp.stop()
    assert "service 'broken' (ampkit_broken:Service) failed to import" in caplog.text


def test_failed_driver_start_leaves_amp_stopped():
    class Broken(Scripted):
        def start(self):
            raise OSError("no device")

    amp = AmpDecorator(Broken())
    with pytest.raises(OSError):
        amp.start()
    assert not amp.running


def test_close_stops_and_closes_driver():
    driver = Scripted()
    with AmpDecorator(driver) as amp:
        amp.start()
    assert driver.stopped and driver.closed
    assert not amp.running



def test_driver_marker_lands_between_uneven_samples():
    driver = Scripted([(np.ones((4, 2)), [(15.0, "mid"), (50.0, "beyond")])], fs=100.0)
    driver.times = np.array([1.0, 1.01, 1.05, 1.06])  # uneven spacing
    amp = AmpDecorator(driver)
    amp.start()
    block = amp.get_block()
    amp.stop()
    # 15 ms at 100 Hz is row 1.5: halfway between the times of rows 1 and 2
    assert block.markers == [(pytest.approx(1.03), "mid")]
    assert block.marker_samples() == [(2, "mid")]
    # row 5 is past the block's last row: it waits for its sample
    assert amp._ahead == [(1.0, "beyond")]


def test_markers_after_the_block_land_on_their_samples_whatever_their_times():
    # A marker past its block, and one in an empty block, belong to samples
    # not delivered yet. The next block's samples come far closer together
    # than the nominal rate says (a burst stamped between the previous sample
    # and its arrival): extrapolated at the nominal rate, both markers would
    # fall after that block and wait for samples that never come.
    driver = Scripted([
        (np.ones((4, 2)), [(50.0, "past")]),            # row 5: row 1 of the next samples
        (np.zeros((0, 2)), [(0.0, "empty"), (-10.0, "before")]),
        (np.ones((4, 2)), []),
    ], fs=100.0)
    amp = AmpDecorator(driver)
    amp.start()
    driver.times = np.array([1.0, 1.01, 1.02, 1.03])
    first = amp.get_block()
    driver.times = np.empty(0)
    empty = amp.get_block()
    driver.times = np.array([1.0301, 1.0302, 1.0303, 1.0304])
    last = amp.get_block()
    amp.stop()
    assert first.markers == [] and amp._ahead == []
    assert empty.markers == [(1.03, "before")]  # row -1 of the next: the last delivered
    assert last.markers == [(1.0301, "empty"), (1.0302, "past")]
    assert last.marker_samples() == [(0, "empty"), (1, "past")]


def after_one_block():
    """A started amp whose driver delivered samples at 5.0, 5.01, 5.02 s and
    then nothing."""
    driver = Scripted([(np.ones((3, 2)), [])], fs=100.0)
    driver.times = np.array([5.0, 5.01, 5.02])
    amp = AmpDecorator(driver)
    amp.start()
    amp.get_block()
    driver.times = np.empty(0)
    return driver, amp


def test_a_late_marker_comes_with_the_next_block_even_an_empty_one():
    driver, amp = after_one_block()
    amp.add_marker("late", timestamp=5.01)  # its sample was delivered already
    amp.add_marker("future", timestamp=6.0)  # no sample yet: waits
    block = amp.get_block()
    assert len(block) == 0
    assert block.markers == [(5.01, "late")]
    # relative to where the empty block's first sample was due (5.03): -20 ms
    data, markers = amp.get_data()  # nothing more
    assert markers == []
    assert block.relative_markers() == [(pytest.approx(-20.0), "late")]
    assert block.index == 3 and block.marker_samples() == [(0, "late")]
    amp.stop()


def test_driver_markers_of_an_empty_block_count_from_the_next_sample():
    driver, amp = after_one_block()
    # -10 ms from the next sample (due at 5.03) is the last sample delivered
    driver.blocks = [(np.zeros((0, 2)), [(-10.0, "on the last sample"), (-25.0, "earlier")])]
    block = amp.get_block()
    assert block.markers == [(pytest.approx(5.005), "earlier"), (5.02, "on the last sample")]
    amp.stop()


def test_late_driver_marker_lands_exactly_on_its_sample_of_an_earlier_block():
    fs = 250.0
    stamps = 12345.678 + np.arange(20) / fs
    driver = Scripted([(np.ones((10, 2)), []), (np.ones((10, 2)), [])], fs=fs)
    amp = AmpDecorator(driver)
    amp.start()
    driver.times = stamps[:10]
    amp.get_block()
    driver.times = stamps[10:]
    # the driver means sample 7 (an earlier block), in ms relative to this block
    driver.blocks[0] = (np.ones((10, 2)), [((stamps[7] - stamps[10]) * 1000.0, "on 7")])
    block = amp.get_block()
    assert block.markers == [(stamps[7], "on 7")]  # exactly, not a rounding after it
    amp.stop()


def test_driver_marker_past_its_block_lands_exactly_on_the_next_blocks_sample():
    fs = 250.0
    # spaced as a pacer makes them: stamps[6] + 1/fs rounds past stamps[7] here
    stamps = 8400.0 + (113 + np.arange(14)) / fs
    assert float(stamps[6]) + 1 / fs > stamps[7]
    driver = Scripted([(np.ones((7, 2)), [(7 * 4.0 - 1e-6, "on 7")]), (np.ones((7, 2)), [])],
                      fs=fs)
    amp = AmpDecorator(driver)
    amp.start()
    driver.times = stamps[:7]
    assert amp.get_block().markers == []  # its sample has not come yet
    driver.times = stamps[7:]
    block = amp.get_block()
    assert block.markers == [(stamps[7], "on 7")]
    assert block.marker_samples() == [(0, "on 7")]
    amp.stop()


def test_driver_marker_many_blocks_late_still_lands_on_its_sample():
    # An LSL marker stream may deliver a marker seconds and many small
    # blocks after its sample; the row arithmetic then starts from a block
    # whose stamps carry their own rounding.
    fs = 250.0
    stamps = 7301.123 + np.arange(200) / fs
    stamps[100:] = stamps[99] + np.cumsum(np.full(100, 1 / fs))  # accumulated, as a pacer does
    driver = Scripted([(np.ones((100, 2)), [])] + [(np.ones((1, 2)), [])] * 100, fs=fs)
    amp = AmpDecorator(driver)
    amp.start()
    driver.times = stamps[:100]
    amp.get_block()
    for k in range(100, 199):
        driver.times = stamps[k:k + 1]
        assert amp.get_block().markers == []
    driver.times = stamps[199:]
    driver.blocks[0] = (np.ones((1, 2)), [((stamps[r] - stamps[199]) * 1000.0, f"on {r}")
                                          for r in (0, 37, 99, 150)])
    block = amp.get_block()
    assert block.markers == [(stamps[r], f"on {r}") for r in (0, 37, 99, 150)]
    amp.stop()


def test_recording_starts_and_stops_while_running(tmp_path):
    """start_recording()/stop_recording() mid-run: the file holds exactly the
    samples in between, and a marker sits on its sample counted from the file's
    first sample (not from start())."""
    import ampkit.io

    rows = [np.full((10, 2), k, np.float32) for k in range(6)]  # block k holds the value k
    amp = AmpDecorator(Scripted([(r, []) for r in rows]))
    amp.start(marker_port=None)
    amp.get_block()  # block 0: before the recording
    assert amp.recording is None
    with pytest.raises(StateError, match="while not recording"):
        amp.stop_recording()
    base = tmp_path / "mid"
    amp.start_recording(base)
    assert amp.recording is not None
    with pytest.raises(StateError, match="recording to"):
        amp.start_recording(tmp_path / "other")
    first = amp.get_block()  # block 1
    second = amp.get_block()  # block 2
    amp.add_marker("here", float(second.timestamps[3]))  # run sample 23: the file's 13
    amp.get_block()  # block 3 delivers the marker
    assert amp.stop_recording().startswith(str(base))
    assert amp.recording is None
    amp.get_block()  # block 4: acquisition goes on, not recorded
    amp.stop()
    rec = ampkit.io.read(base)
    np.testing.assert_array_equal(rec.data[:, 0], np.repeat([1, 2, 3], 10))
    assert rec.data.shape == (30, 2)
    assert [(s, text) for s, _, text in rec.markers] == [(13, "here")]
    assert first.index == 10


def test_start_recording_needs_a_running_amp(tmp_path):
    amp = AmpDecorator(Scripted())
    with pytest.raises(StateError, match="call start"):
        amp.start_recording(tmp_path / "x")
    assert not list(tmp_path.iterdir())


# -- a failed start() leaves nothing behind; markers are bounded (issue 14) -----------


def children():
    """PIDs of this process's child processes (zombies included)."""
    pids = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return pids


class Resources:
    """What this process holds: threads, child processes, file descriptors
    (sockets and files among them) and the files in a folder."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.threads = set(threading.enumerate())
        self.children = children()
        self.fds = set(os.listdir("/proc/self/fd"))
        self.files = set(self.folder.iterdir())

    def leaks(self, recorded=(), timeout=5.0):
        """What is held now and was not then (after up to ``timeout`` s for
        threads that are ending to end); files of the base names in
        ``recorded`` are expected."""
        deadline = time.monotonic() + timeout
        while True:
            now = Resources(self.folder)
            leaks = {
                "threads": sorted(t.name for t in now.threads - self.threads),
                "children": sorted(now.children - self.children),
                "fds": sorted(now.fds - self.fds),
                "files": sorted(p.name for p in now.files - self.files
                                if p.name.split(".")[0] not in recorded),
            }
            if not any(leaks.values()) or time.monotonic() > deadline:
                return {k: v for k, v in leaks.items() if v}
            time.sleep(0.05)


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="counts resources through Linux's /proc"
)


class InfiniteRate(Scripted):
    def __init__(self, fs=float("inf")):
        super().__init__(fs=fs)


class BrokenStart(Scripted):
    def start(self):
        raise OSError("no device")


def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


FAILURES = {
    # name: (driver, start() options, expected error, message)
    "driver start": (BrokenStart, {}, OSError, "no device"),
    "infinite rate": (InfiniteRate, {}, ConfigurationError, "sampling frequency of inf"),
    "rate with an infinite period": (lambda: InfiniteRate(5e-324), {}, ConfigurationError,
                                     "sampling frequency"),
    "nan rate": (lambda: InfiniteRate(float("nan")), {}, ConfigurationError, "sampling"),
    "gap_threshold": (Scripted, {"gap_threshold": "soon"}, ConfigurationError, "gap_threshold"),
    "marker_backlog": (Scripted, {"marker_backlog": 0}, ConfigurationError, "marker_backlog"),
    "marker_limits": (Scripted, {"marker_limits": {"max_lines": 3}}, ConfigurationError,
                      "marker_limits"),
    "busy marker port": (Scripted, {"marker_port": "busy"}, ConfigurationError, "in use"),
    "bad lsl value": (Scripted, {"lsl": 5}, ConfigurationError, "lsl must be"),
    "unknown option": (Scripted, {"lsl_typ": "EEG"}, ConfigurationError, "unknown start"),
    "recording exists": (Scripted, {"exists": True}, RecordingError, "exists"),
    "no such folder": (Scripted, {"folder": "missing"}, RecordingError, "missing"),
}


@needs_proc
@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failed_start_leaves_nothing_behind(case, tmp_path):
    driver, options, error, match = FAILURES[case]
    options = dict(options)
    filename = tmp_path / "s1"
    if options.pop("exists", False):
        (tmp_path / "s1.vhdr").write_text("someone else's recording")
    if options.pop("folder", None):
        filename = tmp_path / "missing" / "s1"
    with AmpDecorator(Scripted()) as warm:  # load what loads once (pylsl, subprocess)
        warm.start(marker_port=0, lsl="warm-up")
        warm.stop()
    with contextlib.ExitStack() as stack:
        if options.get("marker_port") == "busy":
            sock = stack.enter_context(busy_port())
            options["marker_port"] = sock.getsockname()[1]
        before = Resources(tmp_path)
        amp = AmpDecorator(driver())
        with pytest.raises(error, match=match):
            amp.start(filename=str(filename), marker_port=options.pop("marker_port", 0),
                      **options)
        assert not amp.running
        amp.close()
        assert before.leaks() == {}


def test_the_corrected_retry_of_a_failed_start_records():
    # start(filename='s1', lsl_typ='EEG') left all five s1.* files, and the
    # corrected retry failed with "exists; not overwriting".
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        name = str(Path(folder) / "s1")
        amp = AmpDecorator(Scripted([(np.ones((3, 2)), [])]))
        with pytest.raises(ConfigurationError, match="unknown start"):
            amp.start(filename=name, lsl_typ="EEG")
        assert list(Path(folder).iterdir()) == []
        amp.start(filename=name)
        amp.get_block()
        amp.stop()
        assert sorted(p.suffix for p in Path(folder).iterdir()) == [
            ".eeg", ".marker", ".meta", ".vhdr", ".vmrk"
        ]


def test_markers_beyond_the_backlog_are_dropped_counted_logged_and_marked(caplog):
    amp = AmpDecorator(Scripted([(np.ones((3, 2)), []), (np.ones((3, 2)), [])]))
    amp.start(marker_port=None, marker_backlog=100)
    t = local_clock() - 10.0  # all before the first sample: delivered with it
    kept = [amp.add_marker(f"m{i}", t + i * 1e-3) for i in range(1000)]
    assert kept.count(True) == 100
    assert amp.status()["markers_dropped"] == 900
    block = amp.get_block()
    texts = [text for _, text in block.markers]
    assert texts[:100] == [f"m{i}" for i in range(100)]
    assert texts[100:] == [DROPPED_MARKER.format(n=900)]
    assert block.markers[-1][0] == block.timestamps[-1]  # at the newest sample
    assert amp.markers_dropped == 900
    assert "900 markers lost" in caplog.text
    # Room again once they were read.
    assert amp.add_marker("after") is True
    assert [text for _, text in amp.get_block().markers] == ["after"]
    amp.stop()


def test_lost_markers_reported_by_a_service_are_marked_like_dropped_ones():
    amp = AmpDecorator(Scripted([(np.ones((3, 2)), [])]))
    amp.start(marker_port=None)
    amp.markers_lost(7)
    assert [text for _, text in amp.get_block().markers] == [DROPPED_MARKER.format(n=7)]
    assert amp.status()["markers_dropped"] == 7
    amp.stop()


def test_a_block_with_many_driver_markers_is_linear():
    # One insertion per marker made 300 000 markers take over 20 s.
    n = 300_000
    rows = np.arange(n) % 10
    driver = Scripted([(np.ones((10, 2)), [(float(r) * 10.0, "S") for r in rows[::-1]])])
    amp = AmpDecorator(driver)
    amp.start(marker_port=None)
    t0 = time.monotonic()
    block = amp.get_block()
    assert time.monotonic() - t0 < 10.0  # a sanity bound: about 0.5 s here
    assert len(block.markers) == n
    samples = [row for row, _ in block.marker_samples()]
    assert samples == sorted(rows.tolist())
    amp.stop()


# -- lifecycle: random sequences leave nothing behind (issue 14) ----------------------


# Valid and invalid start() options; every invalid one must fail cleanly.
START_OPTIONS = [
    {},
    {"marker_port": None},
    {"overwrite": True},
    {"gap_threshold": 0.5},
    {"marker_backlog": 10},
    {"lsl": "ampkit-lifecycle"},
    {"lsl_typ": "EEG"},  # a typo
    {"lsl": 5},
    {"lsl_type": "EEG"},  # without lsl
    {"gap_threshold": -1},
    {"marker_backlog": 0},
    {"marker_limits": {"max_line": 0}},
    {"marker_host": "no-such-host.invalid"},
]


def lifecycle_machine(make_amp, configs):
    """A state machine driving one decorated amp through random calls."""

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.folder = Path(tempfile.mkdtemp(prefix="ampkit-lifecycle-"))
            self.before = Resources(self.folder)
            self.amp = make_amp()
            self.recorded: set[str] = set()
            self.starts = 0

        @rule(config=st.sampled_from(configs))
        def configure(self, config):
            try:
                self.amp.configure(**config)
            except (ConfigurationError, StateError):
                pass

        @rule(record=st.booleans(), options=st.sampled_from(START_OPTIONS))
        def start(self, record, options):
            self.starts += 1
            name = f"r{self.starts}"
            running = self.amp.running
            try:
                self.amp.start(
                    filename=str(self.folder / name) if record else None,
                    **{"marker_port": 0, **options},
                )
            except AmpkitError:
                assert self.amp.running == running
                assert not list(self.folder.glob(f"{name}.*")), "files of a failed start"
            else:
                if record:
                    self.recorded.add(name)

        @rule()
        def get_data(self):
            try:
                data, markers = self.amp.get_data()
            except StateError:
                assert not self.amp.running
            else:
                assert data.ndim == 2

        @rule()
        def stop(self):
            try:
                self.amp.stop()
            except StateError:
                assert not self.amp.running

        @rule()
        def close(self):
            self.amp.close()
            assert not self.amp.running

        def teardown(self):
            try:
                self.amp.close()
                leaks = self.before.leaks(self.recorded)
                assert leaks == {}, leaks  # stray files among them
                for name in self.recorded:
                    assert (self.folder / name).with_suffix(".vhdr").exists()
            finally:
                shutil.rmtree(self.folder, ignore_errors=True)

    return Lifecycle


LIFECYCLE = settings(max_examples=15, stateful_step_count=15, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def warm_lsl():
    # liblsl starts its own threads and sockets once, at the first outlet.
    with AmpDecorator(Scripted()) as warm:
        warm.start(marker_port=0, lsl="ampkit-warm-up")
        warm.stop()


@needs_proc
def test_lifecycle_of_a_synthetic_amp_leaves_nothing_behind(warm_lsl):
    configs = [{"fs": 100, "channels": 2}, {"fs": 250}, {"fs": -1}, {"channels": "many"}]
    machine = lifecycle_machine(lambda: AmpDecorator(RandomAmp), configs)
    run_state_machine_as_test(machine, settings=LIFECYCLE)


@needs_proc
def test_lifecycle_of_an_rda_amp_leaves_nothing_behind(warm_lsl):
    from ampkit.drivers.rda import RDAAmp
    from ampkit.sim.rda import RDASimulator

    with RDASimulator(port=0, channels=3, fs=500.0) as sim:
        configs = [
            {"port": sim.port, "timeout": 2.0},
            {"port": sim.port, "silence_timeout": 0.5, "on_stop": "raise"},
            {"port": sim.port, "reconnect": True},
            {"port": 0},
            {"port": sim.port, "on_stop": "never"},
        ]

        def make_amp():
            amp = AmpDecorator(RDAAmp)
            amp.configure(port=sim.port, timeout=2.0)
            return amp

        machine = lifecycle_machine(make_amp, configs)
        run_state_machine_as_test(machine, settings=LIFECYCLE)
