"""``ProviderOutput(...)`` fills plain values without validation; it equals validation.

Every provider builds one ``ProviderOutput`` per answer, so its ``__init__``
skips pydantic's validation when each value is one validation keeps as it
is. These properties hold that path to ``model_validate`` (which does not
pass through ``__init__``) on plain and odd values, missing and extra fields.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chatsvg_core.generate import ProviderOutput, TokenUsage, _provider


class _Str(str):
    pass


class _Float(float):
    pass


class _Usage(TokenUsage):
    pass


_FIELDS = ["text", "model", "provider", "usage", "latency_s", "finish_reason"]
_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, -1e-300, b"x", ["a"]]),
    st.text(max_size=5),
    st.sampled_from([_Str("s"), _Float(0.5), {"prompt_tokens": 1}, {}, "stop", "length"]),
    st.builds(TokenUsage, prompt_tokens=st.none() | st.integers(0, 9)),
    st.builds(_Usage, total_tokens=st.none() | st.integers(0, 9)),
)
_PLAIN = st.fixed_dictionaries(
    {
        "text": st.text(max_size=20),
        "model": st.text(max_size=5),
        "provider": st.text(max_size=5),
        "latency_s": st.floats(min_value=0.0, allow_infinity=True, allow_nan=False),
    },
    optional={
        "usage": st.builds(
            TokenUsage,
            prompt_tokens=st.none() | st.integers(0, 9),
            completion_tokens=st.none() | st.integers(0, 9),
        ),
        "finish_reason": st.none() | st.text(max_size=6),
    },
)
"""What providers pass: the fields' own types, some optional fields left out."""


def _spoilt(data: dict[str, Any], key: str, odd: Any) -> dict[str, Any]:
    return {**data, key: odd}


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _same(got: ProviderOutput, want: ProviderOutput, given: dict[str, Any]) -> None:
    assert got == want
    assert list(got.__dict__) == list(want.__dict__)
    for name, value in want.__dict__.items():
        mine = got.__dict__[name]
        assert type(mine) is type(value)
        # NaN never reaches here (ge=0 refuses it), so == is the value's identity.
        assert mine == value or mine is value
        if isinstance(value, float):
            assert math.copysign(1.0, mine) == math.copysign(1.0, value)
    if not isinstance(given.get("usage"), dict):
        assert got.usage is want.usage  # an instance given is kept, the default shared
    assert got.model_fields_set == want.model_fields_set
    assert got.__pydantic_extra__ == want.__pydantic_extra__
    assert got.__pydantic_private__ == want.__pydantic_private__
    assert got.model_dump() == want.model_dump()


@given(
    st.one_of(
        _PLAIN,
        st.builds(_spoilt, _PLAIN, st.sampled_from([*_FIELDS, "seed"]), _ODD),
        st.builds(_without, _PLAIN, st.sampled_from(_FIELDS)),
        st.dictionaries(st.sampled_from([*_FIELDS, "seed"]), _ODD, max_size=7),
    )
)
@settings(max_examples=400)
@example({"text": "t", "model": "m", "provider": "p", "latency_s": math.nan})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": -0.0})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": -1e-300})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": math.inf})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": 0})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": True})
@example({"text": _Str("t"), "model": "m", "provider": "p", "latency_s": 0.0})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": _Float(0.0)})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": 0.0, "usage": None})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": 0.0, "usage": {}})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": 0.0, "usage": _Usage()})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": 0.0, "finish_reason": 1})
@example({"text": "t", "model": "m", "provider": "p", "latency_s": 0.0, "seed": None})
@example({"text": "t", "model": "m", "latency_s": 0.0, "finish_reason": None, "usage": None})
def test_an_output_is_built_as_validation_builds_it(data: dict[str, Any]) -> None:
    try:
        want = ProviderOutput.model_validate(data)
    except ValidationError:
        with pytest.raises(ValidationError):
            ProviderOutput(**data)
        return
    _same(ProviderOutput(**data), want, data)


@given(_PLAIN)
def test_what_providers_pass_takes_the_fast_path(data: dict[str, Any]) -> None:
    # The fast path is the one taken: pydantic's __init__ is not reached.
    calls: list[dict[str, Any]] = []
    real = _provider.BaseModel.__init__

    def counting(self: Any, /, **given: Any) -> None:
        calls.append(given)
        real(self, **given)

    _provider.BaseModel.__init__ = counting  # type: ignore[method-assign]
    try:
        ProviderOutput(**data)
    finally:
        _provider.BaseModel.__init__ = real  # type: ignore[method-assign]
    assert calls == []


def test_model_validate_does_not_run_the_fast_init() -> None:
    # Base init to pydantic: validation of a dict never calls __init__ (so a
    # nested or JSON-validated output is checked exactly as before).
    assert ProviderOutput.__pydantic_custom_init__ is False
    with pytest.raises(ValidationError):
        ProviderOutput.model_validate(
            {"text": "t", "model": "m", "provider": "p", "latency_s": -1.0}
        )
