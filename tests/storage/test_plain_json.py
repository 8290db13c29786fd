"""``_construct.plain_json``: vouches for exactly what its docstring says, copying containers.

The property tests in test_construct.py hold a result built from
``plain_json`` equal to the validated model; these pin which values take the
fast path at all (exact builtin types, finite floats, str keys, at most 16
containers deep), so that a change that sends plain values to validation, or
vouches for what it should not, fails here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import JsonValue, TypeAdapter

from chatsvg_core._construct import NOT_PLAIN, plain_json

_VALIDATE = TypeAdapter(JsonValue).validate_python

_PLAIN_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_PLAIN = st.recursive(
    _PLAIN_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


def _nested(containers: int, kind: str, leaf: Any = 1) -> Any:
    value: Any = leaf
    for _ in range(containers):
        value = [value] if kind == "list" else {"k": value}
    return value


def _containers(value: Any) -> list[int]:
    """The ids of every list and dict in ``value``."""
    if isinstance(value, dict):
        return [id(value), *(i for item in value.values() for i in _containers(item))]
    if isinstance(value, list):
        return [id(value), *(i for item in value for i in _containers(item))]
    return []


@given(_PLAIN)
def test_plain_values_are_vouched_for_equal_to_validation_and_copied(value: Any) -> None:
    got = plain_json(value)
    assert got is not NOT_PLAIN
    assert got == _VALIDATE(value)
    # Validation copies containers; so must the fast path (the caller's dict
    # or list may change after the model is built).
    assert not set(_containers(got)) & set(_containers(value))


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_sixteen_containers_deep_is_plain_and_seventeen_is_not(kind: str) -> None:
    assert plain_json(_nested(16, kind)) == _nested(16, kind)
    assert plain_json(_nested(17, kind)) is NOT_PLAIN
    # Inside the deepest container allowed, what is not plain is still found.
    assert plain_json(_nested(16, kind, leaf=math.nan)) is NOT_PLAIN
    assert plain_json(_nested(16, kind, leaf=_Str("a"))) is NOT_PLAIN


class _Str(str):
    pass


class _Int(int):
    pass


class _Dict(dict[str, Any]):
    pass


class _List(list[Any]):
    pass


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        _Str("a"),
        _Int(1),
        _Dict(a=1),
        _List([1]),
        (1, 2),
        {1: 2},
        {_Str("a"): 1},
        {"a": math.nan},
        [1, math.inf],
        [[{"a": [_Str("x")]}]],
        {"a": {"b": (1,)}},
        b"x",
        {1, 2},
        1j,
    ],
    ids=repr,
)
def test_anything_else_is_not_vouched_for(value: Any) -> None:
    assert plain_json(value) is NOT_PLAIN


def test_a_built_model_is_the_validated_one_to_pydantic_too() -> None:
    # built() stands for cls(**data): what pydantic keeps beside the fields (the
    # set of fields given, extras, private state) must match as well, or
    # model_dump(exclude_unset=True) and copies would differ.
    from datetime import UTC, datetime

    from chatsvg_core._construct import built
    from chatsvg_core.storage import JobResult

    data = {"job_id": "j", "svg": "<svg/>", "metadata": {}, "created_at": datetime.now(UTC)}
    want = JobResult(**data)
    got = built(JobResult, dict(data))
    assert got == want
    assert got.model_fields_set == want.model_fields_set
    assert got.model_dump(exclude_unset=True) == want.model_dump(exclude_unset=True)
    assert got.model_extra == want.model_extra
    assert got.model_copy(update={"svg": "<svg></svg>"}).svg == "<svg></svg>"
    # The slots are set through BaseModel's own descriptors: the data passed is
    # the instance's dict, the model stays frozen, and it pickles as validated.
    import pickle

    import pydantic

    given = dict(data)
    got = built(JobResult, given)
    assert got.__dict__ is given
    assert got.__pydantic_private__ is None and got.__pydantic_extra__ is None
    with pytest.raises(pydantic.ValidationError):
        got.svg = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(got)) == want
