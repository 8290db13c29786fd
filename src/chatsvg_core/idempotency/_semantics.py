"""Replay and conflict semantics: the pure decision and the one atomic store step.

For one (scope, key) the first request wins and creates a job; a later
request with the same fingerprint gets that job back (a replay, whatever the
job's state); a later request with another fingerprint is refused with
:class:`~chatsvg_core.errors.IdempotencyConflict`. Records live for a TTL
(24 h by default); after it the key may be used again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from chatsvg_core._clock import utc
from chatsvg_core._construct import built
from chatsvg_core.errors import IdempotencyConflict, JobNotFound
from chatsvg_core.idempotency._keys import validate_idempotency_key
from chatsvg_core.jobs import Job
from chatsvg_core.storage import IdempotencyRecord, Store, StoreTransaction

__all__ = [
    "DEFAULT_TTL",
    "Created",
    "Replayed",
    "create_or_replay",
    "decide",
    "prune_expired",
]

DEFAULT_TTL: Final = timedelta(hours=24)
"""How long a key stays bound to its job unless the host says otherwise (Stripe's choice)."""


class Created(BaseModel):
    """This request won its key: a new job was (or, from :func:`decide`, is to be) created.

    ``job`` is set by :func:`create_or_replay`; :func:`decide` alone leaves it ``None``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Literal["created"] = "created"
    job_id: str
    record: IdempotencyRecord
    job: Job | None = None


class Replayed(BaseModel):
    """The key was already bound to this same request: here is the original job.

    The job may be in any state (queued, running, succeeded, failed); a host
    answers with it as it would for the first submit (Stripe returns the first
    response; the IETF draft allows the original status). ``job`` is set by
    :func:`create_or_replay`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Literal["replayed"] = "replayed"
    job_id: str
    record: IdempotencyRecord
    job: Job | None = None


def decide(existing: IdempotencyRecord, proposed: IdempotencyRecord) -> Created | Replayed:
    """The outcome for ``proposed`` given the live record ``existing`` for its (scope, key).

    ``existing`` is what :meth:`StoreTransaction.claim_idempotency` returned
    for ``proposed``: the proposed record itself if it won, else the live one.
    Job ids are fresh per submit, so the two are told apart by ``job_id``.

    Raises:
        IdempotencyConflict: same key, different request fingerprint (fields
            ``scope``, ``key``); hosts answer 422.
        ValueError: the records are for different (scope, key) pairs, or the
            store returned our job id with another fingerprint (a broken store).
    """
    if _created(existing, proposed):
        return _outcome(Created, "created", proposed.job_id, existing)
    return _outcome(Replayed, "replayed", existing.job_id, existing)


def _created(existing: IdempotencyRecord, proposed: IdempotencyRecord) -> bool:
    """:func:`decide` as a bool: ``True`` created, ``False`` replayed; raises as it does."""
    if existing.scope != proposed.scope or existing.key != proposed.key:
        raise ValueError("decide() compares records of one (scope, key)")
    if existing.job_id == proposed.job_id:
        if existing.request_hash != proposed.request_hash:
            raise ValueError(
                f"the store returned job {existing.job_id} with a fingerprint it was not given"
            )
        return True
    if existing.request_hash == proposed.request_hash:
        return False
    raise IdempotencyConflict(
        "this idempotency key was already used for a different request; "
        "send a new key for a new request",
        scope=existing.scope,
        key=existing.key,
    )


async def create_or_replay(
    tx: StoreTransaction,
    *,
    job: Job,
    scope: str,
    key: str,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
) -> Created | Replayed:
    """Claim (scope, key) for ``job`` and insert it, or return the job the key already has.

    Runs inside the caller's transaction: the claim and the insert commit
    together or not at all, so concurrent first submits with one key create
    one job (the store's ``claim_idempotency`` makes the others wait for the
    winner and see its record). ``job.request_hash`` is the fingerprint
    compared (compute it with :func:`~chatsvg_core.idempotency.request_hash`
    and the same ``scope``). The job is inserted only when this call won.

    Args:
        tx: an open store transaction.
        job: the new job, not yet stored (fresh id, QUEUED).
        scope: from :func:`~chatsvg_core.idempotency.idempotency_scope`.
        key: the client's key; validated here.
        now: the current time (aware); the record expires at ``now + ttl``.
        ttl: how long the key stays bound; must be positive.

    Returns:
        :class:`Created` with the new job, or :class:`Replayed` with the original job.

    Raises:
        InvalidIdempotencyKey: the key breaks a rule.
        IdempotencyConflict: the key is bound to a request with another fingerprint.
        JobNotFound: the live record names a job the store no longer has
            (jobs were deleted while their keys were still live).
        ValueError: a non-positive ``ttl``, or ``job.idempotency_key`` set to another key.
    """
    key = validate_idempotency_key(key)
    if ttl <= timedelta(0):
        raise ValueError(f"ttl must be positive, got {ttl}")
    if job.idempotency_key is not None and job.idempotency_key != key:
        raise ValueError("job.idempotency_key differs from the key being claimed")
    now = utc(now)
    proposed = record(
        scope=scope,
        key=key,
        request_hash=job.request_hash,
        job_id=job.id,
        created_at=now,
        expires_at=now + ttl,
    )
    job, existing, created = await bind_key(tx, job, proposed, now=now)
    if created:
        return _outcome(Created, "created", job.id, existing, job)
    return _outcome(Replayed, "replayed", job.id, existing, job)


async def bind_key(
    tx: StoreTransaction, job: Job, proposed: IdempotencyRecord, *, now: datetime
) -> tuple[Job, IdempotencyRecord, bool]:
    """:func:`create_or_replay`'s store steps, for callers that checked its arguments.

    ``proposed`` is the record for ``job`` (its key validated, ``now`` aware
    UTC, ``expires_at`` after it). Returns the job (the new one, or the one
    the key already names), the live record, and whether this call created it.
    The engine's submit calls this directly: the outcome models cost more than
    the statements they describe.
    """
    existing = await tx.claim_idempotency(proposed, now=now)
    if _created(existing, proposed):
        await tx.insert_job(job)
        return job, existing, True
    return await _original(tx, existing), existing, False


async def replay_or_refuse(
    tx: StoreTransaction, live: IdempotencyRecord, proposed: IdempotencyRecord
) -> Job:
    """:func:`bind_key`'s outcome when another job's record ``live`` kept the key.

    For the SQL stores' one-call claim and insert (the engine's submit), which
    returns the live record when ``proposed`` lost: the original job (a
    replay), or ``IdempotencyConflict`` for another fingerprint, or
    ``JobNotFound``, as :func:`bind_key` decides.
    """
    if _created(live, proposed):
        raise ValueError(f"the store kept the key for job {live.job_id} but did not insert it")
    return await _original(tx, live)


async def _original(tx: StoreTransaction, existing: IdempotencyRecord) -> Job:
    original = await tx.get_job(existing.job_id)
    if original is None:
        raise JobNotFound(
            f"idempotency key is bound to job {existing.job_id}, which no longer exists",
            job_id=existing.job_id,
        )
    return original


# The models of one submit, built without validation when every value is
# already what validation makes of it (chatsvg_core._construct); the property
# tests in tests/idempotency/test_idempotency_semantics.py hold them equal.


def record(
    *,
    scope: str,
    key: str,
    request_hash: str,
    job_id: str,
    created_at: datetime,
    expires_at: datetime,
) -> IdempotencyRecord:
    """``IdempotencyRecord(...)``."""
    if (
        type(scope) is str
        and 1 <= len(scope) <= 512
        and type(key) is str
        and 1 <= len(key) <= 255
        and type(request_hash) is str
        and type(job_id) is str
        and type(created_at) is datetime
        and created_at.tzinfo is UTC
        and type(expires_at) is datetime
        and expires_at.tzinfo is UTC
    ):
        return built(
            IdempotencyRecord,
            {
                "scope": scope,
                "key": key,
                "request_hash": request_hash,
                "job_id": job_id,
                "created_at": created_at,
                "expires_at": expires_at,
            },
        )
    return IdempotencyRecord(
        scope=scope,
        key=key,
        request_hash=request_hash,
        job_id=job_id,
        created_at=created_at,
        expires_at=expires_at,
    )


_O = TypeVar("_O", Created, Replayed)


def _outcome(
    cls: type[_O], name: str, job_id: str, existing: IdempotencyRecord, job: Job | None = None
) -> _O:
    """``cls(job_id=job_id, record=existing, job=job)``."""
    if (
        type(job_id) is str
        and type(existing) is IdempotencyRecord
        and (job is None or type(job) is Job)
    ):
        return built(cls, {"outcome": name, "job_id": job_id, "record": existing, "job": job})
    return cls(job_id=job_id, record=existing, job=job)


async def prune_expired(
    store: Store, *, now: datetime, batch_size: int = 1000, max_batches: int | None = None
) -> int:
    """Delete idempotency records expired at or before ``now``; return how many.

    Each batch is its own short transaction, so pruning a large backlog never
    holds locks for long. Stops when a batch comes back short, or after
    ``max_batches``. Pruning is housekeeping only: an expired record is
    already ignored by ``claim_idempotency``, pruned or not.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = utc(now)
    total = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        async with store.transaction() as tx:
            deleted = await tx.prune_idempotency(now, limit=batch_size)
        total += deleted
        batches += 1
        if deleted < batch_size:
            break
    return total
