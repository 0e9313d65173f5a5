"""The segment: names, layout, publishing, reclaiming, foreign files."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import leftovers

import ampkit
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ProtocolError,
    RecordingError,
)
from ampkit.shared import SharedWriter
from ampkit.shared.segment import (
    CLAIMED,
    HEARTBEAT,
    MAGIC,
    SHM_DIR,
    STALE_AFTER,
    STATE,
    STOPPED,
    VERSION,
    WRITTEN,
    Header,
    _creation_lock,
    _sweep,
    check_name,
    open_segment,
    segment_path,
    writer_alive,
)


def test_header_layout_is_fixed():
    # Readers of another build find the counters where this one writes them.
    assert Header.magic.offset == 0
    assert Header.state.offset == 192
    assert Header.claimed.offset == 256
    assert Header.written.offset == 264  # readers FUTEX_WAIT on its low half
    assert Header.waiters.offset == 320  # a cache line of its own: readers write it
    assert ctypes.sizeof(Header) == 384
    assert all(getattr(Header, f).offset % 8 == 0 for f, *_ in Header._fields_
               if not f.startswith(("_", "version", "header_size")))


@pytest.mark.parametrize("name", ["eeg", "EEG_1", "a.b-c", "x" * 64, "0"])
def test_good_names(name):
    assert check_name(name) == name
    assert segment_path(name) == SHM_DIR / f"ampkit-{name}"


@pytest.mark.parametrize("name", ["", "x" * 65, "-eeg", ".eeg", "a/b", "../x", "a b", "é",
                                  "a~1", None, 3, b"eeg"])
def test_bad_names(name):
    with pytest.raises(ConfigurationError, match="shared stream name"):
        check_name(name)
    with pytest.raises(ConfigurationError, match="shared stream name"):
        ampkit.attach(name, timeout=0)


def test_segment_appears_whole_and_goes(shm_name):
    w = SharedWriter(shm_name, ["a", "b"], 250.0, seconds=2)
    path = segment_path(shm_name)
    assert leftovers(shm_name) == [path.name]  # no temporary left
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    seg = open_segment(shm_name)
    h = seg.header
    assert (h.magic, h.pid, h.n_channels, h.n_rows, h.view_rows) == (MAGIC, os.getpid(), 2,
                                                                       500, 250)
    assert seg.meta["channels"] == ["a", "b"] and seg.meta["fs"] == 250.0
    assert path.stat().st_size == h.total_size
    assert seg.in_use() and seg.writer_alive()
    seg.close()
    w.close()
    assert not path.exists()
    w.close()  # twice is fine


def test_heartbeat_beats(shm_name):
    with SharedWriter(shm_name, ["a"], 100.0) as w:
        seg = open_segment(shm_name)
        first = seg.words[HEARTBEAT]
        for _ in range(50):
            if seg.words[HEARTBEAT] != first:
                break
            time.sleep(0.02)
        assert seg.words[HEARTBEAT] > first
        assert w.n_written == 0
        assert seg.heartbeat_age() < 0.5
        seg.close()


def test_stale_segment_is_reclaimed(shm_name, spawn, caplog):
    writer = spawn("paced", shm_name, wait_ready=True)
    with pytest.raises(ConfigurationError, match=f"in use by process {writer.pid}"):
        SharedWriter(shm_name, ["a", "b"], 1000.0)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert segment_path(shm_name).exists()  # the killed writer could not clean up
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        w = SharedWriter(shm_name, ["x"], 10.0, seconds=1)  # no "File exists"
    assert f"left by process {writer.pid}" in caplog.text
    seg = open_segment(shm_name)
    assert seg.header.pid == os.getpid() and seg.meta["channels"] == ["x"]
    seg.close()
    w.close()
    assert leftovers(shm_name) == []


def test_stale_segment_while_its_killer_has_not_reaped_it(shm_name, spawn):
    writer = spawn("paced", shm_name, wait_ready=True)
    writer.send_signal(signal.SIGKILL)
    # A zombie until waited for: still in /proc, but not the writer any more.
    seg = open_segment(shm_name)
    starttime = seg.header.starttime
    seg.close()
    deadline = time.monotonic() + 5
    while writer_alive(writer.pid, starttime) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.exists(f"/proc/{writer.pid}")  # the zombie
    with SharedWriter(shm_name, ["x"], 10.0):
        pass
    writer.wait()


def test_a_crashed_writers_segment_is_swept_by_any_new_writer(shm_name, spawn, caplog):
    other = f"{shm_name}-other"
    writer = spawn("paced", other, wait_ready=True)
    writer.kill()
    writer.wait()
    # Holding the lock writers take to create (and sweep), so that no writer
    # of another test run on this machine sweeps it first.
    with _creation_lock(), caplog.at_level(logging.WARNING, logger="ampkit"):
        time.sleep(STALE_AFTER)
        assert segment_path(other).exists()  # nobody will reuse its name...
        _sweep()  # ...but the next writer of any name removes it
        assert not segment_path(other).exists()
    assert f"{other!r} left by process {writer.pid}" in caplog.text
    with SharedWriter(shm_name, ["a"], 10.0):
        assert leftovers(shm_name) == [segment_path(shm_name).name]


def test_the_sweep_leaves_live_foreign_and_closing_segments(shm_name, spawn):
    live = spawn("paced", f"{shm_name}-live", wait_ready=True)
    _foreign(f"{shm_name}-foreign", b"\x02" * 8192)
    closing = SharedWriter(f"{shm_name}-closing", ["a"], 10.0)
    closing._words[STATE] = STOPPED  # between marking and removing, still alive
    with SharedWriter(shm_name, ["a"], 10.0):
        for name in ("live", "foreign", "closing"):
            assert segment_path(f"{shm_name}-{name}").exists(), name
    closing.close()
    live.terminate()
    live.wait()
    segment_path(f"{shm_name}-foreign").unlink()


def test_temporary_of_a_dead_writer_is_swept(shm_name):
    tmp = SHM_DIR / f"ampkit-{shm_name}~999999999"  # no such pid
    tmp.write_bytes(b"half-built")
    with SharedWriter(shm_name, ["a"], 10.0):
        assert not tmp.exists()


def _foreign(name: str, content: bytes) -> None:
    segment_path(name).write_bytes(content)


def test_foreign_segment_is_refused_and_left_alone(shm_name):
    _foreign(shm_name, b"\x01" * 8192)
    with pytest.raises(ProtocolError, match="not an ampkit shared stream.*another program"):
        ampkit.attach(shm_name, timeout=0)
    with pytest.raises(ConfigurationError, match="choose another name"):
        SharedWriter(shm_name, ["a"], 10.0)
    assert segment_path(shm_name).read_bytes() == b"\x01" * 8192
    segment_path(shm_name).unlink()


def test_tiny_foreign_segment_is_refused(shm_name):
    _foreign(shm_name, b"")
    with pytest.raises(ProtocolError, match=r"\(0 bytes, no ampkit header\)"):
        ampkit.attach(shm_name, timeout=0)
    segment_path(shm_name).unlink()


def test_other_layout_version_and_damage_are_refused(shm_name):
    with SharedWriter(shm_name, ["a"], 10.0):
        raw = bytearray(segment_path(shm_name).read_bytes())
    header = Header.from_buffer(raw)
    header.version = 99
    _foreign(shm_name, bytes(raw))
    with pytest.raises(ProtocolError, match=f"version 99; this ampkit reads version {VERSION}"):
        ampkit.attach(shm_name, timeout=0)
    header.version = VERSION
    header.n_rows = 10**9  # more rows than the file holds
    _foreign(shm_name, bytes(raw))
    with pytest.raises(ProtocolError, match="does not fit the file"):
        ampkit.attach(shm_name, timeout=0)
    segment_path(shm_name).unlink()


def test_a_segment_larger_than_dev_shm_fails_cleanly(shm_name):
    # 64 channels x 1 MHz x 10^5 s: far beyond any tmpfs; refused before a write can SIGBUS.
    with pytest.raises(RecordingError, match="no room in /dev/shm.*lower share_seconds"):
        SharedWriter(shm_name, [f"c{i}" for i in range(64)], 1e6, seconds=1e5)


def test_attach_waits_then_names_what_it_found(shm_name, spawn):
    with pytest.raises(AmpNotAvailableError, match="does not exist; start the writer"):
        ampkit.attach(shm_name, timeout=0.05)
    writer = spawn("paced", shm_name, wait_ready=True)
    writer.kill()
    writer.wait()
    with _creation_lock():  # no writer of another test run sweeps it meanwhile
        time.sleep(STALE_AFTER)  # till then its heartbeat is as fresh as a live writer's
        with pytest.raises(AmpNotAvailableError, match=f"process {writer.pid}, which is gone"):
            ampkit.attach(shm_name, timeout=0.1)
    SharedWriter(shm_name, ["a"], 10.0).close()  # reclaims and removes


def test_a_stopped_mark_without_removal_is_stale(shm_name):
    w = SharedWriter(shm_name, ["a"], 10.0)
    w._heartbeat.stop()
    w._words[STATE] = STOPPED  # as if killed between marking and removing
    with SharedWriter(shm_name, ["b"], 10.0) as w2:
        assert open_segment(shm_name).meta["channels"] == ["b"]
        assert w2.segment.words[WRITTEN] == w2.segment.words[CLAIMED] == 0
    w._closed = True
    w.segment.close()


def test_a_shared_memory_reader_would_remove_the_segment_at_exit(shm_name):
    """The failure the test below guards against: a process that attaches with
    multiprocessing.shared_memory removes the writer's segment when it exits."""
    w = SharedWriter(shm_name, ["a"], 100.0)
    code = ("from multiprocessing import shared_memory; "
            f"s = shared_memory.SharedMemory({segment_path(shm_name).name!r}); s.close()")
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert not segment_path(shm_name).exists()
    w.close()  # logs that someone else removed it


def test_reader_exit_keeps_the_writers_segment(shm_name, spawn):
    # multiprocessing.shared_memory would register the segment in the reader's
    # resource tracker, which unlinks it when the reader exits (Python < 3.13).
    with SharedWriter(shm_name, ["a"], 100.0) as w:
        w.write(np.ones((5, 1), np.float32), np.arange(5.0))
        for _ in range(2):
            reader = spawn("attach-and-exit", shm_name)
            out, err = reader.communicate(timeout=30)
            assert reader.returncode == 0, err
            assert '"last_sample": 5' in out
            assert "resource_tracker" not in err
            assert segment_path(shm_name).exists()
        r = ampkit.attach(shm_name, timeout=0)
        assert r.last_sample == 5
        r.close()
