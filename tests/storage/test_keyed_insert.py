"""The SQL stores' one-call key claim and insert is the two primitives it stands for.

The engine's submit calls ``_insert_keyed_job`` where a SQL transaction has
it: ``claim_idempotency`` of the job's record, then ``insert_job`` when that
record won, in one call (and on SQLite on the cursor in place). For every
state the key can be in (free, live for the same or another request, expired,
bound to a job id that collides), and times at the edges of expiry, both
ways must answer the same and leave the same rows, on both databases; the
SQLite override and the shared SQL method are each held to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsvg_core.jobs import Job, new_job
from chatsvg_core.storage import IdempotencyRecord, Store
from chatsvg_core.storage._sql import LIVE_KEY, SQLTransaction, _dump

from ._sqlhelpers import fresh_postgres, fresh_sqlite

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=1)
SCOPE = "5:alice/8:generate"

PRIORS = st.sampled_from(["none", "same", "other", "same_job_id"])
"""The key's record before the call: none, for the same request, for another
one, or (another key) naming a job whose id the new job reuses."""
AGES = st.sampled_from([-7200, -3601, -3600, -3599, -1, 0])
"""When the prior record was made, in seconds from now (expired at -3600 and before)."""


class _Undo(Exception):
    """Raised at the end of each run: its transaction rolls back."""


def _job(job_id: str, key: str, request_hash: str, now: datetime) -> Job:
    return new_job(
        job_id=job_id,
        owner="alice",
        request={"prompt": f"a cat {request_hash}"},
        request_hash=request_hash,
        idempotency_key=key,
        now=now,
    )


async def _state(tx: SQLTransaction, key: str, job_id: str) -> tuple[Any, ...]:
    row = await tx._one(LIVE_KEY, (SCOPE, key))
    return (row, await tx.get_job(job_id))


Way = Callable[[SQLTransaction, Job, datetime], Awaitable[IdempotencyRecord | None]]


async def _reference(tx: SQLTransaction, job: Job, now: datetime) -> IdempotencyRecord | None:
    assert job.idempotency_key is not None
    proposed = IdempotencyRecord(
        scope=SCOPE,
        key=job.idempotency_key,
        request_hash=job.request_hash,
        job_id=job.id,
        created_at=now,
        expires_at=now + TTL,
    )
    live = await tx.claim_idempotency(proposed, now=now)
    if live.job_id != job.id:
        return live
    await tx.insert_job(job)
    return None


async def _fast(tx: SQLTransaction, job: Job, now: datetime) -> IdempotencyRecord | None:
    return await tx._insert_keyed_job(job, scope=SCOPE, now=now, expires_at=now + TTL)


async def _fast_json(tx: SQLTransaction, job: Job, now: datetime) -> IdempotencyRecord | None:
    # With the request's JSON handed over, as the engine hands its fingerprint's text.
    return await tx._insert_keyed_job(
        job, scope=SCOPE, now=now, expires_at=now + TTL, request_json=_dump(job.request)
    )


async def _fast_ttl(tx: SQLTransaction, job: Job, now: datetime) -> IdempotencyRecord | None:
    # With the ttl the engine added to now (SQLite then adds its microseconds
    # to now's stamp instead of converting expires_at).
    return await tx._insert_keyed_job(
        job,
        scope=SCOPE,
        now=now,
        expires_at=now + TTL,
        request_json=_dump(job.request),
        ttl=TTL,
    )


async def _shared(tx: SQLTransaction, job: Job, now: datetime) -> IdempotencyRecord | None:
    # The dialect-independent method, also on SQLite, whose override skips it.
    return await SQLTransaction._insert_keyed_job(
        tx, job, scope=SCOPE, now=now, expires_at=now + TTL
    )


def _run(store: Store, way: Way, prior: str, age: int) -> tuple[str, Any, Any]:
    now = T0
    made = now + timedelta(seconds=age)

    async def body() -> tuple[str, Any, Any]:
        async with store.transaction() as tx:
            assert isinstance(tx, SQLTransaction)
            job = _job("new-job", "k1", "h-new", now)
            if prior != "none":
                old = _job(
                    "new-job" if prior == "same_job_id" else "old-job",
                    "k0" if prior == "same_job_id" else "k1",
                    "h-new" if prior == "same" else "h-old",
                    made,
                )
                await _reference(tx, old, made)
            try:
                outcome: tuple[str, Any] = ("answer", await way(tx, job, now))
            except ValueError as exc:
                outcome = ("error", str(exc))
            result = (*outcome, await _state(tx, "k1", job.id))
            raise _Undo(result)

    try:
        asyncio.get_event_loop().run_until_complete(body())
    except _Undo as undo:
        got: tuple[str, Any, Any] = undo.args[0]
        return got
    raise AssertionError("the run did not finish")


_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@asynccontextmanager
async def _opened(kind: str, url: str | None) -> Any:
    if kind == "sqlite":
        async with fresh_sqlite(synchronous="normal") as store:
            yield store
    else:
        assert url is not None
        async with fresh_postgres(url, max_size=1) as store:
            yield store


def _fixture(kind: str, url: str | None) -> Iterator[Store]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    context = _opened(kind, url)
    store = loop.run_until_complete(context.__aenter__())
    yield store
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def sqlite_store() -> Iterator[Store]:
    yield from _fixture("sqlite", None)


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[Store]:
    yield from _fixture("postgres", postgres_url)


def _check(store: Store, prior: str, age: int, ways: list[Way]) -> None:
    expected = _run(store, _reference, prior, age)
    for way in ways:
        assert _run(store, way, prior, age) == expected, way.__name__


@_SETTINGS
@given(prior=PRIORS, age=AGES)
def test_the_keyed_insert_is_claim_then_insert_sqlite(
    sqlite_store: Store, prior: str, age: int
) -> None:
    _check(sqlite_store, prior, age, [_fast, _fast_json, _fast_ttl, _shared])


@pytest.mark.postgres
@_SETTINGS
@given(prior=PRIORS, age=AGES)
def test_the_keyed_insert_is_claim_then_insert_postgres(
    postgres_store: Store, prior: str, age: int
) -> None:
    _check(postgres_store, prior, age, [_fast, _fast_json, _fast_ttl])


def test_every_outcome_is_reached(sqlite_store: Store) -> None:
    # The grid above is not vacuous: a win, a replay's record, a live record of
    # another request, and the job id clash each occur.
    seen = {
        (prior, age): _run(sqlite_store, _fast, prior, age)
        for prior in ("none", "same", "other", "same_job_id")
        for age in (-3600, -1)
    }
    assert seen["none", -1][:2] == ("answer", None)
    assert seen["same", -3600][:2] == ("answer", None)  # expired: replaced
    live_same = seen["same", -1]
    assert live_same[0] == "answer" and live_same[1].request_hash == "h-new"
    assert live_same[1].job_id == "old-job"
    assert seen["other", -1][1].request_hash == "h-old"
    assert seen["same_job_id", -1][0] == "error"
