"""Idempotency's contract at its edges, from the survivors of a mutation run (docs/mutation.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from chatsvg_core.errors import IdempotencyConflict
from chatsvg_core.idempotency import Created, Replayed, create_or_replay, idempotency_scope
from chatsvg_core.jobs import new_job
from chatsvg_core.storage import MemoryStore

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


# --- idempotency outcomes are frozen and closed ------------------------------------------


async def test_idempotency_outcomes_are_frozen_and_refuse_unknown_fields() -> None:
    store = MemoryStore()
    scope = idempotency_scope("alice")
    job = new_job(
        job_id="j1",
        owner="alice",
        request={"prompt": "p"},
        request_hash="v1:aa",
        idempotency_key="k1",
        now=T0,
    )
    async with store.transaction() as tx:
        created = await create_or_replay(tx, job=job, scope=scope, key="k1", now=T0)
    async with store.transaction() as tx:
        twin = job.model_copy(update={"id": "j2"})
        replayed = await create_or_replay(tx, job=twin, scope=scope, key="k1", now=T0)
    assert isinstance(created, Created) and isinstance(replayed, Replayed)
    for outcome in (created, replayed):
        with pytest.raises(ValidationError):
            outcome.job_id = "other"  # type: ignore[misc]
        with pytest.raises(ValidationError):
            type(outcome).model_validate({**outcome.model_dump(), "surprise": 1})


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(microseconds=-1)])
async def test_a_key_ttl_must_be_positive(ttl: timedelta) -> None:
    store = MemoryStore()
    job = new_job(
        job_id="j1", owner="alice", request={}, request_hash="v1:aa", idempotency_key="k", now=T0
    )
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match="ttl must be positive"):
            await create_or_replay(
                tx, job=job, scope=idempotency_scope("alice"), key="k", now=T0, ttl=ttl
            )
        assert await tx.get_job("j1") is None
    async with store.transaction() as tx:
        ok = await create_or_replay(
            tx,
            job=job,
            scope=idempotency_scope("alice"),
            key="k",
            now=T0,
            ttl=timedelta(microseconds=1),
        )
    assert isinstance(ok, Created)
    assert ok.record.expires_at == T0 + timedelta(microseconds=1)


async def test_a_conflict_tells_the_client_what_to_do() -> None:
    store = MemoryStore()
    scope = idempotency_scope("alice")

    def job(job_id: str, request_hash: str) -> object:
        return new_job(
            job_id=job_id,
            owner="alice",
            request={},
            request_hash=request_hash,
            idempotency_key="k",
            now=T0,
        )

    async with store.transaction() as tx:
        await create_or_replay(tx, job=job("j1", "v1:aa"), scope=scope, key="k", now=T0)  # type: ignore[arg-type]
    async with store.transaction() as tx:
        with pytest.raises(IdempotencyConflict) as caught:
            await create_or_replay(tx, job=job("j2", "v1:bb"), scope=scope, key="k", now=T0)  # type: ignore[arg-type]
    assert caught.value.message == (
        "this idempotency key was already used for a different request; "
        "send a new key for a new request"
    )


async def test_misuse_of_the_primitives_is_named() -> None:
    from chatsvg_core.errors import JobNotFound
    from chatsvg_core.idempotency import decide, prune_expired
    from chatsvg_core.storage import IdempotencyRecord

    def record(key: str, job_id: str = "j1") -> IdempotencyRecord:
        return IdempotencyRecord(
            scope="s", key=key, request_hash="h", job_id=job_id, created_at=T0, expires_at=T0
        )

    with pytest.raises(ValueError, match=r"^decide\(\) compares records of one \(scope, key\)$"):
        decide(record("a"), record("b"))
    store = MemoryStore()
    job = new_job(
        job_id="j1", owner="alice", request={}, request_hash="h", idempotency_key="k1", now=T0
    )
    async with store.transaction() as tx:
        with pytest.raises(
            ValueError, match=r"^job\.idempotency_key differs from the key being claimed$"
        ):
            await create_or_replay(tx, job=job, scope="s", key="k2", now=T0)
    with pytest.raises(ValueError, match=r"^batch_size must be at least 1$"):
        await prune_expired(store, now=T0, batch_size=0)
    # A live key whose job is gone (deleted while the key was live) says which job.
    async with store.transaction() as tx:
        await tx.claim_idempotency(
            IdempotencyRecord(
                scope="s",
                key="k1",
                request_hash="h",
                job_id="gone",
                created_at=T0,
                expires_at=T0 + timedelta(hours=1),
            ),
            now=T0,
        )
    async with store.transaction() as tx:
        with pytest.raises(JobNotFound) as caught:
            await create_or_replay(tx, job=job, scope="s", key="k1", now=T0)
    assert caught.value.message == "idempotency key is bound to job gone, which no longer exists"
    assert caught.value.job_id == "gone"


async def test_the_default_prune_batch_is_a_thousand_keys() -> None:
    # The default is part of the signature hosts call without arguments; one batch
    # of a 1,001-key backlog leaves exactly one key for the next.
    from chatsvg_core.idempotency import prune_expired
    from chatsvg_core.storage import IdempotencyRecord

    store = MemoryStore()
    async with store.transaction() as tx:
        for i in range(1001):
            await tx.claim_idempotency(
                IdempotencyRecord(
                    scope="s",
                    key=f"k{i}",
                    request_hash="h",
                    job_id=f"j{i}",
                    created_at=T0,
                    expires_at=T0,
                ),
                now=T0,
            )
    assert await prune_expired(store, now=T0, max_batches=1) == 1000
    assert await prune_expired(store, now=T0) == 1
