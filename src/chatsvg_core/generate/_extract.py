"""Find the SVG in a model's answer, without parsing, executing or fetching anything.

The rules (also in ``docs/extraction.md``):

1. Answers longer than ``max_chars`` are refused unscanned
   (``NoSVGFound(reason="too_large")``): no answer to a request bounded by
   ``max_tokens`` is that long.
2. An answer that is one JSON value (an object, array or string; alone or in a
   single ```` ```json ```` fence) is decoded, and the longest string in it that
   holds ``<svg`` is scanned instead (JSON-mode answers escape every quote).
3. An answer that is one SVG element alone (blanks around it) is that SVG,
   whatever lines inside it look like fences (so extraction is stable on its
   own output). Otherwise the answer is split into regions: each fenced code
   block (```` ``` ```` or ``~~~``, any info string: ``svg``, ``xml``,
   ``html`` or none) is one region, and the prose between fences is another.
   An unclosed fence runs to the end.
4. In each region a single left-to-right scan finds ``<svg`` start tags and
   ``</svg>`` end tags, counting nesting (an ``<svg>`` inside an ``<svg>`` is
   part of it). Inside an SVG, every tag is skipped whole with its quoted
   attribute values (a ``>`` or ``</svg>`` inside quotes does not count), and
   comments and CDATA sections are skipped whole. A start tag written alone in
   inline code in prose (`` `<svg>` ``) is a mention, not markup. A reasoning
   block at the very start (``<think>…</think>``, ``<thinking>``, ``<reasoning>``)
   is skipped; an answer that ends inside one is truncated.
5. A candidate is complete when its outermost ``</svg>`` is found. The answer's
   choice is the **largest** complete candidate (the whole drawing rather than
   a snippet shown beside it); ties go to the first.
6. If an SVG is still open when the answer ends (the model was cut off) and it
   is longer than every complete candidate, the answer is truncated:
   :class:`~chatsvg_core.errors.TruncatedSVG`, which is transient. An SVG left
   open in a region that is followed by more text (a stray mention) does not count.
7. No candidate at all: :class:`~chatsvg_core.errors.NoSVGFound` (permanent).

The result is the exact text from ``<svg`` to the matching ``</svg>`` (of the
decoded string, for a JSON answer); an XML
declaration, DOCTYPE (with any entity declarations) and HTML wrapper around it
are left behind, so the sanitizer never sees a DTD. Every step is a forward scan
with possessive or bounded patterns, so the work is linear in the answer's length.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from chatsvg_core.errors import NoSVGFound, TruncatedSVG

__all__ = ["MAX_ANSWER_CHARS", "extract_svg"]

MAX_ANSWER_CHARS = 1_000_000
"""Default ``max_chars``: twice the longest answer a 128k-token model writes (~4 chars a token)."""

_FENCE = re.compile(r"^[ ]{0,3}(`{3,}+|~{3,}+)([^\n]*+)$", re.MULTILINE)
_TOKEN = re.compile(
    r"<(?:(svg)(?=[\s/>]|\Z)|(/svg)[ \t\r\n]*+>|(!--)|(!\[CDATA\[)|([A-Za-z_][\w:.-]*+))",
    re.IGNORECASE,
)
# The rest of a start tag: attribute text and quoted values, possessively (no backtracking).
_TAG_REST = re.compile(r"""[^>"']*+(?:(?:"[^"]*+"|'[^']*+')[^>"']*+)*+>""")
# Inside an SVG: a run of text and ordinary tags (quoted values included) that
# cannot open or close an SVG, a comment or a CDATA section. Skipping it in one
# possessive match keeps the per-tag work in C; it never backtracks.
_ORDINARY = re.compile(
    r"""(?:[^<]++|<(?=[A-Za-z_/?])(?![sS][vV][gG](?:[\s/>]|\Z)|/[sS][vV][gG][ \t\r\n>])"""
    r"""[^>"']*+(?:(?:"[^"]*+"|'[^']*+')[^>"']*+)*+>)*+"""
)
_ANY_SVG = re.compile(r"<svg", re.IGNORECASE)
_SVG_START = r"<svg(?=[\s/>]|\Z)"
_LEADING_SVG = re.compile(r"\s*+" + _SVG_START, re.IGNORECASE)
# An answer that is one SVG element: blanks, the start tag (group 1), content
# _ORDINARY skips whole, the end tag, then only blanks. The pieces are the
# possessive patterns _scan applies one after another, so one match here is
# what those matches give in turn (no piece can give back what it took).
_LONE_SVG = re.compile(
    rf"\s*+({_SVG_START}{_TAG_REST.pattern}){_ORDINARY.pattern}"
    r"</svg[ \t\r\n]*+>(?=\s*+\Z)",
    re.IGNORECASE,
)
_JSON_FENCE = re.compile(r"```json[ \t]*+\r?\n(.*)\r?\n[ \t]*+```", re.DOTALL | re.IGNORECASE)
# Reasoning models (DeepSeek-R1, QwQ... served by vLLM or Ollama) may open their
# answer with their reasoning, where draft SVG fragments are not the answer.
_REASONING = re.compile(r"\A\s*+<(think|thinking|reasoning)>", re.IGNORECASE)
_OPEN_SVG, _CLOSE_SVG, _COMMENT, _CDATA, _OTHER_TAG = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class _Scan:
    complete: list[tuple[int, int]]
    open_start: int | None


def _regions(text: str, begin: int) -> list[tuple[int, int, bool]]:
    """``(start, end, fenced)`` spans covering ``text[begin:]``, split at code fences."""
    regions: list[tuple[int, int, bool]] = []
    position = begin
    opened: tuple[str, int, int] | None = None  # fence char, fence length, content start
    for match in _FENCE.finditer(text, begin):
        marker, rest = match.group(1), match.group(2)
        if opened is None:
            if marker[0] == "`" and "`" in rest:
                continue  # ```inline``` code on one line, not a fence
            regions.append((position, match.start(), False))
            # The content starts after the marker, so an SVG written on the
            # fence line itself (```svg<svg ...) is still seen.
            opened = (marker[0], len(marker), match.start(1) + len(marker))
        elif marker[0] == opened[0] and len(marker) >= opened[1] and not rest.strip():
            regions.append((opened[2], match.start(), True))
            position = match.end()
            opened = None
    if opened is not None:
        regions.append((opened[2], len(text), True))
    else:
        regions.append((position, len(text), False))
    return [r for r in regions if r[0] < r[1]]


def _scan(text: str, start: int, end: int, fenced: bool) -> _Scan:
    complete: list[tuple[int, int]] = []
    depth = 0
    outer = 0
    position = start
    while True:
        if depth:
            skipped = _ORDINARY.match(text, position, end)
            if skipped is not None:
                position = skipped.end()
        token = _TOKEN.search(text, position, end)
        if token is None:
            return _Scan(complete, outer if depth else None)
        kind = token.lastindex
        if kind == _OPEN_SVG:
            rest = _TAG_REST.match(text, token.end(), end)
            if rest is None:  # the start tag itself never ends
                return _Scan(complete, outer if depth else token.start())
            self_closing = text[rest.end() - 2] == "/"
            position = rest.end()
            if depth == 0:
                mention = (
                    not fenced
                    and token.start() > start
                    and text[token.start() - 1] == "`"
                    and text.startswith("`", position)
                )
                if mention:
                    continue
                if self_closing:
                    complete.append((token.start(), position))
                    continue
                outer = token.start()
            if not self_closing:
                depth += 1
        elif kind == _CLOSE_SVG:
            position = token.end()
            if depth:
                depth -= 1
                if depth == 0:
                    complete.append((outer, position))
        elif depth == 0:
            # Comments and other tags outside an SVG (prose, HTML wrappers) do not matter.
            position = token.end()
        elif kind in (_COMMENT, _CDATA):
            closer = "-->" if kind == _COMMENT else "]]>"
            found = text.find(closer, token.end(), end)
            if found < 0:
                return _Scan(complete, outer)
            position = found + len(closer)
        else:
            rest = _TAG_REST.match(text, token.end(), end)
            if rest is None:
                return _Scan(complete, outer)
            position = rest.end()


def extract_svg(text: str, *, max_chars: int = MAX_ANSWER_CHARS) -> str:
    """Return the SVG element in a model's ``text`` (see the module rules).

    Raises:
        TruncatedSVG: an SVG starts but the answer ends before it closes
            (transient; fields ``offset``, ``length``, and ``reason`` =
            ``unfinished_reasoning`` when it ends inside a reasoning block).
        NoSVGFound: no SVG at all, or the answer is not text or longer than
            ``max_chars`` (permanent; fields ``reason``, ``length``).

    >>> extract_svg('Sure! ```svg\\n<svg viewBox="0 0 1 1"><rect/></svg>\\n``` Enjoy.')
    '<svg viewBox="0 0 1 1"><rect/></svg>'
    """
    if not isinstance(text, str):
        raise NoSVGFound("the answer is not text", reason="not_text", length=None)
    if len(text) > max_chars:
        raise NoSVGFound(
            f"the answer is longer than {max_chars} characters; not scanned",
            reason="too_large",
            length=len(text),
            limit=max_chars,
        )
    lone = _lone_svg(text, 0)
    if lone is not None:
        # An answer that starts with <svg is neither reasoning nor JSON, so
        # _scanned would reach rule 3 with this same text and give this.
        return lone
    return _scanned(text)


def _scanned(text: str) -> str:
    """Rules 2 to 7 on an answer within the size limit."""
    begin = _after_reasoning(text)
    decoded = _json_svg_string(text, begin)
    if decoded is not None:
        text, begin = decoded, _after_reasoning(decoded)
    return _extract(text, begin)


def _after_reasoning(text: str) -> int:
    """Where the answer starts once a leading reasoning block is skipped."""
    reasoning = _REASONING.match(text)
    if reasoning:
        closer = re.compile(rf"</{reasoning.group(1)}[ \t\r\n]*+>", re.IGNORECASE)
        found = closer.search(text, reasoning.end())
        if found is None:
            raise TruncatedSVG(
                "the answer ends inside the model's reasoning, before any answer",
                offset=reasoning.start(1) - 1,
                length=len(text) - reasoning.start(1) + 1,
                reason="unfinished_reasoning",
            )
        return found.end()
    return 0


def _json_svg_string(text: str, begin: int) -> str | None:
    """The longest string holding ``<svg`` when the answer is one JSON value (maybe fenced)."""
    body = text[begin:].strip()
    fenced = _JSON_FENCE.fullmatch(body)
    if fenced:
        body = fenced.group(1)
    if body[:1] not in ("{", "[", '"'):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    found: list[str] = []
    stack: list[object] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _ANY_SVG.search(item):
                found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return max(found, key=len) if found else None


def _lone_svg(text: str, begin: int) -> str | None:
    """Rule 3's answer for the common shape, without :func:`_scan`; ``None`` to scan.

    ``text[begin:]`` is blanks, an ``<svg>`` start tag, content without any
    SVG start or end tag, comment or CDATA section (``_ORDINARY`` skips it
    whole, as ``_scan`` does inside an SVG), the end tag, and blanks: the
    scan would find that one candidate, starting where the answer does and
    followed by nothing, so rule 3 takes it. Anything else returns ``None``
    (a property test holds the two paths equal).
    """
    lone = _LONE_SVG.match(text, begin)
    if lone is None or text[lone.end(1) - 2] == "/":
        return None  # a self-closing start tag: the scan decides
    return text[lone.start(1) : lone.end()]


def _extract(text: str, begin: int) -> str:
    if _ANY_SVG.search(text, begin) is None:
        raise NoSVGFound("the answer contains no <svg> element", reason="no_svg", length=len(text))
    whole = _LEADING_SVG.match(text, begin)
    if whole is not None:
        # Rule 0: an answer that is one SVG element and nothing else is taken
        # whole, before any fence splits it: so extraction is stable on its
        # own output even when a line inside the SVG starts with a fence.
        start = whole.end() - 4
        scan = _scan(text, start, len(text), True)
        if scan.complete and scan.complete[0][0] == start:
            end = scan.complete[0][1]
            if not text[end:].strip():
                return text[start:end]
    best: tuple[int, int] | None = None
    cut_off: int | None = None
    # Only blanks and fence markers after a region: the answer ended inside it.
    tail = len(text.rstrip(" \t\r\n`~"))
    for start, end, fenced in _regions(text, begin):
        scan = _scan(text, start, end, fenced)
        for candidate in scan.complete:
            if best is None or candidate[1] - candidate[0] > best[1] - best[0]:
                best = candidate
        if scan.open_start is not None and end >= tail:
            cut_off = scan.open_start
    if cut_off is not None and (best is None or len(text) - cut_off > best[1] - best[0]):
        raise TruncatedSVG(
            "the answer ends inside an unclosed <svg> element",
            offset=cut_off,
            length=len(text) - cut_off,
        )
    if best is None:
        raise NoSVGFound("the answer contains no <svg> element", reason="no_svg", length=len(text))
    return text[best[0] : best[1]]
