"""The job a log record is about, carried by a context variable.

The engine sets it around each attempt; loggers deeper down (retry decisions,
the provider's HTTP calls) add its fields to their records' ``extra``, so
every record about a job carries ``job_id``, ``owner`` and ``attempt``
without threading them through every call.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token

__all__ = ["job_fields", "job_log_context"]

_JOB: ContextVar[Mapping[str, object] | None] = ContextVar("chatsvg_job", default=None)


def job_fields() -> dict[str, object]:
    """``job_id``, ``owner`` and ``attempt`` of the job being worked on, or ``{}``."""
    current = _JOB.get()
    return dict(current) if current else {}


class job_log_context:
    """Records logged inside (in this task and tasks it starts) name this job.

    A class, not ``@contextmanager``: entered once per job, where the
    generator machinery cost more than setting the variable.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, job_id: str, owner: str, attempt: int) -> None:
        self._fields: Mapping[str, object] = {
            "job_id": job_id,
            "owner": owner,
            "attempt": attempt,
        }
        self._token: Token[Mapping[str, object] | None] | None = None

    def __enter__(self) -> None:
        self._token = _JOB.set(self._fields)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _JOB.reset(self._token)
            self._token = None
