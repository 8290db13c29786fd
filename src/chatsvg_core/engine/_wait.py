"""Waiting for a job: a change feed where the store has one, a backoff poll elsewhere."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict, JsonValue

from chatsvg_core._clock import utc
from chatsvg_core.jobs import Job, JobStatus

__all__ = ["JobChangeFeed", "JobUpdate", "UpdateKind", "update_for"]

UpdateKind = Literal["queued", "running", "retrying", "succeeded", "failed", "refunded"]

POLL_FIRST = 0.05
"""Seconds before the first re-read when the store has no change feed."""
POLL_MAX = 2.0
"""The longest pause between re-reads without a change feed (backoff x1.6 up to here)."""
FEED_SAFETY = 15.0
"""With a change feed, re-read at least this often anyway (a lost notification costs this)."""


@runtime_checkable
class JobChangeFeed(Protocol):
    """A store that can wake a waiter when a job changes (PostgreSQL: LISTEN/NOTIFY).

    Optional: stores without it are polled with a backoff.
    """

    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[asyncio.Event | None]:
        """An event set after a commit that changed ``job_id`` (``None``: no feed now)."""
        ...


class JobUpdate(BaseModel):
    """One step of a job's life as a waiter sees it, ready to forward as a server-sent event.

    ``kind``: ``queued`` (waiting for its first run), ``running`` (a worker
    holds attempt ``attempt``), ``retrying`` (an attempt failed and the job
    waits to run again; ``error_code`` says why), ``succeeded``, ``failed``
    (``error_code``: e.g. ``cancelled``, ``insufficient_credits``),
    ``refunded`` (after ``failed``: the credits came back; ``amount``).

    Updates are observed states, not a log: two changes between looks show
    as the later one. ``version`` grows with every change of the job, so a
    host can use it as the SSE ``id``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: UpdateKind
    job_id: str
    status: JobStatus
    attempt: int
    version: int
    at: Annotated[datetime, AfterValidator(utc)]
    error_code: str | None = None
    amount: int | None = None

    def to_sse(self) -> str:
        """This update as one server-sent event (``id``, ``event``, ``data`` lines)."""
        data: dict[str, JsonValue] = json.loads(self.model_dump_json())
        return f"id: {self.version}\nevent: {self.kind}\ndata: {json.dumps(data)}\n\n"


def update_for(job: Job) -> JobUpdate:
    """The update that describes ``job`` as it stands."""
    kind: UpdateKind
    if job.status is JobStatus.RUNNING:
        kind = "running"
    elif job.status is JobStatus.SUCCEEDED:
        kind = "succeeded"
    elif job.status is JobStatus.FAILED:
        kind = "failed"
    elif job.attempt > 0:
        kind = "retrying"
    else:
        kind = "queued"
    code = job.last_error.code if job.last_error is not None and kind != "succeeded" else None
    fields: dict[str, Any] = {"error_code": code} if kind in ("retrying", "failed") else {}
    return JobUpdate(
        kind=kind,
        job_id=job.id,
        status=job.status,
        attempt=job.attempt,
        version=job.version,
        at=job.updated_at,
        **fields,
    )
