"""ampkit's import structure: no cycles, and no module importing from a layer above its own.

The imports are read from the source with ``ast`` (every ``import`` and
``from ... import`` of an ampkit module, at the top, inside functions and
under ``TYPE_CHECKING`` alike), so a cycle cannot hide behind an import
that runs late. Importing ``pkg.mod`` does not count as importing ``pkg``
(Python loads the package first, but that is no dependency of the code).
The layers, lowest first, are those of docs/architecture.rst.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ampkit"

#: Lowest first. A module belongs to the layer of the longest prefix that
#: names it (``ampkit.drivers`` holds every driver module; ``ampkit`` is only
#: the package's ``__init__``). A module may
#: import from its own layer and those below.
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", [
        "ampkit.errors", "ampkit.clock", "ampkit.worker", "ampkit.block", "ampkit.checks",
        "ampkit.plugins", "ampkit.logthrottle", "ampkit.timestamps", "ampkit.pacing",
        "ampkit.pool", "ampkit.marker_stamper",
    ]),
    ("codecs, files, network", [
        "ampkit.protocols", "ampkit.codec", "ampkit.io", "ampkit.markers", "ampkit.lsl",
        "ampkit.listener", "ampkit.transport", "ampkit.usb", "ampkit.reader", "ampkit.shared",
    ]),
    ("contract and decorator", [
        "ampkit.amplifier", "ampkit.streaming", "ampkit.services", "ampkit.decorator",
    ]),
    ("drivers and simulators", [
        "ampkit.drivers", "ampkit.sim",
    ]),
    ("applications", [
        "ampkit.registry", "ampkit.buffer", "ampkit.serve", "ampkit.logging", "ampkit.plot",
        "ampkit.shared.reader",
    ]),
    ("public API and command line", [
        "ampkit", "ampkit.cli",
    ]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """Index of the layer of ``module``; None if no prefix names it."""
    best, depth = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # The package itself holds only its __init__, not every module.
            inside = prefix != "ampkit" and module.startswith(prefix + ".")
            if (module == prefix or inside) and len(prefix) > depth:
                best, depth = index, len(prefix)
    return best


def imports_of(module: str, path: Path | None = None) -> dict[str, int]:
    """The ampkit modules ``module`` (read from ``path``) imports, with the line of each."""
    path = MODULES[module] if path is None else path
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # ``from pkg import mod`` imports the module; ``from pkg import name`` the package.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        for target in targets:
            if target.split(".")[0] == "ampkit" and target != module:
                found.setdefault(target, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if layer_of(m) is None]
    assert not missing, f"modules in no layer (add them to LAYERS in {__file__}): {missing}"


def test_no_module_imports_from_a_layer_above_its_own():
    wrong = []
    for module, targets in GRAPH.items():
        mine = layer_of(module)
        for target, line in targets.items():
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: {module} "
                             f"({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_there_is_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {}}, None),
    ({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}, ["a", "b", "c", "a"]),
    ({"a": {}, "b": {"b2": 1}, "b2": {"b": 1}}, ["b", "b2", "b"]),
])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert find_cycle(graph) == cycle


def test_imports_inside_functions_and_for_type_checking_count(tmp_path):
    source = tmp_path / "recorder.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import writer\n"
        "from ..block import Block\n"
        "if TYPE_CHECKING:\n"
        "    import ampkit.buffer\n"
        "def f():\n"
        "    from ampkit.decorator import AmpDecorator\n"
        "    import mne\n"
    )
    assert imports_of("ampkit.io.recorder", source) == {
        "ampkit.io.writer": 2, "ampkit.block": 3, "ampkit.buffer": 5, "ampkit.decorator": 7,
    }
    assert layer_of("ampkit.drivers.anything") == layer_of("ampkit.drivers.rda")
    assert layer_of("ampkit.iox") is None
