"""Hostile shapes found by fuzzing (issue 20): each reproducer, fixed at its cause.

No timing asserts: linear time is shown by operation counts that must double
with the input (``<use>`` graph edges visited), and by ``benchmarks/
bench_sanitize_hostile.py`` for wall time. The timeouts only stop a
regression from hanging the suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import tinycss2
from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import SVGRejected
from chatsvg_core.sanitize import ReasonCode, SanitizePolicy, Sanitizer, sanitize_svg
from chatsvg_core.sanitize import _sanitizer as sanitizer_module
from chatsvg_core.sanitize._css import _URL_VALUE, CssIssue, CssSanitizer, _Reject
from chatsvg_core.testing.strategies import svg_safety_violations

NS = 'xmlns="http://www.w3.org/2000/svg"'


def rejected(data: str | bytes, policy: SanitizePolicy | None = None) -> SVGRejected:
    with pytest.raises(SVGRejected) as info:
        sanitize_svg(data, policy=policy)
    return info.value


# --- <use> graphs -------------------------------------------------------------


def use_cycles(k: int) -> str:
    """The issue's reproducer: ``k`` uses each closing a cycle through one ancestor."""
    uses = '<use href="#p"/>' * k
    return f'<svg {NS}><use href="#c"/><g id="p"><g id="c"><rect width="1"/>{uses}</g></g></svg>'


def use_chain(length: int, back: int) -> str:
    """``length`` chained groups, and ``back`` uses in the first one pointing at the top."""
    top = f'<use href="#g{length - 1}"/>' * back
    chain = "".join(f'<g id="g{i}"><use href="#g{i - 1}"/></g>' for i in range(1, length))
    return f'<svg {NS}><g id="g0">{top}<rect width="1"/></g>{chain}</svg>'


@pytest.fixture
def edge_visits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the nodes whose edges the ``<use>`` graph passes visit."""
    visits = [0]
    edges = sanitizer_module._edges

    def counting(node: Any, ids: dict[str, Any]) -> Iterator[Any]:
        visits[0] += 1
        return edges(node, ids)

    monkeypatch.setattr(sanitizer_module, "_edges", counting)
    return visits


@pytest.mark.timeout(60)
def test_every_cycle_is_cut_in_one_pass(edge_visits: list[int]) -> None:
    # Was one pass per cycle: 32 KB took 23 s. All K uses close a cycle
    # (each sits inside the group it references); the first use does not.
    counts = []
    for k in (1000, 2000):
        edge_visits[0] = 0
        out = sanitize_svg(use_cycles(k))
        counts.append(edge_visits[0])
        assert out.svg == (
            f'<svg {NS}><use href="#c"/><g id="p"><g id="c"><rect width="1"/></g></g></svg>'
        )
        assert len(out.report.by_reason(ReasonCode.REFERENCE_CYCLE)) == k
    # The work doubles with the input (a pass per cycle would quadruple it).
    assert counts[1] <= 2.2 * counts[0]


@pytest.mark.timeout(60)
def test_chain_with_back_references_is_linear(edge_visits: list[int]) -> None:
    # Was O(L*K) path copies: 871 KB took 21.6 s. Every use here is on a cycle
    # (g0 -> top -> ... -> g0), so every one is dropped and the rest is kept.
    counts = []
    for size in (2000, 4000):
        edge_visits[0] = 0
        out = sanitize_svg(use_chain(size, size))
        counts.append(edge_visits[0])
        assert "<use" not in out.svg
        assert len(out.report) == 2 * size - 1
    assert counts[1] <= 2.2 * counts[0]


def test_uses_off_the_cycle_are_kept_and_counted() -> None:
    # u3 renders a (and a's own use is on the a <-> b cycle): only the
    # uses on the cycle go, and the rest still counts toward the render bound.
    body = (
        '<g id="a"><rect/><use id="u1" href="#b"/></g><g id="b"><use id="u2" href="#a"/></g>'
        '<use id="u3" href="#a"/>'
    )
    out = sanitize_svg(f"<svg {NS}>{body}</svg>")
    assert out.svg == (f'<svg {NS}><g id="a"><rect/></g><g id="b"/><use id="u3" href="#a"/></svg>')
    assert {e.detail for e in out.report.by_reason(ReasonCode.REFERENCE_CYCLE)} == {"#a", "#b"}
    limit = SanitizePolicy.default().extend(max_rendered_elements=5)
    assert rejected(f"<svg {NS}>{body}</svg>", limit).reason == ReasonCode.TOO_MUCH_RENDERING


@pytest.mark.parametrize("k", [1, 3, 50])
def test_fan_out_without_cycles_is_still_bounded(k: int) -> None:
    # Exponential fan-out: level i uses level i-1 twice; 2**k rendered.
    levels = ['<g id="l0"><rect/></g>'] + [
        f'<g id="l{i}"><use href="#l{i - 1}"/><use href="#l{i - 1}"/></g>' for i in range(1, k + 1)
    ]
    doc = f"<svg {NS}><defs>{''.join(levels)}</defs><use href='#l{k}'/></svg>"
    if 2**k > 250_000:
        assert rejected(doc).reason == ReasonCode.TOO_MUCH_RENDERING
    else:
        assert sanitize_svg(doc).svg.count("<use") == 2 * k + 1


# --- namespace declarations ---------------------------------------------------


def declarations(n: int, *, xlink_last: bool = False) -> str:
    decls = " ".join(f'xmlns:p{i}="urn:x:{i}"' for i in range(n))
    xlink = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
    return f"{decls} {xlink}" if xlink_last else f"{xlink} {decls}"


@pytest.mark.timeout(60)
def test_unused_namespace_declarations_are_bounded() -> None:
    # D unused declarations times E elements cost O(D*E) in lxml's clean-up,
    # and a namespaced attribute set searches the declarations (40 000 x 40 000
    # took about a minute): refused beyond the policy's limit, while parsing.
    body = '<use xlink:href="#a "/>' * 20_000
    doc = f"<svg {NS} {declarations(20_000, xlink_last=True)}>{body}</svg>"
    err = rejected(doc)
    assert err.reason == ReasonCode.TOO_MANY_NAMESPACES
    assert err.limit == 256


def test_namespace_limit_counts_declarations_not_mentions() -> None:
    policy = SanitizePolicy.default().extend(max_namespace_declarations=4)
    # The default namespace and xlink, plus two: four declarations in all.
    head = f'<svg {NS} xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:a="urn:a">'
    nested = '<g xmlns:b="urn:b"><rect xlink:title="x"/></g>'
    mentions = "<text>xmlns xmlns:x=''</text>" * 50  # text, not declarations
    out = sanitize_svg(f"{head}{nested}{mentions}</svg>", policy=policy)
    assert out.svg.startswith(f"<svg {NS}><g><rect/></g><text>xmlns")
    extra = '<g xmlns:c="urn:c"/>'
    assert rejected(f"{head}{nested}{extra}{mentions}</svg>", policy).reason == (
        ReasonCode.TOO_MANY_NAMESPACES
    )


def test_namespace_limit_holds_on_the_pull_parser_path_too() -> None:
    # More '<' than max_elements: the streaming path counts the declarations.
    policy = SanitizePolicy.default().extend(max_namespace_declarations=3, max_elements=5)
    inner = "".join(f'<g xmlns:p{i}="urn:{i}"/>' for i in range(3))
    assert rejected(f"<svg {NS}>{inner}</svg>", policy).reason == ReasonCode.TOO_MANY_NAMESPACES
    # Seven '<' (over max_elements), four nodes, two declarations: accepted.
    ok = f'<svg {NS}><g xmlns:p0="urn:0"></g><g></g><rect/></svg>'
    assert ok.count("<") > 5
    assert sanitize_svg(ok, policy=policy).svg == f"<svg {NS}><g/><g/><rect/></svg>"


# --- CSS escapes --------------------------------------------------------------

# Characters a CSS escape may decode to that XML 1.0 cannot hold, and escapes of
# whitespace that ``str.strip`` used to cut to a dangling backslash.
ESCAPES = [
    *(f"{c:X}" for c in range(1, 9)),
    *(f"{c:X}" for c in range(0xE, 0x20)),
    "9", "B", "C", "20", "FFFE", "FFFF", "D800", "DFFF", "110000", "0",
]  # fmt: skip
PLACES = [
    '<rect fill="{e}"/>',
    '<rect fill="a{e}"/>',
    '<rect fill="{e} "/>',
    '<rect style="fill:{e}"/>',
    '<rect style="font-family:&quot;{e}&quot;;fill:red"/>',
    "<style>rect{{fill:{e}}}rect{{stroke:red}}</style><rect/>",
    '<style>rect{{font-family:"{e}"}}</style><rect/>',
    '<style>rect{{font-family:"\\\\{e}"}}</style><rect/>',  # escaped backslash first
    "<style>.a{e}b{{fill:red}}</style><rect/>",
    "<style>@media (min-width:{e}){{rect{{fill:red}}}}</style><rect/>",
    '<rect fill="url(#a{e})"/>',
]


def stable(doc: str, policy: SanitizePolicy | None = None) -> str:
    """Sanitize ``doc`` and check that a second pass gives the same text."""
    out = sanitize_svg(doc, policy=policy).svg
    assert sanitize_svg(out, policy=policy).svg == out
    return out


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("escape", ESCAPES)
def test_css_escapes_give_xml_and_are_stable(escape: str, place: str) -> None:
    # Was lxml's ValueError (control characters), UnicodeEncodeError (\D800),
    # or a dangling backslash that swallowed the next rule of a sheet.
    body = place.format(e="\\" + escape)
    out = stable(f"<svg {NS}>{body}</svg>")
    assert svg_safety_violations(out) == []
    if "stroke:red" in place:
        assert "stroke:red" in out  # the next rule survives


def test_escaped_space_keeps_the_next_rule() -> None:
    out = stable(f"<svg {NS}><style>rect{{fill:\\ }}rect{{stroke:red}}</style><rect/></svg>")
    assert "{fill:\\ }" in out
    assert "{stroke:red}" in out


@settings(max_examples=300)
@given(
    code=st.integers(0, 0x11_0000),
    place=st.sampled_from(PLACES),
    after=st.sampled_from(["", " ", "0", "a", "\\\\", ";"]),
)
def test_any_escaped_code_point_is_stable(code: int, place: str, after: str) -> None:
    escape = f"\\{code:x}{after}"
    try:
        body = place.format(e=escape)
        out = stable(f"<svg {NS}>{body}</svg>")
    except SVGRejected:
        return
    assert svg_safety_violations(out) == []


# --- encodings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "body"),
    [("undefined", b"x"), ("punycode", b"x"), ("utf-7", b"+2AA-"), ("x.y", b"x"), ("rot13", b"x")],
)
def test_encodings_outside_the_allowlist_are_refused(label: str, body: bytes) -> None:
    # They went to Python's codec registry: UnicodeError, or a lone surrogate.
    doc = b'<?xml version="1.0" encoding="%s"?><svg %s><text>%s</text></svg>' % (
        label.encode(),
        NS.encode(),
        body,
    )
    assert rejected(doc).reason == ReasonCode.ENCODING_NOT_ALLOWED


@pytest.mark.parametrize(
    ("label", "codec"),
    [("Shift_JIS", "shift_jis"), ("windows-1252", "cp1252"), ("latin1", "latin-1"), ("GBK", "gbk")],
)
def test_allowlisted_encodings_are_decoded(label: str, codec: str) -> None:
    text = "日本" if codec in ("shift_jis", "gbk") else "é"
    doc = f'<?xml version="1.0" encoding="{label}"?><svg {NS}><text>{text}</text></svg>'
    assert sanitize_svg(doc.encode(codec)).svg == f"<svg {NS}><text>{text}</text></svg>"


# --- root ids -----------------------------------------------------------------


@pytest.mark.parametrize("root_id", ["", " ", "a"])
@pytest.mark.parametrize("prefix", [None, "p"])
def test_blank_root_id_gets_confined_styles_that_match_it(root_id: str, prefix: str | None) -> None:
    # Rules were confined to ``#chatsvg`` while the root kept ``id=""`` (and
    # ``id="p-"`` with a prefix, scoped a second time on the next pass).
    policy = SanitizePolicy.default().extend(id_prefix=prefix)
    out = stable(f'<svg {NS} id="{root_id}"><style>rect{{fill:red}}</style><rect/></svg>', policy)
    scope = prefix or "chatsvg"
    assert f"rect:where(.{scope},.{scope} *){{fill:red}}" in out
    assert f'class="{scope}"' in out.split(">", 1)[0]


# --- the safety checker -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '<filter id="f"><feColorMatrix values="javascript:1"/></filter><rect/>',
        '<style>rect{font-family:"url(x)"}</style><rect/>',
        "<style>rect{font-family:'@font-face'}</style><rect/>",
        '<rect style="font-family:&quot;url(javascript:x)&quot;"/>',
        '<text font-family="&quot;url(x)&quot;">a</text>',
        # Found by the fuzzer: a fragment, whatever follows its ``#``.
        '<g id="g"><rect/></g><use href="#gjavascript:"/>',
        # Found by the fuzzer: a dimension ``2¬url`` and a bracket, not a url().
        '<style>rect{fill:rgb(1,2\u00acurl("http://x"))}</style><rect/>',
        '<style>rect{fill:rgb(1,2\u00acurl("javascript:x"))}</style><rect/>',
        # Found by the fuzzer in CI: a hash ``#url`` and a bracket, not a url().
        '<style>rect{fill:rgb(1(2\u00ac#url("fill:\u0203):whejavascript:re(}}")))}</style><rect/>',
        '<style>rect{fill:rgb(1,2 #url("http://x"))}</style><rect/>',
        '<style>rect{fill:rgb(1,2 @url("http://x"))}</style><rect/>',
        # Found by the fuzzer: an at-keyword in one property's value, an invalid paint.
        '<circle cy="5" r="4" fill="@importredata:d"/>',
        # Found by the fuzzer in CI: an unknown media feature, not a scheme.
        "<style>@media (min-widjavascript:th:1px){rect{stroke:red}}</style><rect/>",
        '<rect fill="+FFjavascript:FE"/>',  # an invalid paint, not a URL
        "<style>@media (min-wid--&gt;javascript:th:2px){rect{stroke:red}}</style><rect/>",
        '<g id="g"/><rect style="fill:url(#javascript:g)"/>',  # a fragment
        # Found by the fuzzer in CI: rule and property words inside a fragment.
        "<style>rect{fill:url(#g@import)}</style><rect/>",
        '<g id="g"/><rect style="fill:url(#g@font-face);stroke:url(#behavior)"/>',
        '<rect style="fill:\\@font-face19"/>',  # an escaped @: a letter of an ident
        # Found by the fuzzer in CI: an escaped quote opens no string, the next one does.
        '<style>b{font-family:\\"1";fill:url(+g)}</style><rect/>',
    ],
)
def test_checker_has_no_false_positives_on_safe_output(body: str) -> None:
    # Each was flagged although a browser reads no URL or rule there: numbers
    # that are not animation values, and text inside CSS strings.
    out = stable(f"<svg {NS}>{body}</svg>")
    assert svg_safety_violations(out) == []


@pytest.mark.parametrize(
    "markup",
    [
        '<style>a{fill:url("http://x")}</style>',
        "<style>a{fill:url( 'javascript:x')}</style>",
        '<style>a{font-family:"x"}@font-face{src:x}</style>',
        '<rect fill="&quot;a&quot; url(http://x)"/>',
        '<animate attributeName="x" values="javascript:x"/>',
        "<style>a{x:'\\'' } @import 'x'</style>",
        "<style>a{fill:\\url(http://x)}</style>",  # an escaped u: still url(
        "<style>a{fill:.url(http://x)}</style>",  # a delimiter, then url(
        '<rect fill="url(javascript:x)"/>',
        '<rect fill="@import url(http://x)"/>',  # the url() is still seen
        '<rect fill="data:x expression(alert(1))"/>',  # and what a value can do
        "<style>a{fill:url(#a)}@import 'x'</style>",  # after a url(), a rule again
        "<style>a{fill:url('#a')}@font-face{src:x}</style>",
        "<style>a{fill:red}\\\\@import 'x'</style>",  # an escaped backslash, then a rule
        "<style>a{fill:red}\\ @IMPORT 'x'</style>",  # an escaped space, then a rule
        '<style>a{font-family:\\"x\\";fill:url(http://x)}</style>',  # escaped quotes: no string
        '<style>a{font-family:"\\"";fill:url(http://x)}</style>',  # an escape inside one
    ],
)
def test_checker_still_sees_urls_and_rules_outside_strings(markup: str) -> None:
    assert svg_safety_violations(f"<svg {NS}>{markup}</svg>")


# --- the time budget ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "<rect/>",  # checked at each stage boundary
        "<g><rect/></g>" * 2000,  # and every 256 elements of the walk
        "<style>" + "".join(f".c{i}{{fill:rgb(1,2,3)}}" for i in range(2000)) + "</style><rect/>",
        "<style>" + "".join(f".c{i}{{fill:red}}" for i in range(2000)) + "</style><rect/>",
    ],
    ids=["small", "elements", "css-rules", "plain-rules"],
)
def test_a_spent_time_budget_is_a_typed_rejection(body: str) -> None:
    doc = f"<svg {NS}>{body}</svg>"
    err = rejected(doc, SanitizePolicy.default().extend(max_seconds=1e-9))
    assert err.reason == ReasonCode.TIME_BUDGET_EXCEEDED
    # The same document is sanitized with the default budget, or with none.
    assert (
        sanitize_svg(doc).svg
        == sanitize_svg(doc, policy=SanitizePolicy.default().extend(max_seconds=None)).svg
    )


def test_css_work_is_checked_against_the_budget_as_it_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One huge sheet: the budget is read per rule, not only once the sheet is done.
    from chatsvg_core.sanitize import _budget

    reads = [0]
    clock = _budget.time.monotonic

    def counting() -> float:
        reads[0] += 1
        return clock()

    monkeypatch.setattr(_budget.time, "monotonic", counting)
    rules = "".join(f".c{i}{{fill:rgb(1,2,3)}}" for i in range(5000))
    sanitize_svg(f"<svg {NS}><style>{rules}</style><rect/></svg>")
    assert reads[0] >= 5000 // 256


# --- tokenizer-free CSS paths added for speed ---------------------------------


@given(
    raw=st.text(alphabet="#:/.?=%&-_~ab1\u00fc \t()'\"\\<", max_size=24),
    prefix=st.sampled_from([None, "p"]),
)
@settings(max_examples=300)
def test_one_url_value_fast_path_gives_what_the_tokenizer_gives(
    raw: str, prefix: str | None
) -> None:
    policy = SanitizePolicy.default().extend(id_prefix=prefix)
    rewrite = Sanitizer(policy).rewrite_fragment
    for text in (f"url({raw})", f" url({raw}) "):
        fast = CssSanitizer(policy, rewrite).check_attribute("fill", text)
        slow = CssSanitizer(policy, rewrite)
        try:
            expected: tuple[str | None, CssIssue | None] = (slow.value(text), None)
        except _Reject as exc:
            expected = (None, CssIssue(exc.reason, "fill", exc.detail))
        if _URL_VALUE.fullmatch(text):
            assert fast == expected
        # In a declaration list (style attribute, sheet) as well.
        decl = f"fill:{text};stroke:red"
        fast_css = CssSanitizer(policy, rewrite)
        fast_out = fast_css._simple_declarations(decl)
        if fast_out is not None:
            slow_css = CssSanitizer(policy, rewrite)
            items = tinycss2.parse_declaration_list(decl, skip_comments=True, skip_whitespace=True)
            assert fast_out == ";".join(slow_css._declarations(items))
            assert fast_css.issues == slow_css.issues


_PIECES = st.sampled_from(
    ['"Open Sans"', '"a;b"', '"x\'y"', "'s'", '""', '"é"', "rgb(1,2,3)", "rgb( 1 , 2 ,3 )",
     "translate(10 3)", "RGB(1,2,3)", "calc(1px+2px)", "var(--x)", "url(#g)", "url(x)", "red",
     "1px", ",", " ", "\t", "\n", "\r", "!important", "2\u00acurl(x)", "rgb(1,2,3),"]
)  # fmt: skip


@given(
    st.lists(
        st.tuples(st.sampled_from(["fill", "font-family", "x"]), st.lists(_PIECES, max_size=4)),
        max_size=3,
    )
)
@settings(max_examples=300)
def test_string_and_function_declarations_fast_path_gives_what_the_tokenizer_gives(
    decls: list[tuple[str, list[str]]],
) -> None:
    text = ";".join(f"{name}:{''.join(pieces)}" for name, pieces in decls)
    fast = CssSanitizer(SanitizePolicy.default(), lambda u: u)
    fast_out = fast._simple_declarations(text)
    if fast_out is None:
        return
    slow = CssSanitizer(SanitizePolicy.default(), lambda u: u)
    items = tinycss2.parse_declaration_list(text, skip_comments=True, skip_whitespace=True)
    assert fast_out == ";".join(slow._declarations(items))
    assert fast.issues == [i for i in slow.issues if i.reason != ReasonCode.CSS_INVALID]
