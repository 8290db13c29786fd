"""One observation hook for every transition, charge and refund."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from chatsvg_core._clock import utc

__all__ = ["EVENT_LEVELS", "EngineEvent", "EventHook", "EventKind", "emit", "wanted"]

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

    # str's hash (C, cached in the string) instead of Enum's hash(self._name_),
    # a Python call (~0.4 k instructions) per EVENT_LEVELS lookup, five a job in
    # Engine._emit. Members still hash alike and equal their values, which now
    # hash as they do.
    __hash__ = str.__hash__


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

EVENT_LEVELS: dict[EventKind, int] = {
    EventKind.FAILED: logging.WARNING,
    EventKind.LEASE_EXPIRED: logging.WARNING,
    EventKind.LEASE_LOST: logging.WARNING,
    EventKind.RETRY_SCHEDULED: logging.INFO,
}
"""The level each kind is logged at (DEBUG for the kinds not named)."""
_LEVELS = EVENT_LEVELS

_MESSAGES: dict[EventKind, str] = {
    EventKind.SUBMITTED: "Job {job} was submitted for {owner}.",
    EventKind.REPLAYED: "Job {job} was returned again for a repeated idempotency key.",
    EventKind.CLAIMED: "Job {job} was claimed for attempt {attempt} by worker {worker_id}.",
    EventKind.CHARGED: "Job {job} was charged {amount} credits to {owner}.",
    EventKind.GENERATED: "Job {job} got a sanitized SVG from model {model}.",
    EventKind.SUCCEEDED: "Job {job} succeeded on attempt {attempt}.",
    EventKind.RETRY_SCHEDULED: (
        "Job {job} failed with {error_code} on attempt {attempt} and will run again in {delay} s."
    ),
    EventKind.FAILED: "Job {job} failed with {error_code} on attempt {attempt}.",
    EventKind.REFUNDED: "Job {job} was refunded {amount} credits to {owner}.",
    EventKind.LEASE_EXPIRED: "The lease of job {job} expired; recovery took the job back.",
    EventKind.LEASE_LOST: "Job {job} lost its lease; this attempt's outcome was dropped.",
}


class _Fields(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "?"


def describe(event: EngineEvent) -> str:
    """The event as one English sentence (what the log record's message says)."""
    fields = _Fields(event.fields)
    fields.update(job=event.job_id, owner=event.owner, attempt=event.attempt)
    delay = event.fields.get("delay")
    if isinstance(delay, int | float):
        fields["delay"] = f"{delay:.2f}"
    return _MESSAGES[event.kind].format_map(fields)


def wanted(hook: EventHook | None, kind: EventKind) -> bool:
    """Whether an event of ``kind`` would be seen: by ``hook``, or logged at its level.

    The engine builds an event only when someone will see it (the
    instrumentation counts too; the engine asks it separately): building and
    validating five events per job costs more than some of its statements.
    """
    return hook is not None or log.isEnabledFor(_LEVELS.get(kind, logging.DEBUG))


def emit(hook: EventHook | None, event: EngineEvent) -> None:
    """Log ``event`` as a sentence with structured fields, then hand it to ``hook``.

    The record's ``extra``: ``chatsvg_event`` (the kind), ``job_id``,
    ``owner``, ``attempt``, and each of the event's fields as ``chatsvg_<name>``.
    A hook that raises is logged and ignored: observability must never turn a
    finished transition into a failure.
    """
    level = _LEVELS.get(event.kind, logging.DEBUG)
    if log.isEnabledFor(level):
        log.log(
            level,
            describe(event),
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
        log.exception(
            "The event hook raised on %s of job %s; the job is unaffected.",
            event.kind.value,
            event.job_id,
            extra={
                "chatsvg_event": "event_hook_failed",
                "job_id": event.job_id,
                "owner": event.owner,
                "attempt": event.attempt,
            },
        )
