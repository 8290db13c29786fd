"""Serialization of the sanitized tree: canonical, well-formed, safe to inline in HTML.

The sanitizer builds a small tree of :class:`OutElement`; this module writes it
with fixed prefixes (the SVG namespace as default, ``xlink:`` and ``xml:``),
double-quoted attributes and every ``&``, ``<`` and ``>`` escaped in text and
attributes. No comment, CDATA section, processing instruction or DOCTYPE is
ever written, so an HTML parser and an XML parser read the same tree.
"""

from __future__ import annotations

import re

from chatsvg_core.sanitize._tables import SVG_NS, XLINK_NS

__all__ = ["OutElement", "serialize"]


class OutElement:
    """One element of the sanitized tree; children are elements or text."""

    __slots__ = ("attrs", "children", "name")

    def __init__(
        self,
        name: str,
        attrs: dict[str, str] | None = None,
        children: list[OutElement | str] | None = None,
    ) -> None:
        self.name = name
        self.attrs: dict[str, str] = {} if attrs is None else attrs
        self.children: list[OutElement | str] = [] if children is None else children


_TEXT_SPECIAL = re.compile(r"[&<>\r]")
_ATTR_SPECIAL = re.compile(r"[&<>\"\n\r\t]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;",
            "\r": "&#13;", "\t": "&#9;"}  # fmt: skip


def _escape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]


def _text(value: str) -> str:
    # Most values need no escaping; a C-level search is cheaper than translate().
    return _TEXT_SPECIAL.sub(_escape, value) if _TEXT_SPECIAL.search(value) else value


def _attr(value: str) -> str:
    return _ATTR_SPECIAL.sub(_escape, value) if _ATTR_SPECIAL.search(value) else value


def _write(node: OutElement, out: list[str]) -> None:
    out.append("<" + node.name)
    search, sub = _ATTR_SPECIAL.search, _ATTR_SPECIAL.sub
    for key, value in node.attrs.items():
        out.append(f' {key}="{sub(_escape, value) if search(value) else value}"')
    if not node.children:
        out.append("/>")
        return
    out.append(">")
    for child in node.children:
        if isinstance(child, str):
            out.append(_text(child))
        else:
            _write(child, out)
    out.append(f"</{node.name}>")


def serialize(root: OutElement, *, xlink: bool) -> str:
    """Write the tree; ``xlink`` declares the xlink namespace on the root."""
    namespaces = {"xmlns": SVG_NS}
    if xlink:
        namespaces["xmlns:xlink"] = XLINK_NS
    top = OutElement(root.name, {**namespaces, **root.attrs}, root.children)
    out: list[str] = []
    _write(top, out)
    return "".join(out)
