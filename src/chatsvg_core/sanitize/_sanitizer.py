"""The sanitizer: walk the parsed tree, keep what the policy allows, report the rest."""

from __future__ import annotations

import math
import os
import re
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast, get_args

from lxml import etree

from chatsvg_core._construct import built
from chatsvg_core.errors import ConfigurationError
from chatsvg_core.sanitize import _tables as t
from chatsvg_core.sanitize._budget import _EVERY, Budget
from chatsvg_core.sanitize._css import CssIssue, CssSanitizer
from chatsvg_core.sanitize._parse import _DECLARATION, _LOCAL, _thread_parser, parse_svg, reject
from chatsvg_core.sanitize._policy import SanitizePolicy
from chatsvg_core.sanitize._reasons import Action, ReasonCode
from chatsvg_core.sanitize._repair import repair_root
from chatsvg_core.sanitize._report import NodeKind, ReportEntry, SanitizedSVG, SanitizeReport
from chatsvg_core.sanitize._serialize import serialize
from chatsvg_core.sanitize._urls import UrlContext, check_url

__all__ = ["Sanitizer", "sanitize_svg"]

_SVG_PREFIX = "{" + t.SVG_NS + "}"
_SVG_ROOT = _SVG_PREFIX + "svg"
_SVG_A = _SVG_PREFIX + "a"
_XLINK_PREFIX = "{" + t.XLINK_NS + "}"
_XML_PREFIX = "{" + t.XML_NS + "}"
_OUT_NAMES = {t.XLINK_HREF: "xlink:href", t.XML_SPACE: "xml:space", t.XML_LANG: "xml:lang"}
_DRAWABLE_TAGS = frozenset(
    _SVG_PREFIX + name
    for name in ("path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text",
                 "image", "use")
)  # fmt: skip
_SVG_USE = _SVG_PREFIX + "use"
_COUNT_ELEMENTS = etree.XPath("count(//*)")  # in C, without a Python object per element
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+.-")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
_URL_OPEN = re.compile(r"url\(([\"']?)(.)")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]+")
_DEFAULT_SCOPE = "chatsvg"
_XMLNS: dict[type, Any] = {str: "xmlns", bytes: b"xmlns"}
_XLINK_USE: dict[type, Any] = {str: "xlink:", bytes: b"xlink:"}
_PARSE_FIRST = True
"""Parse before the root repair when it cannot add anything (``Sanitizer._parse``);
``False`` only in the tests that hold both orders equal."""
_TEXT_FIRST = True
"""Parse a ``str`` answer in ``Sanitizer._parse`` itself when ``parse_svg`` would parse
it in one call; ``False`` only in the tests that hold it equal to ``parse_svg``."""
_CLEAN_SIZE = 8192
# A same-document reference that URL normalisation leaves as it is: allowed in
# every context, and kept as written when ids are not prefixed.
_PLAIN_FRAGMENT = re.compile(r"#[A-Za-z0-9_-]++")
_NODE_KINDS = frozenset(get_args(NodeKind))
MAX_REPORT_ENTRIES = 10_000
"""Report entries kept per document; further changes are only counted (``omitted``)."""


def _load_accelerator() -> Any:
    """The compiled walk (``_walk.pyx``), or ``None``: not built, built for another
    version of this module, or turned off with ``CHATSVG_SANITIZE_PURE=1``."""
    if os.environ.get("CHATSVG_SANITIZE_PURE", "") not in ("", "0"):
        return None
    try:
        from chatsvg_core.sanitize import _walk
    except ImportError:
        return None  # not built: a pure install
    except Exception as exc:  # e.g. built against an lxml whose C API differs
        warnings.warn(
            f"chatsvg_core.sanitize: the compiled walk cannot be loaded ({exc!r}); "
            "the pure-Python walk is used",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    expected = (_WALK_ABI, _PLAIN, _PATH, _HREF, _PRESENTATION, _CHECKED, _USE)
    found = (getattr(_walk, "ABI", None), _walk.PLAIN, _walk.PATH, _walk.HREF,
             _walk.PRESENTATION, _walk.CHECKED, _walk.USE)  # fmt: skip
    if found != expected:
        # A stale build (``pip install -e .`` not re-run after a change): the
        # pure walk is always right, so it takes over.
        warnings.warn(
            "chatsvg_core.sanitize: the compiled walk is out of date and is not used "
            "(reinstall the package to rebuild it)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return _walk


def _short(value: str) -> str:
    return value if len(value) <= 200 else value[:197] + "..."


_PLAIN, _PATH, _HREF, _PRESENTATION, _CHECKED = 0, 1, 2, 3, 4
_ANIMATION, _USE, _STYLE = 1, 2, 3
_WALK_ABI = 3


def _kind(attribute: str, prefixing: bool) -> int:
    """How an allowed attribute's value is checked (decided once per policy)."""
    if attribute in t.PATH_ATTRIBUTES:
        return _PATH
    if attribute in t.HREF_ATTRIBUTES:
        return _HREF
    if attribute in t.PRESENTATION_ATTRIBUTES:
        return _PRESENTATION
    if attribute == "style" or (prefixing and attribute in ("id", "class")):
        return _CHECKED
    return _PLAIN


_MISC_NAMES: dict[type, str] = {
    etree._Comment: "comment()",
    etree._ProcessingInstruction: "processing-instruction()",
}


class _Run(Budget):
    """The state of one sanitizing run (report entries, flags) and its time budget.

    The run is its own :class:`Budget` (``budget`` is the run itself): one
    object made per call instead of two (about 2 k instructions of a small
    answer's sanitizing).
    """

    __slots__ = ("_css", "entries", "ids", "indices", "omitted", "removed", "root",
                 "sanitizer", "short_values", "style_kept", "uses")  # fmt: skip

    def __init__(self, sanitizer: Sanitizer, seconds: float | None) -> None:
        # ``Budget.__init__``, in place (a call fewer per document); started
        # before the parse, which the budget bounds too.
        self.seconds = seconds
        self.deadline = math.inf if seconds is None else time.monotonic() + seconds
        self.countdown = _EVERY
        self.root: Any = None  # set once parsed
        self.short_values = False  # likewise
        self.entries: list[ReportEntry] = []
        self.style_kept = False
        self.removed = False
        self.omitted = 0
        # Collected during the walk for the <use> expansion bound and the scope
        # class: every id's first element, and the reference (``href``, else
        # ``xlink:href``; ``None``: neither) of every kept ``<use>``, in document
        # order. References, not elements: a sprite sheet has thousands of uses
        # of a few targets, and each target is then looked up once.
        self.ids: dict[str, Any] = {}
        self.uses: list[str | None] = []
        # Positions of reported nodes among their same-name siblings (see
        # index()); made with the first entry.
        self.indices: dict[Any, int] | None = None
        self.sanitizer = sanitizer
        self._css: CssSanitizer | None = None

    @property
    def budget(self) -> Budget:
        """The run's budget: the run itself (the compiled walk reads it here)."""
        return self

    @property
    def css(self) -> CssSanitizer:
        """The run's CSS sanitizer, made on first use: most documents have no CSS to check."""
        css = self._css
        if css is None:
            s = self.sanitizer
            css = self._css = CssSanitizer(s.policy, s.rewrite_fragment, cache=s._css_cache,
                                           budget=self)  # fmt: skip
        return css

    def locate(self, node: Any) -> str:
        """The report location of ``node``: an XPath of local names (``/svg/g[2]/rect[1]``).

        Only computed when an entry is written, and on the input tree: the walk
        changes a parent's children only after all of them were visited.
        """
        steps: list[str] = []
        while True:
            parent = node.getparent()
            if parent is None:
                steps.append("/svg" if node is self.root else "/")
                break
            steps.append(f"{_key(node).rpartition('}')[2]}[{self.index(node)}]")
            node = parent
        return "/".join(reversed(steps))

    def index(self, node: Any) -> int:
        """``node``'s position among its siblings of the same name (1-based).

        Counted back to the nearest sibling whose position is known: entries
        come in document order, so reporting every child of a parent walks its
        children about once (linear, not quadratic).
        """
        memo = self.indices
        if memo is None:
            memo = self.indices = {}
        count = 1
        for sibling in node.itersiblings(node.tag, preceding=True):
            known = memo.get(sibling)
            if known is not None:
                count += known
                break
            count += 1
        memo[node] = count
        return count

    def note(
        self,
        action: Action,
        kind: NodeKind,
        reason: ReasonCode,
        node: Any,
        name: str = "",
        detail: str | None = None,
    ) -> None:
        if action is Action.REMOVED:
            self.removed = True
        if len(self.entries) >= MAX_REPORT_ENTRIES:
            # Bounded memory on hostile input (a million removed attributes).
            self.omitted += 1
            return
        fields = {
            "action": action,
            "kind": kind,
            "reason": reason,
            "path": self.locate(node),
            "line": node.sourceline,
            "name": name,
            "detail": None if detail is None else _short(detail),
        }
        line = fields["line"]
        if (
            type(name) is str
            and (detail is None or type(detail) is str)
            and (line is None or type(line) is int)
            and type(action) is Action
            and type(reason) is ReasonCode
            and kind in _NODE_KINDS
        ):
            # Exactly what validation would keep (the path is built here as a
            # str): a small file's one entry cost as much as its parse.
            self.entries.append(built(ReportEntry, fields))
        else:
            self.entries.append(ReportEntry.model_validate(fields))

    def css_issues(self, node: Any, issues: list[CssIssue]) -> None:
        for issue in issues:
            action = Action.REMOVED if issue.removed else Action.REWRITTEN
            kind: NodeKind = "url" if issue.reason is ReasonCode.URL_NOT_ALLOWED else "css"
            self.note(action, kind, issue.reason, node, issue.name, issue.detail)
        issues.clear()


def _key(node: Any) -> str:
    tag = node.tag
    return tag if isinstance(tag, str) else _MISC_NAMES.get(type(node), "node()")


class Sanitizer:
    """A reusable sanitizer for one policy (tables are computed once).

    Thread-safe: each call keeps its state on the stack, the lxml parser is
    per thread, and the caches of values found clean are bounded dictionaries
    that threads may read and clear at once.

    Example:
        >>> s = Sanitizer(SanitizePolicy.strict())
        >>> s.sanitize('<svg xmlns="http://www.w3.org/2000/svg"><script>x</script>'
        ...            '<rect width="1" height="1"/></svg>').svg
        '<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>'
    """

    def __init__(self, policy: SanitizePolicy | None = None) -> None:
        if policy is not None and not isinstance(policy, SanitizePolicy):
            raise ConfigurationError(
                f"a sanitizer policy is a SanitizePolicy, not {type(policy).__name__} "
                "(for a preset: SanitizePolicy.preset(name))",
                option="policy",
            )
        self.policy = policy if policy is not None else SanitizePolicy.default()
        p = self.policy
        elements = p.elements
        if p.confine_styles and "class" not in p.attributes:
            # Confinement marks elements with a class (``_mark_scope``); a policy
            # without ``class`` cannot confine, so it keeps no ``<style>``.
            elements = elements - {"style"}
        self._elements = frozenset(_SVG_PREFIX + name for name in elements)
        base = t.CORE_ATTRIBUTES if p.allow_style_attribute else t.CORE_ATTRIBUTES - {"style"}
        self._kinds: dict[str, dict[str, int]] = {}
        quick: dict[str, frozenset[str]] = {}
        self._max_depth = p.max_depth
        self._max_attributes = p.max_attributes
        for name in p.elements:
            own, presentation = t.ELEMENT_ATTRIBUTES[name]
            allowed = base | own
            if presentation:
                allowed |= t.PRESENTATION_ATTRIBUTES | t.CONDITIONAL_ATTRIBUTES
            self._kinds[name] = {
                a: _kind(a, p.id_prefix is not None)
                for a in (allowed & p.attributes) | p.extra_attributes
            }
            # Attributes whose value needs nothing but a length check when it holds
            # no ``(`` and no ``\\`` (a presentation value without a function or a
            # CSS escape is kept as written): one set test per element skips the
            # per-attribute loop for most of a real document.
            quick[name] = frozenset(
                a for a, kind in self._kinds[name].items() if kind in (_PLAIN, _PATH, _PRESENTATION)
            )
        self._value_limit = min(p.max_attribute_length, p.max_path_length)
        self._max_seconds = p.max_seconds
        # ``parse_svg``'s bounds for a one-call parse without a count (``_parse``).
        self._one_call_bytes = min(p.max_bytes, p.max_elements)
        self._uncounted_bytes = 8 * p.max_namespace_declarations
        self._max_namespaces = p.max_namespace_declarations
        # Without id prefixing, a plain ``#id`` href is kept as written.
        self._plain_fragments = p.id_prefix is None
        # Everything the walk needs to know about a tag, in one lookup.
        self._info: dict[str, tuple[str, frozenset[str], bool, bool, int]] = {
            _SVG_PREFIX + name: (
                name,
                quick.get(name, frozenset()),
                name in t.TEXT_ELEMENTS,
                name in t.TEXT_ONLY_ELEMENTS,
                _ANIMATION
                if name in t.ANIMATION_ELEMENTS
                else _USE
                if name == "use"
                else _STYLE
                if name == "style"
                else 0,
            )
            for name in {*p.elements, "a"}  # a disallowed <a> is still walked (unwrapped)
        }
        # The class that confines ``<style>`` rules (see ``_mark_scope``).
        self._scope: str | None = None
        if p.allow_style_element and p.confine_styles and "style" in elements:
            self._scope = p.id_prefix if p.id_prefix is not None else _DEFAULT_SCOPE
        self._css_cache: dict[tuple[str, str], tuple[str | None, tuple[CssIssue, ...]]] = {}
        self._clean: dict[tuple[str, str, str], str] = {}
        self._walker = _make_walker(self, elements) if _ACCELERATOR is not None else None
        self._animatable = frozenset(
            a
            for a in p.attributes
            if "{" not in a and a.lower() not in t.ANIMATION_FORBIDDEN_TARGETS
        )

    @classmethod
    def prepared(cls, policy: SanitizePolicy | None = None) -> Sanitizer:
        """The shared sanitizer for ``policy`` (equal policies share one; ``None``: default).

        Building a sanitizer computes its tables; ``sanitize_svg``, the engine
        and the CLI come through here, so passing a policy never costs a
        rebuild per call. The cache is keyed by the frozen policy and bounded:
        beyond ``PREPARED_CACHE_SIZE`` distinct policies the oldest is dropped.

        Example:
            >>> Sanitizer.prepared(SanitizePolicy.strict()) is Sanitizer.prepared(
            ...     SanitizePolicy.strict().extend())
            True
        """
        global _LAST
        if policy is None:
            policy = SanitizePolicy.default()
        elif not isinstance(policy, SanitizePolicy):
            return cls(policy)  # raises ConfigurationError, naming the mistake
        last = _LAST
        if last is not None and last[0] is policy:
            # Callers mostly pass the same object: no hash (pydantic computes
            # a model's hash from all its fields on every call).
            return last[1]
        sanitizer = _PREPARED.get(policy)
        if sanitizer is None:
            built = cls(policy)
            with _PREPARED_LOCK:
                sanitizer = _PREPARED.setdefault(policy, built)
                while len(_PREPARED) > PREPARED_CACHE_SIZE:
                    del _PREPARED[next(iter(_PREPARED))]
        _LAST = (policy, sanitizer)
        return sanitizer

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
        return self._sanitize_tree(data)[0]

    def _sanitize_tree(self, data: str | bytes) -> tuple[SanitizedSVG, Any]:
        """:meth:`sanitize`, and the sanitized tree (an lxml root element) it wrote.

        For checks that read the result, such as :func:`is_blank`: they can
        walk this tree instead of parsing ``.svg`` again. The tree is the
        caller's (nothing else holds it); it reads as the parse of ``.svg``
        does (same elements, attributes and text; ``tests/sanitize`` checks
        ``is_blank`` gives the same answer on both).

        Raises:
            SVGRejected: the input cannot be made safe (reason code in ``.reason``).
        """
        run = _Run(self, self._max_seconds)
        root, doctype_dropped, nodes, data, repairs, alone = self._parse(data)
        if root.tag != _SVG_ROOT:
            raise reject(ReasonCode.NOT_SVG_ROOT, f"root element is {root.tag!r}")
        # Each stage boundary reads the clock in place and calls ``check`` (which
        # raises) only once the deadline has passed: three calls fewer per
        # document. Not resetting the countdown there only brings the walk's
        # next reading sooner.
        if time.monotonic() > run.deadline:
            run.check()
        run.root = root
        # ``len(data)`` bounds every attribute value (characters or bytes alike).
        run.short_values = len(data) <= self._value_limit
        if doctype_dropped:
            run.note(Action.REMOVED, "element", ReasonCode.DOCTYPE_FORBIDDEN, root, "DOCTYPE")
        for declaration in repairs:
            run.note(Action.REWRITTEN, "attribute", ReasonCode.NAMESPACE_ADDED, root, declaration)
        # Comments and processing instructions around the root (the parser
        # keeps no other sibling). Most documents have none: a sibling
        # iterator costs more than asking for the neighbours, and ``alone``
        # (the text could hold neither) saves asking.
        if not alone:
            if root.getprevious() is not None:
                for sibling in root.itersiblings(preceding=True):
                    self._note_misc(run, sibling)
            if root.getnext() is not None:
                for sibling in root.itersiblings():
                    self._note_misc(run, sibling)
        had_children = len(root) > 0
        scope = self._scope
        self._element(run, root, _SVG_ROOT, scope, 1)
        if time.monotonic() > run.deadline:
            run.check()
        if run.uses:  # ``_bound_rendering`` has nothing to do without a kept <use>
            self._bound_rendering(run, root, nodes)
            run.check()
        if run.style_kept and scope is not None:
            self._mark_scope(run, root, scope)
        if run.removed and had_children and not _has_drawable(root):
            raise reject(ReasonCode.EMPTY_RESULT, "nothing drawable left after sanitizing")
        # A declaration is spelled ``xmlns`` (no entity can stand for one: DTDs
        # are refused or blanked out before parsing). Only a hint: serialize
        # checks what it wrote.
        kind = type(data)
        one = (kind is str or kind is bytes) and data.count(_XMLNS[kind]) == 1
        svg = serialize(root, one_declaration=one)
        if time.monotonic() > run.deadline:
            run.check()
        report = (
            # Entries made above and an int: what validation would keep as they are.
            built(SanitizeReport, {"entries": tuple(run.entries), "omitted": run.omitted})
            if run.entries or run.omitted
            else _EMPTY_REPORT  # frozen, so one instance serves every clean document
        )
        # A str and a SanitizeReport: what validation would keep as they are.
        return built(SanitizedSVG, {"svg": svg, "report": report}), root

    def _parse(
        self, data: str | bytes
    ) -> tuple[Any, bool, int, str | bytes, tuple[str, ...], bool]:
        """``repair_root`` then ``parse_svg``: the parse, and the (repaired) input and its repairs.

        Parsed first when the input holds no ``xlink:``: then a root parsed as
        ``<svg>`` in the SVG namespace without a prefix declared that namespace
        in its own start tag (nothing else can bind an unprefixed root), and
        without ``xlink:`` the repair has nothing else to add, so its regex
        scans of the prolog and start tag (a fifth of a small file's cost) are
        skipped. Any other outcome takes the repair; the parse is repeated only
        when the repair changed the input, so the answer, a refusal included,
        is the one the repair-first order gives (tests/sanitize/test_sanitize_fast_paths.py).
        """
        kind = type(data)
        if kind is str and _TEXT_FIRST and "xlink:" not in data and data[:1] != "\ufeff":
            # What ``parse_svg`` does for such a text when its size needs no
            # count (no BOM to drop, no declaration to refuse, within
            # ``max_bytes`` and ``max_elements``, few ``xmlns``): encode it and
            # parse it with this thread's parser. Anything else, a failed parse
            # or a root the repair could change included, goes the general way
            # below, from the start: the layers skipped were a tenth of a small
            # answer's sanitizing (10 k instructions of ~115 k).
            try:
                raw = data.encode()  # type: ignore[union-attr]  # ``kind is str``
            except UnicodeEncodeError:
                raw = b""  # a lone surrogate: the general path refuses it
            size = len(raw)
            if (
                0 < size <= self._one_call_bytes
                and ("<!" not in data or _DECLARATION.search(raw) is None)
                and (size <= self._uncounted_bytes or raw.count(b"xmlns") <= self._max_namespaces)
            ):
                try:
                    parser = _LOCAL.parser  # ``_thread_parser()`` without its call
                except AttributeError:
                    parser = _thread_parser()
                try:
                    root = etree.fromstring(raw, parser)
                except Exception:
                    root = None
                if root is not None and root.tag == _SVG_ROOT and root.prefix is None:
                    # Without ``<!`` and ``<?`` no comment or processing
                    # instruction can stand beside the root.
                    alone = "<?" not in data and "<!" not in data
                    return root, False, size, data, (), alone
        if _PARSE_FIRST and (kind is bytes or kind is str) and _XLINK_USE[kind] not in data:
            try:
                root, doctype_dropped, nodes = parse_svg(data, self.policy)
            except Exception:  # any failure: the repaired input may parse where this did not
                fixed, repairs = repair_root(data)
                if not repairs:
                    raise  # the repair-first order parses the same input: the same refusal
            else:
                if root.tag == _SVG_ROOT and root.prefix is None:
                    return root, doctype_dropped, nodes, data, (), False
                fixed, repairs = repair_root(data)
                if not repairs:
                    return root, doctype_dropped, nodes, data, (), False
            data = fixed
        else:
            data, repairs = repair_root(data)  # adds only namespace declarations
        root, doctype_dropped, nodes = parse_svg(data, self.policy)
        return root, doctype_dropped, nodes, data, repairs, False

    # --- the walk -------------------------------------------------------------
    #
    # The parsed tree is changed in place and lxml writes it (in C): an allowed
    # element that needs no change costs a few lookups and no copy. Children to
    # drop are collected while iterating and spliced out after, keeping their
    # surrounding text.

    def _mark_scope(self, run: _Run, root: Any, scope: str) -> None:
        """Give the scope class to the root and to every ``<use>`` target.

        Confined selectors end with ``:where(.S,.S *)``. The root's class makes
        them match the SVG's own tree; a ``<use>`` draws a clone of its target
        in a shadow tree, where the root is no ancestor, so the target carries
        the class as well and its clone (with the clone's descendants) matches
        too. Nothing outside this SVG and its clones has the class, so the
        rules still never reach the host page. Ids are not used: an id the
        input chose (``<svg id="app">``) could name an element of the host.
        """
        added = 0
        marked: set[Any] = set()
        targets = [root]
        ids = run.ids
        for ref in dict.fromkeys(run.uses):
            if ref is not None and ref[:1] == "#":
                target = ids.get(ref[1:])
                if target is not None:
                    targets.append(target)
        for el in targets:
            if el in marked:
                continue
            marked.add(el)
            current = el.get("class")
            if current is not None and scope in current.split():
                continue
            el.set("class", scope if current is None or not current.strip()
                   else f"{current} {scope}")  # fmt: skip
            added += 1
        if added:
            # One entry for the document: a sprite sheet can have thousands of targets.
            run.note(Action.REWRITTEN, "attribute", ReasonCode.SCOPE_CLASS_ADDED, root, "class",
                     f"{scope} (on {added} element{'s' if added > 1 else ''})")  # fmt: skip

    def _note_misc(self, run: _Run, node: Any) -> None:
        if isinstance(node, etree._Comment):
            run.note(Action.REMOVED, "comment", ReasonCode.COMMENT_REMOVED, node,
                     detail=node.text or "")  # fmt: skip
        elif isinstance(node, etree._ProcessingInstruction):
            run.note(Action.REMOVED, "processing_instruction",
                     ReasonCode.PROCESSING_INSTRUCTION_REMOVED, node, str(node.target),
                     node.text or "")  # fmt: skip

    def _element(
        self,
        run: _Run,
        el: Any,
        tag: str,
        scope_id: str | None,
        depth: int,
        unwrap_in: bool | None = None,
    ) -> bool:
        """Sanitize the allowed element ``el`` (``tag``) in place; ``False``: drop it whole.

        The caller passes ``el.tag``, which it has read already: lxml builds a
        new string each time the tag is read.

        ``unwrap_in`` is set for a disallowed ``<a>`` whose children move up to
        its parent: its attributes do not matter and its text must also be
        allowed in the parent (``unwrap_in`` is whether the parent takes text).
        """
        run.countdown -= 1  # Budget.tick(), inlined: this runs once per element
        if run.countdown <= 0:
            run.check()
        if depth > self._max_depth:
            raise reject(ReasonCode.TOO_DEEP, f"depth over {self._max_depth}",
                         self._max_depth)  # fmt: skip
        name, quick, text_ok, text_only, special = self._info[tag]
        if special == _ANIMATION and not self._animation_ok(run, el, name):
            return False
        if unwrap_in is None:
            keys = el.keys()
            if keys:
                if len(keys) > self._max_attributes:
                    # Checked before reading values: lxml fetches each value by
                    # name, so reading n attributes costs n^2.
                    raise reject(ReasonCode.TOO_MANY_ATTRIBUTES,
                                 f"<{name}> has {len(keys)} attributes",
                                 self._max_attributes)  # fmt: skip
                if quick.issuperset(keys):
                    # Allowed names; the values need a check only when one holds
                    # a function or a CSS escape, or may be over a length limit.
                    values = el.values()
                    joined = "".join(values)
                    if (
                        "(" in joined
                        or "\\" in joined
                        or not (run.short_values or max(map(len, values)) <= self._value_limit)
                    ):
                        self._attrs(run, el, name)
                else:
                    self._attrs(run, el, name)
                if "id" in keys:
                    ident = el.get("id")
                    if ident is not None:
                        run.ids.setdefault(ident, el)
            if special == _USE:
                run.uses.append(_href(el))
            elif special == _STYLE:
                return self._style(run, el, scope_id)
        else:
            text_ok = text_ok and unwrap_in
        text = el.text
        if text:
            if not text_ok and not text.isspace():
                run.note(Action.REMOVED, "text", ReasonCode.TEXT_REMOVED, el, detail=text)
                el.text = None
        elif text is not None:
            el.text = None  # an empty CDATA section would be written as <x></x>
        depth += 1
        changes: dict[Any, bool] | None
        if self._walker is not None:
            # The compiled loop (``_walk.pyx``): the same decisions, made by this
            # class's own methods for every child that needs any.
            changes = self._walker.children(run, el, name, text_ok, text_only, scope_id, depth)
            if changes:
                _splice(el, changes)
            return True
        changes = None
        allowed = () if text_only else self._elements
        element = self._element
        for child in el:
            ctag = child.tag
            if ctag in allowed:
                if not element(run, child, ctag, scope_id, depth):
                    if changes is None:
                        changes = {}
                    changes[child] = False
            else:
                if changes is None:
                    changes = {}
                changes[child] = self._refused(run, child, ctag, el, name, scope_id, depth, text_ok)
            if not text_ok:
                tail = child.tail
                if tail and not tail.isspace():
                    run.note(Action.REMOVED, "text", ReasonCode.TEXT_REMOVED, el, detail=tail)
                    child.tail = None
        if changes:
            _splice(el, changes)
        return True

    def _child(
        self,
        run: _Run,
        parent: Any,
        child: Any,
        name: str,
        text_ok: bool,
        text_only: bool,
        scope_id: str | None,
        depth: int,
    ) -> bool | None:
        """One child of ``parent`` (``name``) for the compiled loop: the body of
        ``_element``'s loop without the tail. ``None``: kept as it is; ``False``:
        drop it; ``True``: unwrap it."""
        ctag = child.tag
        if not text_only and ctag in self._elements:
            return None if self._element(run, child, ctag, scope_id, depth) else False
        return self._refused(run, child, ctag, parent, name, scope_id, depth, text_ok)

    def _tail(self, run: _Run, parent: Any, child: Any) -> None:
        """Drop ``child``'s tail where ``parent`` takes no text (as ``_element``'s loop)."""
        tail = child.tail
        if tail and not tail.isspace():
            run.note(Action.REMOVED, "text", ReasonCode.TEXT_REMOVED, parent, detail=tail)
            child.tail = None

    def _refused(
        self,
        run: _Run,
        child: Any,
        ctag: Any,
        parent: Any,
        name: str,
        scope_id: str | None,
        depth: int,
        text_ok: bool,
    ) -> bool:
        """Report a child (``ctag``: its tag) that is not kept as it is; ``True``: unwrapped."""
        if not isinstance(ctag, str):
            self._note_misc(run, child)
        elif name in t.TEXT_ONLY_ELEMENTS:
            run.note(Action.REMOVED, "element", ReasonCode.TEXT_REMOVED, child,
                     ctag.rpartition("}")[2], f"markup inside <{name}>")  # fmt: skip
        elif ctag == _SVG_A:
            # A link the policy does not allow: keep what it draws, drop the link.
            run.note(Action.REMOVED, "element", ReasonCode.ELEMENT_NOT_ALLOWED, child, "a",
                     "unwrapped: children kept")  # fmt: skip
            return self._element(run, child, ctag, scope_id, depth, unwrap_in=text_ok)
        else:
            reason = (
                ReasonCode.ELEMENT_NOT_ALLOWED
                if ctag.startswith(_SVG_PREFIX)
                else ReasonCode.FOREIGN_NAMESPACE
            )
            run.note(Action.REMOVED, "element", reason, child, ctag.rpartition("}")[2])
        return False

    def _style(self, run: _Run, el: Any, scope_id: str | None) -> bool:
        parts = [el.text or ""]
        for child in el:
            if isinstance(child.tag, str):
                run.note(Action.REMOVED, "element", ReasonCode.TEXT_REMOVED, child,
                         etree.QName(child.tag).localname, "markup inside <style>")  # fmt: skip
            else:
                self._note_misc(run, child)
            parts.append(child.tail or "")
        kind = el.get("type", "text/css").strip().lower()
        if kind not in ("text/css", ""):
            run.note(Action.REMOVED, "element", ReasonCode.ELEMENT_NOT_ALLOWED, el, "style", kind)
            return False
        source = "".join(parts)
        css = run.css.stylesheet(source, scope_id)
        run.css_issues(el, run.css.issues)
        if not css:
            return False
        del el[:]
        el.text = css
        run.style_kept = True
        return True

    def _animation_ok(self, run: _Run, el: Any, name: str) -> bool:
        target = el.get("attributeName")
        if target is not None:
            plain = _SPACE_OR_CONTROL.sub("", target)
            local = plain.rpartition(":")[2].lower()
            if (
                local.startswith("on")
                or local in t.ANIMATION_FORBIDDEN_TARGETS
                or plain.rpartition(":")[2] not in self._animatable
            ):
                run.note(Action.REMOVED, "element", ReasonCode.ANIMATION_TARGET_FORBIDDEN, el,
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
                run.note(Action.REMOVED, "element", ReasonCode.ANIMATION_VALUE_FORBIDDEN, el,
                         name, f"{key}={value!r}")  # fmt: skip
                return False
        return True

    def _attrs(self, run: _Run, el: Any, name: str) -> None:
        """Check every attribute of ``el`` (the quick test in ``_element`` failed)."""
        p = self.policy
        kinds = self._kinds[name]
        max_length = p.max_attribute_length
        short = run.short_values
        clean = self._clean
        for key, value in el.items():
            kind = kinds.get(key)
            if kind == _PLAIN:
                # The common case (geometry, filter parameters...): no URL, no CSS.
                if short or len(value) <= max_length:
                    continue
                raise reject(ReasonCode.ATTRIBUTE_TOO_LONG,
                             f"<{name} {key}> is {len(value)} long", max_length)  # fmt: skip
            if kind is None:
                self._refuse_attribute(run, el, key, value)
                del el.attrib[key]
                continue
            if kind == _PATH:
                if len(value) > p.max_path_length:
                    raise reject(ReasonCode.PATH_TOO_LONG, f"<{name} {key}> is {len(value)} long",
                                 p.max_path_length)  # fmt: skip
                continue
            if kind == _PRESENTATION and "(" not in value and "\\" not in value:
                if short or len(value) <= max_length:
                    continue  # no function, no escape: nothing can hide in it
            elif kind == _HREF and self._plain_fragments and _PLAIN_FRAGMENT.fullmatch(value):
                # What check_url and rewrite_fragment give for it, without them, and
                # not cached: each <use> tends to point somewhere else.
                continue
            else:
                # Values that passed unchanged or were rewritten without a report
                # entry: documents repeat them (``fill="url(#g)"``, styles, links).
                known = clean.get((name, key, value))
                if known is not None:
                    if known != value:
                        el.set(key, known)
                    continue
            if kind != _HREF and len(value) > max_length:
                raise reject(ReasonCode.ATTRIBUTE_TOO_LONG, f"<{name} {key}> is {len(value)} long",
                             max_length)  # fmt: skip
            reported = len(run.entries) + run.omitted
            if kind == _PRESENTATION:
                checked, issue = run.css.check_attribute(key, value)
                if issue is not None:
                    run.css_issues(el, [issue])
            else:
                checked = self._value(run, el, name, key, value)
            if checked is None:
                del el.attrib[key]
                continue
            if checked != value:
                el.set(key, checked)
            if len(run.entries) + run.omitted == reported:
                if len(clean) >= _CLEAN_SIZE:
                    clean.clear()  # bounded; real documents repeat few values
                clean[(name, key, value)] = checked

    def _refuse_attribute(self, run: _Run, node: Any, key: str, value: str) -> None:
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
        run.note(Action.REMOVED, "attribute", reason, node, key, value)

    def _value(self, run: _Run, node: Any, name: str, key: str, value: str) -> str | None:
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
                run.note(Action.REMOVED, "url", ReasonCode.URL_NOT_ALLOWED, node,
                         _OUT_NAMES.get(key, key), f"{value}: {verdict.why}")  # fmt: skip
                return None
            return self._rewritten(run, node, key, verdict.url, self.rewrite_fragment(verdict.url))
        if key == "style":
            css = run.css.style_attribute(value)
            if run.css.issues:
                run.css_issues(node, run.css.issues)
            if not css:
                return None
            return css
        if key == "id":
            return self._rewritten(run, node, key, value, self.prefix_id(value))
        if key == "class":
            if self.policy.id_prefix is None:
                return value
            new = " ".join(self.prefix_id(c) for c in value.split())
            return self._rewritten(run, node, key, value, new)
        return value

    def _rewritten(self, run: _Run, node: Any, key: str, old: str, new: str) -> str:
        if new != old and self.policy.id_prefix is not None and old.lstrip("#") != new.lstrip("#"):
            run.note(Action.REWRITTEN, "id", ReasonCode.ID_PREFIXED, node,
                     _OUT_NAMES.get(key, key), f"{old} -> {new}")  # fmt: skip
        return new

    # --- render cost ----------------------------------------------------------

    def _bound_rendering(self, run: _Run, root: Any, nodes: int) -> None:
        """Drop cyclic ``<use>`` and refuse documents whose ``<use>`` expansion is too big.

        Every element renders once, and every ``<use>`` renders its target's
        subtree again (with its own uses expanded), so the rendered count is
        ``elements + sum(rendered(target) for each use)``; only referenced
        subtrees are walked. Two linear passes over them: one finds every
        ``<use>`` on a reference cycle (``_cyclic_uses``), one sizes the
        remaining graph, which is then acyclic (``_rendered_sizes``).
        """
        if not run.uses:
            return
        ids = run.ids
        limit = self.policy.max_rendered_elements
        # The kept elements render once each. ``nodes`` (from the parse) bounds
        # their number; they are counted only when that bound is not enough.
        elements = nodes
        overcount: int | None = None

        def exceeds(total: int) -> bool:
            nonlocal overcount
            if total <= limit:
                return False
            if overcount is None:
                overcount = nodes - int(cast(float, _COUNT_ELEMENTS(root)))
            return total - overcount > limit

        # A use of a leaf (no children, not itself a use) adds one element and
        # cannot be on a cycle: counted here, the search below only sees the rest.
        # Uses are grouped by reference: the sum is the same, and the total only
        # grows, so it exceeds the limit in the end exactly when it did on the way.
        targets: dict[Any, int] = {}  # target element -> uses of it
        for ref, count in Counter(run.uses).items():
            target = _ref_target(ref, ids)
            if target is None:
                continue
            if len(target) or target.tag == _SVG_USE:
                targets[target] = targets.get(target, 0) + count
            else:
                elements += count
        if exceeds(elements):
            raise reject(ReasonCode.TOO_MUCH_RENDERING,
                         f"<use> expansion exceeds {limit} elements", limit)  # fmt: skip
        if not targets:
            return
        cyclic = _cyclic_uses(list(targets), ids)
        if cyclic:
            # Browsers ignore a <use> in a reference cycle; drop them all at once,
            # then count the uses that are left (all in the tree: the walk kept them).
            self._drop_cyclic(run, root, cyclic)
            targets = {}
            for use in root.iter(_SVG_USE):
                target = _use_target(use, ids)
                if target is not None and (len(target) or target.tag == _SVG_USE):
                    targets[target] = targets.get(target, 0) + 1
        size = _rendered_sizes(list(targets), ids, limit)
        total = elements
        for target, count in targets.items():
            total += count * size.get(target, 0)
            if exceeds(total):
                raise reject(ReasonCode.TOO_MUCH_RENDERING,
                             f"<use> expansion exceeds {limit} elements", limit)  # fmt: skip

    def _drop_cyclic(self, run: _Run, root: Any, bad: set[Any]) -> None:
        by_parent: dict[Any, dict[Any, bool]] = {}
        for use in root.iter(_SVG_USE):
            if use in bad:
                run.note(Action.REMOVED, "element", ReasonCode.REFERENCE_CYCLE, root, "use",
                         _href(use))  # fmt: skip
                by_parent.setdefault(use.getparent(), {})[use] = False
        for parent, changes in by_parent.items():
            _splice(parent, changes)


def _edges(node: Any, ids: dict[str, Any]) -> Iterator[Any]:
    """``node``'s children, then the target of ``node`` if it is a ``<use>``."""
    yield from node
    target = _use_target(node, ids)
    if target is not None:
        yield target


def _cyclic_uses(starts: list[Any], ids: dict[str, Any]) -> set[Any]:
    """Every ``<use>`` that lies on a reference cycle, in one pass (Tarjan's algorithm).

    The graph has child edges and use -> target edges, from ``starts`` (the
    targets of uses). Child edges form a tree, so every cycle holds a use edge, and a
    use edge lies on a cycle exactly when the use and its target are in the
    same strongly connected component. Cutting all such edges (and no other)
    leaves the graph acyclic, and it is what browsers do: each of those uses
    would contain itself. Iterative (a 10^5-long chain is fine) and linear in
    the walked nodes and edges: no path copies, no second pass.

    Elements are the keys (not ``id()``): lxml makes a new proxy object for a
    node whose old proxy was freed, so only a proxy kept alive by the
    dictionaries keeps its identity.
    """
    index: dict[Any, int] = {}
    low: dict[Any, int] = {}
    component: dict[Any, int] = {}  # node -> index of its component's root
    stack: list[Any] = []
    for start in starts:
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        work: list[tuple[Any, Iterator[Any]]] = [(start, _edges(start, ids))]
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    work.append((nxt, _edges(nxt, ids)))
                    break
                if nxt not in component and index[nxt] < low[node]:
                    low[node] = index[nxt]  # still on the stack: same component
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    if low[node] < low[parent]:
                        low[parent] = low[node]
                if low[node] == index[node]:
                    root = index[node]
                    while True:
                        member = stack.pop()
                        component[member] = root
                        if member is node:
                            break
    cyclic: set[Any] = set()
    for node, root in component.items():
        target = _use_target(node, ids)
        if target is not None and component.get(target) == root:
            cyclic.add(node)
    return cyclic


def _rendered_sizes(starts: list[Any], ids: dict[str, Any], limit: int) -> dict[Any, int]:
    """Rendered size (capped at ``limit + 1``) of every use target's subtree.

    The graph (child edges, use -> target edges) has no cycle left, so each
    node's size is computed once, after its successors (memoised, iterative).
    """
    size: dict[Any, int] = {}
    for start in starts:
        if start in size:
            continue
        work: list[tuple[Any, bool]] = [(start, False)]
        while work:
            node, expanded = work.pop()
            if expanded:
                total = 1
                for nxt in _edges(node, ids):
                    total += size[nxt]
                size[node] = min(total, limit + 1)
            elif node not in size:
                work.append((node, True))
                work.extend((nxt, False) for nxt in _edges(node, ids) if nxt not in size)
    return size


def _href(node: Any) -> str | None:
    ref: str | None = node.get("href")
    return node.get(t.XLINK_HREF) if ref is None else ref


def _use_target(node: Any, ids: dict[str, Any]) -> Any:
    if node.tag != _SVG_USE:
        return None
    return _ref_target(_href(node), ids)


def _ref_target(ref: str | None, ids: dict[str, Any]) -> Any:
    if ref is None or not ref.startswith("#"):
        return None
    return ids.get(ref[1:])


def _splice(parent: Any, changes: dict[Any, bool]) -> None:
    """Remove (``False``) or unwrap (``True``) children of ``parent``, keeping the text around them.

    ``changes`` is in document order. Only the changed children and their
    neighbours are touched (one removal from a 10^4-child root is not a pass
    over the root), and the text gathered before each kept node is joined
    once: ``a<!---->a<!---->...`` stays linear.
    """
    pending: dict[Any, list[str]] = {}  # a kept node (its tail), or parent (its text)

    def gap_before(node: Any) -> list[str]:
        owner = node.getprevious()  # earlier changed children are already gone
        if owner is None:
            owner = parent
        pieces = pending.get(owner)
        if pieces is None:
            text = parent.text if owner is parent else owner.tail
            pieces = pending[owner] = [text or ""]
        return pieces

    for child, unwrap in changes.items():
        pieces = gap_before(child)
        if unwrap:
            pieces.append(child.text or "")
            grandchildren = list(child)
            for grandchild in grandchildren:
                child.addprevious(grandchild)  # its tail moves along with it
            if grandchildren:
                pieces = gap_before(child)
        pieces.append(child.tail or "")
        parent.remove(child)  # takes its tail along: the text lives on in pieces
    for owner, pieces in pending.items():
        text = "".join(pieces) or None
        if owner is parent:
            parent.text = text
        else:
            owner.tail = text


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


def _has_drawable(root: Any) -> bool:
    # Plain iteration: a multi-tag ``iter()`` builds its matcher on every call,
    # which costs more than finding the first shape of a real document.
    return any(el.tag in _DRAWABLE_TAGS for el in root.iter())


def _make_walker(sanitizer: Sanitizer, elements: frozenset[str]) -> Any:
    """The compiled children loop for ``sanitizer`` (the elements it handles alone:
    allowed ones without an animation or stylesheet check)."""
    info = {}
    for name in elements:
        special = sanitizer._info[_SVG_PREFIX + name][4]
        if special in (0, _USE):
            info[name] = _ACCELERATOR.Info(name, sanitizer._kinds[name], name in t.TEXT_ELEMENTS,
                                           name in t.TEXT_ONLY_ELEMENTS, special)  # fmt: skip
    p = sanitizer.policy
    return _ACCELERATOR.Walker(info, sanitizer._clean, sanitizer._child, sanitizer._tail,
                               _splice, p.max_depth, p.max_attributes, p.max_attribute_length,
                               p.max_path_length, sanitizer._plain_fragments)  # fmt: skip


_ACCELERATOR: Any = _load_accelerator()
_EMPTY_REPORT = SanitizeReport()
PREPARED_CACHE_SIZE = 32
"""Distinct policies whose prepared :class:`Sanitizer` is kept (``Sanitizer.prepared``)."""
_PREPARED: dict[SanitizePolicy, Sanitizer] = {}
_PREPARED_LOCK = threading.Lock()
_LAST: tuple[SanitizePolicy, Sanitizer] | None = None


def sanitize_svg(data: str | bytes, *, policy: SanitizePolicy | None = None) -> SanitizedSVG:
    """Sanitize an SVG document under ``policy`` (the ``default`` preset when omitted).

    Equal policies share one prepared :class:`Sanitizer` (a bounded cache), so
    passing a policy costs no more than omitting it.

    Example:
        >>> sanitize_svg('<svg xmlns="http://www.w3.org/2000/svg">'
        ...              '<a href="javascript:alert(1)"><circle r="4"/></a></svg>').svg
        '<svg xmlns="http://www.w3.org/2000/svg"><a><circle r="4"/></a></svg>'

    Raises:
        SVGRejected: the input cannot be made safe; ``err.reason`` is a :class:`ReasonCode`
            value, ``err.detail`` says what, ``err.limit`` the limit exceeded (if any).
    """
    return Sanitizer.prepared(policy).sanitize(data)
