"""The ``ampkit`` command: parsing, user errors (one line, exit 2), and the
commands that start an amp, run as the user runs them (a subprocess)."""

import contextlib
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import ampkit
import ampkit.io
from ampkit.cli import _format_status, main, parse_config
from ampkit.errors import ConfigurationError
from ampkit.io import Header, Mark
from ampkit.markers import send_marker


def ampkit_cmd(*args, **env):
    """Run ``ampkit ARGS`` (the module, as the console script does); free marker ports."""
    return subprocess.run(
        [sys.executable, "-m", "ampkit.cli", *map(str, args)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "AMPKIT_MARKER_PORT": "0", **env},
    )


def one_line_error(done):
    """The user error contract: exit 2, one line on stderr, nothing on stdout."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ampkit"), done.stderr
    assert done.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A 3 s, 2-channel recording at 500 Hz (five-file format)."""
    base = tmp_path_factory.mktemp("rec") / "src"
    writer = ampkit.io.open_writer(base, Header(["A", "B"], 500.0, [], "test"))
    k = np.arange(1500)
    writer.write(np.column_stack([np.sin(k / 10), np.cos(k / 10)]).astype(np.float32),
                 k / 500.0, [Mark(100, 0.2, 0.2, "S 1")])
    writer.close()
    return base


def test_parse_config_literals_and_strings():
    assert parse_config(["fs=250", "channels=8", "host=10.0.0.2", "gains=[24, 12]",
                         "daisy=True", "name=EEG one"]) == {
        "fs": 250, "channels": 8, "host": "10.0.0.2", "gains": [24, 12],
        "daisy": True, "name": "EEG one",
    }
    with pytest.raises(ConfigurationError):
        parse_config(["fs"])


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("random "))
    assert "available" in line and "randomamp" in line


def test_info_with_config_and_preset(capsys):
    assert main(["info", "random", "-c", "fs=250", "-c", "channels=4"]) == 0
    out = capsys.readouterr().out
    assert "250 Hz" in out and "4: Ch_0, Ch_1, Ch_2, Ch_3" in out and "preset 0" in out
    assert main(["info", "random", "-p", "1"]) == 0
    assert "1000 Hz" in capsys.readouterr().out


def test_errors_are_reported_with_exit_status_2(capsys):
    assert main(["info", "nosuchamp"]) == 2
    assert "known drivers" in capsys.readouterr().err
    assert main(["info", "random", "-c", "fs=-5"]) == 2
    assert main(["info", "random", "-p", "no such preset"]) == 2


@pytest.mark.parametrize("args, says", [
    # a setting the driver does not have: the settings it has
    (["record", "random", "-c", "samplerate=250"], "it takes -c fs, channels, amplitude"),
    (["stream", "sine", "-c", "freq=3"], "-c f, fs, channels, amplitude"),
    # values the driver cannot use, whether it checks them itself or not
    (["info", "random", "-c", "fs=-5"], "fs must be a positive number"),
    (["info", "random", "-c", "amplitude=loud"], "amplitude"),
    (["record", "random", "-p", "no such preset"], "presets: 0:"),
    (["info", "nosuchamp"], "known drivers"),
    # durations, ports, starts
    (["record", "random", "-d", "-1"], "-d/--duration: expected a positive number of seconds"),
    (["record", "random", "-d", "0"], "got '0'"),
    (["stream", "random", "-d", "nan"], "got 'nan'"),
    (["record", "random", "-d", "inf"], "got 'inf'"),
    (["record", "random", "-d", "soon"], "got 'soon'"),
    (["record", "random", "--marker-port", "http"], "or 'off'"),
    (["stream", "random", "--marker-port", "70000"], "0-65535"),
    (["marker", "S 1", "--port", "0"], "1-65535"),
    (["sim", "rda", "-d", "-2"], "positive number of seconds"),
    (["sim", "rda", "--channels", "0", "-d", "1"], "channels must be a positive integer"),
    (["plot", "{rec}", "--start", "-1"], "0 or more seconds"),
    # files: missing, unreadable, an output that cannot be written
    (["plot", "{tmp}/missing.xdf"], "missing.xdf"),
    (["info", "{tmp}/missing.vhdr"], "missing"),
    (["info", "{tmp}/sub/missing"], "missing"),
    (["info", "{tmp}/garbage.xdf"], "garbage.xdf"),
    (["plot", "{tmp}/garbage.bdf"], "garbage.bdf"),
    (["info", "{tmp}/bad.vhdr"], "bad.vhdr"),
    (["plot", "{rec}", "-o", "{tmp}/no/such/folder/x.png"], "No such file or directory"),
    (["plot", "{rec}", "--channels", "A,Z"], "'Z'"),
    # the parser's own complaints, also one line
    ([], "required: COMMAND"),
    (["frobnicate"], "invalid choice"),
    (["record"], "required: driver"),
])
def test_user_errors_are_one_line_and_exit_2(args, says, tmp_path, recording):
    (tmp_path / "garbage.xdf").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "garbage.bdf").write_bytes(b"\xff" * 4096)
    # a header that a config parser dumps over several lines
    (tmp_path / "bad.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n[Common Infos]\nDataFile=x.eeg\n"
        "no equals sign\n[Comment]\n  indented: table\nmore text\n", encoding="utf-8")
    args = [a.format(tmp=tmp_path, rec=recording) for a in args]
    line = one_line_error(ampkit_cmd(*args))
    assert says in line


def test_version_and_help():
    done = ampkit_cmd("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"ampkit {ampkit.__version__}"
    done = ampkit_cmd("info", "--help")
    assert done.returncode == 0
    assert "DRIVER_OR_FILE" in done.stdout.splitlines()[0] and "recording file" in done.stdout
    for command in ("record", "stream"):
        out = ampkit_cmd(command, "--help").stdout
        assert "--marker-port" in out and "--marker-host" in out and "--duration" in out
        assert "--share NAME" in out and "--share-seconds" in out


def test_record_acquires_and_reports_progress():
    out = ampkit_cmd("record", "random", "-c", "fs=500", "-c", "channels=3", "-d", "1.5")
    assert out.returncode == 0, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    samples = int(last.split(" samples")[0].split()[-1])
    assert 750 <= samples <= 800, last
    assert "Hz" in last and "markers" in last


def test_progress_line_leaves_out_counters_at_zero():
    status = {"samples": 500, "markers": 2, "gaps": 0, "effective_rate": 250.0012,
              "markers_dropped": 0, "backlog": 3, "marker_server_dropped": 0}
    line = _format_status(2.0, status)
    assert "250.0 Hz" in line and "2 markers" in line and "effective_rate 250.0012" in line
    assert "backlog 3" in line
    assert "dropped" not in line and "gaps" not in line
    assert "markers_dropped 7" in _format_status(2.0, {**status, "markers_dropped": 7})


def test_duration_ends_with_the_block_that_completes_it(tmp_path, recording):
    """-d counts the samples' own time: replayed as fast as the loop asks (no
    pacing), 0.5 s of 5-sample blocks are exactly 250 samples -- where wall
    time would have taken the whole 3 s file."""
    out = tmp_path / "r.xdf"
    done = ampkit_cmd("record", "replay", "-c", f"filename={recording}", "-c", "realtime=False",
                      "-c", "blocksize_samples=5", "-d", "0.5", "-o", out)
    assert done.returncode == 0, done.stderr
    assert ampkit.io.read(out).n_samples == 250
    # paced in real time: at least the duration, at most a few blocks more
    done = ampkit_cmd("record", "replay", "-c", f"filename={recording}",
                      "-c", "blocksize_samples=5", "-d", "0.5", "-o", out, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert 250 <= ampkit.io.read(out).n_samples <= 300


def test_duration_ends_when_samples_stop_coming(tmp_path):
    """A source that runs dry before -d (a short file replayed): the run still
    ends, about a second after the duration, with every sample there was."""
    short = tmp_path / "short"
    writer = ampkit.io.open_writer(short, Header(["A"], 500.0, [], "test"))
    writer.write(np.zeros((100, 1), np.float32), np.arange(100) / 500.0, [])
    writer.close()
    t0 = time.monotonic()
    done = ampkit_cmd("record", "replay", "-c", f"filename={short}", "-c", "realtime=False",
                      "-d", "0.5", "-o", tmp_path / "out.xdf")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - t0 < 60  # generous: it ends (at about 1.55 s after start)
    assert ampkit.io.read(tmp_path / "out.xdf").n_samples == 100


@contextlib.contextmanager
def running(args, **env):
    """``args`` in a process (stdout and stderr piped); killed if still running after."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_cleanly(proc):
    """SIGTERM ends a run cleanly; wait for it and return its stderr."""
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    return err


def announced_port(proc):
    """The marker port from the line the command prints on stdout first."""
    line = proc.stdout.readline()
    assert line.startswith("marker servers on 127.0.0.1:"), line
    port = int(line.split("127.0.0.1:")[1].split()[0])
    assert f"ampkit marker TEXT --port {port}" in line
    return port


@pytest.mark.parametrize("command", ["record", "stream"])
def test_marker_port_0_is_printed_and_reaches_the_amp(command, tmp_path):
    args = [sys.executable, "-m", "ampkit.cli", command, "random", "-c", "fs=200",
            "--marker-port", "0", "-d", "30"]
    if command == "record":
        args += ["-o", str(tmp_path / "m.xdf")]
    else:
        args += ["--name", f"ampkit-cli-{os.getpid()}-{time.monotonic_ns()}"]
    with running(args, AMPKIT_MARKER_PORT="12344") as proc:
        port = announced_port(proc)
        assert port not in (0, 12344)  # --marker-port wins over the environment
        send_marker("hello from the test", "127.0.0.1", port)
        time.sleep(0.3)
        err = stop_cleanly(proc)
    assert proc.returncode == 0, err
    last = err.strip().splitlines()[-1]
    assert "1 markers" in last, last
    if command == "record":
        marks = ampkit.io.read(tmp_path / "m.xdf").markers
        assert [m[2] for m in marks] == ["hello from the test"]


@pytest.mark.parametrize("command", ["record", "stream"])
def test_busy_marker_port_advice_in_command_words(command):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(ampkit_cmd(command, "random", "--marker-port", port, "-d", "1"))
        assert f"marker port {port} on 127.0.0.1 is already in use" in line
        assert "--marker-port 0" in line and "--marker-port off" in line
        assert "marker_port" not in line  # not Python's spelling
        # the same advice when the port comes from the environment
        line = one_line_error(ampkit_cmd(command, "random", "-d", "1",
                                         AMPKIT_MARKER_PORT=str(port)))
        assert f"marker port {port}" in line and "--marker-port 0" in line


def test_marker_port_off():
    done = ampkit_cmd("record", "random", "--marker-port", "off", "-d", "0.3")
    assert done.returncode == 0, done.stderr
    assert "marker servers" not in done.stdout


def test_main_returns_the_exit_status(capsys):
    assert main(["sim"]) == 2
    assert main(["record", "random", "-d", "-1"]) == 2
    assert "-d/--duration" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ampkit {ampkit.__version__}"


@pytest.mark.parametrize("command", ["record", "stream"])
def test_share_reaches_other_processes(command):
    name = f"test-cli-{os.getpid()}-{time.monotonic_ns()}"
    args = [sys.executable, "-m", "ampkit.cli", command, "random", "-c", "fs=500", "-c",
            "channels=3", "--share", name, "--share-seconds", "4", "-d", "30"]
    if command == "stream":
        args += ["--name", name]
    with running(args) as proc:
        reader = ampkit.attach(name, timeout=20)
        assert reader.buffer_size == 2000 and reader.channel_names == ["Ch_0", "Ch_1", "Ch_2"]
        assert reader.wait(0, 250, timeout=20).shape == (250, 3)
        err = stop_cleanly(proc)  # the segment goes
    assert proc.returncode == 0, err
    assert f"share {name}" in err.strip().splitlines()[-1]  # in the progress line
    with pytest.raises(ampkit.errors.StreamEndedError):
        while True:
            reader.update()
    reader.close()
    assert not os.path.exists(f"/dev/shm/ampkit-{name}")


@pytest.mark.parametrize("args, says", [
    (["record", "random", "--share", "a/b", "-d", "1"], "shared stream name"),
    (["stream", "random", "--share-seconds", "0", "-d", "1"], "positive number of seconds"),
    (["record", "random", "--share-seconds", "2", "-d", "1"], "share_seconds given without"),
])
def test_share_option_errors(args, says):
    assert says in one_line_error(ampkit_cmd(*args))


def test_impedance_shows_each_channel_in_kohm(capsys):
    assert main(["impedance", "gusbamp", "-c", "backend=emulator", "-c", "channels=[1, 7]",
                 "-n", "2", "--interval", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["Ch1 3.0  Ch7 9.0  kΩ"] * 2  # the emulated amp: 2 + channel kΩ


def test_impedance_of_a_driver_that_cannot_measure_it(capsys):
    assert main(["impedance", "random", "-n", "1"]) == 2
    err = capsys.readouterr().err
    assert err == "ampkit impedance: driver 'random' cannot measure impedance (it has no " \
        "get_impedances())\n"
    assert main(["impedance", "gusbamp", "-n", "0"]) == 2
    assert "positive whole number" in capsys.readouterr().err
