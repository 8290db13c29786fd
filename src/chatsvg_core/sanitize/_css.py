"""CSS sanitizing with a real tokenizer (tinycss2), for ``style`` and ``<style>``.

Declarations are kept only for allowlisted properties whose value holds
nothing but allowlisted tokens and functions; ``url()`` may only point to a
same-document ``#id``. Rules keep only simple selectors (type, class, id,
attribute, allowlisted pseudo-classes) and, when confinement is on, each
selector's subject is restricted to the SVG's own subtree and its ``<use>``
clones with a zero-specificity ``:where(.scope, .scope *)`` so ``<style>``
inside an inlined SVG never styles the host page. The output never contains ``<``, so it can never
close a ``<style>`` element, whatever parser reads it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import tinycss2
from tinycss2 import ast
from tinycss2.serializer import serialize_string_value

from chatsvg_core.sanitize import _tables as t
from chatsvg_core.sanitize._budget import Budget
from chatsvg_core.sanitize._policy import SanitizePolicy
from chatsvg_core.sanitize._reasons import ReasonCode
from chatsvg_core.sanitize._urls import UrlContext, check_url

__all__ = ["CssIssue", "CssSanitizer"]

Rewriter = Callable[[str], str]
"""Maps a same-document fragment (``#id``) to its final form (id prefixing)."""

_VALUE_TOKENS = (
    ast.WhitespaceToken,
    ast.IdentToken,
    ast.NumberToken,
    ast.PercentageToken,
    ast.DimensionToken,
    ast.HashToken,
    ast.StringToken,
)
_VALUE_LITERALS = frozenset({",", "/", "+", "-", "*", "%", "!"})
_SELECTOR_LITERALS = frozenset({".", ",", ">", "+", "~", "*", ":"})
_ATTR_LITERALS = frozenset({"=", "~=", "|=", "^=", "$=", "*="})
_MEDIA_LITERALS = frozenset({",", ":", "/", ">", "="})
_KEYFRAMES = frozenset({"keyframes", "-webkit-keyframes"})
_CACHE_SIZE = 4096
_CSS_SPACE = " \t\n\r\f"
# Whitespace the tokenizer-free paths accept. CSS preprocessing turns ``\r`` and
# ``\f`` into ``\n``: text holding them goes to the tokenizer, so those paths
# write exactly what it writes.
_WS = r"[ \t\n]"
# Atomic groups and possessive quantifiers keep these linear (no backtracking).
_SIMPLE_NAME = re.compile(rf"{_WS}*+[A-Za-z][A-Za-z-]*+{_WS}*+")
# The lookbehind makes a start inside a name fail at once: linear, not quadratic.
_FUNCTION_NAME = re.compile(r"(?<![A-Za-z0-9-])([A-Za-z][A-Za-z0-9-]*+)\(")
_PLAIN_FUNCTIONS = t.CSS_FUNCTIONS - {"url"}
_LOCAL_URL = re.compile(r"url\((#[A-Za-z0-9_-]++)\)")
# One token: number/dimension/percentage, identifier or hash. Tokens must be
# separated by whitespace or a comma, so the text is exactly what tinycss2
# would serialize (it adds ``/**/`` between tokens that touch).
_SIMPLE_TOKEN = (
    r"(?>[-+]?(?:[0-9]++(?:\.[0-9]++)?|\.[0-9]++)(?:%|[A-Za-z]++)?"
    r"|[A-Za-z_][A-Za-z0-9_-]*+|#[A-Za-z0-9_-]++)"
)
_SIMPLE_VALUE = re.compile(
    rf"{_WS}*+{_SIMPLE_TOKEN}(?:(?:{_WS}++|{_WS}*+,{_WS}*+)"
    rf"{_SIMPLE_TOKEN})*+{_WS}*+"
)
# ``name:value;name:value`` already in the form ``_simple_declarations`` writes
# (lowercase names, no space around names or at the ends, no empty declaration).
_CANONICAL_DECLARATION = (
    rf"[a-z][a-z-]*+:{_SIMPLE_TOKEN}"
    rf"(?:(?:{_WS}++|{_WS}*+,{_WS}*+){_SIMPLE_TOKEN})*+"
)
_CANONICAL_DECLARATIONS = re.compile(rf"{_CANONICAL_DECLARATION}(?:;{_CANONICAL_DECLARATION})*+")
_DECLARATION_NAME = re.compile(r"(?:^|;)([a-z-]++):")
# A whole declaration value that is one same-document reference.
_LOCAL_URL_VALUE = re.compile(rf"{_WS}*+{_LOCAL_URL.pattern}{_WS}*+")
# Stylesheets of plain rules: selectors of type, class, id and pseudo-class
# parts with combinators, bodies of plain declarations.
_SHEET_RULE = re.compile(rf"([^{{}}]++)\{{([^{{}}]*+)\}}{_WS}*+")
_IDENT = r"[A-Za-z_][A-Za-z0-9_-]*+"
_COMPOUND = rf"(?:(?:{_IDENT}|\*)(?:[.#:]{_IDENT})*+|(?:[.#:]{_IDENT})++)"
_COMPLEX = rf"{_COMPOUND}(?:(?:{_WS}*+[>+~]{_WS}*+|{_WS}++){_COMPOUND})*+"
_SIMPLE_SELECTORS = re.compile(rf"{_WS}*+{_COMPLEX}(?:{_WS}*+,{_WS}*+{_COMPLEX})*+{_WS}*+")
_PSEUDO_NAME = re.compile(rf":({_IDENT})")
_SELECTOR_NAME = re.compile(rf"([.#])({_IDENT})")
# ``name(args) name(args)``: args are simple tokens separated by spaces or commas.
_SIMPLE_FUNCTIONS = re.compile(
    rf"[ \t\n\r\f]*+(?:[A-Za-z][A-Za-z0-9-]*+\([ \t\n\r\f]*+(?:{_SIMPLE_TOKEN}"
    rf"(?:(?:[ \t\n\r\f]++|[ \t\n\r\f]*+,[ \t\n\r\f]*+){_SIMPLE_TOKEN})*+)?"
    rf"[ \t\n\r\f]*+\)[ \t\n\r\f]*+,?[ \t\n\r\f]*+)++"
)


# Declaration values the tokenizer-free path also takes (each gives exactly
# what the tinycss2 path gives; property tests compare them): plain
# functions (``rgb(1, 2, 3)``), one unquoted ``url(...)`` (checked like any
# URL), and tokens mixed with double-quoted strings that need no escaping
# (``"Open Sans", serif``). Only ``[ \t\n]`` as whitespace: CSS turns ``\r``
# and ``\f`` into ``\n``, which the text here would not.
_DECLARATION_FUNCTIONS = re.compile(_SIMPLE_FUNCTIONS.pattern.replace(r"[ \t\n\r\f]", _WS))
_URL_VALUE = re.compile(rf"{_WS}*+url\(([^\"'()\\\s<\x00-\x1f\x7f]*+)\){_WS}*+")
_STRING_TOKEN = r"\"[^\"'\\\n\r\f;{}<]*+\""
_STRING_VALUE = re.compile(
    rf"{_WS}*+(?:{_SIMPLE_TOKEN}|{_STRING_TOKEN})"
    rf"(?:(?:{_WS}++|{_WS}*+,{_WS}*+)(?:{_SIMPLE_TOKEN}|{_STRING_TOKEN}))*+{_WS}*+"
)


@dataclass(frozen=True, slots=True)
class CssIssue:
    """One CSS change: reason, the property/rule name, and the offending text."""

    reason: ReasonCode
    name: str
    detail: str
    removed: bool = True


class _Reject(Exception):
    def __init__(self, reason: ReasonCode, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_BRACKET = re.compile(r"[()\[\]{}]")
_MAX_NESTING = 32


def _too_nested(css: str) -> bool:
    """Whether brackets nest deeper than any real CSS does (tinycss2 and our checks recurse).

    Counts raw brackets, strings included: an over-estimate, never an under-one.
    """
    depth = 0
    for match in _BRACKET.finditer(css):
        if match.group() in "([{":
            depth += 1
            if depth > _MAX_NESTING:
                return True
        elif depth:
            depth -= 1
    return False


def _no_lt(css: str) -> str:
    # ``<`` can only sit in strings or escaped identifiers once values are
    # checked; a CSS escape keeps the meaning and removes the character.
    if _XML_UNSAFE.search(css) is not None:
        css = _xml_safe(css)
    if "<" not in css:
        return css
    return css.replace("\\<", "\\3c ").replace("<", "\\3c ")


# Characters a CSS escape can decode to that XML 1.0 cannot hold (lxml refuses
# them with a ValueError; a lone surrogate cannot even be encoded).
_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# tinycss2 writes such a character raw in strings and URLs and as ``\`` and the
# raw character in names; an escaped backslash (``\\``) is matched first so
# that its second half is never read as the start of an escape.
_XML_UNSAFE_ESCAPE = re.compile(rf"(\\\\)|\\?({_XML_UNSAFE.pattern})")


def _escape_unsafe(match: re.Match[str]) -> str:
    pair, char = match.groups()
    if pair is not None:
        return pair
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        # CSS Syntax decodes an escaped surrogate to U+FFFD (tinycss2 does not).
        return "\ufffd"
    # A hex escape always ends with a space, which is part of the escape, so
    # whatever follows (a hex digit, a space) keeps its meaning.
    return f"\\{code:x} "


def _xml_safe(css: str) -> str:
    """``css`` with every character XML cannot hold written as a CSS hex escape."""
    return _XML_UNSAFE_ESCAPE.sub(_escape_unsafe, css)


def _serialize(tokens: Sequence[Any]) -> str:
    """Serialize tokens without whitespace tokens at either end.

    Trimmed as tokens, not as text: ``str.strip`` would cut the escaped space
    of ``\\ `` (tinycss2's form of a space in a name) down to a dangling
    backslash, which escapes whatever follows (``}`` in a sheet), and it
    also strips U+001C-U+001F and other characters CSS does not count as space.
    """
    start, end = 0, len(tokens)
    while start < end and isinstance(tokens[start], ast.WhitespaceToken):
        start += 1
    while end > start and isinstance(tokens[end - 1], ast.WhitespaceToken):
        end -= 1
    return str(tinycss2.serialize(tokens[start:end]))


@dataclass
class CssSanitizer:
    """Sanitizes CSS under one policy; ``rewrite`` maps ``#id`` references."""

    policy: SanitizePolicy
    rewrite: Rewriter
    issues: list[CssIssue] = field(default_factory=list)
    # Results per input text, shared across runs of one Sanitizer (same policy).
    cache: dict[tuple[str, str], tuple[str | None, tuple[CssIssue, ...]]] = field(
        default_factory=dict
    )
    # The run's wall-clock budget, ticked per rule and per declaration.
    budget: Budget = field(default_factory=lambda: Budget(None))

    # --- values -----------------------------------------------------------

    def _url(self, raw: str) -> str:
        verdict = check_url(raw, UrlContext.CSS, self.policy)
        if not verdict.allowed:
            raise _Reject(ReasonCode.URL_NOT_ALLOWED, f"url({raw}): {verdict.why}")
        if any(c in verdict.url for c in "\"'()\\ \t\n<>"):
            raise _Reject(ReasonCode.URL_NOT_ALLOWED, f"url({raw}): unusual characters")
        return self.rewrite(verdict.url)

    def _value(self, tokens: Iterable[Any]) -> list[Any]:
        out: list[Any] = []
        for tok in tokens:
            if isinstance(tok, ast.StringToken):
                # Re-quoted: an unclosed string (ended by end of input) is closed.
                quoted = f'"{serialize_string_value(tok.value)}"'
                out.append(ast.StringToken(tok.source_line, tok.source_column, tok.value, quoted))
            elif isinstance(tok, _VALUE_TOKENS):
                out.append(tok)
            elif isinstance(tok, ast.ParseError) and tok.kind in ("eof-in-url", "eof-in-string"):
                # CSS Syntax reads an unclosed url( or string at the end of the input as
                # complete (browsers paint ``fill="url(#p"``); the token is kept, closed.
                continue
            elif isinstance(tok, ast.LiteralToken):
                if tok.value not in _VALUE_LITERALS:
                    raise _Reject(ReasonCode.CSS_VALUE_NOT_ALLOWED, f"token {tok.value!r}")
                out.append(tok)
            elif isinstance(tok, ast.URLToken):
                url = self._url(tok.value)
                out.append(ast.URLToken(tok.source_line, tok.source_column, url, f"url({url})"))
            elif isinstance(tok, ast.FunctionBlock):
                name = tok.lower_name
                if name not in t.CSS_FUNCTIONS:
                    raise _Reject(ReasonCode.CSS_VALUE_NOT_ALLOWED, f"function {tok.name}()")
                if name == "url":
                    args = [a for a in tok.arguments if not isinstance(a, ast.WhitespaceToken)]
                    if len(args) != 1 or not isinstance(args[0], ast.StringToken):
                        raise _Reject(ReasonCode.URL_NOT_ALLOWED, "url() without one string")
                    url = self._url(args[0].value)
                    out.append(ast.URLToken(tok.source_line, tok.source_column, url, f"url({url})"))
                else:
                    args = self._value(tok.arguments)
                    out.append(
                        ast.FunctionBlock(tok.source_line, tok.source_column, tok.name, args)
                    )
            elif isinstance(tok, ast.ParenthesesBlock):
                out.append(
                    ast.ParenthesesBlock(
                        tok.source_line, tok.source_column, self._value(tok.content)
                    )
                )
            else:
                kind = getattr(tok, "type", type(tok).__name__)
                raise _Reject(ReasonCode.CSS_VALUE_NOT_ALLOWED, f"{kind} in value")
        return out

    def value(self, text: str) -> str:
        """Check a presentation attribute value; return it (rewritten) or raise ``_Reject``."""
        if "(" not in text and "\\" not in text:
            # Without a function or an escape no URL or function can hide here.
            return text
        if _too_nested(text):
            raise _Reject(ReasonCode.CSS_INVALID, "brackets nested too deeply")
        tokens = tinycss2.parse_component_value_list(text, skip_comments=True)
        return _no_lt(_serialize(self._value(tokens)))

    def check_attribute(self, name: str, text: str) -> tuple[str | None, CssIssue | None]:
        """Check a presentation attribute; ``(value, None)`` or ``(None, issue)``."""
        if "(" not in text and "\\" not in text:
            return text, None
        local = _LOCAL_URL.fullmatch(text)
        if local is not None:
            # The usual paint/filter/clip reference, without tokenizing.
            return self._local_url(local), None
        # The cache next: documents repeat their values.
        key = (name, text)
        hit = self.cache.get(key)
        if hit is not None:
            return hit[0], (hit[1][0] if hit[1] else None)
        url = _URL_VALUE.fullmatch(text)
        if url is not None:
            # One unquoted url() (``fill="url(https://x/p.svg#a)"``): checked
            # as the tokenizer path checks its URL token, without tokenizing.
            try:
                result: tuple[str | None, CssIssue | None] = (
                    f"url({self._url(url.group(1))})",
                    None,
                )
            except _Reject as exc:
                result = (None, CssIssue(exc.reason, name, exc.detail))
            self._remember(key, result[0], () if result[1] is None else (result[1],))
            return result
        if _SIMPLE_FUNCTIONS.fullmatch(text) and all(
            f.lower() in _PLAIN_FUNCTIONS for f in _FUNCTION_NAME.findall(text)
        ):
            # ``translate(10 3) rotate(45deg)``, ``rgb(1, 2, 3)``: allowlisted functions of
            # plain numbers and words, no nesting, no URL; kept as written (not cached:
            # such values are mostly unique).
            return text, None
        try:
            result = (self.value(text), None)
        except _Reject as exc:
            result = (None, CssIssue(exc.reason, name, exc.detail))
        self._remember(key, result[0], () if result[1] is None else (result[1],))
        return result

    def _remember(self, key: tuple[str, str], value: str | None,
                  issues: tuple[CssIssue, ...]) -> None:  # fmt: skip
        if len(self.cache) >= _CACHE_SIZE:
            self.cache.clear()  # crude but bounded; real documents repeat few values
        self.cache[key] = (value, issues)

    # --- declarations -----------------------------------------------------

    def _declarations(self, items: Sequence[Any]) -> list[str]:
        kept: list[str] = []
        tick = self.budget.tick
        for item in items:
            tick()
            if isinstance(item, ast.Declaration):
                name = item.lower_name
                if name not in self.policy.css_properties:
                    self.issues.append(
                        CssIssue(ReasonCode.CSS_PROPERTY_NOT_ALLOWED, name, _short(item))
                    )
                    continue
                try:
                    value = _serialize(self._value(item.value))
                except _Reject as exc:
                    self.issues.append(CssIssue(exc.reason, name, exc.detail))
                    continue
                if not value:
                    continue
                kept.append(f"{name}:{value}{' !important' if item.important else ''}")
            elif isinstance(item, ast.AtRule):
                self.issues.append(
                    CssIssue(ReasonCode.CSS_RULE_NOT_ALLOWED, "@" + item.lower_at_keyword, "")
                )
            elif isinstance(item, ast.ParseError):
                self.issues.append(CssIssue(ReasonCode.CSS_INVALID, "", item.message))
            elif isinstance(item, ast.QualifiedRule):
                self.issues.append(CssIssue(ReasonCode.CSS_RULE_NOT_ALLOWED, "nested rule", ""))
        return kept

    def style_attribute(self, text: str) -> str:
        """Sanitize a ``style`` attribute; the result may be empty."""
        if self._canonical(text):
            # Not cached here: the sanitizer keeps clean attribute values itself.
            return text
        key = ("style", text)
        hit = self.cache.get(key)
        if hit is not None:
            self.issues.extend(hit[1])
            return hit[0] or ""
        before = len(self.issues)
        css = self._simple_declarations(text)
        if css is None and _too_nested(text):
            del self.issues[before:]
            self.issues.append(
                CssIssue(ReasonCode.CSS_INVALID, "style", "brackets nested too deeply")
            )
            css = ""
        elif css is None:
            del self.issues[before:]
            items = tinycss2.parse_declaration_list(text, skip_comments=True, skip_whitespace=True)
            css = _no_lt(";".join(self._declarations(items)))
        self._remember(key, css, tuple(self.issues[before:]))
        return css

    def _canonical(self, text: str) -> bool:
        """Whether ``text`` is plain allowed declarations, written as this class writes them."""
        return _CANONICAL_DECLARATIONS.fullmatch(text) is not None and (
            self.policy.css_properties.issuperset(_DECLARATION_NAME.findall(text))
        )

    def _simple_declarations(self, text: str) -> str | None:
        """A tokenizer-free path for plain ``name: word 1px #abc`` lists, else ``None``.

        It accepts only text whose every token is an identifier, number,
        dimension, percentage, hash or comma, where it gives exactly what the
        tinycss2 path gives (a property test checks the two agree).
        """
        kept: list[str] = []
        tick = self.budget.tick
        for part in text.split(";"):
            tick()
            if not part or part.isspace():
                continue
            name, colon, value = part.partition(":")
            if not colon or not _SIMPLE_NAME.fullmatch(name):
                return None
            local = url = None
            if not _SIMPLE_VALUE.fullmatch(value):
                local = _LOCAL_URL_VALUE.fullmatch(value)
                if local is None:
                    url = _URL_VALUE.fullmatch(value)
                    if url is None and not self._plain_value(value):
                        return None
            lname = name.strip(_CSS_SPACE).lower()
            value = value.strip(_CSS_SPACE)
            if lname not in self.policy.css_properties:
                self.issues.append(
                    CssIssue(ReasonCode.CSS_PROPERTY_NOT_ALLOWED, lname, value[:200])
                )
                continue
            if local is not None:
                value = self._local_url(local)
            elif url is not None:
                try:
                    value = f"url({self._url(url.group(1))})"
                except _Reject as exc:
                    self.issues.append(CssIssue(exc.reason, lname, exc.detail))
                    continue
            kept.append(f"{lname}:{value}")
        return ";".join(kept)

    @staticmethod
    def _plain_value(value: str) -> bool:
        """Allowlisted functions of plain tokens, or plain tokens and simple strings."""
        if _STRING_VALUE.fullmatch(value):
            return True
        return _DECLARATION_FUNCTIONS.fullmatch(value) is not None and all(
            f.lower() in _PLAIN_FUNCTIONS for f in _FUNCTION_NAME.findall(value)
        )

    def _local_url(self, match: re.Match[str]) -> str:
        """``url(#id)`` as the tokenizer path writes it (property tests check both)."""
        return f"url({self.rewrite(match.group(1))})"

    def _simple_selectors(self, text: str, scope: str | None) -> str | None:
        """A tokenizer-free path for plain selector lists, else ``None`` (as ``_selector``)."""
        if not _SIMPLE_SELECTORS.fullmatch(text):
            return None
        pseudo = t.CSS_PSEUDO_CLASSES
        if ":" in text and not all(n.lower() in pseudo for n in _PSEUDO_NAME.findall(text)):
            return None
        if self.policy.id_prefix is not None:
            text = _SELECTOR_NAME.sub(lambda m: m.group(1) + self._prefix(m.group(2)), text)
        groups = [group.strip(_CSS_SPACE) for group in text.split(",")]
        if scope is not None:
            # No selector accepted here can already end with ``:where(...)``.
            groups = [group + scope for group in groups]
        return ",".join(groups)

    def _simple_stylesheet(self, text: str, scope: str | None) -> str | None:
        """A tokenizer-free path for sheets of plain rules, else ``None``.

        Only ``selectors{declarations}`` rules separated by whitespace, with
        selectors ``_simple_selectors`` accepts and bodies
        ``_simple_declarations`` accepts: no at-rule, comment, string, escape
        or nesting, where it gives what the tinycss2 path gives (a property
        test checks the two agree). Issues it noted are taken back on ``None``.
        """
        before = len(self.issues)
        out: list[str] = []
        pos = len(text) - len(text.lstrip(" \t\n"))
        tick = self.budget.tick
        while pos < len(text):
            tick()
            rule = _SHEET_RULE.match(text, pos)
            selector = body = None
            if rule is not None:
                selector = self._simple_selectors(rule.group(1), scope)
                if selector is not None:
                    body = self._simple_declarations(rule.group(2))
            if rule is None or body is None:
                del self.issues[before:]
                return None
            if body:
                out.append(f"{selector}{{{body}}}")
            pos = rule.end()
        return "".join(out)

    # --- selectors --------------------------------------------------------

    def _prefix(self, name: str) -> str:
        prefix = self.policy.id_prefix
        if prefix is None or name == prefix or name.startswith(prefix + "-"):
            return name
        return f"{prefix}-{name}"

    def _compound_tokens(self, tokens: list[Any]) -> list[Any]:
        """Validate one selector list's tokens and rewrite ids and classes."""
        out: list[Any] = []
        i = 0
        n = len(tokens)
        while i < n:
            tok = tokens[i]
            if isinstance(tok, ast.WhitespaceToken | ast.IdentToken):
                out.append(tok)
            elif isinstance(tok, ast.HashToken):
                if not tok.is_identifier:
                    raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, f"selector #{tok.value}")
                name = self._prefix(tok.value)
                out.append(ast.HashToken(tok.source_line, tok.source_column, name, True))
            elif isinstance(tok, ast.LiteralToken) and tok.value in _SELECTOR_LITERALS:
                out.append(tok)
                nxt = tokens[i + 1] if i + 1 < n else None
                if tok.value == "." and isinstance(nxt, ast.IdentToken):
                    out.append(ast.IdentToken(nxt.source_line, nxt.source_column,
                                              self._prefix(nxt.value)))  # fmt: skip
                    i += 1
                elif tok.value == ":":
                    i += 1
                    out.extend(self._pseudo(nxt))
                elif tok.value == ".":
                    raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, "bad class selector")
            elif isinstance(tok, ast.SquareBracketsBlock):
                for part in tok.content:
                    ok = isinstance(
                        part, ast.WhitespaceToken | ast.IdentToken | ast.StringToken
                    ) or (isinstance(part, ast.LiteralToken) and part.value in _ATTR_LITERALS)
                    if not ok:
                        raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, "attribute selector")
                out.append(tok)
            else:
                raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, f"selector token {_repr(tok)}")
            i += 1
        return out

    def _pseudo(self, tok: Any) -> list[Any]:
        if isinstance(tok, ast.IdentToken) and tok.lower_value in t.CSS_PSEUDO_CLASSES:
            return [tok]
        if isinstance(tok, ast.FunctionBlock) and tok.lower_name in t.CSS_PSEUDO_FUNCTIONS:
            if tok.lower_name.startswith("nth-"):
                for part in tok.arguments:
                    ok = isinstance(
                        part,
                        ast.WhitespaceToken | ast.IdentToken | ast.NumberToken | ast.DimensionToken,
                    ) or (isinstance(part, ast.LiteralToken) and part.value in {"+", "-"})
                    if not ok:
                        raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, f":{tok.name}()")
                return [tok]
            args = self._compound_tokens(list(tok.arguments))
            return [ast.FunctionBlock(tok.source_line, tok.source_column, tok.name, args)]
        raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, f"pseudo-class {_repr(tok)}")

    def _selector(self, prelude: list[Any], scope: str | None) -> str:
        tokens = self._compound_tokens(prelude)
        groups: list[list[Any]] = [[]]
        for tok in tokens:
            if isinstance(tok, ast.LiteralToken) and tok.value == ",":
                groups.append([])
            else:
                groups[-1].append(tok)
        selectors = []
        for group in groups:
            text = _serialize(group)
            if not text:
                raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, "empty selector")
            if text[-1] in ">+~":
                raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, "dangling combinator")
            if scope is not None and not text.endswith(scope):
                text += scope
            selectors.append(text)
        return ",".join(selectors)

    # --- stylesheets ------------------------------------------------------

    def _rules(self, rules: Iterable[Any], scope: str | None, depth: int) -> list[str]:
        out: list[str] = []
        tick = self.budget.tick
        for rule in rules:
            tick()
            if isinstance(rule, ast.QualifiedRule):
                try:
                    selector = self._selector(list(rule.prelude), scope)
                except _Reject as exc:
                    self.issues.append(CssIssue(exc.reason, "rule", exc.detail))
                    continue
                items = tinycss2.parse_declaration_list(
                    rule.content, skip_comments=True, skip_whitespace=True
                )
                decls = self._declarations(items)
                if decls:
                    out.append(f"{selector}{{{';'.join(decls)}}}")
            elif isinstance(rule, ast.AtRule):
                kept = self._at_rule(rule, scope, depth)
                if kept is not None:
                    out.append(kept)
            elif isinstance(rule, ast.ParseError):
                self.issues.append(CssIssue(ReasonCode.CSS_INVALID, "", rule.message))
        return out

    def _at_rule(self, rule: Any, scope: str | None, depth: int) -> str | None:
        keyword = rule.lower_at_keyword
        if rule.content is not None and depth < 4:
            if keyword == "media":
                try:
                    prelude = self._media_prelude(rule.prelude)
                except _Reject as exc:
                    self.issues.append(CssIssue(exc.reason, "@media", exc.detail))
                    return None
                inner = tinycss2.parse_rule_list(
                    rule.content, skip_comments=True, skip_whitespace=True
                )
                body = self._rules(inner, scope, depth + 1)
                return f"@media {prelude}{{{''.join(body)}}}" if body else None
            if keyword in _KEYFRAMES:
                return self._keyframes(rule)
        self.issues.append(CssIssue(ReasonCode.CSS_RULE_NOT_ALLOWED, "@" + keyword, ""))
        return None

    def _media_prelude(self, prelude: Sequence[Any]) -> str:
        for tok in prelude:
            if isinstance(tok, ast.ParenthesesBlock):
                self._media_prelude(tok.content)
            elif not (
                isinstance(
                    tok,
                    ast.WhitespaceToken
                    | ast.IdentToken
                    | ast.NumberToken
                    | ast.DimensionToken
                    | ast.PercentageToken,
                )
                or (isinstance(tok, ast.LiteralToken) and tok.value in _MEDIA_LITERALS)
            ):
                raise _Reject(ReasonCode.CSS_RULE_NOT_ALLOWED, f"media query token {_repr(tok)}")
        return _serialize(list(prelude))

    def _keyframes(self, rule: Any) -> str | None:
        name = [tok for tok in rule.prelude if not isinstance(tok, ast.WhitespaceToken)]
        if len(name) != 1 or not isinstance(name[0], ast.IdentToken | ast.StringToken):
            self.issues.append(CssIssue(ReasonCode.CSS_RULE_NOT_ALLOWED, "@keyframes", "name"))
            return None
        frames: list[str] = []
        for frame in tinycss2.parse_rule_list(rule.content, skip_comments=True,
                                              skip_whitespace=True):  # fmt: skip
            if not isinstance(frame, ast.QualifiedRule) or not all(
                isinstance(tok, ast.WhitespaceToken | ast.IdentToken | ast.PercentageToken)
                or (isinstance(tok, ast.LiteralToken) and tok.value == ",")
                for tok in frame.prelude
            ):
                self.issues.append(CssIssue(ReasonCode.CSS_RULE_NOT_ALLOWED, "keyframe", ""))
                continue
            items = tinycss2.parse_declaration_list(
                frame.content, skip_comments=True, skip_whitespace=True
            )
            decls = self._declarations(items)
            if decls:
                frames.append(f"{_serialize(frame.prelude)}{{{';'.join(decls)}}}")
        ident = tinycss2.serialize(name)
        return f"@keyframes {ident}{{{''.join(frames)}}}" if frames else None

    def stylesheet(self, text: str, scope_class: str | None) -> str:
        """Sanitize a ``<style>`` element's text; ``scope_class`` confines selectors."""
        key = (f"sheet {scope_class}", text)
        hit = self.cache.get(key)
        if hit is not None:
            self.issues.extend(hit[1])
            return hit[0] or ""
        before = len(self.issues)
        css = self._stylesheet(text, scope_class)
        self._remember(key, css, tuple(self.issues[before:]))
        return css

    def _stylesheet(self, text: str, scope_class: str | None) -> str:
        scope = None if scope_class is None else _scope_selector(scope_class)
        simple = self._simple_stylesheet(text, scope)
        if simple is not None:
            return simple
        if _too_nested(text):
            self.issues.append(
                CssIssue(ReasonCode.CSS_INVALID, "style", "brackets nested too deeply")
            )
            return ""
        rules = tinycss2.parse_stylesheet(text, skip_comments=True, skip_whitespace=True)
        return _no_lt("".join(self._rules(rules, scope, 0)))


@functools.lru_cache(maxsize=256)
def _scope_selector(scope: str) -> str:
    """``:where(.s,.s *)``: confines a rule to the SVG's elements and their ``<use>`` clones.

    Zero specificity. The class is on the root and on every ``<use>`` target
    (see ``Sanitizer._mark_scope``), so a clone in a use element's shadow tree,
    which has no ancestor outside that tree, still matches.
    """
    ident = tinycss2.serialize_identifier(scope)
    return f":where(.{ident},.{ident} *)"


def _repr(tok: Any) -> str:
    if tok is None:
        return "end of selector"
    return str(getattr(tok, "value", None) or getattr(tok, "type", type(tok).__name__))


def _short(item: Any) -> str:
    text = str(tinycss2.serialize(item.value)).strip()
    return text[:200]
