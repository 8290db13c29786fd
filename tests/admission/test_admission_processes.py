"""Several PROCESSES on one PostgreSQL schema: limits at submit and settlements hold together.

* Submitters reserving at submit can never pass a balance, a daily cap or an
  in-flight limit together: each binding limit admits exactly what it allows.
* A capture and a release of one reservation racing from several processes
  settle it exactly once (issue 21, item 1): the account lock serializes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

import chatsvg_core
from chatsvg_core.ledger import Ledger
from chatsvg_core.storage.postgres import PostgresStore

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).with_name("_proc.py")
SRC = Path(chatsvg_core.__file__).resolve().parent.parent
PROCESSES = 4


@contextmanager
def schema(url: str) -> Iterator[str]:
    name = f"chatsvg_adm_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(name))
            )


def run_together(mode: str, configs: list[dict[str, Any]]) -> list[Any]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), mode, json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for cfg in configs
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "READY"
        for p in procs:  # the start barrier: all are connected and waiting
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def rows(url: str, name: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, options=f"-c search_path={name}") as conn:
        return conn.execute(sql.encode()).fetchall()


async def _setup(url: str, name: str, grants: dict[str, int]) -> None:
    store = await PostgresStore.open(url, schema=name)
    try:
        ledger = Ledger(store)
        for owner, amount in grants.items():
            await ledger.grant(owner, amount)
    finally:
        await store.aclose()


def test_concurrent_submitters_never_pass_a_balance_a_cap_or_an_in_flight_limit(
    postgres_url: str,
) -> None:
    # A standard request costs 2. "poor" can pay for 7 jobs, "capped" may
    # spend 10 a day (5 jobs), "busy" may have 4 jobs in flight (no worker
    # runs, so 4 in all); every owner is asked for 4 x 6 = 24 jobs.
    with schema(postgres_url) as name:
        asyncio.run(_setup(postgres_url, name, {"poor": 14, "capped": 1000, "busy": 1000}))
        owners = ["poor", "capped", "busy"]
        cfgs = [
            {
                "url": postgres_url,
                "schema": name,
                "owners": owners,
                "rounds": 6,
                "name": f"p{i}",
                "caps": {"capped": 10},
                "limits": {"busy": 4},
            }
            for i in range(PROCESSES)
        ]
        results = run_together("submit", cfgs)
        admitted = {o: sum(r[o].get("admitted", 0) for r in results) for o in owners}
        assert admitted == {"poor": 7, "capped": 5, "busy": 4}
        jobs = dict(rows(postgres_url, name, "SELECT owner, count(*) FROM chatsvg_jobs GROUP BY 1"))
        assert jobs == admitted, "a refused submit left a job behind"
        reserved = dict(
            rows(
                postgres_url,
                name,
                "SELECT owner, -sum(amount) FROM chatsvg_ledger WHERE kind = 'reserve' GROUP BY 1",
            )
        )
        assert reserved == {"poor": 14, "capped": 10, "busy": 8}
        unpaid = rows(
            postgres_url,
            name,
            "SELECT count(*) FROM chatsvg_jobs j WHERE NOT EXISTS (SELECT 1 FROM chatsvg_ledger"
            " e WHERE e.ref = j.id AND e.kind = 'reserve')",
        )
        assert unpaid == [(0,)], "every admitted job holds its reservation"
        keys = rows(postgres_url, name, "SELECT count(*) FROM chatsvg_idempotency")
        assert keys == [(sum(admitted.values()),)], "a refused submit bound its key"
        balances = rows(
            postgres_url,
            name,
            "SELECT a.owner, a.balance, (SELECT sum(amount) FROM chatsvg_ledger e"
            " WHERE e.owner = a.owner) FROM chatsvg_accounts a",
        )
        for owner, stored, total in balances:
            assert stored == total >= 0, owner


@pytest.mark.redis
@pytest.mark.parametrize("counters", ["sql", "redis"])
def test_a_rate_limit_holds_across_processes(
    postgres_url: str, redis_url: str, counters: str
) -> None:
    # 4 processes x 8 submits for one owner against 10 per minute: exactly 10
    # pass, whichever process makes them, with the counters in PostgreSQL or Redis.
    with schema(postgres_url) as name:
        asyncio.run(_setup(postgres_url, name, {}))
        cfgs = [
            {
                "url": postgres_url,
                "schema": name,
                "rounds": 8,
                "per_owner": "10/minute",
                "namespace": name,  # fresh counters for this run
                "counters": "sql" if counters == "sql" else redis_url,
            }
            for _ in range(PROCESSES)
        ]
        results = run_together("ratelimit", cfgs)
        admitted = sum(r.get("admitted", 0) for r in results)
        refused = sum(r.get("rate_limited", 0) for r in results)
        assert (admitted, refused) == (10, PROCESSES * 8 - 10)
        jobs = rows(postgres_url, name, "SELECT count(*) FROM chatsvg_jobs")
        assert jobs == [(10,)], "a refused submit wrote a job"


def test_a_capture_and_a_release_racing_settle_a_reservation_once(postgres_url: str) -> None:
    refs = [f"job-{i}" for i in range(60)]

    async def reserve_all(name: str) -> None:
        store = await PostgresStore.open(postgres_url, schema=name)
        try:
            ledger = Ledger(store)
            await ledger.grant("alice", 1000)
            for ref in refs:
                await ledger.reserve("alice", 3, ref=ref)
        finally:
            await store.aclose()

    with schema(postgres_url) as name:
        asyncio.run(reserve_all(name))
        cfgs = [
            {"url": postgres_url, "schema": name, "refs": refs, "seed": i} for i in range(PROCESSES)
        ]
        results = run_together("settle", cfgs)
        settled = rows(
            postgres_url,
            name,
            "SELECT ref, count(*) FROM chatsvg_ledger WHERE kind IN ('capture', 'release')"
            " GROUP BY ref",
        )
        assert len(settled) == len(refs)
        assert all(n == 1 for _, n in settled), "a reservation was settled twice"
        released = rows(
            postgres_url, name, "SELECT count(*) FROM chatsvg_ledger WHERE kind = 'release'"
        )[0][0]
        (stored, total), *_ = rows(
            postgres_url,
            name,
            "SELECT balance, (SELECT sum(amount) FROM chatsvg_ledger) FROM chatsvg_accounts",
        )
        assert stored == total == 1000 - 3 * len(refs) + 3 * released
        # Every process saw each reference settled one way: its own, or a conflict.
        assert sum(sum(r.values()) for r in results) == PROCESSES * len(refs)
