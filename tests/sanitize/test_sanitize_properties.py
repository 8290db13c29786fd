"""Property tests: random SVG-ish trees laced with attacks, under several policies."""

from __future__ import annotations

import html5lib
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from chatsvg_core.errors import SVGRejected
from chatsvg_core.sanitize import SanitizedSVG, SanitizePolicy, Sanitizer
from chatsvg_core.testing._svg_checks import assert_svg_safe, svg_safety_violations
from chatsvg_core.testing._svg_strategies import svg_documents

POLICIES = {
    "default": SanitizePolicy.default(),
    "strict": SanitizePolicy.strict(),
    "prefixed": SanitizePolicy.default().extend(id_prefix="p0", link_schemes={"https"}),
    "unconfined": SanitizePolicy.default().extend(confine_styles=False),
}
SANITIZERS = {name: Sanitizer(policy) for name, policy in POLICIES.items()}
policies = st.sampled_from(sorted(POLICIES))
SVG = "{http://www.w3.org/2000/svg}"


def attempt(name: str, data: str | bytes) -> SanitizedSVG | None:
    try:
        return SANITIZERS[name].sanitize(data)
    except SVGRejected:
        return None


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(svg_documents(), policies)
def test_output_is_safe_well_formed_and_stable(doc: str, name: str) -> None:
    out = attempt(name, doc)
    if out is None:
        return
    assert_svg_safe(out.svg, POLICIES[name])
    again = SANITIZERS[name].sanitize(out.svg)
    assert again.svg == out.svg
    assert not again.changed, again.report


@settings(max_examples=100)
@given(svg_documents(), policies)
def test_byte_and_text_inputs_agree(doc: str, name: str) -> None:
    as_text, as_bytes = attempt(name, doc), attempt(name, doc.encode("utf-8"))
    assert as_text == as_bytes


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
@example(b"\xef\xbb\xbf<svg/>")
@example("<svg xmlns='http://www.w3.org/2000/svg'>\x00</svg>")
@example("<svg xmlns='http://www.w3.org/2000/svg'>\ud800</svg>")
def test_arbitrary_input_only_ever_raises_svg_rejected(data: str | bytes) -> None:
    out = attempt("default", data)
    if out is not None:
        assert_svg_safe(out.svg)


@settings(max_examples=150)
@given(svg_documents(), st.data())
def test_mutated_documents_only_ever_raise_svg_rejected(doc: str, data: st.DataObject) -> None:
    # Cut, duplicate or splice the markup: mostly not well-formed, sometimes odd.
    i = data.draw(st.integers(0, len(doc)))
    j = data.draw(st.integers(i, len(doc)))
    mutated = data.draw(
        st.sampled_from([doc[:i] + doc[j:], doc[:j] + doc[i:j] + doc[j:], doc[i:j]])
    )
    out = attempt("default", mutated)
    if out is not None:
        assert_svg_safe(out.svg)


def _html_view(markup: str) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
    doc = html5lib.parse(f"<!DOCTYPE html><body>{markup}</body>", treebuilder="lxml")
    body = doc.getroot()[1]
    assert len(body) == 1
    return [_node(el) for el in body[0].iter()]


def _node(el: etree._Element) -> tuple[str, tuple[tuple[str, str], ...], str]:
    assert isinstance(el.tag, str), el.tag
    assert el.tag.startswith(SVG), el.tag
    attrs = tuple(
        sorted(
            (etree.QName(k).localname, v)
            for k, v in el.attrib.items()
            if etree.QName(k).namespace != "http://www.w3.org/2000/xmlns/"
        )
    )
    return (etree.QName(el).localname, attrs, (el.text or "") + (el.tail or ""))


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(svg_documents(), policies)
def test_html_parser_reads_the_same_tree_as_the_xml_parser(doc: str, name: str) -> None:
    out = attempt(name, doc)
    if out is None:
        return
    root = etree.fromstring(out.svg.encode())
    xml_view = [_node(el) for el in root.iter()]
    xml_view[0] = (xml_view[0][0], xml_view[0][1], root.text or "")
    html_view = _html_view(out.svg)
    html_view[0] = (html_view[0][0], html_view[0][1], xml_view[0][2])
    assert html_view == xml_view


def test_checker_detects_what_it_should() -> None:
    # The safety checker must be able to fail, or the properties above prove nothing.
    ns = 'xmlns="http://www.w3.org/2000/svg"'
    bad = [
        f"<svg {ns}><script>alert(1)</script></svg>",
        f'<svg {ns} onload="alert(1)"/>',
        f'<svg {ns}><a href="javascript:alert(1)"/></svg>',
        f'<svg {ns}><use href="http://evil.example/x.svg#a"/></svg>',
        f"<svg {ns}><style>@import 'x';</style></svg>",
        f'<svg {ns}><rect style="fill:url(http://e/x)"/></svg>',
        f'<svg {ns}><set attributeName="href" to="#a"/></svg>',
        f"<svg {ns}><!-- x --></svg>",
        f"<svg {ns}><title><rect/></title></svg>",
        f'<svg {ns}><image href="data:image/svg+xml,x"/></svg>',
        f"<svg {ns}><g>",
    ]
    for markup in bad:
        assert svg_safety_violations(markup), markup
