"""Regenerate ``request_hash_vectors.json`` from the cases below (run from the repo root).

The expected strings come from this library, so a regenerated file proves
nothing by itself: ``tests/idempotency/test_idempotency_node.py`` checks every
canonical string and fingerprint against the npm ``canonicalize`` package,
and ``test_idempotency_canonical.py`` pins the RFC 8785 examples by hand.
Regenerate only for new cases, and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from chatsvg_core.errors import UnhashablePayload
from chatsvg_core.idempotency import canonical_json, request_hash

RFC8785_NUMBER_BITS = [
    "0000000000000000", "8000000000000000", "0000000000000001", "8000000000000001",
    "7fefffffffffffff", "ffefffffffffffff", "4340000000000000", "c340000000000000",
    "4430000000000000", "44b52d02c7e14af5", "44b52d02c7e14af6", "44b52d02c7e14af7",
    "444b1ae4d6e2ef4e", "444b1ae4d6e2ef4f", "444b1ae4d6e2ef50", "3eb0c6f7a0b5ed8c",
    "3eb0c6f7a0b5ed8d", "41b3de4355555553", "41b3de4355555554", "41b3de4355555555",
    "41b3de4355555556", "41b3de4355555557", "becbf647612f3696", "43143ff3c1cb0959",
]  # fmt: skip

CASES: list[dict[str, Any]] = [
    {"name": "empty object", "payload": {}},
    {"name": "empty array", "payload": []},
    {"name": "scalars at the top", "payload": [None, True, False, "", 0]},
    {"name": "a bare string", "payload": "a red fox"},
    {
        "name": "nested objects and key order",
        "payload": {"b": {"d": 1, "c": [{"z": 1, "a": 2}, {"y": None}]}, "a": [], "A": 0},
    },
    {
        "name": "RFC 8785 section 3.2.2 example",
        "payload": {
            "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
            "literals": [None, True, False],
        },
    },
    {
        "name": "RFC 8785 section 3.2.3 sort example (UTF-16 order)",
        "payload": {
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\U0001f600": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis",
        },
    },
    {
        "name": "surrogate ordering: non-BMP keys sort before U+E000..U+FFFF",
        "payload": {"\uffff": 1, "\U00010000": 2, "\ue000": 3, "\ud7ff": 4, "\U0010ffff": 5},
    },
    {
        "name": "string escapes and characters JCS leaves alone",
        "payload": {
            "controls": "\u0000\u0001\u0007\u001f",
            "short escapes": "\b\f\n\r\t",
            "quote and backslash": '"\\',
            "solidus, DEL, separators": "/\u007f\u2028\u2029",
            "latin and euro": "\u00e9\u20ac",
        },
    },
    {
        "name": "control characters in keys",
        "payload": {"\u0000": "nul", "\n": "lf", "\u001f": "us", " ": "space"},
    },
    {
        "name": "non-BMP characters",
        "payload": {"emoji": "\U0001f98a", "math": "\U0001d518", "last": "\U0010ffff"},
    },
    {
        "name": "floats: 1.0 vs 1, exponents, -0.0, extremes",
        "payload": {
            "one float": 1.0,
            "one int": 1,
            "1e20": 1e20,
            "1e21": 1e21,
            "1e-6": 1e-6,
            "1e-7": 1e-7,
            "negative zero": -0.0,
            "min subnormal": 5e-324,
            "max double": 1.7976931348623157e308,
            "min double": -1.7976931348623157e308,
            "tenth": 0.1,
            "third": 1 / 3,
            "2^53 as float": 9007199254740992.0,
        },
    },
    {
        "name": "RFC 8785 appendix B number samples",
        "payload": [
            __import__("struct").unpack(">d", bytes.fromhex(bits))[0]
            for bits in RFC8785_NUMBER_BITS
        ],
    },
    {
        "name": "large integers: the safe range, and exact doubles beyond it",
        "payload": {
            "max safe": 2**53 - 1,
            "min safe": -(2**53 - 1),
            "2^53": 2**53,
            "ES spelling of 3.668476543085105e16": 36684765430851050,
            "big": 10**15,
        },
    },
    {
        "name": "empty containers everywhere",
        "payload": {"a": {}, "b": [], "c": [{}, [], [[]], {"d": {}}], "e": ""},
    },
    {"name": "owner scope", "scope": "7:user-42", "payload": {"prompt": "a red fox"}},
    {
        "name": "owner and operation scope",
        "scope": "7:user-42/8:generate",
        "payload": {"prompt": "a red fox"},
    },
    {"name": "no scope", "payload": {"prompt": "a red fox"}},
    {
        "name": "excluded client timestamp and trace id",
        "scope": "7:user-42",
        "exclude": ["/client_ts", "/trace/id", "/missing/member"],
        "payload": {
            "prompt": "a red fox",
            "client_ts": "2026-03-01T12:00:00Z",
            "trace": {"id": "0af7651916cd43dd", "sampled": True},
        },
    },
    {
        "name": "a generation request",
        "scope": "13:acct_9f3e/2b7/8:generate",
        "payload": {
            "prompt": "A minimalist fox logo, orange \u2192 red gradient \U0001f98a",
            "model": "gpt-4o-mini",
            "options": {"width": 512, "height": 512, "temperature": 0.7, "seed": None},
            "tags": ["logo", "flat"],
        },
    },
    {
        "name": "error: integer 2**53 + 1, which no double represents",
        "payload": {"n": 2**53 + 1},
    },
    {
        "name": "error: -(2**63), which doubles only approximate",
        "payload": {"list": [1, -(2**63)]},
    },
    {
        "name": "error: lone surrogate",
        "payload": {"text": ["ok", "\ud800"]},
    },
]


def build() -> list[dict[str, Any]]:
    vectors = []
    for case in CASES:
        vector: dict[str, Any] = {
            "name": case["name"],
            "scope": case.get("scope"),
            "exclude": case.get("exclude", []),
            "payload": case["payload"],
        }
        try:
            vector["canonical"] = canonical_json(case["payload"], exclude=vector["exclude"])
            vector["hash"] = request_hash(
                case["payload"], scope=vector["scope"], exclude=vector["exclude"]
            )
        except UnhashablePayload as exc:
            vector["error"] = {"reason": exc.fields["reason"], "path": exc.fields["path"]}
        vectors.append(vector)
    return vectors


if __name__ == "__main__":
    out = Path(__file__).with_name("request_hash_vectors.json")
    text = json.dumps(build(), indent=2, ensure_ascii=True) + "\n"
    out.write_text(text, encoding="ascii")
    print(f"wrote {out}")
