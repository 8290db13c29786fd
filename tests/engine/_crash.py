"""Real worker processes that die with SIGKILL at random points, and the harness around them.

Used by ``tests/engine/test_engine_crash.py`` (small, in the default run) and
``benchmarks/crash_soak.py`` (bigger, numbers recorded in benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from chatsvg_core.engine import Engine
from chatsvg_core.errors import InsufficientCredits, InvalidTransition, ProviderTransientError
from chatsvg_core.generate import GenerationRequest, OfflineSketchProvider, ProviderOutput
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.retry import Jitter, RetryPolicy
from chatsvg_core.storage import Store

from ._support import check_invariants

POLICY = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.3, jitter=Jitter.FULL)
STEPS = ("claimed", "generated", "finished")


@dataclass(frozen=True)
class Target:
    """Where the store is: ``("sqlite", path)`` or ``("postgres", url, schema)``."""

    kind: str
    location: str
    schema: str | None = None


async def open_target(target: Target) -> Store:
    if target.kind == "sqlite":
        from chatsvg_core.storage.sqlite import SQLiteStore

        return await SQLiteStore.open(Path(target.location))
    from chatsvg_core.storage.postgres import PostgresStore

    return await PostgresStore.open(target.location, schema=target.schema, min_size=1, max_size=4)


class ChaosProvider:
    """The offline sketcher, made slow, flaky and occasionally stuck."""

    name = "chaos"

    def __init__(self, rng: random.Random, lease: float) -> None:
        self.inner = OfflineSketchProvider()
        self.rng = rng
        self.lease = lease

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        roll = self.rng.random()
        if roll < 0.15:
            raise ProviderTransientError("chaos: 503", provider=self.name, status=503)
        if roll < 0.20:
            # Block the whole event loop past the lease: heartbeats cannot run,
            # recovery takes the job, and this worker's late writes must be refused.
            time.sleep(self.lease * 1.6)  # noqa: ASYNC251 (blocking on purpose)
        await asyncio.sleep(self.rng.uniform(0, 0.05))
        return await self.inner.generate(request)


def worker_main(target: Target, worker_id: str, seed: int, kill_rate: float, lease: float) -> None:
    """A worker process: takes due jobs from the store until told to stop by SIGKILL."""
    asyncio.run(_work(target, worker_id, seed, kill_rate, lease))


async def _work(target: Target, worker_id: str, seed: int, kill_rate: float, lease: float) -> None:
    rng = random.Random(seed)

    async def checkpoint(step: str, job_id: str) -> None:
        if rng.random() < kill_rate:
            os.kill(os.getpid(), signal.SIGKILL)

    store = await open_target(target)
    engine = Engine(
        store,
        None,
        ChaosProvider(rng, lease),
        policy=POLICY,
        call_policy=POLICY.model_copy(update={"max_attempts": 1}),
        lease=timedelta(seconds=lease),
        checkpoint=checkpoint,
        rng=rng,
    )
    while True:
        job = await engine.process_next(worker_id)
        if job is None:
            await asyncio.sleep(0.02)


@dataclass
class SoakReport:
    """What one soak run saw."""

    backend: str
    jobs: int
    workers: int
    crashes: int = 0
    parent_kills: int = 0
    cancels: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


async def soak(
    target: Target,
    *,
    jobs: int,
    workers: int,
    seed: int,
    kill_rate: float = 0.05,
    parent_kill_every: float = 0.5,
    lease: float = 0.6,
    give_up_after: float = 120.0,
    charge_at: str = "claim",
    cancel_every: float | None = None,
) -> SoakReport:
    """Submit ``jobs``, run ``workers`` crashing processes until all are final, then check.

    With ``charge_at="submit"`` the parent reserves at submit (the workers
    run in claim mode: a reserved job is never charged again); with
    ``cancel_every`` it also cancels a random unfinished job that often,
    whatever a worker is doing with it.
    """
    rng = random.Random(seed)
    store = await open_target(target)
    report = SoakReport(backend=target.kind, jobs=jobs, workers=workers)
    engine = Engine(
        store,
        None,
        OfflineSketchProvider(),
        policy=POLICY,
        rng=rng,
        charge_at=charge_at,  # type: ignore[arg-type]
    )
    owners = ["rich", "poor"]
    ledger = Ledger(store)
    await ledger.grant("rich", 10 * jobs)
    await ledger.grant("poor", 5)  # runs out: the rest fail uncharged
    ids: list[str] = []
    for i in range(jobs):
        try:
            sub = await engine.submit(owners[i % 2], f"k{i}", {"prompt": f"a lighthouse {i}"})
        except InsufficientCredits:
            continue  # refused at submit: no job
        ids.append(sub.job.id)
    report.jobs = len(ids)
    # fork: a worker starts in milliseconds; it builds its own store and loop.
    ctx = mp.get_context("fork")
    procs: dict[str, Any] = {}
    counter = 0
    start = time.monotonic()
    last_kill = last_cancel = start

    def spawn() -> None:
        nonlocal counter
        counter += 1
        name = f"w{counter}"
        proc = ctx.Process(
            target=worker_main, args=(target, name, seed * 1000 + counter, kill_rate, lease)
        )
        proc.start()
        procs[name] = proc

    try:
        while True:
            for name, proc in list(procs.items()):
                if not proc.is_alive():
                    proc.join()
                    if proc.exitcode == -signal.SIGKILL:
                        report.crashes += 1
                    del procs[name]
            while len(procs) < workers:
                spawn()
            if time.monotonic() - last_kill > parent_kill_every:
                # A kill at any moment, mid-transaction included.
                last_kill = time.monotonic()
                victim = rng.choice(list(procs.values()))
                with contextlib.suppress(ProcessLookupError):  # died and reaped meanwhile
                    os.kill(victim.pid, signal.SIGKILL)
                report.parent_kills += 1
            if cancel_every is not None and time.monotonic() - last_cancel > cancel_every:
                last_cancel = time.monotonic()
                # Among the jobs not yet final (a random pick among all of them
                # found only finished ones once the workers got fast).
                async with store.transaction() as tx:
                    open_ids = [j.id for j in await tx.list_jobs(limit=10 * jobs) if not j.terminal]
                    chosen = rng.choice(open_ids) if open_ids else rng.choice(ids)
                    target_job = await tx.get_job(chosen)
                if target_job is not None and not target_job.terminal:
                    try:
                        await engine.cancel(target_job.id, target_job.owner)
                        report.cancels += 1
                    except InvalidTransition:
                        pass  # it finished meanwhile
            await engine.recover()
            async with store.transaction() as tx:
                current = [await tx.get_job(i) for i in ids]
            if all(j is not None and j.terminal for j in current):
                break
            if time.monotonic() - start > give_up_after:
                report.violations.append("timeout: jobs not final")
                break
            await asyncio.sleep(0.1)
    finally:
        for proc in procs.values():
            # A worker that killed itself may already be reaped (multiprocessing
            # reaps finished children whenever another one starts).
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.join()
    report.seconds = time.monotonic() - start
    await asyncio.sleep(lease)
    await engine.recover()
    async with store.transaction() as tx:
        final = [await tx.get_job(i) for i in ids]
    for status in JobStatus:
        report.statuses[status.value] = sum(1 for j in final if j and j.status is status)
    try:
        await check_invariants(store, owners, recovered=True)
    except AssertionError as exc:
        report.violations.append(str(exc))
    await store.aclose()
    return report
