"""Hypothesis strategies for jobs and transition sequences, for hosts' own suites."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import strategies as st

from chatsvg_core.errors import InvalidTransition
from chatsvg_core.jobs import (
    Job,
    JobErrorInfo,
    claim,
    expire,
    fail,
    heartbeat,
    new_job,
    retry,
    succeed,
)

__all__ = ["JobStep", "apply_step", "job_errors", "job_steps", "jobs", "queued_jobs", "walk"]

_BASE = datetime(2026, 1, 1, tzinfo=UTC)

ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24
)
times = st.integers(min_value=0, max_value=10**7).map(lambda s: _BASE + timedelta(seconds=s))


def job_errors(*, transient: bool | None = None) -> st.SearchStrategy[JobErrorInfo]:
    """Plain-data job errors; ``transient`` pins the flag."""
    flag = st.booleans() if transient is None else st.just(transient)
    return st.builds(
        JobErrorInfo,
        code=st.sampled_from(["provider_transient", "provider_permanent", "no_svg_found"]),
        type=st.sampled_from(["ProviderTransientError", "ProviderPermanentError", "NoSVGFound"]),
        message=st.text(max_size=40),
        transient=flag,
    )


@st.composite
def queued_jobs(draw: st.DrawFn, *, max_attempts: int | None = None) -> Job:
    """Fresh QUEUED jobs with random ids, owners, due times and attempt limits."""
    created = draw(times)
    return new_job(
        job_id=draw(ids),
        owner=draw(ids),
        request={"prompt": draw(st.text(min_size=1, max_size=40))},
        request_hash="v1:" + draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
        idempotency_key=draw(st.none() | ids),
        now=created,
        max_attempts=max_attempts or draw(st.integers(min_value=1, max_value=6)),
        run_at=created + timedelta(seconds=draw(st.integers(min_value=0, max_value=3600))),
    )


Action = Literal["claim", "heartbeat", "succeed", "retry", "fail", "fail_queued", "expire"]


@dataclass(frozen=True)
class JobStep:
    """One attempted transition: the action, how far the clock moves first, its inputs.

    ``token_offset`` is added to the job's current lease token (0 is the
    right token, negative a stale one); ``delay`` is the retry's backoff.
    """

    action: Action
    advance: float
    token_offset: int
    delay: float
    transient: bool


def job_steps() -> st.SearchStrategy[JobStep]:
    """Random transition attempts, legal and illegal, with clock moves."""
    return st.builds(
        JobStep,
        action=st.sampled_from(
            ["claim", "heartbeat", "succeed", "retry", "fail", "fail_queued", "expire"]
        ),
        advance=st.sampled_from([0.0, 1.0, 29.0, 30.0, 31.0, 600.0, 7200.0]),
        token_offset=st.sampled_from([0, 0, 0, -1, 1]),
        delay=st.sampled_from([0.0, 1.5, 60.0]),
        transient=st.booleans(),
    )


LEASE = timedelta(seconds=30)


def apply_step(job: Job, step: JobStep, now: datetime) -> Job:
    """Attempt ``step`` on ``job`` at ``now``; raises what the transition raises."""
    token = (job.lease_token or job.attempt + 1) + step.token_offset
    error = JobErrorInfo(code="step", type="Step", message=step.action, transient=step.transient)
    match step.action:
        case "claim":
            return claim(job, now=now, worker_id="w", lease=LEASE)
        case "heartbeat":
            return heartbeat(job, now=now, token=token, lease=LEASE)
        case "succeed":
            return succeed(job, now=now, token=token, result_ref=f"result:{job.id}")
        case "retry":
            return retry(
                job, now=now, token=token, run_at=now + timedelta(seconds=step.delay), error=error
            )
        case "fail":
            return fail(job, now=now, token=token, error=error)
        case "fail_queued":
            return fail(job, now=now, error=error)
        case "expire":
            return expire(job, now=now, run_at=now + timedelta(seconds=step.delay))


def walk(job: Job, steps: list[JobStep]) -> Job:
    """Apply each step in turn, skipping the ones the state machine refuses."""
    now = job.created_at
    for step in steps:
        now += timedelta(seconds=step.advance)
        try:
            job = apply_step(job, step, now)
        except InvalidTransition:
            continue
    return job


def jobs() -> st.SearchStrategy[Job]:
    """Jobs in any reachable state: a queued job driven through random steps."""
    return st.builds(walk, queued_jobs(), st.lists(job_steps(), max_size=12))
