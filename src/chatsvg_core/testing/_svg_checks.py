"""An independent checker for sanitized SVG: lists every forbidden construct it finds.

It does not reuse the sanitizer's code paths (only its spec tables), so a
property test ``violations(sanitize(x)) == []`` checks the sanitizer against a
second, simpler reading of the rules.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from chatsvg_core.sanitize import SanitizePolicy
from chatsvg_core.sanitize import _tables as t

__all__ = ["assert_svg_safe", "svg_safety_violations"]

_SVG = "{" + t.SVG_NS + "}"
_RAW_FORBIDDEN = ("<!--", "<![CDATA[", "<?", "<!DOCTYPE", "<!ENTITY", "<!doctype")
_SQUASH = re.compile(r"[\x00-\x20\x7f]+")
_SCHEMES = ("javascript:", "vbscript:", "livescript:", "mocha:")
_RASTER = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*$", re.S)
_CSS_FORBIDDEN = ("expression(", "behavior", "-moz-binding")
# At-rules, each starting at an ``@`` that is not escaped (an even number of
# backslashes before it, none included).
_AT_RULES = {
    rule: re.compile(r"(?<!\\)(?:\\\\)*" + re.escape(rule), re.I)
    for rule in ("@import", "@font-face")
}
# No script scheme is looked for in CSS text: a URL in CSS only ever stands
# inside ``url(``, and every ``url()`` not to ``#id`` is flagged on its own. The
# fuzzer found the sanitizer's safe outputs flagged for the letters
# ``javascript:`` in a media feature name (``(min-widjavascript:th:1px)``), an
# invalid paint (``fill="+FFjavascript:FE"``) and a fragment (``url(#javascript:g)``).
# Attributes whose value a browser may read as (or turn into) a URL; the
# animation values only on animation elements (``<feColorMatrix values>`` is
# a list of numbers, which a browser never reads as a URL).
_URL_CARRIERS = t.HREF_ATTRIBUTES | t.URL_VALUE_ATTRIBUTES | {"style"}
_ANIMATION_VALUES = frozenset({"values", "from", "to", "by"})
# ``url(`` right after a name code point is the end of another name
# (``2¬url(`` is a dimension and a bracket, ``-url(`` another function), and
# right after ``#`` or ``@`` the end of a hash or an at-keyword (``#url`` and a
# bracket: the fuzzer found that flagged in CI), never a URL; after anything
# else, a backslash included, it may be one.
_URL = re.compile(r"(?<![A-Za-z0-9_\-\u0080-\U0010ffff#@])url\(\s*([\"']?)\s*(.)", re.I)
# A CSS string (to its closing quote, or to the end of the line as CSS reads an
# unclosed one), optionally as the argument of ``url(``; or an escape outside a
# string, matched first so that an escaped quote (``\"``) starts no string: the
# fuzzer found ``font-family:\"1";fill:url(+g)``, where ``url(+g)`` is inside
# the string that the second quote opens, flagged.
_CSS_STRING = re.compile(
    r"""(\\[\s\S])|((?<![A-Za-z0-9_\-\u0080-\U0010ffff#@])url\(\s*+)?"""
    r"""("(?:[^"\\\n]|\\[\s\S])*+"?|'(?:[^'\\\n]|\\[\s\S])*+'?)""",
    re.I,
)

# ``url(`` and its argument up to the closing bracket, as CSS tokenizes it: a
# quoted string, or an unquoted run that ends at the first unescaped ``)``
# (a bad url consumes as far as that too).
_URL_ARGUMENT = re.compile(
    r"""(?<![A-Za-z0-9_\-\u0080-\U0010ffff#@])url\(\s*"""
    r"""(?:"(?:[^"\\\n]|\\[\s\S])*+"?|'(?:[^'\\\n]|\\[\s\S])*+'?|(?:[^)\\]|\\[\s\S])*+)"""
    r"""\s*\)?""",
    re.I,
)

_CANONICAL_NS = {None: t.SVG_NS, "xlink": t.XLINK_NS}


def _squash(value: str) -> str:
    return _SQUASH.sub("", value).lower()


def _outside_strings(css: str) -> str:
    """``css`` with the text of every string emptied, except a ``url("...")`` argument.

    What a string holds is a name (``font-family:"url(x)"``), never a rule or a
    fetch; only the string argument of ``url(`` is a URL.
    """
    return _CSS_STRING.sub(
        lambda m: m.group() if m.group(3) is None or m.group(2) else m.group(3)[0] * 2, css
    )


def _css_problems(where: str, css: str, *, at_rules: bool = True) -> list[str]:
    problems = []
    if "<" in css:
        problems.append(f"{where}: '<' in CSS")
    css = _outside_strings(css)
    problems += [f"{where}: url() not to #id" for m in _URL.finditer(css) if m.group(2) != "#"]
    # Each url() was judged just above; its argument is one token to a browser
    # (a url token, or a string), never a rule or a property, so the words are
    # looked for outside it: the fuzzer found a safe output flagged for the
    # fragment ``url(#g@import)``.
    css = _URL_ARGUMENT.sub("url()", css)
    low = _squash(css)
    problems += [f"{where}: {bad!r} in CSS" for bad in _CSS_FORBIDDEN if bad in low]
    # A rule starts only at an at-keyword: an ``@`` escaped by a backslash is a
    # letter of an ident (the fuzzer found ``fill:\@font-face19``, an invalid
    # paint, flagged). Read in the text as written, not squashed, since a
    # squashed ``\ @import`` (an escaped space, then a real rule) would look escaped.
    if at_rules:
        problems += [
            f"{where}: {at!r} in CSS" for at, rule in _AT_RULES.items() if rule.search(css)
        ]
    return problems


def svg_safety_violations(markup: str, policy: SanitizePolicy | None = None) -> list[str]:
    """Every rule that ``markup`` (a sanitizer output) breaks; empty when safe."""
    policy = policy or SanitizePolicy.default()
    problems = [f"raw {s!r} in output" for s in _RAW_FORBIDDEN if s in markup]
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(markup.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        return [*problems, f"not well-formed: {exc}"]
    if root.tag != _SVG + "svg":
        problems.append(f"root is {root.tag}")
    el: Any
    for el in root.iter():
        if not isinstance(el.tag, str):
            problems.append(f"non-element node {el!r}")
            continue
        # Canonical namespaces: an HTML parser only knows the default SVG
        # namespace and the literal ``xlink:`` prefix, so any other declaration
        # (or one below the root) reads differently inline.
        inherited = {} if el is root else el.getparent().nsmap
        for prefix, uri in el.nsmap.items():
            if inherited.get(prefix) != uri and (
                el is not root or _CANONICAL_NS.get(prefix) != uri
            ):
                problems.append(f"namespace declaration {prefix or 'xmlns'}={uri!r} on <{el.tag}>")
        if not el.tag.startswith(_SVG):
            problems.append(f"foreign element {el.tag}")
            continue
        name = el.tag[len(_SVG) :]
        if name not in policy.elements:
            problems.append(f"element <{name}> not allowed")
            continue
        own, presentation = t.ELEMENT_ATTRIBUTES[name]
        allowed = t.CORE_ATTRIBUTES | own | policy.extra_attributes
        if presentation:
            allowed |= t.PRESENTATION_ATTRIBUTES | t.CONDITIONAL_ATTRIBUTES
        for key, value in el.items():
            where = f"<{name} {key}>"
            if key not in allowed or (
                key not in policy.attributes and key not in policy.extra_attributes
            ):
                problems.append(f"{where} not allowed")
            if key.lower().startswith("on"):
                problems.append(f"{where} event handler")
            css_valued = key == "style" or key in t.PRESENTATION_ATTRIBUTES
            low = _squash(_outside_strings(value) if css_valued else value)
            carrier = key in _URL_CARRIERS or (
                key in _ANIMATION_VALUES and name in t.ANIMATION_ELEMENTS
            )
            # A fragment (``#id``) only ever names an element of the same
            # document, whatever text follows the ``#`` (``#g3javascript:``).
            fragment = key in t.HREF_ATTRIBUTES and low.startswith("#")
            scheme = not css_valued and any(s in low for s in _SCHEMES)
            if carrier and not fragment and scheme:
                problems.append(f"{where} script URL")
            if key in t.HREF_ATTRIBUTES:
                stripped = value.strip()
                ok = stripped.startswith("#") or (
                    name in ("image", "feImage") and bool(_RASTER.match(stripped))
                )
                if not ok and name in ("image", "feImage") and policy.image_hosts:
                    ok = stripped.startswith(tuple(f"{s}://" for s in policy.image_schemes))
                if not ok and name == "a" and policy.link_schemes:
                    ok = stripped.split(":", 1)[0].lower() in policy.link_schemes
                if not ok:
                    problems.append(f"{where} URL {value[:60]!r}")
            elif ("data:" in low or "url(" in low) and key in t.PRESENTATION_ATTRIBUTES:
                # One property's value: a rule cannot start there, so only what
                # a value can do is checked (the fuzzer found the invalid paint
                # ``fill="@importredata:d"`` flagged).
                problems += _css_problems(where, value, at_rules=False)
            if key == "style":
                problems += _css_problems(where, value)
        if name == "style":
            problems += _css_problems("<style>", el.text or "")
            if len(el):
                problems.append("markup inside <style>")
        if name in ("title", "desc") and len(el):
            problems.append(f"markup inside <{name}>")
        if name in t.ANIMATION_ELEMENTS:
            target = el.get("attributeName")
            if target is not None:
                local = _squash(target).rpartition(":")[2]
                if local.startswith("on") or local in t.ANIMATION_FORBIDDEN_TARGETS:
                    problems.append(f"<{name}> animates {target!r}")
            for key in ("values", "from", "to", "by"):
                value = el.get(key)
                if value is not None and re.search(r"[a-z][a-z0-9+.-]*:", _squash(value)):
                    problems.append(f"<{name} {key}> carries a URL scheme")
    return problems


def assert_svg_safe(markup: str, policy: SanitizePolicy | None = None) -> None:
    """Raise ``AssertionError`` listing every violation found in ``markup``."""
    problems = svg_safety_violations(markup, policy)
    if problems:
        raise AssertionError("unsafe SVG:\n  " + "\n  ".join(problems) + f"\n{markup[:2000]}")
