"""Regression tests for what the browser runs found in the sanitizer.

Each test pins one finding of the Chromium proofs (fidelity or XSS) as a
small, browser-free example, so the sanitizer's own suite can see it. A
finding still open in the sanitizer is a strict xfail: CI stays green, the
gap stays visible, and fixing it turns the xfail into a failure that asks for
the mark to be removed.
"""

from __future__ import annotations

from chatsvg_core.sanitize import sanitize_svg

SVG = 'xmlns="http://www.w3.org/2000/svg"'


def test_unclosed_url_reference_at_end_of_value_is_kept() -> None:
    """Fidelity finding (fixed in the sanitizer at 7f73023): logos/waffle-icon.svg.

    Two paths have ``fill="url(#patternwaffle-pattern-1"`` (no closing parenthesis).
    CSS Syntax reads an unclosed ``url(`` at the end of input as a url token (a parse
    error, not an invalid value) and Chromium paints with the pattern; the first
    sanitizer dropped the whole fill, changing 2042 px of the icon.
    """
    src = (
        f'<svg {SVG} viewBox="0 0 10 10"><defs><pattern id="p" width="2" height="2"'
        ' patternUnits="userSpaceOnUse"><rect width="1" height="1"/></pattern></defs>'
        '<rect width="10" height="10" fill="url(#p"/></svg>'
    )
    out = sanitize_svg(src).svg
    assert 'fill="url(#p)"' in out or 'fill="url(#p"' in out, out
