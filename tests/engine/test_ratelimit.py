"""Submit rate limits: per owner and per host key, refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatsvg_core import errors, problem_details
from chatsvg_core.engine import Engine
from chatsvg_core.ratelimit import SubmitRateLimit
from chatsvg_core.storage import Store
from chatsvg_core.storage.memory import MemoryStore
from chatsvg_core.storage.sqlite import SQLiteStore

from ._support import ScriptedProvider


def engine(store: Store, limit: SubmitRateLimit) -> Engine:
    return Engine(store, None, ScriptedProvider(), rate_limit=limit)


async def jobs(store: Store) -> int:
    async with store.transaction() as tx:
        return len(await tx.list_jobs(limit=100))


async def test_the_owner_limit_refuses_with_retry_after_and_writes_nothing() -> None:
    store = MemoryStore()
    e = engine(store, SubmitRateLimit(per_owner="3/minute"))
    for i in range(3):
        await e.submit("ann", f"k{i}", {"prompt": "a cat"})
    with pytest.raises(errors.RateLimited) as err:
        await e.submit("ann", "k9", {"prompt": "a cat"})
    assert (err.value.scope, err.value.limit, err.value.http_status) == (
        "owner",
        "3 per 1 minute",
        429,
    )
    assert 1 <= err.value.retry_after <= 60
    assert err.value.transient
    assert await jobs(store) == 3
    await e.submit("bob", None, {"prompt": "a cat"})  # another owner has their own window
    answer = problem_details(err.value)
    assert answer.status == 429
    assert answer.headers["Retry-After"] == str(err.value.retry_after)


async def test_the_host_key_limit_spans_owners() -> None:
    e = engine(MemoryStore(), SubmitRateLimit(per_owner=None, per_key="2/hour"))
    await e.submit("ann", None, {"prompt": "a cat"}, rate_key="10.0.0.1")
    await e.submit("bob", None, {"prompt": "a cat"}, rate_key="10.0.0.1")
    with pytest.raises(errors.RateLimited) as err:
        await e.submit("cyd", None, {"prompt": "a cat"}, rate_key="10.0.0.1")
    assert err.value.scope == "key"
    await e.submit("cyd", None, {"prompt": "a cat"}, rate_key="10.0.0.2")


async def test_counters_in_sqlite(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "db.sqlite")
    try:
        e = engine(store, SubmitRateLimit.in_store(store, per_owner="2/minute"))
        await e.submit("ann", None, {"prompt": "a cat"})
        await e.submit("ann", None, {"prompt": "a dog"})
        with pytest.raises(errors.RateLimited):
            await e.submit("ann", None, {"prompt": "a fox"})
        assert await jobs(store) == 2
        assert await e.rate_limit.storage.check()  # type: ignore[union-attr]
    finally:
        await store.aclose()


def test_misconfiguration_is_a_configuration_error() -> None:
    with pytest.raises(errors.ConfigurationError):
        SubmitRateLimit(per_owner="lots")
    with pytest.raises(errors.ConfigurationError):
        SubmitRateLimit.from_url("nosuch://x")
    with pytest.raises(errors.ConfigurationError):
        SubmitRateLimit.in_store(MemoryStore())
