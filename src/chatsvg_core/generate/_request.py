"""What a host asks for (:class:`GenerationRequest`) and what it costs (:class:`Pricing`)."""

from __future__ import annotations

from enum import StrEnum
from fractions import Fraction
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = ["Detail", "GenerationRequest", "Pricing"]

MIN_SIDE = 16
MAX_SIDE = 4096

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
MODEL_NAME_PATTERN = r"^[!-~]{1,512}$"
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
# Model ids as servers name them: ``gpt-4o``, ``qwen2.5-coder:7b`` (Ollama),
# ``meta-llama/Llama-3.1-8B-Instruct`` (vLLM), ``hf.co/org/repo:Q4_K_M``, and the
# file path llama.cpp reports (``/models/x.gguf``, ``C:\\models\\x.gguf``):
# printable ASCII without blanks, so an id is safe in logs, headers and keys.
ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN)]


class Detail(StrEnum):
    """How much drawing the host asks for; it sets the price and guides the model."""

    SIMPLE = "simple"
    """An icon-like picture: few shapes, flat colours."""
    STANDARD = "standard"
    """An illustration with a background and a handful of objects."""
    DETAILED = "detailed"
    """A richer scene: gradients, many shapes; longer answers, so it costs more."""


class GenerationRequest(BaseModel):
    """One picture to draw.

    The model is plain data and does **not** validate the prompt's text: the
    engine runs :meth:`PromptPolicy.check <chatsvg_core.generate.PromptPolicy.check>`
    at submit time, which refuses bad prompts with
    :class:`~chatsvg_core.errors.PromptRejected` and returns a request whose
    prompt is normalised. Every field is JSON-native (no floats), so the
    request hashes canonically for idempotency.

    >>> r = GenerationRequest(prompt="a lighthouse at dusk", width=800, height=600)
    >>> r.aspect_ratio
    '4:3'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(description="What to draw, as the user wrote it (then normalised).")
    style: Slug | None = Field(
        default=None,
        strict=True,
        description="An optional style slug, e.g. ``flat``, ``line-art``, ``isometric``.",
    )
    # Strict: no lax coercion of "512", 512.0 or True to 512. A JSON client
    # sending a string has a bug worth telling it about, and one spelling per
    # value keeps the idempotency fingerprint of what the client sent honest.
    width: int = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE, strict=True, description="Pixels.")
    height: int = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE, strict=True, description="Pixels.")
    detail: Detail = Field(default=Detail.STANDARD, description="Sets the price; see Pricing.")
    model: ModelName | None = Field(
        default=None,
        strict=True,
        description="A model hint: the provider uses it instead of its configured model. "
        "Any id a server lists (paths included): printable ASCII, no blanks, up to 512.",
    )

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_is_text(cls, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError("prompt must be a string")
        return value

    @property
    def aspect_ratio(self) -> str:
        """``width:height`` in lowest terms, e.g. ``16:9``."""
        ratio = Fraction(self.width, self.height)
        return f"{ratio.numerator}:{ratio.denominator}"


class Pricing(BaseModel):
    """The cost rule: how many credits one request is charged.

    ``cost(request) = per_detail[request.detail] + per_model.get(request.model, 0)``

    The price depends only on fields the host chose before the job ran (never on
    the model's answer), so the engine can charge it once, up front, and refund
    exactly that amount on final failure. Retries are not charged again.

    >>> Pricing().cost(GenerationRequest(prompt="a cat"))
    2
    >>> Pricing(per_model={"gpt-4o": 3}).cost(GenerationRequest(prompt="a cat", model="gpt-4o"))
    5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_detail: dict[Detail, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {Detail.SIMPLE: 1, Detail.STANDARD: 2, Detail.DETAILED: 4},
        description="Credits for each level of detail (all levels must be priced, each >= 1).",
    )
    per_model: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Extra credits when the request names this model hint.",
    )

    @field_validator("per_detail")
    @classmethod
    def _every_detail_priced(cls, value: dict[Detail, int]) -> dict[Detail, int]:
        missing = set(Detail) - set(value)
        if missing:
            raise ValueError(f"no price for detail level(s): {sorted(missing)}")
        return value

    def cost(self, request: GenerationRequest) -> int:
        """Credits to charge for ``request``: always a positive integer."""
        extra = self.per_model.get(request.model, 0) if request.model is not None else 0
        return self.per_detail[request.detail] + extra
