"""Hardened parsing: every rejection reason, refused in bounded time (no timing asserts)."""

from __future__ import annotations

import pytest

from chatsvg_core.errors import PermanentError, SVGRejected
from chatsvg_core.sanitize import ReasonCode, SanitizePolicy, sanitize_svg

NS = 'xmlns="http://www.w3.org/2000/svg"'


def rejected(data: str | bytes, policy: SanitizePolicy | None = None) -> SVGRejected:
    with pytest.raises(SVGRejected) as info:
        sanitize_svg(data, policy=policy)
    return info.value


def test_rejection_is_a_permanent_error_with_structured_fields() -> None:
    err = rejected("<svg")
    assert isinstance(err, PermanentError)
    assert err.reason == ReasonCode.NOT_WELL_FORMED
    assert err.detail
    assert err.to_dict()["reason"] == "not_well_formed"


@pytest.mark.parametrize(
    "data",
    ["", "   ", "<svg", f"<svg {NS}><g></svg>", f"<svg {NS}></svg><svg {NS}/>", b"\xff\xfe\xfa"],
)
def test_not_well_formed(data: str | bytes) -> None:
    assert rejected(data).reason == ReasonCode.NOT_WELL_FORMED


@pytest.mark.parametrize(
    "data",
    [
        "<html/>",
        '<svg xmlns=""/>',  # explicitly in no namespace: never repaired
        '<svg xmlns="http://www.w3.org/1999/xhtml"/>',
        f"<g {NS}/>",
        '<x:svg xmlns:x="http://www.w3.org/2000/SVG"/>',
    ],
)
def test_root_must_be_svg_in_the_svg_namespace(data: str) -> None:
    assert rejected(data).reason == ReasonCode.NOT_SVG_ROOT


def test_root_matched_by_namespace_not_prefix() -> None:
    out = sanitize_svg('<s:svg xmlns:s="http://www.w3.org/2000/svg"><s:rect/></s:svg>')
    assert out.svg == f"<svg {NS}><rect/></svg>"


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    + f"]><svg {NS}><text>&lol9;</text></svg>"
).replace("&lol0;", "&lol;")
QUADRATIC = (
    f'<!DOCTYPE svg [<!ENTITY a "{"x" * 100_000}">]><svg {NS}><text>'
    + "&a;" * 10_000
    + "</text></svg>"
)
XXE = f'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg {NS}><text>&x;</text></svg>'
PARAMETER = f'<!DOCTYPE svg [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><svg {NS}/>'


@pytest.mark.parametrize("data", [BILLION_LAUGHS, QUADRATIC, XXE, PARAMETER])
def test_entity_declarations_are_refused_before_parsing(data: str) -> None:
    assert rejected(data).reason == ReasonCode.ENTITY_FORBIDDEN


def test_undeclared_entity_reference_is_refused() -> None:
    assert rejected(f"<svg {NS}><text>&nbsp;</text></svg>").reason == ReasonCode.ENTITY_FORBIDDEN


def test_predefined_entities_and_char_refs_are_fine() -> None:
    out = sanitize_svg(f"<svg {NS}><text>&lt;&amp;&#65;&#x42;</text></svg>")
    assert out.svg == f"<svg {NS}><text>&lt;&amp;AB</text></svg>"


SVG11_DOCTYPE = (
    '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
    '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">'
)


GRAPHVIZ_DOCTYPE = (
    '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"\n'
    ' "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
)


@pytest.mark.parametrize("policy", [SanitizePolicy.default(), SanitizePolicy.strict()])
@pytest.mark.parametrize(
    "doctype",
    [
        SVG11_DOCTYPE,
        GRAPHVIZ_DOCTYPE,
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.0//EN" '
        '"http://www.w3.org/TR/2001/REC-SVG-20010904/DTD/svg10.dtd">',
        "<!DOCTYPE svg PUBLIC '-//W3C//DTD SVG 20010904//EN' 'svg10.dtd'>",
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1 Tiny//EN" "x">',
    ],
)
def test_the_standard_svg_doctypes_are_dropped_by_default(
    doctype: str, policy: SanitizePolicy
) -> None:
    out = sanitize_svg(f"{doctype}\n<svg {NS}><rect/></svg>", policy=policy)
    assert out.svg == f"<svg {NS}><rect/></svg>"
    assert out.report.by_reason(ReasonCode.DOCTYPE_FORBIDDEN)


@pytest.mark.parametrize(
    "doc",
    [
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x" [<!ENTITY a "b">]><svg {NS}/>',
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x" [<!ATTLIST svg a CDATA "x">]>'
        "<svg {NS}/>",
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x"><!DOCTYPE svg><svg {NS}/>',
        '<!DOCTYPE html PUBLIC "-//W3C//DTD SVG 1.1//EN" "x"><svg {NS}/>',
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "x"><svg {NS}/>',
        '<!DOCTYPE svg SYSTEM "http://evil.example/x.dtd"><svg {NS}/>',
        '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"><svg {NS}/>',
        "<!DOCTYPE svg><svg {NS}/>",
    ],
)
def test_other_doctypes_are_refused_by_default(doc: str) -> None:
    err = rejected(doc.replace("{NS}", NS))
    assert err.reason in (ReasonCode.DOCTYPE_FORBIDDEN, ReasonCode.ENTITY_FORBIDDEN)


def test_svg_doctypes_can_be_refused_by_policy() -> None:
    policy = SanitizePolicy.default().extend(allow_svg_doctype=False)
    assert rejected(f"{SVG11_DOCTYPE}<svg {NS}><rect/></svg>", policy).reason == (
        ReasonCode.DOCTYPE_FORBIDDEN
    )


def test_plain_doctype_can_be_dropped_by_policy_but_never_one_with_a_subset() -> None:
    policy = SanitizePolicy.default().extend(allow_plain_doctype=True)
    out = sanitize_svg(f"{SVG11_DOCTYPE}\n<svg {NS}><rect/></svg>", policy=policy)
    assert out.svg == f"<svg {NS}><rect/></svg>"
    assert out.report.by_reason(ReasonCode.DOCTYPE_FORBIDDEN)
    err = rejected(f"<!DOCTYPE svg [<!ATTLIST svg a CDATA 'x'>]><svg {NS}/>", policy)
    assert err.reason == ReasonCode.DOCTYPE_FORBIDDEN


def test_byte_limit_is_checked_before_parsing() -> None:
    huge = f"<svg {NS}>" + "<rect/>" * (50 * 1024 * 1024 // 7) + "</svg>"
    err = rejected(huge)
    assert err.reason == ReasonCode.TOO_MANY_BYTES
    assert err.limit == SanitizePolicy.default().max_bytes
    assert rejected(huge.encode()).reason == ReasonCode.TOO_MANY_BYTES


def test_byte_limit_counts_encoded_bytes() -> None:
    policy = SanitizePolicy.default().extend(max_bytes=100)
    doc = f"<svg {NS}><text>{'é' * 40}</text></svg>"  # < 100 chars, > 100 bytes
    assert len(doc) < 100 < len(doc.encode())
    assert rejected(doc, policy).reason == ReasonCode.TOO_MANY_BYTES


@pytest.mark.parametrize("depth", [129, 300, 100_000])
def test_depth_limit(depth: int) -> None:
    doc = f"<svg {NS}>" + "<g>" * depth + "</g>" * depth + "</svg>"
    err = rejected(doc)
    assert err.reason == ReasonCode.TOO_DEEP
    assert err.limit == 128


def test_depth_at_the_limit_is_accepted() -> None:
    doc = f"<svg {NS}>" + "<g>" * 126 + "<rect/>" + "</g>" * 126 + "</svg>"
    assert sanitize_svg(doc).svg.count("<g>") == 126


def test_element_count_limit() -> None:
    policy = SanitizePolicy.default().extend(max_elements=1000)
    doc = f"<svg {NS}>" + "<rect/>" * 1000 + "</svg>"
    err = rejected(doc, policy)
    assert (err.reason, err.limit) == (ReasonCode.TOO_MANY_ELEMENTS, 1000)
    ok = f"<svg {NS}>" + "<rect/>" * 999 + "</svg>"
    assert sanitize_svg(ok, policy=policy).svg.count("<rect/>") == 999


def test_attribute_and_path_length_limits() -> None:
    policy = SanitizePolicy.default().extend(max_attribute_length=50, max_path_length=100)
    long_fill = f'<svg {NS}><rect fill="{"a" * 51}"/></svg>'
    assert rejected(long_fill, policy).reason == ReasonCode.ATTRIBUTE_TOO_LONG
    long_d = f'<svg {NS}><path d="M0 0{" L1 1" * 30}"/></svg>'
    assert rejected(long_d, policy).reason == ReasonCode.PATH_TOO_LONG
    fine_d = f'<svg {NS}><path d="M0 0{" L1 1" * 15}"/></svg>'
    assert sanitize_svg(fine_d, policy=policy).svg.count("L1 1") == 15


def test_attribute_limit_applies_to_dropped_attributes_only_after_allowlist() -> None:
    # A huge *disallowed* attribute is removed, not a reason to reject.
    policy = SanitizePolicy.default().extend(max_attribute_length=10)
    out = sanitize_svg(f'<svg {NS}><rect data-x="{"a" * 100}"/></svg>', policy=policy)
    assert out.svg == f"<svg {NS}><rect/></svg>"


def test_use_fan_out_is_bounded() -> None:
    levels = "".join(f'<g id="l{i + 1}">' + f'<use href="#l{i}"/>' * 10 + "</g>" for i in range(7))
    doc = f'<svg {NS}><g id="l0"><rect/></g>{levels}</svg>'
    err = rejected(doc)
    assert err.reason == ReasonCode.TOO_MUCH_RENDERING
    small = SanitizePolicy.default().extend(max_rendered_elements=10**9)
    assert sanitize_svg(doc, policy=small).svg.count("<use") == 70


@pytest.mark.parametrize(("limit", "ok"), [(4, True), (3, False)])
def test_use_bound_counts_kept_elements_not_markup(limit: int, ok: bool) -> None:
    # 104 '<' in the input, 3 elements kept, 4 rendered: the parse's bound is
    # replaced by the exact count when it alone would exceed the limit.
    doc = f'<svg {NS}><rect id="a"/>{"<!---->" * 100}<use href="#a"/></svg>'
    policy = SanitizePolicy.default().extend(max_rendered_elements=limit)
    if ok:
        assert (
            sanitize_svg(doc, policy=policy).svg
            == f'<svg {NS}><rect id="a"/><use href="#a"/></svg>'
        )
    else:
        assert rejected(doc, policy).reason == ReasonCode.TOO_MUCH_RENDERING


def test_cyclic_use_is_removed() -> None:
    out = sanitize_svg(f'<svg {NS}><g id="a"><rect/><use href="#a"/></g></svg>')
    assert out.svg == f'<svg {NS}><g id="a"><rect/></g></svg>'
    assert out.report.by_reason(ReasonCode.REFERENCE_CYCLE)


def test_long_use_chain_does_not_recurse() -> None:
    chain = "".join(f'<use id="u{i + 1}" href="#u{i}"/>' for i in range(20_000))
    policy = SanitizePolicy.default().extend(max_rendered_elements=10**12)
    out = sanitize_svg(f'<svg {NS}><rect id="u0"/>{chain}</svg>', policy=policy)
    assert rejected(f'<svg {NS}><rect id="u0"/>{chain}</svg>').reason == (
        ReasonCode.TOO_MUCH_RENDERING
    )
    assert out.svg.count("<use") == 20_000


def test_empty_result_after_removal_is_rejected() -> None:
    assert rejected(f"<svg {NS}><script>alert(1)</script></svg>").reason == (
        ReasonCode.EMPTY_RESULT
    )
    # An input that was empty to begin with is returned as it is.
    assert sanitize_svg(f"<svg {NS}/>").svg == f"<svg {NS}/>"


@pytest.mark.parametrize(
    ("encoded", "label"),
    [
        ("utf-16", "UTF-16"),
        ("utf-8-sig", "UTF-8"),
        ("latin-1", "ISO-8859-1"),
    ],
)
def test_encodings_are_honoured(encoded: str, label: str) -> None:
    doc = f'<?xml version="1.0" encoding="{label}"?><svg {NS}><text>é</text></svg>'
    out = sanitize_svg(doc.encode(encoded))
    assert out.svg == f"<svg {NS}><text>é</text></svg>"


MALFORMED_UTF8 = {
    "overlong": b"\xc0\xaf",
    "surrogate": b"\xed\xa0\x80",
    "beyond U+10FFFF": b"\xf4\x90\x80\x80",
    "truncated": b"\xe2\x82",
    "lone continuation": b"\x80",
    "invalid lead byte": b"\xf5\x80\x80\x80",
    "non-character U+FFFE": b"\xef\xbf\xbe",
}
PLACES = {
    "text": b"<svg %s><text>A%sB</text></svg>",
    "attribute": b'<svg %s><rect fill="%s"/><rect/></svg>',
    "comment": b"<svg %s><!--%s--><rect/></svg>",
    "processing instruction": b"<svg %s><?x %s?><rect/></svg>",
    "cdata": b"<svg %s><text><![CDATA[%s]]></text></svg>",
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("sequence", MALFORMED_UTF8)
def test_malformed_utf8_is_refused_wherever_it_is(sequence: str, place: str) -> None:
    # The sanitizer leaves UTF-8 validation to libxml2 (a Python decode first
    # slowed the parse down); this is the evidence that libxml2 refuses it all.
    doc = PLACES[place] % (NS.encode(), MALFORMED_UTF8[sequence])
    for prefix in (b"", b'<?xml version="1.0" encoding="UTF-8"?>'):
        assert rejected(prefix + doc).reason == ReasonCode.NOT_WELL_FORMED
    # The pull parser (taken when there are more ``<`` than ``max_elements``)
    # must refuse it too; each document has at most 3 nodes and 4 ``<``.
    assert doc.count(b"<") > 3
    assert rejected(doc, SanitizePolicy(max_elements=3)).reason == ReasonCode.NOT_WELL_FORMED


def test_str_input_ignores_declared_encoding() -> None:
    doc = f'<?xml version="1.0" encoding="UTF-16"?><svg {NS}><text>é</text></svg>'
    assert sanitize_svg(doc).svg == f"<svg {NS}><text>é</text></svg>"


def test_non_text_input_is_a_typed_refusal() -> None:
    with pytest.raises(SVGRejected) as err:
        sanitize_svg(123)  # type: ignore[arg-type]
    assert err.value.reason == "not_well_formed"


@pytest.mark.parametrize(
    "body",
    [
        '<use id="u" href="#u"/><rect/>',
        '<use href="#c"/><g id="n"><g id="c"><rect/><use href="#n"/></g></g>',
        '<g id="a"><use href="#b"/></g><g id="b"><use href="#a"/><rect/></g>',
    ],
)
def test_every_use_cycle_is_cut(body: str) -> None:
    out = sanitize_svg(f"<svg {NS}>{body}</svg>")
    assert out.report.by_reason(ReasonCode.REFERENCE_CYCLE)
    again = sanitize_svg(out.svg)
    assert again.svg == out.svg
    assert not again.report.by_reason(ReasonCode.REFERENCE_CYCLE)


def test_confinement_adds_no_id_that_a_use_could_reference() -> None:
    # (The root used to get id="chatsvg", which a <use> could point at: a cycle
    # that only the second pass saw.) The scope is a class now.
    doc = f'<svg {NS}><style>rect{{fill:red}}</style><rect/><use href="#chatsvg"/></svg>'
    out = sanitize_svg(doc)
    assert "id=" not in out.svg
    assert sanitize_svg(out.svg).svg == out.svg


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "template",
    [
        '<rect><animate attributeName="fill" values="{v}"/></rect>',  # scheme scan
        '<rect transform="translate({v})"/>',  # function-name scan
        '<rect style="fill:{v}"/>',  # declaration fast path
        '<rect style="fill:calc({v}"/>',  # tokenizer
        '<rect fill="url(#{v}"/>',
        '<a href=" {v}"><rect/></a>',
    ],
)
def test_hostile_long_values_are_handled_in_linear_time(template: str) -> None:
    # One million characters: any quadratic scan here would take hours and hit
    # the timeout; linear code takes milliseconds.
    policy = SanitizePolicy.default().extend(max_attribute_length=2_000_000)
    body = template.format(v="a" * 1_000_000)
    out = sanitize_svg(f"<svg {NS}>{body}<rect/></svg>", policy=policy)
    assert out.svg.endswith("<rect/></svg>")


def test_comments_and_pis_count_towards_the_node_limit() -> None:
    policy = SanitizePolicy.default().extend(max_elements=1000)
    doc = f"<svg {NS}><rect/>" + "<!---->" * 1000 + "</svg>"
    assert rejected(doc, policy).reason == ReasonCode.TOO_MANY_ELEMENTS
    doc = f"<svg {NS}><rect/>" + "<?a?>" * 1000 + "</svg>"
    assert rejected(doc, policy).reason == ReasonCode.TOO_MANY_ELEMENTS


@pytest.mark.timeout(60)
def test_many_removed_parts_keep_the_report_bounded() -> None:
    rects = "".join(f"<rect data-x='{i}' onclick='x'/>" for i in range(30_000))
    text = "a<!---->" * 60_000
    out = sanitize_svg(f"<svg {NS}>{rects}<text>{text}</text></svg>")
    assert len(out.report.entries) == 10_000
    assert out.report.omitted == 2 * 30_000 + 60_000 - 10_000
    assert len(out.report) == 120_000
    assert out.changed
    assert f"<text>{'a' * 60_000}</text>" in out.svg


def test_attribute_count_limit() -> None:
    attrs = " ".join(f"data-x{i}='1'" for i in range(257))
    err = rejected(f"<svg {NS}><rect {attrs}/></svg>")
    assert (err.reason, err.limit) == (ReasonCode.TOO_MANY_ATTRIBUTES, 256)
    attrs = " ".join(f"data-x{i}='1'" for i in range(256))
    assert sanitize_svg(f"<svg {NS}><rect {attrs}/></svg>").svg == f"<svg {NS}><rect/></svg>"
