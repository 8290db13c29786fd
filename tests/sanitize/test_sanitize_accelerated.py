"""The compiled walk (``_walk.pyx``) and the pure-Python walk give identical results.

The accelerator only ever takes over elements that the Python walk would leave
as they are; every decision is still made in Python. These tests hold it to
that: the same output, the same report (entry for entry, in order) and the
same refusal, for hypothesis documents laced with attacks, the fuzz seeds and
the fidelity corpus, under several policies, each document sanitized twice so
that the second pass goes through the caches of values found clean.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import SVGRejected
from chatsvg_core.sanitize import SanitizePolicy, Sanitizer, _sanitizer
from chatsvg_core.testing._svg_strategies import svg_documents

DATA = Path(__file__).resolve().parents[1] / "data"
FUZZ_SEEDS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus" / "sanitize"
POLICIES = {
    "default": SanitizePolicy.default(),
    "strict": SanitizePolicy.strict(),
    "prefixed": SanitizePolicy.default().extend(id_prefix="p0", link_schemes={"https"}),
    "unconfined": SanitizePolicy.default().extend(confine_styles=False),
    # Small limits, so that values, paths, attribute counts and depth reach them.
    "tight": SanitizePolicy.default().extend(
        max_attribute_length=12, max_path_length=16, max_attributes=3, max_depth=4
    ),
}
requires_accelerator = pytest.mark.skipif(
    _sanitizer._ACCELERATOR is None, reason="the compiled walk is not built (pure install)"
)


def _pair(policy: SanitizePolicy) -> tuple[Sanitizer, Sanitizer]:
    fast, pure = Sanitizer(policy), Sanitizer(policy)
    pure._walker = None
    return fast, pure


PAIRS = {name: _pair(policy) for name, policy in POLICIES.items()}


def _outcome(sanitizer: Sanitizer, data: str | bytes) -> tuple[Any, ...]:
    try:
        out = sanitizer.sanitize(data)
    except SVGRejected as exc:
        return ("rejected", exc.reason, exc.detail)
    return ("kept", out.svg, out.report)


def _assert_same(name: str, data: str | bytes) -> None:
    fast, pure = PAIRS[name]
    for _ in range(2):  # the second pass hits the caches of clean values
        assert _outcome(fast, data) == _outcome(pure, data)


@requires_accelerator
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(svg_documents(max_depth=5), st.sampled_from(sorted(POLICIES)))
@example(
    '<svg xmlns="http://www.w3.org/2000/svg"><g>\u00a0<rect/>\u2003</g><title>\u00a0</title></svg>',
    "default",
)
@example('<svg xmlns="http://www.w3.org/2000/svg"><g><![CDATA[]]><rect/></g></svg>', "default")
@example(
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
    '<defs><g id="a"><circle r="1"/></g></defs><use x:href="#a"/><use href="#a"/>'
    '<use href="#b" id="b"/><g id="a"><use href="#a"/></g></svg>',
    "default",
)
@example(
    '<svg xmlns="http://www.w3.org/2000/svg"><g><g><g><g><rect/></g></g></g></g></svg>', "tight"
)
@example(
    '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L 10 10 L 20 20 Z"/>'
    '<rect x="123456789012345"/><rect a="1" b="2" c="3" d="4"/></svg>',
    "tight",
)
@example(
    '<svg xmlns="http://www.w3.org/2000/svg"><text>a<tspan>b</tspan>c</text>'
    "<g>x<rect/>y</g><style>rect{fill:red}</style><rect style='fill:url(#a)' "
    "fill='url(#a)' transform='rotate(4)'/><rect style='fill:url(#a)' "
    "fill='url(#a)' transform='rotate(4)'/></svg>",
    "prefixed",
)
def test_compiled_and_pure_walks_agree(doc: str, name: str) -> None:
    _assert_same(name, doc)


@requires_accelerator
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_compiled_and_pure_walks_agree_on_the_corpora(name: str) -> None:
    files = sorted((DATA / "fidelity").glob("*/*.svg")) + sorted(FUZZ_SEEDS.glob("*"))
    assert len(files) > 400
    for path in files:
        _assert_same(name, path.read_bytes())


def test_the_accelerator_is_built_where_ci_runs() -> None:
    # CI installs the package as the README says; a build that silently fell
    # back to pure Python would leave the compiled walk untested.
    if os.environ.get("CI", "") in ("", "0", "false"):
        pytest.skip("outside CI a pure install is allowed")
    assert _sanitizer._ACCELERATOR is not None


@requires_accelerator
def test_a_stale_build_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # A compiled walk built from an older _walk.pyx must not be trusted.
    monkeypatch.setattr(_sanitizer._ACCELERATOR, "ABI", -1)
    with pytest.warns(RuntimeWarning, match="out of date"):
        assert _sanitizer._load_accelerator() is None


@requires_accelerator
def test_the_pure_walk_can_be_chosen_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSVG_SANITIZE_PURE", "1")
    assert _sanitizer._load_accelerator() is None
    monkeypatch.setenv("CHATSVG_SANITIZE_PURE", "0")
    assert _sanitizer._load_accelerator() is _sanitizer._ACCELERATOR
