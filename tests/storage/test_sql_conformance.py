"""The storage conformance suite on the SQL backends (SQLite file, real PostgreSQL)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from chatsvg_core.storage import Store
from chatsvg_core.storage.postgres import PostgresStore
from chatsvg_core.storage.sqlite import SQLiteStore
from chatsvg_core.testing.conformance import Capability, StoreConformance

from ._sqlhelpers import (
    drop_schema,
    emptied_postgres,
    emptied_sqlite,
    new_schema_name,
    postgres_peer,
    sqlite_peer,
)


@pytest.fixture(scope="module")
def shared_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite-conformance") / "store.db"


class TestSQLiteStore(StoreConformance):
    capabilities = frozenset({Capability.THREADS, Capability.PROCESSES})

    @pytest.fixture(autouse=True)
    def _database(self, shared_sqlite: Path) -> None:
        self.path = shared_sqlite

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        # One file for the class, emptied for each test and example (no DDL
        # per example). synchronous=normal: durability on power loss is not
        # what the suite tests; the crash tests keep the default.
        async with emptied_sqlite(self.path, synchronous="normal") as store:
            yield store

    @asynccontextmanager
    async def open_peer(self, store: Store) -> AsyncIterator[Store]:
        assert isinstance(store, SQLiteStore)
        async with sqlite_peer(store.path) as peer:
            yield peer

    def peer_factory(self, store: Store) -> Callable[[], AbstractAsyncContextManager[Store]]:
        assert isinstance(store, SQLiteStore)
        return functools.partial(sqlite_peer, store.path)


@pytest.fixture(scope="module")
def shared_schema(postgres_url: str) -> Iterator[str]:
    schema = new_schema_name()
    yield schema
    drop_schema(postgres_url, schema)


@pytest.mark.postgres
class TestPostgresStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _database(self, postgres_url: str, shared_schema: str) -> None:
        self.url = postgres_url
        self.schema = shared_schema

    capabilities = frozenset({Capability.THREADS, Capability.PROCESSES})

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        # One schema for the whole class, emptied for each test and example.
        async with emptied_postgres(self.url, self.schema) as store:
            yield store

    @asynccontextmanager
    async def open_peer(self, store: Store) -> AsyncIterator[Store]:
        assert isinstance(store, PostgresStore)
        assert store.schema is not None
        async with postgres_peer(self.url, store.schema) as peer:
            yield peer

    def peer_factory(self, store: Store) -> Callable[[], AbstractAsyncContextManager[Store]]:
        assert isinstance(store, PostgresStore)
        return functools.partial(postgres_peer, self.url, store.schema)
