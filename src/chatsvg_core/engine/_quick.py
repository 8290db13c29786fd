"""One call from a prompt to a sanitized SVG, for notebooks and experiments."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from chatsvg_core._sync import run_sync
from chatsvg_core.engine._engine import Engine
from chatsvg_core.errors import PermanentError
from chatsvg_core.generate import GenerationRequest, OfflineSketchProvider, Provider
from chatsvg_core.jobs import JobStatus
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
        req = GenerationRequest(prompt=prompt, **request)
        await Ledger(store).grant(_OWNER, engine.pricing.cost(req))
        job = (await engine.submit(_OWNER, None, req)).job
        while job.status is JobStatus.QUEUED:
            await _sleep_until_due(engine, job.run_at)
            job = await engine.process(job.id, "notebook") or await engine.get(job.id)
        result = await engine.result(job.id)
        if result is None:
            error = job.last_error
            message = error.message if error else "the job failed"
            raise PermanentError(
                f"generation failed: {message}",
                job_id=job.id,
                error_code=error.code if error else None,
            )
        return result
    finally:
        await store.aclose()


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
    refused prompts and failed generations.

    >>> generate_svg("a lighthouse at dusk").svg[:4]  # doctest: +SKIP
    '<svg'
    """
    return run_sync(lambda: agenerate_svg(prompt, provider=provider, policy=policy, **request))
