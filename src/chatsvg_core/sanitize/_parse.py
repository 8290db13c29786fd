"""Hardened parsing: decode, refuse DTDs and entities, enforce limits while parsing.

lxml's own parser is configured with defusedxml's rules (``defusedxml.lxml`` is
deprecated): no DTD loading, no entity resolution, no network, no huge trees.
On top of that every DOCTYPE and entity declaration is refused *before* the
parser sees the input, so billion-laughs and quadratic-blowup documents are
refused in time linear in their (bounded) size.

Node count (elements, comments, processing instructions): every node needs a
``<``, so when the input has at most ``max_elements`` of them it is parsed in
one call; otherwise the pull parser's events are counted while the bytes are
fed in chunks and parsing stops at the limit, so memory stays bounded.
Namespace declarations are counted the same way (``xmlns`` in the bytes, then
the pull parser's ``start-ns`` events when that is over the limit).
Depth: libxml2 itself refuses nesting deeper than 256 (``huge_tree=False``)
while parsing, so a 10^5-deep document stops there; the policy's smaller
``max_depth`` is checked by the pull parser's events or, on the one-call
path, by the sanitizer's walk before any work is done below that depth.
"""

from __future__ import annotations

import codecs
import re
import threading
from typing import Any

from lxml import etree

from chatsvg_core.errors import SVGRejected
from chatsvg_core.sanitize._policy import SanitizePolicy
from chatsvg_core.sanitize._reasons import ReasonCode

__all__ = ["parse_svg", "reject"]

_CHUNK = 64 * 1024
_XML_DECL_ENCODING = re.compile(rb"^<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_DECLARATION = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# A DOCTYPE with at most an external id and no internal subset.
_PLAIN_DOCTYPE = re.compile(
    rb"<!DOCTYPE\s+[A-Za-z_:][\w:.-]*"
    rb"(?:\s+PUBLIC\s+(?:\"[^\"]*\"|'[^']*')\s+(?:\"[^\"]*\"|'[^']*')"
    rb"|\s+SYSTEM\s+(?:\"[^\"]*\"|'[^']*'))?\s*>"
)
# The DOCTYPEs SVG 1.0 and 1.1 files carry (graphviz, old editors): dropped by
# default (``allow_svg_doctype``) when they have no internal subset.
_SVG_DOCTYPE = re.compile(
    rb"<!DOCTYPE\s+svg\s+PUBLIC\s+([\"'])-//W3C//DTD SVG (?:1\.0|1\.1|1\.1 Basic|1\.1 Tiny"
    rb"|20010904|20001102|20000802)//EN\1\s+(?:\"[^\"]*\"|'[^']*')\s*>"
)
# Encodings an XML declaration may name, by label (lowercase, ``_`` as ``-``):
# those of the WHATWG Encoding Standard that Python decodes without error
# handlers of its own, and the UTF-16/32 forms. Any other label is refused
# before Python's codec registry sees it: ``undefined`` and ``punycode``
# raise their own errors, and ``utf-7`` can decode to lone surrogates.
_ENCODING_LABELS = (
    "utf-8 utf8 utf-16 utf-16le utf-16be utf-32 utf-32le utf-32be us-ascii ascii "
    "iso-8859-1 latin1 latin-1 iso-8859-2 iso-8859-3 iso-8859-4 iso-8859-5 iso-8859-6 "
    "iso-8859-7 iso-8859-8 iso-8859-9 iso-8859-10 iso-8859-11 iso-8859-13 iso-8859-14 "
    "iso-8859-15 iso-8859-16 windows-1250 windows-1251 windows-1252 windows-1253 "
    "windows-1254 windows-1255 windows-1256 windows-1257 windows-1258 cp1250 cp1251 "
    "cp1252 koi8-r koi8-u macintosh shift-jis sjis cp932 euc-jp iso-2022-jp gb2312 gbk "
    "gb18030 big5 big5-hkscs euc-kr tis-620 cp874"
)
_ENCODINGS = {label: codecs.lookup(label).name for label in _ENCODING_LABELS.split()}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def reject(reason: ReasonCode, detail: str, limit: int | None = None) -> SVGRejected:
    """Build the :class:`SVGRejected` for a reason code (the caller raises it)."""
    # The message states the limit, so a log line or CLI error is actionable alone.
    bound = "" if limit is None else f" (limit {limit})"
    return SVGRejected(f"SVG rejected: {reason.value}: {detail}{bound}", reason=reason.value,
                       detail=detail, limit=limit)  # fmt: skip


def _make_parser(*, pull: bool = True) -> Any:
    options: dict[str, Any] = {
        "resolve_entities": False,
        "no_network": True,
        "load_dtd": False,
        "dtd_validation": False,
        "huge_tree": False,
        "remove_comments": False,  # kept so the report can list them; dropped on output
        "remove_pis": False,
        "strip_cdata": True,  # CDATA sections become ordinary (escaped) text
        "remove_blank_text": False,
        "collect_ids": False,
        "encoding": "utf-8",  # we always hand over UTF-8, whatever the declaration says
    }
    if pull:
        return etree.XMLPullParser(events=("start", "end", "comment", "pi", "start-ns"),
                                   **options)  # fmt: skip
    return etree.XMLParser(**options)


_LOCAL = threading.local()


def _thread_parser() -> Any:
    """This thread's one-call parser: lxml parsers may be reused, but not shared by threads."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = _make_parser(pull=False)
    return parser


def to_utf8(data: str | bytes, max_bytes: int) -> bytes:
    """Decode the input honouring a BOM or XML declaration, and return UTF-8 bytes."""
    if isinstance(data, str):
        if len(data) > max_bytes:  # each char is at least one byte
            raise reject(ReasonCode.TOO_MANY_BYTES, f"{len(data)} characters", max_bytes)
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise reject(ReasonCode.NOT_WELL_FORMED, f"not encodable text: {exc}") from None
        if len(raw) > max_bytes:
            raise reject(ReasonCode.TOO_MANY_BYTES, f"{len(raw)} bytes", max_bytes)
        return raw.removeprefix(codecs.BOM_UTF8)
    if not isinstance(data, bytes | bytearray | memoryview):
        # A typed refusal like every other bad input (a host passing a parsed
        # JSON value straight through gets an answer it can map to HTTP).
        raise reject(
            ReasonCode.NOT_WELL_FORMED, f"expected str or bytes, not {type(data).__name__}"
        )
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise reject(ReasonCode.TOO_MANY_BYTES, f"{len(raw)} bytes", max_bytes)
    encoding = "utf-8"
    if raw[:1] == b"<" and raw[1:2] != b"?":
        return raw  # no BOM (none starts with '<'), no XML declaration: UTF-8
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raw, encoding = raw[len(bom) :], name
            break
    else:
        match = _XML_DECL_ENCODING.match(raw)
        if match:
            label = match.group(1).decode("ascii").lower().replace("_", "-")
            known = _ENCODINGS.get(label)
            if known is None:
                raise reject(ReasonCode.ENCODING_NOT_ALLOWED, f"encoding {label[:40]!r}")
            encoding = known
    if encoding in ("utf-8", "utf8"):
        # Not decoded here: libxml2 refuses every malformed sequence itself
        # (overlong forms, surrogates, truncation, beyond U+10FFFF; see the
        # tests), and a throw-away decode of a large input made the parse that
        # follows up to 2x slower (the freed memory is given back to the OS and
        # the parser's allocations fault it in again).
        return raw
    try:
        return raw.decode(encoding).encode("utf-8")
    except UnicodeError as exc:  # undecodable bytes, or a decoded lone surrogate
        raise reject(ReasonCode.NOT_WELL_FORMED, f"cannot decode as {encoding}: {exc}") from None


def _refuse_dtd(raw: bytes, first: int, policy: SanitizePolicy) -> bytes:
    # Refused on sight: the parser never gets to read a declaration, so no
    # entity is ever defined, let alone expanded. ``first``: where the first
    # declaration starts.
    if _ENTITY_DECL.search(raw, first):
        raise reject(ReasonCode.ENTITY_FORBIDDEN, "entity declaration")
    match = _DOCTYPE.search(raw, first)
    if match is None:
        return raw
    plain = None
    if policy.allow_plain_doctype:
        plain = _PLAIN_DOCTYPE.match(raw, match.start())
    elif policy.allow_svg_doctype:
        plain = _SVG_DOCTYPE.match(raw, match.start())
    if plain is not None and not _DOCTYPE.search(raw, plain.end()):
        # Blank it out (same length keeps line numbers and offsets).
        return raw[: plain.start()] + b" " * (plain.end() - plain.start()) + raw[plain.end() :]
    raise reject(ReasonCode.DOCTYPE_FORBIDDEN, "document type declaration")


def parse_svg(data: str | bytes, policy: SanitizePolicy) -> tuple[etree._Element, bool, int]:
    """Parse under the policy's limits.

    Returns the root element, whether a DOCTYPE was dropped, and an upper
    bound of the number of elements (the input's length when that is within
    ``max_elements``, else the ``<`` counted, or the nodes the pull parser saw).

    Raises:
        SVGRejected: not well-formed, DOCTYPE/entities, or over a size/depth/count limit.
    """
    raw = to_utf8(data, policy.max_bytes)
    # One scan; almost every input has no declaration, and then the parsed
    # document cannot have a DOCTYPE either: its check is skipped.
    # (``<!`` found by a plain byte search first: the regex costs more than
    # the search on a small answer, and it can only match where ``<!`` is.
    # ``find``, not ``in``: ``in`` on bytes first tries its operand as an int
    # and clears the TypeError, 1 k instructions more.)
    declared = _DECLARATION.search(raw) if raw.find(b"<!") >= 0 else None
    cleaned = raw if declared is None else _refuse_dtd(raw, declared.start(), policy)
    doctype_dropped = cleaned is not raw
    # Every node needs a ``<``, so the byte length bounds the node count as
    # well; the count (a pass over the input) is only needed beyond the limit.
    markup = len(cleaned)
    if markup > policy.max_elements:
        markup = cleaned.count(b"<")
    # Namespace declarations likewise: each spells ``xmlns`` and takes 8 bytes
    # at least (``xmlns=""``), so short inputs need no count. Many of them make
    # lxml quadratic (the clean-up before writing, and every namespaced
    # attribute set, search the declarations per element): counted exactly by
    # the pull parser when the raw count is over the limit.
    max_namespaces = policy.max_namespace_declarations
    namespaces = 0
    if len(cleaned) > 8 * max_namespaces:
        namespaces = cleaned.count(b"xmlns")
    if markup <= policy.max_elements and namespaces <= max_namespaces:
        # Every element needs a '<', so the count cannot be exceeded: parse in
        # one call (libxml2 itself refuses nesting deeper than 256; the walk
        # checks ``max_depth``). Otherwise count while parsing, below.
        try:
            root = etree.fromstring(cleaned, _thread_parser())
        except etree.XMLSyntaxError as exc:
            raise _syntax_error(exc, policy) from None
        if declared is not None:
            _check_doctype(root, doctype_dropped)
        return root, doctype_dropped, markup
    parser = _make_parser()
    max_depth, max_elements = policy.max_depth, policy.max_elements
    depth = elements = namespaces = 0
    try:
        for start in range(0, len(cleaned), _CHUNK):
            parser.feed(cleaned[start : start + _CHUNK])
            for event, _ in parser.read_events():
                if event == "end":
                    depth -= 1
                    continue
                if event == "start-ns":
                    namespaces += 1
                    if namespaces > max_namespaces:
                        raise reject(
                            ReasonCode.TOO_MANY_NAMESPACES,
                            f"more than {max_namespaces} namespace declarations",
                            max_namespaces,
                        )
                    continue
                # Elements, comments and processing instructions all count: each
                # is a node in memory and a line in the report.
                elements += 1
                if elements > max_elements:
                    raise reject(
                        ReasonCode.TOO_MANY_ELEMENTS,
                        f"more than {max_elements} nodes",
                        max_elements,
                    )
                if event == "start":
                    depth += 1
                    if depth > max_depth:
                        raise reject(ReasonCode.TOO_DEEP, f"depth over {max_depth}", max_depth)
        root = parser.close()
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, policy) from None
    if declared is not None:
        _check_doctype(root, doctype_dropped)
    return root, doctype_dropped, elements


def _check_doctype(root: etree._Element, doctype_dropped: bool) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or (docinfo.doctype and not doctype_dropped):
        raise reject(ReasonCode.DOCTYPE_FORBIDDEN, "document type declaration")


def _syntax_error(exc: etree.XMLSyntaxError, policy: SanitizePolicy) -> SVGRejected:
    # The pull parser's own message can be generic ("no element found");
    # the error log's last entry names the real fault. The log is shared
    # by the thread, so it is only trusted when it matches this error.
    message, kind = str(exc), ""
    last: Any = getattr(exc.error_log, "last_error", None)
    if last is not None and (message.startswith("no element found") or last.message in message):
        message = f"{last.message} (line {last.line}, column {last.column})"
        kind = last.type_name
    if "Excessive depth" in message:
        return reject(ReasonCode.TOO_DEEP, message, policy.max_depth)
    if "ENTITY" in kind or "Entity" in message:
        return reject(ReasonCode.ENTITY_FORBIDDEN, message)
    return reject(ReasonCode.NOT_WELL_FORMED, message)
