"""SanitizePolicy: frozen, validated, presets, safe extension."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
from pydantic import ValidationError

from chatsvg_core.sanitize import PRESET_NAMES, SanitizePolicy, Sanitizer, _sanitizer, sanitize_svg

FIDELITY = Path(__file__).parents[1] / "data" / "fidelity"

NS = 'xmlns="http://www.w3.org/2000/svg"'


def test_presets() -> None:
    assert PRESET_NAMES == ("strict", "default")
    default, strict = SanitizePolicy.preset("default"), SanitizePolicy.preset("strict")
    assert default is SanitizePolicy.default()
    assert strict is SanitizePolicy.strict()
    assert strict.elements < default.elements
    assert "style" in default.elements
    assert "style" not in strict.elements
    assert not strict.data_image_types
    assert not strict.allow_style_element
    with pytest.raises(ValueError, match="unknown preset"):
        SanitizePolicy.preset("lax")


def test_policy_is_frozen_and_forbids_unknown_fields() -> None:
    policy = SanitizePolicy.default()
    with pytest.raises(ValidationError):
        policy.max_bytes = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        SanitizePolicy(allow_script=True)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("elements", {"script"}),
        ("elements", {"foreignObject"}),
        ("elements", {"iframe"}),
        ("attributes", {"onload"}),
        ("attributes", {"xml:base"}),
        ("extra_attributes", {"onclick"}),
        ("extra_attributes", {"href"}),
        ("extra_attributes", {"style"}),
        ("css_properties", {"behavior"}),
        ("css_properties", {"-moz-binding"}),
        ("css_properties", {"background-image"}),
        ("image_hosts", {"evil.example/path"}),
        ("max_depth", 10_000),
        ("max_bytes", 0),
    ],
)
def test_extension_cannot_reenable_danger(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        SanitizePolicy.default().extend(**{field: value})


def test_extend_unions_sets_and_replaces_scalars() -> None:
    policy = SanitizePolicy.strict().extend(elements={"image"}, max_depth=20, name="mine")
    assert "image" in policy.elements
    assert "rect" in policy.elements
    assert policy.max_depth == 20
    assert policy.name == "mine"
    assert SanitizePolicy.strict().max_depth == 128  # the preset is unchanged


def test_narrowing_a_policy_by_validation() -> None:
    data = SanitizePolicy.default().model_dump()
    data["elements"] = {"svg", "rect"}
    policy = SanitizePolicy.model_validate(data)
    out = Sanitizer(policy).sanitize(f"<svg {NS}><rect/><circle/></svg>")
    assert out.svg == f"<svg {NS}><rect/></svg>"


def test_policy_must_keep_svg() -> None:
    with pytest.raises(ValidationError):
        SanitizePolicy(elements=frozenset({"rect"}))


def test_policy_round_trips_through_json() -> None:
    policy = SanitizePolicy.default().extend(image_hosts={"cdn.example.com"}, id_prefix="x")
    again = SanitizePolicy.model_validate_json(policy.model_dump_json())
    assert again == policy


def test_sanitizer_is_reusable_and_matches_the_function() -> None:
    sanitizer = Sanitizer(SanitizePolicy.strict())
    doc = f"<svg {NS}><style>rect{{fill:red}}</style><rect/></svg>"
    assert sanitizer.sanitize(doc) == sanitize_svg(doc, policy=SanitizePolicy.strict())
    assert sanitizer.sanitize(doc) == sanitizer.sanitize(doc.encode())
    assert Sanitizer().policy is SanitizePolicy.default()


def test_one_sanitizer_shared_by_threads_gives_the_sequential_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Shared: the policy tables and the bounded value caches; per thread: the
    # parser; per call: everything else. A tiny cache makes threads clear and
    # refill it while others read it.
    docs = [p.read_bytes() for p in sorted(FIDELITY.rglob("*.svg"))[:120]]
    assert len(docs) == 120
    expected = [Sanitizer().sanitize(d) for d in docs]
    shared = Sanitizer()
    monkeypatch.setattr(_sanitizer, "_CLEAN_SIZE", 8)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            got = list(pool.map(shared.sanitize, docs))
            assert [g.svg for g in got] == [e.svg for e in expected]
            assert [g.report for g in got] == [e.report for e in expected]
