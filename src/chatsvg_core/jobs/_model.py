"""The job record: a frozen pydantic model, changed only by the transition functions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

from chatsvg_core._clock import utc
from chatsvg_core._construct import built

__all__ = ["TERMINAL_STATUSES", "Job", "JobErrorInfo", "JobStatus"]

UTCDateTime = Annotated[datetime, AfterValidator(utc)]


class JobStatus(StrEnum):
    """Where a job stands. The string values are stable and stored as they are."""

    QUEUED = "queued"
    """Waiting to run, at or after ``run_at``."""
    RUNNING = "running"
    """Claimed by a worker holding a lease (``lease_token``, ``lease_expires_at``)."""
    SUCCEEDED = "succeeded"
    """Finished with a result; terminal."""
    FAILED = "failed"
    """Finished without a result; terminal."""

    @property
    def terminal(self) -> bool:
        """``True`` for SUCCEEDED and FAILED, which never change again."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


class JobErrorInfo(BaseModel):
    """What went wrong on a job's last failed attempt, kept as plain data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(description="The error's stable code, e.g. ``provider_transient``.")
    type: str = Field(description="The exception class name.")
    message: str
    transient: bool = Field(description="Whether a retry could have helped.")
    fields: dict[str, JsonValue] = Field(default_factory=dict)

    @classmethod
    def from_exception(cls, exc: BaseException) -> JobErrorInfo:
        """Describe any exception; library errors keep their code and fields."""
        from chatsvg_core.errors import ChatSVGError

        if isinstance(exc, ChatSVGError):
            body = exc.to_dict()
            fields = {k: v for k, v in body.items() if k not in {"code", "message", "transient"}}
            return cls(
                code=exc.code,
                type=type(exc).__name__,
                message=exc.message,
                transient=exc.transient,
                fields=fields,
            )
        return cls(
            code="unexpected_error", type=type(exc).__name__, message=str(exc), transient=False
        )


class Job(BaseModel):
    """One generation job. Frozen: every change makes a new ``Job``.

    The fencing token is ``lease_token``: the attempt number issued at claim
    time. It only grows, so a worker whose lease was lost and re-issued holds
    a smaller token than the current one and every write it makes is refused.
    ``version`` grows by one on every transition; stores compare-and-set on it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    owner: str = Field(min_length=1, max_length=255)
    request: dict[str, JsonValue] = Field(
        description="The validated generation request, in JSON form."
    )
    request_hash: str
    idempotency_key: str | None = None
    status: JobStatus = JobStatus.QUEUED
    attempt: int = Field(default=0, ge=0, description="How many times it was claimed.")
    max_attempts: int = Field(default=3, ge=1)
    run_at: UTCDateTime
    lease_expires_at: UTCDateTime | None = None
    lease_token: int | None = Field(default=None, ge=1)
    worker_id: str | None = None
    last_error: JobErrorInfo | None = None
    result_ref: str | None = None
    version: int = Field(default=0, ge=0)
    created_at: UTCDateTime
    updated_at: UTCDateTime
    trace_context: dict[str, str] | None = Field(
        default=None,
        description="The submitter's W3C trace context (``traceparent``, ``tracestate``), "
        "so a worker's spans link to the request that submitted the job.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Job:
        # The shape each status allows; a store that loads a row breaking it
        # has been written by something other than the transition functions.
        problem = _inconsistency(self.__dict__)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def terminal(self) -> bool:
        """``True`` once the job has SUCCEEDED or FAILED."""
        return self.status.terminal

    @property
    def attempts_left(self) -> int:
        """Claims still allowed."""
        return self.max_attempts - self.attempt

    def _repr_html_(self) -> str:
        from chatsvg_core._display import html_table

        error = f"{self.last_error.code}: {self.last_error.message}" if self.last_error else ""
        rows = [
            ("status", self.status.value),
            ("owner", self.owner),
            ("attempt", f"{self.attempt} / {self.max_attempts}"),
            ("prompt", self.request.get("prompt", "")),
            ("run at", self.run_at.isoformat()),
            ("lease until", self.lease_expires_at.isoformat() if self.lease_expires_at else ""),
            ("last error", error),
            ("created", self.created_at.isoformat()),
        ]
        return html_table(["field", "value"], rows, caption=f"job {self.id}")

    def evolve(self, **changes: Any) -> Job:
        """A validated copy with ``changes`` applied (fully revalidated, for any caller)."""
        data = self.model_dump()
        data.update(changes)
        return Job.model_validate(data)

    def _step(self, **changes: Any) -> Job:
        """:meth:`evolve` for the transition functions, without pydantic's revalidation.

        The transitions pass values of the right types (aware UTC datetimes,
        ints, a :class:`JobStatus`, a validated :class:`JobErrorInfo`) to a job
        that is already valid, so only the cross-field rules can break; those
        are checked here as the validator checks them. A test holds it equal
        to :meth:`evolve` for every transition.
        """
        data = dict(self.__dict__)
        data.update(changes)
        return _trusted(data)

    @classmethod
    def _from_trusted(cls, data: dict[str, Any]) -> Job:
        """A job from a store's row, decoded by the store itself (its columns are typed).

        Skips pydantic's per-field validation, which costs more than the
        statement that read the row; keeps the cross-field rules, so a row
        no transition could have written is still refused (``ValueError``).
        ``data`` must hold every field, with ``status`` a :class:`JobStatus`
        and datetimes aware UTC; it becomes the job's own dict.
        """
        return _trusted(data)


def _trusted(data: dict[str, Any]) -> Job:
    problem = _inconsistency(data)
    if problem is not None:
        raise ValueError(f"inconsistent job {data.get('id')!r}: {problem}")
    # data holds every field (the callers' contract), so its keys are the fields set.
    return built(Job, data)


def _inconsistency(data: dict[str, Any]) -> str | None:
    """Which cross-field rule of :class:`Job` ``data`` breaks, or ``None``."""
    running = data["status"] is JobStatus.RUNNING
    token = data["lease_token"]
    if running != (token is not None):
        return "lease_token is set exactly while RUNNING"
    if running != (data["lease_expires_at"] is not None):
        return "lease_expires_at is set exactly while RUNNING"
    if running and token != data["attempt"]:
        return "lease_token equals the attempt that holds it"
    if data["attempt"] > data["max_attempts"]:
        return "attempt never exceeds max_attempts"
    if (data["status"] is JobStatus.SUCCEEDED) != (data["result_ref"] is not None):
        return "result_ref is set exactly when SUCCEEDED"
    return None
