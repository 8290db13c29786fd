"""Job level: the job state machine driven by ``decide`` never asks for a refused transition."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from chatsvg_core import errors
from chatsvg_core.jobs import JobErrorInfo, JobStatus, claim, fail, new_job, retry, succeed
from chatsvg_core.retry import GiveUp, GiveUpReason, Retry, RetryPolicy
from chatsvg_core.testing import FakeClock

OUTCOMES = {
    "ok": None,
    "503": errors.ProviderTransientError("busy", status=503),
    "429": errors.ProviderTransientError("slow down", status=429, retry_after=45),
    "truncated": errors.TruncatedSVG("cut"),
    "refused": errors.ProviderPermanentError("refused", status=400),
    "no_svg": errors.NoSVGFound("none"),
}


@settings(max_examples=150)
@given(
    st.integers(1, 6),
    st.none() | st.floats(1, 600),
    st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=1, max_size=8),
    st.integers(0, 2**32),
    st.floats(0, 20),
)
def test_a_job_driven_by_decide_ends_succeeded_or_failed_within_its_attempts(
    max_attempts: int, deadline: float | None, script: list[str], seed: int, run_time: float
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, deadline=deadline)
    clock = FakeClock()
    rng = random.Random(seed)
    job = new_job(
        job_id="j1",
        owner="o",
        request={"prompt": "a cat"},
        request_hash="h",
        now=clock.now(),
        max_attempts=policy.max_attempts,
    )
    previous: float | None = None
    decisions: list[Retry | GiveUp] = []
    while job.status is JobStatus.QUEUED:
        clock.set(max(clock.now(), job.run_at))
        job = claim(job, now=clock.now(), worker_id="w", lease=timedelta(minutes=5))
        assert job.lease_token is not None
        clock.advance(run_time)  # the attempt takes this long
        error = OUTCOMES[script[(job.attempt - 1) % len(script)]]
        if error is None:
            job = succeed(job, now=clock.now(), token=job.lease_token, result_ref="r")
            break
        now = clock.now()
        decision = policy.decide(
            error,
            job.attempt,
            (now - job.created_at).total_seconds(),
            rng=rng,
            previous=previous,
            now=now,
        )
        decisions.append(decision)
        info = JobErrorInfo.from_exception(error)
        if isinstance(decision, Retry):
            # never raises: the policy only retries while the job has attempts left
            job = retry(
                job,
                now=now,
                token=job.lease_token,
                error=info,
                run_at=now + timedelta(seconds=decision.delay),
            )
            previous = decision.delay
        else:
            job = fail(job, now=now, token=job.lease_token, error=info)

    assert job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
    assert 1 <= job.attempt <= policy.max_attempts
    if job.status is JobStatus.FAILED:
        last = decisions[-1]
        assert isinstance(last, GiveUp)
        assert job.last_error is not None
        if last.reason is GiveUpReason.PERMANENT:
            assert not job.last_error.transient
        if last.reason is GiveUpReason.ATTEMPTS_EXHAUSTED:
            assert job.attempt == policy.max_attempts
    if deadline is not None:
        waited = sum(d.delay for d in decisions if isinstance(d, Retry))
        assert waited <= deadline


def test_a_rate_limited_job_is_re_enqueued_after_retry_after() -> None:
    clock = FakeClock()
    policy = RetryPolicy()
    job = new_job(
        job_id="j2", owner="o", request={}, request_hash="h", now=clock.now(), max_attempts=5
    )
    job = claim(job, now=clock.now(), worker_id="w", lease=timedelta(minutes=1))
    decision = policy.decide(OUTCOMES["429"], job.attempt, 0.0, now=clock.now())
    assert decision == Retry(45.0)
    assert job.lease_token is not None
    job = retry(
        job,
        now=clock.now(),
        token=job.lease_token,
        run_at=clock.now() + timedelta(seconds=45),
        error=JobErrorInfo.from_exception(OUTCOMES["429"]),
    )
    assert job.run_at - clock.now() == timedelta(seconds=45)
