"""The provider protocol: a request in, a model's raw answer out."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Annotated, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from chatsvg_core._logctx import VarScope
from chatsvg_core._sync import run_sync
from chatsvg_core.generate._request import GenerationRequest

__all__ = [
    "PROGRESS_HOOK",
    "Provider",
    "ProviderOutput",
    "TokenUsage",
    "generate_sync",
    "progress_reporting",
    "report_progress",
]

Count = Annotated[int, Field(ge=0)]


class TokenUsage(BaseModel):
    """Tokens the provider reports (``None`` where it does not say)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    total_tokens: Count | None = None


class ProviderOutput(BaseModel):
    """A model's raw answer, before SVG extraction and sanitizing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(description="The answer as the model wrote it (may hold prose, fences).")
    model: str = Field(description="The model that answered, as the provider names it.")
    provider: str = Field(description="The provider's name, e.g. ``openai-compatible``.")
    # One shared default: the model is frozen, and a factory built (and
    # validated) a fresh one for every answer that reports no usage.
    usage: TokenUsage = Field(default=TokenUsage())
    latency_s: Annotated[float, Field(ge=0)] = Field(
        description="Seconds from sending the request to having the whole answer."
    )
    finish_reason: str | None = Field(
        default=None,
        description="Why the model stopped (``stop``, ``length``...); ``length`` often "
        "means a truncated SVG; ``svg_complete``: the provider closed a streamed answer "
        "itself once it held a complete SVG.",
    )


@runtime_checkable
class Provider(Protocol):
    """Anything that turns a :class:`GenerationRequest` into a model's answer.

    Implementations raise only :class:`~chatsvg_core.errors.ProviderTransientError`
    (worth retrying) or :class:`~chatsvg_core.errors.ProviderPermanentError`
    (not), never a transport library's own exceptions, and never put a secret
    in an error. Retrying is the caller's job (the retry policy), not the
    provider's.
    """

    name: str
    """A short name used in errors, logs and :attr:`ProviderOutput.provider`."""

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        """Ask the model once for ``request``; return its raw answer."""
        ...


def generate_sync(provider: Provider, request: GenerationRequest) -> ProviderOutput:
    """Call ``provider.generate(request)`` from sync code (scripts, Celery, Jupyter).

    Runs on the library's one event-loop thread per process
    (:func:`chatsvg_core._sync.run_sync`). A provider used this way must create
    its own HTTP client (the default) or be given one created on that same loop;
    an ``httpx.AsyncClient`` built on another loop cannot be shared with it.
    """
    return run_sync(provider.generate, request)


ProgressHook = Callable[[int, int], object]
"""``hook(tokens, chars)``: how much of the answer has streamed in so far."""

_PROGRESS: ContextVar[ProgressHook | None] = ContextVar("chatsvg_progress", default=None)
PROGRESS_HOOK: ContextVar[ProgressHook | None] = _PROGRESS
"""The variable :func:`progress_reporting` sets, for the engine's attempt, which
sets and resets it itself (a scope object and its two calls per job cost more)."""


def progress_reporting(hook: ProgressHook | None) -> AbstractContextManager[None]:
    """Send :func:`report_progress` calls made in this context (this task) to ``hook``.

    The engine wraps each provider call in it and turns reports into
    ``progress`` events. A hook that raises is ignored: progress is advisory.
    """
    return VarScope(_PROGRESS, hook)


def report_progress(tokens: int, chars: int) -> None:
    """Called by providers while an answer streams in: ``tokens`` and ``chars`` so far.

    Does nothing outside :func:`progress_reporting`; a provider may call it as
    often as it likes (the OpenAI-compatible provider reports twice a second).
    """
    hook = _PROGRESS.get()
    if hook is None:
        return
    try:
        hook(tokens, chars)
    except Exception:  # advisory: never let an observer break a generation
        return
