import subprocess
import sys
import textwrap

import pytest

import ampkit
from ampkit import registry
from ampkit.decorator import AmpDecorator
from ampkit.drivers.random import RandomAmp
from ampkit.errors import ConfigurationError, DriverLoadError, UnknownDriverError


def test_builtin_drivers_are_registered_through_entry_points():
    names = registry.driver_names()
    assert {"random", "sine", "replay"} <= set(names)


@pytest.mark.parametrize("name", ["random", "randomamp"])
def test_get_amp_returns_a_decorated_driver(name):
    amp = ampkit.get_amp(name)
    assert isinstance(amp, AmpDecorator)
    assert isinstance(amp.amp, RandomAmp)
    assert amp.name == "random"


def test_get_amp_configures():
    amp = ampkit.get_amp("sinusamp", f=3, fs=200, channels=2)
    assert amp.get_sampling_frequency() == 200.0
    assert len(amp.get_channels()) == 2


def test_get_amp_bad_config():
    with pytest.raises(ConfigurationError, match="fs"):
        ampkit.get_amp("random", fs=-1)
    with pytest.raises(TypeError):
        ampkit.get_amp("random", no_such_setting=1)


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownDriverError) as info:
        ampkit.get_amp("nosuchamp")
    assert "random" in str(info.value) and "randomamp" in str(info.value)


def test_alias_of_a_missing_driver_says_so(monkeypatch):
    monkeypatch.setitem(registry.ALIASES, "oldamp", "not_installed_driver")
    with pytest.raises(UnknownDriverError, match="libmushu name for 'not_installed_driver'"):
        ampkit.get_amp("oldamp")


def test_get_available_amps():
    available = ampkit.get_available_amps()
    assert {"random", "sine", "replay"} <= set(available)


def test_libmushu_example():
    import ampkit as libmushu

    amp = libmushu.get_amp("randomamp")
    amp.configure(fs=100, channels=3)
    amp.start()
    data, markers = amp.get_data()
    amp.stop()
    assert data.ndim == 2 and data.shape[1] == 3 and len(data) >= 1
    assert markers == []


PACKAGE = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "toyamp-driver"
        version = "1.0"

        [project.entry-points."ampkit.drivers"]
        toyamp = "toyamp:ToyAmp"
        brokenamp = "toyamp_missing:Nothing"
        notanamp = "toyamp:NotAnAmp"

        [tool.setuptools]
        py-modules = ["toyamp"]
    """,
    "toyamp.py": """
        import numpy as np
        from ampkit.amplifier import Amplifier

        class NotAnAmp:
            pass

        class ToyAmp(Amplifier):
            def start(self): pass
            def stop(self): pass
            def get_data(self): return np.full((4, 2), 7.0), [(0.0, "toy")]
            def get_channels(self): return ["x", "y"]
            def get_sampling_frequency(self): return 50.0
            @staticmethod
            def is_available(): return True
    """,
}

CHECK = """
import ampkit
from ampkit import registry
from ampkit.errors import DriverLoadError
amp = ampkit.get_amp("toyamp")
amp.start()
data, markers = amp.get_data()
amp.stop()
assert data.shape == (4, 2) and float(data[0, 0]) == 7.0, data
assert markers == [(0.0, "toy")], markers
assert "toyamp" in ampkit.get_available_amps()
infos = {i.name: i for i in registry.list_drivers()}
assert "failed to import" in infos["brokenamp"].error, infos["brokenamp"]
assert "not an Amplifier" in infos["notanamp"].error
for bad in ("brokenamp", "notanamp"):
    try:
        ampkit.get_amp(bad)
    except DriverLoadError as exc:
        print("reported:", exc)
    else:
        raise AssertionError(bad)
print("OK")
"""


def test_third_party_driver_package_is_found(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, text in PACKAGE.items():
        (src / name).write_text(textwrap.dedent(text))
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
           "--no-build-isolation", "--target", str(target), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    env = {**__import__("os").environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout
    assert out.stdout.count("reported:") == 2


def test_driver_that_fails_to_import_is_reported(monkeypatch):
    from importlib.metadata import EntryPoint

    broken = EntryPoint("broken", "no_such_module_xyz:Amp", registry.ENTRY_POINT_GROUP)
    real = registry._entry_points

    monkeypatch.setattr(registry, "_entry_points", lambda: {**real(), "broken": broken})
    with pytest.raises(DriverLoadError, match="no_such_module_xyz"):
        ampkit.get_amp("broken")
    infos = {i.name: i for i in registry.list_drivers()}
    assert infos["broken"].error and infos["broken"].available is None
    assert "broken" not in ampkit.get_available_amps()
