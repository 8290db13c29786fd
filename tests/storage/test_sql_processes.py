"""Several worker PROCESSES on one real database, and processes killed mid-transaction.

Each test starts real Python processes (``_proc_worker.py``) on one SQLite
file or one PostgreSQL schema, releases them together, and then checks the
invariants with plain SQL over the whole database:

* claims: every job claimed exactly once (leases are long, so a second claim
  of a job would mean two holders of a live lease), every job SUCCEEDED;
* charges: at most one charge and one refund per job, refunds only of
  charges and for the same amount, the balance never below zero, the daily
  cap never exceeded, and the stored balance equal to the sum of the entries;
* crashes: a process ``kill -9``-ed holding the write lock before its first
  write, or with all its writes done just before COMMIT, left nothing behind,
  and its locks did not outlive it; one killed just after COMMIT left all.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import chatsvg_core
from chatsvg_core.jobs import JobStatus, new_job
from chatsvg_core.storage import EntryKind, LedgerEntry, Store
from chatsvg_core.storage.postgres import PostgresStore
from chatsvg_core.storage.sqlite import SQLiteStore

from ._sqlhelpers import drop_schema, new_schema_name

WORKER = Path(__file__).with_name("_proc_worker.py")
SRC = Path(chatsvg_core.__file__).resolve().parent.parent
PROCESSES = 4


# --- databases as (config for workers, raw query function) ---------------------


Query = Callable[[str], list[tuple[Any, ...]]]


@contextmanager
def sqlite_db(tmp_path: Path) -> Iterator[tuple[dict[str, Any], Query]]:
    path = tmp_path / "shared.db"
    asyncio.run(_open_close(SQLiteStore.open(path)))

    def query(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql).fetchall()

    yield {"backend": "sqlite", "path": str(path)}, query


@contextmanager
def postgres_db(url: str) -> Iterator[tuple[dict[str, Any], Query]]:
    schema = new_schema_name()
    asyncio.run(_open_close(PostgresStore.open(url, schema=schema)))

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, options=f"-c search_path={schema}") as conn:
            return conn.execute(sql.encode()).fetchall()

    try:
        yield {"backend": "postgres", "url": url, "schema": schema}, query
    finally:
        drop_schema(url, schema)


async def _open_close(opening: Any) -> None:
    store = await opening
    await store.aclose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, Any], Query, Callable[[], Any]]]:
    if request.param == "sqlite":
        with sqlite_db(tmp_path) as (config, query):
            yield config, query, lambda: SQLiteStore.open(config["path"])
    else:
        url = request.getfixturevalue("postgres_url")
        with postgres_db(url) as (config, query):
            yield (
                config,
                query,
                lambda: PostgresStore.open(url, schema=config["schema"], max_size=2),
            )


# --- running workers --------------------------------------------------------------


def spawn(mode: str, config: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(WORKER.parent)])}
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def expect_line(proc: subprocess.Popen[str], wanted: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != wanted:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"worker said {line!r}, expected {wanted!r}; stderr:\n{err}")


def run_together(mode: str, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    procs = [spawn(mode, c) for c in configs]
    try:
        for proc in procs:
            expect_line(proc, "READY")
        for proc in procs:  # the barrier: all start at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- tests ----------------------------------------------------------------------------


def test_workers_in_several_processes_never_claim_a_job_twice(
    database: tuple[dict[str, Any], Query, Callable[[], Any]], tmp_path: Path
) -> None:
    config, query, opener = database
    n_jobs = 120
    now = datetime.now(UTC)

    async def seed() -> None:
        store: Store = await opener()
        async with store.transaction() as tx:
            for i in range(n_jobs):
                await tx.insert_job(
                    new_job(
                        job_id=f"job-{i:04d}",
                        owner="o",
                        request={"i": i},
                        request_hash="h",
                        now=now - timedelta(seconds=1),
                        run_at=now - timedelta(seconds=n_jobs - i),
                    )
                )
        await store.aclose()

    asyncio.run(seed())
    (tmp_path / "claimed").mkdir()
    results = run_together(
        "claim",
        [
            {**config, "name": f"w{i}", "tasks": 2, "rendezvous": str(tmp_path / "claimed")}
            for i in range(PROCESSES)
        ],
    )
    print("worker seconds:", [round(r["seconds"], 2) for r in results])
    claimed = [c for r in results for c in r["claimed"]]
    ids = [c[0] for c in claimed]
    assert len(ids) == len(set(ids)), "a job was claimed twice while its lease was live"
    assert sorted(ids) == [f"job-{i:04d}" for i in range(n_jobs)]
    # The work was shared: more than one process claimed jobs.
    assert sum(1 for r in results if r["claimed"]) >= 2
    rows = query("SELECT status, attempt, COUNT(*) FROM chatsvg_jobs GROUP BY status, attempt")
    assert rows == [(JobStatus.SUCCEEDED.value, 1, n_jobs)]
    assert query("SELECT COUNT(*) FROM chatsvg_results") == [(n_jobs,)]


def test_processes_charging_one_owner_keep_every_ledger_invariant(
    database: tuple[dict[str, Any], Query, Callable[[], Any]],
) -> None:
    config, query, opener = database
    amount, grant, cap = 3, 150, 120
    refs = [f"job-{i}" for i in range(60)]  # 180 credits of work for 150 granted, cap 120

    async def seed() -> None:
        store: Store = await opener()
        async with store.transaction() as tx:
            await tx.lock_account("alice", create=True)
            await tx.insert_entry(
                LedgerEntry(
                    id="g1",
                    owner="alice",
                    kind=EntryKind.GRANT,
                    amount=grant,
                    ref="purchase-1",
                    created_at=datetime.now(UTC),
                )
            )
        await store.aclose()

    asyncio.run(seed())
    results = run_together(
        "charge",
        [
            {
                **config,
                "owner": "alice",
                "amount": amount,
                "cap": cap,
                "refs": refs,
                "seed": i,
                "refund_rate": 0.15,
            }
            for i in range(PROCESSES)
        ],
    )
    outcomes: dict[str, int] = {}
    for r in results:
        for k, v in r["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
    # Every process tried every reference; the races really happened.
    assert outcomes.get("replay", 0) > 0
    assert outcomes.get("charged", 0) > 0

    per_ref = query(
        "SELECT ref, kind, COUNT(*), SUM(amount) FROM chatsvg_ledger "
        "WHERE kind IN ('charge', 'refund') GROUP BY ref, kind"
    )
    charges = {ref: total for ref, kind, n, total in per_ref if kind == "charge" and n == 1}
    refunds = {ref: total for ref, kind, n, total in per_ref if kind == "refund" and n == 1}
    assert all(n == 1 for _, _, n, _ in per_ref), "a job was charged or refunded twice"
    assert set(refunds) <= set(charges), "a refund without a charge"
    assert all(refunds[r] == -charges[r] for r in refunds), "a refund of another amount"
    assert len(charges) == outcomes["charged"]
    assert len(refunds) == outcomes.get("refunded", 0)

    (total,) = query("SELECT COALESCE(SUM(amount), 0) FROM chatsvg_ledger WHERE owner = 'alice'")[0]
    (stored,) = query("SELECT balance FROM chatsvg_accounts WHERE owner = 'alice'")[0]
    assert stored == total == grant - amount * (len(charges) - len(refunds))
    assert total >= 0
    used = amount * (len(charges) - len(refunds))
    assert used <= cap
    # The ceiling was reached: either the money or the cap ran out.
    assert outcomes.get("insufficient", 0) + outcomes.get("cap", 0) > 0

    # The balance never went below zero at any point: replay the entries in
    # commit order (seq) and check every prefix.
    running = 0
    for (delta,) in query("SELECT amount FROM chatsvg_ledger WHERE owner = 'alice' ORDER BY seq"):
        running += delta
        assert running >= 0


@pytest.mark.parametrize("point", ["begin", "before_commit", "after_commit"])
def test_kill_9_mid_transaction_leaves_all_or_nothing(
    database: tuple[dict[str, Any], Query, Callable[[], Any]], point: str
) -> None:
    config, query, opener = database
    tag = f"{point}-{os.getpid()}"
    proc = spawn("crash", {**config, "point": point, "tag": tag})
    try:
        expect_line(proc, "READY")
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        expect_line(proc, "PAUSED")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    counts = [
        query(f"SELECT COUNT(*) FROM chatsvg_jobs WHERE id = 'job-{tag}'")[0][0],
        query(f"SELECT COUNT(*) FROM chatsvg_ledger WHERE id = 'entry-{tag}'")[0][0],
        query(f"SELECT COUNT(*) FROM chatsvg_idempotency WHERE idem_key = 'key-{tag}'")[0][0],
        query(f"SELECT COUNT(*) FROM chatsvg_results WHERE job_id = 'job-{tag}'")[0][0],
        query("SELECT COUNT(*) FROM chatsvg_accounts WHERE owner = 'crash-owner'")[0][0],
    ]
    expected = 1 if point == "after_commit" else 0
    assert counts == [expected] * 5, counts
    (balance,) = query(
        "SELECT COALESCE(SUM(balance), 0) FROM chatsvg_accounts WHERE owner = 'crash-owner'"
    )[0]
    assert balance == 50 * expected

    # The dead process's locks died with it: a new writer gets the same
    # account lock and the write lock at once.
    async def write_again() -> float:
        store: Store = await opener()
        started = time.perf_counter()
        async with store.transaction() as tx:
            await tx.lock_account("crash-owner", create=True)
            await tx.insert_entry(
                LedgerEntry(
                    id=f"after-{tag}",
                    owner="crash-owner",
                    kind=EntryKind.GRANT,
                    amount=1,
                    created_at=datetime.now(UTC),
                )
            )
        took = time.perf_counter() - started
        await store.aclose()
        return took

    assert asyncio.run(write_again()) < 5.0
    assert query("SELECT balance FROM chatsvg_accounts WHERE owner = 'crash-owner'") == [
        (50 * expected + 1,)
    ]
