"""The idempotency package's public surface: what __all__ lists exists and is documented."""

from __future__ import annotations

import inspect

import pytest

import chatsvg_core.idempotency as idempotency
import chatsvg_core.testing as testing

IDEMPOTENCY_TESTING_NAMES = [
    name
    for name in testing.__all__
    if "idempotency" in name.lower()
    or name.startswith(("check_", "json_"))
    or name in {"StoreFactory", "unhashable_payloads", "run_idempotency_suite"}
]


@pytest.mark.parametrize("name", idempotency.__all__)
def test_public_names_exist_and_are_documented(name: str) -> None:
    value = getattr(idempotency, name)
    if inspect.isfunction(value) or inspect.isclass(value):
        assert inspect.getdoc(value), f"{name} has no docstring"
        assert not value.__module__.endswith(".__init__")


def test_all_is_complete() -> None:
    public = {n for n in vars(idempotency) if not n.startswith("_")}
    public -= {"annotations"}
    assert set(idempotency.__all__) == public
    assert len(set(idempotency.__all__)) == len(idempotency.__all__)


@pytest.mark.parametrize("name", IDEMPOTENCY_TESTING_NAMES)
def test_testing_names_are_documented(name: str) -> None:
    value = getattr(testing, name)
    if inspect.isfunction(value) or inspect.isclass(value):
        assert inspect.getdoc(value), f"{name} has no docstring"
