"""``ledger._ops.entry``: plain values skip validation and make what validation makes.

Every charge, refund and grant builds one entry, so ``entry`` builds the
library's own plain values without pydantic's validation. These tests check
that the fast path is taken exactly when it may be (the range edges included)
and that whatever path is taken, the result equals the validated model or the
same error is raised.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from chatsvg_core.ledger._ops import entry
from chatsvg_core.storage import EntryKind, LedgerEntry

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLAIN: dict[str, Any] = {
    "id": "e-1",
    "owner": "alice",
    "kind": EntryKind.CHARGE,
    "amount": -3,
    "ref": "job-1",
    "memo": "a memo",
    "created_at": NOW,
}


class _Str(str):
    """A str subclass: validation hands back a plain str, so no fast path."""


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a plain entry went through validation")


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"id": ""},
        {"owner": "a"},
        {"owner": "o" * 255},
        {"amount": 0},
        {"amount": 10**30},
        {"ref": None},
        {"memo": None},
        {"ref": "", "memo": ""},
        *({"kind": kind} for kind in EntryKind),
    ],
    ids=repr,
)
def test_plain_entries_skip_validation_and_equal_the_model(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]
) -> None:
    fields = {**PLAIN, **change}
    want = LedgerEntry(**fields)
    with monkeypatch.context() as patch:
        patch.setattr(LedgerEntry, "__init__", _refuse)
        got = entry(**fields)
    assert type(got) is LedgerEntry
    assert got == want
    assert got.model_dump() == want.model_dump()
    # Frozen like a validated one.
    with pytest.raises(ValidationError):
        got.amount = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "change",
    [
        {"owner": ""},
        {"owner": "o" * 256},
        {"id": 7},
        {"owner": _Str("alice")},
        {"id": _Str("e-1")},
        {"kind": "charge"},
        {"amount": True},
        {"amount": -3.0},
        {"ref": _Str("job-1")},
        {"memo": _Str("m")},
        {"ref": 5},
        {"memo": 5},
        {"created_at": NOW.replace(tzinfo=None)},
        {"created_at": NOW.astimezone(timezone(timedelta(hours=2)))},
        {"created_at": "2026-03-01T12:00:00Z"},
    ],
    ids=repr,
)
def test_anything_else_goes_through_validation_with_its_outcome(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]
) -> None:
    fields = {**PLAIN, **change}
    try:
        want: LedgerEntry | type[Exception] = LedgerEntry(**fields)
    except ValidationError:
        want = ValidationError
    validated: list[bool] = []
    real_init = LedgerEntry.__init__

    def spy(self: LedgerEntry, **data: Any) -> None:
        validated.append(True)
        real_init(self, **data)

    with monkeypatch.context() as patch:
        patch.setattr(LedgerEntry, "__init__", spy)
        if want is ValidationError:
            with pytest.raises(ValidationError):
                entry(**fields)
        else:
            got = entry(**fields)
            assert isinstance(want, LedgerEntry)
            assert got == want and got.model_dump() == want.model_dump()
    assert validated == [True]
