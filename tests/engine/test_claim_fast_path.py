"""The claim's shortcuts agree with the reference path they replace (issue 15).

A claim rebuilds the job's request from its stored JSON without validation
when every value is one validation keeps (``stored_request``), and charges
through the ledger's engine entry point, which skips the argument checks of
the public ``charge`` only for values those checks would pass unchanged.
Each property here compares a shortcut with the reference on odd inputs too.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chatsvg_core import GenerationRequest
from chatsvg_core.engine._validate import stored_request
from chatsvg_core.generate import Detail


class _Str(str):
    pass


class _Int(int):
    pass


_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5000),
    st.sampled_from([15, 16, 512, 4096, 4097, 2**63, 1.0, 512.0, "512", b"x", ["a"], {"a": 1}]),
    st.text(max_size=6),
    st.sampled_from(["flat", "line-art", "-x", "a" * 32, "a" * 33, "flat\n", "FLAT", "gpt-4o"]),
    st.sampled_from(["a b", "x" * 512, "x" * 513, "m\n", "simple", "standard", "detailed", ""]),
    st.sampled_from(list(Detail)),
    st.sampled_from([_Str("flat"), _Str("simple"), _Str("a cat"), _Int(512)]),
)
_FIELDS = ["prompt", "style", "width", "height", "detail", "model"]
_STORED = st.fixed_dictionaries(
    {
        "prompt": st.text(max_size=20),
        "style": st.none() | st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True),
        "width": st.integers(16, 4096),
        "height": st.integers(16, 4096),
        "detail": st.sampled_from(["simple", "standard", "detailed"]),
        "model": st.none() | st.from_regex(r"[!-~]{1,20}", fullmatch=True),
    }
)
"""What submit stores: a validated request's JSON dump."""


_PLAIN: dict[str, Any] = {
    "prompt": "a",
    "style": None,
    "width": 16,
    "height": 16,
    "detail": "simple",
    "model": None,
}


def _spoilt(stored: dict[str, Any], key: Any, odd: Any) -> dict[Any, Any]:
    return {**stored, key: odd}


def _without(stored: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if k != key}


@given(
    st.one_of(
        _STORED,
        # One field spoilt, added or left out: each rule on its own.
        st.builds(_spoilt, _STORED, st.sampled_from([*_FIELDS, "seed", 1]), _ODD),
        st.builds(_without, _STORED, st.sampled_from(_FIELDS)),
        st.dictionaries(st.sampled_from([*_FIELDS, "seed"]), _ODD, max_size=7),
    )
)
@settings(max_examples=300)
@example({**_PLAIN, "width": 15})
@example({**_PLAIN, "style": "Flat"})
@example({**_PLAIN, "detail": "Simple"})
@example({**_PLAIN, "width": True})
@example({**_PLAIN, "model": "m\n"})
@example({**_PLAIN, "detail": ["x"]})
@example(_without({**_PLAIN, "seed": None}, "model"))
def test_a_stored_request_is_built_as_validation_builds_it(data: dict[Any, Any]) -> None:
    try:
        want = GenerationRequest.model_validate(data)
    except ValidationError:
        with pytest.raises(ValidationError):
            stored_request(data)
        return
    got = stored_request(data)
    assert got == want
    assert got.__dict__ == want.__dict__
    assert [type(v) for v in got.__dict__.values()] == [type(v) for v in want.__dict__.values()]
    assert got.model_fields_set == want.model_fields_set
    assert got.model_dump(mode="json") == want.model_dump(mode="json")


@given(_STORED)
def test_what_submit_stores_takes_the_shortcut(data: dict[str, Any]) -> None:
    from chatsvg_core.engine import _validate

    calls: list[object] = []
    real = GenerationRequest.model_validate

    def counting(value: object) -> GenerationRequest:
        calls.append(value)
        return real(value)

    _validate.GenerationRequest.model_validate = counting  # type: ignore[method-assign]
    try:
        stored_request(data)
    finally:
        del _validate.GenerationRequest.model_validate
    assert calls == []
