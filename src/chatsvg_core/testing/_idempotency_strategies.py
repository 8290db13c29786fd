"""Hypothesis strategies for idempotency: JSON payloads, reorderings, bad payloads, keys.

Hosts compose them to test their own request models, e.g. that their
request fingerprints ignore the fields they exclude.
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from chatsvg_core.idempotency import MAX_KEY_LENGTH, MAX_SAFE_INTEGER, canonical_json

__all__ = [
    "idempotency_keys",
    "invalid_idempotency_keys",
    "json_objects",
    "json_reorderings",
    "json_scalars",
    "json_text",
    "json_values",
    "unhashable_payloads",
]

# Characters that stress JCS: escapes, controls, U+007F, line separators,
# the top of the BMP (which UTF-16 orders after non-BMP characters) and astral.
_TRICKY = '"\\/\b\f\n\r\t\x00\x1f\x7f\u2028\u2029\ue000\uffef\uffff\U00010000\U0001f600\U0010ffff'


def json_text(*, max_size: int = 12) -> st.SearchStrategy[str]:
    """Unicode text without lone surrogates, biased toward characters JCS treats specially."""
    return st.text(
        alphabet=st.one_of(st.sampled_from(_TRICKY), st.characters(exclude_categories=["Cs"])),
        max_size=max_size,
    )


def _exact_big_integers() -> st.SearchStrategy[int]:
    # Integers beyond 2**53 that are exactly how ECMAScript writes a double:
    # what json.loads gives for a canonical text such as "36684765430851050".
    return st.floats(min_value=2.0**53, max_value=1e21, exclude_max=True).map(
        lambda f: int(canonical_json(f))
    ) | st.floats(max_value=-(2.0**53), min_value=-1e21, exclude_min=True).map(
        lambda f: int(canonical_json(f))
    )


def json_scalars() -> st.SearchStrategy[Any]:
    """``None``, booleans, integers, finite floats (incl. -0.0, subnormals), text.

    Integers are those within ±(2**53 - 1) and, beyond, those that are exact
    ECMAScript spellings of doubles.
    """
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
        _exact_big_integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        json_text(),
    )


def json_values(*, max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Any JSON value the canonicaliser must accept: nested dicts (str keys) and lists."""
    return st.recursive(
        json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(json_text(max_size=6), children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def json_objects(*, max_leaves: int = 25) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object (the usual shape of a request payload)."""
    return st.dictionaries(json_text(max_size=6), json_values(max_leaves=max_leaves), max_size=6)


@st.composite
def json_reorderings(draw: st.DrawFn, value: Any) -> Any:
    """The same JSON data as ``value`` with every object's members in a drawn order."""
    if isinstance(value, dict):
        names = draw(st.permutations(list(value)))
        return {name: draw(json_reorderings(value[name])) for name in names}
    if isinstance(value, list):
        return [draw(json_reorderings(item)) for item in value]
    return value


def _inexact(value: int) -> bool:
    try:
        return canonical_json(float(value)) != str(value)
    except OverflowError:
        return True


class _Opaque:
    """A custom object that is not JSON."""

    def __repr__(self) -> str:
        return "_Opaque()"


def _bad_leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([float("nan"), float("inf"), float("-inf")]),
        (
            st.integers(min_value=MAX_SAFE_INTEGER + 1)
            | st.integers(max_value=-MAX_SAFE_INTEGER - 1)
        ).filter(_inexact),
        st.binary(max_size=4),
        st.frozensets(st.integers(), max_size=3),
        st.sets(st.integers(), max_size=3),
        st.builds(_Opaque),
        st.complex_numbers(allow_nan=False, allow_infinity=False),
        st.dictionaries(
            st.one_of(st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False)),
            json_scalars(),
            min_size=1,
            max_size=2,
        ),
        st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=2).map(
            lambda s: "x" + s
        ),
    )


@st.composite
def unhashable_payloads(draw: st.DrawFn) -> Any:
    """A JSON structure with exactly one non-JSON value somewhere inside it.

    Non-JSON: NaN, ±infinity, integers no double holds exactly, bytes, sets,
    complex numbers, custom objects, non-string keys, lone surrogates.
    """
    value = draw(_bad_leaves())
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        if draw(st.booleans()):
            siblings = draw(st.lists(json_scalars(), max_size=3))
            siblings.insert(draw(st.integers(0, len(siblings))), value)
            value = siblings
        else:
            others = draw(st.dictionaries(json_text(max_size=4), json_scalars(), max_size=3))
            name = draw(json_text(max_size=4))
            value = {**{k: v for k, v in others.items() if k != name}, name: value}
    return value


_KEY_ALPHABET = string.ascii_letters + string.digits + string.punctuation + " "


def idempotency_keys() -> st.SearchStrategy[str]:
    """Keys every host must accept: 1-255 printable ASCII characters, no surrounding space."""
    return st.text(alphabet=_KEY_ALPHABET, min_size=1, max_size=MAX_KEY_LENGTH).filter(
        lambda key: key[0] != " " and key[-1] != " "
    )


def invalid_idempotency_keys() -> st.SearchStrategy[str]:
    """Keys that break a rule: empty, too long, surrounding whitespace, not printable ASCII."""
    return st.one_of(
        st.just(""),
        st.text(alphabet=_KEY_ALPHABET, min_size=MAX_KEY_LENGTH + 1, max_size=MAX_KEY_LENGTH + 40),
        st.tuples(idempotency_keys(), st.sampled_from([" ", "\t", "\n"]), st.booleans()).map(
            lambda t: t[1] + t[0] if t[2] else t[0] + t[1]
        ),
        st.tuples(
            idempotency_keys(),
            st.characters(exclude_characters=_KEY_ALPHABET),
        ).map(lambda t: t[0][: len(t[0]) // 2] + t[1] + t[0][len(t[0]) // 2 :]),
    )
