"""Publishing decorated amps to LSL (ampkit.lsl) and ``ampkit stream``.

Consumers are plain pylsl inlets and ampkit's own ``lsl`` driver, on the
loopback (LSLAPICFG from conftest, inherited by subprocesses).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pylsl
import pytest

import ampkit
from ampkit.errors import ConfigurationError
from ampkit.lsl import LSLPublisher, unit_from_lsl, unit_to_lsl


def unique(prefix: str = "pub") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def resolve(name, timeout=10.0):
    found = pylsl.resolve_byprop("name", name, 1, timeout)
    assert found, f"stream {name!r} not found"
    return found[0]


def channel_desc(info):
    labels, units = [], []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label"))
        units.append(ch.child_value("unit"))
        ch = ch.next_sibling("channel")
    return labels, units


def pull_all(inlet, n, deadline_s=10.0, n_channels=None):
    data, stamps = [], []
    total = 0
    deadline = time.monotonic() + deadline_s
    while total < n and time.monotonic() < deadline:
        d, t = inlet.pull_chunk(timeout=0.2, max_samples=4096, as_numpy=True)
        if len(t):
            data.append(d)
            stamps.append(t)
            total += len(t)
    assert total >= n, f"only {total} of {n} samples"
    return np.concatenate(data), np.concatenate(stamps)


def pull_markers(inlet, n, deadline_s=5.0):
    got = []
    deadline = time.monotonic() + deadline_s
    while len(got) < n and time.monotonic() < deadline:
        sample, ts = inlet.pull_sample(timeout=0.2)
        if sample is not None:
            got.append((ts, sample[0]))
    return got


def test_decorated_amp_publishes_samples_stamps_and_markers():
    name = unique()
    amp = ampkit.get_amp("random", fs=500, channels=5)
    amp.start(lsl=name, lsl_type="ExG", lsl_source_id=f"{name}-sid")
    try:
        info = resolve(name)
        minfo = resolve(f"{name}-markers")
        inlet = pylsl.StreamInlet(info, recover=False)
        full = inlet.info(5)
        inlet.open_stream(5)
        minlet = pylsl.StreamInlet(minfo, recover=False)
        minlet.open_stream(5)
        assert full.type() == "ExG"
        assert full.source_id() == f"{name}-sid"
        assert full.nominal_srate() == 500.0
        assert full.channel_format() == pylsl.cf_float32
        assert channel_desc(full) == (["Ch_0", "Ch_1", "Ch_2", "Ch_3", "Ch_4"], ["microvolts"] * 5)
        assert minfo.type() == "Markers" and minfo.channel_format() == pylsl.cf_string
        assert minfo.source_id() == f"{name}-sid-markers"
        blocks = []
        for k in range(30):
            if k == 10:
                mark_time = pylsl.local_clock()
                amp.add_marker("stim 1", mark_time)
            blocks.append(amp.get_block())
        assert "lsl" in amp.status() and name in amp.status()["lsl"]
        sent = np.concatenate([b.data for b in blocks])
        sent_ts = np.concatenate([b.timestamps for b in blocks])
        # Read while the outlets live: samples in flight die with an outlet.
        data, stamps = pull_all(inlet, len(sent))
        markers = pull_markers(minlet, 1)
    finally:
        amp.stop()
        amp.close()
    np.testing.assert_array_equal(data, sent)
    np.testing.assert_allclose(stamps, sent_ts, rtol=0, atol=1e-9)
    assert len(markers) == 1 and markers[0][1] == "stim 1"
    assert markers[0][0] == pytest.approx(mark_time, abs=1e-9)


def test_driver_markers_and_lsl_true_names_after_the_amp():
    # A replay amp has driver markers: they go out with the stamps of their samples.
    data = np.arange(400 * 2, dtype=np.float32).reshape(400, 2)
    amp = ampkit.get_amp(
        "replay", data=data, marker=[(0.0, "begin"), (1000.0, "S 2"), (3990.0, "end")],
        channels=["C3", "C4"], fs=100, realtime=False, blocksize_samples=40,
    )
    amp.name = unique("replay")  # lsl=True uses the amp's name
    amp.start(lsl=True)
    try:
        inlet = pylsl.StreamInlet(resolve(amp.name), recover=False)
        inlet.open_stream(5)
        minlet = pylsl.StreamInlet(resolve(f"{amp.name}-markers"), recover=False)
        minlet.open_stream(5)
        blocks = [amp.get_block() for _ in range(10)]
        got, stamps = pull_all(inlet, 400)
        markers = pull_markers(minlet, 3)
    finally:
        amp.stop()
    np.testing.assert_array_equal(got, data)
    all_ts = np.concatenate([b.timestamps for b in blocks])
    assert [text for _, text in markers] == ["begin", "S 2", "end"]
    rows = [int(np.searchsorted(stamps, t)) for t, _ in markers]
    assert rows == [0, 100, 399]
    np.testing.assert_allclose([t for t, _ in markers], all_ts[rows], atol=1e-9)


def test_outlets_are_gone_after_stop():
    name = unique()
    amp = ampkit.get_amp("random", fs=100, channels=1)
    amp.start(lsl=name)
    inlet = pylsl.StreamInlet(resolve(name), recover=False)
    inlet.open_stream(5)
    amp.get_block()
    amp.stop()
    with pytest.raises(pylsl.util.LostError):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            inlet.pull_chunk(timeout=0.1)


@pytest.mark.parametrize(
    "options",
    [{"lsl": 3}, {"lsl": ""}, {"lsl_type": "EEG"}, {"lsl": True, "lsl_type": ""},
     {"lsl": "x", "lsl_source_id": 5}],
)
def test_bad_start_options(options):
    amp = ampkit.get_amp("random", fs=100, channels=1)
    with pytest.raises(ConfigurationError):
        amp.start(**options)
    assert not amp.running


def test_publisher_checks_block_shape():
    from ampkit.block import Block

    with LSLPublisher(unique(), ["a", "b"], 100.0) as pub:
        with pytest.raises(ConfigurationError):
            pub.on_block(Block(np.zeros((3, 3), np.float32), np.arange(3.0)))
        with pytest.raises(ConfigurationError):
            pub.on_block(Block(np.zeros((3, 2), np.float32), np.arange(2.0)))
        pub.on_block(Block(np.zeros((0, 2), np.float32), np.zeros(0)))
    with pytest.raises(ConfigurationError):
        LSLPublisher("x", ["a"], 100.0, units=["µV", "mV"])


def test_units_round_trip():
    for unit in ["µV", "mV", "V", "nV", "degC", "a.u."]:
        assert unit_from_lsl(unit_to_lsl(unit)) == unit
    assert unit_from_lsl("microvolts") == "µV"
    assert unit_from_lsl("uV") == "µV"
    assert unit_from_lsl(None) == "µV"


def test_import_ampkit_does_not_load_pylsl():
    code = "import sys, ampkit; ampkit.get_amp('random'); print('pylsl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# -- ampkit stream -----------------------------------------------------------


def free_port():
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        return port


def start_cli(*argv, marker_port=None):
    env = dict(os.environ)  # LSLAPICFG (loopback) set by conftest is inherited
    if marker_port is not None:
        env["AMPKIT_MARKER_PORT"] = str(marker_port)
    assert env.get("LSLAPICFG", "").endswith("lsl-loopback.cfg")
    return subprocess.Popen(
        [sys.executable, "-m", "ampkit.cli", *argv],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc, timeout=30):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"ampkit did not end: {err}") from None
    return proc.returncode, out, err


def test_ampkit_stream_random_read_by_pylsl_and_by_the_lsl_driver():
    from ampkit.markers import send_marker

    name = unique("cli")
    port = free_port()
    proc = start_cli("stream", "random", "-c", "fs=200", "-c", "channels=6",
                     "--name", name, "-d", "15", marker_port=port)
    try:
        info = resolve(name, timeout=20)
        inlet = pylsl.StreamInlet(info, recover=False)
        full = inlet.info(5)
        assert full.nominal_srate() == 200.0
        assert full.channel_count() == 6
        assert full.source_id() == f"ampkit:{socket.gethostname()}:{name}"
        labels, units = channel_desc(full)
        assert labels == [f"Ch_{i}" for i in range(6)] and units == ["microvolts"] * 6
        inlet.open_stream(5)
        minlet = pylsl.StreamInlet(resolve(f"{name}-markers"), recover=False)
        minlet.open_stream(5)
        with ampkit.get_amp("lsl", name=name, marker_stream=True, timeout=10) as amp:
            assert amp.get_channels() == labels
            assert amp.get_sampling_frequency() == 200.0
            amp.start()
            blocks = [amp.get_block()]
            # A network marker to the streaming process (its marker servers).
            sent_at = send_marker("S 7", port=port)
            t_end = time.monotonic() + 1.5
            while time.monotonic() < t_end or not any(b.markers for b in blocks):
                assert time.monotonic() < t_end + 10, "marker did not arrive"
                blocks.append(amp.get_block())
            amp.stop()
        plain, plain_ts = pull_all(inlet, 100)
        plain_markers = pull_markers(minlet, 1)
    finally:
        rc, _, err = finish(proc)
    assert rc == 0, err
    assert "lsl " + name in err  # the status line
    ours = np.concatenate([b.data for b in blocks])
    ours_ts = np.concatenate([b.timestamps for b in blocks])
    assert len(ours) >= 100
    # Both consumers saw the same samples with the same stamps where they overlap.
    common, i_plain, i_ours = np.intersect1d(plain_ts, ours_ts, return_indices=True)
    assert len(common) >= 100
    np.testing.assert_array_equal(plain[i_plain], ours[i_ours])
    # Stamps advance at the nominal rate (random stamps its samples exactly).
    assert np.allclose(np.diff(ours_ts), 1 / 200.0, atol=1e-6)
    # The marker reached both consumers with the stamp its arrival got.
    ours_markers = [m for b in blocks for m in b.markers]
    assert [text for _, text in ours_markers] == ["S 7"]
    assert [text for _, text in plain_markers] == ["S 7"]
    assert ours_markers[0][0] == pytest.approx(plain_markers[0][0], abs=1e-9)
    assert sent_at <= plain_markers[0][0] < sent_at + 1.0


def test_ampkit_stream_republishes_an_lsl_stream_with_its_markers():
    # ampkit stream lsl ...: the source's markers become driver markers and go
    # out on <name>-markers; ampkit's lsl driver reads them back at their samples.
    src = unique("src")
    relay = unique("relay")
    info = pylsl.StreamInfo(src, "EEG", 2, 100.0, "float32", src)
    chans = info.desc().append_child("channels")
    for label in ["O1", "O2"]:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
    out = pylsl.StreamOutlet(info)
    mout = pylsl.StreamOutlet(pylsl.StreamInfo(f"{src}-markers", "Markers", 1, 0, "string", "m"))
    # No -d: runs until SIGTERM, which must end it cleanly (exit status 0).
    proc = start_cli("stream", "lsl", "-c", f"name={src}", "-c", "marker_stream=True",
                     "--name", relay)
    try:
        with ampkit.get_amp("lsl", name=relay, marker_stream=True, timeout=20) as amp:
            assert amp.get_channels() == ["O1", "O2"]
            amp.start()
            # Wait until the relay is subscribed to the source.
            deadline = time.monotonic() + 20
            while not out.wait_for_consumers(0.1):
                assert time.monotonic() < deadline
            t0 = pylsl.local_clock()
            data = np.arange(400, dtype=np.float32).reshape(200, 2)
            stamps = t0 + np.arange(200) / 100.0
            out.push_chunk(data, stamps.tolist())
            mout.push_sample(["S 11"], stamps[50])
            mout.push_sample(["S 12"], stamps[150])
            blocks = []
            deadline = time.monotonic() + 20
            t_next = stamps[-1] + 0.01
            while True:
                assert time.monotonic() < deadline, "samples or markers missing"
                total = sum(len(b) for b in blocks)
                if total >= 200 and sum(len(b.markers) for b in blocks) >= 2:
                    break
                if total >= 200:
                    # A marker goes out with a block holding samples: one that
                    # reached the relay after the last sample needs more of them.
                    out.push_chunk(np.full((1, 2), -1, np.float32), [t_next])
                    t_next += 0.01
                blocks.append(amp.get_block())
            amp.stop()
    finally:
        proc.terminate()
        rc, _, err = finish(proc)
    assert rc == 0, err
    got = np.concatenate([b.data for b in blocks])
    got_ts = np.concatenate([b.timestamps for b in blocks])
    np.testing.assert_array_equal(got[:200], data)
    np.testing.assert_allclose(got_ts[:200], stamps, atol=1e-9)
    # Placed by time: a late marker comes with a later block, at its true time.
    placed = [(int(np.searchsorted(got_ts, t)), text) for b in blocks for t, text in b.markers]
    assert placed == [(50, "S 11"), (150, "S 12")]


# -- round trip --------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".xdf"])
def test_round_trip_amp_to_lsl_to_lsl_driver_to_recording(tmp_path, suffix):
    from ampkit.io import read

    rng = np.random.default_rng(7)
    data = (rng.standard_normal((1000, 3)) * 50).astype(np.float32)
    sent_markers = [(0.0, "start"), (123.0, "S 1"), (400.0, "S 2"), (599.0, "end")]
    # Paced (1 kHz, 10-sample blocks) so data keeps flowing after the last
    # marker, as in a live session: a marker goes out with a block of samples.
    src = ampkit.get_amp(
        "replay", data=data, marker=sent_markers, channels=["F3", "F4", "Cz"], fs=1000,
        realtime=True, blocksize_samples=10,
    )
    src.name = unique("rt")
    src.start(lsl=True)
    path = tmp_path / f"roundtrip{suffix}"
    sent_ts = []
    try:
        with ampkit.get_amp(
            "lsl", name=src.name, marker_stream=True, timeout=10, wait=0.0
        ) as amp:
            assert amp.get_channels() == ["F3", "F4", "Cz"]
            amp.start(filename=str(path))
            total, n_markers, n_sent = 0, 0, 0
            deadline = time.monotonic() + 20
            while total < 1000 or n_markers < len(sent_markers):
                assert time.monotonic() < deadline, f"{total} samples, {n_markers} markers"
                if n_sent < 1000:
                    sent = src.get_block()
                    sent_ts.append(sent.timestamps)
                    n_sent += len(sent)
                else:
                    time.sleep(0.005)
                block = amp.get_block()
                total += len(block)
                n_markers += len(block.markers)
            amp.stop()
    finally:
        src.stop()
    sent_ts = np.concatenate(sent_ts)
    rec = read(path)
    assert rec.channels == ["F3", "F4", "Cz"]
    assert rec.fs == 1000.0
    assert rec.units == ["µV"] * 3
    np.testing.assert_array_equal(rec.data, data)
    assert [(i, text) for i, _, text in rec.markers] == [
        (0, "start"), (123, "S 1"), (400, "S 2"), (599, "end")
    ]
    if rec.timestamps is not None:
        np.testing.assert_allclose(rec.timestamps, sent_ts, atol=1e-9)
