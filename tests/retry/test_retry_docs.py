"""The retry docs and docstrings say what the code does: their examples run."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

from chatsvg_core.retry import RetryPolicy, get_testing, set_on_retry_hooks

DOC = Path(__file__).resolve().parents[2] / "docs" / "retry.md"
BLOCK = re.compile(r"```(python|json)\n(.*?)```", re.DOTALL)
BLOCKS = BLOCK.findall(DOC.read_text())

MODULES = [
    "chatsvg_core.retry._budget",
    "chatsvg_core.retry._classify",
    "chatsvg_core.retry._hooks",
    "chatsvg_core.retry._policy",
    "chatsvg_core.retry._retry_after",
]


def test_the_page_has_examples() -> None:
    assert sum(1 for kind, _ in BLOCKS if kind == "python") >= 5
    assert "img/retry_jitter.png" in DOC.read_text()
    assert (DOC.parent / "img" / "retry_jitter.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "code", [code for kind, code in BLOCKS if kind == "python"], ids=lambda c: c.split("\n")[0]
)
def test_python_examples_run(code: str) -> None:
    try:
        exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
    finally:
        set_on_retry_hooks(None)
    assert get_testing() is None


@pytest.mark.parametrize("code", [code for kind, code in BLOCKS if kind == "json"])
def test_json_settings_examples_load(code: str) -> None:
    policy = RetryPolicy.model_validate_json(code)
    assert RetryPolicy.model_validate_json(policy.model_dump_json()) == policy


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
