"""What one charge under a daily cap costs as its owner's entries of the day grow.

Schema 6 keeps each account's usage of its current cap window on the account
row; before it, every capped charge summed the owner's charges and
reservations of the day (``USAGE``), under the owner's account lock. This
measures one owner's capped charge, in a ledger of ``--total`` entries (other
owners, earlier days) where that owner already has 0 / 1 k / 10 k / 100 k
entries today (``--today``), four ways, rounds interleaved:

* **before**: the library at ``--before-src`` (e.g. main before schema 6,
  exported with ``git archive``), on its own database filled the same way;
* **after**: the library importable here (``PYTHONPATH``), same fill;
* **floor-sum**: hand-written SQL with the same guarantee as *before*: lock
  the account, ``USAGE``, insert the charge, move the balance (what
  ``bench_floor.py``'s floor does);
* **floor-counter**: hand-written SQL with the same guarantee as *after*: lock
  the account reading its balance and stored usage, insert the charge, move
  the balance and the usage in one ``UPDATE``.

Each side is a child process (its own ``PYTHONPATH``) that charges
``--charges`` times, one transaction per charge, and prints the median wall
time per charge, the CPU time of the process (and of the PostgreSQL backend
serving it, from ``/proc``, when the server is local) and the statements per
charge (SQLite: ``set_trace_callback``, BEGIN and COMMIT included;
PostgreSQL: statements sent through psycopg, BEGIN and COMMIT included).

    python benchmarks/cap_scale.py --before-src /tmp/cap-before/src \\
        [--postgres URL] [--sqlite] [--total 1000000] [--today 0,1000,10000,100000]

Every schema and file it makes is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OWNER = "heavy"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DAY0 = datetime(2026, 12, 7, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CAP = 10**12
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


# --- fill (raw SQL, the same for every side; the schema comes from each side's library) ---


def fill_sqlite(path: str, total: int, today: int) -> None:
    others = total - today
    day = 86_400 * 10**6
    day0 = (DAY0 - EPOCH) // timedelta(microseconds=1)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO chatsvg_accounts (owner, balance, created_at) VALUES (?, ?, ?)",
            (OWNER, 10**15, day0 - 30 * day),
        )
        conn.execute(
            "WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM g WHERE x < 999) "
            "INSERT INTO chatsvg_accounts (owner, balance, created_at) "
            "SELECT 'other' || x, 10000000, ? FROM g",
            (day0 - 30 * day,),
        )
        # Other owners over the last 30 days, then the heavy owner's charges today.
        conn.execute(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) "
            "INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, created_at) "
            "SELECT 'o' || x, 'other' || (x % 1000), 'charge', -1, 'oj' || x, "
            "? - 30 * ? + (x * 30 * ?) / ? FROM g",
            (others, day0, day, day, max(others, 1)),
        )
        conn.execute(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) "
            "INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, created_at) "
            "SELECT 'h' || x, ?, 'charge', -1, 'hj' || x, ? + x FROM g",
            (today, OWNER, day0),
        )
        conn.execute("ANALYZE")


def fill_postgres(url: str, schema: str, total: int, today: int) -> None:
    import psycopg
    from psycopg import sql

    others = total - today
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        with conn.transaction():
            conn.execute(
                "INSERT INTO chatsvg_accounts (owner, balance, created_at) VALUES (%s, %s, %s)",
                (OWNER, 10**15, DAY0 - timedelta(days=30)),
            )
            conn.execute(
                "INSERT INTO chatsvg_accounts (owner, balance, created_at) "
                "SELECT 'other' || g, 10000000, %s FROM generate_series(0, 999) g",
                (DAY0 - timedelta(days=30),),
            )
            conn.execute(
                "INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, created_at) "
                "SELECT 'o' || g, 'other' || (g %% 1000), 'charge', -1, 'oj' || g, "
                "%s + g * (interval '30 days' / greatest(%s, 1)) "
                "FROM generate_series(1, %s) g",
                (DAY0 - timedelta(days=30), others, others),
            )
            conn.execute(
                "INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, created_at) "
                "SELECT 'h' || g, %s, 'charge', -1, 'hj' || g, %s + g * interval '1 microsecond' "
                "FROM generate_series(1, %s) g",
                (OWNER, DAY0, today),
            )
        # The shared server runs with autovacuum off: vacuum (visibility map,
        # for index-only scans) and analyze by hand, as autovacuum would.
        conn.execute("VACUUM ANALYZE chatsvg_ledger")
        conn.execute("VACUUM ANALYZE chatsvg_accounts")


# --- the sides (children) ---------------------------------------------------------


def child_library(backend: str, target: str, n: int, tag: str) -> dict[str, Any]:
    import asyncio

    from chatsvg_core.ledger import _ops

    async def run() -> dict[str, Any]:
        if backend == "sqlite":
            from chatsvg_core.storage.sqlite import SQLiteStore

            store: Any = await SQLiteStore.open(target, synchronous="normal")
        else:
            from chatsvg_core.storage.postgres import PostgresStore

            url, schema = target.rsplit("#", 1)
            store = await PostgresStore.open(url, schema=schema, min_size=1, max_size=1)
        statements = 0
        backend_pid = None
        if backend == "sqlite":
            async with store.transaction() as tx:
                await tx._one("SELECT 1")

            def traced(_sql: str) -> None:
                nonlocal statements
                statements += 1

            store._conn.set_trace_callback(traced)
        else:
            import psycopg

            async with store._pool.connection() as conn:
                backend_pid = conn.info.backend_pid
            execute = psycopg.AsyncConnection.execute

            async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
                nonlocal statements
                statements += 1
                return await execute(self, *args, **kwargs)

            psycopg.AsyncConnection.execute = counted  # type: ignore[method-assign]
        times = []
        cpu0 = time.process_time()
        server0 = cpu_of(backend_pid) if backend_pid is not None else None
        statements = 0
        for i in range(n):
            t = time.perf_counter()
            async with store.transaction() as tx:
                await _ops.charge(
                    tx, OWNER, 1, ref=f"{tag}-{i}", now=NOW + timedelta(microseconds=i),
                    daily_cap=CAP,
                )  # fmt: skip
            times.append(time.perf_counter() - t)
        result = {
            "ms": statistics.median(times) * 1e3,
            "cpu_ms": (time.process_time() - cpu0) / n * 1e3,
            "server_cpu_ms": None
            if backend_pid is None or server0 is None
            else (cpu_of(backend_pid) - server0) / n * 1e3,
            # psycopg sends BEGIN and COMMIT itself, not through execute().
            "statements": statements / n + (2 if backend_pid is not None else 0),
        }
        await store.aclose()
        return result

    return asyncio.run(run())


def child_floor(backend: str, target: str, n: int, tag: str, counter: bool) -> dict[str, Any]:
    times = []
    statements = 0
    day0, day1 = DAY0, DAY0 + timedelta(days=1)
    usage = (
        "SELECT COALESCE(-SUM(e.amount), 0) FROM chatsvg_ledger e WHERE e.owner = {p} "
        "AND e.kind IN ('charge', 'reserve') AND e.created_at >= {p} AND e.created_at < {p} "
        "AND NOT EXISTS (SELECT 1 FROM chatsvg_ledger r WHERE r.ref = e.ref "
        "AND r.kind = CASE e.kind WHEN 'charge' THEN 'refund' ELSE 'release' END)"
    )
    if backend == "sqlite":
        us = timedelta(microseconds=1)
        conn = sqlite3.connect(target, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")

        def traced(_sql: str) -> None:
            nonlocal statements
            statements += 1

        conn.set_trace_callback(traced)
        since, until = (day0 - EPOCH) // us, (day1 - EPOCH) // us
        cpu0 = time.process_time()
        statements = 0
        for i in range(n):
            t = time.perf_counter()
            now = (NOW - EPOCH) // us + i
            conn.execute("BEGIN IMMEDIATE")
            if counter:
                bal, c_since, c_until, used = conn.execute(
                    "SELECT balance, cap_since, cap_until, cap_used FROM chatsvg_accounts "
                    "WHERE owner = ?",
                    (OWNER,),
                ).fetchone()
                if (c_since, c_until) != (since, until) or used is None:
                    used = conn.execute(usage.format(p="?"), (OWNER, since, until)).fetchone()[0]
                    conn.execute(
                        "UPDATE chatsvg_accounts SET cap_since = ?, cap_until = ?, cap_used = ? "
                        "WHERE owner = ?",
                        (since, until, used, OWNER),
                    )
            else:
                bal, used = conn.execute(
                    f"SELECT balance, ({usage.format(p='?')}) FROM chatsvg_accounts "
                    "WHERE owner = ?",
                    (OWNER, since, until, OWNER),
                ).fetchone()
            assert bal >= 1 and used + 1 <= CAP
            ref = f"{tag}-{i}"
            if conn.execute(
                "INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, created_at) "
                "VALUES (?, ?, 'charge', -1, ?, ?) ON CONFLICT (kind, ref) WHERE ref IS NOT NULL "
                "DO NOTHING",
                (secrets.token_hex(16), OWNER, ref, now),
            ).rowcount:
                conn.execute(
                    "UPDATE chatsvg_accounts SET balance = balance - 1"
                    + (", cap_used = cap_used + 1" if counter else "")
                    + " WHERE owner = ?",
                    (OWNER,),
                )
            conn.execute("COMMIT")
            times.append(time.perf_counter() - t)
        conn.close()
        return {
            "ms": statistics.median(times) * 1e3,
            "cpu_ms": (time.process_time() - cpu0) / n * 1e3,
            "server_cpu_ms": None,
            "statements": statements / n,
        }
    import psycopg
    from psycopg import sql

    url, schema = target.rsplit("#", 1)
    with psycopg.connect(url) as pconn:
        pconn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        pconn.commit()
        pid = pconn.info.backend_pid
        cpu0, server0 = time.process_time(), cpu_of(pid)
        for i in range(n):
            t = time.perf_counter()
            now = NOW + timedelta(microseconds=i)
            with pconn.transaction():
                if counter:
                    bal, c_since, c_until, used = pconn.execute(
                        "SELECT balance, cap_since, cap_until, cap_used FROM chatsvg_accounts "
                        "WHERE owner = %s FOR UPDATE",
                        (OWNER,),
                    ).fetchone()  # type: ignore[misc]
                    statements += 1
                    if (c_since, c_until) != (day0, day1) or used is None:
                        summed = pconn.execute(usage.format(p="%s"), (OWNER, day0, day1))
                        used = summed.fetchone()[0]  # type: ignore[index]
                        pconn.execute(
                            "UPDATE chatsvg_accounts SET cap_since = %s, cap_until = %s, "
                            "cap_used = %s WHERE owner = %s",
                            (day0, day1, used, OWNER),
                        )
                        statements += 2
                else:
                    # Lock first, then sum in a statement that starts after the
                    # lock (READ COMMITTED), as the store does.
                    bal = pconn.execute(
                        "SELECT balance FROM chatsvg_accounts WHERE owner = %s FOR UPDATE",
                        (OWNER,),
                    ).fetchone()[0]  # type: ignore[index]
                    used = pconn.execute(usage.format(p="%s"), (OWNER, day0, day1)).fetchone()[0]  # type: ignore[index]
                    statements += 2
                assert bal >= 1 and used + 1 <= CAP
                pconn.execute(
                    "WITH ins AS (INSERT INTO chatsvg_ledger (id, owner, kind, amount, ref, "
                    "created_at) VALUES (%s, %s, 'charge', -1, %s, %s) "
                    "ON CONFLICT (kind, ref) WHERE ref IS NOT NULL DO NOTHING RETURNING 1) "
                    "UPDATE chatsvg_accounts SET balance = balance - 1"
                    + (", cap_used = cap_used + 1" if counter else "")
                    + " WHERE owner = %s AND EXISTS (SELECT 1 FROM ins)",
                    (secrets.token_hex(16), OWNER, f"{tag}-{i}", now, OWNER),
                )
                statements += 3  # BEGIN, the statement, COMMIT
            times.append(time.perf_counter() - t)
        return {
            "ms": statistics.median(times) * 1e3,
            "cpu_ms": (time.process_time() - cpu0) / n * 1e3,
            "server_cpu_ms": (cpu_of(pid) - server0) / n * 1e3,
            "statements": statements / n,
        }


def child_migrate(backend: str, target: str) -> None:
    import asyncio

    async def run() -> None:
        if backend == "sqlite":
            from chatsvg_core.storage.sqlite import SQLiteStore

            store: Any = await SQLiteStore.open(target)
        else:
            from chatsvg_core.storage.postgres import PostgresStore

            url, schema = target.rsplit("#", 1)
            store = await PostgresStore.open(url, schema=schema, min_size=1, max_size=1)
        await store.aclose()

    asyncio.run(run())


# --- the parent -----------------------------------------------------------------


def run_child(src: str | None, *args: str) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--before-src", help="src/ of the library before schema 6")
    parser.add_argument("--postgres", help="PostgreSQL URL (a database of your own)")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--today", default="0,1000,10000,100000")
    parser.add_argument("--charges", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        kind, backend, target, *rest = args.child
        if kind == "migrate":
            child_migrate(backend, target)
            return
        n, tag = int(rest[0]), rest[1]
        if kind == "library":
            print(json.dumps(child_library(backend, target, n, tag)))
        else:
            print(json.dumps(child_floor(backend, target, n, tag, kind == "floor-counter")))
        return
    here = str(Path(__file__).resolve().parent.parent / "src")
    after_src = os.environ.get("PYTHONPATH") or here
    sides = {
        "before": args.before_src,
        "after": after_src,
        "floor-sum": after_src,
        "floor-counter": after_src,
    }
    if args.before_src is None:
        del sides["before"]
    backends = (["sqlite"] if args.sqlite else []) + (["postgres"] if args.postgres else [])
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}")
    print("| backend | entries today | side | ms/charge (median) | client CPU ms | "
          "server CPU ms | statements |")  # fmt: skip
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for backend in backends:
        for today in [int(x) for x in args.today.split(",")]:
            targets: dict[str, str] = {}
            tmp = Path(tempfile.mkdtemp())
            try:
                for side, src in sides.items():
                    # "before" migrates with its own (schema 5) library, the rest with ours.
                    if backend == "sqlite":
                        target = str(tmp / f"{side}.db")
                        run_child(src, "migrate", backend, target)
                        fill_sqlite(target, args.total, today)
                    else:
                        schema = f"cap_scale_{os.getpid()}_{secrets.token_hex(3)}"
                        target = f"{args.postgres}#{schema}"
                        run_child(src, "migrate", backend, target)
                        fill_postgres(args.postgres, schema, args.total, today)
                    targets[side] = target
                results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
                for r in range(args.rounds):
                    order = list(sides) if r % 2 == 0 else list(reversed(sides))
                    for side in order:
                        kind = "library" if side in ("before", "after") else side
                        results[side].append(
                            run_child(
                                sides[side],
                                kind,
                                backend,
                                targets[side],
                                str(args.charges),
                                f"{side}-{r}",
                            )
                        )
                for side, rounds in results.items():
                    med = {
                        k: statistics.median(x[k] for x in rounds)
                        if rounds[0][k] is not None
                        else None
                        for k in rounds[0]
                    }
                    server = "-" if med["server_cpu_ms"] is None else f"{med['server_cpu_ms']:.3f}"
                    print(
                        f"| {backend} | {today:,} | {side} | {med['ms']:.3f} | "
                        f"{med['cpu_ms']:.3f} | {server} | {med['statements']:.2f} |",
                        flush=True,
                    )
            finally:
                if backend == "postgres":
                    import psycopg
                    from psycopg import sql

                    with psycopg.connect(args.postgres, autocommit=True) as conn:
                        for target in targets.values():
                            conn.execute(
                                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                                    sql.Identifier(target.rsplit("#", 1)[1])
                                )
                            )
                for f in tmp.iterdir():
                    f.unlink()
                tmp.rmdir()


if __name__ == "__main__":
    main()
