"""The result of sanitizing: clean markup plus a report of every change."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chatsvg_core.sanitize._reasons import Action, ReasonCode

__all__ = ["ReportEntry", "SanitizeReport", "SanitizedSVG"]

NodeKind = Literal[
    "element", "attribute", "url", "css", "comment", "processing_instruction", "text", "id"
]


class ReportEntry(BaseModel):
    """One change: what was removed or rewritten, where, and why.

    Attributes:
        action: ``removed`` or ``rewritten``.
        kind: the kind of node changed (element, attribute, url, css, comment, ...).
        reason: a :class:`ReasonCode`.
        path: where in the input, as a simple XPath of local names
            (``/svg/g[2]/script[1]``).
        line: the input line of the element concerned (``None`` when unknown).
        name: the element, attribute or CSS property/rule concerned.
        detail: the offending value, shortened to at most 200 characters.
    """

    model_config = ConfigDict(frozen=True)

    action: Action
    kind: NodeKind
    reason: ReasonCode
    path: str
    line: int | None = None
    name: str = ""
    detail: str | None = None


class SanitizeReport(BaseModel):
    """Every change the sanitizer made, in document order.

    ``report.model_dump_json()`` gives the JSON form used by ``chatsvg sanitize --report json``.
    """

    model_config = ConfigDict(frozen=True)

    entries: tuple[ReportEntry, ...] = ()
    omitted: int = 0
    """Changes made but not listed: at most 10 000 entries are kept per document."""

    def __len__(self) -> int:
        return len(self.entries) + self.omitted

    def __bool__(self) -> bool:
        return bool(self.entries) or self.omitted > 0

    def counts(self) -> dict[ReasonCode, int]:
        """How many entries there are per reason code."""
        return dict(Counter(e.reason for e in self.entries))

    def by_reason(self, reason: ReasonCode) -> tuple[ReportEntry, ...]:
        """The entries with this reason code."""
        return tuple(e for e in self.entries if e.reason == reason)


class SanitizedSVG(BaseModel):
    """An SVG made safe: ``.svg`` is the clean markup (``str``), ``.report`` the changes.

    Immutable. In Jupyter the object displays as the picture (``_repr_svg_``).

    Example:
        >>> from chatsvg_core.sanitize import sanitize_svg
        >>> out = sanitize_svg('<svg xmlns="http://www.w3.org/2000/svg" onload="x()"/>')
        >>> out.svg
        '<svg xmlns="http://www.w3.org/2000/svg"/>'
        >>> out.changed
        True
    """

    model_config = ConfigDict(frozen=True)

    svg: str
    report: SanitizeReport = SanitizeReport()

    @property
    def changed(self) -> bool:
        """``True`` when anything was removed or rewritten (formatting aside)."""
        return bool(self.report)

    def _repr_svg_(self) -> str:
        return self.svg

    def __str__(self) -> str:
        return self.svg
