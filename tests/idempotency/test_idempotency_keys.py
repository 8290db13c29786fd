"""Key rules and scopes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import InvalidIdempotencyKey, PermanentError
from chatsvg_core.idempotency import (
    MAX_KEY_LENGTH,
    MAX_OPERATION_LENGTH,
    MAX_OWNER_LENGTH,
    KeyRule,
    idempotency_scope,
    parse_scope,
    validate_idempotency_key,
)
from chatsvg_core.testing import idempotency_keys, invalid_idempotency_keys

# --- keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "8e03978e-40d5-43e8-bc93-6894a57f9324",
        "order 42 / retry",
        "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
        "x" * MAX_KEY_LENGTH,
    ],
)
def test_valid_keys_are_returned_unchanged(key: str) -> None:
    assert validate_idempotency_key(key) is key


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", KeyRule.EMPTY),
        ("x" * (MAX_KEY_LENGTH + 1), KeyRule.TOO_LONG),
        ("x" * 10_000_000, KeyRule.TOO_LONG),
        (" key", KeyRule.SURROUNDING_WHITESPACE),
        ("key ", KeyRule.SURROUNDING_WHITESPACE),
        ("key\n", KeyRule.SURROUNDING_WHITESPACE),
        ("\tkey", KeyRule.SURROUNDING_WHITESPACE),
        (" ", KeyRule.SURROUNDING_WHITESPACE),
        ("ke\ty", KeyRule.NOT_PRINTABLE_ASCII),
        ("k\x00y", KeyRule.NOT_PRINTABLE_ASCII),
        ("k\x7fy", KeyRule.NOT_PRINTABLE_ASCII),
        ("clé", KeyRule.NOT_PRINTABLE_ASCII),
        ("key\u00a0x", KeyRule.NOT_PRINTABLE_ASCII),
        ("\U0001f511", KeyRule.NOT_PRINTABLE_ASCII),
        (b"bytes-key", KeyRule.NOT_A_STRING),
        (None, KeyRule.NOT_A_STRING),
    ],
)
def test_invalid_keys_name_the_rule(key: object, rule: str) -> None:
    with pytest.raises(InvalidIdempotencyKey) as info:
        validate_idempotency_key(key)
    error = info.value
    assert error.fields["rule"] == rule
    assert isinstance(error, PermanentError)
    assert error.http_status == 400
    assert len(error.fields["key"]) <= 43
    assert error.fields["key"].isascii()
    assert error.fields["key"].isprintable()


def test_error_preview_is_truncated_and_escaped() -> None:
    with pytest.raises(InvalidIdempotencyKey) as info:
        validate_idempotency_key("é" * 300)
    assert info.value.fields["key"] == "\\xe9" * 40 + "..."
    assert info.value.to_dict()["rule"] == "too_long"


@given(idempotency_keys())
def test_generated_valid_keys_pass(key: str) -> None:
    assert validate_idempotency_key(key) == key


@given(invalid_idempotency_keys())
def test_generated_invalid_keys_fail(key: str) -> None:
    with pytest.raises(InvalidIdempotencyKey) as info:
        validate_idempotency_key(key)
    assert info.value.fields["rule"] in {
        KeyRule.EMPTY,
        KeyRule.TOO_LONG,
        KeyRule.SURROUNDING_WHITESPACE,
        KeyRule.NOT_PRINTABLE_ASCII,
    }


@given(st.text(max_size=300))
def test_a_key_passes_exactly_when_it_keeps_every_rule(key: str) -> None:
    keeps = (
        1 <= len(key) <= MAX_KEY_LENGTH
        and all(0x20 <= ord(c) <= 0x7E for c in key)
        and key == key.strip()
    )
    if keeps:
        assert validate_idempotency_key(key) == key
    else:
        with pytest.raises(InvalidIdempotencyKey):
            validate_idempotency_key(key)


# --- scopes ------------------------------------------------------------------------


def test_scope_format() -> None:
    assert idempotency_scope("user-42") == "7:user-42"
    assert idempotency_scope("user-42", "generate") == "7:user-42/8:generate"
    assert idempotency_scope("a/1:b") == "5:a/1:b"
    assert idempotency_scope("a", "b") == "1:a/1:b"
    assert idempotency_scope("ünï/cødé") == "8:ünï/cødé"


def test_separator_injection_cannot_forge_a_scope() -> None:
    # An owner whose id spells another owner's scope with an operation.
    forged = idempotency_scope("a/1:b")
    honest = idempotency_scope("a", "b")
    assert forged != honest
    assert parse_scope(forged) == ("a/1:b", None)
    assert parse_scope(honest) == ("a", "b")


owners = st.text(min_size=1, max_size=MAX_OWNER_LENGTH)
operations = st.none() | st.text(min_size=1, max_size=MAX_OPERATION_LENGTH)
tricky_parts = st.text(alphabet="a1:/0 \\%\u00e9\U0001f600", min_size=1, max_size=12)


@given(owner=owners | tricky_parts, operation=operations | tricky_parts)
@settings(max_examples=200)
def test_scope_round_trips(owner: str, operation: str | None) -> None:
    scope = idempotency_scope(owner, operation)
    assert parse_scope(scope) == (owner, operation)
    assert len(scope) <= 512


@given(
    a=st.tuples(tricky_parts, st.none() | tricky_parts),
    b=st.tuples(tricky_parts, st.none() | tricky_parts),
)
@settings(max_examples=300)
def test_distinct_owner_operation_pairs_never_share_a_scope(
    a: tuple[str, str | None], b: tuple[str, str | None]
) -> None:
    assert (idempotency_scope(*a) == idempotency_scope(*b)) == (a == b)


@pytest.mark.parametrize(
    "junk",
    ["", "x", "3:ab", "2:ab/", "2:ab/0:", "02:ab", "2:abc", "1:a/1:b/1:c", "\uff11:a", "2:ab|1:c"],
)
def test_parse_scope_refuses_what_idempotency_scope_cannot_make(junk: str) -> None:
    with pytest.raises(ValueError, match="not a scope"):
        parse_scope(junk)


@pytest.mark.parametrize(
    ("owner", "operation", "error"),
    [
        ("", None, ValueError),
        ("x" * (MAX_OWNER_LENGTH + 1), None, ValueError),
        ("alice", "", ValueError),
        ("alice", "x" * (MAX_OPERATION_LENGTH + 1), ValueError),
        ("al\ud800ice", None, ValueError),
        (42, None, TypeError),
    ],
)
def test_bad_owners_and_operations_are_programming_errors(
    owner: object, operation: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        idempotency_scope(owner, operation)  # type: ignore[arg-type]
