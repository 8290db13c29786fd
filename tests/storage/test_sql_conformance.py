"""The storage conformance suite on the SQL backends (SQLite file, real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from chatsvg_core.storage import Store
from chatsvg_core.storage.postgres import PostgresStore
from chatsvg_core.storage.sqlite import SQLiteStore
from chatsvg_core.testing.conformance import Capability, StoreConformance

from ._sqlhelpers import drop_schema, emptied_postgres, emptied_sqlite, new_schema_name


@pytest.fixture(scope="module")
def shared_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite-conformance") / "store.db"


class TestSQLiteStore(StoreConformance):
    capabilities = frozenset({Capability.THREADS})

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
        peer = await SQLiteStore.open(store.path, synchronous="normal")
        try:
            yield peer
        finally:
            await peer.aclose()


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

    capabilities = frozenset({Capability.THREADS})

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        # One schema for the whole class, emptied for each test and example.
        async with emptied_postgres(self.url, self.schema) as store:
            yield store

    @asynccontextmanager
    async def open_peer(self, store: Store) -> AsyncIterator[Store]:
        assert isinstance(store, PostgresStore)
        peer = await PostgresStore.open(self.url, schema=store.schema, max_size=4)
        try:
            yield peer
        finally:
            await peer.aclose()
