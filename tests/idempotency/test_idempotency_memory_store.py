"""The idempotency conformance checks, run on the in-memory reference store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatsvg_core.storage import MemoryStore, Store
from chatsvg_core.testing import IdempotencyConformance, run_idempotency_suite


class TestMemoryStoreIdempotency(IdempotencyConformance):
    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        store = MemoryStore()
        try:
            yield store
        finally:
            await store.aclose()


async def memory_store() -> Store:
    return MemoryStore()


async def test_the_whole_suite_as_one_call() -> None:
    await run_idempotency_suite(memory_store, submitters=20)
