"""`ampkit record -o` in every format with its progress line, and `ampkit info FILE`."""

import subprocess
import sys

import numpy as np
import pytest

import ampkit.io
from ampkit.cli import main


@pytest.fixture(autouse=True)
def _free_marker_port(monkeypatch):
    monkeypatch.setenv("AMPKIT_MARKER_PORT", "0")


@pytest.mark.parametrize("name", ["rec", "rec.bdf", "rec.xdf"])
def test_record_each_format(tmp_path, name, capsys):
    out = tmp_path / name
    args = ["record", "sine", "-c", "fs=200", "-c", "channels=3", "-c", "f=2", "-c",
            "amplitude=100", "-d", "0.6", "-o", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "bytes" in err and "backlog" in err
    rec = ampkit.io.read(out)
    assert rec.channels == ["Ch_0", "Ch_1", "Ch_2"] and rec.fs == 200.0
    assert rec.n_samples >= 100
    k = np.arange(rec.n_samples)
    np.testing.assert_allclose(rec.data[:, 2], 100 * np.sin(2 * np.pi * 2 * k / 200), atol=0.02)
    # never overwrites without --overwrite
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0

    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "200 Hz" in info and "Ch_0, Ch_1, Ch_2" in info and "samples:" in info


def test_progress_line_of_the_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ampkit.cli", "record", "random", "-c", "fs=500", "-d", "0.5",
         "-o", str(tmp_path / "p.xdf")],
        capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, "AMPKIT_MARKER_PORT": "0"},
    )
    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "samples" in last and "Hz" in last and "bytes" in last and "backlog" in last
    assert ampkit.io.read(tmp_path / "p.xdf").n_samples >= 200


def test_info_on_a_missing_recording_names_it(tmp_path, capsys):
    assert main(["info", str(tmp_path / "gone.xdf")]) == 2
    assert "gone.xdf" in capsys.readouterr().err
