"""Schema version 5: the claim walks the due-jobs index in its own order.

The claim orders due jobs by ``(run_at, created_at, id)``. Under version 1's
index ``(run_at, id)`` PostgreSQL read every due job to sort them (a bitmap
scan and a sort, or an incremental sort over the jobs sharing a ``run_at``)
and SQLite sorted each ``run_at`` group in a temporary B-tree, so a claim cost
time in proportion to the backlog. These tests pin the plan of the statement
the store really runs, check the PostgreSQL table's vacuum settings, and
upgrade a populated version-4 database.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from chatsvg_core.errors import IncompatibleStorage
from chatsvg_core.jobs import new_job
from chatsvg_core.storage._sql import SCHEMA_TABLE, _claim_next_sql, migrations
from chatsvg_core.storage.postgres import PostgresStore, PostgresTransaction, _pg
from chatsvg_core.storage.sqlite import _CLAIM_PICK, SQLiteStore, SQLiteTransaction

from ._sqlhelpers import drop_schema, new_schema_name

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BACKLOG = 300
OLD_INDEX = "CREATE INDEX chatsvg_jobs_due ON chatsvg_jobs (run_at, id) WHERE status = 'queued'"
VACUUM_SETTINGS = {
    "autovacuum_vacuum_scale_factor=0.01",
    "autovacuum_vacuum_threshold=1000",
    "autovacuum_analyze_scale_factor=0.02",
    "vacuum_index_cleanup=on",
}


async def fill(store: PostgresStore | SQLiteStore, n: int = BACKLOG) -> None:
    """``n`` due jobs sharing one ``run_at`` and ``created_at`` (a batch submitted at once)."""
    async with store.transaction() as tx:
        for i in range(n):
            job = new_job(job_id=f"j{i:05d}", owner="o", request={}, request_hash="h", now=T0)
            await tx.insert_job(job)


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", ()):
        found.extend(plan_nodes(child))
    return found


def explain_claim(
    conn: psycopg.Connection[Any], schema: str, generic: bool
) -> list[dict[str, Any]]:
    """The executed plan of the store's claim statement, rolled back."""
    now = T0 + timedelta(hours=1)
    params = (now + timedelta(minutes=1), "w", now, now, now)
    text = _pg(_claim_next_sql(PostgresTransaction.skip_locked))
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        if generic:
            # The store's connections prepare a statement after 5 uses, and
            # PostgreSQL may then keep a generic plan: check that one too.
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            # A client-side cursor sends both as plain text, so the $n are the
            # prepared statement's parameters, not the protocol message's.
            cur = psycopg.ClientCursor(conn)
            dollars = text.replace("%s", "${}").format(1, 2, 3, 4, 5)
            cur.execute(f"PREPARE claim_probe AS {dollars}")
            cur.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim_probe(%s, %s, %s, %s, %s)", params
            )
            row = cur.fetchone()
            conn.execute("DEALLOCATE claim_probe")
        else:
            row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {text}", params).fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return plan_nodes(doc[0]["Plan"])


@pytest.mark.postgres
@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
async def test_postgres_claim_reads_one_due_entry_in_order(
    postgres_url: str, generic: bool
) -> None:
    schema = new_schema_name()
    store = await PostgresStore.open(postgres_url, schema=schema, max_size=1)
    try:
        await fill(store)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ANALYZE {}.chatsvg_jobs").format(sql.Identifier(schema)))
            nodes = explain_claim(conn, schema, generic)
        kinds = [n["Node Type"] for n in nodes]
        assert not [k for k in kinds if "Sort" in k or "Bitmap" in k], kinds
        due = [n for n in nodes if n.get("Index Name") == "chatsvg_jobs_due"]
        assert len(due) == 1, kinds
        assert due[0]["Actual Rows"] == 1  # the first live entry, not the backlog
        # ...and it is the first job of the promised order, ties broken by id.
        assert await first_claimed(store) == "j00000"
    finally:
        await store.aclose()
        drop_schema(postgres_url, schema)


async def first_claimed(store: Any) -> str | None:
    """The id of the job one claim takes an hour after T0 (None if it takes none)."""
    async with store.transaction() as tx:
        claimed = await tx.claim_due(
            T0 + timedelta(hours=1), worker_id="w", lease_expires_at=T0 + timedelta(hours=2)
        )
    return None if claimed is None else claimed.id


def reloptions(conn: psycopg.Connection[Any], schema: str) -> set[str]:
    row = conn.execute(
        "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = 'chatsvg_jobs'",
        (schema,),
    ).fetchone()
    assert row is not None
    return set(row[0] or ())


def due_index(conn: psycopg.Connection[Any], schema: str) -> str:
    row = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'chatsvg_jobs_due'",
        (schema,),
    ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.postgres
async def test_postgres_version_4_database_upgrades_to_the_claim_index(postgres_url: str) -> None:
    schema = new_schema_name()
    name = sql.Identifier(schema)
    store = await PostgresStore.open(postgres_url, schema=schema, max_size=1)
    try:
        await fill(store, 20)
        await store.aclose()
        # Back to version 4 as it shipped: the old index, no table settings.
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL search_path = {}").format(name))
                conn.execute("DROP INDEX chatsvg_jobs_due")
                conn.execute(OLD_INDEX)
                conn.execute(
                    "ALTER TABLE chatsvg_jobs RESET (autovacuum_vacuum_scale_factor, "
                    "autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor, "
                    "vacuum_index_cleanup)"
                )
                # And before version 6 (the cap counter's columns).
                conn.execute(
                    "ALTER TABLE chatsvg_accounts DROP COLUMN cap_since, "
                    "DROP COLUMN cap_until, DROP COLUMN cap_used"
                )
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE version >= 5").format(
                        sql.Identifier(SCHEMA_TABLE)
                    )
                )
            assert reloptions(conn, schema) == set()
            assert "(run_at, id)" in due_index(conn, schema)
        with pytest.raises(IncompatibleStorage, match="call migrate"):
            await PostgresStore.open(postgres_url, schema=schema, auto_migrate=False)
        store = await PostgresStore.open(postgres_url, schema=schema, max_size=1)
        assert await store.schema_version() == len(migrations("postgres")) >= 5
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            assert "(run_at, created_at, id) WHERE (status = 'queued'::text)" in due_index(
                conn, schema
            )
            assert reloptions(conn, schema) == VACUUM_SETTINGS
        assert await first_claimed(store) == "j00000"
    finally:
        await store.aclose()
        drop_schema(postgres_url, schema)


def sqlite_claim_plan(path: Path, *, pick: bool = False) -> list[str]:
    """The plan of the shared claim statement, or of SQLite's own pick (``_CLAIM_PICK``)."""
    now = "2026-03-01T13:00:00"
    with sqlite3.connect(path) as conn:
        if pick:
            rows = conn.execute("EXPLAIN QUERY PLAN " + _CLAIM_PICK, (now,)).fetchall()
        else:
            rows = conn.execute(
                "EXPLAIN QUERY PLAN " + _claim_next_sql(SQLiteTransaction.skip_locked),
                (now, "w", now, now, now),
            ).fetchall()
    return [str(r[3]) for r in rows]


async def test_sqlite_claim_walks_the_due_index_without_sorting(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await SQLiteStore.open(path)
    try:
        await fill(store)
        assert await first_claimed(store) == "j00000"
    finally:
        await store.aclose()
    for pick in (False, True):  # SQLite's store claims with the pick (see claim_due)
        plan = sqlite_claim_plan(path, pick=pick)
        assert any("USING INDEX chatsvg_jobs_due" in step for step in plan), plan
        assert not any("TEMP B-TREE" in step for step in plan), plan


async def test_sqlite_version_4_database_upgrades_to_the_claim_index(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await SQLiteStore.open(path)
    await fill(store, 20)
    await store.aclose()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX chatsvg_jobs_due")
        conn.execute(OLD_INDEX)
        for column in ("cap_since", "cap_until", "cap_used"):  # version 6's
            conn.execute(f"ALTER TABLE chatsvg_accounts DROP COLUMN {column}")
        conn.execute(f"DELETE FROM {SCHEMA_TABLE} WHERE version >= 5")
    assert any("TEMP B-TREE" in step for step in sqlite_claim_plan(path))
    with pytest.raises(IncompatibleStorage, match="call migrate"):
        await SQLiteStore.open(path, auto_migrate=False)
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == len(migrations("sqlite")) >= 5
        assert await first_claimed(store) == "j00000"
    finally:
        await store.aclose()
    assert not any("TEMP B-TREE" in step for step in sqlite_claim_plan(path))
