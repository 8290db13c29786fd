"""From a provider's output to the SVG text: extraction plus what ``finish_reason`` says."""

from __future__ import annotations

from chatsvg_core.errors import NoSVGFound, TruncatedSVG
from chatsvg_core.generate._extract import MAX_ANSWER_CHARS, extract_svg
from chatsvg_core.generate._provider import ProviderOutput

__all__ = ["extract_answer"]


def extract_answer(output: ProviderOutput, *, max_chars: int = MAX_ANSWER_CHARS) -> str:
    """:func:`extract_svg` on ``output.text``, reading ``finish_reason`` too.

    An answer the server cut off (``finish_reason="length"``) before any
    ``<svg`` appeared is truncated, not SVG-less: a model that spends its
    budget on prose or reasoning may draw next time, so it is the transient
    :class:`~chatsvg_core.errors.TruncatedSVG` (``reason="cut_before_svg"``),
    not the permanent :class:`~chatsvg_core.errors.NoSVGFound`.

    >>> from chatsvg_core.generate import ProviderOutput
    >>> out = ProviderOutput(text="Let me think", model="m", provider="p", latency_s=0,
    ...                      finish_reason="length")
    >>> extract_answer(out)
    Traceback (most recent call last):
    ...
    chatsvg_core.errors.TruncatedSVG: the answer was cut off (finish_reason=length) before any <svg>
    """
    try:
        return extract_svg(output.text, max_chars=max_chars)
    except NoSVGFound as exc:
        if output.finish_reason != "length" or exc.fields.get("reason") != "no_svg":
            raise
        raise TruncatedSVG(
            "the answer was cut off (finish_reason=length) before any <svg>",
            offset=None,
            length=len(output.text),
            reason="cut_before_svg",
        ) from None
