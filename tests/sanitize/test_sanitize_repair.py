"""Namespace repairs of model-written SVG, and the blank-picture rule.

The repair's safety claim: a document with its namespace declarations left
out sanitizes to exactly what the declared document sanitizes to (or is
refused), so the repair adds no way through the sanitizer that the declared
form does not have. The browser proof loads the stripped XSS corpus too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import SVGRejected
from chatsvg_core.sanitize import ReasonCode, SanitizePolicy, Sanitizer, is_blank, sanitize_svg
from chatsvg_core.sanitize._repair import _XLINK_USE, _uses_xlink, repair_root
from chatsvg_core.testing._svg_checks import assert_svg_safe
from chatsvg_core.testing._svg_strategies import svg_documents

NS = 'xmlns="http://www.w3.org/2000/svg"'
FIDELITY = sorted((Path(__file__).parents[1] / "data" / "fidelity").rglob("*.svg"))
_DECLARATIONS = re.compile(
    r"""\s++xmlns(?::xlink)?\s*+=\s*+(["'])http://www\.w3\.org/(?:2000/svg|1999/xlink)\1"""
)


def strip(doc: str) -> str:
    return _DECLARATIONS.sub("", doc)


def outcome(sanitizer: Sanitizer, doc: str | bytes) -> tuple[str, str]:
    try:
        return "ok", sanitizer.sanitize(doc).svg
    except SVGRejected as exc:
        return "rejected", str(exc.reason)


@pytest.mark.parametrize(
    ("given_doc", "expected", "added"),
    [
        ("<svg><rect/></svg>", f"<svg {NS}><rect/></svg>", ("xmlns",)),
        ("<svg/>", f"<svg {NS}/>", ("xmlns",)),
        (
            '<svg><use xlink:href="#a"/></svg>',
            f'<svg {NS} xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="#a"/></svg>',
            ("xmlns", "xmlns:xlink"),
        ),
        (
            '<?xml version="1.0"?>\n<!-- a cat --><svg viewBox="0 0 1 1"><rect/></svg>',
            f'<?xml version="1.0"?>\n<!-- a cat --><svg {NS} viewBox="0 0 1 1"><rect/></svg>',
            ("xmlns",),
        ),
        (
            f'<svg {NS}><use xlink:href="#a"/></svg>',
            f'<svg {NS} xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="#a"/></svg>',
            ("xmlns:xlink",),
        ),
    ],
)
def test_repairs_add_declarations_to_the_root_only(
    given_doc: str, expected: str, added: tuple[str, ...]
) -> None:
    repaired, done = repair_root(given_doc)
    # Declarations go right after ``<svg``; nothing else moves.
    assert done == added
    assert repaired == expected
    assert repair_root(str(repaired))[1] == ()  # a repaired document needs no second repair


@pytest.mark.parametrize(
    "doc",
    [
        f"<svg {NS}><rect/></svg>",  # nothing to repair
        '<svg xmlns=""><rect/></svg>',  # explicitly in no namespace: left alone, refused
        "<html><svg><rect/></svg></html>",  # not the root
        "<svgx><rect/></svgx>",
        '<s:svg xmlns:s="x"/>',
        "text before <svg><rect/></svg>",
    ],
)
def test_repairs_leave_other_documents_alone(doc: str) -> None:
    assert repair_root(doc) == (doc, ())
    assert repair_root(doc.encode()) == (doc.encode(), ())


def test_a_value_that_mentions_xmlns_is_not_a_declaration() -> None:
    repaired, done = repair_root('<svg data-note=" xmlns=1"><rect/></svg>')
    assert done == ("xmlns",)
    assert sanitize_svg(repaired).svg.startswith(f"<svg {NS}")


def test_the_report_lists_each_repair() -> None:
    out = sanitize_svg('<svg viewBox="0 0 9 9"><use xlink:href="#c"/><circle id="c" r="3"/></svg>')
    repairs = out.report.by_reason(ReasonCode.NAMESPACE_ADDED)
    assert [e.name for e in repairs] == ["xmlns", "xmlns:xlink"]
    assert out.changed


def test_bytes_and_text_are_repaired_alike() -> None:
    doc = '<svg viewBox="0 0 9 9"><circle r="3"/></svg>'
    assert sanitize_svg(doc.encode()).svg == sanitize_svg(doc).svg


@pytest.mark.parametrize("path", FIDELITY[::7], ids=lambda p: p.name)
@pytest.mark.parametrize("preset", ["default", "strict"])
def test_real_pictures_without_declarations_sanitize_identically(path: Path, preset: str) -> None:
    sanitizer = Sanitizer(SanitizePolicy.preset(preset))
    doc = path.read_text(encoding="utf-8")
    stripped = strip(doc)
    if stripped == doc:
        pytest.skip("declares its namespace another way")
    # The serializer keeps the order in which the root declares its namespaces
    # (matplotlib writes ``xmlns:xlink`` first; the repair puts ``xmlns`` first).
    assert _declarations_sorted(outcome(sanitizer, stripped)) == _declarations_sorted(
        outcome(sanitizer, doc)
    )


_ROOT_DECLARATIONS = re.compile(r'^<svg((?: xmlns(?::xlink)?="[^"]*")+)')


def _declarations_sorted(result: tuple[str, str]) -> tuple[str, str]:
    kind, text = result
    match = _ROOT_DECLARATIONS.match(text)
    if match is None:
        return result
    ordered = " " + " ".join(sorted(match.group(1).split()))
    return kind, "<svg" + ordered + text[match.end() :]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(svg_documents(), st.sampled_from(["default", "strict"]))
def test_stripping_declarations_never_changes_the_output(doc: str, preset: str) -> None:
    """Generated documents laced with attacks: the stripped form is no weaker."""
    policy = SanitizePolicy.preset(preset)
    sanitizer = Sanitizer(policy)
    declared = outcome(sanitizer, doc)
    stripped = outcome(sanitizer, strip(doc))
    if stripped[0] == "ok":
        assert_svg_safe(stripped[1], policy)
        if declared[0] == "ok":
            assert stripped == declared


# --- blank pictures ----------------------------------------------------------------


@pytest.mark.parametrize(
    "svg",
    [
        f"<svg {NS}/>",
        f'<svg {NS} viewBox="0 0 9 9"></svg>',
        f'<svg {NS}><defs><circle id="c" r="4"/></defs></svg>',
        f"<svg {NS}><title>a cat</title><desc>drawn</desc></svg>",
        f'<svg {NS}><g><rect fill="none"/></g></svg>',
        f'<svg {NS}><text x="1" y="1">   </text></svg>',
        f'<svg {NS}><g display="none"><rect/></g></svg>',
        f'<svg {NS}><rect opacity="0"/><circle visibility="hidden" r="2"/></svg>',
        f'<svg {NS}><linearGradient id="g"><stop offset="0"/></linearGradient></svg>',
    ],
)
def test_blank(svg: str) -> None:
    assert is_blank(svg)


@pytest.mark.parametrize(
    "svg",
    [
        f'<svg {NS}><rect width="4" height="4"/></svg>',
        f'<svg {NS}><g><g><path d="M0 0L1 1" stroke="red" fill="none"/></g></g></svg>',
        f'<svg {NS}><text x="1" y="1">hi</text></svg>',
        f"<svg {NS}><text><tspan>hi</tspan></text></svg>",
        f'<svg {NS}><defs><circle id="c" r="4"/></defs><use href="#c"/></svg>',
        f'<svg {NS}><style>rect{{fill:red}}</style><rect fill="none"/></svg>',
        f'<svg {NS}><image href="data:image/png;base64,AAAA" width="2" height="2"/></svg>',
        f'<svg {NS}><rect opacity="oops"/></svg>',  # unreadable: visible (conservative)
    ],
)
def test_not_blank(svg: str) -> None:
    assert not is_blank(svg)
    assert not is_blank(sanitize_svg(svg).svg)


@settings(max_examples=300)
@given(st.text(st.sampled_from(" \t\r\nxlink:Aé1\u00a0<"), max_size=40))
def test_the_xlink_use_search_agrees_with_its_regex(text: str) -> None:
    # ``_uses_xlink`` finds the literal and checks its neighbours (faster than
    # the regex, which tries every position); both forms must give its answer.
    expected = _XLINK_USE.search(text) is not None
    assert _uses_xlink(text) is expected
    assert _uses_xlink(text.encode()) is (
        re.compile(_XLINK_USE.pattern.encode()).search(text.encode()) is not None
    )
