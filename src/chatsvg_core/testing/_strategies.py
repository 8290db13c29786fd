"""Hypothesis strategies for ledgers and jobs, for hosts to compose in their own tests.

* :func:`amounts`, :func:`bad_amounts`, :func:`owner_ids`: inputs.
* :func:`ledger_operations` gives :class:`LedgerOperation` values;
  :func:`apply_ledger_operation` runs one inside a transaction.
* :func:`jobs` gives fresh QUEUED jobs; :func:`job_steps` /
  :func:`transition_sequences` give steps of the state machine, and
  :func:`apply_job_step` applies one purely (through the transition functions)
  while :func:`apply_job_step_in_store` applies it through a store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from hypothesis import strategies as st

from chatsvg_core.errors import InvalidTransition
from chatsvg_core.jobs import (
    Job,
    JobErrorInfo,
    cancel,
    claim,
    expire,
    fail,
    heartbeat,
    new_job,
    retry,
)
from chatsvg_core.jobs import succeed as _succeed
from chatsvg_core.ledger import (
    DayBoundary,
    adjust,
    capture,
    charge,
    grant,
    refund,
    release,
    reserve,
)
from chatsvg_core.storage import (
    LedgerEntry,
    StoreTransaction,
    cancel_job,
    claim_job,
    complete_job,
    expire_leases,
    fail_job,
    heartbeat_job,
    retry_job,
)

__all__ = [
    "JobStep",
    "LedgerOperation",
    "amounts",
    "apply_job_step",
    "apply_job_step_in_store",
    "apply_ledger_operation",
    "bad_amounts",
    "job_steps",
    "jobs",
    "ledger_operations",
    "owner_ids",
    "reachable_jobs",
    "transition_sequences",
    "walk",
]

LedgerAction = Literal["grant", "charge", "refund", "adjust", "reserve", "capture", "release"]
JobAction = Literal["claim", "heartbeat", "succeed", "retry", "fail", "expire", "cancel", "wait"]

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_ERROR = JobErrorInfo(code="test_failure", type="TestFailure", message="test", transient=True)


def amounts(max_value: int = 10_000) -> st.SearchStrategy[int]:
    """Valid amounts: positive ints up to ``max_value``."""
    return st.integers(1, max_value)


def bad_amounts() -> st.SearchStrategy[object]:
    """Amounts the ledger must refuse with ``InvalidAmount``: zero, negative, not an int."""
    return st.one_of(
        st.integers(max_value=0),
        st.floats(allow_nan=True),
        st.booleans(),
        st.text(max_size=5),
        st.none(),
    )


def owner_ids(count: int = 3) -> st.SearchStrategy[str]:
    """One of ``count`` owner ids (a small pool, so operations meet the same accounts)."""
    return st.sampled_from([f"owner-{i}" for i in range(count)])


@dataclass(frozen=True, slots=True)
class LedgerOperation:
    """One ledger call, as data: ``action`` with its arguments (unused ones are ``None``)."""

    action: LedgerAction
    owner: str | None = None
    amount: int | None = None
    ref: str | None = None
    """Job id (charge, refund, reserve, capture, release), external id (grant), or
    adjustment reference."""


def ledger_operations(
    owners: st.SearchStrategy[str] | None = None,
    *,
    refs: int = 5,
    max_amount: int = 50,
) -> st.SearchStrategy[LedgerOperation]:
    """Random ledger calls over a few owners and ``refs`` job ids, so replays happen."""
    who = owners if owners is not None else owner_ids()
    job = st.sampled_from([f"job-{i}" for i in range(refs)])
    ext = st.none() | st.sampled_from([f"pay-{i}" for i in range(refs)])
    amount = st.integers(1, max_amount)
    return st.one_of(
        st.builds(LedgerOperation, st.just("grant"), who, amount, ext),
        st.builds(LedgerOperation, st.just("charge"), who, amount, job),
        st.builds(LedgerOperation, st.just("reserve"), who, amount, job),
        st.builds(LedgerOperation, st.just("refund"), st.none(), st.none(), job),
        st.builds(LedgerOperation, st.just("capture"), st.none(), st.none(), job),
        st.builds(LedgerOperation, st.just("release"), st.none(), st.none(), job),
        st.builds(
            LedgerOperation,
            st.just("adjust"),
            who,
            st.integers(-max_amount, max_amount).filter(bool),
            st.none() | st.sampled_from(["adj-0", "adj-1"]),
        ),
    )


async def apply_ledger_operation(
    tx: StoreTransaction,
    op: LedgerOperation,
    *,
    now: datetime,
    daily_cap: int | None = None,
    day: DayBoundary | None = None,
) -> LedgerEntry:
    """Run ``op`` with the ledger functions inside ``tx``; raises what the ledger raises."""
    boundary = day or DayBoundary()
    if op.action == "grant":
        assert op.owner is not None
        assert op.amount is not None
        return await grant(tx, op.owner, op.amount, now=now, external_id=op.ref)
    if op.action in ("charge", "reserve"):
        assert op.owner is not None
        assert op.amount is not None
        assert op.ref is not None
        spend = charge if op.action == "charge" else reserve
        return await spend(
            tx, op.owner, op.amount, ref=op.ref, now=now, daily_cap=daily_cap, day=boundary
        )
    if op.action == "adjust":
        assert op.owner is not None
        assert op.amount is not None
        return await adjust(tx, op.owner, op.amount, now=now, ref=op.ref)
    assert op.ref is not None
    settle = {"refund": refund, "capture": capture, "release": release}[op.action]
    return await settle(tx, op.ref, now=now)


def jobs(
    *,
    owners: st.SearchStrategy[str] | None = None,
    now: datetime = _EPOCH,
    max_attempts: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[Job]:
    """Fresh QUEUED jobs with unique-looking ids, due now or within a minute."""
    return st.builds(
        lambda job_id, owner, attempts, delay, prompt: new_job(
            job_id=job_id,
            owner=owner,
            request={"prompt": prompt},
            request_hash=f"hash-{job_id}",
            now=now,
            max_attempts=attempts,
            run_at=now + timedelta(seconds=delay),
        ),
        st.uuids().map(lambda u: u.hex),
        owners if owners is not None else owner_ids(),
        max_attempts if max_attempts is not None else st.integers(1, 4),
        st.sampled_from([0, 0, 10, 60]),
        st.text(min_size=1, max_size=30),
    )


@dataclass(frozen=True, slots=True)
class JobStep:
    """One step of the state machine: an action, the token it uses, and time passing first."""

    action: JobAction
    advance: int = 0
    """Seconds the clock moves before the action."""
    token: int | None = None
    """The fencing token used (``None``: no token, e.g. failing a QUEUED job)."""
    delay: int = 0
    """Seconds until a retried job is due again."""


LEASE = timedelta(seconds=30)
"""The lease every step uses."""


def job_steps() -> st.SearchStrategy[JobStep]:
    """Single steps, with tokens that are sometimes current and sometimes stale."""
    return st.builds(
        JobStep,
        st.sampled_from(
            ["claim", "heartbeat", "succeed", "retry", "fail", "expire", "cancel", "wait"]
        ),
        st.sampled_from([0, 1, 29, 30, 31, 120]),
        st.none() | st.integers(1, 4),
        st.sampled_from([0, 5, 60]),
    )


def transition_sequences(max_size: int = 12) -> st.SearchStrategy[list[JobStep]]:
    """Sequences of steps to drive one job through the state machine."""
    return st.lists(job_steps(), max_size=max_size)


def apply_job_step(job: Job, step: JobStep, now: datetime) -> Job:
    """Apply ``step`` at ``now`` with the pure transition functions (raises when refused)."""
    if step.action == "claim":
        return claim(job, now=now, worker_id="w", lease=LEASE)
    if step.action == "heartbeat":
        return heartbeat(job, now=now, token=step.token or 0, lease=LEASE)
    if step.action == "succeed":
        return _succeed(job, now=now, token=step.token or 0, result_ref=job.id)
    if step.action == "retry":
        run_at = now + timedelta(seconds=step.delay)
        return retry(job, now=now, token=step.token or 0, run_at=run_at, error=_ERROR)
    if step.action == "fail":
        return fail(job, now=now, error=_ERROR, token=step.token)
    if step.action == "expire":
        return expire(job, now=now)
    if step.action == "cancel":
        return cancel(job, now=now)
    return job


def walk(job: Job, steps: Iterable[JobStep]) -> Job:
    """Apply ``steps`` in turn from ``job.created_at``, skipping those the machine refuses."""
    now = job.created_at
    for step in steps:
        now += timedelta(seconds=step.advance)
        with contextlib.suppress(InvalidTransition):
            job = apply_job_step(job, step, now)
    return job


def reachable_jobs(**kwargs: Any) -> st.SearchStrategy[Job]:
    """Jobs in any state the machine can reach: a fresh job driven through random steps.

    Keyword arguments go to :func:`jobs`. Useful to check that a store
    persists and reloads every job shape the transitions produce.
    """
    return st.builds(walk, jobs(**kwargs), transition_sequences())


async def apply_job_step_in_store(
    tx: StoreTransaction, job_id: str, step: JobStep, now: datetime
) -> Job | None:
    """Apply ``step`` through the store's job operations; returns the job after it.

    ``expire`` returns ``None`` when the lease had not lapsed (nothing to do),
    as :func:`~chatsvg_core.storage.expire_leases` simply skips such jobs.
    """
    token = step.token or 0
    if step.action == "claim":
        return await claim_job(tx, job_id, now=now, worker_id="w", lease=LEASE)
    if step.action == "heartbeat":
        return await heartbeat_job(tx, job_id, token=token, now=now, lease=LEASE)
    if step.action == "succeed":
        done, _ = await complete_job(tx, job_id, token=token, now=now, svg="<svg/>")
        return done
    if step.action == "retry":
        run_at = now + timedelta(seconds=step.delay)
        return await retry_job(tx, job_id, token=token, now=now, run_at=run_at, error=_ERROR)
    if step.action == "fail":
        return await fail_job(tx, job_id, now=now, error=_ERROR, token=step.token)
    if step.action == "expire":
        expired = await expire_leases(tx, now=now)
        return next((j for j in expired if j.id == job_id), None)
    if step.action == "cancel":
        return await cancel_job(tx, job_id, now=now)
    return await tx.get_job(job_id)
