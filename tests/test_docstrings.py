"""The examples in ampkit's docstrings run and show what they say.

conftest.py has set LSLAPICFG (loopback only) and AMPKIT_MARKER_PORT=0 (free
ports), so examples that start an amp neither leave this machine nor fight
over port 12344.
"""

import doctest
import importlib
import pkgutil

import pytest

import ampkit

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(ampkit.__path__, "ampkit.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
