"""Cross-language check: our canonical JSON and fingerprints against the npm ``canonicalize``.

Needs node and ``npm ci --prefix tests/node``. Without them the tests skip
locally and fail in CI (``CHATSVG_REQUIRE_SERVICES=1`` or ``CI``), so CI can
never pass by not comparing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import UnhashablePayload
from chatsvg_core.idempotency import canonical_json, request_hash
from chatsvg_core.testing import json_values

pytestmark = pytest.mark.node

NODE_DIR = Path(__file__).parents[1] / "node"
VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "data" / "request_hash_vectors.json").read_text(encoding="utf-8")
)

Batch = Callable[[list[tuple[str | None, Any]]], list[dict[str, str]]]


@pytest.fixture(scope="module")
def jcs(node_path: str) -> Batch:
    """Run many (scope, payload) pairs through one node process; results in order."""
    if not (NODE_DIR / "node_modules" / "canonicalize").is_dir():
        reason = (
            "tests/node/node_modules is missing: run `npm ci --prefix tests/node` "
            "(the JavaScript JCS reference these tests compare against)"
        )
        if os.environ.get("CHATSVG_REQUIRE_SERVICES") == "1" or os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)

    def run(items: list[tuple[str | None, Any]]) -> list[dict[str, str]]:
        lines = "".join(json.dumps({"scope": s, "payload": p}) + "\n" for s, p in items)
        done = subprocess.run(
            [node_path, str(NODE_DIR / "jcs.mjs")],
            input=lines.encode(),
            capture_output=True,
            cwd=NODE_DIR,
            timeout=60,
            check=True,
        )
        # Split on "\n" only: str.splitlines() also breaks at U+2028 and friends.
        out = done.stdout.decode("utf-8").split("\n")
        results = [json.loads(line) for line in out if line]
        assert len(results) == len(items), done.stderr.decode()
        return results

    return run


def _drop(payload: Any, pointers: list[str]) -> Any:
    # An independent, naive reading of the exclusion rule: remove each named
    # member if the path to it runs through objects.
    payload = json.loads(json.dumps(payload))
    for pointer in pointers:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
        node = payload
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return payload


def test_vectors_match_javascript(jcs: Batch) -> None:
    good = [v for v in VECTORS if "canonical" in v]
    results = jcs([(v["scope"], _drop(v["payload"], v["exclude"])) for v in good])
    for vector, result in zip(good, results, strict=True):
        assert result.get("canonical") == vector["canonical"], vector["name"]
        assert result.get("hash") == vector["hash"], vector["name"]


def test_lone_surrogates_are_refused_by_both(jcs: Batch) -> None:
    bad = [v for v in VECTORS if v.get("error", {}).get("reason") == "lone_surrogate"]
    assert bad
    for result in jcs([(v["scope"], v["payload"]) for v in bad]):
        assert "surrogate" in result.get("error", "").lower()


def _compare(jcs: Batch, values: list[Any], scope: str | None = "7:user-42") -> None:
    results = jcs([(scope, v) for v in values])
    for value, result in zip(values, results, strict=True):
        assert result == {
            "canonical": canonical_json(value),
            "hash": request_hash(value, scope=scope),
        }, value


@given(values=st.lists(json_values(), min_size=30, max_size=30))
@settings(max_examples=8)
def test_generated_json_matches_javascript(jcs: Batch, values: list[Any]) -> None:
    _compare(jcs, values)


@given(
    values=st.lists(
        st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
        min_size=200,
        max_size=200,
    )
)
@settings(max_examples=6)
def test_generated_numbers_match_javascript(jcs: Batch, values: list[Any]) -> None:
    _compare(jcs, [values], scope=None)
    _compare(jcs, values[:50], scope=None)


def test_edge_numbers_match_javascript(jcs: Batch) -> None:
    edges: list[Any] = []
    for exponent in range(-325, 309):
        for mantissa in (1.0, 1.5, 9.999999999999999, 2.2250738585072014, 4.9):
            value = float(f"{mantissa}e{exponent}")
            if math.isfinite(value):
                edges.append(value)
    edges += [2.0**e for e in range(-1074, 1024, 7)]
    edges += [-x for x in edges[::5]]
    _compare(jcs, [edges], scope=None)


def test_exact_big_integers_read_the_same_in_javascript(jcs: Batch) -> None:
    values = [2**53, 2**53 + 2, 36684765430851050, 10**20, -1152921504606847000]
    _compare(jcs, [values], scope=None)
    # 2**60 is a double, but ECMAScript writes it 1152921504606847000: refused
    # as an integer, so no two spellings of one number hash differently.
    for inexact in (2**53 + 1, 2**60):
        with pytest.raises(UnhashablePayload):
            canonical_json(inexact)
