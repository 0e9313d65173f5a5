"""Fixtures of the shared-stream tests: unique names, leak checks, processes."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest
from shared_procs import script

from ampkit.shared.segment import PREFIX, SHM_DIR


def leftovers(name: str) -> list[str]:
    """Files of stream ``name`` (or its temporaries) in /dev/shm."""
    return sorted(p.name for p in SHM_DIR.glob(f"{PREFIX}{name}*"))


@pytest.fixture
def shm_name() -> Iterator[str]:
    """A stream name no other test uses; the test fails if it leaves a file behind."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    left = leftovers(name)
    for f in left:
        (SHM_DIR / f).unlink()
    assert not left, f"left in {SHM_DIR}: {left}"


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a role of shared_procs.py; every process is ended after the test."""
    procs: list[subprocess.Popen] = []

    def start(role: str, name: str, *args: str, wait_ready: bool = False) -> subprocess.Popen:
        proc = subprocess.Popen(script(role, name, *args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        if wait_ready:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line.strip() in ("ready", "attached"), (line, proc.stderr.read())  # type: ignore[union-attr]
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
