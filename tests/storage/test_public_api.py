"""Every public name of the storage, ledger and testing packages exists and is documented."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

PACKAGES = [
    "chatsvg_core.storage",
    "chatsvg_core.ledger",
    "chatsvg_core.testing",
    "chatsvg_core.testing.conformance",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_have_docstrings(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    assert sorted(module.__all__) == sorted(set(module.__all__)), "duplicates in __all__"
    for public in module.__all__:
        obj = getattr(module, public)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name}.{public} has no docstring"


def test_importing_the_core_does_not_import_test_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, chatsvg_core.storage, chatsvg_core.ledger; "
        "assert 'hypothesis' not in sys.modules and 'pytest' not in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('hypothesis', 'pytest'))"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(src)})
