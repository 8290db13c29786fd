"""Jobs per second through each queue adapter, beside process_next and the engines' no-op rate.

For 1, 2 and 4 worker processes, with an instant provider, on one PostgreSQL:

* ``next``: the store as the queue (``Engine.process_next`` loops), the floor
  the issue sets the adapters against;
* ``arq`` and ``procrastinate``: the adapters (jobs submitted first, then
  announced at once with ``Engine.sweep``);
* ``arq-noop`` and ``procrastinate-noop``: the queue engine alone, a task
  that does nothing (how fast the engine itself delivers).

Each measurement starts its workers, waits until they are up, releases N
jobs and times until all are done. Rounds interleave every configuration, so
a change in the machine's load hits them all alike; the median per
configuration is reported.

    python benchmarks/bench_queues.py [--jobs 300] [--rounds 3] [--workers 1,2,4]

Needs CHATSVG_TEST_POSTGRES_URL and CHATSVG_TEST_REDIS_URL (db 5 is used).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from uuid import uuid4

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.queues._fleet import Spec, drop_schema, new_schema, parent_queue, spawn, stop_worker
from tests.queues._support import redis_db

MODES = ["next", "arq", "procrastinate", "arq-noop", "procrastinate-noop"]


async def measure(mode: str, workers: int, jobs: int, postgres: str, redis: str) -> float:
    """Jobs per second for one configuration (fresh schema and queue)."""
    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.storage.postgres import PostgresStore

    kind = mode.removesuffix("-noop")
    schema = await new_schema(postgres, procrastinate=kind == "procrastinate")
    spec = Spec(
        kind=mode,
        postgres_url=postgres,
        schema=schema,
        queue_name=f"bench-{uuid4().hex[:8]}",
        redis_url=redis,
        concurrency=50,
        lease=60,
        maintain_every=60,
        app_name=f"chatsvg-bench-{schema}",
    )
    store = await PostgresStore.open(postgres, schema=schema, min_size=1, max_size=4)
    procs = []
    try:
        owners = [f"o{i}" for i in range(50)]
        ledger = Ledger(store)
        for owner in owners:
            await ledger.grant(owner, 10 * jobs)
        if not mode.endswith("-noop"):
            silent = Engine(store, None, OfflineSketchProvider())
            for first in range(0, jobs, 20):
                await asyncio.gather(
                    *(
                        silent.submit(owners[i % 50], f"k{i}", {"prompt": f"p{i}"})
                        for i in range(first, min(jobs, first + 20))
                    )
                )
        if mode == "next":
            # Held back until every worker is up: process_next workers would
            # otherwise start draining before the clock starts.
            await sql(spec, "UPDATE {s}.chatsvg_jobs SET run_at = run_at + interval '1 day'")
        procs = [spawn(Spec(**{**spec.__dict__, "kind": mode})) for _ in range(workers)]
        for proc in procs:
            assert proc.stdout is not None
            while proc.stdout.readline().strip() != "READY":
                assert proc.poll() is None, f"{mode} worker died at start"
        async with parent_queue(Spec(**{**spec.__dict__, "kind": kind})) as queue:
            start = time.monotonic()
            if mode == "arq-noop":
                for _ in range(jobs):
                    await queue.redis.enqueue_job("noop", _queue_name=spec.queue_name)
            elif mode == "procrastinate-noop":
                deferrer = queue.app.configure_task("noop", queue=spec.queue_name)
                for _ in range(jobs):
                    await deferrer.defer_async()
            elif queue is not None:
                await Engine(store, queue, OfflineSketchProvider()).sweep(limit=jobs)
            else:
                await sql(spec, "UPDATE {s}.chatsvg_jobs SET run_at = now() - interval '1 second'")
            await wait_done(mode, spec, queue, jobs)
            return jobs / (time.monotonic() - start)
    finally:
        for proc in procs:
            stop_worker(proc, timeout=60)
        await store.aclose()
        drop_schema(postgres, schema)


async def sql(spec: Spec, statement: str) -> None:
    async with await psycopg.AsyncConnection.connect(spec.postgres_url, autocommit=True) as conn:
        await conn.execute(statement.format(s=f'"{spec.schema}"').encode())


async def wait_done(mode: str, spec: Spec, queue: object, jobs: int) -> None:
    deadline = time.monotonic() + 600
    async with await psycopg.AsyncConnection.connect(spec.postgres_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if mode == "arq-noop":
                left = await queue.redis.zcard(spec.queue_name)  # type: ignore[attr-defined]
            elif mode == "procrastinate-noop":
                cur = await conn.execute(
                    f'SELECT count(*) FROM "{spec.schema}_pq".procrastinate_jobs'.encode()
                )
                left = (await cur.fetchone())[0]  # type: ignore[index]
            else:
                cur = await conn.execute(
                    f'SELECT count(*) FROM "{spec.schema}".chatsvg_jobs '
                    "WHERE status <> 'succeeded'".encode()
                )
                left = (await cur.fetchone())[0]  # type: ignore[index]
            if left == 0:
                return
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{mode}: jobs not done")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    postgres = os.environ["CHATSVG_TEST_POSTGRES_URL"]
    redis = redis_db(os.environ.get("CHATSVG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), 5)
    counts = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    results: dict[tuple[str, int], list[float]] = {}
    print(f"load before: {os.getloadavg()}", flush=True)
    for r in range(args.rounds):
        for workers in counts:
            for mode in modes:
                rate = await measure(mode, workers, args.jobs, postgres, redis)
                results.setdefault((mode, workers), []).append(rate)
                print(f"round {r + 1} {mode} x{workers}: {rate:.0f} jobs/s", flush=True)
    print(f"load after: {os.getloadavg()}")
    print("\n| worker processes | " + " | ".join(modes) + " | arq ÷ next | procrastinate ÷ next |")
    print("| --- | " + " | ".join("---" for _ in modes) + " | --- | --- |")
    for workers in counts:
        med = {m: statistics.median(results[(m, workers)]) for m in modes}
        ratios = [
            f"{med['next'] / med[m]:.2f}x" if "next" in med and m in med else "-"
            for m in ("arq", "procrastinate")
        ]
        print(
            f"| {workers} | "
            + " | ".join(f"{med[m]:.0f}" for m in modes)
            + f" | {ratios[0]} | {ratios[1]} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
