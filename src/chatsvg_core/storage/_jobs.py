"""Job-store operations, written once over the primitives.

Each operation reads the job with its row locked, applies one pure
transition function from :mod:`chatsvg_core.jobs` (which refuses what the
state machine forbids, including a stale fencing token) and writes the new
job with a compare-and-set on ``version``. A refused transition or a lost
compare-and-set raises before anything is written, so the caller's
transaction keeps nothing of it. The store never invents a transition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, NoReturn, Protocol, runtime_checkable

from pydantic import JsonValue

from chatsvg_core._clock import utc
from chatsvg_core._construct import NOT_PLAIN, built, handed_json, plain_json
from chatsvg_core.errors import InvalidTransition, JobNotFound
from chatsvg_core.jobs import (
    Job,
    JobErrorInfo,
    JobStatus,
    cancel,
    claim,
    expire,
    fail,
    heartbeat,
)
from chatsvg_core.jobs import retry as _retry
from chatsvg_core.jobs import succeed as _succeed
from chatsvg_core.storage._protocol import JobResult, StoreTransaction

__all__ = [
    "HeldJobFinisher",
    "JobClaimer",
    "JobFinisher",
    "LeaseExtender",
    "cancel_job",
    "claim_job",
    "claim_next",
    "claim_next_reference",
    "complete_job",
    "complete_job_reference",
    "expire_leases",
    "fail_job",
    "heartbeat_job",
    "heartbeat_jobs",
    "heartbeat_jobs_reference",
    "retry_job",
]


async def _load(tx: StoreTransaction, job_id: str) -> Job:
    job = await tx.get_job(job_id, for_update=True)
    if job is None:
        raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
    return job


async def _save(tx: StoreTransaction, before: Job, after: Job, action: str) -> Job:
    if not await tx.update_job(after, expected_version=before.version):
        # Only possible when a backend's row lock is weaker than promised, or
        # a caller skipped for_update; either way we must not write.
        raise InvalidTransition(
            f"job {before.id} changed while {action} was being applied",
            job_id=before.id,
            status=before.status.value,
            action=action,
            reason="version_conflict",
        )
    return after


async def claim_job(
    tx: StoreTransaction, job_id: str, *, now: datetime, worker_id: str, lease: timedelta
) -> Job:
    """QUEUED → RUNNING for this job (a queue delivered its id); returns the running job.

    Raises :class:`~chatsvg_core.errors.JobNotFound`, or
    :class:`~chatsvg_core.errors.InvalidTransition` when it is not QUEUED, not
    due, or out of attempts (a redelivered message finds it RUNNING: leave it).
    """
    job = await _load(tx, job_id)
    return await _save(tx, job, claim(job, now=now, worker_id=worker_id, lease=lease), "claim")


@runtime_checkable
class JobClaimer(Protocol):
    """An optional fast path a transaction may offer for :func:`claim_next`.

    A backend whose transaction has this method claims in one statement
    (``UPDATE ... RETURNING``); one without it gets
    :func:`claim_next_reference`, the same outcome through ``next_due_job``
    and ``update_job``. The conformance suite checks the two agree, and
    ``tests/storage`` checks the SQL backends' statement against
    :func:`~chatsvg_core.jobs.claim` for every job shape.
    """

    async def claim_due(
        self,
        now: datetime,
        *,
        worker_id: str,
        lease_expires_at: datetime,
        job_id: str | None = None,
    ) -> Job | None:
        """Apply :func:`~chatsvg_core.jobs.claim` to the job ``next_due_job(now)`` would give.

        Among QUEUED jobs with ``run_at <= now`` and attempts left (oldest
        ``run_at``, then ``created_at``, then ``id``; rows other transactions
        hold skipped, as ``next_due_job`` skips them), take the first: status
        RUNNING, ``attempt + 1``, ``lease_token = attempt + 1`` (the new
        attempt), ``lease_expires_at``, ``worker_id``, ``version + 1``,
        ``updated_at = now``. Return the claimed job, or ``None`` when none
        is due. The row stays locked until the transaction ends.

        With ``job_id`` (a queue delivered that job): that job only, claimed
        the same way if it is QUEUED, due and has attempts left, else
        ``None`` and nothing written; a row another transaction holds is
        waited for, as ``get_job(for_update=True)`` waits.
        """
        ...


async def claim_next_reference(
    tx: StoreTransaction, *, now: datetime, worker_id: str, lease: timedelta
) -> Job | None:
    """:func:`claim_next` over the fine primitives (the specification).

    ``next_due_job`` locks the next due job, :func:`~chatsvg_core.jobs.claim`
    makes the claimed job, ``update_job`` writes it.
    """
    job = await tx.next_due_job(utc(now))
    if job is None:
        return None
    return await _save(tx, job, claim(job, now=now, worker_id=worker_id, lease=lease), "claim")


async def claim_next(
    tx: StoreTransaction, *, now: datetime, worker_id: str, lease: timedelta
) -> Job | None:
    """Claim the next due QUEUED job (skipping jobs other claimers hold), or ``None``.

    One statement where the transaction offers :class:`JobClaimer` (the SQL
    backends); otherwise :func:`claim_next_reference`.
    """
    fast = getattr(tx, "claim_due", None)
    if fast is None:
        return await claim_next_reference(tx, now=now, worker_id=worker_id, lease=lease)
    now = utc(now)
    if not isinstance(worker_id, str):
        raise ValueError(f"worker_id is a string, not {type(worker_id).__name__}")
    if lease <= timedelta(0):
        raise ValueError("a lease must last a positive time")
    job: Job | None = await fast(now, worker_id=worker_id, lease_expires_at=now + lease)
    return job


async def heartbeat_job(
    tx: StoreTransaction, job_id: str, *, token: int, now: datetime, lease: timedelta
) -> Job:
    """Extend the lease to ``now + lease``; :class:`~chatsvg_core.errors.StaleLease` if lost."""
    job = await _load(tx, job_id)
    return await _save(tx, job, heartbeat(job, now=now, token=token, lease=lease), "heartbeat")


@runtime_checkable
class LeaseExtender(Protocol):
    """An optional fast path a transaction may offer for :func:`heartbeat_jobs`.

    A backend whose transaction has this method extends many leases in one
    statement; one without it gets :func:`heartbeat_jobs_reference`, the same
    outcome through ``get_job`` and ``update_job``. The conformance suite
    checks the two agree.
    """

    async def extend_leases(
        self, leases: Mapping[str, int], *, now: datetime, lease: timedelta
    ) -> set[str]:
        """Apply :func:`~chatsvg_core.jobs.heartbeat` to every listed job still held.

        ``leases`` maps job id to the fencing token its holder has. A job that
        is RUNNING with that token gets ``lease_expires_at = max(now + lease,
        lease_expires_at)`` (never shorter), ``version + 1`` and
        ``updated_at = now``; any other listed job (unknown, not RUNNING,
        another token) is left untouched. Returns the ids that were extended.
        Rows are locked as ``get_job(for_update=True)`` would lock them.
        """
        ...


async def heartbeat_jobs_reference(
    tx: StoreTransaction, leases: Mapping[str, int], *, now: datetime, lease: timedelta
) -> frozenset[str]:
    """:func:`heartbeat_jobs` over the fine primitives: one ``heartbeat_job`` per lease.

    The specification of the batched heartbeat, and what a backend without
    :class:`LeaseExtender` runs. Jobs are visited in id order, so two
    batches lock their rows in one order.
    """
    kept: set[str] = set()
    for job_id in sorted(leases):
        job = await tx.get_job(job_id, for_update=True)
        if job is None:
            continue
        try:
            beat = heartbeat(job, now=now, token=leases[job_id], lease=lease)
        except InvalidTransition:
            continue  # not RUNNING, or another holder's token: this lease is gone
        await _save(tx, job, beat, "heartbeat")
        kept.add(job_id)
    return frozenset(kept)


async def heartbeat_jobs(
    tx: StoreTransaction, leases: Mapping[str, int], *, now: datetime, lease: timedelta
) -> frozenset[str]:
    """Extend many leases at once; return the ids whose lease is still held.

    ``leases`` maps job id to its holder's fencing token. For each job still
    RUNNING with that token the lease becomes ``max(now + lease, current
    expiry)`` (a heartbeat never shortens a lease); a job that is gone,
    finished or re-claimed under another token is not extended and is absent
    from the answer, which is how its holder learns to stop. This is how one
    worker process keeps hundreds of leases alive with one statement per
    interval instead of one transaction per job (the SQL backends'
    :class:`LeaseExtender`); other backends get the same answer from
    :func:`heartbeat_jobs_reference`.
    """
    now = utc(now)
    if lease <= timedelta(0):
        raise ValueError("lease must be positive")
    if not leases:
        return frozenset()
    fast = getattr(tx, "extend_leases", None)
    if fast is not None:
        return frozenset(await fast(dict(leases), now=now, lease=lease))
    return await heartbeat_jobs_reference(tx, leases, now=now, lease=lease)


@runtime_checkable
class JobFinisher(Protocol):
    """An optional fast path a transaction may offer for :func:`complete_job`.

    A backend whose transaction has this method succeeds a job and stores
    its result in one call (one statement on PostgreSQL); one without it gets
    :func:`complete_job_reference`. A refusal is explained by the reference
    path (it re-reads the job), so the caller sees the same error either way.
    """

    async def succeed_job(
        self, job_id: str, *, token: int, now: datetime, result: JobResult
    ) -> tuple[Job, JobResult] | None:
        """Apply :func:`~chatsvg_core.jobs.succeed` if the job is RUNNING under ``token``.

        Then: status SUCCEEDED, no lease (token and expiry cleared),
        ``result_ref = id``, ``version + 1``, ``updated_at = now``, and
        ``result`` stored as ``put_result`` stores it (a result already there
        is kept and returned). Return the job and the stored result; return
        ``None``, writing nothing, when the job is unknown, not RUNNING or
        held under another token. Locks the row as ``get_job(for_update=True)``.
        """
        ...


async def complete_job_reference(
    tx: StoreTransaction, job_id: str, *, token: int, now: datetime, result: JobResult
) -> tuple[Job, JobResult]:
    """:func:`complete_job` over the fine primitives (the specification).

    The transition is checked before the result is written, so a stale
    worker's result is never stored.
    """
    job = await _load(tx, job_id)
    done = _succeed(job, now=now, token=token, result_ref=job.id)
    stored = await tx.put_result(result)
    return await _save(tx, job, done, "succeed"), stored


@runtime_checkable
class HeldJobFinisher(Protocol):
    """An optional fast path for :func:`complete_job` called with the ``held`` job.

    :meth:`JobFinisher.succeed_job` without reading the row back: the caller
    holds the job as its claim returned it, and under a lease held with the
    current token only a heartbeat can change the row (``lease_expires_at``,
    ``version``, ``updated_at``), of which :func:`~chatsvg_core.jobs.succeed`
    keeps only ``version``. So the store returns the new ``version`` alone and
    :func:`complete_job` applies ``succeed`` to the held job. A backend
    without it gets ``succeed_job`` or :func:`complete_job_reference`; the
    conformance suite checks the three agree, heartbeats between claim and
    finish included.
    """

    async def succeed_held(
        self, job_id: str, *, token: int, now: datetime, result: JobResult
    ) -> tuple[int, JobResult] | None:
        """:meth:`JobFinisher.succeed_job`, returning the job's new ``version`` for the job.

        The same guard (RUNNING under ``token``), the same writes (status
        SUCCEEDED, token and expiry cleared, ``result_ref = id``, ``version +
        1``, ``updated_at = now``, ``result`` stored as ``put_result`` stores
        it), the same ``None`` when refused, writing nothing.
        """
        ...


def _result(
    job_id: str, svg: str, metadata: Mapping[str, JsonValue] | None, now: datetime
) -> JobResult:
    """``JobResult(...)``: built without validation when the values are plain (see
    ``chatsvg_core._construct``; tests/storage/test_construct.py holds them equal)."""
    if type(job_id) is str and type(svg) is str and type(now) is datetime:
        if handed_json(metadata):
            # Given up by its maker with its text (the engine's finish): plain, and
            # no one else's, so no copy (tests/engine/test_finish_fast.py).
            return built(
                JobResult, {"job_id": job_id, "svg": svg, "metadata": metadata, "created_at": now}
            )
        data = dict(metadata or {})
        plain = plain_json(data)
        if plain is not NOT_PLAIN:
            return built(
                JobResult, {"job_id": job_id, "svg": svg, "metadata": plain, "created_at": now}
            )
        return JobResult(job_id=job_id, svg=svg, metadata=data, created_at=now)
    return JobResult(job_id=job_id, svg=svg, metadata=dict(metadata or {}), created_at=now)


async def complete_job(
    tx: StoreTransaction,
    job_id: str,
    *,
    token: int,
    now: datetime,
    svg: str,
    metadata: Mapping[str, JsonValue] | None = None,
    held: Job | None = None,
) -> tuple[Job, JobResult]:
    """RUNNING → SUCCEEDED and store the result, both only with the current token.

    A stale worker's result is never stored. One call where the transaction
    offers :class:`JobFinisher` (the SQL backends); otherwise, and to explain
    a refusal with the right error, :func:`complete_job_reference`.

    ``held`` is the job as the lease holder got it from its claim (or a later
    write of its own). Where the transaction offers :class:`HeldJobFinisher`
    the row is then not read back: ``succeed`` is applied to ``held`` with
    the stored ``version``. A ``held`` job that is not this job running under
    ``token`` is ignored.
    """
    if now.tzinfo is not UTC:  # utc() only where it has work
        now = utc(now)
    result = _result(job_id, svg, metadata, now)
    # A job holds a token exactly while RUNNING (Job's own rule).
    if held is not None and held.lease_token == token and held.id == job_id:
        by_version = getattr(tx, "succeed_held", None)
        if by_version is not None:
            got: tuple[int, JobResult] | None
            if getattr(tx, "_takes_held_version", False):
                # This library's SQLite store: at the held version it need not
                # read the new one back (SQLiteTransaction.succeed_held).
                got = await by_version(
                    job_id, token=token, now=now, result=result, version=held.version
                )
            else:
                got = await by_version(job_id, token=token, now=now, result=result)
            if got is None:
                await _refused(tx, job_id, token, now)
            else:
                version, stored = got
                return _succeeded(held, now, version), stored
    fast = getattr(tx, "succeed_job", None)
    if fast is not None:
        finished: tuple[Job, JobResult] | None = await fast(
            job_id, token=token, now=now, result=result
        )
        if finished is not None:
            return finished
        await _refused(tx, job_id, token, now)
    return await complete_job_reference(tx, job_id, token=token, now=now, result=result)


def _succeeded(held: Job, now: datetime, version: int) -> Job:
    """``succeed(held, now=now, ...)`` with the stored ``version``, for a held job
    the store has just succeeded (tests/jobs/test_fast_paths.py holds them equal).

    ``held`` is a valid job RUNNING under the token the store's fenced write
    matched, which is what ``succeed`` checks; the job it makes (SUCCEEDED,
    no token or expiry, ``result_ref`` its id, the rest unchanged) keeps the
    cross-field rules by construction, so neither is checked again. The
    ``version`` is the store's: heartbeats move it since the claim, and
    nothing else of a held job's row can change (see HeldJobFinisher).
    ``now`` is aware UTC (complete_job made it so).
    """
    data = dict(held.__dict__)
    data["status"] = _SUCCEEDED
    data["lease_token"] = None
    data["lease_expires_at"] = None
    data["result_ref"] = held.id
    data["version"] = version
    data["updated_at"] = now
    return built(Job, data)


# Read per job: on Python 3.11 a member read through its class runs a
# descriptor written in Python (~1 k instructions).
_SUCCEEDED: Final = JobStatus.SUCCEEDED


async def _refused(tx: StoreTransaction, job_id: str, token: int, now: datetime) -> NoReturn:
    """Explain a fast path's refusal (nothing written) with the reference path's error.

    Re-read under lock, the transition raises the reason (unknown job, wrong
    status, stale token). It cannot succeed under the same lock; if it would,
    the backend broke its promise.
    """
    job = await _load(tx, job_id)
    _succeed(job, now=now, token=token, result_ref=job.id)
    raise InvalidTransition(
        f"job {job_id} could be succeeded but the store refused it",
        job_id=job_id,
        status=job.status.value,
        action="succeed",
        reason="version_conflict",
    )


async def retry_job(
    tx: StoreTransaction,
    job_id: str,
    *,
    token: int,
    now: datetime,
    run_at: datetime,
    error: JobErrorInfo,
) -> Job:
    """RUNNING → QUEUED, due at ``run_at``; only with the current token and attempts left."""
    job = await _load(tx, job_id)
    return await _save(
        tx, job, _retry(job, now=now, token=token, run_at=run_at, error=error), "retry"
    )


async def fail_job(
    tx: StoreTransaction,
    job_id: str,
    *,
    now: datetime,
    error: JobErrorInfo,
    token: int | None = None,
) -> Job:
    """RUNNING → FAILED with the current token, or QUEUED → FAILED with ``token=None``.

    Refund the job's charge in the same transaction
    (:func:`chatsvg_core.ledger.refund`) so FAILED and refunded are one step.
    """
    job = await _load(tx, job_id)
    return await _save(tx, job, fail(job, now=now, error=error, token=token), "fail")


async def cancel_job(
    tx: StoreTransaction, job_id: str, *, now: datetime, reason: str | None = None
) -> Job:
    """QUEUED or RUNNING → FAILED with code ``cancelled``; no fencing token needed.

    Give the job's credits back in the same transaction
    (:func:`chatsvg_core.ledger.refund` or :func:`~chatsvg_core.ledger.release`).
    A worker still running it is refused at its next write (its token is gone).
    """
    job = await _load(tx, job_id)
    return await _save(tx, job, cancel(job, now=now, reason=reason), "cancel")


async def expire_leases(
    tx: StoreTransaction,
    *,
    now: datetime,
    run_at_for: Callable[[Job], datetime | None] | None = None,
    limit: int = 100,
) -> Sequence[Job]:
    """Expire up to ``limit`` lapsed leases: back to QUEUED, or FAILED with no attempts left.

    ``run_at_for(job)`` gives when a re-queued job is due again (the retry
    policy's delay; default now). A job that changed since it was listed
    (a heartbeat, a completion) is left alone. Returns the expired jobs; the
    caller refunds those that became FAILED.
    """
    now = utc(now)
    done: list[Job] = []
    for listed in await tx.expired_jobs(now, limit=limit):
        job = await tx.get_job(listed.id, for_update=True)
        if (
            job is None
            or job.status is not JobStatus.RUNNING
            or job.lease_expires_at is None
            or job.lease_expires_at > now
        ):
            continue
        run_at = run_at_for(job) if run_at_for is not None else None
        done.append(await _save(tx, job, expire(job, now=now, run_at=run_at), "expire"))
    return done
