"""Tests of the RDA server simulator (ampkit.sim.rda) with a plain socket client."""

import logging
import socket
import time

import numpy as np
import pytest

from ampkit.errors import ConfigurationError, ProtocolError, StateError
from ampkit.protocols import rda
from ampkit.sim.rda import COUNTER_MODULUS, PREAMBLE, RDASimulator


class Client:
    """A bare RDA client: a socket and the codec's parser."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser = rda.RDAParser()
        self.pending = []

    def next(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.pending:
            assert time.monotonic() < deadline, "no message in time"
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None  # closed by the server
            self.pending += self.parser.feed(chunk)
        return self.pending.pop(0)

    def data(self, n, timeout=5.0):
        out = []
        while len(out) < n:
            msg = self.next(timeout)
            if isinstance(msg, rda.DataMessage):
                out.append(msg)
        return out

    def close(self):
        self.sock.close()


def test_port_zero_context_manager_and_restart_on_the_same_port():
    sim = RDASimulator(port=0, channels=2)
    assert not sim.running
    with sim:
        assert sim.running and sim.port > 0 and sim.address == ("127.0.0.1", sim.port)
        with pytest.raises(StateError):
            sim.start()
        port = sim.port
    assert not sim.running
    sim.start()  # again, on the same port
    try:
        assert sim.port == port
        c = Client(port)
        assert isinstance(c.next(), rda.StartMessage)
        c.close()
    finally:
        sim.close()


def test_default_ports_follow_the_data_type():
    assert RDASimulator().port == rda.PORT_FLOAT32 == 51244
    assert RDASimulator(dtype="int16").port == rda.PORT_INT16 == 51234


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_stream_is_the_documented_signal(dtype):
    with RDASimulator(
        port=0, channels=["A", "B", "C"], fs=2000, block_size=16, dtype=dtype,
        resolution=[0.1, 0.5, 2.0], marker_rate=100, preamble=True,
    ) as sim:
        c = Client(sim.port)
        for expected in PREAMBLE:
            assert c.next() == expected
        start = c.next()
        assert start.channels == ["A", "B", "C"] and start.fs == 2000
        np.testing.assert_array_equal(start.resolutions, [0.1, 0.5, 2.0])
        blocks = c.data(20)
        c.close()
    first = blocks[0].block
    assert [b.block for b in blocks] == list(range(first, first + 20))
    for b in blocks:
        assert b.data.dtype == np.dtype(dtype) and b.points == 16
        np.testing.assert_array_equal(b.data, sim.samples(b.block * 16, 16))
        assert b.markers == sim.markers(b.block * 16, 16)
    markers = [m for b in blocks for m in b.markers]
    assert len(markers) >= 5
    assert all(m.text.startswith("Stimulus/S ") for m in markers)
    # Markers every 20 samples (100/s at 2 kHz), on those samples.
    ks = [b.block * 16 + m.position for b in blocks for m in b.markers]
    assert all(k % 20 == 0 for k in ks) and np.all(np.diff(ks) == 20)


def test_realtime_pacing_and_joining_mid_recording():
    with RDASimulator(port=0, channels=1, fs=1000, block_size=10) as sim:
        time.sleep(0.3)
        c = Client(sim.port)
        c.next()
        t0 = time.monotonic()
        first = c.data(1)[0].block
        assert first >= 10  # the recording ran before the client came
        blocks = c.data(30)
        elapsed = time.monotonic() - t0
        c.close()
    # 31 blocks of 10 ms: at least 0.25 s (no burst), generous upper bound.
    assert 0.25 < elapsed < 5.0
    assert blocks[-1].block == first + 30


def test_stop_start_restart_drop_and_keepalive():
    with RDASimulator(port=0, channels=2, fs=1000, block_size=10, keepalive_every=2) as sim:
        c = Client(sim.port)
        c.next()
        seen = []
        while len([m for m in seen if isinstance(m, rda.UnknownMessage)]) < 2:
            seen.append(c.next())
        assert rda.UnknownMessage(10000) in seen
        sim.drop_blocks(3)
        before = c.data(1)[0].block
        after = c.data(1)[0].block
        assert after - before in (1, 4)
        if after - before == 1:  # the drop came after these two blocks
            assert c.data(1)[0].block - after in (1, 4)
        sim.stop_recording()
        while not isinstance(msg := c.next(), rda.StopMessage):
            assert isinstance(msg, rda.DataMessage | rda.UnknownMessage)
        late = Client(sim.port)  # joins while stopped: gets nothing yet
        time.sleep(0.1)
        assert sim.clients == 2
        sim.start_recording(channels=["X", "Y", "Z"], fs=500)
        for client in (c, late):
            start = client.next()
            assert start.channels == ["X", "Y", "Z"] and start.fs == 500
            block = client.data(1)[0]
            assert block.data.shape[1] == 3
        assert sim.blocks_dropped == 3
        sim.restart()
        while not isinstance(c.next(), rda.StopMessage):
            pass
        assert isinstance(c.next(), rda.StartMessage)
        assert c.data(1)[0].block < 5  # the counter starts again
        c.close()
        late.close()


def test_cut_closes_clients_and_keeps_listening():
    with RDASimulator(port=0, channels=1) as sim:
        c = Client(sim.port)
        c.next()
        deadline = time.monotonic() + 5
        while sim.clients != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sim.cut()
        assert sim.clients == 0
        while (msg := c.next()) is not None:
            assert isinstance(msg, rda.DataMessage)
        c2 = Client(sim.port)
        assert isinstance(c2.next(), rda.StartMessage)
        c2.close()


def test_burst_mode_sends_only_to_a_client_and_fast():
    with RDASimulator(port=0, channels=4, fs=100, block_size=10, realtime=False) as sim:
        time.sleep(0.2)
        assert sim.blocks_sent == 0  # nobody listening: nothing produced
        c = Client(sim.port)
        c.next()
        t0 = time.monotonic()
        blocks = c.data(200)
        # 200 blocks of 0.1 s each would take 20 s in real time.
        assert time.monotonic() - t0 < 10
        assert [b.block for b in blocks] == list(range(200))
        c.close()


def test_a_client_that_does_not_read_is_dropped(caplog):
    caplog.set_level(logging.INFO, logger="ampkit")
    with RDASimulator(
        port=0, channels=256, fs=10000, block_size=500, send_timeout=0.2, realtime=False
    ) as sim:
        stuck = socket.create_connection(("127.0.0.1", sim.port))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        deadline = time.monotonic() + 10
        while "dropping client" not in caplog.text:
            assert time.monotonic() < deadline, "stuck client never dropped"
            time.sleep(0.05)
        assert sim.clients == 0
        c = Client(sim.port)  # others are still served
        c.next()
        assert len(c.data(3)) == 3
        c.close()
        stuck.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dtype": "float64"},
        {"channels": 0},
        {"channels": []},
        {"channels": "Fz"},
        {"channels": ["A\0B"]},
        {"fs": -1},
        {"block_size": 0},
        {"resolution": [1.0, 2.0], "channels": 3},
        {"resolution": 0},
        {"marker_rate": -1},
        {"port": 70000},
        {"port": "51244"},
        {"send_timeout": 0},
    ],
)
def test_bad_settings_raise_configuration_error(kwargs):
    with pytest.raises(ConfigurationError):
        RDASimulator(**kwargs)


def test_start_recording_rejects_unknown_changes():
    with RDASimulator(port=0, channels=2) as sim:
        with pytest.raises(ConfigurationError, match="cannot change"):
            sim.start_recording(host="0.0.0.0")


def test_cli_serves_until_duration_and_reports_a_busy_port():
    import subprocess
    import sys

    from ampkit.drivers.rda import RDAAmp

    cmd = [sys.executable, "-m", "ampkit.cli", "sim", "rda", "--port", "0", "--channels", "3",
           "--fs", "500", "--int16", "-d", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.split("127.0.0.1:")[1].split(":")[0])
        with RDAAmp() as amp:
            amp.configure(port=port)
            assert amp.get_channels() == ["Ch1", "Ch2", "Ch3"]
            assert amp.get_sampling_frequency() == 500
            amp.start()
            n = 0
            while n < 50:
                n += len(amp.get_data()[0])
            amp.stop()
            # The same port again: refused with a clear message, exit status 2.
            busy = subprocess.run(
                [sys.executable, "-m", "ampkit.cli", "sim", "rda", "--port", str(port)],
                capture_output=True, text=True, timeout=30,
            )
        assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "sent" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_is_prompt_with_a_client_that_does_not_read():
    sim = RDASimulator(port=0, channels=256, fs=10000, block_size=500, realtime=False)
    sim.start()
    stuck = socket.create_connection(("127.0.0.1", sim.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(0.5)  # the simulator is now blocked sending to it
    t0 = time.monotonic()
    sim.stop()
    assert time.monotonic() - t0 < 2.0
    stuck.close()


def test_clock_skew_and_the_true_schedule():
    with pytest.raises(ConfigurationError, match="ppm"):
        RDASimulator(port=0, ppm=-20_000)
    with RDASimulator(port=0, channels=1, fs=1000, block_size=10, marker_rate=0,
                      ppm=5000) as sim:
        assert sim.true_rate == pytest.approx(1005.0)
        c = Client(sim.port)
        start = c.next()
        assert isinstance(start, rda.StartMessage) and start.fs == 1000.0  # says nominal
        blocks = c.data(40)
        got = time.perf_counter()
        c.close()
        first = blocks[0].block * 10
        last = blocks[-1].block * 10 + 9
        # Each block was sent when its last sample was due, not before.
        assert sim.sample_time(last) <= got
        assert np.diff(sim.sample_time([first, last])) == pytest.approx((last - first) / 1005.0)
        # The counter channel continues through the blocks.
        counts = np.concatenate([b.data[:, 0] for b in blocks])
        np.testing.assert_array_equal(counts, np.arange(first, last + 1) % COUNTER_MODULUS)


# -- the real world's faults (issue 14) ---------------------------------------------


def test_a_new_recordings_first_block_comes_in_the_start_messages_write():
    with RDASimulator(port=0, channels=2, fs=100.0, block_size=50) as sim:  # 0.5 s blocks
        sim.stop_recording()
        c = Client(sim.port)
        while sim.clients < 1:
            time.sleep(0.01)
        sim.start_recording()
        # One read: the start message and block 0, not half a second later.
        chunk = c.sock.recv(1 << 16)
        start, block = c.parser.feed(chunk)
        assert isinstance(start, rda.StartMessage) and block.block == 0
        np.testing.assert_array_equal(block.data, sim.samples(0, 50))
        assert c.data(1, timeout=2)[0].block == 1  # then at the paced rate
        c.close()
    with RDASimulator(port=0, channels=2, fs=100.0, block_size=50,
                      first_block_with_start=False) as sim:
        sim.stop_recording()
        c = Client(sim.port)
        while sim.clients < 1:
            time.sleep(0.01)
        sim.start_recording()
        assert isinstance(c.next(), rda.StartMessage) and not c.pending
        c.close()


@pytest.mark.parametrize("interval", [0.0, 0.05])
def test_mute_silences_the_data_and_keepalives_go_on(interval):
    with RDASimulator(port=0, channels=2, fs=1000.0, block_size=10,
                      keepalive_interval=interval) as sim:
        c = Client(sim.port)
        c.data(3)
        sim.mute()
        time.sleep(0.05)
        c.pending.clear()
        c.sock.settimeout(0.05)
        got, end = [], time.monotonic() + 0.4
        while time.monotonic() < end:
            try:
                got += c.parser.feed(c.sock.recv(1 << 16))
            except TimeoutError:
                pass
        assert not [m for m in got if isinstance(m, rda.DataMessage)]
        keepalives = [m for m in got if isinstance(m, rda.UnknownMessage) and m.type == 10000]
        assert (len(keepalives) >= 4) if interval else not keepalives
        sim.unmute()
        c.sock.settimeout(5)
        (first, second) = c.data(2)
        assert second.block == first.block + 1 and first.block > 40  # produced meanwhile
        c.close()


def test_garbage_reaches_every_client():
    with RDASimulator(port=0, channels=2) as sim:
        c = Client(sim.port)
        c.data(1)
        sim.send_garbage(b"not RDA at all")
        with pytest.raises(ProtocolError, match="GUID"):
            while True:
                c.next()
        c.close()


def test_keepalive_interval_is_checked():
    with pytest.raises(ConfigurationError, match="keepalive_interval"):
        RDASimulator(port=0, keepalive_interval=-1)
