"""The job a log record is about, carried by a context variable.

The engine sets it around each attempt; loggers deeper down (retry decisions,
the provider's HTTP calls) add its fields to their records' ``extra``, so
every record about a job carries ``job_id``, ``owner`` and ``attempt``
without threading them through every call.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["JOB_FIELDS", "VarScope", "job_fields", "job_log_context"]

_JOB: ContextVar[Mapping[str, object] | None] = ContextVar("chatsvg_job", default=None)
JOB_FIELDS: ContextVar[Mapping[str, object] | None] = _JOB
"""The variable :func:`job_log_context` sets, for the engine's attempt, which sets
and resets it itself (a scope object and its two calls per job cost more)."""


def job_fields() -> dict[str, object]:
    """``job_id``, ``owner`` and ``attempt`` of the job being worked on, or ``{}``."""
    current = _JOB.get()
    return dict(current) if current else {}


class VarScope(Generic[T]):
    """Sets a context variable to ``value`` inside ``with``, and back after.

    A class, not ``@contextmanager``: entered once per job (the job's log
    fields, the progress hook), where the generator machinery cost more than
    setting the variable.
    """

    __slots__ = ("_token", "_value", "_var")

    def __init__(self, var: ContextVar[T], value: T) -> None:
        self._var = var
        self._value = value
        self._token: Token[T] | None = None

    def __enter__(self) -> None:
        self._token = self._var.set(self._value)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            self._var.reset(self._token)
            self._token = None


def job_log_context(job_id: str, owner: str, attempt: int) -> VarScope[Mapping[str, object] | None]:
    """Records logged inside (in this task and tasks it starts) name this job."""
    return VarScope(_JOB, {"job_id": job_id, "owner": owner, "attempt": attempt})
