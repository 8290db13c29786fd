"""SanitizePolicy: frozen, validated, presets, safe extension."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chatsvg_core.sanitize import PRESET_NAMES, SanitizePolicy, Sanitizer, sanitize_svg

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
