"""The one error hierarchy: classification by class, structured fields, docs in step."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import pytest

import chatsvg_core
from chatsvg_core import errors

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ALL = [
    *(getattr(errors, name) for name in errors.__all__),
    # Finer errors defined next to the code that raises them.
    chatsvg_core.LedgerConflict,
    chatsvg_core.NoReservation,
    chatsvg_core.InvalidReference,
    chatsvg_core.StoreClosed,
]
ABSTRACT = {errors.ChatSVGError, errors.ProviderError, errors.ExtractionError, errors.StorageError}


def test_every_error_derives_from_the_root() -> None:
    for cls in ALL:
        assert issubclass(cls, errors.ChatSVGError)


@pytest.mark.parametrize("cls", sorted(set(ALL) - ABSTRACT, key=lambda c: c.__name__))
def test_every_concrete_error_is_transient_xor_permanent(cls: type[errors.ChatSVGError]) -> None:
    transient = issubclass(cls, errors.TransientError)
    permanent = issubclass(cls, errors.PermanentError)
    assert transient != permanent
    assert cls.transient is transient


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in ALL]
    assert len(codes) == len(set(codes))


def test_fields_are_structured_and_readable_as_attributes() -> None:
    exc = errors.InsufficientCredits("not enough", owner="alice", balance=3, amount=5)
    assert exc.owner == "alice"
    assert exc.fields["balance"] == 3
    assert exc.to_dict() == {
        "code": "insufficient_credits",
        "message": "not enough",
        "transient": False,
        "owner": "alice",
        "balance": 3,
        "amount": 5,
    }
    with pytest.raises(AttributeError):
        _ = exc.not_a_field


def test_to_dict_makes_odd_values_json_ready() -> None:
    exc = errors.SVGRejected("bad", reason="depth", limit=(1, 2), detail={"x": object()})
    body = exc.to_dict()
    assert body["limit"] == [1, 2]
    assert isinstance(body["detail"]["x"], str)


def test_errors_pickle_with_their_fields() -> None:
    exc = errors.ProviderTransientError("429", provider="openai", status=429, retry_after=2.0)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.ProviderTransientError
    assert back.fields == exc.fields
    assert str(back) == "429"


def test_docs_table_lists_every_error_with_code_and_status() -> None:
    text = DOCS.read_text()
    for cls in ALL:
        row = next(
            (line for line in text.splitlines() if line.startswith(f"| `{cls.__name__}` |")), None
        )
        assert row is not None, f"{cls.__name__} missing from docs/errors.md"
        assert f"`{cls.code}`" in row
        assert f"| {cls.http_status} |" in row
        assert inspect.getdoc(cls)
