"""End-to-end jobs per second through the engine, beside the storage work it needs.

For SQLite and PostgreSQL, 1 and 4 concurrent workers, it measures in one run:

* **storage**: the store operations a job needs and nothing else, through the
  library: one transaction with ``claim_next`` + ``ledger.charge``, one with
  ``complete_job`` (the work ``bench_floor.py`` compares with hand-written SQL,
  as part of a whole job);
* **engine (instant)**: ``Engine.process_next`` with a provider that answers
  at once with a small SVG: the engine's own cost (events, retries wrapper,
  heartbeat task, extraction, sanitizing) on top of the storage work;
* **engine (offline)**: the same with the offline sketch provider (a real,
  ~4 KB picture to sanitize).

The ratios engine/storage say how much the engine adds.

    python benchmarks/bench_engine.py [--postgres URL] [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chatsvg_core import Engine, GenerationRequest, Ledger, OfflineSketchProvider, ProviderOutput
from chatsvg_core.jobs import new_job
from chatsvg_core.ledger import charge
from chatsvg_core.storage import Store, claim_next, complete_job

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
    '<circle cx="5" cy="5" r="4" fill="teal"/></svg>'
)
LEASE = timedelta(minutes=5)


class InstantProvider:
    name = "instant"

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        return ProviderOutput(text=SVG, model="instant", provider=self.name, latency_s=0.0)


async def seed(store: Store, n: int, workers: int) -> None:
    ledger = Ledger(store)
    for w in range(workers):
        await ledger.grant(f"owner{w}", 10 * n)
    now = datetime.now(UTC)
    async with store.transaction() as tx:
        for i in range(n):
            await tx.insert_job(
                new_job(
                    job_id=f"job-{i:06d}",
                    owner=f"owner{i % workers}",
                    request=GenerationRequest(prompt=f"a cat {i}").model_dump(mode="json"),
                    request_hash=f"v1:{i}",
                    now=now,
                )
            )


async def storage_only(store: Store, worker: str) -> bool:
    now = datetime.now(UTC)
    async with store.transaction() as tx:
        job = await claim_next(tx, now=now, worker_id=worker, lease=LEASE)
        if job is None:
            return False
        await charge(tx, job.owner, 2, ref=job.id, now=now)
    assert job.lease_token is not None
    async with store.transaction() as tx:
        await complete_job(tx, job.id, token=job.lease_token, now=datetime.now(UTC), svg=SVG)
    return True


async def run(workers: int, step: Callable[[str], Awaitable[bool]]) -> float:
    async def loop(name: str) -> int:
        done = 0
        while await step(name):
            done += 1
        return done

    start = time.perf_counter()
    counts = await asyncio.gather(*(loop(f"w{i}") for i in range(workers)))
    elapsed = time.perf_counter() - start
    return sum(counts) / elapsed


async def measure(
    open_store: Callable[[], Awaitable[Store]], n: int, workers: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    for label in ("storage", "engine (instant)", "engine (offline)"):
        store = await open_store()
        await seed(store, n, workers)
        if label == "storage":

            async def step(w: str, store: Store = store) -> bool:
                return await storage_only(store, w)

        else:
            provider = InstantProvider() if "instant" in label else OfflineSketchProvider()
            engine = Engine(store, None, provider)

            async def step(w: str, engine: Engine = engine) -> bool:
                return await engine.process_next(w) is not None

        out[label] = await run(workers, step)
        await store.aclose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    print(
        f"# {datetime.now(UTC):%Y-%m-%d} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, n={args.n}"
    )
    tmp = tempfile.mkdtemp()
    backends: list[tuple[str, Callable[[], Awaitable[Store]]]] = []

    async def sqlite() -> Store:
        from chatsvg_core.storage.sqlite import SQLiteStore

        return await SQLiteStore.open(Path(tmp) / f"{secrets.token_hex(4)}.db")

    backends.append(("sqlite", sqlite))
    schemas: list[str] = []
    if args.postgres:

        async def postgres() -> Store:
            from chatsvg_core.storage.postgres import PostgresStore

            schema = f"chatsvg_bench_{secrets.token_hex(4)}"
            schemas.append(schema)
            return await PostgresStore.open(args.postgres, schema=schema, max_size=8)

        backends.append(("postgres", postgres))
    print(
        "| backend | workers | storage jobs/s | engine (instant) jobs/s | ratio | "
        "engine (offline) jobs/s | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    try:
        for name, opener in backends:
            for workers in (1, 4):
                r = await measure(opener, args.n, workers)
                s, i, o = r["storage"], r["engine (instant)"], r["engine (offline)"]
                print(
                    f"| {name} | {workers} | {s:.0f} | {i:.0f} | {s / i:.2f}x | {o:.0f} | "
                    f"{s / o:.2f}x |"
                )
    finally:
        if schemas:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


if __name__ == "__main__":
    asyncio.run(main())
