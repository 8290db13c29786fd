"""Building the library's own pydantic models without their per-field validation.

For values the library made itself and checked to be exactly what validation
would produce (exact builtin types, in range): validation would return them
unchanged, and on the hot path of a job it costs more than the SQL around it.
Anything else goes through the model's validation as before. Each use has a
property test holding it equal to the validated model.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["NOT_PLAIN", "built", "hand_over_json", "handed_json", "plain_json", "take_json"]

M = TypeVar("M", bound=BaseModel)


# BaseModel's four instance slots, set through their descriptors: a fifth
# cheaper than object.__setattr__ by name (frozen models refuse setattr).
_SLOTS = vars(BaseModel)
_SET_DICT = _SLOTS["__dict__"].__set__
_SET_FIELDS = _SLOTS["__pydantic_fields_set__"].__set__
_SET_EXTRA = _SLOTS["__pydantic_extra__"].__set__
_SET_PRIVATE = _SLOTS["__pydantic_private__"].__set__
_NEW = object.__new__


def built(cls: type[M], data: dict[str, Any]) -> M:
    """``cls(**data)`` for ``data`` that validation would accept unchanged.

    What ``BaseModel.model_construct`` does for a model without defaults left
    out, private attributes or extras, without its per-field loop; ``data``
    becomes the instance's own dict.
    """
    obj = _NEW(cls)
    _SET_DICT(obj, data)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(cls.model_fields)
    # Every field given (the usual case; ``data`` holds no other key): the set
    # copied from the class's frozenset, which needs no hashing (a Job's 18
    # keys: ~2 k instructions less than ``set(data)``).
    _SET_FIELDS(obj, set(names) if len(data) == len(names) else set(data))
    _SET_EXTRA(obj, None)
    _SET_PRIVATE(obj, None)
    return obj


_FIELD_NAMES: dict[type[BaseModel], frozenset[str]] = {}
"""Each model's field names, as :func:`built` first meets the model."""


NOT_PLAIN: Any = object()
"""What :func:`plain_json` returns for a value it does not vouch for."""

_MAX_DEPTH = 16


def plain_json(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` as pydantic's ``JsonValue`` validation makes it, or ``NOT_PLAIN``.

    Vouches only for exact ``dict`` (``str`` keys), ``list``, ``str``, ``int``,
    ``bool``, ``None`` and finite ``float``, nested at most 16 deep; the
    containers are copied, as validation copies them.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else NOT_PLAIN
    if depth >= _MAX_DEPTH:
        return NOT_PLAIN
    # The scalar case is repeated inline in the loops: most values of a
    # result's metadata are scalars, and a call per value cost more than the check.
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                return NOT_PLAIN
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None:
                out[key] = item
                continue
            copied = plain_json(item, depth + 1)
            if copied is NOT_PLAIN:
                return NOT_PLAIN
            out[key] = copied
        return out
    if kind is list:
        items = []
        for item in value:
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None:
                items.append(item)
                continue
            copied = plain_json(item, depth + 1)
            if copied is NOT_PLAIN:
                return NOT_PLAIN
            items.append(copied)
        return items
    return NOT_PLAIN


_HANDED: tuple[Any, str | None] = (None, None)
"""A plain dict given up by its maker, and its JSON text (:func:`hand_over_json`)."""


def hand_over_json(value: dict[str, Any], text: str) -> None:
    """Give up ``value`` to the next result built of it, with its stored JSON text.

    For the engine's finish: its result metadata is a fresh dict of exact
    plain values (what :func:`plain_json` vouches for), which it never uses
    again, and ``text`` is ``_sql._dump(value)``, made with the dict. The
    result's builder then keeps the dict itself (:func:`handed_json`: no
    copy) and the store writes ``text`` (:func:`take_json`: no encoding).
    One slot for the process, replaced whole and matched by identity: a
    value not handed over (or replaced meanwhile by another thread's
    finish) takes the reference path.
    """
    global _HANDED
    _HANDED = (value, text)


def handed_json(value: Any) -> bool:
    """Whether ``value`` is the dict :func:`hand_over_json` last gave up (it stays handed)."""
    return _HANDED[0] is value and value is not None


def take_json(value: Any) -> str | None:
    """The text handed over with ``value`` (then forgotten), or ``None``."""
    global _HANDED
    held = _HANDED
    if held[0] is value and value is not None:
        _HANDED = (None, None)
        return held[1]
    return None
