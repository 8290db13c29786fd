"""The sanitizer's shortcuts for the commonest answer give what the general paths give.

``repair_root`` settles a root that starts ``<svg xmlns=`` with no ``xlink:``
anywhere without its regexes, and ``serialize`` writes a tree whose input
declared one namespace without the namespace clean-up (keeping the text only
when it holds one declaration). Both are checked against the general path on
the real-world corpus, generated documents and hand-made edge cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import SVGRejected
from chatsvg_core.sanitize import SanitizePolicy, Sanitizer
from chatsvg_core.sanitize import _sanitizer as sanitizer_module
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
]


def _general_outcome(sanitizer: Sanitizer, doc: str | bytes) -> Any:
    """The answer with both shortcuts turned off."""
    original = sanitizer_module.serialize
    repair = sanitizer_module.repair_root
    try:
        sanitizer_module.serialize = lambda root, one_declaration=False: original(root)  # type: ignore[assignment]
        sanitizer_module.repair_root = _repair_general  # type: ignore[assignment]
        return _outcome(sanitizer, doc)
    finally:
        sanitizer_module.serialize = original  # type: ignore[assignment]
        sanitizer_module.repair_root = repair  # type: ignore[assignment]


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


def test_serialize_keeps_a_second_declaration() -> None:
    from lxml import etree

    root = etree.fromstring(f'<svg xmlns="{NS}"><g xmlns:x="urn:x" x:a="1"/></svg>')
    assert serialize(root, one_declaration=True) == serialize(
        etree.fromstring(f'<svg xmlns="{NS}"><g xmlns:x="urn:x" x:a="1"/></svg>')
    )
