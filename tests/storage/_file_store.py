"""A test-only backend that several threads and processes can share: a file and a lock.

Each transaction takes an exclusive ``flock`` on ``<path>.lock``, loads the
pickled state of a :class:`MemoryStore` from ``path``, runs the transaction
on it, and writes the state back on commit. Slow and simple; it exists to
run the conformance suite's thread and process races for real in this
project (a ``MemoryStore`` cannot be shared between event loops), and as a
worked example of a custom backend.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from chatsvg_core.storage import MemoryStore, StoreClosed, StoreTransaction


class FileStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def opened(cls, path: Path) -> AsyncIterator[FileStore]:
        store = cls(path)
        try:
            yield store
        finally:
            await store.aclose()

    def _load(self) -> MemoryStore:
        mem = MemoryStore()
        if self.path.exists() and self.path.stat().st_size:
            state = pickle.loads(self.path.read_bytes())
            mem._data, mem._queued, mem._balances, mem._by_owner = state
        return mem

    def _dump(self, mem: MemoryStore) -> None:
        state = (mem._data, mem._queued, mem._balances, mem._by_owner)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(state))
        os.replace(tmp, self.path)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        if self._closed:
            raise StoreClosed("the file store is closed", store="file", what="store")
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            mem = self._load()
            async with mem.transaction() as tx:
                yield tx
            self._dump(mem)  # reached only on commit: the block re-raises otherwise
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    async def aclose(self) -> None:
        self._closed = True
