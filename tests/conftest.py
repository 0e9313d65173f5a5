"""Test-wide setup.

liblsl discovers streams by multicast unless configured otherwise; every test
that touches LSL must stay on this machine's loopback. LSLAPICFG has to be set
before pylsl is first imported, which is why it happens here, at collection.
"""

import os
from pathlib import Path

LSL_CONFIG = Path(__file__).with_name("lsl-loopback.cfg")
os.environ["LSLAPICFG"] = str(LSL_CONFIG)
# amp.start() opens marker servers on port 12344 by default; test runs (and
# benchmarks) sharing a machine would collide there, so tests use free ports.
os.environ.setdefault("AMPKIT_MARKER_PORT", "0")


import importlib  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """Install a real package with entry points for this test only.

    ``install_plugin(module, source, {group: {name: 'module:attr'}})`` writes
    ``module.py`` and a ``.dist-info`` with those entry points into a folder
    put first on ``sys.path``: ``importlib.metadata`` finds them as it finds
    any installed package's.
    """
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))

    def install(module, source, entry_points):
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
        info = folder / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        lines = []
        for group, targets in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {target}" for name, target in targets.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        importlib.invalidate_caches()
        monkeypatch.delitem(sys.modules, module, raising=False)

    yield install
