"""Crash tests on the real databases: worker processes killed with SIGKILL at random points.

Workers take jobs straight from the store (``Engine.process_next``), die at
named checkpoints or whenever the parent kills them (mid-transaction
included), stall past their leases, and meet transient provider faults; the
parent keeps running recovery. When every job is final, the ledger and job
invariants must hold with zero violations.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ._crash import SoakReport, Target, soak


def _check(report: SoakReport) -> None:
    print(f"\n{report}")
    assert report.violations == []
    assert report.crashes > 0, "the run killed nobody: it proved nothing"
    assert sum(report.statuses.values()) == report.jobs
    assert report.statuses["succeeded"] > 0
    assert report.statuses["queued"] == report.statuses["running"] == 0


async def test_sqlite_survives_kill_9_workers() -> None:
    with tempfile.TemporaryDirectory() as folder:
        from chatsvg_core.storage.sqlite import SQLiteStore

        path = Path(folder) / "crash.db"
        store = await SQLiteStore.open(path)
        await store.aclose()
        report = await soak(Target("sqlite", str(path)), jobs=40, workers=3, seed=1)
    _check(report)


@pytest.mark.postgres
async def test_postgres_survives_kill_9_workers_and_cancels_with_credits_reserved_at_submit(
    postgres_url: str,
) -> None:
    import secrets

    import psycopg

    from chatsvg_core.storage.postgres import PostgresStore

    schema = f"chatsvg_crash_{secrets.token_hex(4)}"
    store = await PostgresStore.open(postgres_url, schema=schema)
    await store.aclose()
    try:
        report = await soak(
            Target("postgres", postgres_url, schema),
            jobs=30,
            workers=3,
            seed=3,
            charge_at="submit",
            cancel_every=0.15,
        )
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    _check(report)
    assert report.cancels > 0, "the run cancelled nothing: it proved nothing about cancels"


@pytest.mark.postgres
async def test_postgres_survives_kill_9_workers(postgres_url: str) -> None:
    import secrets

    import psycopg

    from chatsvg_core.storage.postgres import PostgresStore

    schema = f"chatsvg_crash_{secrets.token_hex(4)}"
    store = await PostgresStore.open(postgres_url, schema=schema)
    await store.aclose()
    try:
        report = await soak(Target("postgres", postgres_url, schema), jobs=40, workers=3, seed=2)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    _check(report)
