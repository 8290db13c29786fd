"""MemoryStore specifics beyond the shared conformance suite."""

from __future__ import annotations

import asyncio

import pytest

from chatsvg_core.storage import MemoryStore, Store, StoreClosed, StoreTransaction


async def test_satisfies_the_protocols() -> None:
    store = MemoryStore()
    assert isinstance(store, Store)
    async with store.transaction() as tx:
        assert isinstance(tx, StoreTransaction)


async def test_nested_transaction_in_one_task_is_refused() -> None:
    store = MemoryStore()
    async with store.transaction():
        with pytest.raises(RuntimeError, match="nested"):
            async with store.transaction():
                pass
    async with store.transaction() as tx:  # the store is still usable
        assert await tx.balance("x") == 0


async def test_aclose_waits_for_the_running_transaction() -> None:
    store = MemoryStore()
    inside = asyncio.Event()
    release = asyncio.Event()

    async def long_tx() -> None:
        async with store.transaction() as tx:
            await tx.lock_account("alice", create=True)
            inside.set()
            await release.wait()

    task = asyncio.create_task(long_tx())
    await inside.wait()
    closing = asyncio.create_task(store.aclose())
    await asyncio.sleep(0)
    assert not closing.done(), "aclose must wait for the open transaction"
    release.set()
    await task
    await closing
    assert store.closed
    assert "closed" in repr(store)
    with pytest.raises(StoreClosed):
        async with store.transaction():
            pass


async def test_a_waiting_transaction_sees_the_committed_write() -> None:
    store = MemoryStore()
    order: list[str] = []

    async def first() -> None:
        async with store.transaction() as tx:
            await tx.lock_account("bob", create=True)
            await asyncio.sleep(0.01)
            order.append("first-commit")

    async def second() -> None:
        await asyncio.sleep(0)
        async with store.transaction() as tx:
            order.append("second-start")
            assert await tx.lock_account("bob") is True

    await asyncio.gather(first(), second())
    assert order == ["first-commit", "second-start"]
