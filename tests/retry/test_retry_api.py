"""The retry package's public surface: re-exported, documented, light to import."""

from __future__ import annotations

import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import chatsvg_core.retry as retry


def test_all_names_exist_are_unique_and_documented() -> None:
    names = retry.__all__
    assert len(names) == len(set(names))
    for name in names:
        obj = getattr(retry, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
            if inspect.isclass(obj):
                public = [
                    m
                    for m, v in vars(obj).items()
                    if not m.startswith("_") and (inspect.isfunction(v) or isinstance(v, property))
                ]
                for member in public:
                    assert inspect.getdoc(getattr(obj, member)), f"{name}.{member}"


def test_every_module_inside_the_package_is_private() -> None:
    modules = [m.name for m in pkgutil.iter_modules(retry.__path__)]
    assert modules
    assert all(name.startswith("_") for name in modules)


def test_importing_retry_pulls_in_neither_pytest_nor_hypothesis() -> None:
    code = (
        "import sys, chatsvg_core.retry; "
        "print(','.join(m for m in ('pytest', 'hypothesis', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(inspect.getfile(retry)).parents[2])},
    ).stdout.strip()
    assert out == ""
