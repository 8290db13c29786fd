"""The conformance suite, run on the reference backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from chatsvg_core.storage import MemoryStore, Store
from chatsvg_core.testing.conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        store = MemoryStore()
        try:
            yield store
        finally:
            await store.aclose()
