"""The engine beside hand-written SQL that gives the same guarantees (issue 15's floor).

Each worker process submits its share of the jobs with an idempotency key,
then drains the queue; the run ends when every process found nothing left.
Two ways, measured in one run with rounds interleaved (floor, engine, engine,
floor, ...) on a fresh database each:

* **floor**: the minimal SQL, written by hand and sent straight through the
  driver (``sqlite3`` on the caller's thread; psycopg async, one connection
  per process, default settings), in the engine's three transactions per job:

  1. submit: claim the idempotency key (upsert that replaces only an expired
     record) and insert the QUEUED job;
  2. claim and charge: claim the next due job with lease and fencing token
     (``FOR UPDATE SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE``), lock the
     owner's account reading its balance and today's net usage (daily cap),
     insert the charge (unique per job) and move the stored balance;
  3. finish: succeed the job only under its current fencing token, and
     store the result.

* **engine**: ``Engine.submit`` and ``Engine.process_next`` with an instant
  provider and a daily cap, so it does the same work (plus what the engine
  does and the floor does not: prompt validation, sanitizing, events).

Two ratios per row: wall time (jobs/s, floor ÷ engine), and CPU per job
(client processes plus, for PostgreSQL, the server backends serving them,
read from ``/proc``; engine ÷ floor). On a shared, overloaded machine the
wall-clock rate mostly measures how much CPU and disk the other tenants
leave; CPU per job is the steadier figure.

Both sides use the library's schema (same tables and indexes), the same
durability (SQLite ``synchronous=FULL``, PostgreSQL's default
``synchronous_commit``) and the same number of processes. A separate
one-process pass counts statements and round trips per job (SQLite: calls
into ``sqlite3`` and hops to the store's thread; PostgreSQL: statements sent
and waits on the server, counted at psycopg's ``wait``).

    python benchmarks/bench_floor.py [--postgres URL] [--n 400] [--rounds 3]

``--contention`` (SQLite only) instead measures where each side's time goes
when processes compete for SQLite's write lock, per job: ``BEGIN IMMEDIATE``
attempts that found the lock held (busy), the wall time spent taking the lock
(SQLite's busy handler, and for the engine its retry loop on the event loop,
the CPU that loop burned and the waits it handed to the store's thread), and
the write lock's hold time per transaction (``BEGIN IMMEDIATE`` returned to
``COMMIT`` returned), split into the time inside the transaction before
``COMMIT`` (statements and the Python between them) and the ``COMMIT`` itself
(its fsync). A connection subclass times the calls, so these rounds run a
little slower than the timed ones; their figures are for comparing the sides,
not for the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import platform
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chatsvg_core import Engine, GenerationRequest, Ledger, ProviderOutput
from chatsvg_core.storage import Store

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
    '<circle cx="5" cy="5" r="4" fill="teal"/></svg>'
)
LEASE = timedelta(minutes=5)
CAP = 10**9
PRICE = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InstantProvider:
    name = "instant"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        return ProviderOutput(text=SVG, model="instant", provider=self.name, latency_s=0.0)


def owner_of(worker: int) -> str:
    return f"owner{worker}"


# --- the floor: hand-written SQL ----------------------------------------------------------


def _canon(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _day(now: datetime) -> tuple[datetime, datetime]:
    start = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


USAGE = (
    "SELECT COALESCE(-SUM(e.amount), 0) FROM chatsvg_ledger e "
    "WHERE e.owner = a.owner AND e.kind = 'charge' AND e.created_at >= {p} "
    "AND e.created_at < {p} AND NOT EXISTS (SELECT 1 FROM chatsvg_ledger r "
    "WHERE r.ref = e.ref AND r.kind = 'refund')"
)


def _job_row(job_id: str, owner: str, key: str, prompt: str, now: Any) -> tuple[Any, ...]:
    request = {"prompt": prompt, "detail": "medium", "model": None, "style": None}
    digest = hashlib.sha256(_canon(request).encode()).hexdigest()
    return (job_id, owner, now, _canon(request), f"v1:{digest}", key, now, now)


INSERT_JOB = (
    "INSERT INTO chatsvg_jobs (id, owner, status, attempt, max_attempts, run_at, "
    "request, request_hash, idempotency_key, version, created_at, updated_at) "
    "VALUES ({p}, {p}, 'queued', 0, 3, {p}, {p}, {p}, {p}, 0, {p}, {p})"
)
CLAIM_KEY = (
    "INSERT INTO chatsvg_idempotency (scope, idem_key, request_hash, job_id, created_at, "
    "expires_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (scope, idem_key) DO UPDATE "
    "SET request_hash = excluded.request_hash, job_id = excluded.job_id, "
    "created_at = excluded.created_at, expires_at = excluded.expires_at "
    "WHERE chatsvg_idempotency.expires_at <= {p} RETURNING job_id"
)
SUCCEED = (
    "UPDATE chatsvg_jobs SET status = 'succeeded', lease_token = NULL, lease_expires_at = NULL, "
    "result_ref = id, version = version + 1, updated_at = {p} "
    "WHERE id = {p} AND status = 'running' AND lease_token = {p}"
)
PUT_RESULT = (
    "INSERT INTO chatsvg_results (job_id, svg, metadata, created_at) VALUES ({p}, {p}, {p}, {p}) "
    "ON CONFLICT (job_id) DO NOTHING"
)
INSERT_CHARGE = (
    "INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, created_at) "
    "VALUES ({p}, {p}, 'charge', {p}, {p}, {p}) ON CONFLICT (kind, ref) WHERE ref IS NOT NULL "
    "DO NOTHING"
)


SYNCHRONOUS = os.environ.get("BENCH_SQLITE_SYNCHRONOUS", "full")
FLOOR_USAGE = os.environ.get("BENCH_FLOOR_USAGE", "sum")
"""The floor's daily usage (SQLite and PostgreSQL): ``sum`` (USAGE over the owner's
day, the floor before schema 6) or ``counter`` (the account row's stored usage, as
the library reads it since schema 6; needs a schema-6 database)."""
CONTENTION = os.environ.get("BENCH_CONTENTION") == "1"

# --- contention probe (--contention) -------------------------------------------------------

PROBE: Counter[str] = Counter()
"""This process's contention figures: counts, and seconds (``*_s``)."""


def _queued() -> float:
    """Seconds the main thread has waited on a run queue (runnable, not running) so far (Linux).

    The main thread's: both sides run every statement and ``COMMIT`` there
    (one task per process, so the engine commits in place; see ``_alone``).
    """
    try:
        with open(f"/proc/self/task/{threading.main_thread().native_id}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except OSError:
        return 0.0


class TimedConnection(sqlite3.Connection):
    """Times ``BEGIN``, ``COMMIT`` and ``ROLLBACK``, sent through ``execute`` or a cursor's.

    The floor sends them through the connection, the engine's SQLite store
    (since session 14) through the transaction's cursor: both are timed
    (``TimedCursor``). Also the time the holder spent runnable but not
    running while it held the lock (the run-queue delay from ``/proc``):
    with more processes than cores, a holder that waits for a core holds up
    every other process.
    """

    _held = 0.0
    _queued = 0.0

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(TimedCursor if factory is None else factory)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        # Connection.execute runs on a new cursor; this one is timed.
        return self.cursor().execute(sql, *args)


class TimedCursor(sqlite3.Cursor):
    """A ``TimedConnection``'s cursor: the timing, kept on the connection."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        conn = self.connection
        assert isinstance(conn, TimedConnection)
        if sql.startswith("BEGIN"):
            main = threading.current_thread() is threading.main_thread()
            start = time.perf_counter()
            try:
                cur = super().execute(sql, *args)
            except sqlite3.OperationalError:
                PROBE["busy"] += 1
                PROBE["busy_s"] += time.perf_counter() - start
                raise
            conn._held = end = time.perf_counter()
            conn._queued = _queued()
            PROBE["begins"] += 1
            PROBE["begin_s"] += end - start
            if not main:
                PROBE["thread_waits"] += 1
                PROBE["thread_wait_s"] += end - start
            return cur
        if sql in ("COMMIT", "ROLLBACK"):
            start = time.perf_counter()
            cur = super().execute(sql, *args)
            end = time.perf_counter()
            PROBE["transactions"] += 1
            PROBE["inside_s"] += start - conn._held
            PROBE["commit_s"] += end - start
            # Slow COMMITs: a checkpoint, or an fsync the disk kept waiting.
            if end - start > 0.005:
                PROBE["slow_commits"] += 1
                PROBE["slow_commit_s"] += end - start
            PROBE["hold_s"] += end - conn._held
            PROBE["hold_queued_s"] += _queued() - conn._queued
            return cur
        return super().execute(sql, *args)


def install_probe() -> None:
    """Time the write lock in this process: every connection made from here is a TimedConnection."""
    from chatsvg_core.storage import sqlite as engine_sqlite

    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return original(*args, factory=TimedConnection, **kwargs)

    sqlite3.connect = connect  # type: ignore[assignment]
    begin = engine_sqlite.SQLiteStore._begin

    async def timed_begin(self: Any, conn: sqlite3.Connection) -> bool:
        # The engine's slow path (the lock was held at the first try): the
        # retry loop on the event loop, then the wait on the store's thread.
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return await begin(self, conn)
        finally:
            PROBE["slow_begins"] += 1
            PROBE["slow_begin_s"] += time.perf_counter() - start
            PROBE["slow_begin_cpu_s"] += time.process_time() - cpu

    engine_sqlite.SQLiteStore._begin = timed_begin  # type: ignore[method-assign]


def floor_sqlite(path: str, worker: int, share: int) -> int:
    """One process's share through ``sqlite3`` directly; returns jobs it finished."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS.upper()}")
    conn.execute("PRAGMA journal_mode = WAL")
    owner = owner_of(worker)
    scope = f"{len(owner)}:{owner}/8:generate"

    def us(dt: datetime) -> int:
        return (dt - EPOCH) // timedelta(microseconds=1)

    p = "?"
    for i in range(share):
        now = us(datetime.now(UTC))
        job_id = secrets.token_hex(16)
        row = _job_row(job_id, owner, f"k{worker}-{i}", f"a cat {worker}-{i}", now)
        conn.execute("BEGIN IMMEDIATE")
        won = conn.execute(
            CLAIM_KEY.format(p=p), (scope, row[5], row[4], job_id, now, now + 86_400_000_000, now)
        ).fetchone()
        if won is not None:
            conn.execute(INSERT_JOB.format(p=p), row)
        conn.execute("COMMIT")
    done = 0
    while True:
        at = datetime.now(UTC)
        now = us(at)
        start, end = _day(at)
        conn.execute("BEGIN IMMEDIATE")
        claimed = conn.execute(
            "UPDATE chatsvg_jobs SET status = 'running', attempt = attempt + 1, "
            "lease_token = attempt + 1, lease_expires_at = ?, worker_id = ?, "
            "version = version + 1, updated_at = ? WHERE id = (SELECT id FROM chatsvg_jobs "
            "WHERE status = 'queued' AND run_at <= ? ORDER BY run_at, created_at, id LIMIT 1) "
            "RETURNING id, owner, lease_token",
            (now + us(EPOCH + LEASE), f"w{worker}", now, now),
        ).fetchone()
        if claimed is None:
            conn.execute("COMMIT")
            break
        job_id, job_owner, token = claimed
        if FLOOR_USAGE == "counter":
            balance, since, until, used = conn.execute(
                "SELECT balance, cap_since, cap_until, cap_used FROM chatsvg_accounts "
                "WHERE owner = ?",
                (job_owner,),
            ).fetchone()
            if (since, until) != (us(start), us(end)) or used is None:
                used = conn.execute(
                    f"SELECT ({USAGE.format(p=p)}) FROM chatsvg_accounts a WHERE a.owner = ?",
                    (us(start), us(end), job_owner),
                ).fetchone()[0]
                conn.execute(
                    "UPDATE chatsvg_accounts SET cap_since = ?, cap_until = ?, cap_used = ? "
                    "WHERE owner = ?",
                    (us(start), us(end), used, job_owner),
                )
        else:
            balance, used = conn.execute(
                f"SELECT a.balance, ({USAGE.format(p=p)}) FROM chatsvg_accounts a "
                "WHERE a.owner = ?",
                (us(start), us(end), job_owner),
            ).fetchone()
        assert balance >= PRICE and used + PRICE <= CAP
        if conn.execute(
            INSERT_CHARGE.format(p=p), (secrets.token_hex(16), job_owner, -PRICE, job_id, now)
        ).rowcount:
            conn.execute(
                "UPDATE chatsvg_accounts SET balance = balance - ?"
                + (", cap_used = cap_used + ?" if FLOOR_USAGE == "counter" else "")
                + " WHERE owner = ?",
                (PRICE, PRICE, job_owner) if FLOOR_USAGE == "counter" else (PRICE, job_owner),
            )
        conn.execute("COMMIT")
        now = us(datetime.now(UTC))
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute(SUCCEED.format(p=p), (now, job_id, token)).rowcount == 1:
            conn.execute(PUT_RESULT.format(p=p), (job_id, SVG, "{}", now))
        conn.execute("COMMIT")
        done += 1
    conn.close()
    return done


def backend_cpu(pids: list[int]) -> float:
    """CPU seconds the PostgreSQL server processes ``pids`` used so far (same machine)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def server_cpu(url: str, app: str) -> float:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
        )
        return backend_cpu([r[0] for r in await cur.fetchall()])


def with_app(url: str, app: str) -> str:
    return url + ("&" if "?" in url else "?") + f"application_name={app}"


async def floor_postgres(url: str, schema: str, worker: int, share: int, app: str = "") -> int:
    """One process's share through psycopg directly; returns jobs it finished."""
    import psycopg

    conn = await psycopg.AsyncConnection.connect(
        with_app(url, app or "floor"), options=f"-c search_path={schema}"
    )
    owner = owner_of(worker)
    scope = f"{len(owner)}:{owner}/8:generate"
    p = "%s"
    for i in range(share):
        now = datetime.now(UTC)
        job_id = secrets.token_hex(16)
        row = _job_row(job_id, owner, f"k{worker}-{i}", f"a cat {worker}-{i}", now)
        cur = await conn.execute(
            CLAIM_KEY.format(p=p),
            (scope, row[5], row[4], job_id, now, now + timedelta(days=1), now),
        )
        if await cur.fetchone() is not None:
            await conn.execute(INSERT_JOB.format(p=p), row)
        await conn.commit()
    done = 0
    while True:
        now = datetime.now(UTC)
        start, end = _day(now)
        cur = await conn.execute(
            "UPDATE chatsvg_jobs SET status = 'running', attempt = attempt + 1, "
            "lease_token = attempt + 1, lease_expires_at = %s, worker_id = %s, "
            "version = version + 1, updated_at = %s WHERE id = (SELECT id FROM chatsvg_jobs "
            "WHERE status = 'queued' AND run_at <= %s ORDER BY run_at, created_at, id LIMIT 1 "
            "FOR UPDATE SKIP LOCKED) RETURNING id, owner, lease_token",
            (now + LEASE, f"w{worker}", now, now),
        )
        claimed = await cur.fetchone()
        if claimed is None:
            await conn.commit()
            break
        job_id, job_owner, token = claimed
        # Lock first, then read the usage in a statement of its own: under READ
        # COMMITTED one statement reads the snapshot it started with, before it
        # waited for the lock, and would miss the previous holder's charge.
        # With the counter (schema 6's columns), the lock's statement reads the
        # stored usage too, and the usage is summed only for a new window.
        cur = await conn.execute(
            "SELECT balance, cap_since, cap_until, cap_used FROM chatsvg_accounts "
            "WHERE owner = %s FOR UPDATE",
            (job_owner,),
        )
        balance, since, until, used = await cur.fetchone()  # type: ignore[misc]
        counter = FLOOR_USAGE == "counter"
        if not counter or (since, until) != (start, end) or used is None:
            cur = await conn.execute(
                f"SELECT ({USAGE.format(p=p)}) FROM chatsvg_accounts a WHERE a.owner = %s",
                (start, end, job_owner),
            )
            (used,) = await cur.fetchone()  # type: ignore[misc]
            if counter:
                await conn.execute(
                    "UPDATE chatsvg_accounts SET cap_since = %s, cap_until = %s, cap_used = %s "
                    "WHERE owner = %s",
                    (start, end, used, job_owner),
                )
        assert balance >= PRICE and used + PRICE <= CAP
        await conn.execute(
            "WITH ins AS (" + INSERT_CHARGE.format(p=p) + " RETURNING amount) "
            "UPDATE chatsvg_accounts SET balance = balance + ins.amount"
            + (", cap_used = cap_used - ins.amount" if counter else "")
            + " FROM ins WHERE owner = %s",
            (secrets.token_hex(16), job_owner, -PRICE, job_id, now, job_owner),
        )
        await conn.commit()
        now = datetime.now(UTC)
        await conn.execute(
            "WITH done AS (" + SUCCEED.format(p=p) + " RETURNING id) "
            "INSERT INTO chatsvg_results (job_id, svg, metadata, created_at) "
            "SELECT id, %s, %s, %s FROM done ON CONFLICT (job_id) DO NOTHING",
            (now, job_id, token, SVG, "{}", now),
        )
        await conn.commit()
        done += 1
    if app:
        SERVER_CPU[app] = await server_cpu(url, app)
    await conn.close()
    return done


SERVER_CPU: dict[str, float] = {}


# --- the engine ---------------------------------------------------------------------------


async def open_store(backend: str, where: str, schema: str | None, app: str = "") -> Store:
    if backend == "sqlite":
        from chatsvg_core.storage.sqlite import SQLiteStore

        return await SQLiteStore.open(where, synchronous=SYNCHRONOUS)  # type: ignore[arg-type]
    from chatsvg_core.storage.postgres import PostgresStore

    return await PostgresStore.open(
        with_app(where, app or "engine"), schema=schema, min_size=1, max_size=2
    )


async def engine_share(store: Store, worker: int, share: int) -> int:
    engine = Engine(store, None, InstantProvider(), daily_cap=CAP, lease=LEASE)
    owner = owner_of(worker)
    for i in range(share):
        await engine.submit(owner, f"k{worker}-{i}", {"prompt": f"a cat {worker}-{i}"})
    done = 0
    while await engine.process_next(f"w{worker}") is not None:
        done += 1
    return done


# --- processes ------------------------------------------------------------------------------


def _child(
    kind: str,
    backend: str,
    where: str,
    schema: str | None,
    worker: int,
    share: int,
    ready: Any,
    go: Any,
    out: Any,
) -> None:
    if CONTENTION:
        install_probe()

    async def main() -> tuple[float, float, int, float, float]:
        store = None
        app = f"chatsvg-bench-{os.getpid()}"
        if kind == "engine":
            store = await open_store(backend, where, schema, app)
        ready.release()
        go.wait()
        PROBE.clear()  # opening the store (its schema check) is not part of the run
        cpu = time.process_time()
        start = time.perf_counter()
        server = 0.0
        if kind == "engine":
            assert store is not None
            done = await engine_share(store, worker, share)
            end, cpu = time.perf_counter(), time.process_time() - cpu
            if backend == "postgres":
                server = await server_cpu(where, app)
            await store.aclose()
        elif backend == "sqlite":
            done = floor_sqlite(where, worker, share)
            end, cpu = time.perf_counter(), time.process_time() - cpu
        else:
            assert schema is not None
            done = await floor_postgres(where, schema, worker, share, app)
            end, cpu = time.perf_counter(), time.process_time() - cpu
            server = SERVER_CPU[app]
        return start, end, done, cpu, server

    result = asyncio.run(main())
    out.put((*result, dict(PROBE)))


def timed_round(
    kind: str,
    backend: str,
    where: str,
    schema: str | None,
    n: int,
    workers: int,
    probe: Counter[str] | None = None,
) -> tuple[float, float]:
    """Jobs per second, and CPU ms per job (client + server), of one round on a fresh database.

    The engine's server CPU includes opening its pool (a few queries), so it
    is a slight overestimate.
    """
    ctx = mp.get_context("spawn")
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=_child,
            args=(kind, backend, where, schema, w, n // workers, ready, go, out),
        )
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.acquire()
    go.set()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    done = sum(r[2] for r in results)
    assert done == n // workers * workers, (kind, done)
    cpu = sum(r[3] + r[4] for r in results)
    if probe is not None:
        for r in results:
            probe.update(r[5])
        probe["jobs"] += done
        probe["wall_s"] += end - start
        probe["cpu_s"] += cpu
    return done / (end - start), 1000 * cpu / done


# --- counting statements and round trips ------------------------------------------------------


def _count_sqlite(kind: str, path: str, n: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    original_connect = sqlite3.connect
    caller = threading.current_thread()

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = original_connect(*args, **kwargs)

        def trace(sql: str) -> None:
            counts["statements"] += 1
            # A statement run on the caller's thread is a call the caller waits
            # on, as the floor's are; one on the store's thread is behind a hop.
            if threading.current_thread() is caller:
                counts["inline"] += 1

        conn.set_trace_callback(trace)
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        if kind == "floor":
            floor_sqlite(path, 0, n)
            counts["round trips"] = counts["statements"]  # each a call on the caller's thread
        else:
            from chatsvg_core.storage.sqlite import SQLiteStore

            async def main() -> None:
                store = await open_store("sqlite", path, None)
                assert isinstance(store, SQLiteStore)
                original = store._call

                async def call(fn: Callable[[], Any]) -> Any:
                    counts["round trips"] += 1
                    return await original(fn)

                store._call = call  # type: ignore[method-assign]
                counts.clear()
                await engine_share(store, 0, n)
                await store.aclose()
                counts["round trips"] -= 1  # aclose's hop

            asyncio.run(main())
            # Counted alike on both sides: hops to the store's thread plus
            # calls into sqlite3 made on the caller's thread.
            counts["round trips"] += counts["inline"]
    finally:
        sqlite3.connect = original_connect  # type: ignore[assignment]
    return counts


def _count_postgres(kind: str, url: str, schema: str, n: int) -> Counter[str]:
    import psycopg

    counts: Counter[str] = Counter()
    original_wait = psycopg.AsyncConnection.wait
    original_exec = psycopg.AsyncCursor.execute
    counting = [kind == "floor"]

    async def wait(self: Any, gen: Any, **kwargs: Any) -> Any:
        if counting[0]:
            counts["round trips"] += 1
        return await original_wait(self, gen, **kwargs)

    async def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if counting[0]:
            counts["statements"] += 1
        return await original_exec(self, query, params, **kwargs)

    psycopg.AsyncConnection.wait = wait  # type: ignore[method-assign]
    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
    try:
        if kind == "floor":
            asyncio.run(floor_postgres(url, schema, 0, n))
            counts["round trips"] -= 2  # connect + close
        else:

            async def main() -> None:
                store = await open_store("postgres", url, schema)
                counting[0] = True
                await engine_share(store, 0, n)
                counting[0] = False
                await store.aclose()

            asyncio.run(main())
    finally:
        psycopg.AsyncConnection.wait = original_wait  # type: ignore[method-assign]
        psycopg.AsyncCursor.execute = original_exec  # type: ignore[method-assign]
    return counts


# --- setup ----------------------------------------------------------------------------------------


async def prepare(backend: str, where: str, schema: str | None, workers: int, n: int) -> None:
    store = await open_store(backend, where, schema)
    ledger = Ledger(store)
    for w in range(workers):
        await ledger.grant(owner_of(w), 10 * n)
    await store.aclose()


def fresh(backend: str, tmp: str, url: str | None, schemas: list[str]) -> tuple[str, str | None]:
    if backend == "sqlite":
        return str(Path(tmp) / f"{secrets.token_hex(4)}.db"), None
    assert url is not None
    schema = f"chatsvg_floor_{secrets.token_hex(4)}"
    schemas.append(schema)
    return url, schema


def contention(tmp: str, n: int, rounds: int, workers_list: list[int]) -> None:
    """The ``--contention`` table: SQLite rounds, interleaved, summed per side."""
    print(
        "| processes | side | jobs/s | CPU ms/job | busy BEGINs/job | lock wait ms/job | "
        "slow-path ms/job (CPU) | thread waits/job | transactions/job | "
        "hold ms/txn (inside + COMMIT) | COMMITs > 5 ms per 100 txn (ms each) | "
        "holder runnable, not running, ms/txn | "
        "lock held % of wall |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for workers in workers_list:
        probes: dict[str, Counter[str]] = {"floor": Counter(), "engine": Counter()}
        for r in range(rounds):
            order = ("floor", "engine") if r % 2 == 0 else ("engine", "floor")
            for kind in order:
                where, _ = fresh("sqlite", tmp, None, [])
                asyncio.run(prepare("sqlite", where, None, workers, n))
                timed_round(kind, "sqlite", where, None, n, workers, probes[kind])
        for kind in ("floor", "engine"):
            p = probes[kind]
            jobs, txns = p["jobs"], max(1.0, p["transactions"])
            ms = 1000 / jobs
            slow = (
                f"{p['slow_begin_s'] * ms:.3f} ({p['slow_begin_cpu_s'] * ms:.3f})"
                if kind == "engine"
                else "-"
            )
            print(
                f"| {workers} | {kind} | {jobs / p['wall_s']:.0f} | {p['cpu_s'] * ms:.3f} | "
                f"{p['busy'] / jobs:.2f} | {(p['begin_s'] + p['busy_s']) * ms:.3f} | {slow} | "
                f"{p['thread_waits'] / jobs:.2f} | {txns / jobs:.2f} | "
                f"{1000 * p['hold_s'] / txns:.3f} ({1000 * p['inside_s'] / txns:.3f} + "
                f"{1000 * p['commit_s'] / txns:.3f}) | "
                f"{100 * p['slow_commits'] / txns:.1f} "
                f"({1000 * p['slow_commit_s'] / max(1, p['slow_commits']):.1f}) | "
                f"{1000 * p['hold_queued_s'] / txns:.3f} | "
                f"{100 * p['hold_s'] / p['wall_s']:.0f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--n", type=int, default=400, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side")
    parser.add_argument("--count", type=int, default=50, help="jobs in the counting pass")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--workers", default="1,4")
    parser.add_argument(
        "--contention",
        action="store_true",
        help="SQLite only: where the time goes while processes compete for the write lock",
    )
    parser.add_argument(
        "--synchronous",
        default=SYNCHRONOUS,
        choices=["full", "normal"],
        help="SQLite durability on both sides (full: the engine's default)",
    )
    args = parser.parse_args()
    # Through the environment, so the spawned worker processes see it too.
    os.environ["BENCH_SQLITE_SYNCHRONOUS"] = args.synchronous
    globals()["SYNCHRONOUS"] = args.synchronous
    if args.contention:
        os.environ["BENCH_CONTENTION"] = "1"
    load = os.getloadavg()
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, n={args.n}, "
        f"rounds={args.rounds}, SQLite synchronous={args.synchronous}, "
        f"load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    tmp = tempfile.mkdtemp()
    if args.contention:
        contention(tmp, args.n, args.rounds, [int(w) for w in args.workers.split(",")])
        return
    schemas: list[str] = []
    backends = [b for b in args.backends.split(",") if b == "sqlite" or args.postgres]
    rows: list[str] = []
    try:
        for backend in backends:
            per_job: dict[str, Counter[str]] = {}
            for kind in ("floor", "engine"):
                where, schema = fresh(backend, tmp, args.postgres, schemas)
                asyncio.run(prepare(backend, where, schema, 1, args.count))
                if backend == "sqlite":
                    per_job[kind] = _count_sqlite(kind, where, args.count)
                else:
                    assert schema is not None
                    per_job[kind] = _count_postgres(kind, where, schema, args.count)
            for workers in [int(w) for w in args.workers.split(",")]:
                rates: dict[str, list[float]] = {"floor": [], "engine": []}
                cpus: dict[str, list[float]] = {"floor": [], "engine": []}
                ratios: list[float] = []
                cpu_ratios: list[float] = []
                for r in range(args.rounds):
                    order = ("floor", "engine") if r % 2 == 0 else ("engine", "floor")
                    got: dict[str, float] = {}
                    cpu: dict[str, float] = {}
                    for kind in order:
                        where, schema = fresh(backend, tmp, args.postgres, schemas)
                        asyncio.run(prepare(backend, where, schema, workers, args.n))
                        got[kind], cpu[kind] = timed_round(
                            kind, backend, where, schema, args.n, workers
                        )
                        rates[kind].append(got[kind])
                        cpus[kind].append(cpu[kind])
                    ratios.append(got["floor"] / got["engine"])
                    cpu_ratios.append(cpu["engine"] / cpu["floor"])
                f = statistics.median(rates["floor"])
                e = statistics.median(rates["engine"])
                fc, ec = per_job["floor"], per_job["engine"]
                c = args.count
                rows.append(
                    f"| {backend} | {workers} | {f:.0f} | {e:.0f} | "
                    f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
                    f"{fc['statements'] / c:.1f} / {ec['statements'] / c:.1f} | "
                    f"{fc['round trips'] / c:.1f} / {ec['round trips'] / c:.1f} | "
                    f"{statistics.median(cpus['floor']):.2f} / "
                    f"{statistics.median(cpus['engine']):.2f} | "
                    f"{statistics.median(cpu_ratios):.2f}x |"
                )
                print(rows[-1], flush=True)
    finally:
        if schemas:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    print()
    print(
        "| backend | processes | floor jobs/s | engine jobs/s | engine time ÷ floor time "
        "(median, min-max of paired rounds) | statements/job floor / engine | "
        "round trips/job floor / engine | CPU ms/job floor / engine | engine CPU ÷ floor CPU |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
