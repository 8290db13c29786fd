"""Serialization of the sanitized tree: canonical, well-formed, safe to inline in HTML.

lxml (libxml2) writes the tree the sanitizer changed in place. Canonical means:
the SVG namespace is the root's default namespace, ``xlink:`` is the only
other prefix (declared on the root, only when used) and ``xml:`` is implied;
there are no other namespace declarations anywhere. libxml2 already writes
double-quoted attributes, escapes ``&``, ``<`` and ``>`` in text and
attributes (plus ``"``, tab, CR and LF in attributes, CR in text), and the
sanitizer leaves no comment, CDATA section, processing instruction or
DOCTYPE, so an HTML parser and an XML parser read the same tree.

``cleanup_namespaces`` moves nested declarations of the SVG and xlink
namespaces to the root and drops unused ones. An input that binds them to
other prefixes on the root (``<s:svg xmlns:s=...>``, ``xmlns:x=`` for
xlink) cannot be fixed that way; it is copied into a fresh tree whose root
declares the canonical prefixes (rare, and only as costly as the copy).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from chatsvg_core.sanitize._tables import SVG_NS, XLINK_NS

__all__ = ["serialize"]

# ``Any``: lxml-stubs type nsmap keys as ``str``, but the default namespace is ``None``.
_CANONICAL: Any = {None: SVG_NS, "xlink": XLINK_NS}


def _write(root: Any) -> str:
    text: str = etree.tostring(root, encoding="unicode", with_tail=False)
    return text


def _is_canonical(root: Any, text: str) -> bool:
    nsmap = root.nsmap
    if any(_CANONICAL.get(prefix) != uri for prefix, uri in nsmap.items()):
        return False
    # Each declaration writes ``xmlns``: no more of them than the root's means
    # none below it. (Text that mentions "xmlns" only sends us to the copy.)
    return None in nsmap and text.count("xmlns") == len(nsmap)


def _copy_into(src: Any, dst: Any) -> None:
    """Give ``dst`` the attributes, text and (copied) children of ``src``."""
    for key, value in src.items():
        dst.set(key, value)
    dst.text = src.text
    for child in src:
        new = etree.SubElement(dst, child.tag)
        new.tail = child.tail
        _copy_into(child, new)


def serialize(root: Any, *, one_declaration: bool = False) -> str:
    """Write the sanitized tree (SVG elements; no-namespace, xlink and xml attributes).

    ``one_declaration``: the caller knows the parsed input declared one
    namespace only, the root's default one (it holds ``xmlns`` once and the
    root has no prefix). Then there is nothing for the clean-up to move or
    drop, and the text is written at once; it is kept if it holds ``xmlns``
    once (the root's declaration, which an SVG root without a prefix must
    have: no other declaration was added), else written the general way.
    """
    if one_declaration and root.prefix is None:
        # ``_write``'s call, in place: this is every small answer's path.
        text: str = etree.tostring(root, encoding="unicode", with_tail=False)
        if text.count("xmlns") == 1:
            return text
    etree.cleanup_namespaces(root, top_nsmap=_CANONICAL)
    text = _write(root)
    if _is_canonical(root, text):
        return text
    fresh = etree.Element(root.tag, nsmap=_CANONICAL)
    _copy_into(root, fresh)
    etree.cleanup_namespaces(fresh)
    # Each new element finds the root's declarations, so none is added below it.
    return _write(fresh)
