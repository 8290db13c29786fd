"""The one owner-id rule, checked by every entry point before any backend sees an owner."""

from __future__ import annotations

import re
from typing import Final

from chatsvg_core.errors import InvalidOwner

__all__ = ["MAX_OWNER", "validate_owner"]

MAX_OWNER: Final = 255
"""The longest owner id, in characters (the width of every backend's owner column)."""

# C0 and C1 controls and DEL: PostgreSQL refuses NUL in text outright, and the
# others are never part of a real user id (they are how log lines get forged).
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def validate_owner(owner: object) -> str:
    """Return ``owner`` unchanged if it is a valid owner id, else raise :class:`InvalidOwner`.

    >>> validate_owner("user-42")
    'user-42'
    """
    if not isinstance(owner, str):
        raise InvalidOwner(
            f"an owner id is a string, not {type(owner).__name__}",
            owner=repr(owner)[:64],
            reason="not_a_string",
        )
    if not 1 <= len(owner) <= MAX_OWNER:
        raise InvalidOwner(
            f"an owner id has 1 to {MAX_OWNER} characters, not {len(owner)}",
            owner=repr(owner)[:64],
            reason="length",
        )
    if owner.isascii() and owner.isprintable():
        return owner  # U+0020..U+007E: neither a control character nor a surrogate
    if _CONTROL.search(owner):
        raise InvalidOwner(
            "an owner id holds no control character (NUL, newline...)",
            owner=repr(owner)[:64],
            reason="control_character",
        )
    if _SURROGATE.search(owner):
        raise InvalidOwner(
            "an owner id holds no lone surrogate (it is not valid UTF-8)",
            owner=repr(owner)[:64],
            reason="surrogate",
        )
    return owner
