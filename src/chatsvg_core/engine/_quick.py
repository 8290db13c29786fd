"""One call from a prompt to a sanitized SVG, for notebooks and experiments."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from chatsvg_core._sync import run_sync
from chatsvg_core.engine._engine import Engine
from chatsvg_core.errors import ChatSVGError, PermanentError
from chatsvg_core.generate import OfflineSketchProvider, Provider
from chatsvg_core.jobs import JobErrorInfo, JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.retry import RetryPolicy
from chatsvg_core.storage import JobResult
from chatsvg_core.storage.memory import MemoryStore

__all__ = ["agenerate_svg", "generate_svg"]

_OWNER = "notebook"


async def agenerate_svg(
    prompt: str,
    *,
    provider: Provider | None = None,
    policy: RetryPolicy | None = None,
    **request: Any,
) -> JobResult:
    """Async :func:`generate_svg`."""
    store = MemoryStore()
    try:
        engine = Engine(store, None, provider or OfflineSketchProvider(), policy=policy)
        req = engine.prepare({"prompt": prompt, **request})
        await Ledger(store).grant(_OWNER, engine.pricing.cost(req))
        job = (await engine.submit(_OWNER, None, req)).job
        while job.status is JobStatus.QUEUED:
            await _sleep_until_due(engine, job.run_at)
            job = await engine.process(job.id, "notebook") or await engine.get(job.id)
        result = await engine.result(job.id)
        if result is None:
            raise _job_error(job.id, job.last_error)
        return result
    finally:
        await store.aclose()


def _job_error(job_id: str, error: JobErrorInfo | None) -> ChatSVGError:
    """The failure as the error class it was raised as (``SVGRejected``, ``TruncatedSVG``...).

    The job keeps the class name, message and fields; a name this library does
    not define (an unexpected exception) becomes a plain ``PermanentError``.
    """
    if error is None:
        return PermanentError("generation failed: the job failed", job_id=job_id)
    cls = _error_classes().get(error.type)
    fields = {**error.fields, "job_id": job_id}
    if cls is not None and cls.code == error.code:
        return cls(error.message, **fields)
    return PermanentError(f"generation failed: {error.message}", error_code=error.code, **fields)


def _error_classes() -> dict[str, type[ChatSVGError]]:
    found: dict[str, type[ChatSVGError]] = {}
    pending: list[type[ChatSVGError]] = [ChatSVGError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("chatsvg_core."):
            found.setdefault(cls.__name__, cls)
        pending.extend(cls.__subclasses__())
    return found


async def _sleep_until_due(engine: Engine, when: datetime) -> None:
    wait = (when - engine.clock.now()).total_seconds()
    if wait > 0:
        await asyncio.sleep(wait)


def generate_svg(
    prompt: str,
    *,
    provider: Provider | None = None,
    policy: RetryPolicy | None = None,
    **request: Any,
) -> JobResult:
    """Turn ``prompt`` into a sanitized SVG in one call (the full engine, in memory).

    Uses the offline sketch provider unless ``provider`` is given; extra
    keyword arguments are :class:`~chatsvg_core.generate.GenerationRequest`
    fields (``width``, ``style``...). Works in Jupyter (which already runs an
    event loop) and in plain scripts. The result displays as a picture in a
    notebook. Raises :class:`~chatsvg_core.errors.ChatSVGError` subclasses for
    refused prompts and failed generations: a failed job's error keeps its
    class (``SVGRejected``, ``TruncatedSVG``, ``ProviderPermanentError``...),
    message and fields, plus ``job_id``.

    >>> generate_svg("a lighthouse at dusk").svg[:4]  # doctest: +SKIP
    '<svg'
    """
    return run_sync(lambda: agenerate_svg(prompt, provider=provider, policy=policy, **request))
