"""extract_svg: the corpus of model answers, the rules one by one, and properties."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import (
    ExtractionError,
    NoSVGFound,
    PermanentError,
    TransientError,
    TruncatedSVG,
)
from chatsvg_core.generate import MAX_ANSWER_CHARS, extract_svg

CORPUS = Path(__file__).parent.parent / "data" / "model_answers"
MANIFEST: dict[str, dict[str, str]] = json.loads((CORPUS / "manifest.json").read_text("utf-8"))


def read(name: str) -> str:
    # newline="" keeps CRLF answers as they are.
    with open(CORPUS / name, encoding="utf-8", newline="") as f:
        return f.read()


def test_manifest_covers_every_answer_file() -> None:
    answers = {p.name for p in CORPUS.glob("*.txt")}
    assert answers == set(MANIFEST)
    assert {e["outcome"] for e in MANIFEST.values()} == {"svg", "truncated", "no_svg"}


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus(name: str) -> None:
    entry = MANIFEST[name]
    text = read(name)
    if entry["outcome"] == "svg":
        assert extract_svg(text) == read(entry["expected"])
    elif entry["outcome"] == "truncated":
        with pytest.raises(TruncatedSVG) as info:
            extract_svg(text)
        assert info.value.transient
    else:
        with pytest.raises(NoSVGFound) as info2:
            extract_svg(text)
        assert not info2.value.transient


def test_error_classes_for_the_retry_policy() -> None:
    assert issubclass(TruncatedSVG, TransientError)
    assert issubclass(NoSVGFound, PermanentError)


# --- rules -----------------------------------------------------------------------


def test_truncation_fields() -> None:
    with pytest.raises(TruncatedSVG) as info:
        extract_svg("abc <svg><rect")
    assert (info.value.offset, info.value.length) == (4, 10)


def test_largest_candidate_wins_and_ties_go_to_the_first() -> None:
    a, b, c = "<svg>aaaa</svg>", "<svg>bbbbbbbb</svg>", "<svg>cccc</svg>"
    assert extract_svg(f"{a} then {b} then {c}") == b
    assert extract_svg(f"{a}\n```svg\n{c}\n```") == a


def test_complete_svg_beats_a_shorter_cut_off_one() -> None:
    full = "<svg>" + "x" * 50 + "</svg>"
    assert extract_svg(f"{full}\n```svg\n<svg><re") == full


def test_open_svg_in_prose_followed_by_more_text_is_a_mention() -> None:
    with pytest.raises(NoSVGFound):
        extract_svg("use <svg> here\n```\nnot svg\n```\nthanks")


def test_answers_over_the_limit_are_refused_unscanned() -> None:
    text = "<svg></svg>" + " " * 100
    assert extract_svg(text, max_chars=len(text)) == "<svg></svg>"
    with pytest.raises(NoSVGFound) as info:
        extract_svg(text, max_chars=len(text) - 1)
    assert info.value.reason == "too_large"
    with pytest.raises(NoSVGFound) as info:
        extract_svg(b"<svg></svg>")  # type: ignore[arg-type]
    assert info.value.reason == "not_text"


def test_non_svg_tags_starting_with_svg_are_not_svg() -> None:
    with pytest.raises(NoSVGFound):
        extract_svg("<svgx></svgx> <svg-icon/>")


@pytest.mark.parametrize(
    "inside",
    [
        '<a title="</svg>"/>',
        "<a title='>'/>",
        "<!-- </svg> -->",
        "<![CDATA[ </svg> ]]>",
        "<style>/* nothing */</style>",
    ],
)
def test_things_that_look_like_an_end_inside_an_svg(inside: str) -> None:
    svg = f"<svg>{inside}<rect/></svg>"
    assert extract_svg(f"x {svg} y") == svg


@pytest.mark.parametrize(
    "opener", ["<!-- never closed", "<![CDATA[ never closed", '<a title="never']
)
def test_unclosed_constructs_inside_an_svg_are_truncation(opener: str) -> None:
    with pytest.raises(TruncatedSVG):
        extract_svg(f"<svg>{opener} </svg>")


# --- properties --------------------------------------------------------------------

fragments = st.sampled_from(
    [
        "<svg",
        "<svg>",
        "</svg>",
        "</svg",
        "<svg/>",
        "<SVG ",
        "```",
        "```svg\n",
        "~~~\n",
        "\n",
        "`",
        '"',
        "'",
        ">",
        "<",
        "<!--",
        "-->",
        "<![CDATA[",
        "]]>",
        "<g ",
        "/>",
        "<think>",
        "</think>",
        " ",
        "a",
        "é",
        "\r\n",
        "<?xml ?>",
        '{"svg": "',
        '"}',
        "\\",
        '\\"',
        "```json\n",
        "[",
        "]",
    ]
)
answers = st.one_of(st.text(max_size=200), st.lists(fragments, max_size=40).map("".join))


@given(answers)
def test_extraction_raises_only_its_typed_errors(text: str) -> None:
    try:
        result = extract_svg(text)
    except (TruncatedSVG, NoSVGFound):
        return
    except ExtractionError as exc:  # pragma: no cover - would be a new, undocumented outcome
        pytest.fail(f"untyped extraction error {exc!r}")
    assert result in text or _is_json(text)
    assert result[:4].lower() == "<svg"
    assert result.endswith(">")


@given(answers)
def test_extraction_is_stable_on_its_own_output(text: str) -> None:
    try:
        result = extract_svg(text)
    except (TruncatedSVG, NoSVGFound):
        return
    assert extract_svg(result) == result


def test_a_line_inside_the_svg_that_starts_with_a_fence_does_not_split_it() -> None:
    # Found by fuzzing: the output was not found again in itself.
    first = extract_svg("```<svg\n```></svg>")
    assert first == "<svg\n```></svg>"
    assert extract_svg(first) == first


def _is_json(text: str) -> bool:
    body = text.strip()
    body = body.removeprefix("```json").removesuffix("```") if body.startswith("```json") else body
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


# A small well-formed SVG and prose that holds no markup.
attr_value = st.text(alphabet=st.characters(exclude_characters='"<&'), max_size=10)
svg_docs = st.builds(
    lambda v, body, inner: (
        f'<svg xmlns="http://www.w3.org/2000/svg" data-x="{v}">{body}'
        f"{'<svg>' + inner + '</svg>' if inner else ''}</svg>"
    ),
    attr_value,
    st.sampled_from(["", "<rect/>", "<g><circle r='1'/></g>", "<text>a &gt; b</text>"]),
    st.sampled_from(["", "<rect/>"]),
)
prose = st.text(alphabet=st.characters(exclude_characters="<`~"), max_size=50)
wrappers = st.sampled_from(
    [
        "{p}{s}{q}",
        "{p}\n```svg\n{s}\n```\n{q}",
        "{p}\n```\n{s}\n```",
        "<html><body>{s}</body></html>",
    ]
)


@given(svg_docs, prose, prose, wrappers)
def test_a_wrapped_svg_is_found_exactly(svg: str, before: str, after: str, wrapper: str) -> None:
    assert extract_svg(wrapper.format(p=before, s=svg, q=after)) == svg


@given(svg_docs, prose, st.data())
def test_every_cut_inside_the_svg_is_truncation(svg: str, before: str, data: st.DataObject) -> None:
    text = f"{before}\n```svg\n{svg}"
    start = text.index("<svg")
    cut = data.draw(st.integers(start + 4, len(text) - 1))
    with pytest.raises(TruncatedSVG):
        extract_svg(text[:cut])


# --- hostile sizes: linear scanning, no backtracking ----------------------------------

ADVERSARIAL_UNITS = [
    "<svg ",  # endless unclosed start tags
    "<svg>",  # endless nesting, never closed
    '<svg a="',  # unclosed quote
    "</svg>",  # stray ends
    "```\n",  # endless fences
    "```svg\n<svg>\n",  # endless fenced, unclosed SVGs
    "<svg><!--",
    "`<svg>`",  # endless mentions
    "[",  # JSON nesting deeper than the decoder allows
    '["<svg ", ',  # a JSON array of unclosed SVG strings, never closed itself
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("unit", ADVERSARIAL_UNITS)
def test_worst_case_inputs_at_the_default_limit_are_scanned_linearly(unit: str) -> None:
    """The largest input a host scans by default, made of one pathological unit.

    pytest-timeout guards the bound: a quadratic path would take hours here.
    """
    text = (unit * (MAX_ANSWER_CHARS // len(unit) + 1))[:MAX_ANSWER_CHARS]
    with contextlib.suppress(TruncatedSVG, NoSVGFound):
        extract_svg(text)


@pytest.mark.timeout(60)
def test_five_megabytes_of_adversarial_input() -> None:
    block = 5_000_000 // len(ADVERSARIAL_UNITS)
    text = "".join((unit * (block // len(unit) + 1))[:block] for unit in ADVERSARIAL_UNITS)
    assert len(text) == 5_000_000
    with pytest.raises(NoSVGFound) as info:  # refused unscanned at the default limit
        extract_svg(text)
    assert info.value.reason == "too_large"
    # ... and scanned in linear time when the limit is lifted.
    with contextlib.suppress(TruncatedSVG, NoSVGFound):
        extract_svg(text, max_chars=len(text))


# --- the lone-SVG fast path gives exactly what the full scan gives --------------------

from chatsvg_core.generate._extract import _lone_svg, _scanned  # noqa: E402

blanks = st.text(alphabet=" \t\r\n\x0b\x0c\x1c\x85\xa0\u2028\u3000", max_size=4)
# Pieces of an answer that starts with "<svg": the tricky parts included (quoted
# ends, comments, CDATA, nested and self-closing SVGs, stray "<" and ends).
svg_pieces = st.sampled_from(
    [
        ">",
        "/>",
        " a=",
        '"',
        "'",
        "x>y",
        "<svg>",
        "<svg",
        "</svg>",
        "</SVG \n>",
        "</svg/>",
        "</svgx>",
        "<!--",
        "-->",
        "<![CDATA[",
        "]]>",
        "<rect/>",
        "<g>",
        "</g>",
        "<",
        "< ",
        "<1",
        "text",
        "\n```\n",
        "`",
        "é",
    ]
)
lone_candidates = st.builds(
    lambda before, pieces, after: before + "<svg" + "".join(pieces) + after,
    blanks,
    st.lists(svg_pieces, max_size=12),
    blanks,
)


def _full(text: str) -> str | Exception:
    try:
        return _scanned(text)
    except (TruncatedSVG, NoSVGFound) as exc:
        return exc


@settings(max_examples=1000)
@given(st.one_of(lone_candidates, answers, svg_docs.map(lambda s: f" {s}\n")))
@example('<svg a="x>y"/></svg>')
@example("<svg></svg><svg></svg>")
@example("<svg><!-- </svg>")
@example("<svg><!-- </svg></svg>")
@example("<svg></svg> <svg>longer</svg>")
def test_the_lone_svg_fast_path_is_the_full_scan(text: str) -> None:
    fast = _lone_svg(text, 0)
    if fast is not None:
        assert _full(text) == fast


def test_the_lone_svg_fast_path_is_taken_and_exact_on_the_corpus() -> None:
    # The answers, and the SVGs they hold (each one a lone-SVG answer itself).
    names = sorted(MANIFEST) + sorted(p.name for p in CORPUS.glob("*.expected.svg"))
    taken = 0
    for name in names:
        text = read(name)
        fast = _lone_svg(text, 0)
        if fast is not None:
            taken += 1
            assert _full(text) == fast, name
    # The lone shape is common enough in the corpus for this to test something.
    assert taken >= 3
    assert _lone_svg(" <svg a='1'><rect/></svg>\n", 0) == "<svg a='1'><rect/></svg>"
