"""The state machine as pure functions and as data.

Each function takes a job, the current time and the inputs it needs, and
returns the new job or raises :class:`~chatsvg_core.errors.InvalidTransition`
(or its subclass :class:`~chatsvg_core.errors.StaleLease`). None of them reads
a clock or does I/O; stores call them and persist the result with a
compare-and-set on ``version``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from chatsvg_core._clock import utc
from chatsvg_core._construct import built
from chatsvg_core.errors import InvalidTransition, StaleLease
from chatsvg_core.jobs._model import Job, JobErrorInfo, JobStatus

__all__ = [
    "CANCELLED",
    "TRANSITIONS",
    "Transition",
    "cancel",
    "claim",
    "expire",
    "fail",
    "heartbeat",
    "mermaid",
    "new_job",
    "retry",
    "succeed",
]

Q, R, S, F = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED


@dataclass(frozen=True, slots=True)
class Transition:
    """One edge of the state machine: ``action`` moves ``source`` to ``target``."""

    action: str
    source: JobStatus
    target: JobStatus
    guard: str
    """When the edge is allowed, in words (rendered in the docs)."""


TRANSITIONS: Final[tuple[Transition, ...]] = (
    Transition("claim", Q, R, "due (run_at <= now) and attempts left"),
    Transition("heartbeat", R, R, "current lease token"),
    Transition("succeed", R, S, "current lease token"),
    Transition("retry", R, Q, "current lease token and attempts left"),
    Transition("fail", R, F, "current lease token"),
    Transition("fail", Q, F, "refused before it runs"),
    Transition("expire", R, Q, "lease lapsed and attempts left"),
    Transition("expire", R, F, "lease lapsed and no attempts left"),
    Transition("cancel", Q, F, "the owner cancels (error code cancelled)"),
    Transition("cancel", R, F, "the owner cancels; the worker's token is revoked"),
)
"""Every edge there is; no other change of status exists."""

ALLOWED: Final[Mapping[str, frozenset[tuple[JobStatus, JobStatus]]]] = MappingProxyType(
    {
        action: frozenset((t.source, t.target) for t in TRANSITIONS if t.action == action)
        for action in dict.fromkeys(t.action for t in TRANSITIONS)
    }
)


def _refuse(job: Job, action: str, reason: str) -> InvalidTransition:
    return InvalidTransition(
        f"cannot {action} job {job.id} in status {job.status.value}: {reason}",
        job_id=job.id,
        status=job.status.value,
        action=action,
        reason=reason,
    )


def _check_source(job: Job, action: str, *sources: JobStatus) -> None:
    if job.status not in sources:
        reason = "terminal" if job.terminal else "wrong_status"
        raise _refuse(job, action, reason)


def _check_token(job: Job, action: str, token: int) -> None:
    _check_source(job, action, R)
    if job.lease_token != token:
        raise StaleLease(
            f"cannot {action} job {job.id}: lease token {token} is stale "
            f"(current {job.lease_token})",
            job_id=job.id,
            status=job.status.value,
            action=action,
            reason="stale_token",
            token=token,
            current_token=job.lease_token,
        )


def _error_info(error: JobErrorInfo) -> JobErrorInfo:
    # Job._step does not revalidate: a mapping becomes the model here, as
    # Job.evolve's validation would have made it.
    return error if isinstance(error, JobErrorInfo) else JobErrorInfo.model_validate(error)


def _positive(lease: timedelta) -> timedelta:
    if lease <= timedelta(0):
        raise ValueError("a lease must last a positive time")
    return lease


def new_job(
    *,
    job_id: str,
    owner: str,
    request: Mapping[str, object],
    request_hash: str,
    now: datetime,
    idempotency_key: str | None = None,
    max_attempts: int = 3,
    run_at: datetime | None = None,
    trace_context: Mapping[str, str] | None = None,
) -> Job:
    """A fresh QUEUED job, due at ``run_at`` (default: ``now``)."""
    now = utc(now)
    due = utc(run_at) if run_at is not None else now
    copied = dict(request)
    trace = dict(trace_context) if trace_context else None
    if _plain(job_id, owner, copied, request_hash, idempotency_key, max_attempts, trace):
        # Every value is already what validation would make of it (the
        # copies are fresh): plain_new_job builds it without pydantic.
        # tests/jobs/test_fast_paths.py holds it equal to model_validate.
        return plain_new_job(
            job_id, owner, copied, request_hash, idempotency_key, now, max_attempts, due, trace
        )
    return Job.model_validate(
        {
            "id": job_id,
            "owner": owner,
            "request": copied,
            "request_hash": request_hash,
            "idempotency_key": idempotency_key,
            "max_attempts": max_attempts,
            "run_at": due,
            "created_at": now,
            "updated_at": now,
            "trace_context": trace,
        }
    )


def plain_new_job(
    job_id: str,
    owner: str,
    request: dict[str, Any],
    request_hash: str,
    idempotency_key: str | None,
    now: datetime,
    max_attempts: int,
    run_at: datetime | None = None,
    trace_context: dict[str, str] | None = None,
) -> Job:
    """:func:`new_job` for values the caller vouches for (due ``run_at``, default ``now``).

    The engine's submit, and new_job once its checks pass: each value is
    already what :func:`_plain` accepts (exact ``str`` id of 1 to 128 and
    owner of 1 to 255 characters, exact ``str`` hash and key, exact ``int``
    attempts of at least 1, a fresh ``request`` dict of ``str`` keys and JSON
    scalars and a fresh ``trace_context``, which the job keeps without a
    copy) and ``now`` and ``run_at`` are aware UTC. Built without pydantic's
    per-field pass (a third of a submit's Python), in one dict in the model's
    field order: a fresh job keeps every cross-field rule (QUEUED, no lease,
    token or result, attempt 0 of at least 1), so Job._from_trusted's check
    has nothing to find. tests/jobs holds it equal to :func:`new_job` and to
    model_validate.
    """
    # A copy of the fresh job's dict, its varying fields then set: the dict
    # literal's 18 inserts cost 3.7 k instructions more than the copy and
    # nine stores (its keys stay in the model's field order).
    data = _FRESH.copy()
    data["id"] = job_id
    data["owner"] = owner
    data["request"] = request
    data["request_hash"] = request_hash
    data["idempotency_key"] = idempotency_key
    data["max_attempts"] = max_attempts
    data["run_at"] = now if run_at is None else run_at
    data["created_at"] = now
    data["updated_at"] = now
    if trace_context is not None:
        data["trace_context"] = trace_context
    return built(Job, data)


_FRESH: Final[dict[str, Any]] = {
    "id": None,
    "owner": None,
    "request": None,
    "request_hash": None,
    "idempotency_key": None,
    "status": Q,
    "attempt": 0,
    "max_attempts": None,
    "run_at": None,
    "lease_expires_at": None,
    "lease_token": None,
    "worker_id": None,
    "last_error": None,
    "result_ref": None,
    "version": 0,
    "created_at": None,
    "updated_at": None,
    "trace_context": None,
}
"""plain_new_job's dict before its values: a fresh job's constants, in the model's field order."""

_JSON_SCALARS: Final = frozenset({str, int, bool, type(None)})


def _plain(
    job_id: object,
    owner: object,
    request: dict[Any, Any],
    request_hash: object,
    key: object,
    attempts: object,
    trace: dict[Any, Any] | None,
) -> bool:
    """Whether validating these as a new :class:`Job` would accept them unchanged.

    Only exact builtin types (no subclasses, no floats), in range; anything
    else goes through ``Job.model_validate``, which converts or refuses it.
    run_at and created_at need no look: new_job passed them through utc(), so
    each is an aware UTC datetime (or a subclass, which validation hands back
    as it is).
    """
    if type(job_id) is not str or not 1 <= len(job_id) <= 128:
        return False
    if type(owner) is not str or not 1 <= len(owner) <= 255:
        return False
    if type(request_hash) is not str:
        return False
    if key is not None and type(key) is not str:
        return False
    if type(attempts) is not int or attempts < 1:
        return False
    for name, value in request.items():
        if type(name) is not str or type(value) not in _JSON_SCALARS:
            return False
    if trace is not None:
        for name, value in trace.items():
            if type(name) is not str or type(value) is not str:
                return False
    return True


def claim(job: Job, *, now: datetime, worker_id: str, lease: timedelta) -> Job:
    """QUEUED → RUNNING: take the job for ``lease``; the new token is the new attempt number.

    Refused when the job is not QUEUED, not yet due, or out of attempts.
    """
    now = utc(now)
    _check_source(job, "claim", Q)
    if not isinstance(worker_id, str):
        raise ValueError(f"worker_id is a string, not {type(worker_id).__name__}")
    if job.run_at > now:
        raise _refuse(job, "claim", "not_due")
    if job.attempt >= job.max_attempts:
        raise _refuse(job, "claim", "attempts_exhausted")
    attempt = job.attempt + 1
    return job._step(
        status=R,
        attempt=attempt,
        lease_token=attempt,
        lease_expires_at=now + _positive(lease),
        worker_id=worker_id,
        version=job.version + 1,
        updated_at=now,
    )


def heartbeat(job: Job, *, now: datetime, token: int, lease: timedelta) -> Job:
    """RUNNING → RUNNING: extend the lease to ``now + lease``; only with the current token.

    A lease that lapsed but was not yet expired by recovery can still be
    extended: nobody else can hold the job until :func:`expire` has run.
    """
    now = utc(now)
    _check_token(job, "heartbeat", token)
    return job._step(
        lease_expires_at=max(now + _positive(lease), job.lease_expires_at or now),
        version=job.version + 1,
        updated_at=now,
    )


def succeed(job: Job, *, now: datetime, token: int, result_ref: str) -> Job:
    """RUNNING → SUCCEEDED with a result reference; only with the current token."""
    now = utc(now)
    _check_token(job, "succeed", token)
    return job._step(
        status=S,
        lease_token=None,
        lease_expires_at=None,
        result_ref=result_ref,
        version=job.version + 1,
        updated_at=now,
    )


def retry(job: Job, *, now: datetime, token: int, run_at: datetime, error: JobErrorInfo) -> Job:
    """RUNNING → QUEUED, due again at ``run_at``; only while attempts remain."""
    now = utc(now)
    run_at = utc(run_at)
    _check_token(job, "retry", token)
    if job.attempt >= job.max_attempts:
        raise _refuse(job, "retry", "attempts_exhausted")
    if run_at < now:
        raise ValueError("run_at of a retry is never in the past")
    return job._step(
        status=Q,
        lease_token=None,
        lease_expires_at=None,
        worker_id=None,
        run_at=run_at,
        last_error=_error_info(error),
        version=job.version + 1,
        updated_at=now,
    )


def fail(job: Job, *, now: datetime, error: JobErrorInfo, token: int | None = None) -> Job:
    """RUNNING → FAILED with the current token, or QUEUED → FAILED with ``token=None``.

    The second form refuses a job before it runs (cancelled, out of credits).
    """
    now = utc(now)
    if token is None:
        _check_source(job, "fail", Q)
    else:
        _check_token(job, "fail", token)
    return job._step(
        status=F,
        lease_token=None,
        lease_expires_at=None,
        last_error=_error_info(error),
        version=job.version + 1,
        updated_at=now,
    )


CANCELLED: Final = "cancelled"
"""The ``last_error.code`` of a cancelled job (a FAILED job: cancelling is not a new state)."""


def cancel(job: Job, *, now: datetime, reason: str | None = None) -> Job:
    """QUEUED or RUNNING → FAILED with error code ``cancelled``; no token needed.

    A RUNNING job loses its lease token here, so the worker still running it
    is fenced off: its result, retry or failure is refused as for any stale
    token, and nothing it writes later lands.
    """
    now = utc(now)
    _check_source(job, "cancel", Q, R)
    error = JobErrorInfo(
        code=CANCELLED,
        type="JobCancelled",
        message="cancelled by its owner" + (f": {reason}" if reason else ""),
        transient=False,
        fields={"while": job.status.value, "attempt": job.attempt},
    )
    return job._step(
        status=F,
        lease_token=None,
        lease_expires_at=None,
        last_error=error,
        version=job.version + 1,
        updated_at=now,
    )


def expire(job: Job, *, now: datetime, run_at: datetime | None = None) -> Job:
    """RUNNING with a lapsed lease → QUEUED (attempts left) or FAILED (none left).

    The lapsed attempt counts as a transient failure; ``run_at`` (default
    ``now``) is when the job is due again.
    """
    now = utc(now)
    _check_source(job, "expire", R)
    assert job.lease_expires_at is not None  # guaranteed by Job's validator
    if job.lease_expires_at > now:
        raise _refuse(job, "expire", "lease_live")
    error = JobErrorInfo(
        code="lease_expired",
        type="LeaseExpired",
        message=f"worker {job.worker_id!r} lost its lease on attempt {job.attempt}",
        transient=True,
        fields={"worker_id": job.worker_id, "attempt": job.attempt},
    )
    common = {
        "lease_token": None,
        "lease_expires_at": None,
        "last_error": error,
        "version": job.version + 1,
        "updated_at": now,
    }
    if job.attempt >= job.max_attempts:
        return job._step(status=F, **common)
    due = utc(run_at) if run_at is not None else now
    return job._step(status=Q, worker_id=None, run_at=max(due, now), **common)


def mermaid() -> str:
    """The transition table as a Mermaid ``stateDiagram-v2`` (rendered in the docs)."""
    lines = ["stateDiagram-v2", "    [*] --> queued: submit"]
    for t in TRANSITIONS:
        lines.append(f"    {t.source.value} --> {t.target.value}: {t.action} ({t.guard})")
    lines += ["    succeeded --> [*]", "    failed --> [*]"]
    return "\n".join(lines)
