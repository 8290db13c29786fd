"""Client idempotency keys: the rules a key must keep, and the scope that owns it.

A key is what the client sends (the ``Idempotency-Key`` header of the IETF
httpapi draft and of Stripe). It only means something inside a *scope*: the
same key from two owners, or for two operations of one owner, names two
different requests. :func:`idempotency_scope` builds that scope string.
"""

from __future__ import annotations

from typing import Final

from chatsvg_core.errors import InvalidIdempotencyKey

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_OPERATION_LENGTH",
    "MAX_OWNER_LENGTH",
    "KeyRule",
    "idempotency_scope",
    "parse_scope",
    "validate_idempotency_key",
]

MAX_KEY_LENGTH: Final = 255
"""The longest key accepted, in characters (all ASCII, so also in bytes)."""

MAX_OWNER_LENGTH: Final = 255
"""The longest owner id a scope takes (the same limit as ``Job.owner``)."""

MAX_OPERATION_LENGTH: Final = 128
"""The longest operation name a scope takes."""

_PREVIEW: Final = 40


class KeyRule:
    """The names of the key rules, as found in ``InvalidIdempotencyKey.rule``."""

    NOT_A_STRING: Final = "not_a_string"
    """The key is not a ``str`` (decode header bytes as ASCII first)."""
    EMPTY: Final = "empty"
    """The key has no characters."""
    TOO_LONG: Final = "too_long"
    """The key has more than :data:`MAX_KEY_LENGTH` characters."""
    SURROUNDING_WHITESPACE: Final = "surrounding_whitespace"
    """The key starts or ends with whitespace (usually a copy-paste or header-folding slip)."""
    NOT_PRINTABLE_ASCII: Final = "not_printable_ascii"
    """The key holds a character outside printable ASCII (U+0020..U+007E)."""


def _preview(key: str) -> str:
    # Shown to the client and written to logs: bounded and free of control bytes.
    shown = key[:_PREVIEW].encode("unicode_escape").decode("ascii")
    return shown + "..." if len(key) > _PREVIEW else shown


def _refuse(rule: str, key: str, why: str) -> InvalidIdempotencyKey:
    return InvalidIdempotencyKey(f"invalid idempotency key: {why}", rule=rule, key=_preview(key))


def validate_idempotency_key(key: object) -> str:
    """Return ``key`` unchanged if it keeps every rule, else raise naming the rule broken.

    Rules, checked in this order: a ``str``; 1 to :data:`MAX_KEY_LENGTH`
    characters; no leading or trailing whitespace; printable ASCII only
    (U+0020..U+007E, so inner spaces are allowed). The length is checked
    before anything reads the whole key, so a hostile megabyte-long header is
    refused at once.

    >>> validate_idempotency_key("order-7f3a")
    'order-7f3a'

    Raises:
        InvalidIdempotencyKey: with ``rule`` (a :class:`KeyRule` value) and
            ``key`` (escaped, truncated to 40 characters).
    """
    if not isinstance(key, str):
        raise InvalidIdempotencyKey(
            f"invalid idempotency key: expected str, got {type(key).__name__}",
            rule=KeyRule.NOT_A_STRING,
            key=_preview(repr(key)),
        )
    if not key:
        raise _refuse(KeyRule.EMPTY, key, "it is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise _refuse(
            KeyRule.TOO_LONG, key, f"{len(key)} characters, at most {MAX_KEY_LENGTH} allowed"
        )
    if key[0].isspace() or key[-1].isspace():
        raise _refuse(KeyRule.SURROUNDING_WHITESPACE, key, "leading or trailing whitespace")
    if not (key.isascii() and key.isprintable()):
        raise _refuse(
            KeyRule.NOT_PRINTABLE_ASCII, key, "only printable ASCII (U+0020..U+007E) is allowed"
        )
    return key


def _check_part(what: str, value: object, limit: int) -> str:
    # Owners and operations come from the host, not the client: a bad one is a
    # programming error, hence ValueError rather than a client-facing error.
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not 1 <= len(value) <= limit:
        raise ValueError(f"{what} must have 1 to {limit} characters, got {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} holds a lone surrogate, which no store can keep") from None
    return value


def idempotency_scope(owner: str, operation: str | None = None) -> str:
    """The scope string for keys sent by ``owner`` (optionally, for one ``operation``).

    The format is length-prefixed, so any owner id, whatever characters it
    holds (``:``, ``/``, digits, non-ASCII), maps to exactly one scope and
    back (:func:`parse_scope`)::

        <len(owner)>:<owner>                         no operation
        <len(owner)>:<owner>/<len(operation)>:<op>   with an operation

    Lengths count characters (code points) in decimal. ``("a/1:b", None)``
    gives ``5:a/1:b`` while ``("a", "b")`` gives ``1:a/1:b``: the prefix says
    where the owner ends, so no choice of owner can forge another scope.

    >>> idempotency_scope("user-42")
    '7:user-42'
    >>> idempotency_scope("user-42", "generate")
    '7:user-42/8:generate'

    Raises:
        ValueError: an empty or too long owner (:data:`MAX_OWNER_LENGTH`) or
            operation (:data:`MAX_OPERATION_LENGTH`), or a lone surrogate.
        TypeError: a part that is not a ``str``.
    """
    owner = _check_part("owner", owner, MAX_OWNER_LENGTH)
    scope = f"{len(owner)}:{owner}"
    if operation is not None:
        operation = _check_part("operation", operation, MAX_OPERATION_LENGTH)
        scope += f"/{len(operation)}:{operation}"
    return scope


def _read_part(scope: str, start: int) -> tuple[str, int]:
    colon = scope.find(":", start, start + 4)
    digits = scope[start:colon] if colon > start else ""
    if not digits.isdigit() or not digits.isascii() or (digits[0] == "0"):
        raise ValueError(f"not a scope made by idempotency_scope: {scope!r}")
    end = colon + 1 + int(digits)
    if end > len(scope):
        raise ValueError(f"not a scope made by idempotency_scope: {scope!r}")
    return scope[colon + 1 : end], end


def parse_scope(scope: str) -> tuple[str, str | None]:
    """Split a scope from :func:`idempotency_scope` back into ``(owner, operation)``.

    >>> parse_scope("7:user-42/8:generate")
    ('user-42', 'generate')

    Raises:
        ValueError: ``scope`` was not made by :func:`idempotency_scope`.
    """
    owner, end = _read_part(scope, 0)
    operation: str | None = None
    if end != len(scope):
        if scope[end] != "/":
            raise ValueError(f"not a scope made by idempotency_scope: {scope!r}")
        operation, end = _read_part(scope, end + 1)
    # Rebuilding checks the limits too, so parse and build are exact inverses.
    try:
        rebuilt = idempotency_scope(owner, operation)
    except ValueError:
        rebuilt = None
    if rebuilt != scope:
        raise ValueError(f"not a scope made by idempotency_scope: {scope!r}")
    return owner, operation
