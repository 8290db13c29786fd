"""Storage throughput beside its floor: charges/s and claim→complete/s, SQLite and PostgreSQL.

For each backend and each concurrency (1 worker, 8 concurrent workers) it
measures two operations done through the library:

* **charge**: one transaction running ``chatsvg_core.ledger.charge`` (account
  lock, replay check, mode check, balance check, daily-cap usage, insert the
  entry, move the stored balance);
* **claim→complete**: one transaction with ``claim_next`` and one with
  ``complete_job`` (result stored, fencing token checked).

Beside each it runs the *floor*: the same SQL statements the operation needs,
issued straight through the driver in the same process with the same
concurrency (SQLite: ``sqlite3`` calls on the caller's thread, one connection
per worker thread; PostgreSQL: psycopg async connections, one per worker),
with no models, no validation and no thread hops. The ratio library/floor is
the cost of the library; the goal is at most 2x. Rounds are paired (library
and floor back to back on one database) and the median ratio is reported, so
a shared, noisy machine hits both sides alike.

Concurrent workers charge their own owner each (one owner per worker), since
charges of one owner are serialized by design.

    python benchmarks/bench_storage.py [--postgres URL] [--n 200] [--repeats 5]

PostgreSQL runs when ``--postgres`` or ``CHATSVG_TEST_POSTGRES_URL`` gives a
server; every run uses a fresh schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from chatsvg_core import ledger
from chatsvg_core.jobs import new_job
from chatsvg_core.storage import Store, claim_next, complete_job
from chatsvg_core.storage.sqlite import SQLiteStore

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LEASE = timedelta(minutes=5)
WORKERS = (1, 8)
DAY_CAP = 10**12


def us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


# --- seeding (through the library) ---------------------------------------------------


async def seed_owners(store: Store, owners: int) -> None:
    async with store.transaction() as tx:
        for w in range(owners):
            await ledger.grant(tx, f"owner-{w}", 10**12, now=datetime.now(UTC))


async def seed_jobs(store: Store, n: int) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    async with store.transaction() as tx:
        for i in range(n):
            await tx.insert_job(
                new_job(
                    job_id=uuid4().hex,
                    owner="owner-0",
                    request={"prompt": "a red circle", "i": i},
                    request_hash="h",
                    now=now,
                )
            )


# --- the library's operations ------------------------------------------------------------


async def lib_charges(store: Store, workers: int, n: int) -> float:
    per = n // workers

    async def worker(w: int) -> None:
        owner = f"owner-{w}"
        for _ in range(per):
            async with store.transaction() as tx:
                await ledger.charge(
                    tx, owner, 1, ref=uuid4().hex, now=datetime.now(UTC), daily_cap=DAY_CAP
                )

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return per * workers / (time.perf_counter() - started)


async def lib_claims(store: Store, workers: int, n: int) -> float:
    done = 0

    async def worker(w: int) -> None:
        nonlocal done
        while True:
            async with store.transaction() as tx:
                job = await claim_next(tx, now=datetime.now(UTC), worker_id=f"w{w}", lease=LEASE)
            if job is None:
                return
            async with store.transaction() as tx:
                await complete_job(
                    tx, job.id, token=job.lease_token or 0, now=datetime.now(UTC), svg="<svg/>"
                )
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return done / (time.perf_counter() - started)


# --- the floors: the same statements, straight through the driver ----------------------

CHARGE_SQL = [
    ("lock", "SELECT 1 FROM chatsvg_accounts WHERE owner = ?{fu}"),
    ("seen", "SELECT id, owner, kind, amount, ref, memo, created_at FROM chatsvg_ledger "
             "WHERE kind = 'charge' AND ref = ?"),
    ("other", "SELECT id, owner, kind, amount, ref, memo, created_at FROM chatsvg_ledger "
              "WHERE kind = 'reserve' AND ref = ?"),
    ("balance", "SELECT balance FROM chatsvg_accounts WHERE owner = ?"),
    ("usage", "SELECT COALESCE(-SUM(e.amount), 0) FROM chatsvg_ledger e "
              "WHERE e.owner = ? AND e.kind IN ('charge', 'reserve') "
              "AND e.created_at >= ? AND e.created_at < ? "
              "AND NOT EXISTS (SELECT 1 FROM chatsvg_ledger r WHERE r.ref = e.ref "
              "AND r.kind = CASE e.kind WHEN 'charge' THEN 'refund' ELSE 'release' END)"),
    ("insert", "INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, memo, created_at) "
               "VALUES (?, ?, 'charge', -1, ?, NULL, ?) "
               "ON CONFLICT (kind, ref) WHERE ref IS NOT NULL DO NOTHING"),
    ("move", "INSERT INTO chatsvg_accounts (owner, balance, created_at) VALUES (?, -1, ?) "
             "ON CONFLICT (owner) DO UPDATE "
             "SET balance = chatsvg_accounts.balance + excluded.balance"),
]  # fmt: skip
JOB_COLS = (
    "id, owner, status, attempt, max_attempts, run_at, lease_expires_at, lease_token, "
    "worker_id, request, request_hash, idempotency_key, last_error, result_ref, version, "
    "created_at, updated_at"
)
CLAIM_SQL = (
    f"SELECT {JOB_COLS} FROM chatsvg_jobs WHERE status = 'queued' AND run_at <= ? "
    "ORDER BY run_at, created_at, id LIMIT 1{sl}"
)
UPDATE_SQL = (
    "UPDATE chatsvg_jobs SET owner = ?, status = ?, attempt = ?, max_attempts = ?, "
    "run_at = ?, lease_expires_at = ?, lease_token = ?, worker_id = ?, request = ?, "
    "request_hash = ?, idempotency_key = ?, last_error = ?, result_ref = ?, "
    "version = ?, updated_at = ? WHERE id = ? AND version = ?"
)
GET_SQL = f"SELECT {JOB_COLS} FROM chatsvg_jobs WHERE id = ?{{fu}}"
RESULT_SQL = (
    "INSERT INTO chatsvg_results (job_id, svg, metadata, created_at) VALUES (?, ?, '{}', ?) "
    "ON CONFLICT (job_id) DO NOTHING"
)


def charge_params(owner: str, ref: str, now: Any, day: tuple[Any, Any]) -> list[tuple[Any, ...]]:
    return [
        (owner,),
        (ref,),
        (ref,),
        (owner,),
        (owner, day[0], day[1]),
        (uuid4().hex, owner, ref, now),
        (owner, now),
    ]


def claim_update(row: tuple[Any, ...], now: Any, worker: str, lease_end: Any) -> tuple[Any, ...]:
    attempt = row[3] + 1
    return (row[1], "running", attempt, row[4], row[5], lease_end, attempt, worker, row[9],
            row[10], row[11], row[12], None, row[14] + 1, now, row[0], row[14])  # fmt: skip


def done_update(row: tuple[Any, ...], now: Any) -> tuple[Any, ...]:
    return (row[1], "succeeded", row[3], row[4], row[5], None, None, row[8], row[9],
            row[10], row[11], row[12], row[0], row[14] + 1, now, row[0], row[14])  # fmt: skip


def day_window(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def sqlite_floor(path: str, sync: str, op: str, workers: int, n: int) -> float:
    """Raw sqlite3 on the calling threads: one connection and thread per worker."""
    per = n // workers
    done = [0] * workers

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA synchronous = {sync}")
        return conn

    def charge_worker(w: int) -> None:
        conn = connect()
        owner = f"owner-{w}"
        stmts = [s.format(fu="") for _, s in CHARGE_SQL]
        for _ in range(per):
            now = datetime.now(UTC)
            day = day_window(now)
            conn.execute("BEGIN IMMEDIATE")
            for sql, params in zip(
                stmts,
                charge_params(owner, uuid4().hex, us(now), (us(day[0]), us(day[1]))),
                strict=True,
            ):
                conn.execute(sql, params).fetchall()
            conn.execute("COMMIT")
            done[w] += 1
        conn.close()

    def claim_worker(w: int) -> None:
        conn = connect()
        claim_sql = CLAIM_SQL.replace("{sl}", "")
        get_sql = GET_SQL.format(fu="")
        while True:
            now = us(datetime.now(UTC))
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(claim_sql, (now,)).fetchone()
            if row is None:
                conn.execute("COMMIT")
                break
            conn.execute(UPDATE_SQL, claim_update(row, now, f"w{w}", now + 300_000_000))
            conn.execute("COMMIT")
            now = us(datetime.now(UTC))
            conn.execute("BEGIN IMMEDIATE")
            current = conn.execute(get_sql, (row[0],)).fetchone()
            conn.execute(RESULT_SQL, (row[0], "<svg/>", now))
            conn.execute(UPDATE_SQL, done_update(current, now))
            conn.execute("COMMIT")
            done[w] += 1
        conn.close()

    target = charge_worker if op == "charge" else claim_worker
    threads = [threading.Thread(target=target, args=(w,)) for w in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


async def postgres_floor(url: str, schema: str, op: str, workers: int, n: int) -> float:
    """Raw psycopg async: one connection and task per worker."""
    import psycopg

    per = n // workers
    done = [0] * workers
    conns = [
        await psycopg.AsyncConnection.connect(
            url, options=f"-c search_path={schema} -c timezone=UTC"
        )
        for _ in range(workers)
    ]

    async def charge_worker(w: int) -> None:
        conn = conns[w]
        owner = f"owner-{w}"
        stmts = [s.format(fu=" FOR UPDATE").replace("?", "%s") for _, s in CHARGE_SQL]
        for _ in range(per):
            now = datetime.now(UTC)
            for sql, params in zip(
                stmts, charge_params(owner, uuid4().hex, now, day_window(now)), strict=True
            ):
                cur = await conn.execute(sql, params)
                if cur.description:
                    await cur.fetchall()
            await conn.commit()
            done[w] += 1

    async def claim_worker(w: int) -> None:
        conn = conns[w]
        claim_sql = CLAIM_SQL.replace("{sl}", " FOR UPDATE SKIP LOCKED").replace("?", "%s")
        get_sql = GET_SQL.format(fu=" FOR UPDATE").replace("?", "%s")
        update_sql = UPDATE_SQL.replace("?", "%s")
        result_sql = RESULT_SQL.replace("?", "%s")
        while True:
            now = datetime.now(UTC)
            row = await (await conn.execute(claim_sql, (now,))).fetchone()
            if row is None:
                await conn.commit()
                break
            await conn.execute(update_sql, claim_update(row, now, f"w{w}", now + LEASE))
            await conn.commit()
            now = datetime.now(UTC)
            current = await (await conn.execute(get_sql, (row[0],))).fetchone()
            assert current is not None
            await conn.execute(result_sql, (row[0], "<svg/>", now))
            await conn.execute(update_sql, done_update(current, now))
            await conn.commit()
            done[w] += 1

    target = charge_worker if op == "charge" else claim_worker
    started = time.perf_counter()
    await asyncio.gather(*(target(w) for w in range(workers)))
    elapsed = time.perf_counter() - started
    for conn in conns:
        await conn.close()
    return sum(done) / elapsed


# --- driver ------------------------------------------------------------------------------


async def one_round(
    store: Store,
    floor: Callable[[str, int, int], Awaitable[float]],
    op: str,
    workers: int,
    n: int,
    floor_first: bool,
) -> tuple[float, float]:
    """Library and floor back to back on one fresh database, each on its own seeded work."""

    async def library() -> float:
        if op == "charge":
            return await lib_charges(store, workers, n)
        await seed_jobs(store, n)
        return await lib_claims(store, workers, n)

    async def raw() -> float:
        if op == "claim":
            await seed_jobs(store, n)
        return await floor(op, workers, n)

    if op == "charge":
        await seed_owners(store, workers)
    if floor_first:
        base = await raw()
        return await library(), base
    lib = await library()
    return lib, await raw()


async def measure(
    name: str,
    fresh: Callable[[], Awaitable[tuple[Store, Callable[[str, int, int], Awaitable[float]]]]],
    n: int,
    repeats: int,
    rows: list[tuple[str, str, int, float, float, float]],
) -> None:
    """``repeats`` paired rounds per (operation, workers), each on a new database.

    Each round runs the library and the floor back to back (alternating which
    goes first), so a slow patch of a shared machine hits both; the reported
    ratio is the median of the rounds' ratios, beside the best rates seen.
    """
    for op in ("charge", "claim"):
        for workers in WORKERS:
            libs: list[float] = []
            floors: list[float] = []
            for r in range(repeats):
                store, floor = await fresh()
                try:
                    lib, base = await one_round(store, floor, op, workers, n, r % 2 == 1)
                finally:
                    await store.aclose()
                libs.append(lib)
                floors.append(base)
            ratio = statistics.median(b / a for a, b in zip(libs, floors, strict=True))
            rows.append((name, op, workers, max(libs), max(floors), ratio))
            print(
                f"  {name:18} {op:7} x{workers}: library {max(libs):8.0f}/s  "
                f"floor {max(floors):8.0f}/s  median ratio {ratio:4.2f}x",
                file=sys.stderr,
            )


def cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--n", type=int, default=200, help="operations per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="paired rounds per cell")
    args = parser.parse_args()
    rows: list[tuple[str, str, int, float, float, float]] = []

    with tempfile.TemporaryDirectory(prefix="bench-storage-") as folder:
        for sync in ("full", "normal"):
            made = iter(range(10**6))

            async def fresh_sqlite(
                sync: str = sync, made: Any = made
            ) -> tuple[Store, Callable[[str, int, int], Awaitable[float]]]:
                path = str(Path(folder) / f"{sync}-{next(made)}.db")
                store = await SQLiteStore.open(path, synchronous=sync)  # type: ignore[arg-type]

                async def floor(op: str, workers: int, n: int) -> float:
                    return await asyncio.to_thread(sqlite_floor, path, sync.upper(), op, workers, n)

                return store, floor

            await measure(f"sqlite ({sync})", fresh_sqlite, args.n, args.repeats, rows)

    if args.postgres:
        from chatsvg_core.storage.postgres import PostgresStore

        url: str = args.postgres
        schemas: list[str] = []

        async def fresh_pg() -> tuple[Store, Callable[[str, int, int], Awaitable[float]]]:
            schema = f"chatsvg_bench_{secrets.token_hex(4)}"
            schemas.append(schema)
            store = await PostgresStore.open(url, schema=schema, max_size=8)

            async def floor(op: str, workers: int, n: int) -> float:
                return await postgres_floor(url, schema, op, workers, n)

            return store, floor

        try:
            await measure("postgresql", fresh_pg, args.n, args.repeats, rows)
        finally:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())

    cpu = cpu_model()
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs ({cpu}), "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, n={args.n}\n"
    )
    print(
        "| backend | operation | workers | library ops/s (best) | floor ops/s (best) "
        "| floor/library (median of rounds) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, op, workers, lib, base, ratio in rows:
        label = "charge" if op == "charge" else "claim→complete"
        print(f"| {name} | {label} | {workers} | {lib:,.0f} | {base:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    asyncio.run(main())
