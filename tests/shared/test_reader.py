"""The reader: both faces, waiting, overrun, and the writer's death, with real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import leftovers
from shared_procs import check_rows, hammer_rows

import ampkit
from ampkit.errors import ConfigurationError, ConnectionLostError, StateError, StreamEndedError
from ampkit.shared import SharedWriter
from ampkit.shared.reader import SharedReader, attach
from ampkit.shared.segment import WAITERS, segment_path
from ampkit.shared.waiting import FUTEX_AVAILABLE


def block(first: int, n: int, n_ch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(first, first + n, dtype=np.float32)[:, None], n_ch, axis=1)
    return rows, np.arange(first, first + n) / 100.0


@pytest.fixture
def writer(shm_name):
    """2 channels at 100 Hz, 2 s: 200 rows, windows of up to 100 wrap as views."""
    w = SharedWriter(shm_name, ["a", "b"], 100.0, seconds=2)
    yield w
    w.close()


@pytest.fixture
def reader(writer):
    r = ampkit.attach(writer.name, timeout=0, buffer_size_s=1)
    yield r
    r.close()


# -- rdaclient face ------------------------------------------------------------

def test_get_data_is_none_before_written_and_after_overwritten(writer, reader):
    assert reader.last_sample == 0
    assert reader.get_data(0, 1) is None
    assert reader.get_data(0, 0).shape == (0, 2)  # an empty window is always there
    writer.write(*block(0, 150))
    assert reader.get_data(100, 151) is None  # one sample too far
    assert reader.get_data(-1, 5) is None  # as rdaclient: negative is never there
    assert reader.get_data(0, 201) is None  # longer than the ring
    writer.write(*block(150, 100))  # 250 written: samples < 50 are gone
    assert reader.get_data(49, 60) is None
    assert reader.get_data(50, 60)[0, 0] == 50
    with pytest.raises(ConfigurationError, match="the end is before the start"):
        reader.get_data(10, 5)
    with pytest.raises(ConfigurationError, match="integer sample index"):
        reader.get_data(1.5, 3)


def test_get_data_views_and_copies(writer, reader):
    writer.write(*block(0, 250))  # the ring wrapped: sample 200 is in row 0
    view = reader.get_data(60, 160)  # contiguous
    assert np.shares_memory(view, reader.segment.data) and not view.flags.writeable
    wrapped = reader.get_data(150, 250)  # wraps by 50 <= buffer_window: still a view
    assert np.shares_memory(wrapped, reader.segment.data)
    np.testing.assert_array_equal(wrapped[:, 0], np.arange(150, 250))
    writer.write(*block(250, 100))
    long = reader.get_data(180, 350)  # from row 180 on, wraps by 150 > 100: a copy
    assert not np.shares_memory(long, reader.segment.data)
    np.testing.assert_array_equal(long[:, 1], np.arange(180, 350))
    view = reader.get_data(160, 260)
    copy = reader.get_data(160, 260, copy=True)
    assert not np.shares_memory(copy, reader.segment.data)
    np.testing.assert_array_equal(copy, view)


def test_wait_returns_once_written(writer, reader):
    def write_later():
        for k in range(10):
            time.sleep(0.01)
            writer.write(*block(k * 10, 10))

    t = threading.Thread(target=write_later)
    t.start()
    data = reader.wait(40, 60, timeout=5)
    t.join()
    np.testing.assert_array_equal(data[:, 0], np.arange(40, 60))
    assert reader.wait(100, 101, timeout=0.05) is None  # nothing more comes
    assert reader.wait(0, 201, timeout=5) is None  # can never be whole: at once
    assert reader.wait(-5, 1) is None


def test_wait_with_rdaclients_sleep(writer, reader):
    threading.Timer(0.05, writer.write, block(0, 5)).start()
    assert reader.wait(0, 5, timeout=5, sleep=5e-4)[4, 0] == 4


def test_wait_for_overwritten_samples_is_none(writer, reader):
    writer.write(*block(0, 300))
    assert reader.wait(0, 10, timeout=1) is None


def test_poll_returns_the_newest_after_the_next_block(writer, reader):
    writer.write(*block(0, 30))
    threading.Timer(0.05, writer.write, block(30, 10)).start()
    data = reader.poll(25, timeout=5)
    np.testing.assert_array_equal(data[:, 0], np.arange(15, 40))
    assert reader.poll(5, timeout=0.05) is None  # nothing new
    threading.Timer(0.05, writer.write, block(40, 1)).start()
    assert reader.poll(42, timeout=5) is None  # only 41 written


def test_wait_raises_when_the_writer_stops(writer, reader):
    writer.write(*block(0, 10))
    threading.Timer(0.05, writer.close).start()
    with pytest.raises(StreamEndedError, match="stopped after 10 samples"):
        reader.wait(10, 11, timeout=5)
    assert not reader.is_streaming
    assert reader.get_data(0, 10)[9, 0] == 9  # what was written stays readable


# -- StreamWatcher face --------------------------------------------------------

def test_update_fills_the_local_buffer(writer, reader):
    assert reader._local is None  # nothing allocated until used
    writer.write(*block(0, 30), markers=[(0.1, "ten")])
    reader.update()
    assert reader.n_new == 30 and reader.curr_i == 30
    assert reader.buffer.shape == (100, 2)  # buffer_size_s=1 at 100 Hz
    np.testing.assert_array_equal(reader.samples[:, 0], np.arange(30))
    np.testing.assert_array_equal(reader.times, np.arange(30) / 100.0)
    reader.n_new = 0
    writer.write(*block(30, 90))
    reader.update()
    assert reader.n_new == 90 and reader.curr_i == 20
    np.testing.assert_array_equal(reader.unfold_buffer()[:, 0], np.arange(20, 120))
    np.testing.assert_array_equal(reader.unfold_buffer_t(), np.arange(20, 120) / 100.0)
    np.testing.assert_array_equal(reader.get_last(3)[:, 1], [117, 118, 119])
    data, times = reader.get_last_s(0.05)
    np.testing.assert_array_equal(data[:, 0], np.arange(115, 120))
    assert reader.get_markers() == [(0.1, "ten")] and reader.n_new_markers == 1
    assert reader.get_markers(since=0.2) == []
    samples = reader.samples
    reader.update()  # nothing new: nothing changes
    assert reader.samples is samples and reader.n_new == 90


def test_update_starts_at_attach_and_counts_overrun(writer, shm_name, caplog):
    writer.write(*block(0, 50))
    r = ampkit.attach(shm_name, timeout=0)
    r.update()
    assert r.n_new == 0  # as an LSL inlet: what comes after attaching
    writer.write(*block(50, 260))  # 260 > 200 rows: 60 overwritten unread
    r.update()
    assert (r.n_new, r.n_overrun) == (200, 60)
    assert r.samples[0, 0] == 110
    assert "lost 60 samples" in caplog.text
    r.close()


def test_update_copies_no_more_than_the_local_buffer_holds(writer, reader):
    writer.write(*block(0, 150))  # the local buffer holds 100 (1 s)
    reader.update()
    assert (reader.n_new, reader.n_overrun) == (100, 50)
    np.testing.assert_array_equal(reader.samples[:, 0], np.arange(50, 150))
    np.testing.assert_array_equal(reader.unfold_buffer()[:, 1], np.arange(50, 150))


def test_update_after_the_writer_stopped(writer, reader):
    writer.write(*block(0, 10))
    writer.close()
    reader.update()
    assert reader.n_new == 10
    with pytest.raises(StreamEndedError):
        reader.update()


def test_closed_reader(writer, reader):
    reader.close()
    reader.close()
    assert not reader.is_streaming
    with pytest.raises(StateError, match="closed"):
        reader.get_data(0, 0)
    with pytest.raises(StateError, match="closed"):
        reader.update()
    assert reader.buffer.shape == (0,)


def test_a_view_outlives_its_reader(writer, shm_name):
    writer.write(*block(0, 10))
    with ampkit.attach(shm_name, timeout=0) as r:
        view = r.get_data(0, 10)
    assert view[9, 0] == 9  # still mapped while the view lives


def test_connect_to_stream_follows_a_restarted_writer(writer, reader, shm_name):
    writer.write(*block(0, 10))
    writer.close()
    with SharedWriter(shm_name, ["x", "y", "z"], 50.0) as again:
        again.write(np.ones((4, 3), np.float32), np.arange(4.0))
        reader.connect_to_stream()
        assert reader.channel_names == ["x", "y", "z"] and reader.last_sample == 4
        assert reader.get_data(0, 4).shape == (4, 3)


# -- with processes ------------------------------------------------------------

def test_readers_in_processes_see_the_recording(shm_name, spawn, tmp_path):
    """Three reader processes read a decorated amp by index while it records:
    every sample, timestamp and marker equals the recording, index by index."""
    outs = [tmp_path / f"r{i}.npz" for i in range(3)]
    readers = [spawn("reader", shm_name, "--out", str(out)) for out in outs]
    rec = tmp_path / "rec.xdf"
    writer = spawn("amp-writer", shm_name, "--record", str(rec), "--duration", "1.5",
                   "--fs", "2000", "--channels", "8", "--seconds", "3")
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    recording = ampkit.io.read(rec)
    assert recording.n_samples > 1000
    for proc, out in zip(readers, outs, strict=True):
        stdout, err = proc.communicate(timeout=30)
        assert json.loads(stdout) == {"samples": recording.n_samples}, err
        got = np.load(out)
        np.testing.assert_array_equal(got["data"], recording.data)
        np.testing.assert_array_equal(got["times"], recording.timestamps)
        assert got["marker_text"].tolist() == [m[2] for m in recording.markers]
        assert got["marker_index"].tolist() == [m[0] for m in recording.markers]
    assert len(recording.markers) > 5
    assert leftovers(shm_name) == []


def test_no_torn_or_uncommitted_row_is_ever_read(shm_name, spawn):
    """A writer hammers 1-5 row blocks into a 100-row ring; readers in three
    processes read it every way (update, get_data copies of any length, the
    whole ring) and check each row's checksum, index and timestamp."""
    checkers = [spawn("checker", shm_name) for _ in range(3)]
    writer = spawn("hammer", shm_name, "--fs", "50", "--seconds", "2", "--duration", "2")
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    for proc in checkers:
        out, err = proc.communicate(timeout=30)
        result = json.loads(out)
        assert result["bad"] == 0, result
        assert result["checked"] > 10_000, result  # it did read, a lot
        assert result["none"] + result["overrun"] > 0, result  # and was overrun


def test_torn_rows_would_be_seen_without_the_claim_check(shm_name, spawn):
    """The test above can fail: copying the same rows without checking
    ``claimed`` afterwards finds torn or foreign rows."""
    writer = spawn("hammer", shm_name, "--fs", "50", "--seconds", "2", "--duration", "5",
                   wait_ready=True)
    r = ampkit.attach(shm_name, timeout=5)
    bad = 0
    deadline = time.monotonic() + 4
    while not bad and time.monotonic() < deadline:
        last = r.last_sample
        start = max(0, last - r.buffer_size)
        rows = r._copy(r._data, start, last)  # the same copy, with no check after it
        bad = check_rows(rows, r._copy(r._times, start, last), start)
    writer.send_signal(signal.SIGTERM)
    writer.communicate(timeout=30)
    r.close()
    assert bad, "an unchecked reader never saw a bad row: the torn-read test proves nothing"


def test_killed_writer_is_noticed_within_a_second(shm_name, spawn):
    writer = spawn("paced", shm_name, wait_ready=True)
    waiter = spawn("lost", shm_name, wait_ready=True)
    r = ampkit.attach(shm_name, timeout=5)
    r.update()
    time.sleep(0.2)
    if FUTEX_AVAILABLE:  # the other reader is asleep in FUTEX_WAIT when the writer dies
        deadline = time.monotonic() + 20
        while r.segment.words[WAITERS] != 1:
            assert time.monotonic() < deadline, "the other reader never waited"
            time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(ConnectionLostError, match=f"process {writer.pid}\\) is gone"):
        while True:
            r.wait(r.last_sample, r.last_sample + 1, timeout=5)
    here = time.monotonic() - killed
    out, err = waiter.communicate(timeout=10)
    there = json.loads(out)["lost_at"] - killed
    assert here < 1.0 and there < 1.0, (here, there, err)
    r.update()  # what came before the kill
    assert r.n_new > 0 and r.times[-1] == (r.last_sample - 1) / 1000.0
    with pytest.raises(ConnectionLostError):
        r.update()
    assert not r.is_streaming
    r.close()
    writer.wait()
    # the next writer of that name reclaims the segment: no "File exists", no leak
    with SharedWriter(shm_name, ["a"], 10.0):
        assert len(leftovers(shm_name)) == 1


RDACLIENT_SCRIPT = '''
import sys
import numpy as np
import ampkit as rc          # was: import rdaclient as rc

client = rc.attach(sys.argv[1], timeout=10)   # was: rc.Client(...), connect, start_streaming
window = 50
channel = 0

# rdaclient's examples/raw_test.py loop, without gnuplot
frames = 0
while client.is_streaming and frames < 20:
    sig = client.poll(window)  # wait for new data
    ls = client.last_sample
    x = np.arange(window) + ls - window
    if sig is not None:
        sig = sig[:, channel]
    else:
        sig = client.get_data(0, ls)[:, channel]
        x = np.arange(len(sig))
    assert (sig == x).all(), (sig, x)
    frames += 1

# rdaclient's wait() by index, a block at a time
start = client.last_sample
for k in range(10):
    block = client.wait(start + 10 * k, start + 10 * (k + 1), timeout=2)
    assert (block[:, 0] == np.arange(start + 10 * k, start + 10 * (k + 1))).all()
print("ok", frames)
'''


def test_an_rdaclient_script_runs_with_the_import_changed(shm_name, tmp_path):
    script = tmp_path / "raw_test.py"
    script.write_text(RDACLIENT_SCRIPT)
    with SharedWriter(shm_name, ["c0", "c1"], 1000.0) as w:
        proc = subprocess.Popen([sys.executable, str(script), shm_name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            n = w.n_written
            w.write(np.repeat(np.arange(n, n + 10, dtype=np.float32)[:, None], 2, 1),
                    np.arange(n, n + 10) / 1000.0)
            time.sleep(0.01)
        out, err = proc.communicate()
    assert proc.returncode == 0 and out.startswith("ok 20"), err


def test_hammer_rows_checksum():
    rows = hammer_rows(7, 5, np.random.default_rng(0))
    assert check_rows(rows, rows[:, 0], 7) == 0
    torn = rows.copy()
    torn[2, 3] += 1
    assert check_rows(torn, rows[:, 0], 7) == 1
    assert check_rows(rows, rows[:, 0], 8) == 5


def test_reader_type():
    assert ampkit.attach is attach
    assert issubclass(SharedReader, ampkit.buffer._Watcher)
    assert Path(segment_path("x")).name == "ampkit-x"
