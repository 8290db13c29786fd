"""What a PostgreSQL claim costs as the jobs table fills: finished jobs, dead entries, backlog.

For each case it builds a fresh schema (the library's migrations, so the
current schema version), fills it straight with SQL, then runs the claim
statement the store runs (``claim_due`` without a job id: ``UPDATE ... WHERE
id = (SELECT ... ORDER BY run_at, created_at, id LIMIT 1 FOR UPDATE SKIP
LOCKED) ... RETURNING``) followed by the finish, each in its own transaction
on one connection, the way a polling worker does. It reports per claim:

* the due-index pages and heap pages read by the claim (``EXPLAIN (ANALYZE,
  BUFFERS)`` of the statement, rolled back, after warm-up);
* the rows the due-index scan returned to the plan (the backlog it sorts, if any);
* the wall time and the PostgreSQL backend's CPU per claim + finish (from
  ``/proc/<backend pid>/stat``; only when the server runs on this machine).

The cases, each a list:

* ``--finished``: finished (SUCCEEDED) jobs in the table, vacuumed;
* ``--dead``: jobs claimed since the last vacuum: due-index entries whose row
  has moved on (made by one UPDATE of queued rows, not vacuumed);
* ``--backlog``: QUEUED jobs, due, left when the claims end (the run starts
  with ``claims`` + 10 more); ``--same-run-at`` gives them one ``run_at``,
  as ``bench_queues.py``'s release step does;
* ``--index``: ``new`` (the schema as shipped) or ``old`` (version 1's
  ``(run_at, id)``, put back for comparison).

    python benchmarks/pg_claim_scale.py --postgres URL --finished 0,300000 --dead 0,30000

Every schema is dropped at the end. Use a database of your own: the fills
are large and ``VACUUM`` runs on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from chatsvg_core.storage._sql import SUCCEED_GUARD, SUCCEED_SET, _claim_next_sql
from chatsvg_core.storage.postgres import PostgresStore, PostgresTransaction, _pg

OLD_INDEX = "CREATE INDEX chatsvg_jobs_due ON chatsvg_jobs (run_at, id) WHERE status = 'queued'"
CLAIM = _pg(_claim_next_sql(PostgresTransaction.skip_locked))
FINISH = _pg(f"UPDATE chatsvg_jobs SET {SUCCEED_SET} WHERE {SUCCEED_GUARD} RETURNING version")
INSERT = (
    "INSERT INTO chatsvg_jobs (id, owner, status, attempt, max_attempts, run_at, request, "
    "request_hash, version, created_at, updated_at, result_ref) "
    "SELECT %(prefix)s || lpad(g::text, 9, '0'), 'owner-' || (g %% 16), %(status)s, "
    "CASE WHEN %(status)s = 'queued' THEN 0 ELSE 1 END, 3, "
    "CASE WHEN %(same)s THEN %(t0)s ELSE %(t0)s + g * interval '1 ms' END, "
    '\'{"prompt":"a lighthouse at dusk","style":"flat"}\', \'h\', 0, '
    "%(t0)s + g * interval '1 ms', %(t0)s, "
    "CASE WHEN %(status)s = 'queued' THEN NULL ELSE %(prefix)s || lpad(g::text, 9, '0') END "
    "FROM generate_series(1, %(n)s) g"
)
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", ()):
        found.extend(plan_nodes(child))
    return found


def explain(
    conn: psycopg.Connection[Any], params: tuple[Any, ...], generic: bool
) -> dict[str, Any]:
    """Buffers and rows of one claim, rolled back (custom plan, or the generic one)."""
    with conn.transaction(force_rollback=True):
        if generic:
            # psycopg prepares a statement after 5 uses; PostgreSQL may then
            # keep its generic plan. A client-side cursor sends plain text, so
            # the $n are the prepared statement's own parameters.
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cur = psycopg.ClientCursor(conn)
            cur.execute(f"PREPARE probe AS {CLAIM.replace('%s', '${}').format(1, 2, 3, 4, 5)}")
            cur.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE probe(%s, %s, %s, %s, %s)", params
            )
            row = cur.fetchone()
            conn.execute("DEALLOCATE probe")
        else:
            row = conn.execute(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {CLAIM}", params
            ).fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    nodes = plan_nodes(doc[0]["Plan"])
    scans = [
        n for n in nodes if "Scan" in n["Node Type"] and n.get("Index Name") != "chatsvg_jobs_pkey"
    ]
    sort = [n["Node Type"] for n in nodes if "Sort" in n["Node Type"]]
    return {
        "plan": "+".join([s["Node Type"] for s in scans] + sort),
        "due_rows": sum(n["Actual Rows"] for n in scans),
        "blocks": doc[0]["Plan"]["Shared Hit Blocks"] + doc[0]["Plan"]["Shared Read Blocks"],
    }


async def case(
    url: str, index: str, finished: int, dead: int, backlog: int, claims: int, same: bool
) -> dict[str, Any]:
    schema = f"chatsvg_cs_{secrets.token_hex(4)}"
    store = await PostgresStore.open(url, schema=schema, max_size=1)
    await store.aclose()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
            conn.execute("SET synchronous_commit = off")  # the fills only
            # Vacuum only where a case says so: autovacuum must not clean up mid-case.
            conn.execute("ALTER TABLE chatsvg_jobs SET (autovacuum_enabled = off)")
            if index == "old":
                conn.execute("DROP INDEX chatsvg_jobs_due")
                conn.execute(OLD_INDEX)
            fill = {"same": False, "t0": t0}
            if finished:
                conn.execute(INSERT, {**fill, "prefix": "f", "status": "succeeded", "n": finished})
            conn.execute("VACUUM ANALYZE chatsvg_jobs")
            if dead:
                conn.execute(
                    INSERT,
                    {
                        **fill,
                        "prefix": "d",
                        "status": "queued",
                        "n": dead,
                        "t0": t0 + timedelta(days=1),
                    },
                )
                conn.execute(
                    "UPDATE chatsvg_jobs SET status = 'succeeded', attempt = 1, result_ref = id, "
                    "version = 2 WHERE id LIKE 'd%%' AND status = 'queued'"
                )
            conn.execute(
                INSERT,
                {
                    "same": same,
                    "t0": t0 + timedelta(days=2),
                    "prefix": "q",
                    "status": "queued",
                    "n": backlog + claims + 10,
                },
            )
            conn.execute("ANALYZE chatsvg_jobs")  # what autovacuum's analyze would see
            dead_tup = conn.execute(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'chatsvg_jobs'::regclass"
            ).fetchone()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            pid = int(row[0])
            now = t0 + timedelta(days=3)
            params = (now + timedelta(minutes=5), "w", now, now, now)

            def one() -> None:
                with conn.transaction():
                    got = conn.execute(CLAIM, params).fetchone()
                assert got is not None
                with conn.transaction():
                    # RETURNING gives the new attempt, which is the lease token.
                    done = conn.execute(FINISH, (now, got[0], got[2])).fetchone()
                assert done is not None

            for _ in range(10):  # hint the dead entries, reach the prepared statement
                one()
            custom, generic = explain(conn, params, False), explain(conn, params, True)
            cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
            walls = []
            for _ in range(claims):
                t = time.perf_counter()
                one()
                walls.append(time.perf_counter() - t)
            wall = time.perf_counter() - wall0
            cpu1 = cpu_seconds(pid)
            kinds = conn.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE 'UPDATE chatsvg_jobs SET status = ''running''%%'"
            ).fetchone()
        cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / claims
        return {
            "custom": custom,
            "generic": generic,
            "used": "-" if kinds is None else f"{kinds[0]}g/{kinds[1]}c",
            "n_dead_tup": int(dead_tup[0]) if dead_tup else -1,
            "wall_ms": wall / claims * 1e3,
            "p50_ms": statistics.median(walls) * 1e3,
            "cpu_ms": None if cpu is None else cpu * 1e3,
        }
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def steady(url: str, finished: int, burst: int, settings: str, seconds: float, rate: float) -> None:
    """Jobs through the table at ``rate`` per second with autovacuum on: the pages a
    claim reads over time, as dead entries grow and autovacuum clears them.

    ``burst`` jobs are queued at the start and drained first (a backlog: its
    index pages are left full of dead entries once drained), then one job is
    submitted and claimed at a time.

    ``settings``: ``shipped`` (the table as migrated) or ``default`` (the
    per-table settings reset to the server's).
    """
    schema = f"chatsvg_cs_{secrets.token_hex(4)}"
    asyncio.run(_migrate(url, schema))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
            if settings == "default":
                conn.execute(
                    "ALTER TABLE chatsvg_jobs RESET (autovacuum_vacuum_scale_factor, "
                    "autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor, "
                    "vacuum_index_cleanup)"
                )
            fill = {"same": False, "t0": t0, "prefix": "f", "status": "succeeded", "n": finished}
            conn.execute(INSERT, fill)
            conn.execute("VACUUM ANALYZE chatsvg_jobs")
            job = {"same": False, "prefix": "b", "status": "queued", "n": 1}
            if burst:  # submitted at once, an hour ago: drained first
                conn.execute(INSERT, {**job, "t0": t0 + timedelta(days=1), "n": burst})
            print(
                f"# steady: {finished:,} finished, a burst of {burst:,} queued, then one job at "
                f"a time; settings {settings}, {rate:.0f} jobs/s, "
                f"{datetime.now(UTC):%H:%M} UTC, load {os.getloadavg()[0]:.1f}"
            )
            print("| s | jobs | n_dead_tup | autovacuums | pages per claim (custom plan) |")
            print("|---|---|---|---|---|")
            start, done, last = time.monotonic(), 0, -10.0
            while (elapsed := time.monotonic() - start) < seconds:
                now = datetime.now(UTC)
                params = (now + timedelta(minutes=5), "w", now, now, now)
                with conn.transaction():
                    got = conn.execute(CLAIM, params).fetchone()
                if got is None:  # the burst is drained: one job submitted, then claimed
                    with conn.transaction():
                        conn.execute(
                            INSERT, {**job, "t0": now - timedelta(seconds=1), "prefix": f"s{done}-"}
                        )
                    with conn.transaction():
                        got = conn.execute(CLAIM, params).fetchone()
                assert got is not None
                with conn.transaction():
                    conn.execute(FINISH, (now, got[0], got[2]))
                done += 1
                if elapsed - last >= 10:
                    last = elapsed
                    row = conn.execute(
                        "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables "
                        "WHERE relid = 'chatsvg_jobs'::regclass"
                    ).fetchone()
                    with conn.transaction():
                        conn.execute(
                            INSERT,
                            {
                                "same": False,
                                "t0": now - timedelta(seconds=1),
                                "prefix": "probe",
                                "status": "queued",
                                "n": 1,
                            },
                        )
                        probe = explain(conn, (now, "w", now, now, now), False)
                        conn.execute("DELETE FROM chatsvg_jobs WHERE id LIKE 'probe%%'")
                    assert row is not None
                    pages = probe["blocks"]
                    print(
                        f"| {elapsed:.0f} | {done:,} | {row[0]:,} | {row[1]} | {pages:,} |",
                        flush=True,
                    )
                pause = start + done / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


async def _migrate(url: str, schema: str) -> None:
    store = await PostgresStore.open(url, schema=schema, max_size=1)
    await store.aclose()


def shape(probe: dict[str, Any]) -> str:
    return f"{probe['plan']}, {probe['due_rows']:,}, {probe['blocks']:,}"


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--index", default="old,new")
    parser.add_argument("--finished", type=ints, default=[0, 3000, 30000, 300000])
    parser.add_argument("--dead", type=ints, default=[0])
    parser.add_argument("--backlog", type=ints, default=[1000])
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--same-run-at", action="store_true")
    parser.add_argument("--steady", metavar="SETTINGS", help="shipped or default (see steady())")
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--burst", type=int, default=0, help="steady: jobs queued at the start")
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    if not args.postgres:
        parser.error("give --postgres URL (or CHATSVG_TEST_POSTGRES_URL)")
    if args.steady:
        for finished in args.finished:
            await asyncio.to_thread(
                steady, args.postgres, finished, args.burst, args.steady, args.seconds, args.rate
            )
        return
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}, "
        f"claims {args.claims}, same run_at: {args.same_run_at}"
    )
    print(
        "| index | finished | dead | backlog | custom plan: scan, rows, pages | "
        "generic plan: scan, rows, pages | plans used | wall ms/job | p50 ms | PG CPU ms/job |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for index in args.index.split(","):
        for finished in args.finished:
            for dead in args.dead:
                for backlog in args.backlog:
                    r = await case(
                        args.postgres, index, finished, dead, backlog, args.claims, args.same_run_at
                    )
                    cpu = "-" if r["cpu_ms"] is None else f"{r['cpu_ms']:.3f}"
                    print(
                        f"| {index} | {finished:,} | {dead:,} | {backlog:,} | "
                        f"{shape(r['custom'])} | {shape(r['generic'])} | {r['used']} | "
                        f"{r['wall_ms']:.3f} | {r['p50_ms']:.3f} | {cpu} |",
                        flush=True,
                    )


if __name__ == "__main__":
    asyncio.run(main())
