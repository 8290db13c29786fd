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
