"""The job model's unvalidated fast paths equal the validated model they stand for.

``Job._step`` (what the transitions build their result with) and
``Job._from_trusted`` (what the SQL stores decode rows with) skip pydantic's
per-field validation; these properties hold them to ``Job.evolve`` and
``Job.model_validate`` on every job shape the state machine reaches.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatsvg_core.errors import InvalidTransition
from chatsvg_core.jobs import Job, JobErrorInfo, JobStatus, fail, retry
from chatsvg_core.testing.strategies import (
    JobStep,
    apply_job_step,
    job_steps,
    reachable_jobs,
)


def _validated(job: Job) -> Job:
    return Job.model_validate(job.model_dump())


@given(reachable_jobs(), job_steps())
def test_every_transition_equals_its_validated_result(job: Job, step: JobStep) -> None:
    now = job.updated_at + timedelta(seconds=step.advance)
    with contextlib.suppress(InvalidTransition):
        after = apply_job_step(job, step, now)
        assert after == _validated(after)
        assert after.model_dump() == _validated(after).model_dump()
        # And equal to what the fully validated evolve would have made.
        changes = {k: v for k, v in after.__dict__.items() if job.__dict__[k] != v}
        assert job.evolve(**changes) == after


@given(reachable_jobs())
def test_trusted_construction_equals_validation(job: Job) -> None:
    # _from_trusted takes decoded values (a JobStatus, aware datetimes, a
    # JobErrorInfo), as the SQL stores' row decoder hands them.
    assert Job._from_trusted(dict(job.__dict__)) == Job.model_validate(job.model_dump())


def _running(job: Job) -> dict[str, object]:
    data = job.model_dump()
    data["status"] = JobStatus.RUNNING
    return data


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"lease_token": None}, "lease_token is set exactly while RUNNING"),
        ({"lease_expires_at": None}, "lease_expires_at is set exactly while RUNNING"),
        ({"lease_token": 7}, "lease_token equals the attempt"),
        ({"attempt": 9, "lease_token": 9}, "attempt never exceeds max_attempts"),
        ({"result_ref": "x"}, "result_ref is set exactly when SUCCEEDED"),
    ],
)
def test_trusted_construction_still_refuses_inconsistent_rows(
    change: dict[str, object], rule: str
) -> None:
    from chatsvg_core.jobs import claim, new_job

    fresh = new_job(
        job_id="j1",
        owner="o",
        request={"prompt": "p"},
        request_hash="h",
        now=__import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC),
    )
    running = claim(fresh, now=fresh.created_at, worker_id="w", lease=timedelta(seconds=5))
    data = running.model_dump()
    data.update(change)
    with pytest.raises(ValueError, match=rule):
        Job._from_trusted(data)
    with pytest.raises(ValueError, match=rule):
        Job.model_validate(data)


@given(reachable_jobs(), st.sampled_from(["retry", "fail"]))
def test_an_error_given_as_a_mapping_is_validated_as_evolve_did(job: Job, action: str) -> None:
    if job.status is not JobStatus.RUNNING:
        return
    assert job.lease_token is not None
    error = {"code": "x", "type": "X", "message": "m", "transient": True}
    now = job.updated_at
    with contextlib.suppress(InvalidTransition):
        if action == "retry":
            after = retry(job, now=now, token=job.lease_token, run_at=now, error=error)  # type: ignore[arg-type]
        else:
            after = fail(job, now=now, token=job.lease_token, error=error)  # type: ignore[arg-type]
        assert isinstance(after.last_error, JobErrorInfo)
        assert after == _validated(after)


def test_claim_refuses_a_worker_id_that_is_not_a_string() -> None:
    from datetime import UTC, datetime

    from chatsvg_core.jobs import claim, new_job

    fresh = new_job(
        job_id="j1", owner="o", request={"prompt": "p"}, request_hash="h", now=datetime.now(UTC)
    )
    with pytest.raises(ValueError, match="worker_id"):
        claim(fresh, now=fresh.created_at, worker_id=7, lease=timedelta(seconds=5))  # type: ignore[arg-type]
