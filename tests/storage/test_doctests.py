"""The examples in the docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "chatsvg_core.storage.memory",
    "chatsvg_core.storage._sync",
    "chatsvg_core.ledger._ledger",
    "chatsvg_core.ledger._policy",
    "chatsvg_core.ledger._sync",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
