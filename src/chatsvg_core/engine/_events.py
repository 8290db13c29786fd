"""One observation hook for every transition, charge and refund."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from chatsvg_core._clock import utc

__all__ = ["EngineEvent", "EventHook", "EventKind", "emit"]

log = logging.getLogger("chatsvg_core.engine")


class EventKind(StrEnum):
    """What happened. Values are stable: hosts key metrics and alerts on them."""

    SUBMITTED = "submitted"
    REPLAYED = "replayed"
    CLAIMED = "claimed"
    CHARGED = "charged"
    PROGRESS = "progress"
    GENERATED = "generated"
    SUCCEEDED = "succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    REFUNDED = "refunded"
    LEASE_EXPIRED = "lease_expired"
    LEASE_LOST = "lease_lost"


class EngineEvent(BaseModel):
    """One thing the engine did, as plain data (safe to log or export).

    ``fields`` holds what is specific to the kind: ``amount`` for charges and
    refunds, ``delay`` for retries, ``error_code`` and ``transient`` for
    failures, ``attempt`` and ``worker_id`` for claims, ``tokens`` and
    ``chars`` (of the answer streamed in so far) for progress.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EventKind
    job_id: str
    owner: str
    at: Annotated[datetime, AfterValidator(utc)]
    attempt: int = 0
    fields: dict[str, JsonValue] = Field(default_factory=dict)


EventHook = Callable[[EngineEvent], object]
"""A callable that receives every :class:`EngineEvent`; its return value is ignored."""

_LEVELS = {
    EventKind.FAILED: logging.WARNING,
    EventKind.LEASE_EXPIRED: logging.WARNING,
    EventKind.LEASE_LOST: logging.WARNING,
    EventKind.RETRY_SCHEDULED: logging.INFO,
}


def emit(hook: EventHook | None, event: EngineEvent) -> None:
    """Log ``event`` with structured fields, then hand it to ``hook``.

    A hook that raises is logged and ignored: observability must never turn a
    finished transition into a failure.
    """
    log.log(
        _LEVELS.get(event.kind, logging.DEBUG),
        "job %s %s",
        event.job_id,
        event.kind.value,
        extra={
            "chatsvg_event": event.kind.value,
            "job_id": event.job_id,
            "owner": event.owner,
            "attempt": event.attempt,
            **{f"chatsvg_{k}": v for k, v in event.fields.items()},
        },
    )
    if hook is None:
        return
    try:
        hook(event)
    except Exception:
        log.exception("event hook raised on %s", event.kind.value)
