"""What a storage backend implements: small primitive operations inside a transaction.

A backend gives one :class:`Store`; ``async with store.transaction() as tx``
opens one database transaction, and every primitive below runs inside it.
The logic that must be right (the state machine, idempotent creation, the
ledger's exactly-once and never-negative rules) is written once, over these
primitives, in :mod:`chatsvg_core.jobs`, :mod:`chatsvg_core.idempotency` and
:mod:`chatsvg_core.ledger`; a backend only has to make each primitive atomic
and honour the locking promises stated on it. The conformance suite in
:mod:`chatsvg_core.testing` checks those promises on a host's own backend.

Rules every backend keeps:

* Leaving the ``transaction()`` block normally commits; an exception rolls
  back everything written in it and propagates unchanged (a lost connection
  becomes :class:`~chatsvg_core.errors.StorageUnavailable`).
* Nothing is visible to other transactions before commit.
* Uniqueness lives in the store, not only in Python: one job per id, one
  idempotency record per (scope, key), one ledger entry per (kind, ref)
  when ``ref`` is set.
* After ``aclose()``, ``transaction()`` raises
  :class:`~chatsvg_core.storage.StoreClosed`; so does any primitive called on
  a transaction whose block has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Protocol, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from chatsvg_core._clock import utc
from chatsvg_core.jobs import Job, JobStatus

__all__ = [
    "EntryKind",
    "IdempotencyRecord",
    "JobResult",
    "LedgerEntry",
    "Store",
    "StoreTransaction",
]

UTCDateTime = Annotated[datetime, AfterValidator(utc)]


class IdempotencyRecord(BaseModel):
    """One (scope, key) → job mapping, live until ``expires_at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: str = Field(min_length=1, max_length=512)
    key: str = Field(min_length=1, max_length=255)
    request_hash: str
    job_id: str
    created_at: UTCDateTime
    expires_at: UTCDateTime


class EntryKind(StrEnum):
    """Kinds of ledger entry. Values are stable and stored as they are."""

    GRANT = "grant"
    """Credits bought or given (positive); ``ref`` is the external id, if any."""
    CHARGE = "charge"
    """A job's cost (negative); ``ref`` is the job id."""
    REFUND = "refund"
    """A charge returned (positive, the charge's amount); ``ref`` is the job id."""
    ADJUSTMENT = "adjustment"
    """A correction by an operator (either sign); ``ref`` optional."""
    RESERVE = "reserve"
    """Two-phase mode: credits held at claim (negative); ``ref`` is the job id."""
    CAPTURE = "capture"
    """Two-phase mode: a reservation made final (zero amount; marks it spent)."""
    RELEASE = "release"
    """Two-phase mode: a reservation returned (positive, the reserve's amount)."""


class LedgerEntry(BaseModel):
    """One append-only ledger line. The balance is the sum of an owner's amounts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    owner: str = Field(min_length=1, max_length=255)
    kind: EntryKind
    amount: int = Field(description="Signed credits: negative takes, positive gives.")
    ref: str | None = Field(
        default=None, description="Job id (charge/refund/reserve...) or external id (grant)."
    )
    memo: str | None = None
    created_at: UTCDateTime


class JobResult(BaseModel):
    """What a succeeded job produced: the sanitized SVG and plain-data metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    svg: str
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    created_at: UTCDateTime


@runtime_checkable
class StoreTransaction(Protocol):
    """The primitives available inside one transaction."""

    # --- jobs -------------------------------------------------------------
    async def insert_job(self, job: Job) -> None:
        """Insert a new job; an existing id is a programming error (``ValueError``)."""
        ...

    async def get_job(self, job_id: str, *, for_update: bool = False) -> Job | None:
        """The job, or ``None``. ``for_update`` locks its row until the transaction ends."""
        ...

    async def update_job(self, job: Job, *, expected_version: int) -> bool:
        """Compare-and-set: write ``job`` only if the stored version is ``expected_version``.

        Returns whether the write happened. A ``False`` means someone else
        changed the job first; nothing was written.
        """
        ...

    async def next_due_job(self, now: datetime) -> Job | None:
        """Lock and return one QUEUED job with ``run_at <= now``.

        Order: oldest ``run_at`` first, then oldest ``created_at``, then ``id``.

        Rows locked by other transactions are skipped (PostgreSQL:
        ``FOR UPDATE SKIP LOCKED``), so concurrent claimers get distinct jobs.
        """
        ...

    async def expired_jobs(self, now: datetime, *, limit: int) -> Sequence[Job]:
        """RUNNING jobs whose lease ended at or before ``now`` (not locked)."""
        ...

    async def list_jobs(
        self,
        *,
        owner: str | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> Sequence[Job]:
        """Jobs, newest ``created_at`` first (ties: ``id`` descending), optionally filtered.

        ``before`` pages: only jobs with ``created_at < before``; with
        ``before_id`` too, only jobs with ``(created_at, id) < (before, before_id)``
        (SQL: a row-value comparison), so a page boundary inside a run of equal
        timestamps loses nothing. Pass the last row's ``created_at`` and ``id``.
        """
        ...

    async def put_result(self, result: JobResult) -> JobResult:
        """Store a job's result once; a second put returns the first one unchanged."""
        ...

    async def get_result(self, job_id: str) -> JobResult | None:
        """The stored result of a job, or ``None``."""
        ...

    # --- idempotency --------------------------------------------------------
    async def claim_idempotency(
        self, record: IdempotencyRecord, *, now: datetime
    ) -> IdempotencyRecord:
        """Atomically make ``record`` the live one for its (scope, key), unless one is live.

        If no record exists for (scope, key), or the existing one expired at
        or before ``now``, store ``record`` and return it. Otherwise return the
        live record unchanged. Concurrent calls for one (scope, key) see one
        winner: the others wait for it (or retry) and get the winner's record.
        """
        ...

    async def prune_idempotency(self, now: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` records expired at or before ``now``; return how many."""
        ...

    # --- ledger -------------------------------------------------------------
    async def lock_account(self, owner: str, *, create: bool = False) -> bool:
        """Lock the owner's account until the transaction ends; return whether it exists.

        While one transaction holds the lock, another ``lock_account`` of the
        same owner waits. With ``create=True`` a missing account is created
        (and locked) first. This lock is what keeps balances and daily caps
        right under concurrency.
        """
        ...

    async def insert_entry(self, entry: LedgerEntry) -> LedgerEntry:
        """Append ``entry``; if one with the same (kind, ref) exists, return that one instead.

        Entries with ``ref=None`` are never deduplicated. The uniqueness is a
        database constraint, so it holds even without the account lock.
        """
        ...

    async def find_entry(self, kind: EntryKind, ref: str) -> LedgerEntry | None:
        """The entry of this kind for this reference, or ``None``."""
        ...

    async def balance(self, owner: str) -> int:
        """The sum of the owner's entry amounts (0 for no entries)."""
        ...

    async def sum_entries(
        self, owner: str, kinds: Sequence[EntryKind], *, since: datetime, until: datetime
    ) -> int:
        """Sum of the owner's amounts of ``kinds`` with ``since <= created_at < until``."""
        ...

    async def usage(self, owner: str, *, since: datetime, until: datetime) -> int:
        """Credits the owner spent in ``[since, until)``, net of what was given back.

        The negated sum of the owner's CHARGE and RESERVE entries with
        ``since <= created_at < until`` whose ``ref`` has no REFUND (for a
        charge) or RELEASE (for a reservation). A refunded charge therefore
        returns its credits to the day it was *made* in, whenever the refund
        happens; this is what daily caps are checked against. In SQL::

            SELECT COALESCE(-SUM(e.amount), 0) FROM entries e
             WHERE e.owner = :owner AND e.kind IN ('charge', 'reserve')
               AND e.created_at >= :since AND e.created_at < :until
               AND NOT EXISTS (SELECT 1 FROM entries r WHERE r.ref = e.ref
                     AND r.kind = CASE e.kind WHEN 'charge' THEN 'refund'
                                             ELSE 'release' END)
        """
        ...

    async def entries(
        self,
        owner: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> Sequence[LedgerEntry]:
        """The owner's entries, newest ``created_at`` first (ties: ``id`` descending).

        Paging as in :meth:`list_jobs`: ``created_at < before``, or with
        ``before_id`` the pair ``(created_at, id) < (before, before_id)``.
        """
        ...


@runtime_checkable
class Store(Protocol):
    """A storage backend: jobs, idempotency records, ledger and results, together."""

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        """Open one transaction; commit on normal exit, roll back on exception."""
        ...

    async def aclose(self) -> None:
        """Release connections. The store cannot be used afterwards (``StoreClosed``).

        Calling it again does nothing.
        """
        ...
