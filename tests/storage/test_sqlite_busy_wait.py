"""How a SQLite transaction waits for another process's write lock (issue 15).

A task alone in its process waits in SQLite's busy handler in place (after a
few short pauses), as hand-written code does, for up to ``_IN_PLACE_WAIT``,
then on the store's thread for the rest of ``busy_timeout``; a task with
others beside it never blocks the event loop. Either way ``busy_timeout``
holds: past it the transaction fails with ``StorageUnavailable`` and wrote
nothing, and the connection is left as it was (busy timeout 0, no open
transaction), usable by the next transaction.

The "other process" is a second ``sqlite3`` connection holding ``BEGIN
IMMEDIATE``: SQLite locks per connection. Whether a task is alone is a
question about the whole process, and a test run leaves tasks of earlier
tests behind (portal threads' loops), so the alone cases run in a fresh
interpreter.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from chatsvg_core.errors import StorageUnavailable
from chatsvg_core.storage.sqlite import SQLiteStore

from .test_sql_backends import a_job

SCENARIO = r"""
import asyncio, json, sqlite3, sys, threading, time
from pathlib import Path
from chatsvg_core.errors import StorageUnavailable
from chatsvg_core.jobs import new_job
from chatsvg_core.storage import sqlite as sqlite_module
from chatsvg_core.storage.sqlite import SQLiteStore
from datetime import UTC, datetime

folder, scenario = Path(sys.argv[1]), sys.argv[2]
NOW = datetime(2026, 3, 1, tzinfo=UTC)

def job(name):
    return new_job(job_id=name, owner="o", request={}, request_hash="h", now=NOW)

async def main():
    timeout = {"timeout": 0.03, "past_in_place": 0.4}.get(scenario, 10.0)
    store = await SQLiteStore.open(folder / "jobs.db", busy_timeout=timeout)
    trips, out = [0], {}
    original = store._call
    async def call(fn):
        trips[0] += 1
        return await original(fn)
    store._call = call
    blocker = sqlite3.connect(folder / "jobs.db", isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    if scenario == "released_in_place":
        # A wide in-place bound, so a loaded machine's late timer still lands inside it.
        sqlite_module._IN_PLACE_WAIT = 2.0
    hold = {"released_in_place": 0.02, "handed_to_thread": 0.3, "cancelled": 0.6}.get(scenario)
    timer = None
    if hold is not None:
        timer = threading.Timer(hold, blocker.execute, ("COMMIT",))
        timer.start()
    if scenario == "cancelled":
        # A timer callback is no task: the store's task is still alone.
        asyncio.get_running_loop().call_later(0.2, asyncio.current_task().cancel)
    started = time.perf_counter()
    try:
        async with store.transaction() as tx:
            await tx.insert_job(job("waited"))
        out["outcome"] = "committed"
    except StorageUnavailable as exc:
        out["outcome"] = "unavailable: " + str(exc)
    except asyncio.CancelledError:
        out["outcome"] = "cancelled"
        asyncio.current_task().uncancel()
    out["seconds"] = time.perf_counter() - started
    out["trips"] = trips[0]
    if timer is not None:
        timer.join()
    else:
        blocker.execute("ROLLBACK")
    blocker.close()
    # The connection is as it was: no open transaction, busy timeout 0.
    conn = store._conn
    out["in_transaction"] = conn is not None and conn.in_transaction
    out["busy_timeout"] = conn and conn.execute("PRAGMA busy_timeout").fetchone()[0]
    async with store.transaction() as tx:
        out["written"] = await tx.get_job("waited") is not None
        await tx.insert_job(job("after"))
    async with store.transaction() as tx:
        out["after"] = await tx.get_job("after") is not None
    await store.aclose()
    print(json.dumps(out))

asyncio.run(main())
"""


def scenario(tmp_path: Path, name: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(tmp_path), name],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_alone_the_wait_for_a_lock_released_soon_stays_in_place(tmp_path: Path) -> None:
    got = scenario(tmp_path, "released_in_place")
    assert got["outcome"] == "committed"
    assert got["trips"] == 0  # neither the wait nor the COMMIT went to the thread
    assert got["written"] is True and got["after"] is True
    assert got["busy_timeout"] == 0 and got["in_transaction"] is False


def test_alone_a_longer_wait_goes_on_on_the_store_thread(tmp_path: Path) -> None:
    # Held 0.3 s, past the in-place bound: the rest of the wait is one trip.
    got = scenario(tmp_path, "handed_to_thread")
    assert got["outcome"] == "committed"
    assert got["trips"] == 1
    assert got["seconds"] >= 0.25
    assert got["written"] is True and got["after"] is True
    assert got["busy_timeout"] == 0 and got["in_transaction"] is False


def test_alone_the_busy_timeout_still_bounds_the_wait(tmp_path: Path) -> None:
    # busy_timeout 30 ms, inside the in-place bound: it runs out in place.
    got = scenario(tmp_path, "timeout")
    assert got["outcome"].startswith("unavailable") and "locked" in got["outcome"]
    assert 0.02 <= got["seconds"] < 2
    assert got["trips"] == 1  # the ROLLBACK's trip only: no wait on the thread
    assert got["written"] is False and got["after"] is True
    assert got["busy_timeout"] == 0 and got["in_transaction"] is False


def test_alone_past_the_in_place_bound_the_timeout_holds_on_the_thread(tmp_path: Path) -> None:
    got = scenario(tmp_path, "past_in_place")
    assert got["outcome"].startswith("unavailable") and "locked" in got["outcome"]
    assert 0.3 <= got["seconds"] < 5
    assert got["trips"] == 2  # the rest of the wait, then the ROLLBACK
    assert got["written"] is False and got["after"] is True
    assert got["busy_timeout"] == 0 and got["in_transaction"] is False


def test_alone_cancelled_while_waiting_writes_nothing_and_the_store_goes_on(
    tmp_path: Path,
) -> None:
    # Cancelled at 0.2 s, in the wait on the thread (the lock comes free at
    # 0.6 s): the BEGIN that then succeeds there is rolled back before any
    # later use of the connection.
    got = scenario(tmp_path, "cancelled")
    assert got["outcome"] == "cancelled"
    assert got["written"] is False and got["after"] is True
    assert got["busy_timeout"] == 0 and got["in_transaction"] is False


def test_with_another_task_the_loop_is_never_blocked_by_the_wait(tmp_path: Path) -> None:
    # A ticking task beside the transaction: the 0.5 s wait for the lock must
    # leave the loop free (quick retries, then the store's thread), so it ticks.
    path = tmp_path / "jobs.db"
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def main() -> tuple[int, float, bool]:
        store = await SQLiteStore.open(path, busy_timeout=10)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        blocker.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.5, blocker.execute, ("COMMIT",))
        timer.start()
        started = time.perf_counter()
        async with store.transaction() as tx:
            await tx.insert_job(a_job("waited"))
        waited = time.perf_counter() - started
        during = ticks
        ticker.cancel()
        timer.join()
        async with store.transaction() as tx:
            written = await tx.get_job("waited") is not None
        await store.aclose()
        return during, waited, written

    try:
        during, waited, written = asyncio.run(main())
    finally:
        blocker.close()
    assert waited >= 0.45 and written
    assert during >= 10


async def test_with_another_task_the_timeout_is_storage_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = await SQLiteStore.open(path, busy_timeout=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    other = asyncio.create_task(asyncio.sleep(30))  # not alone
    try:
        with pytest.raises(StorageUnavailable, match="locked"):
            async with store.transaction() as tx:
                await tx.insert_job(a_job("waited"))
    finally:
        other.cancel()
        blocker.execute("ROLLBACK")
        blocker.close()
    async with store.transaction() as tx:
        assert await tx.get_job("waited") is None
    await store.aclose()
