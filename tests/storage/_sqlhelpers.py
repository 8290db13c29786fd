"""Shared helpers for the SQL backend tests: fresh databases and raw checks."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from chatsvg_core.storage._sql import SCHEMA_TABLE, TABLES
from chatsvg_core.storage.postgres import PostgresStore
from chatsvg_core.storage.sqlite import SQLiteStore


def new_schema_name() -> str:
    """A schema name no other test run (or helper) uses."""
    return f"chatsvg_t_{os.getpid()}_{secrets.token_hex(4)}"


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@asynccontextmanager
async def fresh_postgres(url: str, **options: Any) -> AsyncIterator[PostgresStore]:
    """A store in a new, empty schema; the schema is dropped afterwards."""
    schema = new_schema_name()
    options.setdefault("min_size", 1)
    options.setdefault("max_size", 4)
    fast = make_conninfo(url, options="-c synchronous_commit=off")  # see emptied_postgres
    store = await PostgresStore.open(fast, schema=schema, **options)
    try:
        yield store
    finally:
        await store.aclose()
        drop_schema(url, schema)


@asynccontextmanager
async def emptied_postgres(url: str, schema: str, **options: Any) -> AsyncIterator[PostgresStore]:
    """A store in ``schema`` (migrated on first use) with every table emptied first.

    Much cheaper than a new schema per hypothesis example: emptying small
    tables is a few DELETEs, creating and dropping a schema is DDL.
    """
    options.setdefault("min_size", 1)
    options.setdefault("max_size", 4)
    # synchronous_commit=off: commits stop waiting for the WAL flush. It
    # changes durability on a server crash only, never visibility or
    # atomicity, which is what the suite checks; the crash tests keep it on.
    fast = make_conninfo(url, options="-c synchronous_commit=off")
    store = await PostgresStore.open(fast, schema=schema, **options)
    try:
        async with store._pool.connection() as conn:
            for table in sorted(TABLES - {SCHEMA_TABLE}):
                await conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def emptied_sqlite(path: Path, **options: Any) -> AsyncIterator[SQLiteStore]:
    """A store on ``path`` (migrated on first use) with every table emptied first."""
    store = await SQLiteStore.open(path, **options)
    try:
        async with store.transaction() as tx:
            for table in sorted(TABLES - {SCHEMA_TABLE}):
                await tx._exec(f"DELETE FROM {table}")
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def fresh_sqlite(**options: Any) -> AsyncIterator[SQLiteStore]:
    """A store in a new database file in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="chatsvg-sqlite-") as folder:
        store = await SQLiteStore.open(Path(folder) / "store.db", **options)
        try:
            yield store
        finally:
            await store.aclose()


@asynccontextmanager
async def sqlite_peer(path: str) -> AsyncIterator[SQLiteStore]:
    """Open a store on an existing SQLite file (picklable by reference: for worker processes)."""
    store = await SQLiteStore.open(path, synchronous="normal")
    try:
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def postgres_peer(url: str, schema: str) -> AsyncIterator[PostgresStore]:
    """Open a store on an existing schema (picklable by reference: for worker processes)."""
    fast = make_conninfo(url, options="-c synchronous_commit=off")
    store = await PostgresStore.open(fast, schema=schema, min_size=1, max_size=4)
    try:
        yield store
    finally:
        await store.aclose()
