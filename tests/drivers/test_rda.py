"""End-to-end tests of the rda driver against the RDA simulator on real loopback sockets."""

import logging
import socket
import threading
import time

import numpy as np
import pytest
from reading import read_until

import ampkit
from ampkit.block import GAP_MARKER
from ampkit.codec import Chunk
from ampkit.drivers.rda import RDAAmp, RDACodec, _Scaler
from ampkit.errors import (
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
    ProtocolError,
    StateError,
)
from ampkit.protocols import rda
from ampkit.reader import StreamReader
from ampkit.sim.rda import COUNTER_MODULUS, RDASimulator
from ampkit.transport import TCPTransport
from ampkit.worker import Worker

FS = 1000.0
BLOCK = 10
RES = [0.1, 0.5, 1.0, 0.05, 2.0]


def make_sim(dtype="float32", **kw):
    options = dict(
        port=0, channels=["Cnt", "Fz", "Cz", "Pz", "Oz"], fs=FS, block_size=BLOCK,
        dtype=dtype, resolution=RES, marker_rate=50,
    )
    options.update(kw)
    return RDASimulator(**options)


def collect(amp, n):
    """Read the undecorated driver until ``n`` samples came: (data, [(row, text)])."""
    return read_until(amp, n, 20.0, fs=FS)


def rows_until_error(amp, error, match):
    """Read until ``error`` is raised (and raised again by the next call):
    the number of samples delivered before it."""
    rows = 0
    with pytest.raises(error, match=match):
        for _ in range(200):
            rows += len(amp.get_data()[0])
    with pytest.raises(error):  # and it stays
        amp.get_data()
    return rows


def expected(sim, first, n):
    """The µV the driver must deliver for samples ``first`` .. of the simulator."""
    raw = sim.samples(first, n)
    return raw.astype(np.float32) * np.asarray(RES, np.float32)


def first_sample(sim, data):
    """The simulator's sample index of ``data[0]`` (channel 0 is a counter)."""
    return int(round(data[0, 0] / RES[0]))


def check_run(sim, data, markers, first=None, row0=0):
    """``data`` (from row ``row0`` on) is an unbroken run of the simulator's signal."""
    part = data[row0:]
    k0 = first_sample(sim, part) if first is None else first
    np.testing.assert_array_equal(part, expected(sim, k0, len(part)))
    want = [(row0 + m.position, m.text) for m in sim.markers(k0, len(part))]
    got = [(r, t) for r, t in markers if r >= row0 and not t.startswith("ampkit/gap")]
    assert got == want
    return k0


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_exact_samples_and_markers_joining_mid_recording(dtype):
    with make_sim(dtype) as sim, RDAAmp() as amp:
        time.sleep(0.3)  # the recording runs before the client joins
        amp.configure(port=sim.port)
        assert amp.get_channels() == ["Cnt", "Fz", "Cz", "Pz", "Oz"]
        assert amp.get_sampling_frequency() == FS
        np.testing.assert_array_equal(amp.get_resolutions(), RES)
        amp.start()
        data, markers = collect(amp, 600)
        amp.stop()
    assert data.dtype == np.float32 and data.shape[1] == 5
    k0 = check_run(sim, data, markers)
    assert k0 > 0 and k0 % BLOCK == 0  # joined mid-recording, at a block boundary
    assert len(markers) >= 10
    assert markers[0][1].startswith("Stimulus/S ")
    assert amp.gap_count == 0 and amp.lost_samples == 0


@pytest.mark.parametrize("dtype", ["float32", "int16"])
@pytest.mark.parametrize("resolution", [0.1, 1.0])
def test_channels_sharing_a_resolution(dtype, resolution):
    # One resolution for all channels (scaled by one number), and 1.0 (not scaled).
    with make_sim(dtype, resolution=resolution) as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        data, _ = collect(amp, 200)
        amp.stop()
    k0 = int(round(data[0, 0] / resolution))
    raw = sim.samples(k0, len(data)).astype(np.float32)
    np.testing.assert_array_equal(data, raw * np.float32(resolution))


def test_scaler_matches_numpy_broadcasting():
    rng = np.random.default_rng(1)
    for channels, points in [(1, 1), (3, 7), (64, 500), (5, 1), (5, 300)]:
        res = rng.uniform(0.01, 10, channels)
        scale = _Scaler(res)
        for dtype in (np.float32, np.int16):
            raw = (rng.standard_normal((points, channels)) * 1000).astype(dtype)
            want = raw * res.astype(np.float32)
            got = scale(raw)
            np.testing.assert_array_equal(got, want)
            assert (got is raw) == (dtype == np.float32)  # float32 in place
            if dtype == np.float32:
                np.testing.assert_array_equal(raw, want)


def test_caller_reads_the_socket_while_it_calls_and_the_thread_when_it_does_not():
    readers, blocks = [], []

    def on_events(events, arrival):
        for event in events:
            if isinstance(event, Chunk):
                readers.append(threading.get_ident())
                blocks.append(event.counter)

    with make_sim() as sim:
        transport = TCPTransport("127.0.0.1", sim.port)
        receiver = StreamReader(transport, RDACodec("sim"), on_events, "test").start()
        try:
            time.sleep(0.2)  # nobody calls: the thread reads
            assert len(readers) >= 5 and threading.get_ident() not in readers
            start = len(readers)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 0.5:  # a caller reading in a loop
                receiver.read(0.1)
            mine = readers[start:].count(threading.get_ident())
            assert mine >= 0.9 * (len(readers) - start) and mine >= 20
            start = len(readers)
            time.sleep(0.3)  # the caller stops: the thread takes over
            assert len(readers) - start >= 10
            assert threading.get_ident() not in readers[start + 2:]
        finally:
            receiver.close()
    # Whoever read, every block came once and in order.
    assert np.all(np.diff(blocks) == 1)


def test_decorated_amp_places_markers_on_their_samples():
    with make_sim() as sim, ampkit.get_amp("rda", port=sim.port) as amp:
        assert "rda" in ampkit.registry.driver_names()
        assert amp.is_available()  # the decorator asks the configured address
        amp.start()
        blocks, n = [], 0
        while n < 500:
            block = amp.get_block()
            blocks.append(block)
            n += len(block)
        amp.stop()
    data = np.concatenate([b.data for b in blocks])
    stamps = np.concatenate([b.timestamps for b in blocks])
    rows, offset = [], 0
    for b in blocks:
        rows += [(offset + r, t) for r, t in b.marker_samples()]
        offset += len(b)
    check_run(sim, data, rows)
    assert np.all(np.diff(stamps) > 0)
    # Times follow the nominal rate (arrival jitter is smoothed away).
    assert abs((stamps[-1] - stamps[0]) / (len(stamps) - 1) - 1 / FS) < 0.2 / FS


def test_preamble_and_interleaved_unknown_messages_are_skipped(caplog):
    caplog.set_level(logging.DEBUG, logger="ampkit")
    with make_sim("int16", preamble=True, keepalive_every=2) as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        data, markers = collect(amp, 300)
        amp.stop()
    check_run(sim, data, markers)
    skipped = caplog.text
    for mtype in (5, 9, 10000, 100000, 4242):
        assert f"skipped message type {mtype}" in skipped


def test_dropped_blocks_are_counted_and_marked(caplog):
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        data1, m1 = collect(amp, 100)
        sim.drop_blocks(3)
        data2, m2 = collect(amp, 300)
        amp.stop()
    data = np.concatenate([data1, data2])
    markers = m1 + [(r + len(data1), t) for r, t in m2]
    counter = np.round(data[:, 0] / RES[0]).astype(int)
    jumps = np.flatnonzero(np.diff(counter) != 1) + 1
    assert list(jumps) == [jumps[0]] and counter[jumps[0]] - counter[jumps[0] - 1] == 31
    assert (jumps[0], GAP_MARKER.format(n=30)) in markers
    assert amp.gap_count == 1 and amp.lost_samples == 30
    assert "30 samples lost" in caplog.text
    check_run(sim, data, markers, row0=jumps[0])
    assert sim.blocks_dropped == 3


def test_restart_continues_with_a_gap_marker():
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        data1, m1 = collect(amp, 100)
        sim.restart()
        time.sleep(0.2)
        data2, m2 = collect(amp, 300)
        amp.stop()
    data = np.concatenate([data1, data2])
    markers = m1 + [(r + len(data1), t) for r, t in m2]
    counter = np.round(data[:, 0] / RES[0]).astype(int)
    (restart,) = np.flatnonzero(np.diff(counter) != 1) + 1
    assert counter[restart] == 0  # the new recording starts from sample 0
    gaps = [(r, t) for r, t in markers if t.startswith("ampkit/gap")]
    assert len(gaps) == 1 and gaps[0][0] == restart
    assert amp.gap_count == 1
    check_run(sim, data, markers, first=0, row0=restart)


def test_restart_with_another_layout_raises_protocol_error():
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        collect(amp, 50)
        sim.restart(channels=3)
        with pytest.raises(ProtocolError, match="different setup"):
            collect(amp, 10**6)
        amp.stop()
        # A new start() follows the new layout.
        amp.start()
        assert amp.get_channels() == ["Ch1", "Ch2", "Ch3"]
        data, _ = amp.get_data()
        amp.stop()


def test_server_killed_gives_connection_lost_after_the_buffered_data():
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        collect(amp, 50)
        time.sleep(0.2)
        sim.stop()
        got = rows_until_error(amp, ConnectionLostError, "closed the connection")
        assert got > 0  # what arrived before the loss was delivered first
        t0 = time.monotonic()
        amp.stop()
        assert time.monotonic() - t0 < 2.0


def test_reconnect_marks_the_gap_after_a_cut_and_a_new_server():
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port, reconnect=True)
        amp.start()
        data1, m1 = collect(amp, 100)
        # Blocks sent while the client is away are lost to it: the gap is
        # known from nBlock.
        sim.drop_blocks(5)
        sim.cut()
        data2, m2 = collect(amp, 300)
        assert amp.reconnects == 1
        sim.stop()  # a new recording on the same port: the gap is estimated from time
        time.sleep(0.3)
        sim.start()
        data3, m3 = collect(amp, 300)
        assert amp.reconnects == 2
        amp.stop()
    data = np.concatenate([data1, data2, data3])
    markers = (
        m1 + [(r + len(data1), t) for r, t in m2]
        + [(r + len(data1) + len(data2), t) for r, t in m3]
    )
    counter = np.round(data[:, 0] / RES[0]).astype(int)
    cut, new = np.flatnonzero(np.diff(counter) != 1) + 1
    gaps = [(r, t) for r, t in markers if t.startswith("ampkit/gap")]
    lost = counter[cut] - counter[cut - 1] - 1
    assert gaps[0] == (cut, GAP_MARKER.format(n=lost)) and lost > 0
    assert gaps[1][0] == new and counter[new] < counter[new - 1]  # a new recording
    assert int(gaps[1][1].split()[-1]) >= 0.2 * FS  # the server was away for 0.3 s
    assert amp.gap_count == 2
    check_run(sim, data, markers, row0=new)


def test_slow_reader_loses_nothing_within_the_buffer():
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        time.sleep(0.6)
        data, markers = collect(amp, 500)
        amp.stop()
    check_run(sim, data, markers)
    assert amp.gap_count == 0


@pytest.mark.parametrize("pooled", [False, True])
def test_late_reader_gets_its_backlog_in_parts(monkeypatch, pooled):
    import ampkit.streaming as streaming

    monkeypatch.setattr(streaming, "_READ_FLOATS", 3 * BLOCK * len(RES))  # 3 blocks a read
    if pooled:  # joins into reused buffers, though small; none may be reused here
        monkeypatch.setattr(streaming, "_JOIN_POOLED", 0)
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        time.sleep(0.6)
        sizes, datas, markers, rows = [], [], [], 0
        while rows < 500:
            data, block_markers = amp.get_data()
            sizes.append(len(data))
            markers += [(rows + round(ms * FS / 1000.0), text) for ms, text in block_markers]
            datas.append(data)
            rows += len(data)
        amp.stop()
    assert max(sizes) == 3 * BLOCK and len(sizes) > 10
    check_run(sim, np.concatenate(datas), markers)
    assert amp.gap_count == 0


def test_joined_blocks_are_exact_when_the_caller_keeps_nothing(monkeypatch):
    # The joining buffer is then reused call after call (the late-reader
    # test above keeps every array: there none may be reused).
    import ampkit.streaming as streaming

    monkeypatch.setattr(streaming, "_READ_FLOATS", 3 * BLOCK * len(RES))
    monkeypatch.setattr(streaming, "_JOIN_POOLED", 0)
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port)
        amp.start()
        time.sleep(0.6)  # a backlog: every call joins 3 blocks
        copies, markers, sizes, rows = [], [], [], 0
        while rows < 500:
            data, block_markers = amp.get_data()
            sizes.append(len(data))
            markers += [(rows + round(ms * FS / 1000.0), text) for ms, text in block_markers]
            copies.append(data.copy())
            rows += len(data)
            del data  # the caller keeps nothing of what it got
        amp.stop()
    assert sizes.count(3 * BLOCK) > 10
    check_run(sim, np.concatenate(copies), markers)


def test_buffer_overflow_is_counted_logged_and_marked(caplog):
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port, buffer_seconds=0.1)
        amp.start()
        data1, m1 = collect(amp, 50)
        time.sleep(0.6)  # 0.6 s of data for a 0.1 s buffer
        data2, m2 = collect(amp, 50)
        amp.stop()
    assert len(data2) <= 0.1 * FS + 2 * BLOCK
    counter = np.round(np.concatenate([data1, data2])[:, 0] / RES[0]).astype(int)
    lost = counter[len(data1)] - counter[len(data1) - 1] - 1
    assert lost >= 300
    # All overflows while nobody read are one gap: one marker, counted once.
    assert m2[0] == (0, GAP_MARKER.format(n=lost))
    assert [t for _, t in m2].count(m2[0][1]) == 1
    assert amp.gap_count == 1 and amp.lost_samples == lost
    assert "buffer of 0.1 s full" in caplog.text
    check_run(sim, data2, m2)


def test_no_server_and_silent_server():
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    amp = RDAAmp()
    amp.configure(port=port, timeout=0.5)
    assert not amp.is_available()
    with pytest.raises(AmpNotAvailableError, match=f"no RDA server at 127.0.0.1:{port}"):
        amp.start()
    # Accepts connections but never sends a start message.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        amp.configure(port=silent.getsockname()[1], timeout=0.5)
        assert amp.is_available()
        with pytest.raises(AmpNotAvailableError, match="no start\\s+message"):
            amp.get_channels()
    assert isinstance(RDAAmp.is_available(), bool)  # asked of the class: the default port


def serve_once(messages, hold=5.0):
    """A one-connection RDA server: sends ``messages`` in order (bytes, or a
    number of seconds to wait), then holds the connection open."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)

    def serve(stop):
        conn, _ = listener.accept()
        with conn:
            for message in messages:
                if isinstance(message, float):
                    stop.wait(message)
                else:
                    conn.sendall(message)
            stop.wait(hold)

    return listener, Worker(serve, "test RDA server")


def test_server_sending_garbage_gives_protocol_error():
    messages = [rda.encode_start(["A"], 1000.0, [1.0]) + b"this is not RDA" * 3]
    listener, server = serve_once(messages)
    with listener, server:
        amp = RDAAmp()
        amp.configure(port=listener.getsockname()[1], timeout=5)
        with pytest.raises(ProtocolError, match="GUID"):
            amp.start()
            for _ in range(50):
                amp.get_data()
        amp.close()


def test_garbage_after_good_blocks_while_the_caller_reads():
    good = np.arange(30, dtype=np.float32).reshape(10, 3)
    messages = [
        rda.encode_start(["A", "B", "C"], 1000.0, [1.0] * 3),
        0.3,  # the client is reading in a loop by now
        *[rda.encode_data(block, good) for block in range(4)],
        0.2,
        b"this is not RDA" * 3,
    ]
    listener, server = serve_once(messages)
    with listener, server, RDAAmp() as amp:
        amp.configure(port=listener.getsockname()[1], timeout=5)
        amp.start()
        rows = rows_until_error(amp, ProtocolError, "RDA 127.0.0.1:.*GUID")
        assert rows == 40  # every good block first


def test_configure_validates_and_get_data_needs_start():
    amp = RDAAmp()
    for bad in ({"port": "51244"}, {"port": 0}, {"timeout": -1}, {"reconnect": "yes"},
                {"host": ""}, {"buffer_seconds": 0}, {"speed": 2},
                {"buffer_seconds": float("inf")}, {"timeout": float("inf")},
                {"silence_timeout": 0}, {"on_stop": "never"}):
        with pytest.raises((ConfigurationError, TypeError)):
            amp.configure(**bad)
    with pytest.raises(StateError):
        amp.get_data()


def test_counter_modulus_is_the_simulator_contract():
    # The tests above read sample indices from channel 0.
    with make_sim(dtype="int16") as sim:
        raw = sim.samples(COUNTER_MODULUS - 2, 4)
    assert list(raw[:, 0]) == [COUNTER_MODULUS - 2, COUNTER_MODULUS - 1, 0, 1]


def test_recording_read_back_by_mne_has_every_sample_and_marker(tmp_path):
    mne = pytest.importorskip("mne")
    with make_sim() as sim, ampkit.get_amp("rda", port=sim.port) as amp:
        amp.start(filename=str(tmp_path / "rda"))
        n = 0
        while n < 600:
            n += len(amp.get_block())
        amp.stop()
    raw = mne.io.read_raw_brainvision(tmp_path / "rda.vhdr", verbose="error")
    assert raw.ch_names == ["Cnt", "Fz", "Cz", "Pz", "Oz"] and raw.info["sfreq"] == FS
    data = raw.get_data().T * 1e6  # V -> µV
    k0 = int(round(data[0, 0] / RES[0]))
    np.testing.assert_allclose(data, expected(sim, k0, len(data)), rtol=1e-6, atol=1e-6)
    got = [
        (int(round(onset * FS)), text)
        for onset, text in zip(raw.annotations.onset, raw.annotations.description, strict=True)
        if text.startswith("Stimulus/")
    ]
    assert got == [(m.position, m.text) for m in sim.markers(k0, len(data))]
    assert len(got) >= 10


# -- hardening: start race, stop, silence, markers, bad rates (issue 14) ------------


def start_in_background(amp):
    """amp.start() in a thread of its own (it waits for the start message)."""
    worker = Worker(lambda stop: amp.start(), "start")
    return worker.start()


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_block_sent_with_the_start_message_is_delivered():
    # Brain Products' servers send the first block right behind the start
    # message, often in the same read: it used to be dropped while start()
    # was still returning (the first 20 of 1000 samples, in half the runs).
    with make_sim() as sim, RDAAmp() as amp:
        sim.stop_recording()  # clients connect to a server that does not stream yet
        amp.configure(port=sim.port)
        for _ in range(4):
            starting = start_in_background(amp)
            wait_for(lambda: sim.clients == 1)
            sim.start_recording()  # start message + block 0 in one write
            starting.stop()
            starting.check()
            data, markers = collect(amp, 100)
            check_run(sim, data, markers, first=0)  # from sample 0 on, nothing missing
            amp.stop()
            wait_for(lambda: sim.clients == 0)
            sim.stop_recording()


def test_stop_message_waits_with_empty_blocks_and_a_new_start_goes_on_with_a_gap(caplog):
    with make_sim(keepalive_interval=0.05) as sim, RDAAmp() as amp:
        amp.configure(port=sim.port, silence_timeout=0.3)
        amp.start()
        data1, m1 = collect(amp, 100)
        sim.stop_recording()
        sent = sim.blocks_sent * BLOCK
        # Every sample sent before the stop is delivered, then empty blocks:
        # a stopped server is not a silent one (0.6 s > silence_timeout).
        tail, empty = [], 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.6:
            data, markers = amp.get_data()
            tail.append(data)
            empty += len(data) == 0
        assert amp.server_stopped and empty > 0
        data2 = np.concatenate([data1, *tail])
        assert round(data2[-1, 0] / RES[0]) == (sent - 1) % COUNTER_MODULUS
        check_run(sim, data2, m1)
        assert "stopped acquisition" in caplog.text
        sim.start_recording()  # on the same connection
        data3, m3 = collect(amp, 100)
        assert not amp.server_stopped
        assert m3[0][0] == 0 and m3[0][1].startswith("ampkit/gap ")
        assert int(m3[0][1].split()[-1]) >= 0.4 * FS  # the time it was stopped
        check_run(sim, data3, m3, first=0)
        assert amp.gap_count == 1
        amp.stop()


def test_stop_message_with_on_stop_raise_ends_the_stream_after_every_block():
    from ampkit.errors import StreamEndedError

    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port, on_stop="raise")
        amp.start()
        data1, _ = collect(amp, 100)
        sim.stop_recording()
        sent = sim.blocks_sent * BLOCK
        rows = rows_until_error(amp, StreamEndedError, "stopped acquisition")
        assert len(data1) + rows == sent - first_sample(sim, data1)
        # A ConnectionLostError to code that handles only those.
        assert issubclass(StreamEndedError, ConnectionLostError)
        amp.stop()
        sim.start_recording()
        amp.start()  # a new connection, a new start message
        data, markers = collect(amp, 50)
        check_run(sim, data, markers)
        amp.stop()


@pytest.mark.parametrize("keepalives", [False, True])
def test_a_server_that_falls_silent_is_noticed(keepalives):
    # Keep-alives say the server lives, not that it streams: still silence.
    with make_sim(keepalive_interval=0.05 if keepalives else 0) as sim, RDAAmp() as amp:
        amp.configure(port=sim.port, silence_timeout=0.5)
        amp.start()
        data, markers = collect(amp, 100)
        sim.mute()
        t0 = time.monotonic()
        rows = rows_until_error(amp, ConnectionLostError, "no data for .* silence_timeout")
        assert 0.4 < time.monotonic() - t0 < 10.0
        assert rows >= 0  # what came before the silence was delivered first
        amp.stop()


def test_silence_limit_follows_the_block_rate_by_default():
    with make_sim() as sim, RDAAmp() as amp:  # 10 ms blocks: the 2 s floor
        amp.configure(port=sim.port)
        amp.start()
        collect(amp, 100)
        assert amp._silence.limit == 2.0
        sim.mute()
        t0 = time.monotonic()
        with pytest.raises(ConnectionLostError, match="no data for"):
            for _ in range(200):
                amp.get_data()
        assert 1.8 < time.monotonic() - t0 < 15.0
        amp.stop()
    with make_sim(fs=100.0, block_size=50) as sim, RDAAmp() as amp:  # 0.5 s blocks
        amp.configure(port=sim.port)
        amp.start()
        while not amp.get_data()[0].size:
            pass
        assert amp._silence.limit == 5.0


def test_silence_with_reconnect_reconnects_and_marks_the_gap():
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port, silence_timeout=0.3, reconnect=True)
        amp.start()
        data1, m1 = collect(amp, 100)
        sim.mute()
        wait_for(lambda: amp.reconnects >= 1)
        sim.unmute()
        data2, m2 = collect(amp, 200)
        amp.stop()
    data = np.concatenate([data1, data2])
    markers = m1 + [(r + len(data1), t) for r, t in m2]
    counter = np.round(data[:, 0] / RES[0]).astype(int)
    (jump,) = np.flatnonzero(np.diff(counter) != 1) + 1
    lost = counter[jump] - counter[jump - 1] - 1
    assert lost >= 0.25 * FS
    assert (jump, GAP_MARKER.format(n=lost)) in markers
    check_run(sim, data, markers, row0=jump)


def test_markers_past_their_block_are_delivered_on_its_last_sample(caplog):
    block = np.arange(30, dtype=np.float32).reshape(10, 3)
    far = rda.RDAMarker(4_000_000_000, "Stimulus", "far")
    messages = [
        rda.encode_start(["A", "B", "C"], 1000.0, [1.0] * 3),
        rda.encode_data(0, block, [rda.RDAMarker(3, "Stimulus", "S  1"), far]),
        rda.encode_data(1, np.zeros((0, 3), np.float32), [rda.RDAMarker(7, "Stimulus", "empty")]),
        rda.encode_data(2, block, []),
    ]
    listener, server = serve_once(messages)
    with listener, server, ampkit.get_amp("rda", port=listener.getsockname()[1]) as amp:
        amp.start(marker_port=None)
        rows, got = 0, []
        for _ in range(30):
            b = amp.get_block()
            got += [(rows + r, text) for r, text in b.marker_samples()]
            rows += len(b)
            if rows >= 20:
                break
        amp.stop()
    assert got == [(3, "Stimulus/S  1"), (9, "Stimulus/far"), (10, "Stimulus/empty")]
    assert "'Stimulus/far' at position 4000000000 of block 0" in caplog.text


def test_a_start_message_with_an_infinite_rate_is_refused_and_leaves_nothing(tmp_path):
    messages = [rda.encode_start(["A"], 5e-324, [1.0])]
    listener, server = serve_once(messages)
    port = listener.getsockname()[1]
    threads = set(threading.enumerate())
    with listener, server:
        amp = ampkit.get_amp("rda", port=port, timeout=3.0)
        with pytest.raises(ProtocolError, match=f"RDA 127.0.0.1:{port}: .*sampling interval"):
            amp.start(filename=str(tmp_path / "rec"), marker_port=0)
        amp.close()
    assert not amp.running
    assert list(tmp_path.iterdir()) == []
    wait_for(lambda: set(threading.enumerate()) <= threads)


def test_a_million_markers_in_one_message_take_seconds_not_minutes():
    # 300 000 markers took over 20 s (insertions one by one); now a few
    # hundred ms. The bound is a generous sanity bound, not a benchmark
    # (benchmarks/bench_rda_markers.py measures).
    n = 300_000
    block = np.zeros((10, 2), np.float32)
    marks = [rda.RDAMarker(i % 10, "S", "") for i in range(n)]
    messages = [rda.encode_start(["A", "B"], 1000.0, [1.0, 1.0]), rda.encode_data(0, block, marks)]
    listener, server = serve_once(messages)
    with listener, server, ampkit.get_amp("rda", port=listener.getsockname()[1]) as amp:
        amp.start(marker_port=None)
        got = []
        t0 = time.monotonic()
        while len(got) < n and time.monotonic() - t0 < 60:
            got += amp.get_data()[1]
        elapsed = time.monotonic() - t0
        amp.stop()
    assert len(got) == n
    assert [round(ms) for ms, _ in got[:3]] == [0, 0, 0]  # sorted by sample
    assert elapsed < 10.0


def test_blocks_left_unread_while_the_reader_was_held_up_are_no_silence():
    # Nobody reads the socket for twice the limit (as in a suspended
    # process) while the server streams on: the blocks waiting there are
    # read, not taken for a silence.
    with make_sim() as sim, RDAAmp() as amp:
        amp.configure(port=sim.port, silence_timeout=0.3)
        amp.start()
        collect(amp, 50)
        with amp._reader._lock:
            time.sleep(0.6)
        data, markers = collect(amp, 600)
        check_run(sim, data, markers)
        assert amp.gap_count == 0
        amp.stop()
