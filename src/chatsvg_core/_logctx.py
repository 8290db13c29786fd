"""The job a log record is about, carried by a context variable.

The engine sets it around each attempt; loggers deeper down (retry decisions,
the provider's HTTP calls) add its fields to their records' ``extra``, so
every record about a job carries ``job_id``, ``owner`` and ``attempt``
without threading them through every call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["job_fields", "job_log_context"]

_JOB: ContextVar[Mapping[str, object] | None] = ContextVar("chatsvg_job", default=None)


def job_fields() -> dict[str, object]:
    """``job_id``, ``owner`` and ``attempt`` of the job being worked on, or ``{}``."""
    current = _JOB.get()
    return dict(current) if current else {}


@contextmanager
def job_log_context(job_id: str, owner: str, attempt: int) -> Iterator[None]:
    """Records logged inside (in this task and tasks it starts) name this job."""
    token = _JOB.set({"job_id": job_id, "owner": owner, "attempt": attempt})
    try:
        yield
    finally:
        _JOB.reset(token)
