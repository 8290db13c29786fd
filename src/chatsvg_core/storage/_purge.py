"""Retention: the optional primitive that deletes old terminal jobs (never ledger entries)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["JobPurger"]


@runtime_checkable
class JobPurger(Protocol):
    """A transaction that can delete old terminal jobs and their results.

    Optional: ``Engine.purge`` needs it (memory, SQLite and PostgreSQL have it).
    """

    async def purge_jobs(self, *, before: datetime, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` jobs, with their results; return how many.

        Only jobs that are all of: SUCCEEDED or FAILED; last changed before
        ``before``; named by no idempotency record live at ``now`` (a replay
        would find no job); and settled (a FAILED job's charge refunded, any
        reservation captured or released, so recovery has nothing left to
        give back). Ledger entries are never deleted: they keep every charge
        and refund exactly-once by ``(kind, ref)`` after the job is gone.
        PostgreSQL skips rows other purgers hold (``SKIP LOCKED``).
        """
        ...
