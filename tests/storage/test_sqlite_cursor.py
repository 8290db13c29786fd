"""The SQLite transaction's one cursor: no statement of it outlives the transaction.

A transaction runs its statements on one cursor (issue 15: a new cursor per
statement cost ~1.3 k instructions). A cursor's statement stays active until
its next ``execute``; one left on a multi-row ``SELECT`` read with ``fetchone``
would keep a read snapshot open past ``COMMIT``, so a checkpoint could not
finish and the connection's next ``BEGIN IMMEDIATE`` could meet a stale
snapshot. The transaction drops its cursor (resetting the statement) at exit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chatsvg_core.storage.sqlite import SQLiteStore

from .test_sql_backends import a_job


@pytest.mark.parametrize("ending", ["commit", "rollback"])
async def test_a_half_read_select_holds_no_snapshot_after_the_transaction(
    tmp_path: Path, ending: str
) -> None:
    path = tmp_path / "c.db"
    store = await SQLiteStore.open(path)
    try:
        async with store.transaction() as tx:
            for i in range(3):
                await tx.insert_job(a_job(f"j{i}"))
        try:
            async with store.transaction() as held:
                row = await held._one("SELECT id FROM chatsvg_jobs ORDER BY id")
                assert row == ("j0",)  # two rows left unread on the cursor
                if ending == "rollback":
                    raise RuntimeError("roll back")
        except RuntimeError:
            pass
        # Another connection writes and checkpoints the whole WAL: it can only
        # if no connection still reads an older snapshot.
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("UPDATE chatsvg_jobs SET version = version + 1 WHERE id = 'j1'")
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            other.close()
        assert busy == 0
        assert held._cur is None
        # And the store's next transaction sees that write.
        async with store.transaction() as tx:
            job = await tx.get_job("j1")
        assert job is not None and job.version == 1
    finally:
        await store.aclose()
