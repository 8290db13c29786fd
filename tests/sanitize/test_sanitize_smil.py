"""SMIL: animations may not target href, handlers, style or URL attributes, nor carry URLs."""

from __future__ import annotations

import pytest

from chatsvg_core.sanitize import ReasonCode, SanitizePolicy, sanitize_svg

NS = 'xmlns="http://www.w3.org/2000/svg"'
XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
ANIMATIONS = ["animate", "set", "animateTransform"]


def kept(animation: str, policy: SanitizePolicy | None = None) -> bool:
    doc = f"<svg {NS} {XLINK}><rect>{animation}</rect></svg>"
    out = sanitize_svg(doc, policy=policy)
    return "<animate" in out.svg or "<set" in out.svg


@pytest.mark.parametrize("element", ANIMATIONS)
@pytest.mark.parametrize(
    "target",
    [
        "href", "HREF", "Href", "xlink:href", "xlink:HREF", " href ", "href\t", "style",
        "STYLE", "onload", "onclick", "ONCLICK", "onbegin", "clip-path", "mask", "filter",
        "marker-end", "cursor", "class", "id", "attributeName", "values", "begin", "xml:base",
        "src", "target", "unknown",
    ],
)  # fmt: skip
def test_forbidden_targets_remove_the_animation(element: str, target: str) -> None:
    assert not kept(f'<{element} attributeName="{target}" to="#x" dur="1s"/>')


@pytest.mark.parametrize(
    "values",
    [
        'values="javascript:alert(1)"',
        'to="javascript:alert(1)"',
        'from="JavaScript:alert(1)"',
        'by="java&#9;script:alert(1)"',
        'values="red;javascript:alert(1)"',
        'values="url(http://evil.example/x)"',
        'to="url( http://evil.example/x)"',
        "to=\"url('//evil.example/x')\"",
        'values="data:image/svg+xml,x"',
    ],
)
def test_url_values_remove_the_animation(values: str) -> None:
    out = sanitize_svg(f'<svg {NS}><rect><animate attributeName="fill" {values}/></rect></svg>')
    assert "<animate" not in out.svg
    assert out.report.entries[0].reason == ReasonCode.ANIMATION_VALUE_FORBIDDEN


@pytest.mark.parametrize(
    "animation",
    [
        '<animate attributeName="fill" values="red;blue;#00ff00" dur="2s" repeatCount="3"/>',
        '<animate attributeName="fill" from="url(#g1)" to="url(#g2)" dur="1s"/>',
        '<animate attributeName="stroke" to="rgb(1,2,3)" begin="click" dur="1s" fill="freeze"/>',
        '<animate attributeName="opacity" values="0;1" keyTimes="0;1" calcMode="linear"/>',
        '<set attributeName="fill" to="red" begin="1s"/>',
        '<animateTransform attributeName="transform" type="rotate" from="0 5 5" to="9 5 5"/>',
        '<animate attributeName="x" by="10" dur="1s" additive="sum"/>',
    ],
)
def test_harmless_animations_are_kept_intact(animation: str) -> None:
    doc = f"<svg {NS}><rect>{animation}</rect></svg>"
    out = sanitize_svg(doc)
    assert not out.changed, out.report
    assert out.svg == doc


def test_animate_motion_with_mpath_is_kept() -> None:
    doc = (
        f'<svg {NS}><path id="p" d="M0 0L9 9"/><circle r="1">'
        '<animateMotion dur="2s" rotate="auto"><mpath href="#p"/></animateMotion></circle></svg>'
    )
    assert sanitize_svg(doc).svg == doc


def test_animate_motion_cannot_carry_urls() -> None:
    out = sanitize_svg(
        f'<svg {NS}><circle r="1"><animateMotion values="javascript:alert(1)"/></circle></svg>'
    )
    assert "animateMotion" not in out.svg


def test_animation_href_must_be_same_document() -> None:
    out = sanitize_svg(
        f'<svg {NS}><rect id="r"/><animate href="http://evil.example/#r" attributeName="x" '
        'to="1"/></svg>'
    )
    assert out.svg == f'<svg {NS}><rect id="r"/><animate attributeName="x" to="1"/></svg>'


def test_strict_preset_has_no_animation() -> None:
    assert not kept('<animate attributeName="fill" values="red;blue"/>', SanitizePolicy.strict())
