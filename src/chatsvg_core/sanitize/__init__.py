"""The SVG sanitizer: untrusted SVG in, markup safe in every browser context out.

``sanitize_svg(data)`` parses with a hardened lxml parser (no DTD, no entities,
no network, limits checked while parsing), keeps only allowlisted SVG
elements, attributes, URLs and CSS, and writes canonical XML that is also
safe to inline in HTML. Everything removed or rewritten is in the report.
Input that cannot be made safe raises :class:`chatsvg_core.errors.SVGRejected`
with a :class:`ReasonCode`. See ``docs/sanitizer.md``.
"""

from __future__ import annotations

from chatsvg_core.sanitize._policy import PRESET_NAMES, SanitizePolicy
from chatsvg_core.sanitize._reasons import Action, ReasonCode
from chatsvg_core.sanitize._report import ReportEntry, SanitizedSVG, SanitizeReport
from chatsvg_core.sanitize._sanitizer import Sanitizer, sanitize_svg
from chatsvg_core.sanitize._visible import is_blank

__all__ = [
    "PRESET_NAMES",
    "Action",
    "ReasonCode",
    "ReportEntry",
    "SanitizePolicy",
    "SanitizeReport",
    "SanitizedSVG",
    "Sanitizer",
    "is_blank",
    "sanitize_svg",
]
