"""RFC 8785 (JSON Canonicalization Scheme) and the versioned request fingerprint.

The canonical form is JCS exactly, so that any JCS implementation (the npm
``canonicalize`` package, a browser, Go, Java) produces the same bytes:

* objects: members sorted by the UTF-16 code units of their names, no
  whitespace; arrays keep their order;
* strings: ``"`` and ``\\`` escaped, control characters below U+0020 as
  ``\\b \\f \\n \\r \\t`` or ``\\u00xx`` (lowercase hex), everything else
  (U+007F, U+2028, non-BMP characters...) written as itself in UTF-8;
* numbers: ECMAScript ``Number.prototype.toString`` of the IEEE-754 double
  (``1.0`` → ``1``, ``-0.0`` → ``0``, ``1e21`` → ``1e+21``, ``1e-7`` →
  ``1e-7``).

Choices beyond JCS, all documented in ``docs/idempotency.md``:

* pydantic models are dumped with ``model_dump(mode="json")`` first (field
  names, not aliases; every field, including ``None`` and defaults);
* tuples (and lists) are arrays; any ``Mapping`` with string keys is an object;
* integers are JSON numbers, that is IEEE doubles: every integer within
  ±(2**53 - 1) is exact; a larger one is accepted only if it is exactly how
  ECMAScript writes a double (``9007199254740992``, ``36684765430851050``),
  so that parsing a canonical text and canonicalising it again gives it back.
  Any other integer (``2**53 + 1``, ``10**30``) is refused
  (``inexact_integer``) rather than rounded, since rounding would give two
  different requests one fingerprint where other JCS peers see one number;
* no Unicode normalisation: NFC and NFD spellings are different requests
  (the model sees different code points), and refusing with a conflict is the
  safe failure where conflating them would replay the wrong job;
* nesting is limited to :data:`MAX_DEPTH` levels, which also stops cycles.
"""

from __future__ import annotations

import hashlib
import json.encoder
import math
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring  # the C escaper: exactly JCS's string rules
from typing import Any, Final

from pydantic import BaseModel

from chatsvg_core.errors import UnhashablePayload

__all__ = [
    "HASH_VERSION",
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "canonical_json",
    "request_hash",
]

HASH_VERSION: Final = "v1"
"""The fingerprint scheme; it prefixes every :func:`request_hash` result."""

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Up to this magnitude every integer is exact in every JSON peer (``Number.MAX_SAFE_INTEGER``).

Beyond it, an integer is accepted only if it is exactly the ECMAScript
spelling of a double (see :func:`canonical_json`).
"""

MAX_DEPTH: Final = 128
"""The deepest nesting of arrays and objects accepted (the top level is depth 1)."""

_ExcludeTree = dict[str, "_ExcludeTree | None"]
"""Parsed exclusions: ``None`` marks a member to drop, a dict a member to descend into."""


class _Refused(Exception):
    # Carries the reason up the stack; each container level on the way adds its
    # segment, so the JSON pointer costs nothing unless something is refused.
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.segments: list[str] = []


def _pointer(segments: Iterable[str]) -> str:
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)


def _es_number(value: float) -> str:
    """ECMAScript ``Number.prototype.toString`` for a finite double.

    ``repr`` already gives the shortest digits that round-trip, which is the
    digit string ECMAScript picks too; only the layout (where the point goes,
    when an exponent is used and how it is written) differs.
    """
    if value == 0:
        return "0"  # also -0.0: ECMAScript prints it as "0"
    magnitude = abs(value)
    if 1e-4 <= magnitude < 1e16:
        # repr writes these in positional notation, as ECMAScript does.
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    text = repr(magnitude)
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    int_part, _, frac_part = mantissa.partition(".")
    if frac_part == "0":
        frac_part = ""
    digits = (int_part + frac_part).lstrip("0")
    exponent -= len(frac_part)
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = k + exponent  # value = 0.digits * 10**n
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        sign = "+" if e >= 0 else "-"
        head = digits if k == 1 else digits[0] + "." + digits[1:]
        out = f"{head}e{sign}{abs(e)}"
    return "-" + out if value < 0 else out


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _parse_exclude(exclude: str | Iterable[str] | None) -> _ExcludeTree | None:
    if exclude is None:
        return None
    pointers = [exclude] if isinstance(exclude, str) else list(exclude)
    tree: _ExcludeTree = {}
    for pointer in pointers:
        if not isinstance(pointer, str) or not pointer.startswith("/"):
            raise ValueError(
                f"exclude takes JSON pointers (RFC 6901) such as '/client_ts': {pointer!r}"
            )
        segments = [s.replace("~1", "/").replace("~0", "~") for s in pointer[1:].split("/")]
        node = tree
        for segment in segments[:-1]:
            child = node.get(segment, {})
            if child is None:
                break  # an ancestor is already dropped whole
            node[segment] = child
            node = child
        else:
            node[segments[-1]] = None
    return tree or None


# The encoder below is the hot path, tuned with a profiler: module-level
# functions (no closures built per call) appending to one flat list that is
# joined once (nested joins would copy a long prompt once per level, and big
# temporary strings cost page faults), the common exact types tested inline
# (``type(x) is``) before anything general, short keys escaped once per process.
_int_repr = int.__repr__
_float_repr = float.__repr__
_isfinite = math.isfinite
_LOW, _HIGH = -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER
_KEY_TEXTS: dict[str, str] = {}
_KEY_CACHE_LIMIT: Final = 4096
_KEY_CACHE_MAX_LEN: Final = 64


def _key_text(name: str) -> str:
    """``,"name":`` (the caller drops the comma for an object's first member)."""
    text = _KEY_TEXTS.get(name)
    if text is None:
        text = "," + encode_basestring(name) + ":"
        if len(name) <= _KEY_CACHE_MAX_LEN and type(name) is str:
            if len(_KEY_TEXTS) >= _KEY_CACHE_LIMIT:
                _KEY_TEXTS.clear()
            _KEY_TEXTS[name] = text
    return text


def _encode(value: Any, depth: int, excl: _ExcludeTree | None, out: list[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append(encode_basestring(value))
    elif kind is dict:
        _encode_object(value, depth, excl, out)
    elif kind is list or kind is tuple:
        _encode_array(value, depth, out)
    elif kind is int:
        out.append(_int_repr(value) if _LOW <= value <= _HIGH else _encode_big_int(value))
    elif kind is bool:
        out.append("true" if value else "false")
    elif value is None:
        out.append("null")
    elif kind is float:
        out.append(_encode_float(value))
    else:
        _encode_other(value, depth, excl, out)


def _encode_big_int(value: int) -> str:
    if value.bit_length() > 1024:
        # Beyond every finite double, so never exact; refused before its
        # decimal text is made (quadratic in the digits, and past 4300 digits
        # Python refuses with a ValueError of its own).
        raise _Refused(
            "inexact_integer",
            f"integer of {value.bit_length()} bits is not exactly a JSON double "
            "(it is beyond the double range)",
        )
    text = _int_repr(value)
    try:
        spelt = _es_number(float(value))
    except OverflowError:
        spelt = "beyond the double range"
    if spelt != text:
        raise _Refused(
            "inexact_integer",
            f"integer {text[:40]} is not exactly a JSON double "
            f"(other JCS implementations would read it as {spelt[:40]})",
        )
    return text


def _encode_float(value: float) -> str:
    if _isfinite(value):
        if 1e-4 <= value < 1e16 or -1e16 < value <= -1e-4:
            # repr writes these positionally, as ECMAScript does.
            text = _float_repr(value)
            return text[:-2] if text[-2:] == ".0" else text
        return _es_number(value)
    if value != value:
        raise _Refused("nan", "NaN is not a JSON number")
    raise _Refused("infinity", "infinity is not a JSON number")


def _encode_object(
    obj: Mapping[Any, Any], depth: int, excl: _ExcludeTree | None, out: list[str]
) -> None:
    if depth > MAX_DEPTH:
        raise _Refused("too_deep", f"nesting deeper than {MAX_DEPTH} levels")
    names = list(obj)
    try:
        joined = "".join(names)  # also the type check: only str keys join
    except TypeError:
        name = next(n for n in names if not isinstance(n, str))
        bad = _Refused(
            "non_string_key", f"object key {name!r} ({type(name).__name__}) is not a string"
        )
        bad.segments.append(str(name))
        raise bad from None
    if excl is not None:
        names = [n for n in names if excl.get(n, True) is not None]
    if not names:
        out.append("{}")
        return
    names.sort()
    if not joined.isascii() and max(joined) > "\uffff":
        # Code-point order differs from UTF-16 order only when a non-BMP
        # character meets one in U+E000..U+FFFF; sort by code units then.
        names.sort(key=_utf16_key)
    append = out.append
    append("{")
    first = len(out)
    name = ""
    child = depth + 1
    try:
        for name in names:
            append(_KEY_TEXTS.get(name) or _key_text(name))
            value = obj[name]
            kind = type(value)
            if kind is str:
                append(encode_basestring(value))
            elif kind is int and _LOW <= value <= _HIGH:
                append(_int_repr(value))
            elif kind is dict:
                _encode_object(value, child, excl.get(name) if excl else None, out)
            elif kind is list:
                _encode_array(value, child, out)
            elif kind is float:
                append(_encode_float(value))
            else:
                _encode(value, child, excl.get(name) if excl else None, out)
    except _Refused as bad:
        bad.segments.append(name)
        raise
    out[first] = out[first][1:]  # the first member has no comma before it
    append("}")


def _encode_array(items: list[Any] | tuple[Any, ...], depth: int, out: list[str]) -> None:
    if depth > MAX_DEPTH:
        raise _Refused("too_deep", f"nesting deeper than {MAX_DEPTH} levels")
    append = out.append
    append("[")
    index = 0
    child = depth + 1
    try:
        for index, value in enumerate(items):
            if index:
                append(",")
            kind = type(value)
            if kind is str:
                append(encode_basestring(value))
            elif kind is float:
                append(_encode_float(value))
            elif kind is int and _LOW <= value <= _HIGH:
                append(_int_repr(value))
            elif kind is dict:
                _encode_object(value, child, None, out)
            else:
                _encode(value, child, None, out)
    except _Refused as bad:
        bad.segments.append(str(index))
        raise
    append("]")


def _encode_other(value: Any, depth: int, excl: _ExcludeTree | None, out: list[str]) -> None:
    # Subclasses and models: rarer, so they leave the fast type checks above.
    if isinstance(value, BaseModel):
        _encode(value.model_dump(mode="json"), depth, excl, out)
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, str):
        out.append(encode_basestring(value))
    elif isinstance(value, int):
        _encode(int(value), depth, excl, out)
    elif isinstance(value, float):
        out.append(_encode_float(float(value)))
    elif isinstance(value, Mapping):
        _encode_object(value, depth, excl, out)
    elif isinstance(value, list | tuple):
        _encode_array(value, depth, out)
    else:
        raise _Refused("unsupported_type", f"{type(value).__qualname__} is not a JSON value")


def _encode_top(payload: Any, exclude: str | Iterable[str] | None, out: list[str]) -> None:
    try:
        _encode(payload, 1, _parse_exclude(exclude), out)
    except _Refused as bad:
        pointer = _pointer(reversed(bad.segments))
        raise UnhashablePayload(
            f"payload cannot be canonicalised at {pointer or '(root)'}: {bad.detail}",
            path=pointer,
            reason=bad.reason,
        ) from None
    except RecursionError:
        raise UnhashablePayload(
            "payload nests too deeply to canonicalise", path="", reason="too_deep"
        ) from None


def _lone_surrogate(payload: Any) -> UnhashablePayload:
    pointer = _pointer(_find_lone_surrogate(payload) or [])
    return UnhashablePayload(
        f"payload cannot be canonicalised at {pointer or '(root)'}: "
        "a string holds a lone surrogate, which is not Unicode text",
        path=pointer,
        reason="lone_surrogate",
    )


def _find_lone_surrogate(value: Any, depth: int = 0) -> list[str] | None:
    # Only run after encoding failed, to name the place of the bad string.
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return []
        return None
    if isinstance(value, Mapping):
        for name, item in value.items():
            if _find_lone_surrogate(name) is not None:
                return [name]
            found = _find_lone_surrogate(item, depth + 1)
            if found is not None:
                return [name, *found]
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_lone_surrogate(item, depth + 1)
            if found is not None:
                return [str(index), *found]
    return None


def canonical_json(payload: Any, *, exclude: str | Iterable[str] | None = None) -> str:
    """The RFC 8785 (JCS) canonical JSON text of ``payload``.

    ``payload`` is plain JSON data (``dict`` with ``str`` keys, ``list``/
    ``tuple``, ``str``, ``int`` exact as a double, finite ``float``,
    ``bool``, ``None``) or pydantic models anywhere inside it, which are
    dumped in JSON mode first. ``exclude`` drops object members named by
    JSON pointers (see :func:`request_hash`).

    >>> canonical_json({"b": [1.0, -0.0, 1e21], "a": "é\\n"})
    '{"a":"é\\\\n","b":[1,0,1e+21]}'

    Raises:
        UnhashablePayload: for anything that is not JSON (NaN, infinities,
            non-string keys, sets, bytes, other objects), an integer that
            no double represents exactly, a lone surrogate, or nesting beyond
            :data:`MAX_DEPTH`. ``path`` is a JSON pointer to the bad value,
            ``reason`` a stable code.
        ValueError: for a malformed ``exclude`` pointer (a programming error).
    """
    out: list[str] = []
    _encode_top(payload, exclude, out)
    text = "".join(out)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _lone_surrogate(payload) from None
    return text


def request_hash(
    payload: Any,
    *,
    scope: str | None = None,
    exclude: str | Iterable[str] | None = None,
) -> str:
    """The versioned fingerprint of a request: ``"v1:"`` + 64 lowercase hex digits.

    ``v1`` is SHA-256 over the UTF-8 bytes of the JCS text of the two-element
    array ``[scope, payload]`` (``scope`` ``null`` when not given), that is
    ``'[' + canonical_json(scope) + ',' + canonical_json(payload) + ']'``. Any
    JCS implementation reproduces it (JavaScript:
    ``sha256(canonicalize([scope, payload]))``); binding the scope means a
    fingerprint never matches across owners or operations.

    ``exclude`` names object members that must not affect identity (a client
    timestamp, a trace id) as RFC 6901 JSON pointers: ``"/client_ts"``,
    ``"/trace/id"``, ``"/a~1b"`` for the key ``"a/b"``. A pointer names an
    object member reached through objects only; one that does not match
    anything in this payload is ignored, so a request with or without the
    member hashes the same. Excluding ``/trace/id`` leaves the rest of
    ``trace`` (an empty object, if ``id`` was all it held), which still counts.
    Array elements cannot be excluded: their order and count are part of the
    request.

    >>> request_hash({"prompt": "a red fox", "client_ts": 1}, exclude={"/client_ts"}) == (
    ...     request_hash({"prompt": "a red fox"}))
    True

    Raises:
        UnhashablePayload: as :func:`canonical_json`.
        ValueError: for a malformed ``exclude`` pointer, or a ``scope`` holding
            a lone surrogate.
        TypeError: for a ``scope`` that is neither ``str`` nor ``None``.
    """
    if scope is None:
        scope_text = "[null,"
    elif isinstance(scope, str):
        scope_text = "[" + encode_basestring(scope) + ","
    else:
        raise TypeError(f"scope must be a str or None, got {type(scope).__name__}")
    out = [scope_text]
    _encode_top(payload, exclude, out)
    out.append("]")
    try:
        data = "".join(out).encode()
    except UnicodeEncodeError:
        if not _is_text(scope_text):
            raise ValueError("scope holds a lone surrogate") from None
        raise _lone_surrogate(payload) from None
    return f"{HASH_VERSION}:{hashlib.sha256(data).hexdigest()}"


_FLAT_SCALARS = (str, int, bool, type(None))


def _jcs_flat_encoder() -> Callable[[Any, int], Any] | None:
    """CPython's C JSON encoder set up to write JCS for a flat object, or ``None``.

    With ``encode_basestring`` (JCS's string rules, as :func:`_encode` uses it),
    sorted keys, compact separators and no NaN, it writes exactly what
    :func:`_encode` writes for a ``dict`` of ASCII ``str`` keys whose values are
    ``str``, ``bool``, ``None`` or ``int`` within ±:data:`MAX_SAFE_INTEGER`
    (ASCII names sort alike by code point and by UTF-16 unit; such integers
    and literals are written alike). ``None`` where this Python has no C
    encoder, or one taking other arguments, or one writing a probe otherwise.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encode = make(None, None, encode_basestring, None, ":", ",", True, False, False)
        probe = {"b": -MAX_SAFE_INTEGER, "a": '\x00\x1f\x7f\u00e9\u2028\U0001f600"\\\n',
                 "c": None, "B": True, "d": False, "e": "", "f": 0}  # fmt: skip
        expected: list[str] = []
        _encode(probe, 1, None, expected)
        if "".join(encode(probe, 0)) == "".join(expected):
            return encode  # type: ignore[no-any-return]
    except Exception:  # another signature: the Python encoder does it all
        return None
    return None


_JCS_FLAT = _jcs_flat_encoder()


def _flat_jcs(payload: dict[Any, Any]) -> str | None:
    """The JCS text of a flat ``payload``, written by the C encoder, or ``None``.

    Flat: ASCII ``str`` keys; ``str``, ``bool``, ``None`` or safe ``int``
    values (exact types). Anything else (floats, big integers, nesting,
    subclasses, other keys) is left to :func:`_encode`.
    """
    if _JCS_FLAT is None:
        return None
    for value in payload.values():
        kind = type(value)
        if kind is str or value is None or kind is bool:
            continue
        if kind is int and _LOW <= value <= _HIGH:
            continue
        return None
    try:
        if not "".join(payload).isascii():  # also the key type check: only str keys join
            return None
    except TypeError:
        return None
    return "".join(_JCS_FLAT(payload, 0))


def hash_and_json_of_jcs(body: str, scope: str) -> tuple[str, str | None] | None:
    """What :func:`request_hash_and_json` answers for a payload whose JCS text is ``body``.

    For a caller that wrote ``body`` itself, exactly as :func:`canonical_json`
    would (the engine's plain requests: ``engine._validate.plain_jcs``, held
    to it by tests/engine): the fingerprint, and ``body`` as the stored JSON
    when it is that too (see :func:`request_hash_and_json`: the caller
    vouches for a flat payload). ``None`` when the text cannot be hashed (a
    lone surrogate): the caller then takes :func:`request_hash_and_json`,
    which says where.
    """
    try:
        data = f"[{encode_basestring(scope)},{body}]".encode()
    except UnicodeEncodeError:
        return None
    digest = f"{HASH_VERSION}:{_sha256(data).hexdigest()}"
    if body.isascii() and "\x7f" not in body:
        return digest, body
    return digest, None


_sha256 = hashlib.sha256


def request_hash_and_json(
    payload: dict[str, Any], *, scope: str, flat: bool = False
) -> tuple[str, str | None]:
    """:func:`request_hash` of a request dict, and its JSON as the SQL stores write it.

    The JCS text of ``payload`` is also what the stores' compact, key-sorted,
    ASCII-escaped encoder writes for it (``storage._sql._dump``) when the
    payload is a flat ``dict`` of ``str``/``int``/``bool``/``None`` values
    and the text is printable-ASCII apart from escapes: both sort ASCII names
    alike, write integers and literals alike, and escape quotes, backslashes
    and control characters alike (lowercase ``\\u00xx``); they differ only
    for floats, characters from U+007F up (JCS writes them as they are) and
    nested values (not checked here). The second element is that text, or
    ``None`` when the payload is not of that kind (then the store encodes
    it itself). tests/idempotency holds it equal to the store's encoding.

    A flat payload (the engine's plain requests) is written by CPython's C
    JSON encoder (:func:`_flat_jcs`) at a fraction of the Python encoder's
    cost; tests/idempotency holds the two equal. ``flat=True``: the caller
    vouches that ``payload`` is such a dict (the engine's plain requests:
    tests/engine holds their fingerprints equal to :func:`request_hash`).
    """
    if type(payload) is dict and type(scope) is str:
        body = "".join(_JCS_FLAT(payload, 0)) if flat and _JCS_FLAT else _flat_jcs(payload)
        if body is not None:
            shared = hash_and_json_of_jcs(body, scope)
            if shared is not None:
                return shared
            # A lone surrogate: the general path below says where.
    scope_text = "[" + encode_basestring(scope) + ","
    out = [scope_text]
    _encode_top(payload, None, out)
    out.append("]")
    text = "".join(out)
    try:
        data = text.encode()
    except UnicodeEncodeError:
        if not _is_text(scope_text):
            raise ValueError("scope holds a lone surrogate") from None
        raise _lone_surrogate(payload) from None
    digest = f"{HASH_VERSION}:{hashlib.sha256(data).hexdigest()}"
    if type(payload) is not dict or not text.isascii() or "\x7f" in text:
        return digest, None
    for value in payload.values():
        if type(value) not in _FLAT_SCALARS:
            return digest, None
    return digest, text[len(scope_text) : -1]


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
