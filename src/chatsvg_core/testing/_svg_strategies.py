"""Hypothesis strategies for SVG documents: well-formed, SVG-ish, laced with attacks.

Hosts use them to test their own pipelines around the sanitizer, e.g.::

    from hypothesis import given
    from chatsvg_core.testing._svg_strategies import svg_documents

    @given(svg_documents())
    def test_my_pipeline_never_crashes(svg): ...

Every generated document is well-formed XML with an ``<svg>`` root in the
SVG namespace; ``dangerous=True`` mixes in scripts, event handlers, hostile
URLs (encoded, cased and padded in the ways browsers forgive), hostile CSS,
SMIL attacks, foreign namespaces, comments, processing instructions, CDATA and
text that an HTML parser would read as markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

__all__ = [
    "DANGEROUS_CSS",
    "DANGEROUS_TEXT",
    "DANGEROUS_URLS",
    "SvgNode",
    "svg_documents",
    "svg_trees",
]

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"

# Raw attribute-value text (already valid inside a double-quoted XML attribute).
DANGEROUS_URLS: tuple[str, ...] = (
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "\tjava&#x09;script:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;&#x61;vascript:alert(1)",
    "java&#10;script:alert(1)",
    "&#1;javascript:alert(1)".replace("&#1;", " "),
    "vbscript:msgbox(1)",
    "data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+",
    "data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;",
    "data:image/png;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+",
    "DATA:image/svg+xml,&lt;svg onload=alert(1)&gt;",
    "http://evil.example/x.svg#a",
    "//evil.example/x.png",
    "https://evil.example/track.png",
    "x.svg#a",
    "/etc/passwd",
    "#",
)
SAFE_URLS: tuple[str, ...] = (
    "#a",
    "#b",
    "#grad",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==",
    "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
)
DANGEROUS_CSS: tuple[str, ...] = (
    "fill:url(javascript:alert(1))",
    "fill:url( 'http://evil.example/x' )",
    "background:url(http://evil.example/x)",
    "behavior:url(x.htc)",
    "-moz-binding:url(http://evil.example/x.xml#b)",
    "width:expression(alert(1))",
    "fill:u\\72l(http://evil.example/x)",
    "fill:var(--x)",
    "@import 'http://evil.example/x.css'",
    "fill:red;</style><script>alert(1)</script>",
    "stroke:url(#a)",
    "fill:red",
    "font-family:'&lt;/style&gt;&lt;img src=x onerror=alert(1)&gt;'",
)
DANGEROUS_TEXT: tuple[str, ...] = (
    "</style><img src=x onerror=alert(1)>",
    "<!--",
    "-->",
    "]]>",
    "</title><script>alert(1)</script>",
    "<svg onload=alert(1)>",
    "&lt;script&gt;",
    "<![CDATA[",
    "</textarea>",
    "& < > \" '",
)

_SAFE_ELEMENTS = (
    "g", "defs", "rect", "circle", "ellipse", "path", "line", "polyline", "polygon", "text",
    "tspan", "use", "symbol", "linearGradient", "radialGradient", "stop", "pattern",
    "clipPath", "mask", "marker", "filter", "feGaussianBlur", "feOffset", "feFlood",
    "title", "desc", "style", "switch", "image", "a", "animate", "set", "animateTransform",
    "animateMotion", "mpath", "textPath", "feImage",
)  # fmt: skip
_DANGEROUS_ELEMENTS = (
    "script", "foreignObject", "iframe", "embed", "object", "handler", "font-face", "cursor",
    "unknownElement", "Script", "SCRIPT", "tref", "discard", "html:script",
    "inkscape:namedview", "sodipodi:namedview", "rdf:RDF", "metadata",
)  # fmt: skip
_NAMESPACE_DECLS = (
    ' xmlns:xlink="http://www.w3.org/1999/xlink"'
    ' xmlns:html="http://www.w3.org/1999/xhtml"'
    ' xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"'
    ' xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"'
    ' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
    ' xmlns:evil="http://www.w3.org/1999/xlink"'
)
_SAFE_ATTRS = (
    "id", "class", "fill", "stroke", "stroke-width", "x", "y", "width", "height", "cx", "cy",
    "r", "d", "transform", "opacity", "viewBox", "offset", "stop-color", "clip-path", "mask",
    "filter", "points", "font-family", "stdDeviation", "attributeName", "values", "dur",
    "begin", "to", "from", "type", "marker-end", "xml:space",
)  # fmt: skip
_DANGEROUS_ATTRS = (
    "onload", "onclick", "ONLOAD", "onbegin", "onend", "onerror", "onmouseover", "formaction",
    "xml:base", "inkscape:label", "evil:href", "html:onclick", "src", "autofocus", "tabindex",
    "requiredExtensions", "target", "contentScriptType",
)  # fmt: skip
_ANIMATION_TARGETS = (
    "href", "HREF", "xlink:href", "xlink:HREF", "style", "onload", "onbegin", "fill", "stroke",
    "opacity", "class", "clip-path", "mask", "filter", "x", " href ", "attributeName",
)  # fmt: skip
_VALUE_WORDS = (
    "red", "blue", "#00ff00", "rgb(1,2,3)", "0", "10", "50%", "1.5", "url(#a)", "url(#grad)",
    "rotate(45 5 5)", "M0 0L10 10Z", "none", "currentColor", "a", "b", "0 0 10 10", "2s",
    "indefinite", "0;1", "red;blue",
)  # fmt: skip


def _escape_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def _escape_text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class SvgNode:
    """A generated element: a qualified name, raw attribute text and children.

    ``attrs`` values are raw XML attribute text (entities allowed); children are
    nodes or ``("text", raw)``-style strings already escaped for XML.
    """

    name: str
    attrs: list[tuple[str, str]] = field(default_factory=list)
    children: list[SvgNode | str] = field(default_factory=list)

    def to_xml(self) -> str:
        """Serialize as XML (the root gets the namespace declarations)."""
        seen: set[str] = set()
        parts = [f"<{self.name}"]
        for key, value in self.attrs:
            # ``evil:`` is bound to the xlink namespace: same expanded name.
            expanded = key.replace("evil:", "xlink:")
            if expanded in seen:  # duplicate attributes are not well-formed
                continue
            seen.add(expanded)
            parts.append(f' {key}="{value}"')
        if not self.children:
            parts.append("/>")
            return "".join(parts)
        parts.append(">")
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.to_xml())
        parts.append(f"</{self.name}>")
        return "".join(parts)


def _attr_values(dangerous: bool) -> st.SearchStrategy[str]:
    safe = st.sampled_from(_VALUE_WORDS) | st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12
    ).map(_escape_attr)
    if not dangerous:
        return safe
    return (
        safe
        | st.sampled_from(DANGEROUS_URLS)
        | st.sampled_from(SAFE_URLS)
        | st.sampled_from(DANGEROUS_CSS).map(_escape_attr)
    )


def _attributes(dangerous: bool) -> st.SearchStrategy[list[tuple[str, str]]]:
    names = st.sampled_from(_SAFE_ATTRS)
    if dangerous:
        names = names | st.sampled_from(_DANGEROUS_ATTRS)
    plain = st.tuples(names, _attr_values(dangerous))
    if not dangerous:
        return st.lists(plain, max_size=4)
    special = st.one_of(
        st.tuples(
            st.sampled_from(("href", "xlink:href", "evil:href")),
            st.sampled_from(DANGEROUS_URLS + SAFE_URLS),
        ),
        st.tuples(st.just("style"), st.sampled_from(DANGEROUS_CSS).map(_escape_attr)),
        st.tuples(st.just("attributeName"), st.sampled_from(_ANIMATION_TARGETS)),
        st.tuples(
            st.sampled_from(("values", "to", "from", "by")),
            st.sampled_from((*DANGEROUS_URLS, "url(#a)", "red;blue", "url(http://e/x)")),
        ),
    )
    return st.lists(plain | special, max_size=5)


def _texts(dangerous: bool) -> st.SearchStrategy[str]:
    plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10).map(
        _escape_text
    )
    if not dangerous:
        return plain
    return (
        plain
        | st.sampled_from(DANGEROUS_TEXT).map(_escape_text)
        | st.sampled_from(DANGEROUS_TEXT).map(lambda t: f"<![CDATA[{t.replace(']]>', '')}]]>")
        | st.sampled_from(DANGEROUS_CSS).map(lambda c: f"<![CDATA[ rect {{ {c} }} ]]>")
        | st.sampled_from(("<!-- comment -->", "<?xml-stylesheet href='x.css'?>", "<?pi x?>"))
        | st.just(" \n\t ")
    )


def svg_trees(
    *, dangerous: bool = True, max_depth: int = 4, max_children: int = 4
) -> st.SearchStrategy[SvgNode]:
    """Strategy for :class:`SvgNode` trees whose root is ``<svg>`` (no namespace decls yet)."""
    names = st.sampled_from(_SAFE_ELEMENTS)
    if dangerous:
        names = names | st.sampled_from(_DANGEROUS_ELEMENTS)
    attrs = _attributes(dangerous)
    texts = _texts(dangerous)

    def extend(children: st.SearchStrategy[list[SvgNode | str]]) -> st.SearchStrategy[SvgNode]:
        return st.builds(SvgNode, names, attrs, children)

    leaf = st.builds(SvgNode, names, attrs, st.just([]))
    nodes = st.recursive(
        leaf,
        lambda inner: extend(st.lists(inner | texts, max_size=max_children)),
        max_leaves=max_children * max_depth,
    )
    return st.builds(SvgNode, st.just("svg"), attrs, st.lists(nodes | texts, max_size=max_children))


def svg_documents(
    *, dangerous: bool = True, max_depth: int = 4, max_children: int = 4
) -> st.SearchStrategy[str]:
    """Strategy for well-formed SVG documents (``str``), attack-laced when ``dangerous``."""

    def render(node: SvgNode) -> str:
        xml = node.to_xml()
        head = f'<svg xmlns="{SVG_NS}"' + _NAMESPACE_DECLS
        return head + xml[len("<svg") :]

    return svg_trees(dangerous=dangerous, max_depth=max_depth, max_children=max_children).map(
        render
    )
