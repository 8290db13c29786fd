"""The storage conformance suite on the SQL backends (SQLite file, real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from chatsvg_core.storage import Store
from chatsvg_core.testing.conformance import StoreConformance

from ._sqlhelpers import fresh_postgres, fresh_sqlite


class TestSQLiteStore(StoreConformance):
    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        # synchronous=normal: the suite opens hundreds of databases; durability
        # on power loss is not what it tests.
        async with fresh_sqlite(synchronous="normal") as store:
            yield store


@pytest.mark.postgres
class TestPostgresStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _url(self, postgres_url: str) -> None:
        self.url = postgres_url

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[Store]:
        async with fresh_postgres(self.url) as store:
            yield store
