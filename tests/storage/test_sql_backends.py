"""What only the SQL backends have: URLs, schema and migrations, faults, and raw-SQL checks.

The contract itself is checked by the conformance suite
(``test_sql_conformance.py``); these tests cover the rest of each backend's
promises, on the real databases.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatsvg_core.errors import (
    ConfigurationError,
    IncompatibleStorage,
    InvalidAmount,
    StorageError,
    StorageUnavailable,
)
from chatsvg_core.jobs import new_job
from chatsvg_core.storage import (
    ENTRY_POINT_GROUP,
    EntryKind,
    LedgerEntry,
    MemoryStore,
    Store,
    StoreClosed,
    open_storage,
)
from chatsvg_core.storage import _sql as _sql_module
from chatsvg_core.storage._sql import TABLES, migrations
from chatsvg_core.storage.postgres import PostgresStore
from chatsvg_core.storage.sqlite import SQLiteStore, SQLiteTransaction

from ._sqlhelpers import drop_schema, fresh_postgres, fresh_sqlite, new_schema_name

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def grant(owner: str, amount: int, ref: str | None = None, i: int = 0) -> LedgerEntry:
    return LedgerEntry(
        id=f"e-{owner}-{ref}-{i}-{amount}",
        owner=owner,
        kind=EntryKind.GRANT,
        amount=amount,
        ref=ref,
        created_at=T0 + timedelta(seconds=i),
    )


def a_job(job_id: str) -> Any:
    return new_job(job_id=job_id, owner="o", request={"p": 1}, request_hash="h", now=T0)


@asynccontextmanager
async def any_store(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if kind == "sqlite":
        async with fresh_sqlite() as store:
            yield store
    else:
        url = request.getfixturevalue("postgres_url")
        async with fresh_postgres(url) as store:
            yield store


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


# --- open_storage -------------------------------------------------------------------


async def test_open_storage_sqlite_relative_and_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_storage("sqlite:///rel.db?busy_timeout=2.5&synchronous=normal")
    assert isinstance(store, SQLiteStore)
    assert store.busy_timeout == 2.5
    assert store.synchronous == "normal"
    await store.aclose()
    assert (tmp_path / "rel.db").exists()
    absolute = tmp_path / "sub" / "abs.db"
    absolute.parent.mkdir()
    store = await open_storage(f"sqlite:///{absolute}")
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == absolute
    await store.aclose()


async def test_open_storage_memory() -> None:
    store = await open_storage("memory://")
    assert isinstance(store, MemoryStore)
    await store.aclose()


@pytest.mark.postgres
async def test_open_storage_postgres_with_schema_option(postgres_url: str) -> None:
    schema = new_schema_name()
    try:
        store = await open_storage(f"{postgres_url}?schema={schema}&max_size=2&connect_timeout=5")
        assert isinstance(store, PostgresStore)
        assert store.schema == schema
        async with store.transaction() as tx:
            await tx.lock_account("a", create=True)
        await store.aclose()
        with psycopg.connect(postgres_url) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
            ).fetchone()
        assert row is not None
        assert row[0] == len(TABLES)
    finally:
        drop_schema(postgres_url, schema)


@pytest.mark.parametrize(
    "url",
    [
        "nosuch://x",
        "no-scheme-at-all",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/file.db",
        "sqlite:///x.db?busy_timeout=soon",
        "sqlite:///x.db?unknown_option=1",
        "sqlite:///:memory:",
        "memory://somewhere",
        "memory://?size=3",
        "postgresql://127.0.0.1/test?min_size=many",
        "postgresql://127.0.0.1/test?schema=bad-name;drop",
    ],
)
async def test_open_storage_refuses_bad_urls(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError):
        await open_storage(url)


async def test_open_storage_plugin_from_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real installed distribution (a .dist-info on sys.path), not a mock.
    (tmp_path / "chatsvg_plugin_demo.py").write_text(
        "from chatsvg_core.storage import MemoryStore\n"
        "seen = []\n"
        "def factory(url, **options):\n"
        "    seen.append((url, options))\n"
        "    return MemoryStore()\n"
        "def bad(url, **options):\n"
        "    return object()\n"
    )
    info = tmp_path / "chatsvg_plugin_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: chatsvg-plugin-demo\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ndemo = chatsvg_plugin_demo:factory\n"
        "bad = chatsvg_plugin_demo:bad\nbroken = chatsvg_plugin_missing:factory\n"
        "sqlite = chatsvg_plugin_demo:factory\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    store = await open_storage("demo://anything", flag=True)
    assert isinstance(store, MemoryStore)
    import chatsvg_plugin_demo  # type: ignore[import-not-found]

    assert chatsvg_plugin_demo.seen == [("demo://anything", {"flag": True})]
    with pytest.raises(ConfigurationError, match="not a Store"):
        await open_storage("bad://x")
    with pytest.raises(ConfigurationError, match="failed to import"):
        await open_storage("broken://x")
    # Built-in schemes cannot be taken over by a plug-in.
    monkeypatch.chdir(tmp_path)
    builtin = await open_storage("sqlite:///own.db")
    assert isinstance(builtin, SQLiteStore)
    await builtin.aclose()
    assert len(chatsvg_plugin_demo.seen) == 1


async def test_missing_postgres_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make the driver unimportable, as in an install without the extra.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)
    monkeypatch.delitem(sys.modules, "chatsvg_core.storage.postgres", raising=False)
    with pytest.raises(ConfigurationError) as info:
        await open_storage("postgresql://127.0.0.1/test")
    assert "chatsvg-core[postgres]" in str(info.value)
    assert info.value.fields["extra"] == "postgres"


# --- schema and migrations ----------------------------------------------------------


def test_migration_files_ship_with_the_package() -> None:
    for dialect in ("sqlite", "postgres"):
        found = migrations(dialect)
        assert [m.version for m in found] == list(range(1, len(found) + 1))
        assert [m.name for m in found] == [m.name for m in migrations("sqlite")]
        assert "CREATE UNIQUE INDEX chatsvg_ledger_kind_ref" in found[0].sql
    # PostgreSQL's change feed for Engine.wait (LISTEN/NOTIFY) is a trigger.
    assert any("pg_notify" in m.sql for m in migrations("postgres"))


async def test_sqlite_schema_version_and_auto_migrate_off(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with pytest.raises(IncompatibleStorage, match="call migrate"):
        await SQLiteStore.open(path, auto_migrate=False)
    store = await SQLiteStore.open(path)
    assert await store.schema_version() == len(migrations(store.dialect))
    assert await store.migrate() == len(migrations("sqlite"))  # idempotent
    await store.aclose()
    store = await SQLiteStore.open(path, auto_migrate=False)
    await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = conn.execute("SELECT version, name FROM chatsvg_schema_version").fetchall()
    assert rows == [(m.version, m.name) for m in migrations("sqlite")]
    assert rows[0] == (1, "init")


async def test_sqlite_refuses_a_database_that_is_not_ours(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    with pytest.raises(IncompatibleStorage, match="not chatsvg-core's") as info:
        await SQLiteStore.open(foreign)
    assert info.value.fields["tables"] == ["users"]
    # Nothing was created in it.
    with sqlite3.connect(foreign) as conn:
        names = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    assert names == [("users",)]

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all, just some text " * 100)
    with pytest.raises(IncompatibleStorage):
        await SQLiteStore.open(garbage)

    extra = tmp_path / "extra.db"
    (await SQLiteStore.open(extra)).path  # noqa: B018
    with sqlite3.connect(extra) as conn:
        conn.execute("CREATE TABLE mine_too (x)")
    with pytest.raises(IncompatibleStorage, match="not chatsvg-core's"):
        await SQLiteStore.open(extra)


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    store = await SQLiteStore.open(path)
    await store.aclose()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO chatsvg_schema_version VALUES (99, 'future', 0)")
    with pytest.raises(IncompatibleStorage, match="version 99") as info:
        await SQLiteStore.open(path)
    assert info.value.fields["version"] == 99


async def test_sqlite_concurrent_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    stores: list[SQLiteStore] = []

    async def opener() -> None:
        stores.append(await SQLiteStore.open(path))

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(opener)
    for store in stores:
        assert await store.schema_version() == len(migrations(store.dialect))
        await store.aclose()


@pytest.mark.postgres
async def test_postgres_refuses_foreign_and_newer_schemas(postgres_url: str) -> None:
    schema = new_schema_name()
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"CREATE TABLE {schema}.orders (id int)")
        with pytest.raises(IncompatibleStorage, match="not chatsvg-core's"):
            await PostgresStore.open(postgres_url, schema=schema, max_size=1)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {schema}.orders")
        with pytest.raises(IncompatibleStorage, match="call migrate"):
            await PostgresStore.open(postgres_url, schema=schema, auto_migrate=False)
        store = await PostgresStore.open(postgres_url, schema=schema, max_size=1)
        assert await store.schema_version() == len(migrations(store.dialect))
        await store.aclose()
        newer = len(migrations("postgres")) + 1
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {schema}.chatsvg_schema_version VALUES ({newer}, 'x', now())"
            )
        with pytest.raises(IncompatibleStorage, match=f"version {newer}"):
            await PostgresStore.open(postgres_url, schema=schema, max_size=1)
    finally:
        drop_schema(postgres_url, schema)


@pytest.mark.postgres
async def test_postgres_concurrent_opens_migrate_once(postgres_url: str) -> None:
    schema = new_schema_name()
    stores: list[PostgresStore] = []

    async def opener() -> None:
        stores.append(await PostgresStore.open(postgres_url, schema=schema, max_size=1))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(opener)
        for store in stores:
            assert await store.schema_version() == len(migrations(store.dialect))
            await store.aclose()
    finally:
        drop_schema(postgres_url, schema)


@pytest.mark.postgres
async def test_postgres_wrong_port_is_a_configuration_error_and_silence_is_transient() -> None:
    import socket

    # Nothing listens on port 1: a configuration mistake, refused at once.
    with pytest.raises(ConfigurationError) as err:
        await PostgresStore.open(
            "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1", pool_timeout=1.5
        )
    assert err.value.cause == "connection_refused"
    # A server that accepts and never answers may be busy or restarting: transient.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(StorageUnavailable):
            await PostgresStore.open(
                f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=2", pool_timeout=1.5
            )


# --- database-level guarantees (checked with raw SQL) ----------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
async def test_uniqueness_lives_in_the_database(kind: str, request: pytest.FixtureRequest) -> None:
    async with any_store(kind, request) as store:
        async with store.transaction() as tx:
            await tx.insert_entry(grant("a", 5, ref="ext-1"))
        raw = _raw(store)
        # Bypassing the library, the database itself refuses a second (kind, ref).
        with pytest.raises(Exception, match=r"(?i)unique"):
            await raw(
                "INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, created_at) "
                "VALUES ('other', 'a', 'grant', 5, 'ext-1', ?)",
                T0,
            )
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            await raw(
                "INSERT INTO chatsvg_idempotency VALUES ('s', 'k', 'h', 'j', ?, ?), "
                "('s', 'k', 'h2', 'j2', ?, ?)",
                T0,
                T0,
                T0,
                T0,
            )
        # NULL refs are never deduplicated.
        async with store.transaction() as tx:
            await tx.insert_entry(grant("a", 1, ref=None, i=1))
            await tx.insert_entry(grant("a", 1, ref=None, i=2))
            assert await tx.balance("a") == 7


@pytest.mark.parametrize("kind", BACKENDS)
async def test_amount_outside_int64_is_refused(kind: str, request: pytest.FixtureRequest) -> None:
    async with any_store(kind, request) as store, store.transaction() as tx:
        with pytest.raises(InvalidAmount):
            await tx.insert_entry(grant("a", 2**63))
        # The transaction is still usable (the check ran before the SQL).
        await tx.insert_entry(grant("a", 2**62))
        assert await tx.balance("a") == 2**62


@pytest.mark.parametrize("kind", BACKENDS)
async def test_finished_transaction_and_closed_store_are_refused(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with any_store(kind, request) as store:
        async with store.transaction() as tx:
            pass
        with pytest.raises(StoreClosed):
            await tx.balance("a")
        await store.aclose()
        await store.aclose()  # idempotent
        with pytest.raises(StoreClosed):
            async with store.transaction():
                pass


@pytest.mark.parametrize("kind", BACKENDS)
async def test_cancelled_transaction_rolls_back(kind: str, request: pytest.FixtureRequest) -> None:
    async with any_store(kind, request) as store:
        with anyio.move_on_after(0.5):
            async with store.transaction() as tx:
                await tx.insert_job(a_job("cancelled"))
                await tx.insert_entry(grant("a", 5, ref="g"))
                await anyio.sleep(30)
        async with store.transaction() as tx:
            assert await tx.get_job("cancelled") is None
            assert await tx.find_entry(EntryKind.GRANT, "g") is None
            assert await tx.balance("a") == 0


# (owner, signed amount, optional ref) adjustments for the balance property tests.
_ADJUSTMENTS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(-1000, 1000).filter(bool),
        st.one_of(st.none(), st.sampled_from(["r1", "r2", "r3"])),
    ),
    max_size=20,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(amounts=_ADJUSTMENTS)
def test_stored_balance_always_equals_the_sum_of_entries_sqlite(
    amounts: list[tuple[str, int, str | None]],
) -> None:
    async def body() -> None:
        async with fresh_sqlite(synchronous="normal") as store:
            await _check_balances(store, amounts)

    anyio.run(body)


@pytest.mark.postgres
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(amounts=_ADJUSTMENTS)
def test_stored_balance_always_equals_the_sum_of_entries_postgres(
    postgres_url: str, amounts: list[tuple[str, int, str | None]]
) -> None:
    async def body() -> None:
        async with fresh_postgres(postgres_url, max_size=1) as store:
            await _check_balances(store, amounts)

    anyio.run(body)


async def _check_balances(store: Store, amounts: list[tuple[str, int, str | None]]) -> None:
    raw = _raw(store)
    for i, (owner, amount, ref) in enumerate(amounts):
        kind = EntryKind.ADJUSTMENT if ref is None else EntryKind.GRANT
        async with store.transaction() as tx:
            await tx.insert_entry(
                LedgerEntry(
                    id=f"e{i}",
                    owner=owner,
                    kind=kind,
                    amount=amount,
                    ref=ref,
                    created_at=T0 + timedelta(seconds=i),
                )
            )
        rows = await raw(
            "SELECT a.owner, a.balance, (SELECT COALESCE(SUM(amount), 0) FROM chatsvg_ledger e "
            "WHERE e.owner = a.owner) FROM chatsvg_accounts a"
        )
        for _owner, stored, summed in rows:
            assert stored == summed


def _raw(store: Store) -> Any:
    """Run one statement outside the library's transactions (test-only back door)."""
    if isinstance(store, SQLiteStore):
        path = store.path

        async def run_sqlite(sql: str, *params: Any) -> list[tuple[Any, ...]]:
            def go() -> list[tuple[Any, ...]]:
                args = tuple(
                    (p - EPOCH) // timedelta(microseconds=1) if isinstance(p, datetime) else p
                    for p in params
                )
                with sqlite3.connect(path) as conn:
                    return conn.execute(sql, args).fetchall()

            return await anyio.to_thread.run_sync(go)

        return run_sqlite
    assert isinstance(store, PostgresStore)
    pool = store._pool

    async def run_pg(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        async with pool.connection() as conn:
            cur = await conn.execute(sql.replace("?", "%s").encode(), params)
            return await cur.fetchall() if cur.description else []

    return run_pg


# --- faults ----------------------------------------------------------------------------


async def test_sqlite_busy_past_the_timeout_is_storage_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = await SQLiteStore.open(path, busy_timeout=0.3)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.perf_counter()
        with pytest.raises(StorageUnavailable, match="locked"):
            async with store.transaction() as tx:
                await tx.insert_entry(grant("a", 5))
        assert 0.2 < time.perf_counter() - started < 5
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Once the lock is free the same store works again.
    async with store.transaction() as tx:
        await tx.insert_entry(grant("a", 5))
        assert await tx.balance("a") == 5
    await store.aclose()


async def test_sqlite_busy_without_a_timeout_is_storage_unavailable_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy0.db"
    store = await SQLiteStore.open(path, busy_timeout=0)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        trips = 0
        original = store._call

        async def call(fn: Any) -> Any:
            nonlocal trips
            trips += 1
            return await original(fn)

        store._call = call  # type: ignore[method-assign]
        with pytest.raises(StorageUnavailable, match="locked"):
            async with store.transaction() as tx:
                await tx.insert_entry(grant("a", 5))
        assert trips == 1  # only the ROLLBACK: no wait for the lock on the store's thread
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    async with store.transaction() as tx:
        await tx.insert_entry(grant("a", 5))
    await store.aclose()


async def test_sqlite_waits_for_another_writer_within_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "wait.db"
    store = await SQLiteStore.open(path, busy_timeout=10)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute("INSERT INTO chatsvg_accounts (owner, balance, created_at) VALUES ('a', 0, 0)")

    async def release() -> None:
        await anyio.sleep(0.3)
        await anyio.to_thread.run_sync(blocker.execute, "COMMIT")

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        async with store.transaction() as tx:
            # BEGIN IMMEDIATE waited for the other writer, then saw its commit.
            assert await tx.lock_account("a") is True
    blocker.close()
    await store.aclose()


@pytest.mark.postgres
@pytest.mark.parametrize("when", ["mid_transaction", "before_commit"])
async def test_postgres_connection_killed_rolls_back(postgres_url: str, when: str) -> None:
    killer = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
    victim: list[int] = []

    def hook(point: str) -> None:
        if point == "before_commit" and when == "before_commit" and victim:
            # Runs on the loop thread: use a separate sync connection.
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (victim[0],))

    try:
        async with fresh_postgres(postgres_url, max_size=1, fault_hook=hook) as store:

            async def doomed() -> None:
                async with store.transaction() as tx:
                    await tx.insert_job(a_job("half"))
                    await tx.lock_account("a", create=True)
                    await tx.insert_entry(grant("a", 5, ref="g1"))
                    victim.append(await _backend_pid(tx))
                    if when == "mid_transaction":
                        await killer.execute("SELECT pg_terminate_backend(%s)", (victim[0],))
                        await tx.insert_entry(grant("a", 7, ref="g2"))

            with pytest.raises(StorageUnavailable) as info:
                await doomed()
            if when == "before_commit":
                assert info.value.fields["commit_unknown"] is True
            victim.clear()
            # Nothing was half-written, and the pool recovered a working connection.
            async with store.transaction() as tx:
                assert await tx.get_job("half") is None
                assert await tx.find_entry(EntryKind.GRANT, "g1") is None
                assert await tx.lock_account("a") is False
                assert await tx.balance("a") == 0
    finally:
        await killer.close()


async def _backend_pid(tx: Any) -> int:
    row = await tx._one("SELECT pg_backend_pid()")
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
async def test_postgres_lock_account_serializes_across_connections(postgres_url: str) -> None:
    # Two transactions on two pooled connections: the second lock_account
    # waits until the first transaction ends.
    async with fresh_postgres(postgres_url, max_size=2) as store:
        async with store.transaction() as tx:
            await tx.lock_account("a", create=True)
        order: list[str] = []
        first_locked = anyio.Event()

        async def first() -> None:
            async with store.transaction() as tx:
                await tx.lock_account("a")
                first_locked.set()
                await anyio.sleep(0.4)
                order.append("first-done")

        async def second() -> None:
            await first_locked.wait()
            async with store.transaction() as tx:
                await tx.lock_account("a")
                order.append("second-locked")

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)
        assert order == ["first-done", "second-locked"]


@pytest.mark.postgres
async def test_postgres_refuses_nul_in_text_with_a_typed_error(postgres_url: str) -> None:
    # A documented limit of PostgreSQL text; SQLite stores the same value.
    async with fresh_postgres(postgres_url, max_size=1) as store:
        with pytest.raises(StorageError, match="NUL"):
            async with store.transaction() as tx:
                await tx.lock_account("a\x00b", create=True)
        async with store.transaction() as tx:
            # The value never reached the server: the transaction goes on.
            with pytest.raises(StorageError, match="NUL"):
                await tx.lock_account("a\x00b")
            assert await tx.lock_account("ab", create=True) is True
    async with fresh_sqlite() as sqlite_store, sqlite_store.transaction() as tx:
        assert await tx.lock_account("a\x00b", create=True) is True
        assert await tx.lock_account("a\x00b") is True
        assert await tx.lock_account("a") is False


def test_sqlite_older_than_3_35_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.34.1")
    with pytest.raises(ConfigurationError, match=r"3\.35"):
        SQLiteStore(tmp_path / "old.db")


@pytest.mark.parametrize(
    "options",
    [{"synchronous": "sometimes"}, {"busy_timeout": -1}],
)
def test_sqlite_bad_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteStore(tmp_path / "x.db", **options)


@pytest.mark.parametrize("kind", BACKENDS)
def test_sync_facade_over_sql_stores_from_threads(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Sync hosts drive the async SQL stores through the one loop thread.
    from concurrent.futures import ThreadPoolExecutor

    from chatsvg_core.errors import InsufficientCredits
    from chatsvg_core.ledger import charge, grant
    from chatsvg_core.storage import StoreTransaction, SyncStore

    async def balance(tx: StoreTransaction) -> int:
        return await tx.balance("alice")

    schema = new_schema_name()
    if kind == "sqlite":
        store = SyncStore.open(lambda: SQLiteStore.open(tmp_path / "sync.db"))
    else:
        url = request.getfixturevalue("postgres_url")
        store = SyncStore.open(lambda: PostgresStore.open(url, schema=schema, max_size=4))
    try:
        store.run(grant, "alice", 20, now=T0)

        def worker(k: int) -> int:
            won = 0
            for i in range(10):
                try:
                    store.run(charge, "alice", 1, ref=f"job-{i}-{k % 3}", now=T0)
                    won += 1
                except InsufficientCredits:
                    pass
            return won

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(worker, range(6)))

        async def charges(tx: StoreTransaction) -> list[LedgerEntry]:
            found = await tx.entries("alice", limit=100)
            return [e for e in found if e.kind is EntryKind.CHARGE]

        with store.transaction() as tx:
            # 30 distinct jobs wanted 1 credit each; 20 were granted.
            assert tx(balance) == 0
            charged = tx(charges)
        assert len(charged) == 20
        assert len({e.ref for e in charged}) == 20
    finally:
        store.close()
        if kind != "sqlite":
            drop_schema(request.getfixturevalue("postgres_url"), schema)


@pytest.mark.postgres
@pytest.mark.parametrize("existing", ["none", "expired", "live"])
async def test_postgres_concurrent_idempotency_claims_have_one_winner(
    postgres_url: str, existing: str
) -> None:
    # Eight transactions on eight connections, all inside their transaction
    # before any claims (a barrier), then all claim one (scope, key) at once
    # under READ COMMITTED: exactly one record is stored, and every claimer
    # gets that one back.
    from chatsvg_core.storage import IdempotencyRecord

    def record(job_id: str, created: datetime, ttl: timedelta) -> IdempotencyRecord:
        return IdempotencyRecord(
            scope="alice",
            key="k-1",
            request_hash="h",
            job_id=job_id,
            created_at=created,
            expires_at=created + ttl,
        )

    now = T0 + timedelta(days=2)
    async with fresh_postgres(postgres_url, max_size=8) as store:
        if existing != "none":
            ttl = timedelta(days=1) if existing == "expired" else timedelta(days=5)
            async with store.transaction() as tx:
                await tx.claim_idempotency(record("old-job", T0, ttl), now=T0)
        inside = 0
        all_inside = anyio.Event()
        got: list[str] = []

        async def claimer(i: int) -> None:
            nonlocal inside
            async with store.transaction() as tx:
                await tx.balance("warm-up")  # the transaction has begun
                inside += 1
                if inside == 8:
                    all_inside.set()
                await all_inside.wait()
                won = await tx.claim_idempotency(
                    record(f"job-{i}", now, timedelta(days=1)), now=now
                )
                got.append(won.job_id)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(claimer, i)
        async with store.transaction() as tx:
            stored = await tx._one(  # type: ignore[attr-defined]
                "SELECT job_id, COUNT(*) OVER () FROM chatsvg_idempotency "
                "WHERE scope = 'alice' AND idem_key = 'k-1'"
            )
        assert stored is not None
        winner, rows = stored
        assert rows == 1
        assert got == [winner] * 8
        if existing == "live":
            assert winner == "old-job"
        else:
            assert winner.startswith("job-")


@pytest.mark.postgres
async def test_postgres_concurrent_inserts_of_one_kind_and_ref_write_once(
    postgres_url: str,
) -> None:
    # No account lock: the partial unique index alone makes the entry (and
    # the balance move that rides with it) happen once.
    async with fresh_postgres(postgres_url, max_size=8) as store:
        inside = 0
        all_inside = anyio.Event()
        got: list[str] = []

        async def inserter(i: int) -> None:
            nonlocal inside
            async with store.transaction() as tx:
                await tx.balance("warm-up")
                inside += 1
                if inside == 8:
                    all_inside.set()
                await all_inside.wait()
                entry = LedgerEntry(
                    id=f"e-{i}",
                    owner="alice",
                    kind=EntryKind.CHARGE,
                    amount=-3,
                    ref="job-1",
                    created_at=T0,
                )
                got.append((await tx.insert_entry(entry)).id)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(inserter, i)
        assert len(set(got)) == 1
        async with store.transaction() as tx:
            assert await tx.balance("alice") == -3
            assert [e.id for e in await tx.entries("alice")] == [got[0]]


def test_importing_the_library_never_imports_the_postgres_driver() -> None:
    import subprocess

    import chatsvg_core

    src = str(Path(chatsvg_core.__file__).resolve().parent.parent)
    code = (
        "import sys; import chatsvg_core, chatsvg_core.storage, chatsvg_core.storage.sqlite; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"


@given(st.integers(-(2**53), 2**53))
def test_sqlite_times_decode_as_timedelta_microseconds_did(micros: int) -> None:
    tx = SQLiteTransaction.__new__(SQLiteTransaction)
    try:
        expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except OverflowError:
        with pytest.raises(OverflowError):
            tx._dt(micros)
        return
    assert tx._dt(micros) == expected
    assert tx._ts(expected) == micros


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.one_of(_JSON.map(_sql_module._dump), st.text(max_size=40), st.binary(max_size=20)))
def test_stored_json_decodes_as_json_loads_did(text: str | bytes) -> None:
    for case in (text, f" {text}" if isinstance(text, str) else text, text * 2):
        try:
            expected = json.loads(case)
        except (ValueError, TypeError) as exc:
            with pytest.raises(type(exc)):
                _sql_module._loads(case)
            continue
        assert _sql_module._loads(case) == expected


class _BusyThenWal:
    """A connection whose WAL switch answers SQLITE_BUSY ``busy`` times, as SQLite
    does at once (no busy handler) to a lock upgrade that could deadlock."""

    def __init__(self, busy: int, error: str = "database is locked") -> None:
        self.busy = busy
        self.error = error
        self.calls = 0

    def execute(self, sql: str) -> Any:
        assert sql == "PRAGMA journal_mode = WAL"
        self.calls += 1
        if self.calls <= self.busy:
            exc = sqlite3.OperationalError(self.error)
            if "locked" in self.error:
                exc.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
            raise exc
        return self

    def fetchone(self) -> tuple[str]:
        return ("wal",)


def test_the_wal_switch_is_tried_again_while_sqlite_says_busy() -> None:
    from chatsvg_core.storage.sqlite import _switch_to_wal

    conn = _BusyThenWal(busy=5)
    assert _switch_to_wal(conn, timeout=5.0) == ("wal",)  # type: ignore[arg-type]
    assert conn.calls == 6
    # Bounded by the timeout: still busy after it, the error is raised.
    stuck = _BusyThenWal(busy=10**6)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _switch_to_wal(stuck, timeout=0.2)  # type: ignore[arg-type]
    assert 0.1 <= time.monotonic() - started < 2.0
    # Any other error is not retried.
    broken = _BusyThenWal(busy=1, error="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk"):
        _switch_to_wal(broken, timeout=5.0)  # type: ignore[arg-type]
    assert broken.calls == 1
