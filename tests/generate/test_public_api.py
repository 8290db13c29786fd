"""The generate and testing packages: every public name exists and is documented."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["chatsvg_core.generate", "chatsvg_core.testing"])
def test_all_names_exist_and_have_docstrings(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        if callable(obj) and not name.isupper():
            assert obj.__doc__, f"{module}.{name} has no docstring"
    assert sorted(mod.__all__) == sorted(set(mod.__all__))


def test_private_modules_stay_private() -> None:
    mod = importlib.import_module("chatsvg_core.generate")
    public_modules = [n for n in vars(mod) if not n.startswith("_") and n not in mod.__all__]
    assert set(public_modules) <= {"annotations"}
