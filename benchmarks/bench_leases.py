"""Lease upkeep: database writes per job while many model calls of 10 s are in flight.

One worker process submits ``--jobs`` jobs and runs them all at once
(``Engine.process`` per job, a provider that awaits ``--call`` seconds), with
a short heartbeat interval so that several rounds happen during each call.
It counts the write transactions by kind (submit, claim + charge, finish,
heartbeat round) and the statements of the heartbeat rounds, and checks that
no lease was lost. Beside it, the cost one heartbeat transaction per job per
interval would have had (the design before the batched keeper).

    python benchmarks/bench_leases.py [--postgres URL] [--jobs 500] [--call 10] [--every 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chatsvg_core import Engine, GenerationRequest, Ledger, ProviderOutput
from chatsvg_core.engine import EngineEvent, EventKind
from chatsvg_core.storage import Store, StoreTransaction

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="5" height="5"/></svg>'
)


class SlowProvider:
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        await asyncio.sleep(self.seconds)
        return ProviderOutput(text=SVG, model="slow", provider=self.name, latency_s=self.seconds)


class CountingStore:
    """Counts the store's transactions (every engine write is one)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.transactions = 0

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        self.transactions += 1
        return self.inner.transaction()

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def opened(backend: str, url: str | None) -> AsyncIterator[Store]:
    if backend == "sqlite":
        from chatsvg_core.storage.sqlite import SQLiteStore

        store: Store = await SQLiteStore.open(Path(tempfile.mkdtemp()) / "leases.db")
        try:
            yield store
        finally:
            await store.aclose()
        return
    import psycopg

    from chatsvg_core.storage.postgres import PostgresStore

    assert url is not None
    schema = f"chatsvg_leases_{secrets.token_hex(4)}"
    store = await PostgresStore.open(url, schema=schema, max_size=4)
    try:
        yield store
    finally:
        await store.aclose()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def measure(backend: str, url: str | None, jobs: int, call: float, every: float) -> str:
    async with opened(backend, url) as inner:
        store = CountingStore(inner)
        lost: list[str] = []

        def on_event(event: EngineEvent) -> None:
            if event.kind is EventKind.LEASE_LOST:
                lost.append(event.job_id)

        engine = Engine(
            store,  # type: ignore[arg-type]
            None,
            SlowProvider(call),
            lease=timedelta(seconds=every * 3),
            heartbeat_every=every,
            on_event=on_event,
        )
        await Ledger(inner).grant("owner", 10 * jobs)
        before = store.transactions
        ids = [
            (await engine.submit("owner", f"k{i}", {"prompt": f"a cat {i}"})).job.id
            for i in range(jobs)
        ]
        submits = store.transactions - before
        cpu, start = time.process_time(), time.perf_counter()
        before = store.transactions
        done = await asyncio.gather(*(engine.process(j, "w") for j in ids))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        keeper = engine._keeper()
        rounds = keeper.rounds
        others = store.transactions - before - rounds  # claim + charge, finish
        ok = sum(1 for j in done if j is not None and j.status.value == "succeeded")
        beats_each = int(call // every)
        return (
            f"| {backend} | {jobs} | {call:.0f} s | {every:.0f} s | {ok} | {len(lost)} | "
            f"{rounds} | {rounds / jobs:.3f} | {(submits + others + rounds) / jobs:.2f} | "
            f"{beats_each} | {1 + 2 + beats_each} | {wall:.1f} | {cpu:.2f} |"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("CHATSVG_TEST_POSTGRES_URL"))
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--call", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=2.0)
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(
        "| backend | jobs in flight | model call | heartbeat every | succeeded | leases lost | "
        "heartbeat statements | heartbeat statements/job | write transactions/job | "
        "per-job heartbeat writes/job (before) | write transactions/job (before) | "
        "wall s | CPU s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    backends = ["sqlite"] + (["postgres"] if args.postgres else [])
    for backend in backends:
        print(await measure(backend, args.postgres, args.jobs, args.call, args.every), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
