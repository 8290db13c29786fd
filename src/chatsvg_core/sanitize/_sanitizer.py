"""The sanitizer: walk the parsed tree, keep what the policy allows, report the rest."""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from chatsvg_core.sanitize import _tables as t
from chatsvg_core.sanitize._css import CssIssue, CssSanitizer
from chatsvg_core.sanitize._parse import parse_svg, reject
from chatsvg_core.sanitize._policy import SanitizePolicy
from chatsvg_core.sanitize._reasons import Action, ReasonCode
from chatsvg_core.sanitize._report import NodeKind, ReportEntry, SanitizedSVG, SanitizeReport
from chatsvg_core.sanitize._serialize import OutElement, serialize
from chatsvg_core.sanitize._urls import UrlContext, check_url

__all__ = ["Sanitizer", "sanitize_svg"]

_SVG_PREFIX = "{" + t.SVG_NS + "}"
_SVG_ROOT = _SVG_PREFIX + "svg"
_SVG_A = _SVG_PREFIX + "a"
_XLINK_PREFIX = "{" + t.XLINK_NS + "}"
_XML_PREFIX = "{" + t.XML_NS + "}"
_OUT_NAMES = {t.XLINK_HREF: "xlink:href", t.XML_SPACE: "xml:space", t.XML_LANG: "xml:lang"}
_DRAWABLE = frozenset(
    {"path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text", "image", "use"}
)
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+.-")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
_URL_OPEN = re.compile(r"url\(([\"']?)(.)")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]+")
_DEFAULT_ROOT_ID = "chatsvg"
MAX_REPORT_ENTRIES = 10_000
"""Report entries kept per document; further changes are only counted (``omitted``)."""


def _short(value: str) -> str:
    return value if len(value) <= 200 else value[:197] + "..."


At = tuple[Any, Any]
"""Where a report entry points, resolved only when an entry is written:
(path chain, node). The chain is ``"/svg"`` or ``(parent chain, tag, index)``;
the node gives the input line."""


def _path(chain: Any) -> str:
    parts: list[str] = []
    while isinstance(chain, tuple):
        chain, tag, index = chain
        parts.append(f"{tag.rpartition('}')[2]}[{index}]")
    parts.append(chain)
    return "/".join(reversed(parts))


_PLAIN, _PATH, _HREF, _CHECKED = 0, 1, 2, 3
_ANIMATIONS = t.ANIMATION_ELEMENTS
_TEXT_ELEMENTS = t.TEXT_ELEMENTS
_TEXT_ONLY = t.TEXT_ONLY_ELEMENTS


def _kind(attribute: str) -> int:
    """How an allowed attribute's value is checked (decided once per policy)."""
    if attribute in t.PATH_ATTRIBUTES:
        return _PATH
    if attribute in t.HREF_ATTRIBUTES:
        return _HREF
    if attribute in ("style", "id", "class", t.XML_SPACE, t.XML_LANG) or (
        attribute in t.PRESENTATION_ATTRIBUTES
    ):
        return _CHECKED
    return _PLAIN


def _line(node: Any) -> int | None:
    line: int | None = node.sourceline
    return line


_MISC_NAMES: dict[type, str] = {
    etree._Comment: "comment()",
    etree._ProcessingInstruction: "processing-instruction()",
}


class _Run:
    """The state of one sanitizing run (report entries, flags)."""

    __slots__ = (
        "css", "elements", "entries", "ids", "omitted", "removed", "sanitizer", "style_kept",
        "uses", "uses_xlink",
    )  # fmt: skip

    def __init__(self, sanitizer: Sanitizer) -> None:
        self.sanitizer = sanitizer
        self.entries: list[ReportEntry] = []
        self.uses_xlink = False
        self.style_kept = False
        self.removed = False
        self.omitted = 0
        # Collected during the walk for the <use> expansion bound.
        self.ids: dict[str, OutElement] = {}
        self.uses: list[OutElement] = []
        self.elements = 0
        self.css = CssSanitizer(sanitizer.policy, sanitizer.rewrite_fragment,
                                cache=sanitizer._css_cache)  # fmt: skip

    def note(
        self,
        action: Action,
        kind: NodeKind,
        reason: ReasonCode,
        at: At,
        name: str = "",
        detail: str | None = None,
    ) -> None:
        if action is Action.REMOVED:
            self.removed = True
        if len(self.entries) >= MAX_REPORT_ENTRIES:
            # Bounded memory on hostile input (a million removed attributes).
            self.omitted += 1
            return
        self.entries.append(
            ReportEntry(
                action=action,
                kind=kind,
                reason=reason,
                path=_path(at[0]),
                line=None if at[1] is None else _line(at[1]),
                name=name,
                detail=None if detail is None else _short(detail),
            )
        )

    def css_issues(self, at: At, issues: list[CssIssue]) -> None:
        for issue in issues:
            action = Action.REMOVED if issue.removed else Action.REWRITTEN
            kind: NodeKind = "url" if issue.reason is ReasonCode.URL_NOT_ALLOWED else "css"
            self.note(action, kind, issue.reason, at, issue.name, issue.detail)
        issues.clear()


class Sanitizer:
    """A reusable sanitizer for one policy (tables are computed once).

    Thread-safe: each call keeps its state on the stack.

    Example:
        >>> s = Sanitizer(SanitizePolicy.strict())
        >>> s.sanitize('<svg xmlns="http://www.w3.org/2000/svg"><script>x</script>'
        ...            '<rect width="1" height="1"/></svg>').svg
        '<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>'
    """

    def __init__(self, policy: SanitizePolicy | None = None) -> None:
        self.policy = policy if policy is not None else SanitizePolicy.default()
        p = self.policy
        self._elements = frozenset(_SVG_PREFIX + name for name in p.elements)
        base = t.CORE_ATTRIBUTES if p.allow_style_attribute else t.CORE_ATTRIBUTES - {"style"}
        self._attributes: dict[str, frozenset[str]] = {}
        self._kinds: dict[str, dict[str, int]] = {}
        self._max_depth = p.max_depth
        for name in p.elements:
            own, presentation = t.ELEMENT_ATTRIBUTES[name]
            allowed = base | own
            if presentation:
                allowed |= t.PRESENTATION_ATTRIBUTES | t.CONDITIONAL_ATTRIBUTES
            self._attributes[name] = (allowed & p.attributes) | p.extra_attributes
            self._kinds[name] = {a: _kind(a) for a in self._attributes[name]}
        self._css_cache: dict[tuple[str, str], tuple[str | None, tuple[CssIssue, ...]]] = {}
        self._animatable = frozenset(
            a
            for a in p.attributes
            if "{" not in a and a.lower() not in t.ANIMATION_FORBIDDEN_TARGETS
        )

    # --- id prefixing ---------------------------------------------------------

    def prefix_id(self, name: str) -> str:
        """The final form of an id or class name under the policy's ``id_prefix``."""
        prefix = self.policy.id_prefix
        if prefix is None or name == prefix or name.startswith(prefix + "-"):
            return name
        return f"{prefix}-{name}"

    def rewrite_fragment(self, url: str) -> str:
        """Rewrite a ``#id`` reference to match prefixed ids (identity without a prefix)."""
        if url.startswith("#") and self.policy.id_prefix is not None:
            return "#" + self.prefix_id(url[1:])
        return url

    # --- public API -----------------------------------------------------------

    def sanitize(self, data: str | bytes) -> SanitizedSVG:
        """Sanitize one document.

        Raises:
            SVGRejected: the input cannot be made safe (reason code in ``.reason``).
        """
        root, doctype_dropped = parse_svg(data, self.policy)
        if root.tag != _SVG_ROOT:
            raise reject(ReasonCode.NOT_SVG_ROOT, f"root element is {root.tag!r}")
        run = _Run(self)
        root_at: At = ("/svg", root)
        if doctype_dropped:
            run.note(Action.REMOVED, "element", ReasonCode.DOCTYPE_FORBIDDEN, root_at, "DOCTYPE")
        for sibling in root.itersiblings(preceding=True):
            self._note_misc(run, sibling, ("/", sibling))
        for sibling in root.itersiblings():
            self._note_misc(run, sibling, ("/", sibling))
        scope_id = self._scope_id(root)
        out = self._element(run, root, scope_id, "/svg", 1)
        assert out is not None  # the root is always allowed
        if run.style_kept and scope_id is not None and "id" not in out.attrs:
            out.attrs = {"id": scope_id, **out.attrs}
            run.ids.setdefault(scope_id, out)
            run.note(Action.REWRITTEN, "id", ReasonCode.ROOT_ID_ADDED, root_at, "id", scope_id)
        self._bound_rendering(run, root_at, out)
        if run.removed and not _has_drawable(out) and len(root):
            raise reject(ReasonCode.EMPTY_RESULT, "nothing drawable left after sanitizing")
        svg = serialize(out, xlink=run.uses_xlink)
        report = SanitizeReport(entries=tuple(run.entries), omitted=run.omitted)
        return SanitizedSVG(svg=svg, report=report)

    # --- the walk -------------------------------------------------------------

    def _scope_id(self, root: Any) -> str | None:
        p = self.policy
        if not (p.allow_style_element and p.confine_styles):
            return None
        existing = root.get("id")
        if existing is not None and existing.strip():
            return self.prefix_id(existing)
        return p.id_prefix if p.id_prefix is not None else _DEFAULT_ROOT_ID

    def _note_misc(self, run: _Run, node: Any, at: At) -> None:
        if isinstance(node, etree._Comment):
            run.note(Action.REMOVED, "comment", ReasonCode.COMMENT_REMOVED, at,
                     detail=node.text or "")  # fmt: skip
        elif isinstance(node, etree._ProcessingInstruction):
            run.note(Action.REMOVED, "processing_instruction",
                     ReasonCode.PROCESSING_INSTRUCTION_REMOVED, at, str(node.target),
                     node.text or "")  # fmt: skip

    def _element(
        self,
        run: _Run,
        el: Any,
        scope_id: str | None,
        path: Any,
        depth: int,
        *,
        unwrap: bool = False,
    ) -> OutElement | None:
        if depth > self._max_depth:
            raise reject(ReasonCode.TOO_DEEP, f"depth over {self._max_depth}",
                         self._max_depth)  # fmt: skip
        tag = el.tag
        name = tag[len(_SVG_PREFIX) :]
        at: At = (path, el)
        if name in _ANIMATIONS and not self._animation_ok(run, el, name, at):
            return None
        attrs = {} if unwrap else self._attrs(run, el, name, at)
        out = OutElement(name, attrs)
        if not unwrap:
            run.elements += 1
            ident = attrs.get("id")
            if ident is not None:
                run.ids.setdefault(ident, out)
            if name == "use":
                run.uses.append(out)
        children = out.children
        if name == "style":
            self._style(run, el, out, scope_id, at)
            return out if out.children else None
        text_ok = name in _TEXT_ELEMENTS
        text_only = name in _TEXT_ONLY
        text = el.text
        if text:
            self._text(run, at, children, text, text_ok)
        counts: dict[str, int] = {}
        allowed = self._elements
        element = self._element
        for child in el:
            ctag = child.tag
            # The report's location: an XPath of local names, counted while walking
            # (never by scanning siblings, which would be quadratic).
            if ctag in allowed and not text_only:
                index = counts[ctag] = counts.get(ctag, 0) + 1
                sub = element(run, child, scope_id, (path, ctag, index), depth + 1)
                if sub is not None:
                    children.append(sub)
                tail = child.tail
                if tail:
                    self._text(run, at, children, tail, text_ok)
                continue
            key = ctag if isinstance(ctag, str) else _MISC_NAMES.get(type(child), "node()")
            index = counts[key] = counts.get(key, 0) + 1
            chain = (path, key, index)
            cat: At = (chain, child)
            local = key.rpartition("}")[2]
            if not isinstance(ctag, str):
                self._note_misc(run, child, cat)
            elif text_only:
                run.note(Action.REMOVED, "element", ReasonCode.TEXT_REMOVED, cat, local,
                         f"markup inside <{name}>")  # fmt: skip
            elif ctag == _SVG_A:
                # A link the policy does not allow: keep what it draws, drop the link.
                run.note(Action.REMOVED, "element", ReasonCode.ELEMENT_NOT_ALLOWED, cat, "a",
                         "unwrapped: children kept")  # fmt: skip
                sub = self._element(run, child, scope_id, chain, depth + 1, unwrap=True)
                if sub is not None:
                    for grandchild in sub.children:
                        if isinstance(grandchild, str):
                            self._text(run, cat, children, grandchild, text_ok)
                        else:
                            children.append(grandchild)
            else:
                reason = (
                    ReasonCode.ELEMENT_NOT_ALLOWED
                    if ctag.startswith(_SVG_PREFIX)
                    else ReasonCode.FOREIGN_NAMESPACE
                )
                run.note(Action.REMOVED, "element", reason, cat, local)
            tail = child.tail
            if tail:
                self._text(run, at, children, tail, text_ok)
        return out

    def _text(self, run: _Run, at: At, children: list[OutElement | str], text: str,
              text_ok: bool) -> None:  # fmt: skip
        if not text_ok and not text.isspace():
            run.note(Action.REMOVED, "text", ReasonCode.TEXT_REMOVED, at, detail=text)
            return
        # Pieces stay separate (the serializer writes them back to back): merging
        # with += would copy the growing string each time, quadratic on
        # ``a<!---->a<!---->...``.
        children.append(text)

    def _style(self, run: _Run, el: Any, out: OutElement, scope_id: str | None, at: At) -> None:
        parts = [el.text or ""]
        for child in el:
            cat: At = ((at[0], "node()", 1), child)
            if isinstance(child.tag, str):
                run.note(Action.REMOVED, "element", ReasonCode.TEXT_REMOVED, cat,
                         etree.QName(child.tag).localname, "markup inside <style>")  # fmt: skip
            else:
                self._note_misc(run, child, cat)
            parts.append(child.tail or "")
        kind = out.attrs.get("type", "text/css").strip().lower()
        if kind not in ("text/css", ""):
            run.note(Action.REMOVED, "element", ReasonCode.ELEMENT_NOT_ALLOWED, at, "style", kind)
            return
        source = "".join(parts)
        css = run.css.stylesheet(source, scope_id)
        run.css_issues(at, run.css.issues)
        if css:
            out.children.append(css)
            run.style_kept = True

    def _animation_ok(self, run: _Run, el: Any, name: str, at: At) -> bool:
        target = el.get("attributeName")
        if target is not None:
            plain = _SPACE_OR_CONTROL.sub("", target)
            local = plain.rpartition(":")[2].lower()
            if (
                local.startswith("on")
                or local in t.ANIMATION_FORBIDDEN_TARGETS
                or plain.rpartition(":")[2] not in self._animatable
            ):
                run.note(Action.REMOVED, "element", ReasonCode.ANIMATION_TARGET_FORBIDDEN, at,
                         name, f"attributeName={target!r}")  # fmt: skip
                return False
        for key in ("values", "from", "to", "by"):
            value = el.get(key)
            if value is None:
                continue
            squashed = _SPACE_OR_CONTROL.sub("", value).lower()
            bad = _has_scheme(squashed) or any(
                m.group(2) != "#" for m in _URL_OPEN.finditer(squashed)
            )
            if bad:
                run.note(Action.REMOVED, "element", ReasonCode.ANIMATION_VALUE_FORBIDDEN, at,
                         name, f"{key}={value!r}")  # fmt: skip
                return False
        return True

    def _attrs(self, run: _Run, el: Any, name: str, at: At) -> dict[str, str]:
        kinds = self._kinds[name]
        p = self.policy
        attrib = el.attrib
        if len(attrib) > p.max_attributes:
            # Checked before reading values: lxml fetches each value by name, so
            # reading n attributes costs n^2.
            raise reject(ReasonCode.TOO_MANY_ATTRIBUTES,
                         f"<{name}> has {len(attrib)} attributes", p.max_attributes)  # fmt: skip
        max_length = p.max_attribute_length
        out: dict[str, str] = {}
        for key, value in el.items():
            kind = kinds.get(key)
            if kind is None:
                self._refuse_attribute(run, at, key, value)
                continue
            if kind == _PLAIN:
                # The common case (geometry, filter parameters...): no URL, no CSS.
                if len(value) > max_length:
                    raise reject(ReasonCode.ATTRIBUTE_TOO_LONG,
                                 f"<{name} {key}> is {len(value)} long", max_length)  # fmt: skip
                out[key] = value
                continue
            if kind == _PATH:
                if len(value) > p.max_path_length:
                    raise reject(ReasonCode.PATH_TOO_LONG, f"<{name} {key}> is {len(value)} long",
                                 p.max_path_length)  # fmt: skip
                out[key] = value
                continue
            if kind != _HREF and len(value) > max_length:
                raise reject(ReasonCode.ATTRIBUTE_TOO_LONG, f"<{name} {key}> is {len(value)} long",
                             max_length)  # fmt: skip
            checked = self._value(run, at, name, key, value)
            if checked is None:
                continue
            if key == t.XLINK_HREF:
                run.uses_xlink = True
            out[_OUT_NAMES.get(key, key)] = checked
        return out

    def _refuse_attribute(self, run: _Run, at: At, key: str, value: str) -> None:
        if key[0] == "{":
            reason = (
                ReasonCode.ATTRIBUTE_NOT_ALLOWED
                if key.startswith((_XLINK_PREFIX, _XML_PREFIX))
                else ReasonCode.FOREIGN_NAMESPACE
            )
            key = key.rpartition("}")[2]
        elif key[:2].lower() == "on":
            reason = ReasonCode.EVENT_HANDLER
        else:
            reason = ReasonCode.ATTRIBUTE_NOT_ALLOWED
        run.note(Action.REMOVED, "attribute", reason, at, key, value)

    def _value(self, run: _Run, at: At, name: str, key: str, value: str) -> str | None:
        if key in t.HREF_ATTRIBUTES:
            context = (
                UrlContext.IMAGE
                if name in ("image", "feImage")
                else UrlContext.LINK
                if name == "a"
                else UrlContext.REFERENCE
            )
            verdict = check_url(value, context, self.policy)
            if not verdict.allowed:
                run.note(Action.REMOVED, "url", ReasonCode.URL_NOT_ALLOWED, at,
                         _OUT_NAMES.get(key, key), f"{value}: {verdict.why}")  # fmt: skip
                return None
            return self._rewritten(run, at, key, verdict.url, self.rewrite_fragment(verdict.url))
        if key == "style":
            css = run.css.style_attribute(value)
            run.css_issues(at, run.css.issues)
            if not css:
                return None
            return css
        if key == "id":
            return self._rewritten(run, at, key, value, self.prefix_id(value))
        if key == "class":
            if self.policy.id_prefix is None:
                return value
            new = " ".join(self.prefix_id(c) for c in value.split())
            return self._rewritten(run, at, key, value, new)
        if key in t.PRESENTATION_ATTRIBUTES:
            checked, issue = run.css.check_attribute(key, value)
            if issue is not None:
                run.css_issues(at, [issue])
                return None
            return checked
        return value

    def _rewritten(self, run: _Run, at: At, key: str, old: str, new: str) -> str:
        if new != old and self.policy.id_prefix is not None and old.lstrip("#") != new.lstrip("#"):
            run.note(Action.REWRITTEN, "id", ReasonCode.ID_PREFIXED, at,
                     _OUT_NAMES.get(key, key), f"{old} -> {new}")  # fmt: skip
        return new

    # --- render cost ----------------------------------------------------------

    def _bound_rendering(self, run: _Run, root: At, out: OutElement) -> None:
        """Drop cyclic ``<use>`` and refuse documents whose ``<use>`` expansion is too big.

        Every element renders once, and every ``<use>`` renders its target's
        subtree again (with its own uses expanded), so the rendered count is
        ``elements + sum(rendered(target) for each use)``; only referenced
        subtrees are walked.
        """
        ids, uses, elements = run.ids, run.uses, run.elements
        if not uses:
            return
        limit = self.policy.max_rendered_elements
        while True:
            size, cyclic = self._rendered_sizes(uses, ids, limit)
            if not cyclic:
                break
            # Browsers ignore a <use> in a reference cycle; drop it and measure again.
            self._drop_cyclic(run, root, out, cyclic)
            uses = [u for u in uses if id(u) not in cyclic]
        total = elements
        for use in uses:
            target = self._use_target(use, ids)
            if target is not None:
                total += size.get(id(target), 0)
                if total > limit:
                    raise reject(ReasonCode.TOO_MUCH_RENDERING,
                                 f"<use> expansion exceeds {limit} elements", limit)  # fmt: skip

    def _rendered_sizes(
        self, uses: list[OutElement], ids: dict[str, OutElement], limit: int
    ) -> tuple[dict[int, int], set[int]]:
        """Rendered size (capped at ``limit + 1``) of every use target's subtree, and cyclic uses.

        An iterative depth-first search over child edges and use -> target edges
        (no recursion, so a 10^5-long chain is fine). ``path`` is the current
        DFS path; an edge back into it closes a cycle, which always contains a
        use edge: the last use edge on the cycle is cut.
        """
        size: dict[int, int] = {}
        done: set[int] = set()
        on_path: dict[int, int] = {}
        path: list[OutElement] = []
        cyclic: set[int] = set()
        for use in uses:
            start = self._use_target(use, ids)
            if start is None or id(start) in done:
                continue
            work: list[tuple[OutElement, bool]] = [(start, False)]
            while work:
                node, expanded = work.pop()
                key = id(node)
                if expanded:
                    total = 1
                    for child in node.children:
                        if isinstance(child, OutElement):
                            total += size.get(id(child), 0)
                    target = self._use_target(node, ids)
                    if target is not None and key not in cyclic:
                        total += size.get(id(target), 0)
                    size[key] = min(total, limit + 1)
                    done.add(key)
                    path.pop()
                    del on_path[key]
                    continue
                if key in done or key in on_path:
                    continue
                on_path[key] = len(path)
                path.append(node)
                work.append((node, True))
                edges = [c for c in node.children if isinstance(c, OutElement)]
                target = self._use_target(node, ids)
                if target is not None:
                    edges.append(target)
                for nxt in edges:
                    nkey = id(nxt)
                    if nkey in on_path:
                        cycle = [*path[on_path[nkey] :], nxt]
                        for a, b in zip(reversed(cycle[:-1]), reversed(cycle[1:]), strict=True):
                            if self._use_target(a, ids) is b:
                                cyclic.add(id(a))
                                break
                    elif nkey not in done:
                        work.append((nxt, False))
        return size, cyclic

    @staticmethod
    def _use_target(node: OutElement, ids: dict[str, OutElement]) -> OutElement | None:
        if node.name != "use":
            return None
        ref = node.attrs.get("href", node.attrs.get("xlink:href"))
        if ref is None or not ref.startswith("#"):
            return None
        return ids.get(ref[1:])

    def _drop_cyclic(self, run: _Run, root: At, out: OutElement, bad: set[int]) -> None:
        stack = [out]
        while stack:
            node = stack.pop()
            kept: list[OutElement | str] = []
            for child in node.children:
                if isinstance(child, OutElement) and id(child) in bad:
                    run.note(Action.REMOVED, "element", ReasonCode.REFERENCE_CYCLE, root, "use",
                             child.attrs.get("href", child.attrs.get("xlink:href")))  # fmt: skip
                    continue
                kept.append(child)
                if isinstance(child, OutElement):
                    stack.append(child)
            node.children = kept


def _has_scheme(text: str) -> bool:
    """Whether ``text`` (lowercased) contains ``scheme:`` (a letter, scheme chars, a colon).

    Linear time: each colon looks back over its own run of scheme characters.
    (The regex ``[a-z][a-z0-9+.-]*:`` searched from every position is quadratic
    on a long run without a colon.)
    """
    i = text.find(":")
    while i != -1:
        j = i
        while j > 0 and text[j - 1] in _SCHEME_CHARS:
            j -= 1
        if any(c in _LETTERS for c in text[j:i]):
            return True
        i = text.find(":", i + 1)
    return False


def _has_drawable(out: OutElement) -> bool:
    stack = [out]
    while stack:
        node = stack.pop()
        if node.name in _DRAWABLE:
            return True
        stack.extend(c for c in node.children if isinstance(c, OutElement))
    return False


_DEFAULT: Sanitizer | None = None


def sanitize_svg(data: str | bytes, *, policy: SanitizePolicy | None = None) -> SanitizedSVG:
    """Sanitize an SVG document under ``policy`` (the ``default`` preset when omitted).

    Example:
        >>> sanitize_svg('<svg xmlns="http://www.w3.org/2000/svg">'
        ...              '<a href="javascript:alert(1)"><circle r="4"/></a></svg>').svg
        '<svg xmlns="http://www.w3.org/2000/svg"><a><circle r="4"/></a></svg>'

    Raises:
        SVGRejected: the input cannot be made safe; ``err.reason`` is a :class:`ReasonCode`
            value, ``err.detail`` says what, ``err.limit`` the limit exceeded (if any).
    """
    global _DEFAULT
    if policy is None:
        if _DEFAULT is None:
            _DEFAULT = Sanitizer()
        return _DEFAULT.sanitize(data)
    return Sanitizer(policy).sanitize(data)
