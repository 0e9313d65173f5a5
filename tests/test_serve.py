"""``ampkit serve``, the Dareplane module, run as a real process and driven over TCP:
by dareplane-utils' own client code (as a control room does), and by raw sockets for
the framing edge cases and bad input."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import mne
import numpy as np
import pytest
from dareplane_utils.module_handling.communication import SocketCommunicator
from dareplane_utils.module_handling.launcher import ExeLauncher
from dareplane_utils.module_handling.module_connection import ModuleConnection

import ampkit
import ampkit.io
from ampkit.clock import local_clock
from ampkit.sim.rda import RDASimulator

COMMANDS = b"CONNECT|START|RECORD|STOPRECORD|MARKER|STATUS|STOP|CLOSE|GET_PCOMMS|UP"


def serve_args(*args):
    return [sys.executable, "-m", "ampkit.cli", "serve", *map(str, args), "--port", "0"]


def environment():
    # tests/conftest.py put LSLAPICFG (loopback only) and free marker ports in
    # os.environ; the module's process must have them too.
    env = {**os.environ}
    assert env["LSLAPICFG"].endswith("lsl-loopback.cfg") and env["AMPKIT_MARKER_PORT"] == "0"
    return env


def announced_port(proc):
    """The port from the line ``ampkit serve`` prints on stdout first."""
    line = proc.stdout.readline()
    assert " listening on 127.0.0.1:" in line, line
    return int(line.split("127.0.0.1:")[1].split()[0])


@contextlib.contextmanager
def serving(tmp_path, *args):
    """``ampkit serve ARGS --port 0`` in a process; yields (process, port, stderr file).
    stderr goes to a file, so that a chatty module never fills a pipe."""
    err_path = tmp_path / f"serve-{uuid.uuid4().hex[:8]}.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(serve_args(*args), stdout=subprocess.PIPE, stderr=err,
                                text=True, env=environment(), cwd=tmp_path)
    try:
        yield proc, announced_port(proc), err_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


class Client:
    """A raw TCP client of the module."""

    def __init__(self, port, greet=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        if greet:
            self.greeting = self.until(b"\n")

    def send(self, data):
        self.sock.sendall(data)

    def until(self, end):
        while end not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        i = self.buffer.index(end) + len(end)
        out, self.buffer = self.buffer[:i], self.buffer[i:]
        return out

    def status(self):
        self.send(b"STATUS;")
        return json.loads(self.until(b"\n"))

    def close(self):
        self.sock.close()


def lsl_read_until(amp, done, timeout=20.0):
    data, markers = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        block = amp.get_block()
        data.append(block.data)
        markers += block.markers
        if done(sum(len(d) for d in data), markers):
            break
    return np.concatenate(data), markers


def test_a_control_room_session_lsl_recording_markers(tmp_path):
    """What a control room does, with dareplane-utils' launcher and module connection:
    start the module, GET_PCOMMS, START (LSL), RECORD, MARKER, STATUS, STOPRECORD, STOP,
    CLOSE. The LSL stream is read by ampkit's lsl driver, the recording by MNE."""
    stream = f"ampkit-serve-{uuid.uuid4().hex}"
    launcher = ExeLauncher(
        exe_path=sys.executable, cwd=tmp_path,
        args=serve_args("sine", "-c", "fs=250", "-c", "channels=4", "-c", "f=5", "--no-log")[1:],
    )
    with open(tmp_path / "serve.err", "w") as err:
        proc = launcher.launch(stdout=subprocess.PIPE, stderr=err, text=True, env=environment())
    module = ModuleConnection("ampkit", launcher, SocketCommunicator("127.0.0.1",
                                                                     announced_port(proc),
                                                                     "ampkit"))
    try:
        module.connect_to_module()  # reads the greeting
        module.communicator.socket_c.settimeout(20)

        def reply(end):
            got = b""
            while not got.endswith(end):
                got += module.receive_message(65536)
            return got

        module.send_message(b"UP")
        assert reply(b"1") == b"1"
        module.send_message(b"GET_PCOMMS")
        assert reply(b"UP") == COMMANDS
        module.send_message(json.dumps({"lsl": stream}).encode().join([b"START|", b""]))
        with ampkit.get_amp("lsl", name=stream, marker_stream=True, timeout=20) as lsl:
            assert lsl.get_channels() == [f"Ch_{i}" for i in range(4)] or len(
                lsl.get_channels()) == 4
            lsl.start()
            module.send_message(b'RECORD|{"fname": "run1.vhdr"}')
            lsl_read_until(lsl, lambda n, m: n >= 50)  # recording under way
            sent = local_clock()
            module.send_message(b'MARKER|{"text": "S  1"}')
            data, markers = lsl_read_until(lsl, lambda n, m: n >= 125 and m)
            module.send_message(b"STATUS")
            status = json.loads(reply(b"\n"))
            module.send_message(b"STOPRECORD")
            module.send_message(b"STATUS")
            after = json.loads(reply(b"\n"))
            module.send_message(b"STOP")
            module.send_message(b"STATUS")
            stopped = json.loads(reply(b"\n"))
            lsl.stop()
        module.send_message(b"CLOSE")
        assert proc.wait(60) == 0
    finally:
        module.stop()  # disconnects; the launcher ends a process still running
    assert status["running"] is True and status["driver"] == "sine"
    assert status["recording"] == str(tmp_path / "run1.vhdr") and status["lsl"] == stream
    assert status["rate"] == 250 and status["channels"] == 4 and status["markers"] >= 1
    assert status["errors"] == 0 and status["samples"] > 0
    assert after["recording"] is None and after["running"] is True
    assert stopped["running"] is False and stopped["lsl"] is None
    # LSL: the sine, and the marker stamped when it reached the module
    assert data.shape[1] == 4 and np.abs(data).max() <= 1.0001 and np.abs(data).max() > 0.5
    [(t, text)] = [m for m in markers if m[1] == "S  1"]
    assert sent <= t < sent + 1.0  # generous: the module's stamp, shortly after sending
    # the recording: the marker on a sample of it, and MNE agrees
    rec = ampkit.io.read(tmp_path / "run1")
    [(sample, _, text)] = rec.markers
    assert text == "S  1" and 0 < sample < rec.n_samples
    raw = mne.io.read_raw_brainvision(tmp_path / "run1.vhdr", verbose="error")
    assert raw.info["sfreq"] == 250 and raw.info["nchan"] == 4
    onsets = [round(o * 250) for o, d in zip(raw.annotations.onset, raw.annotations.description,
                                              strict=True) if d.endswith("S  1")]
    assert onsets == [sample]


def test_framing_bad_input_and_clients_that_vanish(tmp_path):
    with serving(tmp_path, "random", "-c", "fs=200", "--name", "test-module", "--no-log",
                 "--marker-port", "off") as (proc, port, err_path):
        first = Client(port)
        assert first.greeting == b"Connected to test-module\n"
        waiting = Client(port, greet=False)  # one client at a time: this one waits
        waiting.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiting.sock.recv(100)
        waiting.sock.settimeout(20)
        # a command in pieces, in separate packets
        first.send(b"U")
        time.sleep(0.1)
        first.send(b"P;")
        assert first.until(b"1") == b"1"
        first.send(b";;\r\n;UP|;  ;STAT")
        assert first.until(b"1") == b"1"
        time.sleep(0.1)
        first.send(b"US\r\n;")
        status = json.loads(first.until(b"\n"))
        assert status["running"] is False and status["driver"] == "random"
        assert status["errors"] == 0
        first.send(b"START;GET_PCOMMS;")
        assert first.until(b"UP") == COMMANDS
        # bad input: each logged and counted, none ends the module
        bad = [
            b'MARKER|{"text": "a";',  # not JSON
            b"MARKER|[1];",  # not an object
            b"A|B|C;",  # more than one |
            b"NOPE;",  # unknown command
            b'MARKER|{"txt": "x"};',  # an argument MARKER does not take
            b"\xff\xfe\x00;",  # not UTF-8
            b'MARKER|{"text": "' + b"x" * 100_000 + b'"};',  # over the 64 KiB limit
            b"RECORD;",  # a missing argument
        ]
        for message in bad:
            first.send(message)
        first.send(b'MARKER|{"text": "fine"};')
        status = first.status()
        assert status["errors"] == len(bad), status
        assert status["running"] is True
        deadline = time.monotonic() + 20
        while first.status()["markers"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        # the first client vanishes in the middle of a command
        first.send(b'MARKER|{"text": "never')
        first.close()
        assert waiting.until(b"\n") == b"Connected to test-module\n"
        status = waiting.status()
        assert status["markers"] == 1 and status["running"] is True  # "never" never came
        waiting.send(b"STOP;")
        assert waiting.status()["running"] is False
        waiting.send(b"CLOSE;")
        assert proc.wait(60) == 0
        with pytest.raises((EOFError, ConnectionError)):
            waiting.until(b"\n")  # the module hung up
        waiting.close()
    log = err_path.read_text()
    for says in ["is not JSON", "not an object of keyword arguments", "more than one '|'",
                 "unknown command 'NOPE'", "MARKER has no argument 'txt'; it takes text",
                 "not UTF-8", "longer than 65536 bytes", "RECORD needs 'fname'",
                 "left with 22 bytes of an unfinished command"]:
        assert says in log, (says, log)
    assert "Traceback" not in log


def test_connect_from_the_wire_and_command_errors(tmp_path):
    with serving(tmp_path, "--no-log") as (proc, port, err_path):
        client = Client(port)
        assert client.status()["driver"] is None
        client.send(b"START;")  # no amp yet
        client.send(b'CONNECT|{"driver": "nosuchdriver"};')
        client.send(b'CONNECT|{"driver": "random", "config": {"nosuch": 1}};')
        status = client.status()
        assert status["errors"] == 3 and status["running"] is False
        assert "nosuch" in status["last_error"]
        client.send(b'CONNECT|{"driver": "random", "config": {"fs": 100, "channels": 3}};')
        client.send(b'START|{"lsl": false, "marker_port": 0, "filename": "whole"};')
        status = client.status()
        assert status["running"] is True and status["channels"] == 3 and status["lsl"] is None
        assert status["marker_port"] > 0 and status["recording"] == str(tmp_path / "whole")
        client.send(b'CONNECT|{"driver": "sine"};')  # not while acquiring
        client.send(b'RECORD|{"fname": "second"};')  # recording already
        client.send(b'START;')  # running already
        status = client.status()
        assert status["errors"] == 6 and status["driver"] == "random", status
        client.send(b"STOP;STOPRECORD;")  # STOPRECORD while stopped: an error
        assert client.status()["errors"] == 7
        client.send(b'CONNECT|{"driver": "sine", "config": {"fs": 50}};START|{"lsl": false};')
        status = client.status()
        assert status["driver"] == "sine" and status["rate"] == 50 and status["running"]
        assert status["effective_rate"] is None  # a synthetic driver measures none
        client.send(b"STOP;")
        # a device whose rate the module measures: the RDA simulator, 1 % fast
        with RDASimulator(port=0, channels=2, fs=1000.0, ppm=10_000) as sim:
            client.send(f'CONNECT|{{"driver": "rda", "config": {{"port": {sim.port}}}}};'
                        'START|{"lsl": false};'.encode())
            deadline = time.monotonic() + 30
            while (status := client.status())["effective_rate"] is None:
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            assert status["driver"] == "rda" and status["rate"] == 1000
            assert 1000 < status["effective_rate"] < 1020, status  # generous: 1010 expected
            proc.terminate()  # SIGTERM while acquiring: a clean end
            assert proc.wait(60) == 0
        client.close()
    rec = ampkit.io.read(tmp_path / "whole")
    assert rec.data.shape[1] == 3 and rec.n_samples > 0
    log = err_path.read_text()
    assert "no amp: CONNECT" in log and "nosuchdriver" in log and "STOP first" in log
    assert "Traceback" not in log


def one_line_error(done):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ampkit serve: "), done.stderr
    return lines[0]


def test_user_errors_are_one_line():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "ampkit.cli", "serve", *args],
                              capture_output=True, text=True, timeout=120, env=environment())

    assert "nosuchdriver" in one_line_error(run("nosuchdriver", "--port", "0", "--no-log"))
    assert "need a DRIVER" in one_line_error(run("-c", "fs=100", "--port", "0", "--no-log"))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        line = one_line_error(run("random", "--port", str(port), "--no-log"))
        assert f"cannot listen on 127.0.0.1:{port}" in line and "0: any free port" in line


# dareplane-utils configures the root logger when imported: its receiver runs in a child.
DAREPLANE_RECEIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dareplane_utils.logging.server import LogRecordSocketReceiver
    receiver = LogRecordSocketReceiver(host="127.0.0.1", port=0, logfile=Path(sys.argv[1]))
    print(receiver.server_address[1], flush=True)
    receiver.serve_until_stopped()
""")


def test_serve_logs_to_dareplane_utils_log_receiver(tmp_path):
    """dareplane-utils' own LogRecordSocketReceiver gets the module's records, with
    their levels and texts, also those that break its ``msg % args``."""
    log_file = tmp_path / "dareplane.log"
    receiver = subprocess.Popen([sys.executable, "-c", DAREPLANE_RECEIVER, str(log_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=environment())
    try:
        log_port = int(receiver.stdout.readline())
        with serving(tmp_path, "random", "--log-port", log_port) as (proc, port, err_path):
            client = Client(port)
            client.send(b'START|{"lsl": false};NOPE%s%s;MARKER|{bad};STOP;')
            client.status()
            client.send(b"CLOSE;")
            assert proc.wait(60) == 0
            client.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "CLOSE" not in (
                log_file.read_text() if log_file.exists() else ""):
            time.sleep(0.05)
    finally:
        receiver.kill()
        receiver.communicate()
    text = log_file.read_text()
    assert " - ampkit - INFO - ampkit: received START" in text
    assert " - ampkit - INFO - ampkit: acquiring from random" in text
    assert " - ampkit - WARNING - ampkit: unknown command 'NOPE%s%s'" in text
    assert " - ampkit - ERROR - ampkit: client 127.0.0.1:" in text and "is not JSON" in text
    assert " - ampkit - INFO - ampkit: CLOSE: shutting down" in text
    assert "Traceback" not in text
    # on the console only warnings and up, as without a log server
    console = err_path.read_text()
    assert "unknown command" in console and "received START" not in console


def test_the_documented_control_room_configuration():
    """The TOML of docs/dareplane.rst parses, starts `ampkit serve` as the control room
    would (`--ip=... --port=...` appended) and its macros send commands the module has."""
    tomllib = pytest.importorskip("tomllib")
    from ampkit.cli import build_parser

    text = (Path(__file__).resolve().parents[1] / "docs" / "dareplane.rst").read_text()
    start = text.index("[modules]\n")
    end = text.index("\n\n``kind = 'exe'")
    block = textwrap.dedent(text[text.rindex("\n", 0, start) + 1 : end])
    config = tomllib.loads(block)
    module = config["modules"]["ampkit"]
    assert module["kind"] == "python" and module["custom_entry_point"] == "ampkit.cli"
    argv = [*module["args"], f"--ip={module['ip']}", f"--port={module['port']}"]
    args = build_parser().parse_args(argv)
    assert (args.command, args.driver, args.host, args.port) == ("serve", "sine", "127.0.0.1",
                                                                 8090)
    names = COMMANDS.decode().split("|")
    for macro in config["macros"].values():
        for target, pcomm, *kwargs in macro["cmds"].values():
            assert target == "ampkit" and pcomm in names
            for pair in kwargs:
                assert pair.split("=")[1] in macro["default_json"]


def test_share_reaches_other_processes(tmp_path):
    """``ampkit serve DRIVER --share NAME``: START shares the amp's data; STOP ends it."""
    name = f"test-serve-{uuid.uuid4().hex[:8]}"
    with serving(tmp_path, "random", "-c", "fs=500", "-c", "channels=3", "--no-log",
                 "--share", name) as (_, port, err_path):
        client = Client(port)
        client.send(b'START|{"lsl": false};')
        reader = ampkit.attach(name, timeout=20)
        assert reader.channel_names == ["Ch_0", "Ch_1", "Ch_2"] and reader.fs == 500.0
        assert reader.wait(0, 100, timeout=20) is not None
        assert client.status()["share"] == name
        client.send(b"STOP;")
        with pytest.raises(ampkit.errors.StreamEndedError):
            while True:
                reader.update()
        last = reader.last_sample
        np.testing.assert_array_equal(reader.get_last(1), reader.get_data(last - 1, last))
        assert not Path(f"/dev/shm/ampkit-{name}").exists()
        client.send(b"CLOSE;")
        client.close()
        reader.close()
        assert "Traceback" not in err_path.read_text()
