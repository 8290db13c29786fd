"""Worker processes on real queue engines, and the harnesses that drive them.

One module for three uses: ``python -m tests.queues._fleet worker SPEC`` is a
worker process (arq, Procrastinate, or the built-in in-process queue with a
store sweep) on a PostgreSQL schema; :func:`inflight` measures one worker
holding hundreds of slow model calls; :func:`chaos` runs several workers
through SIGKILLs, broker outages and a faulty provider and checks the
invariants. ``tests/queues/test_fleet.py`` runs small versions in CI,
``benchmarks/queue_chaos.py`` and ``benchmarks/bench_queues.py`` the full ones.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import random
import resource
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from ._reaper import popen

ROOT = Path(__file__).resolve().parents[2]
VERBOSE = bool(os.environ.get("CHATSVG_FLEET_VERBOSE"))
# A directory: each worker writes "claimed|succeeded <job> <wall time>" lines there
# (benchmarks/bench_queues.py --trace: pick-up latency and idle slots per worker).
TRACE = os.environ.get("CHATSVG_FLEET_TRACE", "")

# --- what a worker process is told -------------------------------------------------


@dataclass
class Spec:
    """Everything a worker process needs (sent as JSON on its command line)."""

    kind: str  # "arq" | "procrastinate" | "inprocess"
    postgres_url: str
    schema: str
    queue_name: str
    redis_url: str = ""
    concurrency: int = 500
    lease: float = 30.0
    call_seconds: float = 0.0  # each model call awaits this long
    chaos_seed: int | None = None  # None: every call succeeds
    events_path: str = ""  # JSON lines of SUCCEEDED / LEASE_LOST / FAILED events
    maintain_every: int = 1  # 0: no recovery/sweep task in the worker (the benchmarks)
    app_name: str = "chatsvg-fleet"
    shutdown_grace: float = 2.0
    # arq's poll_delay, Procrastinate's poll_interval; None: the adapter's default
    poll: float | None = 0.05
    # Procrastinate's worker options over the adapter's (benchmarks: listen_notify, delete_jobs)
    worker_options: dict[str, Any] = field(default_factory=dict)
    pq_pool: int = 10  # Procrastinate's connector pool (max connections per worker process)
    # Benchmarks: before READY, claim (nothing: the run holds its jobs back) on ``warm``
    # connections at once, as a polling `process_next` worker does while it waits; an
    # adapter's worker otherwise meets its first statements inside the measured window.
    # The store's pool opens with that many connections (up to its 10): empty claims are
    # too short to grow it, and a 4-worker cell then opened 17-25 connections (a PostgreSQL
    # backend's start and first statements each) inside the window where the polling
    # workers had already opened theirs.
    warm: int = 0


def _conninfo(url: str, app_name: str, schema: str | None = None) -> str:
    from psycopg.conninfo import make_conninfo

    options = {"application_name": app_name}
    if schema is not None:
        options["options"] = f"-c search_path={schema}"
    return make_conninfo(url, **options)


class FleetProvider:
    """Awaits ``call_seconds``; with a seed, also fails and hangs now and then.

    Per call: 8% transient error (503), 3% permanent error (400), 1% a hang
    that blocks the whole event loop for 1.6 leases (no heartbeat can run:
    recovery takes this worker's jobs and its late writes must be refused),
    2% an awaited hang of 1.5 leases (heartbeats keep the lease: it finishes).
    """

    name = "fleet"

    def __init__(self, spec: Spec, stats: dict[str, int]) -> None:
        self.spec = spec
        self.rng = random.Random(spec.chaos_seed)
        self.stats = stats
        self.svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
            '<circle cx="5" cy="5" r="4"/></svg>'
        )

    async def generate(self, request: Any) -> Any:
        from chatsvg_core.errors import ProviderPermanentError, ProviderTransientError
        from chatsvg_core.generate import ProviderOutput

        self.stats["in_flight"] += 1
        self.stats["peak"] = max(self.stats["peak"], self.stats["in_flight"])
        self.stats["calls"] += 1
        try:
            if self.spec.chaos_seed is not None:
                roll = self.rng.random()
                if roll < 0.08:
                    raise ProviderTransientError("fleet: 503", provider=self.name, status=503)
                if roll < 0.11:
                    raise ProviderPermanentError("fleet: 400", provider=self.name, status=400)
                if roll < 0.12:
                    time.sleep(self.spec.lease * 1.6)  # noqa: ASYNC251 (blocks on purpose)
                elif roll < 0.14:
                    await asyncio.sleep(self.spec.lease * 1.5)
            if self.spec.call_seconds:
                await asyncio.sleep(self.spec.call_seconds)
        finally:
            self.stats["in_flight"] -= 1
        return ProviderOutput(text=self.svg, model="fleet-1", provider=self.name, latency_s=0.0)


POLICY_ARGS = {"max_attempts": 4, "initial_delay": 0.1, "max_delay": 0.5, "deadline": None}


async def _open_store(spec: Spec) -> Any:
    from chatsvg_core.storage.postgres import PostgresStore

    return await PostgresStore.open(
        _conninfo(spec.postgres_url, spec.app_name),
        schema=spec.schema,
        # Benchmarks: the warm-up's connections open before READY (see ``warm``).
        min_size=max(2, min(spec.warm, 10)),
        max_size=10,
    )


def _engine_factory(
    spec: Spec, stats: dict[str, int], engines: list[Any]
) -> Callable[[Any], Awaitable[Any]]:
    async def factory(queue: Any) -> Any:
        from chatsvg_core.engine import Engine, EngineEvent, EventKind
        from chatsvg_core.retry import RetryPolicy

        store = await _open_store(spec)
        events = open(spec.events_path, "a", buffering=1) if spec.events_path else None  # noqa: SIM115, ASYNC230
        trace = open(Path(TRACE) / f"{os.getpid()}.trace", "a") if TRACE else None  # noqa: SIM115, ASYNC230
        if trace is not None:
            atexit.register(trace.close)

        def on_event(event: EngineEvent) -> None:
            if trace is not None and event.kind in (EventKind.CLAIMED, EventKind.SUCCEEDED):
                trace.write(f"{event.kind.value} {event.job_id} {time.time():.6f}\n")
            if event.kind is EventKind.LEASE_LOST:
                stats["lease_lost"] += 1
            if events is not None and event.kind in (
                EventKind.SUCCEEDED,
                EventKind.LEASE_LOST,
                EventKind.FAILED,
            ):
                events.write(
                    json.dumps(
                        {
                            "kind": event.kind.value,
                            "job": event.job_id,
                            "attempt": event.attempt,
                            "pid": os.getpid(),
                        }
                    )
                    + "\n"
                )

        policy = RetryPolicy(**POLICY_ARGS)  # type: ignore[arg-type]
        engine = Engine(
            store,
            queue,
            FleetProvider(spec, stats),
            policy=policy,
            call_policy=policy.model_copy(update={"max_attempts": 1}),
            lease=timedelta(seconds=spec.lease),
            on_event=on_event,
        )
        engines.append(engine)
        if spec.warm:
            await asyncio.gather(
                *(engine.process_next(f"warm-{os.getpid()}-{n}") for n in range(spec.warm))
            )
        _CPU0[0] = _cpu()  # imports and start-up are not the work being measured
        print("READY", flush=True)
        return engine

    return factory


def worker_main(spec: Spec) -> None:
    """A worker process: serve until SIGTERM, then print one JSON report line."""
    if VERBOSE:
        import logging

        logging.basicConfig(
            level=logging.INFO, format=f"%(asctime)s {os.getpid()} %(name)s %(message)s"
        )
    stats: Counter[str] = Counter()
    engines: list[Any] = []
    factory = _engine_factory(spec, stats, engines)
    _CPU0[0] = _cpu()
    start = time.monotonic()
    if spec.kind in ("arq", "arq-plain"):
        from chatsvg_core.queues import arq_worker_settings, run_arq_worker

        settings = arq_worker_settings(
            factory,
            redis_url=spec.redis_url,
            queue_name=spec.queue_name,
            max_jobs=spec.concurrency,
            **({} if spec.poll is None else {"poll_delay": spec.poll}),
            maintain_every=spec.maintain_every or None,
            shutdown_grace=int(spec.shutdown_grace),
            # A SIGKILLed worker's fetched-but-unclaimed messages come back after
            # job_timeout + 10 s (arq's in-progress key); keep it short here.
            job_timeout=max(10.0, spec.lease * 3),
        )
        if spec.kind == "arq-plain":
            # The benchmarks' comparison: the same settings on arq's own Worker class,
            # without the adapter's start path (``_Worker``).
            from arq.worker import run_worker

            run_worker(settings)
        else:
            run_arq_worker(settings)
    elif spec.kind == "procrastinate":
        from procrastinate import PsycopgConnector

        from chatsvg_core.queues import procrastinate_app, run_procrastinate_worker

        app = procrastinate_app(
            PsycopgConnector(
                conninfo=_conninfo(spec.postgres_url, spec.app_name, f"{spec.schema}_pq"),
                min_size=min(2, spec.pq_pool),
                max_size=spec.pq_pool,
            ),
            queue_name=spec.queue_name,
            maintain_every=spec.maintain_every or None,
        )
        run_procrastinate_worker(
            app,
            factory,
            queue_name=spec.queue_name,
            concurrency=spec.concurrency,
            shutdown_grace=spec.shutdown_grace,
            **({} if spec.poll is None else {"poll_interval": spec.poll}),
            **spec.worker_options,
        )
    elif spec.kind == "next":
        asyncio.run(_process_next(spec, factory))
    elif spec.kind == "arq-noop":
        _arq_noop(spec)
    elif spec.kind == "procrastinate-noop":
        _procrastinate_noop(spec)
    else:
        asyncio.run(_inprocess(spec, factory))
    for engine in engines:
        stats["keeper_rounds"] += sum(k.rounds for k in engine._keepers.values())
    report = {
        **stats,
        "cpu_seconds": _cpu() - _CPU0[0],
        "wall_seconds": time.monotonic() - start,
    }
    print(json.dumps(report), flush=True)


async def _inprocess(spec: Spec, factory: Callable[[Any], Awaitable[Any]]) -> None:
    """The built-in worker: ``InProcessQueue`` fed by a store sweep (as ``chatsvg worker``)."""
    from chatsvg_core.queues import InProcessQueue

    queue = InProcessQueue(concurrency=spec.concurrency)
    engine = await factory(queue)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    async def sweep() -> None:
        while not stopping.is_set():
            with contextlib.suppress(Exception):
                await engine.recover()
                await engine.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.2)

    server = asyncio.create_task(
        queue.serve(lambda job_id: engine.process(job_id, f"b{os.getpid()}"))
    )
    poller = asyncio.create_task(sweep())
    await stopping.wait()
    await queue.stop(grace=spec.shutdown_grace)
    await asyncio.gather(server, poller)
    await engine.store.aclose()


_CPU0 = [0.0]


async def _process_next(spec: Spec, factory: Callable[[Any], Awaitable[Any]]) -> None:
    """The store as the queue: ``concurrency`` tasks looping on ``Engine.process_next``."""
    engine = await factory(None)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    async def drain(n: int) -> None:
        while not stopping.is_set():
            if await engine.process_next(f"n{os.getpid()}-{n}") is None:
                await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(drain(n)) for n in range(spec.concurrency)]
    await stopping.wait()
    await asyncio.gather(*tasks)
    await engine.store.aclose()


async def _noop(ctx: dict[str, Any]) -> None:
    """The queue engine's own floor: a task that does nothing."""


def _arq_noop(spec: Spec) -> None:
    from arq import func
    from arq.connections import RedisSettings
    from arq.worker import run_worker

    async def startup(ctx: dict[str, Any]) -> None:
        print("READY", flush=True)

    run_worker(
        {
            "functions": [func(_noop, name="noop", keep_result=0)],
            "redis_settings": RedisSettings.from_dsn(spec.redis_url),
            "queue_name": spec.queue_name,
            "max_jobs": spec.concurrency,
            "keep_result": 0,
            "poll_delay": spec.poll or 0.5,  # the adapter's default
            "on_startup": startup,
        }
    )


def _procrastinate_noop(spec: Spec) -> None:
    from procrastinate import App, PsycopgConnector

    app = App(
        connector=PsycopgConnector(
            conninfo=_conninfo(spec.postgres_url, spec.app_name, f"{spec.schema}_pq"),
            min_size=min(2, spec.pq_pool),
            max_size=spec.pq_pool,
        )
    )

    @app.task(name="noop", queue=spec.queue_name)
    async def noop() -> None:
        """Nothing."""

    async def main() -> None:
        async with app.open_async():
            print("READY", flush=True)
            await app.run_worker_async(
                queues=[spec.queue_name],
                concurrency=spec.concurrency,
                # The adapter's settings (serve_procrastinate), for a fair floor.
                **{
                    "delete_jobs": "always",
                    "listen_notify": False,
                    "fetch_job_polling_interval": spec.poll or 0.5,
                    **spec.worker_options,
                },
            )

    asyncio.run(main())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spawn(spec: Spec, log: Path | None = None) -> subprocess.Popen[str]:
    """Start a worker process for ``spec`` (its stderr to ``log``, if given)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    with open(log, "ab") if log else open(os.devnull, "wb") as err:
        # Tied to this process: a killed run's workers would otherwise poll on for ever.
        return popen(
            [sys.executable, "-m", "tests.queues._fleet", "worker", json.dumps(asdict(spec))],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


# --- the parent's side: databases, brokers, queues ---------------------------------------


async def new_schema(postgres_url: str, *, procrastinate: bool) -> str:
    """A schema with the chatsvg tables of this run's own; Procrastinate's go in ``<it>_pq``."""
    import psycopg

    from chatsvg_core.storage.postgres import PostgresStore

    schema = f"chatsvg_fleet_{os.getpid()}_{secrets.token_hex(3)}"
    await (await PostgresStore.open(postgres_url, schema=schema)).aclose()
    if procrastinate:
        from procrastinate import App, PsycopgConnector

        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}_pq"'.encode())
        conninfo = _conninfo(postgres_url, "x", f"{schema}_pq")
        app = App(connector=PsycopgConnector(conninfo=conninfo))
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
    return schema


def drop_schema(postgres_url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_pq" CASCADE'.encode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A redis-server of the test's own on a spare port (no persistence), to stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def terminate_backends(postgres_url: str, app_name: str) -> int:
    """``pg_terminate_backend`` every connection whose application_name starts with ``app_name``."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
            (app_name + "%",),
        ).fetchall()
    return len(rows)


@contextlib.asynccontextmanager
async def parent_queue(spec: Spec) -> AsyncIterator[Any]:
    """The submitting side's queue for ``spec.kind`` (None for the built-in worker)."""
    if spec.kind in ("arq", "arq-plain"):
        from chatsvg_core.queues import ArqQueue

        queue = await ArqQueue.connect(spec.redis_url, queue_name=spec.queue_name)
        try:
            yield queue
        finally:
            await queue.aclose()
    elif spec.kind == "procrastinate":
        from procrastinate import PsycopgConnector

        from chatsvg_core.queues import ProcrastinateQueue, procrastinate_app

        app = procrastinate_app(
            PsycopgConnector(
                conninfo=_conninfo(
                    spec.postgres_url, f"{spec.app_name}-parent", f"{spec.schema}_pq"
                ),
                min_size=1,
                max_size=4,
            ),
            queue_name=spec.queue_name,
            maintain_every=None,
        )
        async with app.open_async():
            yield ProcrastinateQueue(app, queue_name=spec.queue_name)
    else:
        yield None


def stop_worker(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    """SIGTERM a worker and read its report."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


# --- many generations in flight in one worker ---------------------------------------------


@dataclass
class InflightReport:
    kind: str
    jobs: int
    call_seconds: float
    lease: float
    peak_in_flight: int = 0
    lease_lost: int = 0
    keeper_rounds: int = 0
    succeeded: int = 0
    worker_cpu_seconds: float = 0.0
    run_seconds: float = 0.0

    @property
    def lease_statements_per_job(self) -> float:
        return self.keeper_rounds / self.jobs if self.jobs else 0.0

    @property
    def cpu_share(self) -> float:
        """Worker CPU over the wall time of the run (1.0 = one core busy)."""
        return self.worker_cpu_seconds / self.run_seconds if self.run_seconds else 0.0


async def inflight(
    kind: str,
    *,
    postgres_url: str,
    redis_url: str = "",
    jobs: int,
    call_seconds: float,
    lease: float,
) -> InflightReport:
    """One worker process; ``jobs`` slow jobs submitted at once; how many run at once."""
    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.storage.postgres import PostgresStore

    schema = await new_schema(postgres_url, procrastinate=kind == "procrastinate")
    spec = Spec(
        kind=kind,
        postgres_url=postgres_url,
        schema=schema,
        queue_name=f"inflight-{schema}",
        redis_url=redis_url,
        concurrency=jobs,
        lease=lease,
        call_seconds=call_seconds,
        maintain_every=60,
        app_name=f"chatsvg-inflight-{schema}",
        shutdown_grace=1.0,
    )
    report = InflightReport(kind=kind, jobs=jobs, call_seconds=call_seconds, lease=lease)
    store = await PostgresStore.open(postgres_url, schema=schema, min_size=1, max_size=4)
    proc = spawn(spec)
    try:
        async with parent_queue(spec) as queue:
            engine = Engine(store, queue, OfflineSketchProvider())
            # Many owners, as in a service: one owner's charges take its account
            # lock one at a time, which would measure that lock, not the worker.
            owners = [f"o{i}" for i in range(50)]
            for owner in owners:
                await Ledger(store).grant(owner, 10 * jobs)
            # Submitted first, announced all at once: the worker, not the
            # submitter, is what is measured.
            silent = Engine(store, None, OfflineSketchProvider())
            ids = [
                (await silent.submit(owners[i % 50], f"k{i}", {"prompt": f"p{i}"})).job.id
                for i in range(jobs)
            ]
            await asyncio.sleep(1.0)  # the worker is up (arq's and Procrastinate's start-up)
            start = time.monotonic()
            await engine.sweep()
            if kind == "inprocess":
                start -= 1.0  # its own store sweep may have started them during the wait
            deadline = start + 60 + 4 * call_seconds
            while True:
                async with store.transaction() as tx:
                    done = [await tx.get_job(i) for i in ids]
                if all(j is not None and j.terminal for j in done):
                    break
                if time.monotonic() > deadline or proc.poll() is not None:
                    break
                # Recovery runs meanwhile, as a cron would: a lease that lapsed is taken.
                await engine.recover()
                await asyncio.sleep(0.25)
            report.run_seconds = time.monotonic() - start
            report.succeeded = sum(
                1 for j in done if j is not None and j.status.value == "succeeded"
            )
        worker = stop_worker(proc)
        report.peak_in_flight = int(worker.get("peak", 0))
        report.lease_lost = int(worker.get("lease_lost", 0))
        report.keeper_rounds = int(worker.get("keeper_rounds", 0))
        report.worker_cpu_seconds = float(worker.get("cpu_seconds", 0.0))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await store.aclose()
        drop_schema(postgres_url, schema)
    return report


# --- the chaos run: several workers, SIGKILLs, an outage, a faulty provider ----------------


@dataclass
class ChaosReport:
    kind: str
    jobs: int
    workers: int
    seed: int
    sigkills: int = 0
    other_exits: int = 0
    outages: int = 0
    terminated_connections: int = 0
    stale_writes_refused: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def row(self) -> str:
        return (
            f"| {self.kind} | {self.seed} | {self.jobs} | {self.workers} | {self.sigkills} "
            f"| {self.other_exits} | {self.outages} ({self.terminated_connections}) "
            f"| {self.stale_writes_refused} | {self.statuses.get('succeeded', 0)} "
            f"| {self.statuses.get('failed', 0)} | {len(self.violations)} | {self.seconds:.0f} |"
        )


ROW_HEADER = (
    "| adapter | seed | jobs | worker processes | SIGKILLs | other worker exits "
    "| outages (connections cut) | stale writes refused | succeeded | failed | violations "
    "| seconds |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


async def chaos(
    kind: str,
    *,
    postgres_url: str,
    jobs: int,
    workers: int,
    seed: int,
    kill_every: float = 2.0,
    outage_after: float = 0.25,
    outage_seconds: float = 2.0,
    lease: float = 5.0,
    give_up_after: float = 240.0,
    workdir: Path,
) -> ChaosReport:
    """``jobs`` through ``workers`` processes of ``kind``, with SIGKILLs and one broker outage.

    The outage starts once ``outage_after`` of the jobs are final (so it meets
    running workers) and lasts ``outage_seconds``: arq's redis-server (the
    run's own) is killed and started again empty; for Procrastinate every
    connection of the workers is cut with ``pg_terminate_backend``, every
    half second through the window.
    """
    from tests.engine._support import check_invariants

    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.jobs import JobStatus
    from chatsvg_core.ledger import Ledger
    from chatsvg_core.storage.postgres import PostgresStore

    rng = random.Random(seed)
    report = ChaosReport(kind=kind, jobs=jobs, workers=workers, seed=seed)
    schema = await new_schema(postgres_url, procrastinate=kind == "procrastinate")
    redis = OwnRedis() if kind == "arq" else None
    if redis is not None:
        redis.start()
    base = Spec(
        kind=kind,
        postgres_url=postgres_url,
        schema=schema,
        queue_name=f"chaos-{schema}",
        redis_url=redis.url if redis else "",
        concurrency=50,
        lease=lease,
        call_seconds=0.02,
        # A sweep re-announces every QUEUED job: cheap on Redis, one INSERT
        # each on Procrastinate (its queueing lock refuses the duplicate).
        maintain_every=1 if kind == "arq" else 3,
        app_name=f"chatsvg-chaos-{schema}",
        shutdown_grace=1.0,
    )
    store = await PostgresStore.open(postgres_url, schema=schema, min_size=1, max_size=4)
    procs: dict[int, subprocess.Popen[str]] = {}
    counter = 0

    def start_worker() -> None:
        nonlocal counter
        counter += 1
        spec = Spec(
            **{
                **asdict(base),
                "chaos_seed": seed * 1000 + counter,
                "events_path": str(workdir / f"events-{counter}.jsonl"),
            }
        )
        proc = spawn(spec, workdir / f"worker-{counter}.log" if VERBOSE else None)
        procs[proc.pid] = proc

    start = time.monotonic()
    try:
        async with parent_queue(base) as queue:
            engine = Engine(store, queue, OfflineSketchProvider())
            ledger = Ledger(store)
            await ledger.grant("rich", 10 * jobs)
            await ledger.grant("poor", 20)  # runs out: the rest fail uncharged
            for _ in range(workers):
                start_worker()
            owners = ["rich", "poor"]
            ids: list[str] = []
            next_kill = time.monotonic() + kill_every
            outage_pending = True
            outage_ends: float | None = None
            next_cut = 0.0
            final = 0
            next_count = 0.0
            submitted = 0
            last_note = start
            while True:
                now = time.monotonic()
                # Submit in slices, so kills and the outage meet a stream of work.
                if submitted < jobs:
                    batch = range(submitted, min(jobs, submitted + 20))
                    results = await asyncio.gather(
                        *(
                            engine.submit(
                                owners[1 if i % 10 == 0 else 0], f"k{i}", {"prompt": f"p{i}"}
                            )
                            for i in batch
                        )
                    )
                    ids += [r.job.id for r in results]
                    submitted += len(results)
                for pid, proc in list(procs.items()):
                    if proc.poll() is not None:
                        if proc.returncode == -signal.SIGKILL:
                            pass  # counted when sent
                        else:
                            report.other_exits += 1
                        del procs[pid]
                while len(procs) < workers:
                    start_worker()
                if now >= next_kill:
                    victim = rng.choice(list(procs.values()))
                    victim.kill()
                    report.sigkills += 1
                    next_kill = now + kill_every * rng.uniform(0.5, 1.5)
                if now >= next_count:
                    next_count = now + 0.5
                    async with store.transaction() as tx:
                        final = len(await tx.list_jobs(status=JobStatus.SUCCEEDED, limit=jobs))
                        final += len(await tx.list_jobs(status=JobStatus.FAILED, limit=jobs))
                if outage_pending and final >= outage_after * jobs:
                    outage_pending = False
                    report.outages += 1
                    outage_ends = now + outage_seconds
                    if redis is not None:
                        redis.stop()
                if outage_ends is not None and redis is None and now >= next_cut:
                    next_cut = now + 0.5
                    report.terminated_connections += terminate_backends(postgres_url, base.app_name)
                if outage_ends is not None and now >= outage_ends:
                    outage_ends = None
                    if redis is not None:
                        redis.start()
                if submitted == jobs and not outage_pending and outage_ends is None:
                    async with store.transaction() as tx:
                        live = [
                            *await tx.list_jobs(status=JobStatus.QUEUED, limit=1),
                            *await tx.list_jobs(status=JobStatus.RUNNING, limit=1),
                        ]
                    if not live:
                        break
                if VERBOSE and now - last_note > 5:
                    last_note = now
                    async with store.transaction() as tx:
                        seen = Counter(j.status.value for j in await tx.list_jobs(limit=100_000))
                    print(f"{now - start:5.1f}s {dict(seen)} workers={len(procs)}", flush=True)
                    if queue is not None and kind == "arq" and outage_ends is None:
                        async with store.transaction() as tx:
                            waiting = await tx.list_jobs(status=JobStatus.QUEUED, limit=2)
                        for j in waiting:
                            mid = queue.message_id(j.id, j.attempt)
                            r = queue.redis
                            print(
                                "   ",
                                j.id[:8],
                                j.attempt,
                                j.run_at,
                                await r.exists(f"arq:job:{mid}"),
                                await r.zscore(queue.queue_name, mid),
                                await r.pttl(f"arq:in-progress:{mid}"),
                                await r.get(f"arq:retry:{mid}"),
                                flush=True,
                            )
                if now - start > give_up_after:
                    report.violations.append("timeout: jobs not final")
                    break
                await asyncio.sleep(0.1)
    finally:
        for proc in procs.values():
            with contextlib.suppress(Exception):
                stop_worker(proc, timeout=20)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if redis is not None:
            redis.stop()
    report.seconds = time.monotonic() - start
    try:
        async with store.transaction() as tx:
            final = {i: await tx.get_job(i) for i in ids}
        for status in JobStatus:
            report.statuses[status.value] = sum(
                1 for j in final.values() if j is not None and j.status is status
            )
        unfinished = [i for i, j in final.items() if j is None or not j.terminal]
        if unfinished:
            report.violations.append(f"{len(unfinished)} jobs not terminal")
        try:
            await check_invariants(store, ["rich", "poor"], recovered=True)
        except AssertionError as exc:
            report.violations.append(f"ledger/job invariant: {exc}")
        report.violations += _check_events(workdir, final, report)
    finally:
        await store.aclose()
        drop_schema(postgres_url, schema)
    return report


def _check_events(workdir: Path, final: dict[str, Any], report: ChaosReport) -> list[str]:
    """No job completed by a stale worker: one SUCCEEDED event per job, for its final attempt."""
    succeeded: dict[str, list[int]] = {}
    for path in workdir.glob("events-*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # the last line of a SIGKILLed worker
            if event["kind"] == "lease_lost":
                report.stale_writes_refused += 1
            elif event["kind"] == "succeeded":
                succeeded.setdefault(event["job"], []).append(event["attempt"])
    violations = []
    for job_id, attempts in succeeded.items():
        job = final.get(job_id)
        if len(attempts) > 1:
            violations.append(f"job {job_id} completed {len(attempts)} times: {attempts}")
        if job is None or job.status.value != "succeeded" or job.attempt != attempts[0]:
            violations.append(f"job {job_id} completed by attempt {attempts} but is {job}")
    return violations


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        profile_dir = os.environ.get("CHATSVG_FLEET_PROFILE")
        if profile_dir:
            # Where a worker's CPU goes (benchmarks): cProfile for the whole run.
            import cProfile

            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            try:
                worker_main(Spec(**json.loads(sys.argv[2])))
            finally:
                profiler.disable()
                profiler.dump_stats(os.path.join(profile_dir, f"{os.getpid()}.prof"))
        else:
            worker_main(Spec(**json.loads(sys.argv[2])))
