"""Schema version 7 (SQLite): the status and kind CHECKs without IN lists.

SQLite evaluates ``x IN (a, b, c, ...)`` (more than two constants) through an
ephemeral table, a temporary b-tree opened, filled and closed each time the
constraint runs: ~35 k instructions on every job insert, claim, finish and
ledger insert (issue 15, session 15). Version 7 writes the same rules as
OR-chains. These tests pin that the store's write statements open no
ephemeral table, that the rules still refuse what they refused, and that a
populated version-6 database upgrades with every row, rowid, seq and the
ledger's AUTOINCREMENT counter kept, to the same schema a new database gets.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatsvg_core.jobs import new_job
from chatsvg_core.ledger import charge, grant, refund
from chatsvg_core.storage import JobResult
from chatsvg_core.storage import sqlite as sqlite_module
from chatsvg_core.storage._sql import INSERT_ENTRY, INSERT_JOB, INSERT_NEW_JOB, migrations
from chatsvg_core.storage.sqlite import (
    _CLAIM_BY_ID,
    _SUCCEED_COUNTED,
    SQLiteStore,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# The store's statements that write a checked column, with parameters of the
# right count (EXPLAIN only compiles them).
WRITES = {
    "insert_new_job": (INSERT_NEW_JOB, 10),
    "insert_job": (INSERT_JOB, 18),
    "claim": (_CLAIM_BY_ID, 5),
    "succeed": (_SUCCEED_COUNTED, 3),
    "fail": (
        "UPDATE chatsvg_jobs SET status = 'failed', lease_token = NULL WHERE id = ?",
        1,
    ),
    "insert_entry": (INSERT_ENTRY, 7),
}


def ephemeral_writes(path: Path) -> list[str]:
    """The write statements whose program opens an ephemeral table."""
    found = []
    with sqlite3.connect(path) as conn:
        for name, (statement, count) in WRITES.items():
            program = conn.execute("EXPLAIN " + statement, (None,) * count).fetchall()
            if any(step[1] == "OpenEphemeral" for step in program):
                found.append(name)
    return found


async def open_at(path: Path, version: int, monkeypatch: pytest.MonkeyPatch) -> SQLiteStore:
    """A store whose database is migrated to ``version`` only."""
    shipped = migrations("sqlite")[:version]
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_module, "migrations", lambda dialect: shipped)
        store = await SQLiteStore.open(path)
    return store


async def populate(store: SQLiteStore) -> None:
    """Jobs in every status, grants, charges and a refund; then the last entry
    deleted, so the AUTOINCREMENT counter is past the highest seq kept."""
    async with store.transaction() as tx:
        await grant(tx, "alice", 100, now=T0)
        await grant(tx, "bob", 50, now=T0, external_id="pay-1")
        for i in range(12):
            run_at = T0 + timedelta(minutes=i % 3)
            job = new_job(
                job_id=f"j{i:03d}", owner="alice", request={"prompt": f"p{i}"},
                request_hash=f"h{i}", now=T0, run_at=run_at,
            )  # fmt: skip
            await tx.insert_job(job)
    now = T0 + timedelta(hours=1)
    for i in range(6):
        async with store.transaction() as tx:
            job = await tx.claim_due(
                now, worker_id="w", lease_expires_at=now + timedelta(minutes=5)
            )
            assert job is not None
            await charge(tx, "alice", 3, ref=job.id, now=now)
            if i % 3 == 1:
                assert await tx.succeed_held(
                    job.id, token=job.attempt, now=now, result=_result(job.id, now)
                )
            elif i % 3 == 2:
                await refund(tx, job.id, now=now)
    async with store.transaction() as tx:
        await grant(tx, "carol", 7, now=now)
    with sqlite3.connect(store.path) as conn:
        conn.execute("DELETE FROM chatsvg_ledger WHERE seq = (SELECT MAX(seq) FROM chatsvg_ledger)")


def _result(job_id: str, now: datetime) -> JobResult:
    return JobResult(job_id=job_id, svg="<svg/>", metadata={}, created_at=now)


def dump(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        return {
            "jobs": conn.execute("SELECT rowid, * FROM chatsvg_jobs ORDER BY rowid").fetchall(),
            "ledger": conn.execute("SELECT * FROM chatsvg_ledger ORDER BY seq").fetchall(),
            "accounts": conn.execute("SELECT * FROM chatsvg_accounts ORDER BY owner").fetchall(),
            "results": conn.execute("SELECT * FROM chatsvg_results ORDER BY job_id").fetchall(),
            "sequence": conn.execute("SELECT * FROM sqlite_sequence ORDER BY name").fetchall(),
        }


def schema(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()


async def test_writes_open_no_ephemeral_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await open_at(tmp_path / "v6.sqlite", 6, monkeypatch)
    await old.aclose()
    # Version 6's IN lists: every write statement builds one (the test can fail).
    assert ephemeral_writes(tmp_path / "v6.sqlite") == list(WRITES)
    store = await SQLiteStore.open(tmp_path / "new.sqlite")
    await store.aclose()
    assert ephemeral_writes(tmp_path / "new.sqlite") == []


@pytest.mark.parametrize(
    ("statement", "value"),
    [
        ("UPDATE chatsvg_jobs SET status = ? WHERE id = 'j000'", "done"),
        ("UPDATE chatsvg_jobs SET status = ? WHERE id = 'j000'", "QUEUED"),
        ("UPDATE chatsvg_jobs SET status = ? WHERE id = 'j000'", None),
        ("UPDATE chatsvg_ledger SET kind = ? WHERE seq = 1", "gift"),
        ("UPDATE chatsvg_ledger SET kind = ? WHERE seq = 1", "Grant"),
        ("UPDATE chatsvg_ledger SET kind = ? WHERE seq = 1", None),
    ],
)
async def test_the_rules_still_refuse(tmp_path: Path, statement: str, value: Any) -> None:
    store = await SQLiteStore.open(tmp_path / "db.sqlite")
    try:
        await populate(store)
    finally:
        await store.aclose()
    with sqlite3.connect(tmp_path / "db.sqlite") as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(statement, (value,))


@pytest.mark.parametrize("status", ["queued", "running", "succeeded", "failed"])
async def test_the_rules_still_accept(tmp_path: Path, status: str) -> None:
    store = await SQLiteStore.open(tmp_path / "db.sqlite")
    try:
        await populate(store)
    finally:
        await store.aclose()
    token = 1 if status == "running" else None
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute(
            "UPDATE chatsvg_jobs SET status = ?, lease_token = ? WHERE id = 'j000'", (status, token)
        )
        for kind in ("grant", "charge", "refund", "adjustment", "reserve", "capture", "release"):
            conn.execute("UPDATE chatsvg_ledger SET kind = ? WHERE seq = 1", (kind,))


async def test_version_6_database_upgrades_keeping_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite"
    store = await open_at(path, 6, monkeypatch)
    try:
        await populate(store)
    finally:
        await store.aclose()
    before = dump(path)
    (seq,) = [row[1] for row in before["sequence"] if row[0] == "chatsvg_ledger"]
    assert seq > max(row[0] for row in before["ledger"])  # the deleted last entry
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == len(migrations("sqlite")) >= 7
        assert dump(path) == before
        # The counter goes on where it was, and the store works on the new tables.
        async with store.transaction() as tx:
            await grant(tx, "dave", 1, now=T0)
            job = await tx.claim_due(
                T0 + timedelta(hours=2), worker_id="w2",
                lease_expires_at=T0 + timedelta(hours=3),
            )  # fmt: skip
            assert job is not None and job.id == "j007"
    finally:
        await store.aclose()
    with sqlite3.connect(path) as conn:
        (newest,) = conn.execute("SELECT MAX(seq) FROM chatsvg_ledger").fetchone()
    assert newest == seq + 1
    fresh = await SQLiteStore.open(tmp_path / "fresh.sqlite")
    await fresh.aclose()
    assert schema(path) == schema(tmp_path / "fresh.sqlite")
