"""The unvalidated constructions of the hot path equal the validated models they stand for.

``chatsvg_core._construct`` builds the library's own models without pydantic's
per-field pass when every value is already what validation would make of it;
these properties hold each use equal to the validated model (or to the same
refusal), on plain values and on values validation converts or refuses.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core.ledger._ops import entry
from chatsvg_core.storage import EntryKind, JobResult, LedgerEntry
from chatsvg_core.storage._jobs import _result
from chatsvg_core.storage._sql import _ENCODE, _dump

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included
    st.text(max_size=6),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
_ODD = st.one_of(
    st.binary(max_size=3),
    st.tuples(st.integers()),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
    st.sets(st.integers(), max_size=2),
    st.builds(lambda: [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]),  # past the walk's depth
)


def _outcome(make: Any) -> tuple[str, Any]:
    try:
        model = make()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return "error", type(exc).__name__
    return "model", (model, model.model_dump(), model.model_dump_json())


def _times() -> st.SearchStrategy[datetime]:
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return st.sampled_from(
        [
            base,
            base.replace(tzinfo=None),
            base.astimezone(timezone(timedelta(hours=2))),
            base + timedelta(microseconds=7),
        ]
    )


@settings(max_examples=300)
@given(
    metadata=st.one_of(
        st.dictionaries(st.text(max_size=5), _JSON, max_size=4),
        st.dictionaries(st.text(max_size=5), st.one_of(_JSON, _ODD), max_size=3),
        st.none(),
    ),
    job_id=st.one_of(st.text(min_size=1, max_size=8), st.sampled_from([7, None])),
    svg=st.one_of(st.text(max_size=8), st.sampled_from([b"<svg/>", None])),
    at=_times(),
)
def test_job_result_equals_validation(
    metadata: dict[str, Any] | None, job_id: Any, svg: Any, at: datetime
) -> None:
    from chatsvg_core._clock import utc

    try:
        now = utc(at)
    except ValueError:
        return  # complete_job refuses a naive time before building the result
    fast = _outcome(lambda: _result(job_id, svg, metadata, now))
    slow = _outcome(
        lambda: JobResult(job_id=job_id, svg=svg, metadata=dict(metadata or {}), created_at=now)
    )
    assert fast == slow


def test_job_result_does_not_share_the_callers_containers() -> None:
    usage = {"total_tokens": 3}
    result = _result("j", "<svg/>", {"usage": usage, "list": [1]}, datetime.now(UTC))
    usage["total_tokens"] = 4
    assert result.metadata["usage"] == {"total_tokens": 3}


@settings(max_examples=300)
@given(
    entry_id=st.one_of(st.text(max_size=6), st.sampled_from([7, None])),
    owner=st.one_of(
        st.text(min_size=1, max_size=8), st.sampled_from(["", "o" * 255, "o" * 256, 7])
    ),
    kind=st.one_of(st.sampled_from(list(EntryKind)), st.sampled_from(["charge", "nope", 3])),
    amount=st.one_of(st.integers(), st.sampled_from([True, 1.0, 2.5, "3"])),
    ref=st.one_of(st.none(), st.text(max_size=5), st.just(7)),
    memo=st.one_of(st.none(), st.text(max_size=5), st.just(b"m")),
    at=_times(),
)
def test_ledger_entry_equals_validation(
    entry_id: Any, owner: Any, kind: Any, amount: Any, ref: Any, memo: Any, at: datetime
) -> None:
    fields = {
        "id": entry_id,
        "owner": owner,
        "kind": kind,
        "amount": amount,
        "ref": ref,
        "memo": memo,
        "created_at": at,
    }
    fast = _outcome(lambda: entry(**fields))
    slow = _outcome(lambda: LedgerEntry(**fields))
    assert fast == slow
    if fast[0] == "model":
        assert type(fast[1][0].kind) is EntryKind


@settings(max_examples=300)
@given(
    value=st.one_of(
        _JSON,
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), _JSON, max_size=3),
        st.dictionaries(st.text(max_size=3), _ODD, max_size=2),
    )
)
def test_dump_equals_the_json_encoder(value: Any) -> None:
    def run(fn: Any) -> tuple[str, Any]:
        try:
            return "text", fn(value)
        except (ValueError, TypeError) as exc:
            return "error", type(exc).__name__

    assert run(_dump) == run(_ENCODE)


def test_dump_refuses_nan_as_the_encoder_does() -> None:
    with pytest.raises(ValueError):
        _dump({"x": float("nan")})
    assert json.loads(_dump({"b": [1.5, None], "a": "é"})) == {"a": "é", "b": [1.5, None]}


def test_remembered_request_json_is_used_once_and_only_for_that_dict() -> None:
    from chatsvg_core.jobs import new_job
    from chatsvg_core.storage._sql import SQLTransaction, _request_json, remember_request_json

    now = datetime(2026, 1, 1, tzinfo=UTC)
    job = new_job(job_id="j1", owner="o", request={"prompt": "x"}, request_hash="h", now=now)
    request = job.__dict__["request"]
    other = dict(request)
    remember_request_json(request, "REMEMBERED")
    assert _request_json(other) == _dump(other)  # another dict, even an equal one
    assert _request_json(request) == "REMEMBERED"
    assert _request_json(request) == _dump(request)  # taken once

    class _Tx(SQLTransaction):
        def _ts(self, value: datetime) -> Any:
            return value

    remember_request_json(request, "REMEMBERED")
    assert _Tx()._job_params(job)[9] == "REMEMBERED"
    assert _Tx()._job_params(job)[9] == _dump(request)


def test_built_marks_the_fields_given() -> None:
    """``built``'s fields set is the keys of ``data``: every field (the set copied
    from the class's field names) or, given fewer, just those."""
    from chatsvg_core._construct import built

    fields = {
        "id": "e1",
        "owner": "o",
        "kind": EntryKind.CHARGE,
        "amount": -3,
        "ref": "j1",
        "memo": None,
        "created_at": datetime(2026, 3, 1, tzinfo=UTC),
    }
    whole = built(LedgerEntry, dict(fields))
    assert whole.model_fields_set == LedgerEntry(**fields).model_fields_set == set(fields)
    again = built(LedgerEntry, dict(fields))
    assert again.model_fields_set is not whole.model_fields_set  # each its own set
    fewer = {k: v for k, v in fields.items() if k != "memo"}
    assert built(LedgerEntry, fewer).model_fields_set == LedgerEntry(**fewer).model_fields_set
