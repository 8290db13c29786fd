"""The conformance suite on a backend that threads and processes can share (tests/_file_store)."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from chatsvg_core.storage import Store
from chatsvg_core.testing.conformance import (
    Capability,
    ConcurrencyConformance,
    PrimitiveConformance,
)

from ._file_store import FileStore


class TestFileStore(PrimitiveConformance, ConcurrencyConformance):
    capabilities = frozenset({Capability.THREADS, Capability.PROCESSES})
    concurrency = 6

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        with tempfile.TemporaryDirectory() as tmp:
            async with FileStore.opened(Path(tmp) / "db.pickle") as store:
                yield store

    def open_peer(self, store: Store) -> AbstractAsyncContextManager[Store]:
        assert isinstance(store, FileStore)
        return FileStore.opened(store.path)

    def peer_factory(self, store: Store) -> Callable[[], AbstractAsyncContextManager[Store]]:
        assert isinstance(store, FileStore)
        return functools.partial(FileStore.opened, store.path)
