"""RFC 8785 canonical JSON and the v1 request fingerprint: vectors, examples, properties."""

from __future__ import annotations

import hashlib
import json
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from chatsvg_core.errors import PermanentError, UnhashablePayload
from chatsvg_core.idempotency import MAX_DEPTH, MAX_SAFE_INTEGER, canonical_json, request_hash
from chatsvg_core.testing import json_objects, json_reorderings, json_values, unhashable_payloads

VECTORS_PATH = Path(__file__).parents[1] / "data" / "request_hash_vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


# --- the shipped vectors -------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_library_matches_vector(vector: dict[str, Any]) -> None:
    payload, scope, exclude = vector["payload"], vector["scope"], vector["exclude"]
    if "error" in vector:
        with pytest.raises(UnhashablePayload) as info:
            request_hash(payload, scope=scope, exclude=exclude)
        assert info.value.fields == vector["error"]
        return
    assert canonical_json(payload, exclude=exclude) == vector["canonical"]
    assert request_hash(payload, scope=scope, exclude=exclude) == vector["hash"]


def test_vectors_cover_the_tricky_cases() -> None:
    names = " | ".join(v["name"] for v in VECTORS)
    for topic in ("nested", "key order", "escapes", "non-BMP", "surrogate ordering", "-0.0"):
        assert topic in names
    canon = " ".join(v.get("canonical", "") for v in VECTORS)
    for fragment in ("1e+21", "1e-7", "5e-324", "1.7976931348623157e+308", "9007199254740991"):
        assert fragment in canon
    assert sum("error" in v for v in VECTORS) >= 3


@pytest.mark.parametrize("vector", [v for v in VECTORS if "hash" in v], ids=lambda v: v["name"])
def test_vector_hash_is_sha256_of_the_scope_payload_array(vector: dict[str, Any]) -> None:
    # The documented preimage, spelt out independently of request_hash().
    scope = "null" if vector["scope"] is None else json.dumps(vector["scope"], ensure_ascii=False)
    preimage = f"[{scope},{vector['canonical']}]".encode()
    assert vector["hash"] == "v1:" + hashlib.sha256(preimage).hexdigest()


# --- RFC 8785 examples, pinned by hand --------------------------------------------


def test_rfc8785_main_example() -> None:
    payload = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    assert canonical_json(payload) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


def test_rfc8785_sort_order_is_by_utf16_code_units() -> None:
    payload = {
        "\u20ac": 1,
        "\r": 2,
        "\ufb33": 3,
        "1": 4,
        "\U0001f600": 5,
        "\u0080": 6,
        "\u00f6": 7,
    }
    assert list(json.loads(canonical_json(payload))) == [
        "\r",
        "1",
        "\u0080",
        "\u00f6",
        "\u20ac",
        "\U0001f600",
        "\ufb33",
    ]


RFC8785_NUMBERS = {
    "0000000000000000": "0",
    "8000000000000000": "0",
    "0000000000000001": "5e-324",
    "8000000000000001": "-5e-324",
    "7fefffffffffffff": "1.7976931348623157e+308",
    "ffefffffffffffff": "-1.7976931348623157e+308",
    "4340000000000000": "9007199254740992",
    "c340000000000000": "-9007199254740992",
    "4430000000000000": "295147905179352830000",
    "44b52d02c7e14af5": "9.999999999999997e+22",
    "44b52d02c7e14af6": "1e+23",
    "44b52d02c7e14af7": "1.0000000000000001e+23",
    "444b1ae4d6e2ef4e": "999999999999999700000",
    "444b1ae4d6e2ef4f": "999999999999999900000",
    "444b1ae4d6e2ef50": "1e+21",
    "3eb0c6f7a0b5ed8c": "9.999999999999997e-7",
    "3eb0c6f7a0b5ed8d": "0.000001",
    "41b3de4355555553": "333333333.3333332",
    "41b3de4355555554": "333333333.33333325",
    "41b3de4355555555": "333333333.3333333",
    "41b3de4355555556": "333333333.3333334",
    "41b3de4355555557": "333333333.33333343",
    "becbf647612f3696": "-0.0000033333333333333333",
    "43143ff3c1cb0959": "1424953923781206.2",
}


@pytest.mark.parametrize(("bits", "expected"), RFC8785_NUMBERS.items())
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (0.0001, "0.0001"),
        (1e16, "10000000000000000"),
        (-1e-300, "-1e-300"),
        (2.5e25, "2.5e+25"),
        (100.0, "100"),
        (0.5, "0.5"),
    ],
)
def test_ecmascript_number_layout(value: float, expected: str) -> None:
    assert canonical_json(value) == expected


def test_one_and_one_point_zero_are_the_same_number() -> None:
    assert request_hash({"n": 1}) == request_hash({"n": 1.0})


def test_integers_beyond_the_safe_range_must_be_exact_doubles() -> None:
    assert canonical_json([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        "[9007199254740991,-9007199254740991]"
    )
    # Exactly how ECMAScript writes these doubles: accepted, written back as they are.
    for exact in (2**53, -(2**53), 2**53 + 2, 36684765430851050, 10**20, 295147905179352830000):
        assert canonical_json(exact) == str(exact)
        assert canonical_json(exact) == canonical_json(float(exact))
    # Rounded (or written with an exponent) by every other JCS peer: refused.
    for bad in (2**53 + 1, -(2**53) - 1, 36684765430851048, 10**21, 10**30, 10**400):
        with pytest.raises(UnhashablePayload) as info:
            canonical_json({"a": [bad]})
        assert info.value.fields == {"path": "/a/0", "reason": "inexact_integer"}


@pytest.mark.parametrize(
    "bad",
    [10**4300, -(10**4300), 10**100_000, 2**1024],
    ids=["1e4300", "-1e4300", "1e100000", "2**1024"],  # pytest cannot print them either
)
def test_integers_beyond_every_double_are_refused_before_they_are_written(bad: int) -> None:
    # Python refuses to write an int of more than 4300 digits (ValueError):
    # the bit length alone decides, and the error is the library's.
    for call in (canonical_json, request_hash):
        with pytest.raises(UnhashablePayload) as info:
            call({"a": [bad]})
        assert info.value.fields == {"path": "/a/0", "reason": "inexact_integer"}


def test_strings_escape_only_what_jcs_escapes() -> None:
    text = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028\U0001f600'
    expected = (
        '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
        "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
        '\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\"\\\\/\x7f\u2028\U0001f600"'
    )
    assert canonical_json(text) == expected


# --- inputs beyond plain dict/list ----------------------------------------------------


class Options(BaseModel):
    width: int = 512
    ratio: float = 1.0
    label: str | None = None


class Request(BaseModel):
    prompt: str
    options: Options = Options()


def test_pydantic_models_are_dumped_in_json_mode() -> None:
    model = Request(prompt="fox")
    plain = {"prompt": "fox", "options": {"width": 512, "ratio": 1, "label": None}}
    assert canonical_json(model) == canonical_json(plain)
    assert canonical_json({"req": [model]}) == canonical_json({"req": [plain]})
    assert request_hash(model, exclude="/options/label") == request_hash(
        {"prompt": "fox", "options": {"ratio": 1, "width": 512}}
    )


def test_tuples_mappings_and_subclasses_are_json() -> None:
    from enum import IntEnum, StrEnum

    class Size(IntEnum):
        SMALL = 256

    class Style(StrEnum):
        FLAT = "flat"

    odd = OrderedDict([("b", (1, 2)), ("a", Style.FLAT), ("c", Size.SMALL), ("d", True)])
    assert canonical_json(odd) == '{"a":"flat","b":[1,2],"c":256,"d":true}'


@pytest.mark.parametrize(
    ("payload", "path", "reason"),
    [
        (float("nan"), "", "nan"),
        ({"a": float("inf")}, "/a", "infinity"),
        ({"a": [0, float("-inf")]}, "/a/1", "infinity"),
        ({"a": {1: "x"}}, "/a/1", "non_string_key"),
        ({"a": {None: "x"}}, "/a/None", "non_string_key"),
        ({"a/b": {"c~d": b"bytes"}}, "/a~1b/c~0d", "unsupported_type"),
        ({"s": {1, 2}}, "/s", "unsupported_type"),
        ([object()], "/0", "unsupported_type"),
        ({"x": ["\udc00"]}, "/x/0", "lone_surrogate"),
        ({"\ud800": 1}, "/\ud800", "lone_surrogate"),
    ],
)
def test_non_json_is_refused_with_a_pointer(payload: Any, path: str, reason: str) -> None:
    with pytest.raises(UnhashablePayload) as info:
        request_hash(payload)
    assert info.value.fields == {"path": path, "reason": reason}
    assert isinstance(info.value, PermanentError)
    assert info.value.http_status == 400


def test_nesting_limit() -> None:
    ok: Any = []
    for _ in range(MAX_DEPTH - 1):
        ok = [ok]
    assert canonical_json(ok).count("[") == MAX_DEPTH
    with pytest.raises(UnhashablePayload) as info:
        canonical_json({"deep": ok})
    assert info.value.fields["reason"] == "too_deep"
    assert info.value.fields["path"] == "/deep" + "/0" * (MAX_DEPTH - 1)


def test_cycles_are_refused_not_a_crash() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UnhashablePayload) as info:
        canonical_json(loop)
    assert info.value.fields["reason"] == "too_deep"


# --- exclusion ---------------------------------------------------------------------------


def test_exclude_takes_json_pointers() -> None:
    payload = {"a/b": 1, "m~n": 2, "keep": {"x": 1, "y": 2}, "list": [{"x": 1}]}
    assert canonical_json(payload, exclude=["/a~1b", "/m~0n", "/keep/x", "/list/0/x"]) == (
        '{"keep":{"y":2},"list":[{"x":1}]}'
    )
    assert canonical_json(payload, exclude=["/keep/x", "/keep"]) == canonical_json(
        payload, exclude=["/keep", "/keep/x"]
    )
    # Excluding the empty-named member is possible too.
    assert canonical_json({"": 1, "a": 2}, exclude="/") == '{"a":2}'


@pytest.mark.parametrize("bad", ["", "client_ts", "trace.id", ["/ok", "nope"]])
def test_exclude_refuses_what_is_not_a_pointer(bad: Any) -> None:
    with pytest.raises(ValueError, match="JSON pointer"):
        request_hash({"a": 1}, exclude=bad)


@given(payload=json_objects(max_leaves=8), noise=json_values(max_leaves=5))
@settings(max_examples=40)
def test_excluded_members_never_change_the_hash(payload: dict[str, Any], noise: Any) -> None:
    base = request_hash(payload, scope="s", exclude=["/client_ts", "/trace/id"])
    noisy = {**payload, "client_ts": noise}
    trace = payload.get("trace")
    if isinstance(trace, dict):
        noisy["trace"] = {**trace, "id": noise}
    assert request_hash(noisy, scope="s", exclude=["/client_ts", "/trace/id"]) == base


# --- properties ------------------------------------------------------------------------


@given(value=json_values())
@settings(max_examples=80)
def test_never_raises_on_json_and_is_valid_json(value: Any) -> None:
    text = canonical_json(value)
    assert json.loads(text, parse_int=float) == _normalise(value)
    fingerprint = request_hash(value)
    assert fingerprint.startswith("v1:")
    assert len(fingerprint) == 67
    assert int(fingerprint[3:], 16) >= 0


@given(data=st.data(), value=json_values())
@settings(max_examples=60)
def test_invariant_under_key_reordering(data: st.DataObject, value: Any) -> None:
    shuffled = data.draw(json_reorderings(value))
    assert canonical_json(shuffled) == canonical_json(value)
    assert request_hash(shuffled, scope="x") == request_hash(value, scope="x")


@given(value=json_values())
@settings(max_examples=60)
def test_invariant_under_reserialisation(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=1, ensure_ascii=False)):
        assert request_hash(json.loads(text)) == request_hash(value)
    assert request_hash(json.loads(canonical_json(value))) == request_hash(value)


@given(a=json_values(max_leaves=10), b=json_values(max_leaves=10))
@settings(max_examples=60)
def test_distinct_canonical_data_gives_distinct_hashes(a: Any, b: Any) -> None:
    assert (canonical_json(a) == canonical_json(b)) == _same_json(a, b)
    assert (request_hash(a) == request_hash(b)) == _same_json(a, b)


@given(data=st.data(), value=json_objects(max_leaves=8))
@settings(max_examples=40)
def test_any_change_to_the_data_changes_the_hash(data: st.DataObject, value: Any) -> None:
    name = data.draw(st.text(max_size=4))
    changed = data.draw(json_values(max_leaves=3))
    other = {**value, name: changed}
    assert (request_hash(other) == request_hash(value)) == _same_json(other, value)


@given(value=json_values(max_leaves=5), scopes=st.lists(st.text(max_size=8), min_size=2))
@settings(max_examples=40)
def test_scope_is_bound_into_the_hash(value: Any, scopes: list[str]) -> None:
    hashes = {request_hash(value, scope=s) for s in scopes}
    assert len(hashes) == len(set(scopes))
    assert request_hash(value) not in hashes


@given(payload=unhashable_payloads())
@settings(max_examples=80)
def test_anything_else_raises_the_typed_error(payload: Any) -> None:
    with pytest.raises(UnhashablePayload) as info:
        request_hash(payload)
    assert info.value.fields["reason"] in {
        "nan",
        "infinity",
        "inexact_integer",
        "unsupported_type",
        "non_string_key",
        "lone_surrogate",
    }
    path = info.value.fields["path"]
    assert path == "" or path.startswith("/")


@given(value=st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=300)
def test_numbers_round_trip_and_use_ecmascript_layout(value: float) -> None:
    text = canonical_json(value)
    assert float(text) == value
    assert not text.endswith(".0")
    assert ("e" in text) == (value != 0 and not 1e-6 <= abs(value) < 1e21)
    if "e" in text:
        mantissa, exponent = text.split("e")
        assert exponent[0] in "+-"
        assert not exponent[1:].startswith("0")
        assert "." not in mantissa or not mantissa.endswith("0")
    assert text.startswith("-") == (value < 0)


# --- helpers ---------------------------------------------------------------------------


def _normalise(value: Any) -> Any:
    # What canonical JSON means by "the same data": every number a double,
    # tuples as lists; -0.0 equals 0 anyway.
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _same_json(a: Any, b: Any) -> bool:
    # JSON equality: numbers compare by value (1 == 1.0, 0 == -0.0), but
    # booleans are not numbers.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# --- the fingerprint's text shared with the stores' insert ------------------------

_SCALARS = (
    st.text(max_size=12)
    | st.sampled_from(["", '"', "\\", "\x00", "\x1f", "\x7f", "\n\t", "é", "\u2028", "😀"])
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.sampled_from([2**53, 2**63, -(2**53) - 2])
    | st.booleans()
    | st.none()
)
_SHAREABLE = st.dictionaries(st.text(max_size=6), _SCALARS, max_size=7)
_ANY_REQUEST = st.dictionaries(st.text(max_size=6), json_values(), max_size=5)


@given(payload=_SHAREABLE | _ANY_REQUEST, scope=st.text(max_size=12))
@settings(max_examples=400)
def test_request_hash_and_json_text_is_the_stores_json_whenever_given(
    payload: dict[str, Any], scope: str
) -> None:
    from chatsvg_core.idempotency._canonical import request_hash_and_json
    from chatsvg_core.storage._sql import _dump

    try:
        expected = request_hash(payload, scope=scope)
    except (UnhashablePayload, ValueError) as exc:
        with pytest.raises(type(exc)):
            request_hash_and_json(payload, scope=scope)
        return
    digest, text = request_hash_and_json(payload, scope=scope)
    assert digest == expected
    if text is not None:
        assert text == _dump(payload)
        assert text == canonical_json(payload)


def test_request_hash_and_json_shares_a_plain_request_and_nothing_else() -> None:
    from chatsvg_core.idempotency._canonical import request_hash_and_json

    plain = {"prompt": 'a "cat"\n', "width": 512, "style": None, "x": True}
    assert request_hash_and_json(plain, scope="s")[1] == json.dumps(
        plain, sort_keys=True, separators=(",", ":")
    )
    for other in ({"p": 1.0}, {"p": "é"}, {"p": "\x7f"}, {"p": [1]}, {"p": {"a": 1}}):
        assert request_hash_and_json(other, scope="s")[1] is None


_FLAT_VALUES = _SCALARS | st.sampled_from(
    [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, "\ud800", "a\udfff", 1.0, [1], {}]
)
_FLAT_KEYS = st.text(st.characters(max_codepoint=0x7F), max_size=6) | st.sampled_from(
    ["é", "\ue000", "😀", "\ud800"]
)


@given(
    payload=st.dictionaries(_FLAT_KEYS, _FLAT_VALUES, max_size=7),
    scope=st.text(max_size=12) | st.just("\ud800"),
)
@settings(max_examples=600)
def test_the_c_encoders_flat_path_is_the_reference_encoding(
    payload: dict[str, Any], scope: str
) -> None:
    # The C encoder writes flat payloads; the Python encoder (canonical_json,
    # request_hash) is the reference for every one, refusals included.
    from chatsvg_core.idempotency import _canonical
    from chatsvg_core.storage._sql import _dump

    assert _canonical._JCS_FLAT is not None  # this CPython has it: the test is not vacuous
    body = _canonical._flat_jcs(payload)
    flat = all(
        type(v) in (str, bool, type(None)) or (type(v) is int and abs(v) <= MAX_SAFE_INTEGER)
        for v in payload.values()
    ) and all(k.isascii() for k in payload)
    assert (body is not None) == flat
    try:
        expected_text = canonical_json(payload)
    except UnhashablePayload:
        expected_text = None
    if body is not None and expected_text is not None:
        assert body == expected_text
    refused: Exception | None = None
    try:
        expected = request_hash(payload, scope=scope)
    except (UnhashablePayload, ValueError) as exc:
        refused = exc
    if refused is not None:
        with pytest.raises(type(refused)) as info:
            _canonical.request_hash_and_json(payload, scope=scope)
        if isinstance(refused, UnhashablePayload):
            assert isinstance(info.value, UnhashablePayload)
            assert info.value.fields == refused.fields
        return
    digest, text = _canonical.request_hash_and_json(payload, scope=scope)
    assert digest == expected
    if flat:  # what a caller vouching for a flat payload gets
        assert _canonical.request_hash_and_json(payload, scope=scope, flat=True) == (digest, text)
    if text is not None:
        assert text == _dump(payload) == expected_text
    elif flat and expected_text is not None:
        # Shared whenever the store would write the same text.
        assert _dump(payload) != expected_text
