"""The public surface: one ``__init__`` with ``__all__``, documented, light to import."""

from __future__ import annotations

import inspect
import subprocess
import sys

import chatsvg_core


def test_all_names_exist_and_are_unique() -> None:
    names = chatsvg_core.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(chatsvg_core, name), name


def test_every_public_class_and_function_has_a_docstring() -> None:
    missing = [
        name
        for name in chatsvg_core.__all__
        if (inspect.isclass(obj := getattr(chatsvg_core, name)) or inspect.isfunction(obj))
        and not inspect.getdoc(obj)
    ]
    assert missing == []


def test_public_modules_are_only_the_documented_ones() -> None:
    # Anything outside these is private (underscore modules) by convention.
    assert chatsvg_core.__name__ == "chatsvg_core"
    assert not [n for n in chatsvg_core.__all__ if n.startswith("_") and n != "__version__"]


def test_import_pulls_in_neither_pytest_nor_hypothesis() -> None:
    code = (
        "import sys, chatsvg_core; "
        "bad = [m for m in ('pytest', 'hypothesis') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_issue_smoke_command() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import chatsvg_core as c; print(c.JobStatus.QUEUED, c.ChatSVGError)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "queued <class 'chatsvg_core.errors.ChatSVGError'>"
