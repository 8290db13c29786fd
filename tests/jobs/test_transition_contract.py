"""The state machine's contract at its edges: what each refusal says, exact boundaries.

Written from the survivors of a mutation run (docs/mutation.md): every test
here failed against at least one mutant of ``jobs/_transitions.py`` that the
rest of ``tests/jobs`` let through.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatsvg_core import errors
from chatsvg_core.jobs import (
    ALLOWED,
    Job,
    JobErrorInfo,
    JobStatus,
    cancel,
    claim,
    expire,
    fail,
    heartbeat,
    new_job,
    retry,
    succeed,
)

Q, R, S, F = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
ERR = JobErrorInfo(code="x", type="X", message="boom", transient=True)
W = "w"


def queued(max_attempts: int = 3) -> Job:
    return new_job(
        job_id="job-1",
        owner="alice",
        request={"prompt": "a red circle"},
        request_hash="v1:00",
        now=T0,
        max_attempts=max_attempts,
    )


def running(max_attempts: int = 3) -> Job:
    return claim(queued(max_attempts), now=T0, worker_id="w1", lease=LEASE)


def succeeded() -> Job:
    return succeed(running(), now=T0, token=1, result_ref="r")


def failed() -> Job:
    return fail(queued(), now=T0, error=ERR)


def refusal(call: object) -> errors.InvalidTransition:
    assert callable(call)
    with pytest.raises(errors.InvalidTransition) as caught:
        call()
    return caught.value


# --- the published table ----------------------------------------------------------


def test_allowed_table_names_each_edge_in_its_direction() -> None:
    # ALLOWED is public: hosts render it; an inverted pair would read as the opposite edge.
    assert ALLOWED["claim"] == {(Q, R)}
    assert ALLOWED["heartbeat"] == {(R, R)}
    assert ALLOWED["succeed"] == {(R, S)}
    assert ALLOWED["retry"] == {(R, Q)}
    assert (R, F) in ALLOWED["fail"] and (Q, F) in ALLOWED["fail"]
    assert ALLOWED["expire"] == {(R, Q), (R, F)}
    assert ALLOWED["cancel"] == {(Q, F), (R, F)}


# --- what a refusal says --------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "job", "call", "reason"),
    [
        (
            "claim",
            "running",
            lambda j: claim(j, now=T0, worker_id="w", lease=LEASE),
            "wrong_status",
        ),
        ("claim", "succeeded", lambda j: claim(j, now=T0, worker_id=W, lease=LEASE), "terminal"),
        ("claim", "failed", lambda j: claim(j, now=T0, worker_id=W, lease=LEASE), "terminal"),
        (
            "heartbeat",
            "queued",
            lambda j: heartbeat(j, now=T0, token=1, lease=LEASE),
            "wrong_status",
        ),
        ("heartbeat", "failed", lambda j: heartbeat(j, now=T0, token=1, lease=LEASE), "terminal"),
        (
            "succeed",
            "queued",
            lambda j: succeed(j, now=T0, token=1, result_ref="r"),
            "wrong_status",
        ),
        ("succeed", "succeeded", lambda j: succeed(j, now=T0, token=1, result_ref="r"), "terminal"),
        (
            "retry",
            "queued",
            lambda j: retry(j, now=T0, token=1, run_at=T0, error=ERR),
            "wrong_status",
        ),
        ("fail", "running", lambda j: fail(j, now=T0, error=ERR), "wrong_status"),
        ("fail", "failed", lambda j: fail(j, now=T0, error=ERR), "terminal"),
        ("fail", "queued", lambda j: fail(j, now=T0, error=ERR, token=1), "wrong_status"),
        ("expire", "queued", lambda j: expire(j, now=T0 + LEASE), "wrong_status"),
        ("expire", "succeeded", lambda j: expire(j, now=T0 + LEASE), "terminal"),
    ],
)
def test_a_refusal_names_the_action_the_status_and_the_reason(
    action: str, job: str, call: object, reason: str
) -> None:
    subject = {"queued": queued, "running": running, "succeeded": succeeded, "failed": failed}[
        job
    ]()
    assert callable(call)
    exc = refusal(lambda: call(subject))
    assert type(exc) is errors.InvalidTransition  # not StaleLease: the status decides first
    assert exc.fields == {
        "job_id": subject.id,
        "status": subject.status.value,
        "action": action,
        "reason": reason,
    }
    assert exc.message == (
        f"cannot {action} job {subject.id} in status {subject.status.value}: {reason}"
    )


@pytest.mark.parametrize(
    ("action", "call"),
    [
        ("heartbeat", lambda j: heartbeat(j, now=T0, token=2, lease=LEASE)),
        ("succeed", lambda j: succeed(j, now=T0, token=2, result_ref="r")),
        ("retry", lambda j: retry(j, now=T0, token=2, run_at=T0, error=ERR)),
        ("fail", lambda j: fail(j, now=T0, error=ERR, token=2)),
    ],
)
def test_a_stale_token_is_named_with_both_tokens(action: str, call: object) -> None:
    job = running()
    assert callable(call)
    with pytest.raises(errors.StaleLease) as caught:
        call(job)
    exc = caught.value
    assert exc.fields == {
        "job_id": job.id,
        "status": "running",
        "action": action,
        "reason": "stale_token",
        "token": 2,
        "current_token": 1,
    }
    assert exc.message == f"cannot {action} job {job.id}: lease token 2 is stale (current 1)"


def test_not_due_and_live_lease_refusals_say_so() -> None:
    later = new_job(
        job_id="job-2",
        owner="alice",
        request={},
        request_hash="v1:00",
        now=T0,
        run_at=T0 + timedelta(seconds=5),
    )
    assert later.run_at == T0 + timedelta(seconds=5)
    exc = refusal(lambda: claim(later, now=T0, worker_id="w", lease=LEASE))
    assert (exc.action, exc.reason, exc.status) == ("claim", "not_due", "queued")
    exc = refusal(lambda: expire(running(), now=T0 + LEASE - timedelta(microseconds=1)))
    assert (exc.action, exc.reason, exc.status) == ("expire", "lease_live", "running")


# --- boundaries -------------------------------------------------------------------


def test_new_job_defaults_to_three_attempts() -> None:
    assert queued().max_attempts == 3
    assert new_job(job_id="j", owner="o", request={}, request_hash="h", now=T0).max_attempts == 3


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
def test_claim_is_refused_exactly_when_the_attempts_are_spent(max_attempts: int) -> None:
    job = queued(max_attempts)
    for attempt in range(1, max_attempts + 1):
        job = claim(job, now=T0, worker_id="w", lease=LEASE)
        assert job.attempt == attempt
        if attempt < max_attempts:
            job = retry(job, now=T0, token=attempt, run_at=T0, error=ERR)
    assert job.status is R
    requeued = job.evolve(status=Q, lease_token=None, lease_expires_at=None, worker_id=None)
    exc = refusal(lambda: claim(requeued, now=T0, worker_id="w", lease=LEASE))
    assert (exc.action, exc.reason) == ("claim", "attempts_exhausted")
    exc = refusal(lambda: retry(job, now=T0, token=max_attempts, run_at=T0, error=ERR))
    assert (exc.action, exc.reason) == ("retry", "attempts_exhausted")


@pytest.mark.parametrize("lease", [timedelta(0), timedelta(microseconds=-1), timedelta(days=-1)])
def test_a_lease_must_last_a_positive_time(lease: timedelta) -> None:
    with pytest.raises(ValueError, match=r"^a lease must last a positive time$"):
        claim(queued(), now=T0, worker_id="w", lease=lease)
    with pytest.raises(ValueError, match=r"^a lease must last a positive time$"):
        heartbeat(running(), now=T0, token=1, lease=lease)
    assert claim(queued(), now=T0, worker_id="w", lease=timedelta(microseconds=1)).lease_expires_at


def test_a_retry_may_be_due_now_but_never_in_the_past() -> None:
    job = retry(running(), now=T0, token=1, run_at=T0, error=ERR)
    assert job.run_at == T0
    with pytest.raises(ValueError, match=r"^run_at of a retry is never in the past$"):
        retry(running(), now=T0, token=1, run_at=T0 - timedelta(microseconds=1), error=ERR)


def test_a_lapsed_lease_is_recorded_as_a_transient_failure() -> None:
    for max_attempts, status in ((1, F), (2, Q)):
        job = expire(running(max_attempts), now=T0 + LEASE)
        assert job.status is status
        assert job.last_error is not None
        assert job.last_error.transient is True
        assert job.last_error.code == "lease_expired"


# --- every write moves version and updated_at -----------------------------------------


def test_every_transition_bumps_the_version_by_one_and_stamps_the_time() -> None:
    # Each step at a new time, so a step that forgot to stamp keeps the previous one.
    times = iter(T0 + timedelta(seconds=n) for n in range(1, 100))
    job = queued()
    steps = [
        lambda j, t: claim(j, now=t, worker_id=W, lease=LEASE),
        lambda j, t: heartbeat(j, now=t, token=1, lease=LEASE),
        lambda j, t: retry(j, now=t, token=1, run_at=t, error=ERR),
        lambda j, t: claim(j, now=t, worker_id=W, lease=LEASE),
        lambda j, t: succeed(j, now=t, token=2, result_ref="r"),
    ]
    for step in steps:
        at = next(times)
        new = step(job, at)
        assert new.version == job.version + 1
        assert new.updated_at == at
        job = new
    for start in (queued(), running()):
        at = next(times)
        token = None if start.status is Q else 1
        done = fail(start, now=at, error=ERR, token=token)
        assert (done.version, done.updated_at, done.last_error) == (start.version + 1, at, ERR)
        gone = cancel(start, now=at)
        assert (gone.version, gone.updated_at) == (start.version + 1, at)
    for max_attempts in (1, 2):  # back to QUEUED, or FAILED with no attempt left
        lapsed = running(max_attempts)
        at = lapsed.lease_expires_at
        assert at is not None
        gone = expire(lapsed, now=at)
        assert (gone.version, gone.updated_at) == (lapsed.version + 1, at)


@pytest.mark.parametrize(("worker_id", "named"), [(7, "int"), (None, "NoneType"), (b"w", "bytes")])
def test_a_worker_id_that_is_not_a_string_is_named(worker_id: object, named: str) -> None:
    with pytest.raises(ValueError, match=rf"^worker_id is a string, not {named}$"):
        claim(queued(), now=T0, worker_id=worker_id, lease=LEASE)  # type: ignore[arg-type]


# --- what a lapsed lease and a cancel record --------------------------------------------


def test_a_lapsed_lease_records_who_lost_it_and_on_which_attempt() -> None:
    job = running()
    gone = expire(job, now=T0 + LEASE)
    assert gone.last_error == JobErrorInfo(
        code="lease_expired",
        type="LeaseExpired",
        message="worker 'w1' lost its lease on attempt 1",
        transient=True,
        fields={"worker_id": "w1", "attempt": 1},
    )


@pytest.mark.parametrize("reason", [None, "", "changed my mind"])
def test_a_cancel_is_a_permanent_failure_that_says_when_and_why(reason: str | None) -> None:
    for start in (queued(), running()):
        gone = cancel(start, now=T0, reason=reason)
        assert gone.status is F
        assert (gone.lease_token, gone.lease_expires_at) == (None, None)
        assert gone.last_error == JobErrorInfo(
            code="cancelled",
            type="JobCancelled",
            message="cancelled by its owner" + (f": {reason}" if reason else ""),
            transient=False,
            fields={"while": start.status.value, "attempt": start.attempt},
        )
    for done in (succeeded(), failed()):
        exc = refusal(lambda d=done: cancel(d, now=T0))
        assert (exc.action, exc.reason, exc.status) == ("cancel", "terminal", done.status.value)


def test_the_trace_context_is_kept_as_given_and_empty_means_none() -> None:
    carried = new_job(
        job_id="j",
        owner="o",
        request={},
        request_hash="h",
        now=T0,
        trace_context={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )
    assert carried.trace_context == {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    bare = new_job(job_id="j", owner="o", request={}, request_hash="h", now=T0, trace_context={})
    assert bare.trace_context is None


# --- a heartbeat never shortens a lease -------------------------------------------------


@given(
    first=st.integers(min_value=1, max_value=10_000),
    second=st.integers(min_value=1, max_value=10_000),
    gap=st.integers(min_value=-10_000, max_value=10_000),
)
def test_a_heartbeat_never_shortens_a_lease(first: int, second: int, gap: int) -> None:
    job = claim(queued(), now=T0, worker_id="w", lease=timedelta(seconds=first))
    now = T0 + timedelta(seconds=gap)
    beat = heartbeat(job, now=now, token=1, lease=timedelta(seconds=second))
    assert job.lease_expires_at is not None and beat.lease_expires_at is not None
    assert beat.lease_expires_at == max(job.lease_expires_at, now + timedelta(seconds=second))


def test_a_lapsed_lease_requeues_at_its_retry_time_and_frees_the_worker() -> None:
    job = running(max_attempts=2)
    lapsed = T0 + LEASE
    later = lapsed + timedelta(seconds=10)
    requeued = expire(job, now=lapsed, run_at=later)
    assert (requeued.status, requeued.run_at, requeued.worker_id) == (Q, later, None)
    # A due time in the past is never written: the job is due now.
    assert expire(job, now=lapsed, run_at=T0 - timedelta(seconds=1)).run_at == lapsed
    assert expire(job, now=lapsed).run_at == lapsed
    # With no attempt left it fails instead, and keeps who lost it for the record.
    assert expire(running(max_attempts=1), now=lapsed).worker_id == "w1"
