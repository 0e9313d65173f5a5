"""The recording service: full disks, unwritable paths, a slow disk, the decorator seam."""

import json
import logging
import os
import subprocess
import threading
import time

import mne
import numpy as np
import pyedflib
import pytest
import pyxdf

import ampkit
import ampkit.io
from ampkit.drivers.random import RandomAmp
from ampkit.errors import RecordingError
from ampkit.io.recorder import Recorder
from ampkit.io.writer import Header

mne.set_log_level("ERROR")


@pytest.fixture(autouse=True)
def _free_marker_port(monkeypatch):
    monkeypatch.setenv("AMPKIT_MARKER_PORT", "0")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 96 KiB tmpfs (needs root and mount); skipped where that is not possible."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _acquire_until_error(amp, limit=20.0):
    blocks, error = [], None
    t_end = time.monotonic() + limit
    while time.monotonic() < t_end:
        try:
            blocks.append(amp.get_block())
        except RecordingError as exc:
            error = exc
            break
    return blocks, error


@pytest.mark.parametrize("name", ["full", "full.bdf", "full.xdf"])
def test_full_disk_mid_recording(small_tmpfs, name):
    amp = ampkit.get_amp("sine", f=7, fs=4000, channels=8, amplitude=50)
    path = small_tmpfs / name
    amp.start(filename=path)
    blocks, error = _acquire_until_error(amp)
    assert error is not None, "the 96 KiB disk never filled"
    assert str(path.name) in str(error) and "No space left" in str(error)
    assert isinstance(error, OSError) and error.filename.startswith(str(small_tmpfs))
    with pytest.raises(RecordingError, match="stopped"):  # the recording stays over
        amp.get_block()
    assert amp.running
    amp.stop()  # does not raise again: the error was reported
    assert not amp.running and not amp.amp.running
    data = np.concatenate([b.data for b in blocks])
    rec = ampkit.io.read(path)
    assert 0 < rec.n_samples <= len(data) + 400  # BDF pads its last record
    n = min(rec.n_samples, len(data))
    np.testing.assert_allclose(rec.data[:n], data[:n], atol=0.02)  # BDF: 24-bit steps
    if name == "full":
        raw = mne.io.read_raw_brainvision(small_tmpfs / "full.vhdr", preload=True)
        assert raw.n_times == rec.n_samples
    elif name == "full.bdf":
        assert mne.io.read_raw_bdf(path, preload=True).n_times == rec.n_samples
    # the amp records again to a disk with room
    amp.start(filename=small_tmpfs.parent / f"again-{name}")
    amp.get_block()
    amp.stop()


def test_full_disk_on_dev_full(tmp_path):
    base = tmp_path / "rec"
    os.symlink("/dev/full", tmp_path / "rec.eeg")
    amp = ampkit.get_amp("random", fs=1000, channels=4)
    amp.start(filename=base, overwrite=True)  # headers fit; the data file is /dev/full
    blocks, error = _acquire_until_error(amp)
    assert error is not None
    assert "rec.eeg" in str(error) and "No space left" in str(error)
    amp.stop()
    assert not amp.amp.running
    assert (tmp_path / "rec.vhdr").read_text().startswith("Brain Vision")


@pytest.mark.parametrize("name", ["rec", "rec.bdf", "rec.xdf"])
def test_unwritable_path(tmp_path, name):
    (tmp_path / "afile").write_text("x")
    amp = ampkit.get_amp("random", fs=100, channels=2)
    for where in (tmp_path / "no" / "such" / "dir", tmp_path / "afile"):
        with pytest.raises(RecordingError) as info:
            amp.start(filename=where / name)
        assert str(where) in str(info.value)
        assert not amp.running and not amp.amp.running
    amp.start()  # still usable
    amp.stop()


def test_read_only_file_system(small_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    amp = ampkit.get_amp("random", fs=100, channels=2)
    with pytest.raises(RecordingError, match="Read-only file system"):
        amp.start(filename=small_tmpfs / "ro")
    assert not amp.running


def test_slow_disk_warns_with_backlog_and_drops_nothing(tmp_path, caplog):
    """The data file is a pipe drained slowly by a reader: a sink that cannot keep up."""
    from ampkit.block import Block

    base = tmp_path / "slow"
    os.mkfifo(tmp_path / "slow.eeg")
    drained = bytearray()

    def drain():
        with open(tmp_path / "slow.eeg", "rb") as fifo:  # ~800 KB/s
            while chunk := fifo.read(16384):
                drained.extend(chunk)
                time.sleep(0.02)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    rng = np.random.default_rng(5)
    blocks = [
        Block(rng.standard_normal((100, 64)).astype(np.float32),
              50.0 + (i * 100 + np.arange(100)) / 1000.0,
              [(50.0 + i * 0.1 + 0.0105, f"m{i}")], i * 100)
        for i in range(40)
    ]  # 1 MB, 16 times the pipe's buffer
    names = [f"c{i}" for i in range(64)]
    rec = Recorder(Header(names, 1000.0), base, overwrite=True, interval=0.01,
                   max_backlog_bytes=100_000)
    backlog = []
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        for b in blocks:
            rec.on_block(b)
            backlog.append(rec.status()["backlog"])
        rec.close()
    reader.join(30)
    assert "not keeping up" in caplog.text and "samples" in caplog.text
    assert "slow" in caplog.text and "MB" in caplog.text
    assert max(backlog) > 0
    data = np.concatenate([b.data for b in blocks])
    np.testing.assert_array_equal(np.frombuffer(bytes(drained), "<f4").reshape(-1, 64), data)
    lines = (tmp_path / "slow.marker").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [f"m{i}" for i in range(40)]
    vmrk = (tmp_path / "slow.vmrk").read_text()
    assert all(f"Comment,m{i},{i * 100 + 12}," in vmrk for i in range(40))


def test_late_marker_lands_on_its_sample(tmp_path):
    """A marker stamped before the block it arrives with goes to its earlier sample."""
    from ampkit.block import Block

    fs = 100.0
    ts = 10.0 + np.arange(300) / fs
    rec = Recorder(Header(["a"], fs), tmp_path / "late.xdf")
    rec.on_block(Block(np.zeros((100, 1), np.float32), ts[:100], [], 0))
    rec.on_block(Block(np.zeros((100, 1), np.float32), ts[100:200], [], 100))
    rec.on_block(Block(np.zeros((100, 1), np.float32), ts[200:], [(ts[42] - 0.001, "late")], 200))
    rec.close()
    assert ampkit.io.read(tmp_path / "late.xdf").markers[0][0] == 42
    assert ampkit.io.read(tmp_path / "late.xdf").markers[0][2] == "late"


def test_late_marker_finds_its_sample_after_the_queue_memory_was_reused(tmp_path, monkeypatch):
    """A late marker (an empty block's) for a sample 25 s back, whose queue
    buffer has been written and reused twice since, still lands on it."""
    from ampkit.block import Block
    from ampkit.io import direct

    made, slab = [], direct._Slab
    monkeypatch.setattr(direct, "_Slab", lambda *a: made.append(slab(*a)) or made[-1])
    fs, width, n = 200.0, 1024, 200  # a buffer holds 10 s; blocks of 1 s
    rec = Recorder(Header([f"c{i}" for i in range(width)], fs), tmp_path / "reuse.vhdr")
    ts = 10.0 + np.arange(50 * n) / fs
    data = np.zeros((n, width), np.float32)
    for i in range(50):
        rec.on_block(Block(data, ts[i * n:(i + 1) * n], [], i * n))
        time.sleep(0.02)  # let the writer thread write and free buffers
    late = len(ts) - int(25 * fs) + 7
    rec.on_block(Block(np.zeros((0, width), np.float32), np.zeros(0), [(ts[late], "late")],
                       len(ts)))
    rec.close()
    assert len(made) <= 3  # buffers were reused
    raw = mne.io.read_raw_brainvision(tmp_path / "reuse.vhdr")
    assert raw.annotations.description[-1].endswith("late")
    assert round(raw.annotations.onset[-1] * fs) == late


def test_start_options(tmp_path):
    amp = ampkit.get_amp("random", fs=100, channels=2)
    with pytest.raises(ampkit.errors.ConfigurationError, match="unknown"):
        amp.start(filename=tmp_path / "x", colour="red")
    assert not amp.running
    amp.start(overwrite=True)  # harmless without a file name
    amp.stop()


def test_block_of_the_wrong_width_is_refused(tmp_path):
    from ampkit.block import Block

    rec = Recorder(Header(["a", "b"], 10.0), tmp_path / "w")
    rec.on_block(Block(np.zeros((3, 2), np.float32), np.arange(3.0), [], 0))
    with pytest.raises(RecordingError, match=r"shape \(3, 3\).*2 channels"):
        rec.on_block(Block(np.zeros((3, 3), np.float32), 3 + np.arange(3.0), [], 3))
    with pytest.raises(RecordingError, match="3 samples with 2 timestamps"):
        rec.on_block(Block(np.zeros((3, 2), np.float32), 3 + np.arange(2.0), [], 3))
    rec.close()
    assert ampkit.io.read(tmp_path / "w").n_samples == 3


def test_reused_copy_buffers_keep_every_sample(tmp_path, monkeypatch):
    """Blocks are copied into buffers that are reused once written: many
    blocks of varied sizes, some bigger than a buffer, read back exactly."""
    import ampkit.io.direct as direct
    from ampkit.block import Block

    monkeypatch.setattr(direct, "SLAB_BYTES", 4096)
    rng = np.random.default_rng(11)
    width = 8
    rec = Recorder(Header([f"c{i}" for i in range(width)], 1000.0), tmp_path / "reuse",
                   interval=0.002, max_backlog_bytes=3 * 4096)
    expected, index = [], 0
    for i in range(400):
        n = int(rng.integers(1, 300))  # up to 9.6 KB: some blocks span several buffers
        data = rng.standard_normal((n, width)).astype(np.float32)
        expected.append(data.copy())
        rec.on_block(Block(data, index / 1000.0 + np.arange(n) / 1000.0, [], index))
        data[:] = np.nan  # the caller reusing its array must not change the recording
        index += n
        if i % 40 == 0:
            time.sleep(0.01)  # let the writer catch up, so buffers come back
    rec.close()
    assert rec._buffers.spare, "no buffer was ever given back for reuse"
    np.testing.assert_array_equal(ampkit.io.read(tmp_path / "reuse").data,
                                  np.concatenate(expected))


class _MeasuredRandom(RandomAmp):
    """A random amp whose driver reports a measured rate, as RDA and Cyton do."""

    def get_effective_rate(self):
        return 499.98765432


def _record_measured(tmp_path, name):
    amp = ampkit.AmpDecorator(_MeasuredRandom())
    amp.configure(fs=500, channels=3)
    amp.start(filename=tmp_path / name)
    while amp.n_samples < 100:
        amp.get_block()
    amp.stop()
    assert amp.effective_rate == 499.98765432
    return tmp_path / name


def test_effective_rate_in_the_five_file_recording(tmp_path):
    base = _record_measured(tmp_path, "rec")
    meta = json.loads((tmp_path / "rec.meta").read_text())
    assert meta["Effective Sampling Frequency"] == 499.98765432
    assert meta["Sampling Frequency"] == 500.0  # libmushu's key stays nominal
    vhdr = (tmp_path / "rec.vhdr").read_text()
    note = "; Effective sampling rate (the device's clock, measured by ampkit): 499.98765432 Hz"
    assert note in vhdr
    raw = mne.io.read_raw_brainvision(tmp_path / "rec.vhdr")
    assert raw.info["sfreq"] == 500.0 and raw.n_times >= 100
    assert ampkit.io.read(base).fs == 500.0
    assert not list(tmp_path.glob(".*ampkit-new"))


def test_effective_rate_in_the_xdf_footer(tmp_path):
    path = _record_measured(tmp_path, "rec.xdf")
    streams, _ = pyxdf.load_xdf(str(path))
    data = next(s for s in streams if s["info"]["type"] == ["EEG"])
    assert data["footer"]["info"]["effective_srate"] == ["499.98765432"]


def test_effective_rate_in_the_bdf_header(tmp_path):
    path = _record_measured(tmp_path, "rec.bdf")
    f = pyedflib.EdfReader(str(path))
    try:
        # The subfields after the equipment, in the recording identification.
        assert "ampkit_fs=499.9876543" in f.getRecordingAdditional() + f.getEquipment()
    finally:
        f.close()
    assert ampkit.io.read(path).fs == 500.0
    raw = mne.io.read_raw_bdf(path)
    assert raw.info["sfreq"] == 500.0


def test_bdf_keeps_the_rate_within_80_characters(tmp_path):
    amp = ampkit.AmpDecorator(_MeasuredRandom(), name="a" * 40)
    amp.configure(fs=500, channels=2)
    amp.start(filename=tmp_path / "long.bdf")
    while amp.n_samples < 100:
        amp.get_block()
    amp.stop()
    header = (tmp_path / "long.bdf").read_bytes()[88:168].decode("ascii")
    assert header.rstrip().endswith("ampkit_fs=499.9876543")
    assert f"ampkit_samples={ampkit.io.read(tmp_path / 'long.bdf').n_samples}" in header
