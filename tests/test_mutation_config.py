"""benchmarks/mutation.py's tables name files and tests that exist (docs/mutation.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "mutation_script", ROOT / "benchmarks/mutation.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _exists(node: str) -> bool:
    path, _, name = node.partition("::")
    return (ROOT / path).exists() and (not name or f"def {name}(" in (ROOT / path).read_text())


def test_every_target_names_a_module_and_tests_that_exist() -> None:
    m = _script()
    for module, tests in m.TARGETS.values():
        assert (ROOT / module).is_file(), module
        assert all(_exists(t) for t in tests), tests
    for table in (m.DESELECT, m.PROCESS_TESTS, m.EQUIVALENT):
        assert set(table) <= set(m.TARGETS)
    assert all(_exists(t) for tests in m.DESELECT.values() for t in tests)
    for rules in m.PROCESS_TESTS.values():
        for pattern, tests in rules:
            assert pattern.startswith("x") and all(_exists(t) for t in tests), (pattern, tests)


def test_each_equivalent_names_its_lines_and_a_reason() -> None:
    m = _script()
    for rules in m.EQUIVALENT.values():
        for pattern, lines, why in rules:
            assert pattern.startswith("x") and pattern.endswith("__mutmut_*")
            assert [ln[0] for ln in lines].count("-") >= 1, lines
            assert all(ln[0] in "+-" and ln[1:] == " ".join(ln[1:].split()) for ln in lines)
            assert len(why) > 10


def test_a_survivor_matches_its_equivalent_by_its_diff_not_its_number() -> None:
    m = _script()
    diff = (
        "--- src/chatsvg_core/ledger/_ops.py\n+++ src/chatsvg_core/ledger/_ops.py\n"
        "@@ -1,3 +1,3 @@\n-    if amount < 0:\n+    if amount <= 0:\n"
    )
    changed = m._changed_lines(diff)
    assert changed == ("-if amount < 0:", "+if amount <= 0:")
    assert m._equivalent("ledger", "chatsvg_core.ledger._ops.x_adjust__mutmut_99", changed)
    assert m._equivalent("ledger", "chatsvg_core.ledger._ops.x_charge__mutmut_1", changed) is None
    assert m._equivalent("retry", "chatsvg_core.ledger._ops.x_adjust__mutmut_1", changed) is None
