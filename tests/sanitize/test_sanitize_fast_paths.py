"""The sanitizer's shortcuts for the commonest answer give what the general paths give.

``Sanitizer._parse`` parses a ``str`` that ``parse_svg`` would parse in one call
itself, ``repair_root`` settles a root that starts ``<svg xmlns=`` with no ``xlink:``
anywhere without its regexes, the sanitizer parses before repairing when the
input has no ``xlink:`` (``Sanitizer._parse``), and ``serialize`` writes a tree whose input
declared one namespace without the namespace clean-up (keeping the text only
when it holds one declaration). Both are checked against the general path on
the real-world corpus, generated documents and hand-made edge cases.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import SVGRejected
from chatsvg_core.sanitize import SanitizePolicy, Sanitizer, _repair
from chatsvg_core.sanitize import _sanitizer as sanitizer_module
from chatsvg_core.sanitize._parse import _DECLARATION
from chatsvg_core.sanitize._repair import _repair_general, repair_root
from chatsvg_core.sanitize._serialize import serialize
from chatsvg_core.testing._svg_strategies import svg_documents

CORPUS = sorted((Path(__file__).parents[1] / "data" / "fidelity").rglob("*.svg"))
NS = "http://www.w3.org/2000/svg"
EDGES = [
    f'<svg xmlns="{NS}"><circle r="1"/></svg>',
    f'<svg xmlns="{NS}"><text>xmlns</text></svg>',
    f'<svg xmlns="{NS}" data-x="xmlns"><rect width="1" height="1"/></svg>',
    f'<svg xmlns="{NS}" xmlns:xlink="http://www.w3.org/1999/xlink"><rect/></svg>',
    f'<svg xmlns="{NS}"><g xmlns="{NS}"><rect width="1" height="1"/></g></svg>',
    f'<s:svg xmlns:s="{NS}"><s:rect width="1" height="1"/></s:svg>',
    f'<svg xmlns="{NS}"><use xlink:href="#a"/></svg>',
    f'<svg xmlns="{NS}" xmlns:x="urn:x" x:y="1"><rect width="1" height="1"/></svg>',
    f'<svg xmlns="{NS}"><x:rect xmlns:x="urn:x"/><rect width="1" height="1"/></svg>',
    '<svg xmlns="urn:other"><rect/></svg>',
    f'<svg xmlns="{NS}" ',
    f"<svg xmlns='{NS}'/>",
    f'<svg xmlns="{NS}"/><!-- xlink: -->',
    '<svg><rect width="1" height="1"/></svg>',
    '<!-- c --><?pi x?>\n<svg viewBox="0 0 1 1"><rect width="1" height="1"/></svg>',
    f'<svg data-a="xmlns={NS}"><rect width="1" height="1"/></svg>',
    f'<svg><g xmlns="{NS}"><rect width="1" height="1"/></g></svg>',
    '<svg><rect width="1" height="1"></svg>',
    '<svg x:a="1"><rect width="1" height="1"/></svg>',
    f'<svg xmlns="{NS}"><rect width="1" height="1"></svg>',
    f'\ufeff<svg xmlns="{NS}"><rect width="1" height="1"/></svg>',
    '<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
    '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"><svg><rect width="1" height="1"/></svg>',
    f'<svg xmlns="{NS}"><g xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="#a"/>'
    '<rect id="a" width="1" height="1"/></g></svg>',
    f'<svg xmlns="{NS}"><text> xlink:a</text><rect width="1" height="1"/></svg>',
    "<svg/>",
    "<html/>",
    "",
]


def _general_outcome(sanitizer: Sanitizer, doc: str | bytes) -> Any:
    """The answer with both shortcuts turned off."""
    original = sanitizer_module.serialize
    repair = sanitizer_module.repair_root
    try:
        sanitizer_module.serialize = lambda root, one_declaration=False: original(root)  # type: ignore[assignment]
        sanitizer_module.repair_root = _repair_general  # type: ignore[assignment]
        sanitizer_module._PARSE_FIRST = False
        sanitizer_module._TEXT_FIRST = False
        return _outcome(sanitizer, doc)
    finally:
        sanitizer_module.serialize = original  # type: ignore[assignment]
        sanitizer_module.repair_root = repair  # type: ignore[assignment]
        sanitizer_module._PARSE_FIRST = True
        sanitizer_module._TEXT_FIRST = True


def _outcome(sanitizer: Sanitizer, doc: str | bytes) -> Any:
    try:
        clean = sanitizer.sanitize(doc)
    except SVGRejected as exc:
        return "rejected", exc.reason
    return clean.svg, clean.report


def _agrees(doc: str | bytes, policy: SanitizePolicy | None = None) -> None:
    sanitizer = Sanitizer.prepared(policy)
    assert _outcome(sanitizer, doc) == _general_outcome(sanitizer, doc)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_the_corpus_comes_out_as_the_general_path_writes_it(path: Path) -> None:
    raw = path.read_bytes()
    _agrees(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    _agrees(text)
    if text.startswith("<svg"):
        return
    # The corpus mostly starts with a prolog: the same document without it too.
    start = text.find("<svg")
    if start != -1:
        _agrees(text[start:])


@pytest.mark.parametrize("doc", EDGES)
@pytest.mark.parametrize("policy", [None, SanitizePolicy.strict()], ids=["default", "strict"])
def test_edge_cases(doc: str, policy: SanitizePolicy | None) -> None:
    _agrees(doc, policy)
    _agrees(doc.encode(), policy)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(svg_documents())
def test_generated_documents(doc: Any) -> None:
    _agrees(doc)


_PIECES = st.sampled_from(
    ['"', "'", ">", "/", " ", "\n", "xlink:", "xlink:href", "xmlns", "xmlns:xlink=", "=", "a", "<"]
)


@settings(max_examples=400)
@given(st.lists(_PIECES, max_size=12).map("".join), st.booleans())
def test_repair_shortcut_equals_the_general_path(tail: str, as_bytes: bool) -> None:
    doc: str | bytes = '<svg xmlns="' + tail
    if as_bytes:
        doc = doc.encode()
    assert repair_root(doc) == _repair_general(doc)


_PROLOGS = st.sampled_from(["", "\n", "<!-- c -->", "<?xml version='1.0'?>", "<?pi x?>", " \t"])
_ROOTS = st.sampled_from(["<svg", "<s:svg", "<svg:svg", "<html", "<svg\n", "<svgx", "svg", "<SVG"])
_ROOT_ATTRIBUTES = st.sampled_from(
    [
        "",
        f' xmlns="{NS}"',
        ' xmlns="urn:other"',
        f' xmlns:s="{NS}"',
        f' xmlns:svg="{NS}"',
        ' xmlns:xlink="http://www.w3.org/1999/xlink"',
        ' a="xmlns"',
        " x:a='1'",
        ' viewBox="0 0 1 1"',
        ' a="\'"',
        " a=>",
    ]
)
_BODIES = st.sampled_from(
    [
        '><rect width="1" height="1"/></svg>',
        '><s:rect width="1" height="1"/></s:svg>',
        "/>",
        '><rect width="1" height="1"></svg>',
        '><use xlink:href="#a"/><rect id="a" width="1" height="1"/></svg>',
        '><g xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></g></svg>',
        "><script>x</script><rect/></svg>",
        '><g xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="#a"/></g>'
        '<rect id="a" width="1" height="1"/></svg>',
        "><text> xlink:a</text><rect/></svg>",
        "",
    ]
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_PROLOGS, max_size=3).map("".join),
    _ROOTS,
    st.lists(_ROOT_ATTRIBUTES, max_size=3).map("".join),
    _BODIES,
    st.booleans(),
)
def test_parse_first_equals_repair_first(
    prolog: str, root: str, attributes: str, body: str, as_bytes: bool
) -> None:
    doc: str | bytes = prolog + root + attributes + body
    if as_bytes:
        doc = doc.encode()
    _agrees(doc)


def test_serialize_keeps_a_second_declaration() -> None:
    from lxml import etree

    root = etree.fromstring(f'<svg xmlns="{NS}"><g xmlns:x="urn:x" x:a="1"/></svg>')
    assert serialize(root, one_declaration=True) == serialize(
        etree.fromstring(f'<svg xmlns="{NS}"><g xmlns:x="urn:x" x:a="1"/></svg>')
    )


# The start tag's attribute text as the root regex captures it: unquoted runs
# (no quote, no ``>``) and quoted values (any text but their own quote).
_UNQUOTED = st.lists(
    st.sampled_from([" ", "\t", "\n", "\r", "=", "xmlns", "xmlns:xlink", ":xlink", "x", "/", "<"]),
    max_size=6,
).map("".join)
_VALUE = st.lists(
    st.sampled_from([" ", "xmlns", "xmlns=", " xmlns:xlink=", ">", "a", "=", '"', "'"]), max_size=4
).map("".join)
_ATTRIBUTES = st.lists(
    st.one_of(
        _UNQUOTED,
        _VALUE.map(lambda v: '"' + v.replace('"', "") + '"'),
        _VALUE.map(lambda v: "'" + v.replace("'", "") + "'"),
    ),
    max_size=8,
).map("".join)


def _missing_by_regex(attributes: str, uses_xlink: bool) -> list[tuple[str, str]]:
    """``_missing`` as the regexes spell it (the reference the quicker code must equal)."""
    names = _repair._QUOTED.sub('""', attributes)
    added = []
    if not _repair._DEFAULT_NS.search(names):
        added.append(("xmlns", _repair.SVG_NS))
    if not _repair._XLINK_DECL.search(names) and uses_xlink:
        added.append(("xmlns:xlink", _repair.XLINK_NS))
    return added


@settings(max_examples=1500)
@given(_ATTRIBUTES, st.booleans())
def test_missing_declarations_equal_the_regex_reading(attributes: str, uses_xlink: bool) -> None:
    assert _repair._names(attributes) == _repair._QUOTED.sub('""', attributes)
    assert _repair._missing(attributes, lambda: uses_xlink) == _missing_by_regex(
        attributes, uses_xlink
    )


@pytest.mark.parametrize(
    "attributes",
    [
        "",
        ' xmlns="u"',
        ' xmlns ="u"',
        "\nxmlns\t=\n'u'",
        'xmlns="u"',
        ' data-a="xmlns=" b',
        " data-a='xmlns=' xmlns:xlink='v'",
        " a=\"'\" xmlns='\"'",
        ' a="x" xmlnsx="u" xmlns:xlinkx="v"',
        ' axmlns="u" bxmlns:xlink="v"',
        " xmlns:xlink = 'v'",
        " xmlns",
        " xmlns:xlink",
    ],
)
@pytest.mark.parametrize("uses_xlink", [False, True])
def test_missing_declarations_edge_cases(attributes: str, uses_xlink: bool) -> None:
    assert _repair._missing(attributes, lambda: uses_xlink) == _missing_by_regex(
        attributes, uses_xlink
    )


def test_repair_of_the_corpus_equals_the_regex_reading() -> None:
    for path in CORPUS:
        raw = path.read_bytes()
        match = _repair._ROOT_BYTES.match(raw)
        if match is None:
            continue
        attributes = match.group(1).decode("latin-1")
        uses = _repair._uses_xlink(raw)
        assert _repair._missing(attributes, lambda u=uses: u) == _missing_by_regex(attributes, uses)


_XSS = sorted((Path(__file__).parents[1] / "data" / "xss").rglob("*.svg"))


@pytest.mark.parametrize("preset", ["default", "strict"])
def test_reports_are_what_validation_builds(preset: str) -> None:
    """Report entries and reports are built without validation: each equals its validated self."""
    from chatsvg_core.sanitize import ReportEntry, SanitizeReport

    sanitizer = Sanitizer(SanitizePolicy.preset(preset).extend(id_prefix="p"))
    seen = 0
    for path in CORPUS + _XSS:
        try:
            report = sanitizer.sanitize(path.read_bytes()).report
        except SVGRejected:
            continue
        for entry in report.entries:
            again = ReportEntry(**dict(entry))
            assert again == entry
            assert again.model_fields_set == entry.model_fields_set
            assert again.model_dump_json() == entry.model_dump_json()
            assert list(vars(again)) == list(vars(entry))
            seen += 1
        if report:
            rebuilt = SanitizeReport(entries=report.entries, omitted=report.omitted)
            assert rebuilt == report and rebuilt.model_fields_set == report.model_fields_set
            assert rebuilt.model_dump_json() == report.model_dump_json()
    assert seen > 1000


# The declaration scan runs only when the bytes hold ``<!`` (``parse_svg``), and
# the root's siblings are iterated only when it has a neighbour (``_sanitize_tree``).
_PROLOG = st.lists(
    st.sampled_from(["<!--a-->", "<?pi x?>", "<!-- -->", "<?q?>", " ", "\n"]), max_size=3
).map("".join)
_DECL_PIECES = st.sampled_from(["<", "!", "<!", "DOCTYPE", "doctype", "ENTITY", "eNtItY",
                                "<!--", " ", "svg", "[", ">", "a"])  # fmt: skip


@settings(max_examples=300)
@given(st.lists(_DECL_PIECES, max_size=12).map("".join))
def test_declaration_scan_guard(text: str) -> None:
    raw = text.encode()
    full = _DECLARATION.search(raw)
    guarded = _DECLARATION.search(raw) if b"<!" in raw else None
    assert (full is None) is (guarded is None)
    if full is not None and guarded is not None:
        assert full.span() == guarded.span()


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_PROLOG, _PROLOG, st.booleans())
def test_root_siblings_are_all_reported(before: str, after: str, as_bytes: bool) -> None:
    doc = f'{before}<svg xmlns="{NS}"><rect width="1" height="1"/></svg>{after}'
    out = Sanitizer(SanitizePolicy.default()).sanitize(doc.encode() if as_bytes else doc)
    kinds = [e.kind for e in out.report.entries]
    # Nearest preceding sibling first, then the following ones in order (itersiblings).
    expected = [
        "comment" if piece.startswith("<!--") else "processing_instruction"
        for piece in [*reversed(_nodes(before)), *_nodes(after)]
    ]
    assert kinds == expected


def _nodes(text: str) -> list[str]:
    return re.findall(r"<!--.*?-->|<\?.*?\?>", text)


# --- the text parsed in ``Sanitizer._parse`` itself (``_TEXT_FIRST``) ---------

_TEXT_PIECES = st.sampled_from(
    [
        f'<svg xmlns="{NS}">',
        "<svg>",
        f'<s:svg xmlns:s="{NS}">',
        "</svg>",
        "</s:svg>",
        '<rect width="1" height="1"/>',
        "<g>",
        "</g>",
        f'<g xmlns="{NS}">',
        'xmlns:a="urn:a" ',
        "<!-- c -->",
        "<![CDATA[x]]>",
        "<!DOCTYPE svg>",
        '<!ENTITY e "x">',
        "<?pi x?>",
        "<?xml version='1.0'?>",
        "<?xml version='1.0' encoding='latin-1'?>",
        "\ufeff",
        "\ud800",
        " ",
        "\n",
        "\u00e9",
        "&amp;",
        "&e;",
        "xlink:",
        "<",
        ">",
        "",
    ]
)


def _parsed(sanitizer: Sanitizer, doc: str) -> Any:
    from lxml import etree

    try:
        root, dropped, nodes, data, repairs, alone = sanitizer._parse(doc)
    except SVGRejected as exc:
        return "rejected", exc.reason, str(exc), exc.limit
    if alone:  # the root's neighbours are not looked for: it must have none
        assert root.getprevious() is None and root.getnext() is None
    return etree.tostring(root), root.tag, dropped, nodes, data, repairs


def _text_first_agrees(sanitizer: Sanitizer, doc: str) -> None:
    fast = _parsed(sanitizer, doc)
    try:
        sanitizer_module._TEXT_FIRST = False
        general = _parsed(sanitizer, doc)
    finally:
        sanitizer_module._TEXT_FIRST = True
    assert fast == general


_SMALL_LIMITS = SanitizePolicy.default().extend(
    max_bytes=120, max_elements=60, max_namespace_declarations=4
)
_FEW_NAMESPACES = SanitizePolicy.default().extend(max_namespace_declarations=4)
_FEW_BYTES = SanitizePolicy.default().extend(max_bytes=60)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_TEXT_PIECES, max_size=10).map("".join),
    st.sampled_from([None, _SMALL_LIMITS, _FEW_NAMESPACES, _FEW_BYTES]),
)
def test_text_parsed_first_equals_parse_svg(doc: str, policy: SanitizePolicy | None) -> None:
    # The same root (or the same refusal, message and limit included), the same
    # node bound and repairs, whether ``_parse`` parses the text itself or not;
    # with small limits, texts on either side of every bound it tests.
    _text_first_agrees(Sanitizer.prepared(policy), doc)


@pytest.mark.parametrize(
    "policy",
    [None, _SMALL_LIMITS, _FEW_NAMESPACES, _FEW_BYTES],
    ids=["default", "small", "namespaces", "bytes"],
)
@pytest.mark.parametrize(
    "doc",
    [
        f'<svg xmlns="{NS}" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4" fill="teal"/></svg>',
        f'<svg xmlns="{NS}">' + "<g/>" * 30 + "</svg>",  # over 60 bytes, under 60 nodes
        f'<svg xmlns="{NS}"><g/><g/><g/>  </svg>',  # 60 bytes
        f'<svg xmlns="{NS}"><g/><g/><g/>   </svg>',  # 61 bytes
        f'<svg xmlns="{NS}">' + '<g xmlns:a="urn:a"/>' * 3 + "</svg>",  # 4 declarations
        f'<svg xmlns="{NS}">' + '<g xmlns:a="urn:a"/>' * 4 + "</svg>",  # 5: one too many
        f'<svg xmlns="{NS}">' + "<g/>" * 100 + "</svg>",  # over 120 bytes
        f'<svg xmlns="{NS}"><rect/></svg>\ud800',
        f'\ufeff<svg xmlns="{NS}"><rect/></svg>',
        f'<!DOCTYPE svg><svg xmlns="{NS}"><rect/></svg>',
        f'<svg xmlns="{NS}"><!-- <!DOCTYPE --><rect/></svg>',
        f'<svg xmlns="{NS}"><rect/>',
        "<svg><rect/></svg>",
        "<html/>",
        "",
    ],
)
def test_text_parsed_first_edge_cases(doc: str, policy: SanitizePolicy | None) -> None:
    _text_first_agrees(Sanitizer.prepared(policy), doc)
