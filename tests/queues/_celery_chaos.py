"""Real Celery workers on a real broker, killed with SIGKILL, through a broker outage.

Used by ``tests/queues/test_celery_processes.py`` (small) and
``benchmarks/celery_chaos.py`` (≥ 1,000 jobs, figures in benchmarks/README.md).

The harness owns every server it breaks: a ``redis-server`` of its own on a
spare port (stopped and restarted), or a TCP proxy in front of the machine's
RabbitMQ (cut and healed); PostgreSQL connections of the workers are ended
with ``pg_terminate_backend``. The machine's own services keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from chatsvg_core.engine import Engine
from chatsvg_core.generate import OfflineSketchProvider
from chatsvg_core.jobs import JobStatus
from chatsvg_core.ledger import Ledger
from chatsvg_core.storage.postgres import PostgresStore

from ._reaper import popen

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = Path(__file__).resolve().parent


def spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class OwnRedis:
    """A ``redis-server`` of the test's own, on a spare port, that it may stop and restart."""

    def __init__(self) -> None:
        self.port = spare_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.proc = popen(
            # No persistence: the outage loses every message the broker held.
            [*args, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        # SIGKILL: an outage, not a tidy shutdown; everything in it is lost.
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def break_(self) -> None:
        self.stop()

    def heal(self) -> None:
        self.start()


class TcpProxy:
    """A TCP proxy the test owns in front of a broker: ``break_`` drops every connection."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = spare_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def break_(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()  # a reset, as a dead link looks to both ends
        self._writers.clear()

    async def heal(self) -> None:
        await self.start()


@dataclass
class ChaosReport:
    """What one Celery chaos run saw."""

    broker: str
    jobs: int
    workers: int
    concurrency: int
    kills: int = 0
    broker_outages: int = 0
    db_terminations: int = 0
    lease_lost: int = 0
    seconds: float = 0.0
    messages: int = 0  # Celery messages the submitting process sent (several jobs may share one)
    statuses: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def _env(
    broker_url: str, db_url: str, schema: str, queue: str, events: Path, **extra: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CHATSVG_CELERY_BROKER=broker_url,
        CHATSVG_CELERY_DB=db_url,
        CHATSVG_CELERY_SCHEMA=schema,
        CHATSVG_CELERY_QUEUE=queue,
        CHATSVG_CELERY_EVENTS=str(events),
        PYTHONPATH=os.pathsep.join([str(APP_DIR), str(ROOT / "src")]),
        **extra,
    )
    return env


def celery_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "_celery_app", *args]


def worker_cmd(name: str, queue: str, pool: str, concurrency: int) -> list[str]:
    return celery_cmd(
        "worker",
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-Q",
        queue,
        "-n",
        f"{name}@%h",
        "-l",
        "INFO" if os.environ.get("CHATSVG_CELERY_VERBOSE") else "ERROR",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    )


def read_events(folder: Path) -> Iterator[dict[str, Any]]:
    for path in folder.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a SIGKILL may cut the last line
                yield json.loads(line)


def _shift_run_at(db_url: str, schema: str, ids: list[str], interval: str) -> None:
    """Move the ``run_at`` of jobs ``ids`` by ``interval`` (holds them back, or releases them)."""
    statement = sql.SQL(
        "UPDATE {}.chatsvg_jobs SET run_at = run_at + {}::interval WHERE id = ANY(%s)"
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(statement.format(sql.Identifier(schema), sql.Literal(interval)), (ids,))


def terminate_backends(db_url: str, app_name: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app_name,),
        ).fetchall()
    return len(rows)


async def celery_chaos(
    *,
    broker: str,
    postgres_url: str,
    jobs: int,
    workers: int = 4,
    concurrency: int = 8,
    seed: int = 0,
    kill_every: float = 2.0,
    outage_after: float = 0.4,
    outage_seconds: float = 3.0,
    faults: tuple[float, float, float] = (0.10, 0.03, 0.02),
    lease: float = 2.0,
    beat: float = 1.0,
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672//",
    give_up_after: float = 150.0,
    verbose: bool = False,
    pool: str = "gevent",
) -> ChaosReport:
    """Submit ``jobs`` through Celery; kill, cut and terminate until all are final; check."""
    from celery import Celery

    from chatsvg_core.queues import setup_celery

    if __package__ and __package__.startswith("tests."):  # benchmarks/ imports tests.queues
        from tests.engine._support import check_invariants
    else:  # pytest imports this as queues._celery_chaos, with tests/ on sys.path
        from engine._support import check_invariants

    rng = random.Random(seed)
    report = ChaosReport(broker=broker, jobs=jobs, workers=workers, concurrency=concurrency)
    schema = f"chatsvg_celery_{secrets.token_hex(4)}"
    queue_name = f"chatsvg-test-{secrets.token_hex(4)}"
    app_name = f"chatsvg_celery_{secrets.token_hex(3)}"
    worker_db = f"{postgres_url}{'&' if '?' in postgres_url else '?'}application_name={app_name}"
    store = await PostgresStore.open(postgres_url, schema=schema, min_size=1, max_size=4)
    tmp = Path(tempfile.mkdtemp(prefix="chatsvg-celery-"))
    events = tmp / "events"
    events.mkdir()
    redis: OwnRedis | None = None
    proxy: TcpProxy | None = None
    if broker == "redis":
        redis = OwnRedis()
        redis.start()
        broker_url = redis.url
    else:
        parts = amqp_url.split("@", 1)
        host_port = parts[1].split("/", 1)[0]
        host, _, port = host_port.partition(":")
        proxy = TcpProxy((host or "127.0.0.1", int(port or 5672)))
        await proxy.start()
        broker_url = f"{parts[0]}@127.0.0.1:{proxy.port}/{parts[1].split('/', 1)[1]}"
    env = _env(
        broker_url,
        worker_db,
        schema,
        queue_name,
        events,
        CHATSVG_CELERY_LEASE=str(lease),
        CHATSVG_CELERY_BEAT=str(beat),
        CHATSVG_CELERY_FAULTS=",".join(map(str, faults)),
        CHATSVG_CELERY_SLEEP="0.02",
    )
    host_app = Celery("chatsvg_host", broker=broker_url)
    host = setup_celery(host_app, postgres_url, provider=OfflineSketchProvider, queue=queue_name)
    engine = Engine(store, host.queue, OfflineSketchProvider())
    owners = ["rich", "poor"]
    ledger = Ledger(store)
    await ledger.grant("rich", 10 * jobs)
    await ledger.grant("poor", 5)  # runs out: the rest fail uncharged
    procs: dict[str, subprocess.Popen[bytes]] = {}
    counter = 0

    def spawn(kind: str = "w") -> None:
        nonlocal counter
        counter += 1
        name = f"{kind}{counter}"
        if kind == "beat":
            cmd = celery_cmd("beat", "-s", str(tmp / f"{name}.schedule"), "-l", "ERROR")
        else:
            cmd = worker_cmd(name, queue_name, pool, concurrency)
        log = (tmp / f"{name}.log").open("ab") if verbose else subprocess.DEVNULL
        procs[name] = popen(cmd, env=env, cwd=tmp, stdout=log, stderr=log)

    start = time.monotonic()
    try:
        # Submitted 20 at a time, as concurrent requests would: announcements that
        # wait together go out as messages naming several jobs, which the kills and
        # the outage then meet as well as single-job ones.
        ids: list[str] = []
        for first in range(0, jobs, 20):
            done = await asyncio.gather(
                *(
                    engine.submit(owners[i % 2], f"k{i}", {"prompt": f"a lighthouse {i}"})
                    for i in range(first, min(jobs, first + 20))
                )
            )
            ids += [d.job.id for d in done]
        report.messages = host.queue.messages
        if verbose:
            print(f"{time.monotonic() - start:6.1f}s submitted {jobs}")
        # Half the jobs are held back (due in a day) until the run has been through a
        # kill and the broker outage: with model calls of 20 ms the whole run once
        # ended before either (CI, Celery 5.7: 60 jobs final in 2.9 s), proving
        # nothing. Released, they are announced by the beats' sweep.
        held = ids[jobs // 2 :]
        await asyncio.to_thread(_shift_run_at, postgres_url, schema, held, "1 day")
        for _ in range(workers):
            spawn()
        spawn("beat")  # two beats at once: recovery and the sweep must not mind
        spawn("beat")
        last_kill = time.monotonic()
        outage_done = terminated = False
        final_at_kill = 0
        while True:
            for name, proc in list(procs.items()):
                if proc.poll() is not None:
                    del procs[name]
                    if proc.returncode == -signal.SIGKILL:
                        report.kills += 1
                    spawn("beat" if name.startswith("beat") else "w")
            async with store.transaction() as tx:
                rows = await tx.list_jobs(limit=jobs + 10)
            final = sum(1 for j in rows if j.terminal)
            if verbose:
                print(f"{time.monotonic() - start:6.1f}s final {final} procs {len(procs)}")
            if final == jobs:
                break
            now = time.monotonic()
            if now - start > give_up_after:
                report.violations.append(f"timeout: {jobs - final} jobs not final")
                break
            # Kill only once the run moved since the last kill: on a loaded machine a
            # worker takes seconds to start, and killing it first proves nothing.
            if now - last_kill > kill_every and final > final_at_kill:
                last_kill, final_at_kill = now, final
                victim = rng.choice([p for n, p in procs.items() if not n.startswith("beat")])
                victim.kill()  # restarted on the next pass
            if not outage_done and final >= outage_after * (jobs - len(held)):
                outage_done = True
                report.broker_outages += 1
                if redis is not None:
                    redis.break_()
                    await asyncio.sleep(outage_seconds)
                    redis.heal()
                else:
                    assert proxy is not None
                    await proxy.break_()
                    await asyncio.sleep(outage_seconds)
                    await proxy.heal()
            if held and outage_done and report.kills > 0:
                await asyncio.to_thread(_shift_run_at, postgres_url, schema, held, "-1 day")
                held = []
            if not terminated and final >= 0.6 * jobs:
                terminated = True
                report.db_terminations = await asyncio.to_thread(
                    terminate_backends, postgres_url, app_name
                )
            await asyncio.sleep(0.2)
        report.seconds = time.monotonic() - start
    finally:
        for proc in procs.values():
            proc.kill()
        for proc in procs.values():
            proc.wait()
        if proxy is not None:
            await proxy.break_()
        if redis is not None:
            redis.stop()
        elif broker == "amqp":
            await asyncio.to_thread(_delete_queue, amqp_url, queue_name)
    # Let any lease still open lapse, then settle it, as the beat would.
    await asyncio.sleep(lease)
    await engine.recover(now=engine.clock.now() + timedelta(seconds=lease))
    async with store.transaction() as tx:
        final_jobs = {j.id: j for j in await tx.list_jobs(limit=jobs + 10)}
    for status in JobStatus:
        report.statuses[status.value] = sum(1 for j in final_jobs.values() if j.status is status)
    try:
        await check_invariants(store, owners, recovered=True)
    except AssertionError as exc:
        report.violations.append(str(exc))
    successes: dict[str, list[int]] = {}
    for ev in read_events(events):
        if ev["kind"] == "succeeded":
            successes.setdefault(ev["job"], []).append(ev["attempt"])
        else:
            report.lease_lost += 1
    for job_id, attempts in successes.items():
        job = final_jobs.get(job_id)
        if len(attempts) > 1:
            report.violations.append(f"job {job_id} completed {len(attempts)} times")
        if job is None or job.status is not JobStatus.SUCCEEDED or job.attempt != attempts[0]:
            report.violations.append(f"job {job_id}: a completion by a stale attempt {attempts}")
    missing = [i for i in ids if i not in final_jobs]
    if missing:
        report.violations.append(f"{len(missing)} submitted jobs missing")
    await store.aclose()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    if verbose:
        print(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _delete_queue(amqp_url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(amqp_url) as conn:
        channel = conn.channel()
        with contextlib.suppress(Exception):
            channel.queue_delete(queue)
