"""Jobs per second through each queue adapter, beside process_next and the engines' no-op rate.

For 1, 2 and 4 worker processes, with an instant provider, on one PostgreSQL:

* ``next``: the store as the queue (``Engine.process_next`` loops), the floor
  the issue sets the adapters against;
* ``arq``, ``procrastinate``, ``celery-redis``, ``celery-amqp``: the adapters
  (jobs submitted first, then announced 20 at a time, as concurrent submits would);
* ``*-noop``: the queue engine alone, running a task that does nothing, with
  the same worker settings (how fast the engine itself delivers).

Every worker process runs ``--concurrency`` jobs at once (Celery: the gevent
pool with that many slots). Each measurement starts its workers and waits
until they are up (Celery: until each has run a warm-up job), then starts the
clock, releases N jobs and stops it when all are done. Rounds interleave every
configuration, so a change in the machine's load hits them all alike; the
median per configuration is reported.

Beside the rate, the CPU time each job cost, read from /proc over the timed
window (a steadier figure than the rate on a shared machine): the worker
processes, their PostgreSQL backends, the submitting process (the
announcement) with its backends, and the broker (the run's own
redis-server; RabbitMQ is the machine's, shared). Redis is a redis-server of
the run's own on a spare port.

    python benchmarks/bench_queues.py [--jobs 1000[,3000]] [--rounds 3] [--workers 1,2,4]
        [--modes next,arq,procrastinate,arq-noop,procrastinate-noop] [--timeline 0.1]

Several sizes (``--jobs 1000,3000``) interleave in each round and solve each
mode's cost as ``F/n + c`` (F: paid once per cell, c: per job) from runs
under the same load; comparing runs made minutes apart on a shared machine
read load drift as a fixed cost. Diagnosis: ``--timeline S`` prints CPU per
job by stretch of each cell; ``CHATSVG_INFLIGHT_CPULOG=DIR`` has each Celery
worker log its CPU at its n-th job (per worker: CPU before its first job, per
job later, and what it paid once).

Needs CHATSVG_TEST_POSTGRES_URL (and CHATSVG_TEST_AMQP_URL for celery-amqp).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from uuid import uuid4

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.queues._celery_chaos import OwnRedis
from tests.queues._fleet import (
    Spec,
    drop_schema,
    new_schema,
    parent_queue,
    spawn,
    stop_worker,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODES = ["next", "arq", "procrastinate", "arq-noop", "procrastinate-noop"]
CELERY_MODES = ["celery-redis", "celery-amqp", "celery-redis-noop", "celery-amqp-noop"]
# The arq adapter's settings on arq's own Worker class (without the adapter's start path).
ALL_MODES = MODES + CELERY_MODES + ["arq-plain"]
# Procrastinate variants, as suffixes (``procrastinate-noop+listen+keep``): worker options
# over the adapter's, and ``batch``: the no-op's announcements deferred 20 in one statement.
VARIANTS: dict[str, dict[str, Any]] = {
    "listen": {"listen_notify": True},
    "keep": {"delete_jobs": "never"},
    "fast": {"poll_interval": 0.1},
    # Not worker options: the slots per worker process and Procrastinate's connector pool.
    "c10": {"concurrency": 10},
    "c200": {"concurrency": 200},
    "pool2": {"pq_pool": 2},
    "batch": {},
    # Celery (``celery-redis+one``): one message per job, as before session 11, instead of
    # one message naming the announcements that wait together.
    "one": {},
}
POLL: list[float | None] = [None]  # --poll
CELERY_POOL = ["gevent"]  # --celery-pool
ANNOUNCED = [0.0]  # seconds the last announcing took
TRACE = [False]  # --trace: workers log each claim and success; the cell line sums them up
SENT: dict[int, float] = {}  # with --trace: when announcement i was sent (wall clock)
ANNOUNCERS = [20]  # concurrent announcements, as from that many submitting requests
# --warm: connections each worker claims on (finding nothing) before READY. A `next`
# worker polls while the run holds the jobs back, so it starts the clock with warm
# connections (server catalog caches, statements planned); an adapter's worker waits
# on its broker and met its first statements inside the window (about 1 s of CPU per
# 4-worker cell, seen as a fixed cost: 1,000-job cells up to 0.2x dearer than 3,000).
WARM = [10]
# --timeline S: sample every group's CPU and the jobs done every S seconds over the window,
# and print CPU per job by stretch of the run (where a fixed cost per cell is spent).
TIMELINE = [0.0]
HOLD = "UPDATE {s}.chatsvg_jobs SET run_at = run_at + interval '1 day'"
RELEASE = "UPDATE {s}.chatsvg_jobs SET run_at = now() - interval '1 second'"


# --- CPU accounting ---------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out += tree(int(child))
    return out


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_ADMIN: dict[str, Any] = {}


def admin(postgres: str) -> Any:
    """One connection for the run's own readings, kept open: a full server (the machine's
    PostgreSQL is shared) must not fail a reading at the end of a cell."""
    conn = _ADMIN.get(postgres)
    if conn is None or conn.closed:
        conn = _ADMIN[postgres] = psycopg.connect(postgres, autocommit=True)
    return conn


def backends(postgres: str, app_name: str) -> list[int]:
    rows = (
        admin(postgres)
        .execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
            (app_name + "%",),
        )
        .fetchall()
    )
    return [int(r[0]) for r in rows]


def broker_pid(mode: str, redis: OwnRedis) -> int | None:
    if "amqp" in mode:
        out = subprocess.run(["pgrep", "-f", "beam.smp"], capture_output=True, text=True).stdout
        return int(out.split()[0]) if out.split() else None
    if "arq" in mode or "redis" in mode:
        return redis.proc.pid if redis.proc is not None else None
    return None


def machine_ticks() -> tuple[int, int]:
    """The machine's (idle + iowait, all) CPU ticks so far, every core (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


def redis_counts(url: str | None) -> dict[str, float]:
    """The run's own redis-server's commands and connections' reads so far (load-independent)."""
    if not url:
        return {}
    from redis import Redis

    client = Redis.from_url(url)
    try:
        stats = client.info("stats")
        by_command = client.info("commandstats")
    finally:
        client.close()
    out = {
        "redis_commands": float(stats["total_commands_processed"]),
        # One read event per request a client sends: about the round trips (pipelines count once).
        "redis_reads": float(stats.get("total_reads_processed", 0)),
    }
    if os.environ.get("CHATSVG_BENCH_COMMANDS"):
        out.update({k.removeprefix("cmdstat_"): float(v["calls"]) for k, v in by_command.items()})
    return out


def pg_counts(postgres: str) -> dict[str, float]:
    """PostgreSQL's commits and rolled-back transactions so far, in every database of the server."""
    row = (
        admin(postgres)
        .execute("SELECT sum(xact_commit) + sum(xact_rollback) FROM pg_stat_database")
        .fetchone()
    )
    return {"pg_transactions": float(row[0]) if row and row[0] is not None else 0.0}


@dataclass
class Meter:
    """CPU seconds per group of processes between :meth:`start` and :meth:`stop`.

    Also counts, as load-independent figures, the run's own redis-server's
    commands and PostgreSQL's transactions over the window (the server's
    are shared with the machine: other users' show up there too).
    """

    postgres: str
    app_name: str
    workers: list[int]
    broker: int | None
    redis_url: str | None = None
    begin: dict[str, dict[int, float]] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    idle: float = 0.0  # share of the machine's CPU time left idle over the window
    backends: tuple[int, int] = (0, 0)
    _counts0: dict[str, float] = field(default_factory=dict)
    _ticks0: tuple[int, int] = (0, 0)

    def _read(self) -> dict[str, dict[int, float]]:
        pg = backends(self.postgres, self.app_name)
        parent_pg = [p for p in pg if p in set(backends(self.postgres, self.app_name + "-parent"))]
        worker_pids = [p for w in self.workers for p in tree(w)]
        return {
            "workers": {p: proc_cpu(p) for p in worker_pids},
            "workers_pg": {p: proc_cpu(p) for p in pg if p not in parent_pg},
            "submitter_pg": {p: proc_cpu(p) for p in parent_pg},
            "broker": {self.broker: proc_cpu(self.broker)} if self.broker else {},
            "submitter": {0: self_cpu()},
        }

    def _count(self) -> dict[str, float]:
        return {**redis_counts(self.redis_url), **pg_counts(self.postgres)}

    def start(self) -> None:
        self._counts0 = self._count()
        self.begin = self._read()
        self._ticks0 = machine_ticks()

    def stop(self) -> None:
        idle, ticks = machine_ticks()
        self.idle = (idle - self._ticks0[0]) / max(1, ticks - self._ticks0[1])
        end = self._read()
        # The workers' PostgreSQL connections at the clock's start and stop: one opened in
        # the window pays its start-up and first statements there.
        self.backends = (len(self.begin["workers_pg"]), len(end["workers_pg"]))
        for group, now in end.items():
            before = self.begin.get(group, {})
            self.used[group] = sum(v - before.get(p, 0.0) for p, v in now.items())
        self.counts = {k: v - self._counts0.get(k, 0.0) for k, v in self._count().items()}


class Timeline:
    """With ``--timeline``: (seconds, jobs done, CPU s per group) sampled over a cell's window."""

    def __init__(self, meter: Meter, schema: str, base: int = 0) -> None:
        self.meter, self.schema, self.base = meter, schema, base
        self.samples: list[tuple[float, int, dict[str, float]]] = []
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0

    def _sample(self) -> None:
        row = (
            admin(self.meter.postgres)
            .execute(
                f"SELECT count(*) FROM \"{self.schema}\".chatsvg_jobs WHERE status = 'succeeded'"
            )
            .fetchone()
        )
        now = self.meter._read()
        cpu = {
            g: sum(v - self.meter.begin.get(g, {}).get(p, 0.0) for p, v in vals.items())
            for g, vals in now.items()
        }
        done = int(row[0]) - self.base if row else 0
        self.samples.append((time.monotonic() - self._t0, done, cpu))

    def start(self) -> None:
        if not TIMELINE[0]:
            return
        self._t0 = time.monotonic()

        async def run() -> None:
            while True:
                self._sample()
                await asyncio.sleep(TIMELINE[0])

        self._task = asyncio.ensure_future(run())

    async def stop(self) -> str:
        if self._task is None:
            return ""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sample()
        # Stretches by jobs done: CPU ms per job in each, per group.
        jobs = self.samples[-1][1]
        marks = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
        out, prev = [], (0.0, 0, dict.fromkeys(GROUPS, 0.0))
        first = next((t for t, d, _ in self.samples if d > 0), 0.0)
        for mark in marks[1:]:
            at = next(s for s in self.samples if s[1] >= mark * jobs)
            n = max(1, at[1] - prev[1])
            per = {g: 1000 * (at[2].get(g, 0.0) - prev[2].get(g, 0.0)) / n for g in GROUPS}
            out.append(
                f"to {int(100 * mark)}% ({at[1]} jobs, {at[0]:.2f} s, "
                f"{n / max(1e-9, at[0] - prev[0]):.0f}/s): "
                f"{sum(per.values()):.2f} ms/job ["
                + " ".join(f"{g[:3]}{g[-3:]}={v:.2f}" for g, v in per.items())
                + "]"
            )
            prev = at
        return f"first done {1000 * first:.0f} ms;\n      " + ";\n      ".join(out)


# --- one measurement ----------------------------------------------------------------------------


@dataclass
class Cell:
    rate: float
    cpu: dict[str, float]  # CPU seconds per group over the timed window
    jobs: int
    counts: dict[str, float] = field(default_factory=dict)  # Redis commands, PG transactions
    idle: float = -1.0  # share of the machine's CPU left idle over the window (-1: not read)
    trace: str = ""  # with --trace: pick-up latency and idle slots (see summarize_trace)
    # Celery: errors the workers logged, announcements dropped, messages left unacked.
    health: dict[str, float] = field(default_factory=dict)
    backends: tuple[int, int] = (0, 0)  # the workers' PostgreSQL connections, start and end

    def per_job(self, name: str) -> float:
        return self.counts.get(name, 0.0) / self.jobs

    def cpu_ms(self, group: str | None = None) -> float:
        total = sum(self.cpu.values()) if group is None else self.cpu.get(group, 0.0)
        return 1000 * total / self.jobs


def with_app_name(url: str, app_name: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"application_name": app_name})) if q)
    return urlunsplit(parts._replace(query=query))


async def measure(
    mode: str, workers: int, jobs: int, concurrency: int, postgres: str, redis: OwnRedis, amqp: str
) -> Cell:
    if mode.startswith("celery"):
        return await measure_celery(mode, workers, jobs, concurrency, postgres, redis, amqp)
    from chatsvg_core.storage.postgres import PostgresStore

    mode, *variant = mode.split("+")
    options: dict[str, Any] = {}
    for name in variant:
        options.update(VARIANTS[name])
    if "poll_interval" in options and mode == "procrastinate-noop":
        options["fetch_job_polling_interval"] = options.pop("poll_interval")
    kind = mode.removesuffix("-noop").removesuffix("-plain")
    schema = await new_schema(postgres, procrastinate=kind == "procrastinate")
    app_name = f"chatsvg-bench-{schema}"
    spec = Spec(
        kind=mode,
        postgres_url=postgres,
        schema=schema,
        queue_name=f"bench-{uuid4().hex[:8]}",
        redis_url=redis.url,
        concurrency=concurrency,
        lease=60,
        maintain_every=0,  # no recovery/sweep in the workers: the run announces
        warm=WARM[0],
        app_name=app_name,
        poll=POLL[0],  # None: the adapters' own polling defaults, as a host gets them
        worker_options=options,
    )
    spec.concurrency = options.pop("concurrency", concurrency)
    spec.pq_pool = options.pop("pq_pool", spec.pq_pool)
    store = await PostgresStore.open(
        with_app_name(postgres, app_name + "-parent"), schema=schema, min_size=1, max_size=4
    )
    procs = []
    trace_dir = tempfile.mkdtemp(prefix="chatsvg-bq-trace-") if TRACE[0] else ""
    SENT.clear()
    try:
        ids = await submit_jobs(store, jobs)
        # Held back until the clock starts, so nothing drains before it.
        await sql(postgres, schema, HOLD)
        os.environ["CHATSVG_FLEET_TRACE"] = trace_dir
        procs = [spawn(Spec(**{**spec.__dict__, "kind": mode})) for _ in range(workers)]
        del os.environ["CHATSVG_FLEET_TRACE"]
        for proc in procs:
            assert proc.stdout is not None
            while proc.stdout.readline().strip() != "READY":
                assert proc.poll() is None, f"{mode} worker died at start"
        parent = Spec(
            **{**spec.__dict__, "kind": kind, "postgres_url": postgres, "app_name": app_name}
        )
        async with parent_queue(parent) as queue:
            meter = Meter(
                postgres,
                app_name,
                [p.pid for p in procs],
                broker_pid(mode, redis),
                redis.url if "arq" in mode else None,
            )
            meter.start()
            timeline = Timeline(meter, schema)
            timeline.start()
            start = time.monotonic()
            wall0 = time.time()
            if mode == "arq-noop":
                await announce(
                    lambda _: queue.redis.enqueue_job("noop", _queue_name=spec.queue_name), jobs
                )
            elif mode == "procrastinate-noop" and "batch" in variant:
                deferrer = queue.app.configure_task("noop", queue=spec.queue_name)
                await announce(lambda _: deferrer.batch_defer_async(*[{}] * 20), jobs // 20)
            elif mode == "procrastinate-noop":
                deferrer = queue.app.configure_task("noop", queue=spec.queue_name)
                await announce(lambda _: deferrer.defer_async(), jobs)
            else:
                await sql(postgres, schema, RELEASE)
                released = time.time()
                if queue is not None:
                    await announce(lambda i: queue.enqueue(ids[i]), jobs)
                else:
                    SENT.update(dict.fromkeys(range(jobs), released))
            await wait_done(mode, postgres, schema, spec.queue_name, queue, jobs)
            seconds = time.monotonic() - start
            shape = await timeline.stop()
            meter.stop()
            if kind == "procrastinate":
                # Procrastinate jobs (messages) deferred in the window: one per job, or
                # fewer when the adapter announces several jobs in one message.
                meter.counts["pq_messages"] = float(await pq_messages(postgres, schema))
        cell = Cell(jobs / seconds, meter.used, jobs, meter.counts, meter.idle, trace=shape)
        cell.backends = meter.backends
    finally:
        for proc in procs:
            stop_worker(proc, timeout=60)
        await store.aclose()
        drop_schema(postgres, schema)
        if redis.proc is not None:
            await flush(redis.url)
    if trace_dir:
        sent = {ids[i]: t for i, t in SENT.items()}
        cell.trace = "; ".join(
            t
            for t in (cell.trace, summarize_trace(Path(trace_dir), sent, wall0, wall0 + seconds))
            if t
        )
        if os.environ.get("CHATSVG_BENCH_KEEP_TRACE"):
            (Path(trace_dir) / "window").write_text(f"{mode} {wall0} {wall0 + seconds}\n")
            cell.trace += f"; kept in {trace_dir}"
        else:
            shutil.rmtree(trace_dir, ignore_errors=True)
    return cell


def summarize_trace(folder: Path, sent: dict[str, float], begin: float, end: float) -> str:
    """Where a cell's wall time went, from the workers' claim/success times.

    ``pickup``: announcement (``next``: release) to claim, median / 90th
    percentile; ``job``: claim to success, median; ``first``: clock start to
    the first claim; ``tail``: last success to clock stop; per worker, the
    mean number of its jobs between claim and success (``busy``) and the share
    of the window in which it had none (``empty``).
    """
    claims: dict[str, float] = {}
    per_worker: list[list[tuple[float, float]]] = []
    for path in sorted(folder.glob("*.trace")):
        spans = []
        open_: dict[str, float] = {}
        for line in path.read_text().splitlines():
            kind, job, at = line.split()
            if kind == "claimed":
                open_[job] = float(at)
                claims[job] = float(at)
            elif job in open_:
                spans.append((open_.pop(job), float(at)))
        per_worker.append(spans)
    if not claims:
        return ""
    window = end - begin
    pickup = sorted(claims[j] - sent[j] for j in claims if j in sent)
    work = sorted(b - a for spans in per_worker for a, b in spans)
    last = max((b for spans in per_worker for _, b in spans), default=end)

    def q(values: list[float], share: float) -> float:
        return values[min(len(values) - 1, int(share * len(values)))] if values else 0.0

    parts = [
        f"pickup {1000 * q(pickup, 0.5):.0f}/{1000 * q(pickup, 0.9):.0f} ms",
        f"job {1000 * q(work, 0.5):.0f} ms",
        f"first {1000 * (min(claims.values()) - begin):.0f} ms",
        f"tail {1000 * (end - last):.0f} ms",
    ]
    for spans in per_worker:
        busy = sum(min(b, end) - max(a, begin) for a, b in spans) / window
        steps = sorted(
            [(max(a, begin), 1) for a, _ in spans] + [(min(b, end), -1) for _, b in spans]
        )
        empty, depth, at = 0.0, 0, begin
        for t, step in steps:
            if depth == 0:
                empty += t - at
            depth += step
            at = t
        empty += end - at if depth == 0 else 0.0
        parts.append(f"w{len(spans)}: busy {busy:.1f} empty {100 * empty / window:.0f}%")
    return "; ".join(parts)


async def submit_jobs(store: Any, jobs: int) -> list[str]:
    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.ledger import Ledger

    owners = [f"o{i}" for i in range(50)]
    ledger = Ledger(store)
    for owner in owners:
        await ledger.grant(owner, 10 * jobs)
    silent = Engine(store, None, OfflineSketchProvider())
    ids: list[str] = []
    for first in range(0, jobs, 20):
        done = await asyncio.gather(
            *(
                silent.submit(owners[i % 50], f"k{i}", {"prompt": f"p{i}"})
                for i in range(first, min(jobs, first + 20))
            )
        )
        ids += [d.job.id for d in done]
    return ids


async def announce(send: Any, jobs: int, concurrency: int | None = None) -> None:
    """``send(i)`` for every job, ``concurrency`` at a time.

    A host's announcements come from many submits at once, not one loop: a
    single sequential announcer would measure its own round trips (under load,
    mostly waits for a CPU) instead of the workers.
    """
    gate = asyncio.Semaphore(concurrency or ANNOUNCERS[0])

    async def one(i: int) -> None:
        async with gate:
            if TRACE[0]:
                SENT[i] = time.time()
            await send(i)

    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(jobs)))
    ANNOUNCED[0] = time.monotonic() - start


async def flush(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def succeeded(conn: Any, schema: str) -> int:
    # A count, not a list of jobs through the store: the waiting must cost
    # little, or it is charged to the announcer.
    cur = await conn.execute(
        f"SELECT count(*) FROM \"{schema}\".chatsvg_jobs WHERE status = 'succeeded'".encode()
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def sql(postgres: str, schema: str, statement: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
        await conn.execute(statement.format(s=f'"{schema}"').encode())


async def pq_messages(postgres: str, schema: str) -> int:
    """Procrastinate jobs deferred so far in the cell's own schema (its id sequence)."""
    async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
        cur = await conn.execute(
            f'SELECT last_value, is_called FROM "{schema}_pq".procrastinate_jobs_id_seq'.encode()
        )
        row = await cur.fetchone()
    return int(row[0]) if row and row[1] else 0


async def wait_done(
    mode: str, postgres: str, schema: str, queue_name: str, queue: Any, jobs: int
) -> None:
    deadline = time.monotonic() + 600
    async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if mode == "arq-noop":
                left = await queue.redis.zcard(queue_name)
            elif mode == "procrastinate-noop":
                cur = await conn.execute(
                    f'SELECT count(*) FROM "{schema}_pq".procrastinate_jobs '
                    "WHERE status IN ('todo', 'doing')".encode()
                )
                left = (await cur.fetchone())[0]  # type: ignore[index]
            else:
                cur = await conn.execute(
                    f'SELECT count(*) FROM "{schema}".chatsvg_jobs '
                    "WHERE status <> 'succeeded'".encode()
                )
                left = (await cur.fetchone())[0]  # type: ignore[index]
            if left == 0:
                return
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{mode}: jobs not done")


# --- Celery -------------------------------------------------------------------------------------


def celery_worker_cmd(app_module: str, name: str, queue: str, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app_module,
        "worker",
        "-P",
        CELERY_POOL[0],
        "-c",
        str(concurrency),
        "-Q",
        queue,
        "-n",
        f"{name}@%h",
        "-l",
        "ERROR",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def start_all(cmds: list[list[str]], env: dict[str, str], cwd: Path) -> list[Any]:
    # Each worker's errors to a file of its own: checked after the cell (see celery_health).
    return [
        subprocess.Popen(
            c,
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=(cwd / f"worker-{i}.log").open("wb"),
        )
        for i, c in enumerate(cmds)
    ]


def celery_health(tmp: Path, redis_url: str | None, dropped: int) -> dict[str, float]:
    """What a Celery cell must end with: no error logged, nothing dropped or left unacked."""
    logged = sum(
        line.startswith(b"[") and (b"ERROR/" in line or b"CRITICAL/" in line)
        for log in tmp.glob("worker-*.log")
        for line in log.read_bytes().splitlines()
    )
    out = {"errors_logged": float(logged), "dropped": float(dropped)}
    if redis_url:
        from redis import Redis

        client = Redis.from_url(redis_url)
        try:
            out["left_unacked"] = float(client.hlen("unacked"))
        finally:
            client.close()
    return out


async def measure_celery(
    mode: str, workers: int, jobs: int, concurrency: int, postgres: str, redis: OwnRedis, amqp: str
) -> Cell:
    from celery import Celery

    from chatsvg_core.engine import Engine
    from chatsvg_core.generate import OfflineSketchProvider
    from chatsvg_core.queues import CeleryQueue
    from chatsvg_core.storage.postgres import PostgresStore

    broker = amqp if "amqp" in mode else redis.url
    noop = mode.endswith("-noop")
    queue_name = f"bench-{secrets.token_hex(4)}"
    schema = f"chatsvg_bq_{secrets.token_hex(4)}"
    app_name = f"chatsvg-bench-{schema}"
    tmp = Path(tempfile.mkdtemp(prefix="chatsvg-bq-"))
    store = await PostgresStore.open(
        with_app_name(postgres, app_name + "-parent"), schema=schema, min_size=1, max_size=4
    )
    env = dict(os.environ)
    env.update(
        # The no-op app's:
        CHATSVG_CELERY_BROKER=broker,
        CHATSVG_NOOP_COUNTER=redis.url,
        # The adapter's (the store pool as the other workers': 2-10 connections):
        CHATSVG_INFLIGHT_BROKER=broker,
        CHATSVG_INFLIGHT_DB=with_app_name(postgres, app_name),
        CHATSVG_INFLIGHT_SCHEMA=schema,
        CHATSVG_INFLIGHT_QUEUE=queue_name,
        CHATSVG_INFLIGHT_CALL="0",
        CHATSVG_INFLIGHT_LEASE="60",
        CHATSVG_INFLIGHT_WARM=str(0 if noop else WARM[0]),
        CHATSVG_INFLIGHT_READY_DIR=str(tmp),
        PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT / "src")]),
    )
    cpulog = ""
    if env.get("CHATSVG_INFLIGHT_CPULOG"):
        # Diagnosis: each worker's CPU at its n-th job (see _celery_bench_app._cpu_mark).
        cpulog = os.path.join(env["CHATSVG_INFLIGHT_CPULOG"], f"{mode}-{jobs}-{time.time():.0f}")
        os.makedirs(cpulog)
        env["CHATSVG_INFLIGHT_CPULOG"] = cpulog
    module = "_noop_celery_app" if noop else "_celery_bench_app"
    procs = start_all(
        [celery_worker_cmd(module, f"b{i}", queue_name, concurrency) for i in range(workers)],
        env,
        tmp,
    )
    app = Celery("bench-host", broker=broker)
    counter_key = f"noop:{queue_name}"
    announcer: CeleryQueue | None = None
    keep_logs = False

    def new_meter() -> Meter:
        # Started once every worker is up, just before the clock.
        return Meter(
            postgres,
            app_name,
            [p.pid for p in procs],
            broker_pid(mode, redis),
            redis_url=redis.url if "redis" in mode else None,
        )

    try:
        if noop:
            from redis import Redis

            counter = Redis.from_url(redis.url)

            def send(key: str, count: int) -> None:
                with app.producer_or_acquire() as producer:
                    for _ in range(count):
                        app.send_task("noop.run", args=(key,), queue=queue_name, producer=producer)

            def count(key: str) -> int:
                return int(counter.get(key) or 0)

            # Warm-up: every worker is up before the clock starts.
            await asyncio.to_thread(send, counter_key + ":warm", workers * 4)
            await until(lambda: count(counter_key + ":warm") >= workers * 4)
            meter = new_meter()
            meter.start()
            start = time.monotonic()
            await asyncio.to_thread(send, counter_key, jobs)
            await until(lambda: count(counter_key) >= jobs)
        else:
            if WARM[0]:
                # Every worker's engine open and warm (see _celery_bench_app.warm)
                # before any job exists.
                await until(lambda: len(list(tmp.glob("ready-*"))) >= workers, limit=60)
            queue = announcer = CeleryQueue(
                app, queue=queue_name, **({"per_message": 1} if "+one" in mode else {})
            )
            ids = await submit_jobs(store, jobs)
            await sql(postgres, schema, HOLD)
            warm = Engine(store, queue, OfflineSketchProvider())
            warm_ids = [
                (await warm.submit("o0", f"warm{i}", {"prompt": f"warm {i}"})).job.id
                for i in range(workers * 4)
            ]

            waiter = await psycopg.AsyncConnection.connect(postgres, autocommit=True)

            async def done() -> int:
                return await succeeded(waiter, schema)

            await until_async(done, len(warm_ids))
            await sql(postgres, schema, RELEASE)
            meter = new_meter()
            meter.start()
            timeline = Timeline(meter, schema, base=len(warm_ids))
            timeline.start()
            start = time.monotonic()
            clock = time.time()
            sent0 = queue.messages
            await announce(lambda i: queue.enqueue(ids[i]), jobs)
            await until_async(done, len(warm_ids) + len(ids))
            await waiter.close()
        seconds = time.monotonic() - start
        shape = await timeline.stop() if not noop else ""
        if cpulog and not noop:
            marks = worker_marks(Path(cpulog), clock, meter.begin["workers"])
            shape = "\n    ".join(t for t in (shape, marks) if t)
        meter.stop()
        # Celery messages the announcer sent in the window: one per job, or fewer when
        # announcements waiting together go out as one message naming several jobs.
        meter.counts["celery_messages"] = float(jobs if noop else queue.messages - sent0)
        await asyncio.sleep(0.5)  # the last acks
        health = celery_health(tmp, redis.url if "redis" in mode else None, dropped(announcer))
        return Cell(
            jobs / seconds,
            meter.used,
            jobs,
            meter.counts,
            meter.idle,
            health=health,
            trace=shape,
            backends=meter.backends,
        )
    except TimeoutError:
        # A stall (the session-7 hang): say what was left, then give up on the run.
        health = celery_health(tmp, redis.url if "redis" in mode else None, dropped(announcer))
        print(f"{mode}: stalled; {health}; worker logs in {tmp}", flush=True)
        keep_logs = True
        raise
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        await store.aclose()
        drop_schema(postgres, schema)
        if not keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        if "amqp" in mode:
            with contextlib.suppress(Exception), app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue_name)
        await flush(redis.url)


def worker_marks(folder: Path, clock: float, begin: dict[int, float]) -> str:
    """Per Celery worker, from its CPU at its n-th job (``CHATSVG_INFLIGHT_CPULOG``).

    ``idle``: CPU from its READY to the clock (the warm-up jobs); ``first``:
    clock to its first job (ms of wall time, ms of CPU); ``steady``: CPU per
    job from its 50th job on; ``fixed``: its CPU from the clock to its last
    mark less ``steady`` times the jobs by then, the cost it paid once.
    """
    out = []
    for path in sorted(folder.glob("cpu-*")):
        pid = int(path.name.split("-")[1])
        rows = [line.split() for line in path.read_text().splitlines()]
        ready = next((float(r[1]) for r in rows if r[0] == "ready"), None)
        marks = [(int(r[0]), float(r[1]), float(r[2])) for r in rows if r[0] != "ready"]
        if not marks or pid not in begin:
            continue
        cpu0 = begin[pid]
        n_last, cpu_last, _ = marks[-1]
        later = [m for m in marks if m[0] >= 50]
        steady = (
            (later[-1][1] - later[0][1]) / (later[-1][0] - later[0][0]) if len(later) > 1 else 0.0
        )
        fixed = (cpu_last - cpu0) - steady * n_last
        idle = f"idle {1000 * (cpu0 - ready):.0f} ms, " if ready is not None else ""
        out.append(
            f"w{pid}: {idle}first +{1000 * (marks[0][2] - clock):.0f} ms "
            f"({1000 * (marks[0][1] - cpu0):.0f} ms CPU), steady {1000 * steady:.2f} ms/job, "
            f"fixed {1000 * fixed:.0f} ms"
        )
    return "; ".join(out)


def dropped(queue: Any) -> int:
    return int(getattr(queue, "dropped", 0))


async def until(check: Any, every: float = 0.02, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark: jobs not done")
        await asyncio.sleep(every)


async def until_async(count: Any, target: int, every: float = 0.02, stall: float = 60) -> None:
    """Until ``count()`` reaches ``target``; ``TimeoutError`` after ``stall`` s without progress."""
    last, since = -1, time.monotonic()
    while (now := await count()) < target:
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall:
            raise TimeoutError(f"benchmark: {target - now} jobs not done, none for {stall:.0f} s")
        await asyncio.sleep(every)


# --- the run ------------------------------------------------------------------------------------

GROUPS = ["workers", "workers_pg", "submitter", "submitter_pg", "broker"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--jobs",
        default="1000",
        help="jobs per cell; several (1000,3000): sizes interleaved in each round, and a cost "
        "fixed per cell solved from them (F/n + c)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--modes", default=",".join(MODES), help=",".join(ALL_MODES))
    parser.add_argument("--poll", type=float, help="arq/Procrastinate polling (s); default theirs")
    parser.add_argument("--celery-pool", default="gevent", choices=["gevent", "threads"])
    parser.add_argument(
        "--announcers", type=int, default=20, help="concurrent announcements (submits at once)"
    )
    parser.add_argument(
        "--warm",
        type=int,
        default=10,
        help="concurrent empty claims per worker before the clock (0: none, as before)",
    )
    parser.add_argument(
        "--trace", action="store_true", help="workers log claims: pick-up latency, idle slots"
    )
    parser.add_argument(
        "--timeline",
        type=float,
        default=0.0,
        help="sample CPU and jobs done every S s: CPU per job by stretch of each cell",
    )
    args = parser.parse_args()
    TIMELINE[0] = args.timeline
    TRACE[0] = args.trace
    ANNOUNCERS[0] = args.announcers
    WARM[0] = args.warm
    POLL[0] = args.poll
    CELERY_POOL[0] = args.celery_pool
    postgres = os.environ["CHATSVG_TEST_POSTGRES_URL"]
    amqp = os.environ.get("CHATSVG_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    counts = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    unknown = {m.split("+")[0] for m in modes} - set(ALL_MODES)
    unknown |= {v for m in modes for v in m.split("+")[1:]} - set(VARIANTS)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}")
    redis = OwnRedis()
    redis.start()
    sizes = [int(n) for n in args.jobs.split(",")]
    by_size: dict[int, dict[tuple[str, int], list[Cell]]] = {n: {} for n in sizes}
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} load {os.getloadavg()}")
    print(
        f"{args.jobs} jobs per cell, {args.concurrency} slots per worker process, "
        f"{args.announcers} concurrent announcements",
        flush=True,
    )
    try:
        for r in range(args.rounds):
            for jobs, workers, mode in ((n, w, m) for n in sizes for w in counts for m in modes):
                ANNOUNCED[0] = 0.0
                cell = await measure(mode, workers, jobs, args.concurrency, postgres, redis, amqp)
                by_size[jobs].setdefault((mode, workers), []).append(cell)
                parts = " ".join(f"{g}={cell.cpu_ms(g):.2f}" for g in GROUPS)
                tally = " ".join(f"{k}/job={cell.per_job(k):.1f}" for k in cell.counts)
                print(
                    f"round {r + 1} {mode} x{workers} {jobs} jobs: {cell.rate:.0f} jobs/s, "
                    f"CPU ms/job {cell.cpu_ms():.2f} ({parts}) load {os.getloadavg()[0]:.1f}"
                    f" announced in {ANNOUNCED[0]:.1f} s {tally}"
                    + "".join(f" {k}={v:.0f}" for k, v in cell.health.items())
                    + (f" idle {100 * cell.idle:.0f}%" if cell.idle >= 0 else "")
                    + " workers' PG connections {} -> {}".format(*cell.backends)
                    + (f"\n    {cell.trace}" if cell.trace else ""),
                    flush=True,
                )
    finally:
        redis.stop()
    print(f"{time.strftime('%H:%M:%S UTC', time.gmtime())} load {os.getloadavg()}")
    for jobs in sizes:
        print(f"\n## {jobs} jobs per cell")
        report(by_size[jobs], modes, counts)
    if len(sizes) >= 2:
        fixed_costs(by_size, modes, counts, sizes[0], sizes[-1])


def fixed_costs(
    by_size: dict[int, dict[tuple[str, int], list[Cell]]],
    modes: list[str],
    counts: list[int],
    small: int,
    large: int,
) -> None:
    """Each mode's cost as ``F/n + c`` from the medians at two sizes of the same run.

    CPU per job (ms) and wall time per job (ms, 1000 / rate): F is what a cell
    pays whatever its size (CPU seconds, or seconds of wall time), c what each
    job adds; ``c ÷ next`` is the ratio a long run tends to.
    """
    print(f"\nFixed and per-job cost, solved from {small} and {large} jobs (medians)")
    print(
        "\n| worker processes | mode | CPU F (s) | CPU c (ms) | c ÷ next | wall F (s) "
        "| wall c (ms) | c ÷ next |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    span = 1 / small - 1 / large
    for workers in counts:
        solved = {}
        for m in modes:
            cpu = [
                statistics.median(c.cpu_ms() for c in by_size[n][(m, workers)])
                for n in (small, large)
            ]
            wall = [
                statistics.median(1000 / c.rate for c in by_size[n][(m, workers)])
                for n in (small, large)
            ]
            solved[m] = [
                ((a - b) / 1000 / span, b - (a - b) / span / large) for a, b in (cpu, wall)
            ]
        for m in modes:
            (fc, cc), (fw, cw) = solved[m]
            base = solved.get("next")
            rc = f"{cc / base[0][1]:.2f}x" if base else "-"
            rw = f"{cw / base[1][1]:.2f}x" if base else "-"
            print(f"| {workers} | {m} | {fc:.2f} | {cc:.2f} | {rc} | {fw:.2f} | {cw:.2f} | {rw} |")


def report(results: dict[tuple[str, int], list[Cell]], modes: list[str], counts: list[int]) -> None:
    adapters = [m for m in modes if m != "next" and not m.endswith("-noop")]
    print("\nJobs per second (median of rounds); `÷ next`: process_next's rate over the adapter's")
    head = modes + [f"{a} ÷ next" for a in adapters if "next" in modes]
    print("\n| worker processes | " + " | ".join(head) + " |")
    print("| --- | " + " | ".join("---" for _ in head) + " |")
    for workers in counts:
        rate = {m: statistics.median(c.rate for c in results[(m, workers)]) for m in modes}
        ratios = [f"{rate['next'] / rate[a]:.2f}x" for a in adapters if "next" in modes]
        cells = [f"{rate[m]:.0f}" for m in modes]
        print(f"| {workers} | " + " | ".join(cells + ratios) + " |")
    print("\nCPU ms per job (median of rounds): total = workers + their PostgreSQL backends")
    print("+ submitter (announcing) + its backends + broker")
    print("\n| worker processes | mode | total | " + " | ".join(GROUPS) + " | total ÷ next |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in GROUPS) + " | --- |")
    for workers in counts:
        base = (
            statistics.median(c.cpu_ms() for c in results[("next", workers)])
            if "next" in modes
            else None
        )
        for m in modes:
            cells = results[(m, workers)]
            total = statistics.median(c.cpu_ms() for c in cells)
            groups = [f"{statistics.median(c.cpu_ms(g) for c in cells):.2f}" for g in GROUPS]
            ratio = f"{total / base:.2f}x" if base else "-"
            print(f"| {workers} | {m} | {total:.2f} | " + " | ".join(groups) + f" | {ratio} |")
    print("\nPer job (median of rounds): the run's own Redis's commands; PostgreSQL's transactions")
    print("(the whole server's: other users of the machine's PostgreSQL add to them)")
    print(
        "\n| worker processes | mode | Redis commands | Redis requests | PostgreSQL transactions"
        " | Procrastinate messages | Celery messages |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for workers in counts:
        for m in modes:
            cells = results[(m, workers)]
            redis = statistics.median(c.per_job("redis_commands") for c in cells)
            reads = statistics.median(c.per_job("redis_reads") for c in cells)
            pg = statistics.median(c.per_job("pg_transactions") for c in cells)
            pq = statistics.median(c.per_job("pq_messages") for c in cells)
            cm = statistics.median(c.per_job("celery_messages") for c in cells)
            print(
                f"| {workers} | {m} | {redis:.1f} | {reads:.1f} | {pg:.1f} | {pq:.2f} | {cm:.2f} |"
            )


if __name__ == "__main__":
    asyncio.run(main())
