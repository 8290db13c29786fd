"""The job model's unvalidated fast paths equal the validated model they stand for.

``Job._step`` (what the transitions build their result with) and
``Job._from_trusted`` (what the SQL stores decode rows with) skip pydantic's
per-field validation; these properties hold them to ``Job.evolve`` and
``Job.model_validate`` on every job shape the state machine reaches.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
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


# --- new_job's fast path ----------------------------------------------------------

_ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=8),
    st.floats(allow_nan=False),
    st.just(float("nan")),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _old_new_job(**kw: object) -> Job:
    """new_job as it was before its fast path: every field through pydantic."""
    from chatsvg_core._clock import utc

    now = utc(kw["now"])  # type: ignore[arg-type]
    run_at = kw.get("run_at")
    trace = kw.get("trace_context")
    return Job.model_validate(
        {
            "id": kw["job_id"],
            "owner": kw["owner"],
            "request": dict(kw["request"]),  # type: ignore[call-overload]
            "request_hash": kw["request_hash"],
            "idempotency_key": kw.get("idempotency_key"),
            "max_attempts": kw.get("max_attempts", 3),
            "run_at": utc(run_at) if run_at is not None else now,  # type: ignore[arg-type]
            "created_at": now,
            "updated_at": now,
            "trace_context": dict(trace) if trace else None,  # type: ignore[call-overload]
        }
    )


def _outcome(make: object, kw: dict[str, object]) -> tuple[str, object]:
    try:
        job = make(**kw)  # type: ignore[operator]
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return "error", type(exc).__name__
    return "job", (job, job.model_dump(), {k: type(v) for k, v in job.__dict__.items()})


_ID = st.text(min_size=1, max_size=20)
_SPOILS: list[tuple[str, object]] = [
    # One field at a time made something validation converts or refuses.
    *(("job_id", v) for v in ["", "j" * 128, "j" * 129, None, 7]),
    *(("owner", v) for v in ["", "o" * 255, "o" * 256, None, 7]),
    *(("request_hash", v) for v in [None, 7, b"h"]),
    *(("idempotency_key", v) for v in [7, b"k", ""]),
    *(("max_attempts", v) for v in [0, -1, 1, True, 2.0, "3"]),
    *(("trace_context", v) for v in [{}, {"a": 1}, {"a": b"x"}, {1: "a"}, {"a": None}]),
]


@pytest.mark.parametrize("spoil", [None, *_SPOILS], ids=repr)
@settings(max_examples=40)
@given(
    job_id=_ID,
    owner=_ID,
    request=st.dictionaries(st.text(max_size=6), st.one_of(st.none(), st.text(max_size=5))),
    odd_value=st.one_of(st.none(), _ANY_SCALAR),
    odd_key=st.one_of(st.text(max_size=3), st.integers(), st.none()),
    request_hash=_ID,
    key=st.one_of(st.none(), _ID),
    max_attempts=st.integers(1, 6),
    tz=st.sampled_from(["utc", "utc", "plus5", "naive"]),
    trace=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5))),
    later=st.one_of(st.none(), st.integers(0, 10)),
)
def test_new_job_fast_path_equals_validation(
    job_id: str,
    owner: str,
    request: dict[object, object],
    odd_value: object,
    odd_key: object,
    request_hash: str,
    key: str | None,
    max_attempts: int,
    tz: str,
    trace: dict[str, str] | None,
    later: int | None,
    spoil: tuple[str, object] | None,
) -> None:
    from datetime import UTC, datetime, timezone

    from chatsvg_core.jobs import new_job

    zone = {"utc": UTC, "plus5": timezone(timedelta(hours=5)), "naive": None}[tz]
    now = datetime(2026, 3, 1, 12, 0, tzinfo=zone)
    if odd_value is not None:
        request = {**request, odd_key: odd_value}  # a value or key of any kind
    kw: dict[str, object] = {
        "job_id": job_id,
        "owner": owner,
        "request": request,
        "request_hash": request_hash,
        "idempotency_key": key,
        "max_attempts": max_attempts,
        "now": now,
        "trace_context": trace,
    }
    if later is not None:
        kw["run_at"] = now + timedelta(seconds=later)
    if spoil is not None:
        kw[spoil[0]] = spoil[1]
    assert _outcome(new_job, kw) == _outcome(_old_new_job, kw)


class _Moment(datetime):
    """A datetime subclass, as some hosts' time libraries hand out."""


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"job_id": "j"},
        {"job_id": "j" * 128},
        {"owner": "o"},
        {"owner": "o" * 255},
        {"max_attempts": 1},
        {"idempotency_key": "k"},
        {"trace_context": {"traceparent": "00-ab-cd-01"}},
        {"request": {"prompt": "a lighthouse", "n": 1, "flag": True, "none": None}},
        {"now": _Moment(2026, 3, 1, 12, 0, tzinfo=UTC)},
        {"run_at": _Moment(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=5)))},
    ],
    ids=repr,
)
def test_plain_values_take_the_fast_path(
    monkeypatch: pytest.MonkeyPatch, change: dict[str, object]
) -> None:
    # The fast path is the point of new_job's check (a third of a submit's Python):
    # every plain value, at the edges of its range too, must be built without
    # validation, and must still equal what validation makes of it (a datetime
    # subclass included: validation hands it back as it is).
    from chatsvg_core.jobs import new_job

    kw: dict[str, object] = {
        "job_id": "job-1",
        "owner": "alice",
        "request": {"prompt": "a lighthouse"},
        "request_hash": "h",
        "now": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        **change,
    }
    expected = _old_new_job(**kw)

    def refuse(*args: object, **kwargs: object) -> Job:
        raise AssertionError("a plain new job went through validation")

    with monkeypatch.context() as patch:
        patch.setattr(Job, "model_validate", refuse)
        job = new_job(**kw)  # type: ignore[arg-type]
    assert job == expected
    assert job.model_dump() == expected.model_dump()
    assert {k: type(v) for k, v in job.__dict__.items()} == {
        k: type(v) for k, v in expected.__dict__.items()
    }


@given(
    job_id=st.text(min_size=1, max_size=128),
    owner=st.text(min_size=1, max_size=255),
    request=st.dictionaries(
        st.text(max_size=8),
        st.text(max_size=8) | st.integers() | st.booleans() | st.none(),
        max_size=6,
    ),
    request_hash=st.text(max_size=70),
    key=st.none() | st.text(min_size=1, max_size=20),
    max_attempts=st.integers(min_value=1, max_value=10**6),
    now=st.datetimes(timezones=st.just(UTC)),
)
@settings(max_examples=300)
def test_the_engines_plain_new_job_is_new_job(
    job_id: str,
    owner: str,
    request: dict[str, object],
    request_hash: str,
    key: str | None,
    max_attempts: int,
    now: datetime,
) -> None:
    # What the engine's submit builds for a plain request, without new_job's
    # checks, equals the validated job (field types and order included).
    from chatsvg_core.jobs._transitions import plain_new_job

    kw: dict[str, object] = {
        "job_id": job_id,
        "owner": owner,
        "request": request,
        "request_hash": request_hash,
        "idempotency_key": key,
        "now": now,
        "max_attempts": max_attempts,
    }
    expected = _old_new_job(**kw)
    job = plain_new_job(job_id, owner, dict(request), request_hash, key, now, max_attempts)
    assert job == expected
    assert job.model_dump() == expected.model_dump()
    assert list(job.__dict__) == list(expected.__dict__)
    assert {k: type(v) for k, v in job.__dict__.items()} == {
        k: type(v) for k, v in expected.__dict__.items()
    }
    # Its fields set comes from a shared frozenset of the names (not set(data)).
    assert job.model_fields_set == set(job.__dict__) == set(Job.model_fields)
    assert list(job.__dict__) == list(Job.model_fields)


@given(reachable_jobs(), st.integers(min_value=0, max_value=50), st.integers(0, 10**6))
def test_a_held_jobs_success_equals_the_succeed_transition(
    job: Job, moved: int, advance: int
) -> None:
    # complete_job's fast path for the lease holder (storage._jobs._succeeded):
    # what succeed() makes, with the version the store reports.
    from chatsvg_core.jobs import succeed
    from chatsvg_core.storage._jobs import _succeeded

    if job.status is not JobStatus.RUNNING:
        return
    assert job.lease_token is not None
    now = job.updated_at + timedelta(microseconds=advance)
    version = job.version + 1 + moved
    reference = succeed(job, now=now, token=job.lease_token, result_ref=job.id)
    reference = reference._step(version=version)
    fast = _succeeded(job, now, version)
    assert fast == reference == _validated(fast)
    assert fast.model_dump() == reference.model_dump()
    assert fast.model_fields_set == reference.model_fields_set
    assert list(fast.__dict__) == list(reference.__dict__)
