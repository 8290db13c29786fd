"""Generation: prompt validation, providers, and finding the SVG in a model's answer.

- :class:`GenerationRequest` and :class:`Pricing` (what to draw, what it costs);
- :class:`PromptPolicy` (refuse or normalise a prompt, with host content rules);
- :class:`Provider` (the protocol), :class:`OpenAICompatibleProvider` (httpx),
  :class:`OfflineSketchProvider` (no network; not a model), :func:`generate_sync`;
- :func:`extract_svg` (locate the SVG text; the sanitizer runs after it).
"""

from __future__ import annotations

from chatsvg_core.generate._answer import extract_answer
from chatsvg_core.generate._extract import MAX_ANSWER_CHARS, extract_svg
from chatsvg_core.generate._offline import OfflineSketchProvider, sketch_svg
from chatsvg_core.generate._openai import (
    DEFAULT_SYSTEM_PROMPT,
    ENV_FIELDS,
    OPENAI_BASE_URL,
    OpenAICompatibleProvider,
    OpenAICompatibleSettings,
)
from chatsvg_core.generate._prompt import (
    BannedTerms,
    ContentRule,
    PromptPolicy,
    fold_prompt,
    normalize_prompt,
)
from chatsvg_core.generate._provider import (
    Provider,
    ProviderOutput,
    TokenUsage,
    generate_sync,
    progress_reporting,
    report_progress,
)
from chatsvg_core.generate._request import Detail, GenerationRequest, Pricing

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "ENV_FIELDS",
    "MAX_ANSWER_CHARS",
    "OPENAI_BASE_URL",
    "BannedTerms",
    "ContentRule",
    "Detail",
    "GenerationRequest",
    "OfflineSketchProvider",
    "OpenAICompatibleProvider",
    "OpenAICompatibleSettings",
    "Pricing",
    "PromptPolicy",
    "Provider",
    "ProviderOutput",
    "TokenUsage",
    "extract_answer",
    "extract_svg",
    "fold_prompt",
    "generate_sync",
    "normalize_prompt",
    "progress_reporting",
    "report_progress",
    "sketch_svg",
]
