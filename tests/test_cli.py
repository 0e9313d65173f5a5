import subprocess
import sys

import pytest

from ampkit.cli import main, parse_config
from ampkit.errors import ConfigurationError


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


def test_record_acquires_and_reports_progress():
    # The installed console script, as a user runs it.
    out = subprocess.run(
        [sys.executable, "-m", "ampkit.cli", "record", "random", "-c", "fs=500",
         "-c", "channels=3", "-d", "1.5"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    samples = int(last.split(" samples")[0].split()[-1])
    assert 700 <= samples <= 800, last
    assert "Hz" in last and "markers" in last


def test_sim_needs_a_device():
    with pytest.raises(SystemExit):
        main(["sim"])
