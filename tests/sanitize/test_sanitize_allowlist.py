"""Elements and attributes: an allowlist per element, namespaces matched by URI."""

from __future__ import annotations

import pytest

from chatsvg_core.sanitize import Action, ReasonCode, SanitizePolicy, sanitize_svg

NS = 'xmlns="http://www.w3.org/2000/svg"'
XLINK = 'xmlns:xlink="http://www.w3.org/1999/xlink"'


def clean(body: str, policy: SanitizePolicy | None = None, root_attrs: str = "") -> str:
    out = sanitize_svg(f"<svg {NS} {XLINK}{root_attrs}>{body}<rect/></svg>", policy=policy)
    prefix = f"<svg {NS}"
    assert out.svg.startswith(prefix)
    inner = out.svg[out.svg.index(">") + 1 : -len("<rect/></svg>")]
    return inner


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert(1)</script>",
        '<script href="data:,alert(1)"/>',
        "<foreignObject><div xmlns='http://www.w3.org/1999/xhtml'>x</div></foreignObject>",
        "<iframe src='javascript:alert(1)'/>",
        "<embed src='x.swf'/>",
        "<object data='x'/>",
        "<handler>alert(1)</handler>",
        "<listener event='load'/>",
        "<font-face><font-face-src><font-face-uri href='x'/></font-face-src></font-face>",
        "<cursor href='x.png'/>",
        "<tref href='x.svg#t'/>",
        "<unknown><rect/></unknown>",
        "<metadata><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'/></metadata>",
        "<SCRIPT>alert(1)</SCRIPT>",
        "<Script>alert(1)</Script>",
    ],
)
def test_dangerous_and_unknown_elements_are_removed(body: str) -> None:
    assert clean(body) == ""


def test_foreign_namespaces_are_removed_cleanly() -> None:
    doc = (
        f'<svg {NS} xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
        'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd" '
        'xmlns:html="http://www.w3.org/1999/xhtml" inkscape:version="1.0">'
        '<sodipodi:namedview id="nv"/><g inkscape:label="Layer" inkscape:groupmode="layer">'
        '<html:script>alert(1)</html:script><rect sodipodi:type="x"/></g></svg>'
    )
    out = sanitize_svg(doc)
    assert out.svg == f"<svg {NS}><g><rect/></g></svg>"
    reasons = {e.reason for e in out.report.entries}
    assert reasons == {ReasonCode.FOREIGN_NAMESPACE}
    assert "inkscape" not in out.svg
    assert "xmlns:html" not in out.svg


def test_script_in_svg_namespace_under_another_prefix_is_removed() -> None:
    doc = (
        f'<svg {NS} xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script><rect/></svg>'
    )
    out = sanitize_svg(doc)
    assert out.svg == f"<svg {NS}><rect/></svg>"
    assert out.report.entries[0].reason == ReasonCode.ELEMENT_NOT_ALLOWED


def test_unprefixed_element_in_no_namespace_is_foreign() -> None:
    doc = f'<svg {NS}><script xmlns="">alert(1)</script><rect/></svg>'
    out = sanitize_svg(doc)
    assert out.svg == f"<svg {NS}><rect/></svg>"
    assert out.report.entries[0].reason == ReasonCode.FOREIGN_NAMESPACE


@pytest.mark.parametrize(
    "attr",
    ["onload", "onclick", "ONLOAD", "OnLoad", "onbegin", "onend", "onrepeat", "onfocusin"],
)
def test_event_handlers_are_removed(attr: str) -> None:
    out = sanitize_svg(f'<svg {NS} {attr}="alert(1)"><rect {attr}="alert(1)"/></svg>')
    assert out.svg == f"<svg {NS}><rect/></svg>"
    assert [e.reason for e in out.report.entries] == [ReasonCode.EVENT_HANDLER] * 2


def test_attribute_allowed_only_where_the_spec_allows_it() -> None:
    out = sanitize_svg(
        f'<svg {NS}><rect d="M0 0" r="5" width="4" viewBox="0 0 1 1"/>'
        '<circle r="5" width="4"/><path d="M0 0" x="3"/></svg>'
    )
    assert out.svg == f'<svg {NS}><rect width="4"/><circle r="5"/><path d="M0 0"/></svg>'
    assert all(e.reason == ReasonCode.ATTRIBUTE_NOT_ALLOWED for e in out.report.entries)


def test_attribute_names_are_case_sensitive() -> None:
    # ``viewbox`` is not ``viewBox``: an HTML parser would fix its case, an XML one not.
    out = sanitize_svg(f'<svg {NS} viewbox="0 0 1 1" viewBox="0 0 2 2"><rect/></svg>')
    assert out.svg == f'<svg {NS} viewBox="0 0 2 2"><rect/></svg>'


@pytest.mark.parametrize(
    "attr",
    [
        'xml:base="http://evil.example/"',
        'tabindex="1"',
        'autofocus=""',
        'requiredExtensions="http://x"',
        'contentScriptType="text/ecmascript"',
        'target="_blank"',
        'xlink:title="x"',
        'xlink:show="new"',
        'xlink:actuate="onLoad"',
    ],
)
def test_other_dangerous_or_unknown_attributes_are_removed(attr: str) -> None:
    assert sanitize_svg(f"<svg {NS} {XLINK}><rect {attr}/></svg>").svg == (
        f"<svg {NS}><rect/></svg>"
    )


def test_drawing_features_are_kept_intact() -> None:
    doc = (
        f'<svg {NS} {XLINK} viewBox="0 0 100 100" width="100" height="100">'
        '<defs><linearGradient id="g" x1="0" x2="1" gradientUnits="objectBoundingBox">'
        '<stop offset="0" stop-color="#f00"/><stop offset="1" stop-color="blue"/>'
        '</linearGradient><clipPath id="c"><circle cx="50" cy="50" r="40"/></clipPath>'
        '<mask id="m"><rect width="100" height="100" fill="white"/></mask>'
        '<filter id="f" x="-10%" y="-10%" width="120%" height="120%">'
        '<feGaussianBlur in="SourceGraphic" stdDeviation="2" result="b"/>'
        '<feOffset in="b" dx="1" dy="1"/></filter>'
        '<marker id="mk" viewBox="0 0 10 10" refX="5" refY="5" orient="auto-start-reverse">'
        '<path d="M0 0L10 5L0 10z"/></marker>'
        '<pattern id="p" width="4" height="4" patternUnits="userSpaceOnUse"><rect width="2" '
        'height="2"/></pattern><symbol id="s" viewBox="0 0 1 1"><rect width="1" height="1"/>'
        "</symbol></defs>"
        '<g clip-path="url(#c)" mask="url(#m)" filter="url(#f)">'
        '<rect width="100" height="100" fill="url(#g)" stroke="url(#p)"/></g>'
        '<path d="M10 10L90 90" marker-end="url(#mk)" stroke="black"/>'
        '<use xlink:href="#s" x="1"/><use href="#s" y="2"/>'
        '<text x="1" y="2" font-family="Arial, sans-serif" xml:space="preserve">Hi '
        '<tspan dy="1" font-weight="bold">there</tspan></text>'
        "<title>A title</title><desc>A desc</desc></svg>"
    )
    out = sanitize_svg(doc)
    assert not out.changed, out.report
    assert out.svg == doc.replace(f"<svg {NS} {XLINK}", f"<svg {NS} {XLINK}")


def test_xlink_namespace_is_declared_only_when_used_and_with_canonical_prefix() -> None:
    doc = f'<svg {NS} xmlns:l="http://www.w3.org/1999/xlink"><use l:href="#a"/><rect id="a"/></svg>'
    out = sanitize_svg(doc)
    assert out.svg == f'<svg {NS} {XLINK}><use xlink:href="#a"/><rect id="a"/></svg>'
    assert XLINK not in sanitize_svg(f"<svg {NS} {XLINK}><rect/></svg>").svg


def test_markup_inside_title_and_desc_is_removed_text_kept() -> None:
    out = sanitize_svg(
        f"<svg {NS}><title>a<rect/>b</title><desc>c<script>x</script>d</desc><rect/></svg>"
    )
    assert out.svg == f"<svg {NS}><title>ab</title><desc>cd</desc><rect/></svg>"


def test_stray_text_outside_text_elements_is_removed_whitespace_kept() -> None:
    out = sanitize_svg(f"<svg {NS}>\n  junk<g> <rect/>more</g>\n</svg>")
    assert out.svg == f"<svg {NS}><g> <rect/></g>\n</svg>"
    assert {e.reason for e in out.report.entries} == {ReasonCode.TEXT_REMOVED}


def test_text_after_a_removed_element_is_kept() -> None:
    out = sanitize_svg(f"<svg {NS}><text>a<script>x</script>b<!-- c -->c</text></svg>")
    assert out.svg == f"<svg {NS}><text>abc</text></svg>"


def test_comments_and_processing_instructions_are_reported() -> None:
    out = sanitize_svg(f"<?xml-stylesheet href='x.css'?><svg {NS}><!-- hi --><rect/></svg>")
    assert out.svg == f"<svg {NS}><rect/></svg>"
    assert {e.reason for e in out.report.entries} == {
        ReasonCode.COMMENT_REMOVED,
        ReasonCode.PROCESSING_INSTRUCTION_REMOVED,
    }


def test_report_entries_carry_location_and_detail() -> None:
    out = sanitize_svg(f'<svg {NS}>\n<g>\n<rect/><rect onclick="steal()"/></g></svg>')
    (entry,) = out.report.entries
    assert entry.action is Action.REMOVED
    assert entry.kind == "attribute"
    assert entry.path == "/svg/g[1]/rect[2]"
    assert entry.line == 3
    assert entry.name == "onclick"
    assert entry.detail == "steal()"
    assert out.report.counts() == {ReasonCode.EVENT_HANDLER: 1}


def test_strict_preset_drops_style_animation_links_and_images() -> None:
    body = (
        "<style>rect{fill:red}</style><a href='#x'><circle/></a>"
        "<animate attributeName='fill' values='red;blue'/>"
        "<image href='data:image/gif;base64,R0lGODlhAQABAAAAACw='/>"
    )
    # The link is unwrapped: what it draws is kept.
    assert clean(body, SanitizePolicy.strict()) == "<circle/>"
    assert clean(body).count("<") == 7


def test_extra_attributes_policy_keeps_data_and_aria() -> None:
    policy = SanitizePolicy.default().extend(extra_attributes={"data-layer", "aria-label"})
    out = sanitize_svg(
        f'<svg {NS} aria-label="x"><rect data-layer="1" data-other="2"/></svg>', policy=policy
    )
    assert out.svg == f'<svg {NS} aria-label="x"><rect data-layer="1"/></svg>'
