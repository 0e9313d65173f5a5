"""AppendFile: what was appended is what the file holds, past the page cache or not."""

import errno
import os
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampkit.errors import RecordingError
from ampkit.io.direct import ALIGN, AppendFile


def direct_possible(folder) -> bool:
    probe = folder / "probe"
    probe.touch()
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_DIRECT))
    except (OSError, AttributeError):
        return False
    finally:
        probe.unlink()
    return True


def open_append(path, **kwargs):
    return AppendFile(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), path, **kwargs)


# Sizes around the staging buffer (3 pages) and the alignment.
chunks = st.lists(
    st.tuples(st.sampled_from([0, 1, 4, ALIGN - 1, ALIGN, ALIGN + 4, 3 * ALIGN, 7 * ALIGN + 12])
              | st.integers(0, 5 * ALIGN), st.booleans()),
    max_size=12,
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks, st.booleans())
def test_file_holds_what_was_appended_after_every_flush(tmp_path, plan, direct):
    path = tmp_path / f"data-{os.urandom(6).hex()}.bin"
    rng = np.random.default_rng(len(plan))
    out = open_append(path, direct=direct, stage_bytes=3 * ALIGN)
    assert out.direct == (direct and direct_possible(tmp_path))
    expected = bytearray()
    for size, flush in plan:
        piece = rng.integers(0, 256, size, dtype=np.uint8)
        assert out.write([piece, piece[: size // 3]]) == size + size // 3
        expected += piece.tobytes() + piece[: size // 3].tobytes()
        assert out.size == len(expected)
        if flush:
            out.flush()
            assert path.read_bytes() == expected
    out.close()
    assert path.read_bytes() == expected
    out.close()  # twice is fine
    path.unlink()


def test_large_writes_go_past_the_page_cache(tmp_path):
    if not direct_possible(tmp_path):
        pytest.skip("no O_DIRECT on this file system")
    path = tmp_path / "big.bin"
    data = np.random.default_rng(2).standard_normal((40_000, 64)).astype("<f4")  # 10 MiB
    out = open_append(path)
    assert out.direct
    out.write([data[:12345], data[12345:]])
    # The full 8 MiB stage went out already, without a flush.
    assert os.path.getsize(path) >= 8 * 2**20
    out.flush()
    assert os.path.getsize(path) == data.nbytes
    out.write([data[:3]])
    out.close()
    got = np.fromfile(path, "<f4").reshape(-1, 64)
    np.testing.assert_array_equal(got, np.concatenate([data, data[:3]]))


@pytest.mark.parametrize("fstype", ["tmpfs", "ramfs"])
def test_memory_file_systems_hold_what_was_appended(tmp_path, fstype):
    # ramfs refuses O_DIRECT (the page-cache way is taken). Kernels before
    # 6.6 refuse it on tmpfs too; later ones accept it.
    if os.geteuid() != 0:
        pytest.skip(f"mounting a {fstype} needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", fstype, "-o", "size=1m", fstype, str(mnt)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a {fstype} here: {done.stderr.decode().strip()}")
    try:
        out = open_append(mnt / "x.bin", stage_bytes=ALIGN)
        assert out.direct == direct_possible(mnt)
        if fstype == "ramfs":
            assert not out.direct
        data = os.urandom(3 * ALIGN + 5)
        out.write([b"abc", data])
        out.flush()
        assert (mnt / "x.bin").read_bytes() == b"abc" + data
        out.write([data])
        out.close()
        assert (mnt / "x.bin").read_bytes() == b"abc" + data + data
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_ext4(tmp_path):
    """A 2 MiB ext4 file system on a loop device (root only), written with O_DIRECT."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(2 * 2**20)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(mnt)], capture_output=True
    ).returncode == 0
    if not mounted:
        pytest.skip("cannot make and mount a loop ext4 here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_a_recording_error_and_keeps_what_was_written(small_ext4):
    path = small_ext4 / "data.bin"
    out = open_append(path, stage_bytes=16 * ALIGN)
    if not out.direct:
        pytest.skip("no O_DIRECT on the loop file system")
    piece = np.arange(5000, dtype="<f4")  # 20000 bytes, not a multiple of the alignment
    written = 0
    with pytest.raises(RecordingError) as info:
        for _ in range(1000):  # 20 MB: far more than fits
            out.write([piece])
            out.flush()
            written += 1
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    out.abandon()
    assert written > 10
    got = np.fromfile(path, "<f4")
    # Every flushed piece is there, whole; the failed one at most partly.
    assert len(got) >= written * len(piece)
    np.testing.assert_array_equal(got[: written * len(piece)], np.tile(piece, written))


def test_bad_stage_size():
    with pytest.raises(ValueError):
        AppendFile(-1, "x", stage_bytes=ALIGN + 1)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 6 * ALIGN), st.sampled_from(["next", "slab", "odd"]),
                          st.booleans()), min_size=1, max_size=16))
def test_data_placed_like_the_file_is_written_from_where_it_is(tmp_path, plan):
    # Blocks laid out as the recorder lays them out: one after the other in
    # page-aligned slabs, a new slab starting at the file offset's distance
    # from a page boundary; "odd" blocks sit anywhere (they are copied).
    path = tmp_path / f"run-{os.urandom(6).hex()}.bin"
    out = open_append(path, stage_bytes=4 * ALIGN, zero_copy_bytes=2 * ALIGN)
    rng = np.random.default_rng(len(plan))
    slab = np.frombuffer(mmap_pages(64), np.uint8)
    used = 0
    offset = 0
    expected = bytearray()
    batch = []
    for size, where, flush in plan:
        if where == "slab" or used + size > len(slab):
            slab = np.frombuffer(mmap_pages(64), np.uint8)
            used = offset % ALIGN
        if where == "odd":
            block = np.empty(size + 1, np.uint8)[1:]
        else:
            block = slab[used:used + size]
            used += size
        block[:] = rng.integers(0, 256, size, dtype=np.uint8)
        batch.append(block)
        expected += block.tobytes()
        offset += size
        if flush:
            out.write(batch)
            batch = []
            out.flush()
            assert path.read_bytes() == expected
    out.write(batch)
    out.close()
    assert path.read_bytes() == expected
    path.unlink()


def mmap_pages(n):
    import mmap

    return mmap.mmap(-1, n * ALIGN)


def test_the_open_file_is_written_even_when_its_path_changed(tmp_path):
    if not direct_possible(tmp_path):
        pytest.skip("no O_DIRECT on this file system")
    path = tmp_path / "moving.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    path.rename(tmp_path / "moved.bin")
    path.write_bytes(b"someone else's file")
    out = AppendFile(fd, path, stage_bytes=ALIGN)
    data = os.urandom(3 * ALIGN + 7)
    out.write([data])
    out.close()
    assert (tmp_path / "moved.bin").read_bytes() == data
    assert path.read_bytes() == b"someone else's file"
