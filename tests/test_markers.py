"""Network markers: real TCP/UDP sockets on 127.0.0.1, a real receiving process."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ampkit
from ampkit import marker_stamper
from ampkit.errors import (
    AmpkitError,
    AmpNotAvailableError,
    ConfigurationError,
    ConnectionLostError,
)
from ampkit.marker_stamper import LineFramer, RecordDecoder, encode_record, split_datagram
from ampkit.markers import MarkerClient, MarkerServers, default_port, send_marker
from ampkit.worker import Worker

# (stamping, kernel_stamps): the default, the thread fallback, and the portable
# path that stamps on reading (macOS, Windows) tried on this machine too.
MODES = [("process", True), ("thread", True), ("process", False)]


class Inbox:
    """A thread-safe deliver() callback that records (text, stamp)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def __call__(self, text: str, stamp: float) -> None:
        with self.lock:
            self.items.append((text, stamp))

    def texts(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.items]

    def wait_for(self, *texts: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.texts()
            if all(t in got for t in texts):
                return
            time.sleep(0.01)
        raise AssertionError(f"missing {set(texts) - set(self.texts())}; got {self.texts()}")


@pytest.fixture(params=MODES, ids=["process", "thread", "process-user-stamps"])
def servers(request):
    inbox = Inbox()
    stamping, kernel = request.param
    with MarkerServers(inbox, port=0, stamping=stamping, kernel_stamps=kernel,
                       max_clients=32) as srv:
        srv.inbox = inbox
        yield srv


def tcp(srv) -> tuple[str, int]:
    return srv.addresses["tcp"]


def udp(srv) -> tuple[str, int]:
    return srv.addresses["udp"]


def raw_tcp(srv) -> socket.socket:
    return socket.create_connection(tcp(srv), timeout=5)


def read_blocks(amp, until, timeout: float = 15.0) -> list:
    """get_block() until ``until(markers so far)`` holds; return all blocks."""
    blocks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blocks.append(amp.get_block())
        if until([m for b in blocks for m in b.markers]):
            return blocks
        time.sleep(0.005)
    raise AssertionError(f"timed out; markers: {[m for b in blocks for m in b.markers]}")


# -- framing (sans-I/O) ------------------------------------------------------


def test_framer_basics():
    f = LineFramer(8)
    assert f.feed(b"S 1\r\nS ") == [("S 1", None)]
    assert f.pending == 2
    assert f.feed(b"2\n\n\r\n") == [("S 2", None)]
    assert f.feed("ü\n".encode()) == [("ü", None)]
    [(text, problem)] = f.feed(b"\xff\xfe\n")
    assert text is None and "UTF-8" in problem
    [(text, problem)] = f.feed(b"a\0b\n")
    assert text is None and "NUL" in problem
    [(text, problem)] = f.feed(b"123456789\n")
    assert text is None and "max_line=8" in problem
    # A line that never ends is dropped as soon as it is too long, then the
    # framer finds its feet at the next line end.
    [(text, problem)] = f.feed(b"x" * 100)
    assert text is None and "max_line" in problem and f.pending == 0
    assert f.feed(b"y" * 1000) == [] and f.pending == 0
    assert f.feed(b"zz\nok\n") == [("ok", None)]
    # Exactly max_line bytes, with \r\n split across reads, is accepted.
    assert f.feed(b"12345678\r") == []
    assert f.feed(b"\n") == [("12345678", None)]


def test_datagrams_hold_lines_with_an_optional_last_terminator():
    assert split_datagram(b"S 1", 1024) == [("S 1", None)]
    assert split_datagram(b"S 1\n", 1024) == [("S 1", None)]
    assert split_datagram(b"a\r\nb\nc", 1024) == [("a", None), ("b", None), ("c", None)]
    assert split_datagram(b"", 1024) == []
    [(_, problem), ok] = split_datagram(b"\xc3\x28\nfine", 1024)
    assert "UTF-8" in problem and ok == ("fine", None)


line_bytes = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.text(max_size=20).map(lambda s: s.replace("\n", "").encode()),
    st.sampled_from([b"", b"\r", b"S 1\r", b"x" * 33, b"x" * 32 + b"\r", b"a\0"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(line_bytes, max_size=12), st.data())
def test_framing_does_not_depend_on_how_the_stream_is_cut(lines, data):
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    whole = LineFramer(32).feed(stream)
    framer = LineFramer(32)
    pieces = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        pieces += framer.feed(stream[start:end])
    # Same markers, same number of problems, whatever the cuts.
    assert [t for t, _ in pieces] == [t for t, _ in whole]
    assert framer.pending == 0
    # And the markers are exactly the good lines.
    expected = []
    for line in lines:
        raw = line[:-1] if line.endswith(b"\r") else line
        if not raw:
            continue
        try:
            good = len(raw) <= 32 and b"\0" not in raw and raw.decode("utf-8")
        except UnicodeDecodeError:
            good = None
        expected.append(good or None)
    assert [t for t, _ in whole] == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 64))
def test_framer_survives_any_bytes_and_bounds_its_buffer(blob, max_line):
    framer = LineFramer(max_line)
    for i in range(0, len(blob), 97):
        for text, problem in framer.feed(blob[i:i + 97]):
            assert (text is None) != (problem is None)
            if text is not None:
                assert "\n" not in text and "\0" not in text
                assert len(text.encode()) <= max_line
        assert framer.pending <= max_line + 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([b"M", b"L", b"R", b"E"]), st.floats(allow_nan=False),
                       st.text(max_size=50)), max_size=20),
    st.integers(1, 40),
)
def test_pipe_records_round_trip_in_any_chunks(records, step):
    blob = b"".join(encode_record(*r) for r in records)
    decoder = RecordDecoder()
    out = []
    for i in range(0, len(blob), step):
        out += decoder.feed(blob[i:i + step])
    assert [(k, v) for k, v, _ in out] == [(k, v) for k, v, _ in records]
    assert [p for _, _, p in out] == [p.encode("utf-8", "backslashreplace").decode() for
                                      _, _, p in records]


# -- servers -------------------------------------------------------------------


def test_tcp_and_udp_markers_are_stamped_when_sent(servers):
    sent = {}
    sent["t1"] = send_marker("t1", *tcp(servers))
    sent["u1"] = send_marker("u1", *udp(servers), protocol="udp")
    with MarkerClient(*tcp(servers)) as client:
        for i in range(5):
            sent[f"t{i + 2}"] = client.send(f"t{i + 2}")
            time.sleep(0.002)
    servers.inbox.wait_for(*sent)
    stamps = dict(servers.inbox.items)
    assert sorted(stamps) == sorted(sent)
    for text, t_sent in sent.items():
        # Causal (kernel times converted to local_clock correctly) and prompt.
        assert t_sent - 1e-4 <= stamps[text] <= t_sent + 1.0, text
    expected = "kernel" if servers.kernel_stamps else "user"
    assert servers.stamp_source == expected


def test_lines_split_across_reads_and_crlf_and_multi_line_datagrams(servers):
    with raw_tcp(servers) as sock:
        sock.sendall("Stim ü".encode()[:-1])
        time.sleep(0.05)
        sock.sendall("Stim ü".encode()[-1:] + b"\r\nB\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"d1\nd2\r\nd3", udp(servers))
    servers.inbox.wait_for("Stim ü", "B", "d1", "d2", "d3")
    assert sorted(servers.inbox.texts()) == sorted(["Stim ü", "B", "d1", "d2", "d3"])


def test_concurrent_clients_deliver_every_marker_once(servers):
    def sender(k):
        with MarkerClient(*tcp(servers)) as client:
            for i in range(100):
                client.send(f"c{k} {i}")

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    with MarkerClient(*udp(servers), protocol="udp") as client:
        for i in range(50):
            client.send(f"u {i}")
            time.sleep(0.001)
    for t in threads:
        t.join()
    expected = [f"c{k} {i}" for k in range(8) for i in range(100)]
    servers.inbox.wait_for(*expected)
    got = servers.inbox.texts()
    tcp_got = [t for t in got if t.startswith("c")]
    assert sorted(tcp_got) == sorted(expected)  # none lost, none twice
    for k in range(8):  # and each client's markers in its order
        assert [t for t in tcp_got if t.startswith(f"c{k} ")] == [f"c{k} {i}" for i in range(100)]
    assert len([t for t in got if t.startswith("u ")]) >= 45  # UDP on loopback: all, normally


def test_bad_input_is_logged_with_the_peer_and_good_markers_still_arrive(servers, caplog):
    caplog.set_level(logging.WARNING, logger="ampkit")
    with raw_tcp(servers) as bad, raw_tcp(servers) as good:
        port = bad.getsockname()[1]
        bad.sendall(b"x" * 5000 + b"\n")  # too long
        bad.sendall(b"\xff\xfe bad\n")  # invalid UTF-8
        bad.sendall(b"nul\0here\n")  # NUL byte
        bad.sendall(b"after bad\n")  # the same client recovers
        good.sendall(b"good 1\n")
        bad.sendall(b"y" * 20000)  # never terminated
        time.sleep(0.1)
        good.sendall(b"good 2\n")
        servers.inbox.wait_for("good 1", "after bad", "good 2")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"z" * 3000, udp(servers))
        sock.sendto(b"\xc3\x28", udp(servers))
        sock.sendto(b"good 3", udp(servers))
        udp_port = sock.getsockname()[1]
    servers.inbox.wait_for("good 3")
    assert sorted(servers.inbox.texts()) == ["after bad", "good 1", "good 2", "good 3"]
    deadline = time.monotonic() + 10
    peer = f"tcp 127.0.0.1:{port}"
    while time.monotonic() < deadline:
        lines = [r.getMessage() for r in caplog.records if peer in r.getMessage()]
        if len(lines) >= 4:
            break
        time.sleep(0.05)
    assert any("max_line" in m for m in lines), lines
    assert any("UTF-8" in m for m in lines), lines
    assert any("NUL" in m for m in lines), lines
    assert sum("max_line" in m for m in lines) == 2, lines  # 5000 bytes; then the endless one
    udp_lines = [r.getMessage() for r in caplog.records if f"udp 127.0.0.1:{udp_port}" in
                 r.getMessage()]
    assert len(udp_lines) == 2, udp_lines


def test_idle_and_flooding_connections_do_not_lock_anyone_out(servers, caplog):
    caplog.set_level(logging.WARNING, logger="ampkit")
    # A regular client that has sent a marker keeps its place...
    regular = MarkerClient(*tcp(servers))
    regular.send("regular 1")
    servers.inbox.wait_for("regular 1")
    # ... while thousands of connections that never send come and go
    # (max_clients is 32 here).
    idle = []
    for _ in range(1500):
        sock = socket.socket()
        sock.settimeout(5)
        sock.connect(tcp(servers))
        idle.append(sock)
        if len(idle) > 200:
            idle.pop(0).close()
    newcomer = MarkerClient(*tcp(servers))
    newcomer.send("newcomer")
    regular.send("regular 2")
    servers.inbox.wait_for("regular 2", "newcomer")
    for sock in idle:
        sock.close()
    regular.close()
    newcomer.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("max_clients" in m and "tcp 127.0.0.1:" in m for m in messages)
    # The flood is summarised, not logged line by line forever.
    assert len(messages) < 200


def test_stop_is_prompt_with_connected_and_half_sent_clients():
    inbox = Inbox()
    srv = MarkerServers(inbox, port=0).start()
    socks = [socket.create_connection(srv.addresses["tcp"]) for _ in range(5)]
    socks[0].sendall(b"half a line")
    t0 = time.monotonic()
    srv.close()
    assert time.monotonic() - t0 < 5
    assert srv.addresses == {}
    for s in socks:
        s.close()


def test_a_dead_receiving_process_is_reported():
    srv = MarkerServers(Inbox(), port=0, stamping="process").start()
    srv._proc.kill()
    deadline = time.monotonic() + 10
    with pytest.raises(ConnectionLostError, match="ended unexpectedly"):
        while time.monotonic() < deadline:
            srv.on_block(None)
            time.sleep(0.01)
    srv.close()


def test_busy_port_is_a_clear_error():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    with holder, pytest.raises(ConfigurationError) as info:
        MarkerServers(Inbox(), port=port).start()
    assert str(port) in str(info.value) and "marker_port=0" in str(info.value)
    assert "marker_port=None" in str(info.value)


def test_bad_options_are_configuration_errors():
    for kwargs in ({"port": -1}, {"port": "12344"}, {"port": True}, {"max_line": 0},
                   {"host": ""}, {"stamping": "fork"}):
        with pytest.raises(ConfigurationError):
            MarkerServers(Inbox(), **kwargs)
    with pytest.raises(ConfigurationError, match="resolve"):
        MarkerServers(Inbox(), host="no.such.host.invalid", port=0).start()


def test_default_port_and_its_environment_variable(monkeypatch):
    monkeypatch.delenv("AMPKIT_MARKER_PORT", raising=False)
    assert default_port() == 12344
    monkeypatch.setenv("AMPKIT_MARKER_PORT", "off")
    assert default_port() is None
    monkeypatch.setenv("AMPKIT_MARKER_PORT", "4000")
    assert default_port() == 4000
    monkeypatch.setenv("AMPKIT_MARKER_PORT", "lots")
    with pytest.raises(ConfigurationError, match="AMPKIT_MARKER_PORT"):
        default_port()


# -- client --------------------------------------------------------------------


def test_client_errors_are_clear():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(AmpNotAvailableError, match=str(free)):
        send_marker("S 1", port=free)
    for bad in ("two\nlines", "", "nul\0", 5):
        with pytest.raises(ConfigurationError):
            send_marker(bad, port=free)
    with pytest.raises(ConfigurationError):
        MarkerClient(port=free, protocol="sctp")


def test_persistent_client_survives_a_server_restart():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    with MarkerServers(inbox, port=port) as srv:
        client = MarkerClient(*srv.addresses["tcp"])
        client.send("before")
        inbox.wait_for("before")
    # Rebinding the same port right after close works (connections in TIME_WAIT).
    with MarkerServers(inbox, port=port):
        time.sleep(0.1)  # the old connection's end has reached the client
        client.send("after")  # not lost in the dead connection: reconnects
        inbox.wait_for("after")
    client.close()


# -- through the decorator -------------------------------------------------------


def test_markers_land_at_their_sample_in_get_data_and_get_block():
    amp = ampkit.get_amp("random", fs=1000, channels=3)
    amp.start(marker_port=0)
    addresses = amp.marker_addresses
    assert set(addresses) == {"tcp", "udp"} and addresses["tcp"][0] == "127.0.0.1"
    reads = []  # (markers as get_data gives them, the block's sample times)

    def get_data():
        data, markers = amp.get_data()
        times = np.array(amp.amp.get_timestamps())  # the random driver's exact sample times
        assert len(times) == len(data)
        reads.append((markers, times))

    try:
        get_data()
        sent = {}
        for i in range(10):
            sent[f"T{i}"] = send_marker(f"T{i}", *addresses["tcp"])
            sent[f"U{i}"] = send_marker(f"U{i}", *addresses["udp"], protocol="udp")
            for _ in range(3):
                get_data()
                time.sleep(0.004)
        deadline = time.monotonic() + 15
        while sum(len(m) for m, _ in reads) < len(sent) and time.monotonic() < deadline:
            get_data()
            time.sleep(0.005)
        # get_block gives the same markers with absolute times.
        last = send_marker("last", *addresses["tcp"])
        blocks = read_blocks(amp, lambda ms: bool(ms))
    finally:
        amp.stop()
    seen = [text for markers, _ in reads for _, text in markers]
    assert sorted(seen) == sorted(sent)  # each once
    period_ms = 1.0
    for markers, times in reads:
        for ms, text in markers:
            # libmushu semantics: ms after the block's first sample, never after its last.
            assert ms <= (times[-1] - times[0]) * 1000 + 1e-6
            t = times[0] + ms / 1000
            # ... and the time it stands for is when the marker was sent.
            assert sent[text] - 1e-4 <= t <= sent[text] + 1.0, (text, t - sent[text])
            if ms >= 0:
                row = int(np.searchsorted(times, t))  # first sample at or after it
                assert abs((times[row] - times[0]) * 1000 - ms) <= period_ms
    [(t, text)] = [m for b in blocks for m in b.markers]
    block = next(b for b in blocks if b.markers)
    assert text == "last" and last - 1e-4 <= t <= last + 1.0
    assert t <= block.timestamps[-1]
    [(row, _)] = block.marker_samples()
    assert block.timestamps[row] >= t or row == 0
    assert amp.marker_addresses == {}


def test_markers_arriving_after_a_block_go_into_the_next_one_never_twice():
    amp = ampkit.get_amp("random", fs=500, channels=2)
    amp.start(marker_port=0)
    port = amp.marker_addresses["tcp"][1]
    names = [f"m{i}" for i in range(60)]
    try:
        with MarkerClient(port=port) as client:
            blocks = []
            for name in names:
                client.send(name)
                blocks.append(amp.get_block())
        blocks += read_blocks(amp, lambda ms: len(ms) + sum(len(b.markers) for b in blocks)
                              >= len(names))
    finally:
        amp.stop()
    seen = [text for b in blocks for _, text in b.markers]
    assert seen == names
    # Every block's markers are within it or before its first sample (never later).
    for b in blocks:
        for t, _ in b.markers:
            assert t <= b.timestamps[-1]


def test_marker_port_none_and_default_port_option(monkeypatch):
    amp = ampkit.get_amp("random", fs=100, channels=1)
    amp.start(marker_port=None)
    assert amp.marker_addresses == {}
    amp.stop()
    with pytest.raises(ConfigurationError):
        amp.start(marker_port=-5)
    assert not amp.running
    with pytest.raises(ConfigurationError, match="marker_limits"):
        amp.start(marker_port=0, marker_limits={"max_lines": 3})
    amp.start(marker_port=0, marker_limits={"max_line": 4})
    try:
        send_marker("12345", *amp.marker_addresses["udp"], protocol="udp")
        send_marker("1234", *amp.marker_addresses["udp"], protocol="udp")
        blocks = read_blocks(amp, lambda ms: bool(ms))
        assert [t for b in blocks for _, t in b.markers] == ["1234"]
    finally:
        amp.stop()


def test_sequential_starts_on_one_fixed_port_rebind_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    amp = ampkit.get_amp("random", fs=200, channels=1)
    for round_ in range(3):
        amp.start(marker_port=port)
        try:
            assert amp.marker_addresses["tcp"] == ("127.0.0.1", port)
            send_marker(f"round {round_}", port=port)
            blocks = read_blocks(amp, lambda ms: bool(ms))
            assert [t for b in blocks for _, t in b.markers] == [f"round {round_}"]
        finally:
            amp.stop()


# -- command line ----------------------------------------------------------------


def test_ampkit_marker_command():
    inbox = Inbox()
    with MarkerServers(inbox, port=0) as srv:
        port = str(srv.addresses["tcp"][1])
        env = dict(os.environ)
        for args in (["S 1"], ["S 2", "--udp"]):
            out = subprocess.run(
                [sys.executable, "-m", "ampkit.cli", "marker", *args, "--port", port,
                 "--host", "127.0.0.1"],
                capture_output=True, text=True, timeout=60, env=env,
            )
            assert out.returncode == 0, out.stderr
        inbox.wait_for("S 1", "S 2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = str(s.getsockname()[1])
    out = subprocess.run(
        [sys.executable, "-m", "ampkit.cli", "marker", "S 3", "--port", free],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2 and free in out.stderr


def test_receiver_process_exits_when_its_parent_dies():
    # The child ends when its stdin closes, which is also what a crash of the
    # acquiring process does: no orphaned process keeps the port.
    code = (
        "import time; from ampkit.markers import MarkerServers;"
        "s = MarkerServers(lambda t, s: None, port=0, stamping='process').start();"
        "print(s._proc.pid, s.addresses['tcp'][1], flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid, port = map(int, parent.stdout.readline().split())
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("receiving process outlived its parent")
    # And the port is free again.
    srv = MarkerServers(Inbox(), port=port).start()
    srv.close()


def test_kernel_stamps_are_used_on_linux():
    if not marker_stamper.kernel_stamps_supported():
        pytest.skip("no kernel receive timestamps on this platform")
    inbox = Inbox()
    with MarkerServers(inbox, port=0) as srv:
        assert srv.stamp_source == "kernel"
        # A marker that waits in the socket is stamped when it arrived, not
        # when it is read: stall the receiving process, send, resume.
        os.kill(srv._proc.pid, 19)  # SIGSTOP
        try:
            sent = send_marker("while stalled", *srv.addresses["udp"], protocol="udp")
            time.sleep(0.3)
        finally:
            os.kill(srv._proc.pid, 18)  # SIGCONT
        inbox.wait_for("while stalled")
        [(_, stamp)] = inbox.items
        assert sent - 1e-4 <= stamp < sent + 0.2
    assert np.isfinite(stamp)


def test_start_failure_of_the_receiver_is_raised(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(AmpkitError, match="receiving process"):
        MarkerServers(Inbox(), port=0, stamping="process").start()


def test_markers_land_at_their_sample_in_a_recording(tmp_path):
    mne = pytest.importorskip("mne")
    from ampkit.io import read

    amp = ampkit.get_amp("random", fs=1000, channels=2)
    base = tmp_path / "rec"
    amp.start(filename=str(base), marker_port=0)
    times = []
    names = {}
    try:
        for i in range(6):
            proto = "tcp" if i % 2 else "udp"
            names[f"S {i}"] = send_marker(f"S {i}", *amp.marker_addresses[proto], protocol=proto)
            for _ in range(4):
                times.append(amp.get_block().timestamps)
                time.sleep(0.005)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and amp.n_markers < len(names):
            times.append(amp.get_block().timestamps)
            time.sleep(0.005)
        times.append(amp.get_block().timestamps)
    finally:
        amp.stop()
    stamps = np.concatenate(times)
    rec = read(str(base))
    got = {text: sample for sample, _, text in rec.markers}
    assert sorted(got) == sorted(names)
    for text, sent in names.items():
        # The recorded sample is the first one at or after the marker's arrival,
        # which is right after it was sent.
        sample = got[text]
        assert stamps[sample] >= sent - 1e-4
        assert sample == 0 or stamps[sample - 1] < stamps[sample]
        assert stamps[sample] - sent < 1.0
    # An independent reader agrees on the positions.
    raw = mne.io.read_raw_brainvision(str(base) + ".vhdr", preload=False, verbose="error")
    onsets = {d: round(o * raw.info["sfreq"]) for o, d in
              zip(raw.annotations.onset, raw.annotations.description, strict=True)}
    for text, sample in got.items():
        matches = [s for d, s in onsets.items() if d.endswith(text)]
        assert matches == [sample], (text, onsets)


def test_realtime_scheduling_is_reported_and_can_be_declined():
    inbox = Inbox()
    with MarkerServers(inbox, port=0, stamping="process", realtime=False) as srv:
        send_marker("x", *srv.addresses["tcp"])
        inbox.wait_for("x")  # the ready record comes before any marker
        assert srv.realtime is False
    allowed = subprocess.run(
        [sys.executable, "-c", "from ampkit.marker_stamper import try_realtime as t; "
         "print(t())"], capture_output=True, text=True, timeout=60,
    ).stdout.strip() == "True"
    inbox = Inbox()
    with MarkerServers(inbox, port=0, stamping="process") as srv:
        send_marker("y", *srv.addresses["tcp"])
        inbox.wait_for("y")
        assert srv.realtime is allowed


def _udp_port_with_free_tcp_twin() -> tuple[socket.socket, int]:
    """A bound UDP socket whose port is free for TCP (so TCP binds, UDP fails)."""
    for _ in range(50):
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:  # another program has this port for TCP: pick again
            holder.close()
            continue
        finally:
            probe.close()
        return holder, port
    raise AssertionError("no UDP port with a free TCP twin")


def test_a_busy_marker_port_leaves_no_recording_behind(tmp_path):
    holder, port = _udp_port_with_free_tcp_twin()
    amp = ampkit.get_amp("random", fs=100, channels=1)
    with holder, pytest.raises(ConfigurationError, match=f"{port} \\(udp\\)"):
        amp.start(filename=str(tmp_path / "rec"), marker_port=port)
    assert list(tmp_path.iterdir()) == []
    assert not amp.running


def test_ipv6_loopback():
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    inbox = Inbox()
    with MarkerServers(inbox, host="::1", port=0) as srv:
        assert srv.addresses["tcp"][0] == "::1"
        send_marker("six", "::1", srv.addresses["tcp"][1])
        send_marker("six udp", "::1", srv.addresses["udp"][1], protocol="udp")
        inbox.wait_for("six", "six udp")


def test_record_command_takes_marker_options():
    from ampkit.cli import main

    assert main(["record", "random", "-c", "fs=100", "-d", "0.3", "--marker-port", "0"]) == 0
    assert main(["record", "random", "-c", "fs=100", "-d", "0.3", "--marker-port", "off"]) == 0
    assert main(["record", "random", "-d", "0.3", "--marker-port", "x"]) == 2


@pytest.fixture(scope="module")
def live():
    inbox = Inbox()
    with MarkerServers(inbox, port=0, stamping="thread", max_line=16) as srv:
        srv.inbox = inbox
        yield srv


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=400), st.data())
def test_a_live_server_frames_any_byte_stream_like_the_codec(live, blob, data):
    blob += b"\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=5)))
    expected = [t for t, _ in LineFramer(16).feed(blob) if t is not None]
    with live.inbox.lock:
        live.inbox.items.clear()
    with raw_tcp(live) as sock:
        for start, end in zip([0, *cuts], [*cuts, len(blob)], strict=True):
            sock.sendall(blob[start:end])
        sock.sendall(b"END-7f3a\n")
        live.inbox.wait_for("END-7f3a")
    assert live.inbox.texts()[:-1] == expected


def test_a_flood_of_bad_lines_is_logged_in_a_bounded_burst(caplog):
    caplog.set_level(logging.WARNING, logger="ampkit")
    inbox = Inbox()
    with MarkerServers(inbox, port=0) as srv, raw_tcp(srv) as sock:
        sock.sendall(b"bad\0line\n" * 500 + b"fine\n")
        inbox.wait_for("fine")
        peer = f"tcp 127.0.0.1:{sock.getsockname()[1]}"
        time.sleep(0.2)  # log records travel beside the markers
    lines = [r for r in caplog.records if peer in r.getMessage()]
    assert len(lines) == 50  # the rest are counted, summarised in the next window
    assert inbox.texts() == ["fine"]


# -- no marker lost without a word (issue 14) ------------------------------------------


needs_drop_counts = pytest.mark.skipif(
    not marker_stamper.kernel_stamps_supported(),
    reason="the kernel's count of dropped datagrams (SO_RXQ_OVFL) is read on Linux only",
)


@needs_drop_counts
@pytest.mark.parametrize("kernel_stamps", [True, False])
def test_datagrams_the_kernel_drops_are_counted_exactly(kernel_stamps):
    # A socket buffer of a few KB that nobody reads while 2000 datagrams
    # come: most are dropped by the kernel, and every one is accounted for.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    inbox, dropped = Inbox(), []
    stop = threading.Event()
    sink = marker_stamper.CallbackSink(inbox, "test", dropped.append)
    receiver = marker_stamper.Receiver(tcp, udp, sink, stop_event=stop,
                                       kernel_stamps=kernel_stamps)
    assert receiver.counts_drops
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(2000):
            sender.sendto(f"m{i}\n".encode(), udp.getsockname())
        sender.sendto(b"last\n", udp.getsockname())  # may be dropped too
        with Worker(lambda _: receiver.run(), "receiver"):
            deadline = time.monotonic() + 10
            while len(inbox.texts()) + sum(dropped) < 2001 and time.monotonic() < deadline:
                time.sleep(0.01)
            stop.set()
    assert sum(dropped) > 0
    assert len(inbox.texts()) + sum(dropped) == 2001
    assert receiver.udp_dropped == sum(dropped)


def test_a_child_whose_parent_does_not_read_drops_counts_and_reports():
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    written = bytearray()

    def drain():
        try:
            while chunk := os.read(read_end, 1 << 20):
                written.extend(chunk)
        except BlockingIOError:
            pass

    try:
        sink = marker_stamper.PipeSink(write_end, max_pending=1000)
        for i in range(5000):  # ~150 KB: more than the pipe and the 1000 bytes held
            sink.marker(1.0, f"marker {i:05d}")
            if i % 10 == 0:
                sink.flush()
        assert len(sink._out) <= 1000 + 100 and sink._lost > 0
        for _ in range(100):  # the parent reads again
            drain()
            if sink.flush() and not sink._lost:
                break
        drain()
    finally:
        os.close(read_end)
        os.close(write_end)
    records = RecordDecoder().feed(bytes(written))
    markers = [r for r in records if r[0] == marker_stamper.MARKER]
    lost = sum(int(r[1]) for r in records if r[0] == marker_stamper.DROPPED)
    assert lost > 0 and len(markers) + lost == 5000
    assert [int(r[2].split()[-1]) for r in markers] == sorted(int(r[2].split()[-1])
                                                            for r in markers)
    assert any(r[0] == marker_stamper.LOG and f"{lost} markers dropped" in r[2]
               for r in records)


@needs_drop_counts
def test_a_udp_flood_without_get_data_is_bounded_and_every_loss_is_shown(caplog):
    # 288 000 markers queued (+60 MB) while the application did not read,
    # and 1-3 % of a burst vanished in the kernel without a word.
    sent = 30_000
    with ampkit.get_amp("random", fs=100, channels=2) as amp:
        amp.start(marker_port=0, marker_backlog=1000)
        address = amp.marker_addresses["udp"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(sent):
                sender.sendto(f"u{i}\n".encode(), address)
        time.sleep(0.5)  # nobody reads: the queue fills and stops at its bound
        assert len(amp._inbox) <= 1000
        got, marked, quiet = [], 0, time.monotonic()
        # Drops after the last datagram read are asked for once a second.
        while time.monotonic() - quiet < 2.5:
            block = amp.get_block()
            for _, text in block.markers:
                quiet = time.monotonic()
                if text.startswith("ampkit/markers-dropped "):
                    marked += int(text.split()[-1])
                elif not text.startswith("ampkit/"):
                    got.append(text)
        amp.stop()
        lost = amp.status()["markers_dropped"]
    assert len(got) + lost == sent  # each marker delivered or counted
    assert marked == lost  # and each loss marked in the data
    assert len(got) <= 1000 + 200  # a few hundred more may arrive while reading
    assert "markers lost" in caplog.text
